//! age recipients and identities, as sops uses them.
//!
//! sops wraps the data key once per recipient into an ASCII-armored age file
//! and tries every identity it can find: SSH keys (`SOPS_AGE_SSH_PRIVATE_KEY_FILE`,
//! `~/.ssh/id_ed25519`, `~/.ssh/id_rsa`), `SOPS_AGE_KEY`, `SOPS_AGE_KEY_FILE`,
//! `SOPS_AGE_KEY_CMD` and `$XDG_CONFIG_HOME/sops/age/keys.txt`. kustos adds
//! `--keys-dir` folders of `*.agekey` files, the naming Flux's decryption
//! Secrets use, and tries those first.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use zeroize::Zeroizing;

use super::{KeySources, UnwrapError};
use crate::Error;

/// Wraps `secret` for one recipient as an armored age file (sops' layout).
pub fn wrap(recipient: &str, secret: &[u8]) -> crate::Result<String> {
    let parsed = parse_recipient(recipient)?;
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(parsed.as_ref() as &dyn age::Recipient))
            .map_err(|e| Error::Key(format!("age recipient {recipient}: {e}")))?;
    let mut out = Vec::with_capacity(400);
    let armor = ArmoredWriter::wrap_output(&mut out, Format::AsciiArmor)
        .map_err(|e| Error::Key(format!("age armor: {e}")))?;
    let mut w = encryptor
        .wrap_output(armor)
        .map_err(|e| Error::Key(format!("age encryption: {e}")))?;
    w.write_all(secret)
        .and_then(|_| w.finish())
        .and_then(|armor| armor.finish())
        .map_err(|e| Error::Key(format!("age encryption: {e}")))?;
    let mut s = String::from_utf8(out).map_err(|e| Error::Key(e.to_string()))?;
    if !s.ends_with('\n') {
        s.push('\n');
    }
    Ok(s)
}

/// Parses an age recipient: `age1…` (X25519), `age1NAME1…` (run through
/// the `age-plugin-NAME` binary when a key is wrapped) or an SSH public key.
pub fn parse_recipient(s: &str) -> crate::Result<Box<dyn age::Recipient + Send>> {
    let s = s.trim();
    match classify_recipient(s)? {
        RecipientKind::X25519(r) => Ok(Box::new(r)),
        RecipientKind::Ssh(r) => Ok(Box::new(r)),
        RecipientKind::Plugin(r) => {
            let name = r.plugin().to_string();
            age::plugin::RecipientPluginV1::new(&name, &[r], &[], PluginUi)
                .map(|p| Box::new(p) as Box<dyn age::Recipient + Send>)
                .map_err(|_| {
                    Error::Key(format!(
                        "age recipient {}…: {}",
                        truncate(s),
                        missing_plugin(&name)
                    ))
                })
        }
    }
}

enum RecipientKind {
    X25519(age::x25519::Recipient),
    Plugin(age::plugin::Recipient),
    Ssh(age::ssh::Recipient),
}

/// Parses without looking for plugin binaries.
fn classify_recipient(s: &str) -> crate::Result<RecipientKind> {
    if s.starts_with("age1") {
        if let Ok(r) = age::x25519::Recipient::from_str(s) {
            return Ok(RecipientKind::X25519(r));
        }
        if let Ok(r) = age::plugin::Recipient::from_str(s) {
            return Ok(RecipientKind::Plugin(r));
        }
        return Err(Error::Key(format!("invalid age recipient {s:?}")));
    }
    if s.starts_with("ssh-") {
        return age::ssh::Recipient::from_str(s)
            .map(RecipientKind::Ssh)
            .map_err(|_| Error::Key(format!("invalid SSH recipient {:?}", truncate(s))));
    }
    Err(Error::Key(format!(
        "invalid age recipient {:?}",
        truncate(s)
    )))
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Checks that a recipient string parses (a plugin's binary need not be
/// installed: files are validated where the plugin may not be).
pub fn validate_recipient(s: &str) -> crate::Result<()> {
    classify_recipient(s.trim()).map(|_| ())
}

/// Whether wrapping for this recipient runs an `age-plugin-NAME` binary.
pub fn is_plugin_recipient(s: &str) -> bool {
    matches!(classify_recipient(s.trim()), Ok(RecipientKind::Plugin(_)))
}

fn missing_plugin(name: &str) -> String {
    format!("the age plugin binary age-plugin-{name} is not in PATH")
}

/// `SOPS_AGE_KEY` may hold several identities on one line, separated by
/// spaces, as sops 3.13 reads it; comment lines stay whole.
fn one_key_per_line(text: &str) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(text.len() + 8));
    for line in text.lines() {
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        for word in line.split_whitespace() {
            out.push_str(word);
            out.push('\n');
        }
    }
    out
}

