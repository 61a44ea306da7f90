//! One range's Raft group, and the only module that names openraft.
//!
//! Each range is its own openraft group. Everything openraft needs lives here:
//!
//! - [`log_store`]: the group's Raft log, vote and committed index in the store's
//!   `Space::Raft`, keyed by range id, every entry checksummed. Appends of all groups go
//!   through the store's group-commit [`crate::log_writer::LogWriter`].
//! - [`state_machine`]: applies committed commands (write batches evaluated by the
//!   leaseholder) to the MVCC data atomically with the range's applied state; builds and
//!   installs snapshots of the range's data.
//! - [`network`]: sends Raft messages through a [`RaftTransport`], and streams snapshots
//!   in chunks.
//!
//! The rest of the crate sees [`RaftGroup`]: propose a command, check the lease, read
//! the group's status, change its members, hand it an incoming message. When openraft's
//! API moves (it is pinned at an alpha), this module is what changes.
//!
//! Identities: openraft's node id is our [`ReplicaId`] (unique within the range, never
//! reused, as openraft requires); its node info is a [`ReplicaNode`] naming the physical
//! node and the address it had when the replica was added (the transport resolves
//! current addresses by node id).
//!
//! Leases: the Raft leader holds the range lease. openraft's leader lease (a leader whose
//! quorum acknowledged it within the last `election_timeout_max` may answer reads without
//! a round trip, and followers refuse to vote for another leader meanwhile) backs
//! [`RaftGroup::lease_read`].
//!
//! HAZARD: the lease rests on the leader's and followers' local monotonic clocks running
//! at about the same rate over one election timeout. A node whose clock runs much slower
//! than its peers' could serve a read after a new leader has been elected.

pub mod log_store;
pub mod network;
pub mod state_machine;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use cairn_kv::api::{BoxFuture, RangeDescriptor, ReplicaId};
use cairn_kv::storage::{Engine, WriteBatch};
use cairn_kv::{NodeId, RangeId};
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{ClientWriteError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotMetaOf, SnapshotOf, VoteOf};
use openraft::{ChangeMembers, Config, Raft, ReadPolicy, ServerState};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::log_writer::LogWriter;
use log_store::LogStore;
use network::NetworkFactory;
pub use state_machine::ReplicaShared;
use state_machine::{SnapshotData, StateMachine};

/// A physical node as openraft's node info: which node holds a replica, and the address
/// it had when the replica was added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaNode {
    pub node_id: NodeId,
    pub addr: String,
}

/// What a range's Raft log carries: the effects of evaluating one batch, and the
/// range's new descriptor when the command changes it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RaftCommand {
    pub batch: WriteBatch,
    pub new_descriptor: Option<RangeDescriptor>,
    /// Set on the command that splits the range: `new_descriptor` is then the left-hand
    /// side, and applying the command creates the right-hand range on every replica.
    pub split: Option<SplitTrigger>,
    /// Set on the command a leaseholder proposes just before handing leadership to
    /// another replica (see `Replica::transfer_lease`).
    pub lease_handoff: Option<LeaseHandoff>,
    /// Set on the command that merges the right-hand neighbour into the range:
    /// `new_descriptor` is then the merged range (see [`crate::merge`]).
    pub merge: Option<MergeTrigger>,
    /// A step of a merge other than the merge itself (see [`MergeStep`]).
    pub merge_step: Option<MergeStep>,
    /// Set on a consistency check's command: every replica hashes the range's data as
    /// of this entry, under this check id (see [`crate::consistency`]).
    pub checksum: Option<u64>,
}

/// The right-hand range a merge takes over.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MergeTrigger {
    /// The right-hand range as it was frozen.
    pub right: RangeDescriptor,
    /// The generation of the left-hand range the merge was evaluated against: the merge
    /// is refused when applied if the range has changed since (split, replica change,
    /// or a merge abandoned by the right-hand side; see `ResolveMerge`).
    pub left_generation: u64,
    /// The log index of the right-hand range's freeze.
    pub freeze_index: u64,
}

