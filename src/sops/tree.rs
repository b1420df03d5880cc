//! Encrypting and decrypting a whole tree, and the MAC over it.
//!
//! This follows sops' `Tree.Encrypt`/`Tree.Decrypt` walk exactly, because the
//! walk order, the AAD of each value and the bytes fed to the MAC are all part
//! of the file format:
//! - AAD = the mapping keys from the root joined with `:`, plus `:`; list
//!   indices are not part of it, and comments use their branch's path.
//! - MAC = SHA-512 over the typed plaintext of every non-comment leaf in
//!   document order (only encrypted ones with `mac_only_encrypted`), printed
//!   as uppercase hex and encrypted with `lastmodified` as AAD.
//! - A key anywhere on a value's path decides its encryption (suffix/regex),
//!   and comment regexes look at the comments "active" above a value.

use std::collections::HashMap;

use regex::Regex;
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::cipher::{Cipher, Plain, ValueError};
use super::metadata::{Metadata, SelectionRules};
use super::value::{Item, Key, Map, Text, Value};
use crate::{Error, Result};

/// Compiled selection rules.
pub struct Selector {
    rules: SelectionRules,
    unencrypted_regex: Option<Pattern>,
    encrypted_regex: Option<Pattern>,
    unencrypted_comment_regex: Option<Pattern>,
    encrypted_comment_regex: Option<Pattern>,
}

/// A selection regex. sops's usual patterns (`^(data|stringData)$`) are an
/// anchored set of plain words: matching one of those is a comparison with
/// each word, so the short-lived processes kustomize starts per file never
/// build a regex engine.
#[derive(Clone)]
enum Pattern {
    Words(Vec<String>),
    Regex(Regex),
}

impl Pattern {
    fn new(re: &str) -> std::result::Result<Pattern, regex::Error> {
        match anchored_words(re) {
            Some(words) => Ok(Pattern::Words(words)),
            None => Regex::new(re).map(Pattern::Regex),
        }
    }

    fn is_match(&self, s: &str) -> bool {
        match self {
            Pattern::Words(words) => words.iter().any(|w| w == s),
            Pattern::Regex(re) => re.is_match(s),
        }
    }
}

/// `^word$`, `^(a|b)$` or `^(?:a|b)$` with words of letters, digits, `_`
/// and `-` only: a regex that matches exactly those strings (`$` without
/// the `m` flag is the end of the text, in Go as in Rust).
fn anchored_words(re: &str) -> Option<Vec<String>> {
    let inner = re.strip_prefix('^')?.strip_suffix('$')?;
    let grouped = inner
        .strip_prefix("(?:")
        .or_else(|| inner.strip_prefix('('))
        .and_then(|g| g.strip_suffix(')'));
    let words: Vec<&str> = match grouped {
        Some(g) => g.split('|').collect(),
        // `^a|b$` is `(^a)|(b$)`: only a single word is safe ungrouped.
        None => vec![inner],
    };
    let plain = |w: &&str| {
        !w.is_empty()
            && w.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    words
        .iter()
        .all(plain)
        .then(|| words.iter().map(|w| w.to_string()).collect())
}

fn compile(name: &str, re: &str) -> Result<Option<Pattern>> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    // A fleet shares a handful of patterns; compiling one costs more than
    // decrypting a small Secret, so compiled regexes are kept (a bounded
    // number: the patterns come from the files).
    static CACHE: OnceLock<Mutex<HashMap<String, Pattern>>> = OnceLock::new();
    const MAX_CACHED: usize = 64;
    if re.is_empty() {
        return Ok(None);
    }
    let cache = CACHE.get_or_init(Default::default);
    if let Some(r) = cache.lock().ok().and_then(|c| c.get(re).cloned()) {
        return Ok(Some(r));
    }
    let compiled =
        Pattern::new(re).map_err(|e| Error::Metadata(format!("invalid {name} {re:?}: {e}")))?;
    if let Ok(mut c) = cache.lock() {
        if c.len() < MAX_CACHED {
            c.insert(re.to_string(), compiled.clone());
        }
    }
    Ok(Some(compiled))
}

