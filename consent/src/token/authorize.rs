//! Authorizing one call with a verified token: the call's facts, every block's checks,
//! and the gateway's policy, in one Datalog run. Deny by default; a refusal says, in
//! words an agent can act on, what the call would need.
//!
//! An allowed call is remembered with its token ([`Decisions`]) when every block of the
//! token is exactly what Warrant writes, so that the same call again costs a hash and a
//! lookup instead of loading the token into a new authorizer; see [`Decisions`] for why
//! that gives the same decisions.

use std::sync::LazyLock;

use biscuit_auth::AuthorizerBuilder;
use biscuit_auth::builder::{Fact, Term, fact};
use biscuit_auth::error::{FailedCheck, Logic, RunLimit, Token};
use serde::{Deserialize, Serialize};

use super::call::{CallFacts, CallRef, MAX_ARGS};
use super::datalog::limits;
use super::identity::BlockKind;
use super::restriction::{ModelCall, Refusal, Restriction, join_patterns};
use super::verify::VerifiedToken;

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
    let key = token
        .decisions
        .key(&token.biscuit, &token.identity, &CallRef::of(call));
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
        .key(&token.biscuit, &token.identity, call)
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
