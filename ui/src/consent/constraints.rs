//! The consent screen's argument constraints and call budget: what the person may
//! require of a tool's arguments (equals, starts with, one of — argument names taken
//! from the tool's input schema as the catalog last saw it) and how many calls per hour
//! the agent may make. Checked here, on the server: a form that names an argument the
//! tool does not have, or asks for more than the bounds below, is shown again with the
//! reasons, and nothing is stored.
//!
//! The form works without JavaScript: each tool with arguments has [`ROWS_PER_TOOL`]
//! fixed rows, fields `arg.<n>.tool` (hidden), `arg.<n>.name`, `arg.<n>.rule`,
//! `arg.<n>.value`; a row without an argument name is unused.

use std::collections::BTreeMap;

use warrant_consent::grants::MAX_ARG_CONSTRAINTS;
use warrant_consent::token::{ArgConstraint, ArgRule, ToolPattern};

/// Constraint rows offered per tool.
pub(super) const ROWS_PER_TOOL: usize = 2;
/// The most values of a "one of" rule.
pub(super) const MAX_ONE_OF: usize = 32;
/// The longest value (or each "one of" value), in characters.
pub(super) const MAX_VALUE_CHARS: usize = 256;
/// The most arguments offered per tool.
pub(super) const MAX_ARGS_PER_TOOL: usize = 64;
/// The highest call budget a person may set.
pub(super) const MAX_CALLS_PER_HOUR: i64 = 1_000_000;
/// Row indices beyond this are ignored (a page never has so many).
const MAX_ROW_INDEX: usize = 10_000;

/// The rules offered: form value, label.
pub(super) const RULES: [(&str, &str); 3] = [
    ("equals", "equals"),
    ("prefix", "starts with"),
    ("one_of", "one of (comma-separated)"),
];

/// The top-level argument names of a tool's definition (canonical JSON with an
/// `inputSchema`), sorted; at most [`MAX_ARGS_PER_TOOL`].
pub(super) fn arguments_of(definition: Option<&str>) -> Vec<String> {
    let Some(value) = definition.and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
    else {
        return Vec::new();
    };
    let mut names: Vec<String> = value
        .get("inputSchema")
        .and_then(|s| s.get("properties"))
        .and_then(serde_json::Value::as_object)
        .map(|props| props.keys().cloned().collect())
        .unwrap_or_default();
    names.sort();
    names.truncate(MAX_ARGS_PER_TOOL);
    names
}

/// The constraint rows as the person last entered them (shown again with the reasons
/// when an answer is refused): row → field (`name`, `rule`, `value`) → text.
#[derive(Debug, Default)]
pub(super) struct Entered(BTreeMap<(usize, String), String>);

impl Entered {
    /// Reads the rows of a form.
    pub(super) fn of(form: &[(String, String)]) -> Self {
        let mut rows = BTreeMap::new();
        for (key, value) in form {
            let Some((index, field)) = key
                .strip_prefix("arg.")
                .and_then(|rest| rest.split_once('.'))
            else {
                continue;
            };
            if let Ok(index) = index.parse::<usize>()
                && index <= MAX_ROW_INDEX
                && matches!(field, "name" | "rule" | "value")
            {
                rows.insert((index, field.to_owned()), value.clone());
            }
        }
        Self(rows)
    }

    /// What row `n` had in `field` (empty when nothing).
    pub(super) fn get(&self, n: &usize, field: &str) -> &str {
        self.0
            .get(&(*n, field.to_owned()))
            .map_or("", String::as_str)
    }
}

/// One row of the form as sent.
#[derive(Debug, Default)]
struct Row {
    tool: String,
    name: String,
    rule: String,
    value: String,
}

