//! Merges on a real cluster: a table split by size merges back into one range once its
//! ranges are small for the limit, under SQL writers and transactional readers, with
//! no client-visible error and no lost row, while a split a user asked for stays; a
//! range frozen for a merge that never comes serves again; merges go on across a node
//! restart and leave every replica in agreement.

use std::collections::BTreeMap;
use std::time::Duration;

use cairn_kv::RangeId;
use cairn_kv::api::{RangeDescriptor, Request, Response};
use cairn_range::raft::{MergeStep, RaftCommand};
use cairn_tests::Cluster;

use crate::autosplit::{
    Writers, assert_rows, connect, eventually, finish_load, ranges_of, small_ranges_with_kv,
    spawn_reader,
};
use crate::splits::assert_replicas_agree;

/// No node holds a replica of `range_id` any more.
async fn assert_gone_everywhere(c: &Cluster, range_id: RangeId) {
    c.wait_until(
        Duration::from_secs(30),
        &format!("every replica of merged {range_id} retired"),
        |c| {
            (1..=c.len()).all(|i| {
                !c.is_up(i)
                    || c.node(i)
                        .store()
                        .is_none_or(|s| s.replica(range_id).is_none())
            })
        },
    )
    .await;
}

/// The leaseholder's descriptor of `range_id`.
fn current(c: &Cluster, range_id: RangeId) -> Option<RangeDescriptor> {
    let l = c.leaseholder(range_id)?;
    c.node(l).store()?.replica(range_id)?.descriptor()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn table_merges_back_into_one_range_under_load_without_client_errors() {
    let (c, admin) = small_ranges_with_kv().await;
    let writers = 3i64;
    let load = Writers::start(&c, writers).await;
    let (acked, errors, stop) = (load.acked.clone(), load.errors.clone(), load.stop.clone());
    let split = eventually(Duration::from_secs(120), || async {
        let ranges = ranges_of(&admin, "kv").await;
        if ranges.len() >= 8 {
            return Ok(ranges);
        }
        Err(format!("the table has only {} ranges", ranges.len()))
    })
    .await;
    let mut readers = Vec::new();
    for r in 0..2 {
        let client = connect(&c, 1 + r % 3).await;
        readers.push(spawn_reader(
            client,
            writers,
            acked.clone(),
            errors.clone(),
            stop.clone(),
        ));
    }

    // The ranges are now tiny for the limit: they merge, under the same load.
    admin
        .batch_execute("SET CLUSTER SETTING kv.range.max_bytes = 67108864")
        .await
        .expect("raise the limit");
    let merged = eventually(Duration::from_secs(120), || async {
        let ranges = ranges_of(&admin, "kv").await;
        if ranges.len() == 1 {
            return Ok(ranges[0].0);
        }
        Err(format!(
            "the table still has {} ranges; errors: {:?}",
            ranges.len(),
            errors.lock()
        ))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let want = finish_load(load, readers, "merges").await;
    assert_rows(&admin, &want).await;

    let merged = RangeId(merged as u64);
    let desc = assert_replicas_agree(&c, merged).await;
    for (range_id, _) in split {
        let range_id = RangeId(range_id as u64);
        if range_id != merged {
            assert_gone_everywhere(&c, range_id).await;
        }
    }

    // A split a user asks for stays, however small its ranges.
    admin
        .batch_execute("ALTER TABLE kv SPLIT AT VALUES (1000000)")
        .await
        .expect("split");
    assert_eq!(ranges_of(&admin, "kv").await.len(), 2);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        ranges_of(&admin, "kv").await.len(),
        2,
        "a user's split was merged away"
    );
    assert_rows(&admin, &want).await;
    assert_eq!(desc.range_id, merged);
}

/// Splits at `keys` (through node 1) and waits until every range has 3 voters.
async fn split_at(c: &Cluster, keys: &[&[u8]]) -> Vec<RangeDescriptor> {
    let mut rights = Vec::new();
    for k in keys {
        let (left, right) = c.split(1, k).await.expect("split");
        c.wait_for_voters(left.range_id, 3).await;
        c.wait_for_voters(right.range_id, 3).await;
        rights.push(right);
    }
    rights
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn range_frozen_for_a_merge_that_never_comes_serves_again() {
    let c = Cluster::start(3).await;
    let right = split_at(&c, &[b"m"]).await.remove(0);
    let left_id = c
        .node(1)
        .store()
        .and_then(|s| {
            s.replicas()
                .into_iter()
                .filter_map(|r| r.descriptor())
                .find(|d| d.end_key == right.start_key)
        })
        .expect("the left-hand range")
        .range_id;
    c.put(1, b"l-key", b"left").await.expect("put left");
    c.put(1, b"r-key", b"right").await.expect("put right");
    let left = current(&c, left_id).expect("left descriptor");

    // Freeze the right-hand range for the left one, as a merge would, and let no merge
    // follow (as if its leaseholder died right there).
    let answer = c
        .send(
            2,
            vec![Request::Subsume {
                left: left.clone(),
                left_bytes: 0,
                max_bytes: u64::MAX,
                max_qps: u64::MAX,
                force: true,
            }],
        )
        .await
        .expect("subsume");
    let Some(Response::Subsume { right: frozen, .. }) = answer.into_iter().next() else {
        panic!("unexpected answer to Subsume");
    };
    assert_eq!(frozen.range_id, right.range_id);
    let is_frozen = |c: &Cluster, i: usize| {
        c.node(i)
            .store()
            .and_then(|s| s.replica(right.range_id))
            .and_then(|r| r.frozen_for())
            .is_some()
    };
    assert!(
        (1..=3).any(|i| is_frozen(&c, i)),
        "no replica of {right} is frozen"
    );

    // A second attempt freezes it again, for the left-hand range at a newer generation;
    // the lifting of the first attempt's freeze, arriving late, leaves the second alone.
    let newer = RangeDescriptor {
        generation: left.generation + 1,
        ..left.clone()
    };
    c.send(
        2,
        vec![Request::Subsume {
            left: newer.clone(),
            left_bytes: 0,
            max_bytes: u64::MAX,
            max_qps: u64::MAX,
            force: true,
        }],
    )
    .await
    .expect("subsume again");
    let holder = c.leaseholder(right.range_id).expect("a leaseholder");
    let frozen_replica = c
        .node(holder)
        .store()
        .and_then(|s| s.replica(right.range_id))
        .expect("the leaseholder's replica");
    let late_lift = RaftCommand {
        merge_step: Some(MergeStep::Lift(left.clone())),
        ..RaftCommand::default()
    };
    frozen_replica
        .group()
        .propose(late_lift)
        .await
        .expect("propose the late lift");
    assert_eq!(frozen_replica.frozen_for(), Some(newer));

    // Its leaseholder asks the left-hand range, which refuses the merge from now on;
    // the freeze is lifted and the range serves again, its data intact.
    c.wait_until(Duration::from_secs(30), "the freeze is lifted", |c| {
        (1..=3).all(|i| !is_frozen(c, i))
    })
    .await;
    assert_eq!(
        c.get(3, b"r-key").await.expect("get"),
        Some(b"right".to_vec())
    );
    c.put(3, b"r-key2", b"after")
        .await
        .expect("put after the freeze");
    let refused = current(&c, left_id).expect("left descriptor");
    assert!(
        refused.generation > left.generation,
        "the left-hand range did not move past the merge: {} then {}",
        left.generation,
        refused.generation
    );
    assert_eq!(refused.end_key, right.start_key);

    // A merge asked for now goes through.
    let merged = c.merge(2, b"l-key").await.expect("merge");
    assert_eq!(merged.range_id, left_id);
    assert_eq!(merged.end_key, right.end_key);
    for (k, v) in [
        (&b"l-key"[..], &b"left"[..]),
        (b"r-key", b"right"),
        (b"r-key2", b"after"),
    ] {
        assert_eq!(c.get(1, k).await.expect("get"), Some(v.to_vec()));
    }
    assert_gone_everywhere(&c, right.range_id).await;
    assert_replicas_agree(&c, left_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merges_go_on_across_a_node_restart() {
    let mut c = Cluster::start(3).await;
    let bounds: Vec<&[u8]> = vec![b"b", b"c", b"d", b"e", b"f", b"g"];
    let rights = split_at(&c, &bounds).await;
    let mut acked = BTreeMap::new();
    for (i, k) in [b"a1", b"b1", b"c1", b"d1", b"e1", b"f1", b"g1"]
        .iter()
        .enumerate()
    {
        let v = format!("v{i}").into_bytes();
        c.put(1, *k, &v).await.expect("put");
        acked.insert(k.to_vec(), v);
    }
    let first = rights[0].range_id;

    // Merge "b".."g" into the range starting at "b", one neighbour at a time. Node 3
    // goes down before the third merge: with a replica down, a merge is refused (if
    // the neighbour froze before the loss was noticed, it is told to serve again), and
    // the neighbour serves on; node 3 comes back and the merges go on.
    for (n, right) in rights.iter().enumerate().skip(1) {
        if n == 3 {
            c.kill(3).await;
            let refused = eventually(Duration::from_secs(30), || async {
                match c.merge(1, b"b").await {
                    Err(e @ cairn_kv::api::Error::MergeRefused { .. }) => Ok(e),
                    other => Err(format!("a merge with node 3 down answered {other:?}")),
                }
            })
            .await;
            tracing::info!(%refused, "merge with node 3 down");
            let key = [right.start_key[0], b'0'];
            c.put(1, &key, b"while down")
                .await
                .expect("the neighbour serves");
            acked.insert(key.to_vec(), b"while down".to_vec());
            c.restart(3).await;
        }
        let merged = eventually(Duration::from_secs(60), || async {
            c.merge(1, b"b").await.map_err(|e| e.to_string())
        })
        .await;
        assert_eq!(merged.range_id, first);
        let end = rights
            .get(n + 1)
            .map_or(cairn_kv::keys::KEY_MAX.to_vec(), |r| r.start_key.clone());
        assert_eq!(merged.end_key, end);
        let key = [right.start_key[0], b'9'];
        c.put(2, &key, b"after").await.expect("put after a merge");
        acked.insert(key.to_vec(), b"after".to_vec());
    }
    for right in &rights[1..] {
        assert_gone_everywhere(&c, right.range_id).await;
    }
    assert_replicas_agree(&c, first).await;
    for (k, v) in &acked {
        assert_eq!(c.get(3, k).await.expect("get").as_ref(), Some(v), "{k:?}");
    }
}

/// A value the right-hand range's leaseholder wrote under a clock ahead of the left-hand
/// one's (skewed within the maximum offset), acknowledged before a transaction began,
/// is not missed by that transaction when it reads it from the merged range, though it
/// observed the left-hand leaseholder's clock before the merge. (Clock readings travel
/// with every message, so node 1 has usually caught up with node 2's clock by the time
/// the transaction starts; the window in which it has not, where the merged range must
/// count the neighbour's writes as uncertain, is covered by the range crate's
/// `taking_over_a_merged_range_raises_the_local_uncertainty_limit`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_merged_value_written_under_a_faster_clock_is_not_missed() {
    let c = Cluster::start(3).await;
    let right = split_at(&c, &[b"m"]).await.remove(0);
    let left = current(&c, RangeId(1))
        .filter(|d| d.end_key == right.start_key)
        .expect("range 1 ends where the right-hand range starts");
    c.transfer_lease(left.range_id, 1).await;
    c.transfer_lease(right.range_id, 2).await;
    c.node(2).set_clock_offset(300_000_000);

    // Written (and acknowledged) through node 2, at node 2's clock.
    c.put(2, b"r", b"written").await.expect("put");
    let mut txn = c.db(1).begin();
    // The transaction observes node 1's clock, then the ranges merge onto node 1.
    assert_eq!(txn.get(b"a").await.expect("read left"), None);
    let merged = c.merge(1, b"a").await.expect("merge");
    assert_eq!(merged.range_id, left.range_id);
    assert_eq!(c.leaseholder(left.range_id), Some(1));
    let seen = match txn.get(b"r").await {
        Ok(v) => v,
        Err(e) if e.is_retryable() => {
            txn.restart().await;
            txn.get(b"r").await.expect("read after the restart")
        }
        Err(e) => panic!("read failed: {e}"),
    };
    assert_eq!(
        seen,
        Some(b"written".to_vec()),
        "a write acknowledged before the transaction began was missed"
    );
    txn.commit().await.expect("commit");
}
