//! Sign-in by email magic link and admin invitations, end to end: Warrant in-process, a
//! real SMTP server (aiosmtpd) on loopback, a scripted browser. Each test runs on the
//! backend of this run (SQLite, or PostgreSQL in the test script's second pass).

use std::time::Duration;

use warrant_e2e::smtp::{SmtpSink, ask_link, sign_in, token_of, use_link};
use warrant_e2e::web::{Browser, OFF_SITE_NEXT, encode};
use warrant_e2e::{Backend, TestGateway, demo_upstream};
use warrant_idp::users::{NewUser, Role, Status, User};

const SENT: &str = "If an account exists for this address, a link is on its way.";
const INVALID: &str = "This link is not valid any more";

/// Warrant with `[auth.email]` on `sink` (plus `email_extra` lines) and `extra` TOML.
async fn gateway(sink: &SmtpSink, email_extra: &str, extra: &str) -> TestGateway {
    let toml = format!(
        "{}\n{extra}\n{}",
        demo_upstream("demo"),
        sink.auth_toml(email_extra)
    );
    TestGateway::start(&toml, Backend::current()).await
}

async fn add_user(gw: &TestGateway, email: &str, role: Role, status: Status) -> User {
    gw.running
        .idp
        .users
        .create(NewUser {
            email: email.into(),
            display_name: format!("Person {email}"),
            role,
            status,
        })
        .await
        .expect("create a user")
}

/// The session cookie's value in `browser`.
fn session_cookie(browser: &Browser) -> String {
    browser
        .cookies()
        .split("; ")
        .find_map(|c| c.strip_prefix("warrant_session="))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_link_signs_in_once() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "", "").await;
    let alice = add_user(&gw, "alice@example.com", Role::Member, Status::Active).await;
    let browser = gw.browser();

    let sent = ask_link(&browser, "Alice@Example.com").await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    assert!(sent.contains(SENT), "{}", sent.body);
    let before = session_cookie(&browser);
    assert!(
        !before.is_empty(),
        "a visitor has a session before signing in"
    );

    let mail = sink.wait_for("alice@example.com").await;
    assert!(mail.from.contains("warrant@test.example"), "{}", mail.from);
    assert!(mail.subject.contains("sign-in link"), "{}", mail.subject);
    let link = mail.link();
    assert!(
        link.starts_with(&format!("{}/auth/email?token=", gw.public_url())),
        "{link}"
    );

    // Opening the link (as a mail scanner would) does not use it.
    for _ in 0..2 {
        let confirm = browser.get(&link).await;
        assert_eq!(confirm.status, 200, "{}", confirm.body);
        assert!(confirm.contains("alice@example.com") && confirm.contains(">Sign in</button>"));
    }

    let done = use_link(&browser, &link).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(done.location().as_deref(), Some("/account"));
    let after = session_cookie(&browser);
    assert!(!after.is_empty());
    assert_ne!(
        before, after,
        "the session id changes at sign-in (no fixation)"
    );

    let account = browser.get("/account").await;
    assert_eq!(account.status, 200, "{}", account.body);
    assert!(account.contains("alice@example.com"));
    assert!(
        account.contains("Signed in with email."),
        "{}",
        account.body
    );
    let stored = gw
        .running
        .idp
        .users
        .get(&alice.id)
        .await
        .expect("lookup")
        .expect("alice");
    assert!(stored.last_login_at.is_some(), "the sign-in is recorded");

    // The pre-sign-in session id opens nothing.
    let stale = Browser::new(&gw.public_url());
    let url = url::Url::parse(&gw.public_url()).expect("public URL");
    stale
        .jar
        .add_cookie_str(&format!("warrant_session={before}"), &url);
    assert_eq!(stale.get("/account").await.status, 303);

    // A second use is refused, in this browser and in another.
    let again = Browser::new(&gw.public_url());
    let page = again.get(&link).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.contains(INVALID), "{}", page.body);
    let csrf = browser.get("/account").await.csrf().expect("csrf");
    let page = browser
        .post_form(
            "/auth/email",
            &[
                ("csrf", &csrf),
                ("token", &token_of(&link)),
                ("next", "/account"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.contains(INVALID));
    assert!(
        !page.contains(&token_of(&link)),
        "the refusal does not echo the token"
    );

    gw.stop().await;
}

#[tokio::test]
async fn a_link_can_lead_back_to_the_page_asked_for() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "", "").await;
    add_user(&gw, "admin@example.com", Role::Admin, Status::Active).await;
    let browser = gw.browser();
    let first = browser.get("/admin/users").await;
    assert_eq!(
        first.location().as_deref(),
        Some("/signin?next=%2Fadmin%2Fusers")
    );
    let signin = browser.get("/signin?next=%2Fadmin%2Fusers").await;
    let csrf = signin.csrf().expect("csrf");
    let sent = browser
        .post_form(
            "/signin/email",
            &[
                ("csrf", &csrf),
                ("next", "/admin/users"),
                ("email", "admin@example.com"),
            ],
        )
        .await;
    assert_eq!(sent.status, 200);
    let link = sink.wait_for("admin@example.com").await.link();
    assert!(link.ends_with("&next=%2Fadmin%2Fusers"), "{link}");
    let done = use_link(&browser, &link).await;
    assert_eq!(done.location().as_deref(), Some("/admin/users"));
    gw.stop().await;
}

