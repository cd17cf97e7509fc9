//! A real OpenID provider for the sign-in tests: `tests/node/oidc_provider.mjs`
//! (the `oidc-provider` package) on loopback, and a scripted browser that walks the whole
//! authorization-code flow through Warrant and the provider.
//!
//! The provider starts first (its issuer URL goes into Warrant's configuration); once
//! Warrant listens, the test registers Warrant's redirect URI with it
//! ([`OidcProvider::register`]). [`OidcTest::start`] does both.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{ChildStdin, ChildStdout, Command};

use crate::peers::ChildGuard;
use crate::web::{Browser, Page};
use crate::{Backend, TestGateway, demo_upstream, repo_root};

/// The client Warrant is registered as.
pub const CLIENT_ID: &str = "warrant-test";
const CLIENT_SECRET: &str = "warrant-test-secret-not-real";

/// An account at the test provider.
#[derive(Debug, Clone)]
pub struct Account {
    pub sub: String,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub name: Option<String>,
    pub groups: Option<Vec<String>>,
}

impl Account {
    /// A verified account with a name and groups.
    pub fn new(sub: &str, email: &str, groups: &[&str]) -> Self {
        Self {
            sub: sub.to_owned(),
            email: Some(email.to_owned()),
            email_verified: Some(true),
            name: Some(format!("{sub} tester")),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
        }
    }

    fn json(&self) -> Value {
        let mut claims = serde_json::Map::new();
        if let Some(e) = &self.email {
            claims.insert("email".into(), json!(e));
        }
        if let Some(v) = self.email_verified {
            claims.insert("email_verified".into(), json!(v));
        }
        if let Some(n) = &self.name {
            claims.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.groups {
            claims.insert("groups".into(), json!(g));
        }
        Value::Object(claims)
    }
}

/// How the test provider behaves.
#[derive(Debug, Clone, Default)]
pub struct ProviderOptions {
    pub accounts: Vec<Account>,
    /// Put every granted claim in the ID token (default: email, name and groups come
    /// from userinfo only).
    pub full_id_token: bool,
    /// A test-only misbehaviour of the token endpoint: `wrong-audience`,
    /// `wrong-nonce`, `bad-signature`, `expired`.
    pub misbehave: Option<&'static str>,
    /// Publish no `end_session_endpoint` (no RP-initiated logout).
    pub no_logout: bool,
    /// The token endpoint also takes RFC 8693 token exchange (a JWT for the audience).
    pub token_exchange: bool,
}

/// The provider process (killed on drop) and its issuer URL.
pub struct OidcProvider {
    pub issuer: String,
    stdin: ChildStdin,
    /// Until [`Self::register`] read the "ready" line; then a task drains it.
    stdout: Option<Lines<BufReader<ChildStdout>>>,
    _child: ChildGuard,
}

/// Waits (bounded) for the next JSON line on the provider's stdout.
async fn next_json(lines: &mut Lines<BufReader<ChildStdout>>, what: &str) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("the OIDC provider did not print {what} within 60s"))
        .expect("read the OIDC provider's stdout")
        .unwrap_or_else(|| panic!("the OIDC provider exited before printing {what}"));
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {line:?} is not JSON: {e}"))
}

fn script() -> PathBuf {
    let dir = repo_root().join("tests/node");
    assert!(
        dir.join("node_modules/oidc-provider").exists(),
        "tests/node/node_modules has no oidc-provider: run scripts/test.sh (npm ci in tests/node)"
    );
    dir.join("oidc_provider.mjs")
}

/// How long a provider process may take to print its issuer before another is started
/// in its place (it prints it within a second; on a loaded machine, once in a few hundred
/// starts, one has stayed silent until killed).
const START_WAIT: Duration = Duration::from_secs(20);
/// Provider processes started at most, one after the other, before the test fails.
const START_ATTEMPTS: u32 = 3;

impl OidcProvider {
    /// Starts the provider on `127.0.0.1:0`; it serves once [`Self::register`] ran.
    pub async fn start(options: &ProviderOptions) -> Self {
        for attempt in 1..=START_ATTEMPTS {
            match Self::start_once(options).await {
                Some(provider) => return provider,
                None => eprintln!(
                    "the OIDC provider (attempt {attempt} of {START_ATTEMPTS}) printed no \
                     issuer within {} s: starting another",
                    START_WAIT.as_secs()
                ),
            }
        }
        panic!("the OIDC provider did not start in {START_ATTEMPTS} attempts");
    }

