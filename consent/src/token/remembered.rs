//! Allowed calls remembered with their verified token, so that the same call again costs
//! a hash and a lookup instead of a Datalog run; see [`Decisions`] for why that gives the
//! same decisions as the run.

use std::collections::{BTreeSet, HashSet};
use std::sync::{OnceLock, RwLock};

use biscuit_auth::builder::{Check, Convert, Fact};
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::{AuthorizerBuilder, Biscuit};
use sha2::{Digest, Sha256};

use super::call::CallRef;
use super::datalog::{self, AuthorityFacts, limits};
use super::identity::{BlockKind, Identity};

/// Allowed calls remembered with one verified token (it lives as long as the token stays
/// in the verifier's cache). Refusals are never remembered, and revocation is checked on
/// every call before this (`Verifier::verify_unrevoked`).
///
/// Why a remembered allow is the decision the Datalog would give now: it is used only
/// when every block of the token is, check for check, what Warrant writes — block 0 the
/// authority block `mint` writes for the token's identity, every later block the checks
/// `datalog::restriction` writes for the restriction its context describes, compared as
/// data, not as printed text (a block of another shape, a third-party block or one whose
/// context does not match its checks turns the cache off for the token). In such a token the
/// only checks that read `time` are `$time <= X` (the token's and each block's end), no
/// block has rules, and the only checks that read arguments are the blocks' argument
/// constraints. So for any `now` not past the earliest X, the decision depends on the
/// resource, server, tool, risk, ceiling and the constrained arguments alone — the key
/// (a SHA-256 of them). A call past the earliest X is always run in full.
pub(crate) struct Decisions {
    /// Computed at first use: `None` when the token is not entirely Warrant's.
    shape: OnceLock<Option<Shape>>,
    /// Read on every call of the token (the agents of a subagent chain, or many workers of
    /// one agent, share it): a read lock, written only when a call is first allowed.
    allowed: RwLock<HashSet<[u8; 32]>>,
}

/// What makes a call's decision for a token entirely Warrant's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    /// The earliest end among the token's time checks (Unix seconds).
    until: i64,
    /// The argument names some block constrains.
    arg_names: BTreeSet<String>,
}

/// Allowed calls remembered per token; the oldest is not tracked, any one is dropped.
const REMEMBERED_PER_TOKEN: usize = 64;

impl Decisions {
    pub(crate) fn new() -> Self {
        Self {
            shape: OnceLock::new(),
            allowed: RwLock::new(HashSet::new()),
        }
    }

    /// Whether decisions for this token may be remembered at all.
    pub(crate) fn apply(&self, biscuit: &Biscuit, identity: &Identity) -> bool {
        self.shape(biscuit, identity).is_some()
    }

    fn shape(&self, biscuit: &Biscuit, identity: &Identity) -> Option<&Shape> {
        self.shape
            .get_or_init(|| shape_of(biscuit, identity))
            .as_ref()
    }

    /// The key of `call`, when its decision may be remembered or looked up.
    pub(super) fn key(
        &self,
        biscuit: &Biscuit,
        identity: &Identity,
        call: &CallRef<'_>,
    ) -> Option<[u8; 32]> {
        let shape = self.shape(biscuit, identity)?;
        if call.now > shape.until {
            return None;
        }
        let mut hash = Sha256::new();
        let mut put = |bytes: &[u8]| {
            hash.update((bytes.len() as u64).to_le_bytes());
            hash.update(bytes);
        };
        put(call.resource.as_bytes());
        put(call.server.as_bytes());
        put(call.tool.as_bytes());
        put(&call.risk.level().to_le_bytes());
        match call.ceiling {
            Some(ceiling) => put(&ceiling.level().to_le_bytes()),
            None => put(&[]),
        }
        for name in &shape.arg_names {
            match call.args.get(name) {
                Some(value) => {
                    put(b"some");
                    put(value.as_bytes());
                }
                None => put(b"none"),
            }
        }
        Some(hash.finalize().into())
    }