/// Reads the constraint rows of the form. `tools` maps each tool the person may
/// constrain (`server.tool`) to its argument names. Every problem is reported, in row
/// order, in words for the person.
pub(super) fn constraints_of(
    form: &[(String, String)],
    tools: &BTreeMap<String, Vec<String>>,
) -> Result<Vec<ArgConstraint>, Vec<String>> {
    let mut rows: BTreeMap<usize, Row> = BTreeMap::new();
    for (key, value) in form {
        let Some(rest) = key.strip_prefix("arg.") else {
            continue;
        };
        let Some((index, field)) = rest.split_once('.') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        if index > MAX_ROW_INDEX {
            continue;
        }
        let row = rows.entry(index).or_default();
        let slot = match field {
            "tool" => &mut row.tool,
            "name" => &mut row.name,
            "rule" => &mut row.rule,
            "value" => &mut row.value,
            _ => continue,
        };
        value.trim().clone_into(slot);
    }
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for row in rows.into_values().filter(|r| !r.name.is_empty()) {
        match constraint(&row, tools) {
            Ok(c) => out.push(c),
            Err(e) => errors.push(e),
        }
    }
    if out.len() > MAX_ARG_CONSTRAINTS {
        errors.push(format!(
            "At most {MAX_ARG_CONSTRAINTS} argument constraints per approval ({} given).",
            out.len()
        ));
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn constraint(row: &Row, tools: &BTreeMap<String, Vec<String>>) -> Result<ArgConstraint, String> {
    let Some(arguments) = tools.get(&row.tool) else {
        return Err(format!(
            "“{}” is not a tool you can allow here: choose constraints under one of the tools listed.",
            row.tool
        ));
    };
    if !arguments.contains(&row.name) {
        return Err(format!(
            "{} has no argument named “{}” (its arguments: {}).",
            row.tool,
            row.name,
            if arguments.is_empty() {
                "none".to_owned()
            } else {
                arguments.join(", ")
            }
        ));
    }
    let what = format!("{}: argument “{}”", row.tool, row.name);
    let check = |v: &str| -> Result<String, String> {
        if v.is_empty() {
            Err(format!("{what}: a value is required."))
        } else if v.chars().count() > MAX_VALUE_CHARS {
            Err(format!(
                "{what}: a value is at most {MAX_VALUE_CHARS} characters."
            ))
        } else {
            Ok(v.to_owned())
        }
    };
    let rule = match row.rule.as_str() {
        "equals" => ArgRule::Equals(check(&row.value)?),
        "prefix" => ArgRule::Prefix(check(&row.value)?),
        "one_of" => {
            let values: Vec<&str> = row
                .value
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .collect();
            if values.len() > MAX_ONE_OF {
                return Err(format!(
                    "{what}: “one of” takes at most {MAX_ONE_OF} values ({} given).",
                    values.len()
                ));
            }
            let mut list = Vec::with_capacity(values.len());
            for v in values {
                let v = check(v)?;
                if !list.contains(&v) {
                    list.push(v);
                }
            }
            if list.is_empty() {
                return Err(format!("{what}: a value is required."));
            }
            ArgRule::OneOf(list)
        }
        other => return Err(format!("{what}: unknown rule “{other}”.")),
    };
    let tool = ToolPattern::parse(&row.tool).map_err(|e| format!("{}: {e}", row.tool))?;
    Ok(ArgConstraint {
        name: row.name.clone(),
        rule,
        tools: vec![tool],
    })
}

/// The optional "calls per hour": empty is no budget.
pub(super) fn budget_of(text: Option<&str>) -> Result<Option<i64>, String> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    match text.parse::<i64>() {
        Ok(n) if (1..=MAX_CALLS_PER_HOUR).contains(&n) => Ok(Some(n)),
        _ => Err(format!(
            "Calls per hour must be a whole number from 1 to {MAX_CALLS_PER_HOUR} (or empty for no limit), not “{text}”."
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn tools() -> BTreeMap<String, Vec<String>> {
        BTreeMap::from([(
            "demo.write_note".to_owned(),
            vec!["body".to_owned(), "title".to_owned()],
        )])
    }

    #[test]
    fn arguments_come_from_the_input_schema() {
        let definition = r#"{"inputSchema":{"type":"object","properties":{"title":{},"body":{}}}}"#;
        assert_eq!(arguments_of(Some(definition)), ["body", "title"]);
        assert!(arguments_of(Some("not json")).is_empty());
        assert!(arguments_of(None).is_empty());
    }

    #[test]
    fn rows_become_constraints_scoped_to_their_tool() {
        let parsed = constraints_of(
            &form(&[
                ("arg.0.tool", "demo.write_note"),
                ("arg.0.name", "title"),
                ("arg.0.rule", "prefix"),
                ("arg.0.value", "docs/"),
                ("arg.1.tool", "demo.write_note"),
                ("arg.1.name", ""),
                ("arg.1.rule", "equals"),
                ("arg.1.value", "ignored: no argument chosen"),
                ("arg.2.tool", "demo.write_note"),
                ("arg.2.name", "body"),
                ("arg.2.rule", "one_of"),
                ("arg.2.value", " a, b ,, a"),
            ]),
            &tools(),
        )
        .expect("valid");
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[0].describe(),
            r#"argument "title" must start with "docs/" (for demo.write_note)"#
        );
        assert_eq!(parsed[1].rule, ArgRule::OneOf(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn every_problem_is_reported() {
        let long = "x".repeat(MAX_VALUE_CHARS + 1);
        let many = vec!["v"; MAX_ONE_OF + 1]
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{v}{i}"))
            .collect::<Vec<_>>()
            .join(",");
        let errors = constraints_of(
            &form(&[
                ("arg.0.tool", "demo.write_note"),
                ("arg.0.name", "colour"),
                ("arg.0.rule", "equals"),
                ("arg.0.value", "red"),
                ("arg.1.tool", "demo.send_payment"),
                ("arg.1.name", "to"),
                ("arg.1.rule", "equals"),
                ("arg.1.value", "me"),
                ("arg.2.tool", "demo.write_note"),
                ("arg.2.name", "title"),
                ("arg.2.rule", "equals"),
                ("arg.2.value", &long),
                ("arg.3.tool", "demo.write_note"),
                ("arg.3.name", "title"),
                ("arg.3.rule", "one_of"),
                ("arg.3.value", &many),
                ("arg.4.tool", "demo.write_note"),
                ("arg.4.name", "title"),
                ("arg.4.rule", "matches"),
                ("arg.4.value", "x"),
                ("arg.5.tool", "demo.write_note"),
                ("arg.5.name", "title"),
                ("arg.5.rule", "equals"),
                ("arg.5.value", ""),
            ]),
            &tools(),
        )
        .expect_err("invalid");
        assert_eq!(errors.len(), 6, "{errors:?}");
        assert!(
            errors[0].contains("has no argument named “colour”"),
            "{errors:?}"
        );
        assert!(errors[1].contains("not a tool you can allow"), "{errors:?}");
        assert!(errors[2].contains("at most 256 characters"), "{errors:?}");
        assert!(errors[3].contains("at most 32 values"), "{errors:?}");
        assert!(errors[4].contains("unknown rule"), "{errors:?}");
        assert!(errors[5].contains("a value is required"), "{errors:?}");

        let rows: Vec<(String, String)> = (0..=MAX_ARG_CONSTRAINTS)
            .flat_map(|i| {
                [
                    (format!("arg.{i}.tool"), "demo.write_note".to_owned()),
                    (format!("arg.{i}.name"), "title".to_owned()),
                    (format!("arg.{i}.rule"), "prefix".to_owned()),
                    (format!("arg.{i}.value"), "docs/".to_owned()),
                ]
            })
            .collect();
        let errors = constraints_of(&rows, &tools()).expect_err("too many");
        assert!(errors[0].contains("At most 64"), "{errors:?}");
    }

    #[test]
    fn a_budget_is_a_bounded_whole_number_or_nothing() {
        assert_eq!(budget_of(None), Ok(None));
        assert_eq!(budget_of(Some("  ")), Ok(None));
        assert_eq!(budget_of(Some("3")), Ok(Some(3)));
        for bad in ["0", "-1", "1.5", "lots", "1000001"] {
            assert!(budget_of(Some(bad)).is_err(), "{bad}");
        }
    }
}
