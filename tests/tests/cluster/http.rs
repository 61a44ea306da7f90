//! The HTTP status port: health and the JSON that tools read.

use std::io::{Read, Write};
use std::time::Duration;

use cairn_tests::Cluster;

/// A GET over a fresh connection; returns the status code and the body.
fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the HTTP port");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read the answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header and a body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("a status code");
    (code, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn status_endpoints_describe_nodes_and_ranges() {
    let c = Cluster::start(3).await;
    c.put(1, b"k", b"v").await.unwrap();
    let leader = c.leaseholder(cairn_kv::RangeId(1)).expect("a leaseholder");
    let http = c.node(2).http_addr().to_string();

    let (code, body) = tokio::task::spawn_blocking({
        let http = http.clone();
        move || http_get(&http, "/health")
    })
    .await
    .unwrap();
    assert_eq!(code, 200, "{body}");

    // Every node is listed, live, with its addresses.
    let mut nodes = serde_json::Value::Null;
    for _ in 0..50 {
        let (code, body) = tokio::task::spawn_blocking({
            let http = http.clone();
            move || http_get(&http, "/_status/nodes")
        })
        .await
        .unwrap();
        assert_eq!(code, 200, "{body}");
        nodes = serde_json::from_str(&body).expect("JSON");
        let all_live = nodes["nodes"].as_array().is_some_and(|n| {
            // Each holds a replica of the first range once its heartbeat says so.
            n.len() == 3
                && n.iter().all(|n| {
                    n["live"] == serde_json::Value::Bool(true)
                        && n["replicas"].as_u64().is_some_and(|r| r >= 1)
                })
        });
        if all_live {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let list = nodes["nodes"].as_array().expect("a node list");
    assert_eq!(list.len(), 3, "{nodes}");
    for (i, n) in list.iter().enumerate() {
        assert_eq!(n["node_id"], serde_json::json!(i + 1), "{nodes}");
        // Node ids go by the order in which nodes joined, which need not be the
        // order in which the test started them.
        let node = (1..=3)
            .map(|j| c.node(j))
            .find(|x| x.node_id().map(|id| id.0) == Some(i as u64 + 1))
            .unwrap_or_else(|| panic!("no node has id {}", i + 1));
        assert_eq!(n["address"], serde_json::json!(node.rpc_addr()), "{nodes}");
        assert_eq!(n["live"], serde_json::json!(true), "{nodes}");
        assert!(n["sql_address"].is_string(), "{nodes}");
        assert_eq!(n["membership"], serde_json::json!("active"), "{nodes}");
    }

    // The first range: whole key space, three replicas, the leaseholder, applied index.
    let (code, body) = tokio::task::spawn_blocking(move || http_get(&http, "/_status/ranges"))
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    let ranges: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let r = &ranges["ranges"][0];
    assert_eq!(r["range_id"], serde_json::json!(1), "{ranges}");
    assert_eq!(r["start_key"], serde_json::json!("/Min"), "{ranges}");
    assert_eq!(r["end_key"], serde_json::json!("/Max"), "{ranges}");
    let mut replicas: Vec<u64> = r["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    replicas.sort();
    assert_eq!(replicas, vec![1, 2, 3], "{ranges}");
    assert_eq!(r["lease_holder"], serde_json::json!(leader), "{ranges}");
    assert!(
        r["applied_index"].as_u64().is_some_and(|i| i > 0),
        "{ranges}"
    );
}

/// The value of the sample `name` (no labels) in a Prometheus text answer.
fn sample(body: &str, name: &str) -> f64 {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{body}"))
}

/// `/metrics` answers every family on every node, at zero before its first event, and
/// counts what happens: a split on the node that made it, leases and replicas where
/// they are.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_report_every_family_and_count_splits() {
    let c = Cluster::start(3).await;
    c.put(1, b"k", b"v").await.unwrap();
    let leader = c.leaseholder(cairn_kv::RangeId(1)).expect("a leaseholder");
    let scrape = |i: usize| {
        let http = c.node(i).http_addr().to_string();
        tokio::task::spawn_blocking(move || http_get(&http, "/metrics"))
    };
    let families = [
        "cairn_replicas",
        "cairn_leaseholders",
        "cairn_raft_follower_lag_entries",
        "cairn_range_splits_total",
        "cairn_range_merges_total",
        "cairn_raft_leader_changes_total",
    ];
    for i in 1..=3 {
        let (code, body) = scrape(i).await.expect("scrape");
        assert_eq!(code, 200, "{body}");
        for family in families {
            sample(&body, family);
        }
        assert_eq!(sample(&body, "cairn_range_merges_total"), 0.0);
        assert!(sample(&body, "cairn_replicas") >= 1.0, "n{i}:\n{body}");
    }
    let (_, before) = scrape(leader).await.expect("scrape");
    assert!(sample(&before, "cairn_leaseholders") >= 1.0, "{before}");
    assert!(
        sample(&before, "cairn_raft_leader_changes_total") >= 1.0,
        "{before}"
    );

    c.split(1, b"m").await.expect("split");
    let (_, after) = scrape(leader).await.expect("scrape");
    assert_eq!(
        sample(&after, "cairn_range_splits_total"),
        sample(&before, "cairn_range_splits_total") + 1.0,
        "{after}"
    );
}
