//! Streaming the ledger out, to a file or an HTTP endpoint a SIEM reads: every record of
//! every writer (this process's, other replicas', the commands'), each writer's records
//! in their order, as JSON Lines in the shape of `warrant audit export` (hashes included,
//! so a copy can be checked against the chain).
//!
//! - **Delivered at least once.** A sink remembers, per writer, the last record it
//!   delivered (`consent_ledger_sink_cursors`), and moves it only once the file was
//!   synced or the endpoint answered 2xx. A failed delivery is tried again (backing off
//!   up to 30 s) with the same records; a restart, or another replica, goes on from the
//!   cursor. A record delivered whose acknowledgement was lost can come twice: the
//!   receiver drops duplicates by `writer` and `seq`.
//! - **One shipper at a time.** Replicas share the sink through a lease
//!   (`consent_ledger_sinks`, renewed while shipping): whoever holds it ships, the
//!   others wait and take over when it lapses.
//! - **A bounded backlog.** What is not delivered yet stays in the ledger itself, on
//!   disk, not in memory: a sink holds one batch at a time, whatever the lag. Records
//!   that retention removes before they were delivered are skipped, and said so.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warrant_idp::db::Db;
use warrant_idp::on_pool;

use super::chain::{COLUMNS, Record, Row};
use super::query::Exported;
use super::{LedgerError, now_micros};

/// Where a sink delivers.
#[derive(Clone)]
pub enum Target {
    /// Appended to this file (created `0600`), synced after each batch.
    File(PathBuf),
    /// POSTed to this URL, a batch per request (`application/x-ndjson`), with these
    /// headers (values may be secrets: never logged).
    Http {
        url: url::Url,
        headers: Vec<(http::HeaderName, http::HeaderValue)>,
    },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(path) => write!(f, "file {}", path.display()),
            Self::Http { url, .. } => write!(f, "{}", warrant_idp::db::redacted(url.as_str())),
        }
    }
}

/// One sink.
#[derive(Debug, Clone)]
pub struct Options {
    /// Its name: its cursors and lease are kept under it.
    pub name: String,
    pub target: Target,
    /// The most records one delivery carries.
    pub batch: usize,
    /// How often a sink with nothing to deliver looks again.
    pub every: Duration,
    /// How long one HTTP delivery may take.
    pub timeout: Duration,
    /// How long a lease lasts unless renewed.
    pub lease: Duration,
}

impl Options {
    pub fn new(name: impl Into<String>, target: Target) -> Self {
        Self {
            name: name.into(),
            target,
            batch: 500,
            every: Duration::from_millis(250),
            timeout: Duration::from_secs(10),
            lease: Duration::from_secs(10),
        }
    }
}

/// The longest wait between failed deliveries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a sink is doing, for `/metrics`.
#[derive(Debug, Default)]
pub struct SinkState {
    /// Records delivered by this process.
    pub delivered: AtomicU64,
    /// `true` while deliveries fail.
    pub failing: AtomicBool,
}

