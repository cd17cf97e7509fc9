//! The gateway as an MCP *server*: one endpoint that lists what every upstream offers
//! and routes each request to the upstream that serves it.
//!
//! rmcp handles the wire for every protocol revision (sessions and `initialize` for
//! 2024-11-05 … 2025-11-25; stateless requests and `server/discover` for 2026-07-28);
//! this handler works on typed requests, so a client of one revision reaches an upstream
//! of another without either noticing.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rmcp::model::{ClientRequest, ProtocolVersion, ServerResult};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData, RoleServer};
use tokio_util::sync::CancellationToken;
use warrant_consent::catalog::{CatalogView, EntryKind, ToolRecord};
use warrant_consent::ledger::Ledger;
use warrant_consent::oauth::RevokedSet;

use super::clients::{ClientSessions, concerns};
use super::park::Park;
use super::stage::authenticate::token_caller;
use super::stage::credentials::{self, Credentials, KeySource};
use crate::config::{Config, StartMode};
use crate::enforce::approve::{ApprovalDesk, declares_url_elicitation};
use crate::enforce::audience::Audience;
use crate::enforce::auth::{Authorized, Caller, McpAuth};
use crate::metrics::Metrics;
use crate::periodic::Periodic;
use crate::protocol::era::{Era, era_of, upstream_meta};
use crate::protocol::error::GatewayError;
use crate::protocol::headers::MCP_SESSION_ID;
use crate::upstream::direct::Direct;
use crate::upstream::inflight::{Inflight, LogLevel};
use crate::upstream::keyed::Keyed;
use crate::upstream::remote::Upstream;
use crate::upstream::state::{Change, Changes, Health};
use crate::view::aggregate::Aggregate;
use crate::view::records::{
    Observer, entry_lists_changed, observe_entries, reclassified, tool_record,
};
use crate::view::views::Views;

/// How often per-key connections unused for their `auth.idle_timeout` are closed.
const KEYED_REAP: std::time::Duration = std::time::Duration::from_secs(15);

