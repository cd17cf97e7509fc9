//! What the lanes of one upstream share: its configuration, the change channel, the
//! eras it does not speak, the downstream sessions subscribed to its resources, and the
//! credentials it is given, to be redacted from its answers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::RoleServer;
use rmcp::model::ResourceUpdatedNotificationParam;
use rmcp::service::Peer;
use tokio_util::sync::CancellationToken;

use super::state::{Change, Changes};
use crate::config::{ProtocolPin, Transport, UpstreamConfig, ValueRef, resolve};
use crate::locks::Locked;
use crate::protocol::era::Era;
use crate::protocol::redact::Redactions;

/// A downstream session (by its session id) subscribed to a resource.
type Subscriber = (String, Peer<RoleServer>);

/// What the lanes of one upstream share.
pub(crate) struct Shared {
    pub(crate) config: UpstreamConfig,
    pub(crate) changes: Changes,
    pub(crate) shutdown: CancellationToken,
    /// The credentials in its configuration, looked for in its answers.
    pub(crate) redactions: Arc<Redactions>,
    /// Downstream sessions subscribed to a resource URI of this upstream.
    subscribers: Mutex<HashMap<String, Vec<Subscriber>>>,
    /// Per era: the upstream does not speak it (learned when its lane cannot connect
    /// while the other lane can, or pinned by configuration).
    unsupported: [AtomicBool; 2],
    /// The upstream answered `401` to the credential it was given: a connection built
    /// with a key is then replaced (a renewed token) or reported (a key to replace).
    credentials_refused: AtomicBool,
}

impl Shared {
    pub(crate) fn new(
        config: UpstreamConfig,
        changes: Changes,
        shutdown: CancellationToken,
    ) -> Self {
        let unsupported = match config.protocol {
            ProtocolPin::Auto => [AtomicBool::new(false), AtomicBool::new(false)],
            ProtocolPin::Legacy => [AtomicBool::new(false), AtomicBool::new(true)],
            ProtocolPin::Modern => [AtomicBool::new(true), AtomicBool::new(false)],
        };
        let redactions = Arc::new(redactions_of(&config));
        Self {
            config,
            changes,
            shutdown,
            redactions,
            subscribers: Mutex::new(HashMap::new()),
            unsupported,
            credentials_refused: AtomicBool::new(false),
        }
    }

    /// Records that the upstream refused the credential it was given (HTTP 401).
    pub(crate) fn refuse_credentials(&self) {
        if !self.credentials_refused.swap(true, Ordering::AcqRel) {
            tracing::info!(upstream = %self.config.name, "the upstream refused the credential it was given (HTTP 401)");
        }
    }

    /// Whether the upstream refused the credential it was given.
    pub(crate) fn credentials_refused(&self) -> bool {
        self.credentials_refused.load(Ordering::Acquire)
    }

    /// `text` (an error about this upstream: a transport's message may quote its URL)
    /// with its credentials replaced.
    pub(crate) fn redacted(&self, text: String) -> String {
        if self.redactions.is_empty() {
            return text;
        }
        match self.redactions.bytes(text.as_bytes()) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// Whether the upstream does not speak `era` (learned, or pinned by configuration).
    pub(crate) fn is_unsupported(&self, era: Era) -> bool {
        self.unsupported[era.index()].load(Ordering::Acquire)
    }

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

    pub(crate) fn subscribe(&self, uri: &str, session: &str, peer: Peer<RoleServer>) {
        let mut subscribers = self.subscribers.locked();
        let list = subscribers.entry(uri.to_owned()).or_default();
        list.retain(|(s, p)| s != session && !p.is_transport_closed());
        list.push((session.to_owned(), peer));
    }

    pub(crate) fn unsubscribe(&self, uri: &str, session: &str) -> bool {
        let mut subscribers = self.subscribers.locked();
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
            .locked()
            .get(&params.uri)
            .cloned()
            .unwrap_or_default();
        for (_, peer) in peers {
            if let Err(e) = peer.notify_resource_updated(params.clone()).await {
                tracing::debug!(upstream = %self.config.name, error = %e, "cannot forward a resource update");
            }
        }
    }
}

/// The secrets an upstream is given: the header values (HTTP) or environment values
/// (stdio) written by reference (`{ env = … }`, `{ file = … }`, `"${VAR}"`), resolved.
fn redactions_of(config: &UpstreamConfig) -> Redactions {
    let values = match &config.transport {
        Transport::Stdio { env, .. } => env,
        Transport::StreamableHttp { headers, .. } | Transport::Sse { headers, .. } => headers,
    };
    let secrets: Vec<_> = values
        .values()
        .filter(|value| !matches!(value, ValueRef::Literal(text) if !text.contains("${")))
        .filter_map(|value| resolve(value).ok())
        .chain(config.inline_secrets.iter().cloned())
        .collect();
    Redactions::of(secrets.iter().map(|s| s.expose()))
}
