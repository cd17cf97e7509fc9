//! A JSON-RPC message read lazily: the envelope's members, with `params`, `result` and
//! `error` left as raw JSON. Reading a call this way costs a fraction of building a
//! `serde_json::Value` tree, and a result passes through without being parsed at all.

use std::borrow::Cow;

use rmcp::model::ProgressToken;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

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

/// The first key that appears twice in one object of a JSON text, at any depth
/// (`Err` with the parser's reason when the text is not JSON). Parsers disagree on which
/// of two equal keys wins, so a body with one is refused rather than decided on one
/// reading and run by an upstream on the other.
pub(crate) fn duplicate_key(body: &[u8]) -> Result<Option<String>, String> {
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<Unique>(text),
        Err(_) => serde_json::from_slice::<Unique>(body),
    };
    match parsed {
        Ok(Unique(duplicate)) => Ok(duplicate),
        Err(e) => Err(e.to_string()),
    }
}

/// A JSON value walked for duplicate keys: the first one found (the walk stops there).
struct Unique(Option<String>);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

/// Objects up to this many keys are checked by comparing each key with the earlier ones
/// as it is read; larger ones by sorting their keys once read (no hashing either way, and
/// no copy of a key without escapes).
const LINEAR_KEYS: usize = 16;

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        // The first keys on the stack (no allocation for an ordinary object), all of them
        // in `keys` past that.
        let mut few: [Cow<'de, str>; LINEAR_KEYS] = Default::default();
        let mut n = 0;
        let mut keys: Vec<Cow<'de, str>> = Vec::new();
        let mut found = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if n < LINEAR_KEYS {
                if few[..n].contains(&key) {
                    found = Some(key.into_owned());
                    map.next_value::<IgnoredAny>()?;
                    break;
                }
                few[n] = key;
                n += 1;
            } else {
                if keys.is_empty() {
                    keys.extend(few.iter_mut().map(std::mem::take));
                }
                keys.push(key);
            }
            if let Unique(Some(inner)) = map.next_value::<Unique>()? {
                found = Some(inner);
                break;
            }
        }
        if found.is_some() {
            // The rest is only read through (the parser wants the whole text).
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            return Ok(Unique(found));
        }
        if keys.len() > LINEAR_KEYS {
            keys.sort_unstable();
            found = keys
                .windows(2)
                .find(|pair| pair[0] == pair[1])
                .map(|pair| pair[0].to_string());
        }
        Ok(Unique(found))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while let Some(Unique(found)) = seq.next_element::<Unique>()? {
            if found.is_some() {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                return Ok(Unique(found));
            }
        }
        Ok(Unique(None))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique(None))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique(None))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique(None))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique(None))
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique(None))
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique(None))
    }
}

/// An object key, borrowed from the text unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(Visit)
    }
}

/// The parameters of a `tools/call`, each kept as raw JSON but the tool's name and the
/// `_meta` the gateway rewrites.
pub(crate) struct CallParams<'a> {
    pub(crate) name: Cow<'a, str>,
    pub(crate) meta: Option<Map<String, Value>>,
    pub(crate) rest: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> CallParams<'a> {
    /// Reads the members of `params` (an object). A member given twice counts once,
    /// with its last value; the others are kept in the order of their names.
    pub(crate) fn read(params: &'a RawValue) -> Option<Self> {
        let Members(mut rest) = serde_json::from_str(params.get()).ok()?;
        let mut name = None;
        let mut meta = None;
        rest.retain(|(key, value)| match key.as_ref() {
            "name" => {
                name = string(value);
                false
            }
            "_meta" => {
                meta = serde_json::from_str::<Map<String, Value>>(value.get()).ok();
                false
            }
            _ => true,
        });
        // Stable: of members with the same name, the last one's value is kept.
        rest.sort_by(|a, b| a.0.cmp(&b.0));
        rest.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 = later.1;
            }
            same
        });
        Some(Self {
            name: name?,
            meta,
            rest,
        })
    }

    /// The call's `arguments` member, as sent.
    pub(crate) fn arguments(&self) -> Option<&'a RawValue> {
        self.rest
            .binary_search_by(|(key, _)| key.as_ref().cmp("arguments"))
            .ok()
            .map(|i| self.rest[i].1)
    }

    /// The client's progress token, if it asked for progress.
    pub(crate) fn progress_token(&self) -> Option<ProgressToken> {
        let token = self.meta.as_ref()?.get("progressToken")?;
        serde_json::from_value(token.clone()).ok()
    }
}

