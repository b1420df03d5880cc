//! Whole-document operations shared by the CLI, the kustomize plugin, the
//! sidecar and fleet runs: encrypt plaintext bytes, decrypt encrypted bytes,
//! re-encrypt a decrypted tree (reusing IVs), tree paths, and changing who
//! can decrypt a file ([`rekey`]: rotate and updatekeys).

pub mod rekey;

use zeroize::Zeroizing;

use crate::formats::{self, Format, StoreOptions};
use crate::keys::{self, KeyGroup, KeyRing, Recipient};
use crate::sops::metadata::{Metadata, SelectionRules};
use crate::sops::time::Timestamp;
use crate::sops::value::{Map, Value};
use crate::sops::{tree, Cipher, DataKey, Tree};
use crate::{Error, Result};

/// What to encrypt to and which values.
#[derive(Clone, Debug, Default)]
pub struct EncryptSpec {
    /// Key groups of recipients (one group = no Shamir).
    pub groups: Vec<Vec<Recipient>>,
    /// Groups needed to decrypt (0 = all); only with several groups.
    pub shamir_threshold: usize,
    /// Selection rules (at most one set; none = `_unencrypted` suffix).
    pub rules: SelectionRules,
    /// Only encrypted values enter the MAC.
    pub mac_only_encrypted: bool,
    /// Where the data key is wrapped (this process, `--keyservice`).
    pub services: keys::keyservice::KeyServices,
}

impl EncryptSpec {
    /// Metadata for a new file in `format` (the binary store ignores selection rules).
    pub fn metadata(&self, format: Format) -> Result<Metadata> {
        if self.groups.is_empty() || self.groups.iter().all(|g| g.is_empty()) {
            return Err(Error::NoEncryptionKeys(
                "no encryption keys: config file not found, or has no creation rules, and no keys provided through command line options".into(),
            ));
        }
        let groups: Vec<KeyGroup> = self
            .groups
            .iter()
            .map(|g| g.iter().map(keys::placeholder).collect())
            .collect();
        let rules = if format == Format::Binary {
            SelectionRules::default()
        } else {
            if self.rules.count() > 1 {
                return Err(Error::ConflictingParameters("Error: cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex in the same file".into()));
            }
            self.rules.clone().normalize()?
        };
        let mut md = Metadata::new(groups, rules);
        md.shamir_threshold = self.shamir_threshold;
        md.mac_only_encrypted = self.mac_only_encrypted && format != Format::Binary;
        Ok(md)
    }
}

/// Encrypts parsed plaintext branches into a new tree.
pub fn encrypt_branches(
    mut branches: Vec<Map>,
    format: Format,
    spec: &EncryptSpec,
) -> Result<Tree> {
    if formats::has_sops_key(format, &branches) {
        return Err(Error::AlreadyEncrypted);
    }
    let mut md = spec.metadata(format)?;
    let key = DataKey::generate();
    keys::wrap_data_key(
        &mut md.key_groups,
        &mut md.shamir_threshold,
        &key,
        &spec.services,
    )?;
    let mut cipher = Cipher::new(&key);
    md.last_modified = Timestamp::now_utc();
    tree::encrypt(&mut branches, &mut md, &mut cipher)?;
    Ok(Tree {
        branches,
        metadata: md,
    })
}

/// Encrypts plaintext bytes to the bytes of an encrypted file.
pub fn encrypt_bytes(
    input: &[u8],
    in_fmt: Format,
    out_fmt: Format,
    spec: &EncryptSpec,
    store: &StoreOptions,
) -> Result<Vec<u8>> {
    let branches = formats::load_plain(in_fmt, input)?;
    if branches.is_empty() {
        return Err(Error::NoDocument);
    }
    let tree = encrypt_branches(branches, in_fmt, spec)?;
    formats::emit_encrypted(out_fmt, &tree, store)
}

/// Recovers the data key and decrypts the tree in place. The returned
/// cipher remembers every IV, so re-encrypting unchanged values reproduces
/// them byte for byte.
pub fn decrypt_tree(tree: &mut Tree, ring: &KeyRing, ignore_mac: bool) -> Result<Cipher> {
    let key = keys::recover_data_key(
        &tree.metadata.key_groups,
        tree.metadata.shamir_threshold,
        ring,
    )?;
    decrypt_tree_with_key(tree, &key, ignore_mac)
}

/// Decrypts with a known data key.
pub fn decrypt_tree_with_key(tree: &mut Tree, key: &DataKey, ignore_mac: bool) -> Result<Cipher> {
    let mut cipher = Cipher::new(key);
    tree::decrypt(&mut tree.branches, &tree.metadata, &mut cipher, ignore_mac)?;
    Ok(cipher)
}

