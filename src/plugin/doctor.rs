//! `kustos plugin doctor`: finds the ways a SOPS generator silently does
//! nothing or fails inside `kustomize build`, and says what to change.
//!
//! The classic trap: a KRM exec function without `--enable-exec` is
//! skipped silently by kustomize v5, so the build "succeeds" without the
//! Secret (viaduct-ai/kustomize-sops#217, #226).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{is_config, parse_config, plugin_home, resolve_inside};
use crate::formats::{self, Format};
use crate::keys::{self, KeyRing};
use crate::sops::value::{Map, Value};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Everything is fine.
    Ok,
    /// Works, but worth knowing.
    Warning,
    /// The build will fail or silently skip the generator.
    Error,
}

/// One doctor finding.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Severity.
    pub level: Level,
    /// The kustomization or config concerned.
    pub file: String,
    /// What was found.
    pub message: String,
    /// What to change (empty when nothing).
    pub fix: String,
}

/// The kustomization files under `dir`, hidden folders left out.
fn find_kustomizations(dir: &Path) -> Vec<PathBuf> {
    crate::fsutil::walk(dir)
        .into_iter()
        .filter(|e| !e.is_dir && !e.is_hidden())
        .filter(|e| crate::kustomize::is_kustomization_file(&e.name()))
        .map(|e| e.path)
        .collect()
}

fn executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn function_exec_path(m: &Map) -> Option<String> {
    let ann = m.get("metadata")?.as_map()?.get("annotations")?.as_map()?;
    let f = ann.get("config.kubernetes.io/function")?.as_str()?;
    let docs = formats::load_plain(Format::Yaml, f.as_bytes()).ok()?;
    let exec = docs
        .first()?
        .get("exec")?
        .as_map()?
        .get("path")?
        .as_str()?
        .to_string();
    Some(exec)
}

