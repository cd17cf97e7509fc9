//! The `/mcp` edge under attack: what it refuses before a request reaches the protocol
//! layer or an upstream, and the limits that keep one client from exhausting the gateway.

use rmcp::RoleClient;
use serde_json::{Value, json};
use warrant_e2e::raw::modern_meta;
// Logging is deprecated in 2026-07-28, but the earlier revisions still have it.
#[allow(deprecated)]
use rmcp::model::{CallToolRequestParams, LoggingLevel, SetLevelRequestParams};
use rmcp::service::RunningService;
use warrant_e2e::client::{TestClient, connect};
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

/// A POST to `/mcp` over a plain socket from `from` (a loopback address), announcing a
/// body of `announced` bytes and sending the first `sent` of them (all of it when equal).
async fn post_from(
    gateway: &TestGateway,
    from: [u8; 4],
    announced: usize,
    sent: usize,
    bearer: Option<&str>,
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt as _;
    let socket = tokio::net::TcpSocket::new_v4().expect("a socket");
    socket
        .bind(std::net::SocketAddr::from((from, 0)))
        .expect("bind a loopback address");
    let addr = gateway.running.local_addr;
    let mut stream = socket.connect(addr).await.expect("connect");
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\n{auth}Content-Length: {announced}\r\n\r\n",
        addr.port()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut body = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#.to_vec();
    body.resize(sent, b' ');
    stream.write_all(&body).await.expect("write");
    stream
}

