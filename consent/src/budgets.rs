//! Call budgets of grants (`consent_grant_usage`): a grant may allow at most N calls per
//! clock hour (UTC). The gateway counts every call it forwards under a budgeted grant.
//!
//! The per-call path never waits for the database: [`Budgets::charge`] counts in memory
//! (one lock, one map lookup) and a background task calls [`Budgets::flush`] about once
//! a second, which adds what this replica counted since the last flush to the grant's
//! row for the hour and reads back every grant's total for the hour. So replicas share
//! a budget within about a second, and a replica that starts (or restarts) learns the
//! hour's counts with its first flush. Grants without a budget never reach this module
//! (the budget rides in the access token, see `token::MintRequest::calls_per_hour`).
//!
//! When the database cannot be reached, each replica goes on counting its own calls
//! (each still refuses past the budget) and adds them once it can.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use warrant_idp::db::Db;
use warrant_idp::on_pool;

/// Seconds in a budget's period.
pub const HOUR: i64 = 3600;
/// Usage rows of hours older than this many are deleted.
const KEEP_HOURS: i64 = 24;

/// What can go wrong storing usage.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error("call budget storage failed: {0}")]
    Storage(#[from] sqlx::Error),
}

/// A call refused because its grant's budget for the hour is used up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted {
    /// The grant's budget: calls per hour.
    pub budget: i64,
    /// Calls counted this hour (every replica's, as of the last flush, and this one's).
    pub used: i64,
    /// When the hour ends and the budget renews (Unix seconds).
    pub resets_at: i64,
}

impl Exhausted {
    /// When the budget renews, in RFC 3339 (UTC).
    pub fn resets_at_text(&self) -> String {
        OffsetDateTime::from_unix_timestamp(self.resets_at)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| self.resets_at.to_string())
    }

    /// The refusal in words an agent can act on.
    pub fn describe(&self, now: i64) -> String {
        format!(
            "the call budget of this grant is exhausted: {used} of {budget} calls per hour used; \
             it renews at {at} (in {secs} s): wait until then, or ask the person to approve \
             this agent again with a larger budget",
            used = self.used,
            budget = self.budget,
            at = self.resets_at_text(),
            secs = (self.resets_at - now).max(0),
        )
    }
}

/// One grant's count for its current hour.
#[derive(Debug, Default, Clone, Copy)]
struct Entry {
    hour: i64,
    /// The hour's total in the database at the last flush (every replica's calls).
    shared: i64,
    /// Counted here and being added by a flush right now.
    inflight: i64,
    /// Counted here since the last flush began.
    pending: i64,
}

impl Entry {
    fn used(&self) -> i64 {
        self.shared + self.inflight + self.pending
    }
}

#[derive(Debug, Default)]
struct Counts {
    entries: HashMap<String, Entry>,
    /// Calls counted in an hour that has ended, still to be added: (grant, hour, calls).
    carried: Vec<(String, i64, i64)>,
    /// The hour whose old rows were last deleted.
    pruned: i64,
}

/// The in-memory counters of one replica and their store.
#[derive(Debug, Clone)]
pub struct Budgets {
    db: Db,
    counts: Arc<Mutex<Counts>>,
}

