//! Rewrites of a bound plan: predicates move down to the scans and joins that can use
//! them, predicates on an index's leading columns become key spans, equalities
//! between the two sides of a join make it a hash join, and a LIMIT over a plain
//! scan stops the scan early.
//!
//! Every rewrite keeps the predicate it used: a scan's residual filter still checks
//! each row, so spans only have to cover the matching rows, never to be exact.

use crate::catalog::TableDesc;
use crate::expr::{BinOp, Expr, Func};
use crate::plan::{JoinKind, KeyConstraint, Plan, ScanPlan, SubPlan};

/// Optimizes a statement's plan and its subplans.
pub fn optimize(plan: Plan) -> Plan {
    rewrite(plan)
}

pub fn optimize_subplans(subplans: Vec<SubPlan>) -> Vec<SubPlan> {
    subplans
        .into_iter()
        .map(|s| SubPlan {
            plan: rewrite(s.plan),
            correlated: s.correlated,
        })
        .collect()
}

fn rewrite(plan: Plan) -> Plan {
    match plan {
        Plan::Filter { input, predicate } => push_filter(rewrite(*input), predicate),
        Plan::Project { input, exprs } => Plan::Project {
            input: Box::new(rewrite(*input)),
            exprs,
        },
        Plan::Join {
            left,
            right,
            kind,
            equi,
            on,
            left_width,
            right_width,
        } => make_join(
            rewrite(*left),
            rewrite(*right),
            kind,
            equi,
            on,
            left_width,
            right_width,
        ),
        Plan::Aggregate {
            input,
            group_by,
            aggs,
        } => Plan::Aggregate {
            input: Box::new(rewrite(*input)),
            group_by,
            aggs,
        },
        Plan::Distinct { input } => Plan::Distinct {
            input: Box::new(rewrite(*input)),
        },
        Plan::Sort { input, keys } => Plan::Sort {
            input: Box::new(rewrite(*input)),
            keys,
        },
        Plan::Limit {
            input,
            limit,
            offset,
        } => {
            let mut input = rewrite(*input);
            if let (Some(Expr::Const(l)), None | Some(Expr::Const(_))) = (&limit, &offset) {
                let n = crate::expr::as_count(l, "LIMIT").ok().flatten();
                let o = match &offset {
                    Some(Expr::Const(o)) => crate::expr::as_count(o, "OFFSET").ok().flatten(),
                    _ => Some(0),
                };
                if let (Some(n), Some(o)) = (n, o) {
                    set_scan_limit(&mut input, n.saturating_add(o));
                }
            }
            Plan::Limit {
                input: Box::new(input),
                limit,
                offset,
            }
        }
        Plan::SetOp {
            kind,
            all,
            left,
            right,
        } => Plan::SetOp {
            kind,
            all,
            left: Box::new(rewrite(*left)),
            right: Box::new(rewrite(*right)),
        },
        p @ (Plan::Values { .. } | Plan::Scan(_) | Plan::Virtual(_)) => p,
    }
}

/// A limit reaches a scan through projections only (a filter or sort in between
/// needs every row).
fn set_scan_limit(plan: &mut Plan, n: u64) {
    match plan {
        Plan::Scan(s) => s.limit = Some(n),
        Plan::Project { input, .. } => set_scan_limit(input, n),
        _ => {}
    }
}

/// Whether an expression can be moved below the operator it sits on: subqueries
/// must stay where they were bound, since their outer references index that row.
fn movable(e: &Expr) -> bool {
    e.subqueries().is_empty()
}

