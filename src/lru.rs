//! A bounded, expiring map shared by worker threads: the session-reuse cache, whose entries
//! are small and of one size (the `previous_response_id` store, bounded in bytes too, keeps
//! its own). Entries expire `ttl` after they were stored; beyond `max` entries the least
//! recently used go, a tenth of the map at once, so a full map costs one scan per `max/10`
//! inserts rather than one per insert. The lock covers bookkeeping only.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Slot<V> {
    value: V,
    stored: Instant,
    used: u64,
}

pub struct TtlLru<K, V> {
    max: usize,
    ttl: Duration,
    map: Mutex<HashMap<K, Slot<V>>>,
    tick: AtomicU64,
}

impl<K: Hash + Eq + Clone, V> TtlLru<K, V> {
    pub fn new(max: usize, ttl: Duration) -> Self {
        TtlLru {
            max,
            ttl,
            map: Mutex::new(HashMap::new()),
            tick: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<K, Slot<V>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Removes and returns the value for `key`, if it has not expired.
    pub fn take(&self, key: &K) -> Option<V> {
        self.lock()
            .remove(key)
            .filter(|s| s.stored.elapsed() < self.ttl)
            .map(|s| s.value)
    }

    /// Stores `value` (a `max` of 0 stores nothing).
    pub fn insert(&self, key: K, value: V) {
        if self.max == 0 {
            return;
        }
        let used = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lock();
        if map.len() >= self.max && !map.contains_key(&key) {
            map.retain(|_, s| s.stored.elapsed() < self.ttl);
            let target = self.max - (self.max / 10).max(1);
            if map.len() > target {
                let mut by_use: Vec<(u64, K)> =
                    map.iter().map(|(k, s)| (s.used, k.clone())).collect();
                let drop = map.len() - target;
                by_use.select_nth_unstable_by_key(drop - 1, |(used, _)| *used);
                for (_, k) in &by_use[..drop] {
                    map.remove(k);
                }
            }
        }
        map.insert(
            key,
            Slot {
                value,
                stored: Instant::now(),
                used,
            },
        );
    }

    /// Keeps only the entries whose value passes `keep`.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool) {
        self.lock().retain(|_, s| keep(&s.value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_taken_expire_and_the_least_recently_used_go_first() {
        let m = TtlLru::new(2, Duration::from_secs(60));
        m.insert(1, "a");
        assert_eq!(m.take(&1), Some("a"));
        assert_eq!(m.take(&1), None, "taken");
        m.insert(2, "b");
        m.insert(3, "c");
        m.insert(2, "b"); // storing again counts as a use
        m.insert(4, "d");
        assert_eq!(m.len(), 2);
        assert_eq!(m.take(&3), None, "the least recently used went");
        assert_eq!(m.take(&2), Some("b"));
        m.retain(|v| *v != "d");
        assert_eq!(m.take(&4), None);
        let big = TtlLru::new(100, Duration::from_secs(60));
        for i in 0..=100u8 {
            big.insert(i, i);
        }
        assert_eq!(big.len(), 91, "a tenth made room at once");
        assert!(big.take(&0).is_none() && big.take(&100).is_some());
        let expired = TtlLru::new(10, Duration::ZERO);
        expired.insert(9, 9);
        assert_eq!(expired.take(&9), None);
        assert_eq!(expired.take(&9), None);
        let none = TtlLru::new(0, Duration::from_secs(60));
        none.insert(1, 1);
        assert_eq!(none.len(), 0);
    }
}
