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
pub(crate) mod test_support {
    use std::sync::Arc;

    use warrant_idp::clock::SystemClock;
    use warrant_idp::db::Db;
    use warrant_idp::users::{NewUser, Role, Status, Users};

    use super::{ClientKind, Clients, NewClient};
    use crate::grants::{Grant, Grants, NewGrant};

    pub(crate) const RESOURCE: &str = "https://warrant.example/mcp";

    /// A migrated SQLite database in a temporary directory, with one user, one public
    /// client and one grant.
    pub(crate) struct Fixture {
        pub(crate) _dir: tempfile::TempDir,
        pub(crate) db: Db,
        pub(crate) user_id: String,
        pub(crate) client_id: String,
        pub(crate) grant: Grant,
    }

    pub(crate) async fn fixture(now: i64) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        fixture_in(dir, db, now).await
    }

    /// [`fixture`] on the test run's backend (see `crate::test_db`).
    pub(crate) async fn fixture_on_test_backend(now: i64) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = crate::test_db::open(dir.path(), "warrant_unit").await;
        fixture_in(dir, db, now).await
    }

    async fn fixture_in(dir: tempfile::TempDir, db: Db, now: i64) -> Fixture {
        db.migrate().await.expect("migrate");
        let users = Users::new(db.clone(), Arc::new(SystemClock));
        let user = users
            .create(NewUser {
                email: "ada@example.com".into(),
                display_name: "Ada".into(),
                role: Role::Member,
                status: Status::Active,
            })
            .await
            .expect("user");
        let (client, _) = Clients::new(db.clone())
            .register(
                NewClient {
                    kind: ClientKind::Dcr,
                    client_id: None,
                    name: "Test agent".into(),
                    redirect_uris: vec!["http://127.0.0.1/callback".into()],
                    application_type: "native".into(),
                    token_endpoint_auth_method: "none".into(),
                },
                now,
            )
            .await
            .expect("client");
        let grant = Grants::new(db.clone())
            .create(
                &NewGrant {
                    user_id: user.id.clone(),
                    client_id: client.client_id.clone(),
                    resource: RESOURCE.into(),
                    allow: vec!["*".into()],
                    deny: vec![],
                    max_risk: None,
                    args: Vec::new(),
                    calls_per_hour: None,
                    expires_at: now + 3600,
                },
                now,
            )
            .await
            .expect("grant");
        Fixture {
            _dir: dir,
            db,
            user_id: user.id,
            client_id: client.client_id,
            grant,
        }
    }
}
