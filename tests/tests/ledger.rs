//! The audit ledger end to end: every call and refusal recorded with who, what and how
//! it ended; `warrant audit verify` on what a gateway wrote, before and after someone
//! changed a record; `kill -9` in the middle of a burst loses no record of a call the
//! upstream saw; a ledger that cannot be written refuses calls, and serves again once
//! it can.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use warrant_e2e::agent::{member_with_agent, review_low, wait_until_listed};
use warrant_e2e::{Backend, Raw, TestGateway, fixture_http, fresh_postgres, workspace_bin};
use warrant_idp::db::Db;
use warrant_idp::on_pool;

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Every record: kind, user, agent, upstream, tool, decision, risk, detail (parsed), seq.
type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    i64,
);

async fn records(db: &Db) -> Vec<(Row, Value)> {
    let rows: Vec<Row> = on_pool!(db, pool => sqlx::query_as(
        "SELECT kind, user_id, agent, upstream, tool, decision, risk, detail, seq \
         FROM consent_ledger_records ORDER BY writer, seq",
    )
    .fetch_all(pool)
    .await)
    .expect("read the ledger");
    rows.into_iter()
        .map(|row| {
            let detail = serde_json::from_str(&row.7).expect("detail is JSON");
            (row, detail)
        })
        .collect()
}

/// `warrant audit ARGS` on a data directory (and database), as an operator runs it.
async fn audit(
    args: &[&str],
    data_dir: &std::path::Path,
    database_url: Option<&str>,
) -> std::process::Output {
    let mut command = tokio::process::Command::new(workspace_bin("warrant"));
    command
        .arg("audit")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("WARRANT_CONFIG")
        .env_remove("WARRANT_DATABASE_URL")
        .env_remove("WARRANT_DATA_DIR")
        .env("RUST_LOG", "warn");
    if let Some(url) = database_url {
        command.arg("--database-url").arg(url);
    }
    warrant_e2e::run_cli(command, "").await
}

