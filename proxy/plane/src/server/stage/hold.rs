//! Stage 4, hold: a call of a `critical` tool goes upstream only once the person behind
//! the token approved it. Asking happens in the client's own protocol (multi round-trip,
//! URL elicitation, or an error naming the page: `enforce::approve`), which the MCP
//! handler does; so on the edge a held call leaves the fast path for the handler, which
//! counts its budget once it is approved.

use rmcp::model::{CallToolRequestParams, CallToolResponse};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};
use warrant_consent::token::Risk;

use super::authenticate::token_caller;
use warrant_consent::approvals::CallKey;

use crate::enforce::approve::Held;
use crate::server::gateway::Gateway;

/// Whether an allowed call of risk `risk` must wait for its person's approval
/// (`approvals`: critical calls are held at all, as they are whenever tokens are on).
pub(crate) fn waits_for_approval(risk: Risk, approvals: bool) -> bool {
    approvals && risk == Risk::Critical
}

/// What the handler does with a call after stage 4.
pub(crate) enum Hold {
    /// Forward it now; approved as this held call (the desk notes its later rounds).
    Go(Option<CallKey>),
    /// Answer the client with this instead (asked for approval, refused, or waiting).
    Answer(CallToolResponse),
}

/// Holds a call of `server`'s `tool` of risk `risk` for its person's approval, asking in
/// the client's own protocol, when it must wait for one.
pub(crate) async fn for_approval(
    gateway: &Gateway,
    risk: Risk,
    server: &str,
    tool: &str,
    request: &mut CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<Hold, ErrorData> {
    let desk = gateway.approval_desk();
    if !waits_for_approval(risk, desk.is_some()) {
        return Ok(Hold::Go(None));
    }
    let (Some(desk), Some(caller)) = (desk, token_caller(context)) else {
        return Ok(Hold::Go(None));
    };
    Ok(
        match desk.hold(&caller, server, tool, request, context).await? {
            Held::Go(key) => Hold::Go(Some(key)),
            Held::Answer(response) => Hold::Answer(response),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_critical_calls_wait_and_only_where_approvals_are_asked() {
        assert!(waits_for_approval(Risk::Critical, true));
        assert!(!waits_for_approval(Risk::Critical, false));
        for risk in [Risk::Low, Risk::Medium, Risk::High] {
            assert!(!waits_for_approval(risk, true), "{risk:?}");
        }
    }
}
