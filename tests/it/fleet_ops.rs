//! Fleet-wide status, updatekeys and rotate on a generated fleet of a few
//! hundred tenant Secrets (age and OpenPGP, some plaintext on purpose),
//! checked with the real sops; a failure in the middle changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;

const TENANTS: usize = 240;

struct Fleet {
    env: Env,
    root: PathBuf,
    keys: PathBuf,
    pgp_fpr: String,
    plaintext: Vec<String>,
}

fn secret(i: usize) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n    name: tenant-{i}-auth\n    namespace: tenant-{i}\nstringData:\n    username: git\n    password: token-{i:04}\n"
    )
}

/// Builds the fleet: most files for age key A, every 10th also for a PGP
/// key, and five plaintext Secrets.
fn fleet() -> Fleet {
    let env = Env::new();
    let root = env.path("fleet");
    let keys = env.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(&env.key_file, keys.join("a.agekey")).unwrap();
    let (tsk, _cert, fpr) =
        kustos::keys::pgp::generate_key("Fleet", "fleet@kustos.test", true, 0).unwrap();
    std::fs::write(keys.join("sops.asc"), tsk).unwrap();
    let mut plain_files = Vec::new();
    let mut pgp_files = Vec::new();
    let mut plaintext = Vec::new();
    for i in 0..TENANTS {
        let rel = format!("tenants/base/t{i:03}/auth.yaml");
        let p = env.write(&format!("fleet/{rel}"), secret(i).as_bytes());
        if i % 50 == 7 {
            plaintext.push(rel);
        } else if i % 10 == 3 {
            pgp_files.push(p);
        } else {
            plain_files.push(p);
        }
    }
    env.write("fleet/tenants/base/README.md", b"not a secret\n");
    env.write("fleet/.sops.yaml", format!("creation_rules:\n  - path_regex: ^tenants/\n    encrypted_regex: ^(data|stringData)$\n    age: {}\n", env.recipient).as_bytes());
    // Encrypts files in place, in one kustos run, to key A plus `extra`.
    let encrypt_in_place = |extra: &[&str], files: &[PathBuf]| {
        let mut args: Vec<String> = [
            "encrypt",
            "--keys-dir",
            keys.to_str().unwrap(),
            "-i",
            "--encrypted-regex",
            "^(data|stringData)$",
            "--age",
            &env.recipient,
        ]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
        args.extend(files.iter().map(|p| p.display().to_string()));
        ok(&env
            .cmd(&kustos_bin())
            .current_dir(&root)
            .args(&args)
            .output()
            .unwrap());
    };
    encrypt_in_place(&[], &plain_files);
    encrypt_in_place(&["--pgp", &fpr], &pgp_files);
    Fleet {
        env,
        root,
        keys,
        pgp_fpr: fpr,
        plaintext,
    }
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.insert(p.clone(), std::fs::read(&p).unwrap());
            }
        }
    }
    walk(dir, &mut out);
    out
}

