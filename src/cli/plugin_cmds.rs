//! `kustos plugin …` and the plugin entry points kustomize calls.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};

use super::{write_stdout, CliError, CliResult, GlobalArgs, OutputFormat};
use crate::error::exit;
use crate::keys::KeyRing;
use crate::plugin::{self, doctor};

/// `plugin` subcommands.
#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Put kustos where kustomize looks for its own and KSOPS' generator kinds
    Install(InstallArgs),
    /// Find why a SOPS generator would fail or be silently skipped, and what to change
    Doctor(DoctorArgs),
    /// Run as a legacy exec plugin on a generator config file
    Exec {
        /// The generator config kustomize wrote
        config: PathBuf,
    },
    /// Run as a KRM function: ResourceList on stdin, ResourceList on stdout
    Krm,
}

/// Arguments of `plugin install`.
#[derive(Args, Debug)]
pub struct InstallArgs {
    /// kustomize's plugin home (default: $KUSTOMIZE_PLUGIN_HOME, else $XDG_CONFIG_HOME/kustomize/plugin, else ~/.config/kustomize/plugin)
    #[arg(long = "plugin-home", value_name = "DIR")]
    pub plugin_home: Option<PathBuf>,
    /// Also copy kustos into this folder as `ksops` (for KRM exec functions and Argo CD init containers)
    #[arg(long = "path", value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// Symlink instead of copying
    #[arg(long)]
    pub link: bool,
}

/// Arguments of `plugin doctor`.
#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Folder with kustomizations to check
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// The flags your kustomize build runs with, e.g. "--enable-alpha-plugins --enable-exec"
    #[arg(long = "build-flags", value_name = "FLAGS", allow_hyphen_values = true)]
    pub build_flags: Option<String>,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn ring_from_env(g: Option<&GlobalArgs>) -> KeyRing {
    let dirs = match g {
        Some(g) => g.keys_dir.clone(),
        None => std::env::var_os("KUSTOS_KEYS_DIR")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    };
    // The plugin runs inside builds others may trigger (Argo CD's
    // repo-server): no variable-time RSA for small keys there. Age plugins
    // are allowed: the key files that name them are the operator's, as
    // with KSOPS, and without a terminal their questions are declined.
    // KMS as sops (and KSOPS) use it: the caller's AWS credentials, any key.
    KeyRing::new(crate::keys::KeySources {
        keys_dirs: dirs,
        use_env: true,
        gpg_fallback: true,
        weak_rsa: false,
        age_plugins: true,
        kms: crate::keys::KmsAccess::Any,
    })
}

fn place(src: &Path, dst: &Path, link: bool) -> CliResult {
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| CliError::from(crate::Error::io(parent.display(), e)))?;
    }
    let _ = std::fs::remove_file(dst);
    let res = if link {
        std::os::unix::fs::symlink(src, dst)
    } else {
        std::fs::copy(src, dst).map(|_| ())
    };
    res.map_err(|e| CliError::from(crate::Error::io(dst.display(), e)))?;
    eprintln!("installed {}", dst.display());
    Ok(())
}