impl Selector {
    /// Compiles the regexes of a rule set.
    pub fn new(rules: &SelectionRules) -> Result<Self> {
        Ok(Selector {
            unencrypted_regex: compile("unencrypted_regex", &rules.unencrypted_regex)?,
            encrypted_regex: compile("encrypted_regex", &rules.encrypted_regex)?,
            unencrypted_comment_regex: compile(
                "unencrypted_comment_regex",
                &rules.unencrypted_comment_regex,
            )?,
            encrypted_comment_regex: compile(
                "encrypted_comment_regex",
                &rules.encrypted_comment_regex,
            )?,
            rules: rules.clone(),
        })
    }

    /// sops' `shouldBeEncrypted`.
    fn should_encrypt(&self, path: &[&str], comments: &[Vec<String>], is_comment: bool) -> bool {
        let mut encrypted = true;
        let r = &self.rules;
        if !r.unencrypted_suffix.is_empty()
            && path.iter().any(|k| k.ends_with(&r.unencrypted_suffix))
        {
            encrypted = false;
        }
        if !r.encrypted_suffix.is_empty() {
            encrypted = path.iter().any(|k| k.ends_with(&r.encrypted_suffix));
        }
        if let Some(re) = &self.unencrypted_regex {
            if path.iter().any(|k| re.is_match(k)) {
                encrypted = false;
            }
        }
        if let Some(re) = &self.encrypted_regex {
            encrypted = path.iter().any(|k| re.is_match(k));
        }
        if let Some(re) = &self.unencrypted_comment_regex {
            if comments.iter().flatten().any(|c| re.is_match(c)) {
                encrypted = false;
            }
        }
        if let Some(re) = &self.encrypted_comment_regex {
            encrypted = false;
            let last_level = comments.len().saturating_sub(1);
            'outer: for (i, level) in comments.iter().enumerate() {
                for (j, c) in level.iter().enumerate() {
                    // The matching comment line itself stays plaintext.
                    if is_comment && i == last_level && j + 1 == level.len() {
                        continue;
                    }
                    if re.is_match(c) {
                        encrypted = true;
                        break 'outer;
                    }
                }
            }
        }
        encrypted
    }
}

enum Mode<'a> {
    Encrypt(&'a mut Cipher),
    Decrypt(&'a mut Cipher),
}

struct Walker<'a> {
    mode: Mode<'a>,
    sel: &'a Selector,
    mac_only_encrypted: bool,
    hash: Sha512,
    /// Values decrypted ahead on all cores, by the address of their leaf,
    /// with the AAD they were decrypted under (see [`decrypt_ahead`]).
    ahead: HashMap<usize, (String, std::result::Result<Value, ValueError>)>,
}

/// Below this many encrypted values, decrypting in order is faster than
/// fanning out.
const PARALLEL_MIN: usize = 256;

/// Decrypts every `ENC[…]` string leaf of a large tree on all cores before
/// the in-order walk, which then takes each result instead of decrypting
/// (the walk still decides what is selected, checks the AAD and feeds the
/// MAC in document order). Only for read-only ciphers: nothing to remember.
fn decrypt_ahead(
    branches: &[Map],
    cipher: &Cipher,
) -> HashMap<usize, (String, std::result::Result<Value, ValueError>)> {
    fn value<'t>(v: &'t Value, path: &mut Vec<&'t str>, out: &mut Vec<(usize, &'t str, String)>) {
        match v {
            Value::Map(m) => map(m, path, out),
            Value::Seq(items) => items.iter().for_each(|i| value(i, path, out)),
            Value::Str(t) => {
                if let Some(s) = t.as_str().filter(|s| s.starts_with("ENC[")) {
                    out.push((t as *const Text as usize, s, aad(path)));
                }
            }
            _ => {}
        }
    }
    fn map<'t>(m: &'t Map, path: &mut Vec<&'t str>, out: &mut Vec<(usize, &'t str, String)>) {
        for item in &m.0 {
            // The walk never visits the value of a comment or odd key.
            if let Key::Str(k) = &item.key {
                path.push(k.as_str());
                value(&item.value, path, out);
                path.pop();
            }
        }
    }
    let mut leaves = Vec::new();
    for b in branches {
        map(b, &mut Vec::new(), &mut leaves);
    }
    if leaves.len() < PARALLEL_MIN {
        return HashMap::new();
    }
    let jobs: Vec<(&str, &str)> = leaves.iter().map(|(_, s, a)| (*s, a.as_str())).collect();
    let results = cipher.decrypt_many(&jobs);
    leaves
        .into_iter()
        .zip(results)
        .map(|((addr, _, aad), r)| (addr, (aad, r)))
        .collect()
}

