//! kustos on the platforms it ships for, not only the one running the
//! tests.
//!
//! `KUSTOS_PLATFORM_BIN` names a kustos build and `KUSTOS_PLATFORM_TARGET`
//! its target triple: scripts/test-arm64.sh cross-builds one for arm64
//! Linux, which runs here under `qemu-aarch64` (qemu-user); the release
//! workflow names each release binary on its own runner. That build must be
//! what the triple says (and static, for Linux), decrypt what the real sops
//! 3.11 encrypted (age, and RSA through AWS-LC's C code compiled for that
//! target), encrypt what sops decrypts, and onboard a tenant exactly as the
//! binary under test does. Without a build named, those tests skip: a
//! build for another target compiles every dependency again, so it is a
//! separate run.
//!
//! Always checked: that only `src/platform.rs` uses interfaces that differ
//! between Linux and macOS, the release archives of scripts/package.sh,
//! and that the release workflow runs the scripts tested here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use sha2::Digest as _;

/// A kustos build for some target, and how to start it here.
struct Build {
    bin: PathBuf,
    /// An emulator to run it through, when this machine cannot run it.
    runner: Option<PathBuf>,
    target: String,
}

impl Build {
    fn cmd(&self, env: &Env) -> Command {
        match &self.runner {
            Some(r) => {
                let mut c = env.cmd(r);
                c.arg(&self.bin);
                c
            }
            None => env.cmd(&self.bin),
        }
    }

    fn run(&self, env: &Env, args: &[&str]) -> Vec<u8> {
        let out = self.cmd(env).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?} failed ({:?}): {}",
            self.target,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

/// The build named by `KUSTOS_PLATFORM_BIN`, or skip. Once named, it must
/// run: a missing emulator fails the test like a missing peer in CI.
fn platform_build() -> Option<Build> {
    let Some(bin) = std::env::var_os("KUSTOS_PLATFORM_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
    else {
        eprintln!("SKIP: no build for another platform (KUSTOS_PLATFORM_BIN; scripts/test-arm64.sh sets it)");
        return None;
    };
    // Commands run in their own folders: a relative path would not resolve.
    let bin = std::fs::canonicalize(&bin)
        .unwrap_or_else(|e| panic!("KUSTOS_PLATFORM_BIN={}: {e}", bin.display()));
    let target = std::env::var("KUSTOS_PLATFORM_TARGET")
        .expect("KUSTOS_PLATFORM_TARGET must name the target triple of KUSTOS_PLATFORM_BIN");
    let header =
        read_header(&bin).unwrap_or_else(|e| panic!("KUSTOS_PLATFORM_BIN={}: {e}", bin.display()));
    let kind = executable_kind(&header)
        .unwrap_or_else(|| panic!("{} is not an ELF or Mach-O executable", bin.display()));
    let want = (target_arch(&target), target_os(&target));
    assert_eq!(
        (kind.arch, kind.os),
        want,
        "{} is not a {target} executable",
        bin.display()
    );
    if kind.os == "linux" {
        assert!(
            kind.is_static,
            "{} is dynamically linked: Linux release binaries are static",
            bin.display()
        );
    }
    let runner = if kind.arch == std::env::consts::ARCH && kind.os == std::env::consts::OS {
        None
    } else if kind.os == "linux" && std::env::consts::OS == "linux" {
        let qemu = format!("qemu-{}", kind.arch);
        let found = which(&qemu);
        Some(found.unwrap_or_else(|| {
            panic!(
                "{qemu} (Debian qemu-user) is needed to run {}: run scripts/install-peers.sh",
                bin.display()
            )
        }))
    } else {
        panic!("a {target} binary cannot run on this machine");
    };
    Some(Build {
        bin,
        runner,
        target,
    })
}

/// The start of a file: enough for the headers below.
fn read_header(p: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut b = Vec::new();
    std::fs::File::open(p)?.take(4096).read_to_end(&mut b)?;
    Ok(b)
}

/// Every file under `dir` by its relative path, with its content.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    kustos::fsutil::walk(dir)
        .into_iter()
        .filter(|e| !e.is_dir)
        .map(|e| (e.rel, std::fs::read(&e.path).unwrap()))
        .collect()
}

/// What an executable file is for, from its header.
#[derive(Debug)]
struct ExecutableKind {
    arch: &'static str,
    os: &'static str,
    /// No program interpreter (ELF): the kernel runs it as it is.
    is_static: bool,
}

fn executable_kind(b: &[u8]) -> Option<ExecutableKind> {
    let u16_at = |at: usize| Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
    if b.starts_with(b"\x7fELF") {
        // 64-bit little-endian only: every Linux target kustos ships.
        if b.get(4..6)? != [2, 1] {
            return None;
        }
        let arch = match u16_at(18)? {
            62 => "x86_64",
            183 => "aarch64",
            _ => return None,
        };
        let phoff = usize::try_from(u64_at(32)?).ok()?;
        let (phentsize, phnum) = (usize::from(u16_at(54)?), usize::from(u16_at(56)?));
        const PT_INTERP: u32 = 3;
        let mut is_static = true;
        for i in 0..phnum {
            if u32_at(phoff + i * phentsize)? == PT_INTERP {
                is_static = false;
            }
        }
        return Some(ExecutableKind {
            arch,
            os: "linux",
            is_static,
        });
    }
    if b.starts_with(&[0xcf, 0xfa, 0xed, 0xfe]) {
        let arch = match u32_at(4)? {
            0x0100_0007 => "x86_64",
            0x0100_000c => "aarch64",
            _ => return None,
        };
        return Some(ExecutableKind {
            arch,
            os: "macos",
            is_static: false,
        });
    }
    None
}

fn target_arch(triple: &str) -> &'static str {
    match triple.split('-').next() {
        Some("x86_64") => "x86_64",
        Some("aarch64") => "aarch64",
        _ => panic!("kustos ships no {triple} binaries"),
    }
}

