//! Registered OAuth clients (`consent_clients`): agents that registered dynamically
//! (RFC 7591), clients known by a client ID metadata document URL, and static ones.
//! A confidential client's secret is returned once at registration and stored only as
//! its SHA-256 hash.

use warrant_idp::db::Db;
use warrant_idp::on_pool;
use warrant_idp::secret::{constant_time_eq, hash_token, random_token};

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
        })
    }
}

const COLUMNS: &str = "client_id, kind, name, redirect_uris, application_type, \
    token_endpoint_auth_method, secret_hash, created_at";

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
}
