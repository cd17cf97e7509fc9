//! The credential vault: downstream credentials (an upstream's shared API key, a
//! person's own key or tokens), encrypted at rest in `consent_vault`.
//!
//! Envelope encryption: each record's value is sealed with a data key of its own, and
//! the data key is stored wrapped by a key-encryption key ([`Kek`]) that never enters
//! the database. Both are bound to the record's id and owner, so a value or a data key
//! copied onto another row does not decrypt. The key-encryption key is `vault.key`, or
//! one derived from the server's secret key; earlier keys stay usable for reading
//! (`vault.previous_keys`) until [`Vault::rotate`] has re-wrapped every data key under
//! the current one, which leaves the values (and calls using them) untouched.
//!
//! [`Vault::open`] refuses to start when a record is wrapped by a key that is not
//! configured (a wrong or missing key), instead of failing calls later. Decrypted values
//! are cached for the per-call path, bounded and briefly, and zeroized when dropped.

mod cache;
mod seal;

use std::sync::Arc;
use std::time::Instant;

use warrant_idp::Clock;
use warrant_idp::db::Db;
use warrant_idp::on_pool;
use zeroize::Zeroizing;

pub use cache::Plain;
pub use seal::Kek;

use cache::Cache;

/// The owner of a credential every person shares (an upstream's own key).
pub const SHARED: &str = "";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "{count} vault records are wrapped by key-encryption key {kek_id}, which is not \
         configured: set that key again as `vault.key` or in `vault.previous_keys` (a new \
         key cannot decrypt what another one encrypted)"
    )]
    MissingKey { kek_id: String, count: i64 },
    #[error(
        "the vault record of {kind} for upstream {upstream:?} ({whose}) does not decrypt: \
         it was changed in the database, or copied from another row"
    )]
    Undecryptable {
        kind: String,
        upstream: String,
        whose: String,
    },
    #[error("the vault's database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The key-encryption keys: the current one wraps every new data key; the previous ones
/// only unwrap what they wrapped until [`Vault::rotate`] re-wraps it.
#[derive(Debug)]
pub struct VaultKeys {
    current: Kek,
    previous: Vec<Kek>,
}

impl VaultKeys {
    pub fn new(current: Kek, previous: Vec<Kek>) -> Self {
        let previous = previous
            .into_iter()
            .filter(|k| k.id() != current.id())
            .collect();
        Self { current, previous }
    }

    pub fn current_id(&self) -> &str {
        self.current.id()
    }

    fn find(&self, id: &str) -> Option<&Kek> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == id)
    }
}

/// A record as listed: what it is, never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultEntry {
    /// A user id, or [`SHARED`].
    pub owner: String,
    pub upstream: String,
    pub kind: String,
    pub kek_id: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// How many records each key-encryption key wraps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    pub kek_id: String,
    pub records: i64,
    /// Whether it is the current key.
    pub current: bool,
}

/// What [`Vault::rotate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rotation {
    /// Data keys re-wrapped under the current key.
    pub rewrapped: u64,
    /// Records already under the current key.
    pub current: u64,
}

struct Inner {
    db: Db,
    keys: VaultKeys,
    clock: Arc<dyn Clock>,
    cache: Cache,
}

/// The vault. Cheap to clone.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

type Row = (String, String, String, String, String, String); // id, owner, upstream, kind, kek_id, data_key
type SealedRow = (String, String, String, String, i64); // id, kek_id, data_key, value, version

const USE_BY_KEY: &str =
    "SELECT kek_id, COUNT(*) FROM consent_vault GROUP BY kek_id ORDER BY kek_id";
const FIND: &str = "SELECT id, kek_id, data_key, value, version FROM consent_vault \
    WHERE owner = $1 AND upstream = $2 AND kind = $3";
const VERSION: &str =
    "SELECT version FROM consent_vault WHERE owner = $1 AND upstream = $2 AND kind = $3";
const INSERT: &str = "INSERT INTO consent_vault \
    (id, owner, upstream, kind, kek_id, data_key, value, version, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8)";
const REPLACE: &str = "UPDATE consent_vault SET kek_id = $2, data_key = $3, value = $4, \
    version = version + 1, updated_at = $5 WHERE id = $1";
