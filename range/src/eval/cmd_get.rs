//! Get: the value of one key.

use cairn_kv::api::Response;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    key: &[u8],
) -> cairn_kv::Result<Response> {
    let value = mvcc::get(batch, key, ctx.read_options())?;
    Ok(Response::Get { value })
}
