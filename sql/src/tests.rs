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
