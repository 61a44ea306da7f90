//! Admin splits: a range cut in two under concurrent writes, the new range failing over
//! and restarting, a replica that missed the split catching up, the timestamp cache
//! carried over to the new range, a stale meta entry repaired, and a transaction with
//! intents on both sides of a split.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_kv::api::{BatchRequest, RangeDescriptor, Request, Response};
use cairn_kv::{RangeId, Timestamp};
use cairn_tests::Cluster;
use parking_lot::Mutex;
use tokio::sync::RwLock;

type Acked = Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>;

/// Writes keys `<prefix><n>` through every live node in turn until `stop`; returns what
/// was acknowledged and every error.
fn spawn_writer(
    cluster: Arc<RwLock<Cluster>>,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(Acked, Vec<String>)> {
    tokio::spawn(async move {
        let acked: Acked = Arc::default();
        let mut errors = Vec::new();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            i += 1;
            let key = format!("{prefix}{i:06}").into_bytes();
            let value = format!("v{i}").into_bytes();
            let c = cluster.read().await;
            let via = (1..=c.len())
                .cycle()
                .skip(i as usize % c.len())
                .find(|&n| c.is_up(n))
                .expect("a live node");
            match c.put(via, &key, &value).await {
                Ok(()) => {
                    acked.lock().insert(key, value);
                }
                Err(e) => errors.push(format!("{}: {e}", String::from_utf8_lossy(&key))),
            }
        }
        (acked, errors)
    })
}