/// An off-site `next` is dropped when the link is asked for (it never reaches the mail),
/// when the link is opened and when it is used.
#[tokio::test]
async fn a_link_never_leads_off_site() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "per_address_limit = 100", "").await;
    add_user(&gw, "admin@example.com", Role::Admin, Status::Active).await;
    for (n, bad) in OFF_SITE_NEXT.iter().enumerate() {
        let browser = gw.browser();
        let signin = browser.get("/signin").await;
        let csrf = signin.csrf().expect("csrf");
        let sent = browser
            .post_form(
                "/signin/email",
                &[
                    ("csrf", &csrf),
                    ("next", bad),
                    ("email", "admin@example.com"),
                ],
            )
            .await;
        assert_eq!(sent.status, 200, "{}", sent.body);
        let link = sink.wait_for_nth("admin@example.com", n + 1).await.link();
        assert!(!link.contains("next="), "{bad:?} reaches the mail: {link}");

        // The same link, with the off-site `next` added by hand.
        let forged = format!("{link}&next={}", encode(bad));
        let confirm = browser.get(&forged).await;
        assert_eq!(confirm.status, 200, "{}", confirm.body);
        assert!(
            confirm.contains("name=\"next\" value=\"/account\""),
            "{bad:?} reaches the page: {}",
            confirm.body
        );
        let csrf = confirm.csrf().expect("csrf");
        let done = browser
            .post_form(
                "/auth/email",
                &[("csrf", &csrf), ("token", &token_of(&link)), ("next", bad)],
            )
            .await;
        assert_eq!(done.status, 303, "{}", done.body);
        assert_eq!(done.location().as_deref(), Some("/account"), "{bad:?}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn an_expired_link_is_refused() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "link_ttl = \"1s\"", "").await;
    add_user(&gw, "bob@example.com", Role::Member, Status::Active).await;
    let browser = gw.browser();
    assert_eq!(ask_link(&browser, "bob@example.com").await.status, 200);
    let link = sink.wait_for("bob@example.com").await.link();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let page = browser.get(&link).await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.contains(INVALID));
    let csrf = browser.get("/signin").await.csrf().expect("csrf");
    let page = browser
        .post_form(
            "/auth/email",
            &[
                ("csrf", &csrf),
                ("token", &token_of(&link)),
                ("next", "/account"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert_eq!(browser.get("/account").await.status, 303, "not signed in");
    gw.stop().await;
}

#[tokio::test]
async fn a_tampered_link_is_refused_and_does_not_burn_the_real_one() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "", "").await;
    add_user(&gw, "carol@example.com", Role::Member, Status::Active).await;
    let browser = gw.browser();
    assert_eq!(ask_link(&browser, "carol@example.com").await.status, 200);
    let link = sink.wait_for("carol@example.com").await.link();
    let token = token_of(&link);

    let mut bytes = token.clone().into_bytes();
    bytes[10] = if bytes[10] == b'a' { b'b' } else { b'a' };
    let tampered = String::from_utf8(bytes).expect("ascii");
    for bad in [
        tampered.clone(),
        format!("{token}x"),
        token[..20].to_owned(),
        String::new(),
    ] {
        let page = browser.get(&format!("/auth/email?token={bad}")).await;
        assert_eq!(page.status, 400, "{bad}: {}", page.body);
        assert!(page.contains(INVALID));
    }
    assert_eq!(browser.get("/auth/email").await.status, 400);
    let csrf = browser.get("/signin").await.csrf().expect("csrf");
    let page = browser
        .post_form(
            "/auth/email",
            &[("csrf", &csrf), ("token", &tampered), ("next", "/account")],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);

    let done = use_link(&browser, &link).await;
    assert_eq!(done.status, 303, "the real link still works: {}", done.body);
    gw.stop().await;
}

