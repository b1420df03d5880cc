//! AWS KMS keys against a real KMS API (moto's server on 127.0.0.1) and the
//! real sops 3.11: files each one writes with `--kms` decrypt with the
//! other, `.sops.yaml` rules in both forms, key groups with age and a
//! Shamir threshold, encryption contexts, assumed roles (STS), rotate with
//! `--add-kms`/`--rm-kms`, one-line errors naming the ARN, and a fleet run
//! that asks KMS once per distinct data key.

use std::path::Path;
use std::process::Output;

use crate::common::*;

const ROLE: &str = "arn:aws:iam::123456789012:role/kustos-kms-user";

struct Aws {
    env: Env,
    moto: &'static Moto,
}

impl Aws {
    fn new() -> Option<Aws> {
        let moto = moto()?;
        Some(Aws {
            env: Env::new(),
            moto,
        })
    }

    fn run(&self, program: &Path, args: &[&str]) -> Output {
        self.run_env(program, args, &[])
    }

    /// `program` with moto's endpoint and dummy credentials, plus `extra`
    /// (an empty value removes a variable).
    fn run_env(&self, program: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
        let mut c = self.env.cmd(program);
        for (k, v) in self.moto.aws_env(&self.env.path("home")) {
            c.env(k, v);
        }
        for (k, v) in extra {
            if v.is_empty() {
                c.env_remove(k);
            } else {
                c.env(k, v);
            }
        }
        c.args(args).output().unwrap()
    }

    fn kustos(&self, args: &[&str]) -> Output {
        self.run(&kustos_bin(), args)
    }
}

