//! The pages in a real browser: headless Chromium (Debian's package, driven by
//! playwright-core) with its virtual WebAuthn authenticator. The first admin is created
//! from the setup link, signs out, signs in again with the passkey and opens the admin
//! pages; `passkey.js` runs under the pages' real content security policy. Screenshots
//! land in `target/screenshots/` for people to look at.

use std::process::Stdio;
use std::time::Duration;

use warrant_e2e::{Backend, TestGateway, demo_upstream, node_modules, repo_root};

#[tokio::test]
async fn setup_signout_and_passkey_signin_in_chromium() {
    let gw = TestGateway::start(&demo_upstream("demo"), Backend::current()).await;
    let link = gw
        .running
        .setup_link
        .clone()
        .expect("a fresh Warrant offers a setup link");
    let out = repo_root()
        .join("target/screenshots")
        .join(format!("{:?}", gw.backend).to_lowercase());
    let script = node_modules()
        .parent()
        .expect("tests/node")
        .join("browser_pages.mjs");
    let run = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&link)
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the browser run ends within 90 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stdout.lines().last().unwrap_or_default();
    let result: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("no result line ({e}); stdout: {stdout}\nstderr: {stderr}"));
    assert_eq!(result["ok"], true, "{result:#}\nstderr: {stderr}");
    assert_eq!(
        result["steps"],
        serde_json::json!(["setup", "signout", "passkey-signin", "admin"])
    );
    let shots = result["screenshots"].as_array().expect("screenshots");
    assert_eq!(shots.len(), 6);
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
