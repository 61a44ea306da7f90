//! Bound scalar expressions and their evaluation, with Postgres' NULL semantics.
//!
//! The planner turns the parser's expressions into [`Expr`]: column references become
//! positions in the input row, functions are resolved, and types are checked. An
//! expression is evaluated against one row; a subquery inside it is run by the
//! executor before evaluation, and its rows are handed in as [`SubqueryResults`].

use std::cmp::Ordering;
use std::collections::HashMap;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use crate::error::{Error, Result, SqlState};
use crate::types::{DataType, Value, div_scale, rescale};

/// A row of values.
pub type Row = Vec<Value>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Concat,
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
}

impl BinOp {
    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq | BinOp::NotEq | BinOp::Lt | BinOp::LtEq | BinOp::Gt | BinOp::GtEq
        )
    }

    /// The operator with its operands swapped (`a < b` is `b > a`).
    pub fn flip(self) -> BinOp {
        match self {
            BinOp::Lt => BinOp::Gt,
            BinOp::LtEq => BinOp::GtEq,
            BinOp::Gt => BinOp::Lt,
            BinOp::GtEq => BinOp::LtEq,
            op => op,
        }
    }
}

/// Scalar functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    Abs,
    Coalesce,
    NullIf,
    Greatest,
    Least,
    Lower,
    Upper,
    Length,
    Substr,
    Trim,
    LTrim,
    RTrim,
    Concat,
    Replace,
    Round,
    Floor,
    Ceil,
    Sqrt,
    Power,
    ModFn,
    Sign,
    Now,
    Version,
    CurrentDatabase,
    CurrentSchema,
    CurrentUser,
    CurrentSetting,
    GenRandomUuid,
    UniqueRowid,
    Random,
    PgBackendPid,
    FormatType,
    PgGetUserById,
    PgTableIsVisible,
    ObjDescription,
    PgGetExpr,
    PgGetIndexdef,
    PgGetConstraintdef,
    PgEncodingToChar,
    HasPrivilege,
    ArrayToString,
    Left,
    Right,
    StrPos,
    Md5,
    ToHex,
    Chr,
    Ascii,
    Repeat,
    Reverse,
    Lpad,
    Rpad,
    Trunc,
    Exp,
    Ln,
    Log10,
    Pi,
    Extract,
    DatePart,
}

/// How a subquery's rows are used by the expression that holds it.
#[derive(Clone, Debug, PartialEq)]
pub enum SubqueryKind {
    /// `(SELECT x ...)`: the one value of at most one row.
    Scalar,
    /// `EXISTS (...)`.
    Exists,
    /// `x IN (SELECT ...)`, or with `op ANY/ALL`.
    Compare { op: BinOp, all: bool },
}

/// A bound scalar expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Const(Value),
    /// A column of the input row.
    Column(usize),
    /// A column of an enclosing query's row: `depth` 1 is the nearest.
    Outer {
        depth: usize,
        index: usize,
    },
    /// A statement parameter (`$1` is 0).
    Param(usize),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>),
    /// `a IS DISTINCT FROM b`.
    IsDistinct(Box<Expr>, Box<Expr>),
    /// `a IS TRUE` / `IS FALSE` (never NULL).
    IsBool(Box<Expr>, bool),
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        else_: Option<Box<Expr>>,
    },
    Cast(Box<Expr>, DataType),
    Func(Func, Vec<Expr>),
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        case_insensitive: bool,
    },
    /// `a ~ b` (and `~*`): a regular expression match.
    Regex {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        case_insensitive: bool,
    },
    /// An expression that could not be bound in a catalog query, failing only if it
    /// is evaluated (see [`crate::plan::Planner`]'s leniency).
    Error(SqlState, String),
    InList {
        expr: Box<Expr>,
        list: Vec<Expr>,
    },
    /// Subquery number `id` of the statement; `expr` is the left operand of a
    /// comparison subquery.
    Subquery {
        id: usize,
        kind: SubqueryKind,
        expr: Option<Box<Expr>>,
    },
}

/// The rows of the subqueries an expression holds, run for the current row.
pub type SubqueryResults = HashMap<usize, std::sync::Arc<Vec<Row>>>;

