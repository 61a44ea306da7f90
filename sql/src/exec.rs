//! The executor: runs a plan in a transaction and returns its rows.
//!
//! Operators are materialized: each returns all its rows to its parent. That keeps
//! the executor simple and is fine for the OLTP statements Cairn is built for, where
//! plans touch few rows; a streaming executor is the step after.
//!
//! Reads go through the statement's [`Txn`], so they see the transaction's own
//! writes and are recorded for its serializability checks. Writes of one statement
//! are sent as one batch where no row depends on another's outcome.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cairn_kv::api::{Request, Response};
use cairn_kv::keys::{self, Direction, Span};
use cairn_txn::{Txn, TxnError};
use rust_decimal::Decimal;

use crate::catalog::{IndexDesc, TableDesc};
use crate::error::{Error, Result, SqlState, internal};
use crate::expr::{EvalContext, Expr, Row, SessionInfo, SubqueryResults, as_count};
use crate::plan::{
    AggCall, AggFunc, JoinKind, OnConflict, Plan, Planned, ScanPlan, SetOpKind, SubPlan,
    column_direction, is_default_marker,
};
use crate::rowcodec;
use crate::types::{DataType, Value, coerce_length, div_scale, rescale};

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// The most spans a scan's IN lists may multiply into.
const MAX_SPANS: usize = 4096;

/// What a statement returned.
#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    /// Rows written (INSERT, UPDATE, DELETE).
    pub affected: u64,
}

pub struct Executor<'a> {
    pub txn: &'a mut Txn,
    pub params: &'a [Value],
    pub session: &'a SessionInfo,
    pub subplans: &'a [SubPlan],
    pub db_id: u64,
    outer: Vec<Row>,
    uncorrelated: HashMap<usize, Arc<Vec<Row>>>,
    /// Subquery ids per expression, by address (plans do not move while they run).
    sub_ids: HashMap<usize, Vec<usize>>,
    defaults: HashMap<String, Expr>,
    deferred: Option<Deferred>,
    /// Set while reading the rows an UPDATE or DELETE writes back: their reads are
    /// locking (see [`cairn_txn::Txn::send_locking`]).
    locking: bool,
}

impl<'a> Executor<'a> {
    pub fn new(
        txn: &'a mut Txn,
        params: &'a [Value],
        session: &'a SessionInfo,
        subplans: &'a [SubPlan],
        db_id: u64,
    ) -> Self {
        Executor {
            txn,
            params,
            session,
            subplans,
            db_id,
            outer: Vec::new(),
            uncorrelated: HashMap::new(),
            sub_ids: HashMap::new(),
            defaults: HashMap::new(),
            deferred: None,
            locking: false,
        }
    }

    /// Runs a planned statement.
    pub async fn execute(&mut self, planned: &'a Planned) -> Result<Outcome> {
        match planned {
            Planned::Query { plan, .. } => Ok(Outcome {
                rows: self.run(plan).await?,
                affected: 0,
            }),
            Planned::Insert {
                table,
                targets,
                source,
                on_conflict,
                returning,
            } => {
                let rows = self.run(source).await?;
                self.insert(
                    table,
                    targets,
                    rows,
                    on_conflict,
                    returning.as_ref().map(|r| &r.0),
                )
                .await
            }
            Planned::Update {
                table,
                scan,
                sets,
                returning,
            } => {
                let rows = self.run_locking(scan).await?;
                self.update(table, rows, sets, returning.as_ref().map(|r| &r.0))
                    .await
            }
            Planned::Delete {
                table,
                scan,
                returning,
            } => {
                let rows = self.run_locking(scan).await?;
                self.delete(table, rows, returning.as_ref().map(|r| &r.0))
                    .await
            }
        }
    }

