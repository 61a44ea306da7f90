//! Scan: the keys of a span in ascending order.

use cairn_kv::api::Response;
use cairn_kv::keys::Span;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::{EvalContext, limit};

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    span: &Span,
    max_keys: u64,
) -> cairn_kv::Result<Response> {
    let r = mvcc::scan(
        batch,
        &span.start,
        &span.end,
        ctx.read_options(),
        limit(max_keys),
        false,
    )?;
    Ok(Response::Scan {
        kvs: r.kvs,
        resume_span: r.resume_span,
    })
}
