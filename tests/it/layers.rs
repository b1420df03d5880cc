//! The layering of ARCHITECTURE.md, checked: every `crate::…` path in a
//! module of `src/` names a module of a lower layer (or its own).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Layer of each top-level module, as ARCHITECTURE.md lists them.
const LAYERS: &[(&str, u8)] = &[
    ("error", 0),
    ("platform", 0),
    ("fsutil", 1),
    ("sops", 2),
    ("formats", 3),
    ("keys", 4),
    ("config", 5),
    ("ops", 5),
    ("kustomize", 5),
    ("gitauth", 6),
    ("fleet", 7),
    ("plugin", 7),
    ("render", 7),
    ("serve", 8),
    ("keyservice", 8),
    ("cli", 9),
];

/// What the crate root re-exports, and the module it comes from.
const ROOT_REEXPORTS: &[(&str, &str)] = &[("Error", "error"), ("Result", "error")];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a file's `crate::` paths name, in `use crate::x`,
/// `use crate::{x, y::z}` and inline `crate::x::…` forms.
fn imports(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
        rest = after;
    }
    out.into_iter()
        .map(|n| {
            ROOT_REEXPORTS
                .iter()
                .find(|(item, _)| *item == n)
                .map(|(_, m)| m.to_string())
                .unwrap_or(n)
        })
        .collect()
}

#[test]
fn modules_only_import_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let module = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let own =
            layer(&module).unwrap_or_else(|| panic!("{module} is not in ARCHITECTURE.md's layers"));
        // Comments (doc links included) are not dependencies.
        let text: String = std::fs::read_to_string(&f)
            .unwrap()
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .map(|l| format!("{l}\n"))
            .collect();
        for used in imports(&text) {
            if used == module {
                continue;
            }
            match layer(&used) {
                Some(l) if l < own => {}
                Some(l) => wrong.push(format!(
                    "{}: {module} (layer {own}) uses {used} (layer {l})",
                    rel.display()
                )),
                None => wrong.push(format!("{}: unknown module crate::{used}", rel.display())),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scanner_sees_every_form() {
    let text = "use crate::sops::Tree;\nuse crate::{formats, keys::KeyRing, Error};\nlet x = crate::fsutil::walk(p);";
    let got: Vec<String> = imports(text).into_iter().collect();
    assert_eq!(got, ["error", "formats", "fsutil", "keys", "sops"]);
}
