//! The layout of the key space: which prefix holds what, how a key finds the range
//! that owns it, and how SQL rows become keys.
//!
//! Every key is a byte string, and ranges cut the sorted space of byte strings into
//! contiguous spans. The first byte says what a key is:
//!
//! ```text
//!   first bytes   key                                             holds
//!   ───────────   ─────────────────────────────────────────────   ─────────────────────────
//!   (empty)       KEY_MIN                                         start of the key space
//!   0x01 'i'      /Local/RangeID/<range id>/<suffix>              Raft log, vote, applied state
//!   0x01 'k'      /Local/Range/<anchor>/<suffix><detail>          txn records, range descriptors
//!   0x01 's'      /Local/Store/<name>                             the store's identity
//!   0x02          /Meta/<range end key>                           range descriptors, for lookup
//!   0x03          /System/<tag>/...                               liveness, catalog, id generators
//!   0x04          /Table/<table id>/<index id>/<key columns>      rows and index entries
//!   0xff 0xff     KEY_MAX                                         no key is at or above it
//! ```
//!
//! Local keys (0x01) are not part of the addressable key space; they hold state kept
//! beside a range's data:
//!
//! - Range-local keys are addressed by an anchor key: `0x01 'k' <anchor, escaped>
//!   <4-byte suffix> <detail>`. They are stored on the range that holds the anchor and
//!   move with it when ranges split or merge. A transaction record is anchored at the
//!   transaction's first key, a range descriptor at the range's start key. The escaped
//!   anchor sorts like the anchor and is never a prefix of another, so the range-local
//!   keys of a range `[start, end)` form one span of the local key space.
//! - Range-id-local keys are replica state that no user key addresses (the Raft log,
//!   the vote, the applied state): `0x01 'i' <range id, 8 bytes big-endian> <suffix>`.
//!   They live in the engine's Raft key space, and all keys of one range id lie in
//!   [`range_id_prefix`]..[`range_id_prefix_end`].
//! - Store-local keys (`0x01 's' <name>`) describe the store itself.
//!
//! [`addr`] maps a key to the key that decides its range: the anchor of a range-local
//! key, the key itself otherwise. Range-id-local and store-local keys have no address.
//!
//! Meta keys find ranges. The descriptor of the range `[start, end)` is stored at
//! `/Meta/<end>`, and the descriptor of the range containing `k` is at the first meta
//! key strictly greater than `/Meta/<k>`: one forward seek, no backward scan.
//!
//! ```text
//!   ranges      [KEY_MIN, c)               [c, KEY_MAX)
//!   stored at   /Meta/c                    /Meta/Max
//!   lookup(b)   first meta key > /Meta/b   = /Meta/c    -> [KEY_MIN, c)
//!   lookup(c)   first meta key > /Meta/c   = /Meta/Max  -> [c, KEY_MAX)
//! ```
//!
//! Table keys are `0x04 <table id> <index id> <key columns>`, the ids as the ordered
//! varint and the columns in the order-preserving encoding of [`encoding`], so an
//! index scan reads rows in index order. A table's keys lie in [`table_span`].
//!
//! HAZARD: there is one level of meta keys, so the meta span `[META_PREFIX, META_MAX)`
//! must never be split: it stays in the first range, which is how a node finds it, and
//! splits must refuse split keys inside it. That caps the cluster at the number of
//! descriptors one range can hold; more needs a second level (CockroachDB's meta1 and
//! meta2).
//!
//! HAZARD: every prefix, suffix and tag here is on-disk format. Changing one orphans or
//! reorders stored data.

pub mod encoding;
mod pretty;

pub use encoding::{
    Datum, Direction, decode_bytes_escaped, decode_datum, decode_key, decode_uvarint,
    encode_bytes_escaped, encode_datum, encode_key, encode_uvarint,
};
pub use pretty::pretty;

use crate::error::{Error, Result};
use crate::ids::{NodeId, RangeId, TxnId};

/// The smallest key: every key is at or above it.
pub const KEY_MIN: &[u8] = &[];
/// The end of the key space: no addressable key is at or above it.
pub const KEY_MAX: &[u8] = &[0xff, 0xff];

