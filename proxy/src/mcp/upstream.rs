//! One upstream MCP server: its connection, its health, what it offers, and the
//! supervisor that keeps it connected.
//!
//! The supervisor connects (spawning a stdio child, or opening an HTTP client), lists
//! what the server offers, and then waits for the connection to end; when it does (the
//! process exited, the server went away), the upstream is `down` with the reason, its
//! tools are withdrawn from the aggregated lists, and the supervisor reconnects with
//! exponential backoff (1 s doubling up to `restart_backoff_max`). A request for a down
//! upstream gets a clear error naming the reason; every other upstream keeps serving.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rmcp::model::{
    ClientRequest, ProgressToken, Prompt, RequestId, Resource, ResourceTemplate,
    ServerCapabilities, Tool,
};
use rmcp::service::{Peer, RequestHandle, RunningService};
use rmcp::{RoleClient, RoleServer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::UpstreamClient;
use super::connect;
use super::error::GatewayError;
use crate::config::{StartMode, UpstreamConfig};

/// Health of an upstream, as reported by `/readyz` and in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not started yet (a lazy upstream before its first use).
    Idle,
    Starting,
    Ready,
    /// Down, with the reason; the supervisor is retrying.
    Down(String),
    /// Stopped for good (gateway shutting down).
    Stopped,
}

impl Health {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Down(_) => "down",
            Self::Stopped => "stopped",
        }
    }
}

/// What an upstream offers, as last listed.
#[derive(Debug, Default, Clone)]
pub(crate) struct Offer {
    pub(crate) tools: Vec<Tool>,
    pub(crate) prompts: Vec<Prompt>,
    pub(crate) resources: Vec<Resource>,
    pub(crate) templates: Vec<ResourceTemplate>,
    pub(crate) capabilities: Option<ServerCapabilities>,
}

/// A downstream request that is waiting on this upstream: where its progress and any
/// request the upstream makes back (elicitation, sampling, roots) must go.
#[derive(Clone)]
pub(crate) struct Inflight {
    pub(crate) downstream: Peer<RoleServer>,
    pub(crate) downstream_request: RequestId,
    pub(crate) downstream_progress: Option<ProgressToken>,
}

/// Announces changes that the aggregated view and the connected clients must pick up:
/// an epoch counter (the view rebuilds when it moved) and a broadcast of each change.
#[derive(Clone)]
pub(crate) struct Changes {
    tx: tokio::sync::broadcast::Sender<(String, Change)>,
    epoch: Arc<std::sync::atomic::AtomicU64>,
}