#[tokio::test]
async fn unknown_and_disabled_addresses_get_the_same_answer_and_no_mail() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "", "").await;
    add_user(&gw, "dave@example.com", Role::Member, Status::Active).await;
    let gone = add_user(&gw, "gone@example.com", Role::Member, Status::Active).await;
    gw.running
        .idp
        .users
        .set_status(&gone.id, Status::Disabled)
        .await
        .expect("disable");

    let unknown = ask_link(&gw.browser(), "nobody@example.com").await;
    let disabled = ask_link(&gw.browser(), "gone@example.com").await;
    let known = ask_link(&gw.browser(), "dave@example.com").await;
    for page in [&unknown, &disabled, &known] {
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.contains(SENT));
    }
    assert_eq!(
        unknown.body, known.body,
        "the same page whatever the address"
    );
    assert_eq!(disabled.body, known.body);

    // The known address's mail arrives; the others' never do (their requests came first).
    sink.wait_for("dave@example.com").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = sink.messages();
    assert_eq!(
        all.len(),
        1,
        "only the account holder gets mail: {:?}",
        all.iter().map(|m| &m.to).collect::<Vec<_>>()
    );

    // A malformed address is refused in plain words.
    let page = ask_link(&gw.browser(), "not an address").await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.contains("does not look like an email address"));
    gw.stop().await;
}

#[tokio::test]
async fn too_many_links_for_one_address() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "per_address_limit = 2\nper_ip_limit = 50", "").await;
    add_user(&gw, "erin@example.com", Role::Member, Status::Active).await;
    let browser = gw.browser();
    for email in ["erin@example.com", "ERIN@example.com"] {
        let page = ask_link(&browser, email).await;
        assert_eq!(page.status, 200, "{}", page.body);
    }
    let page = ask_link(&browser, "Erin@Example.com").await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert_eq!(page.headers["retry-after"], "60");
    assert!(page.contains("Too many attempts"), "{}", page.body);
    assert!(!page.contains("erin"), "the page does not echo the address");
    // Another address from the same client is still served.
    let other = ask_link(&browser, "someone@example.com").await;
    assert_eq!(other.status, 200);
    sink.wait_for_nth("erin@example.com", 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages_to("erin@example.com").len(), 2);
    gw.stop().await;
}

#[tokio::test]
async fn too_many_links_from_one_client() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "per_address_limit = 50\nper_ip_limit = 3", "").await;
    for n in 0..3 {
        let page = ask_link(&gw.browser(), &format!("p{n}@example.com")).await;
        assert_eq!(page.status, 200, "{}", page.body);
    }
    let page = ask_link(&gw.browser(), "p9@example.com").await;
    assert_eq!(page.status, 429, "{}", page.body);
    assert!(page.contains("Too many attempts"));
    gw.stop().await;
}

