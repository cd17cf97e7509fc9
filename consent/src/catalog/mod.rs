//! The tool catalog: what each upstream server offers, as last seen by the gateway, and
//! what admins decided about it.
//!
//! Owned tables: `consent_catalog_tools` and `consent_servers`. The proxy reports each
//! upstream's tool list whenever it (re)reads it ([`Catalog::record`]); the catalog keeps
//! when a tool was first and last seen (a tool that disappears keeps its history and its
//! classification), its definition as canonical JSON with its SHA-256
//! ([`definition`]), and:
//!
//! - **risk classes** `low < medium < high < critical`: an admin's review sets a tool's
//!   class; without one, the class its MCP annotations suggest applies only when an admin
//!   trusts that upstream's annotations; otherwise the tool is `critical`;
//! - **rug-pull protection**: the approved definition is the one first seen, or the one
//!   an admin approved since. When an upstream changes a tool (its hash differs from the
//!   approved one) the tool is quarantined — not offered, calls refused — until an admin
//!   approves the new version, or the upstream goes back to the approved one.
//!
//! Prompts and resource templates get the same rug-pull protection ([`entries`],
//! table `consent_catalog_entries`).
//!
//! The proxy never asks the database per call: it reads a [`CatalogView`].

pub mod definition;
pub mod entries;
pub mod view;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_idp::db::Db;
use warrant_idp::on_pool;

pub use definition::{FieldChange, ToolRecord, diff, diff_fields, effective_risk};
pub use entries::{CatalogEntry, EntryKind, EntryRecord, EntryTransition};
pub use view::{CatalogSnapshot, CatalogView, Classified, Decided};

use crate::token::Risk;

/// What can go wrong reading or writing the catalog.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog storage failed: {0}")]
    Storage(#[from] sqlx::Error),
    #[error("cannot encode {what} of tool {server}.{tool}: {source}")]
    Encode {
        what: &'static str,
        server: String,
        tool: String,
        source: serde_json::Error,
    },
}

/// A catalog row as stored.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CatalogTool {
    pub server: String,
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub annotations: Option<String>,
    pub first_seen: String,
    pub last_seen: String,
    /// The current definition, canonical JSON (`None` before it was first hashed).
    pub definition: Option<String>,
    pub definition_hash: Option<String>,
    /// The approved definition: the first seen, or the one an admin approved.
    pub approved_definition: Option<String>,
    pub approved_hash: Option<String>,
    /// Who approved it (`None`: approved by being the first version seen).
    pub approved_by: Option<String>,
    pub approved_at: Option<i64>,
    /// Since when its current definition differs from the approved one.
    pub quarantined_since: Option<i64>,
    /// The class an admin set (`low`, `medium`, `high`, `critical`).
    pub risk_override: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<i64>,
}

impl CatalogTool {
    /// The class its annotations suggest.
    pub fn suggested_risk(&self) -> Risk {
        let annotations = self
            .annotations
            .as_deref()
            .and_then(|a| serde_json::from_str(a).ok());
        definition::suggested_from(annotations.as_ref())
    }

    /// The class an admin set, if any.
    pub fn reviewed_risk(&self) -> Option<Risk> {
        self.risk_override.as_deref().and_then(Risk::parse)
    }

    /// The class calls are decided with, given whether its upstream is trusted.
    pub fn effective_risk(&self, trusted: bool) -> Risk {
        effective_risk(self.reviewed_risk(), trusted, self.suggested_risk())
    }

    /// Field by field, how the current definition differs from the approved one.
    pub fn changes(&self) -> Vec<FieldChange> {
        match (&self.approved_definition, &self.definition) {
            (Some(old), Some(new)) => diff(old, new),
            _ => Vec::new(),
        }
    }
}

/// One upstream as the admin pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSummary {
    pub name: String,
    /// Who trusts its annotations, since when (`None`: not trusted).
    pub trusted: Option<(String, i64)>,
    pub tools: i64,
    pub quarantined: i64,
    pub unreviewed: i64,
    /// How many of its prompts and resource templates are quarantined.
    pub quarantined_entries: i64,
}

