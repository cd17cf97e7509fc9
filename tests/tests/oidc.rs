//! Sign-in with OIDC against a real OpenID provider (`oidc-provider`, started per test
//! on loopback): the full authorization-code + PKCE flow, just-in-time provisioning,
//! groups and roles, linking, and every refusal the issue lists — each a 4xx page in
//! plain words that leaves no session behind. Runs on `Backend::current()`.

use std::time::{Duration, Instant};
use warrant_e2e::oidc::{
    Account, Consent, OidcTest, ProviderOptions, authorize, query_of, sign_in, with_param,
};

use warrant_e2e::web::{Browser, Page};
use warrant_e2e::{Backend, TestGateway, demo_upstream};
use warrant_idp::users::{ADMIN_SOURCE, NewUser, Role, Status};

const SCOPES: &str = "scopes = [\"email\", \"profile\", \"groups\"]\n";

fn options(accounts: Vec<Account>) -> ProviderOptions {
    ProviderOptions {
        accounts,
        ..ProviderOptions::default()
    }
}

fn alice() -> Account {
    Account::new("alice", "alice@example.com", &["eng", "warrant-admins"])
}

/// The browser is not signed in: personal pages send it to the sign-in page.
async fn assert_no_session(browser: &Browser) {
    let account = browser.get("/account").await;
    assert_eq!(account.status, 303, "no session expected: {}", account.body);
    assert!(
        account.location().is_some_and(|l| l.starts_with("/signin")),
        "{:?}",
        account.location()
    );
}

/// A refusal page: the status, the words the person reads, no internals.
fn assert_refused(page: &Page, status: u16, words: &str) {
    assert_eq!(page.status, status, "{}", page.body);
    assert!(page.contains(words), "expected {words:?} in {}", page.body);
    for internal in ["nonce", "audience", "signature", "invalid_grant", "Crypto"] {
        assert!(
            !page.body.contains(internal),
            "the page leaks {internal:?}: {}",
            page.body
        );
    }
}

const DID_NOT_COMPLETE: &str = "Sign-in with Corp SSO did not complete";

#[tokio::test]
async fn full_flow_provisions_maps_groups_and_links() {
    let test = OidcTest::start(
        options(vec![alice()]),
        &format!("{SCOPES}admin_groups = [\"warrant-admins\"]\n"),
    )
    .await;
    let idp = &test.gw.running.idp;
    let browser = test.gw.browser();

    // An anonymous visit first: the session cookie before sign-in.
    let signin = browser.get("/signin").await;
    assert!(signin.contains("Sign in with Corp SSO"), "{}", signin.body);
    assert!(
        signin.contains("/auth/oidc/corp/start?next="),
        "{}",
        signin.body
    );
    let before = browser.cookies();
    assert!(before.contains("warrant_session="), "{before}");

    let callback = authorize(
        &browser,
        &test,
        Some("/admin/users"),
        "alice",
        Consent::Allow,
    )
    .await;
    let params = query_of(&callback);
    assert!(params.iter().any(|(k, _)| k == "code"));
    assert!(params.iter().any(|(k, _)| k == "state"));
    let landed = browser.get(&callback).await;
    assert_eq!(landed.status, 303, "{}", landed.body);
    assert_eq!(
        landed.location().as_deref(),
        Some("/admin/users"),
        "next is restored"
    );
    let after = browser.cookies();
    assert!(after.contains("warrant_session="), "{after}");
    assert_ne!(
        before, after,
        "the session id changes at sign-in (no fixation)"
    );

    let account = browser.get("/account").await;
    assert_eq!(account.status, 200, "{}", account.body);
    assert!(account.contains("alice@example.com"), "{}", account.body);
    assert!(
        account.contains("oidc:corp"),
        "the session says how: {}",
        account.body
    );
    let admin = browser.get("/admin/users").await;
    assert_eq!(
        admin.status, 200,
        "admin_groups made alice an admin: {}",
        admin.body
    );

    // Provisioned just in time, as an admin, with the provider's groups recorded.
    let user = idp
        .users
        .by_email("alice@example.com")
        .await
        .expect("lookup")
        .expect("alice was provisioned");
    assert_eq!(user.role, Role::Admin);
    assert_eq!(user.status, Status::Active);
    assert_eq!(user.display_name, "alice tester");
    assert!(user.last_login_at.is_some());
    assert_eq!(
        idp.users.groups(&user.id).await.expect("groups"),
        ["eng", "warrant-admins"]
    );
    let linked = idp
        .users
        .by_identity("corp", "alice")
        .await
        .expect("lookup")
        .expect("the provider's subject is linked");
    assert_eq!(linked.id, user.id);

    // Groups from the provider are replaced at each sign-in; an admin's are kept.
    idp.users
        .set_groups(&user.id, "oidc:corp", &["stale".into()])
        .await
        .expect("set groups");
    idp.users
        .set_groups(&user.id, ADMIN_SOURCE, &["by-admin".into()])
        .await
        .expect("set groups");

    // A second sign-in, from another browser: the same user, not a new one.
    let other = test.gw.browser();
    let again = sign_in(&other, &test, "alice").await;
    assert_eq!(again.status, 303, "{}", again.body);
    assert_eq!(again.location().as_deref(), Some("/account"));
    let users = idp.users.list().await.expect("list");
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0].id, user.id);
    assert_eq!(
        idp.users.groups(&user.id).await.expect("groups"),
        ["by-admin", "eng", "warrant-admins"]
    );
    let sessions = idp
        .sessions
        .list_for_user(&user.id)
        .await
        .expect("sessions");
    assert_eq!(sessions.len(), 2, "one session per browser");
    assert!(sessions.iter().all(|s| s.method == "oidc:corp"));

    test.stop().await;
}