/// The mapping keys joined with `:`, plus a final `:` (sops's AAD),
/// built in one allocation: it is made for every value of a file.
fn aad(path: &[&str]) -> String {
    let mut s = String::with_capacity(path.iter().map(|p| p.len() + 1).sum::<usize>().max(1));
    for (i, p) in path.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(p);
    }
    s.push(':');
    s
}

fn comment_text(t: &Text) -> String {
    t.to_str_lossy().into_owned()
}

impl Walker<'_> {
    fn hash_value(&mut self, v: &Value) -> Result<()> {
        if let Some(p) = Plain::of(v) {
            if !matches!(v, Value::Comment(_)) {
                self.hash.update(&*p.to_bytes());
            }
        }
        Ok(())
    }

    fn leaf(&mut self, v: &mut Value, path: &[&str], comments: &[Vec<String>]) -> Result<()> {
        if let Value::Uint(_) = v {
            return Err(Error::EncryptTree(format!(
                "the value at {} is an integer beyond the int64 range (unknown type: uint64)",
                aad(path)
            )));
        }
        let is_comment = matches!(v, Value::Comment(_));
        let encrypted = self.sel.should_encrypt(path, comments, is_comment);
        match &mut self.mode {
            Mode::Encrypt(cipher) => {
                let cipher: &mut Cipher = cipher;
                if (!self.mac_only_encrypted || encrypted) && !is_comment {
                    if let Some(p) = Plain::of(v) {
                        self.hash.update(&*p.to_bytes());
                    }
                }
                if encrypted {
                    let Some(p) = Plain::of(v) else {
                        return Ok(());
                    };
                    let enc = cipher.encrypt(p, &aad(path));
                    check_comment_regex(self.sel, is_comment, &enc)?;
                    // Quirk kept from sops: an encrypted comment inside a
                    // sequence becomes a plain string item.
                    *v = Value::Str(Text::new(enc));
                }
                Ok(())
            }
            Mode::Decrypt(cipher) => {
                let cipher: &mut Cipher = cipher;
                if encrypted {
                    match v {
                        Value::Comment(t) => {
                            if let Some(d) = decrypt_comment(cipher, t, path)? {
                                *v = match d {
                                    Value::Str(t) => Value::Comment(t),
                                    other => other,
                                };
                            }
                        }
                        Value::Str(t) => {
                            let s = t
                                .as_str()
                                .ok_or_else(|| decrypt_err(path, ValueError::NotEncrypted))?;
                            let a = aad(path);
                            let addr = &*t as *const Text as usize;
                            let done = match self.ahead.remove(&addr) {
                                Some((ahead_aad, r)) if ahead_aad == a => Some(r),
                                _ => None,
                            };
                            *v = done
                                .unwrap_or_else(|| cipher.decrypt(s, &a))
                                .map_err(|e| decrypt_err(path, e))?;
                        }
                        _ => {
                            return Err(Error::DecryptValue {
                                path: aad(path),
                                reason: "expected an encrypted string, found a plain value".into(),
                            })
                        }
                    }
                }
                if !self.mac_only_encrypted || encrypted {
                    let v: &Value = v;
                    self.hash_value(v)?;
                }
                Ok(())
            }
        }
    }

    fn comment_key(&mut self, t: &mut Text, path: &[&str], comments: &[Vec<String>]) -> Result<()> {
        let encrypted = self.sel.should_encrypt(path, comments, true);
        if !encrypted {
            return Ok(());
        }
        match &mut self.mode {
            Mode::Encrypt(cipher) => {
                let enc = cipher.encrypt(Plain::Comment(t.as_bytes()), &aad(path));
                check_comment_regex(self.sel, true, &enc)?;
                *t = Text::new(enc);
            }
            Mode::Decrypt(cipher) => {
                if let Some(Value::Comment(c) | Value::Str(c)) = decrypt_comment(cipher, t, path)? {
                    *t = c;
                }
            }
        }
        Ok(())
    }

    fn value(
        &mut self,
        v: &mut Value,
        path: &[&str],
        comments: &mut Vec<Vec<String>>,
    ) -> Result<()> {
        match v {
            Value::Map(m) => self.map(m, path, comments),
            Value::Seq(items) => {
                comments.push(Vec::new());
                for item in items.iter_mut() {
                    let is_comment = matches!(item, Value::Comment(_));
                    if let Value::Comment(c) = item {
                        let text = comment_text(c);
                        if let Some(last) = comments.last_mut() {
                            last.push(text);
                        }
                    }
                    self.value(item, path, comments)?;
                    if !is_comment {
                        if let Some(last) = comments.last_mut() {
                            last.clear();
                        }
                    }
                }
                comments.pop();
                Ok(())
            }
            Value::Null => Ok(()),
            _ => self.leaf(v, path, comments),
        }
    }

    fn map(&mut self, m: &mut Map, path: &[&str], comments: &mut Vec<Vec<String>>) -> Result<()> {
        comments.push(Vec::new());
        for item in m.0.iter_mut() {
            let Item { key, value } = item;
            let k = match key {
                Key::Comment(t) => {
                    let text = comment_text(t);
                    if let Some(last) = comments.last_mut() {
                        last.push(text);
                    }
                    self.comment_key(t, path, comments)?;
                    continue;
                }
                Key::Other(k) => {
                    return Err(Error::EncryptTree(format!(
                        "Tree contains a non-string key: {}. Only string keys are supported",
                        crate::error::escape_for_terminal(k)
                    )))
                }
                Key::Str(k) => k.as_str(),
            };
            let mut sub: Vec<&str> = Vec::with_capacity(path.len() + 1);
            sub.extend_from_slice(path);
            sub.push(k);
            let is_comment_value = matches!(value, Value::Comment(_));
            self.value(value, &sub, comments)?;
            if !is_comment_value {
                if let Some(last) = comments.last_mut() {
                    last.clear();
                }
            }
        }
        comments.pop();
        Ok(())
    }
}

