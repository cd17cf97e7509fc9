//! `[policy]`: the gateway's own rules that are not per upstream. Today the ceiling of
//! users an admin gave none (`default_ceiling`); admins set the rest in the UI.

use serde::{Deserialize, Serialize};
use warrant_consent::token::Risk;

use super::Problem;

/// `[policy]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub default_ceiling: Option<String>,
}

/// The checked `[policy]` section.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// The trust ceiling of a user with neither an admin's override nor a group default.
    pub default_ceiling: Risk,
}

/// `high`: the highest class that needs no human approval per call. Reaching
/// `critical` tools (every tool nobody has reviewed counts as critical) takes an admin
/// who raises a user's or a group's ceiling, or this default.
pub const DEFAULT_CEILING: Risk = Risk::High;

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            default_ceiling: DEFAULT_CEILING,
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
    PolicyConfig { default_ceiling }
}
