//! SQL types and values: what a column holds, how a value prints in Postgres' text
//! format, how text parses into a value, and how values compare and cast.
//!
//! A [`Value`] carries no declared type: integers of every width are `Int(i64)`, and
//! the planner tracks the [`DataType`] of each expression beside it, checking ranges
//! where a narrower type is asked for (an `INT4` column, an `INT4` sum). Dates and
//! timestamps count from 2000-01-01, as Postgres (and [`cairn_kv::keys::Datum`]) do.

use std::cmp::Ordering;
use std::fmt::Write as _;

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

use crate::error::{Error, Result, SqlState};

/// The type of a column or an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DataType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float4,
    Float8,
    Numeric,
    /// `TEXT`, `VARCHAR(n)` and `CHAR(n)`: the length limit is checked on write.
    Text,
    Varchar(Option<u32>),
    Char(Option<u32>),
    Bytea,
    Date,
    Timestamp,
    TimestampTz,
    Uuid,
    /// `oid` and the reg* types of pg_catalog: an unsigned 32-bit integer.
    Oid,
    /// `name` of pg_catalog: text.
    Name,
    /// The type of a NULL literal or a string literal not yet given a type.
    Unknown,
}

impl DataType {
    /// The type's OID on the wire (RowDescription, ParameterDescription).
    pub fn oid(self) -> u32 {
        match self {
            DataType::Bool => 16,
            DataType::Bytea => 17,
            DataType::Name => 19,
            DataType::Int8 => 20,
            DataType::Int2 => 21,
            DataType::Int4 => 23,
            DataType::Text => 25,
            DataType::Oid => 26,
            DataType::Float4 => 700,
            DataType::Float8 => 701,
            DataType::Char(_) => 1042,
            DataType::Varchar(_) => 1043,
            DataType::Date => 1082,
            DataType::Timestamp => 1114,
            DataType::TimestampTz => 1184,
            DataType::Numeric => 1700,
            DataType::Uuid => 2950,
            DataType::Unknown => 705,
        }
    }

    /// The type with the given OID, if it is one Cairn knows.
    pub fn from_oid(oid: u32) -> Option<DataType> {
        Some(match oid {
            16 => DataType::Bool,
            17 => DataType::Bytea,
            19 => DataType::Name,
            20 => DataType::Int8,
            21 => DataType::Int2,
            23 => DataType::Int4,
            25 => DataType::Text,
            26 => DataType::Oid,
            700 => DataType::Float4,
            701 => DataType::Float8,
            1042 => DataType::Char(None),
            1043 => DataType::Varchar(None),
            1082 => DataType::Date,
            1114 => DataType::Timestamp,
            1184 => DataType::TimestampTz,
            1700 => DataType::Numeric,
            2950 => DataType::Uuid,
            705 => DataType::Unknown,
            _ => return None,
        })
    }

    /// The type's name as Postgres' `format_type` prints it.
    pub fn name(self) -> String {
        match self {
            DataType::Bool => "boolean".into(),
            DataType::Int2 => "smallint".into(),
            DataType::Int4 => "integer".into(),
            DataType::Int8 => "bigint".into(),
            DataType::Float4 => "real".into(),
            DataType::Float8 => "double precision".into(),
            DataType::Numeric => "numeric".into(),
            DataType::Text => "text".into(),
            DataType::Varchar(None) => "character varying".into(),
            DataType::Varchar(Some(n)) => format!("character varying({n})"),
            DataType::Char(None) => "character".into(),
            DataType::Char(Some(n)) => format!("character({n})"),
            DataType::Bytea => "bytea".into(),
            DataType::Date => "date".into(),
            DataType::Timestamp => "timestamp without time zone".into(),
            DataType::TimestampTz => "timestamp with time zone".into(),
            DataType::Uuid => "uuid".into(),
            DataType::Oid => "oid".into(),
            DataType::Name => "name".into(),
            DataType::Unknown => "unknown".into(),
        }
    }

