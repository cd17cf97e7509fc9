//! One rule for poisoned locks: a lock whose holder panicked is taken anyway.
//!
//! Every lock of the data plane guards a map, a list or a slot that each critical
//! section leaves whole (one insert, remove or replace; no section runs code that can
//! panic half-way through a change of several parts), so what it guards stays usable.
//! Refusing every later use, or skipping the work silently, would instead break the
//! gateway for good over one panic somewhere else (a lost session binding, calls in
//! flight no longer routed). So every lock is taken through these traits, never with
//! `lock()`, `read()` or `write()` and a decision of its own about poison.

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
}
