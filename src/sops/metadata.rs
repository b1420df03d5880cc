//! The `sops` metadata block: internal form and its on-disk layouts.
//!
//! On disk the field order is the Go struct order of sops' `stores.Metadata`
//! (not alphabetical), the key lists sit at the top level when there is one
//! key group and under `key_groups` otherwise, and dotenv/INI files flatten
//! the JSON form into `sops_…__map_…__list_N` keys. Fields kustos does not
//! know are ignored, like sops ignores them.

use std::collections::BTreeMap;

use crate::sops::masterkey::{ForeignKind, KeyGroup, KmsKeyId, MasterKey};
use crate::sops::time::Timestamp;
use crate::sops::value::{Item, Key, Map, Value};
use crate::{Error, Result};

/// The version string kustos writes (the sops version it is compatible with).
pub const SOPS_VERSION: &str = "3.11.0";

/// The suffix sops uses when no selection option is given.
pub const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// Which values get encrypted: at most one of the six options is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelectionRules {
    /// Keys ending with this stay plaintext.
    pub unencrypted_suffix: String,
    /// Only keys ending with this are encrypted.
    pub encrypted_suffix: String,
    /// Keys matching this (unanchored) stay plaintext.
    pub unencrypted_regex: String,
    /// Only keys matching this (unanchored) are encrypted.
    pub encrypted_regex: String,
    /// Values after a comment matching this stay plaintext.
    pub unencrypted_comment_regex: String,
    /// Only values after a comment matching this are encrypted.
    pub encrypted_comment_regex: String,
}

impl SelectionRules {
    /// How many options are set.
    pub fn count(&self) -> usize {
        [
            &self.unencrypted_suffix,
            &self.encrypted_suffix,
            &self.unencrypted_regex,
            &self.encrypted_regex,
            &self.unencrypted_comment_regex,
            &self.encrypted_comment_regex,
        ]
        .iter()
        .filter(|s| !s.is_empty())
        .count()
    }

    /// Fails when more than one option is set; applies the default suffix when none is.
    pub fn normalize(mut self) -> Result<Self> {
        match self.count() {
            0 => {
                self.unencrypted_suffix = DEFAULT_UNENCRYPTED_SUFFIX.into();
                Ok(self)
            }
            1 => Ok(self),
            _ => Err(Error::ConflictingParameters(
                "Cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex in the same file".into(),
            )),
        }
    }
}

/// Metadata of an encrypted file.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata {
    /// Key groups; one group means every key wraps the whole data key.
    pub key_groups: Vec<KeyGroup>,
    /// Groups needed to recover the key (0 = all; only with several groups).
    pub shamir_threshold: usize,
    /// When the values were last encrypted (the MAC's AAD).
    pub last_modified: Timestamp,
    /// The encrypted MAC (`ENC[…]`), empty when absent.
    pub mac: String,
    /// Encryption selection.
    pub rules: SelectionRules,
    /// Only encrypted values are part of the MAC.
    pub mac_only_encrypted: bool,
    /// The writer's sops version.
    pub version: String,
}

impl Metadata {
    /// Fresh metadata for encrypting a file.
    pub fn new(key_groups: Vec<KeyGroup>, rules: SelectionRules) -> Self {
        Metadata {
            key_groups,
            shamir_threshold: 0,
            last_modified: Timestamp::now_utc(),
            mac: String::new(),
            rules,
            mac_only_encrypted: false,
            version: SOPS_VERSION.into(),
        }
    }

    /// All master keys in all groups.
    pub fn master_keys(&self) -> impl Iterator<Item = &MasterKey> {
        self.key_groups.iter().flatten()
    }

