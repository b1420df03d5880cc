//! `kustos render`: what Flux's kustomize-controller does with a SOPS
//! Kustomization, as a command (and the core of the sidecar and the Argo CD
//! plugin), treating every byte of the folder as hostile:
//!
//! 1. every path the build would read is found and confined to the root
//!    before anything runs ([`crate::kustomize::closure`]);
//! 2. only those files are copied into a private workspace ([`workspace`]);
//! 3. every SOPS document of the resource and patch files among them is
//!    MAC-verified, and `secretGenerator` inputs and patches are decrypted in
//!    the workspace, like the controller does ([`verify`]);
//! 4. `kubectl kustomize` builds the workspace, confined to reading it
//!    (Landlock, where the kernel has it: [`crate::platform`]);
//! 5. objects that still carry SOPS data are decrypted only when they match
//!    a verified source, and Secret `data` entries that hold SOPS documents
//!    are decrypted MAC-verified (unless annotated
//!    `kustomize.toolkit.fluxcd.io/decrypt: Disabled`);
//! 6. with a tenant, every Secret and every decrypted object must be in the
//!    tenant's namespace, and so must the source it was decrypted from.
//!
//! The key ring is the caller's: with per-tenant key folders it holds only
//! the tenant's keys ([`crate::keys::folder`]), so another tenant's files
//! never open. The workspace is removed when the render returns.

pub mod verify;
pub mod workspace;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine as _;
use zeroize::Zeroizing;

use self::verify::{Sources, VerifyError};
use self::workspace::Workspace;
use crate::formats::{self, Format};
use crate::keys::KeyRing;
use crate::kustomize::closure::{self, ConfineError, Use};
use crate::platform::{self, Confinement};
use crate::sops::value::{Map, Value};

pub use crate::kustomize::closure::format_for_key;

/// Whether the kubectl child must be confined by the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sandbox {
    /// Landlock where the kernel offers it, path checks alone elsewhere.
    #[default]
    Auto,
    /// Landlock, or no render.
    Required,
    /// Path checks only (platforms without Landlock, the library's tests).
    Off,
}

/// Options of a render.
#[derive(Clone, Debug)]
pub struct RenderOptions {
    /// Every Secret and decrypted object must be in this namespace.
    pub tenant: Option<String>,
    /// The kubectl binary (its built-in kustomize builds).
    pub kubectl: PathBuf,
    /// The boundary nothing may be read from outside of (the Git
    /// repository, like the controller's artifact). Default: the closest
    /// ancestor of the folder with `.git` or `.sops.yaml`, else the folder.
    pub root: Option<PathBuf>,
    /// Kernel confinement of kubectl.
    pub sandbox: Sandbox,
    /// The kustos binary that confines kubectl (default: this program).
    pub helper: Option<PathBuf>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            tenant: None,
            kubectl: PathBuf::from("kubectl"),
            root: None,
            sandbox: Sandbox::Auto,
            helper: None,
        }
    }
}

/// The output of a render.
pub struct Rendered {
    /// The plain YAML stream for `kubectl apply`.
    pub yaml: Zeroizing<Vec<u8>>,
    /// How kubectl was confined.
    pub confinement: Confinement,
}

