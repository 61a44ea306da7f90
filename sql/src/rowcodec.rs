//! Rows and index entries as KV pairs.
//!
//! ```text
//!   primary index   /Table/<id>/1/<pk columns>             -> non-key columns (below)
//!   secondary       /Table/<id>/<index>/<columns>/<pk ...>  -> (empty)
//! ```
//!
//! Key columns use the order-preserving encoding of [`cairn_kv::keys::encoding`], so a
//! span of primary keys is a span of KV keys. A row's value lists its non-NULL,
//! non-key columns as `(column id, value)`, so adding a column needs no rewrite and a
//! NULL costs nothing. Secondary index keys end with the primary key, so two rows with
//! equal indexed values still have two entries, and an entry leads to its row.
//!
//! HAZARD: the value encoding below is on-disk format.

use cairn_kv::keys::{self, Datum, Direction};
use rust_decimal::Decimal;

use crate::catalog::{IndexDesc, TableDesc};
use crate::error::{Error, Result, SqlState, internal};
use crate::types::{DataType, Value};

/// A value as a key part. NUMERIC has no order-preserving encoding yet, and is refused
/// as a key column when the table or index is created.
pub fn to_datum(v: &Value) -> Result<Datum> {
    Ok(match v {
        Value::Null => Datum::Null,
        Value::Bool(b) => Datum::Bool(*b),
        Value::Int(i) => Datum::Int(*i),
        Value::Float(f) => Datum::Float(*f),
        Value::Text(s) => Datum::Text(s.clone()),
        Value::Bytes(b) => Datum::Bytes(b.clone()),
        Value::Date(d) => Datum::Date(*d),
        Value::Timestamp(t) => Datum::Timestamp(*t),
        Value::TimestampTz(t) => Datum::TimestampTz(*t),
        Value::Uuid(u) => Datum::Uuid(*u),
        Value::Numeric(_) => {
            return Err(Error::new(
                SqlState::FeatureNotSupported,
                "NUMERIC key columns are not supported",
            ));
        }
    })
}

pub fn from_datum(d: Datum) -> Value {
    match d {
        Datum::Null => Value::Null,
        Datum::Bool(b) => Value::Bool(b),
        Datum::Int(i) => Value::Int(i),
        Datum::Float(f) => Value::Float(f),
        Datum::Text(s) => Value::Text(s),
        Datum::Bytes(b) => Value::Bytes(b),
        Datum::Date(d) => Value::Date(d),
        Datum::Timestamp(t) => Value::Timestamp(t),
        Datum::TimestampTz(t) => Value::TimestampTz(t),
        Datum::Uuid(u) => Value::Uuid(u),
    }
}

/// Whether a column of this type can be part of a key.
pub fn keyable(ty: DataType) -> bool {
    ty != DataType::Numeric
}

/// Appends the key encoding of `values` (one per index column) to `key`.
pub fn encode_key_values(key: &mut Vec<u8>, values: &[(&Value, Direction)]) -> Result<()> {
    for (v, dir) in values {
        keys::encode_datum(key, &to_datum(v)?, *dir);
    }
    Ok(())
}

/// The primary key of a row (all columns, in table column order).
pub fn primary_key(table: &TableDesc, row: &[Value]) -> Result<Vec<u8>> {
    let mut key = keys::index_prefix(table.id, table.primary.id);
    for (col, dir) in &table.primary.columns {
        let pos = table.column_position(*col)?;
        keys::encode_datum(&mut key, &to_datum(&row[pos])?, *dir);
    }
    Ok(key)
}

/// The key of a row's entry in a secondary index.
pub fn index_key(table: &TableDesc, index: &IndexDesc, row: &[Value]) -> Result<Vec<u8>> {
    let mut key = keys::index_prefix(table.id, index.id);
    for (col, dir) in &index.columns {
        let pos = table.column_position(*col)?;
        keys::encode_datum(&mut key, &to_datum(&row[pos])?, *dir);
    }
    for (col, dir) in &table.primary.columns {
        if index.columns.iter().any(|(c, _)| c == col) {
            continue;
        }
        let pos = table.column_position(*col)?;
        keys::encode_datum(&mut key, &to_datum(&row[pos])?, *dir);
    }
    Ok(key)
}

