//! Plaintext only after a verified MAC.
//!
//! kustomize changes objects (namespaces, labels, patches), so a MAC can
//! only be checked on the source files, before the build. Every SOPS
//! document of every resource and patch file the build reads is verified
//! there, in any document position, and remembered by its encrypted MAC
//! (unique to one encryption). After the build, an object that still
//! carries SOPS data is decrypted only when its MAC is one of those, every
//! ciphertext it holds came from that source, and then with the source's
//! own metadata and data key. Anything else is refused: a render never
//! falls back to decrypting without a MAC.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zeroize::Zeroizing;

use crate::formats::{self, Format};
use crate::keys::{self, KeyRing};
use crate::sops::value::{Key, Map, Value};
use crate::sops::{metadata, tree, Cipher, DataKey, Metadata, Tree};

/// The annotation that keeps kustomize-controller from decrypting an object.
pub const DECRYPT_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/decrypt";

/// Why a source or an object was refused.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A SOPS document of a file the build reads did not verify.
    #[error("{file}: {source}")]
    Source {
        /// The file, relative to the root.
        file: String,
        /// Why (MAC mismatch, no key, malformed metadata, …).
        source: crate::Error,
    },
    /// An object of the build output carries SOPS data no verified source has.
    #[error("{object}: carries SOPS data that does not come from a verified source file (only resource and patch files named by a kustomization are verified)")]
    Unverified {
        /// `Kind/name`.
        object: String,
    },
    /// An object mixes ciphertext from elsewhere into a verified document.
    #[error("{object}: holds encrypted values its verified source does not have")]
    ForeignCiphertext {
        /// `Kind/name`.
        object: String,
    },
    /// Decryption of an object failed.
    #[error("{object}: {source}")]
    Object {
        /// `Kind/name`.
        object: String,
        /// Why.
        source: crate::Error,
    },
}

