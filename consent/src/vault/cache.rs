//! Decrypted values for the per-call path: at most [`MAX_ENTRIES`], each for at most
//! [`TTL`]; a value leaves memory (zeroized) when it is evicted, replaced or expired and
//! the last call using it is done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// How many decrypted values are kept at most.
pub(super) const MAX_ENTRIES: usize = 1024;
/// How long a decrypted value is kept.
pub(super) const TTL: Duration = Duration::from_secs(60);

/// A decrypted value, shared by the calls using it; zeroized when the last one drops it.
pub type Plain = Arc<Zeroizing<Vec<u8>>>;

/// A record as the cache names it: owner, upstream, kind.
pub(super) type Key = (String, String, String);

#[derive(Default)]
pub(super) struct Cache {
    entries: Mutex<HashMap<Key, (Plain, Instant)>>,
}

impl Cache {
    pub(super) fn get(&self, key: &Key, now: Instant) -> Option<Plain> {
        let mut entries = self.lock();
        match entries.get(key) {
            Some((value, at)) if now.duration_since(*at) < TTL => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn put(&self, key: Key, value: Plain, now: Instant) {
        let mut entries = self.lock();
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(&key) {
            entries.retain(|_, (_, at)| now.duration_since(*at) < TTL);
            if entries.len() >= MAX_ENTRIES
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, (_, at))| *at)
                    .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(key, (value, now));
    }

    /// Forgets what is cached of `owner`'s records (`None`: everyone's) for `upstream`
    /// (`None`: every upstream).
    pub(super) fn forget(&self, owner: Option<&str>, upstream: Option<&str>) {
        self.lock().retain(|(o, u, _), _| {
            !(owner.is_none_or(|owner| owner == o) && upstream.is_none_or(|up| up == u))
        });
    }

    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Plain, Instant)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: usize) -> Key {
        (format!("owner{n}"), "up".into(), "api_key".into())
    }

    fn plain(s: &str) -> Plain {
        Arc::new(Zeroizing::new(s.as_bytes().to_vec()))
    }

    #[test]
    fn values_expire_and_the_cache_stays_bounded() {
        let cache = Cache::default();
        let start = Instant::now();
        cache.put(key(0), plain("a"), start);
        assert!(cache.get(&key(0), start + TTL / 2).is_some());
        assert!(cache.get(&key(0), start + TTL).is_none(), "expired");
        assert_eq!(cache.len(), 0, "an expired value is dropped");
        for n in 0..MAX_ENTRIES + 10 {
            let at = start + Duration::from_millis(u64::try_from(n).unwrap_or(0));
            cache.put(key(n), plain("v"), at);
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        assert!(cache.get(&key(0), start).is_none(), "the oldest went first");
        let newest = key(MAX_ENTRIES + 9);
        assert!(cache.get(&newest, start).is_some());
    }

    #[test]
    fn forgetting_is_per_owner_and_upstream() {
        let cache = Cache::default();
        let now = Instant::now();
        cache.put(("a".into(), "x".into(), "k".into()), plain("1"), now);
        cache.put(("a".into(), "y".into(), "k".into()), plain("2"), now);
        cache.put(("b".into(), "x".into(), "k".into()), plain("3"), now);
        cache.forget(Some("a"), Some("x"));
        assert_eq!(cache.len(), 2);
        cache.forget(None, Some("x"));
        assert_eq!(cache.len(), 1);
        cache.forget(Some("a"), None);
        assert_eq!(cache.len(), 0);
    }
}
