//! `kustos serve`: the in-cluster decryption sidecar.
//!
//! An HTTP/1.1 API on a Unix socket and/or TCP (axum on hyper and tokio):
//!
//! * `POST /v1/decrypt` — body: a SOPS document; format from
//!   `X-Kustos-Format` (or `Content-Type`, else sniffed). Answers the
//!   MAC-verified plaintext in the same format.
//! * `POST /v1/render` — body: `{"path": "dir"}`; renders a kustomization
//!   under `--render-root` with [`crate::render::render`].
//!
//! The tenant comes from the connection: `--listen
//! unix:///run/kustos/{tenant}.sock` opens one socket per tenant key folder
//! (added and removed as folders come and go), and a request on tenant
//! `ns`'s socket uses `ns`'s keys only; naming another tenant there is
//! refused. On a shared listener a request may name its tenant
//! (`X-Kustos-Tenant`, `?tenant=`, or `tenant` in a render body) only with
//! `--trust-tenant-header`. The API is not served on non-loopback TCP
//! unless `--allow-remote` says so.
//! * `GET /healthz`, `GET /readyz` (503 until keys are loaded and while
//!   draining), `GET /metrics` (Prometheus text).
//!
//! Keys come from one mounted folder and are reloaded when it changes (see
//! [`keys`]); unwrapped data keys are cached per tenant ring (see
//! [`cache`]). Decryption runs on tokio's blocking pool. SIGTERM or SIGINT
//! stops accepting, lets in-flight requests finish (up to
//! `--drain-timeout`) and exits 0. Logs are JSON lines on stderr (see
//! [`log`]).

pub mod cache;
pub mod http;
pub mod keys;
pub mod log;
pub mod metrics;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};

use self::keys::{KeyStore, ReloadOutcome};
use self::metrics::Metrics;
use crate::{Error, Result};

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket path (`unix:///run/kustos/kustos.sock`).
    Unix(PathBuf),
    /// One Unix socket per tenant: the path with `{tenant}` replaced by each
    /// tenant namespace that has a key folder.
    PerTenant(String),
    /// A TCP address (`127.0.0.1:8080`, `[::1]:8080`, `tcp://0.0.0.0:9090`).
    Tcp(String),
}

/// The placeholder of per-tenant socket paths.
pub const TENANT_PLACEHOLDER: &str = "{tenant}";

impl Listen {
    /// Parses `unix:///path`, `unix:/path`, `tcp://host:port` or `host:port`.
    pub fn parse(s: &str) -> Result<Listen> {
        let s = s.trim();
        if let Some(rest) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if rest.is_empty() || !rest.starts_with('/') {
                return Err(Error::Other(format!(
                    "invalid listen address {s:?}: a Unix socket needs an absolute path (unix:///run/kustos/kustos.sock)"
                )));
            }
            if rest.contains(TENANT_PLACEHOLDER) {
                let parent = Path::new(rest)
                    .parent()
                    .map(|p| p.to_string_lossy().into_owned());
                if parent.is_some_and(|p| p.contains(TENANT_PLACEHOLDER))
                    || rest.matches(TENANT_PLACEHOLDER).count() != 1
                {
                    return Err(Error::Other(format!(
                        "invalid listen address {s:?}: {TENANT_PLACEHOLDER} may appear once, in the socket's file name"
                    )));
                }
                return Ok(Listen::PerTenant(rest.to_string()));
            }
            return Ok(Listen::Unix(PathBuf::from(rest)));
        }
        let hp = s.strip_prefix("tcp://").unwrap_or(s);
        match hp.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(Listen::Tcp(hp.to_string()))
            }
            _ => Err(Error::Other(format!(
                "invalid listen address {s:?}: use unix:///path/to.sock or HOST:PORT"
            ))),
        }
    }
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Unix(p) => write!(f, "unix://{}", p.display()),
            Listen::PerTenant(t) => write!(f, "unix://{t}"),
            Listen::Tcp(a) => f.write_str(a),
        }
    }
}

