//! The on-disk form of MVCC values, each with a checksum.
//!
//! ```text
//!   crc32(raw key ++ tag ++ body) (4 bytes, big-endian) ++ tag (1 byte) ++ body
//!
//!   tag 1  version: a value           body = the value
//!   tag 2  version: a tombstone       body = empty
//!   tag 3  meta: an intent            body = postcard(IntentRecord)
//!   tag 4  meta: an unversioned value body = the value
//! ```
//!
//! The checksum covers the key too, so a value that lands under the wrong key is caught
//! as surely as a flipped bit.

use serde::{Deserialize, Serialize};

use super::TxnMeta;
use crate::checksum::{open, seal};
use crate::error::{Error, Result};

const TAG_VALUE: u8 = 1;
const TAG_TOMBSTONE: u8 = 2;
const TAG_INTENT: u8 = 3;
const TAG_INLINE: u8 = 4;

/// A committed version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Version {
    Value(Vec<u8>),
    Tombstone,
}

impl Version {
    pub fn into_value(self) -> Option<Vec<u8>> {
        match self {
            Version::Value(v) => Some(v),
            Version::Tombstone => None,
        }
    }
}

/// A provisional write: the transaction's latest value for the key, and the values it
/// wrote before at lower sequence numbers (for reads at an earlier sequence and for
/// rolling back to a savepoint).
///
/// Invariant: `history` is sorted by sequence, every sequence below `txn.seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRecord {
    pub txn: TxnMeta,
    /// `None`: the transaction deletes the key.
    pub value: Option<Vec<u8>>,
    pub history: Vec<(u32, Option<Vec<u8>>)>,
}

impl IntentRecord {
    /// The transaction's own value as of sequence `seq`, leaving out writes at
    /// `ignored` sequences (rolled back to a savepoint): `None` if it had not written
    /// the key yet by then (or only in rolled-back writes), `Some(None)` if it had
    /// deleted it.
    pub fn value_at_seq(&self, seq: u32, ignored: &[(u32, u32)]) -> Option<Option<&[u8]>> {
        if self.txn.seq <= seq && !TxnMeta::is_ignored(ignored, self.txn.seq) {
            return Some(self.value.as_deref());
        }
        self.history
            .iter()
            .rev()
            .find(|(s, _)| *s <= seq && !TxnMeta::is_ignored(ignored, *s))
            .map(|(_, v)| v.as_deref())
    }
}

/// What a key's meta entry holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Meta {
    Intent(IntentRecord),
    /// A value with no versions (transaction records, range-local state).
    Inline(Vec<u8>),
}

pub fn encode_version(raw_key: &[u8], version: &Version) -> Vec<u8> {
    match version {
        Version::Value(v) => seal(raw_key, TAG_VALUE, v),
        Version::Tombstone => seal(raw_key, TAG_TOMBSTONE, &[]),
    }
}

pub fn decode_version(user_key: &[u8], raw_key: &[u8], stored: &[u8]) -> Result<Version> {
    match open(user_key, raw_key, stored)? {
        (TAG_VALUE, body) => Ok(Version::Value(body.to_vec())),
        (TAG_TOMBSTONE, []) => Ok(Version::Tombstone),
        (tag, _) => Err(Error::Corruption {
            key: user_key.to_vec(),
            detail: format!("version entry with tag {tag}"),
        }),
    }
}

pub fn encode_meta(raw_key: &[u8], meta: &Meta) -> Result<Vec<u8>> {
    Ok(match meta {
        Meta::Intent(rec) => {
            let body = postcard::to_stdvec(rec)
                .map_err(|e| Error::Decode(format!("encoding intent: {e}")))?;
            seal(raw_key, TAG_INTENT, &body)
        }
        Meta::Inline(v) => seal(raw_key, TAG_INLINE, v),
    })
}