#[test]
fn status_updatekeys_and_rotate_across_the_fleet() {
    let Some(sops) = sops() else { return };
    let f = fleet();
    let env = &f.env;
    let kd = f.keys.to_str().unwrap();
    let run = |args: &[&str]| {
        env.cmd(&kustos_bin())
            .current_dir(&f.root)
            .arg("--keys-dir")
            .arg(kd)
            .args(args)
            .output()
            .unwrap()
    };

    // status finds exactly the plaintext Secrets.
    let o = run(&["fleet", "status", ".", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&ok(&o)).unwrap();
    let mut plain: Vec<String> = v["plaintext_secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().split(' ').next().unwrap().to_string())
        .collect();
    plain.sort();
    assert_eq!(plain, f.plaintext);
    assert_eq!(
        v["encrypted"].as_array().unwrap().len(),
        TENANTS - f.plaintext.len()
    );
    let pgp_row = v["encrypted"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["file"] == "tenants/base/t003/auth.yaml")
        .unwrap();
    assert_eq!(
        pgp_row["rule"], "differs",
        "PGP files have a key the rule does not list"
    );
    assert!(pgp_row["groups"][0]
        .as_array()
        .unwrap()
        .iter()
        .any(|k| k == f.pgp_fpr.as_str()));
    // Before updatekeys the PGP key alone opens those files.
    let p = f.root.join("tenants/base/t003/auth.yaml");
    let o = env
        .cmd(&kustos_bin())
        .env_remove("SOPS_AGE_KEY_FILE")
        .args([
            "decrypt",
            "--decryption-order",
            "pgp",
            "--keys-dir",
            kd,
            p.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ok(&o)).contains("password: token-0003"));

    // updatekeys to A+B: values untouched, B works with the real sops.
    let (rb, kb) = new_age_key(env.dir.path(), "b");
    env.write(
        "fleet/.sops.yaml",
        format!(
            "creation_rules:\n  - path_regex: ^tenants/\n    age: {},{}\n",
            env.recipient, rb
        )
        .as_bytes(),
    );
    let sample = f.root.join("tenants/base/t010/auth.yaml");
    let before = std::fs::read(&sample).unwrap();
    let o = run(&["fleet", "updatekeys", ".", "-y", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&ok(&o)).unwrap();
    assert_eq!(report["updated"], TENANTS - f.plaintext.len());
    let after = std::fs::read(&sample).unwrap();
    assert_eq!(
        enc_lines(&before),
        enc_lines(&after),
        "updatekeys keeps every value's ciphertext"
    );
    for t in ["t010", "t111", "t239"] {
        let p = f.root.join(format!("tenants/base/{t}/auth.yaml"));
        let o = env
            .cmd(&sops)
            .env("SOPS_AGE_KEY_FILE", &kb)
            .args(["decrypt", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&ok(&o)).contains("password: token-"),
            "{t}"
        );
    }
    // A second run has nothing to do.
    let o = run(&["fleet", "updatekeys", ".", "-y", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&ok(&o)).unwrap();
    assert_eq!(report["updated"], 0);
    // Pointed at a sub-folder, it finds the .sops.yaml above it (like sops)
    // and matches path_regex relative to the config's folder.
    let o = run(&["fleet", "updatekeys", "tenants/base", "-y", "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&ok(&o)).unwrap();
    assert_eq!(report["updated"], 0);

    // rotate removing A: A is locked out, B (and the PGP key) still work.
    let o = run(&["fleet", "rotate", ".", "-y", "--rm-age", &env.recipient]);
    ok(&o);
    for t in ["t010", "t111"] {
        let p = f.root.join(format!("tenants/base/{t}/auth.yaml"));
        let o = env
            .cmd(&sops)
            .args(["decrypt", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(128),
            "removed key A still decrypts {t}"
        );
        let o = env
            .cmd(&sops)
            .env("SOPS_AGE_KEY_FILE", &kb)
            .args(["decrypt", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&ok(&o)).contains("password: token-"));
    }
    // The PGP-wrapped files followed the rule too: the PGP key is gone.
    let p = f.root.join("tenants/base/t003/auth.yaml");
    assert!(!String::from_utf8_lossy(&std::fs::read(&p).unwrap()).contains(&f.pgp_fpr));
    let o = env
        .cmd(&sops)
        .env("SOPS_AGE_KEY_FILE", &kb)
        .args(["decrypt", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&ok(&o)).contains("password: token-0003"));
}

#[test]
fn a_failure_in_the_middle_changes_nothing() {
    let f = fleet();
    let env = &f.env;
    let kd = f.keys.to_str().unwrap();
    let run = |args: &[&str]| {
        env.cmd(&kustos_bin())
            .current_dir(&f.root)
            .arg("--keys-dir")
            .arg(kd)
            .args(args)
            .output()
            .unwrap()
    };
    let (rb, _) = new_age_key(env.dir.path(), "b");
    env.write(
        "fleet/.sops.yaml",
        format!(
            "creation_rules:\n  - path_regex: ^tenants/\n    age: {},{}\n",
            env.recipient, rb
        )
        .as_bytes(),
    );
    // One file in the middle is for a key nobody here holds.
    let (rc, _) = new_age_key(env.dir.path(), "c");
    let odd = env.write("fleet/tenants/base/t120/auth.yaml", secret(120).as_bytes());
    ok(&env.kustos(&["encrypt", "-i", "--age", &rc, odd.to_str().unwrap()]));
    let before = snapshot(&f.root);
    for args in [
        vec!["fleet", "updatekeys", ".", "-y"],
        vec!["fleet", "rotate", ".", "-y", "--add-age", &rb],
    ] {
        let o = run(&args);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("nothing was changed") && err.contains("t120"),
            "{err}"
        );
        assert!(
            snapshot(&f.root) == before,
            "{args:?} changed files although it failed"
        );
    }
    // A tampered file (MAC mismatch) also stops a rotation before any write.
    std::fs::remove_file(&odd).unwrap();
    let victim = f.root.join("tenants/base/t121/auth.yaml");
    let text = std::fs::read_to_string(&victim)
        .unwrap()
        .replace("namespace: tenant-121", "namespace: tenant-999");
    std::fs::write(&victim, text).unwrap();
    let before = snapshot(&f.root);
    let o = run(&["fleet", "rotate", ".", "-y"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("MAC mismatch"));
    assert!(snapshot(&f.root) == before);
    // --dry-run writes nothing and reports what would change.
    std::fs::remove_file(&victim).unwrap();
    let before = snapshot(&f.root);
    let o = run(&["fleet", "updatekeys", ".", "--dry-run"]);
    assert!(String::from_utf8_lossy(&ok(&o)).contains("would update"));
    assert!(snapshot(&f.root) == before);
}

/// `encrypt`/`decrypt` take many files in one process with `--output-dir`:
/// every output decrypts with the real sops, decrypting them back gives the
/// plaintext, outputs are never left half-written, and a bad file among
/// them fails the run (naming it) without an output of its own.
#[test]
fn many_files_in_one_process_with_output_dir() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let n = 60;
    let plain: Vec<PathBuf> = (0..n)
        .map(|i| env.write(&format!("plain/t{i:03}.yaml"), secret(i).as_bytes()))
        .collect();
    let mut args: Vec<String> = [
        "encrypt",
        "--age",
        &env.recipient,
        "--encrypted-regex",
        "^(data|stringData)$",
        "--output-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(env.path("enc").display().to_string());
    std::fs::create_dir_all(env.path("enc")).unwrap();
    args.extend(plain.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(&env.kustos(&argv));
    for i in 0..n {
        let p = env.path(&format!("enc/t{i:03}.yaml"));
        let enc = std::fs::read_to_string(&p).unwrap();
        assert!(
            !enc.contains(&format!("token-{i:04}")),
            "plaintext in {p:?}"
        );
        let out = ok(&env.sops(&sops, &["decrypt", p.to_str().unwrap()]));
        assert_eq!(String::from_utf8(out).unwrap(), secret(i), "sops on {p:?}");
    }

    // Back again, with one file that is not encrypted among them.
    std::fs::create_dir_all(env.path("dec")).unwrap();
    let mut inputs: Vec<String> = (0..n)
        .map(|i| env.path(&format!("enc/t{i:03}.yaml")).display().to_string())
        .collect();
    let dec = env.path("dec").display().to_string();
    let mut argv = vec!["decrypt", "--output-dir", dec.as_str()];
    argv.extend(inputs.iter().map(String::as_str));
    ok(&env.kustos(&argv));
    for i in 0..n {
        let got = std::fs::read_to_string(env.path(&format!("dec/t{i:03}.yaml"))).unwrap();
        assert_eq!(got, secret(i));
    }
    std::fs::remove_dir_all(env.path("dec")).unwrap();
    std::fs::create_dir_all(env.path("dec")).unwrap();
    let stray = env.write("stray/plain.yaml", secret(999).as_bytes());
    inputs.push(stray.display().to_string());
    let mut argv = vec!["decrypt", "--output-dir", dec.as_str()];
    argv.extend(inputs.iter().map(String::as_str));
    let out = env.kustos(&argv);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plain.yaml"), "{err}");
    assert!(out.stdout.is_empty());
    // (The inputs' common folder is the environment: outputs mirror enc/
    // and stray/ below dec/.)
    assert!(!env.path("dec/stray/plain.yaml").exists());
    assert!(env.path("dec/enc/t000.yaml").exists());
    // No temporary files left behind.
    for e in std::fs::read_dir(env.path("dec/enc")).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".kustos-tmp"), "{name}");
    }
}

/// `decrypt --output-dir out tenants/*/auth.yaml`, the way every fleet
/// names its files: each output keeps its path below the inputs' common
/// folder, the folder is created private, and two inputs that would land
/// on one output are refused before anything is written.
#[test]
fn output_dir_keeps_every_input() {
    let env = Env::new();
    let mut inputs = Vec::new();
    for t in ["a", "b", "c"] {
        let p = env.write(
            &format!("tenants/{t}/auth.yaml"),
            format!("stringData:\n    password: pw-{t}\n").as_bytes(),
        );
        let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, p.to_str().unwrap()]));
        std::fs::write(&p, enc).unwrap();
        inputs.push(p.display().to_string());
    }
    let out = env.path("out/plain");
    let mut argv = vec!["decrypt", "--output-dir", out.to_str().unwrap()];
    argv.extend(inputs.iter().map(String::as_str));
    ok(&env.kustos(&argv));
    for t in ["a", "b", "c"] {
        let got = std::fs::read_to_string(out.join(t).join("auth.yaml")).unwrap();
        assert!(got.contains(&format!("pw-{t}")), "{got}");
    }
    use std::os::unix::fs::PermissionsExt as _;
    for d in [out.clone(), out.join("a")] {
        let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    // The same input twice would overwrite its own output: refused first.
    let twice = env.path("twice");
    let o = env.kustos(&[
        "decrypt",
        "--output-dir",
        twice.to_str().unwrap(),
        &inputs[0],
        &inputs[0],
    ]);
    assert_eq!(
        o.status.code(),
        Some(8),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("would both be written"));
    assert!(!twice.exists(), "nothing is written");
}

/// `fleet updatekeys --dry-run` says what would change, key by key, like
/// sops updatekeys, and writes nothing.
#[test]
fn updatekeys_dry_run_names_the_key_changes() {
    let env = Env::new();
    let (other, _) = new_age_key(env.dir.path(), "other");
    let root = env.path("fleet");
    std::fs::create_dir_all(root.join("tenants")).unwrap();
    std::fs::write(
        root.join(".sops.yaml"),
        format!("creation_rules:\n  - path_regex: tenants/\n    age: {other}\n"),
    )
    .unwrap();
    let p = env.write("fleet/tenants/s.yaml", b"stringData:\n    password: x\n");
    let enc = ok(&env.kustos(&[
        "--config",
        "/dev/null",
        "encrypt",
        "--age",
        &env.recipient,
        p.to_str().unwrap(),
    ]));
    std::fs::write(&p, &enc).unwrap();
    let o = env.kustos(&["fleet", "updatekeys", root.to_str().unwrap(), "--dry-run"]);
    let out = String::from_utf8_lossy(&ok(&o)).into_owned();
    assert!(
        out.contains(&format!(
            "would update tenants/s.yaml (+{other}, -{})",
            env.recipient
        )),
        "{out}"
    );
    assert_eq!(std::fs::read(&p).unwrap(), enc, "nothing is written");
}
