//! Refresh: do a transaction's reads of a span, made at `from`, still hold at the
//! batch's timestamp? (Nothing written there in between by anyone else.)

use cairn_kv::api::Response;
use cairn_kv::keys::Span;
use cairn_kv::storage::IndexedBatch;
use cairn_kv::{Timestamp, mvcc};

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    span: &Span,
    from: Timestamp,
) -> cairn_kv::Result<Response> {
    mvcc::check_refresh(
        batch,
        &span.start,
        &span.end,
        from,
        ctx.ts,
        ctx.txn.map(|t| t.id),
    )?;
    Ok(Response::Refresh)
}
