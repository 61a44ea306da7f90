//! Writes: puts, deletes, conditional puts, intent resolution and garbage collection.
//!
//! Each function reads what it needs through the [`ReadWriter`] and records its effects
//! in it; nothing reaches the engine until the caller writes the batch. Every check
//! happens before the first write, so a failed operation leaves no partial effects.

use super::key::{self, after_user_key, decode_version_suffix, meta_key, version_key};
use super::read::{ReadOptions, scan};
use super::value::{
    IntentRecord, Meta, Version, decode_meta, decode_version, encode_meta, encode_version,
};
use super::{Intent, TxnMeta};
use crate::error::{Error, Result};
use crate::hlc::Timestamp;
use crate::keys::Span;
use crate::storage::{Reader, Space, Writer};

/// A reader that takes writes: what MVCC writes evaluate against (an
/// [`IndexedBatch`](crate::storage::IndexedBatch)).
pub trait ReadWriter: Reader + Writer {}

impl<T: Reader + Writer> ReadWriter for T {}

/// How a transaction ended, or that it was pushed, for [`resolve_intent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResolveStatus {
    /// Make the intent a committed version at the transaction's `write_ts` (its commit
    /// timestamp), unless it belongs to an earlier epoch: then it is discarded.
    Committed,
    /// Remove the intent.
    Aborted,
    /// The transaction is still pending but was pushed: move the intent up to its new
    /// `write_ts`.
    Pending,
}

/// What a key holds that a write must respect.
struct KeyState {
    meta: Option<Meta>,
    /// The newest committed version.
    newest: Option<(Timestamp, Version)>,
}

fn load(reader: &dyn Reader, user_key: &[u8]) -> Result<KeyState> {
    // The meta entry and the newest version are adjacent: one iterator reads both.
    let meta_raw = meta_key(user_key);
    let mut it = reader.iter(Space::Data, &meta_raw, Some(&after_user_key(user_key)))?;
    it.seek_to_first()?;
    let mut meta = None;
    if let Some((raw, stored)) = it.current()
        && raw == meta_raw.as_slice()
    {
        meta = Some(decode_meta(user_key, raw, stored)?);
        it.next()?;
    }
    let newest = match it.current() {
        Some((raw, stored)) => {
            let suffix = raw.get(meta_raw.len()..).unwrap_or_default();
            let ts = decode_version_suffix(suffix).map_err(|e| Error::Corruption {
                key: user_key.to_vec(),
                detail: format!("bad version key: {e}"),
            })?;
            Some((ts, decode_version(user_key, raw, stored)?))
        }
        None => None,
    };
    Ok(KeyState { meta, newest })
}

/// What a write will do, decided before anything is written.
enum Plan {
    /// The transaction already wrote this key at this sequence number (a replayed
    /// request); this is what it wrote.
    Replay(Option<Vec<u8>>),
    Write {
        write_ts: Timestamp,
        /// The value the writer sees now (for conditional puts).
        current: Option<Vec<u8>>,
        /// The history to keep in the new intent.
        history: Vec<(u32, Option<Vec<u8>>)>,
    },
}