/// Why a render failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The build would read something it must not.
    #[error(transparent)]
    Confine(#[from] ConfineError),
    /// A source or an output object did not verify or decrypt.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// kustomize failed.
    #[error("kustomize build failed: {0}")]
    Build(String),
    /// An object or its source is outside the tenant's namespace.
    #[error("{object} is in namespace {namespace:?}, not the tenant's {tenant:?}; refusing to render it")]
    Namespace {
        /// `Kind/name`.
        object: String,
        /// Where it is.
        namespace: String,
        /// The tenant.
        tenant: String,
    },
    /// Kernel confinement was required and is not available.
    #[error("kubectl cannot be confined: {0}")]
    NoSandbox(String),
    /// Anything else (I/O, the folder itself).
    #[error(transparent)]
    Other(#[from] crate::Error),
}

impl RenderError {
    /// The library error underneath, if any (to branch on MAC mismatches or
    /// missing keys).
    pub fn cause(&self) -> Option<&crate::Error> {
        match self {
            RenderError::Verify(v) => v.cause(),
            RenderError::Other(e) => Some(e),
            _ => None,
        }
    }

    /// The sops-style exit code.
    pub fn exit_code(&self) -> i32 {
        match self.cause() {
            Some(e) => e.exit_code(),
            None => crate::error::exit::GENERIC,
        }
    }
}

type Result<T, E = RenderError> = std::result::Result<T, E>;

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

fn other(msg: String) -> RenderError {
    RenderError::Other(crate::Error::Other(msg))
}

/// `Kind/name` of an object, for messages.
fn object_name(d: &Map) -> String {
    format!(
        "{}/{}",
        d.get("kind").and_then(Value::as_str).unwrap_or("?"),
        d.get("metadata")
            .and_then(Value::as_map)
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?")
    )
}

/// Renders `dir` with the keys of `ring`.
pub fn render(dir: &Path, ring: &KeyRing, opts: &RenderOptions) -> Result<Rendered> {
    let (root, rel) = locate(dir, opts)?;
    let confinement = choose_confinement(opts)?;
    // 1. What the build reads, all inside the root.
    let files = closure::closure(&root, &rel)?;
    // 2. Only that, in a private workspace.
    let ws = Workspace::new()?;
    ws.fill(&root, &files)?;
    // 3. Verify sources, decrypt generator inputs and patches.
    let mut sources = Sources::new(ring);
    prepare_sources(&ws, &files, &mut sources)?;
    // 4. Build.
    let built = build(&ws, &rel, opts, &confinement)?;
    // 5 and 6. Decrypt what still carries SOPS data, scope to the tenant.
    let mut docs = formats::load_plain(Format::Yaml, &built)
        .map_err(|e| other(format!("kustomize output: {e}")))?;
    for d in docs.iter_mut() {
        decrypt_output_object(d, &mut sources, opts.tenant.as_deref())?;
    }
    if let Some(tenant) = &opts.tenant {
        for d in &docs {
            check_secret_namespace(d, tenant)?;
        }
    }
    Ok(Rendered {
        yaml: Zeroizing::new(formats::yaml::emit_plain(&docs, 2)),
        confinement,
    })
}

/// The canonical root and the folder relative to it.
fn locate(dir: &Path, opts: &RenderOptions) -> Result<(PathBuf, PathBuf)> {
    let target = std::fs::canonicalize(dir).map_err(|e| crate::Error::io(dir.display(), e))?;
    let root = match &opts.root {
        Some(r) => std::fs::canonicalize(r).map_err(|e| crate::Error::io(r.display(), e))?,
        None => repo_root(&target),
    };
    let rel = target
        .strip_prefix(&root)
        .map_err(|_| {
            other(format!(
                "{} is outside the root {}",
                dir.display(),
                root.display()
            ))
        })?
        .to_path_buf();
    Ok((root, rel))
}

fn choose_confinement(opts: &RenderOptions) -> Result<Confinement> {
    match (opts.sandbox, platform::confinement()) {
        (Sandbox::Off, _) => Ok(Confinement::Unavailable("turned off".into())),
        (Sandbox::Required, Confinement::Unavailable(why)) => Err(RenderError::NoSandbox(why)),
        (_, c) => Ok(c),
    }
}

/// Step 3: verifies every SOPS document of resource and patch files, and
/// decrypts `secretGenerator` inputs and patch files in the workspace.
fn prepare_sources(ws: &Workspace, files: &closure::Closure, sources: &mut Sources) -> Result<()> {
    for (rel, uses) in &files.files {
        let reads_objects = uses.contains(&Use::Resource) || uses.contains(&Use::Patch);
        let secret_input = uses.iter().find_map(|u| match u {
            Use::SecretInput(f) => Some(*f),
            _ => None,
        });
        if !reads_objects && secret_input.is_none() {
            continue;
        }
        let data = ws.read(rel)?;
        if reads_objects {
            sources.verify_stream(rel, &data)?;
        }
        let decrypt_as =
            secret_input.or_else(|| uses.contains(&Use::Patch).then(|| Format::from_path(rel)));
        if let Some(f) = decrypt_as {
            if verify::has_marker(&data, f) {
                let plain = sources
                    .decrypt_file(&data, f)
                    .map_err(|e| VerifyError::Source {
                        file: rel.display().to_string(),
                        source: e,
                    })?;
                ws.put(rel, &plain)?;
            }
        }
    }
    Ok(())
}

/// Step 4: `kubectl kustomize` on the workspace copy of the folder.
fn build(
    ws: &Workspace,
    rel: &Path,
    opts: &RenderOptions,
    confinement: &Confinement,
) -> Result<Zeroizing<Vec<u8>>> {
    let target = ws.path().join(rel);
    // Every path inside the workspace was checked; `..` between folders of
    // the repository is as legitimate as in the controller's own build.
    let args: Vec<OsString> = vec![
        "kustomize".into(),
        "--load-restrictor".into(),
        "LoadRestrictionsNone".into(),
        target.into_os_string(),
    ];
    let mut cmd = match confinement {
        Confinement::Landlock => {
            let helper = match &opts.helper {
                Some(h) => h.clone(),
                None => std::env::current_exe()
                    .map_err(|e| other(format!("cannot find the kustos binary: {e}")))?,
            };
            let kubectl = resolve_program(&opts.kubectl)?;
            platform::confined_command(&helper, &[ws.path().to_path_buf()], &kubectl, &args)
        }
        Confinement::Unavailable(_) => {
            let mut c = std::process::Command::new(&opts.kubectl);
            c.args(&args);
            c
        }
    };
    let out = cmd
        .env_clear()
        .current_dir(ws.path())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| other(format!("cannot run {}: {e}", opts.kubectl.display())))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        let msg = ws.unmention(&String::from_utf8_lossy(&out.stderr));
        return Err(RenderError::Build(
            msg.lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_string(),
        ));
    }
    Ok(stdout)
}

