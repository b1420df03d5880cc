//! The `ENC[AES256_GCM,…]` value format and the data key.
//!
//! Compatibility constraints (sops `aes/cipher.go`):
//! - AES-256-GCM with a **32-byte** nonce (sops' `nonceSize`); decryption takes
//!   the nonce size from the stored IV, so 12-byte IVs of old files work too.
//! - Standard base64 with padding for `data`, `iv` and `tag`.
//! - Empty strings (and empty comments) are never encrypted.
//! - The "IV stash": every decrypted `(plaintext, type, AAD)` remembers its IV,
//!   and re-encrypting the same value reuses it, so unchanged values stay
//!   byte-identical and Git diffs stay small.

use std::collections::HashMap;
use std::fmt;

use aes_gcm::aead::consts::{U12, U16, U32};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use rand::RngCore;
use zeroize::{Zeroize, Zeroizing};

use super::gonum;
use super::time::Timestamp;
use super::value::{Text, Value};

/// Length of the data key and of the IVs kustos writes.
pub const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// The 32-byte key every value of a file is encrypted with.
///
/// Zeroized on drop; `Debug` never prints it.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl DataKey {
    /// A fresh random key from the OS generator.
    pub fn generate() -> Self {
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut *k);
        DataKey(k)
    }

    /// Wraps exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != KEY_LEN {
            return None;
        }
        let mut k = Zeroizing::new([0u8; KEY_LEN]);
        k.copy_from_slice(bytes);
        Some(DataKey(k))
    }

    /// The key bytes (to wrap them for a master key).
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

/// A plaintext value as sops types it, borrowed from the tree.
#[derive(Clone, Copy)]
pub enum Plain<'a> {
    /// `type:str`
    Str(&'a [u8]),
    /// `type:int`
    Int(i64),
    /// `type:float`
    Float(f64),
    /// `type:bool`
    Bool(bool),
    /// `type:time`
    Time(&'a Timestamp),
    /// `type:comment`
    Comment(&'a [u8]),
}

impl Plain<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Plain::Str(_) => "str",
            Plain::Int(_) => "int",
            Plain::Float(_) => "float",
            Plain::Bool(_) => "bool",
            Plain::Time(_) => "time",
            Plain::Comment(_) => "comment",
        }
    }

    /// The bytes sops encrypts and feeds to the MAC (`sops.ToBytes`).
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(match self {
            Plain::Str(b) | Plain::Comment(b) => b.to_vec(),
            Plain::Int(i) => i.to_string().into_bytes(),
            Plain::Float(f) => gonum::format_float_f(*f).into_bytes(),
            // sops writes booleans in title case (a legacy of the Python version).
            Plain::Bool(true) => b"True".to_vec(),
            Plain::Bool(false) => b"False".to_vec(),
            Plain::Time(t) => t.rfc3339_nano().into_bytes(),
        })
    }

    /// Borrows the plaintext of a tree value, if it is a leaf sops encrypts.
    pub fn of(v: &Value) -> Option<Plain<'_>> {
        Some(match v {
            Value::Str(t) => Plain::Str(t.as_bytes()),
            Value::Int(i) => Plain::Int(*i),
            Value::Float(f) => Plain::Float(*f),
            Value::Bool(b) => Plain::Bool(*b),
            Value::Time(t) => Plain::Time(t),
            Value::Comment(t) => Plain::Comment(t.as_bytes()),
            _ => return None,
        })
    }
}

/// Why a value could not be decrypted (never contains the value itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Not an `ENC[AES256_GCM,data:…,iv:…,tag:…,type:…]` string.
    #[error("the value is not in sops' ENC[AES256_GCM,…] format")]
    NotEncrypted,
    /// One of the base64 fields is malformed.
    #[error("the {0} field is not valid base64")]
    Base64(&'static str),
    /// The IV length is not one AES-GCM is used with.
    #[error("unsupported IV length {0}")]
    IvLength(usize),
    /// GCM authentication failed.
    #[error(
        "authentication failed (wrong data key, or the value, IV, tag or key path was changed)"
    )]
    Authentication,
    /// The `type:` is not one sops knows.
    #[error("unknown value type")]
    UnknownType,
    /// The plaintext does not parse as its declared type.
    #[error("the decrypted value is not a valid {0}")]
    BadPlaintext(&'static str),
}

