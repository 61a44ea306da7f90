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
        "cairn_ranges",
        "cairn_ranges_underreplicated",
        "cairn_raft_follower_lag_entries",
        "cairn_range_splits_total",
        "cairn_range_merges_total",
        "cairn_raft_leader_changes_total",
        "cairn_sql_connections",
        "cairn_liveness_heartbeat_failures_total",
        "cairn_txn_commits_total",
        "cairn_txn_aborts_total",
        "cairn_txn_restarts_total{reason=\"savepoint\"}",
        "cairn_raft_commit_latency_seconds_count",
        "cairn_wal_fsync_latency_seconds_count",
        "cairn_sql_statement_latency_seconds_count{kind=\"delete\"}",
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
    assert_eq!(
        sample(&before, "cairn_ranges"),
        sample(&before, "cairn_leaseholders"),
        "{before}"
    );
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

/// The body of `/metrics` at the HTTP address `http`.
async fn scrape_metrics(http: &str) -> String {
    let http = http.to_string();
    tokio::task::spawn_blocking(move || http_get(&http, "/metrics"))
        .await
        .expect("scrape")
        .1
}

/// The transaction, SQL and log families count what SQL clients do: statements by kind,
/// connections, commits, a restart by its reason, Raft commits and log syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_statements_transactions_and_connections() {
    let c = Cluster::start(3).await;
    let http = c.node(1).http_addr().to_string();
    let scrape = || scrape_metrics(&http);
    let connect = || async {
        let url = format!("postgresql://root@{}/defaultdb", c.node(1).sql_addr());
        let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        client
    };
    let before = scrape().await;
    let (a, b) = (connect().await, connect().await);
    a.batch_execute("CREATE TABLE m (k INT8 PRIMARY KEY, v INT8)")
        .await
        .unwrap();
    a.batch_execute("INSERT INTO m VALUES (1, 1)")
        .await
        .unwrap();
    // A write skew the commit cannot refresh over: 40001, a restart for invalid reads.
    a.batch_execute("BEGIN").await.unwrap();
    a.query("SELECT v FROM m WHERE k = 1", &[]).await.unwrap();
    b.batch_execute("UPDATE m SET v = 2 WHERE k = 1")
        .await
        .unwrap();
    let err = a
        .batch_execute("UPDATE m SET v = 3 WHERE k = 1; COMMIT")
        .await
        .expect_err("a serialization failure");
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE),
        "{err}"
    );
    a.batch_execute("ROLLBACK").await.unwrap();
    let after = scrape().await;

    let grew = |name: &str| sample(&after, name) - sample(&before, name);
    assert_eq!(sample(&after, "cairn_sql_connections"), 2.0, "{after}");
    assert!(grew("cairn_sql_statement_latency_seconds_count{kind=\"ddl\"}") >= 1.0);
    assert!(grew("cairn_sql_statement_latency_seconds_count{kind=\"insert\"}") >= 1.0);
    assert!(grew("cairn_sql_statement_latency_seconds_count{kind=\"select\"}") >= 1.0);
    assert!(grew("cairn_sql_statement_latency_seconds_count{kind=\"txn\"}") >= 2.0);
    assert!(grew("cairn_txn_commits_total") >= 2.0, "{after}");
    assert!(grew("cairn_txn_aborts_total") >= 1.0, "{after}");
    assert!(
        grew("cairn_txn_restarts_total{reason=\"reads_invalidated\"}") >= 1.0,
        "{after}"
    );
    assert!(
        grew("cairn_raft_commit_latency_seconds_count") >= 1.0,
        "{after}"
    );
    assert!(
        grew("cairn_wal_fsync_latency_seconds_count") >= 1.0,
        "{after}"
    );

    drop((a, b));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sample(&scrape().await, "cairn_sql_connections") != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "connections still counted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The web console at `/` renders in headless Chromium from the admin JSON and the