    /// The name without a length (`information_schema.columns.data_type`).
    pub fn base_name(self) -> String {
        match self {
            DataType::Varchar(_) => DataType::Varchar(None).name(),
            DataType::Char(_) => DataType::Char(None).name(),
            t => t.name(),
        }
    }

    /// The size Postgres reports in RowDescription (-1: variable).
    pub fn wire_size(self) -> i16 {
        match self {
            DataType::Bool => 1,
            DataType::Int2 => 2,
            DataType::Int4 | DataType::Float4 | DataType::Date | DataType::Oid => 4,
            DataType::Int8 | DataType::Float8 | DataType::Timestamp | DataType::TimestampTz => 8,
            DataType::Uuid => 16,
            DataType::Name => 64,
            _ => -1,
        }
    }

    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DataType::Int2 | DataType::Int4 | DataType::Int8 | DataType::Oid
        )
    }

    pub fn is_float(self) -> bool {
        matches!(self, DataType::Float4 | DataType::Float8)
    }

    pub fn is_numeric(self) -> bool {
        self.is_integer() || self.is_float() || self == DataType::Numeric
    }

    pub fn is_text(self) -> bool {
        matches!(
            self,
            DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Name
        )
    }

    /// The integer bounds of an integer type.
    fn int_bounds(self) -> Option<(i64, i64)> {
        match self {
            DataType::Int2 => Some((i16::MIN.into(), i16::MAX.into())),
            DataType::Int4 => Some((i32::MIN.into(), i32::MAX.into())),
            DataType::Oid => Some((0, u32::MAX.into())),
            _ => None,
        }
    }

    /// Checks that an integer fits this type.
    pub fn check_int(self, v: i64) -> Result<i64> {
        match self.int_bounds() {
            Some((lo, hi)) if v < lo || v > hi => Err(out_of_range(self)),
            _ => Ok(v),
        }
    }

    /// The common type of two operands of an arithmetic or comparison operator.
    pub fn common(a: DataType, b: DataType) -> DataType {
        use DataType::*;
        match (a, b) {
            (Unknown, t) | (t, Unknown) => t,
            (a, b) if a == b => a,
            (a, b) if a.is_integer() && b.is_integer() => {
                if a == Int8 || b == Int8 || a == Oid || b == Oid {
                    Int8
                } else if a == Int4 || b == Int4 {
                    Int4
                } else {
                    Int2
                }
            }
            (a, b) if a.is_float() || b.is_float() => Float8,
            (a, b) if a.is_numeric() && b.is_numeric() => Numeric,
            (a, b) if a.is_text() && b.is_text() => Text,
            (Timestamp, TimestampTz) | (TimestampTz, Timestamp) => TimestampTz,
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            (Date, TimestampTz) | (TimestampTz, Date) => TimestampTz,
            (a, _) => a,
        }
    }
}

fn out_of_range(ty: DataType) -> Error {
    let what = match ty {
        DataType::Int2 => "smallint",
        DataType::Int8 => "bigint",
        _ => "integer",
    };
    Error::new(
        SqlState::NumericValueOutOfRange,
        format!("{what} out of range"),
    )
}

/// A SQL value.
#[derive(Clone, Debug)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Numeric(Decimal),
    Text(String),
    Bytes(Vec<u8>),
    /// Days since 2000-01-01.
    Date(i32),
    /// Microseconds since 2000-01-01 00:00:00.
    Timestamp(i64),
    /// Microseconds since 2000-01-01 00:00:00 UTC.
    TimestampTz(i64),
    Uuid([u8; 16]),
}

/// Equality as SQL's `IS NOT DISTINCT FROM`, extended to NaN = NaN: the equality of
/// GROUP BY, DISTINCT and set operations.
impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.cmp_total(other) == Ordering::Equal
    }
}

