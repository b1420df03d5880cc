//! The onboarding flow end to end: `init`, `tenant add` (SSH scanned from a
//! real sshd, and basic auth), builds with the real `kubectl kustomize`,
//! credentials checked with the real sops, `validate`, idempotency and
//! `tenant remove`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::common::*;
use kustos::formats::{self, Format};
use kustos::sops::value::{Map, Value};

fn kubectl() -> Option<PathBuf> {
    require("kubectl (with built-in kustomize)", which("kubectl"))
}

fn build(env: &Env, kubectl: &Path, dir: &Path) -> Vec<Map> {
    let out = env
        .cmd(kubectl)
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(dir)
        .output()
        .unwrap();
    formats::load_plain(Format::Yaml, &ok(&out)).unwrap()
}

fn find<'a>(objs: &'a [Map], kind: &str, name: &str) -> &'a Map {
    objs.iter()
        .find(|o| {
            o.str_at(&["kind"]) == Some(kind) && o.str_at(&["metadata", "name"]) == Some(name)
        })
        .unwrap_or_else(|| panic!("no {kind}/{name} in the build"))
}

fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, d: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

#[track_caller]
fn same_tree(a: &BTreeMap<PathBuf, Vec<u8>>, b: &BTreeMap<PathBuf, Vec<u8>>) {
    let keys: std::collections::BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    let differ: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| match (a.get(k), b.get(k)) {
            (Some(x), Some(y)) => format!(
                "{} differs:\n{}\n---\n{}",
                k.display(),
                String::from_utf8_lossy(x),
                String::from_utf8_lossy(y)
            ),
            (Some(_), None) => format!("{} only before", k.display()),
            _ => format!("{} only after", k.display()),
        })
        .collect();
    assert!(differ.is_empty(), "trees differ: {}", differ.join("\n"));
}

