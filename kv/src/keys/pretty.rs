//! Human-readable rendering of keys, for errors and logs.

use std::fmt::{self, Write};

use super::encoding::direction_of_tag;
use super::{
    Datum, KEY_MAX, LOCAL_RANGE_ID_PREFIX, LOCAL_RANGE_PREFIX, LOCAL_STORE_PREFIX, META_PREFIX,
    RAFT_LOG_SUFFIX, SYSTEM_DECOMMISSION_TAG, SYSTEM_DESCRIPTOR_TAG, SYSTEM_ID_GENERATOR_TAG,
    SYSTEM_NAMESPACE_TAG, SYSTEM_NODE_LIVENESS_TAG, SYSTEM_PREFIX, SYSTEM_SETTING_TAG, TABLE_MIN,
    TXN_RECORD_SUFFIX, decode_bytes_escaped, decode_datum, decode_range_id_key,
    decode_range_local_key, decode_uvarint,
};
use crate::ids::TxnId;

/// How deep keys nested in keys (the anchor of a local key, the end key in a meta key)
/// are rendered; deeper ones are shown as bytes, so no input recurses deeply.
const MAX_DEPTH: usize = 4;

/// A human-readable rendering of a key, for errors and logs: `/Min`, `/Max`,
/// `/Local/Range/Table/52/1/7/txn-<id>`, `/Local/RangeID/12/rftl/5`, `/Meta/<end key>`,
/// `/System/Descriptor/52`, `/Table/52/1/7/"abc"/NULL`. Bytes that do not decode are
/// shown as a quoted, escaped byte string. Never panics.
pub fn pretty(key: &[u8]) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_key(&mut out, key, 0);
    out
}

/// Writes `key`; a key nested in another (`depth > 0`) always starts with '/'.
fn write_key(out: &mut String, key: &[u8], depth: usize) -> fmt::Result {
    if key.is_empty() {
        return out.write_str("/Min");
    }
    if key == KEY_MAX {
        return out.write_str("/Max");
    }
    if depth <= MAX_DEPTH {
        if key.starts_with(LOCAL_RANGE_PREFIX) {
            if let Ok((anchor, suffix, detail)) = decode_range_local_key(key) {
                out.write_str("/Local/Range")?;
                write_key(out, &anchor, depth + 1)?;
                if suffix == *TXN_RECORD_SUFFIX
                    && let Ok(id) = <[u8; 16]>::try_from(detail)
                {
                    return write!(out, "/txn-{}", TxnId::from_bytes(id));
                }
                write!(out, "/{}", suffix.escape_ascii())?;
                return write_tail(out, detail);
            }
        } else if key.starts_with(LOCAL_RANGE_ID_PREFIX) {
            if let Ok((range_id, rest)) = decode_range_id_key(key) {
                write!(out, "/Local/RangeID/{}", range_id.0)?;
                return write_range_id_suffix(out, rest);
            }
        } else if let Some(name) = key.strip_prefix(LOCAL_STORE_PREFIX) {
            return write!(out, "/Local/Store/{}", name.escape_ascii());
        } else if let Some(end_key) = key.strip_prefix(META_PREFIX) {
            out.write_str("/Meta")?;
            return write_key(out, end_key, depth + 1);
        } else if let Some(rest) = key.strip_prefix(SYSTEM_PREFIX) {
            out.write_str("/System")?;
            return write_system(out, rest);
        } else if let Some(rest) = key.strip_prefix(TABLE_MIN) {
            out.write_str("/Table")?;
            return write_table(out, rest);
        }
    }
    if depth > 0 {
        out.write_char('/')?;
    }
    write_raw(out, key)
}

/// Writes what follows the range id of a range-id-local key: its suffix, and the index
/// of a Raft log key.
fn write_range_id_suffix(out: &mut String, rest: &[u8]) -> fmt::Result {
    let Some((suffix, detail)) = rest.split_first_chunk::<4>() else {
        return write_tail(out, rest);
    };
    write!(out, "/{}", suffix.escape_ascii())?;
    if suffix == RAFT_LOG_SUFFIX
        && let Ok(index) = <[u8; 8]>::try_from(detail)
    {
        return write!(out, "/{}", u64::from_be_bytes(index));
    }
    write_tail(out, detail)
}

