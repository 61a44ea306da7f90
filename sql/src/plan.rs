//! The planner: from a parsed statement to a tree of operators over bound
//! expressions.
//!
//! Planning is synchronous: the tables a statement names are read from the catalog
//! first (in the statement's transaction, see [`crate::session`]), and the planner
//! resolves names against them. A SELECT becomes, bottom up:
//!
//! ```text
//!   Scan / Values / Join            FROM, with WHERE conjuncts pushed into scans
//!   Filter                          the rest of WHERE
//!   Aggregate, Filter               GROUP BY, aggregates, HAVING
//!   Project                         the select list, plus hidden ORDER BY columns
//!   Distinct, Sort, Limit           DISTINCT, ORDER BY, LIMIT/OFFSET
//!   Project                         drops the hidden columns
//! ```
//!
//! A subquery is planned into the statement's list of subplans and referenced by
//! number from the expression that holds it. Columns of an enclosing query are
//! [`Expr::Outer`] references, and a subplan that has them is *correlated*: it runs
//! once per row of the enclosing operator; an uncorrelated one runs once.

use std::collections::HashMap;

use cairn_kv::keys::Direction;
use sqlparser::ast;

use crate::catalog::{IndexDesc, TableDesc};
use crate::error::{Error, Result, SqlState, syntax, unsupported};
use crate::expr::{BinOp, Expr, Func, SubqueryKind};
use crate::functions;
use crate::types::{DataType, Value};
use crate::vtable::VirtualTable;

/// An output column of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub ty: DataType,
    /// The table (or alias) the column came from, for qualified references.
    pub qualifier: Option<String>,
    /// Left out of `*` (the hidden row id, USING duplicates).
    pub hidden: bool,
    /// The table id and column number (1-based) when the column is a table column.
    pub source: Option<(u64, i16)>,
}

impl Column {
    pub fn new(name: impl Into<String>, ty: DataType) -> Column {
        Column {
            name: name.into(),
            ty,
            qualifier: None,
            hidden: false,
            source: None,
        }
    }
}

/// Equality and range constraints on an index's leading columns, evaluated into key
/// spans when the scan runs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyConstraint {
    /// For each leading index column: the values it may equal.
    pub eq: Vec<Vec<Expr>>,
    /// Bounds on the column after the equality prefix: (value, inclusive).
    pub lower: Option<(Expr, bool)>,
    pub upper: Option<(Expr, bool)>,
}

impl KeyConstraint {
    pub fn is_empty(&self) -> bool {
        self.eq.is_empty() && self.lower.is_none() && self.upper.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ScanPlan {
    pub table: TableDesc,
    /// The secondary index to scan, or None for the primary index.
    pub index: Option<IndexDesc>,
    pub constraint: KeyConstraint,
    /// A residual predicate on the table row.
    pub filter: Option<Expr>,
    /// Stop after this many rows passed the filter.
    pub limit: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
    Right,
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggFunc {
    CountStar,
    Count,
    Sum,
    Avg,
    Min,
    Max,
    BoolAnd,
    BoolOr,
    StringAgg,
}

#[derive(Clone, Debug, PartialEq)]
pub struct AggCall {
    pub func: AggFunc,
    pub args: Vec<Expr>,
    pub distinct: bool,
    /// The type of the argument (for SUM's result type).
    pub arg_ty: DataType,
    pub ty: DataType,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SortKey {
    pub expr: Expr,
    pub desc: bool,
    pub nulls_first: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOpKind {
    Union,
    Intersect,
    Except,
}

/// A relational operator tree.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    /// Rows of expressions (VALUES, or one empty row for a SELECT without FROM).
    Values {
        rows: Vec<Vec<Expr>>,
    },
    Scan(Box<ScanPlan>),
    /// A pg_catalog or information_schema table, generated when scanned.
    Virtual(VirtualTable),
    Filter {
        input: Box<Plan>,
        predicate: Expr,
    },
    Project {
        input: Box<Plan>,
        exprs: Vec<Expr>,
    },
    Join {
        left: Box<Plan>,
        right: Box<Plan>,
        kind: JoinKind,
        /// Equalities between a left expression and a right one (over the right
        /// row alone), for a hash join.
        equi: Vec<(Expr, Expr)>,
        /// The rest of the join condition, over the concatenated row.
        on: Option<Expr>,
        left_width: usize,
        right_width: usize,
    },
    Aggregate {
        input: Box<Plan>,
        group_by: Vec<Expr>,
        aggs: Vec<AggCall>,
    },
    Distinct {
        input: Box<Plan>,
    },
    Sort {
        input: Box<Plan>,
        keys: Vec<SortKey>,
    },
    Limit {
        input: Box<Plan>,
        limit: Option<Expr>,
        offset: Option<Expr>,
    },
    SetOp {
        kind: SetOpKind,
        all: bool,
        left: Box<Plan>,
        right: Box<Plan>,
    },
}

/// A subquery of the statement.
#[derive(Clone, Debug, PartialEq)]
pub struct SubPlan {
    pub plan: Plan,
    /// Whether it reads a column of an enclosing query (then it runs per row).
    pub correlated: bool,
}

/// What ON CONFLICT does.
#[derive(Clone, Debug, PartialEq)]
pub enum OnConflict {
    /// Fail with 23505.
    Error,
    DoNothing,
    /// Update the existing row: the assignments are evaluated over the existing row
    /// followed by the proposed (EXCLUDED) row.
    DoUpdate {
        sets: Vec<(usize, Expr)>,
        filter: Option<Expr>,
    },
}

/// A planned statement that reads or writes rows.
#[derive(Clone, Debug, PartialEq)]
pub enum Planned {
    Query {
        plan: Plan,
        columns: Vec<Column>,
    },
    Insert {
        table: TableDesc,
        /// For each source column, its position in the table row.
        targets: Vec<usize>,
        source: Plan,
        on_conflict: OnConflict,
        returning: Option<(Vec<Expr>, Vec<Column>)>,
    },
    Update {
        table: TableDesc,
        scan: Plan,
        sets: Vec<(usize, Expr)>,
        returning: Option<(Vec<Expr>, Vec<Column>)>,
    },
    Delete {
        table: TableDesc,
        scan: Plan,
        returning: Option<(Vec<Expr>, Vec<Column>)>,
    },
}

impl Planned {
    /// The columns the statement returns (empty when it returns no rows).
    pub fn columns(&self) -> Vec<Column> {
        match self {
            Planned::Query { columns, .. } => columns.clone(),
            Planned::Insert { returning, .. }
            | Planned::Update { returning, .. }
            | Planned::Delete { returning, .. } => returning
                .as_ref()
                .map(|(_, c)| c.clone())
                .unwrap_or_default(),
        }
    }
}

/// A table a statement names, read from the catalog before planning.
#[derive(Clone, Debug)]
pub enum TableRef {
    Table(TableDesc),
    Virtual(VirtualTable),
}

/// The columns visible to an expression: the FROM clause's output.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub columns: Vec<Column>,
}

/// Aggregation state while binding expressions above a GROUP BY.
struct AggScope {
    /// The scope the GROUP BY and aggregate arguments are bound in.
    input: Scope,
    group_by: Vec<Expr>,
    group_types: Vec<DataType>,
    aggs: Vec<AggCall>,
}

/// Turns statements into plans. One per statement.
pub struct Planner<'a> {
    tables: &'a HashMap<String, TableRef>,
    /// Parameter types, as given by the client or inferred.
    pub params: Vec<Option<DataType>>,
    pub subplans: Vec<SubPlan>,
    /// Scopes of the enclosing queries while a subquery is bound, innermost last.
    outer: Vec<Scope>,
    /// For each subquery being bound (innermost last): whether it is correlated.
    correlated: Vec<bool>,
    /// Catalog queries (those reading pg_catalog or information_schema) bind what
    /// Cairn does not support (arrays, unknown functions) to expressions that fail
    /// only when evaluated: drivers and psql ask for catalog columns of features
    /// Cairn lacks, over rows that never exist.
    pub lenient: bool,
}

fn ident_name(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

/// The unqualified name of an object (`schema.table` -> `table`).
pub fn object_name(n: &ast::ObjectName) -> Result<(Option<String>, String)> {
    let parts: Vec<String> =
        n.0.iter()
            .map(|p| match p {
                ast::ObjectNamePart::Identifier(i) => Ok(ident_name(i)),
                other => Err(unsupported(format!("name part {other}"))),
            })
            .collect::<Result<_>>()?;
    match parts.as_slice() {
        [name] => Ok((None, name.clone())),
        [schema, name] => Ok((Some(schema.clone()), name.clone())),
        [_db, schema, name] => Ok((Some(schema.clone()), name.clone())),
        _ => Err(syntax(format!("improper qualified name: {n}"))),
    }
}

/// The key under which a statement's table is resolved: `schema.name` for the
/// catalog schemas, `name` for user tables in `public`.
pub fn table_key(n: &ast::ObjectName) -> Result<String> {
    let (schema, name) = object_name(n)?;
    Ok(match schema.as_deref() {
        Some("pg_catalog") => format!("pg_catalog.{name}"),
        Some("information_schema") => format!("information_schema.{name}"),
        None if crate::vtable::is_pg_catalog_name(&name) => format!("pg_catalog.{name}"),
        _ => name,
    })
}

/// Maps a parsed SQL type to ours.
pub fn data_type(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as A;
    let len = |l: &Option<ast::CharacterLength>| match l {
        Some(ast::CharacterLength::IntegerLength { length, .. }) => Some(*length as u32),
        _ => None,
    };
    Ok(match t {
        A::Boolean | A::Bool => DataType::Bool,
        A::SmallInt(_) | A::Int2(_) => DataType::Int2,
        A::Int(_) | A::Integer(_) | A::Int4(_) | A::MediumInt(_) => DataType::Int4,
        A::BigInt(_) | A::Int8(_) => DataType::Int8,
        A::Real | A::Float4 => DataType::Float4,
        A::Float(_) | A::Float8 | A::Double(_) | A::DoublePrecision | A::Float64 => {
            DataType::Float8
        }
        A::Numeric(_) | A::Decimal(_) | A::Dec(_) => DataType::Numeric,
        A::Text | A::String(_) => DataType::Text,
        A::Varchar(l) | A::CharacterVarying(l) | A::CharVarying(l) => DataType::Varchar(len(l)),
        A::Char(l) | A::Character(l) => DataType::Char(len(l).or(Some(1))),
        A::Bytea => DataType::Bytea,
        A::Date => DataType::Date,
        A::Timestamp(_, ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz) => {
            DataType::TimestampTz
        }
        A::Timestamp(_, _) | A::Datetime(_) => DataType::Timestamp,
        A::Uuid => DataType::Uuid,
        A::Custom(name, _) => {
            let (_, n) = object_name(name)?;
            match n.as_str() {
                "serial" | "serial4" | "int" => DataType::Int4,
                "bigserial" | "serial8" => DataType::Int8,
                "smallserial" | "serial2" => DataType::Int2,
                "timestamptz" => DataType::TimestampTz,
                "oid" | "regclass" | "regtype" | "regproc" | "regnamespace" => DataType::Oid,
                "name" => DataType::Name,
                "string" | "text" => DataType::Text,
                "int4" | "integer" => DataType::Int4,
                "int8" | "bigint" => DataType::Int8,
                "int2" | "smallint" => DataType::Int2,
                "bool" | "boolean" => DataType::Bool,
                "varchar" => DataType::Varchar(None),
                "bpchar" | "char" => DataType::Char(None),
                "numeric" => DataType::Numeric,
                "date" => DataType::Date,
                "timestamp" => DataType::Timestamp,
                "bytea" => DataType::Bytea,
                "uuid" => DataType::Uuid,
                "float8" => DataType::Float8,
                "float4" => DataType::Float4,
                other => {
                    return Err(Error::new(
                        SqlState::UndefinedObject,
                        format!("type \"{other}\" does not exist"),
                    ));
                }
            }
        }
        A::Regclass => DataType::Oid,
        other => return Err(unsupported(format!("type {other} is not supported"))),
    })
}

/// Names of the aggregate functions.
fn agg_func(name: &str) -> Option<AggFunc> {
    Some(match name {
        "count" => AggFunc::Count,
        "sum" => AggFunc::Sum,
        "avg" => AggFunc::Avg,
        "min" => AggFunc::Min,
        "max" => AggFunc::Max,
        "bool_and" | "every" => AggFunc::BoolAnd,
        "bool_or" => AggFunc::BoolOr,
        "string_agg" => AggFunc::StringAgg,
        _ => return None,
    })
}

fn function_name(f: &ast::Function) -> Result<String> {
    Ok(object_name(&f.name)?.1)
}

/// Whether an expression has an aggregate call outside any subquery.
fn has_aggregate(e: &ast::Expr) -> bool {
    let mut found = false;
    let _ = ast::visit_expressions(e, |x| {
        if let ast::Expr::Function(f) = x
            && function_name(f).ok().and_then(|n| agg_func(&n)).is_some()
            && f.over.is_none()
        {
            found = true;
            return std::ops::ControlFlow::Break(());
        }
        std::ops::ControlFlow::Continue(())
    });
    // visit_expressions descends into subqueries too; those aggregates belong to
    // the subquery. Check again without subqueries.
    found && has_aggregate_outside_subqueries(e)
}

fn has_aggregate_outside_subqueries(e: &ast::Expr) -> bool {
    use ast::Expr as E;
    match e {
        E::Function(f) => {
            if function_name(f).ok().and_then(|n| agg_func(&n)).is_some() {
                return true;
            }
            function_args(f)
                .unwrap_or_default()
                .iter()
                .any(|a| matches!(a, FnArg::Expr(x) if has_aggregate_outside_subqueries(x)))
        }
        E::Subquery(_) | E::Exists { .. } => false,
        E::In {
            expr,
            target: ast::InTarget::List(list),
            ..
        } => {
            has_aggregate_outside_subqueries(expr)
                || list.iter().any(has_aggregate_outside_subqueries)
        }
        E::In { expr, .. } => has_aggregate_outside_subqueries(expr),
        E::BinaryOp { left, right, .. } => {
            has_aggregate_outside_subqueries(left) || has_aggregate_outside_subqueries(right)
        }
        E::UnaryOp { expr, .. }
        | E::Nested(expr)
        | E::IsNull(expr)
        | E::IsNotNull(expr)
        | E::IsTrue(expr)
        | E::IsFalse(expr)
        | E::IsNotTrue(expr)
        | E::IsNotFalse(expr)
        | E::Cast { expr, .. } => has_aggregate_outside_subqueries(expr),
        E::IsDistinctFrom(a, b) | E::IsNotDistinctFrom(a, b) => {
            has_aggregate_outside_subqueries(a) || has_aggregate_outside_subqueries(b)
        }
        E::Between {
            expr, low, high, ..
        } => [expr, low, high]
            .iter()
            .any(|x| has_aggregate_outside_subqueries(x)),
        E::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            operand
                .as_deref()
                .is_some_and(has_aggregate_outside_subqueries)
                || conditions.iter().any(|c| {
                    has_aggregate_outside_subqueries(&c.condition)
                        || has_aggregate_outside_subqueries(&c.result)
                })
                || else_result
                    .as_deref()
                    .is_some_and(has_aggregate_outside_subqueries)
        }
        E::Like { expr, pattern, .. } | E::ILike { expr, pattern, .. } => {
            has_aggregate_outside_subqueries(expr) || has_aggregate_outside_subqueries(pattern)
        }
        _ => false,
    }
}

enum FnArg<'a> {
    Star,
    Expr(&'a ast::Expr),
}

fn function_args(f: &ast::Function) -> Result<Vec<FnArg<'_>>> {
    match &f.args {
        ast::FunctionArguments::None => Ok(vec![]),
        ast::FunctionArguments::Subquery(_) => Err(unsupported("subquery as function argument")),
        ast::FunctionArguments::List(list) => list
            .args
            .iter()
            .map(|a| match a {
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(FnArg::Expr(e)),
                ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => Ok(FnArg::Star),
                other => Err(unsupported(format!("function argument {other}"))),
            })
            .collect(),
    }
}

fn is_distinct_args(f: &ast::Function) -> bool {
    matches!(&f.args, ast::FunctionArguments::List(l) if matches!(l.duplicate_treatment, Some(ast::DuplicateTreatment::Distinct)))
}

/// Parses a numeric literal: integer when it fits, otherwise NUMERIC.
pub fn number_literal(s: &str) -> Result<(Value, DataType)> {
    if let Ok(i) = s.parse::<i64>() {
        let ty = if i32::try_from(i).is_ok() {
            DataType::Int4
        } else {
            DataType::Int8
        };
        return Ok((Value::Int(i), ty));
    }
    Value::parse(DataType::Numeric, s).map(|v| (v, DataType::Numeric))
}

impl<'a> Planner<'a> {
    pub fn new(tables: &'a HashMap<String, TableRef>, params: Vec<Option<DataType>>) -> Self {
        Planner {
            tables,
            params,
            subplans: Vec::new(),
            outer: Vec::new(),
            correlated: Vec::new(),
            lenient: tables.values().any(|t| matches!(t, TableRef::Virtual(_))),
        }
    }

