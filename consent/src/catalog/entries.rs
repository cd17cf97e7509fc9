//! Prompts and resource templates in the catalog: rug-pull protection for what an
//! upstream offers besides tools (table `consent_catalog_entries`).
//!
//! The same rules as for tools ([`super::Catalog::record`]): each entry is kept with
//! its definition as canonical JSON and its SHA-256; the first definition seen is the
//! approved one; while the current definition differs from the approved one the entry
//! is quarantined, until an admin approves the new version
//! ([`super::Catalog::approve_entry`]) or the upstream goes back to the approved one.
//! Entries have no risk class: prompts and resources are granted with their server.

use std::collections::HashMap;

use serde_json::Value;
use warrant_idp::on_pool;

use super::definition::{FieldChange, canonical_json, diff_fields, hash_of};
use super::{Approval, Catalog, CatalogError};

/// What kind of entry: a prompt or a resource template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryKind {
    Prompt,
    ResourceTemplate,
}

/// The fields of a prompt's definition, in the order pages show them.
pub const PROMPT_FIELDS: [&str; 4] = ["name", "title", "description", "arguments"];

/// The fields of a resource template's definition, in the order pages show them.
pub const TEMPLATE_FIELDS: [&str; 6] = [
    "uriTemplate",
    "name",
    "title",
    "description",
    "mimeType",
    "annotations",
];

impl EntryKind {
    /// As stored (`prompt`, `resource_template`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::ResourceTemplate => "resource_template",
        }
    }

    /// From its stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "prompt" => Some(Self::Prompt),
            "resource_template" => Some(Self::ResourceTemplate),
            _ => None,
        }
    }

    /// For people: `prompt`, `resource template`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Prompt => "prompt",
            Self::ResourceTemplate => "resource template",
        }
    }

    /// The fields of its definition (see [`diff_fields`]).
    pub fn fields(self) -> &'static [&'static str] {
        match self {
            Self::Prompt => &PROMPT_FIELDS,
            Self::ResourceTemplate => &TEMPLATE_FIELDS,
        }
    }
}

/// One prompt or resource template as an upstream describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct EntryRecord {
    pub kind: EntryKind,
    /// Its key in the catalog: the prompt's name, or the template's `uriTemplate`.
    pub name: String,
    /// Every field of its kind's definition, `null` when absent.
    pub definition: Value,
}

fn text(value: Option<String>) -> Value {
    value.map_or(Value::Null, Value::String)
}

impl EntryRecord {
    /// A prompt: its name, title, description and arguments (as JSON).
    pub fn prompt(
        name: String,
        title: Option<String>,
        description: Option<String>,
        arguments: Option<Value>,
    ) -> Self {
        let definition = serde_json::json!({
            "name": name,
            "title": text(title),
            "description": text(description),
            "arguments": arguments.unwrap_or(Value::Null),
        });
        Self {
            kind: EntryKind::Prompt,
            name,
            definition,
        }
    }

    /// A resource template: its `uriTemplate`, name, title, description, MIME type and
    /// annotations (as JSON).
    pub fn template(
        uri_template: String,
        name: String,
        title: Option<String>,
        description: Option<String>,
        mime_type: Option<String>,
        annotations: Option<Value>,
    ) -> Self {
        let definition = serde_json::json!({
            "uriTemplate": uri_template,
            "name": name,
            "title": text(title),
            "description": text(description),
            "mimeType": text(mime_type),
            "annotations": annotations.unwrap_or(Value::Null),
        });
        Self {
            kind: EntryKind::ResourceTemplate,
            name: uri_template,
            definition,
        }
    }

    /// The definition as canonical JSON (see [`canonical_json`]).
    pub fn canonical(&self) -> String {
        canonical_json(&self.definition)
    }

    /// SHA-256 of the canonical definition, lower-case hex.
    pub fn definition_hash(&self) -> String {
        hash_of(&self.canonical())
    }
}

