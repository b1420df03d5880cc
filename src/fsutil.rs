//! Crash-safe file writes and careful reads.
//!
//! Every write goes to a temporary file in the target's folder (created
//! 0600 by `tempfile`), is flushed and fsynced, gets its final mode, and is
//! renamed over the target. A crash at any moment leaves either the old
//! file or the new one, never a truncated or mixed file; the temporary file
//! is removed on every error path. [`Batch`] does the same for many files
//! with one flush per filesystem instead of one per file.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use zeroize::Zeroizing;

use crate::{Error, Result};

/// Mode for new files: 0600 for anything holding plaintext secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewFileMode {
    /// `0600`.
    Private,
    /// `0644` minus the umask (encrypted files meant for Git).
    Shared,
}

/// Writes `data` to `path` atomically. [`NewFileMode::Private`] files are
/// always 0600; a [`NewFileMode::Shared`] file keeps the mode it had, or
/// gets 0644 minus the umask when new.
pub fn write_atomic(path: &Path, data: &[u8], mode: NewFileMode) -> Result<()> {
    let staged = stage(path, data, mode)?;
    fs::File::open(&staged.tmp)
        .and_then(|f| crate::platform::sync_file(&f))
        .and_then(|_| staged.set_final_mode())
        .map_err(|e| Error::Write(format!("cannot write {}: {e}", show(path))))?;
    let dir = staged.dir.clone();
    staged
        .tmp
        .persist(path)
        .map_err(|e| Error::Write(format!("cannot replace {}: {}", show(path), e.error)))?;
    // Make the rename durable too.
    if let Ok(d) = fs::File::open(dir) {
        let _ = crate::platform::sync_file(&d);
    }
    Ok(())
}

/// A file written to its temporary name, not yet flushed or renamed.
struct Staged {
    tmp: tempfile::TempPath,
    target: PathBuf,
    dir: PathBuf,
    mode: u32,
}

impl Staged {
    /// The temporary file stays 0600 until just before its rename, so one a
    /// crash leaves behind is never more readable than that.
    fn set_final_mode(&self) -> std::io::Result<()> {
        fs::set_permissions(&self.tmp, fs::Permissions::from_mode(self.mode))
    }
}

/// Writes `data` to a new (0600) temporary file next to `path`; removed
/// again on drop unless renamed.
fn stage(path: &Path, data: &[u8], mode: NewFileMode) -> Result<Staged> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    // Plaintext is 0600 even over an existing, more readable file; other
    // files keep the mode they had.
    let final_mode = match (mode, fs::metadata(path)) {
        (NewFileMode::Private, _) => 0o600,
        (NewFileMode::Shared, Ok(m)) => m.permissions().mode() & 0o7777,
        (NewFileMode::Shared, Err(_)) => 0o644 & !crate::platform::umask(),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".kustos-tmp")
        .tempfile_in(dir)
        .map_err(|e| {
            Error::Write(format!(
                "cannot create a temporary file next to {}: {e}",
                show(path)
            ))
        })?;
    if let Err(e) = tmp.write_all(data) {
        return Err(Error::Write(format!("cannot write {}: {e}", show(path))));
    }
    Ok(Staged {
        tmp: tmp.into_temp_path(),
        target: path.to_path_buf(),
        dir: dir.to_path_buf(),
        mode: final_mode,
    })
}

/// Many atomic writes made durable together.
///
/// Each file is written to its temporary name without an fsync; `commit`
/// then flushes them all before the renames (on Linux one `syncfs` per
/// filesystem, elsewhere one fsync per file: [`crate::platform::sync_files`])
/// and fsyncs each folder after them. Per-file fsyncs cost one journal
/// commit each, which dominated fleet-wide runs; the crash guarantee is the
/// same: every target is either its old or its new content.
///
/// [`Batch::without_flush`] skips the flush for new outputs derived from
/// sources that stay as they are (`--output-dir`): the renames still keep
/// readers from ever seeing half a file, and a crash loses nothing that
/// cannot be made again.
#[derive(Default)]
pub struct Batch {
    staged: Mutex<Vec<Staged>>,
    no_flush: bool,
}

