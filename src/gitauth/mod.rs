//! Tenant Git credentials, as Flux expects them.
//!
//! - [`secret`]: Secrets laid out byte for byte like `flux create secret
//!   git … --export` (and encryption of their `data`/`stringData` before
//!   anything is written).
//! - [`keygen`]: SSH deploy keys, generated (PKCS#8 PEM like Flux) or loaded
//!   from an OpenSSH/PEM file.
//! - [`knownhosts`]: the Git host's SSH host keys, scanned with OpenSSH's
//!   `ssh-keyscan`.
//!
//! This module also parses Git URLs and assembles the Secret's entries
//! ([`GitCredentials`]) with Flux's rules for which flags go with which
//! URL scheme.

pub mod keygen;
pub mod knownhosts;
pub mod secret;

use zeroize::Zeroizing;

pub use secret::{SecretMeta, ENCRYPTED_REGEX};

use crate::error::escape_for_terminal;
use crate::{Error, Result};

/// A Git transport Flux's GitRepository supports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GitScheme {
    /// `ssh://`.
    Ssh,
    /// `http://`.
    Http,
    /// `https://`.
    Https,
}

/// A parsed Git URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitUrl {
    /// The transport.
    pub scheme: GitScheme,
    /// User name before `@` (e.g. `git`), if any.
    pub user: Option<String>,
    /// Host name or address (IPv6 without brackets).
    pub host: String,
    /// Explicit port, if any.
    pub port: Option<u16>,
    /// Path, starting with `/` (may be empty).
    pub path: String,
    /// The URL as Flux needs it (scp-style input rewritten to `ssh://`).
    pub url: String,
    /// The input was scp-style (`git@host:org/repo`) and was rewritten.
    pub converted_from_scp: bool,
}

impl GitUrl {
    /// The port to connect to (22, 80 or 443 unless given).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(match self.scheme {
            GitScheme::Ssh => 22,
            GitScheme::Http => 80,
            GitScheme::Https => 443,
        })
    }

    /// `host` or `host:port` as it appears in the URL.
    pub fn authority(&self) -> String {
        let h = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(p) => format!("{h}:{p}"),
            None => h,
        }
    }
}

fn url_err(msg: String) -> Error {
    Error::Other(format!("git URL parse failed: {msg}"))
}

fn unsupported_scheme(s: &str) -> Error {
    Error::Other(format!(
        "git URL scheme '{}' not supported, can be: ssh, http and https",
        escape_for_terminal(s)
    ))
}

/// Parses a Git URL like Flux (`ssh`, `http`, `https`) and also accepts
/// scp-style `[user@]host:path`, rewriting it to `ssh://[user@]host/path`
/// (Flux rejects scp-style URLs; see [`GitUrl::converted_from_scp`]).
/// Passwords inside URLs are refused: they would end up in logs and Git.
pub fn parse_git_url(input: &str) -> Result<GitUrl> {
    let s = input.trim();
    if s.is_empty() {
        return Err(Error::Other("url is required".into()));
    }
    if s.chars().any(|c| c.is_control() || c == ' ') {
        return Err(url_err(
            "the URL contains spaces or control characters".into(),
        ));
    }
    let Some((scheme_raw, rest)) = s.split_once("://") else {
        return parse_scp(s);
    };
    let valid_scheme = scheme_raw
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_raw
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    if !valid_scheme {
        return Err(url_err("missing protocol scheme".into()));
    }
    let scheme_lc = scheme_raw.to_ascii_lowercase();
    let scheme = match scheme_lc.as_str() {
        "ssh" => GitScheme::Ssh,
        "http" => GitScheme::Http,
        "https" => GitScheme::Https,
        other => return Err(unsupported_scheme(other)),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (user, hostport) = match authority.rsplit_once('@') {
        Some((u, hp)) => (Some(u), hp),
        None => (None, authority),
    };
    if user.is_some_and(|u| u.contains(':')) {
        return Err(Error::Other(
            "the URL contains a password: remove it and pass the password with --password-stdin or KUSTOS_GIT_PASSWORD".into(),
        ));
    }
    let (host, port_str) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| url_err("missing ']' in host".into()))?;
        match after {
            "" => (h.to_string(), None),
            a => match a.strip_prefix(':') {
                Some(p) => (h.to_string(), Some(p)),
                None => {
                    return Err(url_err(format!(
                        "invalid port {:?} after host",
                        escape_for_terminal(a)
                    )))
                }
            },
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port_str {
        None | Some("") => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                let mut msg = format!(
                    "invalid port {:?} after host",
                    format!(":{}", escape_for_terminal(p))
                );
                if scheme == GitScheme::Ssh {
                    msg.push_str(
                        "; for scp-style addresses write git@host:org/repo (kustos converts it) or ssh://git@host/org/repo",
                    );
                }
                return Err(url_err(msg));
            }
        },
    };
    if host.is_empty() {
        return Err(url_err("the URL has no host".into()));
    }
    let path = tail.to_string();
    let user = user.map(str::to_string);
    let url = format!("{scheme_lc}://{rest}");
    Ok(GitUrl {
        scheme,
        user,
        host,
        port,
        path,
        url,
        converted_from_scp: false,
    })
}

