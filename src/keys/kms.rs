//! AWS KMS master keys, as sops 3.11 uses them.
//!
//! The data key (or a Shamir share) is sent to KMS `Encrypt` and stored as
//! the base64 ciphertext; KMS `Decrypt` gives it back. Every call names the
//! key's ARN (so KMS refuses a ciphertext made under another key) and the
//! entry's encryption context; the region is the one in the ARN; a `role`
//! is assumed through STS first, with the session name sops uses. The
//! credentials and endpoints are the AWS SDK's standard chain (environment,
//! shared config and profiles, SSO, web identity such as EKS IRSA,
//! container credentials such as EKS Pod Identity, instance metadata), so
//! `AWS_ENDPOINT_URL`, `AWS_PROFILE` and the rest work as for sops.
//!
//! The SDK runs on the runtime `keys::runtime` starts at the first network
//! call of a process, so files with age or OpenPGP keys only never pay for
//! it. Clients are built once per region, profile and role.
//!
//! Without the `aws-kms` feature the parsing below still works (entries are
//! kept on rewrite) but every call reports that this build has no KMS.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use zeroize::Zeroizing;

use crate::error::{escape_for_terminal, UnwrapError};
pub use crate::sops::masterkey::KmsKeyId;

/// Which KMS keys a key ring may use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KmsAccess {
    /// None: KMS entries are reported as not enabled (the services,
    /// unless the operator passes `--allow-kms`).
    #[default]
    Off,
    /// Any key the AWS credentials can use, as sops does (the
    /// sops-compatible commands, run with the user's own credentials).
    Any,
    /// Only the keys listed in `*.awskms` files of the ring's keys folders
    /// (`render --keys-dir`, `cmp generate`, the sidecar with
    /// `--allow-kms`): a tenant uses the KMS keys its folder names.
    Listed,
}

/// sops' `arnRegex`: `arn:aws…:kms:REGION:ACCOUNT:key/…` or `alias/…`.
fn arn_regex() -> &'static regex::Regex {
    static RE: OnceLock<regex::Regex> = OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new(r"^arn:aws[0-9A-Za-z_-]*:kms:(.+):[0-9]+:(key|alias)/.+$")
            .expect("static regex")
    })
}

/// The region an ARN names, if it is a KMS key or alias ARN.
pub fn region_of(arn: &str) -> Option<&str> {
    arn_regex()
        .captures(arn)
        .and_then(|c| c.get(1))
        .map(|m| m.as_str())
}

/// Checks that `arn` is a KMS key or alias ARN (sops checks it only when it
/// calls KMS; kustos says so before anything is written).
pub fn validate_arn(arn: &str) -> crate::Result<()> {
    if region_of(arn).is_some() {
        Ok(())
    } else {
        Err(crate::Error::Key(format!(
            "no valid KMS ARN in {:?}: expected arn:aws:kms:REGION:ACCOUNT:key/ID or …:alias/NAME",
            escape_for_terminal(arn)
        )))
    }
}

/// One `--kms` entry: spaces removed, and a `+arn:aws:iam::…` suffix taken
/// as the role to assume (sops' `NewMasterKeyFromArn`).
pub fn key_from_arn(entry: &str, context: &[(String, String)], aws_profile: &str) -> KmsKeyId {
    let s: String = entry.chars().filter(|c| *c != ' ').collect();
    let (arn, role) = match s.find("+arn:aws:iam::") {
        Some(i) if i > 0 => (s[..i].to_string(), s[i + 1..].to_string()),
        _ => (s, String::new()),
    };
    KmsKeyId {
        arn,
        role,
        context: context.to_vec(),
        aws_profile: aws_profile.to_string(),
    }
}

/// A comma-separated `--kms` list (empty entries skipped), each ARN checked.
pub fn keys_from_arns(
    list: &str,
    context: &[(String, String)],
    aws_profile: &str,
) -> crate::Result<Vec<KmsKeyId>> {
    let mut out = Vec::new();
    for entry in list.split(',') {
        if entry.trim().is_empty() {
            continue;
        }
        let k = key_from_arn(entry, context, aws_profile);
        validate_arn(&k.arn)?;
        out.push(k);
    }
    Ok(out)
}

