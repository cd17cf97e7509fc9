//! One connection to an upstream, in one protocol era, and the supervisor that keeps it
//! connected.
//!
//! The supervisor connects (spawning a stdio child, or opening an HTTP client), lists
//! what the server offers, and then waits for the connection to end; when it does (the
//! process exited, the server went away), the lane is `down` with the reason, its tools
//! are withdrawn from the aggregated lists, and the supervisor reconnects with
//! exponential backoff (1 s doubling up to `restart_backoff_max`). A request for a down
//! lane gets a clear error naming the reason; every other upstream keeps serving.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{
    ClientRequest, Prompt, RequestId, Resource, ResourceTemplate, ServerCapabilities,
    ServerNotification, SubscriptionFilter, Tool,
};
use rmcp::service::{ClientInitializeError, Peer, RequestHandle, RunningService};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::{LaneLink, UpstreamClient};
use super::connect::{self, ConnectError};
use super::inflight::{Calls, Inflight};
use super::session::SessionSlot;
use super::session_pool::SessionPool;
use super::shared::Shared;
use super::state::{Change, Health, LaneError};
use super::target::Target;
use crate::locks::{Locked, ReadWrite};
use crate::protocol::era::Era;
use crate::protocol::error::GatewayError;

/// What an upstream offers, as last listed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Offer {
    pub(crate) tools: Vec<Tool>,
    pub(crate) prompts: Vec<Prompt>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) templates: Vec<ResourceTemplate>,
    pub(crate) capabilities: Option<ServerCapabilities>,
}

impl Offer {
    /// Whether it offers nothing at all.
    pub(crate) fn is_empty(&self) -> bool {
        self.tools.is_empty()
            && self.prompts.is_empty()
            && self.resources.is_empty()
            && self.templates.is_empty()
    }
}

pub(crate) struct Lane {
    pub(crate) era: Era,
    pub(crate) shared: Arc<Shared>,
    health: watch::Sender<Health>,
    peer: RwLock<Option<Peer<RoleClient>>>,
    offer: RwLock<Arc<Offer>>,
    protocol: RwLock<Option<String>>,
    /// The negotiated revision as the `MCP-Protocol-Version` header of direct calls.
    protocol_header: RwLock<Option<http::HeaderValue>>,
    /// The calls in flight on this lane.
    pub(crate) calls: Calls,
    start_once: std::sync::Once,
    /// The direct data path to this upstream, when it has one (see `upstream::direct`).
    direct: Option<Arc<Target>>,
    /// The upstream's sessions the direct path calls into: the lane's own (its id as
    /// the Streamable HTTP transport last saw it) and the extra ones configured.
    sessions: SessionPool,
    /// Ends the current connection (see [`Self::reconnect`]).
    connection: Mutex<Option<rmcp::service::RunningServiceCancellationToken>>,
    /// Set by [`Self::reconnect`]: the connection ends without the lane going down.
    reconnecting: std::sync::atomic::AtomicBool,
}

