//! The kustomize plugin: decrypts SOPS files during `kustomize build`.
//!
//! Two ways kustomize runs it, both handled here:
//! - **legacy exec plugin**: `<plugin home>/<group>/<version>/<kind>/<Kind>
//!   <config file>`; the generated resources go to stdout as a YAML stream;
//! - **KRM function** (`config.kubernetes.io/function: exec`): a
//!   `ResourceList` on stdin whose items hold the generator configs (kustomize
//!   v5) or whose `functionConfig` does (`kpt fn eval --exec`); the result
//!   `ResourceList` goes to stdout, errors as `results` with exit code 1.
//!
//! The config schema is KSOPS' (`files`, `secretFrom[]` with `metadata`,
//! `type`, `files`, `binaryFiles`, `envs`) under either `viaduct.ai/v1 ksops`
//! or kustos' own `kustos.dev/v1 SopsGenerator`. Every listed file is read
//! from inside the kustomization root (no `..` or symlink escape, regular
//! files, 5 MiB at most), MAC-verified and decrypted in parallel in one
//! process; plaintext only ever goes to stdout.

pub mod doctor;

use std::collections::{BTreeMap, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::formats::{self, Format, StoreOptions};
use crate::keys::{self, KeyRing};
use crate::sops::value::{Item, Map, Value};
use crate::sops::{tree, Cipher, DataKey};
use crate::{Error, Result};

/// kustos' own generator kind.
pub const KIND: &str = "SopsGenerator";
/// kustos' API group/version.
pub const API_VERSION: &str = "kustos.dev/v1";
/// The largest file the plugin decrypts (kustomize-controller's limit).
pub const MAX_FILE: u64 = 5 << 20;

/// A generator config (KSOPS schema).
#[derive(Clone, Debug, Default)]
pub struct GeneratorConfig {
    /// Where the config came from (for messages).
    pub source: String,
    /// Whole files to decrypt and emit as resources.
    pub files: Vec<String>,
    /// Secrets to build from decrypted files.
    pub secret_from: Vec<SecretFrom>,
}

/// One `secretFrom` entry.
#[derive(Clone, Debug, Default)]
pub struct SecretFrom {
    /// The Secret's metadata (name, namespace, labels, annotations).
    pub metadata: Map,
    /// The Secret's type.
    pub kind_type: Option<String>,
    /// `key=path` or `path` entries for `stringData`.
    pub files: Vec<String>,
    /// `key=path` or `path` entries for `data` (base64).
    pub binary_files: Vec<String>,
    /// dotenv files whose variables become `stringData` entries.
    pub envs: Vec<String>,
}

fn err(msg: impl Into<String>) -> Error {
    Error::Other(msg.into())
}

fn strings(v: Option<&Value>, field: &str, source: &str) -> Result<Vec<String>> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Seq(items)) => items
            .iter()
            .filter(|i| !matches!(i, Value::Comment(_)))
            .map(|i| {
                i.as_str()
                    .map(String::from)
                    .ok_or_else(|| err(format!("{source}: {field} entries must be strings")))
            })
            .collect(),
        Some(_) => Err(err(format!("{source}: {field} must be a list"))),
    }
}

/// True if a manifest is a generator config kustos handles.
pub fn is_config(m: &Map) -> bool {
    let kind = m.get("kind").and_then(Value::as_str).unwrap_or("");
    let api = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    (kind == "ksops" && api.starts_with("viaduct.ai/"))
        || (kind == KIND && api.starts_with("kustos.dev/"))
}