/// Everything `kustos serve` is told.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The mounted key Secret.
    pub keys_dir: PathBuf,
    /// Full API listeners.
    pub listen: Vec<Listen>,
    /// Probe and metrics listeners (no decrypt, no render).
    pub admin_listen: Vec<Listen>,
    /// Folder that `/v1/render` paths are relative to (render is off without it).
    pub render_root: Option<PathBuf>,
    /// Add the top-level keys to every tenant's ring.
    pub platform_keys: bool,
    /// Use the KMS keys each ring's folders list in `*.awskms` files.
    pub allow_kms: bool,
    /// How often the keys folder is checked.
    pub reload_interval: Duration,
    /// Largest request body.
    pub max_body: usize,
    /// Time to answer a request (and to receive its headers).
    pub timeout: Duration,
    /// Decrypt and render requests served at once (others wait).
    pub max_concurrency: usize,
    /// Longest wait for in-flight requests on SIGTERM.
    pub drain_timeout: Duration,
    /// Unwrapped data keys kept (0 disables the cache).
    pub cache_size: usize,
    /// kubectl for render.
    pub kubectl: PathBuf,
    /// Log every request, not only failures.
    pub access_log: bool,
    /// Permissions of Unix sockets.
    pub socket_mode: u32,
    /// Runtime worker threads (default: one per core).
    pub worker_threads: Option<usize>,
    /// Let shared listeners take the tenant from the request.
    pub trust_tenant_header: bool,
    /// Serve the API on non-loopback TCP addresses.
    pub allow_remote: bool,
    /// Open connections at most (more wait in the listen queue).
    pub max_connections: usize,
    /// Kernel confinement of render's kubectl.
    pub sandbox: crate::render::Sandbox,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            keys_dir: PathBuf::from("/var/run/kustos/keys"),
            listen: vec![Listen::Unix(PathBuf::from("/run/kustos/kustos.sock"))],
            admin_listen: Vec::new(),
            render_root: None,
            platform_keys: false,
            allow_kms: false,
            reload_interval: Duration::from_secs(2),
            max_body: 1 << 20,
            timeout: Duration::from_secs(30),
            max_concurrency: 256,
            drain_timeout: Duration::from_secs(30),
            cache_size: 1024,
            kubectl: PathBuf::from("kubectl"),
            access_log: true,
            socket_mode: 0o660,
            worker_threads: None,
            trust_tenant_header: false,
            allow_remote: false,
            max_connections: 1024,
            sandbox: crate::render::Sandbox::Auto,
        }
    }
}

/// Parses `30s`, `250ms`, `2m`, `1h` or plain seconds (`1.5`).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (use e.g. 30s, 500ms, 2m)"))?;
    if !v.is_finite() || v < 0.0 || v * mult > 1e9 {
        return Err(format!("invalid duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mult))
}

/// Parses `1MiB`, `512KiB`, `1M`, `64k` or plain bytes.
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let units: [(&str, u64); 9] = [
        ("kib", 1 << 10),
        ("mib", 1 << 20),
        ("gib", 1 << 30),
        ("kb", 1000),
        ("mb", 1_000_000),
        ("k", 1 << 10),
        ("m", 1 << 20),
        ("g", 1 << 30),
        ("b", 1),
    ];
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| lower.strip_suffix(u).map(|n| (n.trim(), *m)))
        .unwrap_or((lower.as_str(), 1));
    let v: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {t:?} (use e.g. 1MiB, 512KiB, 65536)"))?;
    v.checked_mul(mult)
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("invalid size {t:?}"))
}

