//! File formats ("stores" in sops): YAML, JSON, dotenv, INI and binary.
//!
//! Each store turns bytes into the tree of [`crate::sops::value`] and back,
//! with the layout sops uses for that format.

pub mod dotenv;
pub mod ini;
pub mod json;
pub mod yaml;

use std::path::Path;

use zeroize::Zeroizing;

use crate::sops::gonum;
use crate::sops::metadata::{self, Layout};
use crate::sops::value::{Item, Map, Text, Value};
use crate::sops::Tree;
use crate::{Error, Result};

/// A file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Format {
    /// YAML (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
    /// dotenv (`.env`).
    Dotenv,
    /// INI (`.ini`).
    Ini,
    /// Anything else: the whole file is one value.
    Binary,
}

impl Format {
    /// Detects the format from a file name, like sops: by suffix.
    pub fn from_path(path: &Path) -> Format {
        let name = path.to_string_lossy();
        if name.ends_with(".yaml") || name.ends_with(".yml") {
            Format::Yaml
        } else if name.ends_with(".json") {
            Format::Json
        } else if name.ends_with(".env") {
            Format::Dotenv
        } else if name.ends_with(".ini") {
            Format::Ini
        } else {
            Format::Binary
        }
    }

    /// Parses `--input-type`/`--output-type` values.
    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "yaml" => Format::Yaml,
            "json" => Format::Json,
            "dotenv" => Format::Dotenv,
            "ini" => Format::Ini,
            "binary" => Format::Binary,
            _ => return None,
        })
    }

    /// The name sops uses.
    pub fn name(self) -> &'static str {
        match self {
            Format::Yaml => "yaml",
            Format::Json => "json",
            Format::Dotenv => "dotenv",
            Format::Ini => "ini",
            Format::Binary => "binary",
        }
    }
}

/// Indentation settings (`stores:` in `.sops.yaml`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// YAML indent (0 means 4).
    pub yaml_indent: usize,
    /// JSON indent; `None` is a tab.
    pub json_indent: Option<usize>,
    /// Binary store (JSON) indent; `None` is a tab.
    pub json_binary_indent: Option<usize>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            yaml_indent: 4,
            json_indent: None,
            json_binary_indent: None,
        }
    }
}

fn yaml_indent(o: &StoreOptions) -> usize {
    if o.yaml_indent == 0 {
        4
    } else {
        o.yaml_indent
    }
}

