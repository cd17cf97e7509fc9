//! Credentials an upstream echoes back: found in the bytes of an answer and replaced
//! before the answer leaves Warrant, so that an agent never receives the secrets it
//! calls with (a header the upstream reflects, an environment variable a tool prints).

use std::borrow::Cow;

use memchr::memmem::Finder;

/// What replaces a credential in an answer.
pub(crate) const REDACTED: &str = "[redacted by Warrant]";

/// Secrets shorter than this are not looked for: they would match ordinary text, and a
/// credential that short protects nothing.
const MIN_LEN: usize = 8;

/// The secrets to look for in one upstream's answers, each as it is and as it reads
/// inside a JSON string.
#[derive(Default)]
pub(crate) struct Redactions {
    finders: Vec<Finder<'static>>,
}

impl std::fmt::Debug for Redactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactions({} patterns)", self.finders.len())
    }
}

impl Redactions {
    /// The redactions of `secrets` (header and environment values): each value, and the
    /// credential of an `Authorization`-style value (`Bearer X`: `X` too).
    pub(crate) fn of<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        let mut add = |value: &str| {
            let value = value.trim();
            if value.len() < MIN_LEN {
                return;
            }
            let escaped = serde_json::to_string(value).unwrap_or_default();
            let escaped = escaped
                .strip_prefix('"')
                .and_then(|e| e.strip_suffix('"'))
                .unwrap_or(value);
            for needle in [value, escaped] {
                if !needles.iter().any(|n| n == needle) {
                    needles.push(needle.to_owned());
                }
            }
        };
        for secret in secrets {
            add(secret);
            if let Some((scheme, credential)) = secret.trim().split_once(' ')
                && !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                add(credential);
            }
        }
        // The longer first, so that a value is replaced whole before a part of it is.
        needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        Self {
            finders: needles
                .iter()
                .map(|n| Finder::new(n.as_bytes()).into_owned())
                .collect(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.finders.is_empty()
    }

    /// `input` with every secret replaced; borrowed as it is when none occurs.
    pub(crate) fn bytes<'a>(&self, input: &'a [u8]) -> Cow<'a, [u8]> {
        let mut out: Cow<'a, [u8]> = Cow::Borrowed(input);
        for finder in &self.finders {
            if finder.find(&out).is_none() {
                continue;
            }
            let needle_len = finder.needle().len();
            let mut replaced = Vec::with_capacity(out.len());
            let mut rest: &[u8] = &out;
            while let Some(at) = finder.find(rest) {
                replaced.extend_from_slice(&rest[..at]);
                replaced.extend_from_slice(REDACTED.as_bytes());
                rest = &rest[at + needle_len..];
            }
            replaced.extend_from_slice(rest);
            out = Cow::Owned(replaced);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(r: &Redactions, text: &str) -> String {
        String::from_utf8_lossy(&r.bytes(text.as_bytes())).into_owned()
    }

    #[test]
    fn a_secret_is_replaced_wherever_it_appears_and_nothing_else_changes() {
        let r = Redactions::of(["Bearer ghp_0123456789abcdef", "sk-live-\"quoted\"-key"]);
        assert_eq!(
            redacted(
                &r,
                r#"{"text":"auth was Bearer ghp_0123456789abcdef, token ghp_0123456789abcdef"}"#
            ),
            format!(r#"{{"text":"auth was {REDACTED}, token {REDACTED}"}}"#)
        );
        // As a JSON string writes it, escapes included.
        assert_eq!(
            redacted(&r, r#"{"env":"sk-live-\"quoted\"-key"}"#),
            format!(r#"{{"env":"{REDACTED}"}}"#)
        );
        let clean = r#"{"text":"nothing to see"}"#;
        assert!(matches!(r.bytes(clean.as_bytes()), Cow::Borrowed(_)));
    }

    #[test]
    fn short_values_are_not_looked_for() {
        let r = Redactions::of(["prod", "Basic abc"]);
        assert!(r.is_empty() || redacted(&r, "prod abc") == "prod abc");
        assert!(Redactions::of(Vec::<&str>::new()).is_empty());
    }
}
