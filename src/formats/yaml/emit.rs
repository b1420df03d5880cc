//! A YAML writer that lays documents out the way sops (yaml.v3) does, so
//! kustos' output diffs cleanly against files sops wrote:
//! - block style everywhere, `indent` spaces per level (4 by default);
//!   sequence items count `- ` as indentation, other levels round up to a
//!   multiple of the indent (yaml.v3's "more regular" indentation);
//! - strings are plain when yaml.v3 would read them back as the same string
//!   and libyaml's character analysis allows it, else single- or
//!   double-quoted; multi-line strings are literal blocks (`|`, `|-`, `|+`);
//! - comments are written as `#text` lines above the item they precede, and
//!   trailing comments of a block after its last item;
//! - no line wrapping.

use std::fmt::Write as _;

use super::resolve;
use crate::sops::gonum;
use crate::sops::value::{Key, Map, Value};

struct W {
    out: String,
    column: usize,
    /// Only indentation (spaces or `- `) has been written on this line.
    indention: bool,
    /// The last character written is whitespace.
    whitespace: bool,
    step: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// A block mapping value or the document root.
    Normal,
    /// Directly inside a sequence item (`- ` counts as indentation).
    SeqItem,
}

impl W {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_str(&mut self, s: &str) {
        self.out.push_str(s);
        self.column += s.chars().count();
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
        self.indention = true;
        self.whitespace = true;
    }

    fn write_indent(&mut self, indent: usize) {
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
    }

    fn indicator(
        &mut self,
        s: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        self.put_str(s);
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    fn increase(&self, indent: Option<usize>, ctx: Ctx) -> usize {
        match indent {
            None => 0,
            Some(i) if ctx == Ctx::SeqItem => i + 2,
            Some(i) => self.step * ((i + self.step) / self.step),
        }
    }

    fn comments(&mut self, indent: usize, lines: &[String]) {
        for l in lines {
            self.write_indent(indent);
            self.put('#');
            self.put_str(l);
            self.indention = false;
            self.put_break();
        }
    }
}

use super::scalar::{analyze, is_break, is_printable, Dialect};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

fn choose_style(s: &str, is_key: bool) -> Style {
    let wanted = if s.contains('\n') {
        Style::Literal
    } else if resolve::can_use_plain(s) {
        Style::Plain
    } else {
        Style::Double
    };
    let a = analyze(s, Dialect::V3);
    let mut style = wanted;
    if is_key && a.multiline {
        style = Style::Double;
    }
    if style == Style::Plain && (!a.block_plain || (s.is_empty() && is_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block || is_key) {
        style = Style::Double;
    }
    style
}

fn write_double(w: &mut W, s: &str) {
    w.indicator("\"", true, false, false);
    for c in s.chars() {
        if !is_printable(c) || c == '\u{feff}' || is_break(c) || c == '"' || c == '\\' {
            w.put('\\');
            match c {
                '\0' => w.put('0'),
                '\u{7}' => w.put('a'),
                '\u{8}' => w.put('b'),
                '\t' => w.put('t'),
                '\n' => w.put('n'),
                '\u{b}' => w.put('v'),
                '\u{c}' => w.put('f'),
                '\r' => w.put('r'),
                '\u{1b}' => w.put('e'),
                '"' => w.put('"'),
                '\\' => w.put('\\'),
                '\u{85}' => w.put('N'),
                '\u{a0}' => w.put('_'),
                '\u{2028}' => w.put('L'),
                '\u{2029}' => w.put('P'),
                c => {
                    let u = c as u32;
                    let s = if u <= 0xFF {
                        format!("x{u:02X}")
                    } else if u <= 0xFFFF {
                        format!("u{u:04X}")
                    } else {
                        format!("U{u:08X}")
                    };
                    w.put_str(&s);
                }
            }
        } else {
            w.put(c);
        }
    }
    w.indicator("\"", false, false, false);
}

/// `hint` is the indentation indicator a leading space or line break needs:
/// how far the content sits right of the enclosing block (the key's column
/// for a mapping value, the `-`'s column for a sequence item). yaml.v3
/// always writes its indent step there, which puts the content of a
/// sequence item two columns left of where the indicator says it is: sops
/// cannot read such output back. kustos writes the true offset instead (the
/// same bytes as sops wherever sops's output is readable).
fn write_literal(w: &mut W, s: &str, indent: usize, hint: usize) {
    w.indicator("|", true, false, false);
    let first = s.chars().next();
    if first.is_some_and(|c| c == ' ' || is_break(c)) {
        // Only line breaks: no content line for the indicator to place,
        // so sops's choice reads back the same.
        let hint = if s.chars().all(is_break) {
            w.step
        } else {
            hint
        };
        let hint = hint.clamp(1, 9).to_string();
        w.indicator(&hint, false, false, false);
    }
    let chars: Vec<char> = s.chars().collect();
    let chomp = match chars.len() {
        0 => Some("-"),
        n if !is_break(chars[n - 1]) => Some("-"),
        1 => Some("+"),
        n if is_break(chars[n - 2]) => Some("+"),
        _ => None,
    };
    if let Some(c) = chomp {
        w.indicator(c, false, false, false);
    }
    w.put_break();
    w.indention = true;
    w.whitespace = true;
    let mut breaks = true;
    for c in chars {
        if is_break(c) {
            w.put_break();
            breaks = true;
        } else {
            if breaks {
                w.write_indent(indent);
            }
            w.put(c);
            w.indention = false;
            breaks = false;
        }
    }
}

/// Writes a string scalar in the style yaml.v3 picks; `hint` as in
/// [`write_literal`].
fn write_str(w: &mut W, s: &str, is_key: bool, indent: usize, hint: usize) {
    match choose_style(s, is_key) {
        Style::Plain => {
            if !w.whitespace {
                w.put(' ');
            }
            w.put_str(s);
            w.whitespace = false;
            w.indention = false;
        }
        Style::Single => {
            w.indicator("'", true, false, false);
            for c in s.chars() {
                if c == '\'' {
                    w.put('\'');
                }
                w.put(c);
            }
            w.indicator("'", false, false, false);
        }
        Style::Double => write_double(w, s),
        Style::Literal => write_literal(w, s, indent, hint),
    }
}

fn scalar_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) => {
            if f.is_nan() {
                ".nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 { ".inf" } else { "-.inf" }.into()
            } else {
                gonum::format_float_g(*f)
            }
        }
        Value::Time(t) => t.rfc3339_nano(),
        _ => return None,
    })
}