/// What an expression can see besides its row.
pub struct EvalContext<'a> {
    pub params: &'a [Value],
    /// Enclosing queries' rows, innermost last.
    pub outer: &'a [Row],
    pub session: &'a SessionInfo,
}

/// Session facts that functions read.
#[derive(Clone, Debug, Default)]
pub struct SessionInfo {
    pub database: String,
    pub user: String,
    /// The statement's timestamp (`now()`), microseconds since 2000-01-01 UTC.
    pub now: i64,
    pub settings: Vec<(String, String)>,
    pub backend_pid: i32,
    pub node_id: u64,
    /// For catalog queries: index definitions by index OID, as
    /// (`pg_get_indexdef`, `pg_get_constraintdef`).
    pub index_defs: HashMap<i64, (String, String)>,
}

impl SessionInfo {
    pub fn setting(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.settings
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub const SERVER_VERSION: &str = "15.0 (Cairn 0.1)";

fn truth(v: &Value) -> Result<Option<bool>> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(Error::new(
            SqlState::DatatypeMismatch,
            format!(
                "argument must be type boolean, not type {}",
                other.type_name()
            ),
        )),
    }
}

impl Expr {
    pub fn constant(v: Value) -> Expr {
        Expr::Const(v)
    }

    /// The expressions directly inside this one.
    fn children(&self) -> Vec<&Expr> {
        match self {
            Expr::Const(_)
            | Expr::Column(_)
            | Expr::Outer { .. }
            | Expr::Param(_)
            | Expr::Error(..) => vec![],
            Expr::Regex { expr, pattern, .. } => vec![expr, pattern],
            Expr::Neg(e)
            | Expr::Not(e)
            | Expr::IsNull(e)
            | Expr::IsBool(e, _)
            | Expr::Cast(e, _) => {
                vec![e]
            }
            Expr::Binary(_, a, b) | Expr::IsDistinct(a, b) => vec![a, b],
            Expr::Case {
                operand,
                whens,
                else_,
            } => operand
                .iter()
                .map(|o| o.as_ref())
                .chain(whens.iter().flat_map(|(w, t)| [w, t]))
                .chain(else_.iter().map(|e| e.as_ref()))
                .collect(),
            Expr::Func(_, args) => args.iter().collect(),
            Expr::Like { expr, pattern, .. } => vec![expr, pattern],
            Expr::InList { expr, list } => std::iter::once(expr.as_ref()).chain(list).collect(),
            Expr::Subquery { expr, .. } => expr.iter().map(|e| e.as_ref()).collect(),
        }
    }

    /// The expressions directly inside this one, mutably.
    fn children_mut(&mut self) -> Vec<&mut Expr> {
        match self {
            Expr::Const(_)
            | Expr::Column(_)
            | Expr::Outer { .. }
            | Expr::Param(_)
            | Expr::Error(..) => vec![],
            Expr::Regex { expr, pattern, .. } => vec![expr, pattern],
            Expr::Neg(e)
            | Expr::Not(e)
            | Expr::IsNull(e)
            | Expr::IsBool(e, _)
            | Expr::Cast(e, _) => {
                vec![e]
            }
            Expr::Binary(_, a, b) | Expr::IsDistinct(a, b) => vec![a, b],
            Expr::Case {
                operand,
                whens,
                else_,
            } => operand
                .iter_mut()
                .map(|o| o.as_mut())
                .chain(whens.iter_mut().flat_map(|(w, t)| [w, t]))
                .chain(else_.iter_mut().map(|e| e.as_mut()))
                .collect(),
            Expr::Func(_, args) => args.iter_mut().collect(),
            Expr::Like { expr, pattern, .. } => vec![expr, pattern],
            Expr::InList { expr, list } => std::iter::once(expr.as_mut()).chain(list).collect(),
            Expr::Subquery { expr, .. } => expr.iter_mut().map(|e| e.as_mut()).collect(),
        }
    }

    /// Calls `f` on this expression and every expression inside it.
    pub fn walk(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        for c in self.children() {
            c.walk(f);
        }
    }

