//! Latches: a replica serialises requests whose key spans conflict, from evaluation until
//! their writes are applied.
//!
//! Evaluation reads the replica's applied state and replication applies the result
//! later; two conflicting requests must not both evaluate against the state before
//! either applies (two conditional puts would both see the old value). A request takes
//! latches on its spans (read or write) and holds them until its command is applied.
//!
//! Requests are sequenced on arrival and wait only for earlier requests that conflict
//! with them (write/write or read/write on overlapping spans), so waiting is first come,
//! first served per key and can never deadlock.

use cairn_kv::keys::Span;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// A span to latch and whether the request writes it.
#[derive(Clone, Debug)]
pub struct LatchSpan {
    pub span: Span,
    pub write: bool,
}

fn conflicts(a: &[LatchSpan], b: &[LatchSpan]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| (x.write || y.write) && x.span.start < y.span.end && y.span.start < x.span.end)
    })
}

#[derive(Default)]
struct State {
    next_seq: u64,
    /// Held and waiting requests, in arrival order.
    entries: Vec<(u64, Vec<LatchSpan>)>,
}

/// The latches of one replica.
#[derive(Default)]
pub struct LatchManager {
    state: Mutex<State>,
    released: Notify,
}

/// Held latches; released on drop.
pub struct LatchGuard<'a> {
    manager: &'a LatchManager,
    seq: u64,
}

impl LatchManager {
    pub fn new() -> Self {
        LatchManager::default()
    }

    /// Waits until no earlier request holds or waits for a conflicting latch, then holds
    /// `spans`.
    pub async fn acquire(&self, spans: Vec<LatchSpan>) -> LatchGuard<'_> {
        let seq = {
            let mut st = self.state.lock();
            st.next_seq += 1;
            let seq = st.next_seq;
            st.entries.push((seq, spans));
            seq
        };
        let guard = LatchGuard { manager: self, seq };
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if !self.blocked(seq) {
                return guard;
            }
            released.await;
        }
    }

    /// Whether an earlier entry conflicts with entry `seq`.
    fn blocked(&self, seq: u64) -> bool {
        let st = self.state.lock();
        let Some(pos) = st.entries.iter().position(|(s, _)| *s == seq) else {
            return false;
        };
        let mine = &st.entries[pos].1;
        st.entries[..pos]
            .iter()
            .any(|(_, theirs)| conflicts(mine, theirs))
    }

    /// How many requests hold or wait for latches.
    pub fn len(&self) -> usize {
        self.state.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for LatchGuard<'_> {
    fn drop(&mut self) {
        self.manager
            .state
            .lock()
            .entries
            .retain(|(s, _)| *s != self.seq);
        self.manager.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    fn w(a: &str, b: &str) -> LatchSpan {
        LatchSpan {
            span: Span::new(a.as_bytes(), b.as_bytes()),
            write: true,
        }
    }

    fn r(a: &str, b: &str) -> LatchSpan {
        LatchSpan {
            span: Span::new(a.as_bytes(), b.as_bytes()),
            write: false,
        }
    }

    #[tokio::test]
    async fn conflicting_requests_wait_in_arrival_order() {
        let m = Arc::new(LatchManager::new());
        let g1 = m.acquire(vec![w("a", "c")]).await;
        // Reads of other keys and reads among themselves do not wait.
        let _other = m.acquire(vec![w("c", "d")]).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, spans) in [(1, vec![r("b", "bb")]), (2, vec![w("a", "b")])] {
            let (m, order) = (m.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _g = m.acquire(spans).await;
                order.lock().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(order.lock().is_empty(), "both wait for the first writer");
        drop(g1);
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(*order.lock(), vec![1, 2]);
    }

    #[tokio::test]
    async fn readers_share() {
        let m = LatchManager::new();
        let _a = m.acquire(vec![r("a", "z")]).await;
        let _b = tokio::time::timeout(Duration::from_secs(1), m.acquire(vec![r("b", "c")]))
            .await
            .expect("readers do not block readers");
        assert_eq!(m.len(), 2);
    }
}
