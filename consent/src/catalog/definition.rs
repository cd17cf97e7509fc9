//! A tool's definition as the catalog sees it: the canonical JSON of what an upstream
//! says about a tool, its SHA-256 (the **definition hash**), the class its annotations
//! suggest, the effective class, and a field-by-field diff of two versions.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::token::Risk;

/// One tool as an upstream describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRecord {
    pub name: String,
    pub title: Option<String>,
    pub description: Option<String>,
    pub annotations: Option<Value>,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
}

/// The fields of a definition, in the order pages show them.
pub const FIELDS: [&str; 6] = [
    "name",
    "title",
    "description",
    "inputSchema",
    "outputSchema",
    "annotations",
];

impl ToolRecord {
    /// The definition as one JSON object: every field of [`FIELDS`], `null` when absent.
    pub fn definition(&self) -> Value {
        let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
        serde_json::json!({
            "name": self.name,
            "title": text(&self.title),
            "description": text(&self.description),
            "inputSchema": self.input_schema,
            "outputSchema": self.output_schema.clone().unwrap_or(Value::Null),
            "annotations": self.annotations.clone().unwrap_or(Value::Null),
        })
    }

    /// The definition as canonical JSON (see [`canonical_json`]).
    pub fn canonical(&self) -> String {
        canonical_json(&self.definition())
    }

    /// SHA-256 of the canonical definition, lower-case hex.
    pub fn definition_hash(&self) -> String {
        hash_of(&self.canonical())
    }

    /// The class the tool's MCP annotations suggest (see [`Risk::suggested`]).
    pub fn suggested_risk(&self) -> Risk {
        suggested_from(self.annotations.as_ref())
    }
}

/// SHA-256 of a canonical definition, lower-case hex.
pub fn hash_of(canonical: &str) -> String {
    let digest = Sha256::digest(canonical.as_bytes());
    let mut out = String::with_capacity(64);
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// The class MCP annotations (as JSON) suggest: `readOnlyHint` → low,
/// `destructiveHint` → high, otherwise medium.
pub fn suggested_from(annotations: Option<&Value>) -> Risk {
    let hint = |key: &str| {
        annotations
            .and_then(|a| a.get(key))
            .and_then(Value::as_bool)
    };
    Risk::suggested(hint("readOnlyHint"), hint("destructiveHint"))
}

/// The class calls of a tool are decided with: the admin's review if there is one,
/// else what the annotations suggest when the admin trusts that upstream's annotations,
/// else `critical` (nobody vouched for it).
pub fn effective_risk(reviewed: Option<Risk>, trusted: bool, suggested: Risk) -> Risk {
    match reviewed {
        Some(risk) => risk,
        None if trusted => suggested,
        None => Risk::Critical,
    }
}

/// JSON with object keys sorted (by their UTF-8 bytes) at every depth, no whitespace,
/// strings and numbers as serde_json writes them: the same value always gives the same
/// text, whatever the order an upstream sent its keys in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// One field that differs between two versions of a definition, each side as
/// indented JSON (`null` when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: &'static str,
    pub old: String,
    pub new: String,
}

/// The fields that differ between two canonical tool definitions (as stored), in
/// [`FIELDS`] order. Text that is not JSON counts as `null`.
pub fn diff(old: &str, new: &str) -> Vec<FieldChange> {
    diff_fields(&FIELDS, old, new)
}

/// The fields of `fields` that differ between two canonical definitions of any kind
/// (a tool's, a prompt's, a resource template's), in that order. Text that is not
/// JSON counts as `null`.
pub fn diff_fields(fields: &[&'static str], old: &str, new: &str) -> Vec<FieldChange> {
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
    let (old, new) = (parse(old), parse(new));
    fields
        .iter()
        .filter_map(|field| {
            let a = old.get(field).unwrap_or(&Value::Null);
            let b = new.get(field).unwrap_or(&Value::Null);
            (a != b).then(|| FieldChange {
                field,
                old: pretty(a),
                new: pretty(b),
            })
        })
        .collect()
}

/// A value for people: text as it is, anything else as indented JSON.
fn pretty(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}
