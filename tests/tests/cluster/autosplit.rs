//! The split queue on a real cluster: a table splits by size from one range into many
//! under concurrent SQL writers and transactional readers, with no client-visible error
//! and no lost row; a hot span splits by load and its halves get different leaseholders;
//! every table starts on its own range.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cairn_kv::RangeId;
use cairn_tests::Cluster;
use parking_lot::Mutex;

use crate::splits::assert_replicas_agree;

pub(crate) async fn connect(c: &Cluster, i: usize) -> tokio_postgres::Client {
    c.wait_until(Duration::from_secs(30), "SQL serves", |c| {
        c.node(i).sql_server().is_some()
    })
    .await;
    let (host, port) = c.node(i).sql_addr().rsplit_once(':').expect("host:port");
    let conn_str = format!("host={host} port={port} user=root dbname=defaultdb connect_timeout=10");
    let (client, conn) = tokio_postgres::connect(&conn_str, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// (range id, leaseholder) of each range of `table`.
pub(crate) async fn ranges_of(
    client: &tokio_postgres::Client,
    table: &str,
) -> Vec<(i64, Option<i64>)> {
    client
        .query(&format!("SHOW RANGES FROM TABLE {table}"), &[])
        .await
        .expect("SHOW RANGES")
        .iter()
        .map(|r| (r.get("range_id"), r.get("lease_holder")))
        .collect()
}

/// Polls `probe` every 250 ms until it answers `Ok`; panics with its last `Err` once
/// `timeout` has passed.
pub(crate) async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "after {timeout:?}: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn is_retry(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code() == "40001")
}

/// Writer `w` inserts rows `w * 1_000_000 + i` through its own connection until `stop`.
/// Returns the keys acknowledged and the errors seen.
fn spawn_writer(
    client: tokio_postgres::Client,
    w: i64,
    acked: Arc<Mutex<Vec<BTreeSet<i64>>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let insert = client
            .prepare("INSERT INTO kv VALUES ($1, $2)")
            .await
            .expect("prepare");
        let value = "x".repeat(300);
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let k = w * 1_000_000 + i;
            match client.execute(&insert, &[&k, &value]).await {
                Ok(_) => {
                    acked.lock()[w as usize].insert(k);
                }
                Err(e) => {
                    errors.lock().push(format!("writer {w} key {k}: {e:?}"));
                    return;
                }
            }
            i += 1;
        }
    })
}

/// SQL writers on table `kv` (see [`spawn_writer`]), writer `w` connected to node
/// `1 + w % 3` (or to `nodes[w % nodes.len()]`, with [`Writers::start_on`]).
pub(crate) struct Writers {
    pub acked: Arc<Mutex<Vec<BTreeSet<i64>>>>,
    pub errors: Arc<Mutex<Vec<String>>>,
    pub stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    pub async fn start(c: &Cluster, writers: i64) -> Writers {
        Writers::start_on(c, writers, &[1, 2, 3]).await
    }

    pub async fn start_on(c: &Cluster, writers: i64, nodes: &[usize]) -> Writers {
        let acked = Arc::new(Mutex::new(vec![BTreeSet::new(); writers as usize]));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..writers {
            let client = connect(c, nodes[(w as usize) % nodes.len()]).await;
            tasks.push(spawn_writer(
                client,
                w,
                acked.clone(),
                errors.clone(),
                stop.clone(),
            ));
        }
        Writers {
            acked,
            errors,
            stop,
            tasks,
        }
    }

    /// Stops the writers; returns every key acknowledged.
    pub async fn finish(self) -> BTreeSet<i64> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.expect("writer");
        }
        self.acked.lock().iter().flatten().copied().collect()
    }
}

/// Stops the writers and the readers; checks that no client saw an error (during
/// `what`) and that the readers finished more than a few transactions. Returns every
/// key acknowledged.
pub(crate) async fn finish_load(
    load: Writers,
    readers: Vec<tokio::task::JoinHandle<u64>>,
    what: &str,
) -> BTreeSet<i64> {
    let errors = load.errors.clone();
    let want = load.finish().await;
    let mut reads = 0;
    for t in readers {
        reads += t.await.expect("reader");
    }
    let errors = errors.lock().clone();
    assert!(
        errors.is_empty(),
        "clients saw errors during {what}: {errors:#?}"
    );
    assert!(reads > 10, "only {reads} transactional reads finished");
    want
}

