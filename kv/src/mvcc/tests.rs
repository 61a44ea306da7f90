//! MVCC tests on every engine: goldenscripts (`testscripts/`, regenerate with
//! `UPDATE_GOLDENFILES=1`) and a model check under random operation sequences.

use std::collections::{BTreeMap, HashMap};
use std::error::Error as StdError;
use std::fmt::Write as _;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::key;
use super::value::{Meta, decode_meta, decode_version};
use super::*;
use crate::error::Error;
use crate::keys::Span;
use crate::storage::testing::{TestEngine, test_each_engine};
use crate::storage::{IndexedBatch, Reader, Space, WriteBatch, scan_all};
use crate::{Timestamp, TxnId};

test_each_engine!(goldenscripts, matches_model);

// ---------------------------------------------------------------------------------
// Goldenscripts
// ---------------------------------------------------------------------------------

fn goldenscripts(engine: &TestEngine) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/mvcc/testscripts");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("testscripts directory")
        .map(|e| e.expect("directory entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty());
    for path in paths {
        clear(engine);
        let mut runner = ScriptRunner {
            engine,
            txns: HashMap::new(),
        };
        goldenscript::run(&mut runner, &path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn clear(engine: &TestEngine) {
    let mut b = WriteBatch::new();
    for space in Space::ALL {
        b.delete_range(space, vec![], vec![0xff; 8]);
    }
    engine.write(b, false).unwrap();
}

struct ScriptRunner<'a> {
    engine: &'a TestEngine,
    txns: HashMap<String, TxnMeta>,
}

/// `7` is wall time 7; `7.2` is wall time 7, logical 2.
fn parse_ts(s: &str) -> Result<Timestamp, Box<dyn StdError>> {
    Ok(match s.split_once('.') {
        Some((w, l)) => Timestamp::new(w.parse()?, l.parse()?),
        None => Timestamp::new(s.parse()?, 0),
    })
}

fn fmt_ts(ts: Timestamp) -> String {
    if ts.logical == 0 {
        ts.wall.to_string()
    } else {
        format!("{}.{}", ts.wall, ts.logical)
    }
}

fn fmt_bytes(b: &[u8]) -> String {
    format!("\"{}\"", b.escape_ascii())
}

fn fmt_txn(t: &TxnMeta) -> String {
    format!("epoch={} ts={} seq={}", t.epoch, fmt_ts(t.write_ts), t.seq)
}

fn txn_id(name: &str) -> TxnId {
    let mut bytes = [0u8; 16];
    for (i, b) in name.bytes().take(16).enumerate() {
        bytes[i] = b;
    }
    TxnId::from_bytes(bytes)
}

/// Renders an error with its kind and the details a script cares about.
fn fmt_error(e: &Error, names: &HashMap<TxnId, String>) -> String {
    match e {
        Error::WriteIntent { intents } => {
            let list: Vec<String> = intents
                .iter()
                .map(|i| {
                    let name = names.get(&i.txn.id).cloned().unwrap_or_default();
                    format!("{} ({name} {})", fmt_bytes(&i.key), fmt_txn(&i.txn))
                })
                .collect();
            format!("WriteIntent: {}", list.join(", "))
        }
        Error::ReadWithinUncertainty {
            key,
            read_ts,
            existing_ts,
            ..
        } => format!(
            "ReadWithinUncertainty: key {} read at {} found value at {}",
            fmt_bytes(key),
            fmt_ts(*read_ts),
            fmt_ts(*existing_ts)
        ),
        Error::WriteTooOld {
            key,
            write_ts,
            existing_ts,
        } => format!(
            "WriteTooOld: key {} write at {}, existing version at {}; retry at {}",
            fmt_bytes(key),
            fmt_ts(*write_ts),
            fmt_ts(*existing_ts),
            fmt_ts(e.write_too_old_actual_ts().unwrap_or_default())
        ),
        Error::ConditionFailed { key, actual } => format!(
            "ConditionFailed: key {} holds {}",
            fmt_bytes(key),
            actual
                .as_deref()
                .map(fmt_bytes)
                .unwrap_or_else(|| "nothing".into())
        ),
        other => format!("{other}"),
    }
}

impl ScriptRunner<'_> {
    fn names(&self) -> HashMap<TxnId, String> {
        self.txns.iter().map(|(n, t)| (t.id, n.clone())).collect()
    }

    /// Runs one MVCC operation against an indexed batch and writes the batch if it
    /// succeeded.
    fn write<T>(
        &self,
        f: impl FnOnce(&mut IndexedBatch<'_>) -> crate::Result<T>,
    ) -> Result<T, Box<dyn StdError>> {
        let engine: &dyn Reader = &**self.engine;
        let mut batch = IndexedBatch::new(engine);
        let out = f(&mut batch).map_err(|e| fmt_error(&e, &self.names()))?;
        self.engine.write(batch.into_write_batch(), false)?;
        Ok(out)
    }

    fn dump(&self) -> Result<String, Box<dyn StdError>> {
        let mut out = String::new();
        for (raw, stored) in scan_all(&**self.engine, Space::Data, b"", None, false)? {
            let k = key::decode(&raw)?;
            match k.ts {
                Some(ts) => {
                    let v = decode_version(&k.user_key, &raw, &stored)?;
                    let shown = v
                        .into_value()
                        .map(|v| fmt_bytes(&v))
                        .unwrap_or_else(|| "<tombstone>".into());
                    writeln!(out, "{}@{} → {shown}", fmt_bytes(&k.user_key), fmt_ts(ts))?;
                }
                None => match decode_meta(&k.user_key, &raw, &stored)? {
                    Meta::Inline(v) => writeln!(
                        out,
                        "{} (inline) → {}",
                        fmt_bytes(&k.user_key),
                        fmt_bytes(&v)
                    )?,
                    Meta::Intent(rec) => {
                        let name = self.names().get(&rec.txn.id).cloned().unwrap_or_default();
                        let shown = rec
                            .value
                            .as_deref()
                            .map(fmt_bytes)
                            .unwrap_or_else(|| "<delete>".into());
                        let history: Vec<String> = rec
                            .history
                            .iter()
                            .map(|(s, v)| {
                                format!(
                                    "{s}:{}",
                                    v.as_deref()
                                        .map(fmt_bytes)
                                        .unwrap_or_else(|| "<delete>".into())
                                )
                            })
                            .collect();
                        write!(
                            out,
                            "{} intent {name} {} → {shown}",
                            fmt_bytes(&k.user_key),
                            fmt_txn(&rec.txn)
                        )?;
                        if !history.is_empty() {
                            write!(out, " history [{}]", history.join(" "))?;
                        }
                        writeln!(out)?;
                    }
                },
            }
        }
        Ok(out)
    }
}

impl goldenscript::Runner for ScriptRunner<'_> {
    type Command = goldenscript::Command;

    fn run(
        &mut self,
        command: &goldenscript::Command,
        _: &goldenscript::Context,
    ) -> Result<String, Box<dyn StdError>> {
        let mut args = command.consume_args();
        let mut out = String::new();
        let key_arg = |args: &mut goldenscript::ArgumentConsumer<'_>,
                       name: &str|
         -> Result<Vec<u8>, Box<dyn StdError>> {
            Ok(args
                .take_key(name)
                .ok_or(format!("{name}= missing"))?
                .as_bytes()
                .to_vec())
        };
        let ts_arg = |args: &mut goldenscript::ArgumentConsumer<'_>,
                      name: &str|
         -> Result<Option<Timestamp>, Box<dyn StdError>> {
            args.take_key(name).map(parse_ts).transpose()
        };
        match command.name.as_str() {
            // txn_begin NAME ts=T: a transaction reading and writing at T.
            "txn_begin" => {
                let name = args.next_pos().ok_or("txn name missing")?.to_string();
                let ts = ts_arg(&mut args, "ts")?.ok_or("ts= missing")?;
                args.reject_next()?;
                let txn = TxnMeta {
                    id: txn_id(&name),
                    key: name.as_bytes().to_vec(),
                    epoch: 0,
                    write_ts: ts,
                    min_ts: ts,
                    priority: 1,
                    seq: 0,
                    ignored: Vec::new(),
                };
                self.txns.insert(name, txn);
            }
            // txn_set NAME [ts=T] [epoch=E] [seq=S] [ignore=LO-HI]: changes a
            // transaction's state.
            "txn_set" => {
                let name = args.next_pos().ok_or("txn name missing")?.to_string();
                let ts = ts_arg(&mut args, "ts")?;
                let epoch = args.take_key("epoch").map(str::parse).transpose()?;
                let seq = args.take_key("seq").map(str::parse).transpose()?;
                // ignore=LO-HI: roll back to a savepoint (writes at LO..=HI ignored).
                let ignore = match args.take_key("ignore") {
                    Some(r) => {
                        let (lo, hi) = r.split_once('-').ok_or("ignore=LO-HI")?;
                        Some((lo.parse::<u32>()?, hi.parse::<u32>()?))
                    }
                    None => None,
                };
                args.reject_next()?;
                let txn = self.txns.get_mut(&name).ok_or("unknown txn")?;
                if let Some(range) = ignore {
                    txn.ignored.push(range);
                }
                if let Some(ts) = ts {
                    txn.write_ts = ts;
                }
                if let Some(epoch) = epoch {
                    txn.epoch = epoch;
                }
                if let Some(seq) = seq {
                    txn.seq = seq;
                }
            }
            "put" | "del" | "cput" => {
                let k = key_arg(&mut args, "k")?;
                let v = if command.name == "del" {
                    None
                } else {
                    Some(key_arg(&mut args, "v")?)
                };
                let expected = args.take_key("exp").map(|s| s.as_bytes().to_vec());
                let ts = ts_arg(&mut args, "ts")?.unwrap_or_default();
                let txn = self.txn_arg(&mut args)?;
                args.reject_next()?;
                self.write(|b| match (command.name.as_str(), &v) {
                    ("cput", Some(v)) => {
                        conditional_put(b, &k, ts, v, expected.as_deref(), txn.as_ref())
                    }
                    (_, Some(v)) => put(b, &k, ts, v, txn.as_ref()),
                    (_, None) => delete(b, &k, ts, txn.as_ref()),
                })?;
            }
            "put_inline" => {
                let k = key_arg(&mut args, "k")?;
                let v = key_arg(&mut args, "v")?;
                args.reject_next()?;
                self.write(|b| put_inline(b, &k, &v))?;
            }
            "del_range" => {
                let k = key_arg(&mut args, "k")?;
                let end = key_arg(&mut args, "end")?;
                let ts = ts_arg(&mut args, "ts")?.unwrap_or_default();
                let max = args
                    .take_key("max")
                    .map(str::parse)
                    .transpose()?
                    .unwrap_or(0);
                let txn = self.txn_arg(&mut args)?;
                args.reject_next()?;
                let (deleted, resume) =
                    self.write(|b| delete_range(b, &k, &end, ts, txn.as_ref(), max))?;
                let shown: Vec<String> = deleted.iter().map(|k| fmt_bytes(k)).collect();
                writeln!(out, "deleted: [{}]", shown.join(", "))?;
                if let Some(Span { start: s, end: e }) = resume {
                    writeln!(out, "resume: {}-{}", fmt_bytes(&s), fmt_bytes(&e))?;
                }
            }
            // refresh k=K end=E from=T to=T [txn=NAME]: do reads of [K, E) at `from`
            // still hold at `to`?
            "refresh" => {
                let k = key_arg(&mut args, "k")?;
                let end = key_arg(&mut args, "end")?;
                let from = ts_arg(&mut args, "from")?.ok_or("from= missing")?;
                let to = ts_arg(&mut args, "to")?.ok_or("to= missing")?;
                let txn = self.txn_arg(&mut args)?;
                args.reject_next()?;
                let reader: &dyn Reader = &**self.engine;
                match check_refresh(reader, &k, &end, from, to, txn.map(|t| t.id)) {
                    Ok(()) => writeln!(out, "ok")?,
                    Err(Error::RefreshFailed { key, existing_ts }) => writeln!(
                        out,
                        "RefreshFailed: key {} written at {}",
                        fmt_bytes(&key),
                        fmt_ts(existing_ts)
                    )?,
                    Err(e) => return Err(e.into()),
                }
            }
            "get" | "scan" => {
                let k = key_arg(&mut args, "k")?;
                let end = if command.name == "scan" {
                    Some(key_arg(&mut args, "end")?)
                } else {
                    None
                };
                let ts = ts_arg(&mut args, "ts")?.ok_or("ts= missing")?;
                let unc = ts_arg(&mut args, "unc")?.unwrap_or_default();
                let max = args
                    .take_key("max")
                    .map(str::parse)
                    .transpose()?
                    .unwrap_or(0);
                let reverse = args
                    .take_key("reverse")
                    .map(str::parse)
                    .transpose()?
                    .unwrap_or(false);
                let txn = self.txn_arg(&mut args)?;
                args.reject_next()?;
                let mut opts = ReadOptions::at(ts).with_uncertainty_limit(unc);
                opts.txn = txn.as_ref();
                let reader: &dyn Reader = &**self.engine;
                let fail = |e: Error| fmt_error(&e, &self.names());
                match end {
                    None => {
                        let v = get(reader, &k, opts).map_err(fail)?;
                        let shown = v
                            .as_deref()
                            .map(fmt_bytes)
                            .unwrap_or_else(|| "<none>".into());
                        writeln!(out, "{}@{} → {shown}", fmt_bytes(&k), fmt_ts(ts))?;
                    }
                    Some(end) => {
                        let r = scan(reader, &k, &end, opts, max, reverse).map_err(fail)?;
                        for (k, v) in &r.kvs {
                            writeln!(out, "{} → {}", fmt_bytes(k), fmt_bytes(v))?;
                        }
                        if r.kvs.is_empty() {
                            writeln!(out, "<empty>")?;
                        }
                        if let Some(Span { start: s, end: e }) = r.resume_span {
                            writeln!(out, "resume: {}-{}", fmt_bytes(&s), fmt_bytes(&e))?;
                        }
                    }
                }
            }
            // resolve k=K [end=E] txn=NAME status=committed|aborted|pending
            "resolve" => {
                let k = key_arg(&mut args, "k")?;
                let end = args.take_key("end").map(|s| s.as_bytes().to_vec());
                let txn = self.txn_arg(&mut args)?.ok_or("txn= missing")?;
                let status = match args.take_key("status").ok_or("status= missing")? {
                    "committed" => ResolveStatus::Committed,
                    "aborted" => ResolveStatus::Aborted,
                    "pending" => ResolveStatus::Pending,
                    other => return Err(format!("unknown status {other}").into()),
                };
                args.reject_next()?;
                match end {
                    None => {
                        let found = self.write(|b| resolve_intent(b, &k, &txn, status))?;
                        writeln!(out, "resolved: {found}")?;
                    }
                    Some(end) => {
                        let (n, _) =
                            self.write(|b| resolve_intent_range(b, &k, &end, &txn, status, 0))?;
                        writeln!(out, "resolved: {n}")?;
                    }
                }
            }
            "gc" => {
                let k = key_arg(&mut args, "k")?;
                let end = key_arg(&mut args, "end")?;
                let threshold = ts_arg(&mut args, "threshold")?.ok_or("threshold= missing")?;
                args.reject_next()?;
                let stats = self.write(|b| gc_range(b, &k, &end, threshold))?;
                writeln!(out, "removed {} versions", stats.versions_removed)?;
            }
            // corrupt k=K [ts=T]: flips one bit of the stored meta (or version at T).
            "corrupt" => {
                let k = key_arg(&mut args, "k")?;
                let ts = ts_arg(&mut args, "ts")?;
                args.reject_next()?;
                let raw = match ts {
                    Some(ts) => key::version_key(&k, ts),
                    None => key::meta_key(&k),
                };
                let mut stored = self.engine.get(Space::Data, &raw)?.ok_or("no such entry")?;
                let last = stored.len() - 1;
                stored[last] ^= 0x01;
                let mut b = WriteBatch::new();
                b.put(Space::Data, raw, stored);
                self.engine.write(b, false)?;
            }
            "dump" => {
                args.reject_next()?;
                out = self.dump()?;
            }
            name => return Err(format!("unknown command {name}").into()),
        }
        Ok(out)
    }
}

impl ScriptRunner<'_> {
    fn txn_arg(
        &self,
        args: &mut goldenscript::ArgumentConsumer<'_>,
    ) -> Result<Option<TxnMeta>, Box<dyn StdError>> {
        match args.take_key("txn") {
            None => Ok(None),
            Some(name) => Ok(Some(
                self.txns
                    .get(name)
                    .ok_or(format!("unknown txn {name}"))?
                    .clone(),
            )),
        }
    }
}

// ---------------------------------------------------------------------------------
// Model check
// ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Put {
        key: u8,
        ts: u64,
        value: Option<u8>,
    },
    TxnPut {
        txn: usize,
        key: u8,
        value: Option<u8>,
    },
    Finish {
        txn: usize,
        commit: bool,
        bump: u64,
    },
    Get {
        key: u8,
        ts: u64,
        unc: u64,
        txn: Option<usize>,
    },
    Scan {
        start: u8,
        end: u8,
        ts: u64,
        max: usize,
        reverse: bool,
        txn: Option<usize>,
    },
    Gc {
        threshold: u64,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let key = 0u8..6;
    let ts = 1u64..12;
    let txn = 0usize..2;
    prop_oneof![
        (key.clone(), ts.clone(), prop::option::of(0u8..4)).prop_map(|(key, ts, value)| Op::Put {
            key,
            ts,
            value
        }),
        (txn.clone(), key.clone(), prop::option::of(0u8..4))
            .prop_map(|(txn, key, value)| Op::TxnPut { txn, key, value }),
        (txn.clone(), any::<bool>(), 0u64..5).prop_map(|(txn, commit, bump)| Op::Finish {
            txn,
            commit,
            bump
        }),
        (
            key.clone(),
            ts.clone(),
            0u64..16,
            prop::option::of(txn.clone())
        )
            .prop_map(|(key, ts, unc, txn)| Op::Get { key, ts, unc, txn }),
        (
            key.clone(),
            key,
            ts,
            0usize..4,
            any::<bool>(),
            prop::option::of(txn)
        )
            .prop_map(|(start, end, ts, max, reverse, txn)| Op::Scan {
                start,
                end,
                ts,
                max,
                reverse,
                txn
            }),
        (1u64..12).prop_map(|threshold| Op::Gc { threshold }),
    ]
}