    /// The ids of the subqueries in this expression.
    pub fn subqueries(&self) -> Vec<usize> {
        let mut ids = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Subquery { id, .. } = e {
                ids.push(*id);
            }
        });
        ids
    }

    /// The input columns the expression reads.
    pub fn columns(&self) -> Vec<usize> {
        let mut cols = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Column(i) = e {
                cols.push(*i);
            }
        });
        cols
    }

    /// A copy with every column reference moved by `f`.
    pub fn map_columns(&self, f: &impl Fn(usize) -> usize) -> Expr {
        let mut e = self.clone();
        e.remap(f);
        e
    }

    fn remap(&mut self, f: &impl Fn(usize) -> usize) {
        if let Expr::Column(i) = self {
            *i = f(*i);
        }
        for c in self.children_mut() {
            c.remap(f);
        }
    }

    /// `NOT self` when `negated`.
    pub fn negate_if(self, negated: bool) -> Expr {
        if negated {
            Expr::Not(Box::new(self))
        } else {
            self
        }
    }

    /// Splits a conjunction into its conjuncts.
    pub fn conjuncts(self) -> Vec<Expr> {
        match self {
            Expr::Binary(BinOp::And, a, b) => {
                let mut v = a.conjuncts();
                v.extend(b.conjuncts());
                v
            }
            e => vec![e],
        }
    }

    /// The conjunction of `exprs` (TRUE when empty).
    pub fn and_all(exprs: Vec<Expr>) -> Option<Expr> {
        exprs
            .into_iter()
            .reduce(|a, b| Expr::Binary(BinOp::And, Box::new(a), Box::new(b)))
    }

    /// Evaluates the expression against `row`.
    pub fn eval(&self, row: &[Value], ctx: &EvalContext, subs: &SubqueryResults) -> Result<Value> {
        Ok(match self {
            Expr::Const(v) => v.clone(),
            Expr::Column(i) => row.get(*i).cloned().unwrap_or(Value::Null),
            Expr::Outer { depth, index } => ctx
                .outer
                .len()
                .checked_sub(*depth)
                .and_then(|d| ctx.outer.get(d))
                .and_then(|r| r.get(*index))
                .cloned()
                .unwrap_or(Value::Null),
            Expr::Param(i) => ctx.params.get(*i).cloned().ok_or_else(|| {
                Error::new(
                    SqlState::UndefinedParameter,
                    format!("there is no parameter ${}", i + 1),
                )
            })?,
            Expr::Neg(e) => match e.eval(row, ctx, subs)? {
                Value::Null => Value::Null,
                Value::Int(i) => Value::Int(i.checked_neg().ok_or_else(int_overflow)?),
                Value::Float(f) => Value::Float(-f),
                Value::Numeric(d) => Value::Numeric(-d),
                other => return Err(op_error("-", &other, &Value::Null)),
            },
            Expr::Not(e) => match truth(&e.eval(row, ctx, subs)?)? {
                None => Value::Null,
                Some(b) => Value::Bool(!b),
            },
            Expr::Binary(BinOp::And, a, b) => {
                let l = truth(&a.eval(row, ctx, subs)?)?;
                if l == Some(false) {
                    return Ok(Value::Bool(false));
                }
                let r = truth(&b.eval(row, ctx, subs)?)?;
                match (l, r) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                }
            }
            Expr::Binary(BinOp::Or, a, b) => {
                let l = truth(&a.eval(row, ctx, subs)?)?;
                if l == Some(true) {
                    return Ok(Value::Bool(true));
                }
                let r = truth(&b.eval(row, ctx, subs)?)?;
                match (l, r) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                }
            }
            Expr::Binary(op, a, b) => {
                let l = a.eval(row, ctx, subs)?;
                let r = b.eval(row, ctx, subs)?;
                binary(*op, &l, &r)?
            }
            Expr::IsNull(e) => Value::Bool(e.eval(row, ctx, subs)?.is_null()),
            Expr::IsDistinct(a, b) => {
                let l = a.eval(row, ctx, subs)?;
                let r = b.eval(row, ctx, subs)?;
                Value::Bool(match (l.is_null(), r.is_null()) {
                    (true, true) => false,
                    (true, false) | (false, true) => true,
                    _ => compare(&l, &r)? != Ordering::Equal,
                })
            }
            Expr::IsBool(e, want) => Value::Bool(truth(&e.eval(row, ctx, subs)?)? == Some(*want)),
            Expr::Case {
                operand,
                whens,
                else_,
            } => {
                let op = match operand {
                    Some(o) => Some(o.eval(row, ctx, subs)?),
                    None => None,
                };
                for (when, then) in whens {
                    let w = when.eval(row, ctx, subs)?;
                    let hit = match &op {
                        Some(o) => binary(BinOp::Eq, o, &w)? == Value::Bool(true),
                        None => truth(&w)? == Some(true),
                    };
                    if hit {
                        return then.eval(row, ctx, subs);
                    }
                }
                match else_ {
                    Some(e) => e.eval(row, ctx, subs)?,
                    None => Value::Null,
                }
            }
            Expr::Cast(e, ty) => e.eval(row, ctx, subs)?.cast(*ty)?,
            Expr::Func(f, args) => {
                let mut vals = Vec::with_capacity(args.len());
                // COALESCE evaluates lazily.
                if *f == Func::Coalesce {
                    for a in args {
                        let v = a.eval(row, ctx, subs)?;
                        if !v.is_null() {
                            return Ok(v);
                        }
                    }
                    return Ok(Value::Null);
                }
                for a in args {
                    vals.push(a.eval(row, ctx, subs)?);
                }
                crate::functions::call(*f, vals, ctx)?
            }
            Expr::Like {
                expr,
                pattern,
                case_insensitive,
            } => {
                let v = expr.eval(row, ctx, subs)?;
                let p = pattern.eval(row, ctx, subs)?;
                match (v, p) {
                    (Value::Null, _) | (_, Value::Null) => Value::Null,
                    (Value::Text(v), Value::Text(p)) => {
                        Value::Bool(like(&v, &p, *case_insensitive))
                    }
                    (v, p) => return Err(op_error("LIKE", &v, &p)),
                }
            }
            Expr::Regex {
                expr,
                pattern,
                case_insensitive,
            } => {
                let v = expr.eval(row, ctx, subs)?;
                let p = pattern.eval(row, ctx, subs)?;
                match (v.to_text(), p.to_text()) {
                    (Some(v), Some(p)) => {
                        let re = regex::RegexBuilder::new(&p)
                            .case_insensitive(*case_insensitive)
                            .size_limit(1 << 20)
                            .build()
                            .map_err(|e| {
                                Error::new(
                                    SqlState::InvalidRegularExpression,
                                    format!("invalid regular expression: {e}"),
                                )
                            })?;
                        Value::Bool(re.is_match(&v))
                    }
                    _ => Value::Null,
                }
            }
            Expr::Error(code, message) => return Err(Error::new(*code, message.clone())),
            Expr::InList { expr, list } => {
                let v = expr.eval(row, ctx, subs)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let mut saw_null = false;
                for item in list {
                    let i = item.eval(row, ctx, subs)?;
                    if i.is_null() {
                        saw_null = true;
                    } else if compare(&v, &i)? == Ordering::Equal {
                        return Ok(Value::Bool(true));
                    }
                }
                if saw_null {
                    Value::Null
                } else {
                    Value::Bool(false)
                }
            }
            Expr::Subquery { id, kind, expr } => {
                let rows = subs
                    .get(id)
                    .ok_or_else(|| crate::error::internal(format!("subquery {id} was not run")))?;
                match kind {
                    SubqueryKind::Scalar => match rows.len() {
                        0 => Value::Null,
                        1 => rows[0].first().cloned().unwrap_or(Value::Null),
                        _ => {
                            return Err(Error::new(
                                SqlState::CardinalityViolation,
                                "more than one row returned by a subquery used as an expression",
                            ));
                        }
                    },
                    SubqueryKind::Exists => Value::Bool(!rows.is_empty()),
                    SubqueryKind::Compare { op, all } => {
                        let left = match expr {
                            Some(e) => e.eval(row, ctx, subs)?,
                            None => Value::Null,
                        };
                        // ANY: true if any comparison is true; NULL if none is true
                        // and some is NULL. ALL: false if any is false; NULL if none
                        // is false and some is NULL.
                        let mut saw_null = false;
                        for r in rows.iter() {
                            let right = r.first().cloned().unwrap_or(Value::Null);
                            match truth(&binary(*op, &left, &right)?)? {
                                None => saw_null = true,
                                Some(b) if b != *all => return Ok(Value::Bool(b)),
                                Some(_) => {}
                            }
                        }
                        if saw_null {
                            Value::Null
                        } else {
                            Value::Bool(*all)
                        }
                    }
                }
            }
        })
    }
}

