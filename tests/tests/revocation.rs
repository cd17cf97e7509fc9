//! Revocation that reaches tokens: disabling a person (or an admin revoking all of their
//! agents) stops their access tokens, refresh tokens and held approvals at once; a
//! reused refresh token revokes the access tokens its family minted; `warrant keys
//! revoke` retires a compromised signing key at once.

use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use warrant_consent::approvals::{self, Approvals, CallKey};
use warrant_consent::token::{KeyRing, KeySettings};
use warrant_e2e::agent::{self, Tokens, register_public, token_for_grant};
use warrant_e2e::raw::Reply;
use warrant_e2e::{Backend, TestGateway, demo_upstream};
use warrant_idp::SystemClock;
use warrant_idp::users::{NewUser, Role, Status, User};

async fn gateway() -> TestGateway {
    let gw = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    gw.trust_annotations("demo").await;
    gw
}

async fn call(gw: &TestGateway, token: &str) -> Reply {
    warrant_e2e::raw::modern_call(&gw.url(), Some(token), "demo__list_notes", json!({})).await
}

fn message(reply: &Reply) -> String {
    reply.refusal(7)["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// A 401 `invalid_token` with the challenge, whose message has `words`.
fn assert_refused(reply: &Reply, words: &str) {
    assert_eq!(reply.status, 401, "{reply:?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(challenge.starts_with("Bearer "), "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    let text = message(reply);
    assert!(text.contains(words), "{words:?} in {text:?}");
}

/// Calls with `token` until it is refused (or `within` passed); the last reply and how
/// long it took.
async fn refused_within(gw: &TestGateway, token: &str, within: Duration) -> (Reply, Duration) {
    let started = Instant::now();
    loop {
        let reply = call(gw, token).await;
        if reply.status != 200 || started.elapsed() > within {
            return (reply, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn refresh(gw: &TestGateway, tokens: &Tokens, refresh: &str) -> (u16, Value) {
    agent::token_request(
        gw,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh),
            ("client_id", &tokens.client_id),
        ],
    )
    .await
}

/// A member with an agent allowed every demo tool: the person and the agent's tokens.
async fn member_with_agent(gw: &TestGateway, email: &str) -> (User, Tokens) {
    let person = gw
        .running
        .idp
        .users
        .create(NewUser {
            email: email.into(),
            display_name: "Bob".into(),
            role: Role::Member,
            status: Status::Active,
        })
        .await
        .expect("a member");
    let client = register_public(gw, "Bob's agent").await;
    let resource = format!("{}/mcp", gw.public_url());
    let tokens = token_for_grant(gw, &person.id, &client, &resource, &["demo.*"], &[]).await;
    (person, tokens)
}

fn approvals(gw: &TestGateway) -> Approvals {
    Approvals::new(
        gw.running.db.clone(),
        Arc::new(SystemClock),
        approvals::DEFAULT_TIMEOUT,
    )
}

/// The admin's browser posts one of the user page's forms, as a person clicking it.
async fn post_user_form(
    browser: &warrant_e2e::web::Browser,
    user: &str,
    action: &str,
    fields: &[(&str, &str)],
) -> warrant_e2e::web::Page {
    let page = browser.get(&format!("/admin/users/{user}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf().expect("a CSRF token on the user page");
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    let done = browser
        .post_form(&format!("/admin/users/{user}/{action}"), &form)
        .await;
    let page = if done.status == 303 {
        browser.follow(done).await
    } else {
        done
    };
    assert_eq!(page.status, 200, "{}", page.body);
    page
}

#[tokio::test]
async fn disabling_a_person_on_the_user_page_stops_their_agents_at_once() {
    let gw = gateway().await;
    let (admin, _) = agent::first_admin_signed_in(&gw).await;
    let (bob, tokens) = member_with_agent(&gw, "bob@example.com").await;
    let ok = call(&gw, &tokens.access).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let grant = gw
        .running
        .verifier
        .verify(&tokens.access, agent::unix_now())
        .expect("verifies")
        .identity
        .grant
        .clone();
    let (held, _) = approvals(&gw)
        .request(
            &CallKey {
                user_id: bob.id.clone(),
                client_id: tokens.client_id.clone(),
                grant_id: grant,
                server: "demo".into(),
                tool: "delete_all_notes".into(),
                args_hash: approvals::args_hash(None),
            },
            &approvals::Shown::of(None),
        )
        .await
        .expect("a held call");

    // The admin disables Bob on his page: his agent's very next call is refused, and
    // says why.
    post_user_form(&admin, &bob.id, "status", &[("status", "disabled")]).await;
    let reply = call(&gw, &tokens.access).await;
    assert_refused(&reply, "bob@example.com is disabled");
    let (status, body) = refresh(&gw, &tokens, &tokens.refresh).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let held = approvals(&gw)
        .get(&held.id)
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(held.status, approvals::Status::Withdrawn, "{held:?}");

    // Enabled again, nothing old comes back: Bob approves his agent anew.
    post_user_form(&admin, &bob.id, "status", &[("status", "active")]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = call(&gw, &tokens.access).await;
    assert_refused(&reply, "revoked");
    let (status, body) = refresh(&gw, &tokens, &tokens.refresh).await;
    assert_eq!(status, 400, "{body}");
    gw.stop().await;
}

#[tokio::test]
async fn a_person_disabled_elsewhere_is_refused_within_a_second() {
    let gw = gateway().await;
    let (bob, tokens) = member_with_agent(&gw, "bob@example.com").await;
    let ok = call(&gw, &tokens.access).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    // Straight in the user store, as another replica (or any other path) would: the
    // grants are untouched, the live view of disabled people still refuses the token.
    gw.running
        .idp
        .users
        .set_status(&bob.id, Status::Disabled)
        .await
        .expect("disable");
    let (reply, took) = refused_within(&gw, &tokens.access, Duration::from_secs(5)).await;
    assert_refused(&reply, "bob@example.com is disabled");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let (status, body) = refresh(&gw, &tokens, &tokens.refresh).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("bob@example.com is disabled")),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_revokes_all_of_a_persons_agents_on_the_user_page() {
    let gw = gateway().await;
    let (admin, _) = agent::first_admin_signed_in(&gw).await;
    let (bob, first) = member_with_agent(&gw, "bob@example.com").await;
    let client = register_public(&gw, "Bob's other agent").await;
    let resource = format!("{}/mcp", gw.public_url());
    let second = token_for_grant(&gw, &bob.id, &client, &resource, &["demo.*"], &[]).await;
    let (_carol, third) = member_with_agent(&gw, "carol@example.com").await;
    for tokens in [&first, &second, &third] {
        let ok = call(&gw, &tokens.access).await;
        assert_eq!(ok.status, 200, "{ok:?}");
    }

    let page = post_user_form(&admin, &bob.id, "agents/revoke", &[]).await;
    assert!(
        page.contains("2 agent grants of bob@example.com revoked"),
        "{}",
        page.body
    );
    for tokens in [&first, &second] {
        assert_refused(&call(&gw, &tokens.access).await, "revoked");
        let (status, body) = refresh(&gw, tokens, &tokens.refresh).await;
        assert_eq!(status, 400, "{body}");
    }
    let ok = call(&gw, &third.access).await;
    assert_eq!(ok.status, 200, "another person's agent goes on: {ok:?}");
    let bob_now = gw
        .running
        .idp
        .users
        .get(&bob.id)
        .await
        .expect("read")
        .expect("bob");
    assert_eq!(bob_now.status, Status::Active, "Bob himself stays active");
    gw.stop().await;
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_access_tokens_of_its_family() {
    let gw = gateway().await;
    let (_bob, tokens) = member_with_agent(&gw, "bob@example.com").await;
    // The client refreshes once: a new access token, a new refresh token.
    let (status, body) = refresh(&gw, &tokens, &tokens.refresh).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access").to_owned();
    assert_eq!(call(&gw, &access).await.status, 200);
    assert_eq!(call(&gw, &tokens.access).await.status, 200);

    // A stolen copy of the first refresh token is used: the whole family ends, and the
    // access tokens it minted with it.
    let (status, body) = refresh(&gw, &tokens, &tokens.refresh).await;
    assert_eq!(status, 400, "{body}");
    for token in [&access, &tokens.access] {
        let (reply, took) = refused_within(&gw, token, Duration::from_secs(5)).await;
        assert_refused(&reply, "revoked");
        assert!(took < Duration::from_millis(1500), "{took:?}");
    }
    gw.stop().await;
}
fn stdout_of(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn warrant_keys_revoke_refuses_the_tokens_of_a_key_within_a_second() {
    let gw = gateway().await;
    let (_bob, tokens) = member_with_agent(&gw, "bob@example.com").await;
    assert_eq!(call(&gw, &tokens.access).await.status, 200);
    let kid = gw.running.keys.active_kid().expect("an active key");

    let out = stdout_of(&gw.warrant(&["keys", "revoke", &kid.to_string()], "").await);
    assert!(out.contains(&format!("key {kid} is revoked")), "{out}");
    let (reply, took) = refused_within(&gw, &tokens.access, Duration::from_secs(5)).await;
    assert_refused(&reply, &format!("token signing key {kid} was revoked"));
    assert!(took < Duration::from_millis(2500), "{took:?}");

    // A new key signs from now on: a refresh gives a token that works.
    let (status, body) = refresh(&gw, &tokens, &tokens.refresh).await;
    assert_eq!(status, 200, "{body}");
    let fresh = body["access_token"].as_str().expect("access");
    assert_eq!(call(&gw, fresh).await.status, 200);
    assert_ne!(gw.running.keys.active_kid(), Some(kid));

    // The list says so, and the key is no longer published.
    let list = stdout_of(&gw.warrant(&["keys", "list"], "").await);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&kid.to_string()) && l.contains("revoked")),
        "{list}"
    );
    let stored = KeyRing::list_stored(&gw.running.db, &KeySettings::default())
        .await
        .expect("list");
    assert!(
        stored
            .iter()
            .any(|k| k.kid == kid && k.revoked_at.is_some()),
        "{stored:?}"
    );
    assert!(
        !gw.running.keys.published().iter().any(|k| k.kid == kid),
        "a revoked key is not published"
    );
    // An unknown key id is refused with words.
    let unknown = gw.warrant(&["keys", "revoke", "999"], "").await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no token signing key 999"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    gw.stop().await;
}
