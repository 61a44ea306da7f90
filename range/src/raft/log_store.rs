//! A range's Raft log, vote and committed index, in the store's `Space::Raft`.
//!
//! ```text
//!   /Local/RangeID/<r>/rftl/<index>   -> checksummed entry (index big-endian: log order)
//!   /Local/RangeID/<r>/rftv           -> checksummed vote
//!   /Local/RangeID/<r>/rftc           -> checksummed committed log id
//!   /Local/RangeID/<r>/rftt           -> checksummed last purged log id
//! ```
//!
//! Appends are handed to the store's group-commit writer and acknowledged to openraft
//! (its `IOFlushed` callback) once the writer's synced batch holds them. Until then they
//! are held in memory (`recent`), so that they are readable as soon as `append` returns,
//! as openraft requires. Every other write (vote, truncation, purge) also goes through
//! the writer, so writes reach the disk in the order openraft issued them.
//!
//! Written entries stay held too, the newest [`RECENT_BYTES`] of them: the replication
//! streams to followers and the state machine read each entry right after it is
//! appended, and are served from memory instead of the engine.
//!
//! Every stored value carries a checksum of its key and body; a mismatch is an IO error,
//! which openraft treats as fatal: the replica stops rather than apply a damaged entry.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use cairn_kv::RangeId;
use cairn_kv::checksum::{open, seal};
use cairn_kv::keys;
use cairn_kv::storage::{Engine, Space, WriteBatch};
use openraft::storage::{IOFlushed, RaftLogStorage};
use openraft::type_config::alias::{EntryOf, LogIdOf, VoteOf};
use openraft::{LogState, OptionalSend, RaftLogReader};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TypeConfig;
use crate::log_writer::LogWriter;

const TAG: u8 = 0x52; // 'R'

type Entry = EntryOf<TypeConfig>;
type LogId = LogIdOf<TypeConfig>;

