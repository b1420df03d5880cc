//! Tenant onboarding: `kustos tenant add|remove|list`.
//!
//! A tenant is `tenants/base/<name>/{rbac,sync,auth,kustomization}.yaml`
//! plus, per environment, `tenants/<env>/<name>-patch.yaml` and entries in
//! `tenants/<env>/kustomization.yaml`. That last file is edited through the
//! comment-preserving YAML parser, so the admin's own entries and comments
//! survive, and `remove` restores it byte for byte.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::templates::{self as t, TenantSpec};
use super::{check_name, environments, Plan};
use crate::formats::{self, Format};
use crate::sops::value::{Map, Value};
use crate::{Error, Result};

/// Why `tenant add` refused, before anything was written.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// Another tenant has the namespace.
    #[error(
        "namespace {namespace:?} belongs to tenant {owner:?}; a namespace has exactly one tenant"
    )]
    NamespaceTaken {
        /// The namespace.
        namespace: String,
        /// The tenant that has it.
        owner: String,
    },
    /// A tenant of this name exists with other namespaces.
    #[error("tenant {name:?} already exists with namespaces {existing}; run `kustos tenant remove {name}` first, or pass those namespaces")]
    NameTaken {
        /// The tenant.
        name: String,
        /// Its namespaces, comma-separated.
        existing: String,
    },
    /// The Git URL is outside the fleet's source policy.
    #[error("{url} is outside the fleet's source policy ({file} allows {patterns})")]
    SourceNotAllowed {
        /// The URL.
        url: String,
        /// The policy file.
        file: String,
        /// Its patterns, comma-separated.
        patterns: String,
    },
    /// The repository's layout must change first (shown as a diff).
    #[error("the environment overlays set one namespace for every tenant in them (`namespace:` in {overlays}); adding a tenant in another namespace moves it into each existing tenant's base:\n{diff}")]
    LayoutChange {
        /// The overlays that set `namespace:`.
        overlays: String,
        /// What would change.
        diff: String,
    },
    /// The planned tree does not build.
    #[error("the result would not build, nothing was written: {dir}: {message}")]
    Build {
        /// The kustomization folder.
        dir: String,
        /// kustomize's message.
        message: String,
    },
    /// Anything else.
    #[error(transparent)]
    Other(#[from] Error),
}

/// How `tenant add` may change the repository beyond the tenant's files.
#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    /// Move an overlay-level `namespace:` into the existing tenants' bases
    /// (`--yes`).
    pub adopt_layout: bool,
    /// Add this URL pattern to the fleet's source policy (`--allow-source`).
    pub allow_source: Option<String>,
    /// Build every environment with this kubectl before writing.
    pub kubectl: Option<std::path::PathBuf>,
}

/// What to do with `auth.yaml`.
#[derive(Clone, Debug)]
pub enum AuthFile {
    /// Public repository: no credentials.
    None,
    /// Keep the existing (already encrypted) file.
    Keep,
    /// Write this encrypted content.
    New(Vec<u8>),
}

fn base_dir(name: &str) -> String {
    format!("tenants/base/{name}")
}

/// The files `tenant add` owns under `tenants/base/<name>/`.
const BASE_FILES: &[&str] = &["rbac.yaml", "sync.yaml", "auth.yaml", "kustomization.yaml"];

fn read_yaml(path: &Path) -> Result<Vec<Map>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path.display(), e))?;
    formats::load_plain(Format::Yaml, &bytes)
        .map_err(|e| Error::Other(format!("{}: {e}", path.display())))
}

fn seq_mut<'a>(m: &'a mut Map, key: &str) -> &'a mut Vec<Value> {
    if !matches!(m.get(key), Some(Value::Seq(_))) {
        m.remove(key);
        m.push(key, Value::Seq(Vec::new()));
    }
    match m.get_mut(key) {
        Some(Value::Seq(s)) => s,
        _ => unreachable!("just inserted a sequence"),
    }
}

fn is_patch_for(v: &Value, file: &str) -> bool {
    matches!(v, Value::Map(m) if m.get("path").and_then(Value::as_str) == Some(file))
}

