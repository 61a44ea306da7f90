//! The range cache: which range holds a key, and which replica last led it.
//!
//! Descriptors are cached by end key, like the meta range stores them, so the range of
//! key `k` is the first cached entry whose end key is greater than `k` (if its start key
//! is at or below `k`). Entries are dropped when a range answers `RangeKeyMismatch` or
//! is not found, and replaced by whatever the answer says is current.

use std::collections::BTreeMap;
use std::ops::Bound;

use cairn_kv::RangeId;
use cairn_kv::api::{RangeDescriptor, ReplicaDescriptor};
use parking_lot::RwLock;

/// A cached range: its descriptor and the last known leaseholder.
#[derive(Clone, Debug)]
pub struct CachedRange {
    pub desc: RangeDescriptor,
    pub leaseholder: Option<ReplicaDescriptor>,
}

#[derive(Default)]
pub struct RangeCache {
    by_end: RwLock<BTreeMap<Vec<u8>, CachedRange>>,
}

impl RangeCache {
    pub fn new() -> Self {
        RangeCache::default()
    }

    /// The cached range containing `key`, if any.
    pub fn lookup(&self, key: &[u8]) -> Option<CachedRange> {
        let map = self.by_end.read();
        let (_, entry) = map
            .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
            .next()?;
        entry.desc.contains_key(key).then(|| entry.clone())
    }

    /// The cached range holding the keys just below `end` (the range `[s, e)` with
    /// `s < end <= e`), for scans in reverse.
    pub fn lookup_before(&self, end: &[u8]) -> Option<CachedRange> {
        let map = self.by_end.read();
        let (_, entry) = map
            .range::<[u8], _>((Bound::Included(end), Bound::Unbounded))
            .next()?;
        (entry.desc.start_key.as_slice() < end).then(|| entry.clone())
    }

    /// Caches `desc`, dropping every entry it overlaps (they are older or newer views of
    /// the same keys; the caller got this one from the source of truth).
    pub fn insert(&self, desc: RangeDescriptor, leaseholder: Option<ReplicaDescriptor>) {
        let mut map = self.by_end.write();
        let overlapping: Vec<Vec<u8>> = map
            .range::<[u8], _>((Bound::Excluded(desc.start_key.as_slice()), Bound::Unbounded))
            .take_while(|(_, e)| e.desc.start_key < desc.end_key)
            .map(|(k, _)| k.clone())
            .collect();
        for k in overlapping {
            map.remove(&k);
        }
        map.insert(desc.end_key.clone(), CachedRange { desc, leaseholder });
    }

    /// Forgets the range `range_id` if it is cached for `key`.
    pub fn evict(&self, key: &[u8], range_id: RangeId) {
        let mut map = self.by_end.write();
        let found = map
            .range::<[u8], _>((Bound::Excluded(key), Bound::Unbounded))
            .next()
            .filter(|(_, e)| e.desc.range_id == range_id)
            .map(|(k, _)| k.clone());
        if let Some(k) = found {
            map.remove(&k);
        }
    }

    /// Records the leaseholder of a cached range.
    pub fn set_leaseholder(
        &self,
        range_id: RangeId,
        end_key: &[u8],
        leaseholder: Option<ReplicaDescriptor>,
    ) {
        if let Some(e) = self.by_end.write().get_mut(end_key)
            && e.desc.range_id == range_id
        {
            e.leaseholder = leaseholder;
        }
    }

    /// Every cached range, in key order.
    pub fn all(&self) -> Vec<CachedRange> {
        self.by_end.read().values().cloned().collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use cairn_kv::api::ReplicaId;

    /// A descriptor of `[start, end)` with no replicas, for tests.
    pub(crate) fn desc(id: u64, start: &str, end: &str) -> RangeDescriptor {
        RangeDescriptor {
            range_id: RangeId(id),
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            replicas: vec![],
            next_replica_id: ReplicaId(1),
            generation: 0,
            sticky_until: 0,
        }
    }

    #[test]
    fn lookup_insert_evict() {
        let c = RangeCache::new();
        c.insert(desc(1, "", "m"), None);
        c.insert(desc(2, "m", "z"), None);
        assert_eq!(c.lookup(b"a").unwrap().desc.range_id, RangeId(1));
        assert_eq!(c.lookup(b"m").unwrap().desc.range_id, RangeId(2));
        assert!(c.lookup(b"z").is_none());
        // A split of range 2 replaces it.
        c.insert(desc(2, "m", "q"), None);
        c.insert(desc(3, "q", "z"), None);
        assert_eq!(c.lookup(b"r").unwrap().desc.range_id, RangeId(3));
        // A merge back replaces both.
        c.insert(desc(2, "m", "z"), None);
        assert_eq!(c.all().len(), 2);
        assert_eq!(c.lookup_before(b"z").unwrap().desc.range_id, RangeId(2));
        assert_eq!(c.lookup_before(b"m").unwrap().desc.range_id, RangeId(1));
        assert!(c.lookup_before(b"").is_none());
        c.evict(b"n", RangeId(2));
        assert!(c.lookup(b"n").is_none());
        assert!(c.lookup(b"a").is_some());
    }
}