    fn ctx(&self) -> EvalContext<'_> {
        EvalContext {
            params: self.params,
            outer: &self.outer,
            session: self.session,
        }
    }

    /// Evaluates an expression with no subqueries.
    fn eval_sync(&self, e: &Expr, row: &[Value]) -> Result<Value> {
        e.eval(row, &self.ctx(), &SubqueryResults::new())
    }

    /// Evaluates an expression, first running the subqueries it holds for `row`.
    async fn eval(&mut self, e: &'a Expr, row: &[Value]) -> Result<Value> {
        let key = e as *const Expr as usize;
        let ids = match self.sub_ids.get(&key) {
            Some(ids) => ids.clone(),
            None => {
                let ids = e.subqueries();
                self.sub_ids.insert(key, ids.clone());
                ids
            }
        };
        if ids.is_empty() {
            return self.eval_sync(e, row);
        }
        let mut subs = SubqueryResults::new();
        for id in ids {
            let rows = self.subquery(id, row).await?;
            subs.insert(id, rows);
        }
        e.eval(row, &self.ctx(), &subs)
    }

    async fn subquery(&mut self, id: usize, row: &[Value]) -> Result<Arc<Vec<Row>>> {
        let subplans = self.subplans;
        let sub = subplans
            .get(id)
            .ok_or_else(|| internal(format!("no subquery {id}")))?;
        if !sub.correlated
            && let Some(rows) = self.uncorrelated.get(&id)
        {
            return Ok(rows.clone());
        }
        self.outer.push(row.to_vec());
        let result = self.run(&sub.plan).await;
        self.outer.pop();
        let rows = Arc::new(result?);
        if !sub.correlated {
            self.uncorrelated.insert(id, rows.clone());
        }
        Ok(rows)
    }

    /// Runs a plan to completion.
    pub fn run<'s>(&'s mut self, plan: &'a Plan) -> BoxFuture<'s, Vec<Row>> {
        Box::pin(async move {
            match plan {
                Plan::Values { rows } => {
                    let mut out = Vec::with_capacity(rows.len());
                    for r in rows {
                        let mut row = Vec::with_capacity(r.len());
                        for e in r {
                            if is_default_marker(e) {
                                // DEFAULT in VALUES: the writer fills it in.
                                row.push(Value::Null);
                                continue;
                            }
                            row.push(self.eval(e, &[]).await?);
                        }
                        out.push(row);
                    }
                    Ok(out)
                }
                Plan::Scan(scan) => self.scan(scan).await,
                Plan::Virtual(v) => {
                    let db_name = self.session.database.clone();
                    v.rows(self.txn, self.db_id, &db_name).await
                }
                Plan::Filter { input, predicate } => {
                    let rows = self.run(input).await?;
                    let mut out = Vec::new();
                    for row in rows {
                        if self.eval(predicate, &row).await? == Value::Bool(true) {
                            out.push(row);
                        }
                    }
                    Ok(out)
                }
                Plan::Project { input, exprs } => {
                    let rows = self.run(input).await?;
                    let mut out = Vec::with_capacity(rows.len());
                    for row in rows {
                        let mut o = Vec::with_capacity(exprs.len());
                        for e in exprs {
                            o.push(self.eval(e, &row).await?);
                        }
                        out.push(o);
                    }
                    Ok(out)
                }
                Plan::Join {
                    left,
                    right,
                    kind,
                    equi,
                    on,
                    left_width,
                    right_width,
                } => {
                    let l = self.run(left).await?;
                    let r = self.run(right).await?;
                    self.join(l, r, *kind, equi, on.as_ref(), *left_width, *right_width)
                        .await
                }
                Plan::Aggregate {
                    input,
                    group_by,
                    aggs,
                } => {
                    let rows = self.run(input).await?;
                    self.aggregate(rows, group_by, aggs)
                }
                Plan::Distinct { input } => {
                    let rows = self.run(input).await?;
                    let mut seen = HashSet::new();
                    Ok(rows
                        .into_iter()
                        .filter(|r| seen.insert(r.clone()))
                        .collect())
                }
                Plan::Sort { input, keys } => {
                    let rows = self.run(input).await?;
                    let mut keyed = Vec::with_capacity(rows.len());
                    for row in rows {
                        let mut k = Vec::with_capacity(keys.len());
                        for key in keys {
                            k.push(self.eval(&key.expr, &row).await?);
                        }
                        keyed.push((k, row));
                    }
                    keyed.sort_by(|(a, _), (b, _)| {
                        for (i, key) in keys.iter().enumerate() {
                            let (x, y) = (&a[i], &b[i]);
                            let ord = match (x.is_null(), y.is_null()) {
                                (true, true) => std::cmp::Ordering::Equal,
                                (true, false) => {
                                    if key.nulls_first {
                                        std::cmp::Ordering::Less
                                    } else {
                                        std::cmp::Ordering::Greater
                                    }
                                }
                                (false, true) => {
                                    if key.nulls_first {
                                        std::cmp::Ordering::Greater
                                    } else {
                                        std::cmp::Ordering::Less
                                    }
                                }
                                (false, false) => {
                                    let o = x.cmp_total(y);
                                    if key.desc { o.reverse() } else { o }
                                }
                            };
                            if ord != std::cmp::Ordering::Equal {
                                return ord;
                            }
                        }
                        std::cmp::Ordering::Equal
                    });
                    Ok(keyed.into_iter().map(|(_, r)| r).collect())
                }
                Plan::Limit {
                    input,
                    limit,
                    offset,
                } => {
                    let limit = match limit {
                        Some(e) => as_count(&self.eval(e, &[]).await?, "LIMIT")?,
                        None => None,
                    };
                    let offset = match offset {
                        Some(e) => as_count(&self.eval(e, &[]).await?, "OFFSET")?.unwrap_or(0),
                        None => 0,
                    };
                    let rows = self.run(input).await?;
                    let it = rows.into_iter().skip(offset as usize);
                    Ok(match limit {
                        Some(n) => it.take(n as usize).collect(),
                        None => it.collect(),
                    })
                }
                Plan::SetOp {
                    kind,
                    all,
                    left,
                    right,
                } => {
                    let l = self.run(left).await?;
                    let r = self.run(right).await?;
                    Ok(set_op(*kind, *all, l, r))
                }
            }
        })
    }

    // ---- scans ----

    /// The values an expression list allows for one key column, cast to its type;
    /// values that cannot equal any value of the type are dropped.
    fn key_values(&self, exprs: &[Expr], ty: DataType) -> Result<Vec<Value>> {
        let mut out = Vec::new();
        for e in exprs {
            let v = self.eval_sync(e, &[])?;
            if let Some(v) = exact_cast(v, ty) {
                out.push(v);
            }
        }
        out.sort_by(|a, b| a.cmp_total(b));
        out.dedup();
        Ok(out)
    }

    /// The key spans of a scan, in index order, and whether each is one whole key
    /// (every index column fixed by an equality).
    ///
    /// When the equalities multiply into more than [`MAX_SPANS`] combinations, only
    /// the leading columns that fit are encoded, and the range bound (which belongs
    /// to the column after all the equalities) is dropped: the residual filter checks
    /// the rest.
    fn spans(&self, scan: &ScanPlan) -> Result<(Vec<Span>, bool)> {
        let table = &scan.table;
        let index: &IndexDesc = scan.index.as_ref().unwrap_or(&table.primary);
        let prefix = keys::index_prefix(table.id, index.id);
        let k = &scan.constraint;
        let col_type = |i: usize| -> Result<DataType> {
            let (col, _) = index
                .columns
                .get(i)
                .ok_or_else(|| internal("constraint on a column the index lacks"))?;
            Ok(table.columns[table.column_position(*col)?].ty)
        };
        // Equality prefixes: the cross product of each column's values.
        let mut prefixes = vec![prefix];
        let mut encoded = 0;
        for (i, alternatives) in k.eq.iter().enumerate() {
            let values = self.key_values(alternatives, col_type(i)?)?;
            let dir = column_direction(index, i);
            let mut next = Vec::with_capacity(prefixes.len() * values.len());
            for p in &prefixes {
                for v in &values {
                    let mut key = p.clone();
                    rowcodec::encode_key_values(&mut key, &[(v, dir)])?;
                    next.push(key);
                }
            }
            if next.len() > MAX_SPANS {
                // Too many combinations: scan the prefixes so far, filter the rest.
                break;
            }
            prefixes = next;
            encoded += 1;
        }
        let all_eq = encoded == k.eq.len();
        let points = all_eq && encoded == index.columns.len();
        let range_col = k.eq.len();
        let bound = |b: &Option<(Expr, bool)>| -> Result<Option<(Value, bool)>> {
            match b {
                Some((e, inclusive)) if all_eq && range_col < index.columns.len() => {
                    let v = self.eval_sync(e, &[])?;
                    if v.is_null() {
                        // `col > NULL` matches nothing; an empty bound set says so.
                        return Ok(Some((Value::Null, *inclusive)));
                    }
                    Ok(exact_cast(v, col_type(range_col)?).map(|v| (v, *inclusive)))
                }
                _ => Ok(None),
            }
        };
        let lower = bound(&k.lower)?;
        let upper = bound(&k.upper)?;
        if matches!(&lower, Some((Value::Null, _))) || matches!(&upper, Some((Value::Null, _))) {
            return Ok((vec![], points));
        }
        let dir = column_direction(index, range_col);
        let mut spans = Vec::with_capacity(prefixes.len());
        for p in prefixes {
            let mut start = p.clone();
            let mut end = keys::prefix_end(&p);
            let key_of = |v: &Value| -> Result<Vec<u8>> {
                let mut key = p.clone();
                rowcodec::encode_key_values(&mut key, &[(v, dir)])?;
                Ok(key)
            };
            // In a descending column, the value's lower bound is the key's upper one.
            let (key_lower, key_upper) = match dir {
                Direction::Asc => (&lower, &upper),
                Direction::Desc => (&upper, &lower),
            };
            if let Some((v, inclusive)) = key_lower {
                let key = key_of(v)?;
                start = if *inclusive {
                    key
                } else {
                    keys::prefix_end(&key)
                };
            }
            if let Some((v, inclusive)) = key_upper {
                let key = key_of(v)?;
                end = if *inclusive {
                    keys::prefix_end(&key)
                } else {
                    key
                };
            }
            if start < end {
                spans.push(Span::new(start, end));
            }
        }
        Ok((spans, points))
    }

    /// Runs the source of an UPDATE or DELETE with locking reads: the rows it returns
    /// are the newest committed ones, so the writes that follow do not land above
    /// values the transaction did not see (which its commit would have to refuse).
    async fn run_locking(&mut self, plan: &'a Plan) -> Result<Vec<Row>> {
        self.locking = true;
        let rows = self.run(plan).await;
        self.locking = false;
        rows
    }

    /// Sends reads, locking ones while [`Executor::run_locking`] runs.
    async fn read(&mut self, reqs: Vec<Request>) -> Result<Vec<Response>> {
        Ok(if self.locking {
            self.txn.send_locking(reqs).await?
        } else {
            self.txn.send(reqs).await?
        })
    }

    async fn scan(&mut self, scan: &'a ScanPlan) -> Result<Vec<Row>> {
        let table = &scan.table;
        let (spans, points) = self.spans(scan)?;
        let mut rows = Vec::new();
        let full_pk = scan.index.is_none() && points;
        // Without a filter, the limit bounds what is read.
        let read_limit = if scan.filter.is_none() {
            scan.limit.unwrap_or(0)
        } else {
            0
        };
        let mut kvs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        if full_pk {
            // Point lookups: one Get per key, in one batch.
            let reqs: Vec<Request> = spans
                .iter()
                .map(|s| Request::Get {
                    key: s.start.clone(),
                })
                .collect();
            let keys: Vec<Vec<u8>> = spans.into_iter().map(|s| s.start).collect();
            if !reqs.is_empty() {
                let resps = self.read(reqs).await?;
                for (key, resp) in keys.into_iter().zip(resps) {
                    if let Response::Get { value: Some(v) } = resp {
                        kvs.push((key, v));
                    }
                }
            }
        } else {
            for span in spans {
                let want = if read_limit > 0 {
                    read_limit.saturating_sub(kvs.len() as u64)
                } else {
                    0
                };
                if read_limit > 0 && want == 0 {
                    break;
                }
                let req = Request::Scan {
                    span,
                    max_keys: want,
                };
                for resp in self.read(vec![req]).await? {
                    match resp {
                        Response::Scan { kvs: got, .. } => kvs.extend(got),
                        other => return Err(internal(format!("a scan answered {other:?}"))),
                    }
                }
            }
        }
        if let Some(index) = &scan.index {
            // Index entries lead to rows: fetch them in one batch.
            let pks: Vec<Vec<u8>> = kvs
                .iter()
                .map(|(k, _)| rowcodec::primary_key_from_index_key(table, index, k))
                .collect::<Result<_>>()?;
            kvs.clear();
            if !pks.is_empty() {
                let reqs = pks
                    .iter()
                    .map(|k| Request::Get { key: k.clone() })
                    .collect();
                let resps = self.read(reqs).await?;
                for (key, resp) in pks.into_iter().zip(resps) {
                    if let Response::Get { value: Some(v) } = resp {
                        kvs.push((key, v));
                    }
                }
            }
        }
        for (k, v) in kvs {
            let row = rowcodec::decode_row(table, &k, &v)?;
            if let Some(f) = &scan.filter
                && self.eval(f, &row).await? != Value::Bool(true)
            {
                continue;
            }
            rows.push(row);
            if scan.limit.is_some_and(|l| rows.len() as u64 >= l) {
                break;
            }
        }
        Ok(rows)
    }

    // ---- joins ----

    #[allow(clippy::too_many_arguments)]
    async fn join(
        &mut self,
        left: Vec<Row>,
        right: Vec<Row>,
        kind: JoinKind,
        equi: &'a [(Expr, Expr)],
        on: Option<&'a Expr>,
        left_width: usize,
        right_width: usize,
    ) -> Result<Vec<Row>> {
        let mut out = Vec::new();
        let mut right_matched = vec![false; right.len()];
        // Hash the right side on its equi-join keys (NULL keys never match).
        let table: Option<HashMap<Vec<Value>, Vec<usize>>> = if equi.is_empty() {
            None
        } else {
            let mut t: HashMap<Vec<Value>, Vec<usize>> = HashMap::new();
            for (i, r) in right.iter().enumerate() {
                let key = equi
                    .iter()
                    .map(|(_, re)| self.eval_sync(re, r))
                    .collect::<Result<Vec<_>>>()?;
                if key.iter().any(Value::is_null) {
                    continue;
                }
                t.entry(normalize_key(key)).or_default().push(i);
            }
            Some(t)
        };
        let all: Vec<usize> = (0..right.len()).collect();
        for l in &left {
            let candidates: &[usize] = match &table {
                Some(t) => {
                    let key = equi
                        .iter()
                        .map(|(le, _)| self.eval_sync(le, l))
                        .collect::<Result<Vec<_>>>()?;
                    if key.iter().any(Value::is_null) {
                        &[]
                    } else {
                        t.get(&normalize_key(key)).map(Vec::as_slice).unwrap_or(&[])
                    }
                }
                None => &all,
            };
            let mut matched = false;
            for &ri in candidates {
                let mut row = Vec::with_capacity(left_width + right_width);
                row.extend_from_slice(l);
                row.extend_from_slice(&right[ri]);
                let ok = match on {
                    Some(p) => self.eval(p, &row).await? == Value::Bool(true),
                    None => true,
                };
                if ok {
                    matched = true;
                    right_matched[ri] = true;
                    out.push(row);
                }
            }
            if !matched && matches!(kind, JoinKind::Left | JoinKind::Full) {
                let mut row = l.clone();
                row.extend(std::iter::repeat_n(Value::Null, right_width));
                out.push(row);
            }
        }
        if matches!(kind, JoinKind::Right | JoinKind::Full) {
            for (ri, r) in right.iter().enumerate() {
                if !right_matched[ri] {
                    let mut row = vec![Value::Null; left_width];
                    row.extend_from_slice(r);
                    out.push(row);
                }
            }
        }
        Ok(out)
    }

    // ---- aggregation ----

    fn aggregate(&self, rows: Vec<Row>, group_by: &[Expr], aggs: &[AggCall]) -> Result<Vec<Row>> {
        let mut index: HashMap<Vec<Value>, usize> = HashMap::new();
        let mut groups: Vec<(Vec<Value>, Vec<AggState>)> = Vec::new();
        for row in &rows {
            let key = group_by
                .iter()
                .map(|e| self.eval_sync(e, row))
                .collect::<Result<Vec<_>>>()?;
            let gi = match index.get(&key) {
                Some(&i) => i,
                None => {
                    groups.push((key.clone(), aggs.iter().map(AggState::new).collect()));
                    index.insert(key, groups.len() - 1);
                    groups.len() - 1
                }
            };
            for (state, call) in groups[gi].1.iter_mut().zip(aggs) {
                let args = call
                    .args
                    .iter()
                    .map(|e| self.eval_sync(e, row))
                    .collect::<Result<Vec<_>>>()?;
                state.add(call, args)?;
            }
        }
        // Without GROUP BY, an empty input still gives one row.
        if groups.is_empty() && group_by.is_empty() {
            groups.push((vec![], aggs.iter().map(AggState::new).collect()));
        }
        groups
            .into_iter()
            .map(|(mut key, states)| {
                for (s, call) in states.into_iter().zip(aggs) {
                    key.push(s.finish(call)?);
                }
                Ok(key)
            })
            .collect()
    }

    // ---- writes ----

    /// The value of a column's DEFAULT (NULL without one; a new id for the row id).
    fn default_value(&mut self, table: &TableDesc, pos: usize) -> Result<Value> {
        let col = &table.columns[pos];
        let Some(text) = &col.default else {
            return Ok(Value::Null);
        };
        let expr = match self.defaults.get(text) {
            Some(e) => e.clone(),
            None => {
                let e = crate::session::bind_default(text, col.ty)?;
                self.defaults.insert(text.clone(), e.clone());
                e
            }
        };
        self.eval_sync(&expr, &[])
    }

    /// Casts and checks a complete row for writing into `table`.
    fn check_row(&self, table: &TableDesc, row: Row) -> Result<Row> {
        row.into_iter()
            .zip(&table.columns)
            .map(|(v, c)| {
                if v.is_null() {
                    if !c.nullable {
                        return Err(Error::new(
                            SqlState::NotNullViolation,
                            format!(
                                "null value in column \"{}\" of relation \"{}\" violates not-null constraint",
                                c.name, table.name
                            ),
                        ));
                    }
                    return Ok(Value::Null);
                }
                let v = assign_cast(v, c.ty)?;
                match c.ty {
                    DataType::Varchar(n) | DataType::Char(n) => coerce_length(v, c.ty, n),
                    _ => Ok(v),
                }
            })
            .collect()
    }

    async fn insert(
        &mut self,
        table: &'a TableDesc,
        targets: &[usize],
        source: Vec<Row>,
        on_conflict: &'a OnConflict,
        returning: Option<&'a Vec<Expr>>,
    ) -> Result<Outcome> {
        let mut rows = Vec::with_capacity(source.len());
        for src in source {
            let mut row = vec![Value::Null; table.columns.len()];
            let mut given = vec![false; table.columns.len()];
            for (v, &pos) in src.into_iter().zip(targets) {
                row[pos] = v;
                given[pos] = true;
            }
            for pos in 0..row.len() {
                if !given[pos] {
                    row[pos] = self.default_value(table, pos)?;
                }
            }
            rows.push(self.check_row(table, row)?);
        }
        let simple =
            matches!(on_conflict, OnConflict::Error) && !table.indexes.iter().any(|i| i.unique);
        let blind = replaces_whole_row(table, on_conflict);
        let mut out = Outcome::default();
        if simple || blind {
            // One batch: conditional puts of the rows (failing on an existing key), or,
            // for an upsert that replaces whole rows of a table without secondary
            // indexes, blind puts (no read first: nothing of an existing row survives
            // and no index entry of it needs removing); and puts of their index entries.
            let mut reqs = Vec::with_capacity(rows.len() * (1 + table.indexes.len()));
            for row in &rows {
                let key = rowcodec::primary_key(table, row)?;
                let value = rowcodec::encode_row_value(table, row);
                reqs.push(if blind {
                    Request::Put { key, value }
                } else {
                    Request::ConditionalPut {
                        key,
                        value,
                        expected: None,
                    }
                });
                for ix in &table.indexes {
                    reqs.push(Request::Put {
                        key: rowcodec::index_key(table, ix, row)?,
                        value: Vec::new(),
                    });
                }
            }
            self.send_final(table, reqs).await?;
            out.affected = rows.len() as u64;
            if let Some(ret) = returning {
                for row in &rows {
                    out.rows.push(self.project(ret, row).await?);
                }
            }
            return Ok(out);
        }
        let last = rows.len().saturating_sub(1);
        for (i, row) in rows.into_iter().enumerate() {
            // The last row's writes may go with the commit; earlier rows' must be
            // visible to the reads of the rows after them.
            let final_row = i == last;
            let pk = rowcodec::primary_key(table, &row)?;
            let existing = match self.txn.get(&pk).await? {
                Some(v) => Some(rowcodec::decode_row(table, &pk, &v)?),
                None => None,
            };
            let conflict = match existing {
                Some(old) => Some((table.primary.clone(), old)),
                None => self.unique_conflict(table, &row, None).await?,
            };
            match (conflict, on_conflict) {
                (None, _) => {
                    self.write_row(table, None, &row, final_row).await?;
                    out.affected += 1;
                    if let Some(ret) = returning {
                        let r = self.project(ret, &row).await?;
                        out.rows.push(r);
                    }
                }
                (Some((ix, _)), OnConflict::Error) => {
                    return Err(duplicate_key(table, &ix));
                }
                (Some(_), OnConflict::DoNothing) => {}
                (Some((_, old)), OnConflict::DoUpdate { sets, filter }) => {
                    let mut both = old.clone();
                    both.extend(row.iter().cloned());
                    if let Some(f) = filter
                        && self.eval(f, &both).await? != Value::Bool(true)
                    {
                        continue;
                    }
                    let mut new = old.clone();
                    for (pos, e) in sets {
                        new[*pos] = if is_default_marker(e) {
                            self.default_value(table, *pos)?
                        } else {
                            self.eval(e, &both).await?
                        };
                    }
                    let new = self.check_row(table, new)?;
                    if self
                        .unique_conflict(table, &new, Some(&old))
                        .await?
                        .is_some()
                    {
                        return Err(duplicate_key(table, &table.primary));
                    }
                    self.write_row(table, Some(&old), &new, final_row).await?;
                    out.affected += 1;
                    if let Some(ret) = returning {
                        let r = self.project(ret, &new).await?;
                        out.rows.push(r);
                    }
                }
            }
        }
        Ok(out)
    }

    /// A row other than `old` that holds one of `row`'s unique index values, with
    /// the index.
    async fn unique_conflict(
        &mut self,
        table: &TableDesc,
        row: &[Value],
        old: Option<&Row>,
    ) -> Result<Option<(IndexDesc, Row)>> {
        let old_pk = old.map(|o| rowcodec::primary_key(table, o)).transpose()?;
        for ix in table.indexes.iter().filter(|i| i.unique) {
            let values: Vec<&Value> = ix
                .columns
                .iter()
                .map(|(c, _)| table.column_position(*c).map(|p| &row[p]))
                .collect::<Result<_>>()?;
            // NULLs are distinct from each other: they never conflict.
            if values.iter().any(|v| v.is_null()) {
                continue;
            }
            let prefix = rowcodec::index_value_prefix(table, ix, &values)?;
            let hits = self
                .txn
                .scan(&prefix, &keys::prefix_end(&prefix), 2)
                .await?;
            for (k, _) in hits {
                let pk = rowcodec::primary_key_from_index_key(table, ix, &k)?;
                if old_pk.as_ref() == Some(&pk) {
                    continue;
                }
                if let Some(v) = self.txn.get(&pk).await? {
                    return Ok(Some((ix.clone(), rowcodec::decode_row(table, &pk, &v)?)));
                }
            }
        }
        Ok(None)
    }

    /// Writes `new` over `old` (or as a new row): the row and every index entry.
    /// Replaces `old` with `new`; the statement's `last` write may be kept for the commit
    /// (see [`Executor::defer_final_writes`]).
    async fn write_row(
        &mut self,
        table: &TableDesc,
        old: Option<&Row>,
        new: &Row,
        last: bool,
    ) -> Result<()> {
        let reqs = self.row_change(table, old, Some(new))?;
        if last {
            return self.send_final(table, reqs).await;
        }
        self.txn
            .send(reqs)
            .await
            .map_err(|e| unique_error(e, table, &table.primary))?;
        Ok(())
    }

    /// The requests that replace `old` with `new` (either may be absent).
    fn row_change(
        &self,
        table: &TableDesc,
        old: Option<&Row>,
        new: Option<&Row>,
    ) -> Result<Vec<Request>> {
        let mut reqs = Vec::new();
        let old_pk = old.map(|r| rowcodec::primary_key(table, r)).transpose()?;
        let new_pk = new.map(|r| rowcodec::primary_key(table, r)).transpose()?;
        match (&old_pk, &new_pk, new) {
            (Some(o), Some(n), Some(row)) if o == n => reqs.push(Request::Put {
                key: n.clone(),
                value: rowcodec::encode_row_value(table, row),
            }),
            (o, n, row) => {
                if let Some(o) = o {
                    reqs.push(Request::Delete { key: o.clone() });
                }
                if let (Some(n), Some(row)) = (n, row) {
                    reqs.push(Request::ConditionalPut {
                        key: n.clone(),
                        value: rowcodec::encode_row_value(table, row),
                        expected: None,
                    });
                }
            }
        }
        for ix in &table.indexes {
            let ok = old.map(|r| rowcodec::index_key(table, ix, r)).transpose()?;
            let nk = new.map(|r| rowcodec::index_key(table, ix, r)).transpose()?;
            if ok == nk {
                continue;
            }
            if let Some(k) = ok {
                reqs.push(Request::Delete { key: k });
            }
            if let Some(k) = nk {
                reqs.push(Request::Put {
                    key: k,
                    value: Vec::new(),
                });
            }
        }
        Ok(reqs)
    }

    async fn project(&mut self, exprs: &'a [Expr], row: &[Value]) -> Result<Row> {
        let mut out = Vec::with_capacity(exprs.len());
        for e in exprs {
            out.push(self.eval(e, row).await?);
        }
        Ok(out)
    }

    async fn update(
        &mut self,
        table: &'a TableDesc,
        rows: Vec<Row>,
        sets: &'a [(usize, Expr)],
        returning: Option<&'a Vec<Expr>>,
    ) -> Result<Outcome> {
        let mut out = Outcome::default();
        let mut reqs = Vec::new();
        let has_unique = table.indexes.iter().any(|i| i.unique);
        for old in rows {
            let mut new = old.clone();
            for (pos, e) in sets {
                new[*pos] = if is_default_marker(e) {
                    self.default_value(table, *pos)?
                } else {
                    self.eval(e, &old).await?
                };
            }
            let new = self.check_row(table, new)?;
            if has_unique {
                // Rows are checked one by one against what is already written.
                if let Some((ix, _)) = self.unique_conflict(table, &new, Some(&old)).await? {
                    return Err(duplicate_key(table, &ix));
                }
                let r = self.row_change(table, Some(&old), Some(&new))?;
                self.txn
                    .send(r)
                    .await
                    .map_err(|e| unique_error(e, table, &table.primary))?;
            } else {
                reqs.extend(self.row_change(table, Some(&old), Some(&new))?);
            }
            out.affected += 1;
            if let Some(ret) = returning {
                let r = self.project(ret, &new).await?;
                out.rows.push(r);
            }
        }
        if !reqs.is_empty() {
            // Deletes of old keys come before puts of new ones within the batch, so
            // a primary key update that shifts rows (SET k = k + 1) does not collide.
            reqs.sort_by_key(|r| !matches!(r, Request::Delete { .. }));
            self.send_final(table, reqs).await?;
        }
        Ok(out)
    }

    async fn delete(
        &mut self,
        table: &'a TableDesc,
        rows: Vec<Row>,
        returning: Option<&'a Vec<Expr>>,
    ) -> Result<Outcome> {
        let mut out = Outcome::default();
        let mut reqs = Vec::new();
        for row in rows {
            reqs.extend(self.row_change(table, Some(&row), None)?);
            out.affected += 1;
            if let Some(ret) = returning {
                let r = self.project(ret, &row).await?;
                out.rows.push(r);
            }
        }
        self.send_final(table, reqs).await?;
        Ok(out)
    }

    /// Sends a statement's last writes, or keeps them for the commit when the
    /// caller asked (an implicit transaction sends them with its EndTxn: one round
    /// trip, and one Raft command when they all lie in one range).
    async fn send_final(&mut self, table: &TableDesc, reqs: Vec<Request>) -> Result<()> {
        if reqs.is_empty() {
            return Ok(());
        }
        if let Some(d) = &mut self.deferred {
            d.requests.extend(reqs);
            d.table = Some(table.clone());
            return Ok(());
        }
        self.txn
            .send(reqs)
            .await
            .map_err(|e| unique_error(e, table, &table.primary))?;
        Ok(())
    }

    /// Keep the statement's last writes for the commit instead of sending them.
    pub fn defer_final_writes(&mut self) {
        self.deferred = Some(Deferred::default());
    }

    /// The writes kept by [`Executor::defer_final_writes`].
    pub fn take_deferred(&mut self) -> Deferred {
        self.deferred.take().unwrap_or_default()
    }
}

