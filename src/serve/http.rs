//! The HTTP API: routes, handlers and the middleware that applies the
//! concurrency limit and the request timeout, counts metrics and writes the
//! access log.
//!
//! Errors are JSON objects `{"error": "…"}` with a reason and never a
//! value: 400 malformed request or document, 403 tenant not allowed, 404
//! unknown route or render folder, 408 body not received in time, 413 body
//! too large, 422 MAC mismatch or decryption failure, 503 not ready, too
//! busy or out of time.

use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::keys::{self, Generation, KeyStore};
use super::log;
use super::metrics::{Metrics, Route};
use crate::formats::{self, Format};
use crate::render::{self, RenderOptions};
use crate::sops::{tree, Cipher};
use crate::Error;

/// Header naming the document format.
pub const FORMAT_HEADER: &str = "x-kustos-format";
/// Header naming the tenant namespace.
pub const TENANT_HEADER: &str = "x-kustos-tenant";

/// What every handler shares.
pub struct AppState {
    /// The keys.
    pub store: Arc<KeyStore>,
    /// The counters.
    pub metrics: Arc<Metrics>,
    /// `--max-concurrency` permits for decrypt and render.
    pub limiter: Arc<Semaphore>,
    /// Set on SIGTERM: `/readyz` answers 503.
    pub draining: AtomicBool,
    /// `--render-root`, canonical.
    pub render_root: Option<PathBuf>,
    /// kubectl for render.
    pub kubectl: PathBuf,
    /// `--max-body`.
    pub max_body: usize,
    /// `--timeout`.
    pub timeout: Duration,
    /// Log every request (errors are always logged).
    pub access_log: bool,
    /// On a shared listener, let `X-Kustos-Tenant` / `?tenant=` pick the
    /// tenant (`--trust-tenant-header`: one trusted caller only).
    pub trust_tenant_header: bool,
    /// Kernel confinement of render's kubectl.
    pub sandbox: render::Sandbox,
}

type Shared = Arc<AppState>;

/// Who the connection belongs to, set by the listener that accepted it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnScope {
    /// A listener every caller shares (one socket, TCP).
    Shared,
    /// A per-tenant socket: only this tenant can reach it.
    Tenant(String),
}

/// Whether `/metrics` may name tenants on this listener (not on
/// non-loopback admin ports).
#[derive(Clone, Copy, Debug)]
pub struct TenantNamesVisible(pub bool);

/// The concurrency slot of a request, handed to its blocking work so it is
/// released when that work ends, not when the request times out.
#[derive(Clone)]
struct Slot(Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>);

impl Slot {
    fn take(ext: &axum::http::Extensions) -> Option<tokio::sync::OwnedSemaphorePermit> {
        ext.get::<Slot>()
            .and_then(|s| s.0.lock().unwrap_or_else(|e| e.into_inner()).take())
    }
}

/// When the request must be answered.
#[derive(Clone, Copy)]
struct Deadline(tokio::time::Instant);

/// What the access log says about a request, set by the handlers.
#[derive(Clone, Default)]
struct Outcome {
    tenant: Option<String>,
    error: Option<String>,
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    body.push(b'\n');
    let mut r = (status, body).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json_response(self.status, &json!({ "error": self.message }));
        r.extensions_mut().insert(Outcome {
            tenant: None,
            error: Some(self.message),
        });
        r
    }
}

/// Adds the tenant to the access-log record of a response.
fn finish(tenant: Option<String>, result: Result<Response, ApiError>) -> Response {
    let mut r = result.unwrap_or_else(IntoResponse::into_response);
    let mut o = r.extensions_mut().remove::<Outcome>().unwrap_or_default();
    o.tenant = tenant;
    r.extensions_mut().insert(o);
    r
}

