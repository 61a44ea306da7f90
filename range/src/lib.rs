//! A replica of a range and the Store that holds all replicas of a node.
//!
//! Bottom-up:
//!
//! - [`log_writer`]: the store's group commit of Raft log writes across ranges.
//! - [`raft`]: one range's openraft group (log, state machine, network); the only
//!   module that names openraft.
//! - [`eval`]: one file per KV command, evaluated into a write batch.
//! - [`concurrency`]: pushing and waiting for transactions whose intents block a
//!   request.
//! - [`lock_table`]: requests queued per key behind intents.
//! - [`latch`]: serialising conflicting requests from evaluation to application.
//! - [`replica`]: a request's path through one replica: key check, lease, latches,
//!   evaluation, replication.
//! - [`split`]: splitting a range in two; [`merge`]: merging two back into one.
//! - [`tscache`]: the timestamp cache: the highest timestamp that read each span.
//! - [`txn_wait`]: pushers waiting for pending transactions; deadlock detection.
//! - [`store`]: all replicas of a node, routing, bootstrap, up-replication.

pub mod allocator;
pub mod concurrency;
pub mod consistency;
pub mod eval;
pub mod latch;
pub mod lock_table;
pub mod log_writer;
pub mod merge;
pub mod raft;
pub mod replica;
pub mod settings;
pub mod split;
pub mod split_queue;
pub mod store;
pub mod tscache;
pub mod txn_wait;

pub use replica::Replica;
pub use store::{Store, StoreConfig, StoreError};

#[cfg(test)]
mod concurrency_tests;
#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;