/// First byte of every local key.
pub const LOCAL_PREFIX: &[u8] = &[0x01];
/// End of the local keys (the meta prefix).
pub const LOCAL_MAX: &[u8] = &[0x02];
/// Prefix of range-id-local keys: `0x01 'i' <range id> <suffix>`.
pub const LOCAL_RANGE_ID_PREFIX: &[u8] = &[0x01, b'i'];
/// Prefix of range-local keys: `0x01 'k' <escaped anchor> <suffix> <detail>`.
pub const LOCAL_RANGE_PREFIX: &[u8] = &[0x01, b'k'];
/// Prefix of store-local keys: `0x01 's' <name>`.
pub const LOCAL_STORE_PREFIX: &[u8] = &[0x01, b's'];

/// First byte of every meta key.
pub const META_PREFIX: &[u8] = &[0x02];
/// End of the meta keys (the system prefix).
pub const META_MAX: &[u8] = &[0x03];

/// First byte of every system key.
pub const SYSTEM_PREFIX: &[u8] = &[0x03];
/// End of the system keys.
pub const SYSTEM_MAX: &[u8] = &[0x04];
/// First byte of every table key; equal to [`SYSTEM_MAX`].
pub const TABLE_MIN: &[u8] = &[0x04];

/// Length of the suffix that names the kind of a range-local or range-id-local key.
pub const LOCAL_SUFFIX_LEN: usize = 4;
/// Suffix of a transaction record key; the detail is the 16 bytes of the [`TxnId`].
pub const TXN_RECORD_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"txn-";
/// Suffix of a range descriptor key; no detail.
pub const RANGE_DESCRIPTOR_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"rdsc";

const RAFT_LOG_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"rftl";
const RAFT_VOTE_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"rftv";
const RAFT_COMMITTED_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"rftc";
const RANGE_APPLIED_STATE_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"rask";
const RAFT_TRUNCATED_STATE_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"rftt";
const RAFT_REPLICA_ID_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"rrid";
const RANGE_TOMBSTONE_SUFFIX: &[u8; LOCAL_SUFFIX_LEN] = b"rtmb";

const STORE_IDENT_NAME: &[u8] = b"ident";
const STORE_ADDRESSES_NAME: &[u8] = b"nodeaddrs";

const SYSTEM_NODE_LIVENESS_TAG: &[u8; 4] = b"lvns";
const SYSTEM_DESCRIPTOR_TAG: &[u8; 4] = b"desc";
const SYSTEM_NAMESPACE_TAG: &[u8; 4] = b"nmsp";
const SYSTEM_ID_GENERATOR_TAG: &[u8; 4] = b"idgn";
const SYSTEM_USER_TAG: &[u8; 4] = b"user";
const SYSTEM_SETTING_TAG: &[u8; 4] = b"stng";
const SYSTEM_DECOMMISSION_TAG: &[u8; 4] = b"dcom";

/// `key` as a quoted, escaped byte string. The decoders' errors use this rather than
/// [`pretty`], which calls the decoders.
fn quoted(key: &[u8]) -> String {
    format!("\"{}\"", key.escape_ascii())
}

/// Whether `key` is local to a replica or store (starts with [`LOCAL_PREFIX`]).
pub fn is_local(key: &[u8]) -> bool {
    key.starts_with(LOCAL_PREFIX)
}

/// The key that decides which range owns `key`: the anchor of a range-local key, the
/// key itself for a non-local key. Range-id-local and store-local keys belong to no
/// range of the key space and are an error, as is a malformed local key.
pub fn addr(key: &[u8]) -> Result<Vec<u8>> {
    if !is_local(key) {
        return Ok(key.to_vec());
    }
    if key.starts_with(LOCAL_RANGE_PREFIX) {
        let (anchor, _, _) = decode_range_local_key(key)?;
        if is_local(&anchor) {
            return Err(Error::Decode(format!(
                "range-local key {} has a local anchor",
                pretty(key)
            )));
        }
        return Ok(anchor);
    }
    if key.starts_with(LOCAL_RANGE_ID_PREFIX) || key.starts_with(LOCAL_STORE_PREFIX) {
        return Err(Error::InvalidArgument(format!(
            "key {} is local to a replica or store and has no address",
            pretty(key)
        )));
    }
    Err(Error::Decode(format!(
        "unknown kind of local key {}",
        pretty(key)
    )))
}

/// The smallest key after `key`: `key` followed by 0x00.
pub fn next_key(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0x00);
    next
}

/// The smallest key greater than every key that starts with `prefix`: the prefix with
/// trailing 0xff bytes dropped and the last remaining byte incremented. A prefix of
/// only 0xff bytes (or none) has no such key below the end of the key space, and gets
/// [`KEY_MAX`].
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    KEY_MAX.to_vec()
}

