//! OpenPGP master keys (placeholder until the sequoia backend lands).

use zeroize::Zeroizing;

use super::{KeySources, UnwrapError};

/// Wraps `secret` for the certificate with this fingerprint.
pub fn wrap(fp: &str, _secret: &[u8]) -> crate::Result<String> {
    Err(crate::Error::Key(format!(
        "PGP encryption to {fp} is not supported yet"
    )))
}

/// OpenPGP secret keys available for unwrapping.
#[derive(Default)]
pub struct PgpKeys {}

impl PgpKeys {
    /// Loads `*.asc` files from the key folders.
    pub fn load(_src: &KeySources) -> Self {
        PgpKeys {}
    }

    /// Number of secret keys.
    pub fn len(&self) -> usize {
        0
    }

    /// True when no key loaded.
    pub fn is_empty(&self) -> bool {
        true
    }

    /// Unwraps one armored PGP message.
    pub fn unwrap(
        &self,
        fp: &str,
        _enc: &str,
        _gpg_fallback: bool,
    ) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        Err(UnwrapError::Unsupported(format!(
            "no secret key for {fp} (PGP support is not built yet)"
        )))
    }
}
