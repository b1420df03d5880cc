//! Tenant isolation, one test case per attack (SECURITY.md names them).
//!
//! One repository holds a legitimate tenant, another tenant, and a folder
//! per attack; keys are per tenant (`keys/<namespace>/`). Every attack must
//! fail with a message naming the file and field, and no key material, no
//! file from outside the root and no other tenant's plaintext may appear on
//! stdout, stderr, in logs or in HTTP bodies. The legitimate render of the
//! same tenant keeps working in a root that holds all those attack folders.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::*;

const ENC_REGEX: &str = "^(data|stringData)$";
/// In the outside file: must never show up in any output.
const OUTSIDE_CANARY: &str = "CANARY-OUTSIDE-THE-ROOT";
/// Tenant b's secret value: must never reach tenant a.
const B_SECRET: &str = "value-only-tenant-b-may-read";
const A_SECRET: &str = "value-of-tenant-a";

fn kubectl() -> Option<PathBuf> {
    require("kubectl (with built-in kustomize)", which("kubectl"))
}

fn secret(ns: &str, name: &str, value: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {ns}\nstringData:\n  password: {value}\n  username: admin\n"
    )
}

fn write(p: &Path, data: impl AsRef<[u8]>) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

/// The shared repository, keys and an outside folder.
struct Fleet {
    env: Env,
    root: PathBuf,
    keys: PathBuf,
    outside: PathBuf,
    /// Tenant a's encrypted Secret (YAML).
    a_secret: Vec<u8>,
    /// Tenant b's encrypted Secret (YAML).
    b_secret: Vec<u8>,
    a_recipient: String,
}

fn encrypt(env: &Env, sops: &Path, name: &str, plain: &str, recipient: &str) -> Vec<u8> {
    let p = env.write(&format!("plain/{name}"), plain.as_bytes());
    ok(&env.sops(
        sops,
        &[
            "encrypt",
            "--age",
            recipient,
            "--encrypted-regex",
            ENC_REGEX,
            p.to_str().unwrap(),
        ],
    ))
}

fn fleet(sops: &Path) -> Fleet {
    let env = Env::new();
    let keys = env.path("keys");
    let (ra, ka) = new_age_key(env.dir.path(), "tenant-a");
    let (rb, kb) = new_age_key(env.dir.path(), "tenant-b");
    write(
        &keys.join("tenant-a/age.agekey"),
        std::fs::read(&ka).unwrap(),
    );
    write(
        &keys.join("tenant-b/age.agekey"),
        std::fs::read(&kb).unwrap(),
    );
    let root = env.path("repo");
    std::fs::create_dir_all(root.join(".git")).unwrap();
    let outside = env.path("outside");
    write(&outside.join("canary.txt"), OUTSIDE_CANARY);
    write(
        &outside.join("kustomization.yaml"),
        "configMapGenerator:\n- name: outside\n  files:\n  - canary.txt\n",
    );
    let a_secret = encrypt(
        &env,
        sops,
        "a.yaml",
        &secret("tenant-a", "db", A_SECRET),
        &ra,
    );
    let b_secret = encrypt(
        &env,
        sops,
        "b.yaml",
        &secret("tenant-b", "db", B_SECRET),
        &rb,
    );
    // The legitimate tenants.
    write(&root.join("tenants/a/app/secret.yaml"), &a_secret);
    write(
        &root.join("tenants/a/app/kustomization.yaml"),
        "namespace: tenant-a\nresources:\n- secret.yaml\n",
    );
    write(&root.join("tenants/b/app/secret.yaml"), &b_secret);
    write(
        &root.join("tenants/b/app/kustomization.yaml"),
        "namespace: tenant-b\nresources:\n- secret.yaml\n",
    );
    // Unrelated breakage elsewhere in the root must not matter.
    symlink(env.path("nowhere"), root.join("tenants/b/broken-link.yaml")).unwrap();
    Fleet {
        env,
        root,
        keys,
        outside,
        a_secret,
        b_secret,
        a_recipient: ra,
    }
}

impl Fleet {
    fn attack_dir(&self, name: &str) -> PathBuf {
        self.root.join("tenants/a").join(name)
    }

