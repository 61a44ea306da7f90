//! Order-preserving ("memcomparable") encodings of key parts: escaped byte strings, an
//! ordered unsigned varint for ids, and SQL values in either sort direction.
//!
//! The storage engine only knows one order, the byte order of keys (memcmp). For an
//! index scan to return rows in SQL order, every encoding here keeps order: for two
//! values `a` and `b` of one SQL type, `a < b` in SQL order exactly when
//! `encode(a) < encode(b)` byte-wise. Every encoding is also self-delimiting (no
//! encoding is a proper prefix of another), which gives two more properties for free:
//!
//! - the concatenation of column encodings orders rows as tuples, column by column,
//!   because the first differing byte always falls inside the first differing column;
//! - inverting every byte (`b ^ 0xff`) of an encoding exactly reverses its order, which
//!   is how a `DESC` column is stored.
//!
//! A datum is a tag byte and a body. In ascending order:
//!
//! ```text
//!   datum             tag   body                                         size
//!   ───────────────   ────  ───────────────────────────────────────────  ─────────
//!   Bool              0x10  0x00 (false) or 0x01 (true)                  2
//!   Int(i64)          0x11  i, sign bit flipped, big-endian              9
//!   Float(f64)        0x12  ordered bits (below), big-endian             9
//!   Date(i32)         0x13  days, sign bit flipped, big-endian           5
//!   Timestamp(i64)    0x14  microseconds, sign bit flipped, big-endian   9
//!   TimestampTz(i64)  0x15  microseconds (UTC), as Timestamp             9
//!   Text(String)      0x16  UTF-8 bytes, escaped                         len + 3..
//!   Bytes(Vec<u8>)    0x17  bytes, escaped                               len + 3..
//!   Uuid([u8; 16])    0x18  the 16 bytes                                 17
//!   Null              0x7f  (none)                                       1
//! ```
//!
//! One column holds one type, so the order of the type tags among themselves does not
//! matter, except for `Null`: its tag is above every other, so NULL sorts after every
//! value ascending and before every value descending, as Postgres does by default
//! (`ASC NULLS LAST`, `DESC NULLS FIRST`). Every ascending tag is below 0x80 and every
//! inverted (descending) one is at or above 0x80, so a reader that does not know a
//! column's direction can tell it from the tag, as [`crate::keys::pretty`] does.
//!
//! Floats: the IEEE bits of a positive float already sort like the float, and those of
//! a negative float sort backwards. Setting the sign bit of positives and inverting all
//! bits of negatives gives `-inf < negatives < 0 < positives < +inf < NaN`. Before that,
//! `-0.0` becomes `+0.0` (they are equal in SQL, so they must be one key) and every NaN
//! becomes one canonical quiet NaN.
//!
//! Escaped bytes: each 0x00 is written 0x00 0xff and the string ends with 0x00 0x01.
//! The terminator sorts below every escaped or ordinary byte that could follow, so a
//! string sorts before its extensions: `"a" < "a\0" < "ab"`.
//!
//! Ordered varint (table and index ids, system key ids): a value up to 0xef is one
//! byte; a larger one is the byte `0xf0 + (n - 1)` followed by its `n` big-endian bytes
//! without leading zeros (`n` in 1..=8). Longer encodings have larger first bytes, so
//! the byte order is the numeric order, and small ids take one byte.
//!
//! Every value has exactly one encoding, and decoding accepts only that one (minimal
//! varints, one zero, one NaN, no escapes other than 0x00 0xff and 0x00 0x01): two keys
//! that decode to equal values are equal bytes. Decoding checks every length first and
//! returns [`Error::Decode`] on malformed input; it never panics.
//!
//! Not yet: DECIMAL (it needs a variable-length encoding of exponent and mantissa; a
//! follow-up), and collations other than "C": text sorts by its UTF-8 bytes, which is
//! Unicode code point order.
//!
//! HAZARD: these bytes are the on-disk format of every index. Changing a tag, the float
//! mapping or the escape scheme silently reorders or orphans stored keys.

use crate::error::{Error, Result};

const ESCAPE: u8 = 0x00;
const ESCAPED_00: u8 = 0xff;
const TERMINATOR: u8 = 0x01;

