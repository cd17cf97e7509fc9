//! Configuration: `warrant.toml` parsed strictly (unknown keys are errors), validated
//! into [`Config`] with **every** problem collected and reported with its key path and
//! line. Validation has no side effects: it reads the environment and referenced files
//! to check that secrets resolve, and changes nothing.
//!
//! Layers, lowest first: built-in defaults, the file, then the command line / `WARRANT_*`
//! environment variables for the listen address, data directory and database URL.

mod audit;
mod auth;
mod import;
mod limits;
mod metrics;
mod oauth;
mod policy;
mod raw;
mod report;
mod telemetry;
mod upstream;
mod upstream_auth;
mod value;
mod vault;
mod vault_refs;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use audit::{AuditConfig, RawAudit};
pub use auth::AuthConfig;
pub use import::{ImportError, Imported, MovedSecret, import_mcp_servers};
pub use limits::McpLimits;
pub use metrics::{MetricsConfig, RawMetrics};
pub use oauth::OAuthConfig;
pub use policy::{DEFAULT_CEILING, PolicyConfig};
pub use raw::{RawConfig, RawMcp, RawServer, RawUpstream};
pub use report::{Problem, Report};
pub use telemetry::{RawTelemetry, TelemetryConfig};
pub use upstream::{ProtocolPin, StartMode, Transport, UpstreamConfig, with_key};
use upstream::{is_name_char, validate_upstream};
pub use upstream_auth::{API_KEY, AuthMode, KeyPlace, RawUpstreamAuth, UpstreamAuth};
use value::duration;
pub use value::{Secret, ValueRef, decode_key_32, resolve};
pub use vault::{RawVault, VaultConfig};
pub use vault_refs::{fill_vault_refs, placeholder, vault_kinds};

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default data directory, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./warrant-data";
/// Default separator between an upstream's prefix and a tool name.
pub const DEFAULT_SEPARATOR: &str = "__";
const DEFAULT_PAGE_SIZE: usize = 100;
const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;
const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The checked configuration the program runs on.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub mcp: McpConfig,
    pub auth: AuthConfig,
    /// Agents registered by the operator (`[oauth.clients.ID]`).
    pub oauth: OAuthConfig,
    /// `[policy]`: the default trust ceiling.
    pub policy: PolicyConfig,
    /// `[vault]`: the credential vault's keys.
    pub vault: VaultConfig,
    /// `[audit]`: the audit ledger.
    pub audit: AuditConfig,
    /// `[metrics]`: who may scrape `/metrics`.
    pub metrics: MetricsConfig,
    /// `[telemetry]`: where traces go.
    pub telemetry: TelemetryConfig,
    /// Upstreams by name, in name order.
    pub upstreams: Vec<UpstreamConfig>,
}

impl Config {
    /// What is valid but probably not meant, with the key path (printed by `warrant
    /// check`, logged by `warrant serve`).
    pub fn warnings(&self) -> Vec<Problem> {
        auth::warnings(&self.auth)
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// `None`: the embedded SQLite file under `data_dir`.
    pub database_url: Option<Secret>,
    /// The key that encrypts Warrant's own secrets at rest (token signing keys, later
    /// the vault): 32 bytes, base64. `None`: `secret.key` in `data_dir`, created on
    /// first start. Replicas sharing a database must share this key.
    pub secret_key: Option<Secret>,
    /// The URL clients use to reach the gateway, when it differs from `http://listen`.
    pub public_url: Option<url::Url>,
    /// Accepted `Host` values (DNS-rebinding protection); loopback names by default.
    pub allowed_hosts: Vec<String>,
    /// Accepted browser `Origin` values; empty: only same-host origins.
    pub allowed_origins: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (rate limits, logs).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    /// Threads serving requests (1: a single-threaded runtime).
    pub worker_threads: usize,
}

#[derive(Debug, Clone)]
pub struct McpConfig {
    pub separator: String,
    pub page_size: usize,
    /// Protocol revisions offered to clients, oldest first.
    pub protocol_versions: Vec<String>,
    /// Whether `/mcp` requires an access token.
    pub authorization: McpAuthorization,
    /// Body memory and session limits.
    pub limits: McpLimits,
}

/// `mcp.authorization`: how agents prove who they act for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum McpAuthorization {
    /// Every request carries a Warrant access token (OAuth 2.1 bearer, a Biscuit).
    OAuth,
    /// No token: anyone who can reach `/mcp` may call every tool. For development and
    /// routing tests on loopback only (the configuration refuses it elsewhere).
    None,
}