/// Runs the sidecar until SIGTERM or SIGINT.
pub fn run(cfg: ServeConfig) -> Result<()> {
    crate::platform::harden_process();
    if cfg.listen.is_empty() {
        return Err(Error::Other("nothing to listen on: give --listen".into()));
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all()
        .thread_name("kustos-serve")
        .max_blocking_threads(cfg.max_concurrency.clamp(4, 512) + 8);
    if let Some(n) = cfg.worker_threads {
        b.worker_threads(n.max(1));
    }
    let rt = b
        .build()
        .map_err(|e| Error::Other(format!("cannot start the runtime: {e}")))?;
    let res = rt.block_on(serve(cfg));
    rt.shutdown_timeout(Duration::from_secs(1));
    res
}

fn reload(store: &KeyStore, m: &Metrics) -> ReloadOutcome {
    let outcome = store.check();
    match &outcome {
        ReloadOutcome::Unchanged => {}
        ReloadOutcome::Reloaded(id) => {
            m.reloaded();
            if let Some(g) = store.current() {
                let keys: serde_json::Map<String, Value> = g
                    .rings
                    .iter()
                    .map(|r| (r.name.clone(), Value::from(r.identities)))
                    .collect();
                log::info(
                    "keys loaded",
                    vec![
                        ("generation", Value::from(*id)),
                        ("tenant_mode", Value::from(g.tenant_mode)),
                        ("keys", Value::Object(keys)),
                    ],
                );
            }
        }
        ReloadOutcome::Failed(e) => {
            Metrics::inc(&m.reloads_failed);
            let in_service = store.current().map(|g| g.id).unwrap_or(0);
            log::warn(
                "key reload failed; the keys in service are kept",
                vec![
                    ("error", Value::from(e.as_str())),
                    ("generation_in_service", Value::from(in_service)),
                ],
            );
        }
    }
    outcome
}

enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

/// What one bound listener serves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Api {
    /// Decrypt, render, probes, metrics.
    Full,
    /// Probes and metrics only.
    Admin,
}

async fn bind_tcp(addr: &str, api: Api, allow_remote: bool) -> Result<(Bound, String)> {
    let t = TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Other(format!("cannot listen on {addr}: {e}")))?;
    let local = t
        .local_addr()
        .map_err(|e| Error::Other(format!("cannot listen on {addr}: {e}")))?;
    if api == Api::Full && !local.ip().is_loopback() && !allow_remote {
        return Err(Error::Other(format!(
            "--listen {addr}: refusing to serve decrypted secrets on a non-loopback address; use a Unix socket, 127.0.0.1, or --allow-remote behind an mTLS proxy"
        )));
    }
    Ok((Bound::Tcp(t), local.to_string()))
}

/// Binds a Unix socket that has its final mode before anyone can connect:
/// it is bound inside a private (0700) folder next to `path`, given `mode`,
/// then renamed into place.
fn bind_unix(path: &Path, mode: u32) -> Result<Bound> {
    use std::os::unix::fs::PermissionsExt;
    prepare_socket_path(path)?;
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let private = tempfile::Builder::new()
        .prefix(".kustos-sock-")
        .tempdir_in(parent)
        .map_err(|e| Error::Other(format!("cannot listen on {}: {e}", path.display())))?;
    let staged = private.path().join("s");
    let u = UnixListener::bind(&staged)
        .map_err(|e| Error::Other(format!("cannot listen on {}: {e}", path.display())))?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(path.display(), e))?;
    std::fs::rename(&staged, path).map_err(|e| Error::io(path.display(), e))?;
    Ok(Bound::Unix(u, path.to_path_buf()))
}

/// Removes a stale socket left by a previous run; refuses a live one.
fn prepare_socket_path(path: &Path) -> Result<()> {
    use std::os::unix::fs::FileTypeExt;
    if let Some(parent) = path.parent() {
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent.display(), e))?;
        }
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::Other(format!(
                    "{}: a server is already listening on this socket (another kustos, or the same --listen given twice)",
                    path.display()
                )));
            }
            std::fs::remove_file(path).map_err(|e| Error::io(path.display(), e))
        }
        Ok(_) => Err(Error::Other(format!(
            "{}: exists and is not a socket",
            path.display()
        ))),
        Err(_) => Ok(()),
    }
}

/// What every accept loop shares.
#[derive(Clone)]
struct Accepting {
    builder: Arc<http1::Builder>,
    /// One permit per open connection.
    connections: Arc<Semaphore>,
}

fn spawn_conn<S>(
    io: S,
    router: &Router,
    builder: &http1::Builder,
    graceful: &GracefulShutdown,
    permit: tokio::sync::OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = TowerToHyperService::new(router.clone());
    let conn = builder.serve_connection(TokioIo::new(io), svc);
    let fut = graceful.watch(conn);
    tokio::spawn(async move {
        // Client resets and header timeouts end here; nothing to report.
        let _ = fut.await;
        drop(permit);
    });
}

