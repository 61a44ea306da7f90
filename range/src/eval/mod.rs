//! Request evaluation: each KV command, one file each, turns a request into its response
//! and the writes it makes, against the replica's data as of now.
//!
//! Evaluate, then replicate: the leaseholder evaluates a whole batch into one
//! [`IndexedBatch`] (later requests of the batch see the writes of earlier ones), and
//! only the resulting write batch goes through Raft. Applying it on every replica is a
//! plain write, with no decisions left to take, so replicas cannot diverge.

mod cmd_conditional_put;
mod cmd_delete;
mod cmd_delete_range;
mod cmd_end_txn;
mod cmd_get;
mod cmd_heartbeat_txn;
mod cmd_increment;
mod cmd_push_txn;
mod cmd_put;
mod cmd_put_inline;
mod cmd_query_intent;
mod cmd_query_txn;
mod cmd_recover_txn;
mod cmd_refresh;
mod cmd_resolve_intent;
mod cmd_resolve_intent_range;
mod cmd_reverse_scan;
mod cmd_scan;
mod cmd_update_meta;
pub mod txn_record;

#[cfg(test)]
mod tests;

use cairn_kv::Timestamp;
use cairn_kv::api::{Request, Response};
use cairn_kv::keys::Span;
use cairn_kv::mvcc::{ReadOptions, TxnMeta};
use cairn_kv::storage::IndexedBatch;

/// What a command evaluates under.
pub struct EvalContext<'a> {
    /// The timestamp the batch reads at (and writes at, outside a transaction; a
    /// transaction writes at its `write_ts`).
    pub ts: Timestamp,
    /// The transaction, with this request's sequence number.
    pub txn: Option<&'a TxnMeta>,
    pub uncertainty_limit: Timestamp,
    /// The leaseholder's clock (for heartbeats and liveness).
    pub now: Timestamp,
    /// The range's span of (addressable) keys.
    pub range: &'a Span,
}

impl<'a> EvalContext<'a> {
    /// How the context reads.
    pub fn read_options(&self) -> ReadOptions<'a> {
        let mut opts = ReadOptions::at(self.ts).with_uncertainty_limit(self.uncertainty_limit);
        opts.txn = self.txn;
        opts
    }
}

/// Evaluates one request into `batch`.
pub fn evaluate(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    req: &Request,
) -> cairn_kv::Result<Response> {
    match req {
        Request::Get { key } => cmd_get::eval(batch, ctx, key),
        Request::Put { key, value } => cmd_put::eval(batch, ctx, key, value),
        Request::ConditionalPut {
            key,
            value,
            expected,
        } => cmd_conditional_put::eval(batch, ctx, key, value, expected.as_deref()),
        Request::Increment { key, delta } => cmd_increment::eval(batch, ctx, key, *delta),
        Request::Delete { key } => cmd_delete::eval(batch, ctx, key),
        Request::Scan { span, max_keys } => cmd_scan::eval(batch, ctx, span, *max_keys),
        Request::ReverseScan { span, max_keys } => {
            cmd_reverse_scan::eval(batch, ctx, span, *max_keys)
        }
        Request::DeleteRange { span } => cmd_delete_range::eval(batch, ctx, span),
        Request::PutInline { key, value } => cmd_put_inline::eval(batch, ctx, key, value),
        Request::UpdateMeta { desc } => cmd_update_meta::eval(batch, ctx, desc),
        Request::EndTxn {
            key,
            commit,
            lock_spans,
            in_flight,
        } => cmd_end_txn::eval(batch, ctx, key, *commit, lock_spans, in_flight),
        Request::QueryIntent { key, txn } => cmd_query_intent::eval(batch, ctx, key, txn),
        Request::RecoverTxn {
            key,
            txn,
            committed,
        } => cmd_recover_txn::eval(batch, ctx, key, txn, *committed),
        Request::HeartbeatTxn { key } => cmd_heartbeat_txn::eval(batch, ctx, key),
        Request::PushTxn {
            key,
            pushee,
            push_to,
            kind,
            force,
        } => cmd_push_txn::eval(batch, ctx, key, pushee, *push_to, *kind, *force),
        Request::QueryTxn { key, txn } => cmd_query_txn::eval(batch, ctx, key, *txn),
        Request::ResolveIntent { key, txn, status } => {
            cmd_resolve_intent::eval(batch, ctx, key, txn, *status)
        }
        Request::ResolveIntentRange { span, txn, status } => {
            cmd_resolve_intent_range::eval(batch, ctx, span, txn, *status)
        }
        Request::Refresh { span, from } => cmd_refresh::eval(batch, ctx, span, *from),
        Request::AdminSplit { .. }
        | Request::AdminMerge { .. }
        | Request::Subsume { .. }
        | Request::ResolveMerge { .. }
        | Request::ComputeChecksum { .. } => Err(cairn_kv::Error::InvalidArgument(
            "an admin request is served by the replica, not evaluated".into(),
        )),
    }
}

/// A request's limit as the MVCC layer takes it.
fn limit(max_keys: u64) -> usize {
    usize::try_from(max_keys).unwrap_or(usize::MAX)
}
