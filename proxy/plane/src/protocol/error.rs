//! The gateway's errors, and their one mapping to JSON-RPC errors at the edge. Every
//! refusal says what happened and what to do; internal causes stay in the log.

use std::time::Duration;

use rmcp::ErrorData;
use serde_json::json;

use super::codes::{
    CONNECTION_REQUIRED, LEDGER_UNAVAILABLE, METHOD_NOT_FOUND, REQUEST_CANCELLED, REQUEST_TIMEOUT,
    TOOL_QUARANTINED, UPSTREAM_UNAVAILABLE, URL_ELICITATION_REQUIRED,
};

#[derive(Debug, Clone, thiserror::Error)]
pub enum GatewayError {
    #[error("unknown tool {0:?}: it is not offered by any upstream (call tools/list)")]
    UnknownTool(String),
    #[error(
        "tool {name:?} is quarantined: upstream {upstream:?} changed its definition since an \
         admin approved it, so it is unavailable until an admin reviews the change and \
         approves the new version (Warrant admin pages: Servers)"
    )]
    Quarantined { name: String, upstream: String },
    /// A prompt or resource template quarantined like a tool (`kind` says which).
    #[error(
        "{kind} {name:?} is quarantined: upstream {upstream:?} changed its definition since \
         an admin approved it, so it is unavailable until an admin reviews the change and \
         approves the new version (Warrant admin pages: Servers, then {upstream:?})"
    )]
    EntryQuarantined {
        kind: &'static str,
        name: String,
        upstream: String,
    },
    #[error("unknown prompt {0:?}: it is not offered by any upstream (call prompts/list)")]
    UnknownPrompt(String),
    #[error("unknown resource {0:?}: no upstream offers it (call resources/list)")]
    UnknownResource(String),
    #[error("invalid cursor {0:?}: pass back the nextCursor of the previous page")]
    InvalidCursor(String),
    #[error(
        "upstream {upstream:?} is unavailable: {reason}; its tools come back when it reconnects"
    )]
    UpstreamUnavailable { upstream: String, reason: String },
    #[error("upstream {upstream:?} failed: {reason}")]
    UpstreamFailed { upstream: String, reason: String },
    #[error("upstream {upstream:?} did not answer within {}; the request was cancelled upstream", humantime::format_duration(*after))]
    UpstreamTimeout { upstream: String, after: Duration },
    /// An error the upstream itself returned: passed on as it is.
    #[error("{}", .0.message)]
    Upstream(ErrorData),
    #[error("the request was cancelled")]
    Cancelled,
    #[error("{0}")]
    NotSupported(String),
    /// A retry names a `requestState` the gateway does not hold (any more).
    #[error(
        "the input round of this call has expired or is unknown (a call waiting for input \
         lasts at most its upstream's call timeout): make the call again, without \
         requestState and inputResponses"
    )]
    InputRoundExpired,
    /// A retry names a `requestState` issued for another tool or another caller.
    #[error(
        "this requestState was issued for another call (another tool or caller): retry \
         with the same tool, or make the call again without requestState"
    )]
    InputRoundMismatch,
    /// A retry lacks a well-formed answer to one of the call's input requests.
    #[error("inputResponses[{key:?}]: {reason}; answer every request of inputRequests")]
    InputResponse { key: String, reason: String },
    /// The upstream takes each person's own key, and this person has not connected one.
    /// `elicit`: the client declared URL-mode elicitation (it gets `-32042` with `url`).
    #[error(
        "upstream {upstream:?} needs your own key or account, and you have not connected \
         one: open {url} to connect it, then call again"
    )]
    ConnectionRequired {
        upstream: String,
        url: String,
        elicit: bool,
    },
    /// The audit ledger cannot record the call: it is not forwarded.
    #[error(
        "the call was not forwarded: Warrant's audit ledger cannot be written ({0}); calls \
         are refused until it can, try again shortly (operators: see the log and /readyz)"
    )]
    LedgerUnavailable(String),
    /// A person's connection the upstream's side no longer accepts (revoked, expired).
    #[error(
        "your connection to upstream {upstream:?} must be made again ({reason}): open {url} \
         to reconnect, then call again"
    )]
    Reconnect {
        upstream: String,
        url: String,
        reason: String,
        elicit: bool,
    },
}

impl From<GatewayError> for ErrorData {
    fn from(error: GatewayError) -> Self {
        let message = error.to_string();
        match error {
            GatewayError::Upstream(data) => data,
            GatewayError::UnknownTool(name) | GatewayError::UnknownPrompt(name) => {
                ErrorData::invalid_params(message, Some(json!({ "name": name })))
            }
            GatewayError::UnknownResource(uri) => {
                ErrorData::resource_not_found(message, Some(json!({ "uri": uri })))
            }
            GatewayError::Quarantined { name, upstream } => ErrorData::new(
                TOOL_QUARANTINED,
                message,
                Some(json!({ "name": name, "upstream": upstream, "quarantined": true })),
            ),
            GatewayError::EntryQuarantined {
                kind,
                name,
                upstream,
            } => ErrorData::new(
                TOOL_QUARANTINED,
                message,
                Some(
                    json!({ "kind": kind, "name": name, "upstream": upstream, "quarantined": true }),
                ),
            ),
            GatewayError::InvalidCursor(_) => ErrorData::invalid_params(message, None),
            GatewayError::UpstreamUnavailable { upstream, reason } => ErrorData::new(
                UPSTREAM_UNAVAILABLE,
                message,
                Some(json!({ "upstream": upstream, "reason": reason, "retry": true })),
            ),
            GatewayError::UpstreamFailed { upstream, reason } => ErrorData::internal_error(
                message,
                Some(json!({ "upstream": upstream, "reason": reason })),
            ),
            GatewayError::UpstreamTimeout { upstream, after } => ErrorData::new(
                REQUEST_TIMEOUT,
                message,
                Some(json!({ "upstream": upstream, "timeoutMs": after.as_millis() as u64 })),
            ),
            GatewayError::Cancelled => ErrorData::new(REQUEST_CANCELLED, message, None),
            GatewayError::InputRoundExpired | GatewayError::InputRoundMismatch => {
                ErrorData::invalid_params(message, None)
            }
            GatewayError::InputResponse { key, .. } => {
                ErrorData::invalid_params(message, Some(json!({ "inputResponse": key })))
            }
            GatewayError::NotSupported(_) => ErrorData::new(METHOD_NOT_FOUND, message, None),
            GatewayError::ConnectionRequired {
                upstream,
                url,
                elicit: true,
            }
            | GatewayError::Reconnect {
                upstream,
                url,
                elicit: true,
                ..
            } => ErrorData::new(
                URL_ELICITATION_REQUIRED,
                message.clone(),
                Some(json!({ "elicitations": [{
                    "mode": "url",
                    "elicitationId": format!("connect-{upstream}"),
                    "url": url,
                    "message": message,
                }] })),
            ),
            GatewayError::LedgerUnavailable(_) => {
                ErrorData::new(LEDGER_UNAVAILABLE, message, Some(json!({ "retry": true })))
            }
            GatewayError::ConnectionRequired { upstream, url, .. } => ErrorData::new(
                CONNECTION_REQUIRED,
                message,
                Some(json!({ "upstream": upstream, "url": url })),
            ),
            GatewayError::Reconnect { upstream, url, .. } => ErrorData::new(
                CONNECTION_REQUIRED,
                message,
                Some(json!({ "upstream": upstream, "url": url, "reconnect": true })),
            ),
        }
    }
}
