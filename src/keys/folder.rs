//! Keys folders as a mounted Kubernetes Secret holds them, in two layouts:
//!
//! * flat: `KEYS/*.agekey`, `KEYS/*.asc`, `KEYS/*.awskms` — one key ring
//!   for everything;
//! * per tenant: `KEYS/<namespace>/*.agekey` … — tenant `ns` gets only the
//!   keys in `KEYS/ns`; the top-level files are *platform keys*, added to a
//!   tenant's ring only when asked to (`--platform-keys`).
//!
//! `render`, `cmp generate` and the sidecar all pick keys this way, so a
//! tenant never holds another tenant's keys in any of them.

use std::path::{Path, PathBuf};

use super::{KeyRing, KeySources};
use crate::{Error, Result};

/// Whether `s` is a valid Kubernetes namespace name (an RFC 1123 label).
pub fn valid_namespace(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Why no key ring may serve a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RingError {
    /// Tenant folders exist and no tenant was named.
    #[error("a tenant is required: keys are per tenant namespace")]
    TenantRequired,
    /// The named tenant has no keys folder.
    #[error("tenant {0:?} is not allowed: it has no keys")]
    UnknownTenant(String),
    /// The name is not a namespace name.
    #[error("invalid tenant: it must be a Kubernetes namespace name")]
    InvalidTenant,
}

/// A key ring that reads only `dirs` (no environment, no gpg agent), age
/// keys first. With `allow_kms`, the AWS KMS keys listed in `*.awskms`
/// files of those folders are usable too (with the process's AWS
/// credentials); no other KMS key is.
pub fn folder_ring(dirs: Vec<PathBuf>, allow_kms: bool) -> KeyRing {
    let mut ring = KeyRing::new(KeySources {
        keys_dirs: dirs,
        kms: if allow_kms {
            super::KmsAccess::Listed
        } else {
            super::KmsAccess::Off
        },
        ..Default::default()
    });
    ring.decryption_order = vec!["age".into(), "pgp".into()];
    ring
}

/// The tenant sub-folders of a keys folder.
#[derive(Debug, Default)]
pub struct Layout {
    /// `(namespace, folder)`, sorted by namespace.
    pub tenants: Vec<(String, PathBuf)>,
    /// Sub-folders whose names are not namespace names (ignored).
    pub ignored: Vec<String>,
}

impl Layout {
    /// Reads the sub-folders of `root` (hidden ones, like kubelet's
    /// `..data`, are skipped).
    pub fn read(root: &Path) -> Result<Layout> {
        let rd = std::fs::read_dir(root).map_err(|e| Error::io(root.display(), e))?;
        let mut l = Layout::default();
        for e in rd {
            let e = e.map_err(|e| Error::io(root.display(), e))?;
            let path = e.path();
            let Some(name) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            if name.starts_with('.') || !path.is_dir() {
                continue;
            }
            if valid_namespace(&name) {
                l.tenants.push((name, path));
            } else {
                l.ignored.push(name);
            }
        }
        l.tenants.sort();
        l.ignored.sort();
        Ok(l)
    }

    /// Whether keys are per tenant.
    pub fn per_tenant(&self) -> bool {
        !self.tenants.is_empty()
    }

    /// The folders whose keys `tenant` may use: its own (plus `root` with
    /// `platform_keys`) in the per-tenant layout, `root` in the flat one.
    pub fn dirs_for(
        &self,
        root: &Path,
        tenant: Option<&str>,
        platform_keys: bool,
    ) -> std::result::Result<Vec<PathBuf>, RingError> {
        if let Some(t) = tenant {
            if !valid_namespace(t) {
                return Err(RingError::InvalidTenant);
            }
        }
        if !self.per_tenant() {
            return Ok(vec![root.to_path_buf()]);
        }
        let t = tenant.ok_or(RingError::TenantRequired)?;
        let (_, dir) = self
            .tenants
            .iter()
            .find(|(n, _)| n == t)
            .ok_or_else(|| RingError::UnknownTenant(t.to_string()))?;
        let mut dirs = vec![dir.clone()];
        if platform_keys {
            dirs.push(root.to_path_buf());
        }
        Ok(dirs)
    }
}

/// The key ring `tenant` may use from the keys folder `root`.
pub fn tenant_ring(
    root: &Path,
    tenant: Option<&str>,
    platform_keys: bool,
    allow_kms: bool,
) -> Result<KeyRing> {
    let layout = Layout::read(root)?;
    let dirs = layout
        .dirs_for(root, tenant, platform_keys)
        .map_err(|e| Error::Key(format!("{}: {e}", root.display())))?;
    Ok(folder_ring(dirs, allow_kms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces() {
        assert!(valid_namespace("tenant-a"));
        assert!(valid_namespace("a1"));
        assert!(!valid_namespace("_platform"));
        assert!(!valid_namespace("-a"));
        assert!(!valid_namespace("A"));
        assert!(!valid_namespace(&"a".repeat(64)));
        assert!(!valid_namespace("a/b"));
        assert!(!valid_namespace(".."));
    }

    #[test]
    fn a_tenant_gets_its_own_folder_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir(root.join("team-a")).unwrap();
        std::fs::create_dir(root.join("team-b")).unwrap();
        std::fs::create_dir(root.join("Not_A_Namespace")).unwrap();
        let l = Layout::read(root).unwrap();
        assert!(l.per_tenant());
        assert_eq!(l.ignored, vec!["Not_A_Namespace".to_string()]);
        assert_eq!(
            l.dirs_for(root, Some("team-a"), false).unwrap(),
            vec![root.join("team-a")]
        );
        assert_eq!(
            l.dirs_for(root, Some("team-a"), true).unwrap(),
            vec![root.join("team-a"), root.to_path_buf()]
        );
        assert_eq!(
            l.dirs_for(root, None, false),
            Err(RingError::TenantRequired)
        );
        assert_eq!(
            l.dirs_for(root, Some("team-c"), false),
            Err(RingError::UnknownTenant("team-c".into()))
        );
        assert_eq!(
            l.dirs_for(root, Some("../team-a"), false),
            Err(RingError::InvalidTenant)
        );
        let flat = tempfile::tempdir().unwrap();
        let l = Layout::read(flat.path()).unwrap();
        assert_eq!(
            l.dirs_for(flat.path(), Some("x"), false).unwrap(),
            vec![flat.path().to_path_buf()]
        );
    }

    // Both refusals come before any request: the ARNs below name no real
    // key, and no endpoint is set.
    #[test]
    fn folder_rings_use_no_kms_key_unless_allowed_and_listed() {
        use crate::keys::{MasterKey, UnwrapError};
        use crate::sops::time::Timestamp;
        let d = tempfile::tempdir().unwrap();
        let listed = "arn:aws:kms:us-east-1:111122223333:key/listed";
        std::fs::write(d.path().join("team.awskms"), format!("{listed}\n")).unwrap();
        let entry = |arn: &str| MasterKey::Kms {
            key: crate::keys::kms::key_from_arn(arn, &[], ""),
            created_at: Timestamp::now_utc(),
            enc: "AQIDBA==".into(),
        };
        let off = folder_ring(vec![d.path().to_path_buf()], false);
        assert!(matches!(
            off.unwrap(&entry(listed)),
            Err(UnwrapError::Unsupported(_))
        ));
        assert!(off.kms_allowed().keys.is_empty());
        let on = folder_ring(vec![d.path().to_path_buf()], true);
        assert_eq!(on.kms_allowed().keys.len(), 1);
        let other = "arn:aws:kms:us-east-1:111122223333:key/other";
        assert!(matches!(
            on.unwrap(&entry(other)),
            Err(UnwrapError::NoIdentity(_))
        ));
        let with_role = format!("{listed}+arn:aws:iam::111122223333:role/r");
        assert!(matches!(
            on.unwrap(&entry(&with_role)),
            Err(UnwrapError::NoIdentity(_))
        ));
        // A line that is no ARN is named when a key is refused.
        std::fs::write(d.path().join("bad.awskms"), "arn:aws:kms:nope\n").unwrap();
        let on = folder_ring(vec![d.path().to_path_buf()], true);
        let Err(UnwrapError::NoIdentity(msg)) = on.unwrap(&entry(other)) else {
            panic!("an unlisted key was not refused");
        };
        assert!(msg.contains("bad.awskms:1: not a KMS key ARN"), "{msg}");
    }
}