fn target_os(triple: &str) -> &'static str {
    if triple.contains("-linux-") {
        "linux"
    } else if triple.ends_with("-apple-darwin") {
        "macos"
    } else {
        panic!("kustos ships no {triple} binaries")
    }
}

fn vectors(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/vectors")
        .join(name)
}

#[test]
fn the_platform_build_decrypts_and_encrypts_with_sops() {
    let Some(build) = platform_build() else {
        return;
    };
    let Some(sops) = sops() else { return };
    let env = Env::new();
    // Every format, as the real sops encrypts it.
    for plain in corpus() {
        let name = plain.file_name().unwrap().to_str().unwrap().to_string();
        let enc = env.path(&format!("enc/{name}"));
        std::fs::create_dir_all(enc.parent().unwrap()).unwrap();
        let out = env.sops(
            &sops,
            &["encrypt", "--age", &env.recipient, plain.to_str().unwrap()],
        );
        std::fs::write(&enc, ok(&out)).unwrap();
        let want = ok(&env.sops(&sops, &["decrypt", enc.to_str().unwrap()]));
        let got = build.run(&env, &["decrypt", enc.to_str().unwrap()]);
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "{}: {name}",
            build.target
        );
    }
    // An RSA-2048 OpenPGP key: the session key is decrypted by AWS-LC.
    let keys = env.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(
        vectors("gnupg-rsa2048.TEST-ONLY.asc"),
        keys.join("sops.asc"),
    )
    .unwrap();
    let got = build.run(
        &env,
        &[
            "decrypt",
            "--keys-dir",
            keys.to_str().unwrap(),
            vectors("gnupg-rsa2048.enc.yaml").to_str().unwrap(),
        ],
    );
    assert_eq!(got, std::fs::read(vectors("gnupg-rsa.plain.yaml")).unwrap());
    // Encrypted by the build (its random numbers, AES-GCM and MAC), opened
    // by sops.
    let plain = env.write(
        "mine.yaml",
        b"apiVersion: v1\nkind: Secret\nstringData:\n  token: s3cr3t # why\n",
    );
    let enc = build.run(
        &env,
        &["encrypt", "--age", &env.recipient, plain.to_str().unwrap()],
    );
    let enc_path = env.write("mine.enc.yaml", &enc);
    let back = ok(&env.sops(&sops, &["decrypt", enc_path.to_str().unwrap()]));
    // sops re-lays out what it decrypts (indentation, comments); its own
    // round trip of the same file is the answer.
    let theirs = ok(&env.sops(
        &sops,
        &["encrypt", "--age", &env.recipient, plain.to_str().unwrap()],
    ));
    let theirs = env.write("theirs.enc.yaml", &theirs);
    let want = ok(&env.sops(&sops, &["decrypt", theirs.to_str().unwrap()]));
    assert_eq!(
        String::from_utf8_lossy(&back),
        String::from_utf8_lossy(&want)
    );
    assert!(String::from_utf8_lossy(&back).contains("token: s3cr3t"));
}

#[test]
fn the_platform_build_onboards_a_tenant_like_this_one() {
    let Some(build) = platform_build() else {
        return;
    };
    let env = Env::new();
    let onboard = |repo: &str, run: &dyn Fn(&[&str]) -> Vec<u8>| {
        run(&["init", repo, "--age", &env.recipient]);
        run(&[
            "tenant",
            "add",
            "team",
            "--repo",
            repo,
            "-n",
            "team",
            "--git-url",
            "https://github.com/org/team",
            "--auth",
            "none",
        ]);
        snapshot(&env.path(repo))
    };
    let theirs = onboard("theirs", &|args| build.run(&env, args));
    let ours = onboard("ours", &|args| ok(&env.kustos(args)));
    assert!(
        theirs
            .keys()
            .any(|p| p.ends_with("tenants/base/team/sync.yaml")),
        "{:?}",
        theirs.keys()
    );
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>()
    );
    for (rel, data) in &theirs {
        assert_eq!(
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&ours[rel]),
            "{}: {}",
            build.target,
            rel.display()
        );
    }
}

