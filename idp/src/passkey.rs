//! Passkeys: WebAuthn credentials on the built-in identity provider (webauthn-rs, no
//! OpenSSL). Owned table: `idp_passkeys` (the webauthn-rs `Passkey` as JSON: public key,
//! counter, backup flags; never a secret).
//!
//! - The relying party id is the host of `public_url` and the only accepted origin is
//!   `public_url`'s origin (scheme, host and port): `http://localhost:PORT` works for local
//!   use; an IP address cannot be a relying party id, so with such a public URL passkeys are
//!   off and say why.
//! - Registration ([`Passkeys::start_registration`] / [`Passkeys::finish_registration`])
//!   asks for a discoverable credential (resident key required) with user verification, and
//!   excludes the person's existing credentials. Several passkeys per person, each named.
//! - Sign-in ([`Passkeys::start_sign_in`] / [`Passkeys::finish_sign_in`]) is discoverable:
//!   no username; the credential's user handle (the user id) and credential id identify the
//!   person. The stored counter and backup state are updated, `last_used_at` stamped, and
//!   a disabled person is refused.
//! - User verification is required, not merely preferred: a passkey is the only factor of
//!   a sign-in, so the authenticator must check that its owner is present (PIN, biometric).
//!   This is also what the webauthn-rs passkey ceremonies enforce.
//! - Ceremony state lives in the tower-sessions session under `passkey.*` keys: taken
//!   (removed) by the finishing request whatever the outcome, so it is single use, and
//!   refused after [`CEREMONY_TTL`].
//! - Removal: a person may remove a passkey unless it is their last one and they have no
//!   other way in (an email sign-in link, or a linked identity of a configured OIDC
//!   provider): removing it would lock them out for good.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tower_sessions::Session;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyRegistration, Url, Uuid, Webauthn, WebauthnBuilder,
};

pub use webauthn_rs::prelude::{
    CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse,
};

use crate::clock::Clock;
use crate::config::IdpConfig;
use crate::db::Db;
use crate::error::IdpError;
use crate::on_pool;
use crate::users::{Status, User, Users};

/// How long a started ceremony may take (the authenticator's own timeout is the same).
pub const CEREMONY_TTL: std::time::Duration = std::time::Duration::from_secs(300);
/// Session key of a registration by a signed-in person.
pub const REGISTER_KEY: &str = "passkey.register";
/// Session key of a sign-in.
pub const SIGN_IN_KEY: &str = "passkey.signin";
/// Session key of the first admin's registration (see [`crate::setup`]).
pub const SETUP_KEY: &str = "passkey.setup";
/// Longest passkey name kept.
pub const MAX_NAME_CHARS: usize = 64;

