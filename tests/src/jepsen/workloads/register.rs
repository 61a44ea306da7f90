//! Register: single-row reads and writes, checked for linearizability row by row
//! (`crate::linearizability`). Clients move to a fresh row every `OPS_PER_KEY`
//! operations, which keeps each row's history small enough to search.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use serde::Serialize;

use super::push_capped;
use super::{Event, History, Outcome, Rng, RunClock, Session, SqlError, Verdict, Workload};
use crate::linearizability::{Op, OpKind, check_register};

const OPS_PER_KEY: u64 = 100;

#[derive(Clone, Debug, Serialize)]
struct Value {
    key: u64,
    /// Written, or read (`None`: no row).
    value: Option<u64>,
}

pub struct Register {
    history: History<Value>,
    /// The row clients use now, and how many operations it has had.
    key: AtomicU64,
    ops_on_key: AtomicU64,
    next_value: AtomicU64,
}

impl Register {
    pub fn new(clock: RunClock) -> Register {
        Register {
            history: History::new(clock),
            key: AtomicU64::new(0),
            ops_on_key: AtomicU64::new(0),
            next_value: AtomicU64::new(1),
        }
    }
}

/// Checks each row's operations for linearizability; returns the anomalies and the
/// number of rows.
fn check_history(events: &[Event<Value>]) -> (Vec<String>, usize) {
    let mut by_key: BTreeMap<u64, Vec<Op>> = BTreeMap::new();
    for e in events {
        let op = match (e.f, &e.outcome) {
            ("write", Outcome::Ok) => Op {
                call: e.call,
                ret: Some(e.ret),
                kind: OpKind::Write(e.value.value.unwrap_or_default()),
            },
            // It may take effect at any time after its call, or never.
            ("write", Outcome::Info) => Op {
                call: e.call,
                ret: None,
                kind: OpKind::Write(e.value.value.unwrap_or_default()),
            },
            ("read", Outcome::Ok) => Op {
                call: e.call,
                ret: Some(e.ret),
                kind: OpKind::Read(e.value.value),
            },
            _ => continue,
        };
        by_key.entry(e.value.key).or_default().push(op);
    }
    let mut anomalies = Vec::new();
    for (key, ops) in &by_key {
        if let Err(why) = check_register(ops, None) {
            push_capped(
                &mut anomalies,
                format!("row {key} is not linearizable: {why}"),
            );
        }
    }
    (anomalies, by_key.len())
}

#[async_trait]
impl Workload for Register {
    fn name(&self) -> &'static str {
        "register"
    }

    fn split_tables(&self) -> Vec<String> {
        vec!["jp_register".into()]
    }

    async fn setup(&self, s: &mut Session) -> Result<(), SqlError> {
        s.simple("CREATE TABLE jp_register (id INT8 PRIMARY KEY, val INT8)")
            .await
            .map(|_| ())
    }

    async fn step(&self, process: usize, sessions: &mut [Session], rng: &mut Rng) {
        let s = &mut sessions[0];
        let key = self.key.load(Ordering::SeqCst);
        let call = self.history.now();
        if rng.below(2) == 0 {
            let r = s
                .int(&format!("SELECT val FROM jp_register WHERE id = {key}"))
                .await;
            let (outcome, error) = Session::outcome(&r);
            let value = r.ok().flatten().map(|v| v as u64);
            self.history
                .record(process, "read", call, outcome, Value { key, value }, error);
        } else {
            let v = self.next_value.fetch_add(1, Ordering::SeqCst);
            let r = s
                .simple(&format!("UPSERT INTO jp_register VALUES ({key}, {v})"))
                .await;
            let (outcome, error) = Session::outcome(&r);
            let value = Some(v);
            self.history
                .record(process, "write", call, outcome, Value { key, value }, error);
        }
        if self.ops_on_key.fetch_add(1, Ordering::SeqCst) + 1 >= OPS_PER_KEY
            && self
                .key
                .compare_exchange(key, key + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.ops_on_key.store(0, Ordering::SeqCst);
        }
    }

    async fn check(&self, _s: &mut Session) -> Verdict {
        let (anomalies, rows) = check_history(&self.history.events());
        let reads = self.history.count("read", Outcome::Ok);
        let writes = self.history.count("write", Outcome::Ok);
        Verdict::new(
            self.name(),
            format!(
                "{}, {}, {} rows",
                self.history.tally("write"),
                self.history.tally("read"),
                rows
            ),
            anomalies,
            reads > 0 && writes > 0,
        )
    }

    fn history(&self) -> Vec<serde_json::Value> {
        self.history.json()
    }
}

#[cfg(test)]
mod tests {
    use super::super::event;
    use super::*;

    fn op(
        f: &'static str,
        call: u64,
        ret: u64,
        outcome: Outcome,
        key: u64,
        v: Option<u64>,
    ) -> Event<Value> {
        event(f, call, ret, outcome, Value { key, value: v })
    }

    #[test]
    fn a_stale_read_is_found_and_an_unknown_write_may_land_late() {
        let fine = [
            op("write", 0, 10, Outcome::Ok, 1, Some(1)),
            op("write", 20, 30, Outcome::Info, 1, Some(2)),
            op("read", 40, 50, Outcome::Ok, 1, Some(1)),
            op("read", 60, 70, Outcome::Ok, 1, Some(2)),
            // A failed write never happened; another row is checked on its own.
            op("write", 80, 90, Outcome::Fail, 1, Some(3)),
            op("read", 100, 110, Outcome::Ok, 2, None),
        ];
        assert_eq!(check_history(&fine), (Vec::new(), 2));

        let stale = [
            op("write", 0, 10, Outcome::Ok, 1, Some(1)),
            op("write", 20, 30, Outcome::Ok, 1, Some(2)),
            op("read", 40, 50, Outcome::Ok, 1, Some(1)),
        ];
        let (anomalies, _) = check_history(&stale);
        assert_eq!(anomalies.len(), 1, "{anomalies:?}");
        assert!(anomalies[0].starts_with("row 1 "), "{anomalies:?}");
    }
}
