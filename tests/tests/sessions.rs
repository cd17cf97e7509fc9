//! Browser sessions end to end: disabling a person ends every one of their sessions at
//! once, a person ends another of their sessions from the account page, and sessions
//! end after their idle and absolute lifetimes. People sign in with email links through
//! a real SMTP server on loopback.

use std::time::{Duration, Instant};

use warrant_e2e::agent::person;
use warrant_e2e::smtp::{SmtpSink, sign_in};
use warrant_e2e::web::Browser;
use warrant_e2e::{Backend, TestGateway, demo_upstream};
use warrant_idp::users::{Role, Status};

async fn gateway(sink: &SmtpSink, auth: &str) -> TestGateway {
    let toml = format!(
        "{}\n{auth}\n{}",
        demo_upstream("demo"),
        sink.auth_toml("per_address_limit = 50")
    );
    TestGateway::start(&toml, Backend::current()).await
}

fn signed_out(page: &warrant_e2e::web::Page) -> bool {
    page.status == 303
        && page
            .location()
            .is_some_and(|l| l.starts_with("/signin?next="))
}

#[tokio::test]
async fn disabling_a_user_ends_all_their_sessions_at_once() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "").await;
    person(&gw, "root@example.com", Role::Admin).await;
    let bob = person(&gw, "bob@example.com", Role::Member).await;
    let admin = gw.browser();
    sign_in(&admin, &sink, "root@example.com").await;
    let laptop = gw.browser();
    let phone = gw.browser();
    sign_in(&laptop, &sink, "bob@example.com").await;
    sign_in(&phone, &sink, "bob@example.com").await;
    assert_eq!(
        gw.running
            .idp
            .sessions
            .list_for_user(&bob.id)
            .await
            .expect("list")
            .len(),
        2
    );

    let page = admin.get(&format!("/admin/users/{}", bob.id)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = page.csrf().expect("csrf");
    // Without the CSRF token nothing happens.
    let refused = admin
        .post_form(
            &format!("/admin/users/{}/status", bob.id),
            &[("status", "disabled")],
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(laptop.get("/account").await.status, 200);

    let done = admin
        .post_form(
            &format!("/admin/users/{}/status", bob.id),
            &[("csrf", &csrf), ("status", "disabled")],
        )
        .await;
    assert_eq!(done.status, 303, "{}", done.body);
    for browser in [&laptop, &phone] {
        let page = browser.get("/account").await;
        assert!(signed_out(&page), "{} {:?}", page.status, page.location());
    }
    assert!(
        gw.running
            .idp
            .sessions
            .list_for_user(&bob.id)
            .await
            .expect("list")
            .is_empty()
    );
    assert_eq!(admin.get("/account").await.status, 200, "the admin stays");

    // Enabled again, Bob signs in anew (the old sessions stay ended).
    gw.running
        .idp
        .users
        .set_status(&bob.id, Status::Active)
        .await
        .expect("enable");
    assert!(signed_out(&laptop.get("/account").await));
    sign_in(&laptop, &sink, "bob@example.com").await;
    gw.stop().await;
}

/// The handle in the first "End" form of the account page's session list.
fn other_session_handle(account: &str) -> Option<String> {
    let rest = account.split("action=\"/account/sessions/").nth(1)?;
    Some(rest.split('/').next()?.to_owned())
}

#[tokio::test]
async fn a_person_ends_another_of_their_sessions() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "").await;
    person(&gw, "carol@example.com", Role::Member).await;
    let here = gw.browser();
    let there = gw.browser();
    sign_in(&here, &sink, "carol@example.com").await;
    sign_in(&there, &sink, "carol@example.com").await;

    let account = here.get("/account").await;
    assert_eq!(account.status, 200);
    assert!(account.contains("this session"), "{}", account.body);
    assert_eq!(
        account.body.matches("action=\"/account/sessions/").count(),
        1,
        "one other session can be ended; this one is marked instead"
    );
    let handle = other_session_handle(&account.body).expect("an End form");
    let csrf = account.csrf().expect("csrf");

    // Another person cannot end it.
    person(&gw, "mallory@example.com", Role::Member).await;
    let mallory = gw.browser();
    sign_in(&mallory, &sink, "mallory@example.com").await;
    let mcsrf = mallory.get("/account").await.csrf().expect("csrf");
    let page = mallory
        .post_form(
            &format!("/account/sessions/{handle}/revoke"),
            &[("csrf", &mcsrf)],
        )
        .await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert_eq!(there.get("/account").await.status, 200);

    // Without CSRF: refused.
    let page = here
        .post_form(&format!("/account/sessions/{handle}/revoke"), &[])
        .await;
    assert_eq!(page.status, 403);

    let page = here
        .post_form(
            &format!("/account/sessions/{handle}/revoke"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    assert!(
        signed_out(&there.get("/account").await),
        "that session ended"
    );
    let account = here.get("/account").await;
    assert_eq!(account.status, 200, "this session goes on");
    assert!(other_session_handle(&account.body).is_none());
    gw.stop().await;
}

#[tokio::test]
async fn an_unused_session_ends_after_the_idle_time() {
    let sink = SmtpSink::start().await;
    let gw = gateway(
        &sink,
        "[auth]\nsession_idle = \"2s\"\nsession_absolute = \"1h\"",
    )
    .await;
    person(&gw, "dora@example.com", Role::Member).await;
    let browser = gw.browser();
    sign_in(&browser, &sink, "dora@example.com").await;
    // Each use extends the session (instants are whole seconds, so a 2 s idle time
    // may be as short as 1 s: use it well within that).
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(browser.get("/account").await.status, 200);
    }
    let cookie = browser.cookies();
    assert!(cookie.starts_with("warrant_session="), "{cookie}");
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(signed_out(&browser.get("/account").await));
    // A client that keeps the cookie past its lifetime gets nothing either.
    let replay = Browser::new(&gw.public_url());
    let url = url::Url::parse(&gw.public_url()).expect("public URL");
    replay.jar.add_cookie_str(&cookie, &url);
    assert!(signed_out(&replay.get("/account").await));
    // Not just the cookie: the session is gone on the server too.
    let user = gw
        .running
        .idp
        .users
        .by_email("dora@example.com")
        .await
        .expect("lookup")
        .expect("dora");
    assert!(
        gw.running
            .idp
            .sessions
            .list_for_user(&user.id)
            .await
            .expect("list")
            .is_empty()
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_even_in_use() {
    let sink = SmtpSink::start().await;
    let gw = gateway(
        &sink,
        "[auth]\nsession_idle = \"2s\"\nsession_absolute = \"3s\"",
    )
    .await;
    person(&gw, "eve@example.com", Role::Member).await;
    let browser = Browser::new(&gw.public_url());
    sign_in(&browser, &sink, "eve@example.com").await;
    let signed_in_at = Instant::now();
    // Used every 0.4 s, so idleness never ends it; the absolute lifetime does, between
    // 2 s (sign-in late in a second; instants are whole seconds) and 3 s after sign-in.
    let mut ended = None;
    while signed_in_at.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let asked_at = signed_in_at.elapsed();
        let page = browser.get("/account").await;
        if signed_out(&page) {
            ended = Some(signed_in_at.elapsed());
            break;
        }
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(
            asked_at < Duration::from_millis(3050),
            "still in when asked {asked_at:?} after sign-in"
        );
    }
    let ended = ended.expect("the session ended");
    assert!(
        ended >= Duration::from_millis(1500),
        "ended too early: {ended:?}"
    );
    gw.stop().await;
}
