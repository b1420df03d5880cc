//! OpenPGP master keys, as sops uses them, on top of Sequoia.
//!
//! sops wraps the data key (or a Shamir share) by running
//! `gpg --encrypt -a -r FPR` and stores the armored message with the
//! trailing newline trimmed; it unwraps with `gpg -d`. kustos does both
//! natively:
//!
//! * wrapping looks the certificate up in the `*.asc` files of the key
//!   folders, then (optionally) asks GnuPG for it with `gpg --export`, and
//!   encrypts with Sequoia to every valid encryption subkey. v4 keys get a
//!   SEIPD v1 (MDC) message, which every GnuPG since 1.4 reads.
//! * unwrapping uses the unprotected secret keys found in the `*.asc` files
//!   of the key folders (Flux's `sops.asc` convention), matched against the
//!   message's PKESK recipients, and (optionally) falls back to
//!   `gpg --batch --quiet -d`.
//!
//! `$SOPS_GPG_EXEC` names the GnuPG binary, as in sops; `$GNUPGHOME` is
//! passed through untouched.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sequoia_openpgp as openpgp;

use openpgp::armor;
use openpgp::cert::prelude::*;
use openpgp::crypto::{SessionKey, S2K};
use openpgp::packet::key::{PublicParts, SecretKeyMaterial, SecretParts, UnspecifiedRole};
use openpgp::packet::{Key, Tag, PKESK, SKESK};
use openpgp::parse::stream::{
    DecryptionHelper, DecryptorBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::parse::{PacketParser, PacketParserResult, Parse};
use openpgp::policy::{Policy, StandardPolicy};
use openpgp::serialize::stream::{Armorer, Encryptor, LiteralWriter, Message, Recipient};
use openpgp::serialize::SerializeInto;
use openpgp::types::{
    DataFormat, Features, HashAlgorithm, KeyFlags, RevocationStatus, SymmetricAlgorithm,
};
use openpgp::{Cert, Fingerprint, KeyHandle, KeyID, Packet, Profile};
use zeroize::Zeroizing;

use super::pgp_rsa::{self, RsaDecryptor};
use super::{KeySources, UnwrapError};
use crate::Error;

/// The answer when the OpenPGP library panicked on a message (a bug there,
/// caught so the process answers instead of dying).
pub const OPENPGP_PANIC: &str =
    "the OpenPGP library failed on this message (an internal error; please report it)";

/// The environment variable sops reads for the GnuPG binary.
const GPG_EXEC_ENV: &str = "SOPS_GPG_EXEC";

/// Extra folders of `*.asc` certificates for [`wrap`], set once by the CLI
/// from `--keys-dir` (so encryption finds the same keys decryption does).
static CERT_DIRS: std::sync::RwLock<Vec<std::path::PathBuf>> = std::sync::RwLock::new(Vec::new());

/// Sets the folders [`wrap`] searches before `$KUSTOS_KEYS_DIR` and GnuPG.
pub fn set_cert_dirs(dirs: Vec<std::path::PathBuf>) {
    if let Ok(mut d) = CERT_DIRS.write() {
        *d = dirs;
    }
}

/// Wraps `secret` for the certificate with this fingerprint, looking the
/// certificate up in the `--keys-dir` folders, `$KUSTOS_KEYS_DIR`
/// (colon-separated) and then GnuPG's public keyring.
pub fn wrap(fp: &str, secret: &[u8]) -> crate::Result<String> {
    let mut keys_dirs: Vec<std::path::PathBuf> =
        CERT_DIRS.read().map(|d| d.clone()).unwrap_or_default();
    keys_dirs.extend(
        std::env::var_os("KUSTOS_KEYS_DIR")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default(),
    );
    wrap_with(
        fp,
        secret,
        &KeySources {
            keys_dirs,
            use_env: true,
            gpg_fallback: true,
            weak_rsa: false,
            age_plugins: false,
            kms: Default::default(),
        },
    )
}

/// Wraps `secret` for the certificate with this fingerprint (or key ID),
/// found in the `*.asc` files of `sources.keys_dirs` or, when
/// `sources.gpg_fallback` is set, exported from GnuPG.
///
/// Returns the armored message as sops stores it: no armor headers and no
/// trailing newline.
pub fn wrap_with(fp: &str, secret: &[u8], sources: &KeySources) -> crate::Result<String> {
    let wanted = Wanted::parse(fp)?;
    let mut looked = Vec::new();
    let mut problems = Vec::new();
    let mut cert = None;
    for dir in &sources.keys_dirs {
        for (path, certs) in read_cert_dir(dir, &mut problems) {
            for c in certs {
                if wanted.matches(&c) {
                    merge_candidate(&mut cert, c.strip_secret_key_material(), fp, &path)?;
                }
            }
        }
        looked.push(format!("{}/*.asc", dir.display()));
    }
    if cert.is_none() && sources.gpg_fallback {
        match gpg_export(&wanted.query()) {
            Ok(certs) => {
                for c in certs {
                    if wanted.matches(&c) {
                        merge_candidate(&mut cert, c, fp, Path::new("GnuPG"))?;
                    }
                }
                looked.push("the GnuPG keyring".into());
            }
            Err(e) => looked.push(format!("the GnuPG keyring ({e})")),
        }
    }
    let Some(cert) = cert else {
        let place = if looked.is_empty() {
            "no key folder was given and the GnuPG fallback is off".to_string()
        } else {
            format!("looked in {}", looked.join(", "))
        };
        let place = if problems.is_empty() {
            place
        } else {
            format!("{place}; {}", problems.join("; "))
        };
        return Err(Error::Key(format!(
            "no OpenPGP certificate for {fp}: {place}"
        )));
    };
    encrypt_to_cert(&cert, secret).map_err(|e| Error::Key(format!("PGP encryption to {fp}: {e}")))
}

/// Keeps the first certificate that matched; merges duplicates of it and
/// refuses an ambiguous (short) key ID that names two certificates.
fn merge_candidate(slot: &mut Option<Cert>, c: Cert, fp: &str, from: &Path) -> crate::Result<()> {
    match slot.take() {
        None => *slot = Some(c),
        Some(have) if have.fingerprint() == c.fingerprint() => {
            *slot = Some(
                have.merge_public(c)
                    .map_err(|e| Error::Key(format!("PGP certificate {fp}: {e}")))?,
            );
        }
        Some(have) => {
            return Err(Error::Key(format!(
            "PGP key ID {fp} is ambiguous: it matches {} and {} (in {}); give the full fingerprint",
            have.fingerprint().to_hex(),
            c.fingerprint().to_hex(),
            from.display()
        )))
        }
    }
    Ok(())
}

/// The lenient policy: the standard one, but accepting SHA-1 self
/// signatures and short RSA/DSA keys, which keys made by older GnuPG
/// versions carry (GnuPG, and so sops, still encrypts to them).
fn lenient_policy() -> StandardPolicy<'static> {
    let mut p = StandardPolicy::new();
    p.accept_hash(HashAlgorithm::SHA1);
    for algo in [
        openpgp::policy::AsymmetricAlgorithm::RSA1024,
        openpgp::policy::AsymmetricAlgorithm::DSA1024,
        openpgp::policy::AsymmetricAlgorithm::ElGamal1024,
    ] {
        p.accept_asymmetric_algo(algo);
    }
    p
}