    fn table(&self, name: &ast::ObjectName) -> Result<TableRef> {
        let key = table_key(name)?;
        self.tables.get(&key).cloned().ok_or_else(|| {
            Error::new(
                SqlState::UndefinedTable,
                format!(
                    "relation \"{}\" does not exist",
                    object_name(name).map(|n| n.1).unwrap_or_default()
                ),
            )
        })
    }

    fn user_table(&self, name: &ast::ObjectName) -> Result<TableDesc> {
        match self.table(name)? {
            TableRef::Table(t) => Ok(t),
            TableRef::Virtual(_) => Err(Error::new(
                SqlState::InsufficientPrivilege,
                format!("{name} is a system catalog and cannot be modified"),
            )),
        }
    }

    // ---- queries ----

    /// Plans a query, returning its plan and output columns.
    pub fn plan_query(&mut self, q: &ast::Query) -> Result<(Plan, Vec<Column>)> {
        if q.with.is_some() {
            return Err(unsupported("WITH is not supported"));
        }
        let order_by: &[ast::OrderByExpr] = match &q.order_by {
            None => &[],
            Some(ast::OrderBy {
                kind: ast::OrderByKind::Expressions(e),
                ..
            }) => e,
            Some(_) => return Err(unsupported("ORDER BY ALL")),
        };
        let (limit, offset) = match &q.limit_clause {
            None => (None, None),
            Some(ast::LimitClause::LimitOffset { limit, offset, .. }) => {
                (limit.clone(), offset.as_ref().map(|o| o.value.clone()))
            }
            Some(ast::LimitClause::OffsetCommaLimit { offset, limit }) => {
                (Some(limit.clone()), Some(offset.clone()))
            }
        };
        let (plan, columns) = match q.body.as_ref() {
            ast::SetExpr::Select(s) => self.plan_select(s, order_by)?,
            body => {
                let (plan, columns) = self.plan_set_expr(body)?;
                let plan = self.order_by_outputs(plan, &columns, order_by)?;
                (plan, columns)
            }
        };
        let empty = Scope::default();
        let limit = match limit {
            Some(e) => Some(self.bind_standalone(&e, &empty, "LIMIT")?),
            None => None,
        };
        let offset = match offset {
            Some(e) => Some(self.bind_standalone(&e, &empty, "OFFSET")?),
            None => None,
        };
        let plan = if limit.is_some() || offset.is_some() {
            Plan::Limit {
                input: Box::new(plan),
                limit,
                offset,
            }
        } else {
            plan
        };
        Ok((plan, columns))
    }

    fn bind_standalone(&mut self, e: &ast::Expr, scope: &Scope, what: &str) -> Result<Expr> {
        let (x, ty) = self.bind_expr_hint(e, scope, None, Some(DataType::Int8))?;
        if !ty.is_numeric() && ty != DataType::Unknown {
            return Err(Error::new(
                SqlState::DatatypeMismatch,
                format!(
                    "argument of {what} must be type bigint, not type {}",
                    ty.name()
                ),
            ));
        }
        Ok(x)
    }

    /// ORDER BY over a set operation or VALUES: only output columns by position or name.
    fn order_by_outputs(
        &mut self,
        plan: Plan,
        columns: &[Column],
        order_by: &[ast::OrderByExpr],
    ) -> Result<Plan> {
        if order_by.is_empty() {
            return Ok(plan);
        }
        let scope = Scope {
            columns: columns.to_vec(),
        };
        let mut keys = Vec::new();
        for o in order_by {
            let expr = match self.output_reference(&o.expr, columns)? {
                Some(i) => Expr::Column(i),
                None => self.bind_expr(&o.expr, &scope, None)?.0,
            };
            keys.push(sort_key(expr, &o.options));
        }
        Ok(Plan::Sort {
            input: Box::new(plan),
            keys,
        })
    }

