//! The OAuth 2.1 authorization server as MCP clients meet it: discovery metadata,
//! dynamic client registration with the redirect URIs real clients send, and the token
//! endpoint (PKCE, code replay, refresh rotation, revocation, resource indicators).
//!
//! `/authorize` and the consent screen are not there yet: these tests issue the
//! authorization code through the consent store, as the consent screen will.

use serde_json::{Value, json};
use warrant_consent::grants::{Grants, NewGrant};
use warrant_consent::oauth::{Codes, NewCode};
use warrant_e2e::{Backend, TestGateway};
use warrant_idp::users::{NewUser, Role, Status};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:51234/callback";

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn register(gw: &TestGateway, body: Value) -> (u16, Value) {
    let response = http()
        .post(format!("{}/register", gw.public_url()))
        .json(&body)
        .send()
        .await
        .expect("register");
    json_of(response).await
}

#[tokio::test]
async fn metadata_documents_name_the_issuer_and_the_resource() {
    let gw = TestGateway::start("", Backend::current()).await;
    let issuer = gw.public_url();
    let get = |path: &'static str| {
        let url = format!("{issuer}{path}");
        async move { json_of(http().get(url).send().await.expect("get")).await }
    };
    let (status, meta) = get("/.well-known/oauth-authorization-server").await;
    assert_eq!(status, 200);
    assert_eq!(meta["issuer"], json!(issuer));
    assert_eq!(
        meta["authorization_endpoint"],
        json!(format!("{issuer}/authorize"))
    );
    assert_eq!(meta["token_endpoint"], json!(format!("{issuer}/token")));
    assert_eq!(
        meta["registration_endpoint"],
        json!(format!("{issuer}/register"))
    );
    assert_eq!(
        meta["revocation_endpoint"],
        json!(format!("{issuer}/revoke"))
    );
    assert_eq!(meta["response_types_supported"], json!(["code"]));
    assert_eq!(
        meta["grant_types_supported"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["none", "client_secret_basic", "client_secret_post"])
    );
    assert_eq!(
        meta["authorization_response_iss_parameter_supported"],
        json!(true)
    );
    assert_eq!(meta["client_id_metadata_document_supported"], json!(true));
    assert!(meta["scopes_supported"].is_array());
    let (_, oidc) = get("/.well-known/openid-configuration").await;
    assert_eq!(oidc, meta);

    for path in [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let (status, pr) = get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(pr["resource"], json!(format!("{issuer}/mcp")));
        assert_eq!(pr["authorization_servers"], json!([issuer]));
    }
    gw.stop().await;
}

#[tokio::test]
async fn registration_accepts_real_clients_and_refuses_dangerous_redirects() {
    let gw = TestGateway::start("", Backend::current()).await;
    // Claude Code, VS Code, and Cursor's set in one request.
    for uris in [
        json!(["http://localhost/callback"]),
        json!(["http://127.0.0.1/", "http://127.0.0.1:33418/"]),
        json!([
            "cursor://anysphere.cursor-mcp/oauth/callback",
            "https://cursor.example.com/callback",
            "http://localhost:54321/callback"
        ]),
    ] {
        let (status, body) = register(
            &gw,
            json!({"client_name": "Agent", "redirect_uris": uris, "token_endpoint_auth_method": "none"}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        assert!(body["client_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(
            body.get("client_secret").is_none(),
            "a public client has no secret"
        );
        assert_eq!(body["redirect_uris"], uris);
        assert_eq!(body["token_endpoint_auth_method"], json!("none"));
        assert_eq!(body["application_type"], json!("native"));
    }

    for bad in [
        "javascript:alert(1)",
        "data:text/html,x",
        "http://evil.example.com/callback",
    ] {
        let (status, body) = register(
            &gw,
            json!({"client_name": "Bad", "redirect_uris": ["http://localhost/ok", bad]}),
        )
        .await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"], json!("invalid_redirect_uri"), "{bad}");
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(bad)),
            "{body}"
        );
    }

    let (status, body) = register(
        &gw,
        json!({"client_name": "Web", "redirect_uris": ["https://app.example.com/cb"],
               "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    assert!(
        body["client_secret"]
            .as_str()
            .is_some_and(|s| s.len() >= 32)
    );
    assert_eq!(body["application_type"], json!("web"));

    let many: Vec<String> = (0..21).map(|i| format!("http://localhost/cb{i}")).collect();
    let (status, body) = register(&gw, json!({"redirect_uris": many})).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_redirect_uri"))
    );

    let response = http()
        .post(format!("{}/register", gw.public_url()))
        .body("not json")
        .send()
        .await
        .expect("register");
    let (status, body) = json_of(response).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], json!("invalid_client_metadata"));
    gw.stop().await;
}