/// Runs every check on the kustomizations under `dir`. `build_flags` are the
/// flags `kustomize build` runs with (e.g. from Argo CD's
/// `kustomize.buildOptions`); `None` when unknown.
pub fn doctor(dir: &Path, build_flags: Option<&str>, ring: &KeyRing) -> Vec<Check> {
    let mut checks = Vec::new();
    let mut add = |level, file: &Path, message: String, fix: &str| {
        checks.push(Check {
            level,
            file: file.display().to_string(),
            message,
            fix: fix.to_string(),
        })
    };
    let ks = find_kustomizations(dir);
    let flags = build_flags.unwrap_or("");
    let has = |f: &str| {
        flags
            .split_whitespace()
            .any(|x| x == f || x.starts_with(&format!("{f}=")))
    };
    let mut generators = 0;
    for k in &ks {
        let root = k.parent().unwrap_or(dir);
        let Ok(bytes) = std::fs::read(k) else {
            continue;
        };
        let Ok(docs) = formats::load_plain(Format::Yaml, &bytes) else {
            add(Level::Error, k, "not valid YAML".into(), "fix the syntax");
            continue;
        };
        let Some(kd) = docs.first() else { continue };
        for field in ["generators", "transformers"] {
            let Some(Value::Seq(entries)) = kd.get(field) else {
                continue;
            };
            for e in entries {
                let Some(entry) = e.as_str() else { continue };
                // Inline configs are YAML documents; file entries are paths.
                let (cfg_docs, cfg_name) = if entry.contains('\n') {
                    (
                        formats::load_plain(Format::Yaml, entry.as_bytes()).unwrap_or_default(),
                        format!("{} (inline)", k.display()),
                    )
                } else {
                    let p = root.join(entry);
                    match std::fs::read(&p) {
                        Ok(b) => (
                            formats::load_plain(Format::Yaml, &b).unwrap_or_default(),
                            p.display().to_string(),
                        ),
                        Err(_) => continue,
                    }
                };
                for cfg in cfg_docs.iter().filter(|d| is_config(d)) {
                    generators += 1;
                    let cfg_path = PathBuf::from(&cfg_name);
                    if field == "transformers" {
                        add(
                            Level::Error,
                            &cfg_path,
                            "a SOPS generator config is listed under transformers".into(),
                            "move it to `generators:`",
                        );
                    }
                    if !has("--enable-alpha-plugins") {
                        let level = if build_flags.is_some() {
                            Level::Error
                        } else {
                            Level::Warning
                        };
                        add(level, &cfg_path, "kustomize needs --enable-alpha-plugins to run this generator (without it the build fails with `external plugins disabled`)".into(), "run `kustomize build --enable-alpha-plugins` (Argo CD: kustomize.buildOptions in argocd-cm)");
                    }
                    match function_exec_path(cfg) {
                        Some(exec) => {
                            add(Level::Warning, &cfg_path, "`kubectl kustomize` (kubectl's built-in kustomize) has no --enable-exec and never runs exec functions".into(), "build with the standalone kustomize binary, or drop the function annotation and use the legacy plugin (`kustos plugin install`)");
                            if !has("--enable-exec") {
                                let level = if build_flags.is_some() {
                                    Level::Error
                                } else {
                                    Level::Warning
                                };
                                add(level, &cfg_path, "this KRM exec function is SILENTLY SKIPPED unless kustomize runs with --enable-exec: the build succeeds without the Secret".into(), "add --enable-exec next to --enable-alpha-plugins");
                            }
                            let exec_path = if exec.contains('/') {
                                root.join(&exec)
                            } else {
                                PathBuf::from(&exec)
                            };
                            let found = if exec.contains('/') {
                                executable(&exec_path)
                            } else {
                                std::env::var_os("PATH").is_some_and(|p| {
                                    std::env::split_paths(&p).any(|d| executable(&d.join(&exec)))
                                })
                            };
                            if found {
                                add(
                                    Level::Ok,
                                    &cfg_path,
                                    format!("function executable {exec} found"),
                                    "",
                                );
                            } else {
                                add(Level::Error, &cfg_path, format!("function executable {exec:?} not found or not executable (relative paths resolve from {})", root.display()), "install kustos there or on PATH (`kustos plugin install --path ...`), or fix config.kubernetes.io/function");
                            }
                        }
                        None => {
                            let api = cfg.get("apiVersion").and_then(Value::as_str).unwrap_or("");
                            let kind = cfg.get("kind").and_then(Value::as_str).unwrap_or("");
                            let rel = format!("{api}/{}/{kind}", kind.to_lowercase());
                            match plugin_home() {
                                Some(home) if executable(&home.join(&rel)) => {
                                    add(Level::Ok, &cfg_path, format!("legacy plugin found at {}", home.join(&rel).display()), "")
                                }
                                Some(home) => add(Level::Error, &cfg_path, format!("legacy plugin {} is missing (kustomize reports `unable to find plugin root`)", home.join(&rel).display()), "run `kustos plugin install`"),
                                None => add(Level::Error, &cfg_path, "no kustomize plugin home (set KUSTOMIZE_PLUGIN_HOME or HOME)".into(), "run `kustos plugin install --plugin-home DIR`"),
                            }
                        }
                    }
                    let Ok(gc) = parse_config(cfg, &cfg_name) else {
                        add(
                            Level::Error,
                            &cfg_path,
                            "invalid generator config".into(),
                            "see `kustos plugin --help` for the schema",
                        );
                        continue;
                    };
                    let mut files: Vec<String> = gc.files.clone();
                    for s in &gc.secret_from {
                        files.extend(s.files.iter().chain(&s.binary_files).map(|f| {
                            f.split_once('=')
                                .map(|x| x.1.to_string())
                                .unwrap_or_else(|| f.clone())
                        }));
                        files.extend(s.envs.iter().cloned());
                    }
                    for f in files {
                        let full = match resolve_inside(root, &f) {
                            Ok(p) => p,
                            Err(e) => {
                                add(
                                    Level::Error,
                                    &cfg_path,
                                    e.to_string(),
                                    "keep generator inputs inside the kustomization folder",
                                );
                                continue;
                            }
                        };
                        let fmt = Format::from_path(Path::new(&f));
                        let tree = std::fs::read(&full)
                            .ok()
                            .and_then(|b| formats::load_encrypted(fmt, &b).ok());
                        match tree {
                            None => add(
                                Level::Error,
                                &cfg_path,
                                format!("{f}: not a SOPS-encrypted {} file", fmt.name()),
                                "encrypt it with `kustos encrypt -i`",
                            ),
                            Some(t) => match keys::recover_data_key(
                                &t.metadata.key_groups,
                                t.metadata.shamir_threshold,
                                ring,
                            ) {
                                Ok(_) => add(
                                    Level::Ok,
                                    &cfg_path,
                                    format!("{f}: decryptable with the available keys"),
                                    "",
                                ),
                                Err(e) => {
                                    add(Level::Error, &cfg_path, format!("{f}: {e}"), &e.hint())
                                }
                            },
                        }
                    }
                }
            }
        }
    }
    if generators == 0 {
        add(
            Level::Warning,
            dir,
            "no ksops or kustos SopsGenerator config is referenced from any kustomization here"
                .into(),
            "add the config file under `generators:` in kustomization.yaml",
        );
    }
    checks
}
