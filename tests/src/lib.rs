//! Cluster harness for end-to-end, fault and workload tests.
//!
//! [`Cluster`] runs N real nodes in this process, each on its own RocksDB store in a
//! temporary directory, talking over TCP on loopback. Tests kill nodes (drop them, as a
//! crash would: nothing is flushed on the way out), restart them on their stores, and
//! cut or delay links through each node's transport fault layer. [`processes`] runs the
//! `cairn` binary as separate processes on 127.0.0.N addresses instead, for `kill -9`
//! and `iptables` partitions; [`jepsen`] runs SQL workloads and their checkers against
//! such a cluster under a schedule of faults.

pub mod jepsen;
pub mod linearizability;
pub mod list_append;
pub mod processes;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cairn_kv::api::{self, BatchRequest, Request, Response};
use cairn_kv::{NodeId, RangeId};
use cairn_range::raft::RaftConfig;
use cairn_server::rpc::{RpcRequest, RpcResponse};
use cairn_server::transport::Fault;
use cairn_server::{Node, NodeConfig};

/// Logs to the test output once per process (`RUST_LOG` to change the level).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,openraft=error")),
        )
        .with_test_writer()
        .try_init();
}

/// Raft settings for tests: elections within about a second, and snapshots every 50
/// entries, so that logs get purged and lagging or new replicas catch up by snapshot.
pub fn test_timing() -> RaftConfig {
    RaftConfig {
        heartbeat: Duration::from_millis(100),
        election_min: Duration::from_millis(500),
        election_max: Duration::from_millis(1000),
        snapshot_every: 50,
        log_kept_behind_snapshot: 10,
    }
}

pub struct Cluster {
    _dir: tempfile::TempDir,
    stores: Vec<PathBuf>,
    nodes: Vec<Option<Arc<Node>>>,
    addrs: Vec<String>,
    pub request_timeout: Duration,
    /// Applied to every node's configuration (also on restarts).
    tweak: Arc<dyn Fn(&mut NodeConfig) + Send + Sync>,
}