/// A JSON string, borrowed from the text unless it has escapes (`None`: not a string).
fn string<'a>(raw: &'a RawValue) -> Option<Cow<'a, str>> {
    match serde_json::from_str::<&'a str>(raw.get()) {
        Ok(text) => Some(Cow::Borrowed(text)),
        Err(_) => serde_json::from_str::<String>(raw.get())
            .ok()
            .map(Cow::Owned),
    }
}

/// The members of a JSON object in document order, names borrowed when they have no
/// escapes, values raw.
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some(Key(key)) = map.next_key()? {
                    members.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(Visit)
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
    /// through its serializer. Written into exactly its size: a body made of it then
    /// costs no second allocation (`Bytes` takes a full vector as it is).
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        let parts = [("result", self.result), ("error", self.error)];
        // `{"jsonrpc":"…","id":…` then `,"key":…` for each part, then `}`.
        let size = parts
            .iter()
            .filter_map(|(key, raw)| raw.map(|r| key.len() + r.get().len() + 4))
            .sum::<usize>()
            + self.id.get().len()
            + self.jsonrpc.len()
            + 20;
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

/// The length of `text` written as a JSON string, quotes included (as serde_json
/// escapes it).
pub(crate) fn json_str_len(text: &str) -> usize {
    text.bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x09 | 0x0a | 0x0c | 0x0d => 2,
            0..0x20 => 6,
            _ => 1,
        })
        .sum::<usize>()
        + 2
}

/// Writes a JSON string.
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
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
    fn finds_a_duplicate_key_at_any_depth() {
        let found = |body: &str| duplicate_key(body.as_bytes()).expect("JSON");
        assert_eq!(found(r#"{"a":1,"b":{"a":2},"c":[{"a":3}]}"#), None);
        assert_eq!(found(r#"{"a":1,"a":2}"#), Some("a".into()));
        assert_eq!(
            found(r#"{"p":{"arguments":{},"x":1,"arguments":{}}}"#),
            Some("arguments".into())
        );
        assert_eq!(
            found(r#"[1,{"k":[{"z":1,"z\u0031":2,"z":3}]}]"#),
            Some("z".into())
        );
        // Escapes are read: the same key written two ways is the same key.
        assert_eq!(found(r#"{"ab":1,"a\u0062":2}"#), Some("ab".into()));
        // Past the linear comparison, through the set.
        let wide: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        assert_eq!(found(&format!("{{{}}}", wide.join(","))), None);
        assert_eq!(
            found(&format!("{{{},\"k33\":0}}", wide.join(","))),
            Some("k33".into())
        );
        assert!(duplicate_key(b"{nope").is_err());
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

    #[test]
    fn a_response_becomes_a_body_in_one_allocation() {
        let id = RawValue::from_string("12".into()).expect("raw");
        let result = RawValue::from_string(r#"{"content":[{"type":"text","text":"hi"}]}"#.into())
            .expect("raw");
        let out = Outgoing {
            jsonrpc: "2.0",
            id: &id,
            result: Some(&result),
            error: None,
        };
        let allocations = crate::allocations(|| {
            assert!(!bytes::Bytes::from(out.to_vec()).is_empty());
        });
        assert_eq!(
            allocations, 1,
            "the bytes, and no second allocation to share them"
        );
    }

    #[test]
    fn the_length_of_a_json_string_is_what_serde_writes() {
        for text in [
            "",
            "plain",
            "q\"b\\s",
            "\u{8}\t\n\u{c}\r\u{1}\u{1f}\u{7f}",
            "é—",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).expect("json"), "{text:?}");
            assert_eq!(json_str_len(text), out.len(), "{text:?}");
        }
    }
}
