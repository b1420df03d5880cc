//! Tenant Git credentials (`kustos secret git`) and cluster decryption keys
//! (`kustos keygen`), checked against the real peers: an OpenSSH server
//! for host-key scans, `ssh-keygen`/`openssl` for deploy keys, sops 3.11 for
//! encrypted Secrets, the age CLI and GnuPG for cluster keys, and go-yaml
//! v2's output (testdata/gitauth) for the Secret layout.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use kustos::formats::{self, Format};
use kustos::gitauth::{self, knownhosts, SecretMeta};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/gitauth")
        .join(name)
}

/// kustos with extra environment variables (on top of the isolated Env).
fn run(env: &Env, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = env.cmd(&kustos_bin());
    for (k, v) in vars {
        c.env(k, v);
    }
    c.args(args).output().unwrap()
}

fn run_stdin(env: &Env, vars: &[(&str, &str)], args: &[&str], stdin: &[u8]) -> Output {
    let mut c = env.cmd(&kustos_bin());
    for (k, v) in vars {
        c.env(k, v);
    }
    run_with_stdin(c.args(args), stdin)
}

#[track_caller]
fn fails(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.stdout.is_empty(), "a failed command printed to stdout");
    err
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `stringData` of a (plaintext) Secret as `(key, value)` pairs.
fn string_data(yaml: &[u8]) -> Vec<(String, String)> {
    let docs = formats::load_plain(Format::Yaml, yaml).unwrap();
    let m = docs[0]
        .get("stringData")
        .and_then(|v| v.as_map())
        .expect("stringData");
    m.entries()
        .map(|(k, v)| (k.to_string(), v.as_str().unwrap().to_string()))
        .collect()
}

fn field(data: &[(String, String)], key: &str) -> String {
    data.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| panic!("no {key} in the Secret"))
}

fn ssh_keygen() -> Option<PathBuf> {
    require("ssh-keygen (openssh-client)", which("ssh-keygen"))
}

