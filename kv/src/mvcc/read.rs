//! Reads at a timestamp: point gets and span scans, both directions.

use super::key::{self, after_user_key, decode_version_suffix, meta_key};
use super::value::{Meta, decode_meta, decode_version};
use super::{Intent, TxnMeta};
use crate::error::{Error, Result};
use crate::hlc::Timestamp;
use crate::keys::{Span, next_key};
use crate::storage::{EngineIterator, Reader, Space};

/// How to read: at which timestamp, as which transaction, with which uncertainty.
#[derive(Clone, Copy, Debug)]
pub struct ReadOptions<'a> {
    /// Versions at or below this timestamp are visible.
    pub ts: Timestamp,
    /// The reading transaction, whose own intents are visible to it (up to its sequence
    /// number, in its current epoch).
    pub txn: Option<&'a TxnMeta>,
    /// Versions in (`ts`, `uncertainty_limit`] make the read fail with
    /// [`Error::ReadWithinUncertainty`]. A limit at or below `ts` means no uncertainty.
    pub uncertainty_limit: Timestamp,
}

impl<'a> ReadOptions<'a> {
    /// A non-transactional read at `ts` with no uncertainty.
    pub fn at(ts: Timestamp) -> Self {
        ReadOptions {
            ts,
            txn: None,
            uncertainty_limit: Timestamp::ZERO,
        }
    }

    pub fn with_txn(mut self, txn: &'a TxnMeta) -> Self {
        self.txn = Some(txn);
        self
    }

    pub fn with_uncertainty_limit(mut self, limit: Timestamp) -> Self {
        self.uncertainty_limit = limit;
        self
    }

    /// The highest timestamp whose versions matter to this read.
    fn horizon(&self) -> Timestamp {
        self.ts.max(self.uncertainty_limit)
    }
}

/// What a scan returned, and where to go on if it stopped at its limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Keys and values in scan order.
    pub kvs: Vec<(Vec<u8>, Vec<u8>)>,
    /// The part of the span not yet scanned, `[start, end)`, if the limit stopped the
    /// scan before the end of its span.
    pub resume_span: Option<Span>,
}

/// The outcome of reading one user key.
enum KeyRead {
    Value(Option<Vec<u8>>),
    Conflict(Intent),
}

/// The value of `key` as of `opts`, or `None` if it has none (never written, deleted).
/// Fails with [`Error::WriteIntent`] on another transaction's intent that the read
/// cannot ignore.
pub fn get(reader: &dyn Reader, key: &[u8], opts: ReadOptions<'_>) -> Result<Option<Vec<u8>>> {
    let lower = meta_key(key);
    let upper = after_user_key(key);
    let mut it = reader.iter(Space::Data, &lower, Some(&upper))?;
    it.seek_to_first()?;
    match read_key(&mut *it, key, &lower, &opts)? {
        KeyRead::Value(v) => Ok(v),
        KeyRead::Conflict(intent) => Err(Error::WriteIntent {
            intents: vec![intent],
        }),
    }
}

/// The keys in `[start, end)` that have values as of `opts`, in key order (descending if
/// `reverse`), at most `max_keys` of them (0: no limit). Conflicting intents anywhere in
/// the scanned part are all reported together in one [`Error::WriteIntent`].
pub fn scan(
    reader: &dyn Reader,
    start: &[u8],
    end: &[u8],
    opts: ReadOptions<'_>,
    max_keys: usize,
    reverse: bool,
) -> Result<ScanResult> {
    if start >= end {
        return Ok(ScanResult::default());
    }
    let lower = meta_key(start);
    let upper = meta_key(end);
    let mut it = reader.iter(Space::Data, &lower, Some(&upper))?;
    let mut result = ScanResult::default();
    let mut intents = Vec::new();
    if reverse {
        it.seek_to_last()?;
    } else {
        it.seek_to_first()?;
    }
    while let Some((raw, _)) = it.current() {
        let user_key = key::decode(raw)
            .map_err(|e| Error::Corruption {
                key: raw.to_vec(),
                detail: format!("undecodable MVCC key: {e}"),
            })?
            .user_key;
        if max_keys > 0 && result.kvs.len() == max_keys {
            result.resume_span = Some(if reverse {
                Span::new(start, next_key(&user_key))
            } else {
                Span::new(user_key, end)
            });
            break;
        }
        let group_start = meta_key(&user_key);
        if reverse {
            it.seek(&group_start)?;
        }
        match read_key(&mut *it, &user_key, &group_start, &opts)? {
            KeyRead::Value(Some(v)) => result.kvs.push((user_key, v)),
            KeyRead::Value(None) => {}
            KeyRead::Conflict(intent) => intents.push(intent),
        }
        if reverse {
            // Step back to the last entry of the previous user key.
            it.seek_for_prev(&group_start)?;
            if it
                .current()
                .is_some_and(|(k, _)| k == group_start.as_slice())
            {
                it.prev()?;
            }
        }
    }
    if !intents.is_empty() {
        return Err(Error::WriteIntent { intents });
    }
    Ok(result)
}

/// How many entries to step over one by one before seeking instead.
const STEPS_BEFORE_SEEK: usize = 4;

