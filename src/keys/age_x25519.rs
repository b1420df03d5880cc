//! The age X25519 identity, with its public key computed once.
//!
//! age's own `x25519::Identity` derives the public key again for every
//! stanza it tries, because the stanza key is salted with it: one base-point
//! multiplication, about a tenth of decrypting a small Secret and of every
//! file in a fleet-wide run. This is the same unwrap (c2sp.org/age, "X25519
//! recipient stanza") from age's own primitives, with the public key derived
//! once, on first use, and kept next to the secret. Tests check it against age's implementation.
//!
//! Identity files written by `age-keygen` also name the public key in a
//! `# public key: age1…` comment. That value is tried first, without
//! deriving anything: the stanza's AEAD tag authenticates the salt, so a
//! stale or wrong comment only makes that first try fail, and the derived
//! key is tried next. A small Secret's decrypt skips the derivation entirely.

use std::str::FromStr;

use age::DecryptError;
use age_core::format::{FileKey, Stanza, FILE_KEY_BYTES};
use age_core::primitives::{aead_decrypt, hkdf};
use base64::Engine as _;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroize;

const TAG: &str = "X25519";
const KEY_LABEL: &[u8] = b"age-encryption.org/v1/X25519";
const SECRET_KEY_HRP: &str = "age-secret-key-";

/// An `AGE-SECRET-KEY-1…` identity. The secret is zeroized on drop
/// (`StaticSecret`); there is no `Debug`.
pub(crate) struct X25519Identity {
    secret: StaticSecret,
    /// Derived on first use: a keys folder may hold many identities and a
    /// file needs only the one that opens it.
    public: std::sync::OnceLock<PublicKey>,
    /// The public key the identity file's comment names, unchecked.
    hint: Option<[u8; 32]>,
}

impl X25519Identity {
    /// Records the `age1…` recipient an identity file names for this key
    /// (ignored unless it parses): tried before deriving the real one.
    pub(crate) fn with_public_hint(mut self, recipient: &str) -> Self {
        self.hint = decode_recipient(recipient);
        self
    }

    /// Opens the stanza body with the key for one salt public key.
    fn open(
        &self,
        epk: &PublicKey,
        shared: &x25519_dalek::SharedSecret,
        public: &[u8; 32],
        body: &[u8],
    ) -> Option<FileKey> {
        let mut salt = [0u8; 64];
        salt[..32].copy_from_slice(epk.as_bytes());
        salt[32..].copy_from_slice(public);
        let mut key = hkdf(&salt, KEY_LABEL, shared.as_bytes());
        let opened = aead_decrypt(&key, FILE_KEY_BYTES, body);
        key.zeroize();
        opened.ok().map(|mut pt| {
            FileKey::init_with_mut(|file_key| {
                file_key.copy_from_slice(&pt);
                pt.zeroize();
            })
        })
    }
}

/// The 32 bytes of an `age1…` X25519 recipient.
fn decode_recipient(recipient: &str) -> Option<[u8; 32]> {
    let (hrp, data, _) = bech32::decode(recipient).ok()?;
    if hrp != "age" {
        return None;
    }
    let bytes = <Vec<u8> as bech32::FromBase32>::from_base32(&data).ok()?;
    bytes.try_into().ok()
}

impl FromStr for X25519Identity {
    type Err = &'static str;

    /// Accepts exactly what `age::x25519::Identity` accepts (it parses
    /// first, so its checks and error messages stay the reference).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        age::x25519::Identity::from_str(s)?;
        let (hrp, data, _) = bech32::decode(s).map_err(|_| "invalid Bech32 encoding")?;
        if hrp != SECRET_KEY_HRP {
            return Err("incorrect HRP");
        }
        let mut bytes = zeroize::Zeroizing::new(
            <Vec<u8> as bech32::FromBase32>::from_base32(&data)
                .map_err(|_| "invalid Bech32 encoding")?,
        );
        let mut key: [u8; 32] = bytes[..]
            .try_into()
            .map_err(|_| "incorrect identity length")?;
        bytes.zeroize();
        let secret = StaticSecret::from(key);
        key.zeroize();
        Ok(X25519Identity {
            secret,
            public: std::sync::OnceLock::new(),
            hint: None,
        })
    }
}

impl age::Identity for X25519Identity {
    fn unwrap_stanza(&self, stanza: &Stanza) -> Option<Result<FileKey, DecryptError>> {
        if stanza.tag != TAG {
            return None;
        }
        // Canonical form only: one unpadded base64 argument of 32 bytes and
        // a 32-byte body (16-byte file key + tag).
        let epk = match &stanza.args[..] {
            [arg] => match decode_point(arg) {
                Some(p) => p,
                None => return Some(Err(DecryptError::InvalidHeader)),
            },
            _ => return Some(Err(DecryptError::InvalidHeader)),
        };
        if stanza.body.len() != FILE_KEY_BYTES + 16 {
            return Some(Err(DecryptError::InvalidHeader));
        }
        let epk = PublicKey::from(epk);
        let shared = self.secret.diffie_hellman(&epk);
        // An all-zero shared secret (a low-order point) is refused, as age does.
        if !shared.was_contributory() {
            return Some(Err(DecryptError::InvalidHeader));
        }
        // Not ours is not an error: the next identity may match.
        if let Some(public) = self.public.get() {
            return self
                .open(&epk, &shared, public.as_bytes(), &stanza.body)
                .map(Ok);
        }
        if let Some(hint) = &self.hint {
            if let Some(file_key) = self.open(&epk, &shared, hint, &stanza.body) {
                return Some(Ok(file_key));
            }
        }
        let public = self.public.get_or_init(|| PublicKey::from(&self.secret));
        if self.hint.as_ref() == Some(public.as_bytes()) {
            return None; // tried just now
        }
        self.open(&epk, &shared, public.as_bytes(), &stanza.body)
            .map(Ok)
    }
}