/// Replaces a record only if no one else wrote it since it was read.
const REPLACE_IF: &str = "UPDATE consent_vault SET kek_id = $2, data_key = $3, value = $4, \
    version = version + 1, updated_at = $5 WHERE id = $1 AND version = $6";
const DELETE: &str = "DELETE FROM consent_vault WHERE owner = $1 AND upstream = $2 AND kind = $3";
const DELETE_OWNER: &str = "DELETE FROM consent_vault WHERE owner = $1";
const LIST: &str = "SELECT owner, upstream, kind, kek_id, version, created_at, updated_at \
    FROM consent_vault ORDER BY owner, upstream, kind";
const NOT_CURRENT: &str = "SELECT id, owner, upstream, kind, kek_id, data_key FROM consent_vault \
    WHERE kek_id <> $1 ORDER BY id LIMIT 500";
/// Re-wraps one data key, unless the row changed since it was read.
const REWRAP: &str = "UPDATE consent_vault SET kek_id = $2, data_key = $3 \
    WHERE id = $1 AND kek_id = $4 AND data_key = $5";
const COUNT_CURRENT: &str = "SELECT COUNT(*) FROM consent_vault WHERE kek_id = $1";

impl Vault {
    /// Opens the vault after checking that every stored record is wrapped by a key
    /// given (see [`VaultError::MissingKey`]).
    pub async fn open(db: Db, keys: VaultKeys, clock: Arc<dyn Clock>) -> Result<Self, VaultError> {
        let vault = Self {
            inner: Arc::new(Inner {
                db,
                keys,
                clock,
                cache: Cache::default(),
            }),
        };
        vault.check_keys().await?;
        Ok(vault)
    }