/// A tool that entered or left quarantine while an upstream's list was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub tool: String,
    pub quarantined: bool,
}

/// The outcome of approving a definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    Approved,
    /// No such tool in the catalog.
    Unknown,
    /// The definition changed again since the admin looked at it.
    Changed,
}

/// The catalog store over the shared database.
#[derive(Debug, Clone)]
pub struct Catalog {
    db: Db,
}

const COLUMNS: &str = "server, name, title, description, annotations, first_seen, last_seen, \
    definition, definition_hash, approved_definition, approved_hash, approved_by, approved_at, \
    quarantined_since, risk_override, reviewed_by, reviewed_at";

/// A new tool's first definition is its approved one; a known tool keeps its approved
/// definition (or takes this one, when recorded before hashes existed) and is
/// quarantined exactly while its definition differs from the approved one.
const UPSERT: &str = "INSERT INTO consent_catalog_tools \
    (server, name, title, description, annotations, input_schema, output_schema, \
     definition, definition_hash, approved_definition, approved_hash, approved_at, \
     first_seen, last_seen) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $8, $9, $10, $11, $11) \
    ON CONFLICT (server, name) DO UPDATE SET title = excluded.title, \
    description = excluded.description, annotations = excluded.annotations, \
    input_schema = excluded.input_schema, output_schema = excluded.output_schema, \
    definition = excluded.definition, definition_hash = excluded.definition_hash, \
    last_seen = excluded.last_seen, \
    approved_at = CASE WHEN consent_catalog_tools.approved_hash IS NULL \
        THEN excluded.approved_at ELSE consent_catalog_tools.approved_at END, \
    approved_definition = COALESCE(consent_catalog_tools.approved_definition, excluded.definition), \
    approved_hash = COALESCE(consent_catalog_tools.approved_hash, excluded.definition_hash), \
    quarantined_since = CASE \
        WHEN COALESCE(consent_catalog_tools.approved_hash, excluded.definition_hash) = excluded.definition_hash \
        THEN NULL \
        ELSE COALESCE(consent_catalog_tools.quarantined_since, excluded.approved_at) END";

impl Catalog {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records the full tool list an upstream just reported, in one transaction, at
    /// `now` (Unix seconds); returns the tools that entered or left quarantine.
    pub async fn record(
        &self,
        server: &str,
        tools: &[ToolRecord],
        now: i64,
    ) -> Result<Vec<Transition>, CatalogError> {
        let seen = rfc3339(now);
        let mut rows = Vec::with_capacity(tools.len());
        for tool in tools {
            let encode = |what, value: &serde_json::Value| {
                serde_json::to_string(value).map_err(|source| CatalogError::Encode {
                    what,
                    server: server.to_owned(),
                    tool: tool.name.clone(),
                    source,
                })
            };
            let annotations = match &tool.annotations {
                Some(value) => Some(encode("annotations", value)?),
                None => None,
            };
            let output = match &tool.output_schema {
                Some(value) => Some(encode("output schema", value)?),
                None => None,
            };
            let canonical = tool.canonical();
            let hash = definition::hash_of(&canonical);
            rows.push((
                tool,
                annotations,
                encode("input schema", &tool.input_schema)?,
                output,
                canonical,
                hash,
            ));
        }
        // Read first, then a transaction that only writes: on SQLite a transaction that
        // reads and then writes fails at once (SQLITE_BUSY) when another connection
        // committed in between, whereas one that starts by writing waits its turn.
        let before = "SELECT name, approved_hash, quarantined_since FROM consent_catalog_tools \
                      WHERE server = $1";
        let old: Vec<(String, Option<String>, Option<i64>)> = on_pool!(&self.db, pool => {
            sqlx::query_as(before).bind(server).fetch_all(pool).await?
        });
        let old: std::collections::HashMap<String, (Option<String>, Option<i64>)> = old
            .into_iter()
            .map(|(name, approved, since)| (name, (approved, since)))
            .collect();
        let mut transitions = Vec::new();
        on_pool!(&self.db, pool => {
            let mut tx = warrant_idp::db::begin_write(pool).await?;
            for (tool, annotations, input, output, canonical, hash) in &rows {
                sqlx::query(UPSERT)
                    .bind(server)
                    .bind(&tool.name)
                    .bind(&tool.title)
                    .bind(&tool.description)
                    .bind(annotations)
                    .bind(input)
                    .bind(output)
                    .bind(canonical)
                    .bind(hash)
                    .bind(now)
                    .bind(&seen)
                    .execute(&mut *tx)
                    .await?;
                if let Some((approved, since)) = old.get(&tool.name) {
                    let was = since.is_some();
                    let is = approved.as_ref().is_some_and(|a| a != hash);
                    if was != is {
                        transitions.push(Transition { tool: tool.name.clone(), quarantined: is });
                    }
                }
            }
            tx.commit().await?;
        });
        for t in &transitions {
            if t.quarantined {
                tracing::warn!(upstream = %server, tool = %t.tool, "the upstream changed this tool's definition: quarantined until an admin approves the new version");
            } else {
                tracing::info!(upstream = %server, tool = %t.tool, "the tool's definition is the approved one again: out of quarantine");
            }
        }
        Ok(transitions)
    }

