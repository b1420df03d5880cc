//! The sidecar's load generator (a development tool, not part of the
//! shipped binary): drives `kustos serve` with N keep-alive clients and
//! reports throughput, latency percentiles and errors.
//!
//!   cargo run --release --example loadtest -- --url http://127.0.0.1:8080 --file s.enc.yaml
//!
//! The client is a minimal HTTP/1.1 one over a TCP or Unix socket: the
//! request bytes are built once, each connection sends one request at a
//! time and reads the answer by `Content-Length`. Targets are restricted to
//! loopback addresses and Unix sockets; runs are bounded in time.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use clap::Parser;

type Result<T> = std::result::Result<T, String>;

/// Longest run.
const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most connections.
const MAX_CONCURRENCY: usize = 1024;

/// Where the sidecar is.
#[derive(Clone, Debug)]
enum Target {
    /// A loopback TCP address.
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(PathBuf),
}

/// A load test.
#[derive(Clone, Debug)]
struct LoadtestConfig {
    /// The server.
    target: Target,
    /// Request path (`/v1/decrypt`).
    path: String,
    /// The body sent with every request.
    body: Vec<u8>,
    /// Extra headers (`X-Kustos-Format`, `X-Kustos-Tenant`).
    headers: Vec<(String, String)>,
    /// Connections.
    concurrency: usize,
    /// How long.
    duration: Duration,
    /// Client runtime threads.
    threads: usize,
}

/// Parses `http://127.0.0.1:8080[/path]` or `unix:///run/k.sock[:/path]`
/// into a target and a path (default `/v1/decrypt`). Only loopback hosts.
fn parse_url(url: &str) -> Result<(Target, String)> {
    let default_path = "/v1/decrypt".to_string();
    if let Some(rest) = url.strip_prefix("unix://") {
        let (sock, path) = match rest.split_once(":/") {
            Some((s, p)) => (s, format!("/{p}")),
            None => (rest, default_path),
        };
        return Ok((Target::Unix(PathBuf::from(sock)), path));
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| {
        format!("invalid url {url:?}: use http://127.0.0.1:PORT[/path] or unix:///path.sock")
    })?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, default_path),
    };
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| format!("invalid address {hostport:?}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.ip().is_loopback())
        .copied()
        .ok_or_else(|| format!("{hostport}: the load test only targets loopback addresses"))?;
    Ok((Target::Tcp(addr), path))
}

/// What a run measured.
#[derive(Clone, Debug, Default)]
struct Report {
    /// Requests answered 2xx.
    ok: u64,
    /// Non-2xx answers and transport errors.
    errors: u64,
    /// The first error seen.
    first_error: Option<String>,
    /// Wall time.
    elapsed: Duration,
    /// Latencies of every answered request, sorted, in microseconds.
    latencies_us: Vec<u32>,
}