    /// A hash of everything that decides the data key: the Shamir threshold
    /// and every wrapped stanza, in order. Equal hashes unwrap to the same
    /// data key, so it keys caches of unwrapped data keys.
    pub fn key_hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update((self.shamir_threshold as u64).to_le_bytes());
        h.update((self.key_groups.len() as u64).to_le_bytes());
        for g in &self.key_groups {
            h.update((g.len() as u64).to_le_bytes());
            for k in g {
                // The name too: a KMS ciphertext is bound to its key ARN
                // and context, which the name carries.
                for part in [k.type_id(), &k.name(), k.enc()] {
                    h.update((part.len() as u64).to_le_bytes());
                    h.update(part.as_bytes());
                }
            }
        }
        h.finalize().into()
    }
}

/// Whether empty per-group key lists print as `[]` (YAML) or `null` (JSON).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// yaml.v3 prints a nil slice as `[]`.
    Yaml,
    /// encoding/json prints a nil slice as `null`.
    Json,
}

fn s(v: impl Into<String>) -> Value {
    Value::str(v.into())
}

/// yaml.v3's order for string map keys (its `keyList.Less`): letters
/// compare by code point, a letter sorts after a non-letter unless the
/// runes before were digits, and runs of digits compare as numbers. sops
/// writes a KMS encryption context (a Go map) in this order in YAML files.
fn yaml_v3_less(a: &str, b: &str) -> bool {
    let ar: Vec<char> = a.chars().collect();
    let br: Vec<char> = b.chars().collect();
    let mut digits = false;
    for i in 0..ar.len().min(br.len()) {
        if ar[i] == br[i] {
            digits = ar[i].is_numeric();
            continue;
        }
        let (al, bl) = (ar[i].is_alphabetic(), br[i].is_alphabetic());
        if al && bl {
            return ar[i] < br[i];
        }
        if al || bl {
            return if digits { al } else { bl };
        }
        let (mut an, mut bn) = (0i64, 0i64);
        if ar[i] == '0' || br[i] == '0' {
            let mut j = i;
            while j > 0 && ar[j - 1].is_numeric() {
                j -= 1;
                if ar[j] != '0' {
                    an = 1;
                    bn = 1;
                    break;
                }
            }
        }
        let run = |s: &[char], n: &mut i64| -> usize {
            let mut k = i;
            while k < s.len() && s[k].is_numeric() {
                *n = n
                    .wrapping_mul(10)
                    .wrapping_add((s[k] as i64).wrapping_sub('0' as i64));
                k += 1;
            }
            k
        };
        let ai = run(&ar, &mut an);
        let bi = run(&br, &mut bn);
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

/// A KMS entry as sops' `kmskey` struct marshals it: `role` and `context`
/// only when set, `aws_profile` always; the context map in the key order
/// of the writer (yaml.v3's in YAML, byte order in JSON and the flattened
/// dotenv/INI forms).
fn kms_entry(key: &KmsKeyId, created_at: &Timestamp, enc: &str, layout: Layout) -> Value {
    let mut m = Map::new();
    m.push("arn", s(key.arn.clone()));
    if !key.role.is_empty() {
        m.push("role", s(key.role.clone()));
    }
    if !key.context.is_empty() {
        let mut pairs: Vec<&(String, String)> = key.context.iter().collect();
        if layout == Layout::Yaml {
            pairs.sort_by(|a, b| {
                if yaml_v3_less(&a.0, &b.0) {
                    std::cmp::Ordering::Less
                } else if yaml_v3_less(&b.0, &a.0) {
                    std::cmp::Ordering::Greater
                } else {
                    a.0.cmp(&b.0)
                }
            });
        }
        let mut c = Map::new();
        for (k, v) in pairs {
            c.push(k.clone(), s(v.clone()));
        }
        m.push("context", Value::Map(c));
    }
    m.push("created_at", s(created_at.rfc3339()));
    m.push("enc", s(enc.to_string()));
    m.push("aws_profile", s(key.aws_profile.clone()));
    Value::Map(m)
}

fn group_lists(group: &KeyGroup, layout: Layout) -> [(String, Vec<Value>); 6] {
    let mut pgp = Vec::new();
    let mut age = Vec::new();
    let mut kms = Vec::new();
    let mut foreign: BTreeMap<&'static str, Vec<Value>> = BTreeMap::new();
    for k in group {
        match k {
            MasterKey::Pgp {
                fp,
                created_at,
                enc,
            } => {
                let mut m = Map::new();
                m.push("created_at", s(created_at.rfc3339()));
                m.push("enc", s(enc.clone()));
                m.push("fp", s(fp.clone()));
                pgp.push(Value::Map(m));
            }
            MasterKey::Age { recipient, enc } => {
                let mut m = Map::new();
                m.push("recipient", s(recipient.clone()));
                m.push("enc", s(enc.clone()));
                age.push(Value::Map(m));
            }
            MasterKey::Kms {
                key,
                created_at,
                enc,
            } => kms.push(kms_entry(key, created_at, enc, layout)),
            MasterKey::Foreign { kind, fields } => foreign
                .entry(kind.field())
                .or_default()
                .push(Value::Map(fields.clone())),
        }
    }
    let mut take = |k: &'static str| foreign.remove(k).unwrap_or_default();
    [
        ("pgp".into(), pgp),
        ("kms".into(), kms),
        ("gcp_kms".into(), take("gcp_kms")),
        ("azure_kv".into(), take("azure_kv")),
        ("hc_vault".into(), take("hc_vault")),
        ("age".into(), age),
    ]
}

/// The metadata as a tree, fields in sops' order.
pub fn to_value(md: &Metadata, layout: Layout) -> Value {
    let mut m = Map::new();
    if md.key_groups.len() > 1 {
        if md.shamir_threshold != 0 {
            m.push("shamir_threshold", Value::Int(md.shamir_threshold as i64));
        }
        let mut groups = Vec::new();
        for g in &md.key_groups {
            let mut gm = Map::new();
            for (name, list) in group_lists(g, layout) {
                // Inside a group only hc_vault and age lack omitempty.
                let always = name == "hc_vault" || name == "age";
                if !list.is_empty() {
                    gm.push(name, Value::Seq(list));
                } else if always {
                    gm.push(
                        name,
                        match layout {
                            Layout::Yaml => Value::Seq(Vec::new()),
                            Layout::Json => Value::Null,
                        },
                    );
                }
            }
            groups.push(Value::Map(gm));
        }
        m.push("key_groups", Value::Seq(groups));
    }
    let top: Option<[(String, Vec<Value>); 6]> = if md.key_groups.len() == 1 {
        Some(group_lists(&md.key_groups[0], layout))
    } else {
        None
    };
    let top_list = |name: &str| -> Option<Vec<Value>> {
        top.as_ref()
            .and_then(|t| t.iter().find(|(n, _)| n == name))
            .map(|(_, l)| l.clone())
            .filter(|l| !l.is_empty())
    };
    for name in ["kms", "gcp_kms", "azure_kv", "hc_vault", "age"] {
        if let Some(l) = top_list(name) {
            m.push(name, Value::Seq(l));
        }
    }
    m.push("lastmodified", s(md.last_modified.rfc3339()));
    m.push("mac", s(md.mac.clone()));
    if let Some(l) = top_list("pgp") {
        m.push("pgp", Value::Seq(l));
    }
    let r = &md.rules;
    for (name, v) in [
        ("unencrypted_suffix", &r.unencrypted_suffix),
        ("encrypted_suffix", &r.encrypted_suffix),
        ("unencrypted_regex", &r.unencrypted_regex),
        ("encrypted_regex", &r.encrypted_regex),
        ("unencrypted_comment_regex", &r.unencrypted_comment_regex),
        ("encrypted_comment_regex", &r.encrypted_comment_regex),
    ] {
        if !v.is_empty() {
            m.push(name, s(v.clone()));
        }
    }
    if md.mac_only_encrypted {
        m.push("mac_only_encrypted", Value::Bool(true));
    }
    m.push("version", s(md.version.clone()));
    Value::Map(m)
}

fn field_str(m: &Map, name: &str) -> Result<String> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::Str(t)) => Ok(t.to_str_lossy().into_owned()),
        Some(Value::Time(t)) => Ok(t.rfc3339_nano()),
        Some(Value::Int(i)) => Ok(i.to_string()),
        Some(Value::Float(f)) => Ok(crate::sops::gonum::format_float_f(*f)),
        Some(Value::Bool(b)) => Ok(b.to_string()),
        Some(_) => Err(Error::Metadata(format!("{name} must be a string"))),
    }
}

