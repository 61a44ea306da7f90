//! `cairn debug check-consistency`: compares a hash of every range's replicas (see
//! `cairn_range::consistency`) and reports the ranges whose replicas differ.

use std::sync::Arc;
use std::time::Duration;

use cairn_kv::api::{self, BatchRequest, RangeDescriptor, ReplicaId, Request, Response};
use cairn_kv::{NodeId, RangeId};
use cairn_range::consistency::{CHECK_TIMEOUT, ReplicaChecksum};
use cairn_range::raft::{RaftEnvelope, RaftReply, RaftRequest};
use serde::{Deserialize, Serialize};

use crate::node::Node;
use crate::rpc::{RpcRequest, RpcResponse};

/// How often a check that failed to start is tried again (the range moved, split or
/// lost its leaseholder for a moment).
const START_ATTEMPTS: usize = 5;

/// One range's check.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RangeCheck {
    /// The range as its leaseholder had it when the check was replicated.
    pub range: RangeDescriptor,
    /// Each replica's result; `None`: it did not answer within the check's time.
    pub replicas: Vec<(NodeId, Option<ReplicaChecksum>)>,
    /// Why the check could not run at all.
    pub error: Option<String>,
}

impl RangeCheck {
    /// Every replica answered, and all hashed the same data.
    pub fn consistent(&self) -> bool {
        self.error.is_none()
            && !self.replicas.is_empty()
            && self.replicas.iter().all(|(_, c)| {
                c.as_ref()
                    .is_some_and(|c| c.error.is_none() && Some(c) == self.replicas[0].1.as_ref())
            })
    }

    /// Some replicas hashed different data (rather than not answering).
    pub fn diverged(&self) -> bool {
        let sums: Vec<&ReplicaChecksum> = self
            .replicas
            .iter()
            .filter_map(|(_, c)| c.as_ref())
            .collect();
        sums.iter()
            .any(|c| c.digest != sums[0].digest || c.entries != sums[0].entries)
    }
}

impl std::fmt::Display for RangeCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.consistent() {
            "ok"
        } else if self.diverged() {
            "DIVERGED"
        } else {
            "INCOMPLETE"
        };
        write!(f, "{} {verdict}", self.range)?;
        if let Some(e) = &self.error {
            write!(f, ": {e}")?;
        }
        for (node, sum) in &self.replicas {
            match sum {
                Some(s) => write!(
                    f,
                    "\n  {node}: index {} entries {} sha256 {}{}",
                    s.index,
                    s.entries,
                    hex(&s.digest[..8]),
                    s.error
                        .as_deref()
                        .map(|e| format!(" error: {e}"))
                        .unwrap_or_default()
                )?,
                None => write!(f, "\n  {node}: no answer")?,
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks every range of the cluster, from node `n`.
pub async fn check_all(n: &Arc<Node>) -> Result<Vec<RangeCheck>, String> {
    let ranges = crate::ranges::describe(n, b"", cairn_kv::keys::KEY_MAX).await?;
    let mut out = Vec::new();
    for d in ranges {
        out.push(check_range(n, &d.desc).await);
    }
    Ok(out)
}

/// Checks the range that holds `desc`'s start key.
async fn check_range(n: &Arc<Node>, desc: &RangeDescriptor) -> RangeCheck {
    let failed = |error: String| RangeCheck {
        range: desc.clone(),
        replicas: Vec::new(),
        error: Some(error),
    };
    let Some(dist) = n.dist_sender() else {
        return failed("node is not serving".into());
    };
    let mut last_error = String::new();
    let mut started = None;
    for _ in 0..START_ATTEMPTS {
        let ba = BatchRequest::new(
            RangeId(0),
            vec![Request::ComputeChecksum {
                key: desc.start_key.clone(),
            }],
        );
        match dist.send(ba).await.map(|mut r| r.responses.pop()) {
            Ok(Some(Response::ComputeChecksum { range, id, index })) => {
                started = Some((range, id, index));
                break;
            }
            Ok(other) => last_error = format!("unexpected answer {other:?}"),
            Err(e) => last_error = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let Some((range, id, _)) = started else {
        return failed(format!("the check did not start: {last_error}"));
    };
    let deadline = tokio::time::Instant::now() + CHECK_TIMEOUT;
    let mut replicas = Vec::new();
    for r in &range.replicas {
        replicas.push((r.node_id, replica_result(n, &range, r, id, deadline).await));
    }
    RangeCheck {
        range,
        replicas,
        error: None,
    }
}

/// Asks one replica for the result of check `id` until it has one, or `deadline`.
async fn replica_result(
    n: &Arc<Node>,
    range: &RangeDescriptor,
    r: &api::ReplicaDescriptor,
    id: u64,
    deadline: tokio::time::Instant,
) -> Option<ReplicaChecksum> {
    loop {
        let ask = RaftEnvelope {
            range_id: range.range_id,
            from: ReplicaId(0),
            to: r.replica_id,
            to_node: r.node_id,
            to_addr: String::new(),
            body: RaftRequest::Checksum(id),
        };
        let reply = n
            .transport()
            .call(
                r.node_id,
                RpcRequest::Raft(Box::new(ask)),
                Duration::from_secs(2),
            )
            .await;
        if let Ok(RpcResponse::Raft(RaftReply::Checksum(Some(sum)))) = reply {
            return Some(sum);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
