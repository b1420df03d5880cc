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
    /// Comma separated list of AWS KMS key ARNs, each optionally +ROLE_ARN to assume
    #[arg(short = 'k', long, env = "SOPS_KMS_ARN", value_name = "ARNS")]
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
    /// The AWS profile for the --kms keys (stored with them)
    #[arg(long = "aws-profile", value_name = "PROFILE")]
    pub aws_profile: Option<String>,
    /// KMS encryption context for the --kms keys (and a rule's flat kms list), e.g. team:web,env:prod
    #[arg(long = "encryption-context", value_name = "PAIRS")]
    pub encryption_context: Option<String>,
}

/// `--encryption-context`, checked as sops checks it when it makes key
/// groups (exit code 6 for a malformed one).
pub fn encryption_context(s: Option<&str>) -> CliResult<Vec<(String, String)>> {
    crate::keys::kms::parse_context(s.unwrap_or("")).ok_or_else(|| {
        CliError::new(
            exit::ERROR_INVALID_KMS_ENCRYPTION_CONTEXT_FORMAT,
            "Invalid KMS encryption context format",
        )
        .with_hint("give key:value pairs separated by commas, e.g. team:web,env:prod")
    })
}

impl KeyFlags {
    /// The validated `--encryption-context`.
    pub fn context(&self) -> CliResult<Vec<(String, String)>> {
        encryption_context(self.encryption_context.as_deref())
    }

    /// The single key group the flags name, or `None` when no key flag is set.
    pub fn group(&self) -> CliResult<Option<Vec<Recipient>>> {
        let context = self.context()?;
        for (name, v) in [
            ("GCP KMS", &self.gcp_kms),
            ("Azure Key Vault", &self.azure_kv),
            ("HashiCorp Vault", &self.hc_vault_transit),
        ] {
            if v.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err(CliError::new(
                    exit::GENERIC,
                    format!(
                        "{name} keys are not supported by kustos; use age, PGP or AWS KMS keys"
                    ),
                ));
            }
        }
        let age = self.age.as_deref().filter(|s| !s.is_empty());
        let pgp = self.pgp.as_deref().filter(|s| !s.is_empty());
        let kms = self.kms.as_deref().filter(|s| !s.is_empty());
        if age.is_none() && pgp.is_none() && kms.is_none() {
            return Ok(None);
        }
        // sops' order within the group: KMS, then PGP, then age.
        let mut group: Vec<Recipient> = crate::keys::kms::keys_from_arns(
            kms.unwrap_or(""),
            &context,
            self.aws_profile.as_deref().unwrap_or(""),
        )?
        .into_iter()
        .map(Recipient::Kms)
        .collect();
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