fn parse_time(field: &str, v: &str) -> Result<Timestamp> {
    Timestamp::parse_rfc3339(v)
        .ok_or_else(|| Error::Metadata(format!("{field} is not an RFC 3339 time")))
}

fn list<'a>(m: &'a Map, name: &str) -> Result<Vec<&'a Map>> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Seq(items)) => items
            .iter()
            .map(|i| match i {
                Value::Map(m) => Ok(m),
                _ => Err(Error::Metadata(format!("entries of {name} must be maps"))),
            })
            .collect(),
        Some(_) => Err(Error::Metadata(format!("{name} must be a list"))),
    }
}

fn kms_context(e: &Map) -> Result<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    match e.get("context") {
        None | Some(Value::Null) => {}
        Some(Value::Map(c)) => {
            for item in &c.0 {
                let Key::Str(k) = &item.key else {
                    continue;
                };
                if matches!(item.value, Value::Null) {
                    return Err(Error::Metadata("kms context values must be strings".into()));
                }
                let mut one = Map::new();
                one.push("v", item.value.clone());
                pairs.push((
                    k.clone(),
                    field_str(&one, "v").map_err(|_| {
                        Error::Metadata("kms context values must be strings".into())
                    })?,
                ));
            }
        }
        Some(_) => return Err(Error::Metadata("kms context must be a map".into())),
    }
    Ok(pairs)
}

