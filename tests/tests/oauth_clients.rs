//! Agents that do not register dynamically: those that name themselves by the URL of a
//! client ID metadata document (served here by a small loopback HTTP server, which
//! Warrant may read because its own public URL is loopback too), and those the operator
//! configures in `[oauth.clients.ID]`. Each goes through the consent screen to a token;
//! every refusal is checked end to end with the words a person sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use serde_json::{Value, json};
use warrant_consent::oauth::{ClientKind, Clients};
use warrant_e2e::web::{Browser, Page, unescape};
use warrant_e2e::{Backend, TestGateway};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:51234/callback";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------
// The agent's web site: its metadata documents, good and bad

#[derive(Clone)]
struct Site {
    base: String,
    hits: Arc<AtomicUsize>,
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn document(client_id: &str) -> Value {
    json!({
        "client_id": client_id,
        "client_name": "Docs Agent",
        "client_uri": "https://docs-agent.example",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

fn json_reply(body: String) -> ([(http::HeaderName, &'static str); 2], String) {
    (
        [
            (http::header::CONTENT_TYPE, "application/json"),
            (http::header::CACHE_CONTROL, "max-age=600"),
        ],
        body,
    )
}

/// Starts the agent's site on loopback; it lives as long as the test's runtime.
async fn agent_site() -> Site {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the agent's site");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let site = Site {
        base,
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let app = Router::new()
        .route(
            "/client.json",
            get(|State(s): State<Site>| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                json_reply(document(&s.url("/client.json")).to_string())
            }),
        )
        .route(
            "/impostor.json",
            get(|State(s): State<Site>| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                json_reply(
                    document("https://claude.ai/oauth/claude-code-client-metadata").to_string(),
                )
            }),
        )
        .route(
            "/big.json",
            get(|State(s): State<Site>| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                let mut doc = document(&s.url("/big.json"));
                doc["padding"] = json!("x".repeat(100 * 1024));
                json_reply(doc.to_string())
            }),
        )
        .route(
            "/slow.json",
            get(|State(s): State<Site>| async move {
                s.hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(30)).await;
                json_reply(document(&s.url("/slow.json")).to_string())
            }),
        )
        .with_state(site.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    site
}

// ---------------------------------------------------------------------------------
// The browser side and the agent's token request

fn authorize_path(client_id: &str, redirect_uri: &str) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st-9")
        .append_pair("scope", "mcp");
    format!("/authorize?{}", query.finish())
}

/// The consent form's hidden fields plus an approval for all servers, one hour.
fn approval(body: &str) -> Vec<(String, String)> {
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
        fields.push((name.to_owned(), unescape(value)));
    }
    for (k, v) in [
        ("decision", "approve"),
        ("duration", "1h"),
        ("servers", "all"),
    ] {
        fields.push((k.into(), v.into()));
    }
    fields
}

fn code_in(location: &str) -> String {
    assert!(location.starts_with(REDIRECT), "{location}");
    url::Url::parse(location)
        .expect("an absolute redirect")
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("a code")
}

/// Shows the consent screen for `client_id`, approves it, and returns the screen and
/// the code sent back to the agent.
async fn consent(browser: &Browser, client_id: &str) -> (Page, String) {
    let page = browser.get(&authorize_path(client_id, REDIRECT)).await;
    assert_eq!(page.status, 200, "{:?} {}", page.location(), page.body);
    let fields = approval(&page.body);
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = browser.post_form("/authorize", &form).await;
    let code = code_in(&back.location().expect("a redirect to the agent"));
    (page, code)
}

/// Another code for an agent the person approved already (the live grant skips the
/// screen).
async fn again(browser: &Browser, client_id: &str) -> String {
    let page = browser.get(&authorize_path(client_id, REDIRECT)).await;
    code_in(&page.location().expect("straight back to the agent"))
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn token(
    gw: &TestGateway,
    form: &[(&str, &str)],
    basic: Option<(&str, &str)>,
) -> (u16, Value) {
    let mut request = http().post(format!("{}/token", gw.public_url())).form(form);
    if let Some((id, secret)) = basic {
        request = request.basic_auth(id, Some(secret));
    }
    let response = request.send().await.expect("token");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn code_form<'a>(code: &'a str, client_id: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    form
}

/// The agent named by a verified access token.
fn agent_of(gw: &TestGateway, body: &Value) -> String {
    let access = body["access_token"].as_str().expect("an access token");
    gw.running
        .verifier
        .verify(access, unix_now())
        .expect("the token verifies")
        .identity
        .agent
        .clone()
}

/// A refusal page's text with the HTML entities undone.
fn text(page: &Page) -> String {
    unescape(&page.body)
}

// ---------------------------------------------------------------------------------

#[tokio::test]
async fn an_agent_known_by_its_metadata_document_gets_a_token_through_the_consent_screen() {
    let site = agent_site().await;
    let gw = TestGateway::start("", Backend::current()).await;
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let client_id = site.url("/client.json");

    let started = Instant::now();
    let (page, code) = consent(&browser, &client_id).await;
    let first_screen = started.elapsed();
    assert!(page.contains("Docs Agent"), "the document's name is shown");
    assert!(
        page.contains("identified by <strong>127.0.0.1</strong>"),
        "the client_id URL's host is named: {}",
        page.body
    );
    assert!(
        page.contains("127.0.0.1 (this computer)"),
        "the redirect host"
    );
    assert!(
        page.contains("Warrant cannot tell\nwhich program that is"),
        "a loopback redirect is flagged for a document agent: {}",
        page.body
    );
    assert_eq!(
        site.hits(),
        1,
        "the document is read once for both requests"
    );

    let (status, body) = token(&gw, &code_form(&code, Some(&client_id)), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent_of(&gw, &body), client_id);
    assert_eq!(
        site.hits(),
        1,
        "the token endpoint uses the cached document"
    );

    let stored = Clients::new(gw.running.db.clone())
        .get(&client_id)
        .await
        .expect("lookup")
        .expect("cached");
    assert_eq!(stored.kind, ClientKind::Metadata);
    assert!(!stored.confidential);
    let fetched = stored.document_fetched_at.expect("fetched at");
    assert_eq!(
        stored.document_fresh_until,
        Some(fetched + 600),
        "Cache-Control: max-age=600"
    );

    // A secret for this public client is refused.
    let code = again(&browser, &client_id).await;
    let mut form = code_form(&code, Some(&client_id));
    form.push(("client_secret", "guess"));
    let (status, body) = token(&gw, &form, None).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    eprintln!("first consent screen with a document fetch: {first_screen:?}");
    gw.stop().await;
}

#[tokio::test]
async fn documents_that_cannot_be_trusted_are_refused_with_the_reason() {
    let site = agent_site().await;
    let gw = TestGateway::start("", Backend::current()).await;
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;

    // A private address: refused before any connection (10.0.0.5 would not answer).
    let started = Instant::now();
    let page = browser
        .get(&authorize_path("https://10.0.0.5/client.json", REDIRECT))
        .await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(page.status, 400);
    assert!(page.location().is_none());
    assert!(
        text(&page).contains(
            "Warrant will not fetch the agent's description from a private network address (10.0.0.5)"
        ),
        "{}",
        page.body
    );
    let page = browser
        .get(&authorize_path(
            "https://169.254.169.254/latest/meta-data/client.json",
            REDIRECT,
        ))
        .await;
    assert_eq!(page.status, 400);
    assert!(
        text(&page).contains("a link-local address"),
        "{}",
        page.body
    );

    // A document that names another client_id (an impostor's copy).
    let page = browser
        .get(&authorize_path(&site.url("/impostor.json"), REDIRECT))
        .await;
    assert_eq!(page.status, 400);
    assert!(
        text(&page).contains("names another client_id"),
        "{}",
        page.body
    );

    // A redirect URI the document does not list.
    let page = browser
        .get(&authorize_path(
            &site.url("/client.json"),
            "http://127.0.0.1:51234/elsewhere",
        ))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.location().is_none(), "never sent to an unlisted URI");
    assert!(
        text(&page).contains("which it did not register"),
        "{}",
        page.body
    );

    // Too large.
    let page = browser
        .get(&authorize_path(&site.url("/big.json"), REDIRECT))
        .await;
    assert_eq!(page.status, 400);
    assert!(
        text(&page).contains("the agent's description is larger than 65536 bytes"),
        "{}",
        page.body
    );

    // Too slow: the 5-second limit, not the server's 30 seconds.
    let started = Instant::now();
    let page = browser
        .get(&authorize_path(&site.url("/slow.json"), REDIRECT))
        .await;
    let waited = started.elapsed();
    assert_eq!(page.status, 400);
    assert!(
        text(&page).contains("did not arrive within 5 seconds"),
        "{}",
        page.body
    );
    assert!(
        waited >= Duration::from_millis(4500) && waited < Duration::from_secs(8),
        "{waited:?}"
    );

    // The token endpoint never fetches a document /authorize has not read.
    let hits = site.hits();
    let unknown = site.url("/never-seen.json");
    let (status, body) = token(&gw, &code_form("nope", Some(&unknown)), None).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    let (status, body) = token(
        &gw,
        &code_form("nope", Some("https://10.0.0.5/client.json")),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    assert_eq!(site.hits(), hits);
    eprintln!("slow document refused after {waited:?}");
    gw.stop().await;
}

#[tokio::test]
async fn configured_clients_use_their_id_and_a_confidential_one_its_secret() {
    let dir = tempfile::tempdir().expect("a directory for the secret");
    let secret = "s3cret-from-a-file-0123456789";
    let secret_file = dir.path().join("backend-secret");
    std::fs::write(&secret_file, format!("{secret}\n")).expect("write the secret");
    let toml = format!(
        r#"
[oauth.clients.ci-agent]
name = "CI agent"
redirect_uris = ["http://127.0.0.1/callback"]

[oauth.clients.backend]
name = "Backend service"
redirect_uris = ["http://127.0.0.1/callback"]
secret = {{ file = {:?} }}
"#,
        secret_file.display().to_string()
    );
    let gw = TestGateway::start(&toml, Backend::current()).await;
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;

    // The public one, by its configured id.
    let (page, code) = consent(&browser, "ci-agent").await;
    assert!(page.contains("CI agent"));
    assert!(
        !page.contains("identified by"),
        "not a metadata document agent"
    );
    assert!(!page.contains("cannot tell"));
    let (status, body) = token(&gw, &code_form(&code, Some("ci-agent")), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent_of(&gw, &body), "ci-agent");

    // The confidential one: a wrong secret, none, then the right one (Basic and post).
    let (_, code) = consent(&browser, "backend").await;
    let (status, body) = token(&gw, &code_form(&code, None), Some(("backend", "wrong"))).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    let (status, body) = token(&gw, &code_form(&code, Some("backend")), None).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    let (status, body) = token(&gw, &code_form(&code, None), Some(("backend", secret))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(agent_of(&gw, &body), "backend");
    let code = again(&browser, "backend").await;
    let mut form = code_form(&code, Some("backend"));
    form.push(("client_secret", secret));
    let (status, body) = token(&gw, &form, None).await;
    assert_eq!(status, 200, "{body}");

    let stored = Clients::new(gw.running.db.clone())
        .get("backend")
        .await
        .expect("lookup")
        .expect("stored");
    assert_eq!(stored.kind, ClientKind::Static);
    assert!(stored.confidential);
    gw.stop().await;
}
