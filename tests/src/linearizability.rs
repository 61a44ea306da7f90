//! A linearizability checker for single-key registers (Wing & Gong's search, with
//! Lowe's memoisation of visited states).
//!
//! A history is a set of operations, each with the time it was called and, if it
//! returned, the time it returned. A write whose outcome is unknown (ambiguous) has no
//! return: it may take effect at any point after its call, or never. The history is
//! linearizable if some total order of the operations (leaving out some unknown writes)
//! respects real time (an operation that returned before another was called comes
//! first) and makes every read return the value of the latest write before it.
//!
//! The search: repeatedly pick an operation that could take effect next (called before
//! every pending operation's return), apply it to the register if it agrees, recurse;
//! back off on a dead end. A set of (operations done, register value) already explored
//! is not explored again.

use std::collections::HashSet;

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    /// Wrote a value (values are unique per history).
    Write(u64),
    /// Read this value (`None`: the key had none).
    Read(Option<u64>),
}

/// One operation on one register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// When it was called (any monotonic unit).
    pub call: u64,
    /// When it returned; `None` for a write of unknown outcome.
    pub ret: Option<u64>,
    pub kind: OpKind,
}

/// Searches for a linearization of `ops` from `initial`. Errors name the operations that
/// could not be placed.
pub fn check_register(ops: &[Op], initial: Option<u64>) -> Result<(), String> {
    for op in ops {
        if op.ret.is_none() && matches!(op.kind, OpKind::Read(_)) {
            return Err(format!("a read without a return cannot be checked: {op:?}"));
        }
    }
    let mut ops: Vec<Op> = ops.to_vec();
    ops.sort_by_key(|o| o.call);
    let words = ops.len().div_ceil(64);
    let mut search = Search {
        ops: &ops,
        seen: HashSet::new(),
        deepest: 0,
    };
    let mut done = vec![0u64; words];
    if search.dfs(&mut done, initial, 0) {
        Ok(())
    } else {
        Err(format!(
            "not linearizable: no order places more than {} of {} operations; history: {ops:?}",
            search.deepest,
            ops.len()
        ))
    }
}

struct Search<'a> {
    ops: &'a [Op],
    seen: HashSet<(Vec<u64>, Option<u64>)>,
    deepest: usize,
}

fn is_set(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn flip(bits: &mut [u64], i: usize) {
    bits[i / 64] ^= 1 << (i % 64);
}

impl Search<'_> {
    fn dfs(&mut self, done: &mut Vec<u64>, value: Option<u64>, placed: usize) -> bool {
        self.deepest = self.deepest.max(placed);
        // Finished when every operation that returned is placed.
        let pending: Vec<usize> = (0..self.ops.len()).filter(|&i| !is_set(done, i)).collect();
        if pending.iter().all(|&i| self.ops[i].ret.is_none()) {
            return true;
        }
        if !self.seen.insert((done.clone(), value)) {
            return false;
        }
        // An operation can go next only if no pending operation returned before it was
        // called.
        let first_return = pending
            .iter()
            .filter_map(|&i| self.ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for &i in &pending {
            let op = self.ops[i];
            if op.call > first_return {
                break;
            }
            let next_value = match op.kind {
                OpKind::Write(v) => Some(v),
                OpKind::Read(v) if v == value => value,
                OpKind::Read(_) => continue,
            };
            flip(done, i);
            if self.dfs(done, next_value, placed + 1) {
                return true;
            }
            flip(done, i);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(call: u64, ret: Option<u64>, v: u64) -> Op {
        Op {
            call,
            ret,
            kind: OpKind::Write(v),
        }
    }

    fn r(call: u64, ret: u64, v: Option<u64>) -> Op {
        Op {
            call,
            ret: Some(ret),
            kind: OpKind::Read(v),
        }
    }

    #[test]
    fn sequential_and_concurrent_histories() {
        assert!(check_register(&[w(0, Some(1), 1), r(2, 3, Some(1))], None).is_ok());
        // A read concurrent with a write may see either value.
        assert!(
            check_register(&[w(0, Some(10), 1), r(2, 3, None), r(4, 5, Some(1))], None).is_ok()
        );
        // But not go back once it saw the new one.
        assert!(
            check_register(&[w(0, Some(10), 1), r(2, 3, Some(1)), r(4, 5, None)], None).is_err()
        );
    }

    #[test]
    fn stale_read_after_a_completed_write_is_caught() {
        let h = [w(0, Some(1), 1), w(2, Some(3), 2), r(4, 5, Some(1))];
        assert!(check_register(&h, None).is_err());
    }

    #[test]
    fn lost_acknowledged_write_is_caught() {
        let h = [w(0, Some(1), 1), r(2, 3, None)];
        assert!(check_register(&h, None).is_err());
    }

    #[test]
    fn unknown_writes_may_or_may_not_happen() {
        // Never observed: fine.
        assert!(check_register(&[w(0, None, 1), r(2, 3, None)], None).is_ok());
        // Observed long after its call: fine.
        assert!(check_register(&[w(0, None, 1), r(50, 51, Some(1))], None).is_ok());
        // Observed, then gone without another write: not fine.
        assert!(check_register(&[w(0, None, 1), r(5, 6, Some(1)), r(7, 8, None)], None).is_err());
    }
}