/// The steps of a merge besides the merge itself (see [`crate::merge`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum MergeStep {
    /// On the right-hand range: stop serving, for `left` (as it was when it asked) to
    /// take over the keys.
    Freeze(RangeDescriptor),
    /// On the right-hand range: the merge into this left-hand range (as the freeze
    /// named it) was abandoned; serve again. A later freeze for another attempt (which
    /// names the left-hand range at a newer generation) stays.
    Lift(RangeDescriptor),
    /// On the left-hand range: refuse any merge of the right-hand range of this id
    /// proposed before (by moving the descriptor to a new generation), and answer
    /// whether one was applied.
    Refuse(cairn_kv::RangeId),
}

/// A lease handed from the leader of `term` to replica `to`: if `to` wins the next term,
/// its timestamp cache starts at `start` with the previous leaseholder's reads above it,
/// so it covers everything the previous leaseholder served.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseHandoff {
    pub term: u64,
    pub to: ReplicaId,
    pub start: cairn_kv::Timestamp,
    /// Reads served above `start` (at future timestamps), by span.
    pub reads: Vec<(cairn_kv::keys::Span, cairn_kv::Timestamp)>,
}

/// The right-hand side of a split (see [`crate::split`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SplitTrigger {
    pub right: RangeDescriptor,
}

impl fmt::Display for RaftCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command({} ops)", self.batch.len())
    }
}

/// What applying a command returns to its proposer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CommandResult {
    pub applied_index: u64,
    /// Why the command was applied as a no-op, if it was: a split evaluated against a
    /// descriptor that a membership change replaced before the split reached the log.
    pub rejected: Option<String>,
    /// For [`MergeStep::Refuse`]: whether the range had merged the right-hand range.
    pub merged: bool,
}

openraft::declare_raft_types!(
    /// Cairn's openraft type configuration.
    pub TypeConfig:
        D = RaftCommand,
        R = CommandResult,
        NodeId = u64,
        Node = ReplicaNode,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, u64>,
        AsyncRuntime = openraft_rt_tokio::TokioRuntime,
);

/// A Raft message of one range, from one replica to another.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RaftEnvelope {
    pub range_id: RangeId,
    pub from: ReplicaId,
    pub to: ReplicaId,
    /// The node holding `to`.
    pub to_node: NodeId,
    /// That node's address when the replica was added (the transport prefers the
    /// address it knows now).
    pub to_addr: String,
    pub body: RaftRequest,
}

/// The body of a Raft message.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<TypeConfig>),
    /// Would you vote for me? (Asked before an election, which it does not disturb.)
    PreVote(VoteRequest<TypeConfig>),
    /// The leader asks the target to take over leadership now.
    TransferLeader(TransferLeaderRequest<TypeConfig>),
    /// A piece of a snapshot; see [`network`] for the stream.
    Snapshot(SnapshotChunk),
    /// How far has the replica applied its log, and is it frozen? (Asked by a merge,
    /// answered by the store without creating the replica; see [`crate::merge`].)
    Applied,
    /// The result of consistency check `id` (see [`crate::consistency`]), answered by
    /// the store.
    Checksum(u64),
}

/// The answer to a [`RaftRequest`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RaftReply {
    AppendEntries(AppendEntriesResponse<TypeConfig>),
    Vote(VoteResponse<TypeConfig>),
    TransferLeader(TransferLeaderResponse<TypeConfig>),
    /// A non-final snapshot chunk was staged.
    SnapshotChunkStaged,
    /// The final chunk arrived and the snapshot was installed (or refused: the vote in
    /// the response says whose term it is).
    SnapshotInstalled(SnapshotResponse<TypeConfig>),
    /// The answer to [`RaftRequest::Applied`]: the replica's applied index (0: the store
    /// holds no replica of the range) and the range it is frozen for.
    Applied {
        index: u64,
        frozen_for: Option<RangeId>,
    },
    /// The answer to [`RaftRequest::Checksum`]: `None` until the replica has computed it
    /// (or when the store holds no such replica).
    Checksum(Option<crate::consistency::ReplicaChecksum>),
}

