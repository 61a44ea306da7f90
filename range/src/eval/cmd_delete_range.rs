//! DeleteRange: remove every key of a span.

use cairn_kv::api::Response;
use cairn_kv::keys::Span;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    span: &Span,
) -> cairn_kv::Result<Response> {
    let (deleted, _) = mvcc::delete_range(batch, &span.start, &span.end, ctx.ts, ctx.txn, 0)?;
    Ok(Response::DeleteRange { deleted })
}
