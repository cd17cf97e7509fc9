//! One bad upstream costs only its own calls: a crash in the middle of a call, a server
//! that never answers, a command that cannot start, names that collide. Each gets a
//! clear error; the other upstreams and sessions keep serving; a crashed stdio server is
//! restarted.

use std::time::{Duration, Instant};

use rmcp::model::CallToolRequestParams;
use serde_json::json;
use warrant_e2e::{Backend, Raw, TestClient, TestGateway, connect, demo_upstream, stdio_upstream};

fn args(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn flaky(extra: &str) -> String {
    format!(
        "{}{extra}\n{}",
        stdio_upstream("flaky", "flaky_upstream", &[]),
        demo_upstream("demo")
    )
}

async fn pid(client: &rmcp::service::RunningService<rmcp::RoleClient, TestClient>) -> String {
    let result = client
        .call_tool(CallToolRequestParams::new("flaky__pid"))
        .await
        .expect("pid");
    result.content[0]
        .as_text()
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_crashes_mid_call_fails_that_call_only_and_comes_back() {
    let gateway = TestGateway::start(&flaky(""), Backend::current()).await;
    let client = connect(&gateway.url(), TestClient::default()).await;
    let first_pid = pid(&client).await;

    let crash = CallToolRequestParams::new("flaky__crash").with_arguments(args(json!({"code": 3})));
    let error = client
        .call_tool(crash)
        .await
        .expect_err("the crash fails the call");
    let message = error.to_string();
    assert!(message.contains("upstream \"flaky\""), "{message}");

    // The other upstream serves on, in the same session.
    let notes = client
        .call_tool(CallToolRequestParams::new("demo__list_notes"))
        .await
        .expect("demo still works");
    assert_eq!(notes.is_error, Some(false));

    // While the crashed one is down, its tools fail with the reason, then it is restarted.
    let deadline = Instant::now() + Duration::from_secs(20);
    let second_pid = loop {
        match client
            .call_tool(CallToolRequestParams::new("flaky__pid"))
            .await
        {
            Ok(result) => {
                break result.content[0]
                    .as_text()
                    .map(|t| t.text.clone())
                    .unwrap_or_default();
            }
            Err(e) => {
                let text = e.to_string();
                assert!(
                    text.contains("flaky"),
                    "a clear error while it restarts: {text}"
                );
                assert!(
                    Instant::now() < deadline,
                    "the upstream was not restarted: {text}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_ne!(
        first_pid, second_pid,
        "a new process serves after the restart"
    );
    let status = gateway.running.gateway.status();
    assert!(status.iter().all(|s| s.state == "ready"), "{status:?}");

    // The history records the crash, with its reason, and the recovery.
    let events = warrant_proxy::store::UpstreamEvents::new(gateway.running.db.clone());
    let mut states = Vec::new();
    for _ in 0..100 {
        let history = events.of("flaky").await.expect("history");
        states = history
            .iter()
            .map(|e| (e.state.clone(), e.detail.clone()))
            .collect::<Vec<_>>();
        if states.last().is_some_and(|(s, _)| s == "ready") && states.len() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let names: Vec<&str> = states.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, ["ready", "down", "ready"], "{states:?}");
    assert!(
        states[1]
            .1
            .as_deref()
            .is_some_and(|d| d.contains("connection ended")),
        "{states:?}"
    );
    client.cancel().await.expect("close");
    gateway.stop().await;
}

/// The misbehaving upstream over Streamable HTTP (the gateway's direct data path), with
/// the demo server beside it; the guard keeps the server running.
async fn flaky_http(extra: &str) -> (warrant_e2e::ChildGuard, String) {
    let (guard, url) = warrant_e2e::fixture_http("flaky_upstream").await;
    let config = format!(
        "[upstreams.flaky]\nurl = {url:?}\n{extra}\n{}",
        demo_upstream("demo")
    );
    (guard, config)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_never_answers_times_out_and_is_cancelled_upstream() {
    let direct = never_answers(&flaky("call_timeout = \"1s\"\n")).await;
    assert_eq!(direct, 0, "a stdio upstream is reached through rmcp");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_an_upstream_that_never_answers_times_out_and_is_cancelled_upstream() {
    let (_server, config) = flaky_http("call_timeout = \"1s\"\n").await;
    let direct = never_answers(&config).await;
    assert!(direct >= 1, "the call took the direct path ({direct})");
}

/// Returns how many calls took the direct path.
async fn never_answers(config: &str) -> u64 {
    let gateway = TestGateway::start(config, Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    let started = Instant::now();
    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "flaky__hang", "arguments": {}}),
        )
        .await;
    let error = &reply.response(1)["error"];
    assert_eq!(error["code"], -32001, "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("did not answer within 1s")),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    // The same upstream still answers other calls.
    let reply = raw
        .request(
            2,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": "still here"}}),
        )
        .await;
    assert_eq!(
        reply.response(2)["result"]["content"][0]["text"],
        "still here"
    );
    // The hung call was cancelled upstream, not left running there.
    let reply = raw
        .request(
            3,
            "tools/call",
            json!({"name": "flaky__cancellations", "arguments": {}}),
        )
        .await;
    assert_eq!(reply.response(3)["result"]["content"][0]["text"], "1");
    let direct = gateway.running.gateway.direct_calls();
    gateway.stop().await;
    direct
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_flows_back_to_the_caller_with_its_own_token() {
    let direct = progress_flows_back(&flaky("")).await;
    assert_eq!(direct, 0, "a stdio upstream is reached through rmcp");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_progress_flows_back_to_the_caller_with_its_own_token() {
    let (_server, config) = flaky_http("").await;
    let direct = progress_flows_back(&config).await;
    assert!(direct >= 3, "the calls took the direct path ({direct})");
}

/// Returns how many calls took the direct path.
async fn progress_flows_back(config: &str) -> u64 {
    let gateway = TestGateway::start(config, Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    let reply = raw
        .request(1, "tools/call", json!({"name": "flaky__slow", "arguments": {"millis": 300, "steps": 3}, "_meta": {"progressToken": "my-token"}}))
        .await;
    let messages = reply.messages();
    let progress: Vec<_> = messages
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(
        progress.len(),
        3,
        "every step reached the caller on its own stream: {messages:?}"
    );
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "my-token"),
        "{progress:?}"
    );
    assert_eq!(progress[2]["params"]["message"], "step 3 of 3");
    assert_eq!(
        reply.response(1)["result"]["content"][0]["text"],
        "done after 3 steps"
    );

    // Two callers at once each get only their own progress.
    let (a, b) = tokio::join!(
        raw.request(2, "tools/call", json!({"name": "flaky__slow", "arguments": {"millis": 200, "steps": 2}, "_meta": {"progressToken": 7}})),
        raw.request(3, "tools/call", json!({"name": "flaky__slow", "arguments": {"millis": 200, "steps": 4}, "_meta": {"progressToken": "b"}})),
    );
    let tokens = |r: &warrant_e2e::Reply| -> Vec<serde_json::Value> {
        r.messages()
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .map(|m| m["params"]["progressToken"].clone())
            .collect()
    };
    assert_eq!(tokens(&a), vec![json!(7); 2]);
    assert_eq!(tokens(&b), vec![json!("b"); 4]);
    let direct = gateway.running.gateway.direct_calls();
    gateway.stop().await;
    direct
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_an_upstream_that_dies_mid_call_fails_that_call_only() {
    let (_server, config) = flaky_http("").await;
    let direct = dies_mid_call(&config).await;
    assert!(direct >= 1, "the calls took the direct path ({direct})");
}

/// The same through rmcp's HTTP client (the direct path switched off): the broken
/// response stream is given up on quickly, not retried until the call times out.
#[tokio::test(flavor = "multi_thread")]
async fn over_http_without_the_direct_path_an_upstream_that_dies_mid_call_fails_that_call_only() {
    let (_server, config) = flaky_http("direct = false\n").await;
    let started = Instant::now();
    let direct = dies_mid_call(&config).await;
    assert_eq!(direct, 0, "the calls went through rmcp");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

/// Returns how many calls took the direct path.
async fn dies_mid_call(config: &str) -> u64 {
    let gateway = TestGateway::start(config, Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "flaky__crash", "arguments": {"code": 3}}),
        )
        .await;
    let error = &reply.response(1)["error"];
    assert_eq!(error["code"], -32603, "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("upstream \"flaky\" failed")),
        "{error}"
    );
    // The session and the other upstream serve on; the dead one says so.
    let reply = raw
        .request(
            2,
            "tools/call",
            json!({"name": "demo__list_notes", "arguments": {}}),
        )
        .await;
    assert_eq!(
        reply.response(2)["result"]["content"][0]["text"],
        "no notes yet"
    );
    let reply = raw
        .request(
            3,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": "x"}}),
        )
        .await;
    let error = &reply.response(3)["error"];
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("flaky")),
        "{error}"
    );
    let direct = gateway.running.gateway.direct_calls();
    gateway.stop().await;
    direct
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_cannot_start_leaves_the_others_serving() {
    let config = format!(
        "[upstreams.broken]\ncommand = \"/nonexistent/mcp-server\"\nconnect_timeout = \"2s\"\n\n{}",
        demo_upstream("demo")
    );
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let status = gateway.running.gateway.status();
    let broken = status.iter().find(|s| s.name == "broken").expect("listed");
    assert_eq!(broken.state, "down");
    assert!(
        broken
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("cannot start")),
        "{broken:?}"
    );
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-06-18").await;
    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "broken__anything", "arguments": {}}),
        )
        .await;
    let error = &reply.response(1)["error"];
    assert_eq!(error["code"], -32003, "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("upstream \"broken\" is unavailable")),
        "{error}"
    );
    let reply = raw.request(2, "tools/list", json!({})).await;
    assert_eq!(
        reply.response(2)["result"]["tools"]
            .as_array()
            .map(Vec::len),
        Some(5),
        "the demo's tools are listed"
    );
    let ready = reqwest::get(format!("{}/readyz", gateway.base()))
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["upstreams"][0]["state"], "down", "{body}");
    gateway.stop().await;
}

