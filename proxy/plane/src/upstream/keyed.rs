//! The connections an upstream keeps per key: for an upstream whose `auth` mode is
//! `person_key`, one [`Upstream`] per person, built with that person's key; for a
//! `shared` key kept in the vault, one for the shared key. Each is a whole upstream of
//! its own (its lanes, sessions, direct-path connections, stdio process), so one
//! person's key never serves another person's call.
//!
//! A connection is built on its person's first call, and checked against the vault at
//! most every [`RECHECK`]: a key that changed gets a new connection on the next call
//! (the old one ends once its calls are done); a key removed ends it. At most
//! `auth.max_people` connections are open at once; one unused for `auth.idle_timeout`
//! is closed by [`Keyed::reap`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::lane::Offer;
use super::remote::{Lender, Upstream};
use super::state::Changes;
use super::state::Health;
use crate::config::{UpstreamConfig, with_key};
use crate::locks::Locked;
use crate::protocol::era::Era;

/// How long a connection's key is used before the vault is asked whether it changed.
pub(crate) const RECHECK: Duration = Duration::from_secs(10);

/// The key connections of one upstream.
pub(crate) struct Keyed {
    /// The upstream's configuration (with its `auth`).
    base: UpstreamConfig,
    /// Where the connections' changes go: the gateway's, under the upstream's name (what
    /// they list is lent to the upstream's own connection, see [`Lender`]).
    changes: Changes,
    shutdown: CancellationToken,
    entries: Mutex<HashMap<Arc<str>, Entry>>,
    /// Connections replaced or closed while calls may still use them.
    retired: Mutex<Vec<Retired>>,
    /// What a connection listed last, per era: lent while none is up (between a key's
    /// replacement and its new connection, or after the last one closed idle), so the
    /// upstream's tools do not vanish from the lists meanwhile.
    listed: Mutex<[Option<Arc<Offer>>; 2]>,
}

struct Entry {
    upstream: Arc<Upstream>,
    stop: CancellationToken,
    version: i64,
    checked: Instant,
    last_used: Instant,
    /// When the key must be renewed before another use (an OAuth access token's
    /// refresh time); `None`: it does not expire.
    valid_until: Option<Instant>,
}

struct Retired {
    upstream: Arc<Upstream>,
    stop: CancellationToken,
}

/// What [`Keyed::current`] found.
pub(crate) enum Current {
    /// The connection, checked recently enough.
    Fresh(Arc<Upstream>),
    /// A connection built with key version `version`: ask the vault whether it changed.
    Recheck(i64),
    /// The upstream refused key version `version` (HTTP 401).
    Refused(i64),
    None,
}

/// Every connection of the upstream is in use and none may be closed.
#[derive(Debug)]
pub(crate) struct Full {
    pub(crate) max: usize,
}

impl Keyed {
    /// The key connections of the upstream configured as `base`; what they list is
    /// announced on `changes`, as the upstream's own connection's is.
    pub(crate) fn new(base: UpstreamConfig, changes: Changes, shutdown: CancellationToken) -> Self {
        Self {
            base,
            changes,
            shutdown,
            entries: Mutex::new(HashMap::new()),
            retired: Mutex::new(Vec::new()),
            listed: Mutex::new([None, None]),
        }
    }

    /// The connection of `owner`, if there is one.
    pub(crate) fn current(&self, owner: &str, now: Instant) -> Current {
        let mut entries = self.entries.locked();
        let Some(entry) = entries.get_mut(owner) else {
            return Current::None;
        };
        if entry.upstream.credentials_refused() {
            return Current::Refused(entry.version);
        }
        if now.duration_since(entry.checked) >= RECHECK
            || entry.valid_until.is_some_and(|until| now >= until)
        {
            return Current::Recheck(entry.version);
        }
        entry.last_used = now;
        Current::Fresh(entry.upstream.clone())
    }

    /// The vault still holds key version `version` for `owner`: its connection serves
    /// for another [`RECHECK`].
    pub(crate) fn confirm(&self, owner: &str, version: i64, now: Instant) -> Option<Arc<Upstream>> {
        let mut entries = self.entries.locked();
        let entry = entries.get_mut(owner).filter(|e| e.version == version)?;
        entry.checked = now;
        entry.last_used = now;
        Some(entry.upstream.clone())
    }