fn write_scalar(w: &mut W, v: &Value, indent: usize, hint: usize) {
    match v {
        Value::Str(t) => match t.as_str() {
            Some(s) => write_str(w, s, false, indent, hint),
            None => {
                // yaml.v3 writes invalid UTF-8 as base64 with a !!binary tag.
                use base64::Engine as _;
                w.indicator("!!binary", true, false, false);
                let b = base64::engine::general_purpose::STANDARD.encode(t.as_bytes());
                write_str(w, &b, false, indent, hint);
            }
        },
        Value::Comment(t) => write_str(w, &t.to_str_lossy(), false, indent, hint),
        other => {
            if let Some(s) = scalar_text(other) {
                if !w.whitespace {
                    w.put(' ');
                }
                w.put_str(&s);
                w.whitespace = false;
                w.indention = false;
            }
        }
    }
}

fn is_empty_collection(v: &Value) -> bool {
    match v {
        Value::Map(m) => m.0.iter().all(|i| matches!(i.key, Key::Comment(_))),
        Value::Seq(s) => s.iter().all(|i| matches!(i, Value::Comment(_))),
        _ => false,
    }
}

/// Writes a value in node position (after `key:` or `- `).
fn write_node(w: &mut W, v: &Value, parent: Option<usize>, ctx: Ctx) {
    match v {
        Value::Map(m) if !is_empty_collection(v) => write_map(w, m, parent, ctx),
        Value::Seq(s) if !is_empty_collection(v) => write_seq(w, s, parent, ctx),
        Value::Map(_) => w.indicator("{}", true, false, false),
        Value::Seq(_) => w.indicator("[]", true, false, false),
        scalar => {
            let indent = w.increase(parent, ctx);
            let hint = match parent {
                Some(p) => indent - p,
                None => w.step,
            };
            write_scalar(w, scalar, indent, hint);
        }
    }
}

fn comment_text(k: &crate::sops::value::Text) -> String {
    k.to_str_lossy().into_owned()
}

fn write_map(w: &mut W, m: &Map, parent: Option<usize>, ctx: Ctx) {
    let indent = w.increase(parent, ctx);
    let mut pending: Vec<String> = Vec::new();
    for item in &m.0 {
        let key = match &item.key {
            Key::Comment(c) => {
                pending.push(comment_text(c));
                continue;
            }
            Key::Str(k) | Key::Other(k) => k,
        };
        w.comments(indent, &std::mem::take(&mut pending));
        w.write_indent(indent);
        let simple = key.len() <= 128 && !key.contains('\n');
        if simple {
            write_str(w, key, true, indent, w.step);
            w.indicator(":", false, false, false);
        } else {
            w.indicator("?", true, false, true);
            // Long or multi-line keys: always quoted (valid and unambiguous).
            write_double(w, key);
            w.write_indent(indent);
            w.indicator(":", true, false, false);
        }
        write_node(w, &item.value, Some(indent), Ctx::Normal);
    }
    // Comments after the last key: its foot comment, at the block's indent.
    w.comments(indent, &pending);
}

fn write_seq(w: &mut W, s: &[Value], parent: Option<usize>, ctx: Ctx) {
    let indent = w.increase(parent, ctx);
    let mut pending: Vec<String> = Vec::new();
    for item in s {
        if let Value::Comment(c) = item {
            pending.push(comment_text(c));
            continue;
        }
        w.comments(indent, &std::mem::take(&mut pending));
        w.write_indent(indent);
        w.indicator("-", true, false, true);
        write_node(w, item, Some(indent), Ctx::SeqItem);
    }
    w.comments(indent, &pending);
}

