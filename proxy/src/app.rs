//! The composition: builds the program from a checked configuration (database, tool
//! catalog, gateway and its upstreams, HTTP routes) and runs it until shutdown. `warrant
//! serve` and the end-to-end tests both start Warrant through [`start`].

use std::collections::BTreeSet;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use warrant_consent::ledger::sink::{Options as SinkOptions, Sink};
use warrant_consent::ledger::{CheckpointKey, Ledger, Options as LedgerOptions};

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use http::StatusCode;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warrant_consent::approvals::{Approval, Approvals};
use warrant_consent::catalog::{
    Catalog, CatalogError, CatalogView, EntryKind, EntryRecord, ToolRecord,
};
use warrant_consent::ceilings::{CeilingError, CeilingView, Ceilings};
use warrant_consent::oauth::{OAuthState, RevokedSet, StoreError};
use warrant_consent::token::{KeyRing, KeySettings, TokenError, Verifier, VerifierSettings};
use warrant_idp::clock::Clock;
use warrant_idp::db::{Db, DbError};
use warrant_idp::{Idp, IdpConfig, IdpError, SystemClock};

use crate::config::{Config, McpAuthorization, MetricsConfig};
use crate::store::UpstreamEvents;
use crate::upstream_keys;
use warrant_plane::metrics::{Metrics, UpstreamNow};
use warrant_plane::periodic::Periodic;
use warrant_plane::server::stage::credentials::KeySource;
use warrant_plane::{ApprovalDesk, Audience, Gateway, McpAuth, Notify, Observer};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "refusing to listen on {0} with mcp.authorization = \"none\": without tokens, /mcp is \
         served on loopback addresses only (127.0.0.1 or ::1)"
    )]
    NotLoopback(SocketAddr),
    #[error("{0}")]
    Database(#[from] DbError),
    #[error("cannot store the agents of oauth.clients: {0}")]
    OAuthClients(#[source] warrant_consent::oauth::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("names collide across upstreams (give them distinct prefixes): {}", .0.join("; "))]
    Collisions(Vec<String>),
    #[error("cannot start sign-in: {0}")]
    Identity(#[from] IdpError),
    #[error("{0}")]
    SecretKey(#[from] crate::secret_key::SecretKeyError),
    #[error("cannot load the token signing keys: {0}")]
    TokenKeys(#[from] TokenError),
    #[error("cannot load the revocation list: {0}")]
    Revocations(#[from] StoreError),
    #[error("cannot load the tool catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("cannot load the trust ceilings: {0}")]
    Ceilings(#[from] CeilingError),
    #[error("cannot open the credential vault: {0}")]
    Vault(#[from] warrant_consent::vault::VaultError),
    #[error("cannot set up people's OAuth connections: {0}")]
    PersonOAuth(#[from] warrant_consent::person_oauth::PersonOAuthError),
    #[error(transparent)]
    VaultValue(#[from] crate::upstream_keys::VaultValueError),
    #[error("cannot open the audit ledger: {0}")]
    Ledger(#[from] warrant_consent::ledger::LedgerError),
}

/// A started gateway.
pub struct Running {
    /// The address it listens on (the real port when the config asked for port 0).
    pub local_addr: SocketAddr,
    /// The URL people and links use (`server.public_url`, or `http://localhost:PORT`).
    pub public_url: url::Url,
    pub gateway: Gateway,
    pub db: Db,
    pub idp: Idp,
    /// The root keys that sign access tokens (the first is created on first start).
    pub keys: KeyRing,
    /// The credential vault (its keys checked at start).
    pub vault: warrant_consent::vault::Vault,
    /// Verifies access tokens against `keys`, with its cache.
    pub verifier: Verifier,
    /// Every user's live trust ceiling (changes made through it apply at once).
    pub ceilings: CeilingView,
    /// The tool catalog's decisions as the gateway uses them (changes made through it
    /// apply at once).
    pub catalog: CatalogView,
    /// The one-time link that creates the first admin, when none exists yet.
    pub setup_link: Option<String>,
    /// This process's writer of the audit ledger (`None` with `audit.enabled = false`).
    pub ledger: Option<Ledger>,
    /// Where the ledger is streamed to (`[[audit.sinks]]`).
    sinks: Vec<Sink>,
    shutdown: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// The URL of the MCP endpoint on the listener's own address.
    pub fn mcp_url(&self) -> String {
        format!("http://{}/mcp", self.local_addr)
    }

    /// The URL clients are given: the public URL's `/mcp`, the resource their tokens are
    /// for (`http://localhost:PORT/mcp` unless `server.public_url` says otherwise).
    pub fn client_url(&self) -> String {
        format!(
            "{}/mcp",
            warrant_consent::oauth::http::issuer_of(&self.public_url)
        )
    }

    /// A token that stops the gateway when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs until the shutdown token is cancelled and the server has drained; then the
    /// ledger writes what it holds, signs its head and syncs, and the sinks deliver
    /// what is left.
    pub async fn wait(self) -> std::io::Result<()> {
        let result = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        if let Some(ledger) = &self.ledger {
            ledger.close(LEDGER_CLOSE_BOUND).await;
        }
        for sink in self.sinks {
            sink.finish(LEDGER_CLOSE_BOUND).await;
        }
        self.db.close().await;
        result
    }

    /// Stops the gateway and waits for it.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}

/// How long closing the ledger may take at shutdown.
const LEDGER_CLOSE_BOUND: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
struct AppState {
    db: Db,
    gateway: Gateway,
    /// Who may scrape `/metrics`.
    metrics: Arc<MetricsConfig>,
}

/// Opens storage, starts the upstreams and the HTTP server.
pub async fn start(config: Config) -> Result<Running, StartError> {
    // rustls needs one crypto provider for every HTTP client; a second install is a no-op.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let listen = config.server.listen;
    let authorization = config.mcp.authorization;
    // The configuration refuses this already; a second guard costs nothing.
    if authorization == McpAuthorization::None && !listen.ip().is_loopback() {
        return Err(StartError::NotLoopback(listen));
    }
    let url = config
        .server
        .database_url
        .as_ref()
        .map(|s| s.expose().to_owned());
    let db = Db::open(url.as_deref(), &config.server.data_dir).await?;
    db.migrate().await?;
    // The operator's agents (`[oauth.clients]`), stored as configured; those no longer
    // in the file are deleted, so they stop working now.
    warrant_consent::oauth::Clients::new(db.clone())
        .upsert_static(
            &config.oauth.clients,
            warrant_idp::clock::Clock::unix(&SystemClock),
        )
        .await
        .map_err(StartError::OAuthClients)?;
    let secret_key = crate::secret_key::load_or_create(&config)?;
    let keys = KeyRing::open(
        db.clone(),
        *secret_key,
        KeySettings::default(),
        Arc::new(SystemClock),
    )
    .await?;
    // A vault whose records this configuration cannot decrypt stops the start here.
    let vault = warrant_consent::vault::Vault::open(
        db.clone(),
        crate::vault_keys::of(&config, &secret_key),
        Arc::new(SystemClock),
    )
    .await?;
    // Every call is recorded before it goes upstream: a ledger that cannot take its first
    // record stops the start.
    let ledger = if config.audit.enabled {
        let options = LedgerOptions {
            sync_interval: config.audit.sync_interval,
            checkpoint_records: config.audit.checkpoint_records,
            checkpoint_interval: config.audit.checkpoint_interval,
            ..LedgerOptions::default()
        };
        let key = CheckpointKey::derived_from_secret_key(&secret_key);
        Some(Ledger::open(&db, key, options).await?)
    } else {
        None
    };
    drop(secret_key);
    let verifier = Verifier::new(keys.clone(), VerifierSettings::default());

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let revoked = RevokedSet::load(db.clone(), clock.unix()).await?;
    let ceilings = CeilingView::load(
        Ceilings::new(db.clone()),
        warrant_idp::users::Users::new(db.clone(), clock.clone()),
        config.policy.default_ceiling,
    )
    .await?;

    // Bound before the upstreams start: the public URL (the tokens' audience) may
    // depend on the port the system picked.
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
    let public_url = public_url_of(&config, local_addr);
    let issuer = warrant_consent::oauth::http::issuer_of(&public_url);

    let shutdown = CancellationToken::new();
    // Call budgets: counted in memory, shared through the database every second.
    let budgets = warrant_consent::budgets::Budgets::new(db.clone());
    warrant_plane::enforce::budget::spawn_flusher(&budgets, clock.clone(), shutdown.child_token());
    let auth = (authorization == McpAuthorization::OAuth).then(|| {
        Arc::new(
            McpAuth::new(verifier.clone(), revoked.clone(), clock.clone(), &issuer)
                .with_ceilings(ceilings.clone())
                .with_budgets(budgets),
        )
    });
    let catalog = CatalogView::load(Catalog::new(db.clone())).await?;
    for upstream in &config.upstreams {
        if let Some(trusted) = upstream.trust_annotations {
            catalog
                .set_trusted(
                    &upstream.name,
                    trusted.then_some("configuration"),
                    clock.unix(),
                )
                .await?;
        }
    }
    let upstreams_config = upstream_keys::with_vault_values(&config, &vault).await?;
    let gateway = Gateway::new(
        &upstreams_config,
        auth,
        catalog.clone(),
        shutdown.child_token(),
    );
    let metrics = gateway.metrics().clone();
    spawn_revocation_refresher(&revoked, clock.clone(), &metrics, shutdown.child_token());
    spawn_key_reloader(&keys, &metrics, shutdown.child_token());
    spawn_catalog_refresher(&catalog, &metrics, shutdown.child_token());
    let idp = Idp::new(
        db.clone(),
        idp_config(&config, public_url.clone()),
        Arc::new(SystemClock),
    )?;
    let person_oauth = upstream_keys::person_oauth(&config, &vault, clock.clone(), &public_url)?;
    let person_sso = upstream_keys::person_sso(&config, &vault, clock.clone(), &idp.oidc);
    gateway.set_key_source(KeySource {
        vault: vault.clone(),
        oauth: person_oauth.clone(),
        sso: person_sso.clone(),
        public_url: public_url.clone(),
    });
    let mut sinks = Vec::new();
    if let Some(ledger) = &ledger {
        gateway.set_ledger(ledger.clone());
        if let Some(retention) = config.audit.retention {
            spawn_ledger_retention(&db, ledger, retention, shutdown.child_token());
        }
        for sink in &config.audit.sinks {
            let options = SinkOptions::new(&sink.name, sink.target.clone());
            let started = Sink::start(&db, options, ledger.writer())?;
            gateway
                .metrics()
                .add_sink(started.name(), started.state().clone());
            sinks.push(started);
        }
    }
    gateway.follow_catalog();
    gateway.follow_revocations(revoked.clone());
    spawn_ceiling_refresher(&ceilings, &gateway, shutdown.child_token());
    gateway.start(Recorder {
        catalog: spawn_catalog_recorder(&catalog, clock.clone(), ledger.clone()),
        events: UpstreamEvents::new(db.clone()),
    });
    upstream_keys::connect_one_key_each(&gateway, &upstreams_config, &vault).await;
    let collisions = gateway.settle().await;
    if !collisions.is_empty() {
        shutdown.cancel();
        return Err(StartError::Collisions(collisions));
    }

    spawn_session_sweeper(&idp, shutdown.child_token());
    let approvals = Approvals::new(db.clone(), clock.clone(), config.policy.approval_timeout);
    gateway.set_approvals(
        ApprovalDesk::new(
            approvals.clone(),
            warrant_consent::oauth::Clients::new(db.clone()),
            public_url.as_str(),
        )
        .with_notify(ApprovalMail { idp: idp.clone() }),
    );
    let setup_link = idp.setup.ensure_link(&idp.users).await?;

    let state = AppState {
        db: db.clone(),
        gateway: gateway.clone(),
        metrics: Arc::new(config.metrics.clone()),
    };
    let router =
        warrant_plane::server::edge::router(gateway.clone(), &config, shutdown.child_token())
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz).with_state(state.clone()));
    let router = if config.metrics.enabled {
        router.route("/metrics", get(scrape).with_state(state))
    } else {
        router
    };
    let router = router
        .route(
            "/.well-known/warrant-keys.json",
            get(warrant_keys).with_state(keys.clone()),
        )
        .merge(warrant_consent::oauth::router(
            OAuthState::new(
                db.clone(),
                keys.clone(),
                verifier.clone(),
                clock.clone(),
                &public_url,
            )
            .with_revoked(revoked.clone())
            .with_access_token_ttl(
                i64::try_from(config.oauth.access_token_ttl.as_secs()).unwrap_or(i64::MAX),
            ),
        ))
        .merge(warrant_ui::router_for(warrant_ui::UiState {
            idp: idp.clone(),
            consent: Some(warrant_ui::ConsentUi {
                db: db.clone(),
                issuer: issuer.clone(),
                resource: warrant_consent::oauth::Resource::new(&public_url),
                tool_servers: config.upstreams.iter().map(|u| u.name.clone()).collect(),
                revoked: Some(revoked.clone()),
                ceilings: Some(ceilings.clone()),
                catalog: Some(catalog.clone()),
            }),
            approvals: Some(warrant_ui::ApprovalsUi {
                approvals,
                clients: warrant_consent::oauth::Clients::new(db.clone()),
            }),
            connections: Some(upstream_keys::connections_ui(
                &config,
                &vault,
                person_oauth,
                person_sso,
                &gateway,
            )),
            ledger: ledger.clone(),
        }));
    // Behind a reverse proxy, the client's address (rate limits, logs) comes from it.
    let router = if config.server.trusted_proxies.is_empty() {
        router
    } else {
        router.layer(axum::middleware::from_fn_with_state(
            warrant_plane::forwarded::TrustedProxies::new(config.server.trusted_proxies.clone()),
            warrant_plane::forwarded::client_address,
        ))
    };

    let stop = shutdown.clone();
    let grace = config.server.shutdown_grace;
    let server = tokio::spawn(async move {
        let listener = listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        let app = router.into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(listener, app)
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
        public_url,
        gateway,
        db,
        idp,
        keys,
        vault,
        verifier,
        ceilings,
        catalog,
        setup_link,
        ledger,
        sinks,
        shutdown,
        server,
    })
}

/// The URL people use: the configured `server.public_url`, else this listener on
/// `localhost` (a name, not an IP: WebAuthn needs a domain as its relying-party id).
fn public_url_of(config: &Config, local_addr: SocketAddr) -> url::Url {
    if let Some(url) = &config.server.public_url {
        return url.clone();
    }
    let fallback = format!("http://localhost:{}", local_addr.port());
    url::Url::parse(&fallback).unwrap_or_else(|_| {
        // A host and a port always make a valid URL; keep a total function anyway.
        url::Url::parse("http://localhost").expect("static URL")
    })
}

fn idp_config(config: &Config, public_url: url::Url) -> IdpConfig {
    let auth = &config.auth;
    let mut idp = IdpConfig::new(public_url);
    // Plain HTTP is accepted only on loopback (start refuses anything else), where a
    // browser would drop `Secure` cookies; everywhere else cookies are `Secure`.
    idp.secure_cookies =
        idp.public_url.scheme() == "https" || !config.server.listen.ip().is_loopback();
    idp.session_idle = auth.session_idle;
    idp.session_absolute = auth.session_absolute;
    idp.setup_link_ttl = auth.setup_link_ttl;
    idp.oidc = auth.oidc.clone();
    idp.email = auth.email.clone();
    idp
}

/// Deletes expired sessions, authorization codes, refresh tokens and revocation entries
/// every few minutes (expired ones are refused anyway; this keeps the tables small).
/// How often the ledger's records past their retention are removed.
const LEDGER_RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes the ledger's records older than `retention` (up to a checkpoint, see
/// `consent::ledger::retention`) at start and every hour, recording each removal.
fn spawn_ledger_retention(
    db: &Db,
    ledger: &Ledger,
    retention: std::time::Duration,
    stop: CancellationToken,
) {
    let (db, ledger) = (db.clone(), ledger.clone());
    Periodic::every(
        LEDGER_RETENTION_EVERY,
        "cannot remove the audit ledger's records past their retention; they are kept meanwhile",
        "the audit ledger's records past their retention are removed again",
    )
    .spawn(stop, move || {
        let (db, ledger) = (db.clone(), ledger.clone());
        async move {
            let age = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
            let cutoff = warrant_consent::ledger::now_micros().saturating_sub(age);
            let pruned = warrant_consent::ledger::retention::prune(&db, cutoff).await?;
            if pruned.records > 0 {
                tracing::info!(
                    records = pruned.records,
                    chains = pruned.chains,
                    "audit ledger records past their retention removed"
                );
                let mut entry = warrant_consent::ledger::Entry::new(
                    warrant_consent::ledger::Kind::Event("ledger.pruned"),
                );
                entry.detail.more = Some(serde_json::json!({
                    "records": pruned.records,
                    "chains": pruned.chains,
                    "before": cutoff,
                }));
                ledger.note(entry);
            }
            Ok::<(), warrant_consent::ledger::LedgerError>(())
        }
    });
}

fn spawn_session_sweeper(idp: &Idp, stop: CancellationToken) {
    let store = idp.sessions.store().clone();
    let db = idp.db.clone();
    let clock = idp.clock.clone();
    Periodic::every(
        SWEEP,
        "cannot delete expired sessions and authorization rows; they are refused anyway",
        "expired sessions and authorization rows deleted again",
    )
    .spawn(stop, move || {
        let (store, db, clock) = (store.clone(), db.clone(), clock.clone());
        async move {
            let sessions = store.delete_expired().await.map_err(|e| e.to_string())?;
            let rows = warrant_consent::oauth::purge_expired(&db, clock.unix())
                .await
                .map_err(|e| e.to_string())?;
            if sessions + rows > 0 {
                tracing::debug!(
                    sessions,
                    rows,
                    "expired sessions, codes, refresh tokens, revocations deleted"
                );
            }
            Ok::<(), String>(())
        }
    });
}

/// How often expired rows are deleted.
const SWEEP: std::time::Duration = std::time::Duration::from_secs(300);

/// What a live view's refresher tells `/metrics` after each success (and now: the view
/// was just loaded).
fn refreshed(view: &'static str, metrics: &Arc<Metrics>) -> impl Fn() + Send + Sync + 'static {
    metrics.refreshed(view);
    let metrics = metrics.clone();
    move || metrics.refreshed(view)
}

/// Re-reads the revoked tokens and grants every second, so that a revocation made by
/// another replica (or straight in the database) applies within a second. Revocations
/// made by this process apply at once.
fn spawn_revocation_refresher(
    revoked: &RevokedSet,
    clock: Arc<dyn Clock>,
    metrics: &Arc<Metrics>,
    stop: CancellationToken,
) {
    let revoked = revoked.clone();
    Periodic::every(
        REFRESH,
        "cannot refresh the revocation list; revocations made elsewhere are not seen until it can",
        "revocation list readable again",
    )
    .first_after_a_period()
    .telling(refreshed("revocations", metrics))
    .spawn(stop, move || {
        let (revoked, now) = (revoked.clone(), clock.unix());
        async move { revoked.refresh(now).await }
    });
}

/// Re-reads the trust ceilings (and the members of groups that have one) every second,
/// so that a change made on another replica (or an OIDC sign-in that changed someone's
/// groups) applies within a second; changes made here apply at once. Whenever the view
/// changed, by either way, every client is told its tool list may have changed.
fn spawn_ceiling_refresher(ceilings: &CeilingView, gateway: &Gateway, stop: CancellationToken) {
    let view = ceilings.clone();
    Periodic::every(
        REFRESH,
        "cannot refresh the trust ceilings; changes made elsewhere are not seen until it can",
        "trust ceilings readable again",
    )
    .first_after_a_period()
    .telling(refreshed("ceilings", gateway.metrics()))
    .spawn(stop.clone(), move || {
        let view = view.clone();
        async move { view.refresh().await.map(drop) }
    });
    let mut affected = ceilings.subscribe_affected();
    let gateway = gateway.clone();
    tokio::spawn(async move {
        loop {
            let users = tokio::select! {
                () = stop.cancelled() => return,
                r = affected.recv() => r,
            };
            match users {
                Ok(users) => {
                    tracing::info!(
                        users = users.len(),
                        "trust ceilings changed; telling those users' clients to list their tools again"
                    );
                    gateway.tools_changed_for(Audience::Users(BTreeSet::clone(&users)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    tracing::info!(
                        "trust ceilings changed; telling every client to list its tools again"
                    );
                    gateway.tools_changed();
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Re-reads the signing keys every [`REFRESH`], so that a rotation made by
/// `warrant keys rotate` (or on another replica) is used to sign and to verify without a
/// restart: tokens signed with the new key verify here within that time, and the old key
/// keeps verifying what it signed through its grace period. A key revoked by `warrant
/// keys revoke` verifies nothing here from the next reload on.
fn spawn_key_reloader(keys: &KeyRing, metrics: &Arc<Metrics>, stop: CancellationToken) {
    let keys = keys.clone();
    Periodic::every(
        REFRESH,
        "cannot reload the token signing keys; a rotation or revocation made elsewhere is not seen until it can",
        "token signing keys readable again",
    )
    .first_after_a_period()
    .telling(refreshed("keys", metrics))
    .spawn(stop, move || {
        let keys = keys.clone();
        async move {
            let before = keys.active_kid();
            keys.reload().await?;
            if keys.active_kid() != before {
                tracing::info!(from = ?before, to = ?keys.active_kid(), "token signing key rotated");
            }
            Ok::<(), TokenError>(())
        }
    });
}

/// How often what other replicas change is re-read: revocations, disabled people, trust
/// ceilings, the catalog's decisions, the signing keys (a small table; a private key is
/// decrypted only when the active key changed). An emergency revocation applies within it.
const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Mails the person a call waits for (when `[auth.email]` is set up): the agent, the
/// tool, the page's link and when it expires — never the arguments.
struct ApprovalMail {
    idp: Idp,
}

impl Notify for ApprovalMail {
    fn requested(&self, approval: &Approval, agent: &str, url: &str) {
        if !self.idp.links.enabled() {
            return;
        }
        let idp = self.idp.clone();
        let (user, agent, url) = (
            approval.key.user_id.clone(),
            agent.to_owned(),
            url.to_owned(),
        );
        let tool = format!("{}.{}", approval.key.server, approval.key.tool);
        let expires = time::OffsetDateTime::from_unix_timestamp(approval.expires_at)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
        tokio::spawn(async move {
            let email = match idp.users.get(&user).await {
                Ok(Some(user)) => user.email,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot find whom to mail an approval request");
                    return;
                }
            };
            let body = format!(
                "{agent} wants to call the critical tool {tool} for you through Warrant.\n\n\
                 Approve or deny it here (sign in as yourself):\n{url}\n\n\
                 If nobody decides by {expires}, the call is denied.\n\n\
                 If you did not expect this, deny it and review your agents.\n"
            );
            match idp
                .links
                .send_notice(&email, &format!("Approve {tool} for {agent}?"), body)
                .await
            {
                Ok(_) => tracing::info!(%user, "approval request mailed"),
                Err(e) => tracing::warn!(error = %e, "an approval request could not be mailed"),
            }
        });
    }
}

/// Re-reads the catalog's decisions every second, so that an admin's change made on
/// another replica applies within a second (changes made here apply at once).
fn spawn_catalog_refresher(catalog: &CatalogView, metrics: &Arc<Metrics>, stop: CancellationToken) {
    let catalog = catalog.clone();
    Periodic::every(
        REFRESH,
        "cannot refresh the tool catalog; admin changes made elsewhere are not seen until it can",
        "tool catalog readable again",
    )
    .first_after_a_period()
    .telling(refreshed("catalog", metrics))
    .spawn(stop, move || {
        let catalog = catalog.clone();
        async move { catalog.refresh().await.map(drop) }
    });
}

/// One list an upstream reported, for the catalog.
enum Observed {
    Tools(Vec<ToolRecord>),
    /// Its prompts, or its resource templates.
    Entries(EntryKind, Vec<EntryRecord>),
}

/// Records upstreams' tool, prompt and resource template lists in the catalog one
/// after the other, in the order they came (the first definition seen of each is its
/// approved one). A definition that entered or left quarantine is recorded in the
/// ledger.
fn spawn_catalog_recorder(
    catalog: &CatalogView,
    clock: Arc<dyn Clock>,
    ledger: Option<Ledger>,
) -> tokio::sync::mpsc::UnboundedSender<(String, Observed)> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Observed)>();
    let catalog = catalog.clone();
    tokio::spawn(async move {
        while let Some((upstream, observed)) = rx.recv().await {
            // A busy database is retried a few times (bounded): a lost record would leave
            // the upstream's new tools out of the catalog until its next change.
            let mut wait = std::time::Duration::from_millis(100);
            for attempt in 1..=5 {
                let recorded = match &observed {
                    Observed::Tools(tools) => catalog
                        .record(&upstream, tools, clock.unix())
                        .await
                        .map(|changed| {
                            for t in changed {
                                note_quarantine(&ledger, &upstream, "tool", &t.tool, t.quarantined);
                            }
                        }),
                    Observed::Entries(kind, entries) => catalog
                        .record_entries(&upstream, *kind, entries, clock.unix())
                        .await
                        .map(|changed| {
                            for e in changed {
                                note_quarantine(
                                    &ledger,
                                    &upstream,
                                    e.kind.label(),
                                    &e.name,
                                    e.quarantined,
                                );
                            }
                        }),
                };
                match recorded {
                    Ok(()) => break,
                    Err(e) if attempt < 5 => {
                        tracing::warn!(%upstream, error = %e, attempt, "cannot record the tool catalog yet; retrying");
                        tokio::time::sleep(wait).await;
                        wait *= 2;
                    }
                    Err(e) => {
                        tracing::error!(%upstream, error = %e, "cannot record the tool catalog");
                    }
                }
            }
        }
    });
    tx
}

/// Records that an upstream's definition of `name` entered quarantine (it changed) or
/// left it (it changed back to the approved one).
fn note_quarantine(
    ledger: &Option<Ledger>,
    upstream: &str,
    kind: &str,
    name: &str,
    quarantined: bool,
) {
    let Some(ledger) = ledger else {
        return;
    };
    let (event, reason) = if quarantined {
        (
            "quarantine.entered",
            "the upstream changed its definition since it was approved",
        )
    } else {
        (
            "quarantine.released",
            "the upstream's definition is the approved one again",
        )
    };
    let mut entry = warrant_consent::ledger::Entry::event(event)
        .upstream(upstream)
        .reason(reason)
        .with("kind", kind)
        .with("name", name);
    if kind == "tool" {
        entry = entry.tool(name);
    }
    ledger.note(entry);
}

/// Writes what the gateway learns about upstreams to their tables, off the request path.
struct Recorder {
    catalog: tokio::sync::mpsc::UnboundedSender<(String, Observed)>,
    events: UpstreamEvents,
}

impl Observer for Recorder {
    fn tools(&self, upstream: &str, tools: Vec<ToolRecord>) {
        let _ = self
            .catalog
            .send((upstream.to_owned(), Observed::Tools(tools)));
    }

    fn entries(&self, upstream: &str, kind: EntryKind, entries: Vec<EntryRecord>) {
        let _ = self
            .catalog
            .send((upstream.to_owned(), Observed::Entries(kind, entries)));
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

/// The public keys that verify access tokens (the active one and retired ones still in
/// their grace period), for resource servers and tools that check tokens themselves.
async fn warrant_keys(State(keys): State<KeyRing>) -> Response {
    let body = serde_json::json!({ "keys": keys.published() });
    (
        [(http::header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(body),
    )
        .into_response()
}

/// The client's address (behind a trusted proxy: the client's, not the proxy's).
fn client_ip(request: &axum::extract::Request) -> Option<std::net::IpAddr> {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

/// The Prometheus metrics (see `warrant_plane::metrics`), for clients on loopback and
/// in `metrics.allow_from`; others get 403.
async fn scrape(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    if !client_ip(&request).is_some_and(|ip| state.metrics.allows(ip)) {
        return (
            StatusCode::FORBIDDEN,
            "/metrics answers clients on loopback and in metrics.allow_from only\n",
        )
            .into_response();
    }
    let status = state.gateway.status();
    let upstreams: Vec<UpstreamNow<'_>> = status
        .iter()
        .map(|u| UpstreamNow {
            name: &u.name,
            state: u.state,
            tools: u.tools,
        })
        .collect();
    let ledger = state.gateway.ledger().map(Ledger::state);
    let text = state.gateway.metrics().render(&upstreams, ledger.as_ref());
    (
        [(
            http::header::CONTENT_TYPE,
            warrant_plane::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

/// Readiness: the database answers. Upstreams are reported, not required: a down
/// upstream withdraws its tools, it does not stop the gateway. Why an upstream is down
/// (a command line, a host name, an upstream's error text) is shown only to a client on
/// loopback (the client behind a trusted proxy, not the proxy); others see the states.
async fn readyz(State(state): State<AppState>, request: axum::extract::Request) -> Response {
    let on_loopback = client_ip(&request).is_some_and(|ip| {
        ip.is_loopback()
            || matches!(ip, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
    });
    let mut upstreams = state.gateway.status();
    if !on_loopback {
        for upstream in &mut upstreams {
            upstream.reason = None;
        }
    }
    let database = match state.db.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => {
            tracing::error!(error = %e, "readiness: database unavailable");
            "unavailable".to_owned()
        }
    };
    // The ledger: calls are refused while it cannot be written (the reason on loopback
    // only, like the upstreams').
    let ledger = state.gateway.ledger().map(|ledger| {
        let now = ledger.state();
        let mut view = serde_json::json!({
            "state": if now.healthy { "ok" } else { "unavailable" },
            "backlog": now.backlog,
        });
        if let (Some(reason), true) = (now.failure, on_loopback) {
            view["reason"] = reason.into();
        }
        view
    });
    let ready = database == "ok" && ledger.as_ref().is_none_or(|l| l["state"] == "ok");
    let mut body = serde_json::json!({
        "ready": ready,
        "database": database,
        "upstreams": upstreams,
    });
    if let Some(ledger) = ledger {
        body["ledger"] = ledger;
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}
