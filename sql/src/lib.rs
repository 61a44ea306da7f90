//! SQL: parsing, catalog, row encoding, planning and execution over transactional KV.
//!
//! One statement, from text to rows:
//!
//! 1. [`session::parse`] turns text into `sqlparser` statements (Postgres dialect).
//! 2. [`session::Session::execute`] handles transaction control and SET/SHOW itself,
//!    and runs anything else in the session's transaction (or an implicit one,
//!    retried on serialization failures).
//! 3. The tables the statement names are read from the [`catalog`], which lives in
//!    KV, through that transaction.
//! 4. The [`plan::Planner`] binds names and types and builds an operator tree;
//!    [`opt`] pushes predicates into scans (key spans from [`rowcodec`]) and joins.
//! 5. The [`exec::Executor`] runs the tree: scans read KV through the transaction,
//!    [`expr`] evaluates expressions with Postgres' NULL semantics, and writes go out
//!    as batches of KV requests.
//! 6. Values leave as [`types::Value`], printed in Postgres' text format (or encoded
//!    in binary by the wire layer above).

pub mod catalog;
pub mod ddl;
pub mod desc_cache;
pub mod error;
pub mod exec;
pub mod explain;
pub mod expr;
pub mod functions;
pub mod metrics;
pub mod opt;
pub mod plan;
pub mod rowcodec;
pub mod scram;
pub mod session;
#[cfg(any(test, feature = "slt"))]
pub mod slt;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
pub mod types;
pub mod vtable;

pub use error::{Error, Result, SqlState};
pub use session::{ExecResult, Prepared, Session, SqlServer, TxnStatus};
/// The parser, for layers above that handle statements (the wire protocol's COPY).
pub use sqlparser;
pub use types::{DataType, Value};