/// A batch commit that stopped at a failed rename.
#[derive(Debug)]
pub struct CommitError {
    /// What failed, naming the file.
    pub error: Error,
    /// Targets already replaced before the failure (for a caller's rollback).
    pub replaced: Vec<PathBuf>,
}

impl Batch {
    /// An empty batch whose commit is durable.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch whose commit renames without flushing first.
    pub fn without_flush() -> Self {
        Batch {
            no_flush: true,
            ..Self::default()
        }
    }

    /// Writes `data` for `path` to a temporary file (see [`write_atomic`]
    /// for modes). Safe to call from many threads.
    pub fn stage(&self, path: &Path, data: &[u8], mode: NewFileMode) -> Result<()> {
        let staged = stage(path, data, mode)?;
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(staged);
        Ok(())
    }

    /// Files staged so far.
    pub fn len(&self) -> usize {
        self.staged.lock().map(|v| v.len()).unwrap_or(0)
    }

    /// True when nothing is staged.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Flushes every staged file (unless made [`Batch::without_flush`]),
    /// renames each over its target (in path order) and makes the renames
    /// durable. Nothing is renamed if the flush fails; temporary files of a
    /// failed commit are removed.
    pub fn commit(self) -> std::result::Result<(), CommitError> {
        let mut staged = self.staged.into_inner().unwrap_or_else(|e| e.into_inner());
        staged.sort_by(|a, b| a.target.cmp(&b.target));
        let fail = |error: Error, replaced: Vec<PathBuf>| CommitError { error, replaced };
        let durable = !self.no_flush;
        if durable {
            flush(&staged).map_err(|e| fail(e, Vec::new()))?;
        }
        let mut dirs: Vec<PathBuf> = Vec::new();
        let mut replaced = Vec::new();
        for s in staged {
            if !dirs.contains(&s.dir) {
                dirs.push(s.dir.clone());
            }
            let mode_set = s.set_final_mode();
            let target = s.target;
            if let Err(e) = mode_set {
                let error = Error::Write(format!("cannot write {}: {e}", show(&target)));
                return Err(fail(error, replaced));
            }
            if let Err(e) = s.tmp.persist(&target) {
                let error = Error::Write(format!("cannot replace {}: {}", show(&target), e.error));
                return Err(fail(error, replaced));
            }
            replaced.push(target);
        }
        if durable {
            for d in dirs {
                if let Ok(d) = fs::File::open(d) {
                    let _ = crate::platform::sync_file(&d);
                }
            }
        }
        Ok(())
    }
}

/// Gets staged data to stable storage, as cheaply as this system allows
/// ([`crate::platform::sync_files`]).
fn flush(staged: &[Staged]) -> Result<()> {
    let paths: Vec<&Path> = staged.iter().map(|s| s.tmp.as_ref()).collect();
    crate::platform::sync_files(&paths).map_err(|e| {
        let target = &staged[e.index].target;
        Error::Write(format!("cannot write {}: {}", show(target), e.error))
    })
}

/// A path for messages: control characters escaped.
pub fn show(p: &Path) -> String {
    crate::error::escape_for_terminal(&p.display().to_string())
}

/// One file or folder found by [`walk`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The path (the root joined with [`Entry::rel`]).
    pub path: PathBuf,
    /// The path relative to the root.
    pub rel: PathBuf,
    /// How many folders deep below the root (0: directly in it).
    pub depth: usize,
    /// A folder (descended into) rather than a regular file.
    pub is_dir: bool,
    /// A symlink to a file inside the root (writers leave these alone: the
    /// file it names is visited under its own name too).
    pub is_link: bool,
    /// The file's size in bytes (0 for folders).
    pub len: u64,
}

impl Entry {
    /// Whether the entry or a folder above it (below the root) has a name
    /// starting with a dot (`.github/`, `.sops.yaml`).
    pub fn is_hidden(&self) -> bool {
        self.rel
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
    }

    /// The entry's own name.
    pub fn name(&self) -> std::borrow::Cow<'_, str> {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    }
}

