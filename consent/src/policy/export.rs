//! The policy as a TOML file, with comments that help whoever edits it: what the file
//! covers, the tools nobody reviewed (and what their annotations suggest), the groups
//! without a ceiling, the configured default ceiling.

use std::fmt::Write as _;

use super::store::Current;
use super::{key, quoted};
use crate::token::Risk;

/// Renders `current` as a policy file. `default_ceiling` (the configured
/// `[policy] default_ceiling`) is only shown, as a comment: configuration stays in
/// `warrant.toml`. Parsing the result gives back exactly `current`'s policy.
pub fn render(current: &Current, default_ceiling: Option<Risk>) -> String {
    let mut out = String::new();
    out.push_str(
        "# Warrant policy: trusted upstreams, reviewed risk classes, group and user ceilings.\n\
         # Exported by `warrant policy export`; apply with `warrant policy apply FILE`.\n\
         #\n\
         # This file is the WHOLE policy for what it covers: on apply, a trusted upstream, a\n\
         # reviewed class or a ceiling that the database has and this file lacks is removed.\n\
         # Risk classes: low < medium < high < critical. Group membership is not here: it\n\
         # comes from single sign-on (or the admin pages).\n",
    );
    if let Some(risk) = default_ceiling {
        let _ = writeln!(
            out,
            "#\n# Users with neither their own nor a group ceiling have the default ceiling, {}\n\
             # (`[policy] default_ceiling` in warrant.toml, not set by this file).",
            risk.name()
        );
    }
    let state = &current.state;
    let mut upstreams: Vec<&String> = current.tools.keys().chain(&state.trusted).collect();
    upstreams.sort();
    upstreams.dedup();
    for upstream in upstreams {
        let _ = write!(
            out,
            "\n[upstreams.{}]\ntrust_annotations = {}\n",
            key(upstream),
            state.trusted.contains(upstream)
        );
        let Some(tools) = current.tools.get(upstream) else {
            continue;
        };
        if tools.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n[upstreams.{}.tools]", key(upstream));
        for (tool, suggested) in tools {
            match state.reviewed.get(&(upstream.clone(), tool.clone())) {
                Some(risk) => {
                    let _ = writeln!(out, "{} = {}", key(tool), quoted(risk.name()));
                }
                None => {
                    let _ = writeln!(
                        out,
                        "# {} = {}  # not reviewed; its annotations suggest {}",
                        key(tool),
                        quoted(suggested.name()),
                        suggested.name()
                    );
                }
            }
        }
    }
    for (group, risk) in &state.groups {
        let _ = write!(
            out,
            "\n[groups.{}]\nceiling = {}\n",
            key(group),
            quoted(risk.name())
        );
    }
    let without: Vec<String> = current
        .groups
        .iter()
        .filter(|(group, _)| !state.groups.contains_key(*group))
        .map(|(group, members)| format!("{} ({members})", key(group)))
        .collect();
    if !without.is_empty() {
        let _ = writeln!(
            out,
            "\n# Groups without a ceiling (members): {}",
            without.join(", ")
        );
    }
    for (email, risk) in &state.users {
        let _ = write!(
            out,
            "\n[users.{}]\nceiling = {}\n",
            key(email),
            quoted(risk.name())
        );
    }
    for (id, risk) in &current.orphans {
        let _ = writeln!(
            out,
            "\n# A {} ceiling is set on user id {id}, which no user has: not exported.",
            risk.name()
        );
    }
    out
}
