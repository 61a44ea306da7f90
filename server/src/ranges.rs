//! Where ranges are and who leads them, as the HTTP status API, SHOW RANGES and
//! EXPLAIN report it: descriptors from the meta range, leases from the replicas.

use std::sync::{Arc, Weak};
use std::time::Duration;

use cairn_kv::api::{BatchRequest, RangeDescriptor, Request, Response};
use cairn_kv::keys::{self, Span};
use cairn_kv::{NodeId, RangeId};
use cairn_sql::session::{RangeInfo, RangeRow};

use crate::node::Node;
use crate::rpc::{ReplicaStatus, RpcRequest, RpcResponse};

/// One range with what its replicas say.
pub struct Described {
    pub desc: RangeDescriptor,
    pub lease_holder: Option<NodeId>,
    /// What the leaseholder reports (`None`: no leaseholder answered).
    pub leader: Option<ReplicaStatus>,
}

/// The ranges overlapping `[start, end)`, in key order.
pub async fn describe(n: &Arc<Node>, start: &[u8], end: &[u8]) -> Result<Vec<Described>, String> {
    let dist = n.dist_sender().ok_or("node is not serving")?;
    let scan = BatchRequest::new(
        RangeId(0),
        vec![Request::Scan {
            span: Span::new(keys::META_PREFIX, keys::META_MAX),
            max_keys: 0,
        }],
    );
    let resp = dist.send(scan).await.map_err(|e| e.to_string())?;
    let kvs = match resp.responses.into_iter().next() {
        Some(Response::Scan { kvs, .. }) => kvs,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for (_, v) in kvs {
        let desc: RangeDescriptor =
            postcard::from_bytes(&v).map_err(|e| format!("bad descriptor: {e}"))?;
        if desc.end_key.as_slice() <= start || desc.start_key.as_slice() >= end {
            continue;
        }
        let (lease_holder, leader) = match leaseholder(n, &desc).await {
            Some((node, status)) => (Some(node), Some(status)),
            None => (None, None),
        };
        out.push(Described {
            desc,
            lease_holder,
            leader,
        });
    }
    Ok(out)
}

/// Asks the replicas of a range which of them leads it, and what it says.
async fn leaseholder(n: &Arc<Node>, desc: &RangeDescriptor) -> Option<(NodeId, ReplicaStatus)> {
    for r in &desc.replicas {
        let status = if Some(r.node_id) == n.node_id() {
            n.replica_status(desc.range_id)
        } else {
            match n
                .transport()
                .call(
                    r.node_id,
                    RpcRequest::RangeStatus(desc.range_id),
                    Duration::from_secs(2),
                )
                .await
            {
                Ok(RpcResponse::RangeStatus(s)) => s,
                _ => None,
            }
        };
        if let Some(s) = status
            && s.is_leader
        {
            return Some((r.node_id, s));
        }
    }
    None
}

/// The node as the SQL layer's view of ranges.
pub struct NodeRanges(pub Weak<Node>);

impl RangeInfo for NodeRanges {
    fn ranges<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Vec<RangeRow>, String>> + Send + 'a>,
    > {
        Box::pin(async move {
            let n = self.0.upgrade().ok_or("node stopped")?;
            Ok(describe(&n, start, end)
                .await?
                .into_iter()
                .map(|d| RangeRow {
                    range_id: d.desc.range_id.0,
                    start_key: d.desc.start_key.clone(),
                    end_key: d.desc.end_key.clone(),
                    replicas: d.desc.replicas.iter().map(|r| r.node_id.0).collect(),
                    lease_holder: d.lease_holder.map(|n| n.0),
                    size_bytes: d.leader.as_ref().and_then(|s| s.size_bytes),
                    qps: d.leader.as_ref().map(|s| s.qps),
                })
                .collect())
        })
    }
}
