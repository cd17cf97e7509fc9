//! Verifying tokens: the signature chain against the key ring (once per token, then
//! cached by the token's SHA-256), and the identity the token carries.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use biscuit_auth::{AuthorizerBuilder, Biscuit};
use sha2::{Digest, Sha256};

use super::TokenError;
use super::datalog::{self, limits};
use super::identity::{BlockKind, BlockSummary, Identity};
use super::keys::{KeyRefusal, KeyRing};
use super::remembered::Decisions;
use super::restriction::{CallArgs, ModelCall, Refusal, Risk};

/// Tokens longer than this are refused before parsing.
pub const MAX_TOKEN_LEN: usize = 64 * 1024;
/// Verified tokens kept by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 10_000;

/// A token whose signature chain verified, with its identity.
pub struct VerifiedToken {
    pub(crate) biscuit: Biscuit,
    pub identity: Identity,
    /// Calls this token was found to allow (see `remembered.rs`).
    pub(crate) decisions: Decisions,
}

/// Shows the identity only: the token itself (which carries the key that appends the
/// next block) is a bearer secret and never goes to logs.
impl std::fmt::Debug for VerifiedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedToken")
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl VerifiedToken {
    /// Reads the identity of a token whose signature was checked.
    pub(crate) fn new(biscuit: Biscuit) -> Result<Self, TokenError> {
        let kid = biscuit.root_key_id().ok_or(TokenError::UnknownKey(None))?;
        let identity = identity_of(&biscuit, kid)?;
        Ok(Self {
            biscuit,
            identity,
            decisions: Decisions::new(),
        })
    }

    /// Whether [`authorize`](super::authorize) remembers the calls this token allows:
    /// only when every block is exactly what Warrant writes (computed once, at the
    /// first call).
    pub fn remembers_decisions(&self) -> bool {
        self.decisions.apply(&self.biscuit, &self.identity)
    }

    /// Whether a listing should show `server.tool` of class `risk` to this token's agent:
    /// every block that describes itself allows it by name, risk and time. Argument
    /// constraints are left to the call (they depend on the arguments), and so is a block
    /// without a description (its checks still decide every call): the listing never
    /// hides a tool the token could call, and the call is always decided by
    /// [`authorize`](super::authorize).
    pub fn lists(&self, now: i64, server: &str, tool: &str, risk: Risk) -> bool {
        let args = CallArgs::new();
        let call = ModelCall {
            now,
            server,
            tool,
            risk,
            args: &args,
        };
        self.identity.chain.iter().all(|block| {
            block.restriction.as_ref().is_none_or(|r| {
                r.refusals(&call)
                    .iter()
                    .all(|refusal| matches!(refusal, Refusal::Arg(_)))
            })
        })
    }

    /// The token as Datalog (biscuit's `print()`), for debugging and golden tests.
    pub fn print(&self) -> String {
        self.biscuit.print()
    }
}

/// Revoked ids, as the caller knows them (grant ids and block revocation ids), and the
/// people whose agents are stopped.
pub trait Revocations {
    fn is_revoked(&self, id: &str) -> bool;

    /// The email of `user` when that person is disabled (their tokens are refused).
    fn disabled_user(&self, _user: &str) -> Option<String> {
        None
    }
}

impl Revocations for std::collections::HashSet<String> {
    fn is_revoked(&self, id: &str) -> bool {
        self.contains(id)
    }
}

impl<F: Fn(&str) -> bool> Revocations for F {
    fn is_revoked(&self, id: &str) -> bool {
        self(id)
    }
}

/// How the verifier behaves.
#[derive(Debug, Clone)]
pub struct VerifierSettings {
    /// Verified tokens kept (each a few kilobytes).
    pub cache_capacity: usize,
}

impl Default for VerifierSettings {
    fn default() -> Self {
        Self {
            cache_capacity: DEFAULT_CACHE_CAPACITY,
        }
    }
}

struct Entry {
    token: Arc<VerifiedToken>,
    expires_at: i64,
}

/// Shards of the verified-token cache: a lookup takes the read lock of one of them, so
/// calls with different tokens do not wait for each other (and calls with the same token
/// only share a read lock).
const SHARDS: usize = 16;

/// The verified tokens by the SHA-256 of their text, in shards, with their count.
#[derive(Default)]
struct Cache {
    shards: [RwLock<HashMap<[u8; 32], Entry>>; SHARDS],
    len: AtomicUsize,
}