fn int_overflow() -> Error {
    Error::new(SqlState::NumericValueOutOfRange, "integer out of range")
}

fn op_error(op: &str, l: &Value, r: &Value) -> Error {
    Error::new(
        SqlState::UndefinedFunction,
        format!(
            "operator does not exist: {} {op} {}",
            l.type_name(),
            r.type_name()
        ),
    )
}

/// Compares two non-NULL values, or fails when their types do not compare.
pub fn compare(l: &Value, r: &Value) -> Result<Ordering> {
    l.compare(r).ok_or_else(|| op_error("=", l, r))
}

fn division_by_zero() -> Error {
    Error::new(SqlState::DivisionByZero, "division by zero")
}

/// A binary operator other than AND/OR, on evaluated operands.
pub fn binary(op: BinOp, l: &Value, r: &Value) -> Result<Value> {
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    if op.is_comparison() {
        let ord = compare(l, r)?;
        // NaN equals NaN and sorts above everything in Postgres; compare() agrees.
        return Ok(Value::Bool(match op {
            BinOp::Eq => ord == Ordering::Equal,
            BinOp::NotEq => ord != Ordering::Equal,
            BinOp::Lt => ord == Ordering::Less,
            BinOp::LtEq => ord != Ordering::Greater,
            BinOp::Gt => ord == Ordering::Greater,
            BinOp::GtEq => ord != Ordering::Less,
            _ => unreachable!("comparison operators are handled above"),
        }));
    }
    if op == BinOp::Concat {
        let (Some(a), Some(b)) = (l.to_text(), r.to_text()) else {
            return Ok(Value::Null);
        };
        return Ok(Value::Text(a + &b));
    }
    use Value::*;
    Ok(match (l, r) {
        (Int(a), Int(b)) => Int(match op {
            BinOp::Add => a.checked_add(*b).ok_or_else(int_overflow)?,
            BinOp::Sub => a.checked_sub(*b).ok_or_else(int_overflow)?,
            BinOp::Mul => a.checked_mul(*b).ok_or_else(int_overflow)?,
            BinOp::Div => {
                if *b == 0 {
                    return Err(division_by_zero());
                }
                a.checked_div(*b).ok_or_else(int_overflow)?
            }
            BinOp::Mod => {
                if *b == 0 {
                    return Err(division_by_zero());
                }
                a.checked_rem(*b).unwrap_or(0)
            }
            _ => return Err(op_error("?", l, r)),
        }),
        (Float(_), Int(_) | Float(_) | Numeric(_)) | (Int(_) | Numeric(_), Float(_)) => {
            let (a, b) = (
                l.as_f64().unwrap_or(f64::NAN),
                r.as_f64().unwrap_or(f64::NAN),
            );
            Float(match op {
                BinOp::Add => a + b,
                BinOp::Sub => a - b,
                BinOp::Mul => a * b,
                BinOp::Div => {
                    if b == 0.0 {
                        return Err(division_by_zero());
                    }
                    a / b
                }
                BinOp::Mod => {
                    if b == 0.0 {
                        return Err(division_by_zero());
                    }
                    a % b
                }
                _ => return Err(op_error("?", l, r)),
            })
        }
        (Numeric(_), Int(_) | Numeric(_)) | (Int(_), Numeric(_)) => {
            let a = to_decimal(l);
            let b = to_decimal(r);
            let overflow =
                || Error::new(SqlState::NumericValueOutOfRange, "numeric field overflow");
            Numeric(match op {
                BinOp::Add => a.checked_add(b).ok_or_else(overflow)?,
                BinOp::Sub => a.checked_sub(b).ok_or_else(overflow)?,
                BinOp::Mul => a.checked_mul(b).ok_or_else(overflow)?,
                BinOp::Div => {
                    if b.is_zero() {
                        return Err(division_by_zero());
                    }
                    let q = a.checked_div(b).ok_or_else(overflow)?;
                    rescale(q, div_scale(&a, &b))
                }
                BinOp::Mod => {
                    if b.is_zero() {
                        return Err(division_by_zero());
                    }
                    a % b
                }
                _ => return Err(op_error("?", l, r)),
            })
        }
        (Date(d), Int(i)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let i = i32::try_from(*i).map_err(|_| int_overflow())?;
            Date(if op == BinOp::Add { d + i } else { d - i })
        }
        (Date(a), Date(b)) if op == BinOp::Sub => Int(i64::from(a - b)),
        _ => return Err(op_error(binop_symbol(op), l, r)),
    })
}

