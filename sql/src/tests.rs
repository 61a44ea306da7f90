//! The SQL layer against a single in-memory node: scripted statement tests in
//! `src/testscripts/*.slt`, and the shared conformance corpus.

use sqllogictest::Runner;

use crate::session::ExecResult;
use crate::slt;
use crate::testing::{LocalDb, single_node, slt_dir};
use crate::types::Value;

async fn tally(file: &std::path::Path) -> slt::Tally {
    let server = single_node().await;
    let mut runner = Runner::new(move || {
        let server = server.clone();
        async move { Ok(LocalDb(server.session("root", "defaultdb"))) }
    });
    slt::run_file(&mut runner, file, 20)
        .await
        .expect("file parses")
}

/// Every scripted test file passes, record by record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testscripts() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/testscripts");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("testscripts directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut report = String::new();
    for f in &files {
        let t = tally(f).await;
        if t.failed > 0 {
            report.push_str(&format!("{}: {} failed\n", f.display(), t.failed));
            for fail in &t.failures {
                report.push_str(&format!("  {fail}\n"));
            }
        }
        assert!(t.passed > 0, "{} ran nothing", f.display());
    }
    assert!(report.is_empty(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "development aid: prints conformance tallies"]
async fn conformance_tallies() {
    for name in [
        "select1.slt",
        "select2.slt",
        "select3.slt",
        "random__aggregates__slt_good_0.slt",
        "random__groupby__slt_good_0.slt",
    ] {
        let t = tally(&slt_dir().join(name)).await;
        println!(
            "{name}: passed {} failed {} skipped {}",
            t.passed, t.failed, t.skipped
        );
        for f in t.failures.iter().take(8) {
            println!("  {}", f.lines().take(12).collect::<Vec<_>>().join("\n  "));
        }
    }
}

/// Every virtual table's rows have as many values as it has columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_tables_rows_match_their_columns() {
    use crate::vtable::VirtualTable;
    let server = single_node().await;
    let mut session = server.session("root", "defaultdb");
    for r in session
        .simple_query(
            "CREATE TABLE t (a INT PRIMARY KEY, b TEXT UNIQUE, c INT DEFAULT 1); \
             CREATE INDEX t_c ON t (c); CREATE TABLE nopk (x INT); CREATE USER u",
        )
        .await
    {
        r.expect("setup statement");
    }
    let mut txn = server.db.begin();
    let db = crate::catalog::get_database(&mut txn, "defaultdb")
        .await
        .unwrap()
        .unwrap();
    for v in VirtualTable::ALL {
        let width = v.columns().len();
        let rows = v.rows(&mut txn, db.id, "defaultdb").await.unwrap();
        for row in rows {
            assert_eq!(row.len(), width, "{v:?}: {row:?}");
        }
    }
    txn.rollback().await;
}

/// An implicit transaction that upserts one row commits in one Raft command (a
/// one-phase commit): the row's write goes with the EndTxn, whether the upsert writes
/// blind (it replaces the whole row) or reads the row first (it keeps some columns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_implicit_single_row_upsert_is_one_raft_command() {
    let (server, store) = crate::testing::single_node_with_store().await;
    let mut session = server.session("root", "defaultdb");
    let mut run = async |sql: &str| {
        let mut results = session.simple_query(sql).await;
        results.pop().expect("a result").expect(sql)
    };
    run("CREATE TABLE kv (k INT8 PRIMARY KEY, v TEXT)").await;
    run("CREATE TABLE kvw (k INT8 PRIMARY KEY, v TEXT, w INT8 DEFAULT 7)").await;
    run("INSERT INTO kvw VALUES (1, 'a', 5)").await;
    // Entries appended to every Raft log of the store so far.
    let entries = || -> u64 {
        store
            .replicas()
            .iter()
            .map(|r| r.group().status().last_log_index)
            .sum()
    };
    for sql in [
        "UPSERT INTO kv VALUES (1, 'new')",
        "UPSERT INTO kv VALUES (1, 'replaced')",
        "INSERT INTO kv VALUES (1, 'x') ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        // Keeps w: reads the row, then writes it with the commit.
        "UPSERT INTO kvw (k, v) VALUES (1, 'b')",
        "INSERT INTO kvw VALUES (2, 'c', 1) ON CONFLICT (k) DO NOTHING",
    ] {
        let before = entries();
        run(sql).await;
        assert_eq!(entries() - before, 1, "{sql}");
    }
    assert_eq!(
        int_rows(run("SELECT k, v FROM kv").await),
        vec![vec![Value::Int(1), Value::Text("x".into())]]
    );
    assert_eq!(
        int_rows(run("SELECT k, v, w FROM kvw ORDER BY k").await),
        vec![
            vec![Value::Int(1), Value::Text("b".into()), Value::Int(5)],
            vec![Value::Int(2), Value::Text("c".into()), Value::Int(1)],
        ]
    );
    // Two rows for one key in one statement: the later one wins, as before.
    run("UPSERT INTO kvw (k, v) VALUES (3, 'p'), (3, 'q')").await;
    assert_eq!(
        int_rows(run("SELECT k, v, w FROM kvw WHERE k = 3").await),
        vec![vec![Value::Int(3), Value::Text("q".into()), Value::Int(7)]]
    );
}

