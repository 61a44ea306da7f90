//! A range's state machine: the MVCC data of the range, in the store's `Space::Data`.
//!
//! Applying a batch of committed entries writes, in one engine write: the entries' write
//! batches (evaluated by the leaseholder before proposing), the range descriptor when an
//! entry changes it (a command carrying a new descriptor, or a membership change, whose
//! replicas the descriptor mirrors), and the range's applied state (last applied log id,
//! membership, descriptor). Replaying the same entries after a crash writes the same
//! bytes again, so applying is idempotent.
//!
//! The state machine is the store itself, so a snapshot costs nothing to take: it is a
//! consistent engine snapshot plus the applied state it corresponds to, streamed to a
//! follower by the network layer. Installing one replaces the range's data and applied
//! state in one synced write.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cairn_kv::RangeId;
use cairn_kv::api::{RangeDescriptor, ReplicaDescriptor, ReplicaId, ReplicaKind};
use cairn_kv::keys::{self, Span};
use cairn_kv::mvcc::key::meta_key;
use cairn_kv::mvcc::value::{Meta, encode_meta};
use cairn_kv::storage::{Engine, Snapshot, Space, WriteBatch};
use futures_util::{Stream, TryStreamExt};
use openraft::storage::{EntryResponder, RaftStateMachine};
use openraft::type_config::alias::{LogIdOf, SnapshotMetaOf, SnapshotOf, StoredMembershipOf};
use openraft::{EntryPayload, Membership, OptionalSend, RaftSnapshotBuilder, StoredMembership};

use super::ReplicaNode;

/// A group membership.
type MembershipOf = Membership<u64, ReplicaNode>;
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use super::log_store::{decode, encode};
use super::{CommandResult, TypeConfig};
use crate::log_writer::LogWriter;

type LogId = LogIdOf<TypeConfig>;

/// What a replica's state machine tells the store that holds it.
#[derive(Debug)]
pub enum StoreEvent {
    /// A split created the range `right` on this store, where this store's replica of it
    /// is `replica_id`: start that replica.
    SplitApplied {
        left: RangeId,
        right: RangeDescriptor,
        replica_id: ReplicaId,
    },
    /// The range `left` merged `right`, whose replica on this store (frozen at
    /// `freeze_index`) must stop: its Raft state is gone, its data is `left`'s now.
    MergeApplied {
        left: RangeId,
        right: RangeDescriptor,
        freeze_index: u64,
    },
}

/// What the replica and its state machine share: the latest applied descriptor and
/// index, for request routing and status.
#[derive(Debug, Default)]
pub struct ReplicaShared {
    descriptor: RwLock<Option<RangeDescriptor>>,
    applied_index: AtomicU64,
    snapshots_installed: AtomicU64,
    /// Ranges splits applied here created, not yet started by the store: their keys
    /// are theirs already, though no replica of the store shows it yet.
    unstarted: RwLock<Vec<RangeDescriptor>>,
    /// The left-hand range this range is frozen for (see [`crate::merge`]), and since
    /// when this replica knows it.
    frozen: RwLock<Option<(RangeDescriptor, std::time::Instant)>>,
    /// Set once the store has retired this replica because its range was merged.
    merged: std::sync::atomic::AtomicBool,
    /// The ranges this range merged most recently (see `AppliedState::merged`).
    merged_ranges: RwLock<Vec<RangeId>>,
    /// The last lease handoff applied (see [`super::LeaseHandoff`]).
    handoff: parking_lot::Mutex<Option<super::LeaseHandoff>>,
    /// Consistency checks this replica has finished.
    checksums: Arc<crate::consistency::Checksums>,
    /// Where the state machine reports what its store must act on (none in tests that
    /// run a bare group).
    events: Option<UnboundedSender<StoreEvent>>,
}

impl ReplicaShared {
    /// Shared state whose state machine reports to `events`.
    pub fn with_events(events: UnboundedSender<StoreEvent>) -> Self {
        ReplicaShared {
            events: Some(events),
            ..ReplicaShared::default()
        }
    }

    pub fn descriptor(&self) -> Option<RangeDescriptor> {
        self.descriptor.read().clone()
    }

    /// The result of consistency check `id`, once this replica has computed it.
    pub fn checksum(&self, id: u64) -> Option<crate::consistency::ReplicaChecksum> {
        self.checksums.get(id)
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index.load(Ordering::Acquire)
    }

