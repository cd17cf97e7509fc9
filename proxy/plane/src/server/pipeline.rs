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
use tracing::Instrument;
use warrant_consent::token::call_args;

use super::gateway::Gateway;
use super::stage::authenticate::token_caller;
use super::stage::decide::Verdict;
use super::stage::hold::Hold;
use super::stage::record::Recorded;
use super::stage::{decide, forward, forward_rmcp, hold, inspect, outcome, record};
use crate::enforce::approve::declares_url_elicitation;
use crate::enforce::auth::{Authorized, Caller};
use crate::protocol::codes::rpc_error;
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
/// authenticated: `caller` is the token's). `parts` gets the decision and its record if
/// the call goes on to rmcp (the edge adds the caller), so that the handler need not
/// decide or record it again.
pub(crate) async fn tools_call(
    gateway: &Gateway,
    manager: &LocalSessionManager,
    parts: &mut http::request::Parts,
    caller: Option<&Caller>,
    message: &Incoming<'_>,
    call: CallParams<'_>,
) -> Step {
    let (mut allowed, mut recorded) = (None, None);
    let span = tracing::debug_span!(target: "warrant::call", "tools/call", otel.kind = "server", mcp.tool = %call.name);
    let step = stages(
        gateway,
        manager,
        parts,
        caller,
        message,
        call,
        (&mut allowed, &mut recorded),
    )
    .instrument(span)
    .await;
    if let Step::Rmcp = &step {
        if let Some(allowed) = allowed {
            parts.extensions.insert(allowed);
        }
        if let Some(recorded) = recorded {
            parts.extensions.insert(recorded);
        }
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
    (allowed, recorded): (&mut Option<Authorized>, &mut Option<Recorded>),
) -> Step {
    // A request without a session is a 2026-07-28 one.
    let era = if parts.headers.contains_key(&MCP_SESSION_ID) {
        Era::Legacy
    } else {
        Era::Modern
    };
    // 3. Decide (with tokens; without, every tool is open on loopback).
    if let (Some(auth), Some(caller)) = (gateway.auth(), caller) {
        let decided = match decide::decide(gateway, auth, caller, era, &call)
            .instrument(stage_span("decide"))
            .await
        {
            Verdict::Allowed(decided) => decided,
            Verdict::Later => return Step::Rmcp,
            Verdict::Refused(refusal, call) => {
                record::refused_at_edge(gateway, caller, &call, &refusal);
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
            record::refused_at_edge(gateway, caller, &decided, &refusal);
            return Step::Answer(auth.refuse(&refusal, message.id_value(), &parts.headers));
        }
        *allowed = Some(decided);
    }
    // 5. Credentials: the connection that carries the right key. A call that cannot have
    // one goes to the handler, which words why in the client's protocol.
    let Ok(credentials) = gateway.credentials_for_tool(era, &call.name, caller).await else {
        return Step::Rmcp;
    };
    let Some(id) = message.id else {
        return Step::Rmcp;
    };
    // 6. Record the decision, before anything goes upstream; the call does not go when
    // it cannot be recorded. Recorded once: should the direct path not take it, the
    // handler forwards it under this record.
    let args = call.arguments().map(|a| a.get());
    let written = match record::allowed(gateway, caller, allowed.as_ref(), &call.name, args)
        .instrument(stage_span("record"))
        .await
    {
        Ok(written) => Some(written),
        Err(e) => return Step::Answer(gateway_error(e, message)),
    };
    // 7. Forward.
    let who = (caller, allowed.as_ref());
    let Some((answer, redactions)) =
        forward::call(gateway, parts, manager, who, &credentials, id, call)
            .instrument(stage_span("forward"))
            .await
    else {
        *recorded = written;
        return Step::Rmcp;
    };
    // 8. Inspect the answer.
    let answer = inspect::answer(answer, &redactions);
    // 9. Record the outcome (once the answer has gone by).
    Step::Answer(outcome::watched(gateway, written, answer))
}

/// The span of one stage of a call, under the call's own (traces, `[telemetry]`).
fn stage_span(stage: &'static str) -> tracing::Span {
    tracing::debug_span!(target: "warrant::call", "stage", otel.name = stage)
}

/// `error` as the JSON-RPC error answering `message` (HTTP 200).
fn gateway_error(error: GatewayError, message: &Incoming<'_>) -> Response {
    let data = ErrorData::from(error);
    rpc_error(
        http::StatusCode::OK,
        message.id_value(),
        data.code,
        data.message,
        data.data,
    )
}

/// Runs stages 3 to 9 of a `tools/call` the MCP handler serves (see the module
/// documentation), answering in the client's protocol.
#[tracing::instrument(target = "warrant::call", level = "debug", name = "tools/call", skip_all,
    fields(otel.kind = "server", mcp.tool = %request.name))]
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
    let caller = token_caller(context);
    let refused = |e: ErrorData| {
        record::refused(
            gateway,
            caller.as_ref(),
            server,
            tool,
            Some(route.risk),
            &e.message,
        );
        e
    };
    decide::permit(gateway, context, server, tool, route.risk, args).map_err(refused)?;
    // 4. Hold; the budget is counted once the call goes (never while it waits).
    let held = match hold::for_approval(gateway, route.risk, server, tool, &mut request, context)
        .await
        .map_err(refused)?
    {
        Hold::Answer(response) => return Ok(response),
        Hold::Go(held) => held,
    };
    decide::charge_unless_counted(gateway, context, server, tool).map_err(refused)?;
    // 5. Credentials: the connection that carries the right key.
    let elicit = declares_url_elicitation(context, era);
    let mut credentials = gateway
        .credentials(&route.upstream, caller.as_ref(), elicit)
        .await?;
    // 6. Record the decision (unless the edge did, and left the call to rmcp).
    let edge_recorded = context
        .extensions
        .get::<http::request::Parts>()
        .and_then(|p| p.extensions.get::<Recorded>())
        .filter(|r| {
            r.entry.upstream.as_deref() == Some(server) && r.entry.tool.as_deref() == Some(tool)
        })
        .cloned();
    let written = match edge_recorded {
        Some(recorded) => Some(recorded),
        None => {
            let decided = Authorized {
                server: route.server.clone(),
                tool: route.original.clone(),
                risk: route.risk,
            };
            let args = request
                .arguments
                .as_ref()
                .and_then(|a| serde_json::to_string(a).ok());
            Some(
                record::allowed(
                    gateway,
                    caller.as_ref(),
                    Some(&decided),
                    &name,
                    args.as_deref(),
                )
                .await?,
            )
        }
    };
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
    outcome::recorded_result(gateway, written, &response);
    response
}
