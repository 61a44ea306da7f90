//! A checker for list-append transaction histories: it finds the isolation anomalies of
//! Adya's taxonomy (G0, G1a, G1b, G1c, G-single, G2) in what the clients observed.
//!
//! ## The workload
//!
//! Every key holds a list of integers. A transaction is a sequence of micro-ops: append
//! a value to a key's list, or read a key's whole list. No value is appended to a key
//! twice in a history, so each value in a read names the one transaction that appended
//! it. And since lists only grow, one read shows not only the version it saw but the
//! key's whole version history up to it: reading `[3 5 8]` says that the key's versions
//! were installed in the order 3, then 5, then 8. Every read of a key must therefore be
//! a prefix of every longer read of it, and the longest read is the key's known version
//! order.
//!
//! ## From reads to a dependency graph
//!
//! The graph's nodes are the transactions that took effect: the committed ones, and the
//! ones of unknown outcome that some read observed (so they did commit). Its edges say
//! "must come before" in any serial order that explains the reads:
//!
//! ```text
//!   key 7, longest read:     [ 3    5    8 ]
//!   appended by:               T1   T2   T4
//!
//!   ww  T1 -> T2, T2 -> T4     (5 was installed right after 3, 8 right after 5)
//!   T3 reads key 7 as [3 5]:
//!   wr  T2 -> T3               (T3 saw the version T2 wrote)
//!   rw  T3 -> T4               (T4 installed the next version, which T3 did not see)
//! ```
//!
//! A transaction's read of a key it has itself appended to ends with its own values;
//! those are left off before deriving edges, so a transaction's view of the others is
//! what comes before them. Edges from a transaction to itself are dropped.
//!
//! ## Cycles
//!
//! A serializable history has an acyclic graph. Tarjan's algorithm finds the strongly
//! connected components; inside each one the checker looks for one short cycle (breadth
//! first) of each class, from the most to the least severe:
//!
//! | class    | edges in the cycle              | phenomenon                     |
//! |----------|---------------------------------|--------------------------------|
//! | G0       | ww only                         | write cycle                    |
//! | G1c      | ww and wr, at least one wr      | circular information flow      |
//! | G-single | exactly one rw, others ww or wr | read skew, lost update         |
//! | G2       | two or more rw                  | write skew, anti-dependencies  |
//!
//! G0 cycles are searched among the ww edges alone, G1c cycles across one wr edge and
//! back over ww and wr edges, G-single cycles across one rw edge and back over ww and
//! wr edges. A component in which none of these exist holds only cycles with two or
//! more rw edges: it is reported as G2, with the shortest cycle through one of its
//! first few transactions. (So G2 is not reported where something more severe is.)
//! Each cycle is classified by counting its edges, so the class reported always
//! matches the cycle shown.
//!
//! HAZARD: looking for G-single costs a breadth-first search per rw edge of the
//! component. Past [`WORK_LIMIT`] edge visits the search stops; in a huge component a
//! G-single cycle may then be missed and the component reported as G2 instead (still a
//! failure, and the cycle shown is still classified by its edges).
//!
//! Anomalies that need no graph are found from the reads directly: reading an aborted
//! transaction's append (G1a), reading a transaction's append to a key without its later
//! append to the same key (G1b), reads that are not prefixes of one another, lists with
//! duplicates, values nobody appended, and a transaction's reads that disagree with its
//! own appends.
//!
//! ## Real time
//!
//! When a transaction returned before another was called, a strictly serializable
//! database orders them so. These real-time edges (transitively reduced: an edge is left
//! out when a chain of them implies it) are added in a second pass, and the cycles that
//! need one are reported in [`Report::realtime`]: informative, not failures, since Cairn
//! promises serializability. [`Options::strict`] makes them failures.
//!
//! HAZARD: the real-time edges trust `call` and `ret` to come from one clock that all
//! clients share and that never goes backwards. Times from different machines' wall
//! clocks would make up edges that the database never promised.
//!
//! HAZARD: a committed append that no read observed leaves no trace in any version order,
//! so it gets no edges; a history whose reads are rare checks little. [`Stats`] counts the
//! edges, so a test can make sure that the check was not vacuous.
//!
//! HAZARD: a key whose reads disagree (incompatible orders, duplicates) has no trusted
//! version order, so it contributes no ww or rw edges; only its wr edges remain.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;

/// One step of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MicroOp {
    /// Appends `value` to the list at `key`. No (key, value) is appended twice in a history.
    Append { key: u64, value: u64 },
    /// Reads the whole list at `key`; `None` if the client did not see the result.
    Read { key: u64, list: Option<Vec<u64>> },
}

impl MicroOp {
    /// An append of `value` to `key`.
    pub fn append(key: u64, value: u64) -> MicroOp {
        MicroOp::Append { key, value }
    }

    /// A read of `key` that returned `list`.
    pub fn read(key: u64, list: &[u64]) -> MicroOp {
        MicroOp::Read {
            key,
            list: Some(list.to_vec()),
        }
    }
}

/// How a transaction ended, as its client saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The commit was acknowledged.
    Committed,
    /// Known not to have taken effect.
    Aborted,
    /// The client could not tell (a timeout, a lost connection): its appends may or may
    /// not have taken effect. Its reads are not trusted and are ignored.
    Unknown,
}

/// One transaction of a history.
///
/// Invariants, checked by [`check`] and reported as [`Malformed`] when broken:
/// - `id` is unique in the history.
/// - no (key, value) is appended twice in the history, by one transaction or two.
/// - `ret`, when known, is not before `call`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Txn {
    /// Names the transaction in reports.
    pub id: usize,
    /// The micro-ops, in the order the transaction ran them.
    pub ops: Vec<MicroOp>,
    /// How it ended.
    pub outcome: Outcome,
    /// When the client called it, on a clock shared by all clients (any monotonic unit).
    pub call: u64,
    /// When the client saw its outcome, on the same clock; `None` if it never did.
    pub ret: Option<u64>,
}

/// What to check beyond serializability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Count cycles that need a real-time edge as anomalies (strict serializability).
    /// When false they are listed in [`Report::realtime`] and do not fail the check.
    pub strict: bool,
}

/// Why transaction `from` must come before transaction `to` (an edge of the graph).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dep {
    /// ww: on `key`, `to` appended `to_value` right after `from`'s `from_value`.
    Ww {
        key: u64,
        from_value: u64,
        to_value: u64,
    },
    /// wr: `to` read `key` up to `value`, which `from` appended.
    Wr { key: u64, value: u64 },
    /// rw: `from` read `key` up to `read_last` (`None`: it saw none of the others'
    /// values), and `to` appended the next value, `to_value`.
    Rw {
        key: u64,
        read_last: Option<u64>,
        to_value: u64,
    },
    /// rt: `from` returned at `from_ret`, before `to` was called at `to_call`.
    Realtime { from_ret: u64, to_call: u64 },
}

impl Dep {
    /// The short name of the edge's kind: `ww`, `wr`, `rw` or `rt`.
    pub fn label(&self) -> &'static str {
        match self {
            Dep::Ww { .. } => "ww",
            Dep::Wr { .. } => "wr",
            Dep::Rw { .. } => "rw",
            Dep::Realtime { .. } => "rt",
        }
    }

    fn kind(&self) -> u8 {
        match self {
            Dep::Ww { .. } => WW,
            Dep::Wr { .. } => WR,
            Dep::Rw { .. } => RW,
            Dep::Realtime { .. } => RT,
        }
    }
}

/// One edge of a cycle, between transaction ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edge {
    pub from: usize,
    pub to: usize,
    pub dep: Dep,
}

/// A cycle of the dependency graph.
///
/// Invariant: `edges[i].to == edges[i + 1].from`, and the last edge returns to the first
/// edge's `from`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    pub edges: Vec<Edge>,
}

impl Cycle {
    /// The ids of the transactions on the cycle, in its order.
    pub fn txns(&self) -> Vec<usize> {
        self.edges.iter().map(|e| e.from).collect()
    }

    /// How many of its edges have this label (`ww`, `wr`, `rw`, `rt`).
    pub fn count(&self, label: &str) -> usize {
        self.edges.iter().filter(|e| e.dep.label() == label).count()
    }
}

