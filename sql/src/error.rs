//! SQL errors: every error carries its SQLSTATE, and the mapping from KV and
//! transaction errors to SQLSTATE lives here, in one place.

use cairn_kv::api;
use cairn_txn::TxnError;

/// A SQLSTATE code: five characters, the first two the class.
///
/// The names follow Postgres' `errcodes.txt`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlState {
    SuccessfulCompletion,
    FeatureNotSupported,
    InvalidParameterValue,
    DivisionByZero,
    NumericValueOutOfRange,
    InvalidTextRepresentation,
    StringDataRightTruncation,
    InvalidDatetimeFormat,
    DatetimeFieldOverflow,
    InvalidEscapeSequence,
    CardinalityViolation,
    NotNullViolation,
    UniqueViolation,
    CheckViolation,
    InvalidTransactionState,
    ActiveSqlTransaction,
    NoActiveSqlTransaction,
    InFailedSqlTransaction,
    InvalidSavepointSpecification,
    InvalidCatalogName,
    InvalidAuthorizationSpecification,
    InvalidPassword,
    SerializationFailure,
    StatementCompletionUnknown,
    DeadlockDetected,
    SyntaxError,
    UndefinedColumn,
    UndefinedFunction,
    UndefinedTable,
    UndefinedObject,
    UndefinedParameter,
    DuplicateColumn,
    DuplicateDatabase,
    DuplicateTable,
    DuplicateObject,
    AmbiguousColumn,
    GroupingError,
    DatatypeMismatch,
    WrongObjectType,
    InvalidColumnReference,
    InvalidTableDefinition,
    IndeterminateDatatype,
    ProtocolViolation,
    TooManyConnections,
    QueryCanceled,
    InsufficientPrivilege,
    ConnectionFailure,
    InternalError,
    DataException,
    InvalidCursorName,
    InvalidSqlStatementName,
    RangeUnavailable,
    ObjectInUse,
    BadCopyFileFormat,
    InvalidRegularExpression,
}

impl SqlState {
    /// The five-character code sent to the client.
    pub fn code(self) -> &'static str {
        use SqlState::*;
        match self {
            SuccessfulCompletion => "00000",
            FeatureNotSupported => "0A000",
            InvalidParameterValue => "22023",
            DivisionByZero => "22012",
            NumericValueOutOfRange => "22003",
            InvalidTextRepresentation => "22P02",
            StringDataRightTruncation => "22001",
            InvalidDatetimeFormat => "22007",
            DatetimeFieldOverflow => "22008",
            InvalidEscapeSequence => "22025",
            CardinalityViolation => "21000",
            NotNullViolation => "23502",
            UniqueViolation => "23505",
            CheckViolation => "23514",
            InvalidTransactionState => "25000",
            ActiveSqlTransaction => "25001",
            NoActiveSqlTransaction => "25P01",
            InFailedSqlTransaction => "25P02",
            InvalidSavepointSpecification => "3B001",
            InvalidCatalogName => "3D000",
            InvalidAuthorizationSpecification => "28000",
            InvalidPassword => "28P01",
            SerializationFailure => "40001",
            StatementCompletionUnknown => "40003",
            DeadlockDetected => "40P01",
            SyntaxError => "42601",
            UndefinedColumn => "42703",
            UndefinedFunction => "42883",
            UndefinedTable => "42P01",
            UndefinedObject => "42704",
            UndefinedParameter => "42P02",
            DuplicateColumn => "42701",
            DuplicateDatabase => "42P04",
            DuplicateTable => "42P07",
            DuplicateObject => "42710",
            AmbiguousColumn => "42702",
            GroupingError => "42803",
            DatatypeMismatch => "42804",
            WrongObjectType => "42809",
            InvalidColumnReference => "42P10",
            InvalidTableDefinition => "42P16",
            IndeterminateDatatype => "42P18",
            ProtocolViolation => "08P01",
            TooManyConnections => "53300",
            QueryCanceled => "57014",
            InsufficientPrivilege => "42501",
            ConnectionFailure => "08006",
            InternalError => "XX000",
            DataException => "22000",
            InvalidCursorName => "34000",
            InvalidSqlStatementName => "26000",
            // CockroachDB reports an unavailable range as a retryable-by-client
            // connection exception; we use Postgres' "cannot connect now" class.
            RangeUnavailable => "57P03",
            ObjectInUse => "55006",
            BadCopyFileFormat => "22P04",
            InvalidRegularExpression => "2201B",
        }
    }
}

/// An error of one SQL statement, sent to the client as an ErrorResponse.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub code: SqlState,
    pub message: String,
    /// Extra detail for the client (the DETAIL field).
    pub detail: Option<String>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: SqlState, message: impl Into<String>) -> Error {
        Error {
            code,
            message: message.into(),
            detail: None,
        }
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Error {
        self.detail = Some(detail.into());
        self
    }

    /// Whether running the statement's transaction again may succeed (40001).
    pub fn is_retryable(&self) -> bool {
        self.code == SqlState::SerializationFailure
    }
}

/// Shorthand constructors for the errors raised most often.
pub fn syntax(message: impl Into<String>) -> Error {
    Error::new(SqlState::SyntaxError, message)
}

pub fn unsupported(message: impl Into<String>) -> Error {
    Error::new(SqlState::FeatureNotSupported, message)
}

pub fn internal(message: impl Into<String>) -> Error {
    Error::new(SqlState::InternalError, message)
}

impl From<TxnError> for Error {
    fn from(e: TxnError) -> Error {
        match e {
            TxnError::Retry { reason, .. } => Error::new(
                SqlState::SerializationFailure,
                format!("restart transaction: {reason}"),
            ),
            TxnError::Ambiguous(reason) => Error::new(
                SqlState::StatementCompletionUnknown,
                format!("result is ambiguous: {reason}"),
            ),
            TxnError::Finished(state) => Error::new(
                SqlState::InvalidTransactionState,
                format!("transaction already {state}"),
            ),
            TxnError::Kv(e) => e.into(),
        }
    }
}

impl From<api::Error> for Error {
    fn from(e: api::Error) -> Error {
        let message = e.to_string();
        let code = match &e {
            api::Error::RangeUnavailable { .. }
            | api::Error::NodeUnreachable { .. }
            | api::Error::NotLeaseholder { .. }
            | api::Error::RangeNotFound { .. }
            | api::Error::RangeKeyMismatch { .. } => SqlState::RangeUnavailable,
            api::Error::AmbiguousResult { .. } => SqlState::StatementCompletionUnknown,
            api::Error::Kv(
                cairn_kv::Error::ReadWithinUncertainty { .. }
                | cairn_kv::Error::WriteTooOld { .. }
                | cairn_kv::Error::TxnAborted { .. }
                | cairn_kv::Error::TxnPushed { .. }
                | cairn_kv::Error::RefreshFailed { .. }
                | cairn_kv::Error::WriteIntent { .. }
                | cairn_kv::Error::TxnPushFailed { .. },
            ) => SqlState::SerializationFailure,
            _ => SqlState::InternalError,
        };
        Error::new(code, message)
    }
}