/// The aggregating MCP server. Cheap to clone: rmcp makes one per session.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    /// The upstreams and the aggregated views of them.
    views: Views,
    page_size: usize,
    versions: Vec<ProtocolVersion>,
    /// Sessions of clients that keep one (2025-11-25 and older).
    clients: ClientSessions,
    direct: Arc<Direct>,
    /// Token checks; `None` with `mcp.authorization = "none"`.
    auth: Option<Arc<McpAuth>>,
    /// Calls of 2026-07-28 clients parked while a legacy upstream waits for input.
    park: Arc<Park>,
    /// Holds critical calls for a person's approval (set once at start).
    approvals: std::sync::OnceLock<Arc<ApprovalDesk>>,
    /// Per upstream whose calls go on a connection per key: those connections.
    keyed: HashMap<String, Arc<Keyed>>,
    /// The vault those keys come from (set once at start).
    keys: std::sync::OnceLock<KeySource>,
    /// The audit ledger every call is recorded in (set once at start; none: nothing is
    /// recorded).
    ledger: std::sync::OnceLock<Ledger>,
    /// What `/metrics` shows.
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
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
        let upstreams: Vec<Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|u| Upstream::new(u.clone(), changes.clone(), shutdown.child_token()))
            .collect();
        let mut keyed = HashMap::new();
        for upstream in upstreams.iter().filter(|u| u.config.auth.keyed()) {
            let connections = Arc::new(Keyed::new(
                upstream.config.clone(),
                changes.clone(),
                shutdown.child_token(),
            ));
            upstream.lend_from(connections.clone());
            keyed.insert(upstream.name().to_owned(), connections);
        }
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
                views: Views::new(upstreams, config.mcp.separator.clone(), changes, catalog),
                page_size: config.mcp.page_size,
                versions,
                clients: ClientSessions::default(),
                direct: Arc::default(),
                auth,
                park: Arc::default(),
                approvals: std::sync::OnceLock::new(),
                keyed,
                keys: std::sync::OnceLock::new(),
                ledger: std::sync::OnceLock::new(),
                metrics: Arc::default(),
                shutdown,
            }),
        }
    }

    /// Starts the eager upstreams and the task that tells clients (and `observer`)
    /// about changes.
    pub fn start(&self, observer: impl Observer) {
        // Subscribe first: an upstream may come up before this task runs.
        let mut rx = self.inner.views.changes().subscribe();
        for upstream in self.inner.views.upstreams() {
            if upstream.config.start == StartMode::Eager {
                upstream.start();
            }
        }
        if !self.inner.keyed.is_empty() {
            let keyed: Vec<_> = self.inner.keyed.values().cloned().collect();
            Periodic::every(
                KEYED_REAP,
                "cannot close idle per-key connections",
                "idle per-key connections closed again",
            )
            .first_after_a_period()
            .spawn(self.inner.shutdown.clone(), move || {
                let now = std::time::Instant::now();
                for keyed in &keyed {
                    keyed.reap(now);
                }
                std::future::ready(Ok::<(), std::convert::Infallible>(()))
            });
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
                if let Some(upstream) = inner.views.upstreams().iter().find(|u| u.name() == name) {
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
                inner.clients.tell_all(change).await;
            }
        });
    }

    /// Waits until no eager upstream is still starting (each bounded by its connect
    /// timeout). Returns the names that collide across upstreams, if any.
    pub async fn settle(&self) -> Vec<String> {
        for upstream in self.inner.views.upstreams() {
            if upstream.config.start == StartMode::Eager {
                let _ = upstream.ready(Era::Legacy).await;
            }
        }
        self.view(Era::Legacy).collisions.clone()
    }

    /// The direct data path's shared state.
    pub(super) fn direct(&self) -> &Arc<Direct> {
        &self.inner.direct
    }

    /// The client sessions the gateway knows of.
    pub(super) fn clients(&self) -> &ClientSessions {
        &self.inner.clients
    }

    /// How many `tools/call` requests took the direct data path so far.
    pub fn direct_calls(&self) -> u64 {
        self.inner.direct.calls()
    }

    /// How many sessions with the upstream `name` the direct path can call into now
    /// (its lanes' own, and the extra ones of `[[upstreams]] sessions`).
    pub fn open_upstream_sessions(&self, name: &str) -> usize {
        self.inner
            .views
            .upstreams()
            .iter()
            .filter(|u| u.name() == name)
            .map(|u| u.open_sessions())
            .sum()
    }

    /// How many connections the direct path opened to upstreams so far.
    pub fn direct_connections_opened(&self) -> u64 {
        self.inner
            .views
            .upstreams()
            .iter()
            .map(|u| u.direct_connections_opened())
            .sum()
    }

    /// How many client cancellations reached a call in flight on the direct path.
    pub fn direct_cancellations(&self) -> u64 {
        self.inner.direct.cancels()
    }

    /// How many calls of 2026-07-28 clients are parked, waiting for the client's
    /// input on behalf of a legacy upstream (see `server/park.rs`).
    pub fn parked_calls(&self) -> usize {
        self.inner.park.len()
    }

    /// Holds calls of critical tools for the approval of the person behind the token
    /// (see `mcp/approve.rs`); set once, before clients arrive.
    pub fn set_approvals(&self, desk: ApprovalDesk) {
        let _ = self.inner.approvals.set(Arc::new(desk));
    }

    /// Records every call in `ledger` (see `stage::record`); set once, before clients
    /// arrive.
    pub fn set_ledger(&self, ledger: Ledger) {
        let _ = self.inner.ledger.set(ledger);
    }

    /// The audit ledger, when calls are recorded.
    pub fn ledger(&self) -> Option<&Ledger> {
        self.inner.ledger.get()
    }

    /// What `/metrics` shows of this gateway.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Where keys of upstreams that take one per person, or keep a shared one in the
    /// vault, come from; set once, before clients arrive.
    pub fn set_key_source(&self, source: KeySource) {
        let _ = self.inner.keys.set(source);
    }

    /// A key of `owner` (a person's user id, or the vault's `SHARED` owner) for
    /// `upstream` was set, replaced or removed: the connections built with the old one
    /// end once their calls are done, and one with the new key, if any, connects now (so
    /// that what the upstream offers is known before the first call).
    pub fn credential_changed(&self, owner: &str, upstream: &str) {
        let Some(keyed) = self.inner.keyed.get(upstream) else {
            return;
        };
        if owner == warrant_consent::vault::SHARED {
            keyed.forget_all();
        } else {
            keyed.forget(owner);
        }
        self.connect_keyed(owner, upstream);
    }

    /// Opens the connection of `upstream` with `owner`'s key now, in the background:
    /// after a key changed, and at start for one key of each upstream that lists what
    /// it offers only to a caller with a key.
    pub fn connect_keyed(&self, owner: &str, upstream: &str) {
        let Some(main) = self
            .inner
            .views
            .upstreams()
            .iter()
            .find(|u| u.name() == upstream && u.config.auth.keyed())
            .cloned()
        else {
            return;
        };
        let (gateway, owner) = (self.clone(), owner.to_owned());
        tokio::spawn(async move {
            match gateway.keyed_credentials(&main, &owner, false).await {
                Ok(credentials) => {
                    if let Some(connection) = credentials.keyed() {
                        connection.start();
                    }
                }
                Err(e) => {
                    tracing::debug!(upstream = %main.name(), "no connection with the new key: {e}")
                }
            }
        });
    }

    /// How many connections per key `upstream` has open.
    pub fn keyed_connections(&self, upstream: &str) -> usize {
        self.inner.keyed.get(upstream).map_or(0, |k| k.open())
    }

    /// Stage 5: the connection that carries the right key for a call of `upstream`.
    pub(super) async fn credentials(
        &self,
        upstream: &Upstream,
        caller: Option<&Caller>,
        elicit: bool,
    ) -> Result<Credentials, GatewayError> {
        if !upstream.config.auth.keyed() {
            return Ok(Credentials::CONFIGURED);
        }
        let owner = credentials::owner_of(upstream, caller)?;
        self.keyed_credentials(upstream, owner, elicit).await
    }

    /// Stage 5 on the direct path: the connection for a call of the tool exposed as
    /// `name` to clients of `era`. Nothing to find when no upstream takes keys.
    pub(super) async fn credentials_for_tool(
        &self,
        era: Era,
        name: &str,
        caller: Option<&Caller>,
    ) -> Result<Credentials, GatewayError> {
        if self.inner.keyed.is_empty() {
            return Ok(Credentials::CONFIGURED);
        }
        match self.view(era).tool(name) {
            Some(route) => self.credentials(&route.upstream, caller, false).await,
            None => Ok(Credentials::CONFIGURED),
        }
    }

    /// The connection a request of the MCP handler (`prompts/get`, `resources/read`) to
    /// `upstream` goes on: the one with the caller's key where the upstream takes one
    /// per person (or a shared key from the vault), else `upstream` itself.
    pub(super) async fn connection_for(
        &self,
        upstream: &Arc<Upstream>,
        context: &RequestContext<RoleServer>,
    ) -> Result<Arc<Upstream>, GatewayError> {
        if !upstream.config.auth.keyed() {
            return Ok(upstream.clone());
        }
        let caller = token_caller(context);
        let elicit = declares_url_elicitation(context, era_of(context));
        let credentials = self.credentials(upstream, caller.as_ref(), elicit).await?;
        Ok(credentials.upstream(upstream).clone())
    }

    async fn keyed_credentials(
        &self,
        upstream: &Upstream,
        owner: &str,
        elicit: bool,
    ) -> Result<Credentials, GatewayError> {
        let keyed = self.inner.keyed.get(upstream.name()).map(|k| &**k);
        credentials::for_call(keyed, self.inner.keys.get(), upstream, owner, elicit).await
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
            .views
            .upstreams()
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

    /// The current aggregated view for clients of `era`.
    pub(super) fn view(&self, era: Era) -> Arc<Aggregate> {
        self.inner.views.current(era)
    }

    /// The upstream and tool an exposed tool name routes to now, as a decision names
    /// them (for calls nobody decided: without tokens).
    pub(super) fn routed(&self, name: &str) -> Option<Authorized> {
        self.view(Era::Modern).tool(name).map(|route| Authorized {
            server: route.server.clone(),
            tool: route.original.clone(),
            risk: route.risk,
        })
    }

    /// Lets lazy upstreams start and starting ones finish before a list is answered.
    pub(super) async fn settle_for_listing(&self, era: Era) {
        self.inner.views.settle(era).await;
    }

    /// The view of `era`, once the upstreams a request names had their chance to start.
    pub(super) async fn settled_view(
        &self,
        era: Era,
        found: impl Fn(&Aggregate) -> bool,
    ) -> Arc<Aggregate> {
        self.inner.views.settled(era, found).await
    }

    /// Why a name that routes nowhere is unknown: maybe its upstream is down.
    pub(super) fn unknown(&self, name: &str, not_found: GatewayError) -> GatewayError {
        self.inner.views.unknown(name, not_found)
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
        self.inner.clients.log_level(&Self::session_id(context))
    }

    pub(super) fn session_id(context: &RequestContext<RoleServer>) -> String {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.headers.get(&MCP_SESSION_ID))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub(super) fn auth(&self) -> Option<&Arc<McpAuth>> {
        self.inner.auth.as_ref()
    }

    /// Tells every client that its tool list may have changed, for a reason outside
    /// the upstreams that concerns everyone.
    pub fn tools_changed(&self) {
        self.inner.views.changes().publish("", Change::Tools);
    }

    pub(super) fn separator(&self) -> &str {
        self.inner.views.separator()
    }

    pub(super) fn page_size(&self) -> usize {
        self.inner.page_size
    }

    pub(super) fn changes(&self) -> tokio::sync::broadcast::Receiver<(String, Change)> {
        self.inner.views.changes().subscribe()
    }

    pub(super) fn versions(&self) -> &[ProtocolVersion] {
        &self.inner.versions
    }

    /// Remembers a client session once it is initialized.
    pub(super) fn register_session(&self, id: String, peer: Peer<RoleServer>) {
        self.inner.clients.register(id, peer);
    }
}

