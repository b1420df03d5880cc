//! OpenPGP interoperability with real GnuPG (2.2+): messages gpg makes are
//! unwrapped natively, messages kustos makes are decrypted by gpg, keys
//! kustos generates import into gpg, and the gpg fallback works.
//!
//! Every test uses its own temporary GNUPGHOME (mode 0700). A missing `gpg`
//! skips the test with a note, except when `CI` is set: then it fails.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use crate::common::alone_in_a_child_process;
use kustos::keys::pgp::{self, PgpKeys};
use kustos::keys::{KeySources, UnwrapError};
use rand::RngCore;

/// Tests that change the process environment (GNUPGHOME) hold this.
static ENV_LOCK: Mutex<()> = Mutex::new(());

fn gpg_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let found = std::env::split_paths(&path)
        .map(|d| d.join("gpg"))
        .find(|p| p.is_file());
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("required test peer `gpg` is missing (CI is set, so this is a failure)")
        }
        None => {
            eprintln!("SKIP: test peer `gpg` (GnuPG 2.2+) is not installed");
            None
        }
    }
}

/// A throwaway GnuPG home; kills its agent when dropped.
struct GpgHome {
    gpg: PathBuf,
    dir: tempfile::TempDir,
}

impl GpgHome {
    fn new() -> Option<GpgHome> {
        let gpg = gpg_path()?;
        // Short paths keep the agent's socket path within limits.
        let dir = tempfile::Builder::new()
            .prefix("kgpg")
            .tempdir_in("/tmp")
            .expect("temp GNUPGHOME");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Some(GpgHome { gpg, dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.gpg);
        c.env("GNUPGHOME", self.path())
            .env_remove("GPG_AGENT_INFO")
            .args([
                "--batch",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "",
            ]);
        c
    }

    /// Runs gpg with `args`, feeding `input`; panics on failure.
    fn run(&self, args: &[&str], input: &[u8]) -> Vec<u8> {
        let out = self.run_raw(args, input);
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn run_raw(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn gpg");
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().expect("wait for gpg");
        writer.join().unwrap();
        out
    }

    /// Generates a passwordless key; returns the primary fingerprint.
    fn gen_key(&self, uid: &str, kind: KeyKind) -> String {
        self.gen_key_with(uid, kind, &[])
    }

    /// Like `gen_key`, with extra gpg options (e.g. `--cert-digest-algo`).
    fn gen_key_with(&self, uid: &str, kind: KeyKind, extra: &[&str]) -> String {
        let run = |args: &[&str]| {
            let mut all = extra.to_vec();
            all.extend_from_slice(args);
            self.run(&all, b"");
        };
        match kind {
            KeyKind::Rsa => self.gen_key_with(uid, KeyKind::RsaSized("rsa3072"), extra),
            KeyKind::RsaSized(algo) => {
                run(&["--quick-gen-key", uid, algo, "default", "never"]);
                let fpr = self.fingerprint(uid);
                run(&["--quick-add-key", &fpr, algo, "encr", "never"]);
                fpr
            }
            KeyKind::Cv25519 => {
                run(&["--quick-gen-key", uid, "future-default", "default", "never"]);
                self.fingerprint(uid)
            }
        }
    }

    /// The primary fingerprint of the key with this user ID.
    fn fingerprint(&self, uid: &str) -> String {
        let out = self.run(&["--with-colons", "--list-keys", uid], b"");
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines().skip_while(|l| !l.starts_with("pub:"));
        lines
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("fingerprint")
            .to_string()
    }

    /// `gpg --export-secret-keys --armor FPR`.
    fn export_secret(&self, fpr: &str) -> Vec<u8> {
        self.run(&["--export-secret-keys", "--armor", fpr], b"")
    }

    /// Encrypts like sops does (`gpg --encrypt -a -r FPR --trusted-key …`),
    /// with the trailing newline trimmed as sops stores it.
    fn encrypt(&self, fpr: &str, data: &[u8], extra: &[&str]) -> String {
        let trusted = &fpr[fpr.len() - 16..];
        let mut args = vec![
            "--no-default-recipient",
            "--yes",
            "--encrypt",
            "-a",
            "-r",
            fpr,
            "--trusted-key",
            trusted,
            "--no-encrypt-to",
        ];
        args.extend_from_slice(extra);
        let out = self.run(&args, data);
        String::from_utf8(out).unwrap().trim_end().to_string()
    }

    fn decrypt(&self, enc: &str) -> Vec<u8> {
        self.run(&["--quiet", "-d"], enc.as_bytes())
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.path())
            .args(["--kill", "all"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[derive(Clone, Copy, Debug)]
enum KeyKind {
    Rsa,
    /// An RSA primary with an RSA encryption subkey of this gpg algorithm
    /// name (`rsa2048`, `rsa4096`, …).
    RsaSized(&'static str),
    Cv25519,
}

fn random_key(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn dir_sources(dir: &Path) -> KeySources {
    KeySources {
        keys_dirs: vec![dir.to_path_buf()],
        use_env: false,
        gpg_fallback: false,
        weak_rsa: false,
        age_plugins: false,
        ..Default::default()
    }
}

/// A keys folder holding `sops.asc` with the given content.
fn keys_dir(content: &[u8]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("sops.asc"), content).unwrap();
    d
}

fn assert_sops_armor(enc: &str) {
    assert!(
        enc.starts_with("-----BEGIN PGP MESSAGE-----\n\n"),
        "armor has headers or a bad first line:\n{enc}"
    );
    assert!(
        enc.ends_with("\n-----END PGP MESSAGE-----"),
        "bad armor end:\n{enc}"
    );
    assert!(!enc.ends_with('\n'));
    assert!(!enc.contains('\r'));
    let lines: Vec<&str> = enc.lines().collect();
    let crc = lines[lines.len() - 2];
    assert!(
        crc.starts_with('=') && crc.len() == 5,
        "no CRC line:\n{enc}"
    );
    for l in &lines[2..lines.len() - 2] {
        assert!(l.len() <= 64, "armor line too long: {l}");
    }
}

// (1) gpg-made messages unwrap natively, without the gpg fallback.
fn gpg_encrypt_native_decrypt(kind: KeyKind) {
    let Some(home) = GpgHome::new() else { return };
    let fpr = home.gen_key("Test <t@example.com>", kind);
    let dir = keys_dir(&home.export_secret(&fpr));
    let keys = PgpKeys::load(&dir_sources(dir.path()));
    assert_eq!(keys.len(), 1, "problems: {:?}", keys.problems);

    for n in [32, 33] {
        let secret = random_key(n);
        // Default gpg message: PKESK v3, SEIPD v1, ZLIB-compressed literal.
        let enc = home.encrypt(&fpr, &secret, &[]);
        let got = keys.unwrap(&fpr, &enc, false).expect("native unwrap");
        assert_eq!(&got[..], &secret[..]);
        // With the trailing newline as gpg wrote it, too.
        let got = keys.unwrap(&fpr, &format!("{enc}\n"), false).unwrap();
        assert_eq!(&got[..], &secret[..]);
    }

    // Other standard forms: ZIP, uncompressed, anonymous recipient.
    let secret = random_key(32);
    for extra in [
        &["--compress-algo", "zip"][..],
        &["--compress-algo", "none"][..],
        &["--throw-keyids"][..],
        &["--cipher-algo", "AES128"][..],
    ] {
        let enc = home.encrypt(&fpr, &secret, extra);
        let got = keys
            .unwrap(&fpr, &enc, false)
            .unwrap_or_else(|e| panic!("{extra:?}: {e}"));
        assert_eq!(&got[..], &secret[..], "{extra:?}");
    }
}

#[test]
fn gpg_encrypts_kustos_decrypts_rsa() {
    gpg_encrypt_native_decrypt(KeyKind::Rsa);
}

// kustos decrypts RSA with its own constant-time code for moduli up to
// 4096 bits (limb sizes 16, 24 and 32); sizes between the steps and beyond
// them (Sequoia's code) must work as well.
#[test]
fn gpg_rsa_key_sizes_decrypt_natively() {
    let Some(home) = GpgHome::new() else { return };
    for algo in ["rsa2048", "rsa2500", "rsa4096"] {
        let uid = format!("Size {algo} <{algo}@example.com>");
        let fpr = home.gen_key(&uid, KeyKind::RsaSized(algo));
        let dir = keys_dir(&home.export_secret(&fpr));
        let keys = PgpKeys::load(&dir_sources(dir.path()));
        assert_eq!(keys.len(), 1, "{algo}: {:?}", keys.problems);
        for n in [32, 33] {
            let secret = random_key(n);
            let enc = home.encrypt(&fpr, &secret, &[]);
            let got = keys
                .unwrap(&fpr, &enc, false)
                .unwrap_or_else(|e| panic!("{algo}: {e}"));
            assert_eq!(&got[..], &secret[..], "{algo}");
        }
    }
}

#[test]
fn gpg_encrypts_kustos_decrypts_cv25519() {
    gpg_encrypt_native_decrypt(KeyKind::Cv25519);
}

// (2) kustos wraps to a cert from the .asc file; gpg decrypts.
fn kustos_encrypt_gpg_decrypt(kind: KeyKind) {
    let Some(home) = GpgHome::new() else { return };
    let fpr = home.gen_key("Test <t@example.com>", kind);
    let dir = keys_dir(&home.export_secret(&fpr));
    let src = dir_sources(dir.path());
    for (n, fp) in [
        (32, fpr.clone()),
        (33, fpr.to_lowercase()),
        (32, fpr[24..].to_string()),
    ] {
        let secret = random_key(n);
        let enc = pgp::wrap_with(&fp, &secret, &src).expect("wrap_with");
        assert_sops_armor(&enc);
        assert_eq!(home.decrypt(&enc), secret, "gpg -d of a message for {fp}");
        // And kustos reads its own messages.
        let keys = PgpKeys::load(&src);
        assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &secret[..]);
    }
    // A public-only export works for wrapping too.
    let pubdir = keys_dir(&home.run(&["--export", "--armor", &fpr], b""));
    let secret = random_key(32);
    let enc = pgp::wrap_with(&fpr, &secret, &dir_sources(pubdir.path())).unwrap();
    assert_eq!(home.decrypt(&enc), secret);
}

#[test]
fn kustos_encrypts_gpg_decrypts_rsa() {
    kustos_encrypt_gpg_decrypt(KeyKind::Rsa);
}

#[test]
fn kustos_encrypts_gpg_decrypts_cv25519() {
    kustos_encrypt_gpg_decrypt(KeyKind::Cv25519);
}

// (3) generated keys import into gpg and work both ways.
fn generated_key_works_in_gpg(cv25519: bool, bits: u32) {
    let Some(home) = GpgHome::new() else { return };
    let (tsk, public, fpr) =
        pgp::generate_key("Kustos Test", "k@example.com", cv25519, bits).expect("generate_key");
    assert_eq!(fpr.len(), 40);
    assert!(fpr
        .chars()
        .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
    assert!(tsk.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
    assert!(public.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));

    home.run(&["--import"], tsk.as_bytes());
    assert_eq!(home.fingerprint("k@example.com"), fpr);

    let pubdir = keys_dir(public.as_bytes());
    let secret = random_key(32);
    let enc = pgp::wrap_with(&fpr, &secret, &dir_sources(pubdir.path())).unwrap();
    assert_sops_armor(&enc);
    assert_eq!(home.decrypt(&enc), secret);

    // gpg encrypts to the generated key; kustos decrypts with the TSK.
    let secdir = keys_dir(tsk.as_bytes());
    let keys = PgpKeys::load(&dir_sources(secdir.path()));
    assert_eq!(keys.len(), 1);
    let secret = random_key(33);
    let enc = home.encrypt(&fpr, &secret, &[]);
    assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &secret[..]);
}

#[test]
fn generated_cv25519_key_works_in_gpg() {
    generated_key_works_in_gpg(true, 0);
}

#[test]
fn generated_rsa_key_works_in_gpg() {
    generated_key_works_in_gpg(false, 2048);
}

// (4) A message for another key is not ours.
#[test]
fn other_key_gives_no_identity() {
    let Some(home) = GpgHome::new() else { return };
    let mine = home.gen_key("Mine <m@example.com>", KeyKind::Cv25519);
    let theirs = home.gen_key("Theirs <o@example.com>", KeyKind::Cv25519);
    let dir = keys_dir(&home.export_secret(&mine));
    let keys = PgpKeys::load(&dir_sources(dir.path()));
    assert_eq!(keys.len(), 1);
    let enc = home.encrypt(&theirs, &random_key(32), &[]);
    match keys.unwrap(&theirs, &enc, false) {
        Err(UnwrapError::NoIdentity(msg)) => {
            assert!(msg.contains(&theirs), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
        }
        other => panic!("expected NoIdentity, got {:?}", other.map(|_| ())),
    }
    // Even when the caller claims it is for our fingerprint.
    assert!(matches!(
        keys.unwrap(&mine, &enc, false),
        Err(UnwrapError::NoIdentity(_))
    ));
    // And with nothing loaded at all.
    let empty = tempfile::tempdir().unwrap();
    let none = PgpKeys::load(&dir_sources(empty.path()));
    assert!(none.is_empty());
    assert!(matches!(
        none.unwrap(&theirs, &enc, false),
        Err(UnwrapError::NoIdentity(_))
    ));
}

// (5) The gpg fallback: the secret key lives only in GNUPGHOME.
#[test]
fn gpg_fallback_decrypts_and_exports() {
    // GNUPGHOME and SOPS_GPG_EXEC are set for the library calls below.
    if !alone_in_a_child_process("pgp_interop::gpg_fallback_decrypts_and_exports") {
        return;
    }
    let Some(home) = GpgHome::new() else { return };
    let fpr = home.gen_key("Test <t@example.com>", KeyKind::Rsa);
    let other = GpgHome::new().unwrap();
    let other_fpr = other.gen_key("Other <o@example.com>", KeyKind::Cv25519);
    let secret = random_key(32);
    let enc = home.encrypt(&fpr, &secret, &[]);
    let enc_other = other.encrypt(&other_fpr, &secret, &[]);

    with_gpg_env(&home, || {
        let src = KeySources {
            keys_dirs: Vec::new(),
            use_env: false,
            gpg_fallback: true,
            weak_rsa: false,
            age_plugins: false,
            ..Default::default()
        };
        let keys = PgpKeys::load(&src);
        assert!(keys.is_empty());
        // Decryption through `gpg -d`.
        let got = keys.unwrap(&fpr, &enc, true).expect("gpg fallback");
        assert_eq!(&got[..], &secret[..]);
        // Without the fallback, nothing matches.
        assert!(matches!(
            keys.unwrap(&fpr, &enc, false),
            Err(UnwrapError::NoIdentity(_))
        ));
        // gpg has no key for the other message either.
        match keys.unwrap(&other_fpr, &enc_other, true) {
            Err(UnwrapError::NoIdentity(m)) => assert!(!m.contains('\n'), "{m}"),
            other => panic!("expected NoIdentity, got {:?}", other.map(|_| ())),
        }
        // Wrapping with the certificate exported from GnuPG.
        let secret2 = random_key(33);
        let enc2 = pgp::wrap_with(&fpr, &secret2, &src).expect("wrap via gpg --export");
        assert_sops_armor(&enc2);
        assert_eq!(&keys.unwrap(&fpr, &enc2, true).unwrap()[..], &secret2[..]);
        // `wrap` uses the same fallback.
        let enc3 = pgp::wrap(&fpr, &secret2).expect("wrap");
        assert_eq!(&keys.unwrap(&fpr, &enc3, true).unwrap()[..], &secret2[..]);
        // A key GnuPG does not know.
        let err = pgp::wrap_with(&other_fpr, &secret2, &src).unwrap_err();
        assert!(err.to_string().contains(&other_fpr), "{err}");
        // A missing gpg binary is a clear NoIdentity.
        std::env::set_var("SOPS_GPG_EXEC", "/nonexistent/gpg");
        match keys.unwrap(&fpr, &enc, true) {
            Err(UnwrapError::NoIdentity(m)) => assert!(m.contains("/nonexistent/gpg"), "{m}"),
            other => panic!("expected NoIdentity, got {:?}", other.map(|_| ())),
        }
    });
}

// A key file with several keys, public and secret, is fine for both uses.
#[test]
fn mixed_key_file() {
    let Some(home) = GpgHome::new() else { return };
    let a = home.gen_key("A <a@example.com>", KeyKind::Cv25519);
    let b = home.gen_key("B <b@example.com>", KeyKind::Rsa);
    let mut file = home.run(&["--export", "--armor", &a], b"");
    file.extend_from_slice(b"\n");
    file.extend(home.export_secret(&b));
    let dir = keys_dir(&file);
    let keys = PgpKeys::load(&dir_sources(dir.path()));
    assert_eq!(keys.len(), 1, "only B has a secret key");
    let secret = random_key(32);
    let enc_a = pgp::wrap_with(&a, &secret, &dir_sources(dir.path())).unwrap();
    assert_eq!(home.decrypt(&enc_a), secret);
    assert!(matches!(
        keys.unwrap(&a, &enc_a, false),
        Err(UnwrapError::NoIdentity(_))
    ));
    let enc_b = home.encrypt(&b, &secret, &[]);
    assert_eq!(&keys.unwrap(&b, &enc_b, false).unwrap()[..], &secret[..]);
}

/// Runs `f` with GNUPGHOME (and SOPS_GPG_EXEC) pointing at `home`,
/// restoring the environment afterwards, even on panic.
fn with_gpg_env<F: FnOnce() + std::panic::UnwindSafe>(home: &GpgHome, f: F) {
    let _guard = ENV_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let saved_home = std::env::var_os("GNUPGHOME");
    let saved_exec = std::env::var_os("SOPS_GPG_EXEC");
    std::env::set_var("GNUPGHOME", home.path());
    std::env::set_var("SOPS_GPG_EXEC", &home.gpg);
    let result = std::panic::catch_unwind(f);
    match saved_home {
        Some(v) => std::env::set_var("GNUPGHOME", v),
        None => std::env::remove_var("GNUPGHOME"),
    }
    match saved_exec {
        Some(v) => std::env::set_var("SOPS_GPG_EXEC", v),
        None => std::env::remove_var("SOPS_GPG_EXEC"),
    }
    if let Err(p) = result {
        std::panic::resume_unwind(p);
    }
}

// Keys from older GnuPG carry SHA-1 self-signatures, which the standard
// policy rejects; wrapping still works (lenient fallback), as does
// unwrapping.
#[test]
fn sha1_bound_key_still_works() {
    let Some(home) = GpgHome::new() else { return };
    let fpr = home.gen_key_with(
        "Old <old@example.com>",
        KeyKind::Rsa,
        &["--cert-digest-algo", "SHA1"],
    );
    let dir = keys_dir(&home.export_secret(&fpr));
    let src = dir_sources(dir.path());
    let secret = random_key(32);
    let enc = pgp::wrap_with(&fpr, &secret, &src).expect("wrap to a SHA-1 bound key");
    assert_eq!(home.decrypt(&enc), secret);
    let keys = PgpKeys::load(&src);
    assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &secret[..]);
    let enc = home.encrypt(&fpr, &secret, &[]);
    assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &secret[..]);
}

// BZip2 is not compiled in (no pure-Rust backend enabled): a clear error
// natively, and GnuPG takes over when the fallback is allowed.
#[test]
fn bzip2_message() {
    // GNUPGHOME and SOPS_GPG_EXEC are set for the library calls below.
    if !alone_in_a_child_process("pgp_interop::bzip2_message") {
        return;
    }
    let Some(home) = GpgHome::new() else { return };
    let fpr = home.gen_key("Test <t@example.com>", KeyKind::Cv25519);
    let dir = keys_dir(&home.export_secret(&fpr));
    let keys = PgpKeys::load(&dir_sources(dir.path()));
    let secret = random_key(32);
    let enc = home.encrypt(&fpr, &secret, &["--compress-algo", "bzip2"]);
    match keys.unwrap(&fpr, &enc, false) {
        // A build with sequoia's compression-bzip2 feature reads it.
        Ok(got) => assert_eq!(&got[..], &secret[..]),
        Err(UnwrapError::Failed(m)) => assert!(m.contains("BZip2"), "{m}"),
        Err(e) => panic!("unexpected error {e:?}"),
    }
    with_gpg_env(&home, || {
        let got = keys
            .unwrap(&fpr, &enc, true)
            .expect("gpg fallback for bzip2");
        assert_eq!(&got[..], &secret[..]);
    });
}

// Damaged input is a one-line Failed, never a panic.
#[test]
fn damaged_messages_fail_cleanly() {
    let Some(home) = GpgHome::new() else { return };
    let fpr = home.gen_key("Test <t@example.com>", KeyKind::Cv25519);
    let dir = keys_dir(&home.export_secret(&fpr));
    let keys = PgpKeys::load(&dir_sources(dir.path()));
    let secret = random_key(32);
    let enc = home.encrypt(&fpr, &secret, &["--compress-algo", "none"]);
    let lines: Vec<&str> = enc.lines().collect();
    let mut cases = vec![
        "".to_string(),
        "not pgp at all".to_string(),
        enc[..enc.len() / 2].to_string(),
        lines[..lines.len() - 1].join("\n"),
    ];
    // Flip a character in the encrypted body (the last full base64 line).
    let mut body = lines.clone();
    let i = body.len() - 3;
    let flipped: String = body[i]
        .chars()
        .enumerate()
        .map(|(n, c)| {
            if n == 10 {
                if c == 'A' {
                    'B'
                } else {
                    'A'
                }
            } else {
                c
            }
        })
        .collect();
    body[i] = &flipped;
    cases.push(body.join("\n"));
    for case in cases {
        match keys.unwrap(&fpr, &case, false) {
            Err(UnwrapError::Failed(m)) | Err(UnwrapError::NoIdentity(m)) => {
                assert!(!m.contains('\n'), "{m}")
            }
            Err(e) => panic!("unexpected {e:?}"),
            Ok(_) => panic!("damaged message decrypted"),
        }
    }
}

// `gpg --export-secret-subkeys` writes a stub primary key: the encryption
// subkey's secret is enough.
#[test]
fn secret_subkeys_export_works() {
    let Some(home) = GpgHome::new() else { return };
    let fpr = home.gen_key("Test <t@example.com>", KeyKind::Rsa);
    let dir = keys_dir(&home.run(&["--export-secret-subkeys", "--armor", &fpr], b""));
    let keys = PgpKeys::load(&dir_sources(dir.path()));
    assert_eq!(keys.len(), 1, "problems: {:?}", keys.problems);
    let secret = random_key(32);
    let enc = home.encrypt(&fpr, &secret, &[]);
    assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &secret[..]);
}

// A passphrase-protected key in the folder is reported, never used, and
// its passphrase never shows up.
#[test]
fn protected_key_in_folder() {
    let Some(home) = GpgHome::new() else { return };
    let pass = ["--passphrase", "hunter2-pass"];
    let fpr = home.gen_key_with("Test <t@example.com>", KeyKind::Cv25519, &pass);
    let exported = home.run(
        &[pass[0], pass[1], "--export-secret-keys", "--armor", &fpr],
        b"",
    );
    let dir = keys_dir(&exported);
    let keys = PgpKeys::load(&dir_sources(dir.path()));
    assert!(keys.is_empty());
    assert!(
        keys.problems
            .iter()
            .any(|p| p.contains("passphrase-protected")),
        "{:?}",
        keys.problems
    );
    assert!(!format!("{keys:?}").contains("hunter2"));
    let enc = home.encrypt(&fpr, &random_key(32), &[]);
    match keys.unwrap(&fpr, &enc, false) {
        Err(UnwrapError::Failed(m)) => {
            assert!(m.contains("passphrase-protected"), "{m}");
            assert!(!m.contains("hunter2"), "{m}");
        }
        other => panic!("expected Failed, got {:?}", other.map(|_| ())),
    }
    // Wrapping only needs the public part.
    let secret = random_key(32);
    let enc = pgp::wrap_with(&fpr, &secret, &dir_sources(dir.path())).unwrap();
    assert_eq!(
        home.run(&[pass[0], pass[1], "--quiet", "-d"], enc.as_bytes()),
        secret
    );
}
