//! The INI store, following what sops gets from gopkg.in/ini.v1.
//!
//! - Keys before the first header belong to the implicit `DEFAULT` section,
//!   which always comes first (and is printed without a header).
//! - Comment lines (`#`, `;`) before a key or header become that key's or
//!   section's comment; an inline `#`/`;` starts a comment even inside quotes
//!   (go-ini does not look at quotes there). In the tree a key's comment
//!   follows the key, and is printed above it.
//! - Values are strings; surrounding quotes and backticks are removed.
//! - Output aligns `=` within a section and separates sections by a blank
//!   line; values with `#`/`;` are wrapped in backticks, values with outer
//!   spaces in quotes, as go-ini writes them.
//! - Metadata is a `[sops]` section of flattened keys.

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
}

fn parse_sections(input: &[u8]) -> Result<Vec<Section>> {
    let text = std::str::from_utf8(input).map_err(|_| Error::Parse {
        format: "ini",
        message: "the file is not valid UTF-8".into(),
    })?;
    let mut sections = vec![Section {
        name: "DEFAULT".into(),
        comment: String::new(),
        items: Vec::new(),
    }];
    let mut pending = String::new();
    let push_comment = |pending: &mut String, c: &str| {
        if !pending.is_empty() {
            pending.push('\n');
        }
        pending.push_str(c);
    };
    for (n, raw) in text.split('\n').enumerate() {
        let line = raw.trim_end_matches('\r').trim_start();
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') || line.starts_with(';') {
            push_comment(&mut pending, line.trim_end());
            continue;
        }
        if line.starts_with('[') {
            let Some(end) = line.find(']') else {
                return Err(Error::Parse {
                    format: "ini",
                    message: format!("line {}: unclosed section header", n + 1),
                });
            };
            sections.push(Section {
                name: line[1..end].trim().to_string(),
                comment: std::mem::take(&mut pending),
                items: Vec::new(),
            });
            continue;
        }
        let Some(pos) = line.find(['=', ':']) else {
            return Err(Error::Parse {
                format: "ini",
                message: format!("line {}: expected key = value", n + 1),
            });
        };
        let key = line[..pos].trim().to_string();
        let mut value = line[pos + 1..].trim().to_string();
        if let Some(inner) = value
            .strip_prefix("\"\"\"")
            .and_then(|v| v.strip_suffix("\"\"\""))
        {
            value = inner.to_string();
        } else if value.len() >= 2 && value.starts_with('`') && value[1..].contains('`') {
            let end = 1 + value[1..].find('`').unwrap_or(0);
            value = value[1..end].to_string();
        } else {
            if let Some(i) = value.find(['#', ';']) {
                push_comment(&mut pending, value[i..].trim_end());
                value = value[..i].trim().to_string();
            }
            if value.len() >= 2
                && ((value.starts_with('"') && value.ends_with('"'))
                    || (value.starts_with('\'') && value.ends_with('\'')))
            {
                value = value[1..value.len() - 1].to_string();
            }
        }
        let comment = std::mem::take(&mut pending);
        if let Some(sec) = sections.last_mut() {
            sec.items.push((key, value, comment));
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
        for (i, item) in branch.0.iter().enumerate() {
            match &item.key {
                Key::Comment(c) => {
                    let c = c.to_str_lossy().into_owned();
                    if i == 0 {
                        section_comment = c;
                    } else if let Some(last) = keys.last_mut() {
                        last.2 = c;
                    }
                }
                Key::Str(k) | Key::Other(k) => {
                    if item.value.is_complex() {
                        return Err(Error::Emit(format!(
                            "cannot use complex value in INI file; offending key {}",
                            crate::util::escape_for_terminal(k)
                        )));
                    }
                    keys.push((quote_key(k), val_to_string(&item.value), String::new()));
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
        let width = keys
            .iter()
            .map(|(k, _, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        for (k, v, c) in keys {
            if !c.is_empty() {
                write_comment(&mut out, &c);
            }
            out.push_str(&k);
            for _ in k.chars().count()..width {
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
}
