//! What a replica does when a request meets another transaction's intent.
//!
//! ```text
//!   request ── evaluate ── WriteIntent{intent of T} ──▶ release latches
//!                                                        │
//!        PushTxn(T) to T's record range ◀────────────────┘
//!          │  T finished / abandoned / outranked: pushed ─▶ ResolveIntent on our keys
//!          │  T alive and outranks us: wait there (txn_wait) for T's record to change,
//!          │  checking for a deadlock, then push again
//!          ▼
//!   evaluate again (latches re-acquired)
//! ```
//!
//! Requests blocked by the same intent queue in the [`crate::lock_table`]: the first
//! pushes, the others wait for the intent to be resolved (pushing themselves only after
//! a delay, which is what lets deadlock detection see them). A writer pushes to abort
//! T; a reader pushes T's timestamp above its own read (T may still commit, later). Everything happens within the request's deadline; past
//! it, the request fails with the `WriteIntent` error, which is retryable (nothing was
//! proposed): the transaction coordinator waits and sends it again.

use std::time::Duration;

use cairn_kv::api::{
    self, BatchRequest, BatchResponse, Header, PushKind, RangeDescriptor, Request, Response,
    TxnStatus,
};
use cairn_kv::mvcc::{Intent, TxnMeta};
use cairn_kv::{Error, RangeId, TxnId};

use crate::latch::LatchSpan;
use crate::lock_table::DEADLOCK_PUSH_DELAY;
use crate::replica::Replica;

/// How long one push waits at the pushee's record before the pusher tries again.
const PUSH_WAIT: Duration = Duration::from_millis(500);

/// How often a waiting pusher checks for a deadlock and for its own abort.
const DEADLOCK_CHECK_INTERVAL: Duration = Duration::from_millis(100);

