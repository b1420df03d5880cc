//! `kustos validate`'s schema check on a kustos-made fleet and on the
//! flux2-multi-tenancy reference layout: clean trees have no findings, and
//! each planted mistake (unknown field, wrong type, missing required field,
//! wrong enum value, wrong apiVersion) in a Flux object, a Kubernetes object
//! and a Kyverno policy is found with its file, object and path.

use std::path::{Path, PathBuf};

use crate::common::*;
use serde_json::Value as Json;

fn kubectl() -> Option<PathBuf> {
    require("kubectl (with built-in kustomize)", which("kubectl"))
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn fleet(env: &Env) -> PathBuf {
    let repo = env.path("fleet");
    let r = repo.to_str().unwrap();
    ok(&env.kustos(&["init", r, "--age", &env.recipient]));
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
    repo
}

fn report(env: &Env, repo: &Path, extra: &[&str]) -> Json {
    let mut args = vec!["validate", repo.to_str().unwrap(), "-o", "json"];
    args.extend_from_slice(extra);
    let o = env.kustos(&args);
    let v: Json = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    assert_eq!(
        o.status.code(),
        Some(if v["ok"] == true { 0 } else { 1 }),
        "{v:#}"
    );
    v
}

/// Plants `content` in `file`, expects a finding with `rule`, `object` and
/// `path` in `want_file`, and restores the file.
struct Planter<'a> {
    env: &'a Env,
    repo: &'a Path,
    extra: Vec<&'a str>,
}

impl Planter<'_> {
    fn expect(
        &self,
        file: &str,
        edit: &dyn Fn(&str) -> String,
        want: (&str, &str, &str, &str),
    ) -> Json {
        let p = self.repo.join(file);
        let before = std::fs::read_to_string(&p).unwrap();
        let after = edit(&before);
        assert_ne!(before, after, "the edit of {file} changed nothing");
        std::fs::write(&p, &after).unwrap();
        let v = report(self.env, self.repo, &self.extra);
        std::fs::write(&p, &before).unwrap();
        let (want_file, rule, object, path) = want;
        let found = v["findings"].as_array().unwrap().iter().find(|f| {
            f["file"] == want_file
                && f["rule"] == rule
                && f["object"] == object
                && f["path"] == path
        });
        match found {
            Some(f) => f.clone(),
            None => panic!("expected {rule} {object} {path} in {want_file}: {v:#}"),
        }
    }
}

fn replace<'a>(from: &'a str, to: &'a str) -> impl Fn(&str) -> String + 'a {
    move |s: &str| s.replacen(from, to, 1)
}