/// Waits until every live replica of `range_id` has applied as far as its leader, then
/// returns their descriptor; their descriptors and data must agree.
///
/// The first range takes liveness heartbeats and meta writes all the time, so a replica
/// may apply one more command between the catch-up check and the read of its data: a
/// difference counts only if it is still there after several tries (a real divergence
/// never goes away).
pub(crate) async fn assert_replicas_agree(c: &Cluster, range_id: RangeId) -> RangeDescriptor {
    let mut last = String::new();
    for _ in 0..20 {
        match replicas_agree(c, range_id).await {
            Ok(desc) => return desc,
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{last}");
}

/// The up nodes holding a replica of the range, by its leaseholder's descriptor.
fn members(c: &Cluster, range_id: RangeId) -> Option<(usize, RangeDescriptor, Vec<usize>)> {
    let l = c.leaseholder(range_id)?;
    let desc = c.node(l).store()?.replica(range_id)?.descriptor()?;
    let up = (1..=c.len())
        .filter(|&i| {
            c.is_up(i)
                && c.node(i)
                    .node_id()
                    .is_some_and(|n| desc.replica_on(n).is_some())
        })
        .collect();
    Some((l, desc, up))
}

async fn replicas_agree(c: &Cluster, range_id: RangeId) -> Result<RangeDescriptor, String> {
    c.wait_until(
        Duration::from_secs(30),
        &format!("every replica of {range_id} caught up"),
        |c| {
            let Some((l, _, members)) = members(c, range_id) else {
                return false;
            };
            let Some(leader) = c.node(l).replica_status(range_id) else {
                return false;
            };
            members.iter().all(|&i| {
                c.node(i)
                    .store()
                    .and_then(|s| s.replica(range_id))
                    .is_some_and(|r| {
                        r.status().applied_index >= leader.applied_index && r.descriptor().is_some()
                    })
            })
        },
    )
    .await;
    let (l, desc, members) = members(c, range_id).ok_or("no leaseholder")?;
    let descriptor = |i: usize| {
        c.node(i)
            .store()
            .and_then(|s| s.replica(range_id))
            .and_then(|r| r.descriptor())
            .ok_or_else(|| format!("n{i} has no descriptor of {range_id}"))
    };
    let expected = c.range_data(l, &desc);
    for i in members {
        let d = descriptor(i)?;
        if d != desc {
            return Err(format!(
                "n{i} has another descriptor of {range_id}: {d} vs {desc}"
            ));
        }
        let data = c.range_data(i, &desc);
        if data != expected {
            return Err(format!(
                "n{i}'s replica of {desc} differs from the leaseholder's ({} vs {} entries)",
                data.len(),
                expected.len()
            ));
        }
    }
    Ok(desc)
}

async fn assert_all_readable(c: &Cluster, acked: &BTreeMap<Vec<u8>, Vec<u8>>) {
    for (k, v) in acked {
        let via = 1 + k.len() % c.len();
        let via = if c.is_up(via) {
            via
        } else {
            (1..=c.len()).find(|&i| c.is_up(i)).unwrap()
        };
        let got = c.get(via, k).await.expect("read");
        assert_eq!(
            got.as_ref(),
            Some(v),
            "acknowledged write of {} lost",
            String::from_utf8_lossy(k)
        );
    }
}

/// Writers on both sides of two split points see no error while the first range splits
/// (meta entries written by the split command itself) and its right half splits again
/// (meta entries written to the first range); every acknowledged write is readable,
/// and every replica of each range holds the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn splits_under_concurrent_writes() {
    let cluster = Arc::new(RwLock::new(Cluster::start(3).await));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = ["d", "k", "s", "x"]
        .into_iter()
        .map(|p| spawn_writer(cluster.clone(), p, stop.clone()))
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (left, right) = {
        let c = cluster.read().await;
        c.split(2, b"h").await.expect("first split")
    };
    assert_eq!((left.range_id, right.range_id), (RangeId(1), RangeId(2)));
    assert_eq!(right.start_key, b"h");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (l2, r2) = {
        let c = cluster.read().await;
        c.split(3, b"p").await.expect("second split")
    };
    assert_eq!(l2.range_id, RangeId(2));
    assert_eq!(
        (r2.start_key.as_slice(), r2.end_key.as_slice()),
        (&b"p"[..], cairn_kv::keys::KEY_MAX)
    );
    // Splitting where a range already starts, or inside the meta span, is refused.
    {
        let c = cluster.read().await;
        let err = c.split(1, b"p").await.expect_err("split at a boundary");
        assert!(err.to_string().contains("already starts there"), "{err}");
        let err = c
            .split(1, b"\x02meta")
            .await
            .expect_err("split in the meta span");
        assert!(err.to_string().contains("cannot split"), "{err}");
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked = BTreeMap::new();
    for w in writers {
        let (a, errors) = w.await.expect("writer");
        assert!(
            errors.is_empty(),
            "clients saw errors during splits: {errors:?}"
        );
        acked.extend(a.lock().clone());
    }
    let c = cluster.read().await;
    assert_all_readable(&c, &acked).await;
    // Each side of each split holds its writers' keys.
    for (range, prefix) in [(RangeId(1), "d"), (RangeId(2), "k"), (RangeId(3), "s")] {
        let desc = assert_replicas_agree(&c, range).await;
        assert_eq!(desc.voters().count(), 3, "{desc}");
        assert!(
            desc.contains_key(prefix.as_bytes()),
            "{desc} should hold {prefix}"
        );
    }
    // A fresh DistSender (empty cache) finds the new ranges through the meta range.
    let client = cairn_server::bench::Client::connect(c.node(2).rpc_addr(), c.request_timeout)
        .await
        .expect("client");
    for (k, v) in acked.iter().step_by(7) {
        let resp = client
            .dist_sender()
            .send(cairn_kv::api::BatchRequest::new(
                RangeId(0),
                vec![cairn_kv::api::Request::Get { key: k.clone() }],
            ))
            .await
            .expect("read through a cold cache");
        assert_eq!(
            resp.responses,
            vec![cairn_kv::api::Response::Get {
                value: Some(v.clone())
            }]
        );
    }
}

/// The range a split created fails over when its leaseholder dies, and comes back from
/// disk when that node restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_range_fails_over_and_restarts() {
    let mut c = Cluster::start(3).await;
    c.put(1, b"left", b"1").await.expect("put");
    c.put(1, b"right", b"1").await.expect("put");
    let (_, right) = c.split(1, b"m").await.expect("split");
    c.put(2, b"right", b"2").await.expect("put after split");
    let holder = {
        c.wait_until(
            Duration::from_secs(10),
            "the new range has a leaseholder",
            |c| c.leaseholder(right.range_id).is_some(),
        )
        .await;
        c.leaseholder(right.range_id).unwrap()
    };
    c.kill(holder).await;
    let via = (1..=3).find(|&i| c.is_up(i)).unwrap();
    c.put(via, b"right", b"3")
        .await
        .expect("put after the leaseholder died");
    assert_eq!(c.get(via, b"left").await.unwrap(), Some(b"1".to_vec()));
    c.restart(holder).await;
    c.wait_until(
        Duration::from_secs(20),
        "the restarted node holds the new range",
        |c| {
            c.node(holder)
                .store()
                .and_then(|s| s.replica(right.range_id))
                .is_some()
        },
    )
    .await;
    c.put(holder, b"right", b"4")
        .await
        .expect("put through the restarted node");
    let desc = assert_replicas_agree(&c, right.range_id).await;
    assert_eq!(desc.start_key, b"m");
    assert_eq!(c.get(holder, b"right").await.unwrap(), Some(b"4".to_vec()));
}

/// A node cut off during a split, while both halves take enough writes to purge their
/// logs, catches up afterwards: its replica of the left range learns of the split (by
/// log or snapshot), and its replica of the new range gets a snapshot only once its
/// left-hand replica no longer holds those keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replica_that_missed_a_split_catches_up() {
    let c = Cluster::start(3).await;
    for i in 0..20 {
        c.put(1, format!("a{i:03}").as_bytes(), b"x")
            .await
            .expect("put");
        c.put(1, format!("z{i:03}").as_bytes(), b"x")
            .await
            .expect("put");
    }
    let l = c.leaseholder(RangeId(1)).unwrap();
    let cut = (1..=3).find(|&i| i != l).unwrap();
    let others: Vec<usize> = (1..=3).filter(|&i| i != cut).collect();
    for &o in &others {
        c.partition(cut, o);
    }
    let (_, right) = c.split(l, b"m").await.expect("split without one node");
    for i in 0..150 {
        c.put(l, format!("b{i:03}").as_bytes(), b"y")
            .await
            .expect("put left");
        c.put(l, format!("y{i:03}").as_bytes(), b"y")
            .await
            .expect("put right");
    }
    c.heal();
    for range in [RangeId(1), right.range_id] {
        let desc = assert_replicas_agree(&c, range).await;
        assert_eq!(desc.voters().count(), 3);
    }
    assert_eq!(c.get(cut, b"y149").await.unwrap(), Some(b"y".to_vec()));
}

