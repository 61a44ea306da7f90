//! The `Txn` handle the SQL layer uses, and [`Db::run`], which runs a closure in a
//! transaction and runs it again when the transaction must restart.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cairn_kv::api::{self, BatchRequest, Header, Request, Response, TxnStatus};
use cairn_kv::hlc::Clock;
use cairn_kv::keys::Span;
use cairn_kv::mvcc::TxnMeta;
use cairn_kv::{Error, NodeId, RangeId, Timestamp, TxnId};

use super::heartbeater::Heartbeater;
use super::refresher::{ReadMark, Refresher, refresh_spans};
use super::{RetryReason, TxnError};
use crate::DistSender;

/// How long a request keeps retrying against another transaction's intent (each try
/// waits at that transaction's record) before the transaction gives up and restarts.
const CONFLICT_WAIT: Duration = Duration::from_secs(20);

/// How many times [`Db::run`] runs a closure before giving up.
const MAX_ATTEMPTS: u32 = 100;

/// Where transactions start: a DistSender and the node's clock.
#[derive(Clone)]
pub struct Db {
    dist: Arc<DistSender>,
    clock: Arc<Clock>,
}

impl Db {
    pub fn new(dist: Arc<DistSender>, clock: Arc<Clock>) -> Self {
        Db { dist, clock }
    }

    /// A new transaction, reading at the clock's current time.
    pub fn begin(&self) -> Txn {
        Txn::new(self.dist.clone(), self.clock.clone(), 1)
    }

    /// Splits the range holding `key` so that a range starts at `key`. Returns the new
    /// right-hand range, or `None` if a range already started there.
    pub async fn split_at(&self, key: &[u8]) -> Result<Option<api::RangeDescriptor>, api::Error> {
        let batch = BatchRequest::new(
            RangeId(0),
            vec![Request::AdminSplit {
                split_key: key.to_vec(),
            }],
        );
        match self.dist.send(batch).await {
            Ok(resp) => match resp.responses.into_iter().next() {
                Some(Response::AdminSplit { right, .. }) => Ok(Some(right)),
                other => Err(api::Error::InvalidRequest(format!(
                    "unexpected answer to a split: {other:?}"
                ))),
            },
            // The range the split went to starts at the key already.
            Err(api::Error::InvalidRequest(_))
                if self
                    .dist
                    .cache()
                    .lookup(key)
                    .is_some_and(|r| r.desc.start_key == key) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs `f` in a transaction and commits it; when the transaction must restart
    /// (a retryable error from `f` or from the commit), runs `f` again.
    pub async fn run<T, F>(&self, mut f: F) -> Result<T, TxnError>
    where
        F: for<'a> FnMut(&'a mut Txn) -> api::BoxFuture<'a, Result<T, TxnError>>,
    {
        let mut txn = self.begin();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match f(&mut txn).await {
                Ok(v) if txn.is_open() => txn.commit().await.map(|()| v),
                other => other,
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(txn = ?txn.id(), attempt, error = %e, "restarting transaction");
                    txn.restart().await;
                }
                Err(e) => {
                    txn.rollback().await;
                    return Err(e);
                }
            }
        }
    }
}

/// A point in a transaction to roll back to (SQL's SAVEPOINT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Savepoint {
    seq: u32,
    epoch: u32,
}

/// Where a statement began: its savepoint and how far the reads had gone (see
/// [`Txn::restart_statement`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatementStart {
    savepoint: Savepoint,
    reads: ReadMark,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    Committed,
    Aborted,
}

/// A transaction: serializable, at one timestamp, across any number of ranges.
///
/// Invariants:
/// - `read_ts <= meta.write_ts`; the transaction commits at `meta.write_ts`, after
///   proving (refreshing) its reads at that timestamp if it is above `read_ts`;
/// - every span the transaction may have written is in `lock_spans`;
/// - once committed or aborted, nothing more is sent.
pub struct Txn {
    dist: Arc<DistSender>,
    clock: Arc<Clock>,
    meta: TxnMeta,
    read_ts: Timestamp,
    uncertainty_limit: Timestamp,
    heartbeater: Heartbeater,
    lock_spans: Vec<Span>,
    refresher: Refresher,
    state: State,
    /// Set when the transaction was aborted by someone else: a restart needs a new id.
    aborted_remotely: bool,
    /// Each node's clock reading when the transaction first heard from it.
    observed: Vec<(NodeId, Timestamp)>,
}

