//! `kustos validate`: the offline checks of the flux2-multi-tenancy CI
//! (well-formed YAML, every kustomization builds) plus the tenancy rules no
//! tool checks today: encrypted Secrets with sane metadata covered by
//! `.sops.yaml`, a `serviceAccountName` on every Kustomization and
//! HelmRelease, no cross-namespace source references, no remote bases, and
//! source URLs within the allowed patterns.

use std::path::{Path, PathBuf};
use std::process::Command;

use rayon::prelude::*;
use serde::Serialize;

use crate::config;
use crate::formats::{self, Format};
use crate::sops::value::{Map, Value};
use crate::Result;

/// One problem found.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// File, relative to the repository root.
    pub file: String,
    /// Rule identifier.
    pub rule: &'static str,
    /// What is wrong.
    pub message: String,
    /// The object, `Kind/namespace/name` (schema findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The JSON path in the object, e.g. `spec.interval` (schema findings).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The 1-based line in `file`, where it could be found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// The result of a validation run.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Report {
    /// True when there are no findings.
    pub ok: bool,
    /// YAML files checked.
    pub files_checked: usize,
    /// Kustomizations built with kustomize.
    pub kustomizations_built: usize,
    /// Problems, sorted by file.
    pub findings: Vec<Finding>,
    /// What the schema check covered (absent when it did not run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas: Option<super::schema::check::Summary>,
}

/// Options of `kustos validate`.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// Build every kustomization with `kubectl kustomize` (kustomize v5).
    pub build: bool,
    /// The kubectl binary.
    pub kubectl: PathBuf,
    /// Schemas that add to or override the built-in ones (`--schemas`).
    pub schemas: Option<PathBuf>,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            build: true,
            kubectl: PathBuf::from("kubectl"),
            schemas: None,
        }
    }
}

/// The YAML files of the repository (and `.sops.yaml`), hidden folders
/// such as `.github/` left out.
fn yaml_files(root: &Path) -> Vec<PathBuf> {
    crate::fsutil::walk(root)
        .into_iter()
        .filter(|e| !e.is_dir && (!e.is_hidden() || e.rel == Path::new(".sops.yaml")))
        .filter(|e| {
            let n = e.name();
            n.ends_with(".yaml") || n.ends_with(".yml")
        })
        .map(|e| e.path)
        .collect()
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

/// Findings of one run, sorted at the end.
#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, file: &str, rule: &'static str, message: String) {
        self.0.push(Finding {
            file: file.to_string(),
            rule,
            message,
            object: None,
            path: None,
            line: None,
        });
    }
}

/// What the checks of one run share.
struct Repo {
    /// The root `.sops.yaml`, if it parsed.
    sops_cfg: Option<config::Config>,
    /// The fleet's source policy, if it has one.
    policy: Option<super::policy::SourcePolicy>,
}

/// One YAML file and where it sits.
struct File<'a> {
    path: &'a Path,
    rel: String,
    /// Flux's own bootstrap manifests (`*/flux-system/*`).
    bootstrap: bool,
}

/// One object of a file.
struct Object<'a> {
    doc: &'a Map,
    kind: &'a str,
    api: &'a str,
    namespace: &'a str,
    /// `Kind/name`, for messages.
    name: String,
}

