//! The JSON store, with sops' rules.
//!
//! - Every number becomes a Go `float64` (so `1` is encrypted as `type:float`),
//!   as sops 3.11 reads it. sops 3.13.2 reads integers that fit `int64` as
//!   integers; [`parse_int64`] reads that way, for the files it writes.
//! - Key order and duplicate keys are kept.
//! - Output is built by hand, then laid out like `json.Indent` with a tab (or
//!   N spaces from `stores.json.indent`), and strings are escaped like Go's
//!   `json.Marshal` (`<`, `>`, `&`, U+2028/9 as `\u…`).
//!
//! The parser is hand-written: `serde_json` cannot keep duplicate keys, and
//! this one bounds nesting depth and never echoes input in its errors.

use crate::sops::gonum;
use crate::sops::value::{Item, Map, Text, Value};
use crate::{Error, Result};

const MAX_DEPTH: usize = 512;

fn err(line: usize, msg: &str) -> Error {
    Error::Parse {
        format: "json",
        message: format!("line {line}: {msg}"),
    }
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
    /// Integer literals that fit `int64` become `Value::Int` (sops 3.13.2).
    int64: bool,
}

impl Parser<'_> {
    fn line(&self) -> usize {
        1 + self.b[..self.i.min(self.b.len())]
            .iter()
            .filter(|c| **c == b'\n')
            .count()
    }

    fn ws(&mut self) {
        while let Some(c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn expect(&mut self, c: u8, what: &str) -> Result<()> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(err(self.line(), &format!("expected {what}")))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value> {
        if depth > MAX_DEPTH {
            return Err(err(self.line(), "nesting is too deep"));
        }
        self.ws();
        match self.b.get(self.i) {
            None => Err(err(self.line(), "unexpected end of input")),
            Some(b'{') => {
                self.i += 1;
                Ok(Value::Map(self.object(depth)?))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Value::Seq(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Seq(items));
                        }
                        _ => return Err(err(self.line(), "expected ',' or ']' in array")),
                    }
                }
            }
            Some(b'"') => Ok(Value::Str(Text::new(self.string()?))),
            Some(b't') => self.word("true", Value::Bool(true)),
            Some(b'f') => self.word("false", Value::Bool(false)),
            Some(b'n') => self.word("null", Value::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => self.number(),
            Some(_) => Err(err(self.line(), "invalid character")),
        }
    }

    fn word(&mut self, w: &str, v: Value) -> Result<Value> {
        if self.b[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(err(self.line(), "invalid literal"))
        }
    }

    fn number(&mut self) -> Result<Value> {
        let start = self.i;
        let b = self.b;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(c) if c.is_ascii_digit() => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(err(self.line(), "invalid number")),
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(err(self.line(), "invalid number"));
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            if !b.get(i).is_some_and(u8::is_ascii_digit) {
                return Err(err(self.line(), "invalid number"));
            }
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        self.i = i;
        let text =
            std::str::from_utf8(&b[start..i]).map_err(|_| err(self.line(), "invalid number"))?;
        if self.int64 && !text.contains(['.', 'e', 'E']) {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::Int(n));
            }
        }
        // Go's decoder gives float64 for every number and fails on overflow.
        gonum::parse_float(text)
            .map(Value::Float)
            .ok_or_else(|| err(self.line(), "number out of range for float64"))
    }

    fn hex4(&mut self) -> Result<u32> {
        let h = self
            .b
            .get(self.i..self.i + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| err(self.line(), "invalid \\u escape"))?;
        self.i += 4;
        Ok(h)
    }

    fn string(&mut self) -> Result<Vec<u8>> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.i) else {
                return Err(err(self.line(), "unterminated string"));
            };
            match c {
                b'"' => {
                    self.i += 1;
                    // Go replaces invalid UTF-8 with U+FFFD when decoding.
                    return Ok(match String::from_utf8(out) {
                        Ok(s) => s.into_bytes(),
                        Err(e) => String::from_utf8_lossy(e.as_bytes())
                            .into_owned()
                            .into_bytes(),
                    });
                }
                b'\\' => {
                    self.i += 1;
                    let e = *self
                        .b
                        .get(self.i)
                        .ok_or_else(|| err(self.line(), "unterminated string"))?;
                    self.i += 1;
                    match e {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut cp = self.hex4()?;
                            if (0xD800..0xDC00).contains(&cp)
                                && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xDC00..0xE000).contains(&lo) {
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                } else {
                                    self.i = save;
                                }
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return Err(err(self.line(), "invalid escape in string")),
                    }
                }
                c if c < 0x20 => return Err(err(self.line(), "control character in string")),
                c => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Map> {
        let mut m = Map::new();
        self.ws();
        if self.b.get(self.i) == Some(&b'}') {
            self.i += 1;
            return Ok(m);
        }
        loop {
            self.ws();
            if self.b.get(self.i) != Some(&b'"') {
                return Err(err(self.line(), "expected a string key"));
            }
            let key = self.string()?;
            self.expect(b':', "':' after object key")?;
            let v = self.value(depth + 1)?;
            m.0.push(Item::new(String::from_utf8_lossy(&key).into_owned(), v));
            self.ws();
            match self.b.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(m);
                }
                _ => return Err(err(self.line(), "expected ',' or '}' in object")),
            }
        }
    }
}

