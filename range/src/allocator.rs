//! The allocator: where a range's replicas and lease should be, given the nodes of the
//! cluster.
//!
//! The leaseholder of each range asks [`plan`] once a pass for the one change to make
//! next, in order of urgency:
//!
//! 1. A voter on a node that is dead (not live for longer than
//!    `server.time_until_store_dead`) or decommissioning is replaced by a replica on
//!    the live node holding the fewest replicas. If the leaseholder's own replica must
//!    go, it first hands the lease to another voter.
//! 2. A range with fewer voters than it should have (3 once 3 nodes are live) gets more.
//! 3. Learners left behind by an interrupted change are removed.
//! 4. Replica counts are evened out: a replica moves from the node holding the most
//!    replicas among this range's voters to the live node holding the fewest, when they
//!    differ by more than one and one of them is off the mean.
//! 5. Lease counts are evened out the same way among the range's voters.
//!
//! The node counts come from the liveness records (each node publishes its own with
//! every heartbeat), so they can be a second old; the store adjusts its copy of the view
//! after each change it makes in a pass (see [`ClusterView::record`]).

use std::collections::{BTreeMap, BTreeSet};

use cairn_kv::NodeId;
use cairn_kv::api::{RangeDescriptor, ReplicaId, ReplicaKind};

/// What the allocator knows of a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub addr: String,
    pub state: NodeState,
    /// Replicas the node holds.
    pub replicas: u64,
    /// Leases the node holds.
    pub leases: u64,
}

/// A node's standing, for placing replicas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeState {
    /// Live and a target for new replicas.
    Live,
    /// Not live, but not for long enough to replace its replicas.
    Suspect,
    /// Not live for longer than the threshold: its replicas are replaced.
    Dead,
    /// Being drained by `cairn node decommission`; `live` says whether it heartbeats.
    Decommissioning { live: bool },
}

impl NodeState {
    /// Whether the node answers (it may still hold replicas that serve).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            NodeState::Live | NodeState::Decommissioning { live: true }
        )
    }

    /// Whether replicas on the node must move elsewhere.
    fn must_drain(self) -> bool {
        matches!(self, NodeState::Dead | NodeState::Decommissioning { .. })
    }
}

/// The nodes of the cluster as one store sees them.
#[derive(Clone, Debug, Default)]
pub struct ClusterView {
    pub nodes: BTreeMap<NodeId, NodeInfo>,
}

/// One change to a range's replicas or lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Add replicas on the nodes `add` as learners, then promote them together with the
    /// learners `promote` (left over from an interrupted attempt).
    AddVoters {
        add: Vec<NodeId>,
        promote: Vec<ReplicaId>,
    },
    /// Add a replica on `add`, then make it a voter in place of `remove`.
    Replace { remove: ReplicaId, add: NodeId },
    /// Remove learners that are no longer on their way to becoming voters.
    RemoveLearners(Vec<ReplicaId>),
    /// Hand the lease to another voter.
    TransferLease { to: ReplicaId },
}

/// Why an action was chosen (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// A voter's node is dead or decommissioning.
    Drain,
    /// Fewer voters than wanted.
    Upreplicate,
    /// A learner left over from an interrupted change.
    StrayLearner,
    /// Replica counts differ too much.
    RebalanceReplicas,
    /// Lease counts differ too much.
    RebalanceLeases,
}