/// Encrypts `secret` to every usable encryption (sub)key of `cert`.
fn encrypt_to_cert(cert: &Cert, secret: &[u8]) -> openpgp::Result<String> {
    let standard = StandardPolicy::new();
    let lenient = lenient_policy();
    let mut keys = encryption_keys(cert, &standard);
    if keys.is_empty() {
        keys = encryption_keys(cert, &lenient);
    }
    if keys.is_empty() {
        return Err(anyhow_msg(format!(
            "certificate {} has no valid encryption key (expired, revoked, or no key marked for encryption)",
            cert.fingerprint().to_hex()
        )));
    }
    let recipients: Vec<Recipient> = keys
        .iter()
        .map(|(key, features)| {
            if key.version() == 4 {
                // Force SEIPD v1 (with MDC) for v4 keys: GnuPG 2.2 and sops'
                // other implementations cannot read SEIPD v2.
                Recipient::new(
                    Features::empty().set_seipdv1(),
                    KeyHandle::from(key.keyid()),
                    key,
                )
            } else {
                Recipient::new(features.clone(), KeyHandle::from(key.fingerprint()), key)
            }
        })
        .collect();

    let mut out = Vec::with_capacity(1024);
    {
        let message = Message::new(&mut out);
        let message = Armorer::new(message).kind(armor::Kind::Message).build()?;
        let message = Encryptor::for_recipients(message, recipients).build()?;
        let mut w = LiteralWriter::new(message)
            .format(DataFormat::Binary)
            .build()?;
        w.write_all(secret)?;
        w.finalize()?;
    }
    let text = String::from_utf8(out).map_err(|_| anyhow_msg("armor is not UTF-8".into()))?;
    Ok(sops_armor(&text))
}

/// Normalizes armor to what sops stores: `\n` line endings, no armor
/// headers, no trailing newline.
fn sops_armor(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let mut lines = text.lines();
    let mut out = String::with_capacity(text.len());
    if let Some(first) = lines.next() {
        out.push_str(first);
        out.push('\n');
    }
    // Drop header lines up to (and keep) the blank separator line.
    let mut in_headers = true;
    for line in lines {
        if in_headers {
            if line.trim().is_empty() {
                in_headers = false;
                out.push('\n');
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    while out.ends_with('\n') {
        out.pop();
    }
    out
}

/// The valid encryption keys of a cert under a policy, with the cert's
/// advertised features.
fn encryption_keys<'a>(
    cert: &'a Cert,
    policy: &'a dyn Policy,
) -> Vec<(&'a Key<PublicParts, UnspecifiedRole>, Features)> {
    let Ok(vc) = cert.with_policy(policy, None) else {
        return Vec::new();
    };
    if vc.alive().is_err() || matches!(vc.revocation_status(), RevocationStatus::Revoked(_)) {
        return Vec::new();
    }
    let features = vc.features().unwrap_or_else(Features::empty);
    vc.keys()
        .supported()
        .alive()
        .revoked(false)
        .for_storage_encryption()
        .for_transport_encryption()
        .map(|ka| (ka.key().role_as_unspecified(), features.clone()))
        .collect()
}

fn anyhow_msg(s: String) -> openpgp::anyhow::Error {
    openpgp::anyhow::Error::msg(s)
}

/// A fingerprint or key ID as the user gave it.
enum Wanted {
    /// A full fingerprint or a 16-hex-digit key ID.
    Handle(KeyHandle),
    /// A short (8-hex-digit) key ID: a suffix of a v4 fingerprint.
    Short(String),
}

impl Wanted {
    fn parse(fp: &str) -> crate::Result<Wanted> {
        let mut s: String = fp.chars().filter(|c| !c.is_whitespace()).collect();
        if s.starts_with("0x") || s.starts_with("0X") {
            s.drain(..2);
        }
        let s = s.to_ascii_uppercase();
        let hex = !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
        let bad = || Error::Key(format!("invalid PGP fingerprint {:?}", truncate(fp)));
        if !hex {
            return Err(bad());
        }
        match s.len() {
            40 | 64 => Fingerprint::from_hex(&s)
                .map(|f| Wanted::Handle(f.into()))
                .map_err(|_| bad()),
            16 => KeyID::from_hex(&s)
                .map(|k| Wanted::Handle(k.into()))
                .map_err(|_| bad()),
            8 => Ok(Wanted::Short(s)),
            _ => Err(bad()),
        }
    }

    /// Whether any key of the cert (primary or subkey) is the wanted one.
    fn matches(&self, cert: &Cert) -> bool {
        cert.keys().any(|ka| self.matches_key(ka.key()))
    }

    fn matches_key<P: openpgp::packet::key::KeyParts, R: openpgp::packet::key::KeyRole>(
        &self,
        key: &Key<P, R>,
    ) -> bool {
        match self {
            Wanted::Handle(h) => h.aliases(key.key_handle()),
            Wanted::Short(s) => key.version() == 4 && key.fingerprint().to_hex().ends_with(s),
        }
    }

    /// What to ask `gpg --export` for.
    fn query(&self) -> String {
        match self {
            Wanted::Handle(KeyHandle::Fingerprint(f)) => f.to_hex(),
            Wanted::Handle(KeyHandle::KeyID(k)) => k.to_hex(),
            Wanted::Short(s) => s.clone(),
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(70).collect()
}

/// Reads every `*.asc` file of a folder (sorted) into certificates.
/// Problems go to `problems` (file names and parser errors only).
fn read_cert_dir(dir: &Path, problems: &mut Vec<String>) -> Vec<(PathBuf, Vec<Cert>)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.push(format!("cannot read keys folder {}: {e}", dir.display()));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "asc") && p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let certs = read_cert_file(&f, problems);
            (!certs.is_empty()).then_some((f, certs))
        })
        .collect()
}

/// Reads the certificates (public or secret) in one file.
fn read_cert_file(path: &Path, problems: &mut Vec<String>) -> Vec<Cert> {
    let bytes = match std::fs::read(path) {
        Ok(b) => Zeroizing::new(b),
        Err(e) => {
            problems.push(format!("cannot read {}: {e}", path.display()));
            return Vec::new();
        }
    };
    parse_certs(&bytes, &path.display().to_string(), problems)
}

fn parse_certs(bytes: &[u8], location: &str, problems: &mut Vec<String>) -> Vec<Cert> {
    let parser = match CertParser::from_bytes(bytes) {
        Ok(p) => p,
        Err(e) => {
            problems.push(format!(
                "{location}: not an OpenPGP key file ({})",
                one_line(&e)
            ));
            return Vec::new();
        }
    };
    let mut certs = Vec::new();
    for c in parser {
        match c {
            Ok(c) => certs.push(c),
            Err(e) => problems.push(format!(
                "{location}: skipped a malformed key ({})",
                one_line(&e)
            )),
        }
    }
    if certs.is_empty() && problems.last().is_none_or(|p| !p.starts_with(location)) {
        problems.push(format!("{location}: no OpenPGP key found"));
    }
    certs
}

