//! `warrant audit verify`: every chain and every checkpoint, read once in order, and the
//! first record of each chain that was altered, removed, inserted or reordered.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::TryStreamExt;
use serde::Serialize;
use warrant_idp::db::Db;
use warrant_idp::on_pool;

use super::LedgerError;
use super::chain::{COLUMNS, CheckpointPublicKey, GENESIS, Record, Row};

/// What was found wrong with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tamper {
    /// Its contents do not give its hash: changed, or moved to another number.
    Altered,
    /// Its contents give its hash, but the record after it names another predecessor:
    /// it was written again with a hash to match.
    Rewritten,
    /// Records are missing before this one.
    Removed,
    /// It does not follow the record before it: inserted, or moved here.
    OutOfChain,
    /// The chain ends before a record a checkpoint (or another writer) saw.
    Truncated,
    /// A checkpoint whose signature does not verify with the key given.
    BadSignature,
    /// Records of a writer that was never registered.
    UnknownWriter,
}

/// One problem: where, what, and in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub writer: String,
    /// The first record concerned.
    pub seq: i64,
    pub what: Tamper,
    pub detail: String,
}

/// One writer's chain as found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Chain {
    pub writer: String,
    pub label: String,
    pub records: u64,
    pub last_seq: i64,
    /// The last record a valid checkpoint signs (0: none).
    pub signed_seq: i64,
    pub checkpoints: u64,
    pub closed: bool,
    /// Records up to here were removed by retention (0: none).
    pub pruned_seq: i64,
}

/// What `verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub key_id: String,
    pub records: u64,
    pub checkpoints: u64,
    pub chains: Vec<Chain>,
    /// Every problem, by writer then record.
    pub problems: Vec<Problem>,
}

impl Report {
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }

    /// The first problem of each chain that has one.
    pub fn first_problems(&self) -> Vec<&Problem> {
        let mut first: BTreeMap<&str, &Problem> = BTreeMap::new();
        for p in &self.problems {
            first
                .entry(&p.writer)
                .and_modify(|q| {
                    if p.seq < q.seq {
                        *q = p;
                    }
                })
                .or_insert(p);
        }
        first.into_values().collect()
    }
}

/// A writer as registered: id, label, closed at, pruned up to, that record's hash.
type WriterRow = (String, String, Option<i64>, i64, Option<String>);

/// Every record, chain by chain, in order.
fn records_sql() -> String {
    format!("SELECT {COLUMNS} FROM consent_ledger_records ORDER BY writer, seq")
}

struct Checkpoint {
    seq: i64,
    hash: String,
    valid: bool,
}

