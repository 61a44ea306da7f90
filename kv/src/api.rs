//! The KV batch API: what the layers above send to a range, and what comes back.
//!
//! A [`BatchRequest`] holds requests for one range, in order, under one [`Header`]
//! (which range, at which timestamp, in which transaction). The leaseholder evaluates
//! them together: reads against its data, writes into one Raft command. The answer is a
//! [`BatchResponse`] with one [`Response`] per request, or one [`Error`] for the batch.
//!
//! A [`Sender`] delivers batches. The local store and the RPC client to a remote node
//! both implement it, so everything above runs the same in one process and across the
//! network.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use serde::{Deserialize, Serialize};

use crate::hlc::Timestamp;
use crate::ids::{NodeId, RangeId};
use crate::keys::{Span, pretty};
use crate::mvcc::TxnMeta;

/// A replica's id within its range's Raft group. Never reused within a range (Raft
/// requires that an id name one log for the group's whole life).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ReplicaId(pub u64);

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Whether a replica votes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReplicaKind {
    Voter,
    /// Receives the log but does not vote: a replica being brought up to date.
    Learner,
}

/// One replica of a range: which node holds it, under which id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaDescriptor {
    pub node_id: NodeId,
    pub replica_id: ReplicaId,
    pub kind: ReplicaKind,
}

/// A range: its span of the key space and its replicas.
///
/// Invariants:
/// - `start_key < end_key`;
/// - replica ids are unique and all below `next_replica_id`;
/// - at most one replica per node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeDescriptor {
    pub range_id: RangeId,
    pub start_key: Vec<u8>,
    pub end_key: Vec<u8>,
    pub replicas: Vec<ReplicaDescriptor>,
    /// The id the next added replica gets.
    pub next_replica_id: ReplicaId,
    /// Incremented by every split, merge or replica change.
    pub generation: u64,
    /// Until when (HLC wall time, nanoseconds) the split that made this range start at
    /// `start_key` is kept: the merge queue leaves it alone until then. 0: not at all
    /// (a split for size); [`STICKY_FOREVER`]: a split asked for by a user or a new
    /// table.
    pub sticky_until: u64,
}

/// [`RangeDescriptor::sticky_until`] of a split that is never merged away.
pub const STICKY_FOREVER: u64 = u64::MAX;

impl RangeDescriptor {
    /// Whether the split at this range's start is kept at wall time `now` (nanoseconds).
    pub fn is_sticky(&self, now: u64) -> bool {
        self.sticky_until > now
    }

    /// Whether `key` (an address, see [`crate::keys::addr`]) lies in the range.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.start_key.as_slice() <= key && key < self.end_key.as_slice()
    }

    /// Whether all of `span` lies in the range.
    pub fn contains_span(&self, span: &Span) -> bool {
        self.start_key <= span.start && span.end <= self.end_key
    }

    /// The range's span.
    pub fn span(&self) -> Span {
        Span::new(self.start_key.clone(), self.end_key.clone())
    }

    /// The replica on `node`, if any.
    pub fn replica_on(&self, node: NodeId) -> Option<&ReplicaDescriptor> {
        self.replicas.iter().find(|r| r.node_id == node)
    }

    /// The replica with id `id`, if any.
    pub fn replica(&self, id: ReplicaId) -> Option<&ReplicaDescriptor> {
        self.replicas.iter().find(|r| r.replica_id == id)
    }

    /// The voting replicas.
    pub fn voters(&self) -> impl Iterator<Item = &ReplicaDescriptor> {
        self.replicas
            .iter()
            .filter(|r| r.kind == ReplicaKind::Voter)
    }
}

impl fmt::Display for RangeDescriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:[{}, {})",
            self.range_id,
            pretty(&self.start_key),
            pretty(&self.end_key)
        )
    }
}

/// How often a transaction's coordinator heartbeats its record.
pub const TXN_HEARTBEAT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

/// A pending transaction whose record has not been heartbeated for this long (or, with
/// no record, that started this long ago) is abandoned: any conflicting transaction may
/// abort it.
pub const TXN_LIVENESS_THRESHOLD: std::time::Duration = std::time::Duration::from_millis(2500);

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnStatus {
    Pending,
    /// Parallel commit under way: the transaction is committed if, and only if, every
    /// write in the record's `in_flight` list holds an intent at or below the record's
    /// timestamp (see the `STAGING` paragraph of `txn::coord`).
    Staging,
    /// The commit point: the record says COMMITTED, so every intent commits.
    Committed,
    Aborted,
}

