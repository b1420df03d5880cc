//! RSA decryption of OpenPGP session keys, in AWS-LC.
//!
//! The private-key operation and the PKCS #1 v1.5 unpadding run in
//! aws-lc-rs (`Pkcs1PrivateDecryptingKey`: constant time, with blinding).
//! Its key is built once per loaded key from the numbers Sequoia parsed;
//! the CRT exponents the key format needs come from the `rsa` crate's
//! arithmetic, at set-up only.
//!
//! AWS-LC reports a bad padding as an error, and a caller that answers
//! "bad padding" differently from "wrong session key" is a padding oracle.
//! So every RSA ciphertext gets a message back (implicit rejection, as the
//! CFRG's RSA implementation guidance specifies it): when the block is not
//! well formed, or its message is too short to be an OpenPGP session key,
//! a pseudo-random message derived from the private key and the ciphertext
//! is chosen instead, in constant time. Sequoia's size and checksum checks
//! then turn it down exactly as they turn down a wrong key.

use std::fmt;
use std::ops::RangeInclusive;

use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, PrivateDecryptingKey};
use hmac::{Hmac, Mac};
use rsa::pkcs8::EncodePrivateKey;
use rsa::traits::PrivateKeyParts;
use rsa::{BigUint, RsaPrivateKey};
use sequoia_openpgp as openpgp;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};
use zeroize::Zeroizing;

use openpgp::crypto::mpi::{self, Ciphertext};
use openpgp::crypto::{Decryptor, SessionKey};
use openpgp::packet::key::{PublicParts, SecretKeyMaterial, SecretParts, UnspecifiedRole};
use openpgp::packet::Key;

/// The RSA modulus sizes aws-lc-rs decrypts with.
pub const RSA_BITS: RangeInclusive<usize> = 2048..=8192;

/// The shortest message an OpenPGP RSA session-key block holds: a 16-byte
/// key and its 2-byte checksum (a v6 PKESK; v3 adds the cipher octet).
/// Anything shorter is treated as a padding failure, so Sequoia is never
/// handed a message it cannot index.
const MIN_SESSION_KEY_MESSAGE: usize = 18;

/// Which decrypted messages count as well formed, besides the padding.
#[derive(Clone, Copy, Debug)]
pub(super) enum Accept {
    /// At least this many bytes.
    AtLeast(usize),
    /// Exactly this many bytes (the caller knows the cipher).
    Exactly(usize),
}

impl Accept {
    fn allows(self, len: usize) -> Choice {
        let len = len as u64;
        match self {
            Accept::AtLeast(min) => !len.ct_lt(&(min as u64)),
            Accept::Exactly(n) => len.ct_eq(&(n as u64)),
        }
    }
}

/// PKCS #1 v1.5 decryption with implicit rejection, for one RSA key.
pub(super) struct Pkcs1Decryptor {
    key: Pkcs1PrivateDecryptingKey,
    /// SHA-256 of the private exponent as `k` big-endian bytes: the key of
    /// the implicit-rejection derivation.
    rejection_key: Zeroizing<[u8; 32]>,
    /// Byte length of the modulus.
    k: usize,
}

impl Pkcs1Decryptor {
    /// Hands the key to aws-lc-rs (which checks it and takes 2048 to 8192
    /// bits). Errors name the problem, never a number.
    pub(super) fn new(private: &RsaPrivateKey) -> Result<Self, String> {
        let der = private
            .to_pkcs8_der()
            .map_err(|_| "its numbers cannot be encoded as a PKCS #8 key".to_string())?;
        let key = PrivateDecryptingKey::from_pkcs8(der.as_bytes())
            .map_err(|e| format!("aws-lc-rs refused it ({e})"))?;
        let key = Pkcs1PrivateDecryptingKey::new(key)
            .map_err(|_| "aws-lc-rs refused it for PKCS #1 v1.5".to_string())?;
        let k = key.key_size_bytes();
        let d = Zeroizing::new(private.d().to_bytes_be());
        if d.len() > k || k < 11 {
            return Err("its private exponent is larger than its modulus".into());
        }
        let mut padded = Zeroizing::new(vec![0u8; k]);
        padded[k - d.len()..].copy_from_slice(&d);
        let rejection_key = Zeroizing::new(Sha256::digest(&padded[..]).into());
        Ok(Pkcs1Decryptor {
            key,
            rejection_key,
            k,
        })
    }

