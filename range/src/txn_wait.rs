//! The transaction wait queue: pushers waiting for a pending transaction to finish, on
//! the leaseholder of that transaction's record.
//!
//! A push that cannot go through (the pushee is alive and outranks the pusher) waits
//! here until the pushee's record changes (it commits, aborts, or is pushed) or a short
//! while passes, then tries again. Meanwhile the queue serves deadlock detection: it
//! knows, for every pushee, who waits for it, and each waiter reports who waits for
//! *it* (learned by querying its own record's range). So the set of transactions
//! waiting on T, directly or through others, is known at T's record:
//!
//! ```text
//!   A waits for B (queued at B's record), B waits for A (queued at A's record)
//!   waiting(A) = {B} ∪ waiting(B) reported by B = {B, A}   -> B finds itself: a cycle
//! ```
//!
//! A waiter that finds its pushee among the transactions waiting for it is in a cycle.
//! Exactly one edge of each two-transaction cycle breaks it: the waiter that ranks
//! higher (priority, then id) aborts its pushee with a forced push.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cairn_kv::TxnId;
use parking_lot::Mutex;
use tokio::sync::Notify;

#[derive(Default)]
struct Pushee {
    /// Woken when the pushee's record changes.
    changed: Arc<Notify>,
    /// Transactional pushers, each with the transactions known to wait for it.
    waiters: HashMap<TxnId, HashSet<TxnId>>,
    /// How many waits are queued (transactional or not).
    count: usize,
}

/// Pushes waiting on this range's transaction records.
#[derive(Default)]
pub struct TxnWaitQueue {
    pushees: Mutex<HashMap<TxnId, Pushee>>,
}

/// A queued wait; leaves the queue when dropped.
pub struct Waiting<'a> {
    queue: &'a TxnWaitQueue,
    pushee: TxnId,
    pusher: Option<TxnId>,
    /// Notified when the pushee's record changes.
    pub changed: Arc<Notify>,
}

impl TxnWaitQueue {
    /// Queues `pusher` (None: a non-transactional request) behind `pushee`.
    pub fn enqueue(&self, pushee: TxnId, pusher: Option<TxnId>) -> Waiting<'_> {
        let mut map = self.pushees.lock();
        let entry = map.entry(pushee).or_default();
        entry.count += 1;
        if let Some(p) = pusher {
            entry.waiters.entry(p).or_default();
        }
        Waiting {
            queue: self,
            pushee,
            pusher,
            changed: entry.changed.clone(),
        }
    }

    /// Every transaction waiting for `txn`, directly or through others (as far as the
    /// waiters have reported).
    pub fn dependents(&self, txn: TxnId) -> Vec<TxnId> {
        let map = self.pushees.lock();
        let mut out: HashSet<TxnId> = HashSet::new();
        if let Some(p) = map.get(&txn) {
            for (w, deps) in &p.waiters {
                out.insert(*w);
                out.extend(deps.iter().copied());
            }
        }
        out.into_iter().collect()
    }

    /// Wakes everyone waiting for `txn`: its record changed.
    pub fn record_changed(&self, txn: TxnId) {
        if let Some(p) = self.pushees.lock().get(&txn) {
            p.changed.notify_waiters();
        }
    }
}

impl Waiting<'_> {
    /// Records the transactions known to wait for this waiter.
    pub fn set_dependents(&self, deps: impl IntoIterator<Item = TxnId>) {
        let Some(pusher) = self.pusher else {
            return;
        };
        if let Some(p) = self.queue.pushees.lock().get_mut(&self.pushee)
            && let Some(d) = p.waiters.get_mut(&pusher)
        {
            *d = deps.into_iter().collect();
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let mut map = self.queue.pushees.lock();
        if let Some(p) = map.get_mut(&self.pushee) {
            p.count -= 1;
            if let Some(pusher) = self.pusher {
                p.waiters.remove(&pusher);
            }
            if p.count == 0 {
                map.remove(&self.pushee);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TxnId {
        TxnId::from_bytes([n; 16])
    }

    #[test]
    fn dependents_include_what_waiters_report() {
        let q = TxnWaitQueue::default();
        let w1 = q.enqueue(id(1), Some(id(2)));
        let w2 = q.enqueue(id(1), None);
        w1.set_dependents([id(3), id(4)]);
        let mut deps = q.dependents(id(1));
        deps.sort();
        assert_eq!(deps, vec![id(2), id(3), id(4)]);
        drop(w1);
        assert!(q.dependents(id(1)).is_empty());
        drop(w2);
        assert!(q.pushees.lock().is_empty());
    }

    #[tokio::test]
    async fn record_changes_wake_waiters() {
        let q = TxnWaitQueue::default();
        let w = q.enqueue(id(1), Some(id(2)));
        let woken = w.changed.notified();
        q.record_changed(id(1));
        tokio::time::timeout(std::time::Duration::from_secs(1), woken)
            .await
            .expect("woken");
    }
}
