//! `kustos secret git` (tenant Git credentials as a Flux Secret, optionally
//! encrypted before it is written) and `kustos keygen age|pgp` (the
//! cluster's decryption key as a Flux decryption Secret).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Subcommand, ValueEnum};
use zeroize::Zeroizing;

use super::flags::{KeyFlags, SelectionFlags};
use super::sops_cmds;
use super::{write_stdout, CliError, CliResult, GlobalArgs};
use crate::error::escape_for_terminal;
use crate::error::exit;
use crate::fsutil::show;
use crate::fsutil::{self, NewFileMode};
use crate::gitauth::keygen::{EcdsaCurve, KeyAlgorithm};
use crate::gitauth::knownhosts::ScanOptions;
use crate::gitauth::{self, GitScheme, HttpAuth, KnownHostsSource, SecretMeta, SshKeySource};

/// Environment variable holding the Git password (HTTP) or key passphrase (SSH).
pub const PASSWORD_ENV: &str = "KUSTOS_GIT_PASSWORD";
/// Environment variable holding a bearer token.
pub const BEARER_TOKEN_ENV: &str = "KUSTOS_GIT_BEARER_TOKEN";

/// `kustos secret …`.
#[derive(Subcommand, Debug)]
pub enum SecretCommand {
    /// Git credentials for a Flux GitRepository (like `flux create secret git --export`)
    #[command(after_help = GIT_AFTER_HELP)]
    Git(GitSecretArgs),
}

const GIT_AFTER_HELP: &str = "\
Examples:
  # A deploy key (ECDSA P-384) and the host's key, encrypted to the cluster's age key
  kustos secret git dev-team-auth -n apps --url ssh://git@github.com/org/dev-team \\
    --encrypt --age age1… --output tenants/dev-team/auth.yaml

  # Basic auth over HTTPS; the password comes from stdin or KUSTOS_GIT_PASSWORD, never argv
  printf '%s' \"$TOKEN\" | kustos secret git dev-team-auth -n apps \\
    --url https://github.com/org/dev-team --username git --password-stdin --encrypt

Host keys: one key like Flux (client preference ecdsa-sha2-nistp256, nistp384, nistp521,
rsa-sha2-256/512, ssh-rsa, ssh-ed25519), or every type with --all-host-keys.";

/// SSH key algorithms for generated deploy keys.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SshKeyAlgorithmArg {
    /// ECDSA (see --ssh-ecdsa-curve)
    Ecdsa,
    /// Ed25519
    Ed25519,
    /// RSA (see --ssh-rsa-bits)
    Rsa,
}

/// ECDSA curves.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveArg {
    /// NIST P-256
    P256,
    /// NIST P-384
    P384,
    /// NIST P-521
    P521,
}

