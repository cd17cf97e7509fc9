//! `[[upstreams]] sessions`: the direct path spreads a session upstream's calls over
//! several of its sessions, and what the upstream sends on any of them reaches the
//! gateway as it does on the lane's own.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warrant_e2e::peers::fixture_with;
use warrant_e2e::raw::Raw;
use warrant_e2e::{Backend, ChildGuard, TestGateway};

/// `flaky_upstream` over Streamable HTTP, keeping sessions, and a gateway in front of it
/// that opens `sessions` of them (unset: the default).
async fn gateway(sessions: Option<usize>, extra: &str) -> (ChildGuard, TestGateway) {
    let (upstream, url) =
        fixture_with("flaky_upstream", &["http", "--listen", "127.0.0.1:0"]).await;
    let mut config = format!("[upstreams.flaky]\nurl = {url:?}\n{extra}");
    if let Some(n) = sessions {
        config.push_str(&format!("sessions = {n}\n"));
    }
    let gateway = TestGateway::start(&config, Backend::current()).await;
    (upstream, gateway)
}

/// Waits until the gateway can call into `n` sessions of the upstream.
async fn sessions_open(gateway: &TestGateway, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let open = gateway.running.gateway.open_upstream_sessions("flaky");
        if open == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{open} sessions open with the upstream, {n} expected"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(raw: &Raw, id: i64, tool: &str, arguments: Value) -> Value {
    let reply = raw
        .request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await;
    reply.response(id)
}

fn text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {response}"))
        .to_owned()
}

async fn listed(raw: &Raw, id: i64) -> Vec<String> {
    let reply = raw.request(id, "tools/list", json!({})).await;
    reply.response(id)["result"]["tools"]
        .as_array()
        .map(|tools| {
            tools
                .iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The session ids the upstream saw on `calls` calls of `flaky__session`.
async fn sessions_seen(raw: &Raw, calls: i64) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    for id in 0..calls {
        seen.insert(text(
            &call(raw, 100 + id, "flaky__session", json!({})).await,
        ));
    }
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_are_spread_over_the_sessions_configured_and_one_by_default() {
    let (_upstream, gw) = gateway(Some(3), "").await;
    sessions_open(&gw, 3).await;
    let mut raw = Raw::new(&gw.url());
    raw.initialize("2025-11-25").await;
    let seen = sessions_seen(&raw, 6).await;
    assert_eq!(seen.len(), 3, "the upstream saw the sessions {seen:?}");
    assert!(!seen.contains("none"), "{seen:?}");
    assert_eq!(gw.running.gateway.direct_calls(), 6, "the direct path");
    gw.stop().await;

    let (_upstream, gw) = gateway(None, "").await;
    sessions_open(&gw, 1).await;
    let mut raw = Raw::new(&gw.url());
    raw.initialize("2025-11-25").await;
    let seen = sessions_seen(&raw, 4).await;
    assert_eq!(seen.len(), 1, "one session by default: {seen:?}");
    gw.stop().await;
}

/// A tool list change announced on an extra session is noticed as on the lane's own.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_announced_on_any_session_is_noticed() {
    let (_upstream, gw) = gateway(Some(2), "").await;
    sessions_open(&gw, 2).await;
    let mut raw = Raw::new(&gw.url());
    raw.initialize("2025-11-25").await;
    assert!(listed(&raw, 1).await.contains(&"flaky__echo".to_owned()));
    // Calls take the sessions in turn: of two calls one after the other, one goes into
    // the lane's own session and one into the extra one.
    let rounds = [("pulled", false), ("restored", true)].repeat(2);
    for (round, (said, listed_after)) in (0i64..).zip(rounds) {
        assert_eq!(
            text(&call(&raw, 10 + round, "flaky__rug_pull", json!({})).await),
            said
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while listed(&raw, 30 + round)
            .await
            .contains(&"flaky__echo".to_owned())
            != listed_after
        {
            assert!(
                Instant::now() < deadline,
                "the change announced by call {round} (`{said}`) was not noticed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(gw.running.gateway.direct_calls(), 4, "the direct path");
    gw.stop().await;
}

/// A call cancelled (here: timed out) is cancelled in the session it went into.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_goes_into_the_calls_own_session() {
    let (_upstream, gw) = gateway(Some(2), "call_timeout = \"1s\"\n").await;
    sessions_open(&gw, 2).await;
    let mut raw = Raw::new(&gw.url());
    raw.initialize("2025-11-25").await;
    for id in 1..=2 {
        let response = call(&raw, id, "flaky__hang", json!({})).await;
        assert_eq!(response["error"]["code"], -32001, "{response}");
    }
    assert_eq!(gw.running.gateway.direct_calls(), 2, "the direct path");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cancelled = text(&call(&raw, 3, "flaky__cancellations", json!({})).await);
        if cancelled == "2" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{cancelled} of the 2 calls were cancelled upstream"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    gw.stop().await;
}
