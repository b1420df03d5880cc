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

/// What every check shares: the build flags, the keys, the findings.
struct Doctor<'a> {
    /// `kustomize build` flags, when known.
    flags: Option<&'a str>,
    ring: &'a KeyRing,
    checks: Vec<Check>,
    generators: usize,
}

/// One generator config and where it came from.
struct Config<'a> {
    doc: &'a Map,
    /// The file (or `kustomization.yaml (inline)`), for messages.
    name: String,
    path: PathBuf,
    /// The folder of the kustomization that lists it.
    root: &'a Path,
    /// `generators` or `transformers`.
    field: &'a str,
}

impl Doctor<'_> {
    fn add(&mut self, level: Level, file: &Path, message: String, fix: &str) {
        self.checks.push(Check {
            level,
            file: file.display().to_string(),
            message,
            fix: fix.to_string(),
        });
    }

    fn has_flag(&self, f: &str) -> bool {
        self.flags
            .unwrap_or("")
            .split_whitespace()
            .any(|x| x == f || x.starts_with(&format!("{f}=")))
    }

    /// An error when the build flags are known, a warning when guessed.
    fn flag_level(&self) -> Level {
        if self.flags.is_some() {
            Level::Error
        } else {
            Level::Warning
        }
    }

    /// Every generator config a kustomization lists.
    fn kustomization(&mut self, k: &Path, dir: &Path) {
        let root = k.parent().unwrap_or(dir);
        let Ok(bytes) = std::fs::read(k) else {
            return;
        };
        let Ok(docs) = formats::load_plain(Format::Yaml, &bytes) else {
            self.add(Level::Error, k, "not valid YAML".into(), "fix the syntax");
            return;
        };
        let Some(kd) = docs.first() else { return };
        for field in ["generators", "transformers"] {
            let Some(Value::Seq(entries)) = kd.get(field) else {
                continue;
            };
            for entry in entries.iter().filter_map(Value::as_str) {
                // Inline configs are YAML documents; file entries are paths.
                let (cfg_docs, name) = if entry.contains('\n') {
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
                for doc in cfg_docs.iter().filter(|d| is_config(d)) {
                    self.generators += 1;
                    let cfg = Config {
                        doc,
                        path: PathBuf::from(&name),
                        name: name.clone(),
                        root,
                        field,
                    };
                    for check in CONFIG_CHECKS {
                        check(self, &cfg);
                    }
                }
            }
        }
    }
}

/// The checks every generator config goes through, in order.
const CONFIG_CHECKS: &[fn(&mut Doctor, &Config)] = &[
    listed_as_a_generator,
    alpha_plugins_enabled,
    plugin_runs,
    inputs_decrypt,
];

/// A generator listed under `transformers:` never generates anything.
fn listed_as_a_generator(d: &mut Doctor, c: &Config) {
    if c.field == "transformers" {
        d.add(
            Level::Error,
            &c.path,
            "a SOPS generator config is listed under transformers".into(),
            "move it to `generators:`",
        );
    }
}

/// Plugins need `--enable-alpha-plugins`.
fn alpha_plugins_enabled(d: &mut Doctor, c: &Config) {
    if !d.has_flag("--enable-alpha-plugins") {
        let level = d.flag_level();
        d.add(level, &c.path, "kustomize needs --enable-alpha-plugins to run this generator (without it the build fails with `external plugins disabled`)".into(), "run `kustomize build --enable-alpha-plugins` (Argo CD: kustomize.buildOptions in argocd-cm)");
    }
}

/// The KRM exec function or the legacy plugin the config names exists and
/// will run.
fn plugin_runs(d: &mut Doctor, c: &Config) {
    match function_exec_path(c.doc) {
        Some(exec) => exec_function_runs(d, c, &exec),
        None => legacy_plugin_installed(d, c),
    }
}