/// One chunk of a snapshot stream. The first carries the header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// Identifies the stream; a new id abandons any stream staged before.
    pub stream_id: u64,
    /// Position in the stream, from 0.
    pub seq: u32,
    pub header: Option<Box<SnapshotHeader>>,
    /// Raw `Space::Data` entries of the range.
    pub kvs: Vec<(Vec<u8>, Vec<u8>)>,
    pub last: bool,
}

/// What a snapshot is of.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SnapshotHeader {
    pub vote: VoteOf<TypeConfig>,
    pub meta: SnapshotMetaOf<TypeConfig>,
    pub descriptor: RangeDescriptor,
    /// The left-hand range the range is frozen for (see [`crate::merge`]), if it is.
    pub frozen: Option<RangeDescriptor>,
    /// The ranges it merged most recently.
    pub merged: Vec<RangeId>,
}

/// Sends Raft messages to other nodes; implemented by the node's RPC transport (and by
/// in-process transports in tests).
pub trait RaftTransport: Send + Sync + 'static {
    /// Delivers `msg` to `msg.to_node` and returns the reply, or an error if the node
    /// could not be reached, refused the message, or did not answer within `timeout`.
    fn send(
        &self,
        msg: RaftEnvelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<RaftReply, String>>;
}

/// Raft settings of every group of a store.
#[derive(Clone, Copy, Debug)]
pub struct RaftConfig {
    pub heartbeat: Duration,
    pub election_min: Duration,
    pub election_max: Duration,
    /// Take a snapshot (and allow the log before it to be purged) every this many
    /// entries. The state machine is the store, so a snapshot costs nothing to take.
    pub snapshot_every: u64,
    /// Entries kept behind a snapshot, so a follower a little behind catches up from
    /// the log instead of a snapshot.
    pub log_kept_behind_snapshot: u64,
}

impl Default for RaftConfig {
    fn default() -> Self {
        RaftConfig {
            heartbeat: Duration::from_millis(250),
            election_min: Duration::from_millis(1000),
            election_max: Duration::from_millis(2000),
            snapshot_every: 2000,
            log_kept_behind_snapshot: 500,
        }
    }
}

/// Why a group could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// This replica is not the leader (or its lease lapsed); `leader` is who is, if known.
    #[error("not leader")]
    NotLeader {
        leader: Option<ReplicaId>,
        lease_expired: bool,
    },
    /// The group cannot make progress (no quorum, shutting down).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A proposal's outcome is unknown.
    #[error("ambiguous: {0}")]
    Ambiguous(String),
    /// The replica hit a storage error or corruption and stopped.
    #[error("replica stopped: {0}")]
    Stopped(String),
    /// A membership change was refused.
    #[error("membership change refused: {0}")]
    Membership(String),
}

/// What a group's metrics say now.
#[derive(Clone, Debug, Default)]
pub struct GroupStatus {
    pub replica_id: ReplicaId,
    pub is_leader: bool,
    pub leader: Option<ReplicaId>,
    pub term: u64,
    pub last_log_index: u64,
    pub committed_index: u64,
    pub applied_index: u64,
    pub voters: BTreeSet<ReplicaId>,
    pub learners: BTreeSet<ReplicaId>,
    /// The node of each member.
    pub nodes: BTreeMap<ReplicaId, NodeId>,
    /// Follower lag in entries (leader only): last log index minus each follower's
    /// matched index.
    pub follower_lag: BTreeMap<ReplicaId, u64>,
    /// Followers that acknowledged the leader within the minimum election timeout and
    /// hold its whole log (leader only): those fit to take over leadership.
    pub caught_up: BTreeSet<ReplicaId>,
    /// Why the replica stopped, if it did.
    pub stopped: Option<String>,
}

