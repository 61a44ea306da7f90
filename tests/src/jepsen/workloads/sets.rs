//! Sets: unique values inserted into a table without a primary key (so a duplicate is
//! possible, and visible), and read whole now and then. Every acknowledged insert must
//! be in the final read, once; nothing refused or never inserted may be there; and a
//! value once read must be in every read that starts after that.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use serde::Serialize;

use super::{Event, History, Outcome, Rng, RunClock, Session, SqlError, Verdict, Workload};
use super::{ints, push_capped, read_until_ok};

const READ_ALL: &str = "SELECT val FROM jp_set";

#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
enum Value {
    Add(i64),
    Read(Option<Vec<i64>>),
}

pub struct Sets {
    history: History<Value>,
    next: AtomicI64,
}

impl Sets {
    pub fn new(clock: RunClock) -> Sets {
        Sets {
            history: History::new(clock),
            next: AtomicI64::new(0),
        }
    }
}

/// Checks the inserts and reads against the final read, `(call, ret, values)`.
fn check_history(events: &[Event<Value>], last: (u64, u64, Vec<i64>)) -> Vec<String> {
    let mut adds: HashMap<i64, Outcome> = HashMap::new();
    let mut reads: Vec<(u64, u64, Vec<i64>)> = Vec::new();
    for e in events {
        match (&e.value, &e.outcome) {
            (Value::Add(v), o) => {
                adds.insert(*v, o.clone());
            }
            (Value::Read(Some(vals)), Outcome::Ok) => reads.push((e.call, e.ret, vals.clone())),
            _ => {}
        }
    }
    let final_vals = last.2.clone();
    reads.push(last);
    let mut anomalies = Vec::new();
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for v in &final_vals {
        *counts.entry(*v).or_default() += 1;
    }
    let mut lost = BTreeSet::new();
    for (v, o) in &adds {
        match (o, counts.get(v)) {
            (Outcome::Ok, None) => {
                lost.insert(*v);
            }
            (Outcome::Fail, Some(_)) => push_capped(
                &mut anomalies,
                format!("{v} was refused but is in the final read"),
            ),
            _ => {}
        }
    }
    if !lost.is_empty() {
        anomalies.push(format!(
            "lost {} acknowledged inserts: {lost:?}",
            lost.len()
        ));
    }
    for (v, n) in &counts {
        if *n > 1 {
            push_capped(
                &mut anomalies,
                format!("{v} is in the final read {n} times"),
            );
        }
        if !adds.contains_key(v) {
            push_capped(
                &mut anomalies,
                format!("{v} was never inserted but was read"),
            );
        }
    }
    // Once seen by a read, a value is in every read that starts after that one ended.
    let mut first_seen: HashMap<i64, u64> = HashMap::new();
    for (_, ret, vals) in &reads {
        for v in vals {
            let t = first_seen.entry(*v).or_insert(*ret);
            *t = (*t).min(*ret);
        }
    }
    for (call, _, vals) in &reads {
        let have: HashSet<i64> = vals.iter().copied().collect();
        for (v, seen) in &first_seen {
            if seen < call && !have.contains(v) {
                push_capped(
                    &mut anomalies,
                    format!("{v}, read by {seen}us, is missing from a read called at {call}us"),
                );
            }
        }
    }
    anomalies
}

#[async_trait]
impl Workload for Sets {
    fn name(&self) -> &'static str {
        "sets"
    }

    fn split_tables(&self) -> Vec<String> {
        Vec::new()
    }

    async fn setup(&self, s: &mut Session) -> Result<(), SqlError> {
        s.simple("CREATE TABLE jp_set (val INT8 NOT NULL)")
            .await
            .map(|_| ())
    }

    async fn step(&self, process: usize, sessions: &mut [Session], rng: &mut Rng) {
        let s = &mut sessions[0];
        let call = self.history.now();
        if rng.below(20) == 0 {
            let r = s.simple(READ_ALL).await;
            let (outcome, error) = Session::outcome(&r);
            let value = Value::Read(r.ok().map(|rows| ints(&rows)));
            self.history
                .record(process, "read", call, outcome, value, error);
        } else {
            let v = self.next.fetch_add(1, Ordering::SeqCst);
            let r = s.simple(&format!("INSERT INTO jp_set VALUES ({v})")).await;
            let (outcome, error) = Session::outcome(&r);
            self.history
                .record(process, "add", call, outcome, Value::Add(v), error);
        }
    }

    async fn check(&self, s: &mut Session) -> Verdict {
        let call = self.history.now();
        let last = read_until_ok(s, READ_ALL).await;
        let ret = self.history.now();
        let events = self.history.events();
        let (mut anomalies, final_vals) = match last {
            Ok(rows) => (Vec::new(), ints(&rows)),
            Err(e) => (vec![format!("the final read failed: {e}")], Vec::new()),
        };
        anomalies.extend(check_history(&events, (call, ret, final_vals.clone())));
        let ok_reads = events
            .iter()
            .filter(|e| e.f == "read" && e.outcome == Outcome::Ok)
            .count();
        Verdict::new(
            self.name(),
            format!(
                "{}, {ok_reads} reads ok, final read {} values",
                self.history.tally("add"),
                final_vals.len()
            ),
            anomalies,
            self.history.count("add", Outcome::Ok) > 0,
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

    fn add(v: i64, outcome: Outcome) -> Event<Value> {
        event("add", 0, 1, outcome, Value::Add(v))
    }

    fn read(call: u64, ret: u64, vals: &[i64]) -> Event<Value> {
        event(
            "read",
            call,
            ret,
            Outcome::Ok,
            Value::Read(Some(vals.to_vec())),
        )
    }

    #[test]
    fn lost_duplicated_revived_unexpected_and_vanished_values_are_found() {
        let events = [
            add(1, Outcome::Ok),
            add(2, Outcome::Info),
            add(3, Outcome::Fail),
            add(4, Outcome::Info),
            read(10, 20, &[1]),
        ];
        // An unknown insert may be there or not; a refused one may not.
        assert!(check_history(&events, (30, 40, vec![1, 2])).is_empty());

        let found = check_history(&events, (30, 40, vec![2, 2, 3, 9]));
        let all = found.join("\n");
        for expected in [
            "lost 1 acknowledged inserts: {1}",
            "3 was refused",
            "2 is in the final read 2 times",
            "9 was never inserted",
            "1, read by 20us, is missing from a read called at 30us",
        ] {
            assert!(all.contains(expected), "{expected} not in {all}");
        }
    }
}