/// A range-local key: `0x01 'k' <anchor, escaped> <suffix> <detail>`. It is stored on
/// the range that contains `anchor`.
pub fn range_local_key(anchor: &[u8], suffix: &[u8; LOCAL_SUFFIX_LEN], detail: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(
        LOCAL_RANGE_PREFIX.len() + anchor.len() + 2 + LOCAL_SUFFIX_LEN + detail.len(),
    );
    key.extend_from_slice(LOCAL_RANGE_PREFIX);
    encode_bytes_escaped(&mut key, anchor);
    key.extend_from_slice(suffix);
    key.extend_from_slice(detail);
    key
}

/// Splits a range-local key into its anchor, suffix and detail.
pub fn decode_range_local_key(key: &[u8]) -> Result<(Vec<u8>, [u8; LOCAL_SUFFIX_LEN], &[u8])> {
    let mut rest = key
        .strip_prefix(LOCAL_RANGE_PREFIX)
        .ok_or_else(|| Error::Decode(format!("not a range-local key: {}", quoted(key))))?;
    let anchor = decode_bytes_escaped(&mut rest)?;
    let (suffix, detail) = rest
        .split_first_chunk::<LOCAL_SUFFIX_LEN>()
        .ok_or_else(|| Error::Decode(format!("range-local key without suffix: {}", quoted(key))))?;
    Ok((anchor, *suffix, detail))
}

/// The key of a transaction's record, anchored at the transaction's anchor key (its
/// first written key), so the record lives on the range holding that key.
pub fn txn_record_key(anchor: &[u8], txn: TxnId) -> Vec<u8> {
    range_local_key(anchor, TXN_RECORD_SUFFIX, txn.as_bytes())
}

/// The key of the descriptor of the range starting at `start_key`, stored on that
/// range itself (the meta keys hold copies for lookup).
pub fn range_descriptor_key(start_key: &[u8]) -> Vec<u8> {
    range_local_key(start_key, RANGE_DESCRIPTOR_SUFFIX, &[])
}

/// The prefix of every range-id-local key of `range_id`: `0x01 'i' <id, 8 bytes BE>`.
pub fn range_id_prefix(range_id: RangeId) -> Vec<u8> {
    let mut key = Vec::with_capacity(LOCAL_RANGE_ID_PREFIX.len() + 8 + LOCAL_SUFFIX_LEN + 8);
    key.extend_from_slice(LOCAL_RANGE_ID_PREFIX);
    key.extend_from_slice(&range_id.0.to_be_bytes());
    key
}

/// The end of the span of every range-id-local key of `range_id`.
pub fn range_id_prefix_end(range_id: RangeId) -> Vec<u8> {
    prefix_end(&range_id_prefix(range_id))
}

/// A range-id-local key: the range id prefix, the suffix, the detail.
fn range_id_key(range_id: RangeId, suffix: &[u8; LOCAL_SUFFIX_LEN], detail: &[u8]) -> Vec<u8> {
    let mut key = range_id_prefix(range_id);
    key.extend_from_slice(suffix);
    key.extend_from_slice(detail);
    key
}

/// The prefix of every Raft log entry key of `range_id`.
pub fn raft_log_prefix(range_id: RangeId) -> Vec<u8> {
    range_id_key(range_id, RAFT_LOG_SUFFIX, &[])
}

/// The key of the Raft log entry at `index`: the log prefix and the index as 8 bytes
/// big-endian, so entries sort by index.
pub fn raft_log_key(range_id: RangeId, index: u64) -> Vec<u8> {
    range_id_key(range_id, RAFT_LOG_SUFFIX, &index.to_be_bytes())
}

/// The key of the replica's Raft vote (term and candidate voted for).
pub fn raft_vote_key(range_id: RangeId) -> Vec<u8> {
    range_id_key(range_id, RAFT_VOTE_SUFFIX, &[])
}

/// The key of the replica's Raft commit index.
pub fn raft_committed_key(range_id: RangeId) -> Vec<u8> {
    range_id_key(range_id, RAFT_COMMITTED_SUFFIX, &[])
}

/// The key of the range's applied state (last applied Raft index and the stats that
/// move with it).
pub fn range_applied_state_key(range_id: RangeId) -> Vec<u8> {
    range_id_key(range_id, RANGE_APPLIED_STATE_SUFFIX, &[])
}

