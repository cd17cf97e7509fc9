//! The composition: builds the program from a checked configuration (database, tool
//! catalog, gateway and its upstreams, HTTP routes) and runs it until shutdown. `warrant
//! serve` and the end-to-end tests both start Warrant through [`start`].

use std::future::IntoFuture;
use std::net::SocketAddr;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use http::StatusCode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warrant_consent::catalog::{Catalog, ToolRecord};
use warrant_idp::db::{Db, DbError};

use crate::config::Config;
use crate::mcp::{Gateway, Observer};
use crate::store::UpstreamEvents;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to listen on {0}: Warrant has no sign-in yet, so it serves loopback addresses \
         only (127.0.0.1 or ::1)"
    )]
    NotLoopback(SocketAddr),
    #[error("{0}")]
    Database(#[from] DbError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("names collide across upstreams (give them distinct prefixes): {}", .0.join("; "))]
    Collisions(Vec<String>),
}

/// A started gateway.
pub struct Running {
    /// The address it listens on (the real port when the config asked for port 0).
    pub local_addr: SocketAddr,
    pub gateway: Gateway,
    pub db: Db,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The URL of the MCP endpoint.
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.local_addr)
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token is cancelled and the server has drained.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        self.db.close().await;
        result
    }

    /// Stops the gateway and waits for it.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

#[derive(Clone)]
struct AppState {
    db: Db,
    gateway: Gateway,
}

/// Opens storage, starts the upstreams and the HTTP server.
pub async fn start(config: Config) -> Result<Running, StartError> {
    // rustls needs one crypto provider for every HTTP client; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listen = config.server.listen;
    if !listen.ip().is_loopback() {
        return Err(StartError::NotLoopback(listen));
    }
    let url = config
        .server
        .database_url
        .as_ref()
        .map(|s| s.expose().to_owned());
    let db = Db::open(url.as_deref(), &config.server.data_dir).await?;
    db.migrate().await?;

    let shutdown = CancellationToken::new();
    let gateway = Gateway::new(&config, shutdown.child_token());
    gateway.start(Recorder {
        catalog: Catalog::new(db.clone()),
        events: UpstreamEvents::new(db.clone()),
    });
    let collisions = gateway.settle().await;
    if !collisions.is_empty() {
        shutdown.cancel();
        return Err(StartError::Collisions(collisions));
    }

    let state = AppState {
        db: db.clone(),
        gateway: gateway.clone(),
    };
    let router = crate::mcp::http::router(gateway.clone(), &config, shutdown.child_token())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz).with_state(state));

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: listen,
        source,
    })?;
    let stop = shutdown.clone();
    let grace = config.server.shutdown_grace;
    let server = tokio::spawn(async move {
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let serve = axum::serve(listener, router)
            .with_graceful_shutdown(stop.clone().cancelled_owned())
            .into_future();
        tokio::pin!(serve);
        tokio::select! {
            r = &mut serve => r,
            () = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!("connections still open after the shutdown grace period; closing them");
                Ok(())
            }
        }
    });
    Ok(Running {
        local_addr,
        gateway,
        db,
        shutdown,
        server,
    })
}

/// Writes what the gateway learns about upstreams to their tables, off the request path.
struct Recorder {
    catalog: Catalog,
    events: UpstreamEvents,
}

impl Observer for Recorder {
    fn tools(&self, upstream: &str, tools: Vec<ToolRecord>) {
        let catalog = self.catalog.clone();
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            if let Err(e) = catalog.record(&upstream, &tools).await {
                tracing::error!(%upstream, error = %e, "cannot record the tool catalog");
            }
        });
    }

    fn health(&self, upstream: &str, state: &'static str, reason: Option<String>) {
        let events = self.events.clone();
        let upstream = upstream.to_owned();
        tokio::spawn(async move {
            if let Err(e) = events.record(&upstream, state, reason.as_deref()).await {
                tracing::error!(%upstream, error = %e, "cannot record an upstream state change");
            }
        });
    }
}

/// Readiness: the database answers. Upstreams are reported, not required: a down
/// upstream withdraws its tools, it does not stop the gateway.
async fn readyz(State(state): State<AppState>) -> Response {
    let database = match state.db.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::error!(error = %e, "readiness: database unavailable");
            "unavailable".to_owned()
        }
    };
    let ready = database == "ok";
    let body = serde_json::json!({
        "ready": ready,
        "database": database,
        "upstreams": state.gateway.status(),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
