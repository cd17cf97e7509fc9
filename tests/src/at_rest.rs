//! What a test looks through for secrets: every log line of the test process, and what
//! the database holds at rest.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::TestGateway;

/// Every log line of this test process, once installed as the tracing writer.
#[derive(Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl CapturedLog {
    /// Captures every event of this test process at debug (each test is a process of
    /// its own under nextest), but the test browser's own cookie jar (a crate Warrant
    /// does not use), which logs the cookies it is given.
    pub fn at_debug() -> Self {
        let log = Self::default();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("debug,cookie_store=off"))
            .with_writer(log.clone())
            .with_ansi(false)
            .try_init();
        log
    }

    /// What was logged so far.
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().map(|b| b.clone()).unwrap_or_default()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLog {
    type Writer = CapturedLog;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What the database holds at rest: every byte of every file of the data directory
/// (the SQLite database, its WAL), or every row of every PostgreSQL table as text.
pub async fn database_bytes(gw: &TestGateway) -> Vec<u8> {
    use sqlx::Row;
    let mut bytes = Vec::new();
    match &gw.running.db {
        warrant_idp::db::Db::Sqlite(_) => {
            for entry in std::fs::read_dir(gw.data_dir.path())
                .expect("the data directory")
                .flatten()
            {
                if entry.path().is_file() {
                    bytes.extend(std::fs::read(entry.path()).unwrap_or_default());
                }
            }
        }
        warrant_idp::db::Db::Postgres(pool) => {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public'",
            )
            .fetch_all(pool)
            .await
            .expect("tables");
            for table in tables {
                let rows = sqlx::query(&format!("SELECT CAST(t AS TEXT) FROM \"{table}\" t"))
                    .fetch_all(pool)
                    .await
                    .expect("rows");
                for row in rows {
                    bytes.extend(row.get::<String, _>(0).into_bytes());
                    bytes.push(b'\n');
                }
            }
        }
    }
    bytes
}

/// Whether `needle` is in `bytes` as it is.
pub fn in_clear(bytes: &[u8], needle: &str) -> bool {
    bytes
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}