#[tokio::test]
async fn claims_from_the_id_token_and_roles_follow_admin_groups() {
    // The provider puts email, name and groups in the ID token itself; Bob is not in
    // an admin group, so an admin role he had is taken back.
    let bob = Account::new("bob", "Bob@Example.com", &["eng"]);
    let test = OidcTest::start(
        ProviderOptions {
            accounts: vec![bob],
            full_id_token: true,
            ..ProviderOptions::default()
        },
        &format!("{SCOPES}admin_groups = [\"warrant-admins\"]\nprovision = false\n"),
    )
    .await;
    let idp = &test.gw.running.idp;
    // An existing user (created by an admin), matched by email and then linked.
    let existing = idp
        .users
        .create(NewUser {
            email: "bob@example.com".into(),
            display_name: "Bob".into(),
            role: Role::Admin,
            status: Status::Invited,
        })
        .await
        .expect("create");

    let browser = test.gw.browser();
    let landed = sign_in(&browser, &test, "bob").await;
    assert_eq!(landed.status, 303, "{}", landed.body);
    let user = idp
        .users
        .get(&existing.id)
        .await
        .expect("get")
        .expect("bob");
    assert_eq!(user.role, Role::Member, "not in admin_groups");
    assert_eq!(
        user.status,
        Status::Active,
        "an invited user becomes active"
    );
    assert_eq!(idp.users.groups(&user.id).await.expect("groups"), ["eng"]);
    assert!(
        idp.users
            .by_identity("corp", "bob")
            .await
            .expect("lookup")
            .is_some()
    );
    let account = browser.get("/account").await;
    assert!(account.contains("bob@example.com"), "{}", account.body);

    test.stop().await;
}

/// A provider that answers with a tampered ID token: refused, no session, no user.
async fn refused_token(misbehave: &'static str) {
    let test = OidcTest::start(
        ProviderOptions {
            accounts: vec![alice()],
            misbehave: Some(misbehave),
            ..ProviderOptions::default()
        },
        SCOPES,
    )
    .await;
    let browser = test.gw.browser();
    let page = sign_in(&browser, &test, "alice").await;
    assert_refused(&page, 400, DID_NOT_COMPLETE);
    assert_no_session(&browser).await;
    assert!(
        test.gw
            .running
            .idp
            .users
            .list()
            .await
            .expect("list")
            .is_empty(),
        "{misbehave}: nobody was provisioned"
    );
    test.stop().await;
}

#[tokio::test]
async fn id_token_with_the_wrong_audience_is_refused() {
    refused_token("wrong-audience").await;
}

#[tokio::test]
async fn id_token_with_a_bad_signature_is_refused() {
    refused_token("bad-signature").await;
}

#[tokio::test]
async fn id_token_with_another_nonce_is_refused() {
    refused_token("wrong-nonce").await;
}

#[tokio::test]
async fn expired_id_token_is_refused() {
    refused_token("expired").await;
}

