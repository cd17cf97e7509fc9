//! The only place that writes Biscuit Datalog. Every value (ids, URLs, patterns,
//! argument values, dates) enters through biscuit's parameter binding (`{p0}`): the
//! Datalog text below is made only of constants of this file and generated parameter
//! names, so no input can change a rule's shape.
//!
//! Facts the gateway gives at call time (see `authorize.rs`): `time(date)`,
//! `resource(url)`, `server(name)`, `tool(name)`, `risk(0..3)`, `arg(name, text)` for
//! each argument, and `ceiling(0..3)` when the user has one.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use biscuit_auth::builder::{BlockBuilder, Term};
use biscuit_auth::{AuthorizerLimits, BiscuitBuilder, builder};

use super::TokenError;
use super::pattern::{Segment, ToolPattern};
use super::restriction::{ArgRule, Restriction};

/// The `context` string of blocks this module writes starts with this, followed by the
/// block's [`Restriction`] as JSON. It is a description for people and refusals; the
/// checks are what is enforced.
pub(crate) const CONTEXT_PREFIX: &str = "warrant/v1 ";

/// What the authority block states.
#[derive(Debug, Clone)]
pub(crate) struct AuthorityFacts<'a> {
    pub(crate) user: &'a str,
    pub(crate) agent: &'a str,
    pub(crate) grant: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) expires_at: i64,
    /// The grant's call budget per hour, when it has one (`calls_per_hour(n)`).
    pub(crate) calls_per_hour: Option<i64>,
}

/// Collects parameters for one rule; each value gets a fresh `{pN}` name.
#[derive(Default)]
struct Params {
    map: HashMap<String, Term>,
}

impl Params {
    fn bind(&mut self, term: Term) -> String {
        let name = format!("p{}", self.map.len());
        let placeholder = format!("{{{name}}}");
        self.map.insert(name, term);
        placeholder
    }

    fn str(&mut self, value: &str) -> String {
        self.bind(Term::Str(value.to_owned()))
    }

    fn take(&mut self) -> HashMap<String, Term> {
        std::mem::take(&mut self.map)
    }
}

fn date(unix: i64) -> Result<Term, TokenError> {
    u64::try_from(unix)
        .map(Term::Date)
        .map_err(|_| TokenError::Invalid(format!("a date before 1970: {unix}")))
}

fn build_err(e: biscuit_auth::error::Token) -> TokenError {
    TokenError::Build(e.to_string())
}

/// The authority block: who, for whom, which grant, for which resource, until when.
pub(crate) fn authority(
    facts: &AuthorityFacts<'_>,
    kid: u32,
) -> Result<BiscuitBuilder, TokenError> {
    for (what, value) in [
        ("user", facts.user),
        ("agent", facts.agent),
        ("grant", facts.grant),
        ("audience", facts.audience),
    ] {
        if value.is_empty() {
            return Err(TokenError::Invalid(format!("the {what} is empty")));
        }
    }
    let mut p = Params::default();
    let mut source = format!(
        "user({user});\nagent({agent});\ngrant({grant});\naudience({audience});\nexpires({expires});\n\
         check if time($time), expires($expires), $time <= $expires;\n\
         check if resource($resource), audience($resource);\n",
        user = p.str(facts.user),
        agent = p.str(facts.agent),
        grant = p.str(facts.grant),
        audience = p.str(facts.audience),
        expires = p.bind(date(facts.expires_at)?),
    );
    // The budget is data for the gateway, which counts the calls; no check reads it.
    if let Some(budget) = facts.calls_per_hour {
        if budget < 1 {
            return Err(TokenError::Invalid(format!(
                "a call budget of {budget} per hour (at least 1)"
            )));
        }
        let n = p.bind(Term::Integer(budget));
        source.push_str(&format!("calls_per_hour({n});\n"));
    }
    BiscuitBuilder::new()
        .code_with_params(source, p.take(), HashMap::new())
        .map(|b| b.root_key_id(kid))
        .map_err(build_err)
}

