//! The `cairn` binary as separate processes: start three nodes, `cairn init`, write
//! under load, `kill -9` the leaseholder's process, and lose nothing acknowledged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_kv::RangeId;
use cairn_kv::api::{BatchRequest, Request, Response};
use cairn_kv::hlc::Clock;
use cairn_server::bench::Client;
use cairn_server::rpc::{RpcRequest, RpcResponse};
use cairn_server::transport::Transport;
use parking_lot::Mutex;

/// The `cairn` binary built beside this test binary (`cargo nextest run --workspace`
/// builds it).
fn cairn_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = dir.join("cairn");
    assert!(
        bin.exists(),
        "{} is missing: run the tests with --workspace so the binary is built",
        bin.display()
    );
    bin
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("local addr").port()
}

/// Child processes, killed when dropped.
struct Processes(Vec<Option<Child>>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in self.0.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn range_status(
    transport: &Arc<Transport>,
    addr: &str,
) -> Option<cairn_server::rpc::ReplicaStatus> {
    match transport
        .call_addr(
            addr,
            RpcRequest::RangeStatus(RangeId(1)),
            Duration::from_secs(2),
        )
        .await
    {
        Ok(RpcResponse::RangeStatus(s)) => s,
        _ => None,
    }
}

async fn put(client: &Client, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
    let ba = BatchRequest::new(RangeId(0), vec![Request::Put { key, value }]);
    client
        .dist_sender()
        .send(ba)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn get(client: &Client, key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
    let ba = BatchRequest::new(RangeId(0), vec![Request::Get { key }]);
    match client
        .dist_sender()
        .send(ba)
        .await
        .map_err(|e| e.to_string())?
        .responses
        .pop()
    {
        Some(Response::Get { value }) => Ok(value),
        other => Err(format!("unexpected answer {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_leaseholder_process_loses_no_acknowledged_write() {
    cairn_tests::init_logging();
    let bin = cairn_binary();
    let dir = tempfile::tempdir().expect("temporary directory");
    let rpc: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let mut procs = Processes(Vec::new());
    for (i, addr) in rpc.iter().enumerate() {
        let log =
            std::fs::File::create(dir.path().join(format!("n{}.log", i + 1))).expect("log file");
        let child = Command::new(&bin)
            .args(["start", "--insecure", "--store"])
            .arg(dir.path().join(format!("n{}", i + 1)))
            .args(["--listen-addr", addr])
            .args(["--http-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--sql-addr", &format!("127.0.0.1:{}", free_port())])
            .args(["--join", &rpc[0]])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a node");
        procs.0.push(Some(child));
    }
    // The first node may take a moment to listen; `cairn init` fails until it does.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let init = Command::new(&bin)
            .args(["init", "--insecure", "--host", &rpc[0]])
            .output()
            .expect("cairn init");
        if init.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&init.stderr).to_string();
        assert!(
            err.contains("Connection refused") && Instant::now() < deadline,
            "init failed: {err}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Wait for three replicas, one of them leading.
    let probe = Transport::new(Arc::new(Clock::system()), "test".into());
    let deadline = Instant::now() + Duration::from_secs(60);
    let leader = loop {
        assert!(
            Instant::now() < deadline,
            "the range never got three replicas and a leader"
        );
        let mut statuses = Vec::new();
        for a in &rpc {
            statuses.push(range_status(&probe, a).await);
        }
        if statuses.iter().all(Option::is_some)
            && let Some(l) = statuses
                .iter()
                .position(|s| s.as_ref().is_some_and(|s| s.is_leader))
        {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let survivor = (leader + 1) % 3;
    let client = Arc::new(
        Client::connect(&rpc[survivor], Duration::from_secs(3))
            .await
            .expect("client"),
    );

    // Steady writes through the DistSender; remember what was acknowledged.
    let acked: Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (client, acked, stop) = (client.clone(), acked.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let (k, v) = (format!("p{i:06}").into_bytes(), i.to_be_bytes().to_vec());
                if put(&client, k.clone(), v.clone()).await.is_ok() {
                    acked.lock().insert(k, v);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = acked.lock().len();
    assert!(before > 10, "writes are flowing ({before})");

    let killed_at = Instant::now();
    if let Some(mut child) = procs.0[leader].take() {
        child.kill().expect("SIGKILL the leaseholder");
        let _ = child.wait();
    }
    let recovered = loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if acked.lock().len() > before + 5 {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "no write succeeded after kill -9"
        );
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.expect("writer");
    eprintln!("kill -9 of the leaseholder process: writes resumed after {recovered:?}");

    let acked = acked.lock().clone();
    for (k, v) in &acked {
        let got = get(&client, k.clone()).await.expect("read back");
        assert_eq!(
            got.as_ref(),
            Some(v),
            "acknowledged write {} lost",
            String::from_utf8_lossy(k)
        );
    }
}
