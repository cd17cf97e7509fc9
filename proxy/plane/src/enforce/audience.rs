//! Whose tool list changed, when a change concerns some clients only: the clients of
//! some users (a trust ceiling moved), of some grants (revoked), or whose token can list
//! a tool the catalog now classifies otherwise. `server::clients` tells them.

use std::collections::BTreeSet;

use warrant_consent::token::{Risk, VerifiedToken};

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
