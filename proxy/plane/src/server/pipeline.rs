//! One `tools/call`, stage by stage. This is the whole per-call path of the edge; each
//! stage is a module of [`super::stage`] with one job:
//!
//! 1. **parse** once into a typed request ([`stage::parse`], run by the edge for every
//!    POST: the envelope, duplicate keys, the call's parameters);
//! 2. **authenticate**: the token before the body, the session's subject after it
//!    ([`stage::authenticate`], run by the edge for every request);
//! 3. **decide**: grant, constraints, the tool's risk, the person's ceiling
//!    ([`stage::decide`]);
//! 4. **hold** a critical call for its person's approval ([`stage::hold`]);
//!    then the budget is counted (`stage::decide::charge`), once the call goes now;
//! 5. **credentials** for the upstream ([`stage::credentials`]);
//! 6. **record** the decision ([`stage::record`]);
//! 7. **forward**: the direct path, or rmcp ([`stage::forward`]);
//! 8. **inspect** the answer ([`stage::inspect`]);
//! 9. **record the outcome** ([`stage::outcome`]).
//!
//! A call that leaves the fast path ([`Step::Rmcp`]: held for approval, a name that
//! routes nowhere yet, a refusal only the handler can word, an upstream the direct path
//! cannot reach) is served by the MCP handler through [`tools_call_handled`]: the same
//! stages in the same order, in the client's protocol — the decision again (unless the
//! edge already allowed this very call), the hold, the budget, credentials, the record,
//! forwarding through rmcp ([`stage::forward_rmcp`]), inspection and the outcome.

use axum::response::Response;
use rmcp::model::{CallToolRequestParams, CallToolResponse};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::{ErrorData, RoleServer};
use warrant_consent::token::call_args;

use super::gateway::Gateway;
use super::stage::authenticate::token_caller;
use super::stage::decide::Verdict;
use super::stage::hold::Hold;
use super::stage::{decide, forward, forward_rmcp, hold, inspect, outcome, record};
use crate::enforce::approve::declares_url_elicitation;
use crate::enforce::auth::{Authorized, Caller};
use crate::protocol::era::{Era, era_of};
use crate::protocol::error::GatewayError;
use crate::protocol::headers::MCP_SESSION_ID;
use crate::protocol::message::{CallParams, Incoming};

/// Where a `tools/call` goes next.
pub(crate) enum Step {
    /// Answered here: the upstream's answer, or a refusal.
    Answer(Response),
    /// To the MCP handler (through rmcp).
    Rmcp,
}

/// Runs stages 3 to 9 of a `tools/call` whose request passed the edge (parsed,
/// authenticated: `caller` is the token's). `parts` gets the decision if the call goes on
/// to rmcp (the edge adds the caller), so that the handler need not decide it again.
pub(crate) async fn tools_call(
    gateway: &Gateway,
    manager: &LocalSessionManager,
    parts: &mut http::request::Parts,
    caller: Option<&Caller>,
    message: &Incoming<'_>,
    call: CallParams<'_>,
) -> Step {
    let mut allowed = None;
    let step = stages(gateway, manager, parts, caller, message, call, &mut allowed).await;
    if let (Step::Rmcp, Some(allowed)) = (&step, allowed) {
        parts.extensions.insert(allowed);
    }
    step
}

