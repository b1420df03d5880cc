//! Kubernetes Secrets laid out exactly like `flux create secret … --export`.
//!
//! Flux marshals a `corev1.Secret` with `sigs.k8s.io/yaml`: Go's JSON
//! encoder, then go-yaml **v2** (2-space indentation, keys sorted with
//! v2's "natural" order, plain scalars folded at 80 columns, multi-line
//! strings as `|` literals, strings that would read as another type
//! double-quoted). It prefixes `---\n`, drops `creationTimestamp: null`
//! and `status: {}`, and prints with `Println`, so the text ends with a
//! blank line. This module reproduces that writer for the only shape a
//! Secret has here: nested maps of strings.
//!
//! The text holds secrets, so it lives in a [`Zeroizing`] buffer sized up
//! front (no reallocation leaves copies behind).

use std::cmp::Ordering;

use zeroize::Zeroizing;

use crate::formats::{self, Format, StoreOptions};
use crate::ops::{self, EncryptSpec};
use crate::sops::metadata::SelectionRules;
use crate::sops::value::{Map, Value};
use crate::{Error, Result};

/// The selection Flux documents for Secrets: everything under `data` and
/// `stringData`, metadata stays readable (and kustomize can patch it).
pub const ENCRYPTED_REGEX: &str = "^(data|stringData)$";

/// Name, namespace and labels of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretMeta {
    /// `metadata.name` (a DNS-1123 subdomain).
    pub name: String,
    /// `metadata.namespace` (a DNS-1123 label).
    pub namespace: String,
    /// `metadata.labels`, in any order (they are sorted on output).
    pub labels: Vec<(String, String)>,
}

impl SecretMeta {
    /// Checks the name, namespace and labels the way the API server would.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        validate_namespace(&self.namespace)?;
        for (k, v) in &self.labels {
            validate_label(k, v)?;
        }
        Ok(())
    }
}

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| is_dns_label(l, 63))
}

/// A Secret name: a DNS-1123 subdomain (lowercase, digits, `-`, `.`).
pub fn validate_name(name: &str) -> Result<()> {
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "invalid Secret name {:?}: use lowercase letters, digits, '-' and '.' (at most 253 characters)",
            crate::error::escape_for_terminal(name)
        )))
    }
}

/// A namespace: a DNS-1123 label (lowercase, digits, `-`, at most 63).
pub fn validate_namespace(ns: &str) -> Result<()> {
    if is_dns_label(ns, 63) {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "invalid namespace {:?}: use lowercase letters, digits and '-' (at most 63 characters)",
            crate::error::escape_for_terminal(ns)
        )))
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label: a qualified name (`[prefix/]name`) and a value of at most 63
/// characters, as Kubernetes (and `flux --label`) require.
pub fn validate_label(key: &str, value: &str) -> Result<()> {
    let key_ok = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    };
    if !key_ok {
        return Err(Error::Other(format!(
            "invalid label key {:?}: use [prefix/]name with letters, digits, '-', '_' and '.'",
            crate::error::escape_for_terminal(key)
        )));
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(Error::Other(format!(
            "invalid value for label {:?}: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            crate::error::escape_for_terminal(key)
        )));
    }
    Ok(())
}

/// Parses `--label key=value` items (a comma inside one item separates
/// several, as in Flux).
pub fn parse_labels(items: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items
        .iter()
        .flat_map(|i| i.split(','))
        .filter(|s| !s.is_empty())
    {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            Error::Other(format!(
                "invalid label format '{}', must be key=value",
                crate::error::escape_for_terminal(item)
            ))
        })?;
        validate_label(k, v)?;
        match out.iter_mut().find(|(ok, _)| ok == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => out.push((k.to_string(), v.to_string())),
        }
    }
    Ok(out)
}

