//! Master keys: how the data key is wrapped for each recipient, and how it is
//! recovered from key groups (with Shamir's secret sharing across groups).
//!
//! Mechanism is separate from policy: [`KeyRing::unwrap`] answers for one
//! stanza ("not mine", "failed because…", or the plaintext), and
//! [`recover_data_key`] applies sops' group and threshold rules on top.

pub mod age;
pub mod clusterkey;
pub mod folder;
pub mod keyservice;
pub mod kms;
pub mod pgp;
mod pgp_rsa;
mod runtime;
pub mod shamir;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use zeroize::Zeroizing;

use crate::sops::cipher::DataKey;
use crate::sops::time::Timestamp;

pub use crate::sops::masterkey::{ForeignKind, KeyGroup, KmsKeyId, MasterKey};
pub use kms::KmsAccess;

/// What only the key backends can do with a metadata entry.
impl MasterKey {
    /// A new entry for a recipient, wrapping `secret` (data key or share).
    pub fn wrap(recipient: &Recipient, secret: &[u8]) -> crate::Result<MasterKey> {
        match recipient {
            Recipient::Age(r) => Ok(MasterKey::Age {
                recipient: r.clone(),
                enc: age::wrap(r, secret)?,
            }),
            Recipient::Pgp(fp) => Ok(MasterKey::Pgp {
                fp: fp.clone(),
                created_at: Timestamp::now_utc(),
                enc: pgp::wrap(fp, secret)?,
            }),
            Recipient::Kms(k) => Ok(MasterKey::Kms {
                key: k.clone(),
                created_at: Timestamp::now_utc(),
                enc: kms::encrypt(k, secret)?,
            }),
        }
    }

    /// The recipient this entry was made for, if kustos can wrap for it.
    pub fn recipient(&self) -> Option<Recipient> {
        match self {
            MasterKey::Age { recipient, .. } => Some(Recipient::Age(recipient.clone())),
            MasterKey::Pgp { fp, .. } => Some(Recipient::Pgp(fp.clone())),
            MasterKey::Kms { key, .. } => Some(Recipient::Kms(key.clone())),
            MasterKey::Foreign { .. } => None,
        }
    }
}

/// Someone a data key can be wrapped for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recipient {
    /// An age recipient string.
    Age(String),
    /// An OpenPGP fingerprint.
    Pgp(String),
    /// An AWS KMS key (with its role, context and profile).
    Kms(KmsKeyId),
}

impl Recipient {
    /// The string sops shows for it (its `ToString`).
    pub fn name(&self) -> String {
        match self {
            Recipient::Age(s) | Recipient::Pgp(s) => s.clone(),
            Recipient::Kms(k) => k.name(),
        }
    }

    /// An OpenPGP fingerprint as sops stores it: spaces removed.
    pub fn pgp(fp: &str) -> Recipient {
        Recipient::Pgp(fp.chars().filter(|c| !c.is_whitespace()).collect())
    }
}

/// An entry for `r` whose wrapped key is still to be filled in.
pub fn placeholder(r: &Recipient) -> MasterKey {
    match r {
        Recipient::Age(s) => MasterKey::Age {
            recipient: s.clone(),
            enc: String::new(),
        },
        Recipient::Pgp(fp) => MasterKey::Pgp {
            fp: fp.clone(),
            created_at: Timestamp::now_utc(),
            enc: String::new(),
        },
        Recipient::Kms(k) => MasterKey::Kms {
            key: k.clone(),
            created_at: Timestamp::now_utc(),
            enc: String::new(),
        },
    }
}

pub use crate::error::{DataKeyError, UnwrapError};

/// Where identities come from; see [`KeyRing::from_env`].
#[derive(Clone, Debug, Default)]
pub struct KeySources {
    /// `--keys-dir` / `KUSTOS_KEYS_DIR`: `*.agekey` and `*.asc` files.
    pub keys_dirs: Vec<PathBuf>,
    /// Read sops' environment variables and default files.
    pub use_env: bool,
    /// Fall back to the `gpg` binary for PGP fingerprints with no key file.
    pub gpg_fallback: bool,
    /// Use RSA keys aws-lc-rs does not take (under 2048 bits, as in sops'
    /// own test key) with Sequoia's variable-time RSA, warning on stderr
    /// each time. Only for a person decrypting their own files: a timing
    /// attack needs many decryptions an attacker can time, which a
    /// service (`serve`, `render`) gives and a command run does not.
    pub weak_rsa: bool,
    /// Load `AGE-PLUGIN-…` identities and run their `age-plugin-NAME`
    /// binaries. Only for a person at their own machine: a plugin is a
    /// program chosen by a line of a key file, and may ask questions.
    pub age_plugins: bool,
    /// Which AWS KMS keys may be used (none by default).
    pub kms: KmsAccess,
}

