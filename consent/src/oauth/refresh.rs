//! Refresh tokens (`consent_refresh_tokens`): stored as hashes, rotated on every use.
//! Every token descends from one authorization code; they share a `family_id`. Each
//! records the access token issued with it (its revocation ids). Using a token that was
//! already used (a stolen copy, or the client's replay) revokes the whole family and
//! every access token the family minted (OAuth 2.1 §4.3.1, refresh token rotation).

use warrant_idp::db::Db;
use warrant_idp::on_pool;
use warrant_idp::secret::{hash_token, random_token};

use super::{Revocations, StoreError, from_json, to_json};

/// A refresh token to issue.
#[derive(Debug, Clone)]
pub struct NewRefreshToken {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub grant_id: String,
    pub resource: String,
    pub scope: Option<String>,
    pub expires_at: i64,
    /// The access token issued with it: its revocation ids (hex) and its expiry.
    pub access_revocation_ids: Vec<String>,
    pub access_expires_at: i64,
}

/// A refresh token as stored (without the token itself).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct RefreshToken {
    pub family_id: String,
    pub client_id: String,
    pub user_id: String,
    pub grant_id: String,
    pub resource: String,
    pub scope: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Why a refresh token cannot be used (all are `invalid_grant` to the client).
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error("unknown refresh token, or issued to another client")]
    Unknown,
    #[error("the refresh token has expired")]
    Expired,
    #[error("the refresh token was revoked")]
    Revoked,
    #[error(
        "the refresh token was already used; its family and the access tokens it minted \
         are revoked"
    )]
    Reused {
        /// The revocation ids of the access tokens revoked with the family.
        revoked: Vec<String>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for RefreshError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Storage(e))
    }
}

const COLUMNS: &str = "family_id, client_id, user_id, grant_id, resource, scope, created_at, \
    expires_at, used_at, revoked_at";

/// The refresh-token store.
#[derive(Debug, Clone)]
pub struct RefreshTokens {
    db: Db,
}

