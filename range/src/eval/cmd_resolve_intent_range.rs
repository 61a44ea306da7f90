//! ResolveIntentRange: settle a transaction's intents in a span.

use cairn_kv::api::{Response, TxnStatus};
use cairn_kv::keys::Span;
use cairn_kv::mvcc::{self, TxnMeta};
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;
use super::cmd_resolve_intent::resolve_status;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    _ctx: &EvalContext<'_>,
    span: &Span,
    txn: &TxnMeta,
    status: TxnStatus,
) -> cairn_kv::Result<Response> {
    mvcc::resolve_intent_range(
        batch,
        &span.start,
        &span.end,
        txn,
        resolve_status(status),
        0,
    )?;
    Ok(Response::ResolveIntentRange)
}
