//! rotate, updatekeys, set, unset, edit, filestatus, exec-env, exec-file and
//! Shamir key groups, with results checked by the real sops.

use crate::common::*;

const PLAIN: &[u8] = b"# app secret\nuser: admin\npassword: s3cret\nnested:\n    token: t0k3n\n    list:\n        - a\n        - b\n";

#[test]
fn set_and_unset_keep_other_ciphertexts() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let f = env.write("s.yaml", PLAIN);
    let enc = ok(&env.sops(
        &sops,
        &["encrypt", "--age", &env.recipient, f.to_str().unwrap()],
    ));
    let p = env.write("s.enc.yaml", &enc);
    let ps = p.to_str().unwrap();
    ok(&env.kustos(&["set", ps, r#"["password"]"#, r#""n3w""#]));
    let after = std::fs::read(&p).unwrap();
    let (before_l, after_l) = (enc_lines(&enc), enc_lines(&after));
    assert_eq!(before_l.len(), after_l.len());
    let changed: Vec<_> = before_l
        .iter()
        .zip(&after_l)
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed.len(),
        1,
        "only the set value's ciphertext changes: {changed:?}"
    );
    let dec = ok(&env.sops(&sops, &["decrypt", ps]));
    assert!(String::from_utf8_lossy(&dec).contains("password: n3w"));
    // Creating a path, a number (JSON numbers are floats, like sops).
    ok(&env.kustos(&["set", ps, r#"["nested"]["new"]["deep"]"#, "5"]));
    ok(&env.kustos(&["set", ps, r#"["nested"]["list"][5]"#, r#"{"x": true}"#]));
    let dec = String::from_utf8(ok(&env.sops(&sops, &["decrypt", ps]))).unwrap();
    assert!(dec.contains("new:\n        deep: 5\n"), "{dec}");
    assert!(dec.contains("- x: true"), "{dec}");
    // --idempotent with the same value does not rewrite the file.
    let before = std::fs::read(&p).unwrap();
    ok(&env.kustos(&["set", "--idempotent", ps, r#"["user"]"#, r#""admin""#]));
    assert_eq!(std::fs::read(&p).unwrap(), before);
    // --value-stdin
    ok(&env.kustos_stdin(&["set", "--value-stdin", ps, r#"["user"]"#], br#""root""#));
    ok(&env.kustos(&["unset", ps, r#"["nested"]["token"]"#]));
    let dec = String::from_utf8(ok(&env.sops(&sops, &["decrypt", ps]))).unwrap();
    assert!(
        dec.contains("user: root") && !dec.contains("t0k3n"),
        "{dec}"
    );
    let o = env.kustos(&["unset", ps, r#"["nope"]"#]);
    assert_eq!(o.status.code(), Some(1));
    ok(&env.kustos(&["unset", "--idempotent", ps, r#"["nope"]"#]));
    assert_eq!(env.kustos(&["set", ps, "bad", "1"]).status.code(), Some(7));
}

#[test]
fn rotate_changes_data_key_and_keys() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let f = env.write("s.yaml", PLAIN);
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, f.to_str().unwrap()]));
    let p = env.write("s.enc.yaml", &enc);
    let ps = p.to_str().unwrap();
    let (r2, k2) = new_age_key(env.dir.path(), "second");
    ok(&env.kustos(&["rotate", "-i", "--add-age", &r2, ps]));
    let rotated = std::fs::read(&p).unwrap();
    assert_ne!(
        enc_lines(&enc),
        enc_lines(&rotated),
        "new data key, new ciphertexts"
    );
    let with_k2 = env
        .cmd(&sops)
        .env("SOPS_AGE_KEY_FILE", &k2)
        .args(["decrypt", ps])
        .output()
        .unwrap();
    assert_eq!(ok(&with_k2), ok(&env.sops(&sops, &["decrypt", ps])));
    ok(&env.kustos(&["rotate", "-i", "--rm-age", &env.recipient, ps]));
    let o = env.sops(&sops, &["decrypt", ps]);
    assert_eq!(
        o.status.code(),
        Some(128),
        "the removed key can no longer decrypt"
    );
    let o = env
        .cmd(&sops)
        .env("SOPS_AGE_KEY_FILE", &k2)
        .args(["decrypt", ps])
        .output()
        .unwrap();
    assert_eq!(
        ok(&o),
        ok(&env
            .cmd(&kustos_bin())
            .env("SOPS_AGE_KEY_FILE", &k2)
            .args(["decrypt", ps])
            .output()
            .unwrap())
    );
    let missing = env.kustos(&["rotate", "--add-age", &r2, "nope.yaml"]);
    assert_eq!(missing.status.code(), Some(49));
}

#[test]
fn updatekeys_follows_config_and_keeps_values() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let (r2, k2) = new_age_key(env.dir.path(), "second");
    let f = env.write("s.yaml", PLAIN);
    let enc = ok(&env.sops(
        &sops,
        &["encrypt", "--age", &env.recipient, f.to_str().unwrap()],
    ));
    let p = env.write("s.enc.yaml", &enc);
    let ps = p.to_str().unwrap();
    env.write(
        ".sops.yaml",
        format!("creation_rules:\n  - age: {},{}\n", env.recipient, r2).as_bytes(),
    );
    let o = ok(&env.kustos(&["updatekeys", "-y", ps]));
    let out = String::from_utf8_lossy(&o);
    assert!(
        out.contains("Group 1") && out.contains(&format!("+++ {r2}")),
        "{out}"
    );
    let after = std::fs::read(&p).unwrap();
    assert_eq!(enc_lines(&enc), enc_lines(&after), "values untouched");
    let mac = |s: &[u8]| {
        String::from_utf8_lossy(s)
            .lines()
            .filter(|l| l.contains("mac:") || l.contains("lastmodified"))
            .map(String::from)
            .collect::<Vec<_>>()
    };
    assert_eq!(mac(&enc), mac(&after), "MAC and lastmodified untouched");
    let o = env
        .cmd(&sops)
        .env("SOPS_AGE_KEY_FILE", &k2)
        .args(["decrypt", ps])
        .output()
        .unwrap();
    assert_eq!(ok(&o), PLAIN);
    // Already up to date: nothing written.
    ok(&env.kustos(&["updatekeys", "-y", ps]));
    assert_eq!(std::fs::read(&p).unwrap(), after);
}

#[test]
fn shamir_groups_both_ways() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let keys: Vec<(String, std::path::PathBuf)> = (0..3)
        .map(|i| new_age_key(env.dir.path(), &format!("g{i}")))
        .collect();
    env.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - shamir_threshold: 2\n    key_groups:\n      - age: [{}]\n      - age: [{}]\n      - age: [{}]\n",
            keys[0].0, keys[1].0, keys[2].0
        )
        .as_bytes(),
    );
    let f = env.write("s.yaml", PLAIN);
    let two = format!(
        "{}\n{}",
        std::fs::read_to_string(&keys[0].1).unwrap(),
        std::fs::read_to_string(&keys[2].1).unwrap()
    );
    let one = std::fs::read_to_string(&keys[1].1).unwrap();
    for writer in ["sops", "kustos"] {
        let enc = if writer == "sops" {
            ok(&env.sops(&sops, &["encrypt", f.to_str().unwrap()]))
        } else {
            ok(&env.kustos(&["encrypt", f.to_str().unwrap()]))
        };
        assert!(String::from_utf8_lossy(&enc).contains("shamir_threshold: 2"));
        let p = env.write("sh.enc.yaml", &enc);
        let ps = p.to_str().unwrap();
        for reader in [&sops, &kustos_bin()] {
            let o = env
                .cmd(reader)
                .env_remove("SOPS_AGE_KEY_FILE")
                .env("SOPS_AGE_KEY", &two)
                .args(["decrypt", ps])
                .output()
                .unwrap();
            assert_eq!(ok(&o), PLAIN, "{writer} file read by {}", reader.display());
        }
        let o = env
            .cmd(&kustos_bin())
            .env_remove("SOPS_AGE_KEY_FILE")
            .env("SOPS_AGE_KEY", &one)
            .args(["decrypt", ps])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(128));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("2 of 3 key groups needed, 1 decrypted") && err.contains("group 1:"),
            "{err}"
        );
    }
    std::fs::remove_file(env.path(".sops.yaml")).unwrap();
}

#[test]
fn edit_with_scripted_editor() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let f = env.write("s.yaml", PLAIN);
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, f.to_str().unwrap()]));
    let p = env.write("s.enc.yaml", &enc);
    let ps = p.to_str().unwrap();
    // The "editor" records the temp file's mode and edits it.
    let script = env.write(
        "ed.sh",
        format!(
            "#!/bin/sh\nstat -c %a \"$1\" > {}/mode\nsed -i 's/s3cret/changed/' \"$1\"\n",
            env.dir.path().display()
        )
        .as_bytes(),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = env
        .cmd(&kustos_bin())
        .env("SOPS_EDITOR", &script)
        .args(["edit", ps])
        .output()
        .unwrap();
    ok(&o);
    assert_eq!(
        std::fs::read_to_string(env.path("mode")).unwrap().trim(),
        "600"
    );
    let dec = String::from_utf8(ok(&env.sops(&sops, &["decrypt", ps]))).unwrap();
    assert!(dec.contains("password: changed"), "{dec}");
    // Only the edited value's ciphertext changed.
    let changed = enc_lines(&enc)
        .iter()
        .zip(enc_lines(&std::fs::read(&p).unwrap()))
        .filter(|(a, b)| *a != b)
        .count();
    assert_eq!(changed, 1);
    // An editor that changes nothing: exit 200, file untouched.
    let before = std::fs::read(&p).unwrap();
    let o = env
        .cmd(&kustos_bin())
        .env("EDITOR", "true")
        .args(["edit", ps])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(200));
    assert_eq!(std::fs::read(&p).unwrap(), before);
    // A new file starts from sops' example and uses the given keys.
    let newf = env.path("new.yaml");
    let o = env
        .cmd(&kustos_bin())
        .env("EDITOR", "sed -i s/example_value1/first/")
        .args(["edit", "--age", &env.recipient, newf.to_str().unwrap()])
        .output()
        .unwrap();
    ok(&o);
    let dec =
        String::from_utf8(ok(&env.sops(&sops, &["decrypt", newf.to_str().unwrap()]))).unwrap();
    assert!(
        dec.contains("- first") && dec.contains("hello: Welcome to SOPS!"),
        "{dec}"
    );
}

#[test]
fn filestatus_and_exec() {
    let env = Env::new();
    let f = env.write("s.yaml", b"password: s3cret\nuser: admin\n");
    let fs = f.to_str().unwrap();
    assert_eq!(
        ok(&env.kustos(&["filestatus", fs])),
        b"{\"encrypted\":false}\n"
    );
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, fs]));
    let p = env.write("s.enc.yaml", &enc);
    let ps = p.to_str().unwrap();
    assert_eq!(
        ok(&env.kustos(&["filestatus", ps])),
        b"{\"encrypted\":true}\n"
    );
    assert_eq!(
        ok(&env.kustos(&["exec-env", ps, "echo $user:$password"])),
        b"admin:s3cret\n"
    );
    let o = env.kustos(&["exec-env", ps, "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    assert!(o.stderr.is_empty());
    assert_eq!(
        ok(&env.kustos(&["exec-file", ps, "cat {}"])),
        b"password: s3cret\nuser: admin\n"
    );
    assert_eq!(
        ok(&env.kustos(&["exec-file", "--no-fifo", ps, "cat {}; test ! -p {}"])),
        b"password: s3cret\nuser: admin\n"
    );
    let o = env.kustos(&["exec-file", "--output-type", "json", ps, "cat {}"]);
    assert!(String::from_utf8_lossy(&ok(&o)).contains("\"password\": \"s3cret\""));
}
