//! The whole arguments of a held call as the person is shown them ([`arguments`]): every
//! value whole, nested objects and arrays in full, pretty-printed with keys sorted, the
//! values of secret-looking keys masked at every depth, bounded in size. What hides
//! itself or turns text around is spelled out where it is shown (`visible_text`).

use serde_json::{Map, Value};

use super::{SECRET_WORDS, visible};

/// The most of the arguments kept for the page, in bytes.
pub const ARGUMENTS_BYTES: usize = 64 * 1024;

/// The call's arguments for the approval page: canonical (keys sorted), pretty-printed
/// JSON with secret-looking keys' values masked (`"•••"`), at most [`ARGUMENTS_BYTES`];
/// longer ones are cut with a note saying where and how long they were. The hash of the
/// call ([`super::args_hash`]) still covers the real arguments.
pub fn arguments(args: Option<&Map<String, Value>>) -> String {
    let mut text = String::new();
    match args {
        Some(map) => pretty(&Value::Object(map.clone()), 0, &mut text),
        None => text.push_str("{}"),
    }
    bounded(text, ARGUMENTS_BYTES)
}

fn bounded(text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{}\n… (truncated at {cut} bytes: the arguments are {} bytes long)",
        &text[..cut],
        text.len()
    )
}

fn secret(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| lower.contains(w))
}

fn indent(depth: usize, out: &mut String) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

fn pretty(value: &Value, depth: usize, out: &mut String) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(depth + 1, out);
                out.push_str(&Value::String(key.clone()).to_string());
                out.push_str(": ");
                if secret(key) {
                    out.push_str("\"•••\"");
                } else {
                    pretty(&map[key], depth + 1, out);
                }
            }
            indent(depth, out);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(depth + 1, out);
                pretty(item, depth + 1, out);
            }
            indent(depth, out);
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// `text` as [`super::visible`] shows it, line by line (the line breaks of pretty-printed
/// arguments stay): other control characters become spaces, invisible and
/// direction-changing ones are spelled out (`⟨U+202E⟩`).
pub fn visible_text(text: &str) -> String {
    text.split('\n').map(visible).collect::<Vec<_>>().join("\n")
}
