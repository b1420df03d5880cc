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
use crate::sops::value::Value;
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
}

/// Options of `kustos validate`.
#[derive(Clone, Debug)]
pub struct ValidateOptions {
    /// Build every kustomization with `kubectl kustomize` (kustomize v5).
    pub build: bool,
    /// The kubectl binary.
    pub kubectl: PathBuf,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions {
            build: true,
            kubectl: PathBuf::from("kubectl"),
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

/// Kyverno wildcard match: `*` any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The allowed source URL patterns from the `verify-sources` policy.
fn allowed_sources(root: &Path) -> Option<Vec<String>> {
    let path = root.join("infrastructure/kyverno-policies/verify-sources.yaml");
    let bytes = std::fs::read(path).ok()?;
    let docs = formats::load_plain(Format::Yaml, &bytes).ok()?;
    let mut out = Vec::new();
    for d in &docs {
        let Some(Value::Seq(rules)) = d
            .get("spec")
            .and_then(|v| v.as_map())
            .and_then(|m| m.get("rules"))
        else {
            continue;
        };
        for r in rules {
            let Some(Value::Seq(pats)) = r
                .as_map()
                .and_then(|m| m.get("validate"))
                .and_then(|v| v.as_map())
                .and_then(|m| m.get("anyPattern"))
            else {
                continue;
            };
            for p in pats {
                if let Some(u) = p.as_map().and_then(|m| m.str_at(&["spec", "url"])) {
                    if !out.iter().any(|x| x == u) {
                        out.push(u.to_string());
                    }
                }
            }
        }
    }
    Some(out)
}

fn looks_remote(entry: &str) -> bool {
    entry.contains("://")
        || entry.starts_with("github.com/")
        || entry.starts_with("gitlab.com/")
        || entry.starts_with("git@")
        || entry.starts_with("git::")
        || entry.contains("?ref=")
}

/// Validates the fleet repository at `root`.
pub fn validate(root: &Path, opts: &ValidateOptions) -> Result<Report> {
    let files = yaml_files(root);
    let mut findings: Vec<Finding> = Vec::new();
    let mut add = |file: &str, rule: &'static str, message: String| {
        findings.push(Finding {
            file: file.to_string(),
            rule,
            message,
        })
    };
    let sops_cfg = match config::load(&root.join(".sops.yaml")) {
        Ok(c) => Some(c),
        Err(crate::Error::Io { .. }) => None,
        Err(e) => {
            add(".sops.yaml", "sops-config", e.to_string());
            None
        }
    };
    let allowed = allowed_sources(root);
    let mut kustomization_dirs = Vec::new();
    for f in &files {
        let r = rel(root, f);
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                add(&r, "read", e.to_string());
                continue;
            }
        };
        let docs = match formats::load_plain(Format::Yaml, &bytes) {
            Ok(d) => d,
            Err(e) => {
                add(&r, "yaml-syntax", e.to_string());
                continue;
            }
        };
        let in_tenancy = r.starts_with("tenants/") || r.starts_with("clusters/");
        let bootstrap = r.contains("/flux-system/");
        if name == "kustomization.yaml" || name == "kustomization.yml" {
            if let Some(dir) = f.parent() {
                kustomization_dirs.push(dir.to_path_buf());
            }
            for d in &docs {
                if d.get("kind")
                    .and_then(Value::as_str)
                    .is_some_and(|k| k != "Kustomization")
                {
                    continue;
                }
                for field in ["resources", "components", "bases"] {
                    if let Some(Value::Seq(items)) = d.get(field) {
                        for it in items {
                            if let Some(e) = it.as_str().filter(|e| looks_remote(e)) {
                                add(&r, "remote-base", format!("{field} entry {e:?} is a remote base; kustomize-controller runs with --no-remote-bases"));
                            }
                        }
                    }
                }
            }
            continue;
        }
        for d in &docs {
            let kind = d.get("kind").and_then(Value::as_str).unwrap_or("");
            let api = d.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let ns = d.str_at(&["metadata", "namespace"]).unwrap_or("");
            let obj = format!("{kind}/{}", d.str_at(&["metadata", "name"]).unwrap_or("?"));
            if kind == "Secret" && api == "v1" && in_tenancy {
                match d.get("sops") {
                    None => add(
                        &r,
                        "secret-not-encrypted",
                        format!("{obj} is not SOPS-encrypted; run `kustos encrypt -i {r}`"),
                    ),
                    Some(md) => {
                        match crate::sops::metadata::from_value(md) {
                            Err(e) => add(&r, "sops-metadata", format!("{obj}: {e}")),
                            Ok(m) if m.mac.is_empty() => add(
                                &r,
                                "sops-metadata",
                                format!("{obj}: the sops block has no MAC"),
                            ),
                            Ok(_) => {}
                        }
                        for field in ["data", "stringData"] {
                            if let Some(Value::Map(vals)) = d.get(field) {
                                for (k, v) in vals.entries() {
                                    let encrypted = v.as_str().is_some_and(|s| {
                                        s.is_empty() || crate::sops::cipher::is_encrypted_value(s)
                                    });
                                    if !encrypted {
                                        add(
                                            &r,
                                            "secret-not-encrypted",
                                            format!("{obj}: {field}.{k} is plaintext"),
                                        );
                                    }
                                }
                            }
                        }
                        match &sops_cfg {
                            None => add(
                                &r,
                                "sops-rule",
                                "no .sops.yaml at the repository root covers this Secret".into(),
                            ),
                            Some(c) => {
                                if let Err(e) = c.rule_for(f) {
                                    add(&r, "sops-rule", format!("{obj}: .sops.yaml has no creation rule for this file ({e})"));
                                }
                            }
                        }
                    }
                }
            }
            let flux_ks =
                kind == "Kustomization" && api.starts_with("kustomize.toolkit.fluxcd.io/");
            let helm = kind == "HelmRelease" && api.starts_with("helm.toolkit.fluxcd.io/");
            if (flux_ks || helm)
                && !bootstrap
                && d.str_at(&["spec", "serviceAccountName"])
                    .unwrap_or("")
                    .is_empty()
            {
                // Patches (no sourceRef/chart) inherit the base's account.
                let is_patch = d.get("spec").and_then(|v| v.as_map()).is_some_and(|sp| {
                    !sp.contains_key("sourceRef")
                        && !sp.contains_key("chart")
                        && !sp.contains_key("chartRef")
                });
                if !is_patch {
                    add(&r, "service-account", format!("{obj} has no spec.serviceAccountName; with --default-service-account it runs as the unprivileged default account"));
                }
            }
            let refs: Vec<Option<&str>> = if flux_ks {
                vec![d.str_at(&["spec", "sourceRef", "namespace"])]
            } else if helm {
                vec![
                    d.get("spec")
                        .and_then(|v| v.as_map())
                        .and_then(|sp| sp.get("chart"))
                        .and_then(|v| v.as_map())
                        .and_then(|c| c.str_at(&["spec", "sourceRef", "namespace"])),
                    d.str_at(&["spec", "chartRef", "namespace"]),
                ]
            } else {
                vec![]
            };
            for target in refs.into_iter().flatten() {
                if !ns.is_empty() && target != ns {
                    add(&r, "cross-namespace-ref", format!("{obj} in {ns:?} references a source in {target:?}; blocked by --no-cross-namespace-refs"));
                }
            }
            let is_source = matches!(kind, "GitRepository" | "HelmRepository" | "OCIRepository")
                && api.starts_with("source.toolkit.fluxcd.io/");
            if is_source && ns != "flux-system" && !bootstrap {
                if let (Some(url), Some(pats)) = (d.str_at(&["spec", "url"]), &allowed) {
                    if !pats.iter().any(|p| wildcard_match(p, url)) {
                        add(
                            &r,
                            "source-url",
                            format!(
                                "{obj} url {url:?} matches none of the allowed patterns ({})",
                                pats.join(", ")
                            ),
                        );
                    }
                }
            }
        }
    }
    let mut built = 0;
    if opts.build {
        let results: Vec<(PathBuf, std::result::Result<(), String>)> = kustomization_dirs
            .par_iter()
            .map(|dir| {
                let res = Command::new(&opts.kubectl)
                    .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
                    .arg(dir)
                    .output();
                let r = match res {
                    Ok(o) if o.status.success() => Ok(()),
                    Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
                        .lines()
                        .next()
                        .unwrap_or("kustomize failed")
                        .to_string()),
                    Err(e) => Err(format!("cannot run {}: {e}", opts.kubectl.display())),
                };
                (dir.clone(), r)
            })
            .collect();
        for (dir, r) in results {
            built += 1;
            if let Err(msg) = r {
                add(
                    &format!("{}/kustomization.yaml", rel(root, &dir)),
                    "kustomize-build",
                    msg,
                );
            }
        }
    }
    findings.sort_by(|a, b| (&a.file, a.rule).cmp(&(&b.file, b.rule)));
    Ok(Report {
        ok: findings.is_empty(),
        files_checked: files.len(),
        kustomizations_built: built,
        findings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kyverno_wildcards() {
        assert!(wildcard_match(
            "https://github.com/org/?*",
            "https://github.com/org/repo"
        ));
        assert!(!wildcard_match(
            "https://github.com/org/?*",
            "https://github.com/org/"
        ));
        assert!(!wildcard_match(
            "https://github.com/org/*",
            "https://github.com/evil/repo"
        ));
        assert!(wildcard_match("*", "anything"));
    }
}