impl Cluster {
    /// Starts `n` nodes, initialises the cluster on the first and waits until every node
    /// serves and the first range has `min(n, 3)` voters.
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_configured(n, |_| {}).await
    }

    /// Like [`Cluster::start`], with every node's configuration changed by `tweak`.
    pub async fn start_configured(
        n: usize,
        tweak: impl Fn(&mut NodeConfig) + Send + Sync + 'static,
    ) -> Cluster {
        init_logging();
        let dir = tempfile::tempdir().expect("temporary directory");
        let stores: Vec<PathBuf> = (1..=n).map(|i| dir.path().join(format!("n{i}"))).collect();
        let mut c = Cluster {
            _dir: dir,
            stores,
            nodes: Vec::new(),
            addrs: Vec::new(),
            request_timeout: Duration::from_secs(3),
            tweak: Arc::new(tweak),
        };
        // The first node starts alone and is initialised; the others join it one at a
        // time, so that node i (1-based) gets node id i, as tests assume.
        let node = c.start_node(0, None).await;
        c.addrs.push(node.rpc_addr().to_string());
        c.nodes.push(Some(node));
        let first = c.node(1).clone();
        let transport = first.transport().clone();
        match transport
            .call_addr(first.rpc_addr(), RpcRequest::Init, Duration::from_secs(30))
            .await
        {
            Ok(RpcResponse::Init { node_id }) => assert_eq!(node_id, NodeId(1)),
            other => panic!("init failed: {other:?}"),
        }
        for i in 1..n {
            let node = c.start_node(i, None).await;
            c.addrs.push(node.rpc_addr().to_string());
            c.nodes.push(Some(node));
            c.wait_until(Duration::from_secs(30), "the new node serves", |c| {
                c.nodes.iter().flatten().all(|n| n.is_serving())
            })
            .await;
            assert_eq!(
                c.node(i + 1).node_id(),
                Some(NodeId(i as u64 + 1)),
                "node {} joined with another id",
                i + 1
            );
        }
        let voters = n.min(3);
        c.wait_for_voters(RangeId(1), voters).await;
        c
    }

    fn config(&self, i: usize) -> NodeConfig {
        let mut config = NodeConfig::local(self.stores[i].clone());
        config.raft = test_timing();
        config.request_timeout = self.request_timeout;
        config.liveness_interval = Duration::from_millis(300);
        config.liveness_ttl = Duration::from_secs(2);
        config.listen_addr = match self.addrs.get(i) {
            Some(addr) => addr.clone(),
            None => format!("127.0.0.1:{}", unused_fixed_port()),
        };
        if i > 0 {
            config.join = vec![self.addrs[0].clone()];
        }
        // Replicas and leases stay where tests put them unless a test turns rebalancing
        // on (SET CLUSTER SETTING kv.allocator.rebalance_enabled = 1); lost replicas
        // are still replaced.
        config
            .setting_defaults
            .push((cairn_range::settings::REBALANCE_ENABLED, 0));
        (self.tweak)(&mut config);
        config
    }

    async fn start_node(&self, i: usize, _why: Option<&str>) -> Arc<Node> {
        // A restarted node may find its port briefly in use; retry a few times.
        let mut last = None;
        for _ in 0..50 {
            match Node::start(self.config(i)).await {
                Ok(n) => return n,
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        panic!("node {} did not start: {last:?}", i + 1);
    }

    /// Starts one more node, which joins the cluster through the first; returns its
    /// number. It serves once this returns.
    pub async fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let dir = self._dir.path().join(format!("n{}", i + 1));
        self.stores.push(dir);
        let node = self.start_node(i, None).await;
        self.addrs.push(node.rpc_addr().to_string());
        self.nodes.push(Some(node));
        self.wait_until(Duration::from_secs(30), "the new node serves", |c| {
            c.node(i + 1).is_serving()
        })
        .await;
        i + 1
    }

    /// The store directory of node `i` (1-based).
    pub fn store_dir(&self, i: usize) -> &std::path::Path {
        &self.stores[i - 1]
    }

    /// Node `i` (1-based).
    pub fn node(&self, i: usize) -> &Arc<Node> {
        self.nodes[i - 1].as_ref().expect("node is up")
    }

    pub fn is_up(&self, i: usize) -> bool {
        self.nodes[i - 1].is_some()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Stops node `i` abruptly: its tasks stop, its connections drop, nothing more is
    /// written. What it acknowledged is on disk (synced) or nowhere.
    pub async fn kill(&mut self, i: usize) {
        let node = self.nodes[i - 1].take().expect("node is up");
        node.shutdown().await;
        drop(node);
    }

    /// Restarts node `i` on its store.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.nodes[i - 1].is_none(), "node {i} is up");
        let node = self.start_node(i - 1, Some("restart")).await;
        self.nodes[i - 1] = Some(node);
    }

    /// Cuts the links between `a` and `b`, both ways.
    pub fn partition(&self, a: usize, b: usize) {
        self.fault(a, b, Fault::Cut);
    }

    /// Sets a fault on the links between `a` and `b`, both ways.
    pub fn fault(&self, a: usize, b: usize, fault: Fault) {
        if self.is_up(a) {
            self.node(a)
                .transport()
                .faults()
                .set(NodeId(b as u64), fault);
        }
        if self.is_up(b) {
            self.node(b)
                .transport()
                .faults()
                .set(NodeId(a as u64), fault);
        }
    }

    /// Removes every fault.
    pub fn heal(&self) {
        for n in self.nodes.iter().flatten() {
            n.transport().faults().clear_all();
        }
    }

    /// Sends a batch through node `via`'s DistSender.
    pub async fn send(
        &self,
        via: usize,
        requests: Vec<Request>,
    ) -> Result<Vec<Response>, api::Error> {
        let dist = self.node(via).dist_sender().expect("node serves");
        dist.send(BatchRequest::new(RangeId(0), requests))
            .await
            .map(|r| r.responses)
    }

    pub async fn put(&self, via: usize, key: &[u8], value: &[u8]) -> Result<(), api::Error> {
        self.send(
            via,
            vec![Request::Put {
                key: key.to_vec(),
                value: value.to_vec(),
            }],
        )
        .await
        .map(|_| ())
    }

    pub async fn get(&self, via: usize, key: &[u8]) -> Result<Option<Vec<u8>>, api::Error> {
        match self
            .send(via, vec![Request::Get { key: key.to_vec() }])
            .await?
            .pop()
        {
            Some(Response::Get { value }) => Ok(value),
            other => panic!("unexpected answer to get: {other:?}"),
        }
    }

    /// Splits the range holding `key` at `key`, through node `via`.
    pub async fn split(
        &self,
        via: usize,
        key: &[u8],
    ) -> Result<(api::RangeDescriptor, api::RangeDescriptor), api::Error> {
        match self
            .send(
                via,
                vec![Request::AdminSplit {
                    split_key: key.to_vec(),
                }],
            )
            .await?
            .pop()
        {
            Some(Response::AdminSplit { left, right }) => Ok((left, right)),
            other => panic!("unexpected answer to a split: {other:?}"),
        }
    }

    /// Merges the range holding `key` with its right-hand neighbour, through node `via`.
    pub async fn merge(&self, via: usize, key: &[u8]) -> Result<api::RangeDescriptor, api::Error> {
        match self
            .send(via, vec![Request::AdminMerge { key: key.to_vec() }])
            .await?
            .pop()
        {
            Some(Response::AdminMerge { merged }) => Ok(merged),
            other => panic!("unexpected answer to a merge: {other:?}"),
        }
    }

    /// Moves the lease (Raft leadership) of `range_id` to node `to` and waits until it
    /// is there.
    pub async fn transfer_lease(&self, range_id: RangeId, to: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.leaseholder(range_id) != Some(to) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{range_id}: lease did not move to n{to}"
            );
            if let Some(l) = self.leaseholder(range_id)
                && let Some(replica) = self.node(l).store().and_then(|s| s.replica(range_id))
                && let Some(target) = replica
                    .descriptor()
                    .and_then(|d| d.replica_on(NodeId(to as u64)).copied())
            {
                let _ = replica.transfer_lease(target.replica_id).await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A transaction starter on node `i`.
    pub fn db(&self, i: usize) -> cairn_txn::Db {
        self.node(i).db().expect("node serves")
    }

    /// The raw data of `desc`'s range on node `i` (its MVCC versions, intents and
    /// range-local keys), to compare replicas.
    pub fn range_data(&self, i: usize, desc: &api::RangeDescriptor) -> Vec<(Vec<u8>, Vec<u8>)> {
        use cairn_kv::storage::{Space, scan_all};
        let store = self.node(i).store().expect("node serves");
        let mut all = Vec::new();
        for span in cairn_range::raft::state_machine::data_spans(desc) {
            all.extend(
                scan_all(
                    &**store.engine(),
                    Space::Data,
                    &span.start,
                    Some(&span.end),
                    false,
                )
                .expect("scan"),
            );
        }
        all
    }

    /// Every version of `key` on every live node's engine, for failure messages.
    pub fn debug_versions(&self, key: &[u8]) -> String {
        use cairn_kv::mvcc::key::{after_user_key, decode, meta_key};
        use cairn_kv::storage::{Space, scan_all};
        let mut out = String::new();
        for i in 1..=self.len() {
            let Some(store) = self.nodes[i - 1].as_ref().and_then(|n| n.store()) else {
                continue;
            };
            let entries = scan_all(
                &**store.engine(),
                Space::Data,
                &meta_key(key),
                Some(&after_user_key(key)),
                false,
            );
            let shown: Vec<String> = match entries {
                Ok(kvs) => kvs
                    .iter()
                    .map(|(k, _)| format!("{:?}", decode(k).map(|d| d.ts)))
                    .collect(),
                Err(e) => vec![e.to_string()],
            };
            let status = store.replica(RangeId(1)).map(|r| r.status());
            out.push_str(&format!(
                "[n{i}: versions {shown:?}, clock {:?}, applied {:?}, leader {:?}] ",
                store.clock().now(),
                status.as_ref().map(|s| s.applied_index),
                status.as_ref().map(|s| s.is_leader)
            ));
        }
        out
    }

    /// The node leading range `range_id`, if any node is.
    pub fn leaseholder(&self, range_id: RangeId) -> Option<usize> {
        (1..=self.len()).find(|&i| {
            self.is_up(i)
                && self
                    .node(i)
                    .replica_status(range_id)
                    .is_some_and(|s| s.is_leader)
        })
    }

    pub async fn wait_until(&self, timeout: Duration, what: &str, f: impl Fn(&Cluster) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !f(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the range's descriptor (on its leaseholder) lists `n` voters.
    pub async fn wait_for_voters(&self, range_id: RangeId, n: usize) {
        self.wait_until(
            Duration::from_secs(60),
            &format!("{range_id} has {n} voters"),
            |c| {
                c.leaseholder(range_id)
                    .and_then(|l| c.node(l).store())
                    .and_then(|s| s.replica(range_id))
                    .and_then(|r| r.descriptor())
                    .is_some_and(|d| d.voters().count() >= n)
            },
        )
        .await;
    }
}

/// A small deterministic pseudo-random generator (SplitMix64) for workloads.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// A short nemesis schedule on a 3-node cluster under load: kill the leaseholder of
/// `range_id` and restart it 3 s later, then cut another node off from the others for
/// 3 s, then heal. Returns the node killed. `log` is called before each step.
pub async fn kill_restart_partition(
    cluster: &tokio::sync::RwLock<Cluster>,
    range_id: RangeId,
    log: impl Fn(&str),
) -> usize {
    tokio::time::sleep(Duration::from_secs(2)).await;
    log("kill the leaseholder");
    let victim = cluster
        .read()
        .await
        .leaseholder(range_id)
        .expect("a leaseholder");
    cluster.write().await.kill(victim).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    log("restart it");
    cluster.write().await.restart(victim).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    log("cut one node off");
    {
        let c = cluster.read().await;
        let cut = 1 + victim % 3;
        for other in (1..=3).filter(|&o| o != cut) {
            c.partition(cut, other);
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    log("heal");
    cluster.read().await.heal();
    victim
}

/// A port for a node's RPC listener that is free now and outside the kernel's range of
/// ephemeral ports. A node restarted by a test listens on its old port again; a port
/// from the ephemeral range (what binding port 0 gives) may meanwhile have become the
/// local port of some outgoing connection, and the restart would fail ("address already
/// in use").
fn unused_fixed_port() -> u16 {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    // Spread the tests' choices (several test processes pick at once).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let span = u32::from(high - low);
    for k in 0..span {
        let port =
            low + u16::try_from((seed.wrapping_add(k.wrapping_mul(7919))) % span).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    0
}