/// Arguments of `secret git`.
#[derive(Args, Debug)]
pub struct GitSecretArgs {
    /// Name of the Secret
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Namespace of the Secret
    #[arg(short = 'n', long, default_value = "flux-system", value_name = "NS")]
    pub namespace: String,
    /// Git address: ssh://git@host/org/repo, https://host/org/repo (scp-style git@host:org/repo is converted)
    #[arg(long, value_name = "URL")]
    pub url: String,
    /// Label to set on the Secret (repeatable, or comma separated)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// HTTP(S) basic auth user name
    #[arg(short = 'u', long, value_name = "USER")]
    pub username: Option<String>,
    /// Read the password (HTTP) or the key passphrase (SSH) from stdin (else $KUSTOS_GIT_PASSWORD)
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// Read an HTTP(S) bearer token from stdin (else $KUSTOS_GIT_BEARER_TOKEN)
    #[arg(long = "bearer-token-stdin", conflicts_with = "password_stdin")]
    pub bearer_token_stdin: bool,
    /// Refused: secrets on the command line leak into shell history and process lists
    #[arg(short = 'p', long = "password", hide = true, value_name = "PASSWORD")]
    pub password_arg: Option<String>,
    /// Refused: secrets on the command line leak into shell history and process lists
    #[arg(long = "bearer-token", hide = true, value_name = "TOKEN")]
    pub bearer_token_arg: Option<String>,
    /// TLS CA certificate for the Git server (http/https only), stored as ca.crt
    #[arg(long = "ca-crt-file", value_name = "FILE")]
    pub ca_crt_file: Option<PathBuf>,
    /// Algorithm of the generated deploy key [default: ecdsa]
    #[arg(long = "ssh-key-algorithm", value_enum, value_name = "ALG")]
    pub ssh_key_algorithm: Option<SshKeyAlgorithmArg>,
    /// Curve of a generated ECDSA key [default: p384]
    #[arg(long = "ssh-ecdsa-curve", value_enum, value_name = "CURVE")]
    pub ssh_ecdsa_curve: Option<CurveArg>,
    /// Size of a generated RSA key [default: 2048]
    #[arg(long = "ssh-rsa-bits", value_name = "BITS")]
    pub ssh_rsa_bits: Option<u32>,
    /// Use this private key (OpenSSH or PEM) instead of generating one; its passphrase via --password-stdin
    #[arg(long = "private-key-file", value_name = "FILE")]
    pub private_key_file: Option<PathBuf>,
    /// Take known_hosts from this file instead of scanning the host
    #[arg(long = "known-hosts-file", value_name = "FILE")]
    pub known_hosts_file: Option<PathBuf>,
    /// Record every host key type the server has (one handshake per type), not just one
    #[arg(long = "all-host-keys", conflicts_with = "known_hosts_file")]
    pub all_host_keys: bool,
    /// Time limit for connecting to the SSH host and its key exchange (e.g. 10s, 1m)
    #[arg(long = "ssh-timeout", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub ssh_timeout: Duration,
    /// Write the Secret to this file (atomically; 0600 when not encrypted) instead of stdout
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing --output file (its deploy key would be lost)
    #[arg(long)]
    pub force: bool,
    /// Encrypt data/stringData before anything is written (to --age/--pgp, or the .sops.yaml rule)
    #[arg(long)]
    pub encrypt: bool,
    /// age recipients to encrypt to, comma separated (implies --encrypt)
    #[arg(long, value_name = "RECIPIENTS")]
    pub age: Option<String>,
    /// PGP fingerprints to encrypt to, comma separated (implies --encrypt)
    #[arg(long, value_name = "FPRS")]
    pub pgp: Option<String>,
}

/// Which cluster key to make.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// An age X25519 identity (recommended by Flux)
    Age,
    /// A passwordless OpenPGP key (Curve25519, or RSA with --rsa-bits)
    Pgp,
}

/// Arguments of `keygen`.
#[derive(Args, Debug)]
#[command(
    after_help = "The Secret (stdout) uses stringData so it can be reviewed; apply it with\n`kubectl apply -f -` and point the Kustomization's spec.decryption.secretRef at it.\nThe public recipient and a .sops.yaml snippet go to stderr."
)]
pub struct KeygenArgs {
    /// age or pgp
    #[arg(value_enum)]
    pub kind: KeyKind,
    /// Also write the key files here: age.agekey / sops.asc (0600) and the public part (.pub)
    #[arg(long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Overwrite existing key files in --output-dir
    #[arg(long)]
    pub force: bool,
    /// Namespace of the Secret
    #[arg(short = 'n', long, default_value = "flux-system", value_name = "NS")]
    pub namespace: String,
    /// Name of the Secret [default: sops-age, or sops-gpg for pgp]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Label to set on the Secret (repeatable, or comma separated)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// PGP: RSA key of this size (2048, 3072 or 4096) instead of Curve25519
    #[arg(long = "rsa-bits", value_name = "BITS",
          value_parser = clap::builder::PossibleValuesParser::new(["2048", "3072", "4096"])
              .try_map(|s| s.parse::<u32>()))]
    pub rsa_bits: Option<u32>,
    /// PGP: user ID name [default: "kustos NAMESPACE/NAME"]
    #[arg(long = "key-name", value_name = "NAME")]
    pub key_name: Option<String>,
    /// PGP: user ID email
    #[arg(long, value_name = "EMAIL")]
    pub email: Option<String>,
}

/// Parses a Go-style duration (`10s`, `1m30s`, `500ms`) or whole seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(n) = s.parse::<u64>() {
        return if n == 0 {
            Err("the duration must be positive".into())
        } else {
            Ok(Duration::from_secs(n))
        };
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err("empty duration".into());
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
        let (num, after) = rest.split_at(num_end);
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let n: f64 = num.parse().map_err(|_| format!("invalid duration {s:?}"))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "unknown unit {unit:?} in duration {s:?} (use ms, s, m or h)"
                ))
            }
        };
        total += n * scale;
        rest = next;
    }
    if !(total > 0.0 && total < 86_400.0) {
        return Err(format!("duration {s:?} must be positive and under a day"));
    }
    Ok(Duration::from_secs_f64(total))
}

