//! The SQL layer against a single in-memory node: scripted statement tests in
//! `src/testscripts/*.slt`, and the shared conformance corpus.

use sqllogictest::Runner;

use crate::slt;
use crate::testing::{LocalDb, single_node, slt_dir};

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
