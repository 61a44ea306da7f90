//! DeleteRange: remove the keys of a span, at most [`DELETE_RANGE_BATCH_KEYS`] per
//! command (so a Raft command stays bounded however large the span); the answer says
//! where to go on.

use cairn_kv::api::Response;
use cairn_kv::keys::Span;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

/// The most keys one DeleteRange command deletes.
pub const DELETE_RANGE_BATCH_KEYS: usize = 10_000;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    span: &Span,
) -> cairn_kv::Result<Response> {
    let (deleted, resume) = mvcc::delete_range(
        batch,
        &span.start,
        &span.end,
        ctx.ts,
        ctx.txn,
        DELETE_RANGE_BATCH_KEYS,
    )?;
    Ok(Response::DeleteRange {
        deleted,
        resume: resume.into_iter().collect(),
    })
}
