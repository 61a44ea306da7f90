//! DistSender: delivers a batch to the leaseholder of the range holding its keys.
//!
//! ```text
//!   batch ─▶ range of its first key?  cache ─ hit ─▶ try cached leaseholder, then the
//!                                      │             other replicas
//!                                      miss            NotLeaseholder{hint} ─▶ go to hint
//!                                      ▼               RangeKeyMismatch    ─▶ evict, re-route
//!                    scan /Meta/ on the first range    unreachable/unknown  ─▶ next replica
//! ```
//!
//! The meta range is the first range: the descriptor of the range holding key `k` is the
//! first `/Meta/<end key>` entry after `/Meta/k`. Where the first range lives is found by
//! asking the known nodes, following leaseholder hints.
//!
//! Every batch has a deadline: a range without a leaseholder answers `RangeUnavailable`
//! when it passes, never hangs. A write whose outcome is unknown (`AmbiguousResult`) is
//! returned as is, never retried blindly.
//!
//! For now a batch must fall in one range; splitting batches across ranges (and sending
//! the pieces in parallel) comes with distributed transactions.

use std::sync::Arc;
use std::time::Duration;

use cairn_kv::api::{
    self, BatchRequest, BatchResponse, RangeDescriptor, Request, Response, Sender,
};
use cairn_kv::keys::{self, Span};
use cairn_kv::{NodeId, RangeId};
use cairn_range::store::FIRST_RANGE_ID;

use crate::range_cache::{CachedRange, RangeCache};

/// Reaches nodes: the local store for this node, RPC clients for the others.
pub trait NodeDialer: Send + Sync {
    fn sender(&self, node: NodeId) -> Arc<dyn Sender>;
    /// Nodes worth asking where the first range is.
    fn nodes(&self) -> Vec<NodeId>;
}

pub struct DistSender {
    dialer: Arc<dyn NodeDialer>,
    cache: RangeCache,
    /// How long one replica is given to answer.
    attempt_timeout: Duration,
    /// How long a batch may take in all.
    timeout: Duration,
}

/// Leaseholder hints followed in a row before trying the next replica.
const MAX_HINT_HOPS: usize = 5;

/// How much longer than a replica's own request deadline we wait for its answer. A
/// replica answers within its deadline (with an error if need be); one that does not is
/// down or behind a partition, and a write sent to it has an unknown outcome.
const ATTEMPT_MARGIN: Duration = Duration::from_secs(1);

/// How many replica deadlines a batch may spend in all, across retries.
const ATTEMPTS_PER_BATCH: u32 = 3;

impl DistSender {
    /// A DistSender for replicas that serve a request within `request_timeout`.
    pub fn new(dialer: Arc<dyn NodeDialer>, request_timeout: Duration) -> Self {
        DistSender {
            dialer,
            cache: RangeCache::new(),
            attempt_timeout: request_timeout + ATTEMPT_MARGIN,
            timeout: request_timeout * ATTEMPTS_PER_BATCH + ATTEMPT_MARGIN,
        }
    }

    pub fn cache(&self) -> &RangeCache {
        &self.cache
    }

    /// The key that routes a batch: the address of its first request's first key.
    fn routing_key(batch: &BatchRequest) -> Result<Vec<u8>, api::Error> {
        let first = batch
            .requests
            .first()
            .ok_or_else(|| api::Error::InvalidRequest("empty batch".into()))?;
        keys::addr(&first.span().start).map_err(|e| api::Error::InvalidRequest(e.to_string()))
    }

