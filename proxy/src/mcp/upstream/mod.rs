//! One upstream MCP server, spoken to in the protocol era of each client.
//!
//! MCP has two eras: revisions up to 2025-11-25 open a session with `initialize`, and
//! 2026-07-28 is stateless (`server/discover`, per-request metadata, multi round-trip
//! requests). A server may behave differently per era (its tool list, how it asks for
//! input), so Warrant keeps one connection — a [`Lane`] — per era in use: a client of
//! either era reaches the upstream exactly as it would directly. When the upstream does
//! not speak a client's era, that client's requests take the other lane and the gateway
//! bridges (an older client reaching a 2026-07-28-only server, and the reverse).
//!
//! `protocol` in the upstream's configuration pins one era instead (one connection, one
//! process for a stdio server): useful for a stateful server that must see every client
//! in one session.

mod lane;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::RoleServer;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::Peer;
use tokio_util::sync::CancellationToken;

pub(crate) use lane::{Inflight, Lane, LogLevel, Offer, ProgressCount, Tracked};

use super::error::GatewayError;
use crate::config::{ProtocolPin, UpstreamConfig};

/// The protocol era of a client (and of the lane that serves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Era {
    /// 2024-11-05 … 2025-11-25: sessions and `initialize`.
    Legacy,
    /// 2026-07-28 and later: stateless.
    Modern,
}

impl Era {
    pub(crate) fn of(version: &rmcp::model::ProtocolVersion) -> Self {
        if *version >= rmcp::model::ProtocolVersion::V_2026_07_28 {
            Self::Modern
        } else {
            Self::Legacy
        }
    }

    /// The era of a revision named as text (revision names sort by date).
    pub(crate) fn of_str(version: &str) -> Self {
        if version >= "2026-07-28" {
            Self::Modern
        } else {
            Self::Legacy
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Legacy => 0,
            Self::Modern => 1,
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Legacy => Self::Modern,
            Self::Modern => Self::Legacy,
        }
    }

    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Legacy => "2025-11-25 and earlier",
            Self::Modern => "2026-07-28",
        }
    }
}

/// Health of a lane, as reported by `/readyz` and in errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Not started yet (lazy, or an era no client has used yet).
    Idle,
    Starting,
    Ready,
    /// Down, with the reason; the supervisor is retrying.
    Down(String),
    /// The upstream does not speak this era: its clients use the other lane.
    Unsupported,
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
            Self::Unsupported => "unsupported",
            Self::Stopped => "stopped",
        }
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

/// Announces changes that the aggregated views and the connected clients must pick up:
/// an epoch counter (a view rebuilds when it moved) and a broadcast of each change.
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

    pub(crate) fn publish(&self, upstream: &str, change: Change) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let _ = self.tx.send((upstream.to_owned(), change));
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn subscribe(&self) -> tokio::sync::broadcast::Receiver<(String, Change)> {
        self.tx.subscribe()
    }
}

/// A downstream session (by its session id) subscribed to a resource.
type Subscriber = (String, Peer<RoleServer>);

/// What the lanes of one upstream share.
pub(crate) struct Shared {
    pub(crate) config: UpstreamConfig,
    pub(crate) changes: Changes,
    pub(crate) shutdown: CancellationToken,
    /// Downstream sessions subscribed to a resource URI of this upstream.
    subscribers: Mutex<HashMap<String, Vec<Subscriber>>>,
    /// Per era: the upstream does not speak it (learned when its lane cannot connect
    /// while the other lane can, or pinned by configuration).
    unsupported: [AtomicBool; 2],
}

pub(crate) struct Upstream {
    pub(crate) config: UpstreamConfig,
    shared: Arc<Shared>,
    lanes: [Arc<Lane>; 2],
}