/// A transaction record: stored (unversioned) at the transaction's range-local record
/// key, anchored at its first written key.
///
/// Invariants:
/// - a record goes `Pending` → (`Staging` →) `Committed` or `Aborted`, and never
///   changes after that;
/// - `meta.write_ts` only grows while `Pending` or `Staging`;
/// - `in_flight` is empty unless `Staging`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnRecord {
    pub meta: TxnMeta,
    pub status: TxnStatus,
    /// The coordinator's clock at its last heartbeat.
    pub last_heartbeat: Timestamp,
    /// Where the transaction's intents are, outside the record's own range, once it
    /// has finished (for whoever cleans up after it).
    pub lock_spans: Vec<Span>,
    /// While `Staging`: the writes (key, sequence number) sent with the commit, on other
    /// ranges, whose intents decide whether the transaction committed.
    pub in_flight: Vec<(Vec<u8>, u32)>,
}

impl TxnRecord {
    /// Whether the transaction has not been heard from for longer than
    /// [`TXN_LIVENESS_THRESHOLD`] as of `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        matches!(self.status, TxnStatus::Pending | TxnStatus::Staging)
            && self.last_heartbeat.add_duration(TXN_LIVENESS_THRESHOLD) < now
    }
}

/// What a push asks of the pushee.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushKind {
    /// Move the pushee's timestamp above `push_to` (a reader meeting its intent).
    Timestamp,
    /// Abort the pushee (a writer meeting its intent, or a deadlock breaker).
    Abort,
}

/// What applies to every request of a batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The range the batch is for.
    pub range_id: RangeId,
    /// The timestamp to read and write at. Zero lets the leaseholder pick its clock's
    /// current reading (non-transactional requests only).
    pub timestamp: Timestamp,
    /// Versions in (`timestamp`, `uncertainty_limit`] make reads restart. Zero: none.
    pub uncertainty_limit: Timestamp,
    /// The transaction, for transactional requests: writes become its intents, reads
    /// see its own writes.
    pub txn: Option<TxnMeta>,
    /// Clock readings the transaction took from nodes it has been to. A value a node's
    /// leaseholder wrote above the reading it gave was written after the transaction
    /// started, so on that node the uncertainty interval ends at the reading.
    pub observed: Vec<(NodeId, Timestamp)>,
    /// Reads that are about to be written back (the rows an UPDATE or DELETE changes):
    /// any committed version above the timestamp counts as uncertain, so the
    /// transaction moves up to it (refreshing its earlier reads) and reads the newest
    /// value, instead of reading an older one and failing its commit-time refresh.
    pub locking: bool,
}

