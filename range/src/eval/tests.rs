//! Scripted scenarios for the transaction commands (`testscripts/`, regenerate with
//! `UPDATE_GOLDENFILES=1`): records, heartbeats, pushes, commits and aborts, evaluated
//! against an in-memory engine exactly as a leaseholder evaluates them.
//!
//! Timestamps are seconds (`7`) or seconds and a logical tick (`7.2`), so the 2.5 s
//! liveness threshold reads naturally.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt::Write as _;

use cairn_kv::api::{PushKind, Request, Response, TxnRecord, TxnStatus};
use cairn_kv::keys::Span;
use cairn_kv::mvcc::TxnMeta;
use cairn_kv::storage::memory::Memory;
use cairn_kv::storage::{Engine, IndexedBatch, Reader};
use cairn_kv::{Timestamp, TxnId};

use super::{EvalContext, evaluate, txn_record};

const SECOND: u64 = 1_000_000_000;

fn parse_ts(s: &str) -> Result<Timestamp, Box<dyn StdError>> {
    Ok(match s.split_once('.') {
        Some((w, l)) => Timestamp::new(w.parse::<u64>()? * SECOND, l.parse()?),
        None => Timestamp::new(s.parse::<u64>()? * SECOND, 0),
    })
}

fn fmt_ts(ts: Timestamp) -> String {
    let secs = ts.wall / SECOND;
    let rest = ts.wall % SECOND;
    let mut s = secs.to_string();
    if rest != 0 {
        write!(s, "+{rest}ns").unwrap();
    }
    if ts.logical != 0 {
        write!(s, ".{}", ts.logical).unwrap();
    }
    s
}

struct Runner {
    engine: Memory,
    txns: HashMap<String, TxnMeta>,
    names: HashMap<TxnId, String>,
    /// The range the commands are evaluated in.
    range: Span,
}