/// `type base64` of an OpenSSH public key file (comment dropped).
fn pub_fields(p: &Path) -> String {
    let s = std::fs::read_to_string(p).unwrap();
    s.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// A private key in a 0600 temp file (only the tests ever write one).
fn private_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// The process umask, from /proc/self/status.
fn umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

// ---------------------------------------------------------------------------
// Secret layout
// ---------------------------------------------------------------------------

/// Every case marshalled by the real go-yaml v2 (see testdata/gitauth/README.md).
#[test]
fn secret_layout_matches_go_yaml_v2() {
    let text = std::fs::read_to_string(testdata("yaml-v2-cases.json")).unwrap();
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() > 90);
    let mut failures = Vec::new();
    for c in &cases {
        let value = c["value"].as_str().unwrap();
        let want = format!("---\n{}\n", c["yaml"].as_str().unwrap());
        const ALL_KEYS: &[(&str, &str)] = &[
            ("password", "p"),
            ("username", "u"),
            ("identity.pub", "ssh-ed25519 AAAA\n"),
            ("known_hosts", "h ssh-ed25519 AAAA"),
            ("ca.crt", "c"),
            ("bearerToken", "t"),
            ("identity", "-----BEGIN-----\nx\n-----END-----\n"),
        ];
        let labels: Vec<(String, String)> = c
            .get("labels")
            .and_then(|l| l.as_object())
            .map(|l| {
                l.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let single = [("k", value)];
        let entries: &[(&str, &str)] = if c.get("labels").is_some() {
            ALL_KEYS
        } else {
            &single
        };
        let meta = SecretMeta {
            name: "n".into(),
            namespace: "ns".into(),
            labels,
        };
        let got = gitauth::secret::render(&meta, entries);
        if *got != want {
            failures.push(format!(
                "value {value:?}:\n--- want\n{want}--- got\n{}",
                &*got
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Flux's own goldens (cmd/flux/testdata/create_secret/git/*.yaml).
#[test]
fn golden_http_secrets_like_flux() {
    let env = Env::new();
    let basic = "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: podinfo-auth\n  namespace: my-namespace\nstringData:\n  password: my-password\n  username: my-username\n\n";
    let args = [
        "secret",
        "git",
        "podinfo-auth",
        "--namespace=my-namespace",
        "--url=https://github.com/stefanprodan/podinfo",
        "--username=my-username",
    ];
    let o = run(&env, &[("KUSTOS_GIT_PASSWORD", "my-password")], &args);
    assert_eq!(String::from_utf8(ok(&o)).unwrap(), basic);
    assert!(stderr(&o).contains("not encrypted"));
    let mut with_stdin = args.to_vec();
    with_stdin.push("--password-stdin");
    let o = run_stdin(&env, &[], &with_stdin, b"my-password\n");
    assert_eq!(String::from_utf8(ok(&o)).unwrap(), basic);

    let o = run_stdin(
        &env,
        &[],
        &[
            "secret",
            "git",
            "bearer-token-auth",
            "-n",
            "my-namespace",
            "--url",
            "https://github.com/stefanprodan/podinfo",
            "--bearer-token-stdin",
        ],
        b"ghp_baR2qnFF0O41WlucePL3udt2N9vVZS4R0hAS",
    );
    assert_eq!(
        String::from_utf8(ok(&o)).unwrap(),
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: bearer-token-auth\n  namespace: my-namespace\nstringData:\n  bearerToken: ghp_baR2qnFF0O41WlucePL3udt2N9vVZS4R0hAS\n\n"
    );

    let ca = env.write("ca.crt", b"ca-data");
    let o = run(
        &env,
        &[("KUSTOS_GIT_PASSWORD", "my-password")],
        &[
            "secret",
            "git",
            "ca-crt",
            "-n",
            "my-namespace",
            "--url",
            "https://github.com/stefanprodan/podinfo",
            "-u",
            "my-username",
            "--ca-crt-file",
            ca.to_str().unwrap(),
        ],
    );
    assert_eq!(
        String::from_utf8(ok(&o)).unwrap(),
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: ca-crt\n  namespace: my-namespace\nstringData:\n  ca.crt: ca-data\n  password: my-password\n  username: my-username\n\n"
    );
}

/// An SSH Secret from a key file and a known_hosts file: no network, exact text.
#[test]
fn golden_ssh_secret_from_files() {
    let env = Env::new();
    let key = std::fs::read_to_string(testdata("deploy.TEST-ONLY.key")).unwrap();
    let public = std::fs::read_to_string(testdata("deploy.TEST-ONLY.key.pub")).unwrap();
    let kh_line = "github.com ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
    let kh = env.write(
        "known_hosts",
        format!("# scanned earlier\n{kh_line}\n").as_bytes(),
    );
    let o = run(
        &env,
        &[],
        &[
            "secret",
            "git",
            "podinfo-auth",
            "-n",
            "my-namespace",
            "--url",
            "ssh://git@github.com/stefanprodan/podinfo",
            "--label",
            "toolkit.fluxcd.io/tenant=dev-team",
            "--private-key-file",
            testdata("deploy.TEST-ONLY.key").to_str().unwrap(),
            "--known-hosts-file",
            kh.to_str().unwrap(),
        ],
    );
    let mut want = String::from(
        "---\napiVersion: v1\nkind: Secret\nmetadata:\n  labels:\n    toolkit.fluxcd.io/tenant: dev-team\n  name: podinfo-auth\n  namespace: my-namespace\nstringData:\n  identity: |\n",
    );
    for l in key.lines() {
        want.push_str(&format!("    {l}\n"));
    }
    want.push_str(&format!(
        "  identity.pub: |\n    {}\n  known_hosts: {kh_line}\n\n",
        public.trim_end()
    ));
    assert_eq!(String::from_utf8(ok(&o)).unwrap(), want);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("deploy key: {}", public.trim_end())),
        "{err}"
    );
    assert!(
        err.contains("add it as a read-only deploy key to github.com/stefanprodan/podinfo"),
        "{err}"
    );
    assert!(
        err.contains("https://github.com/stefanprodan/podinfo/settings/keys"),
        "{err}"
    );
}

/// One refused `secret git` call: its arguments after `secret git a`, the
/// environment and stdin it gets, what its error must say and a secret it
/// must not repeat.
struct Refused {
    args: &'static [&'static str],
    vars: &'static [(&'static str, &'static str)],
    stdin: Option<&'static [u8]>,
    says: &'static str,
    never: Option<&'static str>,
}

const fn refused(args: &'static [&'static str], says: &'static str) -> Refused {
    Refused {
        args,
        vars: &[],
        stdin: None,
        says,
        never: None,
    }
}

#[test]
fn validation_errors_like_flux() {
    let env = Env::new();
    let cases = [
        refused(
            &["--url", "https://h/r", "-u", "x"],
            "for Git over HTTP/S the username and password, or a bearer token is required",
        ),
        Refused {
            vars: &[("KUSTOS_GIT_PASSWORD", "pw")],
            stdin: Some(b"tok"),
            ..refused(
                &["--url", "https://h/r", "-u", "x", "--bearer-token-stdin"],
                "user credentials and bearer token cannot be used together",
            )
        },
        refused(
            &["--url", "ftp://h/r"],
            "git URL scheme 'ftp' not supported, can be: ssh, http and https",
        ),
        refused(
            &["--url", "ssh://git@h:org/repo"],
            "invalid port \":org\" after host",
        ),
        // Secrets never come from argv.
        Refused {
            never: Some("hunter2"),
            ..refused(
                &["--url", "https://h/r", "-u", "x", "-p", "hunter2"],
                "--password-stdin",
            )
        },
        Refused {
            never: Some("hunter2"),
            ..refused(&["--url", "https://u:hunter2@h/r"], "contains a password")
        },
        // Flags for the other transport.
        refused(
            &["--url", "https://h/r", "--all-host-keys"],
            "--all-host-keys is for ssh:// URLs",
        ),
        refused(
            &["--url", "ssh://git@h/r", "-u", "x"],
            "--username is for http(s) URLs",
        ),
        refused(
            &[
                "--url",
                "ssh://git@h/r",
                "--ssh-key-algorithm",
                "rsa",
                "--ssh-rsa-bits",
                "1000",
            ],
            "invalid RSA key size 1000",
        ),
    ];
    for case in &cases {
        let mut args = vec!["secret", "git", "a"];
        args.extend_from_slice(case.args);
        let out = match case.stdin {
            Some(input) => run_stdin(&env, case.vars, &args, input),
            None => run(&env, case.vars, &args),
        };
        let e = fails(&out);
        assert!(e.contains(case.says), "{:?}: {e}", case.args);
        if let Some(secret) = case.never {
            assert!(!e.contains(secret), "{:?}: {e}", case.args);
        }
    }
    let e = fails(&run(
        &env,
        &[],
        &["secret", "git", "Bad_Name", "--url", "https://h/r"],
    ));
    assert!(e.contains("invalid Secret name"), "{e}");
    // scp-style URLs are converted, with a note (known_hosts from a file: no network).
    let kh = env.write(
        "kh",
        b"h ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK9BpAxcuSYZfRszZoeWVwJerDjWjfSjq9l3LEk+KxtJ\n",
    );
    let o = run(
        &env,
        &[],
        &[
            "secret",
            "git",
            "a",
            "--url",
            "git@example.com:org/repo.git",
            "--known-hosts-file",
            kh.to_str().unwrap(),
        ],
    );
    ok(&o);
    assert!(
        stderr(&o).contains("using ssh://git@example.com/org/repo.git"),
        "{}",
        stderr(&o)
    );
}

// ---------------------------------------------------------------------------
// Host-key scans against a real sshd
// ---------------------------------------------------------------------------

#[test]
fn scan_records_the_servers_host_keys() {
    let Some(sshd) = TestSshd::start(&["ecdsa", "ed25519", "rsa"]) else {
        return;
    };
    let opts = knownhosts::ScanOptions::default();
    // One key, like Flux: the client prefers ecdsa-sha2-nistp256.
    let lines = knownhosts::scan("127.0.0.1", sshd.port, &opts).unwrap();
    assert_eq!(lines, vec![sshd.line("ecdsa")]);
    assert!(lines[0].starts_with(&format!("[127.0.0.1]:{} ecdsa-sha2-nistp256 ", sshd.port)));
    // Every type: one handshake per algorithm family.
    let all = knownhosts::scan(
        "127.0.0.1",
        sshd.port,
        &knownhosts::ScanOptions {
            all_host_keys: true,
            ..opts
        },
    )
    .unwrap();
    assert_eq!(
        all,
        vec![sshd.line("ecdsa"), sshd.line("rsa"), sshd.line("ed25519")]
    );

    // Through the CLI, with a generated key.
    let env = Env::new();
    let o = run(&env, &[], &["secret", "git", "auth", "--url", &sshd.url()]);
    let data = string_data(&ok(&o));
    assert_eq!(field(&data, "known_hosts"), sshd.line("ecdsa"));
    let o = run(
        &env,
        &[],
        &[
            "secret",
            "git",
            "auth",
            "--url",
            &sshd.url(),
            "--all-host-keys",
        ],
    );
    let data = string_data(&ok(&o));
    assert_eq!(
        field(&data, "known_hosts"),
        [sshd.line("ecdsa"), sshd.line("rsa"), sshd.line("ed25519")].join("\n")
    );
}

#[test]
fn scan_follows_the_preference_order() {
    // Without ECDSA, RSA comes before Ed25519 (Go x/crypto's order).
    let Some(sshd) = TestSshd::start(&["ed25519", "rsa"]) else {
        return;
    };
    let lines = knownhosts::scan("127.0.0.1", sshd.port, &Default::default()).unwrap();
    assert_eq!(lines, vec![sshd.line("rsa")]);
    assert!(lines[0].contains(" ssh-rsa "));
    let Some(ed) = TestSshd::start(&["ed25519"]) else {
        return;
    };
    assert_eq!(
        knownhosts::scan("127.0.0.1", ed.port, &Default::default()).unwrap(),
        vec![ed.line("ed25519")]
    );
}

#[test]
fn unreachable_hosts_fail_fast_and_clearly() {
    let env = Env::new();
    // Connection refused: nothing listens on a port that was just free.
    let port = free_port();
    let t = Instant::now();
    let e = fails(&run(
        &env,
        &[],
        &[
            "secret",
            "git",
            "a",
            "--url",
            &format!("ssh://git@127.0.0.1:{port}/r"),
        ],
    ));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        e.contains(&format!(
            "cannot scan the SSH host keys of 127.0.0.1:{port}: connection refused"
        )),
        "{e}"
    );
    assert_eq!(
        e.lines().filter(|l| l.starts_with("kustos:")).count(),
        1,
        "{e}"
    );

    // A server that accepts and never speaks: the timeout applies.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let t = Instant::now();
    let e = fails(&run(
        &env,
        &[],
        &[
            "secret",
            "git",
            "a",
            "--url",
            &format!("ssh://git@127.0.0.1:{port}/r"),
            "--ssh-timeout",
            "1s",
        ],
    ));
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert!(
        e.contains(&format!("127.0.0.1:{port}")) && e.contains("1s"),
        "{e}"
    );
    drop(silent);

    // Not an SSH server: a clear error too.
    let http = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = http.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        if let Ok((mut s, _)) = http.accept() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let e = fails(&run(
        &env,
        &[],
        &[
            "secret",
            "git",
            "a",
            "--url",
            &format!("ssh://git@127.0.0.1:{port}/r"),
            "--ssh-timeout",
            "2s",
        ],
    ));
    assert!(
        e.contains(&format!(
            "cannot scan the SSH host keys of 127.0.0.1:{port}"
        )),
        "{e}"
    );
    server.join().unwrap();
}

// ---------------------------------------------------------------------------
// Deploy keys
// ---------------------------------------------------------------------------

#[test]
fn generated_deploy_keys_load_with_ssh_keygen() {
    let Some(keygen) = ssh_keygen() else {
        return;
    };
    let env = Env::new();
    let kh = env.write(
        "kh",
        b"h ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK9BpAxcuSYZfRszZoeWVwJerDjWjfSjq9l3LEk+KxtJ\n",
    );
    let cases: &[(&[&str], &str)] = &[
        (&[], "ecdsa-sha2-nistp384"),
        (
            &["--ssh-key-algorithm", "ecdsa", "--ssh-ecdsa-curve", "p256"],
            "ecdsa-sha2-nistp256",
        ),
        (&["--ssh-ecdsa-curve", "p521"], "ecdsa-sha2-nistp521"),
        (&["--ssh-key-algorithm", "rsa"], "ssh-rsa"),
        (
            &["--ssh-key-algorithm", "rsa", "--ssh-rsa-bits", "4096"],
            "ssh-rsa",
        ),
        (&["--ssh-key-algorithm", "ed25519"], "ssh-ed25519"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, (flags, key_type)) in cases.iter().enumerate() {
        let mut args = vec![
            "secret",
            "git",
            "auth",
            "--url",
            "ssh://git@h/r",
            "--known-hosts-file",
            kh.to_str().unwrap(),
        ];
        args.extend_from_slice(flags);
        let o = run(&env, &[], &args);
        let data = string_data(&ok(&o));
        let identity = field(&data, "identity");
        let public = field(&data, "identity.pub");
        // PKCS#8 PEM like Flux; Ed25519 in the OpenSSH format, which every
        // OpenSSH loads (Flux reads both).
        let header = if *key_type == "ssh-ed25519" {
            "-----BEGIN OPENSSH PRIVATE KEY-----\n"
        } else {
            "-----BEGIN PRIVATE KEY-----\n"
        };
        assert!(identity.starts_with(header), "{flags:?}");
        assert!(
            public.starts_with(&format!("{key_type} AAAA")) && public.ends_with('\n'),
            "{flags:?}: {public}"
        );
        assert_eq!(public.lines().count(), 1);
        if *key_type == "ssh-rsa" {
            let bits = flags
                .iter()
                .position(|f| *f == "--ssh-rsa-bits")
                .map(|i| flags[i + 1])
                .unwrap_or("2048");
            let file = private_file(tmp.path(), &format!("k{i}"), &identity);
            let out = Command::new(&keygen)
                .arg("-l")
                .arg("-f")
                .arg(&file)
                .output()
                .unwrap();
            assert!(
                String::from_utf8_lossy(&out.stdout).starts_with(bits),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let file = private_file(tmp.path(), &format!("key{i}"), &identity);
        let out = Command::new(&keygen)
            .arg("-y")
            .arg("-f")
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen -y failed for {flags:?}: {}",
            stderr(&out)
        );
        assert_eq!(String::from_utf8(out.stdout).unwrap(), public, "{flags:?}");
        // Nothing about the private key reaches stderr.
        let body: String = identity.lines().nth(1).unwrap().to_string();
        assert!(!stderr(&o).contains(&body));
    }
}

/// The generated Secret works for a real `git clone` over SSH: its
/// identity logs in, its known_hosts is the one OpenSSH checks strictly.
#[test]
fn generated_credentials_clone_over_ssh() {
    let (Some(_), Some(git), Some(ssh)) = (
        ssh_keygen(),
        require("git", which("git")),
        require("ssh (openssh-client)", which("ssh")),
    ) else {
        return;
    };
    let Some(sshd) = TestSshd::start_for_git(&["ecdsa", "ed25519", "rsa"]) else {
        return;
    };
    let env = Env::new();
    // A repository with one commit, reachable as an absolute path.
    let repo = env.path("origin.git");
    let git_ok = |args: &[&str], dir: &Path| {
        let o = Command::new(&git)
            .args(args)
            .current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    };
    std::fs::create_dir_all(&repo).unwrap();
    git_ok(&["init", "-q", "-b", "main"], &repo);
    std::fs::write(repo.join("README"), "hello over ssh\n").unwrap();
    git_ok(&["add", "README"], &repo);
    git_ok(&["commit", "-q", "-m", "first"], &repo);
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| {
            let o = Command::new("id").arg("-un").output().unwrap();
            String::from_utf8_lossy(&o.stdout).trim().to_string()
        });
    let url = format!("ssh://{user}@127.0.0.1:{}{}", sshd.port, repo.display());
    for alg in ["ecdsa", "ed25519", "rsa"] {
        let o = run(
            &env,
            &[],
            &[
                "secret",
                "git",
                "auth",
                "--url",
                &url,
                "--ssh-key-algorithm",
                alg,
            ],
        );
        let data = string_data(&ok(&o));
        let dir = env.path(&format!("client-{alg}"));
        std::fs::create_dir_all(&dir).unwrap();
        let identity = private_file(&dir, "identity", &field(&data, "identity"));
        let known_hosts = dir.join("known_hosts");
        std::fs::write(&known_hosts, format!("{}\n", field(&data, "known_hosts"))).unwrap();
        std::fs::write(sshd.authorized_keys(), field(&data, "identity.pub")).unwrap();
        let ssh_cmd = format!(
            "{} -i {} -o IdentitiesOnly=yes -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o BatchMode=yes -F /dev/null",
            ssh.display(),
            identity.display(),
            known_hosts.display()
        );
        let o = Command::new(&git)
            .args(["clone", "-q", &url])
            .arg(dir.join("work"))
            .env("GIT_SSH_COMMAND", &ssh_cmd)
            .output()
            .unwrap();
        assert!(o.status.success(), "{alg}: git clone: {}", stderr(&o));
        assert_eq!(
            std::fs::read_to_string(dir.join("work/README")).unwrap(),
            "hello over ssh\n"
        );
    }
}

#[test]
fn private_key_files_with_and_without_passphrase() {
    let Some(keygen) = ssh_keygen() else {
        return;
    };
    let env = Env::new();
    let kh = env.write(
        "kh",
        b"h ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK9BpAxcuSYZfRszZoeWVwJerDjWjfSjq9l3LEk+KxtJ\n",
    );
    let kh = kh.to_str().unwrap();
    let key = env.path("id_ed25519");
    let out = Command::new(&keygen)
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "s3cret-pass",
            "-C",
            "me@example",
            "-f",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let key_s = key.to_str().unwrap();
    let base = [
        "secret",
        "git",
        "auth",
        "--url",
        "ssh://git@h/r",
        "--known-hosts-file",
        kh,
        "--private-key-file",
        key_s,
    ];

    let mut a = base.to_vec();
    a.push("--password-stdin");
    let o = run_stdin(&env, &[], &a, b"s3cret-pass\n");
    let data = string_data(&ok(&o));
    assert_eq!(
        field(&data, "identity"),
        std::fs::read_to_string(&key).unwrap(),
        "the file is kept byte for byte, like Flux"
    );
    assert_eq!(
        field(&data, "identity.pub").trim_end(),
        pub_fields(&env.path("id_ed25519.pub"))
    );
    assert_eq!(field(&data, "password"), "s3cret-pass");
    // The environment variable works too.
    let o = run(&env, &[("KUSTOS_GIT_PASSWORD", "s3cret-pass")], &base);
    ok(&o);

    let e = fails(&run(&env, &[], &base));
    assert!(e.contains("passphrase-protected"), "{e}");
    let e = fails(&run_stdin(&env, &[], &a, b"wrong"));
    assert!(
        e.contains("wrong passphrase") && !e.contains("wrong\n"),
        "{e}"
    );

    // PEM keys (PKCS#8 and SEC1 from OpenSSL, PKCS#1 RSA) derive the same public key as ssh-keygen.
    let Some(openssl) = require("openssl", which("openssl")) else {
        return;
    };
    let pems: &[&[&str]] = &[
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "OUT",
        ],
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "OUT",
        ],
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            "OUT",
        ],
        &["genrsa", "-traditional", "-out", "OUT", "2048"],
    ];
    for (i, args) in pems.iter().enumerate() {
        let p = env.path(&format!("pem{i}"));
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "OUT" { p.to_str().unwrap() } else { a })
            .collect();
        let out = Command::new(&openssl).args(&args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let o = run(
            &env,
            &[],
            &[
                "secret",
                "git",
                "auth",
                "--url",
                "ssh://git@h/r",
                "--known-hosts-file",
                kh,
                "--private-key-file",
                p.to_str().unwrap(),
            ],
        );
        let data = string_data(&ok(&o));
        let want = Command::new(&keygen)
            .arg("-y")
            .arg("-f")
            .arg(&p)
            .output()
            .unwrap();
        assert!(want.status.success());
        assert_eq!(
            field(&data, "identity.pub"),
            String::from_utf8(want.stdout).unwrap(),
            "{args:?}"
        );
        assert_eq!(
            field(&data, "identity"),
            std::fs::read_to_string(&p).unwrap()
        );
    }
}

