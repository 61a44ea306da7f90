//! The timestamp cache: the leaseholder's memory of the latest read of every key.
//!
//! Serializability needs one rule from writers: a transaction must not write a key at or
//! below a timestamp at which some *other* reader already read it, or that reader's
//! snapshot would change under it. MVCC keeps the versions a write leaves, but nothing
//! on disk records reads, so the leaseholder remembers them here: after a read of a
//! span at `ts`, every later write to a key of that span by someone else is pushed to a
//! timestamp above `ts` (the write's transaction must then refresh or restart).
//!
//! The cache maps disjoint intervals of the key space to the highest read on them, a
//! *read mark* `(ts, txn)`. Keys outside every interval answer the *low-water mark*,
//! a floor below which nothing is remembered:
//!
//! ```text
//!   ts
//!   8 |              [c, f)@8 t2
//!   5 |  [a,    c)@5 t1        [f, h)@5 t1
//!   3 |- - - - - - - - - - - - - - - - - - - - - low water 3: every other key
//!     +---a---b---c---d---e---f---g---h---i---> key
//!
//!  add [b, g)@6 t3 splits [a, c) and [f, h) at b and g, keeps the higher mark in each piece:
//!
//!   8 |              [c, f)@8 t2
//!   6 |      [b, c)@6 t3       [f, g)@6 t3
//!   5 |  [a, b)@5 t1                   [g, h)@5 t1
//! ```
//!
//! A query over a span answers the highest mark among the intervals it touches, or the
//! low water. The mark names the reader only if it is the single transaction that read
//! at that timestamp: a writer whose own transaction was the last reader needs no push,
//! but if two transactions (or a transaction and a non-transactional read) tie, or the
//! answer is the low water, nobody can be exempted and the mark carries no transaction.
//!
//! Memory is bounded. When there are more than `max_entries` intervals, the cache
//! forgets the oldest reads by raising the low water to the highest timestamp it
//! forgets. That is the one way anything may be forgotten: answers may only get higher
//! (a spurious push costs a retry), never lower (a lost read costs serializability).
//!
//! HAZARD: the cache lives only in memory on the leaseholder. A replica that acquires
//! a lease must start its cache with a low water at or above every timestamp the
//! previous leaseholder could have served a read at (in practice the new lease's start),
//! and a range created by a split must start the new half's cache the same way. If not,
//! a write after a lease transfer can land under a read the old leaseholder served.
//!
//! HAZARD: forgetting a transaction on eviction, or answering the low water, makes the
//! cache answer "no single reader" where there was one, so a transaction that read a
//! key and then writes it can be pushed by its own read. That is safe but shows up as
//! retries when `max_entries` is too small for the read working set.

use std::collections::BTreeMap;
use std::ops::Bound;

use cairn_kv::keys::Span;
use cairn_kv::{Timestamp, TxnId};

/// The highest read of some keys: when, and by which transaction if exactly one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ReadMark {
    ts: Timestamp,
    /// The one transaction that read at `ts`; `None` if the read was non-transactional,
    /// several readers tie at `ts`, or `ts` is the low water.
    txn: Option<TxnId>,
}

impl ReadMark {
    /// The mark of the low water: a floor that names no reader.
    fn floor(ts: Timestamp) -> Self {
        ReadMark { ts, txn: None }
    }

    /// The mark of both reads: the later one, or at a tie, the common reader if they
    /// share one. Associative, commutative and idempotent, so the mark of a set of reads
    /// does not depend on the order they were added in.
    fn join(self, other: ReadMark) -> ReadMark {
        match self.ts.cmp(&other.ts) {
            std::cmp::Ordering::Greater => self,
            std::cmp::Ordering::Less => other,
            std::cmp::Ordering::Equal => ReadMark {
                ts: self.ts,
                txn: if self.txn == other.txn {
                    self.txn
                } else {
                    None
                },
            },
        }
    }
}

/// One interval of the cache, stored under its start key.
#[derive(Clone, Debug)]
struct Interval {
    /// The end of the interval, exclusive.
    end: Vec<u8>,
    mark: ReadMark,
}