impl<'a> Object<'a> {
    fn of(doc: &'a Map) -> Object<'a> {
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        Object {
            doc,
            kind,
            api: doc.get("apiVersion").and_then(Value::as_str).unwrap_or(""),
            namespace: doc.str_at(&["metadata", "namespace"]).unwrap_or(""),
            name: format!(
                "{kind}/{}",
                doc.str_at(&["metadata", "name"]).unwrap_or("?")
            ),
        }
    }

    fn is_flux_kustomization(&self) -> bool {
        self.kind == "Kustomization" && self.api.starts_with("kustomize.toolkit.fluxcd.io/")
    }

    fn is_helm_release(&self) -> bool {
        self.kind == "HelmRelease" && self.api.starts_with("helm.toolkit.fluxcd.io/")
    }
}

/// A check of one object.
type ObjectCheck = fn(&Repo, &File, &Object, &mut Findings);

/// The checks every object goes through, in order.
const OBJECT_CHECKS: &[ObjectCheck] = &[
    secret_is_encrypted,
    service_account_is_set,
    sources_stay_in_namespace,
    source_url_is_allowed,
];

/// Every Secret with data, in any folder and any document, is
/// SOPS-encrypted, with sane metadata, every value encrypted, and a
/// `.sops.yaml` rule covering it.
fn secret_is_encrypted(repo: &Repo, f: &File, o: &Object, out: &mut Findings) {
    if o.kind != "Secret" || o.api != "v1" {
        return;
    }
    let holds_data = ["data", "stringData"].iter().any(|k| {
        o.doc
            .get(k)
            .and_then(Value::as_map)
            .is_some_and(|m| !m.is_empty())
    });
    if !holds_data {
        return;
    }
    let Some(md) = o.doc.get("sops") else {
        out.add(
            &f.rel,
            "secret-not-encrypted",
            format!(
                "{} is not SOPS-encrypted; run `kustos encrypt -i {}`",
                o.name, f.rel
            ),
        );
        return;
    };
    match crate::sops::metadata::from_value(md) {
        Err(e) => out.add(&f.rel, "sops-metadata", format!("{}: {e}", o.name)),
        Ok(m) if m.mac.is_empty() => out.add(
            &f.rel,
            "sops-metadata",
            format!("{}: the sops block has no MAC", o.name),
        ),
        Ok(_) => {}
    }
    for field in ["data", "stringData"] {
        if let Some(Value::Map(vals)) = o.doc.get(field) {
            for (k, v) in vals.entries() {
                let encrypted = v
                    .as_str()
                    .is_some_and(|s| s.is_empty() || crate::sops::cipher::is_encrypted_value(s));
                if !encrypted {
                    out.add(
                        &f.rel,
                        "secret-not-encrypted",
                        format!("{}: {field}.{k} is plaintext", o.name),
                    );
                }
            }
        }
    }
    match &repo.sops_cfg {
        None => out.add(
            &f.rel,
            "sops-rule",
            "no .sops.yaml at the repository root covers this Secret".into(),
        ),
        Some(c) => {
            if let Err(e) = c.rule_for(f.path) {
                out.add(
                    &f.rel,
                    "sops-rule",
                    format!(
                        "{}: .sops.yaml has no creation rule for this file ({e})",
                        o.name
                    ),
                );
            }
        }
    }
}

/// Flux Kustomizations and HelmReleases name the account they apply as.
fn service_account_is_set(_: &Repo, f: &File, o: &Object, out: &mut Findings) {
    if !(o.is_flux_kustomization() || o.is_helm_release()) || f.bootstrap {
        return;
    }
    if !o
        .doc
        .str_at(&["spec", "serviceAccountName"])
        .unwrap_or("")
        .is_empty()
    {
        return;
    }
    // Patches (no sourceRef/chart) inherit the base's account.
    let is_patch = o.doc.get("spec").and_then(Value::as_map).is_some_and(|sp| {
        !sp.contains_key("sourceRef") && !sp.contains_key("chart") && !sp.contains_key("chartRef")
    });
    if !is_patch {
        out.add(&f.rel, "service-account", format!("{} has no spec.serviceAccountName; with --default-service-account it runs as the unprivileged default account", o.name));
    }
}

/// Kustomizations and HelmReleases use sources in their own namespace.
fn sources_stay_in_namespace(_: &Repo, f: &File, o: &Object, out: &mut Findings) {
    let refs: Vec<Option<&str>> = if o.is_flux_kustomization() {
        vec![o.doc.str_at(&["spec", "sourceRef", "namespace"])]
    } else if o.is_helm_release() {
        vec![
            o.doc
                .get("spec")
                .and_then(Value::as_map)
                .and_then(|sp| sp.get("chart"))
                .and_then(Value::as_map)
                .and_then(|c| c.str_at(&["spec", "sourceRef", "namespace"])),
            o.doc.str_at(&["spec", "chartRef", "namespace"]),
        ]
    } else {
        return;
    };
    for target in refs.into_iter().flatten() {
        if !o.namespace.is_empty() && target != o.namespace {
            out.add(&f.rel, "cross-namespace-ref", format!("{} in {:?} references a source in {target:?}; blocked by --no-cross-namespace-refs", o.name, o.namespace));
        }
    }
}

/// Tenant sources point at URLs the fleet's Kyverno policy allows.
fn source_url_is_allowed(repo: &Repo, f: &File, o: &Object, out: &mut Findings) {
    let is_source = matches!(o.kind, "GitRepository" | "HelmRepository" | "OCIRepository")
        && o.api.starts_with("source.toolkit.fluxcd.io/");
    if !is_source || o.namespace == "flux-system" || f.bootstrap {
        return;
    }
    if let (Some(url), Some(policy)) = (o.doc.str_at(&["spec", "url"]), &repo.policy) {
        if !policy.allows(url) {
            out.add(
                &f.rel,
                "source-url",
                format!(
                    "{} url {url:?} matches none of the allowed patterns ({})",
                    o.name,
                    policy.patterns.join(", ")
                ),
            );
        }
    }
}

/// A kustomization lists no remote bases (kustomize-controller runs with
/// `--no-remote-bases`).
fn no_remote_bases(f: &File, docs: &[Map], out: &mut Findings) {
    for d in docs {
        if d.get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Kustomization")
        {
            continue;
        }
        for field in ["resources", "components", "bases"] {
            if let Some(Value::Seq(items)) = d.get(field) {
                for it in items {
                    if let Some(e) = it.as_str().filter(|e| crate::kustomize::looks_remote(e)) {
                        out.add(&f.rel, "remote-base", format!("{field} entry {e:?} is a remote base; kustomize-controller runs with --no-remote-bases"));
                    }
                }
            }
        }
    }
}

/// `secretGenerator` inputs are SOPS-encrypted: no `literals`, and every
/// `files`/`envs`/`env` file holds SOPS data (kustomize-controller
/// decrypts them before the build).
fn secret_generator_inputs_are_encrypted(root: &Path, f: &File, docs: &[Map], out: &mut Findings) {
    let dir = f.path.parent().unwrap_or(root);
    for d in docs {
        let Some(Value::Seq(gens)) = d.get("secretGenerator") else {
            continue;
        };
        for (i, g) in gens.iter().filter_map(Value::as_map).enumerate() {
            let name = g.get("name").and_then(Value::as_str).unwrap_or("?");
            if matches!(g.get("literals"), Some(Value::Seq(l)) if !l.is_empty()) {
                out.add(&f.rel, "secret-not-encrypted", format!("secretGenerator[{i}] ({name}) has plaintext literals; put them in a file and encrypt it with kustos encrypt"));
            }
            let mut inputs: Vec<String> = Vec::new();
            for field in ["files", "envs"] {
                if let Some(Value::Seq(items)) = g.get(field) {
                    inputs.extend(
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .map(|e| e.split_once('=').map(|(_, p)| p).unwrap_or(e).to_string()),
                    );
                }
            }
            if let Some(e) = g.get("env").and_then(Value::as_str) {
                inputs.push(e.to_string());
            }
            for input in inputs {
                let Some(rel) = crate::kustomize::closure::clean(
                    &dir.strip_prefix(root).unwrap_or(dir).join(&input),
                ) else {
                    continue;
                };
                let Ok(data) = std::fs::read(root.join(&rel)) else {
                    continue;
                };
                if super::bulk::detect(&data).is_none() {
                    out.add(&f.rel, "secret-not-encrypted", format!("secretGenerator[{i}] ({name}) reads {} in plaintext; run `kustos encrypt -i {}`", rel.display(), rel.display()));
                }
            }
        }
    }
}

/// Every SOPS file is encrypted for exactly the keys its `.sops.yaml`
/// creation rule names (what `kustos updatekeys` would change otherwise).
fn sops_files_follow_their_rule(root: &Path, repo: &Repo, out: &mut Findings) {
    let Ok(status) = super::bulk::status(root, repo.sops_cfg.as_ref()) else {
        return;
    };
    for f in status.encrypted.iter().filter(|f| f.rule == "differs") {
        out.add(&f.file, "sops-recipients", "the file's recipients differ from its .sops.yaml creation rule; run `kustos updatekeys` (see `kustos fleet status`)".into());
    }
}

/// The public halves of the clusters' decryption keys: one age recipient
/// per line of `clusters/<cluster>/.sops.pub.age` (written by `kustos
/// init`, the convention of Flux's SOPS guide).
fn cluster_keys(root: &Path) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(root.join("clusters")) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    for d in dirs {
        let Ok(text) = std::fs::read_to_string(d.join(".sops.pub.age")) else {
            continue;
        };
        let keys: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("age1"))
            .map(String::from)
            .collect();
        if !keys.is_empty() {
            out.push((rel(root, &d), keys));
        }
    }
    out
}

