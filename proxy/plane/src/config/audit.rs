//! `[audit]`: the audit ledger. On by default: every call's decision is recorded before
//! the call goes upstream, and calls are refused while it cannot be written.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use warrant_consent::ledger::sink::Target;

use super::report::Problem;
use super::value::{ValueRef, duration, resolve};

/// `[audit]` as written.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudit {
    pub enabled: Option<bool>,
    /// How often records written are synced to disk while they arrive (`"5ms"`).
    pub sync_interval: Option<String>,
    /// Sign the head of the chain at least every this many records.
    pub checkpoint_records: Option<u64>,
    /// Sign the head at least this often while records arrive (`"1s"`).
    pub checkpoint_interval: Option<String>,
    /// Remove records older than this (`"365d"`); none: keep every record.
    pub retention: Option<String>,
    /// Where the records are streamed to (`[[audit.sinks]]`).
    pub sinks: Option<Vec<RawSink>>,
}

/// `[[audit.sinks]]` as written: a file, or an HTTP endpoint.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSink {
    pub name: Option<String>,
    pub file: Option<PathBuf>,
    pub url: Option<String>,
    /// Headers of each POST (values by reference: `{ env = "SIEM_TOKEN" }`).
    #[serde(default)]
    pub headers: BTreeMap<String, ValueRef>,
}

/// A checked sink.
#[derive(Debug, Clone)]
pub struct SinkConfig {
    pub name: String,
    pub target: Target,
}

/// The checked `[audit]` section.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub enabled: bool,
    pub sync_interval: Duration,
    pub checkpoint_records: u64,
    pub checkpoint_interval: Duration,
    pub retention: Option<Duration>,
    pub sinks: Vec<SinkConfig>,
}

const DEFAULT_SYNC: Duration = Duration::from_millis(5);
const DEFAULT_CHECKPOINT_RECORDS: u64 = 1000;
const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            sync_interval: DEFAULT_SYNC,
            checkpoint_records: DEFAULT_CHECKPOINT_RECORDS,
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            retention: None,
            sinks: Vec::new(),
        }
    }
}

pub(super) fn validate_audit(raw: RawAudit, problems: &mut Vec<Problem>) -> AuditConfig {
    let sync_interval = duration(
        raw.sync_interval,
        "audit.sync_interval",
        DEFAULT_SYNC,
        problems,
    );
    if sync_interval > Duration::from_secs(1) {
        problems.push(Problem::new(
            "audit.sync_interval",
            "must be at most 1s: it is how much a power loss may take from the ledger",
        ));
    }
    let checkpoint_records = raw.checkpoint_records.unwrap_or(DEFAULT_CHECKPOINT_RECORDS);
    if !(1..=1_000_000).contains(&checkpoint_records) {
        problems.push(Problem::new(
            "audit.checkpoint_records",
            "must be between 1 and 1000000",
        ));
    }
    let checkpoint_interval = duration(
        raw.checkpoint_interval,
        "audit.checkpoint_interval",
        DEFAULT_CHECKPOINT_INTERVAL,
        problems,
    );
    let retention = raw
        .retention
        .map(|text| duration(Some(text), "audit.retention", Duration::ZERO, problems));
    if retention.is_some_and(|r| r < Duration::from_secs(3600)) {
        problems.push(Problem::new(
            "audit.retention",
            "must be at least 1h (records are removed up to a checkpoint older than it)",
        ));
    }
    let mut sinks: Vec<SinkConfig> = Vec::new();
    for (i, raw) in raw.sinks.into_iter().flatten().enumerate() {
        let path = format!("audit.sinks.{i}");
        if let Some(sink) = validate_sink(raw, &path, problems) {
            if sinks.iter().any(|s| s.name == sink.name) {
                problems.push(Problem::new(
                    format!("{path}.name"),
                    format!(
                        "{:?} names another sink too: each needs a name of its own",
                        sink.name
                    ),
                ));
            }
            sinks.push(sink);
        }
    }
    AuditConfig {
        enabled: raw.enabled.unwrap_or(true),
        sinks,
        retention,
        sync_interval,
        checkpoint_records,
        checkpoint_interval,
    }
}