impl ClusterView {
    pub fn live(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.state.is_live())
    }

    /// Nodes that may receive new replicas and leases.
    fn targets(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.values().filter(|n| n.state == NodeState::Live)
    }

    /// How many voters a range should have: 3 once 3 nodes are live, else 1.
    pub fn desired_voters(&self) -> usize {
        if self.live().count() >= 3 { 3 } else { 1 }
    }

    fn state(&self, node: NodeId) -> NodeState {
        self.nodes
            .get(&node)
            .map(|n| n.state)
            .unwrap_or(NodeState::Suspect)
    }

    fn mean(&self, count: impl Fn(&NodeInfo) -> u64) -> f64 {
        let (sum, n) = self
            .targets()
            .fold((0u64, 0u64), |(s, n), node| (s + count(node), n + 1));
        if n == 0 { 0.0 } else { sum as f64 / n as f64 }
    }

    /// The target node outside `desc` holding the fewest replicas.
    fn emptiest_target(&self, desc: &RangeDescriptor) -> Option<&NodeInfo> {
        self.targets()
            .filter(|n| desc.replica_on(n.node_id).is_none())
            .min_by_key(|n| (n.replicas, n.node_id))
    }

    /// Takes an action made in this pass into the counts, so the next range's plan sees
    /// it before the nodes publish their new counts.
    pub fn record(&mut self, desc: &RangeDescriptor, leader_node: NodeId, action: &Action) {
        let node_of = |r: &ReplicaId| desc.replica(*r).map(|d| d.node_id);
        let mut bump = |node: Option<NodeId>, replicas: i64, leases: i64| {
            if let Some(n) = node.and_then(|n| self.nodes.get_mut(&n)) {
                n.replicas = n.replicas.saturating_add_signed(replicas);
                n.leases = n.leases.saturating_add_signed(leases);
            }
        };
        match action {
            Action::AddVoters { add, .. } => add.iter().for_each(|n| bump(Some(*n), 1, 0)),
            Action::Replace { remove, add } => {
                bump(node_of(remove), -1, 0);
                bump(Some(*add), 1, 0);
            }
            Action::RemoveLearners(ids) => ids.iter().for_each(|r| bump(node_of(r), -1, 0)),
            Action::TransferLease { to } => {
                bump(Some(leader_node), 0, -1);
                bump(node_of(to), 0, 1);
            }
        }
    }
}

/// The next change for a range led by `leader` (this store's replica), if any.
/// `rebalance` allows the optional moves (steps 4 and 5); repairs are always planned.
/// The lease only goes to a replica in `fit_for_lease` (followers that answer the
/// leader and hold its whole log).
pub fn plan(
    desc: &RangeDescriptor,
    leader: ReplicaId,
    view: &ClusterView,
    rebalance: bool,
    fit_for_lease: &BTreeSet<ReplicaId>,
) -> Option<(Action, Reason)> {
    let leader_node = desc.replica(leader)?.node_id;
    let voters: Vec<_> = desc.voters().collect();
    let learners: Vec<_> = desc
        .replicas
        .iter()
        .filter(|r| r.kind == ReplicaKind::Learner)
        .collect();

    // 1. Drain voters off dead and decommissioning nodes.
    if let Some(gone) = voters.iter().find(|v| view.state(v.node_id).must_drain()) {
        if gone.replica_id == leader {
            return lease_target(desc, leader, view, fit_for_lease, |_| true)
                .map(|to| (Action::TransferLease { to }, Reason::Drain));
        }
        if let Some(add) = view.emptiest_target(desc) {
            return Some((
                Action::Replace {
                    remove: gone.replica_id,
                    add: add.node_id,
                },
                Reason::Drain,
            ));
        }
    }

    // 2. Up-replicate.
    let desired = view.desired_voters();
    if voters.len() < desired {
        let mut add = Vec::new();
        let mut candidates: Vec<_> = view
            .targets()
            .filter(|n| desc.replica_on(n.node_id).is_none())
            .collect();
        candidates.sort_by_key(|n| (n.replicas, n.node_id));
        // Learners left over from an interrupted attempt are promoted with the rest.
        let promote: Vec<ReplicaId> = learners
            .iter()
            .filter(|l| view.state(l.node_id) == NodeState::Live)
            .map(|l| l.replica_id)
            .take(desired - voters.len())
            .collect();
        for n in candidates {
            if voters.len() + promote.len() + add.len() >= desired {
                break;
            }
            add.push(n.node_id);
        }
        let target = voters.len() + promote.len() + add.len();
        // Only a change reaching an odd voter count is worth making (2 voters tolerate
        // no failure, as 1 does, but need both).
        if target > voters.len() && (target >= desired || !target.is_multiple_of(2)) {
            return Some((Action::AddVoters { add, promote }, Reason::Upreplicate));
        }
    }

    // 3. Stray learners.
    if !learners.is_empty() {
        return Some((
            Action::RemoveLearners(learners.iter().map(|l| l.replica_id).collect()),
            Reason::StrayLearner,
        ));
    }
    if !rebalance {
        return None;
    }

    // 4. Even out replica counts. The leaseholder's own replica stays (its lease moves
    // first, by step 5, if its node is the fuller one).
    let mean = view.mean(|n| n.replicas);
    if let Some(add) = view.emptiest_target(desc) {
        let fullest = voters
            .iter()
            .filter(|v| v.replica_id != leader)
            .filter_map(|v| view.nodes.get(&v.node_id).map(|n| (v, n)))
            .max_by_key(|(_, n)| (n.replicas, n.node_id));
        if let Some((from, from_node)) = fullest
            && from_node.replicas > add.replicas + 1
            && (from_node.replicas as f64 - mean) > 0.5
        {
            return Some((
                Action::Replace {
                    remove: from.replica_id,
                    add: add.node_id,
                },
                Reason::RebalanceReplicas,
            ));
        }
    }

    // 5. Even out lease counts.
    let lease_mean = view.mean(|n| n.leases);
    let mine = view.nodes.get(&leader_node)?.leases;
    if mine as f64 > lease_mean + 0.5 {
        return lease_target(desc, leader, view, fit_for_lease, |n| n.leases + 1 < mine)
            .map(|to| (Action::TransferLease { to }, Reason::RebalanceLeases));
    }
    None
}