/// How age plugins reach the person running kustos: messages ("touch your
/// YubiKey") on stderr, questions and PINs at the controlling terminal.
/// Without a terminal every question is declined, as age does.
#[derive(Clone, Copy)]
struct PluginUi;

impl age::Callbacks for PluginUi {
    fn display_message(&self, message: &str) {
        eprintln!("{}", crate::error::escape_for_terminal(message));
    }

    fn confirm(&self, message: &str, yes_string: &str, no_string: Option<&str>) -> Option<bool> {
        let no = no_string.unwrap_or("no");
        let question = format!(
            "{} [{}/{}]:",
            crate::error::escape_for_terminal(message),
            crate::error::escape_for_terminal(yes_string),
            crate::error::escape_for_terminal(no)
        );
        let answer = crate::platform::ask_terminal(&question, false)?;
        Some(answer.trim().eq_ignore_ascii_case(yes_string))
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        let prompt = crate::error::escape_for_terminal(description);
        crate::platform::ask_terminal(&prompt, false).map(|s| s.to_string())
    }

    fn request_passphrase(&self, description: &str) -> Option<age::secrecy::SecretString> {
        let prompt = crate::error::escape_for_terminal(description);
        crate::platform::ask_terminal(&prompt, true)
            .map(|s| age::secrecy::SecretString::from(s.to_string()))
    }
}

type Ident = Box<dyn age::Identity + Send + Sync>;

/// The age identities found in the configured places.
#[derive(Default)]
pub struct AgeIdentities {
    identities: Vec<Ident>,
    /// `AGE-PLUGIN-…` identities, tried after the others through their
    /// plugin's binary.
    plugin_identities: Vec<age::plugin::Identity>,
    /// Whether `AGE-PLUGIN-…` lines may load (see [`KeySources::age_plugins`]).
    allow_plugins: bool,
    /// Where identities were found (for messages).
    pub locations: Vec<String>,
    /// Problems while loading (unreadable files, bad lines); no secrets.
    pub problems: Vec<String>,
    /// Places that were looked at but held nothing.
    pub looked: Vec<String>,
    /// Recipients named by the `# public key:` comments above loaded
    /// identities (unverified: only used to choose what to try first).
    claimed: Vec<String>,
}

impl AgeIdentities {
    /// Whether an identity file names `recipient` as the public key of one
    /// of its loaded identities. Unverified, so only a hint for ordering:
    /// trying the wrong stanza first costs an X25519 operation.
    pub fn claims(&self, recipient: &str) -> bool {
        self.claimed.iter().any(|c| c == recipient.trim())
    }

    /// Number of identities.
    pub fn len(&self) -> usize {
        self.identities.len() + self.plugin_identities.len()
    }

    /// True when no identity loaded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Identities from an in-memory identity file (tests, the sidecar).
    pub fn from_text(text: &str, location: &str) -> Self {
        let mut me = AgeIdentities::default();
        me.add_identity_text(text, location);
        me
    }

    /// Loads from the key sources.
    pub fn load(src: &KeySources) -> Self {
        let mut me = AgeIdentities {
            allow_plugins: src.age_plugins,
            ..Default::default()
        };
        for dir in &src.keys_dirs {
            me.load_dir(dir);
        }
        if src.use_env {
            me.load_env();
        }
        me
    }

