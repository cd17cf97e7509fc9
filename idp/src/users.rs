//! Users, roles and groups. Owned tables: `idp_users`, `idp_user_groups`,
//! `idp_identities`. A user's `id` (UUID v7) is the stable subject every other crate
//! refers to; emails are stored lower-cased and unique.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::db::Db;
use crate::error::IdpError;
use crate::on_pool;

/// What a user may administer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "member" => Some(Self::Member),
            _ => None,
        }
    }
}

/// Whether a user may sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    /// Invited by an admin, not signed in yet (becomes active at first sign-in).
    Invited,
    /// Refused at sign-in; every session ended when it was set.
    Disabled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Invited => "invited",
            Self::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "invited" => Some(Self::Invited),
            "disabled" => Some(Self::Disabled),
            _ => None,
        }
    }
}

/// A person known to Warrant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub status: Status,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: String,
    email: String,
    display_name: String,
    role: String,
    status: String,
    created_at: i64,
    last_login_at: Option<i64>,
}

impl UserRow {
    fn into_user(self) -> Result<User, IdpError> {
        let role = Role::parse(&self.role).ok_or_else(|| {
            IdpError::Invalid(format!("user {} has role {:?}", self.id, self.role))
        })?;
        let status = Status::parse(&self.status).ok_or_else(|| {
            IdpError::Invalid(format!("user {} has status {:?}", self.id, self.status))
        })?;
        Ok(User {
            id: self.id,
            email: self.email,
            display_name: self.display_name,
            role,
            status,
            created_at: self.created_at,
            last_login_at: self.last_login_at,
        })
    }
}

/// A user about to be created.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub status: Status,
}

/// Where a group membership comes from: the admin, or a provider's groups claim (which
/// is replaced at each sign-in through that provider).
pub const ADMIN_SOURCE: &str = "admin";

/// The user store.
#[derive(Debug, Clone)]
pub struct Users {
    db: Db,
    clock: Arc<dyn Clock>,
}

const COLUMNS: &str = "id, email, display_name, role, status, created_at, last_login_at";