fn to_decimal(v: &Value) -> Decimal {
    match v {
        Value::Int(i) => Decimal::from(*i),
        Value::Numeric(d) => *d,
        _ => Decimal::ZERO,
    }
}

pub fn binop_symbol(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Mod => "%",
        BinOp::Concat => "||",
        BinOp::Eq => "=",
        BinOp::NotEq => "<>",
        BinOp::Lt => "<",
        BinOp::LtEq => "<=",
        BinOp::Gt => ">",
        BinOp::GtEq => ">=",
        BinOp::And => "AND",
        BinOp::Or => "OR",
    }
}

/// SQL LIKE: `%` matches any run, `_` one character, `\` escapes.
pub fn like(s: &str, p: &str, case_insensitive: bool) -> bool {
    let (s, p): (Vec<char>, Vec<char>) = if case_insensitive {
        (
            s.to_lowercase().chars().collect(),
            p.to_lowercase().chars().collect(),
        )
    } else {
        (s.chars().collect(), p.chars().collect())
    };
    fn go(s: &[char], p: &[char]) -> bool {
        match p.first() {
            None => s.is_empty(),
            Some('%') => (0..=s.len()).any(|i| go(&s[i..], &p[1..])),
            Some('_') => !s.is_empty() && go(&s[1..], &p[1..]),
            Some('\\') if p.len() > 1 => s.first() == Some(&p[1]) && go(&s[1..], &p[2..]),
            Some(c) => s.first() == Some(c) && go(&s[1..], &p[1..]),
        }
    }
    go(&s, &p)
}

