//! The cluster's SOPS decryption key, as the Secret kustomize-controller
//! reads (`spec.decryption.secretRef`): entries ending `.agekey` hold age
//! identities, entries ending `.asc` armored passwordless OpenPGP keys.

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use super::secret::{self, SecretMeta, ENCRYPTED_REGEX};
use crate::sops::time::Timestamp;
use crate::Result;

/// Flux's entry name for an age key (any `*.agekey` works; this is the
/// documented one).
pub const AGE_ENTRY: &str = "age.agekey";
/// Flux's entry name for a PGP key (any `*.asc` works).
pub const PGP_ENTRY: &str = "sops.asc";
/// Default Secret name for an age key, as in Flux's documentation.
pub const AGE_SECRET_NAME: &str = "sops-age";
/// Default Secret name for a PGP key, as in Flux's documentation.
pub const PGP_SECRET_NAME: &str = "sops-gpg";

/// A new age identity.
pub struct AgeKey {
    /// The key file, as `age-keygen` writes it: `# created: …`,
    /// `# public key: age1…`, `AGE-SECRET-KEY-1…`.
    pub file: Zeroizing<String>,
    /// The recipient (`age1…`).
    pub recipient: String,
}

/// Generates an age X25519 identity.
pub fn generate_age() -> AgeKey {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let secret = id.to_string();
    let mut file = Zeroizing::new(String::with_capacity(160));
    file.push_str("# created: ");
    file.push_str(&Timestamp::now_utc().rfc3339());
    file.push_str("\n# public key: ");
    file.push_str(&recipient);
    file.push('\n');
    file.push_str(secret.expose_secret());
    file.push('\n');
    AgeKey { file, recipient }
}

/// A new passwordless OpenPGP key.
pub struct PgpKey {
    /// The armored secret key (TSK).
    pub secret: Zeroizing<String>,
    /// The armored public certificate.
    pub public: String,
    /// The fingerprint, uppercase hex.
    pub fingerprint: String,
}

/// Generates a passwordless OpenPGP key: Curve25519 by default, RSA of
/// `rsa_bits` when given.
pub fn generate_pgp(name: &str, email: &str, rsa_bits: Option<u32>) -> Result<PgpKey> {
    let (tsk, public, fingerprint) =
        crate::keys::pgp::generate_key(name, email, rsa_bits.is_none(), rsa_bits.unwrap_or(0))?;
    Ok(PgpKey {
        secret: Zeroizing::new(tsk),
        public,
        fingerprint,
    })
}

/// The decryption Secret: one `stringData` entry (so it can be reviewed
/// before `kubectl apply`), laid out like Flux's exports.
pub fn decryption_secret(meta: &SecretMeta, entry: &str, content: &str) -> Zeroizing<String> {
    secret::render(meta, &[(entry, content)])
}

/// A `.sops.yaml` that encrypts the `data`/`stringData` of every YAML file
/// to the given age recipient and/or PGP fingerprint.
pub fn sops_yaml_snippet(age: Option<&str>, pgp: Option<&str>) -> String {
    let mut s = String::from("creation_rules:\n  - path_regex: .*\\.ya?ml$\n");
    s.push_str(&format!("    encrypted_regex: {ENCRYPTED_REGEX}\n"));
    if let Some(a) = age {
        s.push_str(&format!("    age: {a}\n"));
    }
    if let Some(p) = pgp {
        s.push_str(&format!("    pgp: {p}\n"));
    }
    s
}

/// The `spec.decryption` block a Flux Kustomization needs to use the Secret.
pub fn kustomization_snippet(secret_name: &str) -> String {
    format!("spec:\n  decryption:\n    provider: sops\n    secretRef:\n      name: {secret_name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_key_file_like_age_keygen() {
        let k = generate_age();
        let lines: Vec<&str> = k.file.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("# created: ") && lines[0].ends_with('Z'));
        assert_eq!(lines[1], format!("# public key: {}", k.recipient));
        assert!(lines[2].starts_with("AGE-SECRET-KEY-1"));
        let meta = SecretMeta {
            name: AGE_SECRET_NAME.into(),
            namespace: "flux-system".into(),
            labels: vec![],
        };
        let s = decryption_secret(&meta, AGE_ENTRY, &k.file);
        assert!(s.starts_with("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: sops-age\n  namespace: flux-system\nstringData:\n  age.agekey: |\n    # created: "));
        assert!(s.ends_with(&format!("    {}\n\n", lines[2])));
    }
}
