//! Statement latencies by kind, for the node's `/metrics`.

use std::sync::Arc;

use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use sqlparser::ast;

/// A metric's labels.
pub type Labels = Vec<(String, String)>;

/// The statement kinds latencies are kept for.
pub const KINDS: [&str; 7] = [
    "select", "insert", "update", "delete", "ddl", "txn", "other",
];

/// A node's SQL metrics, shared by its sessions.
#[derive(Debug)]
pub struct SqlMetrics {
    /// Seconds each statement took to run, by `kind` (one of [`KINDS`]), errors
    /// included.
    pub statement_latency: Family<Labels, Histogram, fn() -> Histogram>,
    /// The family's histogram of each kind, in [`KINDS`]' order (they share their
    /// counts), so that a statement records without looking its labels up.
    by_kind: Vec<Histogram>,
}

impl Default for SqlMetrics {
    fn default() -> Self {
        let family = Family::new_with_constructor(
            cairn_range::store::latency_histogram as fn() -> Histogram,
        );
        // Every kind is there, at zero, before its first statement.
        let by_kind = KINDS
            .iter()
            .map(|kind| family.get_or_create(&labels(kind)).clone())
            .collect();
        SqlMetrics {
            statement_latency: family,
            by_kind,
        }
    }
}

impl SqlMetrics {
    pub fn new() -> Arc<SqlMetrics> {
        Arc::new(SqlMetrics::default())
    }

    /// Records that a statement of `kind` took `seconds`.
    pub fn observe(&self, kind: &'static str, seconds: f64) {
        match KINDS.iter().position(|k| *k == kind) {
            Some(i) => self.by_kind[i].observe(seconds),
            None => self
                .statement_latency
                .get_or_create(&labels(kind))
                .observe(seconds),
        }
    }
}

fn labels(kind: &str) -> Labels {
    vec![("kind".to_string(), kind.to_string())]
}

/// The kind of `stmt`, as [`SqlMetrics`] counts it.
pub fn kind(stmt: &ast::Statement) -> &'static str {
    use ast::Statement as S;
    match stmt {
        S::Query(_) | S::Explain { .. } => "select",
        S::Insert(_) => "insert",
        S::Update { .. } => "update",
        S::Delete(_) => "delete",
        S::CreateTable(_)
        | S::CreateIndex(_)
        | S::CreateDatabase { .. }
        | S::AlterTable { .. }
        | S::Drop { .. }
        | S::Truncate { .. }
        | S::CreateRole { .. }
        | S::AlterRole { .. } => "ddl",
        S::StartTransaction { .. }
        | S::Commit { .. }
        | S::Rollback { .. }
        | S::Savepoint { .. }
        | S::ReleaseSavepoint { .. } => "txn",
        _ => "other",
    }
}