/// A list one transaction read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub txn: usize,
    pub list: Vec<u64>,
}

/// What a transaction should have read of a key, given its own earlier micro-ops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// Exactly this list: its earlier read of the key plus its appends since.
    Exactly(Vec<u64>),
    /// A list that ends with its own appends so far, in order, and holds none of its
    /// values before them.
    EndingWith(Vec<u64>),
}

/// Something the history shows that no serializable execution could. Transactions are
/// named by their ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// A cycle of ww edges alone.
    G0 { cycle: Cycle },
    /// `readers` read `value` in `key`, appended by `writer`, which aborted.
    G1a {
        key: u64,
        value: u64,
        writer: usize,
        readers: Vec<usize>,
    },
    /// `readers` read `key` up to `writer`'s `value`, but `writer` later appended `next`
    /// to the same key: they saw the middle of a transaction.
    G1b {
        key: u64,
        value: u64,
        next: u64,
        writer: usize,
        readers: Vec<usize>,
    },
    /// A cycle of ww and wr edges, at least one of them wr.
    G1c { cycle: Cycle },
    /// A cycle with exactly one rw edge.
    GSingle { cycle: Cycle },
    /// A cycle with two or more rw edges.
    G2 { cycle: Cycle },
    /// A cycle that needs at least one real-time edge.
    RealtimeCycle { cycle: Cycle },
    /// `readers` read a list of `key` that holds `value` more than once.
    DuplicateElements {
        key: u64,
        value: u64,
        readers: Vec<usize>,
    },
    /// Two reads of `key` of which neither is a prefix of the other: the longest read
    /// and the first read that disagrees with it.
    IncompatibleOrder {
        key: u64,
        longest: Observed,
        other: Observed,
    },
    /// `readers` read `values` in `key`, which no transaction appended to `key`.
    GarbageRead {
        key: u64,
        values: Vec<u64>,
        readers: Vec<usize>,
    },
    /// A transaction's read disagrees with its own earlier micro-ops on the key.
    Internal {
        txn: usize,
        key: u64,
        read: Vec<u64>,
        expected: Expected,
    },
}

impl Anomaly {
    /// The anomaly's short name: `G0`, `G1a`, `G1b`, `G1c`, `G-single`, `G2`,
    /// `realtime`, `duplicate-elements`, `incompatible-order`, `garbage-read` or
    /// `internal`.
    pub fn name(&self) -> &'static str {
        match self {
            Anomaly::G0 { .. } => "G0",
            Anomaly::G1a { .. } => "G1a",
            Anomaly::G1b { .. } => "G1b",
            Anomaly::G1c { .. } => "G1c",
            Anomaly::GSingle { .. } => "G-single",
            Anomaly::G2 { .. } => "G2",
            Anomaly::RealtimeCycle { .. } => "realtime",
            Anomaly::DuplicateElements { .. } => "duplicate-elements",
            Anomaly::IncompatibleOrder { .. } => "incompatible-order",
            Anomaly::GarbageRead { .. } => "garbage-read",
            Anomaly::Internal { .. } => "internal",
        }
    }

    /// The cycle, for the anomalies that are one.
    pub fn cycle(&self) -> Option<&Cycle> {
        match self {
            Anomaly::G0 { cycle }
            | Anomaly::G1c { cycle }
            | Anomaly::GSingle { cycle }
            | Anomaly::G2 { cycle }
            | Anomaly::RealtimeCycle { cycle } => Some(cycle),
            Anomaly::G1a { .. }
            | Anomaly::G1b { .. }
            | Anomaly::DuplicateElements { .. }
            | Anomaly::IncompatibleOrder { .. }
            | Anomaly::GarbageRead { .. }
            | Anomaly::Internal { .. } => None,
        }
    }
}

/// A history that breaks the workload's rules: a bug in the test, not the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// `count` transactions share this id.
    DuplicateTxnId { id: usize, count: usize },
    /// Two appends of the same value to the same key (`txns` may name one transaction
    /// twice).
    DuplicateAppend {
        key: u64,
        value: u64,
        txns: [usize; 2],
    },
    /// A transaction returned before it was called; it gets no real-time edges.
    ReturnBeforeCall { id: usize, call: u64, ret: u64 },
}

/// How much the check had to work with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub committed: usize,
    pub aborted: usize,
    pub unknown: usize,
    /// Transactions of unknown outcome that some read observed (graph nodes).
    pub unknown_observed: usize,
    /// Keys with a trusted version order.
    pub ordered_keys: usize,
    /// Pairs of transactions with an edge of each kind.
    pub ww: usize,
    pub wr: usize,
    pub rw: usize,
    pub realtime: usize,
}

/// The result of a check.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// What the history shows that serializability forbids (and, with
    /// [`Options::strict`], real-time cycles).
    pub anomalies: Vec<Anomaly>,
    /// Cycles that need a real-time edge, when not counted as anomalies: the history is
    /// serializable but not strictly so.
    pub realtime: Vec<Anomaly>,
    /// Ways the history breaks the workload's rules.
    pub malformed: Vec<Malformed>,
    pub stats: Stats,
}

impl Report {
    /// True if no anomaly was found and the history is well formed.
    pub fn is_ok(&self) -> bool {
        self.anomalies.is_empty() && self.malformed.is_empty()
    }

    /// The names of the anomalies found, in report order.
    pub fn names(&self) -> Vec<&'static str> {
        self.anomalies.iter().map(Anomaly::name).collect()
    }
}

/// Checks a history for serializability: [`check_with`] with default [`Options`].
pub fn check(history: &[Txn]) -> Report {
    check_with(history, Options::default())
}

/// Checks a history. The work is linear in the total length of the reads plus the number
/// of edges, except for the cycle search inside strongly connected components, which is
/// bounded by [`WORK_LIMIT`] edge visits per component beyond its first search.
pub fn check_with(history: &[Txn], options: Options) -> Report {
    let mut checker = Checker::index(history);
    checker.check_internal();
    checker.check_values();
    let orders = checker.version_orders();
    checker.check_intermediate();
    checker.build_graph(&orders);
    checker.find_cycles(options);
    checker.report
}

/// Edge kinds, as bits of a pair's mask. Several can join the same pair.
const WW: u8 = 1;
const WR: u8 = 1 << 1;
const RW: u8 = 1 << 2;
const RT: u8 = 1 << 3;
const DEPS: u8 = WW | WR | RW;

/// The kinds in order of preference when a pair has several. Every search crosses edges
/// of a prefix of this order (WW; WW|WR; DEPS; DEPS|RT), so the preferred kind of a pair
/// that a search crossed is one that the search allowed.
const KINDS: [u8; 4] = [WW, WR, RW, RT];

/// How many cycles of one search to compare before keeping the shortest.
const TRIES: usize = 8;

/// Edge visits that the optional searches of one component may spend.
pub const WORK_LIMIT: usize = 20_000_000;

fn slot(kind: u8) -> usize {
    kind.trailing_zeros() as usize
}

fn preferred(mask: u8) -> Option<u8> {
    KINDS.into_iter().find(|&k| mask & k != 0)
}

/// The edges from one transaction to another, each with the first explanation found.
#[derive(Clone, Debug, Default)]
struct Labels {
    mask: u8,
    why: [Option<Dep>; 4],
}

/// A committed, observed read.
struct Read<'a> {
    /// Index in the history.
    txn: usize,
    key: u64,
    list: &'a [u64],
    /// The length of the list without the reader's own trailing appends: the part that
    /// shows the other transactions.
    external: usize,
}

/// A key's trusted version order: its longest read.
struct Order<'a> {
    values: &'a [u64],
    position: HashMap<u64, usize>,
}

/// The checker's state. Transactions are named by their index in the history until
/// they go into the report, which names them by id.
struct Checker<'a> {
    txns: &'a [Txn],
    /// Who appended each (key, value).
    writer: HashMap<(u64, u64), usize>,
    /// Each transaction's appends per key, in op order.
    appends: Vec<BTreeMap<u64, Vec<u64>>>,
    /// The committed, observed reads, in history order.
    reads: Vec<Read<'a>>,
    /// Whether a transaction is a node of the graph: committed, or unknown but observed.
    in_graph: Vec<bool>,
    /// The graph: per transaction, its edges by target.
    out: Vec<BTreeMap<usize, Labels>>,
    /// The same graph as sorted adjacency lists with masks, for the searches.
    adj: Vec<Vec<(usize, u8)>>,
    report: Report,
}