fn note(msg: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{msg}");
}

fn generic(msg: impl Into<String>) -> CliError {
    CliError::new(exit::GENERIC, msg)
}

/// A secret from stdin: UTF-8, trailing newline(s) removed, not empty.
fn secret_from_stdin(what: &str) -> CliResult<Zeroizing<String>> {
    let raw = fsutil::read_stdin()?;
    let text = std::str::from_utf8(&raw)
        .map_err(|_| generic(format!("the {what} on stdin is not UTF-8 text")))?;
    let trimmed = text.trim_end_matches(['\n', '\r']);
    if trimmed.is_empty() {
        return Err(generic(format!("no {what} on stdin")));
    }
    Ok(Zeroizing::new(trimmed.to_string()))
}

fn secret_from_env(var: &str) -> Option<Zeroizing<String>> {
    std::env::var(var)
        .ok()
        .filter(|s| !s.is_empty())
        .map(Zeroizing::new)
}

fn read_text_file(p: &Path, what: &str) -> CliResult<Zeroizing<String>> {
    let data = fsutil::read_file(p).map_err(|e| generic(format!("cannot read the {what}: {e}")))?;
    let s = std::str::from_utf8(&data)
        .map_err(|_| generic(format!("{}: the {what} is not text", show(p))))?;
    Ok(Zeroizing::new(s.to_string()))
}

fn deploy_key_hint(url: &gitauth::GitUrl) -> String {
    let repo = url.path.trim_start_matches('/').trim_end_matches(".git");
    let where_ = match url.host.as_str() {
        "github.com" if !repo.is_empty() => format!(" (https://github.com/{repo}/settings/keys)"),
        "gitlab.com" if !repo.is_empty() => {
            format!(" (https://gitlab.com/{repo}/-/settings/repository, Deploy keys)")
        }
        _ => String::new(),
    };
    let repo_name = if repo.is_empty() {
        url.authority()
    } else {
        format!("{}/{repo}", url.authority())
    };
    format!(
        "add it as a read-only deploy key to {}{where_}",
        escape_for_terminal(&repo_name)
    )
}

/// `kustos secret …`.
pub fn secret(g: &GlobalArgs, c: SecretCommand) -> CliResult {
    match c {
        SecretCommand::Git(a) => secret_git(g, a),
    }
}

fn secret_git(g: &GlobalArgs, a: GitSecretArgs) -> CliResult {
    refuse_secrets_in_arguments(&a)?;
    let meta = SecretMeta {
        name: a.name.clone(),
        namespace: a.namespace.clone(),
        labels: gitauth::secret::parse_labels(&a.labels)?,
    };
    meta.validate()?;
    let url = gitauth::parse_git_url(&a.url)?;
    if url.converted_from_scp {
        note(&format!(
            "note: Flux does not accept scp-style URLs; using {} (use the same URL in the GitRepository)",
            escape_for_terminal(&url.url)
        ));
    }
    flags_fit_the_scheme(&a, url.scheme == GitScheme::Ssh)?;
    output_is_free(&a)?;
    // Encryption keys first: a missing recipient must fail before a key is made.
    let enc = encryption(g, &a)?;
    let creds = if url.scheme == GitScheme::Ssh {
        ssh_credentials(&a, &url)?
    } else {
        http_credentials(&a)?
    };
    let plain = creds.render(&meta);
    let (bytes, mode): (Zeroizing<Vec<u8>>, NewFileMode) = match &enc {
        Some((spec, store)) => (
            Zeroizing::new(gitauth::secret::encrypt(plain.as_bytes(), spec, store)?),
            NewFileMode::Shared,
        ),
        None => (
            Zeroizing::new(plain.as_bytes().to_vec()),
            NewFileMode::Private,
        ),
    };
    drop(plain);
    write_secret(&a, &bytes, mode)?;
    report(&a, &url, &creds, enc.is_some());
    Ok(())
}

/// Secrets never come from arguments (they end up in shell history and
/// `ps`); the hidden flags exist only to say so.
fn refuse_secrets_in_arguments(a: &GitSecretArgs) -> CliResult {
    if a.password_arg.is_some() {
        return Err(generic("kustos does not take passwords as arguments: use --password-stdin or KUSTOS_GIT_PASSWORD"));
    }
    if a.bearer_token_arg.is_some() {
        return Err(generic("kustos does not take tokens as arguments: use --bearer-token-stdin or KUSTOS_GIT_BEARER_TOKEN"));
    }
    Ok(())
}

