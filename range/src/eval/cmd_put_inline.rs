//! PutInline: write an unversioned value (range descriptors in the meta range).

use cairn_kv::api::Response;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    key: &[u8],
    value: &[u8],
) -> cairn_kv::Result<Response> {
    if ctx.txn.is_some() {
        return Err(cairn_kv::Error::InvalidArgument(
            "an inline put cannot be transactional".into(),
        ));
    }
    mvcc::put_inline(batch, key, value)?;
    Ok(Response::PutInline)
}
