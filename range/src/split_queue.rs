//! The split queue: ranges split when they grow too large or too busy.
//!
//! Every replica keeps a [`RangeLoad`]: an estimate of its data's size and a count of
//! the requests it serves. Once a second the store's [`Store::split_queue_pass`] asks
//! each range it leads for a split key:
//!
//! - **size**: the estimate grows by the bytes of every write the leaseholder proposes
//!   (an overestimate: overwrites and intent resolution count again). When it passes
//!   `max_bytes`, the range's data is measured exactly ([`measure`]); if it really is
//!   over, the range splits at its size midpoint, else the estimate starts again from
//!   the measured size. A replica that has never been measured is measured on its first
//!   pass as leaseholder.
//! - **load**: requests are counted over one-second windows. In a window above
//!   `load_qps_threshold`, a [`LoadSplitter`] starts sampling: it keeps
//!   [`LOAD_SAMPLES`] request keys (a reservoir sample) and counts, for each, the
//!   requests wholly left of it, wholly right of it, and spanning it. After
//!   [`LOAD_SAMPLE_TIME`], the range splits at the candidate that best balances left
//!   and right among those few requests span. A range splits for load at most once per
//!   [`LOAD_SPLIT_INTERVAL`], and the sampling stops when the load drops. The leaseholder
//!   then hands the right half's lease to another voter, so the halves are served by
//!   different nodes.
//!
//! Each pass also writes the meta entry of every range whose replica here has just
//! started leading or split (see the module docs of `split`), so a meta entry left
//! stale by a leaseholder that died mid-split is repaired by the next one.
//!
//! A SQL row is one key, so any key is a row boundary: both split keys are keys that
//! were stored or requested, never a point inside a row.
//!
//! HAZARD: the size estimate is per leaseholder and in memory; a new leaseholder
//! measures the range again before it can split it for size.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use cairn_kv::api::RangeDescriptor;
use cairn_kv::keys::{self, Span};
use cairn_kv::mvcc;
use cairn_kv::storage::{Reader, Space};

use crate::store::Store;

/// How large and how busy a range may get before it splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SplitConfig {
    /// Bytes of data (keys and values, every version) above which a range splits.
    pub max_bytes: u64,
    /// Requests per second above which a range looks for a split key by load; 0 turns
    /// load-based splitting off.
    pub load_qps_threshold: u64,
    /// Whether small, cold ranges merge with their neighbours (see [`crate::merge`]).
    pub merge_enabled: bool,
}

/// The default range size limit (64 MiB).
pub const DEFAULT_RANGE_MAX_BYTES: u64 = 64 << 20;
/// The default load-split threshold, in requests per second.
pub const DEFAULT_LOAD_QPS_THRESHOLD: u64 = 2_500;

impl Default for SplitConfig {
    fn default() -> Self {
        SplitConfig {
            max_bytes: DEFAULT_RANGE_MAX_BYTES,
            load_qps_threshold: DEFAULT_LOAD_QPS_THRESHOLD,
            merge_enabled: true,
        }
    }
}

/// Request keys a load splitter keeps as candidates.
pub const LOAD_SAMPLES: usize = 20;
/// How long a load splitter samples before it picks a key.
pub const LOAD_SAMPLE_TIME: Duration = Duration::from_secs(2);
/// The least time between two load-based splits of one range.
pub const LOAD_SPLIT_INTERVAL: Duration = Duration::from_secs(60);
/// A candidate is refused if more than this share of the sampled requests span it, or
/// if its sides differ by more than [`MAX_IMBALANCE`] of the requests on either side.
const MAX_SPANNING: f64 = 0.25;
const MAX_IMBALANCE: f64 = 0.5;
/// The size estimate must grow by at least `max_bytes / REMEASURE_FRACTION` between two
/// measurements, so a range just under the limit is not scanned on every pass.
const REMEASURE_FRACTION: u64 = 16;
/// How far apart (in bytes of data) the measurement keeps candidate midpoints.
const MIDPOINT_GRANULARITY: u64 = 16 << 10;

/// Why a range split.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitReason {
    Size,
    Load,
    /// Not a split: the range merged its right-hand neighbour.
    Merge,
}