impl GroupStatus {
    /// The last log index `replica` is known to hold (leader only; 0 if unknown).
    pub fn matched(&self, replica: ReplicaId) -> u64 {
        self.follower_lag
            .get(&replica)
            .map(|lag| self.last_log_index.saturating_sub(*lag))
            .unwrap_or(0)
    }
}

/// A snapshot stream being received.
struct Staging {
    stream_id: u64,
    next_seq: u32,
    header: Option<SnapshotHeader>,
    kvs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// See [`RaftGroup::leadership_watch`].
pub struct LeadershipWatch {
    rx: openraft::type_config::alias::WatchReceiverOf<
        TypeConfig,
        openraft::RaftMetrics<TypeConfig>,
    >,
    term: u64,
}

impl LeadershipWatch {
    /// Waits until this replica leads in a term it did not lead in before; returns the
    /// term, or `None` once the group has stopped.
    pub async fn next(&mut self) -> Option<u64> {
        loop {
            {
                let m = self.rx.borrow_watched();
                if m.state == ServerState::Leader && m.current_term != self.term {
                    self.term = m.current_term;
                    return Some(self.term);
                }
            }
            self.rx.changed().await.ok()?;
        }
    }
}

/// One replica's Raft group.
pub struct RaftGroup {
    raft: Raft<TypeConfig, StateMachine>,
    range_id: RangeId,
    replica_id: ReplicaId,
    staging: Mutex<Option<Staging>>,
}

fn config(timing: RaftConfig) -> Result<Arc<Config>, GroupError> {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let cfg = Config {
        cluster_name: "cairn".into(),
        heartbeat_interval: ms(timing.heartbeat),
        election_timeout_min: ms(timing.election_min),
        election_timeout_max: ms(timing.election_max),
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timing.snapshot_every),
        max_in_snapshot_log_to_keep: timing.log_kept_behind_snapshot,
        // A follower further behind than a snapshot's worth of entries gets a snapshot.
        replication_lag_threshold: timing.snapshot_every,
        purge_batch_size: timing.snapshot_every.clamp(1, 256),
        // A snapshot is streamed chunk by chunk, each acknowledged; this bounds one
        // chunk's round trip.
        install_snapshot_timeout: 10_000,
        enable_pre_vote: Some(true),
        ..Default::default()
    };
    cfg.validate()
        .map(Arc::new)
        .map_err(|e| GroupError::Unavailable(format!("raft config: {e}")))
}

