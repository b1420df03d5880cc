//! The dotenv store, as sops implements it (which is simpler than most
//! dotenv dialects): lines split on `\n`, empty lines skipped, `#` lines are
//! comments, otherwise `KEY=VALUE` split at the first `=` with no quote or
//! whitespace handling. A literal `\n` in a value is a newline.
//! Metadata is flattened into sorted `sops_…` keys.

use crate::sops::metadata;
use crate::sops::value::{Item, Key, Map, Text, Value};
use crate::sops::Tree;
use crate::{Error, Result};

use super::val_to_string;

/// Parses a plaintext dotenv file.
pub fn parse(input: &[u8]) -> Result<Map> {
    let mut m = Map::new();
    for (n, line) in input.split(|c| *c == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        if line[0] == b'#' {
            m.0.push(Item {
                key: Key::Comment(Text::new(&line[1..])),
                value: Value::Null,
            });
            continue;
        }
        let pos = line
            .iter()
            .position(|c| *c == b'=')
            .ok_or_else(|| Error::Parse {
                format: "dotenv",
                message: format!("line {}: expected KEY=VALUE", n + 1),
            })?;
        let value = replace(&line[pos + 1..], b"\\n", b"\n");
        m.0.push(Item::new(
            String::from_utf8_lossy(&line[..pos]).into_owned(),
            Value::Str(Text::new(value)),
        ));
    }
    Ok(m)
}

fn replace(s: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(from) {
            out.extend_from_slice(to);
            i += from.len();
        } else {
            out.push(s[i]);
            i += 1;
        }
    }
    out
}

/// Loads an encrypted dotenv file: `sops_*` keys become the metadata.
pub fn load_encrypted(input: &[u8]) -> Result<Tree> {
    let m = parse(input)?;
    let mut body = Map::new();
    let mut pairs = Vec::new();
    for item in m.0 {
        match &item.key {
            Key::Str(k) if k.starts_with("sops_") => {
                let v = match &item.value {
                    Value::Str(t) => t.to_str_lossy().into_owned(),
                    _ => String::new(),
                };
                pairs.push((k["sops_".len()..].to_string(), v));
            }
            _ => body.0.push(item),
        }
    }
    if pairs.is_empty() {
        return Err(Error::MetadataNotFound);
    }
    Ok(Tree {
        branches: vec![body],
        metadata: metadata::unflatten(&pairs)?,
    })
}

/// Emits a plaintext dotenv file.
pub fn emit(m: &Map) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for item in &m.0 {
        if item.value.is_complex() {
            return Err(Error::Emit(format!(
                "cannot use complex value in dotenv file; offending key {}",
                match &item.key {
                    Key::Str(k) => crate::error::escape_for_terminal(k),
                    _ => "?".into(),
                }
            )));
        }
        match &item.key {
            Key::Comment(c) => {
                out.push(b'#');
                out.extend_from_slice(c.as_bytes());
            }
            Key::Str(k) | Key::Other(k) => {
                out.extend_from_slice(k.as_bytes());
                out.push(b'=');
                match &item.value {
                    Value::Str(t) => out.extend_from_slice(&replace(t.as_bytes(), b"\n", b"\\n")),
                    other => out.extend_from_slice(val_to_string(other).as_bytes()),
                }
            }
        }
        out.push(b'\n');
    }
    Ok(out)
}

/// Emits an encrypted dotenv file (values, then sorted `sops_` keys).
pub fn emit_encrypted(tree: &Tree) -> Result<Vec<u8>> {
    let mut m = tree.branches.first().cloned().unwrap_or_default();
    for (k, v) in metadata::flatten(&tree.metadata) {
        m.push(format!("sops_{k}"), Value::str(v));
    }
    emit(&m)
}

/// True if any key starts with `sops_` (sops' "already encrypted" check).
pub fn has_sops_key(m: &Map) -> bool {
    m.entries().any(|(k, _)| k.starts_with("sops_"))
}