    /// An ORDER BY item that names an output column: a position (`ORDER BY 2`) or an
    /// output name.
    fn output_reference(&self, e: &ast::Expr, columns: &[Column]) -> Result<Option<usize>> {
        match e {
            ast::Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => {
                    let i: usize = n.parse().map_err(|_| syntax("bad ORDER BY position"))?;
                    let visible = columns.iter().filter(|c| !c.hidden).count();
                    if i == 0 || i > visible {
                        return Err(Error::new(
                            SqlState::InvalidColumnReference,
                            format!("ORDER BY position {i} is not in select list"),
                        ));
                    }
                    Ok(Some(i - 1))
                }
                _ => Ok(None),
            },
            ast::Expr::Identifier(id) => {
                let name = ident_name(id);
                let hits: Vec<usize> = columns
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| !c.hidden && c.name == name)
                    .map(|(i, _)| i)
                    .collect();
                Ok(hits.first().copied())
            }
            _ => Ok(None),
        }
    }

    fn plan_set_expr(&mut self, body: &ast::SetExpr) -> Result<(Plan, Vec<Column>)> {
        match body {
            ast::SetExpr::Select(s) => self.plan_select(s, &[]),
            ast::SetExpr::Query(q) => self.plan_query(q),
            ast::SetExpr::Values(v) => self.plan_values(v, None),
            ast::SetExpr::SetOperation {
                left,
                op,
                set_quantifier,
                right,
            } => {
                let (lp, lc) = self.plan_set_expr(left)?;
                let (rp, rc) = self.plan_set_expr(right)?;
                let lvis: Vec<&Column> = lc.iter().filter(|c| !c.hidden).collect();
                let rvis: Vec<&Column> = rc.iter().filter(|c| !c.hidden).collect();
                if lvis.len() != rvis.len() {
                    return Err(syntax(format!(
                        "each {op} query must have the same number of columns"
                    )));
                }
                let kind = match op {
                    ast::SetOperator::Union => SetOpKind::Union,
                    ast::SetOperator::Intersect => SetOpKind::Intersect,
                    ast::SetOperator::Except | ast::SetOperator::Minus => SetOpKind::Except,
                };
                let all = matches!(set_quantifier, ast::SetQuantifier::All);
                let columns = lvis
                    .iter()
                    .zip(&rvis)
                    .map(|(l, r)| Column::new(l.name.clone(), DataType::common(l.ty, r.ty)))
                    .collect();
                Ok((
                    Plan::SetOp {
                        kind,
                        all,
                        left: Box::new(lp),
                        right: Box::new(rp),
                    },
                    columns,
                ))
            }
            ast::SetExpr::Table(_) => Err(unsupported("TABLE statement")),
            _ => Err(unsupported("this query form is not supported")),
        }
    }

    /// Plans VALUES; `hints` gives the expected type of each column (INSERT).
    pub fn plan_values(
        &mut self,
        v: &ast::Values,
        hints: Option<&[DataType]>,
    ) -> Result<(Plan, Vec<Column>)> {
        let scope = Scope::default();
        let width = v.rows.first().map(|r| r.len()).unwrap_or(0);
        let mut types = vec![DataType::Unknown; width];
        let mut rows = Vec::with_capacity(v.rows.len());
        for row in &v.rows {
            if row.len() != width {
                return Err(syntax("VALUES lists must all be the same length"));
            }
            let mut out = Vec::with_capacity(width);
            for (i, e) in row.iter().enumerate() {
                let hint = hints.and_then(|h| h.get(i).copied());
                if is_default_keyword(e) {
                    out.push(Expr::Func(Func::Coalesce, vec![])); // marker, see DEFAULT_MARKER
                    continue;
                }
                let (x, ty) = self.bind_expr_hint(e, &scope, None, hint)?;
                types[i] = DataType::common(types[i], ty);
                out.push(x);
            }
            rows.push(out);
        }
        let columns = types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let ty = if *t == DataType::Unknown {
                    DataType::Text
                } else {
                    *t
                };
                Column::new(format!("column{}", i + 1), ty)
            })
            .collect();
        Ok((Plan::Values { rows }, columns))
    }

    fn plan_select(
        &mut self,
        s: &ast::Select,
        order_by: &[ast::OrderByExpr],
    ) -> Result<(Plan, Vec<Column>)> {
        if s.into.is_some() || !s.lateral_views.is_empty() || s.top.is_some() {
            return Err(unsupported("this SELECT form is not supported"));
        }
        // FROM
        let (mut plan, scope) = self.plan_from(&s.from)?;
        // WHERE
        if let Some(w) = &s.selection {
            let (pred, ty) = self.bind_expr(w, &scope, None)?;
            check_bool(ty, "WHERE")?;
            plan = Plan::Filter {
                input: Box::new(plan),
                predicate: pred,
            };
        }
        let group_exprs: &[ast::Expr] = match &s.group_by {
            ast::GroupByExpr::Expressions(e, _) => e,
            ast::GroupByExpr::All(_) => return Err(unsupported("GROUP BY ALL")),
        };
        let aggregating = !group_exprs.is_empty()
            || s.having.is_some()
            || s.projection.iter().any(|p| match p {
                ast::SelectItem::UnnamedExpr(e)
                | ast::SelectItem::ExprWithAlias { expr: e, .. } => has_aggregate(e),
                _ => false,
            })
            || order_by.iter().any(|o| has_aggregate(&o.expr));

        let mut agg = if aggregating {
            let mut group_by = Vec::new();
            let mut group_types = Vec::new();
            for g in group_exprs {
                // GROUP BY may name a select item by position or alias.
                let target = self.select_item_reference(g, &s.projection)?;
                let (x, ty) = self.bind_expr(target.unwrap_or(g), &scope, None)?;
                group_by.push(x);
                group_types.push(ty);
            }
            Some(AggScope {
                input: scope.clone(),
                group_by,
                group_types,
                aggs: Vec::new(),
            })
        } else {
            None
        };

        // The select list.
        let mut exprs = Vec::new();
        let mut columns = Vec::new();
        for item in &s.projection {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    if agg.is_some() {
                        for (i, c) in scope.columns.iter().enumerate() {
                            if c.hidden {
                                continue;
                            }
                            let (x, _) = self.agg_column(agg.as_mut(), Expr::Column(i), c)?;
                            exprs.push(x);
                            columns.push(unqualified(c));
                        }
                    } else {
                        for (i, c) in scope.columns.iter().enumerate() {
                            if !c.hidden {
                                exprs.push(Expr::Column(i));
                                columns.push(unqualified(c));
                            }
                        }
                    }
                    if scope.columns.iter().all(|c| c.hidden) && s.from.is_empty() {
                        return Err(syntax("SELECT * with no tables specified is not valid"));
                    }
                }
                ast::SelectItem::QualifiedWildcard(kind, _) => {
                    let name = match kind {
                        ast::SelectItemQualifiedWildcardKind::ObjectName(n) => object_name(n)?.1,
                        ast::SelectItemQualifiedWildcardKind::Expr(_) => {
                            return Err(unsupported("expression wildcard"));
                        }
                    };
                    let mut any = false;
                    for (i, c) in scope.columns.iter().enumerate() {
                        if c.qualifier.as_deref() == Some(name.as_str()) && !c.hidden {
                            let (x, _) = self.agg_column(agg.as_mut(), Expr::Column(i), c)?;
                            exprs.push(x);
                            columns.push(unqualified(c));
                            any = true;
                        }
                    }
                    if !any {
                        return Err(Error::new(
                            SqlState::UndefinedTable,
                            format!("missing FROM-clause entry for table \"{name}\""),
                        ));
                    }
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    let (x, ty) = self.bind_expr(e, &scope, agg.as_mut())?;
                    exprs.push(x);
                    let mut col = Column::new(output_name(e), ty);
                    col.source = self.column_source(e, &scope);
                    columns.push(col);
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let (x, ty) = self.bind_expr(expr, &scope, agg.as_mut())?;
                    exprs.push(x);
                    columns.push(Column::new(ident_name(alias), ty));
                }
                ast::SelectItem::ExprWithAliases { .. } => {
                    return Err(unsupported("multiple aliases"));
                }
            }
        }

        // HAVING
        let having = match &s.having {
            Some(h) => {
                let (x, ty) = self.bind_expr(h, &scope, agg.as_mut())?;
                check_bool(ty, "HAVING")?;
                Some(x)
            }
            None => None,
        };

        // ORDER BY: output references, or expressions over the input (added as hidden
        // columns).
        let visible = exprs.len();
        let distinct = match &s.distinct {
            None | Some(ast::Distinct::All) => false,
            Some(ast::Distinct::Distinct) => true,
            Some(ast::Distinct::On(_)) => return Err(unsupported("DISTINCT ON")),
        };
        let mut keys = Vec::new();
        for o in order_by {
            let idx = match self.output_reference(&o.expr, &columns)? {
                Some(i) => i,
                None => {
                    let (x, _) = self.bind_expr(&o.expr, &scope, agg.as_mut())?;
                    match exprs.iter().position(|e| *e == x) {
                        Some(i) => i,
                        None => {
                            if distinct {
                                return Err(Error::new(
                                    SqlState::InvalidColumnReference,
                                    "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
                                ));
                            }
                            exprs.push(x);
                            exprs.len() - 1
                        }
                    }
                }
            };
            keys.push(sort_key(Expr::Column(idx), &o.options));
        }

        if let Some(a) = agg {
            plan = Plan::Aggregate {
                input: Box::new(plan),
                group_by: a.group_by,
                aggs: a.aggs,
            };
            if let Some(h) = having {
                plan = Plan::Filter {
                    input: Box::new(plan),
                    predicate: h,
                };
            }
        }
        plan = Plan::Project {
            input: Box::new(plan),
            exprs: exprs.clone(),
        };
        if distinct {
            plan = Plan::Distinct {
                input: Box::new(plan),
            };
        }
        if !keys.is_empty() {
            plan = Plan::Sort {
                input: Box::new(plan),
                keys,
            };
        }
        if exprs.len() > visible {
            plan = Plan::Project {
                input: Box::new(plan),
                exprs: (0..visible).map(Expr::Column).collect(),
            };
        }
        Ok((plan, columns))
    }

    /// A column of the input used above an aggregation: it must be grouped.
    fn agg_column(
        &mut self,
        agg: Option<&mut AggScope>,
        x: Expr,
        c: &Column,
    ) -> Result<(Expr, DataType)> {
        match agg {
            None => Ok((x, c.ty)),
            Some(a) => match a.group_by.iter().position(|g| *g == x) {
                Some(i) => Ok((Expr::Column(i), c.ty)),
                None => Err(ungrouped(c)),
            },
        }
    }

    /// GROUP BY 1 or GROUP BY alias: the select item it names.
    fn select_item_reference<'s>(
        &self,
        g: &ast::Expr,
        projection: &'s [ast::SelectItem],
    ) -> Result<Option<&'s ast::Expr>> {
        match g {
            ast::Expr::Value(v) => {
                if let ast::Value::Number(n, _) = &v.value {
                    let i: usize = n.parse().map_err(|_| syntax("bad GROUP BY position"))?;
                    return match projection.get(i.wrapping_sub(1)) {
                        Some(ast::SelectItem::UnnamedExpr(e))
                        | Some(ast::SelectItem::ExprWithAlias { expr: e, .. }) => Ok(Some(e)),
                        _ => Err(Error::new(
                            SqlState::InvalidColumnReference,
                            format!("GROUP BY position {i} is not in select list"),
                        )),
                    };
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    fn column_source(&self, e: &ast::Expr, scope: &Scope) -> Option<(u64, i16)> {
        let name = match e {
            ast::Expr::Identifier(i) => ident_name(i),
            ast::Expr::CompoundIdentifier(p) => ident_name(p.last()?),
            _ => return None,
        };
        scope
            .columns
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.source)
    }

    // ---- FROM ----

    fn plan_from(&mut self, from: &[ast::TableWithJoins]) -> Result<(Plan, Scope)> {
        let mut result: Option<(Plan, Scope)> = None;
        for twj in from {
            let (p, s) = self.plan_table_with_joins(twj)?;
            result = Some(match result {
                None => (p, s),
                Some((lp, ls)) => self.join(lp, ls, p, s, JoinKind::Inner, None)?,
            });
        }
        Ok(result.unwrap_or_else(|| (Plan::Values { rows: vec![vec![]] }, Scope::default())))
    }

    fn plan_table_with_joins(&mut self, twj: &ast::TableWithJoins) -> Result<(Plan, Scope)> {
        let (mut plan, mut scope) = self.plan_table_factor(&twj.relation)?;
        for j in &twj.joins {
            let (rp, rs) = self.plan_table_factor(&j.relation)?;
            use ast::JoinOperator as J;
            let (kind, constraint) = match &j.join_operator {
                J::Join(c) | J::Inner(c) => (JoinKind::Inner, Some(c)),
                J::Left(c) | J::LeftOuter(c) => (JoinKind::Left, Some(c)),
                J::Right(c) | J::RightOuter(c) => (JoinKind::Right, Some(c)),
                J::FullOuter(c) => (JoinKind::Full, Some(c)),
                J::CrossJoin(_) => (JoinKind::Inner, None),
                other => return Err(unsupported(format!("join {other:?}"))),
            };
            (plan, scope) = self.join(plan, scope, rp, rs, kind, constraint)?;
        }
        Ok((plan, scope))
    }

    fn join(
        &mut self,
        left: Plan,
        ls: Scope,
        right: Plan,
        rs: Scope,
        kind: JoinKind,
        constraint: Option<&ast::JoinConstraint>,
    ) -> Result<(Plan, Scope)> {
        let left_width = ls.columns.len();
        let right_width = rs.columns.len();
        let mut scope = Scope {
            columns: ls
                .columns
                .iter()
                .chain(rs.columns.iter())
                .cloned()
                .collect(),
        };
        let mut on = None;
        let using: Option<Vec<String>> = match constraint {
            Some(ast::JoinConstraint::On(e)) => {
                let (x, ty) = self.bind_expr(e, &scope, None)?;
                check_bool(ty, "JOIN/ON")?;
                on = Some(x);
                None
            }
            Some(ast::JoinConstraint::Using(cols)) => Some(
                cols.iter()
                    .map(|c| object_name(c).map(|n| n.1))
                    .collect::<Result<_>>()?,
            ),
            Some(ast::JoinConstraint::Natural) => Some(
                ls.columns
                    .iter()
                    .filter(|c| {
                        !c.hidden && rs.columns.iter().any(|r| !r.hidden && r.name == c.name)
                    })
                    .map(|c| c.name.clone())
                    .collect(),
            ),
            Some(ast::JoinConstraint::None) | None => None,
            Some(other) => return Err(unsupported(format!("join constraint {other:?}"))),
        };
        if let Some(names) = using {
            let mut conds = Vec::new();
            for n in names {
                let li = ls.columns.iter().position(|c| c.name == n && !c.hidden);
                let ri = rs.columns.iter().position(|c| c.name == n && !c.hidden);
                let (Some(li), Some(ri)) = (li, ri) else {
                    return Err(Error::new(
                        SqlState::UndefinedColumn,
                        format!("column \"{n}\" specified in USING clause does not exist"),
                    ));
                };
                conds.push(Expr::Binary(
                    BinOp::Eq,
                    Box::new(Expr::Column(li)),
                    Box::new(Expr::Column(left_width + ri)),
                ));
                // The merged column appears once in `*`: the left one (right one for a
                // RIGHT join).
                let hide = if kind == JoinKind::Right {
                    li
                } else {
                    left_width + ri
                };
                scope.columns[hide].hidden = true;
            }
            on = Expr::and_all(conds);
        }
        Ok((
            Plan::Join {
                left: Box::new(left),
                right: Box::new(right),
                kind,
                equi: Vec::new(),
                on,
                left_width,
                right_width,
            },
            scope,
        ))
    }

    fn plan_table_factor(&mut self, tf: &ast::TableFactor) -> Result<(Plan, Scope)> {
        match tf {
            ast::TableFactor::Table {
                name, alias, args, ..
            } => {
                if args.is_some() {
                    if self.lenient {
                        // A set-returning function in a catalog query: no rows.
                        let name = alias
                            .as_ref()
                            .map(|a| ident_name(&a.name))
                            .unwrap_or_default();
                        let mut col = Column::new(name.clone(), DataType::Int8);
                        col.qualifier = Some(name);
                        return Ok((Plan::Values { rows: vec![] }, Scope { columns: vec![col] }));
                    }
                    return Err(unsupported("table functions are not supported"));
                }
                let qualifier = match alias {
                    Some(a) => ident_name(&a.name),
                    None => object_name(name)?.1,
                };
                let (plan, mut columns): (Plan, Vec<Column>) = match self.table(name)? {
                    TableRef::Table(t) => {
                        let columns = t
                            .columns
                            .iter()
                            .enumerate()
                            .map(|(i, c)| Column {
                                name: c.name.clone(),
                                ty: c.ty,
                                qualifier: None,
                                hidden: c.hidden,
                                source: Some((t.id, i as i16 + 1)),
                            })
                            .collect();
                        (
                            Plan::Scan(Box::new(ScanPlan {
                                table: t,
                                index: None,
                                constraint: KeyConstraint::default(),
                                filter: None,
                                limit: None,
                            })),
                            columns,
                        )
                    }
                    TableRef::Virtual(v) => {
                        let columns = v
                            .columns()
                            .into_iter()
                            .map(|(n, ty)| Column::new(n, ty))
                            .collect();
                        (Plan::Virtual(v), columns)
                    }
                };
                for c in &mut columns {
                    c.qualifier = Some(qualifier.clone());
                }
                if let Some(a) = alias {
                    rename_columns(&mut columns, a)?;
                }
                Ok((plan, Scope { columns }))
            }
            ast::TableFactor::Derived {
                subquery, alias, ..
            } => {
                let (plan, cols) = self.plan_query(subquery)?;
                let qualifier = alias.as_ref().map(|a| ident_name(&a.name));
                let mut columns: Vec<Column> = cols
                    .into_iter()
                    .map(|mut c| {
                        c.qualifier = qualifier.clone();
                        c
                    })
                    .collect();
                if let Some(a) = alias {
                    rename_columns(&mut columns, a)?;
                }
                Ok((plan, Scope { columns }))
            }
            ast::TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                if alias.is_some() {
                    return Err(unsupported("alias on a parenthesized join"));
                }
                self.plan_table_with_joins(table_with_joins)
            }
            other => Err(unsupported(format!("FROM item {other}"))),
        }
    }

    // ---- expressions ----

    /// Binds an expression over `scope` (no aggregation).
    pub fn bind_scalar(&mut self, e: &ast::Expr, scope: &Scope) -> Result<(Expr, DataType)> {
        self.bind_expr(e, scope, None)
    }

    fn bind_expr(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        agg: Option<&mut AggScope>,
    ) -> Result<(Expr, DataType)> {
        self.bind_expr_hint(e, scope, agg, None)
    }

    /// Binds `e` in `scope`. Above an aggregation (`agg`), grouped expressions and
    /// aggregate calls become columns of the aggregation's output. `hint` is the type
    /// the context expects, given to parameters and untyped literals.
    fn bind_expr_hint(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        agg: Option<&mut AggScope>,
        hint: Option<DataType>,
    ) -> Result<(Expr, DataType)> {
        match self.bind_expr_strict(e, scope, agg, hint) {
            Err(err)
                if self.lenient
                    && matches!(
                        err.code,
                        SqlState::FeatureNotSupported
                            | SqlState::UndefinedFunction
                            | SqlState::UndefinedObject
                    ) =>
            {
                Ok((Expr::Error(err.code, err.message), DataType::Unknown))
            }
            r => r,
        }
    }

    fn bind_expr_strict(
        &mut self,
        e: &ast::Expr,
        scope: &Scope,
        mut agg: Option<&mut AggScope>,
        hint: Option<DataType>,
    ) -> Result<(Expr, DataType)> {
        use ast::Expr as E;
        if let Some(a) = agg.as_deref_mut() {
            // An aggregate call.
            if let E::Function(f) = e
                && let Some(func) = agg_func(&function_name(f)?)
            {
                return self.bind_aggregate(f, func, a);
            }
            // A grouped expression.
            if !matches!(e, E::Value(_) | E::Nested(_))
                && let Ok((x, ty)) = self.bind_expr_hint(e, &a.input.clone(), None, hint)
            {
                if let Some(i) = a.group_by.iter().position(|g| *g == x) {
                    return Ok((Expr::Column(i), a.group_types[i].max_known(ty)));
                }
                if x.columns().is_empty() && x.subqueries().is_empty() {
                    return Ok((x, ty));
                }
            }
        }
        let mut bind = |p: &mut Self, e: &ast::Expr, hint: Option<DataType>| {
            p.bind_expr_hint(e, scope, agg.as_deref_mut(), hint)
        };
        Ok(match e {
            E::Identifier(id) => self.resolve(&[ident_name(id)], scope, agg.is_some())?,
            E::CompoundIdentifier(parts) => {
                let names: Vec<String> = parts.iter().map(ident_name).collect();
                self.resolve(&names, scope, agg.is_some())?
            }
            E::Value(v) => self.bind_value(&v.value, hint)?,
            E::Nested(inner) => bind(self, inner, hint)?,
            E::TypedString(ts) => {
                let ty = data_type(&ts.data_type)?;
                let s = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                (Expr::Const(Value::parse(ty, &s)?), ty)
            }
            E::UnaryOp { op, expr } => match op {
                ast::UnaryOperator::Not => {
                    let (x, ty) = bind(self, expr, Some(DataType::Bool))?;
                    check_bool(ty, "NOT")?;
                    (Expr::Not(Box::new(x)), DataType::Bool)
                }
                ast::UnaryOperator::Minus => {
                    // Fold negative literals so that -2147483648 is an INT4.
                    if let E::Value(v) = expr.as_ref()
                        && let ast::Value::Number(n, _) = &v.value
                    {
                        let (val, ty) = number_literal(&format!("-{n}"))?;
                        return Ok((Expr::Const(val), ty));
                    }
                    let (x, ty) = bind(self, expr, hint)?;
                    if !ty.is_numeric() && ty != DataType::Unknown {
                        return Err(operator_error("-", ty, None));
                    }
                    (Expr::Neg(Box::new(x)), ty)
                }
                ast::UnaryOperator::Plus => {
                    let (x, ty) = bind(self, expr, hint)?;
                    if !ty.is_numeric() && ty != DataType::Unknown {
                        return Err(operator_error("+", ty, None));
                    }
                    (x, ty)
                }
                other => return Err(unsupported(format!("operator {other}"))),
            },
            E::BinaryOp { left, op, right } => self.bind_binary(left, op, right, scope, agg)?,
            E::IsNull(x) => (
                Expr::IsNull(Box::new(bind(self, x, None)?.0)),
                DataType::Bool,
            ),
            E::IsNotNull(x) => (
                Expr::Not(Box::new(Expr::IsNull(Box::new(bind(self, x, None)?.0)))),
                DataType::Bool,
            ),
            E::IsTrue(x) => (
                Expr::IsBool(Box::new(bind(self, x, Some(DataType::Bool))?.0), true),
                DataType::Bool,
            ),
            E::IsFalse(x) => (
                Expr::IsBool(Box::new(bind(self, x, Some(DataType::Bool))?.0), false),
                DataType::Bool,
            ),
            E::IsNotTrue(x) => (
                Expr::Not(Box::new(Expr::IsBool(
                    Box::new(bind(self, x, Some(DataType::Bool))?.0),
                    true,
                ))),
                DataType::Bool,
            ),
            E::IsNotFalse(x) => (
                Expr::Not(Box::new(Expr::IsBool(
                    Box::new(bind(self, x, Some(DataType::Bool))?.0),
                    false,
                ))),
                DataType::Bool,
            ),
            E::IsDistinctFrom(a, b) | E::IsNotDistinctFrom(a, b) => {
                let (l, lt) = bind(self, a, None)?;
                let (r, _) = bind(self, b, Some(lt))?;
                let x = Expr::IsDistinct(Box::new(l), Box::new(r));
                let x = if matches!(e, E::IsNotDistinctFrom(..)) {
                    Expr::Not(Box::new(x))
                } else {
                    x
                };
                (x, DataType::Bool)
            }
            E::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let (x, xt) = bind(self, expr, None)?;
                let (lo, lt) = bind(self, low, Some(xt))?;
                let (hi, ht) = bind(self, high, Some(xt))?;
                check_comparable(xt, lt)?;
                check_comparable(xt, ht)?;
                let ge = Expr::Binary(BinOp::GtEq, Box::new(x.clone()), Box::new(lo));
                let le = Expr::Binary(BinOp::LtEq, Box::new(x), Box::new(hi));
                let both = Expr::Binary(BinOp::And, Box::new(ge), Box::new(le));
                let x = both.negate_if(*negated);
                (x, DataType::Bool)
            }
            E::In {
                expr,
                target: ast::InTarget::List(list),
                negated,
                ..
            } => {
                let (x, xt) = bind(self, expr, None)?;
                let mut items = Vec::with_capacity(list.len());
                for item in list {
                    let (i, it) = bind(self, item, Some(xt))?;
                    check_comparable(xt, it)?;
                    items.push(i);
                }
                let inl = Expr::InList {
                    expr: Box::new(x),
                    list: items,
                };
                (inl.negate_if(*negated), DataType::Bool)
            }
            E::In {
                expr,
                target: ast::InTarget::Subquery(subquery),
                negated,
                ..
            } => {
                let (x, xt) = bind(self, expr, None)?;
                let (id, cols) = self.bind_subquery(subquery, scope)?;
                if cols.len() != 1 {
                    return Err(syntax("subquery has too many columns"));
                }
                check_comparable(xt, cols[0].ty)?;
                let sub = Expr::Subquery {
                    id,
                    kind: SubqueryKind::Compare {
                        op: BinOp::Eq,
                        all: false,
                    },
                    expr: Some(Box::new(x)),
                };
                (sub.negate_if(*negated), DataType::Bool)
            }
            E::AnyOp {
                left,
                compare_op,
                right,
                ..
            }
            | E::AllOp {
                left,
                compare_op,
                right,
            } => {
                let all = matches!(e, E::AllOp { .. });
                let op = comparison_op(compare_op)?;
                let (x, _) = bind(self, left, None)?;
                let E::Subquery(q) = right.as_ref() else {
                    return Err(unsupported("ANY/ALL over an array"));
                };
                let (id, cols) = self.bind_subquery(q, scope)?;
                if cols.len() != 1 {
                    return Err(syntax("subquery has too many columns"));
                }
                (
                    Expr::Subquery {
                        id,
                        kind: SubqueryKind::Compare { op, all },
                        expr: Some(Box::new(x)),
                    },
                    DataType::Bool,
                )
            }
            E::Subquery(q) => {
                let (id, cols) = self.bind_subquery(q, scope)?;
                if cols.len() != 1 {
                    return Err(syntax("subquery must return only one column"));
                }
                (
                    Expr::Subquery {
                        id,
                        kind: SubqueryKind::Scalar,
                        expr: None,
                    },
                    cols[0].ty,
                )
            }
            E::Exists { subquery, negated } => {
                let (id, _) = self.bind_subquery(subquery, scope)?;
                let x = Expr::Subquery {
                    id,
                    kind: SubqueryKind::Exists,
                    expr: None,
                };
                (x.negate_if(*negated), DataType::Bool)
            }
            E::Like {
                negated,
                expr,
                pattern,
                escape_char,
                any,
            }
            | E::ILike {
                negated,
                expr,
                pattern,
                escape_char,
                any,
            } => {
                if escape_char.is_some() || *any {
                    return Err(unsupported("LIKE ... ESCAPE / ANY"));
                }
                let (x, _) = bind(self, expr, Some(DataType::Text))?;
                let (p, _) = bind(self, pattern, Some(DataType::Text))?;
                let l = Expr::Like {
                    expr: Box::new(x),
                    pattern: Box::new(p),
                    case_insensitive: matches!(e, E::ILike { .. }),
                };
                (l.negate_if(*negated), DataType::Bool)
            }
            E::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let (operand, ot) = match operand {
                    Some(o) => {
                        let (x, t) = bind(self, o, None)?;
                        (Some(Box::new(x)), Some(t))
                    }
                    None => (None, None),
                };
                let mut whens = Vec::new();
                let mut ty = DataType::Unknown;
                for c in conditions {
                    let (w, wt) = bind(self, &c.condition, ot.or(Some(DataType::Bool)))?;
                    if ot.is_none() {
                        check_bool(wt, "CASE/WHEN")?;
                    }
                    let (t, tt) = bind(self, &c.result, hint)?;
                    ty = common_result_type(ty, tt)?;
                    whens.push((w, t));
                }
                let else_ = match else_result {
                    Some(e) => {
                        let (x, t) = bind(self, e, hint)?;
                        ty = common_result_type(ty, t)?;
                        Some(Box::new(x))
                    }
                    None => None,
                };
                let ty = if ty == DataType::Unknown {
                    DataType::Text
                } else {
                    ty
                };
                // Branches of a different numeric type are cast to the result type.
                let cast = |x: Expr| -> Expr {
                    if let Expr::Const(Value::Null) = x {
                        x
                    } else {
                        Expr::Cast(Box::new(x), ty)
                    }
                };
                let whens = whens.into_iter().map(|(w, t)| (w, cast(t))).collect();
                let else_ = else_.map(|e| Box::new(cast(*e)));
                (
                    Expr::Case {
                        operand,
                        whens,
                        else_,
                    },
                    ty,
                )
            }
            E::Cast {
                expr, data_type: t, ..
            } => {
                let ty = data_type(t)?;
                let (x, from) = bind(self, expr, Some(ty))?;
                check_castable(from, ty)?;
                (Expr::Cast(Box::new(x), ty), ty)
            }
            E::Function(f) => self.bind_function(f, scope, agg)?,
            E::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![bind(self, expr, Some(DataType::Text))?.0];
                args.push(match substring_from {
                    Some(f) => bind(self, f, Some(DataType::Int8))?.0,
                    None => Expr::Const(Value::Int(1)),
                });
                if let Some(f) = substring_for {
                    args.push(bind(self, f, Some(DataType::Int8))?.0);
                }
                (Expr::Func(Func::Substr, args), DataType::Text)
            }
            E::Trim {
                expr,
                trim_where,
                trim_what,
                ..
            } => {
                let func = match trim_where {
                    Some(ast::TrimWhereField::Leading) => Func::LTrim,
                    Some(ast::TrimWhereField::Trailing) => Func::RTrim,
                    _ => Func::Trim,
                };
                let mut args = vec![bind(self, expr, Some(DataType::Text))?.0];
                if let Some(w) = trim_what {
                    args.push(bind(self, w, Some(DataType::Text))?.0);
                }
                (Expr::Func(func, args), DataType::Text)
            }
            E::Extract { field, expr, .. } => {
                let (x, _) = bind(self, expr, None)?;
                (
                    Expr::Func(
                        Func::Extract,
                        vec![Expr::Const(Value::Text(field.to_string())), x],
                    ),
                    DataType::Numeric,
                )
            }
            E::Ceil { expr, .. } | E::Floor { expr, .. } => {
                let (x, t) = bind(self, expr, None)?;
                let f = if matches!(e, E::Ceil { .. }) {
                    "ceil"
                } else {
                    "floor"
                };
                let (func, ty) = functions::resolve(f, &[t])?;
                (Expr::Func(func, vec![x]), ty)
            }
            E::Collate { expr, .. } => bind(self, expr, hint)?,
            E::Tuple(_) => return Err(unsupported("row values are not supported")),
            other => return Err(unsupported(format!("expression {other} is not supported"))),
        })
    }

    fn bind_value(&mut self, v: &ast::Value, hint: Option<DataType>) -> Result<(Expr, DataType)> {
        Ok(match v {
            ast::Value::Number(n, _) => {
                let (val, ty) = number_literal(n)?;
                (Expr::Const(val), ty)
            }
            ast::Value::SingleQuotedString(s)
            | ast::Value::EscapedStringLiteral(s)
            | ast::Value::DollarQuotedString(ast::DollarQuotedString { value: s, .. }) => {
                // An untyped string literal takes the type its context wants.
                match hint {
                    Some(t) if t != DataType::Unknown && !t.is_text() => {
                        (Expr::Const(Value::parse(t, s)?), t)
                    }
                    _ => (Expr::Const(Value::Text(s.clone())), DataType::Unknown),
                }
            }
            ast::Value::HexStringLiteral(h) => {
                let v = Value::parse(DataType::Bytea, &format!("\\x{h}"))?;
                (Expr::Const(v), DataType::Bytea)
            }
            ast::Value::Boolean(b) => (Expr::Const(Value::Bool(*b)), DataType::Bool),
            ast::Value::Null => (Expr::Const(Value::Null), hint.unwrap_or(DataType::Unknown)),
            ast::Value::Placeholder(p) => {
                let n: usize = p
                    .trim_start_matches('$')
                    .parse()
                    .map_err(|_| syntax(format!("bad parameter {p}")))?;
                if n == 0 || n > 65535 {
                    return Err(syntax(format!("bad parameter {p}")));
                }
                if self.params.len() < n {
                    self.params.resize(n, None);
                }
                let ty = match self.params[n - 1] {
                    Some(t) if t != DataType::Unknown => t,
                    _ => {
                        let t = hint.unwrap_or(DataType::Unknown);
                        if t != DataType::Unknown {
                            self.params[n - 1] = Some(t);
                        }
                        t
                    }
                };
                (Expr::Param(n - 1), ty)
            }
            other => return Err(unsupported(format!("literal {other}"))),
        })
    }

    fn bind_binary(
        &mut self,
        left: &ast::Expr,
        op: &ast::BinaryOperator,
        right: &ast::Expr,
        scope: &Scope,
        mut agg: Option<&mut AggScope>,
    ) -> Result<(Expr, DataType)> {
        use ast::BinaryOperator as B;
        let bop = match op {
            B::Plus => BinOp::Add,
            B::Minus => BinOp::Sub,
            B::Multiply => BinOp::Mul,
            B::Divide => BinOp::Div,
            B::Modulo => BinOp::Mod,
            B::StringConcat => BinOp::Concat,
            B::And => BinOp::And,
            B::Or => BinOp::Or,
            B::PGRegexMatch | B::PGRegexIMatch | B::PGRegexNotMatch | B::PGRegexNotIMatch => {
                return self.bind_regex(left, op, right, scope, agg);
            }
            B::PGCustomBinaryOperator(parts) => {
                // OPERATOR(pg_catalog.~) and friends.
                let op = match parts.last().map(String::as_str) {
                    Some("~") => B::PGRegexMatch,
                    Some("~*") => B::PGRegexIMatch,
                    Some("!~") => B::PGRegexNotMatch,
                    Some("!~*") => B::PGRegexNotIMatch,
                    Some("=") => B::Eq,
                    Some("<>") => B::NotEq,
                    Some("<") => B::Lt,
                    Some(">") => B::Gt,
                    Some("<=") => B::LtEq,
                    Some(">=") => B::GtEq,
                    _ => return Err(unsupported(format!("operator {op}"))),
                };
                return self.bind_binary(left, &op, right, scope, agg);
            }
            other => comparison_op(other)?,
        };
        let hint_side = matches!(bop, BinOp::And | BinOp::Or).then_some(DataType::Bool);
        // Bind the side that is not a parameter or literal first, so its type can
        // become the other side's hint.
        let right_first = is_untyped(left) && !is_untyped(right);
        let (l, lt, r, rt) = if right_first {
            let (r, rt) = self.bind_expr_hint(right, scope, agg.as_deref_mut(), hint_side)?;
            let (l, lt) =
                self.bind_expr_hint(left, scope, agg.as_deref_mut(), hint_side.or(Some(rt)))?;
            (l, lt, r, rt)
        } else {
            let (l, lt) = self.bind_expr_hint(left, scope, agg.as_deref_mut(), hint_side)?;
            let (r, rt) = self.bind_expr_hint(right, scope, agg, hint_side.or(Some(lt)))?;
            (l, lt, r, rt)
        };
        let sym = crate::expr::binop_symbol(bop);
        let ty = match bop {
            BinOp::And | BinOp::Or => {
                check_bool(lt, sym)?;
                check_bool(rt, sym)?;
                DataType::Bool
            }
            BinOp::Concat => DataType::Text,
            op if op.is_comparison() => {
                check_comparable(lt, rt)?;
                DataType::Bool
            }
            _ => {
                let ok =
                    |t: DataType| t.is_numeric() || t == DataType::Unknown || t == DataType::Date;
                if !ok(lt) || !ok(rt) {
                    return Err(operator_error(sym, lt, Some(rt)));
                }
                match (lt, rt) {
                    (DataType::Date, DataType::Date) => DataType::Int4,
                    (DataType::Date, _) | (_, DataType::Date) => DataType::Date,
                    _ => DataType::common(lt, rt),
                }
            }
        };
        let x = Expr::Binary(bop, Box::new(l), Box::new(r));
        // Narrow integer arithmetic overflows at its type's bounds.
        let x = if matches!(
            bop,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod
        ) && matches!(ty, DataType::Int2 | DataType::Int4)
        {
            Expr::Cast(Box::new(x), ty)
        } else {
            x
        };
        Ok((x, ty))
    }

    fn bind_regex(
        &mut self,
        left: &ast::Expr,
        op: &ast::BinaryOperator,
        right: &ast::Expr,
        scope: &Scope,
        mut agg: Option<&mut AggScope>,
    ) -> Result<(Expr, DataType)> {
        use ast::BinaryOperator as B;
        let (l, _) = self.bind_expr_hint(left, scope, agg.as_deref_mut(), Some(DataType::Text))?;
        let (r, _) = self.bind_expr_hint(right, scope, agg, Some(DataType::Text))?;
        let x = Expr::Regex {
            expr: Box::new(l),
            pattern: Box::new(r),
            case_insensitive: matches!(op, B::PGRegexIMatch | B::PGRegexNotIMatch),
        };
        let negated = matches!(op, B::PGRegexNotMatch | B::PGRegexNotIMatch);
        Ok((x.negate_if(negated), DataType::Bool))
    }

    fn bind_function(
        &mut self,
        f: &ast::Function,
        scope: &Scope,
        mut agg: Option<&mut AggScope>,
    ) -> Result<(Expr, DataType)> {
        let name = function_name(f)?;
        if f.over.is_some() {
            return Err(unsupported("window functions are not supported"));
        }
        if agg_func(&name).is_some() {
            return Err(Error::new(
                SqlState::GroupingError,
                format!("aggregate function {name}() is not allowed here"),
            ));
        }
        let mut args = Vec::new();
        let mut types = Vec::new();
        for a in function_args(f)? {
            match a {
                FnArg::Star => return Err(syntax(format!("{name}(*) is not valid"))),
                FnArg::Expr(e) => {
                    let (x, t) = self.bind_expr_hint(e, scope, agg.as_deref_mut(), None)?;
                    args.push(x);
                    types.push(t);
                }
            }
        }
        let (func, ty) = functions::resolve(&name, &types)?;
        let ty = if ty == DataType::Unknown {
            DataType::Text
        } else {
            ty
        };
        Ok((Expr::Func(func, args), ty))
    }

    fn bind_aggregate(
        &mut self,
        f: &ast::Function,
        func: AggFunc,
        a: &mut AggScope,
    ) -> Result<(Expr, DataType)> {
        let input = a.input.clone();
        let mut args = Vec::new();
        let mut arg_ty = DataType::Unknown;
        let raw = function_args(f)?;
        let func = match (func, raw.as_slice()) {
            (AggFunc::Count, [FnArg::Star]) => AggFunc::CountStar,
            (_, [FnArg::Star]) => return Err(syntax("* is only valid in count(*)")),
            _ => func,
        };
        for arg in &raw {
            if let FnArg::Expr(e) = arg {
                if has_aggregate_outside_subqueries(e) {
                    return Err(Error::new(
                        SqlState::GroupingError,
                        "aggregate function calls cannot be nested",
                    ));
                }
                let (x, t) = self.bind_expr(e, &input, None)?;
                if args.is_empty() {
                    arg_ty = t;
                }
                args.push(x);
            }
        }
        let expected = match func {
            AggFunc::CountStar => 0,
            AggFunc::StringAgg => 2,
            _ => 1,
        };
        if args.len() != expected {
            return Err(Error::new(
                SqlState::UndefinedFunction,
                format!(
                    "function {}() takes {expected} arguments",
                    function_name(f)?
                ),
            ));
        }
        let ty = match func {
            AggFunc::CountStar | AggFunc::Count => DataType::Int8,
            AggFunc::Sum => match arg_ty {
                DataType::Int2 | DataType::Int4 => DataType::Int8,
                DataType::Int8 | DataType::Numeric => DataType::Numeric,
                DataType::Float4 | DataType::Float8 => DataType::Float8,
                DataType::Unknown => DataType::Numeric,
                t => return Err(agg_type_error("sum", t)),
            },
            AggFunc::Avg => match arg_ty {
                t if t.is_integer() || t == DataType::Numeric || t == DataType::Unknown => {
                    DataType::Numeric
                }
                t if t.is_float() => DataType::Float8,
                t => return Err(agg_type_error("avg", t)),
            },
            AggFunc::Min | AggFunc::Max => arg_ty,
            AggFunc::BoolAnd | AggFunc::BoolOr => DataType::Bool,
            AggFunc::StringAgg => DataType::Text,
        };
        let call = AggCall {
            func,
            args,
            distinct: is_distinct_args(f),
            arg_ty,
            ty,
        };
        let i = match a.aggs.iter().position(|c| *c == call) {
            Some(i) => i,
            None => {
                a.aggs.push(call);
                a.aggs.len() - 1
            }
        };
        Ok((Expr::Column(a.group_by.len() + i), ty))
    }

    /// Plans a subquery seen from `scope`; returns its id and columns.
    fn bind_subquery(&mut self, q: &ast::Query, scope: &Scope) -> Result<(usize, Vec<Column>)> {
        self.outer.push(scope.clone());
        self.correlated.push(false);
        let result = self.plan_query(q);
        let correlated = self.correlated.pop().unwrap_or(false);
        self.outer.pop();
        let (plan, cols) = result?;
        let visible: Vec<Column> = cols.into_iter().filter(|c| !c.hidden).collect();
        self.subplans.push(SubPlan { plan, correlated });
        Ok((self.subplans.len() - 1, visible))
    }

    /// Resolves a (possibly qualified) column name: in `scope`, then in enclosing
    /// queries' scopes.
    fn resolve(
        &mut self,
        names: &[String],
        scope: &Scope,
        aggregating: bool,
    ) -> Result<(Expr, DataType)> {
        let (qualifier, name) = match names {
            [n] => (None, n.as_str()),
            [q, n] => (Some(q.as_str()), n.as_str()),
            [_, q, n] | [_, _, q, n] => (Some(q.as_str()), n.as_str()),
            _ => return Err(syntax("improper column reference")),
        };
        if let Some((i, c)) = find_column(scope, qualifier, name)? {
            if aggregating {
                return Err(ungrouped(c));
            }
            return Ok((Expr::Column(i), c.ty));
        }
        for depth in 1..=self.outer.len() {
            let s = &self.outer[self.outer.len() - depth];
            if let Some((i, c)) = find_column(s, qualifier, name)? {
                let ty = c.ty;
                let n = self.correlated.len();
                for flag in &mut self.correlated[n.saturating_sub(depth)..] {
                    *flag = true;
                }
                return Ok((Expr::Outer { depth, index: i }, ty));
            }
        }
        // A bare name that is a zero-argument function spelled without parentheses.
        if qualifier.is_none()
            && let Some(x) = niladic(name)
        {
            return Ok(x);
        }
        Err(match qualifier {
            Some(q)
                if !scope
                    .columns
                    .iter()
                    .any(|c| c.qualifier.as_deref() == Some(q)) =>
            {
                Error::new(
                    SqlState::UndefinedTable,
                    format!("missing FROM-clause entry for table \"{q}\""),
                )
            }
            Some(q) => Error::new(
                SqlState::UndefinedColumn,
                format!("column {q}.{name} does not exist"),
            ),
            None => Error::new(
                SqlState::UndefinedColumn,
                format!("column \"{name}\" does not exist"),
            ),
        })
    }

    // ---- DML ----

    pub fn plan_insert(&mut self, ins: &ast::Insert) -> Result<Planned> {
        let name = match &ins.table {
            ast::TableObject::TableName(n) => n,
            _ => return Err(unsupported("INSERT into a table function")),
        };
        let table = self.user_table(name)?;
        let targets: Vec<usize> = if ins.columns.is_empty() {
            table
                .columns
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.hidden)
                .map(|(i, _)| i)
                .collect()
        } else {
            let mut t = Vec::new();
            for c in &ins.columns {
                let n = object_name(c)?.1;
                let (i, _) = table.column(&n).ok_or_else(|| {
                    Error::new(
                        SqlState::UndefinedColumn,
                        format!(
                            "column \"{n}\" of relation \"{}\" does not exist",
                            table.name
                        ),
                    )
                })?;
                if t.contains(&i) {
                    return Err(Error::new(
                        SqlState::DuplicateColumn,
                        format!("column \"{n}\" specified more than once"),
                    ));
                }
                t.push(i);
            }
            t
        };
        let hints: Vec<DataType> = targets.iter().map(|&i| table.columns[i].ty).collect();
        let source = match &ins.source {
            None => Plan::Values { rows: vec![vec![]] },
            Some(q) => {
                let (plan, cols) = match q.body.as_ref() {
                    ast::SetExpr::Values(v) if q.order_by.is_none() && q.limit_clause.is_none() => {
                        self.plan_values(v, Some(&hints))?
                    }
                    _ => self.plan_query(q)?,
                };
                let width = cols.iter().filter(|c| !c.hidden).count();
                if width > targets.len() {
                    return Err(syntax("INSERT has more expressions than target columns"));
                }
                for (c, h) in cols.iter().zip(&hints) {
                    check_assignable(c.ty, *h)?;
                }
                plan
            }
        };
        let targets = if ins.source.is_none() {
            Vec::new()
        } else {
            targets
        };
        let table_scope = table_scope(&table, &table.name);
        let on_conflict = match &ins.on {
            // UPSERT (see `session::parse`): the given columns replace an existing
            // row's.
            None if ins.replace_into => {
                let width = table.columns.len();
                let pk = table.primary_positions()?;
                let sets: Vec<(usize, Expr)> = targets
                    .iter()
                    .filter(|p| !pk.contains(p))
                    .map(|&p| (p, Expr::Column(width + p)))
                    .collect();
                if sets.is_empty() {
                    OnConflict::DoNothing
                } else {
                    OnConflict::DoUpdate { sets, filter: None }
                }
            }
            None => OnConflict::Error,
            Some(ast::OnInsert::OnConflict(oc)) => match &oc.action {
                ast::OnConflictAction::DoNothing => OnConflict::DoNothing,
                ast::OnConflictAction::DoUpdate(du) => {
                    // Assignments see the existing row, then EXCLUDED.
                    let mut scope = table_scope.clone();
                    for c in &table_scope.columns {
                        let mut c = c.clone();
                        c.qualifier = Some("excluded".into());
                        scope.columns.push(c);
                    }
                    let sets = self.bind_assignments(&table, &du.assignments, &scope)?;
                    let filter = match &du.selection {
                        Some(w) => Some(self.bind_expr(w, &scope, None)?.0),
                        None => None,
                    };
                    OnConflict::DoUpdate { sets, filter }
                }
            },
            Some(_) => return Err(unsupported("ON DUPLICATE KEY")),
        };
        let returning = self.bind_returning(ins.returning.as_deref(), &table_scope)?;
        Ok(Planned::Insert {
            table,
            targets,
            source,
            on_conflict,
            returning,
        })
    }

    fn bind_assignments(
        &mut self,
        table: &TableDesc,
        assignments: &[ast::Assignment],
        scope: &Scope,
    ) -> Result<Vec<(usize, Expr)>> {
        let mut sets = Vec::new();
        for a in assignments {
            let name = match &a.target {
                ast::AssignmentTarget::ColumnName(n) => object_name(n)?.1,
                ast::AssignmentTarget::Tuple(_) => return Err(unsupported("SET (a, b) = ...")),
            };
            let (i, col) = table.column(&name).ok_or_else(|| {
                Error::new(
                    SqlState::UndefinedColumn,
                    format!(
                        "column \"{name}\" of relation \"{}\" does not exist",
                        table.name
                    ),
                )
            })?;
            let ty = col.ty;
            let x = if is_default_keyword(&a.value) {
                Expr::Func(Func::Coalesce, vec![])
            } else {
                let (x, t) = self.bind_expr_hint(&a.value, scope, None, Some(ty))?;
                check_assignable(t, ty)?;
                x
            };
            sets.push((i, x));
        }
        Ok(sets)
    }

    fn bind_returning(
        &mut self,
        returning: Option<&[ast::SelectItem]>,
        scope: &Scope,
    ) -> Result<Option<(Vec<Expr>, Vec<Column>)>> {
        let Some(items) = returning else {
            return Ok(None);
        };
        let mut exprs = Vec::new();
        let mut cols = Vec::new();
        for item in items {
            match item {
                ast::SelectItem::Wildcard(_) => {
                    for (i, c) in scope.columns.iter().enumerate() {
                        if !c.hidden {
                            exprs.push(Expr::Column(i));
                            cols.push(unqualified(c));
                        }
                    }
                }
                ast::SelectItem::UnnamedExpr(e) => {
                    let (x, ty) = self.bind_expr(e, scope, None)?;
                    exprs.push(x);
                    cols.push(Column::new(output_name(e), ty));
                }
                ast::SelectItem::ExprWithAlias { expr, alias } => {
                    let (x, ty) = self.bind_expr(expr, scope, None)?;
                    exprs.push(x);
                    cols.push(Column::new(ident_name(alias), ty));
                }
                _ => return Err(unsupported("this RETURNING item")),
            }
        }
        Ok(Some((exprs, cols)))
    }

    fn scan_with_filter(
        &mut self,
        table: &TableDesc,
        alias: Option<&ast::TableAlias>,
        selection: Option<&ast::Expr>,
    ) -> Result<(Plan, Scope)> {
        let qualifier = alias
            .map(|a| ident_name(&a.name))
            .unwrap_or(table.name.clone());
        let scope = table_scope(table, &qualifier);
        let mut plan = Plan::Scan(Box::new(ScanPlan {
            table: table.clone(),
            index: None,
            constraint: KeyConstraint::default(),
            filter: None,
            limit: None,
        }));
        if let Some(w) = selection {
            let (pred, ty) = self.bind_expr(w, &scope, None)?;
            check_bool(ty, "WHERE")?;
            plan = Plan::Filter {
                input: Box::new(plan),
                predicate: pred,
            };
        }
        Ok((plan, scope))
    }

    pub fn plan_update(&mut self, u: &ast::Update) -> Result<Planned> {
        if u.from.is_some() {
            return Err(unsupported("UPDATE ... FROM"));
        }
        let ast::TableFactor::Table { name, alias, .. } = &u.table.relation else {
            return Err(unsupported("UPDATE of this target"));
        };
        let table = self.user_table(name)?;
        let (scan, scope) = self.scan_with_filter(&table, alias.as_ref(), u.selection.as_ref())?;
        let sets = self.bind_assignments(&table, &u.assignments, &scope)?;
        let returning = self.bind_returning(u.returning.as_deref(), &scope)?;
        Ok(Planned::Update {
            table,
            scan,
            sets,
            returning,
        })
    }

    pub fn plan_delete(&mut self, d: &ast::Delete) -> Result<Planned> {
        let from = match &d.from {
            ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
        };
        if from.len() != 1 || d.using.is_some() {
            return Err(unsupported("DELETE from several tables"));
        }
        let ast::TableFactor::Table { name, alias, .. } = &from[0].relation else {
            return Err(unsupported("DELETE of this target"));
        };
        let table = self.user_table(name)?;
        let (scan, scope) = self.scan_with_filter(&table, alias.as_ref(), d.selection.as_ref())?;
        let returning = self.bind_returning(d.returning.as_deref(), &scope)?;
        Ok(Planned::Delete {
            table,
            scan,
            returning,
        })
    }
}

