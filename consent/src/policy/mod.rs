//! Policy as code: the admin decisions that make up Warrant's policy, as one TOML file a
//! team keeps in version control.
//!
//! What a policy file covers (see `docs/policy.md`):
//!
//! - **trusted upstreams** — whose MCP annotations classify their unreviewed tools
//!   (`consent_servers`, through [`crate::catalog`]);
//! - **reviewed risk classes** — the class an admin set on a tool
//!   (`consent_catalog_tools.risk_override`);
//! - **group ceilings** and **user ceilings** (`consent_ceilings`, through
//!   [`crate::ceilings`]); users are named by email, since user ids differ between
//!   deployments.
//!
//! What it does not cover: group **membership** (the identity provider owns it: SSO
//! claims or the admin pages), the configured default ceiling (`[policy] default_ceiling`
//! stays in `warrant.toml`; an export shows it as a comment), approvals of tool
//! definitions (rug-pull protection stays a human's review of each new version).
//!
//! The file is the **whole** policy for what it covers: applying it makes the database
//! equal to it, so a reviewed class, a trusted upstream or a ceiling the database has
//! and the file lacks is removed. [`PolicyStore::plan`] validates a file against the
//! database and computes the [`Change`]s ([`diff`]); [`PolicyStore::apply`] writes them
//! all in one transaction, each conditional on the value the plan saw, so a change made
//! meanwhile by someone else aborts the whole apply instead of being overwritten.

mod export;
mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use warrant_idp::IdpError;
use warrant_idp::users::{normalize_email, plausible_email};

pub use export::render;
pub use store::{Current, Plan, PolicyStore};

use crate::catalog::CatalogError;
use crate::ceilings::{CeilingError, SubjectKind, usable_group};
use crate::token::Risk;

/// A policy file as written (TOML). Unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Per upstream (its name in `warrant.toml`): annotation trust and reviewed classes.
    #[serde(default)]
    pub upstreams: BTreeMap<String, UpstreamPolicy>,
    /// Per group: its default ceiling.
    #[serde(default)]
    pub groups: BTreeMap<String, CeilingPolicy>,
    /// Per user, by email: the admin's override of the user's ceiling.
    #[serde(default)]
    pub users: BTreeMap<String, CeilingPolicy>,
}

/// What the policy says about one upstream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamPolicy {
    /// Whether its MCP annotations classify its unreviewed tools (otherwise `critical`).
    #[serde(default)]
    pub trust_annotations: bool,
    /// Tool name → reviewed risk class (`low`, `medium`, `high`, `critical`).
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

/// A ceiling: the highest risk class an agent acting for the subject may reach.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeilingPolicy {
    pub ceiling: String,
}

