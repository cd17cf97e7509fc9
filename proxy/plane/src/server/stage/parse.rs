//! Stage 1, parse once: the body becomes one typed request. The JSON-RPC envelope is
//! read lazily (`params` stays raw), a key given twice in any object is refused (the
//! decision and the upstream could each read a different one), and a `tools/call`'s
//! parameters are read once into [`CallParams`]: the arguments the decision reads are
//! the very bytes forwarded.

use axum::response::Response;
use http::StatusCode;
use rmcp::model::ErrorCode;
use serde_json::Value;

use crate::protocol::codes::{INVALID_REQUEST, PARSE_ERROR, rpc_error};
use crate::protocol::message::{CallParams, Incoming, NotAMessage, duplicate_key};

/// A request body, parsed.
pub(crate) struct Parsed<'a> {
    pub(crate) message: Incoming<'a>,
    /// The parameters of a `tools/call` (`None` for other messages, and for a call whose
    /// parameters are not an object with a name: rmcp answers those).
    pub(crate) call: Option<CallParams<'a>>,
}

/// Why a body is not one JSON-RPC 2.0 message, and the request id when there is one.
#[derive(Debug)]
pub(crate) struct NotParsed {
    id: Value,
    code: ErrorCode,
    message: String,
}

impl NotParsed {
    /// The HTTP 400 that says so.
    pub(crate) fn response(self) -> Response {
        rpc_error(
            StatusCode::BAD_REQUEST,
            self.id,
            self.code,
            self.message,
            None,
        )
    }
}

/// Parses a POST body; a body that is not one JSON-RPC 2.0 message is refused with the
/// reason (echoing the request id when there is one).
pub(crate) fn parse(body: &[u8]) -> Result<Parsed<'_>, NotParsed> {
    let message = match Incoming::parse(body) {
        Ok(message) => message,
        Err(NotAMessage::Batch) => {
            return Err(invalid(
                Value::Null,
                "Invalid Request: JSON-RPC batches are not supported (removed in MCP \
                 2025-06-18); send one message per request"
                    .to_owned(),
            ));
        }
        Err(NotAMessage::NotAnObject) => {
            return Err(invalid(
                Value::Null,
                "Invalid Request: expected a JSON-RPC message object".to_owned(),
            ));
        }
        Err(NotAMessage::Parse(e)) => {
            return Err(unparsable(Value::Null, &e));
        }
    };
    if message.jsonrpc.as_deref() != Some("2.0") {
        return Err(invalid(
            message.id_value(),
            "Invalid Request: a JSON-RPC 2.0 message needs \"jsonrpc\": \"2.0\"".to_owned(),
        ));
    }
    match duplicate_key(body) {
        Ok(None) => {}
        Ok(Some(key)) => {
            return Err(invalid(
                message.id_value(),
                format!(
                    "Invalid Request: the key {key:?} appears more than once in one object; \
                     send each key once (JSON parsers disagree on which of the two counts)"
                ),
            ));
        }
        Err(e) => return Err(unparsable(message.id_value(), &e)),
    }
    let call = match (message.method.as_deref(), message.params) {
        (Some("tools/call"), Some(params)) => CallParams::read(params),
        _ => None,
    };
    Ok(Parsed { message, call })
}

fn invalid(id: Value, message: String) -> NotParsed {
    NotParsed {
        id,
        code: INVALID_REQUEST,
        message,
    }
}

fn unparsable(id: Value, reason: &impl std::fmt::Display) -> NotParsed {
    NotParsed {
        id,
        code: PARSE_ERROR,
        message: format!("Parse error: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refusal(body: &str) -> (StatusCode, Value) {
        let Err(refused) = parse(body.as_bytes()) else {
            panic!("{body} was accepted");
        };
        let response = refused.response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[test]
    fn a_call_is_read_once_with_its_name_and_raw_arguments() {
        let body = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"demo__echo","arguments":{"text":"hi"}}}"#;
        let Ok(parsed) = parse(body) else {
            panic!("refused")
        };
        let call = parsed.call.expect("a call");
        assert_eq!(call.name, "demo__echo");
        assert_eq!(call.arguments().map(|a| a.get()), Some(r#"{"text":"hi"}"#));
        assert_eq!(parsed.message.id_value(), serde_json::json!(3));
    }

    #[test]
    fn other_methods_carry_no_call() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert!(parse(body).is_ok_and(|p| p.call.is_none()));
    }

    #[tokio::test]
    async fn a_key_twice_is_refused_naming_it_with_the_request_id() {
        let (status, body) = refusal(
            r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"a","name":"b"}}"#,
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["id"], 9);
        assert_eq!(body["error"]["code"], -32600);
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("\"name\" appears more than once")),
            "{body}"
        );
    }

    #[tokio::test]
    async fn batches_other_versions_and_broken_json_are_refused_with_their_reason() {
        let (_, batch) = refusal(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#).await;
        assert!(
            batch["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("batches"))
        );
        let (_, version) = refusal(r#"{"jsonrpc":"1.0","id":"x","method":"ping"}"#).await;
        assert_eq!(version["id"], "x");
        assert_eq!(version["error"]["code"], -32600);
        let (_, broken) = refusal(r#"{"jsonrpc":"2.0","#).await;
        assert_eq!(broken["error"]["code"], -32700);
        assert_eq!(broken["id"], Value::Null);
    }

    #[test]
    fn a_call_is_read_in_two_allocations() {
        let body = br#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"bench__echo","arguments":{"message":"hello"}}}"#;
        let allocations = crate::allocations(|| {
            assert!(parse(body).is_ok_and(|p| p.call.is_some()));
        });
        // The parser's stack for the nested `arguments` (kept raw), and the members.
        assert!(allocations <= 2, "{allocations} allocations to read a call");
    }
}
