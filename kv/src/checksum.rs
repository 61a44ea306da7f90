//! Checksummed values: every value Cairn stores carries a CRC-32 of its key, a one-byte
//! tag and its body, so a flipped bit or a value under the wrong key is detected on read.
//!
//! ```text
//!   crc32(key ++ tag ++ body) (4 bytes, big-endian) ++ tag (1 byte) ++ body
//! ```

use crate::error::{Error, Result};

const HEADER: usize = 5;

fn checksum(key: &[u8], tag: u8, body: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(&[tag]);
    h.update(body);
    h.finalize()
}

/// `body` under `key`, with its tag and checksum.
pub fn seal(key: &[u8], tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&checksum(key, tag, body).to_be_bytes());
    out.push(tag);
    out.extend_from_slice(body);
    out
}

/// Checks the checksum of a value stored under `key` and returns its tag and body.
/// `name` is the key to name in the error (the user key, for MVCC values).
pub fn open<'a>(name: &[u8], key: &[u8], stored: &'a [u8]) -> Result<(u8, &'a [u8])> {
    let corrupt = |detail: String| Error::Corruption {
        key: name.to_vec(),
        detail,
    };
    if stored.len() < HEADER {
        return Err(corrupt(format!(
            "value of {} bytes is shorter than its header",
            stored.len()
        )));
    }
    let (head, body) = stored.split_at(HEADER);
    let want = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    let tag = head[4];
    let got = checksum(key, tag, body);
    if want != got {
        return Err(corrupt(format!(
            "checksum mismatch: stored {want:08x}, computed {got:08x}"
        )));
    }
    Ok((tag, body))
}