fn check_comment_regex(sel: &Selector, is_comment: bool, enc: &str) -> Result<()> {
    if is_comment {
        if let Some(re) = &sel.unencrypted_comment_regex {
            if re.is_match(enc) {
                return Err(Error::EncryptTree(
                    "an encrypted comment matches unencrypted_comment_regex; make sure that regex cannot match an encrypted comment".into(),
                ));
            }
        }
    }
    Ok(())
}

/// Decrypts an encrypted comment. A comment that is not in `ENC[…]` form
/// was never encrypted (older sops versions wrote some in clear) and is
/// kept; one that is, but does not verify, is an error: sops keeps it with
/// a warning, kustos fails closed like it does for values.
fn decrypt_comment(cipher: &mut Cipher, t: &Text, path: &[&str]) -> Result<Option<Value>> {
    let Some(s) = t.as_str() else {
        return Ok(None);
    };
    match cipher.decrypt(s, &aad(path)) {
        Ok(v) => Ok(Some(v)),
        Err(ValueError::NotEncrypted) => Ok(None),
        Err(e) => Err(decrypt_err(path, e)),
    }
}

fn decrypt_err(path: &[&str], e: ValueError) -> Error {
    Error::DecryptValue {
        path: crate::error::escape_for_terminal(&aad(path)),
        reason: e.to_string(),
    }
}

