//! The reference server, `@modelcontextprotocol/server-everything`, behind Warrant over
//! stdio and over Streamable HTTP: tools, prompts and resources routed and answered, and
//! the server's own requests (elicitation, sampling) reaching the human's client.

use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
use rmcp::service::RunningService;
use serde_json::json;
use warrant_e2e::{
    Backend, TestClient, TestGateway, connect, everything_http, everything_sse,
    everything_stdio_upstream,
};

fn args(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn first_text(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.clone())
        .collect::<Vec<_>>()
        .join("\n")
}

/// What both transports must show.
async fn exercise(client: &RunningService<RoleClient, TestClient>, handler: &TestClient) {
    let tools = client.list_all_tools().await.expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(tools.len() >= 13, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with("ev__")), "{names:?}");
    for expected in [
        "ev__echo",
        "ev__get-sum",
        "ev__trigger-elicitation-request",
        "ev__trigger-sampling-request",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }

    let echo = client
        .call_tool(
            CallToolRequestParams::new("ev__echo")
                .with_arguments(args(json!({"message": "through warrant"}))),
        )
        .await
        .expect("echo");
    assert_eq!(first_text(&echo), "Echo: through warrant");
    let sum = client
        .call_tool(
            CallToolRequestParams::new("ev__get-sum").with_arguments(args(json!({"a": 2, "b": 3}))),
        )
        .await
        .expect("get-sum");
    assert_eq!(first_text(&sum), "The sum of 2 and 3 is 5.");

    // The server asks the human (elicitation) and the model (sampling) through the gateway.
    let elicit = client
        .call_tool(CallToolRequestParams::new(
            "ev__trigger-elicitation-request",
        ))
        .await
        .expect("elicitation round trip");
    assert!(
        first_text(&elicit).contains("declined"),
        "{}",
        first_text(&elicit)
    );
    let sample = client
        .call_tool(
            CallToolRequestParams::new("ev__trigger-sampling-request")
                .with_arguments(args(json!({"prompt": "hi"}))),
        )
        .await
        .expect("sampling round trip");
    assert!(
        first_text(&sample).contains("sampled by the test client"),
        "{}",
        first_text(&sample)
    );
    let seen = handler.seen();
    assert_eq!(seen.elicitations.len(), 1, "{seen:?}");
    assert_eq!(seen.samplings, 1, "{seen:?}");

    // Prompts are namespaced; resources keep their URIs.
    let prompts = client.list_all_prompts().await.expect("prompts/list");
    let simple = prompts
        .iter()
        .find(|p| p.name == "ev__simple-prompt")
        .expect("ev__simple-prompt");
    let got = client
        .get_prompt(GetPromptRequestParams::new(simple.name.clone()))
        .await
        .expect("prompts/get");
    assert!(!got.messages.is_empty());
    let resources = client.list_all_resources().await.expect("resources/list");
    let first = resources.first().expect("at least one resource");
    let read = client
        .read_resource(ReadResourceRequestParams::new(first.uri.clone()))
        .await
        .expect("resources/read");
    assert!(!read.contents.is_empty());
    let templates = client
        .list_all_resource_templates()
        .await
        .expect("templates");
    assert!(!templates.is_empty());
}

/// Connects a client that can answer elicitation and sampling, and exercises it.
async fn exercise_through(gateway: &TestGateway) {
    let handler = TestClient {
        capable: true,
        ..TestClient::default()
    };
    let client = connect(&gateway.url(), handler.clone()).await;
    exercise(&client, &handler).await;
    client.cancel().await.expect("close");
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_over_stdio() {
    let gateway = TestGateway::start(&everything_stdio_upstream("ev"), Backend::current()).await;
    exercise_through(&gateway).await;
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_over_streamable_http() {
    let (_server, url) = everything_http().await;
    let gateway = TestGateway::start(
        &format!("[upstreams.ev]\nurl = {url:?}\n"),
        Backend::current(),
    )
    .await;
    exercise_through(&gateway).await;
    // The elicitation and sampling round trips above crossed the direct data path.
    assert!(
        gateway.running.gateway.direct_calls() >= 4,
        "{}",
        gateway.running.gateway.direct_calls()
    );
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn server_everything_over_legacy_http_sse() {
    let (_server, url) = everything_sse().await;
    let gateway = TestGateway::start(
        &format!("[upstreams.ev]\ntype = \"sse\"\nurl = {url:?}\n"),
        Backend::current(),
    )
    .await;
    exercise_through(&gateway).await;
    assert_eq!(gateway.running.gateway.status()[0].transport, "sse");
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_the_capability_gets_a_clear_refusal() {
    let gateway = TestGateway::start(&everything_stdio_upstream("ev"), Backend::current()).await;
    let client = connect(&gateway.url(), TestClient::default()).await;
    let outcome = client
        .call_tool(CallToolRequestParams::new(
            "ev__trigger-elicitation-request",
        ))
        .await;
    let text = match outcome {
        Ok(result) => first_text(&result),
        Err(e) => e.to_string(),
    };
    assert!(
        text.contains("did not declare the elicitation capability"),
        "{text}"
    );
    client.cancel().await.expect("close");
    gateway.stop().await;
}

/// A 2026-07-28 request to server-everything, which speaks only up to 2025-11-25: the
/// gateway finds that out and bridges the stateless request onto its legacy session.
#[tokio::test(flavor = "multi_thread")]
async fn a_2026_client_reaches_an_upstream_that_predates_it() {
    let gateway = TestGateway::start(&everything_stdio_upstream("ev"), Backend::current()).await;
    let raw = warrant_e2e::Raw::new(&gateway.url());
    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "modern", "version": "0"}
    });
    let headers = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "ev__get-sum"),
    ];
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "ev__get-sum", "arguments": {"a": 1, "b": 2}, "_meta": meta}});
    let reply = raw.post(body.to_string(), &headers).await;
    let response = reply.response(1);
    assert_eq!(
        response["result"]["content"][0]["text"], "The sum of 1 and 2 is 3.",
        "{reply:?}"
    );
    assert_eq!(
        response["result"]["resultType"], "complete",
        "2026-07-28 results carry resultType"
    );
    let status = gateway.running.gateway.status();
    assert_eq!(
        status[0].protocol.as_deref(),
        Some("2025-11-25"),
        "{status:?}"
    );
    gateway.stop().await;
}