/// Appends `bytes` escaped so that the result sorts like `bytes` and no encoding is a
/// prefix of another: each 0x00 becomes 0x00 0xff, and 0x00 0x01 terminates.
pub fn encode_bytes_escaped(buf: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        buf.push(b);
        if b == ESCAPE {
            buf.push(ESCAPED_00);
        }
    }
    buf.push(ESCAPE);
    buf.push(TERMINATOR);
}

/// Decodes [`encode_bytes_escaped`]'s output from the front of `input`, advancing it.
/// On error `input` is left as it was.
pub fn decode_bytes_escaped(input: &mut &[u8]) -> Result<Vec<u8>> {
    decode_escaped_masked(input, Direction::Asc.mask())
}

/// Decodes escaped bytes whose every byte was XORed with `mask` (0xff for descending).
fn decode_escaped_masked(input: &mut &[u8], mask: u8) -> Result<Vec<u8>> {
    let unterminated = || Error::Decode("unterminated escaped bytes".into());
    let mut out = Vec::new();
    let mut rest = *input;
    loop {
        let (&b, tail) = rest.split_first().ok_or_else(unterminated)?;
        rest = tail;
        if b ^ mask != ESCAPE {
            out.push(b ^ mask);
            continue;
        }
        let (&next, tail) = rest.split_first().ok_or_else(unterminated)?;
        rest = tail;
        match next ^ mask {
            ESCAPED_00 => out.push(0),
            TERMINATOR => {
                *input = rest;
                return Ok(out);
            }
            other => {
                return Err(Error::Decode(format!(
                    "invalid escape 0x00 0x{other:02x} in escaped bytes"
                )));
            }
        }
    }
}

/// The largest value the ordered varint writes as a single byte.
const UVARINT_MAX_ONE_BYTE: u8 = 0xef;
/// First byte of a multi-byte ordered varint with one body byte; `n` body bytes use
/// `UVARINT_MULTI + n - 1`.
const UVARINT_MULTI: u8 = 0xf0;

/// Appends `v` as an ordered varint: values up to 0xef as one byte, larger ones as
/// `0xf0 + (n - 1)` followed by the `n` big-endian bytes of `v` without leading zeros.
/// Byte order of the encodings is numeric order.
pub fn encode_uvarint(buf: &mut Vec<u8>, v: u64) {
    if v <= u64::from(UVARINT_MAX_ONE_BYTE) {
        buf.push(v as u8);
        return;
    }
    let leading_zero_bytes = (v.leading_zeros() / 8) as usize; // 0..=7, since v > 0
    let n = 8 - leading_zero_bytes; // 1..=8
    buf.push(UVARINT_MULTI + (n - 1) as u8);
    buf.extend(v.to_be_bytes().iter().skip(leading_zero_bytes));
}

/// Decodes an ordered varint from the front of `input`, advancing it. Rejects
/// truncated input, first bytes above 0xf7 and non-minimal encodings. On error `input`
/// is left as it was.
pub fn decode_uvarint(input: &mut &[u8]) -> Result<u64> {
    let (&first, rest) = input
        .split_first()
        .ok_or_else(|| Error::Decode("truncated varint: no bytes".into()))?;
    if first <= UVARINT_MAX_ONE_BYTE {
        *input = rest;
        return Ok(u64::from(first));
    }
    let n = usize::from(first - UVARINT_MULTI) + 1;
    if n > 8 {
        return Err(Error::Decode(format!(
            "invalid varint first byte 0x{first:02x}"
        )));
    }
    let (body, rest) = rest.split_at_checked(n).ok_or_else(|| {
        Error::Decode(format!(
            "truncated varint: need {n} bytes, have {}",
            rest.len()
        ))
    })?;
    let v = body.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    if v <= u64::from(UVARINT_MAX_ONE_BYTE) || body.first() == Some(&0) {
        return Err(Error::Decode(format!("non-minimal varint encoding of {v}")));
    }
    *input = rest;
    Ok(v)
}

