//! Interceptor 1: keeps the transaction record alive.
//!
//! The record is anchored at the first key the transaction writes. From then on a task
//! heartbeats it every [`TXN_HEARTBEAT_INTERVAL`], so that conflicting transactions
//! know the coordinator is alive; if the coordinator dies, the heartbeats stop and
//! after [`cairn_kv::api::TXN_LIVENESS_THRESHOLD`] anyone may abort the transaction.
//! A heartbeat that finds the record aborted tells the transaction, which then fails
//! fast instead of at commit.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_kv::RangeId;
use cairn_kv::api::{BatchRequest, Header, Request, Response, TXN_HEARTBEAT_INTERVAL, TxnStatus};
use cairn_kv::mvcc::TxnMeta;
use parking_lot::Mutex;

use crate::DistSender;

/// The heartbeat task of one transaction.
pub struct Heartbeater {
    task: Option<tokio::task::JoinHandle<()>>,
    /// Set when a heartbeat finds the record aborted.
    aborted: Arc<AtomicBool>,
    /// The transaction as the task heartbeats it.
    meta: Arc<Mutex<TxnMeta>>,
}

impl Heartbeater {
    pub fn new() -> Self {
        Heartbeater {
            task: None,
            aborted: Arc::default(),
            meta: Arc::new(Mutex::new(TxnMeta {
                id: Default::default(),
                key: Vec::new(),
                epoch: 0,
                write_ts: Default::default(),
                min_ts: Default::default(),
                priority: 0,
                seq: 0,
                ignored: Vec::new(),
            })),
        }
    }

    /// Whether a heartbeat found the transaction aborted.
    pub fn aborted(&self) -> bool {
        self.aborted.load(Ordering::Relaxed)
    }

    /// Starts heartbeating once the transaction has an anchor (idempotent), and keeps
    /// the task's copy of the transaction current. Until its record exists, others
    /// count the transaction alive from its start: one that starts writing late gets its
    /// record at once, before that grace runs out.
    pub fn start(&mut self, dist: &Arc<DistSender>, meta: &TxnMeta, now: cairn_kv::Timestamp) {
        *self.meta.lock() = meta.clone();
        if self.task.is_some() || meta.key.is_empty() {
            return;
        }
        let dist = dist.clone();
        let aborted = self.aborted.clone();
        let shared = self.meta.clone();
        let mut first = meta.min_ts.add_duration(TXN_HEARTBEAT_INTERVAL) < now;
        self.task = Some(tokio::spawn(async move {
            loop {
                if !std::mem::take(&mut first) {
                    tokio::time::sleep(TXN_HEARTBEAT_INTERVAL).await;
                }
                let meta = shared.lock().clone();
                let batch = BatchRequest {
                    header: Header {
                        range_id: RangeId(0),
                        timestamp: meta.write_ts,
                        txn: Some(meta.clone()),
                        ..Header::default()
                    },
                    requests: vec![Request::HeartbeatTxn {
                        key: meta.key.clone(),
                    }],
                };
                match dist.send(batch).await {
                    Ok(resp) => {
                        if let Some(Response::HeartbeatTxn { record }) = resp.responses.first()
                            && record.status == TxnStatus::Aborted
                        {
                            aborted.store(true, Ordering::Relaxed);
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(txn = ?meta.id, error = %e, "heartbeat failed");
                    }
                }
            }
        }));
    }

    /// Stops heartbeating (the transaction is ending).
    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Heartbeater {
    fn drop(&mut self) {
        self.stop();
    }
}