impl Lane {
    pub(crate) fn new(era: Era, shared: Arc<Shared>) -> Arc<Self> {
        let direct = direct_target(&shared.config).map(Arc::new);
        Arc::new(Self {
            era,
            direct,
            sessions: SessionPool::new(shared.config.sessions),
            connection: Mutex::new(None),
            reconnecting: std::sync::atomic::AtomicBool::new(false),
            shared,
            health: watch::Sender::new(Health::Idle),
            peer: RwLock::new(None),
            offer: RwLock::new(Arc::default()),
            protocol: RwLock::new(None),
            protocol_header: RwLock::new(None),
            calls: Calls::default(),
            start_once: std::sync::Once::new(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.shared.config.name
    }

    pub(crate) fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    pub(crate) fn protocol(&self) -> Option<String> {
        self.protocol.reading().clone()
    }

    /// The negotiated revision, as a header value.
    pub(crate) fn protocol_header(&self) -> Option<http::HeaderValue> {
        self.protocol_header.reading().clone()
    }

    /// What the lane's connection offers (empty while it is not ready).
    pub(crate) fn offer(&self) -> Arc<Offer> {
        self.offer.reading().clone()
    }

    /// Where direct calls go, while the lane is ready (and, for a legacy lane, while
    /// the upstream's session id is known).
    pub(crate) fn direct_target(&self) -> Option<Arc<Target>> {
        let target = self.direct.as_ref()?;
        if self.health() != Health::Ready {
            return None;
        }
        if self.era == Era::Legacy && !self.sessions.own().is_known() {
            return None;
        }
        Some(target.clone())
    }

    /// How many connections the direct path opened to this lane's upstream.
    pub(crate) fn direct_connections_opened(&self) -> u64 {
        self.direct
            .as_ref()
            .map_or(0, |target| target.connections.opened())
    }

    /// The upstream ended a session a direct call went into: until a new one is open
    /// (rmcp opens the lane's own again), calls go into the others, or the rmcp way.
    pub(crate) fn session_ended(&self, session: &SessionSlot) {
        self.sessions.ended(session);
    }

    /// The session the next direct call goes into (see [`SessionPool::pick`]).
    pub(crate) fn pick_session(&self) -> &SessionSlot {
        self.sessions.pick()
    }

    /// How many of the upstream's sessions the direct path can call into now.
    pub(crate) fn open_sessions(&self) -> usize {
        self.sessions.known()
    }

    /// The upstream no longer works the way its connection learned (a stateless server
    /// restarted with sessions): connect again at once, without a backoff. Until the new
    /// connection is ready the lane is `starting`, and calls wait for it.
    pub(crate) fn reconnect(&self, why: &str) {
        use std::sync::atomic::Ordering;
        self.sessions.close();
        self.sessions.own().clear();
        let Some(connection) = self.connection.locked().take() else {
            return;
        };
        tracing::info!(upstream = %self.name(), era = self.era.label(), why, "reconnecting");
        self.reconnecting.store(true, Ordering::Release);
        self.set_health(Health::Starting);
        connection.cancel();
    }

    pub(crate) fn mark_unsupported(&self) {
        self.set_health(Health::Unsupported);
    }

    /// Starts the supervisor (once).
    pub(crate) fn start(self: &Arc<Self>) {
        if self.health() == Health::Unsupported {
            return;
        }
        self.start_once.call_once(|| {
            let this = self.clone();
            tokio::spawn(async move { this.supervise().await });
        });
    }

    /// Waits (up to the connect timeout) until the lane is ready, or says why not.
    pub(crate) async fn wait_ready(&self) -> Result<(), LaneError> {
        let mut rx = self.health.subscribe();
        let wait = async {
            loop {
                let health = rx.borrow_and_update().clone();
                match health {
                    Health::Ready => return Ok(()),
                    Health::Down(reason) => return Err(LaneError::Unavailable(reason)),
                    Health::Unsupported => return Err(LaneError::Unsupported),
                    Health::Stopped => {
                        return Err(LaneError::Unavailable(
                            "the gateway is shutting down".into(),
                        ));
                    }
                    Health::Idle | Health::Starting => {}
                }
                if rx.changed().await.is_err() {
                    return Err(LaneError::Unavailable("its supervisor stopped".into()));
                }
            }
        };
        let timeout = self.shared.config.connect_timeout;
        match tokio::time::timeout(timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(LaneError::Unavailable(format!(
                "it did not become ready within {}",
                humantime::format_duration(timeout)
            ))),
        }
    }

    fn unavailable(&self, reason: String) -> GatewayError {
        GatewayError::UpstreamUnavailable {
            upstream: self.shared.config.name.clone(),
            reason,
        }
    }

    fn set_health(&self, health: Health) {
        let changed = self.health.send_if_modified(|h| {
            if *h == health {
                false
            } else {
                *h = health.clone();
                true
            }
        });
        if changed {
            let name = &self.shared.config.name;
            let era = self.era.label();
            match &health {
                Health::Down(reason) => {
                    tracing::warn!(upstream = %name, era, %reason, "upstream down")
                }
                other => {
                    tracing::info!(upstream = %name, era, state = other.label(), "upstream state")
                }
            }
        }
    }

    async fn supervise(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        let shutdown = self.shared.shutdown.clone();
        let connect_timeout = self.shared.config.connect_timeout;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            self.set_health(Health::Starting);
            let link: std::sync::Weak<dyn LaneLink> = Arc::downgrade(&self) as _;
            let client = UpstreamClient::new(link);
            let connecting = connect::connect(&self.shared.config, self.era, client);
            let outcome = tokio::select! {
                r = tokio::time::timeout(connect_timeout, connecting) => r,
                () = shutdown.cancelled() => break,
            };
            let running = match outcome {
                Ok(Ok(running)) => running,
                Ok(Err(ConnectError::Initialize(e))) if speaks_another_era(&e) => {
                    self.unsupported(&format!("{e}"));
                    return;
                }
                Ok(Err(e)) => {
                    self.went_down(format!("cannot connect: {e}"));
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
                Err(_) => {
                    self.went_down(format!(
                        "no answer to the handshake within {}",
                        humantime::format_duration(connect_timeout)
                    ));
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            let negotiated = running
                .peer()
                .peer_info()
                .map(|i| i.protocol_version.clone());
            if let Some(version) = &negotiated
                && Era::of(version) != self.era
            {
                let _ = running.cancel().await;
                self.unsupported(&format!("it answered in revision {version}"));
                return;
            }
            {
                let mut connection = self.connection.locked();
                *connection = Some(running.cancellation_token());
            }
            match self.come_up(&running).await {
                Ok(()) => {
                    backoff = Duration::from_secs(1);
                    let link: std::sync::Weak<dyn LaneLink> = Arc::downgrade(&self) as _;
                    self.sessions.open(link, self.era, &shutdown);
                }
                Err(reason) => {
                    {
                        let mut connection = self.connection.locked();
                        *connection = None;
                    }
                    self.reconnecting
                        .store(false, std::sync::atomic::Ordering::Release);
                    let _ = running.cancel().await;
                    self.went_down(reason);
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            }
            let listening = self.listen_for_changes(running.peer().clone());
            let ct = running.cancellation_token();
            let reason = tokio::select! {
                r = running.waiting() => match r {
                    Ok(quit) => format!("connection ended ({quit:?})"),
                    Err(e) => format!("connection task failed: {e}"),
                },
                () = shutdown.cancelled() => {
                    ct.cancel();
                    break;
                }
            };
            if let Some(task) = listening {
                task.abort();
            }
            self.sessions.close();
            {
                let mut connection = self.connection.locked();
                *connection = None;
            }
            if self
                .reconnecting
                .swap(false, std::sync::atomic::Ordering::AcqRel)
            {
                {
                    let mut peer = self.peer.writing();
                    *peer = None;
                }
                continue;
            }
            self.went_down(reason);
            if !self.back_off(&mut backoff).await {
                break;
            }
        }
        {
            let mut peer = self.peer.writing();
            *peer = None;
        }
        self.set_health(Health::Stopped);
    }

    /// The upstream does not speak this lane's era: its clients move to the other lane.
    fn unsupported(&self, why: &str) {
        tracing::info!(upstream = %self.name(), era = self.era.label(), why, "protocol era not spoken");
        self.mark_unsupported();
        self.shared.mark_unsupported(self.era);
    }

    /// Lists what a fresh connection offers and publishes it.
    async fn come_up(
        &self,
        running: &RunningService<RoleClient, UpstreamClient>,
    ) -> Result<(), String> {
        let peer = running.peer().clone();
        let offer = list_offer(&peer).await?;
        let protocol = peer.peer_info().map(|i| i.protocol_version.to_string());
        tracing::info!(
            upstream = %self.name(),
            tools = offer.tools.len(),
            prompts = offer.prompts.len(),
            resources = offer.resources.len(),
            protocol = protocol.as_deref().unwrap_or("?"),
            "upstream connected"
        );
        {
            let mut slot = self.offer.writing();
            *slot = Arc::new(offer);
        }
        {
            let mut slot = self.peer.writing();
            *slot = Some(peer);
        }
        {
            let mut slot = self.protocol_header.writing();
            *slot = protocol
                .as_deref()
                .and_then(|p| http::HeaderValue::from_str(p).ok());
        }
        {
            let mut slot = self.protocol.writing();
            *slot = protocol;
        }
        self.set_health(Health::Ready);
        self.shared.changes.publish(self.name(), Change::Health);
        Ok(())
    }

    /// A 2026-07-28 server announces list changes only on a `subscriptions/listen`
    /// stream: keep one open while the lane is up.
    fn listen_for_changes(
        self: &Arc<Self>,
        peer: Peer<RoleClient>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.era != Era::Modern {
            return None;
        }
        let caps = self.offer().capabilities.clone().unwrap_or_default();
        let mut filter = SubscriptionFilter::new();
        filter.tools_list_changed = caps
            .tools
            .as_ref()
            .and_then(|t| t.list_changed)
            .filter(|c| *c);
        filter.prompts_list_changed = caps
            .prompts
            .as_ref()
            .and_then(|p| p.list_changed)
            .filter(|c| *c);
        filter.resources_list_changed = caps
            .resources
            .as_ref()
            .and_then(|r| r.list_changed)
            .filter(|c| *c);
        if filter.tools_list_changed.is_none()
            && filter.prompts_list_changed.is_none()
            && filter.resources_list_changed.is_none()
        {
            return None;
        }
        let lane = Arc::downgrade(self);
        Some(tokio::spawn(async move {
            let mut subscription = match peer.listen(filter).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for list changes upstream");
                    return;
                }
            };
            while let Ok(Some(notification)) = subscription.next().await {
                let change = match notification {
                    ServerNotification::ToolListChangedNotification(_) => Change::Tools,
                    ServerNotification::PromptListChangedNotification(_) => Change::Prompts,
                    ServerNotification::ResourceListChangedNotification(_) => Change::Resources,
                    _ => continue,
                };
                let Some(lane) = lane.upgrade() else { return };
                lane.refresh(change).await;
            }
        }))
    }

    fn went_down(&self, reason: String) {
        let reason = self.shared.redacted(reason);
        {
            let mut peer = self.peer.writing();
            *peer = None;
        }
        {
            let mut offer = self.offer.writing();
            *offer = Arc::default();
        }
        self.set_health(Health::Down(reason));
        self.shared.changes.publish(self.name(), Change::Health);
        // Calls waiting on the dead connection get their error from rmcp (the response
        // channel closes); forget their routing entries.
        self.calls.clear();
    }

    /// Sleeps the backoff (doubling it); false when the gateway is shutting down.
    async fn back_off(&self, backoff: &mut Duration) -> bool {
        let delay = *backoff;
        *backoff = (*backoff * 2).min(self.shared.config.restart_backoff_max);
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.shared.shutdown.cancelled() => false,
        }
    }

    /// Re-lists one kind of offer after the upstream said it changed.
    /// The fresh list goes into the offer as it is once listed (under the lock), so
    /// that re-lists of different kinds running at once (an upstream announcing its
    /// prompts and its resources together) do not undo each other.
    pub(crate) async fn refresh(&self, change: Change) {
        let Some(peer) = self.peer.reading().clone() else {
            return;
        };
        let mut fresh = Offer::default();
        let result = match change {
            Change::Tools => peer.list_all_tools().await.map(|t| fresh.tools = t),
            Change::Prompts => peer.list_all_prompts().await.map(|p| fresh.prompts = p),
            Change::Resources => match peer.list_all_resources().await {
                Ok(r) => {
                    fresh.resources = r;
                    peer.list_all_resource_templates()
                        .await
                        .map(|t| fresh.templates = t)
                }
                Err(e) => Err(e),
            },
            Change::Health => return,
        };
        match result {
            Ok(()) => {
                {
                    let mut slot = self.offer.writing();
                    let mut offer = (**slot).clone();
                    match change {
                        Change::Tools => offer.tools = fresh.tools,
                        Change::Prompts => offer.prompts = fresh.prompts,
                        Change::Resources => {
                            offer.resources = fresh.resources;
                            offer.templates = fresh.templates;
                        }
                        Change::Health => {}
                    }
                    *slot = Arc::new(offer);
                }
                self.shared.changes.publish(self.name(), change);
            }
            Err(e) => {
                tracing::warn!(upstream = %self.name(), error = %e, "cannot re-list after a change")
            }
        }
    }

    /// Sends a request upstream on behalf of a downstream request, with the call timeout
    /// and with cancellation from the downstream side forwarded.
    pub(crate) async fn forward(
        &self,
        request: ClientRequest,
        origin: Option<Inflight>,
        meta: Option<rmcp::model::RequestMetaObject>,
        cancel: &CancellationToken,
    ) -> Result<rmcp::model::ServerResult, GatewayError> {
        let peer = self
            .peer
            .reading()
            .clone()
            .ok_or_else(|| self.unavailable("it is reconnecting".into()))?;
        // Counted as being sent from before the request leaves until it is tracked: the
        // upstream's first message about it may arrive in between.
        let sending = origin.is_some().then(|| self.calls.sending());
        let handle: RequestHandle<RoleClient> = peer
            .send_cancellable_request(request, request_options(meta))
            .await
            .map_err(|e| self.call_failed(e))?;
        let id = handle.id.clone();
        let progress = origin.map(|origin| {
            self.calls
                .track(id.clone(), handle.progress_token.clone(), origin)
        });
        drop(sending);
        let timeout = self.shared.config.call_timeout;
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, handle.await_response()) => match r {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(e)) => Err(self.call_failed(e)),
                Err(_) => {
                    self.cancel_upstream(&peer, &id, "the gateway's call timeout elapsed").await;
                    Err(GatewayError::UpstreamTimeout {
                        upstream: self.name().to_owned(),
                        after: timeout,
                    })
                }
            },
            () = cancel.cancelled() => {
                self.cancel_upstream(&peer, &id, "the client cancelled the request").await;
                Err(GatewayError::Cancelled)
            }
        };
        if let (Ok(_), Some(progress)) = (&outcome, &progress) {
            progress.settle().await;
        }
        self.calls.untrack(&id);
        outcome
    }