/// Re-encrypts a decrypted tree with its cipher, refreshing `lastmodified`
/// and the MAC (what sops does after edit, set, unset and rotate).
pub fn reencrypt(tree: &mut Tree, cipher: &mut Cipher) -> Result<()> {
    tree.metadata.last_modified = Timestamp::now_utc();
    tree::encrypt(&mut tree.branches, &mut tree.metadata, cipher)
}

/// Options for [`decrypt_bytes`].
#[derive(Clone, Debug, Default)]
pub struct DecryptOptions {
    /// Skip the MAC check.
    pub ignore_mac: bool,
    /// `--extract` path.
    pub extract: Option<Vec<PathElem>>,
}

/// Decrypts an encrypted file's bytes to plaintext bytes.
pub fn decrypt_bytes(
    input: &[u8],
    in_fmt: Format,
    out_fmt: Format,
    ring: &KeyRing,
    opts: &DecryptOptions,
    store: &StoreOptions,
) -> Result<Zeroizing<Vec<u8>>> {
    let mut tree = formats::load_encrypted(in_fmt, input)?;
    let key = keys::recover_data_key(
        &tree.metadata.key_groups,
        tree.metadata.shamir_threshold,
        ring,
    )?;
    let mut cipher = Cipher::read_only(&key);
    tree::decrypt(
        &mut tree.branches,
        &tree.metadata,
        &mut cipher,
        opts.ignore_mac,
    )?;
    emit_decrypted(&tree, out_fmt, opts.extract.as_deref(), store)
}

/// Emits a decrypted tree, or one extracted value of it.
pub fn emit_decrypted(
    tree: &Tree,
    out_fmt: Format,
    extract: Option<&[PathElem]>,
    store: &StoreOptions,
) -> Result<Zeroizing<Vec<u8>>> {
    match extract {
        None | Some([]) => formats::emit_plain(out_fmt, &tree.branches, store),
        Some(path) => {
            let first = Value::Map(tree.branches.first().cloned().unwrap_or_default());
            let v = truncate(&first, path)?;
            match v {
                Value::Map(m) => formats::emit_plain(out_fmt, std::slice::from_ref(m), store),
                // Strings print raw, without a newline.
                Value::Str(t) => Ok(Zeroizing::new(t.as_bytes().to_vec())),
                other => formats::emit_value(out_fmt, other, store),
            }
        }
    }
}

/// One step of a `["key"][0]` path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathElem {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Parses sops' tree path syntax: `["a"][0]['b']`.
pub fn parse_tree_path(s: &str) -> Result<Vec<PathElem>> {
    let mut out = Vec::new();
    for comp in s.split('[') {
        if comp.is_empty() {
            continue;
        }
        let inner = comp
            .strip_suffix(']')
            .ok_or_else(|| Error::TreePath(format!("component {comp:?} doesn't end with ]")))?;
        if inner.is_empty() {
            return Err(Error::TreePath("empty component".into()));
        }
        if let Some(q) = inner.chars().next().filter(|c| *c == '"' || *c == '\'') {
            // Both ends must be the (one-byte) quote, so slicing is safe.
            if inner.len() < 2 || !inner.ends_with(q) {
                return Err(Error::TreePath(format!("unterminated key {inner:?}")));
            }
            out.push(PathElem::Key(inner[1..inner.len() - 1].to_string()));
        } else {
            out.push(PathElem::Index(inner.parse().map_err(|_| {
                Error::TreePath(format!("{inner:?} is neither a quoted key nor an index"))
            })?));
        }
    }
    Ok(out)
}

/// The value at `path` (sops' `Truncate`).
pub fn truncate<'a>(v: &'a Value, path: &[PathElem]) -> Result<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = match (p, cur) {
            (PathElem::Key(k), Value::Map(m)) => m
                .get(k)
                .ok_or_else(|| Error::PathNotFound(format!("component [{k:?}] not found")))?,
            (PathElem::Index(i), Value::Seq(items)) => items
                .iter()
                .filter(|v| !matches!(v, Value::Comment(_)))
                .nth(*i)
                .ok_or_else(|| {
                    Error::PathNotFound(format!("component [{i}] accesses out of bounds"))
                })?,
            (PathElem::Key(k), _) => {
                return Err(Error::PathNotFound(format!("component [{k:?}] not found")))
            }
            (PathElem::Index(i), _) => {
                return Err(Error::PathNotFound(format!(
                    "component [{i}] is not a list index"
                )))
            }
        };
    }
    Ok(cur)
}

/// Builds the nested value a missing path needs (sops' `valueFromPathAndLeaf`).
fn value_from_path(path: &[PathElem], leaf: Value) -> Value {
    match path.split_first() {
        None => leaf,
        Some((PathElem::Index(_), rest)) => Value::Seq(vec![value_from_path(rest, leaf)]),
        Some((PathElem::Key(k), rest)) => {
            let mut m = Map::new();
            m.push(k.clone(), value_from_path(rest, leaf));
            Value::Map(m)
        }
    }
}

