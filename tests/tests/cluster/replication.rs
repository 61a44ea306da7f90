//! Replicated ranges under faults: killed leaseholders, partitions, lost quorum,
//! restarts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_kv::RangeId;
use cairn_kv::api;
use cairn_tests::Cluster;
use parking_lot::Mutex;

/// Keeps writing distinct keys through `via` until told to stop; records what was
/// acknowledged.
struct Writer {
    acked: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl Writer {
    fn start(
        cluster: Arc<tokio::sync::RwLock<Cluster>>,
        via: usize,
        tag: &'static str,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let w = Writer {
            acked: Arc::default(),
            errors: Arc::default(),
            stop: Arc::default(),
        };
        let (acked, errors, stop) = (w.acked.clone(), w.errors.clone(), w.stop.clone());
        let task = tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let key = format!("{tag}-{i:06}").into_bytes();
                let value = format!("v{i}").into_bytes();
                let result = {
                    let c = cluster.read().await;
                    if !c.is_up(via) {
                        break;
                    }
                    c.put(via, &key, &value).await
                };
                match result {
                    Ok(()) => {
                        acked.lock().insert(key, value);
                    }
                    Err(e) => errors.lock().push(e.to_string()),
                }
            }
        });
        (w, task)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_leaseholder_loses_no_acknowledged_write() {
    let c = Cluster::start(3).await;
    let leader = c.leaseholder(RangeId(1)).expect("a leaseholder");
    // Write through a node that will survive.
    let via = if leader == 1 { 2 } else { 1 };
    let cluster = Arc::new(tokio::sync::RwLock::new(c));
    let (writer, task) = Writer::start(cluster.clone(), via, "k");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before = writer.acked.lock().len();
    assert!(before > 10, "the write load is running ({before} writes)");

    let killed_at = Instant::now();
    cluster.write().await.kill(leader).await;
    // Recovery: the first write acknowledged after the kill.
    let recovered = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if writer.acked.lock().len() > before + 5 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "no write succeeded after the kill"
        );
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    writer
        .stop
        .store(true, std::sync::atomic::Ordering::Relaxed);
    task.await.unwrap();
    eprintln!(
        "recovered {recovered:?} after killing the leaseholder; errors meanwhile: {:?}",
        writer.errors.lock().len()
    );

    let c = cluster.read().await;
    for (k, v) in writer.acked.lock().iter() {
        assert_eq!(
            c.get(via, k).await.unwrap().as_ref(),
            Some(v),
            "acknowledged write lost"
        );
    }
    // Errors during failover are clear ones, never silent.
    for e in writer.errors.lock().iter() {
        assert!(
            e.contains("unavailable") || e.contains("ambiguous") || e.contains("leaseholder"),
            "unexpected error during failover: {e}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_leaseholder_commits_nothing_and_the_majority_serves() {
    let c = Cluster::start(3).await;
    c.put(1, b"before", b"1").await.unwrap();
    let leader = c.leaseholder(RangeId(1)).expect("a leaseholder");
    let others: Vec<usize> = (1..=3).filter(|&n| n != leader).collect();
    for &o in &others {
        c.partition(leader, o);
    }
    // The isolated side answers with a clear error within the deadline.
    let started = Instant::now();
    let err = c.put(leader, b"minority", b"x").await.unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(
            err,
            api::Error::RangeUnavailable { .. } | api::Error::AmbiguousResult { .. }
        ),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(15),
        "the minority answered after {took:?}"
    );
    // The majority elects a leader and commits.
    c.put(others[0], b"majority", b"y").await.unwrap();
    assert_eq!(
        c.get(others[1], b"majority").await.unwrap().as_deref(),
        Some(&b"y"[..])
    );
    // After healing, the old leader catches up and the minority write never happened.
    c.heal();
    c.wait_until(Duration::from_secs(20), "old leader catches up", |c| {
        let applied = |n| {
            c.node(n)
                .replica_status(RangeId(1))
                .map(|s| s.applied_index)
                .unwrap_or(0)
        };
        applied(leader) >= applied(others[0]) && applied(leader) > 0
    })
    .await;
    assert_eq!(c.get(leader, b"minority").await.unwrap(), None);
    assert_eq!(
        c.get(leader, b"majority").await.unwrap().as_deref(),
        Some(&b"y"[..])
    );
}