/// Why an upstream is down (its command line here) is for the operator on the machine:
/// `/readyz` names it to a client on loopback, and only the state to anyone else (here
/// a client behind a trusted proxy).
#[tokio::test(flavor = "multi_thread")]
async fn readyz_names_upstream_failures_only_on_loopback() {
    let config = format!(
        "[server]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n\n\
         [upstreams.broken]\ncommand = \"/nonexistent/mcp-server\"\nconnect_timeout = \"2s\"\n\n{}",
        demo_upstream("demo")
    );
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let readyz = |forwarded: Option<&'static str>| {
        let url = format!("{}/readyz", gateway.base());
        async move {
            let mut request = reqwest::Client::new().get(url);
            if let Some(client) = forwarded {
                request = request.header("x-forwarded-for", client);
            }
            let ready = request.send().await.expect("readyz");
            assert_eq!(ready.status(), 200);
            ready.json::<serde_json::Value>().await.expect("json")
        }
    };
    let broken = |body: &serde_json::Value| {
        body["upstreams"]
            .as_array()
            .and_then(|all| all.iter().find(|u| u["name"] == "broken").cloned())
            .unwrap_or_else(|| panic!("broken is listed: {body}"))
    };
    let local = broken(&readyz(None).await);
    assert_eq!(local["state"], "down", "{local}");
    assert!(
        local["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot start")),
        "{local}"
    );
    let remote = broken(&readyz(Some("198.51.100.7")).await);
    assert_eq!(remote["state"], "down", "{remote}");
    assert!(remote.get("reason").is_none(), "{remote}");
    assert!(!remote.to_string().contains("nonexistent"), "{remote}");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn colliding_names_are_refused_at_start() {
    warrant_e2e::init();
    let config = format!(
        "{}prefix = \"\"\n\n{}prefix = \"\"\n",
        demo_upstream("one"),
        demo_upstream("two")
    );
    let dir = tempfile::tempdir().expect("dir");
    let overrides = warrant_proxy::config::Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(dir.path().into()),
        database_url: None,
    };
    let config = warrant_proxy::config::parse(&config, "t", &overrides).expect("valid config");
    let error = warrant_proxy::app::start(config)
        .await
        .err()
        .expect("refused");
    let text = error.to_string();
    assert!(text.contains("names collide"), "{text}");
    assert!(
        text.contains("tool \"read_note\" of upstream \"two\""),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lazy_upstream_starts_on_first_use() {
    let config = format!(
        "{}start = \"lazy\"\n",
        stdio_upstream("flaky", "flaky_upstream", &[])
    );
    let gateway = TestGateway::start(&config, Backend::current()).await;
    assert_eq!(gateway.running.gateway.status()[0].state, "idle");
    let client = connect(&gateway.url(), TestClient::default()).await;
    let tools = client.list_all_tools().await.expect("list");
    assert!(tools.iter().any(|t| t.name == "flaky__echo"), "{tools:?}");
    assert_eq!(gateway.running.gateway.status()[0].state, "ready");
    client.cancel().await.expect("close");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_cancellation_reaches_the_upstream() {
    let direct = cancellation_reaches_upstream(&flaky("")).await;
    assert_eq!(direct, 0, "a stdio upstream is reached through rmcp");
}

#[tokio::test(flavor = "multi_thread")]
async fn over_http_a_client_cancellation_reaches_the_upstream() {
    let (_server, config) = flaky_http("").await;
    let direct = cancellation_reaches_upstream(&config).await;
    assert!(direct >= 1, "the call took the direct path ({direct})");
}

/// Returns how many calls took the direct path.
async fn cancellation_reaches_upstream(config: &str) -> u64 {
    let gateway = TestGateway::start(config, Backend::current()).await;
    let mut raw = Raw::new(&gateway.url());
    raw.initialize("2025-11-25").await;
    let url = gateway.url();
    let session = raw.session.clone().unwrap_or_default();
    let hanging = tokio::spawn(async move {
        let mut other = Raw::new(&url);
        other.session = Some(session);
        other.version = Some("2025-11-25".into());
        other
            .request(
                77,
                "tools/call",
                json!({"name": "flaky__hang", "arguments": {}}),
            )
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": 77, "reason": "the user changed their mind"}});
    let reply = raw.post(cancel.to_string(), &[]).await;
    assert_eq!(reply.status, 202, "{reply:?}");
    let _ = tokio::time::timeout(Duration::from_secs(10), hanging).await;
    let mut count = String::new();
    for _ in 0..50 {
        let reply = raw
            .request(
                2,
                "tools/call",
                json!({"name": "flaky__cancellations", "arguments": {}}),
            )
            .await;
        count = reply.response(2)["result"]["content"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if count == "1" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count, "1", "the upstream saw the cancellation");
    let direct = gateway.running.gateway.direct_calls();
    gateway.stop().await;
    direct
}

#[tokio::test(flavor = "multi_thread")]
async fn list_changes_reach_connected_clients() {
    let (_fixture, url) = warrant_e2e::fixture_http("conformance_fixture").await;
    let config = format!("[upstreams.fx]\nurl = {url:?}\n");
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let handler = TestClient::default();
    let client = connect(&gateway.url(), handler.clone()).await;
    let before = client.list_all_tools().await.expect("list").len();
    client
        .call_tool(CallToolRequestParams::new("fx__test_trigger_tool_change"))
        .await
        .expect("trigger");
    let mut seen = 0;
    for _ in 0..100 {
        seen = handler.seen().tool_list_changed;
        if seen > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        seen > 0,
        "the client heard notifications/tools/list_changed"
    );
    let after = client.list_all_tools().await.expect("list again");
    assert!(after.len() >= before, "{before} -> {}", after.len());
    client.cancel().await.expect("close");
    gateway.stop().await;
}

/// A 2026-07-28-only upstream asks for input with an `InputRequiredResult`; a client of
/// 2025-11-25 cannot read one, so the gateway asks it in its own terms (elicitation,
/// sampling) and retries the call with the answers.
#[tokio::test(flavor = "multi_thread")]
async fn an_older_client_answers_a_stateless_upstreams_questions() {
    let (_fixture, url) = warrant_e2e::fixture_http("conformance_fixture").await;
    let config = format!("[upstreams.fx]\nurl = {url:?}\nprotocol = \"2026-07-28\"\n");
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let handler = TestClient {
        capable: true,
        ..TestClient::default()
    };
    let client = connect(&gateway.url(), handler.clone()).await;
    let text = |r: &rmcp::model::CallToolResult| {
        r.content
            .iter()
            .filter_map(|c| c.as_text())
            .map(|t| t.text.clone())
            .collect::<String>()
    };
    let elicited = client
        .call_tool(CallToolRequestParams::new(
            "fx__test_input_required_result_elicitation",
        ))
        .await
        .expect("elicitation bridged");
    assert_eq!(text(&elicited), "No name provided (action=decline)");
    let sampled = client
        .call_tool(CallToolRequestParams::new(
            "fx__test_input_required_result_sampling",
        ))
        .await
        .expect("sampling bridged");
    assert_eq!(
        text(&sampled),
        "Sampling result: sampled by the test client"
    );
    let seen = handler.seen();
    assert_eq!(
        (seen.elicitations.len(), seen.samplings),
        (1, 1),
        "{seen:?}"
    );
    client.cancel().await.expect("close");

    // The same for prompts/get, with a client that answers.
    let answering = TestClient {
        capable: true,
        elicit_with: Some(json!({"context": "release notes"})),
        ..TestClient::default()
    };
    let client = connect(&gateway.url(), answering).await;
    let prompt = client
        .get_prompt(rmcp::model::GetPromptRequestParams::new(
            "fx__test_input_required_result_prompt",
        ))
        .await
        .expect("prompt input bridged");
    let said = prompt.messages[0].content.as_text().map(|t| t.text.clone());
    assert_eq!(said.as_deref(), Some("Prompt with context: release notes"));
    client.cancel().await.expect("close");

    // A client that cannot answer gets a clear refusal, not a result it cannot read.
    let plain = connect(&gateway.url(), TestClient::default()).await;
    let error = plain
        .call_tool(CallToolRequestParams::new(
            "fx__test_input_required_result_elicitation",
        ))
        .await
        .expect_err("refused");
    assert!(error.to_string().contains("elicitation"), "{error}");
    plain.cancel().await.expect("close");
    gateway.stop().await;
}
