//! Tool patterns: `server.tool` with `*` wildcards, as a human grants them and as an
//! agent narrows them.
//!
//! | pattern | matches |
//! |---|---|
//! | `*` | every tool of every server |
//! | `github.*` | every tool of the server `github` |
//! | `github.create_issue` | that one tool |
//! | `github.get_*`, `*.get_*`, `get_*` | tools starting with `get_` (of `github`, of any server) |
//! | `*_user` | tools ending with `_user`, on any server |
//! | `fs.read*file` | tools of `fs` starting with `read` and ending with `file` |
//!
//! The server is the part before the first `.` (upstream names have no dot; tool names
//! may). A pattern without a dot is a tool pattern on any server. Each part is matched
//! as a whole: `*` stands for any run of characters, everything else is literal.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::TokenError;

/// One part (server or tool) of a [`ToolPattern`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// `*`: anything.
    Any,
    /// No wildcard: exactly this.
    Exact(String),
    /// `prefix*`.
    Prefix(String),
    /// `*suffix`.
    Suffix(String),
    /// Any other use of `*` (`a*b`, `*a*`): the literal pieces between the stars, in
    /// order; the first is anchored at the start and the last at the end (either may be
    /// empty).
    Glob(Vec<String>),
}

impl Segment {
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("an empty name".into());
        }
        if let Some(c) = text.chars().find(|c| c.is_control()) {
            return Err(format!("a control character ({c:?})"));
        }
        let pieces: Vec<&str> = text.split('*').collect();
        Ok(match pieces.as_slice() {
            [exact] => Self::Exact((*exact).to_owned()),
            _ if pieces.iter().all(|p| p.is_empty()) => Self::Any,
            [prefix, ""] => Self::Prefix((*prefix).to_owned()),
            ["", suffix] => Self::Suffix((*suffix).to_owned()),
            _ => {
                // Collapse runs of stars (`a**b` is `a*b`) but keep both anchors.
                let last = pieces.len() - 1;
                let kept: Vec<String> = pieces
                    .iter()
                    .enumerate()
                    .filter(|(i, p)| *i == 0 || *i == last || !p.is_empty())
                    .map(|(_, p)| (*p).to_owned())
                    .collect();
                match kept.as_slice() {
                    [prefix, suffix] if suffix.is_empty() => Self::Prefix(prefix.clone()),
                    [prefix, suffix] if prefix.is_empty() => Self::Suffix(suffix.clone()),
                    _ => Self::Glob(kept),
                }
            }
        })
    }

    /// Whether `name` matches this segment.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => name == exact,
            Self::Prefix(prefix) => name.starts_with(prefix.as_str()),
            Self::Suffix(suffix) => name.ends_with(suffix.as_str()),
            Self::Glob(pieces) => glob_matches(pieces, name),
        }
    }

    /// The anchored regular expression for a [`Segment::Glob`] (every literal escaped).
    pub(crate) fn regex(pieces: &[String]) -> String {
        let mut out = String::from("^");
        for (i, piece) in pieces.iter().enumerate() {
            if i > 0 {
                out.push_str("(?s:.*)");
            }
            escape_into(piece, &mut out);
        }
        out.push('$');
        out
    }
}

/// Greedy-free glob match: the first piece anchors the start, the last the end, the
/// middle ones are found left to right.
fn glob_matches(pieces: &[String], name: &str) -> bool {
    let (Some(first), Some(last)) = (pieces.first(), pieces.last()) else {
        return true;
    };
    if pieces.len() == 1 {
        return name == first;
    }
    if name.len() < first.len() + last.len()
        || !name.starts_with(first.as_str())
        || !name.ends_with(last.as_str())
    {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for piece in &pieces[1..pieces.len() - 1] {
        match rest.find(piece.as_str()) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    true
}

/// Escapes every character the `regex` crate treats as special (the same set as
/// `regex::escape`), so a tool name is always matched literally.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '.'
                | '+'
                | '*'
                | '?'
                | '('
                | ')'
                | '|'
                | '['
                | ']'
                | '{'
                | '}'
                | '^'
                | '$'
                | '#'
                | '&'
                | '-'
                | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(exact) => f.write_str(exact),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
            Self::Suffix(suffix) => write!(f, "*{suffix}"),
            Self::Glob(pieces) => f.write_str(&pieces.join("*")),
        }
    }
}

