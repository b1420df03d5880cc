//! KSOPS' own test corpus (testdata/ksops, from viaduct-ai/kustomize-sops:
//! legacy and KRM cases, each a kustomization with encrypted inputs and the
//! `want.yaml` KSOPS' tests expect from `kustomize build`) through kustos and
//! the real kustomize built into kubectl.
//!
//! Legacy cases run as they are, with kustos installed as the `ksops` exec
//! plugin. kubectl's kustomize cannot run KRM exec functions (it has no
//! `--enable-exec`), so for the KRM cases a stand-in plugin plays the part
//! of kustomize v5's fnplugin: it hands kustos, on stdin, the ResourceList
//! fnplugin builds (the config as the only item, marked local-config, and as
//! functionConfig), and kustomize takes the ResourceList kustos prints, so
//! hash suffixes and merge behaviours are still kustomize's own. Outputs are
//! compared with `want.yaml` as YAML streams (same objects in the same
//! order; map key order aside).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::common::*;
use kustos::formats::{self, Format};
use kustos::sops::value::{Item, Key, Map, Value};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/ksops")
}

fn kubectl() -> Option<PathBuf> {
    require("kubectl (with built-in kustomize)", which("kubectl"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

fn cases(kind: &str) -> Vec<(String, PathBuf)> {
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(corpus().join(kind))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("want.yaml").exists())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    v.sort();
    v
}

/// A canonical text form of a YAML value: maps with sorted keys, no comments.
fn canon(v: &Value) -> String {
    match v {
        Value::Map(m) => {
            let mut items: Vec<String> =
                m.0.iter()
                    .filter_map(|i| match &i.key {
                        Key::Str(k) | Key::Other(k) => Some(format!("{k:?}: {}", canon(&i.value))),
                        Key::Comment(_) => None,
                    })
                    .collect();
            items.sort();
            format!("{{{}}}", items.join(", "))
        }
        Value::Seq(s) => format!(
            "[{}]",
            s.iter()
                .filter(|x| !matches!(x, Value::Comment(_)))
                .map(canon)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Str(t) => format!("{:?}", t.to_str_lossy()),
        Value::Int(i) => i.to_string(),
        Value::Uint(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Time(t) => t.rfc3339(),
        Value::Null => "null".into(),
        Value::Comment(_) => String::new(),
    }
}

fn stream(bytes: &[u8]) -> Vec<String> {
    formats::load_plain(Format::Yaml, bytes)
        .unwrap()
        .into_iter()
        .filter(|d| !d.is_empty())
        .map(|d| canon(&Value::Map(d)))
        .collect()
}

fn get_map<'a>(m: &'a mut Map, key: &str) -> Option<&'a mut Map> {
    m.0.iter_mut()
        .find(|i| matches!(&i.key, Key::Str(k) if k == key))
        .and_then(|i| match &mut i.value {
            Value::Map(m) => Some(m),
            _ => None,
        })
}

/// Removes the KRM function annotation (so kubectl's kustomize runs the
/// generator as an exec plugin) and returns (apiVersion, config).
fn strip_function_annotation(generator: &Path) -> (String, Map) {
    let docs = formats::load_plain(Format::Yaml, &std::fs::read(generator).unwrap()).unwrap();
    let mut cfg = docs.into_iter().next().unwrap();
    let api = cfg
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap()
        .to_string();
    let meta = get_map(&mut cfg, "metadata").unwrap();
    let ann = get_map(meta, "annotations").unwrap();
    ann.0
        .retain(|i| !matches!(&i.key, Key::Str(k) if k == "config.kubernetes.io/function"));
    if ann.is_empty() {
        meta.0
            .retain(|i| !matches!(&i.key, Key::Str(k) if k == "annotations"));
    }
    (api, cfg)
}

/// The ResourceList kustomize v5's fnplugin gives a generator function.
fn fnplugin_input(cfg: &Map) -> Vec<u8> {
    let mut marked = cfg.clone();
    let meta = get_map(&mut marked, "metadata").unwrap();
    if get_map(meta, "annotations").is_none() {
        meta.push("annotations", Value::Map(Map::new()));
    }
    get_map(meta, "annotations")
        .unwrap()
        .push("config.kubernetes.io/local-config", Value::str("true"));
    let mut rl = Map::new();
    rl.push("apiVersion", Value::str("config.kubernetes.io/v1"));
    rl.push("kind", Value::str("ResourceList"));
    rl.push("items", Value::Seq(vec![Value::Map(marked.clone())]));
    rl.0.push(Item::new("functionConfig", Value::Map(marked)));
    formats::yaml::emit_plain(&[rl], 2)
}

#[test]
fn ksops_corpus_builds_what_ksops_builds() {
    let Some(kubectl) = kubectl() else { return };
    let env = Env::new();
    let keys = env.path("keys");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::copy(corpus().join("key.asc"), keys.join("key.asc")).unwrap();
    // The key is read natively from KUSTOS_KEYS_DIR; no GnuPG involved.
    let empty_home = env.path("empty-gnupg");
    std::fs::create_dir_all(&empty_home).unwrap();
    let build = |dir: &Path, plugin_home: &Path| {
        env.cmd(&kubectl)
            .env("KUSTOMIZE_PLUGIN_HOME", plugin_home)
            .env("KUSTOS_KEYS_DIR", &keys)
            .env("GNUPGHOME", &empty_home)
            .args(["kustomize", "--enable-alpha-plugins"])
            .arg(dir)
            .output()
            .unwrap()
    };
    let check = |label: &str, dir: &Path, out: &std::process::Output| {
        let got = ok(out);
        let want = std::fs::read(dir.join("want.yaml")).unwrap();
        assert_eq!(
            stream(&got),
            stream(&want),
            "{label}: kustomize printed\n{}",
            String::from_utf8_lossy(&got)
        );
    };

    let home = env.path("plugins");
    ok(&env.kustos(&["plugin", "install", "--plugin-home", home.to_str().unwrap()]));
    let legacy = cases("legacy");
    for (name, src) in &legacy {
        let dir = env.path(&format!("legacy/{name}"));
        copy_dir(src, &dir);
        check(&format!("legacy/{name}"), &dir, &build(&dir, &home));
    }

    let krm = cases("krm");
    for (name, src) in &krm {
        let dir = env.path(&format!("krm/{name}"));
        copy_dir(src, &dir);
        let generator = dir.join("generate-resources.yaml");
        let (api, cfg) = strip_function_annotation(&generator);
        std::fs::write(
            &generator,
            formats::yaml::emit_plain(std::slice::from_ref(&cfg), 2),
        )
        .unwrap();
        let input = env.write(&format!("krm-input/{name}.yaml"), &fnplugin_input(&cfg));
        let home = env.path(&format!("krm-plugins/{name}"));
        let plugin = home.join(&api).join("ksops/ksops");
        std::fs::create_dir_all(plugin.parent().unwrap()).unwrap();
        std::fs::write(
            &plugin,
            format!(
                "#!/bin/sh\n# Stands in for kustomize v5's fnplugin: kustos as a KRM function.\nexec '{}' < '{}'\n",
                kustos_bin().display(),
                input.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        check(&format!("krm/{name}"), &dir, &build(&dir, &home));
    }
    eprintln!(
        "KSOPS corpus: {} of {} legacy and {} of {} KRM cases build what KSOPS' tests want",
        legacy.len(),
        legacy.len(),
        krm.len(),
        krm.len()
    );
    assert_eq!((legacy.len(), krm.len()), (9, 9), "the corpus as copied");
}