#[tokio::test]
async fn forms_need_their_csrf_token() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "", "").await;
    add_user(&gw, "frank@example.com", Role::Member, Status::Active).await;
    let browser = gw.browser();
    browser.get("/signin").await;
    for fields in [
        vec![("email", "frank@example.com"), ("next", "/account")],
        vec![("csrf", "forged"), ("email", "frank@example.com")],
    ] {
        let page = browser.post_form("/signin/email", &fields).await;
        assert_eq!(page.status, 403, "{}", page.body);
        assert!(page.contains("This form expired"), "{}", page.body);
    }

    assert_eq!(ask_link(&browser, "frank@example.com").await.status, 200);
    let link = sink.wait_for("frank@example.com").await.link();
    let page = browser
        .post_form("/auth/email", &[("token", &token_of(&link))])
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    let elsewhere = Browser::new(&gw.public_url());
    let page = elsewhere
        .post_form(
            "/auth/email",
            &[("csrf", "forged"), ("token", &token_of(&link))],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert_eq!(
        sink.messages().len(),
        1,
        "the refused requests sent nothing"
    );
    let done = use_link(&browser, &link).await;
    assert_eq!(done.status, 303, "refused posts did not use the link");
    gw.stop().await;
}

#[tokio::test]
async fn a_disabled_users_link_is_refused() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "", "").await;
    let grace = add_user(&gw, "grace@example.com", Role::Member, Status::Active).await;
    let browser = gw.browser();
    assert_eq!(ask_link(&browser, "grace@example.com").await.status, 200);
    let link = sink.wait_for("grace@example.com").await.link();
    let confirm = browser.get(&link).await;
    assert_eq!(confirm.status, 200);
    let csrf = confirm.csrf().expect("csrf");

    gw.running
        .idp
        .users
        .set_status(&grace.id, Status::Disabled)
        .await
        .expect("disable");
    let page = browser
        .post_form(
            "/auth/email",
            &[
                ("csrf", &csrf),
                ("token", &token_of(&link)),
                ("next", "/account"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    assert!(page.contains(INVALID));
    assert_eq!(browser.get("/account").await.status, 303);
    let page = Browser::new(&gw.public_url()).get(&link).await;
    assert_eq!(page.status, 400);
    gw.stop().await;
}

#[tokio::test]
async fn an_admin_invites_and_the_invitee_signs_in() {
    let sink = SmtpSink::start().await;
    let gw = gateway(&sink, "", "").await;
    add_user(&gw, "root@example.com", Role::Admin, Status::Active).await;
    add_user(&gw, "member@example.com", Role::Member, Status::Active).await;
    let admin = gw.browser();
    sign_in(&admin, &sink, "root@example.com").await;

    let users = admin.get("/admin/users").await;
    assert_eq!(users.status, 200, "{}", users.body);
    assert!(users.contains("Invite someone"));
    let csrf = users.csrf().expect("csrf");

    // Without the CSRF token: refused, nobody created.
    let page = admin
        .post_form(
            "/admin/users/invite",
            &[("email", "new@example.com"), ("name", "New Person")],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    let idp = &gw.running.idp;
    assert!(
        idp.users
            .by_email("new@example.com")
            .await
            .expect("lookup")
            .is_none()
    );

    let page = admin
        .post_form(
            "/admin/users/invite",
            &[
                ("csrf", &csrf),
                ("email", "New@Example.com"),
                ("name", "New Person"),
            ],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains("An invitation was sent to new@example.com."));
    let invited = idp
        .users
        .by_email("new@example.com")
        .await
        .expect("lookup")
        .expect("the invitee exists");
    assert_eq!(invited.status, Status::Invited);
    assert_eq!(invited.role, Role::Member);
    assert_eq!(invited.display_name, "New Person");
    let listed = admin.get("/admin/users").await;
    assert!(listed.contains("new@example.com") && listed.contains("invited"));

    let mail = sink.wait_for("new@example.com").await;
    assert!(mail.subject.contains("invited"), "{}", mail.subject);
    assert!(mail.body.contains("Hello New Person"), "{}", mail.body);
    assert!(mail.body.contains("Person root@example.com invited you"));
    assert!(mail.body.contains("7 days"), "{}", mail.body);

    // Inviting an address that is already invited sends a fresh invitation.
    let page = admin
        .post_form(
            "/admin/users/invite",
            &[("csrf", &csrf), ("email", "new@example.com"), ("name", "")],
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains("already invited"), "{}", page.body);
    let second = sink.wait_for_nth("new@example.com", 2).await;

    // The invitee uses the first invitation (both are valid until one is used).
    let invitee = Browser::new(&gw.public_url());
    let confirm = invitee.get(&mail.link()).await;
    assert!(
        confirm.contains("Accept your invitation"),
        "{}",
        confirm.body
    );
    let done = use_link(&invitee, &mail.link()).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let account = invitee.get("/account").await;
    assert_eq!(account.status, 200);
    assert!(account.contains("New Person") && account.contains("new@example.com"));
    let active = idp
        .users
        .get(&invited.id)
        .await
        .expect("lookup")
        .expect("user");
    assert_eq!(active.status, Status::Active, "the invitee became active");
    let stale = Browser::new(&gw.public_url()).get(&second.link()).await;
    assert_eq!(stale.status, 400, "using one link retired the other");

    // An existing account: the admin is told plainly.
    let page = admin
        .post_form(
            "/admin/users/invite",
            &[("csrf", &csrf), ("email", "member@example.com")],
        )
        .await;
    assert_eq!(page.status, 409, "{}", page.body);
    assert!(page.contains("already exists"));
    let page = admin
        .post_form(
            "/admin/users/invite",
            &[("csrf", &csrf), ("email", "nonsense")],
        )
        .await;
    assert_eq!(page.status, 400);
    assert!(page.contains("does not look like an email address"));

    // Members cannot invite.
    let member = gw.browser();
    sign_in(&member, &sink, "member@example.com").await;
    let csrf = member.get("/account").await.csrf().expect("csrf");
    let page = member
        .post_form(
            "/admin/users/invite",
            &[("csrf", &csrf), ("email", "x@example.com")],
        )
        .await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(
        idp.users
            .by_email("x@example.com")
            .await
            .expect("lookup")
            .is_none()
    );
    gw.stop().await;
}

#[tokio::test]
async fn an_unreachable_smtp_server_gives_a_clear_page_and_leaks_nothing() {
    let mut sink = SmtpSink::start().await;
    let gw = gateway(&sink, "", "").await;
    add_user(&gw, "root@example.com", Role::Admin, Status::Active).await;
    add_user(&gw, "henry@example.com", Role::Member, Status::Active).await;
    let admin = gw.browser();
    sign_in(&admin, &sink, "root@example.com").await;
    let csrf = admin.get("/admin/users").await.csrf().expect("csrf");
    sink.stop().await;

    let page = admin
        .post_form(
            "/admin/users/invite",
            &[
                ("csrf", &csrf),
                ("email", "ivy@example.com"),
                ("name", "Ivy"),
            ],
        )
        .await;
    assert_eq!(page.status, 500, "{}", page.body);
    assert!(
        page.contains("We could not send the email. Please try again later."),
        "{}",
        page.body
    );
    for secret in [
        "127.0.0.1",
        &sink.port.to_string(),
        "refused",
        "token",
        "SMTP",
    ] {
        assert!(
            !page.contains(secret),
            "the page leaks {secret:?}: {}",
            page.body
        );
    }

    // Sign-in requests answer as always (the failure is only logged).
    let page = ask_link(&gw.browser(), "henry@example.com").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains(SENT));
    gw.stop().await;
}

#[tokio::test]
async fn starttls_is_required_no_mail_goes_out_in_clear() {
    // This server offers no STARTTLS; with `tls = "starttls"` Warrant must not fall
    // back to plain SMTP.
    let sink = SmtpSink::start().await;
    let toml = format!(
        "{}\n{}",
        demo_upstream("demo"),
        sink.auth_toml_tls("starttls", "")
    );
    let gw = TestGateway::start(&toml, Backend::current()).await;
    add_user(&gw, "kate@example.com", Role::Member, Status::Active).await;
    let page = ask_link(&gw.browser(), "kate@example.com").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains(SENT));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        sink.messages().is_empty(),
        "a link went out without TLS: {:?}",
        sink.messages().iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    gw.stop().await;
}
