//! The platform admin's fleet repository: `init`, tenant onboarding and
//! offline validation of a Flux multi-tenancy repo.
//!
//! Every command computes a [`Plan`] of file changes first and applies it
//! only when nothing conflicts, so a run is idempotent (a second run plans no
//! change) and never overwrites a file the admin edited without `--force`.

pub mod bulk;
pub mod decryption;
pub mod init;
pub mod policy;
pub mod schema;
pub mod templates;
pub mod tenant;
pub mod validate;

use std::path::{Path, PathBuf};

use crate::fsutil::{self, NewFileMode};
use crate::{Error, Result};

/// What happens to one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The file does not exist yet.
    Create,
    /// The file exists with the same content.
    Unchanged,
    /// The file exists with other content (the admin may have edited it).
    Update {
        /// Current content.
        old: Vec<u8>,
    },
    /// The file is removed.
    Delete,
}

/// One file in a plan.
#[derive(Clone, Debug)]
pub struct Change {
    /// Path relative to the repository root.
    pub path: PathBuf,
    /// New content (empty for deletions).
    pub content: Vec<u8>,
    /// What happens.
    pub kind: ChangeKind,
    /// Content is SOPS-encrypted (diffs are summarised, not printed).
    pub secret: bool,
    /// kustos edited the existing content (kept the admin's entries and
    /// comments) rather than generating it: an update is expected.
    pub merged: bool,
}

/// File changes computed before anything is written.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    /// The repository root.
    pub root: PathBuf,
    /// Changes in write order.
    pub changes: Vec<Change>,
    /// Folders to remove when empty after deletions.
    pub prune_dirs: Vec<PathBuf>,
}

impl Plan {
    /// A plan for the repository at `root`.
    pub fn new(root: &Path) -> Self {
        Plan {
            root: root.to_path_buf(),
            ..Default::default()
        }
    }

    /// Plans `path` to hold `content`.
    pub fn put(&mut self, path: impl Into<PathBuf>, content: impl Into<Vec<u8>>) -> Result<()> {
        self.put_inner(path.into(), content.into(), false)
    }

    /// Plans an encrypted file.
    pub fn put_secret(&mut self, path: impl Into<PathBuf>, content: Vec<u8>) -> Result<()> {
        self.put_inner(path.into(), content, true)
    }

    /// Plans an edit of an existing file (never a conflict).
    pub fn merge(&mut self, path: impl Into<PathBuf>, content: impl Into<Vec<u8>>) -> Result<()> {
        self.put_inner(path.into(), content.into(), false)?;
        if let Some(c) = self.changes.last_mut() {
            c.merged = true;
        }
        Ok(())
    }

    fn put_inner(&mut self, path: PathBuf, content: Vec<u8>, secret: bool) -> Result<()> {
        let full = self.root.join(&path);
        let kind = match std::fs::read(&full) {
            Ok(old) if old == content => ChangeKind::Unchanged,
            Ok(old) => ChangeKind::Update { old },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ChangeKind::Create,
            Err(e) => return Err(Error::io(full.display(), e)),
        };
        self.changes.push(Change {
            path,
            content,
            kind,
            secret,
            merged: false,
        });
        Ok(())
    }

    /// Plans removing `path` if it exists.
    pub fn delete(&mut self, path: impl Into<PathBuf>) {
        let path = path.into();
        if self.root.join(&path).exists() {
            self.changes.push(Change {
                path,
                content: Vec::new(),
                kind: ChangeKind::Delete,
                secret: false,
                merged: false,
            });
        }
    }