impl Budgets {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            counts: Arc::new(Mutex::new(Counts::default())),
        }
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts one call under `grant`, whose budget is `budget` calls per hour, at `now`
    /// (Unix seconds); the calls used this hour with it, or why it is refused (a refused
    /// call is not counted). No I/O.
    pub fn charge(&self, grant: &str, budget: i64, now: i64) -> Result<i64, Exhausted> {
        let hour = now.div_euclid(HOUR);
        let mut counts = self.counts();
        let counts = &mut *counts;
        if !counts.entries.contains_key(grant) {
            counts.entries.insert(
                grant.to_owned(),
                Entry {
                    hour,
                    ..Entry::default()
                },
            );
        }
        let Some(entry) = counts.entries.get_mut(grant) else {
            return Err(Exhausted {
                budget,
                used: 0,
                resets_at: (hour + 1) * HOUR,
            });
        };
        if hour > entry.hour {
            // A new hour: what was counted in the last one is still to be stored.
            if entry.pending > 0 {
                counts
                    .carried
                    .push((grant.to_owned(), entry.hour, entry.pending));
            }
            *entry = Entry {
                hour,
                ..Entry::default()
            };
        }
        let used = entry.used();
        if used >= budget {
            return Err(Exhausted {
                budget,
                used,
                resets_at: (entry.hour + 1) * HOUR,
            });
        }
        entry.pending += 1;
        Ok(used + 1)
    }

    /// The calls counted under `grant` in the hour of `now`, as this replica knows them.
    pub fn used(&self, grant: &str, now: i64) -> i64 {
        let hour = now.div_euclid(HOUR);
        self.counts()
            .entries
            .get(grant)
            .filter(|e| e.hour == hour)
            .map_or(0, Entry::used)
    }

    /// Adds what this replica counted since the last flush to the database, then reads
    /// back every grant's total for the hour of `now`. On failure nothing counted is
    /// lost: it is added by a later flush.
    pub async fn flush(&self, now: i64) -> Result<(), BudgetError> {
        let hour = now.div_euclid(HOUR);
        let (batch, carried) = {
            let mut counts = self.counts();
            let mut batch = Vec::new();
            for (grant, entry) in &mut counts.entries {
                if entry.pending > 0 {
                    batch.push((grant.clone(), entry.hour, entry.pending));
                    entry.inflight += entry.pending;
                    entry.pending = 0;
                }
            }
            (batch, std::mem::take(&mut counts.carried))
        };
        let stored = self.store(batch.iter().chain(&carried), hour).await;
        let mut counts = self.counts();
        let counts = &mut *counts;
        let totals = match stored {
            Ok(totals) => totals,
            Err(e) => {
                for (grant, at, calls) in batch {
                    match counts.entries.get_mut(&grant) {
                        Some(entry) if entry.hour == at => {
                            entry.inflight -= calls;
                            entry.pending += calls;
                        }
                        _ => counts.carried.push((grant, at, calls)),
                    }
                }
                counts.carried.extend(carried);
                return Err(e);
            }
        };
        for (grant, at, calls) in &batch {
            if let Some(entry) = counts.entries.get_mut(grant)
                && entry.hour == *at
            {
                entry.inflight -= calls;
            }
        }
        for (grant, total) in totals {
            let Some(entry) = counts.entries.get_mut(&grant) else {
                counts.entries.insert(
                    grant,
                    Entry {
                        hour,
                        shared: total,
                        ..Entry::default()
                    },
                );
                continue;
            };
            if entry.hour < hour {
                // Its pending calls belong to the hour that ended.
                if entry.pending > 0 {
                    counts
                        .carried
                        .push((grant.clone(), entry.hour, entry.pending));
                }
                *entry = Entry {
                    hour,
                    ..Entry::default()
                };
            }
            if entry.hour == hour {
                entry.shared = total;
            }
        }
        counts
            .entries
            .retain(|_, e| e.hour >= hour || e.pending > 0 || e.inflight > 0);
        Ok(())
    }

    /// Adds the counts, deletes rows of old hours once an hour, and returns the hour's
    /// totals of every grant.
    async fn store(
        &self,
        deltas: impl Iterator<Item = &(String, i64, i64)>,
        hour: i64,
    ) -> Result<Vec<(String, i64)>, BudgetError> {
        let add = "INSERT INTO consent_grant_usage (grant_id, hour, calls) VALUES ($1, $2, $3) \
                   ON CONFLICT (grant_id, hour) DO UPDATE \
                   SET calls = consent_grant_usage.calls + excluded.calls";
        let read = "SELECT grant_id, calls FROM consent_grant_usage WHERE hour = $1";
        let deltas: Vec<&(String, i64, i64)> = deltas.collect();
        let prune = {
            let mut counts = self.counts();
            let due = counts.pruned != hour;
            counts.pruned = hour;
            due
        };
        let totals: Vec<(String, i64)> = on_pool!(&self.db, pool => {
            if !deltas.is_empty() {
                let mut tx = warrant_idp::db::begin_write(pool).await?;
                for (grant, at, calls) in &deltas {
                    sqlx::query(add).bind(grant).bind(at).bind(calls).execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
            if prune {
                sqlx::query("DELETE FROM consent_grant_usage WHERE hour < $1")
                    .bind(hour - KEEP_HOURS)
                    .execute(pool)
                    .await?;
            }
            sqlx::query_as(read).bind(hour).fetch_all(pool).await?
        });
        Ok(totals)
    }

    /// The calls stored for `grant` in `hour` (Unix seconds / 3600): every replica's,
    /// as of their last flush.
    pub async fn stored(&self, grant: &str, hour: i64) -> Result<i64, BudgetError> {
        let sql = "SELECT calls FROM consent_grant_usage WHERE grant_id = $1 AND hour = $2";
        let calls: Option<i64> = on_pool!(&self.db, pool => {
            sqlx::query_scalar(sql).bind(grant).bind(hour).fetch_optional(pool).await?
        });
        Ok(calls.unwrap_or(0))
    }
}

#[cfg(test)]
#[path = "budgets_tests.rs"]
mod tests;
