//! List-append under faults: transactions append unique values to lists under keys on
//! several ranges and read lists back, while a leaseholder dies and a node is cut off.
//! The history is checked for every anomaly serializability forbids
//! (`cairn_tests::list_append`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cairn_kv::RangeId;
use cairn_tests::list_append::{self, MicroOp, Outcome};
use cairn_tests::{Cluster, Rng};
use cairn_txn::{Txn, TxnError};
use parking_lot::Mutex;
use tokio::sync::RwLock;

const KEYS: u64 = 8;

fn key(k: u64) -> Vec<u8> {
    format!("la/{k:02}").into_bytes()
}

fn decode(v: Option<Vec<u8>>) -> Vec<u64> {
    match v {
        None => Vec::new(),
        Some(b) => std::str::from_utf8(&b)
            .expect("utf8 list")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().expect("list element"))
            .collect(),
    }
}

fn encode(list: &[u64]) -> Vec<u8> {
    list.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(",")
        .into_bytes()
}

/// Runs the micro-ops in `txn`, filling in what reads returned.
async fn run_ops(txn: &mut Txn, ops: &mut [MicroOp]) -> Result<(), TxnError> {
    for op in ops.iter_mut() {
        match op {
            MicroOp::Read { key: k, list } => {
                *list = Some(decode(txn.get(&key(*k)).await?));
            }
            MicroOp::Append { key: k, value } => {
                let mut l = decode(txn.get(&key(*k)).await?);
                l.push(*value);
                txn.put(&key(*k), &encode(&l)).await?;
            }
        }
    }
    Ok(())
}

async fn worker(
    id: u64,
    cluster: Arc<RwLock<Cluster>>,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<Vec<list_append::Txn>>>,
    epoch: Instant,
) {
    let mut rng = Rng::new(1000 + id);
    let mut next_value = id * 1_000_000;
    while !stop.load(Ordering::Relaxed) {
        let n = 1 + rng.below(4);
        let mut ops: Vec<MicroOp> = (0..n)
            .map(|_| {
                let k = rng.below(KEYS);
                if rng.below(2) == 0 {
                    MicroOp::Read { key: k, list: None }
                } else {
                    next_value += 1;
                    MicroOp::append(k, next_value)
                }
            })
            .collect();
        let db = {
            let c = cluster.read().await;
            let live: Vec<usize> = (1..=c.len()).filter(|&i| c.is_up(i)).collect();
            c.db(live[rng.below(live.len() as u64) as usize])
        };
        let call = epoch.elapsed().as_micros() as u64;
        let mut txn = db.begin();
        let outcome = match run_ops(&mut txn, &mut ops).await {
            Err(_) => {
                // Nothing was committed: the transaction is rolled back.
                txn.rollback().await;
                Outcome::Aborted
            }
            Ok(()) => match txn.commit().await {
                Ok(()) => Outcome::Committed,
                Err(TxnError::Retry { .. }) => Outcome::Aborted,
                // An ambiguous commit, or one that failed in a way that does not prove
                // it did not happen.
                Err(_) => Outcome::Unknown,
            },
        };
        let ret = epoch.elapsed().as_micros() as u64;
        if outcome != Outcome::Committed {
            for op in &mut ops {
                if let MicroOp::Read { list, .. } = op {
                    *list = None;
                }
            }
        }
        let mut h = history.lock();
        let id = h.len();
        h.push(list_append::Txn {
            id,
            ops,
            outcome,
            call,
            ret: Some(ret),
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_append_is_serializable_under_faults() {
    let c = Cluster::start(3).await;
    for (i, at) in [2u64, 4, 6].iter().enumerate() {
        let (_, right) = c.split(1, &key(*at)).await.expect("split");
        c.transfer_lease(right.range_id, 1 + (i + 1) % 3).await;
    }
    let cluster = Arc::new(RwLock::new(c));
    let stop = Arc::new(AtomicBool::new(false));
    let history = Arc::new(Mutex::new(Vec::new()));
    let epoch = Instant::now();
    let workers: Vec<_> = (0..5)
        .map(|w| {
            tokio::spawn(worker(
                w,
                cluster.clone(),
                stop.clone(),
                history.clone(),
                epoch,
            ))
        })
        .collect();

    cairn_tests::kill_restart_partition(&cluster, RangeId(1), |step| eprintln!("{step}")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("a worker is stuck")
            .unwrap();
    }

    let history = history.lock().clone();
    let report = list_append::check(&history);
    eprintln!(
        "{:?}; real-time cycles (strict serializability, not required): {}",
        report.stats,
        report.realtime.len()
    );
    assert!(report.is_ok(), "{report}");
    assert!(
        report.stats.committed > 50,
        "too few committed transactions: {:?}",
        report.stats
    );
    assert!(
        report.stats.wr > 20 && report.stats.ww > 20,
        "too few dependencies to check: {:?}",
        report.stats
    );
}
