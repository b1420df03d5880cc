//! The kustomize plugin against the real kustomize (built into kubectl) and
//! kpt, on files encrypted by the real sops.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::*;

const SECRET: &[u8] = b"apiVersion: v1\nkind: Secret\nmetadata:\n    name: db\n    namespace: apps\nstringData:\n    password: s3cret-db\n";
const CONFIG_JSON: &[u8] = b"{\n\t\"token\": \"json-t0ken\"\n}\n";
const ENVS: &[u8] = b"API_KEY=env-k3y\nMODE=prod\n";
const BLOB: &[u8] = b"\x00\x01binary\xffblob";

fn kubectl() -> Option<PathBuf> {
    require("kubectl (with built-in kustomize)", which("kubectl"))
}

/// A kustomization folder with files the real sops encrypted.
fn fixture(env: &Env, sops: &Path, dir: &str) -> PathBuf {
    let d = env.path(dir);
    std::fs::create_dir_all(&d).unwrap();
    for (name, plain, extra) in [
        (
            "secret.enc.yaml",
            SECRET,
            vec!["--encrypted-regex", "^(data|stringData)$"],
        ),
        ("config.enc.json", CONFIG_JSON, vec![]),
        ("app.enc.env", ENVS, vec![]),
        ("blob.enc", BLOB, vec![]),
    ] {
        let plain_path = env.write(&format!("plain-{name}"), plain);
        let mut args = vec!["encrypt", "--age", env.recipient.as_str()];
        args.extend(extra);
        let fmt = format_of(name);
        args.extend(["--input-type", fmt, "--output-type", fmt]);
        args.push(plain_path.to_str().unwrap());
        let enc = ok(&env.sops(sops, &args));
        std::fs::write(d.join(name), enc).unwrap();
    }
    d
}

const GEN_BODY: &str = "files:
  - ./secret.enc.yaml
secretFrom:
  - metadata:
      name: app
      namespace: apps
      annotations:
        kustomize.config.k8s.io/needs-hash: \"true\"
    type: Opaque
    files:
      - config.json=./config.enc.json
    binaryFiles:
      - ./blob.enc
    envs:
      - ./app.enc.env
";

fn write_kustomization(dir: &Path, gen: &str) {
    std::fs::write(dir.join("generator.yaml"), gen).unwrap();
    std::fs::write(
        dir.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\ngenerators:\n  - generator.yaml\n",
    )
    .unwrap();
}

fn check_built(out: &Output) {
    let text = String::from_utf8(ok(out)).unwrap();
    assert!(text.contains("password: s3cret-db"), "{text}");
    assert!(
        text.contains("API_KEY: env-k3y") && text.contains("MODE: prod"),
        "{text}"
    );
    assert!(text.contains("json-t0ken"), "{text}");
    // needs-hash: kustomize appends the content hash to the name.
    assert!(
        regex::Regex::new(r"name: app-[a-z0-9]{10}")
            .unwrap()
            .is_match(&text),
        "{text}"
    );
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(BLOB);
    assert!(text.contains(&b64), "{text}");
    assert!(!text.contains("ENC["), "everything decrypted: {text}");
}

#[test]
fn legacy_exec_plugin_with_kustomize() {
    let (Some(sops), Some(kubectl)) = (sops(), kubectl()) else {
        return;
    };
    let env = Env::new();
    let home = env.path("plugins");
    ok(&env.kustos(&["plugin", "install", "--plugin-home", home.to_str().unwrap()]));
    assert!(home.join("viaduct.ai/v1/ksops/ksops").exists());
    for (api, kind) in [
        ("viaduct.ai/v1", "ksops"),
        ("kustos.dev/v1", "SopsGenerator"),
    ] {
        let dir = fixture(&env, &sops, &format!("legacy-{kind}"));
        write_kustomization(
            &dir,
            &format!("apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: gen\n{GEN_BODY}"),
        );
        let out = env
            .cmd(&kubectl)
            .env("KUSTOMIZE_PLUGIN_HOME", &home)
            .args(["kustomize", "--enable-alpha-plugins", dir.to_str().unwrap()])
            .output()
            .unwrap();
        check_built(&out);
    }
}