    /// Ranges created by splits applied here that the store has not started yet.
    pub fn unstarted_splits(&self) -> Vec<RangeDescriptor> {
        self.unstarted.read().clone()
    }

    /// The store started (or gave up starting) the range `right` a split created.
    pub fn split_started(&self, right: cairn_kv::RangeId) {
        self.unstarted.write().retain(|d| d.range_id != right);
    }

    /// The left-hand range this range is frozen for, if it is, and since when this
    /// replica knows.
    pub fn frozen(&self) -> Option<(RangeDescriptor, std::time::Instant)> {
        self.frozen.read().clone()
    }

    /// Whether the store retired this replica after its range was merged.
    pub fn is_merged(&self) -> bool {
        self.merged.load(Ordering::Acquire)
    }

    /// Whether this range has merged the range `right` (recently: see
    /// `MERGED_KEPT`).
    pub fn has_merged(&self, right: RangeId) -> bool {
        self.merged_ranges.read().contains(&right)
    }

    pub(crate) fn set_merged(&self) {
        self.merged.store(true, Ordering::Release);
    }

    fn publish_merged(&self, merged: &[RangeId]) {
        let mut guard = self.merged_ranges.write();
        if guard.as_slice() != merged {
            *guard = merged.to_vec();
        }
    }

    fn publish_frozen(&self, frozen: &Option<RangeDescriptor>) {
        let mut guard = self.frozen.write();
        match (frozen, guard.as_ref()) {
            (None, _) => *guard = None,
            (Some(l), Some((held, _))) if l == held => {}
            (Some(l), _) => *guard = Some((l.clone(), std::time::Instant::now())),
        }
    }

    /// The last lease handoff this replica applied.
    pub fn handoff(&self) -> Option<super::LeaseHandoff> {
        self.handoff.lock().clone()
    }

    /// How many snapshots this replica has installed since it started.
    pub fn snapshots_installed(&self) -> u64 {
        self.snapshots_installed.load(Ordering::Relaxed)
    }

    fn publish(&self, descriptor: &Option<RangeDescriptor>, applied: &Option<LogId>) {
        *self.descriptor.write() = descriptor.clone();
        self.applied_index.store(
            applied.as_ref().map(|l| l.index).unwrap_or(0),
            Ordering::Release,
        );
    }
}

/// The applied state, stored beside the range's Raft state.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AppliedState {
    applied: Option<LogId>,
    membership: StoredMembershipOf<TypeConfig>,
    descriptor: Option<RangeDescriptor>,
    /// The left-hand range the range is frozen for, if it is.
    frozen: Option<RangeDescriptor>,
    /// The ranges this range merged most recently (at most [`MERGED_KEPT`]), so that a
    /// frozen range asking whether it was merged gets a true answer.
    merged: Vec<RangeId>,
}

/// How many merged ranges a range remembers.
const MERGED_KEPT: usize = 64;

/// A snapshot: outgoing, a view of this store to stream; incoming, what was received.
pub enum SnapshotData {
    Outgoing {
        reader: Box<dyn Snapshot>,
        descriptor: Option<RangeDescriptor>,
        frozen: Option<RangeDescriptor>,
        merged: Vec<RangeId>,
    },
    Incoming {
        descriptor: RangeDescriptor,
        frozen: Option<RangeDescriptor>,
        merged: Vec<RangeId>,
        /// Raw `Space::Data` entries.
        kvs: Vec<(Vec<u8>, Vec<u8>)>,
    },
}

/// The raw `Space::Data` spans holding the replicated data of `desc`'s range.
pub fn data_spans(desc: &RangeDescriptor) -> Vec<Span> {
    keys::replicated_spans(&desc.start_key, &desc.end_key)
        .into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| Span::new(meta_key(&s.start), meta_key(&s.end)))
        .collect()
}

