//! Multi-version concurrency control: every key has versions at HLC timestamps, and at
//! most one provisional write (an intent) of one transaction.
//!
//! # The version grid
//!
//! Take keys `a`..`d` written at timestamps 1..5. Committed versions are `v`, deletions
//! (tombstones) are `×`, and `d` has an intent `I` of a pending transaction whose
//! provisional timestamp is 5:
//!
//! ```text
//!   ts
//!    5                         I (txn T, provisional)
//!    4         ×
//!    3              v3
//!    2    v2   v2'
//!    1    v1                  v1
//!         a    b    c         d
//! ```
//!
//! A read at timestamp `t` returns, for each key, its newest version at or below `t`; a
//! tombstone means "no value". At t=3: `a=v2`, `b=v2'`, `c=v3`, `d=v1`. At t=4: `b` is
//! gone. At t=5 a reader other than T meets T's intent on `d`: it cannot know whether T
//! will commit, so it reports the intent ([`Error::WriteIntent`](crate::Error::WriteIntent)) and the layers above
//! wait for T or push it. T itself reads its own intent.
//!
//! # Uncertainty
//!
//! Clocks differ by up to `max_offset`, so a version at `t' ∈ (t, t + max_offset]` may
//! have been written before a read at `t` began, in real time. A read carries an
//! uncertainty limit; finding a version inside (read ts, limit] is
//! [`Error::ReadWithinUncertainty`](crate::Error::ReadWithinUncertainty), and the reader restarts above that version.
//!
//! # Writes
//!
//! A write at `t` below an existing committed version at `t' >= t` is
//! [`Error::WriteTooOld`](crate::Error::WriteTooOld): history is never rewritten, the writer moves above `t'`. A
//! transaction's write becomes an intent holding the provisional value; resolving the
//! intent either commits it (a version at the commit timestamp, which may be above the
//! provisional one) or removes it.
//!
//! # On disk
//!
//! A user key's entries are adjacent, its intent first, then versions newest first
//! (see [`key`]):
//!
//! ```text
//!   escaped(d)                  -> intent record (txn meta, provisional value)
//!   escaped(d) ++ !ts(1)        -> v1
//! ```
//!
//! Every stored value carries a CRC-32 of its key and body, verified on every read; a
//! mismatch is [`Error::Corruption`](crate::Error::Corruption) naming the key, never data.
//!
//! # Garbage collection
//!
//! Versions that no reader at or above a GC threshold can see are removed: everything
//! below the newest version at or under the threshold, and that version too if it is a
//! tombstone.

pub mod key;
mod read;
pub mod value;
mod write;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use read::{ReadOptions, ScanResult, check_refresh, get, get_intent, scan};
pub use write::{
    GcStats, ReadWriter, ResolveStatus, conditional_put, delete, delete_inline, delete_range, gc,
    gc_range, put, put_inline, resolve_intent, resolve_intent_range,
};

use crate::hlc::Timestamp;
use crate::ids::TxnId;

/// What an intent records about the transaction that wrote it: enough for a conflicting
/// reader or writer to find the transaction's record and decide what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    pub id: TxnId,
    /// The anchor key: the transaction record lives in the range holding this key.
    pub key: Vec<u8>,
    /// Incremented on each restart of the transaction; intents of earlier epochs are
    /// ignored by the transaction itself and discarded at commit.
    pub epoch: u32,
    /// The provisional commit timestamp.
    pub write_ts: Timestamp,
    /// The timestamp the transaction started reading at; its writes are never below it.
    pub min_ts: Timestamp,
    /// Higher priority wins pushes.
    pub priority: u32,
    /// The sequence number of the write within the transaction; reads at a sequence
    /// see only the transaction's own writes up to it.
    pub seq: u32,
    /// Sequence numbers rolled back to a savepoint, as inclusive ranges: the
    /// transaction's writes at these sequences are invisible to its reads and discarded
    /// when it commits.
    pub ignored: Vec<(u32, u32)>,
}

impl TxnMeta {
    /// Whether the transaction's write at `seq` was rolled back.
    pub fn is_ignored(ignored: &[(u32, u32)], seq: u32) -> bool {
        ignored.iter().any(|(lo, hi)| *lo <= seq && seq <= *hi)
    }
}

/// A provisional write found on a key, owned by a transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub key: Vec<u8>,
    pub txn: TxnMeta,
}
