//! Trust ceilings end to end: an agent holds a token for every demo tool; what it may
//! call and what it sees follow the user's live ceiling — lowered, the next call of a
//! tool above it is refused with words that name the ceiling and the next listing lacks
//! the tool; raised, both come back. Group defaults (the lowest applies), a user's
//! override (wins up or down), a change made on another replica (within a second) and
//! the `notifications/tools/list_changed` sessions get. The demo upstream's annotations
//! are trusted first, so its classes are known: `list_notes` low, `write_note` medium,
//! `send_payment` high.

use std::time::Duration;

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use warrant_consent::ceilings::{Ceilings, SubjectKind};
use warrant_consent::token::Risk;
use warrant_e2e::agent::{
    AdminAgent, Tokens, admin_approves_agent, approve, register_public, unix_now,
};
use warrant_e2e::client::{connect_with_token, tool_names};
use warrant_e2e::raw::Reply;
use warrant_e2e::web::{Browser, Page};
use warrant_e2e::{Backend, TestClient, TestGateway, demo_upstream};

/// JSON-RPC code of a call the token, grant or ceiling does not allow.
const NOT_PERMITTED: i64 = -32010;

/// A stateless (2026-07-28) `tools/call` with `token`.
async fn call(gw: &TestGateway, token: &str, tool: &str, arguments: Value) -> Reply {
    warrant_e2e::raw::modern_call(&gw.url(), Some(token), tool, arguments).await
}

/// The tool names a 2026-07-28 `tools/list` with `token` shows, sorted.
async fn listed(gw: &TestGateway, token: &str) -> Vec<String> {
    warrant_e2e::raw::modern_tool_names(&gw.url(), Some(token)).await
}

fn write_note() -> Value {
    json!({"title": "t", "body": "b"})
}

fn send_payment() -> Value {
    json!({"to": "alice", "amount_cents": 1250, "currency": "eur"})
}

/// The call went through to the upstream.
fn assert_allowed(reply: &Reply) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.response(7)["result"]["content"].is_array(),
        "a result: {reply:?}"
    );
}

/// The call was refused by the ceiling: a JSON-RPC error (not a step-up 403, since no
/// scope the person could grant helps) whose words name the tool, its class, the person
/// (the admin of [`setup`], by email, never by the id `user_id`) and the ceiling, and
/// who can change it.
fn assert_above_ceiling(reply: &Reply, tool: &str, risk: &str, user_id: &str, ceiling: &str) {
    assert_eq!(reply.status, 200, "{reply:?}");
    let error = &reply.response(7)["error"];
    assert_eq!(error["code"], json!(NOT_PERMITTED), "{reply:?}");
    let message = error["message"].as_str().unwrap_or_default();
    let expected = format!(
        "tool {tool} is {risk} risk, above the ceiling of admin@example.com ({ceiling}); an admin can raise it"
    );
    assert!(message.contains(&expected), "{expected:?} in {message:?}");
    assert!(
        !message.contains(user_id),
        "the person is named by email, not by id: {message:?}"
    );
    assert!(
        error["data"].get("scope").is_none(),
        "no scope to step up to: {reply:?}"
    );
}

/// Posts a form of the admin pages with the page's CSRF token.
async fn submit(browser: &Browser, page: &Page, action: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.csrf().expect("the page carries a CSRF token");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let done = browser.post_form(action, &form).await;
    assert_eq!(done.status, 303, "{action}: {}", done.body);
    done
}

/// The first admin, signed in; their agent approved for every server; the demo
/// upstream's annotations trusted (so the classes above hold).
struct Setup {
    gw: TestGateway,
    browser: Browser,
    admin: String,
    tokens: Tokens,
}

async fn setup() -> Setup {
    let gw = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    gw.trust_annotations("demo").await;
    let AdminAgent {
        browser,
        admin,
        tokens,
    } = admin_approves_agent(&gw, "Claude Code").await;
    Setup {
        gw,
        browser,
        admin,
        tokens,
    }
}