/// What can go wrong reading, checking or applying a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{name} is not a valid policy file: {message}")]
    Parse { name: String, message: String },
    #[error("{}", problems(.0))]
    Invalid(Vec<String>),
    #[error(
        "the policy changed in the database since the diff was computed ({0}); nothing was \
         applied: run the command again to see the new diff"
    )]
    Conflict(String),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Ceilings(#[from] CeilingError),
    #[error("cannot read users or groups: {0}")]
    Users(#[from] IdpError),
    #[error("policy storage failed: {0}")]
    Storage(#[from] sqlx::Error),
}

fn problems(list: &[String]) -> String {
    let mut text = format!(
        "the policy file has {} problem{}; nothing was applied:",
        list.len(),
        if list.len() == 1 { "" } else { "s" }
    );
    for problem in list {
        text.push_str("\n  - ");
        text.push_str(problem);
    }
    text
}

impl Policy {
    /// Parses a policy file; `name` names it in the error (a path, usually).
    pub fn parse(text: &str, name: &str) -> Result<Self, PolicyError> {
        toml::from_str(text).map_err(|e| PolicyError::Parse {
            name: name.to_owned(),
            message: e.to_string(),
        })
    }

    /// Checks what can be checked without the database (risk classes, group names,
    /// email addresses) and returns the typed policy, or every problem found, each
    /// with its key path.
    pub fn validate(&self) -> Result<PolicyState, Vec<String>> {
        let (state, errors) = self.check();
        if errors.is_empty() {
            Ok(state)
        } else {
            Err(errors)
        }
    }

    /// What [`Self::validate`] does, keeping the valid part besides the problems (so
    /// that the database checks can report on it too).
    pub(crate) fn check(&self) -> (PolicyState, Vec<String>) {
        let mut state = PolicyState::default();
        let mut errors = Vec::new();
        let class = |path: String, text: &str, errors: &mut Vec<String>| {
            let risk = Risk::parse(text);
            if risk.is_none() {
                errors.push(format!(
                    "{path}: {text:?} is not a risk class (low, medium, high or critical)"
                ));
            }
            risk
        };
        for (upstream, policy) in &self.upstreams {
            if upstream.trim().is_empty() {
                errors.push("upstreams: an upstream name is empty".to_owned());
                continue;
            }
            if policy.trust_annotations {
                state.trusted.insert(upstream.clone());
            }
            for (tool, text) in &policy.tools {
                let path = format!("upstreams.{}.tools.{}", key(upstream), key(tool));
                if let Some(risk) = class(path, text, &mut errors) {
                    state
                        .reviewed
                        .insert((upstream.clone(), tool.clone()), risk);
                }
            }
        }
        for (group, policy) in &self.groups {
            let path = format!("groups.{}", key(group));
            if !usable_group(group) {
                errors.push(format!(
                    "{path}: {group:?} is not a usable group name (at most 100 characters, \
                     not blank, no control characters)"
                ));
                continue;
            }
            if let Some(risk) = class(format!("{path}.ceiling"), &policy.ceiling, &mut errors) {
                state.groups.insert(group.clone(), risk);
            }
        }
        for (email, policy) in &self.users {
            let path = format!("users.{}", key(email));
            let normal = normalize_email(email);
            if !plausible_email(&normal) {
                errors.push(format!("{path}: {email:?} is not an email address"));
                continue;
            }
            let risk = class(format!("{path}.ceiling"), &policy.ceiling, &mut errors);
            if let Some(risk) = risk
                && state.users.insert(normal.clone(), risk).is_some()
            {
                errors.push(format!(
                    "{path}: {normal:?} is named twice (emails are compared in lower case)"
                ));
            }
        }
        (state, errors)
    }
}

/// A policy as typed values: what the database holds, or what a file wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyState {
    /// Upstreams whose annotations are trusted.
    pub trusted: BTreeSet<String>,
    /// (upstream, tool) → reviewed class.
    pub reviewed: BTreeMap<(String, String), Risk>,
    /// Group → default ceiling.
    pub groups: BTreeMap<String, Risk>,
    /// User email (lower case) → the user's own ceiling.
    pub users: BTreeMap<String, Risk>,
}

impl PolicyState {
    /// The file form of this state (what an export writes, without its comments).
    pub fn to_policy(&self, upstreams: impl IntoIterator<Item = String>) -> Policy {
        let mut policy = Policy::default();
        for name in upstreams.into_iter().chain(self.trusted.iter().cloned()) {
            policy.upstreams.entry(name).or_default();
        }
        for name in &self.trusted {
            policy
                .upstreams
                .entry(name.clone())
                .or_default()
                .trust_annotations = true;
        }
        for ((upstream, tool), risk) in &self.reviewed {
            policy
                .upstreams
                .entry(upstream.clone())
                .or_default()
                .tools
                .insert(tool.clone(), risk.name().to_owned());
        }
        let ceiling = |risk: &Risk| CeilingPolicy {
            ceiling: risk.name().to_owned(),
        };
        policy.groups = self
            .groups
            .iter()
            .map(|(g, r)| (g.clone(), ceiling(r)))
            .collect();
        policy.users = self
            .users
            .iter()
            .map(|(u, r)| (u.clone(), ceiling(r)))
            .collect();
        policy
    }
}

/// One difference between the database and a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An upstream's annotations become trusted (`true`) or stop being trusted.
    Trust { upstream: String, trusted: bool },
    /// A tool's reviewed class is set (`to`), changed, or removed (`to: None`: the tool
    /// is unreviewed again).
    Review {
        upstream: String,
        tool: String,
        from: Option<Risk>,
        to: Option<Risk>,
    },
    /// A group's or user's (by email) ceiling is set, changed or removed.
    Ceiling {
        kind: SubjectKind,
        subject: String,
        from: Option<Risk>,
        to: Option<Risk>,
    },
}

