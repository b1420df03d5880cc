//! Hardening: a 100% tamper sweep, crash-safe in-place writes under
//! SIGKILL, no plaintext written anywhere but where it is allowed (checked
//! with strace), and no secret in Debug output.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;
use kustos::formats::{Format, StoreOptions};
use kustos::keys::KeyRing;
use kustos::ops::{self, DecryptOptions};

const MARKER: &str = "S3CRET-MARKER-7f1c";

fn ring(env: &Env) -> KeyRing {
    let dir = env.path("ring");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&env.key_file, dir.join("k.agekey")).unwrap();
    KeyRing::from_dir(&dir)
}

/// Every single-byte change inside any value, IV, tag, the MAC, the
/// lastmodified AAD or the key stanza is refused.
#[test]
fn tamper_sweep_refuses_every_change() {
    let env = Env::new();
    let f = env.write(
        "s.yaml",
        format!("user: admin\npassword: {MARKER}\nport: 5432\n").as_bytes(),
    );
    let enc = String::from_utf8(ok(&env.kustos(&[
        "encrypt",
        "--age",
        &env.recipient,
        f.to_str().unwrap(),
    ])))
    .unwrap();
    let ring = ring(&env);
    let decrypt = |s: &str| {
        ops::decrypt_bytes(
            s.as_bytes(),
            Format::Yaml,
            Format::Yaml,
            &ring,
            &DecryptOptions::default(),
            &StoreOptions::default(),
        )
    };
    assert!(decrypt(&enc).is_ok());
    // The byte ranges that carry cryptographic meaning.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let re = regex::Regex::new(r"ENC\[AES256_GCM,[^\]]*\]").unwrap();
    for m in re.find_iter(&enc) {
        ranges.push((m.start(), m.end()));
    }
    let armor_start = enc.find("-----BEGIN AGE").unwrap();
    let armor_end = enc.find("-----END AGE ENCRYPTED FILE-----").unwrap() + 32;
    ranges.push((armor_start, armor_end));
    let lm = enc.find("lastmodified: \"").unwrap() + 15;
    ranges.push((lm, lm + 20));
    const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut tried = 0;
    let mut accepted = Vec::new();
    for (a, b) in ranges {
        for i in a..b {
            let c = enc.as_bytes()[i];
            if c == b'\n' || c == b' ' {
                continue; // indentation inside the armor block is not content
            }
            // Replace with a different character of the same kind, so the
            // change survives parsing and reaches the cryptography.
            let repl = if B64.contains(&c) {
                B64[(B64.iter().position(|x| *x == c).unwrap() + 1) % 64]
            } else if c.is_ascii_digit() {
                if c == b'9' {
                    b'0'
                } else {
                    c + 1
                }
            } else {
                b'#'
            };
            let mut t = enc.clone().into_bytes();
            t[i] = repl;
            let t = String::from_utf8_lossy(&t).into_owned();
            tried += 1;
            if decrypt(&t).is_ok() {
                accepted.push(i);
            }
        }
    }
    assert!(tried > 800, "swept {tried} positions");
    assert!(
        accepted.is_empty(),
        "{} of {tried} single-byte changes were accepted, at {:?}",
        accepted.len(),
        &accepted[..accepted.len().min(10)]
    );
}

