//! A 2026-07-28 client calling a tool of an upstream spoken to in the legacy era, which
//! asks the client for input mid-call (elicitation, sampling): Warrant parks the
//! upstream call, hands the client the request as an `InputRequiredResult`, and resumes
//! the call with the client's retry (see `proxy/plane/src/server/park.rs`).
//!
//! The upstream is the conformance fixture, pinned to 2025-11-25 (`protocol`), whose
//! `test_elicitation` and `test_sampling` send their requests over the session.

use std::time::Duration;

use serde_json::{Value, json};
use warrant_e2e::{Backend, Raw, Reply, TestGateway, fixture_http, repo_root, stdio_upstream};

/// The fixture over Streamable HTTP (a direct-path candidate), spoken to in 2025-11-25.
fn http_config(url: &str, extra: &str) -> String {
    format!("[upstreams.fx]\nurl = {url:?}\nprotocol = \"2025-11-25\"\n{extra}")
}

/// The fixture over stdio, spoken to in 2025-11-25.
fn stdio_config(extra: &str) -> String {
    format!(
        "{}protocol = \"2025-11-25\"\n{extra}",
        stdio_upstream("fx", "conformance_fixture", &["stdio"])
    )
}

/// The official Python SDK as a 2026-07-28 client that accepts elicitations and
/// answers sampling (tests/python/input_client.py); its one-line JSON report.
async fn python_client(url: &str, tool: &str, args: Value) -> Value {
    let python = repo_root().join("tests/python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which installs the Python MCP SDK",
        python.display()
    );
    let mut command = tokio::process::Command::new(python);
    command
        .arg(repo_root().join("tests/python/input_client.py"))
        .args([url, tool, &args.to_string()]);
    let output = command.kill_on_drop(true).output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .expect("the client finishes within a minute")
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client failed: {stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"))
}

/// A raw 2026-07-28 `tools/call` (headers and `_meta` as the revision requires).
async fn modern_call(raw: &Raw, id: i64, tool: &str, extra: Value, caps: Value) -> Value {
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": caps,
        "io.modelcontextprotocol/clientInfo": {"name": "raw-modern", "version": "0"}
    });
    let mut params = json!({"name": tool, "_meta": meta});
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    let body = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params});
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", tool),
    ];
    let reply: Reply = raw.post(body.to_string(), &headers).await;
    reply.response(id)
}

fn elicitation_caps() -> Value {
    json!({"elicitation": {}})
}

/// The first call of `test_elicitation`: an input round; its state and input requests.
async fn first_round(raw: &Raw, id: i64) -> (String, Value) {
    let response = modern_call(
        raw,
        id,
        "fx__test_elicitation",
        json!({"arguments": {"message": "Who are you?"}}),
        elicitation_caps(),
    )
    .await;
    let result = &response["result"];
    assert_eq!(result["resultType"], "input_required", "{response}");
    let requests = result["inputRequests"].clone();
    let keys: Vec<&String> = requests
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys.len(), 1, "{response}");
    let request = &requests[keys[0].as_str()];
    assert_eq!(request["method"], "elicitation/create", "{response}");
    assert_eq!(request["params"]["message"], "Who are you?", "{response}");
    let state = result["requestState"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        state.len() >= 22,
        "a state of at least 128 bits: {response}"
    );
    (state, requests)
}

/// Answers every elicitation of `requests` with `content`.
fn accept_all(requests: &Value, content: Value) -> Value {
    let answers: serde_json::Map<String, Value> = requests
        .as_object()
        .into_iter()
        .flatten()
        .map(|(key, _)| (key.clone(), json!({"action": "accept", "content": content})))
        .collect();
    Value::Object(answers)
}

