//! A session client (2025-11-25 and earlier) on the 2026-07-28 lane of an upstream that
//! speaks only that revision: the call carries the metadata the revision requires, and
//! the answer is put back in the client's revision, as rmcp's path does.
//!
//! The direct path takes such a call only from a client that declared nothing the
//! upstream could ask it for (no elicitation, sampling or roots): the upstream then has
//! no reason to answer with an `InputRequiredResult`, which the rmcp path turns into
//! requests on the client's session and the direct path cannot.

use rmcp::model::ClientCapabilities;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::protocol::message::CallParams;

const PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Whether an upstream may ask a client with these capabilities for input mid-call.
pub(crate) fn can_be_asked(capabilities: &ClientCapabilities) -> bool {
    capabilities.elicitation.is_some()
        || capabilities.sampling.is_some()
        || capabilities.roots.is_some()
}

/// Adds what a 2026-07-28 request carries in its `_meta` and a session client's call
/// has not: the revision (the lane's) and the client's capabilities (declared at
/// `initialize`).
pub(crate) fn add_request_meta(
    call: &mut CallParams<'_>,
    protocol: &str,
    capabilities: &ClientCapabilities,
) -> Option<()> {
    let meta = call.meta.get_or_insert_with(Map::new);
    if !meta.contains_key(PROTOCOL_VERSION) {
        meta.insert(PROTOCOL_VERSION.into(), Value::String(protocol.to_owned()));
    }
    if !meta.contains_key(CLIENT_CAPABILITIES) {
        meta.insert(
            CLIENT_CAPABILITIES.into(),
            serde_json::to_value(capabilities).ok()?,
        );
    }
    Some(())
}

/// What a 2026-07-28 result becomes for a session client.
pub(crate) enum ForClient {
    /// As it came.
    Same,
    /// Without `resultType: "complete"`, which that revision does not have.
    Rewritten(Box<RawValue>),
    /// An `InputRequiredResult`, which the client cannot read: this error instead.
    Error(Box<RawValue>),
}

/// A result as a session client gets it.
pub(crate) fn result_for_client(result: &RawValue) -> ForClient {
    if !result.get().contains("\"resultType\"") {
        return ForClient::Same;
    }
    let Ok(mut map) = serde_json::from_str::<Map<String, Value>>(result.get()) else {
        return ForClient::Same;
    };
    match adjust(&mut map) {
        Adjusted::Same => ForClient::Same,
        Adjusted::Stripped => serde_json::to_string(&map)
            .ok()
            .and_then(|text| RawValue::from_string(text).ok())
            .map_or(ForClient::Same, ForClient::Rewritten),
        Adjusted::NeedsInput => RawValue::from_string(needs_input().to_string())
            .map_or(ForClient::Same, ForClient::Error),
    }
}

/// The upstream's final message (streaming case) as a session client gets it.
pub(crate) fn final_for_client(mut message: Map<String, Value>) -> Map<String, Value> {
    let asks = match message.get_mut("result") {
        Some(Value::Object(result)) => matches!(adjust(result), Adjusted::NeedsInput),
        _ => false,
    };
    if asks {
        message.remove("result");
        message.insert("error".into(), needs_input());
    }
    message
}

enum Adjusted {
    Same,
    Stripped,
    NeedsInput,
}

fn adjust(result: &mut Map<String, Value>) -> Adjusted {
    match result.get("resultType").and_then(Value::as_str) {
        Some("complete") => {
            result.remove("resultType");
            Adjusted::Stripped
        }
        Some("input_required") => Adjusted::NeedsInput,
        _ => Adjusted::Same,
    }
}

/// The error for an `InputRequiredResult` to a client that declared nothing to ask.
fn needs_input() -> Value {
    json!({
        "code": -32600,
        "message": "the tool needs input from the client (elicitation, sampling or roots), \
                    which did not declare that capability"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.into()).expect("raw")
    }

    #[test]
    fn a_complete_result_loses_its_result_type_and_input_required_becomes_an_error() {
        let plain = raw(r#"{"content":[]}"#);
        assert!(matches!(result_for_client(&plain), ForClient::Same));
        let complete = raw(r#"{"content":[{"type":"text","text":"hi"}],"resultType":"complete"}"#);
        match result_for_client(&complete) {
            ForClient::Rewritten(r) => assert_eq!(
                serde_json::from_str::<Value>(r.get()).expect("json"),
                json!({"content": [{"type": "text", "text": "hi"}]})
            ),
            _ => panic!("rewritten"),
        }
        let input = raw(r#"{"resultType":"input_required","inputRequests":{}}"#);
        match result_for_client(&input) {
            ForClient::Error(e) => assert!(e.get().contains("-32600"), "{}", e.get()),
            _ => panic!("an error"),
        }
        let message: Map<String, Value> = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":"w","result":{"resultType":"input_required"}}"#,
        )
        .expect("json");
        let message = final_for_client(message);
        assert!(message.get("result").is_none() && message["error"]["code"] == -32600);
        let message: Map<String, Value> =
            serde_json::from_str(r#"{"id":"w","result":{"resultType":"complete","x":1}}"#)
                .expect("json");
        assert_eq!(
            Value::Object(final_for_client(message)),
            json!({"id": "w", "result": {"x": 1}})
        );
    }

    #[test]
    fn the_request_carries_the_revision_and_the_capabilities() {
        let params = raw(r#"{"name":"t","_meta":{"progressToken":1}}"#);
        let mut call = CallParams::read(&params).expect("params");
        add_request_meta(&mut call, "2026-07-28", &ClientCapabilities::default()).expect("meta");
        let meta = call.meta.expect("meta");
        assert_eq!(meta[PROTOCOL_VERSION], "2026-07-28");
        assert_eq!(meta[CLIENT_CAPABILITIES], json!({}));
        assert_eq!(meta["progressToken"], 1);
    }
}
