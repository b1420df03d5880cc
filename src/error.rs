//! Library errors and the sops exit codes they map to.
//!
//! Every error is one line of text that names the reason; the CLI prefixes the
//! file name and may print [`Error::hint`] on a second line. No variant ever
//! carries a plaintext value: parse errors give a line number, decryption
//! errors give the key path (keys are never encrypted).

use std::fmt;
use std::fmt::Write as _;

/// Exit codes, as `cmd/sops/codes/codes.go` in sops 3.11 defines them.
pub mod exit {
    #![allow(missing_docs)]
    pub const GENERIC: i32 = 1;
    pub const COULD_NOT_READ_INPUT_FILE: i32 = 2;
    pub const COULD_NOT_WRITE_OUTPUT_FILE: i32 = 3;
    pub const ERROR_DUMPING_TREE: i32 = 4;
    pub const ERROR_READING_CONFIG: i32 = 5;
    pub const ERROR_INVALID_KMS_ENCRYPTION_CONTEXT_FORMAT: i32 = 6;
    pub const INVALID_SET_FORMAT: i32 = 7;
    pub const CONFLICTING_PARAMETERS: i32 = 8;
    pub const ERROR_ENCRYPTING_MAC: i32 = 21;
    pub const ERROR_ENCRYPTING_TREE: i32 = 23;
    pub const ERROR_DECRYPTING_MAC: i32 = 24;
    pub const ERROR_DECRYPTING_TREE: i32 = 25;
    pub const CANNOT_CHANGE_KEYS_FROM_NON_EXISTENT_FILE: i32 = 49;
    pub const MAC_MISMATCH: i32 = 51;
    pub const MAC_NOT_FOUND: i32 = 52;
    pub const CONFIG_FILE_NOT_FOUND: i32 = 61;
    pub const KEYBOARD_INTERRUPT: i32 = 85;
    pub const INVALID_TREE_PATH_FORMAT: i32 = 91;
    pub const NEED_AT_LEAST_ONE_DOCUMENT: i32 = 92;
    pub const NO_FILE_SPECIFIED: i32 = 100;
    pub const NO_ENCRYPTION_KEY_FOUND: i32 = 111;
    pub const DUPLICATE_DECRYPTION_KEY_TYPE: i32 = 112;
    pub const COULD_NOT_RETRIEVE_KEY: i32 = 128;
    pub const FILE_HAS_NOT_BEEN_MODIFIED: i32 = 200;
    pub const NO_EDITOR_FOUND: i32 = 201;
    pub const FAILED_TO_COMPARE_VERSIONS: i32 = 202;
    pub const FILE_ALREADY_ENCRYPTED: i32 = 203;
}

/// Escapes control characters so a file name or key cannot inject terminal
/// escape sequences into messages (fd's `sanitize` idea).
pub fn escape_for_terminal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                _ => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not well-formed for its format (line numbers, never content).
    #[error("{format} parse error: {message}")]
    Parse {
        /// The store: yaml, json, dotenv, ini.
        format: &'static str,
        /// What is wrong, with a line number where known.
        message: String,
    },
    /// A structure the format cannot hold (e.g. a nested map in dotenv).
    #[error("{0}")]
    Emit(String),
    /// The document has no `sops` metadata.
    #[error("sops metadata not found")]
    MetadataNotFound,
    /// The `sops` metadata is present but unusable.
    #[error("invalid sops metadata: {0}")]
    Metadata(String),
    /// The plaintext already carries a top-level `sops` key.
    #[error("the file is already encrypted (it has a top-level sops key)")]
    AlreadyEncrypted,
    /// A YAML stream without any document.
    #[error("the input has no YAML document")]
    NoDocument,
    /// The MAC stored in the file does not match the content.
    #[error(
        "MAC mismatch: the file was modified after encryption, or its MAC does not belong to it"
    )]
    MacMismatch,
    /// The file's `mac` field is empty.
    #[error("the file has no MAC")]
    MacNotFound,
    /// The MAC itself could not be decrypted.
    #[error("cannot decrypt the MAC: {0}")]
    MacDecrypt(String),
    /// A value could not be decrypted (tampered, truncated or wrong key).
    #[error("cannot decrypt the value at {path}: {reason}")]
    DecryptValue {
        /// Key path of the value, `a:b:` style (keys are never secret).
        path: String,
        /// Why.
        reason: String,
    },
    /// The tree could not be encrypted.
    #[error("cannot encrypt the tree: {0}")]
    EncryptTree(String),
    /// No data key could be recovered from the key groups.
    #[error("{0}")]
    DataKey(#[from] DataKeyError),
    /// Encryption keys are missing or invalid.
    #[error("{0}")]
    NoEncryptionKeys(String),
    /// A key (recipient, identity, certificate) could not be parsed or used.
    #[error("{0}")]
    Key(String),
    /// Mutually exclusive options were combined.
    #[error("{0}")]
    ConflictingParameters(String),
    /// `.sops.yaml` is malformed or has no matching rule.
    #[error("{0}")]
    Config(String),
    /// A `["a"][0]` style tree path is malformed.
    #[error("invalid tree path: {0}")]
    TreePath(String),
    /// A tree path points at nothing.
    #[error("{0}")]
    PathNotFound(String),
    /// An I/O error with the file it concerns.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An error reading input (exit code 2 like sops).
    #[error("{0}")]
    Read(String),
    /// An error writing output (exit code 3 like sops).
    #[error("{0}")]
    Write(String),
    /// Anything else, with its message.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// The sops exit code for this error.
    pub fn exit_code(&self) -> i32 {
        use exit::*;
        match self {
            Error::Parse { .. } | Error::Read(_) => COULD_NOT_READ_INPUT_FILE,
            Error::Emit(_) => ERROR_DUMPING_TREE,
            Error::MetadataNotFound | Error::Metadata(_) => GENERIC,
            Error::AlreadyEncrypted => FILE_ALREADY_ENCRYPTED,
            Error::NoDocument => NEED_AT_LEAST_ONE_DOCUMENT,
            // sops defines codes 52 and 24 but exits 51 for a missing or
            // undecryptable MAC too (common.DecryptTree).
            Error::MacMismatch | Error::MacNotFound | Error::MacDecrypt(_) => MAC_MISMATCH,
            Error::DecryptValue { .. } => ERROR_DECRYPTING_TREE,
            Error::EncryptTree(_) => ERROR_ENCRYPTING_TREE,
            Error::DataKey(_) => COULD_NOT_RETRIEVE_KEY,
            Error::NoEncryptionKeys(_) => GENERIC,
            Error::Key(_) => GENERIC,
            Error::ConflictingParameters(_) => CONFLICTING_PARAMETERS,
            // sops reports every config problem ("error loading config:
            // …", no matching rule) with its generic code.
            Error::Config(_) => GENERIC,
            Error::TreePath(_) => INVALID_TREE_PATH_FORMAT,
            Error::PathNotFound(_) => GENERIC,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                NO_FILE_SPECIFIED
            }
            Error::Io { .. } => COULD_NOT_READ_INPUT_FILE,
            Error::Write(_) => COULD_NOT_WRITE_OUTPUT_FILE,
            Error::Other(_) => GENERIC,
        }
    }

    /// A second line telling the user what to do, where one helps.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::MacMismatch => Some(
                "restore the file from Git, or pass --ignore-mac if you really must read it".into(),
            ),
            Error::DataKey(e) => Some(e.hint()),
            Error::AlreadyEncrypted => {
                Some("use `kustos decrypt` or `kustos edit` on encrypted files".into())
            }
            Error::NoEncryptionKeys(_) => Some(
                "pass --age/--pgp, set SOPS_AGE_RECIPIENTS/SOPS_PGP_FP, or add a creation rule to .sops.yaml".into(),
            ),
            _ => None,
        }
    }

    /// Shorthand for an I/O error about `path`.
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io {
            path: crate::error::escape_for_terminal(&path.to_string()),
            source,
        }
    }
}

