//! `warrant import mcp.json`: turns the `mcpServers` JSON that Claude Desktop, Claude
//! Code and Cursor use into `[upstreams.NAME]` tables, so a team brings what it has.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::raw::{RawConfig, RawUpstream};
use super::value::{Secret, ValueRef};
use super::vault_refs::placeholder;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("not valid mcpServers JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the file has no \"mcpServers\" (or \"servers\") object")]
    NoServers,
    #[error("server {name:?}: {reason}")]
    Server { name: String, reason: String },
    #[error("cannot write TOML: {0}")]
    Toml(#[from] toml::ser::Error),
}

/// One entry of `mcpServers`. Unknown keys are kept out on purpose: clients add their own
/// (`disabled`, `autoApprove`, `alwaysAllow`, …) and refusing them would refuse real files.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonServer {
    #[serde(rename = "type")]
    kind: Option<String>,
    transport: Option<String>,
    command: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    cwd: Option<String>,
    url: Option<String>,
    server_url: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    disabled: bool,
}

/// What `warrant import` made of an `mcpServers` file.
#[derive(Debug)]
pub struct Imported {
    pub config: RawConfig,
    /// The configuration as TOML: references only, never a secret.
    pub text: String,
    /// The secrets found, to be stored in the vault as the named upstream's shared
    /// records of their kind (the configuration refers to them).
    pub moved: Vec<MovedSecret>,
}

/// A secret `warrant import` took out of the file.
#[derive(Debug)]
pub struct MovedSecret {
    /// The upstream's name in the configuration.
    pub upstream: String,
    /// The vault record kind the configuration refers to (`env.GITHUB_TOKEN`).
    pub kind: String,
    /// Where it was, for the operator (`env GITHUB_TOKEN`, `URL query api_key`).
    pub found_in: String,
    pub value: Secret,
}

/// Converts `mcpServers` JSON text into a configuration, with the server names made
/// valid (`my server` becomes `my-server`). `${VAR}` references stay as they are; every
/// literal secret found (a value of an environment variable or header whose name or
/// value looks like one, a password or secret query parameter in a URL, the value of a
/// secret-named flag in the arguments) is taken out: the configuration refers to the
/// vault instead (`{ vault = "KIND" }`, or `${vault:KIND}` inside a URL or argument), and
/// the secret is returned to be stored there.
pub fn import_mcp_servers(json: &str) -> Result<Imported, ImportError> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    let servers = value
        .get("mcpServers")
        .or_else(|| value.get("servers"))
        .and_then(|v| v.as_object())
        .ok_or(ImportError::NoServers)?;
    let mut config = RawConfig::default();
    let mut moved = Vec::new();
    for (original, entry) in servers {
        let server: JsonServer =
            serde_json::from_value(entry.clone()).map_err(|e| ImportError::Server {
                name: original.clone(),
                reason: e.to_string(),
            })?;
        let name = sanitize(original);
        let url = server.url.or(server.server_url);
        let kind = server
            .kind
            .or(server.transport)
            .map(|k| k.to_ascii_lowercase());
        let kind = match (kind.as_deref(), &server.command, &url) {
            (Some("stdio") | None, Some(_), None) => None,
            (Some("sse"), None, Some(_)) => Some("sse".to_owned()),
            (Some("http" | "streamable-http" | "streamablehttp") | None, None, Some(_)) => None,
            (k, _, _) => {
                return Err(ImportError::Server {
                    name: original.clone(),
                    reason: format!(
                        "needs either \"command\" or \"url\" (type {:?})",
                        k.unwrap_or("unspecified")
                    ),
                });
            }
        };
        let mut found = Found {
            upstream: name.clone(),
            moved: &mut moved,
        };
        let env = found.values("env", server.env);
        let mut headers = found.values("header", server.headers);
        let url = url.map(|u| found.url(&u, &mut headers));
        let args = found.args(server.args);
        let upstream = RawUpstream {
            kind,
            command: server.command,
            args,
            env,
            cwd: server.cwd.map(Into::into),
            url,
            headers,
            enabled: server.disabled.then_some(false),
            ..RawUpstream::default()
        };
        let table = toml::Value::try_from(upstream)?;
        if config.upstreams.insert(name.clone(), table).is_some() {
            return Err(ImportError::Server {
                name: original.clone(),
                reason: format!("two servers map to the same name {name:?}"),
            });
        }
    }
    let mut text = String::from("# Imported from mcpServers JSON by `warrant import`.\n");
    if !moved.is_empty() {
        text.push_str(
            "# Secrets found in the file were moved to Warrant's vault (run Warrant with the\n\
             # same data directory); this file only refers to them:\n",
        );
        for secret in &moved {
            text.push_str(&format!(
                "#   upstreams.{}: {} -> vault `{}`\n",
                secret.upstream, secret.found_in, secret.kind
            ));
        }
    }
    text.push('\n');
    text.push_str(&toml::to_string(&config)?);
    Ok(Imported {
        config,
        text,
        moved,
    })
}

