//! The node's metrics, in the Prometheus text format (`GET /metrics` on the HTTP port).
//!
//! Every family is in every answer, at zero before its first event:
//!
//! | family | type | what |
//! |---|---|---|
//! | `cairn_replicas` | gauge | replicas this node holds that hold a range |
//! | `cairn_leaseholders` | gauge | ranges whose lease (Raft leadership) is here |
//! | `cairn_ranges` | gauge | ranges this node reports for: those led here, so the sum over nodes is the cluster's count |
//! | `cairn_ranges_underreplicated` | gauge | of those, ranges with fewer live voters than they want (3, or every node of a smaller cluster) |
//! | `cairn_raft_follower_lag_entries` | gauge | the most entries any follower of a range led here is behind |
//! | `cairn_sql_connections` | gauge | SQL connections open now |
//! | `cairn_range_splits` | counter | splits made by this node's replicas |
//! | `cairn_range_merges` | counter | merges made by this node's replicas |
//! | `cairn_raft_leader_changes` | counter | times a replica here became its range's leader |
//! | `cairn_liveness_heartbeat_failures` | counter | liveness heartbeats that failed |
//! | `cairn_txn_commits` | counter | transactions committed by this node's coordinators |
//! | `cairn_txn_aborts` | counter | transactions rolled back |
//! | `cairn_txn_restarts` | counter, by `reason` | retryable errors, each a restart |
//! | `cairn_raft_commit_latency_seconds` | histogram | proposal to applied, for writes here |
//! | `cairn_wal_fsync_latency_seconds` | histogram | each synced write of the Raft log |
//! | `cairn_sql_statement_latency_seconds` | histogram, by `kind` | each SQL statement |
//!
//! Each answer is built from the node's counters and its replicas as they are then;
//! the histograms are the live ones.

use std::sync::atomic::Ordering;

use cairn_range::store::latency_histogram;
use cairn_txn::coord::RetryReason;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::node::Node;

/// The node's metrics as of now, in the Prometheus text format.
pub fn render(node: &Node) -> Result<String, std::fmt::Error> {
    let (mut replicas, mut leaseholders, mut lag) = (0i64, 0i64, 0i64);
    let mut underreplicated = 0i64;
    // A range wants 3 voters (fewer in a smaller cluster), each on a live node.
    let statuses = node.node_statuses();
    let desired = statuses
        .iter()
        .filter(|s| !s.decommissioning)
        .count()
        .min(3);
    let live: std::collections::BTreeSet<_> = statuses
        .iter()
        .filter(|s| s.live)
        .map(|s| s.record.node_id)
        .collect();
    let (mut splits, mut merges, mut leader_changes) = (0u64, 0u64, 0u64);
    let (mut commit_latency, mut fsync_latency) = (latency_histogram(), latency_histogram());
    if let Some(store) = node.store() {
        for r in store.replicas() {
            if r.descriptor().is_none() {
                continue;
            }
            replicas += 1;
            if r.group().is_leader() {
                leaseholders += 1;
                let live_voters = r
                    .descriptor()
                    .map(|d| d.voters().filter(|v| live.contains(&v.node_id)).count())
                    .unwrap_or(0);
                if live_voters < desired {
                    underreplicated += 1;
                }
                let behind = r.status().follower_lag.values().copied().max().unwrap_or(0);
                lag = lag.max(i64::try_from(behind).unwrap_or(i64::MAX));
            }
        }
        let m = store.metrics();
        splits = m.splits.load(Ordering::Relaxed);
        merges = m.merges.load(Ordering::Relaxed);
        leader_changes = m.leader_changes.load(Ordering::Relaxed);
        commit_latency = m.raft_commit_latency.clone();
        fsync_latency = store.log_writer().stats().sync_latency.clone();
    }
    let (mut commits, mut aborts, mut restarts) = (0u64, 0u64, [0u64; 5]);
    if let Some(dist) = node.dist_sender() {
        let t = dist.txn_metrics();
        commits = t.commits.load(Ordering::Relaxed);
        aborts = t.aborts.load(Ordering::Relaxed);
        for (i, r) in t.restarts.iter().enumerate() {
            restarts[i] = r.load(Ordering::Relaxed);
        }
    }

    let mut registry = Registry::with_prefix("cairn");
    let gauges = [
        (
            "replicas",
            "Replicas this node holds that hold a range",
            replicas,
        ),
        (
            "leaseholders",
            "Ranges whose lease is on this node",
            leaseholders,
        ),
        (
            "ranges",
            "Ranges led by this node (the sum over nodes is the cluster's range count)",
            leaseholders,
        ),
        (
            "ranges_underreplicated",
            "Ranges led by this node with fewer voters on live nodes than they want",
            underreplicated,
        ),
        (
            "raft_follower_lag_entries",
            "The most log entries a follower of a range led here is behind",
            lag,
        ),
        (
            "sql_connections",
            "SQL connections open now",
            node.sql_connections(),
        ),
    ];
    for (name, help, value) in gauges {
        let g = Gauge::<i64>::default();
        g.set(value);
        registry.register(name, help, g);
    }
    let counters = [
        (
            "range_splits",
            "Splits made by this node's replicas",
            splits,
        ),
        (
            "range_merges",
            "Merges made by this node's replicas",
            merges,
        ),
        (
            "raft_leader_changes",
            "Times a replica on this node became its range's Raft leader",
            leader_changes,
        ),
        (
            "liveness_heartbeat_failures",
            "Liveness heartbeats of this node that failed",
            node.heartbeat_failures(),
        ),
        (
            "txn_commits",
            "Transactions this node's coordinators committed",
            commits,
        ),
        (
            "txn_aborts",
            "Transactions this node's coordinators rolled back",
            aborts,
        ),
    ];
    for (name, help, value) in counters {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        registry.register(name, help, c);
    }
    let by_reason = Family::<Vec<(String, String)>, Counter>::default();
    for (reason, n) in RetryReason::ALL.iter().zip(restarts) {
        by_reason
            .get_or_create(&vec![("reason".to_string(), reason.label().to_string())])
            .inc_by(n);
    }
    registry.register(
        "txn_restarts",
        "Retryable errors of this node's transactions (each restarts one), by reason",
        by_reason,
    );
    registry.register(
        "raft_commit_latency_seconds",
        "Seconds from proposing a write's Raft command to its being applied here",
        commit_latency,
    );
    registry.register(
        "wal_fsync_latency_seconds",
        "Seconds each synced write of the Raft log took",
        fsync_latency,
    );
    registry.register(
        "sql_statement_latency_seconds",
        "Seconds each SQL statement took, by kind",
        node.sql_metrics().statement_latency.clone(),
    );
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}
