//! What the direct path writes and reads on the wire: the request that carries a call
//! into an upstream's session, the body posted (the client's parameters under the
//! upstream's name for the tool), the answers and errors returned to the client, and the
//! ids (the gateway's own for what it forwards, the client's as they are normalised).

use std::sync::Arc;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use http_body_util::Full;
use rmcp::model::RequestId;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::bridge;
use super::lane::Lane;
use super::session::UpstreamSession;
use super::target::Target;
use crate::protocol::codes::error_message;
use crate::protocol::era::Era;
use crate::protocol::error::GatewayError;
use crate::protocol::headers::{MCP_METHOD, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::protocol::message::{CallParams, Incoming, Outgoing, json_str_len, write_str};

/// The JSON content type of the answers written here.
static APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");

/// The HTTP request carrying a JSON-RPC message into one of the upstream's sessions.
pub(super) fn build_request(
    lane: &Lane,
    session: &UpstreamSession,
    target: &Target,
    name: &str,
    body: Bytes,
) -> Option<http::Request<Full<Bytes>>> {
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = target.uri.clone();
    let headers = request.headers_mut();
    headers.reserve(6 + target.headers.len());
    headers.insert(http::header::HOST, target.host.clone());
    headers.insert(http::header::CONTENT_TYPE, APPLICATION_JSON.clone());
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    for (key, value) in &target.headers {
        headers.insert(key.clone(), value.clone());
    }
    if let Some(version) = lane.protocol_header() {
        headers.insert(MCP_PROTOCOL_VERSION.clone(), version);
    }
    match lane.era {
        Era::Legacy => {
            if let Some(session) = session.header()? {
                headers.insert(MCP_SESSION_ID.clone(), session);
            }
        }
        Era::Modern if !name.is_empty() => {
            headers.insert(MCP_METHOD.clone(), HeaderValue::from_static("tools/call"));
            headers.insert(MCP_NAME.clone(), HeaderValue::from_str(name).ok()?);
        }
        Era::Modern => {}
    }
    Some(request)
}

/// The body of the call posted upstream: the client's parameters, under the upstream's
/// name for the tool, with the `_meta` the upstream lane should see (see
/// `gateway::upstream_meta` for the same rule on the rmcp path).
pub(super) fn upstream_body(
    id: &str,
    original: &str,
    call: &CallParams<'_>,
    era: Era,
) -> Option<Bytes> {
    let meta = match call.meta.clone() {
        Some(mut meta) => {
            meta.remove("io.modelcontextprotocol/clientInfo");
            match era {
                Era::Legacy => meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/")),
                Era::Modern => {
                    meta.insert(
                        "io.modelcontextprotocol/clientInfo".into(),
                        json!({"name": "warrant", "version": env!("CARGO_PKG_VERSION")}),
                    );
                }
            }
            if meta.is_empty() {
                None
            } else {
                Some(RawValue::from_string(serde_json::to_string(&meta).ok()?).ok()?)
            }
        }
        None => None,
    };
    // The members in the order of their names, as a JSON object map writes them: the
    // rest is in that order already, the tool's name and `_meta` go in between.
    let mut fixed = [
        ("_meta", meta.as_deref().map(Param::Raw)),
        ("name", Some(Param::Name)),
    ];
    // Written by hand, into exactly its size: serde's map serializer costs more than the
    // call's own bytes, and `Bytes` takes a full vector as it is.
    let value_len = |value: &Param<'_>| match value {
        Param::Name => json_str_len(original),
        Param::Raw(raw) => raw.get().len(),
    };
    let (count, bytes) = fixed
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| json_str_len(key) + value_len(v)))
        .chain(
            call.rest
                .iter()
                .map(|(key, value)| json_str_len(key) + value.get().len()),
        )
        .fold((0, 0), |(count, bytes), len| (count + 1, bytes + len));
    // Each member `key:value`, commas between them, `}}` at the end.
    let size = HEAD.len() + json_str_len(id) + METHOD.len() + bytes + count + count - 1 + 2;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(HEAD);
    write_str(&mut out, id);
    out.extend_from_slice(METHOD);
    let mut first = true;
    let mut member = |out: &mut Vec<u8>, key: &str, value: &Param<'_>| {
        if !first {
            out.push(b',');
        }
        first = false;
        write_str(out, key);
        out.push(b':');
        match value {
            Param::Name => write_str(out, original),
            Param::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
        }
    };
    for (key, value) in &call.rest {
        for (fixed_key, fixed_value) in &mut fixed {
            if *fixed_key < key.as_ref()
                && let Some(value) = fixed_value.take()
            {
                member(&mut out, fixed_key, &value);
            }
        }
        member(&mut out, key, &Param::Raw(value));
    }
    for (fixed_key, fixed_value) in &mut fixed {
        if let Some(value) = fixed_value.take() {
            member(&mut out, fixed_key, &value);
        }
    }
    out.extend_from_slice(b"}}");
    Some(Bytes::from(out))
}

