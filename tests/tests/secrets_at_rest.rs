//! Secrets at rest: a whole run — the first admin through the setup link, an agent
//! registered (and a confidential one, with its secret), consent, the code exchanged with
//! PKCE, tool calls, a refresh — with every log event at debug level captured; then
//! every secret the run used is looked for in the log text and in the database (the
//! SQLite file and its write-ahead log, or every row of every PostgreSQL table).

use serde_json::json;
use warrant_e2e::agent::{
    CHALLENGE, REDIRECT, VERIFIER, authorize_path, consent_fields, http, json_of, query_of,
    token_request,
};
use warrant_e2e::at_rest::{CapturedLog, database_bytes};
use warrant_e2e::raw::modern_call;
use warrant_e2e::{Backend, TestGateway, demo_upstream};

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_of_a_run_is_in_the_log_or_the_database() {
    let log = CapturedLog::at_debug();

    let gw = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    gw.trust_annotations("demo").await;
    gw.running.gateway.settle().await;
    let mut secrets: Vec<(&str, String)> = Vec::new();

    // The first admin, through the setup link.
    let link = gw.running.setup_link.clone().expect("a setup link");
    secrets.push(("setup link token", warrant_e2e::passkey::token_of(&link)));
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let account = browser.get("/account").await;
    secrets.push(("CSRF token", account.csrf().expect("a CSRF token")));
    assert!(
        browser.cookies().contains('='),
        "the browser holds a session cookie"
    );
    for cookie in browser.cookies().split(';') {
        if let Some((_, value)) = cookie.trim().split_once('=')
            && value.len() >= 16
        {
            secrets.push(("session cookie", value.to_owned()));
        }
    }

    // A confidential client: its secret is shown once.
    let response = http()
        .post(format!("{}/register", gw.public_url()))
        .json(&json!({
            "client_name": "Confidential agent",
            "redirect_uris": [REDIRECT],
            "token_endpoint_auth_method": "client_secret_basic",
        }))
        .send()
        .await
        .expect("register");
    let (status, confidential) = json_of(response).await;
    assert_eq!(status, 201, "{confidential}");
    secrets.push((
        "client secret",
        confidential["client_secret"]
            .as_str()
            .expect("a client secret")
            .to_owned(),
    ));

    // A public agent: consent, the code with PKCE, calls, a refresh.
    let client = warrant_e2e::agent::register_public(&gw, "Public agent").await;
    let page = browser.get(&authorize_path(&client, REDIRECT, &[])).await;
    assert_eq!(page.status, 200, "the consent screen: {}", page.body);
    let mut fields = consent_fields(&page.body);
    fields.extend([
        ("decision".to_owned(), "approve".to_owned()),
        ("servers".to_owned(), "all".to_owned()),
        ("duration".to_owned(), "1h".to_owned()),
    ]);
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = browser.post_form("/authorize", &form).await;
    let location = back.location().expect("back to the agent");
    let code = query_of(&location).get("code").cloned().expect("a code");
    secrets.push(("authorization code", code.clone()));
    secrets.push(("PKCE verifier", VERIFIER.to_owned()));
    let (status, issued) = token_request(
        &gw,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, 200, "{issued}");
    let access = issued["access_token"].as_str().expect("access").to_owned();
    let refresh = issued["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    for _ in 0..3 {
        let reply = modern_call(&gw.url(), Some(&access), "demo__list_notes", json!({})).await;
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    let (status, renewed) = token_request(
        &gw,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &client),
        ],
    )
    .await;
    assert_eq!(status, 200, "{renewed}");
    let access2 = renewed["access_token"].as_str().expect("access").to_owned();
    let refresh2 = renewed["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    let reply = modern_call(&gw.url(), Some(&access2), "demo__list_notes", json!({})).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    secrets.extend([
        ("access token", access),
        ("refresh token", refresh),
        ("renewed access token", access2),
        ("renewed refresh token", refresh2),
    ]);
    assert_ne!(CHALLENGE, VERIFIER);

    // Let the periodic writers (budgets, sessions) run once more, then look.
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let database = String::from_utf8_lossy(&database_bytes(&gw).await).into_owned();
    assert!(
        database.contains("idp_users") || database.contains("admin@example.com"),
        "the database was read"
    );
    let logged = String::from_utf8_lossy(&log.bytes()).into_owned();
    assert!(
        logged.contains("DEBUG") || logged.contains("INFO"),
        "the log was captured"
    );
    let mut found = Vec::new();
    for (what, secret) in &secrets {
        if database.contains(secret.as_str()) {
            found.push(format!("{what} in the database"));
        }
        if let Some(line) = logged.lines().find(|l| l.contains(secret.as_str())) {
            let line: String = line.chars().take(300).collect();
            found.push(format!("{what} in the log: {line}"));
        }
    }
    assert!(found.is_empty(), "secrets at rest: {found:?}");
    gw.stop().await;
}