/// Reads a config from a manifest.
pub fn parse_config(m: &Map, source: &str) -> Result<GeneratorConfig> {
    let files = strings(m.get("files"), "files", source)?;
    let mut secret_from = Vec::new();
    match m.get("secretFrom") {
        None | Some(Value::Null) => {}
        Some(Value::Seq(items)) => {
            for it in items.iter().filter(|i| !matches!(i, Value::Comment(_))) {
                let Value::Map(sm) = it else {
                    return Err(err(format!("{source}: secretFrom entries must be maps")));
                };
                let metadata = sm
                    .get("metadata")
                    .and_then(Value::as_map)
                    .cloned()
                    .unwrap_or_default();
                if metadata
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    return Err(err(format!(
                        "{source}: secretFrom entries need metadata.name"
                    )));
                }
                secret_from.push(SecretFrom {
                    metadata,
                    kind_type: sm.get("type").and_then(Value::as_str).map(String::from),
                    files: strings(sm.get("files"), "secretFrom.files", source)?,
                    binary_files: strings(sm.get("binaryFiles"), "secretFrom.binaryFiles", source)?,
                    envs: strings(sm.get("envs"), "secretFrom.envs", source)?,
                });
            }
        }
        Some(_) => return Err(err(format!("{source}: secretFrom must be a list"))),
    }
    if files.is_empty() && secret_from.is_empty() {
        return Err(err(format!(
            "{source}: missing the required 'files' or 'secretFrom' key in the generator config"
        )));
    }
    Ok(GeneratorConfig {
        source: source.to_string(),
        files,
        secret_from,
    })
}

/// Resolves a config path inside `root`: relative, no escape through `..`
/// or symlinks, a regular file of at most [`MAX_FILE`] bytes.
pub fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf> {
    let p = Path::new(rel);
    if p.is_absolute() {
        return Err(err(format!(
            "{rel}: absolute paths are not allowed; use a path inside the kustomization root"
        )));
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(err(format!(
            "{rel}: path escapes the kustomization root (..)"
        )));
    }
    let root_c = std::fs::canonicalize(root).map_err(|e| Error::io(root.display(), e))?;
    let full = std::fs::canonicalize(root.join(p)).map_err(|e| Error::io(rel, e))?;
    if !full.starts_with(&root_c) {
        return Err(err(format!(
            "{rel}: path resolves outside the kustomization root (symlink)"
        )));
    }
    let meta = std::fs::metadata(&full).map_err(|e| Error::io(rel, e))?;
    if !meta.is_file() {
        return Err(err(format!("{rel}: not a regular file")));
    }
    if meta.len() > MAX_FILE {
        return Err(err(format!("{rel}: larger than {} MiB", MAX_FILE >> 20)));
    }
    Ok(full)
}

/// Decrypts files, unwrapping each distinct data key once.
pub struct Decryptor<'a> {
    root: PathBuf,
    ring: &'a KeyRing,
    keys: Mutex<HashMap<String, DataKey>>,
    store: StoreOptions,
}

/// A decrypted file.
pub struct Plain {
    /// The path as written in the config.
    pub rel: String,
    /// The plaintext in the file's own format.
    pub bytes: Zeroizing<Vec<u8>>,
}

impl<'a> Decryptor<'a> {
    /// A decryptor reading from `root` with the keys of `ring`.
    pub fn new(root: &Path, ring: &'a KeyRing) -> Self {
        Decryptor {
            root: root.to_path_buf(),
            ring,
            keys: Mutex::new(HashMap::new()),
            // KSOPS emits what `sops decrypt` prints: the same layout here.
            store: StoreOptions::default(),
        }
    }

    fn data_key(&self, t: &crate::sops::Tree) -> Result<DataKey> {
        // Files re-encrypted together share nothing, but the same file listed
        // twice (or copies) do: cache by the wrapped keys.
        let id: String = t
            .metadata
            .master_keys()
            .map(|k| k.enc())
            .collect::<Vec<_>>()
            .join("|");
        if let Some(k) = self.keys.lock().ok().and_then(|m| m.get(&id).cloned()) {
            return Ok(k);
        }
        let k = keys::recover_data_key(
            &t.metadata.key_groups,
            t.metadata.shamir_threshold,
            self.ring,
        )?;
        if let Ok(mut m) = self.keys.lock() {
            m.insert(id, k.clone());
        }
        Ok(k)
    }