/// The voter in `fit` on a target node, other than the leader, holding the fewest
/// leases and passing `ok`.
fn lease_target(
    desc: &RangeDescriptor,
    leader: ReplicaId,
    view: &ClusterView,
    fit: &BTreeSet<ReplicaId>,
    ok: impl Fn(&NodeInfo) -> bool,
) -> Option<ReplicaId> {
    desc.voters()
        .filter(|v| v.replica_id != leader && fit.contains(&v.replica_id))
        .filter_map(|v| {
            view.nodes
                .get(&v.node_id)
                .filter(|n| n.state == NodeState::Live && ok(n))
                .map(|n| (v.replica_id, n.leases, n.node_id))
        })
        .min_by_key(|(_, leases, node)| (*leases, *node))
        .map(|(r, _, _)| r)
}

#[cfg(test)]
mod tests {
    use cairn_kv::RangeId;
    use cairn_kv::api::ReplicaDescriptor;

    use super::*;

    /// A view of nodes 1..=counts.len(), all live, with these (replicas, leases).
    fn view(counts: &[(u64, u64)]) -> ClusterView {
        ClusterView {
            nodes: counts
                .iter()
                .enumerate()
                .map(|(i, (replicas, leases))| {
                    let id = NodeId(i as u64 + 1);
                    let info = NodeInfo {
                        node_id: id,
                        addr: format!("n{}", i + 1),
                        state: NodeState::Live,
                        replicas: *replicas,
                        leases: *leases,
                    };
                    (id, info)
                })
                .collect(),
        }
    }

    /// Every replica id the tests use, all fit for the lease.
    fn all() -> BTreeSet<ReplicaId> {
        (1..=10).map(ReplicaId).collect()
    }

    /// A range with voters on `voters` (replica id = node id) and learners on
    /// `learners`.
    fn range(voters: &[u64], learners: &[u64]) -> RangeDescriptor {
        let rep = |n: &u64, kind| ReplicaDescriptor {
            node_id: NodeId(*n),
            replica_id: ReplicaId(*n),
            kind,
        };
        let replicas: Vec<_> = voters
            .iter()
            .map(|n| rep(n, ReplicaKind::Voter))
            .chain(learners.iter().map(|n| rep(n, ReplicaKind::Learner)))
            .collect();
        RangeDescriptor {
            range_id: RangeId(7),
            start_key: b"a".to_vec(),
            end_key: b"z".to_vec(),
            next_replica_id: ReplicaId(10),
            generation: 1,
            replicas,
            sticky_until: 0,
        }
    }

