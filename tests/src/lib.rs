//! The end-to-end harness: starts Warrant in-process on `127.0.0.1:0` with a given
//! configuration and storage backend, starts real upstream peers (our fixture binaries,
//! `@modelcontextprotocol/server-everything`), and connects real clients.
//!
//! Everything binds to loopback, every port is chosen by the OS, every process started
//! here is killed when its guard drops, and every test gets its own data directory (and
//! its own PostgreSQL database when that backend is selected).
//!
//! Backends: each test runs on [`Backend::current`], SQLite unless
//! `WARRANT_TEST_BACKEND=postgres`; the test script runs the suite once per backend.
//! PostgreSQL needs `WARRANT_TEST_DATABASE_URL`, a server where the user may create
//! databases (the test script starts one); each gateway gets a database of its own.

pub mod agent;
pub mod at_rest;
pub mod client;
pub mod oidc;
pub mod passkey;
pub mod peers;
pub mod raw;
pub mod served;
pub mod smtp;
pub mod web;

use std::path::{Path, PathBuf};
use std::sync::Once;

use tempfile::TempDir;
use warrant_proxy::app::{self, Running};
use warrant_proxy::config::{self, McpAuthorization, Overrides};

pub use client::{Recorder, TestClient, connect};
pub use peers::{ChildGuard, everything_http, everything_sse, fixture_http};
pub use raw::{Raw, Reply};

/// Installs the TLS provider and test logging, once per process.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let filter = tracing_subscriber::EnvFilter::try_from_env("WARRANT_TEST_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A binary of this workspace, from the same target directory as the running test.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace` or scripts/test.sh)",
        path.display()
    );
    path
}

/// The Node packages the tests drive (installed by scripts/test.sh into tests/node).
pub fn node_modules() -> PathBuf {
    let dir = repo_root().join("tests/node/node_modules");
    assert!(
        dir.join("@modelcontextprotocol/server-everything").exists(),
        "{} has no MCP peers: run scripts/test.sh, which installs them (npm ci in tests/node)",
        dir.display()
    );
    dir
}

/// Runs the Chromium script `tests/node/SCRIPT` with `args` (at most 90 s): the JSON
/// result it prints as its last line, and its standard error; panics, showing both
/// streams, when it prints none.
pub async fn browser_script(
    script: &str,
    args: &[&std::ffi::OsStr],
) -> (serde_json::Value, String) {
    let path = node_modules().parent().expect("tests/node").join(script);
    let run = tokio::process::Command::new("node")
        .arg(&path)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(90), run)
        .await
        .expect("the browser run ends within 90 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let line = stdout.lines().last().unwrap_or_default();
    let result = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("no result line ({e}); stdout: {stdout}\nstderr: {stderr}"));
    (result, stderr)
}

/// A storage backend for one gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend of this test run: `WARRANT_TEST_BACKEND=postgres` (the test script's
    /// second pass) or SQLite.
    pub fn current() -> Self {
        match std::env::var("WARRANT_TEST_BACKEND").as_deref() {
            Ok("postgres") => Self::Postgres,
            _ => Self::Sqlite,
        }
    }
}

/// The backends this run covers.
pub fn backends() -> Vec<Backend> {
    let mut list = vec![Backend::Sqlite];
    if std::env::var("WARRANT_TEST_DATABASE_URL").is_ok() {
        list.push(Backend::Postgres);
    } else if std::env::var("WARRANT_TEST_REQUIRE_POSTGRES").as_deref() == Ok("1") {
        panic!("WARRANT_TEST_REQUIRE_POSTGRES=1 but WARRANT_TEST_DATABASE_URL is not set");
    }
    list
}

/// A new, empty PostgreSQL database on the test server; its URL.
pub async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let base = std::env::var("WARRANT_TEST_DATABASE_URL").expect("WARRANT_TEST_DATABASE_URL");
    let name = format!("warrant_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to the test PostgreSQL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let mut url = url::Url::parse(&base).expect("a valid URL");
    url.set_path(&name);
    url.to_string()
}

/// A Warrant started for one test.
pub struct TestGateway {
    pub running: Running,
    pub backend: Backend,
    pub data_dir: TempDir,
    /// Its PostgreSQL database (`None` on SQLite: the file in `data_dir`), for the
    /// commands an operator runs against it (`warrant policy`, `warrant keys`).
    pub database_url: Option<String>,
}

