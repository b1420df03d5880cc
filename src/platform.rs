//! What differs between operating systems, in one place: process hardening,
//! durable writes, private scratch folders and the confinement of child
//! processes. kustos builds for Linux (glibc and musl, x86_64 and arm64)
//! and macOS (Apple Silicon and Intel); each function here has a portable
//! fallback, so the rest of the code calls no system-specific API.
//!
//! | what | Linux | macOS and other Unix systems |
//! | --- | --- | --- |
//! | [`harden_process`] | `PR_SET_DUMPABLE=0`, `RLIMIT_CORE=0` | `RLIMIT_CORE=0` |
//! | [`sync_file`] | `fsync` | `F_FULLFSYNC` (else `fsync`) |
//! | [`sync_files`] | one `syncfs` per filesystem | [`sync_file`] per file |
//! | [`memory_scratch_dir`] | `$XDG_RUNTIME_DIR`, `/dev/shm` | `$XDG_RUNTIME_DIR`, `$TMPDIR` |
//! | [`umask`] | `/proc/self/status` | a probe file |
//! | [`confinement`] | Landlock | none (static path checks) |
//!
//! On Linux, the kubectl child of a render runs under Landlock: it may read
//! its workspace and execute its own binary, and nothing else (no other
//! file, no TCP). Landlock applies to the calling thread and everything it
//! then executes, so kustos confines a fresh helper process (the kustos
//! binary itself, hidden sub-command [`CONFINED_EXEC`]) that restricts
//! itself and then replaces itself with kubectl; no `unsafe` `pre_exec`
//! hook is needed. Elsewhere, or on kernels without Landlock, render relies
//! on its static path checks alone and says so.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};

/// The hidden first argument that makes the kustos binary run
/// [`confined_exec_main`].
pub const CONFINED_EXEC: &str = "__confined-exec";

/// Keeps secrets out of core dumps and away from same-user debuggers:
/// `PR_SET_DUMPABLE=0` (Linux) and `RLIMIT_CORE=0`. For long-lived
/// processes holding keys or plaintext (`serve`, `render`).
pub fn harden_process() {
    #[cfg(target_os = "linux")]
    {
        let _ = nix::sys::prctl::set_dumpable(false);
    }
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0);
}

/// Whether core dumps are off for this process (for tests and `--verbose`).
pub fn core_dumps_disabled() -> bool {
    let core_off = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE)
        .map(|(soft, _)| soft == 0)
        .unwrap_or(false);
    #[cfg(target_os = "linux")]
    {
        core_off && nix::sys::prctl::get_dumpable().map(|d| !d).unwrap_or(false)
    }
    #[cfg(not(target_os = "linux"))]
    {
        core_off
    }
}

/// Gets the data and metadata of an open file (or folder) to stable storage.
///
/// On macOS a plain `fsync` only hands the data to the drive, whose cache
/// may lose it on power failure; `F_FULLFSYNC` also empties that cache.
/// The standard library's `sync_all` asks for `F_FULLFSYNC` there but fails
/// on filesystems that refuse it (macFUSE, some network mounts), which then
/// get `fsync`: all they offer.
pub fn sync_file(f: &File) -> std::io::Result<()> {
    #[cfg(target_vendor = "apple")]
    {
        use nix::fcntl::{fcntl, FcntlArg};
        use std::os::fd::AsRawFd as _;
        if fcntl(f.as_raw_fd(), FcntlArg::F_FULLFSYNC).is_ok() {
            return Ok(());
        }
        nix::unistd::fsync(f.as_raw_fd()).map_err(std::io::Error::from)
    }
    #[cfg(not(target_vendor = "apple"))]
    {
        f.sync_all()
    }
}

/// A file [`sync_files`] could not get to stable storage.
#[derive(Debug)]
pub struct SyncError {
    /// Its index in the list.
    pub index: usize,
    /// Why.
    pub error: std::io::Error,
}

/// Gets the data of every file in `paths` to stable storage. On Linux,
/// more than two files cost one `syncfs` per filesystem instead of one
/// journal commit per file; elsewhere each file gets [`sync_file`]. Files
/// are opened one at a time, so a batch of any size stays within the
/// open-file limit.
pub fn sync_files(paths: &[&Path]) -> Result<(), SyncError> {
    #[cfg(target_os = "linux")]
    if paths.len() > 2 {
        return sync_filesystems(paths);
    }
    sync_each(paths)
}

