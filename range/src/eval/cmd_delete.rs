//! Delete: remove one key (write a tombstone).

use cairn_kv::api::Response;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    key: &[u8],
) -> cairn_kv::Result<Response> {
    mvcc::delete(batch, key, ctx.ts, ctx.txn)?;
    Ok(Response::Delete)
}