/// The key of the last log id removed from the front of the range's Raft log.
pub fn raft_truncated_state_key(range_id: RangeId) -> Vec<u8> {
    range_id_key(range_id, RAFT_TRUNCATED_STATE_SUFFIX, &[])
}

/// The key of this store's replica id in the range's Raft group.
pub fn raft_replica_id_key(range_id: RangeId) -> Vec<u8> {
    range_id_key(range_id, RAFT_REPLICA_ID_SUFFIX, &[])
}

/// The key of a range's tombstone on this store: the lowest replica id the store may
/// still create for the range, written when it destroys a removed replica.
pub fn range_tombstone_key(range_id: RangeId) -> Vec<u8> {
    range_id_key(range_id, RANGE_TOMBSTONE_SUFFIX, &[])
}

/// The span of the range-local keys anchored in `[start, end)`.
pub fn range_local_span(start: &[u8], end: &[u8]) -> Span {
    let mut lo = LOCAL_RANGE_PREFIX.to_vec();
    encode_bytes_escaped(&mut lo, start);
    let mut hi = LOCAL_RANGE_PREFIX.to_vec();
    encode_bytes_escaped(&mut hi, end);
    Span::new(lo, hi)
}

/// The replicated user-key spans of the range `[start, end)`: its range-local keys and
/// its addressable keys. (A range starting at [`KEY_MIN`] does not own the local key
/// space below [`LOCAL_MAX`]: only its anchored range-local keys.)
pub fn replicated_spans(start: &[u8], end: &[u8]) -> [Span; 2] {
    let user_start = if start < LOCAL_MAX { LOCAL_MAX } else { start };
    [range_local_span(start, end), Span::new(user_start, end)]
}

/// Splits a range-id-local key into its range id and what follows the id.
fn decode_range_id_key(key: &[u8]) -> Result<(RangeId, &[u8])> {
    let rest = key
        .strip_prefix(LOCAL_RANGE_ID_PREFIX)
        .ok_or_else(|| Error::Decode(format!("not a range-id-local key: {}", quoted(key))))?;
    let (id, rest) = rest
        .split_first_chunk::<8>()
        .ok_or_else(|| Error::Decode(format!("truncated range id in key {}", quoted(key))))?;
    Ok((RangeId(u64::from_be_bytes(*id)), rest))
}

/// Decodes a Raft log entry key into its range id and log index.
pub fn decode_raft_log_key(key: &[u8]) -> Result<(RangeId, u64)> {
    let (range_id, rest) = decode_range_id_key(key)?;
    let index = rest
        .strip_prefix(RAFT_LOG_SUFFIX)
        .and_then(|index| <[u8; 8]>::try_from(index).ok())
        .ok_or_else(|| Error::Decode(format!("not a Raft log key: {}", quoted(key))))?;
    Ok((range_id, u64::from_be_bytes(index)))
}

/// The key of the store's identity (cluster and store ids), written when the store is
/// bootstrapped.
pub fn store_ident_key() -> Vec<u8> {
    [LOCAL_STORE_PREFIX, STORE_IDENT_NAME].concat()
}

/// The key of the store's address book: the last known address of every node.
pub fn store_addresses_key() -> Vec<u8> {
    [LOCAL_STORE_PREFIX, STORE_ADDRESSES_NAME].concat()
}

/// The meta key of a range ending at `end_key`: `0x02 ++ end_key`, the key unescaped.
/// The descriptor of the range that contains a key `k` is at the first meta key
/// strictly greater than `meta_key(k)`.
pub fn meta_key(end_key: &[u8]) -> Vec<u8> {
    [META_PREFIX, end_key].concat()
}

/// The span `[META_PREFIX, META_MAX)` of every meta key.
pub fn meta_span() -> (Vec<u8>, Vec<u8>) {
    (META_PREFIX.to_vec(), META_MAX.to_vec())
}

/// The range end key of a meta key.
pub fn decode_meta_key(key: &[u8]) -> Result<Vec<u8>> {
    key.strip_prefix(META_PREFIX)
        .map(<[u8]>::to_vec)
        .ok_or_else(|| Error::Decode(format!("not a meta key: {}", quoted(key))))
}

/// A system key: `0x03 ++ sub`.
pub fn system_key(sub: &[u8]) -> Vec<u8> {
    [SYSTEM_PREFIX, sub].concat()
}