/// An absolute path for a program name, searched in `PATH` like a shell.
fn resolve_program(p: &Path) -> Result<PathBuf> {
    if p.components().count() > 1 || p.is_absolute() {
        return std::fs::canonicalize(p).map_err(|e| crate::Error::io(p.display(), e).into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
        .ok_or_else(|| other(format!("cannot find {} in PATH", p.display())))
}

/// Steps 5 and 6 for one object of the build output.
fn decrypt_output_object(d: &mut Map, sources: &mut Sources, tenant: Option<&str>) -> Result<()> {
    if verify::annotation(d, verify::DECRYPT_ANNOTATION) == Some("Disabled") {
        return Ok(());
    }
    let name = object_name(d);
    let mut decrypted = false;
    if let Some(src) = sources.decrypt_object(d, &name)? {
        decrypted = true;
        if let (Some(t), Some(ns)) = (tenant, &src.namespace) {
            if ns != t {
                return Err(RenderError::Namespace {
                    object: format!("{name} (source {})", src.file.display()),
                    namespace: ns.clone(),
                    tenant: t.to_string(),
                });
            }
        }
    }
    decrypted |= decrypt_secret_data(d, sources, &name)?;
    if let (Some(t), true) = (tenant, decrypted) {
        let ns = verify::namespace_of(d).unwrap_or("");
        if ns != t {
            return Err(RenderError::Namespace {
                object: name,
                namespace: ns.to_string(),
                tenant: t.to_string(),
            });
        }
    }
    Ok(())
}

/// Secret `data` entries that hold whole SOPS documents (generator
/// outputs), decrypted MAC-verified; returns whether any was.
fn decrypt_secret_data(d: &mut Map, sources: &mut Sources, name: &str) -> Result<bool> {
    if d.get("kind").and_then(Value::as_str) != Some("Secret") {
        return Ok(false);
    }
    let Some(Value::Map(data)) = d.get_mut("data") else {
        return Ok(false);
    };
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut any = false;
    for item in data.0.iter_mut() {
        let Some(key) = item.key.as_str().map(String::from) else {
            continue;
        };
        let Some(text) = item.value.as_str() else {
            continue;
        };
        let Ok(raw) = b64.decode(text.trim()) else {
            continue;
        };
        let raw = Zeroizing::new(raw);
        let f = format_for_key(&key);
        if !verify::has_marker(&raw, f) {
            continue;
        }
        let plain = sources
            .decrypt_file(&raw, f)
            .map_err(|e| VerifyError::Object {
                object: format!("{name} data.{key}"),
                source: e,
            })?;
        item.value = Value::str(b64.encode(&plain[..]));
        any = true;
    }
    Ok(any)
}

/// Every Secret of a tenant's render is in the tenant's namespace.
fn check_secret_namespace(d: &Map, tenant: &str) -> Result<()> {
    if d.get("kind").and_then(Value::as_str) != Some("Secret") {
        return Ok(());
    }
    let ns = verify::namespace_of(d).unwrap_or("");
    if ns != tenant {
        return Err(RenderError::Namespace {
            object: object_name(d),
            namespace: ns.to_string(),
            tenant: tenant.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn required_confinement_is_refused_where_the_kernel_has_none() {
        let with = |sandbox| RenderOptions {
            sandbox,
            ..RenderOptions::default()
        };
        assert!(matches!(
            choose_confinement(&with(Sandbox::Off)),
            Ok(Confinement::Unavailable(_))
        ));
        // Where the kernel has no Landlock (macOS, old Linux kernels), a
        // render that requires it fails instead of running unconfined.
        let required = choose_confinement(&with(Sandbox::Required));
        match platform::confinement() {
            Confinement::Landlock => assert_eq!(required.unwrap(), Confinement::Landlock),
            Confinement::Unavailable(why) => {
                assert!(matches!(required, Err(RenderError::NoSandbox(w)) if w == why));
            }
        }
    }
}