/// `--encryption-context k:v,k2:v2` (sops' `ParseKMSContext` on a string):
/// `Some(empty)` for an empty string, `None` when a pair is not exactly one
/// `key:value`. Pairs come back sorted by key, the last of a repeated key
/// winning.
pub fn parse_context(s: &str) -> Option<Vec<(String, String)>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    let mut m = std::collections::BTreeMap::new();
    for kv in s.split(',') {
        let parts: Vec<&str> = kv.split(':').collect();
        if parts.len() != 2 {
            return None;
        }
        m.insert(parts[0].to_string(), parts[1].to_string());
    }
    Some(m.into_iter().collect())
}

/// The STS session name sops uses: `sops@` and the host name without the
/// characters its pattern drops, at most 64 bytes. (sops' character class
/// `[^a-zA-Z0-9=,.@-_]` has the range `@-_`, so it keeps `@` through `_`,
/// the capitals and `[\]^` among them, and drops `-`.)
pub fn session_name(hostname: &str) -> String {
    let kept: String = hostname
        .chars()
        .filter(|&c| c.is_ascii_alphanumeric() || matches!(c, '=' | ',' | '.' | '@'..='_'))
        .collect();
    let mut name = format!("sops@{kept}");
    name.truncate(64);
    name
}

/// The KMS keys a keys folder allows: `*.awskms` files, one `ARN` or
/// `ARN+ROLE_ARN` a line, `#` comments and blank lines ignored.
#[derive(Clone, Debug, Default)]
pub struct AllowList {
    /// (key ARN, role ARN or empty).
    pub keys: Vec<(String, String)>,
    /// Files or lines that could not be used, one message each.
    pub problems: Vec<String>,
}

impl AllowList {
    /// Reads the `*.awskms` files directly in `dirs` (symlinks followed, as
    /// a mounted Secret's files are).
    pub fn load(dirs: &[std::path::PathBuf]) -> AllowList {
        let mut out = AllowList::default();
        for dir in dirs {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<std::path::PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "awskms")
                        && !p
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.starts_with('.'))
                        && p.is_file()
                })
                .collect();
            files.sort();
            for f in files {
                out.read_file(&f);
            }
        }
        out
    }

    fn read_file(&mut self, f: &Path) {
        let shown = escape_for_terminal(&f.display().to_string());
        let text = match crate::fsutil::read_file(f) {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(format!("{shown}: {e}"));
                return;
            }
        };
        let Ok(text) = std::str::from_utf8(&text) else {
            self.problems.push(format!("{shown}: not UTF-8 text"));
            return;
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let k = key_from_arn(line, &[], "");
            if region_of(&k.arn).is_none() {
                self.problems.push(format!(
                    "{shown}:{}: not a KMS key ARN (ARN or ARN+ROLE_ARN)",
                    n + 1
                ));
                continue;
            }
            self.keys.push((k.arn, k.role));
        }
    }

    /// Whether the entry's key and role are listed.
    pub fn allows(&self, key: &KmsKeyId) -> bool {
        self.keys
            .iter()
            .any(|(a, r)| *a == key.arn && *r == key.role)
    }
}

/// What a KMS answer is cached by: the exact ciphertext, the key ARN and
/// the encryption context (the inputs that decide the plaintext).
type CacheKey = (String, Vec<(String, String)>, String);

/// One cached answer; its own lock makes concurrent askers wait for the
/// first instead of calling KMS too.
type Slot = Arc<Mutex<Option<Zeroizing<Vec<u8>>>>>;

/// Data keys that KMS returned, so each distinct wrapped key is sent to
/// KMS once per key ring, also when many files share it and threads ask
/// for it at the same moment. Failures are not kept: the next file asks
/// again.
#[derive(Default)]
pub struct KmsCache {
    slots: Mutex<HashMap<CacheKey, Slot>>,
}