/// Sets `path` to `value`, creating what is missing; an index past the end
/// appends. Returns whether anything changed (sops' `Set`).
pub fn set_path(target: &mut Value, path: &[PathElem], value: Value) -> bool {
    let Some((first, rest)) = path.split_first() else {
        let changed = *target != value;
        *target = value;
        return changed;
    };
    match (first, &mut *target) {
        (PathElem::Key(k), Value::Map(m)) => match m.get_mut(k) {
            Some(v) => set_path(v, rest, value),
            None => {
                m.push(k.clone(), value_from_path(rest, value));
                true
            }
        },
        (PathElem::Index(i), Value::Seq(items)) => {
            // Positions count real items, not comments.
            let pos: Vec<usize> = items
                .iter()
                .enumerate()
                .filter(|(_, v)| !matches!(v, Value::Comment(_)))
                .map(|(j, _)| j)
                .collect();
            match pos.get(*i) {
                Some(&j) => set_path(&mut items[j], rest, value),
                None => {
                    items.push(value_from_path(rest, value));
                    true
                }
            }
        }
        _ => {
            let new = value_from_path(path, value);
            let changed = *target != new;
            *target = new;
            changed
        }
    }
}

/// Removes the value at `path` (sops' `Unset`).
pub fn unset_path(target: &mut Value, path: &[PathElem]) -> Result<()> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(());
    };
    match (first, target) {
        (PathElem::Key(k), Value::Map(m)) => {
            let idx =
                m.0.iter()
                    .position(|i| i.key.as_str() == Some(k.as_str()))
                    .ok_or_else(|| {
                        Error::PathNotFound(format!(
                            "Key not found: {}",
                            crate::error::escape_for_terminal(k)
                        ))
                    })?;
            if rest.is_empty() {
                m.0.remove(idx);
                Ok(())
            } else {
                unset_path(&mut m.0[idx].value, rest)
            }
        }
        (PathElem::Index(i), Value::Seq(items)) => {
            let j = items
                .iter()
                .enumerate()
                .filter(|(_, v)| !matches!(v, Value::Comment(_)))
                .map(|(j, _)| j)
                .nth(*i)
                .ok_or_else(|| Error::PathNotFound(format!("Index {i} out of bounds")))?;
            if rest.is_empty() {
                items.remove(j);
                Ok(())
            } else {
                unset_path(&mut items[j], rest)
            }
        }
        (p, _) => Err(Error::PathNotFound(format!(
            "Unsupported type for item {p:?}"
        ))),
    }
}

/// Whether bytes look like a sops-encrypted file in `format`.
pub fn is_encrypted(input: &[u8], format: Format) -> bool {
    match formats::load_encrypted(format, input) {
        Ok(t) => !t.metadata.version.is_empty() && !t.metadata.mac.is_empty(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tree_paths() {
        assert_eq!(
            parse_tree_path(r#"["a"][0]['b']"#).unwrap(),
            vec![
                PathElem::Key("a".into()),
                PathElem::Index(0),
                PathElem::Key("b".into())
            ]
        );
        assert!(parse_tree_path(r#"["a""#).is_err());
        // Found by the enc_value fuzz target: a multi-byte last character.
        assert!(parse_tree_path("[' \u{21d}]").is_err());
        assert!(parse_tree_path("[x]").is_err());
        assert_eq!(parse_tree_path("").unwrap(), vec![]);
    }

    #[test]
    fn round_trip_every_format() {
        let id = age::x25519::Identity::generate();
        let spec = EncryptSpec {
            groups: vec![vec![Recipient::Age(id.to_public().to_string())]],
            ..Default::default()
        };
        use age::secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.agekey"), id.to_string().expose_secret()).unwrap();
        let ring = KeyRing::from_dir(dir.path());
        let store = StoreOptions::default();
        let cases: &[(Format, &[u8])] = &[
            (
                Format::Yaml,
                b"# c\na: 1\nb:\n    - x\n    - 2.5\nc_unencrypted: keep\n",
            ),
            (Format::Json, b"{\n\t\"a\": \"x\",\n\t\"n\": 1.5\n}\n"),
            (Format::Dotenv, b"#c\nA=1\nB=two\\nlines\n"),
            (Format::Ini, b"[s]\na = 1\n"),
            (Format::Binary, b"\x00\xffraw bytes"),
        ];
        for (fmt, plain) in cases {
            let enc = encrypt_bytes(plain, *fmt, *fmt, &spec, &store).unwrap();
            let dec =
                decrypt_bytes(&enc, *fmt, *fmt, &ring, &DecryptOptions::default(), &store).unwrap();
            assert_eq!(&dec[..], *plain, "{fmt:?}");
        }
    }
}