/// The scope of a table's columns under a qualifier.
pub fn table_scope(table: &TableDesc, qualifier: &str) -> Scope {
    Scope {
        columns: table
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| Column {
                name: c.name.clone(),
                ty: c.ty,
                qualifier: Some(qualifier.to_string()),
                hidden: c.hidden,
                source: Some((table.id, i as i16 + 1)),
            })
            .collect(),
    }
}

fn find_column<'s>(
    scope: &'s Scope,
    qualifier: Option<&str>,
    name: &str,
) -> Result<Option<(usize, &'s Column)>> {
    let mut found: Option<(usize, &Column)> = None;
    for (i, c) in scope.columns.iter().enumerate() {
        if c.name != name {
            continue;
        }
        if let Some(q) = qualifier
            && c.qualifier.as_deref() != Some(q)
        {
            continue;
        }
        if qualifier.is_none() && c.hidden && c.name != crate::catalog::ROWID {
            // A USING duplicate: the visible one is the answer.
            continue;
        }
        if found.is_some() {
            return Err(Error::new(
                SqlState::AmbiguousColumn,
                format!("column reference \"{name}\" is ambiguous"),
            ));
        }
        found = Some((i, c));
    }
    Ok(found)
}

fn niladic(name: &str) -> Option<(Expr, DataType)> {
    let f = match name {
        "current_timestamp" | "localtimestamp" => "now",
        "current_user" | "session_user" | "user" => "current_user",
        "current_catalog" => "current_database",
        "current_schema" => "current_schema",
        _ => return None,
    };
    let (func, ty) = functions::resolve(f, &[]).ok()?;
    Some((Expr::Func(func, vec![]), ty))
}

