//! Distributed transactions: commit and rollback across ranges, and the Hermitage
//! anomalies at SERIALIZABLE, each shown prevented, with the two keys of every scenario
//! on different ranges (so every scenario goes through two-phase commit).

use std::time::Duration;

use cairn_tests::Cluster;
use cairn_txn::{Db, Txn, TxnError};

/// The two keys of scenario `name`: one left of the split at "m", one right of it.
fn keys(name: &str) -> (Vec<u8>, Vec<u8>) {
    (
        format!("c/{name}/1").into_bytes(),
        format!("t/{name}/2").into_bytes(),
    )
}

async fn split_cluster() -> Cluster {
    let c = Cluster::start(3).await;
    c.split(1, b"m").await.expect("split");
    c
}

fn db(c: &Cluster, i: usize) -> Db {
    c.node(i).db().expect("node serves")
}

async fn setup(db: &Db, name: &str) -> (Vec<u8>, Vec<u8>) {
    let (k1, k2) = keys(name);
    let mut t = db.begin();
    t.put(&k1, b"10").await.expect("setup put");
    t.put(&k2, b"20").await.expect("setup put");
    t.commit().await.expect("setup commit");
    (k1, k2)
}

async fn read(db: &Db, k: &[u8]) -> Option<String> {
    let mut t = db.begin();
    let v = t.get(k).await.expect("read");
    t.commit().await.expect("read commit");
    v.map(|v| String::from_utf8(v).unwrap())
}

/// Runs `f` on `txn` in a task, so the caller can check it is blocked.
fn spawn_step<T: Send + 'static>(
    mut txn: Txn,
    f: impl for<'a> FnOnce(&'a mut Txn) -> cairn_kv::api::BoxFuture<'a, Result<T, TxnError>>
    + Send
    + 'static,
) -> tokio::task::JoinHandle<(Txn, Result<T, TxnError>)> {
    tokio::spawn(async move {
        let r = f(&mut txn).await;
        (txn, r)
    })
}

/// Commits `t` if its last step succeeded; the step's error otherwise.
async fn commit_if_ok(t: &mut Txn, step: Result<(), TxnError>) -> Result<(), TxnError> {
    step?;
    t.commit().await
}

async fn assert_blocked<T>(h: &tokio::task::JoinHandle<T>, what: &str) {
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !h.is_finished(),
        "{what} should wait for the other transaction"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn commit_and_rollback_across_ranges() {
    let c = split_cluster().await;
    let db = db(&c, 2);
    let (k1, k2) = keys("basic");
    let mut t = db.begin();
    t.put(&k1, b"a").await.unwrap();
    t.put(&k2, b"b").await.unwrap();
    // The transaction reads its own writes; nobody else sees them yet.
    assert_eq!(t.get(&k2).await.unwrap(), Some(b"b".to_vec()));
    t.commit().await.unwrap();
    assert_eq!(read(&db, &k1).await.as_deref(), Some("a"));
    assert_eq!(read(&db, &k2).await.as_deref(), Some("b"));

    let mut t = db.begin();
    t.put(&k1, b"x").await.unwrap();
    t.put(&k2, b"y").await.unwrap();
    t.rollback().await;
    assert_eq!(read(&db, &k1).await.as_deref(), Some("a"));
    assert_eq!(read(&db, &k2).await.as_deref(), Some("b"));

    // A scan across the split sees both ranges' keys, in order and in reverse.
    let mut t = db.begin();
    let all = t.scan(b"c/basic", b"u", 0).await.unwrap();
    assert_eq!(all.len(), 2);
    let rev = t.reverse_scan(b"c/basic", b"u", 1).await.unwrap();
    assert_eq!(rev, vec![(k2.clone(), b"b".to_vec())]);
    t.commit().await.unwrap();

    // Db::run retries a closure that hits a conflict.
    let got = db
        .run(|t| {
            let k1 = k1.clone();
            Box::pin(async move {
                let v = t.get(&k1).await?;
                t.put(&k1, b"c").await?;
                Ok(v)
            })
        })
        .await
        .unwrap();
    assert_eq!(got, Some(b"a".to_vec()));
    assert_eq!(read(&db, &k1).await.as_deref(), Some("c"));
}

/// Rolling back to a savepoint undoes the writes made since, on every range, and the
/// transaction goes on from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn savepoints_across_ranges() {
    let c = split_cluster().await;
    let db = db(&c, 3);
    let (k1, k2) = keys("savepoint");
    let mut t = db.begin();
    t.put(&k1, b"kept").await.unwrap();
    let sp = t.savepoint();
    t.put(&k1, b"undone").await.unwrap();
    t.put(&k2, b"undone").await.unwrap();
    assert_eq!(t.get(&k1).await.unwrap(), Some(b"undone".to_vec()));
    t.rollback_to_savepoint(sp).unwrap();
    assert_eq!(t.get(&k1).await.unwrap(), Some(b"kept".to_vec()));
    assert_eq!(t.get(&k2).await.unwrap(), None);
    t.cput(&k2, b"after", None).await.unwrap();
    t.commit().await.unwrap();
    assert_eq!(read(&db, &k1).await.as_deref(), Some("kept"));
    assert_eq!(read(&db, &k2).await.as_deref(), Some("after"));
}