    fn render_as_a(&self, dir: &Path) -> Output {
        self.env.kustos(&[
            "render",
            dir.to_str().unwrap(),
            "--tenant",
            "tenant-a",
            "--keys-dir",
            self.keys.to_str().unwrap(),
            "--root",
            self.root.to_str().unwrap(),
        ])
    }
}

/// Nothing secret or foreign in any output.
#[track_caller]
fn assert_nothing_leaks(what: &str, out: &[u8]) {
    let s = String::from_utf8_lossy(out);
    for bad in ["AGE-SECRET-KEY", OUTSIDE_CANARY, B_SECRET, "PATH="] {
        assert!(!s.contains(bad), "{what}: output holds {bad:?}:\n{s}");
    }
}

#[track_caller]
fn assert_refused(what: &str, o: &Output, names: &[&str]) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "{what}: rendered:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(o.stdout.is_empty(), "{what}: printed output");
    assert_nothing_leaks(what, &o.stdout);
    assert_nothing_leaks(what, &o.stderr);
    for n in names {
        assert!(
            err.contains(n),
            "{what}: the error does not name {n:?}: {err}"
        );
    }
}

/// A kustomization attack: folder name, kustomization.yaml, what the error
/// must name, and any files or links to set up first.
struct Attack {
    name: &'static str,
    kustomization: String,
    names: Vec<&'static str>,
    setup: fn(&Fleet, &Path),
}

fn no_setup(_: &Fleet, _: &Path) {}

