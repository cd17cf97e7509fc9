//! The person's own sign-in identity passed through to an upstream that trusts the same
//! OpenID provider (`auth.mode = "person_sso"`): the test provider (`oidc-provider`,
//! token exchange enabled there) signs the person in to Warrant; Warrant keeps their
//! sign-in token and, on each call of the upstream, gives it a token the provider issued
//! for the upstream's audience in exchange (RFC 8693). The upstream (`sso_upstream`)
//! takes only tokens of that provider for its audience, and says whose identity a call
//! came with. The agent's own Warrant token never reaches it.

use serde_json::{Value, json};
use warrant_e2e::agent;
use warrant_e2e::at_rest::{database_bytes, in_clear};
use warrant_e2e::oidc::{Account, OidcProvider, OidcTest, ProviderOptions, sign_in};
use warrant_e2e::peers::{ChildGuard, fixture_with};
use warrant_e2e::raw::{Reply, modern_call};
use warrant_e2e::web::Browser;

const AUDIENCE: &str = "https://wiki.example.com";

fn error_of(reply: &Reply) -> Value {
    reply.response(7)["error"].clone()
}

/// `sso_upstream` trusting `issuer` for [`AUDIENCE`] (and, with `userinfo`, any token
/// the provider's userinfo accepts): the process and its URL.
async fn sso_upstream(issuer: &str, userinfo: bool) -> (ChildGuard, String) {
    let mut args = vec!["--issuer", issuer, "--audience", AUDIENCE];
    if userinfo {
        args.push("--userinfo");
    }
    args.extend(["--listen", "127.0.0.1:0"]);
    fixture_with("sso_upstream", &args).await
}

