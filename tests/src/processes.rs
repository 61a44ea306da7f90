//! A cluster of `cairn` processes: node i listens on its own loopback address
//! (127.K.0.i), so `iptables` (as root) can cut the link between two nodes, and
//! `kill -9` is a real crash.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_kv::RangeId;
use cairn_kv::api::{BatchRequest, Request, Response};
use cairn_kv::hlc::Clock;
use cairn_server::bench::Client;
use cairn_server::rpc::{ReplicaStatus, RpcRequest, RpcResponse};
use cairn_server::transport::Transport;

/// The `cairn` program: the harness's tests pass `env!("CARGO_BIN_EXE_cairn-under-test")`,
/// which cargo builds for them (the same code as the `cairn` binary).
pub fn cairn_binary(path: &str) -> PathBuf {
    let bin = PathBuf::from(path);
    assert!(bin.exists(), "{} is missing", bin.display());
    bin
}

/// The loopback subnet of this test process's clusters, 127.K.0.0/24 with K taken from
/// the process id, so that partitions made by one test process (nextest runs each test
/// in its own) do not cut another's links.
fn subnet() -> u32 {
    10 + std::process::id() % 240
}

/// Node `i`'s (0-based) address.
fn node_ip(i: usize) -> String {
    format!("127.{}.0.{}", subnet(), i + 1)
}

/// Where the test's own connections come from: an address no partition rule names.
fn test_client_addr() -> String {
    format!("127.{}.0.100:0", subnet())
}

/// A port free on `ip` now.
fn free_port(ip: &str) -> u16 {
    let l = std::net::TcpListener::bind((ip, 0)).expect("bind");
    l.local_addr().expect("local addr").port()
}

pub struct ProcessCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub rpc: Vec<String>,
    procs: Vec<Option<Child>>,
    /// iptables rules added, to remove on heal and on drop.
    rules: Vec<Vec<String>>,
    probe: Arc<Transport>,
}

impl ProcessCluster {
    /// Starts `n` node processes, initialises the cluster, and waits
    /// until the first range has three replicas and a leader.
    pub async fn start(bin: &str, n: usize) -> ProcessCluster {
        let bin = cairn_binary(bin);
        let dir = tempfile::tempdir().expect("temporary directory");
        let ips: Vec<String> = (0..n).map(node_ip).collect();
        let rpc: Vec<String> = ips
            .iter()
            .map(|ip| format!("{ip}:{}", free_port(ip)))
            .collect();
        let mut c = ProcessCluster {
            dir,
            bin,
            rpc,
            procs: Vec::new(),
            rules: Vec::new(),
            probe: Transport::new(Arc::new(Clock::system()), test_client_addr()),
        };
        for (i, ip) in ips.iter().enumerate() {
            let child = c.spawn(i, ip);
            c.procs.push(Some(child));
        }
        // The first node may take a moment to listen; `cairn init` fails until it does.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let init = Command::new(&c.bin)
                .args(["init", "--insecure", "--host", &c.rpc[0]])
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
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let statuses = c.statuses().await;
            if statuses.iter().all(Option::is_some) && c.leader().await.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the range never got {n} replicas and a leader"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c
    }

    fn spawn(&self, i: usize, ip: &str) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("n{}.log", i + 1)))
            .expect("log file");
        Command::new(&self.bin)
            .args(["start", "--insecure", "--store"])
            .arg(self.dir.path().join(format!("n{}", i + 1)))
            .args(["--listen-addr", &self.rpc[i]])
            .args(["--http-addr", &format!("{ip}:{}", free_port(ip))])
            .args(["--sql-addr", &format!("{ip}:{}", free_port(ip))])
            .args(["--join", &self.rpc[0]])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a node")
    }

    /// What each node (0-based) says of its replica of the first range.
    pub async fn statuses(&self) -> Vec<Option<ReplicaStatus>> {
        let mut out = Vec::new();
        for (i, a) in self.rpc.iter().enumerate() {
            if self.procs[i].is_none() {
                out.push(None);
                continue;
            }
            let s = match self
                .probe
                .call_addr(
                    a,
                    RpcRequest::RangeStatus(RangeId(1)),
                    Duration::from_secs(2),
                )
                .await
            {
                Ok(RpcResponse::RangeStatus(s)) => s,
                _ => None,
            };
            out.push(s);
        }
        out
    }

    /// The node (0-based) leading the first range, if one says so.
    pub async fn leader(&self) -> Option<usize> {
        self.statuses()
            .await
            .iter()
            .position(|s| s.as_ref().is_some_and(|s| s.is_leader))
    }

    /// A client that reaches the cluster through node `i`.
    pub async fn client(&self, i: usize) -> Client {
        Client::connect_from(&test_client_addr(), &self.rpc[i], Duration::from_secs(3))
            .await
            .expect("client")
    }

    /// `kill -9` of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.procs[i].take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }

    /// Drops every packet between nodes `a` and `b` (iptables, both directions).
    pub fn partition(&mut self, a: usize, b: usize) {
        for (from, to) in [(a, b), (b, a)] {
            let rule = vec![
                "INPUT".to_string(),
                "-s".into(),
                node_ip(from),
                "-d".into(),
                node_ip(to),
                "-j".into(),
                "DROP".into(),
            ];
            let out = Command::new("iptables")
                .arg("-A")
                .args(&rule)
                .output()
                .expect("run iptables");
            assert!(
                out.status.success(),
                "iptables failed (these tests need root and iptables): {}",
                String::from_utf8_lossy(&out.stderr)
            );
            self.rules.push(rule);
        }
    }

    /// Removes every partition.
    pub fn heal(&mut self) {
        for rule in self.rules.drain(..) {
            let _ = Command::new("iptables").arg("-D").args(&rule).output();
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The nodes' logs are the only record of what they did; show their ends.
            for i in 0..self.procs.len() {
                let path = self.dir.path().join(format!("n{}.log", i + 1));
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                eprintln!("--- last lines of node {} ({}) ---", i + 1, self.rpc[i]);
                for l in &lines[lines.len().saturating_sub(40)..] {
                    eprintln!("{l}");
                }
            }
        }
        self.heal();
        for c in self.procs.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub async fn put(
    client: &Client,
    key: Vec<u8>,
    value: Vec<u8>,
) -> Result<(), cairn_kv::api::Error> {
    let ba = BatchRequest::new(RangeId(0), vec![Request::Put { key, value }]);
    client.dist_sender().send(ba).await.map(|_| ())
}

pub async fn get(client: &Client, key: Vec<u8>) -> Result<Option<Vec<u8>>, cairn_kv::api::Error> {
    let ba = BatchRequest::new(RangeId(0), vec![Request::Get { key }]);
    match client.dist_sender().send(ba).await?.responses.pop() {
        Some(Response::Get { value }) => Ok(value),
        other => Err(cairn_kv::api::Error::InvalidRequest(format!(
            "unexpected answer {other:?}"
        ))),
    }
}
