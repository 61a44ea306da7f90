//! A replica: this store's copy of one range, and the way requests get into it.
//!
//! ```text
//!   BatchRequest
//!     │ 1. keys in the range?            no  -> RangeKeyMismatch (with the descriptor)
//!     │ 2. lease held, state caught up?  no  -> NotLeaseholder (with the leader, if known)
//!     │ 3. latches on the batch's spans (wait for conflicting earlier requests)
//!     │ 4. evaluate every request against the applied state -> responses + write batch
//!     │ 5. writes? propose the batch through Raft, wait until applied
//!     ▼
//!   BatchResponse (latches released)
//! ```
//!
//! Reads are served by the leaseholder from its own state, without a Raft round trip.
//! Every step is bounded by the request timeout: a range without quorum answers
//! `RangeUnavailable` (nothing was proposed) or `AmbiguousResult` (a proposal was made
//! and its fate is unknown) instead of hanging.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::RwLock;

use cairn_kv::api::TxnStatus;
use cairn_kv::api::{self, BatchRequest, BatchResponse, RangeDescriptor, ReplicaId};
use cairn_kv::hlc::Clock;
use cairn_kv::keys::{self, Span};
use cairn_kv::mvcc::TxnMeta;
use cairn_kv::storage::{Engine, IndexedBatch};
use cairn_kv::{NodeId, RangeId, Timestamp};

use crate::eval::{self, EvalContext};
use crate::latch::{LatchManager, LatchSpan};
use crate::lock_table::LockTable;
use crate::raft::{GroupError, GroupStatus, RaftCommand, RaftGroup, ReplicaShared};
use crate::split_queue::RangeLoad;
use crate::store::ClusterSender;
use crate::tscache::TimestampCache;
use crate::txn_wait::TxnWaitQueue;

/// How many times a non-transactional write moves its timestamp up after meeting a newer
/// version before giving up.
const MAX_WRITE_TOO_OLD_RETRIES: usize = 10;

/// Spans the timestamp cache remembers before it forgets the oldest (raising its floor).
const TSCACHE_MAX_ENTRIES: usize = 100_000;

/// The most reads above the clock a lease handoff carries (see `transfer_lease`).
const HANDOFF_MAX_READS: usize = 1000;

/// The term of a range's first election: a range created by a split starts at term 0
/// with no leader.
const FIRST_TERM: u64 = 1;

/// What this replica knows as leaseholder, for the lease (Raft term) it belongs to.
struct LeaseState {
    term: u64,
    /// Above anything a previous leaseholder may have read or written.
    floor: Timestamp,
    cache: TimestampCache,
}

pub struct Replica {
    pub(crate) range_id: RangeId,
    pub(crate) node_id: NodeId,
    group: RaftGroup,
    shared: Arc<ReplicaShared>,
    pub(crate) latches: LatchManager,
    engine: Arc<dyn Engine>,
    pub(crate) clock: Arc<Clock>,
    pub(crate) request_timeout: Duration,
    pub(crate) cluster: ClusterSender,
    /// The other replicas of this replica's store.
    pub(crate) siblings: Weak<RwLock<HashMap<RangeId, Arc<Replica>>>>,
    /// The lease (Raft term) the timestamp cache belongs to, and the cache.
    tscache: parking_lot::Mutex<LeaseState>,
    /// Pushes waiting on transaction records of this range.
    pub(crate) txn_wait: TxnWaitQueue,
    /// Requests waiting for intents on this range's keys.
    pub(crate) lock_table: LockTable,
    /// Size and load, for the split queue.
    pub(crate) load: parking_lot::Mutex<RangeLoad>,
    /// Whether this replica, when it leads, must (re)write its range's meta entry:
    /// set when it starts, when it gets a new lease and when it splits, cleared by the
    /// split queue once the entry is written (see `Store::split_queue_pass`).
    pub(crate) meta_dirty: std::sync::atomic::AtomicBool,
    /// The term whose lease this replica handed away (0: none): it serves nothing more
    /// in that term (see `transfer_lease`).
    lease_retired: std::sync::atomic::AtomicU64,
    /// How a merge asks the right-hand range's replicas how far they applied.
    pub(crate) transport: Arc<dyn crate::raft::RaftTransport>,
    /// Held while the replicate queue changes the range's replicas, and while the range
    /// is being frozen for a merge: a frozen range's replicas do not change.
    pub(crate) replica_changes: tokio::sync::Mutex<()>,
    /// The store's event counts.
    pub(crate) metrics: Arc<crate::store::StoreMetrics>,
}