/// A user, a public client registered over HTTP, a grant and a fresh code.
struct Flow {
    client_id: String,
    user_id: String,
    grant_id: String,
}

async fn flow(gw: &TestGateway) -> Flow {
    let user = gw
        .running
        .idp
        .users
        .create(NewUser {
            email: "ada@example.com".into(),
            display_name: "Ada".into(),
            role: Role::Member,
            status: Status::Active,
        })
        .await
        .expect("user");
    let (status, client) = register(
        gw,
        json!({"client_name": "Claude Code", "redirect_uris": ["http://127.0.0.1/callback"]}),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    let client_id = client["client_id"].as_str().expect("client_id").to_owned();
    let now = unix_now();
    let grant = Grants::new(gw.running.db.clone())
        .create(
            &NewGrant {
                user_id: user.id.clone(),
                client_id: client_id.clone(),
                resource: format!("{}/mcp", gw.public_url()),
                allow: vec!["*".into()],
                deny: vec![],
                max_risk: None,
                args: Vec::new(),
                calls_per_hour: None,
                expires_at: now + 3600,
            },
            now,
        )
        .await
        .expect("grant");
    Flow {
        client_id,
        user_id: user.id,
        grant_id: grant.id,
    }
}

async fn code(gw: &TestGateway, f: &Flow) -> String {
    let now = unix_now();
    Codes::new(gw.running.db.clone())
        .issue(
            &NewCode {
                client_id: f.client_id.clone(),
                user_id: f.user_id.clone(),
                grant_id: f.grant_id.clone(),
                redirect_uri: REDIRECT.into(),
                code_challenge: CHALLENGE.into(),
                resource: format!("{}/mcp", gw.public_url()),
                scope: None,
            },
            now,
        )
        .await
        .expect("code")
}

async fn token(gw: &TestGateway, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(format!("{}/token", gw.public_url()))
        .form(form)
        .send()
        .await
        .expect("token");
    assert_eq!(
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok()),
        Some("no-store")
    );
    assert_eq!(
        response
            .headers()
            .get("pragma")
            .and_then(|v| v.to_str().ok()),
        Some("no-cache")
    );
    json_of(response).await
}

async fn exchange(gw: &TestGateway, f: &Flow, code: &str, extra: &[(&str, &str)]) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
        ("client_id", f.client_id.as_str()),
    ];
    form.extend_from_slice(extra);
    token(gw, &form).await
}

#[tokio::test]
async fn code_exchange_issues_a_verifiable_token_and_a_replay_revokes_it() {
    let gw = TestGateway::start("", Backend::current()).await;
    let f = flow(&gw).await;
    let c = code(&gw, &f).await;
    let (status, body) = exchange(&gw, &f, &c, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], json!("Bearer"));
    assert!(
        body["expires_in"]
            .as_i64()
            .is_some_and(|s| s > 0 && s <= 600)
    );
    let access = body["access_token"].as_str().expect("access token");
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_owned();
    let now = unix_now();
    let verified = gw.running.verifier.verify(access, now).expect("verifies");
    let id = &verified.identity;
    assert_eq!(id.user, f.user_id);
    assert_eq!(id.agent, f.client_id);
    assert_eq!(id.grant, f.grant_id);
    assert_eq!(
        id.audience,
        format!("{}/mcp", gw.public_url()),
        "no resource: canonical"
    );

    // The same code again: refused, and what it produced is revoked.
    let (status, body) = exchange(&gw, &f, &c, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], json!("invalid_grant"));
    let revocations = warrant_consent::oauth::Revocations::new(gw.running.db.clone());
    assert!(
        revocations
            .any_revoked(&id.revocation_ids)
            .await
            .expect("check")
    );
    let (status, body) = token(
        &gw,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &f.client_id),
        ],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], json!("invalid_grant"));
    gw.stop().await;
}