/// The identities available to unwrap data keys, loaded lazily.
pub struct KeyRing {
    sources: KeySources,
    age: OnceLock<age::AgeIdentities>,
    pgp: OnceLock<pgp::PgpKeys>,
    kms_allowed: OnceLock<kms::AllowList>,
    kms_cache: kms::KmsCache,
    /// `--decryption-order`.
    pub decryption_order: Vec<String>,
    /// This process's keys and `--keyservice` services, in sops' order.
    pub services: keyservice::KeyServices,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl KeyRing {
    /// A key ring over the given sources.
    pub fn new(sources: KeySources) -> Self {
        KeyRing {
            sources,
            age: OnceLock::new(),
            pgp: OnceLock::new(),
            kms_allowed: OnceLock::new(),
            kms_cache: kms::KmsCache::default(),
            decryption_order: vec!["age".into(), "pgp".into()],
            services: keyservice::KeyServices::default(),
        }
    }

    /// Only the keys in one folder (the sidecar's tenant scoping).
    pub fn from_dir(dir: &Path) -> Self {
        Self::new(KeySources {
            keys_dirs: vec![dir.to_path_buf()],
            ..Default::default()
        })
    }

    /// sops' sources plus `--keys-dir` folders; any KMS key the AWS
    /// credentials can use, as with sops.
    pub fn from_env(keys_dirs: Vec<PathBuf>) -> Self {
        Self::new(KeySources {
            keys_dirs,
            use_env: true,
            gpg_fallback: true,
            weak_rsa: true,
            age_plugins: true,
            kms: KmsAccess::Any,
        })
    }

    /// The loaded age identities.
    pub fn age(&self) -> &age::AgeIdentities {
        self.age
            .get_or_init(|| age::AgeIdentities::load(&self.sources))
    }

    /// The loaded OpenPGP secret keys.
    pub fn pgp(&self) -> &pgp::PgpKeys {
        self.pgp.get_or_init(|| pgp::PgpKeys::load(&self.sources))
    }

    /// The KMS keys the ring's folders allow (`*.awskms`), with
    /// [`KmsAccess::Listed`]; empty otherwise.
    pub fn kms_allowed(&self) -> &kms::AllowList {
        self.kms_allowed.get_or_init(|| match self.sources.kms {
            KmsAccess::Listed => kms::AllowList::load(&self.sources.keys_dirs),
            KmsAccess::Off | KmsAccess::Any => kms::AllowList::default(),
        })
    }

    /// Number of identities (age and PGP, and listed KMS keys) that loaded.
    pub fn identity_count(&self) -> usize {
        self.age().len() + self.pgp().len() + self.kms_allowed().keys.len()
    }

    /// The plaintext of a KMS entry when this ring already has it, without
    /// calling KMS (checks of freshly written files use it).
    pub fn unwrap_cached(&self, key: &MasterKey) -> Option<Zeroizing<Vec<u8>>> {
        match key {
            MasterKey::Kms { key, enc, .. } => self.kms_cache.get(key, enc),
            _ => None,
        }
    }

    fn unwrap_kms(&self, key: &KmsKeyId, enc: &str) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        match self.sources.kms {
            KmsAccess::Off => {
                return Err(UnwrapError::Unsupported(
                    "kms keys are not enabled for this key ring (services need --allow-kms)".into(),
                ))
            }
            // Refused before any request: the sidecar's AWS identity may
            // well be able to use the key, for another tenant.
            KmsAccess::Listed if !self.kms_allowed().allows(key) => {
                let mut msg =
                    "this key (and role) is not listed in a *.awskms file of the keys folder"
                        .to_string();
                let problems = &self.kms_allowed().problems;
                if !problems.is_empty() {
                    msg.push_str(&format!(" ({})", problems.join("; ")));
                }
                return Err(UnwrapError::NoIdentity(msg));
            }
            KmsAccess::Any | KmsAccess::Listed => {}
        }
        self.kms_cache
            .get_or_fetch(key, enc, || kms::decrypt(key, enc))
    }