/// The integer value of an evaluated LIMIT or OFFSET.
pub fn as_count(v: &Value, what: &str) -> Result<Option<u64>> {
    match v {
        Value::Null => Ok(None),
        Value::Int(i) if *i >= 0 => Ok(Some(*i as u64)),
        Value::Numeric(d) if !d.is_sign_negative() => Ok(d.to_u64()),
        Value::Float(f) if *f >= 0.0 => Ok(Some(f.round() as u64)),
        _ => Err(Error::new(
            SqlState::InvalidParameterValue,
            format!("{what} must not be negative"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o", false));
        assert!(like("hello", "h_llo", false));
        assert!(!like("hello", "h_lo", false));
        assert!(like("HeLLo", "hello", true));
        assert!(like("50%", "50\\%", false));
    }

    #[test]
    fn integer_division_truncates_and_checks_zero() {
        assert_eq!(
            binary(BinOp::Div, &Value::Int(7), &Value::Int(2)).unwrap(),
            Value::Int(3)
        );
        assert_eq!(
            binary(BinOp::Div, &Value::Int(-7), &Value::Int(2)).unwrap(),
            Value::Int(-3)
        );
        let e = binary(BinOp::Div, &Value::Int(1), &Value::Int(0)).unwrap_err();
        assert_eq!(e.code, SqlState::DivisionByZero);
        assert_eq!(
            binary(BinOp::Add, &Value::Null, &Value::Int(1)).unwrap(),
            Value::Null
        );
    }
}
