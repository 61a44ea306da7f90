//! Hybrid logical clocks: timestamps that follow physical time but never go backwards and
//! always order causally related events.
//!
//! A [`Timestamp`] is a wall-clock reading in nanoseconds plus a logical counter. A
//! [`Clock`] hands out timestamps that are strictly increasing on one node, and every
//! message between nodes carries the sender's reading, which the receiver merges in with
//! [`Clock::update`]. After that, anything the receiver does is ordered after anything
//! the sender did before sending, whatever the two physical clocks say:
//!
//! ```text
//!   node A   now()=(100,0) ──── message carries (100,0) ────▶ node B
//!                                                   physical clock reads 90
//!                                                   update((100,0)) -> (100,1)
//!                                                   now()           -> (100,2)
//! ```
//!
//! The logical counter only breaks ties and catches up with a remote clock that runs
//! ahead; as soon as the local physical clock passes the last wall time the counter
//! resets to zero.
//!
//! Uncertainty: clocks of different nodes differ by up to a configured maximum offset
//! (500 ms by default). A reader at timestamp `t` cannot tell whether a value written at
//! `t' ∈ (t, t + max_offset]` on another node happened before it in real time, so such a
//! value makes the reader restart above `t'` (see `mvcc`).
//!
//! HAZARD: correctness of reads rests on the assumption that no two clocks in the cluster
//! are ever further apart than `max_offset`. [`Clock::update`] refuses a remote reading
//! that is more than `max_offset` ahead of the local physical clock, which catches a
//! peer that runs fast, but nothing here can detect the local clock running slow with
//! every peer agreeing; the node-level offset monitor must stop a node whose offset from
//! a majority of peers exceeds 0.8 × `max_offset`.
//!
//! Why not the `hybrid-clocks` crate named in the design: it has not been maintained
//! since 2020, its clock takes `&mut self` (we need one clock shared by every request of
//! a node), it has no fixed byte encoding (timestamps are part of every MVCC key) and no
//! max-offset check. The clock is thirty lines; we own it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The default bound on the offset between any two clocks in a cluster.
pub const DEFAULT_MAX_OFFSET: Duration = Duration::from_millis(500);

/// A hybrid logical clock reading.
///
/// Ordered by `wall`, then `logical`. Its [`encode`](Timestamp::encode)d form is 12 bytes,
/// big-endian, so byte order equals timestamp order.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp {
    /// Physical time: nanoseconds since the Unix epoch.
    pub wall: u64,
    /// Logical counter that orders events with the same `wall`.
    pub logical: u32,
}

impl Timestamp {
    /// The zero timestamp, below every real reading.
    pub const ZERO: Timestamp = Timestamp {
        wall: 0,
        logical: 0,
    };
    /// The largest timestamp.
    pub const MAX: Timestamp = Timestamp {
        wall: u64::MAX,
        logical: u32::MAX,
    };
    /// Length of the encoded form.
    pub const ENCODED_LEN: usize = 12;

    pub const fn new(wall: u64, logical: u32) -> Self {
        Timestamp { wall, logical }
    }

    pub fn is_zero(&self) -> bool {
        *self == Timestamp::ZERO
    }

    /// The smallest timestamp above this one.
    pub fn next(&self) -> Timestamp {
        match self.logical.checked_add(1) {
            Some(logical) => Timestamp::new(self.wall, logical),
            None => Timestamp::new(self.wall.saturating_add(1), 0),
        }
    }

    /// The largest timestamp below this one (ZERO stays ZERO).
    pub fn prev(&self) -> Timestamp {
        match self.logical.checked_sub(1) {
            Some(logical) => Timestamp::new(self.wall, logical),
            None if self.wall == 0 => Timestamp::ZERO,
            None => Timestamp::new(self.wall - 1, u32::MAX),
        }
    }

    /// This timestamp plus a duration of wall time (saturating).
    pub fn add_duration(&self, d: Duration) -> Timestamp {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp::new(self.wall.saturating_add(nanos), self.logical)
    }

