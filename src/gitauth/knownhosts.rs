//! known_hosts for Git over SSH: the server's host keys, scanned in-process
//! with russh (no `ssh-keyscan`), or checked when the user brings them.
//!
//! A scan is the start of an SSH handshake: key exchange runs until the
//! server has proven it holds the host key (russh verifies the signature
//! over the exchange hash before handing the key over), then the
//! connection is dropped without authenticating.
//!
//! Lines are `host keytype base64`, unhashed, with the host written as Go's
//! `knownhosts.Normalize` does: `host` for port 22, `[host]:port` otherwise.
//!
//! By default one key is recorded, like `flux create secret git`: the one
//! negotiated with Go x/crypto's host-key preference (see
//! [`HOST_KEY_PREFERENCE`]), so kustos and Flux record the same key for the
//! same server. With `all_host_keys` one handshake per key type collects
//! every host key the server has.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use russh::keys::{Algorithm, EcdsaCurve, HashAlg, PublicKey, PublicKeyOrCertificate};

use crate::{Error, Result};

/// The client's host-key algorithm preference, as in Go's x/crypto
/// (`defaultHostKeyAlgos` without certificates): ECDSA P-256, P-384,
/// P-521, then RSA (SHA-256, SHA-512, SHA-1 signatures), then Ed25519.
/// The server picks the first one of these it has a key for.
pub const HOST_KEY_PREFERENCE: &[&str] = &[
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "rsa-sha2-256",
    "rsa-sha2-512",
    "ssh-rsa",
    "ssh-ed25519",
];

/// Default time allowed to connect and finish the key exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanOptions {
    /// Limit for resolving, connecting and each key exchange.
    pub timeout: Duration,
    /// Record every host key type the server offers, not just one.
    pub all_host_keys: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        ScanOptions {
            timeout: DEFAULT_TIMEOUT,
            all_host_keys: false,
        }
    }
}

/// Go's `knownhosts.Normalize`: `host` for port 22 (`[v6addr]` for an IPv6
/// address), `[host]:port` otherwise.
pub fn host_pattern(host: &str, port: u16) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if port != 22 {
        format!("[{bare}]:{port}")
    } else if bare.contains(':') {
        format!("[{bare}]")
    } else {
        bare.to_string()
    }
}

fn host_port(host: &str, port: u16) -> String {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    }
}

fn algorithm(name: &str) -> Algorithm {
    match name {
        "ecdsa-sha2-nistp256" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP256,
        },
        "ecdsa-sha2-nistp384" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP384,
        },
        "ecdsa-sha2-nistp521" => Algorithm::Ecdsa {
            curve: EcdsaCurve::NistP521,
        },
        "rsa-sha2-256" => Algorithm::Rsa {
            hash: Some(HashAlg::Sha256),
        },
        "rsa-sha2-512" => Algorithm::Rsa {
            hash: Some(HashAlg::Sha512),
        },
        "ssh-rsa" => Algorithm::Rsa { hash: None },
        _ => Algorithm::Ed25519,
    }
}

/// One handshake per host key type for `all_host_keys` (every RSA
/// signature scheme presents the same RSA key).
const PER_TYPE: &[&[&str]] = &[
    &["ecdsa-sha2-nistp256"],
    &["ecdsa-sha2-nistp384"],
    &["ecdsa-sha2-nistp521"],
    &["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"],
    &["ssh-ed25519"],
];

struct Catch {
    key: Arc<Mutex<Option<PublicKey>>>,
}

impl russh::client::Handler for Catch {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        // Only plain key algorithms are offered, so a certificate is not
        // expected; its key is what known_hosts would hold anyway.
        let key = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => {
                PublicKey::new(cert.public_key().clone(), "")
            }
        };
        if let Ok(mut slot) = self.key.lock() {
            *slot = Some(key);
        }
        // Stop here: the key is all a scan needs.
        Ok(false)
    }
}

enum Outcome {
    Key(PublicKey),
    /// The server has no key of the requested types.
    NoSuchType,
}

fn fmt_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

