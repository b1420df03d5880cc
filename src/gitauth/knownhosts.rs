//! known_hosts for Git over SSH: the server's host keys, scanned with
//! OpenSSH's `ssh-keyscan`, or checked when the user brings them.
//!
//! The scan itself (SSH key exchange up to the server's proof that it holds
//! its host key) is OpenSSH's: kustos first connects over TCP itself, so
//! unreachable hosts get a clear one-line reason, then runs `ssh-keyscan`
//! and checks every key it prints with the `ssh-key` crate.
//!
//! Lines are `host keytype base64`, unhashed, with the host written as Go's
//! `knownhosts.Normalize` does: `host` for port 22, `[host]:port` otherwise.
//!
//! By default one key is recorded, like `flux create secret git`: the one
//! Go x/crypto's host-key preference would negotiate (see
//! [`HOST_KEY_PREFERENCE`]), so kustos and Flux record the same key for the
//! same server. With `all_host_keys` every host key type is recorded.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;

use crate::{Error, Result};

/// The host-key types in Go x/crypto's preference (`defaultHostKeyAlgos`
/// without certificates): ECDSA P-256, P-384, P-521, then RSA, then
/// Ed25519. The server's key of the first type it has is the one Flux sees.
pub const HOST_KEY_PREFERENCE: &[&str] = &[
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "ssh-ed25519",
];

/// Default time allowed to connect and finish the key exchange.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a scan failed; the message names `host:port` and the reason.
#[derive(Debug, thiserror::Error)]
#[error("cannot scan the SSH host keys of {target}: {reason}")]
pub struct ScanError {
    /// `host:port`.
    pub target: String,
    /// Why.
    pub reason: String,
}

/// How to scan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScanOptions {
    /// Limit for connecting and for the key exchange.
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

fn fmt_secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "connection refused".into(),
        ConnectionReset => "connection reset by the server".into(),
        TimedOut | WouldBlock => "connection timed out".into(),
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

/// Resolves and connects once, so an unreachable host fails with its
/// reason rather than with `ssh-keyscan`'s silence.
fn reachable(host: &str, port: u16, timeout: Duration) -> std::result::Result<(), String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {}", io_reason(&e)))?
        .collect();
    let mut last = format!("cannot resolve {host}");
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(_) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
                ) =>
            {
                last = format!("connection timed out after {}", fmt_secs(timeout))
            }
            Err(e) => last = io_reason(&e),
        }
    }
    Err(last)
}

/// The key type's rank in [`HOST_KEY_PREFERENCE`].
fn preference(keytype: &str) -> Option<usize> {
    HOST_KEY_PREFERENCE.iter().position(|t| *t == keytype)
}

/// `keytype base64` pairs `ssh-keyscan` printed, each checked as an
/// OpenSSH public key, in preference order, one per key.
fn parse_keyscan(out: &str) -> Vec<(String, String)> {
    let mut keys: Vec<(String, String)> = Vec::new();
    for line in out.lines().filter(|l| !l.starts_with('#')) {
        let mut f = line.split_whitespace();
        let (Some(_host), Some(t), Some(b)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if preference(t).is_none()
            || ssh_key::PublicKey::from_openssh(&format!("{t} {b}")).is_err()
            || keys.iter().any(|(_, have)| have == b)
        {
            continue;
        }
        keys.push((t.to_string(), b.to_string()));
    }
    keys.sort_by_key(|(t, _)| preference(t));
    keys
}

/// Scans `host:port` and returns known_hosts lines (one, or one per key
/// type with `all_host_keys`).
pub fn scan(
    host: &str,
    port: u16,
    opts: &ScanOptions,
) -> std::result::Result<Vec<String>, ScanError> {
    let fail = |reason: String| ScanError {
        target: host_port(host, port),
        reason,
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    reachable(bare, port, opts.timeout).map_err(fail)?;
    let secs = opts.timeout.as_secs().max(1).to_string();
    let out = Command::new("ssh-keyscan")
        .args(["-T", &secs, "-p", &port.to_string(), "-t", "ecdsa,rsa,ed25519", "--", bare])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            fail(if e.kind() == std::io::ErrorKind::NotFound {
                "ssh-keyscan (OpenSSH) is not installed; install the OpenSSH client, or pass --known-hosts-file".into()
            } else {
                format!("cannot run ssh-keyscan: {e}")
            })
        })?;
    let mut keys = parse_keyscan(&String::from_utf8_lossy(&out.stdout));
    if keys.is_empty() {
        return Err(fail(format!(
            "no SSH key exchange within {} (is it an SSH server with an {} key?)",
            fmt_secs(opts.timeout),
            "ECDSA, RSA or Ed25519"
        )));
    }
    if !opts.all_host_keys {
        keys.truncate(1);
    }
    let pattern = host_pattern(host, port);
    Ok(keys
        .into_iter()
        .map(|(t, b)| format!("{pattern} {t} {b}"))
        .collect())
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
    fn keyscan_output_is_checked_and_ordered_like_go() {
        let ed = "AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
        let out = format!(
            "# host:22 SSH-2.0-OpenSSH_9.2\nhost ssh-ed25519 {ed}\nhost ssh-rsa !!!\nhost ssh-dss AAAA\nhost ssh-ed25519 {ed}\n"
        );
        assert_eq!(
            parse_keyscan(&out),
            vec![("ssh-ed25519".to_string(), ed.to_string())]
        );
        assert!(preference("ecdsa-sha2-nistp256") < preference("ssh-rsa"));
        assert!(preference("ssh-rsa") < preference("ssh-ed25519"));
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
