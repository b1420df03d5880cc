//! `kustos keyservice`: sops' key service, serving this process's keys to
//! sops and kustos clients (`--keyservice unix:///…|tcp://…`).
//!
//! A request names one master key and carries a data key (Encrypt) or a
//! file's `enc` text (Decrypt); the answer is the other. Keys are only
//! ever used locally: a key service never forwards to another one. TCP is
//! loopback-only unless `--allow-remote`: the protocol has no
//! authentication, so whoever reaches the port can use the keys.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::routing::post;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use crate::error::{escape_for_terminal, UnwrapError};
use crate::keys::keyservice::{proto, MAX_MESSAGE};
use crate::keys::{KeyRing, MasterKey, Recipient};
use crate::{Error, Result};

/// Where to listen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// A Unix socket path (created 0600; an existing socket nobody serves is
    /// replaced).
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl Listen {
    /// From sops' `--network` and `--address`.
    pub fn parse(network: &str, address: &str) -> std::result::Result<Listen, String> {
        match network {
            "unix" => Ok(Listen::Unix(PathBuf::from(address))),
            "tcp" | "tcp4" | "tcp6" => resolve(address).map(Listen::Tcp),
            other => Err(format!(
                "--network {:?}: expected tcp or unix",
                escape_for_terminal(other)
            )),
        }
    }
}

fn resolve(address: &str) -> std::result::Result<SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let bad = || {
        format!(
            "--address {:?}: expected HOST:PORT",
            escape_for_terminal(address)
        )
    };
    address
        .to_socket_addrs()
        .map_err(|_| bad())?
        .next()
        .ok_or_else(bad)
}

/// How the service runs.
#[derive(Clone, Debug)]
pub struct Options {
    /// Where to listen.
    pub listen: Listen,
    /// Ask at the terminal before answering each request (sops' `--prompt`).
    pub prompt: bool,
    /// Listen on non-loopback TCP addresses.
    pub allow_remote: bool,
}

/// Checks the options before anything is bound.
pub fn check(opts: &Options) -> std::result::Result<(), String> {
    if let Listen::Tcp(addr) = &opts.listen {
        if !addr.ip().is_loopback() && !opts.allow_remote {
            return Err(format!(
                "refusing to serve keys on {addr}, which is not a loopback address: the key service protocol has no authentication; pass --allow-remote only behind an authenticating proxy or service mesh (see README)"
            ));
        }
    }
    Ok(())
}

/// The keys and what to do with each request.
#[derive(Clone)]
struct KeyService {
    ring: Arc<KeyRing>,
    /// Held while a person answers, so questions come one at a time.
    prompt: Option<Arc<Mutex<()>>>,
}

/// What the request asks, in words for the log and the prompt.
fn describe(key: &proto::Key) -> String {
    use proto::KeyType;
    let (kind, id) = match &key.key_type {
        Some(KeyType::AgeKey(k)) => ("age", k.recipient.as_str()),
        Some(KeyType::PgpKey(k)) => ("pgp", k.fingerprint.as_str()),
        Some(KeyType::KmsKey(k)) => ("kms", k.arn.as_str()),
        Some(KeyType::GcpKmsKey(k)) => ("gcp_kms", k.resource_id.as_str()),
        Some(KeyType::AzureKeyvaultKey(k)) => ("azure_kv", k.vault_url.as_str()),
        Some(KeyType::VaultKey(k)) => ("hc_vault", k.vault_address.as_str()),
        Some(KeyType::HckmsKey(k)) => ("hckms", k.key_id.as_str()),
        None => ("no", "key"),
    };
    escape_for_terminal(&format!("{kind} key {id}"))
}

