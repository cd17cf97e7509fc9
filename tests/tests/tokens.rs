//! Access-token keys and the token commands as an operator uses them: `warrant keys
//! list | rotate` and `warrant token attenuate` run as processes against the data
//! directory (and database) of a Warrant started in-process, which creates the first
//! key on start and publishes the public keys.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;
use warrant_consent::token::{
    CallFacts, KeyRing, KeySettings, MintRequest, Restriction, Risk, ToolPattern, authorize, mint,
};
use warrant_e2e::{Backend, fresh_postgres, init, workspace_bin};
use warrant_proxy::app::{self, Running};
use warrant_proxy::config::{self, Overrides};

/// One storage place for the gateway and the commands: a data directory, and a
/// PostgreSQL database when that backend runs.
struct Place {
    dir: TempDir,
    database_url: Option<String>,
}

impl Place {
    async fn new() -> Self {
        init();
        let database_url = match Backend::current() {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres().await),
        };
        Self {
            dir: tempfile::tempdir().expect("data dir"),
            database_url,
        }
    }

    fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// `warrant ARGS --data-dir D [--database-url U]`.
    fn warrant(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut place = vec![
            "--data-dir".to_owned(),
            self.data_dir().display().to_string(),
        ];
        if let Some(url) = &self.database_url {
            place.extend(["--database-url".to_owned(), url.clone()]);
        }
        let mut all: Vec<&str> = args.to_vec();
        all.extend(place.iter().map(String::as_str));
        offline(&all, stdin)
    }

    async fn start(&self) -> Running {
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(self.data_dir().to_path_buf()),
            database_url: self.database_url.clone(),
        };
        let config = config::parse("", "test config", &overrides).unwrap_or_else(|r| panic!("{r}"));
        app::start(config).await.expect("Warrant starts")
    }
}

