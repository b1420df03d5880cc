//! The sidecar's hot-reloading key store.
//!
//! Keys come from one folder, normally a mounted Kubernetes Secret. Two
//! layouts are understood:
//!
//! * flat: `keys/*.agekey`, `keys/*.asc` — one key ring, used by requests
//!   that name no tenant;
//! * per tenant: `keys/<namespace>/*.agekey` … — a request for tenant `ns`
//!   gets only `ns`'s keys; the top-level files are *platform keys*, added
//!   to every tenant's ring only when asked to (`--platform-keys`).
//!
//! kubelet updates a Secret volume atomically: the files are symlinks into
//! `..data`, itself a symlink to a timestamped folder, and an update writes
//! a new timestamped folder then renames a new `..data` link over the old
//! one. The store reads through the resolved `..data` folder, so one load
//! never mixes two versions, and polls a cheap fingerprint of it (link
//! target, names, sizes, mtimes, inodes) to notice changes.
//!
//! Each load builds a complete [`Generation`]: every key is read and parsed
//! eagerly, so a broken update (an invalid or unreadable key file, a tenant
//! folder without a usable key, no key at all) is detected before anything
//! is swapped; the old generation then stays in service. Requests take an
//! `Arc` of the current generation, so a swap never disturbs them. Key
//! material lives in the age and OpenPGP identity types, which zeroize it on
//! drop, and files are read into zeroizing buffers.

use std::collections::{BTreeSet, HashMap};
use std::hash::Hasher;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use super::cache::DataKeyCache;
use crate::keys::folder::{folder_ring, Layout};
pub use crate::keys::folder::{valid_namespace, RingError};
use crate::keys::KeyRing;
use crate::{Error, Result};

/// The label of the top-level ring in metrics and messages; an underscore
/// can never start a namespace name, so it cannot collide with a tenant.
pub const PLATFORM: &str = "_platform";

/// One key ring and what it is for.
pub struct NamedRing {
    /// The tenant namespace, or [`PLATFORM`] for the top-level keys.
    pub name: String,
    /// The loaded identities.
    pub ring: KeyRing,
    /// How many identities (age and OpenPGP) it holds.
    pub identities: usize,
}

/// One complete, immutable set of key rings.
pub struct Generation {
    /// Counts up from 1 with every successful load.
    pub id: u64,
    /// Whether the folder has per-tenant sub-folders.
    pub tenant_mode: bool,
    /// The rings; index 0 is always the top-level (platform) ring.
    pub rings: Vec<NamedRing>,
    by_name: HashMap<String, usize>,
    /// Unwrapped data keys, keyed by (ring index, hash of the stanzas).
    pub cache: DataKeyCache,
}

impl Generation {
    /// The ring a request for `tenant` uses (an index into `rings`).
    pub fn ring_for(&self, tenant: Option<&str>) -> std::result::Result<usize, RingError> {
        match (self.tenant_mode, tenant) {
            (true, None) => Err(RingError::TenantRequired),
            (true, Some(t)) => self
                .by_name
                .get(t)
                .copied()
                .ok_or_else(|| RingError::UnknownTenant(t.to_string())),
            // Flat layout: one ring for everyone (a tenant name then only
            // scopes what render may output).
            (false, _) => Ok(0),
        }
    }

    /// Total identities over the rings that serve requests.
    pub fn usable_identities(&self) -> usize {
        if self.tenant_mode {
            self.rings.iter().skip(1).map(|r| r.identities).sum()
        } else {
            self.rings[0].identities
        }
    }

    /// Tenant names, sorted.
    pub fn tenants(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.rings.iter().skip(1).map(|r| r.name.as_str()).collect();
        v.sort_unstable();
        v
    }
}

/// What a reload check did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing changed since the last look.
    Unchanged,
    /// A new generation is in service.
    Reloaded(u64),
    /// The folder changed but could not be loaded; the old keys stay.
    Failed(String),
}

#[derive(Default)]
struct Seen {
    /// The fingerprint the current generation was loaded from.
    loaded: Option<u64>,
    /// The last fingerprint that failed to load (not retried until it changes).
    failed: Option<u64>,
}

/// The keys folder and the generation in service.
pub struct KeyStore {
    dir: PathBuf,
    platform_keys: bool,
    allow_kms: bool,
    cache_size: usize,
    current: RwLock<Option<Arc<Generation>>>,
    seen: Mutex<Seen>,
    last_id: AtomicU64,
}

impl KeyStore {
    /// A store over `dir`; nothing is loaded until [`KeyStore::check`].
    pub fn new(dir: PathBuf, platform_keys: bool, cache_size: usize) -> Self {
        KeyStore {
            dir,
            platform_keys,
            allow_kms: false,
            cache_size,
            current: RwLock::new(None),
            seen: Mutex::new(Seen::default()),
            last_id: AtomicU64::new(0),
        }
    }

