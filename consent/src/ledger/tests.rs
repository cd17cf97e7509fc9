//! The ledger on the test run's backend: records chained and signed, every kind of
//! tampering named at its first record, two writers at once, and failing closed.

use std::sync::Arc;
use std::time::Duration;

use warrant_idp::db::Db;
use warrant_idp::on_pool;

use super::verify::{Report, Tamper, verify};
use super::*;

const SECRET: [u8; 32] = [42u8; 32];

async fn db(dir: &std::path::Path) -> Db {
    let db = crate::test_db::open(dir, "ledger").await;
    db.migrate().await.expect("migrate");
    db
}

fn key() -> CheckpointKey {
    CheckpointKey::derived_from_secret_key(&SECRET)
}

fn options() -> Options {
    Options {
        label: "test".into(),
        ..Options::default()
    }
}

fn call(i: usize) -> Entry {
    let mut e = Entry::new(Kind::Call);
    e.user = Some(Arc::from(format!("user-{}", i % 3)));
    e.agent = Some(Arc::from("agent"));
    e.upstream = Some(Arc::from("files"));
    e.tool = Some(Arc::from(format!("tool_{i}")));
    e.allowed = Some(!i.is_multiple_of(5));
    e.risk = Some(Risk::Low);
    e.args = Some(Arc::from(format!("{{\"n\":{i}}}")));
    e
}

async fn exec(db: &Db, sql: &str) {
    on_pool!(db, pool => sqlx::query(sql).execute(pool).await.map(|_| ())).expect(sql);
}

/// A writer that wrote `n` calls (from many tasks at once) and closed.
async fn written(db: &Db, n: usize) -> String {
    let ledger = Ledger::open(db, key(), options()).await.expect("open");
    let mut tasks = Vec::new();
    for i in 0..n {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move { ledger.append(call(i)).await }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("task").expect("append").seq);
    }
    seqs.sort_unstable();
    // The opening record is 1; the calls are 2..=n+1, each once.
    assert_eq!(seqs, (2..=n as i64 + 1).collect::<Vec<_>>());
    let writer = ledger.writer().to_owned();
    ledger.close(Duration::from_secs(10)).await;
    writer
}

async fn check(db: &Db) -> Report {
    verify(db, key().public()).await.expect("verify")
}

fn first(report: &Report) -> (i64, Tamper) {
    let firsts = report.first_problems();
    assert_eq!(firsts.len(), 1, "one chain is bad: {:#?}", report.problems);
    (firsts[0].seq, firsts[0].what)
}

#[tokio::test]
async fn records_are_chained_signed_and_verified() {
    let dir = tempfile::tempdir().expect("dir");
    let db = db(dir.path()).await;
    let writer = written(&db, 200).await;
    let report = check(&db).await;
    assert!(report.intact(), "{:#?}", report.problems);
    assert_eq!(report.records, 201);
    let chain = &report.chains[0];
    assert_eq!(chain.writer, writer);
    assert_eq!(
        (chain.last_seq, chain.signed_seq),
        (201, 201),
        "closing signs the head"
    );
    assert!(chain.closed);
    let durable: i64 = on_pool!(&db, pool => sqlx::query_scalar(
        "SELECT durable_seq FROM consent_ledger_writers").fetch_one(pool).await)
    .expect("durable");
    assert_eq!(durable, 201, "closing syncs everything");
    // What a call record holds.
    let (kind, user, decision, detail): (String, Option<String>, Option<String>, String) =
        on_pool!(&db, pool => sqlx::query_as(
            "SELECT kind, user_id, decision, detail FROM consent_ledger_records \
             WHERE tool = 'tool_7'").fetch_one(pool).await)
        .expect("record");
    assert_eq!(
        (kind.as_str(), user.as_deref(), decision.as_deref()),
        ("call", Some("user-1"), Some("allow"))
    );
    // {"n":7}: its size and SHA-256, not the arguments.
    assert_eq!(
        detail,
        r#"{"args_bytes":7,"args_sha256":"1dd42de9287c1b6a96c617376c0df6b8304485783ed0b4803f1aac0f119471a5"}"#
    );
    // Another key does not vouch for these checkpoints.
    let other = CheckpointKey::derived_from_secret_key(&[1u8; 32]);
    let report = verify(&db, other.public()).await.expect("verify");
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.what == Tamper::BadSignature)
    );
    assert!(!report.problems.is_empty());
}

