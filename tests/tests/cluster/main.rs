//! The one integration-test binary: clusters of real nodes on RocksDB over TCP.

mod autosplit;
mod bank;
mod consistency;
mod http;
mod jepsen;
mod linearizability;
mod list_append;
mod merges;
mod processes;
mod rebalance;
mod replication;
mod splits;
mod sql;
mod txn;
mod workload;
