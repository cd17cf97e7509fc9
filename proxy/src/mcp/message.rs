//! A JSON-RPC message read lazily: the envelope's members, with `params`, `result` and
//! `error` left as raw JSON. Reading a call this way costs a fraction of building a
//! `serde_json::Value` tree, and a result passes through without being parsed at all.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The members of a JSON-RPC message; unknown members are ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct Incoming<'a> {
    #[serde(borrow, default, deserialize_with = "text")]
    pub(crate) jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "text")]
    pub(crate) method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub(crate) error: Option<&'a RawValue>,
}

/// A string member, borrowed from the body unless it has escapes (serde's own `Cow`
/// inside an `Option` always copies).
fn text<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    struct Visit;
    impl<'de> serde::de::Visitor<'de> for Visit {
        type Value = Option<Cow<'de, str>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }
        fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Borrowed(v)))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Cow::Owned(v.to_owned())))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }
    deserializer.deserialize_option(Visit)
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
        // Text checked once up front costs less than checking each member as it is read;
        // a body that is not UTF-8 is read as bytes, for the parser's own error.
        let parsed = match std::str::from_utf8(body) {
            Ok(text) => serde_json::from_str::<Incoming<'a>>(text),
            Err(_) => serde_json::from_slice::<Incoming<'a>>(body),
        };
        match parsed {
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

impl Outgoing<'_> {
    /// The response as JSON, the same bytes `serde_json::to_vec` writes, without going
    /// through its serializer.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let parts = [("result", self.result), ("error", self.error)];
        let size = parts
            .iter()
            .filter_map(|(_, raw)| raw.map(|r| r.get().len() + 12))
            .sum::<usize>()
            + self.id.get().len()
            + self.jsonrpc.len()
            + 24;
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(b"{\"jsonrpc\":");
        write_str(&mut out, self.jsonrpc);
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(self.id.get().as_bytes());
        for (key, raw) in parts {
            if let Some(raw) = raw {
                out.extend_from_slice(b",\"");
                out.extend_from_slice(key.as_bytes());
                out.extend_from_slice(b"\":");
                out.extend_from_slice(raw.get().as_bytes());
            }
        }
        out.push(b'}');
        out
    }
}

/// Writes a JSON string.
fn write_str(out: &mut Vec<u8>, text: &str) {
    if text.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        out.extend_from_slice(b"null");
    }
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
    fn string_members_are_read_with_or_without_escapes() {
        let body = br#"{"jsonrpc":"2.0","method":"tools\/call","id":null}"#;
        let message = Incoming::parse(body).expect("a message");
        assert!(matches!(message.jsonrpc, Some(Cow::Borrowed("2.0"))));
        assert_eq!(message.method.as_deref(), Some("tools/call"));
        let message = Incoming::parse(br#"{"jsonrpc":null,"method":"x"}"#).expect("a message");
        assert_eq!(message.jsonrpc, None);
        assert!(matches!(
            Incoming::parse(br#"{"jsonrpc":2}"#),
            Err(NotAMessage::NotAnObject)
        ));
        assert!(matches!(
            Incoming::parse(br#"{"method":"a","method":"b"}"#),
            Err(NotAMessage::NotAnObject)
        ));
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
        assert_eq!(
            out.to_vec(),
            serde_json::to_vec(&out).expect("json"),
            "written by hand as serde writes it"
        );
        let error = RawValue::from_string(r#"{"code":-1,"message":"no"}"#.into()).expect("raw");
        let out = Outgoing {
            jsonrpc: "2.0",
            id: &id,
            result: None,
            error: Some(&error),
        };
        assert_eq!(out.to_vec(), serde_json::to_vec(&out).expect("json"));
    }
}
