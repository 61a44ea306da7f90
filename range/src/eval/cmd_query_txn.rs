//! QueryTxn: a transaction's record (the replica adds who waits for it).

use cairn_kv::TxnId;
use cairn_kv::api::Response;
use cairn_kv::storage::IndexedBatch;

use super::{EvalContext, txn_record};

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    _ctx: &EvalContext<'_>,
    anchor: &[u8],
    txn: TxnId,
) -> cairn_kv::Result<Response> {
    Ok(Response::QueryTxn {
        record: txn_record::read(batch, anchor, txn)?,
        waiting: Vec::new(),
    })
}
