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

/// `k` distinct ports free on `ip` now.
fn free_ports(ip: &str, k: usize) -> Vec<u16> {
    let held: Vec<_> = (0..k)
        .map(|_| std::net::TcpListener::bind((ip, 0)).expect("bind"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

pub struct ProcessCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub rpc: Vec<String>,
    /// Each node's SQL (Postgres wire) address; it keeps it across restarts.
    pub sql: Vec<String>,
    http: Vec<String>,
    procs: Vec<Option<Child>>,
    /// Nodes stopped with SIGSTOP.
    paused: Vec<bool>,
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
        let ports: Vec<Vec<u16>> = ips.iter().map(|ip| free_ports(ip, 3)).collect();
        let addrs = |k: usize| -> Vec<String> {
            ips.iter()
                .zip(&ports)
                .map(|(ip, p)| format!("{ip}:{}", p[k]))
                .collect()
        };
        let mut c = ProcessCluster {
            dir,
            bin,
            rpc: addrs(0),
            sql: addrs(1),
            http: addrs(2),
            procs: Vec::new(),
            paused: vec![false; n],
            rules: Vec::new(),
            probe: Transport::new(Arc::new(Clock::system()), test_client_addr()),
        };
        for i in 0..n {
            let child = c.spawn(i);
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
        // The first range gets three replicas (fewer with fewer nodes).
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let statuses = c.statuses().await;
            if statuses.iter().flatten().count() >= n.min(3) && c.leader().await.is_some() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the range never got {} replicas and a leader",
                n.min(3)
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        c
    }

    fn spawn(&self, i: usize) -> Child {
        // Appended to, so a restarted node's log follows its previous life's.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{}.log", i + 1)))
            .expect("log file");
        Command::new(&self.bin)
            .args(["--log-format", "json"])
            .args(["start", "--insecure", "--store"])
            .arg(self.dir.path().join(format!("n{}", i + 1)))
            .args(["--listen-addr", &self.rpc[i]])
            .args(["--http-addr", &self.http[i]])
            .args(["--sql-addr", &self.sql[i]])
            .args(["--join", &self.rpc[0]])
            .arg("--clock-offset-file")
            .arg(self.clock_file(i))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start a node")
    }

    /// The JSON a node's HTTP status port answers at `path`, from the first running,
    /// unpaused node that answers within 2 seconds.
    pub async fn status_json(&self, path: &str) -> Option<serde_json::Value> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for i in (0..self.len()).filter(|&i| self.is_up(i) && !self.is_paused(i)) {
            let get = async {
                let mut s = tokio::net::TcpStream::connect(&self.http[i]).await.ok()?;
                let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                s.write_all(req.as_bytes()).await.ok()?;
                let mut raw = String::new();
                s.read_to_string(&mut raw).await.ok()?;
                let (head, body) = raw.split_once("\r\n\r\n")?;
                head.starts_with("HTTP/1.1 200")
                    .then(|| serde_json::from_str(body).ok())
                    .flatten()
            };
            if let Ok(Some(v)) = tokio::time::timeout(Duration::from_secs(2), get).await {
                return Some(v);
            }
        }
        None
    }

    /// The node (0-based) holding the lease of a random table range (or, if none
    /// answers, of the first range); `pick` chooses among the candidates' count.
    pub async fn some_leaseholder(
        &self,
        pick: impl FnOnce(usize) -> usize,
    ) -> Option<(usize, String)> {
        if let (Some(ranges), Some(nodes)) = (
            self.status_json("/_status/ranges").await,
            self.status_json("/_status/nodes").await,
        ) {
            let index_of = |node_id: u64| {
                let addr = nodes["nodes"]
                    .as_array()?
                    .iter()
                    .find(|n| n["node_id"].as_u64() == Some(node_id))?["address"]
                    .as_str()?
                    .to_string();
                self.rpc.iter().position(|a| *a == addr)
            };
            let held: Vec<(usize, String)> = ranges["ranges"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|r| {
                    r["start_key"]
                        .as_str()
                        .is_some_and(|k| k.starts_with("/Table/"))
                })
                .filter_map(|r| {
                    let node = index_of(r["lease_holder"].as_u64()?)?;
                    Some((node, format!("r{}", r["range_id"])))
                })
                .collect();
            if !held.is_empty() {
                return Some(held[pick(held.len()) % held.len()].clone());
            }
        }
        Some((self.leader().await?, "r1".into()))
    }

    /// Node `i`'s log (JSON lines, every life of the node).
    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}.log", i + 1))
    }

    fn clock_file(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{}.clock-offset", i + 1))
    }

    /// How many nodes the cluster has (up or not).
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Whether node `i` runs (it may be paused).
    pub fn is_up(&self, i: usize) -> bool {
        self.procs[i].is_some()
    }

    /// Whether node `i` is stopped with SIGSTOP.
    pub fn is_paused(&self, i: usize) -> bool {
        self.paused[i]
    }

    /// A Postgres URL for node `i`'s SQL port.
    pub fn sql_url(&self, i: usize) -> String {
        format!(
            "postgresql://root@{}/defaultdb?sslmode=disable&connect_timeout=3",
            self.sql[i]
        )
    }

    /// The directory of the nodes' stores and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Starts node `i` again on its store, if it is down.
    pub fn restart(&mut self, i: usize) {
        if self.procs[i].is_none() {
            self.procs[i] = Some(self.spawn(i));
        }
    }

    /// `SIGSTOP` (`stop`) or `SIGCONT` to node `i`: a process that stops answering
    /// without closing its connections, as a long GC pause or a hung disk would.
    pub fn pause(&mut self, i: usize, stop: bool) {
        if let Some(child) = &self.procs[i] {
            let signal = if stop { "-STOP" } else { "-CONT" };
            let out = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .output()
                .expect("run kill");
            assert!(out.status.success(), "kill {signal} failed");
            self.paused[i] = stop;
        }
    }

    /// Shifts node `i`'s clock by `millis` (the node reads its offset file every 100 ms).
    pub fn set_clock_offset(&self, i: usize, millis: i64) {
        std::fs::write(self.clock_file(i), millis.to_string()).expect("write the clock offset");
    }

    /// Runs `cairn debug check-consistency` through node `i`; returns whether every
    /// range's replicas agree, and the report.
    pub fn check_consistency(&self, i: usize) -> (bool, String) {
        let out = Command::new(&self.bin)
            .args(["debug", "check-consistency", "--host", &self.rpc[i]])
            .output()
            .expect("cairn debug check-consistency");
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), report)
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
        self.paused[i] = false;
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

    /// Cuts every link between a node of `a` and a node of `b`.
    pub fn partition_between(&mut self, a: &[usize], b: &[usize]) {
        for &x in a {
            for &y in b {
                self.partition(x, y);
            }
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