    /// Unwraps one stanza: with this process's keys, then (when they fail
    /// or the local service is off) with each `--keyservice`.
    pub fn unwrap(&self, key: &MasterKey) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        let local = if self.services.local {
            match self.unwrap_local(key) {
                Ok(k) => return Ok(k),
                Err(e) if self.services.remote.is_empty() => return Err(e),
                Err(e) => Some(e),
            }
        } else {
            None
        };
        self.services.unwrap_remote(key, local)
    }

    /// Unwraps one stanza with this process's keys only (what a key
    /// service serves: it never forwards).
    pub fn unwrap_local(&self, key: &MasterKey) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        match key {
            MasterKey::Age { enc, .. } => self.age().unwrap(enc),
            MasterKey::Pgp { fp, enc, .. } => self.pgp().unwrap(fp, enc, self.sources.gpg_fallback),
            MasterKey::Kms { key, enc, .. } => self.unwrap_kms(key, enc),
            MasterKey::Foreign { kind, .. } => Err(UnwrapError::Unsupported(format!(
                "{} keys are not supported by kustos",
                kind.field()
            ))),
        }
    }
}

/// Which library does which cryptography in this build, one line each
/// (`kustos --version --verbose`).
pub fn crypto_backends() -> Vec<String> {
    vec![
        "OpenPGP RSA decryption: aws-lc-rs (AWS-LC; constant time, blinded), \
         implicit rejection of bad PKCS #1 blocks with RustCrypto HMAC-SHA256"
            .into(),
        format!(
            "OpenPGP parsing and every other OpenPGP operation: Sequoia {} ({} backend)",
            sequoia_openpgp::VERSION,
            sequoia_openpgp::crypto::backend()
        ),
        "age: the age crate (X25519, ChaCha20-Poly1305; ssh-rsa identities with the rsa crate)"
            .into(),
        "SOPS values and MAC: RustCrypto aes-gcm and sha2".into(),
        if kms::AVAILABLE {
            "AWS KMS: the AWS SDK for Rust (KMS encrypts and decrypts; TLS by rustls on aws-lc-rs)"
                .into()
        } else {
            "AWS KMS: not in this build (feature aws-kms)".into()
        },
    ]
}

/// Recovers the data key from the key groups (sops' `GetDataKey`).
pub fn recover_data_key(
    groups: &[KeyGroup],
    threshold: usize,
    ring: &KeyRing,
) -> Result<DataKey, DataKeyError> {
    let needed = if groups.len() > 1 {
        if threshold == 0 {
            groups.len()
        } else {
            threshold
        }
    } else {
        1
    };
    let mut report = DataKeyError {
        groups: vec![Vec::new(); groups.len()],
        threshold: needed,
        recovered: 0,
        other: None,
    };
    let mut parts: Vec<Zeroizing<Vec<u8>>> = Vec::new();
    for (gi, group) in groups.iter().enumerate() {
        if parts.len() >= needed {
            break;
        }
        let mut order = order_indices(group, &ring.decryption_order);
        for at in 0..order.len() {
            if at == 0 || !is_age(&group[order[at - 1]]) {
                prefer_claimed_age(group, &mut order[at..], ring);
            }
            let key = &group[order[at]];
            match ring.unwrap(key) {
                Ok(part) => {
                    parts.push(part);
                    break;
                }
                Err(e) => report.groups[gi].push((key.type_id().into(), key.name(), e)),
            }
        }
    }
    report.recovered = parts.len();
    if parts.len() < needed {
        return Err(report);
    }
    let key_bytes = if groups.len() > 1 {
        match shamir::combine(&parts) {
            Ok(k) => k,
            Err(e) => {
                report.other = Some(e);
                return Err(report);
            }
        }
    } else {
        parts.pop().unwrap_or_default()
    };
    DataKey::from_slice(&key_bytes).ok_or_else(|| DataKeyError {
        other: Some(format!(
            "the unwrapped data key has {} bytes instead of 32",
            key_bytes.len()
        )),
        ..report
    })
}

/// An entry for `recipient` holding `enc` wrapped elsewhere (by a key
/// service), or to be unwrapped for one.
pub fn with_enc(recipient: &Recipient, enc: String) -> MasterKey {
    match recipient {
        Recipient::Age(r) => MasterKey::Age {
            recipient: r.clone(),
            enc,
        },
        Recipient::Pgp(fp) => MasterKey::Pgp {
            fp: fp.clone(),
            created_at: Timestamp::now_utc(),
            enc,
        },
        Recipient::Kms(k) => MasterKey::Kms {
            key: k.clone(),
            created_at: Timestamp::now_utc(),
            enc,
        },
    }
}