#[test]
fn a_kustos_fleet_is_clean_and_each_mistake_is_found() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = fleet(&env);
    let v = report(&env, &repo, &[]);
    assert_eq!(v["findings"], serde_json::json!([]), "{v:#}");
    assert!(v["schemas"]["checked"].as_u64().unwrap() >= 10, "{v:#}");
    assert_eq!(v["schemas"]["skipped"], 0, "{v:#}");
    assert_eq!(v["schemas"]["kubernetes"], "1.34");

    let t = Planter {
        env: &env,
        repo: &repo,
        extra: vec![],
    };
    let sync = "tenants/base/team/sync.yaml";
    let ks = "Kustomization/team/team";
    // Flux objects.
    let f = t.expect(
        sync,
        &replace("  interval: 5m0s", "  intervall: 5m0s"),
        (sync, "schema", ks, "spec.intervall"),
    );
    assert_eq!(
        f["message"],
        "Kustomization/team/team spec.intervall: unknown field"
    );
    assert_eq!(f["line"], 19);
    t.expect(
        sync,
        &replace("prune: true", "prune: \"yes\""),
        (sync, "schema", ks, "spec.prune"),
    );
    t.expect(
        sync,
        &replace("  url: https://github.com/org/team\n", ""),
        (sync, "schema", "GitRepository/team/team", "spec.url"),
    );
    t.expect(
        sync,
        &replace("    kind: GitRepository\n", "    kind: GitRepo\n"),
        (sync, "schema", ks, "spec.sourceRef.kind"),
    );
    t.expect(
        sync,
        &replace(
            "kustomize.toolkit.fluxcd.io/v1",
            "kustomize.toolkit.fluxcd.io/v2",
        ),
        (sync, "schema-api-version", ks, "apiVersion"),
    );
    // Kubernetes objects.
    let rbac = "tenants/base/team/rbac.yaml";
    t.expect(
        rbac,
        &replace(
            "  name: team\n  namespace: team\n",
            "  name: team\n  namespace: team\nautomount: false\n",
        ),
        (rbac, "schema", "ServiceAccount/team/team", "automount"),
    );
    t.expect(
        rbac,
        &replace(
            "  namespace: team\n",
            "  namespace: team\nautomountServiceAccountToken: \"no\"\n",
        ),
        (
            rbac,
            "schema",
            "ServiceAccount/team/team",
            "automountServiceAccountToken",
        ),
    );
    t.expect(
        rbac,
        &replace("  kind: ClusterRole\n", ""),
        (
            rbac,
            "schema",
            "RoleBinding/team/team-reconciler",
            "roleRef.kind",
        ),
    );
    t.expect(
        rbac,
        &replace(
            "rbac.authorization.k8s.io/v1\nkind: RoleBinding",
            "rbac.authorization.k8s.io/v1beta1\nkind: RoleBinding",
        ),
        (
            rbac,
            "schema-api-version",
            "RoleBinding/team/team-reconciler",
            "apiVersion",
        ),
    );
    t.expect(
        rbac,
        &replace(
            "kind: Namespace\nmetadata:\n",
            "kind: Namespace\nmetadata:\n  labelz: {}\n",
        ),
        (rbac, "schema", "Namespace/team", "metadata.labelz"),
    );
    // Kyverno policies.
    let pol = "infrastructure/kyverno-policies/require-service-account.yaml";
    let cp = "ClusterPolicy/require-service-account";
    t.expect(
        pol,
        &replace("failureAction: Enforce", "failureAction: Block"),
        (pol, "schema", cp, "spec.rules[0].validate.failureAction"),
    );
    t.expect(
        pol,
        &replace("background: true", "background: \"true\""),
        (pol, "schema", cp, "spec.background"),
    );
    t.expect(
        pol,
        &replace("  background: true", "  backgroundd: true"),
        (pol, "schema", cp, "spec.backgroundd"),
    );
    t.expect(
        pol,
        &replace(
            "    - name: require-service-account-name\n      match:",
            "    - match:",
        ),
        (pol, "schema", cp, "spec.rules[0].name"),
    );
    t.expect(
        pol,
        &replace("kyverno.io/v1", "kyverno.io/v3"),
        (pol, "schema-api-version", cp, "apiVersion"),
    );
    // Files under clusters/ are checked even without a build.
    let infra = "clusters/staging/infrastructure.yaml";
    let no_build = Planter {
        env: &env,
        repo: &repo,
        extra: vec!["--no-build"],
    };
    no_build.expect(
        infra,
        &replace("  prune: true", "  prune: 1"),
        (
            infra,
            "schema",
            "Kustomization/flux-system/kyverno",
            "spec.prune",
        ),
    );
}

#[test]
fn secrets_are_checked_without_sops_and_never_show_values() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = fleet(&env);
    let file = "tenants/base/team/token.yaml";
    std::fs::write(
        repo.join(file),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\n  namespace: team\nstringData:\n  token: s3cr3t-value\n",
    )
    .unwrap();
    let k = repo.join("tenants/base/team/kustomization.yaml");
    let kust = std::fs::read_to_string(&k).unwrap();
    std::fs::write(
        &k,
        kust.replace("  - sync.yaml\n", "  - sync.yaml\n  - token.yaml\n"),
    )
    .unwrap();
    let o = env
        .cmd(&kustos_bin())
        .current_dir(&repo)
        .args(["encrypt", "-i", file])
        .output()
        .unwrap();
    ok(&o);
    let v = report(&env, &repo, &[]);
    assert_eq!(v["findings"], serde_json::json!([]), "{v:#}");
    let t = Planter {
        env: &env,
        repo: &repo,
        extra: vec![],
    };
    let f = t.expect(
        file,
        &replace("stringData:", "stringDat:"),
        (file, "schema", "Secret/team/token", "stringDat"),
    );
    let enc = std::fs::read_to_string(repo.join(file)).unwrap();
    let value = enc
        .lines()
        .find(|l| l.contains("token: ENC["))
        .unwrap()
        .trim()
        .trim_start_matches("token: ");
    let text = f.to_string();
    assert!(
        !text.contains(value) && !text.contains("ENC[") && !text.contains("s3cr3t"),
        "{text}"
    );
    // A wrong type in a Secret names the type, never the value.
    let f = t.expect(
        file,
        &|s: &str| s.replacen("kind: Secret\n", "kind: Secret\ntype: 42\n", 1),
        (file, "schema", "Secret/team/token", "type"),
    );
    assert_eq!(
        f["message"],
        "Secret/team/token type: must be a string, not an integer"
    );
}

