//! `/mcp` as a protected resource: every request carries a Warrant access token, and
//! what it may do is what the person approved (and what every narrowing block leaves).
//! The negative table checks each refusal's status, challenge and words; the positive
//! cases run the whole way — consent screen, `/token`, then MCP — with the demo server
//! as the upstream.

use std::sync::Arc;

use serde_json::{Value, json};
use warrant_consent::grants::Grants;
use warrant_consent::token::{
    ArgConstraint, KeyRing, KeySettings, MintRequest, Restriction, ToolPattern, attenuate, mint,
};
use warrant_e2e::agent::{self, Tokens, approve, register_public, token_for_grant, unix_now};
use warrant_e2e::raw::{Raw, Reply};
use warrant_e2e::{Backend, TestGateway, demo_upstream};
use warrant_idp::SystemClock;
use warrant_idp::db::Db;

/// The demo server's annotations are trusted: its tools have the classes they suggest
/// (the catalog's own tests cover unreviewed, critical tools).
async fn gateway() -> TestGateway {
    let gw = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    gw.trust_annotations("demo").await;
    gw
}

/// A stateless (2026-07-28) `tools/call` with `token`.
async fn call(gw: &TestGateway, token: Option<&str>, tool: &str, arguments: Value) -> Reply {
    warrant_e2e::raw::modern_call(&gw.url(), token, tool, arguments).await
}

/// The tool names a 2026-07-28 `tools/list` with `token` shows.
async fn listed(gw: &TestGateway, token: &str) -> Vec<String> {
    warrant_e2e::raw::modern_tool_names(&gw.url(), Some(token)).await
}

fn challenge(reply: &Reply) -> String {
    reply.header("www-authenticate").unwrap_or_default()
}

fn error_message(reply: &Reply, id: i64) -> String {
    reply.refusal(id)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A 401 with the challenge that leads a client to the authorization server.
fn assert_unauthorized(gw: &TestGateway, reply: &Reply, error: Option<&str>, words: &str) {
    assert_eq!(reply.status, 401, "{reply:?}");
    let challenge = challenge(reply);
    // On the origin the request went to (`127.0.0.1`, a loopback alias of the public
    // `localhost`), so that the client's resource check passes.
    let metadata = format!(
        "resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
        gw.base()
    );
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains(&metadata), "{challenge}");
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
    match error {
        Some(error) => assert!(
            challenge.contains(&format!("error=\"{error}\"")),
            "{challenge}"
        ),
        None => assert!(!challenge.contains("error="), "{challenge}"),
    }
    let message = error_message(reply, 7);
    assert!(message.contains(words), "{words:?} in {message:?}");
}

/// The first admin approves a new agent for every server; the agent's tokens.
async fn approved_agent(gw: &TestGateway) -> (warrant_e2e::web::Browser, Tokens) {
    let agent = agent::admin_approves_agent(gw, "Claude Code").await;
    (agent.browser, agent.tokens)
}

async fn admin_id(gw: &TestGateway) -> String {
    gw.running
        .idp
        .users
        .by_email("admin@example.com")
        .await
        .expect("lookup")
        .expect("the admin")
        .id
}

fn send_payment() -> Value {
    json!({"to": "alice", "amount_cents": 1250, "currency": "eur"})
}