/// `warrant ARGS`, with `stdin` fed in, in an environment that names no data.
fn offline(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(workspace_bin("warrant"))
        .args(args)
        .env_remove("WARRANT_CONFIG")
        .env_remove("WARRANT_DATABASE_URL")
        .env_remove("WARRANT_DATA_DIR")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run warrant");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("warrant ends")
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn keys_json(place: &Place) -> Vec<Value> {
    let text = ok(&place.warrant(&["keys", "list", "--json"], None));
    let value: Value = serde_json::from_str(&text).expect("JSON");
    value["keys"].as_array().expect("a key list").clone()
}

async fn published(running: &Running) -> Vec<Value> {
    let url = format!(
        "http://{}/.well-known/warrant-keys.json",
        running.local_addr
    );
    let response = reqwest::get(&url).await.expect("GET warrant-keys.json");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("JSON");
    body["keys"].as_array().expect("a key list").clone()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .expect("a clock after 1970")
}

fn request(running: &Running) -> MintRequest {
    MintRequest {
        user: "user-1".into(),
        agent: "agent-1".into(),
        grant: "grant-1".into(),
        audience: running.mcp_url(),
        expires_at: now() + 600,
        calls_per_hour: None,
        consent: Restriction {
            allow: Some(vec![ToolPattern::parse("demo.*").expect("pattern")]),
            ..Restriction::default()
        },
    }
}

fn call(running: &Running, tool: &str, message: &str) -> CallFacts {
    CallFacts {
        now: now(),
        resource: running.mcp_url(),
        server: "demo".into(),
        tool: tool.into(),
        risk: Risk::Low,
        ceiling: None,
        args: [("message".to_owned(), message.to_owned())].into(),
        person: None,
    }
}

#[tokio::test]
async fn keys_are_created_on_first_start_listed_rotated_and_published() {
    let place = Place::new().await;
    // Listing is read-only: no key and no secret key file yet.
    assert!(keys_json(&place).is_empty());
    assert!(!place.data_dir().join("secret.key").exists());

    let running = place.start().await;
    let secret = place.data_dir().join("secret.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&secret)
            .expect("secret.key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "secret.key is private");
    }
    let secret_text = std::fs::read_to_string(&secret).expect("read secret.key");
    let listed = keys_json(&place);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["kid"], 1);
    assert_eq!(listed[0]["algorithm"], "Ed25519");
    assert!(listed[0].get("retired_at").is_none());
    assert_eq!(published(&running).await, listed);

    let old = mint(&running.keys, &request(&running), now()).expect("mint");
    assert_eq!(
        running
            .verifier
            .verify(&old, now())
            .expect("verify")
            .identity
            .kid,
        1
    );

    let rotated = place.warrant(&["keys", "rotate"], None);
    let text = ok(&rotated);
    assert!(
        text.contains("key 2 is now the active token signing key"),
        "{text}"
    );
    assert!(
        text.contains("key 1 is retired: it verifies the tokens it signed until"),
        "{text}"
    );
    let table = ok(&place.warrant(&["keys", "list"], None));
    assert!(table.contains("active: signs new tokens"), "{table}");
    assert!(table.contains("retired: verifies until"), "{table}");
    let printed = format!("{text}{}{table}", String::from_utf8_lossy(&rotated.stderr));
    assert!(
        !printed.contains(secret_text.trim()),
        "the secret key is never printed"
    );
    let listed = keys_json(&place);
    assert_eq!(listed.len(), 2);
    assert!(listed[0]["retired_at"].is_i64() && listed[0]["accepted_until"].is_i64());
    assert!(listed[1].get("retired_at").is_none());

    // The running gateway picks the rotation up on reload: it signs with key 2 and
    // still verifies what key 1 signed.
    running.keys.reload().await.expect("reload");
    assert_eq!(running.keys.active_kid(), Some(2));
    assert_eq!(published(&running).await.len(), 2);
    let new = mint(&running.keys, &request(&running), now()).expect("mint");
    assert_eq!(
        running
            .verifier
            .verify(&new, now())
            .expect("new")
            .identity
            .kid,
        2
    );
    assert_eq!(
        running
            .verifier
            .verify(&old, now())
            .expect("old")
            .identity
            .kid,
        1
    );
    running.stop().await.expect("stops");

    // A restart keeps both keys.
    let again = place.start().await;
    assert_eq!(again.keys.active_kid(), Some(2));
    again.stop().await.expect("stops");
}

#[tokio::test]
async fn token_attenuate_narrows_a_token_offline() {
    let place = Place::new().await;
    let running = place.start().await;
    let token = mint(&running.keys, &request(&running), now()).expect("mint");

    // From standard input, with tools, a shorter life and an argument constraint.
    let narrowed = ok(&offline(
        &[
            "token",
            "attenuate",
            "--token",
            "-",
            "--tools",
            "demo.echo",
            "--ttl",
            "5m",
            "--arg",
            "message=prefix:hi",
        ],
        Some(&token),
    ));
    let narrowed = narrowed.trim();
    assert_ne!(narrowed, token);
    let verified = running.verifier.verify(narrowed, now()).expect("verifies");
    assert_eq!(verified.identity.chain.len(), 3);
    assert_eq!(verified.identity.user, "user-1");
    let narrowing = verified.identity.chain[2]
        .restriction
        .as_ref()
        .expect("described");
    let ends = narrowing.expires_at.expect("a shorter life");
    assert!((now() + 290..=now() + 300).contains(&ends), "{ends}");

    assert!(authorize(&verified, &call(&running, "echo", "hi there")).allow);
    let other = authorize(&verified, &call(&running, "add", "hi"));
    assert!(!other.allow);
    assert!(
        other.reason.contains("does not include tool demo.add"),
        "{}",
        other.reason
    );
    let bad_arg = authorize(&verified, &call(&running, "echo", "bye"));
    assert!(
        bad_arg
            .reason
            .contains("argument \"message\" must start with \"hi\""),
        "{}",
        bad_arg.reason
    );
    // The parent still allows what the child no longer does.
    let parent = running.verifier.verify(&token, now()).expect("parent");
    assert!(authorize(&parent, &call(&running, "add", "x")).allow);

    // Narrowing again, from the command line; widening is impossible.
    let wider = ok(&offline(
        &[
            "token",
            "attenuate",
            "--token",
            narrowed,
            "--tools",
            "*",
            "--deny",
            "demo.echo,demo.add_*",
            "--max-risk",
            "low",
        ],
        None,
    ));
    let verified = running
        .verifier
        .verify(wider.trim(), now())
        .expect("verifies");
    assert_eq!(verified.identity.chain.len(), 4);
    let echo = authorize(&verified, &call(&running, "echo", "hi"));
    assert!(!echo.allow);
    assert!(
        echo.reason.contains("denies tool demo.echo"),
        "{}",
        echo.reason
    );
    assert!(!authorize(&verified, &call(&running, "add", "hi")).allow);

    // Errors: a broken token, a bad pattern, nothing to narrow.
    for args in [
        vec![
            "token",
            "attenuate",
            "--token",
            "not-a-token",
            "--tools",
            "demo.*",
        ],
        vec![
            "token",
            "attenuate",
            "--token",
            narrowed,
            "--tools",
            "demo.",
        ],
        vec!["token", "attenuate", "--token", narrowed],
        vec![
            "token",
            "attenuate",
            "--token",
            narrowed,
            "--max-risk",
            "extreme",
        ],
    ] {
        let output = offline(&args, None);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "no token printed on failure");
        assert!(String::from_utf8_lossy(&output.stderr).starts_with("error: "));
    }
    running.stop().await.expect("stops");
}