impl Gateway {
    /// Why a prompt name routes nowhere: the prompt is quarantined, or it is unknown
    /// (maybe because its upstream is down).
    pub(super) fn missing_prompt(&self, view: &Aggregate, name: &str) -> GatewayError {
        match view.quarantined_prompt(name) {
            Some(q) => GatewayError::EntryQuarantined {
                kind: EntryKind::Prompt.label(),
                name: name.to_owned(),
                upstream: q.upstream.clone(),
            },
            None => self.unknown(name, GatewayError::UnknownPrompt(name.to_owned())),
        }
    }

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
            .views
            .upstreams()
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
        let mut changes = self.inner.views.catalog().subscribe();
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut last = changes.borrow_and_update().clone();
            loop {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    () = gateway.inner.shutdown.cancelled() => return,
                }
                let next = changes.borrow_and_update().clone();
                let reclassified = reclassified(gateway.inner.views.upstreams(), &last, &next);
                if !reclassified.is_empty() {
                    gateway.tools_changed_for(Audience::Tools(reclassified));
                }
                for change in entry_lists_changed(gateway.inner.views.upstreams(), &last, &next) {
                    gateway.inner.views.changes().publish("", change);
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

/// How often the revocation set is compared with what was seen before.
const REVOCATION_WATCH: std::time::Duration = std::time::Duration::from_secs(1);

impl Gateway {
    /// Tells the clients in `audience` (and nobody else) that their tool list may have
    /// changed: their sessions of the older revisions, and their 2026-07-28
    /// `subscriptions/listen` streams.
    pub fn tools_changed_for(&self, audience: Audience) {
        self.inner.clients.tell(
            audience,
            self.auth().map(Arc::as_ref),
            self.inner.views.changes(),
        );
    }

    /// Whether a change for `audience` concerns the client calling with `caller`'s
    /// verified token (none without tokens: those clients hear every change anyway).
    pub(super) fn concerns(&self, audience: &Audience, caller: Option<&Caller>) -> bool {
        concerns(audience, self.auth().map(Arc::as_ref), caller)
    }

    /// The audiences of list changes that concern some clients only (see
    /// [`Self::tools_changed_for`]).
    pub(super) fn personal_changes(&self) -> tokio::sync::broadcast::Receiver<Arc<Audience>> {
        self.inner.clients.personal_changes()
    }

    /// Follows the revocation set (refreshed elsewhere every second, updated at once by
    /// revocations made here): the clients of a grant that was just revoked are told,
    /// and the connections built with the keys of a person just disabled end.
    pub fn follow_revocations(&self, revoked: RevokedSet) {
        if self.auth().is_none() {
            return;
        }
        let gateway = self.clone();
        let mut seen = revoked.current();
        let mut seen_disabled = revoked.disabled();
        Periodic::every(
            REVOCATION_WATCH,
            "cannot follow the revocations",
            "revocations followed again",
        )
        .spawn(self.inner.shutdown.clone(), move || {
            let now = revoked.current();
            if !Arc::ptr_eq(&now, &seen) {
                let fresh = newly_revoked(&seen, &now);
                seen = now;
                if !fresh.is_empty() {
                    // Revocation ids of single tokens are in the set too; only grants
                    // that have clients here match anything.
                    gateway.tools_changed_for(Audience::Grants(fresh));
                }
            }
            let disabled = revoked.disabled();
            if !Arc::ptr_eq(&disabled, &seen_disabled) {
                for person in disabled.keys().filter(|p| !seen_disabled.contains_key(*p)) {
                    for keyed in gateway.inner.keyed.values() {
                        keyed.forget(person);
                    }
                }
                seen_disabled = disabled;
            }
            std::future::ready(Ok::<(), std::convert::Infallible>(()))
        });
    }
}

/// The ids in `now` that were not in `before`.
fn newly_revoked(before: &HashSet<String>, now: &HashSet<String>) -> BTreeSet<String> {
    now.difference(before).cloned().collect()
}
