//! The client side of KV: routing by range, retries and the transaction coordinator.
//!
//! - [`range_cache`]: range descriptors read from the meta range, cached by end key,
//!   invalidated when a range answers that it no longer matches.
//! - [`dist_sender`]: sends a batch to the leaseholder of its range, following
//!   leaseholder hints and refreshing the cache on mismatches, within a deadline.
//! - [`coord`]: the transaction coordinator ([`Txn`], [`Db::run`]).

pub mod coord;
pub mod dist_sender;
pub mod range_cache;

pub use coord::{Db, Txn, TxnError};
pub use dist_sender::{DistSender, NodeDialer};
pub use range_cache::RangeCache;