/// Writes to send with the commit, and the table they belong to (for the unique
/// violation a failed conditional put means).
#[derive(Debug, Default)]
pub struct Deferred {
    pub requests: Vec<Request>,
    pub table: Option<TableDesc>,
}

impl Deferred {
    /// Maps an error of the commit that carried these writes.
    pub fn error(&self, e: TxnError) -> Error {
        match &self.table {
            Some(t) => unique_error(e, t, &t.primary),
            None => e.into(),
        }
    }
}

/// Whether `on_conflict` makes an existing row exactly the proposed one: an upsert of
/// every column but the key, with no condition, on a table without secondary indexes.
/// Then the rows can be written blind, without reading what they replace.
fn replaces_whole_row(table: &TableDesc, on_conflict: &OnConflict) -> bool {
    let OnConflict::DoUpdate { sets, filter: None } = on_conflict else {
        return false;
    };
    if !table.indexes.is_empty() {
        return false;
    }
    let Ok(pk) = table.primary_positions() else {
        return false;
    };
    let width = table.columns.len();
    // Every assignment takes the proposed value, and every column but the key has one.
    sets.iter().all(|(pos, e)| *e == Expr::Column(width + pos))
        && (0..width).filter(|p| !pk.contains(p)).all(|p| {
            sets.iter()
                .any(|(pos, e)| *pos == p && *e == Expr::Column(width + p))
        })
}

