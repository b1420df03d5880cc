//! Every place sops finds age identities, and SSH recipients, checked
//! against the real sops.

use crate::common::*;

fn secret(env: &Env) -> std::path::PathBuf {
    env.write("s.yaml", b"password: p4ss\n")
}

#[test]
fn identity_sources() {
    let env = Env::new();
    let f = secret(&env);
    let enc = ok(&env.kustos(&["encrypt", "--age", &env.recipient, f.to_str().unwrap()]));
    let p = env.write("s.enc.yaml", &enc);
    let p = p.to_str().unwrap();
    let key_text = std::fs::read_to_string(&env.key_file).unwrap();
    let expect = b"password: p4ss\n".to_vec();
    let run = |vars: &[(&str, &str)], args: &[&str]| {
        let mut c = env.cmd(&kustos_bin());
        c.env_remove("SOPS_AGE_KEY_FILE");
        for (k, v) in vars {
            c.env(k, v);
        }
        c.args(args).output().unwrap()
    };
    assert_eq!(
        ok(&run(&[("SOPS_AGE_KEY", &key_text)], &["decrypt", p])),
        expect
    );
    let cmd = format!("cat {}", env.key_file.display());
    assert_eq!(
        ok(&run(&[("SOPS_AGE_KEY_CMD", &cmd)], &["decrypt", p])),
        expect
    );
    // $XDG_CONFIG_HOME/sops/age/keys.txt
    env.write("home/.config/sops/age/keys.txt", key_text.as_bytes());
    assert_eq!(ok(&run(&[], &["decrypt", p])), expect);
    std::fs::remove_file(env.path("home/.config/sops/age/keys.txt")).unwrap();
    // --keys-dir with Flux-style *.agekey names, and KUSTOS_KEYS_DIR.
    env.write("keys/age.agekey", key_text.as_bytes());
    let kd = env.path("keys");
    assert_eq!(
        ok(&run(
            &[],
            &["decrypt", "--keys-dir", kd.to_str().unwrap(), p]
        )),
        expect
    );
    assert_eq!(
        ok(&run(
            &[("KUSTOS_KEYS_DIR", kd.to_str().unwrap())],
            &["decrypt", p]
        )),
        expect
    );
    // Nothing anywhere: exit 128 and the places that were searched.
    let o = run(&[], &["decrypt", p]);
    assert_eq!(o.status.code(), Some(128));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no age identity found"), "{err}");
}

#[test]
fn ssh_recipients_interop_with_sops() {
    let Some(keygen) = require("ssh-keygen", which("ssh-keygen")) else {
        return;
    };
    let Some(sops) = sops() else { return };
    let env = Env::new();
    for (kind, bits) in [("ed25519", None), ("rsa", Some("3072"))] {
        let key = env.path(&format!("id_{kind}"));
        let mut c = std::process::Command::new(&keygen);
        c.args(["-q", "-t", kind, "-N", "", "-f", key.to_str().unwrap()]);
        if let Some(b) = bits {
            c.args(["-b", b]);
        }
        assert!(c.status().unwrap().success());
        let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let recipient = public
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let f = secret(&env);
        let fp = f.to_str().unwrap();
        let ssh_env = |c: &mut std::process::Command| {
            c.env_remove("SOPS_AGE_KEY_FILE")
                .env("SOPS_AGE_SSH_PRIVATE_KEY_FILE", &key);
        };
        // kustos encrypts to the SSH key, sops decrypts with it.
        let enc = ok(&env.kustos(&["encrypt", "--age", &recipient, fp]));
        let kp = env.write("k.yaml", &enc);
        let mut c = env.cmd(&sops);
        ssh_env(&mut c);
        assert_eq!(
            ok(&c.args(["decrypt", kp.to_str().unwrap()]).output().unwrap()),
            b"password: p4ss\n",
            "{kind}"
        );
        // sops encrypts, kustos decrypts.
        let enc = ok(&env.sops(&sops, &["encrypt", "--age", &recipient, fp]));
        let sp = env.write("s.yaml", &enc);
        let mut c = env.cmd(&kustos_bin());
        ssh_env(&mut c);
        assert_eq!(
            ok(&c.args(["decrypt", sp.to_str().unwrap()]).output().unwrap()),
            b"password: p4ss\n",
            "{kind}"
        );
        // ~/.ssh/id_<kind> is found without any variable.
        std::fs::create_dir_all(env.path("home/.ssh")).unwrap();
        std::fs::copy(&key, env.path(&format!("home/.ssh/id_{kind}"))).unwrap();
        let mut c = env.cmd(&kustos_bin());
        c.env_remove("SOPS_AGE_KEY_FILE");
        assert_eq!(
            ok(&c.args(["decrypt", sp.to_str().unwrap()]).output().unwrap()),
            b"password: p4ss\n",
            "{kind}"
        );
        std::fs::remove_file(env.path(&format!("home/.ssh/id_{kind}"))).unwrap();
    }
}
