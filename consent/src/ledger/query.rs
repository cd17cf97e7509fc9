//! Reading the ledger: records by time range and facts, in time order, streamed (for
//! `warrant audit export`), or a page at a time, newest first (for the pages).

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

/// Where a page of records ends: the last record shown, by instant, writer and number
/// (the order of pages). Written in links as `AT.WRITER.SEQ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: i64,
    pub writer: String,
    pub seq: i64,
}

impl Cursor {
    pub fn of(record: &Record) -> Self {
        Self {
            at: record.at,
            writer: record.writer.clone(),
            seq: record.seq,
        }
    }

    /// A cursor from a link; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (at, rest) = text.split_once('.')?;
        let (writer, seq) = rest.rsplit_once('.')?;
        let writer_ok = !writer.is_empty()
            && writer.len() <= 64
            && writer
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        writer_ok.then_some(())?;
        Some(Self {
            at: at.parse().ok()?,
            writer: writer.to_owned(),
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.at, self.writer, self.seq)
    }
}

/// One page of records, newest first, and where the next (older) one starts.
#[derive(Debug, Clone)]
pub struct Page {
    pub records: Vec<Record>,
    /// `Some` when older records match too.
    pub older: Option<Cursor>,
}

/// The newest `limit` records `filter` selects that are older than `before` (all, without
/// it). Keyset paging: a page costs the same however deep it is.
pub async fn page(
    db: &Db,
    filter: &Filter,
    before: Option<&Cursor>,
    limit: usize,
) -> Result<Page, LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Read(e.to_string());
    let rows: Vec<Row> = on_pool!(db, pool => {
        let mut q = sqlx::QueryBuilder::new(format!(
            "SELECT {COLUMNS} FROM consent_ledger_records WHERE 1 = 1"
        ));
        push_filter(&mut q, filter);
        if let Some(c) = before {
            // `at <=` first: a bound the time index can seek to (the rest alone would
            // read every newer record).
            q.push(" AND at <= ")
                .push_bind(c.at)
                .push(" AND (at < ")
                .push_bind(c.at)
                .push(" OR (at = ")
                .push_bind(c.at)
                .push(" AND (writer < ")
                .push_bind(c.writer.clone())
                .push(" OR (writer = ")
                .push_bind(c.writer.clone())
                .push(" AND seq < ")
                .push_bind(c.seq)
                .push("))))");
        }
        q.push(" ORDER BY at DESC, writer DESC, seq DESC LIMIT ")
            .push_bind(i64::try_from(limit + 1).unwrap_or(i64::MAX));
        q.build_query_as::<Row>().fetch_all(pool).await
    })
    .map_err(read)?;
    let mut records: Vec<Record> = rows.into_iter().map(Record::from).collect();
    let older = if records.len() > limit {
        records.truncate(limit);
        records.last().map(Cursor::of)
    } else {
        None
    };
    Ok(Page { records, older })
}

/// The record number `seq` of `writer`, if there is one.
pub async fn one(db: &Db, writer: &str, seq: i64) -> Result<Option<Record>, LedgerError> {
    let row: Option<Row> = on_pool!(db, pool => sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM consent_ledger_records WHERE writer = $1 AND seq = $2"
    ))
    .bind(writer)
    .bind(seq)
    .fetch_optional(pool)
    .await)
    .map_err(|e| LedgerError::Read(e.to_string()))?;
    Ok(row.map(Record::from))
}

/// Who `writer` is, for people (host and process id, or the command).
pub async fn writer_label(db: &Db, writer: &str) -> Result<Option<String>, LedgerError> {
    let label: Option<(String,)> = on_pool!(db, pool => sqlx::query_as(
        "SELECT label FROM consent_ledger_writers WHERE writer = $1",
    )
    .bind(writer)
    .fetch_optional(pool)
    .await)
    .map_err(|e| LedgerError::Read(e.to_string()))?;
    Ok(label.map(|(l,)| l))
}

/// The conditions of `filter`, each ` AND …`.
fn push_filter<DB: sqlx::Database>(q: &mut sqlx::QueryBuilder<'_, DB>, filter: &Filter)
where
    i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
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
            q.push(format_args!(" AND {column} = "))
                .push_bind(value.clone());
        }
    }
}

/// An instant written by a person: RFC 3339 (`2026-12-01T08:00:00Z`), a UTC date
/// (`2026-12-01`) or date and time (`2026-12-01T08:00`, `2026-12-01 08:00`), or an age
/// before `now` (`24h`, `7d`): Unix microseconds.
pub fn instant(text: &str, now: i64) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(age) = humantime::parse_duration(text) {
        return Ok(now.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX)));
    }
    let micros = |t: time::OffsetDateTime| {
        i64::try_from(t.unix_timestamp_nanos() / 1000).unwrap_or(i64::MAX)
    };
    if let Ok(at) =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        return Ok(micros(at));
    }
    let with_t = text.replacen(' ', "T", 1);
    let format = time::format_description::parse_borrowed::<2>;
    for description in [
        "[year]-[month]-[day]T[hour]:[minute]:[second]",
        "[year]-[month]-[day]T[hour]:[minute]",
    ] {
        if let Ok(at) = format(description)
            .map_err(drop)
            .and_then(|f| time::PrimitiveDateTime::parse(&with_t, &f).map_err(drop))
        {
            return Ok(micros(at.assume_utc()));
        }
    }
    if let Ok(day) = format("[year]-[month]-[day]")
        .map_err(drop)
        .and_then(|f| time::Date::parse(text, &f).map_err(drop))
    {
        return Ok(micros(day.midnight().assume_utc()));
    }
    Err(format!(
        "{text:?} is neither a time (2026-12-01, 2026-12-01T08:00, RFC 3339) nor an age (24h)"
    ))
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
        push_filter(&mut q, filter);
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
