//! One `[[upstreams]]` table: how Warrant reaches the server, and the checks of it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::raw::RawUpstream;
use super::report::Problem;
use super::upstream_auth::{AuthMode, KeyPlace, UpstreamAuth, validate_auth};
use super::value::{Secret, ValueRef, duration, resolve};

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(120);
const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Direct-path connections to one upstream open at once, unless configured.
const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// The most sessions the direct path opens with one upstream.
const MAX_SESSIONS: usize = 16;
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub name: String,
    /// Put before each tool and prompt name with the separator; empty: names as is.
    pub prefix: String,
    pub transport: Transport,
    pub start: StartMode,
    pub protocol: ProtocolPin,
    /// Whether `tools/call` may take the direct data path (plain-`http` Streamable HTTP).
    pub direct: bool,
    /// At most this many direct-path connections are open to the upstream at once.
    pub max_connections: usize,
    /// How many sessions the direct path opens with the upstream and spreads its calls
    /// over (1: the lane's own session only).
    pub sessions: usize,
    pub connect_timeout: Duration,
    pub call_timeout: Duration,
    pub restart_backoff_max: Duration,
    /// Whether the upstream's MCP annotations set its tools' risk classes (`Some`: as
    /// configured, applied at every start; `None`: as an admin sets it on the pages).
    pub trust_annotations: Option<bool>,
    /// Whose credential the upstream is given, and where it goes.
    pub auth: UpstreamAuth,
    /// Values from the vault written into its `url` or `args` (see `vault_refs`), filled
    /// in at start: redacted from its answers like its credentials.
    pub inline_secrets: Vec<Secret>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, ValueRef>,
        cwd: Option<PathBuf>,
    },
    StreamableHttp {
        url: url::Url,
        headers: BTreeMap<String, ValueRef>,
    },
    Sse {
        url: url::Url,
        headers: BTreeMap<String, ValueRef>,
    },
}

impl Transport {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Stdio { .. } => "stdio",
            Self::StreamableHttp { .. } => "streamable-http",
            Self::Sse { .. } => "sse",
        }
    }
}

/// When an upstream is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// At gateway start; its tools are listed from the first request.
    Eager,
    /// On the first request that needs it.
    Lazy,
}

/// Which protocol eras Warrant speaks to an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolPin {
    /// Each client's own era, when the upstream speaks it (one connection per era in use).
    Auto,
    /// Only the `initialize` era (up to 2025-11-25): one connection for every client.
    Legacy,
    /// Only 2026-07-28: one stateless connection for every client.
    Modern,
}

pub(super) fn validate_upstream(
    name: &str,
    raw: RawUpstream,
    separator: &str,
    problems: &mut Vec<Problem>,
) -> Option<UpstreamConfig> {
    let path = format!("upstreams.{name}");
    let before = problems.len();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        problems.push(Problem::new(
            &path,
            "an upstream name may use only A-Z a-z 0-9 _ -",
        ));
    }
    let prefix = raw.prefix.clone().unwrap_or_else(|| name.to_owned());
    if !prefix.chars().all(is_name_char) {
        problems.push(Problem::new(
            format!("{path}.prefix"),
            format!("{prefix:?} may use only A-Z a-z 0-9 _ - . /"),
        ));
    } else if !prefix.is_empty() && prefix.contains(separator) {
        problems.push(Problem::new(
            format!("{path}.prefix"),
            format!("{prefix:?} contains the separator {separator:?}, which makes names ambiguous"),
        ));
    }
    let kind = raw.kind.as_deref().map(str::to_ascii_lowercase);
    let transport = match (raw.command, raw.url) {
        (Some(_), Some(_)) => {
            problems.push(Problem::new(
                &path,
                "set either `command` (stdio) or `url` (HTTP), not both",
            ));
            None
        }
        (None, None) => {
            problems.push(Problem::new(
                &path,
                "needs `command` (a stdio server) or `url` (an HTTP server)",
            ));
            None
        }
        (Some(command), None) => {
            if !matches!(kind.as_deref(), None | Some("stdio")) {
                problems.push(Problem::new(
                    format!("{path}.type"),
                    "a `command` upstream has type \"stdio\"",
                ));
            }
            if command.trim().is_empty() {
                problems.push(Problem::new(format!("{path}.command"), "must not be empty"));
            }
            if !raw.headers.is_empty() {
                problems.push(Problem::new(
                    format!("{path}.headers"),
                    "headers apply to HTTP upstreams only",
                ));
            }
            check_values(&raw.env, &format!("{path}.env"), problems);
            Some(Transport::Stdio {
                command,
                args: raw.args,
                env: raw.env,
                cwd: raw.cwd,
            })
        }
        (None, Some(url_text)) => {
            if !raw.args.is_empty() || !raw.env.is_empty() || raw.cwd.is_some() {
                problems.push(Problem::new(
                    &path,
                    "`args`, `env` and `cwd` apply to stdio upstreams only",
                ));
            }
            check_values(&raw.headers, &format!("{path}.headers"), problems);
            match url::Url::parse(&url_text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => match kind.as_deref() {
                    None | Some("http" | "streamable-http" | "streamablehttp") => {
                        Some(Transport::StreamableHttp {
                            url,
                            headers: raw.headers,
                        })
                    }
                    Some("sse") => Some(Transport::Sse {
                        url,
                        headers: raw.headers,
                    }),
                    Some(other) => {
                        problems.push(Problem::new(
                            format!("{path}.type"),
                            format!(
                                "{other:?} is not one of \"http\", \"streamable-http\", \"sse\""
                            ),
                        ));
                        None
                    }
                },
                Ok(_) => {
                    problems.push(Problem::new(
                        format!("{path}.url"),
                        "must be an http or https URL",
                    ));
                    None
                }
                Err(e) => {
                    problems.push(Problem::new(
                        format!("{path}.url"),
                        format!("{url_text:?}: {e}"),
                    ));
                    None
                }
            }
        }
    };
    let start = match raw.start.as_deref() {
        None | Some("eager") => StartMode::Eager,
        Some("lazy") => StartMode::Lazy,
        Some(other) => {
            problems.push(Problem::new(
                format!("{path}.start"),
                format!("{other:?} is not \"eager\" or \"lazy\""),
            ));
            StartMode::Eager
        }
    };
    let protocol = match raw.protocol.as_deref() {
        None | Some("auto") => ProtocolPin::Auto,
        Some("2025-11-25") => ProtocolPin::Legacy,
        Some("2026-07-28") => ProtocolPin::Modern,
        Some(other) => {
            problems.push(Problem::new(
                format!("{path}.protocol"),
                format!("{other:?} is not \"auto\", \"2025-11-25\" or \"2026-07-28\""),
            ));
            ProtocolPin::Auto
        }
    };
    let connect_timeout = duration(
        raw.connect_timeout,
        &format!("{path}.connect_timeout"),
        DEFAULT_CONNECT_TIMEOUT,
        problems,
    );
    let call_timeout = duration(
        raw.call_timeout,
        &format!("{path}.call_timeout"),
        DEFAULT_CALL_TIMEOUT,
        problems,
    );
    let restart_backoff_max = duration(
        raw.restart_backoff_max,
        &format!("{path}.restart_backoff_max"),
        DEFAULT_BACKOFF_MAX,
        problems,
    );
    let max_connections = match raw.max_connections {
        Some(0) => {
            problems.push(Problem::new(
                format!("{path}.max_connections"),
                "must be at least 1",
            ));
            DEFAULT_MAX_CONNECTIONS
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => DEFAULT_MAX_CONNECTIONS,
    };
    let sessions = sessions(raw.sessions, transport.as_ref(), &path, problems);
    let stdio = matches!(transport, Some(Transport::Stdio { .. }));
    let auth = validate_auth(raw.auth, stdio, &path, problems);
    if raw.enabled == Some(false) || problems.len() > before {
        return None;
    }
    Some(UpstreamConfig {
        name: name.to_owned(),
        prefix,
        transport: transport?,
        start,
        protocol,
        direct: raw.direct.unwrap_or(true),
        max_connections,
        sessions,
        connect_timeout,
        call_timeout,
        restart_backoff_max,
        trust_annotations: raw.trust_annotations,
        auth,
        inline_secrets: Vec::new(),
    })
}

