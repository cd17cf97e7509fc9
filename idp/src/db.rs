//! The database handle shared by every crate, and the migrations that shape it.
//!
//! Warrant runs on SQLite (the embedded default: one file under the data directory,
//! created on first start) or PostgreSQL (by URL, for teams and replicas). Both backends
//! run the same migrations history (`migrations/sqlite`, `migrations/postgres`) and the
//! same queries: each store module writes portable SQL with `$n` placeholders, which both
//! drivers accept, and dispatches on [`Db`] once per query.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

/// Runs one expression against whichever pool `db` holds: the same portable SQL on both
/// backends, without a `match` in every query.
///
/// ```ignore
/// let n: i64 = on_pool!(&self.db, pool => sqlx::query_scalar(SQL).fetch_one(pool).await)?;
/// ```
#[macro_export]
macro_rules! on_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Sqlite($pool) => $body,
            $crate::db::Db::Postgres($pool) => $body,
        }
    };
}

/// `url` fit for an error message or a log line: a password becomes `***`; what cannot
/// be read as a URL is cut to its scheme.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            if parsed.set_password(Some("***")).is_ok() {
                parsed.to_string()
            } else {
                format!("{}:…", parsed.scheme())
            }
        }
        Ok(parsed) if parsed.cannot_be_a_base() => format!("{}:…", parsed.scheme()),
        Ok(parsed) => parsed.to_string(),
        Err(_) => match url.split_once(':') {
            Some((scheme, _)) => format!("{scheme}:…"),
            None => "…".to_owned(),
        },
    }
}

/// How a transaction that writes begins on each backend: on SQLite `BEGIN IMMEDIATE`,
/// which takes the write lock first (waiting for it within the busy timeout), so that a
/// transaction that reads before it writes is never refused mid-way because another
/// connection wrote meanwhile (a deferred transaction cannot wait then: SQLite answers
/// "database is locked" at once). On PostgreSQL a plain `BEGIN`.
pub trait WriteBegin: sqlx::Database {
    const BEGIN: &'static str;
}

impl WriteBegin for sqlx::Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
}

impl WriteBegin for sqlx::Postgres {
    const BEGIN: &'static str = "BEGIN";
}

/// Begins a transaction that writes (see [`WriteBegin`]). Every transaction that writes
/// begins this way.
pub async fn begin_write<DB: WriteBegin>(
    pool: &sqlx::Pool<DB>,
) -> Result<sqlx::Transaction<'static, DB>, sqlx::Error> {
    pool.begin_with(DB::BEGIN).await
}

/// What can go wrong opening or migrating the database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot connect to the database: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// Which backend a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A connection pool to one of the two supported backends.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// The file name of the embedded SQLite database inside the data directory.
pub const SQLITE_FILE: &str = "warrant.db";

impl Db {
    /// Opens the database named by `url`, or the embedded SQLite file under `data_dir`
    /// when `url` is `None` (creating the directory and the file on first start).
    pub async fn open(url: Option<&str>, data_dir: &Path) -> Result<Self, DbError> {
        match url {
            None => {
                std::fs::create_dir_all(data_dir).map_err(|source| DbError::DataDir {
                    path: data_dir.display().to_string(),
                    source,
                })?;
                let options = SqliteConnectOptions::new().filename(data_dir.join(SQLITE_FILE));
                Self::open_sqlite(options).await
            }
            Some(url) if url.starts_with("sqlite:") => {
                let options = SqliteConnectOptions::from_str(url).map_err(DbError::Connect)?;
                Self::open_sqlite(options).await
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                let options = PgConnectOptions::from_str(url).map_err(DbError::Connect)?;
                let pool = PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_with(options)
                    .await
                    .map_err(DbError::Connect)?;
                Ok(Self::Postgres(pool))
            }
            Some(other) => Err(DbError::UnsupportedUrl(redacted(other))),
        }
    }

    async fn open_sqlite(options: SqliteConnectOptions) -> Result<Self, DbError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(DbError::Connect)?;
        Ok(Self::Sqlite(pool))
    }

    /// Applies every pending migration of this backend's history.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Self::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Self::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        }
        .map_err(DbError::Migrate)
    }

    /// The backend behind this handle.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// Answers when the database accepts a trivial query (used by `/readyz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Self::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            Self::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
        }
        .map_err(DbError::Query)
    }

    /// Closes every connection (flushes SQLite's WAL on the last one).
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction that reads, then writes after another connection wrote meanwhile:
    /// begun deferred, SQLite refuses its write at once ("database is locked"); begun
    /// for writing, the other connection waits for it instead.
    async fn read_then_write(immediate: bool) -> Result<(), sqlx::Error> {
        let dir = tempfile::tempdir().expect("temp dir");
        let Db::Sqlite(pool) = Db::open(None, dir.path()).await.expect("open") else {
            unreachable!("the embedded database is SQLite");
        };
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&pool)
            .await?;
        sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&pool)
            .await?;
        let mut tx = if immediate {
            begin_write(&pool).await?
        } else {
            pool.begin().await?
        };
        let _: i64 = sqlx::query_scalar("SELECT n FROM t")
            .fetch_one(&mut *tx)
            .await?;
        let other = tokio::spawn({
            let pool = pool.clone();
            async move { sqlx::query("INSERT INTO t VALUES (2)").execute(&pool).await }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let written = sqlx::query("UPDATE t SET n = n + 10")
            .execute(&mut *tx)
            .await;
        let committed = match written {
            Ok(_) => tx.commit().await,
            Err(e) => Err(e),
        };
        other.await.expect("task")?;
        committed
    }

    #[tokio::test]
    async fn a_transaction_that_writes_takes_the_write_lock_first() {
        let deferred = read_then_write(false).await;
        assert!(
            deferred
                .as_ref()
                .is_err_and(|e| e.to_string().contains("locked")),
            "a deferred transaction is refused: {deferred:?}"
        );
        read_then_write(true)
            .await
            .expect("begun for writing, it goes through");
    }

    #[tokio::test]
    async fn embedded_sqlite_is_created_and_migrated() {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("nested/data");
        let db = Db::open(None, &data).await.expect("open");
        db.migrate().await.expect("migrate");
        db.migrate().await.expect("migrations are idempotent");
        assert!(data.join(SQLITE_FILE).exists());
        assert_eq!(db.backend(), Backend::Sqlite);
        db.ping().await.expect("ping");
    }

    #[tokio::test]
    async fn unknown_scheme_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let err = Db::open(Some("mysql://x"), dir.path())
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("unsupported database URL"));
    }

    #[tokio::test]
    async fn a_password_in_a_refused_url_is_not_repeated() {
        let dir = tempfile::tempdir().expect("temp dir");
        for url in [
            "mysql://warrant:hunter2-secret@db.example/warrant",
            "postgres://warrant:hunter2-secret@db.example:notaport/warrant",
            "mysql:warrant:hunter2-secret@db",
        ] {
            let err = Db::open(Some(url), dir.path()).await.expect_err("refused");
            let text = format!("{err} {err:?}");
            assert!(!text.contains("hunter2-secret"), "{url}: {text}");
        }
        let err = Db::open(
            Some("mysql://warrant:hunter2-secret@db.example/warrant"),
            dir.path(),
        )
        .await
        .expect_err("refused");
        assert!(
            err.to_string()
                .contains("mysql://warrant:***@db.example/warrant"),
            "{err}"
        );
    }
}