impl Changes {
    pub(crate) fn new() -> Self {
        Self {
            tx: tokio::sync::broadcast::channel(256).0,
            epoch: Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    fn publish(&self, upstream: &str, change: Change) {
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _ = self.tx.send((upstream.to_owned(), change));
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(String, Change)> {
        self.tx.subscribe()
    }
}

/// A change in what an upstream offers or in its health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Tools,
    Prompts,
    Resources,
    /// Came up or went down: everything it offers changed at once.
    Health,
}

pub(crate) struct Upstream {
    pub(crate) config: UpstreamConfig,
    health: watch::Sender<Health>,
    peer: RwLock<Option<Peer<RoleClient>>>,
    offer: RwLock<Arc<Offer>>,
    inflight: Mutex<Inflights>,
    /// Downstream sessions subscribed to a resource URI of this upstream.
    subscribers: Mutex<HashMap<String, Vec<Subscriber>>>,
    changes: Changes,
    start_once: std::sync::Once,
    shutdown: CancellationToken,
}

/// A downstream session (by its session id) subscribed to a resource.
type Subscriber = (String, Peer<RoleServer>);

#[derive(Default)]
struct Inflights {
    by_request: HashMap<RequestId, Inflight>,
    by_progress: HashMap<ProgressToken, (RequestId, Arc<ProgressCount>)>,
}

/// Progress notifications of one call: how many arrived (counted in the order the
/// transport received them) and how many were passed on. rmcp handles notifications
/// in tasks of their own, so a call waits for its progress to be passed on before it
/// returns its result; otherwise the last notification could trail the response.
#[derive(Default)]
pub(crate) struct ProgressCount {
    received: std::sync::atomic::AtomicU64,
    forwarded: std::sync::atomic::AtomicU64,
    changed: tokio::sync::Notify,
}

impl ProgressCount {
    pub(crate) fn received(&self) {
        self.received
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    pub(crate) fn forwarded(&self) {
        self.forwarded
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        self.changed.notify_waiters();
    }

    /// Waits (briefly) until every received notification was passed on.
    async fn settle(&self) {
        use std::sync::atomic::Ordering::Acquire;
        let wait = async {
            loop {
                let changed = self.changed.notified();
                if self.forwarded.load(Acquire) >= self.received.load(Acquire) {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), wait).await;
    }
}

impl Upstream {
    pub(crate) fn new(
        config: UpstreamConfig,
        changes: Changes,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            health: watch::Sender::new(Health::Idle),
            peer: RwLock::new(None),
            offer: RwLock::new(Arc::default()),
            inflight: Mutex::new(Inflights::default()),
            subscribers: Mutex::new(HashMap::new()),
            changes,
            start_once: std::sync::Once::new(),
            shutdown,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn health(&self) -> Health {
        self.health.borrow().clone()
    }

    /// What the upstream offers (empty while it is not ready).
    pub(crate) fn offer(&self) -> Arc<Offer> {
        self.offer.read().map(|o| o.clone()).unwrap_or_default()
    }

    /// Starts the supervisor (once). Eager upstreams are started at boot, lazy ones on
    /// their first use.
    pub(crate) fn start(self: &Arc<Self>) {
        self.start_once.call_once(|| {
            let this = self.clone();
            tokio::spawn(async move { this.supervise().await });
        });
    }

    /// The connected peer, waiting (up to the connect timeout) for a starting upstream;
    /// a clear error when it is down.
    pub(crate) async fn peer(self: &Arc<Self>) -> Result<Peer<RoleClient>, GatewayError> {
        if self.config.start == StartMode::Lazy {
            self.start();
        }
        let mut rx = self.health.subscribe();
        let wait = async {
            loop {
                let health = rx.borrow_and_update().clone();
                match health {
                    Health::Ready => {
                        if let Some(peer) = self.peer.read().ok().and_then(|p| p.clone()) {
                            return Ok(peer);
                        }
                    }
                    Health::Down(reason) => return Err(self.unavailable(reason)),
                    Health::Stopped => {
                        return Err(self.unavailable("the gateway is shutting down".into()));
                    }
                    Health::Idle | Health::Starting => {}
                }
                if rx.changed().await.is_err() {
                    return Err(self.unavailable("its supervisor stopped".into()));
                }
            }
        };
        match tokio::time::timeout(self.config.connect_timeout, wait).await {
            Ok(result) => result,
            Err(_) => Err(self.unavailable(format!(
                "it did not become ready within {}",
                humantime::format_duration(self.config.connect_timeout)
            ))),
        }
    }

    fn unavailable(&self, reason: String) -> GatewayError {
        GatewayError::UpstreamUnavailable {
            upstream: self.config.name.clone(),
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
            match &health {
                Health::Down(reason) => {
                    tracing::warn!(upstream = %self.config.name, %reason, "upstream down")
                }
                other => {
                    tracing::info!(upstream = %self.config.name, state = other.label(), "upstream state")
                }
            }
        }
    }

    async fn supervise(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            if self.shutdown.is_cancelled() {
                break;
            }
            self.set_health(Health::Starting);
            let client = UpstreamClient::new(Arc::downgrade(&self));
            let connecting = connect::connect(&self.config, client);
            let outcome = tokio::select! {
                r = tokio::time::timeout(self.config.connect_timeout, connecting) => r,
                () = self.shutdown.cancelled() => break,
            };
            let running = match outcome {
                Ok(Ok(running)) => running,
                Ok(Err(e)) => {
                    self.went_down(format!("cannot connect: {e}"));
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
                Err(_) => {
                    self.went_down(format!(
                        "no answer to initialize within {}",
                        humantime::format_duration(self.config.connect_timeout)
                    ));
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            };
            match self.come_up(&running).await {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(reason) => {
                    let _ = running.cancel().await;
                    self.went_down(reason);
                    if !self.back_off(&mut backoff).await {
                        break;
                    }
                    continue;
                }
            }
            let ct = running.cancellation_token();
            let reason = tokio::select! {
                r = running.waiting() => match r {
                    Ok(quit) => format!("connection ended ({quit:?})"),
                    Err(e) => format!("connection task failed: {e}"),
                },
                () = self.shutdown.cancelled() => {
                    ct.cancel();
                    break;
                }
            };
            self.went_down(reason);
            if !self.back_off(&mut backoff).await {
                break;
            }
        }
        if let Ok(mut peer) = self.peer.write() {
            *peer = None;
        }
        self.set_health(Health::Stopped);
    }

    /// Lists what a fresh connection offers and publishes it.
    async fn come_up(
        &self,
        running: &RunningService<RoleClient, UpstreamClient>,
    ) -> Result<(), String> {
        let peer = running.peer().clone();
        let offer = list_offer(&peer).await?;
        tracing::info!(
            upstream = %self.config.name,
            tools = offer.tools.len(),
            prompts = offer.prompts.len(),
            resources = offer.resources.len(),
            protocol = ?peer.peer_info().map(|i| i.protocol_version.to_string()),
            "upstream connected"
        );
        if let Ok(mut slot) = self.offer.write() {
            *slot = Arc::new(offer);
        }
        if let Ok(mut slot) = self.peer.write() {
            *slot = Some(peer);
        }
        self.set_health(Health::Ready);
        self.changes.publish(&self.config.name, Change::Health);
        Ok(())
    }

    fn went_down(&self, reason: String) {
        if let Ok(mut peer) = self.peer.write() {
            *peer = None;
        }
        if let Ok(mut offer) = self.offer.write() {
            *offer = Arc::default();
        }
        self.set_health(Health::Down(reason));
        self.changes.publish(&self.config.name, Change::Health);
        // Calls waiting on the dead connection get their error from rmcp (the response
        // channel closes); forget their routing entries.
        if let Ok(mut inflight) = self.inflight.lock() {
            *inflight = Inflights::default();
        }
    }

    /// Sleeps the backoff (doubling it); false when the gateway is shutting down.
    async fn back_off(&self, backoff: &mut Duration) -> bool {
        let delay = *backoff;
        *backoff = (*backoff * 2).min(self.config.restart_backoff_max);
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    /// Re-lists one kind of offer after the upstream said it changed.
    pub(crate) async fn refresh(&self, change: Change) {
        let Some(peer) = self.peer.read().ok().and_then(|p| p.clone()) else {
            return;
        };
        let mut offer = (*self.offer()).clone();
        let result = match change {
            Change::Tools => peer.list_all_tools().await.map(|t| offer.tools = t),
            Change::Prompts => peer.list_all_prompts().await.map(|p| offer.prompts = p),
            Change::Resources => match peer.list_all_resources().await {
                Ok(r) => {
                    offer.resources = r;
                    peer.list_all_resource_templates()
                        .await
                        .map(|t| offer.templates = t)
                }
                Err(e) => Err(e),
            },
            Change::Health => return,
        };
        match result {
            Ok(()) => {
                if let Ok(mut slot) = self.offer.write() {
                    *slot = Arc::new(offer);
                }
                self.changes.publish(&self.config.name, change);
            }
            Err(e) => {
                tracing::warn!(upstream = %self.config.name, error = %e, "cannot re-list after a change")
            }
        }
    }

    /// Sends a request upstream on behalf of a downstream request, with the call timeout
    /// and with cancellation from the downstream side forwarded.
    pub(crate) async fn forward(
        self: &Arc<Self>,
        request: ClientRequest,
        origin: Option<Inflight>,
        cancel: &CancellationToken,
    ) -> Result<rmcp::model::ServerResult, GatewayError> {
        let peer = self.peer().await?;
        let handle: RequestHandle<RoleClient> = peer
            .send_cancellable_request(request, rmcp::service::PeerRequestOptions::no_options())
            .await
            .map_err(|e| self.call_failed(e))?;
        let id = handle.id.clone();
        let progress =
            origin.map(|origin| self.track(id.clone(), handle.progress_token.clone(), origin));
        let timeout = self.config.call_timeout;
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, handle.await_response()) => match r {
                Ok(Ok(result)) => Ok(result),
                Ok(Err(e)) => Err(self.call_failed(e)),
                Err(_) => {
                    self.cancel_upstream(&peer, &id, "the gateway's call timeout elapsed").await;
                    Err(GatewayError::UpstreamTimeout {
                        upstream: self.config.name.clone(),
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
        self.untrack(&id);
        outcome
    }

    async fn cancel_upstream(&self, peer: &Peer<RoleClient>, id: &RequestId, reason: &str) {
        let params =
            rmcp::model::CancelledNotificationParam::new(Some(id.clone()), Some(reason.to_owned()));
        if let Err(e) = peer.notify_cancelled(params).await {
            tracing::debug!(upstream = %self.config.name, error = %e, "could not forward cancellation");
        }
    }

    fn call_failed(&self, error: rmcp::ServiceError) -> GatewayError {
        use rmcp::ServiceError as E;
        match error {
            E::McpError(data) => GatewayError::Upstream(data),
            E::TransportClosed => GatewayError::UpstreamFailed {
                upstream: self.config.name.clone(),
                reason: "the connection closed during the call (the server exited or went away)"
                    .into(),
            },
            other => GatewayError::UpstreamFailed {
                upstream: self.config.name.clone(),
                reason: other.to_string(),
            },
        }
    }

    fn track(
        &self,
        id: RequestId,
        progress: ProgressToken,
        origin: Inflight,
    ) -> Arc<ProgressCount> {
        let count = Arc::new(ProgressCount::default());
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight
                .by_progress
                .insert(progress, (id.clone(), count.clone()));
            inflight.by_request.insert(id, origin);
        }
        count
    }

    fn untrack(&self, id: &RequestId) {
        if let Ok(mut inflight) = self.inflight.lock()
            && inflight.by_request.remove(id).is_some()
        {
            inflight.by_progress.retain(|_, (v, _)| v != id);
        }
    }

    /// The downstream request a message from this upstream belongs to: the one whose
    /// upstream request id it names, or else the only one in flight.
    pub(crate) fn origin_of(&self, upstream_request: Option<&RequestId>) -> Option<Inflight> {
        let inflight = self.inflight.lock().ok()?;
        if let Some(origin) = upstream_request.and_then(|id| inflight.by_request.get(id)) {
            return Some(origin.clone());
        }
        if inflight.by_request.len() == 1 {
            return inflight.by_request.values().next().cloned();
        }
        None
    }

    /// The downstream request (and its own progress token) for an upstream progress
    /// token, with the call's progress count.
    pub(crate) fn origin_of_progress(
        &self,
        token: &ProgressToken,
    ) -> Option<(Inflight, Arc<ProgressCount>)> {
        let inflight = self.inflight.lock().ok()?;
        let (id, count) = inflight.by_progress.get(token)?;
        Some((inflight.by_request.get(id)?.clone(), count.clone()))
    }

    /// Counts a progress notification as the transport receives it, in order.
    pub(crate) fn progress_arrived(&self, token: &ProgressToken) {
        if let Ok(inflight) = self.inflight.lock()
            && let Some((_, count)) = inflight.by_progress.get(token)
        {
            count.received();
        }
    }

    /// Remembers that a downstream session wants updates of `uri`.
    pub(crate) fn subscribe(&self, uri: &str, session: &str, peer: Peer<RoleServer>) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            let list = subscribers.entry(uri.to_owned()).or_default();
            list.retain(|(s, p)| s != session && !p.is_transport_closed());
            list.push((session.to_owned(), peer));
        }
    }

    /// Forgets a subscription; true when nobody else is subscribed to `uri`.
    pub(crate) fn unsubscribe(&self, uri: &str, session: &str) -> bool {
        let Ok(mut subscribers) = self.subscribers.lock() else {
            return false;
        };
        let Some(list) = subscribers.get_mut(uri) else {
            return true;
        };
        list.retain(|(s, p)| s != session && !p.is_transport_closed());
        if list.is_empty() {
            subscribers.remove(uri);
            true
        } else {
            false
        }
    }

    /// Passes a `notifications/resources/updated` on to every subscribed session.
    pub(crate) async fn resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
    ) {
        let peers = self
            .subscribers
            .lock()
            .ok()
            .and_then(|s| s.get(&params.uri).cloned())
            .unwrap_or_default();
        for (_, peer) in peers {
            if let Err(e) = peer.notify_resource_updated(params.clone()).await {
                tracing::debug!(upstream = %self.config.name, error = %e, "cannot forward a resource update");
            }
        }
    }
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