/// A split hands the left-hand lease's timestamp cache to the new range's first lease: a
/// read served before the split still pushes a later write above it, and a write right
/// after the split is not pushed a whole clock offset into the future (which would make
/// its client wait for the clock to get there).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn split_carries_the_timestamp_cache_to_the_new_range() {
    let c = Cluster::start(3).await;
    c.put(1, b"a", b"v").await.expect("put");
    let l = c.leaseholder(RangeId(1)).expect("a leaseholder");
    let read_ts = read_q_in_the_future(&c, l).await;
    let (_, right) = c.split(l, b"n").await.expect("split");
    assert_eq!(c.leaseholder(right.range_id), Some(l));
    assert_lease_covers_reads(&c, l, read_ts).await;
}

/// Reads "q" through node `via` at a timestamp far above anything a new lease's floor
/// would cover; returns that timestamp.
pub(crate) async fn read_q_in_the_future(c: &Cluster, via: usize) -> Timestamp {
    let clock = c.node(via).clock();
    let read_ts = clock.now().add_duration(clock.max_offset() * 4);
    let mut read = BatchRequest::new(RangeId(0), vec![Request::Get { key: b"q".to_vec() }]);
    read.header.timestamp = read_ts;
    let dist = c.node(via).dist_sender().expect("serves");
    dist.send(read).await.expect("read in the future");
    read_ts
}

/// After a lease changed hands (through node `via`): a transaction's write of "q" lands
/// above the read of it at `read_ts`, served under the old lease, and a write of a key
/// nobody read is not pushed up to a fresh lease's floor, `max_offset` ahead.
pub(crate) async fn assert_lease_covers_reads(c: &Cluster, via: usize, read_ts: Timestamp) {
    let mut txn = c.db(via).begin();
    txn.put(b"q", b"w").await.expect("txn put");
    txn.commit().await.expect("commit");
    assert!(
        txn.write_ts() > read_ts,
        "write at {:?} under a read at {read_ts:?} served under the old lease",
        txn.write_ts()
    );
    let clock = c.node(via).clock();
    let before = clock.now();
    let resp = c
        .node(via)
        .dist_sender()
        .expect("serves")
        .send(BatchRequest::new(
            RangeId(0),
            vec![Request::Put {
                key: b"r".to_vec(),
                value: b"v".to_vec(),
            }],
        ))
        .await
        .expect("put under the new lease");
    assert!(
        resp.timestamp < before.add_duration(clock.max_offset() / 2),
        "write right after the lease changed hands pushed to {:?}, {before:?} when sent",
        resp.timestamp
    );
}

