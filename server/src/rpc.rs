//! The node-to-node wire protocol: messages and their framing.
//!
//! A connection carries frames, each `length (u32 BE) ++ crc32 (u32 BE) ++ postcard
//! body`. The first frame each way is a [`Frame::Hello`]; after that, frames carry
//! batches of [`Envelope`]s, requests and responses of any range, matched by id. Every
//! envelope carries the sender's HLC reading.
//!
//! The codec is pure: [`decode_frame`] takes what has been read so far and returns a
//! frame, `None` if more bytes are needed, or an error for bytes that can never become a
//! frame (too long, bad checksum, undecodable), after which the connection is closed.

use bytes::{Buf, BufMut, BytesMut};
use cairn_kv::api::{self, BatchRequest, BatchResponse};
use cairn_kv::{NodeId, RangeId, Timestamp};
use cairn_range::raft::{RaftEnvelope, RaftReply};
use serde::{Deserialize, Serialize};

/// Frames larger than this are refused (a snapshot chunk is about 1 MiB).
pub const MAX_FRAME_BYTES: usize = 64 << 20;
const HEADER_BYTES: usize = 8;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Frame {
    /// Who is at this end: node id (0 before it has one) and advertised address.
    Hello {
        node_id: u64,
        addr: String,
    },
    Envelopes(Vec<Envelope>),
}

/// A request or a response, matched by `id` on the connection it travels.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub id: u64,
    /// The sender's clock reading when it sent the envelope.
    pub hlc: Timestamp,
    pub body: Body,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Body {
    Request(RpcRequest),
    Response(Result<RpcResponse, String>),
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RpcRequest {
    Raft(Box<RaftEnvelope>),
    Batch(BatchRequest),
    /// From a node with no id yet: give me one.
    Join {
        addr: String,
    },
    /// From `cairn init`: bootstrap a new cluster on this node.
    Init,
    /// The state of this node's replica of a range.
    RangeStatus(RangeId),
    /// Benchmarks: create `count` empty ranges replicated on three live nodes.
    DebugIdleRanges {
        count: u64,
    },
    /// Every node this node knows, with its address (clients start here).
    Nodes,
    /// From `cairn node decommission` (`on`) or `recommission`: mark a node.
    Decommission {
        node_id: NodeId,
        on: bool,
    },
    /// From `cairn node status`: every node's liveness and replica counts.
    NodeStatuses,
    /// From `cairn debug check-consistency`: compare every range's replicas.
    CheckConsistency,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum RpcResponse {
    Raft(RaftReply),
    Batch(Result<BatchResponse, api::Error>),
    Join {
        node_id: NodeId,
        nodes: Vec<(NodeId, String)>,
    },
    Init {
        node_id: NodeId,
    },
    RangeStatus(Option<ReplicaStatus>),
    DebugIdleRanges {
        created: u64,
    },
    Nodes(Vec<(NodeId, String)>),
    NodeStatuses(Vec<crate::node::NodeStatus>),
    CheckConsistency(Vec<crate::consistency::RangeCheck>),
}

/// One replica's view of its range, for status pages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub is_leader: bool,
    pub applied_index: u64,
    pub term: u64,
    /// Estimated bytes of the range's data, once measured (by its leaseholder).
    pub size_bytes: Option<u64>,
    /// Requests per second served in the last full second (by its leaseholder).
    pub qps: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame of {0} bytes exceeds the limit of {MAX_FRAME_BYTES}")]
    TooLong(usize),
    #[error("frame checksum mismatch")]
    Checksum,
    #[error("undecodable frame: {0}")]
    Decode(String),
    #[error("unencodable frame: {0}")]
    Encode(String),
}

/// Appends `frame` to `dst`.
pub fn encode_frame(frame: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
    let body = postcard::to_stdvec(frame).map_err(|e| CodecError::Encode(e.to_string()))?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(CodecError::TooLong(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| CodecError::TooLong(body.len()))?;
    dst.reserve(HEADER_BYTES + body.len());
    dst.put_u32(len);
    dst.put_u32(crc32fast::hash(&body));
    dst.put_slice(&body);
    Ok(())
}

/// Takes one frame off the front of `src`, or `None` if it is not all there yet.
pub fn decode_frame(src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
    if src.len() < HEADER_BYTES {
        return Ok(None);
    }
    let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(CodecError::TooLong(len));
    }
    if src.len() < HEADER_BYTES + len {
        src.reserve(HEADER_BYTES + len - src.len());
        return Ok(None);
    }
    let crc = u32::from_be_bytes([src[4], src[5], src[6], src[7]]);
    src.advance(HEADER_BYTES);
    let body = src.split_to(len);
    if crc32fast::hash(&body) != crc {
        return Err(CodecError::Checksum);
    }
    postcard::from_bytes(&body)
        .map(Some)
        .map_err(|e| CodecError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello() -> Frame {
        Frame::Hello {
            node_id: 7,
            addr: "127.0.0.1:1".into(),
        }
    }

    #[test]
    fn round_trip_and_incomplete() {
        let mut buf = BytesMut::new();
        encode_frame(&hello(), &mut buf).unwrap();
        encode_frame(&Frame::Envelopes(vec![]), &mut buf).unwrap();
        let full = buf.clone();
        // Any prefix of the first frame is incomplete, and consumes nothing.
        for cut in 0..full.len() {
            let mut partial = BytesMut::from(&full[..cut]);
            let before = partial.len();
            match decode_frame(&mut partial) {
                Ok(None) => assert_eq!(partial.len(), before),
                Ok(Some(Frame::Hello { node_id: 7, .. })) => {}
                other => panic!("cut {cut}: {other:?}"),
            }
        }
        assert!(matches!(
            decode_frame(&mut buf),
            Ok(Some(Frame::Hello { node_id: 7, .. }))
        ));
        assert!(matches!(decode_frame(&mut buf), Ok(Some(Frame::Envelopes(v))) if v.is_empty()));
        assert!(buf.is_empty());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut buf = BytesMut::new();
        encode_frame(&hello(), &mut buf).unwrap();
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        assert!(matches!(decode_frame(&mut buf), Err(CodecError::Checksum)));

        let mut huge = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0][..]);
        assert!(matches!(
            decode_frame(&mut huge),
            Err(CodecError::TooLong(_))
        ));

        // A valid checksum over a body that is not a frame.
        let body = [9u8, 9, 9];
        let mut bad = BytesMut::new();
        bad.put_u32(3);
        bad.put_u32(crc32fast::hash(&body));
        bad.put_slice(&body);
        assert!(matches!(decode_frame(&mut bad), Err(CodecError::Decode(_))));
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x1234_5678_u64;
        for _ in 0..2000 {
            let mut bytes = Vec::new();
            for _ in 0..(seed % 64) {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                bytes.push((seed >> 33) as u8);
            }
            let mut buf = BytesMut::from(&bytes[..]);
            let _ = decode_frame(&mut buf);
        }
    }
}
