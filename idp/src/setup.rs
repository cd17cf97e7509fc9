//! The first-admin bootstrap. Owned table: `idp_setup_tokens`.
//!
//! At start, when no active admin exists, [`Setup::ensure_link`] creates a one-time setup
//! token (32 random bytes; only its SHA-256 is stored), valid `setup_link_ttl`, and
//! invalidates every earlier unused one; `warrant serve` prints the link
//! `public_url/setup?token=…`. The person who opens it gives a name and an email address
//! and registers a passkey ([`Setup::start`] / [`Setup::finish`]); the finish consumes the
//! token, creates the user as an active admin and stores the passkey in one transaction,
//! so a token works once (two concurrent uses: one wins), never after it expired, and
//! never once an admin exists. The caller then signs the new admin in.
//!
//! With several replicas starting at once, each prints a link and the last one started
//! invalidates the others: use the link printed last.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use webauthn_rs::prelude::PasskeyRegistration;

use crate::clock::Clock;
use crate::config::IdpConfig;
use crate::db::Db;
use crate::error::IdpError;
use crate::on_pool;
use crate::passkey::{
    self, CreationChallengeResponse, Passkeys, RegisterPublicKeyCredential, SETUP_KEY,
};
use crate::secret::{constant_time_eq, hash_token, random_token};
use crate::users::{Role, Status, User, Users, normalize_email, plausible_email};

/// Where the setup stands, for the page the link opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupStatus {
    /// The token is valid and no admin exists: the form can be shown.
    Ready,
    /// An admin exists: setup is over, whatever the token.
    AdminExists,
}

/// The first admin's registration in progress, kept in the session.
#[derive(Serialize, Deserialize)]
struct SetupCeremony {
    state: PasskeyRegistration,
    token_hash: String,
    user_id: String,
    email: String,
    display_name: String,
    passkey_name: String,
    expires_at: i64,
}

/// One-time setup links (`idp_setup_tokens`).
#[derive(Debug, Clone)]
pub struct Setup {
    db: Db,
    config: Arc<IdpConfig>,
    clock: Arc<dyn Clock>,
}

fn session_error(e: tower_sessions::session::Error) -> IdpError {
    IdpError::Session(e.to_string())
}

