//! QueryIntent: is a transaction's write on a key there, at or below a timestamp?
//! Recovery of an abandoned STAGING record asks this of each in-flight write. The
//! request is a read at that timestamp, so the timestamp cache pushes the write above
//! it should it arrive later: a write found missing can no longer make the transaction
//! committed.

use cairn_kv::api::Response;
use cairn_kv::mvcc::{self, TxnMeta};
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    _ctx: &EvalContext<'_>,
    key: &[u8],
    txn: &TxnMeta,
) -> cairn_kv::Result<Response> {
    let found = mvcc::get_intent(batch, key)?.is_some_and(|rec| {
        rec.txn.id == txn.id
            && rec.txn.epoch == txn.epoch
            && rec.txn.seq >= txn.seq
            && rec.txn.write_ts <= txn.write_ts
    });
    Ok(Response::QueryIntent { found })
}
