//! The container image builds from what it copies: every input `cargo
//! build` reads (manifest, lock file, the repository's cargo configuration,
//! build script, the targets' sources and any file they include) is in a
//! COPY line of deploy/Dockerfile's build stage, and everything copied is
//! part of the crate as `cargo package --list` sees it.

use std::collections::BTreeSet;
use std::path::{Component, Path};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cargo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The first component of a path inside the repository.
fn top(path: &Path) -> String {
    let rel = path.strip_prefix(root()).unwrap_or(path);
    match rel.components().next() {
        Some(Component::Normal(c)) => c.to_string_lossy().into_owned(),
        other => panic!(
            "{} is not inside the repository ({other:?})",
            path.display()
        ),
    }
}

/// Paths named by `include!`, `include_str!` and `include_bytes!` in the
/// sources under `dir`, resolved as the compiler does (relative to the file).
fn included_files(dir: &Path, out: &mut BTreeSet<String>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            included_files(&p, out);
            continue;
        }
        if p.extension().is_none_or(|x| x != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        for mac in ["include!(\"", "include_str!(\"", "include_bytes!(\""] {
            for (at, _) in text.match_indices(mac) {
                let rest = &text[at + mac.len()..];
                let lit = &rest[..rest.find('"').unwrap()];
                out.insert(top(&p.parent().unwrap().join(lit)));
            }
        }
    }
}

/// The source paths of the COPY lines of the Dockerfile's stages that
/// build from the context (not `--from=` another stage).
fn dockerfile_copies() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    let mut copied = BTreeSet::new();
    for line in text.lines().map(str::trim) {
        let Some(args) = line.strip_prefix("COPY ") else {
            continue;
        };
        let words: Vec<&str> = args.split_whitespace().collect();
        if words.iter().any(|w| w.starts_with("--from=")) {
            continue;
        }
        let paths: Vec<&str> = words.into_iter().filter(|w| !w.starts_with("--")).collect();
        for src in &paths[..paths.len() - 1] {
            copied.insert(src.trim_end_matches('/').to_string());
        }
    }
    copied
}

#[test]
fn dockerfile_copies_every_build_input() {
    // What the crate is made of.
    let packaged: BTreeSet<String> = cargo(&["package", "--list", "--allow-dirty", "--offline"])
        .lines()
        .map(|l| top(Path::new(l)))
        .collect();

    // What a build of the crate's library and binaries reads.
    let meta: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--no-deps",
        "--format-version",
        "1",
        "--offline",
    ]))
    .unwrap();
    let mut needed: BTreeSet<String> = ["Cargo.toml", "Cargo.lock"].map(String::from).into();
    // Cargo reads its configuration (environment for build scripts, flags)
    // from .cargo/ next to the manifest.
    for config in [".cargo/config.toml", ".cargo/config"] {
        if root().join(config).exists() {
            needed.insert(".cargo".into());
        }
    }
    for target in meta["packages"][0]["targets"].as_array().unwrap() {
        let kinds: Vec<&str> = target["kind"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|k| k.as_str())
            .collect();
        if kinds
            .iter()
            .any(|k| matches!(*k, "lib" | "rlib" | "bin" | "custom-build" | "proc-macro"))
        {
            let src = Path::new(target["src_path"].as_str().unwrap());
            needed.insert(top(src));
        }
    }
    included_files(&root().join("src"), &mut needed);

    let copied = dockerfile_copies();
    for n in &needed {
        assert!(
            packaged.contains(n),
            "{n} is built from but not packaged: {packaged:?}"
        );
        assert!(
            copied.contains(n),
            "deploy/Dockerfile does not copy {n}, which the build needs (copies {copied:?})"
        );
    }
    for c in &copied {
        assert!(
            packaged.contains(c),
            "deploy/Dockerfile copies {c}, which is not part of the crate"
        );
    }
}