    async fn cancel_upstream(&self, peer: &Peer<RoleClient>, id: &RequestId, reason: &str) {
        let params =
            rmcp::model::CancelledNotificationParam::new(Some(id.clone()), Some(reason.to_owned()));
        if let Err(e) = peer.notify_cancelled(params).await {
            tracing::debug!(upstream = %self.name(), error = %e, "could not forward cancellation");
        }
    }

    fn call_failed(&self, error: rmcp::ServiceError) -> GatewayError {
        use rmcp::ServiceError as E;
        let upstream = self.name().to_owned();
        match error {
            E::McpError(data) => GatewayError::Upstream(data),
            E::TransportClosed => GatewayError::UpstreamFailed {
                upstream,
                reason: "the connection closed during the call (the server exited or went away)"
                    .into(),
            },
            other => GatewayError::UpstreamFailed {
                upstream,
                reason: self.shared.redacted(other.to_string()),
            },
        }
    }
}

fn request_options(
    meta: Option<rmcp::model::RequestMetaObject>,
) -> rmcp::service::PeerRequestOptions {
    let mut options = rmcp::service::PeerRequestOptions::no_options();
    options.meta = meta;
    options
}

/// The direct target of a Streamable HTTP upstream on plain `http`, with its configured
/// headers resolved (when one does not resolve, rmcp's connection reports why).
fn direct_target(config: &crate::config::UpstreamConfig) -> Option<Target> {
    if !config.direct {
        return None;
    }
    let crate::config::Transport::StreamableHttp { url, headers } = &config.transport else {
        return None;
    };
    let headers: http::HeaderMap = connect::header_map(headers).ok()?.into_iter().collect();
    Target::new(url, headers, config.connect_timeout, config.max_connections)
}