    pub(super) fn allowed(&self, key: &[u8; 32]) -> bool {
        let allowed = self.allowed.read().unwrap_or_else(|p| p.into_inner());
        allowed.contains(key)
    }

    pub(super) fn remember(&self, key: [u8; 32]) {
        let mut allowed = self.allowed.write().unwrap_or_else(|p| p.into_inner());
        if allowed.len() >= REMEMBERED_PER_TOKEN
            && let Some(victim) = allowed.iter().next().copied()
        {
            allowed.remove(&victim);
        }
        allowed.insert(key);
    }
}

/// `Some` when every block of `token` is exactly what Warrant writes (see [`Decisions`]):
/// the token's facts, rules and checks, as Biscuit loads them, equal (as data, not as
/// text) those of the authority block `mint` writes for its identity followed by the
/// checks `datalog::restriction` writes for each later block's described restriction.
fn shape_of(biscuit: &Biscuit, identity: &Identity) -> Option<Shape> {
    let blocks = biscuit.block_count();
    if identity.chain.len() != blocks || blocks == 0 {
        return None;
    }
    // No third-party blocks and no public keys to trust: with no facts or rules outside
    // the authority block, a block's scopes cannot change what its checks see.
    for index in 0..blocks {
        if biscuit.block_external_key(index).ok()?.is_some()
            || biscuit.block_public_keys(index).ok()?.current_offset() != 0
        {
            return None;
        }
    }
    let authority = datalog::authority(
        &AuthorityFacts {
            user: &identity.user,
            agent: &identity.agent,
            grant: &identity.grant,
            audience: &identity.audience,
            expires_at: identity.expires_at,
            calls_per_hour: identity.calls_per_hour,
        },
        identity.kid,
    )
    .ok()?;
    let (facts, rules, checks) = authority.dump();
    if !rules.is_empty() {
        return None;
    }
    let mut symbols = SymbolTable::new();
    let mut expected_checks: Vec<Check> = Vec::new();
    for check in &checks {
        expected_checks.push(normalized(check, &mut symbols)?);
    }
    let mut expected_facts: Vec<Fact> = Vec::new();
    for fact in &facts {
        expected_facts.push(Fact::convert_from(&fact.convert(&mut symbols), &symbols).ok()?);
    }
    let mut shape = Shape {
        until: identity.expires_at,
        arg_names: BTreeSet::new(),
    };
    for block in identity.chain.iter().skip(1) {
        if !matches!(block.kind, BlockKind::Consent | BlockKind::Narrowing) {
            return None;
        }
        let restriction = block.restriction.as_ref()?;
        let written = datalog::restriction(restriction).ok()?;
        if !written.facts.is_empty() || !written.rules.is_empty() || !written.scopes.is_empty() {
            return None;
        }
        for check in &written.checks {
            expected_checks.push(normalized(check, &mut symbols)?);
        }
        if let Some(end) = restriction.expires_at {
            shape.until = shape.until.min(end);
        }
        shape
            .arg_names
            .extend(restriction.args.iter().map(|a| a.name.clone()));
    }
    // What the token holds, as Biscuit loads it for every call.
    let loaded = AuthorizerBuilder::new()
        .set_limits(limits())
        .build(biscuit)
        .ok()?;
    let (facts, rules, checks, policies) = loaded.dump();
    let same_facts = facts.len() == expected_facts.len()
        && expected_facts.iter().all(|f| facts.contains(f))
        && facts.iter().all(|f| expected_facts.contains(f));
    (same_facts && rules.is_empty() && policies.is_empty() && checks == expected_checks)
        .then_some(shape)
}

/// A builder check as Biscuit stores it: parameters bound, sets in a canonical order.
fn normalized(check: &Check, symbols: &mut SymbolTable) -> Option<Check> {
    Check::convert_from(&check.convert(symbols), symbols).ok()
}