/// Reads `user_key` from an iterator positioned at the first entry of its group (or
/// past it, if the key has no entries), and leaves the iterator at the first entry
/// after the group.
fn read_key(
    it: &mut dyn EngineIterator,
    user_key: &[u8],
    prefix: &[u8],
    opts: &ReadOptions<'_>,
) -> Result<KeyRead> {
    debug_assert_eq!(prefix, meta_key(user_key));
    let mut outcome = None;

    if let Some((raw, stored)) = it.current()
        && raw == prefix
    {
        match decode_meta(user_key, raw, stored)? {
            Meta::Inline(v) => outcome = Some(KeyRead::Value(Some(v))),
            Meta::Intent(rec) => match opts.txn {
                Some(own) if own.id == rec.txn.id => {
                    if rec.txn.epoch > own.epoch {
                        return Err(Error::InvalidArgument(format!(
                            "txn {:?} reads at epoch {} but its intent is at epoch {}",
                            own.id, own.epoch, rec.txn.epoch
                        )));
                    }
                    // Intents of an earlier epoch are invisible to the restarted txn.
                    if rec.txn.epoch == own.epoch
                        && let Some(v) = rec.value_at_seq(own.seq, &own.ignored)
                    {
                        outcome = Some(KeyRead::Value(v.map(<[u8]>::to_vec)));
                    }
                }
                _ => {
                    if rec.txn.write_ts <= opts.horizon() {
                        outcome = Some(KeyRead::Conflict(Intent {
                            key: user_key.to_vec(),
                            txn: rec.txn,
                        }));
                    }
                }
            },
        }
        it.next()?;
    }

    if outcome.is_none() {
        let horizon = opts.horizon();
        let mut skipped = 0;
        while let Some((raw, stored)) = it.current() {
            let Some(suffix) = raw.strip_prefix(prefix) else {
                break;
            };
            let ts = decode_version_suffix(suffix).map_err(|e| Error::Corruption {
                key: user_key.to_vec(),
                detail: format!("bad version key: {e}"),
            })?;
            if ts > horizon {
                skipped += 1;
                if skipped == STEPS_BEFORE_SEEK {
                    it.seek(&key::version_key(user_key, horizon))?;
                } else {
                    it.next()?;
                }
                continue;
            }
            if ts > opts.ts {
                return Err(Error::ReadWithinUncertainty {
                    key: user_key.to_vec(),
                    read_ts: opts.ts,
                    existing_ts: ts,
                    limit: opts.uncertainty_limit,
                });
            }
            outcome = Some(KeyRead::Value(
                decode_version(user_key, raw, stored)?.into_value(),
            ));
            it.next()?;
            break;
        }
    }

    skip_rest_of_key(it, prefix, user_key)?;
    Ok(outcome.unwrap_or(KeyRead::Value(None)))
}

/// Moves the iterator past the remaining entries of `user_key` (whose meta key is
/// `prefix`): a few steps, then a seek if there are many old versions.
fn skip_rest_of_key(it: &mut dyn EngineIterator, prefix: &[u8], user_key: &[u8]) -> Result<()> {
    for _ in 0..STEPS_BEFORE_SEEK {
        match it.current() {
            Some((raw, _)) if raw.starts_with(prefix) => it.next()?,
            _ => return Ok(()),
        }
    }
    if it.current().is_some_and(|(raw, _)| raw.starts_with(prefix)) {
        it.seek(&after_user_key(user_key))?;
    }
    Ok(())
}

/// Checks that reads of `[start, end)` made at `from` still hold at `to`: fails with
/// [`Error::RefreshFailed`] if a key there has a committed version in (`from`, `to`],
/// or an intent at or below `to` of a transaction other than `own`.
pub fn check_refresh(
    reader: &dyn Reader,
    start: &[u8],
    end: &[u8],
    from: Timestamp,
    to: Timestamp,
    own: Option<crate::ids::TxnId>,
) -> Result<()> {
    if start >= end || to <= from {
        return Ok(());
    }
    let mut it = reader.iter(Space::Data, &meta_key(start), Some(&meta_key(end)))?;
    it.seek_to_first()?;
    while let Some((raw, stored)) = it.current() {
        let decoded = key::decode(raw).map_err(|e| Error::Corruption {
            key: raw.to_vec(),
            detail: format!("undecodable MVCC key: {e}"),
        })?;
        match decoded.ts {
            None => {
                if let Meta::Intent(rec) = decode_meta(&decoded.user_key, raw, stored)?
                    && Some(rec.txn.id) != own
                    && rec.txn.write_ts <= to
                {
                    return Err(Error::RefreshFailed {
                        key: decoded.user_key,
                        existing_ts: rec.txn.write_ts,
                    });
                }
                it.next()?;
            }
            Some(ts) if ts > to => {
                it.seek(&key::version_key(&decoded.user_key, to))?;
            }
            Some(ts) if ts > from => {
                return Err(Error::RefreshFailed {
                    key: decoded.user_key,
                    existing_ts: ts,
                });
            }
            // Versions at or below `from` were there when the transaction read.
            Some(_) => it.seek(&after_user_key(&decoded.user_key))?,
        }
    }
    Ok(())
}

/// The intent on `key`, if there is one (whoever owns it).
pub fn get_intent(reader: &dyn Reader, key: &[u8]) -> Result<Option<super::value::IntentRecord>> {
    let raw = meta_key(key);
    match reader.get(Space::Data, &raw)? {
        Some(stored) => match decode_meta(key, &raw, &stored)? {
            Meta::Intent(rec) => Ok(Some(rec)),
            Meta::Inline(_) => Ok(None),
        },
        None => Ok(None),
    }
}
