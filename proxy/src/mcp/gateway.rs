//! The gateway as an MCP *server*: one endpoint that lists what every upstream offers
//! and routes each request to the upstream that serves it.
//!
//! rmcp handles the wire for every protocol revision (sessions and `initialize` for
//! 2024-11-05 … 2025-11-25; stateless requests and `server/discover` for 2026-07-28);
//! this handler works on typed requests, so a client of one revision reaches an upstream
//! of another without either noticing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::response::{IntoResponse, Response};
use rmcp::model::{ClientRequest, ProtocolVersion, RequestMetaObject, ServerResult};
use rmcp::service::{Peer, RequestContext};
use rmcp::transport::common::server_side_http::SessionId;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::{ErrorData, RoleServer};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use warrant_consent::catalog::{CatalogView, EntryKind, EntryRecord, ToolRecord};
use warrant_consent::token::{Risk, call_args};

use super::aggregate::Aggregate;
use super::approve::ApprovalDesk;
use super::auth::{
    Authorized, Caller as TokenCaller, McpAuth, Refusal, refused_by_ceiling, step_up_scope,
};
use super::catalog::{entry_lists_changed, observe_entries, tool_record};
use super::direct::{CallParams, Caller, Direct, can_be_asked, is_answer_to_forwarded, owner_of};
use super::error::GatewayError;
use super::message::Incoming;
use super::park::Park;
use super::upstream::{Change, Changes, Era, Health, Inflight, LogLevel, Upstream};
use crate::config::{Config, StartMode};

mod audience;
pub use audience::{Audience, Reclassified};

/// The aggregating MCP server. Cheap to clone: rmcp makes one per session.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    upstreams: Vec<Arc<Upstream>>,
    separator: String,
    page_size: usize,
    versions: Vec<ProtocolVersion>,
    changes: Changes,
    /// The aggregated view per era (legacy, modern).
    views: [RwLock<Arc<Aggregate>>; 2],
    rebuild: Mutex<()>,
    /// Sessions of clients that keep one (2025-11-25 and older), by session id: told
    /// about list changes, and looked up by the direct path.
    sessions: Mutex<HashMap<String, Arc<Session>>>,
    /// Woken when a session is registered.
    registered: tokio::sync::Notify,
    direct: Arc<Direct>,
    /// Token checks; `None` with `mcp.authorization = "none"`.
    auth: Option<Arc<McpAuth>>,
    /// Calls of 2026-07-28 clients parked while a legacy upstream waits for input.
    park: Arc<Park>,
    /// Risk classes and quarantine, as admins decided (in memory).
    catalog: CatalogView,
    /// Holds critical calls for a person's approval (set once at start).
    approvals: std::sync::OnceLock<Arc<ApprovalDesk>>,
    /// Clients whose tool list changed for a reason of their own (their user's trust
    /// ceiling, their grant): only their sessions and `subscriptions/listen` streams
    /// are told.
    personal: tokio::sync::broadcast::Sender<Arc<Audience>>,
    shutdown: CancellationToken,
}

/// What the composition learns about upstreams as it happens: their tools, prompts and
/// resource templates (for the catalog) and their health (for the history). Called
/// from one task, in order.
pub trait Observer: Send + Sync + 'static {
    fn tools(&self, upstream: &str, tools: Vec<ToolRecord>);
    /// The full list of an upstream's prompts, or of its resource templates (`kind`).
    fn entries(&self, upstream: &str, kind: EntryKind, entries: Vec<EntryRecord>);
    fn health(&self, upstream: &str, state: &'static str, reason: Option<String>);
}