    /// aws-lc-rs alone: the message, or its error for a bad block.
    #[cfg(test)]
    fn decrypt_strict(&self, ciphertext: &[u8]) -> Result<Vec<u8>, aws_lc_rs::error::Unspecified> {
        let mut out = vec![0u8; self.k];
        self.key.decrypt(ciphertext, &mut out).map(|m| m.to_vec())
    }

    /// The message in the block, or the synthetic one when the block is
    /// malformed or its message is not `accept`ed. Both are computed for
    /// every ciphertext and one is selected without branching on which.
    pub(super) fn decrypt(&self, ciphertext: &[u8], accept: Accept) -> Zeroizing<Vec<u8>> {
        let k = self.k;
        // OpenPGP stores the ciphertext as an MPI, without leading zeros;
        // AWS-LC wants exactly k bytes. Longer input is left as it is
        // (AWS-LC refuses it, and it gets the synthetic answer).
        let c = if ciphertext.len() < k {
            let mut c = vec![0u8; k];
            c[k - ciphertext.len()..].copy_from_slice(ciphertext);
            c
        } else {
            ciphertext.to_vec()
        };
        let (synthetic, synthetic_len) = self.synthetic(&c, accept);
        let mut real = Zeroizing::new(vec![0u8; k]);
        // AWS-LC reports the padding check as an error; both arms only
        // record the outcome, everything after is the same for both.
        let (ok, real_len) = match self.key.decrypt(&c, &mut real) {
            Ok(m) => (Choice::from(1), m.len()),
            Err(_) => (Choice::from(0), 0),
        };
        let good = ok & accept.allows(real_len);
        let len = u64::conditional_select(&(synthetic_len as u64), &(real_len as u64), good);
        let mut out = Zeroizing::new(vec![0u8; k]);
        for ((o, s), r) in out.iter_mut().zip(synthetic.iter()).zip(real.iter()) {
            *o = u8::conditional_select(s, r, good);
        }
        out.truncate(len as usize);
        out
    }

    /// The implicit-rejection message for a k-byte ciphertext, moved to
    /// the front of a k-byte buffer, and its length.
    fn synthetic(&self, c: &[u8], accept: Accept) -> (Zeroizing<Vec<u8>>, usize) {
        let k = self.k;
        let kdk = Zeroizing::new(hmac_sha256(&self.rejection_key[..], &[c]));
        let mut lengths = Zeroizing::new([0u8; 256]);
        prf(&kdk[..], b"length", &mut lengths[..]);
        let mut message = Zeroizing::new(vec![0u8; k]);
        prf(&kdk[..], b"message", &mut message);

        // The guidance's length: the last of 128 candidates, each masked to
        // the bit length of the largest offset, that is below that offset
        // (and not below `accept`'s minimum).
        let max_sep_offset = (k - 10) as u16;
        let mask = u16::MAX >> max_sep_offset.leading_zeros();
        let min = match accept {
            Accept::AtLeast(min) => min.min(k - 11) as u16,
            Accept::Exactly(_) => 0,
        };
        let mut len = min;
        for pair in lengths.chunks_exact(2) {
            let candidate = u16::from_be_bytes([pair[0], pair[1]]) & mask;
            let fits = candidate.ct_lt(&max_sep_offset) & !candidate.ct_lt(&min);
            len.conditional_assign(&candidate, fits);
        }
        let len = match accept {
            // The caller's length is public: it comes from the packet.
            Accept::Exactly(n) => n.min(k - 11),
            Accept::AtLeast(_) => usize::from(len),
        };
        // The message is the last `len` bytes of the PRF output.
        rotate_left(&mut message, k - len);
        (message, len)
    }
}

/// HMAC-SHA256 over the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The guidance's PRF: HMAC-SHA256 blocks over a 2-byte counter, the label
/// and the output length in bits (2 bytes), concatenated and truncated.
fn prf(key: &[u8], label: &[u8], out: &mut [u8]) {
    let bits = ((out.len() * 8) as u16).to_be_bytes();
    for (i, chunk) in out.chunks_mut(32).enumerate() {
        let block = Zeroizing::new(hmac_sha256(key, &[&(i as u16).to_be_bytes(), label, &bits]));
        chunk.copy_from_slice(&block[..chunk.len()]);
    }
}

