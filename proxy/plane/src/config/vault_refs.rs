//! Values an upstream's configuration takes from the vault, filled in at start: a whole
//! header or environment value written `{ vault = "KIND" }`, and `${vault:KIND}` inside
//! its `url` or an `args` element (where `warrant import` moves the secrets it finds).
//! `KIND` names the upstream's shared record (`warrant vault set UPSTREAM KIND`).

use std::collections::{BTreeSet, HashMap};

use super::upstream::{Transport, UpstreamConfig};
use super::value::{Secret, ValueRef};

/// How a vault value is written inside a URL or an argument.
const OPEN: &str = "${vault:";

/// `${vault:KIND}`, as written in a URL or an argument.
pub fn placeholder(kind: &str) -> String {
    format!("{OPEN}{kind}}}")
}

/// The kinds `config` takes from the vault.
pub fn vault_kinds(config: &UpstreamConfig) -> BTreeSet<String> {
    let mut kinds = BTreeSet::new();
    let (values, texts): (_, Vec<&str>) = match &config.transport {
        Transport::Stdio { env, args, .. } => (env, args.iter().map(String::as_str).collect()),
        Transport::StreamableHttp { headers, url } | Transport::Sse { headers, url } => {
            (headers, vec![url.as_str()])
        }
    };
    for value in values.values() {
        if let ValueRef::Vault { vault } = value {
            kinds.insert(vault.clone());
        }
    }
    for text in texts {
        kinds.extend(placeholders(text).into_iter().map(str::to_owned));
    }
    kinds
}

/// Fills `config`'s vault references with `values` (kind → value); the kinds not among
/// them are returned, and the configuration is then left as it was.
pub fn fill_vault_refs(
    config: &mut UpstreamConfig,
    values: &HashMap<String, Secret>,
) -> Result<(), Vec<String>> {
    let missing: Vec<String> = vault_kinds(config)
        .into_iter()
        .filter(|kind| !values.contains_key(kind))
        .collect();
    if !missing.is_empty() {
        return Err(missing);
    }
    let mut inline = Vec::new();
    match &mut config.transport {
        Transport::Stdio { env, args, .. } => {
            fill_values(env, values);
            for arg in args.iter_mut() {
                *arg = substitute(arg, values, &mut inline, |s| s.to_owned());
            }
        }
        Transport::StreamableHttp { headers, url } | Transport::Sse { headers, url } => {
            fill_values(headers, values);
            let text = url.as_str().replace("$%7Bvault:", OPEN).replace("%7D", "}");
            if !placeholders(&text).is_empty() {
                let filled = substitute(&text, values, &mut inline, |s| {
                    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
                });
                if let Ok(parsed) = url::Url::parse(&filled) {
                    *url = parsed;
                }
            }
        }
    }
    config.inline_secrets.extend(inline);
    Ok(())
}

fn fill_values(
    map: &mut std::collections::BTreeMap<String, ValueRef>,
    values: &HashMap<String, Secret>,
) {
    for value in map.values_mut() {
        if let ValueRef::Vault { vault } = value
            && let Some(secret) = values.get(vault.as_str())
        {
            *value = ValueRef::Given(secret.clone());
        }
    }
}

/// `text` with each `${vault:KIND}` replaced by its value (written with `encode`); the
/// values used go to `used`.
fn substitute(
    text: &str,
    values: &HashMap<String, Secret>,
    used: &mut Vec<Secret>,
    encode: impl Fn(&str) -> String,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        out.push_str(&rest[..at]);
        let after = &rest[at + OPEN.len()..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[at..]);
            return out;
        };
        match values.get(&after[..end]) {
            Some(secret) => {
                out.push_str(&encode(secret.expose()));
                used.push(secret.clone());
            }
            None => out.push_str(&rest[at..at + OPEN.len() + end + 1]),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The kinds written `${vault:KIND}` in `text`.
fn placeholders(text: &str) -> Vec<&str> {
    let mut kinds = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(OPEN) {
        let after = &rest[at + OPEN.len()..];
        let Some(end) = after.find('}') else {
            break;
        };
        kinds.push(&after[..end]);
        rest = &after[end + 1..];
    }
    kinds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, parse};

    fn upstream(toml: &str) -> UpstreamConfig {
        parse(toml, "test", &Overrides::default())
            .expect("config")
            .upstreams
            .remove(0)
    }

    fn secrets(pairs: &[(&str, &str)]) -> HashMap<String, Secret> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Secret::new((*v).to_owned())))
            .collect()
    }

    #[test]
    fn headers_and_the_url_of_an_http_upstream_are_filled() {
        let mut config = upstream(
            "[upstreams.x]\nurl = \"https://h.example/mcp?team=a&api_key=${vault:url.api_key}\"\n\
             headers = { Authorization = { vault = \"header.Authorization\" } }\n",
        );
        let kinds: Vec<_> = vault_kinds(&config).into_iter().collect();
        assert_eq!(kinds, ["header.Authorization", "url.api_key"]);
        let values = secrets(&[
            ("header.Authorization", "Bearer t0k"),
            ("url.api_key", "a b&c"),
        ]);
        fill_vault_refs(&mut config, &values).expect("filled");
        let Transport::StreamableHttp { url, headers } = &config.transport else {
            panic!("http");
        };
        assert_eq!(url.as_str(), "https://h.example/mcp?team=a&api_key=a+b%26c");
        assert!(
            matches!(headers.get("Authorization"), Some(ValueRef::Given(s)) if s.expose() == "Bearer t0k")
        );
        assert_eq!(
            config.inline_secrets.len(),
            1,
            "the URL's value is redacted too"
        );
    }

    #[test]
    fn env_and_args_of_a_stdio_upstream_are_filled_and_a_missing_kind_is_named() {
        let toml = "[upstreams.x]\ncommand = \"srv\"\nargs = [\"--token\", \"${vault:arg.1}\"]\n\
                    env = { GITHUB_TOKEN = { vault = \"env.GITHUB_TOKEN\" } }\n";
        let mut config = upstream(toml);
        let missing = fill_vault_refs(&mut config, &secrets(&[("arg.1", "s3")]));
        assert_eq!(missing, Err(vec!["env.GITHUB_TOKEN".to_owned()]));
        let values = secrets(&[("arg.1", "s3"), ("env.GITHUB_TOKEN", "ghp_x")]);
        fill_vault_refs(&mut config, &values).expect("filled");
        let Transport::Stdio { args, env, .. } = &config.transport else {
            panic!("stdio");
        };
        assert_eq!(args, &["--token", "s3"]);
        assert!(
            matches!(env.get("GITHUB_TOKEN"), Some(ValueRef::Given(s)) if s.expose() == "ghp_x")
        );
    }
}