/// A transaction that starts writing long after it began is not mistaken for an
/// abandoned one: its record is written at its first write, so a conflicting writer
/// waits for it instead of aborting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn late_writer_is_not_taken_for_abandoned() {
    let c = split_cluster().await;
    let db = db(&c, 1);
    let (k1, _) = keys("late");
    let mut slow = db.begin();
    // Longer than the liveness threshold (2.5 s) counted from the start.
    tokio::time::sleep(Duration::from_secs(3)).await;
    slow.put(&k1, b"slow").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let other = db.begin();
    let k1c = k1.clone();
    let h = spawn_step(other, move |t| {
        Box::pin(async move { t.put(&k1c, b"other").await })
    });
    assert_blocked(&h, "the other writer").await;
    slow.commit().await.expect("the slow transaction commits");
    let (mut other, r) = h.await.unwrap();
    r.unwrap();
    other.commit().await.unwrap();
    assert_eq!(read(&db, &k1).await.as_deref(), Some("other"));
}

/// A range splits between a pending transaction's intents (and its record): the
/// transaction commits, and its intents on both new ranges resolve.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_between_a_transactions_intents() {
    let c = split_cluster().await;
    let db = db(&c, 2);
    let mut t = db.begin();
    t.put(b"f/anchor", b"1").await.unwrap();
    t.put(b"c/other", b"2").await.unwrap();
    // Let a heartbeat write the record, anchored at "f/anchor".
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (left, right) = c.split(1, b"e").await.expect("split between the intents");
    assert!(left.contains_key(b"c/other") && right.contains_key(b"f/anchor"));
    t.commit().await.expect("commit after the split");
    assert_eq!(read(&db, b"f/anchor").await.as_deref(), Some("1"));
    assert_eq!(read(&db, b"c/other").await.as_deref(), Some("2"));
    // Nothing is left blocking writers on either side.
    let mut w = db.begin();
    w.put(b"c/other", b"3").await.unwrap();
    w.put(b"f/anchor", b"3").await.unwrap();
    w.commit().await.unwrap();
}

/// G0 (write cycles): two transactions writing the same two keys never interleave.
async fn g0(db: &Db) {
    let (k1, k2) = setup(db, "g0").await;
    let mut t1 = db.begin();
    let t2 = db.begin();
    t1.put(&k1, b"11").await.unwrap();
    let k1c = k1.clone();
    let h = spawn_step(t2, move |t| {
        Box::pin(async move { t.put(&k1c, b"12").await })
    });
    assert_blocked(&h, "T2's write of x").await;
    t1.put(&k2, b"21").await.unwrap();
    t1.commit().await.unwrap();
    let (mut t2, r) = h.await.unwrap();
    r.unwrap();
    t2.put(&k2, b"22").await.unwrap();
    t2.commit().await.unwrap();
    let (x, y) = (read(db, &k1).await, read(db, &k2).await);
    assert_eq!((x.as_deref(), y.as_deref()), (Some("12"), Some("22")), "G0");
}

/// G1a (aborted reads): a reader never sees a write that is later rolled back.
async fn g1a(db: &Db) {
    let (k1, _) = setup(db, "g1a").await;
    let mut t1 = db.begin();
    let t2 = db.begin();
    t1.put(&k1, b"101").await.unwrap();
    let k1c = k1.clone();
    let h = spawn_step(t2, move |t| Box::pin(async move { t.get(&k1c).await }));
    assert_blocked(&h, "T2's read of x").await;
    t1.rollback().await;
    let (mut t2, r) = h.await.unwrap();
    assert_eq!(r.unwrap(), Some(b"10".to_vec()), "G1a");
    t2.commit().await.unwrap();
}