/// Signs `login` in with the provider and approves an agent for every server: the
/// browser, the user id and the agent's token.
async fn signed_in_with_agent(
    test: &OidcTest,
    login: &str,
    email: &str,
) -> (Browser, String, String) {
    let browser = Browser::new(&test.gw.public_url());
    let done = sign_in(&browser, test, login).await;
    assert_eq!(done.status, 303, "signed in: {}", done.body);
    let user = test
        .gw
        .running
        .idp
        .users
        .by_email(email)
        .await
        .expect("lookup")
        .expect("provisioned at sign-in")
        .id;
    let client = agent::register_public(&test.gw, &format!("{login}'s agent")).await;
    let tokens = agent::approve(
        &test.gw,
        &browser,
        &client,
        &[],
        &[("servers", "all"), ("duration", "1h")],
    )
    .await;
    (browser, user, tokens.access)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_persons_own_sign_in_reaches_an_upstream_that_trusts_the_same_provider() {
    let provider = OidcProvider::start(&ProviderOptions {
        accounts: vec![
            Account::new("alice", "alice@example.com", &[]),
            Account::new("bob", "bob@example.com", &[]),
        ],
        token_exchange: true,
        ..ProviderOptions::default()
    })
    .await;
    let (_wiki, wiki_url) = sso_upstream(&provider.issuer, false).await;
    let upstreams = format!(
        "[upstreams.wiki]\nurl = {wiki_url:?}\n[upstreams.wiki.auth]\nmode = \"person_sso\"\n\
         audience = {AUDIENCE:?}\n"
    );
    let test = OidcTest::start_protected(provider, "provision = true", &upstreams).await;
    let gw = &test.gw;

    // Alice signs in with the provider: Warrant keeps her sign-in token, sealed.
    let (browser, alice, alice_token) =
        signed_in_with_agent(&test, "alice", "alice@example.com").await;
    let (record, _) = gw
        .running
        .vault
        .fetch(&alice, "oidc:corp", "sign_in_token")
        .await
        .expect("vault")
        .expect("her sign-in token is kept");
    let record: Value = serde_json::from_slice(&record).expect("json");
    let sign_in_token = record["access_token"].as_str().expect("a token").to_owned();
    assert!(!in_clear(&database_bytes(gw).await, &sign_in_token));

    // The upstream's tools are listed through her connection; her agent's call reaches
    // it with a token the provider issued for the upstream, naming her.
    agent::review_low(&test.gw, "wiki", &["whoami", "refused"]).await;
    agent::wait_until_listed(gw, &alice_token, "wiki__whoami").await;
    let reply = modern_call(&gw.url(), Some(&alice_token), "wiki__whoami", json!({})).await;
    assert_eq!(
        reply.result_text(7),
        format!("alice@example.com (sub alice) for {AUDIENCE}"),
        "{reply:?}"
    );
    let page = browser.get("/account/connections").await;
    assert!(
        page.contains("With your sign-in at Corp SSO, signed in on"),
        "{}",
        page.body
    );
    assert!(page.contains("It expires on "), "{}", page.body);

    // A person who signed in another way has no sign-in there to pass on: sent to the
    // page, which offers the provider's sign-in.
    let (bob, bob_token) = agent::member_with_agent(gw, "carol@example.com", &["wiki.*"]).await;
    let refused = modern_call(&gw.url(), Some(&bob_token), "wiki__whoami", json!({})).await;
    let error = error_of(&refused);
    assert_eq!(error["code"], -32015, "{refused:?}");
    assert!(
        error["data"]["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("/account/connections?upstream=wiki")),
        "{error}"
    );
    assert!(
        gw.running
            .vault
            .fetch(&bob, "oidc:corp", "sign_in_token")
            .await
            .expect("vault")
            .is_none()
    );

    // Her sign-in expired: the call says to sign in again, with the link.
    let mut expired = record.clone();
    expired["expires_at"] = json!(agent::unix_now() - 1);
    gw.running
        .vault
        .put(
            &alice,
            "oidc:corp",
            "sign_in_token",
            &serde_json::to_vec(&expired).expect("json"),
        )
        .await
        .expect("store");
    gw.running.gateway.credential_changed(&alice, "wiki");
    let refused = modern_call(&gw.url(), Some(&alice_token), "wiki__whoami", json!({})).await;
    let error = error_of(&refused);
    assert_eq!(error["code"], -32015, "{refused:?}");
    assert_eq!(error["data"]["reconnect"], true, "{error}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("sign-in at Corp SSO has expired")),
        "{error}"
    );
    let page = browser.get("/account/connections?upstream=wiki").await;
    assert!(page.contains("must reconnect"), "{}", page.body);
    assert!(
        page.contains("/auth/oidc/corp/start?next="),
        "{}",
        page.body
    );

    // Signing in again serves again.
    let again = sign_in(&browser, &test, "alice").await;
    assert_eq!(again.status, 303, "{}", again.body);
    let reply = modern_call(&gw.url(), Some(&alice_token), "wiki__whoami", json!({})).await;
    assert!(
        reply
            .result_text(7)
            .starts_with("alice@example.com (sub alice)"),
        "{reply:?}"
    );
    test.stop().await;
}

/// Where the admin allowed the sign-in token itself (`forward_sign_in_token`, for a
/// provider without token exchange: this one has none), the upstream gets exactly that
/// token, which an upstream that takes every token of its provider accepts.
#[tokio::test(flavor = "multi_thread")]
async fn the_sign_in_token_itself_goes_only_where_the_admin_allowed_it() {
    let provider = OidcProvider::start(&ProviderOptions {
        accounts: vec![Account::new("alice", "alice@example.com", &[])],
        ..ProviderOptions::default()
    })
    .await;
    // The upstream takes any token the provider's userinfo endpoint accepts.
    let (_open, open_url) = sso_upstream(&provider.issuer, true).await;
    let upstreams = format!(
        "[upstreams.open]\nurl = {open_url:?}\n[upstreams.open.auth]\nmode = \"person_sso\"\n\
         forward_sign_in_token = true\n"
    );
    let test = OidcTest::start_protected(provider, "provision = true", &upstreams).await;
    let gw = &test.gw;
    let (_browser, _alice, alice_token) =
        signed_in_with_agent(&test, "alice", "alice@example.com").await;
    agent::review_low(&test.gw, "open", &["whoami", "refused"]).await;
    agent::wait_until_listed(gw, &alice_token, "open__whoami").await;
    let reply = modern_call(&gw.url(), Some(&alice_token), "open__whoami", json!({})).await;
    assert!(
        reply
            .result_text(7)
            .starts_with("alice@example.com (sub alice)"),
        "{reply:?}"
    );
    test.stop().await;
}