impl std::fmt::Debug for KmsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KmsCache(…)")
    }
}

impl KmsCache {
    fn slot(&self, key: &KmsKeyId, enc: &str) -> Slot {
        let k: CacheKey = (key.arn.clone(), key.context.clone(), enc.to_string());
        let mut m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(k).or_default().clone()
    }

    /// The cached plaintext of `enc` under `key`, if any.
    pub fn get(&self, key: &KmsKeyId, enc: &str) -> Option<Zeroizing<Vec<u8>>> {
        let k: CacheKey = (key.arn.clone(), key.context.clone(), enc.to_string());
        let slot = {
            let m = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            m.get(&k)?.clone()
        };
        let v = slot.lock().unwrap_or_else(|e| e.into_inner());
        v.clone()
    }

    /// The plaintext of `enc`, asking `fetch` only when no earlier call
    /// (on any thread) got it. Concurrent callers for the same entry wait
    /// for the first.
    pub fn get_or_fetch(
        &self,
        key: &KmsKeyId,
        enc: &str,
        fetch: impl FnOnce() -> Result<Zeroizing<Vec<u8>>, UnwrapError>,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        let slot = self.slot(key, enc);
        let mut v = slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = v.as_ref() {
            return Ok(p.clone());
        }
        let p = fetch()?;
        *v = Some(p.clone());
        Ok(p)
    }
}

/// Decrypts a KMS entry's ciphertext (standard base64, as sops writes it).
pub fn decrypt(key: &KmsKeyId, enc: &str) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
    use base64::Engine as _;
    let region = region_of(&key.arn)
        .ok_or_else(|| UnwrapError::Failed("not a valid KMS key ARN".into()))?
        .to_string();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(enc.trim())
        .map_err(|_| UnwrapError::Failed("the encrypted data key is not valid base64".into()))?;
    if blob.is_empty() {
        return Err(UnwrapError::Failed(
            "the encrypted data key is empty".into(),
        ));
    }
    imp::decrypt(key, &region, blob)
}

/// Encrypts `plaintext` (a data key or share) under `key`; the base64
/// ciphertext sops stores in `enc`.
pub fn encrypt(key: &KmsKeyId, plaintext: &[u8]) -> crate::Result<String> {
    use base64::Engine as _;
    validate_arn(&key.arn)?;
    let region = region_of(&key.arn).unwrap_or_default().to_string();
    let blob = imp::encrypt(key, &region, plaintext).map_err(|e| {
        crate::Error::NoEncryptionKeys(format!(
            "cannot encrypt the data key with kms {}: {e}",
            escape_for_terminal(&key.name())
        ))
    })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(blob))
}

/// Whether this build can call KMS.
pub const AVAILABLE: bool = cfg!(feature = "aws-kms");

#[cfg(not(feature = "aws-kms"))]
mod imp {
    use super::*;

    const NO: &str = "kms keys need a kustos built with the aws-kms feature";

    pub(super) fn decrypt(
        _: &KmsKeyId,
        _: &str,
        _: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        Err(UnwrapError::Unsupported(NO.into()))
    }

    pub(super) fn encrypt(_: &KmsKeyId, _: &str, _: &[u8]) -> Result<Vec<u8>, String> {
        Err(NO.into())
    }
}

#[cfg(feature = "aws-kms")]
mod imp {
    use super::*;

    use aws_config::BehaviorVersion;
    use aws_sdk_kms::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::Client;
    use tokio::sync::OnceCell;

    use crate::keys::runtime::block_on;

    type ClientKey = (String, String, String);

    /// One client per (region, profile, role): the SDK caches the
    /// credentials (and the assumed role's, refreshing them) per client.
    fn client_cell(k: ClientKey) -> Arc<OnceCell<Client>> {
        static CLIENTS: OnceLock<Mutex<HashMap<ClientKey, Arc<OnceCell<Client>>>>> =
            OnceLock::new();
        let mut m = CLIENTS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.entry(k).or_default().clone()
    }

