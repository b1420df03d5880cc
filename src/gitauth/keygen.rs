//! SSH deploy keys: generated like Flux (`fluxcd/pkg/ssh`), or loaded from
//! a file the user already has.
//!
//! - Generated ECDSA and RSA keys are PKCS#8 PEM (`-----BEGIN PRIVATE
//!   KEY-----`), which is what Flux's `x509.MarshalPKCS8PrivateKey` writes;
//!   Ed25519 keys are in the OpenSSH format, since OpenSSH before 9.6
//!   cannot load a PKCS#8 Ed25519 key (Flux reads both).
//! - A key file is kept byte for byte (Flux stores the original bytes as
//!   `identity`); it may be OpenSSH (`BEGIN OPENSSH PRIVATE KEY`, plain or
//!   passphrase-protected), PKCS#8 (plain or encrypted), PKCS#1 RSA or SEC1
//!   EC PEM.
//! - `identity.pub` is the authorized_keys line Go's
//!   `ssh.MarshalAuthorizedKey` prints: `type base64\n`, no comment.

use base64::Engine as _;
use pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rand::rngs::OsRng;
use ssh_key::public::{EcdsaPublicKey, Ed25519PublicKey, KeyData, RsaPublicKey};
use zeroize::Zeroizing;

use crate::{Error, Result};

/// An ECDSA curve for deploy keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EcdsaCurve {
    /// NIST P-256 (`ecdsa-sha2-nistp256`).
    P256,
    /// NIST P-384 (`ecdsa-sha2-nistp384`), Flux's default.
    P384,
    /// NIST P-521 (`ecdsa-sha2-nistp521`).
    P521,
}

/// The key to generate (`--ssh-key-algorithm` and its options).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA on a NIST curve.
    Ecdsa(EcdsaCurve),
    /// Ed25519.
    Ed25519,
    /// RSA with this many bits.
    Rsa(u32),
}

impl Default for KeyAlgorithm {
    /// Flux's default: ECDSA P-384.
    fn default() -> Self {
        KeyAlgorithm::Ecdsa(EcdsaCurve::P384)
    }
}

/// Checks `--ssh-rsa-bits` like Flux (at least 1024, a multiple of 8);
/// kustos also caps it at 8192 so a typo cannot hang the command.
pub fn validate_rsa_bits(bits: u32) -> Result<()> {
    if bits < 1024 || !bits.is_multiple_of(8) || bits > 8192 {
        return Err(Error::Key(format!(
            "invalid RSA key size {bits}: use a multiple of 8 from 1024 to 8192 (2048 or more recommended)"
        )));
    }
    Ok(())
}

/// A deploy key pair as it goes into the Secret.
pub struct DeployKey {
    /// `identity`: the private key (PEM or OpenSSH text).
    pub identity: Zeroizing<String>,
    /// `identity.pub`: `type base64\n`.
    pub identity_pub: String,
}

impl std::fmt::Debug for DeployKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeployKey")
            .field("identity", &"<redacted>")
            .field("identity_pub", &self.identity_pub)
            .finish()
    }
}

impl DeployKey {
    /// The public key type, e.g. `ecdsa-sha2-nistp384`.
    pub fn key_type(&self) -> &str {
        self.identity_pub.split(' ').next().unwrap_or("")
    }
}

/// `ssh.MarshalAuthorizedKey`: `type base64(blob)\n`.
pub fn authorized_key_line(key: &KeyData) -> Result<String> {
    let blob = ssh_key::PublicKey::new(key.clone(), "")
        .to_bytes()
        .map_err(|e| Error::Key(format!("cannot encode the SSH public key: {e}")))?;
    Ok(format!(
        "{} {}\n",
        key.algorithm().as_str(),
        base64::engine::general_purpose::STANDARD.encode(blob)
    ))
}

fn pem_err(e: impl std::fmt::Display) -> Error {
    Error::Key(format!("cannot encode the private key as PKCS#8: {e}"))
}

