//! Policy as code as an operator uses it: `warrant policy export`, an edit, `warrant
//! policy apply --dry-run`, a refused apply without confirmation, an invalid file, then
//! `warrant policy apply --yes` — all run as processes against the database of a Warrant
//! running in-process, which picks the change up on its own (no restart, no admin page):
//! the next call above the new ceiling is refused, the reviewed class applies, sessions
//! hear `notifications/tools/list_changed`. The demo upstream's annotations are trusted
//! first, so its classes are known: `list_notes` and `read_note` low, `write_note`
//! medium, `send_payment` and `delete_all_notes` high.

use std::process::Output;
use std::time::{Duration, Instant};

use rmcp::ServiceExt;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use warrant_consent::ceilings::{Ceilings, SubjectKind};
use warrant_e2e::agent::{AdminAgent, admin_approves_agent};
use warrant_e2e::raw::Reply;
use warrant_e2e::{Backend, TestClient, TestGateway, demo_upstream};

/// Standard output of a run that exited with `code`.
fn exits(output: &Output, code: i32) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    stdout
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn call(gw: &TestGateway, token: &str, tool: &str, arguments: Value) -> Reply {
    warrant_e2e::raw::modern_call(&gw.url(), Some(token), tool, arguments).await
}

fn allowed(reply: &Reply) -> bool {
    reply.status == 200 && reply.response(7)["result"]["content"].is_array()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_file_exported_edited_and_applied_reaches_the_running_gateway() {
    let gw = TestGateway::start_protected(&demo_upstream("demo"), Backend::current()).await;
    gw.trust_annotations("demo").await;
    let AdminAgent {
        browser,
        admin,
        tokens,
    } = admin_approves_agent(&gw, "Claude Code").await;
    let token = tokens.access.as_str();
    assert!(allowed(
        &call(&gw, token, "demo__list_notes", json!({})).await
    ));
    let handler = TestClient::default();
    let session = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(gw.url()).auth_header(token),
    );
    let session = handler.clone().serve(session).await.expect("a session");

    // Export: the trusted upstream, its tools (none reviewed yet), no ceilings.
    let exported = exits(&gw.warrant(&["policy", "export"], "").await, 0);
    assert!(
        exported.contains("[upstreams.demo]\ntrust_annotations = true\n"),
        "{exported}"
    );
    let unreviewed = "# list_notes = \"low\"  # not reviewed; its annotations suggest low\n";
    assert!(exported.contains(unreviewed), "{exported}");
    assert!(!exported.contains("[users."), "{exported}");

    // An invalid file: every problem named, exit 1, nothing changed.
    let dir = tempfile::tempdir().expect("temp dir");
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        format!(
            "{exported}\n[users.\"nobody@example.com\"]\nceiling = \"low\"\n\
             [upstreams.ghost.tools]\nhaunt = \"low\"\n"
        ),
    )
    .expect("write");
    let bad = bad.display().to_string();
    let output = gw.warrant(&["policy", "apply", &bad, "--yes"], "").await;
    exits(&output, 1);
    let text = stderr(&output);
    assert!(text.contains("nothing was applied"), "{text}");
    assert!(text.contains("nobody@example.com"), "{text}");
    assert!(text.contains("ghost.haunt"), "{text}");

    // The edit: list_notes reviewed high, the admin's own ceiling medium.
    let edited = exported.replace(unreviewed, "list_notes = \"high\"\n")
        + "\n[users.\"admin@example.com\"]\nceiling = \"medium\"\n";
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, &edited).expect("write");
    let file = file.display().to_string();

    let dry = exits(
        &gw.warrant(&["policy", "apply", &file, "--dry-run"], "")
            .await,
        0,
    );
    assert!(dry.contains("2 changes to apply"), "{dry}");
    assert!(
        dry.contains("+ upstreams.demo.tools.list_notes = \"high\""),
        "{dry}"
    );
    assert!(
        dry.contains("+ users.\"admin@example.com\".ceiling = \"medium\""),
        "{dry}"
    );
    assert!(dry.contains("dry run: nothing applied"), "{dry}");

    // Trust the configuration sets at every start: the file disagreeing is warned about.
    let distrust = dir.path().join("distrust.toml");
    std::fs::write(
        &distrust,
        edited.replace(
            "[upstreams.demo]\ntrust_annotations = true",
            "[upstreams.demo]\ntrust_annotations = false",
        ),
    )
    .expect("write");
    let distrust = distrust.display().to_string();
    let output = gw
        .warrant(&["policy", "apply", &distrust, "--dry-run"], "")
        .await;
    let shown = exits(&output, 0);
    assert!(
        shown.contains("~ upstreams.demo.trust_annotations: true → false"),
        "{shown}"
    );
    assert!(
        stderr(&output)
            .contains("warning: upstreams.demo.trust_annotations is true in the configuration"),
        "{}",
        stderr(&output)
    );

    // Without --yes and with no terminal to ask on: refused, exit 2, even when the
    // piped answer is yes.
    let output = gw.warrant(&["policy", "apply", &file], "y\n").await;
    let shown = exits(&output, 2);
    assert!(
        shown.contains("2 changes to apply"),
        "the diff first: {shown}"
    );
    assert!(
        stderr(&output).contains("standard input is not a terminal"),
        "{}",
        stderr(&output)
    );
    let ceilings = Ceilings::new(gw.running.db.clone());
    let own = ceilings.get(SubjectKind::User, &admin).await.expect("get");
    assert_eq!(own, None, "nothing applied yet");
    assert!(allowed(
        &call(&gw, token, "demo__list_notes", json!({})).await
    ));
    let heard_before = handler.seen().tool_list_changed;

    let applied = exits(
        &gw.warrant(&["policy", "apply", &file, "--yes"], "").await,
        0,
    );
    assert!(applied.contains("applied 2 changes"), "{applied}");

    // The running gateway picks both up from the database.
    let started = Instant::now();
    let mut reply = call(&gw, token, "demo__list_notes", json!({})).await;
    while allowed(&reply) && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        reply = call(&gw, token, "demo__list_notes", json!({})).await;
    }
    let error = &reply.response(7)["error"];
    let message = error["message"].as_str().unwrap_or_default();
    let expected =
        "tool demo.list_notes is high risk, above the ceiling of admin@example.com (medium)";
    assert!(message.contains(expected), "{expected:?} in {reply:?}");
    assert!(
        !message.contains(&admin),
        "named by email, not by id: {message}"
    );
    assert!(
        allowed(
            &call(
                &gw,
                token,
                "demo__write_note",
                json!({"title": "t", "body": "b"})
            )
            .await
        ),
        "medium is within the new ceiling"
    );
    assert_eq!(
        warrant_e2e::raw::modern_tool_names(&gw.url(), Some(token)).await,
        ["demo__read_note", "demo__write_note"]
    );
    while handler.seen().tool_list_changed == heard_before
        && started.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        handler.seen().tool_list_changed > heard_before,
        "the session heard notifications/tools/list_changed"
    );

    // Who did it is recorded, and the admin pages show it.
    let own = ceilings
        .get(SubjectKind::User, &admin)
        .await
        .expect("get")
        .expect("set by the file");
    assert_eq!(own.set_by, format!("policy file {file}"));
    let page = browser.get("/admin/servers/demo").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.contains("policy file ") && page.contains("policy.toml, "),
        "the reviewer of list_notes: {}",
        page.body
    );

    // Applied again: nothing to do; exported again (to a file): the file's policy.
    let again = exits(&gw.warrant(&["policy", "apply", &file], "").await, 0);
    assert!(again.contains("no changes"), "{again}");
    let output = dir.path().join("exported.toml");
    let output = output.display().to_string();
    let printed = exits(
        &gw.warrant(&["policy", "export", "--output", &output], "")
            .await,
        0,
    );
    assert_eq!(printed, "", "the policy goes to the file only");
    let exported = std::fs::read_to_string(&output).expect("the exported file");
    assert!(exported.contains("list_notes = \"high\"\n"), "{exported}");
    assert!(
        exported.contains("[users.\"admin@example.com\"]\nceiling = \"medium\"\n"),
        "{exported}"
    );

    session.cancel().await.expect("close");
    gw.stop().await;
}
