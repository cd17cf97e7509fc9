//! Browser sessions: tower-sessions over the database ([`store::DbSessionStore`]), the
//! cookie policy, sign-in (the session id rotates), the signed-in person of a request,
//! idle and absolute expiry, listing and revocation, and the per-session CSRF token.
//!
//! Session data keys: [`LOGIN_KEY`] holds a [`Login`] once the person signed in;
//! [`CSRF_KEY`] marks that the session handed out a CSRF token (the token itself is
//! derived from the session id, never stored); sign-in ceremonies keep their own short-lived state under
//! keys of their module (`oidc.*`, `passkey.*`).

pub mod store;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tower_sessions::cookie::SameSite;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

use crate::clock::Clock;
use crate::config::IdpConfig;
use crate::db::Db;
use crate::error::IdpError;
use crate::on_pool;
use crate::secret::constant_time_eq;
use crate::users::{Status, User, Users};

pub use store::{DbSessionStore, session_handle};

/// Session key of the signed-in person.
pub const LOGIN_KEY: &str = "warrant.login";
/// Session key marking that the session handed out a CSRF token (the token is derived
/// from the session id: see [`Sessions::csrf_token`]).
pub const CSRF_KEY: &str = "warrant.csrf";
/// Session key of the last time a signed-in request extended the idle expiry.
pub const SEEN_KEY: &str = "warrant.seen";
/// A signed-in session's idle expiry is pushed forward at most this often (seconds):
/// each push is a write, and a write of a stale copy can race a concurrent request that
/// just stored ceremony state, so sessions are saved only when they change.
const TOUCH_EVERY: i64 = 60;
/// The session cookie's name over HTTPS (`__Host-`: secure, host-only, path `/`).
pub const SECURE_COOKIE: &str = "__Host-warrant_session";
/// The session cookie's name over plain HTTP on loopback (development).
pub const DEV_COOKIE: &str = "warrant_session";

/// How a person signed in; kept in the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    pub user_id: String,
    /// `passkey`, `email`, `oidc:<provider>`, `setup`.
    pub method: String,
    /// Unix seconds.
    pub at: i64,
    /// The session ends at this instant whatever its use (Unix seconds).
    pub absolute_expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Where a sign-in request came from (shown in the session list).
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// One session of a person, as listed on the account and admin pages.
#[derive(Debug, Clone, Serialize)]
pub struct SessionSummary {
    /// Handle for revocation: the hash of the session id.
    pub handle: String,
    pub user_id: String,
    pub method: String,
    pub signed_in_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

/// Session operations over the shared database.
#[derive(Debug, Clone)]
pub struct Sessions {
    db: Db,
    clock: Arc<dyn Clock>,
    store: DbSessionStore,
    idle: std::time::Duration,
    absolute: std::time::Duration,
    secure: bool,
}

fn session_error(e: tower_sessions::session::Error) -> IdpError {
    IdpError::Session(e.to_string())
}

impl Sessions {
    pub fn new(db: Db, clock: Arc<dyn Clock>, config: &IdpConfig) -> Self {
        Self {
            store: DbSessionStore::new(db.clone(), clock.clone()),
            db,
            clock,
            idle: config.session_idle,
            absolute: config.session_absolute,
            secure: config.secure_cookies,
        }
    }

    /// The layer that gives every request its [`Session`]: cookie `HttpOnly`,
    /// `SameSite=Lax`, `Secure` unless serving plain HTTP on loopback. A session is
    /// saved only when it changed; [`Sessions::current`] extends a signed-in session's
    /// idle expiry (at most once a minute).
    pub fn layer(&self) -> SessionManagerLayer<DbSessionStore> {
        let idle = time::Duration::try_from(self.idle).unwrap_or(time::Duration::hours(8));
        SessionManagerLayer::new(self.store.clone())
            .with_name(if self.secure {
                SECURE_COOKIE
            } else {
                DEV_COOKIE
            })
            .with_secure(self.secure)
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_path("/")
            .with_expiry(Expiry::OnInactivity(idle))
    }

    pub fn store(&self) -> &DbSessionStore {
        &self.store
    }

    /// Signs `user` in on this session: a new session id (no fixation), a new CSRF
    /// token, the login recorded. The caller checked the user may sign in.
    pub async fn sign_in(
        &self,
        session: &Session,
        user: &User,
        method: &str,
        client: ClientInfo,
    ) -> Result<Login, IdpError> {
        if user.status == Status::Disabled {
            return Err(IdpError::Disabled(user.id.clone()));
        }
        // Drop whatever an anonymous visitor had (ceremony state), then rotate the id.
        session.clear().await;
        session.cycle_id().await.map_err(session_error)?;
        let now = self.clock.unix();
        let absolute = i64::try_from(self.absolute.as_secs()).unwrap_or(i64::MAX / 2);
        let login = Login {
            user_id: user.id.clone(),
            method: method.to_owned(),
            at: now,
            absolute_expires_at: now.saturating_add(absolute),
            user_agent: client.user_agent.map(|ua| ua.chars().take(200).collect()),
            ip: client.ip,
        };
        session
            .insert(LOGIN_KEY, &login)
            .await
            .map_err(session_error)?;
        // The new id gives the session a new CSRF token.
        tracing::info!(user = %user.id, method, "signed in");
        Ok(login)
    }