impl Eq for Value {}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Values that compare equal across representations (1 = 1.0 = 1.00) hash alike:
        // numbers hash through their f64 value, which equal numbers share.
        match self {
            Value::Null => 0u8.hash(state),
            Value::Bool(b) => b.hash(state),
            Value::Int(_) | Value::Float(_) | Value::Numeric(_) => {
                let f = self.as_f64().unwrap_or(0.0);
                let f = if f == 0.0 { 0.0 } else { f };
                if f.is_nan() {
                    u64::MAX.hash(state)
                } else {
                    f.to_bits().hash(state)
                }
            }
            Value::Text(s) => s.hash(state),
            Value::Bytes(b) => b.hash(state),
            Value::Date(d) => d.hash(state),
            Value::Timestamp(t) | Value::TimestampTz(t) => t.hash(state),
            Value::Uuid(u) => u.hash(state),
        }
    }
}

const POSTGRES_EPOCH_DAYS_FROM_CE: i32 = 730_120; // 2000-01-01 in days from 0001-01-01 (CE day 1)

fn epoch_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2000, 1, 1).unwrap_or_default()
}

fn epoch_datetime() -> NaiveDateTime {
    epoch_date().and_time(NaiveTime::MIN)
}

pub fn date_from_naive(d: NaiveDate) -> i32 {
    d.num_days_from_ce() - POSTGRES_EPOCH_DAYS_FROM_CE
}

pub fn naive_from_date(days: i32) -> Option<NaiveDate> {
    epoch_date().checked_add_signed(Duration::days(days.into()))
}

pub fn ts_from_naive(t: NaiveDateTime) -> i64 {
    (t - epoch_datetime())
        .num_microseconds()
        .unwrap_or(i64::MAX)
}

