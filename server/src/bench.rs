//! `cairn bench kv-put`: closed-loop put throughput and latency against a Cairn cluster,
//! and against etcd's v3 API (through its JSON gateway) for a side-by-side figure.
//!
//! Each of `--concurrency` workers puts a fresh key with a `--value-bytes` value, waits
//! for the answer, and repeats until `--duration` passes. Latencies go into an HDR
//! histogram; the report is operations per second and p50/p99/max.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use cairn_kv::api::{BatchRequest, Request, Sender};
use cairn_kv::hlc::Clock;
use cairn_kv::{NodeId, RangeId};
use cairn_txn::{DistSender, NodeDialer};
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::rpc::{RpcRequest, RpcResponse};
use crate::transport::Transport;

/// A KV client of a Cairn cluster from outside it: a transport with no node id and a
/// DistSender over it.
pub struct Client {
    dist: Arc<DistSender>,
    clock: Arc<Clock>,
    /// Reads the address book again every second, stopped on drop.
    address_book: tokio::task::JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.address_book.abort();
    }
}

/// Asks the node at `addr` for every node's address and remembers them.
async fn learn_addresses(transport: &Arc<Transport>, addr: &str) -> Result<(), String> {
    match transport
        .call_addr(addr, RpcRequest::Nodes, Duration::from_secs(5))
        .await
    {
        Ok(RpcResponse::Nodes(nodes)) => {
            for (n, a) in nodes {
                transport.set_addr(n, a);
            }
            Ok(())
        }
        Ok(other) => Err(format!("unexpected answer from {addr}: {other:?}")),
        Err(e) => Err(format!("connecting to {addr}: {e}")),
    }
}

struct ClientDialer(Arc<Transport>);

impl NodeDialer for ClientDialer {
    fn sender(&self, node: NodeId) -> Arc<dyn Sender> {
        Arc::new(self.0.sender(node))
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.0.known_nodes().into_iter().map(|(n, _)| n).collect()
    }
}

impl Client {
    /// Connects through the node at `addr` and learns every node's address.
    pub async fn connect(addr: &str, request_timeout: Duration) -> Result<Client, String> {
        Client::connect_from("client", addr, request_timeout).await
    }

    /// Like [`connect`](Client::connect), dialling from `local` (an `ip:port` whose IP
    /// the connections are bound to, or a name to leave the choice to the system).
    pub async fn connect_from(
        local: &str,
        addr: &str,
        request_timeout: Duration,
    ) -> Result<Client, String> {
        let clock = Arc::new(Clock::system());
        let transport = Transport::new(clock.clone(), local.into());
        learn_addresses(&transport, addr).await?;
        // The node asked may not have known every node yet (one that joined a moment
        // ago), and nodes come and go: ask again every second, any known node, the
        // first one first. Without this, a client that missed a node's address could
        // never reach a range whose only leaseholder left is that node.
        let address_book = {
            let transport = transport.clone();
            let first = addr.to_string();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let mut sources = vec![first.clone()];
                    sources.extend(transport.known_nodes().into_iter().map(|(_, a)| a));
                    for source in sources {
                        if learn_addresses(&transport, &source).await.is_ok() {
                            break;
                        }
                    }
                }
            })
        };
        let dist = Arc::new(DistSender::new(
            Arc::new(ClientDialer(transport.clone())),
            request_timeout,
        ));
        Ok(Client {
            dist,
            clock,
            address_book,
        })
    }

    pub fn dist_sender(&self) -> &DistSender {
        &self.dist
    }

    /// A transaction starter through this client.
    pub fn db(&self) -> cairn_txn::Db {
        cairn_txn::Db::new(self.dist.clone(), self.clock.clone())
    }
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub target: String,
    pub concurrency: usize,
    pub value_bytes: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub ops_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn histogram() -> Histogram<u64> {
    // 1 µs to 60 s at 3 significant digits: constant, valid bounds.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

fn report(
    target: &str,
    concurrency: usize,
    value_bytes: usize,
    hist: &Histogram<u64>,
    errors: u64,
    secs: f64,
) -> Report {
    let ms = |us: u64| us as f64 / 1000.0;
    Report {
        target: target.into(),
        concurrency,
        value_bytes,
        ops: hist.len(),
        errors,
        seconds: secs,
        ops_per_sec: hist.len() as f64 / secs,
        p50_ms: ms(hist.value_at_quantile(0.50)),
        p99_ms: ms(hist.value_at_quantile(0.99)),
        max_ms: ms(hist.max()),
    }
}

/// Runs `concurrency` workers for `duration`, each calling `op` in a loop; returns the
/// merged latency histogram and the error count.
async fn closed_loop<F, Fut>(
    concurrency: usize,
    duration: Duration,
    op: F,
) -> (Histogram<u64>, u64, f64)
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<(), String>> + Send,
{
    let op = Arc::new(op);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut errors = 0u64;
            let mut i = 0u64;
            let mut last_error = None;
            while Instant::now() < deadline {
                i += 1;
                let t = Instant::now();
                match op(w, i).await {
                    Ok(()) => {
                        let us = u64::try_from(t.elapsed().as_micros())
                            .unwrap_or(u64::MAX)
                            .max(1);
                        let _ = hist.record(us);
                    }
                    Err(e) => {
                        errors += 1;
                        last_error = Some(e);
                    }
                }
            }
            if let Some(e) = last_error {
                eprintln!("worker {w}: {errors} errors, last: {e}");
            }
            (hist, errors)
        }));
    }
    let mut hist = histogram();
    let mut errors = 0;
    for t in tasks {
        if let Ok((h, e)) = t.await {
            let _ = hist.add(&h);
            errors += e;
        }
    }
    (hist, errors, started.elapsed().as_secs_f64())
}