/// SSH-only flags with an http(s) URL, or the reverse, are mistakes.
fn flags_fit_the_scheme(a: &GitSecretArgs, ssh: bool) -> CliResult {
    let misplaced: Vec<&str> = if ssh {
        [
            (a.username.is_some(), "--username"),
            (a.bearer_token_stdin, "--bearer-token-stdin"),
            (a.ca_crt_file.is_some(), "--ca-crt-file"),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| *n)
        .collect()
    } else {
        [
            (a.ssh_key_algorithm.is_some(), "--ssh-key-algorithm"),
            (a.ssh_ecdsa_curve.is_some(), "--ssh-ecdsa-curve"),
            (a.ssh_rsa_bits.is_some(), "--ssh-rsa-bits"),
            (a.private_key_file.is_some(), "--private-key-file"),
            (a.known_hosts_file.is_some(), "--known-hosts-file"),
            (a.all_host_keys, "--all-host-keys"),
        ]
        .iter()
        .filter(|(set, _)| *set)
        .map(|(_, n)| *n)
        .collect()
    };
    if let Some(first) = misplaced.first() {
        let why = if ssh {
            "is for http(s) URLs (for SSH the user name is part of the URL: ssh://git@host/org/repo)"
        } else {
            "is for ssh:// URLs"
        };
        return Err(CliError::new(
            exit::CONFLICTING_PARAMETERS,
            format!("{first} {why}"),
        ));
    }
    Ok(())
}

/// An existing output is replaced only with --force (a deploy key in it
/// would be lost).
fn output_is_free(a: &GitSecretArgs) -> CliResult {
    if let Some(o) = &a.output {
        if o.exists() && !a.force {
            return Err(generic(format!(
                "{} already exists: pass --force to replace it (a deploy key in it would be lost)",
                show(o)
            )));
        }
    }
    Ok(())
}

/// The encryption spec and store settings, when the Secret is encrypted.
fn encryption(
    g: &GlobalArgs,
    a: &GitSecretArgs,
) -> CliResult<Option<(crate::ops::EncryptSpec, crate::formats::StoreOptions)>> {
    if !(a.encrypt || a.age.is_some() || a.pgp.is_some()) {
        return Ok(None);
    }
    let flags = KeyFlags {
        age: a
            .age
            .clone()
            .or_else(|| std::env::var("SOPS_AGE_RECIPIENTS").ok()),
        pgp: a.pgp.clone().or_else(|| std::env::var("SOPS_PGP_FP").ok()),
        ..Default::default()
    };
    let cfg = sops_cmds::load_config(g)?;
    let rule_path = a
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.yaml", a.name)));
    let spec = sops_cmds::encrypt_spec(
        g,
        &flags,
        &SelectionFlags::default(),
        None,
        cfg.as_ref(),
        &rule_path,
        sops_cmds::RuleMatch::UnlessKeysGiven,
    )?;
    let store = sops_cmds::store_options(cfg.as_ref(), None)?;
    Ok(Some((spec, store)))
}

/// The deploy-key algorithm the flags ask for.
fn key_algorithm(a: &GitSecretArgs) -> CliResult<KeyAlgorithm> {
    let alg = match a.ssh_key_algorithm.unwrap_or(SshKeyAlgorithmArg::Ecdsa) {
        SshKeyAlgorithmArg::Ecdsa => {
            KeyAlgorithm::Ecdsa(match a.ssh_ecdsa_curve.unwrap_or(CurveArg::P384) {
                CurveArg::P256 => EcdsaCurve::P256,
                CurveArg::P384 => EcdsaCurve::P384,
                CurveArg::P521 => EcdsaCurve::P521,
            })
        }
        SshKeyAlgorithmArg::Ed25519 => KeyAlgorithm::Ed25519,
        SshKeyAlgorithmArg::Rsa => KeyAlgorithm::Rsa(a.ssh_rsa_bits.unwrap_or(2048)),
    };
    if a.ssh_ecdsa_curve.is_some() && !matches!(alg, KeyAlgorithm::Ecdsa(_))
        || a.ssh_rsa_bits.is_some() && !matches!(alg, KeyAlgorithm::Rsa(_))
    {
        return Err(CliError::new(
            exit::CONFLICTING_PARAMETERS,
            "--ssh-ecdsa-curve goes with --ssh-key-algorithm ecdsa, --ssh-rsa-bits with rsa",
        ));
    }
    if let KeyAlgorithm::Rsa(bits) = alg {
        gitauth::keygen::validate_rsa_bits(bits)?;
    }
    Ok(alg)
}