    fn load_dir(&mut self, dir: &Path) {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) => {
                self.problems
                    .push(format!("cannot read keys folder {}: {e}", dir.display()));
                return;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "agekey"))
            .collect();
        files.sort();
        if files.is_empty() {
            self.looked.push(format!("{}/*.agekey", dir.display()));
        }
        for f in files {
            self.load_file(&f, &f.display().to_string());
        }
    }

    fn load_file(&mut self, path: &Path, location: &str) {
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                match std::str::from_utf8(&bytes) {
                    Ok(text) => self.add_identity_text(text, location),
                    Err(_) => self
                        .problems
                        .push(format!("{location}: not a text identity file")),
                }
            }
            Err(e) => self.problems.push(format!("cannot read {location}: {e}")),
        }
    }

    fn load_env(&mut self) {
        // SSH keys first, as sops does.
        match std::env::var_os("SOPS_AGE_SSH_PRIVATE_KEY_FILE") {
            Some(p) => self.load_ssh(Path::new(&p), "SOPS_AGE_SSH_PRIVATE_KEY_FILE"),
            None => {
                if let Some(home) = home_dir() {
                    for name in ["id_ed25519", "id_rsa"] {
                        let p = home.join(".ssh").join(name);
                        if p.exists() {
                            self.load_ssh(&p, &p.display().to_string());
                        }
                    }
                }
            }
        }
        if let Ok(text) = std::env::var("SOPS_AGE_KEY") {
            let text = Zeroizing::new(text);
            self.add_identity_text(&one_key_per_line(&text), "SOPS_AGE_KEY");
        }
        if let Some(p) = std::env::var_os("SOPS_AGE_KEY_FILE") {
            let loc = format!("SOPS_AGE_KEY_FILE={}", Path::new(&p).display());
            self.load_file(Path::new(&p), &loc);
        }
        if let Ok(cmd) = std::env::var("SOPS_AGE_KEY_CMD") {
            self.load_cmd(&cmd);
        }
        if let Some(dir) = user_config_dir() {
            let p = dir.join("sops").join("age").join("keys.txt");
            if p.exists() {
                self.load_file(&p, &p.display().to_string());
            } else {
                self.looked.push(p.display().to_string());
            }
        }
    }

    fn load_cmd(&mut self, cmd: &str) {
        let Some(args) = shlex::split(cmd).filter(|a| !a.is_empty()) else {
            self.problems
                .push("SOPS_AGE_KEY_CMD: cannot split the command".into());
            return;
        };
        match std::process::Command::new(&args[0])
            .args(&args[1..])
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
        {
            Ok(out) if out.status.success() => {
                let stdout = Zeroizing::new(out.stdout);
                match std::str::from_utf8(&stdout) {
                    Ok(t) => self.add_identity_text(t, "SOPS_AGE_KEY_CMD"),
                    Err(_) => self
                        .problems
                        .push("SOPS_AGE_KEY_CMD: output is not text".into()),
                }
            }
            Ok(out) => self.problems.push(format!(
                "SOPS_AGE_KEY_CMD: the command failed ({})",
                out.status
            )),
            Err(e) => self
                .problems
                .push(format!("SOPS_AGE_KEY_CMD: cannot run {:?}: {e}", args[0])),
        }
    }

    fn load_ssh(&mut self, path: &Path, location: &str) {
        let bytes = match std::fs::read(path) {
            Ok(b) => Zeroizing::new(b),
            Err(e) => {
                self.problems.push(format!("cannot read {location}: {e}"));
                return;
            }
        };
        match age::ssh::Identity::from_buffer(&bytes[..], Some(location.to_string())) {
            Ok(age::ssh::Identity::Unencrypted(k)) => {
                self.identities
                    .push(Box::new(age::ssh::Identity::Unencrypted(k)));
                self.locations.push(location.to_string());
            }
            Ok(age::ssh::Identity::Encrypted(_)) => self.problems.push(format!(
                "{location}: passphrase-protected SSH keys are not supported"
            )),
            Ok(age::ssh::Identity::Unsupported(_)) | Err(_) => self
                .problems
                .push(format!("{location}: not a supported SSH private key")),
        }
    }

    /// Parses an age identity file: one `AGE-SECRET-KEY-1…` per line, `#`
    /// comments and blank lines skipped. Tolerates CRLF line ends.
    fn add_identity_text(&mut self, text: &str, location: &str) {
        let before = self.len();
        if text.contains("-----BEGIN AGE ENCRYPTED FILE-----")
            || text.starts_with("age-encryption.org/")
        {
            self.problems.push(format!(
                "{location}: passphrase-protected identity files are not supported"
            ));
            return;
        }
        // age-keygen writes `# public key: age1…` just above each key.
        let mut public_hint: Option<&str> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if let Some(public) = line.strip_prefix("# public key:") {
                public_hint = Some(public.trim());
                continue;
            }
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let hint = public_hint.take();
            if line.starts_with("AGE-SECRET-KEY-1") {
                match age::x25519::Identity::from_str(line) {
                    Ok(id) => {
                        if let Some(public) = hint {
                            self.claimed.push(public.to_string());
                        }
                        self.identities.push(Box::new(id));
                    }
                    // A line number, never the line: it is a secret key.
                    Err(_) => self.problems.push(format!(
                        "{location}: invalid age secret key on line {}",
                        n + 1
                    )),
                }
            } else if line.starts_with("AGE-PLUGIN-") {
                self.add_plugin_identity(line, location, n + 1);
            } else {
                self.problems
                    .push(format!("{location}: line {} is not an age identity", n + 1));
            }
        }
        if self.len() > before {
            self.locations.push(location.to_string());
        } else {
            self.looked.push(location.to_string());
        }
    }

    /// An `AGE-PLUGIN-…` line: kept for its plugin where plugins may run.
    fn add_plugin_identity(&mut self, line: &str, location: &str, line_no: usize) {
        if !self.allow_plugins {
            self.problems.push(format!(
                "{location}: line {line_no}: age plugin identities are not used by services (serve, render, the Argo CD plugin)"
            ));
            return;
        }
        match age::plugin::Identity::from_str(line) {
            Ok(id) => self.plugin_identities.push(id),
            Err(_) => self.problems.push(format!(
                "{location}: invalid age plugin identity on line {line_no}"
            )),
        }
    }

    /// One plugin client per plugin named by the loaded identities, and the
    /// names of those whose binary is missing.
    fn plugin_clients(&self) -> (Vec<age::plugin::IdentityPluginV1<PluginUi>>, Vec<String>) {
        let mut names: Vec<&str> = self.plugin_identities.iter().map(|i| i.plugin()).collect();
        names.sort_unstable();
        names.dedup();
        let (mut clients, mut missing) = (Vec::new(), Vec::new());
        for name in names {
            match age::plugin::IdentityPluginV1::new(name, &self.plugin_identities, PluginUi) {
                Ok(c) => clients.push(c),
                Err(_) => missing.push(missing_plugin(name)),
            }
        }
        (clients, missing)
    }

    /// Unwraps one armored age stanza (entries over [`MAX_AGE_ENTRY`]
    /// bytes are refused).
    pub fn unwrap(&self, enc: &str) -> Result<Zeroizing<Vec<u8>>, UnwrapError> {
        if self.is_empty() {
            let mut msg = "no age identity found".to_string();
            if !self.problems.is_empty() {
                msg.push_str(&format!(" ({})", self.problems.join("; ")));
            } else if !self.looked.is_empty() {
                msg.push_str(&format!(" (looked in {})", self.looked.join(", ")));
            }
            return Err(UnwrapError::NoIdentity(msg));
        }
        // Every stanza can cost a public-key operation to try; sops writes
        // one per entry, a few hundred bytes.
        if enc.len() > MAX_AGE_ENTRY {
            return Err(UnwrapError::Failed(format!(
                "the age entry is {} bytes; at most {MAX_AGE_ENTRY} are read (sops writes one stanza per entry)",
                enc.len()
            )));
        }
        let reader = ArmoredReader::new(enc.trim_start().as_bytes());
        let decryptor = age::Decryptor::new_buffered(reader)
            .map_err(|e| UnwrapError::Failed(format!("malformed age stanza: {e}")))?;
        // Plugins come last: they may ask for a touch or a PIN, which is
        // wasted when a plain identity opens the stanza.
        let (plugins, missing) = if self.plugin_identities.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            self.plugin_clients()
        };
        let identities = self
            .identities
            .iter()
            .map(|i| i.as_ref() as &dyn age::Identity)
            .chain(plugins.iter().map(|p| p as &dyn age::Identity));
        let mut r = decryptor.decrypt(identities).map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => {
                let mut msg = format!(
                    "none of the {} age identities ({}) matches",
                    self.len(),
                    self.locations.join(", ")
                );
                if !missing.is_empty() {
                    msg.push_str(&format!(" ({})", missing.join("; ")));
                }
                UnwrapError::NoIdentity(msg)
            }
            other => {
                UnwrapError::Failed(crate::error::escape_for_terminal(&format!("age: {other}")))
            }
        })?;
        let mut out = Zeroizing::new(Vec::with_capacity(33));
        r.read_to_end(&mut out)
            .map_err(|e| UnwrapError::Failed(format!("age: {e}")))?;
        Ok(out)
    }
}

