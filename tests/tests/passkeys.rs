//! Passkeys and the first-admin bootstrap, with real WebAuthn ceremonies: Warrant's JSON
//! endpoints driven by a scripted browser, the challenges answered by webauthn-rs's
//! software authenticator (see `warrant_e2e::passkey`). Each test runs on the backend of
//! this run (SQLite, or PostgreSQL in the script's second pass).

use std::time::Duration;

use serde_json::json;
use warrant_e2e::passkey::{
    SoftAuthenticator, first_admin, json_of, passkey_sign_in, run_setup, token_of,
};
use warrant_e2e::served::Served;
use warrant_e2e::web::Browser;
use warrant_e2e::{Backend, TestGateway};
use warrant_idp::users::Status;

/// No upstream is needed for the pages.
const NO_UPSTREAMS: &str = "";

fn session_cookie(browser: &Browser) -> String {
    browser
        .cookies()
        .split("; ")
        .find(|c| c.starts_with("warrant_session="))
        .map(str::to_owned)
        .unwrap_or_default()
}

#[tokio::test]
async fn setup_link_creates_the_first_admin_once() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let link = gw.running.setup_link.clone().expect("no admin yet: a link");
    assert!(
        link.starts_with(&format!("{}/setup?token=", gw.public_url())),
        "{link}"
    );

    // A second person opens the link too and starts a ceremony before the first finishes.
    let late = gw.browser();
    let mut late_device = SoftAuthenticator::new();
    let late_page = late.get(&link).await;
    assert_eq!(late_page.status, 200, "{}", late_page.body);
    let late_csrf = late_page.csrf().expect("csrf");
    let late_start = late
        .post_json(
            "/setup/passkey/start",
            &late_csrf,
            &json!({"token": token_of(&link), "name": "Mallory", "email": "mallory@example.com"}),
        )
        .await;
    assert_eq!(late_start.status, 200, "{}", late_start.body);

    let browser = gw.browser();
    let mut device = SoftAuthenticator::new();
    let page = browser.get(&link).await;
    assert!(
        page.contains("Create the administrator account"),
        "{}",
        page.body
    );
    let before = session_cookie(&browser);
    assert!(!before.is_empty(), "the setup page starts a session");
    let done = run_setup(
        &gw,
        &browser,
        &mut device,
        &link,
        "Ada Admin",
        "Ada@Example.com",
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert_eq!(json_of(&done)["redirect"], "/account");
    assert_ne!(
        session_cookie(&browser),
        before,
        "the session id changes at sign-in"
    );

    let account = browser.get("/account").await;
    assert_eq!(account.status, 200, "{}", account.body);
    assert!(account.contains("Ada Admin"), "{}", account.body);
    assert!(account.contains("ada@example.com"));
    assert!(account.contains(">admin<"), "the first user is an admin");
    assert!(account.contains("Signed in with setup"));
    assert!(account.contains("First passkey"), "the passkey is listed");
    let admin = gw
        .running
        .idp
        .users
        .by_email("ada@example.com")
        .await
        .expect("lookup")
        .expect("created");
    assert_eq!(admin.status, Status::Active);
    assert!(admin.is_admin());

    // The late ceremony cannot use the link any more.
    let late_credential = late_device
        .register(&gw.public_url(), &json_of(&late_start))
        .expect("the authenticator registers");
    let late_finish = late
        .post_json(
            "/setup/passkey/finish",
            &late_csrf,
            &json!({"token": token_of(&link), "credential": late_credential}),
        )
        .await;
    assert_eq!(late_finish.status, 400, "{}", late_finish.body);
    assert!(
        json_of(&late_finish)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("already used"),
        "{}",
        late_finish.body
    );
    assert!(
        gw.running
            .idp
            .users
            .by_email("mallory@example.com")
            .await
            .expect("lookup")
            .is_none(),
        "no second account"
    );

    // Opening the link again: setup is over.
    let again = gw.browser().get(&link).await;
    assert_eq!(again.status, 200);
    assert!(
        again.contains("already has an administrator"),
        "{}",
        again.body
    );
    let fresh = gw.browser();
    let csrf = fresh.get("/signin").await.csrf().expect("csrf");
    let start = fresh
        .post_json(
            "/setup/passkey/start",
            &csrf,
            &json!({"token": token_of(&link), "name": "Eve", "email": "eve@example.com"}),
        )
        .await;
    assert_eq!(start.status, 403, "{}", start.body);
    assert_eq!(gw.running.idp.users.list().await.expect("list").len(), 1);

    // A restart with an admin prints no link.
    assert!(
        gw.running
            .idp
            .setup
            .ensure_link(&gw.running.idp.users)
            .await
            .expect("checked")
            .is_none()
    );
    gw.stop().await;
}