fn text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Waits (up to `limit`) until no call is parked.
async fn until_unparked(gateway: &TestGateway, limit: Duration) -> bool {
    let wait = async {
        while gateway.running.gateway.parked_calls() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(limit, wait).await.is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_at_2026_07_28_answers_a_legacy_upstreams_elicitation() {
    let (_fixture, url) = fixture_http("conformance_fixture").await;
    let gateway = TestGateway::start(&http_config(&url, ""), Backend::current()).await;
    let report = python_client(
        &gateway.url(),
        "fx__test_elicitation",
        json!({"message": "Who are you?"}),
    )
    .await;
    assert_eq!(report["protocolVersion"], "2026-07-28", "{report}");
    assert_eq!(report["isError"], false, "{report}");
    // The upstream's own request reached the client's callback …
    assert_eq!(
        report["asked"],
        json!([{"kind": "elicitation", "message": "Who are you?"}]),
        "{report}"
    );
    // … and the client's answer reached the upstream, which reports what it got.
    let text = report["text"][0].as_str().unwrap_or_default();
    assert!(
        text.starts_with("User response: action=accept")
            && text.contains(r#""username":"ada""#)
            && text.contains(r#""email":"ada@example.test""#),
        "{report}"
    );
    let status = gateway.running.gateway.status();
    assert_eq!(
        status[0].protocol.as_deref(),
        Some("2025-11-25"),
        "{status:?}"
    );
    // The call went the rmcp way (the direct path keeps to the caller's own era) and
    // left nothing parked.
    assert_eq!(gateway.running.gateway.direct_calls(), 0);
    assert_eq!(gateway.running.gateway.parked_calls(), 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_at_2026_07_28_answers_a_legacy_upstreams_sampling_over_stdio() {
    let gateway = TestGateway::start(&stdio_config(""), Backend::current()).await;
    let report = python_client(
        &gateway.url(),
        "fx__test_sampling",
        json!({"prompt": "capital of France?"}),
    )
    .await;
    assert_eq!(report["protocolVersion"], "2026-07-28", "{report}");
    assert_eq!(
        report["text"][0], "LLM response: sampled: capital of France?",
        "{report}"
    );
    assert_eq!(gateway.running.gateway.parked_calls(), 0);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raw_client_resumes_a_parked_call_and_nobody_else_can() {
    let (_fixture, url) = fixture_http("conformance_fixture").await;
    let gateway = TestGateway::start(&http_config(&url, ""), Backend::current()).await;
    let raw = Raw::new(&gateway.url());

    let (state, requests) = first_round(&raw, 1).await;
    assert_eq!(gateway.running.gateway.parked_calls(), 1);
    let answers = accept_all(&requests, json!({"username": "grace", "email": "g@h.test"}));

    // The same state on another tool is refused, and the parked call stays.
    let other = modern_call(
        &raw,
        2,
        "fx__test_sampling",
        json!({"arguments": {"prompt": "x"}, "inputResponses": answers, "requestState": state}),
        json!({"elicitation": {}, "sampling": {}}),
    )
    .await;
    assert_eq!(other["error"]["code"], -32602, "{other}");
    assert!(
        other["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("issued for another call"),
        "{other}"
    );
    assert_eq!(gateway.running.gateway.parked_calls(), 1);

    // A retry without the answers is refused too, and the call still waits.
    let unanswered = modern_call(
        &raw,
        3,
        "fx__test_elicitation",
        json!({"arguments": {"message": "Who are you?"}, "inputResponses": {}, "requestState": state}),
        elicitation_caps(),
    )
    .await;
    assert_eq!(unanswered["error"]["code"], -32602, "{unanswered}");
    assert_eq!(gateway.running.gateway.parked_calls(), 1);

    // The right retry completes the call with the answer.
    let done = modern_call(
        &raw,
        4,
        "fx__test_elicitation",
        json!({"arguments": {"message": "Who are you?"}, "inputResponses": answers, "requestState": state}),
        elicitation_caps(),
    )
    .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    let got = text(&done);
    assert!(
        got.starts_with("User response: action=accept") && got.contains(r#""username":"grace""#),
        "{done}"
    );
    assert_eq!(
        gateway.running.gateway.parked_calls(),
        0,
        "nothing left parked"
    );

    // The state was for one round only.
    let again = modern_call(
        &raw,
        5,
        "fx__test_elicitation",
        json!({"arguments": {"message": "Who are you?"}, "inputResponses": answers, "requestState": state}),
        elicitation_caps(),
    )
    .await;
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired or is unknown"),
        "{again}"
    );

    // Two calls get two different states.
    let (first, _) = first_round(&raw, 6).await;
    let (second, _) = first_round(&raw, 7).await;
    assert_ne!(first, second);
    assert_eq!(gateway.running.gateway.parked_calls(), 2);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_request_state_gets_a_clear_error() {
    let gateway = TestGateway::start(&stdio_config(""), Backend::current()).await;
    let raw = Raw::new(&gateway.url());
    let response = modern_call(
        &raw,
        1,
        "fx__test_elicitation",
        json!({
            "arguments": {"message": "hi"},
            "inputResponses": {"elicitation-1": {"action": "accept", "content": {}}},
            "requestState": "bm90LWEtc3RhdGUtb2YtdGhlLWdhdGV3YXk"
        }),
        elicitation_caps(),
    )
    .await;
    assert_eq!(response["error"]["code"], -32602, "{response}");
    let message = response["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("input round of this call has expired or is unknown")
            && message.contains("make the call again"),
        "{response}"
    );
    gateway.stop().await;
}

/// A parked call lasts as long as its upstream call may: past the call timeout the
/// entry is gone (the map empties by itself) and a late retry is told to start over.
#[tokio::test(flavor = "multi_thread")]
async fn a_parked_call_expires_with_the_upstream_call_timeout() {
    let gateway =
        TestGateway::start(&stdio_config("call_timeout = \"2s\"\n"), Backend::current()).await;
    let raw = Raw::new(&gateway.url());
    let started = std::time::Instant::now();
    let (state, requests) = first_round(&raw, 1).await;
    assert_eq!(gateway.running.gateway.parked_calls(), 1);
    assert!(
        until_unparked(&gateway, Duration::from_secs(10)).await,
        "the parked call was not removed"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "removed before the call timeout: {:?}",
        started.elapsed()
    );
    let late = modern_call(
        &raw,
        2,
        "fx__test_elicitation",
        json!({
            "arguments": {"message": "Who are you?"},
            "inputResponses": accept_all(&requests, json!({"username": "late", "email": "l@t.test"})),
            "requestState": state
        }),
        elicitation_caps(),
    )
    .await;
    assert!(
        late["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired or is unknown"),
        "{late}"
    );
    // The upstream is still fine: a new call gets a new round.
    let (fresh, _) = first_round(&raw, 3).await;
    assert_ne!(fresh, state);
    gateway.stop().await;
}

/// Without the capability in its `_meta`, the client is not asked (nothing is parked):
/// the upstream's request is refused with the reason, which the fixture reports. Both
/// for a client that declared nothing (its call is not even run for parking) and for
/// one that declared another capability (parked calls check what it declared).
#[tokio::test(flavor = "multi_thread")]
async fn a_2026_client_without_the_capability_is_not_asked() {
    let gateway = TestGateway::start(&stdio_config(""), Backend::current()).await;
    let raw = Raw::new(&gateway.url());
    for (id, caps) in [(1, json!({})), (2, json!({"sampling": {}}))] {
        let response = modern_call(
            &raw,
            id,
            "fx__test_elicitation",
            json!({"arguments": {"message": "hi"}}),
            caps,
        )
        .await;
        assert_eq!(response["result"]["resultType"], "complete", "{response}");
        assert!(
            text(&response).contains("did not declare the elicitation capability"),
            "{response}"
        );
        assert_eq!(gateway.running.gateway.parked_calls(), 0);
    }
    gateway.stop().await;
}

/// A critical tool (every fixture tool is: nobody classified them) whose call a person
/// approved once asks for input mid-call: the round's `requestState` continues that
/// call with the arguments the person approved, and only with them.
#[tokio::test(flavor = "multi_thread")]
async fn a_later_round_of_an_approved_call_continues_only_with_the_approved_arguments() {
    let (_fixture, url) = fixture_http("conformance_fixture").await;
    let toml = http_config(&url, "[policy]\ndefault_ceiling = \"critical\"\n");
    let gateway = TestGateway::start_protected(&toml, Backend::current()).await;
    let agent = warrant_e2e::agent::admin_approves_agent(&gateway, "Asking Bot").await;
    let mut raw = Raw::new(&gateway.url());
    raw.bearer = Some(agent.tokens.access.clone());
    let caps = json!({"elicitation": {"form": {}, "url": {}}});
    let approved = json!({"message": "Who are you?"});

    // The approval round first: the person approves this call once.
    let held = modern_call(
        &raw,
        1,
        "fx__test_elicitation",
        json!({"arguments": approved}),
        caps.clone(),
    )
    .await;
    let result = &held["result"];
    assert_eq!(result["resultType"], "input_required", "{held}");
    let page_url = result["inputRequests"]["warrant-approval"]["params"]["url"]
        .as_str()
        .expect("the approval page")
        .to_owned();
    let approval_state = result["requestState"].as_str().expect("state").to_owned();
    let page = agent.browser.get(&page_url).await;
    let csrf = page.csrf().expect("csrf");
    let decided = agent
        .browser
        .post_form(&page_url, &[("csrf", &csrf), ("decision", "once")])
        .await;
    assert_eq!(decided.status, 303, "{}", decided.body);

    // Approved, the call goes upstream, which asks the client a question.
    let asked = modern_call(
        &raw,
        2,
        "fx__test_elicitation",
        json!({
            "arguments": approved,
            "requestState": approval_state,
            "inputResponses": {"warrant-approval": {"action": "accept"}}
        }),
        caps.clone(),
    )
    .await;
    let result = &asked["result"];
    assert_eq!(result["resultType"], "input_required", "{asked}");
    let state = result["requestState"].as_str().expect("state").to_owned();
    let answers = accept_all(&result["inputRequests"], json!({"username": "grace"}));

    // That round's state with other arguments: refused, saying why.
    let other = modern_call(
        &raw,
        3,
        "fx__test_elicitation",
        json!({
            "arguments": {"message": "Something else"},
            "requestState": state,
            "inputResponses": answers
        }),
        caps.clone(),
    )
    .await;
    assert_eq!(other["error"]["code"], -32602, "{other}");
    let message = other["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("with other arguments") && message.contains("approved those"),
        "{message}"
    );

    // With the approved arguments it continues the call.
    let done = modern_call(
        &raw,
        4,
        "fx__test_elicitation",
        json!({"arguments": approved, "requestState": state, "inputResponses": answers}),
        caps,
    )
    .await;
    assert_eq!(done["result"]["resultType"], "complete", "{done}");
    assert!(
        text(&done).starts_with("User response: action=accept"),
        "{done}"
    );
    gateway.stop().await;
}
