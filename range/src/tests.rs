//! Stores in one process on in-memory engines, joined by an in-process transport that
//! can cut links: the replication layer tested without sockets or RocksDB. (The cluster
//! tests in `tests/` run real nodes over TCP on RocksDB.)

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_kv::api::{self, BatchRequest, BoxFuture, Request, Response};
use cairn_kv::hlc::Clock;
use cairn_kv::{NodeId, RangeId};
use parking_lot::Mutex;

use crate::allocator::{ClusterView, NodeInfo, NodeState};
use crate::raft::{RaftConfig, RaftEnvelope, RaftReply, RaftTransport};
use crate::store::{FIRST_RANGE_ID, Store, StoreConfig};

#[derive(Default)]
struct Net {
    stores: HashMap<NodeId, Weak<Store>>,
    cut: BTreeSet<(NodeId, NodeId)>,
}

/// Delivers messages to stores of the same process, except across cut links.
#[derive(Clone, Default)]
struct LocalTransport {
    net: Arc<Mutex<Net>>,
    from: NodeId,
}

impl RaftTransport for LocalTransport {
    fn send(
        &self,
        msg: RaftEnvelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<RaftReply, String>> {
        Box::pin(async move {
            let target = {
                let net = self.net.lock();
                if net.cut.contains(&(self.from, msg.to_node)) {
                    None
                } else {
                    net.stores.get(&msg.to_node).and_then(Weak::upgrade)
                }
            };
            let Some(store) = target else {
                tokio::time::sleep(timeout).await;
                return Err(format!("{} unreachable", msg.to_node));
            };
            match tokio::time::timeout(timeout, store.handle_raft(msg)).await {
                Ok(r) => r,
                Err(_) => Err("timed out".into()),
            }
        })
    }
}

/// RocksDB when the feature is on (in a leaked temporary directory), else in memory.
fn test_engine() -> Arc<dyn cairn_kv::storage::Engine> {
    #[cfg(feature = "rocksdb")]
    {
        let dir = tempfile::tempdir().unwrap().keep();
        Arc::new(cairn_kv::storage::rocksdb::RocksDb::open(&dir).unwrap())
    }
    #[cfg(not(feature = "rocksdb"))]
    {
        Arc::new(cairn_kv::storage::memory::Memory::new())
    }
}

struct Cluster {
    net: Arc<Mutex<Net>>,
    stores: Vec<Option<Arc<Store>>>,
}

fn fast_timing() -> RaftConfig {
    RaftConfig {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        snapshot_every: 50,
        log_kept_behind_snapshot: 10,
    }
}

impl Cluster {
    async fn new(n: u64) -> Cluster {
        let net = Arc::new(Mutex::new(Net::default()));
        let mut stores = Vec::new();
        for i in 1..=n {
            let node = NodeId(i);
            let transport = Arc::new(LocalTransport {
                net: net.clone(),
                from: node,
            });
            let config = StoreConfig {
                node_id: node,
                addr: format!("local:{i}"),
                raft: fast_timing(),
                request_timeout: Duration::from_secs(3),
            };
            let store = Store::open(config, test_engine(), transport, Arc::new(Clock::system()))
                .await
                .unwrap();
            net.lock().stores.insert(node, Arc::downgrade(&store));
            stores.push(Some(store));
        }
        Cluster { net, stores }
    }

    fn store(&self, node: u64) -> &Arc<Store> {
        self.stores[node as usize - 1]
            .as_ref()
            .expect("store is up")
    }

    /// Every running store as a live node holding nothing (so nothing rebalances).
    fn live(&self) -> ClusterView {
        let nodes = self
            .stores
            .iter()
            .flatten()
            .map(|s| {
                let info = NodeInfo {
                    node_id: s.node_id(),
                    addr: format!("local:{}", s.node_id().0),
                    state: NodeState::Live,
                    replicas: 0,
                    leases: 0,
                };
                (s.node_id(), info)
            })
            .collect();
        ClusterView { nodes }
    }