    /// Decrypts one file to its own format; `format` overrides the
    /// extension-based choice.
    pub fn decrypt(&self, rel: &str, format: Option<Format>) -> Result<Plain> {
        let path = resolve_inside(&self.root, rel)?;
        let data = crate::fsutil::read_file(&path)?;
        let fmt = format.unwrap_or_else(|| Format::from_path(Path::new(rel)));
        let wrap = |e: Error| err(format!("{rel}: {e}"));
        let mut t = formats::load_encrypted(fmt, &data).map_err(wrap)?;
        let key = self.data_key(&t).map_err(wrap)?;
        let mut cipher = Cipher::read_only(&key);
        tree::decrypt(&mut t.branches, &t.metadata, &mut cipher, false).map_err(wrap)?;
        let bytes = formats::emit_plain(fmt, &t.branches, &self.store).map_err(wrap)?;
        Ok(Plain {
            rel: rel.to_string(),
            bytes,
        })
    }
}

fn split_key(entry: &str) -> (String, String) {
    match entry.split_once('=') {
        Some((k, p)) => (k.to_string(), p.to_string()),
        None => (
            Path::new(entry)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| entry.to_string()),
            entry.to_string(),
        ),
    }
}

/// Parses dotenv text as godotenv (which KSOPS uses) does for the common
/// forms: `export`, comments, single and double quotes.
pub fn parse_dotenv(text: &str) -> Vec<(String, Zeroizing<String>)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let value = if let Some(inner) = v
            .strip_prefix('"')
            .and_then(|r| r.rfind('"').map(|i| &r[..i]))
        {
            inner
                .replace("\\n", "\n")
                .replace("\\\"", "\"")
                .replace("\\\\", "\\")
        } else if let Some(inner) = v
            .strip_prefix('\'')
            .and_then(|r| r.rfind('\'').map(|i| &r[..i]))
        {
            inner.to_string()
        } else {
            match v.find(" #") {
                Some(i) => v[..i].trim_end().to_string(),
                None => v.to_string(),
            }
        };
        out.push((k.trim().to_string(), Zeroizing::new(value)));
    }
    out
}

/// Runs the generators and returns the resources they make.
pub fn generate(configs: &[GeneratorConfig], root: &Path, ring: &KeyRing) -> Result<Vec<Map>> {
    let dec = Decryptor::new(root, ring);
    // Every file the configs name, decrypted once, in parallel.
    let mut wanted: Vec<(String, Option<Format>)> = Vec::new();
    for c in configs {
        for f in &c.files {
            wanted.push((f.clone(), None));
        }
        for s in &c.secret_from {
            for f in &s.files {
                wanted.push((split_key(f).1, None));
            }
            // KSOPS decrypts every file in the format its name says:
            // `binaryFiles` only changes where the plaintext goes (base64
            // under `data`), and an env file that is not `.env` was
            // encrypted whole (binary store) by sops.
            for f in &s.binary_files {
                wanted.push((split_key(f).1, None));
            }
            for f in &s.envs {
                wanted.push((f.clone(), None));
            }
        }
    }
    wanted.sort();
    wanted.dedup();
    type Decrypted = Result<((String, Option<Format>), Plain)>;
    let decrypted: Vec<Decrypted> = wanted
        .par_iter()
        .map(|(p, f)| dec.decrypt(p, *f).map(|pl| ((p.clone(), *f), pl)))
        .collect();
    let mut plains: HashMap<(String, Option<Format>), Plain> = HashMap::new();
    for r in decrypted {
        let (k, v) = r?;
        plains.insert(k, v);
    }
    let get = |p: &str, f: Option<Format>| -> Result<&Plain> {
        plains
            .get(&(p.to_string(), f))
            .ok_or_else(|| err(format!("{p}: not decrypted")))
    };
    let mut out = Vec::new();
    for c in configs {
        for f in &c.files {
            let plain = get(f, None)?;
            let docs = formats::load_plain(Format::Yaml, &plain.bytes).map_err(|e| {
                err(format!(
                    "{}: the decrypted file is not a YAML/JSON manifest: {e}",
                    plain.rel
                ))
            })?;
            out.extend(docs.into_iter().filter(|d| !d.is_empty()));
        }
        for s in &c.secret_from {
            let mut secret = Map::new();
            secret.push("apiVersion", Value::str("v1"));
            secret.push("kind", Value::str("Secret"));
            secret.push("metadata", Value::Map(s.metadata.clone()));
            if let Some(t) = &s.kind_type {
                secret.push("type", Value::str(t.clone()));
            }
            // Like KSOPS' Go maps: one entry per key, the last one wins
            // (files, then env files, in order), printed sorted.
            let mut string_data: BTreeMap<String, Value> = BTreeMap::new();
            let mut data: BTreeMap<String, Value> = BTreeMap::new();
            for f in &s.files {
                let (k, p) = split_key(f);
                let plain = get(&p, None)?;
                string_data.insert(k, Value::str(plain.bytes.to_vec()));
            }
            for f in &s.envs {
                let plain = get(f, None)?;
                for (k, v) in parse_dotenv(&String::from_utf8_lossy(&plain.bytes)) {
                    string_data.insert(k, Value::str(v.as_str()));
                }
            }
            for f in &s.binary_files {
                let (k, p) = split_key(f);
                let plain = get(&p, None)?;
                data.insert(
                    k,
                    Value::str(base64::engine::general_purpose::STANDARD.encode(&plain.bytes[..])),
                );
            }
            if !data.is_empty() {
                secret.push(
                    "data",
                    Value::Map(Map(data
                        .into_iter()
                        .map(|(k, v)| Item::new(k, v))
                        .collect())),
                );
            }
            if !string_data.is_empty() {
                secret.push(
                    "stringData",
                    Value::Map(Map(string_data
                        .into_iter()
                        .map(|(k, v)| Item::new(k, v))
                        .collect())),
                );
            }
            out.push(secret);
        }
    }
    Ok(out)
}