#[test]
fn release_archives_hold_the_binary_and_a_checksum_that_verifies() {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("built");
    std::fs::write(&bin, b"\x7fELF stand-in for a built binary").unwrap();
    let out_dir = d.path().join("dist");
    let target = "aarch64-unknown-linux-gnu";
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/package.sh");
    let out = Command::new(&script)
        .arg(&bin)
        .arg(target)
        .arg(&out_dir)
        .output()
        .unwrap();
    let printed = String::from_utf8(ok(&out)).unwrap();
    let name = format!("kustos-{}-{target}", env!("CARGO_PKG_VERSION"));
    let archive = out_dir.join(format!("{name}.tar.gz"));
    assert_eq!(printed.trim_end(), archive.display().to_string());

    // The checksum file names the archive with its SHA-256, as sha256sum
    // writes it.
    let sums = std::fs::read_to_string(out_dir.join(format!("{name}.tar.gz.sha256"))).unwrap();
    let digest = sha2::Sha256::digest(std::fs::read(&archive).unwrap());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(sums, format!("{hex}  {name}.tar.gz\n"));

    // One folder with the binary (executable) and the documents.
    let unpacked = d.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let out = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(&unpacked)
        .output()
        .unwrap();
    ok(&out);
    let files = snapshot(&unpacked);
    let mut names: Vec<String> = files.keys().map(|p| p.display().to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        ["README.md", "SECURITY.md", "kustos"].map(|f| format!("{name}/{f}"))
    );
    let extracted = unpacked.join(&name).join("kustos");
    assert_eq!(
        std::fs::read(&extracted).unwrap(),
        std::fs::read(&bin).unwrap()
    );
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&extracted).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755);
}

#[test]
fn executable_headers_name_their_platform() {
    // The header of this test binary: this machine's own platform.
    let me = read_header(&std::env::current_exe().unwrap()).unwrap();
    let kind = executable_kind(&me).unwrap();
    assert_eq!(kind.arch, std::env::consts::ARCH);
    assert_eq!(kind.os, std::env::consts::OS);
    assert!(executable_kind(b"#!/bin/sh\n").is_none());
    assert_eq!(target_arch("aarch64-apple-darwin"), "aarch64");
    assert_eq!(target_os("aarch64-apple-darwin"), "macos");
    assert_eq!(target_os("x86_64-unknown-linux-musl"), "linux");
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// What names a system interface that differs between Linux and macOS (or
/// a build-time choice between them). ARCHITECTURE.md: only `platform`
/// uses these, each with a portable fallback.
const SYSTEM_SPECIFIC: &[&str] = &[
    "target_os",
    "target_vendor",
    "target_arch",
    "syncfs",
    "prctl",
    "F_FULLFSYNC",
    "\"/proc/",
    "landlock::",
    "libc::",
    "termios",
];

#[test]
fn only_the_platform_module_uses_system_specific_interfaces() {
    let src = repo_file("src");
    let mut found = Vec::new();
    for e in kustos::fsutil::walk(&src) {
        if e.is_dir || e.rel.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        if e.rel == Path::new("platform.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&e.path).unwrap();
        for (n, line) in text.lines().enumerate() {
            // Comments may say what the platform module does.
            if line.trim_start().starts_with("//") {
                continue;
            }
            for word in SYSTEM_SPECIFIC.iter().filter(|w| line.contains(**w)) {
                found.push(format!("src/{}:{}: {word}", e.rel.display(), n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "system-specific code outside src/platform.rs:\n{}",
        found.join("\n")
    );
}

/// The targets kustos publishes binaries for.
const RELEASE_TARGETS: [&str; 4] = [
    "x86_64-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "aarch64-apple-darwin",
    "x86_64-apple-darwin",
];

#[test]
fn the_release_workflow_runs_the_scripts_tested_here() {
    let workflow = std::fs::read_to_string(repo_file(".github/workflows/release.yml")).unwrap();
    // Every script it runs exists and is executable; the ones that make the
    // artifacts are among them.
    let mut scripts = std::collections::BTreeSet::new();
    let mut rest = workflow.as_str();
    while let Some(i) = rest.find("scripts/") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "/_.-".contains(*c))
            .collect();
        rest = &rest[i + name.len()..];
        scripts.insert(name);
    }
    for want in [
        "scripts/install-peers.sh",
        "scripts/build-dist.sh",
        "scripts/package.sh",
    ] {
        assert!(scripts.contains(want), "{want} not in {scripts:?}");
    }
    use std::os::unix::fs::PermissionsExt as _;
    for s in &scripts {
        let mode = std::fs::metadata(repo_file(s))
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .permissions()
            .mode();
        assert_ne!(mode & 0o111, 0, "{s} is not executable");
    }
    // It builds, tests on its own runner and packs each release target,
    // and the README lists each.
    let readme = std::fs::read_to_string(repo_file("README.md")).unwrap();
    for t in RELEASE_TARGETS {
        assert!(
            workflow.contains(&format!("target: {t}")),
            "the workflow builds no {t}"
        );
        assert!(readme.contains(t), "README.md does not list {t}");
    }
    for step in [
        "KUSTOS_PLATFORM_BIN",
        "KUSTOS_PLATFORM_TARGET",
        "platforms::",
    ] {
        assert!(workflow.contains(step), "the workflow lacks {step}");
    }
}
