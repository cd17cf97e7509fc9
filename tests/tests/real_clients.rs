//! Official MCP clients, unmodified, pointed at Warrant: the TypeScript SDK client.

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
    let output = tokio::process::Command::new("node")
        .arg(repo_root().join("tests/node/ts-client.mjs"))
        .arg(gateway.url())
        .arg("ev__get-sum")
        .arg(r#"{"a": 40, "b": 2}"#)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("the client finishes within a minute")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
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
