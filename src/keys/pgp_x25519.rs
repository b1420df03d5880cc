//! ECDH session-key decryption for OpenPGP Curve25519 (cv25519) keys whose
//! secret scalar `pgp_split` took out of the key file.
//!
//! Sequoia keeps the secret of every key it parses sealed in memory and
//! re-derives the sealing key from a 16 KiB pre-key (SHA-256) on each
//! access: three derivations (sealing two keys, unsealing one) are half
//! of a GnuPG `future-default` key's decrypt. Here the X25519 step runs on
//! the scalar directly (x25519-dalek, constant-time) and Sequoia does the
//! rest of RFC 6637 (KDF, AES key unwrap, padding) as it does for its own
//! keys.

use std::fmt;

use sequoia_openpgp as openpgp;
use zeroize::{Zeroize, Zeroizing};

use openpgp::crypto::mpi::{self, Ciphertext};
use openpgp::crypto::{Decryptor, SessionKey};
use openpgp::packet::key::{PublicParts, UnspecifiedRole};
use openpgp::packet::Key;
use openpgp::types::Curve;

use super::pgp_split::X25519Secret;

/// Decrypts session keys for one cv25519 key with its split-out scalar.
pub(super) struct X25519Decryptor<'a> {
    pub public: &'a Key<PublicParts, UnspecifiedRole>,
    pub secret: &'a X25519Secret,
}

// The scalar never shows up in debug output.
impl fmt::Debug for X25519Decryptor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519Decryptor")
            .field("key", &self.public.fingerprint().to_hex())
            .finish_non_exhaustive()
    }
}

/// Whether `public` is the cv25519 key the scalar was stored with.
pub(super) fn belongs_to(
    public: &Key<PublicParts, UnspecifiedRole>,
    secret: &X25519Secret,
) -> bool {
    matches!(
        public.mpis(),
        mpi::PublicKey::ECDH { curve: Curve::Cv25519, q, .. } if q.value() == secret.public
    )
}

impl Decryptor for X25519Decryptor<'_> {
    fn public(&self) -> &Key<PublicParts, UnspecifiedRole> {
        self.public
    }

    fn decrypt(
        &mut self,
        ciphertext: &Ciphertext,
        plaintext_len: Option<usize>,
    ) -> openpgp::Result<SessionKey> {
        let not_ours = || openpgp::Error::InvalidOperation("not a cv25519 ciphertext".into());
        let Ciphertext::ECDH { e, .. } = ciphertext else {
            return Err(not_ours().into());
        };
        if !belongs_to(self.public, self.secret) || self.secret.scalar.len() > 32 {
            return Err(not_ours().into());
        }
        let ephemeral: [u8; 32] = e.decode_point(&Curve::Cv25519)?.0.try_into()?;
        // OpenPGP stores the scalar big-endian and may drop leading zero
        // bytes; X25519 takes 32 bytes little-endian. Padding is
        // unconditional (the length is public: it is in the key file).
        let mut scalar = Zeroizing::new([0u8; 32]);
        scalar[32 - self.secret.scalar.len()..].copy_from_slice(&self.secret.scalar);
        scalar.reverse();
        let secret = x25519_dalek::StaticSecret::from(*scalar);
        let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(ephemeral));
        let mut shared_bytes = shared.to_bytes();
        let protected = openpgp::crypto::mem::Protected::from(&shared_bytes[..]);
        shared_bytes.zeroize();
        openpgp::crypto::ecdh::decrypt_unwrap(self.public, &protected, ciphertext, plaintext_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::crypto::mpi::SecretKeyMaterial;
    use openpgp::packet::key::{Key4, SecretParts};
    use openpgp::packet::pkesk::PKESK3;
    use openpgp::types::SymmetricAlgorithm;

    fn scalar_of(key: &Key<SecretParts, UnspecifiedRole>) -> Vec<u8> {
        let openpgp::packet::key::SecretKeyMaterial::Unencrypted(secret) = key.secret() else {
            unreachable!()
        };
        secret.map(|s| match s {
            SecretKeyMaterial::ECDH { scalar } => scalar.value().to_vec(),
            _ => unreachable!(),
        })
    }

    #[test]
    fn decrypts_what_sequoia_encrypts() {
        for _ in 0..8 {
            let key: Key<SecretParts, UnspecifiedRole> =
                Key::V4(Key4::generate_ecc(false, Curve::Cv25519).unwrap());
            let public = key.clone().take_secret().0;
            let mpi::PublicKey::ECDH { q, .. } = public.mpis() else {
                unreachable!()
            };
            let secret = X25519Secret {
                public: q.value().to_vec(),
                scalar: scalar_of(&key),
            };
            let session = SessionKey::new(32).unwrap();
            let pkesk =
                PKESK3::for_recipient(SymmetricAlgorithm::AES256, &session, &public).unwrap();
            let mut ours = X25519Decryptor {
                public: &public,
                secret: &secret,
            };
            let (algo, got) = pkesk.decrypt(&mut ours, None).unwrap();
            assert_eq!(algo, SymmetricAlgorithm::AES256);
            assert_eq!(&got[..], &session[..]);

            // Another key's scalar, or a scalar for another public key, fails.
            let other: Key<SecretParts, UnspecifiedRole> =
                Key::V4(Key4::generate_ecc(false, Curve::Cv25519).unwrap());
            let wrong = X25519Secret {
                public: secret.public.clone(),
                scalar: scalar_of(&other),
            };
            let mut ours = X25519Decryptor {
                public: &public,
                secret: &wrong,
            };
            assert!(pkesk.decrypt(&mut ours, None).is_none());
            let elsewhere = other.clone().take_secret().0;
            let mut ours = X25519Decryptor {
                public: &elsewhere,
                secret: &secret,
            };
            assert!(!belongs_to(&elsewhere, &secret));
            assert!(ours
                .decrypt(
                    &Ciphertext::RSA {
                        c: mpi::MPI::new(&[1])
                    },
                    None
                )
                .is_err());
        }
    }
}