/// A SQL value as it appears in an index key.
///
/// Equality is structural (`Float(NaN) != Float(NaN)`); the key order of these values
/// is the one described in the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub enum Datum {
    /// SQL NULL: after every value ascending, before every value descending.
    Null,
    /// `BOOL`: false < true.
    Bool(bool),
    /// `INT8` (and the narrower integer types).
    Int(i64),
    /// `FLOAT8`: `-0.0` is stored as `+0.0`, and NaN sorts after `+inf`.
    Float(f64),
    /// `TEXT`, compared by UTF-8 bytes (the "C" collation).
    Text(String),
    /// `BYTEA`.
    Bytes(Vec<u8>),
    /// `DATE`: days since 2000-01-01, as Postgres counts them.
    Date(i32),
    /// `TIMESTAMP`: microseconds since 2000-01-01 00:00:00.
    Timestamp(i64),
    /// `TIMESTAMPTZ`: microseconds since 2000-01-01 00:00:00 UTC.
    TimestampTz(i64),
    /// `UUID`: its 16 bytes, compared as bytes.
    Uuid([u8; 16]),
}

/// The sort direction of one key column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// Ascending: the encoding as described in the module docs.
    Asc,
    /// Descending: the ascending encoding with every byte inverted.
    Desc,
}

impl Direction {
    /// The byte XORed into every byte of an encoding in this direction.
    fn mask(self) -> u8 {
        match self {
            Direction::Asc => 0x00,
            Direction::Desc => 0xff,
        }
    }
}

const TAG_BOOL: u8 = 0x10;
const TAG_INT: u8 = 0x11;
const TAG_FLOAT: u8 = 0x12;
const TAG_DATE: u8 = 0x13;
const TAG_TIMESTAMP: u8 = 0x14;
const TAG_TIMESTAMPTZ: u8 = 0x15;
const TAG_TEXT: u8 = 0x16;
const TAG_BYTES: u8 = 0x17;
const TAG_UUID: u8 = 0x18;
/// Above every other tag: NULLS LAST ascending, NULLS FIRST descending.
const TAG_NULL: u8 = 0x7f;

/// Whether `tag` (un-inverted) starts an ascending datum encoding.
fn is_tag(tag: u8) -> bool {
    matches!(tag, TAG_BOOL..=TAG_UUID | TAG_NULL)
}

/// The direction in which a datum starting with the (raw, as stored) byte `first` was
/// encoded, if `first` is a datum tag in either direction.
pub(super) fn direction_of_tag(first: u8) -> Option<Direction> {
    if is_tag(first) {
        Some(Direction::Asc)
    } else if is_tag(!first) {
        Some(Direction::Desc)
    } else {
        None
    }
}

const SIGN_BIT: u64 = 1 << 63;
/// The one NaN that keys hold (a positive quiet NaN), whatever NaN was written.
const CANONICAL_NAN_BITS: u64 = 0x7ff8_0000_0000_0000;
const NEGATIVE_ZERO_BITS: u64 = SIGN_BIT;

/// Maps a float to a `u64` whose numeric order is the key order of floats.
fn float_to_ordered(f: f64) -> u64 {
    let bits = if f.is_nan() {
        CANONICAL_NAN_BITS
    } else if f == 0.0 {
        0 // both zeros become +0.0
    } else {
        f.to_bits()
    };
    if bits & SIGN_BIT != 0 {
        !bits
    } else {
        bits | SIGN_BIT
    }
}

/// Inverts [`float_to_ordered`], rejecting the images of `-0.0` and non-canonical NaNs
/// (which it never produces).
fn ordered_to_float(ordered: u64) -> Result<f64> {
    let bits = if ordered & SIGN_BIT != 0 {
        ordered & !SIGN_BIT
    } else {
        !ordered
    };
    let f = f64::from_bits(bits);
    if bits == NEGATIVE_ZERO_BITS || (f.is_nan() && bits != CANONICAL_NAN_BITS) {
        return Err(Error::Decode(format!(
            "non-canonical float encoding 0x{ordered:016x}"
        )));
    }
    Ok(f)
}

