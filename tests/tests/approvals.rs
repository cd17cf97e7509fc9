//! Critical calls need a human, end to end: Warrant in-process with the demo server as
//! the upstream, an agent's token from the real consent screen, the person deciding on
//! the approval page in a scripted browser, a real SMTP server receiving the email.
//!
//! Which tools are critical: the catalog counts every tool nobody reviewed (of an
//! upstream whose annotations nobody trusts) as `critical`, so every demo tool is
//! critical here. For the token and the ceiling to allow them at all, the tests set
//! `[policy] default_ceiling = "critical"` (the person's ceiling reaches critical tools,
//! whose every call then waits for their approval).

use std::time::Duration;

use serde_json::{Value, json};
use warrant_e2e::agent::{Tokens, approve, register_public};
use warrant_e2e::raw::{Raw, Reply};
use warrant_e2e::smtp::{SmtpSink, sign_in};
use warrant_e2e::web::Browser;
use warrant_e2e::{Backend, TestGateway, demo_upstream, fixture_http};
use warrant_idp::users::{NewUser, Role, Status as UserStatus};

const TOOL: &str = "demo__send_payment";
const APPROVAL_REQUIRED: i64 = -32012;
const APPROVAL_REFUSED: i64 = -32013;

fn config(extra: &str) -> String {
    format!(
        "{}\n[policy]\ndefault_ceiling = \"critical\"\n{extra}\n",
        demo_upstream("demo")
    )
}

async fn gateway(extra: &str) -> TestGateway {
    TestGateway::start_protected(&config(extra), Backend::current()).await
}

/// The first admin approves a new agent for every server: their browser and the
/// agent's tokens.
async fn approved_agent(gw: &TestGateway) -> (Browser, Tokens) {
    let agent = warrant_e2e::agent::admin_approves_agent(gw, "Payment Bot").await;
    (agent.browser, agent.tokens)
}

fn payment(to: &str) -> Value {
    json!({"to": to, "amount_cents": 1250, "currency": "eur"})
}

/// A 2026-07-28 `tools/call` that declares URL-mode elicitation, with an optional retry
/// state and input responses.
async fn modern_call(
    gw: &TestGateway,
    token: &str,
    arguments: Value,
    state: Option<&str>,
    responses: Option<Value>,
) -> Reply {
    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(token.to_owned());
    let mut params = json!({
        "name": TOOL, "arguments": arguments,
        "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
            "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "0"}
        }
    });
    if let Some(state) = state {
        params["requestState"] = json!(state);
    }
    if let Some(responses) = responses {
        params["inputResponses"] = responses;
    }
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params});
    raw.post(
        body.to_string(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", TOOL),
        ],
    )
    .await
}

/// A session client of 2025-06-18 that declared no elicitation.
async fn legacy_client(gw: &TestGateway, token: &str) -> Raw {
    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(token.to_owned());
    raw.initialize("2025-06-18").await;
    raw
}