impl<'a> Checker<'a> {
    fn index(txns: &'a [Txn]) -> Self {
        let mut report = Report::default();
        let mut ids: BTreeMap<usize, usize> = BTreeMap::new();
        for t in txns {
            *ids.entry(t.id).or_default() += 1;
        }
        for (&id, &count) in &ids {
            if count > 1 {
                report
                    .malformed
                    .push(Malformed::DuplicateTxnId { id, count });
            }
        }

        let mut writer = HashMap::new();
        let mut appends = vec![BTreeMap::new(); txns.len()];
        for (i, t) in txns.iter().enumerate() {
            match t.outcome {
                Outcome::Committed => report.stats.committed += 1,
                Outcome::Aborted => report.stats.aborted += 1,
                Outcome::Unknown => report.stats.unknown += 1,
            }
            if let Some(ret) = t.ret
                && ret < t.call
            {
                report.malformed.push(Malformed::ReturnBeforeCall {
                    id: t.id,
                    call: t.call,
                    ret,
                });
            }
            for op in &t.ops {
                if let MicroOp::Append { key, value } = *op {
                    appends[i].entry(key).or_insert_with(Vec::new).push(value);
                    match writer.entry((key, value)) {
                        Entry::Occupied(first) => {
                            let first: usize = *first.get();
                            report.malformed.push(Malformed::DuplicateAppend {
                                key,
                                value,
                                txns: [txns[first].id, t.id],
                            });
                        }
                        Entry::Vacant(slot) => {
                            slot.insert(i);
                        }
                    }
                }
            }
        }

        let mut reads = Vec::new();
        for (i, t) in txns.iter().enumerate() {
            if t.outcome != Outcome::Committed {
                continue;
            }
            for op in &t.ops {
                if let MicroOp::Read {
                    key,
                    list: Some(list),
                } = op
                {
                    let mut external = list.len();
                    while let Some(&v) = list[..external].last()
                        && writer.get(&(*key, v)) == Some(&i)
                    {
                        external -= 1;
                    }
                    reads.push(Read {
                        txn: i,
                        key: *key,
                        list,
                        external,
                    });
                }
            }
        }

        let in_graph = txns
            .iter()
            .map(|t| t.outcome == Outcome::Committed)
            .collect();
        Checker {
            txns,
            writer,
            appends,
            reads,
            in_graph,
            out: Vec::new(),
            adj: Vec::new(),
            report,
        }
    }

    fn id(&self, index: usize) -> usize {
        self.txns[index].id
    }

    fn ids(&self, indexes: &BTreeSet<usize>) -> Vec<usize> {
        indexes.iter().map(|&i| self.id(i)).collect()
    }

    /// Each committed transaction's reads must agree with its own micro-ops: a key read
    /// again shows the earlier read plus the appends since; a key read first shows the
    /// transaction's appends so far at its end, and none of its values before them.
    fn check_internal(&mut self) {
        let txns = self.txns;
        for (i, t) in txns.iter().enumerate() {
            if t.outcome != Outcome::Committed {
                continue;
            }
            // Per key: the last read, and the appends since it (or since the start).
            let mut state: HashMap<u64, (Option<&[u64]>, Vec<u64>)> = HashMap::new();
            for op in &t.ops {
                match op {
                    MicroOp::Append { key, value } => {
                        state.entry(*key).or_default().1.push(*value);
                    }
                    MicroOp::Read {
                        key,
                        list: Some(list),
                    } => {
                        let (last, since) = state.entry(*key).or_default();
                        let wrong = match last {
                            Some(earlier) => {
                                let mut expected = earlier.to_vec();
                                expected.extend_from_slice(since);
                                (*list != expected).then_some(Expected::Exactly(expected))
                            }
                            None => {
                                let ok =
                                    list.strip_suffix(since.as_slice()).is_some_and(|before| {
                                        before
                                            .iter()
                                            .all(|&v| self.writer.get(&(*key, v)) != Some(&i))
                                    });
                                (!ok).then(|| Expected::EndingWith(since.clone()))
                            }
                        };
                        if let Some(expected) = wrong {
                            self.report.anomalies.push(Anomaly::Internal {
                                txn: t.id,
                                key: *key,
                                read: list.clone(),
                                expected,
                            });
                        }
                        *last = Some(list);
                        since.clear();
                    }
                    // The client did not see it: nothing to learn.
                    MicroOp::Read { list: None, .. } => {}
                }
            }
        }
    }

    /// Looks at every value of every read: duplicates, values nobody appended, values
    /// of aborted transactions (G1a). Marks the unknown transactions that were observed
    /// as graph nodes.
    fn check_values(&mut self) {
        let mut duplicates: BTreeMap<(u64, u64), BTreeSet<usize>> = BTreeMap::new();
        let mut garbage: BTreeMap<u64, (BTreeSet<u64>, BTreeSet<usize>)> = BTreeMap::new();
        let mut aborted: BTreeMap<(u64, u64), (usize, BTreeSet<usize>)> = BTreeMap::new();
        for read in &self.reads {
            let mut seen = HashSet::with_capacity(read.list.len());
            for &v in read.list {
                if !seen.insert(v) {
                    duplicates
                        .entry((read.key, v))
                        .or_default()
                        .insert(read.txn);
                    continue;
                }
                let Some(&w) = self.writer.get(&(read.key, v)) else {
                    let (values, readers) = garbage.entry(read.key).or_default();
                    values.insert(v);
                    readers.insert(read.txn);
                    continue;
                };
                match self.txns[w].outcome {
                    Outcome::Committed => {}
                    Outcome::Unknown => self.in_graph[w] = true,
                    Outcome::Aborted => {
                        aborted
                            .entry((read.key, v))
                            .or_insert_with(|| (w, BTreeSet::new()))
                            .1
                            .insert(read.txn);
                    }
                }
            }
        }
        self.report.stats.unknown_observed = (0..self.txns.len())
            .filter(|&i| self.in_graph[i] && self.txns[i].outcome == Outcome::Unknown)
            .count();

        let mut found = Vec::new();
        for ((key, value), readers) in &duplicates {
            found.push(Anomaly::DuplicateElements {
                key: *key,
                value: *value,
                readers: self.ids(readers),
            });
        }
        for (key, (values, readers)) in &garbage {
            found.push(Anomaly::GarbageRead {
                key: *key,
                values: values.iter().copied().collect(),
                readers: self.ids(readers),
            });
        }
        for ((key, value), (writer, readers)) in &aborted {
            found.push(Anomaly::G1a {
                key: *key,
                value: *value,
                writer: self.id(*writer),
                readers: self.ids(readers),
            });
        }
        self.report.anomalies.extend(found);
    }

