//! `kustos render`: what Flux's kustomize-controller does with a SOPS
//! Kustomization, as a command (and the core of the sidecar and the Argo CD
//! plugin), but stricter:
//!
//! 1. the folder is copied into a private 0700 workspace (on tmpfs when
//!    `/dev/shm` is available), following no symlink out of it and reading
//!    only regular files of at most 5 MiB;
//! 2. every SOPS file in it is MAC-verified **before** the build (kustomize
//!    mutates objects, so the check must be on the sources);
//! 3. encrypted `secretGenerator` files/envs and patch files are decrypted in
//!    the workspace, like the controller does;
//! 4. `kubectl kustomize --load-restrictor LoadRestrictionsNone` builds it;
//! 5. objects that still carry a `sops` block, and Secret `data` entries that
//!    hold SOPS documents, are decrypted (unless annotated
//!    `kustomize.toolkit.fluxcd.io/decrypt: Disabled`);
//! 6. with a tenant, every Secret must be in the tenant's namespace.
//!
//! The workspace is removed when the render returns, on every path.

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use zeroize::Zeroizing;

use crate::formats::{self, Format};
use crate::fsutil::{self, NewFileMode};
use crate::keys::{self, KeyRing};
use crate::sops::value::{Map, Value};
use crate::sops::{metadata, tree, Cipher, Tree};
use crate::{Error, Result};

/// The largest file render reads (kustomize-controller's limit).
pub const MAX_FILE: u64 = 5 << 20;
/// The largest folder render copies.
pub const MAX_TOTAL: u64 = 256 << 20;

/// Options of a render.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Every Secret in the output must be in this namespace.
    pub tenant: Option<String>,
    /// The kubectl binary (its built-in kustomize builds).
    pub kubectl: PathBuf,
    /// The boundary nothing may be read from outside of (the Git
    /// repository, like the controller's artifact). Default: the closest
    /// ancestor of the folder with `.git` or `.sops.yaml`, else the folder.
    pub root: Option<PathBuf>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            tenant: None,
            kubectl: PathBuf::from("kubectl"),
            root: None,
        }
    }
}

/// The repository root of a folder: the closest ancestor (or itself) with
/// `.git` or `.sops.yaml`, else the folder.
pub fn repo_root(dir: &Path) -> PathBuf {
    let mut cur = dir.to_path_buf();
    loop {
        if cur.join(".git").exists() || cur.join(".sops.yaml").is_file() {
            return cur;
        }
        if !cur.pop() {
            return dir.to_path_buf();
        }
    }
}

fn err(msg: impl Into<String>) -> Error {
    Error::Other(msg.into())
}

const WORKSPACE_PREFIX: &str = ".kustos-render-";

/// Workspaces older than this were left by a render that was killed
/// (SIGKILL skips every cleanup); no render runs this long.
const STALE_WORKSPACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes this user's workspaces in `parent` that a killed render left
/// behind, so plaintext does not stay in memory-backed /dev/shm until reboot.
pub fn sweep_stale_workspaces(parent: &Path, older_than: std::time::Duration) -> usize {
    use std::os::unix::fs::MetadataExt;
    let Ok(rd) = std::fs::read_dir(parent) else {
        return 0;
    };
    let uid = nix::unistd::geteuid().as_raw();
    let mut removed = 0;
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(WORKSPACE_PREFIX) {
            continue;
        }
        // symlink_metadata: never follow a planted link out of the folder.
        let Ok(md) = std::fs::symlink_metadata(e.path()) else {
            continue;
        };
        let old = md
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= older_than);
        if md.is_dir() && md.uid() == uid && old && std::fs::remove_dir_all(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// A private workspace, on tmpfs when possible, removed on drop.
fn workspace() -> Result<tempfile::TempDir> {
    let shm = Path::new("/dev/shm");
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix(WORKSPACE_PREFIX);
        b
    };
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        sweep_stale_workspaces(shm, STALE_WORKSPACE);
        sweep_stale_workspaces(&std::env::temp_dir(), STALE_WORKSPACE);
    });
    if shm.is_dir() {
        if let Ok(d) = builder().tempdir_in(shm) {
            return Ok(d);
        }
    }
    builder()
        .tempdir()
        .map_err(|e| err(format!("cannot create a private workspace: {e}")))
}

