//! Flag groups shared by several commands (flattened into their
//! arguments), so each sops flag is declared, documented and completed once.

use clap::Args;

use super::{CliError, CliResult};
use crate::error::escape_for_terminal;
use crate::error::exit;
use crate::keys::Recipient;

/// The store names `--input-type` and `--output-type` take.
pub const STORES: [&str; 5] = ["yaml", "json", "dotenv", "ini", "binary"];

/// `--input-type` and `--output-type`.
#[derive(Args, Debug, Clone, Default)]
pub struct Formats {
    /// Input format (default: by extension)
    #[arg(long = "input-type", value_name = "TYPE", value_parser = STORES)]
    pub input_type: Option<String>,
    /// Output format (default: the input's)
    #[arg(long = "output-type", value_name = "TYPE", value_parser = STORES)]
    pub output_type: Option<String>,
}

/// `--input-type` alone (commands that write no other format).
#[derive(Args, Debug, Clone, Default)]
pub struct InputFormat {
    /// Input format (default: by extension)
    #[arg(long = "input-type", value_name = "TYPE", value_parser = STORES)]
    pub input_type: Option<String>,
}

/// `--decryption-order`.
#[derive(Args, Debug, Clone, Default)]
pub struct DecryptionOrder {
    /// Order in which key types are tried, e.g. age,pgp
    #[arg(
        long = "decryption-order",
        env = "SOPS_DECRYPTION_ORDER",
        value_name = "TYPES"
    )]
    pub decryption_order: Option<String>,
}

impl DecryptionOrder {
    /// The key types in the order to try them (age, then pgp by default).
    pub fn resolve(&self) -> CliResult<Vec<String>> {
        decryption_order(self.decryption_order.as_deref())
    }
}

/// `--ignore-mac`.
#[derive(Args, Debug, Clone, Default)]
pub struct IgnoreMac {
    /// Decrypt even if the MAC does not match (dangerous)
    #[arg(long = "ignore-mac")]
    pub ignore_mac: bool,
}

/// Key flags (and their sops environment variables).
#[derive(Args, Debug, Clone, Default)]
pub struct KeyFlags {
    /// Comma separated list of age recipients
    #[arg(
        short = 'a',
        long,
        env = "SOPS_AGE_RECIPIENTS",
        value_name = "RECIPIENTS"
    )]
    pub age: Option<String>,
    /// Comma separated list of PGP fingerprints
    #[arg(short = 'p', long, env = "SOPS_PGP_FP", value_name = "FPRS")]
    pub pgp: Option<String>,
    /// AWS KMS ARNs (not supported by kustos; kept so scripts get a clear error)
    #[arg(short = 'k', long, env = "SOPS_KMS_ARN", hide = true)]
    pub kms: Option<String>,
    /// GCP KMS resource IDs (not supported)
    #[arg(long = "gcp-kms", env = "SOPS_GCP_KMS_IDS", hide = true)]
    pub gcp_kms: Option<String>,
    /// Azure Key Vault URLs (not supported)
    #[arg(long = "azure-kv", env = "SOPS_AZURE_KEYVAULT_URLS", hide = true)]
    pub azure_kv: Option<String>,
    /// Vault transit URIs (not supported)
    #[arg(long = "hc-vault-transit", env = "SOPS_VAULT_URIS", hide = true)]
    pub hc_vault_transit: Option<String>,
    /// AWS profile (accepted for compatibility)
    #[arg(long = "aws-profile", hide = true)]
    pub aws_profile: Option<String>,
    /// KMS encryption context (accepted for compatibility)
    #[arg(long = "encryption-context", hide = true)]
    pub encryption_context: Option<String>,
}

impl KeyFlags {
    /// The single key group the flags name, or `None` when no key flag is set.
    pub fn group(&self) -> CliResult<Option<Vec<Recipient>>> {
        for (name, v) in [
            ("AWS KMS", &self.kms),
            ("GCP KMS", &self.gcp_kms),
            ("Azure Key Vault", &self.azure_kv),
            ("HashiCorp Vault", &self.hc_vault_transit),
        ] {
            if v.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(CliError::new(
                    exit::GENERIC,
                    format!("{name} keys are not supported by kustos; use age or PGP recipients"),
                ));
            }
        }
        let age = self.age.as_deref().filter(|s| !s.is_empty());
        let pgp = self.pgp.as_deref().filter(|s| !s.is_empty());
        if age.is_none() && pgp.is_none() {
            return Ok(None);
        }
        let mut group = Vec::new();
        for fp in pgp
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            group.push(Recipient::pgp(fp));
        }
        for r in age
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            crate::keys::age::validate_recipient(r)?;
            group.push(Recipient::Age(r.to_string()));
        }
        Ok(Some(group))
    }
}

/// Which values to encrypt.
#[derive(Args, Debug, Clone, Default)]
pub struct SelectionFlags {
    /// Keys ending with this suffix stay plaintext (default _unencrypted)
    #[arg(long = "unencrypted-suffix", value_name = "SUFFIX")]
    pub unencrypted_suffix: Option<String>,
    /// Only keys ending with this suffix are encrypted
    #[arg(long = "encrypted-suffix", value_name = "SUFFIX")]
    pub encrypted_suffix: Option<String>,
    /// Keys matching this regex stay plaintext
    #[arg(long = "unencrypted-regex", value_name = "REGEX")]
    pub unencrypted_regex: Option<String>,
    /// Only keys matching this regex are encrypted, e.g. '^(data|stringData)$' for Kubernetes Secrets
    #[arg(long = "encrypted-regex", value_name = "REGEX")]
    pub encrypted_regex: Option<String>,
    /// Values after a comment matching this regex stay plaintext
    #[arg(long = "unencrypted-comment-regex", value_name = "REGEX")]
    pub unencrypted_comment_regex: Option<String>,
    /// Only values after a comment matching this regex are encrypted
    #[arg(long = "encrypted-comment-regex", value_name = "REGEX")]
    pub encrypted_comment_regex: Option<String>,
    /// Only encrypted values are covered by the MAC
    #[arg(long = "mac-only-encrypted")]
    pub mac_only_encrypted: bool,
}

fn decryption_order(s: Option<&str>) -> CliResult<Vec<String>> {
    let Some(s) = s.filter(|s| !s.is_empty()) else {
        return Ok(vec!["age".into(), "pgp".into()]);
    };
    let mut out: Vec<String> = Vec::new();
    for t in s.split(',') {
        if out.iter().any(|o| o == t) {
            return Err(CliError::new(
                exit::DUPLICATE_DECRYPTION_KEY_TYPE,
                format!("Duplicate decryption key type: {}", escape_for_terminal(t)),
            ));
        }
        out.push(t.to_string());
    }
    Ok(out)
}