    /// Checks that each key's reads are prefixes of its longest read, and returns the
    /// longest read of each key where they are and it has no duplicates.
    fn version_orders(&mut self) -> BTreeMap<u64, Order<'a>> {
        let mut by_key: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        for (r, read) in self.reads.iter().enumerate() {
            by_key.entry(read.key).or_default().push(r);
        }
        let mut orders = BTreeMap::new();
        for (key, reads) in by_key {
            // The first of the longest reads, in history order.
            let Some(longest) = reads.iter().copied().reduce(|best, r| {
                if self.reads[r].list.len() > self.reads[best].list.len() {
                    r
                } else {
                    best
                }
            }) else {
                continue;
            };
            let longest = &self.reads[longest];
            let conflict = reads
                .iter()
                .map(|&r| &self.reads[r])
                .find(|r| !longest.list.starts_with(r.list));
            if let Some(other) = conflict {
                let anomaly = Anomaly::IncompatibleOrder {
                    key,
                    longest: Observed {
                        txn: self.id(longest.txn),
                        list: longest.list.to_vec(),
                    },
                    other: Observed {
                        txn: self.id(other.txn),
                        list: other.list.to_vec(),
                    },
                };
                self.report.anomalies.push(anomaly);
                continue;
            }
            let mut position = HashMap::with_capacity(longest.list.len());
            let mut duplicated = false;
            for (p, &v) in longest.list.iter().enumerate() {
                duplicated |= position.insert(v, p).is_some();
            }
            // Duplicates were reported by check_values; the positions are ambiguous.
            if !duplicated {
                orders.insert(
                    key,
                    Order {
                        values: longest.list,
                        position,
                    },
                );
            }
        }
        self.report.stats.ordered_keys = orders.len();
        orders
    }

    /// G1b: a read that ends, before the reader's own appends, with another
    /// transaction's append to the key when that transaction appended to it again later.
    /// (A read in which such a value is followed by a third transaction's value shows an
    /// interleaving instead, which the graph reports as a cycle.)
    fn check_intermediate(&mut self) {
        let mut found: BTreeMap<(u64, u64), (usize, u64, BTreeSet<usize>)> = BTreeMap::new();
        for read in &self.reads {
            let Some(&v) = read.list[..read.external].last() else {
                continue;
            };
            let Some(&w) = self.writer.get(&(read.key, v)) else {
                continue;
            };
            // The reader's own values were left off; an aborted writer is G1a already.
            if w == read.txn || self.txns[w].outcome == Outcome::Aborted {
                continue;
            }
            let Some(theirs) = self.appends[w].get(&read.key) else {
                continue;
            };
            if let Some(p) = theirs.iter().position(|&x| x == v)
                && let Some(&next) = theirs.get(p + 1)
            {
                found
                    .entry((read.key, v))
                    .or_insert_with(|| (w, next, BTreeSet::new()))
                    .2
                    .insert(read.txn);
            }
        }
        for ((key, value), (writer, next, readers)) in &found {
            let anomaly = Anomaly::G1b {
                key: *key,
                value: *value,
                next: *next,
                writer: self.id(*writer),
                readers: self.ids(readers),
            };
            self.report.anomalies.push(anomaly);
        }
    }

    /// Derives the ww, wr, rw and real-time edges between graph nodes.
    fn build_graph(&mut self, orders: &BTreeMap<u64, Order<'a>>) {
        let mut out = vec![BTreeMap::new(); self.txns.len()];
        let node = |key: u64, v: u64| {
            self.writer
                .get(&(key, v))
                .copied()
                .filter(|&w| self.in_graph[w])
        };

        // ww: consecutive values of a version order, skipping values of transactions
        // outside the graph (aborted ones, already reported).
        for (&key, order) in orders {
            let mut prev: Option<(u64, usize)> = None;
            for &v in order.values {
                let Some(w) = node(key, v) else { continue };
                if let Some((pv, pw)) = prev {
                    let dep = Dep::Ww {
                        key,
                        from_value: pv,
                        to_value: v,
                    };
                    add_edge(&mut out, pw, w, dep);
                }
                prev = Some((v, w));
            }
        }

        for read in &self.reads {
            let key = read.key;
            let last = read.list[..read.external].last().copied();
            // wr: the reader saw the version that the last value's writer installed.
            if let Some(v) = last
                && let Some(w) = node(key, v)
            {
                add_edge(&mut out, w, read.txn, Dep::Wr { key, value: v });
            }
            // rw: the writer of the next version in the order installed what the reader
            // did not see.
            let Some(order) = orders.get(&key) else {
                continue;
            };
            let start = match last {
                None => 0,
                Some(v) => match order.position.get(&v) {
                    Some(p) => p + 1,
                    None => continue,
                },
            };
            let next = order.values[start..]
                .iter()
                .find_map(|&x| node(key, x).map(|w| (x, w)));
            if let Some((to_value, w)) = next {
                let dep = Dep::Rw {
                    key,
                    read_last: last,
                    to_value,
                };
                add_edge(&mut out, read.txn, w, dep);
            }
        }

        self.add_realtime_edges(&mut out);

        for labels in out.iter().flat_map(|m| m.values()) {
            let stats = &mut self.report.stats;
            stats.ww += usize::from(labels.mask & WW != 0);
            stats.wr += usize::from(labels.mask & WR != 0);
            stats.rw += usize::from(labels.mask & RW != 0);
            stats.realtime += usize::from(labels.mask & RT != 0);
        }
        self.adj = out
            .iter()
            .map(|m| m.iter().map(|(&to, l)| (to, l.mask)).collect())
            .collect();
        self.out = out;
    }

    /// Real-time edges, transitively reduced. A sweep over calls and returns in time
    /// order keeps the frontier: the transactions that returned and are not yet implied
    /// by a later one. A call gets an edge from each of the frontier; a return removes
    /// from the frontier those its own call had edges from (they now reach what follows
    /// through it) and joins it. At equal times calls go first, so a return and a call
    /// at the same instant are concurrent.
    fn add_realtime_edges(&self, out: &mut [BTreeMap<usize, Labels>]) {
        const CALL: u8 = 0;
        const RETURN: u8 = 1;
        let mut events = Vec::new();
        for (i, t) in self.txns.iter().enumerate() {
            if !self.in_graph[i] || t.ret.is_some_and(|r| r < t.call) {
                continue;
            }
            events.push((t.call, CALL, i));
            if let Some(ret) = t.ret {
                events.push((ret, RETURN, i));
            }
        }
        events.sort_unstable();
        let mut frontier: BTreeSet<usize> = BTreeSet::new();
        let mut preds: HashMap<usize, Vec<usize>> = HashMap::new();
        for (time, event, i) in events {
            if event == CALL {
                let before: Vec<usize> = frontier.iter().copied().collect();
                for &f in &before {
                    if let Some(from_ret) = self.txns[f].ret {
                        let dep = Dep::Realtime {
                            from_ret,
                            to_call: time,
                        };
                        add_edge(out, f, i, dep);
                    }
                }
                preds.insert(i, before);
            } else {
                for f in preds.remove(&i).unwrap_or_default() {
                    frontier.remove(&f);
                }
                frontier.insert(i);
            }
        }
    }

    fn find_cycles(&mut self, options: Options) {
        let mut found = Vec::new();
        for component in components(&self.adj, DEPS) {
            found.extend(self.cycles_in(&component));
        }
        self.report.anomalies.extend(found);

        let mut realtime = Vec::new();
        if self.report.stats.realtime > 0 {
            for component in components(&self.adj, DEPS | RT) {
                let sub = Sub::new(&self.adj, &component, DEPS | RT);
                let candidates = sub.pairs(|m| m == RT);
                let mut work = 0;
                if let Some(cycle) = self.through(&sub, &candidates, RT, DEPS | RT, &mut work) {
                    realtime.push(classify(cycle));
                }
            }
        }
        if options.strict {
            self.report.anomalies.extend(realtime);
        } else {
            self.report.realtime = realtime;
        }
    }

    /// The cycles worth reporting in one strongly connected component of the ww, wr and
    /// rw edges: one per component of the ww edges (G0), one per component of the ww and
    /// wr edges that has a wr edge (G1c), one with a single rw edge (G-single), and if
    /// none of these, the shortest cycle found (G2).
    fn cycles_in(&self, component: &[usize]) -> Vec<Anomaly> {
        let mut work = 0;
        let mut cycles = Vec::new();

        let ww = Sub::new(&self.adj, component, WW);
        for part in components(&ww.adj, WW) {
            let sub = Sub::new(&self.adj, &ww.globals(&part), WW);
            cycles.extend(self.any_cycle(&sub, WW, &mut work));
        }

        let writes = Sub::new(&self.adj, component, WW | WR);
        let mut part_of: HashMap<usize, usize> = HashMap::new();
        for (p, part) in components(&writes.adj, WW | WR).into_iter().enumerate() {
            let nodes = writes.globals(&part);
            part_of.extend(nodes.iter().map(|&g| (g, p)));
            let sub = Sub::new(&self.adj, &nodes, WW | WR);
            let candidates = sub.pairs(|m| m & WR != 0 && m & WW == 0);
            cycles.extend(self.through(&sub, &candidates, WR, WW | WR, &mut work));
        }

        // A G-single cycle crosses one rw edge a -> b and returns from b to a over ww
        // and wr edges. Where a and b share a component of those, the way back surely
        // exists: try those first.
        let all = Sub::new(&self.adj, component, DEPS);
        let mut candidates = all.pairs(|m| m & RW != 0 && m & (WW | WR) == 0);
        candidates.sort_by_key(|&(a, b)| {
            let part = |l: usize| part_of.get(&all.nodes[l]);
            part(a).is_none() || part(a) != part(b)
        });
        cycles.extend(self.through(&all, &candidates, RW, WW | WR, &mut work));

        if cycles.is_empty() {
            cycles.extend(self.any_cycle(&all, DEPS, &mut work));
        }
        cycles.into_iter().map(classify).collect()
    }

    /// The shortest of the cycles through the first few nodes of `sub`, over `mask`.
    fn any_cycle(&self, sub: &Sub, mask: u8, work: &mut usize) -> Option<Cycle> {
        let mut best: Option<Vec<usize>> = None;
        for start in 0..sub.nodes.len().min(TRIES) {
            if start > 0 && *work >= WORK_LIMIT {
                break;
            }
            // The path runs from start back to start; the cycle leaves off the repeat.
            if let Some(path) = shortest_path(&sub.adj, mask, start, start, work)
                && let Some((_, nodes)) = path.split_last()
                && best.as_ref().is_none_or(|b| nodes.len() < b.len())
            {
                best = Some(nodes.to_vec());
            }
        }
        self.cycle(sub, &best?, None)
    }

    /// The shortest of the first few cycles that cross one of `candidates` (a -> b, as an
    /// edge of `kind`) and return from b to a over `mask`.
    fn through(
        &self,
        sub: &Sub,
        candidates: &[(usize, usize)],
        kind: u8,
        mask: u8,
        work: &mut usize,
    ) -> Option<Cycle> {
        let mut best: Option<Vec<usize>> = None;
        let mut found = 0;
        for (i, &(a, b)) in candidates.iter().enumerate() {
            if found >= TRIES || (i > 0 && *work >= WORK_LIMIT) {
                break;
            }
            // The path runs from b to a; the cycle is a, then the path without its a.
            if let Some(path) = shortest_path(&sub.adj, mask, b, a, work)
                && let Some((_, back)) = path.split_last()
            {
                found += 1;
                if best.as_ref().is_none_or(|n| back.len() + 1 < n.len()) {
                    let mut nodes = Vec::with_capacity(back.len() + 1);
                    nodes.push(a);
                    nodes.extend_from_slice(back);
                    best = Some(nodes);
                }
            }
        }
        self.cycle(sub, &best?, Some(kind))
    }

    /// Names the edges of a cycle of `sub`'s nodes (each followed by the next, the last
    /// by the first): the first as `first` if given, each other by preference.
    fn cycle(&self, sub: &Sub, nodes: &[usize], first: Option<u8>) -> Option<Cycle> {
        let mut edges = Vec::with_capacity(nodes.len());
        for (i, &a) in nodes.iter().enumerate() {
            let b = nodes[(i + 1) % nodes.len()];
            let (from, to) = (sub.nodes[a], sub.nodes[b]);
            let labels = self.out[from].get(&to)?;
            let kind = match first {
                Some(kind) if i == 0 => kind,
                _ => preferred(labels.mask)?,
            };
            let dep = labels.why[slot(kind)].clone()?;
            edges.push(Edge {
                from: self.id(from),
                to: self.id(to),
                dep,
            });
        }
        Some(Cycle { edges })
    }
}