async fn accept_loop(
    bound: Bound,
    router: Router,
    acc: Accepting,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        // Past the connection limit, new clients wait in the listen queue.
        let permit = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            p = acc.connections.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            r = async {
                match &bound {
                    Bound::Tcp(t) => t.accept().await.map(|(s, _)| {
                        let _ = s.set_nodelay(true);
                        spawn_conn(s, &router, &acc.builder, &graceful, permit);
                    }),
                    Bound::Unix(u, _) => u.accept().await.map(|(s, _)| {
                        spawn_conn(s, &router, &acc.builder, &graceful, permit);
                    }),
                }
            } => r,
        };
        if let Err(e) = accepted {
            // EMFILE and friends: back off instead of spinning.
            log::warn("accept failed", vec![("error", Value::from(e.to_string()))]);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Stop accepting, then let the connections finish their requests.
    if let Bound::Unix(_, path) = &bound {
        let _ = std::fs::remove_file(path);
    }
    drop(bound);
    graceful.shutdown().await;
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        _ = recv(&mut term) => "SIGTERM",
        _ = recv(&mut int) => "SIGINT",
    }
}

/// The per-tenant sockets of `--listen unix:///…/{tenant}.sock`, kept in
/// step with the tenant folders of the keys in service.
struct TenantSockets {
    templates: Vec<String>,
    mode: u32,
    router: Router,
    acc: Accepting,
    /// (template, tenant) → the loop's stop signal and task.
    open: std::collections::BTreeMap<
        (String, String),
        (watch::Sender<bool>, tokio::task::JoinHandle<()>),
    >,
}

impl TenantSockets {
    /// Opens sockets for new tenants and closes those of tenants whose key
    /// folder is gone.
    fn sync(&mut self, gen: Option<&keys::Generation>) {
        let wanted: std::collections::BTreeSet<(String, String)> = match gen {
            Some(g) if g.tenant_mode => self
                .templates
                .iter()
                .flat_map(|t| {
                    g.tenants()
                        .into_iter()
                        .map(move |n| (t.clone(), n.to_string()))
                })
                .collect(),
            _ => Default::default(),
        };
        let gone: Vec<(String, String)> = self
            .open
            .keys()
            .filter(|k| !wanted.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some((stop, _task)) = self.open.remove(&k) {
                let _ = stop.send(true);
                log::info("tenant socket closed", vec![("tenant", Value::from(k.1))]);
            }
        }
        for (template, tenant) in wanted {
            let key = (template.clone(), tenant.clone());
            if self.open.contains_key(&key) {
                continue;
            }
            let path = PathBuf::from(template.replace(TENANT_PLACEHOLDER, &tenant));
            match bind_unix(&path, self.mode) {
                Ok(bound) => {
                    let (stop, stopped) = watch::channel(false);
                    let router = self
                        .router
                        .clone()
                        .layer(axum::Extension(http::ConnScope::Tenant(tenant.clone())));
                    let task = tokio::spawn(accept_loop(bound, router, self.acc.clone(), stopped));
                    log::info(
                        "listening",
                        vec![
                            ("address", Value::from(format!("unix://{}", path.display()))),
                            ("api", Value::from("api")),
                            ("tenant", Value::from(tenant.clone())),
                        ],
                    );
                    self.open.insert(key, (stop, task));
                }
                Err(e) => log::warn(
                    "cannot open a tenant socket",
                    vec![
                        ("tenant", Value::from(tenant.clone())),
                        ("error", Value::from(e.to_string())),
                    ],
                ),
            }
        }
    }

    /// Stops every loop and waits for their connections to finish.
    async fn close_all(&mut self) {
        let open = std::mem::take(&mut self.open);
        for (stop, _) in open.values() {
            let _ = stop.send(true);
        }
        for (_, (_, task)) in open {
            let _ = task.await;
        }
    }
}

