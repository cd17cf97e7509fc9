//! First contact, as a new user meets Warrant: `warrant serve` with the embedded
//! defaults prints a URL and client snippets; the official SDK clients, given exactly
//! what it printed, sign in through the consent screen and call a tool. A client given
//! the other loopback name of the same listener works too, and `warrant check` says
//! what a configuration without upstreams and SSO groups without their scope mean.

use std::time::Duration;

use serde_json::Value;
use warrant_e2e::agent::{AgentProcess, consent_to, deliver};
use warrant_e2e::served::Served;
use warrant_e2e::web::Browser;
use warrant_e2e::{node_modules, python, repo_root, workspace_bin};

const WITHIN: Duration = Duration::from_secs(60);

/// The JSON object printed after `label` on one line of `text`.
fn snippet_json(text: &str, label: &str) -> Value {
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no {label:?} snippet in:\n{text}"));
    let json = &line[line.find('{').unwrap_or_else(|| panic!("JSON in {line}"))..];
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Runs an SDK client that prints `AUTHORIZE <url>`, approves as the signed-in person,
/// carries the code back, and returns its `RESULT` line.
async fn sign_in_and_run(
    served: &Served,
    browser: &Browser,
    command: tokio::process::Command,
) -> Value {
    let mut agent = AgentProcess::spawn(command);
    let authorize = agent.line_starting("AUTHORIZE ", WITHIN).await;
    assert!(
        authorize.starts_with(&format!("{}/authorize?", served.origin)),
        "{authorize}"
    );
    let location = consent_to(
        browser,
        &authorize,
        &[("servers", "all"), ("duration", "1h")],
    )
    .await;
    let (status, body) = deliver(&location).await;
    assert_eq!(status, 200, "the agent's callback took the code: {body}");
    let result = agent.line_starting("RESULT ", WITHIN).await;
    let (code, output) = agent.finish(WITHIN).await;
    assert_eq!(code, Some(0), "{output}");
    serde_json::from_str(&result).unwrap_or_else(|e| panic!("{e}: {result}"))
}

fn ts_client(url: &str) -> tokio::process::Command {
    node_modules();
    let mut node = tokio::process::Command::new("node");
    node.arg(repo_root().join("tests/node/oauth_client.mjs"))
        .args([url, "demo__list_notes", "{}"]);
    node
}

/// The banner's URL is the resource clients get tokens for, and every snippet carries it
/// in the format its client reads; the TypeScript SDK client (what Claude Code, VS Code
/// and Cursor are built on), given the URL exactly as printed, signs in and calls a tool.
#[tokio::test(flavor = "multi_thread")]
async fn the_printed_url_and_snippets_work_in_the_typescript_sdk_client() {
    let served = Served::start().await;
    assert_eq!(
        served.url,
        format!("http://localhost:{}/mcp", served.port),
        "the banner prints the URL clients must use (the OAuth resource)"
    );
    let text = served.stderr_with("VS Code").await;
    let claude = text
        .lines()
        .find_map(|l| l.split("claude mcp add --transport http warrant ").nth(1))
        .unwrap_or_else(|| panic!("no Claude Code snippet in:\n{text}"));
    assert_eq!(claude.trim(), served.url, "{text}");
    let vscode = snippet_json(&text, "VS Code");
    assert_eq!(
        vscode["servers"]["warrant"]["url"], served.url,
        "VS Code reads `servers`: {vscode}"
    );
    assert_eq!(vscode["servers"]["warrant"]["type"], "http", "{vscode}");
    assert!(vscode.get("mcpServers").is_none(), "{vscode}");
    let cursor = snippet_json(&text, "Cursor");
    assert_eq!(
        cursor["mcpServers"]["warrant"]["url"], served.url,
        "{cursor}"
    );

    let browser = served.first_admin().await;
    let report = sign_in_and_run(&served, &browser, ts_client(claude.trim())).await;
    assert!(
        report["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|n| n == "demo__list_notes")),
        "{report}"
    );
    assert_eq!(report["result"]["isError"], false, "{report}");
}

/// A person who pastes the listener's other loopback name (`127.0.0.1` for `localhost`)
/// is not refused by the SDK's resource check: the metadata names the resource as the
/// client reached it, and the token is issued for Warrant's canonical resource.
#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_client_works_with_the_other_loopback_name() {
    let served = Served::start().await;
    let other = format!("http://127.0.0.1:{}/mcp", served.port);
    let browser = served.first_admin().await;
    let report = sign_in_and_run(&served, &browser, ts_client(&other)).await;
    assert_eq!(report["result"]["isError"], false, "{report}");
}

/// The Python SDK client, given the printed URL, signs in and calls a tool.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_works_with_the_printed_url() {
    let served = Served::start().await;
    let browser = served.first_admin().await;
    let mut command = tokio::process::Command::new(python());
    command
        .arg(repo_root().join("tests/python/oauth_client.py"))
        .args([&served.url, "auto", "demo__list_notes", "{}"]);
    let report = sign_in_and_run(&served, &browser, command).await;
    assert_eq!(report["isError"], false, "{report}");
}

fn check(toml: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("warrant.toml");
    std::fs::write(&path, toml).expect("write");
    let output = std::process::Command::new(workspace_bin("warrant"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    (
        output.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// A configuration file replaces the embedded defaults, the demo with them: `warrant
/// check` says that agents will see no tools and how to keep the demo.
#[test]
fn check_explains_a_configuration_without_upstreams() {
    let (code, text) = check("[server]\nlisten = \"127.0.0.1:8080\"\n");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("valid, but no upstreams"), "{text}");
    assert!(text.contains("agents will see no tools"), "{text}");
    assert!(text.contains("[upstreams.demo]"), "{text}");
    assert!(text.contains("args = [\"demo-server\"]"), "{text}");
    assert!(!text.contains("(0 upstreams: )"), "{text}");
}

/// `admin_groups` without the `groups` scope is valid, but `warrant check` warns that
/// most providers then send no groups (everyone would sign in as a member).
#[test]
fn check_warns_of_admin_groups_without_the_groups_scope() {
    let provider = "[upstreams.demo]\ncommand = \"warrant\"\nargs = [\"demo-server\"]\n\n\
                    [auth.oidc.corp]\nissuer = \"https://login.example.com\"\n\
                    client_id = \"warrant\"\nadmin_groups = [\"warrant-admins\"]\n";
    let (code, text) = check(provider);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains("warning: auth.oidc.corp.scopes: admin_groups is set but the scopes do not include \"groups\""),
        "{text}"
    );
    assert!(text.contains("every person signs in as a member"), "{text}");

    let (code, text) = check(&format!(
        "{provider}scopes = [\"email\", \"profile\", \"groups\"]\n"
    ));
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("warning"), "{text}");
}