/// The portable way: [`sync_file`] on each file.
fn sync_each(paths: &[&Path]) -> Result<(), SyncError> {
    for (index, p) in paths.iter().enumerate() {
        File::open(p)
            .and_then(|f| sync_file(&f))
            .map_err(|error| SyncError { index, error })?;
    }
    Ok(())
}

/// One `syncfs` per filesystem the files are on.
#[cfg(target_os = "linux")]
fn sync_filesystems(paths: &[&Path]) -> Result<(), SyncError> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::MetadataExt as _;
    let mut devices = Vec::new();
    for (index, p) in paths.iter().enumerate() {
        let err = |error| SyncError { index, error };
        let f = File::open(p).map_err(err)?;
        let dev = f.metadata().map_err(err)?.dev();
        if devices.contains(&dev) {
            continue;
        }
        devices.push(dev);
        nix::unistd::syncfs(f.as_raw_fd()).map_err(|e| err(e.into()))?;
    }
    Ok(())
}

/// The process's file mode creation mask. Linux reports it in
/// `/proc/self/status`; elsewhere (or without `/proc`) a probe file created
/// with mode 0777 shows which bits the mask removes. Setting and restoring
/// the mask with `umask(2)` would race with other threads creating files.
/// 022 if neither works.
pub fn umask() -> u32 {
    static MASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *MASK.get_or_init(|| proc_status_umask().or_else(probe_umask).unwrap_or(0o022))
}

fn proc_status_umask() -> Option<u32> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Umask:"))?;
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).ok()
}

fn probe_umask() -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let probe = tempfile::Builder::new()
        .prefix(".kustos-umask-")
        .permissions(std::fs::Permissions::from_mode(0o777))
        .tempfile()
        .ok()?;
    let mode = probe.as_file().metadata().ok()?.permissions().mode();
    Some(0o777 & !mode)
}

/// The best folder for a short-lived private plaintext file: a per-user
/// tmpfs (`$XDG_RUNTIME_DIR`), else `/dev/shm` (Linux), else the temporary
/// folder (on macOS `$TMPDIR`, a per-user 0700 folder). Memory-backed
/// folders keep plaintext off disks (and out of backups); callers still
/// create their own 0700 folder inside ([`private_scratch_dir`]).
pub fn memory_scratch_dir() -> PathBuf {
    let candidates = [
        std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        cfg!(target_os = "linux").then(|| PathBuf::from("/dev/shm")),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_absolute() && is_writable_dir(p))
        .unwrap_or_else(std::env::temp_dir)
}

/// A new folder only this user can enter (0700, or less by the umask), in
/// [`memory_scratch_dir`]; removed with everything in it when dropped.
pub fn private_scratch_dir(prefix: &str) -> std::io::Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt as _;
    tempfile::Builder::new()
        .prefix(prefix)
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(memory_scratch_dir())
}

fn is_writable_dir(p: &Path) -> bool {
    p.is_dir()
        && nix::unistd::access(
            p,
            nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
        )
        .is_ok()
}

/// Records SIGINT, SIGTERM and SIGHUP instead of dying of them, while it
/// lives: a command holding plaintext on disk gets to scrub it first.
/// Children started meanwhile keep the default handling (handlers, unlike
/// ignored signals, are reset by `exec`).
pub struct Interrupts {
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl Interrupts {
    /// Starts recording.
    pub fn catch() -> Interrupts {
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let ids = [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ]
        .into_iter()
        .filter_map(|s| signal_hook::flag::register(s, flag.clone()).ok())
        .collect();
        Interrupts { flag, ids }
    }

    /// Whether a signal arrived.
    pub fn arrived(&self) -> bool {
        self.flag.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for Interrupts {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// How a child process is confined.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Confinement {
    /// Landlock: read-only access to the listed folders and the program,
    /// no TCP where the kernel supports that.
    Landlock,
    /// No kernel confinement is available here.
    Unavailable(String),
}

impl std::fmt::Display for Confinement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Confinement::Landlock => f.write_str("Landlock (read-only workspace, no network)"),
            Confinement::Unavailable(why) => write!(f, "none ({why})"),
        }
    }
}

/// Whether this kernel can confine a child with Landlock (asked once).
pub fn confinement() -> Confinement {
    static PROBE: std::sync::OnceLock<Confinement> = std::sync::OnceLock::new();
    PROBE.get_or_init(probe).clone()
}