/// The protocol revisions Warrant serves to clients.
pub const SUPPORTED_PROTOCOL_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    "2026-07-28",
];

/// Overrides from the command line and environment, applied over the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

/// Reads and validates a configuration file.
pub fn load(path: &Path, overrides: &Overrides) -> Result<Config, Report> {
    let origin = path.display().to_string();
    let source = std::fs::read_to_string(path).map_err(|e| Report {
        origin: origin.clone(),
        source: None,
        problems: vec![Problem::new("", format!("cannot read the file: {e}"))],
    })?;
    parse(&source, &origin, overrides)
}

/// Validates configuration text; `origin` names it in messages.
pub fn parse(source: &str, origin: &str, overrides: &Overrides) -> Result<Config, Report> {
    let mut report = Report {
        origin: origin.to_owned(),
        source: Some(source.to_owned()),
        problems: Vec::new(),
    };
    let result = match toml::from_str::<RawConfig>(source) {
        Ok(raw) => validate(&raw, overrides, &mut report.problems),
        Err(e) => {
            let mut problem = Problem::new("", e.message().to_owned());
            problem.line = e.span().map(|s| report::line_of_offset(source, s.start));
            report.problems.push(problem);
            None
        }
    };
    report.locate();
    match result {
        Some(config) if report.problems.is_empty() => Ok(config),
        _ => Err(report),
    }
}

/// The configuration used when no file is given: the built-in demo upstream.
pub fn embedded_default(overrides: &Overrides, exe: &Path) -> Result<Config, Report> {
    let mut raw = RawConfig::default();
    raw.upstreams.insert(
        "demo".into(),
        toml::Value::try_from(RawUpstream {
            command: Some(exe.display().to_string()),
            args: vec!["demo-server".into()],
            // Warrant's own demo: its annotations are true, so its tools keep their
            // classes (low to high) and the demo works before anyone reviews it.
            trust_annotations: Some(true),
            ..RawUpstream::default()
        })
        .map_err(|e| Report {
            origin: "built-in defaults".into(),
            source: None,
            problems: vec![Problem::new("upstreams.demo", e.to_string())],
        })?,
    );
    let mut problems = Vec::new();
    match validate(&raw, overrides, &mut problems) {
        Some(config) if problems.is_empty() => Ok(config),
        _ => Err(Report {
            origin: "built-in defaults".into(),
            source: None,
            problems,
        }),
    }
}

/// Checks everything, collecting every problem; returns a config only if all is well.
pub fn validate(
    raw: &RawConfig,
    overrides: &Overrides,
    problems: &mut Vec<Problem>,
) -> Option<Config> {
    let server = validate_server(raw.server.clone().unwrap_or_default(), overrides, problems);
    let mcp = validate_mcp(raw.mcp.clone().unwrap_or_default(), problems);
    let auth = auth::validate_auth(raw.auth.clone().unwrap_or_default(), problems);
    let oauth = oauth::validate_oauth(raw.oauth.clone().unwrap_or_default(), problems);
    let policy = policy::validate_policy(raw.policy.clone().unwrap_or_default(), problems);
    let vault = vault::validate_vault(raw.vault.clone().unwrap_or_default(), problems);
    let audit = audit::validate_audit(raw.audit.clone().unwrap_or_default(), problems);
    let metrics = metrics::validate_metrics(raw.metrics.clone().unwrap_or_default(), problems);
    let telemetry =
        telemetry::validate_telemetry(raw.telemetry.clone().unwrap_or_default(), problems);
    let mut upstreams = Vec::new();
    let mut prefixes: HashMap<String, String> = HashMap::new();
    for (name, value) in &raw.upstreams {
        let path = format!("upstreams.{name}");
        let raw_upstream = match value.clone().try_into::<RawUpstream>() {
            Ok(u) => u,
            Err(e) => {
                problems.push(Problem::new(&path, e.message().trim().to_owned()));
                continue;
            }
        };
        let Some(mut upstream) = validate_upstream(name, raw_upstream, &mcp.separator, problems)
        else {
            continue;
        };
        if !upstream.prefix.is_empty()
            && let Some(other) = prefixes.insert(upstream.prefix.clone(), name.clone())
        {
            problems.push(Problem::new(
                    format!("{path}.prefix"),
                    format!(
                        "prefix {:?} is also the prefix of upstream {other:?}: their names would collide",
                        upstream.prefix
                    ),
                ));
        }
        if upstream.auth.mode == AuthMode::PersonSso {
            let path = format!("{path}.auth.provider");
            match &upstream.auth.provider {
                Some(name) if !auth.oidc.iter().any(|p| &p.name == name) => {
                    problems.push(Problem::new(
                        path,
                        format!("{name:?} is not a sign-in provider (`[auth.oidc.NAME]`)"),
                    ));
                }
                Some(_) => {}
                None if auth.oidc.len() == 1 => {
                    upstream.auth.provider = auth.oidc.first().map(|p| p.name.clone());
                }
                None => problems.push(Problem::new(
                    path,
                    "required: the `[auth.oidc.NAME]` provider whose sign-ins this upstream \
                     trusts (there is not exactly one)",
                )),
            }
        }
        if upstream.auth.mode.per_person() && mcp.authorization == McpAuthorization::None {
            problems.push(Problem::new(
                format!("{path}.auth.mode"),
                "a per-person key needs to know the person: calls without Warrant tokens \
                 (mcp.authorization = \"none\") have none",
            ));
        }
        upstreams.push(upstream);
    }
    if let Some(server) = &server {
        check_exposure(server, &mcp, problems);
    }
    if problems.is_empty() {
        Some(Config {
            server: server?,
            mcp,
            auth,
            oauth,
            policy,
            vault,
            audit,
            metrics,
            telemetry,
            upstreams,
        })
    } else {
        None
    }
}