fn rename_columns(columns: &mut [Column], alias: &ast::TableAlias) -> Result<()> {
    let visible: Vec<usize> = columns
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.hidden)
        .map(|(i, _)| i)
        .collect();
    if alias.columns.len() > visible.len() {
        return Err(syntax(format!(
            "table \"{}\" has {} columns available but {} columns specified",
            alias.name,
            visible.len(),
            alias.columns.len()
        )));
    }
    for (c, i) in alias.columns.iter().zip(visible) {
        columns[i].name = ident_name(&c.name);
    }
    Ok(())
}

fn unqualified(c: &Column) -> Column {
    let mut c = c.clone();
    c.qualifier = None;
    c
}

fn ungrouped(c: &Column) -> Error {
    let name = match &c.qualifier {
        Some(q) => format!("{q}.{}", c.name),
        None => c.name.clone(),
    };
    Error::new(
        SqlState::GroupingError,
        format!(
            "column \"{name}\" must appear in the GROUP BY clause or be used in an aggregate function"
        ),
    )
}

fn sort_key(expr: Expr, o: &ast::OrderByOptions) -> SortKey {
    let desc = o
        .sort
        .as_ref()
        .is_some_and(|s| matches!(s, ast::OrderBySort::Desc));
    SortKey {
        expr,
        desc,
        // Postgres: NULLS LAST ascending, NULLS FIRST descending, unless given.
        nulls_first: o.nulls_first.unwrap_or(desc),
    }
}