fn attacks(f: &Fleet) -> Vec<Attack> {
    let key = f.keys.join("tenant-b/age.agekey");
    let key = key.to_str().unwrap();
    let out = f.outside.to_str().unwrap().to_string();
    let a = |name, k: String, names: Vec<&'static str>| Attack {
        name,
        kustomization: k,
        names,
        setup: no_setup,
    };
    let mut v = vec![
        a("cm-files-absolute", format!("configMapGenerator:\n- name: loot\n  files:\n  - k={key}\n"), vec!["configMapGenerator[0].files[0]", "absolute"]),
        a("cm-files-escape", "configMapGenerator:\n- name: loot\n  files:\n  - k=../../../../keys/tenant-b/age.agekey\n".into(), vec!["configMapGenerator[0].files[0]", "leaves the render root"]),
        a("cm-envs-absolute", format!("configMapGenerator:\n- name: loot\n  envs:\n  - {key}\n"), vec!["configMapGenerator[0].envs[0]"]),
        a("cm-env-legacy", format!("configMapGenerator:\n- name: loot\n  env: {key}\n"), vec!["configMapGenerator[0].env"]),
        a("secret-files-absolute", format!("secretGenerator:\n- name: loot\n  files:\n  - {key}\n"), vec!["secretGenerator[0].files[0]"]),
        a("secret-envs-escape", "secretGenerator:\n- name: loot\n  envs:\n  - ../../../outside/canary.txt\n".into(), vec!["secretGenerator[0].envs[0]"]),
        a("proc-environ", "configMapGenerator:\n- name: loot\n  files:\n  - env=/proc/self/environ\n".into(), vec!["configMapGenerator[0].files[0]", "absolute"]),
        a("resources-absolute", format!("resources:\n- {out}\n"), vec!["resources[0]", "absolute"]),
        a("resources-escape", "resources:\n- ../../../../outside\n".into(), vec!["resources[0]", "leaves the render root"]),
        a("bases-escape", "bases:\n- ../../../../outside\n".into(), vec!["bases[0]"]),
        a("components-escape", "components:\n- ../../../../outside\n".into(), vec!["components[0]"]),
        a("patches-absolute", format!("resources:\n- ../app\npatches:\n- path: {key}\n"), vec!["patches[0].path"]),
        a("psm-escape", "resources:\n- ../app\npatchesStrategicMerge:\n- ../../../../outside/canary.txt\n".into(), vec!["patchesStrategicMerge[0]"]),
        a("json6902-absolute", format!("resources:\n- ../app\npatchesJson6902:\n- target:\n    kind: Secret\n    name: db\n  path: {key}\n"), vec!["patchesJson6902[0].path"]),
        a("replacements-absolute", format!("resources:\n- ../app\nreplacements:\n- path: {key}\n"), vec!["replacements[0].path"]),
        a("crds-absolute", format!("crds:\n- {key}\n"), vec!["crds[0]"]),
        a("configurations-absolute", format!("configurations:\n- {key}\n"), vec!["configurations[0]"]),
        a("openapi-absolute", format!("openapi:\n  path: {key}\n"), vec!["openapi.path"]),
        a("generators-file-outside", "generators:\n- ../../../../outside/gen.yaml\n".into(), vec!["generators[0]"]),
        a("generators-inline-builtin", format!("generators:\n- |\n  apiVersion: builtin\n  kind: SecretGenerator\n  metadata:\n    name: loot\n  files:\n  - {key}\n"), vec!["generators[0]", "absolute"]),
        a("transformers-builtin-patch", "resources:\n- ../app\ntransformers:\n- |\n  apiVersion: builtin\n  kind: PatchTransformer\n  metadata:\n    name: p\n  path: ../../../../outside/canary.txt\n".into(), vec!["transformers[0]", "path"]),
        a("validators-exec-plugin", "validators:\n- |\n  apiVersion: example.com/v1\n  kind: Steal\n  metadata:\n    name: x\n    annotations:\n      config.kubernetes.io/function: |\n        exec:\n          path: /bin/cat\n".into(), vec!["validators[0]", "plugin"]),
        a("helm-charts", format!("helmGlobals:\n  chartHome: {out}\nhelmCharts:\n- name: x\n"), vec!["helm"]),
        a("remote-https", "resources:\n- https://example.com/secret.yaml\n".into(), vec!["resources[0]", "remote"]),
        a("remote-git", "resources:\n- git@github.com:org/repo.git\n".into(), vec!["resources[0]", "remote"]),
        a("remote-file-url", format!("resources:\n- file://{out}\n"), vec!["resources[0]", "remote"]),
        a("remote-host-path", "resources:\n- github.com/fluxcd/flux2/manifests/install\n".into(), vec!["resources[0]", "remote"]),
    ];
    v.push(Attack {
        name: "symlink-file-to-key",
        kustomization: "configMapGenerator:\n- name: loot\n  files:\n  - k=key.txt\n".into(),
        names: vec!["configMapGenerator[0].files[0]", "symlink"],
        setup: |f, d| symlink(f.keys.join("tenant-b/age.agekey"), d.join("key.txt")).unwrap(),
    });
    v.push(Attack {
        name: "symlink-folder-outside",
        kustomization: "resources:\n- linked\n".into(),
        names: vec!["resources[0]", "symlink"],
        setup: |f, d| symlink(&f.outside, d.join("linked")).unwrap(),
    });
    v.push(Attack {
        name: "symlink-patch-to-key",
        kustomization: "resources:\n- ../app\npatches:\n- path: p.yaml\n".into(),
        names: vec!["patches[0].path", "symlink"],
        setup: |f, d| symlink(f.keys.join("tenant-b/age.agekey"), d.join("p.yaml")).unwrap(),
    });
    v.push(Attack {
        name: "component-with-outside-generator",
        kustomization: "components:\n- comp\n".into(),
        names: vec!["comp/kustomization.yaml", "configMapGenerator[0].files[0]"],
        setup: |f, d| {
            let k = format!(
                "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nconfigMapGenerator:\n- name: loot\n  files:\n  - {}\n",
                f.keys.join("tenant-b/age.agekey").display()
            );
            write(&d.join("comp/kustomization.yaml"), k);
        },
    });
    v.push(Attack {
        name: "generator-config-file-with-escape",
        kustomization: "generators:\n- gen.yaml\n".into(),
        names: vec!["gen.yaml", "files[0]"],
        setup: |_, d| {
            write(
                &d.join("gen.yaml"),
                "apiVersion: builtin\nkind: ConfigMapGenerator\nmetadata:\n  name: loot\nfiles:\n- ../../../../keys/tenant-b/age.agekey\n",
            )
        },
    });
    v
}