/// metrics: every node live, every range in the range map with its leaseholder's
/// cell, and the throughput and latency charts drawn after several polls.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_renders_in_headless_chromium() {
    let c = Cluster::start(3).await;
    c.split(1, b"m").await.expect("split");
    let http = c.node(1).http_addr().to_string();
    // Wait until every range has a known leaseholder, as the console will show it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let ranges = loop {
        let addr = http.clone();
        let (_, body) = tokio::task::spawn_blocking(move || http_get(&addr, "/_status/ranges"))
            .await
            .expect("ranges");
        let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        let ranges = json["ranges"].as_array().cloned().unwrap_or_default();
        if ranges.len() >= 2 && ranges.iter().all(|r| r["lease_holder"].is_u64()) {
            break ranges;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // SQL load on the node the console is drawn from, for its charts.
    let url = format!("postgresql://root@{}/defaultdb", c.node(1).sql_addr());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let load = tokio::spawn(async move {
        loop {
            if client.simple_query("SELECT 1").await.is_err() {
                break;
            }
        }
    });
    let profile = tempfile::tempdir().expect("a profile directory");
    let url = format!("http://{http}/");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--virtual-time-budget=5000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .output()
    })
    .await
    .expect("chromium")
    .expect("run chromium (Debian package chromium; .ci/run installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("updated "),
        "the page never loaded its data:\n{dom}"
    );
    assert!(dom.contains(": 3 nodes, "), "{dom}");
    for n in 1..=3 {
        let row = element(&dom, &format!("<tr data-node-id=\"{n}\">"), "</tr>");
        assert!(row.contains("<td>live</td>"), "{row}");
    }
    for r in &ranges {
        let id = r["range_id"].as_u64().expect("range id");
        let row = element(&dom, &format!("<tr data-range-id=\"{id}\">"), "</tr>");
        assert_eq!(row.matches("class=\"lease\"").count(), 1, "{row}");
        assert_eq!(row.matches("class=\"replica\"").count(), 2, "{row}");
    }
    load.abort();
    for chart in ["throughput", "latency"] {
        let svg = element(&dom, &format!("<svg id=\"{chart}\""), "</svg>");
        let points = element(&svg, "points=\"", "\"");
        assert!(
            points.split_whitespace().count() >= 3,
            "{chart} drew too few samples: {svg}"
        );
        // Some sample is above the baseline (y = 135): the load shows.
        assert!(
            points
                .split_whitespace()
                .any(|p| p.split(',').nth(1).is_some_and(|y| y != "135.0")),
            "{chart} drew nothing but zeros: {svg}"
        );
    }
}

/// The text of `dom` from `start` up to the next `end`.
fn element(dom: &str, start: &str, end: &str) -> String {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start} in:\n{dom}"));
    let rest = &dom[from + start.len()..];
    let to = rest.find(end).unwrap_or(rest.len());
    rest[..to].to_string()
}

/// A range whose voter's node died counts as under-replicated at its leaseholder, and
/// only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_underreplicated_ranges_when_a_node_dies() {
    let mut c = Cluster::start(3).await;
    c.put(1, b"k", b"v").await.unwrap();
    let leader = c.leaseholder(cairn_kv::RangeId(1)).expect("a leaseholder");
    let http = c.node(leader).http_addr().to_string();
    let scrape = || scrape_metrics(&http);
    let body = scrape().await;
    assert!(sample(&body, "cairn_ranges") >= 1.0, "{body}");
    assert_eq!(sample(&body, "cairn_ranges_underreplicated"), 0.0, "{body}");
    let victim = (1..=3).find(|&i| i != leader).expect("a follower");
    c.kill(victim).await;
    // Once its liveness record expires (4.5 s), every range led here misses a voter.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let body = scrape().await;
        let (ranges, under) = (
            sample(&body, "cairn_ranges"),
            sample(&body, "cairn_ranges_underreplicated"),
        );
        if ranges >= 1.0 && under == ranges {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
