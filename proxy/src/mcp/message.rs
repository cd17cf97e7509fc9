//! A JSON-RPC message read lazily: the envelope's members, with `params`, `result` and
//! `error` left as raw JSON. Reading a call this way costs a fraction of building a
//! `serde_json::Value` tree, and a result passes through without being parsed at all.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The members of a JSON-RPC message; unknown members are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(borrow, default)]
    pub(crate) jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) error: Option<&'a RawValue>,
}

/// Why a body is not one JSON-RPC message.
#[derive(Debug)]
pub(crate) enum NotAMessage {
    /// Not JSON at all (the parser's reason).
    Parse(String),
    /// A JSON array: a batch, which MCP removed in 2025-06-18.
    Batch,
    /// JSON, but not an object.
    NotAnObject,
}

impl<'a> Incoming<'a> {
    /// Reads a body as one JSON-RPC message.
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, NotAMessage> {
        match serde_json::from_slice::<Incoming<'a>>(body) {
            Ok(message) => Ok(message),
            Err(error) => {
                // Tell a syntax error from valid JSON of the wrong shape.
                match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                    Err(_) => Err(NotAMessage::Parse(error.to_string())),
                    Ok(_) if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') => {
                        Err(NotAMessage::Batch)
                    }
                    Ok(_) => Err(NotAMessage::NotAnObject),
                }
            }
        }
    }

    /// The request id as a JSON value (`null` when there is none).
    pub(crate) fn id_value(&self) -> serde_json::Value {
        self.id
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// A response to write: the id and exactly one of result and error, as raw JSON.
#[derive(Serialize)]
pub(crate) struct Outgoing<'a> {
    pub(crate) jsonrpc: &'static str,
    pub(crate) id: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<&'a RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_envelope_and_leaves_the_rest_raw() {
        let body = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x","arguments":{"a":[1,2]}}}"#;
        let message = Incoming::parse(body).expect("a message");
        assert_eq!(message.method.as_deref(), Some("tools/call"));
        assert_eq!(message.id.map(RawValue::get), Some("7"));
        assert_eq!(message.id_value(), serde_json::json!(7));
        assert!(
            message
                .params
                .is_some_and(|p| p.get().contains("\"arguments\""))
        );
    }

    #[test]
    fn tells_the_ways_a_body_is_not_a_message() {
        assert!(matches!(
            Incoming::parse(b"{nope"),
            Err(NotAMessage::Parse(_))
        ));
        assert!(matches!(Incoming::parse(b" [1]"), Err(NotAMessage::Batch)));
        assert!(matches!(
            Incoming::parse(b"42"),
            Err(NotAMessage::NotAnObject)
        ));
    }

    #[test]
    fn writes_a_response_around_a_raw_result() {
        let id = RawValue::from_string("\"a\"".into()).expect("raw");
        let result = RawValue::from_string(r#"{"content":[]}"#.into()).expect("raw");
        let out = Outgoing {
            jsonrpc: "2.0",
            id: &id,
            result: Some(&result),
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&out).expect("json"),
            r#"{"jsonrpc":"2.0","id":"a","result":{"content":[]}}"#
        );
    }
}
