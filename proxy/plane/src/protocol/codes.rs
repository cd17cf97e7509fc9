//! The error vocabulary: every JSON-RPC error code Warrant answers with, in one table,
//! and the one writer of a JSON-RPC error response that every refusal made outside rmcp
//! goes through ([`rpc_error`]). Errors of the MCP methods go through
//! [`super::error::GatewayError`], whose one mapping to `ErrorData` uses these codes.
//!
//! `docs/configuration.md` ("Errors clients see") lists the same codes; a test keeps
//! the two in step.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rmcp::model::ErrorCode;
use serde_json::{Value, json};

/// The body is not JSON.
pub const PARSE_ERROR: ErrorCode = ErrorCode::PARSE_ERROR;
/// Not one JSON-RPC 2.0 message (a batch, a duplicate key, a body too large or too slow).
pub const INVALID_REQUEST: ErrorCode = ErrorCode::INVALID_REQUEST;
/// A method nobody serves, or a request back to a client that did not declare it.
pub const METHOD_NOT_FOUND: ErrorCode = ErrorCode::METHOD_NOT_FOUND;
/// An unknown tool or prompt, a bad cursor, arguments that do not fit.
pub const INVALID_PARAMS: ErrorCode = ErrorCode::INVALID_PARAMS;
/// The upstream failed during the call, or an answer could not be passed on.
pub const INTERNAL_ERROR: ErrorCode = ErrorCode::INTERNAL_ERROR;
/// A limit of the gateway's own (too many sessions for one agent), or an unsupported
/// revision named by a client that falls back to `initialize` on an ordinary error.
pub const SERVER_ERROR: ErrorCode = ErrorCode(-32000);
/// The upstream did not answer within its `call_timeout` (the code the MCP SDKs use).
pub const REQUEST_TIMEOUT: ErrorCode = ErrorCode(-32001);
/// A resource nobody serves.
pub const RESOURCE_NOT_FOUND: ErrorCode = ErrorCode::RESOURCE_NOT_FOUND;
/// The upstream that serves this is unavailable.
pub const UPSTREAM_UNAVAILABLE: ErrorCode = ErrorCode(-32003);
/// The call is not allowed: the token, its grant, or the person's trust ceiling.
pub const NOT_PERMITTED: ErrorCode = ErrorCode(-32010);
/// No access token, or one that is not accepted (in the body of a 401).
pub const NOT_AUTHENTICATED: ErrorCode = ErrorCode(-32011);
/// A critical call waits for the person's approval.
pub const APPROVAL_REQUIRED: ErrorCode = ErrorCode(-32012);
/// A critical call was denied, or its approval expired.
pub const APPROVAL_REFUSED: ErrorCode = ErrorCode(-32013);
/// The grant's call budget for this hour is used up.
pub const BUDGET_EXHAUSTED: ErrorCode = ErrorCode(-32014);
/// The upstream takes each person's own key and the caller's person has connected none:
/// the message names the page where they connect it.
pub const CONNECTION_REQUIRED: ErrorCode = ErrorCode(-32015);
/// The same, to a client that declared URL-mode elicitation: `data.elicitations` holds
/// the page's URL (the MCP specification's `URLElicitationRequiredError`).
pub const URL_ELICITATION_REQUIRED: ErrorCode = ErrorCode(-32042);
/// The audit ledger cannot be written: calls are refused until it can (Warrant fails
/// closed rather than forward a call it cannot record).
pub const LEDGER_UNAVAILABLE: ErrorCode = ErrorCode(-32016);
/// A tool, prompt or resource template quarantined because its definition changed
/// since an admin approved it.
pub const TOOL_QUARANTINED: ErrorCode = ErrorCode(-32020);
/// A `MCP-Protocol-Version` the gateway does not serve (2026-07-28's code).
pub const UNSUPPORTED_PROTOCOL_VERSION: ErrorCode = ErrorCode(-32022);
/// The request was cancelled.
pub const REQUEST_CANCELLED: ErrorCode = ErrorCode(-32800);

/// Every code above: the vocabulary clients may see.
pub const CODES: &[ErrorCode] = &[
    PARSE_ERROR,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    INVALID_PARAMS,
    INTERNAL_ERROR,
    SERVER_ERROR,
    REQUEST_TIMEOUT,
    RESOURCE_NOT_FOUND,
    UPSTREAM_UNAVAILABLE,
    NOT_PERMITTED,
    NOT_AUTHENTICATED,
    APPROVAL_REQUIRED,
    APPROVAL_REFUSED,
    BUDGET_EXHAUSTED,
    CONNECTION_REQUIRED,
    LEDGER_UNAVAILABLE,
    TOOL_QUARANTINED,
    UNSUPPORTED_PROTOCOL_VERSION,
    URL_ELICITATION_REQUIRED,
    REQUEST_CANCELLED,
];

/// The JSON-RPC error message for request `id` (null when the request could not be
/// read), as a JSON value.
pub fn error_message(
    id: Value,
    code: ErrorCode,
    message: impl Into<String>,
    data: Option<Value>,
) -> Value {
    let mut error = json!({ "code": code.0, "message": message.into() });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
}

/// A JSON-RPC error response with HTTP `status`: the one way a refusal outside rmcp is
/// written.
pub fn rpc_error(
    status: StatusCode,
    id: Value,
    code: ErrorCode,
    message: impl Into<String>,
    data: Option<Value>,
) -> Response {
    (status, axum::Json(error_message(id, code, message, data))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for code in CODES {
            assert!(seen.insert(code.0), "{} is listed twice", code.0);
        }
    }

    #[test]
    fn an_error_message_carries_its_data_only_when_given() {
        let plain = error_message(json!(7), NOT_PERMITTED, "no", None);
        assert_eq!(
            plain,
            json!({"jsonrpc": "2.0", "id": 7, "error": {"code": -32010, "message": "no"}})
        );
        let with = error_message(
            Value::Null,
            BUDGET_EXHAUSTED,
            "later",
            Some(json!({"used": 3})),
        );
        assert_eq!(with["error"]["data"]["used"], 3);
        assert_eq!(with["id"], Value::Null);
    }
}