#[tokio::test]
async fn replayed_code_is_refused() {
    let test = OidcTest::start(options(vec![alice()]), SCOPES).await;
    let browser = test.gw.browser();
    let callback = authorize(&browser, &test, None, "alice", Consent::Allow).await;
    let first = browser.get(&callback).await;
    assert_eq!(first.status, 303, "{}", first.body);

    // The same callback again, in the same browser: the flow was used up.
    let second = browser.get(&callback).await;
    assert_refused(&second, 400, DID_NOT_COMPLETE);

    // In another browser (someone who copied the URL): refused, and no session there.
    let thief = test.gw.browser();
    let stolen = thief.get(&callback).await;
    assert_refused(&stolen, 400, DID_NOT_COMPLETE);
    assert_no_session(&thief).await;

    // Even with a fresh flow's own state, the used code is refused by the provider.
    let start = thief.get("/auth/oidc/corp/start").await;
    assert_eq!(start.status, 303);
    let fresh_state = query_of(&start.location().expect("to the provider"))
        .into_iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v)
        .expect("a state");
    let reused = thief
        .get(&with_param(&callback, "state", &fresh_state))
        .await;
    assert_refused(&reused, 400, DID_NOT_COMPLETE);
    assert_no_session(&thief).await;

    test.stop().await;
}

#[tokio::test]
async fn tampered_state_is_refused_and_uses_up_the_flow() {
    let test = OidcTest::start(options(vec![alice()]), SCOPES).await;
    let browser = test.gw.browser();
    let callback = authorize(&browser, &test, None, "alice", Consent::Allow).await;
    let state = query_of(&callback)
        .into_iter()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v)
        .expect("a state");
    let tampered = browser
        .get(&with_param(&callback, "state", &format!("{state}x")))
        .await;
    assert_refused(&tampered, 400, DID_NOT_COMPLETE);
    assert_no_session(&browser).await;
    // The genuine callback afterwards is refused too: a flow is tried once.
    let genuine = browser.get(&callback).await;
    assert_refused(&genuine, 400, DID_NOT_COMPLETE);
    assert_no_session(&browser).await;
    // No state at all.
    let missing = browser.get("/auth/oidc/corp/callback?code=abc").await;
    assert_refused(&missing, 400, DID_NOT_COMPLETE);
    test.stop().await;
}

/// One account, one policy: the sign-in is refused with `words`, nobody signed in.
async fn refused_by_policy(account: Account, extra: &str, words: &str) -> OidcTest {
    let test = OidcTest::start(options(vec![account.clone()]), &format!("{SCOPES}{extra}")).await;
    let browser = test.gw.browser();
    let page = sign_in(&browser, &test, &account.sub).await;
    assert_refused(&page, 403, words);
    assert_no_session(&browser).await;
    test
}

#[tokio::test]
async fn email_domain_not_allowed() {
    let test = refused_by_policy(
        Account::new("eve", "eve@example.org", &["eng"]),
        "allowed_domains = [\"example.com\"]\n",
        "email addresses at example.org are not allowed here",
    )
    .await;
    assert!(
        test.gw
            .running
            .idp
            .users
            .list()
            .await
            .expect("list")
            .is_empty()
    );
    test.stop().await;
}

#[tokio::test]
async fn not_in_allowed_groups() {
    let test = refused_by_policy(
        Account::new("carol", "carol@example.com", &["sales"]),
        "allowed_groups = [\"warrant-users\"]\n",
        "you are not in a group that may use Warrant",
    )
    .await;
    assert!(
        test.gw
            .running
            .idp
            .users
            .list()
            .await
            .expect("list")
            .is_empty()
    );
    test.stop().await;
}

#[tokio::test]
async fn unknown_user_without_provisioning() {
    let test = refused_by_policy(
        Account::new("dave", "dave@example.com", &[]),
        "provision = false\n",
        "Warrant has no account for you yet",
    )
    .await;
    assert!(
        test.gw
            .running
            .idp
            .users
            .list()
            .await
            .expect("list")
            .is_empty()
    );
    test.stop().await;
}

#[tokio::test]
async fn unverified_email_is_refused() {
    let mut account = Account::new("mallory", "ceo@example.com", &[]);
    account.email_verified = Some(false);
    let test = refused_by_policy(account, "", "has not verified your email address").await;
    assert!(
        test.gw
            .running
            .idp
            .users
            .list()
            .await
            .expect("list")
            .is_empty()
    );
    test.stop().await;
}

/// A provider account without `email_verified`, whose email is an existing account's.
fn unproven_ceo() -> Account {
    let mut account = Account::new("mallory", "ceo@example.com", &[]);
    account.email_verified = None;
    account
}