#[cfg(target_os = "linux")]
fn probe() -> Confinement {
    use landlock::{Access, AccessFs, CompatLevel, Compatible, Ruleset, RulesetAttr, ABI};
    // Creating a ruleset restricts nothing; it fails without Landlock.
    let created = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .and_then(|r| r.create());
    match created {
        Ok(_) => Confinement::Landlock,
        Err(e) => Confinement::Unavailable(format!("Landlock is not available: {e}")),
    }
}

#[cfg(not(target_os = "linux"))]
fn probe() -> Confinement {
    Confinement::Unavailable("Landlock is Linux-only".into())
}

/// The command that runs `program args…` confined to reading `read_dirs`
/// (through the kustos binary `helper`).
pub fn confined_command(
    helper: &Path,
    read_dirs: &[PathBuf],
    program: &Path,
    args: &[OsString],
) -> std::process::Command {
    let mut c = std::process::Command::new(helper);
    c.arg(CONFINED_EXEC);
    for d in read_dirs {
        c.arg("--read").arg(d);
    }
    c.arg("--").arg(program).args(args);
    c
}

/// Exit code of the helper when it could not confine itself.
pub const CONFINE_FAILED: u8 = 126;

/// The helper process: `__confined-exec [--read DIR]… -- PROGRAM ARGS…`.
/// Restricts itself, then replaces itself with `PROGRAM` (which must be an
/// absolute path); never runs it unconfined.
pub fn confined_exec_main(args: &[OsString]) -> std::process::ExitCode {
    let mut read = Vec::new();
    let mut it = args.iter();
    let mut rest = Vec::new();
    while let Some(a) = it.next() {
        if a == "--read" {
            match it.next() {
                Some(d) => read.push(PathBuf::from(d)),
                None => return fail("--read needs a folder"),
            }
        } else if a == "--" {
            rest = it.by_ref().cloned().collect();
        } else {
            return fail("unexpected argument");
        }
    }
    let Some((program, program_args)) = rest.split_first() else {
        return fail("no program given");
    };
    let program = PathBuf::from(program);
    if !program.is_absolute() {
        return fail("the program must be an absolute path");
    }
    if let Err(e) = restrict_self(&read, &program) {
        return fail(&e);
    }
    use std::os::unix::process::CommandExt as _;
    let e = std::process::Command::new(&program)
        .args(program_args)
        .exec();
    fail(&format!("cannot run {}: {e}", program.display()))
}

fn fail(msg: &str) -> std::process::ExitCode {
    eprintln!("kustos: confinement: {msg}");
    std::process::ExitCode::from(CONFINE_FAILED)
}

#[cfg(target_os = "linux")]
fn restrict_self(read: &[PathBuf], program: &Path) -> Result<(), String> {
    use landlock::{
        Access, AccessFs, AccessNet, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
        RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
    };
    let err = |e: &dyn std::fmt::Display| format!("cannot set up Landlock: {e}");
    let newest = ABI::V6;
    let mut rs = Ruleset::default()
        .set_compatibility(CompatLevel::HardRequirement)
        .handle_access(AccessFs::from_all(ABI::V1))
        .map_err(|e| err(&e))?
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(newest))
        .map_err(|e| err(&e))?
        .handle_access(AccessNet::from_all(newest))
        .map_err(|e| err(&e))?
        .scope(Scope::from_all(newest))
        .map_err(|e| err(&e))?
        .create()
        .map_err(|e| err(&e))?;
    for d in read {
        let fd = PathFd::new(d).map_err(|e| err(&e))?;
        rs = rs
            .add_rule(PathBeneath::new(fd, AccessFs::from_read(newest)))
            .map_err(|e| err(&e))?;
    }
    // The program itself (its resolved file: path lookup is not confined).
    let real = std::fs::canonicalize(program).map_err(|e| err(&e))?;
    let fd = PathFd::new(&real).map_err(|e| err(&e))?;
    rs = rs
        .add_rule(PathBeneath::new(
            fd,
            AccessFs::from_read(newest) & AccessFs::from_file(newest),
        ))
        .map_err(|e| err(&e))?;
    let status = rs.restrict_self().map_err(|e| err(&e))?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err("Landlock is not enforced by this kernel".into());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn restrict_self(_read: &[PathBuf], _program: &Path) -> Result<(), String> {
    Err("Landlock is Linux-only".into())
}

