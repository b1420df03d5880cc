//! The private folder a render builds in: only the files the build reads,
//! copied out of the root, readable by this process alone, removed when the
//! render returns.
//!
//! It lives under `$TMPDIR`, never in `/dev/shm`, which every container of a
//! pod shares; `deploy/` mounts a memory-backed `emptyDir` there per
//! container so plaintext stays in memory.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::kustomize::closure::Closure;
use crate::{Error, Result};

/// The largest file render reads (kustomize-controller's limit).
pub const MAX_FILE: u64 = 5 << 20;
/// The most bytes one render copies.
pub const MAX_TOTAL: u64 = 256 << 20;

/// Workspace folder names start with this.
pub const PREFIX: &str = "kustos-render-";

/// Workspaces older than this were left by a render that was killed
/// (SIGKILL skips every cleanup); no render runs this long.
const STALE: Duration = Duration::from_secs(3600);

/// A private folder holding a copy of the files one build reads.
pub struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    /// A new empty workspace (0700) under the temporary folder.
    pub fn new() -> Result<Workspace> {
        let parent = std::env::temp_dir();
        static SWEPT: std::sync::Once = std::sync::Once::new();
        SWEPT.call_once(|| {
            sweep_stale(&parent, STALE);
        });
        let dir = tempfile::Builder::new()
            .prefix(PREFIX)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(&parent)
            .map_err(|e| Error::Other(format!("cannot create a private workspace: {e}")))?;
        Ok(Workspace { dir })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Copies every file of `closure` from `root` to the same relative path.
    pub fn fill(&self, root: &Path, closure: &Closure) -> Result<()> {
        let mut total = 0u64;
        for rel in closure.files.keys() {
            let src = root.join(rel);
            let shown = rel.display().to_string();
            let len = std::fs::metadata(&src)
                .map_err(|e| Error::io(&shown, e))?
                .len();
            if len > MAX_FILE {
                return Err(Error::Other(format!(
                    "{shown}: larger than {} MiB",
                    MAX_FILE >> 20
                )));
            }
            total += len;
            if total > MAX_TOTAL {
                return Err(Error::Other(format!(
                    "the build reads more than {} MiB",
                    MAX_TOTAL >> 20
                )));
            }
            let data = crate::fsutil::read_file(&src)?;
            self.put(rel, &data)?;
        }
        Ok(())
    }

    /// Writes `data` at `rel` (0600, parents 0700), replacing any file.
    pub fn put(&self, rel: &Path, data: &[u8]) -> Result<()> {
        let dst = self.path().join(rel);
        if let Some(parent) = dst.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| Error::io(rel.display(), e))?;
        }
        let _ = std::fs::remove_file(&dst);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dst)
            .map_err(|e| Error::io(rel.display(), e))?;
        f.write_all(data).map_err(|e| Error::io(rel.display(), e))
    }

    /// Reads a file of the workspace.
    pub fn read(&self, rel: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        crate::fsutil::read_file(&self.path().join(rel))
    }

    /// Replaces the workspace's own path in kustomize's messages.
    pub fn unmention(&self, msg: &str) -> String {
        msg.replace(&format!("{}/", self.path().display()), "")
            .replace(&self.path().display().to_string(), ".")
    }
}

/// Removes this user's workspaces in `parent` that a killed render left
/// behind; returns how many.
pub fn sweep_stale(parent: &Path, older_than: Duration) -> usize {
    let Ok(rd) = std::fs::read_dir(parent) else {
        return 0;
    };
    let uid = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(PREFIX) {
            continue;
        }
        // symlink_metadata: never follow a planted link out of the folder.
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let old = md
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= older_than);
        if md.is_dir() && md.uid() == uid && old && std::fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_workspaces_are_swept_and_nothing_else() {
        let parent = tempfile::tempdir().unwrap();
        let mk = |name: &str, age_secs: i64| {
            let p = parent.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("secret.yaml"), "plaintext").unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let t = nix::sys::time::TimeVal::new(now - age_secs, 0);
            nix::sys::stat::utimes(&p, &t, &t).unwrap();
            p
        };
        let old = mk("kustos-render-old", 7200);
        let fresh = mk("kustos-render-fresh", 10);
        let other = mk("unrelated-old", 7200);
        let outside = tempfile::tempdir().unwrap();
        let link = parent.path().join("kustos-render-link");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        assert_eq!(sweep_stale(parent.path(), STALE), 1);
        assert!(!old.exists());
        assert!(fresh.exists() && other.exists() && outside.path().exists());
        assert!(link.symlink_metadata().is_ok(), "links are left alone");
    }

    #[test]
    fn the_workspace_is_private() {
        let ws = Workspace::new().unwrap();
        let mode = std::fs::metadata(ws.path()).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        ws.put(Path::new("a/b/c.yaml"), b"x").unwrap();
        let f = std::fs::metadata(ws.path().join("a/b/c.yaml")).unwrap();
        assert_eq!(f.mode() & 0o777, 0o600);
        let d = std::fs::metadata(ws.path().join("a/b")).unwrap();
        assert_eq!(d.mode() & 0o777, 0o700);
        assert!(!ws.path().starts_with("/dev/shm"));
    }
}
