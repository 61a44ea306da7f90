//! Monotonic: one counter row, incremented (`UPDATE ... RETURNING`) and read. No two
//! increments may return the same value; an operation that starts after another ended
//! sees at least its value (an increment, more); and the final value lies between the
//! acknowledged increments and those plus the unknown ones.

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Event, History, Outcome, Rng, RunClock, Session, SqlError, Verdict, Workload};
use super::{push_capped, read_until_ok};

const READ: &str = "SELECT val FROM jp_mono WHERE id = 0";

pub struct Monotonic {
    /// The value an increment returned or a read saw.
    history: History<Option<i64>>,
}

impl Monotonic {
    pub fn new(clock: RunClock) -> Monotonic {
        Monotonic {
            history: History::new(clock),
        }
    }
}

/// Checks the increments and reads, and the final value if it was read.
fn check_history(events: &[Event<Option<i64>>], last: Option<i64>) -> Vec<String> {
    let mut anomalies = Vec::new();
    let ok: Vec<_> = events
        .iter()
        .filter(|e| e.outcome == Outcome::Ok && e.value.is_some())
        .collect();
    let count =
        |f: &str, o: Outcome| events.iter().filter(|e| e.f == f && e.outcome == o).count() as i64;
    let (incs, unknown) = (count("inc", Outcome::Ok), count("inc", Outcome::Info));

    let mut returned: HashMap<i64, u64> = HashMap::new();
    for e in ok.iter().filter(|e| e.f == "inc") {
        let v = e.value.unwrap_or_default();
        if let Some(other) = returned.insert(v, e.call) {
            push_capped(
                &mut anomalies,
                format!(
                    "increments called at {other}us and {}us both returned {v}",
                    e.call
                ),
            );
        }
    }
    // Real time: sweep the operations by call, knowing the largest value among those
    // that returned before.
    let mut by_ret = ok.clone();
    by_ret.sort_by_key(|e| e.ret);
    let mut by_call = ok;
    by_call.sort_by_key(|e| e.call);
    let (mut next, mut max, mut max_at) = (0, i64::MIN, 0);
    for e in by_call {
        while next < by_ret.len() && by_ret[next].ret < e.call {
            let v = by_ret[next].value.unwrap_or_default();
            if v > max {
                (max, max_at) = (v, by_ret[next].ret);
            }
            next += 1;
        }
        let v = e.value.unwrap_or_default();
        if v < max || (e.f == "inc" && v == max) {
            push_capped(
                &mut anomalies,
                format!(
                    "{} called at {}us got {v}, but {max} was returned at {max_at}us",
                    e.f, e.call
                ),
            );
        }
    }
    if let Some(last) = last
        && (last < incs || last > incs + unknown)
    {
        anomalies.push(format!(
            "final value {last}, but {incs} increments were acknowledged and {unknown} unknown"
        ));
    }
    anomalies
}

#[async_trait]
impl Workload for Monotonic {
    fn name(&self) -> &'static str {
        "monotonic"
    }

    fn split_tables(&self) -> Vec<String> {
        Vec::new()
    }

    async fn setup(&self, s: &mut Session) -> Result<(), SqlError> {
        s.simple("CREATE TABLE jp_mono (id INT8 PRIMARY KEY, val INT8 NOT NULL)")
            .await?;
        s.simple("INSERT INTO jp_mono VALUES (0, 0)").await?;
        Ok(())
    }

    async fn step(&self, process: usize, sessions: &mut [Session], rng: &mut Rng) {
        let s = &mut sessions[0];
        let call = self.history.now();
        let (f, sql) = if rng.below(3) == 0 {
            ("read", READ)
        } else {
            (
                "inc",
                "UPDATE jp_mono SET val = val + 1 WHERE id = 0 RETURNING val",
            )
        };
        let r = s.int(sql).await;
        let (outcome, error) = Session::outcome(&r);
        self.history
            .record(process, f, call, outcome, r.ok().flatten(), error);
    }

    async fn check(&self, s: &mut Session) -> Verdict {
        let (last, mut anomalies) = match read_until_ok(s, READ).await {
            Ok(rows) => (super::ints(&rows).first().copied(), Vec::new()),
            Err(e) => (None, vec![format!("the final read failed: {e}")]),
        };
        anomalies.extend(check_history(&self.history.events(), last));
        let incs = self.history.count("inc", Outcome::Ok);
        Verdict::new(
            self.name(),
            format!(
                "{}, {}",
                self.history.tally("inc"),
                self.history.tally("read")
            ),
            anomalies,
            incs > 0 && self.history.count("read", Outcome::Ok) > 0,
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
        v: Option<i64>,
    ) -> Event<Option<i64>> {
        event(f, call, ret, outcome, v)
    }

    #[test]
    fn repeated_backward_and_miscounted_values_are_found() {
        let fine = [
            op("inc", 0, 10, Outcome::Ok, Some(1)),
            op("read", 5, 15, Outcome::Ok, Some(0)),
            op("inc", 20, 30, Outcome::Info, None),
            op("read", 40, 50, Outcome::Ok, Some(2)),
            op("inc", 60, 70, Outcome::Ok, Some(3)),
        ];
        assert!(check_history(&fine, Some(3)).is_empty());
        // The unknown increment may not have happened.
        assert!(check_history(&fine[..2], Some(1)).is_empty());

        let twice = [
            op("inc", 0, 10, Outcome::Ok, Some(1)),
            op("inc", 5, 15, Outcome::Ok, Some(1)),
        ];
        assert!(check_history(&twice, Some(2))[0].contains("both returned 1"));
        let backwards = [
            op("inc", 0, 10, Outcome::Ok, Some(1)),
            op("read", 20, 30, Outcome::Ok, Some(0)),
        ];
        assert!(check_history(&backwards, Some(1))[0].contains("read called at 20us got 0"));
        let applied_twice = check_history(&fine, Some(4));
        assert!(
            applied_twice[0].contains("final value 4"),
            "{applied_twice:?}"
        );
    }
}
