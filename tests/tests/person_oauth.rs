//! Each person's own OAuth connection to an upstream (`auth.mode = "person_oauth"`):
//! Warrant A's upstream is Warrant B, whose `/mcp` takes only B's own tokens. A person
//! of A connects their account at B on A's "Connected accounts" page: A finds B's
//! authorization server from B's `401`, registers there, sends the person through B's
//! consent screen (PKCE `S256`, `state`, `resource`), exchanges the code and keeps the
//! tokens in its vault. Their agents then call B's tools through A with that person's B
//! token, which the agents never see; A refreshes it before it expires, and a connection
//! B no longer accepts is reported as "reconnect" with the link, never silently.

use std::time::Duration;

use serde_json::{Value, json};
use warrant_e2e::agent::{self, Tokens};
use warrant_e2e::at_rest::{database_bytes, in_clear};
use warrant_e2e::raw::{Reply, modern_call};
use warrant_e2e::web::Browser;
use warrant_e2e::{Backend, TestGateway, demo_upstream};

const TOOLS: [&str; 2] = ["read_note", "write_note"];

fn error_of(reply: &Reply) -> Value {
    reply.response(7)["error"].clone()
}

/// `token`'s agent reads the note "plan" through A until it is refused (B stops
/// accepting a revoked connection within its revocation refresh): that refusal, which
/// is never B's `401` passed on.
async fn first_refusal(a: &TestGateway, token: &str) -> Reply {
    for _ in 0..100 {
        let reply = read_plan(a, token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if !error_of(&reply).is_null() {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("B never stopped accepting the revoked connection");
}

/// `token`'s agent reads the note "plan" through A.
async fn read_plan(a: &TestGateway, token: &str) -> Reply {
    modern_call(
        &a.url(),
        Some(token),
        "b__demo__read_note",
        json!({"title": "plan"}),
    )
    .await
}

/// The tokens A keeps for `user`'s connection to `b`, as stored (JSON), and the record's
/// version.
async fn stored(a: &TestGateway, user: &str) -> Option<(Value, i64)> {
    let (value, version) = a
        .running
        .vault
        .fetch(user, "b", "oauth_token")
        .await
        .expect("vault")?;
    Some((serde_json::from_slice(&value).expect("json"), version))
}

/// Makes `user`'s stored token look expired (as it would be an hour later).
async fn expire(a: &TestGateway, user: &str) {
    let (mut record, _) = stored(a, user).await.expect("a connection");
    record["expires_at"] = json!(agent::unix_now() - 1);
    a.running
        .vault
        .put(
            user,
            "b",
            "oauth_token",
            &serde_json::to_vec(&record).expect("json"),
        )
        .await
        .expect("store");
    a.running.gateway.credential_changed(user, "b");
}

/// The person signed in to `a_browser` connects their account at B (signed in to
/// `b_browser`) from A's page, with the button labelled `button`: the `Location` A sends
/// them to first.
async fn connect_account(a_browser: &Browser, b_browser: &Browser, button: &str) -> String {
    let page = a_browser.get("/account/connections").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains(button), "{}", page.body);
    let csrf = page.csrf().expect("a CSRF token");
    let sent = a_browser
        .post_form("/account/connections/b/oauth", &[("csrf", &csrf)])
        .await;
    let authorize = sent
        .location()
        .unwrap_or_else(|| panic!("sent to B: {} {}", sent.status, sent.body));
    let back = agent::consent_to(
        b_browser,
        &authorize,
        &[("servers", "all"), ("duration", "1h")],
    )
    .await;
    let done = a_browser.get(&back).await;
    assert_eq!(
        done.location().as_deref(),
        Some("/account/connections"),
        "{} {}",
        done.status,
        done.body
    );
    authorize
}

#[tokio::test(flavor = "multi_thread")]
async fn a_person_connects_their_account_with_oauth_and_agents_call_with_their_token() {
    // B: its /mcp takes B's own tokens; the demo server behind it.
    let b = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    let b_tools: Vec<String> = TOOLS.iter().map(|t| (*t).to_owned()).collect();
    agent::review_low(&b, "demo", &b_tools).await;
    let (b_browser, b_admin) = agent::first_admin_signed_in(&b).await;

    // A: upstream `b` is B; each person connects their own account there.
    let config = format!(
        "[upstreams.b]\nurl = {:?}\n[upstreams.b.auth]\nmode = \"person_oauth\"\n",
        b.url()
    );
    let a = TestGateway::start_protected(&config, Backend::current()).await;
    let agent::AdminAgent {
        browser: a_browser,
        admin: alice,
        tokens: Tokens {
            access: alice_token,
            ..
        },
    } = agent::admin_approves_agent(&a, "alice's agent").await;
    let (_bob, bob_token) = agent::member_with_agent(&a, "bob@example.com", &["b.*"]).await;

    // Alice connects: A sends her to B's authorization server, the MCP way.
    let authorize = connect_account(&a_browser, &b_browser, "Connect your account at b").await;
    let request = agent::query_of(&authorize);
    assert!(authorize.starts_with(&b.public_url()), "{authorize}");
    assert_eq!(request["code_challenge_method"], "S256", "{authorize}");
    assert!(request["code_challenge"].len() >= 43, "{authorize}");
    assert!(request["state"].len() >= 16, "{authorize}");
    assert_eq!(request["resource"], b.url(), "{authorize}");
    assert_eq!(
        request["redirect_uri"],
        format!("{}/account/connections/oauth/callback", a.public_url()),
        "{authorize}"
    );
    let page = a_browser.get("/account/connections").await;
    assert!(
        page.contains("Your account at b is connected"),
        "{}",
        page.body
    );
    assert!(
        page.contains("Warrant renews it before it expires"),
        "{}",
        page.body
    );
    // A's registration at B, and the grant Alice gave it there.
    let registered = warrant_consent::oauth::Clients::new(b.running.db.clone())
        .get(&request["client_id"])
        .await
        .expect("lookup")
        .expect("B knows A's registration");
    assert_eq!(registered.name, "Warrant");

    // The tokens are sealed in A's vault: neither is in A's database in clear.
    let (record, first_version) = stored(&a, &alice).await.expect("stored");
    let access = record["access_token"].as_str().expect("an access token");
    let refresh = record["refresh_token"].as_str().expect("a refresh token");
    let bytes = database_bytes(&a).await;
    assert!(!in_clear(&bytes, access) && !in_clear(&bytes, refresh));

    // B's tools are listed through Alice's connection; her agent calls them with her
    // B token (B's grant for A is Alice's at B).
    let a_tools: Vec<String> = TOOLS.iter().map(|t| format!("demo__{t}")).collect();
    agent::review_low(&a, "b", &a_tools).await;
    agent::wait_until_listed(&a, &alice_token, "b__demo__write_note").await;
    let wrote = modern_call(
        &a.url(),
        Some(&alice_token),
        "b__demo__write_note",
        json!({"title": "plan", "body": "ship it"}),
    )
    .await;
    assert!(error_of(&wrote).is_null(), "{wrote:?}");
    let read = read_plan(&a, &alice_token).await;
    assert!(read.result_text(7).contains("ship it"), "{read:?}");
    let grants = warrant_consent::grants::Grants::new(b.running.db.clone());
    assert!(
        grants
            .any_for(&b_admin, &request["client_id"])
            .await
            .expect("grants"),
        "B served A's calls under the grant Alice gave A at B"
    );

    // Bob connected nothing: sent to the page, never served with Alice's token.
    let refused = modern_call(
        &a.url(),
        Some(&bob_token),
        "b__demo__read_note",
        json!({"title": "plan"}),
    )
    .await;
    let error = error_of(&refused);
    assert_eq!(error["code"], -32015, "{refused:?}");
    let link = format!("{}/account/connections?upstream=b", a.public_url());
    assert_eq!(error["data"]["url"], link.as_str(), "{error}");
    // The link opens the page with B first, its button focused.
    let asked = a_browser.get(&link).await;
    assert!(
        asked.contains("An agent asked to use b for you: connect your account to continue."),
        "{}",
        asked.body
    );

    // The token about to expire is refreshed before the call, and stored anew.
    expire(&a, &alice).await;
    let read = read_plan(&a, &alice_token).await;
    assert!(read.result_text(7).contains("ship it"), "{read:?}");
    let (renewed, version) = stored(&a, &alice).await.expect("stored");
    assert!(version > first_version + 1, "refreshed and stored");
    assert_ne!(renewed["access_token"], record["access_token"]);
    assert!(renewed["dead"].is_null(), "{}", renewed["dead"]);

    // Alice's grant at B is revoked there: the connection is reported as one to make
    // again, with the link, and the page says so.
    grants
        .revoke_all_of(&b_admin, agent::unix_now())
        .await
        .expect("revoke at B");
    // B stops accepting the access token within its revocation refresh: A's next call
    // meets B's 401, tries to renew the token, is refused that too, and says so. The
    // client never sees B's 401 as its own.
    let refused = first_refusal(&a, &alice_token).await;
    let error = error_of(&refused);
    assert_eq!(error["code"], -32015, "{refused:?}");
    assert_eq!(error["data"]["reconnect"], true, "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("must be made again") && message.contains(&link),
        "{message}"
    );
    let page = a_browser.get("/account/connections").await;
    assert!(page.contains("must reconnect"), "{}", page.body);
    // Marked: the next call is told at once, without asking B again.
    let again = read_plan(&a, &alice_token).await;
    assert_eq!(error_of(&again)["data"]["reconnect"], true, "{again:?}");
    assert!(
        page.contains("Reconnect your account at b"),
        "{}",
        page.body
    );

    // Connecting again serves again; disconnecting removes the tokens.
    connect_account(&a_browser, &b_browser, "Reconnect your account at b").await;
    let read = read_plan(&a, &alice_token).await;
    assert!(read.result_text(7).contains("ship it"), "{read:?}");
    let page = a_browser.get("/account/connections").await;
    let csrf = page.csrf().expect("a CSRF token");
    let gone = a_browser
        .post_form("/account/connections/b/remove", &[("csrf", &csrf)])
        .await;
    assert_eq!(gone.location().as_deref(), Some("/account/connections"));
    assert!(stored(&a, &alice).await.is_none(), "the tokens are removed");
    let refused = read_plan(&a, &alice_token).await;
    assert_eq!(error_of(&refused)["code"], -32015, "{refused:?}");

    a.stop().await;
    b.stop().await;
}

/// A callback that this session did not start, or replayed, changes nothing. Here
/// Warrant names itself at B by its client ID metadata document instead of registering.
#[tokio::test(flavor = "multi_thread")]
async fn a_callback_this_session_did_not_start_is_refused() {
    let b = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    let config = format!(
        "[upstreams.b]\nurl = {:?}\n[upstreams.b.auth]\nmode = \"person_oauth\"\n\
         registration = \"metadata_document\"\n",
        b.url()
    );
    let a = TestGateway::start_protected(&config, Backend::current()).await;
    let (a_browser, alice) = agent::first_admin_signed_in(&a).await;
    let (b_browser, _) = agent::first_admin_signed_in(&b).await;
    let forged = a_browser
        .get("/account/connections/oauth/callback?code=x&state=forged")
        .await;
    assert_eq!(forged.status, 400, "{}", forged.body);
    assert!(stored(&a, &alice).await.is_none());

    // A real one works once; the same callback again is refused.
    let page = a_browser.get("/account/connections").await;
    let csrf = page.csrf().expect("a CSRF token");
    let sent = a_browser
        .post_form("/account/connections/b/oauth", &[("csrf", &csrf)])
        .await;
    let authorize = sent.location().expect("sent to B");
    let document = format!("{}/oauth/upstream-client.json", a.public_url());
    assert_eq!(
        agent::query_of(&authorize)["client_id"],
        document,
        "{authorize}"
    );
    let described = agent::http()
        .get(&document)
        .send()
        .await
        .expect("the document answers");
    let described: Value = described.json().await.expect("json");
    assert_eq!(described["client_id"], document.as_str());
    assert_eq!(
        described["redirect_uris"][0],
        format!("{}/account/connections/oauth/callback", a.public_url())
    );
    let back = agent::consent_to(
        &b_browser,
        &authorize,
        &[("servers", "all"), ("duration", "1h")],
    )
    .await;
    let done = a_browser.get(&back).await;
    assert_eq!(done.location().as_deref(), Some("/account/connections"));
    assert!(stored(&a, &alice).await.is_some());
    let again = a_browser.get(&back).await;
    assert_eq!(again.status, 400, "{}", again.body);
    // Without the CSRF token nothing starts.
    let no_csrf = a_browser
        .post_form("/account/connections/b/oauth", &[])
        .await;
    assert!(no_csrf.status >= 400, "{}", no_csrf.status);
    a.stop().await;
    b.stop().await;
}

/// With the direct path off (every call through rmcp's client, as for an `https`
/// upstream), a connection the upstream stops accepting is reported the same way: B's
/// `401` sends the call back to the credentials stage, whose renewal B refuses too.
#[tokio::test(flavor = "multi_thread")]
async fn through_rmcp_a_revoked_connection_is_reported_as_one_to_make_again() {
    let b = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    let b_tools: Vec<String> = TOOLS.iter().map(|t| (*t).to_owned()).collect();
    agent::review_low(&b, "demo", &b_tools).await;
    let (b_browser, b_admin) = agent::first_admin_signed_in(&b).await;
    let config = format!(
        "[upstreams.b]\nurl = {:?}\ndirect = false\n[upstreams.b.auth]\nmode = \"person_oauth\"\n",
        b.url()
    );
    let a = TestGateway::start_protected(&config, Backend::current()).await;
    let agent::AdminAgent {
        browser: a_browser,
        tokens: Tokens {
            access: alice_token,
            ..
        },
        ..
    } = agent::admin_approves_agent(&a, "alice's agent").await;
    connect_account(&a_browser, &b_browser, "Connect your account at b").await;
    let a_tools: Vec<String> = TOOLS.iter().map(|t| format!("demo__{t}")).collect();
    agent::review_low(&a, "b", &a_tools).await;
    agent::wait_until_listed(&a, &alice_token, "b__demo__read_note").await;
    let read = read_plan(&a, &alice_token).await;
    assert!(error_of(&read).is_null(), "{read:?}");
    assert_eq!(
        a.running.gateway.direct_calls(),
        0,
        "every call through rmcp"
    );

    warrant_consent::grants::Grants::new(b.running.db.clone())
        .revoke_all_of(&b_admin, agent::unix_now())
        .await
        .expect("revoke at B");
    let refused = first_refusal(&a, &alice_token).await;
    let error = error_of(&refused);
    assert_eq!(error["code"], -32015, "{refused:?}");
    assert_eq!(error["data"]["reconnect"], true, "{error}");
    a.stop().await;
    b.stop().await;
}