// ---------------------------------------------------------------------------
// --encrypt, checked with the real sops
// ---------------------------------------------------------------------------

fn sops_decrypt(env: &Env, sops: &Path, file: &Path) -> Vec<u8> {
    ok(&env.sops(sops, &["decrypt", file.to_str().unwrap()]))
}

#[test]
fn encrypted_ssh_secret_decrypts_with_sops() {
    let Some(sops) = sops() else {
        return;
    };
    let Some(sshd) = TestSshd::start(&["ecdsa", "ed25519"]) else {
        return;
    };
    let env = Env::new();
    let out = env.path("tenants/dev-team/auth.yaml");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let o = run(
        &env,
        &[],
        &[
            "secret",
            "git",
            "dev-team-auth",
            "-n",
            "apps",
            "--url",
            &sshd.url(),
            "--encrypt",
            "--age",
            &env.recipient,
            "--output",
            out.to_str().unwrap(),
        ],
    );
    assert!(ok(&o).is_empty(), "nothing on stdout with --output");
    let err = stderr(&o);
    let deploy = err
        .lines()
        .find_map(|l| l.strip_prefix("deploy key: "))
        .expect("deploy key on stderr")
        .to_string();
    assert!(
        err.contains(&format!(
            "add it as a read-only deploy key to 127.0.0.1:{}/org/repo",
            sshd.port
        )),
        "{err}"
    );
    assert!(!err.contains("not encrypted"), "{err}");

    let enc = std::fs::read_to_string(&out).unwrap();
    assert!(
        enc.contains("encrypted_regex: ^(data|stringData)$"),
        "{enc}"
    );
    assert!(
        enc.contains("name: dev-team-auth") && enc.contains("namespace: apps"),
        "metadata stays readable"
    );
    assert!(
        !enc.contains("PRIVATE KEY")
            && !enc.contains(&deploy[20..60])
            && !enc.contains("127.0.0.1"),
        "{enc}"
    );
    // Encrypted files are meant for Git: 0644 minus the umask, like `kustos encrypt --output`.
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o644 & !umask()
    );

    let plain = sops_decrypt(&env, &sops, &out);
    let data = string_data(&plain);
    let keys: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["identity", "identity.pub", "known_hosts"]);
    assert_eq!(field(&data, "identity.pub").trim_end(), deploy);
    assert_eq!(field(&data, "known_hosts"), sshd.line("ecdsa"));
    // The private key's base64 body never appears in the encrypted file.
    let identity = field(&data, "identity");
    for line in identity.lines().filter(|l| !l.starts_with("-----")) {
        assert!(
            !enc.contains(line),
            "private key text in the encrypted file"
        );
    }
    // kustos decrypts it to the same text as sops.
    let mine = ok(&run(&env, &[], &["decrypt", out.to_str().unwrap()]));
    assert_eq!(mine, plain);
    // And the decrypted key is the deploy key.
    if let Some(keygen) = ssh_keygen() {
        let tmp = tempfile::tempdir().unwrap();
        let f = private_file(tmp.path(), "k", &identity);
        let y = Command::new(keygen)
            .arg("-y")
            .arg("-f")
            .arg(&f)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(y.stdout).unwrap().trim_end(), deploy);
    }
}

