//! What the ledger says over time, for the analytics page: calls and refusals per time
//! step, and latency percentiles of the calls that went upstream, in total and per
//! upstream, tool or agent. Counts are grouped by the database; latencies are read as
//! they stream by into a histogram per step and per group (a fixed 256 counters each,
//! whatever the number of calls), so a month of records is never held in memory.

use std::collections::HashMap;

use futures::TryStreamExt;
use warrant_idp::db::Db;
use warrant_idp::on_pool;

use super::LedgerError;

/// What the groups are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    Upstream,
    Tool,
    Agent,
}

impl By {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "upstream" => Some(Self::Upstream),
            "tool" => Some(Self::Tool),
            "agent" => Some(Self::Agent),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Tool => "tool",
            Self::Agent => "agent",
        }
    }

    /// The group of a record, as SQL.
    fn column(self) -> &'static str {
        match self {
            Self::Upstream => "COALESCE(upstream, '')",
            Self::Tool => "COALESCE(upstream, '') || ' · ' || COALESCE(tool, '')",
            Self::Agent => "COALESCE(agent, '')",
        }
    }
}

/// Calls, refusals and latency of one time step or one group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls allowed (forwarded).
    pub calls: u64,
    pub refused: u64,
    pub p50_us: Option<u64>,
    pub p95_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// One group over the whole range.
#[derive(Debug, Clone)]
pub struct Group {
    pub key: String,
    pub stats: Stats,
}

/// The range, step by step, and its groups (the busiest first, at most `max_groups`).
#[derive(Debug, Clone)]
pub struct Report {
    pub since: i64,
    pub step: i64,
    pub steps: Vec<Stats>,
    pub groups: Vec<Group>,
    /// Groups beyond `max_groups`, left out.
    pub more_groups: usize,
}

/// Latencies in buckets of an eighth of an octave (about 9 % wide) from 1 µs to
/// beyond an hour.
#[derive(Clone)]
struct Histogram {
    counts: Box<[u64; 256]>,
    total: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; 256]),
            total: 0,
        }
    }
}

impl Histogram {
    fn add(&mut self, us: u64) {
        let index = if us <= 1 {
            0
        } else {
            ((us as f64).log2() * 8.0).floor().min(255.0) as usize
        };
        self.counts[index] += 1;
        self.total += 1;
    }

    /// The upper bound of the bucket holding the `q` quantile.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((self.total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (index, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(2f64.powf((index as f64 + 1.0) / 8.0).round() as u64);
            }
        }
        None
    }

    fn fill(&self, stats: &mut Stats) {
        stats.p50_us = self.quantile(0.50);
        stats.p95_us = self.quantile(0.95);
        stats.p99_us = self.quantile(0.99);
    }
}