/// Every SOPS file a cluster's decrypting Kustomization builds lists that
/// cluster's key: otherwise Flux cannot decrypt it.
fn clusters_can_decrypt(root: &Path, out: &mut Findings) {
    for (cluster, keys) in cluster_keys(root) {
        let flux_files = crate::fsutil::walk(&root.join(&cluster))
            .into_iter()
            .filter(|e| !e.is_dir && (e.name().ends_with(".yaml") || e.name().ends_with(".yml")));
        for e in flux_files {
            let Ok(bytes) = std::fs::read(&e.path) else {
                continue;
            };
            let Ok(docs) = formats::load_plain(Format::Yaml, &bytes) else {
                continue;
            };
            for d in &docs {
                let o = Object::of(d);
                if !o.is_flux_kustomization()
                    || o.doc
                        .get("spec")
                        .and_then(Value::as_map)
                        .and_then(|s| s.get("decryption"))
                        .is_none()
                {
                    continue;
                }
                let Some(path) = o.doc.str_at(&["spec", "path"]) else {
                    continue;
                };
                let Some(dir) = crate::kustomize::closure::clean(Path::new(path)) else {
                    continue;
                };
                let Ok(files) = crate::kustomize::closure::closure(root, &dir) else {
                    continue;
                };
                for f in files.files.keys() {
                    let Ok(data) = std::fs::read(root.join(f)) else {
                        continue;
                    };
                    let Some(format) = super::bulk::detect(&data) else {
                        continue;
                    };
                    let Ok(t) = formats::load_encrypted(format, &data) else {
                        continue;
                    };
                    if !t.metadata.master_keys().any(|k| keys.contains(&k.name())) {
                        out.add(&f.display().to_string(), "sops-cluster-key", format!("{} ({cluster}) cannot decrypt this file: none of its recipients is the cluster's key in {cluster}/.sops.pub.age", o.name));
                    }
                }
            }
        }
    }
}