/// Adds (or removes) a tenant's entries in `tenants/<env>/kustomization.yaml`
/// (and drops its overlay-level `namespace:` with `drop_namespace`).
fn edit_env_kustomization(
    root: &Path,
    env: &str,
    name: &str,
    add: bool,
    drop_namespace: bool,
) -> Result<Vec<u8>> {
    let path = root.join(format!("tenants/{env}/kustomization.yaml"));
    let mut docs = if path.exists() {
        read_yaml(&path)?
    } else {
        formats::load_plain(Format::Yaml, t::env_kustomization_empty().as_bytes())?
    };
    let doc = docs
        .first_mut()
        .ok_or_else(|| Error::Other(format!("{} has no document", path.display())))?;
    if drop_namespace {
        doc.remove("namespace");
    }
    let resource = Value::str(format!("../base/{name}"));
    let patch_file = format!("{name}-patch.yaml");
    {
        // Existing entries keep their place, so re-running add changes nothing.
        let res = seq_mut(doc, "resources");
        if !add {
            res.retain(|v| *v != resource);
        } else if !res.contains(&resource) {
            res.push(resource);
        }
    }
    let had_patches = doc.contains_key("patches");
    if add || had_patches {
        let patches = seq_mut(doc, "patches");
        if !add {
            patches.retain(|v| !is_patch_for(v, &patch_file));
        } else if !patches.iter().any(|v| is_patch_for(v, &patch_file)) {
            let mut pm = Map::new();
            pm.push("path", Value::str(patch_file));
            patches.push(Value::Map(pm));
        }
        let empty = patches.iter().all(|v| matches!(v, Value::Comment(_)));
        if empty && !add {
            doc.remove("patches");
        }
    }
    Ok(formats::yaml::emit_plain(&docs, 2))
}

/// Every other tenant owns none of `spec`'s namespaces, and no tenant of
/// the same name has other namespaces.
fn check_ownership(root: &Path, spec: &TenantSpec) -> std::result::Result<(), TenantError> {
    for t in list(root).unwrap_or_default() {
        if t.name == spec.name {
            if t.namespaces != spec.namespaces && !t.namespaces.is_empty() {
                return Err(TenantError::NameTaken {
                    name: t.name,
                    existing: t.namespaces.join(","),
                });
            }
            continue;
        }
        if let Some(ns) = spec.namespaces.iter().find(|n| t.namespaces.contains(n)) {
            return Err(TenantError::NamespaceTaken {
                namespace: ns.clone(),
                owner: t.name,
            });
        }
    }
    Ok(())
}

/// The tenant's Git URL is inside the fleet's source policy, or
/// `--allow-source` extends the policy (returned as a file edit).
fn check_source(
    root: &Path,
    spec: &TenantSpec,
    opts: &AddOptions,
) -> std::result::Result<Option<(std::path::PathBuf, Vec<u8>)>, TenantError> {
    let Some(policy) = super::policy::read(root) else {
        return Ok(None);
    };
    if let Some(pattern) = &opts.allow_source {
        let mut extended = policy.clone();
        extended.patterns.push(pattern.clone());
        if !extended.allows(&spec.git_url) {
            return Err(TenantError::SourceNotAllowed {
                url: spec.git_url.clone(),
                file: policy.file.display().to_string(),
                patterns: extended.patterns.join(", "),
            });
        }
        if policy.patterns.contains(pattern) {
            return Ok(None);
        }
        let content = super::policy::with_pattern(root, &policy, pattern)?;
        return Ok(Some((policy.file, content)));
    }
    if policy.allows(&spec.git_url) {
        return Ok(None);
    }
    Err(TenantError::SourceNotAllowed {
        url: spec.git_url.clone(),
        file: policy.file.display().to_string(),
        patterns: policy.patterns.join(", "),
    })
}

/// The overlays that set a `namespace:` for everything in them, and the
/// edits that move it into each listed tenant's base instead (a tenant
/// in another namespace could not be added next to it).
fn layout_changes(root: &Path, envs: &[String], spec: &TenantSpec) -> Result<(Vec<String>, Plan)> {
    let mut overlays = Vec::new();
    let mut p = Plan::new(root);
    let mut bases_done: Vec<String> = Vec::new();
    for env in envs {
        let path = root.join(format!("tenants/{env}/kustomization.yaml"));
        let Ok(docs) = read_yaml(&path) else { continue };
        let Some(doc) = docs.first() else { continue };
        let Some(ns) = doc.get("namespace").and_then(Value::as_str) else {
            continue;
        };
        if spec.namespaces.len() == 1 && spec.namespaces[0] == ns {
            continue;
        }
        overlays.push(format!("tenants/{env}/kustomization.yaml"));
        let resources = match doc.get("resources") {
            Some(Value::Seq(r)) => r
                .iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect(),
            _ => Vec::new(),
        };
        for r in resources {
            let Some(tenant) = r.strip_prefix("../base/") else {
                continue;
            };
            let k = format!(
                "tenants/base/{}/kustomization.yaml",
                tenant.trim_end_matches('/')
            );
            if bases_done.contains(&k) || !root.join(&k).is_file() {
                continue;
            }
            bases_done.push(k.clone());
            let mut bdocs = read_yaml(&root.join(&k))?;
            if let Some(b) = bdocs.first_mut() {
                if b.get("namespace").is_none() {
                    b.push("namespace", Value::str(ns));
                    p.merge(k, formats::yaml::emit_plain(&bdocs, 2))?;
                }
            }
        }
    }
    Ok((overlays, p))
}