/// Plaintext bytes whose buffer is wiped when the response is dropped.
struct Secret(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Secret {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn plain_response(
    content_type: &'static str,
    fmt: Option<Format>,
    data: Zeroizing<Vec<u8>>,
) -> Response {
    let mut r = Response::new(Body::from(Bytes::from_owner(Secret(data))));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(f) = fmt {
        h.insert(FORMAT_HEADER, HeaderValue::from_static(f.name()));
    }
    r
}

fn content_type_of(f: Format) -> &'static str {
    match f {
        Format::Yaml => "application/yaml",
        Format::Json => "application/json",
        Format::Dotenv | Format::Ini => "text/plain; charset=utf-8",
        Format::Binary => "application/octet-stream",
    }
}

/// The API: decrypt, render, probes and metrics.
pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/v1/decrypt", post(decrypt).fallback(method_not_allowed))
        .route(
            "/v1/render",
            post(render_handler).fallback(method_not_allowed),
        )
        .merge(admin_routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Probes and metrics only (for an address kubelet and Prometheus reach).
pub fn admin_router(state: Shared) -> Router {
    admin_routes()
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

fn admin_routes() -> Router<Shared> {
    Router::new()
        .route("/healthz", get(healthz).fallback(method_not_allowed))
        .route("/readyz", get(readyz).fallback(method_not_allowed))
        .route("/metrics", get(metrics).fallback(method_not_allowed))
}

async fn not_found() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "not found").into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed").into_response()
}

/// Decrements the in-flight gauge even when the client goes away.
struct InFlight<'a>(&'a Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn observe(State(st): State<Shared>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = Route::of(req.uri().path());
    let method = req.method().as_str().to_string();
    let deadline = tokio::time::Instant::now() + st.timeout;
    req.extensions_mut().insert(Deadline(deadline));
    st.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let guard = InFlight(&st.metrics);
    let mut resp = if matches!(route, Route::Decrypt | Route::Render)
        && req.method() == axum::http::Method::POST
    {
        limited(&st, req, deadline, next).await
    } else {
        next.run(req).await
    };
    drop(guard);
    let took = start.elapsed();
    let status = resp.status().as_u16();
    st.metrics.observe(route, status, took);
    let outcome = resp
        .extensions_mut()
        .remove::<Outcome>()
        .unwrap_or_default();
    if st.access_log || status >= 400 {
        let mut fields = vec![
            ("route", Value::from(route.name())),
            ("method", Value::from(method)),
            ("status", Value::from(status)),
            (
                "duration_ms",
                Value::from((took.as_secs_f64() * 1e6).round() / 1e3),
            ),
            (
                "tenant",
                outcome.tenant.map(Value::from).unwrap_or(Value::Null),
            ),
        ];
        if let Some(e) = outcome.error {
            fields.push(("error", Value::from(e)));
        }
        let level = if status >= 500 {
            "error"
        } else if status >= 400 {
            "warn"
        } else {
            "info"
        };
        log::log(level, "request", fields);
    }
    resp
}

/// Decrypt and render: the body is read first (a slow client holds no
/// slot), then a concurrency slot is taken and handed to the handler.
async fn limited(
    st: &AppState,
    req: Request,
    deadline: tokio::time::Instant,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let body = match read_body(body, &parts.headers, st.max_body, Some(Deadline(deadline))).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let mut req = Request::from_parts(parts, Body::from(body));
    let Ok(Ok(permit)) =
        tokio::time::timeout_at(deadline, st.limiter.clone().acquire_owned()).await
    else {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; try again",
        )
        .into_response();
    };
    req.extensions_mut()
        .insert(Slot(Arc::new(std::sync::Mutex::new(Some(permit)))));
    tokio::time::timeout_at(deadline, next.run(req))
        .await
        .unwrap_or_else(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("request timed out after {}", fmt_duration(st.timeout)),
            )
            .into_response()
        })
}

/// `1.5s`, `30s`, `250ms`.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

async fn healthz() -> Response {
    json_response(StatusCode::OK, &json!({ "status": "ok" }))
}

async fn readyz(State(st): State<Shared>) -> Response {
    if st.draining.load(Ordering::Relaxed) {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "draining" }),
        );
    }
    match st.store.current() {
        Some(g) => json_response(
            StatusCode::OK,
            &json!({ "status": "ready", "generation": g.id }),
        ),
        None => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({ "status": "no keys loaded" }),
        ),
    }
}

async fn metrics(State(st): State<Shared>, req: Request) -> Response {
    let names = req
        .extensions()
        .get::<TenantNamesVisible>()
        .is_none_or(|v| v.0);
    let gen = st.store.current();
    let text = st
        .metrics
        .render(gen.as_deref(), st.draining.load(Ordering::Relaxed), names);
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

/// The tenant a request names: `X-Kustos-Tenant` or `?tenant=`.
fn named_tenant(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, ApiError> {
    let from_header = match headers.get(TENANT_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("invalid X-Kustos-Tenant header"))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let from_query = query.and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == "tenant")
            .map(|(_, v)| v.to_string())
    });
    let t = match (from_header, from_query) {
        (Some(h), Some(q)) if h != q => {
            return Err(ApiError::bad_request(
                "the X-Kustos-Tenant header and the tenant query parameter differ",
            ))
        }
        (Some(h), _) => Some(h),
        (None, q) => q,
    };
    match t {
        Some(t) if !keys::valid_namespace(&t) => Err(ApiError::bad_request(
            "invalid tenant: it must be a Kubernetes namespace name",
        )),
        t => Ok(t),
    }
}

