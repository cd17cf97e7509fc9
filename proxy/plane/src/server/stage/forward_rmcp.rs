//! Stage 7 on the MCP handler's path: a `tools/call` forwarded through rmcp (stdio and
//! SSE upstreams, `https`, bridging between eras where input may be asked for): as a
//! request answered in the client's protocol ([`super::super::relay`]), or, for a
//! 2026-07-28 client of an upstream's legacy lane, run in a task of its own and parked
//! whenever the upstream asks for input ([`super::super::park`]).

use std::sync::Arc;

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, InputRequiredResult,
    ServerResult,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use crate::protocol::era::{Era, era_of, upstream_meta};
use crate::protocol::error::GatewayError;
use crate::server::gateway::{Gateway, unexpected};
use crate::server::park::{self, Call, Step};
use crate::server::relay::{self, complete};
use crate::upstream::inflight::Inflight;
use crate::upstream::lane::Lane;
use crate::upstream::remote::Upstream;
use crate::view::aggregate::Route;

/// Forwards a `tools/call` the caller may make to the upstream that serves it, through
/// rmcp.
pub(crate) async fn call(
    gateway: &Gateway,
    name: &str,
    route: &Route,
    upstream: &Arc<Upstream>,
    mut request: CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let era = era_of(context);
    request.name = route.original.to_string().into();
    if era == Era::Modern && (request.request_state.is_some() || can_be_asked(context)) {
        let lane = upstream.ready(era).await?;
        if lane.era == Era::Legacy {
            return call_parking(gateway, name, lane, request, context).await;
        }
    }
    let sent = relay::send_answering(gateway, upstream, context, |answers| {
        let mut call = request.clone();
        if let Some((responses, state)) = answers {
            call.input_responses = Some(responses);
            call.request_state = state;
        }
        ClientRequest::CallToolRequest(CallToolRequest::new(call))
    })
    .await?;
    tool_response(upstream.name(), sent)
}

/// A `tools/call` of a 2026-07-28 client to an upstream served on its legacy lane.
/// Such an upstream asks for input with requests mid-call, which that client cannot
/// receive: the call runs in a task of its own, and when the upstream asks, the
/// call is parked and the client gets the requests as an `InputRequiredResult`; its
/// retry (`inputResponses` and the `requestState`) resumes the call (`server::park`).
async fn call_parking(
    gateway: &Gateway,
    tool: &str,
    lane: Arc<Lane>,
    mut request: CallToolRequestParams,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let bind = park::binding(tool, context.extensions.get::<http::request::Parts>());
    // A legacy upstream knows nothing of input responses: they are the gateway's.
    let responses = request.input_responses.take();
    let call = match request.request_state.take() {
        Some(state) => gateway
            .park()
            .resume(&state, &bind, responses.unwrap_or_default())?,
        None => {
            let capabilities = context.meta.client_capabilities().unwrap_or_default();
            let meta = upstream_meta(context, lane.era);
            let (peer, id) = (context.peer.clone(), context.id.clone());
            let progress = context.meta.get_progress_token();
            let log_level = gateway.log_level(context);
            let forwarded = ClientRequest::CallToolRequest(CallToolRequest::new(request));
            let timeout = lane.shared.config.call_timeout;
            let name = lane.name().to_owned();
            Call::spawn(&name, capabilities, timeout, move |asker, cancel| {
                let origin = Inflight {
                    downstream: peer,
                    downstream_request: id,
                    downstream_progress: progress,
                    park: Some(asker),
                    log_level,
                };
                async move { lane.forward(forwarded, Some(origin), meta, &cancel).await }
            })
        }
    };
    drive(gateway, bind, call, context).await
}

/// Waits for a call of [`call_parking`] to end (its result) or to ask for
/// input (parked; an `InputRequiredResult`). A client that goes away meanwhile
/// cancels the call upstream.
async fn drive(
    gateway: &Gateway,
    bind: String,
    mut call: Call,
    context: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    let step = tokio::select! {
        step = call.next() => step,
        () = context.ct.cancelled() => return Err(GatewayError::Cancelled.into()),
    };
    match step {
        Step::Done(result) => tool_response(call.upstream(), (*result)?),
        Step::Asked(requests, pending) => {
            let state = gateway.park().park(bind, call, pending);
            Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                Some(requests),
                Some(state),
            )))
        }
    }
}

/// Whether a 2026-07-28 client declared a capability an upstream may ask it to use
/// mid-call; one that declared none is never asked, so its call needs no parking.
fn can_be_asked(context: &RequestContext<RoleServer>) -> bool {
    context
        .meta
        .client_capabilities()
        .is_some_and(|c| c.elicitation.is_some() || c.sampling.is_some() || c.roots.is_some())
}

/// The `tools/call` response for what an upstream answered.
fn tool_response(upstream: &str, sent: ServerResult) -> Result<CallToolResponse, ErrorData> {
    match sent {
        ServerResult::CallToolResult(mut r) => {
            complete(&mut r.result_type);
            Ok(CallToolResponse::Complete(r))
        }
        ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
        ServerResult::CreateTaskResult(r) => Ok(CallToolResponse::Task(r)),
        _ => Err(unexpected(upstream, "tools/call")),
    }
}
