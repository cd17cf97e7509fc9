//! Stage 8, inspect the answer: what comes back from the upstream before the client
//! sees it. Nothing is changed today; redaction of credentials an upstream echoes and
//! guardrails go here.

use axum::response::Response;
use rmcp::ErrorData;
use rmcp::model::CallToolResponse;

/// Inspects the answer to a call (passes it as it is, for now).
pub(crate) fn answer(response: Response) -> Response {
    response
}

/// Inspects the result of a call forwarded through rmcp (passes it as it is, for now).
pub(crate) fn result(
    result: Result<CallToolResponse, ErrorData>,
) -> Result<CallToolResponse, ErrorData> {
    result
}