#[test]
fn encrypted_http_secret_uses_the_sops_yaml_rule() {
    let Some(sops) = sops() else {
        return;
    };
    let env = Env::new();
    env.write(
        ".sops.yaml",
        format!(
            "creation_rules:\n  - path_regex: tenants/.*\\.yaml$\n    age: {}\n",
            env.recipient
        )
        .as_bytes(),
    );
    let password = "correct-horse-battery-staple";
    let o = run_stdin(
        &env,
        &[],
        &[
            "secret",
            "git",
            "auth",
            "-n",
            "apps",
            "--url",
            "https://git.example.com/org/repo",
            "-u",
            "bot",
            "--password-stdin",
            "--encrypt",
            "--output",
            "tenants/auth.yaml",
        ],
        password.as_bytes(),
    );
    ok(&o);
    let out = env.path("tenants/auth.yaml");
    let enc = std::fs::read_to_string(&out).unwrap();
    assert!(!enc.contains(password) && !enc.contains("bot"), "{enc}");
    assert!(enc.contains(&env.recipient));
    let data = string_data(&sops_decrypt(&env, &sops, &out));
    assert_eq!(field(&data, "password"), password);
    assert_eq!(field(&data, "username"), "bot");

    // Stdout works too (the pseudo path NAME.yaml has no rule here: keys must be given).
    let e = fails(&run(
        &env,
        &[("KUSTOS_GIT_PASSWORD", password)],
        &[
            "secret",
            "git",
            "auth",
            "--url",
            "https://h/r",
            "-u",
            "bot",
            "--encrypt",
        ],
    ));
    assert!(e.contains("no matching creation rules"), "{e}");
    let o = run(
        &env,
        &[("KUSTOS_GIT_PASSWORD", password)],
        &[
            "secret",
            "git",
            "auth",
            "--url",
            "https://h/r",
            "-u",
            "bot",
            "--age",
            &env.recipient,
        ],
    );
    let enc = ok(&o);
    assert!(!String::from_utf8_lossy(&enc).contains(password));
    let p = env.write("stdout.enc.yaml", &enc);
    assert_eq!(
        field(&string_data(&sops_decrypt(&env, &sops, &p)), "password"),
        password
    );

    // No keys at all: nothing is generated or written.
    let bare = Env::new();
    let target = bare.path("auth.yaml");
    let e = fails(&run(
        &bare,
        &[],
        &[
            "secret",
            "git",
            "auth",
            "--url",
            "ssh://git@127.0.0.1:1/r",
            "--encrypt",
            "--output",
            target.to_str().unwrap(),
        ],
    ));
    assert!(
        e.contains("no keys provided") || e.contains("creation rules"),
        "{e}"
    );
    assert!(
        !e.contains("cannot scan"),
        "keys are checked before the network: {e}"
    );
    assert!(!target.exists());
}

