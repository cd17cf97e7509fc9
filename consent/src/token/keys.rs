//! The root keys that sign access tokens: Ed25519, each with a numeric key id (the
//! token's `root_key_id`), stored in `consent_keys` with the private half encrypted
//! (XChaCha20-Poly1305 under the server's secret key, the kid as associated data).
//!
//! One key is active (signs new tokens); rotating creates a new active key and retires
//! the old one, which still verifies the tokens it signed until `retired_at` plus the
//! longest access-token lifetime, and is refused after that. A key revoked in an
//! emergency ([`KeyRing::revoke`]) verifies nothing from that instant, without the
//! grace. Every replica reads the same table: [`KeyRing::reload`] picks up a rotation or
//! a revocation made elsewhere.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use biscuit_auth::builder::Algorithm;
use biscuit_auth::{KeyPair, PrivateKey, PublicKey};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::Serialize;
use warrant_idp::Clock;
use warrant_idp::db::Db;
use warrant_idp::on_pool;
use zeroize::Zeroizing;

use super::TokenError;

/// The algorithm of every key Warrant creates, as published.
pub const ALGORITHM: &str = "Ed25519";

/// The longest access-token lifetime by default: a retired key is accepted this long.
pub const DEFAULT_MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

const NONCE_LEN: usize = 24;

/// How the key ring behaves.
#[derive(Debug, Clone)]
pub struct KeySettings {
    /// The longest lifetime of an access token: mint refuses longer ones, and a retired
    /// key verifies tokens for this long after its retirement.
    pub max_token_lifetime: Duration,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            max_token_lifetime: DEFAULT_MAX_TOKEN_LIFETIME,
        }
    }
}

/// A root key as published: no private part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PublicKeyInfo {
    pub kid: u32,
    pub algorithm: &'static str,
    /// The 32-byte Ed25519 public key, hex.
    pub public_key: String,
    pub created_at: i64,
    /// When it stopped signing; `None` for the active key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retired_at: Option<i64>,
    /// After this instant it verifies nothing (retired keys only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_until: Option<i64>,
    /// When it was revoked (`warrant keys revoke`): from then on it verifies nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
}

/// Why the ring will not verify with a key id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyRefusal {
    Unknown(Option<u32>),
    Expired(u32),
    Revoked(u32),
}

/// The key that signs new tokens.
pub(crate) struct SigningKey {
    pub(crate) kid: u32,
    pub(crate) keypair: KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey({}, <private>)", self.kid)
    }
}

#[derive(Debug, Clone)]
struct KeyRecord {
    public: PublicKey,
    created_at: i64,
    retired_at: Option<i64>,
    revoked_at: Option<i64>,
}

#[derive(Debug, Default)]
struct Ring {
    active: Option<Arc<SigningKey>>,
    keys: BTreeMap<u32, KeyRecord>,
}

struct Inner {
    db: Db,
    kek: Zeroizing<[u8; 32]>,
    settings: KeySettings,
    clock: Arc<dyn Clock>,
    /// Read on every verification: a load, no lock.
    ring: ArcSwap<Ring>,
}

