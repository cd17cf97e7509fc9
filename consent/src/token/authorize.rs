//! Authorizing one call with a verified token: the call's facts, every block's checks,
//! and the gateway's policy, in one Datalog run. Deny by default; a refusal says, in
//! words an agent can act on, what the call would need.
//!
//! An allowed call is remembered with its token ([`Decisions`]) when every block of the
//! token is exactly what Warrant writes, so that the same call again costs a hash and a
//! lookup instead of loading the token into a new authorizer; see [`Decisions`] for why
//! that gives the same decisions.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, LazyLock, OnceLock, RwLock};
use std::time::Duration;

use biscuit_auth::builder::{Check, Convert, Fact, Term, fact};
use biscuit_auth::datalog::SymbolTable;
use biscuit_auth::error::{FailedCheck, Logic, RunLimit, Token};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits};
use serde::{Deserialize, Serialize};

use sha2::{Digest, Sha256};

use super::datalog::{self, AuthorityFacts};
use super::restriction::{CallArgs, ModelCall, Refusal, Restriction, Risk, join_patterns};
use super::verify::{BlockKind, VerifiedToken};

/// The most arguments a call may carry into the Datalog run.
pub const MAX_ARGS: usize = 256;

/// The facts of one call, as the proxy knows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFacts {
    /// Unix seconds.
    pub now: i64,
    /// The canonical URL of this gateway's MCP endpoint (compared with the audience).
    pub resource: String,
    pub server: String,
    pub tool: String,
    /// The tool's risk class (an unclassified tool counts as `critical`).
    pub risk: Risk,
    /// The user's live trust ceiling, when one applies.
    pub ceiling: Option<Risk>,
    pub args: CallArgs,
    /// The person's email, to name them in a refusal (not a fact of the Datalog run; a
    /// shared copy, so stating a call allocates nothing for it).
    #[serde(skip)]
    pub person: Option<Arc<str>>,
}

/// The facts of one call, borrowed: enough to find a remembered decision
/// ([`remembered`]) without copying anything.
#[derive(Debug, Clone, Copy)]
pub struct CallRef<'a> {
    pub now: i64,
    pub resource: &'a str,
    pub server: &'a str,
    pub tool: &'a str,
    pub risk: Risk,
    pub ceiling: Option<Risk>,
    pub args: &'a CallArgs,
}

impl<'a> CallRef<'a> {
    /// The borrowed view of `call`.
    pub fn of(call: &'a CallFacts) -> Self {
        Self {
            now: call.now,
            resource: &call.resource,
            server: &call.server,
            tool: &call.tool,
            risk: call.risk,
            ceiling: call.ceiling,
            args: &call.args,
        }
    }
}

/// The arguments of a `tools/call` as the token sees them: strings as they are,
/// numbers and booleans as their JSON text; `null`, arrays and objects are left out (a
/// constraint on them refuses the call).
pub fn call_args(arguments: &serde_json::Map<String, serde_json::Value>) -> CallArgs {
    arguments
        .iter()
        .filter_map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((name.clone(), text))
        })
        .collect()
}

/// The outcome of [`authorize`]: plain data, stored verbatim in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub allow: bool,
    /// Why, in words, for a refusal: what the call would need. Empty for an allowed call:
    /// nothing is formatted on the path of a call that goes through; who allowed it is
    /// the token's own identity ([`Decision::describe`] says it in words when asked).
    pub reason: String,
    /// The checks that failed, as Datalog, prefixed with where they live.
    pub failed_checks: Vec<String>,
}

impl Decision {
    /// The decision in words: for a refusal its reason, for an allowed call of
    /// `server`'s `tool` the grant, the person and the agent that `token` names.
    pub fn describe(&self, token: &VerifiedToken, server: &str, tool: &str) -> String {
        if self.allow {
            let identity = &token.identity;
            format!(
                "grant {} of user {} allows agent {} to call {server}.{tool}",
                identity.grant, identity.user, identity.agent
            )
        } else {
            self.reason.clone()
        }
    }

