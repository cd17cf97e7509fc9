//! Grants (`consent_grants`): what a person allowed an agent (an OAuth client) to do on
//! a resource — tool patterns allowed and denied, an optional risk ceiling, constraints
//! on the arguments of tools, an optional call budget per hour — and until when. Access
//! and refresh tokens are issued under a grant; revoking the grant ends them.

use warrant_idp::db::Db;
use warrant_idp::on_pool;

use crate::oauth::{StoreError, from_json, to_json};
use crate::token::ArgConstraint;

/// The most argument constraints one grant may carry.
pub const MAX_ARG_CONSTRAINTS: usize = 64;

/// A grant to create.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub user_id: String,
    pub client_id: String,
    pub resource: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub max_risk: Option<String>,
    /// What the arguments of calls must be (each scoped to tools, or to every call).
    pub args: Vec<ArgConstraint>,
    /// The most calls per clock hour (`None`: no budget).
    pub calls_per_hour: Option<i64>,
    pub expires_at: i64,
}

/// A grant as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub id: String,
    pub user_id: String,
    pub client_id: String,
    pub resource: String,
    pub allow: Vec<String>,
    pub deny: Vec<String>,
    pub max_risk: Option<String>,
    /// What the arguments of calls must be (the token's consent block enforces them).
    pub args: Vec<ArgConstraint>,
    /// The most calls per clock hour (`None`: no budget); the gateway counts them.
    pub calls_per_hour: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl Grant {
    /// Whether the grant is neither revoked nor expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at > now
    }
}

#[derive(sqlx::FromRow)]
struct GrantRow {
    id: String,
    user_id: String,
    client_id: String,
    resource: String,
    allow: String,
    deny: String,
    max_risk: Option<String>,
    args: String,
    calls_per_hour: Option<i64>,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
}

impl GrantRow {
    fn into_grant(self) -> Result<Grant, StoreError> {
        Ok(Grant {
            allow: from_json("grant allow patterns", &self.allow)?,
            deny: from_json("grant deny patterns", &self.deny)?,
            args: serde_json::from_str(&self.args).map_err(|source| StoreError::Json {
                what: "grant argument constraints",
                source,
            })?,
            calls_per_hour: self.calls_per_hour,
            id: self.id,
            user_id: self.user_id,
            client_id: self.client_id,
            resource: self.resource,
            max_risk: self.max_risk,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        })
    }
}

const COLUMNS: &str = "id, user_id, client_id, resource, allow, deny, max_risk, args, \
    calls_per_hour, created_at, expires_at, revoked_at";

/// The grant store.
#[derive(Debug, Clone)]
pub struct Grants {
    db: Db,
}

