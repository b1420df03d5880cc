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

/// Adds (or removes) a tenant's entries in `tenants/<env>/kustomization.yaml`.
fn edit_env_kustomization(root: &Path, env: &str, name: &str, add: bool) -> Result<Vec<u8>> {
    let path = root.join(format!("tenants/{env}/kustomization.yaml"));
    let mut docs = if path.exists() {
        read_yaml(&path)?
    } else {
        formats::load_plain(Format::Yaml, t::env_kustomization_empty().as_bytes())?
    };
    let doc = docs
        .first_mut()
        .ok_or_else(|| Error::Other(format!("{} has no document", path.display())))?;
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

/// Plans `tenant add`.
pub fn plan_add(
    root: &Path,
    spec: &TenantSpec,
    env_paths: &BTreeMap<String, String>,
    auth: &AuthFile,
) -> Result<Plan> {
    check_name("tenant", &spec.name)?;
    if spec.namespaces.is_empty() {
        return Err(Error::Other(
            "a tenant needs at least one --namespace".into(),
        ));
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
        return Err(Error::Other(
            "no environments under tenants/: run `kustos init` first".into(),
        ));
    }
    for e in env_paths.keys() {
        if !envs.contains(e) {
            return Err(Error::Other(format!(
                "--env-path names unknown environment {e:?} (known: {})",
                envs.join(", ")
            )));
        }
    }
    let base = base_dir(&spec.name);
    let mut p = Plan::new(root);
    p.put(format!("{base}/rbac.yaml"), t::tenant_rbac(spec))?;
    p.put(format!("{base}/sync.yaml"), t::tenant_sync(spec))?;
    let with_auth = match auth {
        AuthFile::None => false,
        AuthFile::Keep => {
            if !root.join(format!("{base}/auth.yaml")).exists() {
                return Err(Error::Other(
                    "auth.yaml does not exist yet; cannot keep it".into(),
                ));
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
            edit_env_kustomization(root, env, &spec.name, true)?,
        )?;
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
            p.merge(k, edit_env_kustomization(root, &env, name, false)?)?;
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
