//! The MCP sessions of the older revisions, as the edge sees them: whose they are (an
//! agent of a person, or a client address without tokens), how many each owner has open
//! (`mcp.max_sessions_per_client`), and when each was last used. A session with no
//! request in progress (an open stream counts) for `mcp.session_idle_timeout` ends; its
//! id then gets rmcp's 404, and the client starts a new one.

use crate::locks::{Locked, Sharded};
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every session the edge saw start, by id.
pub(crate) struct SessionTable {
    cap: usize,
    idle: Duration,
    /// Entered and left by every request of a session: in shards by id.
    by_id: Sharded<HashMap<String, Entry>>,
    /// Open sessions (and ones being started) per owner (taken when a session starts or
    /// ends; never while a shard of `by_id` is held).
    per_owner: Mutex<PerOwner>,
    /// How many are open, for `/metrics`.
    open: Gauge,
}

#[derive(Default)]
struct PerOwner(HashMap<String, usize>);

struct Entry {
    /// The session's id, shared with the requests in progress.
    id: Arc<str>,
    owner: String,
    last: Instant,
    /// Requests of the session in progress, streams included.
    busy: usize,
}

/// A session being started for `owner`, counted against the cap until it started (then
/// the session counts) or did not (then the count is given back).
pub(crate) struct Starting {
    table: Arc<SessionTable>,
    owner: Option<String>,
}

/// A request of a known session in progress: the session is not idle until it is dropped.
pub(crate) struct InUse {
    table: Arc<SessionTable>,
    id: Arc<str>,
}

impl PerOwner {
    fn release(&mut self, owner: &str) {
        if let Some(n) = self.0.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.0.remove(owner);
            }
        }
    }
}

impl SessionTable {
    /// A table of at most `cap` sessions per owner, ending those idle for `idle`, that
    /// keeps `open` counting the sessions open.
    pub(crate) fn new(cap: usize, idle: Duration, open: Gauge) -> Arc<Self> {
        Arc::new(Self {
            cap,
            idle,
            by_id: Sharded::default(),
            per_owner: Mutex::default(),
            open,
        })
    }

    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    pub(crate) fn idle(&self) -> Duration {
        self.idle
    }

    /// Room for one more session of `owner`; `None` when it has `cap` already.
    pub(crate) fn start(self: &Arc<Self>, owner: String) -> Option<Starting> {
        let mut per_owner = self.per_owner.locked();
        let open = per_owner.0.entry(owner.clone()).or_default();
        if *open >= self.cap {
            return None;
        }
        *open += 1;
        Some(Starting {
            table: self.clone(),
            owner: Some(owner),
        })
    }

    /// A request of session `id` begins; `None` for a session the table does not know.
    pub(crate) fn enter(self: &Arc<Self>, id: &str) -> Option<InUse> {
        let mut by_id = self.by_id.shard(id);
        let entry = by_id.get_mut(id)?;
        entry.busy += 1;
        entry.last = Instant::now();
        Some(InUse {
            table: self.clone(),
            id: entry.id.clone(),
        })
    }

    /// Session `id` ended (the client deleted it).
    pub(crate) fn ended(&self, id: &str) {
        let removed = self.by_id.shard(id).remove(id);
        if let Some(entry) = removed {
            self.open.dec();
            self.per_owner.locked().release(&entry.owner);
        }
    }

    /// Takes the sessions idle since `now - idle` out of the table.
    pub(crate) fn take_idle(&self, now: Instant) -> Vec<String> {
        let mut idle = Vec::new();
        let mut owners = Vec::new();
        for mut by_id in self.by_id.each() {
            by_id.retain(|id, e| {
                let ended = e.busy == 0 && now.saturating_duration_since(e.last) >= self.idle;
                if ended {
                    idle.push(id.clone());
                    owners.push(std::mem::take(&mut e.owner));
                }
                !ended
            });
        }
        self.open
            .dec_by(i64::try_from(idle.len()).unwrap_or(i64::MAX));
        let mut per_owner = self.per_owner.locked();
        for owner in &owners {
            per_owner.release(owner);
        }
        idle
    }
}

impl Starting {
    /// The session started with `id`: it counts until it ends.
    pub(crate) fn started(mut self, id: String) {
        if let Some(owner) = self.owner.take() {
            let entry = Entry {
                id: id.as_str().into(),
                owner,
                last: Instant::now(),
                busy: 0,
            };
            if self
                .table
                .by_id
                .shard(id.as_str())
                .insert(id, entry)
                .is_none()
            {
                self.table.open.inc();
            }
        }
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(owner) = self.owner.take() {
            self.table.per_owner.locked().release(&owner);
        }
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        let mut by_id = self.table.by_id.shard(&*self.id);
        if let Some(entry) = by_id.get_mut(&*self.id) {
            entry.busy = entry.busy.saturating_sub(1);
            entry.last = Instant::now();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_are_capped_and_idle_sessions_taken_out() {
        let open = Gauge::default();
        let table = SessionTable::new(2, Duration::from_secs(60), open.clone());
        let a = table.start("a".into()).expect("room");
        let b = table.start("a".into()).expect("room");
        assert!(table.start("a".into()).is_none(), "the cap");
        assert!(table.start("b".into()).is_some(), "another owner");
        drop(b); // never started
        a.started("s1".into());
        table.start("a".into()).expect("room").started("s2".into());
        assert_eq!(open.get(), 2, "two sessions open");
        assert!(table.start("a".into()).is_none());
        let in_use = table.enter("s1").expect("known");
        assert!(table.enter("nope").is_none());
        let later = Instant::now() + Duration::from_secs(61);
        assert_eq!(table.take_idle(later), ["s2"], "s1 is in use");
        assert_eq!(open.get(), 1);
        drop(in_use);
        let soon = Instant::now() + Duration::from_secs(59);
        assert!(table.take_idle(soon).is_empty(), "s1 was just used");
        table.ended("s1");
        table.ended("s1");
        assert_eq!(open.get(), 0, "an end counted once");
        assert!(table.per_owner.locked().0.is_empty());
    }
}