/// What listening beyond loopback requires: agents authenticate, and people and agents
/// reach Warrant over HTTPS at a known URL (TLS ends in front of Warrant).
fn check_exposure(server: &ServerConfig, mcp: &McpConfig, problems: &mut Vec<Problem>) {
    let listen = server.listen;
    if listen.ip().is_loopback() {
        return;
    }
    if mcp.authorization == McpAuthorization::None {
        problems.push(Problem::new(
            "mcp.authorization",
            format!(
                "\"none\" lets anyone who reaches /mcp call every tool, so it is allowed only \
                 on a loopback listen address, not on {listen}"
            ),
        ));
    }
    match &server.public_url {
        None => problems.push(Problem::new(
            "server.public_url",
            format!(
                "required when listening beyond loopback ({listen}): the https URL people and \
                 agents use (TLS ends at the proxy or load balancer in front of Warrant)"
            ),
        )),
        Some(url) if url.scheme() != "https" => problems.push(Problem::new(
            "server.public_url",
            format!(
                "{url} must be https when listening beyond loopback ({listen}): sign-in \
                 cookies and access tokens must not cross the network in clear"
            ),
        )),
        Some(_) => {}
    }
}

fn validate_server(
    raw: RawServer,
    o: &Overrides,
    problems: &mut Vec<Problem>,
) -> Option<ServerConfig> {
    let listen_text = o
        .listen
        .clone()
        .or(raw.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.into());
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(e) => {
            problems.push(Problem::new(
                "server.listen",
                format!("{listen_text:?} is not an address like 127.0.0.1:8080 ({e})"),
            ));
            None
        }
    };
    let database_url = match o.database_url.clone() {
        Some(url) => Some(ValueRef::Literal(url)),
        None => raw.database_url,
    };
    let database_url = database_url.and_then(|v| match resolve(&v) {
        Ok(secret) => {
            let url = secret.expose();
            let ok = ["sqlite:", "postgres://", "postgresql://"].iter().any(|p| url.starts_with(p));
            if !ok {
                problems.push(Problem::new(
                    "server.database_url",
                    "must start with sqlite: or postgres:// (or be left out for the embedded SQLite file)",
                ));
            }
            Some(secret)
        }
        Err(e) => {
            problems.push(Problem::new("server.database_url", e));
            None
        }
    });
    let secret_key = raw.secret_key.and_then(|v| match resolve(&v) {
        Ok(secret) => {
            if !value::is_key_32_base64(secret.expose()) {
                problems.push(Problem::secret(
                    "server.secret_key",
                    "must be 32 random bytes in base64 (e.g. the output of `openssl rand -base64 32`)",
                ));
            }
            Some(secret)
        }
        Err(e) => {
            problems.push(Problem::new("server.secret_key", e));
            None
        }
    });
    let public_url = raw.public_url.and_then(|u| match url::Url::parse(&u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
        Ok(_) => {
            problems.push(Problem::new(
                "server.public_url",
                "must be an http or https URL",
            ));
            None
        }
        Err(e) => {
            problems.push(Problem::new("server.public_url", format!("{u:?}: {e}")));
            None
        }
    });
    let max_body_bytes = match raw.max_body_bytes {
        Some(0) => {
            problems.push(Problem::new(
                "server.max_body_bytes",
                "must be greater than 0",
            ));
            DEFAULT_MAX_BODY
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => DEFAULT_MAX_BODY,
    };
    let worker_threads = match raw.worker_threads {
        Some(0) => {
            problems.push(Problem::new("server.worker_threads", "must be at least 1"));
            1
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(1024),
        None => default_worker_threads(),
    };
    let shutdown_grace = duration(
        raw.shutdown_grace,
        "server.shutdown_grace",
        DEFAULT_SHUTDOWN_GRACE,
        problems,
    );
    let mut allowed_hosts = raw
        .allowed_hosts
        .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]);
    if let Some(url) = &public_url
        && let Some(host) = url.host_str()
    {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if !allowed_hosts.contains(&host) {
            allowed_hosts.push(host);
        }
    }
    for (i, origin) in raw.allowed_origins.iter().flatten().enumerate() {
        if origin != "null" && url::Url::parse(origin).is_err() {
            problems.push(Problem::new(
                format!("server.allowed_origins.{i}"),
                format!("{origin:?} is not an origin like https://app.example.com"),
            ));
        }
    }
    let trusted_proxies = value::networks(
        raw.trusted_proxies.clone(),
        "server.trusted_proxies",
        problems,
    );
    Some(ServerConfig {
        listen: listen?,
        data_dir: o
            .data_dir
            .clone()
            .or(raw.data_dir)
            .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        database_url,
        secret_key,
        public_url,
        allowed_hosts,
        allowed_origins: raw.allowed_origins.unwrap_or_default(),
        trusted_proxies,
        max_body_bytes,
        shutdown_grace,
        worker_threads,
    })
}