pub fn naive_from_ts(micros: i64) -> Option<NaiveDateTime> {
    epoch_datetime().checked_add_signed(Duration::microseconds(micros))
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value as a float, for numbers.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(f) => Some(*f),
            Value::Numeric(d) => d.to_f64(),
            _ => None,
        }
    }

    fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Int(i) => Some(Decimal::from(*i)),
            Value::Numeric(d) => Some(*d),
            Value::Float(f) => Decimal::from_f64(*f),
            _ => None,
        }
    }

    /// A total order over values of comparable types, for sorting: NULL sorts after
    /// every value (Postgres' default `NULLS LAST` ascending), NaN after every number.
    pub fn cmp_total(&self, other: &Value) -> Ordering {
        match (self, other) {
            (Value::Null, Value::Null) => Ordering::Equal,
            (Value::Null, _) => Ordering::Greater,
            (_, Value::Null) => Ordering::Less,
            _ => self.compare(other).unwrap_or(Ordering::Equal),
        }
    }

    /// SQL comparison of two non-NULL values; `None` when the types cannot compare.
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        Some(match (self, other) {
            (Bool(a), Bool(b)) => a.cmp(b),
            (Int(a), Int(b)) => a.cmp(b),
            (Numeric(a), Numeric(b)) => a.cmp(b),
            (Int(_) | Numeric(_), Int(_) | Numeric(_)) => {
                self.as_decimal()?.cmp(&other.as_decimal()?)
            }
            (Float(_) | Int(_) | Numeric(_), Float(_) | Int(_) | Numeric(_)) => {
                let (a, b) = (self.as_f64()?, other.as_f64()?);
                a.partial_cmp(&b)
                    .unwrap_or_else(|| a.is_nan().cmp(&b.is_nan()))
            }
            (Text(a), Text(b)) => a.cmp(b),
            (Bytes(a), Bytes(b)) => a.cmp(b),
            (Date(a), Date(b)) => a.cmp(b),
            (Timestamp(a) | TimestampTz(a), Timestamp(b) | TimestampTz(b)) => a.cmp(b),
            (Date(a), Timestamp(b) | TimestampTz(b)) => (i64::from(*a) * MICROS_PER_DAY).cmp(b),
            (Timestamp(a) | TimestampTz(a), Date(b)) => a.cmp(&(i64::from(*b) * MICROS_PER_DAY)),
            (Uuid(a), Uuid(b)) => a.cmp(b),
            _ => return None,
        })
    }

    /// The value in Postgres' text output format; `None` for NULL.
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Numeric(d) => d.to_string(),
            Value::Text(s) => s.clone(),
            Value::Bytes(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    let _ = write!(s, "{byte:02x}");
                }
                s
            }
            Value::Date(d) => match naive_from_date(*d) {
                Some(date) => date.format("%Y-%m-%d").to_string(),
                None => d.to_string(),
            },
            Value::Timestamp(t) => format_timestamp(*t, false),
            Value::TimestampTz(t) => format_timestamp(*t, true),
            Value::Uuid(u) => uuid::Uuid::from_bytes(*u).hyphenated().to_string(),
        })
    }

    /// Parses Postgres' text input format of `ty`.
    pub fn parse(ty: DataType, s: &str) -> Result<Value> {
        let invalid = || {
            Error::new(
                SqlState::InvalidTextRepresentation,
                format!("invalid input syntax for type {}: \"{s}\"", ty.name()),
            )
        };
        let t = s.trim();
        Ok(match ty {
            DataType::Bool => match t.to_ascii_lowercase().as_str() {
                "t" | "true" | "yes" | "y" | "on" | "1" => Value::Bool(true),
                "f" | "false" | "no" | "n" | "off" | "0" => Value::Bool(false),
                _ => return Err(invalid()),
            },
            DataType::Int2 | DataType::Int4 | DataType::Int8 | DataType::Oid => {
                let v: i64 = t.parse().map_err(|_| {
                    if !t.is_empty()
                        && t.trim_start_matches(['-', '+'])
                            .bytes()
                            .all(|b| b.is_ascii_digit())
                    {
                        out_of_range(ty)
                    } else {
                        invalid()
                    }
                })?;
                Value::Int(ty.check_int(v)?)
            }
            DataType::Float4 | DataType::Float8 => {
                let v = match t.to_ascii_lowercase().as_str() {
                    "nan" => f64::NAN,
                    "infinity" | "inf" | "+infinity" => f64::INFINITY,
                    "-infinity" | "-inf" => f64::NEG_INFINITY,
                    other => other.parse::<f64>().map_err(|_| invalid())?,
                };
                if ty == DataType::Float4 {
                    Value::Float(f64::from(v as f32))
                } else {
                    Value::Float(v)
                }
            }
            DataType::Numeric => Value::Numeric(parse_decimal(t).ok_or_else(invalid)?),
            DataType::Text | DataType::Name | DataType::Unknown => Value::Text(s.to_string()),
            DataType::Varchar(n) | DataType::Char(n) => {
                let v = Value::Text(s.to_string());
                return coerce_length(v, ty, n);
            }
            DataType::Bytea => Value::Bytes(parse_bytea(s).ok_or_else(invalid)?),
            DataType::Date => {
                let d = NaiveDate::parse_from_str(t, "%Y-%m-%d").map_err(|_| {
                    Error::new(
                        SqlState::InvalidDatetimeFormat,
                        format!("invalid input syntax for type date: \"{s}\""),
                    )
                })?;
                Value::Date(date_from_naive(d))
            }
            DataType::Timestamp => {
                Value::Timestamp(parse_timestamp(t, false).ok_or_else(|| {
                    Error::new(
                        SqlState::InvalidDatetimeFormat,
                        format!("invalid input syntax for type timestamp: \"{s}\""),
                    )
                })?)
            }
            DataType::TimestampTz => {
                Value::TimestampTz(parse_timestamp(t, true).ok_or_else(|| {
                    Error::new(
                        SqlState::InvalidDatetimeFormat,
                        format!("invalid input syntax for type timestamp with time zone: \"{s}\""),
                    )
                })?)
            }
            DataType::Uuid => {
                Value::Uuid(*uuid::Uuid::parse_str(t).map_err(|_| invalid())?.as_bytes())
            }
        })
    }

    /// Casts the value to `ty` (SQL's CAST and the implicit assignment casts).
    pub fn cast(self, ty: DataType) -> Result<Value> {
        use DataType as T;
        if self.is_null() {
            return Ok(Value::Null);
        }
        Ok(match (self, ty) {
            (v, T::Unknown) => v,
            (Value::Text(s), ty) => Value::parse(ty, &s)?,
            (v, T::Text | T::Name) => Value::Text(v.to_text().unwrap_or_default()),
            (v, T::Varchar(n) | T::Char(n)) => {
                let text = match v {
                    Value::Bool(b) => if b { "true" } else { "false" }.to_string(),
                    v => v.to_text().unwrap_or_default(),
                };
                // An explicit cast truncates; an assignment checks (done by the writer).
                let text = match n {
                    Some(n) => text.chars().take(n as usize).collect(),
                    None => text,
                };
                Value::Text(text)
            }
            (Value::Int(i), t) if t.is_integer() => Value::Int(t.check_int(i)?),
            (Value::Int(i), T::Float4) => Value::Float(f64::from(i as f32)),
            (Value::Int(i), T::Float8) => Value::Float(i as f64),
            (Value::Int(i), T::Numeric) => Value::Numeric(Decimal::from(i)),
            (Value::Int(i), T::Bool) => Value::Bool(i != 0),
            (Value::Float(f), t) if t.is_integer() => {
                let r = f.round_ties_even();
                if !r.is_finite() || r < i64::MIN as f64 || r >= i64::MAX as f64 {
                    return Err(out_of_range(t));
                }
                Value::Int(t.check_int(r as i64)?)
            }
            (Value::Float(f), T::Float4) => Value::Float(f64::from(f as f32)),
            (Value::Float(f), T::Float8) => Value::Float(f),
            (Value::Float(f), T::Numeric) => {
                Value::Numeric(Decimal::from_f64(f).ok_or_else(|| {
                    Error::new(SqlState::NumericValueOutOfRange, "numeric field overflow")
                })?)
            }
            (Value::Numeric(d), t) if t.is_integer() => {
                let r = d.round_dp_with_strategy(
                    0,
                    rust_decimal::RoundingStrategy::MidpointAwayFromZero,
                );
                Value::Int(t.check_int(r.to_i64().ok_or_else(|| out_of_range(t))?)?)
            }
            (Value::Numeric(d), T::Float4 | T::Float8) => {
                Value::Float(d.to_f64().unwrap_or(f64::NAN))
            }
            (Value::Numeric(d), T::Numeric) => Value::Numeric(d),
            (Value::Bool(b), T::Bool) => Value::Bool(b),
            (Value::Bool(b), t) if t.is_integer() => Value::Int(i64::from(b)),
            (Value::Bytes(b), T::Bytea) => Value::Bytes(b),
            (Value::Date(d), T::Date) => Value::Date(d),
            (Value::Date(d), T::Timestamp) => Value::Timestamp(i64::from(d) * MICROS_PER_DAY),
            (Value::Date(d), T::TimestampTz) => Value::TimestampTz(i64::from(d) * MICROS_PER_DAY),
            (Value::Timestamp(t) | Value::TimestampTz(t), T::Date) => {
                Value::Date(t.div_euclid(MICROS_PER_DAY) as i32)
            }
            (Value::Timestamp(t) | Value::TimestampTz(t), T::Timestamp) => Value::Timestamp(t),
            (Value::Timestamp(t) | Value::TimestampTz(t), T::TimestampTz) => Value::TimestampTz(t),
            (Value::Uuid(u), T::Uuid) => Value::Uuid(u),
            (v, ty) => {
                return Err(Error::new(
                    SqlState::DatatypeMismatch,
                    format!("cannot cast {} to {}", v.type_name(), ty.name()),
                ));
            }
        })
    }

    /// The name of the value's type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "unknown",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "double precision",
            Value::Numeric(_) => "numeric",
            Value::Text(_) => "text",
            Value::Bytes(_) => "bytea",
            Value::Date(_) => "date",
            Value::Timestamp(_) => "timestamp",
            Value::TimestampTz(_) => "timestamptz",
            Value::Uuid(_) => "uuid",
        }
    }
}

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Checks (or, for CHAR, pads) the length of a string written to a `VARCHAR(n)` or
/// `CHAR(n)` column.
pub fn coerce_length(v: Value, ty: DataType, n: Option<u32>) -> Result<Value> {
    let Value::Text(s) = v else { return Ok(v) };
    let Some(n) = n else {
        return Ok(Value::Text(s));
    };
    let len = s.chars().count();
    if len > n as usize {
        // Postgres allows trailing spaces beyond the limit.
        let trimmed: String = s.trim_end_matches(' ').to_string();
        if trimmed.chars().count() > n as usize {
            return Err(Error::new(
                SqlState::StringDataRightTruncation,
                format!("value too long for type {}", ty.name()),
            ));
        }
        return Ok(Value::Text(s.chars().take(n as usize).collect()));
    }
    if matches!(ty, DataType::Char(_)) && len < n as usize {
        let mut s = s;
        s.extend(std::iter::repeat_n(' ', n as usize - len));
        return Ok(Value::Text(s));
    }
    Ok(Value::Text(s))
}