    /// Sends `batch` to the range holding its keys (its header's range id is filled in).
    pub async fn send(&self, mut batch: BatchRequest) -> Result<BatchResponse, api::Error> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let key = Self::routing_key(&batch)?;
        let mut last_err = None;
        let mut backoff = Duration::from_millis(20);
        loop {
            if tokio::time::Instant::now() >= deadline {
                return Err(unavailable(batch.header.range_id, last_err));
            }
            let range = match self.lookup(&key, deadline).await {
                Ok(r) => r,
                Err(e @ api::Error::RangeUnavailable { .. }) => return Err(e),
                Err(e) => return Err(e),
            };
            for req in &batch.requests {
                let span = req.span();
                let end_addr = if keys::is_local(&span.end) {
                    keys::addr(&span.end).map_err(|e| api::Error::InvalidRequest(e.to_string()))?
                } else {
                    span.end.clone()
                };
                if end_addr > range.desc.end_key {
                    return Err(api::Error::InvalidRequest(format!(
                        "batch spans more than one range ({} ends at {})",
                        span,
                        keys::pretty(&range.desc.end_key)
                    )));
                }
            }
            batch.header.range_id = range.desc.range_id;
            match self.send_to_range(&range, &batch, deadline).await {
                Ok(resp) => return Ok(resp),
                Err(Routing::Retry(e)) => {
                    last_err = Some(e);
                    tokio::time::sleep(
                        backoff
                            .min(deadline.saturating_duration_since(tokio::time::Instant::now())),
                    )
                    .await;
                    backoff = (backoff * 2).min(Duration::from_millis(500));
                }
                Err(Routing::Stale(e)) => last_err = Some(e),
                Err(Routing::Fail(e)) => return Err(e),
            }
        }
    }

    /// Tries the replicas of a range, leaseholder first.
    async fn send_to_range(
        &self,
        range: &CachedRange,
        batch: &BatchRequest,
        deadline: tokio::time::Instant,
    ) -> Result<BatchResponse, Routing> {
        let desc = &range.desc;
        let mut order: Vec<NodeId> = Vec::new();
        if let Some(l) = range.leaseholder {
            order.push(l.node_id);
        }
        for r in &desc.replicas {
            if !order.contains(&r.node_id) {
                order.push(r.node_id);
            }
        }
        let mut last = None;
        let mut i = 0;
        let mut hops = 0;
        while i < order.len() {
            let node = order[i];
            let attempt_deadline = deadline.min(tokio::time::Instant::now() + self.attempt_timeout);
            let sent = tokio::time::timeout_at(
                attempt_deadline,
                self.dialer.sender(node).send(batch.clone()),
            )
            .await;
            let result = match sent {
                Err(_) if tokio::time::Instant::now() >= deadline => {
                    return Err(Routing::Retry(
                        last.unwrap_or_else(|| timeout_error(desc.range_id)),
                    ));
                }
                // A write that got no answer may have been applied: say so, never retry it.
                Err(_) if batch.is_write() => {
                    return Err(Routing::Fail(api::Error::AmbiguousResult {
                        range_id: desc.range_id,
                        reason: format!("no answer from {node} in time"),
                    }));
                }
                Err(_) => Err(api::Error::NodeUnreachable {
                    node_id: node,
                    reason: "no answer in time".into(),
                }),
                Ok(r) => r,
            };
            tracing::debug!(range = %desc.range_id, %node, result = ?result.as_ref().err(), "attempt");
            match result {
                Ok(resp) => {
                    let holder = desc.replica_on(node).copied();
                    if range.leaseholder != holder {
                        self.cache
                            .set_leaseholder(desc.range_id, &desc.end_key, holder);
                    }
                    return Ok(resp);
                }
                Err(api::Error::NotLeaseholder {
                    leaseholder: Some(l),
                    ..
                }) if l.node_id != node && hops < MAX_HINT_HOPS => {
                    hops += 1;
                    self.cache
                        .set_leaseholder(desc.range_id, &desc.end_key, Some(l));
                    // Try the hinted node next (moving it up if it comes later anyway).
                    if let Some(pos) = order.iter().skip(i + 1).position(|n| *n == l.node_id) {
                        order.remove(i + 1 + pos);
                    }
                    order.insert(i + 1, l.node_id);
                    last = Some(api::Error::NotLeaseholder {
                        range_id: desc.range_id,
                        leaseholder: Some(l),
                    });
                }
                Err(api::Error::RangeKeyMismatch { current, .. }) => {
                    self.cache.evict(&desc.start_key, desc.range_id);
                    if let Some(cur) = current {
                        self.cache.insert(*cur, None);
                    }
                    return Err(Routing::Stale(api::Error::RangeKeyMismatch {
                        range_id: desc.range_id,
                        span: desc.span(),
                        current: None,
                    }));
                }
                Err(
                    e @ (api::Error::NotLeaseholder { .. }
                    | api::Error::RangeNotFound { .. }
                    | api::Error::NodeUnreachable { .. }
                    | api::Error::RangeUnavailable { .. }),
                ) => last = Some(e),
                Err(e) => return Err(Routing::Fail(e)),
            }
            i += 1;
        }
        // Nobody served it: the cached descriptor may be stale (replicas added or moved
        // since it was read), so read it again before the next try.
        self.cache.evict(&desc.start_key, desc.range_id);
        Err(Routing::Retry(
            last.unwrap_or_else(|| timeout_error(desc.range_id)),
        ))
    }

    /// The range holding `key`: from the cache, or from the meta range.
    async fn lookup(
        &self,
        key: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<CachedRange, api::Error> {
        if let Some(r) = self.cache.lookup(key) {
            return Ok(r);
        }
        let desc = self.meta_lookup(key, deadline).await?;
        self.cache.insert(desc, None);
        self.cache.lookup(key).ok_or_else(|| {
            api::Error::InvalidRequest(format!("no range holds {}", keys::pretty(key)))
        })
    }

    /// Reads the descriptor of the range holding `key` from the meta range.
    async fn meta_lookup(
        &self,
        key: &[u8],
        deadline: tokio::time::Instant,
    ) -> Result<RangeDescriptor, api::Error> {
        let start = keys::next_key(&keys::meta_key(key));
        let scan = BatchRequest::new(
            FIRST_RANGE_ID,
            vec![Request::Scan {
                span: Span::new(start, keys::META_MAX),
                max_keys: 1,
            }],
        );
        let mut last = None;
        let mut backoff = Duration::from_millis(20);
        while tokio::time::Instant::now() < deadline {
            // The meta range is the first range; ask whoever leads it, else every node.
            let first = self.cache.lookup(keys::META_PREFIX);
            let result = match &first {
                Some(r) => self.send_to_range(r, &scan, deadline).await,
                None => self.probe_first_range(&scan, deadline).await,
            };
            match result {
                Ok(resp) => return decode_meta_scan(key, resp),
                Err(Routing::Fail(e)) => return Err(e),
                Err(Routing::Retry(e)) | Err(Routing::Stale(e)) => {
                    if first.is_some() {
                        self.cache.evict(keys::META_PREFIX, FIRST_RANGE_ID);
                    }
                    last = Some(e);
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
        Err(unavailable(FIRST_RANGE_ID, last))
    }

    /// Sends a batch for the first range to every known node until one serves it,
    /// following leaseholder hints.
    async fn probe_first_range(
        &self,
        batch: &BatchRequest,
        deadline: tokio::time::Instant,
    ) -> Result<BatchResponse, Routing> {
        let mut order = self.dialer.nodes();
        let mut last = None;
        let mut i = 0;
        while i < order.len() {
            let node = order[i];
            let attempt_deadline = deadline.min(tokio::time::Instant::now() + self.attempt_timeout);
            let sent = tokio::time::timeout_at(
                attempt_deadline,
                self.dialer.sender(node).send(batch.clone()),
            )
            .await;
            match sent {
                Err(_) if tokio::time::Instant::now() >= deadline => break,
                Err(_) => {}
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(api::Error::NotLeaseholder {
                    leaseholder: Some(l),
                    ..
                })) if !order[..=i].contains(&l.node_id) => {
                    order.retain(|n| *n != l.node_id);
                    order.insert(i + 1, l.node_id);
                }
                Ok(Err(e @ api::Error::Kv(_))) | Ok(Err(e @ api::Error::InvalidRequest(_))) => {
                    return Err(Routing::Fail(e));
                }
                Ok(Err(e)) => last = Some(e),
            }
            i += 1;
        }
        Err(Routing::Retry(
            last.unwrap_or_else(|| timeout_error(FIRST_RANGE_ID)),
        ))
    }
}

/// The DistSender is itself a sender to the whole cluster: it ignores the header's range
/// id and routes by key.
impl Sender for DistSender {
    fn send(&self, batch: BatchRequest) -> api::BoxFuture<'_, Result<BatchResponse, api::Error>> {
        Box::pin(DistSender::send(self, batch))
    }
}

/// What to do after a range did not serve a batch.
enum Routing {
    /// Wait a little and try again (no leaseholder found yet).
    Retry(api::Error),
    /// The routing was stale; look the range up again right away.
    Stale(api::Error),
    /// Give up with this error.
    Fail(api::Error),
}

fn timeout_error(range_id: RangeId) -> api::Error {
    api::Error::RangeUnavailable {
        range_id,
        reason: "deadline exceeded".into(),
    }
}

fn unavailable(range_id: RangeId, last: Option<api::Error>) -> api::Error {
    match last {
        Some(e @ api::Error::RangeUnavailable { .. }) => e,
        Some(e) => api::Error::RangeUnavailable {
            range_id,
            reason: format!(
                "no replica could serve the request before the deadline (last error: {e})"
            ),
        },
        None => timeout_error(range_id),
    }
}

fn decode_meta_scan(key: &[u8], resp: BatchResponse) -> Result<RangeDescriptor, api::Error> {
    let kvs = match resp.responses.into_iter().next() {
        Some(Response::Scan { kvs, .. }) => kvs,
        other => {
            return Err(api::Error::InvalidRequest(format!(
                "meta scan answered {other:?}"
            )));
        }
    };
    let (meta_key, value) = kvs.into_iter().next().ok_or_else(|| {
        api::Error::InvalidRequest(format!("no meta entry covers {}", keys::pretty(key)))
    })?;
    let desc: RangeDescriptor = postcard::from_bytes(&value).map_err(|e| {
        api::Error::Kv(cairn_kv::Error::Corruption {
            key: meta_key.clone(),
            detail: format!("undecodable range descriptor: {e}"),
        })
    })?;
    if !desc.contains_key(key) {
        return Err(api::Error::Kv(cairn_kv::Error::Corruption {
            key: meta_key,
            detail: format!("meta entry {desc} does not cover {}", keys::pretty(key)),
        }));
    }
    Ok(desc)
}