fn push_filter(input: Plan, predicate: Expr) -> Plan {
    let conjuncts = predicate.conjuncts();
    let (movable_conjuncts, fixed): (Vec<Expr>, Vec<Expr>) =
        conjuncts.into_iter().partition(movable);
    let input = match input {
        Plan::Scan(mut scan) => {
            for c in movable_conjuncts {
                scan.filter = Expr::and_all(scan.filter.take().into_iter().chain([c]).collect());
            }
            choose_index(&mut scan);
            Plan::Scan(scan)
        }
        Plan::Join {
            left,
            right,
            kind,
            equi,
            on,
            left_width,
            right_width,
        } if kind == JoinKind::Inner => {
            let on = Expr::and_all(on.into_iter().chain(movable_conjuncts).collect());
            make_join(*left, *right, kind, equi, on, left_width, right_width)
        }
        Plan::Join {
            left,
            right,
            kind,
            equi,
            on,
            left_width,
            right_width,
        } if kind == JoinKind::Left => {
            // Conjuncts over the left side alone may go below a LEFT join.
            let (to_left, stay): (Vec<Expr>, Vec<Expr>) = movable_conjuncts
                .into_iter()
                .partition(|c| c.columns().iter().all(|&i| i < left_width));
            let left = match Expr::and_all(to_left) {
                Some(p) => push_filter(*left, p),
                None => *left,
            };
            let join = Plan::Join {
                left: Box::new(left),
                right,
                kind,
                equi,
                on,
                left_width,
                right_width,
            };
            match Expr::and_all(stay) {
                Some(p) => Plan::Filter {
                    input: Box::new(join),
                    predicate: p,
                },
                None => join,
            }
        }
        other => match Expr::and_all(movable_conjuncts) {
            Some(p) => Plan::Filter {
                input: Box::new(other),
                predicate: p,
            },
            None => other,
        },
    };
    match Expr::and_all(fixed) {
        Some(p) => Plan::Filter {
            input: Box::new(input),
            predicate: p,
        },
        None => input,
    }
}

/// Builds a join, moving single-side conjuncts of an inner join's condition into
/// its inputs and column equalities across the sides into hash keys.
fn make_join(
    left: Plan,
    right: Plan,
    kind: JoinKind,
    mut equi: Vec<(Expr, Expr)>,
    on: Option<Expr>,
    left_width: usize,
    right_width: usize,
) -> Plan {
    let mut to_left = Vec::new();
    let mut to_right = Vec::new();
    let mut rest = Vec::new();
    for c in on.map(Expr::conjuncts).unwrap_or_default() {
        let cols = c.columns();
        let only_left = cols.iter().all(|&i| i < left_width);
        let only_right = cols.iter().all(|&i| i >= left_width);
        if !movable(&c) {
            rest.push(c);
        } else if kind == JoinKind::Inner && only_left && !cols.is_empty() {
            to_left.push(c);
        } else if matches!(kind, JoinKind::Inner | JoinKind::Left) && only_right && !cols.is_empty()
        {
            to_right.push(c.map_columns(&|i| i - left_width));
        } else if let Some((l, r)) = equality_across(&c, left_width) {
            equi.push((l, r));
        } else {
            rest.push(c);
        }
    }
    let left = match Expr::and_all(to_left) {
        Some(p) => push_filter(left, p),
        None => left,
    };
    let right = match Expr::and_all(to_right) {
        Some(p) => push_filter(right, p),
        None => right,
    };
    Plan::Join {
        left: Box::new(left),
        right: Box::new(right),
        kind,
        equi,
        on: Expr::and_all(rest),
        left_width,
        right_width,
    }
}

/// `l = r` with `l` over the left side and `r` over the right: the pair, with `r`
/// moved to the right row's positions.
fn equality_across(c: &Expr, left_width: usize) -> Option<(Expr, Expr)> {
    let Expr::Binary(BinOp::Eq, a, b) = c else {
        return None;
    };
    let side = |e: &Expr| {
        let cols = e.columns();
        if cols.is_empty() {
            None
        } else if cols.iter().all(|&i| i < left_width) {
            Some(true)
        } else if cols.iter().all(|&i| i >= left_width) {
            Some(false)
        } else {
            None
        }
    };
    match (side(a), side(b)) {
        (Some(true), Some(false)) => Some(((**a).clone(), b.map_columns(&|i| i - left_width))),
        (Some(false), Some(true)) => Some(((**b).clone(), a.map_columns(&|i| i - left_width))),
        _ => None,
    }
}

