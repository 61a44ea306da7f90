//! A Cairn node: one store on one RocksDB, the transport, and the loops that keep it in
//! the cluster.
//!
//! ```text
//!   cairn start --join A,B,C          a node with no id waits: either `cairn init` makes
//!        │                            it bootstrap the cluster (node 1, range 1), or it
//!        ▼                            asks a join address for an id until one answers
//!   store ident on disk? ── yes ──▶ restart the store with that id
//!        │ no
//!        ▼
//!   Init ─▶ node 1: bootstrap range 1      Join ─▶ the id counter in /System, +1
//!
//!   running: every second, write this node's liveness record (expires in 4.5 s), read
//!   everyone's (addresses for the transport, who is live), and let the replicate queue
//!   add replicas on live nodes to ranges this node leads.
//! ```

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_kv::api::ReplicaId;
use cairn_kv::api::{self, BatchRequest, BoxFuture, Request, Response, Sender};
use cairn_kv::checksum::{open, seal};
use cairn_kv::hlc::{Clock, DEFAULT_MAX_OFFSET, OffsetClock, SystemClock};
use cairn_kv::keys;
use cairn_kv::storage::rocksdb::RocksDb;
use cairn_kv::storage::{Engine, Space, WriteBatch};
use cairn_kv::{NodeId, RangeId, Timestamp};
use cairn_range::allocator::{ClusterView, NodeInfo, NodeState};
use cairn_range::raft::{RaftConfig, ReplicaNode};
use cairn_range::settings::Settings;
use cairn_range::{Store, StoreConfig};
use cairn_txn::{DistSender, NodeDialer};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::rpc::{ReplicaStatus, RpcRequest, RpcResponse};
use crate::transport::{Handler, RaftChannel, Transport, TransportError};

/// Default ports.
pub const DEFAULT_SQL_PORT: u16 = 26257;
pub const DEFAULT_RPC_PORT: u16 = 26357;
pub const DEFAULT_HTTP_PORT: u16 = 8080;

/// How a node runs.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub store_dir: PathBuf,
    /// Where to listen for other nodes (port 0: any free port).
    pub listen_addr: String,
    /// The address other nodes dial; defaults to the bound listen address.
    pub advertise_addr: Option<String>,
    pub http_addr: String,
    pub sql_addr: String,
    pub join: Vec<String>,
    pub raft: RaftConfig,
    /// Bound on serving one request end to end.
    pub request_timeout: Duration,
    pub liveness_interval: Duration,
    pub liveness_ttl: Duration,
    /// The most SQL connections served at once.
    pub max_sql_connections: usize,
    /// Trust every SQL client (no password). Otherwise clients authenticate with
    /// SCRAM-SHA-256 against the users stored in the cluster.
    pub insecure: bool,
    /// A password root gets when the node finds root without one.
    pub root_password: Option<String>,
    /// Defaults of cluster settings that the cluster has not set (`cairn start`'s
    /// `--range-max-bytes`, for example).
    pub setting_defaults: Vec<(&'static str, u64)>,
}

impl NodeConfig {
    /// A node on `store_dir`, listening on loopback on free ports.
    pub fn local(store_dir: PathBuf) -> Self {
        NodeConfig {
            store_dir,
            listen_addr: "127.0.0.1:0".into(),
            advertise_addr: None,
            http_addr: "127.0.0.1:0".into(),
            sql_addr: "127.0.0.1:0".into(),
            join: Vec::new(),
            raft: RaftConfig::default(),
            request_timeout: Duration::from_secs(5),
            liveness_interval: Duration::from_secs(1),
            liveness_ttl: Duration::from_millis(4500),
            max_sql_connections: crate::wire::DEFAULT_MAX_CONNECTIONS,
            insecure: true,
            root_password: None,
            setting_defaults: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("storage: {0}")]
    Storage(String),
    #[error("network: {0}")]
    Network(String),
    #[error("{0}")]
    Cluster(String),
}

/// A node's liveness record, in `/System/NodeLiveness/<id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LivenessRecord {
    pub node_id: NodeId,
    pub addr: String,
    pub sql_addr: String,
    pub http_addr: String,
    /// The record says the node is live until this HLC time.
    pub expiration: Timestamp,
    /// Replicas the node held at the heartbeat (for the allocator).
    pub replicas: u64,
    /// Leases the node held at the heartbeat.
    pub leases: u64,
}

