//! Age plugin recipients and identities (`age1NAME1…`, `AGE-PLUGIN-NAME-1…`)
//! through a real plugin binary (tests/support/age_plugin_kustostest.rs),
//! checked against the real sops 3.11 and age.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

const PLAIN: &[u8] = b"password: p4ss\n";

/// The test plugin, built by `cargo build --examples` (scripts/test.sh).
fn plugin_bin() -> PathBuf {
    let deps = Path::new(env!("CARGO_BIN_EXE_kustos")).parent().unwrap();
    let bin = deps.join("examples/age-plugin-kustostest");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --examples` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// An environment whose age key file holds a plugin identity, and a
/// `bin/` folder with the plugin for PATH.
struct PluginEnv {
    env: Env,
    recipient: String,
    bin_dir: PathBuf,
}

impl PluginEnv {
    fn new() -> PluginEnv {
        let env = Env::new();
        let out = ok(&Command::new(plugin_bin()).output().unwrap());
        let text = String::from_utf8(out).unwrap();
        let recipient = text
            .lines()
            .find_map(|l| l.strip_prefix("# recipient: "))
            .unwrap()
            .to_string();
        assert!(recipient.starts_with("age1kustostest1"), "{recipient}");
        std::fs::write(&env.key_file, &text).unwrap();
        let bin_dir = env.path("bin");
        std::fs::create_dir_all(&bin_dir).unwrap();
        std::os::unix::fs::symlink(plugin_bin(), bin_dir.join("age-plugin-kustostest")).unwrap();
        PluginEnv {
            env,
            recipient,
            bin_dir,
        }
    }

    /// `program` with the plugin in PATH.
    fn cmd(&self, program: &Path) -> Command {
        let mut c = self.env.cmd(program);
        let mut path = vec![self.bin_dir.clone()];
        path.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        c.env("PATH", std::env::join_paths(path).unwrap());
        c
    }

    fn kustos(&self, args: &[&str]) -> std::process::Output {
        self.cmd(&kustos_bin()).args(args).output().unwrap()
    }

    fn plain(&self) -> PathBuf {
        self.env.write("s.yaml", PLAIN)
    }
}

#[test]
fn kustos_encrypts_and_decrypts_through_a_plugin() {
    let pe = PluginEnv::new();
    let plain = pe.plain();
    let enc = ok(&pe.kustos(&["encrypt", "--age", &pe.recipient, plain.to_str().unwrap()]));
    let text = String::from_utf8(enc.clone()).unwrap();
    assert!(text.contains(&pe.recipient), "{text}");
    let f = pe.env.write("s.enc.yaml", &enc);
    let out = pe.kustos(&["decrypt", f.to_str().unwrap()]);
    assert_eq!(ok(&out), PLAIN);
    // The plugin's message ("touch your key") reaches the person.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kustostest: touch the test key"), "{err}");
}

#[test]
fn real_sops_and_kustos_read_each_others_plugin_files() {
    let Some(sops) = sops() else { return };
    let pe = PluginEnv::new();
    let plain = pe.plain();
    let fp = plain.to_str().unwrap();

    let by_kustos = ok(&pe.kustos(&["encrypt", "--age", &pe.recipient, fp]));
    let k = pe.env.write("k.enc.yaml", &by_kustos);
    let out = pe
        .cmd(&sops)
        .args(["decrypt", k.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(ok(&out), PLAIN);

    let out = pe
        .cmd(&sops)
        .args(["encrypt", "--age", &pe.recipient, fp])
        .output()
        .unwrap();
    let s = pe.env.write("s.enc.yaml", &ok(&out));
    assert_eq!(ok(&pe.kustos(&["decrypt", s.to_str().unwrap()])), PLAIN);
}

/// The stanza kustos writes through a plugin is a standard age file that
/// the age CLI opens with the same plugin.
#[test]
fn age_cli_opens_a_kustos_plugin_stanza() {
    let Some(age) = age_cli() else { return };
    let pe = PluginEnv::new();
    let plain = pe.plain();
    let enc = ok(&pe.kustos(&[
        "encrypt",
        "--output-type",
        "json",
        "--age",
        &pe.recipient,
        plain.to_str().unwrap(),
    ]));
    let v: serde_json::Value = serde_json::from_slice(&enc).unwrap();
    let armor = v["sops"]["age"][0]["enc"].as_str().unwrap();
    let p = pe.env.write("stanza.age", armor.as_bytes());
    let out = ok(&pe
        .cmd(&age)
        .args([
            "-d",
            "-i",
            pe.env.key_file.to_str().unwrap(),
            p.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    assert_eq!(out.len(), 32, "the stanza holds the 32-byte data key");
}

#[test]
fn a_missing_plugin_binary_is_named() {
    let pe = PluginEnv::new();
    let plain = pe.plain();
    let enc = ok(&pe.kustos(&["encrypt", "--age", &pe.recipient, plain.to_str().unwrap()]));
    let f = pe.env.write("s.enc.yaml", &enc);
    std::fs::remove_file(pe.bin_dir.join("age-plugin-kustostest")).unwrap();

    let out = pe.kustos(&["decrypt", f.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(128),
        "could not retrieve the data key"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("age-plugin-kustostest is not in PATH"),
        "{err}"
    );

    let out = pe.kustos(&["encrypt", "--age", &pe.recipient, plain.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("age-plugin-kustostest is not in PATH"),
        "{err}"
    );
}
