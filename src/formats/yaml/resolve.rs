//! Scalar resolution as yaml.v3 (the YAML library inside sops) does it.
//!
//! yaml.v3 mixes YAML 1.1 and 1.2: `true`/`false` only in three spellings,
//! `yes`/`on` stay strings (but are quoted on output), `0x1F` and `017` are
//! integers, underscores are dropped from numbers, and plain scalars starting
//! with four digits and `-` may be timestamps.

use crate::sops::gonum;
use crate::sops::time::Timestamp;
use crate::sops::value::{Text, Value};

/// The value of an untagged plain scalar.
pub fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        _ => {}
    }
    let first = s.as_bytes()[0];
    if first.is_ascii_digit() || first == b'+' || first == b'-' {
        if let Some(t) = Timestamp::parse_yaml(s) {
            return Value::Time(t);
        }
        let plain = s.replace('_', "");
        if let Some(i) = gonum::parse_int_base0(&plain) {
            return Value::Int(i);
        }
        if let Some(u) = gonum::parse_uint_base0(&plain) {
            return Value::Uint(u);
        }
        if is_yaml_style_float(&plain) {
            if let Some(f) = gonum::parse_float(&plain) {
                return Value::Float(f);
            }
        }
        if let Some(rest) = plain.strip_prefix("0b") {
            if let Ok(i) = i64::from_str_radix(rest, 2) {
                return Value::Int(i);
            }
        } else if let Some(rest) = plain.strip_prefix("-0b") {
            if let Ok(i) = i64::from_str_radix(&format!("-{rest}"), 2) {
                return Value::Int(i);
            }
        }
    } else if first == b'.' {
        if let Some(f) = gonum::parse_float(s) {
            return Value::Float(f);
        }
    }
    Value::Str(Text::from(s))
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// YAML 1.1 booleans yaml.v3 keeps as strings but quotes when writing.
pub fn is_old_bool(s: &str) -> bool {
    matches!(
        s,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "on"
            | "On"
            | "ON"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "off"
            | "Off"
            | "OFF"
    )
}

/// `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$` (YAML 1.1 base 60).
pub fn is_base60_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'+' | b'-')) {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_digit) {
        return false;
    }
    i += 1;
    while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
        i += 1;
    }
    let mut groups = 0;
    while b.get(i) == Some(&b':') {
        i += 1;
        let start = i;
        while i - start < 2 && b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let n = i - start;
        if n == 0 || (n == 2 && b[start] > b'5') {
            return false;
        }
        groups += 1;
    }
    if groups == 0 {
        return false;
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(|c| c.is_ascii_digit() || *c == b'_') {
            i += 1;
        }
    }
    i == b.len()
}

/// The value of a scalar with an explicit tag (`!!int`, `!!binary`, …).
/// Unknown tags are dropped and the scalar kept as a string, as sops does.
pub fn resolve_tagged(tag: &str, s: &str) -> Result<Value, String> {
    let bad = |t: &str| format!("cannot decode the scalar as {t}");
    Ok(match tag {
        "str" => Value::Str(Text::from(s)),
        "null" => Value::Null,
        "bool" => match resolve_plain(s) {
            v @ Value::Bool(_) => v,
            _ => return Err(bad("!!bool")),
        },
        "int" => match resolve_plain(s) {
            v @ (Value::Int(_) | Value::Uint(_)) => v,
            _ => return Err(bad("!!int")),
        },
        "float" => match resolve_plain(s) {
            Value::Int(i) => Value::Float(i as f64),
            v @ Value::Float(_) => v,
            _ => return Err(bad("!!float")),
        },
        "timestamp" => match Timestamp::parse_yaml(s) {
            Some(t) => Value::Time(t),
            None => return Err(bad("!!timestamp")),
        },
        "binary" => {
            use base64::Engine as _;
            let cleaned: String = s.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(cleaned)
                .map_err(|_| bad("!!binary"))?;
            Value::Str(Text::new(bytes))
        }
        _ => Value::Str(Text::from(s)),
    })
}

/// Whether yaml.v3 would write this string without quotes
/// (before the emitter's own character analysis).
pub fn can_use_plain(s: &str) -> bool {
    matches!(resolve_plain(s), Value::Str(_)) && !is_base60_float(s) && !is_old_bool(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_v3_resolution() {
        assert!(matches!(resolve_plain("yes"), Value::Str(_)));
        assert_eq!(resolve_plain("0x1F"), Value::Int(31));
        assert_eq!(resolve_plain("1_000"), Value::Int(1000));
        assert_eq!(resolve_plain("1.0"), Value::Float(1.0));
        assert_eq!(resolve_plain(".5"), Value::Float(0.5));
        assert_eq!(resolve_plain("-0b11"), Value::Int(-3));
        assert!(matches!(
            resolve_plain("9223372036854775808"),
            Value::Uint(_)
        ));
        assert!(matches!(resolve_plain("2024-01-01"), Value::Time(_)));
        assert!(matches!(resolve_plain("1e400"), Value::Str(_)));
        assert!(matches!(resolve_plain("1.2.3"), Value::Str(_)));
        assert!(is_base60_float("1:20"));
        assert!(!is_base60_float("1:70"));
        assert!(!can_use_plain("123"));
        assert!(!can_use_plain("on"));
        assert!(can_use_plain("hello"));
    }
}