/// A duration in words for the start-up line: "15 minutes", "1 hour", "90 seconds".
pub fn in_words(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

impl Setup {
    pub fn new(db: Db, config: Arc<IdpConfig>, clock: Arc<dyn Clock>) -> Self {
        Self { db, config, clock }
    }

    /// At start: when no active admin exists, a fresh setup link (earlier unused links
    /// stop working); `None` when an admin exists.
    pub async fn ensure_link(&self, users: &Users) -> Result<Option<String>, IdpError> {
        if users.any_admin().await? {
            return Ok(None);
        }
        let token = random_token();
        let now = self.clock.unix();
        let ttl = i64::try_from(self.config.setup_link_ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let invalidate = "DELETE FROM idp_setup_tokens WHERE used_at IS NULL";
        let insert = "INSERT INTO idp_setup_tokens (token_hash, created_at, expires_at) \
                      VALUES ($1, $2, $3)";
        on_pool!(&self.db, pool => {
            let mut tx = crate::db::begin_write(pool).await?;
            sqlx::query(invalidate).execute(&mut *tx).await?;
            sqlx::query(insert)
                .bind(hash_token(&token))
                .bind(now)
                .bind(now.saturating_add(ttl))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        tracing::info!("no administrator yet: a one-time setup link was created");
        Ok(Some(self.config.url(&format!("/setup?token={token}"))))
    }

    /// The line `warrant serve` prints with the link.
    pub fn announcement(&self, link: &str) -> String {
        format!(
            "First start: create the admin account at {link} (valid {}, single use)",
            in_words(self.config.setup_link_ttl)
        )
    }

    /// Whether `token` is an unused, unexpired setup token (looked up by its hash).
    async fn token_valid(&self, token: &str) -> Result<bool, IdpError> {
        let sql = "SELECT COUNT(*) FROM idp_setup_tokens WHERE token_hash = $1 AND \
                   used_at IS NULL AND expires_at > $2";
        let now = self.clock.unix();
        let hash = hash_token(token);
        let n: i64 = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(&hash).bind(now).fetch_one(pool).await?
        });
        Ok(n == 1)
    }

    /// What the setup page should show for `token`: the form, "an admin exists", or
    /// [`IdpError::LinkInvalid`] for a used, expired or unknown token.
    pub async fn status(&self, users: &Users, token: &str) -> Result<SetupStatus, IdpError> {
        if users.any_admin().await? {
            return Ok(SetupStatus::AdminExists);
        }
        if token.is_empty() || !self.token_valid(token).await? {
            return Err(IdpError::LinkInvalid);
        }
        Ok(SetupStatus::Ready)
    }

    /// Checks the form and starts registering the first admin's passkey.
    pub async fn start(
        &self,
        session: &Session,
        users: &Users,
        passkeys: &Passkeys,
        token: &str,
        display_name: &str,
        email: &str,
    ) -> Result<CreationChallengeResponse, IdpError> {
        if self.status(users, token).await? == SetupStatus::AdminExists {
            return Err(admin_exists());
        }
        let display_name = display_name.trim();
        if display_name.is_empty() || display_name.chars().count() > 100 {
            return Err(IdpError::Invalid(
                "Give your name (at most 100 characters).".into(),
            ));
        }
        let email = normalize_email(email);
        if !plausible_email(&email) {
            return Err(IdpError::Invalid(
                "Give a valid email address (you will sign in with it).".into(),
            ));
        }
        if users.by_email(&email).await?.is_some() {
            return Err(IdpError::EmailTaken);
        }
        let user_id = uuid::Uuid::now_v7().to_string();
        let (ccr, state) = passkeys.begin_registration(&user_id, &email, display_name, vec![])?;
        let ceremony = SetupCeremony {
            state,
            token_hash: hash_token(token),
            user_id,
            email,
            display_name: display_name.to_owned(),
            passkey_name: passkey::clean_name("First passkey"),
            expires_at: self
                .clock
                .unix()
                .saturating_add(i64::try_from(passkey::CEREMONY_TTL.as_secs()).unwrap_or(300)),
        };
        session
            .insert(SETUP_KEY, &ceremony)
            .await
            .map_err(session_error)?;
        Ok(ccr)
    }

    /// Verifies the passkey, consumes the token, creates the first admin with it. The
    /// caller signs the returned user in.
    pub async fn finish(
        &self,
        session: &Session,
        users: &Users,
        passkeys: &Passkeys,
        token: &str,
        credential: &RegisterPublicKeyCredential,
    ) -> Result<User, IdpError> {
        let ceremony: SetupCeremony = passkey::take(session, SETUP_KEY)
            .await?
            .ok_or_else(|| IdpError::Passkey("no setup in progress".into()))?;
        let now = self.clock.unix();
        if ceremony.expires_at <= now {
            return Err(IdpError::Passkey("the registration took too long".into()));
        }
        if !constant_time_eq(&ceremony.token_hash, &hash_token(token)) {
            return Err(IdpError::LinkInvalid);
        }
        let new = passkeys.complete_registration(credential, &ceremony.state)?;

        let consume = "UPDATE idp_setup_tokens SET used_at = $1 WHERE token_hash = $2 AND \
                       used_at IS NULL AND expires_at > $1";
        let admins = "SELECT COUNT(*) FROM idp_users WHERE role = 'admin' AND status = 'active'";
        let create = "INSERT INTO idp_users (id, email, display_name, role, status, created_at, \
                      updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6)";
        let outcome: Result<(), IdpError> = on_pool!(&self.db, pool => {
            let mut tx = crate::db::begin_write(pool).await?;
            let consumed = sqlx::query(consume)
                .bind(now)
                .bind(&ceremony.token_hash)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            let existing: i64 = sqlx::query_scalar(admins).fetch_one(&mut *tx).await?;
            if consumed != 1 {
                Err(IdpError::LinkInvalid)
            } else if existing > 0 {
                Err(admin_exists())
            } else {
                let created = sqlx::query(create)
                    .bind(&ceremony.user_id)
                    .bind(&ceremony.email)
                    .bind(&ceremony.display_name)
                    .bind(Role::Admin.as_str())
                    .bind(Status::Active.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await;
                match created {
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        Err(IdpError::EmailTaken)
                    }
                    Err(e) => Err(e.into()),
                    Ok(_) => {
                        sqlx::query(passkey::INSERT_SQL)
                            .bind(&new.id)
                            .bind(&ceremony.user_id)
                            .bind(&new.credential_id)
                            .bind(&ceremony.passkey_name)
                            .bind(&new.json)
                            .bind(now)
                            .execute(&mut *tx)
                            .await?;
                        tx.commit().await?;
                        Ok(())
                    }
                }
            }
        });
        outcome?;
        tracing::info!(user = %ceremony.user_id, "first administrator created through the setup link");
        users
            .get(&ceremony.user_id)
            .await?
            .ok_or(IdpError::NotFound("user"))
    }
}

fn admin_exists() -> IdpError {
    IdpError::Forbidden(
        "Warrant already has an administrator, so this setup link is no longer needed. \
         Sign in instead."
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::users::NewUser;

    async fn setup(ttl: Duration) -> (Setup, Users, Arc<ManualClock>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        db.migrate().await.expect("migrate");
        let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
        let mut config = IdpConfig::new(url::Url::parse("http://localhost:8080").expect("url"));
        config.setup_link_ttl = ttl;
        let setup = Setup::new(db.clone(), Arc::new(config), clock.clone());
        (setup, Users::new(db, clock.clone()), clock, dir)
    }

    fn token_of(link: &str) -> String {
        link.split_once("token=")
            .map(|(_, t)| t.to_owned())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn link_lifecycle() {
        let (setup, users, clock, _dir) = setup(Duration::from_secs(900)).await;
        let first = setup
            .ensure_link(&users)
            .await
            .expect("link")
            .expect("no admin yet");
        assert!(
            first.starts_with("http://localhost:8080/setup?token="),
            "{first}"
        );
        let first = token_of(&first);
        assert_eq!(
            setup.status(&users, &first).await.expect("valid"),
            SetupStatus::Ready
        );

        // A new start invalidates the earlier unused link.
        let second = token_of(
            &setup
                .ensure_link(&users)
                .await
                .expect("link")
                .expect("link"),
        );
        assert!(matches!(
            setup.status(&users, &first).await,
            Err(IdpError::LinkInvalid)
        ));
        assert_eq!(
            setup.status(&users, &second).await.expect("valid"),
            SetupStatus::Ready
        );

        // Tampered, empty and expired tokens are refused.
        let tampered = format!("{}x", &second[..second.len() - 1]);
        assert!(matches!(
            setup.status(&users, &tampered).await,
            Err(IdpError::LinkInvalid)
        ));
        assert!(matches!(
            setup.status(&users, "").await,
            Err(IdpError::LinkInvalid)
        ));
        clock.advance(Duration::from_secs(901));
        assert!(matches!(
            setup.status(&users, &second).await,
            Err(IdpError::LinkInvalid)
        ));

        // Once an admin exists there is no link, and the page says so.
        users
            .create(NewUser {
                email: "root@example.com".into(),
                display_name: "Root".into(),
                role: Role::Admin,
                status: Status::Active,
            })
            .await
            .expect("admin");
        assert_eq!(setup.ensure_link(&users).await.expect("checked"), None);
        assert_eq!(
            setup.status(&users, "whatever").await.expect("status"),
            SetupStatus::AdminExists
        );
    }

    #[test]
    fn durations_in_words() {
        assert_eq!(in_words(Duration::from_secs(900)), "15 minutes");
        assert_eq!(in_words(Duration::from_secs(3600)), "1 hour");
        assert_eq!(in_words(Duration::from_secs(90)), "90 seconds");
        assert_eq!(in_words(Duration::from_secs(1)), "1 second");
    }
}