async fn exec(
    session: &mut crate::session::Session,
    sql: &str,
) -> crate::error::Result<ExecResult> {
    let mut results = session.simple_query(sql).await;
    results.pop().expect("a result")
}

fn int_rows(r: ExecResult) -> Vec<Vec<Value>> {
    match r {
        ExecResult::Rows { rows, .. } => rows,
        other => panic!("{other:?}"),
    }
}

/// A statement of an explicit transaction that read a row which someone else then
/// wrote, before writing it back above that write, runs again at the newer timestamp
/// instead of failing the commit; but a row read by an earlier statement and written
/// since still fails the commit (40001): the earlier statement cannot run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "statement restarts are switched off: CI at b2dfcaf saw bank-multitable lose money under jepsen_pause with them on"]
async fn a_statement_whose_own_read_was_overwritten_runs_again() {
    let server = single_node().await;
    let mut a = server.session("root", "defaultdb");
    let mut b = server.session("root", "defaultdb");
    exec(&mut a, "CREATE TABLE t (k INT8 PRIMARY KEY, v INT8)")
        .await
        .unwrap();
    exec(&mut a, "INSERT INTO t VALUES (1, 1), (2, 2)")
        .await
        .unwrap();
    // The read of the statement below copies k = 1's value into k = 1 (an upsert
    // writes it blind); B's update lands between that read and the write.
    let copy = "INSERT INTO t SELECT k, v + 1 FROM t WHERE k = 1 \
                ON CONFLICT (k) DO UPDATE SET v = excluded.v";

    exec(&mut a, "BEGIN").await.unwrap();
    // A's first read takes the node's clock reading, so B's later write is not in A's
    // uncertainty window: A's next read of k = 1 sees the old value.
    exec(&mut a, "SELECT v FROM t WHERE k = 2").await.unwrap();
    exec(&mut b, "UPDATE t SET v = 10 WHERE k = 1")
        .await
        .unwrap();
    exec(&mut a, copy).await.unwrap();
    exec(&mut a, "COMMIT").await.unwrap();
    let v = int_rows(exec(&mut a, "SELECT v FROM t WHERE k = 1").await.unwrap());
    assert_eq!(v, vec![vec![Value::Int(11)]], "B's update was lost");

    // Now the earlier statement read k = 1: its read cannot be redone.
    exec(&mut a, "BEGIN").await.unwrap();
    exec(&mut a, "SELECT v FROM t WHERE k = 1").await.unwrap();
    exec(&mut b, "UPDATE t SET v = 20 WHERE k = 1")
        .await
        .unwrap();
    exec(&mut a, copy).await.unwrap();
    let err = exec(&mut a, "COMMIT").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    let v = int_rows(exec(&mut a, "SELECT v FROM t WHERE k = 1").await.unwrap());
    assert_eq!(v, vec![vec![Value::Int(20)]]);
}
