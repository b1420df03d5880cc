//! Files in the layouts sops 3.12 and 3.13 write (testdata/newer-sops, made
//! from real sops 3.11 output by scripts/make-newer-sops-fixtures.py) decrypt
//! with kustos to what the real sops 3.11 prints for the 3.11 original; and
//! kustos rewrites them in the layout sops 3.11 reads.

use std::path::{Path, PathBuf};

use crate::common::*;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/newer-sops")
}

fn env() -> Env {
    let env = Env::new();
    std::fs::copy(dir().join("key.TEST-ONLY.agekey"), &env.key_file).unwrap();
    env
}

/// (sops 3.11 original, extra `sops decrypt` arguments, newer layouts of it).
const CASES: &[(&str, &[&str], &[&str])] = &[
    (
        "app.sops-3.11.enc.ini",
        &[],
        &["app.sops-3.13.1.enc.ini", "app.sops-3.13.2.enc.ini"],
    ),
    (
        "comments.sops-3.11.enc.yaml",
        &[],
        &[
            "comments.sops-3.13.1.enc.yaml",
            "comments.sops-3.12.2-hckms.enc.yaml",
        ],
    ),
    (
        "numbers.sops-3.11.enc.yaml",
        &["--output-type", "json"],
        &["numbers.sops-3.13.2.enc.json"],
    ),
];

#[test]
fn newer_layouts_decrypt_like_the_311_original() {
    let Some(sops) = sops() else { return };
    let env = env();
    for (original, args, newer) in CASES {
        let path = dir().join(original);
        let mut a = vec!["decrypt"];
        a.extend_from_slice(args);
        a.push(path.to_str().unwrap());
        let want = ok(&env.sops(&sops, &a));
        assert_eq!(ok(&env.kustos(&a)), want, "kustos on {original}");
        for file in *newer {
            let p = dir().join(file);
            let got = ok(&env.kustos(&["decrypt", p.to_str().unwrap()]));
            assert_eq!(
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want),
                "{file} (from {original})"
            );
        }
    }
}

#[test]
fn the_fixtures_really_use_the_newer_layouts() {
    let read = |f: &str| std::fs::read_to_string(dir().join(f)).unwrap();
    let ini = read("app.sops-3.13.1.enc.ini");
    assert!(ini.contains("age__list_0__map_enc       = \"\"\"-----BEGIN AGE ENCRYPTED FILE-----\n"));
    assert!(!read("app.sops-3.13.2.enc.ini").contains("\"\"\""));
    let yaml = read("comments.sops-3.13.1.enc.yaml");
    assert!(
        regex::Regex::new(r"(?m)^user: ENC\[[^\]]*\] #ENC\[")
            .unwrap()
            .is_match(&yaml),
        "{yaml}"
    );
    assert!(yaml.contains("        - enc: |\n"));
    assert!(read("comments.sops-3.12.2-hckms.enc.yaml").contains("    hckms:\n"));
    assert!(
        read("numbers.sops-3.13.2.enc.json").contains("\"id_unencrypted\": 1234567890123456789,")
    );
}

/// sops 3.11 reads every JSON number as a float64, so a plain integer that
/// float64 cannot hold breaks its MAC check; 3.13.2 reads it as an int64.
/// kustos reads a file the way the version named in it does.
#[test]
fn json_integers_are_read_as_the_writing_version_reads_them() {
    let Some(sops) = sops() else { return };
    let env = env();
    let old = dir().join("numbers.sops-3.11-from-yaml.enc.json");
    let old = old.to_str().unwrap();
    let s = env.sops(&sops, &["decrypt", old]);
    let k = env.kustos(&["decrypt", old]);
    assert_eq!(s.status.code(), Some(51));
    assert_eq!(k.status.code(), Some(51), "like sops 3.11");
    // Rewritten by kustos, the 3.13.2 file keeps its version and its
    // integers, so kustos still reads it.
    let copy = env.path("n.json");
    std::fs::copy(dir().join("numbers.sops-3.13.2.enc.json"), &copy).unwrap();
    let copy = copy.to_str().unwrap();
    ok(&env.kustos(&["set", copy, "[\"small\"]", "43"]));
    let text = String::from_utf8(ok(&env.kustos(&["decrypt", copy]))).unwrap();
    assert!(
        text.contains("\"small\": 43,")
            && text.contains("\"id_unencrypted\": 1234567890123456789,")
    );
}

/// A 3.13.1 INI file rewritten by kustos is in the layout sops 3.11 writes
/// (escaped newlines), and the real sops 3.11 decrypts it.
#[test]
fn rewritten_ini_is_311_layout() {
    let Some(sops) = sops() else { return };
    let env = env();
    let copy = env.path("a.ini");
    std::fs::copy(dir().join("app.sops-3.13.1.enc.ini"), &copy).unwrap();
    let copy = copy.to_str().unwrap();
    ok(&env.kustos(&["set", copy, "[\"app\"][\"token\"]", "\"rotated\""]));
    let text = std::fs::read_to_string(copy).unwrap();
    assert!(!text.contains("\"\"\""), "{text}");
    let plain = String::from_utf8(ok(&env.sops(&sops, &["decrypt", copy]))).unwrap();
    assert!(plain.contains("token    = rotated\n"), "{plain}");
}

