//! The files a `kustomize build` of one folder reads, found before the build
//! runs, with every path confined to the render root.
//!
//! kustomize reads paths from many fields (`resources`, `components`,
//! patches, generator inputs, plugin configs, `crds`, `openapi`, …), and its
//! own load restrictor guards only some of them. Here every entry is
//! resolved the way kustomize resolves it in the workspace (joined onto the
//! folder of the kustomization that names it, then cleaned lexically, as Go's
//! `filepath.Join` does) and must stay inside the root, also after
//! following symlinks. Absolute, remote, missing and escaping paths are
//! refused with the file and field named, and Helm charts and exec/KRM
//! plugins are refused outright. Only the files found here are copied into
//! the workspace, so files nobody references (other tenants' folders,
//! broken links) play no part in a render.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::{host_like, looks_remote, KUSTOMIZATION_FILES};
use crate::error::escape_for_terminal;
use crate::formats::{self, Format};
use crate::sops::value::{Map, Value};

/// The most files one build may read.
pub const MAX_FILES: usize = 20_000;

/// How deep kustomizations may include each other.
const MAX_DEPTH: usize = 64;

/// How the build uses a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Use {
    /// A kustomization file.
    Kustomization,
    /// A resource stream (`resources`, `bases`).
    Resource,
    /// A patch file named by the kustomization (decrypted before the build,
    /// like kustomize-controller does).
    Patch,
    /// A `secretGenerator` input, decrypted before the build in this format.
    SecretInput(Format),
    /// Anything else the build reads as it is (ConfigMap inputs, CRDs,
    /// OpenAPI schemas, replacement and plugin configs).
    Input,
}

/// Where a path entry was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct At {
    /// The kustomization or plugin config, relative to the root.
    pub file: String,
    /// The field, e.g. `resources[2]` or `secretGenerator[0].files[1]`.
    pub field: String,
    /// The path as the file gives it (the tenant's own text, never the
    /// content of what it names).
    pub entry: Option<String>,
}

impl At {
    fn new(file: impl Into<String>, field: impl Into<String>) -> At {
        At {
            file: file.into(),
            field: field.into(),
            entry: None,
        }
    }

    fn with_entry(&self, entry: &str) -> At {
        At {
            entry: Some(entry.to_string()),
            ..self.clone()
        }
    }
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", escape_for_terminal(&self.file), self.field)?;
        if let Some(e) = &self.entry {
            write!(f, " {e:?}")?;
        }
        Ok(())
    }
}

/// Why a build was refused before it ran. Messages name the file and the
/// field, never the content of anything they refused to read.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// An absolute path.
    #[error("{0}: absolute paths are not allowed; use a path inside the repository")]
    Absolute(At),
    /// `..` above the root.
    #[error("{0}: the path leaves the render root")]
    Escapes(At),
    /// A symlink on the way points outside the root.
    #[error("{0}: the path reaches outside the render root through a symlink")]
    SymlinkEscape(At),
    /// A URL or Git reference.
    #[error("{0}: remote resources are not allowed; vendor them into the repository")]
    Remote(At),
    /// Nothing there.
    #[error("{0}: not found inside the render root")]
    NotFound(At),
    /// A device, FIFO or socket.
    #[error("{0}: not a regular file or folder")]
    NotRegular(At),
    /// A folder where kustomize wants a file, or the reverse.
    #[error("{at}: expected a {expected}")]
    WrongKind {
        /// Where.
        at: At,
        /// `file` or `folder with a kustomization`.
        expected: &'static str,
    },
    /// `helmCharts` and friends.
    #[error("{0}: Helm charts are not rendered (kustomize runs without --enable-helm)")]
    Helm(At),
    /// A generator, transformer or validator that is not built in.
    #[error("{at}: {kind} is a plugin; render runs kustomize's built-in generators and transformers only")]
    Plugin {
        /// Where.
        at: At,
        /// `apiVersion/kind` of the config.
        kind: String,
    },
    /// A folder that includes itself or one of its ancestors.
    #[error("{0}: the folder includes itself or a folder that includes it")]
    Cycle(At),
    /// Kustomizations nested deeper than [`MAX_DEPTH`].
    #[error("{0}: kustomizations are nested too deeply")]
    TooDeep(At),
    /// A folder without a kustomization file.
    #[error("{0}: no kustomization.yaml")]
    NoKustomization(String),
    /// A kustomization or plugin config that does not parse.
    #[error("{file}: {source}")]
    Parse {
        /// The file.
        file: String,
        /// Why (line numbers, never content).
        source: crate::Error,
    },
    /// More than [`MAX_FILES`] files.
    #[error("the build reads more than {MAX_FILES} files")]
    TooManyFiles,
}