/// The folders that hold manifests are covered by a `.sops.yaml` creation
/// rule, so a Secret added there can be encrypted in place.
fn manifest_folders_are_covered(root: &Path, repo: &Repo, files: &[PathBuf], out: &mut Findings) {
    let Some(cfg) = &repo.sops_cfg else { return };
    let mut folders: Vec<String> = Vec::new();
    for f in files {
        let r = rel(root, f);
        let Some((top, _)) = r.split_once('/') else {
            continue;
        };
        if !top.starts_with('.') && !folders.iter().any(|x| x == top) {
            folders.push(top.to_string());
        }
    }
    for top in folders {
        let probe = root.join(&top).join("secret.yaml");
        if !matches!(cfg.rule_for(&probe), Ok(Some(_))) {
            out.add(
                ".sops.yaml",
                "sops-coverage",
                format!("no .sops.yaml creation rule covers {top}/: a Secret added there cannot be encrypted; extend a rule's path_regex"),
            );
        }
    }
}

/// Every kustomization folder builds with `kubectl kustomize`, in parallel;
/// the outputs of the builds that succeeded.
fn kustomizations_build(
    root: &Path,
    dirs: &[PathBuf],
    opts: &ValidateOptions,
    out: &mut Findings,
) -> Vec<(PathBuf, Vec<u8>)> {
    let results: Vec<(&PathBuf, std::result::Result<Vec<u8>, String>)> = dirs
        .par_iter()
        .map(|dir| {
            let res = Command::new(&opts.kubectl)
                .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
                .arg(dir)
                .output();
            let r = match res {
                Ok(o) if o.status.success() => Ok(o.stdout),
                Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("kustomize failed")
                    .to_string()),
                Err(e) => Err(format!("cannot run {}: {e}", opts.kubectl.display())),
            };
            (dir, r)
        })
        .collect();
    let mut built = Vec::new();
    for (dir, r) in results {
        match r {
            Ok(stdout) => built.push((dir.clone(), stdout)),
            Err(msg) => out.add(
                &format!("{}/kustomization.yaml", rel(root, dir)),
                "kustomize-build",
                msg,
            ),
        }
    }
    built
}

/// Every object the kustomizations build to, and every file under
/// `clusters/`, matches the schema of its kind, strictly (src/fleet/schema).
fn objects_match_their_schema(
    root: &Path,
    opts: &ValidateOptions,
    sources: &super::schema::check::SourceFiles,
    builds: &[(PathBuf, Vec<u8>)],
    out: &mut Findings,
) -> Result<super::schema::check::Summary> {
    let schemas = super::schema::Schemas::load(opts.schemas.as_deref())?;
    let (problems, summary) = super::schema::check::check(root, &schemas, sources, builds);
    for p in problems {
        let at = if p.path.is_empty() {
            String::new()
        } else {
            format!(" {}", p.path)
        };
        out.0.push(Finding {
            message: format!("{}{at}: {}", p.object, p.reason),
            file: p.file,
            rule: p.rule,
            object: Some(p.object),
            path: (!p.path.is_empty()).then_some(p.path),
            line: p.line,
        });
    }
    Ok(summary)
}

