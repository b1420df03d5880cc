//! `kustos render` and the Argo CD Config Management Plugin entry point.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{write_stdout, CliError, CliResult, GlobalArgs};
use crate::keys::KeyRing;
use crate::render::{self, RenderOptions};

/// Arguments of `render`.
#[derive(Args, Debug)]
pub struct RenderArgs {
    /// The kustomization folder to render
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Every Secret must be in this namespace (the tenant's)
    #[arg(long, value_name = "NS")]
    pub tenant: Option<String>,
    /// kubectl binary (its built-in kustomize builds)
    #[arg(long, default_value = "kubectl", env = "KUSTOS_KUBECTL")]
    pub kubectl: PathBuf,
    /// Nothing outside this folder is read (default: the repository root: the closest ancestor with .git or .sops.yaml)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
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
    /// kubectl binary
    #[arg(long, default_value = "kubectl", env = "KUSTOS_KUBECTL")]
    pub kubectl: PathBuf,
    /// Do not restrict Secrets to the application's destination namespace
    #[arg(long = "no-tenant-scope")]
    pub no_tenant_scope: bool,
}

fn ring(g: &GlobalArgs) -> KeyRing {
    if g.keys_dir.is_empty() {
        KeyRing::from_env(Vec::new())
    } else {
        // A keys folder given explicitly is the only source (sidecar-style).
        let mut r = KeyRing::new(crate::keys::KeySources {
            keys_dirs: g.keys_dir.clone(),
            use_env: false,
            gpg_fallback: false,
        });
        r.decryption_order = vec!["age".into(), "pgp".into()];
        r
    }
}

/// `kustos render`.
pub fn render(g: &GlobalArgs, a: RenderArgs) -> CliResult {
    let out = render::render(
        &a.dir,
        &ring(g),
        &RenderOptions {
            tenant: a.tenant,
            kubectl: a.kubectl,
            root: a.root,
        },
    )
    .map_err(|e| CliError::from(e).in_file(&a.dir.display().to_string()))?;
    write_stdout(&out)
}

/// `kustos cmp generate`: Argo CD runs it in the application's source
/// folder with ARGOCD_APP_NAME, ARGOCD_APP_NAMESPACE (the destination
/// namespace) and friends set; stderr is shown in Argo CD's UI, so errors
/// never contain values.
pub fn cmp(g: &GlobalArgs, cmd: CmpCommand) -> CliResult {
    match cmd {
        CmpCommand::Generate(a) => {
            let tenant = if a.no_tenant_scope {
                None
            } else {
                std::env::var("ARGOCD_APP_NAMESPACE")
                    .ok()
                    .filter(|s| !s.is_empty())
            };
            let out = render::render(
                std::path::Path::new("."),
                &ring(g),
                &RenderOptions {
                    tenant,
                    kubectl: a.kubectl,
                    root: None,
                },
            )?;
            write_stdout(&out)
        }
    }
}
