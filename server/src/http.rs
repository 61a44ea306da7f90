//! The HTTP port: the web console, health, and JSON status for tools.
//!
//! - `GET /`: the console (`console.html`, one page drawn by its own script from the
//!   JSON and metrics below): nodes with their liveness, a range map by node, and
//!   charts of this node's SQL throughput and p99 latency.
//! - `GET /health`: 200 once the node serves, 503 before.
//! - `GET /_status/nodes`: every node's liveness record, membership (active or
//!   decommissioning), and the replicas and leases it holds.
//! - `GET /_status/ranges`: every range of the meta range, with its replicas, its
//!   leaseholder, and the leaseholder's applied index, size estimate and QPS.
//! - `GET /metrics`: this node's metrics in the Prometheus text format (see
//!   [`crate::metrics`]).

use std::sync::{Arc, Weak};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use cairn_kv::keys;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::node::Node;

type AppState = Weak<Node>;

/// Serves the HTTP API until the node is dropped.
pub async fn serve(listener: TcpListener, node: Weak<Node>) {
    let app = Router::new()
        .route("/", get(console))
        .route("/health", get(health))
        .route("/_status/nodes", get(nodes))
        .route("/_status/ranges", get(ranges))
        .route("/metrics", get(metrics))
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

async fn console() -> Html<&'static str> {
    Html(include_str!("console.html"))
}

async fn health(State(state): State<AppState>) -> impl IntoResponse {
    match state.upgrade() {
        Some(n) if n.is_serving() => (StatusCode::OK, "ok\n"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not serving\n"),
    }
}

async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, (StatusCode, String)> {
    let n = node(&state)?;
    let text = crate::metrics::render(&n)
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}

#[derive(Serialize)]
struct NodeJson {
    node_id: u64,
    address: String,
    sql_address: String,
    http_address: String,
    live: bool,
    /// `decommissioning` or `active`.
    membership: &'static str,
    /// Replicas and leases the node held at its last heartbeat.
    replicas: u64,
    leases: u64,
}

#[derive(Serialize)]
struct NodesJson {
    nodes: Vec<NodeJson>,
}

async fn nodes(State(state): State<AppState>) -> Result<Json<NodesJson>, (StatusCode, String)> {
    let n = node(&state)?;
    let nodes = n
        .node_statuses()
        .into_iter()
        .map(|s| NodeJson {
            node_id: s.record.node_id.0,
            address: s.record.addr,
            sql_address: s.record.sql_addr,
            http_address: s.record.http_addr,
            live: s.live,
            membership: if s.decommissioning {
                "decommissioning"
            } else {
                "active"
            },
            replicas: s.record.replicas,
            leases: s.record.leases,
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
    /// The leaseholder's estimate of the range's size, once measured.
    size_bytes: Option<u64>,
    /// Requests per second at the leaseholder in the last full second.
    qps: Option<f64>,
}

#[derive(Serialize)]
struct RangesJson {
    ranges: Vec<RangeJson>,
}

async fn ranges(State(state): State<AppState>) -> Result<Json<RangesJson>, (StatusCode, String)> {
    let n = node(&state)?;
    let described = crate::ranges::describe(&n, keys::KEY_MIN, keys::KEY_MAX)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, e))?;
    let out = described
        .into_iter()
        .map(|r| RangeJson {
            range_id: r.desc.range_id.0,
            start_key: keys::pretty(&r.desc.start_key),
            end_key: keys::pretty(&r.desc.end_key),
            replicas: r.desc.replicas.iter().map(|x| x.node_id.0).collect(),
            lease_holder: r.lease_holder.map(|n| n.0),
            applied_index: r.leader.as_ref().map(|s| s.applied_index),
            generation: r.desc.generation,
            size_bytes: r.leader.as_ref().and_then(|s| s.size_bytes),
            qps: r.leader.as_ref().map(|s| s.qps),
        })
        .collect();
    Ok(Json(RangesJson { ranges: out }))
}
