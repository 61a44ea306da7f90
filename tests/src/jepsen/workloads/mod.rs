//! The workloads, each with its checker.

mod append;
mod bank;
mod g2;
mod monotonic;
mod register;
mod sequential;
mod sets;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Serialize;

use super::session::{Outcome, Rows, Session, SqlError};
use super::{RunClock, Verdict};
use crate::Rng;

/// A workload: its tables, one client step, and the check of what the clients saw.
#[async_trait]
pub trait Workload: Send + Sync {
    fn name(&self) -> &'static str;

    /// Connections each client needs (a step may run several transactions at once).
    fn sessions_per_client(&self) -> usize {
        1
    }

    /// Tables whose primary key starts with an integer, for the split nemesis.
    fn split_tables(&self) -> Vec<String>;

    /// Creates the tables and their first rows.
    async fn setup(&self, s: &mut Session) -> Result<(), SqlError>;

    /// One operation by client `process`, recorded in the history.
    async fn step(&self, process: usize, sessions: &mut [Session], rng: &mut Rng);

    /// With the cluster healed: a final read, and the check of the whole history.
    async fn check(&self, s: &mut Session) -> Verdict;

    /// The history, as JSON values (one per operation).
    fn history(&self) -> Vec<serde_json::Value>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkloadKind {
    /// Transfers between accounts in one table; reads must always see the same total.
    Bank,
    /// The same, with each account in a table (and so a range) of its own.
    BankMultitable,
    /// Reads and writes of single rows: each row must be a linearizable register.
    Register,
    /// Unique inserts into a table without a key: none lost, duplicated or revived.
    Sets,
    /// A key written to four tables in turn; a reader going backwards must never see a
    /// later table's row without the earlier ones.
    Sequential,
    /// A counter incremented and read: values never go backwards in real time, and no
    /// increment is lost or applied twice.
    Monotonic,
    /// Two transactions each insert under a predicate the other's insert breaks: at most
    /// one may commit (G2, anti-dependency cycles).
    G2,
    /// Transactions append to and read lists; the history is checked for every cycle
    /// serializability forbids.
    ListAppend,
}

impl WorkloadKind {
    pub const ALL: [WorkloadKind; 8] = [
        WorkloadKind::Bank,
        WorkloadKind::BankMultitable,
        WorkloadKind::Register,
        WorkloadKind::Sets,
        WorkloadKind::Sequential,
        WorkloadKind::Monotonic,
        WorkloadKind::G2,
        WorkloadKind::ListAppend,
    ];

    pub fn name(&self) -> &'static str {
        match self {
            WorkloadKind::Bank => "bank",
            WorkloadKind::BankMultitable => "bank-multitable",
            WorkloadKind::Register => "register",
            WorkloadKind::Sets => "sets",
            WorkloadKind::Sequential => "sequential",
            WorkloadKind::Monotonic => "monotonic",
            WorkloadKind::G2 => "g2",
            WorkloadKind::ListAppend => "list-append",
        }
    }

    pub fn parse(name: &str) -> Option<WorkloadKind> {
        WorkloadKind::ALL.into_iter().find(|w| w.name() == name)
    }

    pub fn build(&self, clock: RunClock) -> std::sync::Arc<dyn Workload> {
        use std::sync::Arc;
        match self {
            WorkloadKind::Bank => Arc::new(bank::Bank::new(clock, false)),
            WorkloadKind::BankMultitable => Arc::new(bank::Bank::new(clock, true)),
            WorkloadKind::Register => Arc::new(register::Register::new(clock)),
            WorkloadKind::Sets => Arc::new(sets::Sets::new(clock)),
            WorkloadKind::Sequential => Arc::new(sequential::Sequential::new(clock)),
            WorkloadKind::Monotonic => Arc::new(monotonic::Monotonic::new(clock)),
            WorkloadKind::G2 => Arc::new(g2::G2::new(clock)),
            WorkloadKind::ListAppend => Arc::new(append::ListAppend::new(clock)),
        }
    }
}

/// One operation of a history.
#[derive(Clone, Debug, Serialize)]
pub struct Event<V> {
    pub process: usize,
    pub f: &'static str,
    /// Microseconds since the run started.
    pub call: u64,
    pub ret: u64,
    pub outcome: Outcome,
    pub value: V,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A workload's history.
pub struct History<V> {
    clock: RunClock,
    events: Mutex<Vec<Event<V>>>,
}

impl<V: Clone + Serialize> History<V> {
    pub fn new(clock: RunClock) -> History<V> {
        History {
            clock,
            events: Mutex::new(Vec::new()),
        }
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Records an operation called at `call` that has just returned.
    pub fn record(
        &self,
        process: usize,
        f: &'static str,
        call: u64,
        outcome: Outcome,
        value: V,
        error: String,
    ) {
        let ret = self.now();
        self.events.lock().push(Event {
            process,
            f,
            call,
            ret,
            outcome,
            value,
            error,
        });
    }

    pub fn events(&self) -> Vec<Event<V>> {
        self.events.lock().clone()
    }

    pub fn json(&self) -> Vec<serde_json::Value> {
        self.events
            .lock()
            .iter()
            .map(|e| serde_json::to_value(e).unwrap_or_default())
            .collect()
    }

    /// How many operations named `f` ended with `outcome`.
    pub fn count(&self, f: &str, outcome: Outcome) -> usize {
        self.events
            .lock()
            .iter()
            .filter(|e| e.f == f && e.outcome == outcome)
            .count()
    }

    /// "f: ok/fail/info" for the summary.
    pub fn tally(&self, f: &str) -> String {
        format!(
            "{f} {}/{}/{}",
            self.count(f, Outcome::Ok),
            self.count(f, Outcome::Fail),
            self.count(f, Outcome::Info)
        )
    }
}

/// Runs `sql` until it succeeds (for the final reads, while the healed cluster
/// settles), for up to a minute.
pub async fn read_until_ok(s: &mut Session, sql: &str) -> Result<Rows, SqlError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match s.simple(sql).await {
            Ok(rows) => return Ok(rows),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// The integers in the first column of `rows`.
pub fn ints(rows: &Rows) -> Vec<i64> {
    rows.iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// Keeps the first `n` anomalies (a broken run can find thousands).
pub fn push_capped(out: &mut Vec<String>, anomaly: String) {
    const CAP: usize = 50;
    if out.len() < CAP {
        out.push(anomaly);
    }
}

/// An operation for checker tests.
#[cfg(test)]
pub fn event<V>(f: &'static str, call: u64, ret: u64, outcome: Outcome, value: V) -> Event<V> {
    Event {
        process: 0,
        f,
        call,
        ret,
        outcome,
        value,
        error: String::new(),
    }
}