impl Cache {
    fn shard(&self, hash: &[u8; 32]) -> &RwLock<HashMap<[u8; 32], Entry>> {
        &self.shards[usize::from(hash[0]) % SHARDS]
    }

    fn remove(&self, hash: &[u8; 32]) {
        let mut shard = write(self.shard(hash));
        if shard.remove(hash).is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Drops the tokens expired at `now`.
    fn drop_expired(&self, now: i64) {
        for shard in &self.shards {
            let mut shard = write(shard);
            let before = shard.len();
            shard.retain(|_, e| now <= e.expires_at);
            self.len.fetch_sub(before - shard.len(), Ordering::Relaxed);
        }
    }

    /// Drops the live token that ends soonest.
    fn drop_soonest(&self) {
        let soonest = self
            .shards
            .iter()
            .filter_map(|shard| {
                read(shard)
                    .iter()
                    .min_by_key(|(_, e)| e.expires_at)
                    .map(|(k, e)| (e.expires_at, *k))
            })
            .min();
        if let Some((_, hash)) = soonest {
            self.remove(&hash);
        }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|p| p.into_inner())
}

/// Verifies tokens against the key ring and caches the verified ones. Cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    keys: KeyRing,
    capacity: usize,
    cache: Arc<Cache>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("capacity", &self.capacity)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(keys: KeyRing, settings: VerifierSettings) -> Self {
        Self {
            keys,
            capacity: settings.cache_capacity.max(1),
            cache: Arc::default(),
        }
    }

