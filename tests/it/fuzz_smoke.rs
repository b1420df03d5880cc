//! A short fuzz smoke run for CI: every fuzz target's property over the test
//! corpus and deterministic mutations of it (bit flips, truncations,
//! splices, inserted YAML/JSON syntax). The long runs use cargo-fuzz, see
//! fuzz/README.md.

#[path = "../../fuzz/targets.rs"]
mod targets;

use targets::TARGETS;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b":",
    b"- ",
    b"\n",
    b"  ",
    b"#",
    b"\"",
    b"'",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"|",
    b">",
    b"&a",
    b"*a",
    b"!!str",
    b"---",
    b"...",
    b"ENC[AES256_GCM,data:",
    b"sops:",
    b"sops_mac=ENC[",
    b"[sops]",
    b"\r",
    b"\t",
    b"\\u00e9",
    b"\xff",
    b"=",
    b"? ",
    b"~",
    b"null",
    b"1e400",
    b"0x1F",
    b"2024-01-01",
];

fn mutate(rng: &mut Rng, seed: &[u8], all: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(6) {
            0 if !d.is_empty() => {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
            1 if !d.is_empty() => d.truncate(rng.below(d.len())),
            2 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(d.len() + 1);
                d.splice(i..i, t.iter().copied());
            }
            3 if !d.is_empty() => {
                let i = rng.below(d.len());
                let j = (i + rng.below(16)).min(d.len());
                d.drain(i..j);
            }
            4 => {
                let other = &all[rng.below(all.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + rng.below(64)).min(other.len());
                    let i = rng.below(d.len() + 1);
                    d.splice(i..i, other[a..b].iter().copied());
                }
            }
            _ => {
                let i = rng.below(d.len() + 1);
                d.splice(i..i, [b' '; 4]);
            }
        }
    }
    d
}

fn seeds() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for dir in ["testdata/corpus", "testdata/vectors", "fuzz/seeds"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    out.push(std::fs::read(e.path()).unwrap());
                }
            }
        }
    }
    out.push(b"a: ENC[AES256_GCM,data:AA==,iv:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=,tag:AAAAAAAAAAAAAAAAAAAAAA==,type:str]\nsops:\n    lastmodified: \"2025-01-02T03:04:05Z\"\n    mac: x\n    age:\n        - recipient: age1\n          enc: x\n    version: 3.11.0\n".to_vec());
    out.push(b"apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n  - apiVersion: kustos.dev/v1\n    kind: SopsGenerator\n    metadata:\n      name: g\n    files:\n      - ./x.yaml\n".to_vec());
    out
}

#[test]
fn fuzz_smoke() {
    let seeds = seeds();
    let runs: usize = std::env::var("KUSTOS_FUZZ_SMOKE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1500);
    for (name, target) in TARGETS {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        for s in &seeds {
            target(s);
        }
        for i in 0..runs {
            let seed = &seeds[i % seeds.len()];
            let input = mutate(&mut rng, seed, &seeds);
            let res = std::panic::catch_unwind(|| target(&input));
            if res.is_err() {
                panic!("fuzz target {name} failed on input (base64) {}", {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(&input)
                });
            }
        }
    }
}

/// The `serve` seeds reach the code the property is about: each tenant's
/// document decrypts for that tenant, not for the other, and render stops
/// (no kubectl in the fixture) without leaking the plaintext.
#[test]
fn serve_seeds_reach_decryption() {
    let seed = |name: &str| {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/seeds")
            .join(name);
        targets::serve_answer(&std::fs::read(p).unwrap()).expect("a request")
    };
    for (name, canary) in [
        ("serve-decrypt-yaml", 0),
        ("serve-decrypt-json", 1),
        ("serve-decrypt-dotenv", 1),
        ("serve-decrypt-ini", 1),
        ("serve-decrypt-binary", 1),
    ] {
        let (status, body) = seed(name);
        assert_eq!(status, 200, "{name}: {}", String::from_utf8_lossy(&body));
        let c = targets::FUZZ_CANARIES[canary].as_bytes();
        assert!(body.windows(c.len()).any(|w| w == c), "{name}");
    }
    assert_eq!(seed("serve-decrypt-wrong-tenant").0, 422);
    assert_eq!(seed("serve-render").0, 422);
    assert_eq!(seed("serve-render-escape").0, 403);
    assert_eq!(seed("serve-metrics").0, 200);
    assert_eq!(seed("serve-readyz").0, 200);
}

/// The `pgp_message` seeds reach the end of the decrypt: GnuPG-made
/// messages to the TEST-ONLY RSA-2048 and cv25519 keys open, armored or
/// not, and a session key no block holds does not.
#[test]
fn pgp_message_seeds_decrypt() {
    let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for name in ["pgp-message-rsa2048", "pgp-message-cv25519"] {
        let data = std::fs::read(seeds.join(name)).unwrap();
        let pt = targets::pgp_message_unwrap(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(pt.len(), 32, "{name}");
        // The same bytes with the session key's ciphertext changed: refused.
        let mut bad = data.clone();
        bad[40] ^= 0x55;
        assert!(targets::pgp_message_unwrap(&bad).is_err(), "{name}");
    }
}

/// A session key that opens followed by a truncated SEIPD v1 packet made
/// Sequoia's parser panic; kustos refuses it before decrypting.
#[test]
fn truncated_seipd_is_refused_without_a_panic() {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds/regress-pgp-message-truncated-seipd");
    match targets::pgp_message_unwrap(&std::fs::read(p).unwrap()) {
        Err(kustos::keys::UnwrapError::Failed(m)) => assert!(m.contains("truncated"), "{m}"),
        other => panic!("unexpected {:?}", other.map(|_| ())),
    }
}
