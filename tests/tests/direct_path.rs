//! The direct data path (`mcp::direct`) for every Streamable HTTP upstream: one that
//! issues no session, one that changes its mind across a restart.

use serde_json::{Value, json};
use warrant_e2e::peers::fixture_with;
use warrant_e2e::raw::{Raw, Reply};
use warrant_e2e::{Backend, ChildGuard, TestGateway};

/// `flaky_upstream` over Streamable HTTP on `listen`, without sessions when `stateless`.
async fn flaky(listen: &str, stateless: bool) -> (ChildGuard, String) {
    let args: &[&str] = if stateless {
        &["http", "--stateless", "--listen", listen]
    } else {
        &["http", "--listen", listen]
    };
    fixture_with("flaky_upstream", args).await
}

fn config(url: &str) -> String {
    format!("[upstreams.flaky]\nurl = {url:?}\n")
}

fn text_of(reply: &Reply, id: i64) -> Value {
    reply.response(id)["result"]["content"][0]["text"].clone()
}

fn progress_tokens(reply: &Reply) -> Vec<Value> {
    reply
        .messages()
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .map(|m| m["params"]["progressToken"].clone())
        .collect()
}

/// `flaky__echo` of `message`, answered: its text.
async fn echo(raw: &Raw, message: &str) -> Value {
    let reply = raw
        .request(
            9,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": message}}),
        )
        .await;
    text_of(&reply, 9)
}