#[tokio::test]
async fn an_approved_agent_lists_and_calls_tools_in_every_revision() {
    let gw = gateway().await;
    let (_browser, tokens) = approved_agent(&gw).await;

    // 2026-07-28, stateless.
    let names = listed(&gw, &tokens.access).await;
    assert!(
        names.contains(&"demo__send_payment".to_owned()),
        "{names:?}"
    );
    let reply = call(
        &gw,
        Some(&tokens.access),
        "demo__send_payment",
        send_payment(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let text = reply.response(7)["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains("12.50 EUR to alice"), "{text}");

    // 2025-06-18, a session: the token on every request, GET and DELETE included.
    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(tokens.access.clone());
    raw.initialize("2025-06-18").await;
    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "demo__write_note", "arguments": {"title": "t", "body": "b"}}),
        )
        .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.response(1)["result"]["content"].is_array(),
        "{reply:?}"
    );
    let session = raw.session.clone().expect("a session");
    let get = raw
        .client()
        .get(&raw.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .expect("GET");
    assert_eq!(get.status(), 401, "a GET without the token is refused");
    let delete = raw
        .client()
        .delete(&raw.url)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(
        delete.status(),
        401,
        "a DELETE without the token is refused"
    );
    let delete = raw
        .client()
        .delete(&raw.url)
        .bearer_auth(&tokens.access)
        .header("mcp-session-id", &session)
        .header("mcp-protocol-version", "2025-06-18")
        .send()
        .await
        .expect("DELETE");
    assert_eq!(delete.status(), 200);
    gw.stop().await;
}

#[tokio::test]
async fn requests_without_a_usable_token_get_401_with_the_way_to_the_authorization_server() {
    let gw = gateway().await;
    let (_browser, tokens) = approved_agent(&gw).await;
    let user = admin_id(&gw).await;
    let resource = format!("{}/mcp", gw.public_url());

    // No token at all: a challenge without an error code (RFC 6750 §3.1).
    let reply = call(&gw, None, "demo__read_note", json!({"title": "x"})).await;
    assert_unauthorized(&gw, &reply, None, "authorization required");
    // The challenge's metadata URL answers, naming this resource and its server.
    let metadata: Value = agent::http()
        .get(format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            gw.public_url()
        ))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("json");
    assert_eq!(metadata["resource"], json!(resource));
    assert_eq!(metadata["authorization_servers"], json!([gw.public_url()]));

    // Another scheme, or a token in the query string, is no token.
    let mut raw = Raw::new(&format!("{}?access_token={}", gw.url(), tokens.access));
    raw.version = Some("2026-07-28".into());
    let reply = raw
        .post(
            r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}"#,
            &[("authorization", &format!("Basic {}", tokens.access))],
        )
        .await;
    assert_unauthorized(&gw, &reply, None, "authorization required");

    // Malformed.
    let reply = call(&gw, Some("not-a-token"), "demo__read_note", json!({})).await;
    assert_unauthorized(&gw, &reply, Some("invalid_token"), "malformed token");

    // Tampered: one character of the signed payload changed.
    let mut bytes = tokens.access.clone().into_bytes();
    let middle = bytes.len() / 2;
    bytes[middle] = if bytes[middle] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).expect("ascii");
    let reply = call(&gw, Some(&tampered), "demo__read_note", json!({})).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let message = error_message(&reply, 7);
    assert!(
        message.contains("invalid token signature") || message.contains("malformed token"),
        "{message}"
    );

    // Expired: a token of this gateway's key whose life ended a minute ago.
    let past = unix_now() - 700;
    let expired = mint(
        &gw.running.keys,
        &MintRequest {
            user: user.clone(),
            agent: tokens.client_id.clone(),
            grant: "g-old".into(),
            audience: resource.clone(),
            expires_at: past + 640,
            calls_per_hour: None,
            consent: Restriction {
                allow: Some(vec![ToolPattern::any()]),
                ..Restriction::default()
            },
        },
        past,
    )
    .expect("mint");
    let reply = call(&gw, Some(&expired), "demo__read_note", json!({})).await;
    assert_unauthorized(&gw, &reply, Some("invalid_token"), "the token expired");

    // Signed by a key this gateway does not know (another installation's key 2).
    let dir = tempfile::tempdir().expect("dir");
    let db = Db::open(None, dir.path()).await.expect("db");
    db.migrate().await.expect("migrate");
    let foreign = KeyRing::open(db, [9u8; 32], KeySettings::default(), Arc::new(SystemClock))
        .await
        .expect("ring");
    foreign.rotate().await.expect("rotate");
    let now = unix_now();
    let forged = mint(
        &foreign,
        &MintRequest {
            user: user.clone(),
            agent: tokens.client_id.clone(),
            grant: "g-forged".into(),
            audience: resource.clone(),
            expires_at: now + 300,
            calls_per_hour: None,
            consent: Restriction {
                allow: Some(vec![ToolPattern::any()]),
                ..Restriction::default()
            },
        },
        now,
    )
    .expect("mint");
    let reply = call(&gw, Some(&forged), "demo__read_note", json!({})).await;
    assert_unauthorized(
        &gw,
        &reply,
        Some("invalid_token"),
        "unknown token signing key 2",
    );

    // Issued for another resource (this authorization server never issues one for
    // another resource at /token, so the key signs it directly).
    let other = mint(
        &gw.running.keys,
        &MintRequest {
            user,
            agent: tokens.client_id.clone(),
            grant: "g-other".into(),
            audience: "https://other.example/mcp".into(),
            expires_at: now + 300,
            calls_per_hour: None,
            consent: Restriction {
                allow: Some(vec![ToolPattern::any()]),
                ..Restriction::default()
            },
        },
        now,
    )
    .expect("mint");
    let reply = call(&gw, Some(&other), "demo__read_note", json!({})).await;
    assert_unauthorized(
        &gw,
        &reply,
        Some("invalid_token"),
        "the token is for https://other.example/mcp",
    );
    gw.stop().await;
}