/// Rotates `buf` left by `by` (at most its length) in constant time: one
/// conditional rotation per bit of `by`.
fn rotate_left(buf: &mut [u8], by: usize) {
    let n = buf.len();
    if n == 0 {
        return;
    }
    let mut scratch = Zeroizing::new(vec![0u8; n]);
    let mut step = 1usize;
    let mut bit = 0;
    while step <= n {
        let take = Choice::from(((by >> bit) & 1) as u8);
        scratch.copy_from_slice(buf);
        for (i, b) in buf.iter_mut().enumerate() {
            b.conditional_assign(&scratch[(i + step) % n], take);
        }
        step <<= 1;
        bit += 1;
    }
}

/// The decryptor for one OpenPGP RSA encryption key.
pub(super) struct RsaDecryptor {
    public: Key<PublicParts, UnspecifiedRole>,
    inner: Pkcs1Decryptor,
}

// Secret numbers never show up in debug output.
impl fmt::Debug for RsaDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaDecryptor")
            .field("key", &self.public.fingerprint().to_hex())
            .finish_non_exhaustive()
    }
}

/// Why an RSA secret key is not used, in a sentence; `None` for keys
/// aws-lc-rs can take (or that are not RSA).
pub(super) fn unsupported_size(key: &Key<PublicParts, UnspecifiedRole>) -> Option<String> {
    let mpi::PublicKey::RSA { n, .. } = key.mpis() else {
        return None;
    };
    let bits = n.bits();
    (!RSA_BITS.contains(&bits)).then(|| {
        format!(
            "has {bits} bits; kustos decrypts RSA only with aws-lc-rs, which takes {} to {} bits",
            RSA_BITS.start(),
            RSA_BITS.end()
        )
    })
}

impl RsaDecryptor {
    /// The decryptor for an unprotected RSA secret key, its numbers read
    /// through Sequoia (which keeps them sealed in memory). Errors say why
    /// in words, without any number of the key.
    pub(super) fn new(key: &Key<SecretParts, UnspecifiedRole>) -> Result<Self, String> {
        let public = key.clone().take_secret().0;
        if let Some(why) = unsupported_size(&public) {
            return Err(why);
        }
        let mpi::PublicKey::RSA { e, n } = key.mpis() else {
            return Err("is not an RSA key".into());
        };
        let SecretKeyMaterial::Unencrypted(secret) = key.secret() else {
            return Err("is passphrase-protected".into());
        };
        let private = secret.map(|s| match s {
            mpi::SecretKeyMaterial::RSA { d, p, q, .. } => {
                let number = BigUint::from_bytes_be;
                // OpenPGP's `u` is recomputed by `precompute` as PKCS #1's
                // coefficient, so only the primes and `d` are taken.
                let mut k = RsaPrivateKey::from_components(
                    number(n.value()),
                    number(e.value()),
                    number(d.value()),
                    vec![number(p.value()), number(q.value())],
                )
                .map_err(|_| "has secret numbers that do not form an RSA key".to_string())?;
                k.precompute()
                    .map_err(|_| "has secret numbers that do not form an RSA key".to_string())?;
                Ok(k)
            }
            _ => Err("holds no RSA secret numbers".to_string()),
        })?;
        Ok(RsaDecryptor {
            public,
            inner: Pkcs1Decryptor::new(&private)?,
        })
    }
}

// Shared by reference: one decryptor per key serves every message.
impl Decryptor for &RsaDecryptor {
    fn public(&self) -> &Key<PublicParts, UnspecifiedRole> {
        &self.public
    }