/// Puts against a Cairn cluster reached through `addr`.
pub async fn cairn_puts(
    addr: &str,
    concurrency: usize,
    duration: Duration,
    value_bytes: usize,
) -> Result<Report, String> {
    let client = Arc::new(Client::connect(addr, Duration::from_secs(5)).await?);
    let value = Arc::new(vec![b'v'; value_bytes]);
    let run = std::process::id();
    let (hist, errors, secs) = closed_loop(concurrency, duration, move |w, i| {
        let client = client.clone();
        let value = value.clone();
        async move {
            let key = format!("bench/{run}/{w:04}/{i:012}").into_bytes();
            let put = BatchRequest::new(
                RangeId(0),
                vec![Request::Put {
                    key,
                    value: value.to_vec(),
                }],
            );
            client
                .dist
                .send(put)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
    Ok(report(
        "cairn",
        concurrency,
        value_bytes,
        &hist,
        errors,
        secs,
    ))
}

/// Where the transaction benchmark splits its keys: two-key transactions on one side
/// commit in one range, those with a key on each side in two.
const TXN_SPLIT: &[u8] = b"benchtxn/m";

/// Two-key write transactions of fresh keys against a Cairn cluster: both keys in one
/// range (`ranges == 1`: a one-phase commit, one Raft command) or in two ranges
/// (`ranges == 2`: intents on both, then the commit record, then asynchronous
/// resolution).
pub async fn cairn_txns(
    addr: &str,
    ranges: usize,
    concurrency: usize,
    duration: Duration,
    value_bytes: usize,
) -> Result<Report, String> {
    let client = Arc::new(Client::connect(addr, Duration::from_secs(5)).await?);
    let split = BatchRequest::new(
        RangeId(0),
        vec![Request::AdminSplit {
            split_key: TXN_SPLIT.to_vec(),
        }],
    );
    match client.dist.send(split).await {
        Ok(_) => {}
        Err(e) if e.to_string().contains("already starts there") => {}
        Err(e) => return Err(format!("splitting at {TXN_SPLIT:?}: {e}")),
    }
    let db = client.db();
    let value = Arc::new(vec![b'v'; value_bytes]);
    let run = std::process::id();
    let (hist, errors, secs) = closed_loop(concurrency, duration, move |w, i| {
        let db = db.clone();
        let value = value.clone();
        async move {
            let first = format!("benchtxn/a/{run}/{w:04}/{i:012}").into_bytes();
            let second = if ranges == 1 {
                format!("benchtxn/b/{run}/{w:04}/{i:012}")
            } else {
                format!("benchtxn/z/{run}/{w:04}/{i:012}")
            }
            .into_bytes();
            let mut txn = db.begin();
            txn.commit_with(vec![
                Request::Put {
                    key: first,
                    value: value.to_vec(),
                },
                Request::Put {
                    key: second,
                    value: value.to_vec(),
                },
            ])
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
        }
    })
    .await;
    Ok(report(
        &format!("cairn-txn-{ranges}-range"),
        concurrency,
        value_bytes,
        &hist,
        errors,
        secs,
    ))
}

/// Puts against etcd's v3 JSON gateway at `addr` (host:port), one HTTP/1.1 connection
/// per worker.
pub async fn etcd_puts(
    addr: &str,
    concurrency: usize,
    duration: Duration,
    value_bytes: usize,
) -> Result<Report, String> {
    let value_b64 = Arc::new(B64.encode(vec![b'v'; value_bytes]));
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to etcd at {addr}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("etcd handshake: {e}"))?;
        tokio::spawn(conn);
        senders.push(Arc::new(tokio::sync::Mutex::new(sender)));
    }
    let senders = Arc::new(senders);
    let host = Arc::new(addr.to_string());
    let run = std::process::id();
    let (hist, errors, secs) = closed_loop(concurrency, duration, move |w, i| {
        let senders = senders.clone();
        let value_b64 = value_b64.clone();
        let host = host.clone();
        async move {
            let key = B64.encode(format!("bench/{run}/{w:04}/{i:012}"));
            let body = format!(r#"{{"key":"{key}","value":"{value_b64}"}}"#);
            let req = hyper::Request::post("/v3/kv/put")
                .header(hyper::header::HOST, host.as_str())
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| e.to_string())?;
            let mut sender = senders[w].lock().await;
            let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            if !status.is_success() {
                return Err(format!(
                    "etcd answered {status}: {}",
                    String::from_utf8_lossy(&body)
                ));
            }
            Ok(())
        }
    })
    .await;
    Ok(report(
        "etcd",
        concurrency,
        value_bytes,
        &hist,
        errors,
        secs,
    ))
}
