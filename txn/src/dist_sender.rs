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
//! A batch that spans ranges is cut at range boundaries and the pieces go to their
//! ranges in parallel; scans with a limit go range by range until it is met (see
//! `DistSender::send_divided`).

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
    /// What the transactions sent through here did.
    txn_metrics: Arc<crate::coord::TxnMetrics>,
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
            txn_metrics: Arc::default(),
        }
    }

    /// The counts of the transactions coordinated through this sender.
    pub fn txn_metrics(&self) -> &Arc<crate::coord::TxnMetrics> {
        &self.txn_metrics
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

    /// Sends `batch` to the ranges holding its keys (its header's range id is filled in).
    /// A batch whose keys lie in one range goes there whole; one that spans ranges is
    /// cut by range (see `DistSender::send_divided`).
    pub async fn send(&self, batch: BatchRequest) -> Result<BatchResponse, api::Error> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.send_until(batch, deadline).await
    }

    fn send_until(
        &self,
        mut batch: BatchRequest,
        deadline: tokio::time::Instant,
    ) -> api::BoxFuture<'_, Result<BatchResponse, api::Error>> {
        Box::pin(async move {
            let key = Self::routing_key(&batch)?;
            let spans = request_spans(&batch)?;
            let mut last_err = None;
            let mut backoff = Duration::from_millis(20);
            loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(unavailable(batch.header.range_id, last_err));
                }
                let range = self.lookup(&key, deadline).await?;
                if !spans.iter().all(|s| range.desc.contains_span(s)) {
                    return self.send_divided(batch, deadline).await;
                }
                batch.header.range_id = range.desc.range_id;
                match self.send_to_range(&range, &batch, deadline).await {
                    Ok(resp) => return Ok(resp),
                    Err(Routing::Retry(e)) => {
                        last_err = Some(e);
                        tokio::time::sleep(
                            backoff.min(
                                deadline.saturating_duration_since(tokio::time::Instant::now()),
                            ),
                        )
                        .await;
                        backoff = (backoff * 2).min(Duration::from_millis(500));
                    }
                    Err(Routing::Stale(e)) => last_err = Some(e),
                    Err(Routing::Fail(e)) => return Err(e),
                }
            }
        })
    }

    /// Sends a batch that spans ranges: the requests (cut at range boundaries) go to
    /// each range as one batch, all ranges at once; the answers are put back together
    /// in request order, scans in key order. Scans with a limit go range by range, in
    /// their direction, until the limit is met. An `EndTxn` goes last, once everything
    /// else succeeded, unless it is a parallel commit (it names its in-flight writes).
    async fn send_divided(
        &self,
        batch: BatchRequest,
        deadline: tokio::time::Instant,
    ) -> Result<BatchResponse, api::Error> {
        let header = batch.header.clone();
        let n = batch.requests.len();
        let mut parts: Vec<Vec<(Vec<u8>, Response)>> = vec![Vec::new(); n];
        let mut resume: Vec<Option<Span>> = vec![None; n];
        let mut merged = Merged::default();

        // Requests without a limit, cut by range.
        let mut by_range: std::collections::BTreeMap<Vec<u8>, Vec<(usize, Request)>> =
            std::collections::BTreeMap::new();
        let mut limited = Vec::new();
        let mut end_txn = None;
        for (i, req) in batch.requests.iter().enumerate() {
            match req {
                Request::Scan { max_keys, .. } | Request::ReverseScan { max_keys, .. }
                    if *max_keys > 0 =>
                {
                    limited.push(i);
                    continue;
                }
                // A parallel commit goes out with the writes; any other EndTxn waits
                // for them to succeed.
                Request::EndTxn { in_flight, .. } if in_flight.is_empty() => {
                    end_txn = Some(i);
                    continue;
                }
                _ => {}
            }
            for (range, piece) in self.cut_by_range(req, deadline).await? {
                by_range
                    .entry(range.start_key)
                    .or_default()
                    .push((i, piece));
            }
        }
        let sends = by_range.into_iter().map(|(start, reqs)| {
            let (idx, requests): (Vec<usize>, Vec<Request>) = reqs.into_iter().unzip();
            let sub = BatchRequest {
                header: header.clone(),
                requests,
            };
            async move { (start, idx, self.send_until(sub, deadline).await) }
        });
        let mut first_err = None;
        for (start, idx, result) in futures_util::future::join_all(sends).await {
            match result {
                Ok(resp) => {
                    merged.add_meta(&resp);
                    for (i, r) in idx.into_iter().zip(resp.responses) {
                        parts[i].push((start.clone(), r));
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        for i in limited {
            let (resp, rest) = self
                .send_limited_scan(&header, &batch.requests[i], deadline)
                .await?;
            merged.add_meta(&resp);
            parts[i] = resp
                .responses
                .into_iter()
                .map(|r| (Vec::new(), r))
                .collect();
            resume[i] = rest;
        }
        if let Some(i) = end_txn {
            let mut h = header.clone();
            if let (Some(t), Some(m)) = (h.txn.as_mut(), merged.txn.as_ref()) {
                t.write_ts = t.write_ts.max(m.write_ts);
            }
            let sub = BatchRequest {
                header: h,
                requests: vec![batch.requests[i].clone()],
            };
            let resp = self.send_until(sub, deadline).await?;
            merged.add_meta(&resp);
            parts[i] = resp
                .responses
                .into_iter()
                .map(|r| (Vec::new(), r))
                .collect();
        }
        let mut responses = Vec::with_capacity(n);
        for (i, mut pieces) in parts.into_iter().enumerate() {
            let reverse = matches!(batch.requests[i], Request::ReverseScan { .. });
            pieces.sort_by(|a, b| {
                if reverse {
                    b.0.cmp(&a.0)
                } else {
                    a.0.cmp(&b.0)
                }
            });
            responses.push(combine(
                &batch.requests[i],
                pieces.into_iter().map(|(_, r)| r),
                resume[i].take(),
            )?);
        }
        Ok(BatchResponse {
            responses,
            timestamp: merged.timestamp,
            txn: merged.txn,
            observed: merged.observed,
        })
    }

    /// Sends a scan with a limit range by range, in its direction, until the limit is
    /// met. Returns one response per range it visited, and where to resume.
    async fn send_limited_scan(
        &self,
        header: &api::Header,
        req: &Request,
        deadline: tokio::time::Instant,
    ) -> Result<(BatchResponse, Option<Span>), api::Error> {
        let (span, mut left, reverse) = match req {
            Request::Scan { span, max_keys } => (span.clone(), *max_keys, false),
            Request::ReverseScan { span, max_keys } => (span.clone(), *max_keys, true),
            other => {
                return Err(api::Error::InvalidRequest(format!("not a scan: {other:?}")));
            }
        };
        let mut out = BatchResponse::default();
        let mut todo = span.clone();
        while !todo.is_empty() {
            // The range holding the next key in the scan's direction.
            let range = if reverse {
                self.lookup_in(&todo.end, true, deadline).await?
            } else {
                self.lookup(&todo.start, deadline).await?
            };
            let piece = Span::new(
                todo.start.clone().max(range.desc.start_key.clone()),
                todo.end.clone().min(range.desc.end_key.clone()),
            );
            let sub = BatchRequest {
                header: header.clone(),
                requests: vec![if reverse {
                    Request::ReverseScan {
                        span: piece.clone(),
                        max_keys: left,
                    }
                } else {
                    Request::Scan {
                        span: piece.clone(),
                        max_keys: left,
                    }
                }],
            };
            let resp = self.send_until(sub, deadline).await?;
            out.timestamp = out.timestamp.max(resp.timestamp);
            if resp.txn.is_some() {
                out.txn = resp.txn.clone();
            }
            out.observed.extend(resp.observed.iter().copied());
            let (got, piece_resume) = match resp.responses.first() {
                Some(Response::Scan { kvs, resume_span })
                | Some(Response::ReverseScan { kvs, resume_span }) => {
                    (kvs.len() as u64, resume_span.clone())
                }
                other => {
                    return Err(api::Error::InvalidRequest(format!(
                        "scan answered {other:?}"
                    )));
                }
            };
            out.responses.extend(resp.responses);
            if reverse {
                todo.end = piece.start.clone();
            } else {
                todo.start = piece.end.clone();
            }
            left = left.saturating_sub(got);
            if let Some(r) = piece_resume {
                // The limit stopped it inside this range.
                let rest = if reverse {
                    Span::new(todo.start.clone(), r.end)
                } else {
                    Span::new(r.start, todo.end.clone())
                };
                return Ok((out, Some(rest)));
            }
            if left == 0 {
                return Ok((out, (!todo.is_empty()).then_some(todo)));
            }
        }
        Ok((out, None))
    }

    /// Cuts `req` at the boundaries of the ranges it touches.
    async fn cut_by_range(
        &self,
        req: &Request,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<(RangeDescriptor, Request)>, api::Error> {
        let span = addr_span(req)?;
        let pieces = cut_span(&span, |at| async move {
            self.lookup(&at, deadline).await.map(|r| r.desc)
        })
        .await?;
        pieces
            .into_iter()
            .map(|(desc, piece)| Ok((desc, with_span(req, piece)?)))
            .collect()
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
        self.lookup_in(key, false, deadline).await
    }

    /// The range holding `key` (with `before`: the keys just below it), from the cache
    /// or, on a miss, from the meta range.
    async fn lookup_in(
        &self,
        key: &[u8],
        before: bool,
        deadline: tokio::time::Instant,
    ) -> Result<CachedRange, api::Error> {
        let cached = |k: &[u8]| {
            if before {
                self.cache.lookup_before(k)
            } else {
                self.cache.lookup(k)
            }
        };
        loop {
            if let Some(r) = cached(key) {
                return Ok(r);
            }
            let desc = self.meta_lookup(key, before, deadline).await?;
            self.cache.insert(desc, None);
            if let Some(r) = cached(key) {
                return Ok(r);
            }
            // Another request cached a different view of these keys meanwhile (ranges
            // are splitting): look again.
            if tokio::time::Instant::now() >= deadline {
                return Err(api::Error::RangeUnavailable {
                    range_id: FIRST_RANGE_ID,
                    reason: format!("no range found for {}", keys::pretty(key)),
                });
            }
        }
    }

    /// Reads the descriptor of the range holding `key` from the meta range (with
    /// `before`: the range holding the keys just below `key`).
    async fn meta_lookup(
        &self,
        key: &[u8],
        before: bool,
        deadline: tokio::time::Instant,
    ) -> Result<RangeDescriptor, api::Error> {
        let start = if before {
            keys::meta_key(key)
        } else {
            keys::next_key(&keys::meta_key(key))
        };
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
                Ok(resp) => match decode_meta_scan(key, before, resp)? {
                    Ok(desc) => return Ok(desc),
                    // A split's meta entries are being written: the right-hand one is
                    // there, the left-hand one not yet. Look again shortly.
                    Err(gap) => {
                        last = Some(api::Error::RangeUnavailable {
                            range_id: FIRST_RANGE_ID,
                            reason: gap,
                        });
                    }
                },
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

/// The address span of each request of the batch.
/// Cuts `span` into one piece per range, `lookup` giving the range holding a key. Each
/// piece starts where the previous one ended, even when the range found for it starts
/// before that: the cache may hand back an older, wider descriptor of keys already
/// covered (another request cached it from a meta entry the split had not rewritten
/// yet), and starting the piece at the range's start would read those keys twice.
async fn cut_span<F, Fut>(
    span: &Span,
    mut lookup: F,
) -> Result<Vec<(RangeDescriptor, Span)>, api::Error>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = Result<RangeDescriptor, api::Error>>,
{
    let mut out = Vec::new();
    let mut at = span.start.clone();
    loop {
        let desc = lookup(at.clone()).await?;
        if !desc.contains_key(&at) {
            return Err(api::Error::InvalidRequest(format!(
                "range lookup of {} answered {desc}",
                cairn_kv::keys::pretty(&at)
            )));
        }
        let end = span.end.clone().min(desc.end_key.clone());
        let done = desc.end_key >= span.end;
        let next = desc.end_key.clone();
        out.push((desc, Span::new(at, end)));
        if done {
            return Ok(out);
        }
        at = next;
    }
}

fn request_spans(batch: &BatchRequest) -> Result<Vec<Span>, api::Error> {
    batch.requests.iter().map(addr_span).collect()
}

/// The span of addresses a request touches (range-local keys count as their anchors).
fn addr_span(req: &Request) -> Result<Span, api::Error> {
    let span = req.span();
    let bad = |e: cairn_kv::Error| api::Error::InvalidRequest(e.to_string());
    let start = keys::addr(&span.start).map_err(bad)?;
    let end = if keys::is_local(&span.end) {
        keys::addr(&span.end).map_err(bad)?
    } else {
        span.end.clone()
    };
    Ok(Span::new(start, end))
}

/// `req` restricted to `piece` of its span. Only span requests can cross ranges; a
/// point request is whole in its one range.
fn with_span(req: &Request, piece: Span) -> Result<Request, api::Error> {
    Ok(match req {
        Request::Scan { max_keys, .. } => Request::Scan {
            span: piece,
            max_keys: *max_keys,
        },
        Request::ReverseScan { max_keys, .. } => Request::ReverseScan {
            span: piece,
            max_keys: *max_keys,
        },
        Request::DeleteRange { .. } => Request::DeleteRange { span: piece },
        Request::ResolveIntentRange { txn, status, .. } => Request::ResolveIntentRange {
            span: piece,
            txn: txn.clone(),
            status: *status,
        },
        Request::Refresh { from, .. } => Request::Refresh {
            span: piece,
            from: *from,
        },
        other => other.clone(),
    })
}

/// Puts the per-range answers to one request back together.
fn combine(
    req: &Request,
    pieces: impl Iterator<Item = Response>,
    resume: Option<Span>,
) -> Result<Response, api::Error> {
    let mut pieces = pieces.peekable();
    let mismatch = |r: &Response| {
        api::Error::InvalidRequest(format!("{req:?} answered {r:?} for one of its ranges"))
    };
    Ok(match req {
        Request::Scan { .. } | Request::ReverseScan { .. } => {
            let mut all = Vec::new();
            for p in pieces {
                match p {
                    Response::Scan { kvs, .. } | Response::ReverseScan { kvs, .. } => {
                        all.extend(kvs)
                    }
                    other => return Err(mismatch(&other)),
                }
            }
            if matches!(req, Request::Scan { .. }) {
                Response::Scan {
                    kvs: all,
                    resume_span: resume,
                }
            } else {
                Response::ReverseScan {
                    kvs: all,
                    resume_span: resume,
                }
            }
        }
        Request::DeleteRange { .. } => {
            let mut all = Vec::new();
            let mut rest = Vec::new();
            for p in pieces {
                match p {
                    Response::DeleteRange { deleted, resume } => {
                        all.extend(deleted);
                        rest.extend(resume);
                    }
                    other => return Err(mismatch(&other)),
                }
            }
            Response::DeleteRange {
                deleted: all,
                resume: rest,
            }
        }
        Request::ResolveIntentRange { .. } => {
            let mut all = Vec::new();
            for p in pieces {
                match p {
                    Response::ResolveIntentRange { resume } => all.extend(resume),
                    other => return Err(mismatch(&other)),
                }
            }
            Response::ResolveIntentRange { resume: all }
        }
        _ => pieces
            .next()
            .ok_or_else(|| api::Error::InvalidRequest(format!("no answer to {req:?}")))?,
    })
}

/// The timestamp and transaction of the answers of several ranges.
#[derive(Default)]
struct Merged {
    timestamp: cairn_kv::Timestamp,
    txn: Option<cairn_kv::mvcc::TxnMeta>,
    observed: Vec<(NodeId, cairn_kv::Timestamp)>,
}

impl Merged {
    fn add_meta(&mut self, resp: &BatchResponse) {
        self.timestamp = self.timestamp.max(resp.timestamp);
        for (n, t) in &resp.observed {
            match self.observed.iter_mut().find(|(m, _)| m == n) {
                Some((_, seen)) => *seen = (*seen).min(*t),
                None => self.observed.push((*n, *t)),
            }
        }
        if let Some(t) = &resp.txn {
            match &mut self.txn {
                Some(m) => m.write_ts = m.write_ts.max(t.write_ts),
                None => self.txn = Some(t.clone()),
            }
        }
    }
}

/// The descriptor in a meta scan's answer, or (inner `Err`) a description of the gap
/// when the entry found does not cover `key`: the entry of the range holding it is not
/// written yet.
fn decode_meta_scan(
    key: &[u8],
    before: bool,
    resp: BatchResponse,
) -> Result<Result<RangeDescriptor, String>, api::Error> {
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
    let covers = if before {
        desc.start_key.as_slice() < key && key <= desc.end_key.as_slice()
    } else {
        desc.contains_key(key)
    };
    if !covers {
        return Ok(Err(format!(
            "the meta entry found for {}, {desc}, does not cover it",
            keys::pretty(key)
        )));
    }
    Ok(Ok(desc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range_cache::tests::desc;

    /// A meta entry that does not cover the key looked up is a gap being filled (a split
    /// wrote its right-hand entry first), not corruption: the lookup tries again.
    #[test]
    fn meta_entry_not_covering_the_key_is_a_gap() {
        let answer = |d: &RangeDescriptor| BatchResponse {
            responses: vec![Response::Scan {
                kvs: vec![(
                    keys::meta_key(&d.end_key),
                    postcard::to_stdvec(d).expect("encode"),
                )],
                resume_span: None,
            }],
            ..BatchResponse::default()
        };
        let right = desc(9, "s", "z");
        let gap = decode_meta_scan(b"p", false, answer(&right)).expect("decoded");
        assert!(gap.unwrap_err().contains("does not cover"));
        let found = decode_meta_scan(b"t", false, answer(&right)).expect("decoded");
        assert_eq!(found, Ok(right));
    }

    /// The first lookup sees the split ([a, m) and [m, z)); the second gets the older,
    /// wider [a, z) that a stale meta entry put back in the cache meanwhile. The pieces
    /// must not overlap.
    #[tokio::test]
    async fn cut_span_never_covers_a_key_twice_when_the_cache_goes_stale() {
        let answers = parking_lot::Mutex::new(vec![desc(5, "a", "z"), desc(5, "a", "m")]);
        let span = Span::new(b"c".to_vec(), b"t".to_vec());
        let pieces = cut_span(&span, |_| {
            let d = answers.lock().pop().expect("an answer");
            async move { Ok(d) }
        })
        .await
        .expect("cut");
        let spans: Vec<(Vec<u8>, Vec<u8>)> =
            pieces.into_iter().map(|(_, p)| (p.start, p.end)).collect();
        assert_eq!(
            spans,
            vec![
                (b"c".to_vec(), b"m".to_vec()),
                (b"m".to_vec(), b"t".to_vec())
            ]
        );
    }
}