/// A pattern over tool ids (`server.tool`); see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ToolPattern {
    pub server: Segment,
    pub tool: Segment,
}

impl ToolPattern {
    /// Parses `server.tool`, `tool` (any server) or `*`.
    pub fn parse(text: &str) -> Result<Self, TokenError> {
        let text = text.trim();
        let invalid = |why: String| TokenError::Invalid(format!("tool pattern {text:?}: {why}"));
        if text.len() > 256 {
            return Err(invalid("longer than 256 characters".into()));
        }
        let (server, tool) = match text.split_once('.') {
            Some((server, tool)) => (server, tool),
            None => ("*", text),
        };
        if server.contains(['.', ' ']) {
            return Err(invalid("a server name has no dot or space".into()));
        }
        Ok(Self {
            server: Segment::parse(server).map_err(|e| invalid(format!("server: {e}")))?,
            tool: Segment::parse(tool).map_err(|e| invalid(format!("tool: {e}")))?,
        })
    }

    /// Parses a comma-separated list (`github.*,fs.read_*`); empty items are skipped.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, TokenError> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(Self::parse)
            .collect()
    }

    /// Every tool of every server.
    pub fn any() -> Self {
        Self {
            server: Segment::Any,
            tool: Segment::Any,
        }
    }

    /// Whether the tool `tool` of the server `server` matches.
    pub fn matches(&self, server: &str, tool: &str) -> bool {
        self.server.matches(server) && self.tool.matches(tool)
    }
}

impl fmt::Display for ToolPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.server, &self.tool) {
            (Segment::Any, Segment::Any) => f.write_str("*"),
            (server, tool) => write!(f, "{server}.{tool}"),
        }
    }
}

impl std::str::FromStr for ToolPattern {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for ToolPattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ToolPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ToolPattern {
        ToolPattern::parse(text).expect("valid pattern")
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(p("*"), ToolPattern::any());
        assert_eq!(p("*.*"), ToolPattern::any());
        assert_eq!(p("github.*").server, Segment::Exact("github".into()));
        assert_eq!(p("github.*").tool, Segment::Any);
        assert_eq!(p("get_*").server, Segment::Any);
        assert_eq!(p("get_*").tool, Segment::Prefix("get_".into()));
        assert_eq!(p("*_user").tool, Segment::Suffix("_user".into()));
        assert_eq!(
            p("fs.read*file").tool,
            Segment::Glob(vec!["read".into(), "file".into()])
        );
        assert_eq!(
            p("fs.a**b").tool,
            Segment::Glob(vec!["a".into(), "b".into()])
        );
        assert_eq!(p("fs.a**").tool, Segment::Prefix("a".into()));
        assert_eq!(p("fs.repos.get").tool, Segment::Exact("repos.get".into()));
        for bad in ["", "github.", ".x", "a b.c", "x.\u{7}"] {
            assert!(
                ToolPattern::parse(bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "*",
            "github.*",
            "github.create_issue",
            "*.get_*",
            "*.*_user",
            "fs.read*file",
            "*.*a*",
        ] {
            assert_eq!(p(text).to_string(), text);
            assert_eq!(p(&p(text).to_string()), p(text));
        }
        assert_eq!(p("get_*").to_string(), "*.get_*");
    }

    #[test]
    fn matching() {
        assert!(p("*").matches("github", "anything"));
        assert!(p("github.*").matches("github", "delete_repo"));
        assert!(!p("github.*").matches("gitlab", "delete_repo"));
        assert!(p("get_*").matches("x", "get_user"));
        assert!(!p("get_*").matches("x", "list_users"));
        assert!(p("*_user").matches("x", "get_user"));
        assert!(p("fs.read*file").matches("fs", "read_file"));
        assert!(p("fs.read*file").matches("fs", "readfile"));
        assert!(!p("fs.ab*ba").matches("fs", "aba"));
        assert!(p("fs.*a*b*").matches("fs", "xaxbx"));
        assert!(!p("fs.*a*b*").matches("fs", "xbxax"));
        assert_eq!(
            Segment::regex(&["a.b".into(), "(c)".into()]),
            r"^a\.b(?s:.*)\(c\)$"
        );
    }
}
