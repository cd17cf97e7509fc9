//! The tool catalog: what each upstream server offers, as last seen by the gateway.
//!
//! Owned table: `consent_catalog_tools`. The proxy reports each upstream's tool list
//! whenever it (re)reads it; the catalog keeps when a tool was first and last seen, so a
//! tool that disappears keeps its history (and, later, its risk classification).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_idp::db::Db;

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

/// One tool as an upstream describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRecord {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub annotations: Option<serde_json::Value>,
    pub input_schema: serde_json::Value,
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
}

/// The catalog store over the shared database.
#[derive(Debug, Clone)]
pub struct Catalog {
    db: Db,
}

const UPSERT: &str = "INSERT INTO consent_catalog_tools \
    (server, name, title, description, annotations, input_schema, first_seen, last_seen) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
    ON CONFLICT (server, name) DO UPDATE SET title = excluded.title, \
    description = excluded.description, annotations = excluded.annotations, \
    input_schema = excluded.input_schema, last_seen = excluded.last_seen";

const LIST: &str = "SELECT server, name, title, description, annotations, first_seen, last_seen \
    FROM consent_catalog_tools WHERE server = $1 ORDER BY name";

impl Catalog {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Records the full tool list an upstream just reported, in one transaction.
    pub async fn record(&self, server: &str, tools: &[ToolRecord]) -> Result<(), CatalogError> {
        let now = now_rfc3339();
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
            rows.push((
                tool,
                annotations,
                encode("input schema", &tool.input_schema)?,
            ));
        }
        macro_rules! upsert_all {
            ($pool:expr) => {{
                let mut tx = $pool.begin().await?;
                for (tool, annotations, schema) in &rows {
                    sqlx::query(UPSERT)
                        .bind(server)
                        .bind(&tool.name)
                        .bind(&tool.title)
                        .bind(&tool.description)
                        .bind(annotations)
                        .bind(schema)
                        .bind(&now)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
            }};
        }
        match &self.db {
            Db::Sqlite(pool) => upsert_all!(pool),
            Db::Postgres(pool) => upsert_all!(pool),
        }
        Ok(())
    }

    /// Every tool recorded for `server`, by name.
    pub async fn tools_of(&self, server: &str) -> Result<Vec<CatalogTool>, CatalogError> {
        let rows = match &self.db {
            Db::Sqlite(pool) => sqlx::query_as(LIST).bind(server).fetch_all(pool).await?,
            Db::Postgres(pool) => sqlx::query_as(LIST).bind(server).fetch_all(pool).await?,
        };
        Ok(rows)
    }
}

fn now_rfc3339() -> String {
    // Formatting a valid UTC timestamp as RFC 3339 cannot fail; keep a fallback anyway.
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, description: &str) -> ToolRecord {
        ToolRecord {
            name: name.into(),
            title: None,
            description: Some(description.into()),
            annotations: Some(serde_json::json!({"readOnlyHint": true})),
            input_schema: serde_json::json!({"type": "object"}),
        }
    }

    #[tokio::test]
    async fn records_and_updates_tools() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        db.migrate().await.expect("migrate");
        let catalog = Catalog::new(db);
        catalog
            .record("notes", &[tool("read", "v1"), tool("write", "w")])
            .await
            .expect("record");
        catalog
            .record("notes", &[tool("read", "v2")])
            .await
            .expect("record again");
        let rows = catalog.tools_of("notes").await.expect("list");
        assert_eq!(rows.len(), 2, "a tool that disappears keeps its history");
        assert_eq!(rows[0].name, "read");
        assert_eq!(rows[0].description.as_deref(), Some("v2"));
        assert_eq!(
            rows[0].annotations.as_deref(),
            Some(r#"{"readOnlyHint":true}"#)
        );
        assert!(catalog.tools_of("other").await.expect("list").is_empty());
    }
}