/// What the model and the real thing are compared on.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    Ok,
    Value(Option<Vec<u8>>),
    Scan(Vec<(Vec<u8>, Vec<u8>)>, Option<Span>),
    Intents(Vec<Vec<u8>>),
    TooOld(Timestamp),
    Uncertain(Timestamp),
}

fn outcome_of_error(e: Error) -> Outcome {
    match e {
        Error::WriteIntent { intents } => {
            Outcome::Intents(intents.into_iter().map(|i| i.key).collect())
        }
        Error::WriteTooOld { existing_ts, .. } => Outcome::TooOld(existing_ts),
        Error::ReadWithinUncertainty { existing_ts, .. } => Outcome::Uncertain(existing_ts),
        other => panic!("unexpected error {other}"),
    }
}

/// A model transaction.
#[derive(Clone, Debug)]
struct ModelTxn {
    meta: TxnMeta,
}

/// The model: committed versions per key and at most one intent per key.
#[derive(Default)]
struct Model {
    versions: BTreeMap<Vec<u8>, BTreeMap<Timestamp, Option<Vec<u8>>>>,
    intents: BTreeMap<Vec<u8>, ModelIntent>,
}

/// An intent in the model: owner (index of the txn), value, provisional timestamp.
type ModelIntent = (usize, Option<Vec<u8>>, Timestamp);

