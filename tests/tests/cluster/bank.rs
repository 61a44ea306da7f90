//! The bank: accounts on several ranges with different leaseholders, concurrent
//! transfers and whole-bank audits, while the harness kills a leaseholder, partitions a
//! node and skews a clock. No audit may ever see money created or destroyed, or a
//! negative balance; and a crashed coordinator never blocks others for long.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cairn_kv::RangeId;
use cairn_kv::api::{BatchRequest, Header, Request, Response, TxnStatus};
use cairn_kv::mvcc::TxnMeta;
use cairn_tests::{Cluster, Rng};
use cairn_txn::TxnError;
use parking_lot::Mutex;
use tokio::sync::RwLock;

const ACCOUNTS: u64 = 8;
const INITIAL: i64 = 100;

fn account(i: u64) -> Vec<u8> {
    format!("bank/{i:03}").into_bytes()
}

fn encode(v: i64) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn decode(v: &[u8]) -> i64 {
    std::str::from_utf8(v)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad balance {v:?}"))
}

/// A transaction starter on a live node, without holding the cluster lock while it
/// runs.
async fn any_db(cluster: &RwLock<Cluster>, rng: &mut Rng) -> cairn_txn::Db {
    let c = cluster.read().await;
    let live: Vec<usize> = (1..=c.len()).filter(|&i| c.is_up(i)).collect();
    c.db(live[rng.below(live.len() as u64) as usize])
}

#[derive(Default)]
struct Stats {
    transfers: AtomicU64,
    audits: AtomicU64,
    errors: Mutex<Vec<String>>,
    violations: Mutex<Vec<String>>,
}

