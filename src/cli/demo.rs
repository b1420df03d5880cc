//! `kustos demo`: the whole flow on generated keys in a temporary folder.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use super::{CliError, CliResult};
use crate::error::exit;
use crate::formats::{Format, StoreOptions};
use crate::fsutil::{self, NewFileMode};
use crate::keys::{KeyRing, Recipient};
use crate::ops::{self, DecryptOptions, EncryptSpec};
use crate::sops::metadata::SelectionRules;

/// Arguments of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Work in this folder instead of a temporary one (kept afterwards)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

const SAMPLE: &str = "apiVersion: v1
kind: Secret
metadata:
    name: dev-team-auth
    namespace: apps
stringData:
    username: git
    password: demo-token-not-a-real-secret
";

/// Runs the demo.
pub fn run(a: DemoArgs) -> CliResult {
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(|e| CliError::new(exit::GENERIC, e.to_string()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().map_err(|e| CliError::new(exit::GENERIC, e.to_string()))?;
            tmp.path().to_path_buf()
        }
    };
    println!("kustos demo in {}", dir.display());
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let keys = dir.join("keys");
    std::fs::create_dir_all(&keys).map_err(|e| CliError::new(exit::GENERIC, e.to_string()))?;
    {
        use age::secrecy::ExposeSecret;
        let text = zeroize::Zeroizing::new(format!("{}\n", id.to_string().expose_secret()));
        fsutil::write_atomic(
            &keys.join("age.agekey"),
            text.as_bytes(),
            NewFileMode::Private,
        )?;
    }
    println!("1. generated the cluster's age key (keys/age.agekey, mode 0600): {recipient}");
    let spec = EncryptSpec {
        groups: vec![vec![Recipient::Age(recipient)]],
        rules: SelectionRules {
            encrypted_regex: "^(data|stringData)$".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let store = StoreOptions::default();
    let t = Instant::now();
    let enc = ops::encrypt_bytes(SAMPLE.as_bytes(), Format::Yaml, Format::Yaml, &spec, &store)?;
    let enc_time = t.elapsed();
    let path = dir.join("auth.yaml");
    fsutil::write_atomic(&path, &enc, NewFileMode::Shared)?;
    println!("2. encrypted a tenant Git credential Secret before it touched disk ({enc_time:.1?}): auth.yaml");
    for line in String::from_utf8_lossy(&enc).lines().take(9) {
        println!("     {line}");
    }
    let ring = KeyRing::from_dir(&keys);
    let t = Instant::now();
    let plain = ops::decrypt_bytes(
        &enc,
        Format::Yaml,
        Format::Yaml,
        &ring,
        &DecryptOptions::default(),
        &store,
    )?;
    let dec_time = t.elapsed();
    if plain.as_slice() != SAMPLE.as_bytes() {
        return Err(CliError::new(
            exit::GENERIC,
            "demo: the round trip did not reproduce the plaintext",
        ));
    }
    println!("3. decrypted it with only keys/*.agekey (MAC verified) in {dec_time:.1?}: identical to the input");
    if a.dir.is_some() {
        println!(
            "Done. Try: kustos decrypt --keys-dir {} {}",
            keys.display(),
            path.display()
        );
    } else {
        println!("Done (the temporary folder is removed; pass --dir DIR to keep the files).");
    }
    Ok(())
}
