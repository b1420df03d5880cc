//! The cluster's SOPS decryption key: a new age identity or passwordless
//! OpenPGP key, in the form Flux's decryption Secret holds it (entries
//! ending `.agekey` hold age identities, entries ending `.asc` armored
//! passwordless OpenPGP keys).

use age::secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::sops::time::Timestamp;
use crate::Result;

/// Flux's entry name for an age key (any `*.agekey` works; this is the
/// documented one).
pub const AGE_ENTRY: &str = "age.agekey";
/// Flux's entry name for a PGP key (any `*.asc` works).
pub const PGP_ENTRY: &str = "sops.asc";

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
        super::pgp::generate_key(name, email, rsa_bits.is_none(), rsa_bits.unwrap_or(0))?;
    Ok(PgpKey {
        secret: Zeroizing::new(tsk),
        public,
        fingerprint,
    })
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
    }
}