/// G1b (intermediate reads): a reader sees only a transaction's final write.
async fn g1b(db: &Db) {
    let (k1, _) = setup(db, "g1b").await;
    let mut t1 = db.begin();
    let t2 = db.begin();
    t1.put(&k1, b"101").await.unwrap();
    let k1c = k1.clone();
    let h = spawn_step(t2, move |t| Box::pin(async move { t.get(&k1c).await }));
    assert_blocked(&h, "T2's read of x").await;
    t1.put(&k1, b"11").await.unwrap();
    t1.commit().await.unwrap();
    let (mut t2, r) = h.await.unwrap();
    // T2 started before T1 committed: it reads either the old value or the final one.
    let v = r.unwrap();
    assert!(
        v != Some(b"101".to_vec()),
        "G1b: read an intermediate value"
    );
    t2.commit().await.unwrap();
}

/// G1c (circular information flow): two transactions each reading the other's write
/// cannot both commit.
async fn g1c(db: &Db) {
    let (k1, k2) = setup(db, "g1c").await;
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    t1.put(&k1, b"11").await.unwrap();
    t2.put(&k2, b"22").await.unwrap();
    let k2c = k2.clone();
    let h1 = spawn_step(t1, move |t| Box::pin(async move { t.get(&k2c).await }));
    let k1c = k1.clone();
    let h2 = spawn_step(t2, move |t| Box::pin(async move { t.get(&k1c).await }));
    // A wait-for cycle: one of them is aborted by deadlock detection.
    let (mut t1, r1) = h1.await.unwrap();
    let (mut t2, r2) = h2.await.unwrap();
    let c1 = commit_if_ok(&mut t1, r1.map(|_| ())).await;
    let c2 = commit_if_ok(&mut t2, r2.map(|_| ())).await;
    assert!(
        c1.is_err() || c2.is_err(),
        "G1c: both transactions committed after reading each other's writes"
    );
    for e in [&c1, &c2].into_iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            e.is_retryable(),
            "G1c: the loser should get a retryable error: {e}"
        );
    }
}

/// OTV (observed transaction vanishes): once a reader saw one of a transaction's
/// writes, it sees the rest of them.
async fn otv(db: &Db) {
    let (k1, k2) = setup(db, "otv").await;
    let mut t1 = db.begin();
    let t2 = db.begin();
    t1.put(&k1, b"11").await.unwrap();
    t1.put(&k2, b"19").await.unwrap();
    let k1c = k1.clone();
    let h = spawn_step(t2, move |t| {
        Box::pin(async move { t.put(&k1c, b"12").await })
    });
    assert_blocked(&h, "T2's write of x").await;
    t1.commit().await.unwrap();
    // T3 reads x, then y. It meets T2's pending write of x and waits for T2.
    let t3 = db.begin();
    let (k1c, k2c) = (k1.clone(), k2.clone());
    let h3 = spawn_step(t3, move |t| {
        Box::pin(async move {
            let x = t.get(&k1c).await?;
            let y = t.get(&k2c).await?;
            Ok((x, y))
        })
    });
    let (mut t2, r) = h.await.unwrap();
    r.unwrap();
    t2.put(&k2, b"18").await.unwrap();
    t2.commit().await.unwrap();
    let (mut t3, r3) = h3.await.unwrap();
    let (x, y) = r3.unwrap();
    let seen = (
        String::from_utf8(x.unwrap()).unwrap(),
        String::from_utf8(y.unwrap()).unwrap(),
    );
    assert!(
        seen == ("11".into(), "19".into()) || seen == ("12".into(), "18".into()),
        "OTV: T3 saw {seen:?}, a mix of two transactions"
    );
    t3.commit().await.unwrap();
}

/// PMP (predicate many preceders): a predicate read repeated in a transaction never
/// sees a row another transaction inserted meanwhile.
async fn pmp(db: &Db) {
    let (k1, _) = setup(db, "pmp").await;
    let prefix_end = b"c/pmp0".to_vec();
    let mut t1 = db.begin();
    let first = t1.scan(b"c/pmp/", &prefix_end, 0).await.unwrap();
    let mut t2 = db.begin();
    t2.put(b"c/pmp/3", b"30").await.unwrap();
    t2.commit().await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].0, k1);
    // T1 either sees the same rows again, or (T2's write falling in its clock
    // uncertainty window, where it cannot tell whether T2 came first) must restart.
    match t1.scan(b"c/pmp/", &prefix_end, 0).await {
        Ok(second) => {
            assert_eq!(first, second, "PMP");
            t1.commit().await.unwrap();
        }
        Err(e) => assert!(e.is_retryable(), "PMP: {e}"),
    }
}

