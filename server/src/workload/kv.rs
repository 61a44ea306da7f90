//! kv: a table of integer keys and byte values; each operation reads one random key
//! (`--read-percent` of them) or writes one (UPSERT). Keys are random in
//! `[0, --key-space)`, or, with `--sequential`, written in increasing order and read
//! among those already written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use clap::Args;
use tokio::time::Instant;

use super::{Common, Pacer, Stats, Summary, connect, create_split_table, drive, sqlstate};

#[derive(Args, Debug, Clone)]
pub struct KvArgs {
    #[command(flatten)]
    pub common: Common,
    /// Percentage of operations that are reads.
    #[arg(long, default_value_t = 0)]
    pub read_percent: u8,
    /// Write keys in increasing order instead of at random.
    #[arg(long)]
    pub sequential: bool,
    /// Keys are drawn from [0, key-space).
    #[arg(long, default_value_t = 1_000_000)]
    pub key_space: u64,
    /// Bytes of each value.
    #[arg(long, default_value_t = 256)]
    pub value_bytes: usize,
    /// At init: split the table into this many ranges over the key space.
    #[arg(long, default_value_t = 0)]
    pub splits: u64,
}

pub async fn init(args: &KvArgs) -> Result<(), String> {
    let c = connect(&args.common.url).await?;
    let ddl = "CREATE TABLE kv (k INT8 PRIMARY KEY, v BYTEA NOT NULL)";
    create_split_table(&c, "kv", ddl, args.splits, args.key_space).await?;
    println!("kv: table kv in {} range(s)", args.splits.max(1));
    Ok(())
}

/// Runs the reads and writes; returns what the run did.
pub async fn run(args: &KvArgs) -> Result<Summary, String> {
    if args.read_percent > 100 {
        return Err("--read-percent is at most 100".into());
    }
    if args.key_space == 0 {
        return Err("--key-space must be positive".into());
    }
    // Sequential writes take the next key from here.
    let next_key = Arc::new(AtomicU64::new(0));
    let args2 = args.clone();
    let (summary, _) = drive(&args.common, "kv", |id, stats, pacer| {
        worker(args2.clone(), id, next_key.clone(), stats, pacer)
    })
    .await?;
    summary.print(args.common.json);
    Ok(summary)
}

async fn worker(
    args: KvArgs,
    id: usize,
    next_key: Arc<AtomicU64>,
    stats: Arc<Stats>,
    mut pacer: Pacer,
) {
    let mut rng = fastrand::Rng::with_seed(id as u64 * 104_729 + 3);
    let mut client = None;
    let mut statements = None;
    while !stats.stopping() {
        pacer.wait().await;
        let c = match &client {
            Some(c) => c,
            None => match connect(&args.common.url).await {
                Ok(c) => client.insert(c),
                Err(_) => {
                    stats.error("connection error".into());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let (read, write) = match &statements {
            Some(s) => s,
            None => {
                let prepared = async {
                    let r = c.prepare("SELECT v FROM kv WHERE k = $1").await?;
                    let w = c.prepare("UPSERT INTO kv (k, v) VALUES ($1, $2)").await?;
                    Ok::<_, tokio_postgres::Error>((r, w))
                };
                match prepared.await {
                    Ok(p) => statements.insert(p),
                    Err(e) => {
                        stats.error(sqlstate(&e));
                        client = None;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
        };
        let is_read = rng.u8(0..100) < args.read_percent;
        let written = next_key.load(Ordering::Relaxed);
        let key = if args.sequential {
            if is_read {
                rng.u64(0..written.max(1))
            } else {
                next_key.fetch_add(1, Ordering::Relaxed) % args.key_space
            }
        } else {
            rng.u64(0..args.key_space)
        } as i64;
        let started = Instant::now();
        let result = if is_read {
            c.query_opt(read, &[&key]).await.map(|_| "read")
        } else {
            let mut value = vec![0u8; args.value_bytes];
            rng.fill(&mut value);
            c.execute(write, &[&key, &value]).await.map(|_| "write")
        };
        match result {
            Ok(op) => stats.record(op, started.elapsed()),
            Err(e) => {
                stats.error(sqlstate(&e));
                if c.is_closed() {
                    client = None;
                    statements = None;
                }
            }
        }
    }
}