#[test]
fn plaintext_output_is_private_and_never_overwritten() {
    let env = Env::new();
    let out = env.path("auth.yaml");
    let args = [
        "secret",
        "git",
        "auth",
        "--url",
        "https://h/r",
        "-u",
        "bot",
        "--output",
        out.to_str().unwrap(),
    ];
    ok(&run(&env, &[("KUSTOS_GIT_PASSWORD", "pw-one")], &args));
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let e = fails(&run(&env, &[("KUSTOS_GIT_PASSWORD", "pw-two")], &args));
    assert!(e.contains("already exists"), "{e}");
    assert!(std::fs::read_to_string(&out).unwrap().contains("pw-one"));
    let mut forced = args.to_vec();
    forced.push("--force");
    ok(&run(&env, &[("KUSTOS_GIT_PASSWORD", "pw-two")], &forced));
    assert!(std::fs::read_to_string(&out).unwrap().contains("pw-two"));
}

// ---------------------------------------------------------------------------
// Cluster keys
// ---------------------------------------------------------------------------

#[test]
fn keygen_age_key_works_with_the_age_cli() {
    let env = Env::new();
    let dir = env.path("keys");
    let o = run(
        &env,
        &[],
        &["keygen", "age", "--output-dir", dir.to_str().unwrap()],
    );
    let secret = ok(&o);
    let text = String::from_utf8(secret.clone()).unwrap();
    assert!(text.starts_with("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: sops-age\n  namespace: flux-system\nstringData:\n  age.agekey: |\n    # created: "), "{text}");
    assert!(text.ends_with("\n\n"));
    let err = stderr(&o);
    let recipient = err
        .lines()
        .find_map(|l| l.strip_prefix("age recipient: "))
        .unwrap()
        .to_string();
    assert!(
        err.contains(&format!("    age: {recipient}"))
            && err.contains("encrypted_regex: ^(data|stringData)$"),
        "{err}"
    );
    assert!(err.contains("secretRef:\n      name: sops-age"), "{err}");

    let key_file = dir.join("age.agekey");
    let content = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(field(&string_data(&secret), "age.agekey"), content);
    assert_eq!(
        content.lines().nth(1).unwrap(),
        format!("# public key: {recipient}")
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("age.agekey.pub")).unwrap(),
        format!("{recipient}\n")
    );

    if let Some(age) = age_cli() {
        let msg = env.write("msg.txt", b"hello tenant\n");
        let enc = env.path("msg.age");
        let out = Command::new(&age)
            .args(["-r", &recipient, "-o"])
            .arg(&enc)
            .arg(&msg)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let out = Command::new(&age)
            .args(["-d", "-i"])
            .arg(&key_file)
            .arg(&enc)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(out.stdout, b"hello tenant\n");
    }

    // Never overwritten without --force; --force replaces it (and keeps it 0600).
    let e = fails(&run(
        &env,
        &[],
        &["keygen", "age", "--output-dir", dir.to_str().unwrap()],
    ));
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), content);
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = run(
        &env,
        &[],
        &[
            "keygen",
            "age",
            "--output-dir",
            dir.to_str().unwrap(),
            "--force",
            "--name",
            "tenant-age",
            "-n",
            "apps",
        ],
    );
    let text = String::from_utf8(ok(&o)).unwrap();
    assert!(text.contains("  name: tenant-age\n  namespace: apps\n"));
    assert_ne!(std::fs::read_to_string(&key_file).unwrap(), content);
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Without --output-dir only stdout is written.
    let before: Vec<_> = std::fs::read_dir(env.dir.path()).unwrap().collect();
    ok(&run(&env, &[], &["keygen", "age"]));
    assert_eq!(
        std::fs::read_dir(env.dir.path()).unwrap().count(),
        before.len()
    );
}

