//! Exit codes, side by side with the real sops 3.11: the same command on
//! the same files must end with the same code, for every error case of the
//! sops CLI. The few deliberate differences are listed in
//! [`DELIBERATE`] and in the README ("Where kustos differs from sops").

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// Cases where kustos answers differently on purpose: (name, kustos code,
/// why). Each is still run, and kustos must give exactly this code.
const DELIBERATE: &[(&str, i32, &str)] = &[
    (
        "unknown --input-type",
        1,
        "sops silently falls back to the file extension; kustos names the valid types",
    ),
    (
        "exec-file --filename outside",
        1,
        "sops 3.12 and later refuse a --filename that is not a plain name; kustos does too",
    ),
    (
        "--verbose after the command",
        0,
        "sops only takes --verbose before the command; kustos takes it anywhere",
    ),
];

struct Setup {
    env: Env,
    recipient: String,
}

fn setup(sops: &Path) -> Setup {
    let env = Env::new();
    let recipient = env.recipient.clone();
    env.write("p.yaml", b"a: 1\nb: hello\n");
    let enc = ok(&env.sops(sops, &["encrypt", "--age", &recipient, "p.yaml"]));
    env.write("e.yaml", &enc);
    env.write("bad.yaml", b"a: [\n");
    let text = String::from_utf8(enc).unwrap();
    let badmac = text.replacen("mac: ENC[AES256_GCM,data:", "mac: ENC[AES256_GCM,data:!", 1);
    env.write("badmac.yaml", badmac.as_bytes());
    let tampered = text.replacen("b: ENC[AES256_GCM,data:", "b: ENC[AES256_GCM,data:AA", 1);
    env.write("tampered.yaml", tampered.as_bytes());
    Setup { env, recipient }
}