async fn legacy_call(raw: &Raw, id: i64, arguments: Value) -> Value {
    let reply = raw
        .request(
            id,
            "tools/call",
            json!({"name": TOOL, "arguments": arguments}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.response(id)
}

fn text_of(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The approval page's id in an approval URL.
fn id_of(url: &str) -> String {
    url.rsplit('/').next().unwrap_or_default().to_owned()
}

/// The person signed in to `browser` opens the approval page and presses a button.
async fn decide(browser: &Browser, url: &str, decision: &str) {
    let page = browser.get(url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.contains("Payment Bot"),
        "the page names the agent: {}",
        page.body
    );
    assert!(page.contains("send_payment"), "and the tool: {}", page.body);
    assert!(
        page.contains("to: &quot;alice&quot;") || page.contains("to: &#34;alice&#34;"),
        "and the arguments: {}",
        page.body
    );
    let csrf = page.csrf().expect("the approval form carries a CSRF token");
    let done = browser
        .post_form(url, &[("csrf", &csrf), ("decision", decision)])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
}

async fn status_on_page(browser: &Browser, url: &str) -> String {
    let page = browser.get(url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body
        .split("id=\"status\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_owned()
}

/// The input round of a 2026-07-28 answer: the approval URL and the request state.
fn input_round(reply: &Reply) -> (String, String) {
    assert_eq!(reply.status, 200, "{reply:?}");
    let result = &reply.response(7)["result"];
    assert_eq!(result["resultType"], "input_required", "{result}");
    let request = &result["inputRequests"]["warrant-approval"];
    assert_eq!(request["method"], "elicitation/create", "{result}");
    assert_eq!(request["params"]["mode"], "url", "{result}");
    let message = request["params"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("Payment Bot") && message.contains("send_payment"),
        "{message}"
    );
    let url = request["params"]["url"].as_str().expect("url").to_owned();
    let state = result["requestState"].as_str().expect("state").to_owned();
    (url, state)
}

#[tokio::test]
async fn a_legacy_client_is_refused_with_the_url_and_the_approved_retry_passes() {
    let gw = gateway("").await;
    let (browser, tokens) = approved_agent(&gw).await;
    let raw = legacy_client(&gw, &tokens.access).await;

    let refused = legacy_call(&raw, 1, payment("alice")).await;
    let error = &refused["error"];
    assert_eq!(error["code"], APPROVAL_REQUIRED, "{refused}");
    let url = error["data"]["approvalUrl"]
        .as_str()
        .expect("approvalUrl")
        .to_owned();
    assert!(
        url.starts_with(&format!("{}/approvals/", gw.public_url())),
        "{url}"
    );
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&url),
        "the message carries the URL: {message}"
    );

    // Asking again before anyone decided: the same approval, no second one.
    let again = legacy_call(&raw, 2, payment("alice")).await;
    assert_eq!(
        again["error"]["data"]["approvalUrl"],
        url.as_str(),
        "{again}"
    );

    // Listed under "Pending approvals", linked from the account page.
    let account = browser.get("/account").await;
    assert!(account.contains("href=\"/approvals\""), "{}", account.body);
    let list = browser.get("/approvals").await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(
        list.contains(&format!("/approvals/{}", id_of(&url))),
        "{}",
        list.body
    );

    decide(&browser, &url, "once").await;
    assert!(status_on_page(&browser, &url).await.contains("approved"));

    // Other arguments are another call: not approved.
    let other = legacy_call(&raw, 3, payment("mallory")).await;
    assert_eq!(other["error"]["code"], APPROVAL_REQUIRED, "{other}");

    let passed = legacy_call(&raw, 4, payment("alice")).await;
    assert!(text_of(&passed).contains("12.50 EUR to alice"), "{passed}");

    // Once means once.
    let third = legacy_call(&raw, 5, payment("alice")).await;
    assert_eq!(third["error"]["code"], APPROVAL_REQUIRED, "{third}");
    assert_ne!(third["error"]["data"]["approvalUrl"], url.as_str());

    let record = gw
        .running
        .gateway
        .approvals()
        .expect("approvals are on")
        .get(&id_of(&url))
        .await
        .expect("read")
        .expect("the approval");
    let admin = gw
        .running
        .idp
        .users
        .by_email("admin@example.com")
        .await
        .expect("lookup")
        .expect("admin");
    assert_eq!(record.decided_by.as_deref(), Some(admin.id.as_str()));
    assert_eq!(record.method.map(|m| m.as_str()), Some("session"));
    assert!(record.used_at.is_some());
    gw.stop().await;
}

#[tokio::test]
async fn a_2026_client_gets_an_input_round_and_its_retry_reaches_the_upstream() {
    let gw = gateway("").await;
    let (browser, tokens) = approved_agent(&gw).await;

    let first = modern_call(&gw, &tokens.access, payment("alice"), None, None).await;
    let (url, state) = input_round(&first);
    assert!(
        url.starts_with(&format!("{}/approvals/", gw.public_url())),
        "{url}"
    );

    // Retried while pending: after a few seconds, another round with the same state.
    let accepted = json!({"warrant-approval": {"action": "accept"}});
    let pending = modern_call(
        &gw,
        &tokens.access,
        payment("alice"),
        Some(&state),
        Some(accepted.clone()),
    )
    .await;
    let (url2, state2) = input_round(&pending);
    assert_eq!(
        (url2.as_str(), state2.as_str()),
        (url.as_str(), state.as_str())
    );

    // The state is bound to the call: other arguments are refused.
    let other = modern_call(
        &gw,
        &tokens.access,
        payment("mallory"),
        Some(&state),
        Some(accepted.clone()),
    )
    .await;
    assert_eq!(other.response(7)["error"]["code"], -32602, "{other:?}");

    // A made-up state (not an approval's, not a later round of an approved call) does
    // not skip the approval.
    let made_up = modern_call(
        &gw,
        &tokens.access,
        payment("alice"),
        Some("made-up-state"),
        Some(json!({})),
    )
    .await;
    assert_eq!(made_up.response(7)["error"]["code"], -32602, "{made_up:?}");

    decide(&browser, &url, "once").await;
    let done = modern_call(
        &gw,
        &tokens.access,
        payment("alice"),
        Some(&state),
        Some(accepted.clone()),
    )
    .await;
    assert_eq!(done.status, 200, "{done:?}");
    let response = done.response(7);
    assert!(
        text_of(&response).contains("12.50 EUR to alice"),
        "{response}"
    );
    assert_eq!(response["result"]["resultType"], "complete", "{response}");

    // The state is spent: a replay is refused.
    let replay = modern_call(
        &gw,
        &tokens.access,
        payment("alice"),
        Some(&state),
        Some(accepted),
    )
    .await;
    assert_eq!(replay.response(7)["error"]["code"], -32602, "{replay:?}");
    gw.stop().await;
}

#[tokio::test]
async fn a_denied_call_is_refused() {
    let gw = gateway("").await;
    let (browser, tokens) = approved_agent(&gw).await;
    let first = modern_call(&gw, &tokens.access, payment("alice"), None, None).await;
    let (url, state) = input_round(&first);
    decide(&browser, &url, "deny").await;
    assert!(status_on_page(&browser, &url).await.contains("denied"));
    let retry = modern_call(
        &gw,
        &tokens.access,
        payment("alice"),
        Some(&state),
        Some(json!({"warrant-approval": {"action": "accept"}})),
    )
    .await;
    let error = &retry.response(7)["error"];
    assert_eq!(error["code"], APPROVAL_REFUSED, "{error}");
    assert_eq!(error["data"]["status"], "denied", "{error}");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("denied"),
        "{error}"
    );

    // A legacy client retrying the same call: asked anew (a denial is not sticky).
    let raw = legacy_client(&gw, &tokens.access).await;
    let again = legacy_call(&raw, 1, payment("alice")).await;
    assert_eq!(again["error"]["code"], APPROVAL_REQUIRED, "{again}");
    gw.stop().await;
}

#[tokio::test]
async fn an_undecided_call_expires_and_is_refused() {
    let gw = gateway("approval_timeout = \"2s\"").await;
    let (browser, tokens) = approved_agent(&gw).await;
    let raw = legacy_client(&gw, &tokens.access).await;
    let refused = legacy_call(&raw, 1, payment("alice")).await;
    let url = refused["error"]["data"]["approvalUrl"]
        .as_str()
        .expect("approvalUrl")
        .to_owned();
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert!(status_on_page(&browser, &url).await.contains("expired"));
    // Too late to approve.
    let page = browser.get(&url).await;
    assert!(!page.contains("Approve once"), "{}", page.body);
    let csrf = browser.get("/account").await.csrf().expect("csrf");
    let late = browser
        .post_form(&url, &[("csrf", &csrf), ("decision", "once")])
        .await;
    assert_eq!(late.status, 409, "{}", late.body);
    // The call is still not made: a new approval is asked for.
    let again = legacy_call(&raw, 2, payment("alice")).await;
    assert_eq!(again["error"]["code"], APPROVAL_REQUIRED, "{again}");
    assert_ne!(again["error"]["data"]["approvalUrl"], url.as_str());

    // A 2026-07-28 retry of an expired round is refused with the status.
    let first = modern_call(&gw, &tokens.access, payment("bob"), None, None).await;
    let (_, state) = input_round(&first);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let retry = modern_call(
        &gw,
        &tokens.access,
        payment("bob"),
        Some(&state),
        Some(json!({"warrant-approval": {"action": "accept"}})),
    )
    .await;
    let error = &retry.response(7)["error"];
    assert_eq!(error["code"], APPROVAL_REFUSED, "{error}");
    assert_eq!(error["data"]["status"], "expired", "{error}");
    gw.stop().await;
}

#[tokio::test]
async fn an_approval_for_the_rest_of_the_grant_lets_later_calls_through() {
    let gw = gateway("").await;
    let (browser, tokens) = approved_agent(&gw).await;
    let raw = legacy_client(&gw, &tokens.access).await;
    let refused = legacy_call(&raw, 1, payment("alice")).await;
    let url = refused["error"]["data"]["approvalUrl"]
        .as_str()
        .expect("approvalUrl")
        .to_owned();
    decide(&browser, &url, "grant").await;
    for (id, to) in [(2, "alice"), (3, "bob"), (4, "carol")] {
        let passed = legacy_call(&raw, id, payment(to)).await;
        assert!(
            text_of(&passed).contains(&format!("12.50 EUR to {to}")),
            "{passed}"
        );
    }
    // A 2026-07-28 call under the same grant: no round at all.
    let modern = modern_call(&gw, &tokens.access, payment("dave"), None, None).await;
    assert!(
        text_of(&modern.response(7)).contains("12.50 EUR to dave"),
        "{modern:?}"
    );
    // Another critical tool is still asked for.
    let other = raw
        .request(
            9,
            "tools/call",
            json!({"name": "demo__delete_all_notes", "arguments": {}}),
        )
        .await
        .response(9);
    assert_eq!(other["error"]["code"], APPROVAL_REQUIRED, "{other}");
    gw.stop().await;
}

#[tokio::test]
async fn the_approval_email_arrives_and_only_its_person_may_open_it() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink.auth_toml("")).await;
    let (browser, tokens) = approved_agent(&gw).await;
    let raw = legacy_client(&gw, &tokens.access).await;
    let refused = legacy_call(&raw, 1, payment("alice")).await;
    let url = refused["error"]["data"]["approvalUrl"]
        .as_str()
        .expect("approvalUrl")
        .to_owned();

    let mail = sink.wait_for("admin@example.com").await;
    assert!(mail.subject.contains("send_payment"), "{}", mail.subject);
    let link = mail
        .body
        .split_whitespace()
        .find(|w| w.contains("/approvals/"))
        .unwrap_or_else(|| panic!("no approval link in the mail:\n{}", mail.raw))
        .to_owned();
    assert_eq!(link, url);
    assert!(mail.body.contains("Payment Bot"), "{}", mail.body);
    assert!(
        !mail.body.contains("alice"),
        "no arguments in the mail: {}",
        mail.body
    );

    // Someone else, signed in, can neither see nor decide it.
    gw.running
        .idp
        .users
        .create(NewUser {
            email: "mallory@example.com".into(),
            display_name: "Mallory".into(),
            role: Role::Member,
            status: UserStatus::Active,
        })
        .await
        .expect("another user");
    let other = gw.browser();
    sign_in(&other, &sink, "mallory@example.com").await;
    let peek = other.get(&link).await;
    assert_eq!(peek.status, 404, "{}", peek.body);
    assert!(!peek.contains("send_payment"), "{}", peek.body);
    let csrf = other.get("/account").await.csrf().expect("csrf");
    let forged = other
        .post_form(&link, &[("csrf", &csrf), ("decision", "grant")])
        .await;
    assert_eq!(forged.status, 404, "{}", forged.body);
    let mine = other.get("/approvals").await;
    assert!(!mine.contains(&id_of(&url)), "{}", mine.body);
    // Signed out: to the sign-in page, which brings the person back.
    let anonymous = gw.browser().get(&link).await;
    assert_eq!(anonymous.status, 303, "{}", anonymous.body);

    // The link works for its person.
    decide(&browser, &link, "once").await;
    let passed = legacy_call(&raw, 2, payment("alice")).await;
    assert!(text_of(&passed).contains("12.50 EUR to alice"), "{passed}");
    gw.stop().await;
}