/// Sets (or with `""` clears) the admin's own ceiling on their user page.
async fn set_user_ceiling(s: &Setup, ceiling: &str) -> Page {
    let page = s.browser.get(&format!("/admin/users/{}", s.admin)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    submit(
        &s.browser,
        &page,
        &format!("/admin/users/{}/ceiling", s.admin),
        &[("ceiling", ceiling)],
    )
    .await;
    s.browser.get(&format!("/admin/users/{}", s.admin)).await
}

async fn set_group_ceiling(s: &Setup, group: &str, ceiling: &str) -> Page {
    let page = s.browser.get("/admin/groups").await;
    assert_eq!(page.status, 200, "{}", page.body);
    submit(
        &s.browser,
        &page,
        "/admin/groups/ceiling",
        &[("group", group), ("ceiling", ceiling)],
    )
    .await;
    s.browser.get("/admin/groups").await
}

#[tokio::test]
async fn lowering_a_ceiling_refuses_the_next_call_and_hides_the_tool_raising_it_restores_both() {
    let s = setup().await;
    let token = s.tokens.access.as_str();
    let all = [
        "demo__delete_all_notes",
        "demo__list_notes",
        "demo__read_note",
        "demo__send_payment",
        "demo__write_note",
    ];
    assert_eq!(listed(&s.gw, token).await, all, "the default ceiling: high");
    assert_allowed(&call(&s.gw, token, "demo__write_note", write_note()).await);
    let page = s.browser.get(&format!("/admin/users/{}", s.admin)).await;
    assert!(page.contains("Trust ceiling"), "{}", page.body);
    assert!(
        page.contains("risk-high\">high</span> risk: Warrant&#39;s default"),
        "{}",
        page.body
    );

    // A form without the CSRF token changes nothing.
    let forged = s
        .browser
        .post_form(
            &format!("/admin/users/{}/ceiling", s.admin),
            &[("ceiling", "low")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert_allowed(&call(&s.gw, token, "demo__write_note", write_note()).await);

    // Lowered to low: the very next call of a medium tool is refused, and says why.
    let page = set_user_ceiling(&s, "low").await;
    assert!(
        page.contains("risk-low\">low</span> risk: set for this user"),
        "{}",
        page.body
    );
    assert!(
        page.contains("set to low"),
        "the change is recorded: {}",
        page.body
    );
    assert!(page.contains("admin@example.com"), "by whom: {}", page.body);
    let list = s.browser.get("/admin/users").await;
    assert!(
        list.contains("<span class=\"risk risk-low\">low</span>"),
        "the users list shows it: {}",
        list.body
    );
    let reply = call(&s.gw, token, "demo__write_note", write_note()).await;
    assert_above_ceiling(&reply, "demo.write_note", "medium", &s.admin, "low");
    let reply = call(&s.gw, token, "demo__send_payment", send_payment()).await;
    assert_above_ceiling(&reply, "demo.send_payment", "high", &s.admin, "low");
    assert_eq!(
        listed(&s.gw, token).await,
        ["demo__list_notes", "demo__read_note"],
        "the next listing lacks what is above low"
    );
    assert_allowed(&call(&s.gw, token, "demo__list_notes", json!({})).await);

    // Medium: write_note is back, send_payment not yet.
    set_user_ceiling(&s, "medium").await;
    assert_allowed(&call(&s.gw, token, "demo__write_note", write_note()).await);
    let reply = call(&s.gw, token, "demo__send_payment", send_payment()).await;
    assert_above_ceiling(&reply, "demo.send_payment", "high", &s.admin, "medium");

    // Cleared: the default applies again, and everything is back.
    let page = set_user_ceiling(&s, "").await;
    assert!(page.contains("cleared"), "{}", page.body);
    assert_eq!(listed(&s.gw, token).await, all);
    assert_allowed(&call(&s.gw, token, "demo__send_payment", send_payment()).await);
    s.gw.stop().await;
}

#[tokio::test]
async fn the_lowest_group_default_applies_and_a_user_override_wins_up_and_down() {
    let s = setup().await;
    let token = s.tokens.access.as_str();
    // The admin is in two groups.
    let page = s.browser.get(&format!("/admin/users/{}", s.admin)).await;
    submit(
        &s.browser,
        &page,
        &format!("/admin/users/{}/groups", s.admin),
        &[("groups", "eng, ops")],
    )
    .await;
    set_group_ceiling(&s, "eng", "critical").await;
    let groups = set_group_ceiling(&s, "ops", "low").await;
    assert!(groups.contains("<td>eng</td><td>1</td>"), "{}", groups.body);
    assert!(groups.contains("admin@example.com"), "{}", groups.body);

    // The lowest of their groups: ops, low.
    let reply = call(&s.gw, token, "demo__write_note", write_note()).await;
    assert_above_ceiling(&reply, "demo.write_note", "medium", &s.admin, "low");
    let page = s.browser.get(&format!("/admin/users/{}", s.admin)).await;
    assert!(
        page.contains("risk-low\">low</span> risk: the default of group ops"),
        "{}",
        page.body
    );
    assert_eq!(
        listed(&s.gw, token).await,
        ["demo__list_notes", "demo__read_note"]
    );

    // An override above the group: medium.
    set_user_ceiling(&s, "medium").await;
    assert_allowed(&call(&s.gw, token, "demo__write_note", write_note()).await);
    let reply = call(&s.gw, token, "demo__send_payment", send_payment()).await;
    assert_above_ceiling(&reply, "demo.send_payment", "high", &s.admin, "medium");

    // Without ops's default, eng's critical applies to the groups, but the override
    // still wins, down this time.
    set_group_ceiling(&s, "ops", "").await;
    let reply = call(&s.gw, token, "demo__send_payment", send_payment()).await;
    assert_above_ceiling(&reply, "demo.send_payment", "high", &s.admin, "medium");

    // No override: eng's default (critical; the grant itself stops at high).
    let page = set_user_ceiling(&s, "").await;
    assert!(
        page.contains("risk-critical\">critical</span> risk: the default of group eng"),
        "{}",
        page.body
    );
    assert_allowed(&call(&s.gw, token, "demo__send_payment", send_payment()).await);

    // Leaving the group: the configured default again, at once.
    let page = s.browser.get(&format!("/admin/users/{}", s.admin)).await;
    submit(
        &s.browser,
        &page,
        &format!("/admin/users/{}/groups", s.admin),
        &[("groups", "")],
    )
    .await;
    set_group_ceiling(&s, "eng", "medium").await;
    assert_allowed(&call(&s.gw, token, "demo__send_payment", send_payment()).await);

    // A group nobody is in yet can have a ceiling (a provider's group, say).
    let groups = set_group_ceiling(&s, "contractors", "low").await;
    assert!(
        groups.contains("<td>contractors</td><td>0</td>"),
        "{}",
        groups.body
    );
    let page = s.browser.get("/admin/groups").await;
    let bad = s
        .browser
        .post_form(
            "/admin/groups/ceiling",
            &[
                ("csrf", page.csrf().expect("csrf").as_str()),
                ("group", "eng"),
                ("ceiling", "extreme"),
            ],
        )
        .await;
    assert_eq!(bad.status, 400, "{}", bad.body);
    s.gw.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_made_elsewhere_applies_within_a_second_and_sessions_hear_of_it() {
    let s = setup().await;
    let handler = TestClient::default();
    let client = connect_with_token(&s.gw.url(), &s.tokens.access, handler.clone()).await;
    assert!(
        tool_names(&client)
            .await
            .contains(&"demo__write_note".to_owned())
    );
    let heard_before = handler.seen().tool_list_changed;

    // Another replica (or an operator in the database) lowers the ceiling.
    Ceilings::new(s.gw.running.db.clone())
        .set(
            SubjectKind::User,
            &s.admin,
            Some(Risk::Low),
            &s.admin,
            unix_now(),
        )
        .await
        .expect("set elsewhere");
    let started = std::time::Instant::now();
    let mut heard = heard_before;
    while started.elapsed() < Duration::from_secs(10) {
        heard = handler.seen().tool_list_changed;
        if heard > heard_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        heard > heard_before,
        "the session heard notifications/tools/list_changed"
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "seen after {took:?}");
    assert_eq!(
        tool_names(&client).await,
        ["demo__list_notes", "demo__read_note"]
    );
    let refused = client
        .call_tool(
            CallToolRequestParams::new("demo__write_note")
                .with_arguments(write_note().as_object().cloned().unwrap_or_default()),
        )
        .await
        .expect_err("refused");
    let text = refused.to_string();
    assert!(
        text.contains("above the ceiling of admin@example.com (low)") && !text.contains(&s.admin),
        "{text}"
    );
    client.cancel().await.expect("close");
    s.gw.stop().await;
}

#[tokio::test]
async fn the_consent_screen_offers_nothing_above_the_ceiling() {
    let s = setup().await;
    set_user_ceiling(&s, "medium").await;
    let client = register_public(&s.gw, "Cursor").await;
    let page = s
        .browser
        .get(&warrant_e2e::agent::authorize_path(
            &client,
            warrant_e2e::agent::REDIRECT,
            &[],
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    // Tools above the ceiling are shown, not offered.
    assert!(
        page.contains("value=\"demo.send_payment\" disabled>"),
        "{}",
        page.body
    );
    assert!(
        page.contains("unavailable: above your ceiling"),
        "{}",
        page.body
    );
    assert!(page.contains("value=\"demo.write_note\">"), "{}", page.body);
    // The highest risk: up to the ceiling, the ceiling by default.
    assert!(
        page.contains("<option value=\"medium\" selected>medium</option>"),
        "{}",
        page.body
    );
    assert!(
        page.contains("<option value=\"high\" disabled>high (above your ceiling)</option>"),
        "{}",
        page.body
    );

    // A tool the agent asks for by name is not offered either when above the ceiling.
    let asked = s
        .browser
        .get(&warrant_e2e::agent::authorize_path(
            &client,
            warrant_e2e::agent::REDIRECT,
            &[("scope", "mcp tool:demo.send_payment tool:demo.write_note")],
        ))
        .await;
    assert!(
        asked.contains("value=\"demo.send_payment\" disabled>"),
        "{}",
        asked.body
    );
    assert!(
        asked.contains("value=\"demo.write_note\" checked>"),
        "{}",
        asked.body
    );

    // The person allows this agent up to low: that is the grant's, whatever the ceiling.
    let tokens = approve(
        &s.gw,
        &s.browser,
        &client,
        &[],
        &[("servers", "all"), ("duration", "1h"), ("max_risk", "low")],
    )
    .await;
    let resource = format!("{}/mcp", s.gw.public_url());
    let grants = warrant_consent::grants::Grants::new(s.gw.running.db.clone())
        .live(&s.admin, &client, &resource, unix_now())
        .await
        .expect("grants");
    assert_eq!(grants[0].max_risk.as_deref(), Some("low"));
    set_user_ceiling(&s, "critical").await;
    assert_eq!(
        listed(&s.gw, &tokens.access).await,
        ["demo__list_notes", "demo__read_note"]
    );
    let reply = call(&s.gw, &tokens.access, "demo__write_note", write_note()).await;
    assert_eq!(
        reply.status, 403,
        "the grant's limit asks the person: {reply:?}"
    );
    let message = reply.response(7)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("above what the grant allows (at most low)"),
        "{message}"
    );

    // A forged choice above the ceiling is stored as the ceiling; a forged tick of a
    // tool above it is ignored.
    set_user_ceiling(&s, "medium").await;
    let other = register_public(&s.gw, "Forger").await;
    approve(
        &s.gw,
        &s.browser,
        &other,
        &[],
        &[
            ("servers", "some"),
            ("tool", "demo.write_note"),
            ("tool", "demo.send_payment"),
            ("max_risk", "critical"),
        ],
    )
    .await;
    let grants = warrant_consent::grants::Grants::new(s.gw.running.db.clone())
        .live(&s.admin, &other, &resource, unix_now())
        .await
        .expect("grants");
    assert_eq!(grants[0].max_risk.as_deref(), Some("medium"));
    assert_eq!(grants[0].allow, ["demo.write_note"]);
    s.gw.stop().await;
}

/// A tool within the person's ceiling but above the risk they chose for the grant: the
/// step-up reaches them (the consent screen, offering the tool, not a code for the same
/// grant), and approving it lets the call through. A tool above the ceiling as well is
/// refused as the ceiling's (no step-up: the screen could not offer it).
#[tokio::test]
async fn a_tool_above_the_grants_own_limit_asks_the_person_and_above_the_ceiling_says_so() {
    let s = setup().await;
    let client = register_public(&s.gw, "Cursor").await;
    let medium = approve(
        &s.gw,
        &s.browser,
        &client,
        &[],
        &[
            ("servers", "all"),
            ("duration", "1h"),
            ("max_risk", "medium"),
        ],
    )
    .await;
    let refused = call(&s.gw, &medium.access, "demo__send_payment", send_payment()).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    let challenge = refused.header("www-authenticate").unwrap_or_default();
    let scope = "mcp tool:demo.send_payment";
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains(&format!("scope=\"{scope}\"")),
        "{challenge}"
    );

    // The client asks again with the scope it was told: the person sees the screen.
    let page = s
        .browser
        .get(&warrant_e2e::agent::authorize_path(
            &client,
            warrant_e2e::agent::REDIRECT,
            &[("scope", scope)],
        ))
        .await;
    assert_eq!(
        page.status,
        200,
        "the consent screen, not a code for the same grant: {:?} {}",
        page.location(),
        page.body
    );
    assert!(
        page.contains("value=\"demo.send_payment\" checked>"),
        "{}",
        page.body
    );
    assert!(
        page.contains("It asks for demo.send_payment, a high risk tool: you allowed it tools up to medium risk."),
        "{}",
        page.body
    );
    let high = approve(
        &s.gw,
        &s.browser,
        &client,
        &[("scope", scope)],
        &[
            ("servers", "all"),
            ("tool", "demo.send_payment"),
            ("duration", "1h"),
            ("max_risk", "high"),
        ],
    )
    .await;
    assert_allowed(&call(&s.gw, &high.access, "demo__send_payment", send_payment()).await);

    // Above the person's ceiling too: the ceiling's refusal, not a step-up.
    set_user_ceiling(&s, "medium").await;
    let other = register_public(&s.gw, "Zed").await;
    let low = approve(
        &s.gw,
        &s.browser,
        &other,
        &[],
        &[("servers", "all"), ("duration", "1h"), ("max_risk", "low")],
    )
    .await;
    let reply = call(&s.gw, &low.access, "demo__send_payment", send_payment()).await;
    assert_above_ceiling(&reply, "demo.send_payment", "high", &s.admin, "medium");
    // Within the ceiling, the grant's own limit still asks the person.
    let reply = call(&s.gw, &low.access, "demo__write_note", write_note()).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    s.gw.stop().await;
}
