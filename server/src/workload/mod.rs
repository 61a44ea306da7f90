//! `cairn workload`: load generators that speak SQL to any Postgres-wire server, as a
//! user's application would (CockroachDB's `cockroach workload`).
//!
//! - [`bank`]: transfers between accounts in explicit transactions, retried on
//!   40001/40P01, with periodic audits of the total; a run whose total changed fails.
//! - [`kv`]: single-row reads and writes (UPSERT) on random or sequential keys.
//!
//! Both run `--concurrency` workers, each on its own connection, for `--duration`
//! (or until Ctrl-C), at most `--max-rate` operations per second in all. Each second
//! one line reports the last second; at the end a summary gives throughput, latency
//! percentiles (HDR histograms), errors by SQLSTATE and retries, as text or JSON.

pub mod bank;
pub mod kv;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::{Args, Subcommand};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::time::Instant;
use tokio_postgres::{Client, NoTls};

#[derive(Subcommand, Debug)]
pub enum WorkloadCommand {
    /// Create and load a workload's tables.
    #[command(subcommand)]
    Init(Which),
    /// Run a workload against tables made by `init`.
    #[command(subcommand)]
    Run(Which),
}

#[derive(Subcommand, Debug)]
pub enum Which {
    /// Money moves between accounts; the total must not change.
    Bank(bank::BankArgs),
    /// Single-row reads and writes.
    Kv(kv::KvArgs),
}

/// Flags every workload takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Where to connect.
    #[arg(
        long,
        default_value = "postgresql://root@127.0.0.1:26257/defaultdb?sslmode=disable"
    )]
    pub url: String,
    /// Workers, each with its own connection.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds to run (0: until Ctrl-C).
    #[arg(long, default_value_t = 30.0)]
    pub duration: f64,
    /// Operations per second across all workers (0: as fast as they go).
    #[arg(long, default_value_t = 0.0)]
    pub max_rate: f64,
    /// Print the summary as one JSON object (and no per-second lines).
    #[arg(long)]
    pub json: bool,
    /// Also write each second's figures to this CSV file (seconds, op, ops_per_sec,
    /// p50_ms, p99_ms, errors), for plots.
    #[arg(long)]
    pub timeseries: Option<std::path::PathBuf>,
}

