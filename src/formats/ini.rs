//! The INI store, following what sops gets from gopkg.in/ini.v1.
//!
//! - Keys before the first header belong to the implicit `DEFAULT` section,
//!   which always comes first (and is printed without a header).
//! - Comment lines (`#`, `;`) before a key or header become that key's or
//!   section's comment; an inline `#`/`;` starts a comment even inside quotes
//!   (go-ini does not look at quotes there). In the tree a key's comment
//!   follows the key, and is printed above it.
//! - Values are strings; surrounding quotes are removed. `"""` and backtick
//!   quotes may span lines: sops 3.13.0 and 3.13.1 write multi-line metadata
//!   (the wrapped data keys) that way, where 3.11 and 3.13.2 write `\n`.
//! - A repeated key keeps its first place and takes the last value.
//! - Output aligns `=` within a section and separates sections by a blank
//!   line; values with `#`/`;` are wrapped in backticks, values with outer
//!   spaces in quotes, as go-ini writes them.
//! - Metadata is a `[sops]` section of flattened keys.

use std::collections::HashMap;

use crate::sops::metadata;
use crate::sops::value::{Item, Key, Map, Text, Value};
use crate::sops::Tree;
use crate::{Error, Result};

use super::val_to_string;

/// Trims go-ini's comment markers the way sops' `stripCommentChar` does.
fn strip_comment_char(c: &str) -> String {
    if c.starts_with(';') {
        c.trim_start_matches([';', ' ']).to_string()
    } else if c.starts_with('#') {
        c.trim_start_matches(['#', ' ']).to_string()
    } else {
        c.to_string()
    }
}

struct Section {
    name: String,
    comment: String,
    items: Vec<(String, String, String)>,
    /// Where each key is in `items` (a section can hold many keys).
    index: HashMap<String, usize>,
}

impl Section {
    fn new(name: String, comment: String) -> Section {
        Section {
            name,
            comment,
            items: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// go-ini keeps one key per name: a repeated key takes the new value and
    /// comment but keeps its first position.
    fn set(&mut self, key: String, value: String, comment: String) {
        match self.index.get(&key) {
            Some(&i) => {
                self.items[i].1 = value;
                self.items[i].2 = comment;
            }
            None => {
                self.index.insert(key.clone(), self.items.len());
                self.items.push((key, value, comment));
            }
        }
    }
}

/// go-ini's line reader: each read returns the next line with its `\n`;
/// the last one (possibly empty) sets `eof`.
struct Lines<'a> {
    text: &'a str,
    pos: usize,
    eof: bool,
    number: usize,
}

impl<'a> Lines<'a> {
    fn read(&mut self) -> &'a str {
        let rest = &self.text[self.pos..];
        self.number += 1;
        match rest.find('\n') {
            Some(i) => {
                self.pos += i + 1;
                &rest[..=i]
            }
            None => {
                self.pos = self.text.len();
                self.eof = true;
                rest
            }
        }
    }
}

fn parse_error(line: usize, what: &str) -> Error {
    // Only the line number: the line itself may hold a secret.
    Error::Parse {
        format: "ini",
        message: format!("line {line}: {what}"),
    }
}

/// A key name and the offset just past its delimiter (go-ini `readKeyName`).
fn read_key_name(line: &str, n: usize) -> Result<(String, usize)> {
    let quote = if line.starts_with('"') {
        if line.len() > 6 && line.starts_with("\"\"\"") {
            "\"\"\""
        } else {
            "\""
        }
    } else if line.starts_with('`') {
        "`"
    } else {
        ""
    };
    if !quote.is_empty() {
        let start = quote.len();
        let pos = start
            + line[start..]
                .find(quote)
                .ok_or_else(|| parse_error(n, "missing closing key quote"))?;
        let i = line[pos + start..]
            .find(['=', ':'])
            .ok_or_else(|| parse_error(n, "expected key = value"))?;
        return Ok((line[start..pos].trim().to_string(), pos + i + start + 1));
    }
    match line.find(['=', ':']) {
        None => Err(parse_error(n, "expected key = value")),
        Some(0) => Err(parse_error(n, "empty key name")),
        Some(end) => Ok((line[..end].trim().to_string(), end + 1)),
    }
}

/// True when `s` is wrapped in `q` with no other `q` inside.
fn has_surrounded_quote(s: &str, q: char) -> bool {
    s.len() >= 2 && s.starts_with(q) && s.ends_with(q) && s[1..].find(q) == Some(s.len() - 2)
}