    /// Sends to whichever store leads the first range, following hints.
    async fn send(&self, requests: Vec<Request>) -> Result<Vec<Response>, api::Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut last = None;
        while tokio::time::Instant::now() < deadline {
            for store in self.stores.iter().flatten() {
                let ba = BatchRequest::new(FIRST_RANGE_ID, requests.clone());
                match store.send_batch(ba).await {
                    Ok(r) => return Ok(r.responses),
                    // Transient while leadership moves: try another store, then again.
                    Err(
                        e @ (api::Error::NotLeaseholder { .. }
                        | api::Error::RangeNotFound { .. }
                        | api::Error::RangeUnavailable { .. }),
                    ) => last = Some(e),
                    Err(e) => return Err(e),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last.unwrap_or(api::Error::InvalidRequest("no stores".into())))
    }

    async fn kill(&mut self, node: u64) {
        let store = self.stores[node as usize - 1].take().expect("store is up");
        self.net.lock().stores.remove(&store.node_id());
        store.shutdown().await;
    }

    fn cut(&self, a: u64, b: u64) {
        let mut net = self.net.lock();
        net.cut.insert((NodeId(a), NodeId(b)));
        net.cut.insert((NodeId(b), NodeId(a)));
    }

    async fn wait_voters(&self, n: usize) {
        for _ in 0..200 {
            self.store(1)
                .replicate_queue_pass(&mut self.live(), false)
                .await;
            let done = self
                .store(1)
                .replica(RangeId(1))
                .and_then(|r| r.descriptor())
                .is_some_and(|d| d.voters().count() >= n);
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("range never reached {n} voters");
    }
}

fn put(k: &str, v: &str) -> Request {
    Request::Put {
        key: k.as_bytes().to_vec(),
        value: v.as_bytes().to_vec(),
    }
}

fn get(k: &str) -> Request {
    Request::Get {
        key: k.as_bytes().to_vec(),
    }
}

fn value(r: &Response) -> Option<String> {
    match r {
        Response::Get { value } => value
            .as_ref()
            .map(|v| String::from_utf8_lossy(v).into_owned()),
        other => panic!("not a get response: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicates_and_survives_the_loss_of_the_leader() {
    let mut c = Cluster::new(3).await;
    let desc = c.store(1).bootstrap().await.unwrap();
    assert_eq!(desc.range_id, RangeId(1));
    c.send(vec![put("a", "1")]).await.unwrap();
    c.wait_voters(3).await;
    for i in 0..20 {
        c.send(vec![put(&format!("k{i:02}"), &i.to_string())])
            .await
            .unwrap();
    }
    // Every store has the range and the descriptor lists all three.
    let desc = c
        .store(1)
        .replica(RangeId(1))
        .unwrap()
        .descriptor()
        .unwrap();
    assert_eq!(desc.voters().count(), 3);
    for n in 2..=3 {
        let r = c
            .store(n)
            .replica(RangeId(1))
            .expect("replica created by the leader");
        assert!(
            r.group()
                .wait_for(Duration::from_secs(5), "catch up", |s| s.applied_index
                    >= 20)
                .await
        );
    }
    // Followers refuse to serve and point at the leader.
    let err = c
        .store(2)
        .send_batch(BatchRequest::new(RangeId(1), vec![get("a")]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, api::Error::NotLeaseholder { leaseholder: Some(l), .. } if l.node_id == NodeId(1)),
        "{err}"
    );

    c.kill(1).await;
    let got = c.send(vec![get("a"), get("k19")]).await.unwrap();
    assert_eq!(value(&got[0]).as_deref(), Some("1"));
    assert_eq!(value(&got[1]).as_deref(), Some("19"));
    c.send(vec![put("after", "failover")]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_side_of_a_partition_commits_nothing() {
    let c = Cluster::new(3).await;
    c.store(1).bootstrap().await.unwrap();
    c.send(vec![put("a", "1")]).await.unwrap();
    c.wait_voters(3).await;
    // Isolate the leader (node 1).
    c.cut(1, 2);
    c.cut(1, 3);
    let err = c
        .store(1)
        .send_batch(BatchRequest::new(RangeId(1), vec![put("a", "minority")]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            api::Error::RangeUnavailable { .. }
                | api::Error::AmbiguousResult { .. }
                | api::Error::NotLeaseholder { .. }
        ),
        "{err}"
    );
    // The majority elects a leader and serves; the minority's write never happened.
    let mut served = None;
    for _ in 0..300 {
        for n in [2, 3] {
            let ba = BatchRequest::new(RangeId(1), vec![get("a")]);
            if let Ok(r) = c.store(n).send_batch(ba).await {
                served = Some(value(&r.responses[0]));
            }
        }
        if served.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(served, Some(Some("1".to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_outside_the_range_get_the_current_descriptor() {
    let c = Cluster::new(1).await;
    let desc = c.store(1).bootstrap().await.unwrap();
    c.send(vec![put("a", "1")]).await.unwrap();
    // Shrink the range to [KEY_MIN, "m"), as a split of it would.
    let replica = c.store(1).replica(RangeId(1)).unwrap();
    let shrunk = cairn_kv::api::RangeDescriptor {
        end_key: b"m".to_vec(),
        generation: desc.generation + 1,
        ..replica.descriptor().unwrap()
    };
    replica.propose_descriptor(shrunk.clone()).await.unwrap();
    let err = c
        .store(1)
        .send_batch(BatchRequest::new(RangeId(1), vec![get("x")]))
        .await
        .unwrap_err();
    match err {
        api::Error::RangeKeyMismatch {
            range_id, current, ..
        } => {
            assert_eq!(range_id, RangeId(1));
            assert_eq!(current.as_deref(), Some(&shrunk));
        }
        other => panic!("expected RangeKeyMismatch, got {other}"),
    }
    // A batch partly outside is refused whole; keys inside are served.
    let err = c
        .store(1)
        .send_batch(BatchRequest::new(RangeId(1), vec![get("a"), get("z")]))
        .await
        .unwrap_err();
    assert!(matches!(err, api::Error::RangeKeyMismatch { .. }), "{err}");
    let got = c.send(vec![get("a")]).await.unwrap();
    assert_eq!(value(&got[0]).as_deref(), Some("1"));
}

/// A range taking over another's keys in a merge counts what that range wrote before its
/// freeze as uncertain, whatever clock reading a transaction observed on this node
/// before: the writes were made under another node's clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taking_over_a_merged_range_raises_the_local_uncertainty_limit() {
    let c = Cluster::new(1).await;
    c.store(1).bootstrap().await.unwrap();
    c.send(vec![put("a", "1")]).await.unwrap();
    // Let the new lease's own floor (max_offset past its start) fall behind the clock.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let replica = c.store(1).replica(RangeId(1)).unwrap();
    let observed = c.store(1).clock().now();
    let frozen_at = observed.add_duration(Duration::from_millis(300));
    let header = api::Header {
        uncertainty_limit: observed.add_duration(Duration::from_millis(500)),
        observed: vec![(NodeId(1), observed)],
        ..api::Header::default()
    };
    assert!(replica.uncertainty_limit(&header) < frozen_at);
    replica.take_over_reads(frozen_at, &[]);
    assert!(replica.uncertainty_limit(&header) >= frozen_at);
}