/// `[user@]host:path`, as Git reads it: a colon before any slash.
fn parse_scp(s: &str) -> Result<GitUrl> {
    let colon = s.find(':');
    let slash = s.find('/');
    let Some(colon) = colon.filter(|c| slash.is_none_or(|sl| *c < sl)) else {
        return Err(unsupported_scheme(""));
    };
    let (userhost, path) = (&s[..colon], &s[colon + 1..]);
    let (user, host) = match userhost.rsplit_once('@') {
        Some((u, h)) => (Some(u.to_string()), h),
        None => (None, userhost),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || path.is_empty() || user.as_deref().is_some_and(str::is_empty) {
        return Err(unsupported_scheme(""));
    }
    if host.len() == 1 && host.chars().all(|c| c.is_ascii_alphabetic()) {
        // `C:\…`: a Windows path, not a host.
        return Err(unsupported_scheme(""));
    }
    let path = format!("/{}", path.trim_start_matches('/'));
    let h = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let url = match &user {
        Some(u) => format!("ssh://{u}@{h}{path}"),
        None => format!("ssh://{h}{path}"),
    };
    Ok(GitUrl {
        scheme: GitScheme::Ssh,
        user,
        host: host.to_string(),
        port: None,
        path,
        url,
        converted_from_scp: true,
    })
}

/// The entries of a Flux Git Secret (`stringData`), each optional.
#[derive(Default)]
pub struct GitCredentials {
    /// `bearerToken`.
    pub bearer_token: Option<Zeroizing<String>>,
    /// `ca.crt`.
    pub ca_crt: Option<String>,
    /// `identity`: the SSH private key.
    pub identity: Option<Zeroizing<String>>,
    /// `identity.pub`: the SSH public key line.
    pub identity_pub: Option<String>,
    /// `known_hosts`.
    pub known_hosts: Option<String>,
    /// `password` (HTTP password, or the SSH key's passphrase).
    pub password: Option<Zeroizing<String>>,
    /// `username`.
    pub username: Option<String>,
}

impl std::fmt::Debug for GitCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<&str> = self.entries().iter().map(|(k, _)| *k).collect();
        f.debug_struct("GitCredentials")
            .field("entries", &keys)
            .finish()
    }
}

impl GitCredentials {
    /// `(key, value)` pairs in Flux's order.
    pub fn entries(&self) -> Vec<(&'static str, &str)> {
        let mut v: Vec<(&'static str, &str)> = Vec::new();
        if let Some(x) = &self.bearer_token {
            v.push(("bearerToken", x));
        }
        if let Some(x) = &self.ca_crt {
            v.push(("ca.crt", x));
        }
        if let Some(x) = &self.identity {
            v.push(("identity", x));
        }
        if let Some(x) = &self.identity_pub {
            v.push(("identity.pub", x));
        }
        if let Some(x) = &self.known_hosts {
            v.push(("known_hosts", x));
        }
        if let Some(x) = &self.password {
            v.push(("password", x));
        }
        if let Some(x) = &self.username {
            v.push(("username", x));
        }
        v
    }

    /// The Secret, as `flux create secret git … --export` prints it.
    pub fn render(&self, meta: &SecretMeta) -> Zeroizing<String> {
        secret::render(meta, &self.entries())
    }
}

/// HTTP(S) credentials as the user gave them.
#[derive(Default)]
pub struct HttpAuth {
    /// `--username`.
    pub username: Option<String>,
    /// The password (never from a command-line argument).
    pub password: Option<Zeroizing<String>>,
    /// The bearer token.
    pub bearer_token: Option<Zeroizing<String>>,
    /// Contents of `--ca-crt-file`.
    pub ca_crt: Option<String>,
}

/// Checks HTTP(S) credentials with Flux's rules and messages.
pub fn http_credentials(auth: HttpAuth) -> Result<GitCredentials> {
    let nonempty = |o: &Option<Zeroizing<String>>| o.as_ref().is_some_and(|s| !s.is_empty());
    let user = auth.username.as_deref().is_some_and(|u| !u.is_empty());
    let pass = nonempty(&auth.password);
    let bearer = nonempty(&auth.bearer_token);
    if (!user || !pass) && !bearer {
        return Err(Error::Other(
            "for Git over HTTP/S the username and password, or a bearer token is required".into(),
        ));
    }
    if bearer && (user || pass) {
        return Err(Error::Other(
            "user credentials and bearer token cannot be used together".into(),
        ));
    }
    Ok(GitCredentials {
        bearer_token: auth.bearer_token.filter(|s| !s.is_empty()),
        ca_crt: auth.ca_crt,
        password: auth.password.filter(|s| !s.is_empty()),
        username: auth.username.filter(|s| !s.is_empty()),
        ..Default::default()
    })
}

/// Where the SSH deploy key comes from.
pub enum SshKeySource<'a> {
    /// Generate one.
    Generate(keygen::KeyAlgorithm),
    /// A private key file's bytes and, if it is encrypted, its passphrase.
    File {
        /// The file's contents (kept verbatim as `identity`).
        data: &'a [u8],
        /// Its passphrase (stored as `password`, as Flux does).
        passphrase: Option<Zeroizing<String>>,
    },
}

