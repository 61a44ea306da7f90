//! Built-in scalar functions: resolution by name (with result types) and evaluation.

use rust_decimal::Decimal;
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};

use crate::error::{Error, Result, SqlState};
use crate::expr::{EvalContext, Func, SERVER_VERSION};
use crate::types::{DataType, Value};

/// Resolves a function name and its argument types to a function and its result type.
pub fn resolve(name: &str, args: &[DataType]) -> Result<(Func, DataType)> {
    use DataType as T;
    let first = args.first().copied().unwrap_or(T::Unknown);
    let common = args.iter().copied().fold(T::Unknown, T::common);
    let text = T::Text;
    let (f, ty) = match name {
        "abs" => (Func::Abs, first),
        "coalesce" => (Func::Coalesce, common),
        "nullif" => (Func::NullIf, first),
        "greatest" => (Func::Greatest, common),
        "least" => (Func::Least, common),
        "lower" => (Func::Lower, text),
        "upper" => (Func::Upper, text),
        "length" | "char_length" | "character_length" | "octet_length" => (Func::Length, T::Int4),
        "substr" | "substring" => (Func::Substr, text),
        "btrim" | "trim" => (Func::Trim, text),
        "ltrim" => (Func::LTrim, text),
        "rtrim" => (Func::RTrim, text),
        "concat" => (Func::Concat, text),
        "replace" => (Func::Replace, text),
        "left" => (Func::Left, text),
        "right" => (Func::Right, text),
        "strpos" => (Func::StrPos, T::Int4),
        "md5" => (Func::Md5, text),
        "to_hex" => (Func::ToHex, text),
        "chr" => (Func::Chr, text),
        "ascii" => (Func::Ascii, T::Int4),
        "repeat" => (Func::Repeat, text),
        "reverse" => (Func::Reverse, text),
        "lpad" => (Func::Lpad, text),
        "rpad" => (Func::Rpad, text),
        "round" => (
            Func::Round,
            if first.is_integer() || first == T::Numeric {
                T::Numeric
            } else {
                T::Float8
            },
        ),
        "trunc" => (
            Func::Trunc,
            if first.is_integer() || first == T::Numeric {
                T::Numeric
            } else {
                T::Float8
            },
        ),
        "floor" => (
            Func::Floor,
            if first.is_float() {
                T::Float8
            } else {
                T::Numeric
            },
        ),
        "ceil" | "ceiling" => (
            Func::Ceil,
            if first.is_float() {
                T::Float8
            } else {
                T::Numeric
            },
        ),
        "sqrt" => (Func::Sqrt, T::Float8),
        "exp" => (Func::Exp, T::Float8),
        "ln" => (Func::Ln, T::Float8),
        "log" | "log10" => (Func::Log10, T::Float8),
        "pi" => (Func::Pi, T::Float8),
        "power" | "pow" => (Func::Power, T::Float8),
        "mod" => (Func::ModFn, common),
        "sign" => (Func::Sign, first),
        "now" | "current_timestamp" | "transaction_timestamp" | "statement_timestamp" => {
            (Func::Now, T::TimestampTz)
        }
        "version" => (Func::Version, text),
        "current_database" | "current_catalog" => (Func::CurrentDatabase, T::Name),
        "current_schema" => (Func::CurrentSchema, T::Name),
        "current_user" | "session_user" | "user" => (Func::CurrentUser, T::Name),
        "current_setting" => (Func::CurrentSetting, text),
        "gen_random_uuid" | "uuid_generate_v4" => (Func::GenRandomUuid, T::Uuid),
        "unique_rowid" => (Func::UniqueRowid, T::Int8),
        "random" => (Func::Random, T::Float8),
        "pg_backend_pid" => (Func::PgBackendPid, T::Int4),
        "format_type" => (Func::FormatType, text),
        "pg_get_userbyid" => (Func::PgGetUserById, T::Name),
        "pg_table_is_visible" | "pg_type_is_visible" | "pg_function_is_visible" => {
            (Func::PgTableIsVisible, T::Bool)
        }
        "obj_description" | "col_description" | "shobj_description" => (Func::ObjDescription, text),
        "pg_get_expr" => (Func::PgGetExpr, text),
        "pg_get_indexdef" => (Func::PgGetIndexdef, text),
        "pg_get_constraintdef" => (Func::PgGetConstraintdef, text),
        "pg_encoding_to_char" => (Func::PgEncodingToChar, T::Name),
        "has_table_privilege" | "has_schema_privilege" | "has_database_privilege" => {
            (Func::HasPrivilege, T::Bool)
        }
        "array_to_string" => (Func::ArrayToString, text),
        "extract" => (Func::Extract, T::Numeric),
        "date_part" => (Func::DatePart, T::Float8),
        _ => {
            return Err(Error::new(
                SqlState::UndefinedFunction,
                format!("function {name}() does not exist"),
            ));
        }
    };
    Ok((f, ty))
}

