//! The properties the fuzz targets check, callable from `fuzz/` (libFuzzer)
//! and from the CI smoke test, which runs them over the test corpus and
//! mutations of it without needing a nightly toolchain.
//!
//! Each function must never panic except through its own assertions.

// Each fuzz target and the smoke test use a few of these.
#![allow(dead_code)]

use kustos::formats::{self, dotenv, ini, json, yaml, Format};
use kustos::keys::{KeyRing, KeySources};
use kustos::sops::cipher::{Cipher, DataKey, EncryptedValue};
use std::sync::Arc;

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
    let _ = kustos::ops::parse_tree_path(s);
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
            let _ = kustos::ops::decrypt_tree(&mut t, &ring, false);
        }
    }
}

/// `.sops.yaml` parsing and rule matching.
pub fn sops_config(data: &[u8]) {
    if let Ok(c) = kustos::config::parse(data, std::path::Path::new("/repo/.sops.yaml")) {
        let _ = c.rule_for(std::path::Path::new("/repo/tenants/a/secret.yaml"));
    }
}

/// The kustomize plugin's inputs: errors always come back as a ResourceList.
pub fn plugin(data: &[u8]) {
    let ring = KeyRing::new(KeySources::default());
    let root = std::env::temp_dir();
    let out = kustos::plugin::run_krm(data, &root, &ring);
    assert!(out
        .bytes
        .starts_with(b"apiVersion: config.kubernetes.io/v1\nkind: ResourceList\n"));
    if let Ok(docs) = formats::load_plain(Format::Yaml, data) {
        for d in docs {
            let _ = kustos::plugin::parse_config(&d, "fuzz");
        }
    }
}

/// TEST-ONLY age identities of the two tenants the `serve` target's sidecar
/// knows (made for fuzzing; they protect nothing). The seeds in
/// `fuzz/seeds/serve-*` are encrypted to them.
pub const FUZZ_TENANT_KEYS: [(&str, &str, &str); 2] = [
    (
        "team-a",
        "AGE-SECRET-KEY-1Y8PS8V4M8CFSD8WYT6N4LAXQYLFCRQXC2M6WK3MW96VZQX70YEAQE6EFAF",
        "age1hedqhc8cqjjdupw8qnvv9sk64dshe75w7nujcyw0x43jmma8pyrq2c8pct",
    ),
    (
        "team-b",
        "AGE-SECRET-KEY-154AJ5KCXW2Y9JNFDAFP4A6WH5DZVCQ4TMRJDKCKJCLRA28R09P3SL4F2P9",
        "age1zyymlqm0dp80pl3n095y0ljukd9gvuefgwuu7xy6kqcy7vwy6cusxwjczh",
    ),
];

/// The plaintext marker in each tenant's seed documents: the property is
/// that it only ever comes back in a 200 answer to a request for that
/// tenant.
pub const FUZZ_CANARIES: [&str; 2] = ["canary-team-a-3b9d0f", "canary-team-b-7c1e42"];