/// Writes what follows the system prefix.
fn write_system(out: &mut String, rest: &[u8]) -> fmt::Result {
    let mut tail = rest;
    if let Some(after) = rest.strip_prefix(SYSTEM_NODE_LIVENESS_TAG) {
        tail = after;
        out.write_str("/NodeLiveness")?;
        write_ids(out, &mut tail, 1)?;
    } else if let Some(after) = rest.strip_prefix(SYSTEM_DECOMMISSION_TAG) {
        tail = after;
        out.write_str("/NodeDecommission")?;
        write_ids(out, &mut tail, 1)?;
    } else if let Some(after) = rest.strip_prefix(SYSTEM_DESCRIPTOR_TAG) {
        tail = after;
        out.write_str("/Descriptor")?;
        write_ids(out, &mut tail, 1)?;
    } else if let Some(after) = rest.strip_prefix(SYSTEM_NAMESPACE_TAG) {
        tail = after;
        out.write_str("/Namespace")?;
        if write_ids(out, &mut tail, 1)? {
            write_name(out, &mut tail)?;
        }
    } else if let Some(after) = rest.strip_prefix(SYSTEM_ID_GENERATOR_TAG) {
        tail = after;
        out.write_str("/IDGen")?;
        write_name(out, &mut tail)?;
    } else if let Some(after) = rest.strip_prefix(SYSTEM_SETTING_TAG) {
        tail = after;
        out.write_str("/Setting")?;
        write_name(out, &mut tail)?;
    }
    write_tail(out, tail)
}

/// Writes what follows the table prefix: the table and index ids, then the key
/// columns as long as they decode. A column's direction is read off its tag.
fn write_table(out: &mut String, rest: &[u8]) -> fmt::Result {
    let mut tail = rest;
    if write_ids(out, &mut tail, 2)? {
        while let Some(dir) = tail.first().copied().and_then(direction_of_tag) {
            let Ok(datum) = decode_datum(&mut tail, dir) else {
                break;
            };
            out.write_char('/')?;
            write_datum(out, &datum)?;
        }
    }
    write_tail(out, tail)
}

/// Decodes and writes up to `count` ordered varints from `input`, advancing it past
/// those that decode. Returns whether all `count` did.
fn write_ids(out: &mut String, input: &mut &[u8], count: usize) -> Result<bool, fmt::Error> {
    for _ in 0..count {
        let Ok(id) = decode_uvarint(input) else {
            return Ok(false);
        };
        write!(out, "/{id}")?;
    }
    Ok(true)
}

/// Decodes and writes an escaped UTF-8 name from `input`, advancing it if it decodes.
fn write_name(out: &mut String, input: &mut &[u8]) -> fmt::Result {
    let mut rest = *input;
    let Ok(Ok(name)) = decode_bytes_escaped(&mut rest).map(String::from_utf8) else {
        return Ok(());
    };
    *input = rest;
    write!(out, "/{name:?}")
}

/// Writes undecoded trailing bytes, if any, as `/"<escaped bytes>"`.
fn write_tail(out: &mut String, tail: &[u8]) -> fmt::Result {
    if tail.is_empty() {
        return Ok(());
    }
    out.write_char('/')?;
    write_raw(out, tail)
}

/// Writes bytes as a quoted string, non-printable bytes escaped as `\xNN`.
fn write_raw(out: &mut String, bytes: &[u8]) -> fmt::Result {
    write!(out, "\"{}\"", bytes.escape_ascii())
}

