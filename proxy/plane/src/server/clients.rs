//! The client sessions the gateway knows of (2025-11-25 and older: the ones that keep a
//! session), and telling clients that their lists changed.
//!
//! Most list changes concern everyone (an upstream's tools) and go to every session.
//! Three concern some clients only:
//! - a user's **trust ceiling** moved (an override, a group default, a membership): the
//!   clients of that user;
//! - a **grant** was revoked — by the person, by `/revoke`, or because the person
//!   approved the agent again with other choices (the new grant replaces the old): the
//!   clients that used a token of that grant, so that they list again (and, their token
//!   being refused, fetch one of the new grant);
//! - the **catalog** classifies tools otherwise (a review, a trust, a quarantine): the
//!   clients whose token can list one of those tools, at its class before or after.
//!
//! Their sessions of the older revisions get `notifications/tools/list_changed`; their
//! 2026-07-28 `subscriptions/listen` streams get the same notification (they follow
//! [`ClientSessions::personal_changes`]).

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::RoleServer;
use rmcp::service::Peer;
use rmcp::transport::common::server_side_http::SessionId;
use rmcp::transport::streamable_http_server::session::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;

use crate::enforce::audience::Audience;
use crate::enforce::auth::{Caller, McpAuth};
use crate::locks::Sharded;
use crate::upstream::inflight::LogLevel;
use crate::upstream::state::{Change, Changes};

/// A client session the gateway knows of.
pub(crate) struct Session {
    /// The session's id (shared: every direct call of the session names it).
    pub(crate) id: Arc<str>,
    pub(crate) version: String,
    /// Set by the session's `logging/setLevel`.
    pub(crate) log_level: Arc<LogLevel>,
    pub(crate) capabilities: Arc<rmcp::model::ClientCapabilities>,
    pub(crate) peer: Peer<RoleServer>,
}

/// The sessions of clients that keep one, by session id: told about list changes, and
/// looked up by the direct path.
pub(crate) struct ClientSessions {
    /// (Looked up on every direct call of a session: in shards, see [`Sharded`].)
    sessions: Sharded<HashMap<String, Arc<Session>>>,
    /// Woken when a session is registered.
    registered: tokio::sync::Notify,
    /// Clients whose tool list changed for a reason of their own (their user's trust
    /// ceiling, their grant): only their sessions and `subscriptions/listen` streams
    /// are told.
    personal: tokio::sync::broadcast::Sender<Arc<Audience>>,
}

impl Default for ClientSessions {
    fn default() -> Self {
        Self {
            sessions: Sharded::default(),
            registered: tokio::sync::Notify::new(),
            personal: tokio::sync::broadcast::channel(64).0,
        }
    }
}

impl ClientSessions {
    /// Remembers a client session once it is initialized.
    pub(crate) fn register(&self, id: String, peer: Peer<RoleServer>) {
        let Some(info) = peer.peer_info() else { return };
        let session = Session {
            id: id.as_str().into(),
            version: info.protocol_version.to_string(),
            capabilities: Arc::new(info.capabilities.clone()),
            log_level: Arc::default(),
            peer,
        };
        for mut sessions in self.sessions.each() {
            sessions.retain(|_, s| !s.peer.is_transport_closed());
        }
        self.sessions
            .shard(id.as_str())
            .insert(id, Arc::new(session));
        self.registered.notify_waiters();
    }

    /// The session `id`, if registered.
    pub(crate) fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.sessions.shard(id).get(id).cloned()
    }

    /// A session by id. rmcp answers `notifications/initialized` before the gateway
    /// hears of it, so a client's first request may arrive a moment before the session
    /// is registered: wait that moment (briefly) for a session rmcp knows.
    pub(crate) async fn wait_for(
        &self,
        id: &str,
        manager: &LocalSessionManager,
    ) -> Option<Arc<Session>> {
        if let Some(session) = self.get(id) {
            return Some(session);
        }
        if !manager.has_session(&SessionId::from(id)).await.ok()? {
            return None;
        }
        let wait = async {
            loop {
                let registered = self.registered.notified();
                if let Some(session) = self.get(id) {
                    return session;
                }
                registered.await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_millis(100), wait)
            .await
            .ok()
    }

    /// The log level of session `id` (`None` without one).
    pub(crate) fn log_level(&self, id: &str) -> Option<Arc<LogLevel>> {
        self.get(id).map(|s| s.log_level.clone())
    }

    /// Tells every session that a list may have changed.
    pub(crate) async fn tell_all(&self, change: Change) {
        let mut peers: Vec<Peer<RoleServer>> = Vec::new();
        for mut sessions in self.sessions.each() {
            sessions.retain(|_, s| !s.peer.is_transport_closed());
            peers.extend(sessions.values().map(|s| s.peer.clone()));
        }
        for peer in peers {
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

    /// Tells the clients in `audience` (and nobody else) that their tool list may have
    /// changed: their sessions of the older revisions, and their 2026-07-28
    /// `subscriptions/listen` streams. Without tokens every client sees every tool:
    /// everyone is concerned.
    pub(crate) fn tell(&self, audience: Audience, auth: Option<&McpAuth>, changes: &Changes) {
        let Some(auth) = auth else {
            changes.publish("", Change::Tools);
            return;
        };
        let ids = auth.sessions_in(&audience, auth.now());
        let peers: Vec<Peer<RoleServer>> = ids
            .iter()
            .filter_map(|id| self.get(id))
            .filter(|s| !s.peer.is_transport_closed())
            .map(|s| s.peer.clone())
            .collect();
        tokio::spawn(async move {
            for peer in peers {
                if let Err(e) = peer.notify_tool_list_changed().await {
                    tracing::debug!(error = %e, "cannot tell a client about a list change");
                }
            }
        });
        // No stream listening is fine.
        let _ = self.personal.send(Arc::new(audience));
    }

    /// The audiences of list changes that concern some clients only.
    pub(crate) fn personal_changes(&self) -> tokio::sync::broadcast::Receiver<Arc<Audience>> {
        self.personal.subscribe()
    }
}

/// Whether a change for `audience` concerns the client calling with `caller`'s verified
/// token (none without tokens: those clients hear every change anyway).
pub(crate) fn concerns(
    audience: &Audience,
    auth: Option<&McpAuth>,
    caller: Option<&Caller>,
) -> bool {
    match (auth, caller) {
        (Some(auth), Some(caller)) => audience.includes(&caller.token, auth.now()),
        _ => false,
    }
}
