//! The proxy's own tables. Owned here: `proxy_upstream_events`, the history of upstream
//! state changes (`ready`, `down` with its reason, …), newest last.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_idp::db::Db;

/// One recorded state change.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UpstreamEvent {
    pub server: String,
    pub at: String,
    pub state: String,
    pub detail: Option<String>,
}

/// The upstream health history.
#[derive(Debug, Clone)]
pub struct UpstreamEvents {
    db: Db,
}

const INSERT: &str =
    "INSERT INTO proxy_upstream_events (id, server, at, state, detail) VALUES ($1, $2, $3, $4, $5)";
const LIST: &str = "SELECT server, at, state, detail FROM proxy_upstream_events \
    WHERE server = $1 ORDER BY id";

impl UpstreamEvents {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Appends a state change.
    pub async fn record(
        &self,
        server: &str,
        state: &str,
        detail: Option<&str>,
    ) -> Result<(), sqlx::Error> {
        // UUID v7 ids sort by time, so the history reads back in order.
        let id = uuid::Uuid::now_v7().to_string();
        let at = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"));
        macro_rules! insert {
            ($pool:expr) => {
                sqlx::query(INSERT)
                    .bind(&id)
                    .bind(server)
                    .bind(&at)
                    .bind(state)
                    .bind(detail)
                    .execute($pool)
                    .await
                    .map(drop)
            };
        }
        match &self.db {
            Db::Sqlite(pool) => insert!(pool),
            Db::Postgres(pool) => insert!(pool),
        }
    }

    /// The history of one upstream, oldest first.
    pub async fn of(&self, server: &str) -> Result<Vec<UpstreamEvent>, sqlx::Error> {
        match &self.db {
            Db::Sqlite(pool) => sqlx::query_as(LIST).bind(server).fetch_all(pool).await,
            Db::Postgres(pool) => sqlx::query_as(LIST).bind(server).fetch_all(pool).await,
        }
    }
}
