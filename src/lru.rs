//! A bounded, expiring map shared by worker threads: the session-reuse cache, whose entries
//! are small and of one size (the `previous_response_id` store, bounded in bytes too, keeps
//! its own). Entries expire `ttl` after they were stored; beyond `max` entries the least
//! recently used go, a tenth of the map at once, so a full map costs one scan per `max/10`
//! inserts rather than one per insert. The lock covers bookkeeping only.
//!
//! What leaves the map other than by `take`'s hit (evicted, expired, replaced, dropped by
//! `retain` or `sweep`) is handed back to the caller (`gone`), who may have to clean up
//! after it (the session cache deletes the Lingma session).

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

    /// Removes and returns the value for `key`, if it has not expired; an expired one goes
    /// to `gone`.
    pub fn take(&self, key: &K, gone: &mut Vec<V>) -> Option<V> {
        let slot = self.lock().remove(key)?;
        if slot.stored.elapsed() < self.ttl {
            return Some(slot.value);
        }
        gone.push(slot.value);
        None
    }

    /// Stores `value` (a `max` of 0 stores nothing: it goes to `gone` at once). What it
    /// replaces, evicts or finds expired goes to `gone`.
    pub fn insert(&self, key: K, value: V, gone: &mut Vec<V>) {
        if self.max == 0 {
            gone.push(value);
            return;
        }
        let used = self.tick.fetch_add(1, Ordering::Relaxed);
        let mut map = self.lock();
        if map.len() >= self.max && !map.contains_key(&key) {
            self.remove_expired(&mut map, gone);
            let target = self.max - (self.max / 10).max(1);
            if map.len() > target {
                let mut by_use: Vec<(u64, K)> =
                    map.iter().map(|(k, s)| (s.used, k.clone())).collect();
                let drop = map.len() - target;
                by_use.select_nth_unstable_by_key(drop - 1, |(used, _)| *used);
                for (_, k) in &by_use[..drop] {
                    gone.extend(map.remove(k).map(|s| s.value));
                }
            }
        }
        let slot = Slot {
            value,
            stored: Instant::now(),
            used,
        };
        gone.extend(map.insert(key, slot).map(|s| s.value));
    }

    /// Keeps only the entries whose value passes `keep`; the others go to `gone`.
    pub fn retain(&self, mut keep: impl FnMut(&V) -> bool, gone: &mut Vec<V>) {
        let mut map = self.lock();
        let dropped: Vec<K> = map
            .iter()
            .filter(|(_, s)| !keep(&s.value))
            .map(|(k, _)| k.clone())
            .collect();
        gone.extend(
            dropped
                .iter()
                .filter_map(|k| map.remove(k))
                .map(|s| s.value),
        );
    }

    /// Removes the expired entries, into `gone`.
    pub fn sweep(&self, gone: &mut Vec<V>) {
        self.remove_expired(&mut self.lock(), gone);
    }

    fn remove_expired(&self, map: &mut HashMap<K, Slot<V>>, gone: &mut Vec<V>) {
        let expired: Vec<K> = map
            .iter()
            .filter(|(_, s)| s.stored.elapsed() >= self.ttl)
            .map(|(k, _)| k.clone())
            .collect();
        gone.extend(
            expired
                .iter()
                .filter_map(|k| map.remove(k))
                .map(|s| s.value),
        );
    }

    /// Empties the map, giving back every value (the cache's end at shutdown).
    pub fn drain(&self) -> Vec<V> {
        self.lock().drain().map(|(_, s)| s.value).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_taken_expire_and_the_least_recently_used_go_first() {
        let mut gone = Vec::new();
        let m = TtlLru::new(2, Duration::from_secs(60));
        m.insert(1, "a", &mut gone);
        assert_eq!(m.take(&1, &mut gone), Some("a"));
        assert_eq!(m.take(&1, &mut gone), None, "taken");
        m.insert(2, "b", &mut gone);
        m.insert(3, "c", &mut gone);
        m.insert(2, "b", &mut gone); // storing again counts as a use
        assert_eq!(gone, ["b"], "the value it replaced");
        gone.clear();
        m.insert(4, "d", &mut gone);
        assert_eq!(m.len(), 2);
        assert_eq!(m.take(&3, &mut gone), None, "the least recently used went");
        assert_eq!(m.take(&2, &mut gone), Some("b"));
        m.retain(|v| *v != "d", &mut gone);
        assert_eq!(m.take(&4, &mut gone), None);
        assert_eq!(gone, ["c", "d"], "evicted, then dropped by retain");
        let mut gone = Vec::new();
        let big = TtlLru::new(100, Duration::from_secs(60));
        for i in 0..=100u8 {
            big.insert(i, i, &mut gone);
        }
        assert_eq!(big.len(), 91, "a tenth made room at once");
        assert_eq!(gone.len(), 10);
        assert!(big.take(&0, &mut gone).is_none() && big.take(&100, &mut gone).is_some());
        let mut gone = Vec::new();
        let expired = TtlLru::new(10, Duration::ZERO);
        expired.insert(9, 9, &mut gone);
        assert_eq!(expired.take(&9, &mut gone), None);
        assert_eq!(expired.take(&9, &mut gone), None);
        assert_eq!(gone, [9], "an expired entry leaves once");
        let mut gone = Vec::new();
        let none = TtlLru::new(0, Duration::from_secs(60));
        none.insert(1, 1, &mut gone);
        assert_eq!((none.len(), gone), (0, vec![1]));
    }

    #[test]
    fn a_sweep_takes_the_expired_entries_and_drain_empties() {
        let mut gone = Vec::new();
        let m = TtlLru::new(10, Duration::ZERO);
        m.insert(1, 1, &mut gone);
        m.insert(2, 2, &mut gone);
        assert!(
            gone.is_empty(),
            "kept until a sweep while the map is not full"
        );
        m.sweep(&mut gone);
        gone.sort();
        assert_eq!(gone, [1, 2]);
        assert_eq!(m.len(), 0);
        m.insert(3, 3, &mut gone);
        assert_eq!(m.drain(), [3]);
        assert_eq!(m.len(), 0);
    }
}
