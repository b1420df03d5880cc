//! The front door: the demo, help for every command, completions.

use crate::common::*;

#[test]
fn demo_runs_the_whole_flow() {
    let env = Env::new();
    let out = ok(&env.kustos(&["demo"]));
    let text = String::from_utf8_lossy(&out);
    assert!(text.contains("4. kustos validate"), "{text}");
    assert!(
        !text.contains("demo-token-not-a-real-secret"),
        "the demo never prints the secret"
    );
    if which("kubectl").is_some() {
        assert!(
            text.contains("decrypted with the cluster key (MAC verified): yes"),
            "{text}"
        );
    }
}

#[test]
fn every_command_has_help() {
    let env = Env::new();
    for cmd in [
        "encrypt",
        "decrypt",
        "rotate",
        "updatekeys",
        "set",
        "unset",
        "edit",
        "filestatus",
        "exec-env",
        "exec-file",
        "secret",
        "keygen",
        "init",
        "tenant",
        "validate",
        "fleet",
        "plugin",
        "render",
        "cmp",
        "demo",
        "completion",
    ] {
        let o = env.kustos(&[cmd, "--help"]);
        assert!(
            o.status.success(),
            "{cmd} --help: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("Usage"),
            "{cmd}"
        );
    }
    let o = ok(&env.kustos(&["--version"]));
    assert!(String::from_utf8_lossy(&o).starts_with("kustos "));
    assert!(!String::from_utf8_lossy(&o).contains("crypto:"));
    // With --verbose: which library does which cryptography.
    let o = String::from_utf8(ok(&env.kustos(&["--version", "--verbose"]))).unwrap();
    assert!(o.starts_with("kustos "), "{o}");
    assert!(
        o.contains("crypto: OpenPGP RSA decryption: aws-lc-rs"),
        "{o}"
    );
    assert!(o.contains("Sequoia") && o.contains("RustCrypto"), "{o}");
}

#[test]
fn shell_completions() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(&env.kustos(&["completion", shell]));
        assert!(String::from_utf8_lossy(&out).contains("kustos"), "{shell}");
    }
}