/// Ciphertexts of values, MACs and modification times blanked, the INI
/// metadata section sorted (sops 3.11 writes it in Go map order): what
/// must stay byte for byte when a file is rewritten without re-keying.
fn without_values(s: &[u8]) -> String {
    let s = String::from_utf8_lossy(s);
    let s = regex::Regex::new(r"ENC\[AES256_GCM,[^\]]*\]")
        .unwrap()
        .replace_all(&s, "ENC");
    let s = regex::Regex::new(r"(lastmodified\W+)\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
        .unwrap()
        .replace_all(&s, "${1}TIME");
    sorted_ini_metadata(&s)
}

/// Also the wrapped keys and their creation times blanked: the layout of
/// two encryptions of the same input with the same keys.
fn layout(s: &[u8]) -> String {
    let s = without_values(s);
    let s = regex::Regex::new(r#"(enc"?\s*[:=]\s*"?)[A-Za-z0-9+/=]{16,}"#)
        .unwrap()
        .replace_all(&s, "${1}E");
    let s = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
        .unwrap()
        .replace_all(&s, "TIME");
    let s = regex::Regex::new(
        r"-----BEGIN AGE ENCRYPTED FILE-----[^-]*-----END AGE ENCRYPTED FILE-----",
    )
    .unwrap()
    .replace_all(&s, "AGE");
    // YAML block scalars of age stanzas: drop their armor lines.
    s.lines()
        .filter(|l| {
            let t = l.trim();
            let armor_line = t.len() >= 4
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
            !armor_line && !t.contains("AGE ENCRYPTED FILE")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn sorted_ini_metadata(s: &str) -> String {
    let mut lines: Vec<&str> = s.lines().collect();
    if let Some(i) = lines.iter().position(|l| *l == "[sops]") {
        lines[i + 1..].sort();
    }
    lines.join("\n")
}

const INPUTS: [(&str, &str, &str); 4] = [
    (
        "s.yaml",
        "user: admin\npassword: hunter2-yaml\n",
        r#"["password"]"#,
    ),
    (
        "s.json",
        "{\n  \"user\": \"admin\",\n  \"password\": \"hunter2-json\"\n}\n",
        r#"["password"]"#,
    ),
    (
        "s.env",
        "USER=admin\nPASSWORD=hunter2-env\n",
        r#"["PASSWORD"]"#,
    ),
    (
        "s.ini",
        "[db]\nuser = admin\npassword = hunter2-ini\n",
        r#"["db"]["password"]"#,
    ),
];

#[test]
fn sops_and_kustos_read_each_others_kms_files() {
    let Some(sops) = sops() else { return };
    let Some(aws) = Aws::new() else { return };
    let (arn, _) = aws.moto.create_key("us-east-1");
    let (arn2, _) = aws.moto.create_key("eu-west-1");
    let kms = format!("{arn},{arn2}+{ROLE}");
    for (name, plain, path) in INPUTS {
        aws.env.write(name, plain.as_bytes());
        let args = [
            "encrypt",
            "--kms",
            &kms,
            "--encryption-context",
            "team:web,a10:x,a9:y,Z:z",
            name,
        ];
        let by_sops = ok(&aws.run(&sops, &args));
        let by_kustos = ok(&aws.kustos(&args));
        // Same input, same keys: the same layout, KMS entries included
        // (field order, context key order, aws_profile).
        assert_eq!(layout(&by_kustos), layout(&by_sops), "{name}");
        let fs = aws.env.write(&format!("sops-{name}"), &by_sops);
        let fk = aws.env.write(&format!("kustos-{name}"), &by_kustos);
        let (fs, fk) = (fs.to_str().unwrap(), fk.to_str().unwrap());
        let want = ok(&aws.run(&sops, &["decrypt", fs]));
        assert!(String::from_utf8_lossy(&want).contains("hunter2"));
        assert_eq!(
            ok(&aws.kustos(&["decrypt", fs])),
            want,
            "{name}: kustos decrypts sops"
        );
        assert_eq!(
            ok(&aws.run(&sops, &["decrypt", fk])),
            want,
            "{name}: sops decrypts kustos"
        );
        assert_eq!(ok(&aws.kustos(&["decrypt", fk])), want);

        // A rewrite that keeps the data key keeps every KMS entry byte for byte.
        ok(&aws.kustos(&["set", fs, path, "\"changed\""]));
        let after = std::fs::read(fs).unwrap();
        assert_eq!(
            without_values(&after),
            without_values(&by_sops),
            "{name}: kms entries rewritten"
        );
        let dec = ok(&aws.run(&sops, &["decrypt", fs]));
        assert!(String::from_utf8_lossy(&dec).contains("changed"), "{name}");
    }
    // The SOPS_KMS_ARN variable works like --kms, for both.
    aws.env.write("v.yaml", b"k: v\n");
    let o = aws.run_env(
        &kustos_bin(),
        &["encrypt", "v.yaml"],
        &[("SOPS_KMS_ARN", &arn)],
    );
    let f = aws.env.write("v.enc.yaml", &ok(&o));
    assert!(String::from_utf8_lossy(&std::fs::read(&f).unwrap()).contains(&arn));
    assert_eq!(
        ok(&aws.run(&sops, &["decrypt", f.to_str().unwrap()])),
        b"k: v\n"
    );
    // A malformed context is sops' exit code 6.
    let o = aws.kustos(&[
        "encrypt",
        "--kms",
        &arn,
        "--encryption-context",
        "nope",
        "v.yaml",
    ]);
    assert_eq!(
        o.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = aws.run(
        &sops,
        &[
            "encrypt",
            "--kms",
            &arn,
            "--encryption-context",
            "nope",
            "v.yaml",
        ],
    );
    assert_eq!(o.status.code(), Some(6));
}

#[test]
fn aws_profiles_are_used_and_stored() {
    let Some(sops) = sops() else { return };
    let Some(aws) = Aws::new() else { return };
    let (arn, _) = aws.moto.create_key("us-east-1");
    aws.env.write(
        "home/.aws/credentials",
        b"[ops]\naws_access_key_id = test\naws_secret_access_key = test\n",
    );
    aws.env
        .write("home/.aws/config", b"[profile ops]\nregion = us-east-1\n");
    aws.env.write("p.yaml", b"k: secret\n");
    // Only the profile has credentials.
    let no_env_creds = [("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")];
    for (who, prog) in [("kustos", kustos_bin()), ("sops", sops.clone())] {
        let o = aws.run_env(
            &prog,
            &["encrypt", "--kms", &arn, "--aws-profile", "ops", "p.yaml"],
            &no_env_creds,
        );
        let f = aws.env.write(&format!("p.{who}.yaml"), &ok(&o));
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.contains("aws_profile: ops"), "{who}: {text}");
        for reader in [kustos_bin(), sops.clone()] {
            let o = aws.run_env(&reader, &["decrypt", f.to_str().unwrap()], &no_env_creds);
            assert_eq!(ok(&o), b"k: secret\n", "{who}'s file");
        }
    }
    assert_eq!(
        layout(&std::fs::read(aws.env.path("p.kustos.yaml")).unwrap()),
        layout(&std::fs::read(aws.env.path("p.sops.yaml")).unwrap())
    );
}

#[test]
fn creation_rules_with_kms_in_both_forms_and_shamir_groups() {
    let Some(sops) = sops() else { return };
    let Some(aws) = Aws::new() else { return };
    let (a, _) = aws.moto.create_key("us-east-1");
    let (b, _) = aws.moto.create_key("us-west-2");
    let recipient = aws.env.recipient.clone();
    let cfg = format!(
        "creation_rules:
  - path_regex: flat/
    kms: '{a}, {b}+{ROLE}'
    age: {recipient}
  - path_regex: groups/
    shamir_threshold: 2
    key_groups:
      - kms:
          - arn: {a}
            context:
              team: web
              env: prod
      - age:
          - {recipient}
      - kms:
          - arn: {b}
            role: {ROLE}
"
    );
    aws.env.write(".sops.yaml", cfg.as_bytes());
    for dir in ["flat", "groups"] {
        let name = format!("{dir}/s.yaml");
        aws.env.write(&name, b"password: hunter2\n");
        // The command's context reaches the flat form's keys only.
        let args = ["encrypt", "--encryption-context", "app:api", name.as_str()];
        let by_kustos = ok(&aws.kustos(&args));
        // sops 3.11 drops the command's context when it takes the keys from
        // a rule (sops 3.12 fixed that; kustos does as 3.12), so it is
        // given the flat rule's keys on the command line instead.
        let by_sops = if dir == "flat" {
            let kms = format!("{a},{b}+{ROLE}");
            let explicit = ["--kms", &kms, "--age", &recipient];
            ok(&aws.run(&sops, &[&args[..1], &explicit, &args[1..]].concat()))
        } else {
            ok(&aws.run(&sops, &args))
        };
        assert_eq!(layout(&by_kustos), layout(&by_sops), "{dir}");
        let text = String::from_utf8_lossy(&by_kustos).to_string();
        if dir == "flat" {
            assert_eq!(text.matches("app: api").count(), 2, "{text}");
        } else {
            assert!(
                text.contains("shamir_threshold: 2") && text.contains("team: web"),
                "{text}"
            );
            assert!(!text.contains("app: api"));
        }
        for (who, data) in [("sops", &by_sops), ("kustos", &by_kustos)] {
            let f = aws.env.write(&format!("{dir}/{who}.enc.yaml"), data);
            let f = f.to_str().unwrap();
            assert_eq!(
                ok(&aws.kustos(&["decrypt", f])),
                b"password: hunter2\n",
                "{dir} {who}"
            );
            assert_eq!(
                ok(&aws.run(&sops, &["decrypt", f])),
                b"password: hunter2\n",
                "{dir} {who}"
            );
        }
    }
    // Shamir, 2 of 3 groups: the two KMS groups alone open the file...
    let f = aws.env.path("groups/kustos.enc.yaml");
    let f = f.to_str().unwrap();
    let no_age = [("SOPS_AGE_KEY_FILE", "/nonexistent")];
    let o = aws.run_env(&kustos_bin(), &["decrypt", f], &no_age);
    assert_eq!(ok(&o), b"password: hunter2\n");
    // ...and age plus one reachable KMS group is not enough when KMS is
    // out of reach: one of two needed, each KMS key named with its reason.
    let o = aws.run_env(
        &kustos_bin(),
        &["decrypt", f],
        &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")],
    );
    assert_eq!(o.status.code(), Some(128));
    let err = String::from_utf8_lossy(&o.stderr);
    let first = err.lines().next().unwrap_or("");
    assert!(
        first.contains("2 of 3 key groups needed, 1 decrypted"),
        "{err}"
    );
    assert!(first.contains(&a) && first.contains(&b), "{err}");
    assert!(first.contains("cannot reach the KMS endpoint"), "{err}");
    assert!(!err.contains("hunter2"));
}

#[test]
fn rotate_keeps_kms_and_adds_and_removes_kms_keys() {
    let Some(sops) = sops() else { return };
    let Some(aws) = Aws::new() else { return };
    let (a, _) = aws.moto.create_key("us-east-1");
    let (b, _) = aws.moto.create_key("us-east-1");
    aws.env.write("r.yaml", b"password: hunter2\n");
    let f = aws.env.write(
        "r.enc.yaml",
        &ok(&aws.run(&sops, &["encrypt", "--kms", &a, "r.yaml"])),
    );
    let f = f.to_str().unwrap();
    let enc_of = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.trim_start().starts_with("enc:"))
            .map(String::from)
            .collect()
    };
    let before = std::fs::read_to_string(f).unwrap();
    ok(&aws.kustos(&["rotate", "-i", f]));
    let after = std::fs::read_to_string(f).unwrap();
    assert!(after.contains(&a), "{after}");
    assert_ne!(enc_of(&before), enc_of(&after), "a new data key is wrapped");
    assert_eq!(ok(&aws.run(&sops, &["decrypt", f])), b"password: hunter2\n");

    // Add b with a context, remove a: the same key names as sops gives.
    let g = aws.env.write("r2.enc.yaml", after.as_bytes());
    let g = g.to_str().unwrap();
    let change = [
        "--add-kms",
        b.as_str(),
        "--rm-kms",
        a.as_str(),
        "--encryption-context",
        "team:web",
    ];
    let mut args = vec!["rotate", "-i"];
    args.extend(change);
    ok(&aws.kustos(&[&args[..], &[f]].concat()));
    ok(&aws.run(&sops, &[&args[..], &[g]].concat()));
    let (ours, theirs) = (std::fs::read(f).unwrap(), std::fs::read(g).unwrap());
    assert_eq!(layout(&ours), layout(&theirs));
    let ours = String::from_utf8_lossy(&ours);
    assert!(ours.contains(&b) && ours.contains("team: web"), "{ours}");
    // `--rm-kms a` with a context did not match a's entry (no context), as in sops.
    assert!(ours.contains(&a), "{ours}");
    ok(&aws.kustos(&["rotate", "-i", "--rm-kms", &a, f]));
    let text = std::fs::read_to_string(f).unwrap();
    assert!(!text.contains(&a) && text.contains(&b), "{text}");
    assert_eq!(ok(&aws.run(&sops, &["decrypt", f])), b"password: hunter2\n");
    assert_eq!(ok(&aws.kustos(&["decrypt", f])), b"password: hunter2\n");
}

#[test]
fn assumed_roles_go_through_sts_with_sops_session_name() {
    let Some(sops) = sops() else { return };
    let Some(aws) = Aws::new() else { return };
    let (a, _) = aws.moto.create_key("us-east-1");
    let role = "arn:aws:iam::123456789012:role/kustos-sts-probe";
    aws.env.write("s.yaml", b"k: secret\n");
    let o = aws.kustos(&["encrypt", "--kms", &format!("{a}+{role}"), "s.yaml"]);
    let f = aws.env.write("s.enc.yaml", &ok(&o));
    let text = std::fs::read_to_string(&f).unwrap();
    assert!(text.contains(&format!("role: {role}")), "{text}");
    assert_eq!(
        ok(&aws.run(&sops, &["decrypt", f.to_str().unwrap()])),
        b"k: secret\n"
    );
    assert_eq!(
        ok(&aws.kustos(&["decrypt", f.to_str().unwrap()])),
        b"k: secret\n"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .to_string();
    let kept: String = host
        .chars()
        .filter(|&c| c.is_ascii_alphanumeric() || matches!(c, '=' | ',' | '.' | '@'..='_'))
        .collect();
    let mut session = format!("sops@{kept}");
    session.truncate(64);
    let form = |s: &str| s.replace('@', "%40");
    let calls: Vec<String> = aws
        .moto
        .recorded()
        .into_iter()
        .filter(|(t, b)| t == "AssumeRole" && b.contains("kustos-sts-probe"))
        .map(|(_, b)| b)
        .collect();
    // kustos (encrypt, decrypt) and sops (decrypt) each assumed the role.
    assert!(calls.len() >= 3, "{calls:?}");
    for c in &calls {
        assert!(
            c.contains(&format!("RoleSessionName={}", form(&session))),
            "{c}"
        );
    }
}

#[test]
fn kms_failures_name_the_arn_and_the_reason_on_one_line() {
    let Some(aws) = Aws::new() else { return };
    let (a, _) = aws.moto.create_key("us-east-1");
    let (other, _) = aws.moto.create_key("us-east-1");
    aws.env.write("e.yaml", b"password: hunter2\n");
    let good = ok(&aws.kustos(&["encrypt", "--kms", &a, "e.yaml"]));
    let text = String::from_utf8_lossy(&good).to_string();
    let wrong_region = a.replace("us-east-1", "eu-central-1");
    let no_creds: &[(&str, &str)] = &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")];
    let unreachable: &[(&str, &str)] = &[("AWS_ENDPOINT_URL", "http://127.0.0.1:9")];
    // (case, the ARN the file's entry names, environment, reason)
    let cases = [
        ("not-found", &wrong_region, &[][..], "was not found"),
        ("other-key", &other, &[][..], "access denied"),
        ("no-credentials", &a, no_creds, "no AWS credentials"),
        (
            "unreachable",
            &a,
            unreachable,
            "cannot reach the KMS endpoint",
        ),
    ];
    for (case, arn, vars, reason) in cases {
        let content = text.replace(&a, arn);
        let f = aws
            .env
            .write(&format!("{case}.enc.yaml"), content.as_bytes());
        let o = aws.run_env(&kustos_bin(), &["decrypt", f.to_str().unwrap()], vars);
        assert_eq!(
            o.status.code(),
            Some(128),
            "{case}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        let first = err.lines().next().unwrap_or("");
        assert!(first.contains(arn.as_str()), "{case}: {err}");
        assert!(first.contains(reason), "{case}: {err}");
        assert!(
            err.lines().count() <= 2,
            "{case}: one line and a hint: {err}"
        );
        assert!(!err.contains("hunter2") && o.stdout.is_empty(), "{case}");
        assert!(!err.contains(FAKE_AWS_SECRET), "{case}: {err}");
    }
}

#[test]
fn a_fleet_run_asks_kms_once_per_data_key() {
    let Some(aws) = Aws::new() else { return };
    let (a, _) = aws.moto.create_key("us-east-1");
    let (new_recipient, new_key) = new_age_key(aws.env.dir.path(), "new");
    // 10 distinct files, 20 copies of each (tenant folders share Secrets).
    let distinct: Vec<Vec<u8>> = (0..10)
        .map(|i| {
            aws.env.write(
                "plain.yaml",
                format!("kind: Secret\nstringData:\n  v: value-{i}\n").as_bytes(),
            );
            ok(&aws.kustos(&["encrypt", "--kms", &a, "plain.yaml"]))
        })
        .collect();
    std::fs::remove_file(aws.env.path("plain.yaml")).unwrap();
    for copy in 0..20 {
        for (i, data) in distinct.iter().enumerate() {
            aws.env.write(&format!("fleet/t{copy}/s{i}.yaml"), data);
        }
    }
    aws.env.write(
        ".sops.yaml",
        format!("creation_rules:\n  - kms: {a}\n    age: {new_recipient}\n").as_bytes(),
    );
    let before = aws.moto.decrypt_calls(&a);
    let o = aws.kustos(&["fleet", "updatekeys", "fleet", "-y"]);
    ok(&o);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("updated 200 of 200"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(
        aws.moto.decrypt_calls(&a) - before,
        10,
        "one Decrypt per distinct data key"
    );
    // Every file now opens with the new age key alone, no AWS needed.
    let f = aws.env.path("fleet/t7/s3.yaml");
    let o = aws.run_env(
        &kustos_bin(),
        &["decrypt", f.to_str().unwrap()],
        &[
            ("SOPS_AGE_KEY_FILE", new_key.to_str().unwrap()),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        ],
    );
    assert!(String::from_utf8_lossy(&ok(&o)).contains("value-3"));
}