/// A block of checks for `restriction` (the consent block, or a narrowing).
pub(crate) fn restriction(restriction: &Restriction) -> Result<BlockBuilder, TokenError> {
    let mut block = BlockBuilder::new();
    let mut add = |source: String, params: HashMap<String, Term>| -> Result<(), TokenError> {
        let b = std::mem::take(&mut block);
        block = b
            .code_with_params(source, params, HashMap::new())
            .map_err(build_err)?;
        Ok(())
    };
    let mut p = Params::default();
    if let Some(expires) = restriction.expires_at {
        let at = p.bind(date(expires)?);
        add(format!("check if time($time), $time <= {at};"), p.take())?;
    }
    if let Some(allow) = &restriction.allow {
        let any = any_of(allow, &mut p);
        add(
            format!("check if server($server), tool($tool), {any};"),
            p.take(),
        )?;
    }
    if !restriction.deny.is_empty() {
        let any = any_of(&restriction.deny, &mut p);
        add(
            format!("reject if server($server), tool($tool), {any};"),
            p.take(),
        )?;
    }
    if let Some(max) = restriction.max_risk {
        let max = p.bind(Term::Integer(max.level()));
        add(format!("check if risk($risk), $risk <= {max};"), p.take())?;
    }
    for constraint in &restriction.args {
        let name = p.str(&constraint.name);
        let condition = match &constraint.rule {
            ArgRule::Equals(v) => format!("$value == {}", p.str(v)),
            ArgRule::Prefix(v) => format!("$value.starts_with({})", p.str(v)),
            ArgRule::OneOf(vs) => {
                let set: BTreeSet<Term> = vs.iter().map(|v| Term::Str(v.clone())).collect();
                format!("{}.contains($value)", p.bind(builder::set(set)))
            }
        };
        let source = if constraint.tools.is_empty() {
            format!("check if arg({name}, $value), {condition};")
        } else {
            let scope = any_of(&constraint.tools, &mut p);
            format!(
                "check if server($server), tool($tool), !({scope}) or arg({name}, $value), {condition};"
            )
        };
        add(source, p.take())?;
    }
    let context = serde_json::to_string(restriction)
        .map_err(|e| TokenError::Build(format!("cannot describe the block: {e}")))?;
    Ok(block.context(format!("{CONTEXT_PREFIX}{context}")))
}

/// `(a) || (b) || …` over the patterns, on the variables `$server` and `$tool`;
/// `false` for an empty list.
fn any_of(patterns: &[ToolPattern], p: &mut Params) -> String {
    if patterns.is_empty() {
        return "false".to_owned();
    }
    let alternatives: Vec<String> = patterns
        .iter()
        .map(|pattern| {
            let parts: Vec<String> = [
                segment("$server", &pattern.server, p),
                segment("$tool", &pattern.tool, p),
            ]
            .into_iter()
            .flatten()
            .collect();
            match parts.as_slice() {
                [] => "true".to_owned(),
                [one] => one.clone(),
                _ => format!("({})", parts.join(" && ")),
            }
        })
        .collect();
    alternatives.join(" || ")
}

/// The condition for one segment on `var`; `None` for `*`.
fn segment(var: &str, segment: &Segment, p: &mut Params) -> Option<String> {
    Some(match segment {
        Segment::Any => return None,
        Segment::Exact(v) => format!("{var} == {}", p.str(v)),
        Segment::Prefix(v) => format!("{var}.starts_with({})", p.str(v)),
        Segment::Suffix(v) => format!("{var}.ends_with({})", p.str(v)),
        Segment::Glob(pieces) => format!("{var}.matches({})", p.str(&Segment::regex(pieces))),
    })
}

/// The restriction described by a block's context, when this module wrote the block.
pub(crate) fn described(context: Option<&str>) -> Option<Restriction> {
    let json = context?.strip_prefix(CONTEXT_PREFIX)?;
    serde_json::from_str(json).ok()
}

/// Datalog limits: generous enough for a debug build on a busy machine, tight enough
/// that a hostile narrowing block cannot hold a worker for long.
pub(crate) fn limits() -> AuthorizerLimits {
    AuthorizerLimits {
        max_facts: 1000,
        max_iterations: 100,
        max_time: if cfg!(debug_assertions) {
            Duration::from_millis(100)
        } else {
            Duration::from_millis(10)
        },
    }
}