async fn existing_ceo(test: &OidcTest) -> String {
    let user = test
        .gw
        .running
        .idp
        .users
        .create(NewUser {
            email: "ceo@example.com".into(),
            display_name: "CEO".into(),
            role: Role::Admin,
            status: Status::Active,
        })
        .await
        .expect("create");
    user.id
}

const UNPROVEN: &str = "it did not say that your email address is verified";

#[tokio::test]
async fn an_email_not_marked_verified_neither_links_nor_creates_an_account() {
    // An existing account with that email is not tied to the provider's identity.
    let test = OidcTest::start(options(vec![unproven_ceo()]), SCOPES).await;
    existing_ceo(&test).await;
    let browser = test.gw.browser();
    let page = sign_in(&browser, &test, "mallory").await;
    assert_refused(&page, 403, UNPROVEN);
    assert_no_session(&browser).await;
    let linked = test
        .gw
        .running
        .idp
        .users
        .by_identity("corp", "mallory")
        .await
        .expect("lookup");
    assert!(linked.is_none(), "{linked:?}");
    test.stop().await;

    // Nor is an account created for it.
    let test = refused_by_policy(unproven_ceo(), "", UNPROVEN).await;
    assert!(
        test.gw
            .running
            .idp
            .users
            .list()
            .await
            .expect("list")
            .is_empty()
    );
    test.stop().await;
}

#[tokio::test]
async fn a_provider_trusted_for_its_emails_links_without_email_verified() {
    let test = OidcTest::start(
        options(vec![unproven_ceo()]),
        &format!("{SCOPES}trust_email = true\n"),
    )
    .await;
    let ceo = existing_ceo(&test).await;
    let browser = test.gw.browser();
    let page = sign_in(&browser, &test, "mallory").await;
    assert_eq!(page.status, 303, "{}", page.body);
    let linked = test
        .gw
        .running
        .idp
        .users
        .by_identity("corp", "mallory")
        .await
        .expect("lookup")
        .expect("linked");
    assert_eq!(linked.id, ceo);
    test.stop().await;
}

#[tokio::test]
async fn disabled_user_is_refused() {
    let test = OidcTest::start(options(vec![alice()]), SCOPES).await;
    let idp = &test.gw.running.idp;
    let browser = test.gw.browser();
    assert_eq!(sign_in(&browser, &test, "alice").await.status, 303);
    let user = idp
        .users
        .by_email("alice@example.com")
        .await
        .expect("lookup")
        .expect("alice");
    idp.users
        .set_status(&user.id, Status::Disabled)
        .await
        .expect("disable");
    assert_no_session(&browser).await;

    let again = test.gw.browser();
    let page = sign_in(&again, &test, "alice").await;
    assert_refused(&page, 403, "This account is disabled");
    assert_no_session(&again).await;
    test.stop().await;
}

#[tokio::test]
async fn provider_error_and_unknown_provider() {
    let test = OidcTest::start(options(vec![alice()]), SCOPES).await;
    let browser = test.gw.browser();
    // The person declines at the provider: error=access_denied comes back.
    let callback = authorize(&browser, &test, None, "alice", Consent::Deny).await;
    assert!(
        query_of(&callback).contains(&("error".into(), "access_denied".into())),
        "{callback}"
    );
    let page = browser.get(&callback).await;
    assert_refused(&page, 403, "cancelled or refused at Corp SSO");
    assert!(
        !page.contains("declined the request"),
        "the provider's text is not shown"
    );
    assert_no_session(&browser).await;
    // Then the flow is gone: a forged success for it is refused.
    let forged = browser
        .get(&with_param(&callback, "error", "x").replace("error=x", "code=abc"))
        .await;
    assert_refused(&forged, 400, DID_NOT_COMPLETE);

    let unknown = browser.get("/auth/oidc/nope/start").await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let unknown = browser.get("/auth/oidc/nope/callback?code=a&state=b").await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    // An off-site `next` is not followed after sign-in.
    for bad in ["//evil.example/", "/\t/evil.example", "/\\evil.example"] {
        let callback = authorize(&browser, &test, Some(bad), "alice", Consent::Allow).await;
        let landed = browser.get(&callback).await;
        assert_eq!(landed.location().as_deref(), Some("/account"), "{bad:?}");
    }
    test.stop().await;
}

