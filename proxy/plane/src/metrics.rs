//! What operators scrape at `/metrics` (the Prometheus text format, version 0.0.4):
//! calls by upstream and decision, how they ended and how long they took, counted as
//! they happen; upstream states, open MCP sessions, the audit ledger and how fresh each
//! live view is, read when scraped. `docs/configuration.md` lists every metric.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use warrant_consent::ledger::sink::SinkState;
use warrant_consent::ledger::{LedgerState, Outcome};

use crate::locks::Locked;

/// The `Content-Type` of what [`Metrics::render`] writes.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
enum Decision {
    allow,
    deny,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    upstream: String,
    decision: Decision,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    upstream: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    upstream: String,
    state: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViewLabels {
    view: &'static str,
}

/// How one upstream is doing when scraped.
pub struct UpstreamNow<'a> {
    pub name: &'a str,
    pub state: &'static str,
    pub tools: usize,
}

/// Every metric of this process. Cheap to share (`Arc`); counting is lock-free except
/// the first time a label set is seen.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    outcomes: Family<OutcomeLabels, Counter>,
    duration: Family<UpstreamLabels, Histogram>,
    upstream_up: Family<UpstreamLabels, Gauge>,
    upstream_state: Family<StateLabels, Gauge>,
    upstream_tools: Family<UpstreamLabels, Gauge>,
    sessions: Gauge,
    ledger_up: Gauge,
    ledger_backlog: Gauge,
    ledger_written: Counter,
    ledger_dropped: Counter,
    view_age: Family<ViewLabels, Gauge<f64, AtomicU64>>,
    sink_up: Family<SinkLabels, Gauge>,
    sink_delivered: Family<SinkLabels, Counter>,
    /// The ledger's sinks, read when scraped.
    sinks: Mutex<Vec<(String, Arc<SinkState>)>>,
    /// When each live view was last read from the database.
    refreshed: Mutex<HashMap<&'static str, Instant>>,
    /// Scrapes render one at a time (each sets the values read when scraped first).
    rendering: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warrant");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Tool calls decided, by upstream and decision (allow: forwarded; deny: refused)",
            calls.clone(),
        );
        let outcomes = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "call_outcomes",
            "How forwarded tool calls ended, by upstream (ok, tool_error, upstream_error, timeout)",
            outcomes.clone(),
        );
        // 0.5 ms to about 33 s, doubling.
        let duration = Family::<UpstreamLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 17))
        });
        registry.register_with_unit(
            "call_duration",
            "Time from the decision to the end of a forwarded call's answer, by upstream",
            Unit::Seconds,
            duration.clone(),
        );
        let upstream_up = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_up",
            "1 while an upstream is ready (its tools offered), else 0",
            upstream_up.clone(),
        );
        let upstream_state = Family::<StateLabels, Gauge>::default();
        registry.register(
            "upstream_state",
            "1 for the state each upstream is in (ready, connecting, down, …)",
            upstream_state.clone(),
        );
        let upstream_tools = Family::<UpstreamLabels, Gauge>::default();
        registry.register(
            "upstream_tools",
            "Tools each upstream offers now",
            upstream_tools.clone(),
        );
        let sessions = Gauge::default();
        registry.register(
            "mcp_sessions",
            "MCP sessions open (clients of the 2025-11-25 revision and older)",
            sessions.clone(),
        );
        let ledger_up = Gauge::default();
        registry.register(
            "ledger_up",
            "1 while the audit ledger can be written (else calls are refused), 0 otherwise",
            ledger_up.clone(),
        );
        let ledger_backlog = Gauge::default();
        registry.register(
            "ledger_backlog",
            "Records handed to the audit ledger and not written yet",
            ledger_backlog.clone(),
        );
        let ledger_written = Counter::default();
        registry.register(
            "ledger_records_written",
            "Records this process wrote to the audit ledger",
            ledger_written.clone(),
        );
        let ledger_dropped = Counter::default();
        registry.register(
            "ledger_records_dropped",
            "Records dropped because the audit ledger's backlog was full",
            ledger_dropped.clone(),
        );
        let view_age = Family::<ViewLabels, Gauge<f64, AtomicU64>>::default();
        registry.register_with_unit(
            "view_refresh_age",
            "Time since each live view (revocations, ceilings, catalog, keys) was last read \
             from the database: what another replica's change may wait",
            Unit::Seconds,
            view_age.clone(),
        );
        let sink_up = Family::<SinkLabels, Gauge>::default();
        registry.register(
            "ledger_sink_up",
            "1 while a sink of the audit ledger takes its records, 0 while deliveries fail",
            sink_up.clone(),
        );
        let sink_delivered = Family::<SinkLabels, Counter>::default();
        registry.register(
            "ledger_sink_records_delivered",
            "Records this process delivered to each sink of the audit ledger",
            sink_delivered.clone(),
        );
        Self {
            registry,
            sink_up,
            sink_delivered,
            sinks: Mutex::default(),
            calls,
            outcomes,
            duration,
            upstream_up,
            upstream_state,
            upstream_tools,
            sessions,
            ledger_up,
            ledger_backlog,
            ledger_written,
            ledger_dropped,
            view_age,
            refreshed: Mutex::default(),
            rendering: Mutex::default(),
        }
    }

    /// A call of `upstream` was decided.
    pub fn decided(&self, upstream: &str, allowed: bool) {
        let decision = if allowed {
            Decision::allow
        } else {
            Decision::deny
        };
        self.calls
            .get_or_create(&CallLabels {
                upstream: upstream.to_owned(),
                decision,
            })
            .inc();
    }

    /// A forwarded call of `upstream` ended with `outcome` after `took`.
    pub fn ended(&self, upstream: &str, outcome: Outcome, took: Duration) {
        let outcome = match outcome {
            Outcome::Ok => "ok",
            Outcome::ToolError => "tool_error",
            Outcome::UpstreamError => "upstream_error",
            Outcome::Timeout => "timeout",
        };
        self.outcomes
            .get_or_create(&OutcomeLabels {
                upstream: upstream.to_owned(),
                outcome,
            })
            .inc();
        self.duration
            .get_or_create(&UpstreamLabels {
                upstream: upstream.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// The gauge of open MCP sessions (the edge's session table keeps it).
    pub fn sessions(&self) -> Gauge {
        self.sessions.clone()
    }

    /// Shows how the ledger's sink `name` is doing.
    pub fn add_sink(&self, name: &str, state: Arc<SinkState>) {
        self.sinks.locked().push((name.to_owned(), state));
    }

    /// The live view `view` was just read from the database.
    pub fn refreshed(&self, view: &'static str) {
        self.refreshed.locked().insert(view, Instant::now());
    }

    /// Everything, in the Prometheus text format, with what is read when scraped taken
    /// from `upstreams` and `ledger` (none: not recorded).
    pub fn render(&self, upstreams: &[UpstreamNow<'_>], ledger: Option<&LedgerState>) -> String {
        let _one_at_a_time = self.rendering.locked();
        // Upstreams removed since the last scrape leave no stale series.
        self.upstream_up.clear();
        self.upstream_state.clear();
        self.upstream_tools.clear();
        for u in upstreams {
            let labels = UpstreamLabels {
                upstream: u.name.to_owned(),
            };
            self.upstream_up
                .get_or_create(&labels)
                .set(i64::from(u.state == "ready"));
            self.upstream_tools
                .get_or_create(&labels)
                .set(i64::try_from(u.tools).unwrap_or(i64::MAX));
            self.upstream_state
                .get_or_create(&StateLabels {
                    upstream: u.name.to_owned(),
                    state: u.state,
                })
                .set(1);
        }
        if let Some(ledger) = ledger {
            self.ledger_up.set(i64::from(ledger.healthy));
            self.ledger_backlog
                .set(i64::try_from(ledger.backlog).unwrap_or(i64::MAX));
            catch_up(&self.ledger_written, ledger.written);
            catch_up(&self.ledger_dropped, ledger.dropped);
        }
        for (name, state) in self.sinks.locked().iter() {
            let labels = SinkLabels { sink: name.clone() };
            self.sink_up
                .get_or_create(&labels)
                .set(i64::from(!state.failing.load(Ordering::Relaxed)));
            catch_up(
                &self.sink_delivered.get_or_create(&labels),
                state.delivered.load(Ordering::Relaxed),
            );
        }
        let now = Instant::now();
        for (view, at) in self.refreshed.locked().iter() {
            self.view_age
                .get_or_create(&ViewLabels { view })
                .set(now.saturating_duration_since(*at).as_secs_f64());
        }
        let mut text = String::new();
        // Writing to a `String` cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry);
        text
    }
}

/// Brings a counter up to `total` (counted elsewhere, read when scraped).
fn catch_up(counter: &Counter, total: u64) {
    let shown = counter.get();
    if total > shown {
        counter.inc_by(total - shown);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_outcomes_and_scrape_time_values_are_rendered() {
        let m = Metrics::new();
        m.decided("github", true);
        m.decided("github", true);
        m.decided("github", false);
        m.ended("github", Outcome::ToolError, Duration::from_millis(3));
        m.sessions().inc();
        m.refreshed("revocations");
        let ledger = LedgerState {
            writer: "w".into(),
            healthy: true,
            failure: None,
            backlog: 2,
            written: 40,
            dropped: 0,
        };
        let upstreams = [UpstreamNow {
            name: "github",
            state: "ready",
            tools: 7,
        }];
        let text = m.render(&upstreams, Some(&ledger));
        for line in [
            "warrant_calls_total{upstream=\"github\",decision=\"allow\"} 2",
            "warrant_calls_total{upstream=\"github\",decision=\"deny\"} 1",
            "warrant_call_outcomes_total{upstream=\"github\",outcome=\"tool_error\"} 1",
            "warrant_call_duration_seconds_count{upstream=\"github\"} 1",
            "warrant_call_duration_seconds_bucket{upstream=\"github\",le=\"0.004\"} 1",
            "warrant_call_duration_seconds_bucket{upstream=\"github\",le=\"0.002\"} 0",
            "warrant_upstream_up{upstream=\"github\"} 1",
            "warrant_upstream_state{upstream=\"github\",state=\"ready\"} 1",
            "warrant_upstream_tools{upstream=\"github\"} 7",
            "warrant_mcp_sessions 1",
            "warrant_ledger_up 1",
            "warrant_ledger_backlog 2",
            "warrant_ledger_records_written_total 40",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(
            text.contains("warrant_view_refresh_age_seconds{view=\"revocations\"} 0."),
            "{text}"
        );
        // A later scrape: counters read elsewhere only go up; a gone upstream is gone.
        let ledger = LedgerState {
            written: 45,
            ..ledger
        };
        let text = m.render(&[], Some(&ledger));
        assert!(
            text.contains("warrant_ledger_records_written_total 45\n"),
            "{text}"
        );
        assert!(!text.contains("warrant_upstream_up{"), "{text}");
    }
}