impl Txn {
    fn new(dist: Arc<DistSender>, clock: Arc<Clock>, priority: u32) -> Txn {
        let now = clock.now();
        Txn {
            meta: TxnMeta {
                id: TxnId::random(),
                key: Vec::new(),
                epoch: 0,
                write_ts: now,
                min_ts: now,
                priority,
                seq: 0,
                ignored: Vec::new(),
            },
            read_ts: now,
            uncertainty_limit: now.add_duration(clock.max_offset()),
            heartbeater: Heartbeater::new(),
            lock_spans: Vec::new(),
            refresher: Refresher::default(),
            state: State::Open,
            aborted_remotely: false,
            observed: Vec::new(),
            dist,
            clock,
        }
    }

    pub fn id(&self) -> TxnId {
        self.meta.id
    }

    pub fn epoch(&self) -> u32 {
        self.meta.epoch
    }

    /// The timestamp the transaction reads at now.
    pub fn read_ts(&self) -> Timestamp {
        self.read_ts
    }

    /// The timestamp it would commit at now.
    pub fn write_ts(&self) -> Timestamp {
        self.meta.write_ts
    }

    /// Whether the transaction may have written `key` (its tracked write spans cover
    /// it; condensed spans make this conservative).
    pub fn may_have_written(&self, key: &[u8]) -> bool {
        self.lock_spans.iter().any(|s| s.contains(key))
    }

    pub fn is_open(&self) -> bool {
        self.state == State::Open
    }