async fn stages(
    gateway: &Gateway,
    manager: &LocalSessionManager,
    parts: &http::request::Parts,
    caller: Option<&Caller>,
    message: &Incoming<'_>,
    call: CallParams<'_>,
    allowed: &mut Option<Authorized>,
) -> Step {
    // A request without a session is a 2026-07-28 one.
    let era = if parts.headers.contains_key(&MCP_SESSION_ID) {
        Era::Legacy
    } else {
        Era::Modern
    };
    // 3. Decide (with tokens; without, every tool is open on loopback).
    if let (Some(auth), Some(caller)) = (gateway.auth(), caller) {
        let decided = match decide::decide(gateway, auth, caller, era, &call).await {
            Verdict::Allowed(decided) => decided,
            Verdict::Later => return Step::Rmcp,
            Verdict::Refused(refusal) => {
                return Step::Answer(auth.refuse(&refusal, message.id_value(), &parts.headers));
            }
        };
        // 4. Hold: the handler asks the person (deciding the call again: it is not marked
        // as allowed); the budget is counted once approved.
        if hold::waits_for_approval(decided.risk, gateway.approval_desk().is_some()) {
            return Step::Rmcp;
        }
        // Counted here, once: neither the direct path nor the handler counts a call the
        // edge allowed.
        if let Err(refusal) = decide::charge(auth, caller) {
            return Step::Answer(auth.refuse(&refusal, message.id_value(), &parts.headers));
        }
        *allowed = Some(decided);
    }
    // 5. Credentials: the connection that carries the right key. A call that cannot have
    // one goes to the handler, which words why in the client's protocol.
    let Ok(credentials) = gateway.credentials_for_tool(era, &call.name, caller).await else {
        return Step::Rmcp;
    };
    // 6. Record the decision.
    record::allowed(allowed.as_ref());
    // 7. Forward.
    let Some(id) = message.id else {
        return Step::Rmcp;
    };
    let who = (caller, allowed.as_ref());
    let Some((answer, redactions)) =
        forward::call(gateway, parts, manager, who, &credentials, id, call).await
    else {
        return Step::Rmcp;
    };
    // 8. Inspect the answer.
    let answer = inspect::answer(answer, &redactions);
    // 9. Record the outcome.
    outcome::recorded(answer.status());
    Step::Answer(answer)
}

/// Runs stages 3 to 9 of a `tools/call` the MCP handler serves (see the module
/// documentation), answering in the client's protocol.
pub(crate) async fn tools_call_handled(
    gateway: &Gateway,
    mut request: CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    // 3. Decide: where the name routes (once the upstreams have settled), then the token.
    let era = era_of(context);
    let view = gateway
        .settled_view(era, |v| v.knows_tool(&request.name))
        .await;
    let name = request.name.to_string();
    let Some(route) = view.tool(&name) else {
        if let Some(q) = view.quarantined(&name) {
            let upstream = q.upstream.clone();
            return Err(GatewayError::Quarantined { name, upstream }.into());
        }
        let unknown = GatewayError::UnknownTool(name.clone());
        return Err(gateway.unknown(&name, unknown).into());
    };
    let (server, tool) = (&*route.server, &*route.original);
    let args = request
        .arguments
        .as_ref()
        .map(call_args)
        .unwrap_or_default();
    decide::permit(gateway, context, server, tool, route.risk, args)?;
    // 4. Hold; the budget is counted once the call goes (never while it waits).
    let held =
        match hold::for_approval(gateway, route.risk, server, tool, &mut request, context).await? {
            Hold::Answer(response) => return Ok(response),
            Hold::Go(held) => held,
        };
    decide::charge_unless_counted(gateway, context, server, tool)?;
    let allowed = context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Authorized>());
    // 5. Credentials: the connection that carries the right key.
    let caller = token_caller(context);
    let elicit = declares_url_elicitation(context, era);
    let mut credentials = gateway
        .credentials(&route.upstream, caller.as_ref(), elicit)
        .await?;
    // 6. Record the decision.
    record::allowed(allowed);
    // 7. Forward, through rmcp. A connection built with a person's key or token that the
    // upstream refuses (`401`, before running anything) goes back to stage 5 once: its
    // token renewed, the call goes again; its key refused, the person is told.
    let again = credentials.keyed().map(|_| request.clone());
    let mut response = forward_rmcp::call(
        gateway,
        &name,
        route,
        credentials.upstream(&route.upstream),
        request,
        context,
    )
    .await;
    if let (Err(_), Some(request)) = (&response, again)
        && credentials
            .keyed()
            .is_some_and(|keyed| keyed.credentials_refused())
    {
        credentials = gateway
            .credentials(&route.upstream, caller.as_ref(), elicit)
            .await?;
        let upstream = credentials.upstream(&route.upstream);
        response = forward_rmcp::call(gateway, &name, route, upstream, request, context).await;
    }
    let upstream = credentials.upstream(&route.upstream);
    if let (Some(key), Some(desk)) = (&held, gateway.approval_desk()) {
        desk.note(key, &response);
    }
    // 8. Inspect the answer.
    let response = inspect::result(response, upstream.redactions());
    // 9. Record the outcome.
    outcome::recorded_result(&response);
    response
}
