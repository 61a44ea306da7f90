//! Reading and writing transaction records (unversioned values at the record key).

use cairn_kv::api::TxnRecord;
use cairn_kv::storage::IndexedBatch;
use cairn_kv::{Error, Timestamp, TxnId, keys, mvcc};

/// The record of `txn`, anchored at `anchor`, if there is one.
pub fn read(
    batch: &IndexedBatch<'_>,
    anchor: &[u8],
    txn: TxnId,
) -> cairn_kv::Result<Option<TxnRecord>> {
    let key = keys::txn_record_key(anchor, txn);
    match mvcc::get(batch, &key, mvcc::ReadOptions::at(Timestamp::MAX))? {
        None => Ok(None),
        Some(bytes) => postcard::from_bytes(&bytes)
            .map(Some)
            .map_err(|e| Error::Corruption {
                key,
                detail: format!("undecodable transaction record: {e}"),
            }),
    }
}

/// Writes `record` at its key (anchored at its transaction's anchor).
pub fn write(batch: &mut IndexedBatch<'_>, record: &TxnRecord) -> cairn_kv::Result<()> {
    let key = keys::txn_record_key(&record.meta.key, record.meta.id);
    let bytes = postcard::to_stdvec(record)
        .map_err(|e| Error::InvalidArgument(format!("encoding transaction record: {e}")))?;
    mvcc::put_inline(batch, &key, &bytes)
}
