//! `kustos serve`, the decryption sidecar, as a real process: decrypt over a
//! Unix socket and TCP (files encrypted by the real sops), render through
//! kubectl's kustomize, tenant isolation, key rotation the way kubelet swaps
//! a Secret volume, limits and timeouts, metrics, SIGTERM drain, the load
//! test command and the deploy manifests.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;

const ENC_REGEX: &str = "^(data|stringData)$";

// ---------------------------------------------------------------------------
// The server process.

struct Server {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    tcp: String,
    sock: Option<PathBuf>,
    _home: tempfile::TempDir,
}

impl Server {
    /// Starts `kustos serve` on a free loopback port (and a Unix socket when
    /// given) and waits until it listens.
    fn start(keys: &Path, sock: Option<&Path>, extra: &[&str]) -> Server {
        Self::start_with_env(keys, sock, extra, None)
    }

    fn start_with_env(
        keys: &Path,
        sock: Option<&Path>,
        extra: &[&str],
        trap_key: Option<&Path>,
    ) -> Server {
        Self::start_with_vars(keys, sock, extra, trap_key, &[])
    }

    fn start_with_vars(
        keys: &Path,
        sock: Option<&Path>,
        extra: &[&str],
        trap_key: Option<&Path>,
        vars: &[(String, String)],
    ) -> Server {
        let home = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(kustos_bin());
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", home.path())
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .arg("serve")
            .arg("--keys-dir")
            .arg(keys)
            .args(["--listen", "127.0.0.1:0"]);
        if let Some(k) = trap_key {
            // A key the server must never use: it only reads --keys-dir.
            cmd.env("SOPS_AGE_KEY_FILE", k);
        }
        let mut listeners = 1;
        if let Some(s) = sock {
            cmd.arg("--listen").arg(format!("unix://{}", s.display()));
            listeners += 1;
        }
        cmd.args(extra).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                        if v["msg"] == "listening" {
                            let _ = tx.send(v["address"].as_str().unwrap_or("").to_string());
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let mut tcp = String::new();
        for _ in 0..listeners {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(a) if !a.starts_with("unix://") => tcp = a,
                Ok(_) => {}
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not start: {:?}", logs.lock().unwrap());
                }
            }
        }
        Server {
            child,
            logs,
            tcp,
            sock: sock.map(Path::to_path_buf),
            _home: home,
        }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.tcp)
    }

    /// A request through curl: TCP, or the Unix socket with `unix`.
    fn curl(
        &self,
        unix: bool,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> (u16, String) {
        let mut c = Command::new(curl_bin());
        c.args([
            "-sS",
            "-X",
            method,
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-H",
            "Expect:",
        ]);
        for (k, v) in headers {
            c.arg("-H").arg(format!("{k}: {v}"));
        }
        if body.is_some() {
            c.args(["--data-binary", "@-"]);
        }
        if unix {
            c.arg("--unix-socket").arg(self.sock.as_ref().unwrap());
            c.arg(format!("http://kustos{path}"));
        } else {
            c.arg(self.url(path));
        }
        let out = run_with_stdin(&mut c, body.unwrap_or(b""));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    fn decrypt(&self, unix: bool, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        self.curl(unix, "POST", "/v1/decrypt", headers, Some(body))
    }

    fn get(&self, path: &str) -> (u16, String) {
        self.curl(false, "GET", path, &[], None)
    }

    fn metric(&self, line_prefix: &str) -> Option<f64> {
        let (_, m) = self.get("/metrics");
        m.lines()
            .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    fn term(&self) {
        let ok = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    }

    fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let until = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(
                Instant::now() < until,
                "the server did not exit: {}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn curl_bin() -> PathBuf {
    which("curl").expect("curl")
}

fn curl() -> Option<PathBuf> {
    require("curl", which("curl"))
}

fn kubectl() -> Option<PathBuf> {
    require("kubectl (with built-in kustomize)", which("kubectl"))
}

/// Polls `f` until it is true.
#[track_caller]
fn eventually(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends raw bytes and reads what comes back until EOF or `wait`.
fn raw(addr: &str, data: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let _ = s.write_all(data);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A blocking HTTP/1.1 keep-alive client.
struct KeepAlive {
    addr: String,
    s: Option<TcpStream>,
}

impl KeepAlive {
    fn new(addr: &str) -> Self {
        KeepAlive {
            addr: addr.to_string(),
            s: None,
        }
    }

    fn post(&mut self, path: &str, headers: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        if self.s.is_none() {
            let s = TcpStream::connect(&self.addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            self.s = Some(s);
        }
        let r = Self::round_trip(self.s.as_mut().unwrap(), path, headers, body);
        if r.is_err() {
            self.s = None;
        }
        r
    }

    fn round_trip(
        s: &mut TcpStream,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: kustos\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        s.write_all(&req)?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + len {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok((status, buf[head_end..head_end + len].to_vec()))
    }
}

fn error_of(body: &str) -> String {
    let v: serde_json::Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("not a JSON error: {body:?}"));
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error field: {body}"))
        .to_string()
}

// ---------------------------------------------------------------------------
// Fixtures.

/// Encrypts `name` (written with `plain`) with the real sops.
fn sops_encrypt(
    env: &Env,
    sops: &Path,
    name: &str,
    plain: &str,
    recipient: &str,
    extra: &[&str],
) -> Vec<u8> {
    let p = env.write(name, plain.as_bytes());
    let mut args = vec!["encrypt", "--age", recipient];
    args.extend_from_slice(extra);
    let p = p.to_str().unwrap().to_string();
    args.push(&p);
    ok(&env.sops(sops, &args))
}

const SECRET_YAML: &str = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: tenant-a\ntype: Opaque\n# the password\nstringData:\n  password: hunter2-yaml\n  user: app\n";

fn secret_for(ns: &str, value: &str) -> String {
    format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: {ns}\nstringData:\n  password: {value}\n")
}

fn copy_key(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

// ---------------------------------------------------------------------------

#[test]
fn decrypts_sops_files_over_unix_socket_and_tcp() {
    let (Some(sops), Some(_)) = (sops(), curl()) else {
        return;
    };
    let env = Env::new();
    copy_key(&env.key_file, &env.path("keys/age.agekey"));
    let yaml = sops_encrypt(
        &env,
        &sops,
        "s.yaml",
        SECRET_YAML,
        &env.recipient,
        &["--encrypted-regex", ENC_REGEX],
    );
    let json = sops_encrypt(
        &env,
        &sops,
        "s.json",
        "{\n\t\"password\": \"hunter2-json\",\n\t\"n\": 3\n}",
        &env.recipient,
        &[],
    );
    let dotenv = sops_encrypt(
        &env,
        &sops,
        "s.env",
        "PASSWORD=hunter2-env\nUSER=app\n",
        &env.recipient,
        &[],
    );
    env.write("s.enc.yaml", &yaml);
    env.write("s.enc.json", &json);
    let want_yaml = ok(&env.sops(
        &sops,
        &[
            "decrypt",
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
            env.path("s.enc.yaml").to_str().unwrap(),
        ],
    ));
    let want_json = ok(&env.sops(
        &sops,
        &[
            "decrypt",
            "--input-type",
            "json",
            "--output-type",
            "json",
            env.path("s.enc.json").to_str().unwrap(),
        ],
    ));

    let sock = env.path("run/kustos.sock");
    let srv = Server::start(&env.path("keys"), Some(&sock), &[]);
    for unix in [false, true] {
        // Named format, content type, and sniffed.
        for h in [
            &[("X-Kustos-Format", "yaml")][..],
            &[("Content-Type", "application/yaml")],
            &[],
        ] {
            let (code, body) = srv.decrypt(unix, h, &yaml);
            assert_eq!(code, 200, "{body}");
            assert_eq!(
                body.as_bytes(),
                &want_yaml[..],
                "same bytes as sops decrypt"
            );
        }
        for h in [&[("X-Kustos-Format", "json")][..], &[]] {
            let (code, body) = srv.decrypt(unix, h, &json);
            assert_eq!(code, 200, "{body}");
            assert_eq!(body.as_bytes(), &want_json[..]);
        }
        let (code, body) = srv.decrypt(unix, &[], &dotenv);
        assert_eq!(
            (code, body.as_str()),
            (200, "PASSWORD=hunter2-env\nUSER=app\n")
        );
    }

    let (code, body) = srv.get("/healthz");
    assert_eq!(code, 200, "{body}");
    let (code, body) = srv.get("/readyz");
    assert_eq!(code, 200);
    assert!(body.contains("\"generation\":1"), "{body}");
    let (code, m) = srv.get("/metrics");
    assert_eq!(code, 200);
    for want in [
        "kustos_requests_total{route=\"decrypt\",status=\"200\"} 12",
        "kustos_request_duration_seconds_bucket{route=\"decrypt\",le=\"+Inf\"} 12",
        "kustos_request_duration_seconds_count{route=\"decrypt\"} 12",
        "kustos_request_duration_seconds_sum{route=\"decrypt\"} ",
        "kustos_mac_failures_total 0",
        "kustos_key_reloads_total{result=\"success\"} 1",
        "kustos_key_reloads_total{result=\"failure\"} 0",
        "kustos_keys{tenant=\"_platform\"} 1",
        "kustos_datakey_cache_misses_total 3",
        "kustos_datakey_cache_hits_total 9",
        "kustos_ready 1",
        "# TYPE kustos_request_duration_seconds histogram",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    // Structured logs, and never a value.
    let logs = srv.logs();
    assert!(!logs.contains("hunter2"), "{logs}");
    let req = logs
        .lines()
        .find(|l| l.contains("\"route\":\"decrypt\""))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(req).unwrap();
    for k in ["time", "level", "route", "status", "duration_ms", "tenant"] {
        assert!(v.get(k).is_some(), "{k} missing in {req}");
    }
}

#[test]
fn tenants_only_use_their_own_keys() {
    let (Some(sops), Some(_)) = (sops(), curl()) else {
        return;
    };
    let env = Env::new();
    let (ra, ka) = new_age_key(env.dir.path(), "a");
    let (rb, kb) = new_age_key(env.dir.path(), "b");
    let (rp, kp) = new_age_key(env.dir.path(), "p");
    let keys = env.path("keys");
    copy_key(&ka, &keys.join("tenant-a/age.agekey"));
    copy_key(&kb, &keys.join("tenant-b/age.agekey"));
    copy_key(&kp, &keys.join("platform.agekey"));
    let for_a = sops_encrypt(
        &env,
        &sops,
        "a.yaml",
        &secret_for("tenant-a", "value-of-a"),
        &ra,
        &["--encrypted-regex", ENC_REGEX],
    );
    let for_b = sops_encrypt(
        &env,
        &sops,
        "b.yaml",
        &secret_for("tenant-b", "value-of-b"),
        &rb,
        &["--encrypted-regex", ENC_REGEX],
    );
    let for_p = sops_encrypt(
        &env,
        &sops,
        "p.yaml",
        &secret_for("x", "value-of-p"),
        &rp,
        &["--encrypted-regex", ENC_REGEX],
    );

    // The environment holds tenant-b's key: the server must not use it.
    // One trusted caller names tenants on a shared listener.
    let srv = Server::start_with_env(
        &keys,
        None,
        &["--platform-keys", "--trust-tenant-header"],
        Some(&kb),
    );
    let t = |ns: &str| [("X-Kustos-Tenant", ns.to_string())];
    let dec = |ns: &str, body: &[u8]| {
        let h = t(ns);
        let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        srv.decrypt(false, &hs, body)
    };
    let (code, body) = dec("tenant-a", &for_a);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("value-of-a"));
    // The data key of a's file is now cached for tenant-a: tenant-b still
    // cannot use it.
    let (code, body) = dec("tenant-b", &for_a);
    assert_eq!(code, 422, "{body}");
    let e = error_of(&body);
    assert!(e.contains("tenant \"tenant-b\"'s keys"), "{e}");
    assert!(!body.contains("value-of-a"));
    let (code, body) = dec("tenant-a", &for_b);
    assert_eq!(code, 422, "{body}");
    // Platform keys join every tenant with --platform-keys.
    for ns in ["tenant-a", "tenant-b"] {
        let (code, body) = dec(ns, &for_p);
        assert_eq!(code, 200, "{body}");
    }
    // The query parameter works too.
    let (code, _) = srv.curl(
        false,
        "POST",
        "/v1/decrypt?tenant=tenant-b",
        &[],
        Some(&for_b),
    );
    assert_eq!(code, 200);
    // With tenant folders a tenant is required, and must have keys.
    let (code, body) = srv.decrypt(false, &[], &for_a);
    assert_eq!(code, 403, "{body}");
    assert!(error_of(&body).contains("tenant is required"));
    let (code, body) = dec("tenant-c", &for_a);
    assert_eq!(code, 403, "{body}");
    assert!(error_of(&body).contains("not allowed"));
    let (code, body) = dec("../tenant-a", &for_a);
    assert_eq!(code, 400, "{body}");
    let (_, m) = srv.get("/metrics");
    for want in [
        "kustos_keys{tenant=\"tenant-a\"} 2",
        "kustos_keys{tenant=\"tenant-b\"} 2",
        "kustos_keys{tenant=\"_platform\"} 1",
    ] {
        assert!(m.contains(want), "missing {want:?} in\n{m}");
    }
    assert!(!srv.logs().contains("value-of"));
    drop(srv);

    // Without --platform-keys the top-level keys serve no tenant.
    let srv = Server::start(&keys, None, &["--trust-tenant-header"]);
    let (code, body) = srv.decrypt(false, &[("X-Kustos-Tenant", "tenant-a")], &for_p);
    assert_eq!(code, 422, "{body}");
    let (code, _) = srv.decrypt(false, &[("X-Kustos-Tenant", "tenant-a")], &for_a);
    assert_eq!(code, 200);
}

#[test]
fn tenants_only_use_the_kms_keys_their_folder_lists() {
    let (Some(sops), Some(_), Some(moto)) = (sops(), curl(), moto()) else {
        return;
    };
    let env = Env::new();
    let (ka, _) = moto.create_key("us-east-1");
    let (kb, _) = moto.create_key("us-east-1");
    let aws = moto.aws_env(&env.path("home"));
    let encrypt = |name: &str, ns: &str, value: &str, arn: &str| -> Vec<u8> {
        env.write(name, secret_for(ns, value).as_bytes());
        let mut c = env.cmd(&sops);
        c.envs(aws.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        ok(&c
            .args([
                "encrypt",
                "--kms",
                arn,
                "--encrypted-regex",
                ENC_REGEX,
                name,
            ])
            .output()
            .unwrap())
    };
    let for_a = encrypt("a.yaml", "tenant-a", "kms-value-of-a", &ka);
    let for_b = encrypt("b.yaml", "tenant-b", "kms-value-of-b", &kb);
    let keys = env.path("keys");
    env.write(
        "keys/tenant-a/team.awskms",
        format!("# tenant-a's key\n{ka}\n").as_bytes(),
    );
    env.write("keys/tenant-b/team.awskms", format!("{kb}\n").as_bytes());
    // A platform list joins a tenant's ring only with --platform-keys.
    env.write("keys/platform.awskms", format!("{ka}\n").as_bytes());
    // Age keys too: without --allow-kms a folder with only a KMS list has
    // no usable key, and the sidecar loads no keys folder with such a
    // tenant.
    for ns in ["tenant-a", "tenant-b"] {
        let (_, age) = new_age_key(env.dir.path(), ns);
        copy_key(&age, &keys.join(ns).join("age.agekey"));
    }
    let dec =
        |srv: &Server, ns: &str, body: &[u8]| srv.decrypt(false, &[("X-Kustos-Tenant", ns)], body);

    // Without --allow-kms the sidecar calls no KMS at all.
    let before = moto.decrypt_calls(&ka);
    let srv = Server::start_with_vars(&keys, None, &["--trust-tenant-header"], None, &aws);
    let (code, body) = dec(&srv, "tenant-a", &for_a);
    assert_eq!(code, 422, "{body}");
    assert!(!body.contains("kms-value-of-a"));
    assert_eq!(moto.decrypt_calls(&ka), before);
    drop(srv);

    let srv = Server::start_with_vars(
        &keys,
        None,
        &["--trust-tenant-header", "--allow-kms"],
        None,
        &aws,
    );
    let before = moto.decrypt_calls(&ka);
    for _ in 0..3 {
        let (code, body) = dec(&srv, "tenant-a", &for_a);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("kms-value-of-a"));
    }
    assert_eq!(
        moto.decrypt_calls(&ka) - before,
        1,
        "the data key is cached"
    );
    let (code, body) = dec(&srv, "tenant-b", &for_b);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("kms-value-of-b"));
    // tenant-b cannot use tenant-a's key (nor the platform list's), even
    // though the sidecar's credentials can: KMS is never asked, and the
    // answer is the one for a file the tenant has no key for.
    let before = moto.decrypt_calls(&ka);
    let (code, body) = dec(&srv, "tenant-b", &for_a);
    assert_eq!(code, 422, "{body}");
    assert!(
        error_of(&body).contains("none of them is a recipient"),
        "{body}"
    );
    assert!(!body.contains("kms-value-of-a"));
    assert_eq!(moto.decrypt_calls(&ka), before);
    let (_, m) = srv.get("/metrics");
    assert!(m.contains("kustos_keys{tenant=\"tenant-a\"} 2"), "{m}");
    let logs = srv.logs();
    assert!(!logs.contains("kms-value-of") && !logs.contains(FAKE_AWS_SECRET));
}

#[test]
fn renders_kustomizations_inside_the_root_only() {
    let (Some(sops), Some(_), Some(kubectl)) = (sops(), curl(), kubectl()) else {
        return;
    };
    let env = Env::new();
    copy_key(&env.key_file, &env.path("keys/age.agekey"));
    let root = env.path("repo");
    std::fs::create_dir_all(root.join("apps/web")).unwrap();
    let enc = sops_encrypt(
        &env,
        &sops,
        "secret.yaml",
        &secret_for("tenant-a", "render-secret-value"),
        &env.recipient,
        &["--encrypted-regex", ENC_REGEX],
    );
    std::fs::write(root.join("apps/web/secret.enc.yaml"), &enc).unwrap();
    std::fs::write(root.join("apps/web/kustomization.yaml"), "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - secret.enc.yaml\n").unwrap();
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(
        root.join("apps/web/kustomization.yaml"),
        outside.join("kustomization.yaml"),
    )
    .unwrap();
    std::fs::write(outside.join("secret.enc.yaml"), &enc).unwrap();

    let kubectl_s = kubectl.to_str().unwrap().to_string();
    let srv = Server::start(
        &env.path("keys"),
        None,
        &[
            "--render-root",
            root.to_str().unwrap(),
            "--kubectl",
            &kubectl_s,
            "--trust-tenant-header",
        ],
    );
    let render = |body: &str| {
        srv.curl(
            false,
            "POST",
            "/v1/render",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    };

    let (code, out) = render(r#"{"path": "apps/web", "tenant": "tenant-a"}"#);
    assert_eq!(code, 200, "{out}");
    assert!(out.contains("kind: Secret"), "{out}");
    assert!(out.contains("render-secret-value"), "{out}");
    assert!(!out.contains("sops:"), "{out}");

    // The Secret is in tenant-a's namespace: tenant-b may not render it.
    let (code, body) = render(r#"{"path": "apps/web", "tenant": "tenant-b"}"#);
    assert_eq!(code, 422, "{body}");
    assert!(error_of(&body).contains("not the tenant's"), "{body}");

    // A symlink out of the root, to a folder that would render.
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    for (req, want) in [
        (r#"{"path": "../outside"}"#, 400),
        (r#"{"path": "apps/../../outside"}"#, 400),
        (r#"{"path": "/etc"}"#, 400),
        (r#"{"path": "escape"}"#, 403),
        (r#"{"path": "apps/missing"}"#, 404),
        (r#"{"path": 1}"#, 400),
        ("not json", 400),
    ] {
        let (code, body) = render(req);
        assert_eq!(code, want, "{req}: {body}");
        assert!(!body.contains("render-secret-value"), "{body}");
        error_of(&body);
    }
    assert!(!srv.logs().contains("render-secret-value"));
}

/// kubelet's atomic writer: a new timestamped folder, then `..data` swapped
/// with a rename; the visible names are symlinks through `..data`.
fn publish(keys: &Path, version: &str, files: &[(&str, &[u8])]) {
    let dir = keys.join(version);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, data) in files {
        std::fs::write(dir.join(name), data).unwrap();
    }
    let tmp = keys.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).unwrap();
    let old = std::fs::read_link(keys.join("..data")).ok();
    std::fs::rename(&tmp, keys.join("..data")).unwrap();
    for (name, _) in files {
        let link = keys.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
    if let Some(old) = old {
        std::fs::remove_dir_all(keys.join(old)).unwrap();
    }
}

#[test]
fn reloads_rotated_keys_without_failing_requests() {
    let (Some(sops), Some(_)) = (sops(), curl()) else {
        return;
    };
    let env = Env::new();
    let (ra, ka) = new_age_key(env.dir.path(), "old");
    let (rb, kb) = new_age_key(env.dir.path(), "new");
    let (key_a, key_b) = (std::fs::read(&ka).unwrap(), std::fs::read(&kb).unwrap());
    let file_a = sops_encrypt(
        &env,
        &sops,
        "a.yaml",
        &secret_for("t", "rot-a"),
        &ra,
        &["--encrypted-regex", ENC_REGEX],
    );
    let file_b = sops_encrypt(
        &env,
        &sops,
        "b.yaml",
        &secret_for("t", "rot-b"),
        &rb,
        &["--encrypted-regex", ENC_REGEX],
    );
    let keys = env.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    publish(
        &keys,
        "..2026_11_22_10_00_00.000000001",
        &[("age.agekey", &key_a)],
    );

    let srv = Server::start(
        &keys,
        None,
        &["--reload-interval", "100ms", "--no-access-log"],
    );
    assert_eq!(srv.decrypt(false, &[], &file_b).0, 422);

    // Clients decrypting file A the whole time, on keep-alive connections.
    let stop = Arc::new(AtomicBool::new(false));
    let (oks, fails) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let (stop, oks, fails, addr, body) = (
                stop.clone(),
                oks.clone(),
                fails.clone(),
                srv.tcp.clone(),
                file_a.clone(),
            );
            std::thread::spawn(move || {
                let mut c = KeepAlive::new(&addr);
                while !stop.load(Ordering::Relaxed) {
                    match c.post("/v1/decrypt", "X-Kustos-Format: yaml\r\n", &body) {
                        Ok((200, b)) if String::from_utf8_lossy(&b).contains("rot-a") => {
                            oks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((code, b)) => fails
                            .lock()
                            .unwrap()
                            .push(format!("{code}: {}", String::from_utf8_lossy(&b))),
                        Err(e) => fails.lock().unwrap().push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    eventually("client requests", Duration::from_secs(10), || {
        oks.load(Ordering::Relaxed) > 20
    });

    // Rotation: the new Secret holds the old and the new key.
    publish(
        &keys,
        "..2026_11_22_10_05_00.000000002",
        &[("age.agekey", &key_a), ("new.agekey", &key_b)],
    );
    eventually("the new key", Duration::from_secs(10), || {
        srv.decrypt(false, &[], &file_b).0 == 200
    });
    let (_, readyz) = srv.get("/readyz");
    assert!(readyz.contains("\"generation\":2"), "{readyz}");

    // A broken update keeps the keys in service.
    publish(
        &keys,
        "..2026_11_22_10_10_00.000000003",
        &[
            ("age.agekey", &key_a),
            ("new.agekey", b"AGE-SECRET-KEY-1BROKENKEYMATERIAL\n"),
        ],
    );
    eventually(
        "the failed reload in /metrics",
        Duration::from_secs(10),
        || srv.metric("kustos_key_reloads_total{result=\"failure\"}") == Some(1.0),
    );
    let before = oks.load(Ordering::Relaxed);
    eventually("more client requests", Duration::from_secs(10), || {
        oks.load(Ordering::Relaxed) > before + 20
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let fails = fails.lock().unwrap();
    assert!(
        fails.is_empty(),
        "requests failed during the rotation: {:?}",
        &fails[..fails.len().min(5)]
    );
    let (code, body) = srv.decrypt(false, &[], &file_b);
    assert_eq!(code, 200, "{body}");
    assert_eq!(srv.get("/readyz").0, 200);
    assert_eq!(
        srv.metric("kustos_key_reloads_total{result=\"success\"}"),
        Some(2.0)
    );
    assert_eq!(srv.metric("kustos_key_generation"), Some(2.0));
    let logs = srv.logs();
    assert!(logs.contains("key reload failed"), "{logs}");
    assert!(logs.contains("invalid age secret key on line 1"), "{logs}");
    assert!(!logs.contains("BROKENKEYMATERIAL"), "{logs}");

    // The old key goes away: its cached data key goes with it.
    publish(
        &keys,
        "..2026_11_22_10_15_00.000000004",
        &[("new.agekey", &key_b)],
    );
    eventually("the old key to be dropped", Duration::from_secs(10), || {
        srv.decrypt(false, &[], &file_a).0 == 422
    });
    assert_eq!(srv.decrypt(false, &[], &file_b).0, 200);
}

type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<u8>, u16, &'a str);

#[test]
fn bad_requests_get_4xx_and_the_server_stays_up() {
    let (Some(sops), Some(_)) = (sops(), curl()) else {
        return;
    };
    let env = Env::new();
    copy_key(&env.key_file, &env.path("keys/age.agekey"));
    let good = sops_encrypt(
        &env,
        &sops,
        "s.yaml",
        SECRET_YAML,
        &env.recipient,
        &["--encrypted-regex", ENC_REGEX],
    );
    let srv = Server::start(
        &env.path("keys"),
        None,
        &["--max-body", "64KiB", "--timeout", "1s"],
    );
    let text = String::from_utf8(good.clone()).unwrap();

    let tampered_mac = text.replacen("name: db", "name: dc", 1);
    assert_ne!(tampered_mac, text);
    let i = text.find("ENC[AES256_GCM,data:").unwrap() + 22;
    let mut tampered_value = text.clone().into_bytes();
    tampered_value[i] = if tampered_value[i] == b'A' {
        b'B'
    } else {
        b'A'
    };
    // (what, headers, body, status, reason)
    let cases: Vec<Case> = vec![
        ("malformed", vec![], b"a: [1\n".to_vec(), 400, "parse error"),
        (
            "plain YAML",
            vec![],
            b"a: 1\n".to_vec(),
            400,
            "sops metadata not found",
        ),
        (
            "truncated",
            vec![],
            good[..good.len() / 2].to_vec(),
            400,
            "",
        ),
        (
            "wrong format",
            vec![("X-Kustos-Format", "json")],
            good.clone(),
            400,
            "json",
        ),
        (
            "unknown format",
            vec![("X-Kustos-Format", "toml")],
            good.clone(),
            400,
            "X-Kustos-Format",
        ),
        (
            "MAC mismatch",
            vec![],
            tampered_mac.into_bytes(),
            422,
            "MAC mismatch",
        ),
        (
            "tampered value",
            vec![],
            tampered_value,
            422,
            "cannot decrypt",
        ),
    ];
    for (what, h, body, want, reason) in cases {
        let (code, out) = srv.decrypt(false, &h, &body);
        assert_eq!(code, want, "{what}: {out}");
        let e = error_of(&out);
        assert!(e.contains(reason), "{what}: {e}");
        assert!(!out.contains("hunter2"), "{what}: {out}");
    }
    assert_eq!(srv.curl(false, "GET", "/v1/decrypt", &[], None).0, 405);
    assert_eq!(srv.get("/nope").0, 404);
    let (code, body) = srv.decrypt(false, &[], b"");
    assert_eq!(code, 400, "{body}");
    let (code, body) = srv.curl(false, "POST", "/v1/render", &[], Some(b"{\"path\": \"x\"}"));
    assert_eq!(code, 404, "render is off without --render-root: {body}");

    // Too big: announced, and streamed (chunked).
    let resp = raw(
        &srv.tcp,
        b"POST /v1/decrypt HTTP/1.1\r\nHost: k\r\nContent-Length: 200000\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(resp.contains("larger than 65536 bytes"), "{resp}");
    let mut chunked =
        b"POST /v1/decrypt HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n", 30000).as_bytes());
        chunked.extend(std::iter::repeat_n(b'a', 30000));
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let resp = raw(&srv.tcp, &chunked, Duration::from_secs(5));
    assert!(
        resp.is_empty() || resp.starts_with("HTTP/1.1 413"),
        "{resp}"
    );

    // Slow: a body that stalls, and headers that stall, past --timeout 1s.
    let t = Instant::now();
    let resp = raw(
        &srv.tcp,
        b"POST /v1/decrypt HTTP/1.1\r\nHost: k\r\nContent-Length: 500\r\n\r\nsops:\n",
        Duration::from_secs(5),
    );
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(t.elapsed() < Duration::from_secs(4));
    let t = Instant::now();
    let resp = raw(
        &srv.tcp,
        b"POST /v1/decrypt HTTP/1.1\r\nHost: k\r\n",
        Duration::from_secs(5),
    );
    assert!(!resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "the connection was not closed"
    );

    // Still serving.
    let (code, out) = srv.decrypt(false, &[], &good);
    assert_eq!(code, 200, "{out}");
    assert!(out.contains("hunter2-yaml"));
    assert_eq!(srv.get("/healthz").0, 200);
    assert_eq!(srv.metric("kustos_mac_failures_total"), Some(1.0));
    assert_eq!(
        srv.metric("kustos_requests_total{route=\"decrypt\",status=\"413\"}"),
        Some(2.0)
    );
    assert_eq!(
        srv.metric("kustos_requests_total{route=\"decrypt\",status=\"408\"}"),
        Some(1.0)
    );
    assert!(!srv.logs().contains("hunter2"));
}

#[test]
fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let (Some(sops), Some(_)) = (sops(), curl()) else {
        return;
    };
    let env = Env::new();
    copy_key(&env.key_file, &env.path("keys/age.agekey"));
    let good = sops_encrypt(
        &env,
        &sops,
        "s.yaml",
        SECRET_YAML,
        &env.recipient,
        &["--encrypted-regex", ENC_REGEX],
    );
    let sock = env.path("kustos.sock");
    let mut srv = Server::start(&env.path("keys"), Some(&sock), &[]);

    // A request in flight: headers and half the body sent.
    let mut s = TcpStream::connect(&srv.tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let half = good.len() / 2;
    s.write_all(
        format!(
            "POST /v1/decrypt HTTP/1.1\r\nHost: k\r\nContent-Length: {}\r\n\r\n",
            good.len()
        )
        .as_bytes(),
    )
    .unwrap();
    s.write_all(&good[..half]).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    srv.term();
    eventually("the listener to close", Duration::from_secs(5), || {
        TcpStream::connect(&srv.tcp).is_err()
    });
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );
    s.write_all(&good[half..]).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let out = String::from_utf8_lossy(&out);
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains("hunter2-yaml"));
    let status = srv.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", srv.logs());
    assert!(!sock.exists(), "the socket file is removed");
    let logs = srv.logs();
    assert!(logs.contains("\"msg\":\"draining\""), "{logs}");
    assert!(logs.contains("\"drained\":true"), "{logs}");
}

#[test]
fn not_ready_until_keys_arrive() {
    let Some(_) = curl() else { return };
    let env = Env::new();
    std::fs::create_dir_all(env.path("keys")).unwrap();
    let srv = Server::start(&env.path("keys"), None, &["--reload-interval", "100ms"]);
    let (code, body) = srv.get("/readyz");
    assert_eq!(code, 503, "{body}");
    assert_eq!(srv.get("/healthz").0, 200);
    let (code, body) = srv.decrypt(false, &[], b"a: 1\n");
    assert_eq!(code, 503, "{body}");
    assert!(error_of(&body).contains("no keys"));
    copy_key(&env.key_file, &env.path("keys/age.agekey"));
    eventually("readiness", Duration::from_secs(10), || {
        srv.get("/readyz").0 == 200
    });
}

/// The load generator (`examples/` of this crate, built by `cargo build --examples`).
fn loadtest_bin() -> PathBuf {
    let deps = Path::new(env!("CARGO_BIN_EXE_kustos")).parent().unwrap();
    let bin = deps.join("examples/loadtest");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo build --examples` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

#[test]
fn the_load_generator_reports_figures() {
    let Some(_) = curl() else { return };
    let env = Env::new();
    copy_key(&env.key_file, &env.path("keys/age.agekey"));
    let plain = env.write("s.yaml", secret_for("t", "lt-value").as_bytes());
    let enc = env.kustos(&["encrypt", "--age", &env.recipient, plain.to_str().unwrap()]);
    let file = env.write("s.enc.yaml", &ok(&enc));
    let srv = Server::start(&env.path("keys"), None, &["--no-access-log"]);
    let out = Command::new(loadtest_bin())
        .args([
            "--url",
            &srv.url(""),
            "--concurrency",
            "4",
            "--duration",
            "500ms",
            "--json",
            "--fail-on-error",
        ])
        .arg("--file")
        .arg(&file)
        .output()
        .unwrap();
    let stdout = ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(v["errors"], 0, "{v}");
    assert!(v["ok"].as_u64().unwrap() > 10, "{v}");
    assert!(v["p99_ms"].as_f64().unwrap() > 0.0, "{v}");
    // Only loopback targets.
    let out = Command::new(loadtest_bin())
        .args(["--url", "http://192.0.2.1:80", "--duration", "1s"])
        .arg("--file")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

// ---------------------------------------------------------------------------
// deploy/

fn deploy(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("deploy")
            .join(name),
    )
    .unwrap()
}

/// A YAML manifest as JSON, through kustos' own YAML parser.
fn manifest(name: &str) -> serde_json::Value {
    use kustos::formats::{self, Format};
    let docs = formats::load_plain(Format::Yaml, deploy(name).as_bytes())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(docs.len(), 1, "{name}");
    let json = formats::emit_plain(Format::Json, &docs, &Default::default()).unwrap();
    serde_json::from_slice(&json).unwrap()
}

#[test]
fn deploy_manifests_parse_and_are_hardened() {
    let d = manifest("sidecar.yaml");
    assert_eq!(d["kind"], "Deployment");
    let pod = &d["spec"]["template"]["spec"];
    let c = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "kustos")
        .unwrap();
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"][0], "ALL");
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert!(c["resources"]["requests"]["cpu"].is_string());
    let mounts = c["volumeMounts"].as_array().unwrap();
    let keys = mounts
        .iter()
        .find(|m| m["mountPath"] == "/var/run/kustos/keys")
        .unwrap();
    assert_eq!(keys["readOnly"], true);
    let vols = pod["volumes"].as_array().unwrap();
    let kv = vols.iter().find(|v| v["name"] == keys["name"]).unwrap();
    assert!(kv["secret"]["secretName"].is_string());
    let sock = mounts
        .iter()
        .find(|m| m["mountPath"] == "/run/kustos")
        .unwrap();
    assert!(vols
        .iter()
        .any(|v| v["name"] == sock["name"] && v["emptyDir"].is_object()));
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        args.contains(&"--listen=unix:///run/kustos/kustos.sock"),
        "{args:?}"
    );
    // Render workspaces: the sidecar's own memory-backed /tmp.
    let tmp = mounts.iter().find(|m| m["mountPath"] == "/tmp").unwrap();
    let tv = vols.iter().find(|v| v["name"] == tmp["name"]).unwrap();
    assert_eq!(tv["emptyDir"]["medium"], "Memory");
    // Keys and the sidecar's /tmp are mounted into no other container.
    for app in pod["containers"].as_array().unwrap() {
        for m in app["volumeMounts"].as_array().unwrap() {
            assert!(m["name"] != keys["name"] && m["name"] != tmp["name"], "{m}");
        }
    }

    let p = manifest("argocd/plugin.yaml");
    assert_eq!(p["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(p["kind"], "ConfigManagementPlugin");
    assert!(p["spec"]["version"].is_string());
    assert_eq!(
        p["spec"]["generate"]["command"],
        serde_json::json!(["kustos", "cmp", "generate"])
    );
    assert_eq!(p["spec"]["discover"]["fileName"], "kustomization.yaml");

    let r = manifest("argocd/repo-server-patch.yaml");
    assert_eq!(r["metadata"]["name"], "argocd-repo-server");
    let c = &r["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["command"][0], "/var/run/argocd/argocd-cmp-server");
    assert_eq!(c["securityContext"]["runAsUser"], 999);
    let paths: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["mountPath"].as_str())
        .collect();
    for want in [
        "/var/run/argocd",
        "/home/argocd/cmp-server/plugins",
        "/home/argocd/cmp-server/config/plugin.yaml",
        "/tmp",
        "/var/run/kustos/keys",
    ] {
        assert!(paths.contains(&want), "{want} not mounted: {paths:?}");
    }
    assert!(c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["subPath"] == "plugin.yaml"));
    let tmp = r["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "kustos-cmp-tmp")
        .unwrap();
    assert_eq!(tmp["emptyDir"]["medium"], "Memory");

    let docker = deploy("Dockerfile");
    assert!(
        docker.contains("x86_64-unknown-linux-musl")
            || docker.contains("rust:${RUST_VERSION}-alpine")
    );
    assert!(docker.contains("FROM gcr.io/distroless/static") || docker.contains("FROM scratch"));
    assert!(docker.contains("USER 65532"));
    assert!(docker.contains(r#"ENTRYPOINT ["/usr/local/bin/kustos", "serve"]"#));
}