/// The name Postgres gives an unaliased select item.
fn output_name(e: &ast::Expr) -> String {
    use ast::Expr as E;
    match e {
        E::Identifier(i) => ident_name(i),
        E::CompoundIdentifier(p) => p.last().map(ident_name).unwrap_or_default(),
        E::Function(f) => function_name(f).unwrap_or_else(|_| "?column?".into()),
        E::Cast {
            expr, data_type, ..
        } => match expr.as_ref() {
            E::Identifier(_) | E::CompoundIdentifier(_) | E::Function(_) => output_name(expr),
            _ => data_type_name(data_type),
        },
        E::Nested(inner) => output_name(inner),
        E::Case { .. } => "case".into(),
        E::Exists { .. } => "exists".into(),
        E::Subquery(q) => match q.body.as_ref() {
            ast::SetExpr::Select(s) => match s.projection.first() {
                Some(ast::SelectItem::UnnamedExpr(e)) => output_name(e),
                Some(ast::SelectItem::ExprWithAlias { alias, .. }) => ident_name(alias),
                _ => "?column?".into(),
            },
            _ => "?column?".into(),
        },
        E::Substring { .. } => "substring".into(),
        E::Trim { .. } => "btrim".into(),
        E::Extract { .. } => "extract".into(),
        _ => "?column?".into(),
    }
}