/// Adds an edge, keeping the first explanation of each kind per pair. Self-edges are
/// dropped: a transaction does not depend on itself.
fn add_edge(out: &mut [BTreeMap<usize, Labels>], from: usize, to: usize, dep: Dep) {
    if from == to {
        return;
    }
    let kind = dep.kind();
    let labels = out[from].entry(to).or_default();
    if labels.why[slot(kind)].is_none() {
        labels.why[slot(kind)] = Some(dep);
        labels.mask |= kind;
    }
}

/// Names a cycle by what its edges are.
fn classify(cycle: Cycle) -> Anomaly {
    let rt = cycle.count("rt");
    let rw = cycle.count("rw");
    let wr = cycle.count("wr");
    match (rt, rw, wr) {
        (1.., _, _) => Anomaly::RealtimeCycle { cycle },
        (0, 0, 0) => Anomaly::G0 { cycle },
        (0, 0, 1..) => Anomaly::G1c { cycle },
        (0, 1, _) => Anomaly::GSingle { cycle },
        (0, 2.., _) => Anomaly::G2 { cycle },
    }
}

/// The subgraph induced by some nodes over some edge kinds, renumbered from 0 in the
/// order of the nodes' indexes.
///
/// Invariants: `nodes` is sorted; each adjacency list is sorted by target and holds
/// only nonzero masks.
struct Sub {
    /// Local number -> history index.
    nodes: Vec<usize>,
    adj: Vec<Vec<(usize, u8)>>,
}

impl Sub {
    fn new(adj: &[Vec<(usize, u8)>], nodes: &[usize], mask: u8) -> Sub {
        let mut nodes = nodes.to_vec();
        nodes.sort_unstable();
        let local: HashMap<usize, usize> = nodes.iter().enumerate().map(|(l, &g)| (g, l)).collect();
        let adj = nodes
            .iter()
            .map(|&g| {
                adj[g]
                    .iter()
                    .filter(|&&(_, m)| m & mask != 0)
                    .filter_map(|&(to, m)| local.get(&to).map(|&l| (l, m & mask)))
                    .collect()
            })
            .collect();
        Sub { nodes, adj }
    }

    /// History indexes of local nodes.
    fn globals(&self, local: &[usize]) -> Vec<usize> {
        local.iter().map(|&l| self.nodes[l]).collect()
    }

    /// The pairs whose mask passes `keep`.
    fn pairs(&self, keep: impl Fn(u8) -> bool) -> Vec<(usize, usize)> {
        let mut pairs = Vec::new();
        for (a, edges) in self.adj.iter().enumerate() {
            pairs.extend(
                edges
                    .iter()
                    .filter(|&&(_, m)| keep(m))
                    .map(|&(b, _)| (a, b)),
            );
        }
        pairs
    }
}

/// Tarjan's strongly connected components over the edges in `mask`, without recursion
/// (a history's chains are long). Returns the components of more than one node, each
/// sorted.
fn components(adj: &[Vec<(usize, u8)>], mask: u8) -> Vec<Vec<usize>> {
    let mut tarjan = Tarjan {
        index: vec![None; adj.len()],
        low: vec![0; adj.len()],
        on_stack: vec![false; adj.len()],
        stack: Vec::new(),
        calls: Vec::new(),
        next: 0,
    };
    let mut found = Vec::new();
    for root in 0..adj.len() {
        if tarjan.index[root].is_some() {
            continue;
        }
        tarjan.visit(root);
        while let Some(&(v, pos)) = tarjan.calls.last() {
            if let Some(&(w, m)) = adj[v].get(pos) {
                if let Some(top) = tarjan.calls.last_mut() {
                    top.1 += 1;
                }
                if m & mask == 0 {
                    continue;
                }
                match tarjan.index[w] {
                    None => tarjan.visit(w),
                    Some(iw) if tarjan.on_stack[w] => tarjan.low[v] = tarjan.low[v].min(iw),
                    Some(_) => {}
                }
                continue;
            }
            // All of v's edges are explored: return to its caller.
            tarjan.calls.pop();
            if let Some(&(parent, _)) = tarjan.calls.last() {
                tarjan.low[parent] = tarjan.low[parent].min(tarjan.low[v]);
            }
            if Some(tarjan.low[v]) == tarjan.index[v] {
                let mut component = Vec::new();
                while let Some(w) = tarjan.stack.pop() {
                    tarjan.on_stack[w] = false;
                    component.push(w);
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort_unstable();
                    found.push(component);
                }
            }
        }
    }
    found
}

/// The state of Tarjan's algorithm, with its recursion kept in `calls`.
struct Tarjan {
    /// The order in which nodes were first visited.
    index: Vec<Option<usize>>,
    /// The lowest index reachable from a node through its subtree and one back edge.
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    /// The simulated call stack: a node and the position of its next edge to explore.
    calls: Vec<(usize, usize)>,
    next: usize,
}

