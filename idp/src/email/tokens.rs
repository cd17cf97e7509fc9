//! One-time link tokens in `idp_email_tokens`: only the SHA-256 of each token is
//! stored; a token is valid until it is used or expires, whichever comes first.

use std::sync::Arc;
use std::time::Duration;

use super::Purpose;
use crate::clock::Clock;
use crate::db::Db;
use crate::error::IdpError;
use crate::on_pool;
use crate::secret::{hash_token, random_token};

/// An open or just-consumed token's row.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub email: String,
    pub purpose: Purpose,
    pub user_id: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Row {
    email: String,
    purpose: String,
    user_id: Option<String>,
}

impl Row {
    fn into_record(self) -> Result<TokenRecord, IdpError> {
        let purpose = Purpose::parse(&self.purpose).ok_or_else(|| {
            IdpError::Invalid(format!("email token has purpose {:?}", self.purpose))
        })?;
        Ok(TokenRecord {
            email: self.email,
            purpose,
            user_id: self.user_id,
        })
    }
}

/// The token store.
#[derive(Debug, Clone)]
pub(crate) struct Tokens {
    db: Db,
    clock: Arc<dyn Clock>,
}

/// Whether `token` has the shape [`random_token`] gives (43 base64url characters):
/// anything else is refused without a query.
fn well_formed(token: &str) -> bool {
    token.len() == 43
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 4).max(1)
}

impl Tokens {
    pub(crate) fn new(db: Db, clock: Arc<dyn Clock>) -> Self {
        Self { db, clock }
    }

    /// A new token for `email`, valid `ttl`; returns the token itself (the only copy).
    /// Expired tokens are deleted on the way.
    pub(crate) async fn issue(
        &self,
        email: &str,
        purpose: Purpose,
        user_id: &str,
        ttl: Duration,
        ip: Option<&str>,
    ) -> Result<String, IdpError> {
        let now = self.clock.unix();
        let prune = "DELETE FROM idp_email_tokens WHERE expires_at <= $1";
        let insert = "INSERT INTO idp_email_tokens (token_hash, email, purpose, user_id, \
                      created_at, expires_at, requested_ip) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let token = random_token();
        let expires_at = now.saturating_add(seconds(ttl));
        on_pool!(&self.db, pool => {
            sqlx::query(prune).bind(now).execute(pool).await?;
            sqlx::query(insert)
                .bind(hash_token(&token))
                .bind(email)
                .bind(purpose.as_str())
                .bind(user_id)
                .bind(now)
                .bind(expires_at)
                .bind(ip)
                .execute(pool)
                .await?;
        });
        Ok(token)
    }

    /// The row of an open (unused, unexpired) token, without using it.
    pub(crate) async fn find_open(&self, token: &str) -> Result<TokenRecord, IdpError> {
        if !well_formed(token) {
            return Err(IdpError::LinkInvalid);
        }
        let sql = "SELECT email, purpose, user_id FROM idp_email_tokens \
                   WHERE token_hash = $1 AND used_at IS NULL AND expires_at > $2";
        let now = self.clock.unix();
        let row: Option<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(hash_token(token)).bind(now).fetch_optional(pool).await?
        });
        row.ok_or(IdpError::LinkInvalid)?.into_record()
    }

    /// Marks an open token used, in one statement: of two concurrent uses exactly one
    /// changes the row and gets it back; the other, like any used, expired or unknown
    /// token, is [`IdpError::LinkInvalid`].
    pub(crate) async fn consume(&self, token: &str) -> Result<TokenRecord, IdpError> {
        if !well_formed(token) {
            return Err(IdpError::LinkInvalid);
        }
        let sql = "UPDATE idp_email_tokens SET used_at = $2 WHERE token_hash = $1 \
                   AND used_at IS NULL AND expires_at > $2 RETURNING email, purpose, user_id";
        let now = self.clock.unix();
        let row: Option<Row> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(hash_token(token)).bind(now).fetch_optional(pool).await?
        });
        row.ok_or(IdpError::LinkInvalid)?.into_record()
    }

    /// Retires every open token of `email` (after one of them signed the person in).
    pub(crate) async fn retire_all(&self, email: &str) -> Result<u64, IdpError> {
        let sql = "UPDATE idp_email_tokens SET used_at = $2 WHERE email = $1 AND used_at IS NULL";
        let now = self.clock.unix();
        Ok(on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(email).bind(now).execute(pool).await?.rows_affected()
        }))
    }
}