/// Why one stanza could not be unwrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UnwrapError {
    /// No identity that matches it is available.
    NoIdentity(String),
    /// An identity matched but unwrapping failed.
    Failed(String),
    /// kustos does not implement this key type.
    Unsupported(String),
}

impl fmt::Display for UnwrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnwrapError::NoIdentity(s) | UnwrapError::Failed(s) | UnwrapError::Unsupported(s) => {
                f.write_str(s)
            }
        }
    }
}

/// The data key could not be recovered; says which group and key failed, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct DataKeyError {
    /// Per group: (type, key name, error) for every key tried.
    pub groups: Vec<Vec<(String, String, UnwrapError)>>,
    /// Groups needed.
    pub threshold: usize,
    /// Groups that succeeded.
    pub recovered: usize,
    /// A problem after unwrapping (bad length, Shamir combine failure).
    pub other: Option<String>,
}

impl fmt::Display for DataKeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(o) = &self.other {
            return write!(f, "cannot recover the data key: {o}");
        }
        if self.groups.len() > 1 {
            write!(
                f,
                "cannot recover the data key: {} of {} key groups needed, {} decrypted",
                self.threshold,
                self.groups.len(),
                self.recovered
            )?;
        } else {
            f.write_str("cannot recover the data key")?;
        }
        for (gi, keys) in self.groups.iter().enumerate() {
            if keys.is_empty() {
                continue;
            }
            if self.groups.len() > 1 {
                write!(f, "; group {}:", gi + 1)?;
            } else {
                f.write_str(":")?;
            }
            for (ki, (kind, name, err)) in keys.iter().enumerate() {
                let sep = if ki == 0 { " " } else { ", " };
                // A KMS key is named in full: its ARN (and role) is what
                // the user looks up in IAM.
                let name = if kind == "kms" {
                    escape_for_terminal(name)
                } else {
                    short(name)
                };
                write!(f, "{sep}{kind} {name}: {err}")?;
            }
        }
        Ok(())
    }
}

impl DataKeyError {
    /// What to do about it.
    pub fn hint(&self) -> String {
        let kinds: Vec<&str> = self
            .groups
            .iter()
            .flatten()
            .map(|(k, _, _)| k.as_str())
            .collect();
        let mut h = Vec::new();
        if kinds.contains(&"age") {
            h.push("set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY, or pass --keys-dir with *.agekey files");
        }
        if kinds.contains(&"pgp") {
            h.push("pass --keys-dir with *.asc secret keys, or import the key into GnuPG");
        }
        if kinds.contains(&"kms") {
            h.push("for kms, check the AWS credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID, a web identity or container role), the region in the ARN and the key's policy");
        }
        if h.is_empty() {
            "no key type in this file is one kustos can use (age, pgp, kms)".into()
        } else {
            h.join("; ")
        }
    }
}

fn short(name: &str) -> String {
    if name.chars().count() > 24 && !name.starts_with("ssh-") {
        let s: String = name.chars().take(20).collect();
        format!("{s}…")
    } else {
        name.chars().take(60).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_controls() {
        assert_eq!(
            super::escape_for_terminal("a\x1b[31mb\n"),
            "a\\u{1b}[31mb\\n"
        );
    }
}
