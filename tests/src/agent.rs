//! An agent getting an access token the way an MCP client does: dynamic registration,
//! `/authorize` with PKCE answered on the consent screen by a signed-in person, and the
//! code exchanged at `/token`. Also a shortcut for tests that need a particular grant
//! (deny patterns, argument constraints): the grant and the code are written through
//! the consent stores, as the consent screen writes them, and the code is still
//! exchanged at the real `/token`.

use std::collections::HashMap;

use serde_json::{Value, json};
use warrant_consent::grants::{Grants, NewGrant};
use warrant_consent::oauth::{Codes, NewCode};

use crate::TestGateway;
use crate::web::Browser;

/// A PKCE pair (RFC 7636 appendix B).
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
/// A loopback redirect URI like the ones real clients use (any port matches).
pub const REDIRECT: &str = "http://127.0.0.1:51234/callback";

/// What `/token` issued.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub client_id: String,
    pub access: String,
    pub refresh: String,
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An HTTP client that does not follow redirects.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .expect("client")
}

pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// Registers a public client (RFC 7591) with a loopback redirect; returns its id.
pub async fn register_public(gw: &TestGateway, name: &str) -> String {
    let response = http()
        .post(format!("{}/register", gw.public_url()))
        .json(&json!({"client_name": name, "redirect_uris": ["http://127.0.0.1/callback"]}))
        .send()
        .await
        .expect("register");
    let (status, client) = json_of(response).await;
    assert_eq!(status, 201, "{client}");
    client["client_id"].as_str().expect("client_id").to_owned()
}

/// The `/authorize` path an agent sends a person to (scope `mcp` unless `extra` says).
pub fn authorize_path(client_id: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st-123");
    if !extra.iter().any(|(k, _)| *k == "scope") {
        query.append_pair("scope", "mcp");
    }
    for (k, v) in extra {
        query.append_pair(k, v);
    }
    format!("/authorize?{}", query.finish())
}

/// The query of a redirect to the agent, as pairs.
pub fn query_of(location: &str) -> HashMap<String, String> {
    let url = url::Url::parse(location).expect("an absolute redirect");
    url.query_pairs().into_owned().collect()
}

/// The consent form's hidden fields (the request, and the CSRF token).
pub fn consent_fields(body: &str) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    for chunk in body.split("<input type=\"hidden\" name=\"").skip(1) {
        let Some((name, rest)) = chunk.split_once('"') else {
            continue;
        };
        let Some(value) = rest
            .split("value=\"")
            .nth(1)
            .and_then(|v| v.split('"').next())
        else {
            continue;
        };
        fields.push((name.to_owned(), crate::web::unescape(value)));
    }
    fields
}

/// POSTs to `/token`.
pub async fn token_request(gw: &TestGateway, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(format!("{}/token", gw.public_url()))
        .form(form)
        .send()
        .await
        .expect("token");
    json_of(response).await
}

/// Exchanges a code issued for [`REDIRECT`] with [`VERIFIER`].
pub async fn exchange(gw: &TestGateway, client_id: &str, code: &str) -> Tokens {
    let (status, body) = token_request(
        gw,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    Tokens {
        client_id: client_id.to_owned(),
        access: body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        refresh: body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_owned(),
    }
}

/// The person signed in to `browser` answers the consent screen of `client_id` with
/// `choices` (e.g. `("servers", "all")`); the agent gets its code back and exchanges it.
/// `extra` goes into the authorization request (a `scope`, say).
pub async fn approve(
    gw: &TestGateway,
    browser: &Browser,
    client_id: &str,
    extra: &[(&str, &str)],
    choices: &[(&str, &str)],
) -> Tokens {
    let page = browser
        .get(&authorize_path(client_id, REDIRECT, extra))
        .await;
    let location = match page.location() {
        // A live grant covers the request: straight back to the agent.
        Some(location) => location,
        None => {
            assert_eq!(page.status, 200, "the consent screen: {}", page.body);
            let mut fields = consent_fields(&page.body);
            fields.push(("decision".into(), "approve".into()));
            for (k, v) in choices {
                fields.push(((*k).into(), (*v).into()));
            }
            let form: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let back = browser.post_form("/authorize", &form).await;
            back.location()
                .unwrap_or_else(|| panic!("back to the agent: {} {}", back.status, back.body))
        }
    };
    assert!(location.starts_with(REDIRECT), "{location}");
    let code = query_of(&location)
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("a code in {location}"));
    exchange(gw, client_id, &code).await
}

/// The first admin (`admin@example.com`), signed in with a passkey: their browser and
/// user id.
pub async fn first_admin_signed_in(gw: &TestGateway) -> (Browser, String) {
    let (browser, _device) = crate::passkey::first_admin(gw, "admin@example.com").await;
    let admin = gw
        .running
        .idp
        .users
        .by_email("admin@example.com")
        .await
        .expect("lookup")
        .expect("the admin")
        .id;
    (browser, admin)
}

