//! The Cairn node process: RPC transport, HTTP status, cluster bootstrap and join, and
//! the `cairn` command line.
//!
//! - [`rpc`]: the wire protocol between nodes (frames, envelopes, the codec).
//! - [`transport`]: one multiplexed connection per pair of nodes, HLC on every message,
//!   the fault layer tests use.
//! - [`node`]: a node's life: store, join or init, liveness, replicate queue.
//! - [`consistency`]: `cairn debug check-consistency`, replicas compared by hash.
//! - [`http`]: `/health`, `/_status/nodes`, `/_status/ranges`, `/metrics`.
//! - [`metrics`]: what `/metrics` reports.
//! - [`wire`]: the Postgres wire protocol, one task per SQL connection.
//! - [`cli`]: `cairn start`, `cairn init`, `cairn demo`, `cairn bench`, `cairn debug`.
//! - [`bench`](mod@bench): closed-loop put benchmarks against Cairn and etcd.
//! - [`workload`]: `cairn workload init|run bank|kv`, SQL load generators.

pub mod bench;
pub mod cli;
pub mod consistency;
pub mod http;
pub mod metrics;
pub mod node;
pub mod ranges;
pub mod rpc;
pub mod transport;
pub mod wire;
pub mod workload;

pub use node::{Node, NodeConfig};