#[tokio::test]
async fn expired_setup_link_is_refused() {
    let gw = TestGateway::start("[auth]\nsetup_link_ttl = \"1s\"\n", Backend::current()).await;
    let link = gw.running.setup_link.clone().expect("a link");
    // Started while (perhaps still) valid, finished after expiry: refused too.
    let browser = gw.browser();
    let csrf = browser.get("/signin").await.csrf().expect("csrf");
    let start = browser
        .post_json(
            "/setup/passkey/start",
            &csrf,
            &json!({"token": token_of(&link), "name": "Slow", "email": "slow@example.com"}),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let expired = gw.browser().get(&link).await;
    assert_eq!(expired.status, 400, "{}", expired.body);
    assert!(expired.contains("expired"), "{}", expired.body);

    if start.status == 200 {
        let mut device = SoftAuthenticator::new();
        let credential = device
            .register(&gw.public_url(), &json_of(&start))
            .expect("registers");
        let finish = browser
            .post_json(
                "/setup/passkey/finish",
                &csrf,
                &json!({"token": token_of(&link), "credential": credential}),
            )
            .await;
        assert_eq!(finish.status, 400, "{}", finish.body);
    }
    let fresh = gw.browser();
    let device = SoftAuthenticator::new();
    let csrf = fresh.get("/signin").await.csrf().expect("csrf");
    let start = fresh
        .post_json(
            "/setup/passkey/start",
            &csrf,
            &json!({"token": token_of(&link), "name": "Late", "email": "late@example.com"}),
        )
        .await;
    assert_eq!(start.status, 400, "{}", start.body);
    assert!(device.is_empty());
    assert!(gw.running.idp.users.list().await.expect("list").is_empty());
    gw.stop().await;
}

#[tokio::test]
async fn tampered_setup_link_is_refused() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let link = gw.running.setup_link.clone().expect("a link");
    let token = token_of(&link);
    let last = token.chars().last().expect("non-empty");
    let tampered_token = format!(
        "{}{}",
        &token[..token.len() - 1],
        if last == 'A' { 'B' } else { 'A' }
    );
    let tampered = format!("{}/setup?token={tampered_token}", gw.public_url());
    let browser = gw.browser();
    let page = browser.get(&tampered).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.contains("not valid"), "{}", page.body);
    assert_eq!(browser.get("/setup").await.status, 400, "no token at all");

    // A ceremony started with the real token cannot be finished with another one.
    let page = browser.get(&link).await;
    let csrf = page.csrf().expect("csrf");
    let start = browser
        .post_json(
            "/setup/passkey/start",
            &csrf,
            &json!({"token": tampered_token, "name": "T", "email": "t@example.com"}),
        )
        .await;
    assert_eq!(start.status, 400, "{}", start.body);
    let start = browser
        .post_json(
            "/setup/passkey/start",
            &csrf,
            &json!({"token": token, "name": "T", "email": "t@example.com"}),
        )
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let mut device = SoftAuthenticator::new();
    let credential = device
        .register(&gw.public_url(), &json_of(&start))
        .expect("registers");
    let finish = browser
        .post_json(
            "/setup/passkey/finish",
            &csrf,
            &json!({"token": tampered_token, "credential": credential}),
        )
        .await;
    assert_eq!(finish.status, 400, "{}", finish.body);
    assert!(gw.running.idp.users.list().await.expect("list").is_empty());

    // The real link still works afterwards.
    let (admin, _device) = first_admin(&gw, "root@example.com").await;
    assert_eq!(admin.get("/account").await.status, 200);
    gw.stop().await;
}

