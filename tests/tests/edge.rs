//! The `/mcp` edge under attack: what it refuses before a request reaches the protocol
//! layer or an upstream, and the limits that keep one client from exhausting the gateway.

use serde_json::{Value, json};
use warrant_e2e::raw::modern_meta;
use warrant_e2e::{Backend, Raw, TestGateway, demo_upstream};

fn config(extra: &str) -> String {
    format!("{}{extra}", demo_upstream("demo"))
}

/// The error message of a JSON-RPC error body.
fn error_message(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_with_a_duplicate_key_is_refused_naming_the_key() {
    let gateway = TestGateway::start(&config(""), Backend::Sqlite).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-06-18").await;

    // Two `arguments`: a parser keeping the first would run what nobody checked.
    let body = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"demo__write_note","arguments":{"title":"a","body":"checked"},"arguments":{"title":"a","body":"unchecked"}}}"#;
    let reply = raw.post(body, &[]).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    let message = error_message(&reply.text);
    assert!(message.contains("\"arguments\""), "{reply:?}");
    assert!(message.contains("more than once"), "{reply:?}");

    // At any depth, and on the stateless path too.
    let body = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "demo__write_note", "arguments": {"title": "b", "body": "x"}, "_meta": modern_meta()}})
    .to_string()
    .replace(r#""title":"b""#, r#""title":"b","title":"c""#);
    assert!(body.contains(r#""title":"b","title":"c""#), "{body}");
    let mut modern = Raw::new(&gateway.url());
    modern.version = Some("2026-07-28".into());
    let reply = modern
        .post(
            body,
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "demo__write_note"),
            ],
        )
        .await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        error_message(&reply.text).contains("\"title\""),
        "{reply:?}"
    );

    // Nothing was written; the same key in two different objects is fine.
    let reply = raw
        .request(
            4,
            "tools/call",
            json!({"name": "demo__list_notes", "arguments": {}}),
        )
        .await;
    assert!(reply.text.contains("no notes yet"), "{reply:?}");
    let body = r#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"demo__write_note","arguments":{"title":"t","body":"{\"a\":1,\"a\":2}"},"_meta":{"title":"t"}}}"#;
    let reply = raw.post(body, &[]).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.response(5)["result"]["isError"] == json!(false),
        "{reply:?}"
    );
    gateway.stop().await;
}
