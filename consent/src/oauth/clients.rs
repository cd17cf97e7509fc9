//! Registered OAuth clients (`consent_clients`): agents that registered dynamically
//! (RFC 7591), clients known by a client ID metadata document URL, and static ones.
//! A confidential client's secret is returned once at registration and stored only as
//! its SHA-256 hash.

use warrant_idp::db::Db;
use warrant_idp::on_pool;
use warrant_idp::secret::{SecretString, constant_time_eq, hash_token, random_token};

use super::{StoreError, from_json, to_json};

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Dynamic client registration (RFC 7591).
    Dcr,
    /// A client ID metadata document: the client_id is the document's URL.
    Metadata,
    /// Configured by the operator.
    Static,
}

impl ClientKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Dcr => "dcr",
            Self::Metadata => "metadata",
            Self::Static => "static",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "dcr" => Some(Self::Dcr),
            "metadata" => Some(Self::Metadata),
            "static" => Some(Self::Static),
            _ => None,
        }
    }
}

/// A client to register.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub kind: ClientKind,
    /// The client_id to use (a metadata document URL, a static id); `None` draws a
    /// random one.
    pub client_id: Option<String>,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// `native` or `web`.
    pub application_type: String,
    /// `none` (public client), `client_secret_basic` or `client_secret_post`.
    pub token_endpoint_auth_method: String,
}

/// A registered client as stored (without its secret).
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    pub client_id: String,
    pub kind: ClientKind,
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub application_type: String,
    pub token_endpoint_auth_method: String,
    /// Whether the client authenticates with a secret at the token endpoint.
    pub confidential: bool,
    pub created_at: i64,
    /// A metadata document client: when its document was last fetched, and until when
    /// that copy may be used without fetching it again. `None` for other kinds.
    pub document_fetched_at: Option<i64>,
    pub document_fresh_until: Option<i64>,
    secret_hash: Option<String>,
}