/// The recipient a request's key names, if kustos serves that type.
fn recipient_of(key: &proto::Key) -> std::result::Result<Recipient, Status> {
    use proto::KeyType;
    match &key.key_type {
        Some(KeyType::AgeKey(k)) => Ok(Recipient::Age(k.recipient.clone())),
        Some(KeyType::PgpKey(k)) => Ok(Recipient::Pgp(k.fingerprint.clone())),
        Some(KeyType::KmsKey(k)) => {
            let mut key = crate::keys::KmsKeyId {
                arn: k.arn.clone(),
                role: k.role.clone(),
                aws_profile: k.aws_profile.clone(),
                ..Default::default()
            };
            key.set_context(k.context.clone());
            Ok(Recipient::Kms(key))
        }
        Some(_) => Err(Status::unimplemented(format!(
            "kustos keyservice does not serve {}",
            describe(key)
        ))),
        None => Err(Status::invalid_argument("Must provide a key")),
    }
}

fn status_of(e: UnwrapError) -> Status {
    match e {
        UnwrapError::NoIdentity(m) => Status::not_found(m),
        UnwrapError::Failed(m) => Status::invalid_argument(m),
        UnwrapError::Unsupported(m) => Status::unimplemented(m),
    }
}

impl KeyService {
    fn approve(&self, what: &str, key: &str) -> std::result::Result<(), Status> {
        let Some(lock) = &self.prompt else {
            return Ok(());
        };
        let _one_at_a_time = lock.lock().unwrap_or_else(|e| e.into_inner());
        let question = format!("Received {what} request using {key}. Respond to request? (y/n):");
        match crate::platform::ask_terminal(&question, false) {
            Some(a) if a.trim().eq_ignore_ascii_case("y") => Ok(()),
            _ => Err(Status::permission_denied("the request was declined")),
        }
    }

    fn decrypt(
        &self,
        req: proto::DecryptRequest,
    ) -> std::result::Result<proto::DecryptResponse, Status> {
        let key = req
            .key
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("Must provide a key"))?;
        let what = describe(key);
        let enc = String::from_utf8(req.ciphertext.clone())
            .map_err(|_| Status::invalid_argument("the ciphertext is not text"))?;
        let master = crate::keys::with_enc(&recipient_of(key)?, enc);
        self.approve("decrypt", &what)?;
        let answer = self.ring.unwrap_local(&master);
        log(
            "decrypt",
            &what,
            answer.as_ref().err().map(ToString::to_string),
        );
        let mut plain = answer.map_err(status_of)?;
        Ok(proto::DecryptResponse {
            plaintext: std::mem::take(&mut *plain),
        })
    }

    fn encrypt(
        &self,
        req: proto::EncryptRequest,
    ) -> std::result::Result<proto::EncryptResponse, Status> {
        let key = req
            .key
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("Must provide a key"))?;
        let what = describe(key);
        let recipient = recipient_of(key)?;
        // A plugin recipient names a program to run: a caller must not
        // choose what this service executes.
        if let Recipient::Age(r) = &recipient {
            if crate::keys::age::is_plugin_recipient(r) {
                return Err(Status::permission_denied(
                    "kustos keyservice does not run age plugins for callers",
                ));
            }
        }
        self.approve("encrypt", &what)?;
        let answer = MasterKey::wrap(&recipient, &req.plaintext);
        log(
            "encrypt",
            &what,
            answer.as_ref().err().map(ToString::to_string),
        );
        let wrapped = answer.map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(proto::EncryptResponse {
            ciphertext: wrapped.enc().as_bytes().to_vec(),
        })
    }
}

/// One line per request: what was asked and whether it worked (never key
/// material).
fn log(what: &str, key: &str, error: Option<String>) {
    match error {
        None => eprintln!("keyservice: {what} with {key}: ok"),
        Some(e) => eprintln!("keyservice: {what} with {key}: {}", escape_for_terminal(&e)),
    }
}

/// Runs one request's key work on the blocking pool (PGP and age are CPU
/// work, prompts wait for a person).
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, Status> + Send + 'static,
) -> std::result::Result<Response<T>, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal("the request failed"))?
        .map(Response::new)
}