#[test]
fn the_reference_layout_is_clean_and_findings_point_at_their_source() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = env.path("reference");
    copy_dir(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/flux2-multi-tenancy"),
        &repo,
    );
    let v = report(&env, &repo, &[]);
    assert_eq!(v["findings"], serde_json::json!([]), "{v:#}");
    // Its OCIRepository uses an API version older Flux releases served.
    let notes = v["schemas"]["not_served"].as_object().unwrap();
    assert!(
        notes
            .keys()
            .any(|k| k.starts_with("OCIRepository/flux-system/kyverno-controller")),
        "{v:#}"
    );

    let t = Planter {
        env: &env,
        repo: &repo,
        extra: vec![],
    };
    // A base defines the field: the finding names the base.
    let base = "tenants/base/dev-team/sync.yaml";
    t.expect(
        base,
        &replace("  interval: 5m", "  intervall: 5m"),
        (
            base,
            "schema",
            "Kustomization/apps/dev-team",
            "spec.intervall",
        ),
    );
    t.expect(
        base,
        &replace("  interval: 1m", "  interval: 1"),
        (
            base,
            "schema",
            "GitRepository/apps/dev-team",
            "spec.interval",
        ),
    );
    // A patch sets it: the finding names the patch.
    let patch = "tenants/staging/dev-team-patch.yaml";
    let f = t.expect(
        patch,
        &replace("  path:", "  pathh:"),
        (patch, "schema", "Kustomization/apps/dev-team", "spec.pathh"),
    );
    assert!(f["line"].as_u64().is_some(), "{f:#}");
    let rbac = "tenants/base/dev-team/rbac.yaml";
    t.expect(
        rbac,
        &replace(
            "rbac.authorization.k8s.io/v1\nkind: RoleBinding",
            "rbac.authorization.k8s.io/v1beta1\nkind: RoleBinding",
        ),
        (
            rbac,
            "schema-api-version",
            "RoleBinding/apps/gotk-reconciler",
            "apiVersion",
        ),
    );
    // Kyverno policies of the reference repository.
    let pol = "infrastructure/kyverno-policies/verify-git-repositories.yaml";
    let cp = "ClusterPolicy/verify-git-repositories";
    t.expect(
        pol,
        &replace(
            "validationFailureAction: Audit",
            "validationFailureAction: Warn",
        ),
        (pol, "schema", cp, "spec.validationFailureAction"),
    );
    t.expect(
        pol,
        &replace(
            "    - name: github-repositories-only",
            "    - nam: github-repositories-only",
        ),
        (pol, "schema", cp, "spec.rules[0].nam"),
    );
}

#[test]
fn crd_schemas_given_with_schemas_are_used() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = fleet(&env);
    std::fs::write(
        repo.join("tenants/base/team/widget.yaml"),
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: team\nspec:\n  size: 3\n",
    )
    .unwrap();
    let k = repo.join("tenants/base/team/kustomization.yaml");
    let kust = std::fs::read_to_string(&k).unwrap();
    std::fs::write(
        &k,
        kust.replace("  - sync.yaml\n", "  - sync.yaml\n  - widget.yaml\n"),
    )
    .unwrap();
    // Without a schema the kind is skipped, and said to be.
    let v = report(&env, &repo, &[]);
    assert_eq!(v["findings"], serde_json::json!([]), "{v:#}");
    assert_eq!(
        v["schemas"]["skipped_kinds"]["example.com/v1/Widget"], 1,
        "{v:#}"
    );
    let o = env.kustos(&["validate", repo.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("1 skipped (no schema: example.com/v1/Widget (1))"),
        "{text}"
    );

    let crds = env.path("crds");
    std::fs::create_dir_all(&crds).unwrap();
    std::fs::write(
        crds.join("widgets.yaml"),
        "apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  names: {kind: Widget, plural: widgets}
  scope: Namespaced
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            spec:
              type: object
              properties:
                size: {type: integer, maximum: 10}
",
    )
    .unwrap();
    let dir = crds.to_str().unwrap();
    let v = report(&env, &repo, &["--schemas", dir]);
    assert_eq!(v["findings"], serde_json::json!([]), "{v:#}");
    assert_eq!(v["schemas"]["skipped"], 0, "{v:#}");
    let t = Planter {
        env: &env,
        repo: &repo,
        extra: vec!["--schemas", dir],
    };
    let w = "tenants/base/team/widget.yaml";
    let f = t.expect(
        w,
        &replace("size: 3", "size: 30"),
        (w, "schema", "Widget/team/w", "spec.size"),
    );
    assert_eq!(f["message"], "Widget/team/w spec.size: must be at most 10");
    t.expect(
        w,
        &replace("size: 3", "colour: red"),
        (w, "schema", "Widget/team/w", "spec.colour"),
    );
    // A folder that does not exist is a one-line error.
    let o = env.kustos(&[
        "validate",
        repo.to_str().unwrap(),
        "--schemas",
        "/nonexistent/schemas",
    ]);
    assert_ne!(o.status.code(), Some(0));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--schemas /nonexistent/schemas") && err.trim().lines().count() <= 2,
        "{err}"
    );
}

