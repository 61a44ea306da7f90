//! PushTxn: a transaction (or a plain request) blocked by another transaction's intent
//! asks that transaction's record to get out of the way.
//!
//! The push succeeds, and says what the pushee is now, when:
//! - the pushee has finished (committed or aborted): the pusher resolves the intent;
//! - a timestamp push finds the pushee already above `push_to`;
//! - the pushee is abandoned (no heartbeat within the liveness threshold): it is aborted;
//! - the pusher has the higher priority, or `force` is set (a deadlock is being broken):
//!   the pushee is aborted (`Abort`) or its timestamp moves above `push_to`.
//!
//! A STAGING pushee is never aborted or moved (it may already be committed): the push
//! fails while it is alive, and once it is abandoned the push returns it as it is, for
//! the pusher to recover.
//!
//! Otherwise it fails with `TxnPushFailed`, and the pusher waits (see
//! `crate::txn_wait`). A pushee with no record yet counts as alive from its start.

use cairn_kv::api::{PushKind, Response, TxnRecord, TxnStatus};
use cairn_kv::mvcc::TxnMeta;
use cairn_kv::storage::IndexedBatch;
use cairn_kv::{Error, Timestamp};

use super::{EvalContext, txn_record};

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    anchor: &[u8],
    pushee: &TxnMeta,
    push_to: Timestamp,
    kind: PushKind,
    force: bool,
) -> cairn_kv::Result<Response> {
    if pushee.key != anchor {
        return Err(Error::InvalidArgument(
            "push away from the pushee's anchor".into(),
        ));
    }
    let mut record = match txn_record::read(batch, anchor, pushee.id)? {
        Some(r) => r,
        None => TxnRecord {
            meta: pushee.clone(),
            status: TxnStatus::Pending,
            last_heartbeat: pushee.min_ts,
            lock_spans: Vec::new(),
            in_flight: Vec::new(),
        },
    };
    match record.status {
        TxnStatus::Committed | TxnStatus::Aborted => {
            return Ok(Response::PushTxn { pushee: record });
        }
        // A STAGING transaction may already be committed: no push may abort it or move
        // it. If it is abandoned, the pusher must recover it (find out whether its
        // in-flight writes are all there); until then, it waits like for a live one.
        TxnStatus::Staging if record.is_expired(ctx.now) => {
            return Ok(Response::PushTxn { pushee: record });
        }
        TxnStatus::Staging => return Err(Error::TxnPushFailed { pushee: pushee.id }),
        TxnStatus::Pending => {}
    }
    if kind == PushKind::Timestamp && record.meta.write_ts > push_to {
        return Ok(Response::PushTxn { pushee: record });
    }
    let expired = record.is_expired(ctx.now);
    let outranks = ctx
        .txn
        .is_some_and(|pusher| pusher.priority > record.meta.priority);
    if !(force || expired || outranks) {
        return Err(Error::TxnPushFailed { pushee: pushee.id });
    }
    if kind == PushKind::Abort || expired {
        record.status = TxnStatus::Aborted;
    } else {
        record.meta.write_ts = record.meta.write_ts.max(push_to.next());
    }
    txn_record::write(batch, &record)?;
    Ok(Response::PushTxn { pushee: record })
}
