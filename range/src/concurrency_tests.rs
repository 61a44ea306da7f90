//! Scripted scenarios for the concurrency manager's bookkeeping
//! (`testscripts/concurrency/`, regenerate with `UPDATE_GOLDENFILES=1`): requests
//! queued per key in the lock table, pushers queued per transaction in the wait queue,
//! the dependents they report, and who breaks a wait-for cycle.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt::Write as _;

use cairn_kv::mvcc::TxnMeta;
use cairn_kv::{Timestamp, TxnId};

use crate::concurrency::outranks;
use crate::lock_table::{LockTable, LockWaiter};
use crate::txn_wait::{TxnWaitQueue, Waiting};

struct Runner {
    locks: &'static LockTable,
    queue: &'static TxnWaitQueue,
    txns: HashMap<String, TxnMeta>,
    names: HashMap<TxnId, String>,
    waiters: HashMap<String, LockWaiter<'static>>,
    pushes: HashMap<String, Waiting<'static>>,
    /// Whether each waiter was woken since the last check.
    woken: HashMap<String, std::pin::Pin<Box<tokio::sync::futures::OwnedNotified>>>,
}

impl Runner {
    fn txn(&mut self, name: &str) -> TxnMeta {
        if let Some(t) = self.txns.get(name) {
            return t.clone();
        }
        let n = u8::try_from(self.txns.len() + 1).unwrap_or(u8::MAX);
        let t = TxnMeta {
            id: TxnId::from_bytes([n; 16]),
            key: name.as_bytes().to_vec(),
            epoch: 0,
            write_ts: Timestamp::new(1, 0),
            min_ts: Timestamp::new(1, 0),
            priority: 1,
            seq: 0,
            ignored: Vec::new(),
        };
        self.names.insert(t.id, name.to_string());
        self.txns.insert(name.to_string(), t.clone());
        t
    }

    fn names(&self, ids: &[TxnId]) -> String {
        let mut v: Vec<String> = ids
            .iter()
            .map(|i| {
                self.names
                    .get(i)
                    .cloned()
                    .unwrap_or_else(|| format!("{i:?}"))
            })
            .collect();
        v.sort();
        format!("[{}]", v.join(", "))
    }
}

impl goldenscript::Runner for Runner {
    type Command = goldenscript::Command;

    fn run(
        &mut self,
        command: &goldenscript::Command,
        _: &goldenscript::Context,
    ) -> Result<String, Box<dyn StdError>> {
        let mut args = command.consume_args();
        let mut out = String::new();
        match command.name.as_str() {
            // txn NAME priority=P: a transaction and its priority.
            "txn" => {
                let name = args.next_pos().ok_or("name missing")?.to_string();
                let p = args
                    .take_key("priority")
                    .ok_or("priority= missing")?
                    .parse()?;
                args.reject_next()?;
                self.txn(&name);
                if let Some(t) = self.txns.get_mut(&name) {
                    t.priority = p;
                }
            }
            // wait W key=K holder=T: request W meets T's intent on K and queues.
            "wait" => {
                let w = args.next_pos().ok_or("waiter missing")?.to_string();
                let key = args.take_key("key").ok_or("key= missing")?.to_string();
                let holder = self.txn(args.take_key("holder").ok_or("holder= missing")?);
                args.reject_next()?;
                let waiter = self.locks.enqueue(key.as_bytes(), holder.id);
                let notified = waiter.released.clone().notified_owned();
                let mut notified = Box::pin(notified);
                notified.as_mut().enable();
                self.woken.insert(w.clone(), notified);
                self.waiters.insert(w, waiter);
            }
            // leave W: request W stops waiting (it went ahead, or gave up).
            "leave" => {
                let w = args.next_pos().ok_or("waiter missing")?.to_string();
                args.reject_next()?;
                self.waiters.remove(&w).ok_or("unknown waiter")?;
                self.woken.remove(&w);
            }
            // release T: T's intents here were resolved.
            "release" => {
                let t = self.txn(args.next_pos().ok_or("txn missing")?);
                args.reject_next()?;
                self.locks.release_txn(t.id);
            }
            // queue: who is first in line, who waits, who was woken.
            "queue" => {
                args.reject_next()?;
                let mut names: Vec<&String> = self.waiters.keys().collect();
                names.sort();
                for w in names {
                    let waiter = &self.waiters[w];
                    let woken = self.woken.get_mut(w).is_some_and(|n| {
                        let waker = std::task::Waker::noop();
                        let mut cx = std::task::Context::from_waker(waker);
                        n.as_mut().poll(&mut cx).is_ready()
                    });
                    writeln!(
                        out,
                        "{w}: {}{}",
                        if waiter.is_first() { "pushes" } else { "waits" },
                        if woken { ", woken" } else { "" }
                    )?;
                }
            }
            // push P pushee=T: P waits for T at T's record.
            "push" => {
                let p = self.txn(args.next_pos().ok_or("pusher missing")?);
                let pushee = self.txn(args.take_key("pushee").ok_or("pushee= missing")?);
                args.reject_next()?;
                let name = format!("{}->{}", self.names[&p.id], self.names[&pushee.id]);
                let waiting = self.queue.enqueue(pushee.id, Some(p.id));
                self.pushes.insert(name, waiting);
            }
            // report P pushee=T: P learns who waits for it (QueryTxn at its own record)
            // and reports it in T's queue; prints whether that closes a cycle, and
            // whether P is the side that breaks it.
            "report" => {
                let p = self.txn(args.next_pos().ok_or("pusher missing")?);
                let pushee = self.txn(args.take_key("pushee").ok_or("pushee= missing")?);
                args.reject_next()?;
                let deps = self.queue.dependents(p.id);
                let name = format!("{}->{}", self.names[&p.id], self.names[&pushee.id]);
                let waiting = self.pushes.get(&name).ok_or("no such push")?;
                let cycle = deps.contains(&pushee.id);
                writeln!(
                    out,
                    "waiting for {}: {}",
                    self.names[&p.id],
                    self.names(&deps)
                )?;
                waiting.set_dependents(deps);
                if cycle {
                    writeln!(
                        out,
                        "cycle: {}",
                        if outranks(&p, &pushee) {
                            format!("{} aborts {}", self.names[&p.id], self.names[&pushee.id])
                        } else {
                            format!("{} waits for the other side to break it", self.names[&p.id])
                        }
                    )?;
                }
            }
            // done P pushee=T: the push ended.
            "done" => {
                let p = self.txn(args.next_pos().ok_or("pusher missing")?);
                let pushee = self.txn(args.take_key("pushee").ok_or("pushee= missing")?);
                args.reject_next()?;
                let name = format!("{}->{}", self.names[&p.id], self.names[&pushee.id]);
                self.pushes.remove(&name).ok_or("no such push")?;
            }
            name => return Err(format!("unknown command {name}").into()),
        }
        Ok(out)
    }
}

#[test]
fn goldenscripts() {
    crate::test_util::run_goldenscripts("src/testscripts/concurrency", || Runner {
        // The tables outlive the waiters that borrow them: leaked, once per script.
        locks: Box::leak(Box::default()),
        queue: Box::leak(Box::default()),
        txns: HashMap::new(),
        names: HashMap::new(),
        waiters: HashMap::new(),
        pushes: HashMap::new(),
        woken: HashMap::new(),
    });
}
