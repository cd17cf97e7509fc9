//! Stage 3, decide: may this caller make this call? The token's grant (tool patterns,
//! argument constraints, the grant's own risk limit), the person's live trust ceiling,
//! the tool's risk class — deny by default. The decision is data ([`Verdict`]); its
//! words are written only for a refusal. The call's budget is counted separately
//! ([`charge`]), once the call is sure to go now (a held call is counted when approved).

use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use serde_json::Value;
use serde_json::value::RawValue;
use warrant_consent::token::{CallArgs, Decision, Risk};

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
    /// Refused at the edge: an HTTP 403 with a step-up challenge naming the tool (the
    /// call it refused, for the record).
    Refused(Refusal, Authorized),
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
        Some(raw) => match arguments(raw) {
            Some(arguments) => arguments,
            None => return Verdict::Later,
        },
    };
    let decision = auth.decide(caller, &route.server, &route.original, route.risk, args);
    verdict(
        decision,
        Authorized {
            server: route.server.clone(),
            tool: route.original.clone(),
            risk: route.risk,
        },
    )
}

/// A call's `arguments` as the token sees them ([`call_args`]: strings as they are,
/// numbers and booleans as their JSON text, other values left out), read straight from
/// the raw JSON: no `Value` tree in between, a string argument is not copied twice.
/// `None` when they are not an object.
fn arguments(raw: &RawValue) -> Option<CallArgs> {
    struct Args(CallArgs);
    impl<'de> serde::Deserialize<'de> for Args {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Args;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Args, A::Error> {
                    let mut args = CallArgs::new();
                    while let Some(name) = map.next_key::<String>()? {
                        let text = match map.next_value::<Value>()? {
                            Value::String(s) => s,
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            // As a map would: a later member replaces an earlier one.
                            _ => {
                                args.remove(&name);
                                continue;
                            }
                        };
                        args.insert(name, text);
                    }
                    Ok(Args(args))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    serde_json::from_str::<Args>(raw.get())
        .ok()
        .map(|Args(args)| args)
}

/// The verdict of the token's decision about `call`.
fn verdict(decision: Decision, call: Authorized) -> Verdict {
    if decision.allow {
        Verdict::Allowed(call)
    } else if refused_by_ceiling(&decision) {
        Verdict::Later
    } else {
        let scope = step_up_scope(&call.server, &call.tool);
        Verdict::Refused(Refusal::Insufficient { decision, scope }, call)
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
        .is_some_and(|a| &*a.server == server && &*a.tool == tool)
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
        .is_some_and(|a| &*a.server == server && &*a.tool == tool)
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
            (&*authorized.server, &*authorized.tool),
            ("github", "delete_repo")
        );
    }

    #[test]
    fn a_refusal_the_person_could_lift_is_a_step_up_naming_the_tool() {
        let refused = verdict(
            decision(false, &["block 1: check if tool($t), ..."]),
            call(),
        );
        let Verdict::Refused(Refusal::Insufficient { scope, .. }, _) = refused else {
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

    #[test]
    fn arguments_are_what_the_token_sees_of_a_json_map() {
        use serde_json::Map;
        use warrant_consent::token::call_args;
        for text in [
            r#"{}"#,
            r#"{"message":"hello","n":1.50,"big":12345678901234567890,"yes":true}"#,
            r#"{"a":null,"b":[1],"c":{"d":"e"},"f":"g\u00e9"}"#,
            r#"{"a":"x","a":null}"#,
            r#"{"a":null,"a":"x"}"#,
        ] {
            let raw = RawValue::from_string(text.into()).expect("raw");
            let map: Map<String, Value> = serde_json::from_str(text).expect("an object");
            assert_eq!(arguments(&raw), Some(call_args(&map)), "{text}");
        }
        for text in ["[]", "1", "\"a\"", "null"] {
            let raw = RawValue::from_string(text.into()).expect("raw");
            assert_eq!(arguments(&raw), None, "{text}");
        }
    }

    #[test]
    fn a_string_argument_is_read_in_three_allocations() {
        let raw = RawValue::from_string(r#"{"message":"hello"}"#.into()).expect("raw");
        let allocations = crate::allocations(|| {
            assert!(arguments(&raw).is_some_and(|a| a.len() == 1));
        });
        // Its name, its value and the map's node.
        assert_eq!(allocations, 3);
    }
}