/// The body posted upstream up to the call's id, and from it to the parameters.
const HEAD: &[u8] = b"{\"jsonrpc\":\"2.0\",\"id\":";
const METHOD: &[u8] = b",\"method\":\"tools/call\",\"params\":{";

/// A member of the parameters posted upstream.
enum Param<'a> {
    /// The upstream's name for the tool.
    Name,
    Raw(&'a RawValue),
}

/// The client's answer: the upstream's result or error, as it came, under the client's
/// request id.
pub(super) fn answer_response(
    status: StatusCode,
    client_id: &RawValue,
    reply: &Incoming<'_>,
) -> Response {
    let error = if reply.result.is_some() {
        None
    } else {
        reply.error
    };
    outgoing(status, client_id, reply.result, error)
}

/// A 2026-07-28 upstream's answer for a session client (see [`super::bridge`]): HTTP 200, the
/// result in the client's revision.
pub(super) fn answer_for_session_client(client_id: &RawValue, reply: &Incoming<'_>) -> Response {
    let Some(result) = reply.result else {
        return answer_response(StatusCode::OK, client_id, reply);
    };
    match bridge::result_for_client(result) {
        bridge::ForClient::Same => answer_response(StatusCode::OK, client_id, reply),
        bridge::ForClient::Rewritten(result) => {
            outgoing(StatusCode::OK, client_id, Some(&result), None)
        }
        bridge::ForClient::Error(error) => outgoing(StatusCode::OK, client_id, None, Some(&error)),
    }
}

