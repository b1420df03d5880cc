//! `.sops.yaml`: creation rules and store settings, read like sops 3.11.
//!
//! - Found by walking up from the **current directory** (not the file's), at
//!   most 100 levels; `--config` / `SOPS_CONFIG` override the search.
//! - The first creation rule whose unanchored `path_regex` matches the file
//!   path (relative to the config's folder when inside it) wins; a rule
//!   without `path_regex` matches everything.
//! - Key fields accept a comma-separated string or a list; `key_groups`
//!   (with `merge`) replaces the top-level key fields.
//! - AWS KMS keys: in the flat form a string or list of `ARN[+ROLE_ARN]`
//!   entries with the rule's `aws_profile` (and the command's
//!   `--encryption-context`); in `key_groups`, maps with `arn`, `role`,
//!   `context` and `aws_profile`, taken as written.
//! - GCP KMS, Azure Key Vault and Vault keys are recognised but not usable
//!   by kustos; they are reported so the user knows they were skipped.

use std::path::{Path, PathBuf};

use regex::Regex;

use crate::formats::{self, StoreOptions};
use crate::keys::Recipient;
use crate::sops::metadata::SelectionRules;
use crate::sops::value::{Map, Value};
use crate::{Error, Result};

/// The config file name sops looks for.
pub const CONFIG_FILE_NAME: &str = ".sops.yaml";

/// One creation rule, resolved.
#[derive(Clone, Debug, Default)]
pub struct CreationRule {
    /// The rule's `path_regex` (empty = match all).
    pub path_regex: String,
    /// Key groups (one group unless `key_groups` has several).
    pub key_groups: Vec<Vec<Recipient>>,
    /// Keys of types kustos cannot use (gcp_kms, azure_keyvault, hc_vault).
    pub unsupported_keys: Vec<String>,
    /// The KMS keys come from the flat `kms` field, so they take the
    /// command's `--encryption-context` (sops applies it only there).
    pub flat_kms: bool,
    /// `shamir_threshold`.
    pub shamir_threshold: usize,
    /// The six selection options.
    pub rules: SelectionRules,
    /// `mac_only_encrypted`.
    pub mac_only_encrypted: bool,
}

/// A loaded `.sops.yaml`.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its folder (absolute).
    pub dir: PathBuf,
    /// `creation_rules`, in order; `None` when the file has none.
    pub creation_rules: Option<Vec<CreationRule>>,
    /// `stores` settings.
    pub stores: StoreOptions,
}

/// Looks for `.sops.yaml` in `start` and its parents (100 levels at most).
pub fn find(start: &Path) -> Option<PathBuf> {
    let mut dir = start.to_path_buf();
    for _ in 0..100 {
        let candidate = dir.join(CONFIG_FILE_NAME);
        if candidate.is_file() {
            return Some(candidate);
        }
        if !dir.pop() {
            break;
        }
    }
    None
}

/// The config to use: `explicit` (from `--config`/`SOPS_CONFIG`), else found
/// from the current directory. `Ok(None)` when there is none.
pub fn locate(explicit: Option<&Path>) -> Result<Option<Config>> {
    match explicit {
        Some(p) => load(p).map(Some),
        None => {
            let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
            match find(&cwd) {
                Some(p) => load(&p).map(Some),
                None => Ok(None),
            }
        }
    }
}

