//! The one integration-test binary: clusters of real nodes on RocksDB over TCP.

mod http;
mod linearizability;
mod processes;
mod replication;
mod splits;
mod txn;