/// kustomize v5's fnplugin hands a generator's config to an exec function
/// as the only item of the ResourceList, marked local-config; kubectl's
/// built-in kustomize has no --enable-exec, so this test speaks that
/// protocol directly (and checks the silent skip with kubectl).
#[test]
fn krm_function_with_kustomize_and_ksops_readme_config() {
    let (Some(sops), Some(kubectl)) = (sops(), kubectl()) else {
        return;
    };
    let env = Env::new();
    let bin = env.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(kustos_bin(), bin.join("ksops")).unwrap();
    let dir = fixture(&env, &sops, "krm");
    // The KSOPS README config, unchanged: `path: ksops` found on PATH.
    write_kustomization(
        &dir,
        &format!(
            "apiVersion: viaduct.ai/v1\nkind: ksops\nmetadata:\n  # Specify a name\n  name: example-secret-generator\n  annotations:\n    config.kubernetes.io/function: |\n        exec:\n          # if the binary is your PATH, you can do\n          path: ksops\n{GEN_BODY}"
        ),
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let gen = std::fs::read_to_string(dir.join("generator.yaml")).unwrap();
    let indented: String = gen.lines().map(|l| format!("    {l}\n")).collect();
    let rl = format!(
        "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n  - {}",
        indented.trim_start().replacen(
            "metadata:\n",
            "metadata:\n      annotations:\n        config.kubernetes.io/local-config: \"true\"\n",
            0
        )
    );
    let out = run_with_stdin(env.cmd(&bin.join("ksops")).current_dir(&dir), rl.as_bytes());
    let text = String::from_utf8(ok(&out)).unwrap();
    assert!(
        text.starts_with("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:"),
        "{text}"
    );
    assert!(
        text.contains("password: s3cret-db") && text.contains("API_KEY: env-k3y"),
        "{text}"
    );
    assert!(
        !text.contains("kind: ksops"),
        "the config item is replaced by its output: {text}"
    );
    // Without --enable-exec kustomize silently skips it; doctor says so.
    let out = env
        .cmd(&kubectl)
        .env("PATH", &path)
        .args(["kustomize", "--enable-alpha-plugins", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&ok(&out)).contains("s3cret-db"));
    let o = env
        .cmd(&kustos_bin())
        .env("PATH", &path)
        .args([
            "plugin",
            "doctor",
            dir.to_str().unwrap(),
            "--build-flags",
            "--enable-alpha-plugins",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.contains("SILENTLY SKIPPED") && report.contains("--enable-exec"),
        "{report}"
    );
    assert!(report.contains("secret.enc.yaml: decryptable"), "{report}");
    let o = env
        .cmd(&kustos_bin())
        .env("PATH", &path)
        .args([
            "plugin",
            "doctor",
            dir.to_str().unwrap(),
            "--build-flags",
            "--enable-alpha-plugins --enable-exec",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn krm_function_with_kpt() {
    let Some(sops) = sops() else { return };
    let Some(kpt) = require("kpt", which("kpt")) else {
        return;
    };
    let env = Env::new();
    let dir = fixture(&env, &sops, "pkg");
    // kpt reads every file of the package as a resource: keep the encrypted
    // inputs out of its view (they are read by the function, not by kpt).
    std::fs::write(dir.join(".krmignore"), "*.enc*\n").unwrap();
    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: keep-me\ndata:\n  a: b\n",
    )
    .unwrap();
    let cfg = env.write(
        "fn-config.yaml",
        format!(
            "apiVersion: kustos.dev/v1\nkind: SopsGenerator\nmetadata:\n  name: gen\n{GEN_BODY}"
        )
        .as_bytes(),
    );
    let out = env
        .cmd(&kpt)
        .current_dir(&dir)
        .args([
            "fn",
            "eval",
            ".",
            "--exec",
            kustos_bin().to_str().unwrap(),
            "--fn-config",
            cfg.to_str().unwrap(),
            "-o",
            "stdout",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(ok(&out)).unwrap();
    assert!(
        text.contains("keep-me"),
        "other resources pass through: {text}"
    );
    assert!(
        text.contains("password: s3cret-db") && text.contains("API_KEY: env-k3y"),
        "{text}"
    );
}

#[test]
fn failures_name_the_file() {
    let (Some(sops), Some(kubectl)) = (sops(), kubectl()) else {
        return;
    };
    let env = Env::new();
    let home = env.path("plugins");
    ok(&env.kustos(&["plugin", "install", "--plugin-home", home.to_str().unwrap()]));
    let build = |dir: &Path, gen: &str, vars: &[(&str, &Path)]| {
        write_kustomization(dir, gen);
        let mut c = env.cmd(&kubectl);
        c.env("KUSTOMIZE_PLUGIN_HOME", &home);
        for (k, v) in vars {
            c.env(k, v);
        }
        c.args(["kustomize", "--enable-alpha-plugins", dir.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let head = "apiVersion: kustos.dev/v1\nkind: SopsGenerator\nmetadata:\n  name: gen\n";
    // Tampered value.
    let dir = fixture(&env, &sops, "tampered");
    let t = std::fs::read_to_string(dir.join("secret.enc.yaml")).unwrap();
    let i = t.find("password: ENC[AES256_GCM,data:").unwrap() + 32;
    let mut t = t.into_bytes();
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.join("secret.enc.yaml"), t).unwrap();
    let o = build(&dir, &format!("{head}files:\n  - ./secret.enc.yaml\n"), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("secret.enc.yaml")
            && err.contains("authentication failed"),
        "{err}"
    );
    // Missing key.
    let dir = fixture(&env, &sops, "nokey");
    let (_, other) = new_age_key(env.dir.path(), "other");
    let o = build(
        &dir,
        &format!("{head}files:\n  - ./secret.enc.yaml\n"),
        &[("SOPS_AGE_KEY_FILE", &other)],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("secret.enc.yaml") && err.contains("data key"),
        "{err}"
    );
    // A path outside the kustomization root.
    let o = build(
        &dir,
        &format!("{head}files:\n  - ../krm/secret.enc.yaml\n"),
        &[],
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("escapes the kustomization root"),
        "{err}"
    );
    assert!(!err.contains("s3cret-db"));
}