    fn deny(reason: String, failed_checks: Vec<String>) -> Self {
        Self {
            allow: false,
            reason,
            failed_checks,
        }
    }
}

/// Datalog limits: generous enough for a debug build on a busy machine, tight enough
/// that a hostile narrowing block cannot hold a worker for long.
pub(crate) fn limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 1000,
        max_iterations: 100,
        max_time: if cfg!(debug_assertions) {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(10)
        },
    }
}

/// The gateway's side of every run: allow only a token that names a user, an agent and
/// a grant in its authority block (and pass every check of every block).
static BASE: LazyLock<Result<AuthorizerBuilder, String>> = LazyLock::new(|| {
    AuthorizerBuilder::new()
        .code("allow if user($user), agent($agent), grant($grant);")
        .map(|b| b.set_limits(limits()))
        .map_err(|e| e.to_string())
});

/// Decides whether `call` is allowed by `token`. Pure: same inputs, same decision.
///
/// A call allowed before is answered from the token's [`Decisions`] when they apply
/// (every block written by Warrant, `now` not past the earliest end in the token); the
/// answer is the one the Datalog would give (`tests/cache.rs` compares them).
pub fn authorize(token: &VerifiedToken, call: &CallFacts) -> Decision {
    if remembered(token, &CallRef::of(call)) {
        return allowed();
    }
    let tool_id = format!("{}.{}", call.server, call.tool);
    if let Some(refusal) = precheck(call, &tool_id) {
        return refusal;
    }
    let key = token.decisions.key(token, &CallRef::of(call));
    let decision = evaluate(token, call, &tool_id);
    if decision.allow
        && let Some(key) = key
    {
        token.decisions.remember(key);
    }
    decision
}

/// Whether `token` remembers allowing this very call: then [`authorize`] allows it
/// without a Datalog run (and without the call's facts being copied into a
/// [`CallFacts`]). `false` says nothing: decide with [`authorize`].
pub fn remembered(token: &VerifiedToken, call: &CallRef<'_>) -> bool {
    // What `precheck` refuses is never remembered as allowed.
    if call.args.len() > MAX_ARGS || call.now < 0 {
        return false;
    }
    token
        .decisions
        .key(token, call)
        .is_some_and(|key| token.decisions.allowed(&key))
}

/// [`authorize`] without the remembered decisions: always the full Datalog run.
#[cfg(test)]
pub(crate) fn authorize_uncached(token: &VerifiedToken, call: &CallFacts) -> Decision {
    let tool_id = format!("{}.{}", call.server, call.tool);
    if let Some(refusal) = precheck(call, &tool_id) {
        return refusal;
    }
    evaluate(token, call, &tool_id)
}

/// Refusals that need no Datalog: too many arguments, a time before 1970.
fn precheck(call: &CallFacts, tool_id: &str) -> Option<Decision> {
    if call.args.len() > MAX_ARGS {
        return Some(Decision::deny(
            format!("the call to {tool_id} has more than {MAX_ARGS} arguments"),
            Vec::new(),
        ));
    }
    if call.now < 0 {
        return Some(Decision::deny(
            "the call's time is before 1970".into(),
            Vec::new(),
        ));
    }
    None
}

/// An allowed call's decision: nothing to format (see [`Decision::describe`]).
fn allowed() -> Decision {
    Decision {
        allow: true,
        reason: String::new(),
        failed_checks: Vec::new(),
    }
}

