//! `/metrics` scraped as Prometheus scrapes it, and read by the Prometheus project's own
//! text parser: calls by upstream and decision, how they ended and how long they took,
//! the upstreams, the sessions, the ledger, how fresh the live views are; and answered
//! to loopback and `metrics.allow_from` only.

use std::process::Stdio;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use warrant_e2e::agent::{member_calls_echo_and_is_refused_seen, review_low};
use warrant_e2e::{Backend, TestGateway, fixture_http, python, repo_root};

/// `text` parsed by `prometheus_client` (tests/python/metrics.py): every sample.
async fn parsed(text: &str) -> Value {
    let mut child = tokio::process::Command::new(python())
        .arg(repo_root().join("tests/python/metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(text.as_bytes()).await.expect("write");
    drop(input);
    let output = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("parsed within 30 s")
        .expect("python ends");
    assert!(
        output.status.success(),
        "the Prometheus parser refused it: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(metrics: &Value, name: &str, labels: &Value) -> Option<f64> {
    metrics["samples"]
        .as_array()?
        .iter()
        .find(|s| {
            s["name"] == name
                && labels
                    .as_object()
                    .is_some_and(|want| want.iter().all(|(k, v)| &s["labels"][k] == v))
        })
        .and_then(|s| s["value"].as_f64())
}

async fn scrape(gw: &TestGateway, forwarded_for: Option<&str>) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(format!("{}/metrics", gw.base()));
    if let Some(client) = forwarded_for {
        request = request.header("x-forwarded-for", client);
    }
    let response = request.send().await.expect("scrape");
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, kind, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_upstreams_sessions_and_the_ledger_are_scraped_and_parsed() {
    let (_upstream, url) = fixture_http("flaky_upstream").await;
    let toml = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n\
         [metrics]\nallow_from = [\"198.51.100.0/24\"]\n\
         [upstreams.flaky]\nurl = {url:?}\n"
    );
    let gw = TestGateway::start_protected(&toml, Backend::current()).await;
    review_low(&gw, "flaky", &["echo", "seen"]).await;
    member_calls_echo_and_is_refused_seen(&gw, "alice@example.com", 2).await;

    // The outcome is counted once the answer has gone by: scrape until it is.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (kind, metrics) = loop {
        let (status, kind, text) = scrape(&gw, None).await;
        assert_eq!(status, 200, "{text}");
        let metrics = parsed(&text).await;
        let flaky = json!({"upstream": "flaky"});
        if value(&metrics, "warrant_call_duration_seconds_count", &flaky) == Some(2.0) {
            break (kind, metrics);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "two outcomes counted: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
    assert_eq!(metrics["types"]["warrant_calls"], "counter", "{metrics}");
    assert_eq!(
        metrics["types"]["warrant_call_duration_seconds"],
        "histogram"
    );
    let at = |name: &str, labels: Value| value(&metrics, name, &labels);
    assert_eq!(
        at(
            "warrant_calls_total",
            json!({"upstream": "flaky", "decision": "allow"})
        ),
        Some(2.0)
    );
    assert_eq!(
        at(
            "warrant_calls_total",
            json!({"upstream": "flaky", "decision": "deny"})
        ),
        Some(1.0)
    );
    assert_eq!(
        at(
            "warrant_call_outcomes_total",
            json!({"upstream": "flaky", "outcome": "ok"})
        ),
        Some(2.0)
    );
    assert_eq!(
        at(
            "warrant_call_duration_seconds_bucket",
            json!({"upstream": "flaky", "le": "+Inf"})
        ),
        Some(2.0)
    );
    assert_eq!(
        at("warrant_upstream_up", json!({"upstream": "flaky"})),
        Some(1.0)
    );
    assert_eq!(
        at(
            "warrant_upstream_state",
            json!({"upstream": "flaky", "state": "ready"})
        ),
        Some(1.0)
    );
    assert!(
        at("warrant_upstream_tools", json!({"upstream": "flaky"})).is_some_and(|n| n >= 2.0),
        "echo and seen among them"
    );
    assert_eq!(
        at("warrant_mcp_sessions", json!({})),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(at("warrant_ledger_up", json!({})), Some(1.0));
    assert!(at("warrant_ledger_backlog", json!({})).is_some());
    assert!(
        at("warrant_ledger_records_written_total", json!({})).is_some_and(|n| n >= 4.0),
        "the opening, two calls, their outcomes: {metrics}"
    );
    for view in ["revocations", "ceilings", "keys", "catalog"] {
        let age = at("warrant_view_refresh_age_seconds", json!({ "view": view }));
        assert!(
            age.is_some_and(|a| (0.0..5.0).contains(&a)),
            "{view} refreshed lately: {age:?}"
        );
    }

    // Through the trusted proxy: a client elsewhere is refused, one in allow_from served.
    let (status, _, text) = scrape(&gw, Some("203.0.113.9")).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("metrics.allow_from"), "{text}");
    let (status, _, _) = scrape(&gw, Some("198.51.100.20")).await;
    assert_eq!(status, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_switched_off_are_not_served() {
    let gw = TestGateway::start("[metrics]\nenabled = false\n", Backend::current()).await;
    let (status, _, _) = scrape(&gw, None).await;
    assert_eq!(status, 404);
    gw.stop().await;
}
