//! A Jepsen-style fault harness: a cluster of `cairn` processes on their own loopback
//! addresses ([`ProcessCluster`]), SQL workloads run against every node, nemeses applied
//! on a schedule, and a checker per workload over the history it recorded.
//!
//! A run:
//! 1. starts the cluster and sets up each workload's tables;
//! 2. runs every workload's clients (each connected to a node, moving to another when
//!    its node stops answering) while the nemesis schedule injects faults: each cycle
//!    applies one fault for `fault_for`, then heals it and lets the cluster recover
//!    for `recover_for`;
//! 3. heals everything, restarts what was killed, and gives each workload a final read;
//! 4. checks each workload's history, and every range's replicas against each other
//!    (`cairn debug check-consistency`).
//!
//! Every history is written to the run's directory as JSON lines, one file per
//! workload, with the nemesis's log beside them.
//!
//! Outcomes follow Jepsen: an operation is `ok` (it happened), `fail` (it certainly did
//! not: the server refused it with a serialization failure, a constraint violation, or
//! before doing anything) or `info` (unknown: a timeout, a lost connection, 40003).
//! Checkers allow `info` writes to have happened or not.

mod nemesis;
mod session;
mod workloads;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use nemesis::Nemesis;
pub use session::{Outcome, Session};
pub use workloads::{Workload, WorkloadKind};

use crate::Rng;
use crate::processes::ProcessCluster;

/// What a run does.
#[derive(Clone, Debug)]
pub struct Config {
    /// Nodes in the cluster.
    pub nodes: usize,
    /// How long the workloads run under the nemesis schedule.
    pub time_limit: Duration,
    /// The faults, applied one per cycle in turn.
    pub nemeses: Vec<Nemesis>,
    /// How long each fault lasts.
    pub fault_for: Duration,
    /// How long the cluster runs healed between faults.
    pub recover_for: Duration,
    pub workloads: Vec<WorkloadKind>,
    /// Clients per workload.
    pub concurrency: usize,
    pub seed: u64,
    /// Where histories and logs go (created).
    pub out: PathBuf,
}

/// One workload's result.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub workload: &'static str,
    /// No anomaly, and enough operations succeeded to have checked something.
    pub valid: bool,
    /// Counts of what happened, for the report.
    pub summary: String,
    /// What the checker found wrong (the first ones).
    pub anomalies: Vec<String>,
}

impl Verdict {
    /// Builds a verdict: valid when `anomalies` is empty and `checked` is true.
    pub fn new(
        workload: &'static str,
        summary: String,
        anomalies: Vec<String>,
        checked: bool,
    ) -> Verdict {
        let mut anomalies = anomalies;
        if !checked {
            anomalies.push("too few operations succeeded to check anything".into());
        }
        Verdict {
            workload,
            valid: anomalies.is_empty(),
            summary,
            anomalies,
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let word = if self.valid { "valid" } else { "INVALID" };
        write!(f, "{:<16} {word:<8} {}", self.workload, self.summary)?;
        for a in self.anomalies.iter().take(10) {
            write!(f, "\n    {a}")?;
        }
        if self.anomalies.len() > 10 {
            write!(f, "\n    ... and {} more", self.anomalies.len() - 10)?;
        }
        Ok(())
    }
}

/// What a run found.
#[derive(Debug)]
pub struct Report {
    pub verdicts: Vec<Verdict>,
    /// Every range's replicas agreed at the end.
    pub consistent: bool,
    pub consistency_report: String,
    /// The faults applied, in order, with their times.
    pub nemesis_log: Vec<String>,
    pub out: PathBuf,
}

impl Report {
    pub fn valid(&self) -> bool {
        self.consistent && self.verdicts.iter().all(|v| v.valid)
    }

    /// How many faults the schedule applied.
    pub fn faults(&self) -> usize {
        self.nemesis_log
            .iter()
            .filter(|l| l.contains(" start: "))
            .count()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "faults applied: {}", self.faults())?;
        for v in &self.verdicts {
            writeln!(f, "{v}")?;
        }
        let word = if self.consistent { "valid" } else { "INVALID" };
        writeln!(f, "{:<16} {word}", "consistency")?;
        if !self.consistent {
            writeln!(f, "{}", self.consistency_report)?;
        }
        write!(
            f,
            "verdict: {} (histories in {})",
            if self.valid() { "valid" } else { "INVALID" },
            self.out.display()
        )
    }
}

/// Microseconds since the run started: the one clock every history uses.
#[derive(Clone, Copy, Debug)]
pub struct RunClock(Instant);