/// A system key under a tag: `0x03 <tag> <ordered varint ids...>`.
fn system_key_with_ids(tag: &[u8], ids: &[u64]) -> Vec<u8> {
    let mut key = system_key(tag);
    for &id in ids {
        encode_uvarint(&mut key, id);
    }
    key
}

/// The key of a node's liveness record: `/System/NodeLiveness/<node id>`.
pub fn node_liveness_key(node_id: NodeId) -> Vec<u8> {
    system_key_with_ids(SYSTEM_NODE_LIVENESS_TAG, &[node_id.0])
}

/// The span of every node liveness record.
pub fn node_liveness_span() -> Span {
    let prefix = system_key(SYSTEM_NODE_LIVENESS_TAG);
    let end = prefix_end(&prefix);
    Span::new(prefix, end)
}

/// The key marking a node as decommissioning: `/System/NodeDecommission/<node id>`.
pub fn node_decommission_key(node_id: NodeId) -> Vec<u8> {
    system_key_with_ids(SYSTEM_DECOMMISSION_TAG, &[node_id.0])
}

/// The span of every decommissioning mark.
pub fn node_decommission_span() -> Span {
    let prefix = system_key(SYSTEM_DECOMMISSION_TAG);
    let end = prefix_end(&prefix);
    Span::new(prefix, end)
}

/// The key of a SQL catalog descriptor (database, schema or table):
/// `/System/Descriptor/<id>`.
pub fn descriptor_key(id: u64) -> Vec<u8> {
    system_key_with_ids(SYSTEM_DESCRIPTOR_TAG, &[id])
}

/// The key mapping a name inside a parent (database or schema) to a descriptor id:
/// `/System/Namespace/<parent id>/<name>`, the name escaped.
pub fn namespace_key(parent_id: u64, name: &str) -> Vec<u8> {
    let mut key = system_key_with_ids(SYSTEM_NAMESPACE_TAG, &[parent_id]);
    encode_bytes_escaped(&mut key, name.as_bytes());
    key
}

/// The prefix of every namespace entry under one parent: a scan of it lists the
/// parent's children by name.
pub fn namespace_prefix(parent_id: u64) -> Vec<u8> {
    system_key_with_ids(SYSTEM_NAMESPACE_TAG, &[parent_id])
}

/// The span of every descriptor.
pub fn descriptor_span() -> (Vec<u8>, Vec<u8>) {
    let prefix = system_key(SYSTEM_DESCRIPTOR_TAG);
    let end = prefix_end(&prefix);
    (prefix, end)
}

/// The key of a SQL user: `/System/User/<name>`, the name escaped.
pub fn user_key(name: &str) -> Vec<u8> {
    let mut key = system_key(SYSTEM_USER_TAG);
    encode_bytes_escaped(&mut key, name.as_bytes());
    key
}

/// The span of every SQL user.
pub fn user_span() -> (Vec<u8>, Vec<u8>) {
    let prefix = system_key(SYSTEM_USER_TAG);
    let end = prefix_end(&prefix);
    (prefix, end)
}

/// The key of a named id generator (for example of range ids or descriptor ids):
/// `/System/IDGen/<name>`, the name escaped.
pub fn id_generator_key(name: &str) -> Vec<u8> {
    let mut key = system_key(SYSTEM_ID_GENERATOR_TAG);
    encode_bytes_escaped(&mut key, name.as_bytes());
    key
}

/// The key of a cluster setting: `/System/Setting/<name>`, the name escaped.
pub fn setting_key(name: &str) -> Vec<u8> {
    let mut key = system_key(SYSTEM_SETTING_TAG);
    encode_bytes_escaped(&mut key, name.as_bytes());
    key
}

/// The span of every cluster setting.
pub fn setting_span() -> Span {
    let prefix = system_key(SYSTEM_SETTING_TAG);
    let end = prefix_end(&prefix);
    Span::new(prefix, end)
}

/// The name in a key of [`setting_key`].
pub fn decode_setting_key(key: &[u8]) -> Result<String> {
    let mut rest = key
        .strip_prefix(system_key(SYSTEM_SETTING_TAG).as_slice())
        .ok_or_else(|| Error::Decode(format!("not a setting key: {}", quoted(key))))?;
    let name = decode_bytes_escaped(&mut rest)?;
    String::from_utf8(name).map_err(|e| Error::Decode(format!("setting name: {e}")))
}

