//! Interop with the real sops 3.11 and age: files go both ways and must
//! decrypt to the same data, with the same layout, for every store and
//! selection rule.

use crate::common::*;

#[test]
fn sops_files_decrypt_with_kustos_byte_identical() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    for f in corpus() {
        let name = f.file_name().unwrap().to_str().unwrap();
        let t = format_of(name);
        let enc = ok(&env.sops(
            &sops,
            &["encrypt", "--age", &env.recipient, f.to_str().unwrap()],
        ));
        let enc_path = env.write(&format!("sops-{name}"), &enc);
        let p = enc_path.to_str().unwrap();
        let by_sops = ok(&env.sops(
            &sops,
            &["decrypt", "--input-type", t, "--output-type", t, p],
        ));
        let by_kustos = ok(&env.kustos(&["decrypt", "--input-type", t, "--output-type", t, p]));
        assert_eq!(
            String::from_utf8_lossy(&by_kustos),
            String::from_utf8_lossy(&by_sops),
            "{name}: kustos and sops disagree on a sops-made file"
        );
    }
}

#[test]
fn kustos_files_decrypt_with_sops() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    for f in corpus() {
        let name = f.file_name().unwrap().to_str().unwrap();
        let t = format_of(name);
        let fp = f.to_str().unwrap();
        // What sops itself makes of the plaintext (comments moved, types normalised).
        let s_enc = ok(&env.sops(&sops, &["encrypt", "--age", &env.recipient, fp]));
        let s_path = env.write(&format!("s-{name}"), &s_enc);
        let expected = ok(&env.sops(
            &sops,
            &[
                "decrypt",
                "--input-type",
                t,
                "--output-type",
                t,
                s_path.to_str().unwrap(),
            ],
        ));

        let k_enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, fp]));
        let k_path = env.write(&format!("k-{name}"), &k_enc);
        let kp = k_path.to_str().unwrap();
        let by_sops = ok(&env.sops(
            &sops,
            &["decrypt", "--input-type", t, "--output-type", t, kp],
        ));
        assert_eq!(
            String::from_utf8_lossy(&by_sops),
            String::from_utf8_lossy(&expected),
            "{name}"
        );
        let by_kustos = ok(&env.kustos(&["decrypt", "--input-type", t, "--output-type", t, kp]));
        assert_eq!(by_kustos, expected, "{name}");
        // Same layout as sops' own encryption: same values encrypted, same places.
        assert_eq!(
            normalize_encrypted(&String::from_utf8_lossy(&k_enc)),
            normalize_encrypted(&String::from_utf8_lossy(&s_enc)),
            "{name}: encrypted layout differs from sops"
        );
    }
}

/// Each selection option, from the CLI and from .sops.yaml, both ways.
#[test]
fn selection_rules_match_sops() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let secret = corpus_dir().join("kube-secret.yaml");
    let comments = corpus_dir().join("comments.yaml");
    let nested = corpus_dir().join("nested.yaml");
    let cli_cases: &[(&[&str], &std::path::Path)] = &[
        (&["--encrypted-regex", "^(data|stringData)$"], &secret),
        (
            &["--unencrypted-regex", "^(kind|apiVersion|metadata)$"],
            &secret,
        ),
        (&["--encrypted-suffix", "_encrypted"], &nested),
        (&["--unencrypted-suffix", "_unencrypted"], &nested),
        (&[], &nested),
    ];
    for (flags, file) in cli_cases {
        let mut args = vec!["encrypt", "--age", &env.recipient];
        args.extend_from_slice(flags);
        args.push(file.to_str().unwrap());
        let s_enc = ok(&env.sops(&sops, &args));
        let k_enc = ok(&env.kustos(&args));
        assert_eq!(
            normalize_encrypted(&String::from_utf8_lossy(&k_enc)),
            normalize_encrypted(&String::from_utf8_lossy(&s_enc)),
            "flags {flags:?}"
        );
        let kp = env.write("k.yaml", &k_enc);
        let sp = env.write("s.yaml", &s_enc);
        assert_eq!(
            ok(&env.sops(&sops, &["decrypt", kp.to_str().unwrap()])),
            ok(&env.kustos(&["decrypt", sp.to_str().unwrap()])),
            "flags {flags:?}"
        );
    }
    // Options sops 3.11 only takes from .sops.yaml.
    let cfg_cases = [
        "mac_only_encrypted: true\n    encrypted_regex: ^secret$",
        "encrypted_comment_regex: sops:enc",
        "unencrypted_comment_regex: plain marker",
        "unencrypted_regex: ^public$",
    ];
    for rule in cfg_cases {
        env.write(
            ".sops.yaml",
            format!("creation_rules:\n  - age: {}\n    {rule}\n", env.recipient).as_bytes(),
        );
        let f = env.write("comments.yaml", &std::fs::read(&comments).unwrap());
        let fp = f.to_str().unwrap();
        let s_enc = ok(&env.sops(&sops, &["encrypt", fp]));
        let k_enc = ok(&env.kustos(&["encrypt", fp]));
        assert_eq!(
            normalize_encrypted(&String::from_utf8_lossy(&k_enc)),
            normalize_encrypted(&String::from_utf8_lossy(&s_enc)),
            "rule {rule}"
        );
        let kp = env.write("k.yaml", &k_enc);
        let sp = env.write("s.yaml", &s_enc);
        assert_eq!(
            ok(&env.sops(&sops, &["decrypt", kp.to_str().unwrap()])),
            ok(&env.kustos(&["decrypt", sp.to_str().unwrap()])),
            "rule {rule}"
        );
    }
    std::fs::remove_file(env.path(".sops.yaml")).unwrap();
}

