//! Configuration problems, each with the key path it concerns and, when the source is at
//! hand, the line of the file it comes from.

use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path (`upstreams.github.url`), empty for the file as a whole.
    pub path: String,
    pub message: String,
    /// 1-based line in the source, when known.
    pub line: Option<usize>,
    /// The line holds a secret: its value is not printed with the context.
    pub redact: bool,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            line: None,
            redact: false,
        }
    }

    /// A problem on a line whose value is a secret (shown as `key = <redacted>`).
    pub fn secret(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            redact: true,
            ..Self::new(path, message)
        }
    }
}

/// Every problem found in one configuration source.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Where the configuration came from (a file path, or a description).
    pub origin: String,
    pub source: Option<String>,
    pub problems: Vec<Problem>,
}

impl Report {
    /// Fills in the line of each problem from the source text.
    pub(super) fn locate(&mut self) {
        let Some(source) = &self.source else { return };
        for problem in &mut self.problems {
            if problem.line.is_none() {
                problem.line = locate(source, &problem.path);
            }
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<&str> = self
            .source
            .as_deref()
            .map(|s| s.lines().collect())
            .unwrap_or_default();
        for problem in &self.problems {
            if problem.path.is_empty() {
                writeln!(f, "error: {}", problem.message)?;
            } else {
                writeln!(f, "error: {}: {}", problem.path, problem.message)?;
            }
            if let Some(line) = problem.line {
                writeln!(f, "  --> {}:{line}", self.origin)?;
                if let Some(text) = lines.get(line.saturating_sub(1)) {
                    let width = line.to_string().len();
                    writeln!(f, "{:width$} |", "")?;
                    match text.split_once('=') {
                        Some((key, _)) if problem.redact => {
                            writeln!(f, "{line} | {} = <redacted>", key.trim_end())?;
                        }
                        _ => writeln!(f, "{line} | {text}")?,
                    }
                    writeln!(f, "{:width$} |", "")?;
                }
            } else {
                writeln!(f, "  --> {}", self.origin)?;
            }
        }
        let n = self.problems.len();
        write!(
            f,
            "{n} problem{} in {}",
            if n == 1 { "" } else { "s" },
            self.origin
        )
    }
}

impl std::error::Error for Report {}

/// 1-based line of a byte offset.
pub(super) fn line_of_offset(source: &str, offset: usize) -> usize {
    source
        .get(..offset.min(source.len()))
        .map_or(1, |s| s.matches('\n').count() + 1)
}

/// Finds the line that defines a dotted key path in TOML text: the key inside its
/// `[table]`, or the table header itself. A best effort: it knows headers, dotted
/// headers with quoted parts, `key = value` lines and inline tables one level deep.
fn locate(source: &str, path: &str) -> Option<usize> {
    if path.is_empty() {
        return None;
    }
    let parts: Vec<String> = path.split('.').map(str::to_owned).collect();
    let mut table: Vec<String> = Vec::new();
    // The deepest table or key seen so far that contains the path: (depth, line).
    let mut best: Option<(usize, usize)> = None;
    let mut consider = |full: &[String], number: usize| {
        if !full.is_empty()
            && parts.starts_with(full)
            && best.is_none_or(|(depth, _)| full.len() > depth)
        {
            best = Some((full.len(), number));
        }
    };
    for (index, raw_line) in source.lines().enumerate() {
        let line = raw_line.trim();
        let number = index + 1;
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = split_key(header.trim_start_matches('['));
            consider(&table, number);
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let mut full = table.clone();
        full.extend(split_key(key));
        consider(&full, number);
    }
    best.map(|(_, line)| line)
}

fn split_key(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    for c in key.trim().chars() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '.') => parts.push(std::mem::take(&mut current).trim().to_owned()),
            (_, c) => current.push(c),
        }
    }
    parts.push(current.trim().to_owned());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "[server]\nlisten = \"x\"\n\n[upstreams.\"my.srv\"]\nurl = \"y\"\nheaders = { A = 1 }\n\n[upstreams.other]\ncommand = \"z\"\n";

    #[test]
    fn locates_keys_tables_and_inline_values() {
        assert_eq!(locate(SRC, "server.listen"), Some(2));
        assert_eq!(locate(SRC, "upstreams.other.command"), Some(9));
        assert_eq!(locate(SRC, "upstreams.other"), Some(8));
        assert_eq!(locate(SRC, "upstreams.other.missing"), Some(8));
    }

    #[test]
    fn quoted_header_parts() {
        assert_eq!(
            split_key("upstreams.\"my.srv\""),
            vec!["upstreams", "my.srv"]
        );
    }

    #[test]
    fn report_prints_line_context() {
        let mut report = Report {
            origin: "w.toml".into(),
            source: Some(SRC.into()),
            problems: vec![Problem::new("upstreams.other.command", "not found")],
        };
        report.locate();
        let text = report.to_string();
        assert!(
            text.contains("error: upstreams.other.command: not found"),
            "{text}"
        );
        assert!(text.contains("--> w.toml:9"), "{text}");
        assert!(text.contains("9 | command = \"z\""), "{text}");
        assert!(text.ends_with("1 problem in w.toml"), "{text}");
    }
}
