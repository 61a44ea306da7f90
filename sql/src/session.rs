//! A SQL session: one client connection's state, and the statement loop that runs
//! each statement in a transaction.
//!
//! ```text
//!                BEGIN                         error
//!   Idle ───────────────────▶ Open ───────────────────────▶ Failed
//!    ▲  ◀──────────────────── │  ◀── ROLLBACK TO SAVEPOINT ── │
//!    │      COMMIT/ROLLBACK   │                               │
//!    └────────────────────────┴───────── ROLLBACK/COMMIT ◀────┘
//! ```
//!
//! - Idle: each statement runs in its own implicit transaction, which the session
//!   commits, and restarts (up to [`MAX_IMPLICIT_RETRIES`] times) when it fails
//!   with a serialization failure: clients never see a 40001 from one statement.
//! - Open: statements run in the explicit transaction; an error moves to Failed.
//! - Failed: Postgres' "current transaction is aborted" state, where only ROLLBACK
//!   (or ROLLBACK TO a savepoint) is accepted; COMMIT rolls back.
//!
//! The session reads the catalog in each statement's transaction; see
//! [`crate::catalog`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use cairn_range::settings::{self, Settings};
use cairn_txn::{Db, Txn};
use sqlparser::ast;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::catalog;
use crate::ddl;
use crate::desc_cache::{self, Cached, DescCache};
use crate::error::{Error, Result, SqlState, internal, syntax, unsupported};
use crate::exec::{Deferred, Executor};
use crate::expr::{Expr, Row, SessionInfo};
use crate::opt;
use crate::plan::{Column, Planned, Planner, TableRef, table_key};
use crate::types::{DataType, Value, ts_from_naive};
use crate::vtable::VirtualTable;

/// The user that always exists.
pub const ROOT_USER: &str = "root";

/// Rows per transaction of a COPY outside a transaction block.
pub const COPY_BATCH_ROWS: usize = 1000;

/// What [`Session::execute_in_txn`] runs.
enum Work<'a> {
    Statement(&'a ast::Statement, &'a [Value]),
    Copy {
        table: &'a ast::ObjectName,
        columns: &'a [ast::Ident],
        rows: &'a [Vec<Option<String>>],
    },
}

/// How many times an implicit transaction restarts after a serialization failure.
pub const MAX_IMPLICIT_RETRIES: u32 = 50;

/// How many times a statement of an explicit transaction runs again at a higher
/// timestamp (see [`Session::run_statement_in_txn`]) before the transaction is left to
/// fail its commit.
const MAX_STATEMENT_RESTARTS: u32 = 5;

impl Work<'_> {
    /// A statement that reads and writes rows only in its transaction, so that it can
    /// be undone and run again.
    fn is_data_statement(&self) -> bool {
        matches!(
            self,
            Work::Statement(
                ast::Statement::Query(_)
                    | ast::Statement::Insert(_)
                    | ast::Statement::Update(_)
                    | ast::Statement::Delete(_),
                _
            )
        )
    }
}

/// One range as SHOW RANGES and EXPLAIN describe it.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeRow {
    pub range_id: u64,
    pub start_key: Vec<u8>,
    pub end_key: Vec<u8>,
    /// Node ids of the replicas.
    pub replicas: Vec<u64>,
    pub lease_holder: Option<u64>,
    /// The leaseholder's estimate of the range's size in bytes, once measured.
    pub size_bytes: Option<u64>,
    /// Requests per second at the leaseholder in the last full second.
    pub qps: Option<f64>,
}

/// Where ranges are: implemented by the node, which reads the meta range and asks
/// replicas about their leases.
pub trait RangeInfo: Send + Sync {
    /// The ranges overlapping `[start, end)`, in key order.
    fn ranges<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = std::result::Result<Vec<RangeRow>, String>>
                + Send
                + 'a,
        >,
    >;
}

/// The node-wide state sessions share.
pub struct SqlServer {
    pub db: Db,
    pub node_id: u64,
    next_pid: AtomicI32,
    range_info: std::sync::OnceLock<Arc<dyn RangeInfo>>,
    /// What SHOW CLUSTER SETTING answers for a setting the cluster has not set.
    setting_defaults: std::sync::OnceLock<Settings>,
    /// Database ids and table descriptors of the current catalog version.
    desc_cache: DescCache,
    metrics: Arc<crate::metrics::SqlMetrics>,
}

impl SqlServer {
    pub fn new(db: Db, node_id: u64) -> Arc<SqlServer> {
        SqlServer::with_metrics(db, node_id, crate::metrics::SqlMetrics::new())
    }

    /// A server whose sessions record their statements in `metrics` (the node's, which
    /// exist before the SQL layer serves).
    pub fn with_metrics(
        db: Db,
        node_id: u64,
        metrics: Arc<crate::metrics::SqlMetrics>,
    ) -> Arc<SqlServer> {
        Arc::new(SqlServer {
            db,
            node_id,
            next_pid: AtomicI32::new(1),
            range_info: std::sync::OnceLock::new(),
            setting_defaults: std::sync::OnceLock::new(),
            desc_cache: DescCache::default(),
            metrics,
        })
    }

    pub fn metrics(&self) -> &Arc<crate::metrics::SqlMetrics> {
        &self.metrics
    }

    /// Installs where SHOW RANGES and EXPLAIN find ranges (once).
    pub fn set_range_info(&self, info: Arc<dyn RangeInfo>) {
        let _ = self.range_info.set(info);
    }

    /// Installs the node's defaults of cluster settings (once), for SHOW CLUSTER
    /// SETTING.
    pub fn set_setting_defaults(&self, defaults: Settings) {
        let _ = self.setting_defaults.set(defaults);
    }

    async fn ranges(&self, start: &[u8], end: &[u8]) -> Result<Vec<RangeRow>> {
        match self.range_info.get() {
            Some(info) => info
                .ranges(start, end)
                .await
                .map_err(|e| Error::new(SqlState::RangeUnavailable, e)),
            None => Ok(Vec::new()),
        }
    }

    /// Creates the default databases if the cluster lacks them, and gives root
    /// `root_password` if root has none yet.
    pub async fn bootstrap(&self, root_password: Option<&str>) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut txn = self.db.begin();
            let r = match bootstrap_in(&mut txn, root_password).await {
                Ok(()) => txn.commit().await.map_err(Error::from),
                Err(e) => Err(e),
            };
            match r {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && attempts < MAX_IMPLICIT_RETRIES => {
                    txn.rollback().await;
                }
                Err(e) => {
                    txn.rollback().await;
                    return Err(e);
                }
            }
        }
    }

    /// The SCRAM verifier of `user`, if the user exists and has a password.
    pub async fn user_verifier(&self, user: &str) -> Result<Option<crate::scram::Verifier>> {
        let mut txn = self.db.begin();
        let r = catalog::get_user(&mut txn, user).await;
        txn.rollback().await;
        Ok(r?
            .and_then(|u| u.verifier)
            .and_then(|v| crate::scram::Verifier::decode(&v)))
    }

    pub fn session(self: &Arc<Self>, user: &str, database: &str) -> Session {
        let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
        Session {
            server: self.clone(),
            user: user.to_string(),
            database: database.to_string(),
            state: State::Idle,
            savepoints: Vec::new(),
            settings: default_settings(database),
            backend_pid: pid,
        }
    }
}

/// The transaction status a client sees in ReadyForQuery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// `I`: no transaction.
    Idle,
    /// `T`: in a transaction.
    InTransaction,
    /// `E`: in a failed transaction.
    Failed,
}

enum State {
    Idle,
    Open(Box<Txn>),
    Failed(Box<Txn>),
}

/// The result of one statement.
#[derive(Debug)]
pub enum ExecResult {
    /// Rows, with the command tag (`SELECT 3`, `INSERT 0 2` with RETURNING, ...).
    Rows {
        columns: Vec<Column>,
        rows: Vec<Row>,
        tag: String,
    },
    /// A command without rows, by its tag.
    Command { tag: String },
    /// An empty statement.
    Empty,
}

/// A parsed statement with its parameter and result types (the extended protocol's
/// prepared statement).
#[derive(Clone, Debug)]
pub struct Prepared {
    pub sql: String,
    pub stmt: Option<ast::Statement>,
    pub params: Vec<DataType>,
    pub columns: Vec<Column>,
}