fn text_arg(v: &Value) -> Option<String> {
    v.to_text()
}

fn int_arg(v: &Value) -> Result<i64> {
    match v.clone().cast(DataType::Int8)? {
        Value::Int(i) => Ok(i),
        _ => Ok(0),
    }
}

/// Calls `f` on evaluated arguments.
pub fn call(f: Func, args: Vec<Value>, ctx: &EvalContext) -> Result<Value> {
    // Functions of the session ignore NULL arguments; most others are strict: a NULL
    // argument gives NULL.
    let strict = !matches!(
        f,
        Func::Coalesce
            | Func::NullIf
            | Func::Greatest
            | Func::Least
            | Func::Concat
            | Func::Now
            | Func::Version
            | Func::CurrentDatabase
            | Func::CurrentSchema
            | Func::CurrentUser
            | Func::GenRandomUuid
            | Func::UniqueRowid
            | Func::Random
            | Func::PgBackendPid
            | Func::Pi
            | Func::ObjDescription
            | Func::HasPrivilege
            | Func::PgTableIsVisible
    );
    if strict && args.iter().any(Value::is_null) {
        return Ok(Value::Null);
    }
    let arg = |i: usize| args.get(i).cloned().unwrap_or(Value::Null);
    let f64_arg = |i: usize| arg(i).as_f64().unwrap_or(f64::NAN);
    Ok(match f {
        Func::Abs => match arg(0) {
            Value::Int(i) => Value::Int(i.checked_abs().ok_or_else(|| {
                Error::new(SqlState::NumericValueOutOfRange, "integer out of range")
            })?),
            Value::Float(x) => Value::Float(x.abs()),
            Value::Numeric(d) => Value::Numeric(d.abs()),
            other => return Err(bad_arg("abs", &other)),
        },
        Func::Coalesce => args
            .into_iter()
            .find(|v| !v.is_null())
            .unwrap_or(Value::Null),
        Func::NullIf => {
            let (a, b) = (arg(0), arg(1));
            if !a.is_null() && !b.is_null() && a.compare(&b) == Some(std::cmp::Ordering::Equal) {
                Value::Null
            } else {
                a
            }
        }
        Func::Greatest | Func::Least => {
            let mut best: Option<Value> = None;
            for v in args.into_iter().filter(|v| !v.is_null()) {
                best = Some(match best {
                    None => v,
                    Some(b) => {
                        let ord = v.cmp_total(&b);
                        let take = if f == Func::Greatest {
                            ord == std::cmp::Ordering::Greater
                        } else {
                            ord == std::cmp::Ordering::Less
                        };
                        if take { v } else { b }
                    }
                });
            }
            best.unwrap_or(Value::Null)
        }
        Func::Lower => Value::Text(text_arg(&arg(0)).unwrap_or_default().to_lowercase()),
        Func::Upper => Value::Text(text_arg(&arg(0)).unwrap_or_default().to_uppercase()),
        Func::Length => match arg(0) {
            Value::Bytes(b) => Value::Int(b.len() as i64),
            v => Value::Int(text_arg(&v).unwrap_or_default().chars().count() as i64),
        },
        Func::Substr => {
            let s: Vec<char> = text_arg(&arg(0)).unwrap_or_default().chars().collect();
            let start = int_arg(&arg(1))?;
            let (from, to) = match args.get(2) {
                Some(len) => {
                    let len = int_arg(len)?;
                    if len < 0 {
                        return Err(Error::new(
                            SqlState::DataException,
                            "negative substring length not allowed",
                        ));
                    }
                    (start, start.saturating_add(len))
                }
                None => (start, i64::MAX),
            };
            let from = (from.max(1) - 1) as usize;
            let to = (to.max(1) - 1).min(s.len() as i64) as usize;
            Value::Text(if from < to {
                s[from..to].iter().collect()
            } else {
                String::new()
            })
        }
        Func::Trim | Func::LTrim | Func::RTrim => {
            let s = text_arg(&arg(0)).unwrap_or_default();
            let chars: Vec<char> = match args.get(1) {
                Some(c) => text_arg(c).unwrap_or_default().chars().collect(),
                None => vec![' '],
            };
            let t = match f {
                Func::Trim => s.trim_matches(chars.as_slice()),
                Func::LTrim => s.trim_start_matches(chars.as_slice()),
                _ => s.trim_end_matches(chars.as_slice()),
            };
            Value::Text(t.to_string())
        }
        Func::Concat => Value::Text(args.iter().filter_map(Value::to_text).collect()),
        Func::Replace => Value::Text(text_arg(&arg(0)).unwrap_or_default().replace(
            &text_arg(&arg(1)).unwrap_or_default(),
            &text_arg(&arg(2)).unwrap_or_default(),
        )),
        Func::Left | Func::Right => {
            let s: Vec<char> = text_arg(&arg(0)).unwrap_or_default().chars().collect();
            let n = int_arg(&arg(1))?;
            let len = s.len() as i64;
            let take = if n >= 0 { n.min(len) } else { (len + n).max(0) } as usize;
            Value::Text(if f == Func::Left {
                s[..take].iter().collect()
            } else {
                s[s.len() - take..].iter().collect()
            })
        }
        Func::StrPos => {
            let s = text_arg(&arg(0)).unwrap_or_default();
            let sub = text_arg(&arg(1)).unwrap_or_default();
            Value::Int(match s.find(&sub) {
                Some(byte) => s[..byte].chars().count() as i64 + 1,
                None => 0,
            })
        }
        Func::Md5 => {
            let s = text_arg(&arg(0)).unwrap_or_default();
            Value::Text(md5_hex(s.as_bytes()))
        }
        Func::ToHex => Value::Text(format!("{:x}", int_arg(&arg(0))?)),
        Func::Chr => {
            let c = u32::try_from(int_arg(&arg(0))?)
                .ok()
                .and_then(char::from_u32);
            Value::Text(c.map(String::from).unwrap_or_default())
        }
        Func::Ascii => Value::Int(
            text_arg(&arg(0))
                .and_then(|s| s.chars().next())
                .map(|c| i64::from(u32::from(c)))
                .unwrap_or(0),
        ),
        Func::Repeat => {
            let n = int_arg(&arg(1))?.clamp(0, 1 << 20) as usize;
            Value::Text(text_arg(&arg(0)).unwrap_or_default().repeat(n))
        }
        Func::Reverse => Value::Text(
            text_arg(&arg(0))
                .unwrap_or_default()
                .chars()
                .rev()
                .collect(),
        ),
        Func::Lpad | Func::Rpad => {
            let s: Vec<char> = text_arg(&arg(0)).unwrap_or_default().chars().collect();
            let n = int_arg(&arg(1))?.clamp(0, 1 << 20) as usize;
            let fill: Vec<char> = match args.get(2) {
                Some(v) => text_arg(v).unwrap_or_default().chars().collect(),
                None => vec![' '],
            };
            if s.len() >= n {
                Value::Text(s[..n].iter().collect())
            } else if fill.is_empty() {
                Value::Text(s.iter().collect())
            } else {
                let pad: String = fill.iter().cycle().take(n - s.len()).collect();
                let s: String = s.iter().collect();
                Value::Text(if f == Func::Lpad { pad + &s } else { s + &pad })
            }
        }
        Func::Round | Func::Trunc => {
            let places = match args.get(1) {
                Some(p) => int_arg(p)?,
                None => 0,
            };
            let strategy = if f == Func::Round {
                rust_decimal::RoundingStrategy::MidpointAwayFromZero
            } else {
                rust_decimal::RoundingStrategy::ToZero
            };
            match arg(0) {
                Value::Float(x) => {
                    let m = 10f64.powi(places as i32);
                    Value::Float(if f == Func::Round {
                        (x * m).round_ties_even() / m
                    } else {
                        (x * m).trunc() / m
                    })
                }
                v => {
                    let d = match v {
                        Value::Int(i) => Decimal::from(i),
                        Value::Numeric(d) => d,
                        other => return Err(bad_arg("round", &other)),
                    };
                    let places = places.clamp(0, 28) as u32;
                    let mut r = d.round_dp_with_strategy(places, strategy);
                    r.rescale(places);
                    Value::Numeric(r)
                }
            }
        }
        Func::Floor | Func::Ceil => match arg(0) {
            Value::Float(x) => Value::Float(if f == Func::Floor {
                x.floor()
            } else {
                x.ceil()
            }),
            Value::Int(i) => Value::Numeric(Decimal::from(i)),
            Value::Numeric(d) => Value::Numeric(if f == Func::Floor {
                d.floor()
            } else {
                d.ceil()
            }),
            other => return Err(bad_arg("floor", &other)),
        },
        Func::Sqrt => {
            let x = f64_arg(0);
            if x < 0.0 {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    "cannot take square root of a negative number",
                ));
            }
            Value::Float(x.sqrt())
        }
        Func::Exp => Value::Float(f64_arg(0).exp()),
        Func::Ln | Func::Log10 => {
            let x = f64_arg(0);
            if x <= 0.0 {
                return Err(Error::new(
                    SqlState::InvalidParameterValue,
                    "cannot take logarithm of zero or a negative number",
                ));
            }
            Value::Float(if f == Func::Ln { x.ln() } else { x.log10() })
        }
        Func::Pi => Value::Float(std::f64::consts::PI),
        Func::Power => Value::Float(f64_arg(0).powf(f64_arg(1))),
        Func::ModFn => crate::expr::binary(crate::expr::BinOp::Mod, &arg(0), &arg(1))?,
        Func::Sign => match arg(0) {
            Value::Int(i) => Value::Int(i.signum()),
            Value::Float(x) => Value::Float(if x == 0.0 { 0.0 } else { x.signum() }),
            Value::Numeric(d) => Value::Numeric(if d.is_zero() {
                Decimal::ZERO
            } else if d.is_sign_negative() {
                Decimal::NEGATIVE_ONE
            } else {
                Decimal::ONE
            }),
            other => return Err(bad_arg("sign", &other)),
        },
        Func::Now => Value::TimestampTz(ctx.session.now),
        Func::Version => Value::Text(format!(
            "PostgreSQL {SERVER_VERSION} on x86_64-pc-linux-gnu, a distributed SQL database"
        )),
        Func::CurrentDatabase => Value::Text(ctx.session.database.clone()),
        Func::CurrentSchema => Value::Text("public".into()),
        Func::CurrentUser => Value::Text(ctx.session.user.clone()),
        Func::CurrentSetting => {
            let name = text_arg(&arg(0)).unwrap_or_default();
            match ctx.session.setting(&name) {
                Some(v) => Value::Text(v.to_string()),
                None => {
                    return Err(Error::new(
                        SqlState::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    ));
                }
            }
        }
        Func::GenRandomUuid => Value::Uuid(*uuid::Uuid::new_v4().as_bytes()),
        Func::UniqueRowid => Value::Int(unique_rowid(ctx.session.node_id)),
        Func::Random => Value::Float(rand_f64()),
        Func::PgBackendPid => Value::Int(i64::from(ctx.session.backend_pid)),
        Func::FormatType => {
            let oid = int_arg(&arg(0))?;
            // The type modifier of a length-limited type is the length plus 4.
            let len = match args.get(1) {
                Some(Value::Int(m)) if *m >= 4 => u32::try_from(*m - 4).ok(),
                _ => None,
            };
            let ty = u32::try_from(oid)
                .ok()
                .and_then(DataType::from_oid)
                .map(|t| match t {
                    DataType::Varchar(_) => DataType::Varchar(len),
                    DataType::Char(_) => DataType::Char(len),
                    t => t,
                });
            Value::Text(ty.map(DataType::name).unwrap_or_else(|| "???".into()))
        }
        Func::PgGetUserById => Value::Text("root".into()),
        Func::PgTableIsVisible | Func::HasPrivilege => Value::Bool(true),
        Func::PgGetIndexdef | Func::PgGetConstraintdef => {
            let oid = int_arg(&arg(0))?;
            match ctx.session.index_defs.get(&oid) {
                Some((index, constraint)) => Value::Text(if f == Func::PgGetIndexdef {
                    index.clone()
                } else {
                    constraint.clone()
                }),
                None => Value::Null,
            }
        }
        Func::ObjDescription | Func::PgGetExpr | Func::ArrayToString => match f {
            Func::PgGetExpr => arg(0),
            _ => Value::Null,
        },
        Func::PgEncodingToChar => Value::Text("UTF8".into()),
        Func::Extract | Func::DatePart => {
            let field = text_arg(&arg(0)).unwrap_or_default().to_ascii_lowercase();
            let v = extract(&field, &arg(1))?;
            if f == Func::Extract {
                Value::Numeric(Decimal::from_f64(v).unwrap_or_default())
            } else {
                Value::Float(v)
            }
        }
    })
}

