//! The plain data a consent block or a narrowing block is made of, and its meaning in
//! Rust (used for the words of a refusal and as the model the property tests compare
//! the Datalog against). The Datalog in the token is what decides.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::pattern::ToolPattern;

/// A tool's risk class, ordered: `low` < `medium` < `high` < `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
    Critical,
}

impl Risk {
    /// The integer in token facts and checks: 0 (`low`) to 3 (`critical`).
    pub fn level(self) -> i64 {
        match self {
            Self::Low => 0,
            Self::Medium => 1,
            Self::High => 2,
            Self::Critical => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The class a tool's MCP annotations suggest: `readOnlyHint` → low,
    /// `destructiveHint` → high, otherwise medium. Annotations are the upstream's claim,
    /// not a fact: the effective class is the admin's to decide.
    pub fn suggested(read_only: Option<bool>, destructive: Option<bool>) -> Self {
        match (read_only, destructive) {
            (Some(true), _) => Self::Low,
            (_, Some(true)) => Self::High,
            _ => Self::Medium,
        }
    }

    /// Parses `low`, `medium`, `high` or `critical`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a named argument must be.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ArgRule {
    /// Exactly this value.
    Equals(String),
    /// A value starting with this.
    Prefix(String),
    /// One of these values.
    OneOf(Vec<String>),
}

/// A constraint on one argument of the calls it applies to. The argument must be
/// present: a call without it is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArgConstraint {
    /// The argument's name (a top-level key of the call's `arguments`).
    pub name: String,
    pub rule: ArgRule,
    /// The calls it applies to; empty: every call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolPattern>,
}

impl ArgConstraint {
    /// Parses the command-line form `NAME=VALUE`, `NAME=prefix:VALUE` or
    /// `NAME=oneof:a,b` (applies to every call).
    pub fn parse(text: &str) -> Result<Self, super::TokenError> {
        let invalid =
            |why: &str| super::TokenError::Invalid(format!("argument constraint {text:?}: {why}"));
        let (name, value) = text
            .split_once('=')
            .ok_or_else(|| invalid("expected NAME=VALUE, NAME=prefix:VALUE or NAME=oneof:a,b"))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(invalid("the argument name is empty"));
        }
        let rule = if let Some(prefix) = value.strip_prefix("prefix:") {
            ArgRule::Prefix(prefix.to_owned())
        } else if let Some(list) = value.strip_prefix("oneof:") {
            let values: Vec<String> = list.split(',').map(str::to_owned).collect();
            ArgRule::OneOf(values)
        } else {
            ArgRule::Equals(value.strip_prefix("equals:").unwrap_or(value).to_owned())
        };
        Ok(Self {
            name: name.to_owned(),
            rule,
            tools: Vec::new(),
        })
    }

    /// Whether this constraint concerns the call to `server.tool`.
    pub fn applies_to(&self, server: &str, tool: &str) -> bool {
        self.tools.is_empty() || self.tools.iter().any(|p| p.matches(server, tool))
    }

    /// Whether `value` (the argument as the call gives it, if it does) satisfies it.
    pub fn satisfied_by(&self, value: Option<&str>) -> bool {
        let Some(value) = value else { return false };
        match &self.rule {
            ArgRule::Equals(expected) => value == expected,
            ArgRule::Prefix(prefix) => value.starts_with(prefix.as_str()),
            ArgRule::OneOf(values) => values.iter().any(|v| v == value),
        }
    }

    /// In words, for refusals: `argument "path" must start with "/tmp/"`.
    pub fn describe(&self) -> String {
        let what = match &self.rule {
            ArgRule::Equals(v) => format!("must be {v:?}"),
            ArgRule::Prefix(p) => format!("must start with {p:?}"),
            ArgRule::OneOf(vs) => format!("must be one of {vs:?}"),
        };
        let scope = if self.tools.is_empty() {
            String::new()
        } else {
            format!(" (for {})", join_patterns(&self.tools))
        };
        format!("argument {:?} {what}{scope}", self.name)
    }
}

/// What one block of a token allows: the human's consent (block 1) or a narrowing
/// appended later. Each field only ever removes: a block cannot widen what earlier
/// blocks allow, because Biscuit evaluates every block's checks and all must pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Restriction {
    /// The tools allowed; `None`: this block does not restrict tools (a consent block
    /// always has a list). An empty list allows nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<ToolPattern>>,
    /// Tools refused even when an allow pattern matches (deny wins).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<ToolPattern>,
    /// The highest risk class allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_risk: Option<Risk>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<ArgConstraint>,
    /// The end of this block's validity (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

/// The arguments of a call as the token sees them: name → text. Strings are taken as
/// they are; numbers and booleans as their JSON text; other values are left out (a
/// constraint on them refuses the call).
pub type CallArgs = BTreeMap<String, String>;

impl Restriction {
    /// Whether this block alone allows the call (the Rust model of its checks).
    pub fn allows(&self, call: &ModelCall<'_>) -> bool {
        self.refusals(call).is_empty()
    }

    /// Every reason this block refuses the call, in words; empty when it allows it.
    pub fn refusals(&self, call: &ModelCall<'_>) -> Vec<Refusal> {
        let mut out = Vec::new();
        if let Some(expires) = self.expires_at
            && call.now > expires
        {
            out.push(Refusal::Expired(expires));
        }
        if let Some(allow) = &self.allow
            && !allow.iter().any(|p| p.matches(call.server, call.tool))
        {
            out.push(Refusal::NotAllowed);
        }
        if self.deny.iter().any(|p| p.matches(call.server, call.tool)) {
            out.push(Refusal::Denied);
        }
        if let Some(max) = self.max_risk
            && call.risk > max
        {
            out.push(Refusal::Risk(max));
        }
        for constraint in &self.args {
            if constraint.applies_to(call.server, call.tool)
                && !constraint.satisfied_by(call.args.get(&constraint.name).map(String::as_str))
            {
                out.push(Refusal::Arg(constraint.clone()));
            }
        }
        out
    }

    /// A one-line summary: `tools github.get_*; deny github.delete_*; risk ≤ medium; …`.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(allow) = &self.allow {
            parts.push(if allow.is_empty() {
                "no tools".to_owned()
            } else {
                format!("tools {}", join_patterns(allow))
            });
        }
        if !self.deny.is_empty() {
            parts.push(format!("deny {}", join_patterns(&self.deny)));
        }
        if let Some(max) = self.max_risk {
            parts.push(format!("risk up to {max}"));
        }
        for constraint in &self.args {
            parts.push(constraint.describe());
        }
        if let Some(expires) = self.expires_at {
            parts.push(format!("until {expires}"));
        }
        if parts.is_empty() {
            "no restriction".to_owned()
        } else {
            parts.join("; ")
        }
    }
}

/// A call as the Rust model sees it.
#[derive(Debug, Clone, Copy)]
pub struct ModelCall<'a> {
    pub now: i64,
    pub server: &'a str,
    pub tool: &'a str,
    pub risk: Risk,
    pub args: &'a CallArgs,
}

/// Why a block refuses a call (the Rust model's view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Expired(i64),
    NotAllowed,
    Denied,
    Risk(Risk),
    Arg(ArgConstraint),
}

pub(crate) fn join_patterns(patterns: &[ToolPattern]) -> String {
    patterns
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