/// Runs `cairn workload ...`; returns the process exit code.
pub async fn run(cmd: WorkloadCommand) -> i32 {
    let result = match cmd {
        WorkloadCommand::Init(Which::Bank(a)) => bank::init(&a).await,
        WorkloadCommand::Init(Which::Kv(a)) => kv::init(&a).await,
        WorkloadCommand::Run(Which::Bank(a)) => bank::run(&a).await.map(|_| ()),
        WorkloadCommand::Run(Which::Kv(a)) => kv::run(&a).await.map(|_| ()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

/// Opens a connection; its driver task runs in the background.
pub async fn connect(url: &str) -> Result<Client, String> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|e| format!("connecting to {url}: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Creates `table` anew from `ddl` (its CREATE TABLE statement) and cuts it into
/// `ranges` ranges at evenly spaced integer keys in `[0, key_space)`.
pub async fn create_split_table(
    c: &Client,
    table: &str,
    ddl: &str,
    ranges: u64,
    key_space: u64,
) -> Result<(), String> {
    c.batch_execute(&format!("DROP TABLE IF EXISTS {table}; {ddl}"))
        .await
        .map_err(|e| format!("creating {table}: {e}"))?;
    let ranges = ranges.max(1);
    let points: Vec<String> = (1..ranges)
        .map(|i| format!("({})", i * key_space / ranges))
        .collect();
    if !points.is_empty() {
        c.batch_execute(&format!(
            "ALTER TABLE {table} SPLIT AT VALUES {}",
            points.join(",")
        ))
        .await
        .map_err(|e| format!("splitting {table}: {e}"))?;
    }
    Ok(())
}

/// The SQLSTATE of an error, or what kind of failure it was when it has none.
pub fn sqlstate(e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(c) => c.code().to_string(),
        None if e.is_closed() => "connection closed".into(),
        None => "connection error".into(),
    }
}

/// Whether the transaction should be run again: a serialization failure or a
/// deadlock.
pub fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code().map(|c| c.code()), Some("40001" | "40P01"))
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Latencies of one kind of operation: since the start, and since the last progress
/// line.
struct OpStats {
    total: Histogram<u64>,
    interval: Histogram<u64>,
}

/// What the workers record, shared.
pub struct Stats {
    ops: Mutex<BTreeMap<&'static str, OpStats>>,
    errors: Mutex<BTreeMap<String, u64>>,
    interval_errors: AtomicU64,
    retries: AtomicU64,
    stop: AtomicBool,
}

impl Stats {
    fn new() -> Arc<Stats> {
        Arc::new(Stats {
            ops: Mutex::new(BTreeMap::new()),
            errors: Mutex::new(BTreeMap::new()),
            interval_errors: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// Records a successful operation of kind `op` that took `took`.
    pub fn record(&self, op: &'static str, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let mut ops = self.ops.lock();
        let s = ops.entry(op).or_insert_with(|| OpStats {
            total: histogram(),
            interval: histogram(),
        });
        s.total.saturating_record(us);
        s.interval.saturating_record(us);
    }

    pub fn error(&self, code: String) {
        *self.errors.lock().entry(code).or_default() += 1;
        self.interval_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// The last interval, per operation, and resets it. Returns the rows and the
    /// errors of the interval.
    fn interval(&self, elapsed: Duration, interval: Duration) -> (Vec<IntervalRow>, u64) {
        let mut ops = self.ops.lock();
        let mut rows = Vec::new();
        for (name, s) in ops.iter_mut() {
            rows.push(IntervalRow {
                seconds: elapsed.as_secs_f64(),
                op: name,
                ops_per_sec: s.interval.len() as f64 / interval.as_secs_f64(),
                p50_ms: ms(s.interval.value_at_quantile(0.5)),
                p99_ms: ms(s.interval.value_at_quantile(0.99)),
            });
            s.interval.reset();
        }
        (rows, self.interval_errors.swap(0, Ordering::Relaxed))
    }

    fn summary(&self, workload: &str, elapsed: Duration) -> Summary {
        let secs = elapsed.as_secs_f64();
        let ops = self.ops.lock();
        let per_op = ops
            .iter()
            .map(|(name, s)| OpSummary {
                op: (*name).to_string(),
                ops: s.total.len(),
                ops_per_sec: s.total.len() as f64 / secs,
                p50_ms: ms(s.total.value_at_quantile(0.50)),
                p95_ms: ms(s.total.value_at_quantile(0.95)),
                p99_ms: ms(s.total.value_at_quantile(0.99)),
                max_ms: ms(s.total.max()),
            })
            .collect();
        Summary {
            workload: workload.into(),
            seconds: secs,
            ops: per_op,
            errors: self.errors.lock().clone(),
            retries: self.retries.load(Ordering::Relaxed),
        }
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One operation's second: a progress line's part, a row of `--timeseries`.
struct IntervalRow {
    seconds: f64,
    op: &'static str,
    ops_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
}

fn progress_line(rows: &[IntervalRow], errors: u64) -> String {
    let parts: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {:>7.0}/s p50 {:>6.2} p99 {:>7.2} ms",
                r.op, r.ops_per_sec, r.p50_ms, r.p99_ms
            )
        })
        .collect();
    let at = rows.first().map_or(0.0, |r| r.seconds);
    format!("{at:>6.1}s  {}  errors {errors}", parts.join("  "))
}

#[derive(Serialize, Debug)]
pub struct OpSummary {
    pub op: String,
    pub ops: u64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// What a run did, printed at its end.
#[derive(Serialize, Debug)]
pub struct Summary {
    pub workload: String,
    pub seconds: f64,
    pub ops: Vec<OpSummary>,
    /// Failed operations by SQLSTATE (after retries ran out, for the bank).
    pub errors: BTreeMap<String, u64>,
    /// Transactions run again after a serialization failure or deadlock.
    pub retries: u64,
}

impl Summary {
    fn print(&self, json: bool) {
        if json {
            println!(
                "{}",
                serde_json::to_string(self).expect("a summary serializes")
            );
            return;
        }
        println!("\n{} for {:.1}s", self.workload, self.seconds);
        println!(
            "{:<10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9}",
            "op", "ops", "ops/s", "p50(ms)", "p95(ms)", "p99(ms)", "max(ms)"
        );
        for o in &self.ops {
            println!(
                "{:<10} {:>10} {:>10.1} {:>9.2} {:>9.2} {:>9.2} {:>9.2}",
                o.op, o.ops, o.ops_per_sec, o.p50_ms, o.p95_ms, o.p99_ms, o.max_ms
            );
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(code, n)| format!("{code}: {n}"))
            .collect();
        println!(
            "errors: {}  retries: {}",
            if errors.is_empty() {
                "none".to_string()
            } else {
                errors.join(", ")
            },
            self.retries
        );
    }
}

/// Paces one worker at `rate` operations per second (0: no pacing).
pub struct Pacer {
    period: Option<Duration>,
    next: Instant,
}

impl Pacer {
    fn new(total_rate: f64, workers: usize) -> Pacer {
        let per_worker = total_rate / workers.max(1) as f64;
        Pacer {
            period: (per_worker > 0.0).then(|| Duration::from_secs_f64(1.0 / per_worker)),
            next: Instant::now(),
        }
    }

    pub async fn wait(&mut self) {
        if let Some(p) = self.period {
            self.next += p;
            tokio::time::sleep_until(self.next).await;
        }
    }
}

/// Runs `concurrency` workers, each made by `worker(id, stats, pacer)`, until the
/// duration passes or Ctrl-C, printing a line a second (unless `json`). Returns the
/// stats and how long the run took.
pub async fn drive<F, Fut>(
    common: &Common,
    workload: &str,
    worker: F,
) -> Result<(Summary, Arc<Stats>), String>
where
    F: Fn(usize, Arc<Stats>, Pacer) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut series = match &common.timeseries {
        Some(path) => {
            let mut f = std::fs::File::create(path)
                .map_err(|e| format!("creating {}: {e}", path.display()))?;
            writeln!(f, "seconds,op,ops_per_sec,p50_ms,p99_ms,errors")
                .map_err(|e| format!("writing {}: {e}", path.display()))?;
            Some(f)
        }
        None => None,
    };
    let stats = Stats::new();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..common.concurrency {
        let pacer = Pacer::new(common.max_rate, common.concurrency);
        tasks.push(tokio::spawn(worker(id, stats.clone(), pacer)));
    }
    let deadline =
        (common.duration > 0.0).then(|| start + Duration::from_secs_f64(common.duration));
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last = start;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut failed = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = Instant::now();
                let (rows, errors) = stats.interval(now - start, now - last);
                last = now;
                if !common.json {
                    println!("{}", progress_line(&rows, errors));
                }
                if let Some(f) = &mut series {
                    let written = rows.iter().try_for_each(|r| {
                        writeln!(f, "{:.1},{},{:.1},{:.3},{:.3},{errors}", r.seconds, r.op, r.ops_per_sec, r.p50_ms, r.p99_ms)
                    });
                    if let Err(e) = written {
                        failed = Some(format!("writing the time series: {e}"));
                        break;
                    }
                }
                if deadline.is_some_and(|d| now >= d) {
                    break;
                }
            }
            _ = &mut ctrl_c => break,
        }
    }
    stats.stop.store(true, Ordering::Relaxed);
    let elapsed = start.elapsed();
    // The workers stop before any error is returned.
    for t in tasks {
        let _ = t.await;
    }
    if let Some(e) = failed {
        return Err(e);
    }
    Ok((stats.summary(workload, elapsed), stats))
}