/// Every file and folder under `root`, depth first, sorted by name, with
/// one rule for what is skipped, wherever kustos scans a folder:
///
/// - `.git` folders and kustos's own temporary files (`*.kustos-tmp`);
/// - symlinks, unless they point to a regular file inside `root` (a
///   symlinked folder is never descended into, so there are no loops and
///   no escape);
/// - anything that is not a regular file or folder (sockets, FIFOs,
///   devices) and anything that cannot be read.
///
/// Callers filter further by name, size or [`Entry::is_hidden`].
pub fn walk(root: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    let real_root = fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    walk_into(root, &real_root, Path::new(""), 0, &mut out);
    out
}

fn walk_into(dir: &Path, real_root: &Path, rel: &Path, depth: usize, out: &mut Vec<Entry>) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<std::ffi::OsString> =
        rd.filter_map(|e| e.ok().map(|e| e.file_name())).collect();
    names.sort();
    for name in names {
        let n = name.to_string_lossy();
        if n == ".git" || n.ends_with(".kustos-tmp") {
            continue;
        }
        let path = dir.join(&name);
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let entry = |is_dir: bool, is_link: bool, len: u64| Entry {
            path: path.clone(),
            rel: rel.join(&name),
            depth,
            is_dir,
            is_link,
            len,
        };
        if meta.is_dir() {
            out.push(entry(true, false, 0));
            walk_into(&path, real_root, &rel.join(&name), depth + 1, out);
        } else if meta.is_file() {
            out.push(entry(false, false, meta.len()));
        } else if meta.file_type().is_symlink() {
            let target = fs::canonicalize(&path)
                .ok()
                .filter(|t| t.starts_with(real_root));
            if let Some(m) = target
                .and_then(|t| fs::metadata(t).ok())
                .filter(|m| m.is_file())
            {
                out.push(entry(false, true, m.len()));
            }
        }
    }
}

/// Largest input kustos reads into memory (sops has no limit; this keeps a
/// mistaken `kustos decrypt /dev/zero` from eating all memory).
pub const MAX_INPUT: u64 = 256 << 20;

/// Reads a whole file into a zeroizing buffer.
pub fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let f = fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    // The size is only a hint (files change, /proc reports 0): sized right,
    // the file comes in with one read and one end-of-file read.
    let hint = f.metadata().map(|m| m.len()).unwrap_or(0);
    let buf = read_zeroizing(f, hint, MAX_INPUT).map_err(|e| Error::io(path.display(), e))?;
    buf.ok_or_else(|| {
        Error::Read(format!(
            "{}: file is larger than {} MiB",
            show(path),
            MAX_INPUT >> 20
        ))
    })
}

/// Reads all of stdin into a zeroizing buffer.
pub fn read_stdin() -> Result<Zeroizing<Vec<u8>>> {
    read_zeroizing(std::io::stdin().lock(), 0, MAX_INPUT)
        .map_err(|e| Error::Read(format!("Error reading from stdin: {e}")))?
        .ok_or_else(|| Error::Read("stdin is larger than 256 MiB".into()))
}