/// A passkey as listed on the account page (no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PasskeyInfo {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct PasskeyRow {
    id: String,
    user_id: String,
    name: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl From<PasskeyRow> for PasskeyInfo {
    fn from(r: PasskeyRow) -> Self {
        Self {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// A registration in progress, kept in the session.
#[derive(Serialize, Deserialize)]
struct RegistrationCeremony {
    state: PasskeyRegistration,
    user_id: String,
    name: String,
    expires_at: i64,
}

/// A sign-in in progress, kept in the session.
#[derive(Serialize, Deserialize)]
struct SignInCeremony {
    state: DiscoverableAuthentication,
    expires_at: i64,
}

/// A verified new credential, ready to be stored (by [`Passkeys`] or by the setup).
pub(crate) struct NewPasskey {
    pub id: String,
    pub credential_id: String,
    pub json: String,
}

/// `INSERT` of one passkey: `$1` id, `$2` user id, `$3` credential id, `$4` name,
/// `$5` passkey JSON, `$6` now. Shared with the setup, which runs it in its transaction.
pub(crate) const INSERT_SQL: &str = "INSERT INTO idp_passkeys (id, user_id, credential_id, \
     name, passkey, created_at) VALUES ($1, $2, $3, $4, $5, $6)";

/// Passkey ceremonies and the `idp_passkeys` table.
#[derive(Debug, Clone)]
pub struct Passkeys {
    db: Db,
    config: Arc<IdpConfig>,
    clock: Arc<dyn Clock>,
    /// `Err(reason)` when the public URL cannot be a WebAuthn relying party.
    webauthn: Result<Arc<Webauthn>, String>,
}

fn session_error(e: tower_sessions::session::Error) -> IdpError {
    IdpError::Session(e.to_string())
}

/// A passkey's display name: trimmed, control characters dropped, at most
/// [`MAX_NAME_CHARS`]; empty becomes "Passkey".
pub fn clean_name(name: &str) -> String {
    let name: String = name
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    let name = name.trim();
    if name.is_empty() {
        String::from("Passkey")
    } else {
        name.to_owned()
    }
}

/// The WebAuthn settings of a public URL: relying party id = its host (a domain name),
/// origin = its scheme, host and port.
fn build_webauthn(public_url: &Url) -> Result<Webauthn, String> {
    let Some(rp_id) = public_url.domain() else {
        return Err(format!(
            "passkeys need a domain name in server.public_url, not {:?} (use localhost \
             rather than 127.0.0.1)",
            public_url.host_str().unwrap_or("")
        ));
    };
    let origin = Url::parse(&public_url.origin().ascii_serialization())
        .map_err(|e| format!("server.public_url has no usable origin: {e}"))?;
    WebauthnBuilder::new(rp_id, &origin)
        .map(|b| b.rp_name("Warrant").timeout(CEREMONY_TTL))
        .and_then(WebauthnBuilder::build)
        .map_err(|e| format!("cannot set up WebAuthn for {origin}: {e}"))
}

/// Asks the browser for a discoverable credential (resident key required): sign-in sends
/// no username, so a credential the authenticator cannot find by itself would be useless.
/// webauthn-rs's passkey registration leaves residency to the authenticator; the options
/// are plain JSON for the browser, so they are adjusted there.
fn require_discoverable(
    ccr: CreationChallengeResponse,
) -> Result<CreationChallengeResponse, IdpError> {
    let mut value = serde_json::to_value(&ccr)
        .map_err(|e| IdpError::Passkey(format!("cannot encode the options: {e}")))?;
    let selection = value
        .get_mut("publicKey")
        .and_then(|pk| pk.as_object_mut())
        .map(|pk| {
            pk.entry("authenticatorSelection")
                .or_insert_with(|| serde_json::json!({"userVerification": "required"}))
        })
        .and_then(|s| s.as_object_mut())
        .ok_or_else(|| IdpError::Passkey("the creation options have no publicKey".into()))?;
    selection.insert("residentKey".into(), "required".into());
    selection.insert("requireResidentKey".into(), true.into());
    selection.insert("userVerification".into(), "required".into());
    serde_json::from_value(value)
        .map_err(|e| IdpError::Passkey(format!("cannot decode the options: {e}")))
}

impl Passkeys {
    pub fn new(db: Db, config: Arc<IdpConfig>, clock: Arc<dyn Clock>) -> Result<Self, IdpError> {
        let webauthn = build_webauthn(&config.public_url).map(Arc::new);
        if let Err(reason) = &webauthn {
            tracing::warn!(%reason, "passkeys are off");
        }
        Ok(Self {
            db,
            config,
            clock,
            webauthn,
        })
    }

    /// Whether passkeys work with this public URL.
    pub fn enabled(&self) -> bool {
        self.webauthn.is_ok()
    }

    fn webauthn(&self) -> Result<&Webauthn, IdpError> {
        self.webauthn
            .as_deref()
            .map_err(|reason| IdpError::Passkey(reason.clone()))
    }

    fn expires_at(&self) -> i64 {
        self.clock
            .unix()
            .saturating_add(i64::try_from(CEREMONY_TTL.as_secs()).unwrap_or(300))
    }

    /// The passkeys of a user, oldest first.
    pub async fn list(&self, user_id: &str) -> Result<Vec<PasskeyInfo>, IdpError> {
        let sql = "SELECT id, user_id, name, created_at, last_used_at FROM idp_passkeys \
                   WHERE user_id = $1 ORDER BY created_at, id";
        let rows: Vec<PasskeyRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(user_id).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(PasskeyInfo::from).collect())
    }

    /// The credential ids a user already registered (excluded from a new registration).
    async fn credential_ids(&self, user_id: &str) -> Result<Vec<Vec<u8>>, IdpError> {
        let sql = "SELECT credential_id FROM idp_passkeys WHERE user_id = $1";
        let ids: Vec<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(user_id).fetch_all(pool).await?
        });
        Ok(ids
            .iter()
            .filter_map(|id| URL_SAFE_NO_PAD.decode(id).ok())
            .collect())
    }

    /// The first step of a registration for `user_id` (a UUID, the WebAuthn user handle):
    /// the options for the browser and the state to keep server-side.
    pub(crate) fn begin_registration(
        &self,
        user_id: &str,
        email: &str,
        display_name: &str,
        exclude: Vec<Vec<u8>>,
    ) -> Result<(CreationChallengeResponse, PasskeyRegistration), IdpError> {
        let handle = Uuid::parse_str(user_id)
            .map_err(|e| IdpError::Passkey(format!("user id {user_id} is not a UUID: {e}")))?;
        let exclude = (!exclude.is_empty()).then_some(exclude);
        let (ccr, state) = self
            .webauthn()?
            .start_passkey_registration(handle, email, display_name, exclude)
            .map_err(|e| IdpError::Passkey(format!("cannot start a registration: {e}")))?;
        Ok((require_discoverable(ccr)?, state))
    }

    /// Verifies the browser's answer to a registration: origin, challenge, relying party,
    /// user verification, signature.
    pub(crate) fn complete_registration(
        &self,
        credential: &RegisterPublicKeyCredential,
        state: &PasskeyRegistration,
    ) -> Result<NewPasskey, IdpError> {
        let passkey = self
            .webauthn()?
            .finish_passkey_registration(credential, state)
            .map_err(|e| IdpError::Passkey(format!("registration refused: {e}")))?;
        let json = serde_json::to_string(&passkey)
            .map_err(|e| IdpError::Passkey(format!("cannot encode the passkey: {e}")))?;
        Ok(NewPasskey {
            id: Uuid::now_v7().to_string(),
            credential_id: URL_SAFE_NO_PAD.encode(passkey.cred_id()),
            json,
        })
    }

    /// Starts registering a new passkey named `name` for the signed-in `user`.
    pub async fn start_registration(
        &self,
        session: &Session,
        user: &User,
        name: &str,
    ) -> Result<CreationChallengeResponse, IdpError> {
        let exclude = self.credential_ids(&user.id).await?;
        let (ccr, state) =
            self.begin_registration(&user.id, &user.email, &user.display_name, exclude)?;
        let ceremony = RegistrationCeremony {
            state,
            user_id: user.id.clone(),
            name: clean_name(name),
            expires_at: self.expires_at(),
        };
        session
            .insert(REGISTER_KEY, &ceremony)
            .await
            .map_err(session_error)?;
        Ok(ccr)
    }

    /// Finishes the registration started on this session for `user`; the new passkey.
    pub async fn finish_registration(
        &self,
        session: &Session,
        user: &User,
        credential: &RegisterPublicKeyCredential,
    ) -> Result<PasskeyInfo, IdpError> {
        let ceremony: RegistrationCeremony = take(session, REGISTER_KEY)
            .await?
            .ok_or_else(|| IdpError::Passkey("no registration in progress".into()))?;
        if ceremony.expires_at <= self.clock.unix() {
            return Err(IdpError::Passkey("the registration took too long".into()));
        }
        if ceremony.user_id != user.id {
            return Err(IdpError::Passkey(
                "the registration was started by someone else".into(),
            ));
        }
        let new = self.complete_registration(credential, &ceremony.state)?;
        let now = self.clock.unix();
        let inserted = on_pool!(&self.db, pool => {
            sqlx::query(INSERT_SQL)
                .bind(&new.id)
                .bind(&user.id)
                .bind(&new.credential_id)
                .bind(&ceremony.name)
                .bind(&new.json)
                .bind(now)
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
        });
        match inserted {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(IdpError::Invalid(
                    "This passkey is already registered.".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(user = %user.id, passkey = %new.id, "passkey registered");
        Ok(PasskeyInfo {
            id: new.id,
            user_id: user.id.clone(),
            name: ceremony.name,
            created_at: now,
            last_used_at: None,
        })
    }

    /// Removes one of `user_id`'s passkeys. The last one is kept when it is the person's
    /// only way in (no email sign-in, no linked identity of a configured OIDC provider).
    pub async fn remove(
        &self,
        users: &Users,
        user_id: &str,
        passkey_id: &str,
    ) -> Result<(), IdpError> {
        let other_way_in = self.config.email.is_some() || {
            let providers = users.identity_providers(user_id).await?;
            providers
                .iter()
                .any(|p| self.config.oidc.iter().any(|c| &c.name == p))
        };
        // Touching the user's row first serialises removals of one person's passkeys
        // (a row lock on PostgreSQL, the write lock on SQLite), so two concurrent removals
        // cannot both see "another passkey is left".
        let lock = "UPDATE idp_users SET updated_at = updated_at WHERE id = $1";
        let count = "SELECT COUNT(*) FROM idp_passkeys WHERE user_id = $1";
        let exists = "SELECT COUNT(*) FROM idp_passkeys WHERE id = $1 AND user_id = $2";
        let delete = "DELETE FROM idp_passkeys WHERE id = $1 AND user_id = $2";
        let outcome: Result<(), IdpError> = on_pool!(&self.db, pool => {
            let mut tx = crate::db::begin_write(pool).await?;
            sqlx::query(lock).bind(user_id).execute(&mut *tx).await?;
            let mine: i64 = sqlx::query_scalar(exists)
                .bind(passkey_id)
                .bind(user_id)
                .fetch_one(&mut *tx)
                .await?;
            let total: i64 = sqlx::query_scalar(count).bind(user_id).fetch_one(&mut *tx).await?;
            if mine == 0 {
                Err(IdpError::NotFound("passkey"))
            } else if total <= 1 && !other_way_in {
                Err(IdpError::Forbidden(
                    "This is your only passkey and your only way to sign in, so it cannot be \
                     removed. Add another passkey first."
                        .into(),
                ))
            } else {
                sqlx::query(delete).bind(passkey_id).bind(user_id).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(())
            }
        });
        outcome?;
        tracing::info!(user = %user_id, passkey = %passkey_id, "passkey removed");
        Ok(())
    }

    /// Starts a sign-in with a discoverable credential: no username, the authenticator
    /// offers the person's passkeys for this site. `conditional` asks for the browser's
    /// autofill UI instead of a modal prompt.
    pub async fn start_sign_in(
        &self,
        session: &Session,
        conditional: bool,
    ) -> Result<RequestChallengeResponse, IdpError> {
        let (mut rcr, state) = self
            .webauthn()?
            .start_discoverable_authentication()
            .map_err(|e| IdpError::Passkey(format!("cannot start a sign-in: {e}")))?;
        if !conditional {
            rcr.mediation = None;
        }
        let ceremony = SignInCeremony {
            state,
            expires_at: self.expires_at(),
        };
        session
            .insert(SIGN_IN_KEY, &ceremony)
            .await
            .map_err(session_error)?;
        Ok(rcr)
    }

    /// Verifies the sign-in started on this session; the person it identifies. The caller
    /// then signs them in ([`crate::session::Sessions::sign_in`], which rotates the id).
    pub async fn finish_sign_in(
        &self,
        session: &Session,
        users: &Users,
        credential: &PublicKeyCredential,
    ) -> Result<User, IdpError> {
        let ceremony: SignInCeremony = take(session, SIGN_IN_KEY)
            .await?
            .ok_or_else(|| IdpError::Passkey("no sign-in in progress".into()))?;
        if ceremony.expires_at <= self.clock.unix() {
            return Err(IdpError::Passkey("the sign-in took too long".into()));
        }
        let webauthn = self.webauthn()?;
        let (handle, credential_id) = webauthn
            .identify_discoverable_authentication(credential)
            .map_err(|e| IdpError::Passkey(format!("no user handle in the assertion: {e}")))?;
        let credential_id = URL_SAFE_NO_PAD.encode(credential_id);
        let sql = "SELECT id, user_id, passkey FROM idp_passkeys WHERE credential_id = $1";
        let row: Option<(String, String, String)> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(&credential_id).fetch_optional(pool).await?
        });
        let Some((passkey_id, user_id, stored)) = row else {
            return Err(IdpError::Passkey("unknown credential".into()));
        };
        if user_id != handle.to_string() {
            return Err(IdpError::Passkey(
                "the user handle does not match the credential's owner".into(),
            ));
        }
        let mut passkey: Passkey = serde_json::from_str(&stored).map_err(|e| {
            IdpError::Passkey(format!("stored passkey {passkey_id} unreadable: {e}"))
        })?;
        let result = webauthn
            .finish_discoverable_authentication_v2(credential, ceremony.state, &passkey)
            .map_err(|e| IdpError::Passkey(format!("assertion refused: {e}")))?;
        let user = users
            .get(&user_id)
            .await?
            .ok_or_else(|| IdpError::Passkey("the credential's owner is gone".into()))?;
        if user.status == Status::Disabled {
            return Err(IdpError::Disabled(user.id));
        }
        passkey.update_credential(&result);
        let updated = serde_json::to_string(&passkey)
            .map_err(|e| IdpError::Passkey(format!("cannot encode the passkey: {e}")))?;
        // Compare-and-set on the stored credential: of two assertions verified against
        // the same counter, only the first is accepted.
        let sql = "UPDATE idp_passkeys SET passkey = $1, last_used_at = $2 WHERE id = $3 \
                   AND passkey = $4";
        let now = self.clock.unix();
        let changed = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(&updated)
                .bind(now)
                .bind(&passkey_id)
                .bind(&stored)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed == 0 {
            return Err(IdpError::Passkey(
                "the credential changed during the sign-in (a replayed assertion?)".into(),
            ));
        }
        Ok(user)
    }
}

/// Removes and returns a ceremony's state: whatever happens next, it cannot be used twice.
pub(crate) async fn take<T: serde::de::DeserializeOwned>(
    session: &Session,
    key: &str,
) -> Result<Option<T>, IdpError> {
    match session.remove_value(key).await.map_err(session_error)? {
        None => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| IdpError::Passkey(format!("ceremony state unreadable: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_last_passkey_stays_while_it_is_the_only_way_in() {
        use crate::clock::SystemClock;
        use crate::users::{NewUser, Role};

        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        db.migrate().await.expect("migrate");
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let config = IdpConfig::new(Url::parse("http://localhost:8080").expect("url"));
        let passkeys = Passkeys::new(db.clone(), Arc::new(config), clock.clone()).expect("new");
        let users = Users::new(db.clone(), clock);
        let ada = users
            .create(NewUser {
                email: "ada@example.com".into(),
                display_name: "Ada".into(),
                role: Role::Member,
                status: Status::Active,
            })
            .await
            .expect("user");
        for (id, name) in [("pk-1", "laptop"), ("pk-2", "phone")] {
            on_pool!(&db, pool => {
                sqlx::query(INSERT_SQL)
                    .bind(id)
                    .bind(&ada.id)
                    .bind(format!("cred-{id}"))
                    .bind(name)
                    .bind("{}")
                    .bind(1_i64)
                    .execute(pool)
                    .await
                    .expect("insert")
                    .rows_affected()
            });
        }
        assert_eq!(passkeys.list(&ada.id).await.expect("list").len(), 2);
        assert!(matches!(
            passkeys.remove(&users, "someone-else", "pk-1").await,
            Err(IdpError::NotFound(_))
        ));
        passkeys
            .remove(&users, &ada.id, "pk-1")
            .await
            .expect("one of two");
        // A linked identity of a provider that is not configured is no way in.
        users
            .link_identity("gone", "sub", &ada.id)
            .await
            .expect("link");
        assert!(matches!(
            passkeys.remove(&users, &ada.id, "pk-2").await,
            Err(IdpError::Forbidden(_))
        ));
        let left = passkeys.list(&ada.id).await.expect("list");
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].name, "phone");
    }

    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name("  laptop \n"), "laptop");
        assert_eq!(clean_name(""), "Passkey");
        assert_eq!(clean_name("\u{7}\t"), "Passkey");
        assert_eq!(clean_name(&"x".repeat(100)).chars().count(), MAX_NAME_CHARS);
    }

    #[test]
    fn relying_party_from_public_url() {
        let url = Url::parse("http://localhost:8080/").expect("url");
        let webauthn = build_webauthn(&url).expect("localhost works");
        assert_eq!(
            webauthn.get_allowed_origins()[0].as_str(),
            "http://localhost:8080/"
        );
        let url = Url::parse("https://warrant.example.com/sub/path").expect("url");
        let webauthn = build_webauthn(&url).expect("a domain works");
        assert_eq!(
            webauthn.get_allowed_origins()[0].as_str(),
            "https://warrant.example.com/"
        );
        let ip = Url::parse("http://127.0.0.1:8080").expect("url");
        let err = build_webauthn(&ip).expect_err("an IP cannot be a relying party id");
        assert!(err.contains("domain name"), "{err}");
    }

    #[test]
    fn registration_options_ask_for_a_discoverable_credential() {
        let url = Url::parse("http://localhost:8080").expect("url");
        let webauthn = build_webauthn(&url).expect("webauthn");
        let (ccr, _state) = webauthn
            .start_passkey_registration(Uuid::now_v7(), "a@example.com", "A", None)
            .expect("start");
        let ccr = require_discoverable(ccr).expect("adjusted");
        let json = serde_json::to_value(&ccr).expect("json");
        let selection = &json["publicKey"]["authenticatorSelection"];
        assert_eq!(selection["residentKey"], "required");
        assert_eq!(selection["requireResidentKey"], true);
        assert_eq!(selection["userVerification"], "required");
        assert_eq!(json["publicKey"]["rp"]["id"], "localhost");
    }
}