/// A session client's calls to an upstream that never issues an `Mcp-Session-Id` go
/// the direct way, progress included.
#[tokio::test(flavor = "multi_thread")]
async fn a_stateless_upstream_is_called_on_the_direct_path() {
    let (_upstream, url) = flaky("127.0.0.1:0", true).await;
    let gateway = TestGateway::start(&config(&url), Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;

    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert_eq!(text_of(&reply, 1), "hi", "{reply:?}");
    assert_eq!(
        gateway.running.gateway.direct_calls(),
        1,
        "the call took the direct path"
    );

    let reply = raw
        .request(
            2,
            "tools/call",
            json!({"name": "flaky__slow", "arguments": {"millis": 300, "steps": 3},
                   "_meta": {"progressToken": "p"}}),
        )
        .await;
    assert_eq!(text_of(&reply, 2), "done after 3 steps", "{reply:?}");
    assert_eq!(
        progress_tokens(&reply),
        vec![json!("p"); 3],
        "every step reached the caller: {reply:?}"
    );
    assert_eq!(gateway.running.gateway.direct_calls(), 2);
    gateway.stop().await;
}

/// An upstream restarted with sessions (and then without again) is followed: the lane
/// reconnects and records what the upstream does now; calls keep working, and keep
/// taking the direct path.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_starts_or_stops_issuing_sessions_is_followed() {
    let (mut upstream, url) = flaky("127.0.0.1:0", true).await;
    let listen = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_owned();
    let gateway = TestGateway::start(&config(&url), Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    assert_eq!(echo(&raw, "stateless").await, "stateless");
    assert_eq!(gateway.running.gateway.direct_calls(), 1);

    for stateless in [false, true] {
        upstream.child.kill().await.expect("stop the upstream");
        drop(upstream);
        upstream = flaky(&listen, stateless).await.0;
        let word = if stateless { "without" } else { "with" };
        // The first call after the change finds out about it, and is served.
        assert_eq!(echo(&raw, word).await, word, "{word} sessions");
        let before = gateway.running.gateway.direct_calls();
        assert_eq!(echo(&raw, word).await, word, "{word} sessions");
        assert_eq!(
            gateway.running.gateway.direct_calls(),
            before + 1,
            "{word} sessions, the calls take the direct path again"
        );
    }
    drop(upstream);
    gateway.stop().await;
}

/// `max_connections` bounds the direct path's connections to one upstream: calls beyond
/// it wait for a free connection (within their timeout) and are then served.
#[tokio::test(flavor = "multi_thread")]
async fn calls_beyond_max_connections_wait_for_a_free_one() {
    let (_upstream, url) = flaky("127.0.0.1:0", false).await;
    let config = format!("{}max_connections = 2\n", config(&url));
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    let slow = |id: i64| {
        raw.request(
            id,
            "tools/call",
            json!({"name": "flaky__slow", "arguments": {"millis": 300, "steps": 1}}),
        )
    };
    let replies = futures::future::join_all((1..=5).map(slow)).await;
    for (id, reply) in (1..=5).zip(&replies) {
        assert_eq!(text_of(reply, id), "done after 1 steps", "{reply:?}");
    }
    assert_eq!(gateway.running.gateway.direct_calls(), 5);
    let reply = raw
        .request(
            6,
            "tools/call",
            json!({"name": "flaky__peak", "arguments": {}}),
        )
        .await;
    assert_eq!(text_of(&reply, 6), "2", "at most two calls ran at once");
    gateway.stop().await;
}

/// A session client (2025-11-25) of an upstream that speaks only 2026-07-28: the call
/// goes direct when the client declared nothing the upstream could ask it for (no
/// elicitation, sampling or roots), so the answer cannot be an `InputRequiredResult`
/// that the rmcp path would turn into requests on the client's session. The answer is
/// in the client's revision (no `resultType`); progress is streamed.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_client_of_a_2026_only_upstream_is_called_on_the_direct_path() {
    let (_upstream, url) = flaky("127.0.0.1:0", false).await;
    let config = format!("{}protocol = \"2026-07-28\"\n", config(&url));
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;

    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(text_of(&reply, 1), "hi", "{reply:?}");
    assert!(
        reply.response(1)["result"].get("resultType").is_none(),
        "the answer is in the client's revision: {reply:?}"
    );
    assert_eq!(
        gateway.running.gateway.direct_calls(),
        1,
        "the call took the direct path"
    );

    let reply = raw
        .request(
            2,
            "tools/call",
            json!({"name": "flaky__slow", "arguments": {"millis": 300, "steps": 3},
                   "_meta": {"progressToken": "p"}}),
        )
        .await;
    assert_eq!(text_of(&reply, 2), "done after 3 steps", "{reply:?}");
    assert!(
        reply.response(2)["result"].get("resultType").is_none(),
        "{reply:?}"
    );
    assert_eq!(progress_tokens(&reply), vec![json!("p"); 3], "{reply:?}");
    assert_eq!(gateway.running.gateway.direct_calls(), 2);

    // A client that can be asked for input goes the rmcp way, which bridges the
    // upstream's questions into requests on its session.
    let mut asked = Raw::new(&gateway.url());
    let body = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "raw", "version": "0"}}});
    let reply = asked.post(body.to_string(), &[]).await;
    asked.session = reply.header("mcp-session-id");
    asked.version = Some("2025-11-25".into());
    let done = asked
        .post(
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            &[],
        )
        .await;
    assert_eq!(done.status, 202, "{done:?}");
    assert_eq!(echo(&asked, "asked").await, "asked");
    assert_eq!(gateway.running.gateway.direct_calls(), 2);
    gateway.stop().await;
}

/// Calls answered as event streams leave their connection fit for the next call (the
/// stream's end is read, not left pending): the calls share a connection instead of
/// opening one each.
#[tokio::test(flavor = "multi_thread")]
async fn calls_answered_as_event_streams_share_a_connection() {
    let (_upstream, url) = flaky("127.0.0.1:0", false).await;
    let gateway = TestGateway::start(&config(&url), Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    for i in 0..6 {
        let message = format!("call {i}");
        assert_eq!(echo(&raw, &message).await, message.as_str());
    }
    assert_eq!(
        gateway.running.gateway.direct_calls(),
        6,
        "the calls took the direct path"
    );
    let opened = gateway.running.gateway.direct_connections_opened();
    assert!(
        opened <= 2,
        "6 calls one after the other opened {opened} connections to the upstream"
    );
}