/// Copies `src` into `dst`, refusing anything that leaves `root`.
fn copy_tree(root: &Path, src: &Path, dst: &Path, total: &mut u64) -> Result<()> {
    let rd = std::fs::read_dir(src).map_err(|e| Error::io(src.display(), e))?;
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(src.display(), e))?;
        let name = entry.file_name();
        if name == ".git" {
            continue;
        }
        let path = entry.path();
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .display()
            .to_string();
        // Resolve symlinks and require the target inside the root.
        let real = std::fs::canonicalize(&path).map_err(|e| Error::io(&rel, e))?;
        if !real.starts_with(root) {
            return Err(err(format!(
                "{rel}: symlink points outside the rendered folder"
            )));
        }
        let meta = std::fs::metadata(&real).map_err(|e| Error::io(&rel, e))?;
        let target = dst.join(&name);
        if meta.is_dir() {
            if real != path && path.starts_with(&real) {
                return Err(err(format!("{rel}: symlink loop")));
            }
            std::fs::create_dir(&target).map_err(|e| Error::io(target.display(), e))?;
            copy_tree(root, &path, &target, total)?;
        } else if meta.is_file() {
            if meta.len() > MAX_FILE {
                return Err(err(format!("{rel}: larger than {} MiB", MAX_FILE >> 20)));
            }
            *total += meta.len();
            if *total > MAX_TOTAL {
                return Err(err(format!(
                    "the folder is larger than {} MiB",
                    MAX_TOTAL >> 20
                )));
            }
            let data = fsutil::read_file(&real)?;
            fsutil::write_atomic(&target, &data, NewFileMode::Private)?;
        } else {
            return Err(err(format!("{rel}: not a regular file or folder")));
        }
    }
    Ok(())
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    for p in v {
        if p.is_dir() {
            walk_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// The format kustomize-controller uses for a secretGenerator `files` key.
fn format_for_key(key: &str) -> Format {
    if key.ends_with(".dockerconfigjson") {
        Format::Json
    } else {
        Format::from_path(Path::new(key))
    }
}

/// Marker bytes the controller looks for before decrypting (by format).
fn has_marker(data: &[u8], f: Format) -> bool {
    let needle: &[u8] = match f {
        Format::Yaml => b"mac: ENC[",
        Format::Json | Format::Binary => b"\"mac\": \"ENC[",
        Format::Dotenv => b"sops_mac=ENC[",
        Format::Ini => b"[sops]",
    };
    data.windows(needle.len()).any(|w| w == needle)
}

fn decrypt_tree(t: &mut Tree, ring: &KeyRing, ignore_mac: bool) -> Result<()> {
    let key = keys::recover_data_key(&t.metadata.key_groups, t.metadata.shamir_threshold, ring)?;
    let mut cipher = Cipher::read_only(&key);
    tree::decrypt(&mut t.branches, &t.metadata, &mut cipher, ignore_mac)
}

/// Decrypts file bytes of a format, MAC verified.
fn decrypt_bytes(data: &[u8], f: Format, ring: &KeyRing) -> Result<Zeroizing<Vec<u8>>> {
    let mut t = formats::load_encrypted(f, data)?;
    decrypt_tree(&mut t, ring, false)?;
    formats::emit_plain(f, &t.branches, &Default::default())
}

fn inside(base: &Path, rel: &str, ws: &Path) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(err(format!(
            "{rel}: generator and patch paths must stay inside the folder"
        )));
    }
    let full = base.join(p);
    if !full.starts_with(ws) {
        return Err(err(format!("{rel}: outside the folder")));
    }
    Ok(full)
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Seq(items)) => items
            .iter()
            .filter_map(|i| i.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// Decrypts generator inputs and patches referenced by one kustomization.
fn decrypt_generator_inputs(kfile: &Path, ws: &Path, ring: &KeyRing) -> Result<()> {
    let base = kfile.parent().unwrap_or(ws);
    let bytes = std::fs::read(kfile).map_err(|e| Error::io(kfile.display(), e))?;
    let docs = formats::load_plain(Format::Yaml, &bytes)
        .map_err(|e| err(format!("{}: {e}", rel_ws(ws, kfile))))?;
    let Some(k) = docs.first() else { return Ok(()) };
    let mut jobs: Vec<(String, Format)> = Vec::new();
    if let Some(Value::Seq(gens)) = k.get("secretGenerator") {
        for g in gens.iter().filter_map(Value::as_map) {
            for f in strings(g.get("files")) {
                let (key, path) = match f.split_once('=') {
                    Some((k, p)) => (k.to_string(), p.to_string()),
                    None => (
                        Path::new(&f)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        f.clone(),
                    ),
                };
                jobs.push((path, format_for_key(&key)));
            }
            for e in strings(g.get("envs")) {
                let f = match Format::from_path(Path::new(&e)) {
                    Format::Binary => Format::Dotenv,
                    other => other,
                };
                jobs.push((e, f));
            }
        }
    }
    if let Some(Value::Seq(patches)) = k.get("patches") {
        for p in patches.iter().filter_map(Value::as_map) {
            if let Some(path) = p.get("path").and_then(Value::as_str) {
                jobs.push((path.to_string(), Format::from_path(Path::new(path))));
            }
        }
    }
    for p in strings(k.get("patchesStrategicMerge")) {
        if !p.contains('\n') {
            let f = Format::from_path(Path::new(&p));
            jobs.push((p, f));
        }
    }
    for (rel, f) in jobs {
        let full = inside(base, &rel, ws)?;
        let Ok(data) = std::fs::read(&full) else {
            continue;
        };
        if !has_marker(&data, f) {
            continue;
        }
        let plain = decrypt_bytes(&data, f, ring)
            .map_err(|e| err(format!("{}: {e}", rel_ws(ws, &full))))?;
        fsutil::write_atomic(&full, &plain, NewFileMode::Private)?;
    }
    Ok(())
}

fn rel_ws(ws: &Path, p: &Path) -> String {
    p.strip_prefix(ws).unwrap_or(p).display().to_string()
}

fn annotation<'a>(m: &'a Map, key: &str) -> Option<&'a str> {
    m.get("metadata")?
        .as_map()?
        .get("annotations")?
        .as_map()?
        .get(key)?
        .as_str()
}

