//! Telling only the affected clients that their tool list changed.
//!
//! Most list changes concern everyone (an upstream's tools, the catalog's classes) and
//! go through the gateway's change channel. Two concern some clients only:
//! - a user's **trust ceiling** moved (an override, a group default, a membership): the
//!   clients of that user;
//! - a **grant** was revoked — by the person, by `/revoke`, or because the person
//!   approved the agent again with other choices (the new grant replaces the old): the
//!   clients that used a token of that grant, so that they list again (and, their token
//!   being refused, fetch one of the new grant).
//!
//! Their sessions of the older revisions get `notifications/tools/list_changed`; their
//! 2026-07-28 `subscriptions/listen` streams get the same notification.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use rmcp::{Peer, RoleServer};
use warrant_consent::oauth::RevokedSet;

use super::Gateway;
use crate::mcp::auth::Caller;

/// Whose tool list changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The clients of these users (by user id).
    Users(BTreeSet<String>),
    /// The clients whose token belongs to one of these grants (by grant id).
    Grants(BTreeSet<String>),
}

impl Audience {
    /// Whether a client calling with `caller`'s token is in the audience.
    pub(crate) fn includes(&self, caller: &Caller) -> bool {
        let identity = &caller.token.identity;
        match self {
            Self::Users(users) => users.contains(&identity.user),
            Self::Grants(grants) => grants.contains(&identity.grant),
        }
    }
}

/// How often the revocation set is compared with what was seen before.
const REVOCATION_WATCH: std::time::Duration = std::time::Duration::from_secs(1);

impl Gateway {
    /// Tells the clients in `audience` (and nobody else) that their tool list may have
    /// changed: their sessions of the older revisions, and their 2026-07-28
    /// `subscriptions/listen` streams.
    pub fn tools_changed_for(&self, audience: Audience) {
        let Some(auth) = self.auth() else { return };
        let ids = auth.sessions_in(&audience);
        let peers: Vec<Peer<RoleServer>> = match self.inner.sessions.lock() {
            Ok(sessions) => ids
                .iter()
                .filter_map(|id| sessions.get(id))
                .filter(|s| !s.peer.is_transport_closed())
                .map(|s| s.peer.clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        tokio::spawn(async move {
            for peer in peers {
                if let Err(e) = peer.notify_tool_list_changed().await {
                    tracing::debug!(error = %e, "cannot tell a client about a list change");
                }
            }
        });
        // No stream listening is fine.
        let _ = self.inner.personal.send(Arc::new(audience));
    }

    /// The audiences of list changes that concern some clients only (see
    /// [`Self::tools_changed_for`]).
    pub(in crate::mcp) fn personal_changes(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<Audience>> {
        self.inner.personal.subscribe()
    }

    /// Follows the revocation set (refreshed elsewhere every second, updated at once by
    /// revocations made here): the clients of a grant that was just revoked are told.
    pub fn follow_revocations(&self, revoked: RevokedSet) {
        if self.auth().is_none() {
            return;
        }
        let gateway = self.clone();
        tokio::spawn(async move {
            let mut seen = revoked.current();
            let mut tick = tokio::time::interval(REVOCATION_WATCH);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = gateway.inner.shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let now = revoked.current();
                if Arc::ptr_eq(&now, &seen) {
                    continue;
                }
                let fresh = newly_revoked(&seen, &now);
                seen = now;
                if !fresh.is_empty() {
                    // Revocation ids of single tokens are in the set too; only grants
                    // that have clients here match anything.
                    gateway.tools_changed_for(Audience::Grants(fresh));
                }
            }
        });
    }
}

/// The ids in `now` that were not in `before`.
fn newly_revoked(before: &HashSet<String>, now: &HashSet<String>) -> BTreeSet<String> {
    now.difference(before).cloned().collect()
}