/// The tenant a request is served for. On a per-tenant socket it is the
/// socket's, and naming another one is refused; on a shared listener the
/// request may name it only when the operator trusts the caller.
fn tenant_for(
    scope: &ConnScope,
    named: Option<String>,
    trust_header: bool,
) -> Result<Option<String>, ApiError> {
    match (scope, named) {
        (ConnScope::Tenant(own), Some(n)) if &n != own => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "this socket serves one tenant; the request names another",
        )),
        (ConnScope::Tenant(own), _) => Ok(Some(own.clone())),
        (ConnScope::Shared, Some(_)) if !trust_header => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "a shared listener does not take the tenant from the request: mount the tenant's own socket (--listen unix:///run/kustos/{tenant}.sock), or start the sidecar with --trust-tenant-header for a single trusted caller",
        )),
        (ConnScope::Shared, named) => Ok(named),
    }
}

/// The tenant of a request from its connection and what it names.
fn request_tenant(
    st: &AppState,
    parts: &axum::http::request::Parts,
    in_body: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let mut named = named_tenant(&parts.headers, parts.uri.query())?;
    if let Some(b) = in_body {
        if !keys::valid_namespace(b) {
            return Err(ApiError::bad_request(
                "invalid tenant: it must be a Kubernetes namespace name",
            ));
        }
        if named.as_deref().is_some_and(|n| n != b) {
            return Err(ApiError::bad_request(
                "the tenant in the body and in the header differ",
            ));
        }
        named = Some(b.to_string());
    }
    let scope = parts
        .extensions
        .get::<ConnScope>()
        .cloned()
        .unwrap_or(ConnScope::Shared);
    tenant_for(&scope, named, st.trust_tenant_header)
}

/// The format named by the request, if any.
fn format_of(headers: &HeaderMap) -> Result<Option<Format>, ApiError> {
    if let Some(v) = headers.get(FORMAT_HEADER) {
        let name = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
        return Format::from_name(&name).map(Some).ok_or_else(|| {
            ApiError::bad_request("invalid X-Kustos-Format: use yaml, json, dotenv, ini or binary")
        });
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Ok(match mime.as_str() {
        "application/json" => Some(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Some(Format::Yaml)
        }
        "application/x-dotenv" | "text/x-dotenv" => Some(Format::Dotenv),
        "application/x-ini" | "text/x-ini" => Some(Format::Ini),
        // Anything else (curl's form default included) is sniffed.
        _ => None,
    })
}

/// Guesses the format of an encrypted document.
pub fn sniff(body: &[u8]) -> Format {
    let b = body.strip_prefix(b"\xef\xbb\xbf").unwrap_or(body);
    let first = b.iter().find(|c| !c.is_ascii_whitespace());
    if first == Some(&b'{') {
        Format::Json
    } else if contains(b, b"sops_mac=") {
        Format::Dotenv
    } else if contains(b, b"[sops]") {
        Format::Ini
    } else {
        Format::Yaml
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads the body within the size limit and the deadline.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    max: usize,
    deadline: Option<Deadline>,
) -> Result<Bytes, ApiError> {
    let too_big = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than {max} bytes"),
        )
    };
    if let Some(len) = headers.get(header::CONTENT_LENGTH) {
        let len: u64 = len
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("invalid Content-Length"))?;
        if len > max as u64 {
            return Err(too_big());
        }
    }
    let collect = Limited::new(body, max).collect();
    let res = match deadline {
        Some(Deadline(d)) => tokio::time::timeout_at(d, collect).await.map_err(|_| {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "timed out waiting for the request body",
            )
        })?,
        None => collect.await,
    };
    match res {
        Ok(c) => {
            let b = c.to_bytes();
            if b.is_empty() {
                Err(ApiError::bad_request("empty request body"))
            } else {
                Ok(b)
            }
        }
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_big()),
        Err(_) => Err(ApiError::bad_request("cannot read the request body")),
    }
}

fn current(st: &AppState) -> Result<Arc<Generation>, ApiError> {
    st.store
        .current()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no keys loaded yet"))
}

fn ring_index(gen: &Generation, tenant: Option<&str>) -> Result<usize, ApiError> {
    gen.ring_for(tenant)
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, e.to_string()))
}

