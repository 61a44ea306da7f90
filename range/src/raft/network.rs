//! openraft's network for one range: messages go out through the node's
//! [`RaftTransport`], which batches the messages of all ranges bound for the same node.
//!
//! Snapshots are streamed, never sent as one message:
//!
//! ```text
//!   leader                                   follower
//!   chunk 0 {header: vote, meta, descriptor,  ──▶  stage
//!            first ~1 MiB of the range's data}
//!   chunk 1 {next ~1 MiB}                     ──▶  stage
//!   ...
//!   chunk n {rest, last}                      ──▶  install everything in one synced write
//!                                             ◀──  SnapshotResponse
//! ```
//!
//! Each chunk waits for its acknowledgement before the next is read from the leader's
//! engine snapshot, so a snapshot costs one chunk of memory on each side in flight, plus
//! the staged data on the receiver until it installs atomically.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cairn_kv::RangeId;
use cairn_kv::api::ReplicaId;
use cairn_kv::storage::Space;
use openraft::OptionalSend;
use openraft::errors::{NetworkError, RPCError, ReplicationClosed, StreamingError, Unreachable};
use openraft::network::{RPCOption, RaftNetworkFactory, RaftNetworkV2};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::type_config::alias::{SnapshotOf, VoteOf};

use super::state_machine::{SnapshotData, data_spans};
use super::{
    RaftEnvelope, RaftReply, RaftRequest, RaftTransport, ReplicaNode, SnapshotChunk,
    SnapshotHeader, TypeConfig,
};

/// Bytes of keys and values per snapshot chunk.
const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;

/// Makes a client per target replica of one range.
pub struct NetworkFactory {
    range_id: RangeId,
    from: ReplicaId,
    transport: Arc<dyn RaftTransport>,
}

impl NetworkFactory {
    pub fn new(range_id: RangeId, from: ReplicaId, transport: Arc<dyn RaftTransport>) -> Self {
        NetworkFactory {
            range_id,
            from,
            transport,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = NetClient;

    async fn new_client(&mut self, target: u64, node: &ReplicaNode) -> NetClient {
        NetClient {
            range_id: self.range_id,
            from: self.from,
            to: ReplicaId(target),
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

/// Sends one range's messages to one replica.
pub struct NetClient {
    range_id: RangeId,
    from: ReplicaId,
    to: ReplicaId,
    node: ReplicaNode,
    transport: Arc<dyn RaftTransport>,
}

static SNAPSHOT_STREAMS: AtomicU64 = AtomicU64::new(1);

impl NetClient {
    async fn call(&self, body: RaftRequest, timeout: Duration) -> Result<RaftReply, String> {
        let msg = RaftEnvelope {
            range_id: self.range_id,
            from: self.from,
            to: self.to,
            to_node: self.node.node_id,
            to_addr: self.node.addr.clone(),
            body,
        };
        self.transport.send(msg, timeout).await
    }

    fn unexpected(&self, reply: &RaftReply) -> String {
        format!(
            "{}: unexpected reply from replica {}: {reply:?}",
            self.range_id, self.to
        )
    }

    /// Streams `data` to the target; returns the final reply.
    async fn stream_snapshot(
        &self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        timeout: Duration,
    ) -> Result<SnapshotResponse<TypeConfig>, String> {
        let SnapshotData::Outgoing {
            reader,
            descriptor,
            frozen,
            merged,
        } = snapshot.snapshot
        else {
            return Err("asked to send an incoming snapshot".into());
        };
        let descriptor = descriptor.ok_or("no range descriptor to snapshot yet")?;
        let stream_id = SNAPSHOT_STREAMS.fetch_add(1, Ordering::Relaxed);
        let mut header = Some(Box::new(SnapshotHeader {
            vote,
            meta: snapshot.meta,
            descriptor: descriptor.clone(),
            frozen,
            merged,
        }));
        let mut seq = 0u32;
        let mut spans = data_spans(&descriptor).into_iter().peekable();
        // Where the next chunk starts: a span and the first key in it not yet sent.
        let mut resume = spans.peek().map(|s| s.start.clone());
        loop {
            let (kvs, next) = match (spans.peek(), resume.take()) {
                (Some(span), Some(from)) => read_chunk(&*reader, &from, &span.end)?,
                _ => (Vec::new(), None),
            };
            match next {
                Some(k) => resume = Some(k),
                None => {
                    spans.next();
                    resume = spans.peek().map(|s| s.start.clone());
                }
            }
            let last = resume.is_none();
            let chunk = SnapshotChunk {
                stream_id,
                seq,
                header: header.take(),
                kvs,
                last,
            };
            match (
                self.call(RaftRequest::Snapshot(chunk), timeout).await?,
                last,
            ) {
                (RaftReply::SnapshotChunkStaged, false) => seq += 1,
                (RaftReply::SnapshotInstalled(resp), true) => return Ok(resp),
                (other, _) => return Err(self.unexpected(&other)),
            }
        }
    }
}

/// Reads up to a chunk's worth of entries of `[from, end)`; returns them and the key to
/// resume at if the span has more.
#[allow(clippy::type_complexity)]
fn read_chunk(
    reader: &dyn cairn_kv::storage::Snapshot,
    from: &[u8],
    end: &[u8],
) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Option<Vec<u8>>), String> {
    let mut it = reader
        .iter(Space::Data, from, Some(end))
        .map_err(|e| e.to_string())?;
    it.seek_to_first().map_err(|e| e.to_string())?;
    let mut kvs = Vec::new();
    let mut bytes = 0usize;
    while let Some((k, v)) = it.current() {
        if bytes >= SNAPSHOT_CHUNK_BYTES {
            return Ok((kvs, Some(k.to_vec())));
        }
        bytes += k.len() + v.len();
        kvs.push((k.to_vec(), v.to_vec()));
        it.next().map_err(|e| e.to_string())?;
    }
    Ok((kvs, None))
}

fn rpc_error(e: String) -> RPCError<TypeConfig> {
    RPCError::Unreachable(Unreachable::from_string(e))
}

impl RaftNetworkV2<TypeConfig> for NetClient {
    type SnapshotData = SnapshotData;

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::AppendEntries(rpc), option.soft_ttl())
            .await
            .map_err(rpc_error)?
        {
            RaftReply::AppendEntries(r) => Ok(r),
            other => Err(RPCError::Network(NetworkError::from_string(
                self.unexpected(&other),
            ))),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::Vote(rpc), option.soft_ttl())
            .await
            .map_err(rpc_error)?
        {
            RaftReply::Vote(r) => Ok(r),
            other => Err(RPCError::Network(NetworkError::from_string(
                self.unexpected(&other),
            ))),
        }
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::PreVote(rpc), option.soft_ttl())
            .await
            .map_err(rpc_error)?
        {
            RaftReply::Vote(r) => Ok(r),
            other => Err(RPCError::Network(NetworkError::from_string(
                self.unexpected(&other),
            ))),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        match self
            .call(RaftRequest::TransferLeader(req), option.soft_ttl())
            .await
            .map_err(rpc_error)?
        {
            RaftReply::TransferLeader(r) => Ok(r),
            other => Err(RPCError::Network(NetworkError::from_string(
                self.unexpected(&other),
            ))),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: VoteOf<TypeConfig>,
        snapshot: SnapshotOf<TypeConfig, SnapshotData>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        let timeout = option.hard_ttl();
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = self.stream_snapshot(vote, snapshot, timeout) => {
                res.map_err(|e| StreamingError::Unreachable(Unreachable::from_string(e)))
            }
        }
    }
}
