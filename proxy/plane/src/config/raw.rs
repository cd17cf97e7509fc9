//! The configuration exactly as written in `warrant.toml`: serde types that refuse
//! unknown keys. [`super::validate`] turns them into the checked [`super::Config`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::upstream_auth::RawUpstreamAuth;
use super::value::ValueRef;

/// The whole file.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<RawServer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp: Option<RawMcp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RawAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth: Option<super::oauth::RawOAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<super::policy::RawPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault: Option<super::vault::RawVault>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<super::audit::RawAudit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<super::metrics::RawMetrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<super::telemetry::RawTelemetry>,
    #[serde(default)]
    pub upstreams: BTreeMap<String, toml::Value>,
}

/// `[auth]`: how people sign in, and their browser sessions.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub session_idle: Option<String>,
    pub session_absolute: Option<String>,
    pub setup_link_ttl: Option<String>,
    #[serde(default)]
    pub oidc: BTreeMap<String, RawOidc>,
    pub email: Option<RawEmail>,
}

/// `[auth.oidc.NAME]`: one OpenID Connect provider.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOidc {
    pub display_name: Option<String>,
    pub issuer: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<ValueRef>,
    pub scopes: Option<Vec<String>>,
    pub groups_claim: Option<String>,
    pub provision: Option<bool>,
    pub trust_email: Option<bool>,
    pub allowed_domains: Option<Vec<String>>,
    pub allowed_groups: Option<Vec<String>>,
    pub admin_groups: Option<Vec<String>>,
    pub timeout: Option<String>,
}

/// `[auth.email]`: the SMTP server that sends sign-in links and invitations.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub tls: Option<String>,
    pub username: Option<String>,
    pub password: Option<ValueRef>,
    pub from: Option<String>,
    pub link_ttl: Option<String>,
    pub invite_ttl: Option<String>,
    pub per_address_limit: Option<u32>,
    pub per_ip_limit: Option<u32>,
    pub rate_window: Option<String>,
    pub timeout: Option<String>,
}

/// `[server]`: where and how the gateway listens and stores its data.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<ValueRef>,
    pub secret_key: Option<ValueRef>,
    pub public_url: Option<String>,
    pub allowed_hosts: Option<Vec<String>>,
    pub allowed_origins: Option<Vec<String>>,
    pub trusted_proxies: Option<Vec<String>>,
    pub max_body_bytes: Option<u64>,
    pub shutdown_grace: Option<String>,
    pub worker_threads: Option<u64>,
}

/// `[mcp]`: how the aggregated endpoint presents the upstreams.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcp {
    pub separator: Option<String>,
    pub page_size: Option<u64>,
    pub protocol_versions: Option<Vec<String>>,
    pub authorization: Option<String>,
    pub max_body_bytes_in_flight: Option<u64>,
    pub max_body_bytes_in_flight_per_client: Option<u64>,
    pub max_sessions_per_client: Option<u64>,
    pub session_idle_timeout: Option<String>,
}

/// `[upstreams.NAME]`: one downstream MCP server. The transport keys mirror the
/// `mcpServers` JSON of Claude Desktop / Claude Code / Cursor (`command`, `args`, `env`,
/// `cwd` for stdio; `type`, `url`, `headers` for HTTP); the rest are Warrant's own.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, ValueRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, ValueRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_backoff_max: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_annotations: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<RawUpstreamAuth>,
}
