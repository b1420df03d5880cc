//! Every SOPS-encrypted file in the getsops/sops repository (copied into
//! testdata/sops-repo, see its README) decrypts with kustos to the same bytes
//! as with the real sops 3.11; where sops 3.11 cannot decrypt a file, kustos
//! fails with the same exit code.
//!
//! sops gets the functional-test PGP key through a temporary GNUPGHOME.
//! kustos runs twice: with the same GNUPGHOME (its gpg fallback available,
//! as sops users have it), and natively from the key file (`--keys-dir`)
//! with an empty GNUPGHOME.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/sops-repo")
}

/// Files sops 3.11 cannot decrypt, and why. kustos must fail on them with
/// the same exit code.
const UNREADABLE: &[(&str, &str)] = &[
    (
        "config/test_resources/example.yaml",
        "encrypted to PGP key E5297818…4CCD, whose secret key sops does not publish",
    ),
    (
        "stores/ini/test_resources/example.json",
        "encrypted to PGP key E5297818…4CCD, whose secret key sops does not publish",
    ),
    (
        "functional-tests/res/no_mac.yaml",
        "has no MAC (decrypts with --ignore-mac, checked below)",
    ),
];

/// Files whose PGP messages the native OpenPGP path cannot read yet (with
/// GnuPG they decrypt): sops up to 3.5 wrapped data keys with Go's old
/// x/crypto/openpgp, which writes MPI bit counts with leading zero bits,
/// and Sequoia's parser refuses those ("Malformed MPI: leading bit is not
/// set"). The native pass may fail on these; everything else must match.
const NATIVE_GAPS: &[&str] = &[
    "example.ini",
    "example.json",
    "example.txt",
    "example.yaml",
    "examples/all_in_one/config/secret.enc.json",
    "examples/per_file/config.enc/static_github.json",
    "functional-tests/res/comments_unencrypted_comments.yaml",
    "functional-tests/res/no_mac.yaml",
];

fn encrypted_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            encrypted_files(&p, out);
        } else if std::fs::read(&p)
            .map(|b| String::from_utf8_lossy(&b).contains("lastmodified"))
            .unwrap_or(false)
        {
            out.push(p);
        }
    }
}

/// A GnuPG home with the sops functional-test key; kills its agent on drop.
struct GpgHome(tempfile::TempDir);

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.0.path())
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

#[test]
fn sops_repository_files_decrypt_like_sops() {
    let Some(sops) = sops() else { return };
    let Some(gpg) = require("gpg", which("gpg")) else {
        return;
    };
    let root = corpus_root();
    let key = root.join("pgp/sops_functional_tests_key.asc");
    // Short path: the agent's socket must fit in sun_path.
    let home = GpgHome(
        tempfile::Builder::new()
            .prefix("ksr")
            .tempdir_in("/tmp")
            .unwrap(),
    );
    std::fs::set_permissions(home.0.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let imported = Command::new(&gpg)
        .env("GNUPGHOME", home.0.path())
        .args(["--batch", "--quiet", "--import"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(imported.status.success(), "gpg --import: {imported:?}");

    let env = Env::new();
    let keys = env.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(&key, keys.join("sops_functional_tests_key.asc")).unwrap();
    let empty_home = env.path("empty-gnupg");
    std::fs::create_dir_all(&empty_home).unwrap();

    let mut files = Vec::new();
    encrypted_files(&root, &mut files);
    files.sort();
    assert_eq!(files.len(), 17, "the corpus as copied: {files:?}");

    let run_sops = |args: &[&str], f: &Path| {
        env.cmd(&sops)
            .env("GNUPGHOME", home.0.path())
            .args(args)
            .arg(f)
            .output()
            .unwrap()
    };
    // With the gpg fallback (GNUPGHOME holds the key, as for sops).
    let with_gpg = |args: &[&str], f: &Path| {
        env.cmd(&kustos_bin())
            .env("GNUPGHOME", home.0.path())
            .args(args)
            .arg(f)
            .output()
            .unwrap()
    };
    // Natively: the key file only.
    let native = |args: &[&str], f: &Path| {
        env.cmd(&kustos_bin())
            .env("GNUPGHOME", &empty_home)
            .arg("--keys-dir")
            .arg(&keys)
            .args(args)
            .arg(f)
            .output()
            .unwrap()
    };
    let (mut same, mut unreadable, mut native_same) = (0, 0, 0);
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().to_str().unwrap();
        let s = run_sops(&["decrypt"], f);
        let k = with_gpg(&["decrypt"], f);
        let n = native(&["decrypt"], f);
        match UNREADABLE.iter().find(|(p, _)| *p == rel) {
            None => {
                assert!(
                    s.status.success(),
                    "sops 3.11 failed on {rel}: {}",
                    String::from_utf8_lossy(&s.stderr)
                );
                assert!(
                    k.status.success(),
                    "kustos failed on {rel}: {}",
                    String::from_utf8_lossy(&k.stderr)
                );
                assert_eq!(
                    String::from_utf8_lossy(&k.stdout),
                    String::from_utf8_lossy(&s.stdout),
                    "{rel}"
                );
                same += 1;
                if n.status.success() {
                    assert_eq!(n.stdout, s.stdout, "{rel} (native)");
                    native_same += 1;
                } else {
                    assert!(
                        NATIVE_GAPS.contains(&rel),
                        "kustos failed on {rel} without gpg: {}",
                        String::from_utf8_lossy(&n.stderr)
                    );
                    eprintln!("native gap: {rel} needs the gpg fallback (old Go OpenPGP MPIs)");
                }
            }
            Some((_, why)) => {
                assert!(
                    !s.status.success(),
                    "{rel} is listed as unreadable ({why}) but sops 3.11 decrypts it"
                );
                assert_eq!(
                    k.status.code(),
                    s.status.code(),
                    "{rel} ({why}): kustos: {}",
                    String::from_utf8_lossy(&k.stderr)
                );
                eprintln!("expected: sops 3.11 and kustos cannot decrypt {rel}: {why}");
                unreadable += 1;
            }
        }
    }
    let no_mac = root.join("functional-tests/res/no_mac.yaml");
    let s = run_sops(&["decrypt", "--ignore-mac"], &no_mac);
    assert_eq!(ok(&with_gpg(&["decrypt", "--ignore-mac"], &no_mac)), ok(&s));
    eprintln!(
        "sops repository corpus: {same} of {} files decrypt to the same bytes as sops 3.11 \
         ({native_same} of them without gpg); {unreadable} fail in both with the same exit code",
        files.len()
    );
    assert_eq!(same + unreadable, files.len());
}
