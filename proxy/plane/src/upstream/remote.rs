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

use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::service::Peer;
use tokio_util::sync::CancellationToken;

use super::lane::{Lane, Offer};
use super::shared::Shared;
use super::state::{Changes, Health, LaneError};
use crate::config::{AuthMode, UpstreamConfig, resolve, with_key};
use crate::protocol::era::Era;
use crate::protocol::error::GatewayError;
use crate::protocol::redact::Redactions;

pub(crate) struct Upstream {
    pub(crate) config: UpstreamConfig,
    shared: Arc<Shared>,
    lanes: [Arc<Lane>; 2],
    /// Where to learn what the upstream offers when its own connection cannot list it
    /// (an upstream that serves only callers with a key: see `upstream::keyed`).
    lender: std::sync::OnceLock<Arc<dyn Lender>>,
}

/// Lends what another connection to the same upstream lists.
pub(crate) trait Lender: Send + Sync {
    /// What a ready connection of `era` offers, if one has listed anything.
    fn offer(&self, era: Era) -> Option<Arc<Offer>>;
}

impl Upstream {
    pub(crate) fn new(
        config: UpstreamConfig,
        changes: Changes,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let config = with_shared_key(config);
        let shared = Arc::new(Shared::new(config.clone(), changes, shutdown));
        let lanes = [
            Lane::new(Era::Legacy, shared.clone()),
            Lane::new(Era::Modern, shared.clone()),
        ];
        for lane in &lanes {
            if shared.is_unsupported(lane.era) {
                lane.mark_unsupported();
            }
        }
        Arc::new(Self {
            config,
            shared,
            lanes,
            lender: std::sync::OnceLock::new(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    /// Whether the upstream refused the credential this connection gives it (HTTP 401).
    pub(crate) fn credentials_refused(&self) -> bool {
        self.shared.credentials_refused()
    }

    /// The credentials this upstream is given, to be redacted from its answers.
    pub(crate) fn redactions(&self) -> &Arc<Redactions> {
        &self.shared.redactions
    }

    /// How many connections the direct path opened to this upstream (both lanes).
    pub(crate) fn direct_connections_opened(&self) -> u64 {
        self.lanes
            .iter()
            .map(|l| l.direct_connections_opened())
            .sum()
    }

    /// How many of this upstream's sessions the direct path can call into now (both
    /// lanes: the lanes' own and the extra ones open).
    pub(crate) fn open_sessions(&self) -> usize {
        self.lanes.iter().map(|l| l.open_sessions()).sum()
    }

    /// The lane that serves clients of `era`: its own, unless the upstream does not
    /// speak that era.
    pub(crate) fn lane(&self, era: Era) -> &Arc<Lane> {
        if self.shared.is_unsupported(era) {
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

    /// What the upstream offers to clients of `era` (empty while not ready): as its own
    /// connection lists it, or, while that one lists nothing, as its lender's do.
    pub(crate) fn offer(&self, era: Era) -> Arc<Offer> {
        let own = self.lane(era).offer();
        if own.is_empty()
            && let Some(lent) = self.lender.get().and_then(|l| l.offer(era))
        {
            return lent;
        }
        own
    }

    /// Sets where to learn what the upstream offers when its own connection cannot list it.
    pub(crate) fn lend_from(&self, lender: Arc<dyn Lender>) {
        let _ = self.lender.set(lender);
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

/// An upstream with a shared key (`auth.mode = "shared"`) connects with it: the key
/// written by reference, or the one the vault held at start. (Calls of an upstream
/// whose shared key is kept in the vault go through a connection per key version, so
/// that a new key serves from the next call: see `upstream::keyed`.)
fn with_shared_key(config: UpstreamConfig) -> UpstreamConfig {
    if config.auth.mode != AuthMode::Shared {
        return config;
    }
    let Some(value) = &config.auth.value else {
        return config;
    };
    match resolve(value) {
        Ok(key) => with_key(&config, key.expose()),
        Err(e) => {
            tracing::warn!(upstream = %config.name, "its shared key is not available: {e}");
            config
        }
    }
}