#[test]
fn kustomizations_cannot_read_outside_the_root() {
    let (Some(sops), Some(_)) = (sops(), kubectl()) else {
        return;
    };
    let f = fleet(&sops);
    let all = attacks(&f);
    for at in &all {
        let d = f.attack_dir(at.name);
        write(&d.join("kustomization.yaml"), &at.kustomization);
        (at.setup)(&f, &d);
    }
    for at in &all {
        let o = f.render_as_a(&f.attack_dir(at.name));
        let mut names = at.names.clone();
        names.push(at.name);
        assert_refused(at.name, &o, &names);
    }
    // The tenant's own render still works in a root holding every attack,
    // the other tenant's files and a broken link.
    let o = f.render_as_a(&f.root.join("tenants/a/app"));
    let out = ok(&o);
    assert!(String::from_utf8_lossy(&out).contains(A_SECRET));
    assert_nothing_leaks("legitimate render", &out);
}

#[test]
fn the_kubectl_child_is_confined_where_the_kernel_allows() {
    let (Some(sops), Some(_)) = (sops(), kubectl()) else {
        return;
    };
    let f = fleet(&sops);
    let o = f.env.kustos(&[
        "render",
        f.root.join("tenants/a/app").to_str().unwrap(),
        "--tenant",
        "tenant-a",
        "--keys-dir",
        f.keys.to_str().unwrap(),
        "--verbose",
    ]);
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("kubectl confinement:"), "{err}");
    // Through the helper directly: kubectl may read its workspace and
    // nothing else, even with kustomize's own restrictor off.
    if err.contains("Landlock (") {
        let kubectl = std::fs::canonicalize(which("kubectl").unwrap()).unwrap();
        let o = f
            .env
            .cmd(&kustos_bin())
            .arg("__confined-exec")
            .arg("--read")
            .arg(f.root.join("tenants/a"))
            .arg("--")
            .arg(&kubectl)
            .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
            .arg(&f.outside)
            .output()
            .unwrap();
        assert!(!o.status.success());
        assert_nothing_leaks("confined kubectl", &o.stdout);
        assert_nothing_leaks("confined kubectl", &o.stderr);
        // Unconfined, the same command reads the outside folder.
        let plain = Command::new(&kubectl)
            .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
            .arg(&f.outside)
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&plain.stdout).contains(OUTSIDE_CANARY));
        let o = f.env.kustos(&[
            "render",
            f.root.join("tenants/a/app").to_str().unwrap(),
            "--keys-dir",
            f.keys.to_str().unwrap(),
            "--tenant",
            "tenant-a",
            "--require-landlock",
        ]);
        ok(&o);
    }
}

#[test]
fn another_tenants_secret_never_reaches_this_tenant() {
    let (Some(sops), Some(_)) = (sops(), kubectl()) else {
        return;
    };
    let f = fleet(&sops);
    // By reference and by copy, with kustomize moving it into a's namespace.
    let by_ref = f.attack_dir("steal-by-reference");
    write(
        &by_ref.join("kustomization.yaml"),
        "namespace: tenant-a\nresources:\n- ../../b/app/secret.yaml\n",
    );
    let by_copy = f.attack_dir("steal-by-copy");
    write(&by_copy.join("secret.yaml"), &f.b_secret);
    write(
        &by_copy.join("kustomization.yaml"),
        "namespace: tenant-a\nresources:\n- secret.yaml\n",
    );
    for (what, d) in [("by reference", &by_ref), ("by copy", &by_copy)] {
        // Per-tenant keys: a's ring cannot open b's file.
        let o = f.render_as_a(d);
        assert_refused(what, &o, &["secret.yaml"]);
        // One ring for everyone: the namespace its MAC covers is b's.
        let shared = f.env.path("shared-keys");
        for t in ["tenant-a", "tenant-b"] {
            write(
                &shared.join(format!("{t}.agekey")),
                std::fs::read(f.keys.join(t).join("age.agekey")).unwrap(),
            );
        }
        let o = f.env.kustos(&[
            "render",
            d.to_str().unwrap(),
            "--tenant",
            "tenant-a",
            "--keys-dir",
            shared.to_str().unwrap(),
        ]);
        assert_refused(what, &o, &["tenant-b", "not the tenant's"]);
    }
    // With per-tenant keys, a render needs a tenant.
    let o = f.env.kustos(&[
        "render",
        f.root.join("tenants/a/app").to_str().unwrap(),
        "--keys-dir",
        f.keys.to_str().unwrap(),
    ]);
    assert_refused("no tenant", &o, &["tenant is required"]);
}