impl Replica {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        node_id: NodeId,
        group: RaftGroup,
        shared: Arc<ReplicaShared>,
        engine: Arc<dyn Engine>,
        clock: Arc<Clock>,
        request_timeout: Duration,
        cluster: ClusterSender,
        siblings: Weak<RwLock<HashMap<RangeId, Arc<Replica>>>>,
        transport: Arc<dyn crate::raft::RaftTransport>,
        metrics: Arc<crate::store::StoreMetrics>,
    ) -> Self {
        Replica {
            range_id: group.range_id(),
            node_id,
            group,
            shared,
            latches: LatchManager::new(),
            engine,
            clock,
            request_timeout,
            cluster,
            siblings,
            tscache: parking_lot::Mutex::new(LeaseState {
                term: 0,
                floor: Timestamp::MAX,
                cache: TimestampCache::new(Timestamp::MAX, 0),
            }),
            txn_wait: TxnWaitQueue::default(),
            lock_table: LockTable::default(),
            load: parking_lot::Mutex::new(RangeLoad::default()),
            meta_dirty: std::sync::atomic::AtomicBool::new(true),
            lease_retired: std::sync::atomic::AtomicU64::new(0),
            transport,
            replica_changes: tokio::sync::Mutex::new(()),
            metrics,
        }
    }

    /// Starts the timestamp cache of every lease this replica gets at the moment it
    /// gets it (rather than at its first request, which would push writes above a floor
    /// taken later than needed).
    pub(crate) fn watch_leases(self: &Arc<Self>) {
        let mut watch = self.group.leadership_watch();
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            while watch.next().await.is_some() {
                let Some(replica) = me.upgrade() else {
                    return;
                };
                replica
                    .metrics
                    .leader_changes
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                // Once the new term's first entry is applied, so is any handoff of the
                // lease to this replica before it (see `transfer_lease`).
                let applied =
                    tokio::time::timeout(replica.request_timeout, replica.group.lease_read()).await;
                if matches!(applied, Ok(Ok(()))) {
                    drop(replica.lease_state());
                }
            }
        });
    }

    /// This store's replica of `range_id`, if it holds one.
    pub(crate) fn sibling(&self, range_id: RangeId) -> Option<Arc<Replica>> {
        self.siblings.upgrade()?.read().get(&range_id).cloned()
    }

    pub fn range_id(&self) -> RangeId {
        self.range_id
    }

    pub fn replica_id(&self) -> ReplicaId {
        self.group.replica_id()
    }

    /// The range's descriptor as of the last applied command (`None` until this replica
    /// has received its first snapshot or log entries).
    pub fn descriptor(&self) -> Option<RangeDescriptor> {
        self.shared.descriptor()
    }

    /// How many snapshots this replica has installed since it started.
    /// Ranges splits applied here created that the store has not started yet.
    pub fn unstarted_splits(&self) -> Vec<RangeDescriptor> {
        self.shared.unstarted_splits()
    }

    pub(crate) fn split_started(&self, right: RangeId) {
        self.shared.split_started(right);
    }

    /// The range's descriptor, or `RangeNotFound` if this replica has none yet.
    pub(crate) fn current_descriptor(&self) -> Result<RangeDescriptor, api::Error> {
        self.descriptor().ok_or(api::Error::RangeNotFound {
            range_id: self.range_id,
            node_id: self.node_id,
        })
    }

    /// What the replica shares with its state machine.
    pub(crate) fn shared(&self) -> &ReplicaShared {
        &self.shared
    }

    /// The left-hand range this range is frozen for (see [`crate::merge`]), if it is.
    pub fn frozen_for(&self) -> Option<RangeDescriptor> {
        self.shared.frozen().map(|(left, _)| left)
    }

    pub fn snapshots_installed(&self) -> u64 {
        self.shared.snapshots_installed()
    }

    pub fn status(&self) -> GroupStatus {
        self.group.status()
    }

    /// What the split queue knows of the range here: its estimated size in bytes
    /// (`None` until this replica, leading, has measured it) and the requests per
    /// second it served in the last full second.
    pub fn load_stats(&self) -> (Option<u64>, f64) {
        let load = self.load.lock();
        (load.size(), load.qps())
    }

    pub fn group(&self) -> &RaftGroup {
        &self.group
    }

    /// The replica descriptor of the current leader, if known.
    fn leader_hint(
        &self,
        leader: Option<ReplicaId>,
        desc: &RangeDescriptor,
    ) -> Option<api::ReplicaDescriptor> {
        leader.and_then(|l| desc.replica(l).copied())
    }

    pub(crate) fn group_error(
        &self,
        e: GroupError,
        desc: &RangeDescriptor,
        proposed: bool,
    ) -> api::Error {
        let range_id = self.range_id;
        match e {
            GroupError::NotLeader {
                leader,
                lease_expired,
            } => {
                if lease_expired && (leader.is_none() || leader == Some(self.replica_id())) {
                    api::Error::RangeUnavailable {
                        range_id,
                        reason: "the leader's lease expired: no quorum acknowledged it recently"
                            .into(),
                    }
                } else {
                    api::Error::NotLeaseholder {
                        range_id,
                        leaseholder: self.leader_hint(leader, desc),
                    }
                }
            }
            GroupError::Ambiguous(reason) => api::Error::AmbiguousResult { range_id, reason },
            GroupError::Unavailable(reason) | GroupError::Membership(reason) if proposed => {
                api::Error::AmbiguousResult { range_id, reason }
            }
            GroupError::Unavailable(reason) | GroupError::Membership(reason) => {
                api::Error::RangeUnavailable { range_id, reason }
            }
            GroupError::Stopped(reason) if proposed => api::Error::AmbiguousResult {
                range_id,
                reason: format!(
                    "replica on {} stopped with a write in flight: {reason}",
                    self.node_id
                ),
            },
            GroupError::Stopped(reason) => api::Error::RangeUnavailable {
                range_id,
                reason: format!("replica on {} stopped: {reason}", self.node_id),
            },
        }
    }

    /// Checks that every request's keys lie in the range.
    fn check_keys(
        &self,
        batch: &BatchRequest,
        desc: &RangeDescriptor,
    ) -> Result<Vec<LatchSpan>, api::Error> {
        let mut spans = Vec::with_capacity(batch.requests.len());
        for req in &batch.requests {
            let span = req.span();
            if span.is_empty() {
                return Err(api::Error::InvalidRequest(format!("empty span {span}")));
            }
            let start =
                keys::addr(&span.start).map_err(|e| api::Error::InvalidRequest(e.to_string()))?;
            let end = if keys::is_local(&span.end) {
                keys::addr(&span.end).map_err(|e| api::Error::InvalidRequest(e.to_string()))?
            } else {
                span.end.clone()
            };
            if !desc.contains_key(&start) || end > desc.end_key {
                return Err(api::Error::RangeKeyMismatch {
                    range_id: self.range_id,
                    span: Span::new(start, end),
                    current: Some(Box::new(desc.clone())),
                });
            }
            spans.push(LatchSpan {
                span,
                write: req.is_write(),
            });
        }
        Ok(spans)
    }

    /// Serves a batch (see the module doc).
    pub async fn send(&self, batch: BatchRequest) -> Result<BatchResponse, api::Error> {
        let range_id = self.range_id;
        let Some(desc) = self.descriptor() else {
            tracing::debug!(range = %range_id, replica = %self.replica_id(), "request for a replica that has no descriptor yet");
            return Err(api::Error::RangeNotFound {
                range_id,
                node_id: self.node_id,
            });
        };
        let spans = self.check_keys(&batch, &desc)?;
        if batch.requests.iter().any(api::Request::is_admin) {
            return self.serve_admin(batch).await;
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        self.wait_unfrozen(&desc, deadline).await?;
        let timed_out = |what: &str| api::Error::RangeUnavailable {
            range_id,
            reason: format!("timed out after {:?} {what}", self.request_timeout),
        };

        // The lease (term) the request is served under, read before it is checked: if
        // leadership changes while the request waits for latches, it is refused then.
        let lease_term = self.group.current_term();
        match tokio::time::timeout_at(deadline, self.group.lease_read()).await {
            Err(_) => return Err(timed_out("waiting for the lease")),
            Ok(Err(e)) => return Err(self.group_error(e, &desc, false)),
            Ok(Ok(())) => {}
        }
        // Handing the lease away: go to the new holder rather than queue behind it.
        self.check_lease(&desc, lease_term)?;
        self.load
            .lock()
            .record_request(std::time::Instant::now(), global_span(&batch).as_ref());
        if let [api::Request::PushTxn { .. }] = batch.requests.as_slice() {
            return self
                .serve_push(batch, spans, &desc, deadline, lease_term)
                .await;
        }
        loop {
            match self
                .serve_once(&batch, spans.clone(), &desc, deadline, lease_term)
                .await
            {
                Err(api::Error::Kv(cairn_kv::Error::WriteIntent { intents })) => {
                    self.handle_conflicts(&batch, intents, deadline).await?;
                }
                other => return other,
            }
        }
    }

    /// One pass of a batch through latches, evaluation and replication. Meeting another
    /// transaction's intent ends the pass with `WriteIntent` (latches released).
    pub(crate) async fn serve_once(
        &self,
        batch: &BatchRequest,
        spans: Vec<LatchSpan>,
        desc: &RangeDescriptor,
        deadline: tokio::time::Instant,
        lease_term: u64,
    ) -> Result<BatchResponse, api::Error> {
        let range_id = self.range_id;
        let latches = match tokio::time::timeout_at(deadline, self.latches.acquire(spans)).await {
            Ok(g) => g,
            Err(_) => {
                return Err(api::Error::RangeUnavailable {
                    range_id,
                    reason: format!(
                        "timed out after {:?} waiting for conflicting requests",
                        self.request_timeout
                    ),
                });
            }
        };
        // The lease may have moved or been handed away while we waited, or the range
        // frozen for a merge (it serves again on the sender's retry, if the merge does
        // not happen).
        self.check_lease(desc, lease_term)?;
        if self.shared.frozen().is_some() {
            return Err(self.merged_away(desc));
        }
        // The descriptor may have changed while we waited.
        let desc = match self.descriptor() {
            Some(now) if now != *desc => {
                self.check_keys(batch, &now)?;
                now
            }
            _ => desc.clone(),
        };

        let mut ts = if batch.header.timestamp.is_zero() {
            self.clock.now()
        } else {
            batch.header.timestamp
        };
        let mut txn = batch.header.txn.clone();
        let observed = self.clock.now();
        let limit = self.uncertainty_limit(&batch.header);
        self.push_above_reads(batch, &mut ts, txn.as_mut());
        let (mut responses, writes) = self.evaluate(batch, &desc, &mut ts, limit, txn.as_mut())?;
        self.record_reads(batch, ts, txn.as_ref());
        if !writes.is_empty() {
            self.load.lock().record_write(writes.size_bytes() as u64);
            let cmd = RaftCommand {
                batch: writes,
                new_descriptor: None,
                split: None,
                ..RaftCommand::default()
            };
            let proposed = std::time::Instant::now();
            match tokio::time::timeout_at(deadline, self.group.propose(cmd)).await {
                Err(_) => {
                    return Err(api::Error::AmbiguousResult {
                        range_id,
                        reason: format!(
                            "range unavailable: write proposed but not applied within {:?}",
                            self.request_timeout
                        ),
                    });
                }
                Ok(Err(e)) => return Err(self.group_error(e, &desc, true)),
                Ok(Ok(_)) => self
                    .metrics
                    .raft_commit_latency
                    .observe(proposed.elapsed().as_secs_f64()),
            }
        }
        // The writes are applied: later requests may go ahead.
        drop(latches);
        // A write above the clock (pushed over the floor of a new lease's timestamp
        // cache) is acknowledged only once the clock has passed it, so that a read that
        // starts after the acknowledgement reads at a timestamp that sees it.
        if txn.is_none() && batch.is_write() {
            let wait = self.clock.time_until(ts);
            if !wait.is_zero() {
                tokio::time::sleep(wait.min(self.clock.max_offset())).await;
            }
        }
        for (req, resp) in batch.requests.iter().zip(&mut responses) {
            match (req, resp) {
                (_, api::Response::EndTxn { record } | api::Response::RecoverTxn { record }) => {
                    self.txn_wait.record_changed(record.meta.id);
                    if matches!(record.status, TxnStatus::Committed | TxnStatus::Aborted) {
                        // Its intents in this range were resolved by the same command.
                        self.lock_table.release_txn(record.meta.id);
                    }
                }
                (
                    _,
                    api::Response::HeartbeatTxn { record }
                    | api::Response::PushTxn { pushee: record },
                ) => {
                    self.txn_wait.record_changed(record.meta.id);
                }
                (api::Request::QueryTxn { txn, .. }, api::Response::QueryTxn { waiting, .. }) => {
                    *waiting = self.txn_wait.dependents(*txn);
                }
                (
                    api::Request::ResolveIntent { txn, .. }
                    | api::Request::ResolveIntentRange { txn, .. },
                    _,
                ) => self.lock_table.release_txn(txn.id),
                _ => {}
            }
        }
        Ok(BatchResponse {
            responses,
            timestamp: ts,
            txn,
            observed: vec![(self.node_id, observed)],
        })
    }

    /// Refuses to serve unless this replica still holds the lease of `lease_term`, the
    /// one the request was admitted under, and has not handed it away.
    pub(crate) fn check_lease(
        &self,
        desc: &RangeDescriptor,
        lease_term: u64,
    ) -> Result<(), api::Error> {
        let retired = self
            .lease_retired
            .load(std::sync::atomic::Ordering::Acquire);
        if self.group.current_term() == lease_term && retired != lease_term {
            return Ok(());
        }
        let to = self
            .shared
            .handoff()
            .filter(|h| h.term == retired && retired == lease_term)
            .and_then(|h| desc.replica(h.to).copied());
        Err(api::Error::NotLeaseholder {
            range_id: self.range_id,
            leaseholder: to,
        })
    }

    /// Hands this replica's lease to replica `to` without the wait a new lease normally
    /// starts with: the new leaseholder's timestamp cache starts at a time above
    /// everything this one served, instead of `max_offset` ahead of its clock.
    ///
    /// This replica waits for the requests it is serving (it takes every latch of the
    /// range), stops serving in this term, takes the time `start` (its clock, or the
    /// highest read in its timestamp cache if that is later), and replicates a handoff
    /// naming `to` and `start`; then it asks Raft to move leadership to `to`. If `to`
    /// wins the next term, its lease starts at `start`: it applied the handoff before
    /// serving, since a new leader applies everything committed before its term. Any
    /// other outcome (another term, another winner) starts the usual fresh lease. If
    /// leadership does not move, this replica calls an election for a new term of its
    /// own, since it may not serve in this one any more.
    pub async fn transfer_lease(&self, to: ReplicaId) -> Result<(), GroupError> {
        // A leader elected a moment ago may not take proposals yet: hold the lease first.
        tokio::time::timeout(self.request_timeout, self.group.lease_read())
            .await
            .map_err(|_| GroupError::Unavailable("lease transfer: no lease in time".into()))??;
        let status = self.status();
        let desc = self
            .descriptor()
            .ok_or_else(|| GroupError::Unavailable("no descriptor".into()))?;
        if !status.is_leader || to == self.replica_id() || desc.replica(to).is_none() {
            return Err(GroupError::NotLeader {
                leader: status.leader,
                lease_expired: false,
            });
        }
        let term = status.term;
        let everything = vec![
            LatchSpan {
                span: Span::new(desc.start_key.clone(), desc.end_key.clone()),
                write: true,
            },
            LatchSpan {
                span: keys::range_local_span(&desc.start_key, &desc.end_key),
                write: true,
            },
        ];
        let latches = tokio::time::timeout(self.request_timeout, self.latches.acquire(everything))
            .await
            .map_err(|_| {
                GroupError::Unavailable("lease transfer: requests did not drain".into())
            })?;
        if self.group.current_term() != term {
            return Err(GroupError::NotLeader {
                leader: None,
                lease_expired: false,
            });
        }
        self.lease_retired
            .store(term, std::sync::atomic::Ordering::Release);
        let (start, reads) = self.reads_to_hand_over();
        let handoff = RaftCommand {
            lease_handoff: Some(crate::raft::LeaseHandoff {
                term,
                to,
                start,
                reads,
            }),
            ..RaftCommand::default()
        };
        let moved = async {
            match tokio::time::timeout(self.request_timeout, self.group.propose(handoff)).await {
                Err(_) => {
                    return Err(GroupError::Unavailable(
                        "lease handoff not applied in time".into(),
                    ));
                }
                // Refused before it reached the log: nobody can count on it.
                Ok(Err(e @ GroupError::NotLeader { .. })) => {
                    self.lease_retired
                        .store(0, std::sync::atomic::Ordering::Release);
                    return Err(e);
                }
                Ok(Err(e)) => return Err(e),
                Ok(Ok(_)) => {}
            }
            // The target ignores the transfer unless it holds the whole log (the handoff
            // included), and this leader takes no proposals once it asked: wait for it.
            let last = self.group.status().last_log_index;
            let caught_up = self
                .group
                .wait_for(
                    self.request_timeout,
                    "the new leaseholder to catch up",
                    |s| s.matched(to) >= last,
                )
                .await;
            if !caught_up {
                return Err(GroupError::Unavailable(format!(
                    "{to} did not catch up to hand it the lease"
                )));
            }
            self.group.transfer_leader(to).await?;
            let gone = self
                .group
                .wait_for(self.request_timeout, "leadership to move", |s| {
                    s.term != term || !s.is_leader
                })
                .await;
            if gone {
                Ok(())
            } else {
                Err(GroupError::Unavailable(format!(
                    "leadership did not move to {to}"
                )))
            }
        };
        let result = moved.await;
        let retired = || {
            self.lease_retired
                .load(std::sync::atomic::Ordering::Acquire)
                == term
        };
        if result.is_err() && retired() {
            self.take_back_handoff(term, to).await;
        }
        drop(latches);
        result
    }

    /// After a failed transfer, while still leading `term`: takes the handoff back in the
    /// log (naming no replica, so that whoever wins the next term, `to` or this one,
    /// starts a fresh lease above everything served in this one), then serves again. The leader may refuse the proposal for a while (its lease not
    /// yet renewed); if it keeps refusing, leadership is handed on regardless, since a
    /// leader that may not serve in its term must end it (openraft then stops its
    /// heartbeats, and an election follows).
    async fn take_back_handoff(&self, term: u64, to: ReplicaId) {
        let deadline = tokio::time::Instant::now() + self.request_timeout * 2;
        while self.group.current_term() == term && tokio::time::Instant::now() < deadline {
            let cancel = RaftCommand {
                lease_handoff: Some(crate::raft::LeaseHandoff {
                    term,
                    to: ReplicaId(0),
                    start: self.clock.now(),
                    reads: Vec::new(),
                }),
                ..RaftCommand::default()
            };
            if let Ok(Ok(_)) =
                tokio::time::timeout(self.request_timeout, self.group.propose(cancel)).await
            {
                self.lease_retired
                    .store(0, std::sync::atomic::Ordering::Release);
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.group.current_term() == term {
            tracing::warn!(range = %self.range_id, %to, "could not take a failed lease handoff back; ending the term");
            let _ = self.group.transfer_leader(to).await;
        }
    }

    /// Where a successor to this leaseholder's keys (a new leaseholder, or the range
    /// merging this one) must start serving, and the reads this one served above that
    /// (at future timestamps) that it must stay above.
    pub(crate) fn reads_to_hand_over(&self) -> (Timestamp, Vec<(Span, Timestamp)>) {
        let cache = self.tscache();
        let start = self.clock.now().max(cache.low_water());
        match cache.reads_above(start, HANDOFF_MAX_READS) {
            Some(reads) => (start, reads),
            // Too many reads in the future to carry: start above all of them.
            None => {
                let all = Span::new(keys::KEY_MIN.to_vec(), keys::KEY_MAX.to_vec());
                (start.max(cache.max_read(&all).0), Vec::new())
            }
        }
    }

    /// Takes over what another leaseholder served up to `until` (the range this one is
    /// merging, frozen then): its reads go into the timestamp cache, so no write here
    /// lands under them, and the lease's floor moves up to `until`, so a value that
    /// leaseholder wrote (on another node, under a clock reading a transaction did not
    /// observe) counts as uncertain to reads here, whatever this node's reading.
    pub(crate) fn take_over_reads(&self, until: Timestamp, reads: &[(Span, Timestamp)]) {
        let mut lease = self.lease_state();
        lease.floor = lease.floor.max(until);
        for (span, ts) in reads {
            lease.cache.add(span, *ts, None);
        }
    }

    /// The timestamp cache of the current lease: a new lease (a new Raft term) starts
    /// one whose floor is above anything the previous leaseholder can have served.
    fn tscache(&self) -> parking_lot::MappedMutexGuard<'_, TimestampCache> {
        let guard = self.lease_state();
        parking_lot::MutexGuard::map(guard, |l| &mut l.cache)
    }

    fn lease_state(&self) -> parking_lot::MutexGuard<'_, LeaseState> {
        let term = self.group.current_term();
        let mut guard = self.tscache.lock();
        // A state for a later term is one inherited from a split (see `inherit_lease`),
        // waiting for the election it applies to.
        if guard.term < term {
            self.meta_dirty
                .store(true, std::sync::atomic::Ordering::Relaxed);
            // A lease handed to this replica by the previous term's leaseholder starts
            // where that one stopped serving; any other starts max_offset ahead.
            let (floor, reads) = match self.shared.handoff() {
                Some(h) if h.term + 1 == term && h.to == self.replica_id() => (h.start, h.reads),
                _ => (
                    self.clock.now().add_duration(self.clock.max_offset()),
                    Vec::new(),
                ),
            };
            let mut cache = TimestampCache::new(floor, TSCACHE_MAX_ENTRIES);
            for (span, ts) in &reads {
                cache.add(span, *ts, None);
            }
            *guard = LeaseState { term, floor, cache };
        }
        guard
    }

    /// Called on this store's replica of the right-hand range of a split, when this
    /// store's replica of the left-hand range (`left`) leads: if this replica wins the
    /// new range's first election, its lease starts with the left-hand lease's floor and
    /// timestamp cache instead of a floor `max_offset` ahead of the clock, so writes
    /// right after a split are not pushed into the future and made to wait for it.
    ///
    /// This is safe because until the split applied, every read of the moved keys was
    /// served by the left-hand range, and the left-hand leaseholder's cache covers all of
    /// those (older leases' reads are under its floor); after it applied, the left-hand
    /// range refuses them. Winning the first term means no other replica led the new
    /// range before. Any later term starts from a fresh floor as usual.
    pub(crate) fn inherit_lease(&self, left: &Replica) {
        if !left.status().is_leader {
            return;
        }
        let inherited = {
            let l = left.lease_state();
            LeaseState {
                term: FIRST_TERM,
                floor: l.floor,
                cache: l.cache.clone(),
            }
        };
        let mut guard = self.tscache.lock();
        if guard.term < FIRST_TERM && self.group.current_term() <= FIRST_TERM {
            *guard = inherited;
        }
    }

    /// Where the batch's uncertainty interval ends on this node: at the clock reading
    /// the transaction observed here, if it has one (a value written here above it came
    /// after the transaction started), but never below what an earlier leaseholder
    /// elsewhere may have written (the lease's floor).
    pub(crate) fn uncertainty_limit(&self, header: &api::Header) -> Timestamp {
        if header.locking && header.txn.is_some() {
            return Timestamp::MAX;
        }
        let global = header.uncertainty_limit;
        match header.observed.iter().find(|(n, _)| *n == self.node_id) {
            Some((_, seen)) => global.min((*seen).max(self.lease_state().floor)),
            None => global,
        }
    }

    /// Moves the batch's write timestamp above every read of the keys it writes by
    /// others, so no write lands under a read that has been served.
    fn push_above_reads(
        &self,
        batch: &BatchRequest,
        ts: &mut Timestamp,
        txn: Option<&mut TxnMeta>,
    ) {
        let cache = self.tscache();
        let own = txn.as_ref().map(|t| t.id);
        let mut write_ts = txn.as_ref().map_or(*ts, |t| t.write_ts);
        for req in batch.requests.iter().filter(|r| r.writes_data()) {
            let (read_ts, reader) = cache.max_read(&req.span());
            if read_ts >= write_ts && (own.is_none() || reader != own) {
                write_ts = read_ts.next();
            }
        }
        match txn {
            Some(t) => t.write_ts = write_ts,
            None => *ts = write_ts,
        }
    }

    /// Records the batch's reads in the timestamp cache.
    fn record_reads(&self, batch: &BatchRequest, ts: Timestamp, txn: Option<&TxnMeta>) {
        let mut cache = self.tscache();
        for req in batch.requests.iter().filter(|r| r.is_read()) {
            cache.add(&req.span(), ts, txn.map(|t| t.id));
        }
    }

    /// Evaluates the batch at `ts`, moving the write timestamp up (of the transaction,
    /// or `ts` itself outside one) when a write meets a newer version.
    fn evaluate(
        &self,
        batch: &BatchRequest,
        desc: &RangeDescriptor,
        ts: &mut Timestamp,
        uncertainty_limit: Timestamp,
        mut txn: Option<&mut TxnMeta>,
    ) -> Result<(Vec<api::Response>, cairn_kv::storage::WriteBatch), api::Error> {
        let range_span = desc.span();
        let now = self.clock.now();
        let mut attempts = 0;
        loop {
            let base: &dyn cairn_kv::storage::Reader = &*self.engine;
            let mut ib = IndexedBatch::new(base);
            // Request i of a transactional batch runs at the batch's sequence number + i.
            let metas: Vec<Option<TxnMeta>> = (0..batch.requests.len())
                .map(|i| {
                    txn.as_deref().map(|t| TxnMeta {
                        seq: t.seq + u32::try_from(i).unwrap_or(u32::MAX),
                        ..t.clone()
                    })
                })
                .collect();
            let result: cairn_kv::Result<Vec<api::Response>> = batch
                .requests
                .iter()
                .zip(&metas)
                .map(|(r, meta)| {
                    let ctx = EvalContext {
                        ts: *ts,
                        txn: meta.as_ref(),
                        uncertainty_limit,
                        now,
                        range: &range_span,
                    };
                    eval::evaluate(&mut ib, &ctx, r)
                })
                .collect();
            match result {
                Ok(responses) => return Ok((responses, ib.into_write_batch())),
                Err(e) => match e.write_too_old_actual_ts() {
                    Some(actual) if attempts < MAX_WRITE_TOO_OLD_RETRIES => {
                        attempts += 1;
                        match txn.as_deref_mut() {
                            // The transaction writes above the newer version; it will
                            // have to refresh its reads to commit there.
                            Some(t) => t.write_ts = t.write_ts.max(actual),
                            None => *ts = actual.max(self.clock.now()),
                        }
                    }
                    _ => return Err(api::Error::Kv(e)),
                },
            }
        }
    }

    /// Serves a batch holding an administrative request (alone).
    async fn serve_admin(&self, batch: BatchRequest) -> Result<BatchResponse, api::Error> {
        let [req] = batch.requests.as_slice() else {
            return Err(api::Error::InvalidRequest(
                "an admin request must be alone in its batch".into(),
            ));
        };
        let response = match req {
            api::Request::AdminSplit { split_key } => {
                let (left, right) = self.admin_split(split_key, api::STICKY_FOREVER).await?;
                api::Response::AdminSplit { left, right }
            }
            api::Request::AdminMerge { .. } => api::Response::AdminMerge {
                merged: self.admin_merge(None).await?,
            },
            api::Request::Subsume {
                left,
                left_bytes,
                max_bytes,
                max_qps,
                force,
            } => {
                let limits = (!force).then_some(crate::merge::MergeLimits {
                    max_bytes: *max_bytes,
                    max_qps: *max_qps,
                });
                self.subsume(left, *left_bytes, limits).await?
            }
            api::Request::ResolveMerge { right, .. } => api::Response::ResolveMerge {
                merged: self.refuse_merge(right).await?,
            },
            api::Request::ComputeChecksum { .. } => {
                let (range, id, index) = self.compute_checksum().await?;
                api::Response::ComputeChecksum { range, id, index }
            }
            other => {
                return Err(api::Error::InvalidRequest(format!(
                    "not an admin request: {other:?}"
                )));
            }
        };
        Ok(BatchResponse {
            responses: vec![response],
            timestamp: self.clock.now(),
            txn: None,
            observed: Vec::new(),
        })
    }

    /// Proposes a new descriptor for the range (no data writes).
    pub async fn propose_descriptor(&self, desc: RangeDescriptor) -> Result<(), api::Error> {
        let current = self.descriptor().unwrap_or_else(|| desc.clone());
        let cmd = RaftCommand {
            batch: Default::default(),
            new_descriptor: Some(desc),
            split: None,
            ..RaftCommand::default()
        };
        match tokio::time::timeout(self.request_timeout, self.group.propose(cmd)).await {
            Err(_) => Err(api::Error::AmbiguousResult {
                range_id: self.range_id,
                reason: "descriptor update not applied in time".into(),
            }),
            Ok(Err(e)) => Err(self.group_error(e, &current, true)),
            Ok(Ok(_)) => Ok(()),
        }
    }
}

/// The smallest span holding every global key the batch touches (`None` if it touches
/// only range-local keys, such as transaction records).
fn global_span(batch: &BatchRequest) -> Option<Span> {
    let mut out: Option<Span> = None;
    for r in &batch.requests {
        let s = r.span();
        if keys::is_local(&s.start) {
            continue;
        }
        match &mut out {
            None => out = Some(s),
            Some(o) => {
                if s.start < o.start {
                    o.start = s.start;
                }
                if s.end > o.end {
                    o.end = s.end;
                }
            }
        }
    }
    out
}