impl Runner {
    fn name(&self, id: TxnId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("{id:?}"))
    }

    fn fmt_record(&self, r: &TxnRecord) -> String {
        let spans: Vec<String> = r
            .lock_spans
            .iter()
            .map(|s| {
                format!(
                    "{}-{}",
                    String::from_utf8_lossy(&s.start),
                    String::from_utf8_lossy(&s.end)
                )
            })
            .collect();
        let in_flight: Vec<String> = r
            .in_flight
            .iter()
            .map(|(k, q)| format!("{}:{q}", String::from_utf8_lossy(k)))
            .collect();
        format!(
            "{} {:?} write_ts={} epoch={} heartbeat={}{}{}",
            self.name(r.meta.id),
            r.status,
            fmt_ts(r.meta.write_ts),
            r.meta.epoch,
            fmt_ts(r.last_heartbeat),
            if spans.is_empty() {
                String::new()
            } else {
                format!(" lock_spans=[{}]", spans.join(","))
            },
            if in_flight.is_empty() {
                String::new()
            } else {
                format!(" in_flight=[{}]", in_flight.join(","))
            }
        )
    }

    fn fmt_error(&self, e: &cairn_kv::Error) -> String {
        match e {
            cairn_kv::Error::TxnAborted { txn } => format!("TxnAborted {}", self.name(*txn)),
            cairn_kv::Error::TxnPushFailed { pushee } => {
                format!("TxnPushFailed {}", self.name(*pushee))
            }
            cairn_kv::Error::TxnPushed { txn, ts } => {
                format!("TxnPushed {} to {}", self.name(*txn), fmt_ts(*ts))
            }
            cairn_kv::Error::WriteIntent { intents } => format!(
                "WriteIntent {}",
                intents
                    .iter()
                    .map(|i| format!(
                        "{}@{}",
                        String::from_utf8_lossy(&i.key),
                        self.name(i.txn.id)
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => other.to_string(),
        }
    }

    /// Evaluates one request and applies its writes (as Raft would).
    fn eval(
        &mut self,
        req: Request,
        ts: Timestamp,
        txn: Option<&TxnMeta>,
        now: Timestamp,
    ) -> Result<Response, cairn_kv::Error> {
        let base: &dyn Reader = &self.engine;
        let mut batch = IndexedBatch::new(base);
        let ctx = EvalContext {
            ts,
            txn,
            uncertainty_limit: Timestamp::ZERO,
            now,
            range: &self.range,
        };
        let resp = evaluate(&mut batch, &ctx, &req)?;
        let writes = batch.into_write_batch();
        self.engine.write(writes, false)?;
        Ok(resp)
    }

    fn txn(&self, name: &str) -> Result<TxnMeta, Box<dyn StdError>> {
        Ok(self
            .txns
            .get(name)
            .ok_or_else(|| format!("unknown txn {name}"))?
            .clone())
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
        let now = args
            .take_key("now")
            .map(parse_ts)
            .transpose()?
            .unwrap_or_default();
        let result = match command.name.as_str() {
            // txn NAME ts=T [priority=P] [anchor=K]: a transaction (not sent anywhere).
            "txn" => {
                let name = args.next_pos().ok_or("txn name missing")?.to_string();
                let ts = parse_ts(args.take_key("ts").ok_or("ts= missing")?)?;
                let priority = args
                    .take_key("priority")
                    .map(str::parse)
                    .transpose()?
                    .unwrap_or(1);
                let anchor = args.take_key("anchor").unwrap_or(&name).as_bytes().to_vec();
                args.reject_next()?;
                // Deterministic ids, so messages that print them do not change.
                let id = TxnId::from_bytes([u8::try_from(self.txns.len() + 1)?; 16]);
                self.names.insert(id, name.clone());
                self.txns.insert(
                    name,
                    TxnMeta {
                        id,
                        key: anchor,
                        epoch: 0,
                        write_ts: ts,
                        min_ts: ts,
                        priority,
                        seq: 0,
                        ignored: Vec::new(),
                    },
                );
                return Ok(out);
            }
            // txn_set NAME [ts=T] [epoch=E]: the coordinator moves its transaction.
            "txn_set" => {
                let name = args.next_pos().ok_or("txn name missing")?.to_string();
                let ts = args.take_key("ts").map(parse_ts).transpose()?;
                let epoch = args.take_key("epoch").map(str::parse).transpose()?;
                args.reject_next()?;
                let t = self.txns.get_mut(&name).ok_or("unknown txn")?;
                if let Some(ts) = ts {
                    t.write_ts = ts;
                }
                if let Some(e) = epoch {
                    t.epoch = e;
                }
                return Ok(out);
            }
            // put k=K v=V txn=NAME [read=T]: a transactional write.
            "put" => {
                let key = args.take_key("k").ok_or("k= missing")?.as_bytes().to_vec();
                let value = args.take_key("v").ok_or("v= missing")?.as_bytes().to_vec();
                let mut txn = self.txn(args.take_key("txn").ok_or("txn= missing")?)?;
                let read = args.take_key("read").map(parse_ts).transpose()?;
                args.reject_next()?;
                txn.seq += 1;
                self.txns.insert(self.name(txn.id), txn.clone());
                self.eval(
                    Request::Put { key, value },
                    read.unwrap_or(txn.write_ts),
                    Some(&txn),
                    now,
                )
                .map(|_| String::new())
            }
            // get k=K ts=T [txn=NAME]
            "get" => {
                let key = args.take_key("k").ok_or("k= missing")?.as_bytes().to_vec();
                let ts = parse_ts(args.take_key("ts").ok_or("ts= missing")?)?;
                let txn = args.take_key("txn").map(|n| self.txn(n)).transpose()?;
                args.reject_next()?;
                self.eval(Request::Get { key: key.clone() }, ts, txn.as_ref(), now)
                    .map(|r| match r {
                        Response::Get { value } => format!(
                            "{} → {}",
                            String::from_utf8_lossy(&key),
                            value.map_or("<none>".into(), |v| String::from_utf8_lossy(&v)
                                .into_owned())
                        ),
                        other => format!("{other:?}"),
                    })
            }
            // heartbeat txn=NAME now=T
            "heartbeat" => {
                let txn = self.txn(args.take_key("txn").ok_or("txn= missing")?)?;
                args.reject_next()?;
                self.eval(
                    Request::HeartbeatTxn {
                        key: txn.key.clone(),
                    },
                    txn.write_ts,
                    Some(&txn),
                    now,
                )
                .map(|r| match r {
                    Response::HeartbeatTxn { record } => self.fmt_record(&record),
                    other => format!("{other:?}"),
                })
            }
            // push pushee=NAME [pusher=NAME] kind=abort|timestamp [to=T] [force] now=T
            "push" => {
                let pushee = self.txn(args.take_key("pushee").ok_or("pushee= missing")?)?;
                let pusher = args.take_key("pusher").map(|n| self.txn(n)).transpose()?;
                let kind = match args.take_key("kind").ok_or("kind= missing")? {
                    "abort" => PushKind::Abort,
                    "timestamp" => PushKind::Timestamp,
                    k => return Err(format!("bad kind {k}").into()),
                };
                let to = args
                    .take_key("to")
                    .map(parse_ts)
                    .transpose()?
                    .unwrap_or_default();
                let force = args
                    .take_key("force")
                    .map(str::parse)
                    .transpose()?
                    .unwrap_or(false);
                args.reject_next()?;
                self.eval(
                    Request::PushTxn {
                        key: pushee.key.clone(),
                        pushee,
                        push_to: to,
                        kind,
                        force,
                    },
                    now,
                    pusher.as_ref(),
                    now,
                )
                .map(|r| match r {
                    Response::PushTxn { pushee } => format!("pushed: {}", self.fmt_record(&pushee)),
                    other => format!("{other:?}"),
                })
            }
            // end txn=NAME commit=true|false [spans=a-c,x-z] [read=T] now=T
            "end" => {
                let txn = self.txn(args.take_key("txn").ok_or("txn= missing")?)?;
                let commit = args.take_key("commit").ok_or("commit= missing")?.parse()?;
                let spans = args
                    .take_key("spans")
                    .map(|s| {
                        s.split(',')
                            .filter_map(|p| p.split_once('-'))
                            .map(|(a, b)| Span::new(a.as_bytes().to_vec(), b.as_bytes().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let read = args.take_key("read").map(parse_ts).transpose()?;
                // inflight="k:seq,...": a parallel commit's writes.
                let in_flight = args
                    .take_key("inflight")
                    .map(|s| {
                        s.split(',')
                            .filter_map(|p| p.split_once(':'))
                            .map(|(k, q)| Ok((k.as_bytes().to_vec(), q.parse::<u32>()?)))
                            .collect::<Result<Vec<_>, Box<dyn StdError>>>()
                    })
                    .transpose()?
                    .unwrap_or_default();
                args.reject_next()?;
                self.eval(
                    Request::EndTxn {
                        key: txn.key.clone(),
                        commit,
                        lock_spans: spans,
                        in_flight,
                    },
                    read.unwrap_or(txn.write_ts),
                    Some(&txn),
                    now,
                )
                .map(|r| match r {
                    Response::EndTxn { record } => self.fmt_record(&record),
                    other => format!("{other:?}"),
                })
            }
            // resolve k=K txn=NAME status=committed|aborted|pending: with the
            // transaction as the script knows it now.
            "resolve" => {
                let key = args.take_key("k").ok_or("k= missing")?.as_bytes().to_vec();
                let txn = self.txn(args.take_key("txn").ok_or("txn= missing")?)?;
                let status = match args.take_key("status").ok_or("status= missing")? {
                    "committed" => TxnStatus::Committed,
                    "aborted" => TxnStatus::Aborted,
                    "pending" => TxnStatus::Pending,
                    s => return Err(format!("bad status {s}").into()),
                };
                args.reject_next()?;
                self.eval(
                    Request::ResolveIntent {
                        key,
                        txn: txn.clone(),
                        status,
                    },
                    txn.write_ts,
                    None,
                    now,
                )
                .map(|_| String::new())
            }
            // query_intent k=K txn=NAME seq=S: is the write at sequence S there, at or
            // below the transaction's timestamp?
            "query_intent" => {
                let key = args.take_key("k").ok_or("k= missing")?.as_bytes().to_vec();
                let txn = self.txn(args.take_key("txn").ok_or("txn= missing")?)?;
                let seq = args.take_key("seq").ok_or("seq= missing")?.parse()?;
                args.reject_next()?;
                let query = TxnMeta { seq, ..txn.clone() };
                self.eval(
                    Request::QueryIntent { key, txn: query },
                    txn.write_ts,
                    None,
                    now,
                )
                .map(|r| match r {
                    Response::QueryIntent { found } => format!("found: {found}"),
                    other => format!("{other:?}"),
                })
            }
            // recover txn=NAME committed=true|false now=T: settle a STAGING record.
            "recover" => {
                let txn = self.txn(args.take_key("txn").ok_or("txn= missing")?)?;
                let committed = args
                    .take_key("committed")
                    .ok_or("committed= missing")?
                    .parse()?;
                args.reject_next()?;
                self.eval(
                    Request::RecoverTxn {
                        key: txn.key.clone(),
                        txn: txn.clone(),
                        committed,
                    },
                    now,
                    None,
                    now,
                )
                .map(|r| match r {
                    Response::RecoverTxn { record } => self.fmt_record(&record),
                    other => format!("{other:?}"),
                })
            }
            // record txn=NAME: the stored record.
            "record" => {
                let txn = self.txn(args.take_key("txn").ok_or("txn= missing")?)?;
                args.reject_next()?;
                let base: &dyn Reader = &self.engine;
                let batch = IndexedBatch::new(base);
                Ok(match txn_record::read(&batch, &txn.key, txn.id)? {
                    Some(r) => self.fmt_record(&r),
                    None => "no record".into(),
                })
            }
            name => return Err(format!("unknown command {name}").into()),
        };
        match result {
            Ok(s) if s.is_empty() => {}
            Ok(s) => writeln!(out, "{s}")?,
            Err(e) => return Err(self.fmt_error(&e).into()),
        }
        Ok(out)
    }
}

#[test]
fn goldenscripts() {
    crate::test_util::run_goldenscripts("src/eval/testscripts", || Runner {
        engine: Memory::new(),
        txns: HashMap::new(),
        names: HashMap::new(),
        range: Span::new(b"a".to_vec(), b"m".to_vec()),
    });
}

/// A transaction that wrote more intents than one command resolves: its commit resolves
/// [`super::cmd_end_txn::RESOLVE_BATCH_KEYS`] of them and leaves the rest in the record;
/// ResolveIntentRange goes on in bounded steps, each saying where to resume.
#[test]
fn resolution_of_a_large_transaction_is_bounded_per_command() {
    use super::cmd_end_txn::RESOLVE_BATCH_KEYS;
    let mut r = Runner {
        engine: Memory::new(),
        txns: HashMap::new(),
        names: HashMap::new(),
        range: Span::new(b"a".to_vec(), b"m".to_vec()),
    };
    let ts = Timestamp::new(10 * SECOND, 0);
    let mut txn = TxnMeta {
        id: TxnId::from_bytes([7; 16]),
        key: b"b".to_vec(),
        epoch: 0,
        write_ts: ts,
        min_ts: ts,
        priority: 1,
        seq: 0,
        ignored: Vec::new(),
    };
    let n = 2 * RESOLVE_BATCH_KEYS + 10;
    let key = |i: usize| format!("c{i:06}").into_bytes();
    for i in 0..n {
        txn.seq += 1;
        r.eval(
            Request::Put {
                key: key(i),
                value: b"v".to_vec(),
            },
            ts,
            Some(&txn),
            ts,
        )
        .unwrap();
    }
    let all = Span::new(key(0), key(n));
    let Response::EndTxn { record } = r
        .eval(
            Request::EndTxn {
                key: txn.key.clone(),
                commit: true,
                lock_spans: vec![all.clone(), Span::new(b"x".to_vec(), b"y".to_vec())],
                in_flight: Vec::new(),
            },
            ts,
            Some(&txn),
            ts,
        )
        .unwrap()
    else {
        panic!("not an EndTxn answer")
    };
    assert_eq!(record.status, TxnStatus::Committed);
    // The local rest from the first unresolved key on, and the span elsewhere.
    assert_eq!(
        record.lock_spans,
        vec![
            Span::new(key(RESOLVE_BATCH_KEYS), key(n)),
            Span::new(b"x".to_vec(), b"y".to_vec()),
        ]
    );
    let mut rounds = 0;
    let mut pending = vec![record.lock_spans[0].clone()];
    while let Some(span) = pending.pop() {
        rounds += 1;
        let resp = r
            .eval(
                Request::ResolveIntentRange {
                    span,
                    txn: txn.clone(),
                    status: TxnStatus::Committed,
                },
                ts,
                None,
                ts,
            )
            .unwrap();
        let Response::ResolveIntentRange { resume } = resp else {
            panic!("{resp:?}")
        };
        pending.extend(resume);
    }
    assert_eq!(rounds, 2);
    // Every key now reads as a committed value, with no intent left.
    let later = Timestamp::new(11 * SECOND, 0);
    let other = TxnMeta {
        id: TxnId::from_bytes([8; 16]),
        key: b"z".to_vec(),
        ..txn.clone()
    };
    let resp = r
        .eval(
            Request::Scan {
                span: all,
                max_keys: 0,
            },
            later,
            Some(&other),
            later,
        )
        .unwrap();
    let Response::Scan { kvs, .. } = resp else {
        panic!("{resp:?}")
    };
    assert_eq!(kvs.len(), n);
}
