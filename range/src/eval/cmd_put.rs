//! Put: write one key.

use cairn_kv::api::Response;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    key: &[u8],
    value: &[u8],
) -> cairn_kv::Result<Response> {
    mvcc::put(batch, key, ctx.ts, value, ctx.txn)?;
    Ok(Response::Put)
}
