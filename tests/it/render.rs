//! `kustos render` on a fleet made by the onboarding flow and on
//! kustomize-controller's decryption cases, with the real kubectl kustomize.

use std::path::{Path, PathBuf};

use crate::common::*;
use kustos::formats::{self, Format};
use kustos::sops::value::Map;

fn kubectl() -> Option<PathBuf> {
    require("kubectl (with built-in kustomize)", which("kubectl"))
}

fn docs(b: &[u8]) -> Vec<Map> {
    formats::load_plain(Format::Yaml, b).unwrap()
}

/// Render workspaces left in `tmp` (renders here run with `TMPDIR=tmp`).
fn leftover_workspaces(tmp: &Path) -> usize {
    std::fs::read_dir(tmp)
        .map(|r| {
            r.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().contains("kustos-render-"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn renders_the_onboarded_fleet_like_the_controller() {
    let Some(kubectl) = kubectl() else { return };
    let env = Env::new();
    let repo = env.path("fleet");
    let r = repo.to_str().unwrap();
    ok(&env.kustos(&["init", r, "--age", &env.recipient]));
    ok(&env.kustos_stdin(
        &[
            "tenant",
            "add",
            "dev-team",
            "--repo",
            r,
            "-n",
            "apps",
            "--git-url",
            "https://github.com/org/dev-team",
            "--password-stdin",
        ],
        b"s3cret-token\n",
    ));
    let staging = repo.join("tenants/staging");
    let plain_build = docs(&ok(&env
        .cmd(&kubectl)
        .args(["kustomize", "--load-restrictor", "LoadRestrictionsNone"])
        .arg(&staging)
        .output()
        .unwrap()));
    let rendered = docs(&ok(&env.kustos(&[
        "render",
        staging.to_str().unwrap(),
        "--tenant",
        "apps",
    ])));
    assert_eq!(rendered.len(), plain_build.len());
    for (a, b) in rendered.iter().zip(&plain_build) {
        if a.str_at(&["kind"]) == Some("Secret") {
            assert_eq!(a.str_at(&["stringData", "password"]), Some("s3cret-token"));
            assert!(!a.contains_key("sops"));
        } else {
            assert_eq!(a, b, "non-Secret objects are unchanged");
        }
    }
    // The tenant binding: this fleet's Secret is in "apps", not "other".
    let o = env.kustos(&["render", staging.to_str().unwrap(), "--tenant", "other"]);
    assert!(!o.status.success() && o.stdout.is_empty());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("dev-team-auth") && err.contains("\"apps\""),
        "{err}"
    );
    assert!(!err.contains("s3cret-token"));
    // A tampered source is refused before the build, naming the file.
    let auth = repo.join("tenants/base/dev-team/auth.yaml");
    let orig = std::fs::read_to_string(&auth).unwrap();
    std::fs::write(&auth, orig.replace("name: dev-team-auth", "name: stolen")).unwrap();
    let o = env.kustos(&["render", staging.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("tenants/base/dev-team/auth.yaml")
            && err.contains("MAC mismatch"),
        "{err}"
    );
    std::fs::write(&auth, orig).unwrap();
    // The private workspace is removed, after a render and after a failure.
    let tmp = env.path("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    for dir in [staging.clone(), repo.join("tenants/missing")] {
        let _ = env
            .cmd(&kustos_bin())
            .env("TMPDIR", &tmp)
            .args(["render", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            leftover_workspaces(&tmp),
            0,
            "the private workspace is removed"
        );
    }
}

fn encrypt(env: &Env, name: &str, plain: &[u8], extra: &[&str]) -> Vec<u8> {
    let p = env.write(&format!("plain/{name}"), plain);
    let mut args = vec!["encrypt", "--age", env.recipient.as_str()];
    args.extend_from_slice(extra);
    args.push(p.to_str().unwrap());
    ok(&env.kustos(&args))
}

#[test]
fn controller_decryption_cases() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let app = env.path("repo/app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(env.path("repo/.sops.yaml"), "creation_rules: []\n").unwrap();
    let w = |name: &str, data: &[u8]| std::fs::write(app.join(name), data).unwrap();
    // secretGenerator inputs: an encrypted dotenv and a JSON file.
    w(
        "app.env",
        &encrypt(&env, "app.env", b"API_KEY=env-secret\n", &[]),
    );
    w(
        "config.json",
        &encrypt(&env, "config.json", b"{\"token\": \"json-secret\"}", &[]),
    );
    // A Secret whose data entry holds a whole SOPS document (base64).
    let inner = encrypt(&env, "inner.yaml", b"password: nested-secret\n", &[]);
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&inner);
    w("nested.yaml", format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: nested\n  namespace: apps\ndata:\n  creds.yaml: {b64}\n").as_bytes());
    // A Secret with decryption disabled stays encrypted.
    w("kept.yaml", &encrypt(&env, "kept.yaml", b"apiVersion: v1\nkind: Secret\nmetadata:\n  name: kept\n  namespace: apps\n  annotations:\n    kustomize.toolkit.fluxcd.io/decrypt: Disabled\nstringData:\n  v: stays-encrypted\n", &["--encrypted-regex", "^(data|stringData)$"]));
    w(
        "kustomization.yaml",
        b"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: apps\nresources:\n  - nested.yaml\n  - kept.yaml\nsecretGenerator:\n  - name: generated\n    envs:\n      - app.env\n    files:\n      - config.json\n",
    );
    let out = ok(&env.kustos(&["render", app.to_str().unwrap(), "--tenant", "apps"]));
    let text = String::from_utf8_lossy(&out);
    let objs = docs(&out);
    let generated = objs
        .iter()
        .find(|o| {
            o.str_at(&["metadata", "name"])
                .is_some_and(|n| n.starts_with("generated-"))
        })
        .unwrap();
    let data = |k: &str| {
        let v = generated.str_at(&["data", k]).unwrap();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()
    };
    assert_eq!(data("API_KEY"), "env-secret");
    assert!(data("config.json").contains("json-secret"));
    let nested = objs
        .iter()
        .find(|o| o.str_at(&["metadata", "name"]) == Some("nested"))
        .unwrap();
    let creds = base64::engine::general_purpose::STANDARD
        .decode(nested.str_at(&["data", "creds.yaml"]).unwrap())
        .unwrap();
    assert_eq!(
        String::from_utf8(creds).unwrap(),
        "password: nested-secret\n"
    );
    let kept = objs
        .iter()
        .find(|o| o.str_at(&["metadata", "name"]) == Some("kept"))
        .unwrap();
    assert!(kept
        .str_at(&["stringData", "v"])
        .unwrap()
        .starts_with("ENC["));
    assert!(!text.contains("stays-encrypted"));
    // The sources on disk stay encrypted.
    assert!(
        String::from_utf8_lossy(&std::fs::read(app.join("app.env")).unwrap())
            .contains("sops_mac=ENC[")
    );
}

#[test]
fn nothing_is_read_from_outside_the_root() {
    let Some(_kubectl) = kubectl() else { return };
    let env = Env::new();
    let root = env.path("repo");
    let app = root.join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(root.join(".sops.yaml"), "creation_rules: []\n").unwrap();
    let outside = env.write(
        "outside/secret.yaml",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    );
    std::os::unix::fs::symlink(&outside, app.join("link.yaml")).unwrap();
    std::fs::write(
        app.join("kustomization.yaml"),
        "resources:\n  - link.yaml\n",
    )
    .unwrap();
    let o = env.kustos(&["render", app.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("link.yaml") && err.contains("outside"),
        "{err}"
    );
    std::fs::remove_file(app.join("link.yaml")).unwrap();
    std::fs::write(
        app.join("kustomization.yaml"),
        "resources:\n  - ../../outside/secret.yaml\n",
    )
    .unwrap();
    let o = env.kustos(&["render", app.to_str().unwrap()]);
    assert!(!o.status.success(), "a path out of the root cannot build");
    let _ = Path::new("/");
}