/// `sessions`: 1 to [`MAX_SESSIONS`], and more than one only for a Streamable HTTP
/// upstream (the only kind the direct path calls).
fn sessions(
    raw: Option<u64>,
    transport: Option<&Transport>,
    path: &str,
    problems: &mut Vec<Problem>,
) -> usize {
    let Some(n) = raw else {
        return 1;
    };
    let field = format!("{path}.sessions");
    if !(1..=MAX_SESSIONS as u64).contains(&n) {
        problems.push(Problem::new(
            field,
            format!("must be between 1 and {MAX_SESSIONS}"),
        ));
        return 1;
    }
    if n > 1 && !matches!(transport, None | Some(Transport::StreamableHttp { .. })) {
        problems.push(Problem::new(
            field,
            "more than one session applies to Streamable HTTP upstreams (`url`) only",
        ));
        return 1;
    }
    usize::try_from(n).unwrap_or(1)
}

fn check_values(values: &BTreeMap<String, ValueRef>, path: &str, problems: &mut Vec<Problem>) {
    for (key, value) in values {
        // A vault reference is read at start, from the database.
        if matches!(value, ValueRef::Vault { .. }) {
            continue;
        }
        if let Err(e) = resolve(value) {
            problems.push(Problem::new(format!("{path}.{key}"), e));
        }
    }
}

pub(super) fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

/// `config` with `key` put where its `auth` says (a header replacing any of the same
/// name, whatever its case, or an environment variable): the configuration of a
/// connection that carries that key. The result injects nothing more by itself (its mode
/// is `none`).
pub fn with_key(config: &UpstreamConfig, key: &str) -> UpstreamConfig {
    let mut keyed = config.clone();
    keyed.auth = UpstreamAuth {
        mode: AuthMode::None,
        ..config.auth.clone()
    };
    keyed.auth.place = None;
    keyed.auth.value = None;
    keyed.auth.from_vault = false;
    keyed.auth.carries_key = true;
    let Some(place) = &config.auth.place else {
        return keyed;
    };
    let name = place.name();
    let values = match &mut keyed.transport {
        Transport::Stdio { env, .. } => env,
        Transport::StreamableHttp { headers, .. } | Transport::Sse { headers, .. } => headers,
    };
    let case_insensitive = matches!(place, KeyPlace::Header { .. });
    values.retain(|k, _| {
        if case_insensitive {
            !k.eq_ignore_ascii_case(name)
        } else {
            k != name
        }
    });
    values.insert(
        name.to_owned(),
        ValueRef::Given(Secret::new(place.value_for(key))),
    );
    keyed
}
