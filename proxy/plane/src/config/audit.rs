//! `[audit]`: the audit ledger. On by default: every call's decision is recorded before
//! the call goes upstream, and calls are refused while it cannot be written.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::report::Problem;
use super::value::duration;

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
}

/// The checked `[audit]` section.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub enabled: bool,
    pub sync_interval: Duration,
    pub checkpoint_records: u64,
    pub checkpoint_interval: Duration,
    pub retention: Option<Duration>,
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
    AuditConfig {
        enabled: raw.enabled.unwrap_or(true),
        retention,
        sync_interval,
        checkpoint_records,
        checkpoint_interval,
    }
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
        };
        let audit = validate_audit(raw, &mut problems);
        assert!(!audit.enabled);
        let paths: Vec<_> = problems.iter().map(|p| p.path.clone()).collect();
        assert_eq!(problems.len(), 4, "{paths:?}");
        for key in [
            "sync_interval",
            "checkpoint_records",
            "checkpoint_interval",
            "retention",
        ] {
            assert!(paths.iter().any(|p| p.contains(key)), "{key}: {paths:?}");
        }
    }
}
