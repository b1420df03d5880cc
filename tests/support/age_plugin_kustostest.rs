//! `age-plugin-kustostest`: a small age plugin for the interop tests
//! (tests/it/age_plugins.rs), standing in for YubiKey or TPM plugins that
//! need hardware.
//!
//! Its identity carries an age X25519 identity and its recipient the
//! matching `age1…` recipient; stanzas are ordinary X25519 stanzas under
//! the tag `kustostest`. So a file key opens only with the right identity,
//! and kustos, sops and age all have to drive the real plugin protocol.
//!
//! Run without arguments it prints a new identity (with its recipient in a
//! `# recipient:` comment), as real plugins do.

use std::collections::{HashMap, HashSet};
use std::io;
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use age_plugin::identity::{self, IdentityPluginV1};
use age_plugin::recipient::{self, RecipientPluginV1};
use age_plugin::{print_new_identity, run_state_machine, Callbacks, PluginHandler};

const NAME: &str = "kustostest";
const X25519_TAG: &str = "X25519";

struct Handler;

impl PluginHandler for Handler {
    type RecipientV1 = Wrapper;
    type IdentityV1 = Unwrapper;

    fn recipient_v1(self) -> io::Result<Wrapper> {
        Ok(Wrapper::default())
    }

    fn identity_v1(self) -> io::Result<Unwrapper> {
        Ok(Unwrapper::default())
    }
}

fn recipient_from(bytes: &[u8]) -> Option<age::x25519::Recipient> {
    age::x25519::Recipient::from_str(std::str::from_utf8(bytes).ok()?).ok()
}

fn identity_from(bytes: &[u8]) -> Option<age::x25519::Identity> {
    age::x25519::Identity::from_str(std::str::from_utf8(bytes).ok()?).ok()
}

#[derive(Default)]
struct Wrapper {
    recipients: Vec<age::x25519::Recipient>,
}

impl RecipientPluginV1 for Wrapper {
    fn add_recipient(
        &mut self,
        index: usize,
        _plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        let r = recipient_from(bytes).ok_or(recipient::Error::Recipient {
            index,
            message: "not a kustostest recipient".into(),
        })?;
        self.recipients.push(r);
        Ok(())
    }

    fn add_identity(
        &mut self,
        index: usize,
        _plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), recipient::Error> {
        let id = identity_from(bytes).ok_or(recipient::Error::Identity {
            index,
            message: "not a kustostest identity".into(),
        })?;
        self.recipients.push(id.to_public());
        Ok(())
    }

    fn labels(&mut self) -> HashSet<String> {
        HashSet::new()
    }

    fn wrap_file_keys(
        &mut self,
        file_keys: Vec<FileKey>,
        _callbacks: impl Callbacks<recipient::Error>,
    ) -> io::Result<Result<Vec<Vec<Stanza>>, Vec<recipient::Error>>> {
        let mut files = Vec::with_capacity(file_keys.len());
        for file_key in &file_keys {
            let mut stanzas = Vec::new();
            for r in &self.recipients {
                let (wrapped, _) = age::Recipient::wrap_file_key(r, file_key)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                stanzas.extend(wrapped.into_iter().map(|s| Stanza {
                    tag: NAME.into(),
                    args: s.args,
                    body: s.body,
                }));
            }
            files.push(stanzas);
        }
        Ok(Ok(files))
    }
}

#[derive(Default)]
struct Unwrapper {
    identities: Vec<age::x25519::Identity>,
}

impl IdentityPluginV1 for Unwrapper {
    fn add_identity(
        &mut self,
        index: usize,
        _plugin_name: &str,
        bytes: &[u8],
    ) -> Result<(), identity::Error> {
        let id = identity_from(bytes).ok_or(identity::Error::Identity {
            index,
            message: "not a kustostest identity".into(),
        })?;
        self.identities.push(id);
        Ok(())
    }

    fn unwrap_file_keys(
        &mut self,
        files: Vec<Vec<Stanza>>,
        mut callbacks: impl Callbacks<identity::Error>,
    ) -> io::Result<HashMap<usize, Result<FileKey, Vec<identity::Error>>>> {
        // What a hardware plugin says before it waits for a touch.
        let _ = callbacks.message("kustostest: touch the test key")?;
        let mut keys = HashMap::new();
        for (index, stanzas) in files.into_iter().enumerate() {
            let found = stanzas
                .into_iter()
                .filter(|s| s.tag == NAME)
                .map(|s| Stanza {
                    tag: X25519_TAG.into(),
                    args: s.args,
                    body: s.body,
                })
                .find_map(|s| {
                    self.identities
                        .iter()
                        .find_map(|id| age::Identity::unwrap_stanza(id, &s))
                });
            match found {
                Some(Ok(key)) => {
                    keys.insert(index, Ok(key));
                }
                Some(Err(e)) => {
                    keys.insert(
                        index,
                        Err(vec![identity::Error::Stanza {
                            file_index: index,
                            stanza_index: 0,
                            message: e.to_string(),
                        }]),
                    );
                }
                None => {}
            }
        }
        Ok(keys)
    }
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let machine = args.iter().find_map(|a| a.strip_prefix("--age-plugin="));
    match machine {
        Some(m) => run_state_machine(m, Handler),
        None => {
            let id = age::x25519::Identity::generate();
            let secret = id.to_string();
            print_new_identity(
                NAME,
                secret.expose_secret().as_bytes(),
                id.to_public().to_string().as_bytes(),
            );
            Ok(())
        }
    }
}