/// An rmcp client of the session era that declared URL-mode elicitation: it passes the
/// URL of every URL elicitation on (as a client shows it to its person) and accepts.
#[derive(Clone)]
struct UrlClient {
    urls: tokio::sync::mpsc::UnboundedSender<String>,
    version: rmcp::model::ProtocolVersion,
}

impl rmcp::ClientHandler for UrlClient {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut capabilities = rmcp::model::ClientCapabilities::default();
        capabilities.elicitation = Some(
            rmcp::model::ElicitationCapability::new()
                .with_url(rmcp::model::UrlElicitationCapability::new()),
        );
        rmcp::model::ClientConfig::new(
            capabilities,
            rmcp::model::Implementation::new("url-client", "0"),
        )
        .with_protocol_version(self.version.clone())
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<rmcp::RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        if let rmcp::model::ElicitRequestParams::UrlElicitationParams { url, .. } = request {
            let _ = self.urls.send(url);
        }
        Ok(rmcp::model::ElicitResult::new(
            rmcp::model::ElicitationAction::Accept,
        ))
    }
}

#[tokio::test]
async fn an_older_client_with_url_elicitation_is_asked_and_its_call_waits_for_the_decision() {
    use rmcp::ServiceExt as _;
    let gw = gateway("").await;
    let (browser, tokens) = approved_agent(&gw).await;
    let (tx, mut urls) = tokio::sync::mpsc::unbounded_channel();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            gw.url(),
        )
        .auth_header(tokens.access.clone()),
    );
    let client = UrlClient {
        urls: tx,
        version: rmcp::model::ProtocolVersion::V_2025_11_25,
    }
    .serve(transport)
    .await
    .expect("the client connects");
    let arguments = payment("alice").as_object().cloned().unwrap_or_default();
    let peer = client.peer().clone();
    let call = tokio::spawn(async move {
        peer.call_tool(rmcp::model::CallToolRequestParams::new(TOOL).with_arguments(arguments))
            .await
    });
    let url = tokio::time::timeout(Duration::from_secs(15), urls.recv())
        .await
        .expect("the client is asked within 15 s")
        .expect("a URL");
    assert!(
        url.starts_with(&format!("{}/approvals/", gw.public_url())),
        "{url}"
    );
    // The call waits while the person reads the page.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!call.is_finished(), "the call waits for the decision");
    decide(&browser, &url, "once").await;
    let result = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("the call ends after the decision")
        .expect("the task")
        .expect("the call succeeds");
    let text = serde_json::to_string(&result.content).expect("json");
    assert!(text.contains("12.50 EUR to alice"), "{text}");

    // Denied: the waiting call is refused.
    let peer = client.peer().clone();
    let arguments = payment("bob").as_object().cloned().unwrap_or_default();
    let call = tokio::spawn(async move {
        peer.call_tool(rmcp::model::CallToolRequestParams::new(TOOL).with_arguments(arguments))
            .await
    });
    let url = tokio::time::timeout(Duration::from_secs(15), urls.recv())
        .await
        .expect("asked again")
        .expect("a URL");
    let page = browser.get(&url).await;
    let csrf = page.csrf().expect("csrf");
    let done = browser
        .post_form(&url, &[("csrf", &csrf), ("decision", "deny")])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let refused = tokio::time::timeout(Duration::from_secs(15), call)
        .await
        .expect("the call ends after the decision")
        .expect("the task");
    let error = format!("{refused:?}");
    assert!(error.contains("denied"), "{error}");
    let _ = client.cancel().await;
    gw.stop().await;
}

