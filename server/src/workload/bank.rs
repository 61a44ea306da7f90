//! The bank: `accounts` rows each starting with the same balance, spread over ranges
//! with SPLIT AT; workers move money between two random accounts in explicit
//! transactions (read both balances, then update both), retrying on 40001/40P01. An
//! auditor sums the balances every few seconds; at the end the total must be what it
//! was at the start, or the run fails.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;

use super::{
    Common, Pacer, Stats, Summary, connect, create_split_table, drive, is_retryable, sqlstate,
};

#[derive(Args, Debug, Clone)]
pub struct BankArgs {
    #[command(flatten)]
    pub common: Common,
    /// Number of accounts.
    #[arg(long, default_value_t = 1000)]
    pub accounts: u64,
    /// Balance each account starts with.
    #[arg(long, default_value_t = 1000)]
    pub initial_balance: i64,
    /// Ranges to cut the table into at init (SPLIT AT), 1 for none.
    #[arg(long, default_value_t = 8)]
    pub ranges: u64,
    /// Seconds between audits of the total during a run.
    #[arg(long, default_value_t = 5.0)]
    pub audit_every: f64,
    /// Attempts per transfer before it counts as failed.
    #[arg(long, default_value_t = 100)]
    pub max_tries: u32,
}

pub async fn init(args: &BankArgs) -> Result<(), String> {
    let c = connect(&args.common.url).await?;
    let ddl = "CREATE TABLE bank (id INT8 PRIMARY KEY, balance INT8 NOT NULL)";
    create_split_table(&c, "bank", ddl, args.ranges, args.accounts).await?;
    for chunk_start in (0..args.accounts).step_by(1000) {
        let end = (chunk_start + 1000).min(args.accounts);
        let values: Vec<String> = (chunk_start..end)
            .map(|id| format!("({id}, {})", args.initial_balance))
            .collect();
        c.batch_execute(&format!("INSERT INTO bank VALUES {}", values.join(",")))
            .await
            .map_err(|e| format!("loading accounts: {e}"))?;
    }
    println!(
        "bank: {} accounts of {} in {} range(s)",
        args.accounts,
        args.initial_balance,
        args.ranges.max(1)
    );
    Ok(())
}

/// The total and the number of accounts.
async fn audit(c: &tokio_postgres::Client) -> Result<(i64, i64), tokio_postgres::Error> {
    let row = c
        .query_one("SELECT sum(balance)::INT8, count(*) FROM bank", &[])
        .await?;
    Ok((row.get(0), row.get(1)))
}

/// Runs transfers; fails if the total changed. Returns what the run did.
pub async fn run(args: &BankArgs) -> Result<Summary, String> {
    let auditor = connect(&args.common.url).await?;
    let (start_total, accounts) = audit(&auditor)
        .await
        .map_err(|e| format!("reading the bank (did `workload init bank` run?): {e}"))?;
    if accounts < 2 {
        return Err("the bank needs at least two accounts".into());
    }
    let accounts = accounts as u64;
    let audits = {
        let interval = Duration::from_secs_f64(args.audit_every.max(0.1));
        tokio::spawn(async move {
            let mut bad = Vec::new();
            loop {
                tokio::time::sleep(interval).await;
                match audit(&auditor).await {
                    Ok((total, _)) if total != start_total => bad.push(total),
                    Ok(_) => {}
                    Err(e) if is_retryable(&e) => {}
                    Err(e) => {
                        eprintln!("audit failed: {e}");
                        return bad;
                    }
                }
            }
        })
    };
    let url = args.common.url.clone();
    let max_tries = args.max_tries;
    let (summary, _) = drive(&args.common, "bank", |id, stats, pacer| {
        transfers(url.clone(), id, accounts, max_tries, stats, pacer)
    })
    .await?;
    audits.abort();
    let bad_audits = audits.await.unwrap_or_default();
    summary.print(args.common.json);
    let c = connect(&args.common.url).await?;
    let (end_total, _) = audit(&c).await.map_err(|e| format!("final audit: {e}"))?;
    if end_total != start_total || !bad_audits.is_empty() {
        return Err(format!(
            "money was created or destroyed: the total was {start_total}, audits saw {bad_audits:?}, the end total is {end_total}"
        ));
    }
    if !args.common.json {
        println!("audit: the total is {end_total}, as at the start");
    }
    Ok(summary)
}

/// One worker: transfers until the run stops.
async fn transfers(
    url: String,
    id: usize,
    accounts: u64,
    max_tries: u32,
    stats: Arc<Stats>,
    mut pacer: Pacer,
) {
    let mut rng = fastrand::Rng::with_seed(id as u64 * 7919 + 1);
    let mut client = None;
    while !stats.stopping() {
        pacer.wait().await;
        let c = match &client {
            Some(c) => c,
            None => match connect(&url).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    stats.error("connection error".into());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let from = rng.u64(0..accounts) as i64;
        let to = loop {
            let t = rng.u64(0..accounts) as i64;
            if t != from {
                break t;
            }
        };
        let amount = rng.i64(1..=10);
        let started = Instant::now();
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            match transfer(c, from, to, amount).await {
                Ok(()) => break Ok(()),
                Err(e) if is_retryable(&e) && tries < max_tries => {
                    let _ = c.batch_execute("ROLLBACK").await;
                    stats.retry();
                }
                Err(e) => break Err(e),
            }
        };
        match outcome {
            Ok(()) => stats.record("transfer", started.elapsed()),
            Err(e) => {
                stats.error(sqlstate(&e));
                if c.is_closed() {
                    client = None;
                } else {
                    let _ = c.batch_execute("ROLLBACK").await;
                }
            }
        }
    }
}

/// Moves `amount` from one account to another, if the first has it.
async fn transfer(
    c: &tokio_postgres::Client,
    from: i64,
    to: i64,
    amount: i64,
) -> Result<(), tokio_postgres::Error> {
    c.batch_execute("BEGIN").await?;
    let rows = c
        .query(
            "SELECT id, balance FROM bank WHERE id IN ($1, $2)",
            &[&from, &to],
        )
        .await?;
    let balance = rows
        .iter()
        .find(|r| r.get::<_, i64>(0) == from)
        .map_or(0, |r| r.get::<_, i64>(1));
    if balance >= amount {
        c.execute(
            "UPDATE bank SET balance = CASE id WHEN $1 THEN balance - $3 ELSE balance + $3 END \
             WHERE id IN ($1, $2)",
            &[&from, &to, &amount],
        )
        .await?;
    }
    c.batch_execute("COMMIT").await
}
