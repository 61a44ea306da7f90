//! Merging a range with its right-hand neighbour.
//!
//! ```text
//!   before   L [a, m)          R [m, z)        /Meta/m -> L [a, m)   /Meta/z -> R [m, z)
//!   after    L [a, z)                          /Meta/z -> L [a, z)
//! ```
//!
//! Both ranges must have their voters on the same nodes (and no learners): the merged
//! range takes R's data where it already lies, in each store, and copies nothing. The
//! leaseholder of L (the merge queue, or `AdminMerge`) runs the merge:
//!
//! 1. **Freeze R.** It sends `Subsume` to R. R's leaseholder checks the two may merge
//!    (colocated, every replica of R caught up; unless forced, R is small, cold and not
//!    sticky), drains R's requests
//!    (it takes every latch) and replicates a freeze, applied with a synced write. A
//!    frozen replica serves nothing: requests wait (and are sent again to whoever holds
//!    the keys once the merge is done). The answer carries R's descriptor, the log
//!    index of the freeze, and R's clock and reads above it, as a lease handoff does.
//! 2. **Wait.** It asks every replica of R (over the Raft transport) until each has
//!    applied the freeze: every store then holds R's data as of the freeze, durably.
//! 3. **Decide in L's log.** It records R's reads in its timestamp cache and proposes
//!    the merge: L's new descriptor, R's descriptor and the generation of L it was
//!    evaluated against. Applying it, every replica of L widens its descriptor over R's
//!    keys, deletes R's descriptor and Raft state (not its data, which L now owns) in
//!    one synced write, and its store stops R's replica. A merge applied against any
//!    other generation of L (a split, a replica change, an abandoned merge) is refused
//!    on every replica alike. The meta entries are then rewritten (`UpdateMeta` of the
//!    merged range deletes the entry of L's old end).
//! 4. **Abandon.** A replica of R that leads and has been frozen longer than its
//!    request timeout (or at once, when L tells it the merge failed after the freeze)
//!    sends `ResolveMerge` to L: L replicates a `Refuse`, which moves
//!    its descriptor to a new generation (so a merge proposed before is refused when
//!    applied) and answers whether it merged R already. If it did not, R lifts its
//!    freeze (the lift names the freeze, so a late one leaves a newer attempt's freeze
//!    alone). L's log orders the merge and the refusal, so exactly one of the two wins.
//!
//! R's replicas do not change while it is frozen: `Subsume` and the replicate queue
//! share a lock, and the queue leaves frozen ranges alone. L's lease floor moves up to
//! R's freeze time, so values R wrote under another node's clock count as uncertain
//! to transactions that observed L's node before.
//!
//! A replica of L that gets a snapshot of the merged range replaces its store's frozen
//! replica of R (see `Store::handle_raft`); a replica of a merged range on a store
//! with no replica of L (frozen, or removed from R before the merge) is removed by the
//! replica GC.
//!
//! The merge queue merges a range with its neighbour when both are cold and together
//! below half the split size (so the result does not split straight away), and leaves
//! alone a split that is sticky: one asked for by a user or a new table (for ever), or
//! made for load (for [`LOAD_SPLIT_STICKY`]).

use std::time::Duration;

use cairn_kv::RangeId;
use cairn_kv::api::{self, BatchRequest, RangeDescriptor, Request, Response};
use cairn_kv::keys;

use crate::latch::LatchSpan;
use crate::raft::{MergeStep, MergeTrigger, RaftCommand, RaftEnvelope, RaftReply, RaftRequest};
use crate::replica::Replica;
use crate::split_queue::SplitConfig;
use crate::store::Store;

/// How long a split for load is kept before the merge queue may undo it.
pub const LOAD_SPLIT_STICKY: Duration = Duration::from_secs(300);

/// How long the merge queue leaves a range alone after its neighbour refused to merge.
const MERGE_RETRY: Duration = Duration::from_secs(3);

/// How long a range about to freeze waits for its followers to catch up, before it
/// takes its latches, and then again while it holds them.
const CATCH_UP_WAIT: Duration = Duration::from_millis(500);
const LATCHED_CATCH_UP_WAIT: Duration = Duration::from_millis(100);

