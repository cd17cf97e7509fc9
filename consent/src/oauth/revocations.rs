//! Revoked access tokens (`consent_token_revocations`): Biscuit revocation ids (hex),
//! kept until the token they belong to would have expired anyway.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use warrant_idp::db::Db;
use warrant_idp::on_pool;
use warrant_idp::users::Users;

use super::StoreError;

/// The access-token revocation list.
#[derive(Debug, Clone)]
pub struct Revocations {
    db: Db,
}

impl Revocations {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Adds revocation ids, kept until `expires_at` (adding one twice is harmless).
    pub async fn add(&self, ids: &[String], expires_at: i64) -> Result<(), StoreError> {
        let sql = "INSERT INTO consent_token_revocations (revocation_id, expires_at) \
                   VALUES ($1, $2) ON CONFLICT (revocation_id) DO NOTHING";
        on_pool!(&self.db, pool => {
            let mut tx = warrant_idp::db::begin_write(pool).await?;
            for id in ids {
                sqlx::query(sql).bind(id).bind(expires_at).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Whether any of `ids` (a token's revocation ids, hex) is revoked.
    pub async fn any_revoked(&self, ids: &[String]) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM consent_token_revocations WHERE revocation_id = $1";
        for id in ids {
            let n: i64 = on_pool!(&self.db, pool => {
                sqlx::query_scalar(sql).bind(id).fetch_one(pool).await?
            });
            if n > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Every id revoked at `now`: access-token revocation ids and the ids of revoked
    /// grants that have not expired. A `HashSet` is a
    /// [`token::Revocations`](crate::token::Revocations), so a snapshot refreshed
    /// periodically can feed `Verifier::verify_unrevoked` on every call.
    pub async fn snapshot(&self, now: i64) -> Result<HashSet<String>, StoreError> {
        let sql = "SELECT revocation_id FROM consent_token_revocations WHERE expires_at > $1 \
                   UNION SELECT id FROM consent_grants \
                   WHERE revoked_at IS NOT NULL AND expires_at > $1";
        let ids: Vec<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(now).fetch_all(pool).await?
        });
        Ok(ids.into_iter().collect())
    }

    /// Forgets revocations whose tokens have expired; returns how many.
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM consent_token_revocations WHERE expires_at <= $1";
        Ok(on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(now).execute(pool).await?.rows_affected()
        }))
    }
}

/// The revoked ids every request to `/mcp` is checked against: a snapshot of
/// [`Revocations::snapshot`], swapped whole on each refresh (readers take an `Arc`, never
/// wait for the database), and the disabled people (by id, with their email), whose
/// tokens are refused whatever their grants. A revocation made by this process is added
/// at once ([`RevokedSet::insert`], [`RevokedSet::set_disabled`]), so it takes effect on
/// the very next call; one made by another replica arrives with the next refresh (the
/// proxy refreshes every second).
#[derive(Debug, Clone)]
pub struct RevokedSet {
    store: Revocations,
    users: Users,
    /// Read on every call: loads, no lock.
    ids: Arc<ArcSwap<HashSet<String>>>,
    disabled: Arc<ArcSwap<HashMap<String, String>>>,
    /// Ids inserted locally in the last [`LOCAL_MEMORY`]: a refresh whose read began
    /// before their row was written must not drop them.
    local: Arc<Mutex<Vec<(String, Instant)>>>,
}

/// How long a locally inserted id is kept across refreshes regardless of the table.
const LOCAL_MEMORY: Duration = Duration::from_secs(30);

impl RevokedSet {
    /// Loads the set from the database.
    pub async fn load(db: Db, now: i64) -> Result<Self, StoreError> {
        // Only read here: the clock stamps writes, which this view never makes.
        let users = Users::new(db.clone(), Arc::new(warrant_idp::SystemClock));
        let store = Revocations::new(db);
        let ids = store.snapshot(now).await?;
        let disabled = disabled_of(&users).await?;
        Ok(Self {
            store,
            users,
            ids: Arc::new(ArcSwap::from_pointee(ids)),
            disabled: Arc::new(ArcSwap::from_pointee(disabled)),
            local: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// Re-reads the set from the database.
    pub async fn refresh(&self, now: i64) -> Result<(), StoreError> {
        let disabled = disabled_of(&self.users).await?;
        self.disabled.store(Arc::new(disabled));
        let mut fresh = self.store.snapshot(now).await?;
        {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            local.retain(|(_, at)| at.elapsed() < LOCAL_MEMORY);
            fresh.extend(local.iter().map(|(id, _)| id.clone()));
        }
        self.ids.store(Arc::new(fresh));
        Ok(())
    }

    /// Adds ids revoked by this process (after writing them to the table), effective at
    /// once.
    pub fn insert(&self, revoked: &[String]) {
        {
            let mut local = self.local.lock().unwrap_or_else(|p| p.into_inner());
            let at = Instant::now();
            local.extend(revoked.iter().map(|id| (id.clone(), at)));
        }
        self.ids.rcu(|ids| {
            let mut next = HashSet::clone(ids);
            next.extend(revoked.iter().cloned());
            next
        });
    }

    /// Records that this process disabled (`Some(email)`) or enabled (`None`) the
    /// person `user`, effective at once (the next refresh reads the table anyway).
    pub fn set_disabled(&self, user: &str, email: Option<&str>) {
        self.disabled.rcu(|disabled| {
            let mut next = HashMap::clone(disabled);
            match email {
                Some(email) => next.insert(user.to_owned(), email.to_owned()),
                None => next.remove(user),
            };
            next
        });
    }

    /// The current set (cheap: an `Arc`).
    pub fn current(&self) -> Arc<HashSet<String>> {
        self.ids.load_full()
    }

    /// The disabled people now (user id → email).
    pub fn disabled(&self) -> Arc<HashMap<String, String>> {
        self.disabled.load_full()
    }

    /// What a token is checked against: the revoked ids and the disabled people, as
    /// they are now (two `Arc`s).
    pub fn view(&self) -> RevokedView {
        RevokedView {
            ids: self.current(),
            disabled: self.disabled.load_full(),
        }
    }
}

/// A [`RevokedSet`] at one instant, for
/// [`Verifier::verify_unrevoked`](crate::token::Verifier::verify_unrevoked).
#[derive(Debug, Clone)]
pub struct RevokedView {
    ids: Arc<HashSet<String>>,
    disabled: Arc<HashMap<String, String>>,
}

impl crate::token::Revocations for RevokedView {
    fn is_revoked(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    fn disabled_user(&self, user: &str) -> Option<String> {
        self.disabled.get(user).cloned()
    }
}

async fn disabled_of(users: &Users) -> Result<HashMap<String, String>, StoreError> {
    let people = users.disabled().await.map_err(|e| match e {
        warrant_idp::IdpError::Storage(e) => StoreError::Storage(e),
        other => StoreError::Invalid(other.to_string()),
    })?;
    Ok(people.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grants::Grants;
    use crate::oauth::test_support::fixture;

    #[tokio::test]
    async fn snapshot_holds_revoked_tokens_and_grants() {
        let f = fixture(1_000).await;
        let revocations = Revocations::new(f.db.clone());
        assert!(
            revocations
                .snapshot(1_000)
                .await
                .expect("snapshot")
                .is_empty()
        );
        revocations
            .add(&["cafe".to_owned()], 1_600)
            .await
            .expect("add");
        Grants::new(f.db.clone())
            .revoke(&f.grant.id, 1_100)
            .await
            .expect("revoke");
        let set = revocations.snapshot(1_200).await.expect("snapshot");
        assert!(set.contains("cafe"));
        assert!(set.contains(&f.grant.id));
        let later = revocations.snapshot(1_000 + 3600).await.expect("snapshot");
        assert!(
            later.is_empty(),
            "expired tokens and grants need no revocation entry"
        );
    }

    #[tokio::test]
    async fn revoked_ids_are_found_until_purged() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        db.migrate().await.expect("migrate");
        let revocations = Revocations::new(db);
        let ids = vec!["aa01".to_owned(), "bb02".to_owned()];
        assert!(!revocations.any_revoked(&ids).await.expect("check"));
        revocations.add(&ids[..1], 500).await.expect("add");
        revocations
            .add(&ids[..1], 500)
            .await
            .expect("adding twice is harmless");
        assert!(revocations.any_revoked(&ids).await.expect("check"));
        assert!(!revocations.any_revoked(&ids[1..]).await.expect("check"));
        assert_eq!(revocations.purge(499).await.expect("purge"), 0);
        assert_eq!(revocations.purge(500).await.expect("purge"), 1);
        assert!(!revocations.any_revoked(&ids).await.expect("check"));
    }

    #[tokio::test]
    async fn revoked_set_sees_local_inserts_at_once_and_other_writers_on_refresh() {
        let f = fixture(1_000).await;
        let set = RevokedSet::load(f.db.clone(), 1_000).await.expect("load");
        assert!(set.current().is_empty());
        // Another replica revokes a grant: seen after the next refresh.
        Grants::new(f.db.clone())
            .revoke(&f.grant.id, 1_010)
            .await
            .expect("revoke");
        assert!(!set.current().contains(&f.grant.id));
        set.refresh(1_020).await.expect("refresh");
        assert!(set.current().contains(&f.grant.id));
        // This process revokes a token: seen at once, and kept by a refresh that read
        // the table before the row was written.
        set.insert(&["beef".to_owned()]);
        assert!(set.current().contains("beef"));
        set.refresh(1_030).await.expect("refresh");
        assert!(set.current().contains("beef"));
        assert!(set.current().contains(&f.grant.id));
    }
}