impl Grants {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records a grant.
    pub async fn create(&self, new: &NewGrant, now: i64) -> Result<Grant, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let allow = to_json("grant allow patterns", &new.allow)?;
        let deny = to_json("grant deny patterns", &new.deny)?;
        if new.args.len() > MAX_ARG_CONSTRAINTS {
            return Err(StoreError::Invalid(format!(
                "a grant carries at most {MAX_ARG_CONSTRAINTS} argument constraints"
            )));
        }
        if new.calls_per_hour.is_some_and(|n| n < 1) {
            return Err(StoreError::Invalid(
                "a call budget is at least 1 call per hour".into(),
            ));
        }
        let args = serde_json::to_string(&new.args).map_err(|source| StoreError::Json {
            what: "grant argument constraints",
            source,
        })?;
        let sql = "INSERT INTO consent_grants (id, user_id, client_id, resource, allow, deny, \
                   max_risk, args, calls_per_hour, created_at, expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(&id)
                .bind(&new.user_id)
                .bind(&new.client_id)
                .bind(&new.resource)
                .bind(&allow)
                .bind(&deny)
                .bind(&new.max_risk)
                .bind(&args)
                .bind(new.calls_per_hour)
                .bind(now)
                .bind(new.expires_at)
                .execute(pool)
                .await?;
        });
        tracing::info!(grant = %id, user = %new.user_id, client = %new.client_id, "grant created");
        Ok(Grant {
            id,
            user_id: new.user_id.clone(),
            client_id: new.client_id.clone(),
            resource: new.resource.clone(),
            allow: new.allow.clone(),
            deny: new.deny.clone(),
            max_risk: new.max_risk.clone(),
            args: new.args.clone(),
            calls_per_hour: new.calls_per_hour,
            created_at: now,
            expires_at: new.expires_at,
            revoked_at: None,
        })
    }

    pub async fn get(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM consent_grants WHERE id = $1");
        let row: Option<GrantRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?
        });
        row.map(GrantRow::into_grant).transpose()
    }

    /// The live grants a user gave a client on a resource, newest first.
    pub async fn live(
        &self,
        user_id: &str,
        client_id: &str,
        resource: &str,
        now: i64,
    ) -> Result<Vec<Grant>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM consent_grants WHERE user_id = $1 AND client_id = $2 \
             AND resource = $3 AND revoked_at IS NULL AND expires_at > $4 \
             ORDER BY created_at DESC, id DESC"
        );
        let rows: Vec<GrantRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql)
                .bind(user_id)
                .bind(client_id)
                .bind(resource)
                .bind(now)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(GrantRow::into_grant).collect()
    }

    /// Whether the user ever gave this client a grant (the consent screen says when an
    /// agent is new to the person).
    pub async fn any_for(&self, user_id: &str, client_id: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM consent_grants WHERE user_id = $1 AND client_id = $2";
        let n: i64 = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(user_id).bind(client_id).fetch_one(pool).await?
        });
        Ok(n > 0)
    }

    /// Revokes a grant and every refresh token issued under it. Returns whether the
    /// grant was live. (Access tokens issued under it end at their short expiry, or
    /// sooner through their revocation ids.)
    pub async fn revoke(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        let grant_sql =
            "UPDATE consent_grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
        let tokens_sql = "UPDATE consent_refresh_tokens SET revoked_at = $2 \
                          WHERE grant_id = $1 AND revoked_at IS NULL";
        let n = on_pool!(&self.db, pool => {
            let mut tx = warrant_idp::db::begin_write(pool).await?;
            let n = sqlx::query(grant_sql).bind(id).bind(now).execute(&mut *tx).await?.rows_affected();
            sqlx::query(tokens_sql).bind(id).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            n
        });
        if n > 0 {
            tracing::info!(grant = %id, "grant revoked");
        }
        Ok(n > 0)
    }

    /// Revokes every grant `user_id` gave (to any agent) and every refresh token issued
    /// under them, in one transaction. Returns the ids of the grants it revoked (for the
    /// live revocation set).
    pub async fn revoke_all_of(&self, user_id: &str, now: i64) -> Result<Vec<String>, StoreError> {
        let live = "SELECT id FROM consent_grants WHERE user_id = $1 AND revoked_at IS NULL";
        let grants_sql = "UPDATE consent_grants SET revoked_at = $2 \
                          WHERE user_id = $1 AND revoked_at IS NULL";
        let tokens_sql = "UPDATE consent_refresh_tokens SET revoked_at = $2 \
                          WHERE user_id = $1 AND revoked_at IS NULL";
        let ids: Vec<String> = on_pool!(&self.db, pool => {
            let mut tx = warrant_idp::db::begin_write(pool).await?;
            let ids = sqlx::query_scalar(live).bind(user_id).fetch_all(&mut *tx).await?;
            sqlx::query(grants_sql).bind(user_id).bind(now).execute(&mut *tx).await?;
            sqlx::query(tokens_sql).bind(user_id).bind(now).execute(&mut *tx).await?;
            tx.commit().await?;
            ids
        });
        tracing::info!(user = %user_id, grants = ids.len(), "every grant of the user revoked");
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::test_support::{RESOURCE, fixture, fixture_on_test_backend};

    #[tokio::test]
    async fn grant_round_trips_and_is_found_while_live() {
        let f = fixture(1_000).await;
        let grants = Grants::new(f.db.clone());
        let stored = grants.get(&f.grant.id).await.expect("get").expect("found");
        assert_eq!(stored, f.grant);
        assert!(stored.is_live(1_000));
        assert!(!stored.is_live(1_000 + 3600));

        let live = grants
            .live(&f.user_id, &f.client_id, RESOURCE, 1_500)
            .await
            .expect("live");
        assert_eq!(live, vec![f.grant.clone()]);
        let later = grants
            .live(&f.user_id, &f.client_id, RESOURCE, 5_000)
            .await
            .expect("live");
        assert!(later.is_empty(), "an expired grant is not live");
        let other = grants
            .live(&f.user_id, &f.client_id, "https://other/mcp", 1_500)
            .await
            .expect("live");
        assert!(other.is_empty(), "a grant covers its own resource only");
        assert!(grants.any_for(&f.user_id, &f.client_id).await.expect("any"));
        assert!(!grants.any_for(&f.user_id, "other").await.expect("any"));
    }

    #[tokio::test]
    async fn argument_constraints_and_a_budget_round_trip_on_the_test_backend() {
        use crate::token::{ArgRule, ToolPattern};
        let f = fixture_on_test_backend(1_000).await;
        let grants = Grants::new(f.db.clone());
        let stored = grants.get(&f.grant.id).await.expect("get").expect("found");
        assert_eq!(stored.args, Vec::new(), "a grant without constraints");
        assert_eq!(stored.calls_per_hour, None, "a grant without a budget");

        let tool = |t: &str| vec![ToolPattern::parse(t).expect("pattern")];
        let args = vec![
            ArgConstraint {
                name: "title".into(),
                rule: ArgRule::Prefix("docs/".into()),
                tools: tool("demo.write_note"),
            },
            ArgConstraint {
                name: "channel".into(),
                rule: ArgRule::Equals("#support".into()),
                tools: tool("slack.post"),
            },
            ArgConstraint {
                name: "currency".into(),
                rule: ArgRule::OneOf(vec!["EUR".into(), "USD".into()]),
                tools: Vec::new(),
            },
        ];
        let new = NewGrant {
            user_id: f.user_id.clone(),
            client_id: f.client_id.clone(),
            resource: RESOURCE.into(),
            allow: vec!["demo.*".into()],
            deny: vec!["demo.delete_*".into()],
            max_risk: Some("high".into()),
            args: args.clone(),
            calls_per_hour: Some(3),
            expires_at: 5_000,
        };
        let created = grants.create(&new, 1_100).await.expect("create");
        let stored = grants.get(&created.id).await.expect("get").expect("found");
        assert_eq!(stored, created);
        assert_eq!(stored.args, args);
        assert_eq!(stored.calls_per_hour, Some(3));
        let live = grants
            .live(&f.user_id, &f.client_id, RESOURCE, 1_200)
            .await
            .expect("live");
        assert_eq!(
            live.first(),
            Some(&created),
            "newest first, with its constraints"
        );

        let refused = grants
            .create(
                &NewGrant {
                    calls_per_hour: Some(0),
                    ..new.clone()
                },
                1_100,
            )
            .await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
        let too_many = NewGrant {
            args: vec![args[0].clone(); MAX_ARG_CONSTRAINTS + 1],
            ..new
        };
        let refused = grants.create(&too_many, 1_100).await;
        assert!(
            matches!(refused, Err(StoreError::Invalid(_))),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn revoked_grant_is_not_live_and_revoking_twice_says_so() {
        let f = fixture(1_000).await;
        let grants = Grants::new(f.db.clone());
        assert!(grants.revoke(&f.grant.id, 1_100).await.expect("revoke"));
        assert!(!grants.revoke(&f.grant.id, 1_200).await.expect("revoke"));
        let stored = grants.get(&f.grant.id).await.expect("get").expect("found");
        assert_eq!(stored.revoked_at, Some(1_100));
        assert!(!stored.is_live(1_150));
        let live = grants
            .live(&f.user_id, &f.client_id, RESOURCE, 1_150)
            .await
            .expect("live");
        assert!(live.is_empty());
    }

    #[tokio::test]
    async fn revoking_all_of_a_person_revokes_their_live_grants_only() {
        let f = fixture_on_test_backend(1_000).await;
        let grants = Grants::new(f.db.clone());
        let second = grants
            .create(
                &NewGrant {
                    user_id: f.user_id.clone(),
                    client_id: f.client_id.clone(),
                    resource: RESOURCE.into(),
                    allow: vec!["demo.*".into()],
                    deny: Vec::new(),
                    max_risk: None,
                    args: Vec::new(),
                    calls_per_hour: None,
                    expires_at: 5_000,
                },
                1_010,
            )
            .await
            .expect("create");
        let mut ids = grants
            .revoke_all_of(&f.user_id, 1_100)
            .await
            .expect("revoke");
        ids.sort();
        let mut expected = vec![f.grant.id.clone(), second.id.clone()];
        expected.sort();
        assert_eq!(ids, expected);
        for id in &expected {
            let stored = grants.get(id).await.expect("get").expect("found");
            assert_eq!(stored.revoked_at, Some(1_100));
        }
        assert!(
            grants
                .revoke_all_of(&f.user_id, 1_200)
                .await
                .expect("again")
                .is_empty(),
            "nothing live is left"
        );
        assert!(
            grants
                .revoke_all_of("someone-else", 1_200)
                .await
                .expect("other")
                .is_empty()
        );
    }
}