fn cfg_err(path: &Path, msg: impl std::fmt::Display) -> Error {
    Error::Config(format!(
        "{}: {msg}",
        crate::error::escape_for_terminal(&path.display().to_string())
    ))
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config> {
    let bytes = std::fs::read(path)
        .map_err(|e| cfg_err(path, format!("could not read config file: {e}")))?;
    parse(&bytes, path)
}

/// Parses config text (`path` is used for messages and relative regexes).
pub fn parse(bytes: &[u8], path: &Path) -> Result<Config> {
    let docs = formats::load_plain(formats::Format::Yaml, bytes)
        .map_err(|e| cfg_err(path, format!("Could not unmarshal config file: {e}")))?;
    let root = docs.into_iter().next().unwrap_or_default();
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = abs.parent().map(Path::to_path_buf).unwrap_or_default();
    let creation_rules = match root.get("creation_rules") {
        None | Some(Value::Null) => None,
        Some(Value::Seq(items)) => Some(
            items
                .iter()
                .filter(|v| !matches!(v, Value::Comment(_)))
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Map(m) => parse_rule(m)
                        .map_err(|e| cfg_err(path, format!("creation rule {}: {e}", i + 1))),
                    _ => Err(cfg_err(
                        path,
                        format!("creation rule {} is not a map", i + 1),
                    )),
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        Some(_) => return Err(cfg_err(path, "creation_rules must be a list")),
    };
    let stores = parse_stores(root.get("stores")).map_err(|e| cfg_err(path, e))?;
    Ok(Config {
        path: path.to_path_buf(),
        dir,
        creation_rules,
        stores,
    })
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Float(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

fn parse_stores(v: Option<&Value>) -> std::result::Result<StoreOptions, String> {
    let mut o = StoreOptions::default();
    let Some(Value::Map(m)) = v else {
        return Ok(o);
    };
    let indent = |name: &str| -> std::result::Result<Option<i64>, String> {
        match m
            .get(name)
            .and_then(|s| s.as_map())
            .and_then(|s| s.get("indent"))
        {
            None => Ok(None),
            Some(v) => as_int(v)
                .map(Some)
                .ok_or_else(|| format!("stores.{name}.indent must be an integer")),
        }
    };
    if let Some(i) = indent("yaml")? {
        if i < 0 {
            return Err("YAML Negative indentation not accepted".into());
        }
        o.yaml_indent = i as usize;
    }
    for (name, slot) in [
        ("json", &mut o.json_indent),
        ("json_binary", &mut o.json_binary_indent),
    ] {
        if let Some(i) = indent(name)? {
            if i < -1 {
                return Err("JSON Indentation parameter smaller than -1 is not accepted".into());
            }
            *slot = if i == -1 { None } else { Some(i as usize) };
        }
    }
    Ok(o)
}

/// A key field: a comma-separated string or a list of strings.
fn key_field(m: &Map, name: &str) -> std::result::Result<Vec<String>, String> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Str(t)) => Ok(t
            .to_str_lossy()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()),
        Some(Value::Seq(items)) => items
            .iter()
            .filter(|v| !matches!(v, Value::Comment(_)))
            .map(|v| match v {
                Value::Str(t) => Ok(t.to_str_lossy().trim().to_string()),
                _ => Err(format!(
                    "invalid {name} key configuration: expected string in list"
                )),
            })
            .collect(),
        Some(_) => Err(format!(
            "invalid {name} key configuration: expected string or list"
        )),
    }
}

fn string_field(m: &Map, name: &str) -> std::result::Result<String, String> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::Str(t)) => Ok(t.to_str_lossy().into_owned()),
        Some(_) => Err(format!("{name} must be a string")),
    }
}

fn age_recipients(list: Vec<String>) -> std::result::Result<Vec<Recipient>, String> {
    let mut out = Vec::new();
    for entry in list {
        // sops splits age entries on commas too.
        for r in entry.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            crate::keys::age::validate_recipient(r).map_err(|e| e.to_string())?;
            out.push(Recipient::Age(r.to_string()));
        }
    }
    Ok(out)
}

/// A scalar as yaml.v3 decodes it into a Go string (its text).
fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::Str(t) => Some(t.to_str_lossy().into_owned()),
        Value::Int(i) => Some(i.to_string()),
        Value::Float(f) => Some(crate::sops::gonum::format_float_f(*f)),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The `kms` list of a key group: maps with `arn`, `role`, `context` and
/// `aws_profile`, used as written (no splitting, no trimming).
fn kms_group_keys(m: &Map) -> std::result::Result<Vec<Recipient>, String> {
    let items = match m.get("kms") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Seq(items)) => items,
        Some(_) => return Err("kms in a key group must be a list of maps".into()),
    };
    let mut out = Vec::new();
    for item in items.iter().filter(|v| !matches!(v, Value::Comment(_))) {
        let Value::Map(e) = item else {
            return Err(
                "kms in a key group must be a list of maps (arn, role, context, aws_profile)"
                    .into(),
            );
        };
        let field = |name: &str| -> std::result::Result<String, String> {
            match e.get(name) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(v) => scalar_text(v).ok_or_else(|| format!("kms {name} must be a string")),
            }
        };
        let mut key = crate::keys::KmsKeyId {
            arn: field("arn")?,
            role: field("role")?,
            aws_profile: field("aws_profile")?,
            ..Default::default()
        };
        crate::keys::kms::validate_arn(&key.arn).map_err(|e| e.to_string())?;
        match e.get("context") {
            None | Some(Value::Null) => {}
            Some(Value::Map(c)) => {
                let mut pairs = Vec::new();
                for i in c.0.iter() {
                    let crate::sops::value::Key::Str(k) = &i.key else {
                        continue;
                    };
                    let v = scalar_text(&i.value)
                        .ok_or_else(|| format!("kms context value of {k:?} must be a string"))?;
                    pairs.push((k.clone(), v));
                }
                key.set_context(pairs);
            }
            Some(_) => return Err("kms context must be a map".into()),
        }
        out.push(Recipient::Kms(key));
    }
    Ok(out)
}