/// The first line of an error chain, for messages. Sequoia's errors never
/// carry secret key material.
fn one_line(e: &dyn fmt::Display) -> String {
    let s = e.to_string();
    let s = s.lines().next().unwrap_or("").trim();
    s.chars().take(200).collect()
}

/// The GnuPG binary: `$SOPS_GPG_EXEC` or `gpg`.
fn gpg_binary() -> String {
    match std::env::var(GPG_EXEC_ENV) {
        Ok(s) if !s.trim().is_empty() => s,
        _ => "gpg".into(),
    }
}

/// Exports public certificates from GnuPG (`gpg --export QUERY`).
fn gpg_export(query: &str) -> Result<Vec<Cert>, String> {
    let bin = gpg_binary();
    let out = Command::new(&bin)
        .args(["--batch", "--no-tty", "--export", query])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run {bin}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{bin} --export failed: {}",
            gpg_reason(&out.stderr).unwrap_or_else(|| out.status.to_string())
        ));
    }
    if out.stdout.is_empty() {
        return Err("no such key".into());
    }
    let mut problems = Vec::new();
    let certs = parse_certs(&out.stdout, "gpg --export", &mut problems);
    if certs.is_empty() {
        return Err(problems.join("; "));
    }
    Ok(certs)
}

/// The most telling line of GnuPG's stderr.
fn gpg_reason(stderr: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let pick = lines
        .iter()
        .rev()
        .find(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("failed") || l.contains("error") || l.contains("no secret key")
        })
        .or(lines.last())?;
    Some(pick.chars().take(200).collect())
}

/// A secret key usable for decryption (unprotected secret material),
/// kept as Sequoia parsed it: Sequoia keeps the secret sealed in memory.
struct SecretKey {
    /// Index into `PgpKeys::certs` (its primary fingerprint).
    cert: usize,
    key: Key<SecretParts, UnspecifiedRole>,
    /// For RSA keys, the aws-lc-rs decryptor (or why there is none), set
    /// up on first use: a keys folder may hold many keys.
    rsa: std::sync::OnceLock<Result<RsaDecryptor, String>>,
    /// An RSA key aws-lc-rs does not take, used through Sequoia's
    /// variable-time RSA because the key ring allows it (see
    /// `KeySources::weak_rsa`).
    weak_rsa: bool,
}

impl SecretKey {
    fn is_rsa(&self) -> bool {
        matches!(self.key.mpis(), openpgp::crypto::mpi::PublicKey::RSA { .. })
    }

    fn rsa_bits(&self) -> usize {
        match self.key.mpis() {
            openpgp::crypto::mpi::PublicKey::RSA { n, .. } => n.bits(),
            _ => 0,
        }
    }

    fn rsa_decryptor(&self) -> &Result<RsaDecryptor, String> {
        self.rsa.get_or_init(|| RsaDecryptor::new(&self.key))
    }

    /// Sequoia's own decryptor, for every algorithm but RSA.
    fn sequoia_keypair(&self) -> Option<openpgp::crypto::KeyPair> {
        self.key.clone().into_keypair().ok()
    }
}

/// A secret key kustos does not use (passphrase-protected, or RSA of a
/// size aws-lc-rs does not take); kept only to say why a message for it
/// cannot be decrypted.
struct UnusableKey {
    handle: KeyHandle,
    /// Why, as the end of a sentence starting with "the secret key FPR".
    why: String,
    primary: Fingerprint,
}

/// OpenPGP secret keys available for unwrapping, from the `*.asc` files of
/// the key folders.
#[derive(Default)]
pub struct PgpKeys {
    /// Primary fingerprints of the certificates with usable secret keys.
    certs: Vec<Fingerprint>,
    keys: Vec<SecretKey>,
    unusable: Vec<UnusableKey>,
    /// Where secret keys were found (file names and fingerprints).
    pub locations: Vec<String>,
    /// Take RSA keys aws-lc-rs refuses, through Sequoia (CLI only).
    weak_rsa: bool,
    /// Problems while loading (unreadable files, malformed or protected
    /// keys, RSA keys of unsupported sizes); never secret material.
    pub problems: Vec<String>,
    /// Places that were looked at but held nothing.
    pub looked: Vec<String>,
}

// Secret keys never show up in debug output.
impl fmt::Debug for PgpKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgpKeys")
            .field(
                "certs",
                &self
                    .certs
                    .iter()
                    .map(Fingerprint::to_hex)
                    .collect::<Vec<_>>(),
            )
            .field("locations", &self.locations)
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

impl PgpKeys {
    /// Loads the secret keys in the `*.asc` files of the key folders.
    /// Public certificates in those files are ignored here (they are used
    /// for wrapping).
    pub fn load(src: &KeySources) -> Self {
        let mut me = PgpKeys {
            weak_rsa: src.weak_rsa,
            ..Default::default()
        };
        for dir in &src.keys_dirs {
            let files = read_cert_dir(dir, &mut me.problems);
            if files.is_empty() {
                me.looked.push(format!("{}/*.asc", dir.display()));
            }
            for (path, certs) in files {
                let location = path.display().to_string();
                for cert in certs {
                    me.add_cert(cert, &location);
                }
            }
        }
        me
    }

    /// Secret keys from in-memory armored or binary key data (tests, the
    /// sidecar).
    pub fn from_bytes(data: &[u8], location: &str) -> Self {
        let mut me = PgpKeys::default();
        for cert in parse_certs(data, location, &mut me.problems) {
            me.add_cert(cert, location);
        }
        me
    }

    /// Takes the usable secret keys of `cert`.
    fn add_cert(&mut self, cert: Cert, location: &str) {
        if !cert.is_tsk() {
            return;
        }
        let idx = self.certs.len();
        let fpr = cert.fingerprint();
        let hex = fpr.to_hex();
        let (mut usable, mut protected, mut refused) = (0, 0, 0);
        for ka in cert.keys() {
            let key = ka.key().role_as_unspecified();
            match key.optional_secret() {
                None => {}
                Some(SecretKeyMaterial::Unencrypted(_)) => {
                    let Ok(secret) = key.clone().parts_into_secret() else {
                        continue;
                    };
                    let unsupported = pgp_rsa::unsupported_size(key.parts_as_public());
                    if unsupported.is_some() && self.weak_rsa {
                        self.keys.push(SecretKey {
                            cert: idx,
                            key: secret,
                            rsa: std::sync::OnceLock::new(),
                            weak_rsa: true,
                        });
                        usable += 1;
                        continue;
                    }
                    if let Some(why) = unsupported {
                        // Never handed to variable-time code instead.
                        self.problems.push(format!(
                            "{location}: the RSA key {} of {hex} {why}",
                            key.keyid().to_hex()
                        ));
                        self.unusable.push(UnusableKey {
                            handle: key.key_handle(),
                            why: format!(
                                "(RSA key {}) {why} (import it into GnuPG and allow the gpg fallback)",
                                key.keyid().to_hex()
                            ),
                            primary: fpr.clone(),
                        });
                        refused += 1;
                        continue;
                    }
                    self.keys.push(SecretKey {
                        cert: idx,
                        key: secret,
                        rsa: std::sync::OnceLock::new(),
                        weak_rsa: false,
                    });
                    usable += 1;
                }
                // GnuPG's stubs (`--export-secret-subkeys`, smartcards):
                // the secret is not in the file at all.
                Some(SecretKeyMaterial::Encrypted(e))
                    if matches!(e.s2k(), S2K::Private { .. } | S2K::Unknown { .. }) => {}
                _ => {
                    self.unusable.push(UnusableKey {
                        handle: key.key_handle(),
                        why: "is passphrase-protected; kustos can only use unprotected keys (import it into GnuPG and allow the gpg fallback)".into(),
                        primary: fpr.clone(),
                    });
                    protected += 1;
                }
            }
        }
        if usable == 0 {
            if refused == 0 {
                self.problems.push(if protected > 0 {
                    format!(
                        "{location}: the secret key {hex} is passphrase-protected; kustos can only use unprotected keys (import it into GnuPG instead)"
                    )
                } else {
                    format!("{location}: {hex} holds no secret key material (a GnuPG stub)")
                });
            }
            return;
        }
        self.locations.push(format!("{location} ({hex})"));
        self.certs.push(fpr);
    }