/// In-place writes killed with SIGKILL at random moments never leave a
/// truncated or mixed file.
#[test]
fn sigkill_during_in_place_writes_never_corrupts() {
    let env = Env::new();
    let mut plain = String::new();
    for i in 0..600 {
        plain.push_str(&format!("key_{i:05}: value-{i}-{MARKER}\n"));
    }
    let f = env.write("big.yaml", plain.as_bytes());
    let fp = f.to_str().unwrap().to_string();
    let ring = ring(&env);
    let mut rng = 0x2545F4914F6CDD1Du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let kill_after = |args: &[&str], micros: u64| {
        let mut child = env
            .cmd(&kustos_bin())
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_micros(micros));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = child.wait();
    };
    // How long a full in-place run takes here, so kills spread over it.
    let probe = env.write("probe.yaml", plain.as_bytes());
    let t = std::time::Instant::now();
    ok(&env.kustos(&[
        "encrypt",
        "-i",
        "--age",
        &env.recipient,
        probe.to_str().unwrap(),
    ]));
    let mut span = (t.elapsed().as_micros() as u64 * 3 / 2).max(2_000);
    let (mut unchanged, mut changed) = (0, 0);
    for round in 0..210 {
        // The machine's speed drifts (other builds share it): every 30
        // rounds, widen or narrow the window if kills all landed on one side.
        if round > 0 && round % 30 == 0 {
            if changed * 5 < round {
                span *= 2;
            } else if unchanged * 5 < round {
                span = (span / 2).max(500);
            }
        }
        let before = std::fs::read(&f).unwrap();
        let encrypted_before = before.starts_with(b"key_00000: ENC[");
        let args: Vec<&str> = match round % 3 {
            _ if !encrypted_before => vec!["encrypt", "-i", "--age", &env.recipient, &fp],
            0 => vec!["decrypt", "-i", &fp],
            1 => vec!["rotate", "-i", &fp],
            _ => vec!["decrypt", "-i", &fp],
        };
        kill_after(&args, next() % span);
        let after = std::fs::read(&f).unwrap();
        if after == before {
            unchanged += 1;
        } else {
            changed += 1;
        }
        // Whatever happened, the file is one complete version.
        if after.starts_with(b"key_00000: ENC[") {
            let out = ops::decrypt_bytes(
                &after,
                Format::Yaml,
                Format::Yaml,
                &ring,
                &DecryptOptions::default(),
                &StoreOptions::default(),
            )
            .unwrap_or_else(|e| {
                panic!("round {round}: a corrupt encrypted file was left behind: {e}")
            });
            assert_eq!(out.as_slice(), plain.as_bytes(), "round {round}");
        } else {
            assert_eq!(
                after,
                plain.as_bytes(),
                "round {round}: a partial plaintext file was left behind"
            );
        }
        // Leftover temporary files (SIGKILL gives no chance to clean up) are
        // private and clearly named; remove them for the next round.
        for e in std::fs::read_dir(env.dir.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".kustos-tmp") {
                use std::os::unix::fs::PermissionsExt;
                assert_eq!(
                    e.metadata().unwrap().permissions().mode() & 0o777,
                    0o600,
                    "{name}"
                );
                std::fs::remove_file(e.path()).unwrap();
            }
        }
    }
    // Kills landed both before and after the commit point.
    assert!(
        unchanged > 10 && changed > 10,
        "kills did not spread over the run ({unchanged} unchanged, {changed} changed)"
    );
}

fn strace() -> Option<PathBuf> {
    require("strace", which("strace"))
}

/// Runs a command under strace and returns every (path, data) write.
fn traced_writes(env: &Env, strace: &Path, cmd: &mut Command) -> Vec<(String, Vec<u8>)> {
    let log = env.path("strace.log");
    let _ = std::fs::remove_file(&log);
    let prog = cmd.get_program().to_os_string();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_os_string()).collect();
    let mut s = Command::new(strace);
    s.args([
        "-f",
        "-qq",
        "-y",
        "-xx",
        "-s",
        "1000000",
        "-e",
        "trace=openat,write,pwrite64,writev",
        "-o",
    ])
    .arg(&log)
    .arg(prog)
    .args(args)
    .current_dir(env.dir.path())
    .env_clear();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.env(k, v);
        }
    }
    let out = s.stdin(Stdio::null()).output().unwrap();
    let _ = std::fs::copy(&log, std::env::temp_dir().join("kustos-last-strace.log"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let re = regex::Regex::new(
        r#"(?:write|pwrite64)\(\d+<((?:\\x[0-9a-f]{2})*)>, "((?:\\x[0-9a-f]{2})*)""#,
    )
    .unwrap();
    let mut writes = Vec::new();
    // With -xx strace prints both the fd's path and the data as \xNN escapes.
    let unhex = |s: &str| -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\\' && b.get(i + 1) == Some(&b'x') && i + 4 <= b.len() {
                out.push(u8::from_str_radix(&s[i + 2..i + 4], 16).unwrap_or(b'?'));
                i += 4;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    };
    for c in re.captures_iter(&text) {
        writes.push((
            String::from_utf8_lossy(&unhex(&c[1])).into_owned(),
            unhex(&c[2]),
        ));
    }
    writes
}

fn allowed(path: &str, allowed_prefixes: &[&str]) -> bool {
    path.starts_with("pipe:")
        || path.starts_with("socket:")
        || path.starts_with("/dev/pts")
        || path.starts_with("/dev/null")
        || allowed_prefixes.iter().any(|p| path.starts_with(p))
}

