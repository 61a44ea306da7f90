//! ResolveIntentRange: settle a transaction's intents in a span, at most
//! [`RESOLVE_BATCH_KEYS`] of them per command; the answer says where to go on.

use cairn_kv::api::{Response, TxnStatus};
use cairn_kv::keys::Span;
use cairn_kv::mvcc::{self, TxnMeta};
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;
use super::cmd_end_txn::RESOLVE_BATCH_KEYS;
use super::cmd_resolve_intent::resolve_status;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    _ctx: &EvalContext<'_>,
    span: &Span,
    txn: &TxnMeta,
    status: TxnStatus,
) -> cairn_kv::Result<Response> {
    let (_, resume) = mvcc::resolve_intent_range(
        batch,
        &span.start,
        &span.end,
        txn,
        resolve_status(status),
        RESOLVE_BATCH_KEYS,
    )?;
    Ok(Response::ResolveIntentRange {
        resume: resume.into_iter().collect(),
    })
}
