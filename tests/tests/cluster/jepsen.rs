//! The fault harness's short schedule: every workload against five `cairn` processes,
//! one test per nemesis, each fault applied twice. Every workload's checker must find
//! no anomaly, and every range's replicas must agree at the end. (The long schedule runs
//! by hand: `cairn-jepsen --time-limit 1800`.)

use std::time::Duration;

use cairn_tests::jepsen::{self, Nemesis, WorkloadKind};

const CAIRN: &str = env!("CARGO_BIN_EXE_cairn-under-test");

async fn short_schedule(nemesis: Nemesis) {
    cairn_tests::init_logging();
    let out = std::env::temp_dir().join(format!(
        "cairn-jepsen-{}-{}",
        nemesis.name(),
        std::process::id()
    ));
    let config = jepsen::Config {
        nodes: 5,
        time_limit: Duration::from_secs(26),
        nemeses: vec![nemesis],
        fault_for: Duration::from_secs(6),
        recover_for: Duration::from_secs(4),
        workloads: WorkloadKind::ALL.to_vec(),
        concurrency: 2,
        seed: std::process::id().into(),
        out: out.clone(),
    };
    let report = jepsen::run(CAIRN, config).await;
    eprintln!("{}\n{report}", report.nemesis_log.join("\n"));
    assert_eq!(report.faults(), 2, "{:?}", report.nemesis_log);
    assert!(report.valid(), "{report}");
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jepsen_kill() {
    short_schedule(Nemesis::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jepsen_pause() {
    short_schedule(Nemesis::Pause).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jepsen_partition_halves() {
    short_schedule(Nemesis::PartitionHalves).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jepsen_partition_ring() {
    short_schedule(Nemesis::PartitionRing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jepsen_partition_leaseholder() {
    short_schedule(Nemesis::PartitionLeaseholder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jepsen_clock_skew() {
    short_schedule(Nemesis::ClockSkew).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jepsen_split() {
    short_schedule(Nemesis::Split).await;
}