/// `sops --indent N decrypt` is honoured since sops 3.13 (3.11 ignored the
/// global flag before a subcommand, but honoured it in its legacy form,
/// which gives the expected bytes).
#[test]
fn global_indent_applies_to_subcommands() {
    let Some(sops) = sops() else { return };
    let env = env();
    let f = dir().join("comments.sops-3.11.enc.yaml");
    let f = f.to_str().unwrap();
    let want = ok(&env.sops(&sops, &["--indent", "6", "-d", f]));
    assert!(String::from_utf8_lossy(&want).contains("\n      key: value\n"));
    assert_eq!(ok(&env.kustos(&["--indent", "6", "decrypt", f])), want);
    assert_eq!(ok(&env.kustos(&["--indent", "6", "-d", f])), want);
    // Subcommands that rewrite the file take it too.
    let copy = env.path("c.yaml");
    std::fs::copy(f, &copy).unwrap();
    let copy = copy.to_str().unwrap();
    ok(&env.kustos(&["--indent", "2", "rotate", "-i", copy]));
    let text = std::fs::read_to_string(copy).unwrap();
    assert!(text.contains("\n  key: ENC["), "{text}");
    let plain = ok(&env.sops(&sops, &["--indent", "6", "-d", copy]));
    assert_eq!(plain, want);
}

/// sops 3.13 rejects an `exec-file --filename` that is not a local path.
#[test]
fn exec_file_name_stays_in_its_folder() {
    let env = env();
    let f = dir().join("comments.sops-3.11.enc.yaml");
    for name in ["..", ".", "../x", "/tmp/x"] {
        let o = env.kustos(&[
            "exec-file",
            "--no-fifo",
            "--filename",
            name,
            f.to_str().unwrap(),
            "cat {}",
        ]);
        assert!(!o.status.success(), "{name}");
        assert!(o.stdout.is_empty(), "{name}");
    }
}

/// sops 3.13 refuses to write data holding its metadata key (3.11 wrote a
/// second `sops` entry that no version reads back); an edit that adds one
/// goes back to the editor instead of being lost.
#[test]
fn the_metadata_key_is_refused_in_data() {
    let env = env();
    let copy = env.path("s.yaml");
    std::fs::copy(dir().join("comments.sops-3.11.enc.yaml"), &copy).unwrap();
    let before = std::fs::read(&copy).unwrap();
    let p = copy.to_str().unwrap();
    let o = env.kustos(&["set", p, "[\"sops\"]", "\"x\""]);
    assert_eq!(o.status.code(), Some(4), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("reserved key"));
    let o = env
        .cmd(&kustos_bin())
        .env("EDITOR", "sed -i $a\\sops:\\ x")
        .args(["edit", p])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("reserved key"),
        "{o:?}"
    );
    assert_eq!(std::fs::read(&copy).unwrap(), before);
}

/// `edit --show-master-keys` on a dotenv file takes the `sops_` lines back
/// as metadata, not as data.
#[test]
fn dotenv_edit_with_master_keys() {
    let Some(sops) = sops() else { return };
    let env = env();
    let plain = env.write("p.env", b"A=1\nB=2\n");
    let recipient = "age19k3hcxryvq76lp4vmvcmsvazp26spht6pjjayalt05eju2jcs4dqvm2820";
    let enc = ok(&env.sops(
        &sops,
        &["encrypt", "--age", recipient, plain.to_str().unwrap()],
    ));
    let f = env.write("e.env", &enc);
    let o = env
        .cmd(&kustos_bin())
        .env("EDITOR", "sed -i s/^A=1/A=3/")
        .args(["edit", "--show-master-keys", f.to_str().unwrap()])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    ok(&o);
    let text = std::fs::read_to_string(&f).unwrap();
    assert_eq!(text.matches("sops_mac=").count(), 1, "{text}");
    assert_eq!(
        ok(&env.sops(&sops, &["decrypt", f.to_str().unwrap()])),
        b"A=3\nB=2\n"
    );
}

/// Editing a 3.13.2 JSON file keeps integers sops 3.13.2 keeps.
#[test]
fn editing_313_json_keeps_every_digit() {
    let env = env();
    let copy = env.path("n.json");
    std::fs::copy(dir().join("numbers.sops-3.13.2.enc.json"), &copy).unwrap();
    let p = copy.to_str().unwrap();
    let o = env
        .cmd(&kustos_bin())
        .env("EDITOR", "sed -i s/42/44/")
        .args(["edit", p])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    ok(&o);
    let text = String::from_utf8(ok(&env.kustos(&["decrypt", p]))).unwrap();
    assert!(
        text.contains("\"small\": 44,") && text.contains("\"id\": 1234567890123456789,"),
        "{text}"
    );
}
