//! List-append: transactions of one to four steps, each a read of a list or an append of
//! a unique value to one (an upsert that concatenates). The history goes to the cycle
//! checker (`crate::list_append`), which finds every anomaly serializability forbids.
//! Transactions use a window of six keys that moves on every 100 transactions, so no
//! list grows long.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Serialize;

use super::{History, Outcome, Rng, RunClock, Session, SqlError, Verdict, Workload};
use crate::list_append::{self, MicroOp};

const KEYS: u64 = 6;
const TXNS_PER_WINDOW: u64 = 100;

#[derive(Clone, Debug, Serialize)]
struct Value {
    /// `[["r", key, [values]] | ["append", key, value]]`, Jepsen's notation.
    ops: Vec<serde_json::Value>,
}

pub struct ListAppend {
    history: History<Value>,
    txns: Mutex<Vec<list_append::Txn>>,
    started: AtomicU64,
    next_value: AtomicU64,
}

impl ListAppend {
    pub fn new(clock: RunClock) -> ListAppend {
        ListAppend {
            history: History::new(clock),
            txns: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
            next_value: AtomicU64::new(1),
        }
    }
}

fn parse_list(text: Option<String>) -> Vec<u64> {
    text.unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// Runs `ops` after `BEGIN`, filling in what the reads returned.
async fn run_ops(s: &mut Session, ops: &mut [MicroOp]) -> Result<(), SqlError> {
    s.simple("BEGIN").await?;
    for op in ops.iter_mut() {
        match op {
            MicroOp::Read { key, list } => {
                let rows = s
                    .simple(&format!("SELECT vals FROM jp_append WHERE k = {key}"))
                    .await?;
                *list = Some(parse_list(
                    rows.into_iter()
                        .next()
                        .and_then(|r| r.into_iter().next().flatten()),
                ));
            }
            MicroOp::Append { key, value } => {
                s.simple(&format!(
                    "INSERT INTO jp_append VALUES ({key}, '{value}') \
                     ON CONFLICT (k) DO UPDATE SET vals = jp_append.vals || ',' || excluded.vals"
                ))
                .await?;
            }
        }
    }
    Ok(())
}

fn notation(ops: &[MicroOp]) -> Vec<serde_json::Value> {
    ops.iter()
        .map(|op| match op {
            MicroOp::Read { key, list } => serde_json::json!(["r", key, list]),
            MicroOp::Append { key, value } => serde_json::json!(["append", key, value]),
        })
        .collect()
}

#[async_trait]
impl Workload for ListAppend {
    fn name(&self) -> &'static str {
        "list-append"
    }

    fn split_tables(&self) -> Vec<String> {
        vec!["jp_append".into()]
    }

    async fn setup(&self, s: &mut Session) -> Result<(), SqlError> {
        s.simple("CREATE TABLE jp_append (k INT8 PRIMARY KEY, vals STRING NOT NULL)")
            .await
            .map(|_| ())
    }

    async fn step(&self, process: usize, sessions: &mut [Session], rng: &mut Rng) {
        let s = &mut sessions[0];
        let n = self.started.fetch_add(1, Ordering::SeqCst);
        let base = n / TXNS_PER_WINDOW;
        let mut ops: Vec<MicroOp> = (0..1 + rng.below(4))
            .map(|_| {
                let key = base + rng.below(KEYS);
                if rng.below(2) == 0 {
                    MicroOp::Read { key, list: None }
                } else {
                    MicroOp::append(key, self.next_value.fetch_add(1, Ordering::SeqCst))
                }
            })
            .collect();
        let call = self.history.now();
        let body = run_ops(s, &mut ops).await;
        let (outcome, _, error) = s.finish(body).await;
        let ret = self.history.now();
        let txn_outcome = match outcome {
            Outcome::Ok => list_append::Outcome::Committed,
            Outcome::Fail => list_append::Outcome::Aborted,
            Outcome::Info => list_append::Outcome::Unknown,
        };
        let value = Value {
            ops: notation(&ops),
        };
        {
            let mut txns = self.txns.lock();
            let id = txns.len();
            txns.push(list_append::Txn {
                id,
                ops,
                outcome: txn_outcome,
                call,
                ret: (outcome != Outcome::Info).then_some(ret),
            });
        }
        self.history
            .record(process, "txn", call, outcome, value, error);
    }

    async fn check(&self, _s: &mut Session) -> Verdict {
        let txns = self.txns.lock().clone();
        let report = list_append::check(&txns);
        let mut anomalies: Vec<String> = report
            .anomalies
            .iter()
            .take(20)
            .map(|a| a.to_string())
            .collect();
        anomalies.extend(report.malformed.iter().take(20).map(|m| m.to_string()));
        Verdict::new(
            self.name(),
            format!(
                "{}; {} realtime-only cycles",
                report.stats,
                report.realtime.len()
            ),
            anomalies,
            report.stats.committed > 0,
        )
    }

    fn history(&self) -> Vec<serde_json::Value> {
        self.history.json()
    }
}