#[test]
fn onboarding_flow_with_ssh_and_basic_auth() {
    let (Some(sops), Some(kubectl)) = (sops(), kubectl()) else {
        return;
    };
    let Some(sshd) = TestSshd::start(&["ecdsa", "ed25519"]) else {
        return;
    };
    let env = Env::new();
    let repo = env.path("fleet");
    ok(&env.kustos(&[
        "init",
        repo.to_str().unwrap(),
        "--age",
        &env.recipient,
        "--allowed-source",
        "ssh://git@127.0.0.1:*",
        "--allowed-source",
        "https://git.example.com/*",
    ]));
    let pristine = snapshot(&repo);
    let r = repo.to_str().unwrap();
    let ssh_url = format!("ssh://git@127.0.0.1:{}/org/dev-team", sshd.port);
    ok(&env.kustos(&[
        "tenant",
        "add",
        "dev-team",
        "--repo",
        r,
        "-n",
        "apps",
        "-n",
        "apps-extra",
        "--git-url",
        &ssh_url,
        "--env-path",
        "production=./prod",
    ]));
    ok(&env.kustos_stdin(
        &[
            "tenant",
            "add",
            "web",
            "--repo",
            r,
            "-n",
            "web",
            "--git-url",
            "https://git.example.com/org/web",
            "--password-stdin",
            "--service-account",
            "web-deployer",
            "--branch",
            "release",
        ],
        b"t0ken-for-web\n",
    ));
    let after_add = snapshot(&repo);

    // Both environments build with the real kustomize, with the right objects.
    for (env_name, dev_path) in [("staging", "./staging"), ("production", "./prod")] {
        let objs = build(&env, &kubectl, &repo.join("tenants").join(env_name));
        for ns in ["apps", "apps-extra"] {
            let n = objs
                .iter()
                .find(|o| {
                    o.str_at(&["kind"]) == Some("Namespace")
                        && o.str_at(&["metadata", "name"]) == Some(ns)
                })
                .unwrap();
            assert_eq!(
                n.str_at(&["metadata", "labels", "toolkit.fluxcd.io/tenant"]),
                Some("dev-team")
            );
        }
        let rb = find(&objs, "RoleBinding", "dev-team-reconciler");
        assert_eq!(rb.str_at(&["roleRef", "name"]), Some("cluster-admin"));
        let gr = find(&objs, "GitRepository", "dev-team");
        assert_eq!(gr.str_at(&["metadata", "namespace"]), Some("apps"));
        assert_eq!(
            gr.str_at(&["spec", "secretRef", "name"]),
            Some("dev-team-auth")
        );
        assert_eq!(gr.str_at(&["spec", "url"]), Some(ssh_url.as_str()));
        let k = find(&objs, "Kustomization", "dev-team");
        assert_eq!(k.str_at(&["spec", "serviceAccountName"]), Some("dev-team"));
        assert_eq!(k.str_at(&["spec", "sourceRef", "name"]), Some("dev-team"));
        assert_eq!(k.str_at(&["spec", "path"]), Some(dev_path), "{env_name}");
        assert!(matches!(
            k.get("spec")
                .and_then(|v| v.as_map())
                .and_then(|sp| sp.get("prune")),
            Some(Value::Bool(true))
        ));
        let k = find(&objs, "Kustomization", "web");
        assert_eq!(
            k.str_at(&["spec", "serviceAccountName"]),
            Some("web-deployer")
        );
        assert_eq!(
            find(&objs, "GitRepository", "web").str_at(&["spec", "ref", "branch"]),
            Some("release")
        );
        // The credentials are still SOPS-encrypted after the build.
        let secret = find(&objs, "Secret", "dev-team-auth");
        assert!(secret.contains_key("sops"));
        assert!(secret
            .str_at(&["stringData", "identity"])
            .unwrap()
            .starts_with("ENC[AES256_GCM"));
    }
    let policies = build(
        &env,
        &kubectl,
        &repo.join("infrastructure/kyverno-policies"),
    );
    assert_eq!(policies.len(), 3);
    assert!(policies
        .iter()
        .all(|p| p.str_at(&["kind"]) == Some("ClusterPolicy")));

    // The SSH credential decrypts with the real sops and works: the key
    // matches identity.pub and known_hosts has the server's key.
    let auth = repo.join("tenants/base/dev-team/auth.yaml");
    let plain = ok(&env.sops(&sops, &["decrypt", auth.to_str().unwrap()]));
    let doc = formats::load_plain(Format::Yaml, &plain).unwrap().remove(0);
    let identity = doc.str_at(&["stringData", "identity"]).unwrap().to_string();
    let identity_pub = doc
        .str_at(&["stringData", "identity.pub"])
        .unwrap()
        .to_string();
    let known_hosts = doc
        .str_at(&["stringData", "known_hosts"])
        .unwrap()
        .to_string();
    assert!(
        known_hosts.starts_with(&format!("[127.0.0.1]:{} ", sshd.port)),
        "{known_hosts}"
    );
    assert!(
        known_hosts.contains(&sshd.host_key("ecdsa"))
            || known_hosts.contains(&sshd.host_key("ed25519")),
        "{known_hosts}"
    );
    let keyfile = env.write("id", identity.as_bytes());
    std::fs::set_permissions(
        &keyfile,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let derived = ok(&env
        .cmd(&which("ssh-keygen").unwrap())
        .args(["-y", "-f", keyfile.to_str().unwrap()])
        .output()
        .unwrap());
    assert_eq!(
        String::from_utf8_lossy(&derived).trim(),
        identity_pub.trim()
    );
    let web = ok(&env.sops(
        &sops,
        &[
            "decrypt",
            repo.join("tenants/base/web/auth.yaml").to_str().unwrap(),
        ],
    ));
    assert!(String::from_utf8_lossy(&web).contains("password: t0ken-for-web"));
    assert!(!String::from_utf8_lossy(
        &std::fs::read(repo.join("tenants/base/web/auth.yaml")).unwrap()
    )
    .contains("t0ken-for-web"));

    // validate passes; the tenants are listed with encrypted credentials.
    ok(&env.kustos(&["validate", r]));
    let list = String::from_utf8(ok(
        &env.kustos(&["tenant", "list", "--repo", r, "-o", "json"])
    ))
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["name"], "dev-team");
    assert_eq!(v[0]["credentials"], "encrypted");
    assert_eq!(
        v[0]["namespaces"],
        serde_json::json!(["apps", "apps-extra"])
    );

    // Re-running add changes nothing (no new credentials, no rewrite).
    ok(&env.kustos(&[
        "tenant",
        "add",
        "dev-team",
        "--repo",
        r,
        "-n",
        "apps",
        "-n",
        "apps-extra",
        "--git-url",
        &ssh_url,
        "--env-path",
        "production=./prod",
    ]));
    same_tree(&snapshot(&repo), &after_add);
    // An edited file is not overwritten without --force.
    let sync = repo.join("tenants/base/dev-team/sync.yaml");
    let edited = std::fs::read_to_string(&sync)
        .unwrap()
        .replace("interval: 5m0s", "interval: 7m0s");
    std::fs::write(&sync, &edited).unwrap();
    let o = env.kustos(&[
        "tenant",
        "add",
        "dev-team",
        "--repo",
        r,
        "-n",
        "apps",
        "-n",
        "apps-extra",
        "--git-url",
        &ssh_url,
        "--env-path",
        "production=./prod",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("- ") && err.contains("7m0s") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read_to_string(&sync).unwrap(), edited);
    ok(&env.kustos(&[
        "tenant",
        "add",
        "dev-team",
        "--repo",
        r,
        "-n",
        "apps",
        "-n",
        "apps-extra",
        "--git-url",
        &ssh_url,
        "--env-path",
        "production=./prod",
        "--force",
    ]));
    same_tree(&snapshot(&repo), &after_add);

    // Deleting credentials needs -y and names the file; nothing before.
    let o = env.kustos(&["tenant", "remove", "web", "--repo", r]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("tenants/base/web/auth.yaml") && err.contains("-y"),
        "{err}"
    );
    same_tree(&snapshot(&repo), &after_add);
    // remove restores the tree byte for byte.
    ok(&env.kustos(&["tenant", "remove", "web", "--repo", r, "-y"]));
    ok(&env.kustos(&["tenant", "remove", "dev-team", "--repo", r, "-y"]));
    same_tree(&snapshot(&repo), &pristine);
}

#[test]
fn validate_names_each_mistake() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = env.path("fleet");
    let r = repo.to_str().unwrap();
    ok(&env.kustos(&[
        "init",
        r,
        "--age",
        &env.recipient,
        "--allowed-source",
        "https://github.com/org/*",
    ]));
    ok(&env.kustos(&[
        "tenant",
        "add",
        "team",
        "--repo",
        r,
        "-n",
        "team",
        "--git-url",
        "https://github.com/org/team",
        "--auth",
        "none",
    ]));
    ok(&env.kustos(&["validate", r]));
    let json = |o: &std::process::Output| -> serde_json::Value {
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let check = |file: &str, content: &str, rule: &str| {
        let p = repo.join(file);
        let before = std::fs::read(&p).ok();
        std::fs::write(&p, content).unwrap();
        let o = env.kustos(&["validate", r, "-o", "json"]);
        assert_eq!(o.status.code(), Some(1), "{rule}");
        let v = json(&o);
        let found = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rule"] == rule && f["file"] == file);
        assert!(found, "expected {rule} in {file}: {v:#}");
        match before {
            Some(b) => std::fs::write(&p, b).unwrap(),
            None => std::fs::remove_file(&p).unwrap(),
        }
    };
    check("tenants/base/team/creds.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: x\n  namespace: team\nstringData:\n  password: plain\n", "secret-not-encrypted");
    let sync = std::fs::read_to_string(repo.join("tenants/base/team/sync.yaml")).unwrap();
    check(
        "tenants/base/team/sync.yaml",
        &sync.replace("  serviceAccountName: team\n", ""),
        "service-account",
    );
    check(
        "tenants/base/team/sync.yaml",
        &sync.replace(
            "    kind: GitRepository\n    name: team\n",
            "    kind: GitRepository\n    name: team\n    namespace: flux-system\n",
        ),
        "cross-namespace-ref",
    );
    check(
        "tenants/base/team/sync.yaml",
        &sync.replace("https://github.com/org/team", "https://evil.example.com/x"),
        "source-url",
    );
    let k = std::fs::read_to_string(repo.join("tenants/base/team/kustomization.yaml")).unwrap();
    check(
        "tenants/base/team/kustomization.yaml",
        &format!("{k}  - https://github.com/other/repo//base?ref=main\n"),
        "remote-base",
    );
    check("tenants/base/team/broken.yaml", "a: [1, 2\n", "yaml-syntax");
    // A plaintext Secret in any folder, in any document.
    check(
        "infrastructure/kyverno/creds.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: c\nstringData:\n  token: plain\n",
        "secret-not-encrypted",
    );
    check(
        "tenants/base/team/two.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: b\ndata:\n  k: cGxhaW4=\n",
        "secret-not-encrypted",
    );
    // secretGenerator inputs: literals and plaintext files.
    check(
        "tenants/base/team/kustomization.yaml",
        &format!("{k}secretGenerator:\n  - name: g\n    literals:\n      - password=plain\n"),
        "secret-not-encrypted",
    );
    std::fs::write(repo.join("tenants/base/team/app.env"), "PASSWORD=plain\n").unwrap();
    check(
        "tenants/base/team/kustomization.yaml",
        &format!("{k}secretGenerator:\n  - name: g\n    envs:\n      - app.env\n"),
        "secret-not-encrypted",
    );
    std::fs::remove_file(repo.join("tenants/base/team/app.env")).unwrap();
    ok(&env.kustos(&["validate", r]));
    // A .sops.yaml that leaves a manifest folder uncovered is a finding.
    check(
        ".sops.yaml",
        &format!(
            "creation_rules:\n  - path_regex: ^tenants/.*\\.ya?ml$\n    age: {}\n",
            env.recipient
        ),
        "sops-coverage",
    );
    // init's .sops.yaml covers infrastructure/ too: the plaintext Secret
    // there can be encrypted in place.
    let creds = repo.join("infrastructure/kyverno/creds.yaml");
    std::fs::write(
        &creds,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: c\nstringData:\n  token: plain\n",
    )
    .unwrap();
    let o = env
        .cmd(&kustos_bin())
        .current_dir(&repo)
        .args(["encrypt", "-i", "infrastructure/kyverno/creds.yaml"])
        .output()
        .unwrap();
    ok(&o);
    ok(&env.kustos(&["validate", r]));
}

/// Files the cluster can no longer open: after a fleet-wide rotation that
/// drops the cluster's key, validate names every such file.
#[test]
fn validate_catches_files_the_cluster_cannot_decrypt() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = env.path("fleet");
    let r = repo.to_str().unwrap();
    ok(&env.kustos(&["init", r, "--age", &env.recipient]));
    ok(&env.kustos_stdin(
        &[
            "tenant",
            "add",
            "team",
            "--repo",
            r,
            "-n",
            "team",
            "--git-url",
            "https://github.com/org/team",
            "--password-stdin",
        ],
        b"token\n",
    ));
    ok(&env.kustos(&["validate", r]));
    let (other, _) = new_age_key(env.dir.path(), "other");
    ok(&env.kustos(&["fleet", "rotate", r, "--add-age", &other, "-y"]));
    ok(&env.kustos(&["fleet", "rotate", r, "--rm-age", &env.recipient, "-y"]));
    let o = env.kustos(&["validate", r, "-o", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_string(),
                f["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for rule in ["sops-recipients", "sops-cluster-key"] {
        assert!(
            rules.contains(&("tenants/base/team/auth.yaml".to_string(), rule.to_string())),
            "{rule}: {v:#}"
        );
    }
}

/// A copy of the flux2-multi-tenancy reference repository (testdata/).
fn reference_repo(env: &Env) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/flux2-multi-tenancy");
    let dst = env.path("reference");
    for (rel, data) in snapshot(&src) {
        let p = dst.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    dst
}

fn names(objs: &[Map], kind: &str) -> Vec<String> {
    objs.iter()
        .filter(|o| o.str_at(&["kind"]) == Some(kind))
        .map(|o| o.str_at(&["metadata", "name"]).unwrap_or("").to_string())
        .collect()
}

/// `tenant add` on a repository nobody made with kustos: the reference
/// layout's overlay-level `namespace:` moves into the tenants' bases only
/// with consent, every environment still builds with each tenant in its
/// own namespace, the source policy and namespace ownership are enforced
/// before anything is written, and `remove` restores the overlays.
#[test]
fn tenant_add_on_the_reference_repository() {
    let Some(kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = reference_repo(&env);
    let r = repo.to_str().unwrap();
    let original = snapshot(&repo);
    let add = |extra: &[&str]| {
        let mut args = vec![
            "tenant", "add", "web", "-n", "web", "--auth", "none", "--repo", r,
        ];
        args.extend_from_slice(extra);
        env.kustos(&args)
    };
    // Outside the reference policy (github.com/fluxcd/ only).
    let o = add(&["--git-url", "https://github.com/org/web"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("verify-git-repositories.yaml") && err.contains("--allow-source"),
        "{err}"
    );
    same_tree(&original, &snapshot(&repo));
    // Inside it, but the overlays set `namespace: apps` for everything.
    let o = add(&["--git-url", "https://github.com/fluxcd/web"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("namespace: apps") && err.contains("--yes"),
        "{err}"
    );
    same_tree(&original, &snapshot(&repo));
    // With consent.
    ok(&add(&[
        "--git-url",
        "https://github.com/fluxcd/web",
        "--yes",
    ]));
    for e in ["staging", "production"] {
        let objs = build(&env, &kubectl, &repo.join("tenants").join(e));
        assert_eq!(
            find(&objs, "Namespace", "web").str_at(&["metadata", "name"]),
            Some("web")
        );
        assert!(names(&objs, "Namespace").contains(&"apps".to_string()));
        for (name, ns) in [("web", "web"), ("dev-team", "apps")] {
            let k = objs
                .iter()
                .find(|o| {
                    o.str_at(&["kind"]) == Some("Kustomization")
                        && o.str_at(&["metadata", "name"]) == Some(name)
                })
                .unwrap();
            assert_eq!(k.str_at(&["metadata", "namespace"]), Some(ns), "{e}");
            assert_eq!(k.str_at(&["spec", "path"]), Some(format!("./{e}").as_str()));
        }
    }
    let v = env.kustos(&["validate", r, "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    // Another tenant in dev-team's namespace, or web again elsewhere.
    let before = snapshot(&repo);
    for (args, want) in [
        (
            vec![
                "tenant",
                "add",
                "clash",
                "-n",
                "apps",
                "--git-url",
                "https://github.com/fluxcd/x",
            ],
            "belongs to tenant \"dev-team\"",
        ),
        (
            vec![
                "tenant",
                "add",
                "web",
                "-n",
                "web2",
                "--git-url",
                "https://github.com/fluxcd/x",
            ],
            "already exists with namespaces web",
        ),
    ] {
        let mut args = args.clone();
        args.extend_from_slice(&["--auth", "none", "--repo", r]);
        let o = env.kustos(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(want), "{err}");
    }
    same_tree(&before, &snapshot(&repo));
    // --allow-source extends the reference policy in place.
    ok(&env.kustos(&[
        "tenant",
        "add",
        "gl",
        "-n",
        "gl",
        "--auth",
        "none",
        "--repo",
        r,
        "--git-url",
        "https://gitlab.example.com/org/gl",
        "--allow-source",
        "https://gitlab.example.com/org/*",
    ]));
    let policy = std::fs::read_to_string(
        repo.join("infrastructure/kyverno-policies/verify-git-repositories.yaml"),
    )
    .unwrap();
    assert!(
        policy.contains("https://gitlab.example.com/org/*"),
        "{policy}"
    );
    let v = env.kustos(&["validate", r, "-o", "json"]);
    let report: serde_json::Value = serde_json::from_slice(&v.stdout).unwrap();
    assert_eq!(report["findings"], serde_json::json!([]), "{report}");
    // remove takes each tenant's entries out again; the layout change stays.
    ok(&env.kustos(&["tenant", "remove", "gl", "--repo", r, "-y"]));
    ok(&env.kustos(&["tenant", "remove", "web", "--repo", r, "-y"]));
    let now = snapshot(&repo);
    for e in ["staging", "production"] {
        let k = PathBuf::from(format!("tenants/{e}/kustomization.yaml"));
        let before = String::from_utf8(original[&k].clone()).unwrap();
        assert_eq!(
            String::from_utf8(now[&k].clone()).unwrap(),
            before.replace("namespace: apps\n", ""),
            "{e}"
        );
    }
    assert!(!repo.join("tenants/base/web").exists());
}

/// A result that would not build is refused before anything is written.
#[test]
fn tenant_add_refuses_a_tree_that_does_not_build() {
    let env = Env::new();
    let repo = reference_repo(&env);
    let fake = env.write(
        "fake-kubectl",
        b"#!/bin/sh\necho 'Error: accumulating resources: boom' >&2\nexit 1\n",
    );
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let before = snapshot(&repo);
    let o = env.kustos(&[
        "tenant",
        "add",
        "web",
        "-n",
        "web",
        "--auth",
        "none",
        "--yes",
        "--git-url",
        "https://github.com/fluxcd/web",
        "--repo",
        repo.to_str().unwrap(),
        "--kubectl",
        fake.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("would not build")
            && err.contains("tenants/production")
            && err.contains("boom"),
        "{err}"
    );
    same_tree(&before, &snapshot(&repo));
}

/// Variations people make of the reference layout: `bases:` and
/// `patchesStrategicMerge:` in an overlay, no overlay namespace, no
/// `.sops.yaml`, a tenant without credentials.
#[test]
fn tenant_add_on_reference_variations() {
    let Some(kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = reference_repo(&env);
    std::fs::write(
        repo.join("tenants/staging/kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nbases:\n  - ../base/dev-team\npatchesStrategicMerge:\n  - dev-team-patch.yaml\n",
    )
    .unwrap();
    ok(&env.kustos(&[
        "tenant",
        "add",
        "web",
        "-n",
        "web",
        "--auth",
        "none",
        "--yes",
        "--git-url",
        "https://github.com/fluxcd/web",
        "--repo",
        repo.to_str().unwrap(),
    ]));
    for e in ["staging", "production"] {
        let objs = build(&env, &kubectl, &repo.join("tenants").join(e));
        let mut ns = names(&objs, "Namespace");
        ns.sort();
        assert_eq!(ns, ["apps", "web"], "{e}");
        let dev = objs
            .iter()
            .find(|o| {
                o.str_at(&["kind"]) == Some("Kustomization")
                    && o.str_at(&["metadata", "name"]) == Some("dev-team")
            })
            .unwrap();
        assert_eq!(
            dev.str_at(&["spec", "path"]),
            Some(format!("./{e}").as_str())
        );
    }
}
