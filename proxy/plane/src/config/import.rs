//! `warrant import mcp.json`: turns the `mcpServers` JSON that Claude Desktop, Claude
//! Code and Cursor use into `[upstreams.NAME]` tables, so a team brings what it has.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::raw::{RawConfig, RawUpstream};
use super::value::ValueRef;

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

/// Converts `mcpServers` JSON text into a configuration, returned as TOML text with
/// the server names made valid (`my server` becomes `my-server`). Secrets stay as the
/// `${VAR}` references the file had; a literal that looks like a secret is kept but
/// flagged in a comment so the operator moves it to the environment.
pub fn import_mcp_servers(json: &str) -> Result<(RawConfig, String), ImportError> {
    let value: serde_json::Value = serde_json::from_str(json)?;
    let servers = value
        .get("mcpServers")
        .or_else(|| value.get("servers"))
        .and_then(|v| v.as_object())
        .ok_or(ImportError::NoServers)?;
    let mut config = RawConfig::default();
    let mut warnings = Vec::new();
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
        for (key, value) in server.env.iter().chain(server.headers.iter()) {
            if !value.contains("${") && looks_secret(key) {
                warnings.push(format!(
                    "# upstreams.{name}: {key} holds a literal secret; replace it with \"${{VAR}}\" and set VAR in the environment"
                ));
            }
        }
        let upstream = RawUpstream {
            kind,
            command: server.command,
            args: server.args,
            env: server
                .env
                .into_iter()
                .map(|(k, v)| (k, ValueRef::Literal(v)))
                .collect(),
            cwd: server.cwd.map(Into::into),
            url,
            headers: server
                .headers
                .into_iter()
                .map(|(k, v)| (k, ValueRef::Literal(v)))
                .collect(),
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
    for warning in warnings {
        text.push_str(&warning);
        text.push('\n');
    }
    text.push('\n');
    text.push_str(&toml::to_string(&config)?);
    Ok((config, text))
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

fn looks_secret(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "token",
        "secret",
        "key",
        "password",
        "authorization",
        "credential",
    ]
    .iter()
    .any(|word| key.contains(word))
}