/// The prefix of an index's entries whose indexed columns are `values`: the span a
/// uniqueness check or an equality lookup reads.
pub fn index_value_prefix(
    table: &TableDesc,
    index: &IndexDesc,
    values: &[&Value],
) -> Result<Vec<u8>> {
    let mut key = keys::index_prefix(table.id, index.id);
    for ((_, dir), v) in index.columns.iter().zip(values) {
        keys::encode_datum(&mut key, &to_datum(v)?, *dir);
    }
    Ok(key)
}

/// The value of a row's primary index entry: its non-key, non-NULL columns.
pub fn encode_row_value(table: &TableDesc, row: &[Value]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(16 * row.len());
    for (col, v) in table.columns.iter().zip(row) {
        if v.is_null() || table.primary.columns.iter().any(|(c, _)| *c == col.id) {
            continue;
        }
        keys::encode_uvarint(&mut buf, u64::from(col.id));
        encode_value(&mut buf, v);
    }
    buf
}

/// Decodes a primary index entry into a row (all columns, in table column order).
pub fn decode_row(table: &TableDesc, key: &[u8], value: &[u8]) -> Result<Vec<Value>> {
    let mut row = vec![Value::Null; table.columns.len()];
    let prefix_len = keys::index_prefix(table.id, table.primary.id).len();
    let mut rest = key
        .get(prefix_len..)
        .ok_or_else(|| internal("row key too short"))?;
    for (col, dir) in &table.primary.columns {
        let datum = keys::decode_datum(&mut rest, *dir).map_err(|e| internal(e.to_string()))?;
        row[table.column_position(*col)?] = from_datum(datum);
    }
    let mut rest = value;
    while !rest.is_empty() {
        let id = keys::decode_uvarint(&mut rest).map_err(|e| internal(e.to_string()))?;
        let v = decode_value(&mut rest)?;
        // A column dropped since the row was written is skipped.
        if let Ok(pos) = table.column_position(id as u32) {
            row[pos] = v;
        }
    }
    Ok(row)
}

/// Decodes the primary key columns at the end of a secondary index key, returning the
/// row's primary key.
pub fn primary_key_from_index_key(
    table: &TableDesc,
    index: &IndexDesc,
    key: &[u8],
) -> Result<Vec<u8>> {
    let prefix_len = keys::index_prefix(table.id, index.id).len();
    let mut rest = key
        .get(prefix_len..)
        .ok_or_else(|| internal("index key too short"))?;
    let mut by_col = Vec::new();
    for (col, dir) in &index.columns {
        let d = keys::decode_datum(&mut rest, *dir).map_err(|e| internal(e.to_string()))?;
        by_col.push((*col, d));
    }
    for (col, dir) in &table.primary.columns {
        if index.columns.iter().any(|(c, _)| c == col) {
            continue;
        }
        let d = keys::decode_datum(&mut rest, *dir).map_err(|e| internal(e.to_string()))?;
        by_col.push((*col, d));
    }
    let mut pk = keys::index_prefix(table.id, table.primary.id);
    for (col, dir) in &table.primary.columns {
        let d = by_col
            .iter()
            .find(|(c, _)| c == col)
            .map(|(_, d)| d)
            .ok_or_else(|| internal("index key lacks a primary key column"))?;
        keys::encode_datum(&mut pk, d, *dir);
    }
    Ok(pk)
}

const TAG_BOOL_FALSE: u8 = 1;
const TAG_BOOL_TRUE: u8 = 2;
const TAG_INT: u8 = 3;
const TAG_FLOAT: u8 = 4;
const TAG_NUMERIC: u8 = 5;
const TAG_TEXT: u8 = 6;
const TAG_BYTES: u8 = 7;
const TAG_DATE: u8 = 8;
const TAG_TIMESTAMP: u8 = 9;
const TAG_TIMESTAMPTZ: u8 = 10;
const TAG_UUID: u8 = 11;
const TAG_NULL: u8 = 12;

