//! Runs sqllogictest files record by record and counts what passed, so that a file
//! is measured as a whole instead of stopping at its first failure.

use std::path::Path;

use sqllogictest::{AsyncDB, ColumnType, Condition, MakeConnection, Record, Runner};

/// What one file's records did.
#[derive(Debug, Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    /// Records left out by `skipif`/`onlyif` for our labels.
    pub skipped: usize,
    /// The first failures, for the report.
    pub failures: Vec<String>,
}

/// The labels Cairn runs under: Postgres' (the corpus marks records Postgres cannot
/// run with `skipif postgresql`).
pub const LABELS: [&str; 2] = ["postgresql", "postgres"];

fn skipped(conditions: &[Condition]) -> bool {
    conditions.iter().any(|c| match c {
        Condition::OnlyIf { label } => !LABELS.contains(&label.as_str()),
        Condition::SkipIf { label } => LABELS.contains(&label.as_str()),
    })
}

/// Runs every record of `path`, keeping at most `keep` failure messages.
pub async fn run_file<D, M>(
    runner: &mut Runner<D, M>,
    path: &Path,
    keep: usize,
) -> Result<Tally, String>
where
    D: AsyncDB,
    D::ColumnType: ColumnType,
    M: MakeConnection<Conn = D>,
{
    for l in LABELS {
        runner.add_label(l);
    }
    let records = sqllogictest::parse_file::<D::ColumnType>(path).map_err(|e| e.to_string())?;
    let mut tally = Tally::default();
    for record in records {
        let counted = match &record {
            Record::Statement { conditions, .. } | Record::Query { conditions, .. } => {
                if skipped(conditions) {
                    tally.skipped += 1;
                    false
                } else {
                    true
                }
            }
            _ => false,
        };
        let result = runner.run_async(record).await;
        if !counted {
            continue;
        }
        match result {
            Ok(_) => tally.passed += 1,
            Err(e) => {
                tally.failed += 1;
                if tally.failures.len() < keep {
                    tally.failures.push(e.to_string());
                }
            }
        }
    }
    Ok(tally)
}