/// One client's session.
pub struct Session {
    server: Arc<SqlServer>,
    user: String,
    database: String,
    state: State,
    savepoints: Vec<(String, cairn_txn::coord::Savepoint)>,
    settings: Vec<(String, String)>,
    backend_pid: i32,
}

fn default_settings(database: &str) -> Vec<(String, String)> {
    [
        ("application_name", ""),
        ("client_encoding", "UTF8"),
        ("datestyle", "ISO, MDY"),
        ("default_transaction_isolation", "serializable"),
        ("transaction_isolation", "serializable"),
        ("extra_float_digits", "1"),
        ("integer_datetimes", "on"),
        ("intervalstyle", "postgres"),
        ("is_superuser", "on"),
        ("search_path", "\"$user\", public"),
        ("server_encoding", "UTF8"),
        ("server_version", crate::expr::SERVER_VERSION),
        ("server_version_num", "150000"),
        ("standard_conforming_strings", "on"),
        ("timezone", "UTC"),
        ("max_identifier_length", "63"),
        ("statement_timeout", "0"),
        ("lock_timeout", "0"),
        ("idle_in_transaction_session_timeout", "0"),
        ("default_transaction_read_only", "off"),
        ("transaction_read_only", "off"),
        ("bytea_output", "hex"),
        ("database", database),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Parses SQL text into statements (Postgres dialect); a syntax error is 42601.
///
/// CockroachDB's `UPSERT INTO t ...` is accepted too: it is parsed as an INSERT
/// whose `replace_into` flag (MySQL's REPLACE, never set by the Postgres dialect)
/// marks it, and planned as INSERT ... ON CONFLICT DO UPDATE of every column.
pub fn parse(sql: &str) -> Result<Vec<ast::Statement>> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let dialect = PostgreSqlDialect {};
    let mut tokens = Tokenizer::new(&dialect, sql)
        .tokenize()
        .map_err(|e| syntax(e.to_string()))?;
    // Statements (by position) that began with UPSERT. CREATE/ALTER/DROP USER
    // become ... ROLE, which the parser reads the Postgres way. The options of VACUUM
    // and ANALYZE (`VACUUM (FULL) t`, `VACUUM ANALYZE t`), which the parser does not
    // know and which mean nothing here, are blanked out; COPY's `FREEZE ON` becomes the
    // parser's `FREEZE TRUE`.
    let mut upserts = Vec::new();
    mark_cluster_settings(&mut tokens);
    let splits = mark_split_at(&mut tokens);
    let mut statement = 0;
    let mut at_start = true;
    let mut after_ddl_verb = false;
    let mut maintenance_options = false;
    let mut option_depth = 0usize;
    let mut after_freeze = false;
    let blank = || Token::Whitespace(sqlparser::tokenizer::Whitespace::Space);
    for t in &mut tokens {
        let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
        if option_depth > 0 {
            match t {
                Token::LParen => option_depth += 1,
                Token::RParen => option_depth -= 1,
                Token::SemiColon => option_depth = 0,
                _ => {}
            }
            if option_depth > 0 || matches!(t, Token::RParen) {
                *t = blank();
                continue;
            }
        }
        match t {
            Token::Whitespace(_) => continue,
            Token::SemiColon => {
                if !at_start {
                    statement += 1;
                }
                at_start = true;
                after_ddl_verb = false;
                maintenance_options = false;
                continue;
            }
            _ if at_start && word(t, "upsert") => {
                *t = Token::make_keyword("INSERT");
                upserts.push(statement);
            }
            _ if after_ddl_verb && word(t, "user") => *t = Token::make_keyword("ROLE"),
            _ if maintenance_options && matches!(t, Token::LParen) => {
                option_depth = 1;
                *t = blank();
                continue;
            }
            _ if maintenance_options
                && ["full", "freeze", "verbose", "analyze", "skip_locked"]
                    .iter()
                    .any(|w| word(t, w)) =>
            {
                *t = blank();
                continue;
            }
            _ if after_freeze && word(t, "on") => *t = Token::make_keyword("TRUE"),
            _ if after_freeze && word(t, "off") => *t = Token::make_keyword("FALSE"),
            _ => {}
        }
        after_ddl_verb = at_start && (word(t, "create") || word(t, "alter") || word(t, "drop"));
        maintenance_options = at_start && (word(t, "vacuum") || word(t, "analyze"));
        after_freeze = !at_start && word(t, "freeze");
        at_start = false;
    }
    let mut stmts = Parser::new(&dialect)
        .with_tokens(tokens)
        .parse_statements()
        .map_err(|e| syntax(e.to_string()))?;
    for i in splits {
        if let Some(ast::Statement::Insert(ins)) = stmts.get_mut(i) {
            ins.ignore = true;
        }
    }
    for i in upserts {
        if let Some(ast::Statement::Insert(ins)) = stmts.get_mut(i) {
            if ins.on.is_some() {
                return Err(syntax("UPSERT cannot have an ON CONFLICT clause"));
            }
            ins.replace_into = true;
        }
    }
    Ok(stmts)
}

/// Finds `ALTER TABLE t SPLIT AT <query>` statements, which the parser does not know,
/// and rewrites each to `INSERT INTO t <query>`; returns their positions. The parsed
/// INSERTs are marked with `ignore` (MySQL's INSERT IGNORE, which the Postgres
/// dialect never sets) and run as splits.
fn mark_split_at(tokens: &mut [sqlparser::tokenizer::Token]) -> Vec<usize> {
    use sqlparser::tokenizer::{Token, Whitespace};
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut found = Vec::new();
    let mut statement = 0;
    let mut start = 0;
    while start < tokens.len() {
        let end = tokens[start..]
            .iter()
            .position(|t| matches!(t, Token::SemiColon))
            .map_or(tokens.len(), |p| start + p);
        let words: Vec<usize> = (start..end)
            .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
            .collect();
        if words.is_empty() {
            start = end + 1;
            continue;
        }
        let at = |n: usize, w: &str| words.get(n).is_some_and(|&i| word(&tokens[i], w));
        if at(0, "alter") && at(1, "table") {
            // The table name: words separated by periods.
            let mut n = 2;
            while words
                .get(n + 1)
                .is_some_and(|&i| matches!(tokens[i], Token::Period))
            {
                n += 2;
            }
            if at(n + 1, "split") && at(n + 2, "at") {
                tokens[words[0]] = Token::make_keyword("INSERT");
                tokens[words[1]] = Token::make_keyword("INTO");
                tokens[words[n + 1]] = Token::Whitespace(Whitespace::Space);
                tokens[words[n + 2]] = Token::Whitespace(Whitespace::Space);
                found.push(statement);
            }
        }
        statement += 1;
        start = end + 1;
    }
    found
}

/// The first part of the name that a rewritten `SET CLUSTER SETTING` assigns (see
/// `mark_cluster_settings`): a quoted identifier no client can send, as Postgres
/// identifiers cannot hold NUL.
const CLUSTER_SETTING_MARKER: &str = "\u{0}cluster setting";

/// Rewrites `SET CLUSTER SETTING name = value` (or `TO value`), which the parser does
/// not know, to `SET <marker>.name = value`, and `RESET CLUSTER SETTING name` to
/// `SET <marker>.name = DEFAULT`.
fn mark_cluster_settings(tokens: &mut Vec<sqlparser::tokenizer::Token>) {
    use sqlparser::tokenizer::{Token, Word};
    let word = |t: &Token, w: &str| matches!(t, Token::Word(x) if x.quote_style.is_none() && x.value.eq_ignore_ascii_case(w));
    let mut start = 0;
    while start < tokens.len() {
        let end = tokens[start..]
            .iter()
            .position(|t| matches!(t, Token::SemiColon))
            .map_or(tokens.len(), |p| start + p);
        let words: Vec<usize> = (start..end)
            .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
            .collect();
        let at = |n: usize, w: &str| words.get(n).is_some_and(|&i| word(&tokens[i], w));
        let reset = at(0, "reset");
        if (at(0, "set") || reset) && at(1, "cluster") && at(2, "setting") {
            tokens[words[0]] = Token::make_keyword("SET");
            tokens[words[1]] = Token::Word(Word {
                value: CLUSTER_SETTING_MARKER.into(),
                quote_style: Some('"'),
                keyword: sqlparser::keywords::Keyword::NoKeyword,
            });
            tokens[words[2]] = Token::Period;
            if reset {
                let tail = [
                    Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
                    Token::Eq,
                    Token::Whitespace(sqlparser::tokenizer::Whitespace::Space),
                    Token::make_keyword("DEFAULT"),
                ];
                tokens.splice(end..end, tail);
                start = end + 5;
                continue;
            }
        }
        start = end + 1;
    }
}

/// The setting a `SET` of a cluster setting names, and the values it assigns.
fn cluster_setting_target(set: &ast::Set) -> Option<(String, &[ast::Expr])> {
    let ast::Set::SingleAssignment {
        variable, values, ..
    } = set
    else {
        return None;
    };
    let (first, rest) = variable.0.split_first()?;
    match first {
        ast::ObjectNamePart::Identifier(i) if i.value == CLUSTER_SETTING_MARKER => {}
        _ => return None,
    }
    let name = setting_name(&ast::ObjectName(rest.to_vec()));
    Some((name, values.as_slice()))
}

/// The setting named in SQL, or 42704.
fn must_get_setting(name: &str) -> Result<&'static settings::Setting> {
    settings::lookup(name).ok_or_else(|| {
        Error::new(
            SqlState::UndefinedObject,
            format!("unrecognized cluster setting \"{name}\""),
        )
    })
}