fn plan(
    reader: &dyn Reader,
    user_key: &[u8],
    ts: Timestamp,
    txn: Option<&TxnMeta>,
) -> Result<Plan> {
    let state = load(reader, user_key)?;
    let mut write_ts = txn.map_or(ts, |t| t.write_ts);
    if write_ts.is_zero() {
        return Err(Error::InvalidArgument("write at the zero timestamp".into()));
    }
    let committed = || {
        state
            .newest
            .as_ref()
            .and_then(|(_, v)| v.clone().into_value())
    };
    match (&state.meta, txn) {
        (Some(Meta::Inline(_)), _) => Err(Error::InvalidArgument(format!(
            "key {} holds an unversioned value",
            crate::keys::pretty(user_key)
        ))),
        (Some(Meta::Intent(rec)), Some(own)) if rec.txn.id == own.id => {
            if rec.txn.epoch > own.epoch {
                return Err(Error::InvalidArgument(format!(
                    "txn {:?} writes at epoch {} over its own intent of epoch {}",
                    own.id, own.epoch, rec.txn.epoch
                )));
            }
            if rec.txn.epoch < own.epoch {
                // The restarted transaction replaces what its earlier epoch wrote.
                return Ok(Plan::Write {
                    write_ts: write_ts.max(rec.txn.write_ts),
                    current: committed(),
                    history: Vec::new(),
                });
            }
            if own.seq <= rec.txn.seq {
                let earlier = rec.value_at_seq(own.seq, &[]).ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "txn {:?} replays sequence {} which wrote nothing to {}",
                        own.id,
                        own.seq,
                        crate::keys::pretty(user_key)
                    ))
                })?;
                return Ok(Plan::Replay(earlier.map(<[u8]>::to_vec)));
            }
            write_ts = write_ts.max(rec.txn.write_ts);
            let mut history = rec.history.clone();
            history.push((rec.txn.seq, rec.value.clone()));
            // What the transaction sees now: its latest write not rolled back, else
            // the committed value.
            let current = match rec.value_at_seq(u32::MAX, &own.ignored) {
                Some(v) => v.map(<[u8]>::to_vec),
                None => committed(),
            };
            Ok(Plan::Write {
                write_ts,
                current,
                history,
            })
        }
        (Some(Meta::Intent(rec)), _) => Err(Error::WriteIntent {
            intents: vec![Intent {
                key: user_key.to_vec(),
                txn: rec.txn.clone(),
            }],
        }),
        (None, _) => {
            if let Some((existing_ts, _)) = &state.newest
                && *existing_ts >= write_ts
            {
                return Err(Error::WriteTooOld {
                    key: user_key.to_vec(),
                    write_ts,
                    existing_ts: *existing_ts,
                });
            }
            Ok(Plan::Write {
                write_ts,
                current: committed(),
                history: Vec::new(),
            })
        }
    }
}

fn apply(
    rw: &mut dyn ReadWriter,
    user_key: &[u8],
    value: Option<&[u8]>,
    txn: Option<&TxnMeta>,
    plan: Plan,
) -> Result<()> {
    let (write_ts, history) = match plan {
        Plan::Replay(earlier) if earlier.as_deref() == value => return Ok(()),
        Plan::Replay(_) => {
            return Err(Error::InvalidArgument(format!(
                "replayed write to {} carries a different value than the original",
                crate::keys::pretty(user_key)
            )));
        }
        Plan::Write {
            write_ts, history, ..
        } => (write_ts, history),
    };
    match txn {
        None => {
            let raw = version_key(user_key, write_ts);
            let version = match value {
                Some(v) => Version::Value(v.to_vec()),
                None => Version::Tombstone,
            };
            let stored = encode_version(&raw, &version);
            rw.put(Space::Data, raw, stored);
        }
        Some(own) => {
            let mut meta = own.clone();
            meta.write_ts = write_ts;
            let rec = IntentRecord {
                txn: meta,
                value: value.map(<[u8]>::to_vec),
                history,
            };
            debug_assert!(rec.history.iter().all(|(s, _)| *s < rec.txn.seq));
            let raw = meta_key(user_key);
            let stored = encode_meta(&raw, &Meta::Intent(rec))?;
            rw.put(Space::Data, raw, stored);
        }
    }
    Ok(())
}

/// Writes `value` to `key`: a committed version at `ts` if `txn` is `None`, else an
/// intent of `txn` at its `write_ts` (and `ts` is ignored).
pub fn put(
    rw: &mut dyn ReadWriter,
    key: &[u8],
    ts: Timestamp,
    value: &[u8],
    txn: Option<&TxnMeta>,
) -> Result<()> {
    let plan = plan(rw, key, ts, txn)?;
    apply(rw, key, Some(value), txn, plan)
}

/// Deletes `key` (writes a tombstone), like [`put`].
pub fn delete(
    rw: &mut dyn ReadWriter,
    key: &[u8],
    ts: Timestamp,
    txn: Option<&TxnMeta>,
) -> Result<()> {
    let plan = plan(rw, key, ts, txn)?;
    apply(rw, key, None, txn, plan)
}