/// A 32-byte value as canonical unpadded base64 (43 characters).
fn decode_point(arg: &str) -> Option<[u8; 32]> {
    if arg.len() != 43 {
        return None;
    }
    let mut out = [0u8; 33];
    match base64::engine::general_purpose::STANDARD_NO_PAD.decode_slice(arg, &mut out) {
        Ok(32) => out[..32].try_into().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;
    use age::Identity as _;
    use age::Recipient as _;

    fn pair() -> (age::x25519::Identity, X25519Identity) {
        let theirs = age::x25519::Identity::generate();
        let ours = X25519Identity::from_str(theirs.to_string().expose_secret()).unwrap();
        (theirs, ours)
    }

    fn stanza_for(id: &age::x25519::Identity, file_key: [u8; 16]) -> Stanza {
        let fk = FileKey::new(Box::new(file_key));
        let (mut stanzas, _) = id.to_public().wrap_file_key(&fk).unwrap();
        stanzas.remove(0)
    }

    fn copy(s: &Stanza) -> Stanza {
        Stanza {
            tag: s.tag.clone(),
            args: s.args.clone(),
            body: s.body.clone(),
        }
    }

    fn opened(r: Option<Result<FileKey, DecryptError>>) -> Option<Result<[u8; 16], String>> {
        r.map(|r| r.map(|k| *k.expose_secret()).map_err(|e| e.to_string()))
    }

    #[test]
    fn unwraps_like_age() {
        let (theirs, ours) = pair();
        let (other, _) = pair();
        for n in 0..8u8 {
            let s = stanza_for(&theirs, [n; 16]);
            assert_eq!(opened(ours.unwrap_stanza(&s)), Some(Ok([n; 16])));
            assert_eq!(
                opened(ours.unwrap_stanza(&s)),
                opened(theirs.unwrap_stanza(&s))
            );
            // Another identity's stanza: not ours, not an error.
            let s = stanza_for(&other, [n; 16]);
            assert_eq!(opened(ours.unwrap_stanza(&s)), None);
            assert_eq!(opened(theirs.unwrap_stanza(&s)), None);
        }
    }

    #[test]
    fn malformed_stanzas_are_refused_like_age() {
        let (theirs, ours) = pair();
        let good = stanza_for(&theirs, [1; 16]);
        let mut cases = Vec::new();
        let mut s = copy(&good);
        s.tag = "scrypt".into();
        cases.push(s);
        let mut s = copy(&good);
        s.args.push("x".into());
        cases.push(s);
        let mut s = copy(&good);
        s.args = vec![];
        cases.push(s);
        let mut s = copy(&good);
        s.args[0].push('=');
        cases.push(s);
        let mut s = copy(&good);
        // Non-canonical: the last character's unused bits set.
        let last = s.args[0].pop().unwrap();
        let bumped = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
            .chars()
            .skip_while(|c| *c != last)
            .nth(1)
            .unwrap_or('A');
        s.args[0].push(bumped);
        cases.push(s);
        let mut s = copy(&good);
        s.body.pop();
        cases.push(s);
        let mut s = copy(&good);
        // A low-order point: the shared secret is all zeros.
        s.args[0] = base64::engine::general_purpose::STANDARD_NO_PAD.encode([0u8; 32]);
        cases.push(s);
        let mut s = copy(&good);
        s.body[3] ^= 1;
        cases.push(s);
        for (i, s) in cases.iter().enumerate() {
            assert_eq!(
                opened(ours.unwrap_stanza(s)),
                opened(theirs.unwrap_stanza(s)),
                "case {i}"
            );
        }
    }

    #[test]
    fn parses_exactly_what_age_parses() {
        let (theirs, _) = pair();
        let text = theirs.to_string().expose_secret().to_string();
        assert!(X25519Identity::from_str(&text).is_ok());
        assert!(X25519Identity::from_str(&text.to_lowercase()).is_ok());
        let public = theirs.to_public().to_string();
        assert!(X25519Identity::from_str(&public).is_err());
        let mut broken = text.clone();
        broken.pop();
        assert!(X25519Identity::from_str(&broken).is_err());
    }

    #[test]
    fn public_key_hint_is_tried_first_and_never_trusted() {
        let (theirs, _) = pair();
        let (other, _) = pair();
        let text = theirs.to_string().expose_secret().to_string();
        let right = theirs.to_public().to_string();
        let wrong = other.to_public().to_string();
        for (hint, derives) in [
            (right.as_str(), false),
            (wrong.as_str(), true),
            ("age1nonsense", true),
        ] {
            let ours = X25519Identity::from_str(&text)
                .unwrap()
                .with_public_hint(hint);
            let s = stanza_for(&theirs, [7; 16]);
            assert_eq!(opened(ours.unwrap_stanza(&s)), Some(Ok([7; 16])), "{hint}");
            // A right hint spares the base-point multiplication.
            assert_eq!(ours.public.get().is_some(), derives, "{hint}");
            let s = stanza_for(&other, [8; 16]);
            assert_eq!(opened(ours.unwrap_stanza(&s)), None, "{hint}");
            let s = stanza_for(&theirs, [9; 16]);
            assert_eq!(opened(ours.unwrap_stanza(&s)), Some(Ok([9; 16])), "{hint}");
        }
    }
}