/// The rmcp SDK's own 2026-07-28 client: its multi round-trip loop shows the person the
/// URL (its elicitation handler), retries with the state, and gets the result once the
/// person approved.
#[tokio::test]
async fn the_rmcp_2026_client_completes_the_rounds_once_approved() {
    use rmcp::ServiceExt as _;
    let gw = gateway("").await;
    let (browser, tokens) = approved_agent(&gw).await;
    let (tx, mut urls) = tokio::sync::mpsc::unbounded_channel();
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            gw.url(),
        )
        .auth_header(tokens.access.clone()),
    );
    let client = UrlClient {
        urls: tx,
        version: rmcp::model::ProtocolVersion::V_2026_07_28,
    }
    .serve(transport)
    .await
    .expect("the client connects");
    let arguments = payment("alice").as_object().cloned().unwrap_or_default();
    let peer = client.peer().clone();
    let call = tokio::spawn(async move {
        peer.call_tool(rmcp::model::CallToolRequestParams::new(TOOL).with_arguments(arguments))
            .await
    });
    let url = tokio::time::timeout(Duration::from_secs(15), urls.recv())
        .await
        .expect("the client is asked within 15 s")
        .expect("a URL");
    decide(&browser, &url, "once").await;
    let result = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the call ends after the decision")
        .expect("the task")
        .expect("the call succeeds");
    let text = serde_json::to_string(&result.content).expect("json");
    assert!(text.contains("12.50 EUR to alice"), "{text}");
    let _ = client.cancel().await;
    gw.stop().await;
}

