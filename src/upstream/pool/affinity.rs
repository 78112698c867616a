//! Which instance each conversation last used, in bounded memory.

use std::collections::HashMap;

/// Affinity keys per generation (see `Affinity`): the last 4096 to 8192 conversations are
/// remembered, in at most two tables of 8192 buckets each (about 140 KiB apiece).
const AFFINITY_GENERATION: usize = 4096;

/// Which instance each conversation last used, bounded by generations rather than by
/// time: keys go into `current`; when it holds `AFFINITY_GENERATION` keys it becomes
/// `previous` (the older one is forgotten) and `current` starts empty again, reusing its
/// table. A key found only in `previous` moves back into `current` when it is used again.
/// Every conversation (without a client hint: every distinct system prompt or first
/// message) adds a key, so a map that was only cleared at 100,000 keys grew with the
/// traffic for hours, to a few MiB.
#[derive(Default)]
pub(super) struct Affinity {
    current: HashMap<u64, usize>,
    previous: HashMap<u64, usize>,
}

impl Affinity {
    pub(super) fn get(&self, key: u64) -> Option<usize> {
        self.current
            .get(&key)
            .or_else(|| self.previous.get(&key))
            .copied()
    }

    pub(super) fn insert(&mut self, key: u64, instance: usize) {
        if self.current.len() >= AFFINITY_GENERATION && !self.current.contains_key(&key) {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.clear();
        }
        self.previous.remove(&key);
        self.current.insert(key, instance);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_remembers_recent_conversations_in_bounded_memory() {
        let mut a = Affinity::default();
        let keys = 25 * AFFINITY_GENERATION as u64;
        for k in 0..keys {
            a.insert(k, (k % 3) as usize);
            // One old conversation keeps coming back: it is never forgotten.
            a.insert(u64::MAX, 7);
        }
        let kept = a.current.len() + a.previous.len();
        assert!(kept <= 2 * AFFINITY_GENERATION, "{kept} keys kept");
        let tables = a.current.capacity() + a.previous.capacity();
        assert!(tables <= 4 * AFFINITY_GENERATION, "room for {tables} keys");
        for k in keys - AFFINITY_GENERATION as u64..keys {
            assert_eq!(a.get(k), Some((k % 3) as usize), "recent key {k}");
        }
        assert_eq!(a.get(0), None, "the oldest went");
        assert_eq!(a.get(u64::MAX), Some(7));
        a.insert(keys - 1, 2);
        assert_eq!(a.get(keys - 1), Some(2), "a key moves to its new instance");
    }
}
