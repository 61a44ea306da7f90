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