impl Replica {
    /// Pushes the owners of `intents` out of the batch's way and resolves the intents.
    /// Returns `WriteIntent` if the deadline passes first.
    pub(crate) async fn handle_conflicts(
        &self,
        batch: &BatchRequest,
        intents: Vec<Intent>,
        deadline: tokio::time::Instant,
    ) -> Result<(), api::Error> {
        let pusher = batch.header.txn.clone();
        let kind = if batch.requests.iter().any(Request::writes_data) {
            PushKind::Abort
        } else {
            PushKind::Timestamp
        };
        // A reader needs the intent above everything it must see: its timestamp and its
        // uncertainty interval here.
        let read_ts = if batch.header.timestamp.is_zero() {
            self.clock.now()
        } else {
            batch.header.timestamp
        };
        let push_to = read_ts.max(self.uncertainty_limit(&batch.header));
        let mut owners: Vec<&TxnMeta> = Vec::new();
        for i in &intents {
            if !owners.iter().any(|o| o.id == i.txn.id) {
                owners.push(&i.txn);
            }
        }
        for owner in owners {
            // Queue behind the owner's intent on the first key it blocks; wait there
            // while someone ahead is pushing, for a while.
            let Some(first) = intents.iter().find(|i| i.txn.id == owner.id) else {
                continue;
            };
            let waiter = self.lock_table.enqueue(&first.key, owner.id);
            if !waiter.is_first() {
                let released = waiter.released.notified();
                let wait_until = deadline.min(tokio::time::Instant::now() + DEADLOCK_PUSH_DELAY);
                if tokio::time::timeout_at(wait_until, released).await.is_ok() {
                    // Released: evaluate again.
                    continue;
                }
            }
            let record = loop {
                if tokio::time::Instant::now() >= deadline {
                    return Err(api::Error::Kv(Error::WriteIntent { intents }));
                }
                let push = BatchRequest {
                    header: Header {
                        range_id: RangeId(0),
                        timestamp: self.clock.now(),
                        txn: pusher.clone(),
                        ..Header::default()
                    },
                    requests: vec![Request::PushTxn {
                        key: owner.key.clone(),
                        pushee: owner.clone(),
                        push_to,
                        kind,
                        force: false,
                    }],
                };
                let sent =
                    tokio::time::timeout_at(deadline, self.cluster_sender()?.send(push)).await;
                match sent {
                    Err(_) => continue,
                    Ok(Ok(resp)) => match resp.responses.into_iter().next() {
                        Some(Response::PushTxn { pushee })
                            if pushee.status == TxnStatus::Staging =>
                        {
                            // Abandoned mid-commit: find out whether it committed.
                            match self.recover(pushee).await {
                                Ok(record) => break record,
                                Err(e) => {
                                    tracing::debug!(range = %self.range_id, pushee = ?owner.id, error = %e, "recovery failed; retrying");
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                            }
                        }
                        Some(Response::PushTxn { pushee }) => break pushee,
                        other => {
                            return Err(api::Error::InvalidRequest(format!(
                                "push answered {other:?}"
                            )));
                        }
                    },
                    Ok(Err(api::Error::Kv(Error::TxnAborted { txn })))
                        if Some(txn) == pusher.as_ref().map(|p| p.id) =>
                    {
                        return Err(api::Error::Kv(Error::TxnAborted { txn }));
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(range = %self.range_id, pushee = ?owner.id, error = %e, "push failed; retrying");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            };
            // The owner finished or moved: settle its intents that stopped us.
            let requests: Vec<Request> = intents
                .iter()
                .filter(|i| i.txn.id == record.meta.id)
                .map(|i| Request::ResolveIntent {
                    key: i.key.clone(),
                    txn: record.meta.clone(),
                    status: record.status,
                })
                .collect();
            if record.status == TxnStatus::Pending && kind == PushKind::Abort {
                // Cannot happen: an abort push leaves the pushee aborted or fails.
                continue;
            }
            let resolve = BatchRequest::new(RangeId(0), requests);
            match tokio::time::timeout_at(deadline, self.cluster_sender()?.send(resolve)).await {
                Err(_) => return Err(api::Error::Kv(Error::WriteIntent { intents })),
                Ok(r) => {
                    r?;
                }
            }
        }
        Ok(())
    }

    /// Serves a PushTxn: if the pushee holds out, waits for its record to change (or a
    /// while), watching for a deadlock that involves the pusher, and pushes again.
    pub(crate) async fn serve_push(
        &self,
        mut batch: BatchRequest,
        spans: Vec<LatchSpan>,
        desc: &RangeDescriptor,
        deadline: tokio::time::Instant,
        lease_term: u64,
    ) -> Result<BatchResponse, api::Error> {
        let Some(Request::PushTxn { pushee, .. }) = batch.requests.first().cloned() else {
            return Err(api::Error::InvalidRequest("not a push".into()));
        };
        let pusher = batch.header.txn.clone();
        let give_up = deadline.min(tokio::time::Instant::now() + PUSH_WAIT);
        let waiting = self
            .txn_wait
            .enqueue(pushee.id, pusher.as_ref().map(|p| p.id));
        loop {
            let changed = waiting.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            match self
                .serve_once(&batch, spans.clone(), desc, deadline, lease_term)
                .await
            {
                Err(api::Error::Kv(Error::TxnPushFailed { .. }))
                    if tokio::time::Instant::now() < give_up => {}
                other => return other,
            }
            let tick = tokio::time::Instant::now() + DEADLOCK_CHECK_INTERVAL;
            tokio::select! {
                _ = &mut changed => continue,
                _ = tokio::time::sleep_until(tick.min(give_up)) => {}
            }
            let Some(pusher) = &pusher else {
                continue;
            };
            // Who waits for the pusher? If the pushee does, this is a cycle.
            let (status, dependents) = self.query_txn(pusher).await;
            if status == Some(TxnStatus::Aborted) {
                return Err(api::Error::Kv(Error::TxnAborted { txn: pusher.id }));
            }
            let cycle = dependents.contains(&pushee.id);
            waiting.set_dependents(dependents);
            if cycle && outranks(pusher, &pushee) {
                tracing::info!(range = %self.range_id, pusher = ?pusher.id, pushee = ?pushee.id, "deadlock: aborting the pushee");
                if let Some(Request::PushTxn { force, kind, .. }) = batch.requests.first_mut() {
                    *force = true;
                    *kind = PushKind::Abort;
                }
            }
        }
    }

    /// Settles an abandoned STAGING record: it committed if every in-flight write is
    /// there at or below its timestamp. Each query is a read at that timestamp, so a
    /// write found missing cannot land there later (the timestamp cache pushes it up).
    async fn recover(&self, record: api::TxnRecord) -> Result<api::TxnRecord, api::Error> {
        let sender = self.cluster_sender()?;
        let mut committed = true;
        for (key, seq) in &record.in_flight {
            let query = BatchRequest {
                header: Header {
                    range_id: RangeId(0),
                    timestamp: record.meta.write_ts,
                    ..Header::default()
                },
                requests: vec![Request::QueryIntent {
                    key: key.clone(),
                    txn: TxnMeta {
                        seq: *seq,
                        ..record.meta.clone()
                    },
                }],
            };
            match sender.send(query).await?.responses.first() {
                Some(Response::QueryIntent { found: true }) => {}
                Some(Response::QueryIntent { found: false }) => {
                    committed = false;
                    break;
                }
                other => {
                    return Err(api::Error::InvalidRequest(format!(
                        "QueryIntent answered {other:?}"
                    )));
                }
            }
        }
        let settle = BatchRequest::new(
            RangeId(0),
            vec![Request::RecoverTxn {
                key: record.meta.key.clone(),
                txn: record.meta.clone(),
                committed,
            }],
        );
        match sender.send(settle).await?.responses.into_iter().next() {
            Some(Response::RecoverTxn { record }) => {
                tracing::info!(range = %self.range_id, txn = ?record.meta.id, status = ?record.status, "recovered an abandoned STAGING transaction");
                Ok(record)
            }
            other => Err(api::Error::InvalidRequest(format!(
                "RecoverTxn answered {other:?}"
            ))),
        }
    }

    /// The status of `txn`'s record and the transactions waiting for it (empty if its
    /// record's range cannot say right now).
    async fn query_txn(&self, txn: &TxnMeta) -> (Option<TxnStatus>, Vec<TxnId>) {
        let Ok(sender) = self.cluster_sender() else {
            return (None, Vec::new());
        };
        let query = BatchRequest::new(
            RangeId(0),
            vec![Request::QueryTxn {
                key: txn.key.clone(),
                txn: txn.id,
            }],
        );
        match tokio::time::timeout(DEADLOCK_CHECK_INTERVAL * 5, sender.send(query)).await {
            Ok(Ok(resp)) => match resp.responses.into_iter().next() {
                Some(Response::QueryTxn { record, waiting }) => (record.map(|r| r.status), waiting),
                _ => (None, Vec::new()),
            },
            _ => (None, Vec::new()),
        }
    }
}

/// Which side of a deadlock breaks it: the higher priority, then the higher id.
pub(crate) fn outranks(a: &TxnMeta, b: &TxnMeta) -> bool {
    (a.priority, a.id) > (b.priority, b.id)
}