/// Renders a Secret with `stringData` entries (`(key, value)`, any order)
/// as Flux's `--export` prints it, trailing blank line included.
pub fn render(meta: &SecretMeta, entries: &[(&str, &str)]) -> Zeroizing<String> {
    let mut labels: Vec<(&str, Node)> = meta
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), Node::Str(v.as_str())))
        .collect();
    labels.sort_by(|a, b| v2_key_order(a.0, b.0));
    let mut md: Vec<(&str, Node)> = Vec::new();
    if !labels.is_empty() {
        md.push(("labels", Node::Map(labels)));
    }
    md.push(("name", Node::Str(&meta.name)));
    md.push(("namespace", Node::Str(&meta.namespace)));
    let mut data: Vec<(&str, Node)> = entries.iter().map(|(k, v)| (*k, Node::Str(v))).collect();
    data.sort_by(|a, b| v2_key_order(a.0, b.0));
    let mut root: Vec<(&str, Node)> = vec![
        ("apiVersion", Node::Str("v1")),
        ("kind", Node::Str("Secret")),
        ("metadata", Node::Map(md)),
    ];
    if !data.is_empty() {
        root.push(("stringData", Node::Map(data)));
    }
    let size: usize = 256
        + meta.labels.iter().map(|(k, v)| k.len() + v.len() + 16).sum::<usize>()
        // Escaping can grow a value up to 10x (\UXXXXXXXX per 4-byte char).
        + entries.iter().map(|(k, v)| k.len() + v.len() * 10 + 64).sum::<usize>();
    let mut e = Emitter {
        out: Zeroizing::new(String::with_capacity(size)),
        column: 0,
        whitespace: true,
        indention: true,
    };
    e.out.push_str("---\n");
    e.mapping(&root, 0);
    // Document end: a final line break.
    e.write_indent(0);
    // Println of text that already ends with a newline.
    e.out.push('\n');
    e.out
}