fn show_cluster_settings_columns() -> Vec<Column> {
    vec![
        Column::new("variable", DataType::Text),
        Column::new("value", DataType::Text),
        Column::new("default", DataType::Text),
        Column::new("description", DataType::Text),
    ]
}

/// Binds a column DEFAULT expression (stored as SQL text) to an expression over no
/// row, cast to the column type.
pub fn bind_default(text: &str, ty: DataType) -> Result<Expr> {
    let e = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(text)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| syntax(e.to_string()))?;
    let tables = HashMap::new();
    let mut planner = Planner::new(&tables, Vec::new());
    let (x, _) = planner.bind_scalar(&e, &Default::default())?;
    if !planner.subplans.is_empty() {
        return Err(unsupported("subqueries in DEFAULT"));
    }
    Ok(Expr::Cast(Box::new(x), ty))
}

async fn bootstrap_in(txn: &mut Txn, root_password: Option<&str>) -> Result<()> {
    catalog::bootstrap(txn).await?;
    if let Some(password) = root_password {
        let has_password = catalog::get_user(txn, ROOT_USER)
            .await?
            .is_some_and(|u| u.verifier.is_some());
        if !has_password {
            let user = catalog::UserRecord {
                name: ROOT_USER.into(),
                verifier: Some(crate::scram::Verifier::new(password).encode()),
            };
            catalog::put_user(txn, &user).await?;
        }
    }
    Ok(())
}

/// The tables a statement names, read from the catalog in `txn`.
async fn resolve_tables(
    txn: &mut Txn,
    cached: Cached<'_>,
    db_id: u64,
    stmt: &ast::Statement,
) -> Result<HashMap<String, TableRef>> {
    let mut names = Vec::new();
    let _ = ast::visit_relations(stmt, |n| {
        names.push(n.clone());
        std::ops::ControlFlow::<()>::Continue(())
    });
    let mut out = HashMap::new();
    for n in names {
        let key = table_key(&n)?;
        if out.contains_key(&key) {
            continue;
        }
        if let Some(v) = VirtualTable::by_name(&key) {
            out.insert(key, TableRef::Virtual(v));
        } else if key.contains('.') {
            // Another catalog schema: unknown.
            continue;
        } else if let Some(t) = desc_cache::table(txn, cached, db_id, &key).await? {
            out.insert(key, TableRef::Table(t));
        }
    }
    Ok(out)
}

/// Plans a statement that reads or writes rows.
fn plan_statement(
    stmt: &ast::Statement,
    tables: &HashMap<String, TableRef>,
    params: Vec<Option<DataType>>,
) -> Result<(Planned, Vec<crate::plan::SubPlan>, Vec<Option<DataType>>)> {
    let mut planner = Planner::new(tables, params);
    let planned = match stmt {
        ast::Statement::Query(q) => {
            let (plan, columns) = planner.plan_query(q)?;
            let columns = columns.into_iter().filter(|c| !c.hidden).collect();
            Planned::Query { plan, columns }
        }
        ast::Statement::Insert(i) => planner.plan_insert(i)?,
        ast::Statement::Update(u) => planner.plan_update(u)?,
        ast::Statement::Delete(d) => planner.plan_delete(d)?,
        _ => return Err(crate::error::internal("not a data statement")),
    };
    let planned = match planned {
        Planned::Query { plan, columns } => Planned::Query {
            plan: opt::optimize(plan),
            columns,
        },
        Planned::Insert {
            table,
            targets,
            source,
            on_conflict,
            returning,
        } => Planned::Insert {
            table,
            targets,
            source: opt::optimize(source),
            on_conflict,
            returning,
        },
        Planned::Update {
            table,
            scan,
            sets,
            returning,
        } => Planned::Update {
            table,
            scan: opt::optimize(scan),
            sets,
            returning,
        },
        Planned::Delete {
            table,
            scan,
            returning,
        } => Planned::Delete {
            table,
            scan: opt::optimize(scan),
            returning,
        },
    };
    let subplans = opt::optimize_subplans(std::mem::take(&mut planner.subplans));
    Ok((planned, subplans, planner.params))
}

fn is_data_statement(stmt: &ast::Statement) -> bool {
    match stmt {
        ast::Statement::Insert(ins) => !ins.ignore,
        ast::Statement::Query(_) | ast::Statement::Update(_) | ast::Statement::Delete(_) => true,
        _ => false,
    }
}

/// The result columns of ALTER TABLE ... SPLIT AT.
fn split_columns() -> Vec<Column> {
    vec![
        Column::new("key", DataType::Text),
        Column::new("range_id", DataType::Int8),
    ]
}

fn ident_lower(i: &ast::Ident) -> String {
    if i.quote_style.is_some() {
        i.value.clone()
    } else {
        i.value.to_lowercase()
    }
}