    #[test]
    fn a_voter_on_a_dead_or_decommissioning_node_is_replaced_on_the_emptiest_node() {
        for state in [
            NodeState::Dead,
            NodeState::Decommissioning { live: true },
            NodeState::Decommissioning { live: false },
        ] {
            let mut v = view(&[(5, 2), (5, 2), (5, 1), (9, 0), (2, 0)]);
            v.nodes.get_mut(&NodeId(3)).unwrap().state = state;
            let got = plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, false, &all());
            assert_eq!(
                got,
                Some((
                    Action::Replace {
                        remove: ReplicaId(3),
                        add: NodeId(5)
                    },
                    Reason::Drain
                )),
                "{state:?}"
            );
        }
    }

    #[test]
    fn a_suspect_node_keeps_its_replicas_and_gets_none() {
        let mut v = view(&[(5, 2), (5, 2), (5, 1), (0, 0)]);
        v.nodes.get_mut(&NodeId(3)).unwrap().state = NodeState::Suspect;
        v.nodes.get_mut(&NodeId(4)).unwrap().state = NodeState::Suspect;
        assert_eq!(
            plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, true, &all()),
            None
        );
    }

    #[test]
    fn a_leaseholder_being_drained_hands_its_lease_to_the_voter_with_fewest_leases() {
        let mut v = view(&[(5, 9), (5, 3), (5, 1), (0, 0)]);
        v.nodes.get_mut(&NodeId(1)).unwrap().state = NodeState::Decommissioning { live: true };
        assert_eq!(
            plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, false, &all()),
            Some((Action::TransferLease { to: ReplicaId(3) }, Reason::Drain))
        );
    }

    #[test]
    fn a_range_is_upreplicated_to_three_voters_once_three_nodes_live() {
        let v = view(&[(1, 1), (0, 0)]);
        assert_eq!(
            plan(&range(&[1], &[]), ReplicaId(1), &v, true, &all()),
            None
        );
        let v = view(&[(1, 1), (4, 0), (0, 0)]);
        assert_eq!(
            plan(&range(&[1], &[]), ReplicaId(1), &v, true, &all()),
            Some((
                Action::AddVoters {
                    add: vec![NodeId(3), NodeId(2)],
                    promote: vec![]
                },
                Reason::Upreplicate
            ))
        );
        // A learner left from an interrupted attempt is promoted with the new one.
        assert_eq!(
            plan(&range(&[1], &[2]), ReplicaId(1), &v, true, &all()),
            Some((
                Action::AddVoters {
                    add: vec![NodeId(3)],
                    promote: vec![ReplicaId(2)]
                },
                Reason::Upreplicate
            ))
        );
    }

    #[test]
    fn stray_learners_are_removed() {
        let v = view(&[(1, 1), (1, 0), (1, 0), (0, 0)]);
        assert_eq!(
            plan(&range(&[1, 2, 3], &[4]), ReplicaId(1), &v, false, &all()),
            Some((
                Action::RemoveLearners(vec![ReplicaId(4)]),
                Reason::StrayLearner
            ))
        );
    }

    #[test]
    fn replicas_move_from_the_fullest_voter_to_an_empty_node_but_not_when_even() {
        let v = view(&[(10, 4), (10, 3), (10, 3), (0, 0), (0, 0)]);
        let got = plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, true, &all());
        assert_eq!(
            got,
            Some((
                Action::Replace {
                    remove: ReplicaId(3),
                    add: NodeId(4)
                },
                Reason::RebalanceReplicas
            ))
        );
        assert_eq!(
            plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, false, &all()),
            None
        );
        // Within one of each other: nothing moves.
        let v = view(&[(7, 2), (6, 2), (6, 2), (6, 2), (5, 2)]);
        assert_eq!(
            plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, true, &all()),
            None
        );
    }

    #[test]
    fn leases_move_to_the_voter_with_fewest_when_the_leader_holds_too_many() {
        let v = view(&[(6, 6), (6, 0), (6, 3)]);
        assert_eq!(
            plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, true, &all()),
            Some((
                Action::TransferLease { to: ReplicaId(2) },
                Reason::RebalanceLeases
            ))
        );
        // Only to a follower that is caught up and answering.
        let fit = [ReplicaId(3)].into();
        assert_eq!(
            plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, true, &fit),
            Some((
                Action::TransferLease { to: ReplicaId(3) },
                Reason::RebalanceLeases
            ))
        );
        assert_eq!(
            plan(
                &range(&[1, 2, 3], &[]),
                ReplicaId(1),
                &v,
                true,
                &BTreeSet::new()
            ),
            None
        );
        let v = view(&[(6, 3), (6, 2), (6, 3)]);
        assert_eq!(
            plan(&range(&[1, 2, 3], &[]), ReplicaId(1), &v, true, &all()),
            None
        );
    }

    #[test]
    fn recorded_actions_move_the_counts() {
        let mut v = view(&[(10, 4), (10, 3), (10, 3), (0, 0)]);
        let desc = range(&[1, 2, 3], &[]);
        v.record(
            &desc,
            NodeId(1),
            &Action::Replace {
                remove: ReplicaId(3),
                add: NodeId(4),
            },
        );
        v.record(
            &desc,
            NodeId(1),
            &Action::TransferLease { to: ReplicaId(2) },
        );
        let counts: Vec<_> = v.nodes.values().map(|n| (n.replicas, n.leases)).collect();
        assert_eq!(counts, vec![(10, 3), (10, 4), (9, 3), (1, 0)]);
    }
}