/// Checks every chain in `db` and every checkpoint's signature with `key`.
pub async fn verify(db: &Db, key: &CheckpointPublicKey) -> Result<Report, LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Read(e.to_string());
    let mut report = Report {
        key_id: key.id().to_owned(),
        ..Report::default()
    };
    let writers: Vec<WriterRow> = on_pool!(db, pool => sqlx::query_as(
        "SELECT writer, label, closed_at, pruned_seq, pruned_hash FROM consent_ledger_writers \
         ORDER BY started_at, writer",
    )
    .fetch_all(pool)
    .await)
    .map_err(read)?;
    let rows: Vec<(String, i64, String, i64, String, String)> =
        on_pool!(db, pool => sqlx::query_as(
        "SELECT writer, seq, hash, at, key_id, signature FROM consent_ledger_checkpoints \
         ORDER BY writer, seq",
    )
    .fetch_all(pool)
    .await)
        .map_err(read)?;
    let mut checkpoints: HashMap<String, Vec<Checkpoint>> = HashMap::new();
    for (writer, seq, hash, at, key_id, signature) in rows {
        report.checkpoints += 1;
        let valid = key_id == key.id() && key.verifies(&writer, seq, &hash, at, &signature);
        if !valid {
            report.problems.push(Problem {
                writer: writer.clone(),
                seq,
                what: Tamper::BadSignature,
                detail: format!(
                    "the checkpoint at record {seq} does not verify with key {} (signed with key {key_id})",
                    key.id()
                ),
            });
        }
        checkpoints
            .entry(writer)
            .or_default()
            .push(Checkpoint { seq, hash, valid });
    }
    // What the first record of each writer says it saw of the writers before it.
    let mut seen: HashMap<(String, i64), (String, String)> = HashMap::new();
    let openings: Vec<(String, String)> = on_pool!(db, pool => sqlx::query_as(
        "SELECT writer, detail FROM consent_ledger_records WHERE kind = 'ledger.opened'",
    )
    .fetch_all(pool)
    .await)
    .map_err(read)?;
    for (by, detail) in openings {
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
        for head in detail["more"]["previous"].as_array().into_iter().flatten() {
            if let (Some(w), Some(seq), Some(hash)) = (
                head["writer"].as_str(),
                head["seq"].as_i64(),
                head["hash"].as_str(),
            ) {
                seen.insert((w.to_owned(), seq), (hash.to_owned(), by.clone()));
            }
        }
    }

    let mut chains: BTreeMap<String, Chain> = writers
        .iter()
        .map(|(w, label, closed, pruned, _)| {
            (
                w.clone(),
                Chain {
                    writer: w.clone(),
                    label: label.clone(),
                    closed: closed.is_some(),
                    pruned_seq: *pruned,
                    ..Chain::default()
                },
            )
        })
        .collect();
    // Where chains pruned by retention start: after a signed record.
    let starts: HashMap<String, (i64, String)> = writers
        .into_iter()
        .filter(|w| w.3 > 0)
        .map(|(w, _, _, pruned, hash)| (w, (pruned, hash.unwrap_or_default())))
        .collect();
    let mut walk = Walk {
        wanted: checkpoints
            .iter()
            .map(|(w, cps)| (w.clone(), cps.iter().map(|cp| cp.seq).collect()))
            .collect(),
        starts,
        ..Walk::default()
    };
    match db {
        // SQLite: read on a blocking thread with a synchronous connection, a row at a
        // time without a hop between threads per row (several times faster).
        Db::Sqlite(pool) => {
            let path = pool.connect_options().get_filename().to_owned();
            let mut state = (walk, chains, seen, report);
            state = tokio::task::spawn_blocking(move || {
                let (walk, chains, seen, report) = &mut state;
                let conn = rusqlite::Connection::open_with_flags(
                    &path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
                )?;
                let mut statement = conn.prepare(&records_sql())?;
                let mut rows = statement.query([])?;
                while let Some(row) = rows.next()? {
                    let record = Record::from_sqlite(row)?;
                    walk.step(record, chains, seen, report);
                }
                drop(rows);
                drop(statement);
                Ok::<_, rusqlite::Error>(state)
            })
            .await
            .map_err(|e| LedgerError::Read(e.to_string()))?
            .map_err(|e| LedgerError::Read(e.to_string()))?;
            (walk, chains, seen, report) = state;
        }
        Db::Postgres(pool) => {
            let sql = records_sql();
            let mut stream = sqlx::query_as::<_, Row>(&sql).fetch(pool);
            while let Some(row) = stream.try_next().await.map_err(read)? {
                let record = Record::from(row);
                walk.step(record, &mut chains, &mut seen, &mut report);
            }
        }
    }

    for (writer, chain) in &mut chains {
        if chain.records == 0 && chain.pruned_seq == 0 {
            report.problems.push(Problem {
                writer: writer.clone(),
                seq: 1,
                what: Tamper::Removed,
                detail: "the writer is registered, but its whole chain is gone: removed".into(),
            });
        }
        let mut anchored = chain.pruned_seq == 0;
        for cp in checkpoints.get(writer).into_iter().flatten() {
            if !cp.valid {
                continue;
            }
            if cp.seq == chain.pruned_seq {
                // The record retention pruned up to: gone, its checkpoint kept.
                anchored = walk
                    .starts
                    .get(writer)
                    .is_some_and(|(_, hash)| *hash == cp.hash);
                chain.signed_seq = chain.signed_seq.max(cp.seq);
                chain.checkpoints += 1;
                continue;
            }
            match walk.hashes.get(&(writer.clone(), cp.seq)) {
                Some(hash) if *hash == cp.hash => chain.signed_seq = chain.signed_seq.max(cp.seq),
                Some(_) => report.problems.push(Problem {
                    writer: writer.clone(),
                    seq: cp.seq,
                    what: Tamper::Rewritten,
                    detail: format!(
                        "record {} is not the one the checkpoint signed: the chain up to it was written again",
                        cp.seq
                    ),
                }),
                None if cp.seq > chain.last_seq.max(chain.pruned_seq) => report.problems.push(Problem {
                    writer: writer.clone(),
                    seq: chain.last_seq + 1,
                    what: Tamper::Truncated,
                    detail: format!(
                        "the chain ends at record {}, but a checkpoint signed record {}: records {}–{} were removed",
                        chain.last_seq,
                        cp.seq,
                        chain.last_seq + 1,
                        cp.seq
                    ),
                }),
                // Missing inside the chain: reported as removed by the walk.
                None => {}
            }
            chain.checkpoints += 1;
        }
        if !anchored {
            report.problems.push(Problem {
                writer: writer.clone(),
                seq: 1,
                what: Tamper::Removed,
                detail: format!(
                    "records 1–{} are gone as if by retention, but no valid checkpoint signs \
                     record {}: removed",
                    chain.pruned_seq, chain.pruned_seq
                ),
            });
        }
    }
    for ((writer, seq), (_, by)) in seen {
        // What the walk did not find of what another writer saw.
        let (last, pruned) = chains
            .get(&writer)
            .map_or((0, 0), |c| (c.last_seq.max(c.pruned_seq), c.pruned_seq));
        if seq > last && seq > pruned {
            report.problems.push(Problem {
                writer: writer.clone(),
                seq: last + 1,
                what: Tamper::Truncated,
                detail: format!(
                    "writer {by} saw this chain up to record {seq} when it started; it ends at {last}"
                ),
            });
        }
    }
    report.chains = chains.into_values().collect();
    report
        .problems
        .sort_by(|a, b| (&a.writer, a.seq).cmp(&(&b.writer, b.seq)));
    report.problems.dedup();
    Ok(report)
}