/// One operation of a batch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Get {
        key: Vec<u8>,
    },
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Put only if the current value equals `expected` (`None`: no value).
    ConditionalPut {
        key: Vec<u8>,
        value: Vec<u8>,
        expected: Option<Vec<u8>>,
    },
    /// Adds `delta` to the integer (8 bytes, big-endian) stored at `key` (absent: 0)
    /// and returns the new value. Non-transactional only.
    Increment {
        key: Vec<u8>,
        delta: i64,
    },
    Delete {
        key: Vec<u8>,
    },
    /// At most `max_keys` keys of `span` in ascending order (0: no limit).
    Scan {
        span: Span,
        max_keys: u64,
    },
    /// At most `max_keys` keys of `span` in descending order (0: no limit).
    ReverseScan {
        span: Span,
        max_keys: u64,
    },
    /// Deletes every key in `span`.
    DeleteRange {
        span: Span,
    },
    /// Writes an unversioned value (range descriptors in the meta range, ...).
    /// Non-transactional only.
    PutInline {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// Writes `desc` as the meta entry at its end key (an inline value), unless the
    /// entry there is of a newer generation: a split or change of those keys that
    /// happened after `desc`. So a range's leaseholder can always (re)write its own
    /// entry, and a stale one cannot undo a newer entry. Entries of older generations
    /// inside `desc`'s span (ranges it has merged) are deleted. Non-transactional only.
    UpdateMeta {
        desc: RangeDescriptor,
    },
    /// Ends the transaction of the batch's header, anchored at `key`: commits it at its
    /// write timestamp, or aborts it. Intents in `lock_spans` that lie in this range are
    /// resolved by the same command; the others are left for the coordinator (and are
    /// recorded in the transaction record).
    ///
    /// With `in_flight` (writes sent in parallel with this request, as (key, sequence
    /// number)), a commit is a parallel commit: the writes that lie in this range are in
    /// the same batch, so their fate is this command's; if others remain, the record
    /// becomes STAGING with them instead of COMMITTED.
    EndTxn {
        key: Vec<u8>,
        commit: bool,
        lock_spans: Vec<Span>,
        in_flight: Vec<(Vec<u8>, u32)>,
    },
    /// Creates or refreshes the record of the header's transaction, anchored at `key`.
    HeartbeatTxn {
        key: Vec<u8>,
    },
    /// Asks the record of `pushee` (anchored at `key`) to let the header's transaction
    /// (if any) through: abort the pushee, or move its timestamp above `push_to`.
    /// Succeeds if the pushee has finished, is abandoned, has a lower priority, or
    /// `force` is set (a deadlock is being broken).
    PushTxn {
        key: Vec<u8>,
        pushee: TxnMeta,
        push_to: Timestamp,
        kind: PushKind,
        force: bool,
    },
    /// The record of `txn` (anchored at `key`), and the transactions waiting for it.
    QueryTxn {
        key: Vec<u8>,
        txn: crate::ids::TxnId,
    },
    /// Resolves `txn`'s intent on `key`: commits it at `txn.write_ts`, removes it, or
    /// moves it up to `txn.write_ts` (pending).
    ResolveIntent {
        key: Vec<u8>,
        txn: TxnMeta,
        status: TxnStatus,
    },
    /// Resolves `txn`'s intents in `span`.
    ResolveIntentRange {
        span: Span,
        txn: TxnMeta,
        status: TxnStatus,
    },
    /// Does `txn` hold an intent on `key` written at sequence `txn.seq` or later, at or
    /// below `txn.write_ts`? Evaluated at the header timestamp (`txn.write_ts`) as a
    /// read, so a write of it arriving later lands above that timestamp: once an intent
    /// is found missing, it stays missing (what recovery of a STAGING record relies on).
    QueryIntent {
        key: Vec<u8>,
        txn: TxnMeta,
    },
    /// Settles a STAGING record (anchored at `key`) found abandoned: COMMITTED if the
    /// recoverer found every in-flight write, ABORTED if not. Refused if the record is no
    /// longer the one examined (`txn`'s epoch and timestamp).
    RecoverTxn {
        key: Vec<u8>,
        txn: TxnMeta,
        committed: bool,
    },
    /// Checks that nothing in `span` was written in (`from`, header timestamp] by anyone
    /// else, so the transaction's reads there still hold at the header timestamp.
    Refresh {
        span: Span,
        from: Timestamp,
    },
    /// Splits the range holding `split_key` into `[start, split_key)` and
    /// `[split_key, end)`. Must be alone in its batch.
    AdminSplit {
        split_key: Vec<u8>,
    },
    /// Merges the range holding `key` with its right-hand neighbour, if they are on the
    /// same nodes (whatever their size, load or stickiness). Must be alone in its
    /// batch. See `range::merge`.
    AdminMerge {
        key: Vec<u8>,
    },
    /// Sent by the leaseholder of `left` to its right-hand neighbour (the range starting
    /// at `left.end_key`): stop serving, for `left` to take over the keys. Refused
    /// unless the two ranges are on the same nodes and, without `force`, the neighbour
    /// is small and cold enough (`left_bytes` plus its own size at most `max_bytes`,
    /// its requests per second at most `max_qps`) and not sticky. Once frozen the
    /// neighbour serves nothing until `left` has merged it, or the merge is abandoned.
    Subsume {
        left: RangeDescriptor,
        left_bytes: u64,
        max_bytes: u64,
        max_qps: u64,
        force: bool,
    },
    /// Sent by a frozen range (`right`) that has waited too long, to the range holding
    /// `key` (the start of the range it was frozen for): has it merged `right`? If it
    /// has not, it makes sure it never will (by moving its descriptor to a new
    /// generation, which a merge evaluated before is refused against).
    ResolveMerge {
        key: Vec<u8>,
        right: RangeDescriptor,
    },
    /// Starts a consistency check of the range holding `key`: every replica hashes the
    /// range's data at one log index (see `range::consistency`). Must be alone in its
    /// batch.
    ComputeChecksum {
        key: Vec<u8>,
    },
}