/// The prefix of every key of a table: `0x04 <table id>`.
pub fn table_prefix(table_id: u64) -> Vec<u8> {
    let mut key = TABLE_MIN.to_vec();
    encode_uvarint(&mut key, table_id);
    key
}

/// The prefix of every key of an index: `0x04 <table id> <index id>`. The key columns,
/// encoded with [`encode_key`], follow.
pub fn index_prefix(table_id: u64, index_id: u64) -> Vec<u8> {
    let mut key = table_prefix(table_id);
    encode_uvarint(&mut key, index_id);
    key
}

/// Decodes the table and index ids at the start of a table key, and returns them with
/// the rest of the key (the encoded key columns and anything after them).
pub fn decode_table_index_prefix(key: &[u8]) -> Result<(u64, u64, &[u8])> {
    let mut rest = key
        .strip_prefix(TABLE_MIN)
        .ok_or_else(|| Error::Decode(format!("not a table key: {}", quoted(key))))?;
    let table_id = decode_uvarint(&mut rest)?;
    let index_id = decode_uvarint(&mut rest)?;
    Ok((table_id, index_id, rest))
}

/// The span `[start, end)` of every key of a table.
pub fn table_span(table_id: u64) -> (Vec<u8>, Vec<u8>) {
    let start = table_prefix(table_id);
    let end = prefix_end(&start);
    (start, end)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::ops::Bound;

    use proptest::prelude::*;

    use super::*;

    fn txn(byte: u8) -> TxnId {
        TxnId::from_bytes([byte; 16])
    }

    #[test]
    fn prefixes_sort_in_layout_order() {
        let boundaries = [
            KEY_MIN,
            LOCAL_PREFIX,
            LOCAL_RANGE_ID_PREFIX,
            LOCAL_RANGE_PREFIX,
            LOCAL_STORE_PREFIX,
            LOCAL_MAX,
            META_MAX,
            SYSTEM_MAX,
            KEY_MAX,
        ];
        assert!(boundaries.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(LOCAL_MAX, META_PREFIX);
        assert_eq!(META_MAX, SYSTEM_PREFIX);
        assert_eq!(SYSTEM_MAX, TABLE_MIN);
        let (meta_start, meta_end) = meta_span();
        assert!(meta_start.as_slice() <= meta_key(KEY_MAX).as_slice());
        assert!(meta_key(KEY_MAX) < meta_end);
        assert!(table_span(u64::MAX).1.as_slice() < KEY_MAX);
    }

    #[test]
    fn txn_record_key_is_addressed_by_its_anchor() {
        let anchor = index_prefix(52, 1);
        let key = txn_record_key(&anchor, txn(7));
        assert!(is_local(&key));
        assert_eq!(addr(&key).unwrap(), anchor);
        let (decoded_anchor, suffix, detail) = decode_range_local_key(&key).unwrap();
        assert_eq!(decoded_anchor, anchor);
        assert_eq!(&suffix, TXN_RECORD_SUFFIX);
        assert_eq!(detail, txn(7).as_bytes());
        assert_eq!(addr(&range_descriptor_key(b"a\0b")).unwrap(), b"a\0b");
        assert_eq!(addr(&range_descriptor_key(KEY_MIN)).unwrap(), KEY_MIN);
    }

    #[test]
    fn addr_of_non_local_keys_and_unaddressable_keys() {
        for key in [
            &[][..],
            &meta_key(b"c"),
            &descriptor_key(3),
            &index_prefix(52, 1),
        ] {
            assert_eq!(addr(key).unwrap(), key);
        }
        for key in [
            raft_log_key(RangeId(3), 9),
            range_applied_state_key(RangeId(3)),
            store_ident_key(),
        ] {
            assert!(
                matches!(addr(&key), Err(Error::InvalidArgument(_))),
                "{}",
                pretty(&key)
            );
        }
        let nested = txn_record_key(&range_descriptor_key(b"a"), txn(1));
        for key in [&[0x01][..], &[0x01, b'x'], &[0x01, b'k', b'a'], &nested] {
            assert!(matches!(addr(key), Err(Error::Decode(_))), "{key:x?}");
        }
    }

    #[test]
    fn raft_log_keys_sort_by_index_within_the_range_id_span() {
        let range = RangeId(12);
        let (start, end) = (range_id_prefix(range), range_id_prefix_end(range));
        let keys: Vec<_> = [0, 1, 255, 256, u64::MAX]
            .iter()
            .map(|&i| raft_log_key(range, i))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        for key in keys.iter().chain(&[
            raft_vote_key(range),
            raft_committed_key(range),
            range_applied_state_key(range),
            raft_log_prefix(range),
        ]) {
            assert!(start <= *key && *key < end, "{}", pretty(key));
        }
        assert!(end <= range_id_prefix(RangeId(13)));
        assert_eq!(
            decode_raft_log_key(&raft_log_key(range, 5)).unwrap(),
            (range, 5)
        );
        assert!(decode_raft_log_key(&raft_vote_key(range)).is_err());
        assert!(decode_raft_log_key(&raft_log_prefix(range)).is_err());
        assert_eq!(range_id_prefix_end(RangeId(u64::MAX)), [0x01, b'j']);
    }

    #[test]
    fn meta_lookup_finds_the_range_containing_a_key() {
        // Ranges [KEY_MIN, c) and [c, KEY_MAX), each stored at the meta key of its end.
        let meta: BTreeMap<Vec<u8>, &str> =
            [(meta_key(b"c"), "[min,c)"), (meta_key(KEY_MAX), "[c,max)")].into();
        let lookup = |k: &[u8]| {
            let (key, desc) = meta
                .range((Bound::Excluded(meta_key(k)), Bound::Unbounded))
                .next()
                .unwrap();
            (decode_meta_key(key).unwrap(), *desc)
        };
        assert_eq!(lookup(b"b"), (b"c".to_vec(), "[min,c)"));
        assert_eq!(lookup(KEY_MIN), (b"c".to_vec(), "[min,c)"));
        assert_eq!(lookup(b"c"), (KEY_MAX.to_vec(), "[c,max)"));
        assert_eq!(lookup(b"zz"), (KEY_MAX.to_vec(), "[c,max)"));
        assert_eq!(lookup(&index_prefix(52, 1)), (b"c".to_vec(), "[min,c)"));
    }

    #[test]
    fn prefix_end_and_next_key() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(&[b'a', 0xff, 0xff]), b"b");
        assert_eq!(prefix_end(&[0xff, 0xff, 0xff]), KEY_MAX);
        assert_eq!(prefix_end(&[]), KEY_MAX);
        assert_eq!(next_key(b"ab"), b"ab\0");
        assert_eq!(next_key(KEY_MIN), [0x00]);
    }

    #[test]
    fn table_keys_decode_and_stay_in_their_span() {
        let key = [index_prefix(300, 2), vec![0x11, 0x80]].concat();
        assert_eq!(
            decode_table_index_prefix(&key).unwrap(),
            (300, 2, &[0x11, 0x80][..])
        );
        let (start, end) = table_span(300);
        assert!(start <= key && key < end);
        assert!(table_prefix(301) >= end);
        assert!(table_prefix(299) < start);
        assert!(decode_table_index_prefix(&table_prefix(300)).is_err());
        assert!(decode_table_index_prefix(&meta_key(&key)).is_err());
    }

    #[test]
    fn system_keys_are_distinct_and_in_the_system_span() {
        let keys = [
            node_liveness_key(NodeId(1)),
            node_liveness_key(NodeId(2)),
            descriptor_key(1),
            namespace_key(1, "users"),
            namespace_key(1, "users2"),
            id_generator_key("range_id"),
            id_generator_key("descriptor_id"),
        ];
        for (i, a) in keys.iter().enumerate() {
            assert!(SYSTEM_PREFIX <= a.as_slice() && a.as_slice() < SYSTEM_MAX);
            for b in &keys[i + 1..] {
                assert!(!a.starts_with(b) && !b.starts_with(a), "{a:x?} {b:x?}");
            }
        }
    }

    fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(0xff), any::<u8>()],
            0..8,
        )
    }

    /// Random bytes behind a known prefix, to reach the decoders' inner branches.
    fn key_like() -> impl Strategy<Value = Vec<u8>> {
        let prefixes = prop_oneof![
            Just(vec![]),
            Just(LOCAL_RANGE_PREFIX.to_vec()),
            Just(LOCAL_RANGE_ID_PREFIX.to_vec()),
            Just(LOCAL_STORE_PREFIX.to_vec()),
            Just(raft_log_prefix(RangeId(3))),
            Just(range_id_prefix(RangeId(3))),
            Just(META_PREFIX.to_vec()),
            Just(system_key(SYSTEM_NAMESPACE_TAG)),
            Just(system_key(SYSTEM_ID_GENERATOR_TAG)),
            Just(system_key(SYSTEM_NODE_LIVENESS_TAG)),
            Just(index_prefix(52, 1)),
            Just(TABLE_MIN.to_vec()),
        ];
        (prefixes, prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(prefix, tail)| [prefix, tail].concat())
    }

    proptest! {
        #[test]
        fn decoders_never_panic(key in prop_oneof![key_like(), key_bytes()]) {
            let _ = decode_range_local_key(&key);
            let _ = decode_raft_log_key(&key);
            let _ = decode_meta_key(&key);
            let _ = decode_table_index_prefix(&key);
            let _ = addr(&key);
            let _ = pretty(&key);
        }

        #[test]
        fn prefix_end_is_above_every_extension(
            prefix in key_bytes().prop_filter("not all 0xff", |p| p.iter().any(|&b| b != 0xff)),
            extension in key_bytes(),
        ) {
            let end = prefix_end(&prefix);
            let extended = [prefix.clone(), extension].concat();
            prop_assert!(prefix < end);
            prop_assert!(extended < end);
        }

        #[test]
        fn next_key_is_just_above(key in key_bytes(), other in key_bytes()) {
            let next = next_key(&key);
            prop_assert!(key < next);
            prop_assert!(!(key < other && other < next));
        }

        /// The local keys of anchors sort like the anchors, whatever their suffixes.
        #[test]
        fn range_local_keys_sort_by_anchor(
            a in key_bytes(),
            b in key_bytes(),
            detail_a in key_bytes(),
            detail_b in key_bytes(),
        ) {
            let (a, b) = if a < b { (a, b) } else { (b, a) };
            if a == b {
                return Ok(());
            }
            let key_a = range_local_key(&a, b"zzzz", &detail_a);
            let key_b = range_local_key(&b, RANGE_DESCRIPTOR_SUFFIX, &detail_b);
            prop_assert!(key_a < key_b);
        }

        #[test]
        fn table_prefix_round_trips_and_orders(
            t1 in prop_oneof![0u64..300, any::<u64>()],
            i1 in prop_oneof![0u64..300, any::<u64>()],
            t2 in prop_oneof![0u64..300, any::<u64>()],
            i2 in prop_oneof![0u64..300, any::<u64>()],
        ) {
            let (k1, k2) = (index_prefix(t1, i1), index_prefix(t2, i2));
            prop_assert_eq!(decode_table_index_prefix(&k1).unwrap(), (t1, i1, &[][..]));
            prop_assert_eq!((t1, i1).cmp(&(t2, i2)), k1.cmp(&k2));
            let (start, end) = table_span(t1);
            prop_assert!(start <= k1 && k1 < end);
            prop_assert_eq!(start <= k2 && k2 < end, t1 == t2);
        }

        /// With ranges split at random keys, looking a key up in meta finds the range
        /// that contains it.
        #[test]
        fn meta_lookup_rule(
            splits in prop::collection::btree_set(
                key_bytes().prop_filter("inside the key space", |k| {
                    !k.is_empty() && k.as_slice() < KEY_MAX
                }),
                0..5,
            ),
            k in key_bytes(),
        ) {
            let bounds: Vec<Vec<u8>> = std::iter::once(KEY_MIN.to_vec())
                .chain(splits.iter().cloned())
                .chain(std::iter::once(KEY_MAX.to_vec()))
                .collect();
            let meta: BTreeMap<Vec<u8>, (Vec<u8>, Vec<u8>)> = bounds
                .windows(2)
                .map(|w| (meta_key(&w[1]), (w[0].clone(), w[1].clone())))
                .collect();
            prop_assume!(k.as_slice() < KEY_MAX);
            let (_, (start, end)) = meta
                .range((Bound::Excluded(meta_key(&k)), Bound::Unbounded))
                .next()
                .unwrap();
            prop_assert!(*start <= k && k < *end);
        }
    }
}

/// A half-open span of keys `[start, end)`.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Span {
    pub start: Vec<u8>,
    pub end: Vec<u8>,
}

impl Span {
    pub fn new(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        Span {
            start: start.into(),
            end: end.into(),
        }
    }

    /// Whether `key` lies in the span.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_slice() <= key && key < self.end.as_slice()
    }

    /// Whether the span holds no key.
    pub fn is_empty(&self) -> bool {
        self.start >= self.end
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}, {})", pretty(&self.start), pretty(&self.end))
    }
}
