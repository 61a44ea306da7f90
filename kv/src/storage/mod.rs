//! Storage engines: ordered byte keys in separate key spaces, atomic write batches and
//! consistent snapshots.
//!
//! Everything above this module sees a store through the [`Engine`] trait, which knows
//! nothing of RocksDB. Two engines implement it:
//!
//! - [`memory::Memory`]: ordered maps in memory, for tests of every layer;
//! - `rocksdb::RocksDb` (cargo feature `rocksdb`): the engine a node runs on. It is the
//!   only file in the workspace that names RocksDB.
//!
//! Both pass one test suite (`tests.rs`).
//!
//! A store has separate key [`Space`]s (RocksDB column families), so that the Raft logs
//! of all ranges do not interleave with user data:
//!
//! ```text
//!   Space::Data   MVCC data of every range, transaction records, range descriptors
//!   Space::Raft   per-range Raft log, vote, committed index and applied state;
//!                 store-local state (store identity)
//! ```
//!
//! A [`WriteBatch`] is applied atomically across spaces, so a range can write the
//! effects of a Raft entry and its applied index in one step. An [`IndexedBatch`] is a
//! write batch that can also be read, merged over a base reader: evaluating a request
//! builds one so later steps of the same request see the earlier ones' writes.

mod batch;
pub mod memory;
#[cfg(feature = "rocksdb")]
pub mod rocksdb;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use batch::IndexedBatch;

use crate::error::Result;

/// A separate key space of a store (a RocksDB column family).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Space {
    /// MVCC data, transaction records, range descriptors: replicated state.
    Data,
    /// Raft logs and per-range, per-store bookkeeping.
    Raft,
}

impl Space {
    /// Every space, in a fixed order.
    pub const ALL: [Space; 2] = [Space::Data, Space::Raft];

    /// The name of the space (the RocksDB column family).
    pub fn name(self) -> &'static str {
        match self {
            Space::Data => "data",
            Space::Raft => "raft",
        }
    }

    /// The position of the space in [`Space::ALL`].
    pub fn index(self) -> usize {
        match self {
            Space::Data => 0,
            Space::Raft => 1,
        }
    }
}

/// Read access to a store or a consistent view of one.
pub trait Reader {
    /// The value of `key` in `space`, if any.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// An iterator over the keys of `space` in `[lower, upper)` (no upper bound if
    /// `None`). It starts unpositioned: call one of its seek methods first.
    fn iter(
        &self,
        space: Space,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn EngineIterator + '_>>;
}

/// A cursor over ordered keys, movable in both directions (RocksDB's iterator model).
///
/// Invariant: positioned entries are always within the bounds the iterator was created
/// with. Moving an unpositioned iterator with `next`/`prev` leaves it unpositioned.
pub trait EngineIterator {
    /// Positions at the first key `>= key`.
    fn seek(&mut self, key: &[u8]) -> Result<()>;
    /// Positions at the last key `<= key`.
    fn seek_for_prev(&mut self, key: &[u8]) -> Result<()>;
    /// Positions at the first key within bounds.
    fn seek_to_first(&mut self) -> Result<()>;
    /// Positions at the last key within bounds.
    fn seek_to_last(&mut self) -> Result<()>;
    /// Moves to the next key.
    fn next(&mut self) -> Result<()>;
    /// Moves to the previous key.
    fn prev(&mut self) -> Result<()>;
    /// The entry under the cursor, or `None` when unpositioned or past either end.
    fn current(&self) -> Option<(&[u8], &[u8])>;
}

/// A consistent, immutable view of a store at one point in time.
pub trait Snapshot: Reader + Send + Sync {}

impl<T: Reader + Send + Sync> Snapshot for T {}

/// A store: one per node, holding every replica's data and Raft state.
pub trait Engine: Reader + Send + Sync {
    /// Applies every operation of `batch` atomically. With `sync`, returns only once the
    /// batch is durable (the write-ahead log is synced to disk).
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()>;

