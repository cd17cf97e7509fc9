//! The writer's own connection and what it does with it, per backend.
//!
//! - **SQLite**: a connection of the ledger's own, used synchronously in the writer's
//!   task (rusqlite): a batch is one short transaction (tens of microseconds, no sync
//!   to disk), written in place instead of being handed to another thread and back,
//!   which would cost more than the write itself. Syncing is an `fsync` of the WAL file
//!   on a blocking thread: every commit before it reaches the disk, and the writer does
//!   not wait for the disk meanwhile.
//! - **PostgreSQL**: an async connection with `synchronous_commit = off` for records;
//!   syncing commits a marker with `synchronous_commit = on`, which waits for the WAL
//!   up to it, every record before it included.

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, PgConnection};
use warrant_idp::db::Db;

use super::chain::Record;

/// Why the database did not do what the writer asked.
#[derive(Debug, Clone)]
pub(super) struct StoreError(pub(super) String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        Self(e.to_string())
    }
}

/// Where the writer's connection goes.
pub(super) enum Target {
    Sqlite(PathBuf),
    Postgres(Box<PgConnectOptions>),
}

impl Target {
    pub(super) fn of(db: &Db) -> Self {
        match db {
            Db::Sqlite(pool) => Self::Sqlite(pool.connect_options().get_filename().to_owned()),
            Db::Postgres(pool) => Self::Postgres(Box::new((*pool.connect_options()).clone())),
        }
    }

    /// A connection; `busy` bounds how long an SQLite write waits for the lock.
    pub(super) async fn connect(&self, busy: Duration) -> Result<Store, StoreError> {
        Ok(match self {
            Self::Sqlite(path) => {
                let conn = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                // No waiting inside SQLite: it would block the runtime's thread, and with it
                // whoever holds the lock (see `patiently`).
                conn.busy_timeout(Duration::ZERO)?;
                conn.pragma_update(None, "journal_mode", "WAL")?;
                // Commits are not synced one by one: `sync` does it in groups.
                conn.pragma_update(None, "synchronous", "NORMAL")?;
                let mut wal = path.clone().into_os_string();
                wal.push("-wal");
                Store::Sqlite(SqliteStore {
                    conn,
                    wal: PathBuf::from(wal),
                    wal_file: None,
                    busy,
                })
            }
            Self::Postgres(options) => {
                let mut conn = options.connect().await?;
                // Commits return once PostgreSQL has the record (a crash of Warrant
                // cannot lose it); the sync marker makes them durable in groups.
                sqlx::query("SET synchronous_commit = off")
                    .execute(&mut conn)
                    .await?;
                Store::Postgres(conn)
            }
        })
    }
}

impl SqliteStore {
    /// Runs `op`, again while SQLite refuses it for a lock another connection holds,
    /// sleeping between tries (the runtime goes on, and with it whoever holds the lock),
    /// for at most the busy bound.
    async fn patiently<T>(
        &mut self,
        mut op: impl FnMut(&mut rusqlite::Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::now() + self.busy;
        let mut pause = Duration::from_micros(100);
        loop {
            match op(&mut self.conn) {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if matches!(
                        e.code,
                        rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                    ) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(10));
                }
                other => return other.map_err(StoreError::from),
            }
        }
    }

    /// Runs one writing statement in a transaction begun IMMEDIATE (the write lock
    /// first: a statement that starts by reading is refused when another connection
    /// wrote meanwhile).
    async fn write<P: rusqlite::Params + Clone + Send>(
        &mut self,
        sql: &str,
        params: P,
    ) -> Result<(), StoreError> {
        self.patiently(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            tx.prepare_cached(sql)?.execute(params.clone())?;
            tx.commit()
        })
        .await
    }
}

pub(super) struct SqliteStore {
    conn: rusqlite::Connection,
    wal: PathBuf,
    /// The WAL file, opened at the first sync (it exists once something was written).
    wal_file: Option<std::sync::Arc<std::fs::File>>,
    /// How long a write may wait for the lock.
    busy: Duration,
}