#[test]
fn sarif_output_annotates_lines() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = fleet(&env);
    let sync = repo.join("tenants/base/team/sync.yaml");
    let s = std::fs::read_to_string(&sync).unwrap();
    std::fs::write(&sync, s.replace("prune: true", "prune: \"yes\"")).unwrap();
    let o = env.kustos(&["validate", repo.to_str().unwrap(), "-o", "sarif"]);
    assert_eq!(o.status.code(), Some(1));
    let log: Json = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "kustos");
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 1, "{log:#}");
    let r = &results[0];
    assert_eq!(r["ruleId"], "schema");
    let loc = &r["locations"][0]["physicalLocation"];
    assert_eq!(
        loc["artifactLocation"]["uri"],
        "tenants/base/team/sync.yaml"
    );
    assert_eq!(loc["region"]["startLine"], 21);
    assert!(run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| x["id"] == "schema"));
}

/// The hooks in .pre-commit-hooks.yaml run as pre-commit runs them: the
/// entry, then (unless `pass_filenames: false`) the staged files.
#[test]
fn pre_commit_hooks_run() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = fleet(&env);
    let hooks_file = Path::new(env!("CARGO_MANIFEST_DIR")).join(".pre-commit-hooks.yaml");
    let text = std::fs::read_to_string(hooks_file).unwrap();
    // The file is a YAML list of flat mappings; wrapping it in a key makes
    // it a document kustos' YAML loader takes.
    let wrapped = format!(
        "hooks:\n{}",
        text.lines().map(|l| format!("  {l}\n")).collect::<String>()
    );
    let docs =
        kustos::formats::load_plain(kustos::formats::Format::Yaml, wrapped.as_bytes()).unwrap();
    let json =
        kustos::formats::emit_plain(kustos::formats::Format::Json, &docs, &Default::default())
            .unwrap();
    let hooks: Vec<Json> = serde_json::from_slice::<Json>(&json).unwrap()["hooks"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    let run = |id: &str, staged: &[&str]| {
        let hook = hooks.iter().find(|h| h["id"] == id).unwrap();
        let entry: Vec<&str> = hook["entry"].as_str().unwrap().split_whitespace().collect();
        assert_eq!(entry[0], "kustos");
        let mut cmd = env.cmd(&kustos_bin());
        cmd.current_dir(&repo).args(&entry[1..]);
        if hook["pass_filenames"] != false {
            cmd.args(staged);
        }
        cmd.output().unwrap()
    };
    assert_eq!(run("kustos-validate", &[]).status.code(), Some(0));
    assert_eq!(
        run("kustos-plaintext-secrets", &["tenants/base/team/sync.yaml"])
            .status
            .code(),
        Some(0)
    );
    let file = "tenants/base/team/token.yaml";
    std::fs::write(
        repo.join(file),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\nstringData:\n  token: plain\n",
    )
    .unwrap();
    let o = run(
        "kustos-plaintext-secrets",
        &["tenants/base/team/sync.yaml", file],
    );
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("tenants/base/team/token.yaml: secret-not-encrypted"),
        "{out}"
    );
    assert!(
        !out.contains("plain\n") && !out.contains(": plain"),
        "{out}"
    );
    ok(&env
        .cmd(&kustos_bin())
        .current_dir(&repo)
        .args(["encrypt", "-i", file])
        .output()
        .unwrap());
    assert_eq!(
        run("kustos-plaintext-secrets", &[file]).status.code(),
        Some(0)
    );
}