impl std::fmt::Display for SplitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SplitReason::Size => "size",
            SplitReason::Load => "load",
            SplitReason::Merge => "merge",
        })
    }
}

/// What one replica knows about its range's size and load.
#[derive(Debug)]
pub struct RangeLoad {
    /// Estimated bytes of data; `None` until measured.
    size: Option<u64>,
    /// Bytes written since the last measurement.
    written: u64,
    /// The load-split threshold in force (set by every pass of the split queue).
    qps_threshold: u64,
    splitter: LoadSplitter,
    /// When the last attempt to merge the range with its neighbour failed.
    merge_refused_at: Option<Instant>,
}

impl Default for RangeLoad {
    fn default() -> Self {
        RangeLoad {
            size: None,
            written: 0,
            qps_threshold: DEFAULT_LOAD_QPS_THRESHOLD,
            splitter: LoadSplitter::default(),
            merge_refused_at: None,
        }
    }
}

impl RangeLoad {
    /// Counts a write of `bytes` proposed by the leaseholder.
    pub fn record_write(&mut self, bytes: u64) {
        self.written = self.written.saturating_add(bytes);
        if let Some(s) = &mut self.size {
            *s = s.saturating_add(bytes);
        }
    }

    /// Counts a request over `span` (`None`: it touched no global key).
    pub fn record_request(&mut self, now: Instant, span: Option<&Span>) {
        self.splitter.record(now, span, self.qps_threshold);
    }

    /// Forgets the size, so the range is measured again (its span changed).
    pub fn forget_size(&mut self) {
        self.size = None;
    }

    /// Notes that an attempt to merge the range failed.
    pub fn merge_refused(&mut self) {
        self.merge_refused_at = Some(Instant::now());
    }

    /// Whether an attempt to merge the range failed less than `retry` ago.
    pub fn merge_refused_recently(&self, retry: Duration) -> bool {
        self.merge_refused_at.is_some_and(|t| t.elapsed() < retry)
    }

    /// The estimated size, if the range has been measured.
    pub fn size(&self) -> Option<u64> {
        self.size
    }

    /// The requests per second of the last complete window.
    pub fn qps(&self) -> f64 {
        self.splitter.last_qps
    }

    /// Whether the size estimate calls for a measurement under `max_bytes`.
    fn wants_measuring(&self, max_bytes: u64) -> bool {
        match self.size {
            None => true,
            Some(s) => s > max_bytes && self.written >= max_bytes / REMEASURE_FRACTION,
        }
    }

    fn measured(&mut self, bytes: u64) {
        self.size = Some(bytes);
        self.written = 0;
    }
}

/// The size of a range's data and the key nearest its middle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measured {
    /// Bytes of keys and values, every version and intent, of the range's global keys.
    pub bytes: u64,
    /// The key with about half the bytes before it: a stored user key above the range's
    /// start and outside the meta span. `None` if there is no such key.
    pub midpoint: Option<Vec<u8>>,
}

/// Measures the global keys of `desc` in `reader` (see [`Measured`]).
pub fn measure(reader: &dyn Reader, desc: &RangeDescriptor) -> cairn_kv::Result<Measured> {
    let lower = mvcc::key::meta_key(&desc.start_key);
    let upper = mvcc::key::meta_key(&desc.end_key);
    let mut it = reader.iter(Space::Data, &lower, Some(&upper))?;
    it.seek_to_first()?;
    let mut bytes = 0u64;
    // (bytes before the key, key): user keys that may start the right-hand side.
    let mut candidates: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut next_mark = 0u64;
    let mut last_user_key: Vec<u8> = Vec::new();
    while let Some((raw, value)) = it.current() {
        let user_key = mvcc::key::decode(raw)?.user_key;
        if user_key != last_user_key {
            if bytes >= next_mark
                && user_key.as_slice() > desc.start_key.as_slice()
                && user_key.as_slice() >= keys::META_MAX
            {
                candidates.push((bytes, user_key.clone()));
                next_mark = bytes + MIDPOINT_GRANULARITY;
            }
            last_user_key = user_key;
        }
        bytes += (raw.len() + value.len()) as u64;
        it.next()?;
    }
    let half = bytes / 2;
    let midpoint = candidates
        .into_iter()
        .min_by_key(|(before, _)| before.abs_diff(half))
        .map(|(_, k)| k);
    Ok(Measured { bytes, midpoint })
}