    /// The key ring it verifies with.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// Verifies `token` (base64url) at `now` (Unix seconds): signature chain, key id,
    /// expiry. A token seen before is answered from the cache while it and its key are
    /// valid. Revocation is not checked here: see [`Verifier::verify_unrevoked`].
    pub fn verify(&self, token: &str, now: i64) -> Result<Arc<VerifiedToken>, TokenError> {
        let token = token.trim();
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed(format!(
                "longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.lookup(&hash, now)? {
            return Ok(hit);
        }
        let verified = Arc::new(self.parse(token, now)?);
        if now > verified.identity.expires_at {
            return Err(TokenError::Expired(verified.identity.expires_at));
        }
        self.insert(hash, verified.clone(), now);
        Ok(verified)
    }

    /// [`Verifier::verify`], then refuses the token when its person is disabled, or its
    /// grant or any of its blocks is revoked — checked on every call, cached or not.
    pub fn verify_unrevoked(
        &self,
        token: &str,
        now: i64,
        revoked: &dyn Revocations,
    ) -> Result<Arc<VerifiedToken>, TokenError> {
        let verified = self.verify(token, now)?;
        let identity = &verified.identity;
        if let Some(email) = revoked.disabled_user(&identity.user) {
            return Err(TokenError::UserDisabled(email));
        }
        if revoked.is_revoked(&identity.grant)
            || identity
                .revocation_ids
                .iter()
                .any(|id| revoked.is_revoked(id))
        {
            return Err(TokenError::Revoked);
        }
        Ok(verified)
    }

    /// How many verified tokens the cache holds.
    pub fn cached(&self) -> usize {
        self.cache.len.load(Ordering::Relaxed)
    }

    fn lookup(&self, hash: &[u8; 32], now: i64) -> Result<Option<Arc<VerifiedToken>>, TokenError> {
        let (token, expires_at) = {
            let shard = read(self.cache.shard(hash));
            let Some(entry) = shard.get(hash) else {
                return Ok(None);
            };
            (entry.token.clone(), entry.expires_at)
        };
        // The same order as a first verification: the key, then the token's life.
        if let Some(refusal) = self.keys.refusal(token.identity.kid, now) {
            self.cache.remove(hash);
            return Err(key_error(refusal));
        }
        if now > expires_at {
            self.cache.remove(hash);
            return Err(TokenError::Expired(expires_at));
        }
        Ok(Some(token))
    }

    fn insert(&self, hash: [u8; 32], token: Arc<VerifiedToken>, now: i64) {
        if self.cached() >= self.capacity {
            self.cache.drop_expired(now);
        }
        if self.cached() >= self.capacity {
            // Still full of live tokens: drop the one that ends soonest.
            self.cache.drop_soonest();
        }
        let expires_at = token.identity.expires_at;
        let mut shard = write(self.cache.shard(&hash));
        if shard.insert(hash, Entry { token, expires_at }).is_none() {
            self.cache.len.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn parse(&self, token: &str, now: i64) -> Result<VerifiedToken, TokenError> {
        let refusal = std::cell::Cell::new(None);
        let provider = |kid: Option<u32>| {
            self.keys.verifying_key(kid, now).map_err(|why| {
                refusal.set(Some(why));
                biscuit_auth::error::Format::UnknownPublicKey
            })
        };
        let biscuit =
            Biscuit::from_base64(token, provider).map_err(|e| match (refusal.get(), e) {
                (Some(why), _) => key_error(why),
                (None, e) => map_parse_error(e),
            })?;
        VerifiedToken::new(biscuit)
    }
}

fn key_error(refusal: KeyRefusal) -> TokenError {
    match refusal {
        KeyRefusal::Unknown(kid) => TokenError::UnknownKey(kid),
        KeyRefusal::Expired(kid) => TokenError::KeyExpired(kid),
        KeyRefusal::Revoked(kid) => TokenError::KeyRevoked(kid),
    }
}

fn map_parse_error(e: biscuit_auth::error::Token) -> TokenError {
    use biscuit_auth::error::{Format, Token};
    match e {
        Token::Format(
            Format::Signature(_)
            | Format::SealedSignature
            | Format::InvalidSignatureSize(_)
            | Format::SignatureDeserializationError(_)
            | Format::BlockSignatureDeserializationError(_),
        ) => TokenError::BadSignature,
        Token::Format(Format::UnknownPublicKey) => TokenError::UnknownKey(None),
        other => TokenError::Malformed(other.to_string()),
    }
}

type AuthorityRow = (String, String, String, String, std::time::SystemTime);

/// Reads the authority facts and describes every block.
fn identity_of(biscuit: &Biscuit, kid: u32) -> Result<Identity, TokenError> {
    let not_warrant = |why: String| TokenError::NotWarrant(why);
    let mut authorizer = AuthorizerBuilder::new()
        .set_limits(limits())
        .build(biscuit)
        .map_err(|e| not_warrant(e.to_string()))?;
    let rows: Vec<AuthorityRow> = authorizer
        .query_with_limits(
            "identity($user, $agent, $grant, $audience, $expires) <- \
             user($user), agent($agent), grant($grant), audience($audience), expires($expires)",
            limits(),
        )
        .map_err(|e| not_warrant(e.to_string()))?;
    let [(user, agent, grant, audience, expires)] = rows.as_slice() else {
        return Err(not_warrant(format!(
            "expected one user, agent, grant, audience and expiry, found {} combinations",
            rows.len()
        )));
    };
    let expires_at = expires
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or_else(|| not_warrant("an expiry before 1970".into()))?;
    let budgets: Vec<(i64,)> = authorizer
        .query_with_limits("budget($n) <- calls_per_hour($n)", limits())
        .map_err(|e| not_warrant(e.to_string()))?;
    let calls_per_hour = match budgets.as_slice() {
        [] => None,
        [(n,)] if *n >= 1 => Some(*n),
        _ => {
            return Err(not_warrant(format!(
                "expected at most one call budget of at least 1, found {budgets:?}"
            )));
        }
    };
    let contexts = biscuit.context();
    let chain = (0..biscuit.block_count())
        .map(|index| {
            let external = biscuit.block_external_key(index).ok().flatten().is_some();
            let described = if external {
                None
            } else {
                datalog::described(contexts.get(index).and_then(|c| c.as_deref()))
            };
            let kind = match (index, &described) {
                (0, _) => BlockKind::Authority,
                (1, Some(_)) => BlockKind::Consent,
                (_, Some(_)) => BlockKind::Narrowing,
                (_, None) => BlockKind::Other,
            };
            BlockSummary {
                index,
                kind,
                restriction: described,
            }
        })
        .collect();
    let revocation_ids = biscuit
        .revocation_identifiers()
        .iter()
        .map(|id| crate::hex(id))
        .collect();
    Ok(Identity {
        user: user.clone(),
        agent: agent.clone(),
        grant: grant.clone(),
        audience: audience.clone(),
        expires_at,
        calls_per_hour,
        kid,
        chain,
        revocation_ids,
    })
}