impl Model {
    fn newest(&self, k: &[u8]) -> Option<Timestamp> {
        self.versions
            .get(k)
            .and_then(|v| v.keys().next_back().copied())
    }

    fn write(
        &mut self,
        k: &[u8],
        ts: Timestamp,
        value: Option<Vec<u8>>,
        txn: Option<usize>,
    ) -> Outcome {
        match (self.intents.get(k), txn) {
            (Some((owner, _, its)), Some(t)) if *owner == t => {
                let its = *its;
                self.intents.insert(k.to_vec(), (t, value, its.max(ts)));
                return Outcome::Ok;
            }
            (Some(_), _) => return Outcome::Intents(vec![k.to_vec()]),
            (None, _) => {}
        }
        if let Some(n) = self.newest(k)
            && n >= ts
        {
            return Outcome::TooOld(n);
        }
        match txn {
            Some(t) => {
                self.intents.insert(k.to_vec(), (t, value, ts));
            }
            None => {
                self.versions
                    .entry(k.to_vec())
                    .or_default()
                    .insert(ts, value);
            }
        }
        Outcome::Ok
    }

    /// `Err` holds the conflicting key or the uncertain timestamp.
    fn read(
        &self,
        k: &[u8],
        ts: Timestamp,
        unc: Timestamp,
        txn: Option<usize>,
    ) -> Result<Option<Vec<u8>>, Outcome> {
        let horizon = ts.max(unc);
        if let Some((owner, v, its)) = self.intents.get(k) {
            if Some(*owner) == txn {
                return Ok(v.clone());
            }
            if *its <= horizon {
                return Err(Outcome::Intents(vec![k.to_vec()]));
            }
        }
        let Some(versions) = self.versions.get(k) else {
            return Ok(None);
        };
        match versions.range(..=horizon).next_back() {
            Some((vts, _)) if *vts > ts => Err(Outcome::Uncertain(*vts)),
            Some((_, v)) => Ok(v.clone()),
            None => Ok(None),
        }
    }