impl Client {
    /// Whether `secret` is this client's secret (constant time). A public client has none.
    pub fn secret_matches(&self, secret: &str) -> bool {
        match &self.secret_hash {
            Some(hash) => constant_time_eq(hash, &hash_token(secret)),
            None => false,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ClientRow {
    client_id: String,
    kind: String,
    name: String,
    redirect_uris: String,
    application_type: String,
    token_endpoint_auth_method: String,
    secret_hash: Option<String>,
    created_at: i64,
    document_fetched_at: Option<i64>,
    document_fresh_until: Option<i64>,
}

impl ClientRow {
    fn into_client(self) -> Result<Client, StoreError> {
        Ok(Client {
            kind: ClientKind::parse(&self.kind).unwrap_or(ClientKind::Static),
            redirect_uris: from_json("redirect_uris", &self.redirect_uris)?,
            confidential: self.secret_hash.is_some(),
            client_id: self.client_id,
            name: self.name,
            application_type: self.application_type,
            token_endpoint_auth_method: self.token_endpoint_auth_method,
            secret_hash: self.secret_hash,
            created_at: self.created_at,
            document_fetched_at: self.document_fetched_at,
            document_fresh_until: self.document_fresh_until,
        })
    }
}

const COLUMNS: &str = "client_id, kind, name, redirect_uris, application_type, \
    token_endpoint_auth_method, secret_hash, created_at, document_fetched_at, \
    document_fresh_until";

/// The client store.
#[derive(Debug, Clone)]
pub struct Clients {
    db: Db,
}

impl Clients {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Registers a client. A client whose auth method is not `none` gets a fresh secret,
    /// returned here once and never again.
    pub async fn register(
        &self,
        new: NewClient,
        now: i64,
    ) -> Result<(Client, Option<String>), StoreError> {
        let client_id = new.client_id.clone().unwrap_or_else(random_token);
        let secret = (new.token_endpoint_auth_method != "none").then(random_token);
        let secret_hash = secret.as_deref().map(hash_token);
        let uris = to_json("redirect_uris", &new.redirect_uris)?;
        let sql = "INSERT INTO consent_clients (client_id, kind, name, redirect_uris, \
                   application_type, token_endpoint_auth_method, secret_hash, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(&client_id)
                .bind(new.kind.as_str())
                .bind(&new.name)
                .bind(&uris)
                .bind(&new.application_type)
                .bind(&new.token_endpoint_auth_method)
                .bind(&secret_hash)
                .bind(now)
                .execute(pool)
                .await?;
        });
        tracing::info!(client = %client_id, kind = new.kind.as_str(), "OAuth client registered");
        let client = Client {
            client_id,
            kind: new.kind,
            name: new.name,
            redirect_uris: new.redirect_uris,
            application_type: new.application_type,
            token_endpoint_auth_method: new.token_endpoint_auth_method,
            confidential: secret_hash.is_some(),
            created_at: now,
            document_fetched_at: None,
            document_fresh_until: None,
            secret_hash,
        };
        Ok((client, secret))
    }

    /// The client registered under `client_id`, if any.
    pub async fn get(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM consent_clients WHERE client_id = $1");
        let row: Option<ClientRow> = on_pool!(&self.db, pool => {
            sqlx::query_as(&sql).bind(client_id).fetch_optional(pool).await?
        });
        row.map(ClientRow::into_client).transpose()
    }

    /// Stores what a client ID metadata document says (kind `metadata`, public, keyed
    /// by the document's URL), inserting it or replacing the cached copy, with the
    /// instant it was fetched and the instant until which it may be used as is. A
    /// client of another kind under that id is left alone and refused.
    pub async fn store_document(
        &self,
        doc: &DocumentClient,
        fetched_at: i64,
        fresh_until: i64,
    ) -> Result<Client, StoreError> {
        let uris = to_json("redirect_uris", &doc.redirect_uris)?;
        let sql = "INSERT INTO consent_clients (client_id, kind, name, redirect_uris, \
                   application_type, token_endpoint_auth_method, secret_hash, created_at, \
                   document_fetched_at, document_fresh_until) \
                   VALUES ($1, 'metadata', $2, $3, $4, 'none', NULL, $5, $5, $6) \
                   ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, \
                   redirect_uris = excluded.redirect_uris, \
                   application_type = excluded.application_type, \
                   document_fetched_at = excluded.document_fetched_at, \
                   document_fresh_until = excluded.document_fresh_until \
                   WHERE consent_clients.kind = 'metadata'";
        let affected = on_pool!(&self.db, pool => {
            sqlx::query(sql)
                .bind(&doc.client_id)
                .bind(&doc.name)
                .bind(&uris)
                .bind(&doc.application_type)
                .bind(fetched_at)
                .bind(fresh_until)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if affected == 0 {
            return Err(StoreError::ClientIdTaken(doc.client_id.clone()));
        }
        self.get(&doc.client_id)
            .await?
            .ok_or_else(|| StoreError::ClientIdTaken(doc.client_id.clone()))
    }

    /// Makes the stored static clients (kind `static`) exactly `clients`: inserts the
    /// new ones, updates the changed ones (name, redirect URIs, secret) and deletes the
    /// ones no longer configured, with their grants, codes and refresh tokens, so that a
    /// client removed from the configuration stops working at once. An id already used
    /// by a client of another kind is refused. Called at every start.
    pub async fn upsert_static(
        &self,
        clients: &[StaticClient],
        now: i64,
    ) -> Result<StaticSync, StoreError> {
        let mut sync = StaticSync::default();
        for c in clients {
            let uris = to_json("redirect_uris", &c.redirect_uris)?;
            let secret_hash = c.secret.as_ref().map(|s| hash_token(s.expose()));
            let method = if secret_hash.is_some() {
                "client_secret_basic"
            } else {
                "none"
            };
            let sql = "INSERT INTO consent_clients (client_id, kind, name, redirect_uris, \
                       application_type, token_endpoint_auth_method, secret_hash, created_at) \
                       VALUES ($1, 'static', $2, $3, $4, $5, $6, $7) \
                       ON CONFLICT (client_id) DO UPDATE SET name = excluded.name, \
                       redirect_uris = excluded.redirect_uris, \
                       application_type = excluded.application_type, \
                       token_endpoint_auth_method = excluded.token_endpoint_auth_method, \
                       secret_hash = excluded.secret_hash \
                       WHERE consent_clients.kind = 'static'";
            let affected = on_pool!(&self.db, pool => {
                sqlx::query(sql)
                    .bind(&c.client_id)
                    .bind(&c.name)
                    .bind(&uris)
                    .bind(&c.application_type)
                    .bind(method)
                    .bind(&secret_hash)
                    .bind(now)
                    .execute(pool)
                    .await?
                    .rows_affected()
            });
            if affected == 0 {
                return Err(StoreError::ClientIdTaken(c.client_id.clone()));
            }
            sync.configured += 1;
        }
        let stored: Vec<String> = on_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT client_id FROM consent_clients WHERE kind = 'static'")
                .fetch_all(pool)
                .await?
        });
        for id in stored {
            if clients.iter().any(|c| c.client_id == id) {
                continue;
            }
            on_pool!(&self.db, pool => {
                sqlx::query("DELETE FROM consent_clients WHERE client_id = $1 AND kind = 'static'")
                    .bind(&id)
                    .execute(pool)
                    .await?;
            });
            tracing::warn!(client = %id, "static OAuth client no longer configured: removed with its grants");
            sync.removed.push(id);
        }
        Ok(sync)
    }
}

/// What a client ID metadata document says, checked (see [`super::cimd`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentClient {
    /// The document's URL, exactly as the agent sent it.
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// `native` or `web`.
    pub application_type: String,
}

/// A client configured by the operator (`[oauth.clients.ID]`), checked by the
/// configuration: its id, name and redirect URIs, and its secret when it is a
/// confidential client (stored only as a hash).
#[derive(Debug, Clone)]
pub struct StaticClient {
    pub client_id: String,
    pub name: String,
    pub redirect_uris: Vec<String>,
    /// `native` or `web`.
    pub application_type: String,
    pub secret: Option<SecretString>,
}