#[derive(PartialEq, Eq, Hash)]
struct StashKey {
    aad: String,
    kind: &'static str,
    plain: Vec<u8>,
}

impl Drop for StashKey {
    fn drop(&mut self) {
        self.plain.zeroize();
    }
}

type IvSource = Box<dyn FnMut(&mut [u8; KEY_LEN]) + Send>;

/// Encrypts and decrypts values of one file with its data key.
pub struct Cipher {
    key: DataKey,
    gcm32: AesGcm<Aes256, U32>,
    stash: HashMap<StashKey, [u8; KEY_LEN]>,
    /// Remember IVs of decrypted values (only needed to re-encrypt).
    remember: bool,
    iv_source: Option<IvSource>,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cipher").finish_non_exhaustive()
    }
}

impl Cipher {
    /// A cipher for `key` with random IVs.
    pub fn new(key: &DataKey) -> Self {
        Cipher {
            key: key.clone(),
            gcm32: AesGcm::<Aes256, U32>::new(key.as_bytes().into()),
            stash: HashMap::new(),
            remember: true,
            iv_source: None,
        }
    }

    /// A cipher that only decrypts for output: it does not remember IVs,
    /// which saves work and keeps no plaintext-keyed map alive.
    pub fn read_only(key: &DataKey) -> Self {
        let mut c = Cipher::new(key);
        c.remember = false;
        c
    }

    /// Replaces the random IV generator (known-answer tests only).
    pub fn with_iv_source(mut self, src: impl FnMut(&mut [u8; KEY_LEN]) + Send + 'static) -> Self {
        self.iv_source = Some(Box::new(src));
        self
    }

    /// The data key.
    pub fn key(&self) -> &DataKey {
        &self.key
    }

    /// Switches to a new data key but keeps the remembered IVs, as sops'
    /// `rotate` does (same IVs under a new key are safe).
    pub fn rekey(&mut self, key: &DataKey) {
        self.key = key.clone();
        self.gcm32 = AesGcm::<Aes256, U32>::new(key.as_bytes().into());
    }

    /// Forgets remembered IVs.
    pub fn clear_stash(&mut self) {
        self.stash.clear();
    }

    /// Encrypts one value. Empty strings and comments stay empty.
    pub fn encrypt(&mut self, plain: Plain<'_>, aad: &str) -> String {
        if matches!(plain, Plain::Str(b) | Plain::Comment(b) if b.is_empty()) {
            return String::new();
        }
        let bytes = plain.to_bytes();
        let key = StashKey {
            aad: aad.to_owned(),
            kind: plain.type_name(),
            plain: bytes.to_vec(),
        };
        let iv = match self.stash.get(&key) {
            Some(iv) => *iv,
            None => {
                let mut iv = [0u8; KEY_LEN];
                match &mut self.iv_source {
                    Some(src) => src(&mut iv),
                    None => rand::rngs::OsRng.fill_bytes(&mut iv),
                }
                iv
            }
        };
        let sealed = self
            .gcm32
            .encrypt(
                (&iv).into(),
                Payload {
                    msg: &bytes,
                    aad: aad.as_bytes(),
                },
            )
            // AES-GCM encryption only fails for messages over 64 GiB.
            .expect("AES-GCM encryption of an in-memory value cannot fail");
        let (data, tag) = sealed.split_at(sealed.len() - TAG_LEN);
        format!(
            "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{}]",
            B64.encode(data),
            B64.encode(iv),
            B64.encode(tag),
            plain.type_name()
        )
    }