/// A running sink; [`Sink::finish`] delivers what is left and stops it.
pub struct Sink {
    name: String,
    state: Arc<SinkState>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Sink {
    /// Starts shipping to `options.target`, holding the lease as `holder` (this process's
    /// writer id).
    pub fn start(db: &Db, options: Options, holder: &str) -> Result<Self, LedgerError> {
        let client = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| LedgerError::Unavailable(format!("sink {}: {e}", options.name)))?;
        let state = Arc::new(SinkState::default());
        let stop = CancellationToken::new();
        let shipper = Shipper {
            db: db.clone(),
            holder: holder.to_owned(),
            client,
            state: state.clone(),
            options,
        };
        let name = shipper.options.name.clone();
        let task = tokio::spawn(shipper.run(stop.clone()));
        Ok(Self {
            name,
            state,
            stop,
            task,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> &Arc<SinkState> {
        &self.state
    }

    /// Delivers what is still to go (the ledger's last records included, when it was
    /// closed first), within `bound`, then stops.
    pub async fn finish(self, bound: Duration) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(bound, &mut task).await.is_err() {
            tracing::warn!(sink = %self.name, "the audit sink did not finish delivering in time; it goes on from there at the next start");
            task.abort();
        }
    }
}

struct Shipper {
    db: Db,
    holder: String,
    client: reqwest::Client,
    state: Arc<SinkState>,
    options: Options,
}

impl Shipper {
    async fn run(self, stop: CancellationToken) {
        let mut backoff = Duration::ZERO;
        loop {
            let stopping = stop.is_cancelled();
            let wait = match self.round().await {
                // More to deliver: at once (stopping too, until everything went or
                // the bound of `finish` is reached).
                Ok(n) if n > 0 => {
                    self.recovered();
                    backoff = Duration::ZERO;
                    continue;
                }
                Ok(_) => {
                    self.recovered();
                    backoff = Duration::ZERO;
                    self.options.every
                }
                Err(e) => {
                    if !self.state.failing.swap(true, Ordering::Relaxed) {
                        tracing::error!(sink = %self.options.name, target = ?self.options.target, error = %e, "cannot deliver the audit ledger to its sink; trying again (nothing is lost: the records wait in the ledger)");
                    }
                    backoff = (backoff * 2).clamp(Duration::from_millis(500), MAX_BACKOFF);
                    backoff
                }
            };
            if stopping {
                self.release().await;
                return;
            }
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    fn recovered(&self) {
        if self.state.failing.swap(false, Ordering::Relaxed) {
            tracing::info!(sink = %self.options.name, "the audit ledger reaches its sink again");
        }
    }

    /// Takes (or renews) the lease and delivers one batch of each writer that has
    /// records past the cursor: how many records went.
    async fn round(&self) -> Result<usize, String> {
        if !self.lease().await? {
            return Ok(0);
        }
        let mut delivered = 0;
        for (writer, cursor, pruned) in self.pending().await? {
            let from = if cursor < pruned {
                tracing::warn!(sink = %self.options.name, %writer, skipped = pruned - cursor, "audit records removed by retention before this sink delivered them");
                pruned
            } else {
                cursor
            };
            let records = self.records(&writer, from).await?;
            let Some(last) = records.last().map(|r| r.seq) else {
                continue;
            };
            let n = records.len();
            self.deliver(lines(records)?).await?;
            self.advance(&writer, last).await?;
            self.state.delivered.fetch_add(n as u64, Ordering::Relaxed);
            delivered += n;
        }
        Ok(delivered)
    }

    /// Holds the lease for the next [`Options::lease`]: `false` while another holds it.
    async fn lease(&self) -> Result<bool, String> {
        let now = now_micros();
        let until = now + i64::try_from(self.options.lease.as_micros()).unwrap_or(i64::MAX / 2);
        let taken = on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO consent_ledger_sinks (sink, holder, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (sink) DO UPDATE SET holder = excluded.holder, \
             lease_until = excluded.lease_until \
             WHERE consent_ledger_sinks.holder = excluded.holder \
             OR consent_ledger_sinks.lease_until < $4",
        )
        .bind(&self.options.name)
        .bind(&self.holder)
        .bind(until)
        .bind(now)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()))
        .map_err(|e| format!("the sink's lease: {e}"))?;
        Ok(taken == 1)
    }

    /// Lets the lease go (the process stops): another replica, or the next start, ships
    /// at once instead of waiting for it to lapse.
    async fn release(&self) {
        let released = on_pool!(&self.db, pool => sqlx::query(
            "UPDATE consent_ledger_sinks SET lease_until = 0 WHERE sink = $1 AND holder = $2",
        )
        .bind(&self.options.name)
        .bind(&self.holder)
        .execute(pool)
        .await
        .map(drop));
        if let Err(e) = released {
            tracing::warn!(sink = %self.options.name, error = %e, "cannot let the audit sink's lease go; another process takes it over once it lapses");
        }
    }

    /// Every writer with records past this sink's cursor: writer, cursor, pruned up to.
    async fn pending(&self) -> Result<Vec<(String, i64, i64)>, String> {
        on_pool!(&self.db, pool => sqlx::query_as(
            "SELECT w.writer, COALESCE(c.seq, 0), w.pruned_seq FROM consent_ledger_writers w \
             LEFT JOIN consent_ledger_sink_cursors c ON c.sink = $1 AND c.writer = w.writer \
             WHERE EXISTS (SELECT 1 FROM consent_ledger_records r \
                           WHERE r.writer = w.writer AND r.seq > COALESCE(c.seq, 0)) \
             ORDER BY w.started_at",
        )
        .bind(&self.options.name)
        .fetch_all(pool)
        .await)
        .map_err(|e| format!("reading the ledger: {e}"))
    }

    async fn records(&self, writer: &str, after: i64) -> Result<Vec<Record>, String> {
        let limit = i64::try_from(self.options.batch).unwrap_or(500);
        let rows: Vec<Row> = on_pool!(&self.db, pool => sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM consent_ledger_records \
             WHERE writer = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(writer)
        .bind(after)
        .bind(limit)
        .fetch_all(pool)
        .await)
        .map_err(|e| format!("reading the ledger: {e}"))?;
        Ok(rows.into_iter().map(Record::from).collect())
    }

    async fn advance(&self, writer: &str, seq: i64) -> Result<(), String> {
        on_pool!(&self.db, pool => sqlx::query(
            "INSERT INTO consent_ledger_sink_cursors (sink, writer, seq) VALUES ($1, $2, $3) \
             ON CONFLICT (sink, writer) DO UPDATE SET seq = excluded.seq \
             WHERE consent_ledger_sink_cursors.seq < excluded.seq",
        )
        .bind(&self.options.name)
        .bind(writer)
        .bind(seq)
        .execute(pool)
        .await
        .map(drop))
        .map_err(|e| format!("noting what was delivered: {e}"))
    }

    async fn deliver(&self, lines: Vec<u8>) -> Result<(), String> {
        match &self.options.target {
            Target::File(path) => {
                let path = path.clone();
                tokio::task::spawn_blocking(move || append(&path, &lines))
                    .await
                    .map_err(|e| e.to_string())?
            }
            Target::Http { url, headers } => {
                let mut request = self
                    .client
                    .post(url.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-ndjson");
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let response = request.body(lines).send().await.map_err(|e| {
                    format!("POST {}: {}", self.options.target_name(), e.without_url())
                })?;
                let status = response.status();
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!(
                        "POST {} answered {status}",
                        self.options.target_name()
                    ))
                }
            }
        }
    }
}

impl Options {
    fn target_name(&self) -> String {
        format!("{:?}", self.target)
    }
}

/// The records as JSON Lines.
fn lines(records: Vec<Record>) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for record in records {
        serde_json::to_writer(&mut out, &Exported::from(record)).map_err(|e| e.to_string())?;
        out.push(b'\n');
    }
    Ok(out)
}

/// Appends `lines` to the file at `path` (created readable by its owner only) and syncs
/// it.
fn append(path: &std::path::Path, lines: &[u8]) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(lines)
        .and_then(|()| file.sync_data())
        .map_err(|e| format!("{}: {e}", path.display()))
}