async fn transfer_loop(
    cluster: Arc<RwLock<Cluster>>,
    seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::Relaxed) {
        let from = rng.below(ACCOUNTS);
        let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
        let amount = 1 + rng.below(20) as i64;
        let db = any_db(&cluster, &mut rng).await;
        let result = db
            .run(|t| {
                Box::pin(async move {
                    let a = t.get(&account(from)).await?.map_or(0, |v| decode(&v));
                    let b = t.get(&account(to)).await?.map_or(0, |v| decode(&v));
                    if a < amount {
                        return Ok(false);
                    }
                    t.put(&account(from), &encode(a - amount)).await?;
                    t.put(&account(to), &encode(b + amount)).await?;
                    Ok(true)
                })
            })
            .await;
        match result {
            Ok(true) => {
                stats.transfers.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            // Faults make some transfers fail (a range without quorum for a while, a
            // coordinator whose node died, an ambiguous commit): the bank's invariant
            // must hold all the same.
            Err(e) => {
                stats.errors.lock().push(e.to_string());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn audit_loop(
    cluster: Arc<RwLock<Cluster>>,
    seed: u64,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
    let mut rng = Rng::new(seed);
    while !stop.load(Ordering::Relaxed) {
        let db = any_db(&cluster, &mut rng).await;
        let result = db
            .run(|t| Box::pin(async move { t.scan(b"bank/", b"bank0", 0).await }))
            .await;
        match result {
            Ok(rows) => {
                stats.audits.fetch_add(1, Ordering::Relaxed);
                let total: i64 = rows.iter().map(|(_, v)| decode(v)).sum();
                let negative: Vec<_> = rows.iter().filter(|(_, v)| decode(v) < 0).collect();
                if total != INITIAL * ACCOUNTS as i64
                    || rows.len() != ACCOUNTS as usize
                    || !negative.is_empty()
                {
                    stats.violations.lock().push(format!(
                        "audit saw {} accounts totalling {total}, negative: {negative:?}",
                        rows.len()
                    ));
                }
            }
            Err(e) => {
                stats.errors.lock().push(format!("audit: {e}"));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_under_faults() {
    let c = Cluster::start(3).await;
    // Four ranges of two accounts each, led by different nodes.
    for (i, at) in [2u64, 4, 6].iter().enumerate() {
        let (_, right) = c.split(1, &account(*at)).await.expect("split");
        c.transfer_lease(right.range_id, 1 + (i + 1) % 3).await;
    }
    let db = c.db(1);
    let mut t = db.begin();
    for i in 0..ACCOUNTS {
        t.put(&account(i), &encode(INITIAL)).await.unwrap();
    }
    t.commit().await.unwrap();

    let cluster = Arc::new(RwLock::new(c));
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let mut tasks = Vec::new();
    for w in 0..4 {
        tasks.push(tokio::spawn(transfer_loop(
            cluster.clone(),
            10 + w,
            stop.clone(),
            stats.clone(),
        )));
    }
    for w in 0..2 {
        tasks.push(tokio::spawn(audit_loop(
            cluster.clone(),
            100 + w,
            stop.clone(),
            stats.clone(),
        )));
    }

    let progress = |step: &str| {
        eprintln!(
            "{step} (transfers {}, audits {})",
            stats.transfers.load(Ordering::Relaxed),
            stats.audits.load(Ordering::Relaxed)
        )
    };
    let victim = cairn_tests::kill_restart_partition(&cluster, RangeId(1), progress).await;
    // Skew one node's clock, within the maximum offset.
    cluster
        .read()
        .await
        .node(1 + (victim + 1) % 3)
        .set_clock_offset(250_000_000);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    eprintln!("stopping workers");
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("a worker is stuck")
            .unwrap();
    }

    let violations = stats.violations.lock().clone();
    assert!(
        violations.is_empty(),
        "bank invariant broken: {violations:?}"
    );
    let transfers = stats.transfers.load(Ordering::Relaxed);
    let audits = stats.audits.load(Ordering::Relaxed);
    let errors = stats.errors.lock().clone();
    eprintln!(
        "{transfers} transfers, {audits} audits, {} errors, first: {:?}",
        errors.len(),
        errors.iter().take(5).collect::<Vec<_>>()
    );
    assert!(transfers > 20, "too few transfers committed: {transfers}");
    assert!(audits > 20, "too few audits: {audits}");
    // A final audit from every node.
    let c = cluster.read().await;
    for i in 1..=3 {
        let rows = c
            .db(i)
            .run(|t| Box::pin(async move { t.scan(b"bank/", b"bank0", 0).await }))
            .await
            .expect("final audit");
        let total: i64 = rows.iter().map(|(_, v)| decode(v)).sum();
        assert_eq!(total, INITIAL * ACCOUNTS as i64, "final audit on n{i}");
    }
}

/// Writes an intent of `txn` on `key` through node `via` (the coordinator's part of a
/// transaction, without its heartbeats or commit).
async fn write_intent(c: &Cluster, via: usize, txn: &TxnMeta, key: &[u8], value: &[u8]) {
    let dist = c.node(via).dist_sender().unwrap();
    let batch = BatchRequest {
        header: Header {
            timestamp: txn.write_ts,
            txn: Some(txn.clone()),
            ..Header::default()
        },
        requests: vec![Request::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        }],
    };
    dist.send(batch).await.expect("intent written");
}

/// A coordinator that dies with intents on two ranges blocks nobody for long: a
/// transaction that meets them aborts the abandoned one once its record expires, and
/// both ranges agree it never happened. One that dies after committing (before it
/// resolved its intents) has its writes found committed by whoever meets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashed_coordinator_blocks_nobody_for_long() {
    let mut c = Cluster::start(3).await;
    let (_, right) = c.split(1, b"m").await.expect("split");
    c.transfer_lease(right.range_id, 2).await;
    c.transfer_lease(RangeId(1), 1).await;

    // Node 3 runs a transaction writing on both ranges, then dies before committing.
    let mut doomed = c.db(3).begin();
    doomed.put(b"a-key", b"doomed").await.unwrap();
    doomed.put(b"z-key", b"doomed").await.unwrap();
    c.kill(3).await;
    std::mem::forget(doomed);

    let started = std::time::Instant::now();
    let db = c.db(1);
    db.run(|t| {
        Box::pin(async move {
            t.put(b"a-key", b"after").await?;
            t.put(b"z-key", b"after").await?;
            Ok(())
        })
    })
    .await
    .expect("transaction after the coordinator died");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "blocked for {took:?} by a dead coordinator"
    );
    for k in [&b"a-key"[..], b"z-key"] {
        let v = db
            .run(|t| Box::pin(async move { t.get(k).await }))
            .await
            .unwrap();
        assert_eq!(v.as_deref(), Some(&b"after"[..]));
    }

    // A transaction committed at its record, its intent on the other range unresolved
    // (its coordinator died right after the commit point).
    let now = c.node(1).clock().now();
    let txn = TxnMeta {
        id: cairn_kv::TxnId::random(),
        key: b"b-anchor".to_vec(),
        epoch: 0,
        write_ts: now,
        min_ts: now,
        priority: 1,
        seq: 1,
        ignored: Vec::new(),
    };
    write_intent(&c, 1, &txn, b"b-anchor", b"committed").await;
    write_intent(
        &c,
        1,
        &TxnMeta {
            seq: 2,
            ..txn.clone()
        },
        b"y-key",
        b"committed",
    )
    .await;
    let dist = c.node(1).dist_sender().unwrap();
    let end = BatchRequest {
        header: Header {
            timestamp: txn.write_ts,
            txn: Some(TxnMeta {
                seq: 3,
                ..txn.clone()
            }),
            ..Header::default()
        },
        requests: vec![Request::EndTxn {
            key: txn.key.clone(),
            commit: true,
            lock_spans: vec![
                cairn_kv::keys::Span::new(
                    b"b-anchor".to_vec(),
                    cairn_kv::keys::next_key(b"b-anchor"),
                ),
                cairn_kv::keys::Span::new(b"y-key".to_vec(), cairn_kv::keys::next_key(b"y-key")),
            ],
            in_flight: Vec::new(),
        }],
    };
    let resp = dist.send(end).await.expect("commit");
    match &resp.responses[0] {
        Response::EndTxn { record } => {
            assert_eq!(record.status, TxnStatus::Committed);
            assert_eq!(
                record.lock_spans.len(),
                1,
                "the other range's intent is left for later"
            );
        }
        other => panic!("EndTxn answered {other:?}"),
    }
    // A reader on the other range meets the intent, finds the record committed, and
    // resolves it: it sees the value.
    let v = c
        .db(2)
        .run(|t| Box::pin(async move { t.get(b"y-key").await }))
        .await
        .unwrap();
    assert_eq!(v.as_deref(), Some(&b"committed"[..]));
    c.restart(3).await;
    let v = c
        .db(3)
        .run(|t| Box::pin(async move { t.get(b"a-key").await }))
        .await
        .map_err(|e: TxnError| e.to_string())
        .unwrap();
    assert_eq!(v.as_deref(), Some(&b"after"[..]));
}
