//! Values that may carry secrets: resolved from the environment or a file at start, held
//! in a [`Secret`] that never prints its content.

use std::fmt;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warrant_idp::secret::SecretString;

use super::report::Problem;

/// A resolved value that must not reach logs: `Debug` and `Display` print a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    /// The value itself, for the one place that needs it (a header, a child's env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Whether `text` is base64 (standard or URL-safe, padding optional) of exactly 32 bytes.
pub(crate) fn is_key_32_base64(text: &str) -> bool {
    decode_key_32(text).is_some()
}

/// The 32 bytes of a base64 key (standard or URL-safe alphabet, padding optional).
pub fn decode_key_32(text: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = text.trim().trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .ok()?;
    bytes.try_into().ok()
}

/// Resolves a value: expands `${VAR}` / `${VAR:-default}` in literals, reads `env` and
/// `file` references. The error names what is missing, never a value.
pub fn resolve(value: &ValueRef) -> Result<Secret, String> {
    match value {
        ValueRef::Literal(text) => expand(text).map(Secret),
        ValueRef::Env { env } => std::env::var(env)
            .map(Secret)
            .map_err(|_| format!("environment variable {env} is not set")),
        ValueRef::File { file } => std::fs::read_to_string(file)
            .map(|s| Secret(s.trim_end_matches(['\r', '\n']).to_owned()))
            .map_err(|e| format!("cannot read secret file {}: {e}", file.display())),
        ValueRef::Given(secret) => Ok(secret.clone()),
        ValueRef::Vault { vault } => Err(format!(
            "the vault's `{vault}` is read when Warrant starts (and only for an upstream's \
             `headers` and `env`)"
        )),
    }
}

/// `${VAR}` and `${VAR:-default}` expansion, as in the `mcpServers` JSON of Claude Code.
/// `$$` stands for a literal `$`.
fn expand(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {text:?}"))?;
            let (name, default) = match body[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..end], None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("${{{name}}} is not a valid variable reference"));
            }
            match (std::env::var(name), default) {
                (Ok(value), _) => out.push_str(&value),
                (Err(_), Some(default)) => out.push_str(default),
                (Err(_), None) => return Err(format!("environment variable {name} is not set")),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A value that may be a secret: a literal string (in which `${VAR}` and
/// `${VAR:-default}` are replaced from the environment), or a reference to an
/// environment variable or a file whose content is the value.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ValueRef {
    Literal(String),
    Env {
        env: String,
    },
    File {
        file: PathBuf,
    },
    /// The upstream's shared record of this kind in the vault (`{ vault = "env.TOKEN" }`),
    /// read at start (`warrant import` writes these).
    Vault {
        vault: String,
    },
    /// A value Warrant itself puts in (a key from the vault): taken as it is, never
    /// expanded, never read from or written to a file.
    #[serde(skip)]
    Given(Secret),
}

/// A secret written by reference (`{ env = … }`, `{ file = … }`, `"${VAR}"`), resolved.
/// A literal secret in the file is refused: config files end up in repositories.
pub(crate) fn secret(
    value: Option<ValueRef>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Option<SecretString> {
    let value = value?;
    if let ValueRef::Literal(text) = &value
        && !text.contains("${")
    {
        problems.push(Problem::secret(
            path,
            "write secrets by reference, not inline: { env = \"VAR\" }, { file = \"/path\" } \
             or \"${VAR}\"",
        ));
        return None;
    }
    match resolve(&value) {
        Ok(s) => Some(SecretString::new(s.expose().to_owned())),
        Err(e) => {
            problems.push(Problem::new(path, e));
            None
        }
    }
}

/// A duration written like `"30s"` or `"2m"`, longer than zero; `default` when not given.
pub(crate) fn duration(
    text: Option<String>,
    path: &str,
    default: Duration,
    problems: &mut Vec<Problem>,
) -> Duration {
    let Some(text) = text else { return default };
    match humantime::parse_duration(&text) {
        Ok(d) if !d.is_zero() => d,
        Ok(_) => {
            problems.push(Problem::new(path, "must be longer than zero"));
            default
        }
        Err(e) => {
            problems.push(Problem::new(
                path,
                format!("{text:?} is not a duration like \"30s\" or \"2m\" ({e})"),
            ));
            default
        }
    }
}

/// Addresses or networks (`10.0.0.0/8`, `fd00::/8`, `192.0.2.7`) listed under `path`;
/// each one that is neither is a problem.
pub(crate) fn networks(
    list: Option<Vec<String>>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> Vec<ipnet::IpNet> {
    let mut nets = Vec::new();
    for (i, text) in list.iter().flatten().enumerate() {
        let parsed = text
            .parse::<ipnet::IpNet>()
            .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => nets.push(net.trunc()),
            Err(_) => problems.push(Problem::new(
                format!("{path}.{i}"),
                format!("{text:?} is not an address or a network like 10.0.0.0/8 or fd00::/8"),
            )),
        }
    }
    nets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_references_and_defaults() {
        // PATH is set in every test environment; the other name is unlikely to be.
        let path = std::env::var("PATH").expect("PATH");
        assert_eq!(expand("a ${PATH} b").expect("ok"), format!("a {path} b"));
        assert_eq!(
            expand("${WARRANT_SURELY_UNSET_X:-dflt}").expect("ok"),
            "dflt"
        );
        assert_eq!(expand("cost $$5 and $x").expect("ok"), "cost $5 and $x");
        assert!(
            expand("${WARRANT_SURELY_UNSET_X}")
                .expect_err("missing")
                .contains("WARRANT_SURELY_UNSET_X")
        );
        assert!(expand("${oops").is_err());
        assert!(expand("${a b}").is_err());
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn file_references_are_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("token");
        std::fs::write(&file, "abc\n").expect("write");
        let value = ValueRef::File { file };
        assert_eq!(resolve(&value).expect("ok").expose(), "abc");
        let missing = ValueRef::File {
            file: dir.path().join("nope"),
        };
        assert!(
            resolve(&missing)
                .expect_err("missing")
                .contains("cannot read secret file")
        );
    }
}
