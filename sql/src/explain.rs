//! EXPLAIN: the plan as an indented tree, with the key spans each scan reads.

use cairn_kv::keys;

use crate::expr::Expr;
use crate::plan::{JoinKind, Plan, Planned, ScanPlan, SubPlan};

/// The lines of a plan's description.
pub fn explain(planned: &Planned, subplans: &[SubPlan]) -> Vec<String> {
    let mut out = Vec::new();
    match planned {
        Planned::Query { plan, .. } => node(plan, 0, &mut out),
        Planned::Insert { table, source, .. } => {
            out.push(format!("insert into {}", table.name));
            node(source, 1, &mut out);
        }
        Planned::Update { table, scan, .. } => {
            out.push(format!("update {}", table.name));
            node(scan, 1, &mut out);
        }
        Planned::Delete { table, scan, .. } => {
            out.push(format!("delete from {}", table.name));
            node(scan, 1, &mut out);
        }
    }
    for (i, s) in subplans.iter().enumerate() {
        out.push(format!(
            "subquery {i}{}",
            if s.correlated {
                " (correlated: runs per row)"
            } else {
                ""
            }
        ));
        node(&s.plan, 1, &mut out);
    }
    out
}

fn node(plan: &Plan, depth: usize, out: &mut Vec<String>) {
    let pad = "  ".repeat(depth);
    match plan {
        Plan::Values { rows } => out.push(format!("{pad}values ({} rows)", rows.len())),
        Plan::Scan(s) => scan(s, &pad, out),
        Plan::Virtual(v) => out.push(format!("{pad}virtual table {v:?}")),
        Plan::Filter { input, .. } => {
            out.push(format!("{pad}filter"));
            node(input, depth + 1, out);
        }
        Plan::Project { input, exprs } => {
            out.push(format!("{pad}project ({} columns)", exprs.len()));
            node(input, depth + 1, out);
        }
        Plan::Join {
            left,
            right,
            kind,
            equi,
            ..
        } => {
            let k = match kind {
                JoinKind::Inner => "inner",
                JoinKind::Left => "left",
                JoinKind::Right => "right",
                JoinKind::Full => "full",
            };
            let how = if equi.is_empty() {
                "nested loop"
            } else {
                "hash"
            };
            out.push(format!("{pad}{how} join ({k})"));
            node(left, depth + 1, out);
            node(right, depth + 1, out);
        }
        Plan::Aggregate {
            input,
            group_by,
            aggs,
        } => {
            out.push(format!(
                "{pad}aggregate ({} groups keys, {} aggregates)",
                group_by.len(),
                aggs.len()
            ));
            node(input, depth + 1, out);
        }
        Plan::Distinct { input } => {
            out.push(format!("{pad}distinct"));
            node(input, depth + 1, out);
        }
        Plan::Sort { input, keys } => {
            out.push(format!("{pad}sort ({} keys)", keys.len()));
            node(input, depth + 1, out);
        }
        Plan::Limit { input, .. } => {
            out.push(format!("{pad}limit"));
            node(input, depth + 1, out);
        }
        Plan::SetOp {
            kind,
            all,
            left,
            right,
        } => {
            out.push(format!("{pad}{kind:?}{}", if *all { " all" } else { "" }).to_lowercase());
            node(left, depth + 1, out);
            node(right, depth + 1, out);
        }
    }
}

fn scan(s: &ScanPlan, pad: &str, out: &mut Vec<String>) {
    let index = s.index.as_ref().unwrap_or(&s.table.primary);
    out.push(format!("{pad}scan {}@{}", s.table.name, index.name));
    let prefix = keys::index_prefix(s.table.id, index.id);
    let k = &s.constraint;
    let constant = |e: &Expr| matches!(e, Expr::Const(_));
    if k.is_empty() {
        out.push(format!(
            "{pad}  spans: [{} - {})",
            keys::pretty(&prefix),
            keys::pretty(&keys::prefix_end(&prefix))
        ));
    } else if k.eq.iter().flatten().all(constant) {
        let cols: Vec<String> =
            k.eq.iter()
                .map(|alts| {
                    alts.iter()
                        .filter_map(|e| match e {
                            Expr::Const(v) => v.to_text(),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect();
        let range = match (&k.lower, &k.upper) {
            (None, None) => String::new(),
            (l, u) => format!(
                " range {}..{}",
                l.as_ref()
                    .map(|(e, i)| format!("{}{}", if *i { "[" } else { "(" }, expr_text(e)))
                    .unwrap_or_else(|| "(".into()),
                u.as_ref()
                    .map(|(e, i)| format!("{}{}", expr_text(e), if *i { "]" } else { ")" }))
                    .unwrap_or_else(|| ")".into()),
            ),
        };
        out.push(format!(
            "{pad}  spans: {}/{}{range}",
            keys::pretty(&prefix),
            cols.join("/")
        ));
    } else {
        out.push(format!(
            "{pad}  spans: {} constrained on {} column(s), computed per run",
            keys::pretty(&prefix),
            k.eq.len() + usize::from(k.lower.is_some() || k.upper.is_some())
        ));
    }
    if s.filter.is_some() {
        out.push(format!("{pad}  filter: yes"));
    }
    if let Some(l) = s.limit {
        out.push(format!("{pad}  limit: {l}"));
    }
}

/// The index span of every scan in the plan: (label, start, end).
pub fn scanned_spans(planned: &Planned, subplans: &[SubPlan]) -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    match planned {
        Planned::Query { plan, .. } => collect_scans(plan, &mut out),
        Planned::Insert { source, .. } => collect_scans(source, &mut out),
        Planned::Update { scan, .. } | Planned::Delete { scan, .. } => {
            collect_scans(scan, &mut out)
        }
    }
    for s in subplans {
        collect_scans(&s.plan, &mut out);
    }
    out
}

fn collect_scans(plan: &Plan, out: &mut Vec<(String, Vec<u8>, Vec<u8>)>) {
    match plan {
        Plan::Scan(s) => {
            let index = s.index.as_ref().unwrap_or(&s.table.primary);
            let prefix = keys::index_prefix(s.table.id, index.id);
            let end = keys::prefix_end(&prefix);
            out.push((format!("{}@{}", s.table.name, index.name), prefix, end));
        }
        Plan::Values { .. } | Plan::Virtual(_) => {}
        Plan::Filter { input, .. }
        | Plan::Project { input, .. }
        | Plan::Aggregate { input, .. }
        | Plan::Distinct { input }
        | Plan::Sort { input, .. }
        | Plan::Limit { input, .. } => collect_scans(input, out),
        Plan::Join { left, right, .. } | Plan::SetOp { left, right, .. } => {
            collect_scans(left, out);
            collect_scans(right, out);
        }
    }
}

fn expr_text(e: &Expr) -> String {
    match e {
        Expr::Const(v) => v.to_text().unwrap_or_else(|| "NULL".into()),
        Expr::Param(i) => format!("${}", i + 1),
        _ => "expr".into(),
    }
}