async fn serve(cfg: ServeConfig) -> Result<()> {
    let render_root = check_folders(&cfg)?;
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(
        KeyStore::new(cfg.keys_dir.clone(), cfg.platform_keys, cfg.cache_size)
            .with_kms(cfg.allow_kms),
    );
    {
        let (s, m) = (store.clone(), metrics.clone());
        let _ = tokio::task::spawn_blocking(move || reload(&s, &m)).await;
    }
    let state = Arc::new(http::AppState {
        store: store.clone(),
        metrics: metrics.clone(),
        limiter: Arc::new(Semaphore::new(cfg.max_concurrency.max(1))),
        draining: AtomicBool::new(false),
        render_root,
        kubectl: cfg.kubectl.clone(),
        max_body: cfg.max_body,
        timeout: cfg.timeout,
        access_log: cfg.access_log,
        trust_tenant_header: cfg.trust_tenant_header,
        sandbox: cfg.sandbox,
    });
    let acc = accepting(&cfg);
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let api = http::router(state.clone());
    let (loops, templates) = start_listeners(&cfg, &state, &api, &acc, &shutdown_tx).await?;
    let sockets = TenantSockets {
        templates,
        mode: cfg.socket_mode,
        router: api,
        acc,
        open: Default::default(),
    };
    let reloader = spawn_reloader(&cfg, store, metrics.clone(), sockets, shutdown_rx);

    let sig = wait_for_signal().await;
    state
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    log::info(
        "draining",
        vec![
            ("signal", Value::from(sig)),
            (
                "in_flight",
                Value::from(metrics.in_flight.load(std::sync::atomic::Ordering::Relaxed)),
            ),
        ],
    );
    let _ = shutdown_tx.send(true);
    drain(&cfg, loops, reloader).await;
    Ok(())
}

/// Checks `--keys-dir` and `--render-root`; returns the render root
/// resolved, so later symlink changes cannot move it.
fn check_folders(cfg: &ServeConfig) -> Result<Option<PathBuf>> {
    let meta = std::fs::metadata(&cfg.keys_dir)
        .map_err(|e| Error::io(format!("--keys-dir {}", cfg.keys_dir.display()), e))?;
    if !meta.is_dir() {
        return Err(Error::Other(format!(
            "--keys-dir {}: not a folder",
            cfg.keys_dir.display()
        )));
    }
    let Some(r) = &cfg.render_root else {
        return Ok(None);
    };
    let c = std::fs::canonicalize(r)
        .map_err(|e| Error::io(format!("--render-root {}", r.display()), e))?;
    if !c.is_dir() {
        return Err(Error::Other(format!(
            "--render-root {}: not a folder",
            r.display()
        )));
    }
    Ok(Some(c))
}

/// The HTTP/1 settings and the connection limit every listener shares.
fn accepting(cfg: &ServeConfig) -> Accepting {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.timeout)
        .keep_alive(true)
        .max_buf_size(64 << 10);
    Accepting {
        builder: Arc::new(builder),
        connections: Arc::new(Semaphore::new(cfg.max_connections.max(1))),
    }
}

/// Binds every `--listen` and `--admin-listen` address and starts its
/// accept loop. Per-tenant socket templates are returned, not bound: they
/// follow the key folders. On a bind error `shutdown` stops the loops
/// already started before the error is returned.
async fn start_listeners(
    cfg: &ServeConfig,
    state: &Arc<http::AppState>,
    api: &axum::Router,
    acc: &Accepting,
    shutdown: &watch::Sender<bool>,
) -> Result<(tokio::task::JoinSet<()>, Vec<String>)> {
    let mut loops = tokio::task::JoinSet::new();
    let admin = http::admin_router(state.clone());
    let mut templates = Vec::new();
    let all = cfg
        .listen
        .iter()
        .map(|l| (l, Api::Full))
        .chain(cfg.admin_listen.iter().map(|l| (l, Api::Admin)));
    for (l, kind) in all {
        let bound = match l {
            Listen::PerTenant(t) if kind == Api::Full => {
                templates.push(t.clone());
                continue;
            }
            Listen::PerTenant(_) => Err(Error::Other(format!(
                "--admin-listen {l}: per-tenant sockets are for the API (--listen)"
            ))),
            Listen::Tcp(addr) => bind_tcp(addr, kind, cfg.allow_remote).await,
            Listen::Unix(path) => bind_unix(path, cfg.socket_mode).map(|b| (b, l.to_string())),
        };
        let (bound, addr) = match bound {
            Ok(b) => b,
            Err(e) => {
                let _ = shutdown.send(true);
                while loops.join_next().await.is_some() {}
                return Err(e);
            }
        };
        // /metrics names tenants only where nobody else can read it.
        let names_visible = match &bound {
            Bound::Unix(..) => true,
            Bound::Tcp(t) => t
                .local_addr()
                .map(|a| a.ip().is_loopback())
                .unwrap_or(false),
        };
        let router = match kind {
            Api::Full => api.clone(),
            Api::Admin => admin.clone(),
        }
        .layer(axum::Extension(http::ConnScope::Shared))
        .layer(axum::Extension(http::TenantNamesVisible(names_visible)));
        log::info(
            "listening",
            vec![
                ("address", Value::from(addr)),
                (
                    "api",
                    Value::from(if kind == Api::Full { "api" } else { "admin" }),
                ),
            ],
        );
        loops.spawn(accept_loop(
            bound,
            router,
            acc.clone(),
            shutdown.subscribe(),
        ));
    }
    Ok((loops, templates))
}