/// Only the plaintext-Secret checks, on the given files (relative to
/// `root` or absolute): what a pre-commit hook runs on the staged files.
pub fn plaintext_secrets(root: &Path, paths: &[PathBuf]) -> Result<Report> {
    let mut out = Findings::default();
    let repo = Repo {
        sops_cfg: config::load(&root.join(".sops.yaml")).ok(),
        policy: None,
    };
    let mut checked = 0;
    for p in paths {
        let path = if p.is_absolute() {
            p.clone()
        } else {
            root.join(p)
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if !(name.ends_with(".yaml") || name.ends_with(".yml")) {
            continue;
        }
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        checked += 1;
        let file = File {
            path: &path,
            rel: rel(root, &path),
            bootstrap: false,
        };
        let Ok(docs) = formats::load_plain(Format::Yaml, &bytes) else {
            out.add(
                &file.rel,
                "yaml-syntax",
                "the file does not parse as YAML".into(),
            );
            continue;
        };
        if crate::kustomize::is_kustomization_file(&name) {
            secret_generator_inputs_are_encrypted(root, &file, &docs, &mut out);
        }
        for d in &docs {
            secret_is_encrypted(&repo, &file, &Object::of(d), &mut out);
        }
    }
    let mut findings = out.0;
    findings.retain(|f| f.rule == "secret-not-encrypted" || f.rule == "yaml-syntax");
    findings.sort_by(|a, b| (&a.file, a.rule).cmp(&(&b.file, b.rule)));
    Ok(Report {
        ok: findings.is_empty(),
        files_checked: checked,
        kustomizations_built: 0,
        findings,
        schemas: None,
    })
}

/// Validates the fleet repository at `root`.
pub fn validate(root: &Path, opts: &ValidateOptions) -> Result<Report> {
    let files = yaml_files(root);
    let mut out = Findings::default();
    let cfg_path = root.join(".sops.yaml");
    let sops_cfg = match config::load(&cfg_path) {
        Ok(c) => Some(c),
        Err(_) if !cfg_path.exists() => None,
        Err(e) => {
            out.add(".sops.yaml", "sops-config", e.to_string());
            None
        }
    };
    let repo = Repo {
        sops_cfg,
        policy: super::policy::read(root),
    };
    let mut kustomization_dirs = Vec::new();
    let mut sources = Vec::new();
    for path in &files {
        let r = rel(root, path);
        let file = File {
            path,
            bootstrap: r.contains("/flux-system/"),
            rel: r,
        };
        let docs = match std::fs::read(path) {
            Ok(bytes) => match formats::load_plain(Format::Yaml, &bytes) {
                Ok(d) => d,
                Err(e) => {
                    out.add(&file.rel, "yaml-syntax", e.to_string());
                    continue;
                }
            },
            Err(e) => {
                out.add(&file.rel, "read", e.to_string());
                continue;
            }
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        if crate::kustomize::is_kustomization_file(&name) {
            if let Some(dir) = path.parent() {
                kustomization_dirs.push(dir.to_path_buf());
            }
            no_remote_bases(&file, &docs, &mut out);
            secret_generator_inputs_are_encrypted(root, &file, &docs, &mut out);
            continue;
        }
        for d in &docs {
            let o = Object::of(d);
            for check in OBJECT_CHECKS {
                check(&repo, &file, &o, &mut out);
            }
        }
        sources.push((file.rel, docs));
    }
    sops_files_follow_their_rule(root, &repo, &mut out);
    manifest_folders_are_covered(root, &repo, &files, &mut out);
    clusters_can_decrypt(root, &mut out);
    let builds = if opts.build {
        kustomizations_build(root, &kustomization_dirs, opts, &mut out)
    } else {
        Vec::new()
    };
    let built = if opts.build {
        kustomization_dirs.len()
    } else {
        0
    };
    let schemas = objects_match_their_schema(root, opts, &sources, &builds, &mut out)?;
    let mut findings = out.0;
    findings.sort_by(|a, b| (&a.file, a.rule, a.line).cmp(&(&b.file, b.rule, b.line)));
    Ok(Report {
        ok: findings.is_empty(),
        files_checked: files.len(),
        kustomizations_built: built,
        findings,
        schemas: Some(schemas),
    })
}
