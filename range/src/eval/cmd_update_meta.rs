//! UpdateMeta: write a range's descriptor as its meta entry, unless a newer one is
//! there.
//!
//! A descriptor's generation grows with every split, merge and replica change of its
//! keys, and the ranges a split creates both take the parent's generation plus one; so
//! of two descriptors under one meta key, the one with the higher generation describes
//! the keys as they are later. An equal generation of the same range is rewritten (the
//! same descriptor, or the leaseholder repairing it).
//!
//! Entries strictly inside `desc`'s span of an older generation describe ranges `desc`
//! has merged since: they are deleted, so that no lookup finds them.

use cairn_kv::api::{RangeDescriptor, Response};
use cairn_kv::keys;
use cairn_kv::mvcc;
use cairn_kv::storage::IndexedBatch;

use super::EvalContext;

pub fn eval(
    batch: &mut IndexedBatch<'_>,
    ctx: &EvalContext<'_>,
    desc: &RangeDescriptor,
) -> cairn_kv::Result<Response> {
    if ctx.txn.is_some() {
        return Err(cairn_kv::Error::InvalidArgument(
            "a meta update cannot be transactional".into(),
        ));
    }
    let key = keys::meta_key(&desc.end_key);
    if let Some(stored) = mvcc::get(batch, &key, ctx.read_options())? {
        let current: RangeDescriptor = postcard::from_bytes(&stored).map_err(|e| {
            cairn_kv::Error::Decode(format!("meta entry {}: {e}", keys::pretty(&key)))
        })?;
        let newer = current.generation > desc.generation
            || (current.generation == desc.generation && current.range_id != desc.range_id);
        if newer {
            return Ok(Response::UpdateMeta { written: false });
        }
    }
    let body = postcard::to_stdvec(desc)
        .map_err(|e| cairn_kv::Error::InvalidArgument(format!("encoding {desc}: {e}")))?;
    let inner = mvcc::scan(
        batch,
        &keys::next_key(&keys::meta_key(&desc.start_key)),
        &key,
        ctx.read_options(),
        0,
        false,
    )?;
    for (inner_key, stored) in inner.kvs {
        let merged: RangeDescriptor = postcard::from_bytes(&stored).map_err(|e| {
            cairn_kv::Error::Decode(format!("meta entry {}: {e}", keys::pretty(&inner_key)))
        })?;
        if merged.generation < desc.generation {
            mvcc::delete_inline(batch, &inner_key)?;
        }
    }
    mvcc::put_inline(batch, &key, &body)?;
    Ok(Response::UpdateMeta { written: true })
}