/// P4 (lost update): two read-modify-write increments of one key both count.
async fn p4(db: &Db) {
    let (k1, _) = setup(db, "p4").await;
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    let v1 = t1.get(&k1).await.unwrap();
    let v2 = t2.get(&k1).await.unwrap();
    assert_eq!(
        (v1.as_deref(), v2.as_deref()),
        (Some(&b"10"[..]), Some(&b"10"[..]))
    );
    let w1 = t1.put(&k1, b"11").await;
    let k1c = k1.clone();
    let h = spawn_step(t2, move |t| {
        Box::pin(async move { t.put(&k1c, b"11").await })
    });
    let c1 = commit_if_ok(&mut t1, w1.map(|_| ())).await;
    let (mut t2, w2) = h.await.unwrap();
    let c2 = commit_if_ok(&mut t2, w2.map(|_| ())).await;
    let committed = [&c1, &c2].iter().filter(|r| r.is_ok()).count();
    assert!(
        committed <= 1,
        "P4: both increments committed but one was lost"
    );
    let expect = if committed == 1 { "11" } else { "10" };
    assert_eq!(read(db, &k1).await.as_deref(), Some(expect));
}

/// G-single (read skew): a transaction never sees one of another transaction's writes
/// but not the other.
async fn g_single(db: &Db) {
    let (k1, k2) = setup(db, "gsingle").await;
    let mut t1 = db.begin();
    let x = t1.get(&k1).await.unwrap();
    let mut t2 = db.begin();
    t2.get(&k1).await.unwrap();
    t2.get(&k2).await.unwrap();
    t2.put(&k1, b"12").await.unwrap();
    t2.put(&k2, b"18").await.unwrap();
    t2.commit().await.unwrap();
    let y = t1.get(&k2).await.unwrap();
    assert_eq!(
        (x.as_deref(), y.as_deref()),
        (Some(&b"10"[..]), Some(&b"20"[..])),
        "G-single"
    );
    t1.commit().await.unwrap();
}

/// G2-item (write skew): two transactions that each read both keys and write a
/// different one cannot both commit.
async fn g2_item(db: &Db) {
    let (k1, k2) = setup(db, "g2item").await;
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    for t in [&mut t1, &mut t2] {
        t.get(&k1).await.unwrap();
        t.get(&k2).await.unwrap();
    }
    let w1 = t1.put(&k1, b"11").await;
    let w2 = t2.put(&k2, b"21").await;
    let c1 = commit_if_ok(&mut t1, w1.map(|_| ())).await;
    let c2 = commit_if_ok(&mut t2, w2.map(|_| ())).await;
    assert!(c1.is_err() || c2.is_err(), "G2-item: write skew committed");
}