/// What the checks of `tenant add` found.
struct Preflight {
    policy_edit: Option<(std::path::PathBuf, Vec<u8>)>,
    overlays: Vec<String>,
    layout: Plan,
}

fn preflight(
    root: &Path,
    envs: &[String],
    spec: &TenantSpec,
    opts: &AddOptions,
) -> std::result::Result<Preflight, TenantError> {
    check_ownership(root, spec)?;
    let policy_edit = check_source(root, spec, opts)?;
    let (overlays, layout) = layout_changes(root, envs, spec)?;
    if !overlays.is_empty() && !opts.adopt_layout {
        let mut preview = layout.clone();
        for env in envs {
            preview.merge(
                format!("tenants/{env}/kustomization.yaml"),
                edit_env_kustomization(root, env, &spec.name, false, true)?,
            )?;
        }
        return Err(TenantError::LayoutChange {
            overlays: overlays.join(", "),
            diff: preview.render(),
        });
    }
    Ok(Preflight {
        policy_edit,
        overlays,
        layout,
    })
}

/// Runs the checks of [`plan_add`] that need no credentials, so a refusal
/// comes before any key is generated or host scanned.
pub fn check_add(
    root: &Path,
    spec: &TenantSpec,
    opts: &AddOptions,
) -> std::result::Result<(), TenantError> {
    let envs = environments(root).unwrap_or_default();
    preflight(root, &envs, spec, opts).map(|_| ())
}

/// Plans `tenant add`: refuses, before anything is written, a namespace
/// another tenant has, a URL outside the source policy, a layout change
/// nobody agreed to, and a result that does not build.
pub fn plan_add(
    root: &Path,
    spec: &TenantSpec,
    env_paths: &BTreeMap<String, String>,
    auth: &AuthFile,
    opts: &AddOptions,
) -> std::result::Result<Plan, TenantError> {
    check_name("tenant", &spec.name)?;
    if spec.namespaces.is_empty() {
        return Err(Error::Other("a tenant needs at least one --namespace".into()).into());
    }
    for ns in &spec.namespaces {
        check_name("namespace", ns)?;
    }
    check_name("service account", &spec.service_account)?;
    let envs = environments(root).map_err(|_| {
        Error::Other(format!(
            "{} is not a fleet repository (no tenants/ folder): run `kustos init` first",
            root.display()
        ))
    })?;
    if envs.is_empty() {
        return Err(
            Error::Other("no environments under tenants/: run `kustos init` first".into()).into(),
        );
    }
    for e in env_paths.keys() {
        if !envs.contains(e) {
            return Err(Error::Other(format!(
                "--env-path names unknown environment {e:?} (known: {})",
                envs.join(", ")
            ))
            .into());
        }
    }
    let Preflight {
        policy_edit,
        overlays,
        layout,
    } = preflight(root, &envs, spec, opts)?;
    let base = base_dir(&spec.name);
    let mut p = layout;
    if let Some((file, content)) = policy_edit {
        p.merge(file, content)?;
    }
    p.put(format!("{base}/rbac.yaml"), t::tenant_rbac(spec))?;
    p.put(format!("{base}/sync.yaml"), t::tenant_sync(spec))?;
    let with_auth = match auth {
        AuthFile::None => false,
        AuthFile::Keep => {
            if !root.join(format!("{base}/auth.yaml")).exists() {
                return Err(
                    Error::Other("auth.yaml does not exist yet; cannot keep it".into()).into(),
                );
            }
            true
        }
        AuthFile::New(content) => {
            p.put_secret(format!("{base}/auth.yaml"), content.clone())?;
            true
        }
    };
    p.put(
        format!("{base}/kustomization.yaml"),
        t::tenant_kustomization(with_auth),
    )?;
    for env in &envs {
        let path = env_paths
            .get(env)
            .cloned()
            .unwrap_or_else(|| format!("./{env}"));
        p.put(
            format!("tenants/{env}/{}-patch.yaml", spec.name),
            t::tenant_env_patch(spec, &path),
        )?;
        p.merge(
            format!("tenants/{env}/kustomization.yaml"),
            edit_env_kustomization(root, env, &spec.name, true, !overlays.is_empty())?,
        )?;
    }
    if let Some(kubectl) = &opts.kubectl {
        let dirs: Vec<String> = envs.iter().map(|e| format!("tenants/{e}")).collect();
        if let Err((dir, message)) = p.builds(kubectl, &dirs) {
            return Err(TenantError::Build { dir, message });
        }
    }
    Ok(p)
}