/// Asks the person at the controlling terminal for one line of input,
/// without echo when `secret`. `None` when there is no terminal (CI, the
/// sidecar): callers then carry on as if the question was declined.
pub fn ask_terminal(prompt: &str, secret: bool) -> Option<zeroize::Zeroizing<String>> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    use std::io::{Read, Write};
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .ok()?;
    let saved = tcgetattr(&tty).ok()?;
    if secret {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).ok()?;
    }
    let mut out = &tty;
    let _ = write!(out, "{prompt} ");
    let _ = out.flush();
    // Byte by byte into one buffer that is zeroized: a PIN must not linger
    // in a reader's buffer or in a grown-and-freed allocation.
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(MAX_ANSWER));
    let mut reader = &tty;
    let mut byte = [0u8; 1];
    let complete = loop {
        match reader.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => break true,
            Ok(1) if bytes.len() < MAX_ANSWER => bytes.push(byte[0]),
            Ok(1) => {}
            _ => break !bytes.is_empty(),
        }
    };
    zeroize::Zeroize::zeroize(&mut byte);
    if secret {
        let _ = tcsetattr(&tty, SetArg::TCSAFLUSH, &saved);
        let _ = writeln!(out);
    }
    if !complete {
        return None;
    }
    while bytes.last() == Some(&b'\r') {
        bytes.pop();
    }
    let text = std::str::from_utf8(&bytes).ok()?;
    Some(zeroize::Zeroizing::new(text.to_string()))
}

/// The longest answer [`ask_terminal`] keeps; the rest of a line is dropped.
const MAX_ANSWER: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardened_processes_leave_no_core_dumps() {
        harden_process();
        assert!(core_dumps_disabled());
    }

    #[test]
    fn the_helper_refuses_relative_programs_and_stray_arguments() {
        let args = |v: &[&str]| v.iter().map(OsString::from).collect::<Vec<_>>();
        for bad in [
            args(&["--read", "/tmp", "--", "kubectl"]),
            args(&["--oops"]),
            args(&["--read"]),
            args(&["--"]),
        ] {
            assert_eq!(
                confined_exec_main(&bad),
                std::process::ExitCode::from(CONFINE_FAILED)
            );
        }
    }

    #[test]
    fn every_way_of_syncing_reaches_every_file() {
        let d = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..4)
            .map(|i| {
                let p = d.path().join(format!("f{i}"));
                std::fs::write(&p, b"data").unwrap();
                p
            })
            .collect();
        let all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
        // A few files and a batch (one `syncfs` on Linux), and the per-file
        // way every other system takes, here too.
        sync_files(&all[..1]).unwrap();
        sync_files(&all).unwrap();
        sync_each(&all).unwrap();
        sync_file(&File::open(d.path()).unwrap()).unwrap();
        // A file that cannot be synced is named by its place in the list.
        let gone = d.path().join("gone");
        for n in [2, 4] {
            let mut some = all[..n - 1].to_vec();
            some.push(&gone);
            let e = sync_files(&some).unwrap_err();
            assert_eq!(e.index, n - 1);
            assert_eq!(e.error.kind(), std::io::ErrorKind::NotFound);
            assert_eq!(sync_each(&some).unwrap_err().index, n - 1);
        }
    }

    #[test]
    fn a_probe_file_finds_the_umask_the_kernel_reports() {
        let probed = probe_umask().expect("the temporary folder is writable");
        assert_eq!(probed & !0o777, 0);
        if cfg!(target_os = "linux") {
            assert_eq!(Some(probed), proc_status_umask());
        } else {
            assert_eq!(proc_status_umask(), None);
        }
        assert_eq!(umask(), probed);
    }

    #[test]
    fn private_scratch_folders_are_for_this_user_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = private_scratch_dir(".kustos-test-").unwrap();
        let path = dir.path().to_path_buf();
        assert!(path.starts_with(memory_scratch_dir()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        std::fs::write(path.join("plain"), b"secret").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn without_landlock_confinement_is_refused_not_faked() {
        assert_eq!(
            confinement(),
            Confinement::Unavailable("Landlock is Linux-only".into())
        );
        let args = ["--", "/usr/bin/true"].map(OsString::from);
        assert_eq!(
            confined_exec_main(&args),
            std::process::ExitCode::from(CONFINE_FAILED)
        );
    }
}