/// Reads everything from `r`, or `None` when it holds more than `limit`
/// bytes. Growing a `Vec` by `read_to_end` would free each smaller buffer
/// without wiping it, leaving copies of a plaintext input in freed memory;
/// here every buffer is a `Zeroizing` one, wiped when replaced.
fn read_zeroizing(
    mut r: impl Read,
    size_hint: u64,
    limit: u64,
) -> std::io::Result<Option<Zeroizing<Vec<u8>>>> {
    let cap_max = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    let first = usize::try_from(size_hint.saturating_add(1))
        .unwrap_or(usize::MAX)
        .clamp(64, cap_max.max(64));
    let mut buf = Zeroizing::new(vec![0u8; first]);
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= cap_max {
                return Ok(None);
            }
            let mut bigger = Zeroizing::new(vec![0u8; len.saturating_mul(2).min(cap_max)]);
            bigger[..len].copy_from_slice(&buf[..len]);
            buf = bigger;
        }
        match r.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if len as u64 > limit {
        return Ok(None);
    }
    buf.truncate(len);
    Ok(Some(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hands out at most `step` bytes per read.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn reads_whole_inputs_within_the_limit() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        for (len, hint, step) in [
            (0, 0, 1),
            (1, 0, 1),
            (63, 63, 7),
            (64, 10, 64),
            (1000, 1000, 1000),
            (1000, 0, 3),
            (1000, 5000, 999),
            (5000, 4999, 4096),
        ] {
            let r = Trickle {
                data: &data[..len],
                step,
            };
            let got = read_zeroizing(r, hint, 5000).unwrap().unwrap();
            assert_eq!(&got[..], &data[..len], "len {len} hint {hint} step {step}");
        }
        // One byte over the limit is refused, whatever the hint says.
        for hint in [0, 100, 5001, u64::MAX] {
            let r = Trickle {
                data: &data[..],
                step: 777,
            };
            assert!(
                read_zeroizing(r, hint, 4999).unwrap().is_none(),
                "hint {hint}"
            );
        }
        let r = Trickle {
            data: &data[..],
            step: 777,
        };
        assert!(read_zeroizing(r, 0, 5000).unwrap().is_some());
    }

    #[test]
    fn the_walker_skips_git_temp_files_and_links_out_of_the_root() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let root = d.path();
        fs::create_dir_all(root.join(".git/objects")).unwrap();
        fs::create_dir_all(root.join("b/c")).unwrap();
        fs::write(root.join("a.yaml"), "a").unwrap();
        fs::write(root.join("b/c/d.yaml"), "dd").unwrap();
        fs::write(root.join(".sops.yaml"), "x").unwrap();
        fs::write(root.join("x.yaml.1.kustos-tmp"), "tmp").unwrap();
        fs::write(outside.path().join("key"), "secret").unwrap();
        std::os::unix::fs::symlink(outside.path().join("key"), root.join("out.yaml")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("outdir")).unwrap();
        std::os::unix::fs::symlink(root.join("b"), root.join("loop")).unwrap();
        std::os::unix::fs::symlink(root.join("a.yaml"), root.join("in.yaml")).unwrap();
        std::os::unix::fs::symlink(root.join("gone"), root.join("dangling.yaml")).unwrap();
        let got: Vec<(String, bool, usize)> = walk(root)
            .into_iter()
            .map(|e| (e.rel.display().to_string(), e.is_dir, e.depth))
            .collect();
        let want = [
            (".sops.yaml", false, 0),
            ("a.yaml", false, 0),
            ("b", true, 0),
            ("b/c", true, 1),
            ("b/c/d.yaml", false, 2),
            ("in.yaml", false, 0),
        ];
        let want: Vec<(String, bool, usize)> = want
            .iter()
            .map(|(p, d, n)| (p.to_string(), *d, *n))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn plaintext_is_always_private_and_other_files_keep_their_mode() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.yaml");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        write_atomic(&p, b"one", NewFileMode::Private).unwrap();
        assert_eq!(mode(&p), 0o600);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&p, b"two", NewFileMode::Private).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600, "plaintext over a readable file");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"three", NewFileMode::Shared).unwrap();
        assert_eq!(mode(&p), 0o640, "an encrypted file keeps its mode");
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn batch_commits_all_and_reports_a_failed_rename() {
        let d = tempfile::tempdir().unwrap();
        let batch = Batch::new();
        for i in 0..5 {
            let p = d.path().join(format!("f{i}.yaml"));
            batch.stage(&p, b"data", NewFileMode::Private).unwrap();
        }
        assert_eq!(batch.len(), 5);
        batch.commit().unwrap();
        for i in 0..5 {
            let p = d.path().join(format!("f{i}.yaml"));
            assert_eq!(fs::read(&p).unwrap(), b"data");
            let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        // A rename over a non-empty folder fails: files before it (in path
        // order) are reported as replaced, no temporary file is left.
        let batch = Batch::new();
        for name in ["a.yaml", "b.yaml", "c.yaml"] {
            batch
                .stage(&d.path().join(name), b"new", NewFileMode::Shared)
                .unwrap();
        }
        fs::create_dir(d.path().join("b.yaml")).unwrap();
        fs::write(d.path().join("b.yaml/x"), b"").unwrap();
        let err = batch.commit().unwrap_err();
        assert_eq!(err.replaced, vec![d.path().join("a.yaml")]);
        assert!(err.error.to_string().contains("b.yaml"), "{}", err.error);
        let left: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".kustos-tmp"))
            .collect();
        assert!(left.is_empty());
    }
}