/// Appends a value's storage encoding (not order-preserving): a tag and a body.
pub fn encode_value(buf: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => buf.push(TAG_NULL),
        Value::Bool(false) => buf.push(TAG_BOOL_FALSE),
        Value::Bool(true) => buf.push(TAG_BOOL_TRUE),
        Value::Int(i) => {
            buf.push(TAG_INT);
            buf.extend_from_slice(&i.to_be_bytes());
        }
        Value::Float(f) => {
            buf.push(TAG_FLOAT);
            buf.extend_from_slice(&f.to_bits().to_be_bytes());
        }
        Value::Numeric(d) => {
            buf.push(TAG_NUMERIC);
            buf.extend_from_slice(&d.serialize());
        }
        Value::Text(s) => {
            buf.push(TAG_TEXT);
            keys::encode_uvarint(buf, s.len() as u64);
            buf.extend_from_slice(s.as_bytes());
        }
        Value::Bytes(b) => {
            buf.push(TAG_BYTES);
            keys::encode_uvarint(buf, b.len() as u64);
            buf.extend_from_slice(b);
        }
        Value::Date(d) => {
            buf.push(TAG_DATE);
            buf.extend_from_slice(&d.to_be_bytes());
        }
        Value::Timestamp(t) => {
            buf.push(TAG_TIMESTAMP);
            buf.extend_from_slice(&t.to_be_bytes());
        }
        Value::TimestampTz(t) => {
            buf.push(TAG_TIMESTAMPTZ);
            buf.extend_from_slice(&t.to_be_bytes());
        }
        Value::Uuid(u) => {
            buf.push(TAG_UUID);
            buf.extend_from_slice(u);
        }
    }
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> Result<&'a [u8]> {
    if input.len() < n {
        return Err(internal("stored value truncated"));
    }
    let (head, rest) = input.split_at(n);
    *input = rest;
    Ok(head)
}

fn take_array<const N: usize>(input: &mut &[u8]) -> Result<[u8; N]> {
    let mut out = [0u8; N];
    out.copy_from_slice(take(input, N)?);
    Ok(out)
}

/// Decodes one value written by [`encode_value`].
pub fn decode_value(input: &mut &[u8]) -> Result<Value> {
    let tag = take(input, 1)?[0];
    Ok(match tag {
        TAG_NULL => Value::Null,
        TAG_BOOL_FALSE => Value::Bool(false),
        TAG_BOOL_TRUE => Value::Bool(true),
        TAG_INT => Value::Int(i64::from_be_bytes(take_array(input)?)),
        TAG_FLOAT => Value::Float(f64::from_bits(u64::from_be_bytes(take_array(input)?))),
        TAG_NUMERIC => Value::Numeric(Decimal::deserialize(take_array(input)?)),
        TAG_TEXT => {
            let len = keys::decode_uvarint(input).map_err(|e| internal(e.to_string()))?;
            let bytes = take(input, len as usize)?;
            Value::Text(
                String::from_utf8(bytes.to_vec()).map_err(|_| internal("stored text not UTF-8"))?,
            )
        }
        TAG_BYTES => {
            let len = keys::decode_uvarint(input).map_err(|e| internal(e.to_string()))?;
            Value::Bytes(take(input, len as usize)?.to_vec())
        }
        TAG_DATE => Value::Date(i32::from_be_bytes(take_array(input)?)),
        TAG_TIMESTAMP => Value::Timestamp(i64::from_be_bytes(take_array(input)?)),
        TAG_TIMESTAMPTZ => Value::TimestampTz(i64::from_be_bytes(take_array(input)?)),
        TAG_UUID => Value::Uuid(take_array(input)?),
        other => return Err(internal(format!("unknown stored value tag {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        let values = [
            Value::Null,
            Value::Bool(true),
            Value::Int(-5),
            Value::Float(2.5),
            Value::Numeric(Decimal::new(12345, 3)),
            Value::Text("héllo".into()),
            Value::Bytes(vec![0, 1, 255]),
            Value::Date(-3),
            Value::Timestamp(1_000_000),
            Value::TimestampTz(-7),
            Value::Uuid([7; 16]),
        ];
        let mut buf = Vec::new();
        for v in &values {
            encode_value(&mut buf, v);
        }
        let mut input = buf.as_slice();
        for v in &values {
            let got = decode_value(&mut input).unwrap();
            assert_eq!(format!("{got:?}"), format!("{v:?}"));
        }
        assert!(input.is_empty());
        assert!(decode_value(&mut &[TAG_INT, 1][..]).is_err());
        assert!(decode_value(&mut &[99][..]).is_err());
    }
}
