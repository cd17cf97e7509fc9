//! Telling only the affected clients that their tool list changed.
//!
//! Most list changes concern everyone (an upstream's tools) and go through the gateway's
//! change channel. Three concern some clients only:
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
//! 2026-07-28 `subscriptions/listen` streams get the same notification.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use rmcp::{Peer, RoleServer};
use warrant_consent::catalog::CatalogSnapshot;
use warrant_consent::oauth::RevokedSet;
use warrant_consent::token::{Risk, VerifiedToken};

use super::{Era, Gateway, tool_record};
use crate::mcp::auth::Caller;

/// Whose tool list changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    /// The clients of these users (by user id).
    Users(BTreeSet<String>),
    /// The clients whose token belongs to one of these grants (by grant id).
    Grants(BTreeSet<String>),
    /// The clients whose token can list one of these tools.
    Tools(Vec<Reclassified>),
}

/// A tool an upstream offers that the catalog now classifies otherwise (its class, or
/// whether it is quarantined).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reclassified {
    pub server: String,
    /// Its name upstream.
    pub tool: String,
    pub before: Risk,
    pub after: Risk,
}

impl Audience {
    /// Whether a client calling with `token` is in the audience at `now`.
    pub(crate) fn includes(&self, token: &VerifiedToken, now: i64) -> bool {
        let identity = &token.identity;
        match self {
            Self::Users(users) => users.contains(&identity.user),
            Self::Grants(grants) => grants.contains(&identity.grant),
            Self::Tools(tools) => tools.iter().any(|t| {
                token.lists(now, &t.server, &t.tool, t.before)
                    || token.lists(now, &t.server, &t.tool, t.after)
            }),
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
        let Some(auth) = self.auth() else {
            // Without tokens (`mcp.authorization = "none"`) every client sees every
            // tool: everyone is concerned.
            self.inner.changes.publish("", super::Change::Tools);
            return;
        };
        let ids = auth.sessions_in(&audience, auth.now());
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

    /// Whether a change for `audience` concerns the client calling with `caller`'s
    /// verified token (none without tokens: those clients hear every change anyway).
    pub(in crate::mcp) fn concerns(&self, audience: &Audience, caller: Option<&Caller>) -> bool {
        match (self.auth(), caller) {
            (Some(auth), Some(caller)) => audience.includes(&caller.token, auth.now()),
            _ => false,
        }
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

impl Gateway {
    /// The tools upstreams offer now (to clients of either era) that `after` classifies
    /// otherwise than `before`.
    pub(super) fn reclassified(
        &self,
        before: &CatalogSnapshot,
        after: &CatalogSnapshot,
    ) -> Vec<Reclassified> {
        let mut changed: Vec<Reclassified> = Vec::new();
        for upstream in &self.inner.upstreams {
            for era in [Era::Legacy, Era::Modern] {
                for tool in &upstream.offer(era).tools {
                    let record = tool_record(tool);
                    let (was, is) = (
                        before.classify(upstream.name(), &record),
                        after.classify(upstream.name(), &record),
                    );
                    let known = changed
                        .iter()
                        .any(|c| c.server == upstream.name() && c.tool == record.name);
                    if was != is && !known {
                        changed.push(Reclassified {
                            server: upstream.name().to_owned(),
                            tool: record.name,
                            before: was.risk,
                            after: is.risk,
                        });
                    }
                }
            }
        }
        changed
    }
}

/// The ids in `now` that were not in `before`.
fn newly_revoked(before: &HashSet<String>, now: &HashSet<String>) -> BTreeSet<String> {
    now.difference(before).cloned().collect()
}