/// What `cairn node status` shows of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub record: LivenessRecord,
    pub live: bool,
    pub decommissioning: bool,
}

#[derive(Clone)]
struct Running {
    node_id: NodeId,
    store: Arc<Store>,
    dist: Arc<DistSender>,
}

pub struct Node {
    /// This node, for handlers that hold `&Node` but need to start tasks.
    me: Weak<Node>,
    config: NodeConfig,
    rpc_addr: String,
    http_addr: String,
    /// The bound SQL address.
    sql_addr: String,
    /// The SQL layer, once the node serves and the catalog exists.
    sql: RwLock<Option<Arc<cairn_sql::SqlServer>>>,
    /// What the SQL layer records, from start-up.
    sql_metrics: Arc<cairn_sql::metrics::SqlMetrics>,
    /// SQL connections open now.
    sql_connections: Arc<std::sync::atomic::AtomicI64>,
    /// Liveness heartbeats that failed to write the node's record.
    heartbeat_failures: std::sync::atomic::AtomicU64,
    engine: Arc<dyn Engine>,
    clock: Arc<Clock>,
    /// The clock's physical source, shiftable by fault tests.
    physical: Arc<OffsetClock>,
    transport: Arc<Transport>,
    running: RwLock<Option<Running>>,
    becoming: tokio::sync::Mutex<()>,
    liveness: RwLock<Vec<LivenessRecord>>,
    /// Nodes marked decommissioning, as read with the liveness records.
    decommissioning: RwLock<BTreeSet<NodeId>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    stopped: AtomicBool,
    /// The cluster settings in force, read from the cluster once a second.
    settings: RwLock<Settings>,
}

const STORE_IDENT_TAG: u8 = 0x49; // 'I'
const ADDRESS_BOOK_TAG: u8 = 0x41; // 'A'
const NODE_ID_GENERATOR: &str = "node";

fn storage(e: impl std::fmt::Display) -> NodeError {
    NodeError::Storage(e.to_string())
}

