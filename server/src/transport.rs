//! Node-to-node transport: one multiplexed TCP connection per pair of nodes.
//!
//! ```text
//!   ranges' Raft messages, batches ─▶ per-peer queue ─▶ writer task: every envelope
//!   waiting in the queue goes out in one frame (one write)
//!
//!   reader task ─▶ for each envelope: merge its HLC reading into our clock, then
//!                  a request: handle it on its own task, answer on the same connection
//!                  a response: wake the caller waiting for that id
//! ```
//!
//! Either node may dial; a connection, once up, carries requests both ways. Callers wait
//! with a deadline, so a dead or partitioned peer costs a timeout, never a hang. A peer
//! that refused a dial is not dialled again for a short while.
//!
//! The fault layer ([`Faults`]) sits on the send path: tests cut, drop or delay the
//! messages between chosen pairs of nodes (there is no `tc netem` on these machines).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use cairn_kv::NodeId;
use cairn_kv::api::{self, BatchRequest, BatchResponse, BoxFuture, Sender};
use cairn_kv::hlc::Clock;
use cairn_range::raft::{RaftEnvelope, RaftReply, RaftTransport};
use parking_lot::{Mutex, RwLock};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use crate::rpc::{Body, Envelope, Frame, RpcRequest, RpcResponse, decode_frame, encode_frame};

/// Serves requests that arrive from other nodes.
pub trait Handler: Send + Sync {
    fn handle(&self, req: RpcRequest) -> BoxFuture<'_, Result<RpcResponse, String>>;
}

/// What the fault layer does to a message between two nodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fault {
    /// Every message is lost.
    Cut,
    /// Each message is lost with this probability.
    Drop(f64),
    /// Every message arrives this much later.
    Delay(Duration),
}

/// Faults on the messages this node sends, by destination.
#[derive(Default)]
pub struct Faults {
    rules: RwLock<HashMap<NodeId, Fault>>,
    seed: AtomicU64,
}

impl Faults {
    pub fn set(&self, to: NodeId, fault: Fault) {
        self.rules.write().insert(to, fault);
    }

    pub fn clear(&self, to: NodeId) {
        self.rules.write().remove(&to);
    }

    pub fn clear_all(&self) {
        self.rules.write().clear();
    }

    /// `None`: drop the message; `Some(d)`: send it after `d`.
    fn apply(&self, to: Option<NodeId>) -> Option<Duration> {
        let fault = to.and_then(|n| self.rules.read().get(&n).copied());
        match fault {
            None => Some(Duration::ZERO),
            Some(Fault::Cut) => None,
            Some(Fault::Delay(d)) => Some(d),
            Some(Fault::Drop(p)) => {
                // A cheap deterministic generator; fault tests need a rate, not crypto.
                let x = self
                    .seed
                    .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
                    .wrapping_mul(0xD6E8_FEB8_6659_FD93);
                let sample = (x >> 11) as f64 / (1u64 << 53) as f64;
                if sample < p {
                    None
                } else {
                    Some(Duration::ZERO)
                }
            }
        }
    }
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    #[error("{0} unreachable: {1}")]
    Unreachable(String, String),
    #[error("no answer from {0} within {1:?}")]
    Timeout(String, Duration),
    /// The connection broke after the request was sent: it may or may not have been
    /// handled.
    #[error("connection to {0} lost with the request in flight")]
    Lost(String),
    #[error("{0}")]
    Remote(String),
}

type Pending = Mutex<HashMap<u64, oneshot::Sender<Result<RpcResponse, String>>>>;

/// One connection to a peer.
struct Conn {
    peer: RwLock<Option<NodeId>>,
    out: mpsc::UnboundedSender<Envelope>,
    pending: Pending,
    alive: AtomicBool,
}

impl Conn {
    /// Marks the connection dead; callers waiting on it see their request lost.
    fn close(&self) {
        self.alive.store(false, Ordering::Release);
        self.pending.lock().clear();
    }
}

/// The node's transport.
pub struct Transport {
    node_id: AtomicU64,
    addr: String,
    clock: Arc<Clock>,
    conns: Mutex<HashMap<NodeId, Arc<Conn>>>,
    addrs: RwLock<HashMap<NodeId, String>>,
    failed_dials: Mutex<HashMap<NodeId, Instant>>,
    handler: RwLock<Option<Weak<dyn Handler>>>,
    faults: Faults,
    next_id: AtomicU64,
    closed: AtomicBool,
    /// Reader and writer tasks of every connection, aborted on close.
    conn_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// How long a refused dial keeps a peer from being dialled again.
const DIAL_BACKOFF: Duration = Duration::from_millis(300);
const DIAL_TIMEOUT: Duration = Duration::from_secs(2);
/// Envelopes coalesced into one frame at most.
const MAX_ENVELOPES_PER_FRAME: usize = 512;

impl Transport {
    pub fn new(clock: Arc<Clock>, addr: String) -> Arc<Transport> {
        Arc::new(Transport {
            node_id: AtomicU64::new(0),
            addr,
            clock,
            conns: Mutex::new(HashMap::new()),
            addrs: RwLock::new(HashMap::new()),
            failed_dials: Mutex::new(HashMap::new()),
            handler: RwLock::new(None),
            faults: Faults::default(),
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            conn_tasks: Mutex::new(Vec::new()),
        })
    }