/// The largest armored age entry read: room for dozens of stanzas.
pub const MAX_AGE_ENTRY: usize = 8 << 10;

fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// Go's `os.UserConfigDir` on Unix: `$XDG_CONFIG_HOME`, else `~/.config`.
pub fn user_config_dir() -> Option<PathBuf> {
    match std::env::var_os("XDG_CONFIG_HOME") {
        Some(d) if !d.is_empty() => Some(PathBuf::from(d)),
        _ => home_dir().map(|h| h.join(".config")),
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_age_entry_with_dozens_of_stanzas_is_refused() {
        use std::io::Write as _;
        let ours = age::x25519::Identity::generate();
        let others: Vec<age::x25519::Recipient> = (0..200)
            .map(|_| age::x25519::Identity::generate().to_public())
            .collect();
        let mut out = Vec::new();
        let enc = age::Encryptor::with_recipients(
            others
                .iter()
                .map(|r| r as &dyn age::Recipient)
                .chain(std::iter::once(&ours.to_public() as &dyn age::Recipient)),
        )
        .unwrap();
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .unwrap();
        let mut w = enc.wrap_output(armor).unwrap();
        w.write_all(&[1u8; 32]).unwrap();
        w.finish().and_then(|a| a.finish()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.len() > MAX_AGE_ENTRY);
        let ids = AgeIdentities {
            identities: vec![Box::new(ours)],
            ..Default::default()
        };
        match ids.unwrap(&text) {
            Err(UnwrapError::Failed(m)) => assert!(m.contains("age entry"), "{m}"),
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn wrap_unwrap() {
        let id = age::x25519::Identity::generate();
        let recipient = id.to_public().to_string();
        let enc = wrap(&recipient, &[7u8; 32]).unwrap();
        assert!(enc.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        assert!(enc.ends_with("-----END AGE ENCRYPTED FILE-----\n"));
        let ids = AgeIdentities::from_text(
            &format!("# comment\r\n{}\r\n", id.to_string().expose_secret()),
            "test",
        );
        assert_eq!(ids.len(), 1);
        assert_eq!(&ids.unwrap(&enc).unwrap()[..], &[7u8; 32]);
        let other = AgeIdentities::from_text(
            age::x25519::Identity::generate()
                .to_string()
                .expose_secret(),
            "other",
        );
        assert!(matches!(
            other.unwrap(&enc),
            Err(UnwrapError::NoIdentity(_))
        ));
    }

    /// A plugin identity: the test plugin's format, made without running it.
    const PLUGIN_IDENTITY: &str =
        "AGE-PLUGIN-KUSTOSTEST-1G9R52T2NG4P4Y32594952KFDX9X4SDZWX49YV3FNGDVNYKJSFQEYWS24G5U9YNZKXEGRQS23XDDRJW2CXG64Y4ZXGY64W42V23V563JNFS69ZNJSTFTNXVQ292EQV";

    #[test]
    fn services_do_not_load_plugin_identities() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("yubikey.agekey"), PLUGIN_IDENTITY).unwrap();
        let service = KeySources {
            keys_dirs: vec![dir.path().to_path_buf()],
            ..Default::default()
        };
        let ids = AgeIdentities::load(&service);
        assert!(ids.is_empty());
        assert!(
            ids.problems.join(" ").contains("not used by services"),
            "{:?}",
            ids.problems
        );
        let person = KeySources {
            age_plugins: true,
            ..service
        };
        let ids = AgeIdentities::load(&person);
        assert_eq!(ids.len(), 1, "{:?}", ids.problems);
    }

    #[test]
    fn plugin_recipients_validate_without_their_binary() {
        let r = "age1kustostest1v9nk2vfnw3a8xunvwa5xc7p5wge8ywrnv4nnyethv9ur26r2wfmnvdfhva6kxvrkw9k8qcmwd5c8gdp50qmhwdt9wvu8yvrndpjsan9dz5";
        validate_recipient(r).unwrap();
        assert!(is_plugin_recipient(r));
        assert!(!is_plugin_recipient(
            &age::x25519::Identity::generate().to_public().to_string()
        ));
        let err = parse_recipient(r).err().unwrap().to_string();
        assert!(err.contains("age-plugin-kustostest"), "{err}");
        assert!(validate_recipient("age1notarecipient").is_err());
    }

    #[test]
    fn sops_age_key_takes_several_identities_per_line() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let text = format!(
            "# keys\n{}  {}\n",
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        let ids = AgeIdentities::from_text(&one_key_per_line(&text), "SOPS_AGE_KEY");
        assert_eq!(ids.len(), 2, "{:?}", ids.problems);
    }

    #[test]
    fn bad_identity_lines_do_not_echo_secrets() {
        let ids = AgeIdentities::from_text("AGE-SECRET-KEY-1NOTAKEY\n", "t");
        assert!(ids.is_empty());
        assert!(!ids.problems.join(" ").contains("NOTAKEY"));
    }
}