/// The deploy key (generated or from a file) and known_hosts.
fn ssh_credentials(a: &GitSecretArgs, url: &gitauth::GitUrl) -> CliResult<gitauth::GitCredentials> {
    let alg = key_algorithm(a)?;
    let passphrase = if a.password_stdin {
        Some(secret_from_stdin("passphrase")?)
    } else {
        secret_from_env(PASSWORD_ENV)
    };
    let key_bytes;
    let key = match &a.private_key_file {
        Some(p) => {
            if a.ssh_key_algorithm.is_some() {
                return Err(CliError::new(
                    exit::CONFLICTING_PARAMETERS,
                    "--ssh-key-algorithm is for generated keys, not --private-key-file",
                ));
            }
            key_bytes = fsutil::read_file(p)
                .map_err(|e| generic(format!("cannot read the private key: {e}")))?;
            SshKeySource::File {
                data: &key_bytes,
                passphrase,
            }
        }
        None => {
            if passphrase.is_some() {
                let from = if a.password_stdin {
                    "--password-stdin"
                } else {
                    PASSWORD_ENV
                };
                return Err(CliError::new(
                    exit::CONFLICTING_PARAMETERS,
                    format!("a passphrase ({from}) only applies to --private-key-file; generated deploy keys have none"),
                ));
            }
            SshKeySource::Generate(alg)
        }
    };
    let hosts_text;
    let hosts = match &a.known_hosts_file {
        Some(p) => {
            hosts_text = read_text_file(p, "known_hosts file")?;
            KnownHostsSource::Given(&hosts_text)
        }
        None => KnownHostsSource::Scan(ScanOptions {
            timeout: a.ssh_timeout,
            all_host_keys: a.all_host_keys,
        }),
    };
    Ok(gitauth::ssh_credentials(url, key, hosts)?)
}

/// Username and password, or a bearer token, and an optional CA.
fn http_credentials(a: &GitSecretArgs) -> CliResult<gitauth::GitCredentials> {
    let (password, bearer) = if a.bearer_token_stdin {
        (
            secret_from_env(PASSWORD_ENV),
            Some(secret_from_stdin("bearer token")?),
        )
    } else if a.password_stdin {
        (
            Some(secret_from_stdin("password")?),
            secret_from_env(BEARER_TOKEN_ENV),
        )
    } else {
        (
            secret_from_env(PASSWORD_ENV),
            secret_from_env(BEARER_TOKEN_ENV),
        )
    };
    let ca_crt = match &a.ca_crt_file {
        Some(p) => Some(read_text_file(p, "TLS CA file")?.to_string()),
        None => None,
    };
    Ok(gitauth::http_credentials(HttpAuth {
        username: a.username.clone(),
        password,
        bearer_token: bearer,
        ca_crt,
    })?)
}

/// Writes the Secret to --output (creating its folder) or stdout.
fn write_secret(a: &GitSecretArgs, bytes: &[u8], mode: NewFileMode) -> CliResult {
    let Some(p) = &a.output else {
        return write_stdout(bytes);
    };
    if let Some(dir) = p
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.exists())
    {
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError::new(
                exit::COULD_NOT_WRITE_OUTPUT_FILE,
                format!("cannot create {}: {e}", show(dir)),
            )
        })?;
    }
    Ok(fsutil::write_atomic(p, bytes, mode)?)
}

/// What was written, the deploy key to register, and a warning when the
/// Secret is not encrypted.
fn report(
    a: &GitSecretArgs,
    url: &gitauth::GitUrl,
    creds: &gitauth::GitCredentials,
    encrypted: bool,
) {
    if let Some(p) = &a.output {
        let what = if encrypted {
            "encrypted Secret"
        } else {
            "Secret (NOT encrypted, mode 0600)"
        };
        note(&format!("wrote the {what} to {}", show(p)));
    }
    if let Some(public) = &creds.identity_pub {
        note(&format!("deploy key: {}", public.trim_end()));
        note(&deploy_key_hint(url));
    }
    if !encrypted {
        note("note: the Secret is not encrypted; use --encrypt (with --age, --pgp or a .sops.yaml rule) before committing it to Git");
    }
}