/// A 3-node cluster whose ranges split at 32 KiB, with an empty table `kv (k INT8
/// PRIMARY KEY, v TEXT)`, and a SQL connection to node 1.
pub(crate) async fn small_ranges_with_kv() -> (Cluster, tokio_postgres::Client) {
    let c = Cluster::start_configured(3, |config| {
        config
            .setting_defaults
            .push((cairn_range::settings::RANGE_MAX_BYTES, 32 << 10));
    })
    .await;
    let admin = connect(&c, 1).await;
    admin
        .batch_execute("CREATE TABLE kv (k INT8 PRIMARY KEY, v TEXT)")
        .await
        .expect("create");
    (c, admin)
}

/// Table `kv` holds every acknowledged row once, and nothing else.
pub(crate) async fn assert_rows(client: &tokio_postgres::Client, want: &BTreeSet<i64>) {
    let got: Vec<i64> = client
        .query("SELECT k FROM kv ORDER BY k", &[])
        .await
        .expect("scan")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let got_set: BTreeSet<i64> = got.iter().copied().collect();
    assert_eq!(got.len(), got_set.len(), "duplicated rows");
    assert_eq!(&got_set, want, "rows differ from the acknowledged ones");
}

/// Reads, in a transaction, how many rows writer `w` has: never fewer than it had
/// acknowledged before the transaction began. Serialization failures are retried.
pub(crate) fn spawn_reader(
    client: tokio_postgres::Client,
    writers: i64,
    acked: Arc<Mutex<Vec<BTreeSet<i64>>>>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut client = client;
        let mut reads = 0u64;
        let mut round = 0i64;
        while !stop.load(Ordering::Relaxed) {
            let w = round % writers;
            round += 1;
            let before = acked.lock()[w as usize].len() as i64;
            let (lo, hi) = (w * 1_000_000, (w + 1) * 1_000_000);
            let attempt = async {
                let tx = client.transaction().await?;
                let n: i64 = tx
                    .query_one(
                        "SELECT count(*) FROM kv WHERE k >= $1 AND k < $2",
                        &[&lo, &hi],
                    )
                    .await?
                    .get(0);
                let all: i64 = tx.query_one("SELECT count(*) FROM kv", &[]).await?.get(0);
                tx.commit().await?;
                Ok::<_, tokio_postgres::Error>((n, all))
            };
            match attempt.await {
                Ok((n, all)) => {
                    reads += 1;
                    if n < before || all < n {
                        errors.lock().push(format!(
                            "reader saw {n} rows of writer {w} (of {all}) after {before} were acknowledged"
                        ));
                    }
                }
                Err(e) if is_retry(&e) => {}
                Err(e) => {
                    errors.lock().push(format!("reader: {e:?}"));
                    return reads;
                }
            }
        }
        reads
    })
}