impl Upstream {
    pub(crate) fn new(
        config: UpstreamConfig,
        changes: Changes,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let unsupported = match config.protocol {
            ProtocolPin::Auto => [AtomicBool::new(false), AtomicBool::new(false)],
            ProtocolPin::Legacy => [AtomicBool::new(false), AtomicBool::new(true)],
            ProtocolPin::Modern => [AtomicBool::new(true), AtomicBool::new(false)],
        };
        let shared = Arc::new(Shared {
            config: config.clone(),
            changes,
            shutdown,
            subscribers: Mutex::new(HashMap::new()),
            unsupported,
        });
        let lanes = [
            Lane::new(Era::Legacy, shared.clone()),
            Lane::new(Era::Modern, shared.clone()),
        ];
        for lane in &lanes {
            if shared.unsupported[lane.era.index()].load(Ordering::Acquire) {
                lane.mark_unsupported();
            }
        }
        Arc::new(Self {
            config,
            shared,
            lanes,
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// The lane that serves clients of `era`: its own, unless the upstream does not
    /// speak that era.
    pub(crate) fn lane(&self, era: Era) -> &Arc<Lane> {
        if self.shared.unsupported[era.index()].load(Ordering::Acquire) {
            &self.lanes[era.other().index()]
        } else {
            &self.lanes[era.index()]
        }
    }

    /// The lane an eager start opens: the legacy one, which every client of today uses,
    /// unless the upstream speaks only 2026-07-28.
    fn primary(&self) -> &Arc<Lane> {
        self.lane(Era::Legacy)
    }

    /// Starts the primary lane (eager upstreams at boot, lazy ones on first use).
    pub(crate) fn start(self: &Arc<Self>) {
        self.primary().start();
    }

    pub(crate) fn health(&self) -> Health {
        self.primary().health()
    }

    /// What the upstream offers to clients of `era` (empty while not ready).
    pub(crate) fn offer(&self, era: Era) -> Arc<Offer> {
        self.lane(era).offer()
    }

    /// The negotiated protocol revision of the primary lane, once connected.
    pub(crate) fn protocol(&self) -> Option<String> {
        self.primary().protocol()
    }

    /// Makes sure the lane for `era` is started (a lazy upstream, or an era first used
    /// now) and waits for it to be ready.
    pub(crate) async fn ready(self: &Arc<Self>, era: Era) -> Result<Arc<Lane>, GatewayError> {
        loop {
            let lane = self.lane(era).clone();
            lane.start();
            match lane.wait_ready().await {
                Ok(()) => return Ok(lane),
                // The upstream turned out not to speak this era: take the other lane.
                Err(LaneError::Unsupported) if self.lane(era).era != lane.era => continue,
                Err(LaneError::Unsupported) => {
                    return Err(GatewayError::UpstreamUnavailable {
                        upstream: self.config.name.clone(),
                        reason: "it speaks no protocol revision the gateway can use".into(),
                    });
                }
                Err(LaneError::Unavailable(reason)) => {
                    return Err(GatewayError::UpstreamUnavailable {
                        upstream: self.config.name.clone(),
                        reason,
                    });
                }
            }
        }
    }

    /// Remembers that a downstream session wants updates of `uri`.
    pub(crate) fn subscribe(&self, uri: &str, session: &str, peer: Peer<RoleServer>) {
        self.shared.subscribe(uri, session, peer);
    }

    /// Forgets a subscription; true when nobody else is subscribed to `uri`.
    pub(crate) fn unsubscribe(&self, uri: &str, session: &str) -> bool {
        self.shared.unsubscribe(uri, session)
    }
}

/// Why a lane cannot serve.
#[derive(Debug)]
pub(crate) enum LaneError {
    Unsupported,
    Unavailable(String),
}

impl Shared {
    /// Records that the upstream does not speak `era`; its clients move to the other lane.
    pub(crate) fn mark_unsupported(&self, era: Era) {
        if !self.unsupported[era.index()].swap(true, Ordering::AcqRel) {
            tracing::info!(
                upstream = %self.config.name,
                era = era.label(),
                "the upstream does not speak this protocol era; its clients are bridged to the other"
            );
            self.changes.publish(&self.config.name, Change::Health);
        }
    }

    fn subscribe(&self, uri: &str, session: &str, peer: Peer<RoleServer>) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            let list = subscribers.entry(uri.to_owned()).or_default();
            list.retain(|(s, p)| s != session && !p.is_transport_closed());
            list.push((session.to_owned(), peer));
        }
    }

    fn unsubscribe(&self, uri: &str, session: &str) -> bool {
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
    pub(crate) async fn resource_updated(&self, params: ResourceUpdatedNotificationParam) {
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