fn setting_name(n: &ast::ObjectName) -> String {
    n.0.iter()
        .map(|p| match p {
            ast::ObjectNamePart::Identifier(i) => ident_lower(i),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn setting_value(e: &ast::Expr) -> String {
    match e {
        ast::Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.clone(),
            ast::Value::Boolean(b) => if *b { "on" } else { "off" }.into(),
            other => other.to_string(),
        },
        ast::Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

fn isolation_ok(modes: &[ast::TransactionMode]) -> Result<()> {
    for m in modes {
        if let ast::TransactionMode::AccessMode(ast::TransactionAccessMode::ReadOnly) = m {
            // Read-only transactions are accepted; they simply do not write.
        }
    }
    Ok(())
}

impl Session {
    pub fn status(&self) -> TxnStatus {
        match self.state {
            State::Idle => TxnStatus::Idle,
            State::Open(_) => TxnStatus::InTransaction,
            State::Failed(_) => TxnStatus::Failed,
        }
    }

    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The value of a session setting, as SHOW prints it.
    pub fn setting(&self, name: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn info(&self, txn: &Txn) -> SessionInfo {
        let wall = txn.read_ts().wall as i64;
        let unix_micros = wall / 1000;
        let now = chrono::DateTime::from_timestamp_micros(unix_micros)
            .map(|t| ts_from_naive(t.naive_utc()))
            .unwrap_or(0);
        SessionInfo {
            database: self.database.clone(),
            user: self.user.clone(),
            now,
            settings: self.settings.clone(),
            backend_pid: self.backend_pid,
            node_id: self.server.node_id,
            index_defs: HashMap::new(),
        }
    }

    /// Runs the statements of a simple-protocol query string, stopping at the first
    /// error (which is the last result).
    pub async fn simple_query(&mut self, sql: &str) -> Vec<Result<ExecResult>> {
        let stmts = match parse(sql) {
            Ok(s) => s,
            Err(e) => {
                // A syntax error inside a transaction block fails the block.
                self.fail_txn();
                return vec![Err(e)];
            }
        };
        if stmts.is_empty() {
            return vec![Ok(ExecResult::Empty)];
        }
        let implicit = self.begin_implicit_block(&stmts);
        let mut out = Vec::with_capacity(stmts.len());
        for stmt in &stmts {
            let r = self.execute(stmt, &[]).await;
            let failed = r.is_err();
            out.push(r);
            if failed {
                break;
            }
        }
        if implicit {
            let ok = out.iter().all(Result::is_ok);
            if let Err(e) = self.end_implicit_block(ok).await {
                out.push(Err(e));
            }
        }
        out
    }

    /// Several statements in one simple-protocol query run in one transaction, as in
    /// Postgres, unless they manage transactions themselves. Returns whether a block
    /// was opened; [`Session::end_implicit_block`] closes it.
    pub fn begin_implicit_block(&mut self, stmts: &[ast::Statement]) -> bool {
        let controls_txn = stmts.iter().any(|s| {
            matches!(
                s,
                ast::Statement::StartTransaction { .. }
                    | ast::Statement::Commit { .. }
                    | ast::Statement::Rollback { .. }
                    | ast::Statement::Savepoint { .. }
                    | ast::Statement::ReleaseSavepoint { .. }
            )
        });
        if stmts.len() < 2 || controls_txn || !matches!(self.state, State::Idle) {
            return false;
        }
        self.state = State::Open(Box::new(self.server.db.begin()));
        true
    }

    /// Commits the implicit block if every statement succeeded, else rolls it back.
    pub async fn end_implicit_block(&mut self, ok: bool) -> Result<()> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Open(mut txn) if ok => txn.commit().await.map_err(Error::from),
            State::Open(mut txn) | State::Failed(mut txn) => {
                txn.rollback().await;
                Ok(())
            }
            State::Idle => Ok(()),
        }
    }

    /// A statement that did not parse fails an open transaction, as in Postgres.
    pub fn syntax_error(&mut self) {
        self.fail_txn();
    }

    /// The connection went away: an open transaction is rolled back.
    pub async fn close(&mut self) {
        if let State::Open(mut txn) | State::Failed(mut txn) =
            std::mem::replace(&mut self.state, State::Idle)
        {
            txn.rollback().await;
        }
    }

    /// A statement was cancelled while it ran (its future was dropped). An explicit
    /// transaction it ran in is now failed; an implicit one was abandoned, and its
    /// record expires.
    pub fn cancelled(&mut self, was_in_txn: bool) {
        if was_in_txn {
            let txn = match std::mem::replace(&mut self.state, State::Idle) {
                State::Open(t) | State::Failed(t) => t,
                State::Idle => Box::new(self.server.db.begin()),
            };
            self.state = State::Failed(txn);
        }
    }

    /// Sets a session parameter the client sent in its startup message.
    pub fn set_startup_parameter(&mut self, name: &str, value: &str) {
        let _ = self.set_variable(name, value.to_string());
    }

    /// Fails with 3D000 when the session's database does not exist.
    pub async fn check_database(&mut self) -> Result<()> {
        let database = self.database.clone();
        let mut txn = self.server.db.begin();
        let r = database_id(&mut txn, None, &database).await;
        txn.rollback().await;
        r.map(|_| ())
    }

    /// The number of columns a COPY into `table` (with `columns`, or all) takes.
    pub async fn copy_columns(
        &mut self,
        table: &ast::ObjectName,
        columns: &[ast::Ident],
    ) -> Result<usize> {
        let (_, name) = crate::plan::object_name(table)?;
        let n = columns.len();
        self.with_read_txn(|txn, db_id| {
            Box::pin(async move {
                let t = catalog::must_get_table(txn, db_id, &name).await?;
                Ok(if n == 0 {
                    t.columns.iter().filter(|c| !c.hidden).count()
                } else {
                    n
                })
            })
        })
        .await
    }

    /// Inserts rows given as text fields (COPY FROM), in batches of
    /// [`COPY_BATCH_ROWS`]; outside a transaction block each batch commits alone.
    pub async fn copy_from(
        &mut self,
        table: &ast::ObjectName,
        columns: &[ast::Ident],
        rows: Vec<Vec<Option<String>>>,
    ) -> Result<u64> {
        let mut total = 0;
        for chunk in rows.chunks(COPY_BATCH_ROWS) {
            let work = Work::Copy {
                table,
                columns,
                rows: chunk,
            };
            total += self.execute_in_txn(&work).await?.1;
        }
        Ok(total)
    }

    fn fail_txn(&mut self) {
        if let State::Open(txn) = std::mem::replace(&mut self.state, State::Idle) {
            self.state = State::Failed(txn);
        }
    }

    /// Parses and describes a statement for the extended protocol: its parameter
    /// types (given ones kept, the rest inferred) and result columns.
    pub async fn prepare(
        &mut self,
        sql: &str,
        param_hints: &[Option<DataType>],
    ) -> Result<Prepared> {
        let mut stmts = parse(sql)?;
        if stmts.len() > 1 {
            return Err(syntax(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(stmt) = stmts.pop() else {
            return Ok(Prepared {
                sql: sql.to_string(),
                stmt: None,
                params: Vec::new(),
                columns: Vec::new(),
            });
        };
        let (params, columns) =
            if is_data_statement(&stmt) || matches!(stmt, ast::Statement::Explain { .. }) {
                let inner = match &stmt {
                    ast::Statement::Explain { statement, .. } => statement.as_ref().clone(),
                    s => s.clone(),
                };
                let hints = param_hints.to_vec();
                let described = self
                    .with_read_txn(|txn, db_id| {
                        Box::pin(async move {
                            let tables = resolve_tables(txn, None, db_id, &inner).await?;
                            let (planned, _, params) = plan_statement(&inner, &tables, hints)?;
                            Ok((params, planned.columns()))
                        })
                    })
                    .await?;
                let columns = if matches!(stmt, ast::Statement::Explain { .. }) {
                    vec![Column::new("info", DataType::Text)]
                } else {
                    described.1
                };
                (described.0, columns)
            } else {
                (param_hints.to_vec(), self.describe_utility(&stmt))
            };
        let params = params
            .into_iter()
            .map(|p| match p {
                Some(DataType::Unknown) | None => DataType::Text,
                Some(t) => t,
            })
            .collect();
        Ok(Prepared {
            sql: sql.to_string(),
            stmt: Some(stmt),
            params,
            columns,
        })
    }

    /// The result columns of a statement that is not planned (SHOW).
    fn describe_utility(&self, stmt: &ast::Statement) -> Vec<Column> {
        match stmt {
            ast::Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(ident_lower)
                    .collect::<Vec<_>>()
                    .join(" ");
                if name.starts_with("ranges from table") {
                    return show_ranges_columns();
                }
                if name == "cluster settings" || name == "all cluster settings" {
                    return show_cluster_settings_columns();
                }
                if let Some(setting) = name.strip_prefix("cluster setting ") {
                    return vec![Column::new(setting.replace(' ', "."), DataType::Text)];
                }
                vec![Column::new(show_column_name(&name), DataType::Text)]
            }
            ast::Statement::Insert(ins) if ins.ignore => split_columns(),
            _ => Vec::new(),
        }
    }

    /// Runs `f` in the open transaction, or in a new one that is rolled back.
    async fn with_read_txn<T>(
        &mut self,
        f: impl for<'t> FnOnce(
            &'t mut Txn,
            u64,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T>> + Send + 't>,
        >,
    ) -> Result<T> {
        let database = self.database.clone();
        match &mut self.state {
            State::Open(txn) | State::Failed(txn) => {
                let db_id = database_id(txn, None, &database).await?;
                f(txn, db_id).await
            }
            State::Idle => {
                let mut txn = self.server.db.begin();
                let r = async {
                    let db_id = database_id(&mut txn, None, &self.database).await?;
                    f(&mut txn, db_id).await
                }
                .await;
                txn.rollback().await;
                r
            }
        }
    }

    /// Executes one statement with parameter values.
    pub async fn execute(&mut self, stmt: &ast::Statement, params: &[Value]) -> Result<ExecResult> {
        let started = std::time::Instant::now();
        let result = self.execute_statement(stmt, params).await;
        self.server
            .metrics
            .observe(crate::metrics::kind(stmt), started.elapsed().as_secs_f64());
        result
    }

    async fn execute_statement(
        &mut self,
        stmt: &ast::Statement,
        params: &[Value],
    ) -> Result<ExecResult> {
        use ast::Statement as S;
        // In a failed transaction only its end is accepted.
        if matches!(self.state, State::Failed(_))
            && !matches!(stmt, S::Rollback { .. } | S::Commit { .. })
        {
            return Err(Error::new(
                SqlState::InFailedSqlTransaction,
                "current transaction is aborted, commands ignored until end of transaction block",
            ));
        }
        match stmt {
            S::StartTransaction { modes, .. } => {
                isolation_ok(modes)?;
                if matches!(self.state, State::Idle) {
                    self.state = State::Open(Box::new(self.server.db.begin()));
                    self.savepoints.clear();
                }
                // Postgres warns and carries on when a transaction is already open.
                Ok(ExecResult::Command {
                    tag: "BEGIN".into(),
                })
            }
            S::Commit { .. } => match std::mem::replace(&mut self.state, State::Idle) {
                State::Idle => Ok(ExecResult::Command {
                    tag: "COMMIT".into(),
                }),
                State::Open(mut txn) => {
                    self.savepoints.clear();
                    txn.commit().await?;
                    Ok(ExecResult::Command {
                        tag: "COMMIT".into(),
                    })
                }
                State::Failed(mut txn) => {
                    self.savepoints.clear();
                    txn.rollback().await;
                    Ok(ExecResult::Command {
                        tag: "ROLLBACK".into(),
                    })
                }
            },
            S::Rollback {
                savepoint: None, ..
            } => {
                if let State::Open(mut txn) | State::Failed(mut txn) =
                    std::mem::replace(&mut self.state, State::Idle)
                {
                    txn.rollback().await;
                }
                self.savepoints.clear();
                Ok(ExecResult::Command {
                    tag: "ROLLBACK".into(),
                })
            }
            S::Rollback {
                savepoint: Some(name),
                ..
            } => {
                let name = ident_lower(name);
                let Some(pos) = self.savepoints.iter().rposition(|(n, _)| *n == name) else {
                    if matches!(self.state, State::Idle) {
                        return Err(no_txn("ROLLBACK TO SAVEPOINT"));
                    }
                    self.fail_txn();
                    return Err(Error::new(
                        SqlState::InvalidSavepointSpecification,
                        format!("savepoint \"{name}\" does not exist"),
                    ));
                };
                let sp = self.savepoints[pos].1;
                self.savepoints.truncate(pos + 1);
                match std::mem::replace(&mut self.state, State::Idle) {
                    State::Open(mut txn) | State::Failed(mut txn) => {
                        match txn.rollback_to_savepoint(sp) {
                            Ok(()) => {
                                self.state = State::Open(txn);
                                Ok(ExecResult::Command {
                                    tag: "ROLLBACK".into(),
                                })
                            }
                            Err(e) => {
                                self.state = State::Failed(txn);
                                Err(e.into())
                            }
                        }
                    }
                    State::Idle => Err(no_txn("ROLLBACK TO SAVEPOINT")),
                }
            }
            S::Savepoint { name } => match &self.state {
                State::Open(txn) => {
                    let sp = txn.savepoint();
                    self.savepoints.push((ident_lower(name), sp));
                    Ok(ExecResult::Command {
                        tag: "SAVEPOINT".into(),
                    })
                }
                _ => Err(no_txn("SAVEPOINT")),
            },
            S::ReleaseSavepoint { name } => {
                let name = ident_lower(name);
                if matches!(self.state, State::Idle) {
                    return Err(no_txn("RELEASE SAVEPOINT"));
                }
                match self.savepoints.iter().rposition(|(n, _)| *n == name) {
                    Some(pos) => {
                        self.savepoints.truncate(pos);
                        Ok(ExecResult::Command {
                            tag: "RELEASE".into(),
                        })
                    }
                    None => {
                        self.fail_txn();
                        Err(Error::new(
                            SqlState::InvalidSavepointSpecification,
                            format!("savepoint \"{name}\" does not exist"),
                        ))
                    }
                }
            }
            S::Set(set) if cluster_setting_target(set).is_none() => self.set(set),
            S::ShowVariable { variable }
                if !variable.iter().take(2).any(|w| {
                    w.value.eq_ignore_ascii_case("ranges")
                        || w.value.eq_ignore_ascii_case("cluster")
                }) =>
            {
                let name = variable
                    .iter()
                    .map(ident_lower)
                    .collect::<Vec<_>>()
                    .join(" ");
                let value = self.show(&name)?;
                Ok(ExecResult::Rows {
                    columns: vec![Column::new(show_column_name(&name), DataType::Text)],
                    rows: vec![vec![Value::Text(value)]],
                    tag: "SHOW".into(),
                })
            }
            S::Discard { .. } => Ok(ExecResult::Command {
                tag: "DISCARD ALL".into(),
            }),
            _ => Ok(self.execute_in_txn(&Work::Statement(stmt, params)).await?.0),
        }
    }

    fn set(&mut self, set: &ast::Set) -> Result<ExecResult> {
        match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = setting_name(variable);
                let value = values
                    .iter()
                    .map(setting_value)
                    .collect::<Vec<_>>()
                    .join(", ");
                self.set_variable(&name, value)?;
            }
            ast::Set::SetTimeZone { value, .. } => {
                self.set_variable("timezone", setting_value(value))?;
            }
            ast::Set::SetTransaction { modes, .. } => isolation_ok(modes)?,
            ast::Set::SetNames { charset_name, .. } => {
                self.set_variable("client_encoding", charset_name.value.clone())?;
            }
            ast::Set::SetRole { .. } | ast::Set::SetSessionAuthorization(_) => {}
            _ => return Err(unsupported(format!("{set}"))),
        }
        Ok(ExecResult::Command { tag: "SET".into() })
    }

    fn set_variable(&mut self, name: &str, value: String) -> Result<()> {
        let name = match name {
            "transaction_isolation" | "default_transaction_isolation" => {
                // Every transaction is SERIALIZABLE; weaker levels are upgraded, as
                // in CockroachDB.
                return Ok(());
            }
            "time zone" => "timezone",
            n => n,
        };
        let value = match name {
            "client_encoding"
                if !value.eq_ignore_ascii_case("utf8")
                    && !value.eq_ignore_ascii_case("unicode") =>
            {
                return Err(Error::new(
                    SqlState::FeatureNotSupported,
                    format!("unsupported client encoding \"{value}\""),
                ));
            }
            "client_encoding" => "UTF8".to_string(),
            _ => value,
        };
        match self.settings.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.settings.push((name.to_string(), value)),
        }
        Ok(())
    }

    fn show(&self, name: &str) -> Result<String> {
        let key = match name {
            "transaction isolation level" => "transaction_isolation",
            "time zone" => "timezone",
            n => n,
        };
        self.setting(key).map(str::to_string).ok_or_else(|| {
            Error::new(
                SqlState::UndefinedObject,
                format!("unrecognized configuration parameter \"{name}\""),
            )
        })
    }

    /// Runs work in the open transaction or an implicit one.
    async fn execute_in_txn(&mut self, work: &Work<'_>) -> Result<(ExecResult, u64)> {
        match std::mem::replace(&mut self.state, State::Idle) {
            State::Open(mut txn) => {
                let r = self.run_work(&mut txn, work, None).await;
                self.state = if r.is_ok() {
                    State::Open(txn)
                } else {
                    State::Failed(txn)
                };
                r
            }
            State::Failed(txn) => {
                self.state = State::Failed(txn);
                Err(Error::new(
                    SqlState::InFailedSqlTransaction,
                    "current transaction is aborted, commands ignored until end of transaction block",
                ))
            }
            State::Idle => {
                let mut txn = self.server.db.begin();
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    // The statement's last writes go out with the commit.
                    let mut deferred = Deferred::default();
                    let r = match self.run_work(&mut txn, work, Some(&mut deferred)).await {
                        Ok(v) => {
                            let requests = std::mem::take(&mut deferred.requests);
                            txn.commit_with(requests)
                                .await
                                .map(|_| v)
                                .map_err(|e| deferred.error(e))
                        }
                        Err(e) => Err(e),
                    };
                    match r {
                        Ok(v) => return Ok(v),
                        Err(e) if e.is_retryable() && attempt < MAX_IMPLICIT_RETRIES => {
                            tracing::debug!(attempt, error = %e, "restarting implicit transaction");
                            txn.restart().await;
                        }
                        Err(e) => {
                            txn.rollback().await;
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    /// Runs work in an explicit transaction. When a data statement's writes were pushed
    /// above the transaction's read timestamp (a newer version, or a read by someone
    /// else), its own reads are checked at the new timestamp. If they no longer hold (a
    /// row it read was written by someone else before it wrote the row back: the lost
    /// update an UPDATE's read and write race against), and the reads before it still
    /// do, the statement is undone and runs again at the new timestamp, rather than the
    /// commit failing with 40001.
    #[allow(
        dead_code,
        reason = "switched off until the lost-money failure under jepsen_pause is explained"
    )]
    async fn run_statement_in_txn(
        &self,
        txn: &mut Txn,
        work: &Work<'_>,
    ) -> Result<(ExecResult, u64)> {
        if !work.is_data_statement() {
            return self.run_work(txn, work, None).await;
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            let start = txn.statement_start();
            let pushed_before = txn.write_ts();
            let r = self.run_work(txn, work, None).await?;
            if txn.write_ts() == pushed_before || txn.statement_reads_hold(start).await? {
                return Ok(r);
            }
            if attempt >= MAX_STATEMENT_RESTARTS || !txn.restart_statement(start).await? {
                // An earlier read no longer holds: the commit will fail, as it must.
                return Ok(r);
            }
            tracing::debug!(
                attempt,
                "statement runs again at its transaction's new timestamp"
            );
        }
    }

    /// Runs work in `txn`; with `deferred`, a data statement's last writes are left
    /// there for the commit.
    async fn run_work(
        &self,
        txn: &mut Txn,
        work: &Work<'_>,
        deferred: Option<&mut Deferred>,
    ) -> Result<(ExecResult, u64)> {
        match work {
            Work::Statement(stmt, params) => {
                let r = self.run(txn, stmt, params, deferred).await?;
                Ok((r, 0))
            }
            Work::Copy {
                table,
                columns,
                rows,
            } => {
                let cached = self.server.desc_cache.version(txn).await?;
                let db_id = database_id(txn, cached, &self.database).await?;
                let (_, name) = crate::plan::object_name(table)?;
                let t = desc_cache::table(txn, cached, db_id, &name)
                    .await?
                    .ok_or_else(|| {
                        Error::new(
                            SqlState::UndefinedTable,
                            format!("relation \"{name}\" does not exist"),
                        )
                    })?;
                let targets: Vec<usize> = if columns.is_empty() {
                    (0..t.columns.len())
                        .filter(|&i| !t.columns[i].hidden)
                        .collect()
                } else {
                    columns
                        .iter()
                        .map(|c| {
                            let n = ident_lower(c);
                            t.column(&n).map(|(i, _)| i).ok_or_else(|| {
                                Error::new(
                                    SqlState::UndefinedColumn,
                                    format!("column \"{n}\" of relation \"{name}\" does not exist"),
                                )
                            })
                        })
                        .collect::<Result<_>>()?
                };
                let mut values = Vec::with_capacity(rows.len());
                for (line, row) in rows.iter().enumerate() {
                    if row.len() != targets.len() {
                        return Err(Error::new(
                            SqlState::BadCopyFileFormat,
                            format!(
                                "COPY {name}, line {}: expected {} columns, got {}",
                                line + 1,
                                targets.len(),
                                row.len()
                            ),
                        ));
                    }
                    let mut out = Vec::with_capacity(row.len());
                    for (field, &pos) in row.iter().zip(&targets) {
                        out.push(Expr::Const(match field {
                            None => Value::Null,
                            Some(s) => Value::parse(t.columns[pos].ty, s)?,
                        }));
                    }
                    values.push(out);
                }
                let planned = Planned::Insert {
                    table: t,
                    targets,
                    source: crate::plan::Plan::Values { rows: values },
                    on_conflict: crate::plan::OnConflict::Error,
                    returning: None,
                };
                let info = self.info(txn);
                let mut exec = Executor::new(txn, &[], &info, &[], db_id);
                let outcome = exec.execute(&planned).await?;
                Ok((
                    ExecResult::Command {
                        tag: format!("COPY {}", outcome.affected),
                    },
                    outcome.affected,
                ))
            }
        }
    }

    /// Runs one statement in `txn`.
    async fn run(
        &self,
        txn: &mut Txn,
        stmt: &ast::Statement,
        params: &[Value],
        deferred: Option<&mut Deferred>,
    ) -> Result<ExecResult> {
        use ast::Statement as S;
        // CREATE/DROP DATABASE need no current database.
        match stmt {
            S::CreateDatabase {
                db_name,
                if_not_exists,
                ..
            } => {
                let (_, name) = crate::plan::object_name(db_name)?;
                if *if_not_exists && catalog::get_database(txn, &name).await?.is_some() {
                    return Ok(ExecResult::Command {
                        tag: "CREATE DATABASE".into(),
                    });
                }
                catalog::create_database(txn, &name).await?;
                return Ok(ExecResult::Command {
                    tag: "CREATE DATABASE".into(),
                });
            }
            S::Drop {
                object_type: ast::ObjectType::Database,
                names,
                if_exists,
                ..
            } => {
                for n in names {
                    if crate::plan::object_name(n)?.1 == self.database {
                        return Err(Error::new(
                            SqlState::ObjectInUse,
                            "cannot drop the currently open database",
                        ));
                    }
                }
                let tag = ddl::drop(txn, 0, &ast::ObjectType::Database, names, *if_exists).await?;
                return Ok(ExecResult::Command { tag: tag.into() });
            }
            _ => {}
        }
        if let Some(tag) = self.run_user_statement(txn, stmt).await? {
            return Ok(ExecResult::Command { tag: tag.into() });
        }
        // Data statements take their descriptors from the node's cache when the
        // catalog has not changed (one read of its version instead of four).
        let cached = if is_data_statement(stmt) {
            self.server.desc_cache.version(txn).await?
        } else {
            None
        };
        let db_id = database_id(txn, cached, &self.database).await?;
        match stmt {
            S::Insert(ins) if ins.ignore => self.split_at(txn, db_id, ins, params).await,
            S::Query(_) | S::Insert(_) | S::Update(_) | S::Delete(_) => {
                let tables = resolve_tables(txn, cached, db_id, stmt).await?;
                let hints = params.iter().map(|_| None).collect();
                let (planned, subplans, _) = plan_statement(stmt, &tables, hints)?;
                let mut info = self.info(txn);
                if tables.values().any(|t| matches!(t, TableRef::Virtual(_))) {
                    info.index_defs = index_definitions(txn, db_id).await?;
                }
                let mut exec = Executor::new(txn, params, &info, &subplans, db_id);
                if deferred.is_some() {
                    exec.defer_final_writes();
                }
                let outcome = exec.execute(&planned).await?;
                if let Some(d) = deferred {
                    *d = exec.take_deferred();
                }
                let columns = planned.columns();
                let tag = match (&planned, stmt) {
                    (Planned::Query { .. }, _) => format!("SELECT {}", outcome.rows.len()),
                    (Planned::Insert { .. }, _) => format!("INSERT 0 {}", outcome.affected),
                    (Planned::Update { .. }, _) => format!("UPDATE {}", outcome.affected),
                    (Planned::Delete { .. }, _) => format!("DELETE {}", outcome.affected),
                };
                if matches!(planned, Planned::Query { .. }) || !columns.is_empty() {
                    Ok(ExecResult::Rows {
                        columns,
                        rows: outcome.rows,
                        tag,
                    })
                } else {
                    Ok(ExecResult::Command { tag })
                }
            }
            S::CreateTable(ct) => {
                if let Some(id) = ddl::create_table(txn, db_id, ct).await? {
                    // Each table starts on its own range. The split is not part of the
                    // transaction: if it rolls back, an empty range is left, which is
                    // harmless. A split that fails leaves the table sharing a range,
                    // which is only slower.
                    let prefix = cairn_kv::keys::table_prefix(id);
                    if let Err(e) = self.server.db.split_at(&prefix).await {
                        tracing::warn!(table = id, error = %e, "could not give a new table its own range");
                    }
                }
                Ok(ExecResult::Command {
                    tag: "CREATE TABLE".into(),
                })
            }
            S::CreateIndex(ci) => {
                ddl::create_index(txn, db_id, ci).await?;
                Ok(ExecResult::Command {
                    tag: "CREATE INDEX".into(),
                })
            }
            S::Drop {
                object_type,
                names,
                if_exists,
                ..
            } => {
                let tag = ddl::drop(txn, db_id, object_type, names, *if_exists).await?;
                Ok(ExecResult::Command { tag: tag.into() })
            }
            S::Truncate(t) => {
                ddl::truncate(txn, db_id, t).await?;
                Ok(ExecResult::Command {
                    tag: "TRUNCATE TABLE".into(),
                })
            }
            S::AlterTable(at) => {
                ddl::alter_table(txn, db_id, &at.name, &at.operations).await?;
                Ok(ExecResult::Command {
                    tag: "ALTER TABLE".into(),
                })
            }
            S::Set(set) => {
                let Some((name, values)) = cluster_setting_target(set) else {
                    return Err(internal(
                        "SET of a session variable inside a transaction's work",
                    ));
                };
                let setting = must_get_setting(&name)?;
                let key = cairn_kv::keys::setting_key(setting.name);
                match values {
                    [v] if setting_value(v).eq_ignore_ascii_case("default") => {
                        txn.delete(&key).await?;
                    }
                    [v] => {
                        let n = settings::parse(setting, &setting_value(v))
                            .map_err(|e| Error::new(SqlState::InvalidParameterValue, e))?;
                        txn.put(&key, n.to_string().as_bytes()).await?;
                    }
                    _ => {
                        return Err(syntax(format!(
                            "SET CLUSTER SETTING {name} takes one value"
                        )));
                    }
                }
                Ok(ExecResult::Command {
                    tag: "SET CLUSTER SETTING".into(),
                })
            }
            S::ShowVariable { variable }
                if variable
                    .iter()
                    .take(2)
                    .any(|w| w.value.eq_ignore_ascii_case("cluster")) =>
            {
                let words: Vec<String> = variable.iter().map(ident_lower).collect();
                let wanted: Vec<&settings::Setting> = match words.as_slice() {
                    [c, s] | [_, c, s] if c == "cluster" && s == "settings" => {
                        settings::ALL.iter().collect()
                    }
                    [c, s, name @ ..] if c == "cluster" && s == "setting" && !name.is_empty() => {
                        vec![must_get_setting(&name.join("."))?]
                    }
                    _ => return Err(unsupported(format!("SHOW {}", words.join(" ")))),
                };
                let span = cairn_kv::keys::setting_span();
                let mut current = self
                    .server
                    .setting_defaults
                    .get()
                    .cloned()
                    .unwrap_or_default();
                current.set_stored_kvs(txn.scan(&span.start, &span.end, 0).await?);
                let rows: Vec<_> = wanted
                    .iter()
                    .map(|s| (s, current.get(s.name), current.default_of(s.name)))
                    .collect();
                if let [(setting, value, _)] = rows.as_slice()
                    && words.get(1).is_some_and(|w| w == "setting")
                {
                    return Ok(ExecResult::Rows {
                        columns: vec![Column::new(setting.name, DataType::Text)],
                        rows: vec![vec![Value::Text(value.to_string())]],
                        tag: "SHOW".into(),
                    });
                }
                Ok(ExecResult::Rows {
                    columns: show_cluster_settings_columns(),
                    rows: rows
                        .into_iter()
                        .map(|(s, v, d)| {
                            vec![
                                Value::Text(s.name.into()),
                                Value::Text(v.to_string()),
                                Value::Text(d.to_string()),
                                Value::Text(s.description.into()),
                            ]
                        })
                        .collect(),
                    tag: "SHOW".into(),
                })
            }
            S::ShowVariable { variable } => {
                // SHOW RANGES FROM TABLE t (the other SHOWs need no transaction).
                let words: Vec<String> = variable.iter().map(ident_lower).collect();
                let [w0, w1, w2, name] = words.as_slice() else {
                    return Err(unsupported(format!("SHOW {}", words.join(" "))));
                };
                if (w0.as_str(), w1.as_str(), w2.as_str()) != ("ranges", "from", "table") {
                    return Err(unsupported(format!("SHOW {}", words.join(" "))));
                }
                let table = catalog::must_get_table(txn, db_id, name).await?;
                let start = cairn_kv::keys::table_prefix(table.id);
                let end = cairn_kv::keys::prefix_end(&start);
                let rows = self
                    .server
                    .ranges(&start, &end)
                    .await?
                    .into_iter()
                    .map(|r| {
                        let s = r.start_key.clone().max(start.clone());
                        let e = r.end_key.clone().min(end.clone());
                        vec![
                            Value::Int(r.range_id as i64),
                            Value::Text(cairn_kv::keys::pretty(&s)),
                            Value::Text(cairn_kv::keys::pretty(&e)),
                            Value::Text(format!(
                                "{{{}}}",
                                r.replicas
                                    .iter()
                                    .map(u64::to_string)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            )),
                            r.lease_holder
                                .map(|n| Value::Int(n as i64))
                                .unwrap_or(Value::Null),
                            r.size_bytes
                                .map(|b| Value::Int(i64::try_from(b).unwrap_or(i64::MAX)))
                                .unwrap_or(Value::Null),
                            r.qps.map(Value::Float).unwrap_or(Value::Null),
                        ]
                    })
                    .collect();
                Ok(ExecResult::Rows {
                    columns: show_ranges_columns(),
                    rows,
                    tag: "SHOW RANGES".into(),
                })
            }
            // Nothing to do: old versions go by their TTL, and the planner keeps no
            // statistics. The table must exist, as in Postgres.
            S::Vacuum(v) => {
                if let Some(name) = &v.table_name {
                    catalog::must_get_table(txn, db_id, &crate::plan::object_name(name)?.1).await?;
                }
                Ok(ExecResult::Command {
                    tag: "VACUUM".into(),
                })
            }
            S::Analyze(a) => {
                if let Some(name) = &a.table_name {
                    catalog::must_get_table(txn, db_id, &crate::plan::object_name(name)?.1).await?;
                }
                Ok(ExecResult::Command {
                    tag: "ANALYZE".into(),
                })
            }
            S::Explain { statement, .. } => {
                let lines = self.explain(txn, db_id, statement).await?;
                Ok(ExecResult::Rows {
                    columns: vec![Column::new("info", DataType::Text)],
                    rows: lines.into_iter().map(|l| vec![Value::Text(l)]).collect(),
                    tag: "EXPLAIN".into(),
                })
            }
            other => Err(unsupported(format!(
                "statement not supported: {}",
                other.to_string().chars().take(60).collect::<String>()
            ))),
        }
    }

    /// ALTER TABLE t SPLIT AT <query> (parsed as a marked INSERT: see `mark_split_at`):
    /// each row of the query is a prefix of the primary key, and the table's ranges
    /// are split there. One row per split: the key, and the range starting there.
    async fn split_at(
        &self,
        txn: &mut Txn,
        db_id: u64,
        ins: &ast::Insert,
        params: &[Value],
    ) -> Result<ExecResult> {
        let ast::TableObject::TableName(name) = &ins.table else {
            return Err(unsupported("SPLIT AT on a table function"));
        };
        let table = catalog::must_get_table(txn, db_id, &crate::plan::object_name(name)?.1).await?;
        let source = ins
            .source
            .clone()
            .ok_or_else(|| syntax("SPLIT AT needs VALUES or a query"))?;
        let query = ast::Statement::Query(source);
        let tables = resolve_tables(txn, None, db_id, &query).await?;
        let hints = params.iter().map(|_| None).collect();
        let (planned, subplans, _) = plan_statement(&query, &tables, hints)?;
        let info = self.info(txn);
        let outcome = Executor::new(txn, params, &info, &subplans, db_id)
            .execute(&planned)
            .await?;
        let mut rows = Vec::new();
        for row in outcome.rows {
            if row.len() > table.primary.columns.len() {
                return Err(Error::new(
                    SqlState::SyntaxError,
                    format!(
                        "too many columns in SPLIT AT data: {} for a primary key of {}",
                        row.len(),
                        table.primary.columns.len()
                    ),
                ));
            }
            let mut key = cairn_kv::keys::index_prefix(table.id, table.primary.id);
            for (v, (cid, dir)) in row.into_iter().zip(&table.primary.columns) {
                let ty = table.columns[table.column_position(*cid)?].ty;
                let v = v.cast(ty)?;
                if v.is_null() {
                    return Err(Error::new(
                        SqlState::InvalidParameterValue,
                        "SPLIT AT values must not be NULL",
                    ));
                }
                crate::rowcodec::encode_key_values(&mut key, &[(&v, *dir)])?;
            }
            let right = self.server.db.split_at(&key).await?;
            rows.push(vec![
                Value::Text(cairn_kv::keys::pretty(&key)),
                right.map_or(Value::Null, |d| Value::Int(d.range_id.0 as i64)),
            ]);
        }
        Ok(ExecResult::Rows {
            columns: split_columns(),
            rows,
            tag: "SPLIT".into(),
        })
    }

    /// CREATE/ALTER/DROP ROLE (and USER): users and their passwords.
    async fn run_user_statement(
        &self,
        txn: &mut Txn,
        stmt: &ast::Statement,
    ) -> Result<Option<&'static str>> {
        use ast::Statement as S;
        fn verifier(p: &ast::Password) -> Result<Option<String>> {
            match p {
                ast::Password::NullPassword => Ok(None),
                ast::Password::Password(ast::Expr::Value(v)) => match &v.value {
                    ast::Value::SingleQuotedString(s) => {
                        Ok(Some(crate::scram::Verifier::new(s).encode()))
                    }
                    _ => Err(syntax("a password must be a string")),
                },
                ast::Password::Password(_) => Err(syntax("a password must be a string")),
            }
        }
        match stmt {
            S::CreateRole(cr) => {
                for n in &cr.names {
                    let name = crate::plan::object_name(n)?.1;
                    if name == ROOT_USER || catalog::get_user(txn, &name).await?.is_some() {
                        if cr.if_not_exists {
                            continue;
                        }
                        return Err(Error::new(
                            SqlState::DuplicateObject,
                            format!("role \"{name}\" already exists"),
                        ));
                    }
                    let verifier = match &cr.password {
                        Some(p) => verifier(p)?,
                        None => None,
                    };
                    catalog::put_user(txn, &catalog::UserRecord { name, verifier }).await?;
                }
                Ok(Some("CREATE ROLE"))
            }
            S::AlterRole {
                name,
                operation: ast::AlterRoleOperation::WithOptions { options },
            } => {
                let name = ident_lower(name);
                let mut user = match catalog::get_user(txn, &name).await? {
                    Some(u) => u,
                    None if name == ROOT_USER => catalog::UserRecord {
                        name: name.clone(),
                        verifier: None,
                    },
                    None => {
                        return Err(Error::new(
                            SqlState::UndefinedObject,
                            format!("role \"{name}\" does not exist"),
                        ));
                    }
                };
                for o in options {
                    if let ast::RoleOption::Password(p) = o {
                        user.verifier = verifier(p)?;
                    }
                }
                catalog::put_user(txn, &user).await?;
                Ok(Some("ALTER ROLE"))
            }
            S::Drop {
                object_type: ast::ObjectType::Role | ast::ObjectType::User,
                names,
                if_exists,
                ..
            } => {
                for n in names {
                    let name = crate::plan::object_name(n)?.1;
                    if name == ROOT_USER {
                        return Err(Error::new(
                            SqlState::InsufficientPrivilege,
                            "cannot drop the root user",
                        ));
                    }
                    if catalog::get_user(txn, &name).await?.is_none() {
                        if *if_exists {
                            continue;
                        }
                        return Err(Error::new(
                            SqlState::UndefinedObject,
                            format!("role \"{name}\" does not exist"),
                        ));
                    }
                    catalog::delete_user(txn, &name).await?;
                }
                Ok(Some("DROP ROLE"))
            }
            _ => Ok(None),
        }
    }

    async fn explain(
        &self,
        txn: &mut Txn,
        db_id: u64,
        stmt: &ast::Statement,
    ) -> Result<Vec<String>> {
        if !is_data_statement(stmt) {
            return Err(unsupported("EXPLAIN of this statement"));
        }
        let tables = resolve_tables(txn, None, db_id, stmt).await?;
        let (planned, subplans, _) = plan_statement(stmt, &tables, Vec::new())?;
        let mut lines = crate::explain::explain(&planned, &subplans);
        // Which ranges each scan reads, and who leads them.
        for (label, start, end) in crate::explain::scanned_spans(&planned, &subplans) {
            let ranges = self.server.ranges(&start, &end).await?;
            let list: Vec<String> = ranges
                .iter()
                .map(|r| {
                    format!(
                        "r{} on n{} (leaseholder {})",
                        r.range_id,
                        r.replicas
                            .iter()
                            .map(u64::to_string)
                            .collect::<Vec<_>>()
                            .join(",n"),
                        r.lease_holder
                            .map(|n| format!("n{n}"))
                            .unwrap_or_else(|| "unknown".into())
                    )
                })
                .collect();
            lines.push(format!("ranges of {label}: {}", list.join("; ")));
        }
        Ok(lines)
    }
}

/// Every index's definition, by OID, for `pg_get_indexdef` and
/// `pg_get_constraintdef`.
async fn index_definitions(txn: &mut Txn, db_id: u64) -> Result<HashMap<i64, (String, String)>> {
    let mut defs = HashMap::new();
    for t in catalog::list_tables(txn, db_id).await? {
        for ix in crate::vtable::visible_indexes(&t) {
            let cols: Vec<String> = ix
                .columns
                .iter()
                .filter_map(|(c, dir)| {
                    let col = t.columns.iter().find(|x| x.id == *c)?;
                    Some(match dir {
                        cairn_kv::keys::Direction::Asc => col.name.clone(),
                        cairn_kv::keys::Direction::Desc => format!("{} DESC", col.name),
                    })
                })
                .collect();
            let primary = ix.id == t.primary.id;
            let unique = primary || ix.unique;
            let index = format!(
                "CREATE {}INDEX {} ON public.{} USING btree ({})",
                if unique { "UNIQUE " } else { "" },
                ix.name,
                t.name,
                cols.join(", ")
            );
            let constraint = if primary {
                format!("PRIMARY KEY ({})", cols.join(", "))
            } else if ix.unique {
                format!("UNIQUE ({})", cols.join(", "))
            } else {
                String::new()
            };
            defs.insert(crate::vtable::index_oid(&t, ix.id), (index, constraint));
        }
    }
    Ok(defs)
}

async fn database_id(txn: &mut Txn, cached: Cached<'_>, name: &str) -> Result<u64> {
    match desc_cache::database_id(txn, cached, name).await? {
        Some(id) => Ok(id),
        None => Err(Error::new(
            SqlState::InvalidCatalogName,
            format!("database \"{name}\" does not exist"),
        )),
    }
}

fn no_txn(what: &str) -> Error {
    Error::new(
        SqlState::NoActiveSqlTransaction,
        format!("{what} can only be used in transaction blocks"),
    )
}

fn show_ranges_columns() -> Vec<Column> {
    vec![
        Column::new("range_id", DataType::Int8),
        Column::new("start_key", DataType::Text),
        Column::new("end_key", DataType::Text),
        Column::new("replicas", DataType::Text),
        Column::new("lease_holder", DataType::Int8),
        Column::new("range_size_bytes", DataType::Int8),
        Column::new("qps", DataType::Float8),
    ]
}

fn show_column_name(name: &str) -> String {
    match name {
        "transaction isolation level" => "transaction_isolation".into(),
        "time zone" => "TimeZone".into(),
        n => n.to_string(),
    }
}
