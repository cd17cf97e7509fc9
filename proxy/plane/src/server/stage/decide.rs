//! Stage 3, decide: may this caller make this call? The token's grant (tool patterns,
//! argument constraints, the grant's own risk limit), the person's live trust ceiling,
//! the tool's risk class — deny by default. The decision is data ([`Verdict`]); its
//! words are written only for a refusal. The call's budget is counted separately
//! ([`charge`]), once the call is sure to go now (a held call is counted when approved).

use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::{Map, Value};
use warrant_consent::token::{CallArgs, Decision, Risk, call_args};

use super::authenticate;

use crate::enforce::auth::{
    Authorized, Caller, McpAuth, Refusal, refused_by_ceiling, step_up_scope,
};
use crate::enforce::budget;
use crate::protocol::codes::NOT_PERMITTED;
use crate::protocol::era::Era;
use crate::protocol::message::CallParams;
use crate::server::gateway::Gateway;

/// What the edge decided about a `tools/call`.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// The token allows it.
    Allowed(Authorized),
    /// Not decided here; the handler decides in the client's protocol: a name that
    /// routes nowhere (yet), arguments that are not an object, or a refusal only an
    /// admin can lift (the ceiling: a JSON-RPC error, no step-up).
    Later,
    /// Refused at the edge: an HTTP 403 with a step-up challenge naming the tool.
    Refused(Refusal),
}

/// Decides a call of `call.name` by `caller`'s token, on the view of `era`.
pub(crate) async fn decide(
    gateway: &Gateway,
    auth: &McpAuth,
    caller: &Caller,
    era: Era,
    call: &CallParams<'_>,
) -> Verdict {
    // An upstream still starting may not be in the view yet: wait for it as the handler
    // would, so that a refusal can still be an HTTP 403.
    let view = gateway
        .settled_view(era, |v| v.knows_tool(&call.name))
        .await;
    let Some(route) = view.tool(&call.name) else {
        return Verdict::Later;
    };
    let args = match call.arguments() {
        None => Default::default(),
        Some(raw) => match serde_json::from_str::<Map<String, Value>>(raw.get()) {
            Ok(arguments) => call_args(&arguments),
            Err(_) => return Verdict::Later,
        },
    };
    let server = route.upstream.name();
    let decision = auth.decide(caller, server, &route.original, route.risk, args);
    verdict(
        decision,
        Authorized {
            server: server.to_owned(),
            tool: route.original.clone(),
            risk: route.risk,
        },
    )
}

/// The verdict of the token's decision about `call`.
fn verdict(decision: Decision, call: Authorized) -> Verdict {
    if decision.allow {
        Verdict::Allowed(call)
    } else if refused_by_ceiling(&decision) {
        Verdict::Later
    } else {
        let scope = step_up_scope(&call.server, &call.tool);
        Verdict::Refused(Refusal::Insufficient { decision, scope })
    }
}

/// Counts an allowed call against its grant's hourly budget, when it has one.
pub(crate) fn charge(auth: &McpAuth, caller: &Caller) -> Result<(), Refusal> {
    auth.charge(caller).map_err(Refusal::Budget)
}

/// Asks the caller's token about a request the edge did not decide; a refusal is
/// a JSON-RPC error with [`NOT_PERMITTED`] naming what would be needed.
pub(crate) fn permit(
    gateway: &Gateway,
    context: &RequestContext<RoleServer>,
    server: &str,
    tool: &str,
    risk: Risk,
    args: CallArgs,
) -> Result<(), ErrorData> {
    let Some(auth) = gateway.auth() else {
        return Ok(());
    };
    let parts = context.extensions.get::<http::request::Parts>();
    if parts
        .and_then(|p| p.extensions.get::<Authorized>())
        .is_some_and(|a| a.server == server && a.tool == tool)
    {
        return Ok(());
    }
    let caller = authenticate::token_caller(context).ok_or_else(authenticate::no_token)?;
    let decision = auth.decide(&caller, server, tool, risk, args);
    if decision.allow {
        return Ok(());
    }
    let data = if refused_by_ceiling(&decision) {
        // Only an admin can help (by raising the ceiling): no scope to ask for.
        serde_json::json!({ "failedChecks": decision.failed_checks })
    } else {
        let scope = step_up_scope(server, tool);
        serde_json::json!({ "scope": scope, "failedChecks": decision.failed_checks })
    };
    Err(ErrorData::new(NOT_PERMITTED, decision.reason, Some(data)))
}

/// Counts a `tools/call` of `server`'s `tool` against its grant's budget, unless the
/// edge authorized (and so counted) this very call.
pub(crate) fn charge_unless_counted(
    gateway: &Gateway,
    context: &RequestContext<RoleServer>,
    server: &str,
    tool: &str,
) -> Result<(), ErrorData> {
    let Some(auth) = gateway.auth() else {
        return Ok(());
    };
    let Some(parts) = context.extensions.get::<http::request::Parts>() else {
        return Ok(());
    };
    if parts
        .extensions
        .get::<Authorized>()
        .is_some_and(|a| a.server == server && a.tool == tool)
    {
        return Ok(());
    }
    let Some(caller) = parts.extensions.get::<Caller>() else {
        return Ok(());
    };
    auth.charge(caller)
        .map_err(|exhausted| budget::error(&exhausted, auth.now()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use warrant_consent::token::Risk;

    fn call() -> Authorized {
        Authorized {
            server: "github".into(),
            tool: "delete_repo".into(),
            risk: Risk::High,
        }
    }

    fn decision(allow: bool, failed: &[&str]) -> Decision {
        Decision {
            allow,
            reason: "the grant denies tool github.delete_repo".into(),
            failed_checks: failed.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    #[test]
    fn an_allowed_call_is_authorized_for_its_route() {
        let Verdict::Allowed(authorized) = verdict(decision(true, &[]), call()) else {
            panic!("not allowed");
        };
        assert_eq!(
            (authorized.server.as_str(), authorized.tool.as_str()),
            ("github", "delete_repo")
        );
    }

    #[test]
    fn a_refusal_the_person_could_lift_is_a_step_up_naming_the_tool() {
        let refused = verdict(
            decision(false, &["block 1: check if tool($t), ..."]),
            call(),
        );
        let Verdict::Refused(Refusal::Insufficient { scope, .. }) = refused else {
            panic!("{refused:?}");
        };
        assert_eq!(scope, "mcp tool:github.delete_repo");
    }

    #[test]
    fn a_refusal_by_the_ceiling_is_left_to_the_handler() {
        let refused = verdict(
            decision(
                false,
                &[
                    "block 1: check ...",
                    "gateway: risk high above the ceiling low",
                ],
            ),
            call(),
        );
        assert!(matches!(refused, Verdict::Later), "{refused:?}");
    }
}
