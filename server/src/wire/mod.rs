//! The Postgres wire protocol: one task per client connection, speaking protocol 3.0
//! through `pgwire`'s message codec, with the connection's state machine here.
//!
//! ```text
//!   accept ─▶ SSLRequest? ─▶ Startup ─▶ auth ─▶ ParameterStatus.., BackendKeyData,
//!            (refused: 'N')  CancelRequest:         ReadyForQuery('I')
//!                            cancel, close                 │
//!                                                          ▼
//!   ┌──────────────────────── message loop ───────────────────────────────────┐
//!   │ Query     run each statement: RowDescription, DataRow.., CommandComplete │
//!   │           (or ErrorResponse, which ends the string); ReadyForQuery        │
//!   │ Parse     prepare (parameter types inferred)            ParseComplete     │
//!   │ Bind      decode parameters (text or binary)            BindComplete      │
//!   │ Describe  ParameterDescription, RowDescription / NoData                   │
//!   │ Execute   DataRow.. then CommandComplete or PortalSuspended               │
//!   │ Sync      ReadyForQuery; after an error, messages up to Sync are skipped  │
//!   │ COPY      CopyInResponse, CopyData.., CopyDone              (copy.rs)     │
//!   └──────────────────────────────────────────────────────────────────────────┘
//! ```
//!
//! ReadyForQuery's status is the session's own transaction state (idle, in a
//! transaction, failed), never tracked separately here. A malformed message is a
//! protocol violation (08P01) that ends this connection only; anything a statement
//! does wrong is an ErrorResponse and the connection carries on.

mod copy;
pub mod values;

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use bytes::BytesMut;
use cairn_sql::error::{Error, SqlState};
use cairn_sql::session::{ExecResult, Prepared, Session, TxnStatus};
use cairn_sql::{DataType, Value, plan::Column};
use parking_lot::Mutex;
use pgwire::messages::data::{DataRow, FieldDescription, ParameterDescription, RowDescription};
use pgwire::messages::extendedquery::{
    BindComplete, CloseComplete, ParseComplete, PortalSuspended,
};
use pgwire::messages::response::{
    CommandComplete, EmptyQueryResponse, ErrorResponse, ReadyForQuery, SslResponse,
    TransactionStatus,
};
use pgwire::messages::startup::{Authentication, BackendKeyData, ParameterStatus, SecretKey};
use pgwire::messages::{
    DecodeContext, PgWireBackendMessage, PgWireFrontendMessage, SslNegotiationMetaMessage,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

use crate::node::Node;
use values::Format;

/// The default limit on open SQL connections per node.
pub const DEFAULT_MAX_CONNECTIONS: usize = 500;

/// Buffered output beyond this is written before more is encoded.
const FLUSH_AT: usize = 64 * 1024;

/// Running statements by backend pid, for CancelRequest.
#[derive(Default)]
pub struct CancelRegistry {
    running: Mutex<HashMap<i32, (i32, Arc<Notify>)>>,
}

impl CancelRegistry {
    fn register(&self, pid: i32, secret: i32) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.running.lock().insert(pid, (secret, notify.clone()));
        notify
    }

    fn unregister(&self, pid: i32) {
        self.running.lock().remove(&pid);
    }

    /// Cancels the running statement of `pid` if `secret` matches.
    fn cancel(&self, pid: i32, secret: i32) {
        if let Some((s, n)) = self.running.lock().get(&pid)
            && *s == secret
        {
            n.notify_one();
        }
    }
}

/// What a node's SQL listener shares between connections.
pub struct Listener {
    pub node: Weak<Node>,
    pub limit: Arc<Semaphore>,
    pub cancels: CancelRegistry,
    /// Connections open now (for `/metrics`).
    pub open: Arc<std::sync::atomic::AtomicI64>,
}

/// Counts a connection as open while it lives.
struct OpenConnection(Arc<std::sync::atomic::AtomicI64>);

