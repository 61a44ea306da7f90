//! The RocksDB engine: the only place in the workspace that names RocksDB.
//!
//! Each [`Space`] is a column family; a [`WriteBatch`] becomes one RocksDB write batch,
//! atomic across column families, written with or without a WAL sync.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{
    BlockBasedOptions, ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType,
    DBRawIteratorWithThreadMode, Options, ReadOptions, WriteOptions,
};
use self_cell::self_cell;

use super::{BatchOp, Engine, EngineIterator, Reader, Snapshot, Space, WriteBatch};
use crate::error::{Error, Result};

/// A store on disk.
pub struct RocksDb {
    db: Arc<DB>,
}

fn storage_error(e: rocksdb::Error) -> Error {
    Error::Storage(e.into_string())
}

fn cf_options() -> Options {
    let mut opts = Options::default();
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    opts.set_block_based_table_factory(&table);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_bottommost_compression_type(DBCompressionType::Zstd);
    opts
}

impl RocksDb {
    /// Opens the store at `path`, creating it and its column families if missing.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        let cfs = Space::ALL.map(|s| ColumnFamilyDescriptor::new(s.name(), cf_options()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(storage_error)?;
        Ok(RocksDb { db: Arc::new(db) })
    }
}

/// The column family of `space`. Every space's family is created by [`RocksDb::open`].
fn cf(db: &DB, space: Space) -> Result<&ColumnFamily> {
    db.cf_handle(space.name())
        .ok_or_else(|| Error::Storage(format!("column family {} missing", space.name())))
}

fn read_options(lower: &[u8], upper: Option<&[u8]>) -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_iterate_lower_bound(lower.to_vec());
    if let Some(upper) = upper {
        opts.set_iterate_upper_bound(upper.to_vec());
    }
    opts
}

impl Reader for RocksDb {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(cf(&self.db, space)?, key)
            .map_err(storage_error)
    }

    fn iter(
        &self,
        space: Space,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn EngineIterator + '_>> {
        let it = self
            .db
            .raw_iterator_cf_opt(cf(&self.db, space)?, read_options(lower, upper));
        Ok(Box::new(RocksIter(it)))
    }
}

impl Engine for RocksDb {
    fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        let mut wb = rocksdb::WriteBatch::default();
        for op in batch.into_ops() {
            match op {
                BatchOp::Put { space, key, value } => wb.put_cf(cf(&self.db, space)?, key, value),
                BatchOp::Delete { space, key } => wb.delete_cf(cf(&self.db, space)?, key),
                BatchOp::DeleteRange { space, start, end } => {
                    wb.delete_range_cf(cf(&self.db, space)?, start, end)
                }
            }
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db.write_opt(wb, &opts).map_err(storage_error)
    }

    fn snapshot(&self) -> Box<dyn Snapshot> {
        Box::new(RocksSnapshot::new(self.db.clone(), |db| db.snapshot()))
    }
}

type DbSnapshot<'a> = rocksdb::Snapshot<'a>;

self_cell!(
    /// A RocksDB snapshot that keeps its database open.
    struct RocksSnapshot {
        owner: Arc<DB>,
        #[covariant]
        dependent: DbSnapshot,
    }
);

impl Reader for RocksSnapshot {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let db = self.borrow_owner();
        self.borrow_dependent()
            .get_cf_opt(cf(db, space)?, key, ReadOptions::default())
            .map_err(storage_error)
    }

    fn iter(
        &self,
        space: Space,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> Result<Box<dyn EngineIterator + '_>> {
        let db = self.borrow_owner();
        let it = self
            .borrow_dependent()
            .raw_iterator_cf_opt(cf(db, space)?, read_options(lower, upper));
        Ok(Box::new(RocksIter(it)))
    }
}

/// RocksDB's raw iterator, with its status checked after every move.
struct RocksIter<'a>(DBRawIteratorWithThreadMode<'a, DB>);

impl RocksIter<'_> {
    fn checked(&self) -> Result<()> {
        self.0.status().map_err(storage_error)
    }
}

impl EngineIterator for RocksIter<'_> {
    fn seek(&mut self, key: &[u8]) -> Result<()> {
        self.0.seek(key);
        self.checked()
    }

    fn seek_for_prev(&mut self, key: &[u8]) -> Result<()> {
        self.0.seek_for_prev(key);
        self.checked()
    }

    fn seek_to_first(&mut self) -> Result<()> {
        self.0.seek_to_first();
        self.checked()
    }

    fn seek_to_last(&mut self) -> Result<()> {
        self.0.seek_to_last();
        self.checked()
    }

    fn next(&mut self) -> Result<()> {
        if self.0.valid() {
            self.0.next();
        }
        self.checked()
    }

    fn prev(&mut self) -> Result<()> {
        if self.0.valid() {
            self.0.prev();
        }
        self.checked()
    }

    fn current(&self) -> Option<(&[u8], &[u8])> {
        self.0.item()
    }
}