fn parse_group(m: &Map) -> Result<KeyGroup> {
    let mut g = KeyGroup::new();
    // Internal order: kms, gcp_kms, azure_kv, hc_vault, pgp, age (sops' internalGroupFrom).
    for e in list(m, "kms")? {
        let mut key = KmsKeyId {
            arn: field_str(e, "arn")?,
            role: field_str(e, "role")?,
            aws_profile: field_str(e, "aws_profile")?,
            ..Default::default()
        };
        key.set_context(kms_context(e)?);
        g.push(MasterKey::Kms {
            key,
            created_at: parse_time("created_at", &field_str(e, "created_at")?)?,
            enc: field_str(e, "enc")?,
        });
    }
    for kind in [
        ForeignKind::GcpKms,
        ForeignKind::AzureKv,
        ForeignKind::HcVault,
    ] {
        for e in list(m, kind.field())? {
            parse_time("created_at", &field_str(e, "created_at")?)?;
            g.push(MasterKey::Foreign {
                kind,
                fields: e.clone(),
            });
        }
    }
    for e in list(m, "pgp")? {
        g.push(MasterKey::Pgp {
            fp: field_str(e, "fp")?,
            created_at: parse_time("created_at", &field_str(e, "created_at")?)?,
            enc: field_str(e, "enc")?,
        });
    }
    for e in list(m, "age")? {
        g.push(MasterKey::Age {
            recipient: field_str(e, "recipient")?,
            enc: field_str(e, "enc")?,
        });
    }
    Ok(g)
}

