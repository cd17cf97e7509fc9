use std::time::Duration;

use time::OffsetDateTime;

use super::*;
use crate::clock::ManualClock;
use crate::config::SmtpTls;

struct Fixture {
    links: MagicLinks,
    users: Users,
    clock: Arc<ManualClock>,
    db: Db,
    _dir: tempfile::TempDir,
}

fn email_config() -> EmailConfig {
    EmailConfig {
        smtp_host: "127.0.0.1".into(),
        smtp_port: 1,
        tls: SmtpTls::None,
        username: None,
        password: None,
        from: "Warrant <warrant@test.example>".into(),
        link_ttl: Duration::from_secs(600),
        invite_ttl: Duration::from_secs(86_400),
        per_address_limit: 2,
        per_ip_limit: 3,
        rate_window: Duration::from_secs(60),
        timeout: Duration::from_secs(2),
    }
}

async fn fixture(email: Option<EmailConfig>) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = Db::open(None, dir.path()).await.expect("open");
    db.migrate().await.expect("migrate");
    let clock = Arc::new(ManualClock::new(
        OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("instant"),
    ));
    let mut config = IdpConfig::new(url::Url::parse("https://warrant.test.example").expect("url"));
    config.email = email;
    let links = MagicLinks::new(db.clone(), Arc::new(config), clock.clone()).expect("links");
    Fixture {
        links,
        users: Users::new(db.clone(), clock.clone()),
        clock,
        db,
        _dir: dir,
    }
}

async fn user(f: &Fixture, email: &str, status: Status) -> User {
    f.users
        .create(NewUser {
            email: email.into(),
            display_name: "Person".into(),
            role: Role::Member,
            status,
        })
        .await
        .expect("create user")
}

#[tokio::test]
async fn tokens_are_single_use_short_lived_and_hashed() {
    let f = fixture(Some(email_config())).await;
    let alice = user(&f, "alice@example.com", Status::Active).await;
    let tokens = &f.links.tokens;
    let ttl = Duration::from_secs(600);
    let token = tokens
        .issue(
            &alice.email,
            Purpose::Login,
            &alice.id,
            ttl,
            Some("127.0.0.1"),
        )
        .await
        .expect("issue");

    // Only the hash is stored.
    let stored: Vec<String> = on_pool_query(&f, "SELECT token_hash FROM idp_email_tokens").await;
    assert_eq!(stored, [crate::secret::hash_token(&token)]);

    let preview = f.links.preview(&token).await.expect("preview");
    assert_eq!(preview.email, "alice@example.com");
    assert_eq!(preview.purpose, Purpose::Login);
    f.links
        .preview(&token)
        .await
        .expect("a preview does not use it");

    let signed_in = f.links.consume(&token).await.expect("first use");
    assert_eq!(signed_in.id, alice.id);
    assert!(matches!(
        f.links.consume(&token).await,
        Err(IdpError::LinkInvalid)
    ));
    assert!(matches!(
        f.links.preview(&token).await,
        Err(IdpError::LinkInvalid)
    ));

    // Expiry.
    let token = tokens
        .issue(&alice.email, Purpose::Login, &alice.id, ttl, None)
        .await
        .expect("issue");
    f.clock.advance(Duration::from_secs(600));
    assert!(matches!(
        f.links.consume(&token).await,
        Err(IdpError::LinkInvalid)
    ));

    // Malformed and tampered tokens.
    for bad in ["", "short", &"x".repeat(5000)] {
        assert!(matches!(
            f.links.consume(bad).await,
            Err(IdpError::LinkInvalid)
        ));
    }
    let token = tokens
        .issue(&alice.email, Purpose::Login, &alice.id, ttl, None)
        .await
        .expect("issue");
    let mut tampered = token.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("ascii");
    assert!(matches!(
        f.links.consume(&tampered).await,
        Err(IdpError::LinkInvalid)
    ));
    f.links
        .consume(&token)
        .await
        .expect("the real one still works");
}

async fn on_pool_query(f: &Fixture, sql: &str) -> Vec<String> {
    crate::on_pool!(&f.db, pool => {
        sqlx::query_scalar(sql).fetch_all(pool).await.expect("query")
    })
}

#[tokio::test]
async fn using_a_link_retires_the_others_and_disabled_users_are_refused() {
    let f = fixture(Some(email_config())).await;
    let bob = user(&f, "bob@example.com", Status::Active).await;
    let ttl = Duration::from_secs(600);
    let first = f
        .links
        .tokens
        .issue(&bob.email, Purpose::Login, &bob.id, ttl, None)
        .await
        .expect("issue");
    let second = f
        .links
        .tokens
        .issue(&bob.email, Purpose::Login, &bob.id, ttl, None)
        .await
        .expect("issue");
    f.links.consume(&second).await.expect("use the second");
    assert!(matches!(
        f.links.consume(&first).await,
        Err(IdpError::LinkInvalid)
    ));

    let third = f
        .links
        .tokens
        .issue(&bob.email, Purpose::Login, &bob.id, ttl, None)
        .await
        .expect("issue");
    f.users
        .set_status(&bob.id, Status::Disabled)
        .await
        .expect("disable");
    assert!(matches!(
        f.links.preview(&third).await,
        Err(IdpError::LinkInvalid)
    ));
    assert!(matches!(
        f.links.consume(&third).await,
        Err(IdpError::LinkInvalid)
    ));
}

