//! Increment: add to the 8-byte big-endian integer stored at a key.

use cairn_kv::api::Response;
use cairn_kv::storage::IndexedBatch;
use cairn_kv::{Error, mvcc};

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    key: &[u8],
    delta: i64,
) -> cairn_kv::Result<Response> {
    let current = match mvcc::get(batch, key, ctx.read_options())? {
        None => 0,
        Some(bytes) => {
            let arr: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                Error::InvalidArgument(format!(
                    "increment of {}: value is {} bytes, not an 8-byte integer",
                    cairn_kv::keys::pretty(key),
                    bytes.len()
                ))
            })?;
            i64::from_be_bytes(arr)
        }
    };
    let new_value = current.checked_add(delta).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "increment of {} overflows",
            cairn_kv::keys::pretty(key)
        ))
    })?;
    mvcc::put(batch, key, ctx.ts, &new_value.to_be_bytes(), ctx.txn)?;
    Ok(Response::Increment { new_value })
}
