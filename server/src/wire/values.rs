//! SQL values on the wire: Postgres' text and binary formats, by type.
//!
//! Cairn's internal representations were chosen to match the binary formats where
//! Postgres has a simple one (dates as days since 2000-01-01, timestamps as
//! microseconds since then), so most conversions are a byte-order change. NUMERIC's
//! base-10000 format comes from rust_decimal's `postgres-types` implementation.

use bytes::{BufMut, BytesMut};
use cairn_sql::error::{Error, SqlState};
use cairn_sql::{DataType, Value};
use postgres_types::{FromSql, ToSql, Type};
use rust_decimal::Decimal;

/// Text (0) or binary (1), per column or parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Text,
    Binary,
}

impl Format {
    pub fn from_code(code: i16) -> Result<Format, Error> {
        match code {
            0 => Ok(Format::Text),
            1 => Ok(Format::Binary),
            other => Err(Error::new(
                SqlState::ProtocolViolation,
                format!("invalid format code {other}"),
            )),
        }
    }

    pub fn code(self) -> i16 {
        match self {
            Format::Text => 0,
            Format::Binary => 1,
        }
    }

    /// The format of column (or parameter) `i` from a Bind message's codes: none
    /// means text, one applies to all, otherwise one per column.
    pub fn nth(codes: &[i16], i: usize) -> Result<Format, Error> {
        match codes.len() {
            0 => Ok(Format::Text),
            1 => Format::from_code(codes[0]),
            _ => Format::from_code(codes.get(i).copied().unwrap_or(0)),
        }
    }
}

fn bad_binary(ty: DataType) -> Error {
    Error::new(
        SqlState::InvalidParameterValue,
        format!("incorrect binary data format for type {}", ty.name()),
    )
}

/// Appends one value of a DataRow: its length (-1 for NULL) and bytes.
pub fn encode(buf: &mut BytesMut, v: &Value, ty: DataType, format: Format) -> Result<(), Error> {
    if v.is_null() {
        buf.put_i32(-1);
        return Ok(());
    }
    let len_at = buf.len();
    buf.put_i32(0);
    match format {
        Format::Text => {
            let text = v.to_text().unwrap_or_default();
            buf.put_slice(text.as_bytes());
        }
        Format::Binary => encode_binary(buf, v, ty)?,
    }
    let len = (buf.len() - len_at - 4) as i32;
    buf[len_at..len_at + 4].copy_from_slice(&len.to_be_bytes());
    Ok(())
}

fn encode_binary(buf: &mut BytesMut, v: &Value, ty: DataType) -> Result<(), Error> {
    // The value is cast to the column's type first: the planner's types are the
    // contract, and a value may be held in a wider representation.
    let v = v.clone().cast(ty)?;
    match (ty, &v) {
        (DataType::Bool, Value::Bool(b)) => buf.put_u8(u8::from(*b)),
        (DataType::Int2, Value::Int(i)) => buf.put_i16(*i as i16),
        (DataType::Int4, Value::Int(i)) => buf.put_i32(*i as i32),
        (DataType::Oid, Value::Int(i)) => buf.put_u32(*i as u32),
        (DataType::Int8, Value::Int(i)) => buf.put_i64(*i),
        (DataType::Float4, Value::Float(f)) => buf.put_f32(*f as f32),
        (DataType::Float8, Value::Float(f)) => buf.put_f64(*f),
        (DataType::Numeric, Value::Numeric(d)) => {
            d.to_sql(&Type::NUMERIC, buf)
                .map_err(|e| Error::new(SqlState::InternalError, e.to_string()))?;
        }
        (DataType::Bytea, Value::Bytes(b)) => buf.put_slice(b),
        (DataType::Date, Value::Date(d)) => buf.put_i32(*d),
        (
            DataType::Timestamp | DataType::TimestampTz,
            Value::Timestamp(t) | Value::TimestampTz(t),
        ) => buf.put_i64(*t),
        (DataType::Uuid, Value::Uuid(u)) => buf.put_slice(u),
        (_, v) => {
            let text = v.to_text().unwrap_or_default();
            buf.put_slice(text.as_bytes());
        }
    }
    Ok(())
}

/// Decodes a Bind parameter of type `ty`.
pub fn decode(bytes: Option<&[u8]>, ty: DataType, format: Format) -> Result<Value, Error> {
    let Some(b) = bytes else {
        return Ok(Value::Null);
    };
    match format {
        Format::Text => {
            let s = std::str::from_utf8(b).map_err(|_| {
                Error::new(
                    SqlState::InvalidTextRepresentation,
                    "invalid byte sequence for encoding \"UTF8\"",
                )
            })?;
            Value::parse(ty, s)
        }
        Format::Binary => decode_binary(b, ty),
    }
}

