//! G2 (anti-dependency cycles, predicate write skew): for each key, two transactions
//! run at once. Each reads both tables for rows matching the key (a predicate, through
//! an index) and, finding none, inserts one row into its own table. Serially, the second
//! would see the first's row: at most one of the two may commit.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use serde::Serialize;

use super::{Event, History, Outcome, Rng, RunClock, Session, SqlError, Verdict, Workload};
use super::{ints, push_capped, read_until_ok};

#[derive(Clone, Debug, Serialize)]
struct Value {
    key: i64,
    table: &'static str,
}

pub struct G2 {
    history: History<Value>,
    next_key: AtomicI64,
}

impl G2 {
    pub fn new(clock: RunClock) -> G2 {
        G2 {
            history: History::new(clock),
            next_key: AtomicI64::new(0),
        }
    }
}

/// One of the pair: insert into `table` if neither table has a row for `key`.
async fn insert_if_empty(s: &mut Session, table: &str, key: i64, id: i64) -> Result<(), SqlError> {
    s.simple("BEGIN").await?;
    let mut found = 0;
    for t in ["jp_g2_a", "jp_g2_b"] {
        found += s
            .int(&format!(
                "SELECT count(*) FROM {t} WHERE k = {key} AND v % 3 = 0"
            ))
            .await?
            .unwrap_or(0);
    }
    if found > 0 {
        return Err(SqlError {
            definite: true,
            message: "a row already matches".into(),
        });
    }
    s.simple(&format!("INSERT INTO {table} VALUES ({id}, {key}, 30)"))
        .await?;
    Ok(())
}

async fn one_of_pair(
    s: &mut Session,
    table: &'static str,
    key: i64,
    id: i64,
) -> (&'static str, Outcome, String) {
    let body = insert_if_empty(s, table, key, id).await;
    let (outcome, _, error) = s.finish(body).await;
    (table, outcome, error)
}

/// Checks that at most one insert per key committed, and that the tables (`rows`: the
/// key of every row of both) hold at most one row per key.
fn check_history(events: &[Event<Value>], rows: &[i64]) -> Vec<String> {
    let mut anomalies = Vec::new();
    let mut committed: BTreeMap<i64, usize> = BTreeMap::new();
    for e in events.iter().filter(|e| e.outcome == Outcome::Ok) {
        *committed.entry(e.value.key).or_default() += 1;
    }
    for (key, n) in &committed {
        if *n > 1 {
            push_capped(
                &mut anomalies,
                format!("both inserts of key {key} committed"),
            );
        }
    }
    // Transactions of unknown outcome too.
    let mut rows_per_key: BTreeMap<i64, usize> = BTreeMap::new();
    for k in rows {
        *rows_per_key.entry(*k).or_default() += 1;
    }
    for (key, n) in rows_per_key {
        if n > 1 && committed.get(&key).copied().unwrap_or(0) <= 1 {
            push_capped(
                &mut anomalies,
                format!("the tables hold {n} rows of key {key}"),
            );
        }
    }
    anomalies
}

#[async_trait]
impl Workload for G2 {
    fn name(&self) -> &'static str {
        "g2"
    }

    fn sessions_per_client(&self) -> usize {
        2
    }

    fn split_tables(&self) -> Vec<String> {
        vec!["jp_g2_a".into(), "jp_g2_b".into()]
    }

    async fn setup(&self, s: &mut Session) -> Result<(), SqlError> {
        for t in ["jp_g2_a", "jp_g2_b"] {
            s.simple(&format!(
                "CREATE TABLE {t} (id INT8 PRIMARY KEY, k INT8 NOT NULL, v INT8 NOT NULL)"
            ))
            .await?;
            s.simple(&format!("CREATE INDEX {t}_k ON {t} (k)")).await?;
        }
        Ok(())
    }

    async fn step(&self, process: usize, sessions: &mut [Session], _rng: &mut Rng) {
        let key = self.next_key.fetch_add(1, Ordering::SeqCst);
        let (a, b) = sessions.split_at_mut(1);
        let call = self.history.now();
        let (ra, rb) = tokio::join!(
            one_of_pair(&mut a[0], "jp_g2_a", key, key * 2),
            one_of_pair(&mut b[0], "jp_g2_b", key, key * 2 + 1)
        );
        for (table, outcome, error) in [ra, rb] {
            self.history.record(
                process,
                "insert",
                call,
                outcome,
                Value { key, table },
                error,
            );
        }
    }

    async fn check(&self, s: &mut Session) -> Verdict {
        let sql = "SELECT k FROM jp_g2_a UNION ALL SELECT k FROM jp_g2_b";
        let (rows, mut anomalies) = match read_until_ok(s, sql).await {
            Ok(rows) => (ints(&rows), Vec::new()),
            Err(e) => (Vec::new(), vec![format!("the final read failed: {e}")]),
        };
        let events = self.history.events();
        anomalies.extend(check_history(&events, &rows));
        Verdict::new(
            self.name(),
            format!(
                "{} keys, {}",
                self.next_key.load(Ordering::SeqCst),
                self.history.tally("insert")
            ),
            anomalies,
            self.history.count("insert", Outcome::Ok) > 0,
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

    fn insert(key: i64, table: &'static str, outcome: Outcome) -> Event<Value> {
        event("insert", 0, 1, outcome, Value { key, table })
    }

    #[test]
    fn both_inserts_of_a_key_committing_is_an_anomaly() {
        let fine = [
            insert(0, "jp_g2_a", Outcome::Ok),
            insert(0, "jp_g2_b", Outcome::Fail),
            insert(1, "jp_g2_a", Outcome::Info),
            insert(1, "jp_g2_b", Outcome::Fail),
        ];
        assert!(check_history(&fine, &[0, 1]).is_empty());
        let skew = [
            insert(0, "jp_g2_a", Outcome::Ok),
            insert(0, "jp_g2_b", Outcome::Ok),
        ];
        assert_eq!(
            check_history(&skew, &[0, 0]),
            ["both inserts of key 0 committed"]
        );
        // Unknown outcomes that both landed show in the tables.
        let unknown = [
            insert(0, "jp_g2_a", Outcome::Info),
            insert(0, "jp_g2_b", Outcome::Ok),
        ];
        assert_eq!(
            check_history(&unknown, &[0, 0]),
            ["the tables hold 2 rows of key 0"]
        );
    }
}