    /// Every tool recorded for `server`, by name.
    pub async fn tools_of(&self, server: &str) -> Result<Vec<CatalogTool>, CatalogError> {
        let sql =
            format!("SELECT {COLUMNS} FROM consent_catalog_tools WHERE server = $1 ORDER BY name");
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(server).fetch_all(pool).await?
        }))
    }

    /// One tool.
    pub async fn tool(
        &self,
        server: &str,
        name: &str,
    ) -> Result<Option<CatalogTool>, CatalogError> {
        let sql =
            format!("SELECT {COLUMNS} FROM consent_catalog_tools WHERE server = $1 AND name = $2");
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(server).bind(name).fetch_optional(pool).await?
        }))
    }

    /// Every upstream the catalog knows (tools recorded, or a trust setting), by name.
    pub async fn servers(&self) -> Result<Vec<ServerSummary>, CatalogError> {
        let counts = "SELECT server, COUNT(*), \
            SUM(CASE WHEN quarantined_since IS NOT NULL THEN 1 ELSE 0 END), \
            SUM(CASE WHEN risk_override IS NULL THEN 1 ELSE 0 END) \
            FROM consent_catalog_tools GROUP BY server";
        let trust = "SELECT name, annotations_trusted_by, annotations_trusted_at \
            FROM consent_servers";
        let counted: Vec<(String, i64, i64, i64)> =
            on_pool!(&self.db, pool => sqlx::query_as(counts).fetch_all(pool).await?);
        let trusted: Vec<(String, Option<String>, Option<i64>)> =
            on_pool!(&self.db, pool => sqlx::query_as(trust).fetch_all(pool).await?);
        let mut servers: std::collections::BTreeMap<String, ServerSummary> = counted
            .into_iter()
            .map(|(name, tools, quarantined, unreviewed)| {
                let summary = ServerSummary {
                    name: name.clone(),
                    trusted: None,
                    tools,
                    quarantined,
                    unreviewed,
                    quarantined_entries: 0,
                };
                (name, summary)
            })
            .collect();
        let blank = |name: String| ServerSummary {
            name,
            trusted: None,
            tools: 0,
            quarantined: 0,
            unreviewed: 0,
            quarantined_entries: 0,
        };
        for (name, by, at) in trusted {
            let entry = servers.entry(name.clone()).or_insert_with(|| blank(name));
            entry.trusted = by.zip(at);
        }
        for (name, count) in self.quarantined_entries().await? {
            let entry = servers.entry(name.clone()).or_insert_with(|| blank(name));
            entry.quarantined_entries = count;
        }
        Ok(servers.into_values().collect())
    }

    /// Whether an admin trusts `server`'s annotations: who, since when.
    pub async fn trust_of(&self, server: &str) -> Result<Option<(String, i64)>, CatalogError> {
        let sql = "SELECT annotations_trusted_by, annotations_trusted_at FROM consent_servers \
                   WHERE name = $1";
        let row: Option<(Option<String>, Option<i64>)> = on_pool!(&self.db, pool => {
            sqlx::query_as(sql).bind(server).fetch_optional(pool).await?
        });
        Ok(row.and_then(|(by, at)| by.zip(at)))
    }

    /// Trusts `server`'s annotations (`by` the admin) or, with `None`, stops trusting them.
    pub async fn set_trusted(
        &self,
        server: &str,
        by: Option<&str>,
        now: i64,
    ) -> Result<(), CatalogError> {
        let sql = "INSERT INTO consent_servers \
            (name, annotations_trusted_by, annotations_trusted_at, updated_at) \
            VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
            annotations_trusted_by = excluded.annotations_trusted_by, \
            annotations_trusted_at = excluded.annotations_trusted_at, \
            updated_at = excluded.updated_at";
        let at = by.map(|_| now);
        on_pool!(&self.db, pool => {
            sqlx::query(sql).bind(server).bind(by).bind(at).bind(now).execute(pool).await?;
        });
        Ok(())
    }

    /// Sets the class of `server`'s `tool` as reviewed by `by` (`None`: back to
    /// unreviewed). False when the catalog has no such tool.
    pub async fn review(
        &self,
        server: &str,
        tool: &str,
        risk: Option<Risk>,
        by: &str,
        now: i64,
    ) -> Result<bool, CatalogError> {
        let sql = "UPDATE consent_catalog_tools SET risk_override = $1, reviewed_by = $2, \
                   reviewed_at = $3 WHERE server = $4 AND name = $5";
        let (by, at) = match risk {
            Some(_) => (Some(by), Some(now)),
            None => (None, None),
        };
        let changed = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(risk.map(Risk::name))
                .bind(by)
                .bind(at)
                .bind(server)
                .bind(tool)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed > 0)
    }

    /// Approves the current definition of `server`'s `tool`, the one whose hash is
    /// `hash` (what the admin saw): it becomes the approved one, the tool leaves
    /// quarantine.
    pub async fn approve(
        &self,
        server: &str,
        tool: &str,
        hash: &str,
        by: &str,
        now: i64,
    ) -> Result<Approval, CatalogError> {
        let sql = "UPDATE consent_catalog_tools SET approved_definition = definition, \
                   approved_hash = definition_hash, approved_by = $1, approved_at = $2, \
                   quarantined_since = NULL \
                   WHERE server = $3 AND name = $4 AND definition_hash = $5";
        let changed = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(by)
                .bind(now)
                .bind(server)
                .bind(tool)
                .bind(hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed > 0 {
            tracing::info!(upstream = %server, %tool, admin = %by, "tool definition approved");
            return Ok(Approval::Approved);
        }
        Ok(match self.tool(server, tool).await? {
            Some(_) => Approval::Changed,
            None => Approval::Unknown,
        })
    }

    /// What the proxy decides with (see [`CatalogView`]).
    pub async fn snapshot(&self) -> Result<CatalogSnapshot, CatalogError> {
        let tools = "SELECT server, name, approved_hash, risk_override FROM consent_catalog_tools";
        let trusted = "SELECT name FROM consent_servers WHERE annotations_trusted_at IS NOT NULL";
        let rows: Vec<(String, String, Option<String>, Option<String>)> =
            on_pool!(&self.db, pool => sqlx::query_as(tools).fetch_all(pool).await?);
        let trusted: Vec<String> =
            on_pool!(&self.db, pool => sqlx::query_scalar(trusted).fetch_all(pool).await?);
        let entries = self.approved_entries().await?;
        Ok(CatalogSnapshot::new(
            rows.into_iter().map(|(server, name, approved_hash, risk)| {
                let decided = Decided {
                    approved_hash,
                    reviewed: risk.as_deref().and_then(Risk::parse),
                };
                (server, name, decided)
            }),
            trusted,
        )
        .with_entries(entries))
    }
}

/// Unix seconds as RFC 3339 (the first/last seen columns predate Unix seconds).
fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| String::from("1970-01-01T00:00:00Z"))
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
