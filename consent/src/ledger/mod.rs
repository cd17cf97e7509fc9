//! The audit ledger: an append-only, hash-chained record of every decision and event,
//! with signed checkpoints (see `migrations/*/0014_ledger.sql` for the tables).
//!
//! - **Chains per writer.** Each process that writes opens a writer of its own (a UUID
//!   v7) and numbers its records 1, 2, 3…; each record carries the SHA-256 of its
//!   contents and of the record before it ([`chain::Record::computed_hash`]). Replicas
//!   never wait for each other. A writer's first record (`ledger.opened`) names the
//!   heads of the writers before it, so a whole chain cannot disappear unseen.
//! - **Checkpoints.** Every [`Options::checkpoint_records`] records or
//!   [`Options::checkpoint_interval`], and when the writer closes, the head is signed with
//!   the ledger's Ed25519 key ([`chain::CheckpointKey`], derived from the server's secret
//!   key). [`verify::verify`] checks every chain and signature and names the first record
//!   altered, removed, inserted or reordered.
//! - **Nothing lost.** [`Ledger::append`] returns once the record is written to the
//!   database (committed: a crash of this process, even `kill -9`, no longer loses it);
//!   records of many callers are written together (one statement per batch). The
//!   database syncs them to disk in groups: at least every [`Options::sync_interval`]
//!   while records arrive, the writer commits a marker with the backend's full
//!   durability (SQLite `synchronous = FULL`, PostgreSQL `synchronous_commit = on`),
//!   which makes every record before it durable too. A power loss can lose at most that
//!   window.
//! - **Fail closed.** When records cannot be written, [`Ledger::append`] fails (the
//!   caller refuses what it was about to do) until a write succeeds again; records that
//!   nobody waits for ([`Ledger::note`]) are kept in a bounded backlog and retried.

pub mod analytics;
pub mod chain;
mod event;
pub mod query;
pub mod retention;
pub mod sink;
mod store;
pub mod verify;
mod writer;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use warrant_idp::db::Db;

use crate::token::{Risk, VerifiedToken};
pub use chain::{CheckpointKey, CheckpointPublicKey, Record};

/// What can go wrong with the ledger.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LedgerError {
    /// Records cannot be written now: the caller must not go on as if they were.
    #[error("the audit ledger cannot be written ({0}); calls are refused until it can")]
    Unavailable(String),
    /// The writer has stopped (the process is shutting down).
    #[error("the audit ledger is closed")]
    Closed,
    #[error("the audit ledger cannot be read: {0}")]
    Read(String),
}

/// How a ledger writes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sign the head at least every this many records.
    pub checkpoint_records: u64,
    /// Sign the head at least this often while records arrive.
    pub checkpoint_interval: Duration,
    /// Sync written records to disk at least this often while records arrive.
    pub sync_interval: Duration,
    /// The most records one statement writes.
    pub max_batch: usize,
    /// The most records nobody waits for kept while the database cannot be written;
    /// beyond it the oldest are dropped (and counted, and logged).
    pub max_backlog: usize,
    /// How long one write may take before the ledger counts as unavailable.
    pub write_timeout: Duration,
    /// How often a ledger that cannot write tries again.
    pub retry_interval: Duration,
    /// Who this writer is, for people (host and process id by default).
    pub label: String,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            checkpoint_records: 1000,
            checkpoint_interval: Duration::from_secs(1),
            sync_interval: Duration::from_millis(5),
            max_batch: 512,
            max_backlog: 100_000,
            write_timeout: Duration::from_secs(2),
            retry_interval: Duration::from_millis(250),
            label: format!(
                "{}:{}",
                hostname().unwrap_or_else(|| "localhost".into()),
                std::process::id()
            ),
        }
    }
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// What a record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `tools/call` decided: allowed (written before it goes upstream) or refused.
    Call,
    /// How an allowed call ended.
    CallOutcome,
    /// A writer started (its first record).
    Opened,
    /// Any other event, by name (`consent.given`, `sign_in`, …).
    Event(&'static str),
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::CallOutcome => "call.outcome",
            Self::Opened => "ledger.opened",
            Self::Event(name) => name,
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The upstream answered with a result.
    Ok,
    /// The upstream answered with a result marked `isError`.
    ToolError,
    /// The upstream failed, or answered with an error.
    UpstreamError,
    /// No answer in time.
    Timeout,
}

/// The facts of a record beyond its indexed columns, written as its JSON `detail`.
/// Only what is set is written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Detail {
    /// Why: a refusal's reason, or the rule that allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The approval a held call went with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// For an outcome: the number of the call's own record (same writer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// The HTTP status the client got, where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_bytes: Option<u64>,
    /// The SHA-256 (hex) of a call's arguments as forwarded: which arguments, without
    /// keeping them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub args_sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_bytes: Option<u64>,
    /// Anything else an event says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub more: Option<serde_json::Value>,
}

