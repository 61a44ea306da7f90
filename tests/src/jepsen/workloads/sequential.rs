//! Sequential: a writer inserts a key into `jp_seq_0`, then `jp_seq_1`, ... each insert
//! its own transaction, starting only after the previous one returned. A reader reads
//! the key from the last table back to the first, each read its own transaction,
//! starting after the previous returned. Seeing the key in a later table but not in an
//! earlier one means a read missed a write that had finished before it began: a stale
//! read across ranges (under clock skew, the uncertainty interval's job).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::Serialize;

use super::push_capped;
use super::{Event, History, Outcome, Rng, RunClock, Session, SqlError, Verdict, Workload};

const TABLES: usize = 4;
/// Readers pick among the most recent keys writers started.
const RECENT: usize = 16;

#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
enum Value {
    /// The key, and how many tables the writer inserted it into.
    Write { key: u64, written: usize },
    /// The key, and whether each table (from the last back to the first) had it.
    Read { key: u64, seen: Vec<bool> },
}

pub struct Sequential {
    history: History<Value>,
    next_key: AtomicU64,
    recent: Mutex<VecDeque<u64>>,
}

impl Sequential {
    pub fn new(clock: RunClock) -> Sequential {
        Sequential {
            history: History::new(clock),
            next_key: AtomicU64::new(0),
            recent: Mutex::new(VecDeque::new()),
        }
    }
}

/// Checks every read; returns the anomalies and how many reads saw the key at all.
fn check_history(events: &[Event<Value>]) -> (Vec<String>, usize) {
    let mut anomalies = Vec::new();
    let mut informative = 0;
    for e in events {
        let (Outcome::Ok, Value::Read { key, seen }) = (&e.outcome, &e.value) else {
            continue;
        };
        // seen[i] is table TABLES-1-i: read first, written last.
        if let Some(first) = seen.iter().position(|s| *s) {
            informative += 1;
            if let Some(missing) = seen[first..].iter().position(|s| !*s) {
                push_capped(
                    &mut anomalies,
                    format!(
                        "read called at {}us saw key {key} in jp_seq_{} but not in jp_seq_{}, written before it",
                        e.call,
                        TABLES - 1 - first,
                        TABLES - 1 - first - missing
                    ),
                );
            }
        }
    }
    (anomalies, informative)
}

#[async_trait]
impl Workload for Sequential {
    fn name(&self) -> &'static str {
        "sequential"
    }

    fn split_tables(&self) -> Vec<String> {
        (0..TABLES).map(|t| format!("jp_seq_{t}")).collect()
    }

    async fn setup(&self, s: &mut Session) -> Result<(), SqlError> {
        for t in 0..TABLES {
            s.simple(&format!("CREATE TABLE jp_seq_{t} (k INT8 PRIMARY KEY)"))
                .await?;
        }
        Ok(())
    }

    async fn step(&self, process: usize, sessions: &mut [Session], rng: &mut Rng) {
        let s = &mut sessions[0];
        let call = self.history.now();
        let recent: Vec<u64> = self.recent.lock().iter().copied().collect();
        if rng.below(2) == 0 || recent.is_empty() {
            let key = self.next_key.fetch_add(1, Ordering::SeqCst);
            {
                let mut r = self.recent.lock();
                r.push_back(key);
                if r.len() > RECENT {
                    r.pop_front();
                }
            }
            let mut written = 0;
            let mut last = (Outcome::Ok, String::new());
            for t in 0..TABLES {
                let r = s
                    .simple(&format!("INSERT INTO jp_seq_{t} VALUES ({key})"))
                    .await;
                last = Session::outcome(&r);
                if r.is_err() {
                    break;
                }
                written += 1;
            }
            self.history.record(
                process,
                "write",
                call,
                last.0,
                Value::Write { key, written },
                last.1,
            );
        } else {
            let key = recent[rng.below(recent.len() as u64) as usize];
            let mut seen = Vec::new();
            let mut error = String::new();
            for t in (0..TABLES).rev() {
                match s
                    .int(&format!("SELECT count(*) FROM jp_seq_{t} WHERE k = {key}"))
                    .await
                {
                    Ok(n) => seen.push(n.unwrap_or(0) > 0),
                    Err(e) => {
                        error = e.message;
                        break;
                    }
                }
            }
            let outcome = if error.is_empty() {
                Outcome::Ok
            } else {
                Outcome::Fail
            };
            self.history.record(
                process,
                "read",
                call,
                outcome,
                Value::Read { key, seen },
                error,
            );
        }
    }

    async fn check(&self, _s: &mut Session) -> Verdict {
        let (anomalies, informative) = check_history(&self.history.events());
        Verdict::new(
            self.name(),
            format!(
                "{}, {}, {informative} reads saw the key",
                self.history.tally("write"),
                self.history.tally("read")
            ),
            anomalies,
            informative > 0,
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

    fn read(seen: &[bool]) -> Event<Value> {
        let seen = seen.to_vec();
        event("read", 0, 1, Outcome::Ok, Value::Read { key: 7, seen })
    }

    #[test]
    fn a_later_table_seen_without_an_earlier_one_is_an_anomaly() {
        let fine = [
            read(&[false, false, false, false]),
            read(&[false, true, true, true]),
            read(&[true, true, true, true]),
        ];
        assert_eq!(check_history(&fine), (Vec::new(), 2));
        let (anomalies, _) = check_history(&[read(&[false, true, false, true])]);
        assert_eq!(anomalies.len(), 1);
        assert!(
            anomalies[0].contains("in jp_seq_2 but not in jp_seq_1"),
            "{anomalies:?}"
        );
    }
}
