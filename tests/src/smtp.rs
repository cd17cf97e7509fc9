//! A real SMTP server for the email tests: aiosmtpd (from tests/python/.venv, installed
//! by scripts/test.sh) on a loopback port chosen by the OS, delivering into a Maildir
//! that the tests read. The server is killed when the sink drops.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::Command;

use crate::peers::ChildGuard;

/// One message as delivered.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub from: String,
    pub subject: String,
    /// The body, transfer encoding undone.
    pub body: String,
    /// The whole message as stored.
    pub raw: String,
}

impl Mail {
    /// The first `http(s)://…/auth/email?…` link of the body.
    pub fn link(&self) -> String {
        self.body
            .split_whitespace()
            .find(|w| {
                (w.starts_with("http://") || w.starts_with("https://"))
                    && w.contains("/auth/email?")
            })
            .unwrap_or_else(|| panic!("no sign-in link in the mail:\n{}", self.raw))
            .to_owned()
    }
}

/// The `token` query parameter of a link.
pub fn token_of(link: &str) -> String {
    let url = url::Url::parse(link).expect("a link URL");
    url.query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .expect("the link carries a token")
}

/// An aiosmtpd server writing into a temporary Maildir.
pub struct SmtpSink {
    pub port: u16,
    dir: TempDir,
    child: Option<ChildGuard>,
}

/// A port that was free a moment ago (the OS chose it).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

impl SmtpSink {
    /// Starts the server and waits until it accepts connections.
    pub async fn start() -> Self {
        crate::init();
        let dir = tempfile::tempdir().expect("a temporary Maildir");
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(crate::python())
                .args(["-m", "aiosmtpd", "-n", "-l"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-c", "aiosmtpd.handlers.Mailbox"])
                .arg(dir.path().join("box"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .expect("start aiosmtpd");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("aiosmtpd exited with {status} (port {port} taken?)");
                    break;
                }
                if tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_ok()
                {
                    return Self {
                        port,
                        dir,
                        child: Some(ChildGuard { child }),
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.start_kill();
                    last = format!("aiosmtpd did not accept on port {port} within 20s");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!("cannot start the SMTP sink: {last}");
    }

    /// An `[auth.email]` table pointing at this server (plain SMTP on loopback), with
    /// `extra` lines added (`link_ttl = "1s"`, limits…).
    pub fn auth_toml(&self, extra: &str) -> String {
        self.auth_toml_tls("none", extra)
    }

    /// Like [`SmtpSink::auth_toml`] with another `tls` mode (this server speaks plain
    /// SMTP only: it offers no STARTTLS).
    pub fn auth_toml_tls(&self, tls: &str, extra: &str) -> String {
        format!(
            "[auth.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"{tls}\"\n\
             from = \"Warrant <warrant@test.example>\"\ntimeout = \"5s\"\n{extra}\n",
            self.port
        )
    }

    /// Stops the server (the port then refuses connections).
    pub async fn stop(&mut self) {
        if let Some(mut guard) = self.child.take() {
            let _ = guard.child.kill().await;
        }
    }

    fn new_dir(&self) -> PathBuf {
        self.dir.path().join("box/new")
    }

    /// Every message delivered so far, oldest first.
    pub fn messages(&self) -> Vec<Mail> {
        let Ok(entries) = std::fs::read_dir(self.new_dir()) else {
            return Vec::new();
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .map(|e| {
                let at = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (at, e.path())
            })
            .collect();
        files.sort();
        files
            .into_iter()
            .filter_map(|(_, p)| read_mail(&p))
            .collect()
    }

    /// The messages to `to` (case-insensitive).
    pub fn messages_to(&self, to: &str) -> Vec<Mail> {
        let to = to.to_lowercase();
        self.messages()
            .into_iter()
            .filter(|m| m.to.to_lowercase().contains(&to))
            .collect()
    }

    /// Waits (at most 15 s) until `count` messages to `to` arrived; returns the last.
    pub async fn wait_for_nth(&self, to: &str, count: usize) -> Mail {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mails = self.messages_to(to);
            if mails.len() >= count {
                return mails[count - 1].clone();
            }
            assert!(
                Instant::now() < deadline,
                "no mail #{count} to {to} within 15s; mailbox holds: {:?}",
                self.messages().iter().map(|m| &m.to).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (at most 15 s) for the first message to `to`.
    pub async fn wait_for(&self, to: &str) -> Mail {
        self.wait_for_nth(to, 1).await
    }
}

fn read_mail(path: &Path) -> Option<Mail> {
    let raw = std::fs::read_to_string(path).ok()?;
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n")?;
    // Unfold continuation lines.
    let head = head.replace("\n ", " ").replace("\n\t", " ");
    let header = |name: &str| {
        head.lines()
            .find_map(|line| {
                let (k, v) = line.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
            .unwrap_or_default()
    };
    let body = if header("Content-Transfer-Encoding").eq_ignore_ascii_case("quoted-printable") {
        decode_quoted_printable(body)
    } else {
        body.to_owned()
    };
    Some(Mail {
        to: header("To"),
        from: header("From"),
        subject: header("Subject"),
        body,
        raw: raw.clone(),
    })
}

fn decode_quoted_printable(text: &str) -> String {
    let joined = text.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Asks for a sign-in link for `email` in `browser` (the sign-in page's form); the answer.
pub async fn ask_link(browser: &crate::web::Browser, email: &str) -> crate::web::Page {
    let signin = browser.get("/signin").await;
    assert_eq!(signin.status, 200, "{}", signin.body);
    let csrf = signin.csrf().expect("the sign-in page has a CSRF token");
    browser
        .post_form(
            "/signin/email",
            &[("csrf", &csrf), ("next", "/account"), ("email", email)],
        )
        .await
}

/// Opens `link` in `browser` and presses "Sign in": the answer to the POST.
pub async fn use_link(browser: &crate::web::Browser, link: &str) -> crate::web::Page {
    let confirm = browser.get(link).await;
    assert_eq!(
        confirm.status, 200,
        "the link opens a page: {}",
        confirm.body
    );
    let csrf = confirm
        .csrf()
        .expect("the confirmation page has a CSRF token");
    let next = crate::web::unescape(
        confirm
            .body
            .split("name=\"next\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("/account"),
    );
    browser
        .post_form(
            "/auth/email",
            &[("csrf", &csrf), ("token", &token_of(link)), ("next", &next)],
        )
        .await
}

/// Signs `email` in on `browser` with a magic link from `sink` (the whole flow, checked).
pub async fn sign_in(browser: &crate::web::Browser, sink: &SmtpSink, email: &str) {
    let before = sink.messages_to(email).len();
    let sent = ask_link(browser, email).await;
    assert_eq!(sent.status, 200, "{}", sent.body);
    let mail = sink.wait_for_nth(email, before + 1).await;
    let done = use_link(browser, &mail.link()).await;
    assert_eq!(done.status, 303, "signed in: {}", done.body);
    let account = browser.get("/account").await;
    assert_eq!(account.status, 200, "the account page opens after sign-in");
}