/// The first admin, signed in, and an agent they approved for every server for an hour.
pub struct AdminAgent {
    pub browser: Browser,
    pub admin: String,
    pub tokens: Tokens,
}

/// Signs the first admin in, registers an agent called `name` and approves it on the
/// consent screen for every server for an hour.
pub async fn admin_approves_agent(gw: &TestGateway, name: &str) -> AdminAgent {
    let (browser, admin) = first_admin_signed_in(gw).await;
    let client = register_public(gw, name).await;
    let tokens = approve(
        gw,
        &browser,
        &client,
        &[],
        &[("servers", "all"), ("duration", "1h")],
    )
    .await;
    AdminAgent {
        browser,
        admin,
        tokens,
    }
}

/// Classes `tools` of `upstream` low at `gw`, once its catalog has them all (within
/// 10 s), as an admin reviewing them would.
pub async fn review_low<T: AsRef<str>>(gw: &TestGateway, upstream: &str, tools: &[T]) {
    let catalog = gw.running.catalog.clone();
    for _ in 0..200 {
        if catalog
            .catalog()
            .tools_of(upstream)
            .await
            .is_ok_and(|t| t.len() >= tools.len())
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let now = unix_now();
    for tool in tools {
        catalog
            .review(
                upstream,
                tool.as_ref(),
                Some(warrant_consent::token::Risk::Low),
                "admin@example.com",
                now,
            )
            .await
            .expect("review");
    }
}

/// Waits (at most 10 s) until `token`'s agent sees `tool` in `gw`'s list; panics
/// otherwise.
pub async fn wait_until_listed(gw: &TestGateway, token: &str, tool: &str) {
    let mut names = Vec::new();
    for _ in 0..200 {
        names = crate::raw::modern_tool_names(&gw.url(), Some(token)).await;
        if names.iter().any(|n| n == tool) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{tool} was never listed: {names:?}");
}

/// A person `email` (active) with `role`, as an admin creates one.
pub async fn person(
    gw: &TestGateway,
    email: &str,
    role: warrant_idp::users::Role,
) -> warrant_idp::users::User {
    use warrant_idp::users::{NewUser, Status};
    gw.running
        .idp
        .users
        .create(NewUser {
            email: email.into(),
            display_name: email.into(),
            role,
            status: Status::Active,
        })
        .await
        .expect("create a person")
}

/// A member `email` (active), as an admin creates one: their user id.
pub async fn member(gw: &TestGateway, email: &str) -> String {
    person(gw, email, warrant_idp::users::Role::Member).await.id
}

/// A member `email` with an agent ("EMAIL's agent") granted `allow` for an hour: their
/// user id and the agent's access token.
pub async fn member_with_agent(gw: &TestGateway, email: &str, allow: &[&str]) -> (String, String) {
    let user = member(gw, email).await;
    let agent = register_public(gw, &format!("{email}'s agent")).await;
    let resource = format!("{}/mcp", gw.public_url());
    let token = token_for_grant(gw, &user, &agent, &resource, allow, &[])
        .await
        .access;
    (user, token)
}

/// A grant as the consent screen would store it (any patterns), and a token for it
/// from the real `/token`.
pub async fn token_for_grant(
    gw: &TestGateway,
    user_id: &str,
    client_id: &str,
    resource: &str,
    allow: &[&str],
    deny: &[&str],
) -> Tokens {
    token_for_grant_up_to(gw, user_id, client_id, resource, allow, deny, None).await
}

/// [`token_for_grant`] with the grant's highest risk class (`max_risk`, e.g. `"high"`).
pub async fn token_for_grant_up_to(
    gw: &TestGateway,
    user_id: &str,
    client_id: &str,
    resource: &str,
    allow: &[&str],
    deny: &[&str],
    max_risk: Option<&str>,
) -> Tokens {
    let now = unix_now();
    let grant = NewGrant {
        user_id: user_id.to_owned(),
        client_id: client_id.to_owned(),
        resource: resource.to_owned(),
        allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        deny: deny.iter().map(|s| (*s).to_owned()).collect(),
        max_risk: max_risk.map(str::to_owned),
        args: Vec::new(),
        calls_per_hour: None,
        expires_at: now + 3600,
    };
    token_for_new_grant(gw, &grant).await.1
}

/// Stores `grant` (any fields: argument constraints, a call budget) as the consent
/// screen would, and gets a token for it from the real `/token`; the grant's id and the
/// tokens.
pub async fn token_for_new_grant(gw: &TestGateway, grant: &NewGrant) -> (String, Tokens) {
    let now = unix_now();
    let (user_id, client_id, resource) = (&grant.user_id, &grant.client_id, &grant.resource);
    let grant = Grants::new(gw.running.db.clone())
        .create(grant, now)
        .await
        .expect("grant");
    let code = Codes::new(gw.running.db.clone())
        .issue(
            &NewCode {
                client_id: client_id.to_owned(),
                user_id: user_id.to_owned(),
                grant_id: grant.id.clone(),
                redirect_uri: REDIRECT.into(),
                code_challenge: CHALLENGE.into(),
                resource: resource.to_owned(),
                scope: None,
            },
            now,
        )
        .await
        .expect("code");
    (grant.id, exchange(gw, client_id, &code).await)
}

/// The person signed in to `browser` opens `authorize_url` (the whole URL an agent asked
/// them to open) and approves it with `choices` (e.g. `("servers", "all")`); returns the
/// redirect back to the agent, its `Location`, not yet followed.
pub async fn consent_to(
    browser: &Browser,
    authorize_url: &str,
    choices: &[(&str, &str)],
) -> String {
    let page = browser.get(authorize_url).await;
    if let Some(location) = page.location() {
        // A live grant covers the request: straight back to the agent.
        return location;
    }
    assert_eq!(page.status, 200, "the consent screen: {}", page.body);
    let mut fields = consent_fields(&page.body);
    fields.push(("decision".into(), "approve".into()));
    for (k, v) in choices {
        fields.push(((*k).into(), (*v).into()));
    }
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = browser.post_form("/authorize", &form).await;
    back.location()
        .unwrap_or_else(|| panic!("back to the agent: {} {}", back.status, back.body))
}

/// The browser follows the redirect back to an agent's loopback callback: a plain GET
/// (no cookies: the callback is another site); the status and body it answered.
pub async fn deliver(location: &str) -> (u16, String) {
    let response = http()
        .get(location)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the agent's callback {location} answers: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// An agent program (an official SDK client, the Inspector, the conformance suite)
/// running as a child process in a process group of its own: its standard output read
/// line by line as it prints (it prints the URL a person must open, then waits), its
/// standard error kept for the failure message. The whole group is killed on drop.
pub struct AgentProcess {
    child: tokio::process::Child,
    group: Option<u32>,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl AgentProcess {
    /// Starts `command` (standard input closed).
    pub fn spawn(mut command: tokio::process::Command) -> Self {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("{command:?} starts: {e}"));
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        let stdout = child.stdout.take().expect("piped stdout");
        tokio::spawn(async move {
            let mut reader = tokio::io::BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        Self {
            group: child.id(),
            child,
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    /// What it printed so far (both streams), for failure messages.
    pub fn report(&self) -> String {
        let stderr = self.stderr.lock().map(|s| s.clone()).unwrap_or_default();
        format!("--- stdout\n{}\n--- stderr\n{stderr}", self.seen.join("\n"))
    }

    /// The rest of the first line (from now on) that starts with `prefix`, waiting at
    /// most `within`.
    pub async fn line_starting(&mut self, prefix: &str, within: std::time::Duration) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.to_owned();
                    }
                }
                Ok(None) => panic!("it ended before printing {prefix:?}\n{}", self.report()),
                Err(_) => panic!("no {prefix:?} line within {within:?}\n{}", self.report()),
            }
        }
    }

    /// Waits at most `within` for it to exit; its exit code, and everything it printed.
    pub async fn finish(mut self, within: std::time::Duration) -> (Option<i32>, String) {
        let status = match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => status.expect("wait for the agent"),
            Err(_) => panic!("it did not exit within {within:?}\n{}", self.report()),
        };
        // The rest of its output (the pipe closes with the process).
        let drain = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while let Ok(Some(line)) = tokio::time::timeout_at(drain, self.lines.recv()).await {
            self.seen.push(line);
        }
        (status.code(), self.report())
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        // The group this process leads (a launcher's children too), by its id.
        if let Some(pid) = self.group {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(std::process::Stdio::null())
                .status();
        }
        let _ = self.child.start_kill();
    }
}

/// A loopback port free at the time of asking (for a client that wants its callback
/// address before it starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// On a gateway whose upstream `flaky` is the `flaky_upstream` fixture (its `echo` and
/// `seen` reviewed low): a member `email` whose agent may call `flaky.echo` only, in a
/// 2025-11-25 session, after `echo` answered `calls` times and `seen` was refused once
/// (403, at the edge). Their user id and the agent's session.
pub async fn member_calls_echo_and_is_refused_seen(
    gw: &TestGateway,
    email: &str,
    calls: i64,
) -> (String, crate::Raw) {
    let (user, token) = member_with_agent(gw, email, &["flaky.echo"]).await;
    wait_until_listed(gw, &token, "flaky__echo").await;
    let mut raw = crate::Raw::new(&gw.url());
    raw.bearer = Some(token);
    raw.initialize("2025-11-25").await;
    for id in 1..=calls {
        let echo = json!({"name": "flaky__echo", "arguments": {"message": "hi"}});
        assert_eq!(
            raw.request(id, "tools/call", echo).await.result_text(id),
            "hi"
        );
    }
    let seen = json!({"name": "flaky__seen", "arguments": {}});
    let refused = raw.request(calls + 1, "tools/call", seen).await;
    assert_eq!(refused.status, 403, "{refused:?}");
    (user, raw)
}