fn walk(branches: &mut [Map], md: &Metadata, mode: Mode<'_>) -> Result<Zeroizing<String>> {
    let sel = Selector::new(&md.rules)?;
    let ahead = match &mode {
        Mode::Decrypt(c) if !c.remembers() => decrypt_ahead(branches, c),
        _ => HashMap::new(),
    };
    let mut w = Walker {
        mode,
        sel: &sel,
        mac_only_encrypted: md.mac_only_encrypted,
        hash: Sha512::new(),
        ahead,
    };
    if md.mac_only_encrypted {
        // SHA-256("sops") first, so the two MAC modes never agree.
        w.hash.update(sha2::Sha256::digest(b"sops"));
    }
    for b in branches.iter_mut() {
        w.map(b, &[], &mut Vec::new())?;
    }
    let digest = w.hash.finalize();
    let mut hex = Zeroizing::new(String::with_capacity(128));
    for b in digest.iter() {
        hex.push_str(&format!("{b:02X}"));
    }
    Ok(hex)
}

/// Encrypts every selected value in place and sets `md.mac`.
///
/// `md.last_modified` must already hold the time to write: it is the MAC's AAD.
pub fn encrypt(branches: &mut [Map], md: &mut Metadata, cipher: &mut Cipher) -> Result<()> {
    let mac = walk(branches, md, Mode::Encrypt(cipher))?;
    md.mac = cipher.encrypt(Plain::Str(mac.as_bytes()), &md.last_modified.rfc3339());
    Ok(())
}