/// Legacy exec plugin: reads the config file, prints the YAML stream.
pub fn run_legacy(config_file: &Path, root: &Path, ring: &KeyRing) -> Result<Vec<u8>> {
    let bytes = crate::fsutil::read_file(config_file)?;
    let docs = formats::load_plain(Format::Yaml, &bytes)
        .map_err(|e| err(format!("generator config: {e}")))?;
    let configs = docs
        .iter()
        .filter(|d| !d.is_empty())
        .map(|d| parse_config(d, &config_file.display().to_string()))
        .collect::<Result<Vec<_>>>()?;
    let resources = generate(&configs, root, ring)?;
    Ok(formats::yaml::emit_plain(&resources, 2))
}

/// KRM function: ResourceList in, ResourceList out. Never fails: errors
/// become `results` (and the caller exits 1 when [`KrmOutput::failed`]).
pub struct KrmOutput {
    /// The ResourceList to print.
    pub bytes: Vec<u8>,
    /// An error was reported.
    pub failed: bool,
}

fn result_list(items: Vec<Value>, results: Vec<Value>) -> Vec<u8> {
    let mut rl = Map::new();
    rl.push("apiVersion", Value::str("config.kubernetes.io/v1"));
    rl.push("kind", Value::str("ResourceList"));
    rl.push("items", Value::Seq(items));
    if !results.is_empty() {
        rl.push("results", Value::Seq(results));
    }
    formats::yaml::emit_plain(&[rl], 2)
}

fn error_result(message: &str) -> Value {
    let mut r = Map::new();
    r.push("message", Value::str(message));
    r.push("severity", Value::str("error"));
    Value::Map(r)
}