/// The flat form's `kms` entries (`ARN[+ROLE_ARN]`, comma-separated or a
/// list) with the rule's `aws_profile`; the context comes later.
fn kms_flat_keys(m: &Map) -> std::result::Result<Vec<Recipient>, String> {
    let profile = string_field(m, "aws_profile")?;
    let list = key_field(m, "kms")?.join(",");
    crate::keys::kms::keys_from_arns(&list, &[], &profile)
        .map(|v| v.into_iter().map(Recipient::Kms).collect())
        .map_err(|e| e.to_string())
}

fn group_from(
    m: &Map,
    unsupported: &mut Vec<String>,
) -> std::result::Result<Vec<Recipient>, String> {
    let mut group = Vec::new();
    if let Some(Value::Seq(merge)) = m.get("merge") {
        for g in merge {
            if let Value::Map(gm) = g {
                group.extend(group_from(gm, unsupported)?);
            }
        }
    }
    group.extend(age_recipients(key_field(m, "age")?)?);
    group.extend(key_field(m, "pgp")?.iter().map(|fp| Recipient::pgp(fp)));
    group.extend(kms_group_keys(m)?);
    for kind in ["gcp_kms", "azure_keyvault", "hc_vault"] {
        if let Some(Value::Seq(items)) = m.get(kind) {
            if !items.is_empty() {
                unsupported.push(kind.to_string());
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    group.retain(|r| seen.insert(r.clone()));
    Ok(group)
}

fn parse_rule(m: &Map) -> std::result::Result<CreationRule, String> {
    let mut unsupported = Vec::new();
    let flat_kms = !matches!(m.get("key_groups"), Some(Value::Seq(g)) if !g.is_empty());
    let key_groups = match m.get("key_groups") {
        Some(Value::Seq(groups)) if !groups.is_empty() => groups
            .iter()
            .filter_map(|g| match g {
                Value::Map(gm) => Some(group_from(gm, &mut unsupported)),
                _ => None,
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
        _ => {
            let mut group = age_recipients(key_field(m, "age")?)?;
            group.extend(key_field(m, "pgp")?.iter().map(|fp| Recipient::pgp(fp)));
            group.extend(kms_flat_keys(m)?);
            for kind in ["gcp_kms", "azure_keyvault", "hc_vault_transit_uri"] {
                if !key_field(m, kind)?.is_empty() {
                    unsupported.push(kind.to_string());
                }
            }
            vec![group]
        }
    };
    let rules = SelectionRules {
        unencrypted_suffix: string_field(m, "unencrypted_suffix")?,
        encrypted_suffix: string_field(m, "encrypted_suffix")?,
        unencrypted_regex: string_field(m, "unencrypted_regex")?,
        encrypted_regex: string_field(m, "encrypted_regex")?,
        unencrypted_comment_regex: string_field(m, "unencrypted_comment_regex")?,
        encrypted_comment_regex: string_field(m, "encrypted_comment_regex")?,
    };
    if rules.count() > 1 {
        return Err("error loading config: cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex for the same rule".into());
    }
    let shamir_threshold = match m.get("shamir_threshold") {
        None | Some(Value::Null) => 0,
        Some(v) => as_int(v)
            .filter(|i| *i >= 0)
            .ok_or("shamir_threshold must be a non-negative integer")? as usize,
    };
    let mac_only_encrypted = matches!(m.get("mac_only_encrypted"), Some(Value::Bool(true)));
    Ok(CreationRule {
        path_regex: string_field(m, "path_regex")?,
        key_groups,
        unsupported_keys: unsupported,
        flat_kms,
        shamir_threshold,
        rules,
        mac_only_encrypted,
    })
}

impl CreationRule {
    /// The key groups with `--encryption-context` applied where sops
    /// applies it: to the KMS keys of the flat `kms` field.
    pub fn groups_with_context(&self, context: &[(String, String)]) -> Vec<Vec<Recipient>> {
        let mut groups = self.key_groups.clone();
        if self.flat_kms && !context.is_empty() {
            for r in groups.iter_mut().flatten() {
                if let Recipient::Kms(k) = r {
                    k.context = context.to_vec();
                }
            }
        }
        groups
    }
}

impl Config {
    /// The creation rule for `file` (an absolute path or one relative to
    /// the current directory). `Ok(None)` if the config has no rules.
    pub fn rule_for(&self, file: &Path) -> Result<Option<&CreationRule>> {
        let Some(rules) = &self.creation_rules else {
            return Ok(None);
        };
        let abs = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
        let abs_s = abs.to_string_lossy();
        let prefix = format!(
            "{}{}",
            self.dir.to_string_lossy(),
            std::path::MAIN_SEPARATOR
        );
        let rel = abs_s.strip_prefix(&prefix).unwrap_or(&abs_s);
        for r in rules {
            if r.path_regex.is_empty() {
                return Ok(Some(r));
            }
            let re = Regex::new(&r.path_regex)
                .map_err(|e| cfg_err(&self.path, format!("can not compile regexp: {e}")))?;
            if re.is_match(rel) {
                return Ok(Some(r));
            }
        }
        Err(Error::Config(
            "error loading config: no matching creation rules found".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: &str = r#"
creation_rules:
  - path_regex: tenants/.*\.yaml$
    encrypted_regex: ^(data|stringData)$
    age: age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p, age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
  - key_groups:
      - pgp: [ "AB CD" ]
        age:
          - age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p
      - pgp: [EF01]
        kms: [{arn: "arn:aws:kms:us-east-1:1:key/x", context: {b: 2, a: x}}]
        gcp_kms: [{resource_id: projects/p}]
    shamir_threshold: 2
stores:
  yaml:
    indent: 2
  json:
    indent: -1
"#;

    #[test]
    fn rules_and_stores() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".sops.yaml");
        std::fs::write(&p, CFG).unwrap();
        let c = load(&p).unwrap();
        assert_eq!(c.stores.yaml_indent, 2);
        assert_eq!(c.stores.json_indent, None);
        let r = c
            .rule_for(&dir.path().join("tenants/a/secret.yaml"))
            .unwrap()
            .unwrap();
        assert_eq!(r.key_groups.len(), 1);
        // Duplicates inside a comma list are kept as sops keeps them in single groups.
        assert_eq!(r.key_groups[0].len(), 2);
        assert_eq!(r.rules.encrypted_regex, "^(data|stringData)$");
        let r = c.rule_for(&dir.path().join("other.json")).unwrap().unwrap();
        assert_eq!(r.key_groups.len(), 2);
        assert!(r.key_groups[0].contains(&Recipient::Pgp("ABCD".into())));
        assert_eq!(r.shamir_threshold, 2);
        assert_eq!(r.unsupported_keys, vec!["gcp_kms".to_string()]);
        let Some(Recipient::Kms(k)) = r.key_groups[1].last() else {
            panic!("no kms key: {:?}", r.key_groups[1]);
        };
        assert_eq!(
            k.context,
            vec![("a".into(), "x".into()), ("b".into(), "2".into())]
        );
        // The command's context does not reach key_groups entries.
        assert_eq!(
            r.groups_with_context(&[("c".into(), "d".into())]),
            r.key_groups
        );
    }

    #[test]
    fn flat_kms_rules_split_roles_and_take_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".sops.yaml");
        std::fs::write(
            &p,
            "creation_rules:\n  - kms: 'arn:aws:kms:us-east-1:1:key/a+arn:aws:iam::1:role/r, arn:aws:kms:eu-west-1:1:alias/b'\n    aws_profile: dev\n",
        )
        .unwrap();
        let c = load(&p).unwrap();
        let r = c.rule_for(&dir.path().join("x.yaml")).unwrap().unwrap();
        let names: Vec<String> = r.key_groups[0].iter().map(Recipient::name).collect();
        assert_eq!(
            names,
            [
                "arn:aws:kms:us-east-1:1:key/a+arn:aws:iam::1:role/r||dev",
                "arn:aws:kms:eu-west-1:1:alias/b||dev"
            ]
        );
        let g = r.groups_with_context(&[("k".into(), "v".into())]);
        assert_eq!(g[0][1].name(), "arn:aws:kms:eu-west-1:1:alias/b|k:v|dev");
        std::fs::write(&p, "creation_rules:\n  - kms: nope\n").unwrap();
        assert!(load(&p).is_err());
    }
}