/// A value (go-ini `readValue` with sops' options): `\"\"\"` and backtick
/// quotes may span lines (sops 3.13.0 and 3.13.1 write metadata that way),
/// a trailing backslash continues the value on the next line, and an
/// unquoted `#` or `;` starts a comment.
fn read_value(input: &str, lines: &mut Lines, comment: &mut String) -> Result<String> {
    let line = input.trim_start();
    if line.is_empty() {
        return Ok(String::new());
    }
    let quote = if line.len() > 3 && line.starts_with("\"\"\"") {
        "\"\"\""
    } else if line.starts_with('`') {
        "`"
    } else {
        ""
    };
    if !quote.is_empty() {
        let start = quote.len();
        if let Some(pos) = line[start..].rfind(quote) {
            return Ok(line[start..start + pos].to_string());
        }
        let first = lines.number;
        let mut value = line[start..].to_string();
        loop {
            let next = lines.read();
            if let Some(pos) = next.rfind(quote) {
                value.push_str(&next[..pos]);
                if let Some(i) = next[pos..].find(['#', ';']) {
                    comment.push_str(next[pos + i..].trim());
                }
                return Ok(value);
            }
            value.push_str(next);
            if lines.eof {
                return Err(parse_error(first, "missing closing value quote"));
            }
        }
    }
    let mut line = line.trim();
    if let Some(head) = line.strip_suffix('\\') {
        let mut value = head.to_string();
        loop {
            let next = lines.read().trim();
            if next.is_empty() {
                break;
            }
            value.push_str(next);
            if !value.ends_with('\\') {
                break;
            }
            value.pop();
        }
        return Ok(value);
    }
    if let Some(i) = line.find(['#', ';']) {
        comment.push_str(&line[i..]);
        line = line[..i].trim();
    }
    if has_surrounded_quote(line, '\'') || has_surrounded_quote(line, '"') {
        line = &line[1..line.len() - 1];
    }
    Ok(line.to_string())
}

/// Parses INI text the way gopkg.in/ini.v1 does with the options sops uses
/// (`AllowNonUniqueSections`, everything else default).
fn parse_sections(input: &[u8]) -> Result<Vec<Section>> {
    // go-ini skips a UTF-8 byte order mark, and two bytes of a UTF-16 one.
    let input = if input.starts_with(&[0xEF, 0xBB, 0xBF]) {
        &input[3..]
    } else if input.starts_with(&[0xFE, 0xFF]) || input.starts_with(&[0xFF, 0xFE]) {
        &input[2..]
    } else {
        input
    };
    let text = std::str::from_utf8(input).map_err(|_| Error::Parse {
        format: "ini",
        message: "the file is not valid UTF-8".into(),
    })?;
    let mut sections = vec![Section::new("DEFAULT".into(), String::new())];
    let mut lines = Lines {
        text,
        pos: 0,
        eof: false,
        number: 0,
    };
    // Comment lines keep their line break, so consecutive ones stay apart.
    let mut comment = String::new();
    let mut auto = 1;
    while !lines.eof {
        let line = lines.read().trim_start();
        let n = lines.number;
        if line.is_empty() {
            continue;
        }
        if line.starts_with('#') || line.starts_with(';') {
            comment.push_str(line);
            continue;
        }
        if line.starts_with('[') {
            let Some(end) = line.rfind(']') else {
                return Err(parse_error(n, "unclosed section header"));
            };
            let name = &line[1..end];
            if name.is_empty() {
                return Err(parse_error(n, "empty section name"));
            }
            if let Some(i) = line[end + 1..].find(['#', ';']) {
                comment.push_str(&line[end + 1 + i..]);
            }
            sections.push(Section::new(name.to_string(), comment.trim().to_string()));
            comment.clear();
            auto = 1;
            continue;
        }
        let (mut key, offset) = read_key_name(line, n)?;
        if key == "-" {
            key = format!("#{auto}");
            auto += 1;
        }
        let value = read_value(&line[offset..], &mut lines, &mut comment)?;
        if key.is_empty() {
            return Err(parse_error(n, "empty key name"));
        }
        let c = comment.trim().to_string();
        comment.clear();
        if let Some(sec) = sections.last_mut() {
            sec.set(key, value, c);
        }
    }
    Ok(sections)
}

fn to_map(sections: Vec<Section>) -> Map {
    let mut m = Map::new();
    for s in sections {
        let mut branch = Map::new();
        if !s.comment.is_empty() {
            branch.0.push(Item::comment(strip_comment_char(&s.comment)));
        }
        for (k, v, c) in s.items {
            branch.push(k, Value::str(v));
            if !c.is_empty() {
                branch.0.push(Item::comment(strip_comment_char(&c)));
            }
        }
        m.push(s.name, Value::Map(branch));
    }
    m
}

/// Parses a plaintext INI file into sections.
pub fn parse(input: &[u8]) -> Result<Map> {
    Ok(to_map(parse_sections(input)?))
}