    /// Lets the rings use the AWS KMS keys their folders list in
    /// `*.awskms` files.
    pub fn with_kms(mut self, allow: bool) -> Self {
        self.allow_kms = allow;
        self
    }

    /// The keys folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The generation in service, if any loaded.
    pub fn current(&self) -> Option<Arc<Generation>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Looks at the folder and loads it when it changed. Serialized by the
    /// caller (one reload task).
    pub fn check(&self) -> ReloadOutcome {
        // A load races with kubelet swapping `..data` at most a few times.
        let mut last_err = String::new();
        for _ in 0..3 {
            let fp = match fingerprint(&self.dir) {
                Ok(fp) => fp,
                Err(e) => {
                    last_err = e.to_string();
                    continue;
                }
            };
            {
                let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                if seen.loaded == Some(fp.hash) || seen.failed == Some(fp.hash) {
                    return ReloadOutcome::Unchanged;
                }
            }
            let id = self.last_id.load(Ordering::Relaxed) + 1;
            let result = load_generation(
                &fp.root,
                self.platform_keys,
                self.allow_kms,
                id,
                self.cache_size,
            );
            // Was the folder swapped while it was read? Then read it again.
            match fingerprint(&self.dir) {
                Ok(after) if after.hash == fp.hash => {}
                _ => {
                    if let Err(e) = &result {
                        last_err = e.to_string();
                    }
                    continue;
                }
            }
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            return match result {
                Ok(gen) => {
                    self.last_id.store(id, Ordering::Relaxed);
                    let old = self
                        .current
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .replace(Arc::new(gen));
                    // Data keys unwrapped with the old keys go with them.
                    if let Some(old) = old {
                        old.cache.clear();
                    }
                    seen.loaded = Some(fp.hash);
                    seen.failed = None;
                    ReloadOutcome::Reloaded(id)
                }
                Err(e) => {
                    seen.failed = Some(fp.hash);
                    ReloadOutcome::Failed(e.to_string())
                }
            };
        }
        let msg = if last_err.is_empty() {
            "the keys folder kept changing while it was read".to_string()
        } else {
            last_err
        };
        // The same problem again (a folder that stays missing) is reported once.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        h.write(msg.as_bytes());
        h.write_u8(0xfe);
        let key = h.finish();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.failed == Some(key) {
            return ReloadOutcome::Unchanged;
        }
        seen.failed = Some(key);
        ReloadOutcome::Failed(msg)
    }
}

struct Fingerprint {
    /// The folder to read: the resolved `..data` target, or the folder.
    root: PathBuf,
    hash: u64,
}

/// A cheap summary of the folder's state.
fn fingerprint(dir: &Path) -> Result<Fingerprint> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    let data = dir.join("..data");
    let root = match std::fs::read_link(&data) {
        Ok(target) => {
            h.write(target.as_os_str().as_encoded_bytes());
            dir.join(target)
        }
        Err(_) => dir.to_path_buf(),
    };
    let meta = std::fs::metadata(&root).map_err(|e| Error::io(root.display(), e))?;
    if !meta.is_dir() {
        return Err(Error::Other(format!("{}: not a folder", root.display())));
    }
    walk_fingerprint(&root, 0, &mut h)?;
    Ok(Fingerprint {
        root,
        hash: h.finish(),
    })
}

fn walk_fingerprint(dir: &Path, depth: usize, h: &mut impl Hasher) -> Result<()> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))?;
    let mut entries: Vec<(std::ffi::OsString, PathBuf)> = rd
        .filter_map(|e| e.ok())
        .map(|e| (e.file_name(), e.path()))
        .filter(|(n, _)| !n.as_encoded_bytes().starts_with(b"."))
        .collect();
    entries.sort();
    for (name, path) in entries {
        h.write(name.as_encoded_bytes());
        h.write_u8(0);
        if let Ok(target) = std::fs::read_link(&path) {
            h.write(target.as_os_str().as_encoded_bytes());
        }
        match std::fs::metadata(&path) {
            Ok(m) => {
                h.write_u64(m.len());
                h.write_u64(m.ino());
                h.write_i64(m.mtime());
                h.write_i64(m.mtime_nsec());
                h.write_u8(m.is_dir() as u8);
                if m.is_dir() && depth == 0 {
                    walk_fingerprint(&path, depth + 1, h)?;
                }
            }
            Err(_) => h.write_u8(0xff),
        }
    }
    Ok(())
}

fn load_ring(
    name: &str,
    dirs: Vec<PathBuf>,
    allow_kms: bool,
    problems: &mut BTreeSet<String>,
) -> NamedRing {
    let ring = folder_ring(dirs, allow_kms);
    // Load everything now, so errors show before the ring is used.
    let age = ring.age();
    let pgp = ring.pgp();
    let kms = ring.kms_allowed();
    problems.extend(age.problems.iter().cloned());
    problems.extend(pgp.problems.iter().cloned());
    problems.extend(kms.problems.iter().cloned());
    let identities = age.len() + pgp.len() + kms.keys.len();
    NamedRing {
        name: name.to_string(),
        ring,
        identities,
    }
}