/// Postgres' float8 output with `extra_float_digits = 1`: the shortest text that reads
/// back as the same float, in exponent form outside [1e-4, 1e15).
pub fn format_float(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let abs = f.abs();
    if (1e-4..1e15).contains(&abs) {
        return format!("{f}");
    }
    // Rust's `{:e}` is shortest round-trip too: "1e21", "1.5e-7".
    let s = format!("{f:e}");
    let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn parse_decimal(s: &str) -> Option<Decimal> {
    if s.contains(['e', 'E']) {
        Decimal::from_scientific(s).ok()
    } else {
        s.parse::<Decimal>().ok()
    }
}

fn parse_bytea(s: &str) -> Option<Vec<u8>> {
    if let Some(hex) = s.strip_prefix("\\x") {
        let hex = hex.as_bytes();
        if hex.len() % 2 != 0 {
            return None;
        }
        hex.chunks(2)
            .map(|c| u8::from_str_radix(std::str::from_utf8(c).ok()?, 16).ok())
            .collect()
    } else {
        // The escape format: backslash-octal and doubled backslashes.
        let mut out = Vec::with_capacity(s.len());
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' {
                if b.get(i + 1) == Some(&b'\\') {
                    out.push(b'\\');
                    i += 2;
                } else {
                    let oct = std::str::from_utf8(b.get(i + 1..i + 4)?).ok()?;
                    out.push(u8::from_str_radix(oct, 8).ok()?);
                    i += 4;
                }
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        Some(out)
    }
}

fn format_timestamp(micros: i64, tz: bool) -> String {
    let Some(t) = naive_from_ts(micros) else {
        return micros.to_string();
    };
    let mut s = t.format("%Y-%m-%d %H:%M:%S").to_string();
    let frac = t.nanosecond() / 1000;
    if frac != 0 {
        let f = format!("{frac:06}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    if tz {
        s.push_str("+00");
    }
    s
}

fn parse_timestamp(s: &str, tz: bool) -> Option<i64> {
    if tz && let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(ts_from_naive(t.naive_utc()));
    }
    let formats = ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"];
    for f in formats {
        if let Ok(t) = DateTime::parse_from_str(s, f) {
            return Some(ts_from_naive(t.naive_utc()));
        }
    }
    let formats = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ];
    for f in formats {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Some(ts_from_naive(t));
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .map(|d| ts_from_naive(d.and_time(NaiveTime::MIN)))
}

/// The scale Postgres gives the quotient of two numerics (`select_div_scale`): at
/// least 16 significant digits, and no fewer decimals than either operand shows.
pub fn div_scale(a: &Decimal, b: &Decimal) -> u32 {
    // Postgres counts in base-10000 digits: the weight of a value is the position of
    // its first non-zero base-10000 digit.
    fn weight_and_first(d: &Decimal) -> (i32, u32) {
        let d = d.abs();
        if d.is_zero() {
            return (0, 0);
        }
        let digits_before_point = {
            let int = d.trunc();
            if int.is_zero() {
                0
            } else {
                int.to_string().len() as i32
            }
        };
        if digits_before_point > 0 {
            let w = (digits_before_point - 1) / 4;
            let first = (d / Decimal::from(10_000i64.pow(w as u32))).trunc();
            (w, first.to_u32().unwrap_or(0))
        } else {
            // Count leading zero decimals.
            let mut w = -1;
            let mut x = d * Decimal::from(10_000);
            while x.trunc().is_zero() && w > -8 {
                x *= Decimal::from(10_000);
                w -= 1;
            }
            (w, x.trunc().to_u32().unwrap_or(0))
        }
    }
    let (w1, f1) = weight_and_first(a);
    let (w2, f2) = weight_and_first(b);
    let mut qweight = w1 - w2;
    if f1 < f2 {
        qweight -= 1;
    }
    let rscale = 16 - qweight * 4;
    let rscale = rscale.max(a.scale() as i32).max(b.scale() as i32).max(0);
    rscale.min(28) as u32
}

/// Rounds a decimal to `scale` decimals, half away from zero, keeping trailing zeros.
pub fn rescale(mut d: Decimal, scale: u32) -> Decimal {
    d = d.round_dp_with_strategy(scale, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
    d.rescale(scale);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_postgres() {
        assert_eq!(format_float(1.5), "1.5");
        assert_eq!(format_float(0.1), "0.1");
        assert_eq!(format_float(1e21), "1e+21");
        assert_eq!(format_float(1.5e-7), "1.5e-07");
        assert_eq!(format_float(f64::NAN), "NaN");
        assert_eq!(format_float(-0.0), "-0");
        assert_eq!(format_float(100.0), "100");
    }

    #[test]
    fn numeric_division_scale_matches_postgres() {
        // avg(int) of 30 values summing to 5000: 166.6666666666666667 (16 decimals).
        let q = Decimal::from(5000) / Decimal::from(30);
        let s = div_scale(&Decimal::from(5000), &Decimal::from(30));
        assert_eq!(rescale(q, s).to_string(), "166.6666666666666667");
        // 1/3 = 0.33333333333333333333 (20 decimals).
        let s = div_scale(&Decimal::from(1), &Decimal::from(3));
        assert_eq!(s, 20);
        // 100000 / 3: weight 1 against 0 -> 12 decimals.
        let s = div_scale(&Decimal::from(100_000), &Decimal::from(3));
        assert_eq!(s, 12);
    }

    #[test]
    fn dates_and_timestamps_round_trip() {
        let d = Value::parse(DataType::Date, "2024-02-29").unwrap();
        assert_eq!(d.to_text().unwrap(), "2024-02-29");
        let t = Value::parse(DataType::Timestamp, "2024-02-29 12:34:56.5").unwrap();
        assert_eq!(t.to_text().unwrap(), "2024-02-29 12:34:56.5");
        let tz = Value::parse(DataType::TimestampTz, "2024-02-29 12:34:56+02").unwrap();
        assert_eq!(tz.to_text().unwrap(), "2024-02-29 10:34:56+00");
        assert_eq!(
            Value::parse(DataType::Date, "2000-01-01").unwrap(),
            Value::Date(0)
        );
    }

    #[test]
    fn text_input_errors_carry_sqlstate() {
        let e = Value::parse(DataType::Int4, "abc").unwrap_err();
        assert_eq!(e.code, SqlState::InvalidTextRepresentation);
        let e = Value::parse(DataType::Int2, "40000").unwrap_err();
        assert_eq!(e.code, SqlState::NumericValueOutOfRange);
        let e = Value::parse(DataType::Varchar(Some(2)), "abc").unwrap_err();
        assert_eq!(e.code, SqlState::StringDataRightTruncation);
    }

    #[test]
    fn numbers_compare_across_representations() {
        assert_eq!(Value::Int(1), Value::Float(1.0));
        assert_eq!(Value::Int(1), Value::Numeric(Decimal::new(100, 2)));
        assert!(Value::Int(2).cmp_total(&Value::Null) == Ordering::Less);
    }
}