/// Loads an encrypted INI file (metadata in `[sops]`).
pub fn load_encrypted(input: &[u8]) -> Result<Tree> {
    let sections = parse_sections(input)?;
    let mut pairs = None;
    let mut rest = Vec::new();
    for s in sections {
        if s.name == "sops" {
            if pairs.is_none() {
                pairs = Some(
                    s.items
                        .iter()
                        .map(|(k, v, _)| (k.clone(), v.clone()))
                        .collect::<Vec<_>>(),
                );
            }
        } else {
            rest.push(s);
        }
    }
    let pairs = pairs.ok_or(Error::MetadataNotFound)?;
    Ok(Tree {
        branches: vec![to_map(rest)],
        metadata: metadata::unflatten(&pairs)?,
    })
}

fn write_comment(out: &mut String, comment: &str) {
    for line in comment.split('\n') {
        if line.starts_with('#') || line.starts_with(';') {
            out.push_str(&line[..1]);
            out.push(' ');
            out.push_str(line[1..].trim());
        } else {
            out.push_str("; ");
            out.push_str(line);
        }
        out.push('\n');
    }
}

fn quote_value(v: &str) -> String {
    if v.contains(['\n', '`']) {
        format!("\"\"\"{v}\"\"\"")
    } else if v.contains(['#', ';']) {
        format!("`{v}`")
    } else if v.trim() != v {
        format!("\"{v}\"")
    } else {
        v.to_string()
    }
}

fn quote_key(k: &str) -> String {
    if k.contains(['"', '=', ':']) {
        format!("`{k}`")
    } else if k.contains('`') {
        format!("\"\"\"{k}\"\"\"")
    } else {
        k.to_string()
    }
}

/// Emits sections.
pub fn emit(m: &Map) -> Result<Vec<u8>> {
    let mut out = String::new();
    let sections: Vec<(&str, &Map)> =
        m.0.iter()
            .filter_map(|i| match (&i.key, &i.value) {
                (Key::Str(k), Value::Map(v)) => Some(Ok((k.as_str(), v))),
                (Key::Str(_), _) => Some(Err(Error::Emit(
                    "Error encoding section: Section values should always be TreeBranches".into(),
                ))),
                _ => None,
            })
            .collect::<Result<_>>()?;
    let mut first_written = true;
    for (idx, (name, branch)) in sections.iter().enumerate() {
        let mut section_comment = String::new();
        let mut keys: Vec<(String, String, String)> = Vec::new();
        if name.is_empty() {
            return Err(Error::Emit(
                "Error encoding section : empty section name".into(),
            ));
        }
        // Like go-ini, a repeated key updates the first one, and a comment
        // belongs to the key written last.
        let mut last: Option<usize> = None;
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, item) in branch.0.iter().enumerate() {
            match &item.key {
                Key::Comment(c) => {
                    let c = c.to_str_lossy().into_owned();
                    if i == 0 {
                        section_comment = c;
                    } else if let Some(l) = last {
                        keys[l].2 = c;
                    }
                }
                Key::Str(k) | Key::Other(k) => {
                    if item.value.is_complex() {
                        return Err(Error::Emit(format!(
                            "cannot use complex value in INI file; offending key {}",
                            crate::error::escape_for_terminal(k)
                        )));
                    }
                    if k.is_empty() {
                        return Err(Error::Emit(
                            "Error encoding key: error creating new key: empty key name".into(),
                        ));
                    }
                    let k = quote_key(k);
                    let v = val_to_string(&item.value);
                    match index.get(&k) {
                        Some(&p) => {
                            keys[p].1 = v;
                            last = Some(p);
                        }
                        None => {
                            index.insert(k.clone(), keys.len());
                            last = Some(keys.len());
                            keys.push((k, v, String::new()));
                        }
                    }
                }
            }
        }
        let implicit_default = idx == 0 && name.eq_ignore_ascii_case("DEFAULT");
        if implicit_default && keys.is_empty() && section_comment.is_empty() {
            continue;
        }
        if !first_written {
            out.push('\n');
        }
        first_written = false;
        if !section_comment.is_empty() {
            write_comment(&mut out, &section_comment);
        }
        if !implicit_default {
            out.push('[');
            out.push_str(name);
            out.push_str("]\n");
        }
        // go-ini pads to the longest key in bytes, not characters.
        let width = keys.iter().map(|(k, _, _)| k.len()).max().unwrap_or(0);
        for (k, v, c) in keys {
            if !c.is_empty() {
                write_comment(&mut out, &c);
            }
            out.push_str(&k);
            for _ in k.len()..width {
                out.push(' ');
            }
            out.push_str(" = ");
            out.push_str(&quote_value(&v));
            out.push('\n');
        }
    }
    Ok(out.into_bytes())
}

