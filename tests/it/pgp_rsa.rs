//! RSA session keys through the CLI and the sidecar: sops files the real
//! sops 3.11 made with GnuPG-made RSA-2048/3072/4096 keys decrypt to known
//! answers, and crafted session-key packets (every kind of bad PKCS #1
//! block, bad checksum, unknown cipher, a block for another key) all get
//! one exit code and one message from `decrypt`, and one status and body
//! from `serve`: no panic, nothing to tell them apart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::*;
use sequoia_openpgp as openpgp;

use openpgp::crypto::mpi::{self, Ciphertext, MPI};
use openpgp::packet::pkesk::PKESK3;
use openpgp::packet::PKESK;
use openpgp::parse::Parse;
use openpgp::serialize::Serialize;
use openpgp::types::PublicKeyAlgorithm;
use openpgp::{Cert, Packet, PacketPile};

fn vectors(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/vectors")
        .join(name)
}

fn keys_dir(env: &Env, key: &str) -> PathBuf {
    let dir = env.path("keys");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(vectors(key), dir.join("sops.asc")).unwrap();
    dir
}

#[test]
fn gnupg_made_rsa_keys_known_answers() {
    let want = std::fs::read(vectors("gnupg-rsa.plain.yaml")).unwrap();
    for bits in [2048, 3072, 4096] {
        let env = Env::new();
        let keys = keys_dir(&env, &format!("gnupg-rsa{bits}.TEST-ONLY.asc"));
        let file = vectors(&format!("gnupg-rsa{bits}.enc.yaml"));
        let out = env.kustos(&[
            "decrypt",
            "--keys-dir",
            keys.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        assert_eq!(ok(&out), want, "rsa{bits}");
    }
}

/// The message sops stored in a file, the lines of its `enc` block.
fn stored_message(yaml: &str) -> String {
    let start = yaml.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let end = yaml.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    yaml[start..end]
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `yaml` with its PGP message replaced by `message` (binary), armored and
/// indented as sops stores it.
fn with_message(yaml: &str, message: &[u8]) -> String {
    let mut armored = Vec::new();
    let mut w = openpgp::armor::Writer::new(&mut armored, openpgp::armor::Kind::Message).unwrap();
    w.write_all(message).unwrap();
    w.finalize().unwrap();
    let armored = String::from_utf8(armored).unwrap().replace("\r\n", "\n");
    let start = yaml.find("-----BEGIN PGP MESSAGE-----").unwrap();
    let indent = &yaml[yaml[..start].rfind('\n').unwrap() + 1..start];
    let end = yaml.find("-----END PGP MESSAGE-----").unwrap() + "-----END PGP MESSAGE-----".len();
    let body = armored
        .trim_end()
        .lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{indent}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}{}{}", &yaml[..start - indent.len()], body, &yaml[end..])
}

/// The pieces of the real message needed to forge its session-key packet.
struct Forge {
    yaml: String,
    packets: Vec<Packet>,
    pkesk: PKESK3,
    n: Vec<u8>,
    e: Vec<u8>,
    algo: u8,
    session_key: Vec<u8>,
}

impl Forge {
    fn new() -> Forge {
        let yaml = std::fs::read_to_string(vectors("gnupg-rsa2048.enc.yaml")).unwrap();
        let pile = PacketPile::from_bytes(stored_message(&yaml).as_bytes()).unwrap();
        let packets: Vec<Packet> = pile.into_children().collect();
        let Packet::PKESK(PKESK::V3(pkesk)) = &packets[0] else {
            panic!("not a v3 PKESK first: {:?}", packets[0].tag())
        };
        let cert =
            Cert::from_bytes(&std::fs::read(vectors("gnupg-rsa2048.TEST-ONLY.asc")).unwrap())
                .unwrap();
        let key = cert
            .keys()
            .secret()
            .find(|k| {
                pkesk
                    .recipient()
                    .is_some_and(|r| r.aliases(k.key().key_handle()))
            })
            .unwrap()
            .key()
            .clone();
        let mpi::PublicKey::RSA { e, n } = key.mpis() else {
            panic!("not RSA")
        };
        let (n, e) = (n.value().to_vec(), e.value().to_vec());
        // The test side learns the real session key with Sequoia's own RSA.
        let mut pair = key.into_keypair().unwrap();
        let (algo, sk) = PKESK::V3(pkesk.clone()).decrypt(&mut pair, None).unwrap();
        Forge {
            pkesk: pkesk.clone(),
            yaml,
            packets,
            n,
            e,
            algo: algo.unwrap().into(),
            session_key: sk.to_vec(),
        }
    }

    fn k(&self) -> usize {
        self.n.len()
    }

    /// `00 02 PS 00 M` with a non-zero padding string filling the block.
    fn block(&self, message: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8, 2];
        b.resize(self.k() - message.len() - 1, 0x5a);
        b.push(0);
        b.extend_from_slice(message);
        b
    }

    /// An OpenPGP v3 session-key message: cipher, key, checksum.
    fn session(&self, algo: u8, key: &[u8], checksum_delta: u16) -> Vec<u8> {
        let sum = key
            .iter()
            .map(|&b| u16::from(b))
            .fold(0u16, u16::wrapping_add);
        let mut m = vec![algo];
        m.extend_from_slice(key);
        m.extend_from_slice(&sum.wrapping_add(checksum_delta).to_be_bytes());
        m
    }

    /// The sops file with a session-key packet holding `block^e mod n`.
    fn file_with_block(&self, block: &[u8], n: &[u8], e: &[u8]) -> String {
        use rsa::BigUint;
        let c = BigUint::from_bytes_be(block)
            .modpow(&BigUint::from_bytes_be(e), &BigUint::from_bytes_be(n));
        let esk = Ciphertext::RSA {
            c: MPI::new(&c.to_bytes_be()),
        };
        let pkesk = PKESK3::new(
            self.pkesk.recipient().cloned(),
            PublicKeyAlgorithm::RSAEncryptSign,
            esk,
        )
        .unwrap();
        let mut packets = self.packets.clone();
        packets[0] = Packet::PKESK(PKESK::V3(pkesk));
        let mut message = Vec::new();
        PacketPile::from(packets).serialize(&mut message).unwrap();
        with_message(&self.yaml, &message)
    }
}

/// The control case and every kind of bad session key, by name.
fn cases(f: &Forge) -> (String, Vec<(&'static str, String)>) {
    let (n, e) = (&f.n, &f.e);
    let good = f.session(f.algo, &f.session_key, 0);
    let control = f.file_with_block(&f.block(&good), n, e);
    let k = f.k();
    let mut bad = Vec::new();
    let mut no_separator = vec![0u8, 2];
    no_separator.resize(k, 0x5a);
    bad.push(("no separator", no_separator));
    let mut wrong_type = f.block(&good);
    wrong_type[1] = 1;
    bad.push(("wrong block type", wrong_type));
    bad.push(("empty message", f.block(&[])));
    bad.push(("1-byte message", f.block(&[f.algo])));
    let mut short_padding = vec![0u8, 2, 1, 1, 1, 1, 1, 1, 1, 0];
    short_padding.resize(k - good.len(), 0x5a);
    short_padding.extend_from_slice(&good);
    bad.push(("short padding string", short_padding));
    bad.push((
        "wrong checksum",
        f.block(&f.session(f.algo, &f.session_key, 1)),
    ));
    bad.push(("unknown cipher", f.block(&f.session(99, &f.session_key, 0))));
    let mut bad: Vec<(&str, String)> = bad
        .into_iter()
        .map(|(name, block)| (name, f.file_with_block(&block, n, e)))
        .collect();
    // A well-formed block, encrypted to another RSA-2048 key.
    let other = Cert::from_bytes(
        &std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/pgp-rsa2048-TEST-ONLY.asc"),
        )
        .unwrap(),
    )
    .unwrap();
    let other_key = other.keys().subkeys().next().unwrap().key().clone();
    let mpi::PublicKey::RSA { e: oe, n: on } = other_key.mpis() else {
        panic!("not RSA")
    };
    bad.push((
        "block for another key",
        f.file_with_block(&f.block(&good), on.value(), oe.value()),
    ));
    (control, bad)
}

#[test]
fn every_bad_session_key_gets_one_answer_from_decrypt() {
    let f = Forge::new();
    let (control, bad) = cases(&f);
    let env = Env::new();
    let keys = keys_dir(&env, "gnupg-rsa2048.TEST-ONLY.asc");
    let file = env.path("forged.enc.yaml");
    let run = |doc: &str| {
        std::fs::write(&file, doc).unwrap();
        env.kustos(&[
            "decrypt",
            "--keys-dir",
            keys.to_str().unwrap(),
            file.to_str().unwrap(),
        ])
    };
    let want = std::fs::read(vectors("gnupg-rsa.plain.yaml")).unwrap();
    assert_eq!(ok(&run(&control)), want, "the forging itself works");
    let mut first: Option<(Option<i32>, String)> = None;
    for (name, doc) in &bad {
        let out = run(doc);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        assert!(out.stdout.is_empty(), "{name}");
        let answer = (out.status.code(), stderr);
        assert_ne!(answer.0, Some(0), "{name}");
        assert_ne!(answer.0, Some(101), "{name}: {}", answer.1);
        match &first {
            None => first = Some(answer),
            Some(f) => assert_eq!(&answer, f, "{name} is answered differently"),
        }
    }
    let (code, message) = first.unwrap();
    assert_eq!(code, Some(128), "{message}");
    assert!(
        message.contains("session key could not be decrypted"),
        "{message}"
    );
}

/// `kustos serve` on a free loopback port.
struct Serve {
    child: Child,
    addr: String,
    logs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Serve {
    fn start(keys: &Path) -> Serve {
        let home = keys.parent().unwrap().join("home");
        let mut child = Command::new(kustos_bin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .args(["serve", "--keys-dir"])
            .arg(keys)
            .args(["--listen", "127.0.0.1:0", "--cache-size", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = logs.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
                    if v["msg"] == "listening" {
                        let _ = tx.send(v["address"].as_str().unwrap_or("").to_string());
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("kustos serve did not start")
            });
        Serve { child, addr, logs }
    }

    fn decrypt(&self, body: &[u8]) -> (u16, Vec<u8>) {
        self.request("POST", "/v1/decrypt", body)
    }

    fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
        let mut s = TcpStream::connect(&self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: kustos\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        s.write_all(&req).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let at = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let head = String::from_utf8_lossy(&out[..at]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, out[at..].to_vec())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn every_bad_session_key_gets_one_answer_from_serve() {
    let f = Forge::new();
    let (control, bad) = cases(&f);
    let env = Env::new();
    let keys = keys_dir(&env, "gnupg-rsa2048.TEST-ONLY.asc");
    let srv = Serve::start(&keys);
    let (status, body) = srv.decrypt(control.as_bytes());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let mut first: Option<(u16, Vec<u8>)> = None;
    for (name, doc) in &bad {
        let answer = srv.decrypt(doc.as_bytes());
        assert!(answer.0 >= 400 && answer.0 < 500, "{name}: {}", answer.0);
        match &first {
            None => first = Some(answer),
            Some(f) => assert_eq!(&answer, f, "{name}: {}", String::from_utf8_lossy(&answer.1)),
        }
    }
    // Still up and answering.
    assert_eq!(srv.decrypt(control.as_bytes()).0, 200);
}

/// A key with an RSA-1024 encryption subkey (aws-lc-rs takes 2048 to 8192
/// bits): the armored secret key, the public certificate, the fingerprint.
fn rsa1024_key() -> (Vec<u8>, Vec<u8>, String) {
    use openpgp::cert::prelude::*;
    use openpgp::packet::key::{Key4, SecretParts, SubordinateRole};
    use openpgp::packet::signature::SignatureBuilder;
    use openpgp::packet::Key;
    use openpgp::serialize::SerializeInto;
    use openpgp::types::{KeyFlags, SignatureType};
    let (cert, _) = CertBuilder::new()
        .add_userid("TEST-ONLY rsa1024 <test-only@example.invalid>")
        .set_cipher_suite(CipherSuite::RSA2k)
        .generate()
        .unwrap();
    // The certificate builder only makes standard sizes: bind the two
    // 1024-bit encryption subkeys by hand.
    let mut signer = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let mut packets: Vec<Packet> = Vec::new();
    for flags in [
        KeyFlags::empty().set_transport_encryption(),
        KeyFlags::empty().set_storage_encryption(),
    ] {
        let subkey: Key<SecretParts, SubordinateRole> = Key4::generate_rsa(1024).unwrap().into();
        let binding = subkey
            .bind(
                &mut signer,
                &cert,
                SignatureBuilder::new(SignatureType::SubkeyBinding)
                    .set_key_flags(flags)
                    .unwrap(),
            )
            .unwrap();
        packets.push(subkey.into());
        packets.push(binding.into());
    }
    let cert = cert.insert_packets(packets).unwrap().0;
    let tsk = cert.as_tsk().armored().to_vec().unwrap();
    let public = cert.armored().to_vec().unwrap();
    (tsk, public, cert.fingerprint().to_hex())
}

/// RSA keys aws-lc-rs cannot take are refused with the reason by the
/// sidecar (not ready, the reason in its log) and the plugin, never
/// decrypted with other code there; a person decrypting their own files
/// with the CLI gets them through Sequoia's RSA, with a warning each time
/// (sops' own test key has 1024 bits).
#[test]
fn rsa_keys_of_unsupported_sizes_are_refused() {
    let (tsk, public, fpr) = rsa1024_key();
    let env = Env::new();
    let certs = env.path("certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("pub.asc"), &public).unwrap();
    env.write("s.yaml", b"password: s3cret\n");
    let enc = ok(&env.kustos(&[
        "encrypt",
        "--keys-dir",
        certs.to_str().unwrap(),
        "--pgp",
        &fpr,
        "s.yaml",
    ]));
    env.write("s.enc.yaml", &enc);
    let keys = env.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("sops.asc"), &tsk).unwrap();
    let out = env.kustos(&[
        "decrypt",
        "--keys-dir",
        keys.to_str().unwrap(),
        "s.enc.yaml",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("1024-bit RSA key") && stderr.contains("variable-time"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "password: s3cret\n");

    let srv = Serve::start(&keys);
    let (status, body) = srv.request("GET", "/readyz", b"");
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    let (status, _) = srv.decrypt(&enc);
    assert_ne!(status, 200);
    let logs = srv.logs.lock().unwrap().join("\n");
    assert!(logs.contains("has 1024 bits"), "{logs}");
}