async fn decrypt(State(st): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let tenant = match request_tenant(&st, &parts, None) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let deadline = parts.extensions.get::<Deadline>().copied();
    let result = async {
        let fmt = format_of(&parts.headers)?;
        let gen = current(&st)?;
        let idx = ring_index(&gen, tenant.as_deref())?;
        let body = read_body(body, &parts.headers, st.max_body, deadline).await?;
        let fmt = fmt.unwrap_or_else(|| sniff(&body));
        let m = st.metrics.clone();
        let label = gen.rings[idx].name.clone();
        let slot = Slot::take(&parts.extensions);
        let plain = tokio::task::spawn_blocking(move || {
            let answer = decrypt_document(&gen, idx, &label, fmt, &body, &m);
            drop(slot);
            answer
        })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
        Ok(plain_response(content_type_of(fmt), Some(fmt), plain))
    }
    .await;
    finish(tenant, result)
}

/// Parses, unwraps (through the cache), MAC-verifies and emits one document.
fn decrypt_document(
    gen: &Generation,
    idx: usize,
    ring_name: &str,
    fmt: Format,
    body: &[u8],
    m: &Metrics,
) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let mut t = formats::load_encrypted(fmt, body).map_err(|e| {
        ApiError::bad_request(match e {
            Error::MetadataNotFound => format!(
                "not a SOPS document ({} store): sops metadata not found",
                fmt.name()
            ),
            other => format!("malformed {} document: {other}", fmt.name()),
        })
    })?;
    let hash = t.metadata.key_hash();
    let key = match gen.cache.get(idx, &hash) {
        Some(k) => {
            Metrics::inc(&m.cache_hits);
            k
        }
        None => {
            Metrics::inc(&m.cache_misses);
            let k = crate::keys::recover_data_key(
                &t.metadata.key_groups,
                t.metadata.shamir_threshold,
                &gen.rings[idx].ring,
            )
            .map_err(|e| {
                Metrics::inc(&m.decrypt_failures);
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    data_key_message(&e, ring_name),
                )
            })?;
            gen.cache.insert(idx, hash, k.clone());
            k
        }
    };
    let mut cipher = Cipher::read_only(&key);
    tree::decrypt(&mut t.branches, &t.metadata, &mut cipher, false).map_err(|e| {
        Metrics::inc(&m.decrypt_failures);
        if matches!(e, Error::MacMismatch) {
            Metrics::inc(&m.mac_failures);
        }
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
    })?;
    formats::emit_plain(fmt, &t.branches, &Default::default()).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("cannot write the {} document: {e}", fmt.name()),
        )
    })
}

/// Why no data key: names the key types and the tenant, not server paths.
fn data_key_message(e: &crate::keys::DataKeyError, ring_name: &str) -> String {
    use crate::keys::UnwrapError;
    let who = if ring_name == keys::PLATFORM {
        "the sidecar's keys".to_string()
    } else {
        format!("tenant {ring_name:?}'s keys")
    };
    if let Some(o) = &e.other {
        return format!("cannot recover the data key: {o}");
    }
    let tried: Vec<&(String, String, UnwrapError)> = e.groups.iter().flatten().collect();
    let mut kinds: Vec<&str> = tried.iter().map(|(k, _, _)| k.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let failed = tried
        .iter()
        .any(|(_, _, err)| matches!(err, UnwrapError::Failed(_)));
    let why = if failed {
        "a matching key failed to unwrap it"
    } else {
        "none of them is a recipient of this file"
    };
    format!(
        "cannot recover the data key with {who}: {why} (recipients: {})",
        if kinds.is_empty() {
            "none".to_string()
        } else {
            kinds.join(", ")
        }
    )
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderRequest {
    path: String,
    #[serde(default)]
    tenant: Option<String>,
}

/// Resolves a request path under the render root.
fn resolve_render_path(root: &Path, rel: &str) -> Result<PathBuf, ApiError> {
    let p = Path::new(rel);
    if rel.contains('\0')
        || p.is_absolute()
        || p.components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(ApiError::bad_request(
            "path must be relative to the render root, without `..`",
        ));
    }
    let full = std::fs::canonicalize(root.join(p)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no such folder under the render root",
            )
        } else {
            ApiError::new(StatusCode::FORBIDDEN, "cannot open the folder")
        }
    })?;
    if !full.starts_with(root) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "path leaves the render root (through a symlink)",
        ));
    }
    if !full.is_dir() {
        return Err(ApiError::new(StatusCode::NOT_FOUND, "not a folder"));
    }
    Ok(full)
}