/// Emits an encrypted INI file with its `[sops]` section.
pub fn emit_encrypted(tree: &Tree) -> Result<Vec<u8>> {
    let mut m = tree.branches.first().cloned().unwrap_or_default();
    let mut sops = Map::new();
    for (k, v) in metadata::flatten(&tree.metadata) {
        sops.push(k, Value::Str(Text::new(v)));
    }
    m.push("sops", Value::Map(sops));
    emit(&m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_ini_quirks() {
        let src = b"top = 1\n; top comment\n[database]\n# db comment\nuser = admin\npassword=s3cret ; inline\n   spaced   =   value with spaces  \nquoted = \"a ; b\"\n[empty]\n[other]\nk: colon\n";
        let m = parse(src).unwrap();
        let out = String::from_utf8(emit(&m).unwrap()).unwrap();
        assert_eq!(
            out,
            "top = 1\n\n; top comment\n[database]\n; db comment\nuser     = admin\n; inline\npassword = s3cret\nspaced   = value with spaces\n; b\"\nquoted   = \"a\n\n[empty]\n\n[other]\nk = colon\n"
        );
    }

    fn values(src: &[u8]) -> Vec<(String, String, String)> {
        parse_sections(src)
            .unwrap()
            .into_iter()
            .flat_map(|s| {
                let name = s.name;
                s.items
                    .into_iter()
                    .map(move |(k, v, _)| (name.clone(), k, v))
            })
            .collect()
    }

    fn kv(section: &str, k: &str, v: &str) -> (String, String, String) {
        (section.into(), k.into(), v.into())
    }

    #[test]
    fn multi_line_quotes_like_go_ini() {
        // sops 3.13.0/3.13.1 metadata: the armored key spans lines.
        let src = b"[sops]\nenc = \"\"\"-----BEGIN X-----\nabc\n-----END X-----\n\"\"\"\nfp  = F00\none = \"\"\"inline\"\"\" ; not a comment\nbt  = `a;\nb` ; c\nopen = \"\"\"\nx\n\"\"\"\n";
        assert_eq!(
            values(src),
            [
                kv("sops", "enc", "-----BEGIN X-----\nabc\n-----END X-----\n"),
                kv("sops", "fp", "F00"),
                kv("sops", "one", "inline"),
                kv("sops", "bt", "a;\nb"),
                kv("sops", "open", "\nx\n"),
            ]
        );
        let sections = parse_sections(b"[s]\nbt = `a\nb` ; c\n").unwrap();
        assert_eq!(sections[1].items[0].2, "; c");
        // An unclosed quote is an error naming the line, not the content.
        let e = parse(b"[s]\na = 1\nk = \"\"\"s3cret\nmore\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn continuation_duplicates_and_odd_names() {
        let src = "k = a\\\n  b\\\n c # kept\nlast = tail\\\n\u{feff}x = 1\n[ spaced ] ; hc\ndup = 1\n; later\ndup = 2\nq = \"a\"b\"\ns = 'x'\n\"quoted key\" = v\n`b:k` = w\n- = auto\n- = auto2\n[s2]\n- = again\n";
        let src = format!("\u{feff}{src}");
        let sections = parse_sections(src.as_bytes()).unwrap();
        assert_eq!(
            values(src.as_bytes()),
            [
                kv("DEFAULT", "k", "abc # kept"),
                kv("DEFAULT", "last", "tail\u{feff}x = 1"),
                kv(" spaced ", "dup", "2"),
                kv(" spaced ", "q", "\"a\"b\""),
                kv(" spaced ", "s", "x"),
                kv(" spaced ", "quoted key", "v"),
                kv(" spaced ", "b:k", "w"),
                kv(" spaced ", "#1", "auto"),
                kv(" spaced ", "#2", "auto2"),
                kv("s2", "#1", "again"),
            ]
        );
        assert_eq!(sections[1].comment, "; hc");
        assert_eq!(sections[1].items[0].2, "; later");
        for bad in [
            &b"[]\n"[..],
            b"[open\n",
            b"= v\n",
            b"novalue\n",
            b"\"\" = v\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn emit_aligns_by_bytes_and_merges_repeated_keys() {
        let mut sec = Map::new();
        sec.push("ключ", Value::str("1"));
        sec.push("a", Value::str("2"));
        sec.0.push(Item::comment("c"));
        sec.push("ключ", Value::str("3"));
        let mut m = Map::new();
        m.push("s", Value::Map(sec));
        assert_eq!(
            String::from_utf8(emit(&m).unwrap()).unwrap(),
            "[s]\nключ = 3\n; c\na        = 2\n"
        );
    }
}
