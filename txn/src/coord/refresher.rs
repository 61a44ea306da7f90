//! Interceptor 4: remembers what the transaction read, and moves its read timestamp up
//! when that is safe.
//!
//! A serializable transaction must commit at a single timestamp at which all its reads
//! and writes hold. When its write timestamp is pushed (a read by someone else at a
//! higher timestamp, a newer version, a push by a reader), or a read finds a value in
//! its uncertainty window, the read timestamp must move to the new one. That is safe if
//! nothing the transaction read has changed in between: a Refresh of every read span
//! over (old, new] proves it, far cheaper than running the transaction again.

use cairn_kv::RangeId;
use cairn_kv::Timestamp;
use cairn_kv::api::{self, BatchRequest, Header, Request};
use cairn_kv::keys::Span;
use cairn_kv::mvcc::TxnMeta;

use crate::DistSender;

/// The spans a transaction read.
#[derive(Default)]
pub struct Refresher {
    spans: Vec<Span>,
    /// Times the spans were condensed (rewritten): a [`ReadMark`] taken before is void.
    condensed: u64,
}

/// How far the recorded reads went at some point: the reads before it can be refreshed
/// on their own, and the ones after it dropped (see [`crate::Txn::restart_statement`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadMark {
    len: usize,
    condensed: u64,
}

impl Refresher {
    /// Records the spans read by `requests` (after they succeeded).
    pub fn record(&mut self, requests: &[Request]) {
        for r in requests.iter().filter(|r| r.is_read()) {
            self.spans.push(r.span());
        }
        let before = self.spans.len();
        super::txn::condense_spans(&mut self.spans);
        if self.spans.len() != before {
            self.condensed += 1;
        }
    }

    pub fn clear(&mut self) {
        self.spans.clear();
        self.condensed += 1;
    }

    pub fn mark(&self) -> ReadMark {
        ReadMark {
            len: self.spans.len(),
            condensed: self.condensed,
        }
    }

    /// The reads recorded before `mark` and those since, or `None` if they can no
    /// longer be told apart (the spans were condensed since).
    pub fn split(&self, mark: ReadMark) -> Option<(&[Span], &[Span])> {
        (mark.condensed == self.condensed && mark.len <= self.spans.len())
            .then(|| self.spans.split_at(mark.len))
    }

    /// Forgets the reads recorded after `mark` (it must be valid: see
    /// [`Refresher::split`]).
    pub fn truncate(&mut self, mark: ReadMark) {
        self.spans.truncate(mark.len);
    }

    /// Checks that every read made at `from` still holds at `to`. `Ok(false)` if one
    /// does not (the transaction must restart).
    pub async fn refresh(
        &self,
        dist: &DistSender,
        txn: &TxnMeta,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<bool, api::Error> {
        refresh_spans(&self.spans, dist, txn, from, to).await
    }
}

/// Checks that every read of `spans` made at `from` still holds at `to`.
pub(super) async fn refresh_spans(
    spans: &[Span],
    dist: &DistSender,
    txn: &TxnMeta,
    from: Timestamp,
    to: Timestamp,
) -> Result<bool, api::Error> {
    if spans.is_empty() || to <= from {
        return Ok(true);
    }
    let requests = spans
        .iter()
        .map(|s| Request::Refresh {
            span: s.clone(),
            from,
        })
        .collect();
    let batch = BatchRequest {
        header: Header {
            range_id: RangeId(0),
            timestamp: to,
            txn: Some(txn.clone()),
            ..Header::default()
        },
        requests,
    };
    match dist.send(batch).await {
        Ok(_) => Ok(true),
        Err(api::Error::Kv(cairn_kv::Error::RefreshFailed { .. })) => Ok(false),
        Err(e) => Err(e),
    }
}
