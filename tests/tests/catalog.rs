//! The tool catalog end to end: risk classes as the per-call decision sees them (an
//! unreviewed tool is `critical`; an admin's review or trusted annotations set the
//! class), and rug-pull protection (a tool whose upstream changes its definition is
//! quarantined — not listed, calls refused — until the upstream reverts or an admin
//! approves the new version on the tool's page).

use std::time::Duration;

use serde_json::{Value, json};
use warrant_e2e::agent::{register_public, token_for_grant_up_to};
use warrant_e2e::raw::{Raw, Reply};
use warrant_e2e::web::{Browser, Page};
use warrant_e2e::{Backend, TestGateway, demo_upstream, stdio_upstream};

/// A stateless (2026-07-28) `tools/call`, with `token` when given.
async fn call(gw: &TestGateway, token: Option<&str>, tool: &str, arguments: Value) -> Reply {
    warrant_e2e::raw::modern_call(&gw.url(), token, tool, arguments).await
}

/// The tool names a stateless `tools/list` shows.
async fn listed(gw: &TestGateway, token: Option<&str>) -> Vec<String> {
    warrant_e2e::raw::modern_tool_names(&gw.url(), token).await
}

fn text_of(reply: &Reply) -> String {
    reply.response(7)["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Polls `check` for up to five seconds.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts a form of the admin pages with the page's CSRF token.
async fn submit(browser: &Browser, page: &Page, action: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.csrf().expect("the page carries a CSRF token");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    browser.post_form(action, &form).await
}

async fn admin(gw: &TestGateway) -> (Browser, String) {
    warrant_e2e::agent::first_admin_signed_in(gw).await
}

#[tokio::test]
async fn unreviewed_tools_are_critical_until_an_admin_reviews_them_or_trusts_annotations() {
    let gw = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    let (browser, user) = admin(&gw).await;
    let client = register_public(&gw, "Agent").await;
    let resource = format!("{}/mcp", gw.public_url());
    // The person allowed every demo tool up to `high`.
    let tokens = token_for_grant_up_to(
        &gw,
        &user,
        &client,
        &resource,
        &["demo.*"],
        &[],
        Some("high"),
    )
    .await;
    let token = Some(tokens.access.as_str());

    // Nobody reviewed anything and the annotations are not trusted: all critical, above
    // the person's ceiling (`high`) as well as the grant's limit, so no step-up (more
    // consent cannot help): the ceiling's JSON-RPC refusal.
    let reply = call(&gw, token, "demo__list_notes", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let error = &reply.response(7)["error"];
    assert_eq!(error["code"], -32010, "{reply:?}");
    let message = error["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("critical"), "{message}");
    assert!(message.contains("ceiling"), "{message}");
    assert!(listed(&gw, token).await.is_empty(), "nothing within `high`");

    // The admin pages show it.
    let servers = browser.get("/admin/servers").await;
    assert_eq!(servers.status, 200, "{}", servers.body);
    assert!(
        servers.contains("href=\"/admin/servers/demo\""),
        "{}",
        servers.body
    );
    let server = browser.get("/admin/servers/demo").await;
    assert_eq!(server.status, 200, "{}", server.body);
    assert!(server.contains("list_notes"), "{}", server.body);
    assert!(
        server.contains("risk-critical\">critical"),
        "{}",
        server.body
    );

    // The admin reviews list_notes as medium: the next call goes through.
    let page = browser.get("/admin/servers/demo/tools/list_notes").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.contains("Suggested by its annotations"),
        "{}",
        page.body
    );
    let done = submit(
        &browser,
        &page,
        "/admin/servers/demo/tools/list_notes/review",
        &[("risk", "medium")],
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let reply = call(&gw, token, "demo__list_notes", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(listed(&gw, token).await, ["demo__list_notes"]);
    let page = browser.get("/admin/servers/demo/tools/list_notes").await;
    assert!(
        page.contains("admin@example.com"),
        "reviewed by: {}",
        page.body
    );

    // A form without the CSRF token changes nothing.
    let forged = browser
        .post_form(
            "/admin/servers/demo/tools/list_notes/review",
            &[("risk", "critical")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let forged = browser
        .post_form("/admin/servers/demo/trust", &[("trust", "on")])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_eq!(
        call(&gw, token, "demo__list_notes", json!({})).await.status,
        200
    );

    // Trusting the annotations: the suggested classes apply (read-only low,
    // destructive high), the review still wins.
    let page = browser.get("/admin/servers").await;
    let done = submit(
        &browser,
        &page,
        "/admin/servers/demo/trust",
        &[("trust", "on")],
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(
        listed(&gw, token).await,
        [
            "demo__delete_all_notes",
            "demo__list_notes",
            "demo__read_note",
            "demo__send_payment",
            "demo__write_note"
        ]
    );
    let reply = call(&gw, token, "demo__read_note", json!({"title": "none"})).await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // A review above the grant's `high` takes the tool away again.
    let page = browser.get("/admin/servers/demo/tools/send_payment").await;
    assert!(
        page.contains("risk-high\">high"),
        "suggested: {}",
        page.body
    );
    let done = submit(
        &browser,
        &page,
        "/admin/servers/demo/tools/send_payment/review",
        &[("risk", "critical")],
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let payment = json!({"to": "alice", "amount_cents": 100, "currency": "eur"});
    let reply = call(&gw, token, "demo__send_payment", payment).await;
    assert_eq!(reply.response(7)["error"]["code"], -32010, "{reply:?}");
    assert!(
        !listed(&gw, token)
            .await
            .contains(&"demo__send_payment".to_owned())
    );

    // Not an admin's page for everyone, and a refusal in plain words for a bad class.
    let page = browser.get("/admin/servers/demo/tools/send_payment").await;
    let bad = submit(
        &browser,
        &page,
        "/admin/servers/demo/tools/send_payment/review",
        &[("risk", "extreme")],
    )
    .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(
        bad.contains("Choose low, medium, high, critical"),
        "{}",
        bad.body
    );
    let stranger = gw.browser().get("/admin/servers").await;
    assert_ne!(stranger.status, 200);
    gw.stop().await;
}

fn flaky() -> String {
    format!(
        "{}protocol = \"2025-11-25\"\n",
        stdio_upstream("flaky", "flaky_upstream", &[])
    )
}

/// The JSON-RPC error of a refused call: its code and message.
fn error_of(reply: &Reply) -> (i64, String) {
    let error = &reply.response(7)["error"];
    (
        error["code"].as_i64().unwrap_or_default(),
        error["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn a_changed_tool_is_quarantined_until_the_upstream_reverts_or_an_admin_approves_it() {
    let gw = TestGateway::start_protected(&flaky(), Backend::current()).await;
    let (browser, user) = admin(&gw).await;
    let client = register_public(&gw, "Agent").await;
    let resource = format!("{}/mcp", gw.public_url());
    let tokens =
        token_for_grant_up_to(&gw, &user, &client, &resource, &["flaky.*"], &[], None).await;
    let token = Some(tokens.access.as_str());
    let echo = || call(&gw, token, "flaky__echo", json!({"message": "hi"}));
    // Its tools carry no annotations: trusted, they are medium (else critical, above
    // the default ceiling).
    let page = browser.get("/admin/servers").await;
    let done = submit(
        &browser,
        &page,
        "/admin/servers/flaky/trust",
        &[("trust", "on")],
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);

    let reply = echo().await;
    assert_eq!(text_of(&reply), "hi", "{reply:?}");

    // The upstream changes echo's description: echo is quarantined.
    let reply = call(&gw, token, "flaky__rug_pull", json!({})).await;
    assert_eq!(text_of(&reply), "pulled", "{reply:?}");
    eventually("echo leaves the list", || async {
        !listed(&gw, token).await.contains(&"flaky__echo".to_owned())
    })
    .await;
    let reply = echo().await;
    let (code, message) = error_of(&reply);
    assert_eq!(code, -32020, "{message}");
    assert!(
        message.contains("quarantined") && message.contains("admin"),
        "{message}"
    );
    assert!(listed(&gw, token).await.contains(&"flaky__pid".to_owned()));

    // A session of an older revision is refused the same way.
    let mut raw = Raw::new(&gw.url());
    raw.bearer = tokens.access.clone().into();
    raw.initialize("2025-06-18").await;
    let reply = raw
        .request(
            7,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": "hi"}}),
        )
        .await;
    assert_eq!(error_of(&reply).0, -32020, "{reply:?}");

    // The admin sees it flagged, with the change.
    eventually("the catalog flags it", || async {
        browser
            .get("/admin/servers/flaky")
            .await
            .contains("<strong>quarantined</strong>")
    })
    .await;
    let page = browser.get("/admin/servers/flaky/tools/echo").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains("Quarantined since"), "{}", page.body);
    assert!(page.contains("What changed"), "{}", page.body);
    assert!(
        page.contains("id_ed25519"),
        "the new description: {}",
        page.body
    );
    assert!(
        page.contains("Echo the message back."),
        "the old one: {}",
        page.body
    );

    // The upstream goes back to the approved definition: out of quarantine, no admin
    // needed.
    let reply = call(&gw, token, "flaky__rug_pull", json!({})).await;
    assert_eq!(text_of(&reply), "restored", "{reply:?}");
    eventually("echo is back", || async {
        listed(&gw, token).await.contains(&"flaky__echo".to_owned())
    })
    .await;
    assert_eq!(text_of(&echo().await), "hi");

    // Changed again; this time the admin approves the new version on its page.
    let reply = call(&gw, token, "flaky__rug_pull", json!({})).await;
    assert_eq!(text_of(&reply), "pulled", "{reply:?}");
    eventually("echo is quarantined again", || async {
        error_of(&echo().await).0 == -32020
    })
    .await;
    eventually("the page offers the approval", || async {
        browser
            .get("/admin/servers/flaky/tools/echo")
            .await
            .contains("Approve this version")
    })
    .await;
    let page = browser.get("/admin/servers/flaky/tools/echo").await;
    let hash = page
        .body
        .split("name=\"hash\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the approval form names the version")
        .to_owned();
    // An approval of another version is refused in plain words.
    let stale = submit(
        &browser,
        &page,
        "/admin/servers/flaky/tools/echo/approve",
        &[("hash", &"0".repeat(64))],
    )
    .await;
    assert_eq!(stale.status, 400, "{}", stale.body);
    assert!(stale.contains("changed this tool again"), "{}", stale.body);
    let done = submit(
        &browser,
        &page,
        "/admin/servers/flaky/tools/echo/approve",
        &[("hash", &hash)],
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);
    let reply = echo().await;
    assert_eq!(
        text_of(&reply),
        "hi",
        "approved: the call works at once: {reply:?}"
    );
    assert!(listed(&gw, token).await.contains(&"flaky__echo".to_owned()));
    let page = browser.get("/admin/servers/flaky/tools/echo").await;
    assert!(!page.contains("Quarantined since"), "{}", page.body);
    assert!(
        page.contains("approved by admin@example.com"),
        "{}",
        page.body
    );
    gw.stop().await;
}

#[tokio::test]
async fn quarantine_applies_without_tokens_too() {
    let gw = TestGateway::start(&flaky(), Backend::current()).await;
    let reply = call(&gw, None, "flaky__rug_pull", json!({})).await;
    assert_eq!(text_of(&reply), "pulled", "{reply:?}");
    eventually("echo is quarantined", || async {
        error_of(&call(&gw, None, "flaky__echo", json!({"message": "hi"})).await).0 == -32020
    })
    .await;
    assert!(!listed(&gw, None).await.contains(&"flaky__echo".to_owned()));
    gw.stop().await;
}

/// Connected clients hear `notifications/tools/list_changed` when an admin's decision
/// changes a class they could see — not when nothing they see changes.
#[tokio::test]
async fn a_class_change_tells_connected_clients() {
    use warrant_consent::token::Risk;
    use warrant_e2e::{TestClient, connect};

    let gw = TestGateway::start(&demo_upstream("demo"), Backend::current()).await;
    let catalog = gw.running.catalog.clone();
    eventually("the catalog records the demo tools", || async {
        catalog
            .catalog()
            .tools_of("demo")
            .await
            .is_ok_and(|t| t.len() == 5)
    })
    .await;
    let handler = TestClient::default();
    let client = connect(&gw.url(), handler.clone()).await;
    assert_eq!(client.list_all_tools().await.expect("list").len(), 5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = handler.seen().tool_list_changed;

    let now = warrant_e2e::agent::unix_now();
    catalog
        .review(
            "demo",
            "list_notes",
            Some(Risk::Medium),
            "admin@example.com",
            now,
        )
        .await
        .expect("review");
    eventually("the client hears of the new class", || async {
        handler.seen().tool_list_changed > before
    })
    .await;
    // The same class again changes nothing anyone sees.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard = handler.seen().tool_list_changed;
    catalog
        .review(
            "demo",
            "list_notes",
            Some(Risk::Medium),
            "admin@example.com",
            now,
        )
        .await
        .expect("review again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(handler.seen().tool_list_changed, heard);

    catalog
        .set_trusted("demo", Some("admin@example.com"), now)
        .await
        .expect("trust");
    eventually("the client hears of the trusted annotations", || async {
        handler.seen().tool_list_changed > heard
    })
    .await;
    client.cancel().await.expect("close");
    gw.stop().await;
}

/// Over Streamable HTTP a session's calls take the direct data path; a quarantined tool
/// is refused there too (the direct path only takes routed tools, the handler answers).
#[tokio::test(flavor = "multi_thread")]
async fn the_direct_path_refuses_a_quarantined_tool() {
    let (_upstream, url) = warrant_e2e::fixture_http("flaky_upstream").await;
    let config = format!("[upstreams.flaky]\nurl = {url:?}\n");
    let gw = TestGateway::start(&config, Backend::current()).await;
    let mut raw = Raw::new(&gw.url());
    raw.initialize("2025-11-25").await;
    let echo = json!({"name": "flaky__echo", "arguments": {"message": "hi"}});
    let direct = gw.running.gateway.direct_calls();
    let reply = raw.request(7, "tools/call", echo.clone()).await;
    assert_eq!(text_of(&reply), "hi", "{reply:?}");
    assert!(
        gw.running.gateway.direct_calls() > direct,
        "the call took the direct path"
    );
    let reply = raw
        .request(
            7,
            "tools/call",
            json!({"name": "flaky__rug_pull", "arguments": {}}),
        )
        .await;
    assert_eq!(text_of(&reply), "pulled", "{reply:?}");
    eventually("echo is quarantined on the direct path too", || async {
        error_of(&raw.request(7, "tools/call", echo.clone()).await).0 == -32020
    })
    .await;
    gw.stop().await;
}

/// A stateless (2026-07-28) request of `method` with id 7 naming `name` (the
/// `Mcp-Name` header), with `token`.
async fn modern_request(
    gw: &TestGateway,
    token: &str,
    method: &str,
    name: &str,
    params: Value,
) -> Reply {
    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(token.to_owned());
    let mut params = params;
    params["_meta"] = warrant_e2e::raw::modern_meta();
    let body = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    raw.post(
        body.to_string(),
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", method),
            ("mcp-name", name),
        ],
    )
    .await
}

/// The `field` (`name`, `uriTemplate`) of every item of a list result's `key`.
fn names_in(reply: &Reply, key: &str, field: &str) -> Vec<String> {
    reply.response(7)["result"][key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i[field].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Approves the quarantined version shown on an admin page (`page_path`), first
/// checking that an approval of another version is refused in plain words.
async fn approve_on_page(browser: &Browser, page_path: &str, what: &str) {
    let page = browser.get(page_path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let hash = page
        .body
        .split("name=\"hash\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the approval form names the version")
        .to_owned();
    let action = format!("{page_path}/approve");
    let stale = submit(browser, &page, &action, &[("hash", &"0".repeat(64))]).await;
    assert_eq!(stale.status, 400, "{}", stale.body);
    assert!(
        stale.contains(&format!("changed this {what} again")),
        "{}",
        stale.body
    );
    let done = submit(browser, &page, &action, &[("hash", &hash)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
}

/// Rug-pull protection for prompts and resource templates: the upstream changes the
/// description of its prompt and of its resource template; the prompt leaves
/// prompts/list and prompts/get is refused (-32020, naming it), the template leaves
/// resources/templates/list and a read of a URI only it matches is refused, for
/// sessions and stateless clients alike; the admin sees each change on its page and
/// approves it (a form POST with the CSRF token), and each is back at once.
#[tokio::test]
async fn a_changed_prompt_or_template_is_quarantined_until_an_admin_approves_it() {
    use warrant_consent::catalog::EntryKind;

    let gw = TestGateway::start_protected(&flaky(), Backend::current()).await;
    let (browser, user) = admin(&gw).await;
    let client = register_public(&gw, "Agent").await;
    let resource = format!("{}/mcp", gw.public_url());
    let tokens =
        token_for_grant_up_to(&gw, &user, &client, &resource, &["flaky.*"], &[], None).await;
    let token = tokens.access.as_str();
    // Its tools carry no annotations: trusted, `prompt_pull` is medium (else critical).
    let page = browser.get("/admin/servers").await;
    let done = submit(
        &browser,
        &page,
        "/admin/servers/flaky/trust",
        &[("trust", "on")],
    )
    .await;
    assert_eq!(done.status, 303, "{}", done.body);

    let mut session = Raw::new(&gw.url());
    session.bearer = Some(token.to_owned());
    session.initialize("2025-11-25").await;
    let prompts = || async {
        names_in(
            &session.request(7, "prompts/list", json!({})).await,
            "prompts",
            "name",
        )
    };
    let templates = || async {
        names_in(
            &session
                .request(7, "resources/templates/list", json!({}))
                .await,
            "resourceTemplates",
            "uriTemplate",
        )
    };
    let get = || {
        session.request(
            7,
            "prompts/get",
            json!({"name": "flaky__greet", "arguments": {"name": "Ada"}}),
        )
    };
    let read = || session.request(7, "resources/read", json!({"uri": "flaky://notes/1"}));
    let greeting = |reply: &Reply| {
        reply.response(7)["result"]["messages"][0]["content"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let note = |reply: &Reply| {
        reply.response(7)["result"]["contents"][0]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };

    // Offered, and recorded as first seen (so approved).
    assert_eq!(prompts().await, ["flaky__greet"]);
    assert_eq!(templates().await, ["flaky://notes/{id}"]);
    assert_eq!(greeting(&get().await), "Hello, Ada!");
    assert_eq!(note(&read().await), "note 1");
    let catalog = gw.running.catalog.catalog().clone();
    eventually(
        "the catalog records the prompt and the template",
        || async {
            catalog
                .entry("flaky", EntryKind::Prompt, "greet")
                .await
                .is_ok_and(|e| e.is_some())
                && catalog
                    .entry("flaky", EntryKind::ResourceTemplate, "flaky://notes/{id}")
                    .await
                    .is_ok_and(|e| e.is_some())
        },
    )
    .await;

    // The upstream changes both descriptions.
    let reply = call(&gw, Some(token), "flaky__prompt_pull", json!({})).await;
    assert_eq!(text_of(&reply), "pulled", "{reply:?}");
    eventually("the prompt leaves prompts/list", || async {
        prompts().await.is_empty()
    })
    .await;
    eventually("the template leaves resources/templates/list", || async {
        templates().await.is_empty()
    })
    .await;
    let (code, message) = error_of(&get().await);
    assert_eq!(code, -32020, "{message}");
    assert!(
        message.contains("prompt \"flaky__greet\" is quarantined") && message.contains("admin"),
        "{message}"
    );
    let (code, message) = error_of(&read().await);
    assert_eq!(code, -32020, "{message}");
    assert!(
        message.contains("resource template \"flaky://notes/{id}\" is quarantined"),
        "{message}"
    );
    // A stateless client is refused the same way.
    let reply = modern_request(
        &gw,
        token,
        "prompts/get",
        "flaky__greet",
        json!({"name": "flaky__greet", "arguments": {"name": "Ada"}}),
    )
    .await;
    assert_eq!(error_of(&reply).0, -32020, "{reply:?}");
    // Tools are not affected.
    assert_eq!(
        text_of(&call(&gw, Some(token), "flaky__echo", json!({"message": "hi"})).await),
        "hi"
    );

    // The admin sees both flagged on the server's page, each change on its own page.
    eventually("the catalog flags them", || async {
        let page = browser.get("/admin/servers/flaky").await;
        page.contains("Prompts")
            && page.contains("/admin/servers/flaky/prompts/greet")
            && page.body.matches("<strong>quarantined</strong>").count() == 2
    })
    .await;
    let prompt_page = "/admin/servers/flaky/prompts/greet";
    let page = browser.get(prompt_page).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains("Quarantined since"), "{}", page.body);
    assert!(page.contains("What changed"), "{}", page.body);
    assert!(
        page.contains("evil.example"),
        "the new description: {}",
        page.body
    );
    assert!(
        page.contains("Greet someone."),
        "the old one: {}",
        page.body
    );

    approve_on_page(&browser, prompt_page, "prompt").await;
    let reply = get().await;
    assert_eq!(
        greeting(&reply),
        "Hello, Ada!",
        "approved: back at once: {reply:?}"
    );
    assert_eq!(prompts().await, ["flaky__greet"]);
    let page = browser.get(prompt_page).await;
    assert!(!page.contains("Quarantined since"), "{}", page.body);
    assert!(
        page.contains("approved by admin@example.com"),
        "{}",
        page.body
    );
    // The template is still quarantined until approved on its own page.
    assert_eq!(error_of(&read().await).0, -32020);
    let template_page = "/admin/servers/flaky/templates/flaky%3A%2F%2Fnotes%2F%7Bid%7D";
    let page = browser.get(template_page).await;
    assert!(page.contains("id_ed25519"), "{}", page.body);
    approve_on_page(&browser, template_page, "resource template").await;
    assert_eq!(note(&read().await), "note 1");
    assert_eq!(templates().await, ["flaky://notes/{id}"]);

    // Another admin's session cannot approve without the CSRF token.
    let forged = browser
        .post_form(
            &format!("{prompt_page}/approve"),
            &[("hash", &"0".repeat(64))],
        )
        .await;
    assert_ne!(forged.status, 303, "{}", forged.body);
    gw.stop().await;
}
