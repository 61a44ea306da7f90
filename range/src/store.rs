//! The Store: every replica a node holds, on the node's one engine.
//!
//! The store routes incoming batches and Raft messages to replicas by range id, creates
//! a replica when the first message for it arrives (a learner being added, which then
//! receives the log or a snapshot), restarts every replica it holds when the node
//! restarts, and bootstraps the first range of a new cluster.
//!
//! Replica ids are recorded per range in the Raft key space; a message for an older
//! replica id than the one held is stale and refused, one for a newer id means this
//! store's old replica was removed from the range and is replaced.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use cairn_kv::api::{
    self, BatchRequest, BatchResponse, BoxFuture, RangeDescriptor, ReplicaDescriptor, ReplicaId,
    ReplicaKind, Sender,
};
use cairn_kv::hlc::Clock;
use cairn_kv::keys;
use cairn_kv::storage::{Engine, Space, WriteBatch};
use cairn_kv::{NodeId, RangeId};
use parking_lot::RwLock;

use crate::allocator::{self, Action, ClusterView, Reason};
use crate::log_writer::LogWriter;
use crate::raft::log_store::{decode, encode};
use crate::raft::state_machine::{StoreEvent, data_spans};
use crate::raft::{
    GroupError, RaftConfig, RaftEnvelope, RaftGroup, RaftReply, RaftRequest, RaftTransport,
    ReplicaNode, ReplicaShared,
};
use crate::replica::Replica;
use prometheus_client::metrics::histogram::Histogram;

/// How long adding a learner may take to stream it a snapshot and catch it up (it is
/// abandoned sooner if its node stops being live).
const LEARNER_CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

/// The first range of a cluster.
pub const FIRST_RANGE_ID: RangeId = RangeId(1);

/// How a store runs.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    pub node_id: NodeId,
    /// This node's RPC address, recorded with the replicas it adds.
    pub addr: String,
    pub raft: RaftConfig,
    /// Bound on serving one batch (lease wait, latches, replication).
    pub request_timeout: Duration,
}

/// Why the store could not start or bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(#[from] GroupError),
    #[error("{0}")]
    Api(#[from] api::Error),
}

pub struct Store {
    config: StoreConfig,
    engine: Arc<dyn Engine>,
    writer: Arc<LogWriter>,
    transport: Arc<dyn RaftTransport>,
    clock: Arc<Clock>,
    replicas: ReplicaMap,
    /// Replicas that failed to start, with the reason. They serve nothing and are not
    /// recreated: their data is left for an operator to look at.
    broken: RwLock<HashMap<RangeId, String>>,
    /// Serialises replica creation and removal.
    lifecycle: tokio::sync::Mutex<()>,
    /// Where replicas' state machines report splits.
    events: tokio::sync::mpsc::UnboundedSender<StoreEvent>,
    /// Whether a node is live (see [`Store::set_liveness`]).
    liveness: OnceLock<Arc<dyn Fn(NodeId) -> bool + Send + Sync>>,
    /// When the replica GC last checked each range's replica here.
    gc_checked: parking_lot::Mutex<HashMap<RangeId, std::time::Instant>>,
    /// Routes batches to any range of the cluster (the node's DistSender), for what a
    /// replica must ask of other ranges: new range ids and meta entries for splits.
    cluster: ClusterSender,
    metrics: Arc<StoreMetrics>,
}

/// Clears a left-hand replica's claim on a new range's keys when dropped.
struct ClaimCleared(Option<Arc<Replica>>, RangeId);

impl Drop for ClaimCleared {
    fn drop(&mut self) {
        if let Some(left) = &self.0 {
            left.split_started(self.1);
        }
    }
}

/// Counts of events on a store's replicas, for the node's `/metrics`.
#[derive(Debug)]
pub struct StoreMetrics {
    /// Splits this store's replicas made (as leaseholders of the range split).
    pub splits: AtomicU64,
    /// Merges this store's replicas made (as leaseholders of the left-hand range).
    pub merges: AtomicU64,
    /// Times a replica of this store became its range's Raft leader.
    pub leader_changes: AtomicU64,
    /// Seconds from proposing a write's command to its being applied on the
    /// leaseholder (committed by a quorum), for writes that committed.
    pub raft_commit_latency: Histogram,
}

impl Default for StoreMetrics {
    fn default() -> Self {
        StoreMetrics {
            splits: AtomicU64::default(),
            merges: AtomicU64::default(),
            leader_changes: AtomicU64::default(),
            raft_commit_latency: latency_histogram(),
        }
    }
}