#[tokio::test]
async fn pkce_redirect_uri_and_resource_are_checked() {
    let gw = TestGateway::start("", Backend::current()).await;
    let f = flow(&gw).await;

    let c = code(&gw, &f).await;
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("redirect_uri", REDIRECT),
        (
            "code_verifier",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
        ),
        ("client_id", f.client_id.as_str()),
    ];
    let (status, body) = token(&gw, &form).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant")),
        "{body}"
    );

    let c = code(&gw, &f).await;
    form[1].1 = &c;
    form[3].1 = VERIFIER;
    form[2].1 = "http://127.0.0.1:51235/callback";
    let (status, body) = token(&gw, &form).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant")),
        "{body}"
    );

    // Without redirect_uri, when the one registered URI is the one used: accepted.
    let implied = Codes::new(gw.running.db.clone())
        .issue(
            &NewCode {
                client_id: f.client_id.clone(),
                user_id: f.user_id.clone(),
                grant_id: f.grant_id.clone(),
                redirect_uri: "http://127.0.0.1/callback".into(),
                code_challenge: CHALLENGE.into(),
                resource: format!("{}/mcp", gw.public_url()),
                scope: None,
            },
            unix_now(),
        )
        .await
        .expect("code");
    let (status, body) = token(
        &gw,
        &[
            ("grant_type", "authorization_code"),
            ("code", implied.as_str()),
            ("code_verifier", VERIFIER),
            ("client_id", f.client_id.as_str()),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Without redirect_uri: /authorize had one that the registration does not imply.
    let c = code(&gw, &f).await;
    let without: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("code", c.as_str()),
        ("code_verifier", VERIFIER),
        ("client_id", f.client_id.as_str()),
    ];
    let (status, body) = token(&gw, &without).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant")),
        "{body}"
    );

    let c = code(&gw, &f).await;
    let (status, body) = exchange(
        &gw,
        &f,
        &c,
        &[("resource", "https://elsewhere.example/mcp")],
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_target")),
        "{body}"
    );

    let c = code(&gw, &f).await;
    let resource = format!("{}/mcp", gw.public_url());
    let (status, body) = exchange(&gw, &f, &c, &[("resource", &resource)]).await;
    assert_eq!(status, 200, "{body}");

    let (status, body) = token(
        &gw,
        &[("grant_type", "password"), ("client_id", &f.client_id)],
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("unsupported_grant_type"))
    );
    let (status, body) = token(
        &gw,
        &[
            ("grant_type", "authorization_code"),
            ("code", "x"),
            ("client_id", "nobody"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let gw = TestGateway::start("", Backend::current()).await;
    let f = flow(&gw).await;
    let c = code(&gw, &f).await;
    let (_, body) = exchange(&gw, &f, &c, &[]).await;
    let first = body["refresh_token"].as_str().expect("refresh").to_owned();
    let refresh = |t: String| {
        let gw = &gw;
        let client_id = f.client_id.clone();
        async move {
            token(
                gw,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &t),
                    ("client_id", &client_id),
                ],
            )
            .await
        }
    };
    let (status, body) = refresh(first.clone()).await;
    assert_eq!(status, 200, "{body}");
    let second = body["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(second, first);
    let now = unix_now();
    let access = body["access_token"].as_str().expect("access");
    assert_eq!(
        gw.running
            .verifier
            .verify(access, now)
            .expect("verifies")
            .identity
            .grant,
        f.grant_id
    );

    // The first one again: reuse. The family, the second token too, is revoked.
    let (status, body) = refresh(first).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
    let (status, body) = refresh(second).await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn revocation_ends_refresh_and_access_tokens() {
    let gw = TestGateway::start("", Backend::current()).await;
    let f = flow(&gw).await;
    let c = code(&gw, &f).await;
    let (_, body) = exchange(&gw, &f, &c, &[]).await;
    let access = body["access_token"].as_str().expect("access").to_owned();
    let refresh = body["refresh_token"].as_str().expect("refresh").to_owned();
    let revoke = |t: String| {
        let url = format!("{}/revoke", gw.public_url());
        let client_id = f.client_id.clone();
        async move {
            let response = http()
                .post(url)
                .form(&[("token", t.as_str()), ("client_id", client_id.as_str())])
                .send()
                .await
                .expect("revoke");
            response.status().as_u16()
        }
    };
    assert_eq!(revoke(refresh.clone()).await, 200);
    let (status, body) = token(
        &gw,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &f.client_id),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].clone()),
        (400, json!("invalid_grant"))
    );

    assert_eq!(revoke(access.clone()).await, 200);
    let now = unix_now();
    let ids = gw
        .running
        .verifier
        .verify(&access, now)
        .expect("verifies")
        .identity
        .revocation_ids
        .clone();
    let revocations = warrant_consent::oauth::Revocations::new(gw.running.db.clone());
    assert!(revocations.any_revoked(&ids).await.expect("check"));
    let snapshot = revocations.snapshot(unix_now()).await.expect("snapshot");
    assert!(
        gw.running
            .verifier
            .verify_unrevoked(&access, unix_now(), &snapshot)
            .is_err(),
        "the verifier refuses a revoked access token"
    );
    assert_eq!(
        revoke("unknown-token".into()).await,
        200,
        "RFC 7009: unknown is fine"
    );
    gw.stop().await;
}