    /// The records per key-encryption key, after checking each is configured.
    pub async fn check_keys(&self) -> Result<Vec<KeyUse>, VaultError> {
        let rows: Vec<(String, i64)> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(USE_BY_KEY).fetch_all(pool).await
        })?;
        let keys = &self.inner.keys;
        let mut uses = Vec::with_capacity(rows.len());
        for (kek_id, records) in rows {
            if keys.find(&kek_id).is_none() {
                return Err(VaultError::MissingKey {
                    kek_id,
                    count: records,
                });
            }
            let current = kek_id == keys.current_id();
            uses.push(KeyUse {
                kek_id,
                records,
                current,
            });
        }
        Ok(uses)
    }

    /// Stores `value` as `owner`'s `kind` for `upstream`, replacing what was there (with a
    /// fresh data key).
    pub async fn put(
        &self,
        owner: &str,
        upstream: &str,
        kind: &str,
        value: &[u8],
    ) -> Result<(), VaultError> {
        let now = self.inner.clock.unix();
        let existing: Option<SealedRow> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(FIND).bind(owner).bind(upstream).bind(kind)
                .fetch_optional(pool).await
        })?;
        let id = match &existing {
            Some((id, ..)) => id.clone(),
            None => new_id(),
        };
        let (kek_id, data_key, sealed) = self.seal(&id, owner, value);
        if existing.is_some() {
            on_pool!(&self.inner.db, pool => {
                sqlx::query(REPLACE).bind(&id).bind(&kek_id).bind(&data_key).bind(&sealed)
                    .bind(now).execute(pool).await
                .map(|r| r.rows_affected())
            })?;
        } else {
            on_pool!(&self.inner.db, pool => {
                sqlx::query(INSERT).bind(&id).bind(owner).bind(upstream).bind(kind)
                    .bind(&kek_id).bind(&data_key).bind(&sealed).bind(now)
                    .execute(pool).await
                .map(|r| r.rows_affected())
            })?;
        }
        self.inner.cache.forget(Some(owner), Some(upstream));
        Ok(())
    }

    /// Replaces `owner`'s `kind` for `upstream` with `value` only if it is still at
    /// `version` (as [`Self::fetch`] gave it): whether it was replaced. Two writers that
    /// read the same version (two replicas refreshing one token) cannot both win.
    pub async fn replace_if(
        &self,
        owner: &str,
        upstream: &str,
        kind: &str,
        value: &[u8],
        version: i64,
    ) -> Result<bool, VaultError> {
        let now = self.inner.clock.unix();
        let existing: Option<SealedRow> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(FIND).bind(owner).bind(upstream).bind(kind)
                .fetch_optional(pool).await
        })?;
        let Some((id, ..)) = existing else {
            return Ok(false);
        };
        let (kek_id, data_key, sealed) = self.seal(&id, owner, value);
        let done = on_pool!(&self.inner.db, pool => {
            sqlx::query(REPLACE_IF).bind(&id).bind(&kek_id).bind(&data_key).bind(&sealed)
                .bind(now).bind(version).execute(pool).await
            .map(|r| r.rows_affected())
        })?;
        self.inner.cache.forget(Some(owner), Some(upstream));
        Ok(done > 0)
    }

    /// `owner`'s `kind` for `upstream`, decrypted (cached briefly), or `None`.
    pub async fn get(
        &self,
        owner: &str,
        upstream: &str,
        kind: &str,
    ) -> Result<Option<Plain>, VaultError> {
        let key = (owner.to_owned(), upstream.to_owned(), kind.to_owned());
        if let Some(value) = self.inner.cache.get(&key, Instant::now()) {
            return Ok(Some(value));
        }
        let Some((value, _)) = self.fetch(owner, upstream, kind).await? else {
            return Ok(None);
        };
        self.inner.cache.put(key, value.clone(), Instant::now());
        Ok(Some(value))
    }

    /// `owner`'s `kind` for `upstream` as stored now, decrypted, with its version (which
    /// every write raises), past the cache: for a caller that keeps the value itself and
    /// asks again now and then whether it changed (see [`Self::version`]).
    pub async fn fetch(
        &self,
        owner: &str,
        upstream: &str,
        kind: &str,
    ) -> Result<Option<(Plain, i64)>, VaultError> {
        let row: Option<SealedRow> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(FIND).bind(owner).bind(upstream).bind(kind)
                .fetch_optional(pool).await
        })?;
        let Some((id, kek_id, data_key, sealed, version)) = row else {
            return Ok(None);
        };
        let undecryptable = || undecryptable(owner, upstream, kind);
        let dek = self.unwrap(&id, owner, &kek_id, &data_key, undecryptable)?;
        let value = seal::open(&dek, &seal::bound_to("value", &id, owner, ""), &sealed)
            .ok_or_else(undecryptable)?;
        Ok(Some((Arc::new(value), version)))
    }

    /// The version of `owner`'s `kind` for `upstream` (`None`: there is none), without
    /// decrypting anything.
    pub async fn version(
        &self,
        owner: &str,
        upstream: &str,
        kind: &str,
    ) -> Result<Option<i64>, VaultError> {
        let version: Option<(i64,)> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(VERSION).bind(owner).bind(upstream).bind(kind)
                .fetch_optional(pool).await
        })?;
        Ok(version.map(|(v,)| v))
    }

    /// Removes `owner`'s `kind` for `upstream`; whether there was one.
    pub async fn remove(
        &self,
        owner: &str,
        upstream: &str,
        kind: &str,
    ) -> Result<bool, VaultError> {
        let done = on_pool!(&self.inner.db, pool => {
            sqlx::query(DELETE).bind(owner).bind(upstream).bind(kind).execute(pool).await
            .map(|r| r.rows_affected())
        })?;
        self.inner.cache.forget(Some(owner), Some(upstream));
        Ok(done > 0)
    }

    /// Removes every credential of `owner` (a person removed); how many.
    pub async fn remove_owner(&self, owner: &str) -> Result<u64, VaultError> {
        let done = on_pool!(&self.inner.db, pool => {
            sqlx::query(DELETE_OWNER).bind(owner).execute(pool).await
            .map(|r| r.rows_affected())
        })?;
        self.inner.cache.forget(Some(owner), None);
        Ok(done)
    }

    /// Every record, without values.
    pub async fn list(&self) -> Result<Vec<VaultEntry>, VaultError> {
        type ListRow = (String, String, String, String, i64, i64, i64);
        let rows: Vec<ListRow> = on_pool!(&self.inner.db, pool => {
            sqlx::query_as(LIST).fetch_all(pool).await
        })?;
        Ok(rows
            .into_iter()
            .map(
                |(owner, upstream, kind, kek_id, version, created_at, updated_at)| VaultEntry {
                    owner,
                    upstream,
                    kind,
                    kek_id,
                    version,
                    created_at,
                    updated_at,
                },
            )
            .collect())
    }

    /// Re-wraps every data key not under the current key-encryption key, a batch at a
    /// time. Values do not change, so calls using them go on meanwhile; a row changed
    /// between the read and the write (a new value: wrapped under the current key
    /// already) is left as it is.
    pub async fn rotate(&self) -> Result<Rotation, VaultError> {
        let current = &self.inner.keys.current;
        let mut rotation = Rotation::default();
        loop {
            let rows: Vec<Row> = on_pool!(&self.inner.db, pool => {
                sqlx::query_as(NOT_CURRENT).bind(current.id()).fetch_all(pool).await
            })?;
            if rows.is_empty() {
                break;
            }
            let mut progressed = false;
            for (id, owner, upstream, kind, kek_id, wrapped) in rows {
                let dek = self.unwrap(&id, &owner, &kek_id, &wrapped, || {
                    undecryptable(&owner, &upstream, &kind)
                })?;
                let rewrapped = wrap(current, &id, &owner, &dek);
                let done = on_pool!(&self.inner.db, pool => {
                    sqlx::query(REWRAP).bind(&id).bind(current.id()).bind(&rewrapped)
                        .bind(&kek_id).bind(&wrapped).execute(pool).await
                    .map(|r| r.rows_affected())
                })?;
                if done > 0 {
                    rotation.rewrapped += 1;
                    progressed = true;
                }
            }
            if !progressed {
                break;
            }
        }
        let current_count: i64 = on_pool!(&self.inner.db, pool => {
            sqlx::query_scalar(COUNT_CURRENT).bind(current.id()).fetch_one(pool).await
        })?;
        rotation.current = u64::try_from(current_count)
            .unwrap_or(0)
            .saturating_sub(rotation.rewrapped);
        Ok(rotation)
    }

    /// How many decrypted values are cached now.
    pub fn cached(&self) -> usize {
        self.inner.cache.len()
    }

    /// Seals `value` for the record `id` of `owner`: (kek id, wrapped data key, sealed
    /// value).
    fn seal(&self, id: &str, owner: &str, value: &[u8]) -> (String, String, String) {
        let kek = &self.inner.keys.current;
        let dek = seal::data_key();
        let sealed = seal::seal(&dek, &seal::bound_to("value", id, owner, ""), value);
        (kek.id().to_owned(), wrap(kek, id, owner, &dek), sealed)
    }

    /// The data key of the record `id` of `owner`, unwrapped with the key `kek_id` names.
    fn unwrap(
        &self,
        id: &str,
        owner: &str,
        kek_id: &str,
        wrapped: &str,
        undecryptable: impl Fn() -> VaultError,
    ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        let kek = self
            .inner
            .keys
            .find(kek_id)
            .ok_or_else(|| VaultError::MissingKey {
                kek_id: kek_id.to_owned(),
                count: 1,
            })?;
        seal::open(
            kek.key(),
            &seal::bound_to("data key", id, owner, kek_id),
            wrapped,
        )
        .and_then(|bytes| seal::as_key(&bytes))
        .ok_or_else(undecryptable)
    }
}

/// The data key `dek` of the record `id` of `owner`, wrapped by `kek`.
fn wrap(kek: &Kek, id: &str, owner: &str, dek: &[u8; 32]) -> String {
    seal::seal(
        kek.key(),
        &seal::bound_to("data key", id, owner, kek.id()),
        dek,
    )
}

/// The error for a record of `owner`'s `kind` for `upstream` that does not decrypt.
fn undecryptable(owner: &str, upstream: &str, kind: &str) -> VaultError {
    VaultError::Undecryptable {
        kind: kind.to_owned(),
        upstream: upstream.to_owned(),
        whose: whose(owner),
    }
}

/// How an error names whose credential it is, without an id a person would not know.
fn whose(owner: &str) -> String {
    if owner == SHARED {
        "shared by everyone".to_owned()
    } else {
        "a person's own".to_owned()
    }
}

/// A fresh record id: a random UUID, hex.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests;
