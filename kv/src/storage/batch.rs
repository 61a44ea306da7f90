//! A write batch that can be read: pending writes merged over a base reader.

use std::collections::BTreeMap;

use super::memory::MapCursor;
use super::{EngineIterator, Reader, Space, WriteBatch, Writer};
use crate::error::Result;

type Overlay = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Pending puts and deletes over a base [`Reader`]; reads see the pending writes first.
///
/// Only the last write to each key is kept, so [`into_write_batch`](Self::into_write_batch)
/// yields one operation per key written.
pub struct IndexedBatch<'r> {
    base: &'r dyn Reader,
    overlay: [Overlay; Space::ALL.len()],
}

impl<'r> IndexedBatch<'r> {
    pub fn new(base: &'r dyn Reader) -> Self {
        IndexedBatch {
            base,
            overlay: Default::default(),
        }
    }

    /// The pending writes as a batch for [`Engine::write`](super::Engine::write).
    pub fn into_write_batch(self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for (space, overlay) in Space::ALL.into_iter().zip(self.overlay) {
            for (key, value) in overlay {
                match value {
                    Some(value) => batch.put(space, key, value),
                    None => batch.delete(space, key),
                }
            }
        }
        batch
    }

    /// Whether no write is pending.
    pub fn is_empty(&self) -> bool {
        self.overlay.iter().all(BTreeMap::is_empty)
    }
}

impl Writer for IndexedBatch<'_> {
    fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.overlay[space.index()].insert(key, Some(value));
    }

    fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.overlay[space.index()].insert(key, None);
    }
}

impl Reader for IndexedBatch<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.overlay[space.index()].get(key) {
            Some(pending) => Ok(pending.clone()),
            None => self.base.get(space, key),
        }
    }

    fn iter(
        &self,
        space: Space,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn EngineIterator + '_>> {
        Ok(Box::new(MergedIter {
            base: self.base.iter(space, lower, upper)?,
            overlay: MapCursor::new(&self.overlay[space.index()], lower, upper),
            forward: true,
            from_overlay: false,
        }))
    }
}

/// Merges a base iterator with the overlay of pending writes: where both hold a key the
/// overlay wins, and overlay deletions hide base entries.
///
/// Changing direction re-seeks both sides to the current key, then steps past it; the
/// same move as going on in the old direction, just mirrored.
struct MergedIter<'a> {
    base: Box<dyn EngineIterator + 'a>,
    overlay: MapCursor<&'a Overlay>,
    forward: bool,
    /// Whether the current entry comes from the overlay (else from the base).
    from_overlay: bool,
}

impl MergedIter<'_> {
    /// From positioned sub-iterators, settles on the next visible entry in the current
    /// direction, skipping overlay deletions and the base entries they hide.
    fn settle(&mut self) -> Result<()> {
        loop {
            let base_key = self.base.current().map(|(k, _)| k.to_vec());
            let Some((okey, ovalue)) = self.overlay.entry() else {
                self.from_overlay = false;
                return Ok(());
            };
            let overlay_first = match &base_key {
                None => true,
                Some(b) if self.forward => okey <= b.as_slice(),
                Some(b) => okey >= b.as_slice(),
            };
            if !overlay_first {
                self.from_overlay = false;
                return Ok(());
            }
            if ovalue.is_some() {
                self.from_overlay = true;
                return Ok(());
            }
            // A pending delete: skip it and the base entry it hides.
            let hidden = base_key.as_deref() == Some(okey);
            self.step_overlay();
            if hidden {
                self.step_base()?;
            }
        }
    }

    fn step_base(&mut self) -> Result<()> {
        if self.forward {
            self.base.next()
        } else {
            self.base.prev()
        }
    }

    fn step_overlay(&mut self) {
        if self.forward {
            self.overlay.next()
        } else {
            self.overlay.prev()
        }
    }

    /// Moves one entry on in direction `forward`.
    fn step(&mut self, forward: bool) -> Result<()> {
        let Some((key, _)) = self.current() else {
            return Ok(());
        };
        let key = key.to_vec();
        if forward != self.forward {
            self.forward = forward;
            if forward {
                self.base.seek(&key)?;
                self.overlay.seek(&key);
            } else {
                self.base.seek_for_prev(&key)?;
                self.overlay.seek_for_prev(&key);
            }
        }
        if self
            .base
            .current()
            .is_some_and(|(k, _)| k == key.as_slice())
        {
            self.step_base()?;
        }
        if self
            .overlay
            .entry()
            .is_some_and(|(k, _)| k == key.as_slice())
        {
            self.step_overlay();
        }
        self.settle()
    }
}

impl EngineIterator for MergedIter<'_> {
    fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.forward = true;
        self.base.seek(key)?;
        self.overlay.seek(key);
        self.settle()
    }

    fn seek_for_prev(&mut self, key: &[u8]) -> Result<()> {
        self.forward = false;
        self.base.seek_for_prev(key)?;
        self.overlay.seek_for_prev(key);
        self.settle()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.forward = true;
        self.base.seek_to_first()?;
        self.overlay.seek_to_first();
        self.settle()
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.forward = false;
        self.base.seek_to_last()?;
        self.overlay.seek_to_last();
        self.settle()
    }

    fn next(&mut self) -> Result<()> {
        self.step(true)
    }

    fn prev(&mut self) -> Result<()> {
        self.step(false)
    }

    fn current(&self) -> Option<(&[u8], &[u8])> {
        if self.from_overlay {
            match self.overlay.entry() {
                Some((k, Some(v))) => Some((k, v.as_slice())),
                _ => None,
            }
        } else {
            self.base.current()
        }
    }
}