    /// Always a session key for an RSA ciphertext: the one in the block,
    /// or the implicit-rejection one (see the module documentation).
    fn decrypt(
        &mut self,
        ciphertext: &Ciphertext,
        plaintext_len: Option<usize>,
    ) -> openpgp::Result<SessionKey> {
        let Ciphertext::RSA { c } = ciphertext else {
            return Err(openpgp::Error::InvalidOperation("not an RSA ciphertext".into()).into());
        };
        let accept = match plaintext_len {
            Some(n) if n >= MIN_SESSION_KEY_MESSAGE => Accept::Exactly(n),
            _ => Accept::AtLeast(MIN_SESSION_KEY_MESSAGE),
        };
        let m = self.inner.decrypt(c.value(), accept);
        Ok(SessionKey::from(&m[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openpgp::packet::key::Key4;
    use openpgp::types::Curve;
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;
    use rsa::traits::PublicKeyParts;

    fn testdata(path: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("testdata")
            .join(path);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Wycheproof's vectors: valid ones decrypt in aws-lc-rs and through
    /// the implicit-rejection layer; invalid ones are refused by aws-lc-rs
    /// and get a deterministic synthetic message at ours.
    #[test]
    fn wycheproof_pkcs1_decryption() {
        for bits in [2048, 3072, 4096] {
            let doc: serde_json::Value =
                serde_json::from_str(&testdata(&format!("wycheproof/rsa_pkcs1_{bits}_test.json")))
                    .unwrap();
            let (mut valid, mut invalid) = (0, 0);
            for group in doc["testGroups"].as_array().unwrap() {
                let der = hex(group["privateKeyPkcs8"].as_str().unwrap());
                let private = RsaPrivateKey::from_pkcs8_der(&der).unwrap();
                assert_eq!(private.n().bits(), bits);
                let ours = Pkcs1Decryptor::new(&private).unwrap();
                for t in group["tests"].as_array().unwrap() {
                    let id = t["tcId"].as_u64().unwrap();
                    let ct = hex(t["ct"].as_str().unwrap());
                    let msg = hex(t["msg"].as_str().unwrap());
                    let got = ours.decrypt(&ct, Accept::AtLeast(0));
                    match t["result"].as_str().unwrap() {
                        "valid" => {
                            valid += 1;
                            assert_eq!(ours.decrypt_strict(&ct).unwrap(), msg, "{bits}/{id}");
                            assert_eq!(&got[..], &msg[..], "{bits}/{id}");
                        }
                        _ => {
                            invalid += 1;
                            assert!(ours.decrypt_strict(&ct).is_err(), "{bits}/{id}");
                            assert_ne!(&got[..], &msg[..], "{bits}/{id}");
                            assert!(got.len() <= private.size() - 11, "{bits}/{id}");
                            let again = ours.decrypt(&ct, Accept::AtLeast(0));
                            assert_eq!(got, again, "{bits}/{id}: not deterministic");
                        }
                    }
                }
            }
            assert!(
                valid >= 40 && invalid >= 25,
                "{bits}: {valid} valid, {invalid} invalid"
            );
        }
    }

    /// The guidance's own vectors (as OpenSSL carries them): the synthetic
    /// messages are exactly the specified ones, and valid ciphertexts
    /// (also without their leading zero bytes) decrypt.
    #[test]
    fn implicit_rejection_vectors() {
        let text = testdata("rsa-implicit-rejection/evppkey_rsa_implicit_rejection.txt");
        let mut keys = std::collections::HashMap::new();
        let mut lines = text.lines().peekable();
        let mut checked = 0;
        while let Some(line) = lines.next() {
            if let Some(name) = line.strip_prefix("PrivateKey = ") {
                let mut pem = String::new();
                for l in lines.by_ref() {
                    pem.push_str(l);
                    pem.push('\n');
                    if l.starts_with("-----END") {
                        break;
                    }
                }
                let key = RsaPrivateKey::from_pkcs1_pem(&pem).unwrap();
                keys.insert(name.to_string(), Pkcs1Decryptor::new(&key).unwrap());
            } else if let Some(name) = line.strip_prefix("Decrypt = ") {
                let input = lines.next().unwrap().strip_prefix("Input = ").unwrap();
                let output = lines
                    .next()
                    .unwrap()
                    .strip_prefix("Output =")
                    .unwrap()
                    .trim();
                let want = match output.strip_prefix('"') {
                    Some(s) => s.trim_end_matches('"').as_bytes().to_vec(),
                    None => hex(output),
                };
                let got = keys[name].decrypt(&hex(input), Accept::AtLeast(0));
                assert_eq!(&got[..], &want[..], "{name} {}", &input[..16]);
                checked += 1;
            }
        }
        assert_eq!(checked, 19);
    }

    fn rsa_key(bits: usize) -> Key<SecretParts, UnspecifiedRole> {
        Key::V4(Key4::generate_rsa(bits).unwrap())
    }

    fn encrypt(key: &Key<SecretParts, UnspecifiedRole>, msg: &[u8]) -> Ciphertext {
        key.parts_as_public()
            .encrypt(&SessionKey::from(msg))
            .unwrap()
    }

    #[test]
    fn decrypts_what_sequoia_encrypts() {
        for bits in [2048, 3072] {
            let key = rsa_key(bits);
            let ours = RsaDecryptor::new(&key).expect("supported size");
            let mut ours = &ours;
            for len in [18usize, 19, 35, 100] {
                let msg: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(7) ^ 0x5a).collect();
                let ct = encrypt(&key, &msg);
                assert_eq!(&ours.decrypt(&ct, None).unwrap()[..], &msg[..]);
                assert_eq!(&ours.decrypt(&ct, Some(len)).unwrap()[..], &msg[..]);
                // A length the caller does not expect: the synthetic
                // message, of the expected length.
                let other = ours.decrypt(&ct, Some(len + 1)).unwrap();
                assert_eq!(other.len(), len + 1);
                assert_ne!(&other[..len], &msg[..]);
            }
        }
    }

    /// Messages too short for a session key (Sequoia indexes them) are
    /// implicitly rejected: every answer has at least 18 bytes.
    #[test]
    fn short_messages_are_rejected() {
        let key = rsa_key(2048);
        let ours = RsaDecryptor::new(&key).unwrap();
        let mut ours = &ours;
        for len in [1usize, 2, 17] {
            let msg = vec![0x42u8; len];
            let ct = encrypt(&key, &msg);
            let got = ours.decrypt(&ct, None).unwrap();
            assert!(got.len() >= MIN_SESSION_KEY_MESSAGE, "{len}: {}", got.len());
            assert_ne!(&got[..len], &msg[..], "{len}");
        }
        // An empty message, out-of-range and empty ciphertexts too.
        let got = ours.decrypt(&encrypt(&key, &[]), None).unwrap();
        assert!(got.len() >= MIN_SESSION_KEY_MESSAGE);
        let n = match key.mpis() {
            mpi::PublicKey::RSA { n, .. } => n.value().to_vec(),
            _ => unreachable!(),
        };
        for c in [n, vec![0xff; 300], vec![]] {
            let got = ours
                .decrypt(&Ciphertext::RSA { c: c.into() }, None)
                .unwrap();
            assert!(got.len() >= MIN_SESSION_KEY_MESSAGE);
        }
    }

    #[test]
    fn keys_aws_lc_cannot_take_are_refused() {
        let small = rsa_key(1024);
        let err = RsaDecryptor::new(&small).unwrap_err();
        assert!(
            err.contains("1024 bits") && err.contains("aws-lc-rs"),
            "{err}"
        );
        let ecdh: Key<SecretParts, UnspecifiedRole> =
            Key::V4(Key4::generate_ecc(false, Curve::Cv25519).unwrap());
        assert!(RsaDecryptor::new(&ecdh).is_err());
        assert!(unsupported_size(ecdh.parts_as_public()).is_none());
        // Numbers that do not belong together (here a different `d`).
        let key = rsa_key(2048);
        let other = rsa_key(2048);
        let (mpi::PublicKey::RSA { e, n }, Some(SecretKeyMaterial::Unencrypted(s))) =
            (key.mpis(), other.optional_secret())
        else {
            unreachable!()
        };
        let material = s.map(|m| m.clone());
        let (public, _) = key.clone().take_secret();
        let (mixed, _) = public.add_secret(material.into());
        assert!(matches!(mixed.mpis(), mpi::PublicKey::RSA { e: e2, n: n2 } if e2 == e && n2 == n));
        let err = RsaDecryptor::new(&mixed).unwrap_err();
        assert!(err.contains("do not form"), "{err}");
    }

    #[test]
    fn rotation() {
        for n in [1usize, 7, 256, 384] {
            let orig: Vec<u8> = (0..n).map(|i| i as u8).collect();
            for by in [0, 1, n / 2, n.saturating_sub(1), n] {
                let mut buf = orig.clone();
                rotate_left(&mut buf, by);
                let mut want = orig.clone();
                want.rotate_left(by % n);
                assert_eq!(buf, want, "{n} by {by}");
            }
        }
    }

    #[test]
    fn debug_shows_no_secret() {
        let key = rsa_key(2048);
        let ours = RsaDecryptor::new(&key).unwrap();
        let shown = format!("{ours:?}");
        assert!(shown.contains(&key.fingerprint().to_hex()), "{shown}");
        assert!(!shown.contains("rejection"), "{shown}");
    }
}
