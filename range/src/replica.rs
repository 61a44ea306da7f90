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

use cairn_kv::api::{self, BatchRequest, BatchResponse, RangeDescriptor, ReplicaId};
use cairn_kv::hlc::Clock;
use cairn_kv::keys::{self, Span};
use cairn_kv::storage::{Engine, IndexedBatch};
use cairn_kv::{NodeId, RangeId, Timestamp};

use crate::eval::{self, EvalContext};
use crate::latch::{LatchManager, LatchSpan};
use crate::raft::{GroupError, GroupStatus, RaftCommand, RaftGroup, ReplicaShared};
use crate::store::ClusterSender;

/// How many times a non-transactional write moves its timestamp up after meeting a newer
/// version before giving up.
const MAX_WRITE_TOO_OLD_RETRIES: usize = 10;

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
        }
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
    pub fn snapshots_installed(&self) -> u64 {
        self.shared.snapshots_installed()
    }

    pub fn status(&self) -> GroupStatus {
        self.group.status()
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
        let timed_out = |what: &str| api::Error::RangeUnavailable {
            range_id,
            reason: format!("timed out after {:?} {what}", self.request_timeout),
        };

        match tokio::time::timeout_at(deadline, self.group.lease_read()).await {
            Err(_) => return Err(timed_out("waiting for the lease")),
            Ok(Err(e)) => return Err(self.group_error(e, &desc, false)),
            Ok(Ok(())) => {}
        }
        let _latches = match tokio::time::timeout_at(deadline, self.latches.acquire(spans)).await {
            Ok(g) => g,
            Err(_) => return Err(timed_out("waiting for conflicting requests")),
        };
        // The descriptor may have changed while we waited.
        if let Some(now) = self.descriptor()
            && now != desc
        {
            self.check_keys(&batch, &now)?;
        }

        let mut ts = if batch.header.timestamp.is_zero() {
            self.clock.now()
        } else {
            batch.header.timestamp
        };
        let (responses, writes) = self.evaluate(&batch, &mut ts)?;
        if !writes.is_empty() {
            let cmd = RaftCommand {
                batch: writes,
                new_descriptor: None,
                split: None,
            };
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
                Ok(Ok(_)) => {}
            }
        }
        Ok(BatchResponse {
            responses,
            timestamp: ts,
        })
    }

    /// Evaluates the batch at `ts`, moving `ts` up for non-transactional writes that meet
    /// a newer version.
    fn evaluate(
        &self,
        batch: &BatchRequest,
        ts: &mut Timestamp,
    ) -> Result<(Vec<api::Response>, cairn_kv::storage::WriteBatch), api::Error> {
        let mut attempts = 0;
        loop {
            let base: &dyn cairn_kv::storage::Reader = &*self.engine;
            let mut ib = IndexedBatch::new(base);
            let ctx = EvalContext::new(&batch.header, *ts);
            let result: cairn_kv::Result<Vec<api::Response>> = batch
                .requests
                .iter()
                .map(|r| eval::evaluate(&mut ib, &ctx, r))
                .collect();
            match result {
                Ok(responses) => return Ok((responses, ib.into_write_batch())),
                Err(e) => {
                    let retry = batch.header.txn.is_none()
                        && attempts < MAX_WRITE_TOO_OLD_RETRIES
                        && e.write_too_old_actual_ts().is_some();
                    match e.write_too_old_actual_ts() {
                        Some(actual) if retry => {
                            attempts += 1;
                            *ts = actual.max(self.clock.now());
                        }
                        _ => return Err(api::Error::Kv(e)),
                    }
                }
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
                let (left, right) = self.admin_split(split_key).await?;
                api::Response::AdminSplit { left, right }
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
        })
    }

    /// Proposes a new descriptor for the range (no data writes).
    pub async fn propose_descriptor(&self, desc: RangeDescriptor) -> Result<(), api::Error> {
        let current = self.descriptor().unwrap_or_else(|| desc.clone());
        let cmd = RaftCommand {
            batch: Default::default(),
            new_descriptor: Some(desc),
            split: None,
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