/// Deletes the `username` line of an encrypted YAML Secret: its MAC no
/// longer matches.
fn drop_username(enc: &[u8]) -> String {
    String::from_utf8_lossy(enc)
        .lines()
        .filter(|l| !l.trim_start().starts_with("username:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn documents_whose_mac_fails_are_never_decrypted() {
    let (Some(sops), Some(_)) = (sops(), kubectl()) else {
        return;
    };
    let f = fleet(&sops);
    let broken = drop_username(&f.a_secret);
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: first\n";
    let json_secret = {
        let p = f.env.write("plain/j.json", br#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "j", "namespace": "tenant-a"}, "stringData": {"password": "value-of-tenant-a", "username": "admin"}}"#);
        let enc = ok(&f.env.sops(
            &sops,
            &[
                "encrypt",
                "--age",
                &f.a_recipient,
                "--encrypted-regex",
                ENC_REGEX,
                p.to_str().unwrap(),
            ],
        ));
        let mut v: serde_json::Value = serde_json::from_slice(&enc).unwrap();
        v["stringData"].as_object_mut().unwrap().remove("username");
        serde_json::to_string(&v).unwrap()
    };
    let cases: Vec<(&str, &str, String)> = vec![
        ("second-document", "all.yaml", format!("{cm}---\n{broken}")),
        ("json-style", "secret.json", json_secret.clone()),
        ("json-in-yaml-name", "secret.yaml", json_secret),
        ("other-file-name", "secret.txt", broken.clone()),
    ];
    for (name, file, content) in &cases {
        let d = f.attack_dir(name);
        write(&d.join(file), content);
        write(
            &d.join("kustomization.yaml"),
            format!("namespace: tenant-a\nresources:\n- {file}\n"),
        );
        let o = f.render_as_a(&d);
        assert_refused(name, &o, &[file, "MAC mismatch"]);
        assert!(!String::from_utf8_lossy(&o.stderr).contains(A_SECRET));
    }
    // decrypt: Disabled on the source skips its check; a patch that takes
    // the annotation away cannot get the object decrypted.
    let d = f.attack_dir("disabled-then-patched");
    let src: String = String::from_utf8_lossy(&f.a_secret)
        .lines()
        .map(|l| match l.strip_suffix("namespace: tenant-a") {
            Some(indent) => format!(
                "{l}\n{indent}annotations:\n{indent}{indent}kustomize.toolkit.fluxcd.io/decrypt: Disabled\n"
            ),
            None => format!("{l}\n"),
        })
        .collect();
    write(&d.join("secret.yaml"), drop_username(src.as_bytes()));
    write(
        &d.join("kustomization.yaml"),
        "resources:\n- secret.yaml\npatches:\n- target:\n    kind: Secret\n  patch: |\n    - op: remove\n      path: /metadata/annotations\n",
    );
    let o = f.render_as_a(&d);
    assert_refused(
        "disabled-then-patched",
        &o,
        &["Secret/db", "verified source"],
    );
    // Left disabled, the object is passed through encrypted, as Flux does.
    write(&d.join("kustomization.yaml"), "resources:\n- secret.yaml\n");
    let out = String::from_utf8_lossy(&ok(&f.render_as_a(&d))).into_owned();
    assert!(
        out.contains("ENC[AES256_GCM") && !out.contains(A_SECRET),
        "{out}"
    );
}

#[test]
fn a_tampered_encrypted_comment_is_an_error() {
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let p = env.write(
        "c.yaml",
        b"# top comment\nstringData:\n    # the password\n    password: s3cret\n",
    );
    let enc = ok(&env.sops(
        &sops,
        &["encrypt", "--age", &env.recipient, p.to_str().unwrap()],
    ));
    let enc = String::from_utf8(enc).unwrap();
    let i = enc
        .find("#ENC[AES256_GCM,data:")
        .expect("an encrypted comment")
        + 21;
    let mut bytes = enc.into_bytes();
    bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
    let tampered = env.write("tampered.yaml", &bytes);
    let o = env.kustos(&["decrypt", tampered.to_str().unwrap()]);
    assert!(
        !o.status.success(),
        "decrypted a file with a tampered comment"
    );
    assert!(o.stdout.is_empty());
    assert!(!String::from_utf8_lossy(&o.stderr).contains("s3cret"));
}

#[test]
fn plaintext_outputs_are_private_even_over_existing_files() {
    let env = Env::new();
    let p = env.write("s.yaml", b"stringData:\n    password: s3cret\n");
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, p.to_str().unwrap()]));
    let e = env.write("s.enc.yaml", &enc);
    let out = env.write("out.yaml", b"old");
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&env.kustos(&[
        "decrypt",
        "--output",
        out.to_str().unwrap(),
        e.to_str().unwrap(),
    ]));
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let dir = env.path("outdir");
    std::fs::create_dir_all(&dir).unwrap();
    let existing = dir.join("s.enc.yaml");
    write(&existing, "old");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&env.kustos(&[
        "decrypt",
        "--output-dir",
        dir.to_str().unwrap(),
        e.to_str().unwrap(),
    ]));
    for f in std::fs::read_dir(&dir).unwrap() {
        let m = f.unwrap().metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
    }
}

