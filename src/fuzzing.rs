//! The properties the fuzz targets check, callable from `fuzz/` (libFuzzer)
//! and from the CI smoke test, which runs them over the test corpus and
//! mutations of it without needing a nightly toolchain.
//!
//! Each function must never panic except through its own assertions.

use crate::formats::{self, dotenv, ini, json, yaml, Format};
use crate::keys::{KeyRing, KeySources};
use crate::sops::cipher::{Cipher, DataKey, EncryptedValue};

/// `ENC[…]` parsing, value decryption and tree paths.
pub fn enc_value(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = EncryptedValue::parse(s);
    if let Some(key) = DataKey::from_slice(&[7u8; 32]) {
        let mut c = Cipher::new(&key);
        let _ = c.decrypt(s, "a:b:");
    }
    let _ = crate::ops::parse_tree_path(s);
}

/// YAML: what kustos writes it reads back, stable after one round (one
/// round may change types as yaml.v3 does, e.g. `1.0` becomes `1`).
pub fn yaml(data: &[u8]) {
    let Ok(docs) = yaml::parse::parse(data, false) else {
        return;
    };
    let once = yaml::emit::emit(&docs, 4);
    let again =
        yaml::parse::parse(once.as_bytes(), false).expect("kustos must read back its own YAML");
    let twice = yaml::emit::emit(&again, 4);
    let third =
        yaml::parse::parse(twice.as_bytes(), false).expect("kustos must read back its own YAML");
    assert_eq!(
        twice,
        yaml::emit::emit(&third, 4),
        "emitting YAML is not stable"
    );
}

/// JSON: parse, emit, parse gives the same tree.
pub fn json(data: &[u8]) {
    let _ = json::parse_value(data);
    let Ok(m) = json::parse(data) else { return };
    let Ok(out) = json::emit(&m, json::Indent(None)) else {
        return;
    };
    let back = json::parse(&out).expect("kustos must read back its own JSON");
    assert_eq!(
        json::emit(&back, json::Indent(None)).ok(),
        Some(out),
        "emitting JSON is not stable"
    );
}

/// dotenv: parse, emit, parse gives the same tree; the encrypted loader never panics.
pub fn dotenv(data: &[u8]) {
    let _ = dotenv::load_encrypted(data);
    let Ok(m) = dotenv::parse(data) else { return };
    let Ok(out) = dotenv::emit(&m) else { return };
    let back = dotenv::parse(&out).expect("kustos must read back its own dotenv");
    assert_eq!(
        dotenv::emit(&back).ok(),
        Some(out),
        "emitting dotenv is not stable"
    );
}

/// INI: parse and emit never panic.
pub fn ini(data: &[u8]) {
    let _ = ini::load_encrypted(data);
    let Ok(m) = ini::parse(data) else { return };
    let Ok(out) = ini::emit(&m) else { return };
    let _ = ini::parse(&out);
}

/// Every store's encrypted loader and a decryption attempt without keys.
pub fn metadata(data: &[u8]) {
    let ring = KeyRing::new(KeySources::default());
    for f in [
        Format::Yaml,
        Format::Json,
        Format::Dotenv,
        Format::Ini,
        Format::Binary,
    ] {
        if let Ok(mut t) = formats::load_encrypted(f, data) {
            let _ = formats::emit_encrypted(f, &t, &Default::default());
            let _ = crate::ops::decrypt_tree(&mut t, &ring, false);
        }
    }
}

/// `.sops.yaml` parsing and rule matching.
pub fn sops_config(data: &[u8]) {
    if let Ok(c) = crate::config::parse(data, std::path::Path::new("/repo/.sops.yaml")) {
        let _ = c.rule_for(std::path::Path::new("/repo/tenants/a/secret.yaml"));
    }
}

/// The kustomize plugin's inputs: errors always come back as a ResourceList.
pub fn plugin(data: &[u8]) {
    let ring = KeyRing::new(KeySources::default());
    let root = std::env::temp_dir();
    let out = crate::plugin::run_krm(data, &root, &ring);
    assert!(out
        .bytes
        .starts_with(b"apiVersion: config.kubernetes.io/v1\nkind: ResourceList\n"));
    if let Ok(docs) = formats::load_plain(Format::Yaml, data) {
        for d in docs {
            let _ = crate::plugin::parse_config(&d, "fuzz");
        }
    }
}

/// A fuzz target: a name and the property it checks on arbitrary bytes.
pub type Target = (&'static str, fn(&[u8]));

/// All targets by name.
pub const TARGETS: &[Target] = &[
    ("enc_value", enc_value),
    ("yaml", yaml),
    ("json", json),
    ("dotenv", dotenv),
    ("ini", ini),
    ("metadata", metadata),
    ("sops_config", sops_config),
    ("plugin", plugin),
];