/// The walk through the records in order.
#[derive(Default)]
struct Walk {
    current: Option<String>,
    expected: i64,
    /// The record before: its number, hash, and whether its own hash held.
    prev: Option<(i64, String, bool)>,
    /// The records checkpoints sign: writer → numbers.
    wanted: HashMap<String, HashSet<i64>>,
    /// Their hashes as found.
    hashes: HashMap<(String, i64), String>,
    /// Chains pruned by retention: the record they start after, and its hash.
    starts: HashMap<String, (i64, String)>,
    /// The hash the current chain's first record follows.
    start_hash: String,
}

impl Walk {
    fn step(
        &mut self,
        r: Record,
        chains: &mut BTreeMap<String, Chain>,
        seen: &mut HashMap<(String, i64), (String, String)>,
        report: &mut Report,
    ) {
        if self.current.as_deref() != Some(&r.writer) {
            self.current = Some(r.writer.clone());
            let (after, hash) = self
                .starts
                .get(&r.writer)
                .cloned()
                .unwrap_or_else(|| (0, GENESIS.to_owned()));
            self.expected = after + 1;
            self.start_hash = hash;
            self.prev = None;
            if !chains.contains_key(&r.writer) {
                report.problems.push(Problem {
                    writer: r.writer.clone(),
                    seq: r.seq,
                    what: Tamper::UnknownWriter,
                    detail: "records of a writer that never registered: inserted".into(),
                });
                chains.insert(
                    r.writer.clone(),
                    Chain {
                        writer: r.writer.clone(),
                        ..Chain::default()
                    },
                );
            }
        }
        if r.seq < self.expected && self.prev.is_none() {
            // Left before the start of a chain pruned by retention, to be removed by
            // the next pruning: not part of the chain any more.
            return;
        }
        report.records += 1;
        let chain = chains.get_mut(&r.writer).expect("inserted above");
        chain.records += 1;
        chain.last_seq = r.seq;
        let own = r.computed_hash() == r.hash;
        let problem = |seq, what, detail: String| Problem {
            writer: r.writer.clone(),
            seq,
            what,
            detail,
        };
        let gap = r.seq > self.expected;
        if gap {
            let (from, to) = (self.expected, r.seq - 1);
            let which = if from == to {
                format!("record {from} is missing")
            } else {
                format!("records {from}–{to} are missing")
            };
            report
                .problems
                .push(problem(from, Tamper::Removed, format!("{which}: removed")));
        }
        if !own {
            report.problems.push(problem(
                r.seq,
                Tamper::Altered,
                format!(
                    "record {} does not match its hash: changed, or moved from elsewhere",
                    r.seq
                ),
            ));
        } else if !gap {
            let follows = match &self.prev {
                None => r.prev_hash == self.start_hash,
                Some((_, hash, _)) => *hash == r.prev_hash,
            };
            if !follows {
                match &self.prev {
                    // Intact itself, linked to something else: the one before it was
                    // written again with a hash to match.
                    Some((seq, _, true)) => report.problems.push(problem(
                        *seq,
                        Tamper::Rewritten,
                        format!(
                            "record {seq} was written again (record {} names another predecessor)",
                            r.seq
                        ),
                    )),
                    Some((_, _, false)) => {}
                    None => report.problems.push(problem(
                        r.seq,
                        Tamper::OutOfChain,
                        format!(
                            "record {} does not start the chain: inserted or moved",
                            r.seq
                        ),
                    )),
                }
            }
        }
        if !seen.is_empty()
            && let Some((hash, by)) = seen.remove(&(r.writer.clone(), r.seq))
            && hash != r.hash
        {
            report.problems.push(problem(
                r.seq,
                Tamper::Rewritten,
                format!(
                    "record {} is not the one writer {by} saw when it started",
                    r.seq
                ),
            ));
        }
        if self
            .wanted
            .get(&r.writer)
            .is_some_and(|seqs| seqs.contains(&r.seq))
        {
            self.hashes
                .insert((r.writer.clone(), r.seq), r.hash.clone());
        }
        self.expected = r.seq + 1;
        self.prev = Some((r.seq, r.hash, own));
    }
}