/// Every file one build reads, relative to the root, with how it is used.
#[derive(Debug, Default)]
pub struct Closure {
    /// File → its uses (a file can be both a resource and a patch).
    pub files: BTreeMap<PathBuf, BTreeSet<Use>>,
}

/// Finds what building `dir` (relative to `root`, which must be canonical)
/// reads.
pub fn closure(root: &Path, dir: &Path) -> Result<Closure, ConfineError> {
    let mut w = Walker {
        root,
        out: Closure::default(),
        done: BTreeSet::new(),
        stack: Vec::new(),
    };
    let start = clean(dir)
        .ok_or_else(|| ConfineError::Escapes(At::new(dir.display().to_string(), "folder")))?;
    w.kustomization(&start, None)?;
    Ok(w.out)
}

/// Joins and cleans a relative path lexically, like Go's `filepath.Join`;
/// `None` when it climbs above its start or is absolute.
pub fn clean(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// What a path entry names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
}

/// Whether a patch or plugin-config entry is inline YAML rather than a path.
fn is_inline(entry: &str) -> bool {
    let t = entry.trim_start();
    entry.contains('\n') || t.starts_with('{') || t.starts_with('[')
}

fn strings(v: &Value) -> Vec<(usize, &str)> {
    match v {
        Value::Seq(items) => items
            .iter()
            .filter(|i| !matches!(i, Value::Comment(_)))
            .enumerate()
            .filter_map(|(i, v)| v.as_str().map(|s| (i, s)))
            .collect(),
        _ => Vec::new(),
    }
}

fn maps(v: &Value) -> Vec<(usize, &Map)> {
    match v {
        Value::Seq(items) => items
            .iter()
            .filter(|i| !matches!(i, Value::Comment(_)))
            .enumerate()
            .filter_map(|(i, v)| v.as_map().map(|m| (i, m)))
            .collect(),
        _ => Vec::new(),
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Seq(s) => s.iter().any(|i| !matches!(i, Value::Comment(_))),
        Value::Map(m) => !m.is_empty(),
        _ => true,
    }
}

/// The format kustomize-controller decrypts a `secretGenerator` `files`
/// entry in: by its key's extension (`.dockerconfigjson` is JSON).
pub fn format_for_key(key: &str) -> Format {
    if key.ends_with(".dockerconfigjson") {
        Format::Json
    } else {
        Format::from_path(Path::new(key))
    }
}

/// The format of a `secretGenerator` `envs` file: dotenv unless its
/// extension names another store.
fn env_format(path: &str) -> Format {
    match Format::from_path(Path::new(path)) {
        Format::Binary => Format::Dotenv,
        other => other,
    }
}

struct Walker<'a> {
    root: &'a Path,
    out: Closure,
    /// Kustomization folders already walked.
    done: BTreeSet<PathBuf>,
    /// The folders being walked, outermost first.
    stack: Vec<PathBuf>,
}