    pub fn set_node_id(&self, id: NodeId) {
        self.node_id.store(id.0, Ordering::Release);
    }

    pub fn node_id(&self) -> NodeId {
        NodeId(self.node_id.load(Ordering::Acquire))
    }

    pub fn set_handler(&self, handler: Weak<dyn Handler>) {
        *self.handler.write() = Some(handler);
    }

    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// Records where a node listens.
    pub fn set_addr(&self, node: NodeId, addr: String) {
        if node.0 != 0 {
            self.addrs.write().insert(node, addr);
        }
    }

    /// Connects to `addr` from this node's own IP address (the host of its advertised
    /// address), so that the peer, and a firewall between them, sees which node calls.
    /// Loopback addresses 127.0.0.N then tell nodes on one machine apart, and `iptables`
    /// can cut the link between two of them.
    async fn dial(&self, addr: &str) -> std::io::Result<TcpStream> {
        let target = tokio::net::lookup_host(addr)
            .await?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("{addr} resolves to nothing")))?;
        let local: Option<std::net::IpAddr> = self
            .addr
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.ip())
            .filter(|ip| !ip.is_unspecified() && ip.is_ipv4() == target.is_ipv4());
        let socket = if target.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        if let Some(ip) = local {
            socket.bind(std::net::SocketAddr::new(ip, 0))?;
        }
        socket.connect(target).await
    }

    /// Records `addr` for `node` unless an address is known already.
    pub fn learn_addr(&self, node: NodeId, addr: &str) {
        if node.0 != 0 && !addr.is_empty() && !self.addrs.read().contains_key(&node) {
            self.addrs
                .write()
                .entry(node)
                .or_insert_with(|| addr.to_string());
        }
    }

    /// Every node whose address is known.
    pub fn known_nodes(&self) -> Vec<(NodeId, String)> {
        let mut v: Vec<_> = self
            .addrs
            .read()
            .iter()
            .map(|(n, a)| (*n, a.clone()))
            .collect();
        v.sort();
        v
    }

    /// Accepts connections until the returned task is aborted.
    pub fn serve(self: &Arc<Self>, listener: TcpListener) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if me.closed.load(Ordering::Acquire) {
                    return;
                }
                let _ = stream.set_nodelay(true);
                me.clone().start_conn(stream, None);
            }
        })
    }

    /// Stops using every connection; later calls fail.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for (_, c) in self.conns.lock().drain() {
            c.close();
        }
        // Dropping the tasks drops the sockets: peers see the connections end.
        for t in self.conn_tasks.lock().drain(..) {
            t.abort();
        }
    }

    /// Sets a connection's tasks going and returns it. `expected`: the peer we dialled.
    fn start_conn(self: Arc<Self>, stream: TcpStream, expected: Option<NodeId>) -> Arc<Conn> {
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            peer: RwLock::new(expected),
            out: tx,
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
        });
        let (reader, writer) = stream.into_split();
        let hello = Frame::Hello {
            node_id: self.node_id().0,
            addr: self.addr.clone(),
        };
        let w = tokio::spawn(write_loop(writer, hello, rx, conn.clone()));
        let r = tokio::spawn(self.clone().read_loop(reader, conn.clone()));
        let mut tasks = self.conn_tasks.lock();
        tasks.retain(|t| !t.is_finished());
        tasks.push(w);
        tasks.push(r);
        conn
    }

    async fn read_loop(
        self: Arc<Self>,
        mut reader: tokio::net::tcp::OwnedReadHalf,
        conn: Arc<Conn>,
    ) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut greeted = false;
        loop {
            let frame = match decode_frame(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => match reader.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => continue,
                },
                Err(e) => {
                    tracing::warn!(error = %e, "closing connection after a malformed frame");
                    break;
                }
            };
            match frame {
                Frame::Hello { node_id, addr } => {
                    greeted = true;
                    if node_id != 0 {
                        let peer = NodeId(node_id);
                        self.set_addr(peer, addr);
                        *conn.peer.write() = Some(peer);
                        self.conns
                            .lock()
                            .entry(peer)
                            .or_insert_with(|| conn.clone());
                    }
                }
                Frame::Envelopes(_) if !greeted => {
                    tracing::warn!("closing connection that sent envelopes before hello");
                    break;
                }
                Frame::Envelopes(envs) => {
                    for env in envs {
                        self.receive(&conn, env);
                    }
                }
            }
        }
        conn.close();
        let peer = *conn.peer.read();
        if let Some(peer) = peer {
            let mut conns = self.conns.lock();
            if conns.get(&peer).is_some_and(|c| Arc::ptr_eq(c, &conn)) {
                conns.remove(&peer);
            }
        }
    }

    fn receive(self: &Arc<Self>, conn: &Arc<Conn>, env: Envelope) {
        let clock_ok = self.clock.update(env.hlc);
        match env.body {
            Body::Response(result) => {
                let result = match clock_ok {
                    Ok(_) => result,
                    Err(e) => Err(e.to_string()),
                };
                if let Some(tx) = conn.pending.lock().remove(&env.id) {
                    let _ = tx.send(result);
                }
            }
            Body::Request(req) => {
                let me = self.clone();
                let conn = conn.clone();
                tokio::spawn(async move {
                    let result = match clock_ok {
                        Err(e) => Err(format!("refused: {e}")),
                        Ok(_) => me.dispatch(req).await,
                    };
                    let reply = Envelope {
                        id: env.id,
                        hlc: me.clock.now(),
                        body: Body::Response(result),
                    };
                    let peer = *conn.peer.read();
                    me.enqueue(&conn, peer, reply);
                });
            }
        }
    }

    async fn dispatch(&self, req: RpcRequest) -> Result<RpcResponse, String> {
        let handler = self.handler.read().as_ref().and_then(Weak::upgrade);
        match handler {
            Some(h) => h.handle(req).await,
            None => Err("node is not serving".into()),
        }
    }

    fn enqueue(&self, conn: &Arc<Conn>, peer: Option<NodeId>, env: Envelope) {
        match self.faults.apply(peer) {
            None => {}
            Some(d) if d.is_zero() => {
                let _ = conn.out.send(env);
            }
            Some(d) => {
                let conn = conn.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(d).await;
                    let _ = conn.out.send(env);
                });
            }
        }
    }

    /// The live connection to `node`, dialling it if needed.
    async fn conn_to(self: &Arc<Self>, node: NodeId) -> Result<Arc<Conn>, TransportError> {
        if let Some(c) = self.conns.lock().get(&node)
            && c.alive.load(Ordering::Acquire)
        {
            return Ok(c.clone());
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(TransportError::Unreachable(
                node.to_string(),
                "transport closed".into(),
            ));
        }
        if let Some(when) = self.failed_dials.lock().get(&node)
            && when.elapsed() < DIAL_BACKOFF
        {
            return Err(TransportError::Unreachable(
                node.to_string(),
                "recent dial failed".into(),
            ));
        }
        let addr = self.addrs.read().get(&node).cloned().ok_or_else(|| {
            TransportError::Unreachable(node.to_string(), "address unknown".into())
        })?;
        match tokio::time::timeout(DIAL_TIMEOUT, self.dial(&addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                self.failed_dials.lock().remove(&node);
                let conn = self.clone().start_conn(stream, Some(node));
                let mut conns = self.conns.lock();
                // Another task may have connected meanwhile; keep one.
                match conns.get(&node) {
                    Some(existing) if existing.alive.load(Ordering::Acquire) => {
                        Ok(existing.clone())
                    }
                    _ => {
                        conns.insert(node, conn.clone());
                        Ok(conn)
                    }
                }
            }
            Ok(Err(e)) => {
                self.failed_dials.lock().insert(node, Instant::now());
                Err(TransportError::Unreachable(
                    format!("{node} at {addr}"),
                    e.to_string(),
                ))
            }
            Err(_) => {
                self.failed_dials.lock().insert(node, Instant::now());
                Err(TransportError::Unreachable(
                    format!("{node} at {addr}"),
                    "dial timed out".into(),
                ))
            }
        }
    }

    async fn call_on(
        &self,
        conn: &Arc<Conn>,
        peer: Option<NodeId>,
        name: &str,
        req: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, TransportError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.pending.lock().insert(id, tx);
        let env = Envelope {
            id,
            hlc: self.clock.now(),
            body: Body::Request(req),
        };
        self.enqueue(conn, peer, env);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(Ok(resp))) => Ok(resp),
            Ok(Ok(Err(remote))) => Err(TransportError::Remote(remote)),
            // The request may have reached the peer before the connection broke.
            Ok(Err(_)) => Err(TransportError::Lost(name.into())),
            Err(_) => {
                conn.pending.lock().remove(&id);
                Err(TransportError::Timeout(name.into(), timeout))
            }
        }
    }

    /// Sends `req` to `node` and waits for its answer.
    pub async fn call(
        self: &Arc<Self>,
        node: NodeId,
        req: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, TransportError> {
        let conn = self.conn_to(node).await?;
        self.call_on(&conn, Some(node), &node.to_string(), req, timeout)
            .await
    }

    /// Sends `req` to whoever listens at `addr` (for nodes not known by id yet) over a
    /// connection of its own.
    pub async fn call_addr(
        self: &Arc<Self>,
        addr: &str,
        req: RpcRequest,
        timeout: Duration,
    ) -> Result<RpcResponse, TransportError> {
        let stream = match tokio::time::timeout(DIAL_TIMEOUT, self.dial(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(TransportError::Unreachable(addr.into(), e.to_string())),
            Err(_) => {
                return Err(TransportError::Unreachable(
                    addr.into(),
                    "dial timed out".into(),
                ));
            }
        };
        let conn = self.clone().start_conn(stream, None);
        let result = self.call_on(&conn, None, addr, req, timeout).await;
        // The connection is kept only if the peer said who it is (then it is shared).
        if conn.peer.read().is_none() {
            conn.close();
            let _ = conn.out.send(Envelope {
                id: 0,
                hlc: self.clock.now(),
                body: Body::Response(Err("closing".into())),
            });
        }
        result
    }

    /// A [`Sender`] for batches to `node`.
    pub fn sender(self: &Arc<Self>, node: NodeId) -> RemoteSender {
        RemoteSender {
            transport: self.clone(),
            node,
            timeout: Duration::from_secs(10),
        }
    }
}

async fn write_loop(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    hello: Frame,
    mut rx: mpsc::UnboundedReceiver<Envelope>,
    conn: Arc<Conn>,
) {
    let mut buf = BytesMut::new();
    if encode_frame(&hello, &mut buf).is_err() || writer.write_all(&buf).await.is_err() {
        conn.close();
        return;
    }
    while let Some(first) = rx.recv().await {
        if !conn.alive.load(Ordering::Acquire) {
            break;
        }
        let mut batch = vec![first];
        while batch.len() < MAX_ENVELOPES_PER_FRAME {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        buf.clear();
        if let Err(e) = encode_frame(&Frame::Envelopes(batch), &mut buf) {
            tracing::error!(error = %e, "dropping a frame that cannot be encoded");
            continue;
        }
        if writer.write_all(&buf).await.is_err() {
            break;
        }
    }
    conn.close();
    let _ = writer.shutdown().await;
}

/// The transport as the Raft groups of the store see it.
pub struct RaftChannel(pub Arc<Transport>);

impl RaftTransport for RaftChannel {
    fn send(
        &self,
        msg: RaftEnvelope,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<RaftReply, String>> {
        Box::pin(async move {
            let to = msg.to_node;
            self.0.learn_addr(to, &msg.to_addr);
            match self
                .0
                .call(to, RpcRequest::Raft(Box::new(msg)), timeout)
                .await
            {
                Ok(RpcResponse::Raft(reply)) => Ok(reply),
                Ok(other) => Err(format!("unexpected answer from {to}: {other:?}")),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}

/// Sends batches to one node over the transport.
#[derive(Clone)]
pub struct RemoteSender {
    transport: Arc<Transport>,
    node: NodeId,
    timeout: Duration,
}

impl Sender for RemoteSender {
    fn send(&self, batch: BatchRequest) -> BoxFuture<'_, Result<BatchResponse, api::Error>> {
        Box::pin(async move {
            let (range_id, write) = (batch.header.range_id, batch.is_write());
            match self
                .transport
                .call(self.node, RpcRequest::Batch(batch), self.timeout)
                .await
            {
                Ok(RpcResponse::Batch(r)) => r,
                Ok(other) => Err(api::Error::InvalidRequest(format!(
                    "unexpected answer: {other:?}"
                ))),
                // A write that reached the node may have been applied there: it must not
                // be sent again as if it had not.
                Err(e) if write && !matches!(e, TransportError::Unreachable(..)) => {
                    Err(api::Error::AmbiguousResult {
                        range_id,
                        reason: format!("{}: {e}", self.node),
                    })
                }
                Err(e) => Err(api::Error::NodeUnreachable {
                    node_id: self.node,
                    reason: e.to_string(),
                }),
            }
        })
    }
}