#[tokio::test]
async fn sign_out_continues_to_the_providers_end_session() {
    let test = OidcTest::start(options(vec![alice()]), SCOPES).await;
    let browser = test.gw.browser();
    assert_eq!(sign_in(&browser, &test, "alice").await.status, 303);
    let account = browser.get("/account").await;
    // The sign-out form's answer goes on to the provider (a redirect the browser checks
    // against the page's form-action): the page allows the provider's origin.
    let issuer = url::Url::parse(&test.provider.issuer).expect("issuer URL");
    let csp = account.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(
        csp.contains(&format!(
            "form-action 'self' {};",
            issuer.origin().ascii_serialization()
        )),
        "{csp}"
    );
    let csrf = account.csrf().expect("a CSRF token");
    let out = browser
        .post_form("/signout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    let location = out.location().expect("a redirect");
    assert!(
        location.starts_with(&format!("{}/session/end?", test.provider.issuer)),
        "{location}"
    );
    let params = query_of(&location);
    let param = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{key} in {location}"))
    };
    // The ID token is not kept, so none is sent back: `client_id` names Warrant.
    assert!(
        params.iter().all(|(k, _)| k != "id_token_hint"),
        "{location}"
    );
    assert_eq!(param("client_id"), warrant_e2e::oidc::CLIENT_ID);
    let back = format!("{}/signin?signed_out=1", test.gw.public_url());
    assert_eq!(param("post_logout_redirect_uri"), back);
    // Signed out locally already.
    assert_no_session(&browser).await;

    // The provider accepts the request (known client, registered URI) and, once the
    // person confirms, sends them back to Warrant's sign-in page.
    let confirm = browser.get(&location).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let xsrf = confirm
        .body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the provider's logout form")
        .to_owned();
    let done = browser
        .post_form(
            &format!("{}/session/end/confirm", test.provider.issuer),
            &[("xsrf", xsrf.as_str()), ("logout", "yes")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.location().is_some_and(|l| l.starts_with(&back)),
        "{:?}",
        done.location()
    );
    let page = browser.get(&done.location().expect("location")).await;
    assert!(page.contains("You are signed out."), "{}", page.body);
    test.stop().await;
}

/// The provider's ID token is not kept after sign-in: a copy of `idp_sessions` holds
/// no JWT (nor any base64url-encoded JSON part of one), so it cannot be replayed as an
/// `id_token_hint` or read for the person's claims.
#[tokio::test]
async fn the_id_token_is_not_kept_in_the_session() {
    let test = OidcTest::start(options(vec![alice()]), SCOPES).await;
    let browser = test.gw.browser();
    assert_eq!(sign_in(&browser, &test, "alice").await.status, 303);
    assert_eq!(browser.get("/account").await.status, 200);
    let sql = "SELECT data FROM idp_sessions";
    let rows: Vec<String> = match &test.gw.running.idp.db {
        warrant_idp::db::Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        warrant_idp::db::Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
    }
    .expect("sessions");
    assert!(!rows.is_empty());
    for data in rows {
        // Every JWT part starts with `eyJ` (base64url of `{"`).
        assert!(!data.contains("eyJ"), "a JWT part in the session: {data}");
        assert!(!data.contains("id_token"), "{data}");
    }
    test.stop().await;
}

#[tokio::test]
async fn sign_out_stays_local_without_an_end_session_endpoint() {
    let test = OidcTest::start(
        ProviderOptions {
            accounts: vec![alice()],
            no_logout: true,
            ..ProviderOptions::default()
        },
        SCOPES,
    )
    .await;
    let browser = test.gw.browser();
    assert_eq!(sign_in(&browser, &test, "alice").await.status, 303);
    let account = browser.get("/account").await;
    let csrf = account.csrf().expect("a CSRF token");
    let out = browser
        .post_form("/signout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location().as_deref(), Some("/signin?signed_out=1"));
    assert_no_session(&browser).await;
    test.stop().await;
}

#[tokio::test]
async fn unresponsive_provider_times_out_with_a_page() {
    // A "provider" that accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("address");
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let toml = format!(
        "{}\n[auth.oidc.corp]\ndisplay_name = \"Corp SSO\"\nissuer = \"http://{addr}\"\n\
         client_id = \"warrant\"\ntimeout = \"1s\"\n",
        demo_upstream("demo")
    );
    let gw = TestGateway::start(&toml, Backend::current()).await;
    let browser = gw.browser();
    let started = Instant::now();
    let page = browser.get("/auth/oidc/corp/start").await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "the provider's timeout bounds the wait: {:?}",
        started.elapsed()
    );
    assert_refused(&page, 400, DID_NOT_COMPLETE);
    assert_no_session(&browser).await;
    hold.abort();
    gw.stop().await;
}