/// Whether a failed handshake means "the server answered, but not in this era" (rather
/// than "the server is not there").
fn speaks_another_era(error: &ClientInitializeError) -> bool {
    matches!(
        error,
        ClientInitializeError::JsonRpcError(_)
            | ClientInitializeError::NoCompatibleProtocolVersion { .. }
            | ClientInitializeError::LegacyFallbackFailed { .. }
    )
}

/// Lists everything a server offers, according to its declared capabilities.
async fn list_offer(peer: &Peer<RoleClient>) -> Result<Offer, String> {
    let capabilities = peer.peer_info().map(|info| info.capabilities.clone());
    let caps = capabilities.clone().unwrap_or_default();
    let mut offer = Offer {
        capabilities,
        ..Offer::default()
    };
    if caps.tools.is_some() {
        offer.tools = peer
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {e}"))?;
    }
    if caps.prompts.is_some() {
        offer.prompts = peer
            .list_all_prompts()
            .await
            .map_err(|e| format!("prompts/list failed: {e}"))?;
    }
    if caps.resources.is_some() {
        offer.resources = peer
            .list_all_resources()
            .await
            .map_err(|e| format!("resources/list failed: {e}"))?;
        offer.templates = peer
            .list_all_resource_templates()
            .await
            .map_err(|e| format!("resources/templates/list failed: {e}"))?;
    }
    Ok(offer)
}

impl LaneLink for Lane {
    fn name(&self) -> &str {
        Lane::name(self)
    }

    fn shared(&self) -> &Shared {
        &self.shared
    }

    fn calls(&self) -> &Calls {
        &self.calls
    }

    fn session(&self) -> &SessionSlot {
        self.sessions.own()
    }

    fn refresh(self: Arc<Self>, change: Change) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(async move { Lane::refresh(&self, change).await })
    }
}