#[tokio::test]
async fn passkey_sign_in_in_a_fresh_browser() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let (_admin, mut device) = first_admin(&gw, "ada@example.com").await;

    let browser = gw.browser();
    assert_eq!(browser.get("/account").await.status, 303, "not signed in");
    let page = browser.get("/signin").await;
    let before = session_cookie(&browser);
    assert!(!before.is_empty());
    let csrf = page.csrf().expect("csrf");
    let start = browser
        .post_json("/auth/passkey/login/start", &csrf, &json!({}))
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let options = json_of(&start);
    assert_eq!(options["publicKey"]["rpId"], "localhost");
    assert!(
        options["publicKey"]["allowCredentials"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "discoverable: no username, no allow list: {options}"
    );
    assert_eq!(options["publicKey"]["userVerification"], "required");
    let assertion = device
        .sign_in(&gw.public_url(), &options)
        .expect("the authenticator signs");
    let finish = browser
        .post_json(
            "/auth/passkey/login/finish",
            &csrf,
            &json!({"credential": assertion, "next": "/account?tab=1"}),
        )
        .await;
    assert_eq!(finish.status, 200, "{}", finish.body);
    assert_eq!(json_of(&finish)["redirect"], "/account?tab=1");
    let after = session_cookie(&browser);
    assert!(!after.is_empty());
    assert_ne!(before, after, "session fixation: the id changes at sign-in");

    let account = browser.get("/account").await;
    assert_eq!(account.status, 200, "{}", account.body);
    assert!(account.contains("Signed in with passkey"));
    assert!(
        !account.contains("<td>never</td>"),
        "last use is recorded: {}",
        account.body
    );
    let user = gw
        .running
        .idp
        .users
        .by_email("ada@example.com")
        .await
        .expect("lookup")
        .expect("exists");
    assert!(user.last_login_at.is_some());

    // An unsafe `next` is not followed.
    let other = gw.browser();
    let page = other.get("/signin").await;
    let csrf = page.csrf().expect("csrf");
    let start = other
        .post_json("/auth/passkey/login/start", &csrf, &json!({}))
        .await;
    let assertion = device
        .sign_in(&gw.public_url(), &json_of(&start))
        .expect("signs");
    let finish = other
        .post_json(
            "/auth/passkey/login/finish",
            &csrf,
            &json!({"credential": assertion, "next": "//evil.example/"}),
        )
        .await;
    assert_eq!(finish.status, 200, "{}", finish.body);
    assert_eq!(json_of(&finish)["redirect"], "/account");
    gw.stop().await;
}

