//! The node's metrics, in the Prometheus text format (`GET /metrics` on the HTTP port).
//!
//! Every family is in every answer, at zero before its first event:
//!
//! | family | type | what |
//! |---|---|---|
//! | `cairn_replicas` | gauge | replicas this node holds that hold a range |
//! | `cairn_leaseholders` | gauge | ranges whose lease (Raft leadership) is here |
//! | `cairn_raft_follower_lag_entries` | gauge | the most entries any follower of a range led here is behind |
//! | `cairn_range_splits` | counter | splits made by this node's replicas |
//! | `cairn_range_merges` | counter | merges made by this node's replicas |
//! | `cairn_raft_leader_changes` | counter | times a replica here became its range's leader |
//!
//! Each answer is built from the store's counters and its replicas as they are then.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::node::Node;

/// The node's metrics as of now, in the Prometheus text format.
pub fn render(node: &Node) -> Result<String, std::fmt::Error> {
    let (mut replicas, mut leaseholders, mut lag) = (0i64, 0i64, 0i64);
    let (mut splits, mut merges, mut leader_changes) = (0u64, 0u64, 0u64);
    if let Some(store) = node.store() {
        for r in store.replicas() {
            if r.descriptor().is_none() {
                continue;
            }
            replicas += 1;
            if r.group().is_leader() {
                leaseholders += 1;
                let behind = r.status().follower_lag.values().copied().max().unwrap_or(0);
                lag = lag.max(i64::try_from(behind).unwrap_or(i64::MAX));
            }
        }
        let m = store.metrics();
        splits = m.splits.load(Ordering::Relaxed);
        merges = m.merges.load(Ordering::Relaxed);
        leader_changes = m.leader_changes.load(Ordering::Relaxed);
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
            "raft_follower_lag_entries",
            "The most log entries a follower of a range led here is behind",
            lag,
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
    ];
    for (name, help, value) in counters {
        let c = Counter::<u64>::default();
        c.inc_by(value);
        registry.register(name, help, c);
    }
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}