// ---------------------------------------------------------------------------
// The sidecar.

struct Sidecar {
    child: Child,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    addresses: mpsc::Receiver<String>,
}

impl Sidecar {
    fn start(env: &Env, keys: &Path, args: &[&str]) -> Sidecar {
        let mut child = env
            .cmd(&kustos_bin())
            .arg("serve")
            .arg("--keys-dir")
            .arg(keys)
            .args(["--reload-interval", "100ms"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let l = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["msg"] == "listening" {
                        let _ = tx.send(v["address"].as_str().unwrap_or("").to_string());
                    }
                }
                l.lock().unwrap().push(line);
            }
        });
        Sidecar {
            child,
            logs,
            addresses: rx,
        }
    }

    fn wait_listening(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|_| {
                self.addresses
                    .recv_timeout(Duration::from_secs(20))
                    .unwrap_or_else(|_| panic!("not listening: {}", self.logs()))
            })
            .collect()
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A POST over a Unix socket through curl: (status, body).
fn post(sock: &Path, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let mut c = Command::new(which("curl").expect("curl"));
    c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-H", "Expect:"])
        .arg("--unix-socket")
        .arg(sock)
        .args(["--data-binary", "@-"]);
    for (k, v) in headers {
        c.arg("-H").arg(format!("{k}: {v}"));
    }
    c.arg(format!("http://kustos{path}"));
    let o = run_with_stdin(&mut c, body);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

#[track_caller]
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(15);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_sidecar_takes_the_tenant_from_the_connection() {
    let (Some(sops), Some(_)) = (sops(), require("curl", which("curl"))) else {
        return;
    };
    let f = fleet(&sops);
    let run = f.env.path("run");
    std::fs::create_dir_all(&run).unwrap();
    let template = format!("unix://{}/{{tenant}}.sock", run.display());
    let shared = format!("unix://{}/shared.sock", run.display());
    let srv = Sidecar::start(
        &f.env,
        &f.keys,
        &[
            "--listen",
            &template,
            "--listen",
            &shared,
            "--render-root",
            f.root.to_str().unwrap(),
        ],
    );
    srv.wait_listening(3);
    let a_sock = run.join("tenant-a.sock");
    let b_sock = run.join("tenant-b.sock");
    let shared_sock = run.join("shared.sock");
    for s in [&a_sock, &b_sock, &shared_sock] {
        let mode = std::fs::metadata(s).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660, "{}", s.display());
    }
    let yaml = [("X-Kustos-Format", "yaml")];
    // Tenant a's socket: a's keys only.
    let (code, body) = post(&a_sock, "/v1/decrypt", &yaml, &f.a_secret);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains(A_SECRET));
    let (code, body) = post(&a_sock, "/v1/decrypt", &yaml, &f.b_secret);
    assert_eq!(code, 422, "{body}");
    assert_nothing_leaks("b's file on a's socket", body.as_bytes());
    // Naming another tenant on a's socket is refused, header or query.
    let (code, body) = post(
        &a_sock,
        "/v1/decrypt",
        &[("X-Kustos-Format", "yaml"), ("X-Kustos-Tenant", "tenant-b")],
        &f.b_secret,
    );
    assert_eq!(code, 403, "{body}");
    assert_nothing_leaks("header on a's socket", body.as_bytes());
    let (code, _) = post(&a_sock, "/v1/decrypt?tenant=tenant-b", &yaml, &f.b_secret);
    assert_eq!(code, 403);
    let (code, body) = post(
        &a_sock,
        "/v1/render",
        &[],
        br#"{"path": "tenants/b/app", "tenant": "tenant-b"}"#,
    );
    assert_eq!(code, 403, "{body}");
    // Render over a's socket: a's folder works, b's cannot be opened.
    if which("kubectl").is_some() {
        let (code, body) = post(&a_sock, "/v1/render", &[], br#"{"path": "tenants/a/app"}"#);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains(A_SECRET));
        let (code, body) = post(&a_sock, "/v1/render", &[], br#"{"path": "tenants/b/app"}"#);
        assert_eq!(code, 422, "{body}");
        assert_nothing_leaks("b's folder on a's socket", body.as_bytes());
    }
    // A shared socket does not take the tenant from the request.
    let (code, body) = post(
        &shared_sock,
        "/v1/decrypt",
        &[("X-Kustos-Format", "yaml"), ("X-Kustos-Tenant", "tenant-b")],
        &f.b_secret,
    );
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("--trust-tenant-header"), "{body}");
    assert_nothing_leaks("shared socket", body.as_bytes());
    // Tenant folders come and go, and so do their sockets.
    let (_, kc) = new_age_key(f.env.dir.path(), "tenant-c");
    write(
        &f.keys.join("tenant-c/age.agekey"),
        std::fs::read(&kc).unwrap(),
    );
    eventually("tenant-c's socket", || run.join("tenant-c.sock").exists());
    std::fs::remove_dir_all(f.keys.join("tenant-c")).unwrap();
    eventually("tenant-c's socket to go", || {
        !run.join("tenant-c.sock").exists()
    });
    assert_nothing_leaks("logs", srv.logs().as_bytes());
    assert!(!srv.logs().contains(A_SECRET));
}

