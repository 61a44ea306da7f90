//! The kv layer's one error type.

use std::time::Duration;

use crate::hlc::Timestamp;
use crate::ids::TxnId;
use crate::keys::pretty;
use crate::mvcc::Intent;

pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong below the Raft layer.
///
/// The MVCC conflict variants (`WriteIntent`, `ReadWithinUncertainty`, `WriteTooOld`,
/// `ConditionFailed`) are results of evaluating a request against data: the same request
/// against the same data fails the same way on every replica. The others depend on the
/// machine ([`Error::is_deterministic`]).
#[derive(Clone, Debug, PartialEq, thiserror::Error, serde::Serialize, serde::Deserialize)]
pub enum Error {
    /// The storage engine failed (IO error, engine closed, ...).
    #[error("storage engine: {0}")]
    Storage(String),

    /// A stored value failed its checksum or could not be decoded: the data on this
    /// replica is damaged. Never returned as data.
    #[error("corrupt value at key {}: {detail}", pretty(key))]
    Corruption { key: Vec<u8>, detail: String },

    /// Bytes that should hold an encoded key, timestamp or value do not.
    #[error("malformed encoding: {0}")]
    Decode(String),

    /// A request that cannot be evaluated as given (an empty span, a zero timestamp
    /// where one is required, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// The operation met provisional writes of other transactions, which must be
    /// resolved (or waited for) before it can proceed.
    #[error("conflicting intent on key {} of txn {}{}",
        intents.first().map(|i| pretty(&i.key)).unwrap_or_default(),
        intents.first().map(|i| format!("{:?}", i.txn.id)).unwrap_or_default(),
        if intents.len() > 1 { format!(" (and {} more)", intents.len() - 1) } else { String::new() })]
    WriteIntent { intents: Vec<Intent> },

    /// A read at `read_ts` found a value at `existing_ts` in its uncertainty interval
    /// (`read_ts`, `limit`]: the value may have been written before the read began in
    /// real time, so the reader must restart above `existing_ts`.
    #[error(
        "read at {read_ts} found value at {existing_ts} on key {} within its uncertainty interval (limit {limit})",
        pretty(key)
    )]
    ReadWithinUncertainty {
        key: Vec<u8>,
        read_ts: Timestamp,
        existing_ts: Timestamp,
        limit: Timestamp,
    },

    /// A write at `write_ts` found a committed version at `existing_ts >= write_ts`.
    /// The writer must move to a timestamp above `existing_ts`.
    #[error(
        "write at {write_ts} too old: key {} has a version at {existing_ts}",
        pretty(key)
    )]
    WriteTooOld {
        key: Vec<u8>,
        write_ts: Timestamp,
        existing_ts: Timestamp,
    },

    /// A conditional put found a value other than the expected one.
    #[error("condition failed on key {}: found {}", pretty(key), match actual { Some(v) => format!("{} bytes", v.len()), None => "no value".into() })]
    ConditionFailed {
        key: Vec<u8>,
        actual: Option<Vec<u8>>,
    },

    /// The transaction was aborted (by a conflicting transaction that pushed it, a
    /// deadlock breaker, or its own rollback); nothing it wrote will commit.
    #[error("transaction {txn:?} aborted")]
    TxnAborted { txn: TxnId },

    /// A push could not abort or move the transaction: it is alive and not lower in
    /// priority. The pusher waits and tries again.
    #[error("transaction {pushee:?} is pending and cannot be pushed")]
    TxnPushFailed { pushee: TxnId },

    /// The transaction cannot commit at its timestamp: another transaction pushed it to
    /// `ts`. It must refresh its reads to `ts` (or restart) before committing.
    #[error("transaction {txn:?} was pushed to {ts}")]
    TxnPushed { txn: TxnId, ts: Timestamp },

    /// A refresh found a write in the refreshed span after the transaction's read
    /// timestamp: what the transaction read is no longer current at its new timestamp.
    #[error("refresh failed: key {} was written at {existing_ts}", pretty(key))]
    RefreshFailed {
        key: Vec<u8>,
        existing_ts: Timestamp,
    },

    /// A remote clock reading is further ahead of the local clock than the maximum
    /// offset allows.
    #[error(
        "remote clock reading {remote} is more than {max_offset:?} ahead of local physical time {local_physical}"
    )]
    ClockOffset {
        remote: Timestamp,
        local_physical: u64,
        max_offset: Duration,
    },
}

impl Error {
    /// Whether every replica evaluating the same request against the same data gets
    /// this same error. A non-deterministic error while applying a Raft entry means the
    /// replica can no longer be trusted to match its peers and must stop.
    pub fn is_deterministic(&self) -> bool {
        match self {
            Error::Storage(_) | Error::Corruption { .. } | Error::ClockOffset { .. } => false,
            Error::Decode(_)
            | Error::InvalidArgument(_)
            | Error::WriteIntent { .. }
            | Error::ReadWithinUncertainty { .. }
            | Error::WriteTooOld { .. }
            | Error::ConditionFailed { .. }
            | Error::TxnAborted { .. }
            | Error::TxnPushFailed { .. }
            | Error::TxnPushed { .. }
            | Error::RefreshFailed { .. } => true,
        }
    }

    /// For `WriteTooOld`: the lowest timestamp at which the write can succeed.
    pub fn write_too_old_actual_ts(&self) -> Option<Timestamp> {
        match self {
            Error::WriteTooOld { existing_ts, .. } => Some(existing_ts.next()),
            _ => None,
        }
    }
}