/// An expression whose value is fixed during one run of a scan: no column of the
/// scanned row, no subquery, nothing volatile.
fn scan_constant(e: &Expr) -> bool {
    let mut ok = true;
    e.walk(&mut |x| {
        if matches!(x, Expr::Column(_) | Expr::Subquery { .. })
            || matches!(
                x,
                Expr::Func(Func::Random | Func::GenRandomUuid | Func::UniqueRowid, _)
            )
        {
            ok = false;
        }
    });
    ok
}

/// One conjunct's use for a key column: equality alternatives or a bound.
enum Use {
    Eq(Vec<Expr>),
    Lower(Expr, bool),
    Upper(Expr, bool),
}

fn column_use(c: &Expr, col: usize) -> Option<Use> {
    match c {
        Expr::Binary(op, a, b) if op.is_comparison() && *op != BinOp::NotEq => {
            let (op, other) = match (a.as_ref(), b.as_ref()) {
                (Expr::Column(i), e) if *i == col && scan_constant(e) => (*op, e),
                (e, Expr::Column(i)) if *i == col && scan_constant(e) => (op.flip(), e),
                _ => return None,
            };
            Some(match op {
                BinOp::Eq => Use::Eq(vec![other.clone()]),
                BinOp::Gt => Use::Lower(other.clone(), false),
                BinOp::GtEq => Use::Lower(other.clone(), true),
                BinOp::Lt => Use::Upper(other.clone(), false),
                BinOp::LtEq => Use::Upper(other.clone(), true),
                _ => return None,
            })
        }
        Expr::InList { expr, list }
            if matches!(expr.as_ref(), Expr::Column(i) if *i == col)
                && list.iter().all(scan_constant)
                && list.len() <= 256 =>
        {
            Some(Use::Eq(list.clone()))
        }
        _ => None,
    }
}

/// The constraint the filter puts on an index's columns (given as row positions).
fn constraint_for(conjuncts: &[Expr], positions: &[usize]) -> KeyConstraint {
    let mut k = KeyConstraint::default();
    for &pos in positions {
        let eq = conjuncts.iter().find_map(|c| match column_use(c, pos) {
            Some(Use::Eq(v)) => Some(v),
            _ => None,
        });
        match eq {
            Some(v) => k.eq.push(v),
            None => {
                for c in conjuncts {
                    match column_use(c, pos) {
                        Some(Use::Lower(e, inc)) if k.lower.is_none() => k.lower = Some((e, inc)),
                        Some(Use::Upper(e, inc)) if k.upper.is_none() => k.upper = Some((e, inc)),
                        _ => {}
                    }
                }
                break;
            }
        }
    }
    k
}

/// Picks the index whose leading columns the scan's filter constrains best: the
/// primary index unless a secondary one has a longer equality prefix.
fn choose_index(scan: &mut ScanPlan) {
    let Some(filter) = &scan.filter else { return };
    let conjuncts = filter.clone().conjuncts();
    let table: &TableDesc = &scan.table;
    let positions = |cols: &[(u32, cairn_kv::keys::Direction)]| -> Vec<usize> {
        cols.iter()
            .filter_map(|(c, _)| table.column_position(*c).ok())
            .collect()
    };
    let score =
        |k: &KeyConstraint| k.eq.len() * 2 + usize::from(k.lower.is_some() || k.upper.is_some());
    let primary = constraint_for(&conjuncts, &positions(&table.primary.columns));
    let mut best = (score(&primary), None, primary);
    for ix in &table.indexes {
        let k = constraint_for(&conjuncts, &positions(&ix.columns));
        let s = score(&k);
        if s > best.0 {
            best = (s, Some(ix.clone()), k);
        }
    }
    scan.index = best.1;
    scan.constraint = best.2;
}
