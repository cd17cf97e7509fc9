//! Official MCP clients, unmodified, pointed at Warrant: the TypeScript SDK client and
//! the Python SDK client.

use serde_json::Value;
use warrant_e2e::{
    Backend, TestGateway, demo_upstream, everything_stdio_upstream, node_modules, repo_root,
};

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_client_lists_and_calls_through_warrant() {
    node_modules();
    let config = format!(
        "{}\n{}",
        demo_upstream("demo"),
        everything_stdio_upstream("ev")
    );
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let mut node = tokio::process::Command::new("node");
    node.arg(repo_root().join("tests/node/ts-client.mjs"))
        .arg(gateway.url())
        .arg("ev__get-sum")
        .arg(r#"{"a": 40, "b": 2}"#);
    let report = run_client(node).await;
    assert_eq!(
        report["protocolVersion"], "2025-11-25",
        "the SDK's newest revision was negotiated"
    );
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"demo__send_payment") && tools.contains(&"ev__echo"),
        "{tools:?}"
    );
    assert_eq!(
        report["result"]["content"][0]["text"],
        "The sum of 40 and 2 is 42."
    );
    gateway.stop().await;
}

/// The official Python SDK client (`mcp` 2.x) in its default `auto` mode probes with
/// `server/discover`: against Warrant it speaks 2026-07-28, statelessly, to an upstream
/// (server-everything) that speaks only 2025-11-25.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_speaks_2026_07_28_through_warrant() {
    let config = format!(
        "{}\n{}",
        demo_upstream("demo"),
        everything_stdio_upstream("ev")
    );
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let report = python_client(
        &gateway.url(),
        "auto",
        "ev__get-sum",
        r#"{"a": 1, "b": 41}"#,
    )
    .await;
    assert_eq!(report["protocolVersion"], "2026-07-28", "{report}");
    assert_eq!(report["text"][0], "The sum of 1 and 41 is 42.", "{report}");
    let tools: Vec<&str> = report["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    assert!(tools.contains(&"demo__read_note"), "{tools:?}");
    gateway.stop().await;
}

/// The same client against a Warrant that serves only older revisions: its probe is
/// turned away and it falls back to `initialize`.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_falls_back_when_warrant_serves_older_revisions() {
    let config = format!(
        "[mcp]\nprotocol_versions = [\"2025-06-18\", \"2025-11-25\"]\n\n{}",
        demo_upstream("demo")
    );
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let report = python_client(&gateway.url(), "auto", "demo__list_notes", "{}").await;
    assert_eq!(report["protocolVersion"], "2025-11-25", "{report}");
    assert_eq!(report["text"][0], "no notes yet", "{report}");
    gateway.stop().await;
}

async fn python_client(url: &str, mode: &str, tool: &str, args: &str) -> Value {
    let python = repo_root().join("tests/python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which installs the Python MCP SDK",
        python.display()
    );
    let mut command = tokio::process::Command::new(python);
    command
        .arg(repo_root().join("tests/python/client.py"))
        .args([url, mode, tool, args]);
    run_client(command).await
}

/// Runs a client script (bounded to a minute) and reads the one JSON line it prints;
/// a failure it reports on standard error fails the test.
async fn run_client(mut command: tokio::process::Command) -> Value {
    let output = command.kill_on_drop(true).output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("the client finishes within a minute")
        .expect("the client runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "client failed: {stdout}\n{stderr}");
    assert!(
        !stderr.contains("failed"),
        "the client reported a failure: {stderr}"
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}