/// Plans `tenant remove`: exactly the files `add` writes, and its entries.
pub fn plan_remove(root: &Path, name: &str) -> Result<Plan> {
    check_name("tenant", name)?;
    let base = base_dir(name);
    if !root.join(&base).is_dir() {
        return Err(Error::Other(format!(
            "no tenant {name:?} in {}",
            root.display()
        )));
    }
    let mut p = Plan::new(root);
    for f in BASE_FILES {
        p.delete(format!("{base}/{f}"));
    }
    p.prune_dirs.push(base.into());
    for env in environments(root)? {
        p.delete(format!("tenants/{env}/{name}-patch.yaml"));
        let k = format!("tenants/{env}/kustomization.yaml");
        if root.join(&k).exists() {
            p.merge(k, edit_env_kustomization(root, &env, name, false, false)?)?;
        }
    }
    Ok(p)
}

/// One row of `tenant list`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct TenantInfo {
    /// Tenant name.
    pub name: String,
    /// Its namespaces.
    pub namespaces: Vec<String>,
    /// Git URL of its repository.
    pub source: String,
    /// Branch.
    pub branch: String,
    /// Service account of its Kustomization.
    pub service_account: String,
    /// `encrypted`, `PLAINTEXT` or `none`.
    pub credentials: String,
    /// Environments that include it.
    pub environments: Vec<String>,
}

/// Lists the tenants of a fleet repository.
pub fn list(root: &Path) -> Result<Vec<TenantInfo>> {
    let base = root.join("tenants/base");
    let mut names: Vec<String> = std::fs::read_dir(&base)
        .map_err(|e| Error::io(base.display(), e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let envs = environments(root)?;
    let mut out = Vec::new();
    for name in names {
        let dir = base.join(&name);
        let mut info = TenantInfo {
            name: name.clone(),
            namespaces: Vec::new(),
            source: String::new(),
            branch: String::new(),
            service_account: String::new(),
            credentials: "none".into(),
            environments: Vec::new(),
        };
        if let Ok(docs) = read_yaml(&dir.join("rbac.yaml")) {
            for d in &docs {
                if d.get("kind").and_then(Value::as_str) == Some("Namespace") {
                    if let Some(n) = d.str_at(&["metadata", "name"]) {
                        info.namespaces.push(n.to_string());
                    }
                }
            }
        }
        if info.namespaces.is_empty() {
            if let Ok(docs) = read_yaml(&dir.join("kustomization.yaml")) {
                if let Some(ns) = docs
                    .first()
                    .and_then(|d| d.get("namespace"))
                    .and_then(Value::as_str)
                {
                    info.namespaces.push(ns.to_string());
                }
            }
        }
        if let Ok(docs) = read_yaml(&dir.join("sync.yaml")) {
            for d in &docs {
                match d.get("kind").and_then(Value::as_str) {
                    Some("GitRepository") => {
                        info.source = d.str_at(&["spec", "url"]).unwrap_or("").into();
                        info.branch = d.str_at(&["spec", "ref", "branch"]).unwrap_or("").into();
                    }
                    Some("Kustomization") => {
                        info.service_account = d
                            .str_at(&["spec", "serviceAccountName"])
                            .unwrap_or("")
                            .into();
                    }
                    _ => {}
                }
            }
        }
        let auth = dir.join("auth.yaml");
        if auth.exists() {
            let bytes = std::fs::read(&auth).map_err(|e| Error::io(auth.display(), e))?;
            info.credentials = if crate::ops::is_encrypted(&bytes, Format::Yaml) {
                "encrypted".into()
            } else {
                "PLAINTEXT".into()
            };
        }
        for env in &envs {
            let k = root.join(format!("tenants/{env}/kustomization.yaml"));
            if let Ok(docs) = read_yaml(&k) {
                let want = Value::str(format!("../base/{name}"));
                if docs
                    .iter()
                    .any(|d| matches!(d.get("resources"), Some(Value::Seq(r)) if r.contains(&want)))
                {
                    info.environments.push(env.clone());
                }
            }
        }
        out.push(info);
    }
    Ok(out)
}

/// Helper for callers building specs: the Secret name for a tenant's credentials.
pub fn auth_secret_name(tenant: &str) -> String {
    format!("{tenant}-auth")
}