impl Request {
    /// Whether the request writes.
    pub fn is_write(&self) -> bool {
        match self {
            Request::Get { .. } | Request::Scan { .. } | Request::ReverseScan { .. } => false,
            Request::Put { .. }
            | Request::ConditionalPut { .. }
            | Request::Increment { .. }
            | Request::Delete { .. }
            | Request::DeleteRange { .. }
            | Request::PutInline { .. }
            | Request::UpdateMeta { .. }
            | Request::AdminSplit { .. }
            | Request::AdminMerge { .. }
            | Request::Subsume { .. }
            | Request::ResolveMerge { .. }
            | Request::ComputeChecksum { .. }
            | Request::EndTxn { .. }
            | Request::HeartbeatTxn { .. }
            | Request::PushTxn { .. }
            | Request::ResolveIntent { .. }
            | Request::ResolveIntentRange { .. }
            | Request::RecoverTxn { .. } => true,
            Request::QueryTxn { .. } | Request::Refresh { .. } | Request::QueryIntent { .. } => {
                false
            }
        }
    }

    /// Whether the request reads the range's data at the batch's timestamp (and so
    /// leaves its mark in the timestamp cache).
    pub fn is_read(&self) -> bool {
        matches!(
            self,
            Request::Get { .. }
                | Request::Scan { .. }
                | Request::ReverseScan { .. }
                | Request::ConditionalPut { .. }
                | Request::Increment { .. }
                | Request::DeleteRange { .. }
                | Request::Refresh { .. }
                | Request::QueryIntent { .. }
        )
    }

    /// Whether the request writes user data at the batch's timestamp (and so must be
    /// pushed above reads in the timestamp cache).
    pub fn writes_data(&self) -> bool {
        matches!(
            self,
            Request::Put { .. }
                | Request::ConditionalPut { .. }
                | Request::Increment { .. }
                | Request::Delete { .. }
                | Request::DeleteRange { .. }
        )
    }

    /// Whether the request is an administrative command, served by the replica itself
    /// rather than evaluated against data.
    pub fn is_admin(&self) -> bool {
        matches!(
            self,
            Request::AdminSplit { .. }
                | Request::AdminMerge { .. }
                | Request::Subsume { .. }
                | Request::ResolveMerge { .. }
                | Request::ComputeChecksum { .. }
        )
    }

    /// The keys the request touches, as a span.
    pub fn span(&self) -> Span {
        match self {
            Request::Get { key }
            | Request::Put { key, .. }
            | Request::ConditionalPut { key, .. }
            | Request::Increment { key, .. }
            | Request::Delete { key }
            | Request::PutInline { key, .. }
            | Request::AdminSplit { split_key: key }
            | Request::AdminMerge { key }
            | Request::ResolveMerge { key, .. }
            | Request::ComputeChecksum { key }
            | Request::EndTxn { key, .. }
            | Request::HeartbeatTxn { key }
            | Request::PushTxn { key, .. }
            | Request::QueryTxn { key, .. }
            | Request::ResolveIntent { key, .. }
            | Request::QueryIntent { key, .. }
            | Request::RecoverTxn { key, .. } => Span::new(key.clone(), crate::keys::next_key(key)),
            // Its own entry, and the entries of the ranges it has merged (see UpdateMeta).
            Request::UpdateMeta { desc } => Span::new(
                crate::keys::next_key(&crate::keys::meta_key(&desc.start_key)),
                crate::keys::next_key(&crate::keys::meta_key(&desc.end_key)),
            ),
            Request::Subsume { left, .. } => {
                Span::new(left.end_key.clone(), crate::keys::next_key(&left.end_key))
            }
            Request::Scan { span, .. }
            | Request::ReverseScan { span, .. }
            | Request::DeleteRange { span }
            | Request::ResolveIntentRange { span, .. }
            | Request::Refresh { span, .. } => span.clone(),
        }
    }
}

/// The result of one request, in the same position as the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    Get {
        value: Option<Vec<u8>>,
    },
    Put,
    ConditionalPut,
    Increment {
        new_value: i64,
    },
    Delete,
    Scan {
        kvs: Vec<(Vec<u8>, Vec<u8>)>,
        resume_span: Option<Span>,
    },
    ReverseScan {
        kvs: Vec<(Vec<u8>, Vec<u8>)>,
        resume_span: Option<Span>,
    },
    /// The keys deleted, and what is left of the span (empty when it is done).
    DeleteRange {
        deleted: Vec<Vec<u8>>,
        resume: Vec<Span>,
    },
    PutInline,
    /// Whether the entry was written (false: a newer one was there).
    UpdateMeta {
        written: bool,
    },
    EndTxn {
        record: TxnRecord,
    },
    HeartbeatTxn {
        record: TxnRecord,
    },
    PushTxn {
        pushee: TxnRecord,
    },
    QueryTxn {
        record: Option<TxnRecord>,
        /// Transactions waiting (directly or through others) for this one.
        waiting: Vec<crate::ids::TxnId>,
    },
    ResolveIntent,
    /// What is left to resolve: empty when the span is done.
    ResolveIntentRange {
        resume: Vec<Span>,
    },
    QueryIntent {
        found: bool,
    },
    RecoverTxn {
        record: TxnRecord,
    },
    Refresh,
    AdminSplit {
        left: RangeDescriptor,
        right: RangeDescriptor,
    },
    /// The range as it is after the merge.
    AdminMerge {
        merged: RangeDescriptor,
    },
    /// The check's id, and the log index at which every replica of `range` hashes it.
    ComputeChecksum {
        range: RangeDescriptor,
        id: u64,
        index: u64,
    },
    /// The frozen range: its descriptor, the log index of its freeze, its clock when it
    /// froze and the reads it served above that, which the merged range must stay above.
    Subsume {
        right: RangeDescriptor,
        freeze_index: u64,
        freeze_ts: Timestamp,
        reads: Vec<(Span, Timestamp)>,
    },
    /// Whether the range merged the frozen one (false: it never will).
    ResolveMerge {
        merged: bool,
    },
}