/// A histogram of durations in seconds, from 100 µs to about 26 s in doublings.
pub fn latency_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0001, 2.0, 19,
    ))
}

/// The replicas of a store by range id.
pub(crate) type ReplicaMap = Arc<RwLock<HashMap<RangeId, Arc<Replica>>>>;

/// The cluster-wide sender, installed once the node has built it (it needs the store).
pub type ClusterSender = Arc<OnceLock<Arc<dyn Sender>>>;

fn storage(e: impl std::fmt::Display) -> StoreError {
    StoreError::Storage(e.to_string())
}

impl Store {
    /// Opens the store and restarts every replica it holds.
    pub async fn open(
        config: StoreConfig,
        engine: Arc<dyn Engine>,
        transport: Arc<dyn RaftTransport>,
        clock: Arc<Clock>,
    ) -> Result<Arc<Store>, StoreError> {
        let writer = Arc::new(LogWriter::start(engine.clone()).map_err(storage)?);
        let (events, events_rx) = tokio::sync::mpsc::unbounded_channel();
        let store = Arc::new(Store {
            config,
            engine,
            writer,
            transport,
            clock,
            replicas: ReplicaMap::default(),
            broken: RwLock::new(HashMap::new()),
            lifecycle: tokio::sync::Mutex::new(()),
            events,
            gc_checked: parking_lot::Mutex::new(HashMap::new()),
            liveness: OnceLock::new(),
            cluster: Arc::new(OnceLock::new()),
            metrics: Arc::new(StoreMetrics::default()),
        });
        tokio::spawn(Store::handle_events(Arc::downgrade(&store), events_rx));
        let held = store.held_replicas()?;
        tracing::info!(node = %store.config.node_id, replicas = ?held, "store opened");
        for (range_id, replica_id) in held {
            // A replica that cannot start (a damaged log, say) stays down and says why;
            // the store's other replicas serve on.
            if let Err(e) = store.start_replica(range_id, replica_id).await {
                tracing::error!(range = %range_id, replica = %replica_id, error = %e, "replica refuses to start");
                store.broken.write().insert(range_id, e.to_string());
            }
        }
        Ok(store)
    }

    pub fn node_id(&self) -> NodeId {
        self.config.node_id
    }

    /// Counts of events on this store's replicas.
    pub fn metrics(&self) -> &StoreMetrics {
        &self.metrics
    }

    /// Installs the sender replicas use to reach other ranges (once; later calls are
    /// ignored).
    pub fn set_cluster_sender(&self, sender: Arc<dyn Sender>) {
        let _ = self.cluster.set(sender);
    }

    /// Acts on what replicas report, until the store is dropped.
    async fn handle_events(
        store: Weak<Store>,
        mut events: tokio::sync::mpsc::UnboundedReceiver<StoreEvent>,
    ) {
        while let Some(event) = events.recv().await {
            let Some(store) = store.upgrade() else {
                return;
            };
            match event {
                StoreEvent::SplitApplied {
                    left,
                    right,
                    replica_id,
                } => store.start_split_replica(left, &right, replica_id).await,
                StoreEvent::MergeApplied {
                    left,
                    right,
                    freeze_index,
                } => store.retire_merged(left, &right, freeze_index).await,
            }
        }
    }

    /// Starts this store's replica of a range a split just created. A replica of it may
    /// already run, created by a message from the new range's first leader before the
    /// split applied here: if it has no data yet, it restarts from the state the split
    /// wrote. If this store's replica of the left-hand range leads, the new range's
    /// replica here takes over its timestamp cache (see `Replica::inherit_lease`) and
    /// campaigns, so the two start with the same leader.
    async fn start_split_replica(
        &self,
        left: RangeId,
        right: &RangeDescriptor,
        replica_id: ReplicaId,
    ) {
        let _l = self.lifecycle.lock().await;
        let range_id = right.range_id;
        // Once this returns, the new range's replica (or its failure) speaks for its keys.
        let _claimed = ClaimCleared(self.replica(left), range_id);
        let started = match self.replica(range_id) {
            Some(r) if r.descriptor().is_some() => return,
            Some(r) => {
                r.group().shutdown().await;
                self.replicas.write().remove(&range_id);
                self.start_replica(range_id, replica_id).await
            }
            None => self.start_replica(range_id, replica_id).await,
        };
        match started {
            Ok(r) => {
                tracing::info!(node = %self.config.node_id, range = %right, "started replica created by a split");
                if let Some(l) = self.replica(left).filter(|l| l.status().is_leader) {
                    r.inherit_lease(&l);
                    r.group().campaign();
                }
            }
            Err(e) => {
                tracing::error!(range = %range_id, error = %e, "replica created by a split refuses to start");
                self.broken.write().insert(range_id, e.to_string());
            }
        }
    }