/// Writes `value` only if the key's current value (as the writer sees it: its own
/// intent, else the newest committed version) equals `expected` (`None`: no value).
/// Otherwise fails with [`Error::ConditionFailed`] carrying the actual value.
///
/// In a transaction, `ts` is its read timestamp. A committed version above it that
/// fails the condition is one the transaction's reads did not see (another
/// transaction wrote the key after this one read it): that is a conflict, not a
/// failed condition, so it fails with [`Error::ReadWithinUncertainty`] and the
/// transaction moves above that version and looks again. (An INSERT racing another of
/// the same key thus retries and then finds the row, and an UPSERT updates it, rather
/// than either reporting a duplicate key it never read.)
pub fn conditional_put(
    rw: &mut dyn ReadWriter,
    key: &[u8],
    ts: Timestamp,
    value: &[u8],
    expected: Option<&[u8]>,
    txn: Option<&TxnMeta>,
) -> Result<()> {
    let plan = plan(rw, key, ts, txn)?;
    if let Plan::Write { current, .. } = &plan
        && current.as_deref() != expected
    {
        if txn.is_some() {
            let state = load(rw, key)?;
            if let (None, Some((existing_ts, _))) = (&state.meta, &state.newest)
                && *existing_ts > ts
            {
                return Err(Error::ReadWithinUncertainty {
                    key: key.to_vec(),
                    read_ts: ts,
                    existing_ts: *existing_ts,
                    limit: *existing_ts,
                });
            }
        }
        return Err(Error::ConditionFailed {
            key: key.to_vec(),
            actual: current.clone(),
        });
    }
    apply(rw, key, Some(value), txn, plan)
}

/// Deletes every key in `[start, end)` that has a value (as the writer sees it), at most
/// `max_keys` of them (0: no limit). Returns the deleted keys and, if the limit stopped
/// it, the span left to do.
pub fn delete_range(
    rw: &mut dyn ReadWriter,
    start: &[u8],
    end: &[u8],
    ts: Timestamp,
    txn: Option<&TxnMeta>,
    max_keys: usize,
) -> Result<(Vec<Vec<u8>>, Option<Span>)> {
    // Read the newest state, not the state at `ts`: a key written above `ts` must make
    // this fail with WriteTooOld rather than survive the delete.
    let mut opts = ReadOptions::at(Timestamp::MAX);
    opts.txn = txn;
    let found = scan(rw, start, end, opts, max_keys, false)?;
    let mut deleted = Vec::with_capacity(found.kvs.len());
    for (key, _) in found.kvs {
        delete(rw, &key, ts, txn)?;
        deleted.push(key);
    }
    Ok((deleted, found.resume_span))
}

/// Writes an unversioned value (transaction records, range-local state). It is not
/// subject to timestamps: every read sees the latest one.
pub fn put_inline(rw: &mut dyn ReadWriter, key: &[u8], value: &[u8]) -> Result<()> {
    check_inline(rw, key)?;
    let raw = meta_key(key);
    let stored = encode_meta(&raw, &Meta::Inline(value.to_vec()))?;
    rw.put(Space::Data, raw, stored);
    Ok(())
}

/// Removes an unversioned value.
pub fn delete_inline(rw: &mut dyn ReadWriter, key: &[u8]) -> Result<()> {
    check_inline(rw, key)?;
    rw.delete(Space::Data, meta_key(key));
    Ok(())
}

fn check_inline(reader: &dyn Reader, key: &[u8]) -> Result<()> {
    let state = load(reader, key)?;
    if matches!(state.meta, Some(Meta::Intent(_))) || state.newest.is_some() {
        return Err(Error::InvalidArgument(format!(
            "key {} holds versioned data, not an unversioned value",
            crate::keys::pretty(key)
        )));
    }
    Ok(())
}

/// Resolves `txn`'s intent on `key` according to `status` (see [`ResolveStatus`]).
/// Returns whether there was an intent of `txn` to resolve; resolving twice is harmless.
pub fn resolve_intent(
    rw: &mut dyn ReadWriter,
    key: &[u8],
    txn: &TxnMeta,
    status: ResolveStatus,
) -> Result<bool> {
    let raw = meta_key(key);
    let Some(stored) = rw.get(Space::Data, &raw)? else {
        return Ok(false);
    };
    let Meta::Intent(mut rec) = decode_meta(key, &raw, &stored)? else {
        return Ok(false);
    };
    if rec.txn.id != txn.id {
        return Ok(false);
    }
    match status {
        ResolveStatus::Aborted => rw.delete(Space::Data, raw),
        ResolveStatus::Pending => {
            if txn.write_ts <= rec.txn.write_ts {
                return Ok(false);
            }
            rec.txn.write_ts = txn.write_ts;
            let stored = encode_meta(&raw, &Meta::Intent(rec))?;
            rw.put(Space::Data, raw, stored);
        }
        ResolveStatus::Committed => {
            if rec.txn.epoch > txn.epoch {
                return Err(Error::InvalidArgument(format!(
                    "commit of txn {:?} at epoch {} meets its intent of epoch {} on {}",
                    txn.id,
                    txn.epoch,
                    rec.txn.epoch,
                    crate::keys::pretty(key)
                )));
            }
            if rec.txn.epoch == txn.epoch {
                if txn.write_ts < rec.txn.write_ts {
                    return Err(Error::InvalidArgument(format!(
                        "commit timestamp {} of txn {:?} is below its intent's {} on {}",
                        txn.write_ts,
                        txn.id,
                        rec.txn.write_ts,
                        crate::keys::pretty(key)
                    )));
                }
                // The value is the transaction's last write that was not rolled back
                // to a savepoint; if every write was, the key was never written.
                let version = match rec.value_at_seq(u32::MAX, &txn.ignored) {
                    Some(Some(v)) => Some(Version::Value(v.to_vec())),
                    Some(None) => Some(Version::Tombstone),
                    None => None,
                };
                if let Some(version) = version {
                    let version_raw = version_key(key, txn.write_ts);
                    let stored = encode_version(&version_raw, &version);
                    rw.put(Space::Data, version_raw, stored);
                }
            }
            // An intent of an earlier epoch was not rewritten by the committed epoch:
            // it is not part of the transaction's outcome.
            rw.delete(Space::Data, raw);
        }
    }
    Ok(true)
}

