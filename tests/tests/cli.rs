//! The `warrant` binary as a user runs it: `serve` with the embedded defaults, `check` on
//! broken configurations, `import` of an `mcpServers` file.

use std::time::Duration;

use serde_json::json;
use warrant_e2e::served::Served;
use warrant_e2e::{Backend, Raw, workspace_bin};

fn warrant() -> std::process::Command {
    std::process::Command::new(workspace_bin("warrant"))
}

#[test]
fn check_prints_every_problem_with_its_line_and_exits_2() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("warrant.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"localhost\"\n\n[upstreams.github]\nurl = \"htp//nope\"\nheaders = { Authorization = \"Bearer ${WARRANT_CLI_TEST_UNSET}\" }\n\n[upstreams.files]\ncommand = \"npx\"\nstart = \"sometimes\"\ntimeout = \"5s\"\n",
    )
    .expect("write");
    let output = warrant()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "error: server.listen: \"localhost\" is not an address like 127.0.0.1:8080",
        "--> ",
        "2 | listen = \"localhost\"",
        "error: upstreams.files: unknown field `timeout`",
        "error: upstreams.github.headers.Authorization: environment variable WARRANT_CLI_TEST_UNSET is not set",
        "error: upstreams.github.url: \"htp//nope\"",
        "4 problems in",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

#[test]
fn check_accepts_a_valid_file_and_a_syntax_error_points_at_its_line() {
    let dir = tempfile::tempdir().expect("dir");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[upstreams.demo]\ncommand = \"warrant\"\nargs = [\"demo-server\"]\n",
    )
    .expect("write");
    let output = warrant()
        .args(["check", "--config"])
        .arg(&good)
        .output()
        .expect("run");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid (1 upstream: demo [stdio])"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[upstreams.demo]\ncommand = \"x\"\nargs = [\"a\",\n").expect("write");
    let output = warrant()
        .args(["check", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains(":3") || text.contains(":4"), "{text}");

    let missing = dir.path().join("nope.toml");
    let output = warrant()
        .args(["check", "--config"])
        .arg(&missing)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot read the file"));
}

#[test]
fn import_turns_mcp_servers_json_into_a_valid_config() {
    let dir = tempfile::tempdir().expect("dir");
    let json_path = dir.path().join(".mcp.json");
    std::fs::write(
        &json_path,
        json!({"mcpServers": {
            "demo": {"command": "warrant", "args": ["demo-server"]},
            "remote api": {"type": "http", "url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer ${HOME}"}}
        }})
        .to_string(),
    )
    .expect("write");
    let out = dir.path().join("warrant.toml");
    let output = warrant()
        .arg("import")
        .arg(&json_path)
        .arg("--output")
        .arg(&out)
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&out).expect("written");
    assert!(text.contains("[upstreams.remote-api]"), "{text}");
    assert!(
        text.contains("Bearer ${HOME}"),
        "references stay references: {text}"
    );
    let check = warrant()
        .args(["check", "--config"])
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // An existing file is never replaced.
    let again = warrant()
        .arg("import")
        .arg(&json_path)
        .arg("--output")
        .arg(&out)
        .output()
        .expect("run");
    assert!(!again.status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_with_no_config_runs_the_demo_on_loopback() {
    let mut served = Served::start().await;
    let url = served.url.clone();
    // The URL clients must use: the OAuth resource, on the default public URL.
    assert!(
        url.starts_with("http://localhost:") && url.ends_with("/mcp"),
        "{url}"
    );
    if Backend::current() == Backend::Sqlite {
        assert!(
            served.data_dir().join("warrant.db").exists(),
            "the SQLite file is created on first start"
        );
    }

    // Agents need a token: a client is told where to get one.
    let raw = Raw::new(&url);
    let reply = raw
        .post(
            r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"0"}}}"#,
            &[],
        )
        .await;
    assert_eq!(reply.status, 401, "{reply:?}");
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"http://localhost:{}/.well-known/oauth-protected-resource/mcp\"",
            served.port
        )),
        "{challenge}"
    );

    let pid = served.child.id().expect("pid");
    let status = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), served.child.wait())
        .await
        .expect("exits on SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit:?}");
    let stderr = served
        .stderr_with("claude mcp add --transport http warrant")
        .await;
    assert!(
        stderr.contains("Agents connect with OAuth"),
        "it says how agents get in: {stderr}"
    );
}

#[test]
fn serve_beyond_loopback_needs_an_https_public_url() {
    let dir = tempfile::tempdir().expect("dir");
    let output = warrant()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("WARRANT_CONFIG")
        .output()
        .expect("run");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("server.public_url: required when listening beyond loopback (0.0.0.0:0)"),
        "{text}"
    );
}

#[test]
fn serve_without_tokens_stays_on_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"0.0.0.0:0\"\npublic_url = \"https://warrant.example.com\"\n\n[mcp]\nauthorization = \"none\"\n",
    )
    .expect("write");
    let output = warrant()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(
        text.contains("mcp.authorization")
            && text.contains("allowed only on a loopback listen address, not on 0.0.0.0:0"),
        "{text}"
    );
}