/// The person confirms with their passkey: the decision is recorded as `passkey`.
#[tokio::test]
async fn a_decision_confirmed_with_a_passkey_is_recorded_as_such() {
    let gw = gateway("").await;
    let (browser, mut device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let client_id = register_public(&gw, "Payment Bot").await;
    let tokens = approve(
        &gw,
        &browser,
        &client_id,
        &[],
        &[("servers", "all"), ("duration", "1h")],
    )
    .await;
    let raw = legacy_client(&gw, &tokens.access).await;
    let refused = legacy_call(&raw, 1, payment("alice")).await;
    let url = refused["error"]["data"]["approvalUrl"]
        .as_str()
        .expect("approvalUrl")
        .to_owned();
    let page = browser.get(&url).await;
    assert!(page.contains("approval-passkey"), "{}", page.body);
    let csrf = page.csrf().expect("csrf");

    // Without the CSRF header: refused.
    let forged = browser
        .post_json(&format!("{url}/passkey/start"), "wrong", &json!({}))
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);

    let start = browser
        .post_json(&format!("{url}/passkey/start"), &csrf, &json!({}))
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let assertion = device
        .sign_in(&gw.public_url(), &warrant_e2e::passkey::json_of(&start))
        .expect("the authenticator signs");
    let done = browser
        .post_json(
            &format!("{url}/passkey/finish"),
            &csrf,
            &json!({"credential": assertion, "decision": "once"}),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(status_on_page(&browser, &url).await.contains("approved"));
    let page = browser.get(&url).await;
    assert!(page.contains("(passkey)"), "{}", page.body);
    let record = gw
        .running
        .gateway
        .approvals()
        .expect("approvals are on")
        .get(&id_of(&url))
        .await
        .expect("read")
        .expect("the approval");
    assert_eq!(record.method.map(|m| m.as_str()), Some("passkey"));

    let passed = legacy_call(&raw, 2, payment("alice")).await;
    assert!(text_of(&passed).contains("12.50 EUR to alice"), "{passed}");
    gw.stop().await;
}

/// A Streamable HTTP upstream, whose calls normally take the direct data path: a
/// critical call never does (the edge does not authorize it), it waits for the approval
/// and then goes the rmcp way.
#[tokio::test]
async fn a_critical_call_never_takes_the_direct_path() {
    let (_fixture, url) = fixture_http("conformance_fixture").await;
    let toml = format!("[upstreams.fx]\nurl = {url:?}\n[policy]\ndefault_ceiling = \"critical\"\n");
    let gw = TestGateway::start_protected(&toml, Backend::current()).await;
    let (browser, tokens) = approved_agent(&gw).await;
    let raw = legacy_client(&gw, &tokens.access).await;
    let call = |id: i64| {
        raw.request(
            id,
            "tools/call",
            json!({"name": "fx__test_simple_text", "arguments": {}}),
        )
    };
    let refused = call(1).await.response(1);
    assert_eq!(refused["error"]["code"], APPROVAL_REQUIRED, "{refused}");
    let url = refused["error"]["data"]["approvalUrl"]
        .as_str()
        .expect("approvalUrl")
        .to_owned();
    let page = browser.get(&url).await;
    let csrf = page.csrf().expect("csrf");
    let done = browser
        .post_form(&url, &[("csrf", &csrf), ("decision", "once")])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let passed = call(2).await.response(2);
    assert!(
        text_of(&passed).contains("simple text response"),
        "{passed}"
    );
    assert_eq!(
        gw.running.gateway.direct_calls(),
        0,
        "no critical call on the direct path"
    );

    // The control: reviewed as low, the same call takes the direct path at once.
    let admin = gw
        .running
        .idp
        .users
        .by_email("admin@example.com")
        .await
        .expect("lookup")
        .expect("admin");
    let now = warrant_e2e::agent::unix_now();
    assert!(
        gw.running
            .catalog
            .review(
                "fx",
                "test_simple_text",
                Some(warrant_consent::token::Risk::Low),
                &admin.id,
                now
            )
            .await
            .expect("review"),
        "the tool is in the catalog"
    );
    let direct = call(3).await.response(3);
    assert!(
        text_of(&direct).contains("simple text response"),
        "{direct}"
    );
    assert_eq!(gw.running.gateway.direct_calls(), 1);
    gw.stop().await;
}