/// Runs the KRM function on a ResourceList.
pub fn run_krm(input: &[u8], root: &Path, ring: &KeyRing) -> KrmOutput {
    let fail = |msg: String| KrmOutput {
        bytes: result_list(Vec::new(), vec![error_result(&msg)]),
        failed: true,
    };
    let docs = match formats::load_plain(Format::Yaml, input) {
        Ok(d) => d,
        Err(e) => return fail(format!("invalid ResourceList: {e}")),
    };
    let Some(rl) = docs.into_iter().next() else {
        return fail("empty input: expected a ResourceList".into());
    };
    if rl.get("kind").and_then(Value::as_str) != Some("ResourceList") {
        return fail("the input is not a ResourceList".into());
    }
    let items: Vec<Value> = match rl.get("items") {
        Some(Value::Seq(i)) => i
            .iter()
            .filter(|v| !matches!(v, Value::Comment(_)))
            .cloned()
            .collect(),
        _ => Vec::new(),
    };
    let mut configs = Vec::new();
    let mut passthrough = Vec::new();
    for (i, it) in items.into_iter().enumerate() {
        match &it {
            Value::Map(m) if is_config(m) => match parse_config(m, &format!("items[{i}]")) {
                Ok(c) => configs.push(c),
                Err(e) => return fail(e.to_string()),
            },
            _ => passthrough.push(it),
        }
    }
    // kustomize v5 sends a generator's config twice, as an item (marked
    // local-config) and as functionConfig; kpt sends it as functionConfig
    // only. functionConfig counts only when no item is a config, so the
    // secrets are not generated twice.
    if let Some(Value::Map(fc)) = rl.get("functionConfig").filter(|_| configs.is_empty()) {
        if is_config(fc) {
            match parse_config(fc, "functionConfig") {
                Ok(c) => configs.push(c),
                Err(e) => return fail(e.to_string()),
            }
        }
    }
    if configs.is_empty() {
        return fail("no ksops or kustos SopsGenerator config in the ResourceList".into());
    }
    match generate(&configs, root, ring) {
        Ok(resources) => {
            passthrough.extend(resources.into_iter().map(Value::Map));
            KrmOutput {
                bytes: result_list(passthrough, Vec::new()),
                failed: false,
            }
        }
        Err(e) => fail(e.to_string()),
    }
}

/// Where kustomize looks for legacy plugins, in its order.
pub fn plugin_home() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("KUSTOMIZE_PLUGIN_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    let mut candidates = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").filter(|h| !h.is_empty()) {
        candidates.push(PathBuf::from(x).join("kustomize/plugin"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        candidates.push(PathBuf::from(&home).join(".config/kustomize/plugin"));
        candidates.push(PathBuf::from(&home).join("kustomize/plugin"));
    }
    candidates
        .iter()
        .find(|c| c.is_dir())
        .cloned()
        .or_else(|| candidates.into_iter().next())
}

/// The plugin paths kustos installs itself at, relative to the plugin home.
pub fn plugin_paths() -> [PathBuf; 2] {
    [
        PathBuf::from("kustos.dev/v1/sopsgenerator/SopsGenerator"),
        PathBuf::from("viaduct.ai/v1/ksops/ksops"),
    ]
}

/// Names kustos answers to when run as a plugin (argv[0]).
pub fn is_plugin_name(argv0: &str) -> bool {
    let name = Path::new(argv0)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name == "ksops" || name == KIND
}

/// Makes a one-item YAML document for a manifest (tests and doctor).
pub fn manifest(items: &[(&str, Value)]) -> Map {
    Map(items
        .iter()
        .map(|(k, v)| Item::new(*k, v.clone()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_like_godotenv() {
        let v = parse_dotenv("# c\nexport A=1\nB=\"x\\ny\"\nC='lit $x'\nD=plain # comment\n\nE=\n");
        let got: Vec<(String, String)> = v.into_iter().map(|(k, v)| (k, v.to_string())).collect();
        assert_eq!(
            got,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x\ny".into()),
                ("C".into(), "lit $x".into()),
                ("D".into(), "plain".into()),
                ("E".into(), "".into())
            ]
        );
    }

    #[test]
    fn paths_stay_inside() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("ok.yaml"), "a: 1").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("link")).unwrap();
        assert!(resolve_inside(d.path(), "ok.yaml").is_ok());
        assert!(resolve_inside(d.path(), "../x")
            .unwrap_err()
            .to_string()
            .contains("escapes"));
        assert!(resolve_inside(d.path(), "/etc/passwd").is_err());
        assert!(resolve_inside(d.path(), "link")
            .unwrap_err()
            .to_string()
            .contains("outside"));
        assert!(resolve_inside(d.path(), ".").is_err());
    }
}