/// `warrant audit verify`: exit status and output.
async fn verify(data_dir: &std::path::Path, database_url: Option<&str>) -> (i32, String) {
    let output = audit(&["verify"], data_dir, database_url).await;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_and_refusals_are_recorded_and_a_changed_record_is_named() {
    let (_upstream, url) = fixture_http("flaky_upstream").await;
    let toml = format!("[upstreams.flaky]\nurl = {url:?}\n");
    let gw = TestGateway::start_protected(&toml, Backend::current()).await;
    review_low(&gw, "flaky", &["echo", "seen"]).await;
    let (alice, token) = member_with_agent(&gw, "alice@example.com", &["flaky.echo"]).await;
    wait_until_listed(&gw, &token, "flaky__echo").await;

    let mut raw = Raw::new(&gw.url());
    raw.bearer = Some(token.clone());
    raw.initialize("2025-11-25").await;
    let reply = raw
        .request(
            1,
            "tools/call",
            json!({"name": "flaky__echo", "arguments": {"message": "hello"}}),
        )
        .await;
    assert_eq!(reply.result_text(1), "hello");
    // Not granted: refused at the edge (step-up).
    let refused = raw
        .request(
            2,
            "tools/call",
            json!({"name": "flaky__seen", "arguments": {}}),
        )
        .await;
    assert_eq!(refused.status, 403, "{refused:?}");

    // The outcome is written once the answer went by: wait for it.
    let db = gw.running.db.clone();
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all = records(&db).await;
        if all.iter().any(|(r, _)| r.0 == "call.outcome")
            && all.iter().any(|(r, _)| r.5.as_deref() == Some("deny"))
        {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "outcome and refusal recorded: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        all[0].0.0, "ledger.opened",
        "a writer's chain starts with its opening"
    );
    let (call, detail) = all
        .iter()
        .find(|(r, _)| r.0 == "call" && r.5.as_deref() == Some("allow"))
        .expect("the allowed call");
    assert_eq!(call.1.as_deref(), Some(alice.as_str()));
    assert!(call.2.is_some(), "the agent");
    assert_eq!(
        (call.3.as_deref(), call.4.as_deref(), call.6.as_deref()),
        (Some("flaky"), Some("echo"), Some("low"))
    );
    assert_eq!(
        detail["args_sha256"],
        sha256_hex(r#"{"message":"hello"}"#),
        "{detail}"
    );
    assert!(detail["grant"].is_string(), "{detail}");
    let (outcome, facts) = all
        .iter()
        .find(|(r, _)| r.0 == "call.outcome")
        .expect("outcome");
    assert_eq!(outcome.4.as_deref(), Some("echo"));
    assert_eq!(facts["call"], call.8, "the outcome names its call's record");
    assert_eq!(facts["outcome"], "ok");
    assert!(
        facts["latency_us"].as_u64().is_some_and(|us| us > 0),
        "{facts}"
    );
    assert!(
        facts["result_bytes"].as_u64().is_some_and(|b| b > 0),
        "{facts}"
    );
    let (deny, why) = all
        .iter()
        .find(|(r, _)| r.5.as_deref() == Some("deny"))
        .expect("refusal");
    assert_eq!(
        (deny.3.as_deref(), deny.4.as_deref()),
        (Some("flaky"), Some("seen"))
    );
    assert!(
        why["reason"].as_str().is_some_and(|r| r.contains("seen")),
        "{why}"
    );

    // Stopped cleanly, the chain is signed to its end; verify says intact.
    let TestGateway {
        running,
        data_dir,
        database_url,
        ..
    } = gw;
    running.stop().await.expect("stops");
    let (status, text) = verify(data_dir.path(), database_url.as_deref()).await;
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("intact"), "{text}");
    // Exported as JSON Lines, filtered.
    let exported = |args: &'static [&'static str]| {
        let (dir, url) = (data_dir.path().to_owned(), database_url.clone());
        async move {
            let args: Vec<&str> = ["export"].into_iter().chain(args.iter().copied()).collect();
            let output = audit(&args, &dir, url.as_deref()).await;
            assert!(output.status.success(), "{output:?}");
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
                .collect::<Vec<_>>()
        }
    };
    let refused = exported(&["--decision", "deny"]).await;
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(refused[0]["tool"], "seen");
    assert!(
        refused[0]["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{refused:?}"
    );
    let alices = exported(&["--person", "alice@example.com", "--since", "1h"]).await;
    assert_eq!(
        alices.len(),
        3,
        "the call, its outcome, the refusal: {alices:?}"
    );
    assert!(alices.iter().all(|r| r["user_id"] == alice.as_str()));
    assert!(
        exported(&["--until", "1h"]).await.is_empty(),
        "nothing is older than an hour"
    );
    // Someone changes who made the allowed call: verify names that record.
    let db = Db::open(database_url.as_deref(), data_dir.path())
        .await
        .expect("db");
    let sql = format!(
        "UPDATE consent_ledger_records SET user_id = 'someone-else' WHERE seq = {}",
        call.8
    );
    on_pool!(&db, pool => sqlx::query(&sql).execute(pool).await.map(|_| ())).expect("tamper");
    db.close().await;
    let (status, text) = verify(data_dir.path(), database_url.as_deref()).await;
    assert_eq!(status, 1, "{text}");
    assert!(
        text.contains(&format!(
            "record {}: record {} does not match its hash",
            call.8, call.8
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_burst_it_loses_no_record_of_a_call_the_upstream_saw() {
    let (_upstream, upstream_url) = fixture_http("flaky_upstream").await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("warrant.toml");
    std::fs::write(
        &config,
        format!("[mcp]\nauthorization = \"none\"\n\n[upstreams.flaky]\nurl = {upstream_url:?}\n"),
    )
    .expect("config");
    let data_dir = dir.path().join("data");
    let database_url = match Backend::current() {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres().await),
    };
    let (mut warrant, url) =
        warrant_e2e::served::serve_config(&config, &data_dir, database_url.as_deref()).await;

    // 16 clients call as fast as they can until Warrant is gone.
    let mut clients = Vec::new();
    for c in 0..16 {
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let mut raw = Raw::new(&url);
            raw.initialize("2025-11-25").await;
            let mut answered = 0u32;
            for i in 0..100_000 {
                let args =
                    json!({"name": "flaky__echo", "arguments": {"message": format!("m-{c}-{i}")}});
                let request =
                    json!({"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": args});
                let sent = raw
                    .client()
                    .post(&url)
                    .header("accept", "application/json, text/event-stream")
                    .header("content-type", "application/json")
                    .header("mcp-protocol-version", "2025-11-25")
                    .header("mcp-session-id", raw.session.clone().unwrap_or_default())
                    .timeout(Duration::from_secs(5))
                    .body(request.to_string())
                    .send()
                    .await;
                let Ok(response) = sent else { break };
                if !response.status().is_success() {
                    break;
                }
                match response.bytes().await {
                    Ok(body) if String::from_utf8_lossy(&body).contains("\"result\"") => {
                        answered += 1;
                    }
                    _ => break,
                }
            }
            answered
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    warrant.start_kill().expect("kill -9");
    warrant.wait().await.expect("gone");
    let mut answered = 0;
    for c in clients {
        answered += c.await.expect("client");
    }
    assert!(
        answered >= 50,
        "the burst ran before the kill ({answered} answers)"
    );

    // What the upstream saw, asked of it directly.
    let mut upstream = Raw::new(&upstream_url);
    upstream.initialize("2025-11-25").await;
    let seen = upstream
        .request(1, "tools/call", json!({"name": "seen", "arguments": {}}))
        .await
        .result_text(1);
    let seen: Vec<&str> = seen.lines().filter(|m| m.starts_with("m-")).collect();
    assert!(
        seen.len() as u32 >= answered,
        "{} seen, {answered} answered",
        seen.len()
    );

    let db = Db::open(database_url.as_deref(), &data_dir)
        .await
        .expect("db");
    let recorded: HashSet<String> = records(&db)
        .await
        .into_iter()
        .filter(|(r, _)| r.0 == "call" && r.5.as_deref() == Some("allow"))
        .filter_map(|(_, d)| d["args_sha256"].as_str().map(str::to_owned))
        .collect();
    db.close().await;
    eprintln!(
        "{answered} calls answered before the kill; the upstream saw {}; {} allowed calls recorded",
        seen.len(),
        recorded.len()
    );
    let missing: Vec<&&str> = seen
        .iter()
        .filter(|m| !recorded.contains(&sha256_hex(&json!({"message": m}).to_string())))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} calls the upstream saw have no record: {:?}",
        missing.len(),
        seen.len(),
        &missing[..missing.len().min(5)]
    );

    // The chain a killed writer left is whole (its tail just not signed).
    let (status, text) = verify(&data_dir, database_url.as_deref()).await;
    assert_eq!(status, 0, "{text}");
    assert!(text.contains("not signed yet"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_that_cannot_be_written_refuses_calls_until_it_can() {
    let (_upstream, url) = fixture_http("flaky_upstream").await;
    let toml = format!("[upstreams.flaky]\nurl = {url:?}\n");
    let gw = TestGateway::start(&toml, Backend::current()).await;
    let mut raw = Raw::new(&gw.url());
    raw.initialize("2025-11-25").await;
    let echo = |id: i64, message: &str| {
        (
            id,
            json!({"name": "flaky__echo", "arguments": {"message": message}}),
        )
    };
    let (id, params) = echo(1, "before");
    assert_eq!(
        raw.request(id, "tools/call", params).await.result_text(1),
        "before"
    );

    let db = gw.running.db.clone();
    let exec = |sql: &'static str| {
        let db = db.clone();
        async move {
            on_pool!(&db, pool => sqlx::query(sql).execute(pool).await.map(|_| ())).expect(sql)
        }
    };
    exec("ALTER TABLE consent_ledger_records RENAME TO consent_ledger_records_away").await;
    let (id, params) = echo(2, "while broken");
    let reply = raw.request(id, "tools/call", params).await;
    let error = &reply.response(2)["error"];
    assert_eq!(error["code"], -32016, "{reply:?}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("audit ledger cannot be written")),
        "{error}"
    );
    // Operators see why.
    let ready: Value = reqwest::get(format!("{}/readyz", gw.base()))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["ready"], false, "{ready}");
    assert_eq!(ready["ledger"]["state"], "unavailable", "{ready}");
    assert!(ready["ledger"]["reason"].is_string(), "{ready}");
    // Nothing went upstream.
    let mut upstream = Raw::new(&url);
    upstream.initialize("2025-11-25").await;
    let seen = upstream
        .request(1, "tools/call", json!({"name": "seen", "arguments": {}}))
        .await
        .result_text(1);
    assert!(!seen.contains("while broken"), "{seen}");

    exec("ALTER TABLE consent_ledger_records_away RENAME TO consent_ledger_records").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut id = 3;
    loop {
        let (_, params) = echo(id, "after");
        let reply = raw.request(id, "tools/call", params).await;
        if reply.response(id)["result"].is_object() {
            assert_eq!(reply.result_text(id), "after");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serves again once the ledger can be written: {reply:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        id += 1;
    }
    let ready: Value = reqwest::get(format!("{}/readyz", gw.base()))
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    assert_eq!(ready["ledger"]["state"], "ok", "{ready}");
    // The refusal itself is in the ledger.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = records(&db).await;
        if all.iter().any(|(r, d)| {
            r.5.as_deref() == Some("deny")
                && d["reason"]
                    .as_str()
                    .is_some_and(|s| s.contains("cannot be written"))
        }) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the refusal is recorded: {all:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.stop().await;
}

/// The records of `kinds` once all are there (within 10 s): kind → detail, user, agent.
async fn events_of(db: &Db, kinds: &[&str]) -> Vec<(Row, Value)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = records(db).await;
        if kinds.iter().all(|k| all.iter().any(|(r, _)| r.0 == *k)) {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "every one of {kinds:?} recorded: {:?}",
            all.iter().map(|(r, _)| &r.0).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event<'a>(all: &'a [(Row, Value)], kind: &str) -> &'a (Row, Value) {
    all.iter()
        .find(|(r, _)| r.0 == kind)
        .unwrap_or_else(|| panic!("a {kind} record"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pages_and_commands_record_who_changed_what() {
    let (_upstream, url) = fixture_http("flaky_upstream").await;
    let toml = format!("[upstreams.flaky]\nurl = {url:?}\n");
    let gw = TestGateway::start_protected(&toml, Backend::current()).await;
    review_low(&gw, "flaky", &["echo", "seen"]).await;
    // The first admin signs in (the setup ceremony) and approves an agent.
    let agent = warrant_e2e::agent::admin_approves_agent(&gw, "Ledger agent").await;
    let admin = &agent.browser;
    let bob = warrant_e2e::agent::member(&gw, "bob@example.com").await;
    let csrf = admin
        .get(&format!("/admin/users/{bob}"))
        .await
        .csrf()
        .expect("csrf");
    for (path, fields) in [
        ("ceiling", vec![("ceiling", "medium")]),
        ("role", vec![("role", "admin")]),
        ("status", vec![("status", "disabled")]),
    ] {
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend(fields);
        let page = admin
            .post_form(&format!("/admin/users/{bob}/{path}"), &form)
            .await;
        assert_eq!(page.status, 303, "{path}: {}", page.body);
    }
    let page = admin
        .post_form(
            "/admin/servers/flaky/tools/seen/review",
            &[("csrf", &csrf), ("risk", "high")],
        )
        .await;
    assert_eq!(page.status, 303, "{}", page.body);
    // Someone with a used-up link is refused, and that is recorded too.
    let stranger = gw.browser();
    let form = stranger.get("/signin").await;
    let page = stranger
        .post_form(
            "/auth/email",
            &[
                ("csrf", &form.csrf().expect("csrf")),
                ("token", "not-a-link"),
            ],
        )
        .await;
    assert_eq!(page.status, 400, "{}", page.body);
    // An operator rotates the signing key.
    let rotated = gw.warrant(&["keys", "rotate"], "").await;
    assert!(rotated.status.success(), "{rotated:?}");

    let db = gw.running.db.clone();
    let all = events_of(
        &db,
        &[
            "sign_in",
            "consent.given",
            "ceiling.changed",
            "person.role_changed",
            "person.disabled",
            "tool.risk_changed",
            "sign_in.refused",
            "keys.rotated",
        ],
    )
    .await;
    let (row, detail) = event(&all, "sign_in");
    assert_eq!(row.1.as_deref(), Some(agent.admin.as_str()));
    assert_eq!(detail["more"]["by"], "admin@example.com", "{detail}");
    assert_eq!(row.5.as_deref(), Some("allow"));
    let (row, detail) = event(&all, "consent.given");
    assert_eq!(row.1.as_deref(), Some(agent.admin.as_str()));
    assert_eq!(row.2.as_deref(), Some(agent.tokens.client_id.as_str()));
    assert_eq!(detail["more"]["agent_name"], "Ledger agent", "{detail}");
    assert_eq!(detail["more"]["allow"], json!(["*"]), "{detail}");
    for kind in ["ceiling.changed", "person.role_changed", "person.disabled"] {
        let (row, detail) = event(&all, kind);
        assert_eq!(row.1.as_deref(), Some(agent.admin.as_str()), "{kind}");
        assert_eq!(
            detail["more"]["subject"],
            json!({"id": bob, "email": "bob@example.com"}),
            "{kind}: {detail}"
        );
    }
    assert_eq!(
        event(&all, "ceiling.changed").1["more"]["ceiling"],
        "medium"
    );
    assert_eq!(
        event(&all, "person.role_changed").1["more"]["role"],
        "admin"
    );
    let (row, detail) = event(&all, "tool.risk_changed");
    assert_eq!(
        (row.3.as_deref(), row.4.as_deref(), row.6.as_deref()),
        (Some("flaky"), Some("seen"), Some("high"))
    );
    assert_eq!(detail["more"]["by"], "admin@example.com");
    let (row, detail) = event(&all, "sign_in.refused");
    assert_eq!((row.1.as_deref(), row.5.as_deref()), (None, Some("deny")));
    assert_eq!(detail["more"]["method"], "email", "{detail}");
    assert!(detail["reason"].is_string(), "{detail}");
    let (_, detail) = event(&all, "keys.rotated");
    assert!(detail["more"]["kid"].is_number(), "{detail}");

    // The command wrote with a writer of its own, closed and signed: everything verifies.
    let (code, text) = verify(gw.data_dir.path(), gw.database_url.as_deref()).await;
    assert_eq!(code, 0, "{text}");
    let writers: Vec<(String, Option<i64>)> = on_pool!(&db, pool => sqlx::query_as(
        "SELECT label, closed_at FROM consent_ledger_writers ORDER BY started_at",
    )
    .fetch_all(pool)
    .await)
    .expect("writers");
    assert!(
        writers
            .iter()
            .any(|(label, closed)| label.starts_with("warrant keys rotate") && closed.is_some()),
        "{writers:?}"
    );

    // A consent the ledger cannot take is not given: the page says so, the grant is
    // taken back at once.
    on_pool!(&db, pool => sqlx::query(
        "ALTER TABLE consent_ledger_records RENAME TO consent_ledger_records_away",
    )
    .execute(pool)
    .await
    .map(drop))
    .expect("break the ledger");
    let client = warrant_e2e::agent::register_public(&gw, "Unrecorded agent").await;
    let page = admin
        .get(&warrant_e2e::agent::authorize_path(
            &client,
            warrant_e2e::agent::REDIRECT,
            &[],
        ))
        .await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut fields = warrant_e2e::agent::consent_fields(&page.body);
    fields.push(("decision".into(), "approve".into()));
    fields.push(("servers".into(), "all".into()));
    let form: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let page = admin.post_form("/authorize", &form).await;
    assert_eq!(page.status, 503, "{}", page.body);
    assert!(page.contains("audit record"), "{}", page.body);
    let live: Vec<(String,)> = on_pool!(&db, pool => sqlx::query_as(
        "SELECT id FROM consent_grants WHERE client_id = $1 AND revoked_at IS NULL",
    )
    .bind(&client)
    .fetch_all(pool)
    .await)
    .expect("grants");
    assert!(
        live.is_empty(),
        "no live grant for an unrecorded consent: {live:?}"
    );
    gw.stop().await;
}