// ---------------------------------------------------------------------------------
// /authorize and the consent screen, driven like a browser

fn authorize_path(client_id: &str, redirect_uri: &str, extra: &[(&str, &str)]) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "st-123")
        .append_pair("scope", "mcp");
    for (k, v) in extra {
        query.append_pair(k, v);
    }
    format!("/authorize?{}", query.finish())
}

/// The query of a redirect to the agent, as pairs.
fn query_of(location: &str) -> std::collections::HashMap<String, String> {
    let url = url::Url::parse(location).expect("an absolute redirect");
    url.query_pairs().into_owned().collect()
}

/// The consent form's fields: every hidden input, plus `extra`.
fn consent_fields(body: &str) -> Vec<(String, String)> {
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
        fields.push((name.to_owned(), warrant_e2e::web::unescape(value)));
    }
    fields
}

async fn register_public(gw: &TestGateway, name: &str) -> String {
    let (status, client) = register(
        gw,
        json!({"client_name": name, "redirect_uris": ["http://127.0.0.1/callback"]}),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    client["client_id"].as_str().expect("client_id").to_owned()
}

#[tokio::test]
async fn a_person_approves_an_agent_which_gets_a_verifiable_token() {
    let gw = TestGateway::start("", Backend::current()).await;
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let user = gw
        .running
        .idp
        .users
        .by_email("admin@example.com")
        .await
        .expect("lookup")
        .expect("the admin");
    let client_id = register_public(&gw, "Claude Code").await;

    // An anonymous visitor is sent to sign in first, and brought back.
    let path = authorize_path(&client_id, REDIRECT, &[]);
    let anonymous = gw.browser().get(&path).await;
    assert!(anonymous.status == 303 || anonymous.status == 302 || anonymous.status == 307);
    assert!(
        anonymous
            .location()
            .is_some_and(|l| l.starts_with("/signin?next="))
    );

    let page = browser.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains("Claude Code"));
    assert!(page.contains("127.0.0.1"));
    assert!(page.contains("first time"));
    let mut fields = consent_fields(&page.body);
    assert!(fields.iter().any(|(k, _)| k == "csrf"));
    fields.push(("decision".into(), "approve".into()));
    fields.push(("duration".into(), "1h".into()));
    fields.push(("servers".into(), "all".into()));
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = browser.post_form("/authorize", &form).await;
    assert!(
        back.status == 303 || back.status == 302,
        "{} {}",
        back.status,
        back.body
    );
    let location = back.location().expect("a redirect to the agent");
    assert!(location.starts_with(REDIRECT), "{location}");
    let q = query_of(&location);
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    assert_eq!(q.get("iss"), Some(&gw.public_url()));
    let code = q.get("code").expect("a code").clone();

    let (status, body) = token(
        &gw,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
            ("client_id", &client_id),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access token");
    let identity = gw
        .running
        .verifier
        .verify(access, unix_now())
        .expect("verifies")
        .identity
        .clone();
    assert_eq!(identity.user, user.id);
    assert_eq!(identity.agent, client_id);
    assert_eq!(identity.audience, format!("{}/mcp", gw.public_url()));
    let grant = Grants::new(gw.running.db.clone())
        .get(&identity.grant)
        .await
        .expect("grant")
        .expect("stored");
    assert_eq!(grant.user_id, user.id);
    assert!(grant.expires_at <= unix_now() + 3600);

    // The agent returns (another loopback port): the live grant covers it, no screen.
    let again = browser
        .get(&authorize_path(
            &client_id,
            "http://127.0.0.1:40000/callback",
            &[],
        ))
        .await;
    let location = again.location().expect("straight back to the agent");
    assert!(
        location.starts_with("http://127.0.0.1:40000/callback"),
        "{location}"
    );
    assert!(query_of(&location).contains_key("code"));
    gw.stop().await;
}

#[tokio::test]
async fn deny_and_bad_requests_are_answered_safely() {
    let gw = TestGateway::start("", Backend::current()).await;
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let client_id = register_public(&gw, "Cursor").await;

    let page = browser
        .get(&authorize_path(&client_id, REDIRECT, &[]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut fields = consent_fields(&page.body);
    fields.push(("decision".into(), "deny".into()));
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = browser.post_form("/authorize", &form).await;
    let q = query_of(&back.location().expect("back to the agent"));
    assert_eq!(q.get("error").map(String::as_str), Some("access_denied"));
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    assert_eq!(q.get("iss"), Some(&gw.public_url()));

    // A POST without the CSRF token does nothing.
    let forged = browser
        .post_form(
            "/authorize",
            &[("decision", "approve"), ("client_id", &client_id)],
        )
        .await;
    assert!(forged.location().is_none_or(|l| !l.contains("code=")));

    // Not redirected: an unregistered redirect URI, an unknown client, a metadata URL.
    let page = browser
        .get(&authorize_path(
            &client_id,
            "https://evil.example.com/cb",
            &[],
        ))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.location().is_none());
    let twice = authorize_path(
        &client_id,
        REDIRECT,
        &[("redirect_uri", "http://127.0.0.1:1/callback")],
    );
    let page = browser.get(&twice).await;
    assert_eq!(page.status, 400, "a repeated parameter is refused");
    assert!(page.location().is_none());
    let page = browser
        .get(&authorize_path("no-such-client", REDIRECT, &[]))
        .await;
    assert_eq!(page.status, 400);
    let page = browser
        .get(&authorize_path(
            "https://agent.example.com/client.json",
            REDIRECT,
            &[],
        ))
        .await;
    assert_eq!(page.status, 400);
    assert!(page.contains("metadata document"));

    // Redirected with error=: no PKCE, another resource.
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", REDIRECT)
        .append_pair("state", "s");
    let no_pkce = browser.get(&format!("/authorize?{}", query.finish())).await;
    let q = query_of(&no_pkce.location().expect("back to the agent"));
    assert_eq!(q.get("error").map(String::as_str), Some("invalid_request"));
    assert_eq!(q.get("iss"), Some(&gw.public_url()));
    let elsewhere = browser
        .get(&authorize_path(
            &client_id,
            REDIRECT,
            &[("resource", "https://elsewhere.example/mcp")],
        ))
        .await;
    let q = query_of(&elsewhere.location().expect("back to the agent"));
    assert_eq!(q.get("error").map(String::as_str), Some("invalid_target"));
    gw.stop().await;
}

#[tokio::test]
async fn confidential_clients_authenticate_with_their_secret() {
    let gw = TestGateway::start("", Backend::current()).await;
    let mut f = flow(&gw).await;
    let (status, client) = register(
        &gw,
        json!({"client_name": "Web agent", "redirect_uris": [REDIRECT],
               "token_endpoint_auth_method": "client_secret_basic"}),
    )
    .await;
    assert_eq!(status, 201, "{client}");
    let client_id = client["client_id"].as_str().expect("client_id").to_owned();
    let secret = client["client_secret"].as_str().expect("secret").to_owned();
    f.client_id = client_id.clone();
    f.grant_id = Grants::new(gw.running.db.clone())
        .create(
            &NewGrant {
                user_id: f.user_id.clone(),
                client_id: client_id.clone(),
                resource: format!("{}/mcp", gw.public_url()),
                allow: vec!["*".into()],
                deny: vec![],
                max_risk: None,
                args: Vec::new(),
                calls_per_hour: None,
                expires_at: unix_now() + 3600,
            },
            unix_now(),
        )
        .await
        .expect("grant")
        .id;

    let exchange_basic = |code: String, secret: String| {
        let url = format!("{}/token", gw.public_url());
        let client_id = client_id.clone();
        async move {
            let response = http()
                .post(url)
                .basic_auth(&client_id, Some(&secret))
                .form(&[
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", REDIRECT),
                    ("code_verifier", VERIFIER),
                ])
                .send()
                .await
                .expect("token");
            let challenge = response.headers().contains_key("www-authenticate");
            let (status, body) = json_of(response).await;
            (status, body, challenge)
        }
    };
    let (status, body, challenge) = exchange_basic(code(&gw, &f).await, "wrong".into()).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    assert!(challenge, "a failed Basic authentication names the scheme");
    let (status, body, _) = exchange_basic(code(&gw, &f).await, secret.clone()).await;
    assert_eq!(status, 200, "{body}");

    // client_secret_post, and a confidential client without its secret.
    let c = code(&gw, &f).await;
    let (status, body) = exchange(&gw, &f, &c, &[("client_secret", &secret)]).await;
    assert_eq!(status, 200, "{body}");
    let c = code(&gw, &f).await;
    let (status, body) = exchange(&gw, &f, &c, &[]).await;
    assert_eq!(
        (status, body["error"].clone()),
        (401, json!("invalid_client"))
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_person_may_allow_only_some_servers() {
    let gw = TestGateway::start(&warrant_e2e::demo_upstream("demo"), Backend::current()).await;
    let (browser, _device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let client_id = register_public(&gw, "VS Code").await;
    let page = browser
        .get(&authorize_path(&client_id, REDIRECT, &[]))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.contains("value=\"demo\""), "the upstreams are offered");
    let mut fields = consent_fields(&page.body);
    for (k, v) in [
        ("decision", "approve"),
        ("duration", "30d"),
        ("servers", "some"),
        ("server", "demo"),
        ("server", "not-an-upstream"),
    ] {
        fields.push((k.into(), v.into()));
    }
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let back = browser.post_form("/authorize", &form).await;
    let q = query_of(&back.location().expect("back to the agent"));
    let code = q.get("code").expect("a code").clone();
    let f = Flow {
        client_id: client_id.clone(),
        user_id: String::new(),
        grant_id: String::new(),
    };
    let (status, body) = exchange(&gw, &f, &code, &[]).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().expect("access token");
    let identity = gw
        .running
        .verifier
        .verify(access, unix_now())
        .expect("verifies")
        .identity
        .clone();
    let grant = Grants::new(gw.running.db.clone())
        .get(&identity.grant)
        .await
        .expect("grant")
        .expect("stored");
    assert_eq!(grant.allow, vec!["demo.*".to_owned()]);
    assert!(grant.expires_at > unix_now() + 29 * 86_400);
    gw.stop().await;
}

#[tokio::test]
async fn an_anonymous_person_signs_in_and_comes_back_to_the_consent_screen() {
    let gw = TestGateway::start("", Backend::current()).await;
    let (_admin, mut device) = warrant_e2e::passkey::first_admin(&gw, "admin@example.com").await;
    let client_id = register_public(&gw, "Inspector").await;
    let path = authorize_path(&client_id, REDIRECT, &[]);

    let browser = gw.browser();
    let first = browser.get(&path).await;
    let signin = first.location().expect("sent to sign in");
    let next = url::Url::parse(&format!("http://x{signin}"))
        .expect("a path")
        .query_pairs()
        .find(|(k, _)| k == "next")
        .map(|(_, v)| v.into_owned())
        .expect("next");
    assert_eq!(next, path, "the whole request comes back");

    let page = browser.get(&signin).await;
    let csrf = page.csrf().expect("csrf");
    let start = browser
        .post_json("/auth/passkey/login/start", &csrf, &json!({}))
        .await;
    assert_eq!(start.status, 200, "{}", start.body);
    let assertion = device
        .sign_in(&gw.public_url(), &warrant_e2e::passkey::json_of(&start))
        .expect("the authenticator signs");
    let done = browser
        .post_json(
            "/auth/passkey/login/finish",
            &csrf,
            &json!({"credential": assertion, "next": next}),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    let redirect = warrant_e2e::passkey::json_of(&done)["redirect"]
        .as_str()
        .expect("redirect")
        .to_owned();
    assert_eq!(redirect, path);
    let consent = browser.get(&redirect).await;
    assert_eq!(consent.status, 200, "{}", consent.body);
    assert!(consent.contains("Inspector"));
    gw.stop().await;
}

#[tokio::test]
async fn registration_and_token_requests_are_limited_per_address() {
    let gw = TestGateway::start("", Backend::current()).await;
    let body = json!({"client_name": "Loop", "redirect_uris": ["http://127.0.0.1/callback"]});
    for i in 0..60 {
        let (status, reply) = register(&gw, body.clone()).await;
        assert_eq!(status, 201, "registration {i}: {reply}");
    }
    let response = http()
        .post(format!("{}/register", gw.public_url()))
        .json(&body)
        .send()
        .await
        .expect("register");
    assert_eq!(response.status(), 429);
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("3600")
    );
    let reply: Value = response.json().await.expect("json");
    assert_eq!(reply["error"], json!("temporarily_unavailable"));
    assert!(
        reply["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("client registrations from one address")),
        "{reply}"
    );
    // The token endpoint counts separately: it still answers (here: who is asking?).
    let (status, reply) = token(
        &gw,
        &[("grant_type", "refresh_token"), ("refresh_token", "x")],
    )
    .await;
    assert_eq!(status, 401, "{reply}");
    assert_eq!(reply["error"], json!("invalid_client"));
    gw.stop().await;
}

#[tokio::test]
async fn revocation_requests_are_limited_per_address() {
    let gw = TestGateway::start("", Backend::current()).await;
    let revoke = || async {
        let response = http()
            .post(format!("{}/revoke", gw.public_url()))
            .form(&[("token", "not-a-token"), ("client_id", "nobody")])
            .send()
            .await
            .expect("revoke");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let reply: Value = response.json().await.unwrap_or(Value::Null);
        (status, retry_after, reply)
    };
    for i in 0..60 {
        let (status, _, reply) = revoke().await;
        assert_eq!(status, 401, "revocation {i}: {reply}");
    }
    let (status, retry_after, reply) = revoke().await;
    assert_eq!(status, 429, "{reply}");
    assert_eq!(retry_after.as_deref(), Some("60"));
    assert_eq!(reply["error"], json!("temporarily_unavailable"));
    assert!(
        reply["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("token revocations from one address")),
        "{reply}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_forwarded_client_is_counted() {
    let gw = TestGateway::start(
        "[server]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n",
        Backend::current(),
    )
    .await;
    let body = json!({"client_name": "Loop", "redirect_uris": ["http://127.0.0.1/callback"]});
    let register_as = |client: &'static str| {
        let body = body.clone();
        let url = format!("{}/register", gw.public_url());
        async move {
            http()
                .post(url)
                .header("x-forwarded-for", format!("{client}, 127.0.0.1"))
                .json(&body)
                .send()
                .await
                .expect("register")
                .status()
                .as_u16()
        }
    };
    for _ in 0..60 {
        assert_eq!(register_as("198.51.100.1").await, 201);
    }
    assert_eq!(
        register_as("198.51.100.1").await,
        429,
        "that client is limited"
    );
    assert_eq!(
        register_as("198.51.100.2").await,
        201,
        "another client behind the same proxy is not"
    );
    gw.stop().await;
}