/// Refuses to overwrite files unless `force`; makes sure a replaced
/// private file is 0600 before new content lands in it.
fn prepare_target(p: &Path, force: bool, private: bool) -> CliResult {
    match std::fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(_) if !force => Err(generic(format!(
            "{} already exists: pass --force to overwrite it",
            show(p)
        ))),
        Ok(m) if m.file_type().is_symlink() || !m.is_file() => Err(generic(format!(
            "{} is not a regular file; refusing to overwrite it",
            show(p)
        ))),
        Ok(_) if private => std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| generic(format!("cannot make {} private: {e}", show(p)))),
        Ok(_) => Ok(()),
    }
}

/// `kustos keygen age|pgp`.
pub fn keygen(_g: &GlobalArgs, a: KeygenArgs) -> CliResult {
    let (entry, default_name) = match a.kind {
        KeyKind::Age => (
            crate::keys::clusterkey::AGE_ENTRY,
            crate::fleet::decryption::AGE_SECRET_NAME,
        ),
        KeyKind::Pgp => (
            crate::keys::clusterkey::PGP_ENTRY,
            crate::fleet::decryption::PGP_SECRET_NAME,
        ),
    };
    if a.kind == KeyKind::Age && (a.rsa_bits.is_some() || a.key_name.is_some() || a.email.is_some())
    {
        return Err(CliError::new(
            exit::CONFLICTING_PARAMETERS,
            "--rsa-bits, --key-name and --email are for `keygen pgp`",
        ));
    }
    let meta = SecretMeta {
        name: a.name.clone().unwrap_or_else(|| default_name.to_string()),
        namespace: a.namespace.clone(),
        labels: gitauth::secret::parse_labels(&a.labels)?,
    };
    meta.validate()?;
    let files = a
        .output_dir
        .as_ref()
        .map(|d| (d.join(entry), d.join(format!("{entry}.pub"))));
    if let Some((private, public)) = &files {
        prepare_target(private, a.force, true)?;
        prepare_target(public, a.force, false)?;
    }

    let (content, public_text, recipient_line, age_r, pgp_fp): (
        Zeroizing<String>,
        String,
        String,
        Option<String>,
        Option<String>,
    ) = match a.kind {
        KeyKind::Age => {
            let k = crate::keys::clusterkey::generate_age();
            let line = format!("age recipient: {}", k.recipient);
            (
                k.file,
                format!("{}\n", k.recipient),
                line,
                Some(k.recipient),
                None,
            )
        }
        KeyKind::Pgp => {
            let uid = a
                .key_name
                .clone()
                .unwrap_or_else(|| format!("kustos {}/{}", meta.namespace, meta.name));
            let k = crate::keys::clusterkey::generate_pgp(
                &uid,
                a.email.as_deref().unwrap_or(""),
                a.rsa_bits,
            )?;
            let line = format!("PGP fingerprint: {}", k.fingerprint);
            (k.secret, k.public, line, None, Some(k.fingerprint))
        }
    };
    let secret = crate::fleet::decryption::decryption_secret(&meta, entry, &content);

    if let (Some((private, public)), Some(dir)) = (&files, &a.output_dir) {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| generic(format!("cannot create {}: {e}", show(dir))))?;
        }
        fsutil::write_atomic(private, content.as_bytes(), NewFileMode::Private)?;
        fsutil::write_atomic(public, public_text.as_bytes(), NewFileMode::Shared)?;
    }
    write_stdout(secret.as_bytes())?;

    note(&recipient_line);
    if let Some((private, public)) = &files {
        note(&format!(
            "wrote {} (private, 0600) and {}",
            show(private),
            show(public)
        ));
    }
    note("\n.sops.yaml for the tenant repositories:");
    note(
        crate::fleet::decryption::sops_yaml_snippet(age_r.as_deref(), pgp_fp.as_deref()).trim_end(),
    );
    note(&format!(
        "\nFlux Kustomization (namespace {}):",
        escape_for_terminal(&meta.namespace)
    ));
    note(crate::fleet::decryption::kustomization_snippet(&meta.name).trim_end());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("10x").is_err());
        assert!(parse_duration("").is_err());
    }
}
