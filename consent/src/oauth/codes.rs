//! Authorization codes (`consent_auth_codes`): stored as hashes, redeemable once within
//! [`CODE_LIFETIME_SECS`](super::CODE_LIFETIME_SECS). Redemption is one atomic
//! `UPDATE … WHERE used_at IS NULL AND expires_at > now`; a replayed code revokes what
//! it produced — its refresh-token family and its access token's revocation ids
//! (OAuth 2.1 §4.1.3).

use warrant_idp::db::Db;
use warrant_idp::on_pool;
use warrant_idp::secret::{hash_token, random_token};

use super::{CODE_LIFETIME_SECS, RefreshTokens, Revocations, StoreError, from_json, to_json};

/// A code to issue, after the person approved (or a live grant covered) the request.
#[derive(Debug, Clone)]
pub struct NewCode {
    pub client_id: String,
    pub user_id: String,
    pub grant_id: String,
    /// Exactly as sent to `/authorize`; the token request must repeat it.
    pub redirect_uri: String,
    /// PKCE S256 code challenge.
    pub code_challenge: String,
    pub resource: String,
    pub scope: Option<String>,
}

/// A redeemed code as stored (without the code itself).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuthCode {
    pub client_id: String,
    pub user_id: String,
    pub grant_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub resource: String,
    pub scope: Option<String>,
    /// The refresh-token family this code starts.
    pub family_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

