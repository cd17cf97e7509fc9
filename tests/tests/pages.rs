//! The pages without a sign-in method: the sign-in page renders with its CSRF token and
//! security headers, personal pages send visitors to sign in, and forms refuse a
//! missing CSRF token.

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