fn storage(e: cairn_kv::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Writes `desc` into the store's data: at its range-local key and, if its meta key lies
/// in `holder` (the range applying the write, when it is the meta range), at its meta
/// key.
fn write_descriptor(
    batch: &mut WriteBatch,
    desc: &RangeDescriptor,
    holder: &RangeDescriptor,
) -> io::Result<()> {
    let body = postcard::to_stdvec(desc)
        .map_err(|e| io::Error::other(format!("encoding descriptor: {e}")))?;
    let mut targets = vec![keys::range_descriptor_key(&desc.start_key)];
    let meta = keys::meta_key(&desc.end_key);
    if holder.contains_key(&meta) {
        targets.push(meta);
    }
    for user_key in targets {
        let raw = meta_key(&user_key);
        let stored = encode_meta(&raw, &Meta::Inline(body.clone())).map_err(storage)?;
        batch.put(Space::Data, raw, stored);
    }
    Ok(())
}

/// The descriptor after a membership change: replicas mirror the membership.
fn with_membership(desc: &RangeDescriptor, m: &MembershipOf) -> RangeDescriptor {
    let mut replicas: Vec<ReplicaDescriptor> = Vec::new();
    let voters: Vec<u64> = m.voter_ids().collect();
    for (id, node) in m.nodes() {
        replicas.push(ReplicaDescriptor {
            node_id: node.node_id,
            replica_id: ReplicaId(*id),
            kind: if voters.contains(id) {
                ReplicaKind::Voter
            } else {
                ReplicaKind::Learner
            },
        });
    }
    let max_id = replicas.iter().map(|r| r.replica_id.0).max().unwrap_or(0);
    RangeDescriptor {
        replicas,
        next_replica_id: ReplicaId(desc.next_replica_id.0.max(max_id + 1)),
        generation: desc.generation + 1,
        ..desc.clone()
    }
}

/// The log id a range created by a split starts from (term 0, index 0: what a group's
/// first entry gets).
fn initial_log_id() -> LogId {
    LogId::new_term_index(0, 0)
}

pub struct StateMachine {
    range_id: RangeId,
    replica_id: ReplicaId,
    engine: Arc<dyn Engine>,
    state: AppliedState,
    shared: Arc<ReplicaShared>,
}

impl StateMachine {
    /// Loads the range's applied state from the store (empty for a new replica).
    pub fn open(
        range_id: RangeId,
        replica_id: ReplicaId,
        engine: Arc<dyn Engine>,
        _writer: Arc<LogWriter>,
        shared: Arc<ReplicaShared>,
    ) -> io::Result<StateMachine> {
        let key = keys::range_applied_state_key(range_id);
        let state = match engine.get(Space::Raft, &key).map_err(storage)? {
            Some(stored) => decode(range_id, &key, &stored)?,
            None => AppliedState::default(),
        };
        shared.publish(&state.descriptor, &state.applied);
        shared.publish_frozen(&state.frozen);
        shared.publish_merged(&state.merged);
        Ok(StateMachine {
            range_id,
            replica_id,
            engine,
            state,
            shared,
        })
    }

    fn put_applied_state(&self, batch: &mut WriteBatch) -> io::Result<()> {
        let key = keys::range_applied_state_key(self.range_id);
        batch.put(Space::Raft, key.clone(), encode(&key, &self.state)?);
        Ok(())
    }

    /// Writes the initial Raft state of the right-hand range of a split into `batch`:
    /// the same on every replica, so the new group's replicas agree from the start.
    ///
    /// The new group's log starts purged at index 0, as if a snapshot of the range's
    /// data at the split had been taken there: its members are the left-hand range's,
    /// under the same replica ids. A replica of the new range that did not go through
    /// the split (added later, or lagging behind it) therefore gets a snapshot, never a
    /// log to replay on data it does not have.
    ///
    /// Returns the event for the store, or `None` when this store already holds state
    /// for the new range (the split is being replayed after a restart), or this replica
    /// was added after the split and is replaying it.
    fn create_right(
        &self,
        batch: &mut WriteBatch,
        right: &RangeDescriptor,
    ) -> io::Result<Option<StoreEvent>> {
        let Some(mine) = right.replica(self.replica_id) else {
            // This replica joined the range after the split and is replaying the log
            // from before it: the new range had no replica here then. Its keys leave
            // this replica with the split and stay in the store, unowned. They are not
            // deleted: the new range (or ranges split from it since) may have a replica
            // on this store by now, holding the same keys. A replica that later lands
            // here by snapshot clears its span first, so they are never read.
            tracing::info!(range = %self.range_id, replica = %self.replica_id, %right, "replaying a split from before this replica joined");
            return Ok(None);
        };
        let applied_key = keys::range_applied_state_key(right.range_id);
        if self
            .engine
            .get(Space::Raft, &applied_key)
            .map_err(storage)?
            .is_some()
        {
            return Ok(None);
        }
        let log_id = initial_log_id();
        let state = AppliedState {
            applied: Some(log_id),
            membership: StoredMembership::new(
                Some(log_id),
                self.state.membership.membership().clone(),
            ),
            descriptor: Some(right.clone()),
            frozen: None,
            merged: Vec::new(),
        };
        let truncated_key = keys::raft_truncated_state_key(right.range_id);
        let replica_key = keys::raft_replica_id_key(right.range_id);
        batch.put(
            Space::Raft,
            applied_key.clone(),
            encode(&applied_key, &state)?,
        );
        batch.put(
            Space::Raft,
            truncated_key.clone(),
            encode(&truncated_key, &log_id)?,
        );
        batch.put(
            Space::Raft,
            replica_key.clone(),
            encode(&replica_key, &mine.replica_id.0)?,
        );
        Ok(Some(StoreEvent::SplitApplied {
            left: self.range_id,
            right: right.clone(),
            replica_id: mine.replica_id,
        }))
    }

    /// Why a split command no longer fits the range, if it does not: it was evaluated
    /// against the descriptor one generation before its left-hand side, with the same
    /// replicas. A membership change that reached the log between the evaluation and
    /// the split changed both; applying the split then would create the right-hand
    /// range on the wrong replicas. Every replica decides the same, at the same index.
    fn stale_split(&self, cmd: &super::RaftCommand) -> Option<String> {
        let (Some(left), Some(_)) = (&cmd.new_descriptor, &cmd.split) else {
            return None;
        };
        let current = self.state.descriptor.as_ref()?;
        if let Some(into) = &self.state.frozen {
            return Some(format!("{current} is frozen for a merge into {into}"));
        }
        let fits = current.range_id == left.range_id
            && current.generation + 1 == left.generation
            && current.replicas == left.replicas;
        (!fits).then(|| {
            format!("split into {left} evaluated against an older descriptor than {current}")
        })
    }

    /// Why a merge or freeze command no longer fits the range, if it does not. A merge
    /// was evaluated against the left-hand descriptor of `left_generation`; any change
    /// since (a split, a replica change, or the generation bump with which the frozen
    /// side abandons a merge, see `ResolveMerge`) refuses it. A frozen range merges
    /// nothing, since its own merge into its left-hand neighbour was evaluated against
    /// its keys as they were frozen. A range frozen for one merge is not frozen for
    /// another.
    fn refused_merge(&self, cmd: &super::RaftCommand) -> Option<String> {
        let current = self.state.descriptor.as_ref()?;
        if let Some(m) = &cmd.merge {
            if let Some(into) = &self.state.frozen {
                return Some(format!("{current} is frozen for a merge into {into}"));
            }
            let merged = cmd.new_descriptor.as_ref()?;
            let fits = current.generation == m.left_generation
                && current.end_key == m.right.start_key
                && current.replicas == merged.replicas;
            if !fits {
                return Some(format!(
                    "merge of {} evaluated against generation {} of {current}, now at {}",
                    m.right, m.left_generation, current.generation
                ));
            }
        }
        if let Some(super::MergeStep::Refuse(_)) = &cmd.merge_step
            && let Some(into) = &self.state.frozen
        {
            return Some(format!("{current} is frozen for a merge into {into}"));
        }
        if let Some(super::MergeStep::Freeze(left)) = &cmd.merge_step {
            if let Some(into) = &self.state.frozen
                && into.range_id != left.range_id
            {
                return Some(format!("{current} is already frozen for {into}"));
            }
            if left.end_key != current.start_key {
                return Some(format!(
                    "{left} is not the left-hand neighbour of {current}"
                ));
            }
        }
        None
    }

    /// Writes what a merge does to the store beside the merged descriptor: the
    /// right-hand range's descriptor (and, in the meta range, its meta entry at the
    /// left-hand range's old end) are deleted, and its Raft state with them; a
    /// tombstone keeps messages to it from bringing it back.
    fn merge_right(
        &self,
        batch: &mut WriteBatch,
        merged: &RangeDescriptor,
        right: &RangeDescriptor,
    ) -> io::Result<()> {
        batch.delete(
            Space::Data,
            meta_key(&keys::range_descriptor_key(&right.start_key)),
        );
        let old_entry = keys::meta_key(&right.start_key);
        if merged.contains_key(&old_entry) {
            batch.delete(Space::Data, meta_key(&old_entry));
        }
        batch.delete_range(
            Space::Raft,
            keys::range_id_prefix(right.range_id),
            keys::range_id_prefix_end(right.range_id),
        );
        let tombstone = keys::range_tombstone_key(right.range_id);
        batch.put(
            Space::Raft,
            tombstone.clone(),
            encode(&tombstone, &u64::MAX)?,
        );
        Ok(())
    }

    /// Hashes the range's data as the store holds it now, in the background, and
    /// records the result as check `id`.
    fn start_checksum(&self, id: u64, index: u64) {
        let view = self.engine.snapshot();
        let desc = self.state.descriptor.clone();
        let done = self.shared.checksums.clone();
        let range_id = self.range_id;
        tokio::task::spawn_blocking(move || {
            let sum = match &desc {
                Some(desc) => crate::consistency::compute(&*view, desc, index),
                None => crate::consistency::ReplicaChecksum {
                    index,
                    entries: 0,
                    digest: [0; 32],
                    error: Some(format!("{range_id} has no descriptor")),
                },
            };
            done.record(id, sum);
        });
    }

    fn snapshot_now(&self) -> SnapshotOf<TypeConfig, SnapshotData> {
        SnapshotOf::<TypeConfig, SnapshotData> {
            meta: SnapshotMetaOf::<TypeConfig> {
                last_log_id: self.state.applied,
                last_membership: self.state.membership.clone(),
            },
            snapshot: SnapshotData::Outgoing {
                reader: self.engine.snapshot(),
                descriptor: self.state.descriptor.clone(),
                frozen: self.state.frozen.clone(),
                merged: self.state.merged.clone(),
            },
        }
    }
}

/// Hands out the snapshot captured when it was made.
pub struct SnapshotBuilder(Option<SnapshotOf<TypeConfig, SnapshotData>>);

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> Result<SnapshotOf<TypeConfig, SnapshotData>, io::Error> {
        self.0
            .take()
            .ok_or_else(|| io::Error::other("snapshot builder used twice"))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId>, StoredMembershipOf<TypeConfig>), io::Error> {
        Ok((self.state.applied, self.state.membership.clone()))
    }

    async fn apply<S>(&mut self, mut entries: S) -> Result<(), io::Error>
    where
        S: Stream<Item = Result<EntryResponder<TypeConfig>, io::Error>> + Unpin + OptionalSend,
    {
        let mut batch = WriteBatch::new();
        let mut replies = Vec::new();
        let mut rejected = Vec::new();
        let mut splits = Vec::new();
        let mut merges = Vec::new();
        // Freezes and merges are written synced: a merge takes the frozen range's data
        // as it is in the store, and drops the log that could rebuild it.
        let mut sync = false;
        while let Some((entry, responder)) = entries.try_next().await? {
            let log_id = entry.log_id;
            let mut was_merged = false;
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(cmd) => {
                    if let Some(why) = self.stale_split(&cmd).or_else(|| self.refused_merge(&cmd)) {
                        tracing::info!(range = %self.range_id, index = log_id.index, %why, "split rejected at apply");
                        self.state.applied = Some(log_id);
                        if let Some(r) = responder {
                            rejected.push((r, log_id.index, why));
                        }
                        continue;
                    }
                    if let Some(id) = cmd.checksum {
                        // Hash exactly what the log up to here wrote, whatever else this
                        // batch of entries holds.
                        self.state.applied = Some(log_id);
                        self.put_applied_state(&mut batch)?;
                        self.engine
                            .write(std::mem::take(&mut batch), sync)
                            .map_err(storage)?;
                        sync = false;
                        self.start_checksum(id, log_id.index);
                    }
                    if let Some(h) = cmd.lease_handoff {
                        *self.shared.handoff.lock() = Some(h);
                    }
                    match &cmd.merge_step {
                        Some(super::MergeStep::Freeze(left)) => {
                            self.state.frozen = Some(left.clone());
                            sync = true;
                        }
                        Some(super::MergeStep::Lift(left))
                            if self.state.frozen.as_ref() == Some(left) =>
                        {
                            self.state.frozen = None;
                        }
                        Some(super::MergeStep::Refuse(right)) => {
                            was_merged = self.state.merged.contains(right);
                            if let Some(desc) = &self.state.descriptor {
                                let bumped = RangeDescriptor {
                                    generation: desc.generation + 1,
                                    ..desc.clone()
                                };
                                write_descriptor(&mut batch, &bumped, &bumped)?;
                                self.state.descriptor = Some(bumped);
                            }
                        }
                        Some(super::MergeStep::Lift(_)) | None => {}
                    }
                    batch.append(cmd.batch);
                    if let Some(desc) = cmd.new_descriptor {
                        write_descriptor(&mut batch, &desc, &desc)?;
                        if let Some(m) = cmd.merge {
                            self.merge_right(&mut batch, &desc, &m.right)?;
                            sync = true;
                            self.state.merged.push(m.right.range_id);
                            let excess = self.state.merged.len().saturating_sub(MERGED_KEPT);
                            self.state.merged.drain(..excess);
                            merges.push(StoreEvent::MergeApplied {
                                left: self.range_id,
                                right: m.right,
                                freeze_index: m.freeze_index,
                            });
                        }
                        if let Some(split) = cmd.split {
                            write_descriptor(&mut batch, &split.right, &desc)?;
                            if let Some(created) = self.create_right(&mut batch, &split.right)? {
                                splits.push(created);
                            }
                        }
                        self.state.descriptor = Some(desc);
                    }
                }
                EntryPayload::Membership(m) => {
                    if let Some(desc) = &self.state.descriptor {
                        let desc = with_membership(desc, &m);
                        write_descriptor(&mut batch, &desc, &desc)?;
                        self.state.descriptor = Some(desc);
                    }
                    self.state.membership = StoredMembership::new(Some(log_id), m);
                }
            }
            self.state.applied = Some(log_id);
            if let Some(r) = responder {
                replies.push((r, log_id.index, was_merged));
            }
        }
        self.put_applied_state(&mut batch)?;
        // Not synced (but for freezes and merges): the log is durable, and a crash
        // replays what was lost from it.
        self.engine.write(batch, sync).map_err(storage)?;
        // The new ranges claim their keys before the left-hand descriptor gives them up,
        // so the store never sees them unowned (see `Store::overlapping_replica`).
        for event in &splits {
            if let StoreEvent::SplitApplied { right, .. } = event {
                self.shared.unstarted.write().push(right.clone());
            }
        }
        self.shared
            .publish(&self.state.descriptor, &self.state.applied);
        self.shared.publish_frozen(&self.state.frozen);
        self.shared.publish_merged(&self.state.merged);
        for event in splits.into_iter().chain(merges) {
            if let Some(events) = &self.shared.events {
                // The store starts the new replica; if it is gone (shutting down), the
                // replica starts from disk with the store next time.
                let _ = events.send(event);
            }
        }
        for (r, applied_index, merged) in replies {
            r.send(CommandResult {
                applied_index,
                rejected: None,
                merged,
            });
        }
        for (r, applied_index, why) in rejected {
            r.send(CommandResult {
                applied_index,
                rejected: Some(why),
                merged: false,
            });
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder(Some(self.snapshot_now()))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMetaOf<TypeConfig>,
        snapshot: SnapshotData,
    ) -> Result<(), io::Error> {
        let SnapshotData::Incoming {
            descriptor,
            frozen,
            merged,
            kvs,
        } = snapshot
        else {
            return Err(io::Error::other("asked to install an outgoing snapshot"));
        };
        if descriptor.range_id != self.range_id {
            return Err(io::Error::other(format!(
                "{}: snapshot is of {}",
                self.range_id, descriptor.range_id
            )));
        }
        // Only the snapshot's own span is cleared. Keys of a wider descriptor this
        // replica had (it missed splits) may belong to another replica of this store
        // by now: the new range a split created here, started just after this snapshot
        // was let in. Left alone, they are unowned and never read; a replica that lands
        // on them later by snapshot clears them.
        let mut batch = WriteBatch::new();
        for span in data_spans(&descriptor) {
            batch.delete_range(Space::Data, span.start, span.end);
        }
        for (k, v) in kvs {
            batch.put(Space::Data, k, v);
        }
        self.state = AppliedState {
            applied: meta.last_log_id,
            membership: meta.last_membership.clone(),
            descriptor: Some(descriptor),
            frozen,
            merged,
        };
        self.put_applied_state(&mut batch)?;
        // Synced: openraft purges the log up to the snapshot once this returns.
        self.engine.write(batch, true).map_err(storage)?;
        self.shared
            .publish(&self.state.descriptor, &self.state.applied);
        self.shared.publish_frozen(&self.state.frozen);
        self.shared.publish_merged(&self.state.merged);
        self.shared
            .snapshots_installed
            .fetch_add(1, Ordering::Relaxed);
        tracing::info!(range = %self.range_id, applied = ?self.state.applied.as_ref().map(|l| l.index), "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<SnapshotOf<TypeConfig, SnapshotData>>, io::Error> {
        if self.state.applied.is_none() {
            return Ok(None);
        }
        Ok(Some(self.snapshot_now()))
    }
}