/// The timestamp cache of one range's leaseholder (see the module docs).
///
/// Invariants:
///
/// - Intervals are non-empty (`start < end`) and pairwise disjoint.
/// - Two adjacent intervals (one's end is the next one's start) carry different marks;
///   the representation of a given answer per key is therefore unique.
/// - Every interval's timestamp is above the low water: a mark at or below it would
///   answer the same as the floor does, so it is dropped.
/// - The low water never decreases.
/// - After an `add`, there are at most `max_entries` intervals.
/// - For every key, the answer is the join of the low water and every read added on
///   that key since the last time the low water passed its timestamp.
#[derive(Clone, Debug)]
pub struct TimestampCache {
    /// Disjoint intervals keyed by start key.
    intervals: BTreeMap<Vec<u8>, Interval>,
    /// The floor of every answer; keys in no interval answer exactly this.
    low_water: Timestamp,
    /// The most intervals kept after an `add`; eviction brings the count down to half.
    max_entries: usize,
}

impl TimestampCache {
    /// An empty cache whose every query answers at least `low_water` (with no txn).
    ///
    /// It holds at most `max_entries` intervals; with 0, it remembers nothing but the
    /// low water, raising it to every read added.
    pub fn new(low_water: Timestamp, max_entries: usize) -> Self {
        TimestampCache {
            intervals: BTreeMap::new(),
            low_water,
            max_entries,
        }
    }

    /// Records that `txn` (None: a non-transactional read) read `span` at `ts`.
    ///
    /// An empty span, or a read at or below the low water, changes nothing. Costs
    /// O((k + 1) log n) for the k intervals the span overlaps, plus an eviction now and
    /// then (amortised over the intervals it removes).
    pub fn add(&mut self, span: &Span, ts: Timestamp, txn: Option<TxnId>) {
        if span.is_empty() || ts <= self.low_water {
            return;
        }
        let new = ReadMark { ts, txn };
        let (start, end) = (span.start.as_slice(), span.end.as_slice());

        // Take out every interval that overlaps the span or touches it from either
        // side, so the pieces rebuilt below can be coalesced with their neighbours.
        let mut keys: Vec<Vec<u8>> = Vec::new();
        if let Some((k, iv)) = self
            .intervals
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
            .next_back()
            && iv.end.as_slice() >= start
        {
            keys.push(k.clone());
        }
        keys.extend(
            self.intervals
                .range::<[u8], _>((Bound::Included(start), Bound::Included(end)))
                .map(|(k, _)| k.clone()),
        );
        let old: Vec<(Vec<u8>, Interval)> = keys
            .into_iter()
            .filter_map(|k| self.intervals.remove(&k).map(|iv| (k, iv)))
            .collect();

        // Rebuild the window left to right: the parts of old intervals outside the span
        // keep their marks, the overlaps take the join, the gaps take the new mark.
        let mut pieces = Pieces::default();
        let mut cursor: &[u8] = start; // the span is rebuilt up to here
        for (os, iv) in &old {
            let (os, oe) = (os.as_slice(), iv.end.as_slice());
            if os < start {
                pieces.push(os, oe.min(start), iv.mark);
            }
            let (is, ie) = (os.max(start), oe.min(end));
            if cursor < is.min(end) {
                pieces.push(cursor, is.min(end), new);
                cursor = is.min(end);
            }
            if is < ie {
                pieces.push(is, ie, iv.mark.join(new));
                cursor = ie;
            }
            if oe > end {
                pieces.push(os.max(end), oe, iv.mark);
            }
        }
        if cursor < end {
            pieces.push(cursor, end, new);
        }
        for (s, iv) in pieces.0 {
            debug_assert!(s < iv.end && iv.mark.ts > self.low_water);
            self.intervals.insert(s, iv);
        }

        if self.intervals.len() > self.max_entries {
            self.evict();
        }
    }