impl Node {
    /// Opens the store, starts listening and joins (or waits to be initialised).
    pub async fn start(config: NodeConfig) -> Result<Arc<Node>, NodeError> {
        std::fs::create_dir_all(&config.store_dir).map_err(storage)?;
        let engine: Arc<dyn Engine> = Arc::new(RocksDb::open(&config.store_dir).map_err(storage)?);
        let listener = TcpListener::bind(&config.listen_addr)
            .await
            .map_err(|e| NodeError::Network(format!("listen on {}: {e}", config.listen_addr)))?;
        let bound = listener
            .local_addr()
            .map_err(|e| NodeError::Network(e.to_string()))?;
        let rpc_addr = config
            .advertise_addr
            .clone()
            .unwrap_or_else(|| bound.to_string());
        let http_listener = TcpListener::bind(&config.http_addr)
            .await
            .map_err(|e| NodeError::Network(format!("listen on {}: {e}", config.http_addr)))?;
        let http_addr = http_listener
            .local_addr()
            .map_err(|e| NodeError::Network(e.to_string()))?
            .to_string();
        let sql_listener = TcpListener::bind(&config.sql_addr)
            .await
            .map_err(|e| NodeError::Network(format!("listen on {}: {e}", config.sql_addr)))?;
        let sql_addr = sql_listener
            .local_addr()
            .map_err(|e| NodeError::Network(e.to_string()))?
            .to_string();
        let physical = OffsetClock::new(Arc::new(SystemClock));
        let clock = Arc::new(Clock::new(physical.clone(), DEFAULT_MAX_OFFSET));
        let transport = Transport::new(clock.clone(), rpc_addr.clone());
        let node = Arc::new_cyclic(|me| Node {
            me: me.clone(),
            rpc_addr,
            http_addr,
            sql_addr,
            sql: RwLock::new(None),
            sql_metrics: cairn_sql::metrics::SqlMetrics::new(),
            sql_connections: Arc::default(),
            heartbeat_failures: Default::default(),
            engine,
            clock,
            physical,
            transport: transport.clone(),
            running: RwLock::new(None),
            becoming: tokio::sync::Mutex::new(()),
            liveness: RwLock::new(Vec::new()),
            decommissioning: RwLock::new(BTreeSet::new()),
            tasks: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
            settings: RwLock::new(Settings::with_node_defaults(
                config.setting_defaults.iter().copied(),
            )),
            config,
        });
        let handler: Weak<dyn Handler> = Arc::downgrade(&node) as Weak<dyn Handler>;
        transport.set_handler(handler);
        node.tasks.lock().push(transport.serve(listener));
        node.spawn(crate::http::serve(http_listener, Arc::downgrade(&node)));
        let sql_shared = Arc::new(crate::wire::Listener {
            node: Arc::downgrade(&node),
            limit: Arc::new(tokio::sync::Semaphore::new(node.config.max_sql_connections)),
            cancels: Default::default(),
            open: node.sql_connections.clone(),
        });
        node.spawn(crate::wire::serve(sql_listener, sql_shared));

        node.load_address_book()?;
        match node.read_ident()? {
            Some(id) => {
                node.become_running(id).await?;
            }
            None if !node.config.join.is_empty() => {
                let n = Arc::downgrade(&node);
                node.spawn(async move { join_loop(n).await });
            }
            None => tracing::info!("no store ident and no --join: waiting for `cairn init`"),
        }
        let n = Arc::downgrade(&node);
        node.spawn(async move { maintenance_loop(n).await });
        let n = Arc::downgrade(&node);
        node.spawn(async move { split_loop(n).await });
        let n = Arc::downgrade(&node);
        node.spawn(async move { replicate_loop(n).await });
        tracing::info!(rpc = %node.rpc_addr, http = %node.http_addr, "node started");
        Ok(node)
    }

    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().push(tokio::spawn(f));
    }

    pub fn rpc_addr(&self) -> &str {
        &self.rpc_addr
    }

    pub fn http_addr(&self) -> &str {
        &self.http_addr
    }

    pub fn sql_addr(&self) -> &str {
        &self.sql_addr
    }

    /// Whether SQL clients are trusted without a password.
    pub fn insecure(&self) -> bool {
        self.config.insecure
    }

    /// The SQL layer, once the node serves and the cluster's catalog exists.
    pub fn sql_server(&self) -> Option<Arc<cairn_sql::SqlServer>> {
        self.sql.read().clone()
    }

    pub fn sql_metrics(&self) -> &Arc<cairn_sql::metrics::SqlMetrics> {
        &self.sql_metrics
    }

    /// SQL connections open now.
    pub fn sql_connections(&self) -> i64 {
        self.sql_connections.load(Ordering::Relaxed)
    }

    /// Liveness heartbeats that failed since the node started.
    pub fn heartbeat_failures(&self) -> u64 {
        self.heartbeat_failures.load(Ordering::Relaxed)
    }

    pub fn transport(&self) -> &Arc<Transport> {
        &self.transport
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// Shifts this node's physical clock by `nanos` (fault tests: clock skew).
    pub fn set_clock_offset(&self, nanos: i64) {
        self.physical.set_offset_nanos(nanos);
    }

    /// A transaction starter on this node's DistSender, once the node serves.
    pub fn db(&self) -> Option<cairn_txn::Db> {
        self.dist_sender()
            .map(|d| cairn_txn::Db::new(d, self.clock.clone()))
    }

    /// The node's id, once it has one.
    pub fn node_id(&self) -> Option<NodeId> {
        self.running.read().as_ref().map(|r| r.node_id)
    }

    /// The node's store, once it runs.
    pub fn store(&self) -> Option<Arc<Store>> {
        self.running.read().as_ref().map(|r| r.store.clone())
    }

    /// The node's DistSender, once it runs.
    pub fn dist_sender(&self) -> Option<Arc<DistSender>> {
        self.running.read().as_ref().map(|r| r.dist.clone())
    }

    /// Whether the node serves (has an id and a running store).
    pub fn is_serving(&self) -> bool {
        self.running.read().is_some() && !self.stopped.load(Ordering::Acquire)
    }

    /// The liveness records read last, with whether each is live now.
    pub fn liveness(&self) -> Vec<(LivenessRecord, bool)> {
        let now = self.clock.now();
        self.liveness
            .read()
            .iter()
            .map(|r| (r.clone(), r.expiration > now))
            .collect()
    }

    /// Whether `node`'s liveness record, as last read, says it is live now.
    pub fn is_live(&self, node: NodeId) -> bool {
        let now = self.clock.now();
        self.liveness
            .read()
            .iter()
            .any(|r| r.node_id == node && r.expiration > now)
    }

    /// Every node with its liveness and whether it is decommissioning.
    pub fn node_statuses(&self) -> Vec<NodeStatus> {
        let marked = self.decommissioning.read().clone();
        self.liveness()
            .into_iter()
            .map(|(record, live)| NodeStatus {
                decommissioning: marked.contains(&record.node_id),
                record,
                live,
            })
            .collect()
    }

    /// The nodes as the allocator sees them: a node not live for longer than
    /// `server.time_until_store_dead` is dead.
    pub fn cluster_view(&self) -> ClusterView {
        let now = self.clock.now();
        let dead_after = self.settings.read().time_until_store_dead();
        let nodes = self
            .node_statuses()
            .into_iter()
            .map(|s| {
                let r = s.record;
                let dead = now > r.expiration.add_duration(dead_after);
                let state = match (s.decommissioning, s.live) {
                    (true, live) => NodeState::Decommissioning { live },
                    (false, true) => NodeState::Live,
                    (false, false) if dead => NodeState::Dead,
                    (false, false) => NodeState::Suspect,
                };
                let info = NodeInfo {
                    node_id: r.node_id,
                    addr: r.addr,
                    state,
                    replicas: r.replicas,
                    leases: r.leases,
                };
                (r.node_id, info)
            })
            .collect();
        ClusterView { nodes }
    }

    /// Marks a node as decommissioning (its replicas move to other nodes and it gets
    /// no new ones), or clears the mark.
    pub async fn set_decommissioning(&self, node: NodeId, on: bool) -> Result<(), String> {
        let dist = self.dist_sender().ok_or("node is not serving")?;
        if on && !self.liveness.read().iter().any(|r| r.node_id == node) {
            return Err(format!("no node {node} in the cluster"));
        }
        let key = keys::node_decommission_key(node);
        let req = if on {
            let value = postcard::to_stdvec(&node).map_err(|e| e.to_string())?;
            Request::Put { key, value }
        } else {
            Request::Delete { key }
        };
        dist.send(BatchRequest::new(RangeId(0), vec![req]))
            .await
            .map_err(|e| e.to_string())?;
        let mut marked = self.decommissioning.write();
        if on {
            marked.insert(node);
        } else {
            marked.remove(&node);
        }
        Ok(())
    }

    /// Persists the transport's address book, so a restarted node can reach its peers
    /// before it has read anyone's liveness record.
    fn save_address_book(&self) -> Result<(), NodeError> {
        let key = keys::store_addresses_key();
        let body = postcard::to_stdvec(&self.transport.known_nodes()).map_err(storage)?;
        let mut b = WriteBatch::new();
        b.put(
            Space::Raft,
            key.clone(),
            seal(&key, ADDRESS_BOOK_TAG, &body),
        );
        self.engine.write(b, false).map_err(storage)
    }

    fn load_address_book(&self) -> Result<(), NodeError> {
        let key = keys::store_addresses_key();
        let Some(stored) = self.engine.get(Space::Raft, &key).map_err(storage)? else {
            return Ok(());
        };
        let (_, body) = open(&key, &key, &stored).map_err(storage)?;
        let book: Vec<(NodeId, String)> = postcard::from_bytes(body).map_err(storage)?;
        for (n, a) in book {
            self.transport.set_addr(n, a);
        }
        Ok(())
    }

    fn read_ident(&self) -> Result<Option<NodeId>, NodeError> {
        let key = keys::store_ident_key();
        let Some(stored) = self.engine.get(Space::Raft, &key).map_err(storage)? else {
            return Ok(None);
        };
        let (tag, body) = open(&key, &key, &stored).map_err(storage)?;
        let arr: [u8; 8] = body
            .try_into()
            .map_err(|_| NodeError::Storage("store ident is not 8 bytes".into()))?;
        if tag != STORE_IDENT_TAG {
            return Err(NodeError::Storage(format!("store ident has tag {tag}")));
        }
        Ok(Some(NodeId(u64::from_be_bytes(arr))))
    }

    fn write_ident(&self, id: NodeId) -> Result<(), NodeError> {
        let key = keys::store_ident_key();
        let mut b = WriteBatch::new();
        b.put(
            Space::Raft,
            key.clone(),
            seal(&key, STORE_IDENT_TAG, &id.0.to_be_bytes()),
        );
        self.engine.write(b, true).map_err(storage)
    }

    async fn become_running(self: &Arc<Self>, id: NodeId) -> Result<Running, NodeError> {
        self.transport.set_node_id(id);
        let store_config = StoreConfig {
            node_id: id,
            addr: self.rpc_addr.clone(),
            raft: self.config.raft,
            request_timeout: self.config.request_timeout,
        };
        let raft_channel = Arc::new(RaftChannel(self.transport.clone()));
        let store = Store::open(
            store_config,
            self.engine.clone(),
            raft_channel,
            self.clock.clone(),
        )
        .await
        .map_err(|e| NodeError::Storage(e.to_string()))?;
        let dialer = Arc::new(Dialer {
            node_id: id,
            store: Arc::downgrade(&store),
            transport: self.transport.clone(),
        });
        let dist = Arc::new(DistSender::new(dialer, self.config.request_timeout));
        store.set_cluster_sender(dist.clone());
        let me = self.me.clone();
        store.set_liveness(Arc::new(move |n| {
            me.upgrade().is_some_and(|node| node.is_live(n))
        }));
        let running = Running {
            node_id: id,
            store,
            dist,
        };
        *self.running.write() = Some(running.clone());
        // The SQL layer serves once the catalog's databases exist; every node makes
        // sure of that (the first run creates them, the others find them).
        let sql = cairn_sql::SqlServer::with_metrics(
            cairn_txn::Db::new(running.dist.clone(), self.clock.clone()),
            id.0,
            self.sql_metrics.clone(),
        );
        sql.set_range_info(Arc::new(crate::ranges::NodeRanges(self.me.clone())));
        sql.set_setting_defaults(self.settings());
        let me = self.me.clone();
        let root_password = self.config.root_password.clone();
        self.spawn(async move {
            loop {
                match sql.bootstrap(root_password.as_deref()).await {
                    Ok(()) => {
                        if let Some(node) = me.upgrade() {
                            *node.sql.write() = Some(sql);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "SQL catalog not ready; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
        });
        tracing::info!(node = %id, "node serving");
        Ok(running)
    }

    /// Bootstraps a new cluster on this node (it becomes node 1 and holds range 1).
    async fn init(self: &Arc<Self>) -> Result<NodeId, String> {
        let _b = self.becoming.lock().await;
        if self.running.read().is_some() || self.read_ident().map_err(|e| e.to_string())?.is_some()
        {
            return Err("cluster is already initialized".into());
        }
        let id = NodeId(1);
        self.write_ident(id).map_err(|e| e.to_string())?;
        let running = self.become_running(id).await.map_err(|e| e.to_string())?;
        running.store.bootstrap().await.map_err(|e| e.to_string())?;
        let allocated = allocate_node_id(&running.dist).await?;
        if allocated != id {
            return Err(format!(
                "node id counter of the new cluster started at {allocated}"
            ));
        }
        self.heartbeat().await;
        tracing::info!("cluster initialized");
        Ok(id)
    }

    /// Writes this node's liveness record, then reads everyone's.
    async fn heartbeat(&self) {
        let Some(running) = self.running.read().clone() else {
            return;
        };
        // Replicas that hold a range: one that never received its first snapshot (a
        // learner whose add was abandoned, or created by a stray message) holds nothing,
        // and must not keep a decommission waiting.
        let replicas: Vec<_> = running
            .store
            .replicas()
            .into_iter()
            .filter(|r| r.descriptor().is_some())
            .collect();
        let leases = replicas.iter().filter(|r| r.group().is_leader()).count();
        let record = LivenessRecord {
            node_id: running.node_id,
            addr: self.rpc_addr.clone(),
            sql_addr: self.sql_addr.clone(),
            http_addr: self.http_addr.clone(),
            expiration: self.clock.now().add_duration(self.config.liveness_ttl),
            replicas: replicas.len() as u64,
            leases: leases as u64,
        };
        let value = match postcard::to_stdvec(&record) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(error = %e, "encoding liveness record");
                return;
            }
        };
        let put = BatchRequest::new(
            RangeId(0),
            vec![Request::Put {
                key: keys::node_liveness_key(running.node_id),
                value,
            }],
        );
        if let Err(e) = running.dist.send(put).await {
            self.heartbeat_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "liveness heartbeat failed");
        }
        let scan = BatchRequest::new(
            RangeId(0),
            vec![
                Request::Scan {
                    span: keys::node_liveness_span(),
                    max_keys: 0,
                },
                Request::Scan {
                    span: keys::node_decommission_span(),
                    max_keys: 0,
                },
            ],
        );
        match running.dist.send(scan).await {
            Ok(resp) => {
                let mut records = Vec::new();
                let mut responses = resp.responses.into_iter();
                if let Some(Response::Scan { kvs, .. }) = responses.next() {
                    for (k, v) in kvs {
                        match postcard::from_bytes::<LivenessRecord>(&v) {
                            Ok(r) => records.push(r),
                            Err(e) => {
                                tracing::warn!(key = %keys::pretty(&k), error = %e, "bad liveness record")
                            }
                        }
                    }
                }
                if let Some(Response::Scan { kvs, .. }) = responses.next() {
                    let marked = kvs
                        .iter()
                        .filter_map(|(_, v)| postcard::from_bytes::<NodeId>(v).ok())
                        .collect();
                    *self.decommissioning.write() = marked;
                }
                for r in &records {
                    self.transport.set_addr(r.node_id, r.addr.clone());
                }
                let changed = {
                    let old = self.liveness.read();
                    old.len() != records.len()
                        || old.iter().zip(&records).any(|(a, b)| a.addr != b.addr)
                };
                if changed && let Err(e) = self.save_address_book() {
                    tracing::warn!(error = %e, "saving the address book");
                }
                *self.liveness.write() = records;
            }
            Err(e) => tracing::warn!(error = %e, "reading liveness failed"),
        }
    }

    /// The live nodes and their addresses.
    /// The cluster settings in force on this node.
    pub fn settings(&self) -> Settings {
        self.settings.read().clone()
    }

    /// Reads the cluster settings stored in the cluster (keeping the last ones read if
    /// the cluster does not answer).
    async fn refresh_settings(&self) {
        let Some(dist) = self.dist_sender() else {
            return;
        };
        let batch = BatchRequest::new(
            RangeId(0),
            vec![Request::Scan {
                span: keys::setting_span(),
                max_keys: 0,
            }],
        );
        match dist.send(batch).await.map(|r| r.responses) {
            Ok(responses) => {
                let Some(Response::Scan { kvs, .. }) = responses.into_iter().next() else {
                    return;
                };
                self.settings.write().set_stored_kvs(kvs);
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read cluster settings; keeping the last ones")
            }
        }
    }

    pub fn live_nodes(&self) -> Vec<(NodeId, String)> {
        self.liveness()
            .into_iter()
            .filter(|(_, live)| *live)
            .map(|(r, _)| (r.node_id, r.addr))
            .collect()
    }

    /// What this node's replica of `range_id` reports.
    pub fn replica_status(&self, range_id: RangeId) -> Option<ReplicaStatus> {
        let store = self.store()?;
        let r = store.replica(range_id)?;
        let s = r.status();
        let (size_bytes, qps) = r.load_stats();
        Some(ReplicaStatus {
            is_leader: s.is_leader && s.stopped.is_none(),
            applied_index: s.applied_index,
            term: s.term,
            size_bytes,
            qps,
        })
    }

    /// Stops serving: loops, transport and replicas. The store stays on disk.
    pub async fn shutdown(&self) {
        if self.stopped.swap(true, Ordering::AcqRel) {
            return;
        }
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        self.transport.close();
        let running = self.running.write().take();
        if let Some(r) = running {
            r.store.shutdown().await;
        }
        tracing::info!(rpc = %self.rpc_addr, "node stopped");
    }
}

async fn allocate_node_id(dist: &DistSender) -> Result<NodeId, String> {
    let inc = BatchRequest::new(
        RangeId(0),
        vec![Request::Increment {
            key: keys::id_generator_key(NODE_ID_GENERATOR),
            delta: 1,
        }],
    );
    match dist
        .send(inc)
        .await
        .map_err(|e| e.to_string())?
        .responses
        .first()
    {
        Some(Response::Increment { new_value }) => u64::try_from(*new_value)
            .map(NodeId)
            .map_err(|_| format!("node id counter is negative: {new_value}")),
        other => Err(format!(
            "unexpected answer to the node id increment: {other:?}"
        )),
    }
}

impl Node {
    /// Creates `count` empty ranges (ids from 1,000,000 up) on this node and two other
    /// live nodes.
    async fn create_idle_ranges(&self, store: &Store, count: u64) -> Result<RpcResponse, String> {
        let live = self.live_nodes();
        let me = store.node_id();
        let mut nodes: Vec<(NodeId, String)> =
            live.iter().filter(|(n, _)| *n == me).cloned().collect();
        nodes.extend(live.iter().filter(|(n, _)| *n != me).take(2).cloned());
        if nodes.len() < 3 || nodes[0].0 != me {
            return Err(format!(
                "need this node and two other live nodes, have {live:?}"
            ));
        }
        let members: Vec<(ReplicaId, ReplicaNode)> = nodes
            .iter()
            .enumerate()
            .map(|(i, (n, a))| {
                (
                    ReplicaId(i as u64 + 1),
                    ReplicaNode {
                        node_id: *n,
                        addr: a.clone(),
                    },
                )
            })
            .collect();
        let mut created = 0;
        for i in 0..count {
            let range_id = RangeId(1_000_000 + i);
            store
                .create_idle_group(range_id, &members)
                .await
                .map_err(|e| e.to_string())?;
            created += 1;
        }
        Ok(RpcResponse::DebugIdleRanges { created })
    }
}

/// Asks the join addresses for a node id until one gives it.
async fn join_loop(node: Weak<Node>) {
    loop {
        let Some(n) = node.upgrade() else { return };
        if n.running.read().is_some() || n.stopped.load(Ordering::Acquire) {
            return;
        }
        let targets: Vec<String> = n
            .config
            .join
            .iter()
            .filter(|a| **a != n.rpc_addr)
            .cloned()
            .collect();
        for addr in targets {
            let req = RpcRequest::Join {
                addr: n.rpc_addr.clone(),
            };
            match n
                .transport
                .call_addr(&addr, req, Duration::from_secs(10))
                .await
            {
                Ok(RpcResponse::Join { node_id, nodes }) => {
                    let _b = n.becoming.lock().await;
                    if n.running.read().is_some() {
                        return;
                    }
                    for (id, a) in nodes {
                        n.transport.set_addr(id, a);
                    }
                    if let Err(e) = n.write_ident(node_id) {
                        tracing::error!(error = %e, "recording the node id");
                        return;
                    }
                    match n.become_running(node_id).await {
                        Ok(_) => tracing::info!(node = %node_id, via = %addr, "joined the cluster"),
                        Err(e) => tracing::error!(error = %e, "starting the store after joining"),
                    }
                    return;
                }
                Ok(other) => tracing::warn!(?other, "unexpected answer to join"),
                Err(TransportError::Remote(e)) => {
                    tracing::debug!(%addr, error = %e, "join refused")
                }
                Err(e) => tracing::debug!(%addr, error = %e, "join failed"),
            }
        }
        drop(n);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Liveness heartbeats, once a second.
async fn maintenance_loop(node: Weak<Node>) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let interval = n.config.liveness_interval;
        if n.is_serving() {
            n.heartbeat().await;
        }
        drop(n);
        tokio::time::sleep(interval).await;
    }
}

/// How many replicate-queue passes go by between two checks of a replica that looks
/// like a member of its range (one that looks removed is checked every pass).
const REPLICA_GC_EVERY_PASSES: u32 = 10;

/// The replicate queue and the replica GC, once a second (apart from the heartbeats:
/// adding a replica waits for its snapshot).
async fn replicate_loop(node: Weak<Node>) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let interval = n.config.liveness_interval;
        if n.is_serving()
            && let Some(store) = n.store()
        {
            let mut view = n.cluster_view();
            let rebalance = n.settings.read().rebalance_enabled();
            store.replicate_queue_pass(&mut view, rebalance).await;
            store
                .replica_gc_pass(interval * REPLICA_GC_EVERY_PASSES)
                .await;
        }
        drop(n);
        tokio::time::sleep(interval).await;
    }
}