impl RaftGroup {
    /// Starts (or restarts, from what the store holds) this store's replica of a range.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        range_id: RangeId,
        replica_id: ReplicaId,
        engine: Arc<dyn Engine>,
        writer: Arc<LogWriter>,
        transport: Arc<dyn RaftTransport>,
        shared: Arc<ReplicaShared>,
        timing: RaftConfig,
    ) -> Result<RaftGroup, GroupError> {
        let log = LogStore::new(range_id, engine.clone(), writer.clone());
        let sm = StateMachine::open(range_id, replica_id, engine, writer, shared)
            .map_err(|e| GroupError::Stopped(format!("loading applied state: {e}")))?;
        let net = NetworkFactory::new(range_id, replica_id, transport);
        let raft = Raft::new(replica_id.0, config(timing)?, net, log, sm)
            .await
            .map_err(|e| GroupError::Stopped(format!("starting raft: {e}")))?;
        Ok(RaftGroup {
            raft,
            range_id,
            replica_id,
            staging: Mutex::new(None),
        })
    }

    pub fn range_id(&self) -> RangeId {
        self.range_id
    }

    pub fn replica_id(&self) -> ReplicaId {
        self.replica_id
    }

    /// Makes a new group of the given members. Safe to call on every member with the
    /// same members; a group that already has state ignores it.
    pub async fn initialize(&self, members: &[(ReplicaId, ReplicaNode)]) -> Result<(), GroupError> {
        let nodes: BTreeMap<u64, ReplicaNode> =
            members.iter().map(|(r, n)| (r.0, n.clone())).collect();
        match self.raft.initialize(nodes).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::errors::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(GroupError::Unavailable(format!("initialize: {e}"))),
        }
    }

    /// Replicates `cmd` and returns once it is applied on this replica (the leader).
    pub async fn propose(&self, cmd: RaftCommand) -> Result<CommandResult, GroupError> {
        match self.raft.client_write(cmd).await {
            Ok(resp) => Ok(resp.data),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(not_leader(&f)),
            Err(RaftError::APIError(ClientWriteError::LogEntryDiscarded(_))) => Err(
                GroupError::Ambiguous("leadership changed before the command was applied".into()),
            ),
            Err(RaftError::APIError(e)) => Err(GroupError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(self.stopped(f.to_string())),
        }
    }

    /// Returns once this replica holds the lease and has applied everything committed
    /// before now: a read of its state is then linearizable.
    pub async fn lease_read(&self) -> Result<(), GroupError> {
        match self.raft.ensure_linearizable(ReadPolicy::LeaseRead).await {
            Ok(_) => Ok(()),
            Err(RaftError::APIError(openraft::errors::LinearizableReadError::ForwardToLeader(
                f,
            ))) => Err(not_leader(&f)),
            Err(RaftError::APIError(e)) => Err(GroupError::Unavailable(e.to_string())),
            Err(RaftError::Fatal(f)) => Err(self.stopped(f.to_string())),
        }
    }

    fn stopped(&self, reason: String) -> GroupError {
        match self.status().stopped {
            Some(why) => GroupError::Stopped(why),
            None => GroupError::Stopped(reason),
        }
    }

    /// A watch of the group's leadership: yields each time this replica becomes leader
    /// (in a new term).
    pub fn leadership_watch(&self) -> LeadershipWatch {
        LeadershipWatch {
            rx: self.raft.metrics(),
            term: 0,
        }
    }

    /// Whether this replica leads now (cheap: no copy of the group's metrics).
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().state == ServerState::Leader
    }

    /// The current Raft term (cheap: no copy of the group's metrics).
    pub fn current_term(&self) -> u64 {
        self.raft.metrics().borrow_watched().current_term
    }

    /// The group's state as of now.
    pub fn status(&self) -> GroupStatus {
        let m = self.raft.metrics().borrow_watched().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<ReplicaId> = membership.voter_ids().map(ReplicaId).collect();
        let learners: BTreeSet<ReplicaId> = membership.learner_ids().map(ReplicaId).collect();
        let nodes = membership
            .nodes()
            .map(|(id, n)| (ReplicaId(*id), n.node_id))
            .collect();
        let last_log_index = m.last_log_index.unwrap_or(0);
        let follower_lag: BTreeMap<ReplicaId, u64> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .filter(|(id, _)| **id != self.replica_id.0)
                    .map(|(id, matched)| {
                        let matched = matched.as_ref().map(|l| l.index).unwrap_or(0);
                        (ReplicaId(*id), last_log_index.saturating_sub(matched))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let fresh = Duration::from_millis(self.raft.config().election_timeout_min);
        let caught_up = m
            .heartbeat
            .as_ref()
            .map(|h| {
                h.iter()
                    .filter(|(id, acked)| {
                        acked
                            .as_ref()
                            .is_some_and(|t| openraft::Instant::elapsed(&**t) < fresh)
                            && follower_lag.get(&ReplicaId(**id)) == Some(&0)
                    })
                    .map(|(id, _)| ReplicaId(*id))
                    .collect()
            })
            .unwrap_or_default();
        GroupStatus {
            caught_up,
            replica_id: self.replica_id,
            is_leader: m.state == ServerState::Leader,
            leader: m.current_leader.map(ReplicaId),
            term: m.current_term,
            last_log_index,
            committed_index: m.local_committed.as_ref().map(|l| l.index).unwrap_or(0),
            applied_index: m.last_applied.as_ref().map(|l| l.index).unwrap_or(0),
            voters,
            learners,
            nodes,
            follower_lag,
            stopped: m.running_state.as_ref().err().map(|e| e.to_string()),
        }
    }

    /// Adds a learner; returns once the change is committed, before the learner has
    /// caught up (see [`GroupStatus::matched`]).
    pub async fn add_learner(
        &self,
        replica: ReplicaId,
        node: ReplicaNode,
    ) -> Result<(), GroupError> {
        self.raft
            .add_learner(replica.0, node, false)
            .await
            .map(|_| ())
            .map_err(membership_error)
    }

    /// Makes `voters` the voting members (joint consensus); learners not named stay
    /// learners, voters not named become learners unless `remove` is set.
    pub async fn set_voters(&self, voters: BTreeSet<ReplicaId>) -> Result<(), GroupError> {
        let ids: BTreeSet<u64> = voters.iter().map(|r| r.0).collect();
        self.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(ids), false)
            .await
            .map(|_| ())
            .map_err(membership_error)
    }

    /// Removes learners (replicas that no longer vote) from the group.
    pub async fn remove_learners(&self, learners: BTreeSet<ReplicaId>) -> Result<(), GroupError> {
        let ids: BTreeSet<u64> = learners.iter().map(|r| r.0).collect();
        self.raft
            .change_membership(ChangeMembers::RemoveNodes(ids), false)
            .await
            .map(|_| ())
            .map_err(membership_error)
    }

    /// Takes a snapshot of everything applied and removes the log up to it, so that a
    /// replica added later starts from a snapshot rather than replaying the log from
    /// the group's first entry. Waits (bounded) until the log is purged.
    pub async fn compact(&self, timeout: Duration) -> Result<(), GroupError> {
        let applied = self.status().applied_index;
        let fatal = |e: openraft::errors::Fatal<TypeConfig>| GroupError::Stopped(e.to_string());
        self.raft.trigger().snapshot().await.map_err(fatal)?;
        let mut rx = self.raft.metrics();
        let deadline = tokio::time::Instant::now() + timeout;
        let reached =
            |m: &openraft::RaftMetrics<TypeConfig>,
             f: fn(&openraft::RaftMetrics<TypeConfig>) -> Option<u64>| {
                f(m).is_some_and(|i| i >= applied)
            };
        let snapshot_of =
            |m: &openraft::RaftMetrics<TypeConfig>| m.snapshot.as_ref().map(|l| l.index);
        let purged_of = |m: &openraft::RaftMetrics<TypeConfig>| m.purged.as_ref().map(|l| l.index);
        let mut purge_asked = false;
        loop {
            let m = rx.borrow_watched().clone();
            if reached(&m, purged_of) {
                return Ok(());
            }
            if !purge_asked && reached(&m, snapshot_of) {
                self.raft
                    .trigger()
                    .purge_log(applied)
                    .await
                    .map_err(fatal)?;
                purge_asked = true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => {
                    return Err(GroupError::Unavailable(format!(
                        "{}: log not compacted to {applied} in {timeout:?}",
                        self.range_id
                    )));
                }
            }
        }
    }

    /// Starts an election with this replica as candidate.
    pub fn campaign(&self) {
        let raft = self.raft.clone();
        tokio::spawn(async move {
            let _ = raft.trigger().elect(false).await;
        });
    }

    /// Asks the group to move leadership to `to`.
    pub async fn transfer_leader(&self, to: ReplicaId) -> Result<(), GroupError> {
        self.raft
            .trigger()
            .transfer_leader(to.0)
            .await
            .map_err(|e| self.stopped(e.to_string()))
    }

    /// Handles a message from another replica of the group.
    pub async fn handle(&self, msg: RaftRequest) -> Result<RaftReply, String> {
        match msg {
            RaftRequest::AppendEntries(req) => self
                .raft
                .append_entries(req)
                .await
                .map(RaftReply::AppendEntries)
                .map_err(|e| e.to_string()),
            RaftRequest::Vote(req) => self
                .raft
                .vote(req)
                .await
                .map(RaftReply::Vote)
                .map_err(|e| e.to_string()),
            RaftRequest::PreVote(req) => self
                .raft
                .pre_vote(req)
                .await
                .map(RaftReply::Vote)
                .map_err(|e| e.to_string()),
            RaftRequest::Applied | RaftRequest::Checksum(_) => {
                Err("the store answers Applied and Checksum, not the group".into())
            }
            RaftRequest::TransferLeader(req) => self
                .raft
                .handle_transfer_leader(req)
                .await
                .map(RaftReply::TransferLeader)
                .map_err(|e| e.to_string()),
            RaftRequest::Snapshot(chunk) => self.receive_snapshot_chunk(chunk).await,
        }
    }

    async fn receive_snapshot_chunk(&self, chunk: SnapshotChunk) -> Result<RaftReply, String> {
        let finished = {
            let mut staging = self.staging.lock();
            if chunk.seq == 0 {
                *staging = Some(Staging {
                    stream_id: chunk.stream_id,
                    next_seq: 0,
                    header: None,
                    kvs: Vec::new(),
                });
            }
            let Some(st) = staging.as_mut() else {
                return Err(format!("snapshot chunk {} of an unknown stream", chunk.seq));
            };
            if st.stream_id != chunk.stream_id || st.next_seq != chunk.seq {
                return Err(format!(
                    "snapshot chunk {} of stream {} out of order (expected {} of {})",
                    chunk.seq, chunk.stream_id, st.next_seq, st.stream_id
                ));
            }
            st.next_seq += 1;
            if chunk.header.is_some() {
                st.header = chunk.header.map(|h| *h);
            }
            st.kvs.extend(chunk.kvs);
            if chunk.last { staging.take() } else { None }
        };
        let Some(done) = finished else {
            return Ok(RaftReply::SnapshotChunkStaged);
        };
        let header = done.header.ok_or("snapshot stream without a header")?;
        let snapshot = SnapshotOf::<TypeConfig, SnapshotData> {
            meta: header.meta,
            snapshot: SnapshotData::Incoming {
                descriptor: header.descriptor,
                frozen: header.frozen,
                merged: header.merged,
                kvs: done.kvs,
            },
        };
        self.raft
            .install_full_snapshot(header.vote, snapshot)
            .await
            .map(RaftReply::SnapshotInstalled)
            .map_err(|e| e.to_string())
    }

    /// Stops the group's tasks.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(range = %self.range_id, error = %e, "raft shutdown");
        }
    }

    /// Waits until the group's metrics satisfy `f`, or `timeout` passes.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        f: impl Fn(&GroupStatus) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut rx = self.raft.metrics();
        loop {
            if f(&self.status()) {
                return true;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    tracing::debug!(range = %self.range_id, what, "wait timed out");
                    return f(&self.status());
                }
            }
        }
    }
}

fn not_leader(f: &openraft::errors::ForwardToLeader<TypeConfig>) -> GroupError {
    GroupError::NotLeader {
        leader: f.leader_id.map(ReplicaId),
        lease_expired: matches!(f.reason, openraft::errors::ForwardReason::LeaseExpired),
    }
}

fn membership_error(e: RaftError<TypeConfig, ClientWriteError<TypeConfig>>) -> GroupError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => not_leader(&f),
        RaftError::APIError(e) => GroupError::Membership(e.to_string()),
        RaftError::Fatal(f) => GroupError::Stopped(f.to_string()),
    }
}