/// One record to write. Who acted comes from the token where there is one (the
/// person, the agent, the grant and the chain of narrowings are read from it by the
/// writer, off the call's path), else from `user` and `agent`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub kind: Kind,
    pub token: Option<Arc<VerifiedToken>>,
    pub user: Option<Arc<str>>,
    pub agent: Option<Arc<str>>,
    pub upstream: Option<Arc<str>>,
    pub tool: Option<Arc<str>>,
    /// `Some(true)`: allowed; `Some(false)`: refused.
    pub allowed: Option<bool>,
    pub risk: Option<Risk>,
    /// A call's arguments as forwarded (JSON): the writer records their size and hash
    /// (never the arguments themselves).
    pub args: Option<Arc<str>>,
    pub detail: Detail,
}

impl Entry {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            token: None,
            user: None,
            agent: None,
            upstream: None,
            tool: None,
            allowed: None,
            risk: None,
            args: None,
            detail: Detail::default(),
        }
    }
}

/// Where a record landed: its writer's chain and its number there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub seq: i64,
}

enum Msg {
    Record(Box<Pending>),
    /// Write what is waiting, sign, sync, mark closed, then answer and stop.
    Close(oneshot::Sender<()>),
}

struct Pending {
    entry: Entry,
    /// Unix microseconds, taken when the entry was handed over.
    at: i64,
    ack: Option<oneshot::Sender<Result<Written, LedgerError>>>,
}

/// What the writer shares with every handle.
struct Shared {
    writer: String,
    key_id: String,
    /// `false` while records cannot be written.
    healthy: AtomicBool,
    /// Why, while not healthy.
    failure: Mutex<String>,
    /// Records waiting to be written (handed over, not yet written).
    backlog: AtomicU64,
    /// Records written since the start.
    written: AtomicU64,
    /// Records dropped because the backlog was full.
    dropped: AtomicU64,
}

impl Shared {
    /// Why records cannot be written (while they cannot).
    fn failure(&self) -> String {
        self.failure
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A handle to this process's ledger writer; cheap to clone.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("writer", &self.shared.writer)
            .finish()
    }
}

/// What a ledger has done, for `/metrics` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerState {
    pub writer: String,
    pub healthy: bool,
    pub failure: Option<String>,
    pub backlog: u64,
    pub written: u64,
    pub dropped: u64,
}

impl Ledger {
    /// Opens a writer of its own on `db` (its first record written before this returns)
    /// and starts its task. Fails when the database cannot take the first record.
    pub async fn open(db: &Db, key: CheckpointKey, options: Options) -> Result<Self, LedgerError> {
        writer::start(db, key, options).await
    }

    /// This writer's id.
    pub fn writer(&self) -> &str {
        &self.shared.writer
    }

    /// The id of the key this writer signs checkpoints with.
    pub fn key_id(&self) -> &str {
        &self.shared.key_id
    }

    /// Writes `entry` and returns once it is in the database. While records cannot be
    /// written this fails at once; a failed entry is not written later (the caller does
    /// not do what it records, and records that instead).
    pub async fn append(&self, entry: Entry) -> Result<Written, LedgerError> {
        if !self.shared.healthy.load(Ordering::Acquire) {
            return Err(LedgerError::Unavailable(self.failure()));
        }
        let (ack, done) = oneshot::channel();
        self.send(entry, Some(ack))?;
        done.await.unwrap_or(Err(LedgerError::Closed))
    }

    /// Hands `entry` over to be written soon, without waiting for it.
    pub fn note(&self, entry: Entry) {
        let _ = self.send(entry, None);
    }

    fn send(
        &self,
        entry: Entry,
        ack: Option<oneshot::Sender<Result<Written, LedgerError>>>,
    ) -> Result<(), LedgerError> {
        self.shared.backlog.fetch_add(1, Ordering::Relaxed);
        let pending = Pending {
            entry,
            at: now_micros(),
            ack,
        };
        self.tx.send(Msg::Record(Box::new(pending))).map_err(|_| {
            self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
            LedgerError::Closed
        })
    }

    fn failure(&self) -> String {
        self.shared.failure()
    }

    pub fn state(&self) -> LedgerState {
        let healthy = self.shared.healthy.load(Ordering::Acquire);
        LedgerState {
            writer: self.shared.writer.clone(),
            healthy,
            failure: (!healthy).then(|| self.failure()),
            backlog: self.shared.backlog.load(Ordering::Relaxed),
            written: self.shared.written.load(Ordering::Relaxed),
            dropped: self.shared.dropped.load(Ordering::Relaxed),
        }
    }

    /// Writes what is waiting, signs the head, syncs and marks the writer closed. Every
    /// handle's later records fail with [`LedgerError::Closed`]. Waits at most `bound`.
    pub async fn close(&self, bound: Duration) {
        let (tell, done) = oneshot::channel();
        if self.tx.send(Msg::Close(tell)).is_ok() {
            let _ = tokio::time::timeout(bound, done).await;
        }
    }
}

/// Now, in Unix microseconds (the ledger's instants).
pub fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