/// Re-reads the key folders every `--reload-interval` (the mounted Secret
/// changes under us) and opens or closes per-tenant sockets to match.
fn spawn_reloader(
    cfg: &ServeConfig,
    store: Arc<KeyStore>,
    metrics: Arc<Metrics>,
    mut sockets: TenantSockets,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    sockets.sync(store.current().as_deref());
    let every = cfg.reload_interval.max(Duration::from_millis(50));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                _ = tick.tick() => {}
            }
            let (s2, m2) = (store.clone(), metrics.clone());
            let outcome = tokio::task::spawn_blocking(move || reload(&s2, &m2)).await;
            if matches!(outcome, Ok(ReloadOutcome::Reloaded(_))) {
                sockets.sync(store.current().as_deref());
            }
        }
        sockets.close_all().await;
    })
}

/// Waits up to `--drain-timeout` for open connections to finish, then
/// closes the rest.
async fn drain(
    cfg: &ServeConfig,
    mut loops: tokio::task::JoinSet<()>,
    reloader: tokio::task::JoinHandle<()>,
) {
    let drained = tokio::time::timeout(cfg.drain_timeout, async {
        while loops.join_next().await.is_some() {}
        let _ = reloader.await;
    })
    .await
    .is_ok();
    if !drained {
        log::warn(
            "drain timeout: closing the connections still open",
            vec![(
                "drain_timeout",
                Value::from(http::fmt_duration(cfg.drain_timeout)),
            )],
        );
        loops.abort_all();
        for l in &cfg.listen {
            if let Listen::Unix(p) = l {
                let _ = std::fs::remove_file(p);
            }
        }
    }
    log::info("stopped", vec![("drained", Value::from(drained))]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            Listen::parse("unix:///run/k.sock").unwrap(),
            Listen::Unix("/run/k.sock".into())
        );
        assert_eq!(
            Listen::parse("unix:/run/k.sock").unwrap(),
            Listen::Unix("/run/k.sock".into())
        );
        assert_eq!(
            Listen::parse("127.0.0.1:8080").unwrap(),
            Listen::Tcp("127.0.0.1:8080".into())
        );
        assert_eq!(
            Listen::parse("tcp://[::1]:0").unwrap(),
            Listen::Tcp("[::1]:0".into())
        );
        assert!(Listen::parse("unix://relative").is_err());
        assert_eq!(
            Listen::parse("unix:///run/kustos/{tenant}.sock").unwrap(),
            Listen::PerTenant("/run/kustos/{tenant}.sock".into())
        );
        assert!(Listen::parse("unix:///run/{tenant}/k.sock").is_err());
        assert!(Listen::parse("unix:///run/{tenant}{tenant}.sock").is_err());
        assert!(Listen::parse("8080").is_err());
        assert!(Listen::parse("host:port").is_err());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("abc").is_err());
        assert_eq!(parse_size("1MiB").unwrap(), 1 << 20);
        assert_eq!(parse_size("64k").unwrap(), 65536);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert_eq!(parse_size("2 MB").unwrap(), 2_000_000);
        assert!(parse_size("0").is_err());
        assert!(parse_size("x").is_err());
    }
}
