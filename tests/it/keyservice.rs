//! sops' key service protocol both ways with the real sops 3.11: sops as a
//! client of `kustos keyservice`, and kustos as a client of
//! `sops keyservice`, for age, OpenPGP and AWS KMS keys (moto's KMS), with
//! no key or AWS credential on the client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const PLAIN: &[u8] = b"password: p4ss\n";

/// A key service process, stopped on drop.
struct Service {
    child: Child,
    socket: PathBuf,
}

impl Service {
    /// Starts `cmd` (a key service on `socket`) and waits for the socket.
    fn start(mut cmd: Command, socket: &Path) -> Service {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut svc = Service {
            child,
            socket: socket.to_path_buf(),
        };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(socket).is_err() {
            if let Ok(Some(status)) = svc.child.try_wait() {
                panic!("the key service exited: {status}");
            }
            assert!(start.elapsed() < Duration::from_secs(20), "no socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        svc
    }

    fn uri(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client command with no keys of its own: no age key file, an empty
/// GnuPG home.
fn keyless(env: &Env, program: &Path) -> Command {
    let mut c = env.cmd(program);
    let empty = env.path("empty-gnupg");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::set_permissions(&empty, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    c.env_remove("SOPS_AGE_KEY_FILE").env("GNUPGHOME", empty);
    c
}

/// `program ARGS… --enable-local-keyservice=false --keyservice URI FILE`
/// with no keys of its own: only the service can wrap or unwrap.
fn only_through(
    env: &Env,
    program: &Path,
    uri: &str,
    args: &[&str],
    file: &Path,
) -> std::process::Output {
    keyless(env, program)
        .args(args)
        .args(["--enable-local-keyservice=false", "--keyservice", uri])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn real_sops_decrypts_and_encrypts_through_kustos_keyservice() {
    let Some(sops) = sops() else { return };
    let Some(_) = require("gpg", which("gpg")) else {
        return;
    };
    let env = Env::new();
    let plain = env.write("s.yaml", PLAIN);
    let (gpg_home, fpr, secret) = gpg_key(env.dir.path(), "ks", "rsa3072");
    stop_agent(&gpg_home);
    env.write("keys/sops.asc", &secret);
    let socket = env.path("kustos.sock");
    let mut cmd = env.cmd(&kustos_bin());
    cmd.args(["keyservice", "--network", "unix", "--address"])
        .arg(&socket)
        .arg("--keys-dir")
        .arg(env.path("keys"));
    let svc = Service::start(cmd, &socket);

    // Files sops encrypted for age and PGP, decrypted by sops with only the
    // kustos key service holding the keys.
    let by_age = ok(&env.sops(
        &sops,
        &["encrypt", "--age", &env.recipient, plain.to_str().unwrap()],
    ));
    let age_file = env.write("age.enc.yaml", &by_age);
    let out = only_through(&env, &sops, &svc.uri(), &["decrypt"], &age_file);
    assert_eq!(ok(&out), PLAIN);

    // sops wraps for the PGP key through the service (no local GnuPG key),
    // and decrypts through it again.
    let out = only_through(&env, &sops, &svc.uri(), &["encrypt", "--pgp", &fpr], &plain);
    let pgp_file = env.write("pgp.enc.yaml", &ok(&out));
    let out = only_through(&env, &sops, &svc.uri(), &["decrypt"], &pgp_file);
    assert_eq!(ok(&out), PLAIN);
    // And kustos reads it with the key itself.
    let out = env.kustos(&[
        "decrypt",
        "--keys-dir",
        env.path("keys").to_str().unwrap(),
        pgp_file.to_str().unwrap(),
    ]);
    assert_eq!(ok(&out), PLAIN);
}

#[test]
fn kustos_decrypts_and_encrypts_through_sops_keyservice() {
    let Some(sops) = sops() else { return };
    let Some(_) = require("gpg", which("gpg")) else {
        return;
    };
    let env = Env::new();
    let plain = env.write("s.yaml", PLAIN);
    let (gpg_home, fpr, _) = gpg_key(env.dir.path(), "ks", "future-default");
    let socket = env.path("sops.sock");
    let mut cmd = env.cmd(&sops);
    cmd.env("GNUPGHOME", &gpg_home)
        .args(["keyservice", "--network", "unix", "--address"])
        .arg(&socket);
    let svc = Service::start(cmd, &socket);

    let by_age = ok(&env.kustos(&["encrypt", "--age", &env.recipient, plain.to_str().unwrap()]));
    let age_file = env.write("age.enc.yaml", &by_age);
    let out = only_through(&env, &kustos_bin(), &svc.uri(), &["decrypt"], &age_file);
    assert_eq!(ok(&out), PLAIN);

    // kustos has neither the certificate nor the key: sops' service wraps
    // and unwraps with its GnuPG.
    let out = only_through(
        &env,
        &kustos_bin(),
        &svc.uri(),
        &["encrypt", "--pgp", &fpr],
        &plain,
    );
    let pgp_file = env.write("pgp.enc.yaml", &ok(&out));
    let out = keyless(&env, &kustos_bin())
        .args(["decrypt", "--keyservice", &svc.uri()])
        .arg(&pgp_file)
        .output()
        .unwrap();
    assert_eq!(
        ok(&out),
        PLAIN,
        "the local keys fail first, then the service answers"
    );
    // SOPS_KEYSERVICE works as the flag does.
    let out = keyless(&env, &kustos_bin())
        .env("SOPS_KEYSERVICE", svc.uri())
        .env("SOPS_ENABLE_LOCAL_KEYSERVICE", "false")
        .arg("decrypt")
        .arg(&pgp_file)
        .output()
        .unwrap();
    assert_eq!(ok(&out), PLAIN);
    drop(svc);
    stop_agent(&gpg_home);
}

#[test]
fn aws_kms_keys_go_through_key_services_both_ways() {
    let (Some(sops), Some(moto)) = (sops(), moto()) else {
        return;
    };
    let env = Env::new();
    let plain = env.write("s.yaml", PLAIN);
    let (arn, _) = moto.create_key("us-east-1");
    let aws = moto.aws_env(&env.path("home"));
    // Only the service has AWS credentials and moto's address; clients
    // keep Env's closed endpoint.
    for (name, server) in [("kustos", kustos_bin()), ("sops", sops.clone())] {
        let socket = env.path(&format!("{name}-kms.sock"));
        let mut cmd = env.cmd(&server);
        cmd.envs(aws.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .args(["keyservice", "--network", "unix", "--address"])
            .arg(&socket);
        let svc = Service::start(cmd, &socket);
        let through = |program: &Path, args: &[&str], file: &Path| {
            only_through(&env, program, &svc.uri(), args, file)
        };
        for writer in [kustos_bin(), sops.clone()] {
            let out = through(&writer, &["encrypt", "--kms", &arn], &plain);
            let file = env.write("kms.enc.yaml", &ok(&out));
            let text = std::fs::read_to_string(&file).unwrap();
            assert!(text.contains(&format!("arn: {arn}")), "{text}");
            for reader in [kustos_bin(), sops.clone()] {
                let out = through(&reader, &["decrypt"], &file);
                assert_eq!(
                    ok(&out),
                    PLAIN,
                    "{name} service, {} wrote, {} read",
                    writer.display(),
                    reader.display()
                );
            }
        }
    }
}

#[test]
fn without_any_key_service_nothing_decrypts() {
    let env = Env::new();
    let plain = env.write("s.yaml", PLAIN);
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, plain.to_str().unwrap()]));
    let f = env.write("s.enc.yaml", &enc);
    let out = env.kustos(&[
        "decrypt",
        "--enable-local-keyservice=false",
        f.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(128));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("local key service is disabled"), "{err}");
    // A service nobody runs is named with the reason.
    let out = env.kustos(&[
        "decrypt",
        "--enable-local-keyservice=false",
        "--keyservice",
        "unix:///nonexistent/kustos.sock",
        f.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(128));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unix:///nonexistent/kustos.sock"), "{err}");
    // A malformed address is a usage error.
    let out = env.kustos(&[
        "decrypt",
        "--keyservice",
        "localhost:5000",
        f.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tcp://HOST:PORT"));
}

#[test]
fn keyservice_refuses_non_loopback_tcp_without_allow_remote() {
    let env = Env::new();
    let out = env.kustos(&["keyservice", "--address", "0.0.0.0:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--allow-remote"), "{err}");
}

#[test]
fn keyservice_over_loopback_tcp() {
    let env = Env::new();
    let plain = env.write("s.yaml", PLAIN);
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, plain.to_str().unwrap()]));
    let f = env.write("s.enc.yaml", &enc);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = env
        .cmd(&kustos_bin())
        .args(["keyservice", "--address", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(20), "not listening");
        std::thread::sleep(Duration::from_millis(20));
    }
    let uri = format!("tcp://127.0.0.1:{port}");
    let out = only_through(&env, &kustos_bin(), &uri, &["decrypt"], &f);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(ok(&out), PLAIN);
}

/// A caller cannot make the service run a program: wrapping for an age
/// plugin recipient would start `age-plugin-NAME`.
#[test]
fn keyservice_never_runs_age_plugins_for_callers() {
    let env = Env::new();
    let plain = env.write("s.yaml", PLAIN);
    let socket = env.path("kustos.sock");
    let mut cmd = env.cmd(&kustos_bin());
    cmd.args(["keyservice", "--network", "unix", "--address"])
        .arg(&socket);
    let svc = Service::start(cmd, &socket);
    let plugin_recipient = "age1kustostest1v9nk2vfnw3a8xunvwa5xc7p5wge8ywrnv4nnyethv9ur26r2wfmnvdfhva6kxvrkw9k8qcmwd5c8gdp50qmhwdt9wvu8yvrndpjsan9dz5";
    let out = only_through(
        &env,
        &kustos_bin(),
        &svc.uri(),
        &["encrypt", "--age", plugin_recipient],
        &plain,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not run age plugins"), "{err}");
}