impl Report {
    /// Answered requests per second (errors included).
    fn throughput(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`-th percentile latency (0–100).
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies_us.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let i = rank.clamp(1, self.latencies_us.len()) - 1;
        Duration::from_micros(self.latencies_us[i] as u64)
    }

    /// The slowest request.
    fn max(&self) -> Duration {
        Duration::from_micros(self.latencies_us.last().copied().unwrap_or(0) as u64)
    }

    /// One line per figure, for people.
    fn text(&self, concurrency: usize) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "requests: {} ok, {} errors in {:.2}s with {} connections\nthroughput: {:.0} req/s\nlatency: p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n{}",
            self.ok,
            self.errors,
            self.elapsed.as_secs_f64(),
            concurrency,
            self.throughput(),
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.max()),
            self.first_error
                .as_ref()
                .map(|e| format!("first error: {e}\n"))
                .unwrap_or_default()
        )
    }

    /// The figures as JSON.
    fn json(&self, concurrency: usize) -> serde_json::Value {
        let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
        serde_json::json!({
            "ok": self.ok,
            "errors": self.errors,
            "first_error": self.first_error,
            "seconds": self.elapsed.as_secs_f64(),
            "concurrency": concurrency,
            "throughput": self.throughput().round(),
            "p50_ms": ms(self.percentile(50.0)),
            "p90_ms": ms(self.percentile(90.0)),
            "p99_ms": ms(self.percentile(99.0)),
            "max_ms": ms(self.max()),
        })
    }
}

fn request_bytes(cfg: &LoadtestConfig) -> Vec<u8> {
    let mut r = format!(
        "POST {} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n",
        cfg.path,
        cfg.body.len()
    );
    for (k, v) in &cfg.headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    let mut b = r.into_bytes();
    b.extend_from_slice(&cfg.body);
    b
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads one response; returns its status. `buf` keeps leftover bytes.
async fn read_response<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut chunk = [0u8; 16 << 10];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| bad("non-UTF-8 head"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| bad("no Content-Length"))?;
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed in the body",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    buf.drain(..head_end + len);
    Ok(status)
}

enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn connect(t: &Target) -> std::io::Result<Conn> {
    Ok(match t {
        Target::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a).await?;
            s.set_nodelay(true)?;
            Conn::Tcp(s)
        }
        Target::Unix(p) => Conn::Unix(tokio::net::UnixStream::connect(p).await?),
    })
}

async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<u16> {
    s.write_all(req).await?;
    read_response(s, buf).await
}

#[derive(Default)]
struct Worker {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    lat: Vec<u32>,
}

async fn worker(target: Target, req: std::sync::Arc<Vec<u8>>, until: Instant) -> Worker {
    let mut w = Worker {
        lat: Vec::with_capacity(1 << 14),
        ..Default::default()
    };
    let mut conn: Option<Conn> = None;
    let mut buf = Vec::with_capacity(16 << 10);
    while Instant::now() < until {
        if conn.is_none() {
            match connect(&target).await {
                Ok(c) => {
                    conn = Some(c);
                    buf.clear();
                }
                Err(e) => {
                    w.errors += 1;
                    w.first_error.get_or_insert_with(|| format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let start = Instant::now();
        let res = match conn.as_mut() {
            Some(Conn::Tcp(s)) => round_trip(s, &req, &mut buf).await,
            Some(Conn::Unix(s)) => round_trip(s, &req, &mut buf).await,
            None => continue,
        };
        let took = start.elapsed();
        match res {
            Ok(status) => {
                w.lat.push(took.as_micros().min(u32::MAX as u128) as u32);
                if (200..300).contains(&status) {
                    w.ok += 1;
                } else {
                    w.errors += 1;
                    w.first_error
                        .get_or_insert_with(|| format!("HTTP {status}"));
                    // The server may close after an error; start afresh.
                    conn = None;
                }
            }
            Err(e) => {
                w.errors += 1;
                w.first_error.get_or_insert_with(|| e.to_string());
                conn = None;
            }
        }
    }
    w
}

/// Runs a load test.
fn run(cfg: &LoadtestConfig) -> Result<Report> {
    if cfg.concurrency == 0 || cfg.concurrency > MAX_CONCURRENCY {
        return Err(format!(
            "--concurrency must be between 1 and {MAX_CONCURRENCY}"
        ));
    }
    if cfg.duration.is_zero() || cfg.duration > MAX_DURATION {
        return Err("--duration must be between 1ms and 10m".into());
    }
    if let Target::Tcp(a) = &cfg.target {
        if !a.ip().is_loopback() {
            return Err("the load test only targets loopback addresses".into());
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let req = std::sync::Arc::new(request_bytes(cfg));
    rt.block_on(async {
        // One warm-up request, so a wrong URL fails fast and clearly.
        let mut c = connect(&cfg.target)
            .await
            .map_err(|e| format!("cannot connect to the sidecar: {e}"))?;
        let mut buf = Vec::new();
        let status = match &mut c {
            Conn::Tcp(s) => round_trip(s, &req, &mut buf).await,
            Conn::Unix(s) => round_trip(s, &req, &mut buf).await,
        }
        .map_err(|e| format!("warm-up request failed: {e}"))?;
        if !(200..300).contains(&status) {
            return Err(format!("warm-up request answered HTTP {status}"));
        }
        drop(c);
        let start = Instant::now();
        let until = start + cfg.duration;
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..cfg.concurrency {
            set.spawn(worker(cfg.target.clone(), req.clone(), until));
        }
        let mut report = Report::default();
        while let Some(r) = set.join_next().await {
            let w = r.map_err(|e| format!("client task failed: {e}"))?;
            report.ok += w.ok;
            report.errors += w.errors;
            if report.first_error.is_none() {
                report.first_error = w.first_error;
            }
            report.latencies_us.extend_from_slice(&w.lat);
        }
        report.elapsed = start.elapsed();
        report.latencies_us.sort_unstable();
        Ok(report)
    })
}

/// Drive a running sidecar with concurrent keep-alive clients; print
/// throughput, p50/p99 latency and errors.
#[derive(Parser, Debug)]
#[command(name = "loadtest")]
struct Args {
    /// The sidecar: http://127.0.0.1:PORT[/path] or unix:///path.sock[:/path] (loopback only)
    #[arg(long)]
    url: String,
    /// The encrypted document sent with every request
    #[arg(long, value_name = "FILE")]
    file: PathBuf,
    /// Concurrent keep-alive connections
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// How long to run (e.g. 10s, 500ms)
    #[arg(long, default_value = "10s", value_parser = kustos::serve::parse_duration)]
    duration: Duration,
    /// X-Kustos-Format (default: from the file name)
    #[arg(long)]
    format: Option<String>,
    /// X-Kustos-Tenant (only for a sidecar started with --trust-tenant-header)
    #[arg(long)]
    tenant: Option<String>,
    /// Client threads
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the figures as JSON
    #[arg(long)]
    json: bool,
    /// Exit 1 when any request failed
    #[arg(long)]
    fail_on_error: bool,
}

fn main() -> std::process::ExitCode {
    let a = Args::parse();
    match run_args(a) {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run_args(a: Args) -> Result<u8> {
    let (target, path) = parse_url(&a.url)?;
    let body = std::fs::read(&a.file).map_err(|e| format!("{}: {e}", a.file.display()))?;
    let format = match a.format {
        Some(f) => f,
        None => kustos::formats::Format::from_path(&a.file)
            .name()
            .to_string(),
    };
    let mut headers = vec![("X-Kustos-Format".to_string(), format)];
    if let Some(t) = a.tenant {
        headers.push(("X-Kustos-Tenant".into(), t));
    }
    let cfg = LoadtestConfig {
        target,
        path,
        body,
        headers,
        concurrency: a.concurrency,
        duration: a.duration,
        threads: a.threads,
    };
    let report = run(&cfg)?;
    if a.json {
        println!("{}", report.json(cfg.concurrency));
    } else {
        print!("{}", report.text(cfg.concurrency));
    }
    Ok(u8::from(a.fail_on_error && report.errors > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let (t, p) = parse_url("http://127.0.0.1:8080").unwrap();
        assert!(matches!(t, Target::Tcp(a) if a.port() == 8080));
        assert_eq!(p, "/v1/decrypt");
        let (_, p) = parse_url("http://127.0.0.1:1/v1/render").unwrap();
        assert_eq!(p, "/v1/render");
        let (t, p) = parse_url("unix:///run/k.sock").unwrap();
        assert!(matches!(t, Target::Unix(ref s) if s == std::path::Path::new("/run/k.sock")));
        assert_eq!(p, "/v1/decrypt");
        assert!(parse_url("http://192.0.2.1:80").is_err());
        assert!(parse_url("https://127.0.0.1:1").is_err());
    }

    #[tokio::test]
    async fn parses_responses() {
        let data = b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nabcHTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n".to_vec();
        let mut r = &data[..];
        let mut buf = Vec::new();
        assert_eq!(read_response(&mut r, &mut buf).await.unwrap(), 200);
        assert_eq!(read_response(&mut r, &mut buf).await.unwrap(), 413);
        assert!(read_response(&mut r, &mut buf).await.is_err());
    }

    #[test]
    fn percentiles() {
        let r = Report {
            ok: 100,
            elapsed: Duration::from_secs(1),
            latencies_us: (1..=100).collect(),
            ..Default::default()
        };
        assert_eq!(r.percentile(50.0), Duration::from_micros(50));
        assert_eq!(r.percentile(99.0), Duration::from_micros(99));
        assert_eq!(r.max(), Duration::from_micros(100));
        assert_eq!(r.throughput(), 100.0);
    }
}