/// The status, headers (lowercase names) and body of the response on `stream`.
async fn response_of(stream: &mut tokio::net::TcpStream) -> (u16, String, String) {
    use tokio::io::AsyncReadExt as _;
    let mut all = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let text = String::from_utf8_lossy(&all).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if body.len() >= length {
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                return (status, head.to_lowercase(), body.to_owned());
            }
        }
        let n = stream.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the connection closed before a response: {text:?}");
        all.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_without_a_valid_token_is_refused_before_its_body_is_read() {
    let gateway = TestGateway::start_protected(&config(""), Backend::Sqlite).await;
    // Many bodies that announce 4 MB and never finish: each is answered 401 at once.
    let mut pending = Vec::new();
    for token in [None, Some("not-a-token")].into_iter().cycle().take(20) {
        let gateway = &gateway;
        pending.push(async move {
            let mut stream = post_from(gateway, [127, 0, 0, 1], 4_000_000, 65_536, token).await;
            tokio::time::timeout(std::time::Duration::from_secs(5), response_of(&mut stream))
                .await
                .expect("answered without waiting for the body")
        });
    }
    for (status, head, _) in futures::future::join_all(pending).await {
        assert_eq!(status, 401, "{head}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bodies_being_received_are_bounded_per_client_address_and_in_total() {
    let gateway = TestGateway::start(
        &config(
            "[mcp]\nmax_body_bytes_in_flight = 150000\nmax_body_bytes_in_flight_per_client = 100000\n",
        ),
        Backend::Sqlite,
    )
    .await;
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(300));
    // 80 kB from 127.0.0.1 still arriving: 50 kB more from there is too much.
    let a = post_from(&gateway, [127, 0, 0, 1], 200_000, 80_000, None).await;
    settle().await;
    let mut more = post_from(&gateway, [127, 0, 0, 1], 50_000, 50_000, None).await;
    let (status, head, body) = response_of(&mut more).await;
    assert_eq!(status, 429, "{head}{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(
        error_message(&body).contains("mcp.max_body_bytes_in_flight_per_client"),
        "{body}"
    );
    // Another address has its own share, within the total.
    let mut other = post_from(&gateway, [127, 0, 0, 2], 50_000, 50_000, None).await;
    let (status, head, _) = response_of(&mut other).await;
    assert!(![429, 503].contains(&status), "{head}");
    let b = post_from(&gateway, [127, 0, 0, 2], 200_000, 60_000, None).await;
    settle().await;
    // 140 kB arriving in all: 20 kB from a third address passes the total.
    let mut third = post_from(&gateway, [127, 0, 0, 3], 20_000, 20_000, None).await;
    let (status, head, body) = response_of(&mut third).await;
    assert_eq!(status, 503, "{head}{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(
        error_message(&body).contains("mcp.max_body_bytes_in_flight)"),
        "{body}"
    );
    // Once those bodies are gone, their bytes are given back.
    drop((a, b));
    settle().await;
    let mut again = post_from(&gateway, [127, 0, 0, 1], 90_000, 90_000, None).await;
    let (status, head, _) = response_of(&mut again).await;
    assert!(![429, 503].contains(&status), "{head}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_capped_per_client_and_the_refusal_names_the_cap() {
    let gateway = TestGateway::start(
        &config("[mcp]\nmax_sessions_per_client = 2\n"),
        Backend::Sqlite,
    )
    .await;
    let mut first = Raw::new(&gateway.url());
    first.initialize("2025-06-18").await;
    let mut second = Raw::new(&gateway.url());
    second.initialize("2025-11-25").await;
    let mut third = Raw::new(&gateway.url());
    let init = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let reply = third.post(init.to_string(), &[]).await;
    assert_eq!(reply.status, 429, "{reply:?}");
    assert!(reply.header("mcp-session-id").is_none(), "{reply:?}");
    let message = error_message(&reply.text);
    assert!(message.contains("2 MCP sessions"), "{message}");
    assert!(message.contains("mcp.max_sessions_per_client"), "{message}");
    // Ending one makes room.
    let session = first.session.clone().unwrap_or_default();
    let ended = first
        .send(
            first
                .client()
                .delete(&first.url)
                .header("mcp-session-id", &session),
        )
        .await;
    assert_eq!(ended.status, 200, "{ended:?}");
    third.initialize("2025-06-18").await;
    let reply = third.request(1, "tools/list", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_expires_and_its_id_gets_404() {
    let gateway = TestGateway::start(
        &config("[mcp]\nsession_idle_timeout = \"1s\"\nmax_sessions_per_client = 1\n"),
        Backend::Sqlite,
    )
    .await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-06-18").await;
    // In use, it stays.
    for id in 1..=3 {
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let reply = raw.request(id, "tools/list", json!({})).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let reply = raw.request(4, "tools/list", json!({})).await;
    assert_eq!(reply.status, 404, "{reply:?}");
    // It no longer counts against the cap: the client starts again.
    let mut again = Raw::new(&gateway.url());
    again.initialize("2025-06-18").await;
    gateway.stop().await;
}

/// A person with an agent allowed every `flaky` tool: their access token.
async fn person_with_agent(gateway: &TestGateway, email: &str) -> String {
    warrant_e2e::agent::member_with_agent(gateway, email, &["flaky.*"])
        .await
        .1
}

/// A stateless `notifications/cancelled` of request 7 with `token`: the HTTP status.
async fn cancel_7(gateway: &TestGateway, token: &str) -> u16 {
    let mut raw = Raw::new(&gateway.url());
    raw.bearer = Some(token.to_owned());
    raw.version = Some("2026-07-28".into());
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 7, "reason": "changed my mind", "_meta": modern_meta()}});
    raw.post(
        cancel.to_string(),
        &[("mcp-method", "notifications/cancelled")],
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread")]
async fn one_person_cannot_cancel_anothers_stateless_call_with_the_same_id() {
    use warrant_consent::token::Risk;
    let (_upstream, url) = warrant_e2e::fixture_http("flaky_upstream").await;
    let toml = format!("[upstreams.flaky]\nurl = {url:?}\ncall_timeout = \"20s\"\n");
    let gateway = TestGateway::start_protected(&toml, Backend::Sqlite).await;
    let catalog = gateway.running.catalog.clone();
    let now = warrant_e2e::agent::unix_now();
    for _ in 0..100 {
        if catalog
            .catalog()
            .tools_of("flaky")
            .await
            .is_ok_and(|t| !t.is_empty())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for tool in ["hang", "slow"] {
        catalog
            .review("flaky", tool, Some(Risk::Low), "admin@example.com", now)
            .await
            .expect("review");
    }
    let alice = person_with_agent(&gateway, "alice@example.com").await;
    let bob = person_with_agent(&gateway, "bob@example.com").await;
    for _ in 0..100 {
        let names = warrant_e2e::raw::modern_tool_names(&gateway.url(), Some(&alice)).await;
        if names.iter().any(|n| n == "flaky__hang") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let start = |token: &str, tool: &'static str, arguments: Value| {
        let (mcp, token) = (gateway.url(), token.to_owned());
        tokio::spawn(async move {
            warrant_e2e::raw::modern_call(&mcp, Some(&token), tool, arguments).await
        })
    };
    let settle = || tokio::time::sleep(std::time::Duration::from_millis(400));

    let reached = || gateway.running.gateway.direct_cancellations();
    // Alice's call 7 hangs; Bob, who has no call 7, cancels "7": it reaches nothing.
    let alices = start(&alice, "flaky__hang", json!({}));
    settle().await;
    cancel_7(&gateway, &bob).await;
    assert_eq!(reached(), 0, "Bob's cancel reached Alice's call");
    // Bob's own call 7 beside hers: his cancel ends his; hers is still there for her.
    let bobs = start(&bob, "flaky__hang", json!({}));
    settle().await;
    let direct = gateway.running.gateway.direct_calls();
    assert!(direct >= 2, "the calls take the direct path ({direct})");
    assert_eq!(cancel_7(&gateway, &bob).await, 202);
    assert_eq!(reached(), 1, "Bob's cancel reached his call");
    assert!(!alices.is_finished(), "Alice's call is still running");
    assert_eq!(cancel_7(&gateway, &alice).await, 202);
    assert_eq!(reached(), 2, "Alice's cancel reached her call");

    // Two people's calls with the same id both complete.
    let slow = json!({"millis": 600, "steps": 1});
    let (a, b) = (
        start(&alice, "flaky__slow", slow.clone()),
        start(&bob, "flaky__slow", slow),
    );
    for reply in [a.await.expect("Alice's"), b.await.expect("Bob's")] {
        assert_eq!(
            reply.response(7)["result"]["isError"],
            json!(false),
            "{reply:?}"
        );
    }
    alices.abort();
    bobs.abort();
    gateway.stop().await;
}

/// Calls the flaky upstream's `log_level`: the level it was last told by
/// `logging/setLevel` (it also logs one info and one error message to the caller).
async fn upstream_log_level(client: &RunningService<RoleClient, TestClient>) -> String {
    let result = client
        .call_tool(CallToolRequestParams::new("flaky__log_level"))
        .await
        .expect("log_level");
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// Calls `log_level` until `handler` has received a log message of `level` (log
/// messages travel on the client's standalone stream, which may open after the call),
/// checking every time that the upstream was never told a level; then the levels of
/// every log message received.
#[allow(deprecated)]
async fn call_until_logged(
    client: &RunningService<RoleClient, TestClient>,
    handler: &TestClient,
    level: LoggingLevel,
) -> Vec<LoggingLevel> {
    for _ in 0..20 {
        assert_eq!(upstream_log_level(client).await, "unset");
        for _ in 0..10 {
            if handler.seen().logs.iter().any(|l| l.level == level) {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                return handler.seen().logs.iter().map(|l| l.level).collect();
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    panic!("no {level:?} log message reached the client");
}

/// Client A turns its logging down to errors; B, on the same shared upstream, neither
/// changes the upstream's level nor loses its own messages.
#[allow(deprecated)]
async fn a_sessions_log_level_is_its_own(toml: &str) {
    let gateway = TestGateway::start(toml, Backend::Sqlite).await;
    let (a, b) = (TestClient::default(), TestClient::default());
    let a_client = connect(&gateway.url(), a.clone()).await;
    let b_client = connect(&gateway.url(), b.clone()).await;
    a_client
        .set_level(SetLevelRequestParams::new(LoggingLevel::Error))
        .await
        .expect("logging/setLevel");

    // The upstream, shared by A and B, was not told; B hears everything.
    let levels = call_until_logged(&b_client, &b, LoggingLevel::Error).await;
    assert!(levels.contains(&LoggingLevel::Info), "{levels:?}");

    // A receives only what it asked for.
    let levels = call_until_logged(&a_client, &a, LoggingLevel::Error).await;
    assert!(
        levels.iter().all(|l| *l == LoggingLevel::Error),
        "{levels:?}"
    );
    a_client.cancel().await.expect("close");
    b_client.cancel().await.expect("close");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_log_level_is_its_own_over_stdio() {
    let toml = warrant_e2e::stdio_upstream("flaky", "flaky_upstream", &[]);
    a_sessions_log_level_is_its_own(&toml).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sessions_log_level_is_its_own_over_streamable_http() {
    let (_upstream, url) = warrant_e2e::fixture_http("flaky_upstream").await;
    a_sessions_log_level_is_its_own(&format!("[upstreams.flaky]\nurl = {url:?}\n")).await;
}
