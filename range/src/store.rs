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

use crate::log_writer::LogWriter;
use crate::raft::log_store::{decode, encode};
use crate::raft::state_machine::{StoreEvent, data_spans};
use crate::raft::{
    GroupError, RaftConfig, RaftEnvelope, RaftGroup, RaftReply, RaftRequest, RaftTransport,
    ReplicaNode, ReplicaShared,
};
use crate::replica::Replica;

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
    /// Routes batches to any range of the cluster (the node's DistSender), for what a
    /// replica must ask of other ranges: new range ids and meta entries for splits.
    cluster: ClusterSender,
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
            cluster: Arc::new(OnceLock::new()),
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
    fn overlapping_replica(&self, desc: &RangeDescriptor) -> Option<RangeDescriptor> {
        self.replicas
            .read()
            .values()
            .filter(|r| r.range_id() != desc.range_id)
            .filter_map(|r| r.descriptor())
            .find(|d| d.start_key < desc.end_key && desc.start_key < d.end_key)
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
            && let Some(other) = self.overlapping_replica(&header.descriptor)
        {
            return Err(format!(
                "snapshot of {} overlaps {other} on {}; retry once it has split",
                header.descriptor, self.config.node_id
            ));
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
            for span in data_spans(&desc) {
                b.delete_range(Space::Data, span.start, span.end);
            }
        }
        b.delete_range(
            Space::Raft,
            keys::range_id_prefix(range_id),
            keys::range_id_prefix_end(range_id),
        );
        self.writer.write(b).await.map_err(storage)?;
        tracing::info!(node = %self.config.node_id, range = %range_id, replica = %replica.replica_id(), "replica destroyed");
        Ok(())
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

    /// One pass of the replicate queue: for every range this store leads, add replicas
    /// on live nodes until the range has as many voters as it should (3 once 3 nodes are
    /// live, else 1). `live` lists the live nodes and their addresses.
    pub async fn replicate_queue_pass(&self, live: &[(NodeId, String)]) {
        let desired = if live.len() >= 3 { 3 } else { 1 };
        for replica in self.replicas() {
            let status = replica.status();
            if !status.is_leader || status.stopped.is_some() {
                continue;
            }
            let Some(desc) = replica.descriptor() else {
                continue;
            };
            if let Err(e) = self.upreplicate(&replica, &desc, desired, live).await {
                tracing::warn!(range = %desc.range_id, error = %e, "up-replication failed; will retry");
            }
        }
    }

    /// Adds learners on live nodes until voters plus learners reach `desired`, then
    /// promotes them all in one membership change, so the range never passes through an
    /// even number of voters (2 voters tolerate no failure, as 1 does, but need both).
    async fn upreplicate(
        &self,
        replica: &Replica,
        desc: &RangeDescriptor,
        desired: usize,
        live: &[(NodeId, String)],
    ) -> Result<(), GroupError> {
        let voters: BTreeSet<ReplicaId> = desc.voters().map(|r| r.replica_id).collect();
        if voters.len() >= desired {
            return Ok(());
        }
        let is_live = |n: NodeId| live.iter().any(|(l, _)| *l == n);
        // Learners left over from an interrupted attempt count if their node lives.
        let mut promote: BTreeSet<ReplicaId> = desc
            .replicas
            .iter()
            .filter(|r| r.kind == ReplicaKind::Learner && is_live(r.node_id))
            .map(|r| r.replica_id)
            .collect();
        let mut next_id = desc.next_replica_id;
        for (node_id, addr) in live {
            if voters.len() + promote.len() >= desired {
                break;
            }
            if desc.replica_on(*node_id).is_some() {
                continue;
            }
            let node = ReplicaNode {
                node_id: *node_id,
                addr: addr.clone(),
            };
            tracing::info!(range = %desc.range_id, replica = %next_id, node = %node_id, "adding learner");
            replica.group().add_learner(next_id, node).await?;
            promote.insert(next_id);
            next_id = ReplicaId(next_id.0 + 1);
        }
        // Only a change that reaches an odd voter count is worth making now.
        let target = voters.len() + promote.len();
        if promote.is_empty() || (target < desired && target.is_multiple_of(2)) {
            return Ok(());
        }
        let mut new_voters = voters;
        new_voters.extend(promote);
        tracing::info!(range = %desc.range_id, voters = ?new_voters, "promoting learners to voters");
        replica.group().set_voters(new_voters).await
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