fn bad_arg(name: &str, v: &Value) -> Error {
    Error::new(
        SqlState::UndefinedFunction,
        format!("function {name}({}) does not exist", v.type_name()),
    )
}

fn extract(field: &str, v: &Value) -> Result<f64> {
    use chrono::{Datelike, Timelike};
    let t = match v {
        Value::Date(d) => {
            crate::types::naive_from_date(*d).map(|d| d.and_time(chrono::NaiveTime::MIN))
        }
        Value::Timestamp(t) | Value::TimestampTz(t) => crate::types::naive_from_ts(*t),
        other => return Err(bad_arg("extract", other)),
    }
    .ok_or_else(|| Error::new(SqlState::DatetimeFieldOverflow, "timestamp out of range"))?;
    Ok(match field {
        "year" => f64::from(t.year()),
        "month" => f64::from(t.month()),
        "day" => f64::from(t.day()),
        "hour" => f64::from(t.hour()),
        "minute" => f64::from(t.minute()),
        "second" => f64::from(t.second()) + f64::from(t.nanosecond()) / 1e9,
        "dow" => f64::from(t.weekday().num_days_from_sunday()),
        "doy" => f64::from(t.ordinal()),
        "epoch" => (t.and_utc().timestamp_micros() as f64) / 1e6,
        _ => {
            return Err(Error::new(
                SqlState::InvalidParameterValue,
                format!("unit \"{field}\" not recognized"),
            ));
        }
    })
}

