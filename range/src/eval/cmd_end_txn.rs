//! EndTxn: commit or abort a transaction at its record.
//!
//! The record becoming COMMITTED is the commit point. Intents that lie in this range
//! are resolved by the same command (so a transaction that wrote only here commits in
//! one Raft command and leaves no intent behind: the one-phase commit); the spans
//! elsewhere are kept in the record for the coordinator, which resolves them after.
//!
//! A parallel commit (the request carries the writes sent alongside it) whose writes
//! are not all in this range makes the record STAGING instead: the transaction is then
//! committed exactly when all those writes are durable at or below its timestamp, and
//! the coordinator (or, if it died, whoever recovers the record) makes that explicit.
//!
//! A commit fails if the record was aborted (a conflicting transaction pushed it out),
//! or if the transaction would commit above the timestamp it read at (pushed by a
//! reader, or writing above a read or a newer version): the coordinator must then
//! refresh its reads to the new timestamp and try again.

use cairn_kv::Error;
use cairn_kv::api::{Response, TxnRecord, TxnStatus};
use cairn_kv::keys::Span;
use cairn_kv::mvcc::{self, ResolveStatus};
use cairn_kv::storage::IndexedBatch;

use super::{EvalContext, txn_record};

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    anchor: &[u8],
    commit: bool,
    lock_spans: &[Span],
    in_flight: &[(Vec<u8>, u32)],
) -> cairn_kv::Result<Response> {
    let txn = ctx
        .txn
        .ok_or_else(|| Error::InvalidArgument("EndTxn outside a transaction".into()))?;
    if txn.key != anchor {
        return Err(Error::InvalidArgument("EndTxn away from the anchor".into()));
    }
    // Serializable: the transaction commits at its write timestamp only if it read
    // there too. Its coordinator refreshes its reads first.
    if commit && txn.write_ts > ctx.ts {
        return Err(Error::TxnPushed {
            txn: txn.id,
            ts: txn.write_ts,
        });
    }
    let existing = txn_record::read(batch, anchor, txn.id)?;
    match &existing {
        Some(r) if r.status == TxnStatus::Aborted => {
            if commit {
                return Err(Error::TxnAborted { txn: txn.id });
            }
            return Ok(Response::EndTxn { record: r.clone() });
        }
        Some(r) if r.status == TxnStatus::Committed => {
            return Err(Error::InvalidArgument(format!(
                "transaction {:?} already committed",
                txn.id
            )));
        }
        Some(r) if commit && r.meta.write_ts > txn.write_ts => {
            return Err(Error::TxnPushed {
                txn: txn.id,
                ts: r.meta.write_ts,
            });
        }
        _ => {}
    }
    // A parallel commit: the in-flight writes in this range are in this batch, so they
    // stand or fall with this command. If none are elsewhere, this is an ordinary
    // commit; otherwise the record is STAGING until they are known to be written.
    let remote: Vec<(Vec<u8>, u32)> = in_flight
        .iter()
        .filter(|(k, _)| !ctx.range.contains(k))
        .cloned()
        .collect();
    if commit && !remote.is_empty() {
        let record = TxnRecord {
            meta: txn.clone(),
            status: TxnStatus::Staging,
            last_heartbeat: existing.map_or(ctx.now, |r| r.last_heartbeat),
            lock_spans: lock_spans.to_vec(),
            in_flight: remote,
        };
        txn_record::write(batch, &record)?;
        return Ok(Response::EndTxn { record });
    }
    let (status, resolve) = if commit {
        (TxnStatus::Committed, ResolveStatus::Committed)
    } else {
        (TxnStatus::Aborted, ResolveStatus::Aborted)
    };
    let elsewhere = resolve_local(batch, ctx.range, lock_spans, txn, resolve)?;
    let record = TxnRecord {
        meta: txn.clone(),
        status,
        last_heartbeat: existing.map_or(ctx.now, |r| r.last_heartbeat),
        lock_spans: elsewhere,
        in_flight: Vec::new(),
    };
    txn_record::write(batch, &record)?;
    Ok(Response::EndTxn { record })
}

/// How many intents a command that ends a transaction resolves in its own range; the
/// rest are left to ResolveIntentRange commands, each bounded the same way, so no Raft
/// command grows with the size of a transaction (a bulk load writes millions of rows).
pub const RESOLVE_BATCH_KEYS: usize = 5_000;

/// Resolves `txn`'s intents in `spans` that lie in `range`, up to
/// [`RESOLVE_BATCH_KEYS`] of them, and returns what remains: the parts outside the range
/// and whatever the budget did not reach.
pub(super) fn resolve_local(
    batch: &mut IndexedBatch<'_>,
    range: &Span,
    spans: &[Span],
    txn: &cairn_kv::mvcc::TxnMeta,
    status: ResolveStatus,
) -> cairn_kv::Result<Vec<Span>> {
    let mut budget = RESOLVE_BATCH_KEYS;
    let mut remaining = Vec::new();
    for span in spans {
        let (local, outside) = split_span(span, range);
        remaining.extend(outside);
        let Some(local) = local else { continue };
        if budget == 0 {
            remaining.push(local);
            continue;
        }
        let (resolved, resume) =
            mvcc::resolve_intent_range(batch, &local.start, &local.end, txn, status, budget)?;
        budget = budget.saturating_sub(resolved);
        if let Some(rest) = resume {
            budget = 0;
            remaining.push(rest);
        }
    }
    Ok(remaining)
}

/// The part of `span` inside `range`, and the parts outside it.
pub(super) fn split_span(span: &Span, range: &Span) -> (Option<Span>, Vec<Span>) {
    let start = span.start.clone().max(range.start.clone());
    let end = span.end.clone().min(range.end.clone());
    let local = (start < end).then(|| Span::new(start, end));
    let mut outside = Vec::new();
    if span.start < range.start {
        outside.push(Span::new(
            span.start.clone(),
            span.end.clone().min(range.start.clone()),
        ));
    }
    if span.end > range.end {
        outside.push(Span::new(
            span.start.clone().max(range.end.clone()),
            span.end.clone(),
        ));
    }
    outside.retain(|s| !s.is_empty());
    (local, outside)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_span_cuts_at_the_range_bounds() {
        let range = Span::new(b"c".to_vec(), b"f".to_vec());
        let s = |a: &str, b: &str| Span::new(a.as_bytes().to_vec(), b.as_bytes().to_vec());
        assert_eq!(
            split_span(&s("d", "e"), &range),
            (Some(s("d", "e")), vec![])
        );
        assert_eq!(split_span(&s("a", "b"), &range), (None, vec![s("a", "b")]));
        assert_eq!(
            split_span(&s("a", "z"), &range),
            (Some(s("c", "f")), vec![s("a", "c"), s("f", "z")])
        );
        assert_eq!(
            split_span(&s("e", "z"), &range),
            (Some(s("e", "f")), vec![s("f", "z")])
        );
    }
}
