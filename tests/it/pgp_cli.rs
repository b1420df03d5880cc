//! OpenPGP through the CLI, against the real sops + GnuPG: sops files made
//! for RSA-3072 and Curve25519 keys decrypt with kustos from `*.asc` files
//! alone (empty GNUPGHOME), and kustos files decrypt with sops/gpg.

use crate::common::*;

#[test]
fn pgp_both_ways_rsa_and_curve25519() {
    let Some(_) = require("gpg", which("gpg")) else {
        return;
    };
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let f = env.write("s.yaml", b"password: s3cret\nnested:\n    token: t0k\n");
    let fp_arg = f.to_str().unwrap();
    for (name, algo) in [("rsa", "rsa3072"), ("cv", "future-default")] {
        let (home, fpr, secret) = gpg_key(env.dir.path(), name, algo);
        let keys = env.path(&format!("keys-{name}"));
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::write(keys.join("sops.asc"), &secret).unwrap();
        let empty_home = env.path(&format!("empty-gnupg-{name}"));
        std::fs::create_dir_all(&empty_home).unwrap();

        // sops (through gpg) encrypts; kustos decrypts from sops.asc only.
        let enc = ok(&env
            .cmd(&sops)
            .env("GNUPGHOME", &home)
            .args(["encrypt", "--pgp", &fpr, fp_arg])
            .output()
            .unwrap());
        let p = env.write(&format!("sops-{name}.yaml"), &enc);
        let o = env
            .cmd(&kustos_bin())
            .env("GNUPGHOME", &empty_home)
            .args([
                "decrypt",
                "--keys-dir",
                keys.to_str().unwrap(),
                p.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert_eq!(
            ok(&o),
            std::fs::read(&f).unwrap(),
            "{name}: sops file via sops.asc"
        );

        // kustos encrypts (certificate from the keys folder); sops + gpg decrypt.
        let o = env
            .cmd(&kustos_bin())
            .env("GNUPGHOME", &empty_home)
            .args([
                "encrypt",
                "--keys-dir",
                keys.to_str().unwrap(),
                "--pgp",
                &fpr,
                fp_arg,
            ])
            .output()
            .unwrap();
        let enc = ok(&o);
        let text = String::from_utf8_lossy(&enc);
        assert!(
            text.contains("-----BEGIN PGP MESSAGE-----") && text.contains(&format!("fp: {fpr}")),
            "{text}"
        );
        let p = env.write(&format!("kustos-{name}.yaml"), &enc);
        let o = env
            .cmd(&sops)
            .env("GNUPGHOME", &home)
            .args(["decrypt", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            ok(&o),
            std::fs::read(&f).unwrap(),
            "{name}: kustos file via sops/gpg"
        );

        // Without the key file kustos falls back to gpg with GNUPGHOME, like sops.
        let o = env
            .cmd(&kustos_bin())
            .env("GNUPGHOME", &home)
            .args(["decrypt", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(ok(&o), std::fs::read(&f).unwrap(), "{name}: gpg fallback");

        // Nowhere to find the key: exit 128, naming the fingerprint.
        let o = env
            .cmd(&kustos_bin())
            .env("GNUPGHOME", &empty_home)
            .args(["decrypt", p.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(128),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(String::from_utf8_lossy(&o.stderr).contains("pgp"));
        stop_agent(&home);
    }
}

#[test]
fn mixed_age_and_pgp_recipients() {
    let Some(_) = require("gpg", which("gpg")) else {
        return;
    };
    let Some(sops) = sops() else { return };
    let env = Env::new();
    let (home, fpr, secret) = gpg_key(env.dir.path(), "mix", "future-default");
    let keys = env.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join("sops.asc"), &secret).unwrap();
    let f = env.write("s.yaml", b"a: 1\n");
    let enc = ok(&env
        .cmd(&kustos_bin())
        .args([
            "encrypt",
            "--keys-dir",
            keys.to_str().unwrap(),
            "--pgp",
            &fpr,
            "--age",
            &env.recipient,
            f.to_str().unwrap(),
        ])
        .output()
        .unwrap());
    let p = env.write("m.yaml", &enc);
    // age alone (no GnuPG home) and PGP alone (no age key) both work with sops.
    let o = env
        .cmd(&sops)
        .args(["decrypt", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(ok(&o), b"a: 1\n");
    let o = env
        .cmd(&sops)
        .env_remove("SOPS_AGE_KEY_FILE")
        .env("GNUPGHOME", &home)
        .args(["decrypt", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(ok(&o), b"a: 1\n");
    // --decryption-order pgp,age makes kustos use the PGP key first.
    let o = env
        .cmd(&kustos_bin())
        .env_remove("SOPS_AGE_KEY_FILE")
        .args([
            "decrypt",
            "--decryption-order",
            "pgp,age",
            "--keys-dir",
            keys.to_str().unwrap(),
            p.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(ok(&o), b"a: 1\n");
    stop_agent(&home);
}