/// A value cast to a key column's type, or None when no value of the type can equal
/// it (2.5 for an integer column).
fn exact_cast(v: Value, ty: DataType) -> Option<Value> {
    if v.is_null() {
        return None;
    }
    let cast = v.clone().cast(ty).ok()?;
    match cast.compare(&v) {
        Some(std::cmp::Ordering::Equal) => Some(cast),
        // Text of a different form (a date given as text) compares only after the cast.
        None if matches!(v, Value::Text(_)) => Some(cast),
        _ => None,
    }
}

/// Casts a value being written to a column (assignment cast).
fn assign_cast(v: Value, ty: DataType) -> Result<Value> {
    match (&v, ty) {
        (
            Value::Text(_),
            DataType::Varchar(_) | DataType::Char(_) | DataType::Text | DataType::Name,
        ) => Ok(v),
        _ => v.cast(ty),
    }
}

/// Hash join keys compare like values: 1 and 1.0 are one key.
fn normalize_key(key: Vec<Value>) -> Vec<Value> {
    key
}

fn duplicate_key(table: &TableDesc, index: &IndexDesc) -> Error {
    let name = if index.id == table.primary.id {
        format!("{}_pkey", table.name)
    } else {
        index.name.clone()
    };
    Error::new(
        SqlState::UniqueViolation,
        format!("duplicate key value violates unique constraint \"{name}\""),
    )
}