struct ServeFixture {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

/// A sidecar with two tenants' keys and a render root whose kustomization
/// holds team-a's encrypted Secret (kubectl is absent, so render stops after
/// decrypting the sources: no plaintext may leak from that path either).
fn serve_fixture() -> &'static ServeFixture {
    use kustos::serve::{http, keys::KeyStore, metrics::Metrics};
    static FIXTURE: std::sync::OnceLock<ServeFixture> = std::sync::OnceLock::new();
    FIXTURE.get_or_init(|| {
        kustos::serve::log::set_enabled(false);
        let dir = tempfile::tempdir().expect("temp dir");
        let keys_dir = dir.path().join("keys");
        for (tenant, secret, _) in FUZZ_TENANT_KEYS {
            let d = keys_dir.join(tenant);
            std::fs::create_dir_all(&d).expect("keys dir");
            std::fs::write(d.join("age.agekey"), format!("{secret}\n")).expect("key file");
        }
        let app = dir.path().join("root/app");
        std::fs::create_dir_all(&app).expect("render root");
        let spec = kustos::ops::EncryptSpec {
            groups: vec![vec![kustos::keys::Recipient::Age(
                FUZZ_TENANT_KEYS[0].2.to_string(),
            )]],
            ..Default::default()
        };
        let plain = format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n    name: s\n    namespace: team-a\nstringData:\n    token: {}\n",
            FUZZ_CANARIES[0]
        );
        let enc = kustos::ops::encrypt_bytes(
            plain.as_bytes(),
            Format::Yaml,
            Format::Yaml,
            &spec,
            &Default::default(),
        )
        .expect("encrypt the render fixture");
        std::fs::write(app.join("secret.enc.yaml"), enc).expect("fixture");
        std::fs::write(
            app.join("kustomization.yaml"),
            "resources:\n- secret.enc.yaml\n",
        )
        .expect("fixture");
        std::os::unix::fs::symlink("/", dir.path().join("root/escape")).expect("symlink");
        let root = std::fs::canonicalize(dir.path().join("root")).expect("root");

        let store = Arc::new(KeyStore::new(keys_dir, false, 64));
        assert!(
            matches!(store.check(), kustos::serve::keys::ReloadOutcome::Reloaded(_)),
            "the fuzz keys must load"
        );
        let state = Arc::new(http::AppState {
            store,
            metrics: Arc::new(Metrics::new()),
            limiter: Arc::new(tokio::sync::Semaphore::new(4)),
            draining: Default::default(),
            render_root: Some(root),
            kubectl: "/nonexistent/kubectl".into(),
            max_body: 64 << 10,
            timeout: std::time::Duration::from_secs(10),
            access_log: false,
            // The fuzzer plays one trusted caller naming tenants.
            trust_tenant_header: true,
            sandbox: kustos::render::Sandbox::Off,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        ServeFixture {
            rt,
            router: http::router(state),
            _dir: dir,
        }
    })
}

/// Splits fuzz input into a request: `METHOD TARGET` on the first line,
/// `Name: value` header lines, an empty line, then the body. (hyper parses
/// the real wire format; this drives everything kustos does after it.)
fn fuzz_request(data: &[u8]) -> Option<(axum::http::Request<axum::body::Body>, Vec<String>)> {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (&data[..i], &data[i + 2..]))
        .unwrap_or((data, &[][..]));
    let head = std::str::from_utf8(split.0).ok()?;
    let mut lines = head.lines();
    let (method, target) = lines.next()?.split_once(' ')?;
    let mut req = axum::http::Request::builder().method(method).uri(target);
    // Every tenant name the request carries, wherever it is.
    let mut tenants = Vec::new();
    if let Some(q) = target.split_once('?').map(|(_, q)| q) {
        for kv in q.split('&') {
            if let Some(("tenant", v)) = kv.split_once('=') {
                tenants.push(v.to_string());
            }
        }
    }
    for line in lines {
        let (k, v) = line.split_once(':')?;
        if k.eq_ignore_ascii_case(kustos::serve::http::TENANT_HEADER) {
            tenants.push(v.trim().to_string());
        }
        req = req.header(k, v.trim_start());
    }
    let req = req.body(axum::body::Body::from(split.1.to_vec())).ok()?;
    Some((req, tenants))
}

/// The sidecar's request handling (routing, limits, tenant and format
/// headers, body reading, document parsing, decryption, render requests):
/// never a 500, errors are JSON with a reason, and a tenant's plaintext
/// comes back only in a 200 answer to a request for that tenant.
pub fn serve(data: &[u8]) {
    let _ = serve_answer(data);
}

/// Runs one fuzz request through the sidecar's router and checks the
/// answer (see [`serve`]); returns the status and body when the input is a
/// request at all.
pub fn serve_answer(data: &[u8]) -> Option<(u16, Vec<u8>)> {
    use tower::ServiceExt;
    let (req, tenants) = fuzz_request(data)?;
    let f = serve_fixture();
    let (status, body) = f.rt.block_on(async {
        let resp = f
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router never fails");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("response body");
        (status, body)
    });
    assert_ne!(status, axum::http::StatusCode::INTERNAL_SERVER_ERROR);
    if !status.is_success() {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("error answers are JSON");
        assert!(v["error"].is_string(), "error answers name the reason");
    }
    for ((tenant, _, _), canary) in FUZZ_TENANT_KEYS.iter().zip(FUZZ_CANARIES) {
        let has = |hay: &[u8]| hay.windows(canary.len()).any(|w| w == canary.as_bytes());
        // A request may carry the marker itself (as a key name an error
        // message points at, or a value sops leaves unencrypted); only
        // plaintext the sidecar decrypted is checked.
        if has(&body) && !has(data) {
            assert!(status.is_success(), "plaintext in an error answer");
            assert!(
                tenants.iter().any(|t| t == tenant),
                "{tenant}'s plaintext answered to a request for {tenants:?}"
            );
        }
    }
    Some((status.as_u16(), body.to_vec()))
}