    /// Decrypts one `ENC[…]` value to a typed tree value; `""` stays `""`.
    pub fn decrypt(&mut self, value: &str, aad: &str) -> Result<Value, ValueError> {
        if value.is_empty() {
            return Ok(Value::Str(Text::default()));
        }
        let parsed = EncryptedValue::parse(value)?;
        let (out, kind, plain) = open_value(&self.key, &self.gcm32, &parsed, aad)?;
        if self.remember && parsed.iv.len() == KEY_LEN {
            let mut iv = [0u8; KEY_LEN];
            iv.copy_from_slice(&parsed.iv);
            let canonical = Plain::of(&out).map(|p| p.to_bytes()).unwrap_or_default();
            // Re-encrypting writes the canonical form (`5` for a stored
            // `05`): its IV may only be reused when those are the very bytes
            // it sealed, or GCM would see one IV with two plaintexts.
            if canonical.as_slice() != plain.as_slice() {
                return Ok(out);
            }
            self.stash.insert(
                StashKey {
                    aad: aad.to_owned(),
                    kind,
                    plain: canonical.to_vec(),
                },
                iv,
            );
        }
        Ok(out)
    }

    /// Whether decrypted values' IVs are kept for re-encryption.
    pub fn remembers(&self) -> bool {
        self.remember
    }

    /// Decrypts many `(value, aad)` pairs on all cores, in order, exactly as
    /// [`Cipher::decrypt`] would one by one, without remembering IVs (for
    /// read-only ciphers: large files spend most of their time here).
    pub fn decrypt_many(&self, jobs: &[(&str, &str)]) -> Vec<Result<Value, ValueError>> {
        use rayon::prelude::*;
        let (key, gcm32) = (&self.key, &self.gcm32);
        jobs.par_iter()
            .map(|(value, aad)| {
                if value.is_empty() {
                    return Ok(Value::Str(Text::default()));
                }
                let parsed = EncryptedValue::parse(value)?;
                open_value(key, gcm32, &parsed, aad).map(|(v, _, _)| v)
            })
            .collect()
    }
}

/// Authenticates and decrypts one parsed value and converts the plaintext
/// to its declared type (with the type name to remember it under, and the
/// plaintext bytes as they were sealed).
fn open_value(
    key: &DataKey,
    gcm32: &AesGcm<Aes256, U32>,
    parsed: &EncryptedValue,
    aad: &str,
) -> Result<(Value, &'static str, Zeroizing<Vec<u8>>), ValueError> {
    let plain = Zeroizing::new(open(key, gcm32, parsed, aad)?);
    let (out, kind): (Value, &'static str) = match parsed.kind {
        "str" => (Value::Str(Text::new(plain.to_vec())), "str"),
        "comment" => (Value::Comment(Text::new(plain.to_vec())), "comment"),
        "int" => (
            Value::Int(
                std::str::from_utf8(&plain)
                    .ok()
                    .and_then(gonum::atoi)
                    .ok_or(ValueError::BadPlaintext("int"))?,
            ),
            "int",
        ),
        "float" => (
            Value::Float(
                std::str::from_utf8(&plain)
                    .ok()
                    .and_then(gonum::parse_float)
                    .ok_or(ValueError::BadPlaintext("float"))?,
            ),
            "float",
        ),
        "bool" => (
            Value::Bool(
                std::str::from_utf8(&plain)
                    .ok()
                    .and_then(gonum::parse_bool)
                    .ok_or(ValueError::BadPlaintext("bool"))?,
            ),
            "bool",
        ),
        "time" => (
            Value::Time(
                std::str::from_utf8(&plain)
                    .ok()
                    .and_then(Timestamp::parse_rfc3339)
                    .ok_or(ValueError::BadPlaintext("time"))?,
            ),
            "time",
        ),
        // Legacy type that sops can still read.
        "bytes" => (Value::Str(Text::new(plain.to_vec())), "str"),
        _ => return Err(ValueError::UnknownType),
    };
    Ok((out, kind, plain))
}