/// Parses a JSON document whose top level is an object.
pub fn parse(input: &[u8]) -> Result<Map> {
    parse_object(input, false)
}

/// Parses like sops 3.13.2 and later: integer literals that fit `int64`
/// become integers, other numbers `float64`.
pub fn parse_int64(input: &[u8]) -> Result<Map> {
    parse_object(input, true)
}

fn parse_object(input: &[u8], int64: bool) -> Result<Map> {
    let mut p = Parser {
        b: input,
        i: 0,
        int64,
    };
    p.ws();
    match p.b.get(p.i) {
        Some(b'{') => {}
        None => return Err(err(p.line(), "unexpected end of input: the input is empty")),
        // An array or scalar is JSON, just not a document sops can hold.
        Some(b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
            return Err(err(p.line(), "the top level must be an object"))
        }
        Some(_) => return Err(err(p.line(), "the input is not JSON (expected an object)")),
    }
    if p.b.get(p.i) != Some(&b'{') {
        return Err(err(p.line(), "the top level must be an object"));
    }
    p.i += 1;
    let m = p.object(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(err(p.line(), "unexpected data after the top-level object"));
    }
    Ok(m)
}

/// Parses any JSON value (for `set` values).
pub fn parse_value(input: &[u8]) -> Result<Value> {
    let mut p = Parser {
        b: input,
        i: 0,
        int64: false,
    };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.b.len() {
        return Err(err(p.line(), "unexpected data after the value"));
    }
    Ok(v)
}

/// Appends `s` escaped like Go's `json.Marshal` (HTML-safe).
pub fn escape_into(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let text = String::from_utf8_lossy(s);
    for c in text.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{8}' => out.extend_from_slice(b"\\b"),
            '\u{c}' => out.extend_from_slice(b"\\f"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes())
            }
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(c as usize) >> 4]);
                out.push(HEX[(c as usize) & 15]);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// How nested levels are indented (`stores.json.indent`: -1 = tab).
#[derive(Clone, Copy, Debug)]
pub struct Indent(pub Option<usize>);

impl Indent {
    fn write(&self, out: &mut Vec<u8>, depth: usize) {
        out.push(b'\n');
        for _ in 0..depth {
            match self.0 {
                None => out.push(b'\t'),
                Some(n) => out.extend(std::iter::repeat_n(b' ', n)),
            }
        }
    }
}