impl Tarjan {
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        self.calls.push((v, 0));
    }
}

/// The shortest path of at least one edge from `from` to `to` over the edges in `mask`,
/// as its nodes, both ends included (`from == to` finds a cycle). Adds the edges it
/// examined to `work`.
fn shortest_path(
    adj: &[Vec<(usize, u8)>],
    mask: u8,
    from: usize,
    to: usize,
    work: &mut usize,
) -> Option<Vec<usize>> {
    const NONE: usize = usize::MAX;
    let mut parent = vec![NONE; adj.len()];
    let mut queue = VecDeque::new();
    // Start from `from`'s successors, so that reaching `from` again counts.
    let mut expand = |v: usize, parent: &mut Vec<usize>, queue: &mut VecDeque<usize>| {
        for &(w, m) in &adj[v] {
            *work += 1;
            if m & mask != 0 && parent[w] == NONE {
                parent[w] = v;
                queue.push_back(w);
            }
        }
    };
    expand(from, &mut parent, &mut queue);
    while let Some(v) = queue.pop_front() {
        if v == to {
            // Walk back to `from`: every parent chain ends at one of its successors,
            // whose parent is `from`. The bound guards against a broken chain.
            let mut path = vec![to];
            let mut at = to;
            for _ in 0..adj.len() {
                at = parent[at];
                if at == NONE {
                    return None;
                }
                path.push(at);
                if at == from {
                    path.reverse();
                    return Some(path);
                }
            }
            return None;
        }
        expand(v, &mut parent, &mut queue);
    }
    None
}

/// A list, abbreviated in the middle when long.
struct List<'a>(&'a [u64]);

impl fmt::Display for List<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const EDGE: usize = 5;
        let show = |f: &mut fmt::Formatter<'_>, values: &[u64]| -> fmt::Result {
            for (i, v) in values.iter().enumerate() {
                if i > 0 {
                    write!(f, " ")?;
                }
                write!(f, "{v}")?;
            }
            Ok(())
        };
        write!(f, "[")?;
        if self.0.len() <= 2 * EDGE + 2 {
            show(f, self.0)?;
        } else {
            show(f, &self.0[..EDGE])?;
            write!(f, " …{} more… ", self.0.len() - 2 * EDGE)?;
            show(f, &self.0[self.0.len() - EDGE..])?;
        }
        write!(f, "]")
    }
}

/// Transaction ids, abbreviated when many.
struct Txns<'a>(&'a [usize]);

impl fmt::Display for Txns<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 5;
        for (i, id) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "T{id}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, " and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

impl fmt::Display for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = (self.from, self.to);
        write!(f, "T{from} -{}-> T{to}: ", self.dep.label())?;
        match &self.dep {
            Dep::Ww {
                key,
                from_value,
                to_value,
            } => write!(
                f,
                "on key {key}, T{to} appended {to_value} right after T{from}'s {from_value}"
            ),
            Dep::Wr { key, value } => {
                write!(f, "T{to} read key {key} up to {value}, appended by T{from}")
            }
            Dep::Rw {
                key,
                read_last: Some(last),
                to_value,
            } => write!(
                f,
                "T{from} read key {key} up to {last}, so it missed the next value, \
                 T{to}'s {to_value}"
            ),
            Dep::Rw {
                key,
                read_last: None,
                to_value,
            } => write!(
                f,
                "T{from} read key {key} with none of the others' values, so it missed the \
                 first, T{to}'s {to_value}"
            ),
            Dep::Realtime { from_ret, to_call } => write!(
                f,
                "T{from} returned at {from_ret}, before T{to} was called at {to_call}"
            ),
        }
    }
}