    /// A replica of this store, other than `desc`'s own, whose keys overlap `desc`'s.
    /// Ranges that a split applied here created but the store has not started yet
    /// count: their keys are theirs as soon as the left-hand side gives them up.
    fn overlapping_replica(&self, desc: &RangeDescriptor) -> Option<RangeDescriptor> {
        self.claims_overlapping(desc).into_iter().next()
    }

    /// The descriptors of this store's replicas other than `desc`'s, and of the ranges
    /// splits here created but the store has not started, that overlap `desc`.
    fn claims_overlapping(&self, desc: &RangeDescriptor) -> Vec<RangeDescriptor> {
        self.replicas
            .read()
            .values()
            .flat_map(|r| {
                // The descriptor first: once it shows a split, the split's new range is
                // already among the unstarted ones (the state machine lists it first).
                let mut claims: Vec<RangeDescriptor> = r.descriptor().into_iter().collect();
                claims.extend(r.unstarted_splits());
                claims
            })
            .filter(|d| d.range_id != desc.range_id)
            .filter(|d| d.start_key < desc.end_key && desc.start_key < d.end_key)
            .collect()
    }

    /// Checks that a snapshot of `desc` may land: no other replica of this store holds
    /// its keys, but for replicas of ranges frozen for a merge into `desc`'s range that
    /// the snapshot shows merged (it covers them, or lists them among the ranges it
    /// merged; it may have split again since). Those are retired (the snapshot's keys
    /// are then cleared and rewritten by it).
    async fn make_room_for_snapshot(
        &self,
        desc: &RangeDescriptor,
        merged: &[RangeId],
    ) -> Result<(), String> {
        for other in self.claims_overlapping(desc) {
            let merged = self.replica(other.range_id).filter(|r| {
                r.descriptor().as_ref() == Some(&other)
                    && r.frozen_for().is_some_and(|l| l.range_id == desc.range_id)
                    && (desc.contains_span(&other.span()) || merged.contains(&other.range_id))
            });
            match merged {
                Some(_) => self.retire_merged(desc.range_id, &other, 0).await,
                None => {
                    return Err(format!(
                        "snapshot of {desc} overlaps {other} on {}; retry once it has split",
                        self.config.node_id
                    ));
                }
            }
        }
        Ok(())
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    pub fn log_writer(&self) -> &LogWriter {
        &self.writer
    }

    /// The (range, replica id) pairs recorded in the store.
    fn held_replicas(&self) -> Result<Vec<(RangeId, ReplicaId)>, StoreError> {
        let lower = keys::LOCAL_RANGE_ID_PREFIX.to_vec();
        let upper = keys::prefix_end(&lower);
        let mut it = self
            .engine
            .iter(Space::Raft, &lower, Some(&upper))
            .map_err(storage)?;
        it.seek_to_first().map_err(storage)?;
        let mut found = Vec::new();
        while let Some((k, _)) = it.current() {
            let Some(id_bytes) = k.get(lower.len()..lower.len() + 8) else {
                return Err(storage(format!(
                    "malformed range-id key {}",
                    keys::pretty(k)
                )));
            };
            let mut arr = [0u8; 8];
            arr.copy_from_slice(id_bytes);
            let range_id = RangeId(u64::from_be_bytes(arr));
            let key = keys::raft_replica_id_key(range_id);
            if let Some(stored) = self.engine.get(Space::Raft, &key).map_err(storage)? {
                let id: u64 = decode(range_id, &key, &stored).map_err(storage)?;
                found.push((range_id, ReplicaId(id)));
            }
            it.seek(&keys::range_id_prefix_end(range_id))
                .map_err(storage)?;
        }
        Ok(found)
    }

    async fn start_replica(
        &self,
        range_id: RangeId,
        replica_id: ReplicaId,
    ) -> Result<Arc<Replica>, StoreError> {
        let shared = Arc::new(ReplicaShared::with_events(self.events.clone()));
        let group = RaftGroup::start(
            range_id,
            replica_id,
            self.engine.clone(),
            self.writer.clone(),
            self.transport.clone(),
            shared.clone(),
            self.config.raft,
        )
        .await?;
        let replica = Arc::new(Replica::new(
            self.config.node_id,
            group,
            shared,
            self.engine.clone(),
            self.clock.clone(),
            self.config.request_timeout,
            self.cluster.clone(),
            Arc::downgrade(&self.replicas),
            self.transport.clone(),
            self.metrics.clone(),
        ));
        replica.watch_leases();
        self.replicas.write().insert(range_id, replica.clone());
        tracing::debug!(node = %self.config.node_id, range = %range_id, replica = %replica_id, "replica started");
        Ok(replica)
    }

    /// Records this store's replica id for a range, durably.
    async fn record_replica_id(
        &self,
        range_id: RangeId,
        replica_id: ReplicaId,
    ) -> Result<(), StoreError> {
        let key = keys::raft_replica_id_key(range_id);
        let mut b = WriteBatch::new();
        b.put(
            Space::Raft,
            key.clone(),
            encode(&key, &replica_id.0).map_err(storage)?,
        );
        self.writer.write(b).await.map_err(storage)
    }

    /// Serialises replica creation and removal.
    pub(crate) fn lifecycle(&self) -> &tokio::sync::Mutex<()> {
        &self.lifecycle
    }

    /// Drops a stopped replica from the store's map.
    pub(crate) fn remove_replica(&self, range_id: RangeId) {
        self.replicas.write().remove(&range_id);
    }

    /// Deletes the Raft state of a range this store no longer holds, leaving a
    /// tombstone no replica id passes (so no message brings the range back).
    pub(crate) async fn clear_raft_state(&self, range_id: RangeId) -> Result<(), StoreError> {
        let mut b = WriteBatch::new();
        b.delete_range(
            Space::Raft,
            keys::range_id_prefix(range_id),
            keys::range_id_prefix_end(range_id),
        );
        let tombstone = keys::range_tombstone_key(range_id);
        b.put(
            Space::Raft,
            tombstone.clone(),
            encode(&tombstone, &u64::MAX).map_err(storage)?,
        );
        self.writer.write(b).await.map_err(storage)
    }

    /// The replica of `range_id`, if this store holds one.
    pub fn replica(&self, range_id: RangeId) -> Option<Arc<Replica>> {
        self.replicas.read().get(&range_id).cloned()
    }

    /// Ranges whose replica on this store refused to start, and why.
    pub fn broken_replicas(&self) -> Vec<(RangeId, String)> {
        let mut v: Vec<_> = self
            .broken
            .read()
            .iter()
            .map(|(r, w)| (*r, w.clone()))
            .collect();
        v.sort();
        v
    }

    /// Every replica of the store, by range id.
    pub fn replicas(&self) -> Vec<Arc<Replica>> {
        let mut all: Vec<_> = self.replicas.read().values().cloned().collect();
        all.sort_by_key(|r| r.range_id());
        all
    }

    /// Creates the first range of a new cluster, `[KEY_MIN, KEY_MAX)`, with this store as
    /// its only replica, and waits until it serves. Fails if the store holds any range.
    pub async fn bootstrap(&self) -> Result<RangeDescriptor, StoreError> {
        let _l = self.lifecycle.lock().await;
        if !self.replicas.read().is_empty() || !self.held_replicas()?.is_empty() {
            return Err(StoreError::Storage(
                "store already holds ranges: cluster already bootstrapped".into(),
            ));
        }
        let replica_id = ReplicaId(1);
        let desc = RangeDescriptor {
            range_id: FIRST_RANGE_ID,
            start_key: keys::KEY_MIN.to_vec(),
            end_key: keys::KEY_MAX.to_vec(),
            replicas: vec![ReplicaDescriptor {
                node_id: self.config.node_id,
                replica_id,
                kind: ReplicaKind::Voter,
            }],
            next_replica_id: ReplicaId(2),
            generation: 0,
            sticky_until: api::STICKY_FOREVER,
        };
        self.record_replica_id(FIRST_RANGE_ID, replica_id).await?;
        let replica = self.start_replica(FIRST_RANGE_ID, replica_id).await?;
        let me = ReplicaNode {
            node_id: self.config.node_id,
            addr: self.config.addr.clone(),
        };
        replica.group().initialize(&[(replica_id, me)]).await?;
        let leading = replica
            .group()
            .wait_for(Duration::from_secs(30), "bootstrap leadership", |s| {
                s.is_leader
            })
            .await;
        if !leading {
            return Err(StoreError::Raft(GroupError::Unavailable(
                "first range elected no leader".into(),
            )));
        }
        replica.propose_descriptor(desc.clone()).await?;
        // Replicas added later start from a snapshot: replaying the first range's log
        // from its start could write keys that have since moved to other ranges.
        replica.group().compact(Duration::from_secs(30)).await?;
        tracing::info!(node = %self.config.node_id, "bootstrapped the first range");
        Ok(desc)
    }

    /// Creates a range with no data and no descriptor, replicated on `members` (this
    /// store holding the first), for measuring what idle Raft groups cost. The other
    /// members create their replicas when the first message arrives.
    pub async fn create_idle_group(
        &self,
        range_id: RangeId,
        members: &[(ReplicaId, ReplicaNode)],
    ) -> Result<(), StoreError> {
        let Some((mine, _)) = members
            .iter()
            .find(|(_, n)| n.node_id == self.config.node_id)
        else {
            return Err(StoreError::Storage(format!(
                "{range_id}: this store is not among the members"
            )));
        };
        let _l = self.lifecycle.lock().await;
        if self.replica(range_id).is_some() {
            return Ok(());
        }
        self.record_replica_id(range_id, *mine).await?;
        let replica = self.start_replica(range_id, *mine).await?;
        replica.group().initialize(members).await?;
        Ok(())
    }

    /// Handles a Raft message for one of this store's replicas, creating the replica if
    /// this is the first message for it.
    pub async fn handle_raft(&self, msg: RaftEnvelope) -> Result<RaftReply, String> {
        if msg.to_node != self.config.node_id {
            return Err(format!(
                "message for {} delivered to {}",
                msg.to_node, self.config.node_id
            ));
        }
        if let RaftRequest::Applied = msg.body {
            return Ok(match self.replica(msg.range_id) {
                Some(r) if r.replica_id() == msg.to => RaftReply::Applied {
                    index: r.shared().applied_index(),
                    frozen_for: r.frozen_for().map(|l| l.range_id),
                },
                _ => RaftReply::Applied {
                    index: 0,
                    frozen_for: None,
                },
            });
        }
        if let RaftRequest::Checksum(id) = msg.body {
            return Ok(RaftReply::Checksum(
                self.replica(msg.range_id)
                    .filter(|r| r.replica_id() == msg.to)
                    .and_then(|r| r.shared().checksum(id)),
            ));
        }
        if let Some(why) = self.broken.read().get(&msg.range_id) {
            return Err(format!(
                "{}: replica on {} is stopped: {why}",
                msg.range_id, self.config.node_id
            ));
        }
        let replica = match self.replica(msg.range_id) {
            Some(r) if r.replica_id() == msg.to => r,
            Some(r) if r.replica_id() > msg.to => {
                return Err(format!(
                    "{}: message for replica {} but this store holds newer replica {}",
                    msg.range_id,
                    msg.to,
                    r.replica_id()
                ));
            }
            _ => self
                .create_replica(msg.range_id, msg.to)
                .await
                .map_err(|e| e.to_string())?,
        };
        // A snapshot may only land where no other replica of this store holds its keys:
        // until this store's replica of the range it was split from has applied the
        // split, the keys are that replica's, and the leader must retry later.
        if let RaftRequest::Snapshot(chunk) = &msg.body
            && let Some(header) = &chunk.header
        {
            self.make_room_for_snapshot(&header.descriptor, &header.merged)
                .await?;
        }
        replica.group().handle(msg.body).await
    }

    /// Creates (or replaces an older replica of the range with) replica `replica_id`.
    async fn create_replica(
        &self,
        range_id: RangeId,
        replica_id: ReplicaId,
    ) -> Result<Arc<Replica>, StoreError> {
        let _l = self.lifecycle.lock().await;
        let tombstone = keys::range_tombstone_key(range_id);
        if let Some(stored) = self.engine.get(Space::Raft, &tombstone).map_err(storage)? {
            let lowest: u64 = decode(range_id, &tombstone, &stored).map_err(storage)?;
            if replica_id.0 < lowest {
                return Err(StoreError::Storage(format!(
                    "{range_id}: replica {replica_id} was removed from this store"
                )));
            }
        }
        if let Some(existing) = self.replica(range_id) {
            if existing.replica_id() == replica_id {
                return Ok(existing);
            }
            if existing.replica_id() > replica_id {
                return Err(StoreError::Storage(format!(
                    "{range_id}: replica {replica_id} is stale"
                )));
            }
            self.destroy_replica_locked(&existing).await?;
        }
        self.record_replica_id(range_id, replica_id).await?;
        self.start_replica(range_id, replica_id).await
    }

    /// Stops a replica and removes all its state and data from the store.
    async fn destroy_replica_locked(&self, replica: &Arc<Replica>) -> Result<(), StoreError> {
        let range_id = replica.range_id();
        replica.group().shutdown().await;
        self.replicas.write().remove(&range_id);
        let mut b = WriteBatch::new();
        if let Some(desc) = replica.descriptor() {
            for span in self.unowned_data_spans(&desc) {
                b.delete_range(Space::Data, span.start, span.end);
            }
        }
        b.delete_range(
            Space::Raft,
            keys::range_id_prefix(range_id),
            keys::range_id_prefix_end(range_id),
        );
        // Messages still on their way to the destroyed replica must not bring it back.
        let tombstone = keys::range_tombstone_key(range_id);
        let lowest = replica.replica_id().0 + 1;
        b.put(
            Space::Raft,
            tombstone.clone(),
            encode(&tombstone, &lowest).map_err(storage)?,
        );
        self.writer.write(b).await.map_err(storage)?;
        tracing::info!(node = %self.config.node_id, range = %range_id, replica = %replica.replica_id(), "replica destroyed");
        Ok(())
    }

    /// The data spans of `desc` that no other replica of this store holds: a removed
    /// replica that missed splits still claims keys that other replicas here may own.
    fn unowned_data_spans(&self, desc: &RangeDescriptor) -> Vec<keys::Span> {
        let mut others: Vec<(Vec<u8>, Vec<u8>)> = self
            .claims_overlapping(desc)
            .into_iter()
            .map(|d| (d.start_key, d.end_key))
            .collect();
        others.sort();
        let mut gaps = Vec::new();
        let mut at = desc.start_key.clone();
        for (start, end) in others {
            if start > at {
                gaps.push((at.clone(), start.clone()));
            }
            if end > at {
                at = end;
            }
        }
        if at < desc.end_key {
            gaps.push((at, desc.end_key.clone()));
        }
        gaps.into_iter()
            .flat_map(|(start_key, end_key)| {
                data_spans(&RangeDescriptor {
                    start_key,
                    end_key,
                    ..desc.clone()
                })
            })
            .collect()
    }

    /// Serves a batch on the addressed range.
    pub async fn send_batch(&self, batch: BatchRequest) -> Result<BatchResponse, api::Error> {
        let range_id = batch.header.range_id;
        if let Some(why) = self.broken.read().get(&range_id) {
            return Err(api::Error::RangeUnavailable {
                range_id,
                reason: format!("replica on {} is stopped: {why}", self.config.node_id),
            });
        }
        match self.replica(range_id) {
            Some(r) => r.send(batch).await,
            None => {
                tracing::debug!(node = %self.config.node_id, range = %range_id, "request for a range this store does not hold");
                Err(api::Error::RangeNotFound {
                    range_id,
                    node_id: self.config.node_id,
                })
            }
        }
    }

    /// One pass of the replicate queue: for every range this store leads, asks the
    /// allocator for the next change (see [`crate::allocator`]) and makes it. Repairs
    /// (draining dead and decommissioning nodes, up-replication) are made for every
    /// range; at most one optional move (a rebalancing replica or lease) per pass, so the
    /// nodes' published counts can catch up. Returns the changes made.
    pub async fn replicate_queue_pass(
        &self,
        view: &mut ClusterView,
        rebalance: bool,
    ) -> Vec<(RangeId, Action)> {
        let mut done = Vec::new();
        let mut moved = !rebalance;
        for replica in self.replicas() {
            let status = replica.status();
            if !status.is_leader || status.stopped.is_some() {
                continue;
            }
            let Some(desc) = replica.descriptor() else {
                continue;
            };
            // A frozen range keeps its replicas until its merge is done or abandoned.
            if replica.frozen_for().is_some() {
                continue;
            }
            let Some((action, reason)) =
                allocator::plan(&desc, replica.replica_id(), view, !moved, &status.caught_up)
            else {
                continue;
            };
            tracing::info!(range = %desc, ?action, ?reason, "replicate queue");
            match self.apply_action(&replica, &desc, &action, view).await {
                Ok(()) => {
                    moved |= matches!(reason, Reason::RebalanceReplicas | Reason::RebalanceLeases);
                    view.record(&desc, self.node_id(), &action);
                    done.push((desc.range_id, action));
                }
                Err(e) => {
                    tracing::warn!(range = %desc, ?action, error = %e, "replicate queue: change failed; will retry");
                }
            }
        }
        done
    }

    /// Makes one allocator change on a range this store leads. A membership change
    /// ends by rewriting the range's meta entry, so senders find the new replicas.
    async fn apply_action(
        &self,
        replica: &Arc<Replica>,
        desc: &RangeDescriptor,
        action: &Action,
        view: &ClusterView,
    ) -> Result<(), GroupError> {
        let _changing = replica.replica_changes.lock().await;
        if let Some(into) = replica.frozen_for() {
            return Err(GroupError::Membership(format!(
                "{desc} is frozen for a merge into {into}"
            )));
        }
        let group = replica.group();
        let mut voters: BTreeSet<ReplicaId> = desc.voters().map(|r| r.replica_id).collect();
        match action {
            Action::TransferLease { to } => return replica.transfer_lease(*to).await,
            Action::RemoveLearners(ids) => {
                group.remove_learners(ids.iter().copied().collect()).await?;
            }
            Action::AddVoters { add, promote } => {
                let mut next = desc.next_replica_id;
                for node in add {
                    self.add_learner(replica, desc.range_id, next, *node, view)
                        .await?;
                    voters.insert(next);
                    next = ReplicaId(next.0 + 1);
                }
                // Learners left from an interrupted attempt vote only once caught up.
                for id in promote {
                    let node = desc.replica(*id).map(|r| r.node_id).unwrap_or(NodeId(0));
                    self.wait_caught_up(replica, *id, node).await?;
                }
                voters.extend(promote.iter().copied());
                group.set_voters(voters).await?;
            }
            Action::Replace { remove, add } => {
                let new = desc.next_replica_id;
                self.add_learner(replica, desc.range_id, new, *add, view)
                    .await?;
                voters.remove(remove);
                voters.insert(new);
                // Joint consensus: the old and new voter sets both agree to the change,
                // and the removed voter leaves the group entirely.
                group.set_voters(voters).await?;
            }
        }
        replica.meta_dirty.store(true, Ordering::Relaxed);
        if let Some(now) = replica.descriptor()
            && replica.write_meta(&[&now]).await.is_ok()
        {
            replica.meta_dirty.store(false, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Adds a learner on `node` and waits until it holds the log as of now. Gives up
    /// after [`LEARNER_CATCH_UP_TIMEOUT`], as soon as the node is no longer live, or if
    /// this replica stops leading; the learner left behind is removed by a later pass.
    async fn add_learner(
        &self,
        replica: &Replica,
        range_id: RangeId,
        id: ReplicaId,
        node: NodeId,
        view: &ClusterView,
    ) -> Result<(), GroupError> {
        let addr = view
            .nodes
            .get(&node)
            .map(|n| n.addr.clone())
            .unwrap_or_default();
        tracing::info!(range = %range_id, replica = %id, node = %node, "adding learner");
        replica
            .group()
            .add_learner(
                id,
                ReplicaNode {
                    node_id: node,
                    addr,
                },
            )
            .await?;
        self.wait_caught_up(replica, id, node).await
    }

    /// Waits until learner `id` (on `node`) holds the log as of now; gives up as
    /// [`Store::add_learner`] says.
    async fn wait_caught_up(
        &self,
        replica: &Replica,
        id: ReplicaId,
        node: NodeId,
    ) -> Result<(), GroupError> {
        let group = replica.group();
        let target = group.status().last_log_index;
        let deadline = tokio::time::Instant::now() + LEARNER_CATCH_UP_TIMEOUT;
        loop {
            let status = group.status();
            if !status.is_leader {
                return Err(GroupError::NotLeader {
                    leader: status.leader,
                    lease_expired: false,
                });
            }
            if status.matched(id) >= target {
                return Ok(());
            }
            let why = if !self.is_live(node) {
                "its node is not live"
            } else if tokio::time::Instant::now() >= deadline {
                "it did not catch up in time"
            } else {
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            return Err(GroupError::Membership(format!(
                "gave up adding learner {id} on {node}: {why}"
            )));
        }
    }

    /// Installs how the store learns whether a node is live (the node's liveness
    /// records); until then every node counts as live.
    pub fn set_liveness(&self, is_live: Arc<dyn Fn(NodeId) -> bool + Send + Sync>) {
        let _ = self.liveness.set(is_live);
    }

    fn is_live(&self, node: NodeId) -> bool {
        self.liveness.get().is_none_or(|f| f(node))
    }

    /// One pass of the replica GC: a replica this store holds but does not lead asks
    /// its range (through the cluster, so the leaseholder answers) for the range's
    /// current descriptor, and is destroyed if that no longer lists it. Replicas whose
    /// own descriptor already leaves them out are checked every pass, the others once
    /// per `every`. Returns the ranges whose replica was destroyed.
    ///
    /// Only the range's own descriptor, read from its leaseholder, decides: membership
    /// only ever adds replicas under fresh ids, so a replica left out of it has been
    /// removed and no quorum counts on its state.
    pub async fn replica_gc_pass(&self, every: Duration) -> Vec<RangeId> {
        let now = std::time::Instant::now();
        let mut destroyed = Vec::new();
        for replica in self.replicas() {
            let status = replica.status();
            if status.is_leader || status.stopped.is_some() {
                continue;
            }
            // An uninitialised replica (no snapshot yet) holds no data to free.
            let Some(local) = replica.descriptor() else {
                continue;
            };
            let listed = local.replica(replica.replica_id()).is_some();
            let due = {
                let mut checked = self.gc_checked.lock();
                let last = checked.entry(local.range_id).or_insert(now);
                let due = !listed || now.duration_since(*last) >= every;
                if due {
                    *last = now;
                }
                due
            };
            if !due {
                continue;
            }
            match self.is_removed(&replica, &local).await {
                Ok(Some(current)) => {
                    let _l = self.lifecycle.lock().await;
                    // Still the same replica, and no other replica here holds its keys.
                    let same = self
                        .replica(local.range_id)
                        .is_some_and(|r| Arc::ptr_eq(&r, &replica));
                    // Other replicas here may hold some of its keys: a removed replica
                    // that missed splits (left until the others' snapshots land), or a
                    // frozen one whose merge this store took by snapshot (destroyed
                    // now; only the keys nobody here holds go with it).
                    let merged_here = replica.frozen_for().is_some_and(|into| {
                        self.replica(into.range_id)
                            .is_some_and(|l| l.shared().has_merged(local.range_id))
                    });
                    if !same || (self.overlapping_replica(&local).is_some() && !merged_here) {
                        continue;
                    }
                    tracing::info!(node = %self.config.node_id, range = %local, %current, "replica was removed from its range; destroying it");
                    match self.destroy_replica_locked(&replica).await {
                        Ok(()) => destroyed.push(local.range_id),
                        Err(e) => {
                            tracing::warn!(range = %local, error = %e, "destroying a removed replica")
                        }
                    }
                    self.gc_checked.lock().remove(&local.range_id);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(range = %local, error = %e, "replica GC: cannot read the range's descriptor")
                }
            }
        }
        destroyed
    }

    /// The range's current descriptor, if it shows `replica` removed: the range no longer
    /// lists it, or lists a newer replica on this node.
    async fn is_removed(
        &self,
        replica: &Replica,
        local: &RangeDescriptor,
    ) -> Result<Option<RangeDescriptor>, api::Error> {
        let sender = replica.cluster_sender()?;
        let get = BatchRequest::new(
            local.range_id,
            vec![api::Request::Get {
                key: keys::range_descriptor_key(&local.start_key),
            }],
        );
        let resp = sender.send(get).await?;
        let Some(api::Response::Get { value: Some(v) }) = resp.responses.into_iter().next() else {
            // No range starts here any more: a merge took the keys.
            return Ok(self.left_over_from_merge(replica));
        };
        let current: RangeDescriptor = postcard::from_bytes(&v).map_err(|e| {
            api::Error::InvalidRequest(format!("undecodable range descriptor: {e}"))
        })?;
        if current.range_id != local.range_id {
            return Ok(self.left_over_from_merge(replica));
        }
        if current.generation < local.generation {
            return Ok(None);
        }
        let removed = match current.replica_on(self.config.node_id) {
            None => true,
            Some(r) => r.replica_id > replica.replica_id(),
        };
        Ok(removed.then_some(current))
    }

    /// Whether `replica`, whose range no longer starts where it did (a merge took its
    /// keys), is left over: it was removed from its range before the merge, or it is
    /// frozen for a range with no replica on this store to retire it (a replica of that
    /// range here that has not applied the merge yet takes the keys when it does).
    /// Returns the descriptor that shows it, for the log.
    fn left_over_from_merge(&self, replica: &Replica) -> Option<RangeDescriptor> {
        match replica.frozen_for() {
            Some(into) => match self.replica(into.range_id) {
                None => Some(into),
                // It merged this range (by a snapshot that skipped the merge entry).
                Some(l) if l.shared().has_merged(replica.range_id()) => Some(into),
                Some(_) => None,
            },
            None => replica.descriptor(),
        }
    }

    /// Stops every replica (the store's data stays on disk).
    pub async fn shutdown(&self) {
        let all: Vec<Arc<Replica>> = self.replicas.write().drain().map(|(_, r)| r).collect();
        for r in all {
            r.group().shutdown().await;
        }
    }
}

impl Sender for Store {
    fn send(&self, batch: BatchRequest) -> BoxFuture<'_, Result<BatchResponse, api::Error>> {
        Box::pin(self.send_batch(batch))
    }
}