    /// A connection for `owner` with `key` (version `version`, to be renewed at
    /// `valid_until` if it expires), replacing the one before.
    pub(crate) fn install(
        &self,
        owner: &str,
        key: &str,
        version: i64,
        valid_until: Option<Instant>,
        now: Instant,
    ) -> Result<Arc<Upstream>, Full> {
        let mut entries = self.entries.locked();
        if let Some(entry) = entries.get_mut(owner)
            && entry.version == version
        {
            // Installed already (by another call meanwhile, or the key was read again
            // unchanged): it serves for another while.
            entry.checked = now;
            entry.last_used = now;
            entry.valid_until = valid_until;
            return Ok(entry.upstream.clone());
        }
        let max = self.base.auth.max_people;
        if !entries.contains_key(owner) && entries.len() >= max {
            // Close the connection unused the longest, if no call uses it.
            let idle = entries
                .iter()
                .filter(|(_, e)| Arc::strong_count(&e.upstream) == 1)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(owner, _)| owner.clone());
            let Some(idle) = idle else {
                return Err(Full { max });
            };
            if let Some(entry) = entries.remove(&idle) {
                entry.stop.cancel();
            }
        }
        let stop = self.shutdown.child_token();
        let upstream = Upstream::new(
            with_key(&self.base, key),
            self.changes.clone(),
            stop.clone(),
        );
        let entry = Entry {
            upstream: upstream.clone(),
            stop,
            version,
            checked: now,
            last_used: now,
            valid_until,
        };
        if let Some(old) = entries.insert(owner.into(), entry) {
            self.retire(old);
        }
        Ok(upstream)
    }

    /// Ends `owner`'s connection (the key changed or was removed), once its calls are
    /// done.
    pub(crate) fn forget(&self, owner: &str) {
        let old = self.entries.locked().remove(owner);
        if let Some(old) = old {
            self.retire(old);
        }
    }

    /// Ends every connection (the shared key changed).
    pub(crate) fn forget_all(&self) {
        let old: Vec<_> = self.entries.locked().drain().map(|(_, e)| e).collect();
        for entry in old {
            self.retire(entry);
        }
    }

    fn retire(&self, entry: Entry) {
        self.retired.locked().push(Retired {
            upstream: entry.upstream,
            stop: entry.stop,
        });
        self.close_retired();
    }

    /// Closes the retired connections no call uses any more.
    fn close_retired(&self) {
        self.retired.locked().retain(|r| {
            let in_use = Arc::strong_count(&r.upstream) > 1;
            if !in_use {
                r.stop.cancel();
            }
            in_use
        });
    }

    /// Closes connections unused for the upstream's `auth.idle_timeout`, and retired ones
    /// whose calls are done.
    pub(crate) fn reap(&self, now: Instant) {
        let idle = self.base.auth.idle_timeout;
        let stale: Vec<Entry> = {
            let mut entries = self.entries.locked();
            let owners: Vec<Arc<str>> = entries
                .iter()
                .filter(|(_, e)| now.duration_since(e.last_used) >= idle)
                .map(|(owner, _)| owner.clone())
                .collect();
            owners
                .iter()
                .filter_map(|owner| entries.remove(owner))
                .collect()
        };
        for entry in stale {
            self.retire(entry);
        }
        self.close_retired();
    }

    /// How many connections are open (retired ones still in use included).
    pub(crate) fn open(&self) -> usize {
        self.entries.locked().len() + self.retired.locked().len()
    }
}

