//! ConditionalPut: write one key if its current value is the expected one.

use cairn_kv::api::Response;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    key: &[u8],
    value: &[u8],
    expected: Option<&[u8]>,
) -> cairn_kv::Result<Response> {
    mvcc::conditional_put(batch, key, ctx.ts, value, expected, ctx.txn)?;
    Ok(Response::ConditionalPut)
}