pub(super) enum Store {
    Sqlite(SqliteStore),
    Postgres(PgConnection),
}

/// The last record of each of the 64 writers that started last.
const HEADS_SQL: &str = "SELECT w.writer, r.seq, r.hash FROM consent_ledger_writers w \
     JOIN consent_ledger_records r ON r.writer = w.writer \
     AND r.seq = (SELECT MAX(seq) FROM consent_ledger_records m WHERE m.writer = w.writer) \
     ORDER BY w.started_at DESC LIMIT 64";
const REGISTER_SQL: &str = "INSERT INTO consent_ledger_writers \
     (writer, label, key_id, started_at, durable_seq) VALUES ($1, $2, $3, $4, 0)";
const HEAD_SQL: &str =
    "SELECT seq, hash FROM consent_ledger_records WHERE writer = $1 ORDER BY seq DESC LIMIT 1";
const RECORD_SQL: &str = "INSERT INTO consent_ledger_records (writer, seq, at, kind, user_id, \
     agent, upstream, tool, decision, risk, detail, prev_hash, hash) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
const CHECKPOINT_SQL: &str = "INSERT INTO consent_ledger_checkpoints \
     (writer, seq, hash, at, key_id, signature) VALUES ($1, $2, $3, $4, $5, $6)";
// SQLite numbers `$N` parameters in the order they first appear: every statement here
// names them in order.
const DURABLE_SQL: &str = "UPDATE consent_ledger_writers SET durable_seq = $1 WHERE writer = $2";
const CLOSED_SQL: &str = "UPDATE consent_ledger_writers SET closed_at = $1 WHERE writer = $2";