/// The Datalog run: the call's facts, the gateway's policy and every block's checks.
///
/// A run cut short by the time limit is run once more: the limit is wall-clock time, and
/// a worker descheduled on a busy machine reaches it with a token that needs a few
/// microseconds (a refusal that depends on the machine, not on the token). A token
/// whose checks really are too slow costs two limits, then is refused.
fn evaluate(token: &VerifiedToken, call: &CallFacts, tool_id: &str) -> Decision {
    let run = || {
        stated(call).map(|builder| {
            builder
                .build(&token.biscuit)
                .and_then(|mut authorizer| authorizer.authorize())
        })
    };
    let mut result = match run() {
        Ok(result) => result,
        Err(refusal) => return refusal,
    };
    if matches!(result, Err(Token::RunLimit(RunLimit::Timeout))) {
        result = match run() {
            Ok(result) => result,
            Err(refusal) => return refusal,
        };
    }
    match result {
        Ok(_) => allowed(),
        Err(Token::FailedLogic(
            Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
        )) if !checks.is_empty() => explain(token, call, tool_id, &checks),
        Err(Token::FailedLogic(_)) => Decision::deny(
            "the token does not name a user, an agent and a grant".into(),
            Vec::new(),
        ),
        Err(Token::RunLimit(limit)) => Decision::deny(
            format!(
                "the token's checks exceed the evaluation limits ({limit}); use a simpler token"
            ),
            Vec::new(),
        ),
        Err(e) => Decision::deny(
            format!("the token's checks cannot be evaluated: {e}"),
            Vec::new(),
        ),
    }
}