/// The leaseholder dies between applying a split and writing its meta entries (shown
/// by putting back the entry from before the split): the ranges' next leaseholders
/// write their own entries, so a client with a cold cache reaches the moved keys again.
/// A stale writer cannot put an older entry back over a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn meta_entry_left_stale_by_a_split_is_repaired_by_the_next_leaseholder() {
    let mut c = Cluster::start(3).await;
    c.put(1, b"c", b"1").await.expect("put");
    c.put(1, b"q", b"1").await.expect("put");
    let (_, before) = c.split(1, b"b").await.expect("first split");
    // Let the split queue write (and clear its flags for) the entries first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (left, right) = c.split(1, b"m").await.expect("split");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stale = postcard::to_stdvec(&before).expect("encode");
    let meta_key = cairn_kv::keys::meta_key(&before.end_key);
    c.send(
        1,
        vec![Request::PutInline {
            key: meta_key.clone(),
            value: stale,
        }],
    )
    .await
    .expect("put the pre-split entry back");
    // A stale UpdateMeta does not undo a newer entry; put the stale one back once the
    // newer one is shown to win.
    let answer = c
        .send(
            1,
            vec![Request::UpdateMeta {
                desc: right.clone(),
            }],
        )
        .await
        .expect("update meta");
    assert_eq!(answer, vec![Response::UpdateMeta { written: true }]);
    let answer = c
        .send(
            1,
            vec![Request::UpdateMeta {
                desc: before.clone(),
            }],
        )
        .await
        .expect("update meta");
    assert_eq!(answer, vec![Response::UpdateMeta { written: false }]);
    c.send(
        1,
        vec![Request::PutInline {
            key: meta_key.clone(),
            value: postcard::to_stdvec(&before).expect("encode"),
        }],
    )
    .await
    .expect("put the pre-split entry back");

    // The node that split dies; both halves get new leaseholders, which repair.
    let holder = c.leaseholder(left.range_id).expect("leaseholder");
    c.kill(holder).await;
    let via = (1..=3).find(|&i| c.is_up(i)).expect("a live node");
    let client = cairn_server::bench::Client::connect(c.node(via).rpc_addr(), c.request_timeout)
        .await
        .expect("client");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let put = BatchRequest::new(
            RangeId(0),
            vec![Request::Put {
                key: b"q".to_vec(),
                value: b"2".to_vec(),
            }],
        );
        match client.dist_sender().send(put).await {
            Ok(_) => break,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "the moved key stayed unreachable: {e}"
            ),
        }
    }
    let got = c
        .send(via, vec![Request::Get { key: meta_key }])
        .await
        .expect("read meta");
    let Some(Response::Get { value: Some(v) }) = got.into_iter().next() else {
        panic!("no meta entry");
    };
    let entry: RangeDescriptor = postcard::from_bytes(&v).expect("decode");
    assert_eq!(entry.range_id, right.range_id, "meta entry {entry}");
    assert_eq!(c.get(via, b"c").await.unwrap(), Some(b"1".to_vec()));
}

/// A transaction holds intents on both sides of a split while it happens, then commits:
/// both writes become visible, and a conflicting writer on the moved key waits for it
/// rather than overwriting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transaction_with_intents_in_a_splitting_range_commits_across_it() {
    let c = Cluster::start(3).await;
    c.put(1, b"a", b"0").await.expect("put");
    let db = c.db(1);
    let mut txn = db.begin();
    txn.put(b"c", b"t").await.expect("txn put left");
    txn.put(b"q", b"t").await.expect("txn put right");
    let (_, right) = c.split(2, b"m").await.expect("split with intents");
    assert!(right.contains_key(b"q"));
    // Another writer of "q" meets the intent in the new range and waits for the
    // transaction (it is pushed only once the transaction's heartbeat lapses).
    let other = {
        let db = c.db(3);
        tokio::spawn(async move {
            db.run(|t| {
                Box::pin(async move {
                    let seen = t.get(b"q").await?;
                    t.put(b"q", b"other").await?;
                    Ok(seen)
                })
            })
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    txn.commit().await.expect("commit across the split");
    let seen = other.await.expect("task").expect("other writer");
    assert_eq!(
        seen,
        Some(b"t".to_vec()),
        "the other writer read under the commit"
    );
    assert_eq!(c.get(2, b"c").await.unwrap(), Some(b"t".to_vec()));
    assert_eq!(c.get(2, b"q").await.unwrap(), Some(b"other".to_vec()));
    assert_replicas_agree(&c, right.range_id).await;
}