/// `kustos plugin …`.
pub fn plugin(g: &GlobalArgs, cmd: PluginCommand) -> CliResult {
    match cmd {
        PluginCommand::Install(a) => {
            let me = std::env::current_exe().map_err(|e| {
                CliError::new(exit::GENERIC, format!("cannot find the kustos binary: {e}"))
            })?;
            let home = a.plugin_home.or_else(plugin::plugin_home).ok_or_else(|| {
                CliError::new(exit::GENERIC, "no plugin home: pass --plugin-home")
            })?;
            for rel in plugin::plugin_paths() {
                place(&me, &home.join(rel), a.link)?;
            }
            if let Some(dir) = &a.path {
                place(&me, &dir.join("ksops"), a.link)?;
            }
            let snippet = format!(
                "# kustomization.yaml
generators:
  - secret-generator.yaml
---
# secret-generator.yaml (legacy plugin: kustomize build --enable-alpha-plugins)
apiVersion: {}
kind: {}
metadata:
  name: secrets
files:
  - ./secret.enc.yaml
# KSOPS configs (apiVersion: viaduct.ai/v1, kind: ksops) work unchanged.
# As a KRM exec function add the annotation
#   config.kubernetes.io/function: |
#     exec:
#       path: ksops
# and build with --enable-alpha-plugins --enable-exec.
# Plugin home: {}
",
                plugin::API_VERSION,
                plugin::KIND,
                home.display()
            );
            write_stdout(snippet.as_bytes())
        }
        PluginCommand::Doctor(a) => {
            let ring = ring_from_env(Some(g));
            let checks = doctor::doctor(&a.dir, a.build_flags.as_deref(), &ring);
            let failed = checks.iter().any(|c| c.level == doctor::Level::Error);
            match a.output {
                OutputFormat::Json => {
                    let s = serde_json::to_string_pretty(&checks).unwrap_or_default();
                    write_stdout(format!("{s}\n").as_bytes())?;
                }
                OutputFormat::Text => {
                    let mut out = String::new();
                    for c in &checks {
                        let tag = match c.level {
                            doctor::Level::Ok => "ok     ",
                            doctor::Level::Warning => "warning",
                            doctor::Level::Error => "error  ",
                        };
                        out.push_str(&format!("{tag} {}: {}\n", c.file, c.message));
                        if !c.fix.is_empty() {
                            out.push_str(&format!("        fix: {}\n", c.fix));
                        }
                    }
                    write_stdout(out.as_bytes())?;
                }
            }
            if failed {
                Err(CliError::silent(exit::GENERIC))
            } else {
                Ok(())
            }
        }
        PluginCommand::Exec { config } => legacy(&config, Some(g)),
        PluginCommand::Krm => krm(Some(g)),
    }
}

fn legacy(config: &Path, g: Option<&GlobalArgs>) -> CliResult {
    let root = std::env::var_os("KUSTOMIZE_PLUGIN_CONFIG_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from("."));
    let ring = ring_from_env(g);
    let out = plugin::run_legacy(config, &root, &ring)
        .map_err(|e| CliError::new(exit::GENERIC, e.to_string()))?;
    write_stdout(&out)
}

fn krm(g: Option<&GlobalArgs>) -> CliResult {
    let input = crate::fsutil::read_stdin()?;
    let root = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let ring = ring_from_env(g);
    let out = plugin::run_krm(&input, &root, &ring);
    write_stdout(&out.bytes)?;
    if out.failed {
        // kustomize shows the results; repeat the reason on stderr for logs.
        let text = String::from_utf8_lossy(&out.bytes);
        if let Some(m) = text.lines().find_map(|l| {
            l.trim()
                .strip_prefix("- message: ")
                .or_else(|| l.trim().strip_prefix("message: "))
        }) {
            eprintln!("kustos: {m}");
        }
        return Err(CliError::silent(exit::GENERIC));
    }
    Ok(())
}

/// Entry when kustomize runs kustos under a plugin name or as a bare KRM
/// function. Returns `None` when the invocation is an ordinary CLI call.
pub fn dispatch_plugin(args: &[std::ffi::OsString]) -> Option<CliResult> {
    let argv0 = args.first()?.to_string_lossy().into_owned();
    if plugin::is_plugin_name(&argv0) {
        return Some(match args.len() {
            1 if std::io::stdin().is_terminal() => Err(CliError::new(
                exit::GENERIC,
                "this is a kustomize plugin: kustomize runs it with a generator config (legacy) or a ResourceList on stdin (KRM)",
            )),
            1 => krm(None),
            2 => legacy(Path::new(&args[1]), None),
            _ => Err(CliError::new(exit::GENERIC, "usage: ksops [GENERATOR-CONFIG-FILE] (or a ResourceList on stdin)")),
        });
    }
    // `kustos` with no arguments and a pipe on stdin: a KRM exec function.
    if args.len() == 1 && !std::io::stdin().is_terminal() {
        return Some(krm(None));
    }
    None
}
