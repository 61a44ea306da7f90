//! The `cairn` binary as separate processes, one loopback address each: `kill -9` of the
//! leaseholder, and a partition cut with iptables.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_kv::api;
use cairn_tests::processes::{ProcessCluster, get, put};
use parking_lot::Mutex;

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_leaseholder_process_loses_no_acknowledged_write() {
    cairn_tests::init_logging();
    let mut c = ProcessCluster::start(CAIRN, 3).await;
    let leader = c.leader().await.expect("a leader");
    let survivor = (leader + 1) % 3;
    let client = Arc::new(c.client(survivor).await);

    // Steady writes through the DistSender; remember what was acknowledged.
    let acked: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, acked, errors, stop) =
            (client.clone(), acked.clone(), errors.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let (k, v) = (format!("p{i:06}").into_bytes(), i.to_be_bytes().to_vec());
                match put(&client, k.clone(), v.clone()).await {
                    Ok(()) => {
                        acked.lock().insert(k, v);
                    }
                    Err(e) => errors.lock().push(e.to_string()),
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = acked.lock().len();
    assert!(before > 10, "writes are flowing ({before})");

    let killed_at = Instant::now();
    c.kill(leader);
    let recovered = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if acked.lock().len() > before + 5 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no write succeeded after kill -9; the last errors: {:?}",
            errors.lock().iter().rev().take(5).collect::<Vec<_>>()
        );
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("writer");
    eprintln!("kill -9 of the leaseholder process: writes resumed after {recovered:?}");

    let acked = acked.lock().clone();
    for (k, v) in &acked {
        let got = get(&client, k.clone()).await.expect("read back");
        assert_eq!(
            got.as_ref(),
            Some(v),
            "acknowledged write {} lost",
            String::from_utf8_lossy(k)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_iptables_partition_isolates_the_leaseholder_process() {
    cairn_tests::init_logging();
    let mut c = ProcessCluster::start(CAIRN, 3).await;
    let leader = c.leader().await.expect("a leader");
    let others: Vec<usize> = (0..3).filter(|&n| n != leader).collect();
    let minority = c.client(leader).await;
    put(&minority, b"before".to_vec(), b"1".to_vec())
        .await
        .expect("write before the partition");
    for &o in &others {
        c.partition(leader, o);
    }
    // The minority answers with a clear error within a deadline.
    let started = Instant::now();
    let err = put(&minority, b"minority".to_vec(), b"x".to_vec())
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            api::Error::RangeUnavailable { .. } | api::Error::AmbiguousResult { .. }
        ),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answered after {:?}",
        started.elapsed()
    );
    // The majority elects a leader and commits (a try that went to the isolated node
    // first may be ambiguous; the put is idempotent, so the client retries it).
    let majority = c.client(others[0]).await;
    let started = Instant::now();
    loop {
        match put(&majority, b"majority".to_vec(), b"y".to_vec()).await {
            Ok(()) => break,
            Err(api::Error::AmbiguousResult { .. })
                if started.elapsed() < Duration::from_secs(30) => {}
            Err(e) => panic!("the majority did not commit: {e}"),
        }
    }
    // Healed, the old leader rejoins; the minority's write never happened.
    c.heal();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = c.statuses().await;
        let applied = |i: usize| s[i].as_ref().map(|s| s.applied_index).unwrap_or(0);
        if applied(leader) >= applied(others[0]) && applied(leader) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old leader did not catch up: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(get(&majority, b"minority".to_vec()).await.unwrap(), None);
    assert_eq!(
        get(&majority, b"majority".to_vec())
            .await
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert_eq!(
        get(&majority, b"before".to_vec()).await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
}

/// `--log-format json`: every line a node writes is a JSON object with a level, a
/// target and the event's fields.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_logs_are_json_lines() {
    cairn_tests::init_logging();
    let c = ProcessCluster::start(CAIRN, 3).await;
    let text = std::fs::read_to_string(c.log_path(0)).expect("node 1's log");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "node 1 logged nothing");
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["target"].is_string() && v["fields"].is_object(),
            "{line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("store opened")),
        "{}",
        lines.join("\n")
    );
}
