//! The OAuth 2.1 authorization server for MCP clients: its storage today (registered
//! clients, authorization codes, refresh tokens, revoked access tokens); the endpoints
//! build on it.
//!
//! Owned tables: `consent_clients`, `consent_auth_codes`, `consent_refresh_tokens`,
//! `consent_token_revocations` (and `consent_grants`, see [`crate::grants`]). Secrets are
//! stored only as SHA-256 hashes; instants are Unix seconds, passed in by the caller so
//! that tests can move time.

pub mod cimd;
pub mod clients;
pub mod codes;
pub mod http;
pub mod redirect_uris;
pub mod refresh;
pub mod resource;
pub mod revocations;

pub use cimd::{CimdError, DocumentFetcher, FetchNew, find_client};
pub use clients::{
    Client, ClientKind, Clients, DocumentClient, NewClient, StaticClient, StaticSync,
};
pub use codes::{AuthCode, CodeError, Codes, NewCode};
pub use http::{DEFAULT_ACCESS_TOKEN_LIFETIME_SECS, OAuthState, router};
pub use refresh::{NewRefreshToken, RefreshError, RefreshToken, RefreshTokens};
pub use resource::Resource;
pub use revocations::{Revocations, RevokedSet, RevokedView};

/// How long an authorization code stays redeemable.
pub const CODE_LIFETIME_SECS: i64 = 60;

/// Deletes what has expired at `now`: authorization codes, refresh tokens, and access
/// token revocations (their tokens have expired too). Returns how many rows went. Meant
/// for a periodic sweeper; expired rows are refused anyway.
pub async fn purge_expired(db: &warrant_idp::db::Db, now: i64) -> Result<u64, StoreError> {
    // A code is kept a while after it expires, so that a late replay still revokes what
    // it produced while those tokens live.
    let longest = i64::try_from(crate::token::DEFAULT_MAX_TOKEN_LIFETIME.as_secs()).unwrap_or(3600);
    let codes = Codes::new(db.clone()).purge(now - longest).await?;
    let refresh = RefreshTokens::new(db.clone()).purge(now).await?;
    let revoked = Revocations::new(db.clone()).purge(now).await?;
    Ok(codes + refresh + revoked)
}

/// What can go wrong reading or writing the authorization server's tables.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("authorization storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("cannot encode or decode {what}: {source}")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    /// A client id is already used by a client of another kind (a static client named
    /// like a registered one, a metadata document URL taken by another kind).
    #[error("the client id {0:?} is already used by another kind of client")]
    ClientIdTaken(String),
    /// A record that cannot be stored as given (a grant with too many argument
    /// constraints, a call budget below one).
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn to_json(what: &'static str, value: &[String]) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|source| StoreError::Json { what, source })
}

pub(crate) fn from_json(what: &'static str, value: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(value).map_err(|source| StoreError::Json { what, source })
}

#[cfg(test)]
pub(crate) mod test_support;
