//! One rule for poisoned locks: a lock whose holder panicked is taken anyway.
//!
//! Every lock of the data plane guards a map, a list or a slot that each critical
//! section leaves whole (one insert, remove or replace; no section runs code that can
//! panic half-way through a change of several parts), so what it guards stays usable.
//! Refusing every later use, or skipping the work silently, would instead break the
//! gateway for good over one panic somewhere else (a lost session binding, calls in
//! flight no longer routed). So every lock is taken through these traits, never with
//! `lock()`, `read()` or `write()` and a decision of its own about poison.

use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A mutex, taken even when poisoned.
pub(crate) trait Locked<T> {
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A read-write lock, taken even when poisoned.
pub(crate) trait ReadWrite<T> {
    fn reading(&self) -> RwLockReadGuard<'_, T>;
    fn writing(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> ReadWrite<T> for RwLock<T> {
    fn reading(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn writing(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A map (or any value) split in shards by key, each under a mutex of its own: requests
/// about two keys take the same lock only when their keys fall in the same shard, so
/// a table every call consults is no lock across the whole process.
pub(crate) struct Sharded<T>([Mutex<T>; SHARDS]);

/// Shards of a [`Sharded`] value.
const SHARDS: usize = 16;

/// FNV-1a: picks a shard for a few instructions a byte. Not a defence against chosen
/// keys (nor need it be: keys that all fall in one shard take one lock, as before the
/// shards); the maps inside keep their own hasher.
struct Fnv(u64);

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self(std::array::from_fn(|_| Mutex::default()))
    }
}

impl<T> Sharded<T> {
    /// The shard of `key`, locked (a `str` key falls where its `String` or `Arc<str>`
    /// falls).
    pub(crate) fn shard<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, T> {
        let mut hasher = Fnv(FNV_OFFSET);
        key.hash(&mut hasher);
        // The remainder is below the shard count: the cast cannot truncate.
        self.0[(hasher.finish() % SHARDS as u64) as usize].locked()
    }

    /// Every shard, one after the other (each locked only while it is visited).
    pub(crate) fn each(&self) -> impl Iterator<Item = MutexGuard<'_, T>> {
        self.0.iter().map(Locked::locked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_whose_holder_panicked_is_still_taken_with_its_data() {
        let shared = std::sync::Arc::new((Mutex::new(vec![1]), RwLock::new(7)));
        let poisoner = shared.clone();
        let _ = std::thread::spawn(move || {
            let _mutex = poisoner.0.lock();
            let _rw = poisoner.1.write();
            panic!("a holder panics");
        })
        .join();
        assert!(shared.0.is_poisoned() && shared.1.is_poisoned());
        shared.0.locked().push(2);
        assert_eq!(*shared.0.locked(), vec![1, 2]);
        *shared.1.writing() += 1;
        assert_eq!(*shared.1.reading(), 8);
    }

    #[test]
    fn two_keys_of_different_shards_do_not_wait_for_each_other() {
        let table: Sharded<Vec<&str>> = Sharded::default();
        let held = table.shard("session-a");
        // Some other key falls in another shard: taken while the first is held.
        let other = (0..64)
            .map(|i| format!("session-{i}"))
            .find(|key| {
                let mut hasher = Fnv(FNV_OFFSET);
                key.as_str().hash(&mut hasher);
                let mut first = Fnv(FNV_OFFSET);
                "session-a".hash(&mut first);
                hasher.finish() % SHARDS as u64 != first.finish() % SHARDS as u64
            })
            .expect("a key in another shard");
        table.shard(other.as_str()).push("other");
        drop(held);
        table.shard("session-a").push("a");
        assert_eq!(
            *table.shard(&String::from("session-a")),
            ["a"],
            "a String falls where its str does"
        );
        assert_eq!(table.each().map(|s| s.len()).sum::<usize>(), 2);
    }
}