/// Each kind of tampering, on a fresh ledger, and the record verify names first.
#[tokio::test]
async fn tampering_is_named_at_its_first_record() {
    let cases: [(&str, &[&str], i64, Tamper); 7] = [
        (
            "edited",
            &["UPDATE consent_ledger_records SET tool = 'other' WHERE seq = 40"],
            40,
            Tamper::Altered,
        ),
        (
            "deleted",
            &["DELETE FROM consent_ledger_records WHERE seq = 40"],
            40,
            Tamper::Removed,
        ),
        (
            "deleted several",
            &["DELETE FROM consent_ledger_records WHERE seq BETWEEN 40 AND 45"],
            40,
            Tamper::Removed,
        ),
        (
            "inserted",
            &[
                "UPDATE consent_ledger_records SET seq = seq + 1000 WHERE seq >= 40",
                "UPDATE consent_ledger_records SET seq = seq - 999 WHERE seq >= 1040",
                "INSERT INTO consent_ledger_records (writer, seq, at, kind, detail, prev_hash, hash) \
                 SELECT writer, 40, at, 'call', '{}', prev_hash, hash FROM consent_ledger_records WHERE seq = 39",
            ],
            40,
            Tamper::Altered,
        ),
        (
            "reordered",
            &[
                "UPDATE consent_ledger_records SET seq = -1 WHERE seq = 40",
                "UPDATE consent_ledger_records SET seq = 40 WHERE seq = 41",
                "UPDATE consent_ledger_records SET seq = 41 WHERE seq = -1",
            ],
            40,
            Tamper::Altered,
        ),
        (
            "truncated",
            &["DELETE FROM consent_ledger_records WHERE seq > 90"],
            91,
            Tamper::Truncated,
        ),
        (
            "checkpoint forged",
            &["UPDATE consent_ledger_checkpoints SET at = at + 1"],
            0,
            Tamper::BadSignature,
        ),
    ];
    for (name, sql, seq, what) in cases {
        let dir = tempfile::tempdir().expect("dir");
        let db = db(dir.path()).await;
        written(&db, 100).await;
        assert!(check(&db).await.intact(), "{name}: intact before");
        for statement in sql {
            exec(&db, statement).await;
        }
        let report = check(&db).await;
        let (found_seq, found) = first(&report);
        if what == Tamper::BadSignature {
            assert_eq!(found, what, "{name}: {:#?}", report.problems);
        } else {
            assert_eq!(
                (found_seq, found),
                (seq, what),
                "{name}: {:#?}",
                report.problems
            );
        }
        db.close().await;
    }
}

/// A record changed with its hash written again to match is caught by the next
/// record's link, and a whole chain rewritten by its checkpoint.
#[tokio::test]
async fn a_record_written_again_with_a_matching_hash_is_found() {
    let dir = tempfile::tempdir().expect("dir");
    let db = db(dir.path()).await;
    let writer = written(&db, 50).await;
    let row: (i64, i64, String, String, String) = on_pool!(&db, pool => sqlx::query_as(
        "SELECT seq, at, kind, detail, prev_hash FROM consent_ledger_records WHERE seq = 20")
        .fetch_one(pool).await)
    .expect("row");
    let mut forged = Record {
        writer: writer.clone(),
        seq: row.0,
        at: row.1,
        kind: row.2,
        user_id: Some("someone-else".into()),
        agent: None,
        upstream: None,
        tool: None,
        decision: Some("allow".into()),
        risk: None,
        detail: row.3,
        prev_hash: row.4,
        hash: String::new(),
    };
    forged.hash = forged.computed_hash();
    on_pool!(&db, pool => sqlx::query(
        "UPDATE consent_ledger_records SET user_id = $1, agent = NULL, upstream = NULL, \
         tool = NULL, risk = NULL, hash = $2 WHERE seq = 20")
        .bind(&forged.user_id)
        .bind(&forged.hash)
        .execute(pool).await.map(|_| ()))
    .expect("forge");
    let report = check(&db).await;
    assert_eq!(
        first(&report),
        (20, Tamper::Rewritten),
        "{:#?}",
        report.problems
    );
}