/// A throwaway GnuPG home; its agent is stopped on drop.
struct GpgHome(tempfile::TempDir);

impl GpgHome {
    fn new() -> Option<GpgHome> {
        require("gpg", which("gpg"))?;
        let dir = tempfile::Builder::new()
            .prefix("kgpg")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        Some(GpgHome(dir))
    }

    fn gpg(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_with_stdin(
            Command::new("gpg")
                .env("GNUPGHOME", self.0.path())
                .args(["--batch", "--no-tty"])
                .args(args),
            stdin,
        )
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", self.0.path())
            .args(["--kill", "gpg-agent"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn keygen_pgp_roundtrip(extra: &[&str], algo_in_listing: &str) {
    let Some(home) = GpgHome::new() else {
        return;
    };
    let env = Env::new();
    let dir = env.path("keys");
    let mut args = vec!["keygen", "pgp", "--output-dir", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let o = run(&env, &[], &args);
    let secret = ok(&o);
    let text = String::from_utf8(secret.clone()).unwrap();
    assert!(text.contains("  name: sops-gpg\n  namespace: flux-system\nstringData:\n  sops.asc: |\n    -----BEGIN PGP PRIVATE KEY BLOCK-----\n"), "{text}");
    let err = stderr(&o);
    let fpr = err
        .lines()
        .find_map(|l| l.strip_prefix("PGP fingerprint: "))
        .unwrap()
        .to_string();
    assert_eq!(fpr.len(), 40);
    assert!(err.contains(&format!("    pgp: {fpr}")), "{err}");
    let asc = std::fs::read_to_string(dir.join("sops.asc")).unwrap();
    assert_eq!(field(&string_data(&secret), "sops.asc"), asc);
    assert_eq!(
        std::fs::metadata(dir.join("sops.asc"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(std::fs::read_to_string(dir.join("sops.asc.pub"))
        .unwrap()
        .starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----"));

    // GnuPG imports the secret key (no passphrase) ...
    let out = home.gpg(&["--import"], asc.as_bytes());
    assert!(out.status.success(), "gpg --import: {}", stderr(&out));
    let out = home.gpg(&["--with-colons", "--list-secret-keys", &fpr], b"");
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && listing.contains(&fpr), "{listing}");
    assert!(
        String::from_utf8_lossy(&home.gpg(&["--list-keys", &fpr], b"").stdout)
            .contains(algo_in_listing),
        "{listing}"
    );

    // ... and decrypts what kustos encrypted to the fingerprint.
    let plain = env.write(
        "s.yaml",
        b"apiVersion: v1\nkind: Secret\nstringData:\n  token: t0ps3cr3t\n",
    );
    let o = run(
        &env,
        &[("KUSTOS_KEYS_DIR", dir.to_str().unwrap())],
        &[
            "encrypt",
            "--pgp",
            &fpr,
            "--keys-dir",
            dir.to_str().unwrap(),
            plain.to_str().unwrap(),
        ],
    );
    let enc = String::from_utf8(ok(&o)).unwrap();
    assert!(!enc.contains("t0ps3cr3t"));
    let docs = formats::load_plain(Format::Yaml, enc.as_bytes()).unwrap();
    let pgp = docs[0]
        .get("sops")
        .and_then(|s| s.as_map())
        .and_then(|s| s.get("pgp"))
        .expect("pgp stanza");
    let kustos::sops::value::Value::Seq(items) = pgp else {
        panic!("pgp is not a list")
    };
    let msg = items[0]
        .as_map()
        .unwrap()
        .get("enc")
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let out = home.gpg(&["--decrypt"], msg.as_bytes());
    assert!(out.status.success(), "gpg --decrypt: {}", stderr(&out));
    assert_eq!(out.stdout.len(), 32, "the sops data key");
    // The real sops decrypts the whole file through that GnuPG home.
    if let Some(sops) = sops() {
        let p = env.write("s.enc.yaml", enc.as_bytes());
        let mut c = env.cmd(&sops);
        c.env("GNUPGHOME", home.0.path())
            .args(["decrypt", p.to_str().unwrap()]);
        let out = c.output().unwrap();
        assert!(out.status.success(), "sops decrypt: {}", stderr(&out));
        assert!(String::from_utf8_lossy(&out.stdout).contains("token: t0ps3cr3t"));
    }
}

#[test]
fn keygen_pgp_cv25519_key_works_with_gnupg() {
    keygen_pgp_roundtrip(&[], "ed25519");
}

#[test]
fn keygen_pgp_rsa_key_works_with_gnupg() {
    keygen_pgp_roundtrip(
        &[
            "--rsa-bits",
            "3072",
            "--key-name",
            "cluster0",
            "--email",
            "ops@example.com",
        ],
        "rsa3072",
    );
}