impl TestGateway {
    /// Starts Warrant with `toml` (its `[server] listen` is forced to `127.0.0.1:0`) and
    /// `mcp.authorization = "none"`: for the tests of routing, bridging and the
    /// protocol, which are about what happens past the token check. The token check
    /// itself has its own tests ([`TestGateway::start_protected`]).
    pub async fn start(toml: &str, backend: Backend) -> Self {
        Self::start_with(toml, backend, McpAuthorization::None).await
    }

    /// Starts Warrant with `toml` as configured: `/mcp` wants an access token.
    pub async fn start_protected(toml: &str, backend: Backend) -> Self {
        Self::start_with(toml, backend, McpAuthorization::OAuth).await
    }

    async fn start_with(toml: &str, backend: Backend, authorization: McpAuthorization) -> Self {
        init();
        let data_dir = tempfile::tempdir().expect("a temporary data directory");
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(fresh_postgres().await),
        };
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            data_dir: Some(data_dir.path().to_path_buf()),
            database_url: database_url.clone(),
        };
        let mut config = config::parse(toml, "test config", &overrides)
            .unwrap_or_else(|report| panic!("{report}"));
        config.mcp.authorization = authorization;
        let running = app::start(config).await.expect("Warrant starts");
        Self {
            running,
            backend,
            data_dir,
            database_url,
        }
    }

    pub fn url(&self) -> String {
        self.running.mcp_url()
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.running.local_addr)
    }

    /// The URL people use (`http://localhost:PORT` unless the config sets
    /// `server.public_url`): the pages, links in mails, OIDC redirects, WebAuthn origin.
    pub fn public_url(&self) -> String {
        self.running
            .public_url
            .as_str()
            .trim_end_matches('/')
            .to_owned()
    }

    /// Trusts `server`'s MCP annotations, as an admin would on its page: its tools
    /// nobody reviewed take the class their annotations suggest instead of `critical`.
    pub async fn trust_annotations(&self, server: &str) {
        self.running
            .catalog
            .set_trusted(server, Some("tests"), agent::unix_now())
            .await
            .expect("trust the annotations");
    }

    /// A scripted browser on the public URL.
    pub fn browser(&self) -> web::Browser {
        web::Browser::new(&self.public_url())
    }

    pub async fn stop(self) {
        self.running.stop().await.expect("Warrant stops cleanly");
    }

    /// `warrant ARGS` as an operator runs it against this gateway: on its data directory
    /// and database, without Warrant's own environment variables. Not run yet: add what
    /// the command needs, then [`run_cli`].
    pub fn cli(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(workspace_bin("warrant"));
        command
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .env_remove("WARRANT_CONFIG")
            .env_remove("WARRANT_DATABASE_URL")
            .env_remove("WARRANT_DATA_DIR")
            .env("RUST_LOG", "warn");
        if let Some(url) = &self.database_url {
            command.arg("--database-url").arg(url);
        }
        command
    }

    /// `warrant ARGS` against this gateway ([`Self::cli`]) with `stdin` piped in.
    pub async fn warrant(&self, args: &[&str], stdin: &str) -> std::process::Output {
        run_cli(self.cli(args), stdin).await
    }
}

/// Runs a `warrant` command with `stdin` piped in (never a terminal), without blocking
/// the test's runtime (a gateway running on it may be holding a write the command
/// waits for): its output.
pub async fn run_cli(mut command: tokio::process::Command, stdin: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("warrant runs");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    child.wait_with_output().await.expect("warrant ends")
}

/// The Python of the test virtualenv (tests/python/.venv: the MCP SDK, the SMTP server,
/// the Biscuit library, Prometheus's text parser), installed by scripts/test.sh.
pub fn python() -> PathBuf {
    let python = repo_root().join("tests/python/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run scripts/test.sh, which installs tests/python/requirements.txt",
        python.display()
    );
    python
}

/// A TOML table for a stdio upstream running one of our fixture binaries.
pub fn stdio_upstream(name: &str, bin: &str, args: &[&str]) -> String {
    let path = workspace_bin(bin);
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    format!(
        "[upstreams.{name}]\ncommand = {:?}\nargs = [{}]\n",
        path.display().to_string(),
        args.join(", ")
    )
}

/// A TOML table for `warrant demo-server` as a stdio upstream.
pub fn demo_upstream(name: &str) -> String {
    stdio_upstream(name, "warrant", &["demo-server"])
}

/// A TOML table for server-everything over stdio (with the machine's Node).
pub fn everything_stdio_upstream(name: &str) -> String {
    let script = node_modules().join("@modelcontextprotocol/server-everything/dist/index.js");
    format!(
        "[upstreams.{name}]\ncommand = \"node\"\nargs = [{:?}, \"stdio\"]\n",
        script.display().to_string()
    )
}
