//! Keys, HLC timestamps and MVCC storage: the ordered, versioned key space under Cairn.
//!
//! Read bottom-up:
//!
//! - [`storage`]: the [`storage::Engine`] trait (ordered byte keys in separate key spaces,
//!   atomic write batches, snapshots) with an in-memory engine for tests and, behind the
//!   `rocksdb` cargo feature, the RocksDB engine a node runs on.
//! - [`hlc`]: hybrid logical clock timestamps and the clock that hands them out.
//! - [`keys`]: the layout of the key space (local, meta, system and table keys) and the
//!   order-preserving encoding of SQL values into keys.
//! - [`mvcc`]: versions of each key at HLC timestamps, provisional writes (intents) of
//!   transactions, reads at a timestamp, and garbage collection of old versions.
//!
//! Nothing here knows about the network, Raft or SQL.

pub mod api;
pub mod checksum;
pub mod error;
pub mod hlc;
pub mod ids;
pub mod keys;
pub mod mvcc;
pub mod storage;

pub use error::{Error, Result};
pub use hlc::Timestamp;
pub use ids::{NodeId, RangeId, TxnId};
