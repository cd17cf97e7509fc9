//! The pages in a real browser: headless Chromium (Debian's package, driven by
//! playwright-core) with its virtual WebAuthn authenticator. The first admin is created
//! from the setup link, signs out, signs in again with the passkey, opens the admin
//! pages, then approves an agent on the consent screen; `passkey.js` runs under the
//! pages' real content security policy. Screenshots land in `target/screenshots/` for
//! people to look at.

use warrant_e2e::{Backend, TestGateway, demo_upstream, repo_root};

#[tokio::test]
async fn setup_signout_and_passkey_signin_in_chromium() {
    let gw = TestGateway::start(&demo_upstream("demo"), Backend::current()).await;
    // As `warrant serve` does for its built-in demo: the consent screen then shows the
    // classes the tools' annotations suggest, and the rows to limit their arguments.
    gw.trust_annotations("demo").await;
    let link = gw
        .running
        .setup_link
        .clone()
        .expect("a fresh Warrant offers a setup link");
    let out = repo_root()
        .join("target/screenshots")
        .join(format!("{:?}", gw.backend).to_lowercase());
    // An agent registers (as Claude Code would) and asks for access.
    let registered: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/register", gw.public_url()))
        .json(&serde_json::json!({
            "client_name": "Browser Agent",
            "redirect_uris": ["http://127.0.0.1/callback"],
        }))
        .send()
        .await
        .expect("register answered")
        .json()
        .await
        .expect("registration JSON");
    let client_id = registered["client_id"].as_str().expect("a client id");
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", "http://127.0.0.1:51234/callback")
        .append_pair(
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        )
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", "browser-state");
    let authorize = format!("{}/authorize?{}", gw.public_url(), query.finish());

    let (result, stderr) = warrant_e2e::browser_script(
        "browser_pages.mjs",
        &[link.as_ref(), out.as_os_str(), authorize.as_ref()],
    )
    .await;
    assert_eq!(result["ok"], true, "{result:#}\nstderr: {stderr}");
    assert_eq!(
        result["steps"],
        serde_json::json!(["setup", "signout", "passkey-signin", "admin", "consent"])
    );
    let shots = result["screenshots"].as_array().expect("screenshots");
    assert_eq!(shots.len(), 7);
    let callback = url::Url::parse(
        result["callback"]
            .as_str()
            .expect("the agent was called back"),
    )
    .expect("a URL");
    let back: std::collections::HashMap<String, String> =
        callback.query_pairs().into_owned().collect();
    assert_eq!(back.get("state").map(String::as_str), Some("browser-state"));
    assert_eq!(back.get("iss"), Some(&gw.public_url()));
    assert!(
        back.get("code").is_some_and(|c| !c.is_empty()),
        "{callback}"
    );
    for shot in shots {
        let path = shot.as_str().expect("a path");
        let size = std::fs::metadata(path).expect("screenshot written").len();
        assert!(size > 5_000, "{path} is {size} bytes: an empty page?");
    }

    // What the browser did is what the database says.
    let admin = gw
        .running
        .idp
        .users
        .by_email("ada@example.com")
        .await
        .expect("lookup")
        .expect("the admin exists");
    assert!(admin.is_admin());
    assert!(gw.running.idp.users.any_admin().await.expect("count"));
    gw.stop().await;
}