fn validate_sink(raw: RawSink, path: &str, problems: &mut Vec<Problem>) -> Option<SinkConfig> {
    let name = match raw.name {
        Some(name)
            if !name.is_empty()
                && name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) =>
        {
            name
        }
        _ => {
            problems.push(Problem::new(
                format!("{path}.name"),
                "a sink needs a name (letters, digits, - _ .; at most 64): it keeps its place under it",
            ));
            return None;
        }
    };
    let target = match (raw.file, raw.url) {
        (Some(file), None) => {
            if !raw.headers.is_empty() {
                problems.push(Problem::new(
                    format!("{path}.headers"),
                    "headers go with a url, not a file",
                ));
            }
            if !file.is_absolute() {
                problems.push(Problem::new(
                    format!("{path}.file"),
                    format!("{} is not an absolute path", file.display()),
                ));
                return None;
            }
            Target::File(file)
        }
        (None, Some(url)) => {
            let parsed = match url::Url::parse(&url) {
                Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => u,
                _ => {
                    problems.push(Problem::new(
                        format!("{path}.url"),
                        format!("{url:?} is not an http(s) URL"),
                    ));
                    return None;
                }
            };
            let loopback = match parsed.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if parsed.scheme() == "http" && !loopback {
                problems.push(Problem::new(
                    format!("{path}.url"),
                    "plain http would send the audit records and the headers in clear: use \
                     https (http is for loopback only)",
                ));
            }
            let mut headers = Vec::new();
            for (key, value) in &raw.headers {
                let at = format!("{path}.headers.{key}");
                let Ok(name) = http::HeaderName::from_bytes(key.as_bytes()) else {
                    problems.push(Problem::new(at, "not a header name"));
                    continue;
                };
                match resolve(value) {
                    Ok(secret) => match http::HeaderValue::from_str(secret.expose()) {
                        Ok(mut value) => {
                            value.set_sensitive(true);
                            headers.push((name, value));
                        }
                        Err(_) => problems.push(Problem::new(at, "not a valid header value")),
                    },
                    Err(e) => problems.push(Problem::new(at, e)),
                }
            }
            Target::Http {
                url: parsed,
                headers,
            }
        }
        _ => {
            problems.push(Problem::new(
                path,
                "give a sink either a file or a url (one of them)",
            ));
            return None;
        }
    };
    Some(SinkConfig { name, target })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let mut problems = Vec::new();
        let audit = validate_audit(RawAudit::default(), &mut problems);
        assert!(problems.is_empty());
        assert!(audit.enabled);
        assert_eq!(audit.sync_interval, Duration::from_millis(5));
        let raw = RawAudit {
            enabled: Some(false),
            sync_interval: Some("2s".into()),
            checkpoint_records: Some(0),
            checkpoint_interval: Some("0s".into()),
            retention: Some("10m".into()),
            sinks: Some(vec![
                RawSink {
                    name: Some("siem".into()),
                    url: Some("http://siem.example/ingest".into()),
                    ..RawSink::default()
                },
                RawSink {
                    name: Some("siem".into()),
                    file: Some("relative.jsonl".into()),
                    ..RawSink::default()
                },
                RawSink {
                    name: None,
                    file: Some("/var/log/a.jsonl".into()),
                    ..RawSink::default()
                },
            ]),
        };
        let audit = validate_audit(raw, &mut problems);
        assert!(!audit.enabled);
        let paths: Vec<_> = problems.iter().map(|p| p.path.clone()).collect();
        assert_eq!(problems.len(), 7, "{paths:?}");
        for key in [
            "sync_interval",
            "checkpoint_records",
            "checkpoint_interval",
            "retention",
            "sinks.0.url",
            "sinks.1.file",
            "sinks.2.name",
        ] {
            assert!(paths.iter().any(|p| p.contains(key)), "{key}: {paths:?}");
        }
    }

    #[test]
    fn a_sink_is_a_file_or_a_url_with_headers_by_reference() {
        let mut problems = Vec::new();
        let dir = tempfile::tempdir().expect("dir");
        let token = dir.path().join("siem-token");
        std::fs::write(&token, "Bearer s3cret").expect("write");
        let raw = RawAudit {
            sinks: Some(vec![
                RawSink {
                    name: Some("file".into()),
                    file: Some("/var/log/warrant/audit.jsonl".into()),
                    ..RawSink::default()
                },
                RawSink {
                    name: Some("siem".into()),
                    url: Some("https://siem.example/ingest".into()),
                    headers: BTreeMap::from([(
                        "Authorization".to_owned(),
                        ValueRef::File { file: token },
                    )]),
                    ..RawSink::default()
                },
                RawSink {
                    name: Some("local".into()),
                    url: Some("http://127.0.0.1:9000/".into()),
                    ..RawSink::default()
                },
            ]),
            ..RawAudit::default()
        };
        let audit = validate_audit(raw, &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(audit.sinks.len(), 3);
        let Target::Http { headers, .. } = &audit.sinks[1].target else {
            panic!("an HTTP sink");
        };
        assert_eq!(headers[0].1, "Bearer s3cret");
        assert!(headers[0].1.is_sensitive());
        assert!(
            !format!("{:?}", audit.sinks[1]).contains("s3cret"),
            "headers never in a debug line"
        );
    }
}