    /// One provider process, or `None` if it printed no issuer within [`START_WAIT`]
    /// (then it is killed).
    async fn start_once(options: &ProviderOptions) -> Option<Self> {
        let accounts: serde_json::Map<String, Value> = options
            .accounts
            .iter()
            .map(|a| (a.sub.clone(), a.json()))
            .collect();
        let mut command = Command::new("node");
        command
            .arg(script())
            .current_dir(repo_root().join("tests/node"))
            .env("OIDC_ACCOUNTS", Value::Object(accounts).to_string())
            .env(
                "OIDC_ID_TOKEN_CLAIMS",
                if options.full_id_token {
                    "full"
                } else {
                    "minimal"
                },
            )
            .env("OIDC_NO_LOGOUT", if options.no_logout { "1" } else { "0" })
            .env(
                "OIDC_TOKEN_EXCHANGE",
                if options.token_exchange { "1" } else { "0" },
            )
            .env_remove("OIDC_CLIENT")
            .env_remove("OIDC_PORT")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        match options.misbehave {
            Some(mode) => command.env("OIDC_MISBEHAVE", mode),
            None => command.env_remove("OIDC_MISBEHAVE"),
        };
        let mut child = command
            .spawn()
            .expect("start the OIDC provider (is node installed?)");
        let stdin = child.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let Ok(first) = tokio::time::timeout(START_WAIT, stdout.next_line()).await else {
            let _ = child.kill().await;
            return None;
        };
        let line = first
            .expect("read the OIDC provider's stdout")
            .unwrap_or_else(|| panic!("the OIDC provider exited before printing its issuer"));
        let hello: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("its issuer: {line:?} is not JSON: {e}"));
        let issuer = hello["issuer"]
            .as_str()
            .expect("an issuer in the first line")
            .to_owned();
        assert!(
            issuer.starts_with("http://127.0.0.1:"),
            "loopback only: {issuer}"
        );
        Some(Self {
            issuer,
            stdin,
            stdout: Some(stdout),
            _child: ChildGuard { child },
        })
    }

    /// Registers Warrant (at `public_url`, as provider `name`) as the test client.
    pub async fn register(&mut self, public_url: &str, name: &str) {
        let client = json!({
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "redirect_uris": [format!("{public_url}/auth/oidc/{name}/callback")],
            "post_logout_redirect_uris": [format!("{public_url}/signin?signed_out=1")],
        });
        let line = format!("{client}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("configure the OIDC provider");
        self.stdin.flush().await.expect("flush");
        let mut stdout = self.stdout.take().expect("register runs once");
        let ready = next_json(&mut stdout, "ready").await;
        assert_eq!(ready["ready"], true, "{ready}");
        // Keep the pipe drained.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
    }
}

/// Warrant with one OIDC provider `corp`, and that provider.
pub struct OidcTest {
    pub gw: TestGateway,
    pub provider: OidcProvider,
    pub name: String,
    _secret_dir: tempfile::TempDir,
}

impl OidcTest {
    /// Starts the provider with `options`, then Warrant with `[auth.oidc.corp]` (the
    /// issuer, client and secret filled in; `extra` adds keys to that table), then
    /// registers Warrant's redirect URI with the provider.
    pub async fn start(options: ProviderOptions, extra: &str) -> Self {
        Self::start_on(options, extra, Backend::current()).await
    }

    pub async fn start_on(options: ProviderOptions, extra: &str, backend: Backend) -> Self {
        let provider = OidcProvider::start(&options).await;
        Self::launch(provider, extra, &demo_upstream("demo"), backend, false).await
    }

    /// As [`Self::start`] with `provider` started already (an upstream may need its
    /// issuer), `upstreams` (TOML tables) instead of the demo, and `/mcp` wanting an
    /// access token.
    pub async fn start_protected(provider: OidcProvider, extra: &str, upstreams: &str) -> Self {
        Self::launch(provider, extra, upstreams, Backend::current(), true).await
    }