impl fmt::Display for Cycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for edge in &self.edges {
            write!(f, "T{} -{}-> ", edge.from, edge.dep.label())?;
        }
        if let Some(first) = self.edges.first() {
            write!(f, "T{}", first.from)?;
        }
        for edge in &self.edges {
            write!(f, "\n    {edge}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Expected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expected::Exactly(list) => write!(f, "exactly {}", List(list)),
            Expected::EndingWith(own) => write!(
                f,
                "a list ending with its own appends {} and holding none of its values before them",
                List(own)
            ),
        }
    }
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::G0 { cycle } => write!(f, "G0 (write cycle): {cycle}"),
            Anomaly::G1a {
                key,
                value,
                writer,
                readers,
            } => write!(
                f,
                "G1a (aborted read): {} read {value} in key {key}, appended by T{writer}, \
                 which aborted",
                Txns(readers)
            ),
            Anomaly::G1b {
                key,
                value,
                next,
                writer,
                readers,
            } => write!(
                f,
                "G1b (intermediate read): {} read key {key} up to T{writer}'s {value}, but \
                 T{writer} then appended {next} to it",
                Txns(readers)
            ),
            Anomaly::G1c { cycle } => write!(f, "G1c (circular information flow): {cycle}"),
            Anomaly::GSingle { cycle } => {
                write!(f, "G-single (a cycle with one anti-dependency): {cycle}")
            }
            Anomaly::G2 { cycle } => {
                write!(f, "G2 (a cycle with several anti-dependencies): {cycle}")
            }
            Anomaly::RealtimeCycle { cycle } => {
                write!(f, "real-time cycle (not strictly serializable): {cycle}")
            }
            Anomaly::DuplicateElements {
                key,
                value,
                readers,
            } => write!(
                f,
                "duplicate elements: {} read key {key} holding {value} more than once",
                Txns(readers)
            ),
            Anomaly::IncompatibleOrder {
                key,
                longest,
                other,
            } => {
                let at = longest
                    .list
                    .iter()
                    .zip(&other.list)
                    .take_while(|(a, b)| a == b)
                    .count();
                write!(
                    f,
                    "incompatible orders of key {key}: T{} read {} and T{} read {}, which \
                     differ at index {at}",
                    longest.txn,
                    List(&longest.list),
                    other.txn,
                    List(&other.list)
                )
            }
            Anomaly::GarbageRead {
                key,
                values,
                readers,
            } => write!(
                f,
                "garbage read: {} read {} in key {key}, which no transaction appended to it",
                Txns(readers),
                List(values)
            ),
            Anomaly::Internal {
                txn,
                key,
                read,
                expected,
            } => write!(
                f,
                "internal inconsistency: T{txn} read key {key} as {}, but should have \
                 seen {expected}",
                List(read)
            ),
        }
    }
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::DuplicateTxnId { id, count } => {
                write!(f, "malformed: {count} transactions have id {id}")
            }
            Malformed::DuplicateAppend { key, value, txns } => write!(
                f,
                "malformed: {value} appended to key {key} twice, by T{} and T{}",
                txns[0], txns[1]
            ),
            Malformed::ReturnBeforeCall { id, call, ret } => write!(
                f,
                "malformed: T{id} returned at {ret}, before it was called at {call}"
            ),
        }
    }
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} committed, {} aborted, {} unknown ({} observed); {} ordered keys; \
             edges: {} ww, {} wr, {} rw, {} rt",
            self.committed,
            self.aborted,
            self.unknown,
            self.unknown_observed,
            self.ordered_keys,
            self.ww,
            self.wr,
            self.rw,
            self.realtime
        )
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_ok() {
            write!(f, "ok")?;
        } else {
            write!(
                f,
                "anomalies: {}, malformed: {}",
                self.anomalies.len(),
                self.malformed.len()
            )?;
        }
        write!(f, "; {}", self.stats)?;
        for malformed in &self.malformed {
            write!(f, "\n- {malformed}")?;
        }
        for anomaly in &self.anomalies {
            write!(f, "\n- {anomaly}")?;
        }
        if !self.realtime.is_empty() {
            write!(
                f,
                "\nnot counted (serializable, not strictly): real-time cycles: {}",
                self.realtime.len()
            )?;
            for anomaly in &self.realtime {
                write!(f, "\n- {anomaly}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use Outcome::{Aborted, Committed, Unknown};

    fn a(key: u64, value: u64) -> MicroOp {
        MicroOp::append(key, value)
    }

    fn r(key: u64, list: &[u64]) -> MicroOp {
        MicroOp::read(key, list)
    }

    /// A transaction concurrent with every other one made by this helper.
    fn txn(id: usize, outcome: Outcome, ops: Vec<MicroOp>) -> Txn {
        let ret = (outcome != Unknown).then_some(100);
        Txn {
            id,
            ops,
            outcome,
            call: 0,
            ret,
        }
    }

    fn at(mut t: Txn, call: u64, ret: u64) -> Txn {
        t.call = call;
        t.ret = Some(ret);
        t
    }

    /// Checks, and shows the report when an assertion fails.
    fn names(history: &[Txn]) -> (Vec<&'static str>, Report) {
        let report = check(history);
        (report.names(), report)
    }

    #[test]
    fn serial_history_passes() {
        let h = [
            txn(1, Committed, vec![a(1, 1), r(2, &[])]),
            txn(2, Committed, vec![r(1, &[1]), a(2, 1), a(1, 2)]),
            txn(3, Committed, vec![r(1, &[1, 2]), r(2, &[1]), a(2, 2)]),
            txn(4, Committed, vec![r(2, &[1, 2]), r(1, &[1, 2])]),
        ];
        let report = check(&h);
        assert!(report.is_ok(), "{report}");
        assert!(report.realtime.is_empty(), "{report}");
        assert_eq!(report.stats.ordered_keys, 2);
        assert!(report.stats.ww > 0 && report.stats.wr > 0 && report.stats.rw > 0);
    }

    #[test]
    fn reading_own_appends_is_fine() {
        let h = [
            txn(1, Committed, vec![a(1, 1)]),
            txn(
                2,
                Committed,
                vec![r(1, &[1]), a(1, 2), a(1, 3), r(1, &[1, 2, 3])],
            ),
            txn(3, Committed, vec![a(1, 4), r(1, &[1, 2, 3, 4])]),
            txn(4, Committed, vec![r(1, &[1, 2, 3, 4])]),
        ];
        let report = check(&h);
        assert!(report.is_ok(), "{report}");
    }

    #[test]
    fn g0_write_cycle() {
        // T1 and T2 both append to keys 1 and 2, in opposite orders.
        let h = [
            txn(1, Committed, vec![a(1, 1), a(2, 1)]),
            txn(2, Committed, vec![a(1, 2), a(2, 2)]),
            txn(3, Committed, vec![r(1, &[1, 2]), r(2, &[2, 1])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G0"], "{report}");
        let cycle = report.anomalies[0].cycle().expect("a cycle");
        assert_eq!(cycle.count("ww"), 2);
        let mut txns = cycle.txns();
        txns.sort_unstable();
        assert_eq!(txns, [1, 2]);
    }

    #[test]
    fn g1a_aborted_read() {
        let h = [
            txn(1, Aborted, vec![a(1, 1)]),
            txn(2, Committed, vec![r(1, &[1])]),
            txn(3, Committed, vec![r(1, &[1])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G1a"], "{report}");
        let Anomaly::G1a {
            key,
            value,
            writer,
            readers,
        } = &report.anomalies[0]
        else {
            panic!("{report}");
        };
        assert_eq!((*key, *value, *writer), (1, 1, 1));
        assert_eq!(readers, &[2, 3]);
    }

    #[test]
    fn g1b_intermediate_read() {
        // T2 sees T1's first append to key 1 but not its second. The read also puts T2
        // between T1's two appends, which is a G-single cycle: T1 -wr-> T2 -rw-> T1.
        let h = [
            txn(1, Committed, vec![a(1, 1), a(1, 2)]),
            txn(2, Committed, vec![r(1, &[1])]),
            txn(3, Committed, vec![r(1, &[1, 2])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G1b", "G-single"], "{report}");
        let Anomaly::G1b {
            value,
            next,
            writer,
            readers,
            ..
        } = &report.anomalies[0]
        else {
            panic!("{report}");
        };
        assert_eq!((*value, *next, *writer), (1, 2, 1));
        assert_eq!(readers, &[2]);
    }

    #[test]
    fn g1c_circular_information_flow() {
        // Each transaction reads the other's append.
        let h = [
            txn(1, Committed, vec![a(1, 1), r(2, &[2])]),
            txn(2, Committed, vec![a(2, 2), r(1, &[1])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G1c"], "{report}");
        let cycle = report.anomalies[0].cycle().expect("a cycle");
        assert_eq!(cycle.count("wr"), 2);
    }

    #[test]
    fn g1c_mixes_ww_and_wr() {
        // T2 appends after T1 on key 1, yet T1 read T2's append to key 2.
        let h = [
            txn(1, Committed, vec![a(1, 1), r(2, &[2])]),
            txn(2, Committed, vec![a(1, 2), a(2, 2)]),
            txn(3, Committed, vec![r(1, &[1, 2])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G1c"], "{report}");
        let cycle = report.anomalies[0].cycle().expect("a cycle");
        assert_eq!((cycle.count("ww"), cycle.count("wr")), (1, 1));
    }

    #[test]
    fn g_single_lost_update() {
        // Both read the empty key 1 and append to it: T2's append comes after T1's, but
        // T2 did not see T1's.
        let h = [
            txn(1, Committed, vec![r(1, &[]), a(1, 1)]),
            txn(2, Committed, vec![r(1, &[]), a(1, 2)]),
            txn(3, Committed, vec![r(1, &[1, 2])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G-single"], "{report}");
        let cycle = report.anomalies[0].cycle().expect("a cycle");
        assert_eq!((cycle.count("ww"), cycle.count("rw")), (1, 1));
        assert_eq!(cycle.edges.len(), 2);
    }

    #[test]
    fn g_single_read_skew() {
        // T2 sees T1's append to key 1 but not to key 2.
        let h = [
            txn(1, Committed, vec![a(1, 1), a(2, 1)]),
            txn(2, Committed, vec![r(1, &[1]), r(2, &[])]),
            txn(3, Committed, vec![r(2, &[1])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G-single"], "{report}");
    }

    #[test]
    fn g2_write_skew() {
        // Each reads both keys empty and appends to one: each missed the other's append.
        let h = [
            txn(1, Committed, vec![r(1, &[]), r(2, &[]), a(1, 1)]),
            txn(2, Committed, vec![r(1, &[]), r(2, &[]), a(2, 1)]),
            txn(3, Committed, vec![r(1, &[1]), r(2, &[1])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G2"], "{report}");
        let cycle = report.anomalies[0].cycle().expect("a cycle");
        assert_eq!(cycle.count("rw"), 2);
        let text = report.to_string();
        assert!(text.contains("T1 -rw-> T2"), "{text}");
        assert!(text.contains("T2 -rw-> T1"), "{text}");
    }

    #[test]
    fn incompatible_order() {
        let h = [
            txn(1, Committed, vec![a(1, 1)]),
            txn(2, Committed, vec![a(1, 2)]),
            txn(3, Committed, vec![r(1, &[1, 2])]),
            txn(4, Committed, vec![r(1, &[2])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["incompatible-order"], "{report}");
        assert_eq!(report.stats.ordered_keys, 0);
        let Anomaly::IncompatibleOrder { longest, other, .. } = &report.anomalies[0] else {
            panic!("{report}");
        };
        assert_eq!((longest.txn, other.txn), (3, 4));
    }

    #[test]
    fn duplicates_and_garbage() {
        let h = [
            txn(1, Committed, vec![a(1, 1)]),
            txn(2, Committed, vec![r(1, &[1, 1])]),
            txn(3, Committed, vec![r(2, &[9])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["duplicate-elements", "garbage-read"], "{report}");
    }

    #[test]
    fn internal_inconsistency() {
        let h = [
            // Does not see its own append.
            txn(1, Committed, vec![a(1, 1), r(1, &[])]),
            // Sees its own append before making it.
            txn(2, Committed, vec![r(2, &[2]), a(2, 2)]),
            // Reads key 3 twice, differently, with no append between.
            txn(3, Committed, vec![r(3, &[]), r(3, &[3])]),
            txn(4, Committed, vec![a(3, 3)]),
        ];
        let (names, report) = names(&h);
        assert_eq!(
            names.iter().filter(|&&n| n == "internal").count(),
            3,
            "{report}"
        );
    }

    #[test]
    fn malformed_history() {
        let h = [
            txn(1, Committed, vec![a(1, 1)]),
            txn(1, Committed, vec![a(1, 1)]),
        ];
        let report = check(&h);
        assert!(!report.is_ok());
        assert_eq!(report.malformed.len(), 2, "{report}");
    }

    #[test]
    fn unknown_transactions_count_when_observed() {
        // T1's outcome is unknown, but T2 saw its append to key 1, so it committed; T2
        // then missed its append to key 2.
        let h = [
            txn(1, Unknown, vec![a(1, 1), a(2, 1)]),
            txn(2, Committed, vec![r(1, &[1]), r(2, &[])]),
            txn(3, Committed, vec![r(2, &[1])]),
        ];
        let (names, report) = names(&h);
        assert_eq!(names, ["G-single"], "{report}");
        assert_eq!(report.stats.unknown_observed, 1);

        // Never observed, it may not have happened: no anomaly.
        let h = [
            txn(1, Unknown, vec![a(1, 1), a(2, 1)]),
            txn(2, Committed, vec![r(1, &[]), r(2, &[])]),
        ];
        let report = check(&h);
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.stats.unknown_observed, 0);
    }

    #[test]
    fn stale_read_is_a_realtime_cycle_only() {
        // T1 committed before T2 began, yet T2 did not see it: serializable (T2 first),
        // not strictly serializable.
        let h = [
            at(txn(1, Committed, vec![a(1, 1)]), 0, 10),
            at(txn(2, Committed, vec![r(1, &[])]), 20, 30),
            at(txn(3, Committed, vec![r(1, &[1])]), 40, 50),
        ];
        let report = check(&h);
        assert!(report.is_ok(), "{report}");
        assert_eq!(report.realtime.len(), 1, "{report}");
        let cycle = report.realtime[0].cycle().expect("a cycle");
        assert_eq!((cycle.count("rt"), cycle.count("rw")), (1, 1));

        let strict = check_with(&h, Options { strict: true });
        assert_eq!(strict.names(), ["realtime"], "{strict}");
    }

    #[test]
    fn realtime_edges_are_reduced() {
        // A chain of serial transactions gets one real-time edge per neighbour pair.
        let h: Vec<Txn> = (0..10u64)
            .map(|i| at(txn(i as usize, Committed, vec![a(1, i)]), 2 * i, 2 * i + 1))
            .collect();
        let report = check(&h);
        assert_eq!(report.stats.realtime, 9, "{report}");
    }

    #[test]
    fn long_cycle_is_found_without_deep_recursion() {
        // T0 .. T(n-1) append to key 0 in order; T(n-1) read key 1 empty, but T0 had
        // appended to it: one G-single cycle through every transaction.
        let n = 20_000;
        let mut h: Vec<Txn> = (0..n)
            .map(|i| txn(i, Committed, vec![a(0, i as u64)]))
            .collect();
        h[0].ops.push(a(1, 0));
        h[n - 1].ops.insert(0, r(1, &[]));
        let all: Vec<u64> = (0..n as u64).collect();
        h.push(txn(n, Committed, vec![r(0, &all), r(1, &[0])]));
        let (names, report) = names(&h);
        assert_eq!(names, ["G-single"], "{report}");
        assert_eq!(report.anomalies[0].cycle().map(|c| c.edges.len()), Some(n));
    }

    /// A small deterministic generator (SplitMix64).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Runs `n` random transactions one at a time against an in-memory map. Some abort
    /// (no effect), some end unknown (effect or not, reads not observed).
    fn serial_history(seed: u64, n: usize, keys: u64) -> Vec<Txn> {
        let mut rng = Rng(seed);
        let mut db: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        let mut next_value = 0;
        let mut history = Vec::with_capacity(n);
        for id in 0..n {
            let outcome = match rng.below(10) {
                0 => Aborted,
                1 => Unknown,
                _ => Committed,
            };
            let mut ops = Vec::new();
            let mut pending: Vec<(u64, u64)> = Vec::new();
            for _ in 0..1 + rng.below(5) {
                let key = rng.below(keys);
                if rng.below(2) == 0 {
                    next_value += 1;
                    pending.push((key, next_value));
                    ops.push(a(key, next_value));
                } else {
                    let mut list = db.get(&key).cloned().unwrap_or_default();
                    list.extend(pending.iter().filter(|(k, _)| *k == key).map(|(_, v)| v));
                    let list = (outcome == Committed).then_some(list);
                    ops.push(MicroOp::Read { key, list });
                }
            }
            let applies = match outcome {
                Committed => true,
                Aborted => false,
                Unknown => rng.below(2) == 0,
            };
            if applies {
                for (key, value) in pending {
                    db.entry(key).or_default().push(value);
                }
            }
            let call = 2 * id as u64;
            let ret = (outcome != Unknown).then_some(call + 1);
            history.push(Txn {
                id,
                ops,
                outcome,
                call,
                ret,
            });
        }
        history
    }

    #[test]
    fn random_serial_histories_pass() {
        for seed in 1..=3 {
            let h = serial_history(seed, 1500, 6);
            let report = check_with(&h, Options { strict: true });
            assert!(report.is_ok(), "seed {seed}: {report}");
            let s = &report.stats;
            assert!(
                s.ww > 100 && s.wr > 100 && s.rw > 100,
                "seed {seed}: {report}"
            );
            assert!(
                s.unknown_observed > 0 && s.aborted > 0,
                "seed {seed}: {report}"
            );
        }
    }

    #[test]
    fn random_serial_history_in_any_order_and_times_is_serializable() {
        // The checker must not depend on the slice's order, and real time that disagrees
        // with the serial order is at most a real-time cycle.
        let mut rng = Rng(11);
        let mut h = serial_history(5, 1000, 5);
        for i in (1..h.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            h.swap(i, j);
        }
        for t in &mut h {
            t.call = rng.below(10_000);
            if t.ret.is_some() {
                t.ret = Some(t.call + 1 + rng.below(50));
            }
        }
        let report = check(&h);
        assert!(report.is_ok(), "{report}");
        assert!(!report.realtime.is_empty(), "{report}");
        assert!(!check_with(&h, Options { strict: true }).is_ok());
    }

    #[test]
    fn random_history_with_a_stale_read_is_not_strictly_serializable() {
        let mut h = serial_history(7, 500, 4);
        // Late in the history, drop the last value of a committed read that saw another
        // committed transaction's append, where a later read shows that value too (so it
        // stays in the version order): the reader missed a write that returned before it
        // began.
        let committed_reads: Vec<(usize, usize, u64, Vec<u64>)> = h
            .iter()
            .enumerate()
            .filter(|(_, t)| t.outcome == Committed)
            .flat_map(|(t, txn)| {
                txn.ops
                    .iter()
                    .enumerate()
                    .filter_map(move |(o, op)| match op {
                        MicroOp::Read {
                            key,
                            list: Some(list),
                        } => Some((t, o, *key, list.clone())),
                        MicroOp::Read { list: None, .. } | MicroOp::Append { .. } => None,
                    })
            })
            .collect();
        let appended_by_other_committed = |t: usize, key: u64, v: u64| {
            h.iter()
                .enumerate()
                .any(|(w, txn)| w != t && txn.outcome == Committed && txn.ops.contains(&a(key, v)))
        };
        let mut stale = None;
        for (t, o, key, list) in &committed_reads {
            let Some(&v) = list.last() else { continue };
            let seen_later = committed_reads
                .iter()
                .any(|(t2, _, k2, l2)| t2 > t && *k2 == *key && l2.contains(&v));
            if *t >= 250 && seen_later && appended_by_other_committed(*t, *key, v) {
                stale = Some((*t, *o));
                break;
            }
        }
        let (t, o) = stale.expect("a read to make stale");
        if let MicroOp::Read {
            list: Some(list), ..
        } = &mut h[t].ops[o]
        {
            list.pop();
        }
        let report = check_with(&h, Options { strict: true });
        assert!(!report.is_ok(), "{report}");
    }
}