/// Finds a split key by load (see the module docs).
#[derive(Debug, Default)]
pub struct LoadSplitter {
    window_start: Option<Instant>,
    window_count: u64,
    last_qps: f64,
    last_split: Option<Instant>,
    sampling: Option<Sampling>,
}

#[derive(Debug)]
struct Sampling {
    started: Instant,
    /// Requests seen while sampling (for the reservoir).
    seen: u64,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    key: Vec<u8>,
    left: u64,
    right: u64,
    spanning: u64,
}

impl LoadSplitter {
    /// Counts one request over `span` (`None`: it touched no global key).
    pub fn record(&mut self, now: Instant, span: Option<&Span>, qps_threshold: u64) {
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Duration::from_secs(1) {
            self.last_qps = self.window_count as f64 / elapsed.as_secs_f64();
            self.window_start = Some(now);
            self.window_count = 0;
            let hot = qps_threshold > 0 && self.last_qps >= qps_threshold as f64;
            let rested = self
                .last_split
                .is_none_or(|t| now.saturating_duration_since(t) >= LOAD_SPLIT_INTERVAL);
            if !hot || !rested {
                self.sampling = None;
            } else if self.sampling.is_none() {
                self.sampling = Some(Sampling {
                    started: now,
                    seen: 0,
                    samples: Vec::with_capacity(LOAD_SAMPLES),
                });
            }
        }
        self.window_count += 1;
        if let (Some(s), Some(span)) = (&mut self.sampling, span) {
            s.record(span);
        }
    }

    /// The key to split at, once sampling has run long enough and found a good one.
    pub fn split_key(&self, now: Instant) -> Option<Vec<u8>> {
        let s = self.sampling.as_ref()?;
        if now.saturating_duration_since(s.started) < LOAD_SAMPLE_TIME {
            return None;
        }
        s.samples
            .iter()
            .filter_map(|c| {
                let sides = c.left + c.right;
                let total = sides + c.spanning;
                if c.left == 0 || c.right == 0 || total == 0 {
                    return None;
                }
                let imbalance = c.left.abs_diff(c.right) as f64 / sides as f64;
                let spanning = c.spanning as f64 / total as f64;
                (imbalance <= MAX_IMBALANCE && spanning <= MAX_SPANNING)
                    .then_some((imbalance + spanning, c))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, c)| c.key.clone())
    }

    /// Records that the range split for load: no other load split for a while.
    pub fn split_done(&mut self, now: Instant) {
        self.last_split = Some(now);
        self.sampling = None;
    }
}

impl Sampling {
    fn record(&mut self, span: &Span) {
        for c in &mut self.samples {
            if span.end.as_slice() <= c.key.as_slice() {
                c.left += 1;
            } else if span.start.as_slice() >= c.key.as_slice() {
                c.right += 1;
            } else {
                c.spanning += 1;
            }
        }
        self.seen += 1;
        let sample = || Sample {
            key: span.start.clone(),
            left: 0,
            right: 0,
            spanning: 0,
        };
        if self.samples.len() < LOAD_SAMPLES {
            self.samples.push(sample());
        } else {
            // Reservoir sampling: every request so far is a candidate with equal odds.
            let i = fastrand::u64(..self.seen) as usize;
            if i < LOAD_SAMPLES {
                self.samples[i] = sample();
            }
        }
    }
}