impl RefreshTokens {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Issues a refresh token; returns the token, shown to the client once.
    pub async fn issue(&self, new: &NewRefreshToken, now: i64) -> Result<String, StoreError> {
        let token = random_token();
        let access = to_json("revocation ids", &new.access_revocation_ids)?;
        let sql = "INSERT INTO consent_refresh_tokens (token_hash, family_id, client_id, \
                   user_id, grant_id, resource, scope, created_at, expires_at, \
                   access_revocation_ids, access_expires_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(hash_token(&token))
                .bind(&new.family_id)
                .bind(&new.client_id)
                .bind(&new.user_id)
                .bind(&new.grant_id)
                .bind(&new.resource)
                .bind(&new.scope)
                .bind(now)
                .bind(new.expires_at)
                .bind(&access)
                .bind(new.access_expires_at)
                .execute(pool)
                .await?;
        });
        Ok(token)
    }

    /// Spends `token` for `client_id`: marks it used (atomically, once) and returns it,
    /// so that the caller issues its successor in the same family. A token already used
    /// revokes its family and is [`RefreshError::Reused`].
    pub async fn spend(
        &self,
        token: &str,
        client_id: &str,
        now: i64,
    ) -> Result<RefreshToken, RefreshError> {
        let hash = hash_token(token);
        let spend = "UPDATE consent_refresh_tokens SET used_at = $2 WHERE token_hash = $1 \
                     AND client_id = $3 AND used_at IS NULL AND revoked_at IS NULL \
                     AND expires_at > $2";
        let n = on_pool!(&self.db, pool => {
            sqlx::query(spend).bind(&hash).bind(now).bind(client_id).execute(pool).await?.rows_affected()
        });
        let row = self.by_hash(&hash).await?;
        let Some(row) = row.filter(|r| r.client_id == client_id) else {
            return Err(RefreshError::Unknown);
        };
        if n == 1 {
            return Ok(row);
        }
        if row.revoked_at.is_some() {
            return Err(RefreshError::Revoked);
        }
        if row.used_at.is_some() {
            let revoked = self.revoke_family(&row.family_id, now).await?;
            tracing::warn!(
                family = %row.family_id,
                client = %row.client_id,
                access_tokens = revoked.len(),
                "refresh token reused: family and its access tokens revoked"
            );
            return Err(RefreshError::Reused { revoked });
        }
        Err(RefreshError::Expired)
    }

    /// Revokes `token`'s whole family (RFC 7009). Returns whether the token was known
    /// to be `client_id`'s.
    pub async fn revoke(
        &self,
        token: &str,
        client_id: &str,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        match self.by_hash(&hash_token(token)).await? {
            Some(row) if row.client_id == client_id => {
                self.revoke_family(&row.family_id, now).await?;
                Ok(Some(row.grant_id))
            }
            _ => Ok(None),
        }
    }

    /// Revokes every live token of a family, and every access token the family minted
    /// that has not expired (added to the revocation list). Returns the revocation ids of
    /// those access tokens.
    pub async fn revoke_family(
        &self,
        family_id: &str,
        now: i64,
    ) -> Result<Vec<String>, StoreError> {
        let sql = "UPDATE consent_refresh_tokens SET revoked_at = $2 \
                   WHERE family_id = $1 AND revoked_at IS NULL";
        let minted = "SELECT access_revocation_ids, access_expires_at \
                      FROM consent_refresh_tokens WHERE family_id = $1 \
                      AND access_revocation_ids IS NOT NULL AND access_expires_at > $2";
        let rows: Vec<(String, i64)> = on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(family_id).bind(now).execute(pool).await?;
            sqlx::query_as(minted).bind(family_id).bind(now).fetch_all(pool).await?
        });
        let revocations = Revocations::new(self.db.clone());
        let mut revoked = Vec::new();
        for (ids, expires_at) in rows {
            let ids: Vec<String> = from_json("revocation ids", &ids)?;
            revocations.add(&ids, expires_at).await?;
            revoked.extend(ids);
        }
        Ok(revoked)
    }

    /// Forgets tokens expired at `now` (used or not); returns how many.
    pub async fn purge(&self, now: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM consent_refresh_tokens WHERE expires_at <= $1";
        Ok(on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(now).execute(pool).await?.rows_affected()
        }))
    }

    async fn by_hash(&self, hash: &str) -> Result<Option<RefreshToken>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM consent_refresh_tokens WHERE token_hash = $1");
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(hash).fetch_optional(pool).await?
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::test_support::{Fixture, RESOURCE, fixture};

    fn new_token(f: &Fixture, family: &str, expires_at: i64) -> NewRefreshToken {
        NewRefreshToken {
            family_id: family.into(),
            client_id: f.client_id.clone(),
            user_id: f.user_id.clone(),
            grant_id: f.grant.id.clone(),
            resource: RESOURCE.into(),
            scope: None,
            expires_at,
            access_revocation_ids: vec![format!("{family}-{expires_at}")],
            access_expires_at: 1_600,
        }
    }

    #[tokio::test]
    async fn rotation_spends_each_token_once_and_reuse_revokes_the_family() {
        let f = fixture(1_000).await;
        let tokens = RefreshTokens::new(f.db.clone());
        let first = tokens
            .issue(&new_token(&f, "fam", 10_000), 1_000)
            .await
            .expect("issue");
        let spent = tokens
            .spend(&first, &f.client_id, 1_010)
            .await
            .expect("spend");
        assert_eq!(spent.family_id, "fam");
        assert_eq!(spent.grant_id, f.grant.id);
        let second = tokens
            .issue(&new_token(&f, "fam", 10_000), 1_010)
            .await
            .expect("issue");

        // The first token again: reuse, the family (the second token too) is revoked,
        // and the access tokens issued with each.
        let err = tokens
            .spend(&first, &f.client_id, 1_020)
            .await
            .expect_err("reuse");
        let RefreshError::Reused { revoked } = err else {
            panic!("reuse: {err}");
        };
        assert_eq!(revoked, ["fam-10000", "fam-10000"]);
        assert!(
            Revocations::new(f.db.clone())
                .any_revoked(&revoked)
                .await
                .expect("check")
        );
        let err = tokens
            .spend(&second, &f.client_id, 1_030)
            .await
            .expect_err("revoked");
        assert!(matches!(err, RefreshError::Revoked), "{err}");
    }

    #[tokio::test]
    async fn unknown_foreign_and_expired_tokens_are_refused() {
        let f = fixture(1_000).await;
        let tokens = RefreshTokens::new(f.db.clone());
        let token = tokens
            .issue(&new_token(&f, "fam", 2_000), 1_000)
            .await
            .expect("issue");
        let err = tokens
            .spend("nope", &f.client_id, 1_010)
            .await
            .expect_err("unknown");
        assert!(matches!(err, RefreshError::Unknown));
        let err = tokens
            .spend(&token, "another-client", 1_010)
            .await
            .expect_err("foreign");
        assert!(matches!(err, RefreshError::Unknown));
        let err = tokens
            .spend(&token, &f.client_id, 2_000)
            .await
            .expect_err("expired");
        assert!(matches!(err, RefreshError::Expired));
        assert_eq!(tokens.purge(2_000).await.expect("purge"), 1);
        let err = tokens
            .spend(&token, &f.client_id, 2_001)
            .await
            .expect_err("gone");
        assert!(matches!(err, RefreshError::Unknown));
        let n = crate::oauth::purge_expired(&f.db, 2_001)
            .await
            .expect("purge");
        assert_eq!(n, 0);
    }

    #[tokio::test]
    async fn revoking_a_token_revokes_its_family() {
        let f = fixture(1_000).await;
        let tokens = RefreshTokens::new(f.db.clone());
        let a = tokens
            .issue(&new_token(&f, "fam", 9_000), 1_000)
            .await
            .expect("issue");
        let b = tokens
            .issue(&new_token(&f, "fam", 9_000), 1_000)
            .await
            .expect("issue");
        let other = tokens
            .issue(&new_token(&f, "other", 9_000), 1_000)
            .await
            .expect("issue");
        assert_eq!(
            tokens
                .revoke(&a, "another-client", 1_005)
                .await
                .expect("revoke"),
            None
        );
        assert_eq!(
            tokens
                .revoke(&a, &f.client_id, 1_005)
                .await
                .expect("revoke"),
            Some(f.grant.id.clone())
        );
        let err = tokens
            .spend(&b, &f.client_id, 1_010)
            .await
            .expect_err("revoked");
        assert!(matches!(err, RefreshError::Revoked));
        tokens
            .spend(&other, &f.client_id, 1_010)
            .await
            .expect("another family lives");
    }
}
