//! `[policy]`: the gateway's own rules that are not per upstream. Today the ceiling of
//! users an admin gave none (`default_ceiling`) and how long a critical call waits for
//! a person's approval (`approval_timeout`); admins set the rest in the UI.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use warrant_consent::token::Risk;

use super::report::Problem;
use super::value::duration;

/// `[policy]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub default_ceiling: Option<String>,
    pub approval_timeout: Option<String>,
}

/// The checked `[policy]` section.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The trust ceiling of a user with neither an admin's override nor a group default.
    pub default_ceiling: Risk,
    /// How long a person has to approve a critical call (then it is denied), and how
    /// long an approved single call may then be made.
    pub approval_timeout: Duration,
}

/// The default of `approval_timeout`.
const DEFAULT_APPROVAL_TIMEOUT: Duration = warrant_consent::approvals::DEFAULT_TIMEOUT;
/// The longest `approval_timeout`: a held call should not outlive a working day.
const MAX_APPROVAL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// `high`: the highest class that needs no human approval per call. Reaching
/// `critical` tools (every tool nobody has reviewed counts as critical) takes an admin
/// who raises a user's or a group's ceiling, or this default.
pub const DEFAULT_CEILING: Risk = Risk::High;

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            default_ceiling: DEFAULT_CEILING,
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
        }
    }
}

pub(super) fn validate_policy(raw: RawPolicy, problems: &mut Vec<Problem>) -> PolicyConfig {
    let default_ceiling = match raw.default_ceiling.as_deref() {
        None => DEFAULT_CEILING,
        Some(text) => match Risk::parse(text) {
            Some(risk) if text == risk.name() => risk,
            _ => {
                problems.push(Problem::new(
                    "policy.default_ceiling",
                    format!(
                        "{text:?} is not a risk class: \"low\", \"medium\", \"high\" or \
                         \"critical\""
                    ),
                ));
                DEFAULT_CEILING
            }
        },
    };
    let mut approval_timeout = duration(
        raw.approval_timeout,
        "policy.approval_timeout",
        DEFAULT_APPROVAL_TIMEOUT,
        problems,
    );
    if approval_timeout < Duration::from_secs(1) || approval_timeout > MAX_APPROVAL_TIMEOUT {
        problems.push(Problem::new(
            "policy.approval_timeout",
            "must be between 1s and 24h",
        ));
        approval_timeout = DEFAULT_APPROVAL_TIMEOUT;
    }
    PolicyConfig {
        default_ceiling,
        approval_timeout,
    }
}