/// Reads the cluster settings and runs the split queue, once a second (apart from the
/// heartbeats, which a slow split must not delay).
async fn split_loop(node: Weak<Node>) {
    loop {
        let Some(n) = node.upgrade() else { return };
        let interval = n.config.liveness_interval;
        if n.is_serving()
            && let Some(store) = n.store()
        {
            n.refresh_settings().await;
            let config = n.settings.read().split_config();
            store.split_queue_pass(config).await;
        }
        drop(n);
        tokio::time::sleep(interval).await;
    }
}

impl Handler for Node {
    fn handle(&self, req: RpcRequest) -> BoxFuture<'_, Result<RpcResponse, String>> {
        Box::pin(async move {
            let running = self.running.read().clone();
            match req {
                RpcRequest::Raft(msg) => {
                    let r = running.ok_or("node has not joined a cluster")?;
                    r.store.handle_raft(*msg).await.map(RpcResponse::Raft)
                }
                RpcRequest::Batch(batch) => Ok(RpcResponse::Batch(match running {
                    Some(r) => r.store.send_batch(batch).await,
                    None => Err(api::Error::RangeNotFound {
                        range_id: batch.header.range_id,
                        node_id: NodeId(0),
                    }),
                })),
                RpcRequest::Join { addr } => {
                    // Not while this node is still becoming a member: `init` allocates
                    // node id 1 for itself after it starts running, and a joiner served
                    // in between would take that id.
                    let becoming = self.becoming.lock().await;
                    let r = self
                        .running
                        .read()
                        .clone()
                        .ok_or("this node has not joined a cluster yet")?;
                    drop(becoming);
                    let node_id = allocate_node_id(&r.dist).await?;
                    let mut nodes = self.transport.known_nodes();
                    nodes.push((r.node_id, self.rpc_addr.clone()));
                    tracing::info!(node = %node_id, %addr, "node joined");
                    Ok(RpcResponse::Join { node_id, nodes })
                }
                RpcRequest::Init => {
                    let me = self.me.upgrade().ok_or("node is shutting down")?;
                    me.init().await.map(|node_id| RpcResponse::Init { node_id })
                }
                RpcRequest::RangeStatus(range_id) => {
                    Ok(RpcResponse::RangeStatus(self.replica_status(range_id)))
                }
                RpcRequest::DebugIdleRanges { count } => {
                    let r = running.ok_or("node is not serving")?;
                    self.create_idle_ranges(&r.store, count).await
                }
                RpcRequest::Decommission { node_id, on } => {
                    self.set_decommissioning(node_id, on).await?;
                    Ok(RpcResponse::NodeStatuses(self.node_statuses()))
                }
                RpcRequest::NodeStatuses => Ok(RpcResponse::NodeStatuses(self.node_statuses())),
                RpcRequest::CheckConsistency => {
                    let me = self.me.upgrade().ok_or("node is shutting down")?;
                    crate::consistency::check_all(&me)
                        .await
                        .map(RpcResponse::CheckConsistency)
                }
                RpcRequest::Nodes => {
                    let r = running.ok_or("node is not serving")?;
                    let mut nodes = self.transport.known_nodes();
                    nodes.retain(|(n, _)| *n != r.node_id);
                    nodes.push((r.node_id, self.rpc_addr.clone()));
                    Ok(RpcResponse::Nodes(nodes))
                }
            }
        })
    }
}

/// Reaches nodes for the DistSender: this node's store directly, others by RPC.
struct Dialer {
    node_id: NodeId,
    store: Weak<Store>,
    transport: Arc<Transport>,
}

impl NodeDialer for Dialer {
    fn sender(&self, node: NodeId) -> Arc<dyn Sender> {
        if node == self.node_id
            && let Some(store) = self.store.upgrade()
        {
            return store;
        }
        Arc::new(self.transport.sender(node))
    }

    fn nodes(&self) -> Vec<NodeId> {
        let mut nodes = vec![self.node_id];
        nodes.extend(
            self.transport
                .known_nodes()
                .into_iter()
                .map(|(n, _)| n)
                .filter(|n| *n != self.node_id),
        );
        nodes
    }
}
