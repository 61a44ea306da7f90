//! The on-disk form of MVCC keys.
//!
//! ```text
//!   meta (intent or unversioned value):  escaped(user key)
//!   version at ts:                       escaped(user key) ++ !wall (8 bytes) ++ !logical (4 bytes)
//! ```
//!
//! `escaped` is [`encode_bytes_escaped`]: it preserves the order of user keys and no
//! escaped key is a prefix of another, so all entries of one user key are adjacent and
//! ordered by user key. Within a key the meta entry (no suffix) comes first, then the
//! versions; the timestamp is inverted bit by bit so that newer versions sort first.

use crate::error::{Error, Result};
use crate::hlc::Timestamp;
use crate::keys::{decode_bytes_escaped, encode_bytes_escaped};

/// The key of `user_key`'s meta entry: its intent or unversioned value.
pub fn meta_key(user_key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(user_key.len() + 2 + Timestamp::ENCODED_LEN);
    encode_bytes_escaped(&mut out, user_key);
    out
}

/// The key of `user_key`'s version at `ts`.
pub fn version_key(user_key: &[u8], ts: Timestamp) -> Vec<u8> {
    let mut out = meta_key(user_key);
    out.extend(ts.encode().map(|b| !b));
    out
}

/// The smallest on-disk key of any user key `>= user_key`: the lower bound of a scan.
pub fn span_start(user_key: &[u8]) -> Vec<u8> {
    meta_key(user_key)
}

/// The smallest on-disk key after every entry of `user_key`: the meta key of the next
/// possible user key, `user_key ++ 0x00`.
pub fn after_user_key(user_key: &[u8]) -> Vec<u8> {
    meta_key(&crate::keys::next_key(user_key))
}

/// Decodes the timestamp suffix of a version key (what follows the escaped user key).
pub fn decode_version_suffix(suffix: &[u8]) -> Result<Timestamp> {
    let mut inverted: [u8; Timestamp::ENCODED_LEN] = suffix
        .try_into()
        .map_err(|_| Error::Decode(format!("MVCC version suffix of {} bytes", suffix.len())))?;
    for b in &mut inverted {
        *b = !*b;
    }
    Timestamp::decode(&inverted)
}

/// A decoded on-disk key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MvccKey {
    pub user_key: Vec<u8>,
    /// `None` for the meta entry.
    pub ts: Option<Timestamp>,
}

/// Decodes an on-disk key. Anything other than the two forms above is an error.
pub fn decode(raw: &[u8]) -> Result<MvccKey> {
    let mut rest = raw;
    let user_key = decode_bytes_escaped(&mut rest)?;
    let ts = match rest.len() {
        0 => None,
        Timestamp::ENCODED_LEN => Some(decode_version_suffix(rest)?),
        n => return Err(Error::Decode(format!("MVCC key has a {n}-byte suffix"))),
    };
    Ok(MvccKey { user_key, ts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(k: Vec<u8>, wall: u64, logical: u32) {
            let ts = Timestamp::new(wall, logical);
            prop_assert_eq!(decode(&meta_key(&k)).unwrap(), MvccKey { user_key: k.clone(), ts: None });
            prop_assert_eq!(decode(&version_key(&k, ts)).unwrap(), MvccKey { user_key: k, ts: Some(ts) });
        }

        /// Entries sort by user key, then meta first, then newest version first.
        #[test]
        fn order(a: Vec<u8>, b: Vec<u8>, ta: (u64, u32), tb: (u64, u32)) {
            let (ta, tb) = (Timestamp::new(ta.0, ta.1), Timestamp::new(tb.0, tb.1));
            let ka = version_key(&a, ta);
            let kb = version_key(&b, tb);
            let want = a.cmp(&b).then(tb.cmp(&ta));
            prop_assert_eq!(ka.cmp(&kb), want);
            prop_assert!(meta_key(&a) < ka);
            if a < b {
                prop_assert!(ka < meta_key(&b));
            }
        }

        #[test]
        fn decoding_random_bytes_never_panics(raw: Vec<u8>) {
            let _ = decode(&raw);
        }
    }
}