/// An upstream that serves only callers with a key lists its tools to no connection
/// without one: what it offers is learned from a person's (or the shared key's)
/// connection that is up.
impl Lender for Keyed {
    /// What a ready connection lists to clients of `era` (else what one lists to the
    /// other era: a connection opens the era of its first call only), remembered; while
    /// none is up, what was listed last.
    fn offer(&self, era: Era) -> Option<Arc<Offer>> {
        let now_listed = {
            let entries = self.entries.locked();
            let listed = |era: Era| {
                entries
                    .values()
                    .map(|e| e.upstream.lane(era))
                    .filter(|lane| lane.health() == Health::Ready)
                    .map(|lane| lane.offer())
                    .find(|offer| !offer.is_empty())
            };
            listed(era).or_else(|| listed(era.other()))
        };
        let mut last = self.listed.locked();
        match now_listed {
            Some(offer) => {
                last[era.index()] = Some(offer.clone());
                Some(offer)
            }
            None => last[era.index()]
                .clone()
                .or_else(|| last[era.other().index()].clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Overrides, Transport, ValueRef, parse};

    fn keyed(max_people: usize) -> Keyed {
        let source = format!(
            "[upstreams.k]\nurl = \"http://127.0.0.1:9/mcp\"\nstart = \"lazy\"\n\
             [upstreams.k.auth]\nmode = \"person_key\"\nmax_people = {max_people}\n\
             idle_timeout = \"1m\"\n"
        );
        let config = parse(&source, "test", &Overrides::default()).expect("config");
        let base = config.upstreams[0].clone();
        Keyed::new(base, Changes::new(), CancellationToken::new())
    }

    fn header_of(upstream: &Upstream) -> String {
        let Transport::StreamableHttp { headers, .. } = &upstream.config.transport else {
            panic!("an HTTP upstream");
        };
        match headers.get("Authorization") {
            Some(ValueRef::Given(secret)) => secret.expose().to_owned(),
            other => panic!("the key as a given value: {other:?}"),
        }
    }

    #[test]
    fn each_owner_gets_a_connection_with_their_own_key() {
        let keyed = keyed(4);
        let now = Instant::now();
        let a = keyed.install("alice", "ka", 1, None, now).expect("room");
        let b = keyed.install("bob", "kb", 1, None, now).expect("room");
        assert_eq!(header_of(&a), "Bearer ka");
        assert_eq!(header_of(&b), "Bearer kb");
        assert!(matches!(keyed.current("alice", now), Current::Fresh(u) if Arc::ptr_eq(&u, &a)));
        // Past the recheck interval the vault is asked again; the same version confirms.
        let later = now + RECHECK;
        assert!(matches!(keyed.current("alice", later), Current::Recheck(1)));
        assert!(
            keyed.confirm("alice", 2, later).is_none(),
            "another version"
        );
        assert!(keyed.confirm("alice", 1, later).is_some());
    }

    #[test]
    fn a_key_that_expires_is_read_again_at_its_renewal_time() {
        let keyed = keyed(4);
        let now = Instant::now();
        let until = now + Duration::from_secs(3);
        let a = keyed
            .install("alice", "t1", 1, Some(until), now)
            .expect("room");
        assert!(matches!(keyed.current("alice", now), Current::Fresh(_)));
        assert!(matches!(keyed.current("alice", until), Current::Recheck(1)));
        // Read again unchanged (not yet renewed): the same connection, until later.
        let later = until + Duration::from_secs(5);
        let same = keyed
            .install("alice", "t1", 1, Some(later), until)
            .expect("room");
        assert!(Arc::ptr_eq(&a, &same));
        assert!(matches!(keyed.current("alice", until), Current::Fresh(_)));
        assert!(matches!(keyed.current("alice", later), Current::Recheck(1)));
    }

    #[test]
    fn a_new_key_replaces_the_connection_and_the_old_one_ends_after_its_calls() {
        let keyed = keyed(4);
        let now = Instant::now();
        let old = keyed.install("alice", "ka", 1, None, now).expect("room");
        let new = keyed.install("alice", "ka2", 2, None, now).expect("room");
        assert_eq!(header_of(&new), "Bearer ka2");
        // The old one is still in use by a call (`old`): retired, not yet closed.
        assert_eq!(keyed.open(), 2);
        drop(old);
        keyed.reap(now);
        assert_eq!(keyed.open(), 1);
    }

    #[test]
    fn at_the_cap_the_idle_one_unused_longest_makes_room_and_busy_ones_refuse() {
        let keyed = keyed(2);
        let now = Instant::now();
        let a = keyed.install("alice", "ka", 1, None, now).expect("room");
        let b = keyed
            .install("bob", "kb", 1, None, now + Duration::from_secs(1))
            .expect("room");
        // Both in use: no room for a third person.
        let full = keyed.install("carol", "kc", 1, None, now + Duration::from_secs(2));
        assert!(matches!(full, Err(Full { max: 2 })));
        // Alice's call ends: her connection, unused longest, makes room.
        drop(a);
        keyed
            .install("carol", "kc", 1, None, now + Duration::from_secs(3))
            .expect("room once alice's is idle");
        assert!(matches!(keyed.current("alice", now), Current::None));
        drop(b);
        // Unused for the idle timeout: closed.
        keyed.reap(now + Duration::from_secs(120));
        assert_eq!(keyed.open(), 0);
    }
}