/// Appends the encoding of `d` in direction `dir`.
pub fn encode_datum(buf: &mut Vec<u8>, d: &Datum, dir: Direction) {
    let start = buf.len();
    match d {
        Datum::Null => buf.push(TAG_NULL),
        Datum::Bool(b) => buf.extend_from_slice(&[TAG_BOOL, u8::from(*b)]),
        Datum::Int(i) => {
            buf.push(TAG_INT);
            buf.extend_from_slice(&(i ^ i64::MIN).to_be_bytes());
        }
        Datum::Float(f) => {
            buf.push(TAG_FLOAT);
            buf.extend_from_slice(&float_to_ordered(*f).to_be_bytes());
        }
        Datum::Date(days) => {
            buf.push(TAG_DATE);
            buf.extend_from_slice(&(days ^ i32::MIN).to_be_bytes());
        }
        Datum::Timestamp(micros) => {
            buf.push(TAG_TIMESTAMP);
            buf.extend_from_slice(&(micros ^ i64::MIN).to_be_bytes());
        }
        Datum::TimestampTz(micros) => {
            buf.push(TAG_TIMESTAMPTZ);
            buf.extend_from_slice(&(micros ^ i64::MIN).to_be_bytes());
        }
        Datum::Text(s) => {
            buf.push(TAG_TEXT);
            encode_bytes_escaped(buf, s.as_bytes());
        }
        Datum::Bytes(b) => {
            buf.push(TAG_BYTES);
            encode_bytes_escaped(buf, b);
        }
        Datum::Uuid(u) => {
            buf.push(TAG_UUID);
            buf.extend_from_slice(u);
        }
    }
    let mask = dir.mask();
    for b in buf.iter_mut().skip(start) {
        *b ^= mask;
    }
}

/// Takes `N` bytes from the front of `input`, undoing the inversion of `dir`.
fn take<const N: usize>(input: &mut &[u8], dir: Direction, what: &str) -> Result<[u8; N]> {
    let (head, rest) = input.split_first_chunk::<N>().ok_or_else(|| {
        Error::Decode(format!(
            "truncated {what}: need {N} bytes, have {}",
            input.len()
        ))
    })?;
    let mut out = *head;
    for b in &mut out {
        *b ^= dir.mask();
    }
    *input = rest;
    Ok(out)
}

/// Decodes one datum encoded in direction `dir` from the front of `input`, advancing
/// it past the datum. On error `input` is left as it was.
pub fn decode_datum(input: &mut &[u8], dir: Direction) -> Result<Datum> {
    let mut rest = *input;
    let [tag] = take::<1>(&mut rest, dir, "datum tag")?;
    let datum = match tag {
        TAG_NULL => Datum::Null,
        TAG_BOOL => match take::<1>(&mut rest, dir, "bool")? {
            [0] => Datum::Bool(false),
            [1] => Datum::Bool(true),
            [b] => return Err(Error::Decode(format!("invalid bool byte 0x{b:02x}"))),
        },
        TAG_INT => Datum::Int(i64::from_be_bytes(take(&mut rest, dir, "int")?) ^ i64::MIN),
        TAG_FLOAT => {
            let ordered = u64::from_be_bytes(take(&mut rest, dir, "float")?);
            Datum::Float(ordered_to_float(ordered)?)
        }
        TAG_DATE => Datum::Date(i32::from_be_bytes(take(&mut rest, dir, "date")?) ^ i32::MIN),
        TAG_TIMESTAMP => {
            Datum::Timestamp(i64::from_be_bytes(take(&mut rest, dir, "timestamp")?) ^ i64::MIN)
        }
        TAG_TIMESTAMPTZ => {
            Datum::TimestampTz(i64::from_be_bytes(take(&mut rest, dir, "timestamptz")?) ^ i64::MIN)
        }
        TAG_TEXT => {
            let bytes = decode_escaped_masked(&mut rest, dir.mask())?;
            let text = String::from_utf8(bytes)
                .map_err(|e| Error::Decode(format!("text key is not UTF-8: {e}")))?;
            Datum::Text(text)
        }
        TAG_BYTES => Datum::Bytes(decode_escaped_masked(&mut rest, dir.mask())?),
        TAG_UUID => Datum::Uuid(take(&mut rest, dir, "uuid")?),
        other if is_tag(!other) => {
            return Err(Error::Decode(format!(
                "datum tag 0x{other:02x} is from the other direction than {dir:?}"
            )));
        }
        other => return Err(Error::Decode(format!("unknown datum tag 0x{other:02x}"))),
    };
    *input = rest;
    Ok(datum)
}