/// Requests for one range, evaluated together.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRequest {
    pub header: Header,
    pub requests: Vec<Request>,
}

impl BatchRequest {
    pub fn new(range_id: RangeId, requests: Vec<Request>) -> Self {
        BatchRequest {
            header: Header {
                range_id,
                ..Header::default()
            },
            requests,
        }
    }

    /// Whether any request writes.
    pub fn is_write(&self) -> bool {
        self.requests.iter().any(Request::is_write)
    }
}

/// The answer to a [`BatchRequest`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResponse {
    pub responses: Vec<Response>,
    /// The timestamp the batch was evaluated at (it can be above the requested one for
    /// non-transactional writes that met a newer version).
    pub timestamp: Timestamp,
    /// For a transactional batch: the transaction as the range left it (its write
    /// timestamp moves up when its writes had to go above reads or newer versions).
    pub txn: Option<TxnMeta>,
    /// The serving nodes' clock readings (see [`Header::observed`]).
    pub observed: Vec<(NodeId, Timestamp)>,
}

/// Why a batch failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum Error {
    /// The replica that got the batch does not hold the range lease. `leaseholder` is the
    /// current one, if known: send there.
    #[error("{range_id}: not leaseholder{}", match leaseholder { Some(l) => format!(", try {} (replica {})", l.node_id, l.replica_id), None => String::new() })]
    NotLeaseholder {
        range_id: RangeId,
        leaseholder: Option<ReplicaDescriptor>,
    },
    /// The batch's keys are not (all) in the range it was sent to: the sender's range
    /// cache is stale. `current` is what this store knows of the range that was asked
    /// for, if it still has it.
    #[error("{range_id}: keys {span} not in range{}", match current { Some(d) => format!(" (it is now {d})"), None => String::new() })]
    RangeKeyMismatch {
        range_id: RangeId,
        span: Span,
        current: Option<Box<RangeDescriptor>>,
    },
    /// This node has no replica of the range.
    #[error("{range_id}: range not found on {node_id}")]
    RangeNotFound { range_id: RangeId, node_id: NodeId },
    /// The range cannot serve right now: no quorum, no leader, or a replica that
    /// stopped. The batch was not applied.
    #[error("{range_id}: range unavailable: {reason}")]
    RangeUnavailable { range_id: RangeId, reason: String },
    /// A write was proposed but its outcome is not known (the deadline passed, or the
    /// leader changed before it committed). It may or may not have been applied.
    #[error("{range_id}: result is ambiguous: {reason}")]
    AmbiguousResult { range_id: RangeId, reason: String },
    /// The node could not be reached.
    #[error("{node_id} unreachable: {reason}")]
    NodeUnreachable { node_id: NodeId, reason: String },
    /// Evaluating the batch failed (conflicts, corruption, bad arguments).
    #[error(transparent)]
    Kv(#[from] crate::Error),
    /// The request is malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A merge was not made (the ranges are not colocated, too large, sticky, a
    /// replica is behind, ...); nothing changed. Not retried by the sender: the merge
    /// queue tries again later.
    #[error("{range_id}: merge refused: {reason}")]
    MergeRefused { range_id: RangeId, reason: String },
}

/// A boxed, sendable future: what [`Sender::send`] returns, so the trait can be used as
/// a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Delivers batches to ranges: the local store, or a remote node through RPC.
pub trait Sender: Send + Sync {
    fn send(&self, batch: BatchRequest) -> BoxFuture<'_, Result<BatchResponse, Error>>;
}