fn corrupt(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Encodes `value` with a checksum over `key`.
pub(crate) fn encode<T: Serialize>(key: &[u8], value: &T) -> io::Result<Vec<u8>> {
    let body = postcard::to_stdvec(value)
        .map_err(|e| io::Error::other(format!("encoding raft state: {e}")))?;
    Ok(seal(key, TAG, &body))
}

/// Decodes [`encode`]'s output, checking the checksum.
pub(crate) fn decode<T: DeserializeOwned>(
    range_id: RangeId,
    key: &[u8],
    stored: &[u8],
) -> io::Result<T> {
    let (tag, body) = open(key, key, stored).map_err(|e| {
        corrupt(format!(
            "{range_id}: raft state at {}: {e}",
            keys::pretty(key)
        ))
    })?;
    if tag != TAG {
        return Err(corrupt(format!(
            "{range_id}: raft state at {} has tag {tag}",
            keys::pretty(key)
        )));
    }
    postcard::from_bytes(body).map_err(|e| {
        corrupt(format!(
            "{range_id}: raft state at {}: {e}",
            keys::pretty(key)
        ))
    })
}

fn storage(e: cairn_kv::Error) -> io::Error {
    io::Error::other(e.to_string())
}

struct Inner {
    range_id: RangeId,
    engine: Arc<dyn Engine>,
    writer: Arc<LogWriter>,
    /// The newest entries: every one handed to the writer but not yet written, and
    /// the newest written ones. Shared with the writer's completions, which must not
    /// hold the rest of `Inner` (the writer itself among it): the writer thread would
    /// then drop its own last handle, and could outlive everything else, holding the
    /// engine open.
    recent: Arc<Mutex<Recent>>,
}

/// How many bytes of written entries a range's log keeps in memory.
pub const RECENT_BYTES: usize = 256 * 1024;

/// The newest entries of a log, contiguous by index. Entries not yet written are never
/// dropped but by a truncation or a purge; written ones are dropped oldest first past
/// [`RECENT_BYTES`].
struct Recent {
    entries: BTreeMap<u64, Held>,
    /// Bytes of the written entries held.
    written_bytes: usize,
    /// At most this many bytes of written entries are held.
    budget: usize,
}

struct Held {
    entry: Entry,
    bytes: usize,
    written: bool,
}

impl Recent {
    fn insert(&mut self, entry: Entry, bytes: usize) {
        let held = Held {
            entry,
            bytes,
            written: false,
        };
        if let Some(old) = self.entries.insert(held.entry.log_id.index, held) {
            self.forget(&old);
        }
    }

    /// `written` reached the disk: they may now be dropped to bound the memory held.
    fn written(&mut self, written: &[LogId]) {
        for id in written {
            // Unless a later append replaced it.
            if let Some(h) = self.entries.get_mut(&id.index)
                && h.entry.log_id == *id
                && !h.written
            {
                h.written = true;
                self.written_bytes += h.bytes;
            }
        }
        while self.written_bytes > self.budget {
            let Some(first) = self.entries.first_entry() else {
                break;
            };
            if !first.get().written {
                break;
            }
            let h = first.remove();
            self.forget(&h);
        }
    }

    fn forget(&mut self, h: &Held) {
        if h.written {
            self.written_bytes -= h.bytes;
        }
    }

    /// Drops the entries from index `from` on.
    fn truncate(&mut self, from: u64) {
        for h in self.entries.split_off(&from).into_values() {
            self.forget(&h);
        }
    }

    /// Drops the entries up to index `upto`.
    fn purge(&mut self, upto: u64) {
        let keep = self.entries.split_off(&upto.saturating_add(1));
        for h in std::mem::replace(&mut self.entries, keep).into_values() {
            self.forget(&h);
        }
    }

    /// The entries of `[start, end)` (`None`: to the last), if all of them are held:
    /// nothing at those indexes can be on disk that is not held, since the held entries
    /// are the newest.
    fn serve(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry>> {
        let first = *self.entries.keys().next()?;
        if start < first {
            return None;
        }
        let out: Vec<Entry> = self
            .entries
            .range(start..end.unwrap_or(u64::MAX))
            .map(|(_, h)| h.entry.clone())
            .collect();
        let contiguous = out
            .iter()
            .enumerate()
            .all(|(i, e)| e.log_id.index == start + i as u64);
        contiguous.then_some(out)
    }
}

/// A range's log: a cheap handle, cloned for each of openraft's readers.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl LogStore {
    pub fn new(range_id: RangeId, engine: Arc<dyn Engine>, writer: Arc<LogWriter>) -> Self {
        Self::with_budget(range_id, engine, writer, RECENT_BYTES)
    }

    /// A log that holds at most `budget` bytes of written entries in memory.
    fn with_budget(
        range_id: RangeId,
        engine: Arc<dyn Engine>,
        writer: Arc<LogWriter>,
        budget: usize,
    ) -> Self {
        LogStore {
            inner: Arc::new(Inner {
                range_id,
                engine,
                writer,
                recent: Arc::new(Mutex::new(Recent {
                    entries: BTreeMap::new(),
                    written_bytes: 0,
                    budget,
                })),
            }),
        }
    }

    fn range_id(&self) -> RangeId {
        self.inner.range_id
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> io::Result<Option<T>> {
        match self.inner.engine.get(Space::Raft, key).map_err(storage)? {
            Some(stored) => decode(self.range_id(), key, &stored).map(Some),
            None => Ok(None),
        }
    }

    /// The last entry on disk (not counting held ones).
    fn last_stored(&self) -> io::Result<Option<LogId>> {
        let prefix = keys::raft_log_prefix(self.range_id());
        let end = keys::prefix_end(&prefix);
        let mut it = self
            .inner
            .engine
            .iter(Space::Raft, &prefix, Some(&end))
            .map_err(storage)?;
        it.seek_to_last().map_err(storage)?;
        match it.current() {
            Some((k, v)) => {
                let entry: Entry = decode(self.range_id(), k, v)?;
                Ok(Some(entry.log_id))
            }
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let range_id = self.range_id();
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let lower = keys::raft_log_key(range_id, start);
        let upper = match end {
            Some(e) => keys::raft_log_key(range_id, e),
            None => keys::prefix_end(&keys::raft_log_prefix(range_id)),
        };
        let mut found: BTreeMap<u64, Entry> = BTreeMap::new();
        {
            // Hold the held set while reading the disk: an entry leaves it only after it
            // is written, so with the lock held every entry is in one or the other.
            // (Reading them one after the other could miss an entry written and dropped
            // from the held set in between: a hole.)
            let recent = self.inner.recent.lock();
            if let Some(entries) = recent.serve(start, end) {
                return Ok(entries);
            }
            let mut it = self
                .inner
                .engine
                .iter(Space::Raft, &lower, Some(&upper))
                .map_err(storage)?;
            it.seek_to_first().map_err(storage)?;
            while let Some((k, v)) = it.current() {
                let (_, index) =
                    keys::decode_raft_log_key(k).map_err(|e| corrupt(e.to_string()))?;
                let entry: Entry = decode(range_id, k, v)?;
                if entry.log_id.index != index {
                    return Err(corrupt(format!(
                        "{range_id}: raft log entry at index {index} says it is {}",
                        entry.log_id.index
                    )));
                }
                found.insert(index, entry);
                it.next().map_err(storage)?;
            }
            // Held entries are newer than whatever the disk holds at their index.
            for (i, h) in recent.entries.range(start..end.unwrap_or(u64::MAX)) {
                found.insert(*i, h.entry.clone());
            }
        }
        // Only a contiguous run from the first index found is a valid answer.
        let mut out = Vec::with_capacity(found.len());
        let mut expect = None;
        for (i, e) in found {
            if expect.is_some_and(|x| x != i) {
                return Err(corrupt(format!(
                    "{range_id}: raft log has a hole before index {i}"
                )));
            }
            expect = Some(i + 1);
            out.push(e);
        }
        Ok(out)
    }

    async fn read_vote(&mut self) -> Result<Option<VoteOf<TypeConfig>>, io::Error> {
        self.get(&keys::raft_vote_key(self.range_id()))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged: Option<LogId> =
            self.get(&keys::raft_truncated_state_key(self.range_id()))?;
        let held_last = self
            .inner
            .recent
            .lock()
            .entries
            .values()
            .next_back()
            .map(|h| h.entry.log_id);
        let last = held_last.or(self.last_stored()?).or(last_purged);
        Ok(LogState {
            last_purged_log_id: last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &VoteOf<TypeConfig>) -> Result<(), io::Error> {
        let key = keys::raft_vote_key(self.range_id());
        let mut b = WriteBatch::new();
        b.put(Space::Raft, key.clone(), encode(&key, vote)?);
        self.inner.writer.write(b).await.map_err(storage)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        // Queued behind the appends it refers to, and not synced: openraft lets a store
        // lose it (a restart re-learns it from the leader, and takes the applied index
        // when that is higher), so it costs no fsync of its own.
        let key = keys::raft_committed_key(self.range_id());
        let mut b = WriteBatch::new();
        b.put(Space::Raft, key.clone(), encode(&key, &committed)?);
        self.inner.writer.submit_unsynced(b);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        Ok(self
            .get::<Option<LogId>>(&keys::raft_committed_key(self.range_id()))?
            .flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: IOFlushed<TypeConfig>,
    ) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let range_id = self.range_id();
        let mut batch = WriteBatch::new();
        let mut written = Vec::new();
        {
            let mut recent = self.inner.recent.lock();
            for e in entries {
                let key = keys::raft_log_key(range_id, e.log_id.index);
                let value = encode(&key, &e)?;
                let bytes = value.len();
                batch.put(Space::Raft, key, value);
                written.push(e.log_id);
                recent.insert(e, bytes);
            }
        }
        let recent = self.inner.recent.clone();
        self.inner.writer.submit(
            batch,
            Box::new(move |res| {
                if res.is_ok() {
                    recent.lock().written(&written);
                }
                callback.io_completed(res.map_err(storage));
            }),
        );
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let range_id = self.range_id();
        let from = last.map(|l| l.index + 1).unwrap_or(0);
        self.inner.recent.lock().truncate(from);
        let mut b = WriteBatch::new();
        b.delete_range(
            Space::Raft,
            keys::raft_log_key(range_id, from),
            keys::prefix_end(&keys::raft_log_prefix(range_id)),
        );
        self.inner.writer.write(b).await.map_err(storage)
    }

    async fn purge(&mut self, upto: LogId) -> Result<(), io::Error> {
        let range_id = self.range_id();
        self.inner.recent.lock().purge(upto.index);
        let key = keys::raft_truncated_state_key(range_id);
        let mut b = WriteBatch::new();
        // The purge point first, so the log's state is known even if it is now empty.
        b.put(Space::Raft, key.clone(), encode(&key, &upto)?);
        b.delete_range(
            Space::Raft,
            keys::raft_log_key(range_id, 0),
            keys::raft_log_key(range_id, upto.index + 1),
        );
        self.inner.writer.write(b).await.map_err(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::storage::memory::Memory;
    use openraft::EntryPayload;

    fn entry(index: u64) -> Entry {
        Entry {
            log_id: LogId::new_term_index(1, index),
            payload: EntryPayload::Blank,
        }
    }

    /// Appends race with the group-commit writer marking held entries written and
    /// dropping the oldest (a small budget, so most reads merge disk and memory); a
    /// reader must always see a contiguous log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_never_see_a_hole_while_appends_are_flushed() {
        let engine: Arc<dyn Engine> = Arc::new(Memory::new());
        let writer = Arc::new(LogWriter::start(engine.clone()).unwrap());
        let mut log = LogStore::with_budget(RangeId(7), engine, writer, 512);
        let mut reader = log.clone();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let reads = tokio::spawn(async move {
            let mut n = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let entries = reader.try_get_log_entries(1..).await.expect("no hole");
                for (i, e) in entries.iter().enumerate() {
                    assert_eq!(e.log_id.index, i as u64 + 1);
                }
                n += 1;
                tokio::task::yield_now().await;
            }
            n
        });
        for i in 1..=3000u64 {
            log.append([entry(i)], IOFlushed::noop()).await.unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reads.await.unwrap() > 0);
        let all = log.try_get_log_entries(1..).await.unwrap();
        assert_eq!(all.len(), 3000);
    }

    /// The newest written entries are read from memory; older ones, past the budget,
    /// from the engine; truncations and purges apply to both.
    #[tokio::test]
    async fn the_newest_written_entries_are_read_from_memory() {
        let engine = Arc::new(crate::test_util::Recording::default());
        let writer = Arc::new(LogWriter::start(engine.clone()).unwrap());
        let one = encode(&keys::raft_log_key(RangeId(7), 1), &entry(1))
            .unwrap()
            .len();
        // Room for 10 written entries.
        let mut log = LogStore::with_budget(RangeId(7), engine.clone(), writer.clone(), 10 * one);
        for i in 1..=30 {
            log.append([entry(i)], IOFlushed::noop()).await.unwrap();
        }
        // The writer completes jobs in order: once this is written, so are the appends.
        writer.write(WriteBatch::new()).await.unwrap();
        let iters = || engine.iters.load(std::sync::atomic::Ordering::Relaxed);
        let indexes = |es: Vec<Entry>| es.iter().map(|e| e.log_id.index).collect::<Vec<_>>();

        let before = iters();
        assert_eq!(
            indexes(log.try_get_log_entries(21..=30).await.unwrap()),
            (21..=30).collect::<Vec<_>>()
        );
        assert_eq!(
            indexes(log.try_get_log_entries(25..).await.unwrap()),
            (25..=30).collect::<Vec<_>>()
        );
        assert_eq!(iters(), before, "held entries were read from the engine");

        assert_eq!(
            indexes(log.try_get_log_entries(5..25).await.unwrap()),
            (5..25).collect::<Vec<_>>()
        );
        assert_eq!(iters(), before + 1, "older entries come from the engine");

        // A truncation drops the held entries too; re-appended ones replace them.
        log.truncate_after(Some(LogId::new_term_index(1, 27)))
            .await
            .unwrap();
        let mut replaced = entry(28);
        replaced.log_id = LogId::new_term_index(2, 28);
        log.append([replaced], IOFlushed::noop()).await.unwrap();
        writer.write(WriteBatch::new()).await.unwrap();
        let tail = log.try_get_log_entries(26..).await.unwrap();
        assert_eq!(indexes(tail.clone()), vec![26, 27, 28]);
        assert_eq!(tail[2].log_id, LogId::new_term_index(2, 28));

        // A purge drops them as well: nothing at or below it is served.
        log.purge(LogId::new_term_index(1, 26)).await.unwrap();
        assert_eq!(
            indexes(log.try_get_log_entries(20..).await.unwrap()),
            vec![27, 28]
        );
        let state = log.get_log_state().await.unwrap();
        assert_eq!(state.last_log_id, Some(LogId::new_term_index(2, 28)));
    }
}