    fn gc(&mut self, threshold: Timestamp) {
        for versions in self.versions.values_mut() {
            let at_or_below: Vec<Timestamp> =
                versions.range(..=threshold).map(|(t, _)| *t).collect();
            if let Some((&visible, older)) = at_or_below.split_last() {
                for t in older {
                    versions.remove(t);
                }
                if versions.get(&visible) == Some(&None) {
                    versions.remove(&visible);
                }
            }
        }
        self.versions.retain(|_, versions| !versions.is_empty());
    }
}

fn k(key: u8) -> Vec<u8> {
    vec![b'a' + key]
}

fn ts(wall: u64) -> Timestamp {
    Timestamp::new(wall, 0)
}

fn new_txn(n: u64) -> ModelTxn {
    let id = TxnId::random();
    ModelTxn {
        meta: TxnMeta {
            id,
            key: b"anchor".to_vec(),
            epoch: 0,
            write_ts: ts(n),
            min_ts: ts(n),
            priority: 1,
            seq: 0,
            ignored: Vec::new(),
        },
    }
}

fn run_op(
    engine: &TestEngine,
    model: &mut Model,
    txns: &mut [ModelTxn; 2],
    op: &Op,
) -> (Outcome, Outcome) {
    let base: &dyn Reader = &**engine;
    let write = |f: &dyn Fn(&mut IndexedBatch<'_>) -> crate::Result<()>| -> Outcome {
        let mut batch = IndexedBatch::new(base);
        match f(&mut batch) {
            Ok(()) => {
                engine.write(batch.into_write_batch(), false).unwrap();
                Outcome::Ok
            }
            Err(e) => outcome_of_error(e),
        }
    };
    match *op {
        Op::Put { key, ts: t, value } => {
            let v = value.map(|v| vec![v]);
            let real = write(&|b| match &v {
                Some(v) => put(b, &k(key), ts(t), v, None),
                None => delete(b, &k(key), ts(t), None),
            });
            (real, model.write(&k(key), ts(t), v.clone(), None))
        }
        Op::TxnPut { txn, key, value } => {
            txns[txn].meta.seq += 1;
            let meta = txns[txn].meta.clone();
            let v = value.map(|v| vec![v]);
            let real = write(&|b| match &v {
                Some(v) => put(b, &k(key), Timestamp::ZERO, v, Some(&meta)),
                None => delete(b, &k(key), Timestamp::ZERO, Some(&meta)),
            });
            (
                real,
                model.write(&k(key), meta.write_ts, v.clone(), Some(txn)),
            )
        }
        Op::Finish { txn, commit, bump } => {
            let mut meta = txns[txn].meta.clone();
            meta.write_ts = ts(meta.write_ts.wall + bump);
            let status = if commit {
                ResolveStatus::Committed
            } else {
                ResolveStatus::Aborted
            };
            let real =
                write(&|b| resolve_intent_range(b, b"", b"\xff", &meta, status, 0).map(|_| ()));
            let mine: Vec<Vec<u8>> = model
                .intents
                .iter()
                .filter(|(_, i)| i.0 == txn)
                .map(|(k, _)| k.clone())
                .collect();
            for key in mine {
                let (_, v, _) = model.intents.remove(&key).unwrap_or_default();
                if commit {
                    model
                        .versions
                        .entry(key)
                        .or_default()
                        .insert(meta.write_ts, v);
                }
            }
            txns[txn] = new_txn(meta.write_ts.wall + 1);
            (real, Outcome::Ok)
        }
        Op::Get {
            key,
            ts: t,
            unc,
            txn,
        } => {
            let mut opts = ReadOptions::at(ts(t)).with_uncertainty_limit(ts(unc));
            opts.txn = txn.map(|i| &txns[i].meta);
            let real = get(base, &k(key), opts)
                .map(Outcome::Value)
                .unwrap_or_else(outcome_of_error);
            let want = model
                .read(&k(key), ts(t), ts(unc), txn)
                .map(Outcome::Value)
                .unwrap_or_else(|e| e);
            (real, want)
        }
        Op::Scan {
            start,
            end,
            ts: t,
            max,
            reverse,
            txn,
        } => {
            let mut opts = ReadOptions::at(ts(t));
            opts.txn = txn.map(|i| &txns[i].meta);
            let (s, e) = (k(start), k(end));
            let real = scan(base, &s, &e, opts, max, reverse)
                .map(|r| Outcome::Scan(r.kvs, r.resume_span))
                .unwrap_or_else(outcome_of_error);
            // Keys with any entry in the span, in scan order.
            let mut keys: Vec<Vec<u8>> = model
                .versions
                .keys()
                .chain(model.intents.keys())
                .filter(|x| **x >= s && **x < e)
                .cloned()
                .collect();
            keys.sort();
            keys.dedup();
            if reverse {
                keys.reverse();
            }
            let mut kvs = Vec::new();
            let mut conflicts = Vec::new();
            let mut resume = None;
            for key in keys {
                if max > 0 && kvs.len() == max {
                    let mut next = key.clone();
                    next.push(0);
                    resume = Some(if reverse {
                        Span::new(s.clone(), next)
                    } else {
                        Span::new(key, e.clone())
                    });
                    break;
                }
                match model.read(&key, ts(t), Timestamp::ZERO, txn) {
                    Ok(Some(v)) => kvs.push((key, v)),
                    Ok(None) => {}
                    Err(Outcome::Intents(mut i)) => conflicts.append(&mut i),
                    Err(other) => return (real, other),
                }
            }
            let want = if s >= e {
                Outcome::Scan(vec![], None)
            } else if !conflicts.is_empty() {
                Outcome::Intents(conflicts)
            } else {
                Outcome::Scan(kvs, resume)
            };
            (real, want)
        }
        Op::Gc { threshold } => {
            // GC below every open transaction's timestamp, as the real GC queue does.
            let floor = txns.iter().map(|t| t.meta.min_ts).min().unwrap_or_default();
            let threshold = ts(threshold).min(floor.prev());
            let real = write(&|b| gc_range(b, b"", b"\xff", threshold).map(|_| ()));
            model.gc(threshold);
            (real, Outcome::Ok)
        }
    }
}

/// Random operation sequences give the same results on the MVCC layer as on a simple
/// model of versions and intents.
fn matches_model(engine: &TestEngine) {
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(op_strategy(), 1..60), |ops| {
            clear(engine);
            let mut model = Model::default();
            let mut txns = [new_txn(4), new_txn(7)];
            for (i, op) in ops.iter().enumerate() {
                let (real, want) = run_op(engine, &mut model, &mut txns, op);
                prop_assert_eq!(real, want, "op {} {:?}", i, op);
            }
            Ok(())
        })
        .unwrap();
}