    fn hostname() -> String {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default()
    }

    async fn client(region: String, profile: String, role: String) -> Client {
        let cell = client_cell((region.clone(), profile.clone(), role.clone()));
        cell.get_or_init(|| async move {
            let mut loader = aws_config::defaults(BehaviorVersion::latest())
                .region(aws_config::Region::new(region.clone()));
            if !profile.is_empty() {
                loader = loader.profile_name(&profile);
            }
            let base = loader.load().await;
            let mut conf = aws_sdk_kms::config::Builder::from(&base);
            if !role.is_empty() {
                let provider = aws_config::sts::AssumeRoleProvider::builder(&role)
                    .session_name(session_name(&hostname()))
                    .region(aws_config::Region::new(region))
                    .configure(&base)
                    .build()
                    .await;
                conf = conf.credentials_provider(provider);
            }
            Client::from_conf(conf.build())
        })
        .await
        .clone()
    }

    fn context_map(key: &KmsKeyId) -> HashMap<String, String> {
        key.context.iter().cloned().collect()
    }

    pub(super) fn decrypt(
        key: &KmsKeyId,
        region: &str,
        blob: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        let (region, profile, role) = (
            region.to_string(),
            key.aws_profile.clone(),
            key.role.clone(),
        );
        let arn = key.arn.clone();
        let ctx = context_map(key);
        let role_for_msg = key.role.clone();
        let res = block_on(async move {
            let c = client(region, profile, role).await;
            c.decrypt()
                .key_id(arn)
                .ciphertext_blob(Blob::new(blob))
                .set_encryption_context(Some(ctx))
                .send()
                .await
                .map(|mut out| out.plaintext.take().map(|b| Zeroizing::new(b.into_inner())))
                .map_err(|e| reason(&e, &role_for_msg))
        })
        .map_err(UnwrapError::Failed)?;
        match res {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(UnwrapError::Failed("KMS returned no plaintext".into())),
            Err(e) => Err(UnwrapError::Failed(e)),
        }
    }

    pub(super) fn encrypt(
        key: &KmsKeyId,
        region: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, String> {
        let (region, profile, role) = (
            region.to_string(),
            key.aws_profile.clone(),
            key.role.clone(),
        );
        let arn = key.arn.clone();
        let ctx = context_map(key);
        let role_for_msg = key.role.clone();
        // The SDK takes the plaintext by value; this copy is the one it owns.
        let data = plaintext.to_vec();
        block_on(async move {
            let c = client(region, profile, role).await;
            c.encrypt()
                .key_id(arn)
                .plaintext(Blob::new(data))
                .set_encryption_context(Some(ctx))
                .send()
                .await
                .map_err(|e| reason(&e, &role_for_msg))
                .and_then(|out| {
                    out.ciphertext_blob
                        .map(|b| b.into_inner())
                        .filter(|b| !b.is_empty())
                        .ok_or_else(|| "KMS returned no ciphertext".to_string())
                })
        })?
    }

    /// One line saying why a KMS call failed, without the SDK's nested
    /// error chain (which can span lines and repeats itself).
    fn reason<E, R>(e: &SdkError<E, R>, role: &str) -> String
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let full = DisplayErrorContext(e).to_string();
        let one_line = |s: &str| -> String {
            let s = escape_for_terminal(s.trim());
            if s.chars().count() > 200 {
                let t: String = s.chars().take(200).collect();
                format!("{t}…")
            } else {
                s
            }
        };
        match e {
            SdkError::ServiceError(se) => {
                let err = se.err();
                let code = err.code().unwrap_or("");
                let msg = err.message().map(one_line).unwrap_or_default();
                let what = match code {
                    "DisabledException" => "the key is disabled",
                    "AccessDeniedException" => "access denied",
                    "NotFoundException" => {
                        "the key was not found (check the account and the region in the ARN)"
                    }
                    "KMSInvalidStateException" => "the key is not usable in its current state",
                    "InvalidCiphertextException" => {
                        "KMS refused the ciphertext (damaged, or made with another encryption context)"
                    }
                    "IncorrectKeyException" => "the data key was encrypted under another KMS key",
                    "UnrecognizedClientException"
                    | "InvalidClientTokenId"
                    | "InvalidSignatureException"
                    | "SignatureDoesNotMatch"
                    | "ExpiredTokenException" => "the AWS credentials were refused",
                    "KeyUnavailableException" | "DependencyTimeoutException" | "KMSInternalException" => {
                        "KMS is unavailable"
                    }
                    "" => "KMS refused the request",
                    other => return format!("{}{}", one_line(other), if msg.is_empty() { String::new() } else { format!(": {msg}") }),
                };
                if msg.is_empty() {
                    what.to_string()
                } else {
                    format!("{what} ({code}: {msg})")
                }
            }
            SdkError::TimeoutError(_) => "the KMS call timed out".into(),
            SdkError::DispatchFailure(d) => {
                let lower = full.to_ascii_lowercase();
                if !role.is_empty() && (lower.contains("assume") || lower.contains("sts")) {
                    format!(
                        "cannot assume role {}: {}",
                        one_line(role),
                        one_line(innermost(&full))
                    )
                } else if lower.contains("credential") {
                    "no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run with a web identity or container role)".into()
                } else if d.is_io() || d.is_timeout() {
                    format!(
                        "cannot reach the KMS endpoint: {}",
                        one_line(innermost(&full))
                    )
                } else {
                    format!("the KMS request failed: {}", one_line(innermost(&full)))
                }
            }
            SdkError::ConstructionFailure(_) => {
                format!(
                    "the KMS request could not be built: {}",
                    one_line(innermost(&full))
                )
            }
            _ => format!("the KMS call failed: {}", one_line(innermost(&full))),
        }
    }

