//! `cairn workload` against a 3-node cluster: the bank keeps its total under
//! concurrent transfers across ranges and notices when money appears; kv reads and
//! writes without errors.

use std::time::Duration;

use cairn_server::workload::{bank, kv};
use cairn_tests::Cluster;
use clap::Parser;

async fn url(c: &Cluster) -> String {
    c.wait_until(Duration::from_secs(30), "SQL serves", |c| {
        c.node(1).sql_server().is_some()
    })
    .await;
    format!(
        "postgresql://root@{}/defaultdb?sslmode=disable",
        c.node(1).sql_addr()
    )
}

/// The workload flags as a user would type them.
#[derive(Parser)]
struct BankCli {
    #[command(flatten)]
    args: bank::BankArgs,
}

#[derive(Parser)]
struct KvCli {
    #[command(flatten)]
    args: kv::KvArgs,
}

fn bank_args(url: &str, extra: &[&str]) -> bank::BankArgs {
    let mut argv = vec!["bank", "--url", url, "--json"];
    argv.extend_from_slice(extra);
    BankCli::parse_from(argv).args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bank_workload_keeps_the_total_and_catches_a_change() {
    let c = Cluster::start(3).await;
    let url = url(&c).await;
    let args = bank_args(
        &url,
        &[
            "--accounts",
            "200",
            "--ranges",
            "4",
            "--concurrency",
            "6",
            "--duration",
            "4",
            "--audit-every",
            "0.5",
        ],
    );
    bank::init(&args).await.expect("init");
    let summary = bank::run(&args).await.expect("the total holds");
    let transfers = &summary.ops[0];
    assert_eq!(transfers.op, "transfer");
    assert!(transfers.ops > 20, "{summary:?}");
    assert!(summary.errors.is_empty(), "{summary:?}");

    // Money that appears during a run fails it.
    let tamper_url = url.clone();
    let tamper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let client = cairn_server::workload::connect(&tamper_url).await.unwrap();
        client
            .execute("UPDATE bank SET balance = balance + 1 WHERE id = 7", &[])
            .await
            .unwrap();
    });
    let err = bank::run(&args)
        .await
        .expect_err("created money is noticed");
    tamper.await.unwrap();
    assert!(err.contains("created or destroyed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kv_workload_reads_and_writes_over_split_ranges() {
    let c = Cluster::start(3).await;
    let url = url(&c).await;
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("kv.csv");
    let series_arg = series.to_str().unwrap().to_string();
    let argv = [
        "kv",
        "--timeseries",
        &series_arg,
        "--url",
        &url,
        "--json",
        "--splits",
        "3",
        "--key-space",
        "3000",
        "--read-percent",
        "50",
        "--concurrency",
        "4",
        "--duration",
        "3",
        "--max-rate",
        "400",
    ];
    let args = KvCli::parse_from(argv).args;
    kv::init(&args).await.expect("init");
    let summary = kv::run(&args).await.expect("run");
    let ops: Vec<&str> = summary.ops.iter().map(|o| o.op.as_str()).collect();
    assert_eq!(ops, ["read", "write"], "{summary:?}");
    assert!(summary.errors.is_empty(), "{summary:?}");
    let total: u64 = summary.ops.iter().map(|o| o.ops).sum();
    // At most --max-rate a second (and some, to show it ran).
    assert!(total > 100 && total <= 400 * 4, "{summary:?}");
    // A row per operation and second, for plots.
    let csv = std::fs::read_to_string(&series).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("seconds,op,ops_per_sec,p50_ms,p99_ms,errors")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.len() >= 4, "{csv}");
    assert!(rows.iter().any(|r| r[1] == "read") && rows.iter().any(|r| r[1] == "write"));
    let client = cairn_server::workload::connect(&url).await.unwrap();
    let ranges = client
        .query("SHOW RANGES FROM TABLE kv", &[])
        .await
        .unwrap();
    assert_eq!(ranges.len(), 3);
}
