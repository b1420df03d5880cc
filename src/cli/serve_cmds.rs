//! `kustos serve`: the decryption sidecar.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{CliError, CliResult, GlobalArgs};
use crate::error::exit;
use crate::serve::{self, parse_duration, parse_size, Listen, ServeConfig};

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("invalid mode {s:?} (octal, e.g. 660)"))
}

/// Arguments of `serve`; the keys folder is the global `--keys-dir`.
#[derive(Args, Debug)]
#[command(
    after_help = "Keys: --keys-dir DIR (the mounted key Secret: *.agekey and *.asc files, optionally one \
sub-folder per tenant namespace). The environment (SOPS_AGE_KEY…) and gpg are never used.\n\
Tenants: --listen 'unix:///run/kustos/{tenant}.sock' opens one socket per tenant key folder; a request on \
tenant ns's socket uses ns's keys only. A shared listener takes X-Kustos-Tenant only with --trust-tenant-header.\n\
API: POST /v1/decrypt (X-Kustos-Format), POST /v1/render {\"path\"}, GET /healthz, /readyz, /metrics."
)]
pub struct ServeArgs {
    /// Where to serve the API: unix:///path/to.sock, unix:///dir/{tenant}.sock (one socket per tenant), or HOST:PORT (repeatable)
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "unix:///run/kustos/kustos.sock"
    )]
    pub listen: Vec<String>,
    /// Also serve only /healthz, /readyz and /metrics here, e.g. 0.0.0.0:9090 for kubelet probes (repeatable)
    #[arg(long = "admin-listen", value_name = "ADDR")]
    pub admin_listen: Vec<String>,
    /// Enable POST /v1/render for kustomizations under this folder
    #[arg(long, value_name = "DIR")]
    pub render_root: Option<PathBuf>,
    /// Add the top-level keys (platform keys) to every tenant's key ring
    #[arg(long)]
    pub platform_keys: bool,
    /// Use the AWS KMS keys listed in each ring's *.awskms files (AWS credentials from the environment: IRSA, Pod Identity)
    #[arg(long = "allow-kms")]
    pub allow_kms: bool,
    /// How often the keys folder is checked for a rotated Secret
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub reload_interval: Duration,
    /// Largest request body (larger: 413)
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_body: u64,
    /// Time to receive and answer a request
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Decrypt and render requests served at once (more wait for a slot)
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_concurrency: usize,
    /// Longest wait for in-flight requests on SIGTERM/SIGINT [default: --timeout + 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub drain_timeout: Option<Duration>,
    /// Unwrapped data keys kept in memory (0: unwrap on every request)
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub cache_size: usize,
    /// kubectl binary (its built-in kustomize builds) for render
    #[arg(long, default_value = "kubectl", env = "KUSTOS_KUBECTL")]
    pub kubectl: PathBuf,
    /// Log failed requests only (no line per successful request)
    #[arg(long)]
    pub no_access_log: bool,
    /// Permissions of Unix sockets (octal)
    #[arg(long, value_name = "MODE", default_value = "660", value_parser = parse_mode)]
    pub socket_mode: u32,
    /// Runtime worker threads [default: one per core]
    #[arg(long, value_name = "N")]
    pub worker_threads: Option<usize>,
    /// On shared listeners, let X-Kustos-Tenant / ?tenant= choose the tenant (only for a single trusted caller)
    #[arg(long)]
    pub trust_tenant_header: bool,
    /// Serve the API on non-loopback TCP addresses (put it behind an mTLS proxy)
    #[arg(long)]
    pub allow_remote: bool,
    /// Open connections at most (more wait in the listen queue)
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_connections: usize,
    /// Refuse to start unless render's kubectl can be confined by the kernel (Landlock)
    #[arg(long, env = "KUSTOS_REQUIRE_LANDLOCK")]
    pub require_landlock: bool,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError::new(exit::GENERIC, msg)
}

/// `kustos serve`.
pub fn serve(g: &GlobalArgs, a: ServeArgs) -> CliResult {
    let keys_dir = match g.keys_dir.as_slice() {
        [d] => d.clone(),
        [] => {
            let mut e = usage("serve needs the keys folder: --keys-dir DIR");
            e.hint = Some("mount the decryption Secret and pass its folder, e.g. --keys-dir /var/run/kustos/keys".into());
            return Err(e);
        }
        _ => {
            return Err(usage(
                "serve takes exactly one --keys-dir (use one sub-folder per tenant)",
            ))
        }
    };
    let parse = |v: &[String]| -> CliResult<Vec<Listen>> {
        v.iter()
            .map(|s| Listen::parse(s).map_err(CliError::from))
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    for l in a.listen.iter().chain(&a.admin_listen) {
        if !seen.insert(
            Listen::parse(l)
                .map(|x| x.to_string())
                .unwrap_or_else(|_| l.clone()),
        ) {
            return Err(usage(format!("--listen {l} is given twice")));
        }
    }
    let cfg = ServeConfig {
        keys_dir,
        listen: parse(&a.listen)?,
        admin_listen: parse(&a.admin_listen)?,
        render_root: a.render_root,
        platform_keys: a.platform_keys,
        allow_kms: a.allow_kms,
        reload_interval: a.reload_interval,
        max_body: usize::try_from(a.max_body).map_err(|_| usage("--max-body is too large"))?,
        timeout: a.timeout,
        max_concurrency: a.max_concurrency.max(1),
        drain_timeout: a
            .drain_timeout
            .unwrap_or(a.timeout + Duration::from_secs(5)),
        cache_size: a.cache_size,
        kubectl: a.kubectl,
        access_log: !a.no_access_log,
        socket_mode: a.socket_mode,
        worker_threads: a.worker_threads,
        trust_tenant_header: a.trust_tenant_header,
        allow_remote: a.allow_remote,
        max_connections: a.max_connections.max(1),
        sandbox: if a.require_landlock {
            crate::render::Sandbox::Required
        } else {
            crate::render::Sandbox::Auto
        },
    };
    if a.require_landlock {
        if let crate::platform::Confinement::Unavailable(why) = crate::platform::confinement() {
            return Err(usage(format!("--require-landlock: {why}")));
        }
    }
    if cfg.timeout.is_zero() {
        return Err(usage("--timeout must be more than 0"));
    }
    serve::run(cfg).map_err(CliError::from)
}