fn open(
    key: &DataKey,
    gcm32: &AesGcm<Aes256, U32>,
    v: &EncryptedValue,
    aad: &str,
) -> Result<Vec<u8>, ValueError> {
    // Go concatenates data and tag and lets GCM split off the last 16 bytes.
    let mut ct = Vec::with_capacity(v.data.len() + v.tag.len());
    ct.extend_from_slice(&v.data);
    ct.extend_from_slice(&v.tag);
    if ct.len() < TAG_LEN {
        return Err(ValueError::Authentication);
    }
    let payload = Payload {
        msg: &ct,
        aad: aad.as_bytes(),
    };
    let key = key.as_bytes().into();
    let res = match v.iv.len() {
        32 => gcm32.decrypt(v.iv.as_slice().into(), payload),
        12 => AesGcm::<Aes256, U12>::new(key).decrypt(v.iv.as_slice().into(), payload),
        16 => AesGcm::<Aes256, U16>::new(key).decrypt(v.iv.as_slice().into(), payload),
        n => return Err(ValueError::IvLength(n)),
    };
    res.map_err(|_| ValueError::Authentication)
}

/// The parsed fields of an `ENC[…]` string.
#[derive(Debug)]
pub struct EncryptedValue {
    /// Ciphertext without the tag.
    pub data: Vec<u8>,
    /// The nonce.
    pub iv: Vec<u8>,
    /// The GCM tag.
    pub tag: Vec<u8>,
    /// `str`, `int`, `float`, `bool`, `time`, `comment` (or legacy `bytes`).
    pub kind: &'static str,
}

impl EncryptedValue {
    /// Parses like sops' anchored, greedy regex
    /// `^ENC\[AES256_GCM,data:(.+),iv:(.+),tag:(.+),type:(.+)\]`.
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let rest = s
            .strip_prefix("ENC[AES256_GCM,data:")
            .ok_or(ValueError::NotEncrypted)?;
        let close = rest.rfind(']').ok_or(ValueError::NotEncrypted)?;
        let body = &rest[..close];
        let t = rfind_short(body, ",type:").ok_or(ValueError::NotEncrypted)?;
        let kind = &body[t + 6..];
        let before = &body[..t];
        let g = rfind_short(before, ",tag:").ok_or(ValueError::NotEncrypted)?;
        let tag = &before[g + 5..];
        let before = &before[..g];
        let i = rfind_short(before, ",iv:").ok_or(ValueError::NotEncrypted)?;
        let iv = &before[i + 4..];
        let data = &before[..i];
        if [data, iv, tag, kind].iter().any(|f| f.is_empty()) {
            return Err(ValueError::NotEncrypted);
        }
        let kind = match kind {
            "str" => "str",
            "int" => "int",
            "float" => "float",
            "bool" => "bool",
            "time" => "time",
            "comment" => "comment",
            "bytes" => "bytes",
            _ => return Err(ValueError::UnknownType),
        };
        Ok(EncryptedValue {
            data: B64.decode(data).map_err(|_| ValueError::Base64("data"))?,
            iv: B64.decode(iv).map_err(|_| ValueError::Base64("iv"))?,
            tag: B64.decode(tag).map_err(|_| ValueError::Base64("tag"))?,
            kind,
        })
    }
}

/// `haystack.rfind(needle)` for a short ASCII needle that usually sits near
/// the end: a plain backwards scan, without the set-up `str::rfind` does
/// for its two-way search (which showed up when reading 5,000-value files).
fn rfind_short(haystack: &str, needle: &str) -> Option<usize> {
    let (hay, needle) = (haystack.as_bytes(), needle.as_bytes());
    let first = *needle.first()?;
    let mut end = hay.len();
    // Jump between occurrences of the first byte (a comma: none in base64).
    while let Some(i) = hay[..end].iter().rposition(|&b| b == first) {
        if hay[i..].starts_with(needle) {
            return Some(i);
        }
        end = i;
    }
    None
}