    /// The 12-byte big-endian encoding: wall (8 bytes) then logical (4 bytes).
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[..8].copy_from_slice(&self.wall.to_be_bytes());
        out[8..].copy_from_slice(&self.logical.to_be_bytes());
        out
    }

    /// Decodes [`encode`](Timestamp::encode)'s output; any other length is an error.
    pub fn decode(bytes: &[u8]) -> Result<Timestamp> {
        let arr: [u8; Self::ENCODED_LEN] = bytes.try_into().map_err(|_| {
            Error::Decode(format!(
                "timestamp must be {} bytes, got {}",
                Self::ENCODED_LEN,
                bytes.len()
            ))
        })?;
        let mut wall = [0u8; 8];
        let mut logical = [0u8; 4];
        wall.copy_from_slice(&arr[..8]);
        logical.copy_from_slice(&arr[8..]);
        Ok(Timestamp::new(
            u64::from_be_bytes(wall),
            u32::from_be_bytes(logical),
        ))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09},{}",
            self.wall / 1_000_000_000,
            self.wall % 1_000_000_000,
            self.logical
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A source of physical time in nanoseconds since the Unix epoch.
pub trait PhysicalClock: Send + Sync {
    fn now_nanos(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl PhysicalClock for SystemClock {
    fn now_nanos(&self) -> u64 {
        // A system clock set before 1970 reads as 0: the HLC then runs on its logical
        // counter alone, which is still monotonic.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// A physical clock that only moves when told to, for deterministic tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    nanos: AtomicU64,
}

impl ManualClock {
    pub fn new(nanos: u64) -> Arc<Self> {
        Arc::new(ManualClock {
            nanos: AtomicU64::new(nanos),
        })
    }

    pub fn set(&self, nanos: u64) {
        self.nanos.store(nanos, Ordering::SeqCst);
    }

    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl PhysicalClock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.nanos.load(Ordering::SeqCst)
    }
}

/// A physical clock that reads another one shifted by a fixed, changeable offset: how
/// fault tests skew one node's clock.
pub struct OffsetClock {
    inner: Arc<dyn PhysicalClock>,
    offset_nanos: std::sync::atomic::AtomicI64,
}

impl OffsetClock {
    pub fn new(inner: Arc<dyn PhysicalClock>) -> Arc<Self> {
        Arc::new(OffsetClock {
            inner,
            offset_nanos: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// Shifts every later reading by `nanos` (negative: the clock runs behind).
    pub fn set_offset_nanos(&self, nanos: i64) {
        self.offset_nanos.store(nanos, Ordering::SeqCst);
    }
}

impl PhysicalClock for OffsetClock {
    fn now_nanos(&self) -> u64 {
        let base = self.inner.now_nanos();
        base.saturating_add_signed(self.offset_nanos.load(Ordering::SeqCst))
    }
}

/// A hybrid logical clock shared by everything on one node.
///
/// Invariants:
/// - every timestamp returned by [`now`](Clock::now) or [`update`](Clock::update) is
///   strictly greater than every timestamp this clock returned before;
/// - after `update(r)` succeeds, every later reading is greater than `r`.
pub struct Clock {
    physical: Arc<dyn PhysicalClock>,
    max_offset: Duration,
    last: Mutex<Timestamp>,
}

impl Clock {
    pub fn new(physical: Arc<dyn PhysicalClock>, max_offset: Duration) -> Self {
        Clock {
            physical,
            max_offset,
            last: Mutex::new(Timestamp::ZERO),
        }
    }

    /// A clock on the system's wall time with the default maximum offset.
    pub fn system() -> Self {
        Clock::new(Arc::new(SystemClock), DEFAULT_MAX_OFFSET)
    }

    /// A clock on a manual physical clock, for tests.
    pub fn manual(physical: Arc<ManualClock>, max_offset: Duration) -> Self {
        Clock::new(physical, max_offset)
    }

    pub fn max_offset(&self) -> Duration {
        self.max_offset
    }

    /// The physical clock's reading in nanoseconds, without touching the HLC.
    pub fn physical_now(&self) -> u64 {
        self.physical.now_nanos()
    }

    /// A new timestamp, greater than any this clock has handed out or seen.
    pub fn now(&self) -> Timestamp {
        let physical = self.physical.now_nanos();
        let mut last = self.last.lock();
        let next = if physical > last.wall {
            Timestamp::new(physical, 0)
        } else {
            last.next()
        };
        debug_assert!(next > *last);
        *last = next;
        next
    }

    /// How long until this clock's physical time passes `ts` (zero if it has).
    pub fn time_until(&self, ts: Timestamp) -> Duration {
        Duration::from_nanos(ts.wall.saturating_sub(self.physical.now_nanos()))
    }

    /// Merges a timestamp from another node so that every later reading is above it, and
    /// returns a reading above both.
    ///
    /// Fails with [`Error::ClockOffset`] (and leaves the clock unchanged) if `remote` is
    /// more than the maximum offset ahead of the local physical clock: taking it would
    /// drag this node's clock, and every node it talks to, into the future.
    pub fn update(&self, remote: Timestamp) -> Result<Timestamp> {
        let physical = self.physical.now_nanos();
        let limit =
            physical.saturating_add(u64::try_from(self.max_offset.as_nanos()).unwrap_or(u64::MAX));
        if remote.wall > limit {
            return Err(Error::ClockOffset {
                remote,
                local_physical: physical,
                max_offset: self.max_offset,
            });
        }
        let mut last = self.last.lock();
        let floor = (*last).max(remote);
        let next = if physical > floor.wall {
            Timestamp::new(physical, 0)
        } else {
            floor.next()
        };
        debug_assert!(next > *last && next > remote);
        *last = next;
        Ok(next)
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock")
            .field("max_offset", &self.max_offset)
            .field("last", &*self.last.lock())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn manual(start: u64) -> (Arc<ManualClock>, Clock) {
        let m = ManualClock::new(start);
        let c = Clock::manual(m.clone(), Duration::from_millis(500));
        (m, c)
    }

    #[test]
    fn now_follows_physical_time_and_ties_break_logically() {
        let (m, c) = manual(1_000);
        assert_eq!(c.now(), Timestamp::new(1_000, 0));
        assert_eq!(c.now(), Timestamp::new(1_000, 1));
        m.set(2_000);
        assert_eq!(c.now(), Timestamp::new(2_000, 0));
        // A physical clock that jumps backwards does not move the HLC backwards.
        m.set(1_500);
        assert_eq!(c.now(), Timestamp::new(2_000, 1));
    }

    #[test]
    fn update_moves_past_a_remote_clock_that_runs_ahead() {
        let (_m, c) = manual(1_000_000_000);
        let remote = Timestamp::new(1_100_000_000, 7);
        assert_eq!(c.update(remote).unwrap(), Timestamp::new(1_100_000_000, 8));
        assert_eq!(c.now(), Timestamp::new(1_100_000_000, 9));
    }

    #[test]
    fn update_with_a_remote_clock_behind_keeps_physical_time() {
        let (_m, c) = manual(1_000_000_000);
        assert_eq!(
            c.update(Timestamp::new(5, 0)).unwrap(),
            Timestamp::new(1_000_000_000, 0)
        );
    }

    #[test]
    fn update_rejects_remote_beyond_max_offset() {
        let (_m, c) = manual(1_000_000_000);
        let before = c.now();
        // Exactly max offset ahead is accepted.
        let at_limit = Timestamp::new(1_500_000_000, 0);
        assert!(c.update(at_limit).is_ok());
        let too_far = Timestamp::new(1_500_000_001, 0);
        let err = c.update(too_far).unwrap_err();
        assert!(matches!(err, Error::ClockOffset { remote, .. } if remote == too_far));
        // The rejected reading did not move the clock.
        assert!(c.now() < too_far);
        assert!(c.now() > before);
    }

    #[test]
    fn offset_clock_skews_readings() {
        let m = ManualClock::new(10_000);
        let o = OffsetClock::new(m.clone());
        o.set_offset_nanos(-4_000);
        assert_eq!(o.now_nanos(), 6_000);
        o.set_offset_nanos(5);
        assert_eq!(o.now_nanos(), 10_005);
    }

    #[test]
    fn next_and_prev() {
        let t = Timestamp::new(5, u32::MAX);
        assert_eq!(t.next(), Timestamp::new(6, 0));
        assert_eq!(Timestamp::new(6, 0).prev(), t);
        assert_eq!(Timestamp::ZERO.prev(), Timestamp::ZERO);
        assert_eq!(
            Timestamp::MAX.next(),
            Timestamp::new(u64::MAX, 0).max(Timestamp::MAX.next())
        );
    }

    #[test]
    fn decode_rejects_wrong_length() {
        assert!(Timestamp::decode(&[0; 11]).is_err());
        assert!(Timestamp::decode(&[0; 13]).is_err());
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_preserves_order(a_w: u64, a_l: u32, b_w: u64, b_l: u32) {
            let a = Timestamp::new(a_w, a_l);
            let b = Timestamp::new(b_w, b_l);
            prop_assert_eq!(Timestamp::decode(&a.encode()).unwrap(), a);
            prop_assert_eq!(a.cmp(&b), a.encode().cmp(&b.encode()));
        }

        #[test]
        fn clock_is_strictly_monotonic(steps in prop::collection::vec((0u8..3, 0u64..2_000_000_000), 1..200)) {
            let (m, c) = manual(1_000_000_000);
            let mut last = Timestamp::ZERO;
            for (op, n) in steps {
                let t = match op {
                    0 => { m.set(n); c.now() }
                    1 => c.now(),
                    _ => match c.update(Timestamp::new(n, 3)) {
                        Ok(t) => { prop_assert!(t > Timestamp::new(n, 3)); t }
                        Err(_) => c.now(),
                    },
                };
                prop_assert!(t > last);
                last = t;
            }
        }
    }
}