    /// A consistent view of the store as of now, unaffected by later writes.
    fn snapshot(&self) -> Box<dyn Snapshot>;
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BatchOp {
    Put {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        space: Space,
        key: Vec<u8>,
    },
    /// Deletes every key in `[start, end)`.
    DeleteRange {
        space: Space,
        start: Vec<u8>,
        end: Vec<u8>,
    },
}

/// Operations applied atomically, in order, by [`Engine::write`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        WriteBatch::default()
    }

    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push(BatchOp::Put { space, key, value });
    }

    pub fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.ops.push(BatchOp::Delete { space, key });
    }

    pub fn delete_range(&mut self, space: Space, start: Vec<u8>, end: Vec<u8>) {
        self.ops.push(BatchOp::DeleteRange { space, start, end });
    }

    /// Appends all of `other`'s operations after this batch's.
    pub fn append(&mut self, other: WriteBatch) {
        self.ops.extend(other.ops);
    }

    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    pub fn into_ops(self) -> Vec<BatchOp> {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Total bytes of keys and values in the batch.
    pub fn size_bytes(&self) -> usize {
        self.ops
            .iter()
            .map(|op| match op {
                BatchOp::Put { key, value, .. } => key.len() + value.len(),
                BatchOp::Delete { key, .. } => key.len(),
                BatchOp::DeleteRange { start, end, .. } => start.len() + end.len(),
            })
            .sum()
    }
}

/// Write access through which MVCC operations record their effects.
pub trait Writer {
    fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>);
    fn delete(&mut self, space: Space, key: Vec<u8>);
}

/// Reads every entry of `space` in `[lower, upper)`, in key order (or reversed).
pub fn scan_all(
    reader: &dyn Reader,
    space: Space,
    lower: &[u8],
    upper: Option<&[u8]>,
    reverse: bool,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut it = reader.iter(space, lower, upper)?;
    let mut out = Vec::new();
    if reverse {
        it.seek_to_last()?;
    } else {
        it.seek_to_first()?;
    }
    while let Some((k, v)) = it.current() {
        out.push((k.to_vec(), v.to_vec()));
        if reverse {
            it.prev()?;
        } else {
            it.next()?;
        }
    }
    Ok(out)
}

/// Whether `key` lies in `[lower, upper)` (`None`: no upper bound).
pub(crate) fn in_bounds(key: &[u8], lower: &[u8], upper: Option<&[u8]>) -> bool {
    key >= lower && upper.is_none_or(|u| key < u)
}

/// Engines for tests: one of each kind compiled in, so suites run on all of them.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::Arc;

    use super::Engine;

    /// An engine for one test, with whatever it needs kept alive (a temporary directory).
    pub(crate) struct TestEngine {
        pub(crate) engine: Arc<dyn Engine>,
        _dir: Option<tempfile::TempDir>,
    }

    impl std::ops::Deref for TestEngine {
        type Target = dyn Engine;
        fn deref(&self) -> &Self::Target {
            &*self.engine
        }
    }

    pub(crate) fn memory() -> TestEngine {
        TestEngine {
            engine: Arc::new(super::memory::Memory::new()),
            _dir: None,
        }
    }

    #[cfg(feature = "rocksdb")]
    pub(crate) fn rocksdb() -> TestEngine {
        let dir = tempfile::tempdir().expect("temporary directory");
        let engine = super::rocksdb::RocksDb::open(dir.path()).expect("open rocksdb");
        TestEngine {
            engine: Arc::new(engine),
            _dir: Some(dir),
        }
    }

    /// Defines, for each named function `fn(&TestEngine)` in the enclosing module, one
    /// test per engine: `memory::NAME` and (with the `rocksdb` feature) `rocksdb::NAME`.
    macro_rules! test_each_engine {
        ($($name:ident),* $(,)?) => {
            mod memory {
                $( #[test] fn $name() { super::$name(&$crate::storage::testing::memory()) } )*
            }
            #[cfg(feature = "rocksdb")]
            mod rocksdb {
                $( #[test] fn $name() { super::$name(&$crate::storage::testing::rocksdb()) } )*
            }
        };
    }
    pub(crate) use test_each_engine;
}