#[test]
fn the_sidecar_refuses_remote_listeners_and_hides_tenants_from_remote_metrics() {
    let Some(_) = require("curl", which("curl")) else {
        return;
    };
    let env = Env::new();
    let keys = env.path("keys");
    write(
        &keys.join("tenant-a/a.agekey"),
        std::fs::read(&env.key_file).unwrap(),
    );
    let o = env.kustos(&[
        "serve",
        "--keys-dir",
        keys.to_str().unwrap(),
        "--listen",
        "0.0.0.0:0",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("non-loopback") && err.contains("--allow-remote"),
        "{err}"
    );
    // The same address twice is named as such.
    let o = env.kustos(&[
        "serve",
        "--keys-dir",
        keys.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--listen",
        "tcp://127.0.0.1:0",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("given twice"), "{err}");
    // Probes may be remote; /metrics there does not list tenant names.
    let srv = Sidecar::start(
        &env,
        &keys,
        &["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"],
    );
    let addrs = srv.wait_listening(2);
    let admin = addrs.iter().find(|a| a.starts_with("0.0.0.0:")).unwrap();
    let local = addrs.iter().find(|a| a.starts_with("127.0.0.1:")).unwrap();
    let port = admin.rsplit(':').next().unwrap();
    let get = |url: String| {
        let o = Command::new(which("curl").unwrap())
            .args(["-sS", &url])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let remote = get(format!("http://127.0.0.1:{port}/metrics"));
    assert!(remote.contains("kustos_tenants 1"), "{remote}");
    assert!(!remote.contains("tenant-a"), "{remote}");
    let loopback = get(format!("http://{local}/metrics"));
    assert!(
        loopback.contains("kustos_keys{tenant=\"tenant-a\"} 1"),
        "{loopback}"
    );
}

#[test]
fn a_document_with_thousands_of_stanzas_is_refused_cheaply() {
    let (Some(sops), Some(_)) = (sops(), require("curl", which("curl"))) else {
        return;
    };
    let f = fleet(&sops);
    // Thousands of copies of a's age entry: each would cost an X25519
    // operation to try.
    let text = String::from_utf8_lossy(&f.a_secret).into_owned();
    let start = text.find("    age:\n").expect("an age list") + "    age:\n".len();
    let end = text[start..]
        .find("\n    lastmodified:")
        .map(|i| start + i + 1)
        .unwrap();
    let entry = &text[start..end];
    let flood = format!("{}{}{}", &text[..start], entry.repeat(3000), &text[end..]);
    let run = f.env.path("run");
    std::fs::create_dir_all(&run).unwrap();
    let srv = Sidecar::start(
        &f.env,
        &f.keys,
        &[
            "--listen",
            &format!("unix://{}/{{tenant}}.sock", run.display()),
            "--max-body",
            "16MiB",
        ],
    );
    srv.wait_listening(2);
    let t = Instant::now();
    let (code, body) = post(
        &run.join("tenant-a.sock"),
        "/v1/decrypt",
        &[("X-Kustos-Format", "yaml")],
        flood.as_bytes(),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("master keys"), "{body}");
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn edit_keeps_plaintext_in_memory_and_scrubs_it_on_ctrl_c() {
    let env = Env::new();
    let p = env.write("s.yaml", b"stringData:\n    password: s3cret\n");
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, p.to_str().unwrap()]));
    let file = env.write("s.enc.yaml", &enc);
    let runtime = env.path("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).unwrap();
    // An editor that notes where the plaintext is, then gets Ctrl-C along
    // with kustos (the terminal signals the whole foreground group).
    let seen = env.path("seen-path");
    let editor = env.write(
        "editor.sh",
        format!(
            "#!/bin/sh\necho \"$1\" > {}\nkill -INT $PPID\nkill -INT $$\nsleep 5\n",
            seen.display()
        )
        .as_bytes(),
    );
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = env
        .cmd(&kustos_bin())
        .env("EDITOR", &editor)
        .env("XDG_RUNTIME_DIR", &runtime)
        .args(["edit", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(85),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let tmp = PathBuf::from(std::fs::read_to_string(&seen).unwrap().trim());
    assert!(
        tmp.starts_with(&runtime),
        "plaintext was at {}",
        tmp.display()
    );
    assert!(!tmp.exists(), "the plaintext file is gone");
    assert!(!tmp.parent().unwrap().exists(), "its folder too");
    assert_eq!(std::fs::read(&file).unwrap(), enc, "the file is unchanged");
}

#[test]
fn the_argo_cd_plugin_uses_the_destination_namespace_keys_only() {
    let (Some(sops), Some(_)) = (sops(), kubectl()) else {
        return;
    };
    let f = fleet(&sops);
    let generate = |app: &str, ns: &str| {
        f.env
            .cmd(&kustos_bin())
            .current_dir(f.root.join(app))
            .env("ARGOCD_APP_NAMESPACE", ns)
            .env("KUSTOS_KEYS_DIR", &f.keys)
            .args(["cmp", "generate"])
            .output()
            .unwrap()
    };
    let out = ok(&generate("tenants/a/app", "tenant-a"));
    assert!(String::from_utf8_lossy(&out).contains(A_SECRET));
    // b's Application pointed at a's destination: a's keys cannot open it.
    let o = generate("tenants/b/app", "tenant-a");
    assert_refused("b's folder as tenant-a", &o, &["secret.yaml"]);
    let out = ok(&generate("tenants/b/app", "tenant-b"));
    assert!(String::from_utf8_lossy(&out).contains(B_SECRET));
}