impl Walker<'_> {
    fn add(&mut self, rel: PathBuf, u: Use) -> Result<(), ConfineError> {
        let uses = self.out.files.entry(rel).or_default();
        uses.insert(u);
        if self.out.files.len() > MAX_FILES {
            return Err(ConfineError::TooManyFiles);
        }
        Ok(())
    }

    /// What `rel` is, refusing anything that resolves outside the root.
    fn kind_of(&self, at: &At, rel: &Path) -> Result<Kind, ConfineError> {
        let full = self.root.join(rel);
        let real = match std::fs::canonicalize(&full) {
            Ok(r) => r,
            Err(_) => {
                // A dangling link or a missing file: say so without following.
                return Err(match std::fs::symlink_metadata(&full) {
                    Ok(m) if m.file_type().is_symlink() => ConfineError::SymlinkEscape(at.clone()),
                    _ => ConfineError::NotFound(at.clone()),
                });
            }
        };
        if !real.starts_with(self.root) {
            return Err(ConfineError::SymlinkEscape(at.clone()));
        }
        match std::fs::metadata(&real) {
            Ok(m) if m.is_file() => Ok(Kind::File),
            Ok(m) if m.is_dir() => Ok(Kind::Dir),
            Ok(_) => Err(ConfineError::NotRegular(at.clone())),
            Err(_) => Err(ConfineError::NotFound(at.clone())),
        }
    }

    /// Resolves a path entry of a kustomization in `base`.
    fn locate(&self, at: &At, base: &Path, entry: &str) -> Result<(PathBuf, Kind), ConfineError> {
        let at = &at.with_entry(entry);
        if looks_remote(entry) {
            return Err(ConfineError::Remote(at.clone()));
        }
        let p = Path::new(entry);
        if p.is_absolute() {
            return Err(ConfineError::Absolute(at.clone()));
        }
        let rel = clean(&base.join(p)).ok_or_else(|| ConfineError::Escapes(at.clone()))?;
        match self.kind_of(at, &rel) {
            Ok(k) => Ok((rel, k)),
            Err(ConfineError::NotFound(_)) if host_like(entry) => {
                Err(ConfineError::Remote(at.clone()))
            }
            Err(e) => Err(e),
        }
    }

    fn file(&mut self, at: &At, base: &Path, entry: &str, u: Use) -> Result<(), ConfineError> {
        match self.locate(at, base, entry)? {
            (rel, Kind::File) => self.add(rel, u),
            (_, Kind::Dir) => Err(ConfineError::WrongKind {
                at: at.clone(),
                expected: "file",
            }),
        }
    }

    fn read_yaml(&self, rel: &Path) -> Result<Vec<Map>, ConfineError> {
        let file = rel.display().to_string();
        let data =
            crate::fsutil::read_file(&self.root.join(rel)).map_err(|e| ConfineError::Parse {
                file: file.clone(),
                source: e,
            })?;
        formats::load_plain(Format::Yaml, &data)
            .map_err(|e| ConfineError::Parse { file, source: e })
    }

    fn kustomization(&mut self, dir: &Path, from: Option<&At>) -> Result<(), ConfineError> {
        let here = || {
            from.cloned()
                .unwrap_or_else(|| At::new(dir.display().to_string(), "folder"))
        };
        // kustomize refuses a folder that is, or contains, one being built.
        if self.stack.iter().any(|s| s.starts_with(dir)) {
            return Err(ConfineError::Cycle(here()));
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(ConfineError::TooDeep(here()));
        }
        if !self.done.insert(dir.to_path_buf()) {
            return Ok(());
        }
        let mut found = None;
        for name in KUSTOMIZATION_FILES {
            let rel = dir.join(name);
            let at = At::new(rel.display().to_string(), "kustomization file");
            match self.kind_of(&at, &rel) {
                Ok(Kind::File) => {
                    found = Some(rel);
                    break;
                }
                Ok(Kind::Dir) | Err(ConfineError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let kfile =
            found.ok_or_else(|| ConfineError::NoKustomization(dir.display().to_string()))?;
        self.add(kfile.clone(), Use::Kustomization)?;
        let docs = self.read_yaml(&kfile)?;
        let Some(k) = docs.into_iter().next() else {
            return Ok(());
        };
        self.stack.push(dir.to_path_buf());
        let res = self.fields(&kfile, dir, &k);
        self.stack.pop();
        res
    }

    fn fields(&mut self, kfile: &Path, dir: &Path, k: &Map) -> Result<(), ConfineError> {
        let file = kfile.display().to_string();
        let at = |field: String| At::new(file.clone(), field);
        for (name, v) in k.entries() {
            match name {
                "resources" | "bases" => {
                    for (i, e) in strings(v) {
                        let at = at(format!("{name}[{i}]"));
                        match self.locate(&at, dir, e)? {
                            (rel, Kind::File) => self.add(rel, Use::Resource)?,
                            (rel, Kind::Dir) => self.kustomization(&rel, Some(&at))?,
                        }
                    }
                }
                "components" => {
                    for (i, e) in strings(v) {
                        let at = at(format!("{name}[{i}]"));
                        match self.locate(&at, dir, e)? {
                            (rel, Kind::Dir) => self.kustomization(&rel, Some(&at))?,
                            (_, Kind::File) => {
                                return Err(ConfineError::WrongKind {
                                    at,
                                    expected: "folder with a kustomization",
                                })
                            }
                        }
                    }
                }
                "crds" | "configurations" => {
                    for (i, e) in strings(v) {
                        self.file(&at(format!("{name}[{i}]")), dir, e, Use::Input)?;
                    }
                }
                "openapi" => {
                    if let Some(p) = v
                        .as_map()
                        .and_then(|m| m.get("path"))
                        .and_then(Value::as_str)
                    {
                        self.file(&at("openapi.path".into()), dir, p, Use::Input)?;
                    }
                }
                "replacements" => self.replacements(&at, name, v, dir)?,
                "patches" | "patchesJson6902" => {
                    for (i, m) in maps(v) {
                        if let Some(p) = m.get("path").and_then(Value::as_str) {
                            self.file(&at(format!("{name}[{i}].path")), dir, p, Use::Patch)?;
                        }
                    }
                }
                "patchesStrategicMerge" => {
                    for (i, e) in strings(v) {
                        if !is_inline(e) {
                            self.file(&at(format!("{name}[{i}]")), dir, e, Use::Patch)?;
                        }
                    }
                }
                "configMapGenerator" | "secretGenerator" => {
                    let secret = name == "secretGenerator";
                    for (i, g) in maps(v) {
                        self.generator_inputs(&at, &format!("{name}[{i}]"), g, dir, secret)?;
                    }
                }
                "generators" | "transformers" | "validators" => {
                    for (i, e) in strings(v) {
                        self.plugin_entry(&at(format!("{name}[{i}]")), dir, e)?;
                    }
                }
                "helmCharts" | "helmGlobals" | "helmChartInflationGenerator" if present(v) => {
                    return Err(ConfineError::Helm(at(name.to_string())));
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn replacements(
        &mut self,
        at: &dyn Fn(String) -> At,
        name: &str,
        v: &Value,
        dir: &Path,
    ) -> Result<(), ConfineError> {
        for (i, m) in maps(v) {
            if let Some(p) = m.get("path").and_then(Value::as_str) {
                self.file(&at(format!("{name}[{i}].path")), dir, p, Use::Input)?;
            }
        }
        Ok(())
    }

    /// `files`, `envs` and `env` of a ConfigMap or Secret generator.
    fn generator_inputs(
        &mut self,
        at: &dyn Fn(String) -> At,
        prefix: &str,
        g: &Map,
        dir: &Path,
        secret: bool,
    ) -> Result<(), ConfineError> {
        if let Some(v) = g.get("files") {
            for (i, e) in strings(v) {
                let (key, path) = match e.split_once('=') {
                    Some((k, p)) => (k.to_string(), p),
                    None => (
                        Path::new(e)
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        e,
                    ),
                };
                let u = if secret {
                    Use::SecretInput(format_for_key(&key))
                } else {
                    Use::Input
                };
                self.file(&at(format!("{prefix}.files[{i}]")), dir, path, u)?;
            }
        }
        let mut envs: Vec<(String, &str)> = g
            .get("envs")
            .map(|v| {
                strings(v)
                    .into_iter()
                    .map(|(i, e)| (format!("{prefix}.envs[{i}]"), e))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(e) = g.get("env").and_then(Value::as_str) {
            envs.push((format!("{prefix}.env"), e));
        }
        for (field, e) in envs {
            let u = if secret {
                Use::SecretInput(env_format(e))
            } else {
                Use::Input
            };
            self.file(&at(field), dir, e, u)?;
        }
        Ok(())
    }

    /// One entry of `generators`, `transformers` or `validators`: inline
    /// YAML or a file of built-in plugin configs, whose paths resolve
    /// against the listing kustomization's folder.
    fn plugin_entry(&mut self, at: &At, dir: &Path, entry: &str) -> Result<(), ConfineError> {
        let (docs, source) = if entry.contains('\n') {
            let docs = formats::load_plain(Format::Yaml, entry.as_bytes()).map_err(|e| {
                ConfineError::Parse {
                    file: at.to_string(),
                    source: e,
                }
            })?;
            (docs, at.file.clone())
        } else {
            match self.locate(at, dir, entry)? {
                (rel, Kind::File) => {
                    self.add(rel.clone(), Use::Input)?;
                    (self.read_yaml(&rel)?, rel.display().to_string())
                }
                (_, Kind::Dir) => {
                    return Err(ConfineError::WrongKind {
                        at: at.clone(),
                        expected: "file of built-in plugin configs",
                    })
                }
            }
        };
        for (d, doc) in docs.iter().enumerate() {
            let cfg_at = |field: String| {
                At::new(
                    source.clone(),
                    format!("{} document {d}: {field}", at.field),
                )
            };
            self.plugin_config(&cfg_at, doc, dir)?;
        }
        Ok(())
    }

    fn plugin_config(
        &mut self,
        at: &dyn Fn(String) -> At,
        doc: &Map,
        dir: &Path,
    ) -> Result<(), ConfineError> {
        let api = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
        if api != "builtin" {
            return Err(ConfineError::Plugin {
                at: at("kind".into()),
                kind: escape_for_terminal(&format!("{api}/{kind}")),
            });
        }
        match kind {
            "ConfigMapGenerator" | "SecretGenerator" => {
                // Built-in generator configs are not decrypted before the
                // build (kustomize-controller does not either).
                self.generator_inputs(at, kind, doc, dir, false)?;
            }
            "PatchTransformer" | "PatchJson6902Transformer" => {
                if let Some(p) = doc.get("path").and_then(Value::as_str) {
                    self.file(&at("path".into()), dir, p, Use::Input)?;
                }
            }
            "PatchStrategicMergeTransformer" => {
                if let Some(v) = doc.get("paths") {
                    for (i, e) in strings(v) {
                        if !is_inline(e) {
                            self.file(&at(format!("paths[{i}]")), dir, e, Use::Input)?;
                        }
                    }
                }
            }
            "ReplacementTransformer" => {
                if let Some(v) = doc.get("replacements") {
                    self.replacements(at, "replacements", v, dir)?;
                }
            }
            "HelmChartInflationGenerator" => return Err(ConfineError::Helm(at("kind".into()))),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_is_lexical_and_never_climbs_out() {
        assert_eq!(clean(Path::new("a/./b/../c")), Some(PathBuf::from("a/c")));
        assert_eq!(clean(Path::new("a/../..")), None);
        assert_eq!(clean(Path::new("/etc")), None);
        assert_eq!(clean(Path::new("")), Some(PathBuf::new()));
    }

    #[test]
    fn inline_patches_are_not_paths() {
        assert!(is_inline("apiVersion: v1\nkind: X\n"));
        assert!(is_inline(r#"{"kind": "X"}"#));
        assert!(!is_inline("patch.yaml"));
    }
}