    /// Number of certificates with usable secret keys.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// True when no usable secret key loaded.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Fingerprints (uppercase hex) of the loaded secret certificates.
    pub fn fingerprints(&self) -> Vec<String> {
        self.certs.iter().map(Fingerprint::to_hex).collect()
    }

    /// Unwraps one armored PGP message. `fp` is the fingerprint sops
    /// recorded (used in messages); the message's own PKESK recipients
    /// decide which key decrypts it. With `gpg_fallback`, a message no
    /// loaded key can open (or one in a form kustos cannot read natively)
    /// is handed to `gpg --batch --quiet -d`.
    pub fn unwrap(
        &self,
        fp: &str,
        enc: &str,
        gpg_fallback: bool,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        // Defence in depth: a panic inside the OpenPGP library on some
        // message must not take the sidecar's worker or a render down.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.unwrap_inner(fp, enc, gpg_fallback)
        }))
        .unwrap_or_else(|_| Err(UnwrapError::Failed(OPENPGP_PANIC.into())))
    }

    fn unwrap_inner(
        &self,
        fp: &str,
        enc: &str,
        gpg_fallback: bool,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        let message = enc.as_bytes();
        let scan = match scan_message(message) {
            Ok(s) => s,
            // GnuPG reads some messages sequoia's strict parser refuses
            // (e.g. MPIs with leading zero bits from old GnuPG versions).
            Err(_) if gpg_fallback => return gpg_decrypt(enc),
            Err(e) => return Err(UnwrapError::Failed(format!("not a valid PGP message: {e}"))),
        };
        // Each session-key packet can cost a private-key operation to try;
        // sops writes one per encryption subkey.
        if scan.recipients.len() > MAX_SESSION_KEY_PACKETS {
            return Err(UnwrapError::Failed(format!(
                "the PGP message has {} session-key packets; at most {MAX_SESSION_KEY_PACKETS} are tried",
                scan.recipients.len()
            )));
        }
        if scan.recipients.is_empty() {
            return Err(UnwrapError::Failed(if scan.has_skesk {
                "the PGP message is encrypted with a password, not to a key".into()
            } else {
                "not an encrypted PGP message (no recipients)".into()
            }));
        }
        let named = self.named_match(&scan);
        let anonymous = self.anonymous_match(&scan);
        match scan.container {
            Container::Seipd => {}
            Container::Sed => {
                return Err(UnwrapError::Failed(
                    "the PGP message has no integrity protection (no MDC); refusing to decrypt it"
                        .into(),
                ))
            }
            Container::TruncatedSeipd => {
                return Err(UnwrapError::Failed(
                    "the PGP message is truncated (its encrypted data is too short)".into(),
                ))
            }
            Container::Ocb | Container::Unknown(_) | Container::Missing => {
                let what = match scan.container {
                    Container::Ocb => {
                        "GnuPG's OCB encryption packet (LibrePGP, GnuPG 2.3+)".to_string()
                    }
                    Container::Unknown(t) => format!("an unknown encryption packet ({t})"),
                    _ => "no encrypted data packet".to_string(),
                };
                if gpg_fallback && !matches!(scan.container, Container::Missing) {
                    return gpg_decrypt(enc);
                }
                if named.is_some() || anonymous || matches!(scan.container, Container::Missing) {
                    return Err(UnwrapError::Failed(format!(
                        "the PGP message uses {what}, which kustos cannot decrypt natively{}",
                        if matches!(scan.container, Container::Missing) {
                            ""
                        } else {
                            "; allow the gpg fallback to decrypt it with GnuPG"
                        }
                    )));
                }
                return Err(self.no_identity(fp, &scan));
            }
        }

        if named.is_some() || anonymous {
            let mut outcome = Outcome::default();
            match self.decrypt_native(message, &mut outcome) {
                Ok(pt) => return Ok(pt),
                Err(e) => {
                    if let Some(what) = &outcome.unsupported {
                        if gpg_fallback {
                            return gpg_decrypt(enc);
                        }
                        return Err(UnwrapError::Failed(format!(
                            "the PGP message uses {what}, which this kustos build cannot read; allow the gpg fallback to decrypt it with GnuPG"
                        )));
                    }
                    if let Some((cert, why)) = outcome.unusable_key {
                        return Err(UnwrapError::Failed(format!("the secret key {cert} {why}")));
                    }
                    if let Some(cert) = outcome.matched_cert.or(named) {
                        return Err(UnwrapError::Failed(format!(
                            "decrypting with the secret key {cert} failed: {}",
                            one_line(&e)
                        )));
                    }
                    // Only anonymous recipients, and none of our keys
                    // opened them: not ours.
                }
            }
        }
        let unusable = self.unusable.iter().find(|u| {
            scan.recipients
                .iter()
                .any(|r| r.as_ref().is_some_and(|r| r.aliases(&u.handle)))
        });
        let why = |u: &UnusableKey| format!("the secret key {} {}", u.primary.to_hex(), u.why);
        if gpg_fallback {
            // GnuPG may hold the key kustos does not use; if it cannot
            // help either, the reason kustos did not use it comes first.
            return match (gpg_decrypt(enc), unusable) {
                (Err(e), Some(u)) => Err(UnwrapError::Failed(format!("{}; {e}", why(u)))),
                (result, _) => result,
            };
        }
        if let Some(u) = unusable {
            return Err(UnwrapError::Failed(why(u)));
        }
        Err(self.no_identity(fp, &scan))
    }

    /// The primary fingerprint of a loaded cert with a secret key that a
    /// PKESK names.
    fn named_match(&self, scan: &Scan) -> Option<String> {
        scan.recipients.iter().flatten().find_map(|r| {
            self.keys
                .iter()
                .find(|sk| r.aliases(sk.key.key_handle()))
                .map(|sk| self.certs[sk.cert].to_hex())
        })
    }

    /// Whether an anonymous PKESK could be for one of our keys.
    fn anonymous_match(&self, scan: &Scan) -> bool {
        scan.recipients
            .iter()
            .zip(&scan.algos)
            .any(|(r, algo)| r.is_none() && self.keys.iter().any(|sk| sk.key.pk_algo() == *algo))
    }

    fn no_identity(&self, fp: &str, scan: &Scan) -> UnwrapError {
        let ids: Vec<String> = scan
            .recipients
            .iter()
            .map(|r| match r {
                Some(h) => h.to_hex(),
                None => "anonymous".into(),
            })
            .collect();
        let what = if self.keys.is_empty() {
            "no PGP secret key is loaded".to_string()
        } else {
            format!(
                "none of the {} loaded PGP secret key(s) matches",
                self.certs.len()
            )
        };
        UnwrapError::NoIdentity(format!(
            "no secret key for {fp}: {what} (the message is for key ID {})",
            ids.join(", ")
        ))
    }

    fn decrypt_native(
        &self,
        enc: &[u8],
        outcome: &mut Outcome,
    ) -> openpgp::Result<Zeroizing<Vec<u8>>> {
        // Old messages may use ciphers the standard policy now rejects;
        // GnuPG still decrypts them, and so do we.
        let mut policy = StandardPolicy::new();
        #[allow(deprecated)]
        let legacy = [
            SymmetricAlgorithm::IDEA,
            SymmetricAlgorithm::TripleDES,
            SymmetricAlgorithm::CAST5,
            SymmetricAlgorithm::Blowfish,
        ];
        for algo in legacy {
            policy.accept_symmetric_algo(algo);
        }
        let helper = Helper {
            keys: self,
            outcome,
        };
        let mut decryptor =
            DecryptorBuilder::from_bytes(enc)?.with_policy(&policy, None, helper)?;
        let mut pt = Zeroizing::new(Vec::with_capacity(64));
        decryptor.read_to_end(&mut pt)?;
        if !decryptor.message_processed() {
            return Err(anyhow_msg("the message is truncated".into()));
        }
        Ok(pt)
    }
}