    /// The signed-in person of this session, or `None`. A session past its absolute
    /// expiry, or whose user is gone or disabled, is ended here.
    pub async fn current(
        &self,
        session: &Session,
        users: &Users,
    ) -> Result<Option<(User, Login)>, IdpError> {
        let login: Option<Login> = session.get(LOGIN_KEY).await.map_err(session_error)?;
        let Some(login) = login else {
            return Ok(None);
        };
        let now = self.clock.unix();
        if login.absolute_expires_at <= now {
            tracing::info!(user = %login.user_id, "session reached its absolute expiry");
            session.flush().await.map_err(session_error)?;
            return Ok(None);
        }
        match users.get(&login.user_id).await? {
            Some(user) if user.status != Status::Disabled => {
                self.touch(session, now).await?;
                Ok(Some((user, login)))
            }
            _ => {
                session.flush().await.map_err(session_error)?;
                Ok(None)
            }
        }
    }

    /// Marks the session used, so the layer saves it with a new idle expiry, unless that
    /// happened less than [`TOUCH_EVERY`] seconds ago (or the idle time is so short that
    /// every request must count).
    async fn touch(&self, session: &Session, now: i64) -> Result<(), IdpError> {
        let every = TOUCH_EVERY.min(i64::try_from(self.idle.as_secs() / 4).unwrap_or(TOUCH_EVERY));
        let seen: Option<i64> = session.get(SEEN_KEY).await.map_err(session_error)?;
        if seen.is_none_or(|seen| now - seen >= every) {
            session.insert(SEEN_KEY, now).await.map_err(session_error)?;
        }
        Ok(())
    }

    /// Ends this session (local sign-out).
    pub async fn sign_out(&self, session: &Session) -> Result<(), IdpError> {
        session.flush().await.map_err(session_error)
    }

    /// Every live session of a user, most recent first.
    pub async fn list_for_user(&self, user_id: &str) -> Result<Vec<SessionSummary>, IdpError> {
        let sql = "SELECT id_hash, data, last_seen_at, expires_at FROM idp_sessions \
                   WHERE user_id = $1 AND expires_at > $2 ORDER BY last_seen_at DESC";
        let now = self.clock.unix();
        let rows: Vec<(String, String, i64, i64)> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(user_id).bind(now).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(handle, data, last_seen_at, expires_at)| {
                let data: serde_json::Value = serde_json::from_str(&data).ok()?;
                let login: Login = serde_json::from_value(data.get(LOGIN_KEY)?.clone()).ok()?;
                Some(SessionSummary {
                    handle,
                    user_id: login.user_id,
                    method: login.method,
                    signed_in_at: login.at,
                    last_seen_at,
                    expires_at,
                    user_agent: login.user_agent,
                    ip: login.ip,
                })
            })
            .collect())
    }

    /// Ends one session of `user_id` by its handle; `NotFound` if it is not theirs.
    pub async fn revoke(&self, user_id: &str, handle: &str) -> Result<(), IdpError> {
        let sql = "DELETE FROM idp_sessions WHERE id_hash = $1 AND user_id = $2";
        let n = on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(handle).bind(user_id).execute(pool).await?.rows_affected()
        });
        if n == 0 {
            return Err(IdpError::NotFound("session"));
        }
        tracing::info!(user = %user_id, "session revoked");
        Ok(())
    }

    /// Ends every session of `user_id`; returns how many.
    pub async fn revoke_all(&self, user_id: &str) -> Result<u64, IdpError> {
        let sql = "DELETE FROM idp_sessions WHERE user_id = $1";
        let n = on_pool!(&self.db, pool => sqlx::query(sql).bind(user_id).execute(pool).await?.rows_affected());
        tracing::info!(user = %user_id, sessions = n, "all sessions revoked");
        Ok(n)
    }

    /// This session's CSRF token. Every state-changing form carries it;
    /// [`Sessions::check_csrf`] verifies it. It is derived from the session id (which
    /// the database keeps only as a hash), so a copy of the sessions table holds no
    /// token; a session without an id yet (a first visit, or just signed in) is saved
    /// here to get one.
    pub async fn csrf_token(&self, session: &Session) -> Result<String, IdpError> {
        if session.id().is_none() {
            session
                .insert(CSRF_KEY, true)
                .await
                .map_err(session_error)?;
            session.save().await.map_err(session_error)?;
        }
        session
            .id()
            .map(|id| csrf_of(&id))
            .ok_or_else(|| IdpError::Session("the session has no id".into()))
    }

    /// Refuses a state-changing request whose token is missing or is not this session's
    /// (compared in constant time).
    pub async fn check_csrf(
        &self,
        session: &Session,
        presented: Option<&str>,
    ) -> Result<(), IdpError> {
        match (session.id(), presented) {
            (Some(id), Some(presented)) if constant_time_eq(&csrf_of(&id), presented) => Ok(()),
            _ => Err(IdpError::Csrf),
        }
    }
}

/// The CSRF token of the session `id`: SHA-256 of the id under its own label (the
/// stored handle is the plain SHA-256 of the id, so the two never coincide).
fn csrf_of(id: &tower_sessions::session::Id) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(b"warrant.csrf\0")
        .chain_update(id.to_string().as_bytes())
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}