fn validate_mcp(raw: RawMcp, problems: &mut Vec<Problem>) -> McpConfig {
    let limits = limits::validate_limits(&raw, problems);
    let separator = raw.separator.unwrap_or_else(|| DEFAULT_SEPARATOR.into());
    if separator.is_empty() || !separator.chars().all(is_name_char) {
        problems.push(Problem::new(
            "mcp.separator",
            format!("{separator:?} must be one or more of the characters A-Z a-z 0-9 _ - . /"),
        ));
    }
    let page_size = match raw.page_size {
        Some(0) => {
            problems.push(Problem::new("mcp.page_size", "must be at least 1"));
            DEFAULT_PAGE_SIZE
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => DEFAULT_PAGE_SIZE,
    };
    let protocol_versions = match raw.protocol_versions {
        None => SUPPORTED_PROTOCOL_VERSIONS
            .iter()
            .map(|v| (*v).to_owned())
            .collect(),
        Some(list) => {
            for (i, v) in list.iter().enumerate() {
                if !SUPPORTED_PROTOCOL_VERSIONS.contains(&v.as_str()) {
                    problems.push(Problem::new(
                        format!("mcp.protocol_versions.{i}"),
                        format!(
                            "{v:?} is not a revision Warrant serves ({})",
                            SUPPORTED_PROTOCOL_VERSIONS.join(", ")
                        ),
                    ));
                }
            }
            if list.is_empty() {
                problems.push(Problem::new(
                    "mcp.protocol_versions",
                    "must list at least one revision",
                ));
            }
            let mut list = list;
            list.sort();
            list.dedup();
            list
        }
    };
    let authorization = match raw.authorization.as_deref() {
        None | Some("oauth") => McpAuthorization::OAuth,
        Some("none") => McpAuthorization::None,
        Some(other) => {
            problems.push(Problem::new(
                "mcp.authorization",
                format!("{other:?} is not a mode: \"oauth\" (the default) or \"none\""),
            ));
            McpAuthorization::OAuth
        }
    };
    McpConfig {
        separator,
        page_size,
        protocol_versions,
        authorization,
        limits,
    }
}

/// One thread on a machine of up to two cores (the gateway shares them with its
/// clients and upstreams, and a single-threaded runtime spends the least per request),
/// one per core above that.
fn default_worker_threads() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    if cores <= 2 { 1 } else { cores }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