fn router(svc: KeyService) -> axum::Router {
    let dec = svc.clone();
    let enc = svc;
    axum::Router::new()
        .route(
            proto::DECRYPT_PATH,
            post(move |req: http::Request<axum::body::Body>| {
                let svc = dec.clone();
                async move {
                    let method = tower::service_fn(move |r: Request<proto::DecryptRequest>| {
                        let svc = svc.clone();
                        blocking(move || svc.decrypt(r.into_inner()))
                    });
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                        proto::DecryptResponse,
                        proto::DecryptRequest,
                    >::default())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                    grpc.unary(method, req).await.map(axum::body::Body::new)
                }
            }),
        )
        .route(
            proto::ENCRYPT_PATH,
            post(move |req: http::Request<axum::body::Body>| {
                let svc = enc.clone();
                async move {
                    let method = tower::service_fn(move |r: Request<proto::EncryptRequest>| {
                        let svc = svc.clone();
                        blocking(move || svc.encrypt(r.into_inner()))
                    });
                    let mut grpc = tonic::server::Grpc::new(ProstCodec::<
                        proto::EncryptResponse,
                        proto::EncryptRequest,
                    >::default())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE);
                    grpc.unary(method, req).await.map(axum::body::Body::new)
                }
            }),
        )
}

/// Serves `ring` until SIGINT or SIGTERM.
pub fn run(ring: KeyRing, opts: Options) -> Result<()> {
    check(&opts).map_err(Error::ConflictingParameters)?;
    let svc = KeyService {
        ring: Arc::new(ring),
        prompt: opts.prompt.then(|| Arc::new(Mutex::new(()))),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::io("the key service runtime", e))?;
    rt.block_on(serve(svc, opts.listen))
}

async fn serve(svc: KeyService, listen: Listen) -> Result<()> {
    let routes = tonic::service::Routes::from(router(svc));
    // Each request is key work on the blocking pool: bound what one
    // connection can queue.
    let mut server = tonic::transport::Server::builder().concurrency_limit_per_connection(16);
    let router = server.add_routes(routes);
    match listen {
        Listen::Tcp(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| Error::io(addr, e))?;
            eprintln!(
                "keyservice: listening on tcp://{}",
                listener.local_addr().map_err(|e| Error::io(addr, e))?
            );
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            router
                .serve_with_incoming_shutdown(incoming, shutdown())
                .await
                .map_err(|e| Error::Key(format!("key service: {e}")))
        }
        Listen::Unix(path) => {
            let listener = bind_unix(&path)?;
            eprintln!("keyservice: listening on unix://{}", path.display());
            let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
            let res = router
                .serve_with_incoming_shutdown(incoming, shutdown())
                .await
                .map_err(|e| Error::Key(format!("key service: {e}")));
            let _ = std::fs::remove_file(&path);
            res
        }
    }
}

/// Binds a Unix socket readable and writable by its owner only. A socket
/// file left by a stopped service is replaced; anything else is not.
fn bind_unix(path: &std::path::Path) -> Result<tokio::net::UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        let stale =
            meta.file_type().is_socket() && std::os::unix::net::UnixStream::connect(path).is_err();
        if !stale {
            return Err(Error::io(
                path.display(),
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "exists and is not a stale socket",
                ),
            ));
        }
        std::fs::remove_file(path).map_err(|e| Error::io(path.display(), e))?;
    }
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = tokio::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    bound.map_err(|e| Error::io(path.display(), e))
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("keyservice: shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_loopback_tcp_needs_allow_remote() {
        let opts = |addr: &str, allow_remote| Options {
            listen: Listen::parse("tcp", addr).unwrap(),
            prompt: false,
            allow_remote,
        };
        check(&opts("127.0.0.1:5000", false)).unwrap();
        check(&opts("[::1]:5000", false)).unwrap();
        let err = check(&opts("0.0.0.0:5000", false)).unwrap_err().to_string();
        assert!(err.contains("--allow-remote"), "{err}");
        check(&opts("0.0.0.0:5000", true)).unwrap();
        assert!(Listen::parse("udp", "x").is_err());
        assert!(Listen::parse("tcp", "no-port").is_err());
    }
}