/// The outer layer of a message: who it is for and how it is encrypted.
/// The most public-key encrypted session-key packets one message may hold.
pub const MAX_SESSION_KEY_PACKETS: usize = 32;

struct Scan {
    /// PKESK recipients (None: anonymous), in order.
    recipients: Vec<Option<KeyHandle>>,
    /// The PKESKs' public-key algorithms, parallel to `recipients`.
    algos: Vec<openpgp::types::PublicKeyAlgorithm>,
    /// There were password-encrypted session keys.
    has_skesk: bool,
    container: Container,
}

/// The encrypted data packet of a message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Container {
    /// SEIPD v1 (with MDC) or v2 (AEAD): Sequoia reads both.
    Seipd,
    /// SEIPD v1 whose encrypted data cannot even hold its prefix and MDC.
    TruncatedSeipd,
    /// Symmetrically encrypted data without integrity protection.
    Sed,
    /// LibrePGP's OCB encrypted data packet (tag 20).
    Ocb,
    /// Something else.
    Unknown(Tag),
    /// No encrypted data packet after the session keys.
    Missing,
}

/// The least encrypted data a SEIPD v1 packet holds: the random prefix of
/// the largest cipher block (16 bytes) and its 2 check bytes, and the
/// 22-byte MDC packet. Sequoia's parser panics on decrypted data shorter
/// than the prefix (a truncated packet), so such messages never reach it.
const MIN_SEIPD_V1_DATA: usize = 16 + 2 + 22;

/// Reads the session key packets and the kind of encrypted data packet,
/// without decrypting anything.
fn scan_message(enc: &[u8]) -> openpgp::Result<Scan> {
    let mut scan = Scan {
        recipients: Vec::new(),
        algos: Vec::new(),
        has_skesk: false,
        container: Container::Missing,
    };
    let mut ppr = PacketParser::from_bytes(enc)?;
    while let PacketParserResult::Some(mut pp) = ppr {
        if matches!(&pp.packet, Packet::SEIP(seip) if seip.version() == 1) {
            // Sequoia's own parser reads the body (its version octet is
            // already consumed); the message is small.
            let data = pp.buffer_unread_content()?.len();
            scan.container = if data < MIN_SEIPD_V1_DATA {
                Container::TruncatedSeipd
            } else {
                Container::Seipd
            };
            break;
        }
        match &pp.packet {
            Packet::PKESK(p) => {
                scan.recipients
                    .push(p.recipient().filter(|h| !is_wildcard(h)));
                scan.algos.push(p.pk_algo());
            }
            Packet::SKESK(_) => scan.has_skesk = true,
            Packet::Marker(_) | Packet::Padding(_) => {}
            Packet::SEIP(_) => {
                scan.container = Container::Seipd;
                break;
            }
            p => {
                scan.container = match p.tag() {
                    Tag::SED => Container::Sed,
                    Tag::AED => Container::Ocb,
                    t => Container::Unknown(t),
                };
                break;
            }
        }
        ppr = pp.next()?.1;
    }
    Ok(scan)
}

/// What the decryption helper saw.
#[derive(Default)]
struct Outcome {
    /// The primary fingerprint of the cert whose key opened the message.
    matched_cert: Option<String>,
    /// A packet form this build cannot read (e.g. BZip2 compression).
    unsupported: Option<String>,
    /// A key the message names that cannot be used, and why (a property
    /// of the key, never of the message).
    unusable_key: Option<(String, String)>,
}

struct Helper<'a> {
    keys: &'a PgpKeys,
    outcome: &'a mut Outcome,
}

impl VerificationHelper for Helper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(Vec::new())
    }

    fn inspect(&mut self, pp: &PacketParser) -> openpgp::Result<()> {
        if let Packet::CompressedData(c) = &pp.packet {
            if !c.algo().is_supported() {
                self.outcome.unsupported = Some(format!("{} compression", c.algo()));
            }
        }
        Ok(())
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        // Signatures are irrelevant for sops, but the message must be
        // encrypted: a bare literal packet must not pass as a data key.
        if structure
            .iter()
            .any(|l| matches!(l, MessageLayer::Encryption { .. }))
        {
            Ok(())
        } else {
            Err(anyhow_msg("the message is not encrypted".into()))
        }
    }
}

impl DecryptionHelper for Helper<'_> {
    fn decrypt(
        &mut self,
        pkesks: &[PKESK],
        _skesks: &[SKESK],
        sym_algo: Option<SymmetricAlgorithm>,
        decrypt: &mut dyn FnMut(Option<SymmetricAlgorithm>, &SessionKey) -> bool,
    ) -> openpgp::Result<Option<Cert>> {
        // Named recipients first, then anonymous ones (GnuPG's
        // --throw-keyids), which are tried against every key of the
        // matching algorithm.
        for anonymous_pass in [false, true] {
            for pkesk in pkesks {
                let recipient = pkesk.recipient().filter(|h| !is_wildcard(h));
                if recipient.is_none() != anonymous_pass {
                    continue;
                }
                for sk in &self.keys.keys {
                    let hit = match &recipient {
                        Some(r) => r.aliases(sk.key.key_handle()),
                        None => sk.key.pk_algo() == pkesk.pk_algo(),
                    };
                    if !hit {
                        continue;
                    }
                    // RSA only ever in aws-lc-rs: a key it cannot take is
                    // reported, never handed to Sequoia's variable-time RSA.
                    let unwrapped = if sk.weak_rsa {
                        eprintln!(
                            "kustos: warning: decrypting with the {}-bit RSA key {} in variable-time code; keys under 2048 bits are weak, replace it",
                            sk.rsa_bits(),
                            sk.key.keyid().to_hex()
                        );
                        let Some(mut pair) = sk.sequoia_keypair() else {
                            continue;
                        };
                        pkesk.decrypt(&mut pair, sym_algo)
                    } else if sk.is_rsa() {
                        match sk.rsa_decryptor() {
                            Ok(rsa) => pkesk.decrypt(&mut &*rsa, sym_algo),
                            Err(why) => {
                                self.outcome.unusable_key.get_or_insert_with(|| {
                                    (self.keys.certs[sk.cert].to_hex(), why.clone())
                                });
                                continue;
                            }
                        }
                    } else {
                        let Some(mut pair) = sk.sequoia_keypair() else {
                            continue;
                        };
                        pkesk.decrypt(&mut pair, sym_algo)
                    };
                    if let Some((algo, session_key)) = unwrapped {
                        if decrypt(algo, &session_key) {
                            self.outcome.matched_cert = Some(self.keys.certs[sk.cert].to_hex());
                            return Ok(None);
                        }
                    }
                }
            }
        }
        Err(anyhow_msg(
            "the session key could not be decrypted (wrong key or corrupted message)".into(),
        ))
    }
}