    /// The last cause in the SDK's `a: b: c` error chain.
    fn innermost(full: &str) -> &str {
        full.rsplit(": ").next().unwrap_or(full)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use aws_sdk_kms::error::ErrorMetadata;
        use aws_sdk_kms::operation::decrypt::DecryptError;
        use aws_sdk_kms::types::error::{DisabledException, KmsInvalidStateException};

        fn service(e: DecryptError) -> String {
            reason(&SdkError::<DecryptError, ()>::service_error(e, ()), "")
        }

        // moto (the tests' KMS) does not refuse a disabled key, so AWS's
        // answers for one are checked here with the SDK's own error types.
        #[test]
        fn disabled_keys_and_key_states_are_named() {
            // As the SDK reads them from an answer: the error code and
            // message in the metadata, the message in the exception too.
            let meta =
                |code: &str, msg: &str| ErrorMetadata::builder().code(code).message(msg).build();
            let msg = "arn:aws:kms:us-east-1:1:key/k is disabled.\nsecond line";
            let e = DecryptError::DisabledException(
                DisabledException::builder()
                    .message(msg)
                    .meta(meta("DisabledException", msg))
                    .build(),
            );
            let r = service(e);
            assert!(
                r.starts_with("the key is disabled (DisabledException: arn:aws:kms:"),
                "{r}"
            );
            assert!(!r.contains('\n'), "{r}");
            let e = DecryptError::KmsInvalidStateException(
                KmsInvalidStateException::builder()
                    .message("pending deletion")
                    .meta(meta("KMSInvalidStateException", "pending deletion"))
                    .build(),
            );
            assert!(service(e).starts_with("the key is not usable in its current state"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_and_regions() {
        assert_eq!(
            region_of(
                "arn:aws:kms:us-west-2:107501996527:key/612d5f0p-p1l3-45e6-aca6-a5b005693a48"
            ),
            Some("us-west-2")
        );
        assert_eq!(
            region_of("arn:aws-us-gov:kms:us-gov-west-1:1:alias/x"),
            Some("us-gov-west-1")
        );
        assert_eq!(region_of("arn:aws:iam::1:role/x"), None);
        assert_eq!(region_of("alias/x"), None);
        assert!(validate_arn("arn:aws:kms:eu-west-1:1:key/").is_err());
    }

    #[test]
    fn arn_entries_split_the_role_like_sops() {
        let k = key_from_arn(
            " arn:aws:kms:us-east-1:1:key/a +arn:aws:iam::1:role/r",
            &[],
            "p",
        );
        assert_eq!(k.arn, "arn:aws:kms:us-east-1:1:key/a");
        assert_eq!(k.role, "arn:aws:iam::1:role/r");
        assert_eq!(k.aws_profile, "p");
        let ks = keys_from_arns(
            "arn:aws:kms:us-east-1:1:key/a,,arn:aws:kms:us-east-1:1:alias/b",
            &[],
            "",
        )
        .unwrap();
        assert_eq!(ks.len(), 2);
        assert!(keys_from_arns("arn:aws:kms:us-east-1:1:key/a,nope", &[], "").is_err());
    }

    #[test]
    fn contexts_parse_like_sops() {
        assert_eq!(parse_context(""), Some(vec![]));
        assert_eq!(
            parse_context("b:2,a:1,b:3"),
            Some(vec![("a".into(), "1".into()), ("b".into(), "3".into())])
        );
        assert_eq!(parse_context("a:"), Some(vec![("a".into(), "".into())]));
        assert_eq!(parse_context("a"), None);
        assert_eq!(parse_context("a:b:c"), None);
        assert_eq!(parse_context("a:b,"), None);
    }

    #[test]
    fn session_names_like_sops() {
        assert_eq!(
            session_name("build-01.example.com"),
            "sops@build01.example.com"
        );
        assert_eq!(session_name("Host_[x]^"), "sops@Host_[x]^");
        assert_eq!(session_name("a b/c"), "sops@abc");
        let long = "h".repeat(100);
        assert_eq!(session_name(&long).len(), 64);
    }

    #[test]
    fn allow_lists_name_keys_and_roles() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("team.awskms"),
            "# team keys\narn:aws:kms:us-east-1:1:key/a\n\narn:aws:kms:us-east-1:1:key/b+arn:aws:iam::1:role/r\nnot-an-arn\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("ignored.txt"),
            "arn:aws:kms:us-east-1:1:key/c\n",
        )
        .unwrap();
        let l = AllowList::load(&[d.path().to_path_buf()]);
        assert_eq!(l.keys.len(), 2);
        assert_eq!(l.problems.len(), 1);
        assert!(l.problems[0].contains("team.awskms:5"));
        let mut k = key_from_arn("arn:aws:kms:us-east-1:1:key/a", &[], "");
        assert!(l.allows(&k));
        k.role = "arn:aws:iam::1:role/r".into();
        assert!(!l.allows(&k), "a role is part of what is allowed");
        let k = key_from_arn(
            "arn:aws:kms:us-east-1:1:key/b+arn:aws:iam::1:role/r",
            &[],
            "",
        );
        assert!(l.allows(&k));
        assert!(!l.allows(&key_from_arn("arn:aws:kms:us-east-1:1:key/c", &[], "")));
    }

    #[test]
    fn the_cache_fetches_each_ciphertext_once() {
        let c = KmsCache::default();
        let k = key_from_arn("arn:aws:kms:us-east-1:1:key/a", &[], "");
        let calls = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    let p = c
                        .get_or_fetch(&k, "enc", || {
                            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(20));
                            Ok(Zeroizing::new(vec![7u8; 32]))
                        })
                        .unwrap();
                    assert_eq!(p.as_slice(), &[7u8; 32]);
                });
            }
        });
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Another context is another entry; a failure is not remembered.
        let mut k2 = k.clone();
        k2.context = vec![("a".into(), "b".into())];
        assert!(c.get(&k2, "enc").is_none());
        assert!(c
            .get_or_fetch(&k2, "enc", || Err(UnwrapError::Failed("no".into())))
            .is_err());
        assert!(c
            .get_or_fetch(&k2, "enc", || Ok(Zeroizing::new(vec![1])))
            .is_ok());
    }
}