/// Normalises an email address for storage and lookup.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A minimal shape check of an email address (one `@`, a dot in the domain, no spaces):
/// the real check is that mail arrives.
pub fn plausible_email(email: &str) -> bool {
    let email = email.trim();
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

impl Users {
    pub fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    pub async fn get(&self, id: &str) -> Result<Option<User>, IdpError> {
        let sql = format!("SELECT {COLUMNS} FROM idp_users WHERE id = $1");
        let row: Option<UserRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(UserRow::into_user).transpose()
    }

    pub async fn by_email(&self, email: &str) -> Result<Option<User>, IdpError> {
        let sql = format!("SELECT {COLUMNS} FROM idp_users WHERE email = $1");
        let email = normalize_email(email);
        let row: Option<UserRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(&email).fetch_optional(pool).await?
        });
        row.map(UserRow::into_user).transpose()
    }

    /// Every user, by email.
    pub async fn list(&self) -> Result<Vec<User>, IdpError> {
        let sql = format!("SELECT {COLUMNS} FROM idp_users ORDER BY email");
        let rows: Vec<UserRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).fetch_all(pool).await?
        });
        rows.into_iter().map(UserRow::into_user).collect()
    }

    /// Creates a user; an email already taken is [`IdpError::EmailTaken`].
    pub async fn create(&self, new: NewUser) -> Result<User, IdpError> {
        let email = normalize_email(&new.email);
        if !plausible_email(&email) {
            return Err(IdpError::Invalid(format!(
                "{email:?} does not look like an email address"
            )));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let now = self.clock.unix();
        let sql = "INSERT INTO idp_users (id, email, display_name, role, status, created_at, \
                   updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)";
        let result = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(&id)
                .bind(&email)
                .bind(new.display_name.trim())
                .bind(new.role.as_str())
                .bind(new.status.as_str())
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        });
        match result {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(IdpError::EmailTaken);
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(user = %id, role = new.role.as_str(), "user created");
        self.get(&id).await?.ok_or(IdpError::NotFound("user"))
    }

    /// Whether any active admin exists (the first-admin bootstrap runs when none does).
    pub async fn any_admin(&self) -> Result<bool, IdpError> {
        let sql = "SELECT COUNT(*) FROM idp_users WHERE role = 'admin' AND status = 'active'";
        let n: i64 = on_pool!(&self.db, pool => sqlx::query_scalar(sql).fetch_one(pool).await?);
        Ok(n > 0)
    }

    /// The disabled people, as (id, email): every replica reads them each second, so
    /// that their agents' tokens are refused on `/mcp` wherever they call.
    pub async fn disabled(&self) -> Result<Vec<(String, String)>, IdpError> {
        let sql = "SELECT id, email FROM idp_users WHERE status = 'disabled'";
        Ok(on_pool!(&self.db, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }

    /// Sets the status. Disabling ends every session of the user in the same transaction.
    pub async fn set_status(&self, id: &str, status: Status) -> Result<(), IdpError> {
        let now = self.clock.unix();
        let update = "UPDATE idp_users SET status = $1, updated_at = $2 WHERE id = $3";
        let end_sessions = "DELETE FROM idp_sessions WHERE user_id = $1";
        let changed = on_pool!(&self.db, pool => {
            let mut tx = crate::db::begin_write(pool).await?;
            let changed = sqlx::query(update)
                .bind(status.as_str())
                .bind(now)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if status == Status::Disabled {
                sqlx::query(end_sessions).bind(id).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            changed
        });
        if changed == 0 {
            return Err(IdpError::NotFound("user"));
        }
        tracing::info!(user = %id, status = status.as_str(), "user status changed");
        Ok(())
    }

    pub async fn set_role(&self, id: &str, role: Role) -> Result<(), IdpError> {
        let sql = "UPDATE idp_users SET role = $1, updated_at = $2 WHERE id = $3";
        let now = self.clock.unix();
        let changed = on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(role.as_str()).bind(now).bind(id).execute(pool).await?.rows_affected()
        });
        if changed == 0 {
            return Err(IdpError::NotFound("user"));
        }
        tracing::info!(user = %id, role = role.as_str(), "user role changed");
        Ok(())
    }

    pub async fn set_display_name(&self, id: &str, name: &str) -> Result<(), IdpError> {
        let sql = "UPDATE idp_users SET display_name = $1, updated_at = $2 WHERE id = $3";
        let now = self.clock.unix();
        on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(name.trim()).bind(now).bind(id).execute(pool).await?.rows_affected()
        });
        Ok(())
    }

    /// Records a successful sign-in: `last_login_at`, and an invited user becomes active.
    pub async fn record_login(&self, id: &str) -> Result<(), IdpError> {
        let sql = "UPDATE idp_users SET last_login_at = $1, status = CASE WHEN status = \
                   'invited' THEN 'active' ELSE status END WHERE id = $2";
        let now = self.clock.unix();
        on_pool!(&self.db, pool => sqlx::query(sql).bind(now).bind(id).execute(pool).await?.rows_affected());
        Ok(())
    }

    /// The user's groups from every source, sorted, without duplicates.
    pub async fn groups(&self, id: &str) -> Result<Vec<String>, IdpError> {
        let sql = "SELECT DISTINCT group_name FROM idp_user_groups WHERE user_id = $1 \
                   ORDER BY group_name";
        let groups: Vec<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(id).fetch_all(pool).await?
        });
        Ok(groups)
    }

    /// The user's groups from one source, sorted.
    pub async fn groups_from(&self, id: &str, source: &str) -> Result<Vec<String>, IdpError> {
        let sql = "SELECT group_name FROM idp_user_groups WHERE user_id = $1 AND source = $2 \
                   ORDER BY group_name";
        let groups: Vec<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(id).bind(source).fetch_all(pool).await?
        });
        Ok(groups)
    }

    /// The users in `group` (from any source), sorted.
    pub async fn members(&self, group: &str) -> Result<Vec<String>, IdpError> {
        let sql = "SELECT DISTINCT user_id FROM idp_user_groups WHERE group_name = $1 \
                   ORDER BY user_id";
        let members: Vec<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(group).fetch_all(pool).await?
        });
        Ok(members)
    }

    /// Every user's (id, email), to name people in words without a query each.
    pub async fn emails(&self) -> Result<Vec<(String, String)>, IdpError> {
        let sql = "SELECT id, email FROM idp_users";
        let rows: Vec<(String, String)> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        Ok(rows)
    }

    /// The members of each of `groups` (from any source), as (user id, group) pairs, in
    /// one query per 500 groups.
    pub async fn members_of(&self, groups: &[String]) -> Result<Vec<(String, String)>, IdpError> {
        let mut pairs = Vec::new();
        for chunk in groups.chunks(500) {
            let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT DISTINCT user_id, group_name FROM idp_user_groups \
                 WHERE group_name IN ({}) ORDER BY group_name, user_id",
                marks.join(", ")
            );
            let rows: Vec<(String, String)> = on_pool!(&self.db, pool => {
                let mut query = sqlx::query_as(&sql);
                for group in chunk {
                    query = query.bind(group);
                }
                query.fetch_all(pool).await?
            });
            pairs.extend(rows);
        }
        Ok(pairs)
    }

    /// Every group some user is in, with how many users it has, by name.
    pub async fn all_groups(&self) -> Result<Vec<(String, i64)>, IdpError> {
        let sql = "SELECT group_name, COUNT(DISTINCT user_id) FROM idp_user_groups \
                   GROUP BY group_name ORDER BY group_name";
        let groups: Vec<(String, i64)> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        Ok(groups)
    }

    /// Replaces the groups that come from `source` (`admin`, or `oidc:<provider>`).
    pub async fn set_groups(
        &self,
        id: &str,
        source: &str,
        groups: &[String],
    ) -> Result<(), IdpError> {
        let clear = "DELETE FROM idp_user_groups WHERE user_id = $1 AND source = $2";
        let add = "INSERT INTO idp_user_groups (user_id, group_name, source) VALUES ($1, $2, $3) \
                   ON CONFLICT DO NOTHING";
        on_pool!(&self.db, pool => {
            let mut tx = crate::db::begin_write(pool).await?;
            sqlx::query(clear).bind(id).bind(source).execute(&mut *tx).await?;
            for group in groups {
                sqlx::query(add).bind(id).bind(group).bind(source).execute(&mut *tx).await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The user linked to a provider's subject, if any.
    pub async fn by_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<User>, IdpError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM idp_users WHERE id = (SELECT user_id FROM idp_identities \
             WHERE provider = $1 AND subject = $2)"
        );
        let row: Option<UserRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(provider).bind(subject).fetch_optional(pool).await?
        });
        row.map(UserRow::into_user).transpose()
    }

    /// The providers a user has a linked identity with, sorted (e.g. to tell whether a
    /// passkey is their only way in).
    pub async fn identity_providers(&self, id: &str) -> Result<Vec<String>, IdpError> {
        let sql = "SELECT DISTINCT provider FROM idp_identities WHERE user_id = $1 \
                   ORDER BY provider";
        let providers: Vec<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(id).fetch_all(pool).await?
        });
        Ok(providers)
    }

    /// Links a provider's subject to a user (idempotent), and stamps the sign-in.
    pub async fn link_identity(
        &self,
        provider: &str,
        subject: &str,
        user_id: &str,
    ) -> Result<(), IdpError> {
        let sql = "INSERT INTO idp_identities (provider, subject, user_id, created_at, \
                   last_login_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (provider, subject) \
                   DO UPDATE SET last_login_at = excluded.last_login_at";
        let now = self.clock.unix();
        on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(provider).bind(subject).bind(user_id).bind(now)
                .execute(pool).await?.rows_affected()
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    async fn users() -> (Users, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        db.migrate().await.expect("migrate");
        (Users::new(db, Arc::new(SystemClock)), dir)
    }

    #[tokio::test]
    async fn create_find_and_refuse_duplicates() {
        let (users, _dir) = users().await;
        let alice = users
            .create(NewUser {
                email: " Alice@Example.COM ".into(),
                display_name: "Alice".into(),
                role: Role::Admin,
                status: Status::Active,
            })
            .await
            .expect("create");
        assert_eq!(alice.email, "alice@example.com");
        assert!(users.any_admin().await.expect("count"));
        let again = users
            .create(NewUser {
                email: "alice@example.com".into(),
                display_name: "Other".into(),
                role: Role::Member,
                status: Status::Active,
            })
            .await;
        assert!(matches!(again, Err(IdpError::EmailTaken)));
        let found = users.by_email("ALICE@example.com").await.expect("lookup");
        assert_eq!(found.as_ref().map(|u| &u.id), Some(&alice.id));

        users
            .set_groups(&alice.id, "oidc:corp", &["eng".into(), "ops".into()])
            .await
            .expect("groups");
        users
            .set_groups(&alice.id, ADMIN_SOURCE, &["eng".into()])
            .await
            .expect("groups");
        assert_eq!(
            users.groups(&alice.id).await.expect("groups"),
            ["eng", "ops"]
        );
        assert_eq!(
            users.members("eng").await.expect("members"),
            std::slice::from_ref(&alice.id)
        );
        assert_eq!(
            users
                .members_of(&["ops".into(), "eng".into(), "nobody".into()])
                .await
                .expect("members"),
            [
                (alice.id.clone(), "eng".to_owned()),
                (alice.id.clone(), "ops".to_owned())
            ]
        );
        assert_eq!(
            users.all_groups().await.expect("all groups"),
            [("eng".to_owned(), 1), ("ops".to_owned(), 1)]
        );

        users
            .link_identity("corp", "sub-1", &alice.id)
            .await
            .expect("link");
        users
            .link_identity("corp", "sub-1", &alice.id)
            .await
            .expect("idempotent");
        let linked = users
            .by_identity("corp", "sub-1")
            .await
            .expect("by identity");
        assert_eq!(linked.map(|u| u.id), Some(alice.id.clone()));

        users
            .set_status(&alice.id, Status::Disabled)
            .await
            .expect("disable");
        assert!(!users.any_admin().await.expect("count"));
        assert_eq!(
            users.disabled().await.expect("disabled"),
            [(alice.id.clone(), alice.email.clone())]
        );
        assert!(matches!(
            users.set_status("nobody", Status::Active).await,
            Err(IdpError::NotFound(_))
        ));
    }

    #[test]
    fn email_shape() {
        assert!(plausible_email("a@b.co"));
        assert!(!plausible_email("a@b"));
        assert!(!plausible_email("@b.co"));
        assert!(!plausible_email("a b@c.co"));
        assert!(!plausible_email("a@@b.co"));
    }
}