/// Calls and latency from `since` to `until` (Unix µs) in steps of `step` µs, grouped
/// `by`.
pub async fn report(
    db: &Db,
    since: i64,
    until: i64,
    step: i64,
    by: By,
    max_groups: usize,
) -> Result<Report, LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Read(e.to_string());
    let step = step.max(1);
    let n = usize::try_from((until - since).max(0) / step + 1)
        .unwrap_or(0)
        .min(10_000);
    let mut steps = vec![Stats::default(); n];
    let mut groups: HashMap<String, Stats> = HashMap::new();
    let column = by.column();
    let counts: Vec<(i64, String, Option<String>, i64)> =
        on_pool!(db, pool => sqlx::query_as(&format!(
        "SELECT (at - $1) / $2, {column}, decision, COUNT(*) FROM consent_ledger_records \
         WHERE kind = 'call' AND at >= $3 AND at < $4 GROUP BY 1, 2, 3"
    ))
    .bind(since)
    .bind(step)
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await)
        .map_err(read)?;
    for (at, key, decision, count) in counts {
        let count = u64::try_from(count).unwrap_or(0);
        let refused = decision.as_deref() == Some("deny");
        let group = groups.entry(key).or_default();
        let slot = usize::try_from(at).ok().and_then(|i| steps.get_mut(i));
        for stats in [Some(group), slot].into_iter().flatten() {
            if refused {
                stats.refused += count;
            } else {
                stats.calls += count;
            }
        }
    }
    let latency = match db {
        Db::Sqlite(_) => "CAST(json_extract(detail, '$.latency_us') AS INTEGER)",
        Db::Postgres(_) => "(detail::jsonb ->> 'latency_us')::bigint",
    };
    let mut per_step = vec![Histogram::default(); n];
    let mut per_group: HashMap<String, Histogram> = HashMap::new();
    on_pool!(db, pool => {
        let sql = format!(
            "SELECT (at - $1) / $2, {column}, {latency} FROM consent_ledger_records \
             WHERE kind = 'call.outcome' AND at >= $3 AND at < $4"
        );
        let mut rows = sqlx::query_as::<_, (i64, String, Option<i64>)>(&sql)
            .bind(since)
            .bind(step)
            .bind(since)
            .bind(until)
            .fetch(pool);
        while let Some((at, key, us)) = rows.try_next().await.map_err(read)? {
            let Some(us) = us.and_then(|us| u64::try_from(us).ok()) else {
                continue;
            };
            if let Some(h) = usize::try_from(at).ok().and_then(|i| per_step.get_mut(i)) {
                h.add(us);
            }
            per_group.entry(key).or_default().add(us);
        }
        Ok::<(), LedgerError>(())
    })?;
    for (stats, h) in steps.iter_mut().zip(&per_step) {
        h.fill(stats);
    }
    let mut groups: Vec<Group> = groups
        .into_iter()
        .map(|(key, mut stats)| {
            if let Some(h) = per_group.get(&key) {
                h.fill(&mut stats);
            }
            Group { key, stats }
        })
        .collect();
    groups.sort_by(|a, b| {
        (b.stats.calls + b.stats.refused)
            .cmp(&(a.stats.calls + a.stats.refused))
            .then_with(|| a.key.cmp(&b.key))
    });
    let more_groups = groups.len().saturating_sub(max_groups);
    groups.truncate(max_groups);
    Ok(Report {
        since,
        step,
        steps,
        groups,
        more_groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for us in 1..=1000 {
            h.add(us);
        }
        for (q, truth) in [(0.5, 500.0), (0.95, 950.0), (0.99, 990.0)] {
            let got = h.quantile(q).expect("some") as f64;
            assert!(got >= truth && got <= truth * 1.1, "{q}: {got} for {truth}");
        }
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}

/// Who reached what: a person's agent, an upstream and tool, with how many calls went
/// and how many were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub user_id: String,
    pub agent: String,
    pub upstream: String,
    pub tool: String,
    pub calls: u64,
    pub refused: u64,
}

/// Every (person, agent, upstream, tool) with calls from `since` to `until`, the
/// busiest first, at most `limit`.
pub async fn reach(
    db: &Db,
    since: i64,
    until: i64,
    limit: usize,
) -> Result<Vec<Reach>, LedgerError> {
    let rows: Vec<(String, String, String, String, Option<String>, i64)> =
        on_pool!(db, pool => sqlx::query_as(
        "SELECT COALESCE(user_id, ''), COALESCE(agent, ''), COALESCE(upstream, ''), \
         COALESCE(tool, ''), decision, COUNT(*) FROM consent_ledger_records \
         WHERE kind = 'call' AND at >= $1 AND at < $2 GROUP BY 1, 2, 3, 4, 5",
    )
    .bind(since)
    .bind(until)
    .fetch_all(pool)
    .await)
        .map_err(|e| LedgerError::Read(e.to_string()))?;
    let mut by_key: HashMap<(String, String, String, String), (u64, u64)> = HashMap::new();
    for (user_id, agent, upstream, tool, decision, count) in rows {
        let count = u64::try_from(count).unwrap_or(0);
        let entry = by_key.entry((user_id, agent, upstream, tool)).or_default();
        if decision.as_deref() == Some("deny") {
            entry.1 += count;
        } else {
            entry.0 += count;
        }
    }
    let mut all: Vec<Reach> = by_key
        .into_iter()
        .map(
            |((user_id, agent, upstream, tool), (calls, refused))| Reach {
                user_id,
                agent,
                upstream,
                tool,
                calls,
                refused,
            },
        )
        .collect();
    all.sort_by(|a, b| {
        (b.calls + b.refused)
            .cmp(&(a.calls + a.refused))
            .then_with(|| {
                (&a.user_id, &a.agent, &a.upstream, &a.tool).cmp(&(
                    &b.user_id,
                    &b.agent,
                    &b.upstream,
                    &b.tool,
                ))
            })
    });
    all.truncate(limit);
    Ok(all)
}
