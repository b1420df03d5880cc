//! Crash-safe file writes and careful reads.
//!
//! Every write goes to a temporary file in the target's folder (created
//! 0600 by `tempfile`), is flushed and fsynced, gets its final mode, and is
//! renamed over the target. A crash at any moment leaves either the old
//! file or the new one, never a truncated or mixed file; the temporary file
//! is removed on every error path.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

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

/// The process umask, from /proc/self/status (Linux); 022 if unknown.
fn umask() -> u32 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Umask:"))
                .and_then(|l| u32::from_str_radix(l[6..].trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Writes `data` to `path` atomically. An existing file keeps its mode;
/// a new file gets `mode`.
pub fn write_atomic(path: &Path, data: &[u8], mode: NewFileMode) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let final_mode = match fs::metadata(path) {
        Ok(m) => m.permissions().mode() & 0o7777,
        Err(_) => match mode {
            NewFileMode::Private => 0o600,
            NewFileMode::Shared => 0o644 & !umask(),
        },
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
    let res = (|| -> std::io::Result<()> {
        tmp.write_all(data)?;
        tmp.as_file().sync_all()?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(final_mode))?;
        Ok(())
    })();
    if let Err(e) = res {
        return Err(Error::Write(format!("cannot write {}: {e}", show(path))));
    }
    tmp.persist(path)
        .map_err(|e| Error::Write(format!("cannot replace {}: {}", show(path), e.error)))?;
    // Make the rename durable too.
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

fn show(p: &Path) -> String {
    crate::util::escape_for_terminal(&p.display().to_string())
}

/// Largest input kustos reads into memory (sops has no limit; this keeps a
/// mistaken `kustos decrypt /dev/zero` from eating all memory).
pub const MAX_INPUT: u64 = 256 << 20;

/// Reads a whole file into a zeroizing buffer.
pub fn read_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let mut f = fs::File::open(path).map_err(|e| Error::io(path.display(), e))?;
    let mut buf = Zeroizing::new(Vec::new());
    (&mut f)
        .take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(path.display(), e))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(Error::Read(format!(
            "{}: file is larger than {} MiB",
            show(path),
            MAX_INPUT >> 20
        )));
    }
    Ok(buf)
}

/// Reads all of stdin into a zeroizing buffer.
pub fn read_stdin() -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(MAX_INPUT + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Error::Read(format!("Error reading from stdin: {e}")))?;
    if buf.len() as u64 > MAX_INPUT {
        return Err(Error::Read("stdin is larger than 256 MiB".into()));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_mode_and_creates_private() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s.yaml");
        write_atomic(&p, b"one", NewFileMode::Private).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        fs::set_permissions(&p, fs::Permissions::from_mode(0o640)).unwrap();
        write_atomic(&p, b"two", NewFileMode::Private).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o640
        );
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }
}
