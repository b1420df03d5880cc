//! Go's number formatting and parsing rules, as far as sops depends on them.
//!
//! The bytes that are encrypted (and hashed into the MAC) for a number are
//! Go's `strconv` output, and the YAML/JSON emitters print numbers the way
//! yaml.v3 and `encoding/json` do. Rust's shortest round-trip float printing
//! gives the same digits as Go's `-1` precision, so only the layout differs.

/// `strconv.FormatFloat(f, 'f', -1, 64)`: what sops encrypts for a float.
pub fn format_float_f(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f}")
    }
}

/// Splits a finite non-zero float into (negative, digits, decimal exponent),
/// where the value is `0.d1d2d3… × 10^(exp+1)`, i.e. `exp` is the exponent of
/// the first digit.
fn shortest_digits(f: f64) -> (bool, String, i32) {
    let s = format!("{:e}", f.abs());
    let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    (f.is_sign_negative(), digits, exp.parse().unwrap_or(0))
}

fn format_e(neg: bool, digits: &str, exp: i32, trim_json: bool) -> String {
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    out.push('e');
    out.push(if exp < 0 { '-' } else { '+' });
    let e = exp.unsigned_abs();
    if e < 10 && !(trim_json && exp < 0) {
        out.push('0');
    }
    out.push_str(&e.to_string());
    out
}

/// `strconv.FormatFloat(f, 'g', -1, 64)`: how yaml.v3 prints floats
/// (before it maps the infinities and NaN to `.inf`/`.nan`).
pub fn format_float_g(f: f64) -> String {
    if !f.is_finite() {
        return format_float_f(f);
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let (neg, digits, exp) = shortest_digits(f);
    // Go uses precision 6 for the %e decision when printing shortest.
    if !(-4..6).contains(&exp) {
        format_e(neg, &digits, exp, false)
    } else {
        format!("{f}")
    }
}

/// The float layout of Go's `encoding/json` (`1e+21`, `1e-7`, else plain).
/// Returns `None` for NaN and infinities, which JSON cannot hold.
pub fn format_float_json(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let (neg, digits, exp) = shortest_digits(f);
        Some(format_e(neg, &digits, exp, true))
    } else {
        Some(format!("{f}"))
    }
}

/// `strconv.ParseInt(s, 0, 64)`: optional sign, `0x`/`0o`/`0b` prefixes and
/// the legacy leading-zero octal.
pub fn parse_int_base0(s: &str) -> Option<i64> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let mag = parse_uint_base0(rest)?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some((mag as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(mag).ok()
    }
}

/// `strconv.ParseUint(s, 0, 64)` (no sign allowed).
pub fn parse_uint_base0(s: &str) -> Option<u64> {
    let lower = s.as_bytes();
    let (radix, digits) = if lower.len() > 1 && lower[0] == b'0' {
        match lower[1] {
            b'x' | b'X' => (16, &s[2..]),
            b'o' | b'O' => (8, &s[2..]),
            b'b' | b'B' => (2, &s[2..]),
            _ => (8, &s[1..]),
        }
    } else {
        (10, s)
    };
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// `strconv.Atoi`: base 10 with an optional sign.
pub fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `strconv.ParseFloat(s, 64)`, including its refusal of out-of-range values.
pub fn parse_float(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" || lower == "nan" {
        return s.parse().ok().or_else(|| {
            let v = if lower == "nan" {
                f64::NAN
            } else {
                f64::INFINITY
            };
            Some(if s.starts_with('-') { -v } else { v })
        });
    }
    if body.is_empty()
        || !body
            .bytes()
            .next()
            .is_some_and(|c| c.is_ascii_digit() || c == b'.')
    {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    // Go reports overflow as an error (ErrRange); callers treat it as "not a float".
    v.is_finite().then_some(v)
}

/// `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_float_layouts() {
        assert_eq!(format_float_f(1.0), "1");
        assert_eq!(format_float_f(1.5), "1.5");
        assert_eq!(format_float_f(1e22), "10000000000000000000000");
        assert_eq!(format_float_f(f64::INFINITY), "+Inf");
        assert_eq!(format_float_g(1e6), "1e+06");
        assert_eq!(format_float_g(123456.0), "123456");
        assert_eq!(format_float_g(1234567.0), "1.234567e+06");
        assert_eq!(format_float_g(0.0001), "0.0001");
        assert_eq!(format_float_g(0.00001), "1e-05");
        assert_eq!(format_float_g(-2.5), "-2.5");
        assert_eq!(format_float_json(1e21).unwrap(), "1e+21");
        assert_eq!(format_float_json(1e-7).unwrap(), "1e-7");
        assert_eq!(format_float_json(1.5e-10).unwrap(), "1.5e-10");
        assert_eq!(format_float_json(100.0).unwrap(), "100");
    }

    #[test]
    fn go_int_parsing() {
        assert_eq!(parse_int_base0("0x1F"), Some(31));
        assert_eq!(parse_int_base0("017"), Some(15));
        assert_eq!(parse_int_base0("08"), None);
        assert_eq!(parse_int_base0("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int_base0("9223372036854775808"), None);
        assert_eq!(parse_uint_base0("9223372036854775808"), Some(1 << 63));
        assert_eq!(parse_int_base0("0o17"), Some(15));
        assert_eq!(parse_int_base0("0b101"), Some(5));
        assert_eq!(parse_int_base0("1e3"), None);
        assert_eq!(parse_float("1e400"), None);
        assert_eq!(parse_float("08"), Some(8.0));
    }
}