/// The secrets found in one server's entry.
struct Found<'a> {
    upstream: String,
    moved: &'a mut Vec<MovedSecret>,
}

impl Found<'_> {
    /// Moves `value` to the vault as `kind`; what the configuration writes instead.
    fn take(&mut self, kind: String, found_in: String, value: String) -> String {
        self.moved.push(MovedSecret {
            upstream: self.upstream.clone(),
            kind: kind.clone(),
            found_in,
            value: Secret::new(value),
        });
        kind
    }

    /// Environment variables or headers (`what`): a literal secret becomes a vault
    /// reference.
    fn values(
        &mut self,
        what: &str,
        values: BTreeMap<String, String>,
    ) -> BTreeMap<String, ValueRef> {
        values
            .into_iter()
            .map(|(key, value)| {
                let secret = !value.contains("${")
                    && !value.is_empty()
                    && (looks_secret(&key) || looks_like_token(&value));
                let value = if secret {
                    let kind = self.take(format!("{what}.{key}"), format!("{what} {key}"), value);
                    ValueRef::Vault { vault: kind }
                } else {
                    ValueRef::Literal(value)
                };
                (key, value)
            })
            .collect()
    }

    /// A URL: a password in it becomes a `Basic` authorization header from the vault
    /// (what an HTTP client sends for it), a secret query parameter `${vault:KIND}`.
    fn url(&mut self, text: &str, headers: &mut BTreeMap<String, ValueRef>) -> String {
        let Ok(mut url) = url::Url::parse(text) else {
            return text.to_owned();
        };
        let has_authorization = headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("authorization"));
        if let Some(password) = url.password().map(str::to_owned)
            && !has_authorization
        {
            use base64::Engine;
            let decode = |s: &str| percent_decoded(&s.replace('+', "%2B"));
            let user = decode(url.username());
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", decode(&password)));
            let kind = self.take(
                "header.Authorization".into(),
                "URL password".into(),
                format!("Basic {basic}"),
            );
            headers.insert("Authorization".into(), ValueRef::Vault { vault: kind });
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        if let Some(query) = url.query().map(str::to_owned) {
            let mut changed = false;
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, value))
                        if !value.is_empty()
                            && !value.contains("${")
                            && (looks_secret(name) || looks_like_token(value)) =>
                    {
                        let value = percent_decoded(value);
                        let kind =
                            self.take(format!("url.{name}"), format!("URL query {name}"), value);
                        changed = true;
                        format!("{name}={}", placeholder(&kind))
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            if changed {
                url.set_query(Some(&pairs.join("&")));
            }
        }
        url.to_string()
    }

    /// Arguments: the value after a secret-named flag (`--api-key VALUE`,
    /// `--token=VALUE`), or one that looks like a token, becomes `${vault:arg.N}`.
    fn args(&mut self, args: Vec<String>) -> Vec<String> {
        let mut out: Vec<String> = Vec::with_capacity(args.len());
        for (i, arg) in args.into_iter().enumerate() {
            let after_flag = out.last().is_some_and(|prev| {
                prev.starts_with('-') && !prev.contains('=') && looks_secret(prev)
            });
            if let Some((flag, value)) = arg.split_once('=')
                && flag.starts_with('-')
                && looks_secret(flag)
                && !value.is_empty()
                && !value.contains("${")
            {
                let kind = self.take(
                    format!("arg.{i}"),
                    format!("argument {flag}"),
                    value.to_owned(),
                );
                out.push(format!("{flag}={}", placeholder(&kind)));
            } else if !arg.starts_with('-')
                && !arg.contains("${")
                && !arg.is_empty()
                && (after_flag || looks_like_token(&arg))
            {
                let kind = self.take(format!("arg.{i}"), format!("argument {}", i + 1), arg);
                out.push(placeholder(&kind));
            } else {
                out.push(arg);
            }
        }
        out
    }
}

fn sanitize(name: &str) -> String {
    let cleaned: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if cleaned.is_empty() {
        "server".into()
    } else {
        cleaned
    }
}

/// A query value decoded (`%XX` escapes, `+` as a space).
fn percent_decoded(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Whether a name (of a variable, header, query parameter or flag) says it holds a secret.
fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "token",
        "secret",
        "key",
        "password",
        "passwd",
        "auth",
        "credential",
        "cookie",
        "session",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Whether a value looks like a well-known kind of token, whatever its name.
fn looks_like_token(value: &str) -> bool {
    [
        "ghp_",
        "gho_",
        "ghs_",
        "ghu_",
        "github_pat_",
        "glpat-",
        "sk-",
        "sk_live_",
        "sk_test_",
        "rk_live_",
        "xoxb-",
        "xoxp-",
        "xapp-",
        "lin_api_",
        "ntn_",
        "AKIA",
        "AIza",
        "Bearer ",
        "Basic ",
    ]
    .iter()
    .any(|prefix| value.starts_with(prefix))
}