/// A prompt or resource template as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CatalogEntry {
    pub server: String,
    /// `prompt` or `resource_template` (see [`Self::kind`]).
    #[sqlx(rename = "kind")]
    pub kind_name: String,
    pub name: String,
    /// The current definition, canonical JSON.
    pub definition: String,
    pub definition_hash: String,
    /// The approved definition: the first seen, or the one an admin approved.
    pub approved_definition: String,
    pub approved_hash: String,
    /// Who approved it (`None`: approved by being the first version seen).
    pub approved_by: Option<String>,
    pub approved_at: i64,
    /// Since when its current definition differs from the approved one.
    pub quarantined_since: Option<i64>,
    pub first_seen: i64,
    pub last_seen: i64,
}

impl CatalogEntry {
    /// Its kind (a row of an unknown kind reads as a prompt; the table's CHECK
    /// constraint allows none).
    pub fn kind(&self) -> EntryKind {
        EntryKind::parse(&self.kind_name).unwrap_or(EntryKind::Prompt)
    }

    /// A field of its current definition, as text (`None` when absent or not text).
    pub fn field(&self, field: &str) -> Option<String> {
        serde_json::from_str::<Value>(&self.definition)
            .ok()?
            .get(field)?
            .as_str()
            .map(str::to_owned)
    }

    /// Field by field, how the current definition differs from the approved one.
    pub fn changes(&self) -> Vec<FieldChange> {
        diff_fields(
            self.kind().fields(),
            &self.approved_definition,
            &self.definition,
        )
    }
}

/// An entry that entered or left quarantine while an upstream's list was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryTransition {
    pub kind: EntryKind,
    pub name: String,
    pub quarantined: bool,
}

const COLUMNS: &str = "server, kind, name, definition, definition_hash, approved_definition, \
    approved_hash, approved_by, approved_at, quarantined_since, first_seen, last_seen";

/// A new entry's first definition is its approved one; a known entry keeps its
/// approved definition and is quarantined exactly while its definition differs from it
/// (since the first time it was seen so).
const UPSERT: &str = "INSERT INTO consent_catalog_entries \
    (server, kind, name, definition, definition_hash, approved_definition, approved_hash, \
     approved_at, first_seen, last_seen) \
    VALUES ($1, $2, $3, $4, $5, $4, $5, $6, $6, $6) \
    ON CONFLICT (server, kind, name) DO UPDATE SET definition = excluded.definition, \
    definition_hash = excluded.definition_hash, last_seen = excluded.last_seen, \
    quarantined_since = CASE \
        WHEN consent_catalog_entries.approved_hash = excluded.definition_hash THEN NULL \
        ELSE COALESCE(consent_catalog_entries.quarantined_since, excluded.last_seen) END";

impl Catalog {
    /// Records the full list of prompts or resource templates (`kind`; every entry of
    /// `entries` should be of it) an upstream just reported, in one transaction, at
    /// `now` (Unix seconds); returns the entries that entered or left quarantine.
    pub async fn record_entries(
        &self,
        server: &str,
        kind: EntryKind,
        entries: &[EntryRecord],
        now: i64,
    ) -> Result<Vec<EntryTransition>, CatalogError> {
        let rows: Vec<(&EntryRecord, String, String)> = entries
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| {
                let canonical = e.canonical();
                let hash = hash_of(&canonical);
                (e, canonical, hash)
            })
            .collect();
        // Read first, then a transaction that only writes (see `Catalog::record`).
        let before = "SELECT name, approved_hash, quarantined_since \
                      FROM consent_catalog_entries WHERE server = $1 AND kind = $2";
        let old: Vec<(String, String, Option<i64>)> = on_pool!(&self.db, pool => {
            sqlx::query_as(before).bind(server).bind(kind.as_str()).fetch_all(pool).await?
        });
        let old: HashMap<String, (String, Option<i64>)> = old
            .into_iter()
            .map(|(name, approved, since)| (name, (approved, since)))
            .collect();
        let mut transitions = Vec::new();
        on_pool!(&self.db, pool => {
            let mut tx = warrant_idp::db::begin_write(pool).await?;
            for (entry, canonical, hash) in &rows {
                sqlx::query(UPSERT)
                    .bind(server)
                    .bind(kind.as_str())
                    .bind(&entry.name)
                    .bind(canonical)
                    .bind(hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if let Some((approved, since)) = old.get(&entry.name) {
                    let (was, is) = (since.is_some(), approved != hash);
                    if was != is {
                        transitions.push(EntryTransition {
                            kind,
                            name: entry.name.clone(),
                            quarantined: is,
                        });
                    }
                }
            }
            tx.commit().await?;
        });
        for t in &transitions {
            let what = kind.label();
            if t.quarantined {
                tracing::warn!(upstream = %server, kind = what, name = %t.name, "the upstream changed this {what}'s definition: quarantined until an admin approves the new version");
            } else {
                tracing::info!(upstream = %server, kind = what, name = %t.name, "the {what}'s definition is the approved one again: out of quarantine");
            }
        }
        Ok(transitions)
    }