/// Maps a failed conditional put of a row to a unique violation.
fn unique_error(e: TxnError, table: &TableDesc, index: &IndexDesc) -> Error {
    if let TxnError::Kv(cairn_kv::api::Error::Kv(cairn_kv::Error::ConditionFailed { .. })) = &e {
        return duplicate_key(table, index);
    }
    e.into()
}

fn set_op(kind: SetOpKind, all: bool, left: Vec<Row>, right: Vec<Row>) -> Vec<Row> {
    if kind == SetOpKind::Union {
        let rows = left.into_iter().chain(right);
        if all {
            return rows.collect();
        }
        let mut seen = HashSet::new();
        return rows.filter(|r| seen.insert(r.clone())).collect();
    }
    // INTERSECT and EXCEPT: ALL matches rows one for one (multiset semantics);
    // without ALL, each distinct left row appears at most once.
    let mut counts: HashMap<Row, usize> = HashMap::new();
    for r in right {
        *counts.entry(r).or_default() += 1;
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for r in left {
        let count = counts.get(&r).copied().unwrap_or(0);
        let keep = match (kind, all) {
            (SetOpKind::Intersect, true) | (SetOpKind::Except, true) => {
                if count > 0 {
                    counts.insert(r.clone(), count - 1);
                }
                (count > 0) == (kind == SetOpKind::Intersect)
            }
            _ => (count > 0) == (kind == SetOpKind::Intersect) && seen.insert(r.clone()),
        };
        if keep {
            out.push(r);
        }
    }
    out
}

/// The running state of one aggregate over one group.
enum AggState {
    Count(i64),
    SumInt(i128, bool),
    SumDec(Decimal, bool),
    SumFloat(f64, bool),
    Avg(Decimal, f64, i64, bool),
    MinMax(Option<Value>),
    Bool(Option<bool>),
    Strings(Option<String>),
    Distinct(Vec<Value>, HashSet<Value>),
}

impl AggState {
    fn new(call: &AggCall) -> AggState {
        if call.distinct {
            return AggState::Distinct(Vec::new(), HashSet::new());
        }
        match call.func {
            AggFunc::CountStar | AggFunc::Count => AggState::Count(0),
            AggFunc::Sum => match call.ty {
                DataType::Int8 => AggState::SumInt(0, false),
                DataType::Float8 => AggState::SumFloat(0.0, false),
                _ => AggState::SumDec(Decimal::ZERO, false),
            },
            AggFunc::Avg => AggState::Avg(Decimal::ZERO, 0.0, 0, call.ty == DataType::Float8),
            AggFunc::Min | AggFunc::Max => AggState::MinMax(None),
            AggFunc::BoolAnd | AggFunc::BoolOr => AggState::Bool(None),
            AggFunc::StringAgg => AggState::Strings(None),
        }
    }

    fn add(&mut self, call: &AggCall, args: Vec<Value>) -> Result<()> {
        let v = args.first().cloned().unwrap_or(Value::Null);
        if call.func != AggFunc::CountStar && v.is_null() {
            return Ok(());
        }
        let overflow = || Error::new(SqlState::NumericValueOutOfRange, "numeric field overflow");
        match self {
            AggState::Distinct(vals, seen) => {
                if seen.insert(v.clone()) {
                    vals.push(v);
                }
            }
            AggState::Count(n) => *n += 1,
            AggState::SumInt(s, any) => {
                *s += i128::from(as_i64(&v));
                *any = true;
            }
            AggState::SumDec(s, any) => {
                *s = s.checked_add(as_decimal(&v)?).ok_or_else(overflow)?;
                *any = true;
            }
            AggState::SumFloat(s, any) => {
                *s += v.as_f64().unwrap_or(f64::NAN);
                *any = true;
            }
            AggState::Avg(d, f, n, float) => {
                if *float {
                    *f += v.as_f64().unwrap_or(f64::NAN);
                } else {
                    *d = d.checked_add(as_decimal(&v)?).ok_or_else(overflow)?;
                }
                *n += 1;
            }
            AggState::MinMax(best) => {
                let take = match best {
                    None => true,
                    Some(b) => {
                        let ord = v.cmp_total(b);
                        if call.func == AggFunc::Min {
                            ord == std::cmp::Ordering::Less
                        } else {
                            ord == std::cmp::Ordering::Greater
                        }
                    }
                };
                if take {
                    *best = Some(v);
                }
            }
            AggState::Bool(b) => {
                let x = matches!(v, Value::Bool(true));
                *b = Some(match (*b, call.func) {
                    (None, _) => x,
                    (Some(a), AggFunc::BoolAnd) => a && x,
                    (Some(a), _) => a || x,
                });
            }
            AggState::Strings(s) => {
                let text = v.to_text().unwrap_or_default();
                let sep = args.get(1).and_then(Value::to_text).unwrap_or_default();
                *s = Some(match s.take() {
                    None => text,
                    Some(prev) => prev + &sep + &text,
                });
            }
        }
        Ok(())
    }

    fn finish(self, call: &AggCall) -> Result<Value> {
        Ok(match self {
            AggState::Distinct(vals, _) => {
                // Replay the distinct values through a plain state.
                let mut plain = AggCall {
                    distinct: false,
                    ..call.clone()
                };
                if plain.func == AggFunc::CountStar {
                    plain.func = AggFunc::Count;
                }
                let mut s = AggState::new(&plain);
                for v in vals {
                    s.add(&plain, vec![v])?;
                }
                s.finish(&plain)?
            }
            AggState::Count(n) => Value::Int(n),
            AggState::SumInt(s, any) => {
                if !any {
                    Value::Null
                } else {
                    Value::Int(i64::try_from(s).map_err(|_| {
                        Error::new(SqlState::NumericValueOutOfRange, "bigint out of range")
                    })?)
                }
            }
            AggState::SumDec(s, any) => {
                if any {
                    Value::Numeric(s)
                } else {
                    Value::Null
                }
            }
            AggState::SumFloat(s, any) => {
                if any {
                    Value::Float(s)
                } else {
                    Value::Null
                }
            }
            AggState::Avg(d, f, n, float) => {
                if n == 0 {
                    Value::Null
                } else if float {
                    Value::Float(f / n as f64)
                } else {
                    let count = Decimal::from(n);
                    let q = d.checked_div(count).ok_or_else(|| {
                        Error::new(SqlState::NumericValueOutOfRange, "numeric field overflow")
                    })?;
                    Value::Numeric(rescale(q, div_scale(&d, &count)))
                }
            }
            AggState::MinMax(v) => v.unwrap_or(Value::Null),
            AggState::Bool(b) => b.map(Value::Bool).unwrap_or(Value::Null),
            AggState::Strings(s) => s.map(Value::Text).unwrap_or(Value::Null),
        })
    }
}

fn as_i64(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        _ => 0,
    }
}

fn as_decimal(v: &Value) -> Result<Decimal> {
    match v.clone().cast(DataType::Numeric)? {
        Value::Numeric(d) => Ok(d),
        _ => Ok(Decimal::ZERO),
    }
}