#[track_caller]
fn no_plaintext_on_disk(writes: &[(String, Vec<u8>)], allowed_prefixes: &[&str], what: &str) {
    let mut leaked = Vec::new();
    for (path, data) in writes {
        if data.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())
            && !allowed(path, allowed_prefixes)
        {
            leaked.push(path.clone());
        }
    }
    assert!(leaked.is_empty(), "{what}: plaintext written to {leaked:?}");
}

#[test]
fn no_plaintext_on_disk_under_strace() {
    let Some(strace) = strace() else { return };
    let env = Env::new();
    let plain = format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n  namespace: apps\nstringData:\n  password: {MARKER}\n");
    // encrypt from stdin: only ciphertext may be written anywhere.
    let out = env.path("s.enc.yaml");
    let writes = {
        let stdin_file = env.write("stdin.yaml", plain.as_bytes());
        let mut c = env.cmd(&kustos_bin());
        c.args([
            "encrypt",
            "--age",
            &env.recipient,
            "--encrypted-regex",
            "^(data|stringData)$",
            "--filename-override",
            "x.yaml",
            "--output",
        ])
        .arg(&out)
        .arg(&stdin_file);
        traced_writes(&env, &strace, &mut c)
    };
    no_plaintext_on_disk(&writes, &[], "encrypt");
    assert!(!std::fs::read_to_string(&out).unwrap().contains(MARKER));
    // decrypt to stdout.
    let mut c = env.cmd(&kustos_bin());
    c.args(["decrypt"]).arg(&out);
    let writes = traced_writes(&env, &strace, &mut c);
    assert!(
        writes.iter().any(|(p, d)| p.starts_with("pipe:")
            && d.windows(MARKER.len()).any(|w| w == MARKER.as_bytes())),
        "the plaintext goes to stdout"
    );
    no_plaintext_on_disk(&writes, &[], "decrypt");
    // edit: the editor's private temp file is the only allowed place.
    let editor = env.write(
        "ed.sh",
        b"#!/bin/sh\nsed -i 's/namespace: apps/namespace: apps2/' \"$1\"\n",
    );
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let tmp = std::env::temp_dir().display().to_string();
    let mut c = env.cmd(&kustos_bin());
    c.env("SOPS_EDITOR", &editor).args(["edit"]).arg(&out);
    let writes = traced_writes(&env, &strace, &mut c);
    // (on a memory filesystem when there is one: no XDG_RUNTIME_DIR here)
    no_plaintext_on_disk(
        &writes,
        &["/dev/shm/.kustos-edit-", &format!("{tmp}/.kustos-edit-")],
        "edit",
    );
    // The kustomize plugin: plaintext only on stdout.
    let dir = env.path("plug");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(&out, dir.join("s.enc.yaml")).unwrap();
    let cfg = env.write("plug/gen.yaml", b"apiVersion: kustos.dev/v1\nkind: SopsGenerator\nmetadata:\n  name: g\nfiles:\n  - ./s.enc.yaml\n");
    let mut c = env.cmd(&kustos_bin());
    c.current_dir(&dir).args(["plugin", "exec"]).arg(&cfg);
    let writes = traced_writes(&env, &strace, &mut c);
    no_plaintext_on_disk(&writes, &[], "plugin");
    // render: plaintext only inside its private workspace (tmpfs).
    if let Some(_k) = which("kubectl") {
        std::fs::write(
            dir.join("kustomization.yaml"),
            "resources:\n  - s.enc.yaml\n",
        )
        .unwrap();
        std::fs::write(dir.join(".sops.yaml"), "creation_rules: []\n").unwrap();
        let mut c = env.cmd(&kustos_bin());
        c.args(["render"]).arg(&dir);
        let writes = traced_writes(&env, &strace, &mut c);
        no_plaintext_on_disk(
            &writes,
            // (never /dev/shm, which every container of a pod shares)
            &[&format!("{tmp}/kustos-render-")],
            "render",
        );
    }
}

#[test]
fn debug_output_never_shows_secrets() {
    let docs = kustos::formats::load_plain(
        Format::Yaml,
        format!("a: {MARKER}\nb: [ {MARKER} ]\n# {MARKER}\n").as_bytes(),
    )
    .unwrap();
    let dbg = format!("{docs:?}");
    assert!(!dbg.contains(MARKER), "{dbg}");
    let key = kustos::sops::DataKey::generate();
    assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
    let c = kustos::sops::Cipher::new(&key);
    assert!(!format!("{c:?}").contains(&format!("{:?}", key.as_bytes())));
}
