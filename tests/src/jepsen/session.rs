//! A client's SQL connection: to one node, moved to the next when that node stops
//! answering, with a timeout on every statement and errors sorted into "certainly did
//! not happen" and "unknown".

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::{NoTls, SimpleQueryMessage};

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a statement may take before the client gives up on it (its outcome is then
/// unknown).
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

/// How an operation ended, as its client saw it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It happened.
    Ok,
    /// It certainly did not happen.
    Fail,
    /// Unknown: it may or may not have happened.
    Info,
}

/// A statement that did not succeed.
#[derive(Clone, Debug)]
pub struct SqlError {
    /// Certainly not applied: refused by the server with a code that says so, or never
    /// sent.
    pub definite: bool,
    pub message: String,
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Rows of text values, as the simple query protocol returns them.
pub type Rows = Vec<Vec<Option<String>>>;

/// SQLSTATEs after which a statement certainly did not take effect. Anything else
/// (40003 above all, but also internal and connection errors) leaves it unknown.
fn definite(code: &str) -> bool {
    matches!(code, "40001" | "40P01" | "25P02")
        || code.starts_with("23")
        || code.starts_with("42")
        || code.starts_with("22")
}

pub struct Session {
    urls: Arc<Vec<String>>,
    node: usize,
    /// Stays on its node (to check that node).
    pinned: bool,
    client: Option<tokio_postgres::Client>,
}

impl Session {
    /// A session starting on node `start` (modulo the cluster's size).
    pub fn new(urls: Arc<Vec<String>>, start: usize) -> Session {
        let node = start % urls.len();
        Session {
            urls,
            node,
            pinned: false,
            client: None,
        }
    }

    /// A session that only ever talks to node `i`.
    pub fn pinned(urls: Arc<Vec<String>>, i: usize) -> Session {
        Session {
            pinned: true,
            ..Session::new(urls, i)
        }
    }

    /// The node this session talks to (0-based).
    pub fn node(&self) -> usize {
        self.node
    }

    /// Drops the connection; the next statement connects to the next node.
    fn broken(&mut self) {
        self.client = None;
        if !self.pinned {
            self.node = (self.node + 1) % self.urls.len();
        }
    }

    async fn connect(&mut self) -> Result<(), SqlError> {
        if self.client.is_some() {
            return Ok(());
        }
        let url = &self.urls[self.node];
        match tokio::time::timeout(CONNECT_TIMEOUT, tokio_postgres::connect(url, NoTls)).await {
            Ok(Ok((client, conn))) => {
                tokio::spawn(conn);
                self.client = Some(client);
                Ok(())
            }
            failed => {
                let message = match failed {
                    Ok(Err(e)) => format!("connect to node {}: {e}", self.node + 1),
                    _ => format!("connect to node {}: timed out", self.node + 1),
                };
                self.broken();
                Err(SqlError {
                    definite: true,
                    message,
                })
            }
        }
    }

    /// Runs `sql` (one statement, or several as one simple query) and returns the rows
    /// of its results.
    pub async fn simple(&mut self, sql: &str) -> Result<Rows, SqlError> {
        self.connect().await?;
        let client = self.client.as_ref().expect("connected");
        let result = tokio::time::timeout(STATEMENT_TIMEOUT, client.simple_query(sql)).await;
        match result {
            Ok(Ok(msgs)) => Ok(msgs
                .into_iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::Row(r) => {
                        Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                    }
                    _ => None,
                })
                .collect()),
            Ok(Err(e)) => match e.as_db_error() {
                Some(db) => Err(SqlError {
                    definite: definite(db.code().code()),
                    message: format!("{}: {}", db.code().code(), db.message()),
                }),
                None => {
                    self.broken();
                    Err(SqlError {
                        definite: false,
                        message: format!("connection: {e}"),
                    })
                }
            },
            Err(_) => {
                // Whatever the statement did, the connection is in an unknown state.
                self.broken();
                Err(SqlError {
                    definite: false,
                    message: format!("no answer within {STATEMENT_TIMEOUT:?}"),
                })
            }
        }
    }

    /// Runs `sql` and returns the first column of its first row as an integer.
    pub async fn int(&mut self, sql: &str) -> Result<Option<i64>, SqlError> {
        let rows = self.simple(sql).await?;
        Ok(rows
            .first()
            .and_then(|r| r.first().cloned().flatten())
            .and_then(|v| v.parse().ok()))
    }

    /// Ends a transaction begun with `BEGIN` whose body returned `body`: commits it if
    /// the body succeeded, rolls it back if not. Returns the outcome, and the body's
    /// value if it committed.
    pub async fn finish<T>(&mut self, body: Result<T, SqlError>) -> (Outcome, Option<T>, String) {
        match body {
            Err(e) => {
                // Nothing commits without a COMMIT: the transaction certainly did not
                // happen, whether or not the connection survived.
                if self.client.is_some() {
                    let _ = self.simple("ROLLBACK").await;
                }
                (Outcome::Fail, None, e.message)
            }
            Ok(v) => match self.simple("COMMIT").await {
                Ok(_) => (Outcome::Ok, Some(v), String::new()),
                Err(e) if e.definite => (Outcome::Fail, None, e.message),
                Err(e) => (Outcome::Info, None, e.message),
            },
        }
    }

    /// The outcome of a single statement outside a transaction.
    pub fn outcome<T>(result: &Result<T, SqlError>) -> (Outcome, String) {
        match result {
            Ok(_) => (Outcome::Ok, String::new()),
            Err(e) if e.definite => (Outcome::Fail, e.message.clone()),
            Err(e) => (Outcome::Info, e.message.clone()),
        }
    }
}
