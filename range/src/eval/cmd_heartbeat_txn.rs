//! HeartbeatTxn: the coordinator says its transaction is alive (creating its record on
//! the first heartbeat). A finished record is returned as it is, so the coordinator
//! learns that its transaction was aborted.

use cairn_kv::Error;
use cairn_kv::api::{Response, TxnRecord, TxnStatus};
use cairn_kv::storage::IndexedBatch;

use super::{EvalContext, txn_record};

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    anchor: &[u8],
) -> cairn_kv::Result<Response> {
    let txn = ctx
        .txn
        .ok_or_else(|| Error::InvalidArgument("heartbeat outside a transaction".into()))?;
    if txn.key != anchor {
        return Err(Error::InvalidArgument(
            "heartbeat away from the anchor".into(),
        ));
    }
    let record = match txn_record::read(batch, anchor, txn.id)? {
        Some(r) if r.status != TxnStatus::Pending => {
            return Ok(Response::HeartbeatTxn { record: r });
        }
        Some(mut r) => {
            r.last_heartbeat = r.last_heartbeat.max(ctx.now);
            r
        }
        None => TxnRecord {
            meta: txn.clone(),
            status: TxnStatus::Pending,
            last_heartbeat: ctx.now,
            lock_spans: Vec::new(),
            in_flight: Vec::new(),
        },
    };
    txn_record::write(batch, &record)?;
    Ok(Response::HeartbeatTxn { record })
}
