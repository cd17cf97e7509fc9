//! `warrant import` takes every secret out of an `mcpServers` file: a header, a secret
//! query parameter in a URL, a stdio server's environment and a secret argument go to
//! the vault, the written configuration refers to them, and `warrant serve` with that
//! configuration reaches upstreams that serve only callers with those keys. No secret
//! is in the configuration, what the commands print, the logs, or the database at rest.

use std::time::Duration;

use serde_json::json;
use warrant_e2e::agent::AgentProcess;
use warrant_e2e::peers::fixture_with;
use warrant_e2e::raw::Raw;
use warrant_e2e::{Backend, fresh_postgres, workspace_bin};

const HEADER_KEY: &str = "imp-header-key-4d2a9c";
const QUERY_KEY: &str = "imp-query-key-8b1e7f";
const STDIO_KEY: &str = "imp-stdio-key-3c6d0a";
const OTHER_KEY: &str = "imp-other-key-9e5b21";
/// In the URL of a server that is not there: its connection errors quote that URL.
const DOWN_KEY: &str = "imp-down-key-6a0f3d";

/// Calls `tool` without a token (the imported configuration is served on loopback with
/// `mcp.authorization = "none"`): the text of its result, or the whole response.
async fn call(url: &str, tool: &str) -> String {
    let mut raw = Raw::new(url);
    raw.initialize("2025-11-25").await;
    let reply = raw
        .request(7, "tools/call", json!({"name": tool, "arguments": {}}))
        .await;
    let response = reply.response(7);
    response["result"]["content"][0]["text"]
        .as_str()
        .map_or_else(|| response.to_string(), str::to_owned)
}

/// Every byte under `dir` (the SQLite database and its WAL, the written configuration).
fn bytes_under(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a directory").flatten() {
        let path = entry.path();
        if path.is_dir() {
            bytes.extend(bytes_under(&path));
        } else {
            bytes.extend(std::fs::read(&path).unwrap_or_default());
        }
    }
    bytes
}

fn assert_no_secret(what: &str, bytes: &[u8]) {
    for secret in [HEADER_KEY, QUERY_KEY, STDIO_KEY, OTHER_KEY, DOWN_KEY] {
        let text = String::from_utf8_lossy(bytes);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(secret))
            .take(3)
            .collect();
        assert!(lines.is_empty(), "{secret} is in {what}: {lines:#?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn imported_secrets_live_in_the_vault_only_and_the_servers_work_with_them() {
    warrant_e2e::init();
    let keys = format!("header={HEADER_KEY},query={QUERY_KEY}");
    let (_http, url) = fixture_with(
        "keyed_upstream",
        &["--keys", &keys, "http", "--listen", "127.0.0.1:0"],
    )
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let stdio_keys = format!("stdio={STDIO_KEY},other={OTHER_KEY}");
    let servers = json!({"mcpServers": {
        "by header": {"type": "http", "url": url, "headers": {"Authorization": format!("Bearer {HEADER_KEY}")}},
        "by query": {"type": "http", "url": format!("{url}?key={QUERY_KEY}")},
        "by env": {"command": workspace_bin("keyed_upstream"), "args": ["--keys", stdio_keys],
                   "env": {"KEYED_API_KEY": STDIO_KEY}},
        "down": {"type": "http", "url": format!("http://127.0.0.1:{}/mcp?token={DOWN_KEY}", warrant_e2e::agent::free_port())}
    }});
    let file = dir.path().join(".mcp.json");
    std::fs::write(&file, servers.to_string()).expect("write");
    let out = dir.path().join("warrant.toml");
    let database_url = match Backend::current() {
        Backend::Postgres => Some(fresh_postgres().await),
        Backend::Sqlite => None,
    };

    let mut import = tokio::process::Command::new(workspace_bin("warrant"));
    import
        .arg("import")
        .arg(&file)
        .arg("--output")
        .arg(&out)
        .arg("--data-dir")
        .arg(&data)
        .env_remove("WARRANT_CONFIG")
        .env_remove("WARRANT_DATABASE_URL");
    if let Some(db) = &database_url {
        import.args(["--database-url", db]);
    }
    let imported = import.output().await.expect("run warrant import");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&imported.stdout),
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(imported.status.success(), "{printed}");
    assert_no_secret("what `warrant import` printed", printed.as_bytes());
    // It says what it moved, by upstream and place.
    for moved in [
        "upstreams.by-header: header Authorization",
        "upstreams.by-query: URL query key",
        "upstreams.by-env: env KEYED_API_KEY",
        "upstreams.by-env: argument 2",
    ] {
        assert!(printed.contains(moved), "{moved}: {printed}");
    }
    std::fs::remove_file(&file).expect("the JSON file goes");
    assert_no_secret(
        "the data directory and the configuration",
        &bytes_under(dir.path()),
    );

    // The configuration checks as it is written.
    let check = tokio::process::Command::new(workspace_bin("warrant"))
        .args(["check", "--config"])
        .arg(&out)
        .env_remove("WARRANT_CONFIG")
        .output()
        .await
        .expect("run warrant check");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Served with that configuration (loopback, no tokens), every server works.
    let mut config = std::fs::read_to_string(&out).expect("the configuration");
    config.push_str("\n[mcp]\nauthorization = \"none\"\n");
    std::fs::write(&out, &config).expect("write");
    let mut serve = tokio::process::Command::new(workspace_bin("warrant"));
    serve
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&out)
        .arg("--data-dir")
        .arg(&data)
        .env("RUST_LOG", "debug")
        .env_remove("WARRANT_CONFIG")
        .env_remove("WARRANT_DATABASE_URL");
    if let Some(db) = &database_url {
        serve.env("WARRANT_DATABASE_URL", db);
    }
    let mut served = AgentProcess::spawn(serve);
    let mcp = served
        .line_starting("Warrant listening on ", Duration::from_secs(30))
        .await;
    for (tool, who) in [
        ("by-header__whoami", "header ("),
        ("by-query__whoami", "query ("),
        ("by-env__whoami", "stdio ("),
    ] {
        let mut answer = String::new();
        for _ in 0..100 {
            answer = call(&mcp, tool).await;
            if answer.starts_with(who) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            answer.starts_with(who),
            "{tool}: {answer}\n{}",
            served.report()
        );
    }
    // A key an upstream echoes is redacted, wherever in the configuration it came from.
    for tool in [
        "by-header__echo_key",
        "by-query__echo_key",
        "by-env__echo_key",
    ] {
        let answer = call(&mcp, tool).await;
        assert!(answer.contains("[redacted by Warrant]"), "{tool}: {answer}");
        assert_no_secret(tool, answer.as_bytes());
    }
    // The server that is not there: what Warrant says of it quotes no secret.
    let ready = reqwest::get(mcp.replace("/mcp", "/readyz"))
        .await
        .expect("readyz")
        .text()
        .await
        .expect("body");
    assert!(ready.contains("\"down\""), "{ready}");
    assert_no_secret("/readyz", ready.as_bytes());
    let report = served.report();
    drop(served);
    assert_no_secret("the log of `warrant serve`", report.as_bytes());
    assert_no_secret("the data directory after serving", &bytes_under(dir.path()));
}