/// Resolves `txn`'s intents in `[start, end)`, at most `max_keys` of them (0: no limit).
/// Returns how many were resolved and, if the limit stopped it, the span left to do.
pub fn resolve_intent_range(
    rw: &mut dyn ReadWriter,
    start: &[u8],
    end: &[u8],
    txn: &TxnMeta,
    status: ResolveStatus,
    max_keys: usize,
) -> Result<(usize, Option<Span>)> {
    let mut keys = Vec::new();
    let mut resume = None;
    {
        let lower = meta_key(start);
        let upper = meta_key(end);
        let mut it = rw.iter(Space::Data, &lower, Some(&upper))?;
        it.seek_to_first()?;
        while let Some((raw, stored)) = it.current() {
            let decoded = key::decode(raw)?;
            if decoded.ts.is_none()
                && let Meta::Intent(rec) = decode_meta(&decoded.user_key, raw, stored)?
                && rec.txn.id == txn.id
            {
                if max_keys > 0 && keys.len() == max_keys {
                    resume = Some(Span::new(decoded.user_key, end));
                    break;
                }
                keys.push(decoded.user_key.clone());
            }
            it.seek(&after_user_key(&decoded.user_key))?;
        }
    }
    let mut resolved = 0;
    for k in keys {
        if resolve_intent(rw, &k, txn, status)? {
            resolved += 1;
        }
    }
    Ok((resolved, resume))
}

/// What garbage collection removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcStats {
    pub versions_removed: usize,
    pub bytes_removed: usize,
}

/// Removes the versions of keys in `[start, end)` that no read at or above `threshold`
/// can see: all versions older than the newest one at or below `threshold`, and that one
/// too if it is a tombstone. Intents and newer versions are never touched.
pub fn gc_range(
    rw: &mut dyn ReadWriter,
    start: &[u8],
    end: &[u8],
    threshold: Timestamp,
) -> Result<GcStats> {
    let mut doomed = Vec::new();
    {
        let mut it = rw.iter(Space::Data, &meta_key(start), Some(&meta_key(end)))?;
        it.seek_to_first()?;
        // The user key whose versions we are in, and whether its newest version at or
        // below the threshold has been seen (everything after it goes).
        let mut current: Option<(Vec<u8>, bool)> = None;
        while let Some((raw, stored)) = it.current() {
            let decoded = key::decode(raw)?;
            if current.as_ref().is_none_or(|(k, _)| *k != decoded.user_key) {
                current = Some((decoded.user_key.clone(), false));
            }
            if let (Some(ts), Some((user_key, seen_visible))) = (decoded.ts, current.as_mut())
                && ts <= threshold
            {
                if *seen_visible {
                    doomed.push((raw.to_vec(), stored.len()));
                } else {
                    *seen_visible = true;
                    if decode_version(user_key, raw, stored)? == Version::Tombstone {
                        doomed.push((raw.to_vec(), stored.len()));
                    }
                }
            }
            it.next()?;
        }
    }
    let mut stats = GcStats::default();
    for (raw, len) in doomed {
        stats.versions_removed += 1;
        stats.bytes_removed += raw.len() + len;
        rw.delete(Space::Data, raw);
    }
    Ok(stats)
}

/// [`gc_range`] for one key.
pub fn gc(rw: &mut dyn ReadWriter, key: &[u8], threshold: Timestamp) -> Result<GcStats> {
    gc_range(rw, key, &crate::keys::next_key(key), threshold)
}