/// sops' `ValToString`, used by dotenv and INI for non-string values.
pub(crate) fn val_to_string(v: &Value) -> String {
    match v {
        Value::Str(t) | Value::Comment(t) => t.to_str_lossy().into_owned(),
        Value::Float(f) => {
            let g = gonum::format_float_g(*f).to_uppercase();
            if !g.contains('.') && !g.contains('E') && f.is_finite() {
                format!("{f:.1}")
            } else if f.is_nan() {
                "NaN".into()
            } else if f.is_infinite() {
                if *f > 0.0 { "+Inf" } else { "-Inf" }.into()
            } else {
                g
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Time(t) => t.rfc3339(),
        Value::Null => "<nil>".into(),
        Value::Map(_) | Value::Seq(_) => String::new(),
    }
}

/// Parses a plaintext file into branches (one per YAML document).
pub fn load_plain(format: Format, input: &[u8]) -> Result<Vec<Map>> {
    match format {
        Format::Yaml => yaml::parse::parse(input, true),
        Format::Json => Ok(vec![json::parse(input)?]),
        Format::Dotenv => Ok(vec![dotenv::parse(input)?]),
        Format::Ini => Ok(vec![ini::parse(input)?]),
        Format::Binary => {
            let mut m = Map::new();
            m.push("data", Value::Str(Text::new(input.to_vec())));
            Ok(vec![m])
        }
    }
}

/// Parses plaintext to be encrypted into a file written by sops `version`:
/// JSON integers are read as that version reads them (see
/// [`load_encrypted`]), so editing a 3.13.2 file keeps every digit.
pub fn load_plain_for(format: Format, input: &[u8], version: &str) -> Result<Vec<Map>> {
    if format == Format::Json && reads_json_int64(version) {
        return Ok(vec![json::parse_int64(input)?]);
    }
    load_plain(format, input)
}

/// Parses an encrypted file.
pub fn load_encrypted(format: Format, input: &[u8]) -> Result<Tree> {
    match format {
        Format::Yaml => yaml::load_encrypted(input),
        Format::Json | Format::Binary => {
            let mut m = json::parse(input)?;
            let md = m.get("sops").cloned().ok_or(Error::MetadataNotFound)?;
            let metadata = metadata::from_value(&md)?;
            // The MAC covers a plain number as the writer read it: a float
            // up to sops 3.13.1, an int64 from 3.13.2 on.
            if reads_json_int64(&metadata.version) {
                m = json::parse_int64(input)?;
            }
            m.remove("sops");
            Ok(Tree {
                branches: vec![m],
                metadata,
            })
        }
        Format::Dotenv => dotenv::load_encrypted(input),
        Format::Ini => ini::load_encrypted(input),
    }
}

/// True for sops versions whose JSON store reads integers that fit `int64`
/// as integers (3.13.2 and later).
fn reads_json_int64(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| {
        let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().unwrap_or(0)
    });
    let v = (
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
        parts.next().unwrap_or(0),
    );
    v >= (3, 13, 2)
}

/// Emits plaintext branches.
pub fn emit_plain(
    format: Format,
    branches: &[Map],
    opts: &StoreOptions,
) -> Result<Zeroizing<Vec<u8>>> {
    let first = || branches.first().cloned().unwrap_or_default();
    Ok(Zeroizing::new(match format {
        Format::Yaml => yaml::emit_plain(branches, yaml_indent(opts)),
        Format::Json => json::emit(&first(), json::Indent(opts.json_indent))?,
        Format::Dotenv => dotenv::emit(&first())?,
        Format::Ini => ini::emit(&first())?,
        Format::Binary => {
            if branches.len() != 1 {
                return Err(Error::Emit(
                    "error emitting binary store: there must be exactly one tree branch".into(),
                ));
            }
            match first().get("data") {
                Some(Value::Str(t)) => t.as_bytes().to_vec(),
                Some(_) => return Err(Error::Emit(
                    "error emitting binary store: 'data' key in tree does not have a string value"
                        .into(),
                )),
                None => {
                    return Err(Error::Emit(
                        "error emitting binary store: no binary data found in tree".into(),
                    ))
                }
            }
        }
    }))
}

/// Emits an encrypted tree.
pub fn emit_encrypted(format: Format, tree: &Tree, opts: &StoreOptions) -> Result<Vec<u8>> {
    check_no_metadata_key(format, &tree.branches)?;
    match format {
        Format::Yaml => yaml::emit_encrypted(tree, yaml_indent(opts)),
        Format::Json | Format::Binary => {
            let mut m = tree.branches.first().cloned().unwrap_or_default();
            m.0.push(Item::new(
                "sops",
                metadata::to_value(&tree.metadata, Layout::Json),
            ));
            let indent = if format == Format::Json {
                opts.json_indent
            } else {
                opts.json_binary_indent
            };
            json::emit(&m, json::Indent(indent))
        }
        Format::Dotenv => dotenv::emit_encrypted(tree),
        Format::Ini => ini::emit_encrypted(tree),
    }
}

/// Refuses data that holds the key sops keeps its metadata under (`sops`,
/// or the `sops_` prefix in dotenv), as sops 3.13 does when writing: sops
/// 3.11 wrote a second `sops` entry (`set`, `edit`), which no version reads
/// back.
pub fn check_no_metadata_key(format: Format, branches: &[Map]) -> Result<()> {
    for b in branches {
        for item in &b.0 {
            let crate::sops::value::Key::Str(k) = &item.key else {
                continue;
            };
            if format == Format::Dotenv {
                if k.starts_with("sops_") {
                    return Err(Error::Emit(format!(
                        "Found key {} in encrypted data, which starts with the reserved key prefix \"sops_\" for SOPS metadata",
                        crate::error::escape_for_terminal(&format!("{k:?}"))
                    )));
                }
            } else if k == "sops" {
                return Err(Error::Emit(
                    "Found key \"sops\" in encrypted data, which is a reserved key used for SOPS metadata".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Emits one value for `--extract`.
pub fn emit_value(format: Format, v: &Value, opts: &StoreOptions) -> Result<Zeroizing<Vec<u8>>> {
    Ok(Zeroizing::new(match format {
        Format::Yaml => yaml::emit_value(v, yaml_indent(opts)),
        Format::Json => {
            let mut out = Vec::new();
            json::emit_value(&mut out, v, json::Indent(opts.json_indent), 0)?;
            out
        }
        Format::Dotenv => match v {
            Value::Str(t) => t.as_bytes().to_vec(),
            _ => {
                return Err(Error::Emit(
                    "the dotenv store only supports emitting strings".into(),
                ))
            }
        },
        Format::Ini => match v {
            Value::Map(m) => ini::emit(m)?,
            other => {
                let mut out = Vec::new();
                json::emit_value(&mut out, other, json::Indent(None), 0)?;
                out
            }
        },
        Format::Binary => {
            return Err(Error::Emit(
                "Binary files are not structured and extracting a single value is not possible"
                    .into(),
            ))
        }
    }))
}

/// True if the plaintext already has sops metadata (sops' "already encrypted").
pub fn has_sops_key(format: Format, branches: &[Map]) -> bool {
    match format {
        Format::Dotenv => branches.iter().any(dotenv::has_sops_key),
        _ => branches.iter().any(|b| b.contains_key("sops")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_key_is_reserved() {
        let mut m = Map::new();
        m.push("sops_x", Value::str("1"));
        assert!(check_no_metadata_key(Format::Yaml, &[m.clone()]).is_ok());
        assert!(check_no_metadata_key(Format::Dotenv, &[m.clone()]).is_err());
        m.push("sops", Value::str("1"));
        for f in [Format::Yaml, Format::Json, Format::Ini, Format::Binary] {
            let e = check_no_metadata_key(f, &[Map::new(), m.clone()]).unwrap_err();
            assert!(e.to_string().contains("reserved key"), "{e}");
        }
    }

    #[test]
    fn json_int64_from_3_13_2_on() {
        for (v, want) in [
            ("3.11.0", false),
            ("3.13.1", false),
            ("3.13.2", true),
            ("3.13.10", true),
            ("3.14.0", true),
            ("4.0.0-rc1", true),
            ("", false),
            ("garbage", false),
        ] {
            assert_eq!(reads_json_int64(v), want, "{v}");
        }
    }
}