/// Loads and checks one generation from `root`.
fn load_generation(
    root: &Path,
    platform_keys: bool,
    allow_kms: bool,
    id: u64,
    cache_size: usize,
) -> Result<Generation> {
    let Layout {
        tenants: tenant_dirs,
        ignored,
    } = Layout::read(root)?;
    let mut problems = BTreeSet::new();
    if !ignored.is_empty() {
        problems.insert(format!(
            "sub-folders that are not namespace names: {}",
            ignored.join(", ")
        ));
    }
    let mut rings = vec![load_ring(
        PLATFORM,
        vec![root.to_path_buf()],
        allow_kms,
        &mut problems,
    )];
    let tenant_mode = !tenant_dirs.is_empty();
    let mut by_name = HashMap::new();
    for (name, path) in tenant_dirs {
        let mut dirs = vec![path];
        if platform_keys {
            dirs.push(root.to_path_buf());
        }
        let r = load_ring(&name, dirs, allow_kms, &mut problems);
        if r.identities == 0 {
            problems.insert(format!(
                "tenant {name}: no usable key (*.agekey or *.asc{})",
                if allow_kms { ", or *.awskms" } else { "" }
            ));
        }
        by_name.insert(name, rings.len());
        rings.push(r);
    }
    let gen = Generation {
        id,
        tenant_mode,
        rings,
        by_name,
        cache: DataKeyCache::new(cache_size),
    };
    if !problems.is_empty() {
        let list: Vec<String> = problems.into_iter().collect();
        let mut msg = list.join("; ");
        if msg.len() > 1000 {
            let mut cut = 1000;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
            msg.push('…');
        }
        return Err(Error::Other(msg));
    }
    if gen.usable_identities() == 0 {
        return Err(Error::Other(format!(
            "{}: no usable key (*.agekey or *.asc{})",
            root.display(),
            if allow_kms { ", or *.awskms" } else { "" }
        )));
    }
    Ok(gen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    fn key() -> String {
        format!(
            "{}\n",
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret()
        )
    }

    #[test]
    fn flat_and_tenant_layouts() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("k.agekey"), key()).unwrap();
        let s = KeyStore::new(d.path().to_path_buf(), false, 8);
        assert_eq!(s.check(), ReloadOutcome::Reloaded(1));
        assert_eq!(s.check(), ReloadOutcome::Unchanged);
        let g = s.current().unwrap();
        assert!(!g.tenant_mode);
        assert_eq!(g.ring_for(None), Ok(0));

        std::fs::create_dir(d.path().join("team-a")).unwrap();
        std::fs::write(d.path().join("team-a/a.agekey"), key()).unwrap();
        assert_eq!(s.check(), ReloadOutcome::Reloaded(2));
        let g = s.current().unwrap();
        assert!(g.tenant_mode);
        assert_eq!(g.ring_for(None), Err(RingError::TenantRequired));
        assert_eq!(g.ring_for(Some("team-a")), Ok(1));
        assert_eq!(g.rings[1].identities, 1);
        assert!(matches!(
            g.ring_for(Some("team-b")),
            Err(RingError::UnknownTenant(_))
        ));

        // A broken key keeps the old generation.
        std::fs::write(d.path().join("team-a/b.agekey"), "AGE-SECRET-KEY-1XYZ\n").unwrap();
        match s.check() {
            ReloadOutcome::Failed(m) => {
                assert!(m.contains("invalid age secret key on line 1"), "{m}");
                assert!(!m.contains("XYZ"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(s.current().unwrap().id, 2);
        assert_eq!(s.check(), ReloadOutcome::Unchanged);
    }

    #[test]
    fn platform_keys_join_tenant_rings() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("p.agekey"), key()).unwrap();
        std::fs::create_dir(d.path().join("t")).unwrap();
        std::fs::write(d.path().join("t/t.agekey"), key()).unwrap();
        let s = KeyStore::new(d.path().to_path_buf(), true, 8);
        assert_eq!(s.check(), ReloadOutcome::Reloaded(1));
        let g = s.current().unwrap();
        assert_eq!(g.rings[1].identities, 2);
        let s = KeyStore::new(d.path().to_path_buf(), false, 8);
        s.check();
        assert_eq!(s.current().unwrap().rings[1].identities, 1);
    }

    #[test]
    fn a_missing_folder_is_reported_once() {
        let d = tempfile::tempdir().unwrap();
        let s = KeyStore::new(d.path().join("gone"), false, 8);
        assert!(matches!(s.check(), ReloadOutcome::Failed(_)));
        assert_eq!(s.check(), ReloadOutcome::Unchanged);
    }

    #[test]
    fn empty_folder_is_not_loaded() {
        let d = tempfile::tempdir().unwrap();
        let s = KeyStore::new(d.path().to_path_buf(), false, 8);
        assert!(matches!(s.check(), ReloadOutcome::Failed(_)));
        assert!(s.current().is_none());
    }
}