#[tokio::test]
async fn second_passkey_then_removal() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let (admin, mut laptop) = first_admin(&gw, "ada@example.com").await;
    let account = admin.get("/account").await;
    let csrf = account.csrf().expect("csrf");

    // The laptop cannot register twice: its credential is excluded.
    let start = admin
        .post_json(
            "/account/passkeys/register/start",
            &csrf,
            &json!({"name": "phone"}),
        )
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let options = json_of(&start);
    let excluded: Vec<String> = options["publicKey"]["excludeCredentials"]
        .as_array()
        .expect("an exclusion list")
        .iter()
        .filter_map(|c| c["id"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(excluded, vec![laptop.last_credential_id().expect("held")]);
    assert_eq!(
        options["publicKey"]["authenticatorSelection"]["residentKey"],
        "required"
    );
    assert!(laptop.register(&gw.public_url(), &options).is_err());

    let mut phone = SoftAuthenticator::new();
    let credential = phone
        .register(&gw.public_url(), &options)
        .expect("registers");
    let finish = admin
        .post_json(
            "/account/passkeys/register/finish",
            &csrf,
            &json!({"credential": credential}),
        )
        .await;
    assert_eq!(finish.status, 200, "{}", finish.body);
    assert_eq!(json_of(&finish)["passkey"]["name"], "phone");
    // The ceremony state was single use.
    let again = admin
        .post_json(
            "/account/passkeys/register/finish",
            &csrf,
            &json!({"credential": credential}),
        )
        .await;
    assert_eq!(again.status, 400, "{}", again.body);

    let account = admin.get("/account").await;
    assert!(account.contains("<td>phone</td>"), "{}", account.body);
    assert!(account.contains("<td>First passkey</td>"));
    let passkeys = gw
        .running
        .idp
        .passkeys
        .list(
            &gw.running
                .idp
                .users
                .by_email("ada@example.com")
                .await
                .expect("lookup")
                .expect("exists")
                .id,
        )
        .await
        .expect("list");
    assert_eq!(passkeys.len(), 2);

    // Each device signs in on its own.
    for device in [&mut phone, &mut laptop] {
        let browser = gw.browser();
        let finish = passkey_sign_in(&browser, device, &gw.public_url()).await;
        assert_eq!(finish.status, 200, "{}", finish.body);
        assert_eq!(browser.get("/account").await.status, 200);
    }

    // Remove the laptop's passkey; it no longer signs in.
    let first = passkeys
        .iter()
        .find(|p| p.name == "First passkey")
        .expect("listed");
    let missing_csrf = admin
        .post_form(&format!("/account/passkeys/{}/delete", first.id), &[])
        .await;
    assert_eq!(missing_csrf.status, 403, "{}", missing_csrf.body);
    let removed = admin
        .post_form(
            &format!("/account/passkeys/{}/delete", first.id),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(removed.status, 303, "{}", removed.body);
    let account = admin.get("/account").await;
    assert!(!account.contains("First passkey"), "{}", account.body);
    let browser = gw.browser();
    let refused = passkey_sign_in(&browser, &mut laptop, &gw.public_url()).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(browser.get("/account").await.status, 303);

    // The last passkey is the only way in (no email links, no OIDC): it stays.
    let last = &passkeys
        .iter()
        .find(|p| p.name == "phone")
        .expect("listed")
        .id;
    let kept = admin
        .post_form(
            &format!("/account/passkeys/{last}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(kept.status, 403, "{}", kept.body);
    assert!(kept.contains("only passkey"), "{}", kept.body);
    // Someone else's or an unknown passkey: not found.
    let unknown = admin
        .post_form("/account/passkeys/nope/delete", &[("csrf", &csrf)])
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    let browser = gw.browser();
    let finish = passkey_sign_in(&browser, &mut phone, &gw.public_url()).await;
    assert_eq!(finish.status, 200, "{}", finish.body);
    gw.stop().await;
}

#[tokio::test]
async fn wrong_origin_is_refused() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let (admin, mut device) = first_admin(&gw, "ada@example.com").await;
    let port = gw.running.local_addr.port();
    let other_port = if port == 65535 { port - 1 } else { port + 1 };
    let wrong_origins = [
        format!("http://evil.localhost:{port}"),
        format!("http://localhost:{other_port}"),
        format!("https://localhost:{port}"),
    ];

    for origin in &wrong_origins {
        let browser = gw.browser();
        let page = browser.get("/signin").await;
        let csrf = page.csrf().expect("csrf");
        let start = browser
            .post_json("/auth/passkey/login/start", &csrf, &json!({}))
            .await;
        let assertion = device.sign_in(origin, &json_of(&start)).expect("signs");
        let finish = browser
            .post_json(
                "/auth/passkey/login/finish",
                &csrf,
                &json!({"credential": assertion}),
            )
            .await;
        assert_eq!(finish.status, 400, "{origin}: {}", finish.body);
        assert_eq!(browser.get("/account").await.status, 303, "{origin}");
    }

    let csrf = admin.get("/account").await.csrf().expect("csrf");
    for origin in &wrong_origins {
        let start = admin
            .post_json(
                "/account/passkeys/register/start",
                &csrf,
                &json!({"name": "evil"}),
            )
            .await;
        let mut other = SoftAuthenticator::new();
        let credential = other.register(origin, &json_of(&start)).expect("registers");
        let finish = admin
            .post_json(
                "/account/passkeys/register/finish",
                &csrf,
                &json!({"credential": credential}),
            )
            .await;
        assert_eq!(finish.status, 400, "{origin}: {}", finish.body);
    }
    let ip_origin = format!("http://127.0.0.1:{port}");
    let browser = Browser::new(&ip_origin);
    let page = browser.get("/signin").await;
    let csrf = page.csrf().expect("csrf");
    let start = browser
        .post_json("/auth/passkey/login/start", &csrf, &json!({}))
        .await;
    let assertion = device.sign_in(&ip_origin, &json_of(&start)).expect("signs");
    let finish = browser
        .post_json(
            "/auth/passkey/login/finish",
            &csrf,
            &json!({"credential": assertion}),
        )
        .await;
    assert_eq!(
        finish.status, 400,
        "the IP address is not the origin: {}",
        finish.body
    );
    assert!(!admin.get("/account").await.contains("evil"));

    // The same device from the right origin still works.
    let browser = gw.browser();
    let finish = passkey_sign_in(&browser, &mut device, &gw.public_url()).await;
    assert_eq!(finish.status, 200, "{}", finish.body);
    gw.stop().await;
}

#[tokio::test]
async fn replayed_assertion_is_refused() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let (_admin, mut device) = first_admin(&gw, "ada@example.com").await;

    let browser = gw.browser();
    let page = browser.get("/signin").await;
    let csrf = page.csrf().expect("csrf");
    let start = browser
        .post_json("/auth/passkey/login/start", &csrf, &json!({}))
        .await;
    let assertion = device
        .sign_in(&gw.public_url(), &json_of(&start))
        .expect("signs");
    let body = json!({"credential": assertion});
    let finish = browser
        .post_json("/auth/passkey/login/finish", &csrf, &body)
        .await;
    assert_eq!(finish.status, 200, "{}", finish.body);

    // The same assertion again, in a fresh browser: once with no ceremony, once against a
    // new challenge.
    let thief = gw.browser();
    let csrf = thief.get("/signin").await.csrf().expect("csrf");
    let replay = thief
        .post_json("/auth/passkey/login/finish", &csrf, &body)
        .await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    let start = thief
        .post_json("/auth/passkey/login/start", &csrf, &json!({}))
        .await;
    assert_eq!(start.status, 200);
    let replay = thief
        .post_json("/auth/passkey/login/finish", &csrf, &body)
        .await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    assert_eq!(thief.get("/account").await.status, 303);

    // And in the browser that used it: its ceremony state is gone.
    let csrf = browser.get("/account").await.csrf().expect("csrf");
    let replay = browser
        .post_json("/auth/passkey/login/finish", &csrf, &body)
        .await;
    assert_eq!(replay.status, 400, "{}", replay.body);
    gw.stop().await;
}

#[tokio::test]
async fn ceremonies_need_the_csrf_header() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let link = gw.running.setup_link.clone().expect("a link");
    let browser = gw.browser();
    let page = browser.get(&link).await;
    let csrf = page.csrf().expect("csrf");

    for path in [
        "/auth/passkey/login/start",
        "/auth/passkey/login/finish",
        "/setup/passkey/start",
        "/setup/passkey/finish",
    ] {
        let missing = browser.post_form(path, &[]).await;
        assert_eq!(missing.status, 403, "{path} without the header");
        assert!(
            json_of(&missing)["error"].as_str().is_some(),
            "{}",
            missing.body
        );
        let wrong = browser
            .post_json(path, "not-the-token", &json!({"token": token_of(&link)}))
            .await;
        assert_eq!(wrong.status, 403, "{path} with a wrong token");
    }
    // A visitor with no session at all.
    let stranger = gw.browser();
    let none = stranger
        .post_json("/auth/passkey/login/start", &csrf, &json!({}))
        .await;
    assert_eq!(none.status, 403, "{}", none.body);

    let (admin, _device) = first_admin(&gw, "ada@example.com").await;
    for path in [
        "/account/passkeys/register/start",
        "/account/passkeys/register/finish",
    ] {
        let missing = admin.post_form(path, &[]).await;
        assert_eq!(missing.status, 403, "{path} without the header");
        let foreign = admin.post_json(path, &csrf, &json!({"name": "x"})).await;
        assert_eq!(foreign.status, 403, "{path}: another session's token");
    }
    // Not signed in: 401, not a redirect.
    let anonymous = gw.browser();
    let csrf = anonymous.get("/signin").await.csrf().expect("csrf");
    let refused = anonymous
        .post_json("/account/passkeys/register/start", &csrf, &json!({}))
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    gw.stop().await;
}

#[tokio::test]
async fn a_disabled_users_passkey_is_refused() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let (admin, mut device) = first_admin(&gw, "ada@example.com").await;
    let users = &gw.running.idp.users;
    let ada = users
        .by_email("ada@example.com")
        .await
        .expect("lookup")
        .expect("exists");
    users
        .set_status(&ada.id, Status::Disabled)
        .await
        .expect("disable");
    assert_eq!(
        admin.get("/account").await.status,
        303,
        "disabling ended the session"
    );

    let browser = gw.browser();
    let refused = passkey_sign_in(&browser, &mut device, &gw.public_url()).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        json_of(&refused)["error"]
            .as_str()
            .unwrap_or_default()
            .contains("disabled"),
        "{}",
        refused.body
    );
    assert_eq!(browser.get("/account").await.status, 303);

    users
        .set_status(&ada.id, Status::Active)
        .await
        .expect("enable");
    let browser = gw.browser();
    let finish = passkey_sign_in(&browser, &mut device, &gw.public_url()).await;
    assert_eq!(finish.status, 200, "{}", finish.body);
    gw.stop().await;
}