fn has_keys(m: &Map) -> Result<bool> {
    for f in ["pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "age"] {
        if !list(m, f)?.is_empty() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The most master keys (age, PGP, KMS, … entries over all groups) a file
/// may list. sops files name a handful; each entry can cost a public-key
/// operation to try, so a crafted file must not list thousands.
pub const MAX_MASTER_KEYS: usize = 64;

/// Reads metadata from its tree form (sops' `Metadata.ToInternal`).
pub fn from_value(v: &Value) -> Result<Metadata> {
    let m = v
        .as_map()
        .ok_or_else(|| Error::Metadata("the sops key must hold a map".into()))?;
    let last_modified = parse_time("lastmodified", &field_str(m, "lastmodified")?)?;
    let key_groups = if has_keys(m)? {
        vec![parse_group(m)?]
    } else {
        let groups = list(m, "key_groups")?;
        if groups.is_empty() {
            return Err(Error::Metadata("No keys found in file".into()));
        }
        groups.into_iter().map(parse_group).collect::<Result<_>>()?
    };
    let keys: usize = key_groups.iter().map(Vec::len).sum();
    if keys > MAX_MASTER_KEYS {
        return Err(Error::Metadata(format!(
            "{keys} master keys; at most {MAX_MASTER_KEYS} are accepted"
        )));
    }
    let shamir_threshold = match m.get("shamir_threshold") {
        None | Some(Value::Null) => 0,
        Some(Value::Int(i)) if *i >= 0 => *i as usize,
        Some(Value::Float(f)) if *f >= 0.0 && f.fract() == 0.0 => *f as usize,
        Some(Value::Str(t)) => {
            let s = t.to_str_lossy();
            s.parse::<usize>()
                .ok()
                .or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                        .map(|f| f as usize)
                })
                .ok_or_else(|| Error::Metadata("shamir_threshold is not an integer".into()))?
        }
        Some(_) => return Err(Error::Metadata("shamir_threshold is not an integer".into())),
    };
    let mac_only_encrypted = match m.get("mac_only_encrypted") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Str(t)) => t.as_bytes() == b"true",
        _ => false,
    };
    let rules = SelectionRules {
        unencrypted_suffix: field_str(m, "unencrypted_suffix")?,
        encrypted_suffix: field_str(m, "encrypted_suffix")?,
        unencrypted_regex: field_str(m, "unencrypted_regex")?,
        encrypted_regex: field_str(m, "encrypted_regex")?,
        unencrypted_comment_regex: field_str(m, "unencrypted_comment_regex")?,
        encrypted_comment_regex: field_str(m, "encrypted_comment_regex")?,
    }
    .normalize()
    .map_err(|e| Error::Metadata(e.to_string()))?;
    Ok(Metadata {
        key_groups,
        shamir_threshold,
        last_modified,
        mac: field_str(m, "mac")?,
        rules,
        mac_only_encrypted,
        version: field_str(m, "version")?,
    })
}

const MAP_SEP: &str = "__map_";
const LIST_SEP: &str = "__list_";

fn flatten_into(out: &mut Vec<(String, String)>, prefix: &str, v: &Value) {
    match v {
        Value::Map(m) => {
            for item in &m.0 {
                if let Key::Str(k) = &item.key {
                    flatten_into(out, &format!("{prefix}{MAP_SEP}{k}"), &item.value);
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                flatten_into(out, &format!("{prefix}{LIST_SEP}{i}"), item);
            }
        }
        // nulls are dropped, as sops' dotenv and INI stores do.
        Value::Null => {}
        Value::Bool(b) => out.push((prefix.into(), b.to_string())),
        Value::Int(i) => out.push((prefix.into(), i.to_string())),
        other => {
            let s = match other {
                Value::Str(t) => t.to_str_lossy().into_owned(),
                Value::Float(f) => format!("{f:.0}"),
                _ => String::new(),
            };
            out.push((prefix.into(), s.replace('\n', "\\n")));
        }
    }
}

/// The flattened `key → value` pairs (without the `sops_` prefix), sorted,
/// as the dotenv store writes them. Newlines are escaped as `\n`.
pub fn flatten(md: &Metadata) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Value::Map(m) = to_value(md, Layout::Json) {
        for item in &m.0 {
            if let Key::Str(k) = &item.key {
                flatten_into(&mut out, k, &item.value);
            }
        }
    }
    out.sort();
    out
}

enum Token {
    Key(String),
    Index(usize),
}