async fn connect(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> std::result::Result<tokio::net::TcpStream, String> {
    let mut last = String::from("no address to connect to");
    for a in addrs {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(a)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(e)) => last = io_reason(&e),
            Err(_) => last = format!("connection timed out after {}", fmt_secs(timeout)),
        }
    }
    Err(last)
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by the server".into(),
        TimedOut => "connection timed out".into(),
        _ => {
            let s = e.to_string();
            // "Connection refused (os error 111)" -> keep the words only.
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

async fn handshake(
    addrs: &[SocketAddr],
    algs: &[&str],
    timeout: Duration,
) -> std::result::Result<Outcome, String> {
    let stream = connect(addrs, timeout).await?;
    let slot = Arc::new(Mutex::new(None));
    let config = russh::client::Config {
        preferred: russh::Preferred {
            key: Cow::Owned(algs.iter().map(|a| algorithm(a)).collect()),
            ..Default::default()
        },
        inactivity_timeout: Some(timeout),
        ..Default::default()
    };
    let handler = Catch { key: slot.clone() };
    let res = tokio::time::timeout(
        timeout,
        russh::client::connect_stream(Arc::new(config), stream, handler),
    )
    .await;
    if let Some(k) = slot.lock().ok().and_then(|mut s| s.take()) {
        return Ok(Outcome::Key(k));
    }
    match res {
        Err(_) => Err(format!("no SSH key exchange within {}", fmt_secs(timeout))),
        Ok(Ok(_)) => Err("the server did not present a host key".into()),
        Ok(Err(russh::Error::NoCommonAlgo {
            kind: russh::AlgorithmKind::Key,
            ..
        })) => Ok(Outcome::NoSuchType),
        Ok(Err(russh::Error::NoCommonAlgo { kind, .. })) => {
            Err(format!("no common SSH {kind:?} algorithm with the server").to_lowercase())
        }
        Ok(Err(russh::Error::IO(e))) => Err(io_reason(&e)),
        Ok(Err(russh::Error::Disconnect)) | Ok(Err(russh::Error::HUP)) => Err(
            "the server closed the connection during the SSH handshake (is it an SSH server?)"
                .into(),
        ),
        Ok(Err(e)) => Err(format!("SSH handshake failed: {e}")),
    }
}

fn line_for(pattern: &str, key: &PublicKey) -> Result<String> {
    let openssh = key
        .to_openssh()
        .map_err(|e| Error::Other(format!("cannot encode the host key: {e}")))?;
    let mut f = openssh.split_whitespace();
    let (Some(t), Some(b)) = (f.next(), f.next()) else {
        return Err(Error::Other("cannot encode the host key".into()));
    };
    Ok(format!("{pattern} {t} {b}"))
}

/// Scans `host:port` and returns known_hosts lines (one, or one per key
/// type with `all_host_keys`). Errors are one line naming `host:port`.
pub fn scan(host: &str, port: u16, opts: &ScanOptions) -> Result<Vec<String>> {
    let target = host_port(host, port);
    let fail = |reason: String| {
        Error::Other(format!(
            "cannot scan the SSH host keys of {target}: {reason}"
        ))
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the network runtime: {e}")))?;
    let pattern = host_pattern(host, port);
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let timeout = opts.timeout;
    let keys = rt.block_on(async move {
        let addrs: Vec<SocketAddr> =
            match tokio::time::timeout(timeout, tokio::net::lookup_host((bare.as_str(), port)))
                .await
            {
                Ok(Ok(it)) => it.collect(),
                Ok(Err(e)) => return Err(format!("cannot resolve {bare}: {}", io_reason(&e))),
                Err(_) => {
                    return Err(format!(
                        "cannot resolve {bare} within {}",
                        fmt_secs(timeout)
                    ))
                }
            };
        let mut keys: Vec<PublicKey> = Vec::new();
        if opts.all_host_keys {
            for algs in PER_TYPE {
                if let Outcome::Key(k) = handshake(&addrs, algs, timeout).await? {
                    if !keys.iter().any(|have| have.key_data() == k.key_data()) {
                        keys.push(k);
                    }
                }
            }
        } else if let Outcome::Key(k) = handshake(&addrs, HOST_KEY_PREFERENCE, timeout).await? {
            keys.push(k);
        }
        Ok(keys)
    });
    let keys = keys.map_err(fail)?;
    if keys.is_empty() {
        return Err(fail(format!(
            "the server offers none of the host key types kustos knows ({})",
            HOST_KEY_PREFERENCE.join(", ")
        )));
    }
    keys.iter().map(|k| line_for(&pattern, k)).collect()
}

/// Checks user-supplied known_hosts text (`--known-hosts-file`): every
/// line that is not blank or a comment must be `[@marker] hosts keytype
/// base64 [comment]` with a key blob of that type. Returns the lines
/// joined by newlines, without a trailing one (as Flux stores a scan).
pub fn validate_known_hosts(text: &str) -> Result<String> {
    let mut lines = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| Error::Other(format!("known_hosts line {}: {why}", n + 1));
        let mut f = line.split_whitespace();
        let mut first = f.next().unwrap_or("");
        if first.starts_with('@') {
            if !matches!(first, "@cert-authority" | "@revoked") {
                return Err(bad("unknown marker (use @cert-authority or @revoked)"));
            }
            first = f.next().unwrap_or("");
        }
        let (Some(keytype), Some(b64)) = (f.next(), f.next()) else {
            return Err(bad("expected `host keytype base64-key`"));
        };
        if first.is_empty() {
            return Err(bad("no host pattern"));
        }
        let blob = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| bad("the key is not valid base64"))?;
        let inner = blob
            .get(..4)
            .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
            .and_then(|len| blob.get(4..4 + len));
        if inner != Some(keytype.as_bytes()) {
            return Err(bad("the key blob does not match its key type"));
        }
        lines.push(line.to_string());
    }
    if lines.is_empty() {
        return Err(Error::Other(
            "the known_hosts file has no host key lines".into(),
        ));
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_like_go_normalize() {
        assert_eq!(host_pattern("github.com", 22), "github.com");
        assert_eq!(host_pattern("127.0.0.1", 2222), "[127.0.0.1]:2222");
        assert_eq!(host_pattern("::1", 22), "[::1]");
        assert_eq!(host_pattern("[::1]", 2222), "[::1]:2222");
        assert_eq!(host_port("::1", 22), "[::1]:22");
    }

    #[test]
    fn known_hosts_validation() {
        let ok = "# c\ngithub.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n\n";
        assert_eq!(
            validate_known_hosts(ok).unwrap(),
            "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
        );
        assert!(validate_known_hosts("github.com ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl").is_err());
        assert!(validate_known_hosts("github.com ssh-rsa !!!").is_err());
        assert!(validate_known_hosts("# only a comment\n").is_err());
    }
}