pub(super) fn outgoing(
    status: StatusCode,
    client_id: &RawValue,
    result: Option<&RawValue>,
    error: Option<&RawValue>,
) -> Response {
    let out = Outgoing {
        jsonrpc: "2.0",
        id: client_id,
        result,
        error,
    };
    let mut response = Response::new(Body::from(out.to_vec()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, APPLICATION_JSON.clone());
    response
}

pub(super) fn json_reply(message: Value) -> Response {
    (StatusCode::OK, axum::Json(message)).into_response()
}

pub(super) fn sse_event(message: &Value) -> Bytes {
    Bytes::from(format!("event: message\ndata: {message}\n\n"))
}

pub(super) fn error_value(client_id: &Value, error: &GatewayError) -> Value {
    let data: rmcp::ErrorData = error.clone().into();
    error_message(client_id.clone(), data.code, data.message, data.data)
}

pub(super) fn failure_error(lane: &Lane, reason: &str) -> GatewayError {
    GatewayError::UpstreamFailed {
        upstream: lane.name().to_owned(),
        reason: reason.to_owned(),
    }
}

pub(super) fn timeout_error(lane: &Lane, after: std::time::Duration) -> GatewayError {
    GatewayError::UpstreamTimeout {
        upstream: lane.name().to_owned(),
        after,
    }
}

pub(super) fn failure(lane: &Lane, client_id: &RawValue, reason: &str) -> Response {
    json_reply(error_value(
        &raw_id(client_id),
        &failure_error(lane, reason),
    ))
}

pub(super) fn timed_out(lane: &Lane, client_id: &RawValue, after: std::time::Duration) -> Response {
    json_reply(error_value(&raw_id(client_id), &timeout_error(lane, after)))
}

pub(super) fn raw_id(id: &RawValue) -> Value {
    serde_json::from_str(id.get()).unwrap_or(Value::Null)
}

/// A client's request id: read directly when it is an integer or a string without
/// escapes, else by rmcp's own rules.
pub(super) fn request_id(raw: &RawValue) -> Option<RequestId> {
    let text = raw.get();
    if let Some(inner) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
        && !inner.contains(['\\', '"'])
    {
        return Some(RequestId::String(inner.into()));
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(RequestId::Number(n));
    }
    serde_json::from_str(text).ok()
}

/// `n` in decimal, written at the end of `digits`.
pub(super) fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &str {
    let mut i = digits.len();
    loop {
        i -= 1;
        // n % 10 < 10: the cast cannot truncate.
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&digits[i..]).unwrap_or_default()
}

/// `parts` joined into one shared string, in one allocation.
pub(crate) fn joined(parts: &[&str]) -> Arc<str> {
    let mut buffer = [0u8; 128];
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > buffer.len() {
        return parts.concat().into();
    }
    let mut at = 0;
    for part in parts {
        buffer[at..at + part.len()].copy_from_slice(part.as_bytes());
        at += part.len();
    }
    // Whole strings, one after the other: text.
    std::str::from_utf8(&buffer[..len]).map_or_else(|_| parts.concat().into(), Arc::from)
}

/// A request id as serde_json writes it (how a `notifications/cancelled` names it once
/// parsed). An integer, or a string without escapes, is written as it came.
pub(super) fn normalised_id(id: &RawValue) -> Arc<str> {
    let text = id.get();
    let digits = text.strip_prefix('-').unwrap_or(text);
    // Up to 18 digits: an integer serde_json keeps exact ("-0" it reads as a float).
    let plain_number = text == "0"
        || ((1..=18).contains(&digits.len())
            && digits.bytes().all(|b| b.is_ascii_digit())
            && !digits.starts_with('0'));
    let plain_string =
        text.len() >= 2 && text.starts_with('"') && text.ends_with('"') && !text.contains('\\');
    if plain_number || plain_string {
        text.into()
    } else {
        raw_id(id).to_string().into()
    }
}

pub(super) fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;

    /// The body as the serde-based writer wrote it before: the members read into a
    /// `BTreeMap`, written back through one with the gateway's name and `_meta`.
    fn reference_body(id: &str, original: &str, params: &str, era: Era) -> Vec<u8> {
        #[derive(serde::Serialize)]
        struct CallBody<'a> {
            jsonrpc: &'static str,
            id: &'a str,
            method: &'static str,
            params: std::collections::BTreeMap<&'a str, &'a RawValue>,
        }
        let mut members: std::collections::BTreeMap<std::borrow::Cow<'_, str>, &RawValue> =
            serde_json::from_str(params).expect("an object");
        let meta = members
            .remove("_meta")
            .and_then(|m| serde_json::from_str::<Map<String, Value>>(m.get()).ok());
        members.remove("name");
        let meta = meta.and_then(|mut meta| {
            meta.remove("io.modelcontextprotocol/clientInfo");
            match era {
                Era::Legacy => meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/")),
                Era::Modern => {
                    meta.insert(
                        "io.modelcontextprotocol/clientInfo".into(),
                        json!({"name": "warrant", "version": env!("CARGO_PKG_VERSION")}),
                    );
                }
            }
            (!meta.is_empty())
                .then(|| RawValue::from_string(serde_json::to_string(&meta).expect("json")))
                .map(|r| r.expect("raw"))
        });
        let name =
            RawValue::from_string(serde_json::to_string(original).expect("json")).expect("raw");
        let mut all: std::collections::BTreeMap<&str, &RawValue> =
            members.iter().map(|(k, v)| (k.as_ref(), *v)).collect();
        all.insert("name", &name);
        if let Some(meta) = &meta {
            all.insert("_meta", meta);
        }
        let body = CallBody {
            jsonrpc: "2.0",
            id,
            method: "tools/call",
            params: all,
        };
        serde_json::to_vec(&body).expect("json")
    }

    #[test]
    fn the_upstream_body_is_what_a_json_map_would_write() {
        let cases = [
            r#"{"name":"a__echo","arguments":{"message":"hi"}}"#,
            r#"{"arguments":{"b":1,"a":[true,null]},"name":"x","_meta":{"progressToken":7,"trace":"t"}}"#,
            r#"{"name":"x","Zed":1,"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"c"}},"arguments":{}}"#,
            r#"{"name":"first","arguments":{"v":1},"arguments":{"v":2},"name":"last"}"#,
            r#"{"name":"x","a\"b":"q\\u00e9","task":{"ttl":5},"$x":0}"#,
            r#"{"name":"x","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#,
        ];
        for params in cases {
            let raw = RawValue::from_string(params.into()).expect("raw");
            let call = CallParams::read(&raw).expect("params");
            for era in [Era::Legacy, Era::Modern] {
                let body =
                    upstream_body("warrant-12", "echo \"quoted\"", &call, era).expect("body");
                let want = reference_body("warrant-12", "echo \"quoted\"", params, era);
                assert_eq!(
                    String::from_utf8_lossy(&body),
                    String::from_utf8_lossy(&want),
                    "{params} ({era:?})"
                );
            }
        }
    }

    #[test]
    fn a_later_member_replaces_an_earlier_one() {
        let raw =
            RawValue::from_string(r#"{"name":"a","b":1,"b":2,"name":"c"}"#.into()).expect("raw");
        let call = CallParams::read(&raw).expect("params");
        assert_eq!(call.name, "c");
        let rest: Vec<(&str, &str)> = call
            .rest
            .iter()
            .map(|(k, v)| (k.as_ref(), v.get()))
            .collect();
        assert_eq!(rest, [("b", "2")]);
        let not_an_object = RawValue::from_string("[1]".into()).expect("raw");
        assert!(CallParams::read(&not_an_object).is_none());
        let no_name = RawValue::from_string(r#"{"name":1}"#.into()).expect("raw");
        assert!(CallParams::read(&no_name).is_none());
    }

    #[test]
    fn request_ids_are_read_and_normalised_as_serde_would() {
        for id in [
            "0",
            "7",
            "-12",
            "9007199254740993",
            "123456789012345678901234",
            "1.0",
            "1e2",
            "-0",
            r#""abc""#,
            r#""""#,
            r#""a\"b""#,
            r#""\u00e9""#,
            r#""é""#,
            "null",
            "true",
        ] {
            let raw = RawValue::from_string(id.into()).expect("raw");
            assert_eq!(
                &*normalised_id(&raw),
                raw_id(&raw).to_string(),
                "normalised {id}"
            );
            assert_eq!(
                request_id(&raw),
                serde_json::from_str::<RequestId>(id).ok(),
                "request id {id}"
            );
        }
    }

    #[test]
    fn the_upstream_body_is_written_in_one_allocation() {
        let raw = RawValue::from_string(
            r#"{"name":"bench__echo","arguments":{"message":"hello"}}"#.into(),
        )
        .expect("raw");
        let call = CallParams::read(&raw).expect("params");
        let allocations = crate::allocations(|| {
            assert!(upstream_body("warrant-7", "echo", &call, Era::Legacy).is_some());
        });
        assert_eq!(
            allocations, 1,
            "allocations to write the body posted upstream"
        );
    }
}
