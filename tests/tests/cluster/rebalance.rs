//! The allocator on a real cluster: replicas and leases spread onto nodes that join
//! under load, drain off a decommissioned node (through `cairn node decommission`),
//! and are replaced on other nodes when a node stays dead past
//! `server.time_until_store_dead`. Nothing acknowledged is lost, and every range's
//! replicas agree.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use cairn_kv::api::ReplicaId;
use cairn_kv::{NodeId, RangeId};
use cairn_range::raft::{RaftEnvelope, RaftRequest, SnapshotChunk};
use cairn_tests::Cluster;
use cairn_tests::processes::cairn_binary;

use crate::autosplit::{Writers, assert_rows, connect, eventually};
use crate::splits::{assert_lease_covers_reads, assert_replicas_agree, read_q_in_the_future};

/// Every range by its leaseholder's descriptor: (range, leaseholder node, voter nodes,
/// learner count). Ranges with no leaseholder right now are left out.
fn ranges(c: &Cluster) -> Vec<(RangeId, NodeId, Vec<NodeId>, usize)> {
    let mut out = BTreeMap::new();
    for i in (1..=c.len()).filter(|&i| c.is_up(i)) {
        let Some(store) = c.node(i).store() else {
            continue;
        };
        for r in store.replicas() {
            if !r.status().is_leader {
                continue;
            }
            if let Some(d) = r.descriptor() {
                let voters = d.voters().map(|v| v.node_id).collect();
                let learners = d.replicas.len() - d.voters().count();
                out.insert(d.range_id, (d.range_id, store.node_id(), voters, learners));
            }
        }
    }
    out.into_values().collect()
}

/// Voters and leases per node, over every range.
fn counts(c: &Cluster) -> BTreeMap<NodeId, (usize, usize)> {
    let mut per: BTreeMap<NodeId, (usize, usize)> = BTreeMap::new();
    for (_, leader, voters, _) in ranges(c) {
        per.entry(leader).or_default().1 += 1;
        for v in voters {
            per.entry(v).or_default().0 += 1;
        }
    }
    per
}