impl Store {
    /// One pass of the split queue over the ranges this store leads (see the module
    /// docs). Returns the splits made, with their reason.
    pub async fn split_queue_pass(
        &self,
        config: SplitConfig,
    ) -> Vec<(RangeDescriptor, SplitReason)> {
        let mut done = Vec::new();
        for replica in self.replicas() {
            replica.load.lock().qps_threshold = config.load_qps_threshold;
            let status = replica.status();
            if !status.is_leader || status.stopped.is_some() {
                continue;
            }
            let Some(desc) = replica.descriptor() else {
                continue;
            };
            if replica.meta_dirty.swap(false, Ordering::Relaxed)
                && let Err(e) = replica.write_meta(&[&desc]).await
            {
                replica.meta_dirty.store(true, Ordering::Relaxed);
                tracing::warn!(range = %desc, error = %e, "could not write the range's meta entry; will retry");
            }
            // A frozen range neither splits nor merges: it waits for its merge, and
            // asks after it if that takes too long.
            if replica.frozen_for().is_some() {
                self.maybe_merge(&replica, &desc, config).await;
                continue;
            }
            let Some((key, reason)) = self.split_key_for(&replica, &desc, config).await else {
                if let Some(merged) = self.maybe_merge(&replica, &desc, config).await {
                    done.push((merged, SplitReason::Merge));
                }
                continue;
            };
            let sticky_until = match reason {
                SplitReason::Load => {
                    self.clock()
                        .now()
                        .add_duration(crate::merge::LOAD_SPLIT_STICKY)
                        .wall
                }
                _ => 0,
            };
            match replica.admin_split(&key, sticky_until).await {
                Ok((left, right)) => {
                    tracing::info!(%left, %right, %reason, "range split by the split queue");
                    if reason == SplitReason::Load {
                        replica.load.lock().splitter.split_done(Instant::now());
                        self.move_right_lease(&right).await;
                    }
                    // Both halves measure themselves again.
                    replica.load.lock().forget_size();
                    done.push((right, reason));
                }
                Err(e) => {
                    tracing::warn!(range = %desc, key = %keys::pretty(&key), %reason, error = %e, "split queue: split failed; will retry");
                }
            }
        }
        done
    }

    /// After a split for load, hands the right-hand range's lease to another voter, so
    /// the two halves of the hot span are served by different nodes. The voter is
    /// picked by range id, which spreads successive load splits over the others.
    async fn move_right_lease(&self, right: &RangeDescriptor) {
        let Some(r) = self.replica(right.range_id) else {
            return;
        };
        if !r.status().is_leader {
            return;
        }
        let others: Vec<_> = right
            .voters()
            .filter(|v| v.node_id != self.node_id())
            .map(|v| v.replica_id)
            .collect();
        if others.is_empty() {
            return;
        }
        let to = others[(right.range_id.0 as usize) % others.len()];
        if let Err(e) = r.transfer_lease(to).await {
            tracing::warn!(range = %right, error = %e, "could not move the lease after a load split");
        }
    }

