//! The audit ledger streamed out: a file and an HTTP endpoint (which refuses the first
//! deliveries) get every record of every writer exactly once — this process's, a
//! command's, another gateway's on the same database — in each writer's order, with the
//! hashes of the chain; a gateway started later goes on where the last one stopped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use warrant_e2e::agent::{member_calls_echo_and_is_refused_seen, review_low};
use warrant_e2e::{Backend, TestGateway, fixture_http};
use warrant_idp::db::Db;
use warrant_idp::on_pool;
use warrant_proxy::app;
use warrant_proxy::config::{self, Overrides};

/// An HTTP receiver on loopback that answers 503 to its first `refuse` deliveries and
/// keeps the others' bodies.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    refused: Arc<Mutex<usize>>,
}

async fn receiver(refuse: usize) -> Receiver {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let refused = Arc::new(Mutex::new(0));
    let (kept, count) = (bodies.clone(), refused.clone());
    let app = axum::Router::new().route(
        "/ingest",
        axum::routing::post(move |headers: http::HeaderMap, body: String| {
            let (kept, count) = (kept.clone(), count.clone());
            async move {
                assert_eq!(
                    headers.get("authorization").and_then(|v| v.to_str().ok()),
                    Some("Bearer siem-token"),
                    "the configured header"
                );
                let mut n = count.lock().expect("lock");
                if *n < refuse {
                    *n += 1;
                    return http::StatusCode::SERVICE_UNAVAILABLE;
                }
                kept.lock().expect("lock").push(body);
                http::StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/ingest", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Receiver {
        url,
        bodies,
        refused,
    }
}

/// Every record in the database: (writer, seq) → hash.
async fn stored(db: &Db) -> HashMap<(String, i64), String> {
    let rows: Vec<(String, i64, String)> = on_pool!(db, pool => sqlx::query_as(
        "SELECT writer, seq, hash FROM consent_ledger_records",
    )
    .fetch_all(pool)
    .await)
    .expect("records");
    rows.into_iter().map(|(w, s, h)| ((w, s), h)).collect()
}

/// What a sink delivered: every line, parsed, in the order it came.
fn delivered(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// Checks that `lines` hold every record of `db` once, with its hash, and each writer's
/// records in order; `Err` with what is missing while they do not (yet).
fn complete(lines: &[Value], db: &HashMap<(String, i64), String>) -> Result<(), String> {
    let mut seen: HashMap<(String, i64), usize> = HashMap::new();
    let mut last: HashMap<String, i64> = HashMap::new();
    for line in lines {
        let writer = line["writer"].as_str().expect("writer").to_owned();
        let seq = line["seq"].as_i64().expect("seq");
        let before = last.insert(writer.clone(), seq).unwrap_or(0);
        assert_eq!(seq, before + 1, "{writer}: {seq} after {before}");
        let key = (writer, seq);
        assert_eq!(
            Some(line["hash"].as_str().expect("hash")),
            db.get(&key).map(String::as_str),
            "{key:?}: the hash of the chain"
        );
        *seen.entry(key).or_default() += 1;
    }
    if let Some((key, n)) = seen.iter().find(|(_, n)| **n > 1) {
        panic!("{key:?} delivered {n} times");
    }
    let missing: Vec<_> = db.keys().filter(|k| !seen.contains_key(*k)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("{} not delivered: {missing:?}", missing.len()))
    }
}

/// Waits (at most 20 s) until both sinks hold every record of `db`.
async fn until_delivered(db: &Db, file: &std::path::Path, http: &Receiver) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = stored(db).await;
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let file_done = complete(&delivered(&text), &all);
        let posted = http.bodies.lock().expect("lock").concat();
        let http_done = complete(&delivered(&posted), &all);
        if file_done.is_ok() && http_done.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "file: {file_done:?}; http: {http_done:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_record_of_every_writer_reaches_the_file_and_the_endpoint_once() {
    let (_upstream, url) = fixture_http("flaky_upstream").await;
    let http = receiver(3).await;
    let out = tempfile::tempdir().expect("dir");
    let file = out.path().join("audit.jsonl");
    let token = out.path().join("siem-token");
    std::fs::write(&token, "Bearer siem-token").expect("token");
    let toml = format!(
        "[[audit.sinks]]\nname = \"file\"\nfile = {file:?}\n\
         [[audit.sinks]]\nname = \"siem\"\nurl = {:?}\nheaders = {{ Authorization = {{ file = {token:?} }} }}\n\
         [upstreams.flaky]\nurl = {url:?}\n",
        http.url
    );
    let gw = TestGateway::start_protected(&toml, Backend::current()).await;
    review_low(&gw, "flaky", &["echo", "seen"]).await;
    member_calls_echo_and_is_refused_seen(&gw, "alice@example.com", 1).await;
    // A command writes with a writer of its own.
    let rotated = gw.warrant(&["keys", "rotate"], "").await;
    assert!(rotated.status.success(), "{rotated:?}");
    // A second gateway on the same database: one of the two ships, every record once.
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        data_dir: Some(gw.data_dir.path().to_path_buf()),
        database_url: gw.database_url.clone(),
    };
    let second = app::start(config::parse(&toml, "second", &overrides).expect("config"))
        .await
        .expect("a second gateway starts");
    let db = gw.running.db.clone();
    until_delivered(&db, &file, &http).await;
    assert_eq!(
        *http.refused.lock().expect("lock"),
        3,
        "the endpoint refused 3 first"
    );
    let writers: Vec<String> = delivered(&std::fs::read_to_string(&file).expect("file"))
        .iter()
        .map(|l| l["writer"].as_str().expect("writer").to_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(
        writers.len(),
        3,
        "both gateways and the command: {writers:?}"
    );
    second.stop().await.expect("the second stops");
    let TestGateway {
        running, data_dir, ..
    } = gw;
    running.stop().await.expect("the first stops");

    // A later start on the same database goes on from where the sinks stopped.
    let third = app::start(config::parse(&toml, "third", &overrides).expect("config"))
        .await
        .expect("a third gateway starts");
    let db = third.db.clone();
    until_delivered(&db, &file, &http).await;
    third.stop().await.expect("the third stops");
    drop(data_dir);
}