fn data_type_name(t: &ast::DataType) -> String {
    match data_type(t) {
        Ok(DataType::Int4) => "int4".into(),
        Ok(DataType::Int8) => "int8".into(),
        Ok(DataType::Int2) => "int2".into(),
        Ok(DataType::Float8) => "float8".into(),
        Ok(DataType::Float4) => "float4".into(),
        Ok(DataType::Bool) => "bool".into(),
        Ok(DataType::Varchar(_)) => "varchar".into(),
        Ok(DataType::Char(_)) => "bpchar".into(),
        Ok(DataType::Timestamp) => "timestamp".into(),
        Ok(DataType::TimestampTz) => "timestamptz".into(),
        Ok(t) => t.name(),
        Err(_) => "?column?".into(),
    }
}

fn is_untyped(e: &ast::Expr) -> bool {
    match e {
        ast::Expr::Value(v) => matches!(
            v.value,
            ast::Value::Placeholder(_) | ast::Value::SingleQuotedString(_) | ast::Value::Null
        ),
        ast::Expr::Nested(i) => is_untyped(i),
        _ => false,
    }
}

fn is_default_keyword(e: &ast::Expr) -> bool {
    matches!(e, ast::Expr::Identifier(i) if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default"))
}

/// `DEFAULT` in VALUES or SET: the column's default, filled in by the writer.
pub fn is_default_marker(e: &Expr) -> bool {
    matches!(e, Expr::Func(Func::Coalesce, args) if args.is_empty())
}

fn comparison_op(op: &ast::BinaryOperator) -> Result<BinOp> {
    use ast::BinaryOperator as B;
    Ok(match op {
        B::Eq => BinOp::Eq,
        B::NotEq => BinOp::NotEq,
        B::Lt => BinOp::Lt,
        B::LtEq => BinOp::LtEq,
        B::Gt => BinOp::Gt,
        B::GtEq => BinOp::GtEq,
        other => return Err(unsupported(format!("operator {other} is not supported"))),
    })
}

fn check_bool(ty: DataType, what: &str) -> Result<()> {
    if ty == DataType::Bool || ty == DataType::Unknown {
        Ok(())
    } else {
        Err(Error::new(
            SqlState::DatatypeMismatch,
            format!(
                "argument of {what} must be type boolean, not type {}",
                ty.name()
            ),
        ))
    }
}

fn type_family(t: DataType) -> u8 {
    match t {
        t if t.is_numeric() => 1,
        t if t.is_text() => 2,
        DataType::Date | DataType::Timestamp | DataType::TimestampTz => 3,
        DataType::Bool => 4,
        DataType::Bytea => 5,
        DataType::Uuid => 6,
        DataType::Unknown => 0,
        _ => 7,
    }
}

fn check_comparable(a: DataType, b: DataType) -> Result<()> {
    let (fa, fb) = (type_family(a), type_family(b));
    if fa == 0 || fb == 0 || fa == fb {
        Ok(())
    } else {
        Err(operator_error("=", a, Some(b)))
    }
}

fn check_assignable(from: DataType, to: DataType) -> Result<()> {
    let (ff, ft) = (type_family(from), type_family(to));
    if ff == 0 || ff == ft || ft == 2 {
        Ok(())
    } else {
        Err(Error::new(
            SqlState::DatatypeMismatch,
            format!(
                "column is of type {} but expression is of type {}",
                to.name(),
                from.name()
            ),
        ))
    }
}

fn check_castable(from: DataType, to: DataType) -> Result<()> {
    let (ff, ft) = (type_family(from), type_family(to));
    if ff == 0 || ff == ft || ff == 2 || ft == 2 || (ff == 1 && ft == 4) || (ff == 4 && ft == 1) {
        Ok(())
    } else {
        Err(Error::new(
            SqlState::DatatypeMismatch,
            format!("cannot cast type {} to {}", from.name(), to.name()),
        ))
    }
}

fn common_result_type(a: DataType, b: DataType) -> Result<DataType> {
    if a == DataType::Unknown {
        return Ok(b);
    }
    if b == DataType::Unknown {
        return Ok(a);
    }
    if type_family(a) != type_family(b) {
        return Err(Error::new(
            SqlState::DatatypeMismatch,
            format!("CASE types {} and {} cannot be matched", a.name(), b.name()),
        ));
    }
    Ok(DataType::common(a, b))
}

fn operator_error(op: &str, l: DataType, r: Option<DataType>) -> Error {
    let msg = match r {
        Some(r) => format!("operator does not exist: {} {op} {}", l.name(), r.name()),
        None => format!("operator does not exist: {op} {}", l.name()),
    };
    Error::new(SqlState::UndefinedFunction, msg)
}

fn agg_type_error(name: &str, t: DataType) -> Error {
    Error::new(
        SqlState::UndefinedFunction,
        format!("function {name}({}) does not exist", t.name()),
    )
}

impl DataType {
    /// `self`, unless it is Unknown.
    fn max_known(self, other: DataType) -> DataType {
        if self == DataType::Unknown {
            other
        } else {
            self
        }
    }
}

/// The direction of an index column, for key spans.
pub fn column_direction(index: &IndexDesc, i: usize) -> Direction {
    index
        .columns
        .get(i)
        .map(|(_, d)| *d)
        .unwrap_or(Direction::Asc)
}
