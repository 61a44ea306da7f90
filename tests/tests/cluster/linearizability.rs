//! Single-key linearizability under faults: clients read and write a few registers
//! through every node while the leaseholder is killed and restarted and partitioned
//! away; the recorded history of each register must be linearizable.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_kv::RangeId;
use cairn_kv::api;
use cairn_tests::Cluster;
use cairn_tests::linearizability::{Op, OpKind, check_register};
use parking_lot::Mutex;
use tokio::sync::RwLock;

const KEYS: u64 = 4;
const CLIENTS: u64 = 4;

type History = Arc<Mutex<BTreeMap<u64, Vec<Op>>>>;

async fn client(
    id: u64,
    cluster: Arc<RwLock<Cluster>>,
    history: History,
    start: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut rng = cairn_tests::Rng::new(0x9E37_79B9_7F4A_7C15 ^ (id + 1));
    let mut seq = 0;
    let now = || start.elapsed().as_micros() as u64;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let key = rng.next_u64() % KEYS;
        let k = format!("reg-{key}").into_bytes();
        let write = rng.next_u64().is_multiple_of(2);
        let c = cluster.read().await;
        let live: Vec<usize> = (1..=c.len())
            .filter(|&n| c.is_up(n) && c.node(n).is_serving())
            .collect();
        if live.is_empty() {
            drop(c);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let via = live[(rng.next_u64() as usize) % live.len()];
        let call = now();
        let op = if write {
            seq += 1;
            let v = id * 1_000_000 + seq;
            match c.put(via, &k, &v.to_be_bytes()).await {
                Ok(()) => Some(Op {
                    call,
                    ret: Some(now()),
                    kind: OpKind::Write(v),
                }),
                Err(api::Error::AmbiguousResult { .. }) => Some(Op {
                    call,
                    ret: None,
                    kind: OpKind::Write(v),
                }),
                // Any other error: the write was never proposed.
                Err(_) => None,
            }
        } else {
            match c.get(via, &k).await {
                Ok(v) => {
                    let v = v.map(|b| u64::from_be_bytes(b.try_into().expect("8-byte values")));
                    Some(Op {
                        call,
                        ret: Some(now()),
                        kind: OpKind::Read(v),
                    })
                }
                Err(_) => None,
            }
        };
        drop(c);
        if let Some(op) = op {
            history.lock().entry(key).or_default().push(op);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_key_reads_and_writes_stay_linearizable_under_faults() {
    let c = Cluster::start(3).await;
    let cluster = Arc::new(RwLock::new(c));
    let history: History = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            tokio::spawn(client(
                id,
                cluster.clone(),
                history.clone(),
                start,
                stop.clone(),
            ))
        })
        .collect();

    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    pause(1500).await;
    // Kill the leaseholder, then bring it back.
    let leader = cluster.read().await.leaseholder(RangeId(1)).unwrap_or(1);
    cluster.write().await.kill(leader).await;
    pause(2500).await;
    cluster.write().await.restart(leader).await;
    pause(2000).await;
    // Partition the (new) leaseholder away from the others, then heal.
    let leader = cluster.read().await.leaseholder(RangeId(1)).unwrap_or(1);
    {
        let c = cluster.read().await;
        for other in (1..=3).filter(|&n| n != leader) {
            c.partition(leader, other);
        }
    }
    pause(2500).await;
    cluster.read().await.heal();
    pause(1500).await;

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let history = history.lock().clone();
    let total: usize = history.values().map(Vec::len).sum();
    let writes_ok = history
        .values()
        .flatten()
        .filter(|o| matches!(o.kind, OpKind::Write(_)) && o.ret.is_some())
        .count();
    let reads = history
        .values()
        .flatten()
        .filter(|o| matches!(o.kind, OpKind::Read(_)))
        .count();
    eprintln!("checked {total} operations: {writes_ok} acknowledged writes, {reads} reads");
    assert!(
        writes_ok > 20 && reads > 20,
        "the workload ran ({writes_ok} writes, {reads} reads)"
    );
    for (key, ops) in &history {
        if let Err(e) = check_register(ops, None) {
            panic!("register {key}: {e}");
        }
    }
}
