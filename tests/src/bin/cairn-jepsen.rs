//! `cairn-jepsen`: the fault harness from the command line, for long runs by hand.
//!
//!     cargo build --release -p cairn-tests --bins
//!     target/release/cairn-jepsen --time-limit 1800
//!
//! Runs every workload (or those named with `--workload`) against a fresh cluster of
//! `cairn` processes on 127.K.0.N addresses under the nemesis schedule (every nemesis in
//! turn, or those named), prints a verdict per workload, and exits 1 if any is invalid.
//! Partitions use iptables, so it runs as root.

use std::path::PathBuf;
use std::time::Duration;

use cairn_tests::jepsen::{self, Nemesis, WorkloadKind};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(
    name = "cairn-jepsen",
    about = "Cairn's fault harness: workloads, nemeses, checkers"
)]
struct Args {
    /// Seconds of workload under the nemesis schedule.
    #[arg(long, default_value_t = 120)]
    time_limit: u64,
    /// Nodes in the cluster.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Nemeses to apply in turn (default: all): kill, pause, partition-halves,
    /// partition-ring, partition-leaseholder, clock-skew, split.
    #[arg(long, value_delimiter = ',')]
    nemesis: Vec<String>,
    /// Workloads (default: all): bank, bank-multitable, register, sets, sequential,
    /// monotonic, g2, list-append.
    #[arg(long, value_delimiter = ',')]
    workload: Vec<String>,
    /// Seconds each fault lasts.
    #[arg(long, default_value_t = 10)]
    fault_seconds: u64,
    /// Seconds of healed running between faults.
    #[arg(long, default_value_t = 10)]
    recover_seconds: u64,
    /// Clients per workload.
    #[arg(long, default_value_t = 2)]
    concurrency: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where histories go (default: `jepsen-runs/<unix time>`).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The `cairn` binary (default: `cairn-under-test` beside this program).
    #[arg(long)]
    cairn: Option<PathBuf>,
}

fn main() {
    let args = Args::parse();
    cairn_tests::init_logging();
    let nemeses = if args.nemesis.is_empty() {
        Nemesis::ALL.to_vec()
    } else {
        args.nemesis
            .iter()
            .map(|n| Nemesis::parse(n).unwrap_or_else(|| fail(&format!("no nemesis {n}"))))
            .collect()
    };
    let workloads = if args.workload.is_empty() {
        WorkloadKind::ALL.to_vec()
    } else {
        args.workload
            .iter()
            .map(|w| WorkloadKind::parse(w).unwrap_or_else(|| fail(&format!("no workload {w}"))))
            .collect()
    };
    let cairn = args.cairn.unwrap_or_else(|| {
        let me = std::env::current_exe().unwrap_or_else(|e| fail(&e.to_string()));
        me.with_file_name("cairn-under-test")
    });
    let out = args.out.unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        PathBuf::from(format!("jepsen-runs/{now}"))
    });
    let config = jepsen::Config {
        nodes: args.nodes,
        time_limit: Duration::from_secs(args.time_limit),
        nemeses,
        fault_for: Duration::from_secs(args.fault_seconds),
        recover_for: Duration::from_secs(args.recover_seconds),
        workloads,
        concurrency: args.concurrency,
        seed: args.seed,
        out,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| fail(&e.to_string()));
    let report = runtime.block_on(jepsen::run(&cairn.to_string_lossy(), config));
    println!("{report}");
    std::process::exit(if report.valid() { 0 } else { 1 });
}

fn fail(why: &str) -> ! {
    eprintln!("error: {why}");
    std::process::exit(2)
}
