//! `warrant serve` as a user runs it: the real binary with the embedded defaults (SQLite,
//! or the test run's PostgreSQL), on a port the OS picks, with what it printed.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::passkey::{SoftAuthenticator, run_setup_at};
use crate::web::Browser;
use crate::{Backend, fresh_postgres, workspace_bin};

/// A running `warrant serve`, killed on drop.
pub struct Served {
    pub child: tokio::process::Child,
    dir: tempfile::TempDir,
    /// The URL of the `Warrant listening on` line.
    pub url: String,
    /// The port in that URL.
    pub port: String,
    /// The public origin, `http://localhost:PORT` by default.
    pub origin: String,
    /// The first-start setup link (the line after the listening line).
    pub setup_link: String,
    /// Everything printed on standard error so far.
    stderr: Arc<Mutex<String>>,
}

impl Served {
    /// Starts `warrant serve --listen 127.0.0.1:0` with a fresh data directory and reads
    /// its first two lines.
    pub async fn start() -> Self {
        crate::init();
        let dir = tempfile::tempdir().expect("dir");
        let mut command = tokio::process::Command::new(workspace_bin("warrant"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env_remove("WARRANT_CONFIG")
            .env_remove("WARRANT_DATABASE_URL")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if Backend::current() == Backend::Postgres {
            command.env("WARRANT_DATABASE_URL", fresh_postgres().await);
        }
        let mut child = command.spawn().expect("start warrant");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut all = sink.lock().expect("stderr");
                all.push_str(&line);
                all.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let listening = next_line(&mut lines).await;
        let url = listening
            .strip_prefix("Warrant listening on ")
            .unwrap_or_else(|| panic!("the listening line: {listening}"))
            .to_owned();
        let port = url
            .strip_suffix("/mcp")
            .and_then(|u| u.rsplit(':').next())
            .unwrap_or_else(|| panic!("an /mcp URL with a port: {url}"))
            .to_owned();
        // The default public URL: pages, passkeys and OAuth live there.
        let origin = format!("http://localhost:{port}");
        let line = next_line(&mut lines).await;
        let setup_link = line
            .strip_prefix("First start: create the admin account at ")
            .and_then(|rest| rest.strip_suffix(" (valid 15 minutes, single use)"))
            .unwrap_or_else(|| panic!("the setup line: {line}"))
            .to_owned();
        Self {
            child,
            dir,
            url,
            port,
            origin,
            setup_link,
            stderr,
        }
    }

    /// The data directory it was given.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Standard error once it has printed a line containing `needle` (within 30 s).
    pub async fn stderr_with(&self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let text = self.stderr.lock().expect("stderr").clone();
            if text.contains(needle) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {needle:?} on standard error:\n{text}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first admin, created through the printed setup link: a signed-in browser.
    pub async fn first_admin(&self) -> Browser {
        let browser = Browser::new(&self.origin);
        let mut device = SoftAuthenticator::new();
        let done = run_setup_at(
            &self.origin,
            &browser,
            &mut device,
            &self.setup_link,
            "First Admin",
            "admin@example.com",
        )
        .await;
        assert_eq!(done.status, 200, "setup finish: {}", done.body);
        browser
    }
}

async fn next_line(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>) -> String {
    tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("a line within 30s")
        .expect("read")
        .expect("a line")
}

/// `warrant serve --config CONFIG` on `data_dir` (and `database_url`), on a port the OS
/// picks: the child (killed on drop) and its `/mcp` URL, once it printed it.
pub async fn serve_config(
    config: &std::path::Path,
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> (tokio::process::Child, String) {
    let mut command = tokio::process::Command::new(workspace_bin("warrant"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("WARRANT_CONFIG")
        .env_remove("WARRANT_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        command.env("WARRANT_DATABASE_URL", url);
    }
    let mut child = command.spawn().expect("start warrant");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("a line within 60s")
        .expect("read")
        .expect("the listening line");
    let url = line
        .strip_prefix("Warrant listening on ")
        .unwrap_or_else(|| panic!("the listening line: {line}"))
        .to_owned();
    // Keep reading what it prints, so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}
