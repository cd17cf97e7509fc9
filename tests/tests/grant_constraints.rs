//! A grant's argument constraints and call budget, decided on real calls through Warrant
//! to the demo server: constraints (equals, prefix, one of) refuse a call outside them
//! with -32010 naming the argument and the rule; a budget of N calls per hour lets N
//! through and refuses the next with -32014, shared through the database; the consent
//! screen offers both and refuses what it cannot store with a message on the page.

use serde_json::{Value, json};
use warrant_consent::budgets::{Budgets, Exhausted, HOUR};
use warrant_consent::grants::NewGrant;
use warrant_consent::token::{ArgConstraint, ArgRule, ToolPattern};
use warrant_e2e::agent::{self, register_public, token_for_new_grant, unix_now};
use warrant_e2e::raw::Reply;
use warrant_e2e::{Backend, TestGateway, demo_upstream};

/// A 2026-07-28 `tools/call` (request id 7) with `token`.
async fn call(gw: &TestGateway, token: &str, tool: &str, arguments: Value) -> Reply {
    warrant_e2e::raw::modern_call(&gw.url(), Some(token), tool, arguments).await
}

/// The demo server (annotations trusted), the first admin as the person, an agent.
struct Setup {
    gw: TestGateway,
    browser: warrant_e2e::web::Browser,
    user: String,
    client: String,
    resource: String,
}

async fn setup() -> Setup {
    setup_with(&format!(
        "{}trust_annotations = true\n",
        demo_upstream("demo")
    ))
    .await
}

async fn setup_with(config: &str) -> Setup {
    let gw = TestGateway::start_protected(config, Backend::current()).await;
    let (browser, user) = warrant_e2e::agent::first_admin_signed_in(&gw).await;
    let client = register_public(&gw, "Constrained").await;
    let resource = format!("{}/mcp", gw.public_url());
    Setup {
        gw,
        browser,
        user,
        client,
        resource,
    }
}

impl Setup {
    fn grant(&self, args: Vec<ArgConstraint>, calls_per_hour: Option<i64>) -> NewGrant {
        NewGrant {
            user_id: self.user.clone(),
            client_id: self.client.clone(),
            resource: self.resource.clone(),
            allow: vec!["demo.*".into()],
            deny: Vec::new(),
            max_risk: None,
            args,
            calls_per_hour,
            expires_at: unix_now() + 3600,
        }
    }