#[tokio::test]
async fn a_wrong_or_exposed_secret_key_stops_the_key_commands() {
    let place = Place::new().await;
    let running = place.start().await;
    running.stop().await.expect("stops");
    let secret = place.data_dir().join("secret.key");

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let output = place.warrant(&["keys", "rotate"], None);
        assert_eq!(output.status.code(), Some(1));
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(
            err.contains("can be read by other users") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    // A configured key that is not the one the keys were encrypted with.
    let config = place.data_dir().join("other.toml");
    std::fs::write(
        &config,
        "[server]\nsecret_key = \"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\"\n",
    )
    .expect("write config");
    let config = config.to_string_lossy().into_owned();
    let output = place.warrant(&["keys", "rotate", "--config", &config], None);
    assert_eq!(output.status.code(), Some(1));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("cannot use stored token signing key 1"),
        "{err}"
    );
    assert!(!err.contains("AQEBAQEB"), "the key is never printed: {err}");
    // Nothing changed.
    assert_eq!(keys_json(&place).len(), 1);
    let restarted = place.start().await;
    assert_eq!(restarted.keys.active_kid(), Some(1));
    restarted.stop().await.expect("stops");
}

#[tokio::test]
async fn replicas_rotating_at_once_leave_one_active_key() {
    let place = Place::new().await;
    let Some(url) = place.database_url.clone() else {
        // Replicas share PostgreSQL; the embedded SQLite file has one writer.
        return;
    };
    let open = || async {
        let db = warrant_idp::db::Db::open(Some(&url), place.data_dir())
            .await
            .expect("db");
        db.migrate().await.expect("migrate");
        KeyRing::open(
            db,
            [3; 32],
            KeySettings::default(),
            std::sync::Arc::new(warrant_idp::SystemClock),
        )
        .await
        .expect("key ring")
    };
    // Two replicas starting together create one first key between them.
    let (a, b) = tokio::join!(open(), open());
    assert_eq!(a.active_kid(), b.active_kid());
    for _ in 0..5 {
        let (x, y) = tokio::join!(a.rotate(), b.rotate());
        let (x, y) = (x.expect("rotate a"), y.expect("rotate b"));
        assert_ne!(x.kid, y.kid);
    }
    a.reload().await.expect("reload");
    b.reload().await.expect("reload");
    let keys = a.public_keys();
    assert_eq!(keys.len(), 11);
    let active: Vec<u32> = keys
        .iter()
        .filter(|k| k.retired_at.is_none())
        .map(|k| k.kid)
        .collect();
    assert_eq!(active, vec![11], "only the newest key is active");
    assert_eq!(a.active_kid(), Some(11));
    assert_eq!(b.active_kid(), Some(11));
}