fn is_wildcard(h: &KeyHandle) -> bool {
    match h {
        KeyHandle::KeyID(k) => k.is_wildcard(),
        KeyHandle::Fingerprint(_) => false,
    }
}

/// `gpg --batch --quiet -d` with the armored message on stdin.
fn gpg_decrypt(enc: &str) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
    let bin = gpg_binary();
    let mut child = Command::new(&bin)
        .args(["--batch", "--quiet", "-d"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            UnwrapError::NoIdentity(format!(
                "no loaded PGP secret key matches and GnuPG is not usable (cannot run {bin}: {e})"
            ))
        })?;
    let mut stdin = child.stdin.take();
    let input = enc.as_bytes().to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut s) = stdin.take() {
            let _ = s.write_all(&input);
            let _ = s.write_all(b"\n");
        }
    });
    let out = child.wait_with_output();
    let _ = writer.join();
    let out = out.map_err(|e| UnwrapError::Failed(format!("running {bin} failed: {e}")))?;
    let stdout = Zeroizing::new(out.stdout);
    if out.status.success() {
        if stdout.is_empty() {
            return Err(UnwrapError::Failed(format!(
                "{bin} -d returned no plaintext"
            )));
        }
        return Ok(Zeroizing::new(stdout.to_vec()));
    }
    let reason = gpg_reason(&out.stderr).unwrap_or_else(|| out.status.to_string());
    if reason.to_ascii_lowercase().contains("no secret key") {
        Err(UnwrapError::NoIdentity(format!(
            "no loaded PGP secret key matches, and {bin} has none either ({reason})"
        )))
    } else {
        Err(UnwrapError::Failed(format!("{bin} -d failed: {reason}")))
    }
}

/// Generates a passwordless OpenPGP key that GnuPG 2.2 can import and use:
/// v4, an EdDSA (Ed25519) primary key with a Curve25519 ECDH encryption
/// subkey, or RSA of `rsa_bits` for both. The key advertises SEIPD v1 only
/// so every implementation encrypts to it in a form GnuPG 2.2 reads.
///
/// Returns the armored secret key (TSK), the armored public certificate
/// and the fingerprint in uppercase hex.
pub fn generate_key(
    name: &str,
    email: &str,
    cv25519: bool,
    rsa_bits: u32,
) -> crate::Result<(String, String, String)> {
    let name = name.trim();
    let email = email.trim();
    let uid = match (name.is_empty(), email.is_empty()) {
        (true, true) => {
            return Err(Error::Key(
                "a PGP key needs a name or an email address".into(),
            ))
        }
        (false, true) => name.to_string(),
        (true, false) => format!("<{email}>"),
        (false, false) => format!("{name} <{email}>"),
    };
    let gen = || -> openpgp::Result<Cert> {
        let mut b = CertBuilder::new()
            .set_profile(Profile::RFC4880)?
            .set_features(Features::empty().set_seipdv1())?
            .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
            .add_userid(uid.as_str())
            .add_subkey(
                KeyFlags::empty()
                    .set_storage_encryption()
                    .set_transport_encryption(),
                None,
                None,
            );
        b = b.set_cipher_suite(match (cv25519, rsa_bits) {
            (true, _) => CipherSuite::Cv25519,
            (false, 2048) => CipherSuite::RSA2k,
            (false, 4096) => CipherSuite::RSA4k,
            (false, _) => CipherSuite::RSA3k,
        });
        let (cert, _revocation) = b.generate()?;
        Ok(cert)
    };
    if !cv25519 && ![2048, 3072, 4096].contains(&rsa_bits) {
        return Err(Error::Key(format!(
            "RSA keys must have 2048, 3072 or 4096 bits, not {rsa_bits}"
        )));
    }
    let cert = gen().map_err(|e| Error::Key(format!("PGP key generation: {}", one_line(&e))))?;
    let tsk = cert
        .as_tsk()
        .armored()
        .to_vec()
        .map_err(|e| Error::Key(format!("PGP key serialization: {}", one_line(&e))))?;
    let public = cert
        .armored()
        .to_vec()
        .map_err(|e| Error::Key(format!("PGP key serialization: {}", one_line(&e))))?;
    let tsk = String::from_utf8(tsk).map_err(|e| Error::Key(e.to_string()))?;
    let public = String::from_utf8(public).map_err(|e| Error::Key(e.to_string()))?;
    Ok((tsk, public, cert.fingerprint().to_hex()))
}