/// The root keys, shared by minting and verification. Cheap to clone.
#[derive(Clone)]
pub struct KeyRing {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ring = self.ring();
        f.debug_struct("KeyRing")
            .field("active", &ring.active.as_ref().map(|k| k.kid))
            .field("keys", &ring.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

type Row = (i64, String, String, String, i64, Option<i64>, Option<i64>);

const SELECT_ALL: &str = "SELECT kid, algorithm, public_key, private_key, created_at, retired_at, \
    revoked_at FROM consent_keys ORDER BY kid";
/// Revokes a key now; a key not retired yet is retired at the same instant.
const REVOKE: &str = "UPDATE consent_keys SET revoked_at = $2, \
    retired_at = COALESCE(retired_at, $2) WHERE kid = $1 AND revoked_at IS NULL";
const NEXT_KID: &str = "SELECT COALESCE(MAX(kid), 0) + 1 FROM consent_keys";
const INSERT: &str = "INSERT INTO consent_keys \
    (kid, algorithm, public_key, private_key, created_at, retired_at) \
    VALUES ($1, $2, $3, $4, $5, NULL)";
/// The first key: inserted only while no key is active, so replicas starting together
/// create one between them (a concurrent insert either takes the same kid and fails,
/// or runs after the other's commit and sees its key).
const INSERT_FIRST: &str = "INSERT INTO consent_keys \
    (kid, algorithm, public_key, private_key, created_at, retired_at) \
    SELECT $1, $2, $3, $4, $5, NULL \
    WHERE NOT EXISTS (SELECT 1 FROM consent_keys WHERE retired_at IS NULL)";
const RETIRE_OLDER: &str =
    "UPDATE consent_keys SET retired_at = $1 WHERE retired_at IS NULL AND kid < $2";

impl KeyRing {
    /// Loads the ring and creates the first key when none is active (first start).
    /// `kek` is the 32-byte key that encrypts the private keys at rest.
    pub async fn open(
        db: Db,
        kek: [u8; 32],
        settings: KeySettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TokenError> {
        let ring = Self::load(db, kek, settings, clock).await?;
        if ring.ring().active.is_none() {
            ring.create_key(false).await?;
        }
        Ok(ring)
    }

    /// Loads the ring as stored, without creating a key.
    pub async fn load(
        db: Db,
        kek: [u8; 32],
        settings: KeySettings,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, TokenError> {
        let kek = Zeroizing::new(kek);
        let ring = Self {
            inner: Arc::new(Inner {
                db,
                kek,
                settings,
                clock,
                ring: ArcSwap::from_pointee(Ring::default()),
            }),
        };
        ring.reload().await?;
        Ok(ring)
    }

    /// The keys as stored, without decrypting anything (no secret key needed): for
    /// `warrant keys list`.
    pub async fn list_stored(
        db: &Db,
        settings: &KeySettings,
    ) -> Result<Vec<PublicKeyInfo>, TokenError> {
        let rows: Vec<Row> =
            on_pool!(db, pool => sqlx::query_as(SELECT_ALL).fetch_all(pool).await)?;
        let max = lifetime_secs(settings);
        rows.into_iter()
            .map(
                |(kid, _, public_key, _, created_at, retired_at, revoked_at)| {
                    Ok(PublicKeyInfo {
                        kid: u32::try_from(kid).map_err(|_| TokenError::KeyDecrypt {
                            kid: 0,
                            reason: format!("key id {kid} is out of range"),
                        })?,
                        algorithm: ALGORITHM,
                        public_key,
                        created_at,
                        retired_at,
                        accepted_until: accepted_until(retired_at, revoked_at, max),
                        revoked_at,
                    })
                },
            )
            .collect()
    }

    /// Re-reads the key table (after a rotation on another replica).
    pub async fn reload(&self) -> Result<(), TokenError> {
        let rows: Vec<Row> =
            on_pool!(&self.inner.db, pool => sqlx::query_as(SELECT_ALL).fetch_all(pool).await)?;
        let current = self.ring();
        let mut ring = Ring::default();
        let mut active_row = None;
        for (kid, algorithm, public_hex, private, created_at, retired_at, revoked_at) in rows {
            let kid = u32::try_from(kid).map_err(|_| TokenError::KeyDecrypt {
                kid: 0,
                reason: format!("key id {kid} is out of range"),
            })?;
            if algorithm != ALGORITHM {
                return Err(TokenError::KeyDecrypt {
                    kid,
                    reason: format!("unsupported algorithm {algorithm:?}"),
                });
            }
            let public =
                PublicKey::from_bytes_hex(&public_hex, Algorithm::Ed25519).map_err(|e| {
                    TokenError::KeyDecrypt {
                        kid,
                        reason: format!("bad public key: {e}"),
                    }
                })?;
            if retired_at.is_none() {
                // The newest unretired key is active (two can exist only for the
                // moment between a concurrent rotation's insert and its retire).
                active_row = Some((kid, private, public));
            }
            ring.keys.insert(
                kid,
                KeyRecord {
                    public,
                    created_at,
                    retired_at,
                    revoked_at,
                },
            );
        }
        ring.active = match active_row {
            Some((kid, _, _)) if current.active.as_ref().is_some_and(|k| k.kid == kid) => {
                current.active.clone()
            }
            Some((kid, private, public)) => {
                Some(Arc::new(self.decrypt_key(kid, &private, &public)?))
            }
            None => None,
        };
        self.inner.ring.store(Arc::new(ring));
        Ok(())
    }

    /// Creates a new active key and retires the previous one; returns the new key.
    pub async fn rotate(&self) -> Result<PublicKeyInfo, TokenError> {
        self.create_key(true).await
    }

    /// Every key that verifies tokens now, plus retired ones still listed, for
    /// publication and `warrant keys list`.
    pub fn public_keys(&self) -> Vec<PublicKeyInfo> {
        let ring = self.ring();
        let max = self.max_lifetime_secs();
        ring.keys
            .iter()
            .map(|(kid, record)| PublicKeyInfo {
                kid: *kid,
                algorithm: ALGORITHM,
                public_key: record.public.to_bytes_hex(),
                created_at: record.created_at,
                retired_at: record.retired_at,
                accepted_until: accepted_until(record.retired_at, record.revoked_at, max),
                revoked_at: record.revoked_at,
            })
            .collect()
    }

    /// The keys that verify tokens now (the active one and retired ones still in their
    /// grace period; never a revoked one): what `/.well-known/warrant-keys.json`
    /// publishes.
    pub fn published(&self) -> Vec<PublicKeyInfo> {
        let now = self.inner.clock.unix();
        self.public_keys()
            .into_iter()
            .filter(|k| k.revoked_at.is_none())
            .filter(|k| k.accepted_until.is_none_or(|until| now < until))
            .collect()
    }

    /// Revokes the key `kid` at once (a compromised key): it verifies nothing from now
    /// on, here at once and on every replica at its next reload (each second). When it
    /// is the active key, a new active key is made first, so that signing goes on.
    /// Returns the key as revoked, and the new active key when one was made.
    pub async fn revoke(
        &self,
        kid: u32,
    ) -> Result<(PublicKeyInfo, Option<PublicKeyInfo>), TokenError> {
        self.reload().await?;
        let record = self
            .ring()
            .keys
            .get(&kid)
            .cloned()
            .ok_or(TokenError::UnknownKey(Some(kid)))?;
        if record.revoked_at.is_some() {
            return Err(TokenError::Invalid(format!(
                "token signing key {kid} is revoked already"
            )));
        }
        let replacement = if self.active_kid() == Some(kid) {
            Some(self.rotate().await?)
        } else {
            None
        };
        let now = self.inner.clock.unix();
        on_pool!(&self.inner.db, pool => {
            sqlx::query(REVOKE).bind(i64::from(kid)).bind(now).execute(pool).await?;
        });
        self.reload().await?;
        tracing::warn!(kid, "token signing key revoked");
        let revoked = self
            .public_keys()
            .into_iter()
            .find(|k| k.kid == kid)
            .ok_or(TokenError::UnknownKey(Some(kid)))?;
        Ok((revoked, replacement))
    }

    /// The id of the key that signs new tokens.
    pub fn active_kid(&self) -> Option<u32> {
        self.ring().active.as_ref().map(|k| k.kid)
    }

    /// The longest access-token lifetime, in seconds.
    pub fn max_lifetime_secs(&self) -> i64 {
        lifetime_secs(&self.inner.settings)
    }

    pub(crate) fn signing_key(&self) -> Result<Arc<SigningKey>, TokenError> {
        self.ring().active.clone().ok_or(TokenError::NoActiveKey)
    }

    /// The public key to verify a token naming `kid`, if it is still accepted at `now`.
    pub(crate) fn verifying_key(
        &self,
        kid: Option<u32>,
        now: i64,
    ) -> Result<PublicKey, KeyRefusal> {
        let kid = kid.ok_or(KeyRefusal::Unknown(None))?;
        let ring = self.ring();
        let record = ring.keys.get(&kid).ok_or(KeyRefusal::Unknown(Some(kid)))?;
        if record.revoked_at.is_some() {
            return Err(KeyRefusal::Revoked(kid));
        }
        if !self.accepts(record, now) {
            return Err(KeyRefusal::Expired(kid));
        }
        Ok(record.public)
    }

    /// Why the key `kid` no longer verifies at `now` (`None`: it does).
    pub(crate) fn refusal(&self, kid: u32, now: i64) -> Option<KeyRefusal> {
        self.verifying_key(Some(kid), now).err()
    }

    fn accepts(&self, record: &KeyRecord, now: i64) -> bool {
        if record.revoked_at.is_some() {
            return false;
        }
        match record.retired_at {
            None => true,
            Some(at) => now < at.saturating_add(self.max_lifetime_secs()),
        }
    }

    fn ring(&self) -> Arc<Ring> {
        self.inner.ring.load_full()
    }

    /// Inserts a new key (retiring older active keys when `retire`), with a retry when
    /// another replica took the same kid at the same moment.
    async fn create_key(&self, retire: bool) -> Result<PublicKeyInfo, TokenError> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.try_create_key(retire).await {
                Ok(None) => {
                    // Another replica created the first key meanwhile.
                    self.reload().await?;
                    let kid = self.active_kid().ok_or(TokenError::NoActiveKey)?;
                    return self
                        .public_keys()
                        .into_iter()
                        .find(|k| k.kid == kid)
                        .ok_or(TokenError::NoActiveKey);
                }
                Ok(Some(kid)) => {
                    self.reload().await?;
                    tracing::info!(kid, "token signing key created");
                    return self
                        .public_keys()
                        .into_iter()
                        .find(|k| k.kid == kid)
                        .ok_or(TokenError::NoActiveKey);
                }
                Err(TokenError::Storage(e)) if attempts < 5 && is_unique_violation(&e) => {
                    // Someone else inserted this kid: look again.
                    self.reload().await?;
                    if !retire && let Some(kid) = self.active_kid() {
                        return self
                            .public_keys()
                            .into_iter()
                            .find(|k| k.kid == kid)
                            .ok_or(TokenError::NoActiveKey);
                    }
                }
                Err(TokenError::Storage(e)) if attempts < BUSY_ATTEMPTS && is_busy_snapshot(&e) => {
                    // SQLite: a running server wrote between this transaction's read and
                    // its write, or holds the write lock while this one upgrades (the busy
                    // timeout does not cover either); start over, for up to about 5 s.
                    let pause = 50 + u64::from(attempts) * 25;
                    tokio::time::sleep(std::time::Duration::from_millis(pause.min(250))).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_create_key(&self, retire: bool) -> Result<Option<u32>, TokenError> {
        let now = self.inner.clock.unix();
        let keypair = KeyPair::new();
        let public_hex = keypair.public().to_bytes_hex();
        macro_rules! insert {
            ($tx:expr) => {{
                let mut tx = $tx;
                let next: i64 = sqlx::query_scalar(NEXT_KID).fetch_one(&mut *tx).await?;
                let kid = u32::try_from(next)
                    .map_err(|_| TokenError::Invalid("no key id left".into()))?;
                let sealed = self.encrypt_key(kid, &keypair)?;
                let inserted = sqlx::query(if retire { INSERT } else { INSERT_FIRST })
                    .bind(next)
                    .bind(ALGORITHM)
                    .bind(&public_hex)
                    .bind(&sealed)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if inserted == 0 {
                    tx.rollback().await?;
                    return Ok(None);
                }
                if retire {
                    sqlx::query(RETIRE_OLDER)
                        .bind(now)
                        .bind(next)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Some(kid)
            }};
        }
        Ok(match &self.inner.db {
            // The write lock first (waiting for it within the busy timeout): a deferred
            // transaction that reads the next kid and then writes fails at once whenever
            // a running server wrote in between.
            Db::Sqlite(pool) => insert!(pool.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(pool) => insert!(pool.begin().await?),
        })
    }

    fn cipher(&self) -> Result<XChaCha20Poly1305, TokenError> {
        XChaCha20Poly1305::new_from_slice(&self.inner.kek[..])
            .map_err(|_| TokenError::Invalid("the secret key must be 32 bytes".into()))
    }

    fn encrypt_key(&self, kid: u32, keypair: &KeyPair) -> Result<String, TokenError> {
        let private = keypair.private().to_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let aad = associated_data(kid);
        let ciphertext = self
            .cipher()?
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &private,
                    aad: &aad,
                },
            )
            .map_err(|_| TokenError::Build("cannot encrypt the signing key".into()))?;
        let mut stored = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        stored.extend_from_slice(&nonce);
        stored.extend_from_slice(&ciphertext);
        Ok(STANDARD.encode(stored))
    }

    fn decrypt_key(
        &self,
        kid: u32,
        sealed: &str,
        public: &PublicKey,
    ) -> Result<SigningKey, TokenError> {
        let fail = |reason: &str| TokenError::KeyDecrypt {
            kid,
            reason: reason.to_owned(),
        };
        let stored = STANDARD
            .decode(sealed.trim())
            .map_err(|_| fail("the stored key is not base64"))?;
        if stored.len() <= NONCE_LEN {
            return Err(fail("the stored key is too short"));
        }
        let (nonce, ciphertext) = stored.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| fail("the stored key is too short"))?;
        let aad = associated_data(kid);
        let private = Zeroizing::new(
            self.cipher()?
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    fail("it does not decrypt with this server's secret key (is server.secret_key or secret.key the one this database was created with?)")
                })?,
        );
        let private = PrivateKey::from_bytes(&private, Algorithm::Ed25519)
            .map_err(|_| fail("the decrypted key is not an Ed25519 private key"))?;
        let keypair = KeyPair::from(&private);
        if keypair.public() != *public {
            return Err(fail("the private key does not match the stored public key"));
        }
        Ok(SigningKey { kid, keypair })
    }
}

/// Until when a key verifies: its retirement plus the grace, or its revocation.
fn accepted_until(retired_at: Option<i64>, revoked_at: Option<i64>, max: i64) -> Option<i64> {
    revoked_at.or(retired_at.map(|at| at.saturating_add(max)))
}

fn lifetime_secs(settings: &KeySettings) -> i64 {
    i64::try_from(settings.max_token_lifetime.as_secs()).unwrap_or(i64::MAX)
}

/// The associated data of a stored key: binds the ciphertext to its kid, so a row's key
/// cannot be moved to another kid.
fn associated_data(kid: u32) -> Vec<u8> {
    format!("warrant consent_keys kid={kid}").into_bytes()
}

/// How many times a key is tried again when SQLite reports the database busy.
const BUSY_ATTEMPTS: u32 = 30;

/// SQLite's `SQLITE_BUSY` (5) and `SQLITE_BUSY_SNAPSHOT` (517).
fn is_busy_snapshot(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("5" | "517")))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
