//! `cairn debug check-consistency`: replicas compared by a hash of their data.

use cairn_kv::storage::{Space, WriteBatch};
use cairn_server::consistency::{RangeCheck, check_all};
use cairn_tests::Cluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn check_consistency_names_the_replica_that_diverged() {
    cairn_tests::init_logging();
    let c = Cluster::start(3).await;
    for i in 0..50 {
        c.put(i % 3 + 1, format!("cc{i:03}").as_bytes(), b"value")
            .await
            .expect("put");
    }
    let from = c.node(1).clone();
    let checks = check_all(&from).await.expect("check");
    assert!(
        !checks.is_empty() && checks.iter().all(RangeCheck::consistent),
        "{}",
        report(&checks)
    );
    let holding = |checks: &[RangeCheck]| {
        checks
            .iter()
            .find(|ch| ch.range.contains_key(b"cc000"))
            .cloned()
            .expect("a range holds the keys")
    };
    let before = holding(&checks);
    assert_eq!(before.replicas.len(), 3, "{before}");
    assert!(
        before.replicas[0].1.as_ref().unwrap().entries >= 50,
        "{before}"
    );

    // One stray version on node 3's copy only, as a bug or a bad disk would leave it.
    let store = c.node(3).store().expect("serving");
    let mut batch = WriteBatch::new();
    batch.put(
        Space::Data,
        cairn_kv::mvcc::key::meta_key(b"cc0251"),
        b"stray".to_vec(),
    );
    store.engine().write(batch, true).expect("write");

    let after = holding(&check_all(&from).await.expect("check"));
    assert!(!after.consistent() && after.diverged(), "{after}");
    let node3 = c.node(3).node_id().expect("an id");
    let digest = |node| {
        after
            .replicas
            .iter()
            .find(|(n, _)| *n == node)
            .and_then(|(_, s)| s.as_ref())
            .map(|s| (s.digest, s.entries))
            .expect("every replica answered")
    };
    let others: Vec<_> = after
        .replicas
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| *n != node3)
        .collect();
    assert_eq!(digest(others[0]), digest(others[1]), "{after}");
    assert_ne!(digest(node3), digest(others[0]), "{after}");
    assert_eq!(digest(node3).1, digest(others[0]).1 + 1, "{after}");
}

fn report(checks: &[RangeCheck]) -> String {
    checks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