#[test]
fn stdin_and_output_types() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let plain = std::fs::read(corpus_dir().join("kube-secret.yaml")).unwrap();
    let enc = ok(&env.kustos_stdin(
        &[
            "encrypt",
            "--age",
            &env.recipient,
            "--filename-override",
            "x.yaml",
            "--output-type",
            "json",
        ],
        &plain,
    ));
    assert!(enc.starts_with(b"{\n\t\"apiVersion\""));
    let p = env.write("x.json", &enc);
    let from_sops = ok(&env.sops(
        &sops,
        &["decrypt", "--output-type", "yaml", p.to_str().unwrap()],
    ));
    let from_kustos = ok(&env.kustos_stdin(
        &["decrypt", "--input-type", "json", "--output-type", "yaml"],
        &enc,
    ));
    assert_eq!(from_sops, from_kustos);
    // Without --filename-override, stdin encryption is a usage conflict (exit 8).
    let o = env.kustos_stdin(&["encrypt", "--age", &env.recipient], &plain);
    assert_eq!(o.status.code(), Some(8));
    assert!(o.stdout.is_empty());
}

#[test]
fn extract_like_sops() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let f = corpus_dir().join("nested.yaml");
    let enc = ok(&env.sops(
        &sops,
        &["encrypt", "--age", &env.recipient, f.to_str().unwrap()],
    ));
    let p = env.write("n.yaml", &enc);
    let p = p.to_str().unwrap();
    for path in [
        r#"["top"]["first"]"#,
        r#"["top"]["second"]"#,
        r#"["top"]["second"]["deeper"][1]"#,
        r#"["plain_unencrypted"]"#,
        r#"["top"]["list"]"#,
    ] {
        let a = ok(&env.sops(&sops, &["decrypt", "--extract", path, p]));
        let b = ok(&env.kustos(&["decrypt", "--extract", path, p]));
        assert_eq!(
            String::from_utf8_lossy(&b),
            String::from_utf8_lossy(&a),
            "{path}"
        );
    }
}