/// Decrypts every selected value in place and verifies the MAC (unless
/// `ignore_mac`), comparing in constant time.
pub fn decrypt(
    branches: &mut [Map],
    md: &Metadata,
    cipher: &mut Cipher,
    ignore_mac: bool,
) -> Result<()> {
    let computed = walk(branches, md, Mode::Decrypt(cipher))?;
    let stored = if md.mac.is_empty() {
        None
    } else {
        Some(cipher.decrypt(&md.mac, &md.last_modified.rfc3339()))
    };
    if ignore_mac {
        return Ok(());
    }
    match stored {
        None => Err(Error::MacNotFound),
        Some(Err(e)) => Err(Error::MacDecrypt(e.to_string())),
        Some(Ok(Value::Str(t))) => {
            if bool::from(t.as_bytes().ct_eq(computed.as_bytes())) {
                Ok(())
            } else {
                Err(Error::MacMismatch)
            }
        }
        Some(Ok(_)) => Err(Error::MacDecrypt("the MAC is not a string".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sops::cipher::DataKey;

    #[test]
    fn aad_is_the_joined_path_plus_colon() {
        assert_eq!(aad(&[]), ":");
        assert_eq!(aad(&["a"]), "a:");
        assert_eq!(aad(&["data", "", "ü"]), "data::ü:");
    }

    #[test]
    fn word_patterns_match_exactly_like_the_regex() {
        let patterns = [
            "^(data|stringData)$",
            "^(?:data|stringData)$",
            "^password$",
            "^(a-b|c_d|9)$",
            // Not word sets: these stay regexes.
            "^a|b$",
            "^(a)|(b)$",
            "^(data|string.Data)$",
            "^(data|)$",
            "^()$",
            "data",
            "^data",
            "(?i)^data$",
            "^(data|stringData)$\n",
        ];
        let keys = [
            "",
            "data",
            "stringData",
            "Data",
            "data\n",
            "xdata",
            "datax",
            "password",
            "a",
            "b",
            "ab",
            "xb",
            "ax",
            "a-b",
            "c_d",
            "9",
            "string.Data",
            "stringxData",
            "(a)",
            "a|b",
        ];
        for p in patterns {
            let ours = Pattern::new(p).unwrap();
            let re = Regex::new(p).unwrap();
            for k in keys {
                assert_eq!(ours.is_match(k), re.is_match(k), "{p:?} on {k:?}");
            }
        }
        assert!(matches!(
            Pattern::new("^(data|stringData)$"),
            Ok(Pattern::Words(_))
        ));
        assert!(matches!(Pattern::new("^a|b$"), Ok(Pattern::Regex(_))));
        assert!(matches!(Pattern::new("^(a)|(b)$"), Ok(Pattern::Regex(_))));
        assert!(Pattern::new("^(data$").is_err());
    }

    /// A tree with enough values to take the parallel path: a list, nested
    /// maps, typed values, and a plaintext key whose value is an `ENC[…]`
    /// string that must stay as it is.
    fn big_tree(n: usize) -> Map {
        let mut root = Map::new();
        let mut data = Map::new();
        for i in 0..n {
            data.push(
                format!("key{i}"),
                Value::Str(Text::new(format!("value-{i}"))),
            );
        }
        data.push("count", Value::Int(42));
        data.push("on", Value::Bool(true));
        root.push("data", Value::Map(data));
        root.push(
            "list",
            Value::Seq(
                (0..3)
                    .map(|i| Value::Str(Text::new(format!("item{i}"))))
                    .collect(),
            ),
        );
        root
    }

    fn encrypted(n: usize, key: &DataKey) -> (Vec<Map>, Metadata) {
        let mut branches = vec![big_tree(n)];
        let rules = SelectionRules {
            unencrypted_suffix: crate::sops::metadata::DEFAULT_UNENCRYPTED_SUFFIX.into(),
            ..Default::default()
        };
        let mut md = Metadata::new(Vec::new(), rules);
        tree_encrypt(&mut branches, &mut md, key);
        (branches, md)
    }

    fn tree_encrypt(branches: &mut [Map], md: &mut Metadata, key: &DataKey) {
        encrypt(branches, md, &mut Cipher::new(key)).unwrap();
    }

    #[test]
    fn parallel_decryption_matches_in_order_decryption() {
        let key = DataKey::generate();
        let (enc, md) = encrypted(PARALLEL_MIN * 2, &key);
        // A plaintext key holding a valid ciphertext of another path.
        let mut enc = enc;
        let stray = match enc[0]
            .get("data")
            .and_then(|d| d.as_map())
            .and_then(|d| d.get("key0"))
        {
            Some(Value::Str(t)) => t.clone(),
            _ => unreachable!(),
        };
        let mut md = md;
        enc[0].push("note_unencrypted", Value::Str(stray.clone()));
        // Re-MAC with the extra plaintext value, as an editor would.
        let mut plain = enc.clone();
        decrypt(&mut plain, &md, &mut Cipher::new(&key), true).unwrap();
        let mut md2 = md.clone();
        let mut re = plain.clone();
        encrypt(&mut re, &mut md2, &mut Cipher::new(&key)).unwrap();
        md.mac = md2.mac.clone();
        enc = re;

        let mut in_order = enc.clone();
        decrypt(&mut in_order, &md, &mut Cipher::new(&key), false).unwrap();
        let mut parallel = enc.clone();
        decrypt(&mut parallel, &md, &mut Cipher::read_only(&key), false).unwrap();
        assert_eq!(in_order, parallel);
        assert_eq!(
            parallel[0].get("note_unencrypted"),
            Some(&Value::Str(stray)),
            "a selected-out value stays as it is"
        );
        assert_eq!(parallel[0].str_at(&["data", "key7"]), Some("value-7"));
    }

    #[test]
    fn parallel_decryption_reports_the_failing_path_and_the_mac() {
        let key = DataKey::generate();
        let (mut enc, md) = encrypted(PARALLEL_MIN * 2, &key);
        // Swap two ciphertexts: each fails its AAD check.
        let data = enc[0].get_mut("data").and_then(|d| match d {
            Value::Map(m) => Some(m),
            _ => None,
        });
        let data = data.unwrap();
        let a = data.get("key3").cloned().unwrap();
        *data.get_mut("key3").unwrap() = data.get("key4").cloned().unwrap();
        *data.get_mut("key4").unwrap() = a;
        let err = decrypt(&mut enc.clone(), &md, &mut Cipher::read_only(&key), false).unwrap_err();
        assert!(err.to_string().contains("data:key3:"), "{err}");

        let (enc, mut md) = encrypted(PARALLEL_MIN * 2, &key);
        let other = encrypted(1, &key).1;
        md.mac = other.mac;
        md.last_modified = other.last_modified;
        let err = decrypt(&mut enc.clone(), &md, &mut Cipher::read_only(&key), false).unwrap_err();
        assert!(matches!(err, Error::MacMismatch), "{err}");
    }
}