fn tokenize(path: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut rest = path;
    let mut kind_is_list = false;
    let mut first = true;
    loop {
        let next_map = rest.find(MAP_SEP);
        let next_list = rest.find(LIST_SEP);
        let (end, next_is_list, sep_len) = match (next_map, next_list) {
            (Some(a), Some(b)) if a < b => (a, false, MAP_SEP.len()),
            (Some(_), Some(b)) => (b, true, LIST_SEP.len()),
            (Some(a), None) => (a, false, MAP_SEP.len()),
            (None, Some(b)) => (b, true, LIST_SEP.len()),
            (None, None) => (rest.len(), false, 0),
        };
        let piece = &rest[..end];
        if kind_is_list && !first {
            tokens.push(Token::Index(piece.parse().unwrap_or(0)));
        } else {
            tokens.push(Token::Key(piece.to_string()));
        }
        first = false;
        if sep_len == 0 {
            break;
        }
        kind_is_list = next_is_list;
        rest = &rest[end + sep_len..];
    }
    tokens
}

fn insert_path(node: &mut Value, tokens: &[Token], value: Value) {
    let Some((head, tail)) = tokens.split_first() else {
        *node = value;
        return;
    };
    match head {
        Token::Key(k) => {
            if !matches!(node, Value::Map(_)) {
                *node = Value::Map(Map::new());
            }
            if let Value::Map(m) = node {
                if m.get(k).is_none() {
                    m.push(k.clone(), Value::Null);
                }
                if let Some(child) = m.get_mut(k) {
                    insert_path(child, tail, value);
                }
            }
        }
        Token::Index(i) => {
            // Bound the index so a hostile file cannot make us allocate gigabytes.
            let i = (*i).min(4096);
            if !matches!(node, Value::Seq(_)) {
                *node = Value::Seq(Vec::new());
            }
            if let Value::Seq(items) = node {
                if items.len() <= i {
                    items.resize(i + 1, Value::Null);
                }
                insert_path(&mut items[i], tail, value);
            }
        }
    }
}

