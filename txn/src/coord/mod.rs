//! The transaction coordinator: what a client-side transaction does to every batch it
//! sends, as an ordered stack of interceptors.
//!
//! ```text
//!   Txn::get/put/scan/commit
//!     │
//!     ▼ 1. heartbeater   picks the anchor (the first key written) and keeps the
//!     │                  transaction record alive while intents may exist
//!     ▼ 2. sequencer     numbers the requests, so reads see exactly the writes before
//!     │                  them and replayed writes are recognised
//!     ▼ 3. write tracker remembers every span written (the lock spans), before the
//!     │                  batch is sent: even a failed or ambiguous batch may have
//!     │                  left intents there, which EndTxn must clean up
//!     ▼ 4. refresher     remembers every span read; when the transaction's timestamp
//!     │                  must move (an uncertain value, a push, a newer version), checks
//!     │                  that those reads still hold at the new timestamp, instead of
//!     │                  restarting
//!     ▼ 5. committer     EndTxn with the last writes: one command when everything is in
//!     │                  the anchor's range; otherwise a parallel commit (STAGING, see
//!     │                  below); the other ranges' intents are resolved afterwards, off
//!     │                  the commit path
//!     ▼
//!   DistSender
//! ```
//!
//! The order matters: the anchor must exist before the first write is numbered and
//! sent (the write's intent names it); lock spans are recorded before sending (3 before
//! the send) while read spans are recorded only after a read succeeds (4 after it); and
//! the refresher sits below the others so that the batch it re-sends after a refresh
//! keeps its sequence numbers (a re-sent write is then a replay, not a second write).
//!
//! # STAGING
//!
//! A parallel commit sends the EndTxn together with the transaction's last writes,
//! naming them (the in-flight writes). Its record becomes STAGING at the commit
//! timestamp `T`, and the transaction is committed at the moment the last in-flight
//! write is durable at or below `T`: nobody has to write COMMITTED for that to be true,
//! so the commit takes one consensus round. The coordinator sees it from the answers and
//! acknowledges; then it makes it explicit (COMMITTED) in the background. If a write
//! landed above `T` (pushed), the transaction is not committed; the coordinator
//! refreshes and commits explicitly at the higher timestamp.
//!
//! HAZARD: recovery of an abandoned STAGING record relies on a QueryIntent that finds a
//! write missing leaving a read at `T` in the timestamp cache of that key's
//! leaseholder, so the write cannot land at or below `T` afterwards. A lease change
//! keeps that true only because a new lease's timestamp cache starts above the clock
//! plus the maximum offset (above `T`).
//!
//! Errors the coordinator cannot hide are [`TxnError`]s: a retryable one (SQLSTATE
//! 40001) means the whole transaction must run again; an ambiguous commit (40003)
//! means its outcome is unknown and must not be guessed.

mod heartbeater;
mod refresher;
mod txn;

pub use txn::{Db, Savepoint, StatementStart, Txn};

use cairn_kv::api;

/// Why a transaction operation failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum TxnError {
    /// The transaction must start again (serialization failure, SQLSTATE 40001): it
    /// was aborted by a conflicting transaction or a deadlock breaker, or its reads no
    /// longer hold at the timestamp it must commit at.
    #[error("restart transaction: {reason}")]
    Retry { cause: RetryReason, reason: String },
    /// The commit's outcome is unknown (SQLSTATE 40003): the transaction may or may not
    /// have committed.
    #[error("result is ambiguous: {0}")]
    Ambiguous(String),
    /// The transaction already finished; nothing more can be done in it.
    #[error("transaction already {0}")]
    Finished(&'static str),
    /// Anything else from KV (unavailable ranges, failed conditions, bad requests).
    #[error(transparent)]
    Kv(#[from] api::Error),
}

/// Why a transaction must restart, for metrics (the error's text says more).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryReason {
    /// Its reads no longer hold at the timestamp it must commit at: a newer write, or
    /// a write-skew (a refresh failed).
    ReadsInvalidated,
    /// A conflicting transaction or the deadlock breaker aborted it.
    Aborted,
    /// It waited too long behind a conflicting transaction's intent.
    ConflictTimeout,
    /// One of its writes has an unknown outcome.
    AmbiguousWrite,
    /// It rolled back to a savepoint taken before an earlier restart.
    Savepoint,
}

impl RetryReason {
    pub const ALL: [RetryReason; 5] = [
        RetryReason::ReadsInvalidated,
        RetryReason::Aborted,
        RetryReason::ConflictTimeout,
        RetryReason::AmbiguousWrite,
        RetryReason::Savepoint,
    ];

    /// The reason as a metric label.
    pub fn label(&self) -> &'static str {
        match self {
            RetryReason::ReadsInvalidated => "reads_invalidated",
            RetryReason::Aborted => "aborted",
            RetryReason::ConflictTimeout => "conflict_timeout",
            RetryReason::AmbiguousWrite => "ambiguous_write",
            RetryReason::Savepoint => "savepoint",
        }
    }
}

/// A node's transaction counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct TxnMetrics {
    /// Transactions committed (read-only ones too).
    pub commits: std::sync::atomic::AtomicU64,
    /// Transactions rolled back: by their client, after an error, or to start again
    /// as a new transaction after a conflicting one aborted them.
    pub aborts: std::sync::atomic::AtomicU64,
    /// Retryable errors, by [`RetryReason`] (in [`RetryReason::ALL`]'s order): each
    /// restarts its transaction, in the server or at the client (SQLSTATE 40001).
    pub restarts: [std::sync::atomic::AtomicU64; 5],
}

impl TxnError {
    /// Whether running the transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, TxnError::Retry { .. })
    }
}
