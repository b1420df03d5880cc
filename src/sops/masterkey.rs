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
    /// An AWS KMS key and the data key it encrypted.
    Kms {
        /// Which key, with what role, context and profile.
        key: KmsKeyId,
        /// When the key was wrapped.
        created_at: Timestamp,
        /// The KMS ciphertext, base64 (standard alphabet, padded).
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

/// An AWS KMS master key as sops names it: the key's ARN, the IAM role to
/// assume for it, the encryption context and the AWS profile.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KmsKeyId {
    /// The key (or alias) ARN; its region says where KMS is called.
    pub arn: String,
    /// A role ARN to assume through STS first, or empty.
    pub role: String,
    /// The encryption context, sorted by key (KMS binds the ciphertext to
    /// it: decryption must present the same pairs).
    pub context: Vec<(String, String)>,
    /// The shared-config profile whose credentials are used, or empty.
    pub aws_profile: String,
}

impl KmsKeyId {
    /// sops' `ToString` of the key: `ARN[+ROLE]`, then `|CONTEXT` when a
    /// context or profile is set, then `|PROFILE` when a profile is set,
    /// the context as `k:v` pairs joined by commas in key order. sops
    /// matches keys by this string in updatekeys and `--rm-kms`.
    pub fn name(&self) -> String {
        let mut s = self.arn.clone();
        if !self.role.is_empty() {
            s.push('+');
            s.push_str(&self.role);
        }
        let ctx = self
            .context
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",");
        if !self.aws_profile.is_empty() {
            s.push('|');
            s.push_str(&ctx);
            s.push('|');
            s.push_str(&self.aws_profile);
        } else if !ctx.is_empty() {
            s.push('|');
            s.push_str(&ctx);
        }
        s
    }

    /// Sets the context from pairs: sorted by key, a repeated key keeping
    /// its last value (a Go map's behaviour).
    pub fn set_context(&mut self, pairs: impl IntoIterator<Item = (String, String)>) {
        let mut m = std::collections::BTreeMap::new();
        for (k, v) in pairs {
            m.insert(k, v);
        }
        self.context = m.into_iter().collect();
    }
}

/// The key types kustos preserves without using them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForeignKind {
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
            ForeignKind::GcpKms => "gcp_kms",
            ForeignKind::AzureKv => "azure_kv",
            ForeignKind::HcVault => "hc_vault",
        }
    }

    fn id_field(self) -> &'static str {
        match self {
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
            MasterKey::Kms { .. } => "kms",
            MasterKey::Foreign { kind, .. } => kind.field(),
        }
    }

    /// What the key is called in messages and in `--rm-*` (sops' `ToString`).
    pub fn name(&self) -> String {
        match self {
            MasterKey::Age { recipient, .. } => recipient.clone(),
            MasterKey::Pgp { fp, .. } => fp.clone(),
            MasterKey::Kms { key, .. } => key.name(),
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
            MasterKey::Age { enc, .. }
            | MasterKey::Pgp { enc, .. }
            | MasterKey::Kms { enc, .. } => enc,
            MasterKey::Foreign { fields, .. } => {
                fields.get("enc").and_then(|v| v.as_str()).unwrap_or("")
            }
        }
    }
}

/// A group of master keys that each wrap the same secret.
pub type KeyGroup = Vec<MasterKey>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kms_names_are_sops_to_string() {
        let mut k = KmsKeyId {
            arn: "arn:aws:kms:eu-west-1:111122223333:key/k".into(),
            ..Default::default()
        };
        assert_eq!(k.name(), "arn:aws:kms:eu-west-1:111122223333:key/k");
        k.role = "arn:aws:iam::111122223333:role/r".into();
        assert_eq!(
            k.name(),
            "arn:aws:kms:eu-west-1:111122223333:key/k+arn:aws:iam::111122223333:role/r"
        );
        k.set_context([
            ("b".into(), "2".into()),
            ("a".into(), "0".into()),
            ("a".into(), "1".into()),
        ]);
        assert!(k.name().ends_with("/r|a:1,b:2"));
        k.aws_profile = "dev".into();
        assert!(k.name().ends_with("/r|a:1,b:2|dev"));
        k.context.clear();
        assert!(k.name().ends_with("/r||dev"));
    }
}
