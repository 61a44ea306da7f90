//! ResolveIntent: settle a transaction's intent on one key after its fate (or a push)
//! is known.

use cairn_kv::api::{Response, TxnStatus};
use cairn_kv::mvcc::{self, ResolveStatus, TxnMeta};
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    _ctx: &EvalContext<'_>,
    key: &[u8],
    txn: &TxnMeta,
    status: TxnStatus,
) -> cairn_kv::Result<Response> {
    mvcc::resolve_intent(batch, key, txn, resolve_status(status))?;
    Ok(Response::ResolveIntent)
}

/// How an intent is resolved for a transaction in `status`.
pub fn resolve_status(status: TxnStatus) -> ResolveStatus {
    match status {
        // A STAGING transaction is not decided: its intents stay intents (at most they
        // move up to its timestamp, where they still count for it).
        TxnStatus::Pending | TxnStatus::Staging => ResolveStatus::Pending,
        TxnStatus::Committed => ResolveStatus::Committed,
        TxnStatus::Aborted => ResolveStatus::Aborted,
    }
}
