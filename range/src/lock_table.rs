//! The lock table: requests waiting for intents on this range's keys, queued per key.
//!
//! A request that meets an intent joins the key's queue. The first in line pushes the
//! intent's owner (see `crate::concurrency`); the others wait for the key to be
//! released (the intent resolved, here), so that one transaction holding a hot key is
//! pushed by one waiter, not by all of them. A waiter that is not first still pushes
//! after [`DEADLOCK_PUSH_DELAY`]: pushing registers it in the owner's wait queue, which
//! is how a wait-for cycle through this queue is found.
//!
//! ```text
//!   key "k", intent of T
//!     queue: R1 (pushes T)  R2 (waits)  R3 (waits)
//!   T resolved on "k"  ->  all woken; they evaluate again, in latch order
//! ```
//!
//! Entries exist only while someone waits; the table is the leaseholder's, in memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_kv::TxnId;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// How long a waiter that is not first in line waits before pushing the owner itself.
pub const DEADLOCK_PUSH_DELAY: Duration = Duration::from_millis(250);

struct Lock {
    holder: TxnId,
    /// Waiter ids, in arrival order.
    queue: Vec<u64>,
    released: Arc<Notify>,
}

#[derive(Default)]
pub struct LockTable {
    locks: Mutex<HashMap<Vec<u8>, Lock>>,
    next_id: std::sync::atomic::AtomicU64,
}

/// A place in a key's queue; leaves it when dropped.
pub struct LockWaiter<'a> {
    table: &'a LockTable,
    key: Vec<u8>,
    id: u64,
    /// Notified when the key is released.
    pub released: Arc<Notify>,
}

impl LockTable {
    /// Joins the queue of `key`, whose intent belongs to `holder`.
    pub fn enqueue(&self, key: &[u8], holder: TxnId) -> LockWaiter<'_> {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut locks = self.locks.lock();
        let lock = locks.entry(key.to_vec()).or_insert_with(|| Lock {
            holder,
            queue: Vec::new(),
            released: Arc::new(Notify::new()),
        });
        if lock.holder != holder {
            // The intent changed hands since the queue formed: everyone queued was
            // waiting for an intent that is gone. Start over behind the new one.
            lock.holder = holder;
            lock.released.notify_waiters();
            lock.released = Arc::new(Notify::new());
        }
        lock.queue.push(id);
        LockWaiter {
            table: self,
            key: key.to_vec(),
            id,
            released: lock.released.clone(),
        }
    }

    /// The intents of `txn` here were resolved (committed, aborted or moved): wake
    /// everyone queued on its keys.
    pub fn release_txn(&self, txn: TxnId) {
        let mut locks = self.locks.lock();
        locks.retain(|_, lock| {
            if lock.holder == txn {
                lock.released.notify_waiters();
                false
            } else {
                true
            }
        });
    }

    /// How many keys have waiters.
    pub fn len(&self) -> usize {
        self.locks.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl LockWaiter<'_> {
    /// Whether this waiter is first in its key's queue (or the key was released).
    pub fn is_first(&self) -> bool {
        self.table
            .locks
            .lock()
            .get(&self.key)
            .is_none_or(|l| l.queue.first() == Some(&self.id))
    }
}

impl Drop for LockWaiter<'_> {
    fn drop(&mut self) {
        let mut locks = self.table.locks.lock();
        if let Some(lock) = locks.get_mut(&self.key) {
            lock.queue.retain(|w| *w != self.id);
            if lock.queue.is_empty() {
                locks.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txn(n: u8) -> TxnId {
        TxnId::from_bytes([n; 16])
    }

    #[test]
    fn first_in_line_pushes_and_the_rest_follow_in_order() {
        let t = LockTable::default();
        let a = t.enqueue(b"k", txn(1));
        let b = t.enqueue(b"k", txn(1));
        let c = t.enqueue(b"k", txn(1));
        assert!(a.is_first() && !b.is_first() && !c.is_first());
        drop(a);
        assert!(b.is_first() && !c.is_first());
        drop(b);
        drop(c);
        assert!(t.is_empty());
    }

    #[tokio::test]
    async fn releasing_the_holder_wakes_its_waiters_only() {
        let t = LockTable::default();
        let a = t.enqueue(b"k", txn(1));
        let other = t.enqueue(b"j", txn(2));
        let woken = a.released.notified();
        let not_woken = other.released.notified();
        t.release_txn(txn(1));
        tokio::time::timeout(Duration::from_secs(1), woken)
            .await
            .expect("the waiter on k is woken");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), not_woken)
                .await
                .is_err(),
            "the waiter on j is not"
        );
        assert!(a.is_first(), "a released key counts as free");
    }

    #[test]
    fn a_new_holder_restarts_the_queue() {
        let t = LockTable::default();
        let a = t.enqueue(b"k", txn(1));
        let b = t.enqueue(b"k", txn(2));
        assert!(a.is_first());
        assert!(!b.is_first());
    }
}