/// Renders a single-line string as a YAML scalar (plain when safe, else
/// quoted), for hand-written templates.
pub fn scalar(s: &str) -> String {
    let mut w = W {
        out: String::new(),
        column: 0,
        indention: true,
        whitespace: true,
        step: 2,
    };
    match choose_style(s, false) {
        Style::Literal => write_double(&mut w, s),
        _ => write_str(&mut w, s, false, 0, 2),
    }
    w.out
}

/// The indentation step for a configured indent: yaml.v3 (like libyaml)
/// falls back to 2 outside 2..=9, which also keeps every block scalar's
/// indentation indicator a single digit.
fn indent_step(indent: usize) -> usize {
    if (2..=9).contains(&indent) {
        indent
    } else {
        2
    }
}

/// Writes documents separated by `---`, ending with a newline.
pub fn emit(docs: &[Map], indent: usize) -> String {
    let mut w = W {
        out: String::with_capacity(1024),
        column: 0,
        indention: true,
        whitespace: true,
        step: indent_step(indent),
    };
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            w.write_indent(0);
            w.put_str("---");
            w.whitespace = false;
            w.indention = false;
            w.write_indent(0);
        }
        if is_empty_collection(&Value::Map(doc.clone())) {
            let comments: Vec<String> = doc
                .0
                .iter()
                .filter_map(|i| match &i.key {
                    Key::Comment(c) => Some(comment_text(c)),
                    _ => None,
                })
                .collect();
            w.comments(0, &comments);
            w.write_indent(0);
            w.put_str("{}");
            w.whitespace = false;
            w.indention = false;
        } else {
            write_map(&mut w, doc, None, Ctx::Normal);
        }
        // Document end: break the line if something is on it.
        if w.column > 0 {
            w.put_break();
        }
    }
    w.out
}

/// Writes a single value the way `sops decrypt --extract` prints subtrees.
pub fn emit_value(v: &Value, indent: usize) -> String {
    match v {
        Value::Map(m) => emit(std::slice::from_ref(m), indent),
        other => {
            let mut w = W {
                out: String::new(),
                column: 0,
                indention: true,
                whitespace: true,
                step: indent_step(indent),
            };
            write_node(&mut w, other, None, Ctx::Normal);
            if w.column > 0 {
                w.put_break();
            }
            let _ = write!(w.out, "");
            w.out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::formats::yaml::parse::parse;

    fn round(src: &str) -> String {
        emit(&parse(src.as_bytes(), false).unwrap(), 4)
    }

    // Expected outputs are what the real `sops decrypt` printed for the same input.
    #[test]
    fn layout_like_sops() {
        assert_eq!(
            round("a: 1.0\nb: 1000000.0\nc: 1.5\nd: 2024-01-01\ne: \"multi\\nline \"\nf: \"tab\\there\"\ng: \"\\U0001F600 ok\"\nh: [1, \"x\"]\ni: !!binary aGVsbG8=\nj: 0x1F\nk: 1_000\nl: \"emoji é\"\nm: \"- x\"\nn: -.inf\no: 9223372036854775807\n"),
            "a: 1\nb: 1e+06\nc: 1.5\nd: 2024-01-01T00:00:00Z\ne: \"multi\\nline \"\nf: \"tab\\there\"\ng: \"\\U0001F600 ok\"\nh:\n    - 1\n    - x\ni: hello\nj: 31\nk: 1000\nl: emoji é\nm: '- x'\n\"n\": -.inf\no: 9223372036854775807\n"
        );
        assert_eq!(
            round("q:\n    - a: 1\n      b: 2\n    - c: 3\n    - [1, 2]\nl: |\n    block\nm: \"\"\n"),
            "q:\n    - a: 1\n      b: 2\n    - c: 3\n    - - 1\n      - 2\nl: |\n    block\nm: \"\"\n"
        );
    }

    // Found by the yaml fuzz target: a literal block starting with a line
    // break, as a sequence item. The indicator is the content's offset from
    // the `-` (yaml.v3 writes its indent step, 4, which misplaces it).
    #[test]
    fn block_scalar_indicators_read_back() {
        let src = "a:\n    - |2-\n\n      - # :\n      -\t\n    - - \" x\\ny\"\n    - b: \"\\nx\"\n      c: 1\ntop: \"\\nfoo\\n\"\n";
        for indent in [0, 1, 2, 3, 4, 9, 10] {
            let docs = parse(src.as_bytes(), false).unwrap();
            let once = emit(&docs, indent);
            let back = parse(once.as_bytes(), false)
                .unwrap_or_else(|e| panic!("indent {indent}: {e}\n{once}"));
            assert_eq!(back, docs, "indent {indent}:\n{once}");
        }
        assert_eq!(
            round(src),
            src.replace("- - \" x\\ny\"", "- - |2-\n         x\n        y")
                .replace("b: \"\\nx\"", "b: |2-\n\n        x")
                .replace("top: \"\\nfoo\\n\"", "top: |4\n\n    foo")
        );
    }
}