impl Store {
    /// The last record of each of the writers that started last: (writer, seq, hash).
    pub(super) async fn heads(&mut self) -> Result<Vec<(String, i64, String)>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.patiently(|conn| {
                    let mut statement = conn.prepare_cached(HEADS_SQL)?;
                    let rows =
                        statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                    rows.collect()
                })
                .await
            }
            Self::Postgres(c) => Ok(sqlx::query_as(HEADS_SQL).fetch_all(&mut *c).await?),
        }
    }

    pub(super) async fn register(
        &mut self,
        writer: &str,
        label: &str,
        key_id: &str,
        at: i64,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(REGISTER_SQL, (writer, label, key_id, at)).await?;
            }
            Self::Postgres(c) => {
                sqlx::query(REGISTER_SQL)
                    .bind(writer)
                    .bind(label)
                    .bind(key_id)
                    .bind(at)
                    .execute(&mut *c)
                    .await?;
            }
        }
        Ok(())
    }

    /// The last record of `writer`: its number and hash (0 and none before the first).
    pub(super) async fn head(&mut self, writer: &str) -> Result<Option<(i64, String)>, StoreError> {
        match self {
            Self::Sqlite(s) => {
                use rusqlite::OptionalExtension;
                s.patiently(|conn| {
                    conn.prepare_cached(HEAD_SQL)?
                        .query_row([writer], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .await
            }
            Self::Postgres(c) => Ok(sqlx::query_as(HEAD_SQL)
                .bind(writer)
                .fetch_optional(&mut *c)
                .await?),
        }
    }

    /// Writes `rows` at once (one transaction, or one statement).
    pub(super) async fn insert(&mut self, rows: &[Record]) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.patiently(|conn| {
                    let tx =
                        conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                    {
                        let mut statement = tx.prepare_cached(RECORD_SQL)?;
                        for r in rows {
                            statement.execute(rusqlite::params![
                                r.writer,
                                r.seq,
                                r.at,
                                r.kind,
                                r.user_id,
                                r.agent,
                                r.upstream,
                                r.tool,
                                r.decision,
                                r.risk,
                                r.detail,
                                r.prev_hash,
                                r.hash
                            ])?;
                        }
                    }
                    tx.commit()
                })
                .await
            }
            Self::Postgres(c) => pg_insert(c, rows).await,
        }
    }

    pub(super) async fn checkpoint(
        &mut self,
        writer: &str,
        (seq, hash): (i64, &str),
        at: i64,
        key_id: &str,
        signature: &str,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(CHECKPOINT_SQL, (writer, seq, hash, at, key_id, signature))
                    .await?;
            }
            Self::Postgres(c) => {
                sqlx::query(CHECKPOINT_SQL)
                    .bind(writer)
                    .bind(seq)
                    .bind(hash)
                    .bind(at)
                    .bind(key_id)
                    .bind(signature)
                    .execute(&mut *c)
                    .await?;
            }
        }
        Ok(())
    }

    /// Makes every record written so far durable, and says so (`durable_seq`).
    pub(super) async fn sync(&mut self, writer: &str, seq: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                // Every commit so far is in the WAL file: syncing it (on any handle of
                // that file) makes them all durable. On a blocking thread: the writer
                // goes on meanwhile.
                if s.wal_file.is_none() {
                    s.wal_file = Some(std::sync::Arc::new(std::fs::File::open(&s.wal)?));
                }
                let wal = s
                    .wal_file
                    .clone()
                    .ok_or_else(|| StoreError("no WAL file".into()))?;
                tokio::task::spawn_blocking(move || wal.sync_data())
                    .await
                    .map_err(|e| StoreError(e.to_string()))??;
                s.write(DURABLE_SQL, (seq, writer)).await?;
            }
            Self::Postgres(c) => {
                let statements = [
                    "SET synchronous_commit = on".to_owned(),
                    format!(
                        "UPDATE consent_ledger_writers SET durable_seq = {seq} WHERE writer = '{}'",
                        writer.replace('\'', "")
                    ),
                    "SET synchronous_commit = off".to_owned(),
                ];
                pg_run_all(c, &statements).await?;
            }
        }
        Ok(())
    }

    pub(super) async fn close(&mut self, writer: &str, at: i64) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => {
                s.write(CLOSED_SQL, (at, writer)).await?;
            }
            Self::Postgres(c) => {
                sqlx::query(CLOSED_SQL)
                    .bind(at)
                    .bind(writer)
                    .execute(&mut *c)
                    .await?;
            }
        }
        Ok(())
    }
}

/// Runs `statements` in order; boxed like [`pg_insert`].
fn pg_run_all<'a>(
    conn: &'a mut PgConnection,
    statements: &'a [String],
) -> BoxFuture<'a, Result<(), StoreError>> {
    Box::pin(async move {
        for statement in statements {
            sqlx::query(statement).execute(&mut *conn).await?;
        }
        Ok(())
    })
}

/// One statement for the whole batch. Boxed: the future is `Send` for the connection's
/// lifetime, which a spawned task needs (sqlx's executor impls are per lifetime).
fn pg_insert<'a>(
    conn: &'a mut PgConnection,
    rows: &'a [Record],
) -> BoxFuture<'a, Result<(), StoreError>> {
    Box::pin(async move {
        let mut q = sqlx::QueryBuilder::new(
            "INSERT INTO consent_ledger_records (writer, seq, at, kind, user_id, agent, upstream, \
             tool, decision, risk, detail, prev_hash, hash) ",
        );
        q.push_values(rows, |mut b, r| {
            b.push_bind(&r.writer)
                .push_bind(r.seq)
                .push_bind(r.at)
                .push_bind(&r.kind)
                .push_bind(r.user_id.as_deref())
                .push_bind(r.agent.as_deref())
                .push_bind(r.upstream.as_deref())
                .push_bind(r.tool.as_deref())
                .push_bind(r.decision.as_deref())
                .push_bind(r.risk.as_deref())
                .push_bind(&r.detail)
                .push_bind(&r.prev_hash)
                .push_bind(&r.hash);
        });
        q.build().execute(&mut *conn).await?;
        Ok(())
    })
}