/// Where known_hosts comes from.
pub enum KnownHostsSource<'a> {
    /// Scan the Git host.
    Scan(knownhosts::ScanOptions),
    /// Use these lines (checked with [`knownhosts::validate_known_hosts`]).
    Given(&'a str),
}

/// Why SSH credentials could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The Git host's keys could not be scanned (the network's fault, not
    /// the input's: the CLI suggests `--known-hosts-file`).
    #[error(transparent)]
    Scan(#[from] knownhosts::ScanError),
    /// The URL, the key or the given known_hosts.
    #[error(transparent)]
    Input(#[from] Error),
}

/// Builds SSH credentials: the deploy key first (so local mistakes are
/// reported before any network access), then known_hosts.
pub fn ssh_credentials(
    url: &GitUrl,
    key: SshKeySource,
    hosts: KnownHostsSource,
) -> std::result::Result<GitCredentials, CredentialsError> {
    if url.scheme != GitScheme::Ssh {
        return Err(Error::Other("SSH credentials need an ssh:// URL".into()).into());
    }
    let (deploy, password) = match key {
        SshKeySource::Generate(alg) => (keygen::generate(alg)?, None),
        SshKeySource::File { data, passphrase } => {
            let k = keygen::load_private_key(data, passphrase.as_ref().map(|p| p.as_bytes()))?;
            (k, passphrase)
        }
    };
    let known_hosts = match hosts {
        KnownHostsSource::Given(text) => knownhosts::validate_known_hosts(text)?,
        KnownHostsSource::Scan(opts) => {
            knownhosts::scan(&url.host, url.port_or_default(), &opts)?.join("\n")
        }
    };
    Ok(GitCredentials {
        identity: Some(deploy.identity),
        identity_pub: Some(deploy.identity_pub),
        known_hosts: Some(known_hosts),
        password,
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = parse_git_url("ssh://git@github.com/org/repo").unwrap();
        assert_eq!(
            (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
            (GitScheme::Ssh, "github.com", None, "/org/repo")
        );
        assert_eq!(u.user.as_deref(), Some("git"));
        let u = parse_git_url("ssh://git@127.0.0.1:2222/org/repo").unwrap();
        assert_eq!(
            (u.port_or_default(), u.authority()),
            (2222, "127.0.0.1:2222".to_string())
        );
        let u = parse_git_url("git@github.com:org/repo.git").unwrap();
        assert!(u.converted_from_scp);
        assert_eq!(u.url, "ssh://git@github.com/org/repo.git");
        assert_eq!(
            parse_git_url("host:/abs/repo").unwrap().url,
            "ssh://host/abs/repo"
        );
        let u = parse_git_url("ssh://git@[::1]:2222/r").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", Some(2222)));
        assert_eq!(
            parse_git_url("HTTPS://example.com/r").unwrap().scheme,
            GitScheme::Https
        );
        let e = |s: &str| parse_git_url(s).unwrap_err().to_string();
        assert_eq!(
            e("ftp://host/r"),
            "git URL scheme 'ftp' not supported, can be: ssh, http and https"
        );
        assert_eq!(
            e("/local/path"),
            "git URL scheme '' not supported, can be: ssh, http and https"
        );
        assert!(e("ssh://git@host:org/repo").contains("invalid port \":org\" after host"));
        assert!(e("https://u:secret@host/r").contains("contains a password"));
        assert!(!e("https://u:secret@host/r").contains("secret@"));
    }

    #[test]
    fn http_rules() {
        let z = |s: &str| Some(Zeroizing::new(s.to_string()));
        let err = |a: HttpAuth| http_credentials(a).unwrap_err().to_string();
        assert_eq!(
            err(HttpAuth {
                username: Some("u".into()),
                ..Default::default()
            }),
            "for Git over HTTP/S the username and password, or a bearer token is required"
        );
        assert_eq!(
            err(HttpAuth {
                username: Some("u".into()),
                password: z("p"),
                bearer_token: z("t"),
                ..Default::default()
            }),
            "user credentials and bearer token cannot be used together"
        );
        let c = http_credentials(HttpAuth {
            username: Some("u".into()),
            password: z("p"),
            ca_crt: Some("ca-data".into()),
            ..Default::default()
        })
        .unwrap();
        let keys: Vec<&str> = c.entries().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["ca.crt", "password", "username"]);
    }
}