/// G2 (anti-dependency cycle over predicates): two transactions that each scan a
/// predicate and insert a row matching the other's scan cannot both commit.
async fn g2(db: &Db) {
    setup(db, "g2").await;
    // The predicate: every row of the scenario, on both ranges.
    let mut t1 = db.begin();
    let mut t2 = db.begin();
    for t in [&mut t1, &mut t2] {
        let left = t.scan(b"c/g2/", b"c/g20", 0).await.unwrap();
        let right = t.scan(b"t/g2/", b"t/g20", 0).await.unwrap();
        assert_eq!(left.len() + right.len(), 2);
    }
    let w1 = t1.put(b"c/g2/3", b"30").await;
    let w2 = t2.put(b"t/g2/4", b"42").await;
    let c1 = commit_if_ok(&mut t1, w1.map(|_| ())).await;
    let c2 = commit_if_ok(&mut t2, w2.map(|_| ())).await;
    assert!(
        c1.is_err() || c2.is_err(),
        "G2: both predicate writers committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hermitage_anomalies_are_prevented() {
    let c = split_cluster().await;
    let db = db(&c, 1);
    // Each scenario in turn, timed (a slow one is waiting on something it should not).
    macro_rules! run {
        ($($scenario:ident),*) => {$(
            let started = std::time::Instant::now();
            $scenario(&db).await;
            eprintln!("{}: {:?}", stringify!($scenario), started.elapsed());
        )*};
    }
    run!(g0, g1a, g1b, g1c, otv, pmp, p4, g_single, g2_item, g2);
}

/// Sends `requests` as transaction `txn` (reading and writing at its timestamp)
/// through node `via`, bypassing the coordinator.
async fn send_as(
    c: &Cluster,
    via: usize,
    txn: &cairn_kv::mvcc::TxnMeta,
    requests: Vec<cairn_kv::api::Request>,
) -> cairn_kv::api::BatchResponse {
    let batch = cairn_kv::api::BatchRequest {
        header: cairn_kv::api::Header {
            timestamp: txn.write_ts,
            txn: Some(txn.clone()),
            ..Default::default()
        },
        requests,
    };
    c.node(via)
        .dist_sender()
        .unwrap()
        .send(batch)
        .await
        .expect("sent")
}

fn span_of(k: &[u8]) -> cairn_kv::keys::Span {
    cairn_kv::keys::Span::new(k.to_vec(), cairn_kv::keys::next_key(k))
}

/// A coordinator that dies after staging its commit (the record STAGING, its writes in
/// flight) leaves a transaction whose fate is decided by its writes: recovered as
/// aborted if one is missing (and that write, arriving late, can no longer land under
/// the staged timestamp), as committed if all are there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn abandoned_staging_transactions_are_recovered() {
    use cairn_kv::api::{Request, Response, TxnStatus};
    let c = split_cluster().await;
    let db = db(&c, 1);
    let staged = |name: &str, seq_base: u32| {
        let now = c.node(1).clock().now();
        cairn_kv::mvcc::TxnMeta {
            id: cairn_kv::TxnId::random(),
            key: format!("c/{name}").into_bytes(),
            epoch: 0,
            write_ts: now,
            min_ts: now,
            priority: 1,
            seq: seq_base,
            ignored: Vec::new(),
        }
    };
    let put = |k: &[u8], v: &[u8]| Request::Put {
        key: k.to_vec(),
        value: v.to_vec(),
    };

    // A: the write on the other range never arrives.
    let a = staged("pc-a", 1);
    let (a1, a2) = (b"c/pc-a".to_vec(), b"t/pc-a".to_vec());
    send_as(&c, 1, &a, vec![put(&a1, b"a")]).await;
    let end = send_as(
        &c,
        1,
        &cairn_kv::mvcc::TxnMeta {
            seq: 3,
            ..a.clone()
        },
        vec![Request::EndTxn {
            key: a.key.clone(),
            commit: true,
            lock_spans: vec![span_of(&a1), span_of(&a2)],
            in_flight: vec![(a1.clone(), 1), (a2.clone(), 2)],
        }],
    )
    .await;
    assert!(
        matches!(&end.responses[0], Response::EndTxn { record } if record.status == TxnStatus::Staging),
        "{:?}",
        end.responses
    );
    // A writer meets the intent, waits while the record is fresh, then recovers it.
    let started = std::time::Instant::now();
    let a1c = a1.clone();
    db.run(|t| {
        let k = a1c.clone();
        Box::pin(async move { t.put(&k, b"after-a").await })
    })
    .await
    .expect("writer after recovery");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(read(&db, &a1).await.as_deref(), Some("after-a"));
    // The late write lands above the staged timestamp: it cannot revive the commit.
    let late = send_as(
        &c,
        2,
        &cairn_kv::mvcc::TxnMeta {
            seq: 2,
            ..a.clone()
        },
        vec![put(&a2, b"a")],
    )
    .await;
    assert!(
        late.txn.as_ref().is_some_and(|t| t.write_ts > a.write_ts),
        "the late write was not pushed above the staged timestamp"
    );
    assert_eq!(read(&db, &a2).await, None, "an aborted write is visible");

    // B: every write arrived, but the coordinator died before saying so.
    let b = staged("pc-b", 1);
    let (b1, b2) = (b"c/pc-b".to_vec(), b"t/pc-b".to_vec());
    for (seq, key) in [(1, &b1), (2, &b2)] {
        let w = send_as(
            &c,
            1,
            &cairn_kv::mvcc::TxnMeta { seq, ..b.clone() },
            vec![put(key, b"b")],
        )
        .await;
        assert_eq!(
            w.txn.map(|t| t.write_ts),
            Some(b.write_ts),
            "the scenario needs the writes at the staged timestamp"
        );
    }
    send_as(
        &c,
        1,
        &cairn_kv::mvcc::TxnMeta {
            seq: 3,
            ..b.clone()
        },
        vec![Request::EndTxn {
            key: b.key.clone(),
            commit: true,
            lock_spans: vec![span_of(&b1), span_of(&b2)],
            in_flight: vec![(b2.clone(), 2)],
        }],
    )
    .await;
    assert_eq!(
        read(&db, &b2).await.as_deref(),
        Some("b"),
        "a committed write is lost"
    );
    assert_eq!(read(&db, &b1).await.as_deref(), Some("b"));
}