impl fmt::Display for Change {
    /// One line: `+` added, `-` removed, `~` changed (`old → new`), with the item's key
    /// path in the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trust { upstream, trusted } => write!(
                f,
                "~ upstreams.{}.trust_annotations: {} → {}",
                key(upstream),
                !trusted,
                trusted
            ),
            Self::Review {
                upstream,
                tool,
                from,
                to,
            } => {
                let path = format!("upstreams.{}.tools.{}", key(upstream), key(tool));
                line(f, &path, *from, *to, "unreviewed again")
            }
            Self::Ceiling {
                kind,
                subject,
                from,
                to,
            } => {
                let (table, fallback) = match kind {
                    SubjectKind::Group => ("groups", "no group ceiling"),
                    SubjectKind::User => ("users", "no own ceiling: groups or the default apply"),
                };
                let path = format!("{table}.{}.ceiling", key(subject));
                line(f, &path, *from, *to, fallback)
            }
        }
    }
}

fn line(
    f: &mut fmt::Formatter<'_>,
    path: &str,
    from: Option<Risk>,
    to: Option<Risk>,
    removed: &str,
) -> fmt::Result {
    match (from, to) {
        (None, Some(to)) => write!(f, "+ {path} = {:?}", to.name()),
        (Some(from), None) => write!(f, "- {path} = {:?} (removed: {removed})", from.name()),
        (Some(from), Some(to)) => write!(f, "~ {path}: {} → {}", from.name(), to.name()),
        (None, None) => write!(f, "  {path}: unchanged"),
    }
}

/// What must change in `current` to make it `desired`: trust, then reviewed classes,
/// then group and user ceilings, each in name order. Empty when they are equal.
pub fn diff(current: &PolicyState, desired: &PolicyState) -> Vec<Change> {
    let mut changes = Vec::new();
    for upstream in current.trusted.union(&desired.trusted) {
        let trusted = desired.trusted.contains(upstream);
        if current.trusted.contains(upstream) != trusted {
            changes.push(Change::Trust {
                upstream: upstream.clone(),
                trusted,
            });
        }
    }
    for ((upstream, tool), from, to) in changed(&current.reviewed, &desired.reviewed) {
        changes.push(Change::Review {
            upstream,
            tool,
            from,
            to,
        });
    }
    for (kind, now, want) in [
        (SubjectKind::Group, &current.groups, &desired.groups),
        (SubjectKind::User, &current.users, &desired.users),
    ] {
        for (subject, from, to) in changed(now, want) {
            changes.push(Change::Ceiling {
                kind,
                subject,
                from,
                to,
            });
        }
    }
    changes
}

/// The keys whose value differs between two maps, in key order, with both values.
fn changed<K: Ord + Clone>(
    current: &BTreeMap<K, Risk>,
    desired: &BTreeMap<K, Risk>,
) -> Vec<(K, Option<Risk>, Option<Risk>)> {
    let keys: BTreeSet<&K> = current.keys().chain(desired.keys()).collect();
    keys.into_iter()
        .filter_map(|k| {
            let (from, to) = (current.get(k).copied(), desired.get(k).copied());
            (from != to).then(|| (k.clone(), from, to))
        })
        .collect()
}

/// A TOML key: bare when it can be, quoted otherwise.
pub(crate) fn key(name: &str) -> String {
    let bare = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare { name.to_owned() } else { quoted(name) }
}

/// A TOML basic string.
pub(crate) fn quoted(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

#[cfg(test)]
mod tests;