/// A repository file the PGP targets use, read at run time (the fuzz
/// targets and the tests run from a checkout; nothing is built in).
fn repo_file(path: &str) -> Vec<u8> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The TEST-ONLY GnuPG-made keys the PGP targets decrypt with: RSA-2048
/// (its messages go through aws-lc-rs and implicit rejection) and Ed25519
/// with a cv25519 subkey (Sequoia).
fn pgp_fuzz_keys() -> &'static kustos::keys::pgp::PgpKeys {
    static KEYS: std::sync::OnceLock<kustos::keys::pgp::PgpKeys> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut data = repo_file("testdata/vectors/gnupg-rsa2048.TEST-ONLY.asc");
        data.extend(repo_file("fuzz/seeds/pgp-cv25519-TEST-ONLY.asc"));
        let keys = kustos::keys::pgp::PgpKeys::from_bytes(&data, "fuzz keys");
        assert_eq!(keys.len(), 2, "{:?}", keys.problems);
        keys
    })
}

/// The armored message sops stored for the RSA-2048 TEST-ONLY key.
fn rsa_seed_message() -> &'static str {
    static MESSAGE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MESSAGE.get_or_init(|| {
        let yaml =
            String::from_utf8(repo_file("testdata/vectors/gnupg-rsa2048.enc.yaml")).expect("UTF-8");
        let start = yaml
            .find("-----BEGIN PGP MESSAGE-----")
            .expect("a PGP message");
        let end = yaml
            .find("-----END PGP MESSAGE-----")
            .expect("a PGP message");
        yaml[start..end + "-----END PGP MESSAGE-----".len()]
            .lines()
            .map(str::trim)
            .collect::<Vec<_>>()
            .join("\n")
    })
}

/// OpenPGP key files (the `*.asc` of a keys folder, or the sidecar's
/// mounted keys): loading never panics, secret material never shows in
/// the keys' debug output, and decrypting a fixed message with whatever
/// keys loaded (an RSA key's numbers reach aws-lc-rs) never panics.
pub fn pgp_keys(data: &[u8]) {
    let keys = kustos::keys::pgp::PgpKeys::from_bytes(data, "fuzz");
    let shown = format!("{keys:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    if let Err(kustos::keys::UnwrapError::Failed(m)) =
        keys.unwrap("fuzz", rsa_seed_message(), false)
    {
        assert_ne!(m, kustos::keys::pgp::OPENPGP_PANIC);
    }
}

/// Decrypts `data` as the PGP message of a sops `pgp` entry (armored
/// first when it is not armored text already) with the TEST-ONLY keys.
pub fn pgp_message_unwrap(
    data: &[u8],
) -> Result<zeroize::Zeroizing<Vec<u8>>, kustos::keys::UnwrapError> {
    let text = match std::str::from_utf8(data) {
        Ok(t) if t.trim_start().starts_with("-----BEGIN PGP") => t.to_string(),
        _ => {
            use sequoia_openpgp::armor::{Kind, Writer};
            use std::io::Write;
            let mut out = Vec::new();
            let mut w = Writer::new(&mut out, Kind::Message).expect("armor writer");
            w.write_all(data).expect("in memory");
            w.finalize().expect("in memory");
            String::from_utf8(out).expect("armor is ASCII")
        }
    };
    pgp_fuzz_keys().unwrap("fuzz", &text, false)
}

/// The whole PGP-wrapped data-key decrypt (packet parsing, session keys
/// through aws-lc-rs with implicit rejection or Sequoia, the encrypted
/// data) on arbitrary packets: never a panic, not even one the decrypt
/// catches, and whatever opens is at most a few hundred bytes.
pub fn pgp_message(data: &[u8]) {
    match pgp_message_unwrap(data) {
        Ok(pt) => assert!(pt.len() <= data.len(), "more plaintext than message"),
        Err(kustos::keys::UnwrapError::Failed(m)) => {
            assert_ne!(m, kustos::keys::pgp::OPENPGP_PANIC)
        }
        Err(_) => {}
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
    ("serve", serve),
    ("pgp_keys", pgp_keys),
    ("pgp_message", pgp_message),
];
