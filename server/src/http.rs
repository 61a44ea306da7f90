//! The HTTP port: health, and JSON status for tools.
//!
//! - `GET /health`: 200 once the node serves, 503 before.
//! - `GET /_status/nodes`: every node's liveness record.
//! - `GET /_status/ranges`: every range of the meta range, with its replicas, its
//!   leaseholder and applied index as its replicas report them.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use cairn_kv::api::{BatchRequest, RangeDescriptor, Request, Response};
use cairn_kv::keys::{self, Span};
use cairn_kv::{NodeId, RangeId};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::node::Node;
use crate::rpc::{RpcRequest, RpcResponse};

type AppState = Weak<Node>;

/// Serves the HTTP API until the node is dropped.
pub async fn serve(listener: TcpListener, node: Weak<Node>) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/_status/nodes", get(nodes))
        .route("/_status/ranges", get(ranges))
        .with_state(node);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "http server stopped");
    }
}

fn node(state: &AppState) -> Result<Arc<Node>, (StatusCode, String)> {
    state.upgrade().ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        "node is shutting down".into(),
    ))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match state.upgrade() {
        Some(n) if n.is_serving() => (StatusCode::OK, "ok\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not serving\n"),
    }
}

#[derive(Serialize)]
struct NodeJson {
    node_id: u64,
    address: String,
    sql_address: String,
    http_address: String,
    live: bool,
}

#[derive(Serialize)]
struct NodesJson {
    nodes: Vec<NodeJson>,
}

async fn nodes(State(state): State<AppState>) -> Result<Json<NodesJson>, (StatusCode, String)> {
    let n = node(&state)?;
    let nodes = n
        .liveness()
        .into_iter()
        .map(|(r, live)| NodeJson {
            node_id: r.node_id.0,
            address: r.addr,
            sql_address: r.sql_addr,
            http_address: r.http_addr,
            live,
        })
        .collect();
    Ok(Json(NodesJson { nodes }))
}

#[derive(Serialize)]
struct RangeJson {
    range_id: u64,
    start_key: String,
    end_key: String,
    replicas: Vec<u64>,
    lease_holder: Option<u64>,
    applied_index: Option<u64>,
    generation: u64,
}

#[derive(Serialize)]
struct RangesJson {
    ranges: Vec<RangeJson>,
}

async fn ranges(State(state): State<AppState>) -> Result<Json<RangesJson>, (StatusCode, String)> {
    let n = node(&state)?;
    let dist = n.dist_sender().ok_or((
        StatusCode::SERVICE_UNAVAILABLE,
        "node is not serving".into(),
    ))?;
    let scan = BatchRequest::new(
        RangeId(0),
        vec![Request::Scan {
            span: Span::new(keys::META_PREFIX, keys::META_MAX),
            max_keys: 0,
        }],
    );
    let resp = dist
        .send(scan)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let kvs = match resp.responses.into_iter().next() {
        Some(Response::Scan { kvs, .. }) => kvs,
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for (_, v) in kvs {
        let desc: RangeDescriptor = postcard::from_bytes(&v).map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("bad descriptor: {e}"),
            )
        })?;
        let (lease_holder, applied_index) = leaseholder(&n, &desc).await;
        out.push(RangeJson {
            range_id: desc.range_id.0,
            start_key: keys::pretty(&desc.start_key),
            end_key: keys::pretty(&desc.end_key),
            replicas: desc.replicas.iter().map(|r| r.node_id.0).collect(),
            lease_holder: lease_holder.map(|n| n.0),
            applied_index,
            generation: desc.generation,
        });
    }
    Ok(Json(RangesJson { ranges: out }))
}

/// Asks the replicas of a range which of them leads it.
async fn leaseholder(n: &Arc<Node>, desc: &RangeDescriptor) -> (Option<NodeId>, Option<u64>) {
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
            return (Some(r.node_id), Some(s.applied_index));
        }
    }
    (None, None)
}