#[tokio::test]
async fn revoking_the_token_or_the_grant_refuses_the_next_call() {
    let gw = gateway().await;
    let (_browser, tokens) = approved_agent(&gw).await;
    let ok = call(&gw, Some(&tokens.access), "demo__list_notes", json!({})).await;
    assert_eq!(ok.status, 200, "{ok:?}");

    // The agent revokes its access token (RFC 7009): the very next call is refused.
    let revoked = agent::http()
        .post(format!("{}/revoke", gw.public_url()))
        .form(&[
            ("token", tokens.access.as_str()),
            ("client_id", tokens.client_id.as_str()),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let reply = call(&gw, Some(&tokens.access), "demo__list_notes", json!({})).await;
    assert_unauthorized(&gw, &reply, Some("invalid_token"), "revoked");

    // A fresh token from the refresh token works; then the person's grant is revoked
    // (here straight in the database, as another replica would): refused within the
    // revocation list's refresh period.
    let (status, body) = agent::token_request(
        &gw,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &tokens.refresh),
            ("client_id", &tokens.client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access").to_owned();
    let ok = call(&gw, Some(&access), "demo__list_notes", json!({})).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let grant = gw
        .running
        .verifier
        .verify(&access, unix_now())
        .expect("verifies")
        .identity
        .grant
        .clone();
    assert!(
        Grants::new(gw.running.db.clone())
            .revoke(&grant, unix_now())
            .await
            .expect("revoke grant")
    );
    let started = std::time::Instant::now();
    let reply = loop {
        let reply = call(&gw, Some(&access), "demo__list_notes", json!({})).await;
        if reply.status != 200 || started.elapsed() > std::time::Duration::from_secs(5) {
            break reply;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_unauthorized(&gw, &reply, Some("invalid_token"), "revoked");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2500),
        "seen within the refresh period: {:?}",
        started.elapsed()
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_grant_shows_and_allows_only_its_tools_and_names_what_is_missing() {
    let gw = gateway().await;
    let (_browser, tokens) = approved_agent(&gw).await;
    let user = admin_id(&gw).await;
    let resource = format!("{}/mcp", gw.public_url());
    let narrow = token_for_grant(
        &gw,
        &user,
        &tokens.client_id,
        &resource,
        &["demo.*"],
        &["demo.send_*", "demo.delete_all_notes"],
    )
    .await;

    let names = listed(&gw, &narrow.access).await;
    assert_eq!(
        names,
        ["demo__list_notes", "demo__read_note", "demo__write_note"],
        "deny wins over allow in the listing"
    );

    let reply = call(
        &gw,
        Some(&narrow.access),
        "demo__send_payment",
        send_payment(),
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let challenge = challenge(&reply);
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"mcp tool:demo.send_payment\""),
        "{challenge}"
    );
    assert!(challenge.contains("resource_metadata="), "{challenge}");
    let error = &reply.response(7)["error"];
    assert_eq!(error["code"], json!(-32010), "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("demo.send_payment") && message.contains("denies"),
        "{message}"
    );
    assert_eq!(error["data"]["scope"], json!("mcp tool:demo.send_payment"));

    // Allowed tools go through.
    let reply = call(&gw, Some(&narrow.access), "demo__list_notes", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(
        reply.response(7)["result"]["content"].is_array(),
        "{reply:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_narrowing_block_is_honoured_and_cannot_widen() {
    let gw = gateway().await;
    let (_browser, tokens) = approved_agent(&gw).await;
    let user = admin_id(&gw).await;
    let resource = format!("{}/mcp", gw.public_url());
    let reads = token_for_grant(
        &gw,
        &user,
        &tokens.client_id,
        &resource,
        &["demo.read_*", "demo.list_*"],
        &[],
    )
    .await;

    // A subagent's token: only read_note, and only titles under "public/".
    let sub = attenuate(
        &reads.access,
        &Restriction {
            allow: Some(vec![ToolPattern::parse("demo.read_note").expect("pattern")]),
            args: vec![ArgConstraint::parse("title=prefix:public/").expect("constraint")],
            ..Restriction::default()
        },
    )
    .expect("attenuate");
    assert_eq!(listed(&gw, &sub).await, ["demo__read_note"]);
    let reply = call(&gw, Some(&sub), "demo__list_notes", json!({})).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = call(
        &gw,
        Some(&sub),
        "demo__read_note",
        json!({"title": "secret"}),
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        error_message(&reply, 7).contains("public/"),
        "the refusal names the constraint: {}",
        error_message(&reply, 7)
    );
    let reply = call(
        &gw,
        Some(&sub),
        "demo__read_note",
        json!({"title": "public/x"}),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");

    // A block that tries to widen (every tool) changes nothing.
    let wider = attenuate(
        &reads.access,
        &Restriction {
            allow: Some(vec![ToolPattern::any()]),
            ..Restriction::default()
        },
    )
    .expect("attenuate");
    assert_eq!(
        listed(&gw, &wider).await,
        ["demo__list_notes", "demo__read_note"]
    );
    let reply = call(&gw, Some(&wider), "demo__send_payment", send_payment()).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        error_message(&reply, 7).contains("demo.send_payment"),
        "{}",
        error_message(&reply, 7)
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_session_belongs_to_the_subject_that_started_it() {
    let gw = gateway().await;
    let (browser, first) = approved_agent(&gw).await;
    let other_client = register_public(&gw, "Cursor").await;
    let second = approve(
        &gw,
        &browser,
        &other_client,
        &[],
        &[("servers", "all"), ("duration", "1h")],
    )
    .await;

    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(first.access.clone());
    raw.initialize("2025-11-25").await;
    let ok = raw.request(1, "tools/list", json!({})).await;
    assert_eq!(ok.status, 200, "{ok:?}");

    // Another agent's valid token cannot ride this session.
    raw.bearer = Some(second.access.clone());
    let reply = raw.request(2, "tools/list", json!({})).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(
        error_message(&reply, 2).contains("another agent or user"),
        "{}",
        error_message(&reply, 2)
    );
    // Its own session works.
    let mut own = Raw::new(&gw.url());
    own.bearer = Some(second.access.clone());
    own.initialize("2025-11-25").await;
    let ok = own.request(1, "tools/list", json!({})).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    gw.stop().await;
}

#[tokio::test]
async fn step_up_asks_the_person_for_the_missing_tool() {
    let config = format!("{}\n{}", demo_upstream("demo"), demo_upstream("bank"));
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    gw.trust_annotations("demo").await;
    gw.trust_annotations("bank").await;
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let client_id = register_public(&gw, "Claude Code").await;
    let first = approve(
        &gw,
        &browser,
        &client_id,
        &[],
        &[("servers", "some"), ("server", "demo"), ("duration", "1h")],
    )
    .await;
    let reply = call(
        &gw,
        Some(&first.access),
        "bank__send_payment",
        send_payment(),
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let challenge = challenge(&reply);
    let scope = "mcp tool:bank.send_payment";
    assert!(
        challenge.contains(&format!("scope=\"{scope}\"")),
        "{challenge}"
    );

    // The client asks again with that scope: the live grant does not cover it, so the
    // person sees the screen, with the tool named.
    let page = browser
        .get(&agent::authorize_path(
            &client_id,
            agent::REDIRECT,
            &[("scope", scope)],
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.contains("asks for more than you allowed"),
        "{}",
        page.body
    );
    assert!(
        page.contains("value=\"bank.send_payment\""),
        "{}",
        page.body
    );
    let second = approve(
        &gw,
        &browser,
        &client_id,
        &[("scope", scope)],
        &[
            ("servers", "some"),
            ("server", "demo"),
            ("tool", "bank.send_payment"),
            ("duration", "1h"),
        ],
    )
    .await;
    let reply = call(
        &gw,
        Some(&second.access),
        "bank__send_payment",
        send_payment(),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        listed(&gw, &second.access).await,
        [
            "bank__send_payment",
            "demo__delete_all_notes",
            "demo__list_notes",
            "demo__read_note",
            "demo__send_payment",
            "demo__write_note"
        ]
    );
    // The grant it replaced is over: the old token is refused at once.
    let reply = call(&gw, Some(&first.access), "demo__list_notes", json!({})).await;
    assert_unauthorized(&gw, &reply, Some("invalid_token"), "revoked");

    // Asking again for what the grant covers goes straight back, without a screen.
    let again = browser
        .get(&agent::authorize_path(
            &client_id,
            agent::REDIRECT,
            &[("scope", scope)],
        ))
        .await;
    assert!(
        again
            .location()
            .is_some_and(|l| l.starts_with(agent::REDIRECT)),
        "{} {}",
        again.status,
        again.body
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_block_appended_with_the_python_biscuit_library_is_honoured() {
    let gw = gateway().await;
    let (_browser, tokens) = approved_agent(&gw).await;
    let output = tokio::process::Command::new(warrant_e2e::python())
        .arg(warrant_e2e::repo_root().join("tests/python/attenuate.py"))
        .arg(&tokens.access)
        .arg(format!("{}/.well-known/warrant-keys.json", gw.public_url()))
        .args(["demo", "read_note", "300"])
        .output()
        .await
        .expect("run attenuate.py");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let sub = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let chain = &gw
        .running
        .verifier
        .verify(&sub, unix_now())
        .expect("the narrowed token verifies")
        .identity
        .chain;
    assert_eq!(chain.len(), 3, "authority, consent and the Python block");

    let reply = call(&gw, Some(&sub), "demo__read_note", json!({"title": "x"})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = call(&gw, Some(&sub), "demo__send_payment", send_payment()).await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let failed = reply.response(7)["error"]["data"]["failedChecks"].to_string();
    assert!(
        failed.contains("block 2") && failed.contains("read_note"),
        "the refusal shows the Python block's check: {failed}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn access_tokens_live_as_configured() {
    let config = format!(
        "[oauth]\naccess_token_ttl = \"2m\"\n\n{}",
        demo_upstream("demo")
    );
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    let (_browser, tokens) = approved_agent(&gw).await;
    let expires_at = gw
        .running
        .verifier
        .verify(&tokens.access, unix_now())
        .expect("verifies")
        .identity
        .expires_at;
    let left = expires_at - unix_now();
    assert!((110..=120).contains(&left), "{left} s left of 2 minutes");
    gw.stop().await;
}

#[tokio::test]
async fn a_person_may_allow_single_tools_which_are_all_the_agent_sees() {
    let gw = gateway().await;
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let client_id = register_public(&gw, "Cursor").await;
    // The screen offers each server's tools as the catalog recorded them (recorded off
    // the request path, so wait a moment for the first record).
    let path = agent::authorize_path(&client_id, agent::REDIRECT, &[]);
    let started = std::time::Instant::now();
    let page = loop {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.body);
        if page.contains("value=\"demo.read_note\"")
            || started.elapsed() > std::time::Duration::from_secs(5)
        {
            break page;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(page.contains("value=\"demo.read_note\""), "{}", page.body);
    assert!(
        page.contains("risk-high\">high</span>"),
        "risk suggested by annotations: {}",
        page.body
    );
    let tokens = approve(
        &gw,
        &browser,
        &client_id,
        &[],
        &[
            ("servers", "some"),
            ("tool", "demo.read_note"),
            ("tool", "demo.list_notes"),
            ("tool", "demo.not_a_tool"),
            ("duration", "1h"),
        ],
    )
    .await;
    assert_eq!(
        listed(&gw, &tokens.access).await,
        ["demo__list_notes", "demo__read_note"]
    );
    let reply = call(&gw, Some(&tokens.access), "demo__list_notes", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = call(
        &gw,
        Some(&tokens.access),
        "demo__write_note",
        json!({"title": "t", "body": "b"}),
    )
    .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let grant = gw
        .running
        .verifier
        .verify(&tokens.access, unix_now())
        .expect("verifies")
        .identity
        .grant
        .clone();
    let stored = Grants::new(gw.running.db.clone())
        .get(&grant)
        .await
        .expect("grant")
        .expect("stored");
    assert_eq!(
        stored.allow,
        ["demo.read_note", "demo.list_notes"],
        "a name the catalog does not know is not granted"
    );
    gw.stop().await;
}

#[tokio::test]
async fn revoking_the_refresh_token_ends_the_access_tokens_of_its_grant() {
    let gw = gateway().await;
    let (_browser, tokens) = approved_agent(&gw).await;
    let ok = call(&gw, Some(&tokens.access), "demo__list_notes", json!({})).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    // A client logging out revokes its refresh token only (RFC 7009 §2.1).
    let revoked = agent::http()
        .post(format!("{}/revoke", gw.public_url()))
        .form(&[
            ("token", tokens.refresh.as_str()),
            ("client_id", tokens.client_id.as_str()),
        ])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let reply = call(&gw, Some(&tokens.access), "demo__list_notes", json!({})).await;
    assert_unauthorized(&gw, &reply, Some("invalid_token"), "revoked");
    gw.stop().await;
}

#[tokio::test]
async fn an_upstream_trusted_in_the_configuration_keeps_its_annotated_classes() {
    let config = format!("{}trust_annotations = true\n", demo_upstream("demo"));
    let gw = TestGateway::start_protected(&config, Backend::current()).await;
    let (_browser, tokens) = approved_agent(&gw).await;
    // Recorded off the request path: wait for the catalog to classify the tools.
    let started = std::time::Instant::now();
    let names = loop {
        let names = listed(&gw, &tokens.access).await;
        if names.len() == 5 || started.elapsed() > std::time::Duration::from_secs(10) {
            break names;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(
        names,
        [
            "demo__delete_all_notes",
            "demo__list_notes",
            "demo__read_note",
            "demo__send_payment",
            "demo__write_note"
        ],
        "low to high, all within the default ceiling"
    );
    let trust = gw
        .running
        .catalog
        .catalog()
        .trust_of("demo")
        .await
        .expect("trust");
    assert_eq!(trust.map(|(by, _)| by), Some("configuration".to_owned()));
    gw.stop().await;
}