    async fn split_key_for(
        &self,
        replica: &std::sync::Arc<crate::Replica>,
        desc: &RangeDescriptor,
        config: SplitConfig,
    ) -> Option<(Vec<u8>, SplitReason)> {
        let load_key = replica.load.lock().splitter.split_key(Instant::now());
        if let Some(key) = load_key
            && desc.contains_key(&key)
            && key.as_slice() > desc.start_key.as_slice()
            && key.as_slice() >= keys::META_MAX
        {
            return Some((key, SplitReason::Load));
        }
        if !replica.load.lock().wants_measuring(config.max_bytes) {
            return None;
        }
        let snapshot = self.engine().snapshot();
        let d = desc.clone();
        let measured = tokio::task::spawn_blocking(move || measure(snapshot.as_ref(), &d))
            .await
            .ok()?;
        let measured = match measured {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(range = %desc, error = %e, "split queue: measuring the range failed");
                return None;
            }
        };
        replica.load.lock().measured(measured.bytes);
        if measured.bytes > config.max_bytes {
            return measured.midpoint.map(|k| (k, SplitReason::Size));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_kv::RangeId;
    use cairn_kv::storage::{Engine, WriteBatch};

    fn desc(start: &[u8], end: &[u8]) -> RangeDescriptor {
        RangeDescriptor {
            range_id: RangeId(2),
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            replicas: Vec::new(),
            next_replica_id: cairn_kv::api::ReplicaId(1),
            generation: 0,
            sticky_until: 0,
        }
    }

    #[test]
    fn measure_finds_the_size_midpoint_at_a_stored_key() {
        let engine = cairn_kv::storage::memory::Memory::new();
        let mut batch = WriteBatch::new();
        // 100 keys of ~1 KiB, each with two versions; then a key outside the range.
        for i in 0..100u32 {
            let k = format!("\x04k{i:03}").into_bytes();
            for wall in [1, 2] {
                let ts = cairn_kv::Timestamp::new(wall, 0);
                batch.put(Space::Data, mvcc::key::version_key(&k, ts), vec![7; 1000]);
            }
        }
        batch.put(Space::Data, mvcc::key::meta_key(b"\x05z"), vec![1; 100_000]);
        engine.write(batch, false).expect("write");
        let m = measure(&engine, &desc(b"\x04k", b"\x05")).expect("measure");
        assert!(
            (200_000..220_000).contains(&m.bytes),
            "measured {} bytes",
            m.bytes
        );
        let mid = m.midpoint.expect("a midpoint");
        let n: u32 = std::str::from_utf8(&mid[2..]).unwrap().parse().unwrap();
        assert!((45..=55).contains(&n), "midpoint k{n:03}");

        // A range with one key has no midpoint; nor does the start key count.
        let m = measure(&engine, &desc(b"\x04k050", b"\x04k051")).expect("measure");
        assert_eq!(m.midpoint, None);
        assert!(m.bytes > 2000);
    }

    fn span(a: &str, b: &str) -> Span {
        Span::new(a.as_bytes().to_vec(), b.as_bytes().to_vec())
    }

    /// Drives a splitter with `per_second` requests a second for `secs` seconds,
    /// `f(i)` giving the i-th request's span.
    fn drive(
        s: &mut LoadSplitter,
        t0: Instant,
        secs: u64,
        per_second: u64,
        threshold: u64,
        f: impl Fn(u64) -> Span,
    ) -> Instant {
        let mut now = t0;
        for i in 0..secs * per_second {
            now = t0 + Duration::from_secs(secs) * (i as u32) / (secs * per_second) as u32;
            s.record(now, Some(&f(i)), threshold);
        }
        now
    }

    #[test]
    fn load_splitter_balances_a_hot_span() {
        let mut s = LoadSplitter::default();
        let t0 = Instant::now();
        // Uniform point reads over keys 000..999, 5,000 a second.
        let now = drive(&mut s, t0, 4, 5_000, 2_500, |i| {
            let k = format!("k{:03}", (i * 7919) % 1000);
            span(&k, &format!("{k}\0"))
        });
        assert!(s.last_qps > 4_000.0, "qps {}", s.last_qps);
        let key = s.split_key(now).expect("a split key");
        let n: u64 = std::str::from_utf8(&key[1..]).unwrap().parse().unwrap();
        assert!((250..750).contains(&n), "split at k{n:03}");
        s.split_done(now);
        assert_eq!(s.split_key(now), None);
        // Right after a split, the same load does not split again.
        let later = drive(&mut s, now, 3, 5_000, 2_500, |i| {
            let k = format!("k{:03}", (i * 7919) % 1000);
            span(&k, &format!("{k}\0"))
        });
        assert_eq!(s.split_key(later), None);
    }

    #[test]
    fn load_splitter_leaves_cold_ranges_and_single_hot_keys_alone() {
        let t0 = Instant::now();
        let uniform = |i: u64| {
            let k = format!("k{:03}", (i * 7919) % 1000);
            span(&k, &format!("{k}\0"))
        };
        // Under the threshold.
        let mut s = LoadSplitter::default();
        let now = drive(&mut s, t0, 4, 1_000, 2_500, uniform);
        assert_eq!(s.split_key(now), None);
        // Load splitting off.
        let mut s = LoadSplitter::default();
        let now = drive(&mut s, t0, 4, 5_000, 0, uniform);
        assert_eq!(s.split_key(now), None);
        // One hot key: nothing to balance.
        let mut s = LoadSplitter::default();
        let now = drive(&mut s, t0, 4, 5_000, 2_500, |_| span("k5", "k5\0"));
        assert_eq!(s.split_key(now), None);
        // Scans over the whole range: every candidate is spanned.
        let mut s = LoadSplitter::default();
        let now = drive(&mut s, t0, 4, 5_000, 2_500, |i| {
            span(&format!("a{}", i % 3), "z")
        });
        assert_eq!(s.split_key(now), None);
    }
}