/// 3 nodes under SQL writes, then 2 more join: replicas and leases spread over all 5.
/// Then `cairn node decommission` drains one of the new nodes: it ends with no replica,
/// every range keeps 3 voters, and it is stopped. Every acknowledged row is there once
/// and every range's replicas agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_and_leases_spread_onto_new_nodes_and_off_a_decommissioned_one() {
    let mut c = Cluster::start(3).await;
    let admin = connect(&c, 1).await;
    let splits: Vec<String> = (1..8).map(|i| format!("({})", i * 500_000)).collect();
    admin
        .batch_execute(&format!(
            "SET CLUSTER SETTING kv.allocator.rebalance_enabled = 1; \
             CREATE TABLE kv (k INT8 PRIMARY KEY, v TEXT); ALTER TABLE kv SPLIT AT VALUES {}",
            splits.join(", ")
        ))
        .await
        .expect("create and split");

    let load = Writers::start(&c, 4).await;
    let errors = load.errors.clone();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let n4 = c.add_node().await;
    let n5 = c.add_node().await;
    let (id4, id5) = (
        c.node(n4).node_id().expect("id"),
        c.node(n5).node_id().expect("id"),
    );

    // Spread: every node holds replicas within one or two of the mean and leads some.
    let spread = eventually(Duration::from_secs(120), || async {
        let per = counts(&c);
        let total: usize = per.values().map(|(r, _)| r).sum();
        let mean = total as f64 / 5.0;
        let even = per.len() == 5
            && per
                .values()
                .all(|(r, l)| (*r as f64 - mean).abs() <= 2.0 && *l >= 1);
        if even && errors.lock().is_empty() {
            return Ok(per);
        }
        Err(format!(
            "voters and leases per node: {per:?} (mean {mean:.1}); errors {:?}",
            errors.lock()
        ))
    })
    .await;
    assert!(spread[&id4].0 >= 2 && spread[&id5].0 >= 2, "{spread:?}");

    // A replica that never got its first snapshot (here made by a stray message for a
    // range that does not exist) holds nothing and does not hold the decommission up.
    let stray = RangeId(9_999);
    c.node(n4)
        .store()
        .expect("store")
        .handle_raft(RaftEnvelope {
            range_id: stray,
            from: ReplicaId(1),
            to: ReplicaId(2),
            to_node: id4,
            to_addr: String::new(),
            body: RaftRequest::Snapshot(SnapshotChunk {
                stream_id: 1,
                seq: 0,
                header: None,
                kvs: Vec::new(),
                last: false,
            }),
        })
        .await
        .expect("stray message");
    assert!(
        c.node(n4)
            .store()
            .and_then(|s| s.replica(stray))
            .is_some_and(|r| r.descriptor().is_none())
    );

    // Decommission n4 with the command line, which waits until it is drained.
    let mut cmd = std::process::Command::new(cairn_binary(env!("CARGO_BIN_EXE_cairn-under-test")));
    cmd.args(["node", "decommission", &id4.0.to_string(), "--host"])
        .arg(c.node(1).rpc_addr());
    let out = tokio::time::timeout(
        Duration::from_secs(180),
        tokio::task::spawn_blocking(move || cmd.output()),
    )
    .await
    .expect("decommission finished in time")
    .expect("join")
    .expect("run cairn");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("is decommissioned"),
        "cairn node decommission: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The published count reached zero; the store itself holds nothing either once the
    // GC has run, and no range names n4.
    eventually(Duration::from_secs(60), || async {
        let naming: Vec<_> = ranges(&c)
            .into_iter()
            .filter(|(_, l, v, _)| *l == id4 || v.contains(&id4))
            .collect();
        // Nothing but the stray replica is left.
        let left: Vec<_> = c
            .node(n4)
            .store()
            .map(|s| s.replicas().iter().map(|r| r.range_id()).collect())
            .unwrap_or_default();
        if left == [stray] && naming.is_empty() {
            return Ok(());
        }
        Err(format!(
            "n4 holds replicas of {left:?}; ranges naming it: {naming:?}"
        ))
    })
    .await;
    c.kill(n4).await;

    // The load carries on over 4 nodes.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let want = load.finish().await;
    let errors = errors.lock().clone();
    assert!(errors.is_empty(), "clients saw errors: {errors:#?}");

    // Rebalancing goes on among the 4 nodes; once a move in flight ends, every range
    // has 3 voters, no learner, and none on n4.
    let all = eventually(Duration::from_secs(30), || async {
        let all = ranges(&c);
        let bad: Vec<_> = all
            .iter()
            .filter(|(_, _, v, l)| v.len() != 3 || *l != 0 || v.contains(&id4))
            .collect();
        if bad.is_empty() {
            return Ok(all);
        }
        Err(format!("ranges not settled: {bad:?}"))
    })
    .await;
    assert!(want.len() > 100, "only {} rows written", want.len());
    assert_rows(&connect(&c, 2).await, &want).await;
    for (range, ..) in all {
        assert_replicas_agree(&c, range).await;
    }
}

/// A node that stays dead longer than `server.time_until_store_dead` has its replicas
/// replaced on the live nodes; one down for less keeps them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_of_a_dead_node_are_replaced_after_the_threshold() {
    let mut c = Cluster::start(4).await;
    let admin = connect(&c, 1).await;
    let rows: Vec<String> = (0..400).map(|i| format!("({i}, {})", i * 2)).collect();
    admin
        .batch_execute(&format!(
            "SET CLUSTER SETTING kv.allocator.rebalance_enabled = 1; \
             SET CLUSTER SETTING server.time_until_store_dead = 4; \
             CREATE TABLE t (k INT8 PRIMARY KEY, v INT8); \
             ALTER TABLE t SPLIT AT VALUES (100), (200), (300); \
             INSERT INTO t VALUES {}",
            rows.join(", ")
        ))
        .await
        .expect("setup");
    // Wait until n4 holds voters, as the rebalancer spreads them.
    let id4 = c.node(4).node_id().expect("id");
    eventually(Duration::from_secs(60), || async {
        let on4 = counts(&c).get(&id4).map(|(r, _)| *r).unwrap_or(0);
        if on4 >= 3 {
            return Ok(());
        }
        Err(format!("n4 holds {on4} voters: {:?}", counts(&c)))
    })
    .await;
    let all: BTreeSet<RangeId> = ranges(&c).into_iter().map(|r| r.0).collect();
    c.kill(4).await;
    // Within the threshold, nothing moves.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        ranges(&c).iter().any(|(_, _, v, _)| v.contains(&id4)),
        "replicas left n4 before the threshold"
    );
    // Past it, every range gets 3 voters on the 3 live nodes.
    eventually(Duration::from_secs(90), || async {
        let now = ranges(&c);
        let bad: Vec<_> = now
            .iter()
            .filter(|(_, _, v, l)| v.len() != 3 || v.contains(&id4) || *l != 0)
            .collect();
        let led: BTreeSet<RangeId> = now.iter().map(|r| r.0).collect();
        if bad.is_empty() && led == all {
            return Ok(());
        }
        Err(format!(
            "ranges not yet repaired: {bad:?}; without a leaseholder: {:?}",
            all.difference(&led).collect::<Vec<_>>()
        ))
    })
    .await;
    let got: Vec<(i64, i64)> = admin
        .query("SELECT k, v FROM t ORDER BY k", &[])
        .await
        .expect("scan")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got, (0..400).map(|i| (i, i * 2)).collect::<Vec<_>>());
    for (range, ..) in ranges(&c) {
        assert_replicas_agree(&c, range).await;
    }
}