    pub async fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, TxnError> {
        match self.send_one(Request::Get { key: key.to_vec() }).await? {
            Response::Get { value } => Ok(value),
            other => Err(unexpected(&other)),
        }
    }

    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), TxnError> {
        self.send_one(Request::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        })
        .await
        .map(|_| ())
    }

    /// Puts `value` if `key` holds `expected` now (`None`: no value).
    pub async fn cput(
        &mut self,
        key: &[u8],
        value: &[u8],
        expected: Option<&[u8]>,
    ) -> Result<(), TxnError> {
        self.send_one(Request::ConditionalPut {
            key: key.to_vec(),
            value: value.to_vec(),
            expected: expected.map(<[u8]>::to_vec),
        })
        .await
        .map(|_| ())
    }

    pub async fn delete(&mut self, key: &[u8]) -> Result<(), TxnError> {
        self.send_one(Request::Delete { key: key.to_vec() })
            .await
            .map(|_| ())
    }

    /// The keys of `[start, end)` in order, at most `max_keys` (0: all).
    pub async fn scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        max_keys: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TxnError> {
        self.scan_in(start, end, max_keys, false).await
    }

    /// The keys of `[start, end)` in descending order, at most `max_keys` (0: all).
    pub async fn reverse_scan(
        &mut self,
        start: &[u8],
        end: &[u8],
        max_keys: u64,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TxnError> {
        self.scan_in(start, end, max_keys, true).await
    }

    async fn scan_in(
        &mut self,
        start: &[u8],
        end: &[u8],
        max_keys: u64,
        reverse: bool,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, TxnError> {
        let span = Span::new(start.to_vec(), end.to_vec());
        let req = if reverse {
            Request::ReverseScan { span, max_keys }
        } else {
            Request::Scan { span, max_keys }
        };
        match self.send_one(req).await? {
            Response::Scan { kvs, .. } | Response::ReverseScan { kvs, .. } => Ok(kvs),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes every key of `[start, end)`; returns how many it deleted.
    pub async fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<usize, TxnError> {
        // Each command deletes a bounded number of keys and says where to go on.
        let mut spans = vec![Span::new(start.to_vec(), end.to_vec())];
        let mut count = 0;
        while !spans.is_empty() {
            let requests = std::mem::take(&mut spans)
                .into_iter()
                .map(|span| Request::DeleteRange { span })
                .collect();
            for r in self.send(requests).await? {
                match r {
                    Response::DeleteRange { deleted, resume } => {
                        count += deleted.len();
                        spans.extend(resume);
                    }
                    other => return Err(unexpected(&other)),
                }
            }
        }
        Ok(count)
    }

    /// A savepoint: where [`Txn::rollback_to_savepoint`] returns to.
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            seq: self.meta.seq,
            epoch: self.meta.epoch,
        }
    }

    /// Undoes every write made since `savepoint`: they stay on disk as intents, but the
    /// transaction's later reads skip them and its commit discards them. A savepoint
    /// taken before the transaction restarted cannot be returned to (its writes were
    /// already discarded by the restart): that is a retryable error.
    pub fn rollback_to_savepoint(&mut self, savepoint: Savepoint) -> Result<(), TxnError> {
        self.check_open()?;
        if savepoint.epoch != self.meta.epoch {
            return Err(self.retry(
                RetryReason::Savepoint,
                "the transaction restarted since the savepoint".into(),
            ));
        }
        if savepoint.seq < self.meta.seq {
            self.meta.ignored.push((savepoint.seq + 1, self.meta.seq));
        }
        Ok(())
    }

    /// Where a statement starts: what [`Txn::restart_statement`] returns to.
    pub fn statement_start(&self) -> StatementStart {
        StatementStart {
            savepoint: self.savepoint(),
            reads: self.refresher.mark(),
        }
    }

    /// Whether the reads of the statement that began at `start` still hold at the
    /// write timestamp, when its writes pushed that above the read timestamp (checking
    /// only them, not the reads before: the commit checks all). `Ok(false)` means the
    /// statement read something that was written before the statement wrote: it may
    /// run again ([`Txn::restart_statement`]), or the commit will fail.
    pub async fn statement_reads_hold(&mut self, start: StatementStart) -> Result<bool, TxnError> {
        self.check_live()?;
        let to = self.meta.write_ts;
        if to <= self.read_ts {
            return Ok(true);
        }
        // Reads that cannot be told apart from earlier ones are left to the commit.
        let result = match self.refresher.split(start.reads) {
            Some((_, since)) => {
                refresh_spans(since, &self.dist, &self.meta, self.read_ts, to).await
            }
            None => Ok(true),
        };
        result.map_err(|e| self.classify(e))
    }

    /// Undoes the statement that began at `start` so that it can run again at the
    /// write timestamp, when it was only the statement's own reads that kept the
    /// transaction from moving there (a row it read was written by someone else before
    /// it wrote the row back): the reads before it are refreshed, its writes undone (as
    /// by a savepoint) and its reads forgotten. The transaction is then as if the
    /// statement had not run and everything before it had run at the new timestamp.
    /// `Ok(false)` if an earlier read no longer holds either (the whole transaction must
    /// restart); the transaction is then unchanged.
    pub async fn restart_statement(&mut self, start: StatementStart) -> Result<bool, TxnError> {
        self.check_live()?;
        if start.savepoint.epoch != self.meta.epoch {
            return Ok(false);
        }
        let to = self.meta.write_ts;
        let result = match self.refresher.split(start.reads) {
            Some((before, _)) => {
                refresh_spans(before, &self.dist, &self.meta, self.read_ts, to).await
            }
            None => Ok(false),
        };
        let ok = result.map_err(|e| self.classify(e))?;
        if !ok {
            return Ok(false);
        }
        self.rollback_to_savepoint(start.savepoint)?;
        self.refresher.truncate(start.reads);
        self.read_ts = to;
        Ok(true)
    }

    async fn send_one(&mut self, req: Request) -> Result<Response, TxnError> {
        let mut r = self.send(vec![req]).await?;
        r.pop()
            .ok_or_else(|| TxnError::Kv(api::Error::InvalidRequest("empty answer".into())))
    }

    /// Sends requests in the transaction, through the interceptors (see the module doc
    /// of [`crate::coord`]).
    pub async fn send(&mut self, requests: Vec<Request>) -> Result<Vec<Response>, TxnError> {
        self.send_opts(requests, false).await
    }

    /// Sends reads whose results the transaction is about to write back (the rows of
    /// an UPDATE or a DELETE): they read the newest committed values, moving the
    /// transaction's timestamp up when those are above it (see [`Header::locking`]).
    pub async fn send_locking(
        &mut self,
        requests: Vec<Request>,
    ) -> Result<Vec<Response>, TxnError> {
        self.send_opts(requests, true).await
    }

    async fn send_opts(
        &mut self,
        requests: Vec<Request>,
        locking: bool,
    ) -> Result<Vec<Response>, TxnError> {
        self.check_live()?;
        let seq = self.prepare(&requests);
        self.heartbeater
            .start(&self.dist, &self.meta, self.clock.now());
        // 4. Refresher, around the send.
        let responses = self.send_refreshing(&requests, seq, locking).await?;
        self.refresher.record(&requests);
        Ok(responses)
    }

    /// Interceptors 1 to 3 for an outgoing batch: the first write anchors the record
    /// (heartbeater), the requests are numbered (sequencer; returns the first number),
    /// and the spans written are recorded before anything is sent (write tracker).
    fn prepare(&mut self, requests: &[Request]) -> u32 {
        if self.meta.key.is_empty()
            && let Some(w) = requests.iter().find(|r| r.writes_data())
        {
            self.meta.key = w.span().start;
        }
        let seq = self.meta.seq + 1;
        self.meta.seq += u32::try_from(requests.len()).unwrap_or(u32::MAX);
        for w in requests.iter().filter(|r| r.writes_data()) {
            self.lock_spans.push(w.span());
        }
        condense_spans(&mut self.lock_spans);
        seq
    }

    /// Fails if the transaction is finished, or a heartbeat found it aborted.
    fn check_live(&mut self) -> Result<(), TxnError> {
        self.check_open()?;
        if self.heartbeater.aborted() {
            self.aborted_remotely = true;
            return Err(self.aborted(self.meta.id));
        }
        Ok(())
    }

    /// Sends a batch; when the transaction's timestamp must move to serve it, refreshes
    /// the reads so far and sends it again (same sequence numbers: a replay).
    async fn send_refreshing(
        &mut self,
        requests: &[Request],
        seq: u32,
        locking: bool,
    ) -> Result<Vec<Response>, TxnError> {
        let started = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(10);
        loop {
            let mut batch = self.batch(requests.to_vec(), seq);
            batch.header.locking = locking;
            match self.dist.send(batch).await {
                Ok(resp) => {
                    self.observe(&resp);
                    return Ok(resp.responses);
                }
                Err(api::Error::Kv(Error::ReadWithinUncertainty { existing_ts, .. })) => {
                    let to = existing_ts.next().max(self.meta.write_ts);
                    self.refresh_to(to).await?;
                }
                Err(api::Error::Kv(Error::WriteIntent { .. })) => {
                    if started.elapsed() > CONFLICT_WAIT {
                        return Err(self.retry(
                            RetryReason::ConflictTimeout,
                            format!(
                                "gave up after {CONFLICT_WAIT:?} waiting for a conflicting transaction"
                            ),
                        ));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(self.classify(e)),
            }
        }
    }

    /// A batch of the transaction at its current timestamps.
    fn batch(&self, requests: Vec<Request>, seq: u32) -> BatchRequest {
        BatchRequest {
            header: Header {
                range_id: RangeId(0),
                timestamp: self.read_ts,
                uncertainty_limit: self.uncertainty_limit,
                txn: Some(TxnMeta {
                    seq,
                    ..self.meta.clone()
                }),
                observed: self.observed.clone(),
                locking: false,
            },
            requests,
        }
    }

    /// Takes what the ranges say of the transaction (a write timestamp pushed up, clock
    /// readings of nodes not visited before).
    fn observe(&mut self, resp: &api::BatchResponse) {
        for (n, t) in &resp.observed {
            if !self.observed.iter().any(|(m, _)| m == n) {
                self.observed.push((*n, *t));
            }
        }
        if let Some(t) = &resp.txn
            && t.write_ts > self.meta.write_ts
        {
            self.meta.write_ts = t.write_ts;
        }
    }

    /// Moves the read timestamp to `to` if every read so far still holds there.
    async fn refresh_to(&mut self, to: Timestamp) -> Result<(), TxnError> {
        let ok = self
            .refresher
            .refresh(&self.dist, &self.meta, self.read_ts, to)
            .await
            .map_err(|e| self.classify(e))?;
        if !ok {
            return Err(self.retry(
                RetryReason::ReadsInvalidated,
                format!(
                    "reads at {} no longer hold at {to} (write skew or a newer version)",
                    self.read_ts
                ),
            ));
        }
        self.read_ts = to;
        self.meta.write_ts = self.meta.write_ts.max(to);
        Ok(())
    }

    /// A retryable error, counted in the node's metrics.
    fn retry(&self, cause: RetryReason, reason: String) -> TxnError {
        let i = RetryReason::ALL
            .iter()
            .position(|r| *r == cause)
            .unwrap_or_default();
        self.dist.txn_metrics().restarts[i].fetch_add(1, Ordering::Relaxed);
        TxnError::Retry { cause, reason }
    }

    fn aborted(&self, txn: TxnId) -> TxnError {
        self.retry(
            RetryReason::Aborted,
            format!("transaction {txn:?} was aborted"),
        )
    }

    /// What a KV error means for the transaction.
    fn classify(&mut self, e: api::Error) -> TxnError {
        match e {
            api::Error::Kv(Error::TxnAborted { txn }) => {
                self.aborted_remotely = true;
                self.aborted(txn)
            }
            // A write whose outcome is unknown may have left an intent: the
            // transaction cannot go on as if it had not, but it has not committed, so
            // it may restart (its lock spans cover the write).
            api::Error::AmbiguousResult { reason, .. } => self.retry(
                RetryReason::AmbiguousWrite,
                format!("a write's outcome is unknown ({reason})"),
            ),
            other => TxnError::Kv(other),
        }
    }

    fn check_open(&self) -> Result<(), TxnError> {
        match self.state {
            State::Open => Ok(()),
            State::Committed => Err(TxnError::Finished("committed")),
            State::Aborted => Err(TxnError::Finished("aborted")),
        }
    }

    /// Commits the transaction (5. Committer).
    pub async fn commit(&mut self) -> Result<(), TxnError> {
        self.commit_with(Vec::new()).await.map(|_| ())
    }

    /// Sends `requests` and commits in the same batch: when they and every earlier write
    /// lie in one range, that is a single Raft command (one-phase commit).
    pub async fn commit_with(&mut self, requests: Vec<Request>) -> Result<Vec<Response>, TxnError> {
        let result = self.try_commit_with(requests).await;
        if result.is_ok() {
            self.dist
                .txn_metrics()
                .commits
                .fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn try_commit_with(&mut self, requests: Vec<Request>) -> Result<Vec<Response>, TxnError> {
        self.check_live()?;
        if self.meta.key.is_empty() && !requests.iter().any(Request::writes_data) {
            // Read-only: nothing to commit beyond the reads themselves.
            let responses = if requests.is_empty() {
                Vec::new()
            } else {
                self.send(requests).await?
            };
            self.state = State::Committed;
            return Ok(responses);
        }
        let seq = self.prepare(&requests);
        let n = requests.len();
        let mut pending = requests;
        loop {
            if self.meta.write_ts > self.read_ts {
                let to = self.meta.write_ts;
                if let Err(e) = self.refresh_to(to).await {
                    self.rollback().await;
                    return Err(e);
                }
            }
            // Parallel commit: the EndTxn goes out with the last writes, naming them;
            // request i of the batch has sequence number seq + i.
            let in_flight: Vec<(Vec<u8>, u32)> = pending
                .iter()
                .enumerate()
                .filter(|(_, r)| r.writes_data())
                .map(|(i, r)| (r.span().start, seq + u32::try_from(i).unwrap_or(u32::MAX)))
                .collect();
            let mut all = pending.clone();
            all.push(Request::EndTxn {
                key: self.meta.key.clone(),
                commit: true,
                lock_spans: merge_spans(&self.lock_spans),
                in_flight,
            });
            let batch = self.batch(all, seq);
            match self.dist.send(batch).await {
                Ok(resp) => {
                    let pushed_to = resp.txn.as_ref().map(|t| t.write_ts);
                    let mut responses = resp.responses;
                    let Some(Response::EndTxn { record }) = responses.pop() else {
                        return Err(TxnError::Kv(api::Error::InvalidRequest(
                            "EndTxn got no record".into(),
                        )));
                    };
                    if record.status == TxnStatus::Staging
                        && pushed_to.is_some_and(|ts| ts > record.meta.write_ts)
                    {
                        // A write landed above the staged timestamp: not committed. The
                        // writes are done; commit them explicitly at their timestamp.
                        self.meta.write_ts = self.meta.write_ts.max(pushed_to.unwrap_or_default());
                        pending.clear();
                        continue;
                    }
                    // Committed: explicitly (COMMITTED), or implicitly (STAGING, every
                    // in-flight write at or below the staged timestamp).
                    self.state = State::Committed;
                    self.heartbeater.stop();
                    self.finish_async(record);
                    self.commit_wait().await;
                    responses.truncate(n);
                    return Ok(responses);
                }
                Err(api::Error::Kv(Error::TxnPushed { ts, .. })) => {
                    self.meta.write_ts = self.meta.write_ts.max(ts);
                }
                Err(api::Error::Kv(Error::WriteIntent { .. })) if !pending.is_empty() => {
                    // The writes of the final batch met an intent: send them on their
                    // own (waiting out the conflict), then commit alone.
                    let reqs = std::mem::take(&mut pending);
                    if let Err(e) = self.send_refreshing(&reqs, seq, false).await {
                        self.rollback().await;
                        return Err(e);
                    }
                }
                Err(api::Error::Kv(Error::ReadWithinUncertainty { existing_ts, .. })) => {
                    let to = existing_ts.next().max(self.meta.write_ts);
                    if let Err(e) = self.refresh_to(to).await {
                        self.rollback().await;
                        return Err(e);
                    }
                }
                Err(api::Error::AmbiguousResult { reason, .. }) => {
                    // The commit may have happened: nothing more may be done in this
                    // transaction, and its fate must not be guessed.
                    self.state = State::Aborted;
                    self.heartbeater.stop();
                    return Err(TxnError::Ambiguous(reason));
                }
                Err(e) => {
                    let e = self.classify(e);
                    self.rollback().await;
                    return Err(e);
                }
            }
        }
    }

    /// Aborts the transaction and removes its intents (best effort: an intent left
    /// behind is removed by the next transaction that meets it, once the record is
    /// aborted or has expired).
    pub async fn rollback(&mut self) {
        if self.state != State::Open {
            return;
        }
        self.state = State::Aborted;
        self.dist
            .txn_metrics()
            .aborts
            .fetch_add(1, Ordering::Relaxed);
        self.heartbeater.stop();
        if self.meta.key.is_empty() {
            return;
        }
        let batch = self.batch(
            vec![Request::EndTxn {
                key: self.meta.key.clone(),
                commit: false,
                lock_spans: merge_spans(&self.lock_spans),
                in_flight: Vec::new(),
            }],
            self.meta.seq,
        );
        match self.dist.send(batch).await {
            Ok(resp) => {
                if let Some(Response::EndTxn { record }) = resp.responses.into_iter().next() {
                    self.resolve_async(record.lock_spans, record.meta, TxnStatus::Aborted);
                }
            }
            Err(e) => {
                tracing::debug!(txn = ?self.meta.id, error = %e, "rollback failed; intents will expire")
            }
        }
    }

    /// Makes the transaction ready to run again after a retryable error: a new epoch
    /// of the same transaction (keeping its record and intents, which the new epoch
    /// overwrites or the commit discards), or, if it was aborted, a new transaction
    /// with a higher priority.
    pub async fn restart(&mut self) {
        if self.aborted_remotely || self.heartbeater.aborted() || self.state != State::Open {
            self.rollback().await;
            *self = Txn::new(
                self.dist.clone(),
                self.clock.clone(),
                self.meta.priority.saturating_add(1),
            );
            return;
        }
        let now = self.clock.now().max(self.meta.write_ts);
        self.meta.epoch += 1;
        // Savepoints belong to the epoch that took them.
        self.meta.ignored.clear();
        self.meta.write_ts = now;
        self.read_ts = now;
        self.refresher.clear();
        self.heartbeater
            .start(&self.dist, &self.meta, self.clock.now());
    }

    /// Acknowledges a commit only once the clock has passed its timestamp, so a
    /// transaction that starts after the acknowledgement reads above it.
    async fn commit_wait(&self) {
        let wait = self.clock.time_until(self.meta.write_ts);
        if !wait.is_zero() {
            tokio::time::sleep(wait.min(self.clock.max_offset())).await;
        }
    }

    /// After a commit: makes a STAGING record COMMITTED, then resolves the intents on
    /// other ranges, in the background.
    fn finish_async(&self, record: api::TxnRecord) {
        if record.status != TxnStatus::Staging {
            self.resolve_async(record.lock_spans, record.meta, TxnStatus::Committed);
            return;
        }
        let dist = self.dist.clone();
        let batch = BatchRequest {
            header: Header {
                range_id: RangeId(0),
                timestamp: record.meta.write_ts,
                txn: Some(record.meta.clone()),
                ..Header::default()
            },
            requests: vec![Request::EndTxn {
                key: record.meta.key.clone(),
                commit: true,
                lock_spans: record.lock_spans.clone(),
                in_flight: Vec::new(),
            }],
        };
        tokio::spawn(async move {
            match dist.send(batch).await {
                Ok(resp) => {
                    if let Some(Response::EndTxn { record }) = resp.responses.into_iter().next() {
                        resolve(&dist, record.lock_spans, record.meta, TxnStatus::Committed).await;
                    }
                }
                // Someone who met an intent may have recovered it first; either way the
                // record ends COMMITTED and the intents are resolved when met.
                Err(e) => {
                    tracing::debug!(txn = ?record.meta.id, error = %e, "explicit commit failed")
                }
            }
        });
    }

    /// Resolves the intents in `spans` in the background.
    fn resolve_async(&self, spans: Vec<Span>, meta: TxnMeta, status: TxnStatus) {
        if spans.is_empty() {
            return;
        }
        let dist = self.dist.clone();
        tokio::spawn(async move { resolve(&dist, spans, meta, status).await });
    }
}

/// How many ResolveIntentRange commands one transaction's background resolution has
/// in flight.
const RESOLVE_CONCURRENCY: usize = 4;

/// Resolves `meta`'s intents in `spans`: one span per command (each command resolves
/// a bounded number of intents and says where to go on; several requests in one batch
/// would make one unbounded Raft command), a few commands at a time.
async fn resolve(dist: &DistSender, spans: Vec<Span>, meta: TxnMeta, status: TxnStatus) {
    let mut pending: std::collections::VecDeque<Span> = spans.into();
    while !pending.is_empty() {
        let wave: Vec<Span> = pending
            .drain(..pending.len().min(RESOLVE_CONCURRENCY))
            .collect();
        let sends = wave.into_iter().map(|span| {
            dist.send(BatchRequest::new(
                RangeId(0),
                vec![Request::ResolveIntentRange {
                    span,
                    txn: meta.clone(),
                    status,
                }],
            ))
        });
        for result in futures_util::future::join_all(sends).await {
            match result {
                Ok(resp) => {
                    for r in resp.responses {
                        if let Response::ResolveIntentRange { resume } = r {
                            resume.into_iter().for_each(|s| pending.push_front(s));
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(txn = ?meta.id, error = %e, "resolving intents failed; readers will resolve them");
                    return;
                }
            }
        }
    }
}

impl Drop for Txn {
    fn drop(&mut self) {
        // A transaction dropped while open is abandoned: its heartbeats stop, and it
        // expires (the heartbeater's own drop stops the task).
        self.heartbeater.stop();
    }
}

fn unexpected(r: &Response) -> TxnError {
    TxnError::Kv(api::Error::InvalidRequest(format!(
        "unexpected answer {r:?}"
    )))
}

/// How many spans a transaction tracks, for its writes and for its reads, before it
/// condenses them into fewer, wider ones.
pub(crate) const MAX_TRACKED_SPANS: usize = 4_096;

/// Keeps `spans` under [`MAX_TRACKED_SPANS`]: past it, merges them and, if that is not
/// enough, replaces each run of neighbours by the span that covers it. A covering span
/// is always safe, for writes (resolving intents touches only the transaction's own)
/// and for reads (a refresh over more keys can only fail more often), and it bounds
/// what a transaction that writes or reads a million rows carries in memory and in its
/// record.
pub(crate) fn condense_spans(spans: &mut Vec<Span>) {
    if spans.len() <= MAX_TRACKED_SPANS {
        return;
    }
    let merged = merge_spans(spans);
    let target = MAX_TRACKED_SPANS / 2;
    if merged.len() <= target {
        *spans = merged;
        return;
    }
    let run = merged.len().div_ceil(target);
    *spans = merged
        .chunks(run)
        .map(|c| Span::new(c[0].start.clone(), c[c.len() - 1].end.clone()))
        .collect();
}

/// Sorts spans and merges the ones that overlap or touch.
pub(crate) fn merge_spans(spans: &[Span]) -> Vec<Span> {
    let mut sorted: Vec<Span> = spans.to_vec();
    sorted.sort();
    let mut out: Vec<Span> = Vec::with_capacity(sorted.len());
    for s in sorted {
        match out.last_mut() {
            Some(last) if s.start <= last.end => {
                if s.end > last.end {
                    last.end = s.end;
                }
            }
            _ => out.push(s),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condense_spans_bounds_the_count_and_covers_every_span() {
        let key = |i: usize| format!("k{i:08}").into_bytes();
        let original: Vec<Span> = (0..10 * MAX_TRACKED_SPANS)
            .map(|i| Span::new(key(2 * i), key(2 * i + 1)))
            .collect();
        let mut spans = original.clone();
        condense_spans(&mut spans);
        assert!(spans.len() <= MAX_TRACKED_SPANS / 2, "{}", spans.len());
        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));
        for s in &original {
            assert!(
                spans.iter().any(|c| c.start <= s.start && s.end <= c.end),
                "{s:?} not covered"
            );
        }
        // Under the bound, nothing changes.
        let mut few = original[..10].to_vec();
        condense_spans(&mut few);
        assert_eq!(few, original[..10].to_vec());
    }

    #[test]
    fn merge_spans_joins_overlapping_and_touching() {
        let s = |a: &str, b: &str| Span::new(a.as_bytes().to_vec(), b.as_bytes().to_vec());
        assert_eq!(
            merge_spans(&[
                s("d", "f"),
                s("a", "b"),
                s("b", "c"),
                s("e", "g"),
                s("x", "y")
            ]),
            vec![s("a", "c"), s("d", "g"), s("x", "y")]
        );
    }
}