async fn render_handler(State(st): State<Shared>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let deadline = parts.extensions.get::<Deadline>().copied();
    // The body is already in memory (see `limited`): the tenant it names
    // is known before anything else runs.
    let request = async {
        let body = read_body(body, &parts.headers, st.max_body, deadline).await?;
        parse_render_request(&body)
    }
    .await;
    let tenant = request_tenant(
        &st,
        &parts,
        request.as_ref().ok().and_then(|r| r.tenant.as_deref()),
    );
    let logged = tenant.as_ref().ok().cloned().flatten();
    let result = async {
        let rr = request?;
        let tenant = tenant?;
        let Some(root) = st.render_root.clone() else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "render is not enabled (start the sidecar with --render-root)",
            ));
        };
        let gen = current(&st)?;
        let idx = ring_index(&gen, tenant.as_deref())?;
        let dir = resolve_render_path(&root, &rr.path)?;
        // Nothing outside the render root may be read (kustomize `../base`
        // references inside it are fine).
        let opts = RenderOptions {
            tenant,
            kubectl: st.kubectl.clone(),
            root: Some(root.clone()),
            sandbox: st.sandbox,
            helper: None,
        };
        let m = st.metrics.clone();
        let slot = Slot::take(&parts.extensions);
        let out = tokio::task::spawn_blocking(move || {
            let answer = render::render(&dir, &gen.rings[idx].ring, &opts)
                .map(|r| r.yaml)
                .map_err(|e| {
                    Metrics::inc(&m.decrypt_failures);
                    if matches!(e.cause(), Some(Error::MacMismatch)) {
                        Metrics::inc(&m.mac_failures);
                    }
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
                });
            drop(slot);
            answer
        })
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))??;
        Ok(plain_response("application/yaml", Some(Format::Yaml), out))
    }
    .await;
    finish(logged, result)
}

fn parse_render_request(body: &[u8]) -> Result<RenderRequest, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        // serde's own message quotes the input (unknown field names,
        // invalid values): name only the kind of problem and where.
        let what = match e.classify() {
            serde_json::error::Category::Io | serde_json::error::Category::Eof => {
                "truncated JSON"
            }
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "unknown field or wrong type",
        };
        ApiError::bad_request(format!(
            "the body must be JSON {{\"path\": \"…\", \"tenant\": \"…\"}}: {what} at line {} column {}",
            e.line(),
            e.column()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"  {\"a\": 1}"), Format::Json);
        assert_eq!(sniff(b"A=ENC[x]\nsops_mac=ENC[y]\n"), Format::Dotenv);
        assert_eq!(sniff(b"[s]\na = 1\n[sops]\nmac = x\n"), Format::Ini);
        assert_eq!(sniff(b"a: 1\nsops:\n    mac: x\n"), Format::Yaml);
        assert_eq!(sniff(b"\xef\xbb\xbf{}"), Format::Json);
    }

    #[test]
    fn tenants() {
        let mut h = HeaderMap::new();
        assert_eq!(named_tenant(&h, None).unwrap(), None);
        assert_eq!(
            named_tenant(&h, Some("x=1&tenant=a")).unwrap().as_deref(),
            Some("a")
        );
        h.insert(TENANT_HEADER, HeaderValue::from_static("a"));
        assert_eq!(
            named_tenant(&h, Some("tenant=a")).unwrap().as_deref(),
            Some("a")
        );
        assert!(named_tenant(&h, Some("tenant=b")).is_err());
        h.insert(TENANT_HEADER, HeaderValue::from_static("../x"));
        assert!(named_tenant(&h, None).is_err());
    }

    #[test]
    fn the_connection_decides_the_tenant() {
        let own = ConnScope::Tenant("a".into());
        assert_eq!(tenant_for(&own, None, false).unwrap().as_deref(), Some("a"));
        assert_eq!(
            tenant_for(&own, Some("a".into()), false)
                .unwrap()
                .as_deref(),
            Some("a")
        );
        for trust in [false, true] {
            let e = tenant_for(&own, Some("b".into()), trust).unwrap_err();
            assert_eq!(e.status, StatusCode::FORBIDDEN);
        }
        let shared = ConnScope::Shared;
        assert_eq!(tenant_for(&shared, None, false).unwrap(), None);
        assert_eq!(
            tenant_for(&shared, Some("b".into()), false)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            tenant_for(&shared, Some("b".into()), true)
                .unwrap()
                .as_deref(),
            Some("b")
        );
    }

    #[test]
    fn render_paths() {
        let d = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("apps/a")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("escape")).unwrap();
        assert!(resolve_render_path(&root, "apps/a").is_ok());
        assert!(resolve_render_path(&root, "./apps/a").is_ok());
        assert_eq!(
            resolve_render_path(&root, "../x").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            resolve_render_path(&root, "apps/../../x")
                .unwrap_err()
                .status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            resolve_render_path(&root, "/etc").unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            resolve_render_path(&root, "escape").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            resolve_render_path(&root, "nope").unwrap_err().status,
            StatusCode::NOT_FOUND
        );
    }
}