    /// The highest read timestamp over any key of `span`, and the reader's txn if exactly
    /// one transaction read at that timestamp (None if non-transactional, several
    /// readers, or the low-water mark).
    ///
    /// Costs O((k + 1) log n) for the k intervals the span overlaps.
    pub fn max_read(&self, span: &Span) -> (Timestamp, Option<TxnId>) {
        let mut mark = ReadMark::floor(self.low_water);
        if !span.is_empty() {
            let (start, end) = (span.start.as_slice(), span.end.as_slice());
            if let Some((_, iv)) = self
                .intervals
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
                .next_back()
                && iv.end.as_slice() > start
            {
                mark = mark.join(iv.mark);
            }
            for iv in self
                .intervals
                .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                .map(|(_, iv)| iv)
            {
                mark = mark.join(iv.mark);
            }
        }
        (mark.ts, mark.txn)
    }

    /// Raises the floor (never lowers it): every query answers at least `ts` afterwards.
    ///
    /// Intervals at or below the new floor are dropped: they would answer no more than
    /// the floor does.
    pub fn set_low_water(&mut self, ts: Timestamp) {
        if ts <= self.low_water {
            return;
        }
        self.low_water = ts;
        self.intervals.retain(|_, iv| iv.mark.ts > ts);
    }

    /// The reads recorded above `ts` (as spans with their timestamps), or `None` if there
    /// are more than `limit` of them.
    pub fn reads_above(&self, ts: Timestamp, limit: usize) -> Option<Vec<(Span, Timestamp)>> {
        let mut out = Vec::new();
        for (start, iv) in &self.intervals {
            if iv.mark.ts > ts {
                if out.len() == limit {
                    return None;
                }
                out.push((Span::new(start.clone(), iv.end.clone()), iv.mark.ts));
            }
        }
        Some(out)
    }

    /// The floor every query answers at least.
    pub fn low_water(&self) -> Timestamp {
        self.low_water
    }

    /// The number of intervals held.
    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    /// Whether no interval is held (every query answers the low water).
    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    /// Forgets the oldest reads until at most `max_entries / 2` intervals remain, by
    /// raising the low water to the highest timestamp forgotten.
    ///
    /// The new floor is the timestamp of the `(max_entries / 2 + 1)`-th newest interval:
    /// only intervals strictly above it stay, and there are at most `max_entries / 2`
    /// of those (fewer when several share the floor's timestamp). Going down to half,
    /// not to `max_entries`, makes each eviction remove at least half the intervals,
    /// so its O(n) cost is paid for by the adds that created them.
    fn evict(&mut self) {
        let keep = self.max_entries / 2;
        let mut stamps: Vec<Timestamp> = self.intervals.values().map(|iv| iv.mark.ts).collect();
        if stamps.len() <= keep {
            return;
        }
        // Newest first: the element at `keep` is the newest one that goes.
        let (_, floor, _) = stamps.select_nth_unstable_by(keep, |a, b| b.cmp(a));
        let floor = *floor;
        self.set_low_water(floor);
    }

    /// Checks every invariant listed on the type; tests call it after each change.
    #[cfg(test)]
    fn check_invariants(&self) -> Result<(), String> {
        if self.intervals.len() > self.max_entries {
            return Err(format!(
                "{} intervals, more than max_entries {}",
                self.intervals.len(),
                self.max_entries
            ));
        }
        let mut prev: Option<(&[u8], &Interval)> = None;
        for (start, iv) in &self.intervals {
            if start.as_slice() >= iv.end.as_slice() {
                return Err(format!("empty interval {start:?}..{:?}", iv.end));
            }
            if iv.mark.ts <= self.low_water {
                return Err(format!(
                    "interval {start:?} at {:?} not above low water {:?}",
                    iv.mark.ts, self.low_water
                ));
            }
            if let Some((pstart, piv)) = prev {
                if piv.end.as_slice() > start.as_slice() {
                    return Err(format!("intervals at {pstart:?} and {start:?} overlap"));
                }
                if piv.end.as_slice() == start.as_slice() && piv.mark == iv.mark {
                    return Err(format!(
                        "adjacent intervals at {pstart:?} and {start:?} share a mark"
                    ));
                }
            }
            prev = Some((start, iv));
        }
        Ok(())
    }
}

/// Intervals built in key order, merging a piece into the previous one when it continues
/// it with the same mark.
#[derive(Default)]
struct Pieces(Vec<(Vec<u8>, Interval)>);