fn decode_binary(b: &[u8], ty: DataType) -> Result<Value, Error> {
    let arr = |n: usize| -> Result<&[u8], Error> {
        if b.len() == n {
            Ok(b)
        } else {
            Err(bad_binary(ty))
        }
    };
    Ok(match ty {
        DataType::Bool => Value::Bool(arr(1)?[0] != 0),
        DataType::Int2 => {
            let a = arr(2)?;
            Value::Int(i64::from(i16::from_be_bytes([a[0], a[1]])))
        }
        DataType::Int4 => Value::Int(i64::from(i32::from_be_bytes(
            arr(4)?.try_into().map_err(|_| bad_binary(ty))?,
        ))),
        DataType::Oid => Value::Int(i64::from(u32::from_be_bytes(
            arr(4)?.try_into().map_err(|_| bad_binary(ty))?,
        ))),
        DataType::Int8 => Value::Int(i64::from_be_bytes(
            arr(8)?.try_into().map_err(|_| bad_binary(ty))?,
        )),
        DataType::Float4 => Value::Float(f64::from(f32::from_be_bytes(
            arr(4)?.try_into().map_err(|_| bad_binary(ty))?,
        ))),
        DataType::Float8 => Value::Float(f64::from_be_bytes(
            arr(8)?.try_into().map_err(|_| bad_binary(ty))?,
        )),
        DataType::Numeric => {
            Value::Numeric(Decimal::from_sql(&Type::NUMERIC, b).map_err(|_| bad_binary(ty))?)
        }
        DataType::Bytea => Value::Bytes(b.to_vec()),
        DataType::Date => Value::Date(i32::from_be_bytes(
            arr(4)?.try_into().map_err(|_| bad_binary(ty))?,
        )),
        DataType::Timestamp => Value::Timestamp(i64::from_be_bytes(
            arr(8)?.try_into().map_err(|_| bad_binary(ty))?,
        )),
        DataType::TimestampTz => Value::TimestampTz(i64::from_be_bytes(
            arr(8)?.try_into().map_err(|_| bad_binary(ty))?,
        )),
        DataType::Uuid => Value::Uuid(arr(16)?.try_into().map_err(|_| bad_binary(ty))?),
        DataType::Text
        | DataType::Varchar(_)
        | DataType::Char(_)
        | DataType::Name
        | DataType::Unknown => {
            Value::Text(String::from_utf8(b.to_vec()).map_err(|_| bad_binary(ty))?)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value, ty: DataType) -> Value {
        let mut buf = BytesMut::new();
        encode(&mut buf, &v, ty, Format::Binary).unwrap();
        let len = i32::from_be_bytes(buf[..4].try_into().unwrap());
        assert_eq!(len as usize, buf.len() - 4);
        decode(Some(&buf[4..]), ty, Format::Binary).unwrap()
    }

    #[test]
    fn binary_values_round_trip() {
        let cases = [
            (Value::Bool(true), DataType::Bool),
            (Value::Int(-7), DataType::Int2),
            (Value::Int(1 << 20), DataType::Int4),
            (Value::Int(i64::MIN), DataType::Int8),
            (Value::Float(1.5), DataType::Float8),
            (Value::Float(0.25), DataType::Float4),
            (Value::Numeric(Decimal::new(-123456, 3)), DataType::Numeric),
            (Value::Text("héllo".into()), DataType::Text),
            (Value::Bytes(vec![0, 255]), DataType::Bytea),
            (Value::Date(-10), DataType::Date),
            (Value::Timestamp(123_456_789), DataType::Timestamp),
            (Value::Uuid([9; 16]), DataType::Uuid),
        ];
        for (v, ty) in cases {
            assert_eq!(round_trip(v.clone(), ty), v, "{ty:?}");
        }
    }

    #[test]
    fn malformed_binary_parameters_are_errors() {
        assert!(decode(Some(&[1, 2, 3]), DataType::Int4, Format::Binary).is_err());
        assert!(decode(Some(&[0xff]), DataType::Text, Format::Binary).is_err());
        assert!(decode(Some(b"x"), DataType::Int8, Format::Text).is_err());
        assert_eq!(
            decode(None, DataType::Int8, Format::Binary).unwrap(),
            Value::Null
        );
    }

    #[test]
    fn nulls_have_length_minus_one() {
        let mut buf = BytesMut::new();
        encode(&mut buf, &Value::Null, DataType::Int4, Format::Binary).unwrap();
        assert_eq!(&buf[..], &(-1i32).to_be_bytes());
    }
}