/// The nodes of the replicas of `desc` that are not up to date with its leader.
fn behind(desc: &RangeDescriptor, status: &crate::raft::GroupStatus) -> Vec<cairn_kv::NodeId> {
    desc.replicas
        .iter()
        .filter(|r| r.replica_id != status.replica_id && !status.caught_up.contains(&r.replica_id))
        .map(|r| r.node_id)
        .collect()
}

/// How small and cold a right-hand neighbour must be to be merged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MergeLimits {
    /// The most bytes the two ranges may hold together.
    pub max_bytes: u64,
    /// The most requests per second the neighbour may serve.
    pub max_qps: u64,
}

/// Whether two ranges have their voters on the same nodes and no learners.
fn colocated(left: &RangeDescriptor, right: &RangeDescriptor) -> bool {
    let nodes = |d: &RangeDescriptor| {
        let mut n: Vec<_> = d.replicas.iter().map(|r| r.node_id).collect();
        n.sort();
        n
    };
    let no_learners = |d: &RangeDescriptor| d.voters().count() == d.replicas.len();
    no_learners(left) && no_learners(right) && nodes(left) == nodes(right)
}

fn refused(range_id: RangeId, reason: String) -> api::Error {
    api::Error::MergeRefused { range_id, reason }
}

impl Replica {
    /// Waits while the range is frozen for a merge: until the freeze is lifted (then
    /// the request is served here), the store retires this replica because the merge
    /// happened (then the sender is told to look the range up again), or `deadline`.
    pub(crate) async fn wait_unfrozen(
        &self,
        desc: &RangeDescriptor,
        deadline: tokio::time::Instant,
    ) -> Result<(), api::Error> {
        loop {
            if self.shared().is_merged() {
                return Err(self.merged_away(desc));
            }
            let Some((into, _)) = self.shared().frozen() else {
                return Ok(());
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(api::Error::RangeUnavailable {
                    range_id: self.range_id,
                    reason: format!(
                        "timed out after {:?}: the range is being merged into {into}",
                        self.request_timeout
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (until `deadline`) for this replica to hold the lease; returns its term.
    pub(crate) async fn hold_lease(
        &self,
        desc: &RangeDescriptor,
        deadline: tokio::time::Instant,
    ) -> Result<u64, api::Error> {
        let term = self.group().current_term();
        match tokio::time::timeout_at(deadline, self.group().lease_read()).await {
            Err(_) => Err(refused(self.range_id, "no lease in time".into())),
            Ok(Err(e)) => Err(self.group_error(e, desc, false)),
            Ok(Ok(())) => Ok(term),
        }
    }

    /// Waits up to `wait` until every replica of `desc` is up to date with this leader;
    /// refuses the merge if one is not.
    async fn wait_caught_up(
        &self,
        desc: &RangeDescriptor,
        wait: Duration,
    ) -> Result<(), api::Error> {
        let caught_up = self
            .group()
            .wait_for(wait, "replicas caught up for a freeze", |s| {
                behind(desc, s).is_empty()
            })
            .await;
        if caught_up {
            return Ok(());
        }
        Err(refused(
            self.range_id,
            format!(
                "the replicas of {desc} on {:?} are not caught up",
                behind(desc, &self.status())
            ),
        ))
    }

    /// The error for a request that met the range frozen or merged: its sender looks
    /// the range up again and retries.
    pub(crate) fn merged_away(&self, desc: &RangeDescriptor) -> api::Error {
        api::Error::RangeKeyMismatch {
            range_id: self.range_id,
            span: desc.span(),
            current: None,
        }
    }

    /// Serves `Subsume` (step 1 of the module doc) on the right-hand range.
    pub(crate) async fn subsume(
        &self,
        left: &RangeDescriptor,
        left_bytes: u64,
        limits: Option<MergeLimits>,
    ) -> Result<Response, api::Error> {
        let range_id = self.range_id;
        let desc = self.current_descriptor()?;
        if desc.start_key != left.end_key {
            return Err(refused(range_id, format!("{left} is not next to {desc}")));
        }
        if let Some((into, _)) = self.shared().frozen()
            && into.range_id != left.range_id
        {
            return Err(refused(range_id, format!("{desc} is frozen for {into}")));
        }
        if let Some(limits) = limits {
            if desc.is_sticky(self.clock.now().wall) {
                return Err(refused(range_id, format!("the split at {desc} is sticky")));
            }
            let (size, qps) = self.load_stats();
            let Some(size) = size else {
                return Err(refused(range_id, format!("{desc} is not measured yet")));
            };
            if left_bytes.saturating_add(size) > limits.max_bytes {
                return Err(refused(
                    range_id,
                    format!("{left_bytes} + {size} bytes is over {}", limits.max_bytes),
                ));
            }
            if qps > limits.max_qps as f64 {
                return Err(refused(
                    range_id,
                    format!("{desc} serves {qps:.0} requests/s"),
                ));
            }
        }
        if !colocated(left, &desc) {
            return Err(refused(
                range_id,
                format!("{left} and {desc} are on different replicas"),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let lease_term = self.hold_lease(&desc, deadline).await?;
        // Every replica must be up and caught up: the merge waits for each to apply the
        // freeze, and the range serves nothing meanwhile. A follower that is down (or
        // far behind) refuses the merge here, before any request waits for it.
        self.wait_caught_up(&desc, CATCH_UP_WAIT).await?;
        let everything = vec![
            LatchSpan {
                span: desc.span(),
                write: true,
            },
            LatchSpan {
                span: keys::range_local_span(&desc.start_key, &desc.end_key),
                write: true,
            },
        ];
        let latches = tokio::time::timeout_at(deadline, self.latches.acquire(everything))
            .await
            .map_err(|_| refused(range_id, "requests did not drain in time".into()))?;
        self.check_lease(&desc, lease_term)?;
        // No replica change is under way, and none starts until the freeze is applied
        // (the replicate queue leaves a frozen range alone).
        let _no_changes = self
            .replica_changes
            .try_lock()
            .map_err(|_| refused(range_id, format!("the replicas of {desc} are changing")))?;
        // Every replica must still be caught up, now that nothing new is proposed (a
        // write that held its latches until now may have left them an entry behind).
        self.wait_caught_up(&desc, LATCHED_CATCH_UP_WAIT).await?;
        let freeze = RaftCommand {
            merge_step: Some(MergeStep::Freeze(left.clone())),
            ..RaftCommand::default()
        };
        let applied = match tokio::time::timeout_at(deadline, self.group().propose(freeze)).await {
            Err(_) => {
                return Err(api::Error::AmbiguousResult {
                    range_id,
                    reason: "freeze for a merge not applied in time".into(),
                });
            }
            Ok(Err(e)) => return Err(self.group_error(e, &desc, true)),
            Ok(Ok(res)) => res,
        };
        if let Some(why) = applied.rejected {
            return Err(refused(range_id, why));
        }
        // Frozen: nothing is served here any more, so what was read so far is final.
        let (freeze_ts, reads) = self.reads_to_hand_over();
        drop(latches);
        let right = self.descriptor().unwrap_or(desc);
        tracing::info!(%left, %right, index = applied.applied_index, "frozen for a merge");
        Ok(Response::Subsume {
            right,
            freeze_index: applied.applied_index,
            freeze_ts,
            reads,
        })
    }

    /// Merges this range with its right-hand neighbour (see the module doc), within
    /// `limits` (none: whatever their size, load and stickiness). Returns the merged
    /// descriptor.
    pub async fn admin_merge(
        &self,
        limits: Option<MergeLimits>,
    ) -> Result<RangeDescriptor, api::Error> {
        let range_id = self.range_id;
        let desc = self.current_descriptor()?;
        if desc.end_key.as_slice() >= keys::KEY_MAX {
            return Err(api::Error::InvalidRequest(format!(
                "{desc} is the last range: nothing to merge it with"
            )));
        }
        if let Some((into, _)) = self.shared().frozen() {
            return Err(refused(
                range_id,
                format!("{desc} is itself frozen for {into}"),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        let lease_term = self.hold_lease(&desc, deadline).await?;
        self.check_lease(&desc, lease_term)?;
        let (left_bytes, left_qps) = self.load_stats();
        let subsume = Request::Subsume {
            left: desc.clone(),
            left_bytes: left_bytes.unwrap_or(u64::MAX),
            max_bytes: limits.map_or(u64::MAX, |l| l.max_bytes),
            max_qps: limits.map_or(u64::MAX, |l| l.max_qps.saturating_sub(left_qps as u64)),
            force: limits.is_none(),
        };
        let answer = self
            .cluster_sender()?
            .send(BatchRequest::new(RangeId(0), vec![subsume]))
            .await?;
        let Some(Response::Subsume {
            right,
            freeze_index,
            freeze_ts,
            reads,
        }) = answer.responses.into_iter().next()
        else {
            return Err(api::Error::InvalidRequest(
                "Subsume answered with something else".into(),
            ));
        };
        // From here on the neighbour is frozen. Should this fail, the neighbour is asked
        // to find out from this range (ResolveMerge) and serve again at once; if it
        // cannot be reached, it asks by itself once it has been frozen too long.
        let result = self
            .finish_merge(
                &desc,
                lease_term,
                right.clone(),
                freeze_index,
                freeze_ts,
                reads,
                deadline,
            )
            .await;
        if let Err(e) = &result {
            tracing::info!(range = %desc, %right, error = %e, "merge failed; asking the neighbour to serve again");
            let ask = Request::ResolveMerge {
                key: right.start_key.clone(),
                right: right.clone(),
            };
            if let Err(e) = self
                .cluster_sender()?
                .send(BatchRequest::new(RangeId(0), vec![ask]))
                .await
            {
                tracing::info!(%right, error = %e, "the frozen neighbour could not be asked to serve again");
            }
        }
        result
    }

    /// Steps 2 and 3 of the module doc, once `right` is frozen.
    #[allow(clippy::too_many_arguments)]
    async fn finish_merge(
        &self,
        desc: &RangeDescriptor,
        lease_term: u64,
        right: RangeDescriptor,
        freeze_index: u64,
        freeze_ts: cairn_kv::Timestamp,
        reads: Vec<(keys::Span, cairn_kv::Timestamp)>,
        deadline: tokio::time::Instant,
    ) -> Result<RangeDescriptor, api::Error> {
        let range_id = self.range_id;
        if right.start_key != desc.end_key || !colocated(desc, &right) {
            return Err(refused(range_id, format!("{right} no longer fits {desc}")));
        }
        self.wait_frozen_everywhere(&right, freeze_index, deadline)
            .await?;
        // Writes to the neighbour's keys land above everything it served, and reads
        // here treat what it wrote as uncertain as far as it might be.
        let _ = self.clock.update(freeze_ts);
        let mut covered = vec![
            (right.span(), freeze_ts),
            (
                keys::range_local_span(&right.start_key, &right.end_key),
                freeze_ts,
            ),
        ];
        covered.extend(reads);
        self.take_over_reads(freeze_ts, &covered);
        self.check_lease(desc, lease_term)?;

        let merged = RangeDescriptor {
            end_key: right.end_key.clone(),
            generation: desc.generation.max(right.generation) + 1,
            ..desc.clone()
        };
        self.meta_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let cmd = RaftCommand {
            new_descriptor: Some(merged.clone()),
            merge: Some(MergeTrigger {
                right: right.clone(),
                left_generation: desc.generation,
                freeze_index,
            }),
            ..RaftCommand::default()
        };
        match tokio::time::timeout_at(deadline, self.group().propose(cmd)).await {
            Err(_) => {
                return Err(api::Error::AmbiguousResult {
                    range_id,
                    reason: "merge proposed but not applied in time".into(),
                });
            }
            Ok(Err(e)) => return Err(self.group_error(e, desc, true)),
            Ok(Ok(res)) => {
                if let Some(why) = res.rejected {
                    return Err(refused(range_id, why));
                }
            }
        }
        self.metrics
            .merges
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(node = %self.node_id, %merged, %right, "ranges merged");
        // Both ranges' sizes count now: measure again.
        self.load.lock().forget_size();
        if !merged.contains_key(&keys::meta_key(&merged.end_key))
            && self.write_meta(&[&merged]).await.is_ok()
        {
            self.meta_dirty
                .store(false, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(merged)
    }

    /// Waits until every replica of `right` has applied its freeze at `freeze_index`.
    async fn wait_frozen_everywhere(
        &self,
        right: &RangeDescriptor,
        freeze_index: u64,
        deadline: tokio::time::Instant,
    ) -> Result<(), api::Error> {
        let mut waiting: Vec<_> = right.replicas.clone();
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for r in waiting {
                let ask = RaftEnvelope {
                    range_id: right.range_id,
                    from: api::ReplicaId(0),
                    to: r.replica_id,
                    to_node: r.node_id,
                    to_addr: String::new(),
                    body: RaftRequest::Applied,
                };
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match self.transport.send(ask, left).await {
                    Ok(RaftReply::Applied { index, frozen_for })
                        if index >= freeze_index && frozen_for == Some(self.range_id) => {}
                    _ => still.push(r),
                }
            }
            waiting = still;
            if waiting.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(refused(
                    self.range_id,
                    format!("replicas {waiting:?} of {right} did not apply the freeze in time"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Serves `ResolveMerge` (step 4 of the module doc): makes sure this range never
    /// merges `right` from now on, and says whether it already has. Asked of the
    /// frozen range itself (by a merge that failed), it asks its left-hand neighbour at
    /// once, and answers whether it is still frozen because it was merged.
    pub(crate) async fn refuse_merge(&self, right: &RangeDescriptor) -> Result<bool, api::Error> {
        let range_id = self.range_id;
        if right.range_id == range_id {
            let lifted = self.resolve_freeze(Duration::ZERO).await?;
            return Ok(!lifted && self.shared().frozen().is_some());
        }
        let desc = self.current_descriptor()?;
        if let Some((into, _)) = self.shared().frozen() {
            // Its own fate is open: the frozen neighbour asks again later.
            return Err(refused(
                range_id,
                format!("{desc} is itself frozen for {into}"),
            ));
        }
        let deadline = tokio::time::Instant::now() + self.request_timeout;
        self.hold_lease(&desc, deadline).await?;
        let cmd = RaftCommand {
            merge_step: Some(MergeStep::Refuse(right.range_id)),
            ..RaftCommand::default()
        };
        match tokio::time::timeout_at(deadline, self.group().propose(cmd)).await {
            Err(_) => Err(api::Error::AmbiguousResult {
                range_id,
                reason: "merge refusal not applied in time".into(),
            }),
            Ok(Err(e)) => Err(self.group_error(e, &desc, true)),
            Ok(Ok(res)) => match res.rejected {
                Some(why) => Err(refused(range_id, why)),
                None => Ok(res.merged),
            },
        }
    }

    /// On a frozen range's leader, frozen for longer than `patience`: asks the range it
    /// was frozen for whether it merged it, and lifts the freeze if not. Returns
    /// whether the freeze was lifted.
    pub(crate) async fn resolve_freeze(&self, patience: Duration) -> Result<bool, api::Error> {
        let Some((into, since)) = self.shared().frozen() else {
            return Ok(false);
        };
        let Some(desc) = self.descriptor() else {
            return Ok(false);
        };
        if since.elapsed() < patience || !self.group().is_leader() {
            return Ok(false);
        }
        let ask = Request::ResolveMerge {
            key: into.start_key.clone(),
            right: desc.clone(),
        };
        let answer = self
            .cluster_sender()?
            .send(BatchRequest::new(RangeId(0), vec![ask]))
            .await?;
        match answer.responses.as_slice() {
            [Response::ResolveMerge { merged: true }] => {
                tracing::info!(range = %desc, %into, "frozen range was merged; waiting to be retired");
                Ok(false)
            }
            [Response::ResolveMerge { merged: false }] => {
                let lift = RaftCommand {
                    merge_step: Some(MergeStep::Lift(into.clone())),
                    ..RaftCommand::default()
                };
                tokio::time::timeout(self.request_timeout, self.group().propose(lift))
                    .await
                    .map_err(|_| refused(self.range_id, "lifting the freeze timed out".into()))?
                    .map_err(|e| self.group_error(e, &desc, true))?;
                tracing::info!(range = %desc, %into, "merge abandoned; range serves again");
                Ok(true)
            }
            other => Err(api::Error::InvalidRequest(format!(
                "ResolveMerge answered {other:?}"
            ))),
        }
    }
}

impl Store {
    /// The merge queue's part of a split-queue pass, for a range this store leads:
    /// resolves a freeze that has lasted too long, or merges the range with its
    /// neighbour if both are small and cold. Returns the merged range.
    pub(crate) async fn maybe_merge(
        &self,
        replica: &Replica,
        desc: &RangeDescriptor,
        config: SplitConfig,
    ) -> Option<RangeDescriptor> {
        if replica.frozen_for().is_some() {
            if let Err(e) = replica.resolve_freeze(replica.request_timeout).await {
                tracing::debug!(range = %desc, error = %e, "could not resolve a stale freeze");
            }
            return None;
        }
        if !config.merge_enabled || desc.end_key.as_slice() >= keys::KEY_MAX {
            return None;
        }
        let (size, qps) = replica.load_stats();
        let limit = config.max_bytes / 2;
        let max_qps = if config.load_qps_threshold == 0 {
            u64::MAX
        } else {
            config.load_qps_threshold / 2
        };
        if size.is_none_or(|s| s >= limit) || qps > max_qps as f64 {
            return None;
        }
        if replica.load.lock().merge_refused_recently(MERGE_RETRY) {
            return None;
        }
        let limits = MergeLimits {
            max_bytes: limit,
            max_qps,
        };
        match replica.admin_merge(Some(limits)).await {
            Ok(merged) => Some(merged),
            Err(e) => {
                tracing::debug!(range = %desc, error = %e, "merge queue: no merge");
                replica.load.lock().merge_refused();
                None
            }
        }
    }

    /// Retires this store's replica of `right`, which the range `left` here merged
    /// (the state machine of `left` has deleted its Raft state with the merge): stops
    /// it and deletes what its Raft group wrote since. Its data is `left`'s now.
    pub(crate) async fn retire_merged(
        &self,
        left: RangeId,
        right: &RangeDescriptor,
        freeze_index: u64,
    ) {
        let _l = self.lifecycle().lock().await;
        if let Some(r) = self.replica(right.range_id) {
            if r.frozen_for().is_none_or(|f| f.range_id != left)
                || r.shared().applied_index() < freeze_index
            {
                tracing::error!(range = %right, %left, "merged over a replica that had not applied its freeze");
            }
            r.shared().set_merged();
            r.group().shutdown().await;
            self.remove_replica(right.range_id);
        }
        if let Err(e) = self.clear_raft_state(right.range_id).await {
            tracing::warn!(range = %right, error = %e, "clearing a merged range's Raft state");
        }
        tracing::info!(node = %self.node_id(), range = %right, %left, "replica retired by a merge");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::NodeId;
    use cairn_kv::api::{ReplicaDescriptor, ReplicaId, ReplicaKind};

    fn desc(id: u64, start: &str, end: &str, nodes: &[(u64, ReplicaKind)]) -> RangeDescriptor {
        RangeDescriptor {
            range_id: RangeId(id),
            start_key: start.as_bytes().to_vec(),
            end_key: end.as_bytes().to_vec(),
            replicas: nodes
                .iter()
                .enumerate()
                .map(|(i, (n, kind))| ReplicaDescriptor {
                    node_id: NodeId(*n),
                    replica_id: ReplicaId(i as u64 + 1 + id),
                    kind: *kind,
                })
                .collect(),
            next_replica_id: ReplicaId(10),
            generation: 1,
            sticky_until: 0,
        }
    }

    #[test]
    fn colocated_needs_the_same_nodes_and_no_learners() {
        use ReplicaKind::*;
        let l = desc(2, "a", "m", &[(1, Voter), (2, Voter), (3, Voter)]);
        let r = desc(3, "m", "z", &[(3, Voter), (1, Voter), (2, Voter)]);
        assert!(
            colocated(&l, &r),
            "replica ids may differ, nodes may be listed in any order"
        );
        let moved = desc(3, "m", "z", &[(1, Voter), (2, Voter), (4, Voter)]);
        assert!(!colocated(&l, &moved));
        let learning = desc(3, "m", "z", &[(1, Voter), (2, Voter), (3, Learner)]);
        assert!(!colocated(&l, &learning));
    }
}