#[tokio::test]
async fn assets_and_pages_reference_the_script() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let browser = gw.browser();
    let js = browser.get("/assets/passkey.js").await;
    assert_eq!(js.status, 200);
    assert!(
        js.headers["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/javascript")
    );
    for needle in [
        "navigator.credentials.create",
        "navigator.credentials.get",
        "X-CSRF-Token",
        "passkey-error",
    ] {
        assert!(js.contains(needle), "passkey.js has {needle}");
    }
    let link = gw.running.setup_link.clone().expect("a link");
    let page = browser.get(&link).await;
    assert!(page.contains("src=\"/assets/passkey.js\""));
    assert!(page.contains("id=\"setup-form\""));
    assert!(
        !page.contains("<script>"),
        "no inline script (CSP script-src 'self')"
    );
    gw.stop().await;
}

/// `warrant serve` prints the setup link on one line at first start, and none once an
/// admin exists.
#[tokio::test(flavor = "multi_thread")]
async fn serve_prints_the_setup_link() {
    let served = Served::start().await;
    let link = served.setup_link.as_str();
    assert!(
        link.starts_with(&format!("http://localhost:{}/setup?token=", served.port)),
        "{link}"
    );
    assert_eq!(token_of(link).len(), 43, "32 random bytes, base64url");

    let browser = Browser::new(&served.origin);
    let page = browser.get(link).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains("Create the administrator account"));
}