/// Appends a composite key: the datums' encodings, each in its own direction, one
/// after another. Keys compare as tuples, column by column.
pub fn encode_key(buf: &mut Vec<u8>, columns: &[(Datum, Direction)]) {
    for (datum, dir) in columns {
        encode_datum(buf, datum, *dir);
    }
}

/// Decodes a composite key of `dirs.len()` columns from the front of `input`,
/// advancing it past them; whatever follows is left in `input`. On error `input` is
/// left as it was.
pub fn decode_key(input: &mut &[u8], dirs: &[Direction]) -> Result<Vec<Datum>> {
    let mut rest = *input;
    let datums = dirs
        .iter()
        .map(|&dir| decode_datum(&mut rest, dir))
        .collect::<Result<Vec<_>>>()?;
    *input = rest;
    Ok(datums)
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use proptest::prelude::*;

    use super::*;

    fn enc(d: &Datum, dir: Direction) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_datum(&mut buf, d, dir);
        buf
    }

    fn uvarint(v: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_uvarint(&mut buf, v);
        buf
    }

    /// SQL order of two datums of one type: NULLS LAST, floats with -0 == +0 and NaN
    /// above everything. Written independently of the encoding.
    fn sql_cmp(a: &Datum, b: &Datum) -> Ordering {
        use Datum::*;
        match (a, b) {
            (Null, Null) => Ordering::Equal,
            (Null, _) => Ordering::Greater,
            (_, Null) => Ordering::Less,
            (Bool(x), Bool(y)) => x.cmp(y),
            (Int(x), Int(y)) => x.cmp(y),
            (Float(x), Float(y)) => match (x.is_nan(), y.is_nan()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => x.partial_cmp(y).unwrap(),
            },
            (Text(x), Text(y)) => x.cmp(y),
            (Bytes(x), Bytes(y)) => x.cmp(y),
            (Date(x), Date(y)) => x.cmp(y),
            (Timestamp(x), Timestamp(y)) => x.cmp(y),
            (TimestampTz(x), TimestampTz(y)) => x.cmp(y),
            (Uuid(x), Uuid(y)) => x.cmp(y),
            _ => panic!("datums of different types: {a:?} {b:?}"),
        }
    }

    /// What a datum decodes back to: -0.0 as +0.0, any NaN as a NaN.
    fn assert_round_trip(original: &Datum, decoded: &Datum) {
        match (original, decoded) {
            (Datum::Float(x), Datum::Float(y)) if x.is_nan() => assert!(y.is_nan()),
            (Datum::Float(x), Datum::Float(y)) if *x == 0.0 => {
                assert_eq!(y.to_bits(), 0.0f64.to_bits())
            }
            _ => assert_eq!(original, decoded),
        }
    }

    const KINDS: u8 = 9;

    fn float_strategy() -> BoxedStrategy<f64> {
        prop_oneof![
            Just(0.0),
            Just(-0.0),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(f64::NAN),
            Just(f64::MIN_POSITIVE),
            Just(-f64::MIN_POSITIVE),
            any::<f64>(),
            any::<u64>().prop_map(f64::from_bits),
            (-3i32..3).prop_map(f64::from),
        ]
        .boxed()
    }

    /// Non-null values of one type, from small domains often, so that equal values and
    /// prefixes come up.
    fn value_of_kind(kind: u8) -> BoxedStrategy<Datum> {
        let small_bytes = prop::collection::vec(
            prop_oneof![Just(0u8), Just(1), Just(0xff), Just(b'a'), any::<u8>()],
            0..5,
        );
        match kind {
            0 => any::<bool>().prop_map(Datum::Bool).boxed(),
            1 => prop_oneof![-3i64..3, Just(i64::MIN), Just(i64::MAX), any::<i64>()]
                .prop_map(Datum::Int)
                .boxed(),
            2 => float_strategy().prop_map(Datum::Float).boxed(),
            3 => prop_oneof!["[ab\\x00\\x01é]{0,4}", any::<String>()]
                .prop_map(Datum::Text)
                .boxed(),
            4 => small_bytes.prop_map(Datum::Bytes).boxed(),
            5 => prop_oneof![-2i32..2, any::<i32>()]
                .prop_map(Datum::Date)
                .boxed(),
            6 => prop_oneof![-2i64..2, any::<i64>()]
                .prop_map(Datum::Timestamp)
                .boxed(),
            7 => prop_oneof![-2i64..2, any::<i64>()]
                .prop_map(Datum::TimestampTz)
                .boxed(),
            _ => prop_oneof![Just([0u8; 16]), Just([0xffu8; 16]), any::<[u8; 16]>()]
                .prop_map(Datum::Uuid)
                .boxed(),
        }
    }

    /// Values of one type or NULL.
    fn datum_of_kind(kind: u8) -> BoxedStrategy<Datum> {
        prop_oneof![1 => Just(Datum::Null), 6 => value_of_kind(kind)].boxed()
    }

    fn direction() -> impl Strategy<Value = Direction> {
        prop_oneof![Just(Direction::Asc), Just(Direction::Desc)]
    }

    /// Two rows of the same column types, with a direction per column.
    fn two_rows() -> impl Strategy<Value = (Vec<Direction>, Vec<Datum>, Vec<Datum>)> {
        prop::collection::vec((0..KINDS, direction()), 1..4).prop_flat_map(|columns| {
            let dirs: Vec<Direction> = columns.iter().map(|&(_, d)| d).collect();
            let row = || {
                columns
                    .iter()
                    .map(|&(kind, _)| datum_of_kind(kind))
                    .collect::<Vec<_>>()
            };
            (Just(dirs), row(), row())
        })
    }

    fn tuple_cmp(dirs: &[Direction], a: &[Datum], b: &[Datum]) -> Ordering {
        for ((dir, x), y) in dirs.iter().zip(a).zip(b) {
            let ord = match dir {
                Direction::Asc => sql_cmp(x, y),
                Direction::Desc => sql_cmp(x, y).reverse(),
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        Ordering::Equal
    }

    proptest! {
        #[test]
        fn escaped_bytes_preserve_order_and_round_trip(
            a in prop::collection::vec(prop_oneof![Just(0u8), Just(1), any::<u8>()], 0..6),
            b in prop::collection::vec(prop_oneof![Just(0u8), Just(1), any::<u8>()], 0..6),
        ) {
            let (mut ea, mut eb) = (Vec::new(), Vec::new());
            encode_bytes_escaped(&mut ea, &a);
            encode_bytes_escaped(&mut eb, &b);
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            ea.push(0x42);
            let mut input = ea.as_slice();
            prop_assert_eq!(decode_bytes_escaped(&mut input).unwrap(), a);
            prop_assert_eq!(input, &[0x42][..]);
        }

        #[test]
        fn uvarint_preserves_order_and_round_trips(
            a in prop_oneof![0u64..0x200, any::<u64>()],
            b in prop_oneof![0u64..0x200, any::<u64>()],
        ) {
            let (ea, eb) = (uvarint(a), uvarint(b));
            prop_assert_eq!(a.cmp(&b), ea.cmp(&eb));
            let mut input = ea.as_slice();
            prop_assert_eq!(decode_uvarint(&mut input).unwrap(), a);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn datum_order_is_byte_order(
            (a, b) in (0..KINDS).prop_flat_map(|k| (datum_of_kind(k), datum_of_kind(k))),
        ) {
            let expected = sql_cmp(&a, &b);
            prop_assert_eq!(enc(&a, Direction::Asc).cmp(&enc(&b, Direction::Asc)), expected);
            prop_assert_eq!(
                enc(&a, Direction::Desc).cmp(&enc(&b, Direction::Desc)),
                expected.reverse()
            );
        }

        #[test]
        fn datum_round_trips(
            d in (0..KINDS).prop_flat_map(datum_of_kind),
            dir in direction(),
        ) {
            let mut buf = enc(&d, dir);
            buf.push(0x42);
            let mut input = buf.as_slice();
            let decoded = decode_datum(&mut input, dir).unwrap();
            assert_round_trip(&d, &decoded);
            prop_assert_eq!(input, &[0x42][..]);
        }

        #[test]
        fn composite_keys_order_as_tuples_and_round_trip((dirs, a, b) in two_rows()) {
            let encode = |row: &[Datum]| {
                let columns: Vec<(Datum, Direction)> =
                    row.iter().cloned().zip(dirs.iter().copied()).collect();
                let mut buf = Vec::new();
                encode_key(&mut buf, &columns);
                buf
            };
            let (ea, eb) = (encode(&a), encode(&b));
            prop_assert_eq!(ea.cmp(&eb), tuple_cmp(&dirs, &a, &b));
            let mut input = ea.as_slice();
            let decoded = decode_key(&mut input, &dirs).unwrap();
            prop_assert!(input.is_empty());
            for (x, y) in a.iter().zip(&decoded) {
                assert_round_trip(x, y);
            }
        }

        /// Decoding arbitrary bytes never panics, leaves the input alone on error, and
        /// accepts only canonical encodings: what decodes re-encodes to the same bytes.
        #[test]
        fn decoding_random_bytes_is_safe_and_canonical(
            bytes in prop::collection::vec(any::<u8>(), 0..24),
            dir in direction(),
        ) {
            let mut input = bytes.as_slice();
            match decode_datum(&mut input, dir) {
                Ok(d) => {
                    let consumed = bytes.len() - input.len();
                    prop_assert_eq!(enc(&d, dir), &bytes[..consumed]);
                }
                Err(Error::Decode(_)) => prop_assert_eq!(input, bytes.as_slice()),
                Err(e) => prop_assert!(false, "unexpected error {e:?}"),
            }

            let mut input = bytes.as_slice();
            if let Ok(v) = decode_uvarint(&mut input) {
                let consumed = bytes.len() - input.len();
                prop_assert_eq!(uvarint(v), &bytes[..consumed]);
            }

            let mut input = bytes.as_slice();
            if let Ok(b) = decode_bytes_escaped(&mut input) {
                let mut again = Vec::new();
                encode_bytes_escaped(&mut again, &b);
                prop_assert_eq!(again, &bytes[..bytes.len() - input.len()]);
            }

            let mut input = bytes.as_slice();
            let _ = decode_key(&mut input, &[dir, Direction::Asc, Direction::Desc]);
        }

        /// Tagged random bodies reach every decoder branch more often than raw bytes.
        #[test]
        fn decoding_tagged_random_bodies_is_safe(
            tag in prop_oneof![TAG_BOOL..=TAG_UUID, Just(TAG_NULL)],
            body in prop::collection::vec(prop_oneof![Just(0u8), Just(1), any::<u8>()], 0..20),
            dir in direction(),
        ) {
            let mut bytes = vec![tag ^ dir.mask()];
            bytes.extend(body);
            let mut input = bytes.as_slice();
            if let Ok(d) = decode_datum(&mut input, dir) {
                let consumed = bytes.len() - input.len();
                prop_assert_eq!(enc(&d, dir), &bytes[..consumed]);
            }
        }
    }

    #[test]
    fn uvarint_known_encodings() {
        assert_eq!(uvarint(0), [0x00]);
        assert_eq!(uvarint(0xef), [0xef]);
        assert_eq!(uvarint(0xf0), [0xf0, 0xf0]);
        assert_eq!(uvarint(0xff), [0xf0, 0xff]);
        assert_eq!(uvarint(0x100), [0xf1, 0x01, 0x00]);
        assert_eq!(
            uvarint(u64::MAX),
            [0xf7, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    #[test]
    fn uvarint_rejects_malformed() {
        for bad in [
            &[][..],
            &[0xf0],             // truncated
            &[0xf1, 0x01],       // truncated
            &[0xf0, 0x05],       // fits in one byte
            &[0xf1, 0x00, 0xff], // leading zero
            &[0xf8, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0xff],
        ] {
            let mut input = bad;
            assert!(
                matches!(decode_uvarint(&mut input), Err(Error::Decode(_))),
                "{bad:x?}"
            );
            assert_eq!(input, bad);
        }
    }

    #[test]
    fn float_order_and_canonical_forms() {
        let ascending = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -f64::MIN_POSITIVE,
            -5e-324,
            0.0,
            5e-324,
            f64::MIN_POSITIVE,
            1.0,
            1e300,
            f64::INFINITY,
            f64::NAN,
        ];
        let encoded: Vec<_> = ascending
            .iter()
            .map(|&f| enc(&Datum::Float(f), Direction::Asc))
            .collect();
        assert!(encoded.windows(2).all(|w| w[0] < w[1]), "{encoded:x?}");

        let zero = enc(&Datum::Float(0.0), Direction::Asc);
        assert_eq!(enc(&Datum::Float(-0.0), Direction::Asc), zero);
        let nan = enc(&Datum::Float(f64::NAN), Direction::Asc);
        for bits in [
            0xfff8_0000_0000_0000u64,
            0x7ff0_0000_0000_0001,
            0xffff_ffff_ffff_ffff,
        ] {
            assert_eq!(
                enc(&Datum::Float(f64::from_bits(bits)), Direction::Asc),
                nan
            );
        }

        // The image of -0.0 is not a valid encoding.
        let mut neg_zero = vec![TAG_FLOAT];
        neg_zero.extend_from_slice(&(!NEGATIVE_ZERO_BITS).to_be_bytes());
        assert!(decode_datum(&mut neg_zero.as_slice(), Direction::Asc).is_err());
    }

    #[test]
    fn nulls_last_ascending_first_descending() {
        let null = |dir| enc(&Datum::Null, dir);
        for d in [
            Datum::Int(i64::MAX),
            Datum::Float(f64::NAN),
            Datum::Text("\u{10ffff}".into()),
            Datum::Bytes(vec![0xff; 8]),
            Datum::Uuid([0xff; 16]),
        ] {
            assert!(enc(&d, Direction::Asc) < null(Direction::Asc));
            assert!(enc(&d, Direction::Desc) > null(Direction::Desc));
        }
    }

    #[test]
    fn text_sorts_prefixes_first() {
        let t = |s: &str| enc(&Datum::Text(s.into()), Direction::Asc);
        assert!(t("") < t("a"));
        assert!(t("a") < t("a\0"));
        assert!(t("a\0") < t("ab"));
    }

    #[test]
    fn decode_rejects_malformed_datums() {
        let mut wrong_dir = enc(&Datum::Int(7), Direction::Asc);
        let invalid_utf8 = [TAG_TEXT, 0xc3, 0x28, 0x00, 0x01];
        let bad_escape = [TAG_BYTES, b'a', 0x00, 0x02];
        let unterminated = [TAG_BYTES, b'a', 0x00];
        let bad_bool = [TAG_BOOL, 0x02];
        let truncated_int = [TAG_INT, 0x80, 0x00];
        let unknown_tag = [0x20];
        for (bad, dir) in [
            (&wrong_dir[..], Direction::Desc),
            (&invalid_utf8[..], Direction::Asc),
            (&bad_escape[..], Direction::Asc),
            (&unterminated[..], Direction::Asc),
            (&bad_bool[..], Direction::Asc),
            (&truncated_int[..], Direction::Asc),
            (&unknown_tag[..], Direction::Asc),
            (&[][..], Direction::Asc),
        ] {
            let mut input = bad;
            let result = decode_datum(&mut input, dir);
            assert!(
                matches!(result, Err(Error::Decode(_))),
                "{bad:x?}: {result:?}"
            );
            assert_eq!(input, bad);
        }
        wrong_dir.iter_mut().for_each(|b| *b = !*b);
        assert_eq!(
            decode_datum(&mut wrong_dir.as_slice(), Direction::Desc),
            Ok(Datum::Int(7))
        );
    }

    #[test]
    fn direction_is_visible_in_the_tag() {
        for kind in [Datum::Null, Datum::Bool(true), Datum::Uuid([0; 16])] {
            for dir in [Direction::Asc, Direction::Desc] {
                let first = enc(&kind, dir).first().copied();
                assert_eq!(first.and_then(direction_of_tag), Some(dir));
            }
        }
    }
}