impl RunClock {
    pub fn now(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_micros()).unwrap_or(u64::MAX)
    }
}

/// Runs the workloads against a fresh cluster of `bin` processes under the nemesis
/// schedule, and checks them.
pub async fn run(bin: &str, config: Config) -> Report {
    std::fs::create_dir_all(&config.out).expect("create the run's directory");
    let cluster = ProcessCluster::start(bin, config.nodes).await;
    let urls: Arc<Vec<String>> = Arc::new((0..config.nodes).map(|i| cluster.sql_url(i)).collect());
    wait_for_sql(&urls).await;
    let clock = RunClock(Instant::now());
    let workloads: Vec<Arc<dyn Workload>> =
        config.workloads.iter().map(|k| k.build(clock)).collect();
    let mut setup = Session::new(urls.clone(), 0);
    for w in &workloads {
        w.setup(&mut setup)
            .await
            .unwrap_or_else(|e| panic!("setting up {}: {e}", w.name()));
    }

    let cluster = Arc::new(tokio::sync::Mutex::new(cluster));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        for c in 0..config.concurrency {
            let process = wi * config.concurrency + c;
            let (w, urls, stop) = (w.clone(), urls.clone(), stop.clone());
            let mut rng = Rng::new(config.seed ^ (process as u64 + 1).wrapping_mul(0x9e37_79b9));
            clients.push(tokio::spawn(async move {
                let mut sessions: Vec<Session> = (0..w.sessions_per_client())
                    .map(|s| Session::new(urls.clone(), process + s))
                    .collect();
                while !stop.load(Ordering::Relaxed) {
                    w.step(process, &mut sessions, &mut rng).await;
                }
            }));
        }
    }
    let schedule = nemesis::Schedule {
        nemeses: config.nemeses.clone(),
        fault_for: config.fault_for,
        recover_for: config.recover_for,
        tables: workloads.iter().flat_map(|w| w.split_tables()).collect(),
    };
    let nemesis_log = schedule
        .run(
            cluster.clone(),
            urls.clone(),
            Rng::new(config.seed),
            clock,
            config.time_limit,
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        // A client stuck on a node that is gone answers within its operation timeout.
        let _ = c.await;
    }

    // Healed and all up: the final reads, the checks, and the replicas compared.
    let consistency = {
        let c = cluster.lock().await;
        wait_for_sql(&urls).await;
        check_consistency(&c).await
    };
    let mut verdicts = Vec::new();
    let mut final_session = Session::new(urls.clone(), 0);
    for w in &workloads {
        verdicts.push(w.check(&mut final_session).await);
        write_history(&config.out, w.name(), &w.history());
    }
    write_history(
        &config.out,
        "nemesis",
        &nemesis_log
            .iter()
            .map(|l| serde_json::json!(l))
            .collect::<Vec<_>>(),
    );
    let report = Report {
        verdicts,
        consistent: consistency.0,
        consistency_report: consistency.1,
        nemesis_log,
        out: config.out.clone(),
    };
    if !report.valid() {
        // The nodes' logs explain what the histories show: keep them.
        let c = cluster.lock().await;
        for i in 0..c.len() {
            let log = c.dir().join(format!("n{}.log", i + 1));
            let _ = std::fs::copy(&log, config.out.join(format!("n{}.log", i + 1)));
        }
    }
    let _ = std::fs::write(config.out.join("verdict.txt"), report.to_string());
    report
}

/// Waits until every node answers SQL.
async fn wait_for_sql(urls: &Arc<Vec<String>>) {
    let deadline = Instant::now() + Duration::from_secs(90);
    for i in 0..urls.len() {
        loop {
            let mut s = Session::pinned(urls.clone(), i);
            if s.simple("SELECT 1").await.is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "node {} never served SQL", i + 1);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// `cairn debug check-consistency`, tried again while ranges are still moving (a
/// replica that does not answer leaves a range unchecked); a divergence fails at once.
async fn check_consistency(c: &ProcessCluster) -> (bool, String) {
    let mut last = String::new();
    for _ in 0..5 {
        let (ok, report) = c.check_consistency(0);
        if ok {
            return (true, report);
        }
        if report.contains("DIVERGED") {
            return (false, report);
        }
        last = report;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    (false, last)
}

fn write_history(dir: &Path, name: &str, events: &[serde_json::Value]) {
    let mut text = String::new();
    for e in events {
        text.push_str(&e.to_string());
        text.push('\n');
    }
    let _ = std::fs::write(dir.join(format!("{name}.jsonl")), text);
}