/// Rebuilds metadata from flattened pairs (keys without the `sops_` prefix).
pub fn unflatten(pairs: &[(String, String)]) -> Result<Metadata> {
    let mut root = Value::Map(Map::new());
    for (k, v) in pairs {
        let tokens = tokenize(k);
        insert_path(&mut root, &tokens, Value::str(v.replace("\\n", "\n")));
    }
    // Shamir thresholds and booleans come back as strings; from_value accepts both.
    if let Value::Map(m) = &mut root {
        m.0.retain(|i: &Item| !matches!(i.key, Key::Str(ref k) if k.is_empty()));
    }
    from_value(&root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(groups: usize) -> Metadata {
        let g = |n: usize| {
            vec![MasterKey::Age {
                recipient: format!("age1r{n}"),
                enc: "-----BEGIN AGE ENCRYPTED FILE-----\nxx\n-----END AGE ENCRYPTED FILE-----\n"
                    .into(),
            }]
        };
        let mut md = Metadata::new((0..groups).map(g).collect(), SelectionRules::default());
        md.rules = md.rules.clone().normalize().unwrap();
        md.last_modified = Timestamp::parse_rfc3339("2025-01-02T03:04:05Z").unwrap();
        md.mac = "ENC[x]".into();
        if groups > 1 {
            md.shamir_threshold = 2;
        }
        md
    }

    #[test]
    fn tree_round_trip() {
        for n in [1, 3] {
            let md = sample(n);
            let back = from_value(&to_value(&md, Layout::Yaml)).unwrap();
            assert_eq!(back, md);
            let back = from_value(&to_value(&md, Layout::Json)).unwrap();
            assert_eq!(back, md);
        }
    }

    fn with_kms(mut md: Metadata) -> Metadata {
        let mut key = KmsKeyId {
            arn: "arn:aws:kms:us-east-1:123456789012:key/k".into(),
            role: "arn:aws:iam::123456789012:role/r".into(),
            ..Default::default()
        };
        key.set_context([
            ("a10".to_string(), "x".to_string()),
            ("a9".to_string(), "y".to_string()),
            ("B".to_string(), "true".to_string()),
        ]);
        md.key_groups[0].insert(
            0,
            MasterKey::Kms {
                key,
                created_at: Timestamp::parse_rfc3339("2025-01-02T03:04:05+02:00").unwrap(),
                enc: "AQIDAHg=".into(),
            },
        );
        md
    }

    #[test]
    fn kms_entries_round_trip_in_sops_field_order() {
        for n in [1, 3] {
            let md = with_kms(sample(n));
            for layout in [Layout::Yaml, Layout::Json] {
                let v = to_value(&md, layout);
                assert_eq!(from_value(&v).unwrap(), md);
            }
            assert_eq!(unflatten(&flatten(&md)).unwrap(), md);
        }
        let md = with_kms(sample(1));
        let v = to_value(&md, Layout::Yaml);
        let kms = v.as_map().unwrap().get("kms").unwrap();
        let Value::Seq(items) = kms else { panic!() };
        let e = items[0].as_map().unwrap();
        let keys: Vec<String> = e.0.iter().map(|i| format!("{:?}", i.key)).collect();
        assert_eq!(
            keys,
            [
                "\"arn\"",
                "\"role\"",
                "\"context\"",
                "\"created_at\"",
                "\"enc\"",
                "\"aws_profile\""
            ]
        );
        let ctx: Vec<String> = e
            .get("context")
            .unwrap()
            .as_map()
            .unwrap()
            .0
            .iter()
            .map(|i| format!("{:?}", i.key))
            .collect();
        // yaml.v3: letters after digits' runs compare numerically; JSON: bytes.
        assert_eq!(ctx, ["\"B\"", "\"a9\"", "\"a10\""]);
        let v = to_value(&md, Layout::Json);
        let Value::Seq(items) = v.as_map().unwrap().get("kms").unwrap() else {
            panic!()
        };
        let ctx: Vec<String> = items[0]
            .as_map()
            .unwrap()
            .get("context")
            .unwrap()
            .as_map()
            .unwrap()
            .0
            .iter()
            .map(|i| format!("{:?}", i.key))
            .collect();
        assert_eq!(ctx, ["\"B\"", "\"a10\"", "\"a9\""]);
        // The offset of a parsed time is kept, fractions are not written.
        let Value::Seq(items) = to_value(&md, Layout::Yaml)
            .as_map()
            .unwrap()
            .get("kms")
            .unwrap()
            .clone()
        else {
            panic!()
        };
        assert_eq!(
            items[0]
                .as_map()
                .unwrap()
                .get("created_at")
                .unwrap()
                .as_str(),
            Some("2025-01-02T03:04:05+02:00")
        );
    }

    #[test]
    fn yaml_v3_key_order() {
        let mut v = vec![
            "b", "a10", "a9", "a", "A", "_x", "1", "10", "9", "a1b", "a1_",
        ];
        v.sort_by(|a, b| {
            if yaml_v3_less(a, b) {
                std::cmp::Ordering::Less
            } else if yaml_v3_less(b, a) {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        });
        assert_eq!(
            v,
            ["_x", "1", "9", "10", "A", "a", "a1b", "a1_", "a9", "a10", "b"]
        );
    }

    #[test]
    fn flat_round_trip() {
        for n in [1, 3] {
            let md = sample(n);
            let flat = flatten(&md);
            assert!(flat.windows(2).all(|w| w[0] <= w[1]));
            if n == 3 {
                assert!(flat
                    .iter()
                    .any(|(k, v)| k == "shamir_threshold" && v == "2"));
                assert!(flat
                    .iter()
                    .any(|(k, _)| k == "key_groups__list_1__map_age__list_0__map_recipient"));
            }
            assert_eq!(unflatten(&flat).unwrap(), md);
        }
    }
}