fn ecdsa_key_data(sec1_point: &[u8]) -> Result<KeyData> {
    let pk = EcdsaPublicKey::from_sec1_bytes(sec1_point)
        .map_err(|e| Error::Key(format!("invalid ECDSA public key: {e}")))?;
    Ok(KeyData::Ecdsa(pk))
}

fn rsa_key_data(pk: &rsa::RsaPublicKey) -> Result<KeyData> {
    let k = RsaPublicKey::try_from(pk)
        .map_err(|e| Error::Key(format!("invalid RSA public key: {e}")))?;
    Ok(KeyData::Rsa(k))
}

/// Generates a deploy key: PKCS#8 PEM like Flux for ECDSA and RSA, the
/// OpenSSH format for Ed25519.
pub fn generate(alg: KeyAlgorithm) -> Result<DeployKey> {
    let (pem, data): (Zeroizing<String>, KeyData) = match alg {
        KeyAlgorithm::Ecdsa(EcdsaCurve::P256) => {
            let sk = p256::SecretKey::random(&mut OsRng);
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &sk.public_key(),
                false,
            );
            (
                sk.to_pkcs8_pem(LineEnding::LF).map_err(pem_err)?,
                ecdsa_key_data(point.as_bytes())?,
            )
        }
        KeyAlgorithm::Ecdsa(EcdsaCurve::P384) => {
            let sk = p384::SecretKey::random(&mut OsRng);
            let point = p384::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &sk.public_key(),
                false,
            );
            (
                sk.to_pkcs8_pem(LineEnding::LF).map_err(pem_err)?,
                ecdsa_key_data(point.as_bytes())?,
            )
        }
        KeyAlgorithm::Ecdsa(EcdsaCurve::P521) => {
            let sk = p521::SecretKey::random(&mut OsRng);
            let point = p521::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &sk.public_key(),
                false,
            );
            (
                sk.to_pkcs8_pem(LineEnding::LF).map_err(pem_err)?,
                ecdsa_key_data(point.as_bytes())?,
            )
        }
        KeyAlgorithm::Ed25519 => {
            // The OpenSSH format: Flux's Go parser reads it, and so does
            // every OpenSSH (PKCS#8 Ed25519 only from OpenSSH 9.6), so an
            // admin can test the key with `ssh -i`.
            let sk = ed25519_dalek::SigningKey::generate(&mut OsRng);
            let kp = ssh_key::private::Ed25519Keypair::from(&sk);
            let key = ssh_key::PrivateKey::new(ssh_key::private::KeypairData::Ed25519(kp), "")
                .map_err(pem_err)?;
            let pem = key.to_openssh(ssh_key::LineEnding::LF).map_err(pem_err)?;
            let data = KeyData::Ed25519(Ed25519PublicKey::from(sk.verifying_key()));
            (pem, data)
        }
        KeyAlgorithm::Rsa(bits) => {
            validate_rsa_bits(bits)?;
            let sk = rsa::RsaPrivateKey::new(&mut OsRng, bits as usize)
                .map_err(|e| Error::Key(format!("RSA key generation failed: {e}")))?;
            let data = rsa_key_data(&sk.to_public_key())?;
            (sk.to_pkcs8_pem(LineEnding::LF).map_err(pem_err)?, data)
        }
    };
    Ok(DeployKey {
        identity: pem,
        identity_pub: authorized_key_line(&data)?,
    })
}

/// The public key of a PKCS#8 private key (DER), trying each algorithm.
fn pkcs8_public(der: &[u8]) -> Option<Result<KeyData>> {
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        return Some(ecdsa_key_data(
            k.public_key().to_encoded_point(false).as_bytes(),
        ));
    }
    if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        return Some(ecdsa_key_data(
            k.public_key().to_encoded_point(false).as_bytes(),
        ));
    }
    if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
        return Some(ecdsa_key_data(
            k.public_key().to_encoded_point(false).as_bytes(),
        ));
    }
    if let Ok(kp) = ed25519_dalek::pkcs8::KeypairBytes::from_pkcs8_der(der) {
        let sk = ed25519_dalek::SigningKey::from_bytes(&kp.secret_key);
        return Some(Ok(KeyData::Ed25519(Ed25519PublicKey::from(
            sk.verifying_key(),
        ))));
    }
    if let Ok(k) = rsa::RsaPrivateKey::from_pkcs8_der(der) {
        return Some(rsa_key_data(&k.to_public_key()));
    }
    None
}