    /// Every prompt and resource template recorded for `server`, by kind and name.
    pub async fn entries_of(&self, server: &str) -> Result<Vec<CatalogEntry>, CatalogError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM consent_catalog_entries WHERE server = $1 \
             ORDER BY kind, name"
        );
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(server).fetch_all(pool).await?
        }))
    }

    /// One prompt or resource template.
    pub async fn entry(
        &self,
        server: &str,
        kind: EntryKind,
        name: &str,
    ) -> Result<Option<CatalogEntry>, CatalogError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM consent_catalog_entries \
             WHERE server = $1 AND kind = $2 AND name = $3"
        );
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_as(&sql)
                .bind(server)
                .bind(kind.as_str())
                .bind(name)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Approves the current definition of an entry, the one whose hash is `hash` (what
    /// the admin saw): it becomes the approved one, the entry leaves quarantine.
    pub async fn approve_entry(
        &self,
        server: &str,
        kind: EntryKind,
        name: &str,
        hash: &str,
        by: &str,
        now: i64,
    ) -> Result<Approval, CatalogError> {
        let sql = "UPDATE consent_catalog_entries SET approved_definition = definition, \
                   approved_hash = definition_hash, approved_by = $1, approved_at = $2, \
                   quarantined_since = NULL \
                   WHERE server = $3 AND kind = $4 AND name = $5 AND definition_hash = $6";
        let changed = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(by)
                .bind(now)
                .bind(server)
                .bind(kind.as_str())
                .bind(name)
                .bind(hash)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if changed > 0 {
            tracing::info!(upstream = %server, kind = kind.label(), %name, admin = %by, "definition approved");
            return Ok(Approval::Approved);
        }
        Ok(match self.entry(server, kind, name).await? {
            Some(_) => Approval::Changed,
            None => Approval::Unknown,
        })
    }

    /// The approved hash of every entry: `(server, kind, name, approved hash)`.
    pub(super) async fn approved_entries(
        &self,
    ) -> Result<Vec<(String, EntryKind, String, String)>, CatalogError> {
        let sql = "SELECT server, kind, name, approved_hash FROM consent_catalog_entries";
        let rows: Vec<(String, String, String, String)> =
            on_pool!(&self.db, pool => sqlx::query_as(sql).fetch_all(pool).await?);
        Ok(rows
            .into_iter()
            .filter_map(|(server, kind, name, hash)| {
                Some((server, EntryKind::parse(&kind)?, name, hash))
            })
            .collect())
    }

    /// Per server, how many of its prompts and resource templates are quarantined.
    pub(super) async fn quarantined_entries(&self) -> Result<Vec<(String, i64)>, CatalogError> {
        let sql = "SELECT server, COUNT(*) FROM consent_catalog_entries \
                   WHERE quarantined_since IS NOT NULL GROUP BY server";
        Ok(on_pool!(&self.db, pool => sqlx::query_as(sql).fetch_all(pool).await?))
    }
}