#[tokio::test]
async fn requests_are_checked_before_anything_is_sent() {
    let off = fixture(None).await;
    assert!(!off.links.enabled());
    assert!(matches!(
        off.links.request_login("a@example.com", None, None).await,
        Err(IdpError::Invalid(_))
    ));

    let f = fixture(Some(email_config())).await;
    assert!(f.links.enabled());
    assert!(matches!(
        f.links.request_login("not an address", None, None).await,
        Err(IdpError::Invalid(_))
    ));
    // Per address (limit 2), whatever the case of the address.
    for email in ["carol@example.com", "Carol@Example.com"] {
        f.links
            .request_login(email, Some("192.0.2.1"), None)
            .await
            .expect("within the limit");
    }
    assert!(matches!(
        f.links
            .request_login("CAROL@example.com", Some("192.0.2.2"), None)
            .await,
        Err(IdpError::RateLimited(_))
    ));
    // Per IP (limit 3; the refused request above came from another address).
    f.links
        .request_login("dave@example.com", Some("192.0.2.1"), None)
        .await
        .expect("third from this IP");
    assert!(matches!(
        f.links
            .request_login("erin@example.com", Some("192.0.2.1"), None)
            .await,
        Err(IdpError::RateLimited(_))
    ));
}

#[test]
fn links_words_and_names() {
    assert_eq!(in_words(Duration::from_secs(900)), "15 minutes");
    assert_eq!(in_words(Duration::from_secs(7 * 86_400)), "7 days");
    assert_eq!(in_words(Duration::from_secs(3600)), "1 hour");
    assert_eq!(in_words(Duration::from_secs(1)), "1 second");
    assert_eq!(clean_name("  Ann\r\nBcc: x  "), "Ann  Bcc: x");
    assert_eq!(clean_name(&"n".repeat(500)).len(), MAX_NAME_CHARS);
    assert!(is_local_path("/admin/users"));
    assert!(!is_local_path("//evil.example"));
    assert!(!is_local_path("https://evil.example"));
    assert!(!is_local_path("/\\evil.example"));
}

#[tokio::test]
async fn link_shape() {
    let f = fixture(Some(email_config())).await;
    assert_eq!(
        f.links.link("TOKEN", None),
        "https://warrant.test.example/auth/email?token=TOKEN"
    );
    assert_eq!(
        f.links.link("TOKEN", Some("/admin/users?x=1")),
        "https://warrant.test.example/auth/email?token=TOKEN&next=%2Fadmin%2Fusers%3Fx%3D1"
    );
    assert_eq!(
        f.links.link("TOKEN", Some("//evil.example")),
        "https://warrant.test.example/auth/email?token=TOKEN"
    );
    let body = mailer::login_body(
        "https://w.example/",
        "https://w.example/l",
        Duration::from_secs(900),
    );
    assert!(body.contains("\n\nhttps://w.example/l\n\n") && body.contains("15 minutes"));
}

#[test]
fn bad_sender_is_a_start_error() {
    let mut config = email_config();
    config.from = "not a mailbox @".into();
    assert!(matches!(Mailer::new(&config), Err(IdpError::Invalid(_))));
    let mut config = email_config();
    config.tls = SmtpTls::StartTls;
    config.username = Some("warrant".into());
    config.password = Some(crate::secret::SecretString::new("hunter2".into()));
    let mailer = Mailer::new(&config).expect("starttls settings");
    assert!(!format!("{mailer:?}").contains("hunter2"));
}

#[tokio::test]
async fn of_two_concurrent_uses_one_wins() {
    let f = fixture(Some(email_config())).await;
    let ann = user(&f, "ann@example.com", Status::Invited).await;
    let token = f
        .links
        .tokens
        .issue(
            &ann.email,
            Purpose::Invite,
            &ann.id,
            Duration::from_secs(600),
            None,
        )
        .await
        .expect("issue");
    let (a, b) = tokio::join!(f.links.consume(&token), f.links.consume(&token));
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "{a:?} {b:?}"
    );
}

#[tokio::test]
async fn a_silent_smtp_server_costs_at_most_the_timeout() {
    // Accepts connections and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let _hold = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let mut config = email_config();
    config.smtp_port = port;
    config.timeout = Duration::from_millis(500);
    let mailer = Mailer::new(&config).expect("mailer");
    let started = std::time::Instant::now();
    let result = mailer
        .send("someone@example.com", "subject", "body".into())
        .await;
    assert!(matches!(result, Err(IdpError::Mail(_))), "{result:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let message = result.err().map(|e| e.user_message()).unwrap_or_default();
    assert!(!message.contains("127.0.0.1"), "{message}");
}