/// Parses a rendered Secret and encrypts `data`/`stringData` with `spec`'s
/// keys (its selection rules are replaced by [`ENCRYPTED_REGEX`]). Fails
/// rather than return output in which a secret value still shows.
pub fn encrypt(plain_yaml: &[u8], spec: &EncryptSpec, store: &StoreOptions) -> Result<Vec<u8>> {
    let branches = formats::load_plain(Format::Yaml, plain_yaml)?;
    if branches.is_empty() {
        return Err(Error::NoDocument);
    }
    let mut secrets: Vec<Zeroizing<String>> = Vec::new();
    for b in &branches {
        for key in ["data", "stringData"] {
            if let Some(Value::Map(m)) = b.get(key) {
                collect_strings(m, &mut secrets);
            }
        }
    }
    let mut spec = spec.clone();
    spec.rules = SelectionRules {
        encrypted_regex: ENCRYPTED_REGEX.into(),
        ..Default::default()
    };
    let tree = ops::encrypt_branches(branches, Format::Yaml, &spec)?;
    let out = formats::emit_encrypted(Format::Yaml, &tree, store)?;
    // Defence in depth: no line of a secret value may appear in the output.
    for s in &secrets {
        for line in s.lines().map(str::trim) {
            if line.len() >= 16 && memmem(&out, line.as_bytes()) {
                return Err(Error::EncryptTree(
                    "a secret value is still readable after encryption; nothing was written".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn collect_strings(m: &Map, out: &mut Vec<Zeroizing<String>>) {
    for (_, v) in m.entries() {
        match v {
            Value::Str(t) => out.push(Zeroizing::new(t.to_str_lossy().into_owned())),
            Value::Map(inner) => collect_strings(inner, out),
            _ => {}
        }
    }
}

fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// go-yaml v2's order for string map keys (`keyList.Less`): a letter sorts
/// after a non-letter, runs of digits compare as numbers.
pub fn v2_key_order(a: &str, b: &str) -> Ordering {
    if v2_less(a, b) {
        Ordering::Less
    } else if v2_less(b, a) {
        Ordering::Greater
    } else {
        Ordering::Equal
    }
}

fn v2_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let n = ar.len().min(br.len());
    for i in 0..n {
        if ar[i] == br[i] {
            continue;
        }
        let al = ar[i].is_alphabetic();
        let bl = br[i].is_alphabetic();
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return bl;
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_ascii_digit() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let mut ai = i;
        while ai < ar.len() && ar[ai].is_ascii_digit() {
            an = an.wrapping_mul(10).wrapping_add(ar[ai] as i64 - '0' as i64);
            ai += 1;
        }
        let mut bi = i;
        while bi < br.len() && br[bi].is_ascii_digit() {
            bn = bn.wrapping_mul(10).wrapping_add(br[bi] as i64 - '0' as i64);
            bi += 1;
        }
        if an != bn {
            return an < bn;
        }
        if ai != bi {
            return ai < bi;
        }
        return ar[i] < br[i];
    }
    ar.len() < br.len()
}

enum Node<'a> {
    Str(&'a str),
    Map(Vec<(&'a str, Node<'a>)>),
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// The state bits of go-yaml's emitter that scalar writing depends on.
struct Emitter {
    out: Zeroizing<String>,
    column: usize,
    whitespace: bool,
    indention: bool,
}

const BEST_WIDTH: usize = 80;
const BEST_INDENT: usize = 2;

impl Emitter {
    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_str(&mut self, s: &str) {
        for c in s.chars() {
            self.put(c);
        }
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    /// `write_break`: a line break character from the value.
    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
        }
    }

    fn write_indent(&mut self, indent: usize) {
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn write_indicator(
        &mut self,
        ind: &str,
        need_whitespace: bool,
        is_whitespace: bool,
        is_indention: bool,
    ) {
        if need_whitespace && !self.whitespace {
            self.put(' ');
        }
        self.put_str(ind);
        self.whitespace = is_whitespace;
        self.indention = self.indention && is_indention;
    }

    /// A block mapping whose keys sit at `indent`.
    fn mapping(&mut self, items: &[(&str, Node)], indent: usize) {
        for (k, v) in items {
            self.write_indent(indent);
            self.scalar(k, indent + BEST_INDENT, true);
            self.write_indicator(":", false, false, false);
            match v {
                Node::Str(s) => self.scalar(s, indent + BEST_INDENT, false),
                Node::Map(m) => self.mapping(m, indent + BEST_INDENT),
            }
        }
    }

    fn scalar(&mut self, s: &str, indent: usize, simple_key: bool) {
        let style = select_style(s, simple_key);
        let allow_breaks = !simple_key;
        match style {
            Style::Plain => self.write_plain(s, indent, allow_breaks),
            Style::Single => self.write_single(s, indent, allow_breaks),
            Style::Double => self.write_double(s, indent, allow_breaks),
            Style::Literal => self.write_literal(s, indent),
        }
    }

    fn write_plain(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        if !self.whitespace {
            self.put(' ');
        }
        let v: Vec<char> = s.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        for (i, &c) in v.iter().enumerate() {
            if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && v.get(i + 1) != Some(&' ')
                {
                    self.write_indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn write_single(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write_indicator("'", true, false, false);
        let v: Vec<char> = s.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        for (i, &c) in v.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i > 0
                    && i < v.len() - 1
                    && v.get(i + 1) != Some(&' ')
                {
                    self.write_indent(indent);
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        self.write_indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_double(&mut self, s: &str, indent: usize, allow_breaks: bool) {
        self.write_indicator("\"", true, false, false);
        let v: Vec<char> = s.chars().collect();
        // go-yaml's `is_bom` looks at the start of the value, not at the
        // current character: a value starting with a BOM is escaped whole.
        let bom = s.starts_with('\u{feff}');
        let mut spaces = false;
        for (i, &c) in v.iter().enumerate() {
            if !is_printable(c) || bom || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                match c {
                    '\0' => self.put('0'),
                    '\u{7}' => self.put('a'),
                    '\u{8}' => self.put('b'),
                    '\t' => self.put('t'),
                    '\n' => self.put('n'),
                    '\u{b}' => self.put('v'),
                    '\u{c}' => self.put('f'),
                    '\r' => self.put('r'),
                    '\u{1b}' => self.put('e'),
                    '"' => self.put('"'),
                    '\\' => self.put('\\'),
                    '\u{85}' => self.put('N'),
                    '\u{a0}' => self.put('_'),
                    '\u{2028}' => self.put('L'),
                    '\u{2029}' => self.put('P'),
                    _ => {
                        let n = c as u32;
                        let text = if n <= 0xFF {
                            format!("x{n:02X}")
                        } else if n <= 0xFFFF {
                            format!("u{n:04X}")
                        } else {
                            format!("U{n:08X}")
                        };
                        self.put_str(&text);
                    }
                }
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i > 0 && i < v.len() - 1 {
                    self.write_indent(indent);
                    if v.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.write_indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn write_literal(&mut self, s: &str, indent: usize) {
        self.write_indicator("|", true, false, false);
        // Block scalar hints.
        let v: Vec<char> = s.chars().collect();
        if v.first().is_some_and(|&c| c == ' ' || is_break(c)) {
            self.write_indicator(&BEST_INDENT.to_string(), false, false, false);
        }
        // go-yaml v2 sets open_ended for `+` here, but writing the hint
        // clears it again, so v2 never ends such a document with `...`.
        let chomp = match v.len() {
            0 => Some('-'),
            n if !is_break(v[n - 1]) => Some('-'),
            1 => Some('+'),
            n if is_break(v[n - 2]) => Some('+'),
            _ => None,
        };
        if let Some(c) = chomp {
            self.write_indicator(&c.to_string(), false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for &c in &v {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent(indent);
                }
                self.put(c);
                self.indention = false;
                breaks = false;
            }
        }
    }
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// go-yaml v2's `is_printable` (tab and characters above U+FFFF are not).
fn is_printable(c: char) -> bool {
    let n = c as u32;
    n == 0x0A
        || (0x20..=0x7E).contains(&n)
        || (0xA0..=0xD7FF).contains(&n)
        || ((0xE000..=0xFFFD).contains(&n) && n != 0xFEFF)
}

struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

/// `yaml_emitter_analyze_scalar` (only the block-context results).
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let v: Vec<char> = s.chars().collect();
    let mut block_indicators = false;
    let mut line_breaks = false;
    let mut special = false;
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) =
        (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    if s.starts_with("---") || s.starts_with("...") {
        block_indicators = true;
    }
    let mut preceded_by_whitespace = true;
    for i in 0..v.len() {
        let c = v[i];
        let followed_by_whitespace = i + 1 >= v.len() || matches!(v[i + 1], ' ' | '\t');
        if i == 0 {
            match c {
                '#' | ',' | '[' | ']' | '{' | '}' | '&' | '*' | '!' | '|' | '>' | '\'' | '"'
                | '%' | '@' | '`' => block_indicators = true,
                '?' | ':' if followed_by_whitespace => block_indicators = true,
                '-' if followed_by_whitespace => block_indicators = true,
                _ => {}
            }
        } else {
            match c {
                ':' if followed_by_whitespace => block_indicators = true,
                '#' if preceded_by_whitespace => block_indicators = true,
                _ => {}
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if c == ' ' {
            if i == 0 {
                leading_space = true;
            }
            if i + 1 == v.len() {
                trailing_space = true;
            }
            if previous_break {
                break_space = true;
            }
            previous_space = true;
            previous_break = false;
        } else if is_break(c) {
            line_breaks = true;
            if i == 0 {
                leading_break = true;
            }
            if i + 1 == v.len() {
                trailing_break = true;
            }
            if previous_space {
                space_break = true;
            }
            previous_space = false;
            previous_break = true;
        } else {
            previous_space = false;
            previous_break = false;
        }
        preceded_by_whitespace = matches!(c, ' ' | '\t' | '\0') || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    if line_breaks {
        a.block_plain_allowed = false;
    }
    if block_indicators {
        a.block_plain_allowed = false;
    }
    a
}

/// The encoder's choice (`stringv`) refined by the emitter
/// (`yaml_emitter_select_scalar_style`), in block context.
fn select_style(s: &str, simple_key: bool) -> Style {
    let can_use_plain = !resolves_to_non_string(s) && !is_base60_float(s);
    let mut style = if s.contains('\n') {
        Style::Literal
    } else if can_use_plain {
        Style::Plain
    } else {
        Style::Double
    };
    let a = analyze(s);
    if simple_key && a.multiline {
        style = Style::Double;
    }
    if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::Double;
    }
    style
}

/// go-yaml v2's `resolve("", s)` giving something other than `!!str`.
fn resolves_to_non_string(s: &str) -> bool {
    const MAP: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON", "n", "N", "no",
        "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF", "", "~", "null", "Null",
        "NULL", ".nan", ".NaN", ".NAN", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
        "-.Inf", "-.INF",
    ];
    let Some(first) = s.chars().next() else {
        return true; // "" is null
    };
    let hint = match first {
        '+' | '-' => 'S',
        '0'..='9' => 'D',
        'y' | 'Y' | 'n' | 'N' | 't' | 'T' | 'f' | 'F' | 'o' | 'O' | '~' => 'M',
        '.' => '.',
        _ => return false,
    };
    if MAP.contains(&s) {
        return true;
    }
    match hint {
        '.' => go_parse_float(s),
        'D' | 'S' => {
            if is_yaml_timestamp(s) {
                return true;
            }
            let plain: String = s.chars().filter(|&c| c != '_').collect();
            go_parse_int(&plain)
                || yaml_style_float(&plain) && go_parse_float(&plain)
                || binary_int(&plain)
        }
        _ => false,
    }
}

fn all(s: &str, f: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(f)
}

/// `strconv.ParseInt(s, 0, 64)` or `ParseUint` succeeding (overflow aside).
fn go_parse_int(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if let Some(h) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        return all(h, |b| b.is_ascii_hexdigit());
    }
    if let Some(o) = body.strip_prefix("0o").or_else(|| body.strip_prefix("0O")) {
        return all(o, |b| (b'0'..=b'7').contains(&b));
    }
    if let Some(b) = body.strip_prefix("0b").or_else(|| body.strip_prefix("0B")) {
        return all(b, |c| c == b'0' || c == b'1');
    }
    if body.starts_with('0') {
        return all(body, |b| (b'0'..=b'7').contains(&b));
    }
    all(body, |b| b.is_ascii_digit())
}

fn binary_int(s: &str) -> bool {
    let body = s.strip_prefix("-0b").or_else(|| s.strip_prefix("0b"));
    body.is_some_and(|b| all(b, |c| c == b'0' || c == b'1'))
}

/// `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`
fn yaml_style_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (mant, exp) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let mant_ok = match mant.split_once('.') {
        Some(("", frac)) => all(frac, |b| b.is_ascii_digit()),
        Some((int, frac)) => {
            all(int, |b| b.is_ascii_digit()) && frac.bytes().all(|b| b.is_ascii_digit())
        }
        None => all(mant, |b| b.is_ascii_digit()),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => all(e.strip_prefix(['+', '-']).unwrap_or(e), |b| {
            b.is_ascii_digit()
        }),
    };
    mant_ok && exp_ok
}

/// `strconv.ParseFloat(s, 64)` succeeding, for the decimal forms that can
/// reach it here (special names are caught by the map before).
fn go_parse_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    if ["inf", "infinity", "nan"].contains(&body.to_ascii_lowercase().as_str()) {
        return true;
    }
    if body.starts_with("0x") || body.starts_with("0X") {
        return false; // hex floats need a p exponent; not worth modelling
    }
    yaml_style_float(s) && s.parse::<f64>().is_ok_and(f64::is_finite)
}

/// The timestamp forms go-yaml v2 recognises in plain scalars.
fn is_yaml_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let num = |t: &str, min: u32, max: u32, maxlen: usize| {
        !t.is_empty() && t.len() <= maxlen && t.bytes().all(|c| c.is_ascii_digit()) && {
            let n: u32 = t.parse().unwrap_or(u32::MAX);
            (min..=max).contains(&n)
        }
    };
    let rest = &s[5..];
    let (date, time) = match rest.find(['T', 't', ' ']) {
        Some(i) => (&rest[..i], Some((rest.as_bytes()[i], &rest[i + 1..]))),
        None => (rest, None),
    };
    let mut dp = date.split('-');
    let (Some(m), Some(d), None) = (dp.next(), dp.next(), dp.next()) else {
        return false;
    };
    if !num(m, 1, 12, 2) || !num(d, 1, 31, 2) {
        return false;
    }
    let Some((sep, time)) = time else {
        return true;
    };
    // "15:4:5.999999999" then a zone (Z or ±hh:mm) after T/t, none after ' '.
    let (clock, zone) = if sep == b' ' {
        (time, "")
    } else {
        match time.find(['Z', '+', '-']) {
            Some(i) => (&time[..i], &time[i..]),
            None => return false,
        }
    };
    let (hms, frac) = match clock.split_once('.') {
        Some((h, f)) => (h, Some(f)),
        None => (clock, None),
    };
    let mut tp = hms.split(':');
    let (Some(h), Some(mi), Some(se), None) = (tp.next(), tp.next(), tp.next(), tp.next()) else {
        return false;
    };
    if !num(h, 0, 23, 2) || !num(mi, 0, 59, 2) || !num(se, 0, 59, 2) {
        return false;
    }
    if frac.is_some_and(|f| !all(f, |c| c.is_ascii_digit())) {
        return false;
    }
    match zone {
        "" | "Z" => true,
        z => {
            let z = &z[1..];
            matches!(z.split_once(':'), Some((zh, zm)) if zh.len() == 2 && num(zh, 0, 23, 2) && zm.len() == 2 && num(zm, 0, 59, 2))
        }
    }
}

/// `isBase60Float`: `^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$`
fn is_base60_float(s: &str) -> bool {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let (main, frac) = match body.split_once('.') {
        Some((m, f)) => (m, Some(f)),
        None => (body, None),
    };
    if frac.is_some_and(|f| !f.bytes().all(|b| b.is_ascii_digit() || b == b'_')) {
        return false;
    }
    let mut parts = main.split(':');
    let Some(head) = parts.next() else {
        return false;
    };
    if !head.as_bytes().first().is_some_and(u8::is_ascii_digit)
        || !head.bytes().all(|b| b.is_ascii_digit() || b == b'_')
    {
        return false;
    }
    let mut n = 0;
    for p in parts {
        n += 1;
        let ok = match p.as_bytes() {
            [d] => d.is_ascii_digit(),
            [a, d] => (b'0'..=b'5').contains(a) && d.is_ascii_digit(),
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    n > 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SecretMeta {
        SecretMeta {
            name: "podinfo-auth".into(),
            namespace: "my-namespace".into(),
            labels: vec![],
        }
    }

    #[test]
    fn flux_goldens() {
        // cmd/flux/testdata/create_secret/git/secret-git-basic.yaml
        assert_eq!(
            &*render(&meta(), &[("username", "my-username"), ("password", "my-password")]),
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: podinfo-auth\n  namespace: my-namespace\nstringData:\n  password: my-password\n  username: my-username\n\n"
        );
        // git-bearer-token.yaml
        assert_eq!(
            &*render(&meta(), &[("bearerToken", "ghp_baR2qnFF0O41WlucePL3udt2N9vVZS4R0hAS")]),
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: podinfo-auth\n  namespace: my-namespace\nstringData:\n  bearerToken: ghp_baR2qnFF0O41WlucePL3udt2N9vVZS4R0hAS\n\n"
        );
    }

    #[test]
    fn scalar_styles_like_go_yaml_v2() {
        let one = |v: &str| {
            let out = render(&meta(), &[("k", v)]);
            let i = out.find("  k:").unwrap();
            out[i + 4..out.len() - 1].to_string()
        };
        assert_eq!(one("plain"), " plain\n");
        assert_eq!(one("true"), " \"true\"\n");
        assert_eq!(one("yes"), " \"yes\"\n");
        assert_eq!(one("123"), " \"123\"\n");
        assert_eq!(one("0x1F"), " \"0x1F\"\n");
        assert_eq!(one("1e3"), " \"1e3\"\n");
        assert_eq!(one("1:20"), " \"1:20\"\n");
        assert_eq!(one("2024-01-02"), " \"2024-01-02\"\n");
        assert_eq!(one(""), " \"\"\n");
        assert_eq!(one("a: b"), " 'a: b'\n");
        assert_eq!(one("it's"), " it's\n");
        assert_eq!(one("#x"), " '#x'\n");
        assert_eq!(one("'q"), " '''q'\n");
        assert_eq!(one(" lead"), " ' lead'\n");
        assert_eq!(one("tab\there"), " \"tab\\there\"\n");
        assert_eq!(one("line1\nline2\n"), " |\n    line1\n    line2\n");
        assert_eq!(one("line1\nline2"), " |-\n    line1\n    line2\n");
        assert_eq!(one("\nx"), " |2-\n\n    x\n");
        assert_eq!(one("trailing \nx"), " \"trailing \\nx\"\n");
        assert_eq!(one("crlf\r\n"), " \"crlf\\r\\n\"\n");
        assert_eq!(one("é"), " é\n");
        assert_eq!(one("🙂"), " \"\\U0001F642\"\n");
        // Plain scalars fold at a space once past column 80.
        let long = format!("{} tail end", "x".repeat(90));
        assert_eq!(one(&long), format!(" {}\n    tail end\n", "x".repeat(90)));
        // Keep chomping; v2 (unlike v3) adds no `...` after it.
        assert_eq!(one("a\n\n"), " |+\n    a\n\n");
    }

    #[test]
    fn labels_sort_and_validate() {
        let mut m = meta();
        m.labels = parse_labels(&[
            "toolkit.fluxcd.io/tenant=dev-team,a10=x".into(),
            "a9=y".into(),
        ])
        .unwrap();
        let out = render(&m, &[("password", "p")]);
        assert!(out.contains("metadata:\n  labels:\n    a9: \"y\"\n    a10: x\n    toolkit.fluxcd.io/tenant: dev-team\n  name: podinfo-auth\n"), "{}", &*out);
        assert!(parse_labels(&["novalue".into()]).is_err());
        assert!(parse_labels(&["bad key=x".into()]).is_err());
        assert!(validate_name("Bad").is_err());
        assert!(validate_namespace("a.b").is_err());
    }
}
