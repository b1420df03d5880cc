//! The master-key records of a file's metadata: one wrapped copy of the
//! data key (or of a Shamir share) per recipient, in key groups. Only
//! their form lives here; wrapping and unwrapping are the key backends'
//! (`crate::keys`).

use crate::sops::time::Timestamp;
use crate::sops::value::Map;

/// One wrapped copy of the data key (or of a Shamir share) in the metadata.
#[derive(Clone, Debug, PartialEq)]
pub enum MasterKey {
    /// An age recipient and the armored age file holding the key.
    Age {
        /// `age1…`, `ssh-ed25519 …` or `ssh-rsa …`.
        recipient: String,
        /// Armored age ciphertext.
        enc: String,
    },
    /// An OpenPGP certificate fingerprint and the armored PGP message.
    Pgp {
        /// Fingerprint as the user gave it (spaces removed).
        fp: String,
        /// When the key was wrapped.
        created_at: Timestamp,
        /// Armored PGP message.
        enc: String,
    },
    /// A cloud KMS or Vault entry kustos cannot use but keeps on rewrite.
    Foreign {
        /// Which list it came from.
        kind: ForeignKind,
        /// Its fields, in file order.
        fields: Map,
    },
}

/// The key types kustos preserves without using them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignKind {
    /// AWS KMS (`kms`).
    Kms,
    /// GCP KMS (`gcp_kms`).
    GcpKms,
    /// Azure Key Vault (`azure_kv`).
    AzureKv,
    /// HashiCorp Vault transit (`hc_vault`).
    HcVault,
}

impl ForeignKind {
    /// The metadata field name.
    pub fn field(self) -> &'static str {
        match self {
            ForeignKind::Kms => "kms",
            ForeignKind::GcpKms => "gcp_kms",
            ForeignKind::AzureKv => "azure_kv",
            ForeignKind::HcVault => "hc_vault",
        }
    }

    fn id_field(self) -> &'static str {
        match self {
            ForeignKind::Kms => "arn",
            ForeignKind::GcpKms => "resource_id",
            ForeignKind::AzureKv => "vault_url",
            ForeignKind::HcVault => "vault_address",
        }
    }
}

impl MasterKey {
    /// The identifier `--decryption-order` uses (`age`, `pgp`, `kms`, …).
    pub fn type_id(&self) -> &'static str {
        match self {
            MasterKey::Age { .. } => "age",
            MasterKey::Pgp { .. } => "pgp",
            MasterKey::Foreign { kind, .. } => kind.field(),
        }
    }

    /// What the key is called in messages and in `--rm-*` (sops' `ToString`).
    pub fn name(&self) -> String {
        match self {
            MasterKey::Age { recipient, .. } => recipient.clone(),
            MasterKey::Pgp { fp, .. } => fp.clone(),
            MasterKey::Foreign { kind, fields } => fields
                .get(kind.id_field())
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string(),
        }
    }

    /// The wrapped key material.
    pub fn enc(&self) -> &str {
        match self {
            MasterKey::Age { enc, .. } | MasterKey::Pgp { enc, .. } => enc,
            MasterKey::Foreign { fields, .. } => {
                fields.get("enc").and_then(|v| v.as_str()).unwrap_or("")
            }
        }
    }
}

/// A group of master keys that each wrap the same secret.
pub type KeyGroup = Vec<MasterKey>;