/// How one upstream is doing, for `/readyz` and the start banner.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub transport: &'static str,
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub tools: usize,
    /// The revision negotiated with it (of its first connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl Gateway {
    /// Builds the gateway for a configuration; nothing connects until [`Self::start`].
    pub fn new(
        config: &Config,
        auth: Option<Arc<McpAuth>>,
        catalog: CatalogView,
        shutdown: CancellationToken,
    ) -> Self {
        let changes = Changes::new();
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u.clone(), changes.clone(), shutdown.child_token()))
            .collect();
        let versions = config
            .mcp
            .protocol_versions
            .iter()
            .filter_map(|v| {
                ProtocolVersion::KNOWN_VERSIONS
                    .iter()
                    .find(|k| k.as_str() == v)
                    .cloned()
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                upstreams,
                separator: config.mcp.separator.clone(),
                page_size: config.mcp.page_size,
                versions,
                changes,
                views: [RwLock::new(Arc::default()), RwLock::new(Arc::default())],
                rebuild: Mutex::new(()),
                sessions: Mutex::new(HashMap::new()),
                registered: tokio::sync::Notify::new(),
                direct: Arc::default(),
                auth,
                park: Arc::default(),
                catalog,
                approvals: std::sync::OnceLock::new(),
                personal: tokio::sync::broadcast::channel(64).0,
                shutdown,
            }),
        }
    }

    /// Starts the eager upstreams and the task that tells clients (and `observer`)
    /// about changes.
    pub fn start(&self, observer: impl Observer) {
        // Subscribe first: an upstream may come up before this task runs.
        let mut rx = self.inner.changes.subscribe();
        for upstream in &self.inner.upstreams {
            if upstream.config.start == StartMode::Eager {
                upstream.start();
            }
        }
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut last_health: HashMap<String, Health> = HashMap::new();
            loop {
                let (name, change) = tokio::select! {
                    r = rx.recv() => match r {
                        Ok(c) => c,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(_) => break,
                    },
                    () = inner.shutdown.cancelled() => break,
                };
                if let Some(upstream) = inner.upstreams.iter().find(|u| u.name() == name) {
                    let health = upstream.health();
                    if change == Change::Health && last_health.get(&name) != Some(&health) {
                        let reason = match &health {
                            Health::Down(reason) => Some(reason.clone()),
                            _ => None,
                        };
                        observer.health(&name, health.label(), reason);
                        last_health.insert(name.clone(), health);
                    }
                    if matches!(change, Change::Tools | Change::Health) {
                        // What clients of either era are offered (a tool only 2026-07-28
                        // clients see is in the catalog too); the legacy definition of a
                        // tool both eras offer.
                        let legacy = upstream.offer(Era::Legacy);
                        let modern = upstream.offer(Era::Modern);
                        let tools: Vec<ToolRecord> = legacy
                            .tools
                            .iter()
                            .chain(
                                modern
                                    .tools
                                    .iter()
                                    .filter(|t| !legacy.tools.iter().any(|l| l.name == t.name)),
                            )
                            .map(tool_record)
                            .collect();
                        if !tools.is_empty() {
                            observer.tools(&name, tools);
                        }
                    }
                    observe_entries(&observer, upstream, change);
                }
                inner.notify_sessions(change).await;
            }
        });
    }

    /// Waits until no eager upstream is still starting (each bounded by its connect
    /// timeout). Returns the names that collide across upstreams, if any.
    pub async fn settle(&self) -> Vec<String> {
        for upstream in &self.inner.upstreams {
            if upstream.config.start == StartMode::Eager {
                let _ = upstream.ready(Era::Legacy).await;
            }
        }
        self.view(Era::Legacy).collisions.clone()
    }

    /// How many `tools/call` requests took the direct data path so far.
    pub fn direct_calls(&self) -> u64 {
        self.inner.direct.calls()
    }

    /// How many client cancellations reached a call in flight on the direct path.
    pub fn direct_cancellations(&self) -> u64 {
        self.inner.direct.cancels()
    }

    /// How many calls of 2026-07-28 clients are parked, waiting for the client's
    /// input on behalf of a legacy upstream (see `mcp/park.rs`).
    pub fn parked_calls(&self) -> usize {
        self.inner.park.len()
    }

    /// Holds calls of critical tools for the approval of the person behind the token
    /// (see `mcp/approve.rs`); set once, before clients arrive.
    pub fn set_approvals(&self, desk: ApprovalDesk) {
        let _ = self.inner.approvals.set(Arc::new(desk));
    }

    /// The approvals store, when critical calls are held.
    pub fn approvals(&self) -> Option<&warrant_consent::approvals::Approvals> {
        self.approval_desk().map(|d| d.approvals())
    }

    pub(super) fn approval_desk(&self) -> Option<&Arc<ApprovalDesk>> {
        self.inner.approvals.get()
    }

    pub(super) fn park(&self) -> &Arc<Park> {
        &self.inner.park
    }

    pub fn status(&self) -> Vec<UpstreamStatus> {
        self.inner
            .upstreams
            .iter()
            .map(|u| {
                let health = u.health();
                UpstreamStatus {
                    name: u.name().to_owned(),
                    transport: u.config.transport.kind(),
                    state: health.label(),
                    reason: match health {
                        Health::Down(reason) => Some(reason),
                        _ => None,
                    },
                    tools: u.offer(Era::Legacy).tools.len(),
                    protocol: u.protocol(),
                }
            })
            .collect()
    }

    /// The current aggregated view for clients of `era`, rebuilt first if an upstream
    /// changed.
    pub(super) fn view(&self, era: Era) -> Arc<Aggregate> {
        let slot = &self.inner.views[usize::from(era == Era::Modern)];
        let epoch = self.inner.changes.epoch();
        let catalog = self.inner.catalog.version();
        if let Ok(view) = slot.read()
            && view.epoch == epoch
            && view.catalog_version == catalog
        {
            return view.clone();
        }
        let _guard = self.inner.rebuild.lock();
        let epoch = self.inner.changes.epoch();
        let catalog = self.inner.catalog.version();
        if let Ok(view) = slot.read()
            && view.epoch == epoch
            && view.catalog_version == catalog
        {
            return view.clone();
        }
        let mut fresh = Aggregate::build(
            epoch,
            era,
            &self.inner.upstreams,
            &self.inner.separator,
            &self.inner.catalog.current(),
        );
        fresh.catalog_version = catalog;
        let fresh = Arc::new(fresh);
        if let Ok(mut slot) = slot.write() {
            *slot = fresh.clone();
        }
        fresh
    }

    /// Lets lazy upstreams start and starting ones finish before a list is answered.
    pub(super) async fn settle_for_listing(&self, era: Era) {
        for upstream in &self.inner.upstreams {
            if matches!(upstream.lane(era).health(), Health::Idle | Health::Starting) {
                let _ = upstream.ready(era).await;
            }
        }
    }

    /// The view of `era`; when `found` says it lacks what a request names, first lets
    /// the upstreams of that era start (a lane no client of the era has used yet).
    pub(super) async fn settled_view(
        &self,
        era: Era,
        found: impl Fn(&Aggregate) -> bool,
    ) -> Arc<Aggregate> {
        let view = self.view(era);
        if found(&view) {
            return view;
        }
        self.settle_for_listing(era).await;
        self.view(era)
    }

    /// Why a name that routes nowhere is unknown: maybe its upstream is down.
    pub(super) fn unknown(&self, name: &str, not_found: GatewayError) -> GatewayError {
        for upstream in &self.inner.upstreams {
            let prefix = &upstream.config.prefix;
            let owns = !prefix.is_empty()
                && name
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with(self.inner.separator.as_str()));
            if owns && let Health::Down(reason) = upstream.health() {
                return GatewayError::UpstreamUnavailable {
                    upstream: upstream.name().to_owned(),
                    reason,
                };
            }
        }
        not_found
    }

    /// Sends a request to an upstream on the lane of the client's era.
    pub(super) async fn send(
        &self,
        upstream: &Arc<Upstream>,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
        track: bool,
    ) -> Result<ServerResult, GatewayError> {
        let era = era_of(context);
        let lane = upstream.ready(era).await?;
        let origin = track.then(|| Inflight {
            downstream: context.peer.clone(),
            downstream_request: context.id.clone(),
            downstream_progress: context.meta.get_progress_token(),
            park: None,
            log_level: self.log_level(context),
        });
        lane.forward(
            request,
            origin,
            upstream_meta(context, lane.era),
            &context.ct,
        )
        .await
    }

    /// The log level of the client session behind `context` (`None` without one).
    pub(super) fn log_level(&self, context: &RequestContext<RoleServer>) -> Option<Arc<LogLevel>> {
        let id = Self::session_id(context);
        let sessions = self.inner.sessions.lock().ok()?;
        sessions.get(&id).map(|s| s.log_level.clone())
    }

    pub(super) fn session_id(context: &RequestContext<RoleServer>) -> String {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub(super) fn auth(&self) -> Option<&Arc<McpAuth>> {
        self.inner.auth.as_ref()
    }

    /// Decides a `tools/call` at the edge, where a refusal can still be an HTTP 403
    /// with a step-up challenge. Returns what was authorized (for the handler and the
    /// direct path), `None` for a name that routes nowhere yet (the handler decides
    /// once it has settled), or the refusal.
    pub(crate) async fn authorize_call(
        &self,
        auth: &McpAuth,
        caller: &TokenCaller,
        era: Era,
        name: &str,
        arguments: Option<&serde_json::Map<String, Value>>,
    ) -> Result<Option<Authorized>, Refusal> {
        // An upstream still starting may not be in the view yet: wait for it as the
        // handler would, so that the refusal can still be an HTTP 403.
        let view = self.settled_view(era, |v| v.knows_tool(name)).await;
        let Some(route) = view.tool(name) else {
            return Ok(None);
        };
        let server = route.upstream.name();
        let args = arguments.map(call_args).unwrap_or_default();
        let decision = auth.decide(caller, server, &route.original, route.risk, args);
        if decision.allow && route.risk == Risk::Critical && self.approval_desk().is_some() {
            // Allowed, but held for a person's approval: the handler asks (the direct
            // path takes only what the edge authorized, so never this call).
            Ok(None)
        } else if decision.allow {
            // Counted here, once: the direct path and the handler count nothing the
            // edge authorized.
            auth.charge(caller).map_err(Refusal::Budget)?;
            Ok(Some(Authorized {
                server: server.to_owned(),
                tool: route.original.clone(),
            }))
        } else if refused_by_ceiling(&decision) {
            // No scope the person could grant helps (an admin must raise the ceiling):
            // not a step-up 403; the handler refuses with a JSON-RPC error that says so.
            Ok(None)
        } else {
            Err(Refusal::Insufficient {
                decision,
                scope: step_up_scope(server, &route.original),
            })
        }
    }

    /// Tells every client that its tool list may have changed, for a reason outside
    /// the upstreams that concerns everyone.
    pub fn tools_changed(&self) {
        self.inner.changes.publish("", Change::Tools);
    }

    pub(super) fn separator(&self) -> &str {
        &self.inner.separator
    }

    pub(super) fn page_size(&self) -> usize {
        self.inner.page_size
    }

    pub(super) fn changes(&self) -> tokio::sync::broadcast::Receiver<(String, Change)> {
        self.inner.changes.subscribe()
    }

    pub(super) fn versions(&self) -> &[ProtocolVersion] {
        &self.inner.versions
    }

    /// Remembers a client session once it is initialized.
    pub(super) fn register_session(&self, id: String, peer: Peer<RoleServer>) {
        let Some(info) = peer.peer_info() else { return };
        let session = Session {
            version: info.protocol_version.to_string(),
            capabilities: Arc::new(info.capabilities.clone()),
            log_level: Arc::default(),
            peer,
        };
        if let Ok(mut sessions) = self.inner.sessions.lock() {
            sessions.retain(|_, s| !s.peer.is_transport_closed());
            sessions.insert(id, Arc::new(session));
        }
        self.inner.registered.notify_waiters();
    }

    /// A session by id. rmcp answers `notifications/initialized` before the gateway
    /// hears of it, so a client's first request may arrive a moment before the session
    /// is registered: wait that moment (briefly) for a session rmcp knows.
    async fn session(&self, id: &str, manager: &LocalSessionManager) -> Option<Arc<Session>> {
        let lookup = || self.inner.sessions.lock().ok()?.get(id).cloned();
        if let Some(session) = lookup() {
            return Some(session);
        }
        if !manager.has_session(&SessionId::from(id)).await.ok()? {
            return None;
        }
        let wait = async {
            loop {
                let registered = self.inner.registered.notified();
                if let Some(session) = lookup() {
                    return session;
                }
                registered.await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_millis(100), wait)
            .await
            .ok()
    }

    /// Takes a request on the direct data path if it can (see [`super::direct`]);
    /// `None` leaves it to rmcp.
    pub(crate) async fn try_direct(
        &self,
        parts: &http::request::Parts,
        message: &Incoming<'_>,
        manager: &LocalSessionManager,
    ) -> Option<Response> {
        static MCP_SESSION_ID: http::HeaderName = http::HeaderName::from_static("mcp-session-id");
        let session = parts
            .headers
            .get(&MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let Some(method) = message.method.as_deref() else {
            if is_answer_to_forwarded(message) {
                return Some(self.inner.direct.answer(session, message).await);
            }
            return None;
        };
        match method {
            "notifications/cancelled" => {
                let params: Value = serde_json::from_str(message.params?.get()).ok()?;
                self.inner
                    .direct
                    .cancel(owner_of(parts, session), &params)
                    .await
                    .then(|| http::StatusCode::ACCEPTED.into_response())
            }
            "tools/call" => self.direct_call(parts, session, message, manager).await,
            _ => None,
        }
    }

    async fn direct_call(
        &self,
        parts: &http::request::Parts,
        session: &str,
        message: &Incoming<'_>,
        manager: &LocalSessionManager,
    ) -> Option<Response> {
        let call = CallParams::read(message.params?)?;
        let caller = if session.is_empty() {
            stateless_caller(parts, &call)?
        } else {
            let known = self.session(session, manager).await?;
            // rmcp owns the session's life: ended or expired sessions get its 404.
            if known.peer.is_transport_closed()
                || !manager.has_session(&SessionId::from(session)).await.ok()?
            {
                return None;
            }
            Caller {
                session: session.to_owned(),
                owner: session.to_owned(),
                log_level: Some(known.log_level.clone()),
                era: Era::of_str(&known.version),
                capabilities: known.capabilities.clone(),
                peer: Some(known.peer.clone()),
            }
        };
        let view = self.view(caller.era);
        let route = view.tool(&call.name)?;
        if !route.plain {
            return None;
        }
        // Only a call the edge authorized for this very route (the view may have changed
        // since): anything else goes the rmcp way, where the handler decides.
        if self.inner.auth.is_some()
            && !parts
                .extensions
                .get::<Authorized>()
                .is_some_and(|a| a.server == route.upstream.name() && a.tool == route.original)
        {
            return None;
        }
        let lane = route.upstream.lane(caller.era).clone();
        // On the lane of the caller's own era; and a session client on the lane of an
        // upstream that speaks only 2026-07-28 when the upstream cannot ask it for
        // input (`direct::bridge`). A 2026-07-28 caller of an upstream that speaks only
        // the legacy era stays on the rmcp path: a request that upstream sends back
        // mid-call needs the call parked and turned into an `InputRequiredResult`
        // (`mcp::park`), and what it sends on its session's standalone stream (rmcp
        // servers log there) reaches that caller only through rmcp's request context.
        let bridged = caller.era == Era::Legacy
            && lane.era == Era::Modern
            && !can_be_asked(&caller.capabilities);
        if lane.era != caller.era && !bridged {
            return None;
        }
        self.inner
            .direct
            .call(caller, lane, &route.original, message.id?, call)
            .await
    }
}

/// The protocol era of the client behind a request: the version in its `_meta`
/// (2026-07-28), else the one its session negotiated.
pub(super) fn era_of(context: &RequestContext<RoleServer>) -> Era {
    context
        .meta
        .protocol_version()
        .or_else(|| {
            context
                .peer
                .peer_info()
                .map(|info| info.protocol_version.clone())
        })
        .map_or(Era::Legacy, |v| Era::of(&v))
}

/// The `_meta` to pass upstream: the client's own entries (a trace context, the log
/// level it asked for, …), without its progress token (the gateway maps its own) and
/// its identity (the gateway is the upstream's client). To a 2026-07-28 lane the
/// client's declared capabilities go along, so the upstream asks only for input the
/// client can give; a legacy lane has no use for per-request protocol metadata.
pub(super) fn upstream_meta(
    context: &RequestContext<RoleServer>,
    lane: Era,
) -> Option<RequestMetaObject> {
    let mut meta = context.meta.clone();
    let map = &mut meta.0.0;
    map.remove("progressToken");
    map.remove("io.modelcontextprotocol/clientInfo");
    match lane {
        Era::Legacy => map.retain(|key, _| !key.starts_with("io.modelcontextprotocol/")),
        Era::Modern => {
            if !map.contains_key("io.modelcontextprotocol/clientCapabilities") {
                // An older client declared its capabilities at initialize.
                if let Some(info) = context.peer.peer_info() {
                    meta.set_client_capabilities(info.capabilities.clone());
                }
            }
        }
    }
    (!meta.0.0.is_empty()).then_some(meta)
}

/// A client session the gateway knows of.
#[derive(Clone)]
struct Session {
    version: String,
    /// Set by the session's `logging/setLevel`.
    log_level: Arc<LogLevel>,
    capabilities: Arc<rmcp::model::ClientCapabilities>,
    peer: Peer<RoleServer>,
}

/// A 2026-07-28 request that the direct path may take: headers and `_meta` agree, and
/// no `Mcp-Param-*` header needs checking against the tool's schema.
fn stateless_caller(parts: &http::request::Parts, call: &CallParams<'_>) -> Option<Caller> {
    let header = |key: &str| parts.headers.get(key).and_then(|v| v.to_str().ok());
    let meta = call.meta.as_ref()?;
    let version = meta
        .get("io.modelcontextprotocol/protocolVersion")?
        .as_str()?;
    if header("mcp-protocol-version")? != version
        || Era::of_str(version) != Era::Modern
        || header("mcp-method")? != "tools/call"
        || header("mcp-name")? != call.name
        || parts
            .headers
            .keys()
            .any(|k| k.as_str().starts_with("mcp-param-"))
    {
        return None;
    }
    let capabilities = meta
        .get("io.modelcontextprotocol/clientCapabilities")?
        .clone();
    Some(Caller {
        session: String::new(),
        owner: owner_of(parts, ""),
        log_level: None,
        peer: None,
        era: Era::Modern,
        capabilities: Arc::new(serde_json::from_value(capabilities).ok()?),
    })
}

impl Inner {
    async fn notify_sessions(&self, change: Change) {
        let sessions: Vec<Peer<RoleServer>> = match self.sessions.lock() {
            Ok(mut sessions) => {
                sessions.retain(|_, s| !s.peer.is_transport_closed());
                sessions.values().map(|s| s.peer.clone()).collect()
            }
            Err(_) => return,
        };
        for peer in sessions {
            let result = match change {
                Change::Tools => peer.notify_tool_list_changed().await,
                Change::Prompts => peer.notify_prompt_list_changed().await,
                Change::Resources => peer.notify_resource_list_changed().await,
                Change::Health => {
                    let _ = peer.notify_prompt_list_changed().await;
                    let _ = peer.notify_resource_list_changed().await;
                    peer.notify_tool_list_changed().await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "cannot tell a client about a list change");
            }
        }
    }
}

impl Gateway {
    pub(super) fn resource_upstream(
        &self,
        era: Era,
        uri: &str,
    ) -> Result<Arc<Upstream>, ErrorData> {
        let view = self.view(era);
        if let Some(upstream) = view.resource(uri) {
            return Ok(upstream.clone());
        }
        view.template_quarantine(uri)?;
        // A resource nobody listed: if exactly one upstream serves resources, it is the
        // only one that can know it.
        let serving: Vec<&Arc<Upstream>> = self
            .inner
            .upstreams
            .iter()
            .filter(|u| {
                u.offer(era)
                    .capabilities
                    .as_ref()
                    .is_some_and(|c| c.resources.is_some())
            })
            .collect();
        match serving.as_slice() {
            [only] => Ok((*only).clone()),
            _ => Err(GatewayError::UnknownResource(uri.to_owned()).into()),
        }
    }
}

/// Follows the catalog: when admins change a class, a trust or an approval (here or on
/// another replica), the clients whose token can list a tool an upstream offers now that
/// is classified otherwise are told that the tool list changed (a tool recorded for the
/// first time changes nothing); likewise the prompt or resource list when one of its prompts or
/// templates enters or leaves quarantine. The views themselves rebuild on their next
/// use (the catalog's version moved), so the next call is decided with the new classes.
impl Gateway {
    pub fn follow_catalog(&self) {
        let mut changes = self.inner.catalog.subscribe();
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut last = changes.borrow_and_update().clone();
            loop {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    () = gateway.inner.shutdown.cancelled() => return,
                }
                let next = changes.borrow_and_update().clone();
                let reclassified = gateway.reclassified(&last, &next);
                if !reclassified.is_empty() {
                    gateway.tools_changed_for(Audience::Tools(reclassified));
                }
                for change in entry_lists_changed(&gateway.inner.upstreams, &last, &next) {
                    gateway.inner.changes.publish("", change);
                }
                last = next;
            }
        });
    }
}

pub(super) fn unexpected(upstream: &str, method: &str) -> ErrorData {
    GatewayError::UpstreamFailed {
        upstream: upstream.to_owned(),
        reason: format!("it answered {method} with a result of another kind"),
    }
    .into()
}
