//! The pages without a sign-in method: the sign-in page renders with its CSRF token and
//! security headers, personal pages send visitors to sign in, and forms refuse a
//! missing CSRF token.

use serde_json::json;
use warrant_e2e::passkey::{first_admin, json_of};
use warrant_e2e::web::{OFF_SITE_NEXT, encode};
use warrant_e2e::{Backend, TestGateway, demo_upstream};

#[tokio::test]
async fn signin_page_and_guards() {
    let gw = TestGateway::start(&demo_upstream("demo"), Backend::current()).await;
    let browser = gw.browser();

    let page = browser.get("/signin").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains("Sign in to Warrant"));
    assert!(page.contains("Sign in with a passkey"));
    assert!(page.csrf().is_some(), "the page carries a CSRF token");
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(page.headers["cache-control"], "no-store");
    let cookie = page.headers["set-cookie"].to_str().expect("ascii");
    assert!(cookie.starts_with("warrant_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP on loopback: no Secure flag"
    );

    let account = browser.get("/account").await;
    assert_eq!(account.status, 303);
    assert_eq!(
        account.location().as_deref(),
        Some("/signin?next=%2Faccount")
    );

    let admin = browser.get("/admin/users").await;
    assert_eq!(admin.status, 303);

    let css = browser.get("/assets/warrant.css").await;
    assert_eq!(css.status, 200);

    // An open redirect through `next` is not possible.
    let page = browser.get("/signin?next=//evil.example/").await;
    assert!(page.contains("data-next=\"/account\""), "{}", page.body);

    gw.stop().await;
}

/// `next` is followed only when it is a path on this site, at every place that takes it
/// here (the sign-in page, signed in or not, and the passkey sign-in); good paths still
/// lead where they say. The email and OIDC entry points are tested with their sign-in.
#[tokio::test]
async fn next_never_leads_off_site() {
    let gw = TestGateway::start(&demo_upstream("demo"), Backend::current()).await;
    let anonymous = gw.browser();
    for bad in OFF_SITE_NEXT {
        let page = anonymous
            .get(&format!("/signin?next={}", encode(bad)))
            .await;
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            page.contains("data-next=\"/account\""),
            "{bad:?} reaches the page: {}",
            page.body
        );
    }

    let (admin, mut device) = first_admin(&gw, "admin@example.com").await;
    for bad in OFF_SITE_NEXT {
        let page = admin.get(&format!("/signin?next={}", encode(bad))).await;
        assert_eq!(page.status, 303, "{}", page.body);
        assert_eq!(page.location().as_deref(), Some("/account"), "{bad:?}");
    }
    let good = "/admin/users?tab=1";
    let page = admin.get(&format!("/signin?next={}", encode(good))).await;
    assert_eq!(page.location().as_deref(), Some(good));

    let origin = gw.public_url();
    for (next, expected) in OFF_SITE_NEXT
        .iter()
        .map(|bad| (*bad, "/account"))
        .chain([(good, good)])
    {
        let browser = gw.browser();
        let page = browser.get("/signin").await;
        let csrf = page.csrf().expect("the sign-in page carries a CSRF token");
        let start = browser
            .post_json("/auth/passkey/login/start", &csrf, &json!({}))
            .await;
        let assertion = device
            .sign_in(&origin, &json_of(&start))
            .expect("the authenticator signs");
        let done = browser
            .post_json(
                "/auth/passkey/login/finish",
                &csrf,
                &json!({"credential": assertion, "next": next}),
            )
            .await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert_eq!(json_of(&done)["redirect"], expected, "{next:?}");
    }
    gw.stop().await;
}

/// The CSRF token of a session is not kept in the database: a copy of `idp_sessions`
/// lets nobody forge a form of a signed-in person (it is derived from the session id,
/// of which the table keeps only a hash).
#[tokio::test]
async fn the_csrf_token_is_not_stored_in_clear() {
    let gw = TestGateway::start(&demo_upstream("demo"), Backend::current()).await;
    let anonymous = gw.browser();
    let before = anonymous
        .get("/signin")
        .await
        .csrf()
        .expect("a CSRF token before sign-in");
    let (admin, _device) = first_admin(&gw, "admin@example.com").await;
    let account = admin.get("/account").await;
    let csrf = account.csrf().expect("a CSRF token after sign-in");
    assert_ne!(csrf, before);
    let sql = "SELECT data FROM idp_sessions";
    let rows: Vec<String> = match &gw.running.idp.db {
        warrant_idp::db::Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
        warrant_idp::db::Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_all(pool).await,
    }
    .expect("sessions");
    assert!(!rows.is_empty());
    for data in rows {
        assert!(!data.contains(&before), "{data}");
        assert!(!data.contains(&csrf), "{data}");
    }
    // The token still works, and a wrong one does not.
    let forged = admin
        .post_form("/signout", &[("csrf", before.as_str())])
        .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let out = admin
        .post_form("/signout", &[("csrf", csrf.as_str())])
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    gw.stop().await;
}

/// The `form-action` sources of a page's content security policy.
fn form_action(page: &warrant_e2e::web::Page) -> Vec<String> {
    let csp = page.headers["content-security-policy"]
        .to_str()
        .expect("ascii");
    csp.split(';')
        .map(str::trim)
        .find_map(|d| d.strip_prefix("form-action "))
        .unwrap_or_else(|| panic!("no form-action in {csp}"))
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn forms_submit_only_to_the_gateway_and_the_consent_form_to_its_agent() {
    let gw = TestGateway::start(&demo_upstream("demo"), Backend::current()).await;
    let signin = gw.browser().get("/signin").await;
    assert_eq!(form_action(&signin), ["'self'"]);

    let (browser, admin) = warrant_e2e::agent::first_admin_signed_in(&gw).await;
    for path in [
        "/account".to_owned(),
        "/admin/users".to_owned(),
        format!("/admin/users/{admin}"),
        "/admin/groups".to_owned(),
        "/admin/servers".to_owned(),
        "/approvals".to_owned(),
    ] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        assert_eq!(form_action(&page), ["'self'"], "{path}");
    }

    // The consent form's answer goes on to the agent's redirect URI (a 303 the browser
    // checks against the form's page): that origin, and only it, is allowed there.
    let client = warrant_e2e::agent::register_public(&gw, "Form Agent").await;
    let consent = browser
        .get(&warrant_e2e::agent::authorize_path(
            &client,
            warrant_e2e::agent::REDIRECT,
            &[],
        ))
        .await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert_eq!(form_action(&consent), ["'self'", "http://127.0.0.1:51234"]);
    gw.stop().await;
}
