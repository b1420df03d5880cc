//! `kustos render` and the Argo CD Config Management Plugin entry point.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{write_stdout, CliError, CliResult, GlobalArgs};
use crate::error::exit;
use crate::keys::folder::{folder_ring, Layout};
use crate::keys::KeyRing;
use crate::render::{self, RenderError, RenderOptions, Sandbox};

/// How render picks and confines, shared by `render` and `cmp generate`.
#[derive(Args, Debug, Clone)]
pub struct IsolationArgs {
    /// kubectl binary (its built-in kustomize builds)
    #[arg(long, default_value = "kubectl", env = "KUSTOS_KUBECTL")]
    pub kubectl: PathBuf,
    /// With per-tenant key folders (KEYS/<namespace>/), add the top-level (platform) keys to the tenant's
    #[arg(long, env = "KUSTOS_PLATFORM_KEYS")]
    pub platform_keys: bool,
    /// Refuse to render unless kubectl can be confined by the kernel (Landlock)
    #[arg(long, env = "KUSTOS_REQUIRE_LANDLOCK")]
    pub require_landlock: bool,
    /// With --keys-dir, also use the AWS KMS keys listed in *.awskms files of the key folders (AWS credentials from the environment)
    #[arg(long = "allow-kms", env = "KUSTOS_ALLOW_KMS")]
    pub allow_kms: bool,
}

/// Arguments of `render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The kustomization folder to render
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// The tenant namespace: every Secret must be in it, and with per-tenant key folders only its keys are used
    #[arg(long, value_name = "NS")]
    pub tenant: Option<String>,
    /// Nothing outside this folder is read (default: the repository root: the closest ancestor with .git or .sops.yaml)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    #[command(flatten)]
    pub isolation: IsolationArgs,
}

/// `cmp` subcommands (Argo CD Config Management Plugin).
#[derive(Subcommand, Debug)]
pub enum CmpCommand {
    /// Render the application folder (the CMP `generate` command)
    Generate(CmpArgs),
}

/// Arguments of `cmp generate`.
#[derive(Args, Debug)]
pub struct CmpArgs {
    /// Do not restrict Secrets to the application's destination namespace (only with a flat keys folder)
    #[arg(long = "no-tenant-scope")]
    pub no_tenant_scope: bool,
    #[command(flatten)]
    pub isolation: IsolationArgs,
}

/// The key ring for `tenant`: with `--keys-dir`, only the tenant's folder of
/// a per-tenant layout (plus the platform keys when asked); without it, the
/// user's own keys (environment, as sops finds them).
fn ring_for(
    g: &GlobalArgs,
    tenant: Option<&str>,
    platform_keys: bool,
    allow_kms: bool,
) -> CliResult<KeyRing> {
    if g.keys_dir.is_empty() {
        return Ok(KeyRing::from_env(Vec::new()));
    }
    let mut dirs = Vec::new();
    for root in &g.keys_dir {
        let layout = Layout::read(root).map_err(CliError::from)?;
        let mine = layout.dirs_for(root, tenant, platform_keys).map_err(|e| {
            CliError::new(
                exit::COULD_NOT_RETRIEVE_KEY,
                format!("--keys-dir {}: {e}", root.display()),
            )
        })?;
        dirs.extend(mine);
    }
    Ok(folder_ring(dirs, allow_kms))
}

fn options(iso: &IsolationArgs, tenant: Option<String>, root: Option<PathBuf>) -> RenderOptions {
    RenderOptions {
        tenant,
        kubectl: iso.kubectl.clone(),
        root,
        sandbox: if iso.require_landlock {
            Sandbox::Required
        } else {
            Sandbox::Auto
        },
        helper: None,
    }
}

fn run(g: &GlobalArgs, dir: &Path, ring: &KeyRing, opts: &RenderOptions) -> CliResult {
    crate::platform::harden_process();
    let out = render::render(dir, ring, opts).map_err(|e| render_error(e, dir))?;
    if g.verbose {
        eprintln!("kustos: render: kubectl confinement: {}", out.confinement);
    }
    write_stdout(&out.yaml)
}

fn render_error(e: RenderError, dir: &Path) -> CliError {
    let code = e.exit_code();
    let hint = e.cause().and_then(crate::Error::hint);
    // Confinement and verification errors name their file themselves.
    let names_a_file = matches!(e, RenderError::Confine(_) | RenderError::Verify(_));
    let mut c = CliError::new(code, e.to_string());
    if !names_a_file {
        c = c.in_file(&dir.display().to_string());
    }
    c.hint = hint;
    c
}

/// `kustos render`.
pub fn render(g: &GlobalArgs, a: RenderArgs) -> CliResult {
    let ring = ring_for(
        g,
        a.tenant.as_deref(),
        a.isolation.platform_keys,
        a.isolation.allow_kms,
    )?;
    let opts = options(&a.isolation, a.tenant, a.root);
    run(g, &a.dir, &ring, &opts)
}

/// `kustos cmp generate`: Argo CD runs it in the application's source
/// folder with ARGOCD_APP_NAMESPACE (the destination namespace; Argo CD
/// sets it, an Application cannot) and friends set; stderr is shown in Argo
/// CD's UI, so errors never contain values. The destination namespace is
/// the tenant: it picks the key folder and scopes the output.
pub fn cmp(g: &GlobalArgs, cmd: CmpCommand) -> CliResult {
    match cmd {
        CmpCommand::Generate(a) => {
            let namespace = std::env::var("ARGOCD_APP_NAMESPACE")
                .ok()
                .filter(|s| !s.is_empty());
            let ring = ring_for(
                g,
                namespace.as_deref(),
                a.isolation.platform_keys,
                a.isolation.allow_kms,
            )?;
            let tenant = if a.no_tenant_scope { None } else { namespace };
            let opts = options(&a.isolation, tenant, None);
            run(g, Path::new("."), &ring, &opts)
        }
    }
}
