//! The `/mcp` endpoint in front of the built-in demo server: what a client sees, on every
//! protocol revision, and the clear error each kind of bad input gets.

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use warrant_e2e::{Backend, Raw, TestClient, TestGateway, backends, connect, demo_upstream};

fn config(extra: &str) -> String {
    format!("{}{extra}", demo_upstream("demo"))
}

fn text_of(result: &Value) -> String {
    result["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_lists_and_calls_namespaced_tools_on_every_backend() {
    for backend in backends() {
        let gateway = TestGateway::start(&config(""), backend.clone()).await;
        let client = connect(&gateway.url(), TestClient::default()).await;
        let tools = client.list_all_tools().await.expect("tools/list");
        let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "demo__delete_all_notes",
                "demo__list_notes",
                "demo__read_note",
                "demo__send_payment",
                "demo__write_note"
            ],
            "{backend:?}"
        );
        let delete = tools
            .iter()
            .find(|t| t.name == "demo__delete_all_notes")
            .expect("delete tool");
        let annotations = delete
            .annotations
            .as_ref()
            .expect("annotations pass through");
        assert_eq!(annotations.destructive_hint, Some(true));

        let write = CallToolRequestParams::new("demo__write_note").with_arguments(
            json!({"title": "plan", "body": "ship it"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let result = client.call_tool(write).await.expect("tools/call");
        assert_eq!(result.is_error, Some(false));
        let read = CallToolRequestParams::new("demo__read_note").with_arguments(
            json!({"title": "plan"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let result = client.call_tool(read).await.expect("tools/call");
        let text = result.content[0]
            .as_text()
            .map(|t| t.text.clone())
            .unwrap_or_default();
        assert_eq!(
            text, "ship it",
            "the call reached the demo server and came back"
        );

        // The catalog recorded what the upstream offers, in this backend.
        let catalog = warrant_consent::catalog::Catalog::new(gateway.running.db.clone());
        let mut recorded = Vec::new();
        for _ in 0..50 {
            recorded = catalog.tools_of("demo").await.expect("catalog");
            if recorded.len() == 5 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_eq!(
            recorded.len(),
            5,
            "{backend:?}: the catalog holds the demo's tools"
        );
        assert!(recorded.iter().any(|t| {
            t.name == "send_payment"
                && t.annotations
                    .as_deref()
                    .is_some_and(|a| a.contains("openWorldHint"))
        }));
        client.cancel().await.expect("close");
        gateway.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_protocol_revision_is_served() {
    let gateway = TestGateway::start(&config(""), Backend::current()).await;
    for version in ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"] {
        let mut raw = Raw::new(&gateway.url());
        let init = raw.initialize(version).await;
        assert_eq!(init.response(0)["result"]["protocolVersion"], version);
        assert!(raw.session.is_some(), "{version}: a session id is issued");
        let list = raw.request(1, "tools/list", json!({})).await;
        assert_eq!(
            list.response(1)["result"]["tools"].as_array().map(Vec::len),
            Some(5),
            "{version}"
        );
    }
    // 2026-07-28: stateless, discovered with server/discover, no session.
    let raw = Raw::new(&gateway.url());
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
    });
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "server/discover"),
    ];
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}});
    let discover = raw.post(body.to_string(), &headers).await;
    assert_eq!(discover.status, 200, "{discover:?}");
    let supported = discover.response(1)["result"]["supportedVersions"].clone();
    assert!(
        supported.as_array().is_some_and(
            |v| v.iter().any(|v| v == "2026-07-28") && v.iter().any(|v| v == "2025-06-18")
        ),
        "{supported}"
    );
    assert!(
        discover.header("mcp-session-id").is_none(),
        "2026-07-28 has no sessions"
    );
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "demo__list_notes"),
    ];
    let body = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "demo__list_notes", "arguments": {}, "_meta": meta}});
    let call = raw.post(body.to_string(), &headers).await;
    assert_eq!(text_of(&call.response(2)), "no notes yet", "{call:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_a_clear_error_and_the_gateway_keeps_serving() {
    let gateway = TestGateway::start(
        &config("[server]\nmax_body_bytes = 2048\n"),
        Backend::Sqlite,
    )
    .await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-06-18").await;

    // Malformed JSON-RPC.
    let reply = raw.post("{not json", &[]).await;
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(
        reply.text.to_lowercase().contains("parse") || reply.text.to_lowercase().contains("json"),
        "{reply:?}"
    );

    // An unknown method.
    let reply = raw.request(2, "tools/frobnicate", json!({})).await;
    assert_eq!(reply.response(2)["error"]["code"], -32601, "{reply:?}");

    // An unknown tool, with and without a known prefix.
    let reply = raw
        .request(
            3,
            "tools/call",
            json!({"name": "demo__nope", "arguments": {}}),
        )
        .await;
    let error = &reply.response(3)["error"];
    assert_eq!(error["code"], -32602);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("unknown tool \"demo__nope\"")),
        "{error}"
    );
    let reply = raw
        .request(
            4,
            "tools/call",
            json!({"name": "ghost__tool", "arguments": {}}),
        )
        .await;
    assert_eq!(reply.response(4)["error"]["code"], -32602);

    // A cursor that no page handed out.
    let reply = raw
        .request(5, "tools/list", json!({"cursor": "bogus"}))
        .await;
    let error = &reply.response(5)["error"];
    assert_eq!(error["code"], -32602);
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid cursor")),
        "{error}"
    );

    // An oversized body.
    let big = json!({"jsonrpc": "2.0", "id": 6, "method": "tools/call",
        "params": {"name": "demo__write_note", "arguments": {"title": "x", "body": "y".repeat(4096)}}});
    let reply = raw.post(big.to_string(), &[]).await;
    assert_eq!(reply.status, 413, "{reply:?}");

    // No session id on a request that needs one; a session id from nowhere.
    let mut stranger = Raw::new(&gateway.url());
    stranger.version = Some("2025-06-18".into());
    let reply = stranger.request(7, "tools/list", json!({})).await;
    assert_eq!(reply.status, 400, "missing session id: {reply:?}");
    stranger.session = Some("not-a-session-we-issued".into());
    let reply = stranger.request(8, "tools/list", json!({})).await;
    assert_eq!(reply.status, 404, "unknown session id: {reply:?}");

    // An unsupported protocol version: 400, naming the supported ones.
    let mut odd = Raw::new(&gateway.url());
    odd.version = Some("1999-01-01".into());
    let reply = odd
        .post(r#"{"jsonrpc":"2.0","id":9,"method":"tools/list"}"#, &[])
        .await;
    assert_eq!(reply.status, 400);
    assert!(
        reply.text.contains("2025-06-18") && reply.text.contains("2026-07-28"),
        "{reply:?}"
    );

    // DNS rebinding: a foreign Host or Origin is refused.
    let url = gateway.url();
    let foreign_host = raw
        .client()
        .post(&url)
        .header("host", "evil.example.com")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    let reply = raw.send(foreign_host).await;
    assert!(
        (400..500).contains(&reply.status),
        "foreign Host: {reply:?}"
    );
    let foreign_origin = raw
        .client()
        .post(&url)
        .header("origin", "http://evil.example.com")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    let reply = raw.send(foreign_origin).await;
    assert_eq!(reply.status, 403, "foreign Origin: {reply:?}");

    // An ended session answers 404.
    let delete = raw
        .client()
        .delete(&url)
        .header("mcp-session-id", raw.session.clone().unwrap_or_default())
        .header("mcp-protocol-version", "2025-06-18");
    let reply = raw.send(delete).await;
    assert!(reply.status < 300, "DELETE ends the session: {reply:?}");
    let reply = raw.request(10, "tools/list", json!({})).await;
    assert_eq!(reply.status, 404, "ended session: {reply:?}");

    // And after all that, a fresh session works.
    let mut again = Raw::new(&gateway.url());
    again.initialize("2025-11-25").await;
    let reply = again
        .request(
            11,
            "tools/call",
            json!({"name": "demo__list_notes", "arguments": {}}),
        )
        .await;
    assert_eq!(text_of(&reply.response(11)), "no notes yet");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn lists_are_paginated() {
    let gateway = TestGateway::start(&config("[mcp]\npage_size = 2\n"), Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    let mut names = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let reply = raw.request(100 + pages, "tools/list", params).await;
        let result = reply.response(100 + pages)["result"].clone();
        let page = result["tools"].as_array().cloned().unwrap_or_default();
        assert!(page.len() <= 2);
        names.extend(
            page.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned)),
        );
        pages += 1;
        match result["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 5);
    // The rmcp client walks the pages itself.
    let client = connect(&gateway.url(), TestClient::default()).await;
    assert_eq!(client.list_all_tools().await.expect("all pages").len(), 5);
    client.cancel().await.expect("close");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_limited_to_older_revisions_turns_a_modern_probe_away_cleanly() {
    let gateway = TestGateway::start(
        &config("[mcp]\nprotocol_versions = [\"2025-06-18\", \"2025-11-25\"]\n"),
        Backend::Sqlite,
    )
    .await;
    let raw = Raw::new(&gateway.url());
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}}}});
    let probe = raw
        .post(
            body.to_string(),
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "server/discover"),
            ],
        )
        .await;
    assert_eq!(probe.status, 400);
    let error = &probe.messages()[0]["error"];
    assert_ne!(
        error["code"], -32022,
        "a modern-style refusal would stop the client's fallback: {error}"
    );
    assert_eq!(
        error["data"]["supported"],
        json!(["2025-06-18", "2025-11-25"])
    );
    // The fallback: initialize works, at the newest revision both sides speak.
    let mut raw = Raw::new(&gateway.url());
    let init = raw.initialize("2025-11-25").await;
    assert_eq!(init.response(0)["result"]["protocolVersion"], "2025-11-25");
    gateway.stop().await;
}

/// The reverse bridge: an upstream pinned to 2026-07-28 (stateless), used by a client
/// of 2025-06-18 with a session.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_client_reaches_a_stateless_upstream() {
    let gateway =
        TestGateway::start(&config("protocol = \"2026-07-28\"\n"), Backend::current()).await;
    let status = gateway.running.gateway.status();
    assert_eq!(
        status[0].protocol.as_deref(),
        Some("2026-07-28"),
        "{status:?}"
    );
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-06-18").await;
    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "demo__write_note", "arguments": {"title": "t", "body": "b"}}),
        )
        .await;
    assert_eq!(text_of(&reply.response(1)), "saved note \"t\"", "{reply:?}");
    let reply = raw
        .request(
            2,
            "tools/call",
            json!({"name": "demo__read_note", "arguments": {"title": "t"}}),
        )
        .await;
    assert_eq!(text_of(&reply.response(2)), "b");
    gateway.stop().await;
}