/// What [`Clients::upsert_static`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticSync {
    /// How many configured clients are stored.
    pub configured: usize,
    /// The ids of static clients deleted because they are no longer configured.
    pub removed: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::open(None, dir.path()).await.expect("open");
        db.migrate().await.expect("migrate");
        (dir, db)
    }

    fn new_client(method: &str) -> NewClient {
        NewClient {
            kind: ClientKind::Dcr,
            client_id: None,
            name: "Claude Code".into(),
            redirect_uris: vec![
                "http://localhost/callback".into(),
                "cursor://anysphere.cursor-mcp/oauth/callback".into(),
            ],
            application_type: "native".into(),
            token_endpoint_auth_method: method.into(),
        }
    }

    #[tokio::test]
    async fn public_client_round_trips_without_secret() {
        let (_dir, db) = db().await;
        let clients = Clients::new(db);
        let (client, secret) = clients
            .register(new_client("none"), 100)
            .await
            .expect("register");
        assert!(secret.is_none());
        assert!(!client.confidential);
        let stored = clients
            .get(&client.client_id)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(stored, client);
        assert!(!stored.secret_matches(""));
        assert!(clients.get("nope").await.expect("get").is_none());
    }

    #[tokio::test]
    async fn confidential_client_secret_is_hashed_and_checked() {
        let (_dir, db) = db().await;
        let clients = Clients::new(db.clone());
        let (client, secret) = clients
            .register(new_client("client_secret_basic"), 100)
            .await
            .expect("register");
        let secret = secret.expect("a secret");
        let stored = clients
            .get(&client.client_id)
            .await
            .expect("get")
            .expect("found");
        assert!(stored.confidential);
        assert!(stored.secret_matches(&secret));
        assert!(!stored.secret_matches("wrong"));
        let raw: Option<String> = on_pool!(&db, pool => {
            sqlx::query_scalar("SELECT secret_hash FROM consent_clients WHERE client_id = $1")
                .bind(&client.client_id)
                .fetch_one(pool)
                .await
                .expect("row")
        });
        assert_ne!(
            raw.as_deref(),
            Some(secret.as_str()),
            "only the hash is stored"
        );
    }

    fn configured(id: &str, name: &str, secret: Option<&str>) -> StaticClient {
        StaticClient {
            client_id: id.into(),
            name: name.into(),
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            application_type: "native".into(),
            secret: secret.map(|s| SecretString::new(s.into())),
        }
    }

    #[tokio::test]
    async fn static_clients_follow_the_configuration() {
        let (_dir, db) = db().await;
        let clients = Clients::new(db);
        let sync = clients
            .upsert_static(
                &[
                    configured("ci-agent", "CI agent", None),
                    configured("backend", "Backend", Some("s3cret")),
                ],
                100,
            )
            .await
            .expect("upsert");
        assert_eq!(sync.configured, 2);
        assert!(sync.removed.is_empty());
        let ci = clients.get("ci-agent").await.expect("get").expect("stored");
        assert_eq!(ci.kind, ClientKind::Static);
        assert!(!ci.confidential);
        assert_eq!(ci.token_endpoint_auth_method, "none");
        let backend = clients.get("backend").await.expect("get").expect("stored");
        assert!(backend.confidential);
        assert!(backend.secret_matches("s3cret"));

        // Next start: renamed, secret changed, ci-agent gone.
        let sync = clients
            .upsert_static(&[configured("backend", "Backend v2", Some("n3w"))], 200)
            .await
            .expect("upsert");
        assert_eq!(sync.removed, vec!["ci-agent".to_owned()]);
        assert!(clients.get("ci-agent").await.expect("get").is_none());
        let backend = clients.get("backend").await.expect("get").expect("stored");
        assert_eq!(backend.name, "Backend v2");
        assert_eq!(backend.created_at, 100, "an update keeps the creation time");
        assert!(backend.secret_matches("n3w"));
        assert!(!backend.secret_matches("s3cret"));

        // Without a secret it becomes public again.
        clients
            .upsert_static(&[configured("backend", "Backend", None)], 300)
            .await
            .expect("upsert");
        let backend = clients.get("backend").await.expect("get").expect("stored");
        assert!(!backend.confidential);
    }

    #[tokio::test]
    async fn a_static_id_cannot_take_over_a_registered_client() {
        let (_dir, db) = db().await;
        let clients = Clients::new(db);
        let (registered, _) = clients
            .register(new_client("none"), 100)
            .await
            .expect("register");
        let e = clients
            .upsert_static(&[configured(&registered.client_id, "Impostor", None)], 200)
            .await
            .expect_err("refused");
        assert!(matches!(e, StoreError::ClientIdTaken(_)), "{e:?}");
        let kept = clients
            .get(&registered.client_id)
            .await
            .expect("get")
            .expect("kept");
        assert_eq!(kept.name, "Claude Code");
        assert_eq!(kept.kind, ClientKind::Dcr);
    }
}