/// One command: name, `.sops.yaml` content (or none), extra environment,
/// arguments.
struct Case {
    name: &'static str,
    config: Option<String>,
    vars: Vec<(&'static str, String)>,
    args: Vec<String>,
}

fn cases(r: &str) -> Vec<Case> {
    let no_rule = format!("creation_rules:\n  - path_regex: nomatch\\.yaml$\n    age: {r}\n");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let none = Vec::new;
    type Row = (
        &'static str,
        Option<String>,
        Vec<(&'static str, String)>,
        Vec<String>,
    );
    let list: Vec<Row> = vec![
        (
            "decrypt missing",
            None,
            none(),
            s(&["decrypt", "missing.yaml"]),
        ),
        (
            "encrypt missing",
            None,
            none(),
            s(&["encrypt", "--age", r, "missing.yaml"]),
        ),
        (
            "set missing",
            None,
            none(),
            s(&["set", "missing.yaml", "[\"a\"]", "1"]),
        ),
        (
            "unset missing",
            None,
            none(),
            s(&["unset", "missing.yaml", "[\"a\"]"]),
        ),
        (
            "rotate missing",
            None,
            none(),
            s(&["rotate", "missing.yaml"]),
        ),
        (
            "exec-env missing",
            None,
            none(),
            s(&["exec-env", "missing.yaml", "true"]),
        ),
        (
            "exec-file missing",
            None,
            none(),
            s(&["exec-file", "missing.yaml", "true"]),
        ),
        (
            "updatekeys missing",
            Some(no_rule.clone()),
            none(),
            s(&["updatekeys", "-y", "missing.yaml"]),
        ),
        (
            "filestatus missing",
            None,
            none(),
            s(&["filestatus", "missing.yaml"]),
        ),
        (
            "encrypt without a matching rule",
            Some(no_rule.clone()),
            none(),
            s(&["encrypt", "p.yaml"]),
        ),
        (
            "encrypt --age without a matching rule",
            Some(no_rule.clone()),
            none(),
            s(&["encrypt", "--age", r, "p.yaml"]),
        ),
        (
            "edit a new file without a rule",
            Some(no_rule.clone()),
            none(),
            s(&["edit", "new.yaml"]),
        ),
        (
            "malformed .sops.yaml on encrypt",
            Some("creation_rules: [\n".into()),
            none(),
            s(&["encrypt", "p.yaml"]),
        ),
        (
            "malformed .sops.yaml on decrypt",
            Some("creation_rules: [\n".into()),
            none(),
            s(&["decrypt", "e.yaml"]),
        ),
        (
            "wrong type in .sops.yaml",
            Some("creation_rules:\n  - age: 123\n".into()),
            none(),
            s(&["encrypt", "p.yaml"]),
        ),
        (
            "--config missing",
            None,
            none(),
            s(&["--config", "nope.yaml", "encrypt", "--age", r, "p.yaml"]),
        ),
        (
            "updatekeys without a config",
            None,
            none(),
            s(&["updatekeys", "-y", "e.yaml"]),
        ),
        (
            "set value not JSON",
            None,
            none(),
            s(&["set", "e.yaml", "[\"a\"]", "notjson"]),
        ),
        (
            "set malformed path",
            None,
            none(),
            s(&["set", "e.yaml", "bad", "1"]),
        ),
        (
            "set --value-file missing",
            None,
            none(),
            s(&["set", "--value-file", "e.yaml", "[\"a\"]", "nofile"]),
        ),
        (
            "unset absent key",
            None,
            none(),
            s(&["unset", "e.yaml", "[\"nope\"]"]),
        ),
        (
            "set on a plaintext file",
            None,
            none(),
            s(&["set", "p.yaml", "[\"a\"]", "2"]),
        ),
        (
            "decrypt malformed YAML",
            None,
            none(),
            s(&["decrypt", "bad.yaml"]),
        ),
        (
            "decrypt not a SOPS file",
            None,
            none(),
            s(&["decrypt", "p.yaml"]),
        ),
        (
            "decrypt as JSON",
            None,
            none(),
            s(&["decrypt", "--input-type", "json", "p.yaml"]),
        ),
        (
            "decrypt as dotenv",
            None,
            none(),
            s(&["decrypt", "--input-type", "dotenv", "p.yaml"]),
        ),
        ("decrypt empty stdin", None, none(), s(&["decrypt"])),
        (
            "rotate malformed YAML",
            None,
            none(),
            s(&["rotate", "bad.yaml"]),
        ),
        (
            "filestatus malformed YAML",
            None,
            none(),
            s(&["filestatus", "bad.yaml"]),
        ),
        (
            "filestatus plaintext",
            None,
            none(),
            s(&["filestatus", "p.yaml"]),
        ),
        (
            "encrypt malformed YAML",
            None,
            none(),
            s(&["encrypt", "--age", r, "bad.yaml"]),
        ),
        (
            "encrypt already encrypted",
            None,
            none(),
            s(&["encrypt", "--age", r, "e.yaml"]),
        ),
        (
            "encrypt without keys",
            None,
            none(),
            s(&["encrypt", "p.yaml"]),
        ),
        (
            "encrypt bad age recipient",
            None,
            none(),
            s(&["encrypt", "--age", "notakey", "p.yaml"]),
        ),
        (
            "encrypt conflicting regexes",
            None,
            none(),
            s(&[
                "encrypt",
                "--age",
                r,
                "--encrypted-regex",
                "a",
                "--unencrypted-regex",
                "b",
                "p.yaml",
            ]),
        ),
        (
            "encrypt stdin without override",
            None,
            none(),
            s(&["encrypt", "--age", r]),
        ),
        (
            "decrypt --in-place and --output",
            None,
            none(),
            s(&["decrypt", "-i", "--output", "x", "e.yaml"]),
        ),
        (
            "decrypt corrupted MAC",
            None,
            none(),
            s(&["decrypt", "badmac.yaml"]),
        ),
        (
            "exec-env corrupted MAC",
            None,
            none(),
            s(&["exec-env", "badmac.yaml", "true"]),
        ),
        (
            "decrypt tampered value",
            None,
            none(),
            s(&["decrypt", "tampered.yaml"]),
        ),
        (
            "decrypt --ignore-mac corrupted MAC",
            None,
            none(),
            s(&["decrypt", "--ignore-mac", "badmac.yaml"]),
        ),
        (
            "decrypt without a key",
            None,
            vec![("SOPS_AGE_KEY_FILE", "/dev/null".into())],
            s(&["decrypt", "e.yaml"]),
        ),
        (
            "decrypt unknown flag",
            None,
            none(),
            s(&["decrypt", "--nope", "e.yaml"]),
        ),
        (
            "decrypt --extract absent",
            None,
            none(),
            s(&["decrypt", "--extract", "[\"zz\"]", "e.yaml"]),
        ),
        (
            "decrypt --extract malformed",
            None,
            none(),
            s(&["decrypt", "--extract", "zz", "e.yaml"]),
        ),
        (
            "duplicate --decryption-order",
            None,
            none(),
            s(&["decrypt", "--decryption-order", "age,age", "e.yaml"]),
        ),
        (
            "decrypt --output into a missing folder",
            None,
            none(),
            s(&["decrypt", "--output", "/nonexistent/dir/x", "e.yaml"]),
        ),
        (
            "rotate --add-age bad",
            None,
            none(),
            s(&["rotate", "--add-age", "notakey", "e.yaml"]),
        ),
        (
            "edit unchanged",
            None,
            vec![("EDITOR", "true".into())],
            s(&["edit", "e.yaml"]),
        ),
        (
            "--ignore-mac=false",
            None,
            none(),
            s(&["decrypt", "--ignore-mac=false", "e.yaml"]),
        ),
        (
            "--in-place=false",
            None,
            none(),
            s(&["decrypt", "--in-place=false", "e.yaml"]),
        ),
        (
            "--enable-local-keyservice",
            None,
            none(),
            s(&["decrypt", "--enable-local-keyservice", "e.yaml"]),
        ),
        (
            "--enable-local-keyservice=false",
            None,
            none(),
            s(&["decrypt", "--enable-local-keyservice=false", "e.yaml"]),
        ),
        (
            "unknown --input-type",
            None,
            none(),
            s(&["decrypt", "--input-type", "toml", "e.yaml"]),
        ),
        (
            "exec-file --filename outside",
            None,
            none(),
            s(&["exec-file", "--filename", "../x", "e.yaml", "true"]),
        ),
        (
            "--verbose after the command",
            None,
            none(),
            s(&["decrypt", "--verbose", "e.yaml"]),
        ),
    ];
    list.into_iter()
        .map(|(name, config, vars, args)| Case {
            name,
            config,
            vars,
            args,
        })
        .collect()
}

fn code(env: &Env, program: &Path, vars: &[(&str, String)], args: &[String]) -> i32 {
    let mut c: Command = env.cmd(program);
    for (k, v) in vars {
        c.env(k, v);
    }
    let o = run_with_stdin(c.args(args), b"");
    o.status.code().unwrap_or(-1)
}

#[test]
fn exit_codes_match_sops() {
    let Some(sops) = sops() else { return };
    let Setup { env, recipient } = setup(&sops);
    let mut diffs = Vec::new();
    for Case {
        name,
        config,
        vars,
        args,
    } in cases(&recipient)
    {
        let cfg = env.path(".sops.yaml");
        match &config {
            Some(c) => std::fs::write(&cfg, c).unwrap(),
            None => {
                let _ = std::fs::remove_file(&cfg);
            }
        }
        // Commands that write must not change the shared inputs.
        for f in ["e.yaml", "p.yaml"] {
            let _ = std::fs::copy(env.path(f), env.path(&format!("{f}.orig")));
        }
        let theirs = code(&env, &sops, &vars, &args);
        let ours = code(&env, &kustos_bin(), &vars, &args);
        for f in ["e.yaml", "p.yaml"] {
            std::fs::rename(env.path(&format!("{f}.orig")), env.path(f)).unwrap();
        }
        match DELIBERATE.iter().find(|(n, _, _)| *n == name) {
            Some((_, want, _)) => {
                if ours != *want {
                    diffs.push(format!(
                        "{name}: kustos {ours}, listed as {want} (sops {theirs})"
                    ));
                }
            }
            None => {
                if ours != theirs {
                    diffs.push(format!("{name}: sops {theirs}, kustos {ours} ({args:?})"));
                }
            }
        }
    }
    assert!(diffs.is_empty(), "exit codes differ:\n{}", diffs.join("\n"));
}

#[test]
fn deliberate_differences_are_in_the_readme() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for (name, _, _) in DELIBERATE {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README does not list {name}"
        );
    }
}