    /// Waits until the catalog decides the demo tools with their annotated classes.
    async fn wait_for_catalog(&self, token: &str) {
        let started = std::time::Instant::now();
        loop {
            let reply = call(&self.gw, token, "demo__list_notes", json!({})).await;
            if reply.status == 200 && reply.response(7).get("result").is_some() {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(20),
                "the demo tools are usable: {reply:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
}

fn rule(name: &str, rule: ArgRule, tool: &str) -> ArgConstraint {
    ArgConstraint {
        name: name.into(),
        rule,
        tools: vec![ToolPattern::parse(tool).expect("pattern")],
    }
}

fn assert_allowed(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 200, "{what}: {reply:?}");
    let response = reply.response(7);
    assert!(response.get("result").is_some(), "{what}: {response}");
}

/// The refusal's message, after checking it is a -32010.
fn refused(reply: &Reply, what: &str) -> String {
    assert_eq!(reply.status, 403, "{what}: {reply:?}");
    let error = &reply.response(7)["error"];
    assert_eq!(error["code"], -32010, "{what}: {error}");
    error["message"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn argument_constraints_allow_calls_inside_and_name_the_rule_outside() {
    let s = setup().await;
    let args = vec![
        rule("title", ArgRule::Prefix("docs/".into()), "demo.write_note"),
        rule(
            "body",
            ArgRule::OneOf(vec!["draft".into(), "final".into()]),
            "demo.write_note",
        ),
        rule("title", ArgRule::Equals("readme".into()), "demo.read_note"),
    ];
    let (_, tokens) = token_for_new_grant(&s.gw, &s.grant(args, None)).await;
    s.wait_for_catalog(&tokens.access).await;

    let write = |title: &str, body: &str| json!({"title": title, "body": body});
    let token = tokens.access.as_str();
    assert_allowed(
        &call(
            &s.gw,
            token,
            "demo__write_note",
            write("docs/plan", "draft"),
        )
        .await,
        "inside the prefix, one of the values",
    );
    let message = refused(
        &call(
            &s.gw,
            token,
            "demo__write_note",
            write("notes/plan", "draft"),
        )
        .await,
        "outside the prefix",
    );
    assert!(
        message.contains(r#"argument "title" must start with "docs/""#),
        "{message}"
    );
    let message = refused(
        &call(
            &s.gw,
            token,
            "demo__write_note",
            write("docs/plan", "secret"),
        )
        .await,
        "not one of the values",
    );
    assert!(
        message.contains(r#"argument "body" must be one of ["draft", "final"]"#),
        "{message}"
    );
    let message = refused(
        &call(&s.gw, token, "demo__write_note", json!({"body": "draft"})).await,
        "without the argument",
    );
    assert!(message.contains(r#"argument "title""#), "{message}");

    assert_allowed(
        &call(&s.gw, token, "demo__read_note", json!({"title": "readme"})).await,
        "equal",
    );
    let message = refused(
        &call(
            &s.gw,
            token,
            "demo__read_note",
            json!({"title": "docs/plan"}),
        )
        .await,
        "not equal",
    );
    assert!(
        message.contains(r#"argument "title" must be "readme""#),
        "{message}"
    );
    // A tool without constraints is not affected.
    assert_allowed(
        &call(&s.gw, token, "demo__list_notes", json!({})).await,
        "unconstrained tool",
    );
    s.gw.stop().await;
}

#[tokio::test]
async fn a_call_budget_lets_its_calls_through_and_refuses_the_next_until_the_hour_ends() {
    let s = setup().await;
    // The catalog first, with a token without a budget.
    let (_, free) = token_for_new_grant(&s.gw, &s.grant(Vec::new(), None)).await;
    s.wait_for_catalog(&free.access).await;

    let (grant, tokens) = token_for_new_grant(&s.gw, &s.grant(Vec::new(), Some(3))).await;
    let token = tokens.access.as_str();
    for n in 1..=3 {
        assert_allowed(
            &call(&s.gw, token, "demo__list_notes", json!({})).await,
            &format!("call {n} of 3"),
        );
    }
    let reply = call(&s.gw, token, "demo__list_notes", json!({})).await;
    assert_eq!(reply.status, 200, "a JSON-RPC error, not a 403: {reply:?}");
    assert!(
        reply.header("www-authenticate").is_none(),
        "no scope helps: no challenge"
    );
    let error = &reply.response(7)["error"];
    assert_eq!(error["code"], -32014, "{error}");
    let hour_ends = (unix_now() / HOUR + 1) * HOUR;
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains("3 of 3 calls per hour"), "{message}");
    let data = &error["data"];
    assert_eq!(data["budget"], 3, "{data}");
    assert_eq!(data["used"], 3, "{data}");
    let expected = Exhausted {
        budget: 3,
        used: 3,
        resets_at: hour_ends,
    };
    assert_eq!(
        data["resetsAt"],
        expected.resets_at_text(),
        "the end of the hour, RFC 3339: {data}"
    );
    assert!(message.contains(&data["resetsAt"].as_str().unwrap_or("?").to_string()));

    // The same grant through a legacy session: the budget is the grant's, not the
    // request's.
    let mut raw = warrant_e2e::raw::Raw::new(&s.gw.url());
    raw.bearer = Some(tokens.access.clone());
    let started = raw.initialize("2025-11-25").await;
    assert_eq!(started.status, 200, "{started:?}");
    let legacy = raw
        .request(
            8,
            "tools/call",
            json!({"name": "demo__list_notes", "arguments": {}}),
        )
        .await;
    assert_eq!(legacy.response(8)["error"]["code"], -32014, "{legacy:?}");

    // Another grant of the same agent has its own budget.
    assert_allowed(
        &call(&s.gw, &free.access, "demo__list_notes", json!({})).await,
        "a grant without a budget",
    );

    // The count reaches the database within about a second: another replica (a fresh
    // counter on the same database) learns it with its first flush and refuses too.
    let hour = unix_now() / HOUR;
    let replica = Budgets::new(s.gw.running.db.clone());
    let started = std::time::Instant::now();
    loop {
        let stored = replica.stored(&grant, hour).await.expect("usage row");
        if stored == 3 {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "the usage row holds the 3 calls: {stored}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    replica.flush(unix_now()).await.expect("flush");
    let refused = replica
        .charge(&grant, 3, unix_now())
        .expect_err("the other replica refuses the fourth call too");
    assert_eq!(refused.used, 3);
    s.gw.stop().await;
}

#[tokio::test]
async fn the_consent_screen_stores_constraints_and_a_budget_and_refuses_an_unknown_argument() {
    let s = setup().await;
    let (_, first) = token_for_new_grant(&s.gw, &s.grant(Vec::new(), None)).await;
    s.wait_for_catalog(&first.access).await;
    let agent_id = register_public(&s.gw, "Form").await;

    // The screen offers the tool's arguments by name.
    let page = s
        .browser
        .get(&agent::authorize_path(&agent_id, agent::REDIRECT, &[]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body
            .contains(r#"<option value="title">title</option>"#),
        "the arguments of demo.write_note are offered: {}",
        page.body
    );
    assert!(
        page.body.contains(r#"name="calls_per_hour""#),
        "{}",
        page.body
    );

    // An argument the tool does not have: the form again, with a message, no grant.
    let mut fields = agent::consent_fields(&page.body);
    let answer = |fields: &mut Vec<(String, String)>, extra: &[(&str, &str)]| {
        fields.push(("decision".into(), "approve".into()));
        fields.push(("servers".into(), "all".into()));
        for (k, v) in extra {
            fields.push(((*k).into(), (*v).into()));
        }
    };
    answer(
        &mut fields,
        &[
            ("arg.0.tool", "demo.write_note"),
            ("arg.0.name", "colour"),
            ("arg.0.rule", "equals"),
            ("arg.0.value", "red"),
        ],
    );
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = s.browser.post_form("/authorize", &form).await;
    assert_eq!(back.status, 422, "{}", back.body);
    assert!(back.location().is_none(), "not back to the agent");
    assert!(
        back.body
            .contains("demo.write_note has no argument named “colour”"),
        "{}",
        back.body
    );

    assert!(
        back.body.contains(r#"value="red""#),
        "what the person entered is shown again: {}",
        back.body
    );

    // A known argument and a budget: stored in the grant, enforced on calls.
    let mut fields = agent::consent_fields(&back.body);
    answer(
        &mut fields,
        &[
            ("arg.0.tool", "demo.write_note"),
            ("arg.0.name", "title"),
            ("arg.0.rule", "prefix"),
            ("arg.0.value", "docs/"),
            ("calls_per_hour", "2"),
        ],
    );
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = s.browser.post_form("/authorize", &form).await;
    let location = back
        .location()
        .unwrap_or_else(|| panic!("back to the agent: {} {}", back.status, back.body));
    let code = agent::query_of(&location)
        .get("code")
        .cloned()
        .expect("a code");
    let tokens = agent::exchange(&s.gw, &agent_id, &code).await;
    let token = tokens.access.as_str();
    let message = refused(
        &call(
            &s.gw,
            token,
            "demo__write_note",
            json!({"title": "x", "body": "y"}),
        )
        .await,
        "outside the prefix",
    );
    assert!(
        message.contains(r#"argument "title" must start with "docs/""#),
        "{message}"
    );
    assert_allowed(
        &call(
            &s.gw,
            token,
            "demo__write_note",
            json!({"title": "docs/x", "body": "y"}),
        )
        .await,
        "inside",
    );
    assert_allowed(
        &call(&s.gw, token, "demo__list_notes", json!({})).await,
        "second call",
    );
    let reply = call(&s.gw, token, "demo__list_notes", json!({})).await;
    assert_eq!(reply.response(7)["error"]["code"], -32014, "{reply:?}");
    s.gw.stop().await;
}

#[tokio::test]
async fn a_held_critical_call_counts_only_once_it_is_approved_and_forwarded() {
    // Nobody reviewed the demo tools and their annotations are not trusted: all critical.
    let s = setup_with(&format!(
        "{}\n[policy]\ndefault_ceiling = \"critical\"\n",
        demo_upstream("demo")
    ))
    .await;
    let (_, tokens) = token_for_new_grant(&s.gw, &s.grant(Vec::new(), Some(2))).await;
    let mut raw = warrant_e2e::raw::Raw::new(&s.gw.url());
    raw.bearer = Some(tokens.access.clone());
    raw.initialize("2025-06-18").await;
    let pay = |id: i64, to: &str| {
        (
            id,
            json!({"name": "demo__send_payment",
                   "arguments": {"to": to, "amount_cents": 100, "currency": "eur"}}),
        )
    };
    // Held twice while the person has not decided: nothing counted.
    let mut url = String::new();
    for id in [1, 2] {
        let (id, params) = pay(id, "alice");
        let held = raw.request(id, "tools/call", params).await.response(id);
        assert_eq!(held["error"]["code"], -32012, "{held}");
        url = held["error"]["data"]["approvalUrl"]
            .as_str()
            .expect("approvalUrl")
            .to_owned();
    }
    let page = s.browser.get(&url).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf().expect("the approval form carries a CSRF token");
    let done = s
        .browser
        .post_form(&url, &[("csrf", &csrf), ("decision", "grant")])
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    // Approved for the rest of the grant: two calls go (the budget), the third does not.
    for (id, to) in [(3, "alice"), (4, "bob")] {
        let (id, params) = pay(id, to);
        let passed = raw.request(id, "tools/call", params).await.response(id);
        assert!(passed.get("result").is_some(), "call {id}: {passed}");
    }
    let (id, params) = pay(5, "carol");
    let refused = raw.request(id, "tools/call", params).await.response(id);
    assert_eq!(refused["error"]["code"], -32014, "{refused}");
    assert_eq!(refused["error"]["data"]["used"], 2, "{refused}");
    s.gw.stop().await;
}