/// Two people finishing the setup with the same link at the same moment: one admin.
#[tokio::test]
async fn concurrent_setup_uses_one_wins() {
    let gw = TestGateway::start(NO_UPSTREAMS, Backend::current()).await;
    let link = gw.running.setup_link.clone().expect("a link");
    let token = token_of(&link);
    let mut finishes = Vec::new();
    for who in ["one", "two", "three"] {
        let browser = gw.browser();
        let csrf = browser.get(&link).await.csrf().expect("csrf");
        let start = browser
            .post_json(
                "/setup/passkey/start",
                &csrf,
                &json!({"token": token, "name": who, "email": format!("{who}@example.com")}),
            )
            .await;
        assert_eq!(start.status, 200, "{}", start.body);
        let mut device = SoftAuthenticator::new();
        let credential = device
            .register(&gw.public_url(), &json_of(&start))
            .expect("registers");
        let body = json!({"token": token, "credential": credential});
        finishes.push(async move {
            browser
                .post_json("/setup/passkey/finish", &csrf, &body)
                .await
        });
    }
    let answers = futures::future::join_all(finishes).await;
    let statuses: Vec<u16> = answers.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "exactly one wins: {statuses:?} {answers:#?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 400 || *s == 403),
        "{statuses:?}"
    );
    let users = gw.running.idp.users.list().await.expect("list");
    assert_eq!(users.len(), 1, "{users:?}");
    assert!(users[0].is_admin());
    gw.stop().await;
}