/// A table grows from one range into at least 12 by size (the limit set with the
/// `--range-max-bytes` start flag) while writers insert through every node and
/// transactional readers count rows: no client sees an error, every acknowledged row
/// is there once, SHOW RANGES reports the ranges' sizes, and the replicas of every
/// range agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn table_splits_by_size_under_load_without_client_errors() {
    let (c, admin) = small_ranges_with_kv().await;
    let shown: String = admin
        .query_one("SHOW CLUSTER SETTING kv.range.max_bytes", &[])
        .await
        .expect("SHOW CLUSTER SETTING")
        .get(0);
    assert_eq!(shown, (32 << 10).to_string());
    admin
        .batch_execute("CREATE TABLE other (k INT8 PRIMARY KEY)")
        .await
        .expect("create");
    // Each table has its own range.
    let (kv_ranges, other_ranges) = (
        ranges_of(&admin, "kv").await,
        ranges_of(&admin, "other").await,
    );
    assert_eq!((kv_ranges.len(), other_ranges.len()), (1, 1));
    assert_ne!(kv_ranges[0].0, other_ranges[0].0, "tables share a range");

    let writers = 4i64;
    let load = Writers::start(&c, writers).await;
    let (acked, errors, stop) = (load.acked.clone(), load.errors.clone(), load.stop.clone());
    let mut reader_tasks = Vec::new();
    for r in 0..2 {
        let client = connect(&c, 1 + r % 3).await;
        reader_tasks.push(spawn_reader(
            client,
            writers,
            acked.clone(),
            errors.clone(),
            stop.clone(),
        ));
    }

    let ranges = eventually(Duration::from_secs(120), || async {
        let ranges = ranges_of(&admin, "kv").await;
        if ranges.len() >= 12 {
            return Ok(ranges);
        }
        Err(format!(
            "the table has only {} ranges; errors: {:?}",
            ranges.len(),
            errors.lock()
        ))
    })
    .await;
    // Keep the load on a little longer, across the splits still going on.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let want = finish_load(load, reader_tasks, "splits").await;

    assert_rows(&admin, &want).await;

    // SHOW RANGES reports each range's size, as its leaseholder measured it: together
    // at least the bytes of the values written.
    eventually(Duration::from_secs(20), || async {
        let sizes: Vec<Option<i64>> = admin
            .query("SHOW RANGES FROM TABLE kv", &[])
            .await
            .expect("SHOW RANGES")
            .iter()
            .map(|r| r.get("range_size_bytes"))
            .collect();
        let total: i64 = sizes.iter().flatten().sum();
        if sizes.iter().all(Option::is_some) && total >= 300 * want.len() as i64 {
            return Ok(());
        }
        Err(format!(
            "range sizes {sizes:?} do not account for {} rows of 300 bytes",
            want.len()
        ))
    })
    .await;

    // The replicas of every range of the table hold the same data.
    for (range_id, _) in ranges_of(&admin, "kv").await {
        assert_replicas_agree(&c, RangeId(range_id as u64)).await;
    }
    assert!(ranges.len() >= 12);
}

/// Point reads spread over a table's keys at more than the load threshold (set with
/// SET CLUSTER SETTING) split its range, and the halves get different leaseholders.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hot_span_splits_by_load_onto_different_leaseholders() {
    let c = Cluster::start(3).await;
    let admin = connect(&c, 1).await;
    admin
        .batch_execute(
            "SET CLUSTER SETTING kv.range_split.load_qps_threshold = 100; \
             CREATE TABLE hot (k INT8 PRIMARY KEY, v INT8)",
        )
        .await
        .expect("setup");
    let values: Vec<String> = (0..1000).map(|i| format!("({i}, {i})")).collect();
    admin
        .batch_execute(&format!("INSERT INTO hot VALUES {}", values.join(",")))
        .await
        .expect("load");
    assert_eq!(ranges_of(&admin, "hot").await.len(), 1);

    let errors = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for r in 0..6u64 {
        let client = connect(&c, 1 + (r as usize) % 3).await;
        let (errors, stop) = (errors.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let select = client
                .prepare("SELECT v FROM hot WHERE k = $1")
                .await
                .expect("prepare");
            let mut i = r;
            while !stop.load(Ordering::Relaxed) {
                let k = ((i * 7919) % 1000) as i64;
                i += 6;
                match client.query_one(&select, &[&k]).await {
                    Ok(row) => assert_eq!(row.get::<_, i64>(0), k),
                    Err(e) => {
                        errors.lock().push(format!("{e:?}"));
                        return;
                    }
                }
            }
        }));
    }
    eventually(Duration::from_secs(60), || async {
        let ranges = ranges_of(&admin, "hot").await;
        let holders: BTreeSet<i64> = ranges.iter().filter_map(|r| r.1).collect();
        if ranges.len() >= 2 && holders.len() >= 2 {
            return Ok(());
        }
        Err(format!(
            "no load split onto two leaseholders: {ranges:?}; errors {:?}",
            errors.lock()
        ))
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("reader");
    }
    let errors = errors.lock().clone();
    assert!(errors.is_empty(), "readers saw errors: {errors:#?}");
}
