//! Reading the ledger: records by time range and facts, in time order, streamed (for
//! `warrant audit export`; the pages will page through the same filters).

use futures::TryStreamExt;
use serde::Serialize;
use warrant_idp::db::Db;
use warrant_idp::on_pool;

use super::LedgerError;
use super::chain::{COLUMNS, Record, Row};

/// Which records: every condition set must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// From this instant on (Unix microseconds, inclusive).
    pub since: Option<i64>,
    /// Before this instant (Unix microseconds, exclusive).
    pub until: Option<i64>,
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub agent: Option<String>,
    pub upstream: Option<String>,
    pub tool: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    pub risk: Option<String>,
}

/// One record as exported: its columns, `detail` as JSON, the instant in RFC 3339 too.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub writer: String,
    pub seq: i64,
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    /// Unix microseconds.
    pub at: i64,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<String>,
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

impl From<Record> for Exported {
    fn from(r: Record) -> Self {
        let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(r.at) * 1000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        Self {
            writer: r.writer,
            seq: r.seq,
            time,
            at: r.at,
            kind: r.kind,
            user_id: r.user_id,
            agent: r.agent,
            upstream: r.upstream,
            tool: r.tool,
            decision: r.decision,
            risk: r.risk,
            detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::Null),
            prev_hash: r.prev_hash,
            hash: r.hash,
        }
    }
}

/// Every record `filter` selects, in time order (then writer and number), handed to
/// `each` as it is read; how many.
pub async fn each(
    db: &Db,
    filter: &Filter,
    mut each: impl FnMut(Record) -> Result<(), LedgerError>,
) -> Result<u64, LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Read(e.to_string());
    let mut count = 0;
    on_pool!(db, pool => {
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {COLUMNS} FROM consent_ledger_records WHERE 1 = 1"
        ));
        if let Some(since) = filter.since {
            q.push(" AND at >= ").push_bind(since);
        }
        if let Some(until) = filter.until {
            q.push(" AND at < ").push_bind(until);
        }
        for (column, value) in [
            ("kind", &filter.kind),
            ("user_id", &filter.user_id),
            ("agent", &filter.agent),
            ("upstream", &filter.upstream),
            ("tool", &filter.tool),
            ("decision", &filter.decision),
            ("risk", &filter.risk),
        ] {
            if let Some(value) = value {
                q.push(format_args!(" AND {column} = ")).push_bind(value.clone());
            }
        }
        q.push(" ORDER BY at, writer, seq");
        let mut rows = q.build_query_as::<Row>().fetch(pool);
        while let Some(row) = rows.try_next().await.map_err(read)? {
            count += 1;
            each(Record::from(row))?;
        }
        Ok::<(), LedgerError>(())
    })?;
    Ok(count)
}