fn exec_function_runs(d: &mut Doctor, c: &Config, exec: &str) {
    d.add(Level::Warning, &c.path, "`kubectl kustomize` (kubectl's built-in kustomize) has no --enable-exec and never runs exec functions".into(), "build with the standalone kustomize binary, or drop the function annotation and use the legacy plugin (`kustos plugin install`)");
    if !d.has_flag("--enable-exec") {
        let level = d.flag_level();
        d.add(level, &c.path, "this KRM exec function is SILENTLY SKIPPED unless kustomize runs with --enable-exec: the build succeeds without the Secret".into(), "add --enable-exec next to --enable-alpha-plugins");
    }
    let found = if exec.contains('/') {
        executable(&c.root.join(exec))
    } else {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|dir| executable(&dir.join(exec))))
    };
    if found {
        d.add(
            Level::Ok,
            &c.path,
            format!("function executable {exec} found"),
            "",
        );
    } else {
        d.add(Level::Error, &c.path, format!("function executable {exec:?} not found or not executable (relative paths resolve from {})", c.root.display()), "install kustos there or on PATH (`kustos plugin install --path ...`), or fix config.kubernetes.io/function");
    }
}

fn legacy_plugin_installed(d: &mut Doctor, c: &Config) {
    let api = c
        .doc
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = c.doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let rel = format!("{api}/{}/{kind}", kind.to_lowercase());
    match plugin_home() {
        Some(home) if executable(&home.join(&rel)) => d.add(
            Level::Ok,
            &c.path,
            format!("legacy plugin found at {}", home.join(&rel).display()),
            "",
        ),
        Some(home) => d.add(
            Level::Error,
            &c.path,
            format!(
                "legacy plugin {} is missing (kustomize reports `unable to find plugin root`)",
                home.join(&rel).display()
            ),
            "run `kustos plugin install`",
        ),
        None => d.add(
            Level::Error,
            &c.path,
            "no kustomize plugin home (set KUSTOMIZE_PLUGIN_HOME or HOME)".into(),
            "run `kustos plugin install --plugin-home DIR`",
        ),
    }
}

/// Every input the config names is inside the kustomization, SOPS
/// encrypted, and opens with the available keys.
fn inputs_decrypt(d: &mut Doctor, c: &Config) {
    let Ok(gc) = parse_config(c.doc, &c.name) else {
        d.add(
            Level::Error,
            &c.path,
            "invalid generator config".into(),
            "see `kustos plugin --help` for the schema",
        );
        return;
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
        let full = match resolve_inside(c.root, &f) {
            Ok(p) => p,
            Err(e) => {
                d.add(
                    Level::Error,
                    &c.path,
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
            None => d.add(
                Level::Error,
                &c.path,
                format!("{f}: not a SOPS-encrypted {} file", fmt.name()),
                "encrypt it with `kustos encrypt -i`",
            ),
            Some(t) => match keys::recover_data_key(
                &t.metadata.key_groups,
                t.metadata.shamir_threshold,
                d.ring,
            ) {
                Ok(_) => d.add(
                    Level::Ok,
                    &c.path,
                    format!("{f}: decryptable with the available keys"),
                    "",
                ),
                Err(e) => d.add(Level::Error, &c.path, format!("{f}: {e}"), &e.hint()),
            },
        }
    }
}

/// Runs every check on the kustomizations under `dir`. `build_flags` are the
/// flags `kustomize build` runs with (e.g. from Argo CD's
/// `kustomize.buildOptions`); `None` when unknown.
pub fn doctor(dir: &Path, build_flags: Option<&str>, ring: &KeyRing) -> Vec<Check> {
    let mut d = Doctor {
        flags: build_flags,
        ring,
        checks: Vec::new(),
        generators: 0,
    };
    for k in find_kustomizations(dir) {
        d.kustomization(&k, dir);
    }
    if d.generators == 0 {
        d.add(
            Level::Warning,
            dir,
            "no ksops or kustos SopsGenerator config is referenced from any kustomization here"
                .into(),
            "add the config file under `generators:` in kustomization.yaml",
        );
    }
    d.checks
}