/// The primary fingerprints (uppercase hex) of the certificates in a key
/// file (public or secret).
pub fn fingerprint_of_cert_file(path: &Path) -> crate::Result<Vec<String>> {
    let mut problems = Vec::new();
    let certs = read_cert_file(path, &mut problems);
    if certs.is_empty() {
        return Err(Error::Key(problems.join("; ")));
    }
    Ok(certs.iter().map(|c| c.fingerprint().to_hex()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_sources(dir: &Path) -> KeySources {
        KeySources {
            keys_dirs: vec![dir.to_path_buf()],
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_cv25519() {
        let (tsk, public, fpr) = generate_key("Test", "t@example.com", true, 0).unwrap();
        assert_eq!(fpr.len(), 40);
        assert!(tsk.contains("PRIVATE KEY BLOCK"));
        assert!(public.contains("PUBLIC KEY BLOCK"));
        let pubdir = tempfile::tempdir().unwrap();
        std::fs::write(pubdir.path().join("pub.asc"), &public).unwrap();
        let secret = [7u8; 32];
        let enc = wrap_with(&fpr.to_lowercase(), &secret, &dir_sources(pubdir.path())).unwrap();
        assert!(enc.starts_with("-----BEGIN PGP MESSAGE-----\n\n"));
        assert!(enc.ends_with("\n-----END PGP MESSAGE-----"));
        assert!(!enc.contains("Comment:"));
        // Only the public key is in the folder: no secret key there.
        let keys = PgpKeys::load(&dir_sources(pubdir.path()));
        assert!(keys.is_empty());
        assert!(matches!(
            keys.unwrap(&fpr, &enc, false),
            Err(UnwrapError::NoIdentity(_))
        ));
        let secdir = tempfile::tempdir().unwrap();
        std::fs::write(secdir.path().join("sops.asc"), &tsk).unwrap();
        let keys = PgpKeys::load(&dir_sources(secdir.path()));
        assert_eq!(keys.len(), 1);
        let pt = keys.unwrap(&fpr, &enc, false).unwrap();
        assert_eq!(&pt[..], &secret);
        // Wrapping by key ID (last 16 hex digits) from the secret key file.
        let enc2 = wrap_with(&fpr[24..], &[1u8; 33], &dir_sources(secdir.path())).unwrap();
        assert_eq!(&keys.unwrap("x", &enc2, false).unwrap()[..], &[1u8; 33]);
        let dbg = format!("{keys:?}");
        assert!(dbg.contains(&fpr) && !dbg.contains("PRIVATE"));
    }

    #[test]
    fn rsa_keys_decrypt_in_aws_lc() {
        let (tsk, _, fpr) = generate_key("R", "r@example.com", false, 2048).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sops.asc"), &tsk).unwrap();
        let keys = PgpKeys::load(&dir_sources(dir.path()));
        assert_eq!(keys.len(), 1);
        // The primary and the encryption subkey, as Sequoia parsed them.
        assert_eq!(keys.keys.len(), 2);
        assert!(keys.keys.iter().all(|k| k.is_rsa()));
        let enc = wrap_with(&fpr, &[5u8; 32], &dir_sources(dir.path())).unwrap();
        assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &[5u8; 32]);
        // Only the key that decrypted set up its aws-lc-rs decryptor.
        assert_eq!(
            keys.keys.iter().filter(|k| k.rsa.get().is_some()).count(),
            1
        );
        let dbg = format!("{keys:?}");
        assert!(dbg.contains(&fpr) && !dbg.contains("PRIVATE"));
        // Binary key data too.
        let binary = Cert::from_bytes(tsk.as_bytes())
            .unwrap()
            .as_tsk()
            .to_vec()
            .unwrap();
        let keys = PgpKeys::from_bytes(&binary, "mem");
        assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &[5u8; 32]);
    }

    /// RSA keys aws-lc-rs does not take are refused at load, with a
    /// problem line (the sidecar refuses to start on it) and a clear
    /// answer for a message to them: never Sequoia's variable-time RSA.
    #[test]
    fn small_rsa_keys_are_refused() {
        let cert = with_rsa_1024_subkey();
        let tsk = cert.as_tsk().armored().to_vec().unwrap();
        let keys = PgpKeys::from_bytes(&tsk, "small.asc");
        assert_eq!(keys.problems.len(), 1, "{:?}", keys.problems);
        let p = &keys.problems[0];
        assert!(
            p.contains("has 1024 bits") && p.contains("aws-lc-rs"),
            "{p}"
        );
        // The 2048-bit primary stays usable.
        assert_eq!(keys.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("k.asc"), cert.armored().to_vec().unwrap()).unwrap();
        let fpr = cert.fingerprint().to_hex();
        let enc = wrap_with(&fpr, &[1u8; 32], &dir_sources(dir.path())).unwrap();
        match keys.unwrap(&fpr, &enc, false) {
            Err(UnwrapError::Failed(m)) => {
                assert!(m.contains("has 1024 bits") && m.contains(&fpr), "{m}")
            }
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }

    /// A 2048-bit RSA certificate with an RSA-1024 encryption subkey, bound
    /// by hand because the certificate builder only makes standard sizes.
    fn with_rsa_1024_subkey() -> Cert {
        use openpgp::packet::key::{Key4, SecretParts, SubordinateRole};
        use openpgp::packet::signature::SignatureBuilder;
        use openpgp::packet::{Key, Packet};
        use openpgp::types::SignatureType;
        let (cert, _) = CertBuilder::new()
            .add_userid("small@example.com")
            .set_cipher_suite(CipherSuite::RSA2k)
            .generate()
            .unwrap();
        let subkey: Key<SecretParts, SubordinateRole> = Key4::generate_rsa(1024).unwrap().into();
        let mut signer = cert
            .primary_key()
            .key()
            .clone()
            .parts_into_secret()
            .unwrap()
            .into_keypair()
            .unwrap();
        let binding = subkey
            .bind(
                &mut signer,
                &cert,
                SignatureBuilder::new(SignatureType::SubkeyBinding)
                    .set_key_flags(KeyFlags::empty().set_transport_encryption())
                    .unwrap(),
            )
            .unwrap();
        cert.insert_packets(vec![Packet::from(subkey), binding.into()])
            .unwrap()
            .0
    }

    #[test]
    fn cv25519_keys_decrypt_in_sequoia() {
        let (tsk, _, fpr) = generate_key("C", "c@example.com", true, 0).unwrap();
        let keys = PgpKeys::from_bytes(tsk.as_bytes(), "mem");
        assert_eq!(keys.len(), 1);
        assert!(keys.keys.iter().all(|k| !k.is_rsa()));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sops.asc"), &tsk).unwrap();
        let enc = wrap_with(&fpr, &[6u8; 32], &dir_sources(dir.path())).unwrap();
        assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &[6u8; 32]);
    }

    #[test]
    fn no_identity_for_other_key() {
        let (tsk_a, _, _) = generate_key("A", "a@example.com", true, 0).unwrap();
        let (_, pub_b, fpr_b) = generate_key("B", "b@example.com", true, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.asc"), &pub_b).unwrap();
        let enc = wrap_with(&fpr_b, &[2u8; 32], &dir_sources(dir.path())).unwrap();
        let keys = PgpKeys::from_bytes(tsk_a.as_bytes(), "a");
        assert_eq!(keys.len(), 1);
        match keys.unwrap(&fpr_b, &enc, false) {
            Err(UnwrapError::NoIdentity(m)) => assert!(m.contains(&fpr_b), "{m}"),
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn several_keys_per_file_and_bad_input() {
        let (tsk_a, _, fpr_a) = generate_key("A", "a@example.com", true, 0).unwrap();
        let (tsk_b, _, fpr_b) = generate_key("B", "b@example.com", true, 0).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keys.asc"), format!("{tsk_a}\n{tsk_b}")).unwrap();
        let keys = PgpKeys::load(&dir_sources(dir.path()));
        assert_eq!(keys.len(), 2);
        let enc = wrap_with(&fpr_b, &[3u8; 32], &dir_sources(dir.path())).unwrap();
        assert_eq!(&keys.unwrap(&fpr_a, &enc, false).unwrap()[..], &[3u8; 32]);
        assert!(matches!(
            keys.unwrap(&fpr_a, "garbage", false),
            Err(UnwrapError::Failed(_))
        ));
        assert!(wrap_with("nothex", &[0; 32], &dir_sources(dir.path())).is_err());
        let missing = "0123456789ABCDEF0123456789ABCDEF01234567";
        let err = wrap_with(missing, &[0; 32], &dir_sources(dir.path())).unwrap_err();
        assert!(err.to_string().contains(missing));
    }

    #[test]
    fn armor_normalization() {
        let s = "-----BEGIN PGP MESSAGE-----\r\nComment: x\r\n\r\nAAAA\r\n=abcd\r\n-----END PGP MESSAGE-----\r\n";
        assert_eq!(
            sops_armor(s),
            "-----BEGIN PGP MESSAGE-----\n\nAAAA\n=abcd\n-----END PGP MESSAGE-----"
        );
    }

    fn seip_version(enc: &str) -> Option<u8> {
        let mut ppr = PacketParser::from_bytes(enc.as_bytes()).unwrap();
        while let PacketParserResult::Some(pp) = ppr {
            if let Packet::SEIP(p) = &pp.packet {
                return Some(p.version());
            }
            ppr = pp.next().unwrap().1;
        }
        None
    }

    #[test]
    fn aead_messages_decrypt() {
        use openpgp::types::AEADAlgorithm;
        let (tsk, _, fpr) = generate_key("Aead", "aead@example.com", true, 0).unwrap();
        let keys = PgpKeys::from_bytes(tsk.as_bytes(), "mem");
        let cert = Cert::from_bytes(tsk.as_bytes()).unwrap();
        let p = StandardPolicy::new();
        let mut tried = 0;
        for algo in [AEADAlgorithm::OCB, AEADAlgorithm::GCM, AEADAlgorithm::EAX] {
            if !algo.is_supported() {
                continue;
            }
            tried += 1;
            let recipients = cert
                .keys()
                .with_policy(&p, None)
                .supported()
                .for_storage_encryption()
                .for_transport_encryption()
                .map(|ka| Recipient::new(Features::sequoia(), ka.key().key_handle(), ka.key()))
                .collect::<Vec<_>>();
            let mut out = Vec::new();
            let m = Message::new(&mut out);
            let m = Armorer::new(m).build().unwrap();
            let m = Encryptor::for_recipients(m, recipients)
                .aead_algo(algo)
                .build()
                .unwrap();
            let m = openpgp::serialize::stream::Compressor::new(m)
                .algo(openpgp::types::CompressionAlgorithm::Zlib)
                .build()
                .unwrap();
            let mut w = LiteralWriter::new(m).build().unwrap();
            w.write_all(&[9u8; 32]).unwrap();
            w.finalize().unwrap();
            let enc = String::from_utf8(out).unwrap();
            assert_eq!(seip_version(&enc), Some(2));
            let pt = keys
                .unwrap(&fpr, &enc, false)
                .unwrap_or_else(|e| panic!("{algo:?}: {e}"));
            assert_eq!(&pt[..], &[9u8; 32]);
        }
        assert!(tried > 0);
    }

    #[test]
    fn a_message_with_too_many_session_key_packets_is_refused() {
        let (tsk, _, fpr) = generate_key("C", "c@example.com", true, 0).unwrap();
        let keys = PgpKeys::from_bytes(tsk.as_bytes(), "test");
        let cert = Cert::from_bytes(tsk.as_bytes()).unwrap();
        let p = StandardPolicy::new();
        let key = cert
            .keys()
            .with_policy(&p, None)
            .for_storage_encryption()
            .next()
            .unwrap();
        let mut out = Vec::new();
        let m = Armorer::new(Message::new(&mut out)).build().unwrap();
        let recipients: Vec<Recipient> = (0..=MAX_SESSION_KEY_PACKETS)
            .map(|_| {
                Recipient::new(
                    Features::empty().set_seipdv1(),
                    key.key().key_handle(),
                    key.key(),
                )
            })
            .collect();
        let m = Encryptor::for_recipients(m, recipients).build().unwrap();
        let mut w = LiteralWriter::new(m).build().unwrap();
        w.write_all(&[7u8; 32]).unwrap();
        w.finalize().unwrap();
        let enc = String::from_utf8(out).unwrap();
        match keys.unwrap(&fpr, &enc, false) {
            Err(UnwrapError::Failed(m)) => assert!(m.contains("session-key packets"), "{m}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn seipd_versions_chosen_for_certs() {
        // A v4 cert that advertises SEIPD v2 still gets SEIPD v1.
        let (v4, _) = CertBuilder::general_purpose(Some("v4@example.com"))
            .set_profile(Profile::RFC4880)
            .unwrap()
            .set_features(Features::sequoia())
            .unwrap()
            .generate()
            .unwrap();
        assert!(Features::sequoia().supports_seipdv2());
        // A v6 cert gets SEIPD v2 (GnuPG 2.2 cannot use v6 keys anyway).
        let (v6, _) = CertBuilder::general_purpose(Some("v6@example.com"))
            .set_profile(Profile::RFC9580)
            .unwrap()
            .generate()
            .unwrap();
        for (cert, version) in [(v4, 1), (v6, 2)] {
            let dir = tempfile::tempdir().unwrap();
            let tsk = cert.as_tsk().armored().to_vec().unwrap();
            std::fs::write(dir.path().join("k.asc"), &tsk).unwrap();
            let fpr = cert.fingerprint().to_hex();
            let enc = wrap_with(&fpr, &[5u8; 32], &dir_sources(dir.path())).unwrap();
            assert_eq!(seip_version(&enc), Some(version), "{fpr}");
            assert!(enc.starts_with("-----BEGIN PGP MESSAGE-----\n\n"));
            assert!(enc.ends_with("\n-----END PGP MESSAGE-----"));
            let keys = PgpKeys::load(&dir_sources(dir.path()));
            assert_eq!(&keys.unwrap(&fpr, &enc, false).unwrap()[..], &[5u8; 32]);
        }
    }

    #[test]
    fn protected_keys_are_reported() {
        let (cert, _) = CertBuilder::general_purpose(Some("p@example.com"))
            .set_profile(Profile::RFC4880)
            .unwrap()
            .set_password(Some("secret-pass".into()))
            .generate()
            .unwrap();
        let tsk = cert.as_tsk().armored().to_vec().unwrap();
        let keys = PgpKeys::from_bytes(&tsk, "mem");
        assert!(keys.is_empty());
        assert_eq!(keys.problems.len(), 1);
        assert!(keys.problems[0].contains("passphrase-protected"));
        assert!(!keys.problems[0].contains("secret-pass"));
        let public = cert.armored().to_vec().unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.asc"), &public).unwrap();
        let fpr = cert.fingerprint().to_hex();
        let enc = wrap_with(&fpr, &[1u8; 32], &dir_sources(dir.path())).unwrap();
        match keys.unwrap(&fpr, &enc, false) {
            Err(UnwrapError::Failed(m)) => assert!(m.contains("passphrase-protected"), "{m}"),
            other => panic!("unexpected {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn unencrypted_literal_is_rejected() {
        let (tsk, _, fpr) = generate_key("L", "l@example.com", true, 0).unwrap();
        let keys = PgpKeys::from_bytes(tsk.as_bytes(), "mem");
        let mut out = Vec::new();
        let m = Message::new(&mut out);
        let m = Armorer::new(m).build().unwrap();
        let mut w = LiteralWriter::new(m).build().unwrap();
        w.write_all(&[0u8; 32]).unwrap();
        w.finalize().unwrap();
        let enc = String::from_utf8(out).unwrap();
        assert!(matches!(
            keys.unwrap(&fpr, &enc, false),
            Err(UnwrapError::Failed(_))
        ));
    }

    #[test]
    fn send_sync() {
        fn check<T: Send + Sync>() {}
        check::<PgpKeys>();
    }
}