pub fn decode_meta(user_key: &[u8], raw_key: &[u8], stored: &[u8]) -> Result<Meta> {
    let corrupt = |detail: String| Error::Corruption {
        key: user_key.to_vec(),
        detail,
    };
    match open(user_key, raw_key, stored)? {
        (TAG_INTENT, body) => {
            let rec: IntentRecord = postcard::from_bytes(body)
                .map_err(|e| corrupt(format!("undecodable intent: {e}")))?;
            Ok(Meta::Intent(rec))
        }
        (TAG_INLINE, body) => Ok(Meta::Inline(body.to_vec())),
        (tag, _) => Err(corrupt(format!("meta entry with tag {tag}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hlc::Timestamp;
    use crate::ids::TxnId;
    use proptest::prelude::*;

    fn record() -> IntentRecord {
        IntentRecord {
            txn: TxnMeta {
                id: TxnId::from_bytes([7; 16]),
                key: b"anchor".to_vec(),
                epoch: 2,
                write_ts: Timestamp::new(10, 1),
                min_ts: Timestamp::new(9, 0),
                priority: 5,
                seq: 4,
                ignored: Vec::new(),
            },
            value: Some(b"v4".to_vec()),
            history: vec![(1, Some(b"v1".to_vec())), (3, None)],
        }
    }

    #[test]
    fn round_trips() {
        let k = b"raw";
        for v in [
            Version::Value(b"x".to_vec()),
            Version::Value(vec![]),
            Version::Tombstone,
        ] {
            assert_eq!(decode_version(b"k", k, &encode_version(k, &v)).unwrap(), v);
        }
        for m in [Meta::Intent(record()), Meta::Inline(b"inline".to_vec())] {
            assert_eq!(
                decode_meta(b"k", k, &encode_meta(k, &m).unwrap()).unwrap(),
                m
            );
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let k = b"raw";
        let stored = encode_meta(k, &Meta::Intent(record())).unwrap();
        for i in 0..stored.len() * 8 {
            let mut bad = stored.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let err = decode_meta(b"user", k, &bad).unwrap_err();
            assert!(
                matches!(&err, Error::Corruption { key, .. } if key == b"user"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_value_under_the_wrong_key_is_caught() {
        let stored = encode_version(b"a", &Version::Value(b"x".to_vec()));
        assert!(matches!(
            decode_version(b"b", b"b", &stored),
            Err(Error::Corruption { .. })
        ));
    }

    #[test]
    fn value_at_seq() {
        let r = record();
        assert_eq!(r.value_at_seq(0, &[]), None);
        assert_eq!(r.value_at_seq(1, &[]), Some(Some(&b"v1"[..])));
        assert_eq!(r.value_at_seq(2, &[]), Some(Some(&b"v1"[..])));
        assert_eq!(r.value_at_seq(3, &[]), Some(None));
        assert_eq!(r.value_at_seq(4, &[]), Some(Some(&b"v4"[..])));
        assert_eq!(r.value_at_seq(99, &[]), Some(Some(&b"v4"[..])));
        // Rolled back to a savepoint after sequence 1: writes 3 and 4 are ignored.
        assert_eq!(r.value_at_seq(99, &[(2, 4)]), Some(Some(&b"v1"[..])));
        assert_eq!(r.value_at_seq(99, &[(1, 4)]), None);
        assert_eq!(r.value_at_seq(3, &[(4, 4)]), Some(None));
    }

    proptest! {
        #[test]
        fn decoding_random_bytes_never_panics(raw: Vec<u8>, stored: Vec<u8>) {
            let _ = decode_version(b"k", &raw, &stored);
            let _ = decode_meta(b"k", &raw, &stored);
        }

        /// Random bytes with a valid checksum still decode to an error or a value,
        /// never a panic (postcard must reject garbage cleanly).
        #[test]
        fn sealed_garbage_never_panics(raw: Vec<u8>, tag in 0u8..6, body: Vec<u8>) {
            let stored = seal(&raw, tag, &body);
            let _ = decode_version(b"k", &raw, &stored);
            let _ = decode_meta(b"k", &raw, &stored);
        }
    }
}
