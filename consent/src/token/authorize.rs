//! Authorizing one call with a verified token: the call's facts, every block's checks,
//! and the gateway's policy, in one Datalog run. Deny by default; a refusal says, in
//! words an agent can act on, what the call would need.

use std::sync::LazyLock;
use std::time::Duration;

use biscuit_auth::builder::{Fact, Term, fact};
use biscuit_auth::error::{FailedCheck, Logic, Token};
use biscuit_auth::{AuthorizerBuilder, AuthorizerLimits};
use serde::{Deserialize, Serialize};

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
    /// Why, in words: for a refusal, what the call would need.
    pub reason: String,
    /// The checks that failed, as Datalog, prefixed with where they live.
    pub failed_checks: Vec<String>,
}

impl Decision {
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
pub fn authorize(token: &VerifiedToken, call: &CallFacts) -> Decision {
    let tool_id = format!("{}.{}", call.server, call.tool);
    if call.args.len() > MAX_ARGS {
        return Decision::deny(
            format!("the call to {tool_id} has more than {MAX_ARGS} arguments"),
            Vec::new(),
        );
    }
    let Ok(now) = u64::try_from(call.now) else {
        return Decision::deny("the call's time is before 1970".into(), Vec::new());
    };
    let base = match &*BASE {
        Ok(base) => base.clone(),
        Err(e) => return Decision::deny(format!("the gateway policy is invalid: {e}"), Vec::new()),
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
    let mut builder = base;
    for f in facts {
        builder = match builder.fact(f) {
            Ok(b) => b,
            Err(e) => return Decision::deny(format!("cannot state the call: {e}"), Vec::new()),
        };
    }
    if let Some(ceiling) = call.ceiling {
        let mut params = std::collections::HashMap::new();
        params.insert("ceiling".to_owned(), Term::Integer(ceiling.level()));
        builder = match builder.code_with_params(
            "check if risk($risk), $risk <= {ceiling};",
            params,
            std::collections::HashMap::new(),
        ) {
            Ok(b) => b,
            Err(e) => return Decision::deny(format!("cannot state the ceiling: {e}"), Vec::new()),
        };
    }
    let result = builder
        .build(&token.biscuit)
        .and_then(|mut authorizer| authorizer.authorize());
    match result {
        Ok(_) => Decision {
            allow: true,
            reason: format!(
                "grant {} of user {} allows agent {} to call {tool_id}",
                token.identity.grant, token.identity.user, token.identity.agent
            ),
            failed_checks: Vec::new(),
        },
        Err(Token::FailedLogic(
            Logic::Unauthorized { checks, .. } | Logic::NoMatchingPolicy { checks },
        )) if !checks.is_empty() => explain(token, call, &tool_id, &checks),
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
                match call.ceiling {
                    Some(ceiling) => format!(
                        "tool {tool_id} is {} risk, above the ceiling of user {} ({ceiling}); an admin can raise it",
                        call.risk, token.identity.user
                    ),
                    None => format!("the gateway refuses {tool_id}: {}", a.rule),
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