/// Why a code cannot be redeemed (all are `invalid_grant` to the client).
#[derive(Debug, thiserror::Error)]
pub enum CodeError {
    #[error("unknown authorization code")]
    Unknown,
    #[error("the authorization code has expired")]
    Expired,
    #[error("the authorization code was already used; what it produced is revoked")]
    Replayed,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for CodeError {
    fn from(e: sqlx::Error) -> Self {
        Self::Store(StoreError::Storage(e))
    }
}

#[derive(sqlx::FromRow)]
struct Issued {
    family_id: String,
    access_revocation_ids: Option<String>,
    access_expires_at: Option<i64>,
}

const COLUMNS: &str = "client_id, user_id, grant_id, redirect_uri, code_challenge, resource, \
    scope, family_id, created_at, expires_at, used_at";

/// The authorization-code store.
#[derive(Debug, Clone)]
pub struct Codes {
    db: Db,
}

impl Codes {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Issues a code; returns it (it goes to the client through the redirect).
    pub async fn issue(&self, new: &NewCode, now: i64) -> Result<String, StoreError> {
        let code = random_token();
        let family_id = uuid::Uuid::now_v7().to_string();
        let sql = "INSERT INTO consent_auth_codes (code_hash, client_id, user_id, grant_id, \
                   redirect_uri, code_challenge, resource, scope, family_id, created_at, \
                   expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
        on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(hash_token(&code))
                .bind(&new.client_id)
                .bind(&new.user_id)
                .bind(&new.grant_id)
                .bind(&new.redirect_uri)
                .bind(&new.code_challenge)
                .bind(&new.resource)
                .bind(&new.scope)
                .bind(&family_id)
                .bind(now)
                .bind(now + CODE_LIFETIME_SECS)
                .execute(pool)
                .await?;
        });
        Ok(code)
    }

    /// Redeems `code` once. The caller then checks the client, redirect URI and PKCE
    /// verifier against the returned row (a code spent on a failed check stays spent).
    /// A second redemption is [`CodeError::Replayed`] and revokes what the first produced.
    pub async fn redeem(&self, code: &str, now: i64) -> Result<AuthCode, CodeError> {
        let hash = hash_token(code);
        let spend = "UPDATE consent_auth_codes SET used_at = $2 WHERE code_hash = $1 \
                     AND used_at IS NULL AND expires_at > $2";
        let n = on_pool!(&self.db, pool => {
            sqlx::query(spend).bind(&hash).bind(now).execute(pool).await?.rows_affected()
        });
        let sql = format!("SELECT {COLUMNS} FROM consent_auth_codes WHERE code_hash = $1");
        let row: Option<AuthCode> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(&hash).fetch_optional(pool).await?
        });
        let Some(row) = row else {
            return Err(CodeError::Unknown);
        };
        if n == 1 {
            return Ok(row);
        }
        if row.used_at.is_some() {
            self.revoke_issued(&hash, now).await?;
            tracing::warn!(
                client = %row.client_id,
                grant = %row.grant_id,
                "authorization code replayed: tokens issued from it revoked"
            );
            return Err(CodeError::Replayed);
        }
        Err(CodeError::Expired)
    }

    /// Records the access token issued from `code` (its revocation ids, hex, and its
    /// expiry), so that a replay of the code can revoke it.
    pub async fn record_access_token(
        &self,
        code: &str,
        revocation_ids: &[String],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let ids = to_json("revocation ids", revocation_ids)?;
        let sql = "UPDATE consent_auth_codes SET access_revocation_ids = $2, \
                   access_expires_at = $3 WHERE code_hash = $1";
        on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(hash_token(code)).bind(&ids).bind(expires_at).execute(pool).await?;
        });
        Ok(())
    }

    async fn revoke_issued(&self, hash: &str, now: i64) -> Result<(), StoreError> {
        let sql = "SELECT family_id, access_revocation_ids, access_expires_at \
                   FROM consent_auth_codes WHERE code_hash = $1";
        let issued: Option<Issued> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(hash).fetch_optional(pool).await?
        });
        let Some(issued) = issued else {
            return Ok(());
        };
        RefreshTokens::new(self.db.clone())
            .revoke_family(&issued.family_id, now)
            .await?;
        if let (Some(ids), Some(expires_at)) =
            (issued.access_revocation_ids, issued.access_expires_at)
        {
            let ids = from_json("revocation ids", &ids)?;
            Revocations::new(self.db.clone())
                .add(&ids, expires_at)
                .await?;
        }
        Ok(())
    }

    /// Forgets codes expired before `before`; returns how many.
    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM consent_auth_codes WHERE expires_at <= $1";
        Ok(on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(before).execute(pool).await?.rows_affected()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::test_support::{Fixture, RESOURCE, fixture};
    use crate::oauth::{NewRefreshToken, RefreshError};

    fn new_code(f: &Fixture) -> NewCode {
        NewCode {
            client_id: f.client_id.clone(),
            user_id: f.user_id.clone(),
            grant_id: f.grant.id.clone(),
            redirect_uri: "http://127.0.0.1:49152/callback".into(),
            code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
            resource: RESOURCE.into(),
            scope: Some("mcp".into()),
        }
    }

    #[tokio::test]
    async fn a_code_redeems_once_with_what_was_approved() {
        let f = fixture(1_000).await;
        let codes = Codes::new(f.db.clone());
        let code = codes.issue(&new_code(&f), 1_000).await.expect("issue");
        let row = codes.redeem(&code, 1_030).await.expect("redeem");
        assert_eq!(row.redirect_uri, "http://127.0.0.1:49152/callback");
        assert_eq!(row.grant_id, f.grant.id);
        assert_eq!(row.user_id, f.user_id);
        assert_eq!(row.scope.as_deref(), Some("mcp"));
        assert_eq!(row.expires_at, 1_000 + CODE_LIFETIME_SECS);
        assert_eq!(row.used_at, Some(1_030));
        let err = codes
            .redeem("not-a-code", 1_030)
            .await
            .expect_err("unknown");
        assert!(matches!(err, CodeError::Unknown));
    }

    #[tokio::test]
    async fn an_expired_code_is_refused() {
        let f = fixture(1_000).await;
        let codes = Codes::new(f.db.clone());
        let code = codes.issue(&new_code(&f), 1_000).await.expect("issue");
        let err = codes
            .redeem(&code, 1_000 + CODE_LIFETIME_SECS)
            .await
            .expect_err("expired");
        assert!(matches!(err, CodeError::Expired), "{err}");
        assert_eq!(
            codes
                .purge(1_000 + CODE_LIFETIME_SECS)
                .await
                .expect("purge"),
            1
        );
    }

    #[tokio::test]
    async fn a_replayed_code_revokes_the_tokens_issued_from_it() {
        let f = fixture(1_000).await;
        let codes = Codes::new(f.db.clone());
        let code = codes.issue(&new_code(&f), 1_000).await.expect("issue");
        let row = codes.redeem(&code, 1_010).await.expect("redeem");
        let ids = vec!["0a1b".to_owned(), "2c3d".to_owned()];
        codes
            .record_access_token(&code, &ids, 1_610)
            .await
            .expect("record");
        let refresh = RefreshTokens::new(f.db.clone());
        let token = refresh
            .issue(
                &NewRefreshToken {
                    family_id: row.family_id.clone(),
                    client_id: row.client_id.clone(),
                    user_id: row.user_id.clone(),
                    grant_id: row.grant_id.clone(),
                    resource: row.resource.clone(),
                    scope: row.scope.clone(),
                    expires_at: 90_000,
                    access_revocation_ids: vec!["4e5f".to_owned()],
                    access_expires_at: 1_610,
                },
                1_010,
            )
            .await
            .expect("refresh");

        let err = codes.redeem(&code, 1_020).await.expect_err("replay");
        assert!(matches!(err, CodeError::Replayed), "{err}");
        let revocations = Revocations::new(f.db.clone());
        assert!(revocations.any_revoked(&ids[1..]).await.expect("check"));
        assert!(
            revocations
                .any_revoked(&["4e5f".to_owned()])
                .await
                .expect("check"),
            "the access token issued with the family's refresh token too"
        );
        let err = refresh
            .spend(&token, &f.client_id, 1_030)
            .await
            .expect_err("revoked");
        assert!(matches!(err, RefreshError::Revoked), "{err}");
    }

    #[tokio::test]
    async fn concurrent_redemptions_succeed_once() {
        let f = fixture(1_000).await;
        let codes = Codes::new(f.db.clone());
        let code = codes.issue(&new_code(&f), 1_000).await.expect("issue");
        let (a, b) = tokio::join!(codes.redeem(&code, 1_001), codes.redeem(&code, 1_001));
        assert_eq!(usize::from(a.is_ok()) + usize::from(b.is_ok()), 1);
    }
}