fn pem_body(text: &str, label: &str) -> Result<Zeroizing<Vec<u8>>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin).map(|i| i + begin.len());
    let stop = text.find(&end);
    let (Some(a), Some(b)) = (start, stop) else {
        return Err(Error::Key(format!("malformed PEM: missing {end}")));
    };
    if a > b {
        return Err(Error::Key("malformed PEM block".into()));
    }
    let body: Zeroizing<String> =
        Zeroizing::new(text[a..b].chars().filter(|c| !c.is_whitespace()).collect());
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map(Zeroizing::new)
        .map_err(|_| Error::Key("malformed PEM: the body is not base64".into()))
}

const NEED_PASSPHRASE: &str =
    "the private key is passphrase-protected: give the passphrase with --password-stdin or KUSTOS_GIT_PASSWORD";
const NOT_ENCRYPTED: &str =
    "a passphrase was given but the private key is not encrypted (Flux would reject it too)";

/// Loads a private key file's bytes: keeps them as `identity` and derives
/// `identity.pub`. `passphrase` must be given exactly when the key is
/// encrypted (it then goes into the Secret as `password`, as Flux does).
pub fn load_private_key(data: &[u8], passphrase: Option<&[u8]>) -> Result<DeployKey> {
    let text = std::str::from_utf8(data).map_err(|_| {
        Error::Key("the private key file is not text (expected OpenSSH or PEM)".into())
    })?;
    let key = if text.contains("-----BEGIN OPENSSH PRIVATE KEY-----") {
        let k = ssh_key::PrivateKey::from_openssh(text)
            .map_err(|e| Error::Key(format!("cannot parse the OpenSSH private key: {e}")))?;
        match (k.is_encrypted(), passphrase) {
            (true, None) => return Err(Error::Key(NEED_PASSPHRASE.into())),
            (false, Some(_)) => return Err(Error::Key(NOT_ENCRYPTED.into())),
            (true, Some(p)) => {
                let dec = k.decrypt(p).map_err(|_| {
                    Error::Key("cannot decrypt the private key: wrong passphrase?".into())
                })?;
                dec.public_key().key_data().clone()
            }
            (false, None) => k.public_key().key_data().clone(),
        }
    } else if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(p) = passphrase else {
            return Err(Error::Key(NEED_PASSPHRASE.into()));
        };
        let der = pem_body(text, "ENCRYPTED PRIVATE KEY")?;
        let info = pkcs8::EncryptedPrivateKeyInfo::try_from(der.as_slice())
            .map_err(|e| Error::Key(format!("cannot parse the encrypted PKCS#8 key: {e}")))?;
        let doc = info
            .decrypt(p)
            .map_err(|_| Error::Key("cannot decrypt the private key: wrong passphrase?".into()))?;
        pkcs8_public(doc.as_bytes()).unwrap_or_else(|| {
            Err(Error::Key(
                "unsupported PKCS#8 key: use RSA, ECDSA (P-256/384/521) or Ed25519".into(),
            ))
        })?
    } else if text.contains("-----BEGIN PRIVATE KEY-----") {
        if passphrase.is_some() {
            return Err(Error::Key(NOT_ENCRYPTED.into()));
        }
        let der = pem_body(text, "PRIVATE KEY")?;
        pkcs8_public(&der).unwrap_or_else(|| {
            Err(Error::Key(
                "unsupported PKCS#8 key: use RSA, ECDSA (P-256/384/521) or Ed25519".into(),
            ))
        })?
    } else if text.contains("-----BEGIN RSA PRIVATE KEY-----")
        || text.contains("-----BEGIN EC PRIVATE KEY-----")
    {
        if text.contains("Proc-Type: 4,ENCRYPTED") {
            return Err(Error::Key(
                "legacy encrypted PEM keys are not supported: convert the key with `ssh-keygen -p -f FILE` (OpenSSH format)".into(),
            ));
        }
        if passphrase.is_some() {
            return Err(Error::Key(NOT_ENCRYPTED.into()));
        }
        if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            let der = pem_body(text, "RSA PRIVATE KEY")?;
            let k = rsa::RsaPrivateKey::from_pkcs1_der(&der)
                .map_err(|e| Error::Key(format!("cannot parse the PKCS#1 RSA key: {e}")))?;
            rsa_key_data(&k.to_public_key())?
        } else {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            let der = pem_body(text, "EC PRIVATE KEY")?;
            if let Ok(k) = p256::SecretKey::from_sec1_der(&der) {
                ecdsa_key_data(k.public_key().to_encoded_point(false).as_bytes())?
            } else if let Ok(k) = p384::SecretKey::from_sec1_der(&der) {
                ecdsa_key_data(k.public_key().to_encoded_point(false).as_bytes())?
            } else if let Ok(k) = p521::SecretKey::from_sec1_der(&der) {
                ecdsa_key_data(k.public_key().to_encoded_point(false).as_bytes())?
            } else {
                return Err(Error::Key(
                    "cannot parse the EC private key (P-256, P-384 and P-521 are supported)".into(),
                ));
            }
        }
    } else if text.contains("PUBLIC KEY") || text.starts_with("ssh-") || text.starts_with("ecdsa-")
    {
        return Err(Error::Key(
            "this is a public key; --private-key-file needs the private key".into(),
        ));
    } else {
        return Err(Error::Key(
            "unsupported private key format: expected an OpenSSH (BEGIN OPENSSH PRIVATE KEY) or PEM private key".into(),
        ));
    };
    if key.algorithm() == ssh_key::Algorithm::Dsa {
        return Err(Error::Key(
            "DSA keys are not supported: use ECDSA, Ed25519 or RSA".into(),
        ));
    }
    Ok(DeployKey {
        identity: Zeroizing::new(text.to_string()),
        identity_pub: authorized_key_line(&key)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip() {
        for alg in [
            KeyAlgorithm::Ecdsa(EcdsaCurve::P256),
            KeyAlgorithm::Ecdsa(EcdsaCurve::P384),
            KeyAlgorithm::Ecdsa(EcdsaCurve::P521),
            KeyAlgorithm::Ed25519,
        ] {
            let k = generate(alg).unwrap();
            let header = if alg == KeyAlgorithm::Ed25519 {
                "-----BEGIN OPENSSH PRIVATE KEY-----\n"
            } else {
                "-----BEGIN PRIVATE KEY-----\n"
            };
            assert!(k.identity.starts_with(header), "{alg:?}");
            assert!(k.identity_pub.ends_with('\n') && !k.identity_pub.trim_end().contains('\n'));
            let again = load_private_key(k.identity.as_bytes(), None).unwrap();
            assert_eq!(again.identity_pub, k.identity_pub, "{alg:?}");
        }
        assert_eq!(
            generate(KeyAlgorithm::Ecdsa(EcdsaCurve::P384))
                .unwrap()
                .key_type(),
            "ecdsa-sha2-nistp384"
        );
        assert!(validate_rsa_bits(1000).is_err());
        assert!(validate_rsa_bits(2049).is_err());
        assert!(validate_rsa_bits(2048).is_ok());
    }

    #[test]
    fn passphrase_rules() {
        let k = generate(KeyAlgorithm::Ed25519).unwrap();
        assert!(load_private_key(k.identity.as_bytes(), Some(b"x")).is_err());
        assert!(load_private_key(b"garbage", None).is_err());
    }
}