/// Emits one value in sops' JSON layout (comments are skipped).
pub fn emit_value(out: &mut Vec<u8>, v: &Value, indent: Indent, depth: usize) -> Result<()> {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Value::Int(i) => out.extend_from_slice(i.to_string().as_bytes()),
        Value::Uint(u) => out.extend_from_slice(u.to_string().as_bytes()),
        Value::Float(f) => out.extend_from_slice(
            gonum::format_float_json(*f)
                .ok_or_else(|| Error::Emit("json: unsupported value: NaN or infinity".into()))?
                .as_bytes(),
        ),
        Value::Str(t) => escape_into(out, t.as_bytes()),
        Value::Comment(_) => {}
        Value::Time(t) => escape_into(out, t.rfc3339_nano().as_bytes()),
        Value::Seq(items) => {
            let items: Vec<&Value> = items
                .iter()
                .filter(|v| !matches!(v, Value::Comment(_)))
                .collect();
            if items.is_empty() {
                out.extend_from_slice(b"[]");
                return Ok(());
            }
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                indent.write(out, depth + 1);
                emit_value(out, item, indent, depth + 1)?;
            }
            indent.write(out, depth);
            out.push(b']');
        }
        Value::Map(m) => {
            let entries: Vec<(&str, &Value)> = m.entries().collect();
            if entries.is_empty() {
                out.extend_from_slice(b"{}");
                return Ok(());
            }
            out.push(b'{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                indent.write(out, depth + 1);
                escape_into(out, k.as_bytes());
                out.extend_from_slice(b": ");
                emit_value(out, v, indent, depth + 1)?;
            }
            indent.write(out, depth);
            out.push(b'}');
        }
    }
    Ok(())
}

/// Emits a whole document with the trailing newline sops adds.
pub fn emit(m: &Map, indent: Indent) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    emit_value(&mut out, &Value::Map(m.clone()), indent, 0)?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn says_what_is_wrong_with_a_non_object() {
        let msg = |input: &[u8]| parse(input).unwrap_err().to_string();
        assert!(msg(b"").contains("the input is empty"));
        assert!(msg(b"a: 1\n").contains("not JSON"));
        assert!(msg(b"[1]").contains("top level must be an object"));
    }

    use super::*;

    #[test]
    fn parse_emit() {
        let src = br#"{"a": 1, "b": [true, null, "x<y"], "a": {"c": 1e3}, "e": {}}"#;
        let m = parse(src).unwrap();
        assert_eq!(m.len(), 4);
        let out = emit(&m, Indent(None)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n\t\"a\": 1,\n\t\"b\": [\n\t\ttrue,\n\t\tnull,\n\t\t\"x\\u003cy\"\n\t],\n\t\"a\": {\n\t\t\"c\": 1000\n\t},\n\t\"e\": {}\n}\n"
        );
    }

    #[test]
    fn errors_have_lines_not_content() {
        let e = parse(b"{\n\"secret\": tru}").unwrap_err().to_string();
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains("secret"));
        assert!(parse(b"[1]").is_err());
        assert!(parse(b"{} x").is_err());
        let deep = "[".repeat(10_000);
        assert!(parse(format!("{{\"a\":{deep}").as_bytes()).is_err());
    }

    #[test]
    fn int64_mode_like_sops_3_13_2() {
        let src = br#"{"a": 1234567890123456789, "b": -9223372036854775808, "c": 9223372036854775808, "d": 1.0, "e": 2e3, "f": -0, "g": [7]}"#;
        let m = parse_int64(src).unwrap();
        let get = |k: &str| m.get(k).unwrap().clone();
        assert!(matches!(get("a"), Value::Int(1234567890123456789)));
        assert!(matches!(get("b"), Value::Int(i64::MIN)));
        // Beyond int64, or not an integer literal: float64, as before.
        assert!(matches!(get("c"), Value::Float(f) if f == 9223372036854775808.0));
        assert!(matches!(get("d"), Value::Float(f) if f == 1.0));
        assert!(matches!(get("e"), Value::Float(f) if f == 2000.0));
        assert!(matches!(get("f"), Value::Int(0)));
        assert!(matches!(&get("g"), Value::Seq(v) if matches!(v[0], Value::Int(7))));
        // The default stays float64 for everything (sops 3.11).
        let m = parse(src).unwrap();
        assert!(matches!(m.get("a"), Some(Value::Float(_))));
        assert!(matches!(m.get("f"), Some(Value::Float(f)) if f.is_sign_negative()));
    }
}
