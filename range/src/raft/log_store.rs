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
//! sit in `pending`, so that they are readable as soon as `append` returns, as openraft
//! requires. Every other write (vote, truncation, purge) also goes through the writer,
//! so writes reach the disk in the order openraft issued them.
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
    /// Entries handed to the writer but not yet confirmed written, by index.
    /// Shared with the writer's completions, which must not hold the rest of `Inner`
    /// (the writer itself among it): the writer thread would then drop its own last
    /// handle, and could outlive everything else, holding the engine open.
    pending: Arc<Mutex<BTreeMap<u64, Entry>>>,
}

/// A range's log: a cheap handle, cloned for each of openraft's readers.
#[derive(Clone)]
pub struct LogStore {
    inner: Arc<Inner>,
}

impl LogStore {
    pub fn new(range_id: RangeId, engine: Arc<dyn Engine>, writer: Arc<LogWriter>) -> Self {
        LogStore {
            inner: Arc::new(Inner {
                range_id,
                engine,
                writer,
                pending: Arc::new(Mutex::new(BTreeMap::new())),
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

    /// The last entry on disk (not counting pending ones).
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
            // Hold the pending set while reading the disk: an entry leaves the pending set
            // only after it is written, so with the lock held every entry is in one or
            // the other. (Reading them one after the other could miss an entry written
            // and dropped from the pending set in between: a hole.)
            let pending = self.inner.pending.lock();
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
            // Pending entries are newer than whatever the disk holds at their index.
            for (i, e) in pending.range(start..end.unwrap_or(u64::MAX)) {
                found.insert(*i, e.clone());
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
        let pending_last = self
            .inner
            .pending
            .lock()
            .values()
            .next_back()
            .map(|e| e.log_id);
        let last = pending_last.or(self.last_stored()?).or(last_purged);
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
            let mut pending = self.inner.pending.lock();
            for e in entries {
                let key = keys::raft_log_key(range_id, e.log_id.index);
                batch.put(Space::Raft, key.clone(), encode(&key, &e)?);
                written.push(e.log_id);
                pending.insert(e.log_id.index, e);
            }
        }
        let pending = self.inner.pending.clone();
        self.inner.writer.submit(
            batch,
            Box::new(move |res| {
                if res.is_ok() {
                    // Drop what is now on disk, unless a later append replaced it.
                    let mut pending = pending.lock();
                    for id in written {
                        if pending.get(&id.index).is_some_and(|e| e.log_id == id) {
                            pending.remove(&id.index);
                        }
                    }
                }
                callback.io_completed(res.map_err(storage));
            }),
        );
        Ok(())
    }

    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let range_id = self.range_id();
        let from = last.map(|l| l.index + 1).unwrap_or(0);
        self.inner.pending.lock().split_off(&from);
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
        {
            let mut pending = self.inner.pending.lock();
            let keep = pending.split_off(&(upto.index + 1));
            *pending = keep;
        }
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

    /// Appends race with the group-commit writer moving entries from the pending set to
    /// disk; a reader must always see a contiguous log.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readers_never_see_a_hole_while_appends_are_flushed() {
        let engine: Arc<dyn Engine> = Arc::new(Memory::new());
        let writer = Arc::new(LogWriter::start(engine.clone()).unwrap());
        let mut log = LogStore::new(RangeId(7), engine, writer);
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
}
