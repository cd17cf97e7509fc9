//! Requests relayed through rmcp to an upstream that may answer with an
//! `InputRequiredResult` (2026-07-28 multi round-trip): a client of that revision gets
//! it as it is; a client of the session era, which cannot read one, is asked in its own
//! terms and the request sent again with its answers. And the one normalisation of what
//! comes back: the `resultType` of a result from an older upstream.

use std::sync::Arc;

use rmcp::model::{
    ClientRequest, InputRequest, InputRequests, InputResponses, ResultType, ServerRequest,
    ServerResult,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use super::gateway::Gateway;
use crate::protocol::era::{Era, era_of};
use crate::protocol::error::GatewayError;
use crate::upstream::remote::Upstream;

/// Sends a request that an upstream may answer with an `InputRequiredResult`. A
/// client of the session era cannot read one (2026-07-28 multi round-trip), so for
/// it the gateway asks the client in its own terms — elicitation, sampling, roots
/// requests on the request's stream — and sends the request again with the answers
/// and the upstream's state. A 2026-07-28 client gets the result as it is.
pub(crate) async fn send_answering(
    gateway: &Gateway,
    upstream: &Arc<Upstream>,
    context: &RequestContext<RoleServer>,
    build: impl Fn(Option<(InputResponses, Option<String>)>) -> ClientRequest,
) -> Result<ServerResult, ErrorData> {
    let bridge = era_of(context) == Era::Legacy;
    let mut answers = None;
    for _ in 0..MAX_INPUT_ROUNDS {
        match gateway
            .send(upstream, build(answers.take()), context, true)
            .await?
        {
            ServerResult::InputRequiredResult(r) if bridge => {
                answers = Some((
                    ask_client(context, r.input_requests).await?,
                    r.request_state,
                ));
            }
            other => return Ok(other),
        }
    }
    Err(GatewayError::UpstreamFailed {
        upstream: upstream.name().to_owned(),
        reason: format!("it still asked for input after {MAX_INPUT_ROUNDS} rounds"),
    }
    .into())
}

/// `"complete"` on a result that has no `resultType` (an upstream before 2026-07-28).
pub(crate) fn complete(result_type: &mut Option<ResultType>) {
    if result_type.is_none() {
        *result_type = Some(ResultType::COMPLETE);
    }
}

/// How many rounds of input a bridged request may ask for.
const MAX_INPUT_ROUNDS: usize = 8;

/// Asks a session client for the input a 2026-07-28 upstream requested, one request per
/// entry, on the call's own stream; the answers keyed as the upstream keyed its requests.
async fn ask_client(
    context: &RequestContext<RoleServer>,
    requests: Option<InputRequests>,
) -> Result<InputResponses, ErrorData> {
    let capabilities = context
        .peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let mut responses = InputResponses::new();
    for (key, input) in requests.unwrap_or_default() {
        let (what, declared, request) = match input {
            InputRequest::Elicitation(r) => (
                "elicitation",
                capabilities.elicitation.is_some(),
                ServerRequest::ElicitRequest(r),
            ),
            InputRequest::CreateMessage(r) => (
                "sampling",
                capabilities.sampling.is_some(),
                ServerRequest::CreateMessageRequest(r),
            ),
            InputRequest::ListRoots(r) => (
                "roots",
                capabilities.roots.is_some(),
                ServerRequest::ListRootsRequest(r),
            ),
            _ => {
                return Err(GatewayError::NotSupported(
                    "an input request of an unknown kind".into(),
                )
                .into());
            }
        };
        if !declared {
            return Err(ErrorData::invalid_request(
                format!(
                    "the tool needs {what} from the client, which did not declare that capability"
                ),
                None,
            ));
        }
        let answer = context
            .peer
            .send_request(request)
            .await
            .map_err(|e| match e {
                rmcp::ServiceError::McpError(data) => data,
                other => ErrorData::internal_error(
                    format!("the client did not answer the {what} request: {other}"),
                    None,
                ),
            })?;
        let value = serde_json::to_value(answer).map_err(|e| {
            ErrorData::internal_error(format!("cannot encode the client's answer: {e}"), None)
        })?;
        responses.insert(key, value);
    }
    Ok(responses)
}
