//! RecoverTxn: settle an abandoned STAGING record once the recoverer has looked for
//! every in-flight write: COMMITTED if all were there (the transaction was committed
//! the moment the last of them was written), ABORTED if one was missing (and, queried,
//! can no longer appear at or below the record's timestamp).

use cairn_kv::Error;
use cairn_kv::api::{Response, TxnStatus};
use cairn_kv::mvcc::{ResolveStatus, TxnMeta};
use cairn_kv::storage::IndexedBatch;

use super::cmd_end_txn::resolve_local;
use super::{EvalContext, txn_record};

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    anchor: &[u8],
    txn: &TxnMeta,
    committed: bool,
) -> cairn_kv::Result<Response> {
    let Some(mut record) = txn_record::read(batch, anchor, txn.id)? else {
        return Err(Error::InvalidArgument(format!(
            "recovery of transaction {:?}, which has no record",
            txn.id
        )));
    };
    if record.status != TxnStatus::Staging {
        // Settled meanwhile (by its coordinator or another recoverer).
        return Ok(Response::RecoverTxn { record });
    }
    if record.meta.epoch != txn.epoch || record.meta.write_ts != txn.write_ts {
        return Err(Error::InvalidArgument(format!(
            "transaction {:?} was staged again during its recovery",
            txn.id
        )));
    }
    let (status, resolve) = if committed {
        (TxnStatus::Committed, ResolveStatus::Committed)
    } else {
        (TxnStatus::Aborted, ResolveStatus::Aborted)
    };
    let elsewhere = resolve_local(batch, ctx.range, &record.lock_spans, &record.meta, resolve)?;
    record.status = status;
    record.lock_spans = elsewhere;
    record.in_flight.clear();
    txn_record::write(batch, &record)?;
    Ok(Response::RecoverTxn { record })
}