/// The data key stanza kustos writes is a standard armored age file.
#[test]
fn age_cli_opens_kustos_stanza() {
    let Some(age) = age_cli() else { return };
    let env = Env::new();
    let enc = ok(&env.kustos(&[
        "encrypt",
        "--age",
        &env.recipient,
        corpus_dir().join("kube-secret.yaml").to_str().unwrap(),
    ]));
    let text = String::from_utf8(enc).unwrap();
    let start = text.find("-----BEGIN AGE ENCRYPTED FILE-----").unwrap();
    let end = text.find("-----END AGE ENCRYPTED FILE-----").unwrap() + 32;
    let armor: String = text[start..end]
        .lines()
        .map(|l| l.trim())
        .collect::<Vec<_>>()
        .join("\n");
    let p = env.write("stanza.age", format!("{armor}\n").as_bytes());
    let out = ok(&env
        .cmd(&age)
        .args([
            "-d",
            "-i",
            env.key_file.to_str().unwrap(),
            p.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    assert_eq!(out.len(), 32, "the stanza holds the 32-byte data key");
}

/// The deterministic vector from the research notes (fixed key and IVs).
#[test]
fn known_answer_vector() {
    let env = Env::new();
    let vec_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/vectors");
    let out = env
        .cmd(&kustos_bin())
        .env(
            "SOPS_AGE_KEY_FILE",
            vec_dir.join("handmade.TEST-ONLY.agekey"),
        )
        .args([
            "decrypt",
            vec_dir.join("handmade.enc.yaml").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8(ok(&out)).unwrap(),
        "# hi\na: hello\nf: 1.5\nb: true\nl:\n    - x\n    - 7\nk_unencrypted: keep\n"
    );
}

/// A large file (enough values for kustos' parallel decryption), with
/// nested maps, lists, typed values and a `_unencrypted` key, made by sops:
/// kustos decrypts it to what sops does, in every store that holds it, and
/// refuses it once a value is swapped.
#[test]
fn large_sops_files_decrypt_in_parallel_like_sops() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let mut yaml = String::from("apiVersion: v1\nkind: Secret\nstringData:\n");
    for i in 0..1500 {
        yaml.push_str(&format!(
            "    key{i}: 'value-{i} with spaces: and colons'\n"
        ));
    }
    yaml.push_str(
        "nested:\n    list:\n        - 1\n        - 2.5\n        - true\n        - text\n",
    );
    yaml.push_str("note_unencrypted: stays plaintext\n");
    let src = env.write("big.yaml", yaml.as_bytes());
    for t in ["yaml", "json"] {
        let enc = ok(&env.sops(
            &sops,
            &[
                "encrypt",
                "--age",
                &env.recipient,
                "--output-type",
                t,
                src.to_str().unwrap(),
            ],
        ));
        let p = env.write(&format!("big.enc.{t}"), &enc);
        let p = p.to_str().unwrap();
        let by_sops = ok(&env.sops(&sops, &["decrypt", p]));
        let by_kustos = ok(&env.kustos(&["decrypt", p]));
        assert_eq!(
            String::from_utf8_lossy(&by_kustos),
            String::from_utf8_lossy(&by_sops),
            "{t}"
        );
    }
    // Swap two ciphertexts: refused, naming the path, nothing on stdout.
    let enc = std::fs::read_to_string(env.path("big.enc.yaml")).unwrap();
    let line = |k: &str| {
        enc.lines()
            .find(|l| l.trim_start().starts_with(&format!("{k}: ")))
            .unwrap()
            .to_string()
    };
    let (a, b) = (line("key10"), line("key11"));
    let va = a.split_once(": ").unwrap().1;
    let vb = b.split_once(": ").unwrap().1;
    let swapped = enc
        .replace(&a, &format!("    key10: {vb}"))
        .replace(&b, &format!("    key11: {va}"));
    let p = env.write("swapped.enc.yaml", swapped.as_bytes());
    let out = env.kustos(&["decrypt", p.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("stringData:key10:"), "{err}");
}

/// yaml.v3 always writes its indent step as a block scalar's indentation
/// indicator, so a value starting with a space or line break inside a
/// sequence comes out of `sops decrypt` in a form sops cannot read back.
/// kustos writes the true offset: same bytes where sops's output is
/// readable, and YAML that sops reads back everywhere.
#[test]
fn yaml_block_scalars_with_leading_breaks_read_back_in_sops() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let data = r#"{"top": "\nfoo\n", "a": {"b": ["\n- # :\n-\t", " x\ny", ["\nx\ny"], {"c": "\nx\ny", "d": 1}], "e": " lead\nx"}}"#;
    let plain = env.write("deep.json", data.as_bytes());
    let enc = ok(&env.sops(
        &sops,
        &["encrypt", "--age", &env.recipient, plain.to_str().unwrap()],
    ));
    let enc_path = env.write("deep.enc.json", &enc);
    let ep = enc_path.to_str().unwrap();
    let as_json = ok(&env.sops(&sops, &["decrypt", ep]));
    for indent in ["2", "3", "4", "9"] {
        let cfg = format!("stores:\n  yaml:\n    indent: {indent}\n");
        env.write(".sops.yaml", cfg.as_bytes());
        let by_sops = ok(&env.sops(&sops, &["decrypt", "--output-type", "yaml", ep]));
        let by_kustos = ok(&env.kustos(&["decrypt", "--output-type", "yaml", ep]));
        // Mapping values (`top`, `e`) are written exactly like sops.
        let by_kustos_text = String::from_utf8(by_kustos.clone()).unwrap();
        let by_sops_text = String::from_utf8(by_sops).unwrap();
        assert!(by_sops_text.starts_with(&by_kustos_text[..by_kustos_text.find("a:").unwrap()]));
        // sops reads kustos's YAML back to the same data.
        let y = env.write(&format!("deep-{indent}.yaml"), &by_kustos);
        let re = ok(&env.sops(
            &sops,
            &["encrypt", "--age", &env.recipient, y.to_str().unwrap()],
        ));
        let re_path = env.write(&format!("deep-{indent}.enc.yaml"), &re);
        let back = ok(&env.sops(
            &sops,
            &[
                "decrypt",
                "--output-type",
                "json",
                re_path.to_str().unwrap(),
            ],
        ));
        assert_eq!(
            String::from_utf8_lossy(&back),
            String::from_utf8_lossy(&as_json),
            "indent {indent}: sops read kustos's YAML to different data:\n{by_kustos_text}"
        );
    }
}