/// Writes a key column's value as SQL would show it.
fn write_datum(out: &mut String, datum: &Datum) -> fmt::Result {
    match datum {
        Datum::Null => out.write_str("NULL"),
        Datum::Bool(b) => write!(out, "{b}"),
        Datum::Int(i) => write!(out, "{i}"),
        Datum::Float(f) => write!(out, "{f:?}"),
        Datum::Text(s) => write!(out, "{s:?}"),
        Datum::Bytes(b) => write!(out, "b\"{}\"", b.escape_ascii()),
        Datum::Date(days) => write_date(out, i64::from(*days)),
        Datum::Timestamp(micros) => write_timestamp(out, *micros),
        Datum::TimestampTz(micros) => {
            write_timestamp(out, *micros)?;
            out.write_str("+00")
        }
        Datum::Uuid(bytes) => write!(out, "{}", uuid::Uuid::from_bytes(*bytes)),
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Writes `micros` since 2000-01-01 00:00:00 as `YYYY-MM-DD hh:mm:ss[.ffffff]`.
fn write_timestamp(out: &mut String, micros: i64) -> fmt::Result {
    write_date(out, micros.div_euclid(MICROS_PER_DAY))?;
    let of_day = micros.rem_euclid(MICROS_PER_DAY);
    let seconds = of_day / 1_000_000;
    let fraction = of_day % 1_000_000;
    write!(
        out,
        " {:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )?;
    if fraction != 0 {
        write!(out, ".{fraction:06}")?;
    }
    Ok(())
}

/// Writes the day `days` after 2000-01-01 as `YYYY-MM-DD` in the proleptic Gregorian
/// calendar.
fn write_date(out: &mut String, days: i64) -> fmt::Result {
    let (year, month, day) = civil_from_days(days);
    write!(out, "{year:04}-{month:02}-{day:02}")
}

/// Days in a 400-year Gregorian cycle, which repeats exactly.
const DAYS_PER_ERA: i64 = 146_097;
/// Days from 0000-03-01 to 2000-01-01.
const DAYS_0000_03_01_TO_2000_01_01: i64 = 730_425;

/// The (year, month, day) of the day `days` after 2000-01-01.
///
/// Counts from 0000-03-01, so that each year of the count runs March to February and
/// the leap day is its last day; within a 400-year era the year then follows from the
/// day by dropping one leap day every 4 years, adding one back every 100 and dropping
/// one every 400, and months March..January have lengths 31, 30, 31, 30, 31 repeating,
/// which `(153 * m + 2) / 5` counts (H. Hinnant's civil-from-days method). No overflow
/// for any `i64` count of microseconds or `i32` count of days turned into days.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + DAYS_0000_03_01_TO_2000_01_01;
    let era = z.div_euclid(DAYS_PER_ERA);
    let day_of_era = z.rem_euclid(DAYS_PER_ERA); // 0..=146096
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153; // 0..=11
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = era * 400 + year_of_era + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::*;
    use super::*;
    use crate::ids::{NodeId, RangeId};

    fn row(columns: &[(Datum, Direction)]) -> Vec<u8> {
        let mut key = index_prefix(52, 1);
        encode_key(&mut key, columns);
        key
    }

    #[test]
    fn renders_every_kind_of_key() {
        let user_key = row(&[(Datum::Int(7), Direction::Asc)]);
        let txn = TxnId::from_bytes([0xab; 16]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (KEY_MIN.to_vec(), "/Min"),
            (KEY_MAX.to_vec(), "/Max"),
            (
                txn_record_key(&user_key, txn),
                "/Local/Range/Table/52/1/7/txn-abababab-abab-abab-abab-abababababab",
            ),
            (range_descriptor_key(KEY_MIN), "/Local/Range/Min/rdsc"),
            (
                range_local_key(b"\x99", b"abcd", b"\x00"),
                r#"/Local/Range/"\x99"/abcd/"\x00""#,
            ),
            (raft_log_key(RangeId(12), 5), "/Local/RangeID/12/rftl/5"),
            (raft_vote_key(RangeId(12)), "/Local/RangeID/12/rftv"),
            (
                range_applied_state_key(RangeId(12)),
                "/Local/RangeID/12/rask",
            ),
            (range_id_prefix(RangeId(12)), "/Local/RangeID/12"),
            (store_ident_key(), "/Local/Store/ident"),
            (meta_key(KEY_MAX), "/Meta/Max"),
            (meta_key(&user_key), "/Meta/Table/52/1/7"),
            (node_liveness_key(NodeId(3)), "/System/NodeLiveness/3"),
            (
                node_decommission_key(NodeId(4)),
                "/System/NodeDecommission/4",
            ),
            (
                setting_key("kv.range.max_bytes"),
                "/System/Setting/\"kv.range.max_bytes\"",
            ),
            (descriptor_key(52), "/System/Descriptor/52"),
            (namespace_key(1, "users"), r#"/System/Namespace/1/"users""#),
            (id_generator_key("range_id"), r#"/System/IDGen/"range_id""#),
            (system_key(b"xyz"), r#"/System/"xyz""#),
            (table_prefix(52), "/Table/52"),
            (
                row(&[
                    (Datum::Int(7), Direction::Asc),
                    (Datum::Text("abc".into()), Direction::Desc),
                    (Datum::Null, Direction::Asc),
                ]),
                r#"/Table/52/1/7/"abc"/NULL"#,
            ),
            (
                row(&[
                    (Datum::Bool(true), Direction::Asc),
                    (Datum::Float(-1.5), Direction::Desc),
                    (Datum::Bytes(b"a\0".to_vec()), Direction::Asc),
                    (Datum::Uuid([0; 16]), Direction::Asc),
                ]),
                r#"/Table/52/1/true/-1.5/b"a\x00"/00000000-0000-0000-0000-000000000000"#,
            ),
            (
                row(&[
                    (Datum::Date(59), Direction::Asc),
                    (Datum::Timestamp(-1), Direction::Asc),
                    (Datum::TimestampTz(0), Direction::Desc),
                ]),
                "/Table/52/1/2000-02-29/1999-12-31 23:59:59.999999/2000-01-01 00:00:00+00",
            ),
            (
                [index_prefix(52, 1), vec![0x99]].concat(),
                r#"/Table/52/1/"\x99""#,
            ),
            (vec![0x05, 0x00], r#""\x05\x00""#),
            (vec![0x01, b'k', b'a'], r#""\x01ka""#),
        ];
        for (key, expected) in cases {
            assert_eq!(pretty(&key), expected, "{key:x?}");
        }
    }

    #[test]
    fn dates_in_the_calendar() {
        for (days, expected) in [
            (0, "2000-01-01"),
            (-1, "1999-12-31"),
            (60, "2000-03-01"),
            (366, "2001-01-01"),
            (-10_957, "1970-01-01"),
            (-36_525, "1899-12-31"),
            (36_525, "2100-01-01"),
            (36_584, "2100-03-01"), // 2100 is not a leap year
        ] {
            let mut out = String::new();
            write_date(&mut out, days).unwrap();
            assert_eq!(out, expected, "{days}");
        }
    }

    #[test]
    fn deeply_nested_keys_do_not_recurse_deeply() {
        let rendered = pretty(&[META_PREFIX[0]; 100_000]);
        assert!(rendered.starts_with("/Meta/Meta/Meta/Meta/Meta/\""));
    }

    proptest! {
        #[test]
        fn pretty_never_panics(key in prop::collection::vec(any::<u8>(), 0..40)) {
            let _ = pretty(&key);
        }

        #[test]
        fn pretty_renders_extreme_datums(
            days in any::<i32>(),
            micros in any::<i64>(),
            f in any::<u64>().prop_map(f64::from_bits),
        ) {
            let key = row(&[
                (Datum::Date(days), Direction::Asc),
                (Datum::Timestamp(micros), Direction::Desc),
                (Datum::Float(f), Direction::Asc),
            ]);
            let rendered = pretty(&key);
            prop_assert!(!rendered.contains('"'), "{}", rendered);
        }
    }
}