    async fn launch(
        mut provider: OidcProvider,
        extra: &str,
        upstreams: &str,
        backend: Backend,
        protected: bool,
    ) -> Self {
        let name = "corp".to_owned();
        let secret_dir = tempfile::tempdir().expect("a temporary directory");
        let secret_file = secret_dir.path().join("client_secret");
        std::fs::write(&secret_file, CLIENT_SECRET).expect("write the client secret");
        let toml = format!(
            "{upstream}\n[auth.oidc.{name}]\ndisplay_name = \"Corp SSO\"\nissuer = {issuer:?}\n\
             client_id = {CLIENT_ID:?}\nclient_secret = {{ file = {secret:?} }}\n\
             timeout = \"5s\"\n{extra}\n",
            upstream = upstreams,
            issuer = provider.issuer,
            secret = secret_file.display().to_string(),
        );
        let gw = if protected {
            TestGateway::start_protected(&toml, backend).await
        } else {
            TestGateway::start(&toml, backend).await
        };
        provider.register(&gw.public_url(), &name).await;
        Self {
            gw,
            provider,
            name,
            _secret_dir: secret_dir,
        }
    }

    /// Warrant's callback URL prefix for this provider.
    pub fn callback_prefix(&self) -> String {
        format!("{}/auth/oidc/{}/callback", self.gw.public_url(), self.name)
    }

    pub async fn stop(self) {
        self.gw.stop().await;
    }
}

/// What the person does on the provider's consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consent {
    Allow,
    Deny,
}

/// `href`/`Location` resolved against the page it came from.
fn resolve(base: &str, target: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(target))
        .expect("a valid URL")
        .to_string()
}

/// The `action` of the form whose action ends with `/{suffix}`.
fn form_action(page: &Page, suffix: &str) -> Option<String> {
    let needle = format!("/{suffix}\"");
    let end = page.body.find(&needle)? + needle.len() - 1;
    let start = page.body[..end].rfind("action=\"")? + "action=\"".len();
    Some(crate::web::unescape(&page.body[start..end]))
}

/// Drives a sign-in from `GET /auth/oidc/NAME/start?next=…` through the provider's
/// login (as `login`) and consent pages, and stops at the provider's redirect back to
/// Warrant: returns that callback URL, not yet visited.
pub async fn authorize(
    browser: &Browser,
    test: &OidcTest,
    next: Option<&str>,
    login: &str,
    consent: Consent,
) -> String {
    let mut start = format!("/auth/oidc/{}/start", test.name);
    if let Some(next) = next {
        let next = url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>();
        start.push_str(&format!("?next={next}"));
    }
    let mut page = browser.get(&start).await;
    assert_eq!(page.status, 303, "start redirects: {}", page.body);
    let prefix = test.callback_prefix();
    for _ in 0..20 {
        if (300..400).contains(&page.status) {
            let location = page.location().expect("a redirect has a Location");
            let target = resolve(&page.url, &location);
            if target.starts_with(&prefix) {
                return target;
            }
            assert!(
                target.starts_with(&test.provider.issuer),
                "the flow stays on loopback between Warrant and the provider: {target}"
            );
            page = browser.get(&target).await;
        } else if page.status == 200 && form_action(&page, "login").is_some() {
            let action = form_action(&page, "login").expect("login form");
            page = browser
                .post_form(
                    &resolve(&page.url, &action),
                    &[("login", login), ("password", "any")],
                )
                .await;
        } else if page.status == 200 && form_action(&page, "confirm").is_some() {
            let suffix = match consent {
                Consent::Allow => "confirm",
                Consent::Deny => "abort",
            };
            let action = form_action(&page, suffix).expect("consent form");
            page = browser.post_form(&resolve(&page.url, &action), &[]).await;
        } else {
            panic!(
                "unexpected page at {} ({}): {}",
                page.url, page.status, page.body
            );
        }
    }
    panic!("the sign-in did not come back to Warrant within 20 steps");
}

/// The whole sign-in: [`authorize`] with consent, then Warrant's callback. Returns
/// Warrant's answer to the callback (a 303 to `next` on success).
pub async fn sign_in(browser: &Browser, test: &OidcTest, login: &str) -> Page {
    let callback = authorize(browser, test, None, login, Consent::Allow).await;
    browser.get(&callback).await
}

/// The query parameters of a URL.
pub fn query_of(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .expect("a valid URL")
        .query_pairs()
        .into_owned()
        .collect()
}

/// `url` with query parameter `key` replaced by `value`.
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let mut parsed = url::Url::parse(url).expect("a valid URL");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == key {
                (k, value.to_owned())
            } else {
                (k, v)
            }
        })
        .collect();
    parsed.query_pairs_mut().clear().extend_pairs(pairs);
    parsed.to_string()
}