/// A lease moved to another replica (as the allocator moves them) starts where the old
/// leaseholder stopped serving: a read served before the move still pushes a later
/// write of its key above it, and a write of a key nobody read is not pushed
/// `max_offset` into the future (where a lease taken over after a failure starts).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transferred_lease_starts_where_the_old_one_stopped() {
    let c = Cluster::start(3).await;
    c.put(1, b"a", b"v").await.expect("put");
    let from = c.leaseholder(RangeId(1)).expect("a leaseholder");
    let to = 1 + from % 3;
    let read_ts = read_q_in_the_future(&c, from).await;
    c.transfer_lease(RangeId(1), to).await;
    assert_lease_covers_reads(&c, to, read_ts).await;
}

/// Size splits race lease moves and a node restart: a table splits under SQL writers
/// while leases of its ranges keep moving between nodes, and node 3 (first relieved of
/// its leases, so no client request is cut off) is killed and restarted twice. No
/// client sees an error, every acknowledged row is there once, and the replicas of
/// every range agree, the restarted node's included.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn splits_race_lease_moves_and_a_node_restart() {
    let (mut c, admin) = crate::autosplit::small_ranges_with_kv().await;
    let load = Writers::start_on(&c, 4, &[1, 2]).await;
    let errors = load.errors.clone();
    let mut rng = cairn_tests::Rng::new(7);
    let mut moves = 0;
    for round in 0..4 {
        // Move leases around for a while: whichever range, to whichever other node.
        let until = tokio::time::Instant::now() + Duration::from_secs(3);
        while tokio::time::Instant::now() < until {
            let all = ranges(&c);
            if let Some((range, holder, ..)) = all.get(rng.below(all.len().max(1) as u64) as usize)
            {
                let up: Vec<usize> = (1..=3)
                    .filter(|&i| c.is_up(i) && Some(NodeId(i as u64)) != Some(*holder))
                    .collect();
                let to = up[rng.below(up.len() as u64) as usize];
                c.transfer_lease(*range, to).await;
                moves += 1;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if round % 2 == 0 {
            // Take node 3's leases away (a split it was making may hand it a new one:
            // until none is left), then kill it; it restarts next round.
            loop {
                let held: Vec<RangeId> = ranges(&c)
                    .into_iter()
                    .filter(|r| r.1 == NodeId(3))
                    .map(|r| r.0)
                    .collect();
                if held.is_empty() {
                    break;
                }
                for range in held {
                    c.transfer_lease(range, 1 + (range.0 as usize) % 2).await;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            c.kill(3).await;
        } else {
            c.restart(3).await;
        }
    }
    let want = load.finish().await;
    let errors = errors.lock().clone();
    assert!(errors.is_empty(), "clients saw errors: {errors:#?}");
    let all = ranges(&c);
    assert!(all.len() >= 6, "only {} ranges after the splits", all.len());
    assert!(moves >= 10, "only {moves} lease moves");
    assert_rows(&admin, &want).await;
    for (range, ..) in all {
        assert_replicas_agree(&c, range).await;
    }
}