impl Pieces {
    fn push(&mut self, start: &[u8], end: &[u8], mark: ReadMark) {
        if let Some((_, last)) = self.0.last_mut()
            && last.end.as_slice() == start
            && last.mark == mark
        {
            last.end = end.to_vec();
            return;
        }
        self.0.push((
            start.to_vec(),
            Interval {
                end: end.to_vec(),
                mark,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(wall: u64) -> Timestamp {
        Timestamp::new(wall, 0)
    }

    fn txn(n: u8) -> TxnId {
        TxnId::from_bytes([n; 16])
    }

    fn span(start: &str, end: &str) -> Span {
        Span::new(start.as_bytes(), end.as_bytes())
    }

    /// The span holding only `key`.
    fn point(key: &str) -> Span {
        let mut end = key.as_bytes().to_vec();
        end.push(0);
        Span::new(key.as_bytes(), end)
    }

    fn cache() -> TimestampCache {
        TimestampCache::new(ts(1), 1000)
    }

    #[test]
    fn reads_above_a_time_are_listed_up_to_a_limit() {
        let mut c = cache();
        add(&mut c, span("a", "c"), 5, None);
        add(&mut c, span("b", "d"), 9, Some(txn(1)));
        add(&mut c, point("x"), 3, None);
        assert_eq!(
            c.reads_above(ts(4), 10),
            Some(vec![(span("a", "b"), ts(5)), (span("b", "d"), ts(9))])
        );
        assert_eq!(
            c.reads_above(ts(5), 10),
            Some(vec![(span("b", "d"), ts(9))])
        );
        assert_eq!(c.reads_above(ts(9), 10), Some(vec![]));
        assert_eq!(c.reads_above(ts(2), 2), None);
    }

    fn add(c: &mut TimestampCache, sp: Span, t: u64, tx: Option<TxnId>) {
        c.add(&sp, ts(t), tx);
        if let Err(e) = c.check_invariants() {
            panic!("after add {sp} at {t}: {e}\n{c:?}");
        }
    }

    #[test]
    fn empty_cache_answers_low_water() {
        let c = TimestampCache::new(ts(7), 10);
        assert_eq!(c.max_read(&span("a", "z")), (ts(7), None));
        assert_eq!(c.max_read(&span("z", "a")), (ts(7), None));
        assert!(c.is_empty());
    }

    #[test]
    fn single_read() {
        let mut c = cache();
        add(&mut c, span("b", "d"), 5, Some(txn(1)));
        assert_eq!(c.max_read(&point("b")), (ts(5), Some(txn(1))));
        assert_eq!(c.max_read(&point("c")), (ts(5), Some(txn(1))));
        assert_eq!(c.max_read(&point("cz")), (ts(5), Some(txn(1))));
        // The end is exclusive, the start inclusive.
        assert_eq!(c.max_read(&point("d")), (ts(1), None));
        assert_eq!(c.max_read(&point("a")), (ts(1), None));
        assert_eq!(c.max_read(&span("a", "b")), (ts(1), None));
        assert_eq!(c.max_read(&span("a", "b\0")), (ts(5), Some(txn(1))));
        assert_eq!(c.max_read(&span("c", "z")), (ts(5), Some(txn(1))));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn empty_span_is_ignored() {
        let mut c = cache();
        add(&mut c, span("d", "b"), 5, Some(txn(1)));
        add(&mut c, span("c", "c"), 5, Some(txn(1)));
        assert!(c.is_empty());
        add(&mut c, span("a", "z"), 5, Some(txn(1)));
        assert_eq!(c.max_read(&span("c", "c")), (ts(1), None));
    }

    #[test]
    fn overlapping_reads_keep_the_max_per_piece() {
        let mut c = cache();
        add(&mut c, span("a", "c"), 5, Some(txn(1)));
        add(&mut c, span("f", "h"), 5, Some(txn(1)));
        add(&mut c, span("c", "f"), 8, Some(txn(2)));
        add(&mut c, span("b", "g"), 6, Some(txn(3)));
        assert_eq!(c.max_read(&point("a")), (ts(5), Some(txn(1))));
        assert_eq!(c.max_read(&point("b")), (ts(6), Some(txn(3))));
        assert_eq!(c.max_read(&point("d")), (ts(8), Some(txn(2))));
        assert_eq!(c.max_read(&point("f")), (ts(6), Some(txn(3))));
        assert_eq!(c.max_read(&point("g")), (ts(5), Some(txn(1))));
        assert_eq!(c.max_read(&point("h")), (ts(1), None));
        assert_eq!(c.max_read(&span("a", "c")), (ts(6), Some(txn(3))));
        assert_eq!(c.max_read(&span("a", "z")), (ts(8), Some(txn(2))));
        // [a,b)5 [b,c)6 [c,f)8 [f,g)6 [g,h)5
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn lower_read_inside_a_higher_one_changes_nothing() {
        let mut c = cache();
        add(&mut c, span("a", "z"), 9, Some(txn(1)));
        add(&mut c, span("c", "d"), 4, Some(txn(2)));
        assert_eq!(c.len(), 1);
        assert_eq!(c.max_read(&point("c")), (ts(9), Some(txn(1))));
    }

    #[test]
    fn higher_read_nested_inside_splits_in_three() {
        let mut c = cache();
        add(&mut c, span("a", "z"), 4, Some(txn(1)));
        add(&mut c, span("c", "d"), 9, Some(txn(2)));
        assert_eq!(c.len(), 3);
        assert_eq!(c.max_read(&point("b")), (ts(4), Some(txn(1))));
        assert_eq!(c.max_read(&point("c")), (ts(9), Some(txn(2))));
        assert_eq!(c.max_read(&point("d")), (ts(4), Some(txn(1))));
        // And a read covering it all again merges it back into one.
        add(&mut c, span("a", "z"), 10, Some(txn(1)));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn adjacent_reads_with_the_same_mark_coalesce() {
        let mut c = cache();
        add(&mut c, span("a", "b"), 5, Some(txn(1)));
        add(&mut c, span("c", "d"), 5, Some(txn(1)));
        assert_eq!(c.len(), 2);
        add(&mut c, span("b", "c"), 5, Some(txn(1)));
        assert_eq!(c.len(), 1);
        add(&mut c, span("d", "e"), 5, Some(txn(2)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn tie_between_different_readers_names_none() {
        let mut c = cache();
        add(&mut c, span("a", "c"), 5, Some(txn(1)));
        add(&mut c, span("b", "d"), 5, Some(txn(2)));
        assert_eq!(c.max_read(&point("a")), (ts(5), Some(txn(1))));
        assert_eq!(c.max_read(&point("b")), (ts(5), None));
        assert_eq!(c.max_read(&point("c")), (ts(5), Some(txn(2))));
        // Disjoint keys read by different txns at the same time: the span has no single reader.
        assert_eq!(c.max_read(&span("a", "b")), (ts(5), Some(txn(1))));
        add(&mut c, span("x", "y"), 5, Some(txn(3)));
        assert_eq!(c.max_read(&span("c", "z")), (ts(5), None));
    }

    #[test]
    fn tie_with_a_non_transactional_read_names_none() {
        let mut c = cache();
        add(&mut c, span("a", "c"), 5, Some(txn(1)));
        add(&mut c, span("a", "b"), 5, None);
        assert_eq!(c.max_read(&point("a")), (ts(5), None));
        assert_eq!(c.max_read(&point("b")), (ts(5), Some(txn(1))));
    }

    #[test]
    fn same_reader_twice_is_still_named() {
        let mut c = cache();
        add(&mut c, span("a", "c"), 5, Some(txn(1)));
        add(&mut c, span("b", "d"), 5, Some(txn(1)));
        assert_eq!(c.max_read(&span("a", "z")), (ts(5), Some(txn(1))));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn a_later_read_replaces_a_tie() {
        let mut c = cache();
        add(&mut c, span("a", "c"), 5, Some(txn(1)));
        add(&mut c, span("a", "c"), 5, Some(txn(2)));
        assert_eq!(c.max_read(&point("a")), (ts(5), None));
        add(&mut c, span("a", "b"), 6, Some(txn(2)));
        assert_eq!(c.max_read(&point("a")), (ts(6), Some(txn(2))));
    }

    #[test]
    fn low_water_is_a_floor_without_reader() {
        let mut c = TimestampCache::new(ts(5), 10);
        // At or below the floor: nothing to remember.
        add(&mut c, span("a", "c"), 5, Some(txn(1)));
        add(&mut c, span("a", "c"), 3, Some(txn(1)));
        assert!(c.is_empty());
        assert_eq!(c.max_read(&point("a")), (ts(5), None));

        add(&mut c, span("a", "c"), 7, Some(txn(1)));
        add(&mut c, span("c", "e"), 9, Some(txn(2)));
        assert_eq!(c.max_read(&point("a")), (ts(7), Some(txn(1))));
        // Raising the floor to a read's timestamp forgets who read.
        c.set_low_water(ts(7));
        assert_eq!(c.check_invariants(), Ok(()));
        assert_eq!(c.max_read(&point("a")), (ts(7), None));
        assert_eq!(c.max_read(&point("c")), (ts(9), Some(txn(2))));
        assert_eq!(c.len(), 1);
        // Never lowered.
        c.set_low_water(ts(2));
        assert_eq!(c.low_water(), ts(7));
        assert_eq!(c.max_read(&point("z")), (ts(7), None));
        c.set_low_water(ts(20));
        assert!(c.is_empty());
        assert_eq!(c.max_read(&point("c")), (ts(20), None));
    }

    #[test]
    fn eviction_raises_the_floor_to_the_newest_read_forgotten() {
        let mut c = TimestampCache::new(ts(1), 4);
        // Disjoint reads at 10, 20, 30, 40: four intervals, at the limit.
        for (i, k) in ["a", "c", "e", "g"].into_iter().enumerate() {
            add(&mut c, point(k), 10 * (i as u64 + 1), Some(txn(1)));
        }
        assert_eq!(c.len(), 4);
        assert_eq!(c.low_water(), ts(1));
        // A fifth evicts down to two intervals: 40 and 50 stay, the floor rises to 30.
        add(&mut c, point("i"), 50, Some(txn(2)));
        assert_eq!(c.len(), 2);
        assert_eq!(c.low_water(), ts(30));
        assert_eq!(c.max_read(&point("a")), (ts(30), None));
        assert_eq!(c.max_read(&point("e")), (ts(30), None));
        assert_eq!(c.max_read(&point("g")), (ts(40), Some(txn(1))));
        assert_eq!(c.max_read(&point("i")), (ts(50), Some(txn(2))));
        assert_eq!(c.max_read(&point("b")), (ts(30), None));
    }

    #[test]
    fn eviction_with_ties_at_the_floor_keeps_fewer() {
        let mut c = TimestampCache::new(ts(1), 4);
        for k in ["a", "c", "e", "g", "i"] {
            add(&mut c, point(k), 10, Some(txn(1)));
        }
        // All five share the timestamp: the floor takes them all.
        assert!(c.is_empty());
        assert_eq!(c.low_water(), ts(10));
        assert_eq!(c.max_read(&point("a")), (ts(10), None));
    }

    #[test]
    fn zero_max_entries_keeps_only_the_floor() {
        let mut c = TimestampCache::new(ts(1), 0);
        add(&mut c, span("a", "b"), 5, Some(txn(1)));
        assert!(c.is_empty());
        assert_eq!(c.max_read(&point("z")), (ts(5), None));
        add(&mut c, span("a", "b"), 3, Some(txn(1)));
        assert_eq!(c.low_water(), ts(5));
    }

    // The model: every read ever added, and the floors set by hand.

    #[derive(Clone, Debug)]
    enum Op {
        Add(Span, u64, Option<u8>),
        SetLowWater(u64),
    }

    /// Keys of 0..=3 bytes over {a, b, c}: few enough that spans overlap, share
    /// boundaries and nest often.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'c')], 0..=3)
    }

    /// Mostly non-empty spans, some empty or reversed.
    fn any_span() -> impl Strategy<Value = Span> {
        (key(), key(), 0..8u8).prop_map(|(a, b, r)| match r {
            0 => Span::new(b.clone(), a),
            _ if a <= b => Span::new(a, b),
            _ => Span::new(b, a),
        })
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            10 => (any_span(), 1..8u64, prop::option::of(0..3u8))
                .prop_map(|(s, t, x)| Op::Add(s, t, x)),
            1 => (1..8u64).prop_map(Op::SetLowWater),
        ]
    }

    /// The brute-force answer: the join of the floor and every read sharing a key with
    /// `query`. Two spans share a key exactly when each starts before the other ends.
    fn model_max(reads: &[(Span, ReadMark)], floor: Timestamp, query: &Span) -> ReadMark {
        let mut mark = ReadMark::floor(floor);
        if query.is_empty() {
            return mark;
        }
        for (s, m) in reads {
            if !s.is_empty() && s.start < query.end && query.start < s.end {
                mark = mark.join(*m);
            }
        }
        mark
    }

    /// Runs `ops` against a cache and the model; checks invariants after each op and
    /// every query in `queries` after each op. Returns whether the cache ever evicted.
    fn run(
        max_entries: usize,
        initial: u64,
        ops: &[Op],
        queries: &[Span],
    ) -> Result<bool, TestCaseError> {
        let mut c = TimestampCache::new(ts(initial), max_entries);
        let mut reads: Vec<(Span, ReadMark)> = Vec::new();
        let mut floor = ts(initial); // the model's floor: only what was set by hand
        let mut evicted = false;
        for op in ops {
            let before = c.low_water();
            match op {
                Op::Add(s, t, x) => {
                    let mark = ReadMark {
                        ts: ts(*t),
                        txn: x.map(txn),
                    };
                    c.add(s, mark.ts, mark.txn);
                    reads.push((s.clone(), mark));
                    if c.low_water() != before {
                        evicted = true;
                    }
                }
                Op::SetLowWater(t) => {
                    c.set_low_water(ts(*t));
                    floor = floor.max(ts(*t));
                }
            }
            c.check_invariants().map_err(TestCaseError::fail)?;
            prop_assert!(c.low_water() >= before, "low water went down");
            prop_assert!(c.low_water() >= floor);
            if !evicted {
                prop_assert_eq!(c.low_water(), floor);
            }
            for q in queries.iter().chain(reads.iter().map(|(s, _)| s)) {
                let model = model_max(&reads, floor, q);
                let (got_ts, got_txn) = c.max_read(q);
                let got = ReadMark {
                    ts: got_ts,
                    txn: got_txn,
                };
                // Never below the model: the answer is the model raised to the floor,
                // exactly (eviction only ever adds the floor to every key).
                prop_assert!(
                    got.ts >= model.ts,
                    "{q}: cache {got:?} below model {model:?}"
                );
                if got.ts == model.ts {
                    prop_assert!(
                        got.txn.is_none() || got.txn == model.txn,
                        "{q}: cache names {got:?}, model {model:?}"
                    );
                }
                prop_assert_eq!(got, model.join(ReadMark::floor(c.low_water())), "{}", q);
                if !evicted {
                    prop_assert_eq!(got, model, "{}", q);
                }
            }
        }
        Ok(evicted)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Without eviction the cache answers exactly what the model does.
        #[test]
        fn matches_model(
            initial in 0..3u64,
            ops in proptest::collection::vec(op(), 0..40),
            queries in proptest::collection::vec(any_span(), 0..10),
        ) {
            let evicted = run(usize::MAX, initial, &ops, &queries)?;
            prop_assert!(!evicted);
        }

        /// With a small bound the cache evicts, and answers the model raised to its
        /// (higher) floor: never lower.
        #[test]
        fn evicting_never_answers_lower(
            max_entries in 0..6usize,
            initial in 0..3u64,
            ops in proptest::collection::vec(op(), 0..40),
            queries in proptest::collection::vec(any_span(), 0..10),
        ) {
            run(max_entries, initial, &ops, &queries)?;
        }
    }
}