impl VerifyError {
    /// The library error underneath, if any.
    pub fn cause(&self) -> Option<&crate::Error> {
        match self {
            VerifyError::Source { source, .. } | VerifyError::Object { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A source document whose MAC verified.
pub struct Verified {
    /// The file it came from, relative to the root.
    pub file: PathBuf,
    /// Its `metadata.namespace`, which its MAC covers.
    pub namespace: Option<String>,
    metadata: Metadata,
    key: DataKey,
    ciphertexts: HashSet<String>,
}

/// The verified sources of one render and the data keys they unwrapped.
pub struct Sources<'a> {
    ring: &'a KeyRing,
    by_mac: HashMap<String, Arc<Verified>>,
    keys: HashMap<[u8; 32], DataKey>,
}

/// Marker bytes kustomize-controller looks for before decrypting a file of
/// a format.
pub fn has_marker(data: &[u8], f: Format) -> bool {
    let needle: &[u8] = match f {
        Format::Yaml => b"mac: ENC[",
        Format::Json | Format::Binary => b"\"mac\": \"ENC[",
        Format::Dotenv => b"sops_mac=ENC[",
        Format::Ini => b"[sops]",
    };
    contains(data, needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Whether the bytes look like they hold SOPS data in any store.
fn has_any_marker(data: &[u8]) -> bool {
    contains(data, b"ENC[AES256_GCM,")
}

/// An object's annotation.
pub fn annotation<'m>(m: &'m Map, key: &str) -> Option<&'m str> {
    m.get("metadata")?
        .as_map()?
        .get("annotations")?
        .as_map()?
        .get(key)?
        .as_str()
}

/// `metadata.namespace` of an object.
pub fn namespace_of(m: &Map) -> Option<&str> {
    m.get("metadata")?.as_map()?.get("namespace")?.as_str()
}

fn decryption_disabled(m: &Map) -> bool {
    annotation(m, DECRYPT_ANNOTATION) == Some("Disabled")
}

/// Every `ENC[…]` string of a branch (values, and comments of either kind).
fn collect_ciphertexts(m: &Map, out: &mut HashSet<String>) {
    for item in &m.0 {
        if let Key::Comment(t) = &item.key {
            if let Some(s) = t.as_str().filter(|s| s.starts_with("ENC[")) {
                out.insert(s.to_string());
            }
        }
        collect_value(&item.value, out);
    }
}

fn collect_value(v: &Value, out: &mut HashSet<String>) {
    match v {
        Value::Str(t) | Value::Comment(t) => {
            if let Some(s) = t.as_str().filter(|s| s.starts_with("ENC[")) {
                out.insert(s.to_string());
            }
        }
        Value::Map(m) => collect_ciphertexts(m, out),
        Value::Seq(items) => items.iter().for_each(|i| collect_value(i, out)),
        _ => {}
    }
}

impl<'a> Sources<'a> {
    /// No verified source yet; data keys are unwrapped with `ring`.
    pub fn new(ring: &'a KeyRing) -> Self {
        Sources {
            ring,
            by_mac: HashMap::new(),
            keys: HashMap::new(),
        }
    }

    /// The data key of `md`, unwrapped once per render.
    fn data_key(&mut self, md: &Metadata) -> crate::Result<DataKey> {
        let h = md.key_hash();
        if let Some(k) = self.keys.get(&h) {
            return Ok(k.clone());
        }
        let k = keys::recover_data_key(&md.key_groups, md.shamir_threshold, self.ring)?;
        self.keys.insert(h, k.clone());
        Ok(k)
    }

    /// Verifies every SOPS document of a resource or patch stream.
    pub fn verify_stream(&mut self, file: &Path, data: &[u8]) -> Result<(), VerifyError> {
        let src = |e: crate::Error| VerifyError::Source {
            file: file.display().to_string(),
            source: e,
        };
        let docs = match formats::load_plain(Format::Yaml, data) {
            Ok(d) => d,
            // Files kustomize reads that hold no SOPS data are its business.
            Err(e) if has_any_marker(data) => return Err(src(e)),
            Err(_) => return Ok(()),
        };
        // sops writes one `sops` block into every document of a multi-document
        // file and one MAC over all of them: documents sharing a block are
        // verified together, every other one on its own.
        let mut groups: Vec<(Value, Vec<Map>)> = Vec::new();
        for mut d in docs {
            let Some(md) = d.remove("sops") else { continue };
            match groups.iter_mut().find(|(v, _)| *v == md) {
                Some((_, g)) => g.push(d),
                None => groups.push((md, vec![d])),
            }
        }
        for (md, branches) in groups {
            if branches.iter().any(decryption_disabled) {
                continue;
            }
            let metadata = metadata::from_value(&md).map_err(src)?;
            self.verify_group(file, metadata, branches).map_err(src)?;
        }
        Ok(())
    }

    fn verify_group(
        &mut self,
        file: &Path,
        metadata: Metadata,
        branches: Vec<Map>,
    ) -> crate::Result<()> {
        let key = self.data_key(&metadata)?;
        let mut ciphertexts = HashSet::new();
        branches
            .iter()
            .for_each(|b| collect_ciphertexts(b, &mut ciphertexts));
        let namespace = branches.first().and_then(namespace_of).map(String::from);
        let mut plain = branches;
        tree::decrypt(&mut plain, &metadata, &mut Cipher::read_only(&key), false)?;
        drop(plain);
        self.by_mac.insert(
            metadata.mac.clone(),
            Arc::new(Verified {
                file: file.to_path_buf(),
                namespace,
                metadata,
                key,
                ciphertexts,
            }),
        );
        Ok(())
    }

    /// Decrypts a whole file of a store, MAC verified (generator inputs and
    /// SOPS documents embedded in Secret data).
    pub fn decrypt_file(&mut self, data: &[u8], f: Format) -> crate::Result<Zeroizing<Vec<u8>>> {
        let mut t = formats::load_encrypted(f, data)?;
        let key = self.data_key(&t.metadata)?;
        tree::decrypt(
            &mut t.branches,
            &t.metadata,
            &mut Cipher::read_only(&key),
            false,
        )?;
        formats::emit_plain(f, &t.branches, &Default::default())
    }

    /// Decrypts an object of the build output that carries a `sops` block,
    /// in place, if it matches a verified source; returns that source.
    pub fn decrypt_object(
        &self,
        obj: &mut Map,
        name: &str,
    ) -> Result<Option<Arc<Verified>>, VerifyError> {
        let Some(sops) = obj.get("sops") else {
            return Ok(None);
        };
        let mac = sops
            .as_map()
            .and_then(|m| m.get("mac"))
            .and_then(Value::as_str)
            .unwrap_or("");
        let Some(v) = self.by_mac.get(mac).cloned() else {
            return Err(VerifyError::Unverified {
                object: name.to_string(),
            });
        };
        obj.remove("sops");
        let mut found = HashSet::new();
        collect_ciphertexts(obj, &mut found);
        if !found.is_subset(&v.ciphertexts) {
            return Err(VerifyError::ForeignCiphertext {
                object: name.to_string(),
            });
        }
        let mut t = Tree {
            branches: vec![std::mem::take(obj)],
            metadata: v.metadata.clone(),
        };
        // The MAC was verified on the source; kustomize changed the object since.
        tree::decrypt(
            &mut t.branches,
            &t.metadata,
            &mut Cipher::read_only(&v.key),
            true,
        )
        .map_err(|e| VerifyError::Object {
            object: name.to_string(),
            source: e,
        })?;
        *obj = t.branches.pop().unwrap_or_default();
        Ok(Some(v))
    }
}