/// The gateway's side of a run for `call`: its policy, the call's facts, the ceiling.
fn stated(call: &CallFacts) -> Result<AuthorizerBuilder, Decision> {
    let Ok(now) = u64::try_from(call.now) else {
        return Err(Decision::deny(
            "the call's time is before 1970".into(),
            Vec::new(),
        ));
    };
    let mut builder = match &*BASE {
        Ok(base) => base.clone(),
        Err(e) => {
            return Err(Decision::deny(
                format!("the gateway policy is invalid: {e}"),
                Vec::new(),
            ));
        }
    };
    let mut facts: Vec<Fact> = vec![
        fact("time", &[Term::Date(now)]),
        fact("resource", &[Term::Str(call.resource.clone())]),
        fact("server", &[Term::Str(call.server.clone())]),
        fact("tool", &[Term::Str(call.tool.clone())]),
        fact("risk", &[Term::Integer(call.risk.level())]),
    ];
    for (name, value) in &call.args {
        facts.push(fact(
            "arg",
            &[Term::Str(name.clone()), Term::Str(value.clone())],
        ));
    }
    for f in facts {
        builder = builder
            .fact(f)
            .map_err(|e| Decision::deny(format!("cannot state the call: {e}"), Vec::new()))?;
    }
    if let Some(ceiling) = call.ceiling {
        let mut params = std::collections::HashMap::new();
        params.insert("ceiling".to_owned(), Term::Integer(ceiling.level()));
        builder = builder
            .code_with_params(
                "check if risk($risk), $risk <= {ceiling};",
                params,
                std::collections::HashMap::new(),
            )
            .map_err(|e| Decision::deny(format!("cannot state the ceiling: {e}"), Vec::new()))?;
    }
    Ok(builder)
}

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
    pub(crate) fn apply(&self, token: &VerifiedToken) -> bool {
        self.shape(token).is_some()
    }

    fn shape(&self, token: &VerifiedToken) -> Option<&Shape> {
        self.shape.get_or_init(|| shape_of(token)).as_ref()
    }

    /// The key of `call`, when its decision may be remembered or looked up.
    fn key(&self, token: &VerifiedToken, call: &CallRef<'_>) -> Option<[u8; 32]> {
        let shape = self.shape(token)?;
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

    fn allowed(&self, key: &[u8; 32]) -> bool {
        let allowed = self.allowed.read().unwrap_or_else(|p| p.into_inner());
        allowed.contains(key)
    }

    fn remember(&self, key: [u8; 32]) {
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
fn shape_of(token: &VerifiedToken) -> Option<Shape> {
    let biscuit = &token.biscuit;
    let identity = &token.identity;
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

/// Turns failed checks into reasons: what each block needs that the call lacks.
fn explain(
    token: &VerifiedToken,
    call: &CallFacts,
    tool_id: &str,
    checks: &[FailedCheck],
) -> Decision {
    let mut reasons: Vec<String> = Vec::new();
    let mut failed = Vec::with_capacity(checks.len());
    let model = ModelCall {
        now: call.now,
        server: &call.server,
        tool: &call.tool,
        risk: call.risk,
        args: &call.args,
    };
    for check in checks {
        let reason = match check {
            FailedCheck::Block(b) => {
                failed.push(format!("block {}: {}", b.block_id, b.rule));
                let index = usize::try_from(b.block_id).unwrap_or(usize::MAX);
                block_reason(token, call, tool_id, index, &b.rule, &model)
            }
            FailedCheck::Authorizer(a) => {
                failed.push(format!("gateway: {}", a.rule));
                match (call.ceiling, call.person.as_deref()) {
                    (Some(ceiling), Some(person)) => format!(
                        "tool {tool_id} is {} risk, above the ceiling of {person} ({ceiling}); an admin can raise it",
                        call.risk
                    ),
                    (Some(ceiling), None) => format!(
                        "tool {tool_id} is {} risk, above the person's ceiling ({ceiling}); an admin can raise it",
                        call.risk
                    ),
                    (None, _) => format!("the gateway refuses {tool_id}: {}", a.rule),
                }
            }
        };
        if !reasons.contains(&reason) {
            reasons.push(reason);
        }
    }
    Decision::deny(reasons.join("; "), failed)
}

fn block_reason(
    token: &VerifiedToken,
    call: &CallFacts,
    tool_id: &str,
    index: usize,
    rule: &str,
    model: &ModelCall<'_>,
) -> String {
    let identity = &token.identity;
    if index == 0 {
        if rule.contains("resource(") {
            return format!(
                "the token is for {}, not for {}; get a token for this resource",
                identity.audience, call.resource
            );
        }
        if rule.contains("time(") {
            return format!(
                "the access token expired at {} (Unix seconds); get a new one",
                identity.expires_at
            );
        }
        return format!("the token refuses the call: {rule}");
    }
    let summary = identity.chain.get(index);
    let whose = match summary.map(|s| s.kind) {
        Some(BlockKind::Consent) => "the grant".to_owned(),
        _ => format!("the narrowing in block {index} of the token"),
    };
    let restriction: Option<&Restriction> = summary.and_then(|s| s.restriction.as_ref());
    let refusals = restriction.map(|r| r.refusals(model)).unwrap_or_default();
    if rule.starts_with("reject if") && (rule.contains("tool(") || rule.contains("server(")) {
        return format!("{whose} denies tool {tool_id}");
    }
    if rule.contains("time(") {
        let when = refusals
            .iter()
            .find_map(|r| match r {
                Refusal::Expired(at) => Some(format!(" at {at} (Unix seconds)")),
                _ => None,
            })
            .unwrap_or_default();
        return if summary.map(|s| s.kind) == Some(BlockKind::Consent) {
            format!("the grant expired{when}; the user must approve this agent again")
        } else {
            format!("{whose} expired{when}")
        };
    }
    if rule.contains("arg(") {
        let unmet: Vec<String> = refusals
            .iter()
            .filter_map(|r| match r {
                Refusal::Arg(constraint) => Some(constraint.describe()),
                _ => None,
            })
            .collect();
        return if unmet.is_empty() {
            format!("{whose} requires an argument constraint the call does not meet: {rule}")
        } else {
            format!("{whose} requires: {}", unmet.join(", "))
        };
    }
    if rule.contains("risk(") {
        let max = restriction
            .and_then(|r| r.max_risk)
            .map(|m| format!(" (at most {m})"))
            .unwrap_or_default();
        return format!(
            "tool {tool_id} is {} risk, above what {whose} allows{max}",
            call.risk
        );
    }
    if rule.contains("tool(") || rule.contains("server(") {
        let allowed = restriction
            .and_then(|r| r.allow.as_ref())
            .map(|allow| {
                if allow.is_empty() {
                    " (it allows no tools)".to_owned()
                } else {
                    format!(" (it allows {})", join_patterns(allow))
                }
            })
            .unwrap_or_default();
        return format!("{whose} does not include tool {tool_id}{allowed}");
    }
    format!("{whose} refuses the call: {rule}")
}