/// True if `s` looks like an encrypted sops value.
pub fn is_encrypted_value(s: &str) -> bool {
    s.starts_with("ENC[AES256_GCM,data:")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_cipher() -> Cipher {
        let key: Vec<u8> = (0u8..32).collect();
        let mut n = 1u8;
        Cipher::new(&DataKey::from_slice(&key).unwrap()).with_iv_source(move |iv| {
            n += 1;
            *iv = [n; 32];
        })
    }

    #[test]
    fn rfind_short_matches_rfind() {
        for hay in [
            "",
            ",",
            ",iv:",
            "a,iv:b,iv:c",
            "é,tag:ü",
            ",type:str",
            "x,typ",
            ",i,iv:,,iv",
        ] {
            for needle in [",iv:", ",tag:", ",type:", ",", "iv"] {
                assert_eq!(
                    rfind_short(hay, needle),
                    hay.rfind(needle),
                    "{hay} {needle}"
                );
            }
        }
    }

    // The deterministic vector from research/sops-format.md §11, validated
    // against the real sops binary.
    #[test]
    fn known_answer() {
        let mut c = vector_cipher();
        assert_eq!(
            c.encrypt(Plain::Str(b"hello"), "a:"),
            "ENC[AES256_GCM,data:Bx6VKSU=,iv:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=,tag:OklkUWAgxu00y4e5JhXG4Q==,type:str]"
        );
    }

    #[test]
    fn round_trip_and_stash() {
        let mut c = vector_cipher();
        let e = c.encrypt(Plain::Float(1.5), "x:y:");
        assert_eq!(c.decrypt(&e, "x:y:").unwrap(), Value::Float(1.5));
        // Same plaintext and AAD: the stash gives the same ciphertext.
        assert_eq!(c.encrypt(Plain::Float(1.5), "x:y:"), e);
        // Different AAD fails authentication.
        assert_eq!(c.decrypt(&e, "x:"), Err(ValueError::Authentication));
        assert_eq!(c.encrypt(Plain::Str(b""), "x:"), "");
    }

    fn iv_of(enc: &str) -> &str {
        enc.split(",iv:").nth(1).unwrap().split(',').next().unwrap()
    }

    #[test]
    fn non_canonical_plaintext_never_reuses_its_iv() {
        let mut c = vector_cipher();
        // A stored `05` of type int decrypts to 5, which re-encrypts as `5`:
        // the old IV must not seal the new bytes.
        let stored = c
            .encrypt(Plain::Str(b"05"), "n:")
            .replace("type:str", "type:int");
        assert_eq!(c.decrypt(&stored, "n:").unwrap(), Value::Int(5));
        let again = c.encrypt(Plain::Int(5), "n:");
        assert_ne!(iv_of(&again), iv_of(&stored));
        // A canonical one keeps its IV (and so its ciphertext).
        let canonical = c.encrypt(Plain::Int(7), "m:");
        c.clear_stash();
        c.decrypt(&canonical, "m:").unwrap();
        assert_eq!(c.encrypt(Plain::Int(7), "m:"), canonical);
    }

    #[test]
    fn malformed_values() {
        let mut c = vector_cipher();
        assert_eq!(c.decrypt("hello", "a:"), Err(ValueError::NotEncrypted));
        assert_eq!(
            c.decrypt("ENC[AES256_GCM,data:!!,iv:AA==,tag:AA==,type:str]", "a:"),
            Err(ValueError::Base64("data"))
        );
        assert_eq!(
            c.decrypt(
                "ENC[AES256_GCM,data:AA==,iv:AA==,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]",
                "a:"
            ),
            Err(ValueError::IvLength(1))
        );
        assert_eq!(
            c.decrypt("ENC[AES256_GCM,data:AA==,iv:AA==,tag:AA==,type:xx]", "a:"),
            Err(ValueError::UnknownType)
        );
    }
}