    /// Changes that would overwrite existing content.
    pub fn conflicts(&self) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| matches!(c.kind, ChangeKind::Update { .. }) && !c.merged)
            .collect()
    }

    /// True if applying changes nothing.
    pub fn is_noop(&self) -> bool {
        self.changes.iter().all(|c| c.kind == ChangeKind::Unchanged)
    }

    /// Writes the plan. Refuses updates unless `force`.
    pub fn apply(&self, force: bool) -> Result<()> {
        if !force {
            if let Some(c) = self.conflicts().first() {
                return Err(Error::Other(format!(
                    "{} was changed since kustos wrote it; review the diff and re-run with --force to overwrite",
                    c.path.display()
                )));
            }
        }
        for c in &self.changes {
            let full = self.root.join(&c.path);
            match c.kind {
                ChangeKind::Unchanged => {}
                ChangeKind::Delete => {
                    std::fs::remove_file(&full).map_err(|e| Error::io(full.display(), e))?;
                }
                _ => {
                    if let Some(parent) = full.parent() {
                        std::fs::create_dir_all(parent)
                            .map_err(|e| Error::io(parent.display(), e))?;
                    }
                    fsutil::write_atomic(&full, &c.content, NewFileMode::Shared)?;
                }
            }
        }
        for d in &self.prune_dirs {
            let full = self.root.join(d);
            if std::fs::read_dir(&full)
                .map(|mut r| r.next().is_none())
                .unwrap_or(false)
            {
                let _ = std::fs::remove_dir(&full);
            }
        }
        Ok(())
    }

    /// Builds each kustomization folder of `dirs` (relative to the root)
    /// with `kubectl kustomize` in a private copy of the repository with
    /// the plan applied; the first failure as `(folder, message)`.
    pub fn builds(
        &self,
        kubectl: &Path,
        dirs: &[String],
    ) -> std::result::Result<(), (String, String)> {
        let fail = |m: String| (".".to_string(), m);
        let copy = tempfile::Builder::new()
            .prefix("kustos-plan-")
            .tempdir()
            .map_err(|e| fail(format!("cannot create a scratch copy: {e}")))?;
        for e in fsutil::walk(&self.root) {
            let dst = copy.path().join(&e.rel);
            let r = if e.is_dir {
                std::fs::create_dir_all(&dst)
            } else {
                std::fs::copy(&e.path, &dst).map(|_| ())
            };
            r.map_err(|err| fail(format!("cannot copy {}: {err}", e.rel.display())))?;
        }
        for c in &self.changes {
            let dst = copy.path().join(&c.path);
            let r = match c.kind {
                ChangeKind::Unchanged => Ok(()),
                ChangeKind::Delete => std::fs::remove_file(&dst),
                _ => dst
                    .parent()
                    .map(std::fs::create_dir_all)
                    .unwrap_or(Ok(()))
                    .and_then(|_| std::fs::write(&dst, &c.content)),
            };
            r.map_err(|err| fail(format!("cannot stage {}: {err}", c.path.display())))?;
        }
        for d in dirs {
            let out = std::process::Command::new(kubectl)
                .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
                .arg(copy.path().join(d))
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| (d.clone(), format!("cannot run {}: {e}", kubectl.display())))?;
            if !out.status.success() {
                let msg = String::from_utf8_lossy(&out.stderr)
                    .replace(&format!("{}/", copy.path().display()), "");
                let line = msg
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("kustomize failed");
                return Err((d.clone(), line.trim().to_string()));
            }
        }
        Ok(())
    }

    /// A human summary with unified diffs of updated plaintext files.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let p = c.path.display();
            match &c.kind {
                ChangeKind::Unchanged => {}
                ChangeKind::Create => out.push_str(&format!("create  {p}\n")),
                ChangeKind::Delete => out.push_str(&format!("delete  {p}\n")),
                ChangeKind::Update { old } => {
                    out.push_str(&format!("update  {p}\n"));
                    if c.secret {
                        out.push_str("        (encrypted content differs; not shown)\n");
                    } else {
                        out.push_str(&unified_diff(
                            &String::from_utf8_lossy(old),
                            &String::from_utf8_lossy(&c.content),
                        ));
                    }
                }
            }
        }
        out
    }
}

/// A small line diff (LCS) in unified style, for reviewing conflicts.
pub fn unified_diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let (n, m) = (a.len(), b.len());
    if n * m > 4_000_000 {
        return "        (file too large to diff)\n".into();
    }
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut out = String::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push_str(&format!("        - {}\n", a[i]));
            i += 1;
        } else {
            out.push_str(&format!("        + {}\n", b[j]));
            j += 1;
        }
    }
    out
}

/// The environments of a fleet: folders under `tenants/` other than `base`.
pub fn environments(root: &Path) -> Result<Vec<String>> {
    let dir = root.join("tenants");
    let mut envs: Vec<String> = std::fs::read_dir(&dir)
        .map_err(|e| Error::io(dir.display(), e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "base" && !n.starts_with('.'))
        .collect();
    envs.sort();
    Ok(envs)
}

/// Checks a Kubernetes object name (RFC 1123 label).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "invalid {what} {:?}: use lowercase letters, digits and '-', at most 63 characters",
            crate::error::escape_for_terminal(name)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_shows_changed_lines() {
        let d = unified_diff("a\nb\nc\n", "a\nB\nc\nd\n");
        assert_eq!(d, "        - b\n        + B\n        + d\n");
    }

    #[test]
    fn names() {
        assert!(check_name("tenant", "dev-team").is_ok());
        assert!(check_name("tenant", "Dev").is_err());
        assert!(check_name("tenant", "-x").is_err());
    }
}
