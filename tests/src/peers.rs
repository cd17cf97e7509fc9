//! Upstream peers started for a test: processes on loopback, killed on drop.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};

use crate::{node_modules, repo_root, workspace_bin};

/// A child process that is killed when this guard drops.
pub struct ChildGuard {
    pub child: Child,
}

impl ChildGuard {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Reads lines from a child's stream until one contains `marker`; returns that line.
async fn wait_for_line(
    stream: impl AsyncRead + Unpin + Send + 'static,
    marker: &str,
    what: &str,
) -> String {
    let mut lines = BufReader::new(stream).lines();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains(marker) {
                return Some(line);
            }
        }
        None
    })
    .await;
    let line = match found {
        Ok(Some(line)) => line,
        Ok(None) => panic!("{what} exited before printing {marker:?}"),
        Err(_) => panic!("{what} did not print {marker:?} within 30s"),
    };
    // Keep draining so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    line
}

/// `@modelcontextprotocol/server-everything` over Streamable HTTP on loopback; its
/// `/mcp` URL.
pub async fn everything_http() -> (ChildGuard, String) {
    let (child, addr) = everything("streamableHttp").await;
    (child, format!("http://{addr}/mcp"))
}

/// `@modelcontextprotocol/server-everything` over the legacy HTTP+SSE transport on
/// loopback; its `/sse` URL.
pub async fn everything_sse() -> (ChildGuard, String) {
    let (child, addr) = everything("sse").await;
    (child, format!("http://{addr}/sse"))
}

async fn everything(mode: &str) -> (ChildGuard, String) {
    let modules = node_modules();
    let mut child = Command::new("node")
        .arg("--require")
        .arg(repo_root().join("tests/node/loopback.cjs"))
        .arg(modules.join("@modelcontextprotocol/server-everything/dist/index.js"))
        .arg(mode)
        .env("PORT", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start server-everything (is node installed?)");
    let stderr = child.stderr.take().expect("piped stderr");
    let line = wait_for_line(stderr, "loopback-listening", "server-everything").await;
    let addr = line.rsplit(' ').next().unwrap_or_default().to_owned();
    (ChildGuard { child }, addr)
}

/// One of our fixture binaries in its HTTP mode (`<bin> http --listen 127.0.0.1:0`),
/// which prints `listening on <url>`; its URL.
pub async fn fixture_http(bin: &str) -> (ChildGuard, String) {
    fixture_with(bin, &["http", "--listen", "127.0.0.1:0"]).await
}

/// One of our fixture binaries started with `args`, which prints `listening on <url>`;
/// its URL.
pub async fn fixture_with(bin: &str, args: &[&str]) -> (ChildGuard, String) {
    let mut child = Command::new(workspace_bin(bin))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("start a fixture server");
    let stdout = child.stdout.take().expect("piped stdout");
    let line = wait_for_line(stdout, "listening on ", bin).await;
    let url = line.rsplit(' ').next().unwrap_or_default().to_owned();
    (ChildGuard { child }, url)
}
