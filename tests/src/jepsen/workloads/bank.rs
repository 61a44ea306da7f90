//! Bank: transfers between accounts, and reads of every balance, which must always add
//! up to the same total with no account below zero.

use async_trait::async_trait;
use serde::Serialize;

use super::{History, Outcome, Rng, Session, SqlError, Verdict, Workload, ints, push_capped};
use super::{RunClock, read_until_ok};

const ACCOUNTS: u64 = 8;
const INITIAL: i64 = 100;

#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
enum Value {
    Transfer { from: u64, to: u64, amount: i64 },
    Read(Option<Vec<i64>>),
}

pub struct Bank {
    /// Each account in a table of its own (`jp_bank_<i>`, row 0), rather than all in
    /// `jp_bank`.
    multitable: bool,
    history: History<Value>,
}

impl Bank {
    pub fn new(clock: RunClock, multitable: bool) -> Bank {
        Bank {
            multitable,
            history: History::new(clock),
        }
    }

    /// The table and row of account `a`.
    fn account(&self, a: u64) -> (String, u64) {
        if self.multitable {
            (format!("jp_bank_{a}"), 0)
        } else {
            ("jp_bank".into(), a)
        }
    }

    /// Every balance, in account order, in one statement (one transaction).
    fn read_all_sql(&self) -> String {
        if self.multitable {
            (0..ACCOUNTS)
                .map(|a| format!("SELECT balance FROM jp_bank_{a}"))
                .collect::<Vec<_>>()
                .join(" UNION ALL ")
        } else {
            "SELECT balance FROM jp_bank ORDER BY id".into()
        }
    }

    async fn transfer(
        &self,
        s: &mut Session,
        from: u64,
        to: u64,
        amount: i64,
    ) -> Result<(), SqlError> {
        let (ft, fr) = self.account(from);
        let (tt, tr) = self.account(to);
        s.simple("BEGIN").await?;
        let balance = s
            .int(&format!("SELECT balance FROM {ft} WHERE id = {fr}"))
            .await?;
        if balance.unwrap_or(0) < amount {
            return Err(SqlError {
                definite: true,
                message: "insufficient funds".into(),
            });
        }
        s.simple(&format!(
            "UPDATE {ft} SET balance = balance - {amount} WHERE id = {fr}"
        ))
        .await?;
        s.simple(&format!(
            "UPDATE {tt} SET balance = balance + {amount} WHERE id = {tr}"
        ))
        .await?;
        Ok(())
    }
}

/// Checks one read of every balance: all accounts there, the total kept, none below
/// zero.
fn check_balances(call: u64, balances: &[i64], out: &mut Vec<String>) {
    let total: i64 = balances.iter().sum();
    let expected = ACCOUNTS as i64 * INITIAL;
    if balances.len() as u64 != ACCOUNTS || total != expected || balances.iter().any(|b| *b < 0) {
        push_capped(
            out,
            format!(
                "read called at {call}us saw {} accounts totalling {total} (expected {ACCOUNTS} totalling {expected}): {balances:?}",
                balances.len(),
            ),
        );
    }
}

#[async_trait]
impl Workload for Bank {
    fn name(&self) -> &'static str {
        if self.multitable {
            "bank-multitable"
        } else {
            "bank"
        }
    }

    fn split_tables(&self) -> Vec<String> {
        if self.multitable {
            Vec::new()
        } else {
            vec!["jp_bank".into()]
        }
    }

    async fn setup(&self, s: &mut Session) -> Result<(), SqlError> {
        for a in 0..ACCOUNTS {
            let (t, row) = self.account(a);
            if a == 0 || self.multitable {
                s.simple(&format!(
                    "CREATE TABLE {t} (id INT8 PRIMARY KEY, balance INT8 NOT NULL)"
                ))
                .await?;
            }
            s.simple(&format!("INSERT INTO {t} VALUES ({row}, {INITIAL})"))
                .await?;
        }
        Ok(())
    }

    async fn step(&self, process: usize, sessions: &mut [Session], rng: &mut Rng) {
        let s = &mut sessions[0];
        let call = self.history.now();
        if rng.below(2) == 0 {
            let r = s.simple(&self.read_all_sql()).await;
            let (outcome, error) = Session::outcome(&r);
            let value = r.ok().map(|rows| ints(&rows));
            self.history
                .record(process, "read", call, outcome, Value::Read(value), error);
        } else {
            let from = rng.below(ACCOUNTS);
            let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
            let amount = 1 + rng.below(5) as i64;
            let body = self.transfer(s, from, to, amount).await;
            let (outcome, _, error) = s.finish(body).await;
            self.history.record(
                process,
                "transfer",
                call,
                outcome,
                Value::Transfer { from, to, amount },
                error,
            );
        }
    }

    async fn check(&self, s: &mut Session) -> Verdict {
        let call = self.history.now();
        let last = read_until_ok(s, &self.read_all_sql()).await;
        let mut anomalies = Vec::new();
        let mut reads = 0;
        for e in self.history.events() {
            if let (Outcome::Ok, Value::Read(Some(b))) = (&e.outcome, &e.value) {
                reads += 1;
                check_balances(e.call, b, &mut anomalies);
            }
        }
        match &last {
            Ok(rows) => check_balances(call, &ints(rows), &mut anomalies),
            Err(e) => anomalies.push(format!("the final read failed: {e}")),
        }
        let transfers = self.history.count("transfer", Outcome::Ok);
        Verdict::new(
            self.name(),
            format!("{}, {reads} reads ok", self.history.tally("transfer")),
            anomalies,
            transfers > 0 && reads > 0,
        )
    }

    fn history(&self) -> Vec<serde_json::Value> {
        self.history.json()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_breaks_the_total_or_goes_negative_is_an_anomaly() {
        let mut out = Vec::new();
        check_balances(1, &[100; 8], &mut out);
        check_balances(2, &[150, 50, 100, 100, 100, 100, 100, 100], &mut out);
        assert!(out.is_empty(), "{out:?}");
        check_balances(3, &[100, 100, 100, 100, 100, 100, 100, 99], &mut out);
        check_balances(4, &[-1, 101, 100, 100, 100, 100, 100, 100], &mut out);
        check_balances(5, &[100; 7], &mut out);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].contains("totalling 799"), "{out:?}");
    }
}
