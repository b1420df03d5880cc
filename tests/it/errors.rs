//! Failure behaviour: sops' exit codes, one clear line naming the file, no
//! partial output, and never a secret value in an error.

use crate::common::*;

const SECRET: &str = "hunter2-very-secret";

fn encrypted(env: &Env) -> (std::path::PathBuf, String) {
    let plain = format!(
        "user: admin\npassword: {SECRET}\nnote_unencrypted: visible\nlist:\n    - {SECRET}\n"
    );
    let f = env.write("secret.yaml", plain.as_bytes());
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, f.to_str().unwrap()]));
    let p = env.write("secret.enc.yaml", &enc);
    (p, String::from_utf8(enc).unwrap())
}

#[track_caller]
fn fails(o: &std::process::Output, code: i32, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(o.stdout.is_empty(), "no partial output on failure");
    assert!(
        err.contains(needle),
        "stderr {err:?} should mention {needle:?}"
    );
    assert!(!err.contains(SECRET), "stderr leaks the secret: {err}");
}

#[test]
fn mac_mismatch_on_changed_plain_value() {
    let env = Env::new();
    let (_, enc) = encrypted(&env);
    let p = env.write("t.yaml", enc.replace("visible", "changed").as_bytes());
    fails(
        &env.kustos(&["decrypt", p.to_str().unwrap()]),
        51,
        "t.yaml: MAC mismatch",
    );
    // --ignore-mac reads it anyway.
    assert!(env
        .kustos(&["decrypt", "--ignore-mac", p.to_str().unwrap()])
        .status
        .success());
}

#[test]
fn tampered_ciphertext_iv_tag_and_mac() {
    let env = Env::new();
    let (_, enc) = encrypted(&env);
    let re = regex::Regex::new(r"(data|iv|tag):([A-Za-z0-9+/]+)").unwrap();
    let mut n = 0;
    for m in re.captures_iter(&enc) {
        let g = m.get(2).unwrap();
        // Flip one base64 character in the middle of the field.
        let i = g.start() + g.len() / 2;
        let c = enc.as_bytes()[i];
        let repl = if c == b'A' { 'B' } else { 'A' };
        let mut t = enc.clone();
        t.replace_range(i..i + 1, &repl.to_string());
        let p = env.write("tampered.yaml", t.as_bytes());
        let o = env.kustos(&["decrypt", p.to_str().unwrap()]);
        assert!(
            !o.status.success(),
            "tampering {} at byte {i} was not detected",
            &m[1]
        );
        assert!(o.stdout.is_empty());
        assert!(!String::from_utf8_lossy(&o.stderr).contains(SECRET));
        n += 1;
    }
    assert!(n >= 12, "expected many fields, saw {n}");
}

#[test]
fn wrong_key_names_group_and_key() {
    let env = Env::new();
    let (p, _) = encrypted(&env);
    let (_, other) = new_age_key(env.dir.path(), "other");
    let o = env
        .cmd(&kustos_bin())
        .env("SOPS_AGE_KEY_FILE", &other)
        .args(["decrypt", p.to_str().unwrap()])
        .output()
        .unwrap();
    fails(&o, 128, "cannot recover the data key");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("age age1"), "{err}");
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn exit_codes_like_sops() {
    let env = Env::new();
    let (enc, _) = encrypted(&env);
    let e = enc.to_str().unwrap();
    let r = env.recipient.as_str();
    fails(
        &env.kustos(&["encrypt", "--age", r, e]),
        203,
        "already encrypted",
    );
    let f = env.write("p.yaml", b"a: 1\n");
    let fp = f.to_str().unwrap();
    fails(
        &env.kustos(&[
            "encrypt",
            "--age",
            r,
            "--encrypted-regex",
            "a",
            "--unencrypted-regex",
            "b",
            fp,
        ]),
        8,
        "cannot use more than one",
    );
    fails(
        &env.kustos(&["encrypt", "--age", r, "-i", "--output", "x", fp]),
        8,
        "--in-place",
    );
    fails(
        &env.kustos(&["decrypt", "missing.yaml"]),
        100,
        "non-existent file",
    );
    let empty = env.write("empty.yaml", b"");
    fails(
        &env.kustos(&["encrypt", "--age", r, empty.to_str().unwrap()]),
        92,
        "no YAML document",
    );
    let bad = env.write("bad.yaml", b"a: [1, 2\nb: {\n");
    fails(
        &env.kustos(&["encrypt", "--age", r, bad.to_str().unwrap()]),
        2,
        "bad.yaml: yaml parse error",
    );
    let nonstr = env.write("nonstr.yaml", b"1: x\n");
    fails(
        &env.kustos(&["encrypt", "--age", r, nonstr.to_str().unwrap()]),
        23,
        "non-string key",
    );
    fails(
        &env.kustos(&["decrypt", "--decryption-order", "age,age", e]),
        112,
        "Duplicate",
    );
    fails(
        &env.kustos(&["decrypt", "--extract", "[\"x\"", e]),
        91,
        "--extract",
    );
    let plain = env.write("plain.yaml", b"a: 1\n");
    fails(
        &env.kustos(&["decrypt", plain.to_str().unwrap()]),
        1,
        "sops metadata not found",
    );
    fails(&env.kustos(&["encrypt", fp]), 1, "no keys provided");
    let dup = env.write("dup.yaml", b"a: 1\na: 2\n");
    fails(
        &env.kustos(&["encrypt", "--age", r, dup.to_str().unwrap()]),
        2,
        "already defined",
    );
}

#[test]
fn truncated_files_fail_cleanly() {
    let env = Env::new();
    let (full, enc) = encrypted(&env);
    let plain = ok(&env.kustos(&["decrypt", full.to_str().unwrap()]));
    for cut in (1..enc.len()).step_by(7) {
        let p = env.write("cut.yaml", &enc.as_bytes()[..cut]);
        let o = env.kustos(&["decrypt", p.to_str().unwrap()]);
        if o.status.success() {
            // Only a cut inside the trailing `version` value can still be a
            // valid file, and then the output is the whole plaintext.
            assert_eq!(o.stdout, plain, "truncated at {cut} gave partial output");
            continue;
        }
        assert!(o.stdout.is_empty());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.starts_with("kustos: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn in_place_is_atomic_and_keeps_mode() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let f = env.write("s.yaml", b"password: x\n");
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
    ok(&env.kustos(&[
        "encrypt",
        "-i",
        "--age",
        &env.recipient,
        f.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::metadata(&f).unwrap().permissions().mode() & 0o777,
        0o640
    );
    assert!(std::fs::read_to_string(&f)
        .unwrap()
        .contains("ENC[AES256_GCM"));
    // A failing in-place run leaves the file untouched.
    let before = std::fs::read(&f).unwrap();
    let o = env.kustos(&[
        "encrypt",
        "-i",
        "--age",
        &env.recipient,
        f.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(203));
    assert_eq!(std::fs::read(&f).unwrap(), before);
    ok(&env.kustos(&["decrypt", "-i", f.to_str().unwrap()]));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "password: x\n");
    // --output creates plaintext files 0600.
    let enc = env.write(
        "e.yaml",
        &ok(&env.kustos(&["encrypt", "--age", &env.recipient, f.to_str().unwrap()])),
    );
    let out = env.path("plain-out.yaml");
    ok(&env.kustos(&[
        "decrypt",
        "--output",
        out.to_str().unwrap(),
        enc.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("kustos-tmp"))
        .collect();
    assert!(leftovers.is_empty());
}
