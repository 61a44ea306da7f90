//! The in-memory engine: one ordered map per key space, for tests of every layer.
//!
//! Snapshots are cheap: the maps live behind an `Arc`, a snapshot clones the `Arc`, and
//! a write after a snapshot copies the maps first (copy on write). That copy is O(n),
//! which is fine for tests and the reason this engine is not for production.

use std::collections::BTreeMap;
use std::ops::{Bound, Deref};
use std::sync::Arc;

use parking_lot::RwLock;

use super::{BatchOp, Engine, EngineIterator, Reader, Snapshot, Space, WriteBatch, in_bounds};
use crate::error::Result;

type Maps = [BTreeMap<Vec<u8>, Vec<u8>>; Space::ALL.len()];

/// An engine that keeps everything in memory and loses it when dropped.
#[derive(Default)]
pub struct Memory {
    maps: RwLock<Arc<Maps>>,
}

impl Memory {
    pub fn new() -> Self {
        Memory::default()
    }

    fn current(&self) -> Arc<Maps> {
        self.maps.read().clone()
    }
}

impl Reader for Memory {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.maps.read()[space.index()].get(key).cloned())
    }

    fn iter(
        &self,
        space: Space,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn EngineIterator + '_>> {
        Ok(Box::new(MapCursor::new(
            SpaceOf(self.current(), space),
            lower,
            upper,
        )))
    }
}

impl Engine for Memory {
    fn write(&self, batch: WriteBatch, _sync: bool) -> Result<()> {
        let mut guard = self.maps.write();
        let maps = Arc::make_mut(&mut guard);
        for op in batch.into_ops() {
            match op {
                BatchOp::Put { space, key, value } => {
                    maps[space.index()].insert(key, value);
                }
                BatchOp::Delete { space, key } => {
                    maps[space.index()].remove(&key);
                }
                BatchOp::DeleteRange { space, start, end } => {
                    if start < end {
                        let map = &mut maps[space.index()];
                        let doomed: Vec<Vec<u8>> =
                            map.range(start..end).map(|(k, _)| k.clone()).collect();
                        for k in doomed {
                            map.remove(&k);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn snapshot(&self) -> Box<dyn Snapshot> {
        Box::new(MemorySnapshot(self.current()))
    }
}

/// A frozen copy of a [`Memory`] engine's maps.
struct MemorySnapshot(Arc<Maps>);

impl Reader for MemorySnapshot {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.0[space.index()].get(key).cloned())
    }

    fn iter(
        &self,
        space: Space,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn EngineIterator + '_>> {
        Ok(Box::new(MapCursor::new(
            SpaceOf(self.0.clone(), space),
            lower,
            upper,
        )))
    }
}

/// One space of an `Arc`-shared set of maps, as a map.
struct SpaceOf(Arc<Maps>, Space);

impl Deref for SpaceOf {
    type Target = BTreeMap<Vec<u8>, Vec<u8>>;
    fn deref(&self) -> &Self::Target {
        &self.0[self.1.index()]
    }
}

/// A bounded, bidirectional cursor over an ordered map that it owns or borrows (`M`).
/// It remembers its position by key, so each step is one O(log n) lookup.
pub(super) struct MapCursor<M> {
    map: M,
    lower: Vec<u8>,
    upper: Option<Vec<u8>>,
    pos: Option<Vec<u8>>,
}

impl<V, M: Deref<Target = BTreeMap<Vec<u8>, V>>> MapCursor<M> {
    pub(super) fn new(map: M, lower: &[u8], upper: Option<&[u8]>) -> Self {
        MapCursor {
            map,
            lower: lower.to_vec(),
            upper: upper.map(<[u8]>::to_vec),
            pos: None,
        }
    }

    fn place(&mut self, found: Option<&Vec<u8>>) {
        self.pos = found
            .filter(|k| in_bounds(k, &self.lower, self.upper.as_deref()))
            .cloned();
    }

    fn first_at_or_after(&mut self, from: Bound<&[u8]>) {
        let found = self
            .map
            .range::<[u8], _>((from, Bound::Unbounded))
            .next()
            .map(|(k, _)| k);
        let found = found.cloned();
        self.place(found.as_ref());
    }

    fn last_at_or_before(&mut self, to: Bound<&[u8]>) {
        let found = self
            .map
            .range::<[u8], _>((Bound::Unbounded, to))
            .next_back()
            .map(|(k, _)| k);
        let found = found.cloned();
        self.place(found.as_ref());
    }

    pub(super) fn seek(&mut self, key: &[u8]) {
        let lower = self.lower.clone();
        let from = if key < lower.as_slice() {
            lower.as_slice()
        } else {
            key
        };
        self.first_at_or_after(Bound::Included(from));
    }

    pub(super) fn seek_for_prev(&mut self, key: &[u8]) {
        match self.upper.clone() {
            Some(upper) if key >= upper.as_slice() => {
                self.last_at_or_before(Bound::Excluded(&upper))
            }
            _ => self.last_at_or_before(Bound::Included(key)),
        }
    }

    pub(super) fn seek_to_first(&mut self) {
        let lower = self.lower.clone();
        self.first_at_or_after(Bound::Included(&lower));
    }

    pub(super) fn seek_to_last(&mut self) {
        match self.upper.clone() {
            Some(upper) => self.last_at_or_before(Bound::Excluded(&upper)),
            None => self.last_at_or_before(Bound::Unbounded),
        }
    }

    pub(super) fn next(&mut self) {
        if let Some(pos) = self.pos.take() {
            self.first_at_or_after(Bound::Excluded(&pos));
        }
    }

    pub(super) fn prev(&mut self) {
        if let Some(pos) = self.pos.take() {
            self.last_at_or_before(Bound::Excluded(&pos));
        }
    }

    pub(super) fn entry(&self) -> Option<(&[u8], &V)> {
        let pos = self.pos.as_ref()?;
        self.map.get_key_value(pos).map(|(k, v)| (k.as_slice(), v))
    }
}

impl<M: Deref<Target = BTreeMap<Vec<u8>, Vec<u8>>>> EngineIterator for MapCursor<M> {
    fn seek(&mut self, key: &[u8]) -> Result<()> {
        MapCursor::seek(self, key);
        Ok(())
    }
    fn seek_for_prev(&mut self, key: &[u8]) -> Result<()> {
        MapCursor::seek_for_prev(self, key);
        Ok(())
    }
    fn seek_to_first(&mut self) -> Result<()> {
        MapCursor::seek_to_first(self);
        Ok(())
    }
    fn seek_to_last(&mut self) -> Result<()> {
        MapCursor::seek_to_last(self);
        Ok(())
    }
    fn next(&mut self) -> Result<()> {
        MapCursor::next(self);
        Ok(())
    }
    fn prev(&mut self) -> Result<()> {
        MapCursor::prev(self);
        Ok(())
    }
    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.entry().map(|(k, v)| (k, v.as_slice()))
    }
}