/// A unique, roughly time-ordered 64-bit id: microseconds since 2015 shifted left by
/// 15 bits, plus the node id in the low 15 bits, like CockroachDB's unique_rowid().
/// Within a process a counter keeps ids strictly increasing.
pub fn unique_rowid(node_id: u64) -> i64 {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    const EPOCH_2015_MICROS: i64 = 1_420_070_400_000_000;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
        - EPOCH_2015_MICROS;
    let mut micros = now;
    loop {
        let last = LAST.load(Ordering::Relaxed);
        if micros <= last {
            micros = last + 1;
        }
        if LAST
            .compare_exchange(last, micros, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            break;
        }
    }
    (micros << 15) | (node_id as i64 & 0x7fff)
}

fn rand_f64() -> f64 {
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap_or([0; 8]));
    (n >> 11) as f64 / (1u64 << 53) as f64
}

fn md5_hex(data: &[u8]) -> String {
    use md5::Digest;
    md5::Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The value of a numeric as f64, for functions that take floats.
pub fn decimal_to_f64(d: &Decimal) -> f64 {
    d.to_f64().unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_known_digests() {
        assert_eq!(md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex(b"abc"), "900150983cd24fb0d6963f7d28e17f72");
    }

    #[test]
    fn rowids_increase() {
        let a = unique_rowid(1);
        let b = unique_rowid(1);
        assert!(b > a);
        assert_eq!(a & 0x7fff, 1);
    }
}