/// Renders `dir`: returns the plain YAML stream for `kubectl apply`.
pub fn render(dir: &Path, ring: &KeyRing, opts: &RenderOptions) -> Result<Zeroizing<Vec<u8>>> {
    let target = std::fs::canonicalize(dir).map_err(|e| Error::io(dir.display(), e))?;
    if !target.join("kustomization.yaml").is_file()
        && !target.join("kustomization.yml").is_file()
        && !target.join("Kustomization").is_file()
    {
        return Err(err(format!("{}: no kustomization.yaml", dir.display())));
    }
    let root = match &opts.root {
        Some(r) => std::fs::canonicalize(r).map_err(|e| Error::io(r.display(), e))?,
        None => repo_root(&target),
    };
    let rel = target
        .strip_prefix(&root)
        .map_err(|_| {
            err(format!(
                "{} is outside the root {}",
                dir.display(),
                root.display()
            ))
        })?
        .to_path_buf();
    let ws_dir = workspace()?;
    let ws = ws_dir.path().join("src");
    std::fs::create_dir(&ws).map_err(|e| Error::io(ws.display(), e))?;
    let mut total = 0;
    copy_tree(&root, &root, &ws, &mut total)?;
    let build_dir = ws.join(&rel);

    // 2. Verify every SOPS document of the sources before anything is built.
    let mut files = Vec::new();
    walk_files(&ws, &mut files);
    for f in &files {
        let fmt = Format::from_path(f);
        if !matches!(fmt, Format::Yaml | Format::Json) {
            continue;
        }
        let data = std::fs::read(f).map_err(|e| Error::io(f.display(), e))?;
        if !has_marker(&data, fmt) {
            continue;
        }
        let Ok(mut t) = formats::load_encrypted(fmt, &data) else {
            continue;
        };
        let disabled = t
            .branches
            .iter()
            .any(|b| annotation(b, "kustomize.toolkit.fluxcd.io/decrypt") == Some("Disabled"));
        if disabled {
            continue;
        }
        decrypt_tree(&mut t, ring, false).map_err(|e| err(format!("{}: {e}", rel_ws(&ws, f))))?;
    }
    // 3. Decrypt generator inputs and patches, like the controller.
    for f in files.iter().filter(|f| {
        matches!(
            f.file_name().and_then(|n| n.to_str()),
            Some("kustomization.yaml" | "kustomization.yml" | "Kustomization")
        )
    }) {
        decrypt_generator_inputs(f, &ws, ring)?;
    }
    // 4. Build.
    let out = Command::new(&opts.kubectl)
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(&build_dir)
        .output()
        .map_err(|e| err(format!("cannot run {}: {e}", opts.kubectl.display())))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).replace(&ws.display().to_string(), ".");
        return Err(err(format!(
            "kustomize build failed: {}",
            msg.lines().last().unwrap_or("").trim()
        )));
    }
    // 5. Decrypt what still carries SOPS data.
    let mut docs = formats::load_plain(Format::Yaml, &stdout)
        .map_err(|e| err(format!("kustomize output: {e}")))?;
    for d in docs.iter_mut() {
        let name = format!(
            "{}/{}",
            d.get("kind").and_then(Value::as_str).unwrap_or("?"),
            d.get("metadata")
                .and_then(Value::as_map)
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("?")
        );
        if annotation(d, "kustomize.toolkit.fluxcd.io/decrypt") == Some("Disabled") {
            continue;
        }
        if let Some(md) = d.get("sops").cloned() {
            let metadata = metadata::from_value(&md).map_err(|e| err(format!("{name}: {e}")))?;
            d.remove("sops");
            let mut t = Tree {
                branches: vec![std::mem::take(d)],
                metadata,
            };
            // The MAC was verified on the source file; kustomize changed the object since.
            decrypt_tree(&mut t, ring, true).map_err(|e| err(format!("{name}: {e}")))?;
            *d = t.branches.pop().unwrap_or_default();
        }
        if d.get("kind").and_then(Value::as_str) == Some("Secret") {
            if let Some(Value::Map(data)) = d.get_mut("data") {
                for item in data.0.iter_mut() {
                    let Some(key) = item.key.as_str().map(String::from) else {
                        continue;
                    };
                    let Some(b64) = item.value.as_str() else {
                        continue;
                    };
                    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim())
                    else {
                        continue;
                    };
                    let raw = Zeroizing::new(raw);
                    let f = format_for_key(&key);
                    if !has_marker(&raw, f) {
                        continue;
                    }
                    let plain = decrypt_bytes(&raw, f, ring)
                        .map_err(|e| err(format!("{name} data.{key}: {e}")))?;
                    item.value =
                        Value::str(base64::engine::general_purpose::STANDARD.encode(&plain[..]));
                }
            }
        }
    }
    // 6. Tenant scoping.
    if let Some(tenant) = &opts.tenant {
        for d in &docs {
            if d.get("kind").and_then(Value::as_str) != Some("Secret") {
                continue;
            }
            let md = d.get("metadata").and_then(Value::as_map);
            let ns = md
                .and_then(|m| m.get("namespace"))
                .and_then(Value::as_str)
                .unwrap_or("");
            let name = md
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("?");
            if ns != tenant {
                return Err(err(format!(
                    "Secret/{name} is in namespace {ns:?}, not the tenant's {tenant:?}; refusing to render it"
                )));
            }
        }
    }
    Ok(Zeroizing::new(formats::yaml::emit_plain(&docs, 2)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_workspaces_are_swept_and_nothing_else() {
        let parent = tempfile::tempdir().unwrap();
        let mk = |name: &str, age_secs: i64| {
            let p = parent.path().join(name);
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("secret.yaml"), "plaintext").unwrap();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let t = nix::sys::time::TimeVal::new(now - age_secs, 0);
            nix::sys::stat::utimes(&p, &t, &t).unwrap();
            p
        };
        let old = mk(".kustos-render-old", 7200);
        let fresh = mk(".kustos-render-fresh", 10);
        let other = mk("unrelated-old", 7200);
        let outside = tempfile::tempdir().unwrap();
        let link = parent.path().join(".kustos-render-link");
        std::os::unix::fs::symlink(outside.path(), &link).unwrap();
        assert_eq!(sweep_stale_workspaces(parent.path(), STALE_WORKSPACE), 1);
        assert!(!old.exists());
        assert!(fresh.exists() && other.exists() && outside.path().exists());
        assert!(link.symlink_metadata().is_ok(), "links are left alone");
    }
}