/// Replicas write at once, each its own chain; the second names the first's head, so
/// the first cannot vanish whole.
#[tokio::test]
async fn writers_at_once_keep_chains_of_their_own() {
    let dir = tempfile::tempdir().expect("dir");
    let db = db(dir.path()).await;
    let a = Ledger::open(&db, key(), options()).await.expect("a");
    a.append(call(1)).await.expect("a1");
    let b = Ledger::open(&db, key(), options()).await.expect("b");
    let mut tasks = Vec::new();
    for i in 0..100 {
        let (a, b) = (a.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            a.append(call(i)).await.expect("a");
            b.append(call(i)).await.expect("b");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let first_writer = a.writer().to_owned();
    a.close(Duration::from_secs(10)).await;
    b.close(Duration::from_secs(10)).await;
    let report = check(&db).await;
    assert!(report.intact(), "{:#?}", report.problems);
    assert_eq!(report.chains.len(), 2);
    assert_eq!(report.records, 2 + 1 + 200);
    // Removing the first writer's chain and its registration entirely.
    for table in [
        "consent_ledger_records",
        "consent_ledger_checkpoints",
        "consent_ledger_writers",
    ] {
        exec(
            &db,
            &format!("DELETE FROM {table} WHERE writer = '{first_writer}'"),
        )
        .await;
    }
    let report = check(&db).await;
    let problems = report.first_problems();
    assert_eq!(problems.len(), 1, "{:#?}", report.problems);
    assert_eq!(problems[0].writer, first_writer);
    assert_eq!(problems[0].what, Tamper::Truncated);
}

/// When records cannot be written, waiting appends fail at once; notes are kept and
/// written once the database takes records again, and appends work again.
#[tokio::test]
async fn it_fails_closed_and_recovers() {
    let dir = tempfile::tempdir().expect("dir");
    let db = db(dir.path()).await;
    let ledger = Ledger::open(
        &db,
        key(),
        Options {
            retry_interval: Duration::from_millis(50),
            ..options()
        },
    )
    .await
    .expect("open");
    ledger.append(call(1)).await.expect("first");
    exec(
        &db,
        "ALTER TABLE consent_ledger_records RENAME TO consent_ledger_records_away",
    )
    .await;
    let refused = ledger.append(call(2)).await;
    assert!(
        matches!(refused, Err(LedgerError::Unavailable(_))),
        "{refused:?}"
    );
    assert!(!ledger.state().healthy);
    // While it cannot write, appends fail without waiting for the database.
    let started = std::time::Instant::now();
    assert!(ledger.append(call(3)).await.is_err());
    assert!(started.elapsed() < Duration::from_millis(100));
    let mut noted = call(4);
    noted.tool = Some(Arc::from("noted"));
    ledger.note(noted);
    exec(
        &db,
        "ALTER TABLE consent_ledger_records_away RENAME TO consent_ledger_records",
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ledger.state().healthy {
        assert!(std::time::Instant::now() < deadline, "it recovers");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    ledger.append(call(5)).await.expect("written again");
    ledger.close(Duration::from_secs(10)).await;
    let report = check(&db).await;
    assert!(report.intact(), "{:#?}", report.problems);
    let tools: Vec<String> = on_pool!(&db, pool => sqlx::query_scalar(
        "SELECT tool FROM consent_ledger_records WHERE tool IS NOT NULL ORDER BY seq")
        .fetch_all(pool).await)
    .expect("tools");
    // What nobody waited for is written late; what failed is not written at all (its
    // caller did not go on).
    assert_eq!(tools, ["tool_1", "noted", "tool_5"]);
}

/// Retention removes a chain's oldest records up to a checkpoint older than the cutoff;
/// the chain still verifies, starting after that signed record. Records removed as if
/// by retention, without a checkpoint to start after, are found.
#[tokio::test]
async fn retention_removes_up_to_a_signed_record() {
    let dir = tempfile::tempdir().expect("dir");
    let db = db(dir.path()).await;
    let ledger = Ledger::open(
        &db,
        key(),
        Options {
            checkpoint_records: 10,
            ..options()
        },
    )
    .await
    .expect("open");
    for i in 0..50 {
        ledger.append(call(i)).await.expect("append");
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cutoff = now_micros();
    tokio::time::sleep(Duration::from_millis(30)).await;
    for i in 50..100 {
        ledger.append(call(i)).await.expect("append");
    }
    ledger.close(Duration::from_secs(10)).await;
    let pruned = retention::prune(&db, cutoff).await.expect("prune");
    assert_eq!(pruned.chains, 1);
    assert!((40..=51).contains(&pruned.records), "{pruned:?}");
    let report = check(&db).await;
    assert!(report.intact(), "{:#?}", report.problems);
    let chain = &report.chains[0];
    assert_eq!(chain.pruned_seq, pruned.records as i64);
    assert_eq!(chain.records, 101 - pruned.records);
    // Pruning again removes nothing more.
    assert_eq!(
        retention::prune(&db, cutoff).await.expect("again").records,
        0
    );

    // Someone removes more and claims retention did, where no checkpoint signs.
    let fake = chain.pruned_seq + 5;
    exec(
        &db,
        &format!("UPDATE consent_ledger_writers SET pruned_seq = {fake}, pruned_hash = 'x'"),
    )
    .await;
    exec(
        &db,
        &format!("DELETE FROM consent_ledger_records WHERE seq <= {fake}"),
    )
    .await;
    let report = check(&db).await;
    assert_eq!(
        first(&report),
        (1, Tamper::Removed),
        "{:#?}",
        report.problems
    );
}

#[tokio::test]
async fn pages_of_filtered_records_come_newest_first_and_every_one_once() {
    let dir = tempfile::tempdir().expect("dir");
    let db = db(dir.path()).await;
    // 120 calls, sequentially (each its own instant): user-0 made 40 of them, 32 of those
    // allowed (every fifth call is refused).
    let ledger = Ledger::open(&db, key(), options()).await.expect("open");
    for i in 0..120 {
        ledger.append(call(i)).await.expect("append");
    }
    ledger.close(Duration::from_secs(10)).await;
    let filter = query::Filter {
        user_id: Some("user-0".into()),
        decision: Some("allow".into()),
        ..query::Filter::default()
    };
    let mut seen = Vec::new();
    let mut before: Option<query::Cursor> = None;
    let mut pages = 0;
    loop {
        let page = query::page(&db, &filter, before.as_ref(), 10)
            .await
            .expect("page");
        pages += 1;
        assert!(page.records.len() <= 10);
        for r in &page.records {
            assert_eq!(r.user_id.as_deref(), Some("user-0"));
            assert_eq!(r.decision.as_deref(), Some("allow"));
            seen.push((r.at, r.seq));
        }
        match page.older {
            Some(cursor) => {
                // Through a link and back.
                before = query::Cursor::parse(&cursor.to_string());
                assert_eq!(before.as_ref(), Some(&cursor));
            }
            None => break,
        }
    }
    let expected = (0..120).filter(|i| i % 3 == 0 && i % 5 != 0).count();
    assert_eq!(seen.len(), expected, "every match once");
    assert_eq!(pages, expected.div_ceil(10));
    let mut sorted = seen.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");
    let (_, seq) = seen[0];
    let writer = query::page(&db, &query::Filter::default(), None, 1)
        .await
        .expect("page")
        .records[0]
        .writer
        .clone();
    let one = query::one(&db, &writer, seq)
        .await
        .expect("one")
        .expect("found");
    assert_eq!(one.seq, seq);
    assert!(
        query::one(&db, &writer, 10_000)
            .await
            .expect("one")
            .is_none()
    );
    assert!(query::Cursor::parse("1.x y.2").is_none());
    assert!(query::Cursor::parse("not a cursor").is_none());
}

#[tokio::test]
async fn analytics_count_calls_and_refusals_and_place_latency_percentiles() {
    let dir = tempfile::tempdir().expect("dir");
    let db = db(dir.path()).await;
    let since = now_micros();
    let ledger = Ledger::open(&db, key(), options()).await.expect("open");
    // "files": 100 calls (every fifth refused), outcomes of the 80 allowed at 1..=80 ms;
    // "mail": 10 calls, all allowed, at 5 ms.
    for i in 0..100u64 {
        let mut e = Entry::new(Kind::Call);
        e.upstream = Some(Arc::from("files"));
        e.tool = Some(Arc::from("read"));
        e.allowed = Some(i % 5 != 0);
        ledger.append(e).await.expect("append");
    }
    for ms in 1..=80u64 {
        let mut e = Entry::new(Kind::CallOutcome);
        e.upstream = Some(Arc::from("files"));
        e.tool = Some(Arc::from("read"));
        e.detail.latency_us = Some(ms * 1000);
        ledger.append(e).await.expect("append");
    }
    for _ in 0..10 {
        let mut call = Entry::new(Kind::Call);
        call.upstream = Some(Arc::from("mail"));
        call.allowed = Some(true);
        ledger.append(call).await.expect("append");
        let mut outcome = Entry::new(Kind::CallOutcome);
        outcome.upstream = Some(Arc::from("mail"));
        outcome.detail.latency_us = Some(5000);
        ledger.append(outcome).await.expect("append");
    }
    ledger.close(Duration::from_secs(10)).await;
    let until = now_micros() + 1;
    let report = analytics::report(&db, since, until, 60_000_000, analytics::By::Upstream, 10)
        .await
        .expect("report");
    let files = &report.groups[0];
    assert_eq!(files.key, "files");
    assert_eq!((files.stats.calls, files.stats.refused), (80, 20));
    let p50 = files.stats.p50_us.expect("p50") as f64;
    assert!((40_000.0..=44_000.0).contains(&p50), "{p50}");
    let p99 = files.stats.p99_us.expect("p99") as f64;
    assert!((79_000.0..=88_000.0).contains(&p99), "{p99}");
    let mail = &report.groups[1];
    assert_eq!(
        (mail.key.as_str(), mail.stats.calls, mail.stats.refused),
        ("mail", 10, 0)
    );
    let total: u64 = report.steps.iter().map(|s| s.calls).sum();
    let refused: u64 = report.steps.iter().map(|s| s.refused).sum();
    assert_eq!((total, refused), (90, 20));
    let by_tool = analytics::report(&db, since, until, 60_000_000, analytics::By::Tool, 1)
        .await
        .expect("report");
    assert_eq!(by_tool.groups[0].key, "files · read");
    assert_eq!(by_tool.more_groups, 1);
}