/// Wraps a data key for every key of every group (splitting it with Shamir
/// when there are several groups), as sops' `UpdateMasterKeys` does.
pub fn wrap_data_key(
    groups: &mut [KeyGroup],
    threshold: &mut usize,
    key: &DataKey,
    services: &keyservice::KeyServices,
) -> crate::Result<()> {
    if groups.is_empty() {
        return Err(crate::Error::NoEncryptionKeys(
            "no key groups: give at least one age recipient or PGP fingerprint".into(),
        ));
    }
    let parts: Vec<Zeroizing<Vec<u8>>> = if groups.len() == 1 {
        vec![Zeroizing::new(key.as_bytes().to_vec())]
    } else {
        if *threshold == 0 {
            *threshold = groups.len();
        }
        if *threshold > groups.len() {
            return Err(crate::Error::NoEncryptionKeys(format!(
                "the Shamir threshold {} is larger than the number of key groups {}",
                threshold,
                groups.len()
            )));
        }
        shamir::split(key.as_bytes(), groups.len(), *threshold)
            .map_err(crate::Error::EncryptTree)?
    };
    for (group, part) in groups.iter_mut().zip(parts.iter()) {
        if group.is_empty() {
            return Err(crate::Error::NoEncryptionKeys(
                "Could not generate data key: [empty key group provided]".into(),
            ));
        }
        for mk in group.iter_mut() {
            if let Some(r) = mk.recipient() {
                *mk = services.wrap(&r, part)?;
            }
        }
    }
    Ok(())
}

/// Indices of a group sorted by the decryption order (stable).
fn is_age(key: &MasterKey) -> bool {
    matches!(key, MasterKey::Age { .. })
}

/// When `order` starts with a run of several age entries, moves those whose
/// recipient a loaded identity file claims to the front of the run (stable
/// otherwise): each stanza tried for nothing costs an X25519 operation, and
/// teams list many recipients. Called only when the run is reached, so age
/// identities are not loaded for a group another key type opens first.
fn prefer_claimed_age(group: &KeyGroup, order: &mut [usize], ring: &KeyRing) {
    let run = order.iter().take_while(|&&i| is_age(&group[i])).count();
    if run < 2 {
        return;
    }
    let identities = ring.age();
    order[..run].sort_by_key(|&i| match &group[i] {
        MasterKey::Age { recipient, .. } => !identities.claims(recipient),
        _ => true,
    });
}

fn order_indices(group: &KeyGroup, order: &[String]) -> Vec<usize> {
    let prio = |k: &MasterKey| {
        order
            .iter()
            .position(|o| o == k.type_id())
            .unwrap_or(order.len())
    };
    let mut idx: Vec<usize> = (0..group.len()).collect();
    idx.sort_by_key(|&i| prio(&group[i]));
    idx
}

#[cfg(test)]
mod tests {
    use super::*;
    use ::age::secrecy::ExposeSecret;

    #[test]
    fn claimed_age_recipients_are_tried_first() {
        let ids: Vec<::age::x25519::Identity> = (0..3)
            .map(|_| ::age::x25519::Identity::generate())
            .collect();
        let recipients: Vec<String> = ids.iter().map(|i| i.to_public().to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("keys.agekey"),
            format!(
                "# public key: {}\n{}\n",
                recipients[2],
                ids[2].to_string().expose_secret()
            ),
        )
        .unwrap();
        let data_key = [9u8; 32];
        let mut group: KeyGroup = recipients
            .iter()
            .map(|r| MasterKey::Age {
                recipient: r.clone(),
                enc: age::wrap(r, &data_key).unwrap(),
            })
            .collect();

        // Ours is last in the file; it is tried first.
        let ring = KeyRing::from_dir(dir.path());
        let mut order = vec![0, 1, 2];
        prefer_claimed_age(&group, &mut order, &ring);
        assert_eq!(order, [2, 0, 1]);
        let key = recover_data_key(std::slice::from_ref(&group), 0, &ring).unwrap();
        assert_eq!(key.as_bytes(), &data_key);

        // A run of one, or another key type first: nothing to reorder, and
        // the age identities are not even loaded.
        group.insert(
            0,
            MasterKey::Foreign {
                kind: ForeignKind::GcpKms,
                fields: Default::default(),
            },
        );
        let ring = KeyRing::from_dir(dir.path());
        let mut order = vec![0, 1, 2, 3];
        prefer_claimed_age(&group, &mut order, &ring);
        assert_eq!(order, [0, 1, 2, 3]);
        assert!(ring.age.get().is_none());
    }
}