impl OpenConnection {
    fn new(open: &Arc<std::sync::atomic::AtomicI64>) -> OpenConnection {
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        OpenConnection(open.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Accepts SQL connections until the listener is dropped.
pub async fn serve(listener: TcpListener, shared: Arc<Listener>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sql accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let open = OpenConnection::new(&shared.open);
        tokio::spawn(async move {
            let _open = open;
            let mut conn = Conn::new(stream);
            if let Err(e) = conn.run(&shared).await {
                tracing::debug!(%peer, error = %e, "sql connection ended");
            }
        });
    }
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A prepared statement of the connection.
struct Statement {
    prepared: Prepared,
}

/// A bound statement, ready to execute.
struct Portal {
    prepared: Prepared,
    params: Vec<Value>,
    formats: Vec<Format>,
    /// Rows left from an Execute with a row limit.
    pending: Option<(std::vec::IntoIter<Vec<Value>>, String)>,
}

struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    ctx: DecodeContext,
}

fn status(s: TxnStatus) -> TransactionStatus {
    match s {
        TxnStatus::Idle => TransactionStatus::Idle,
        TxnStatus::InTransaction => TransactionStatus::Transaction,
        TxnStatus::Failed => TransactionStatus::Error,
    }
}

fn error_response(e: &Error, severity: &str) -> PgWireBackendMessage {
    let mut fields = vec![
        (b'S', severity.to_string()),
        (b'V', severity.to_string()),
        (b'C', e.code.code().to_string()),
        (b'M', e.message.clone()),
    ];
    if let Some(d) = &e.detail {
        fields.push((b'D', d.clone()));
    }
    PgWireBackendMessage::ErrorResponse(ErrorResponse::new(fields))
}

impl Conn {
    fn new(stream: TcpStream) -> Conn {
        Conn {
            stream,
            rbuf: BytesMut::with_capacity(8 * 1024),
            wbuf: BytesMut::with_capacity(8 * 1024),
            ctx: DecodeContext::default(),
        }
    }

    /// The next message, or None when the client closed the connection.
    async fn read(&mut self) -> Result<Option<PgWireFrontendMessage>, ConnError> {
        loop {
            match PgWireFrontendMessage::decode(&mut self.rbuf, &self.ctx) {
                Ok(Some(m)) => return Ok(Some(m)),
                Ok(None) => {}
                Err(e) => return Err(ConnError::Protocol(e.to_string())),
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Ok(None);
            }
        }
    }

    async fn send(&mut self, msg: PgWireBackendMessage) -> Result<(), ConnError> {
        msg.encode(&mut self.wbuf)
            .map_err(|e| ConnError::Protocol(e.to_string()))?;
        if self.wbuf.len() >= FLUSH_AT {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Sends a fatal error and ends the connection.
    async fn fatal(&mut self, e: Error) -> Result<(), ConnError> {
        self.send(error_response(&e, "FATAL")).await?;
        self.flush().await
    }

    async fn run(&mut self, shared: &Listener) -> Result<(), ConnError> {
        // SSL/GSS negotiation: refused (TLS is not served yet), then the startup.
        let startup = loop {
            let Some(msg) = self.read().await? else {
                return Ok(());
            };
            match msg {
                PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::None) => {
                    self.ctx.awaiting_frontend_ssl = false;
                }
                PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresSsl(
                    _,
                )) => {
                    self.send(PgWireBackendMessage::SslResponse(SslResponse::Refuse))
                        .await?;
                    self.flush().await?;
                }
                PgWireFrontendMessage::SslNegotiation(SslNegotiationMetaMessage::PostgresGss(
                    _,
                )) => {
                    self.send(PgWireBackendMessage::GssEncResponse(
                        pgwire::messages::response::GssEncResponse::Refuse,
                    ))
                    .await?;
                    self.flush().await?;
                }
                PgWireFrontendMessage::CancelRequest(c) => {
                    // Protocol 3.0 keys are four bytes; the codec may hand them over
                    // as bytes.
                    let secret = match c.secret_key {
                        SecretKey::I32(s) => Some(s),
                        SecretKey::Bytes(b) => {
                            <[u8; 4]>::try_from(b.as_ref()).ok().map(i32::from_be_bytes)
                        }
                    };
                    if let Some(secret) = secret {
                        shared.cancels.cancel(c.pid, secret);
                    }
                    return Ok(());
                }
                PgWireFrontendMessage::Startup(s) => break s,
                other => {
                    return Err(ConnError::Protocol(format!(
                        "unexpected {other:?} before startup"
                    )));
                }
            }
        };
        self.ctx.awaiting_frontend_startup = false;

        let _permit = match shared.limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                return self
                    .fatal(Error::new(
                        SqlState::TooManyConnections,
                        "sorry, too many clients already",
                    ))
                    .await;
            }
        };
        let Some(node) = shared.node.upgrade() else {
            return Ok(());
        };
        let Some(server) = node.sql_server() else {
            return self
                .fatal(Error::new(
                    SqlState::RangeUnavailable,
                    "the node is not serving yet: it has not joined a cluster",
                ))
                .await;
        };
        let insecure = node.insecure();
        drop(node);
        let user = startup
            .parameters
            .get("user")
            .cloned()
            .unwrap_or_else(|| "root".into());
        let database = startup
            .parameters
            .get("database")
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| "defaultdb".into());
        // Authentication: --insecure trusts every user; otherwise SCRAM-SHA-256.
        if !insecure {
            match self.authenticate(&server, &user).await? {
                Ok(()) => {}
                Err(e) => return self.fatal(e).await,
            }
        }
        self.send(PgWireBackendMessage::Authentication(Authentication::Ok))
            .await?;
        let mut session = server.session(&user, &database);
        if let Err(e) = session.check_database().await {
            return self.fatal(e).await;
        }
        if let Some(app) = startup.parameters.get("application_name") {
            session.set_startup_parameter("application_name", app);
        }
        // The values come from the session's settings, the one place they live.
        for name in [
            "server_version",
            "server_encoding",
            "client_encoding",
            "DateStyle",
            "TimeZone",
            "integer_datetimes",
            "standard_conforming_strings",
            "IntervalStyle",
            "is_superuser",
            "application_name",
        ] {
            let value = session
                .setting(&name.to_ascii_lowercase())
                .unwrap_or("")
                .to_string();
            self.send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                name.into(),
                value,
            )))
            .await?;
        }
        self.send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
            "session_authorization".into(),
            user.clone(),
        )))
        .await?;
        let pid = session.backend_pid();
        let secret: i32 = rand_i32();
        self.send(PgWireBackendMessage::BackendKeyData(BackendKeyData::new(
            pid,
            SecretKey::I32(secret),
        )))
        .await?;
        self.ready(&session).await?;
        let cancel = shared.cancels.register(pid, secret);
        let result = self.serve(&mut session, &cancel).await;
        shared.cancels.unregister(pid);
        session.close().await;
        result
    }

    /// The SCRAM-SHA-256 exchange. An unknown user (or one without a password)
    /// goes through it against a throwaway verifier, so the answer does not tell
    /// which users exist.
    async fn authenticate(
        &mut self,
        server: &cairn_sql::SqlServer,
        user: &str,
    ) -> Result<Result<(), Error>, ConnError> {
        use cairn_sql::scram::{Exchange, Verifier, random_bytes};
        let failed = || {
            Error::new(
                SqlState::InvalidPassword,
                format!("password authentication failed for user \"{user}\""),
            )
        };
        let known = server.user_verifier(user).await.ok().flatten();
        let verifier = known.clone().unwrap_or_else(|| {
            Verifier::with_salt("", &random_bytes(16), cairn_sql::scram::ITERATIONS)
        });
        self.send(PgWireBackendMessage::Authentication(Authentication::SASL(
            vec!["SCRAM-SHA-256".into()],
        )))
        .await?;
        self.flush().await?;
        let initial = match self.read().await? {
            Some(PgWireFrontendMessage::PasswordMessageFamily(p)) => p
                .into_sasl_initial_response()
                .map_err(|e| ConnError::Protocol(e.to_string()))?,
            Some(other) => {
                return Err(ConnError::Protocol(format!(
                    "expected SASLInitialResponse, got {other:?}"
                )));
            }
            None => return Ok(Err(failed())),
        };
        if initial.auth_method != "SCRAM-SHA-256" {
            return Ok(Err(Error::new(
                SqlState::InvalidAuthorizationSpecification,
                format!("unsupported SASL mechanism {}", initial.auth_method),
            )));
        }
        let nonce =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, random_bytes(18));
        let data = initial.data.unwrap_or_default();
        let (exchange, server_first) = match Exchange::start(verifier, &data, &nonce) {
            Ok(x) => x,
            Err(_) => return Ok(Err(failed())),
        };
        self.send(PgWireBackendMessage::Authentication(
            Authentication::SASLContinue(bytes::Bytes::from(server_first)),
        ))
        .await?;
        self.flush().await?;
        let response = match self.read().await? {
            Some(PgWireFrontendMessage::PasswordMessageFamily(p)) => p
                .into_sasl_response()
                .map_err(|e| ConnError::Protocol(e.to_string()))?,
            Some(other) => {
                return Err(ConnError::Protocol(format!(
                    "expected SASLResponse, got {other:?}"
                )));
            }
            None => return Ok(Err(failed())),
        };
        match exchange.finish(&response.data) {
            Ok(server_final) if known.is_some() => {
                self.send(PgWireBackendMessage::Authentication(
                    Authentication::SASLFinal(bytes::Bytes::from(server_final)),
                ))
                .await?;
                Ok(Ok(()))
            }
            _ => Ok(Err(failed())),
        }
    }

    async fn ready(&mut self, session: &Session) -> Result<(), ConnError> {
        self.send(PgWireBackendMessage::ReadyForQuery(ReadyForQuery::new(
            status(session.status()),
        )))
        .await?;
        self.flush().await
    }

    /// The message loop.
    async fn serve(&mut self, session: &mut Session, cancel: &Notify) -> Result<(), ConnError> {
        let mut statements: HashMap<String, Statement> = HashMap::new();
        let mut portals: HashMap<String, Portal> = HashMap::new();
        // After an error in an extended-protocol exchange, skip to the next Sync.
        let mut skipping = false;
        loop {
            let msg = match self.read().await {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(ConnError::Protocol(p)) => {
                    let e =
                        Error::new(SqlState::ProtocolViolation, format!("invalid message: {p}"));
                    self.fatal(e).await?;
                    return Err(ConnError::Protocol(p));
                }
                Err(e) => return Err(e),
            };
            if skipping && !matches!(msg, PgWireFrontendMessage::Sync(_)) {
                continue;
            }
            let outcome: Result<(), Error> = match msg {
                PgWireFrontendMessage::Query(q) => {
                    self.simple_query(session, &q.query, cancel).await?;
                    continue;
                }
                PgWireFrontendMessage::Parse(p) => {
                    let hints: Vec<Option<DataType>> = p
                        .type_oids
                        .iter()
                        .map(|&oid| {
                            if oid == 0 {
                                None
                            } else {
                                DataType::from_oid(oid)
                            }
                        })
                        .collect();
                    match session.prepare(&p.query, &hints).await {
                        Ok(prepared) => {
                            statements.insert(p.name.unwrap_or_default(), Statement { prepared });
                            self.send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
                                .await?;
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                PgWireFrontendMessage::Bind(b) => match self.bind(&statements, b) {
                    Ok((name, portal)) => {
                        portals.insert(name, portal);
                        self.send(PgWireBackendMessage::BindComplete(BindComplete::new()))
                            .await?;
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                PgWireFrontendMessage::Describe(d) => {
                    let name = d.name.unwrap_or_default();
                    if d.target_type == b'S' {
                        match statements.get(&name) {
                            Some(s) => {
                                let types = s.prepared.params.iter().map(|t| t.oid()).collect();
                                let columns = s.prepared.columns.clone();
                                self.send(PgWireBackendMessage::ParameterDescription(
                                    ParameterDescription::new(types),
                                ))
                                .await?;
                                self.describe_rows(&columns, &[]).await?;
                                Ok(())
                            }
                            None => Err(Error::new(
                                SqlState::InvalidSqlStatementName,
                                format!("prepared statement \"{name}\" does not exist"),
                            )),
                        }
                    } else {
                        match portals.get(&name) {
                            Some(p) => {
                                let columns = p.prepared.columns.clone();
                                let formats = p.formats.clone();
                                self.describe_rows(&columns, &formats).await?;
                                Ok(())
                            }
                            None => Err(Error::new(
                                SqlState::InvalidCursorName,
                                format!("portal \"{name}\" does not exist"),
                            )),
                        }
                    }
                }
                PgWireFrontendMessage::Execute(e) => {
                    let name = e.name.unwrap_or_default();
                    match portals.get_mut(&name) {
                        Some(portal) => self.execute(session, portal, e.max_rows, cancel).await?,
                        None => Err(Error::new(
                            SqlState::InvalidCursorName,
                            format!("portal \"{name}\" does not exist"),
                        )),
                    }
                }
                PgWireFrontendMessage::Close(c) => {
                    let name = c.name.unwrap_or_default();
                    if c.target_type == b'S' {
                        statements.remove(&name);
                    } else {
                        portals.remove(&name);
                    }
                    self.send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
                        .await?;
                    Ok(())
                }
                PgWireFrontendMessage::Sync(_) => {
                    skipping = false;
                    // The unnamed portal does not outlive the exchange.
                    portals.remove("");
                    self.ready(session).await?;
                    continue;
                }
                PgWireFrontendMessage::Flush(_) => {
                    self.flush().await?;
                    continue;
                }
                PgWireFrontendMessage::Terminate(_) => return Ok(()),
                PgWireFrontendMessage::CopyData(_)
                | PgWireFrontendMessage::CopyDone(_)
                | PgWireFrontendMessage::CopyFail(_) => {
                    // COPY messages outside a COPY are ignored, as Postgres does.
                    continue;
                }
                other => Err(Error::new(
                    SqlState::ProtocolViolation,
                    format!("unexpected message {other:?}"),
                )),
            };
            if let Err(e) = outcome {
                self.send(error_response(&e, "ERROR")).await?;
                skipping = true;
            }
        }
    }

    fn bind(
        &self,
        statements: &HashMap<String, Statement>,
        b: pgwire::messages::extendedquery::Bind,
    ) -> Result<(String, Portal), Error> {
        let sname = b.statement_name.unwrap_or_default();
        let stmt = statements.get(&sname).ok_or_else(|| {
            Error::new(
                SqlState::InvalidSqlStatementName,
                format!("prepared statement \"{sname}\" does not exist"),
            )
        })?;
        let types = &stmt.prepared.params;
        if b.parameters.len() != types.len() {
            return Err(Error::new(
                SqlState::ProtocolViolation,
                format!(
                    "bind message supplies {} parameters, but prepared statement \"{sname}\" requires {}",
                    b.parameters.len(),
                    types.len()
                ),
            ));
        }
        let mut params = Vec::with_capacity(types.len());
        for (i, (p, ty)) in b.parameters.iter().zip(types).enumerate() {
            let format = Format::nth(&b.parameter_format_codes, i)?;
            params.push(values::decode(p.as_deref(), *ty, format)?);
        }
        let formats = (0..stmt.prepared.columns.len())
            .map(|i| Format::nth(&b.result_column_format_codes, i))
            .collect::<Result<_, _>>()?;
        Ok((
            b.portal_name.unwrap_or_default(),
            Portal {
                prepared: stmt.prepared.clone(),
                params,
                formats,
                pending: None,
            },
        ))
    }

    async fn describe_rows(
        &mut self,
        columns: &[Column],
        formats: &[Format],
    ) -> Result<(), ConnError> {
        if columns.is_empty() {
            self.send(PgWireBackendMessage::NoData(
                pgwire::messages::data::NoData::new(),
            ))
            .await
        } else {
            self.send(row_description(columns, formats)).await
        }
    }

    /// Runs one statement, racing a cancel request.
    async fn run_statement(
        session: &mut Session,
        stmt: &sqlparser_ast::Statement,
        params: &[Value],
        cancel: &Notify,
    ) -> Result<ExecResult, Error> {
        let was_in_txn = session.status() != TxnStatus::Idle;
        let result = tokio::select! {
            r = session.execute(stmt, params) => Some(r),
            _ = cancel.notified() => None,
        };
        match result {
            Some(r) => r,
            None => {
                session.cancelled(was_in_txn);
                Err(Error::new(
                    SqlState::QueryCanceled,
                    "canceling statement due to user request",
                ))
            }
        }
    }

    async fn execute(
        &mut self,
        session: &mut Session,
        portal: &mut Portal,
        max_rows: i32,
        cancel: &Notify,
    ) -> Result<Result<(), Error>, ConnError> {
        if portal.pending.is_none() {
            let Some(stmt) = portal.prepared.stmt.clone() else {
                self.send(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
                return Ok(Ok(()));
            };
            if copy::is_copy_from_stdin(&stmt) {
                return self.copy_in(session, &stmt).await;
            }
            match Self::run_statement(session, &stmt, &portal.params, cancel).await {
                Ok(ExecResult::Rows { rows, tag, .. }) => {
                    portal.pending = Some((rows.into_iter(), tag));
                }
                Ok(ExecResult::Command { tag }) => {
                    self.send(complete(tag)).await?;
                    return Ok(Ok(()));
                }
                Ok(ExecResult::Empty) => {
                    self.send(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
                    return Ok(Ok(()));
                }
                Err(e) => return Ok(Err(e)),
            }
        }
        let columns = portal.prepared.columns.clone();
        let Some((rows, _)) = portal.pending.as_mut() else {
            return Ok(Ok(()));
        };
        let mut sent = 0usize;
        let limit = if max_rows > 0 {
            max_rows as usize
        } else {
            usize::MAX
        };
        let mut out = Vec::new();
        while sent < limit {
            let Some(row) = rows.next() else { break };
            out.push(row);
            sent += 1;
        }
        let more = rows.len() > 0;
        for row in out {
            match data_row(&row, &columns, &portal.formats) {
                Ok(m) => self.send(m).await?,
                Err(e) => return Ok(Err(e)),
            }
        }
        if more {
            self.send(PgWireBackendMessage::PortalSuspended(PortalSuspended::new()))
                .await?;
        } else if let Some((_, tag)) = portal.pending.take() {
            // A SELECT's tag counts the rows it returned.
            let tag = if tag.starts_with("SELECT") {
                format!("SELECT {sent}")
            } else {
                tag
            };
            self.send(complete(tag)).await?;
        }
        Ok(Ok(()))
    }

    /// The simple query protocol: every statement of the string, then ReadyForQuery.
    async fn simple_query(
        &mut self,
        session: &mut Session,
        sql: &str,
        cancel: &Notify,
    ) -> Result<(), ConnError> {
        let stmts = match cairn_sql::session::parse(sql) {
            Ok(s) => s,
            Err(e) => {
                session.syntax_error();
                self.send(error_response(&e, "ERROR")).await?;
                return self.ready(session).await;
            }
        };
        if stmts.is_empty() {
            self.send(PgWireBackendMessage::EmptyQueryResponse(
                EmptyQueryResponse::new(),
            ))
            .await?;
            return self.ready(session).await;
        }
        let implicit = session.begin_implicit_block(&stmts);
        let mut ok = true;
        for stmt in &stmts {
            ok = false;
            if copy::is_copy_from_stdin(stmt) {
                match self.copy_in(session, stmt).await? {
                    Ok(()) => {
                        ok = true;
                        continue;
                    }
                    Err(e) => {
                        self.send(error_response(&e, "ERROR")).await?;
                        break;
                    }
                }
            }
            match Self::run_statement(session, stmt, &[], cancel).await {
                Ok(ExecResult::Rows { columns, rows, tag }) => {
                    self.send(row_description(&columns, &[])).await?;
                    let mut failed = None;
                    for row in &rows {
                        match data_row(row, &columns, &[]) {
                            Ok(m) => self.send(m).await?,
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    if let Some(e) = failed {
                        self.send(error_response(&e, "ERROR")).await?;
                        break;
                    }
                    self.send(complete(tag)).await?;
                }
                Ok(ExecResult::Command { tag }) => self.send(complete(tag)).await?,
                Ok(ExecResult::Empty) => {
                    self.send(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?
                }
                Err(e) => {
                    self.send(error_response(&e, "ERROR")).await?;
                    break;
                }
            }
            ok = true;
        }
        if implicit && let Err(e) = session.end_implicit_block(ok).await {
            self.send(error_response(&e, "ERROR")).await?;
        }
        self.ready(session).await
    }
}

use cairn_sql::sqlparser::ast as sqlparser_ast;

fn complete(tag: String) -> PgWireBackendMessage {
    PgWireBackendMessage::CommandComplete(CommandComplete::new(tag))
}

fn row_description(columns: &[Column], formats: &[Format]) -> PgWireBackendMessage {
    let fields = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (table_id, column_id) = c.source.map(|(t, a)| (t as i32, a)).unwrap_or((0, 0));
            let modifier = match c.ty {
                DataType::Varchar(Some(n)) | DataType::Char(Some(n)) => n as i32 + 4,
                _ => -1,
            };
            FieldDescription::new(
                c.name.clone(),
                table_id,
                column_id,
                c.ty.oid(),
                c.ty.wire_size(),
                modifier,
                formats.get(i).copied().unwrap_or(Format::Text).code(),
            )
        })
        .collect();
    PgWireBackendMessage::RowDescription(RowDescription::new(fields))
}

fn data_row(
    row: &[Value],
    columns: &[Column],
    formats: &[Format],
) -> Result<PgWireBackendMessage, Error> {
    let mut data = BytesMut::with_capacity(16 * row.len());
    for (i, v) in row.iter().enumerate() {
        let ty = columns.get(i).map(|c| c.ty).unwrap_or(DataType::Text);
        let format = formats.get(i).copied().unwrap_or(Format::Text);
        values::encode(&mut data, v, ty, format)?;
    }
    Ok(PgWireBackendMessage::DataRow(DataRow::new(
        data,
        row.len() as i16,
    )))
}

fn rand_i32() -> i32 {
    let b = *uuid::Uuid::new_v4().as_bytes();
    i32::from_le_bytes([b[0], b[1], b[2], b[3]])
}
