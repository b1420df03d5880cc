//! Strict schema checks for `kustos validate`: every object a fleet
//! repository builds to, checked offline against the Kubernetes, Flux and
//! Kyverno schemas built into the binary (`schemas/`, made by
//! `scripts/refresh-schemas.py`) or given with `--schemas DIR`.
//!
//! Strict means what `kubeconform -strict` and the API server's strict field
//! validation mean: an unknown field is a problem. A value the API server
//! drops (`null`) and the `sops` block kustomize-controller removes before
//! applying are not part of the object checked.

pub mod check;
mod convert;
mod locate;
pub mod sarif;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map as JsonMap, Value as Json};

use crate::formats::{self, Format};
use crate::sops::value::{Map, Value};

pub use locate::line_of;

/// The built-in schemas: one gzipped JSON document (see schemas/README.md).
static BUNDLE: &[u8] = include_bytes!("../../../schemas/bundle.json.gz");

/// Where the schema of one kind comes from.
#[derive(Clone, Debug)]
enum Source {
    /// A definition of the built-in bundle.
    Builtin(String),
    /// A schema converted from a CRD given with `--schemas`.
    Crd(Arc<Json>),
    /// A JSON Schema file given with `--schemas` (kubeconform layout).
    File(PathBuf),
}

#[derive(Clone, Debug)]
struct Entry {
    source: Source,
    /// The release that no longer serves this API version (built-in only).
    not_served_by: Option<String>,
}

type Compiled = std::result::Result<jsonschema::Validator, String>;

/// Validators by `(apiVersion, kind)`, each compiled once by whichever
/// thread needs it first.
type Cache = Mutex<HashMap<(String, String), Arc<OnceLock<Compiled>>>>;

/// The schemas of one run, compiled on first use (in parallel).
pub struct Schemas {
    kubernetes: String,
    definitions: Arc<JsonMap<String, Json>>,
    /// `(apiVersion, kind)` → schema.
    kinds: HashMap<(String, String), Entry>,
    /// JSON files under `--schemas`, by lower-cased relative path and by
    /// lower-cased file name.
    files: HashMap<String, PathBuf>,
    compiled: Cache,
}

/// One schema violation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Violation {
    /// Dotted path in the object, e.g. `spec.template.spec.containers[0].image`.
    pub path: String,
    /// Why, never with a Secret's values.
    pub reason: String,
}

/// What checking one object found.
#[derive(Debug)]
pub enum Verdict {
    /// Checked; the violations (none when it is valid).
    Checked {
        /// Problems found.
        violations: Vec<Violation>,
        /// The release that no longer serves this API version, if any.
        not_served_by: Option<String>,
    },
    /// The kind is known, but not under this apiVersion.
    WrongApiVersion(String),
    /// No schema for this kind.
    Skipped,
    /// The schema given for this kind cannot be used.
    BadSchema(String),
}

impl Schemas {
    /// The built-in schemas, with those under `extra` (kubeconform's
    /// layout of JSON Schema files, or CustomResourceDefinition YAML files)
    /// taking precedence.
    pub fn load(extra: Option<&Path>) -> crate::Result<Schemas> {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(BUNDLE), &mut text)
            .map_err(|e| crate::Error::Other(format!("built-in schemas: {e}")))?;
        let mut bundle: Json = serde_json::from_slice(&text)
            .map_err(|e| crate::Error::Other(format!("built-in schemas: {e}")))?;
        let definitions = match bundle.get_mut("definitions").map(Json::take) {
            Some(Json::Object(m)) => m,
            _ => {
                return Err(crate::Error::Other(
                    "built-in schemas: no definitions".into(),
                ))
            }
        };
        let mut kinds = HashMap::new();
        if let Some(Json::Object(apis)) = bundle.get("kinds") {
            for (api, ks) in apis {
                for (kind, e) in ks.as_object().into_iter().flatten() {
                    let Some(name) = e.get("schema").and_then(Json::as_str) else {
                        continue;
                    };
                    kinds.insert(
                        (api.clone(), kind.clone()),
                        Entry {
                            source: Source::Builtin(name.to_string()),
                            not_served_by: e
                                .get("not_served_by")
                                .and_then(Json::as_str)
                                .map(String::from),
                        },
                    );
                }
            }
        }
        let mut s = Schemas {
            kubernetes: bundle
                .get("kubernetes")
                .and_then(Json::as_str)
                .unwrap_or("?")
                .to_string(),
            definitions: Arc::new(definitions),
            kinds,
            files: HashMap::new(),
            compiled: Mutex::new(HashMap::new()),
        };
        if let Some(dir) = extra {
            s.add_dir(dir)?;
        }
        Ok(s)
    }

    /// The Kubernetes minor the built-in schemas are taken from.
    pub fn kubernetes_version(&self) -> &str {
        &self.kubernetes
    }

    fn add_dir(&mut self, dir: &Path) -> crate::Result<()> {
        let md = std::fs::metadata(dir)
            .map_err(|e| crate::Error::Other(format!("--schemas {}: {e}", dir.display())))?;
        if !md.is_dir() {
            return Err(crate::Error::Other(format!(
                "--schemas {}: not a folder",
                dir.display()
            )));
        }
        for e in crate::fsutil::walk(dir) {
            if e.is_dir {
                continue;
            }
            let name = e.name().to_ascii_lowercase();
            if name.ends_with(".json") {
                let rel = e.rel.to_string_lossy().to_ascii_lowercase();
                self.files.insert(rel, e.path.clone());
                self.files.entry(name).or_insert(e.path);
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                let bytes = std::fs::read(&e.path).map_err(|err| {
                    crate::Error::Other(format!("--schemas {}: {err}", e.path.display()))
                })?;
                let docs = formats::load_plain(Format::Yaml, &bytes).map_err(|err| {
                    crate::Error::Other(format!("--schemas {}: {err}", e.path.display()))
                })?;
                for d in &docs {
                    for (api, kind, schema) in convert::crd_versions(d, &self.definitions) {
                        self.kinds.insert(
                            (api, kind),
                            Entry {
                                source: Source::Crd(Arc::new(schema)),
                                not_served_by: None,
                            },
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// A JSON Schema file under `--schemas` for this kind, by kubeconform's
    /// file names: `{group}/{kind}_{version}.json` (the CRDs catalog),
    /// `{kind}_{version}.json` (openapi2jsonschema) and
    /// `{kind}-{group prefix}-{version}.json` (kubernetes-json-schema).
    fn file_for(&self, api: &str, kind: &str) -> Option<&PathBuf> {
        if self.files.is_empty() {
            return None;
        }
        let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
        let k = kind.to_ascii_lowercase();
        let g = group.to_ascii_lowercase();
        let prefix = g.split('.').next().unwrap_or("");
        let mut names = vec![
            format!("{g}/{k}_{version}.json"),
            format!("{k}_{version}.json"),
        ];
        if g.is_empty() {
            names.push(format!("{k}-{version}.json"));
        } else {
            names.push(format!("{k}-{prefix}-{version}.json"));
        }
        names.iter().find_map(|n| self.files.get(n))
    }

    fn entry(&self, api: &str, kind: &str) -> Option<Entry> {
        if let Some(p) = self.file_for(api, kind) {
            return Some(Entry {
                source: Source::File(p.clone()),
                not_served_by: None,
            });
        }
        self.kinds
            .get(&(api.to_string(), kind.to_string()))
            .cloned()
    }

    /// Why `kind` is not known under `api` when the kind or its whole group
    /// is known under other API versions; `None` when nothing is known of it.
    fn wrong_api_version(&self, api: &str, kind: &str) -> Option<String> {
        let group = |a: &str| {
            a.rsplit_once('/')
                .map(|(g, _)| g.to_string())
                .unwrap_or_default()
        };
        let g = group(api);
        let mut served: Vec<&str> = self
            .kinds
            .keys()
            .filter(|(_, k)| k == kind)
            .map(|(a, _)| a.as_str())
            .collect();
        served.sort_unstable();
        let group_known = self.kinds.keys().any(|(a, _)| group(a) == g);
        // Flux's API groups are complete: any other kind there is a mistake.
        let flux_group = g.ends_with(".toolkit.fluxcd.io") && group_known;
        if !served.is_empty() && (group_known || served.iter().any(|a| group(a) == g)) {
            let current: Vec<&str> = served
                .iter()
                .copied()
                .filter(|a| {
                    self.kinds
                        .get(&(a.to_string(), kind.to_string()))
                        .is_some_and(|e| e.not_served_by.is_none())
                })
                .collect();
            let list = if current.is_empty() {
                &served
            } else {
                &current
            };
            return Some(format!(
                "{kind} is not served as {api}; use {}",
                list.join(" or ")
            ));
        }
        if flux_group {
            return Some(format!("{api} has no kind {kind}"));
        }
        None
    }

    fn compile(&self, api: &str, kind: &str, e: &Entry) -> Arc<OnceLock<Compiled>> {
        let cell = {
            let mut m = self.compiled.lock().unwrap_or_else(|p| p.into_inner());
            m.entry((api.to_string(), kind.to_string()))
                .or_default()
                .clone()
        };
        cell.get_or_init(|| {
            let doc = match &e.source {
                Source::Builtin(name) => with_definitions(
                    serde_json::json!({ "$ref": format!("#/definitions/{name}") }),
                    &self.definitions,
                ),
                Source::Crd(schema) => (**schema).clone(),
                Source::File(p) => {
                    let bytes =
                        std::fs::read(p).map_err(|err| format!("{}: {err}", p.display()))?;
                    let mut v: Json = serde_json::from_slice(&bytes)
                        .map_err(|err| format!("{}: {err}", p.display()))?;
                    if let Some(o) = v.as_object_mut() {
                        o.remove("$schema");
                    }
                    v
                }
            };
            jsonschema::options()
                .with_draft(jsonschema::Draft::Draft7)
                .should_validate_formats(false)
                .with_pattern_options(jsonschema::PatternOptions::regex())
                .build(&doc)
                .map_err(|err| match &e.source {
                    Source::File(p) => format!("{}: {}", p.display(), err.masked()),
                    _ => format!("the schema of {api} {kind}: {}", err.masked()),
                })
        });
        cell
    }

    /// Checks one object (as JSON, see [`to_json`]).
    pub fn check(&self, obj: &Json) -> Verdict {
        let api = obj.get("apiVersion").and_then(Json::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Json::as_str).unwrap_or("");
        if api.is_empty() || kind.is_empty() {
            return Verdict::Skipped;
        }
        let Some(e) = self.entry(api, kind) else {
            return match self.wrong_api_version(api, kind) {
                Some(why) => Verdict::WrongApiVersion(why),
                None => Verdict::Skipped,
            };
        };
        let cell = self.compile(api, kind, &e);
        let v = match cell.get() {
            Some(Ok(v)) => v,
            Some(Err(msg)) => return Verdict::BadSchema(msg.clone()),
            None => return Verdict::Skipped,
        };
        let secret = kind == "Secret" && api == "v1";
        let mut violations: Vec<Violation> = Vec::new();
        for err in v.iter_errors(obj) {
            violations.extend(describe(&err, secret));
        }
        let mut seen = HashSet::new();
        violations.retain(|x| seen.insert(x.clone()));
        Verdict::Checked {
            violations,
            not_served_by: e.not_served_by.clone(),
        }
    }
}

/// `root` with the definitions it reaches, so each kind compiles only what
/// it uses.
fn with_definitions(mut root: Json, all: &JsonMap<String, Json>) -> Json {
    let mut keep = BTreeMap::new();
    let mut todo = Vec::new();
    refs(&root, &mut todo);
    while let Some(n) = todo.pop() {
        if keep.contains_key(&n) {
            continue;
        }
        if let Some(d) = all.get(&n) {
            refs(d, &mut todo);
            keep.insert(n, d.clone());
        }
    }
    if let Some(o) = root.as_object_mut() {
        let defs = o
            .entry("definitions")
            .or_insert_with(|| Json::Object(JsonMap::new()));
        if let Some(d) = defs.as_object_mut() {
            for (k, v) in keep {
                d.entry(k).or_insert(v);
            }
        }
    }
    root
}

fn refs(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(o) => {
            if let Some(r) = o.get("$ref").and_then(Json::as_str) {
                if let Some(n) = r.strip_prefix("#/definitions/") {
                    out.push(n.to_string());
                }
            }
            o.values().for_each(|x| refs(x, out));
        }
        Json::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

/// An instance path (JSON pointer) as `a.b[0].c`.
fn dotted(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            join(&mut out, &seg);
        }
    }
    out
}

fn join(path: &mut String, field: &str) {
    if field.contains(['.', '[', ']', ' ']) || field.is_empty() {
        path.push_str(&format!("[{field:?}]"));
    } else {
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(field);
    }
}

fn child(path: &str, field: &str) -> String {
    let mut p = path.to_string();
    join(&mut p, field);
    p
}

fn type_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(n) if n.is_f64() => "a number",
        Json::Number(_) => "an integer",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

/// The value, for a message: short scalars only, never a Secret's.
fn shown(v: &Json, secret: bool) -> String {
    let t = type_name(v);
    if secret {
        return t.to_string();
    }
    match v {
        Json::String(s) if s.chars().count() <= 60 && !s.contains('\n') => format!("{t} {s:?}"),
        Json::Bool(_) | Json::Number(_) => format!("{t} {v}"),
        _ => t.to_string(),
    }
}

fn json_type(t: jsonschema::JsonType) -> &'static str {
    match t.as_str() {
        "array" => "a list",
        "boolean" => "a boolean",
        "integer" => "an integer",
        "null" => "null",
        "number" => "a number",
        "object" => "an object",
        "string" => "a string",
        _ => "another type",
    }
}

fn describe(err: &jsonschema::ValidationError<'_>, secret: bool) -> Vec<Violation> {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let path = dotted(err.instance_path().as_str());
    let one = |reason: String| {
        vec![Violation {
            path: path.clone(),
            reason,
        }]
    };
    let got = || shown(err.instance(), secret);
    match err.kind() {
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            unexpected
                .iter()
                .map(|f| Violation {
                    path: child(&path, f),
                    reason: "unknown field".to_string(),
                })
                .collect()
        }
        K::Required { property } => {
            let p = property.as_str().unwrap_or("?");
            vec![Violation {
                path: child(&path, p),
                reason: "required field is missing".to_string(),
            }]
        }
        K::Type { kind } => {
            let want = match kind {
                TypeKind::Single(t) => json_type(*t).to_string(),
                TypeKind::Multiple(ts) => ts.iter().map(json_type).collect::<Vec<_>>().join(" or "),
            };
            one(format!("must be {want}, not {}", got()))
        }
        K::Enum { options } => {
            let list = match &**options {
                Json::Array(a) => a.iter().map(Json::to_string).collect::<Vec<_>>().join(", "),
                o => o.to_string(),
            };
            one(format!("must be one of {list}, not {}", got()))
        }
        K::Constant { expected_value } => one(format!("must be {expected_value}")),
        K::Pattern { pattern } => one(format!("{} does not match the pattern {pattern}", got())),
        K::MinLength { limit } => one(format!("must be at least {limit} characters long")),
        K::MaxLength { limit } => one(format!("must be at most {limit} characters long")),
        K::Minimum { limit } => one(format!("must be at least {limit}")),
        K::Maximum { limit } => one(format!("must be at most {limit}")),
        K::ExclusiveMinimum { limit } => one(format!("must be more than {limit}")),
        K::ExclusiveMaximum { limit } => one(format!("must be less than {limit}")),
        K::MinItems { limit } => one(format!("must have at least {limit} item(s)")),
        K::MaxItems { limit } => one(format!("must have at most {limit} item(s)")),
        K::MinProperties { limit } => one(format!("must have at least {limit} field(s)")),
        K::MaxProperties { limit } => one(format!("must have at most {limit} field(s)")),
        K::UniqueItems => one("must not repeat items".to_string()),
        K::AnyOf { .. } | K::OneOfNotValid { .. } => {
            one(format!("{} matches none of the allowed forms", got()))
        }
        K::OneOfMultipleValid { .. } => one("matches more than one allowed form".to_string()),
        K::FalseSchema => one("is not allowed here".to_string()),
        _ => one(err.masked().to_string()),
    }
}

/// An object as JSON for the check: `null` fields (which the API server
/// drops) and the `sops` block (which kustomize-controller removes) left out.
pub fn to_json(doc: &Map) -> Json {
    let mut o = map_json(doc);
    if let Json::Object(m) = &mut o {
        m.remove("sops");
    }
    o
}

fn map_json(m: &Map) -> Json {
    let mut o = JsonMap::new();
    for (k, v) in m.entries() {
        if let Some(j) = value_json(v) {
            if !j.is_null() {
                o.insert(k.to_string(), j);
            }
        }
    }
    Json::Object(o)
}

fn value_json(v: &Value) -> Option<Json> {
    Some(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Uint(u) => Json::from(*u),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::Str(t) => Json::String(t.to_str_lossy().into_owned()),
        Value::Time(t) => Json::String(t.rfc3339_nano()),
        Value::Map(m) => map_json(m),
        Value::Seq(items) => Json::Array(items.iter().filter_map(value_json).collect()),
        Value::Comment(_) => return None,
    })
}

/// `Kind/namespace/name` (`Kind/name` without a namespace).
pub fn object_name(obj: &Json) -> String {
    let s = |p: &str| obj.pointer(p).and_then(Json::as_str).unwrap_or("");
    let (kind, ns, name) = (s("/kind"), s("/metadata/namespace"), s("/metadata/name"));
    let name = if name.is_empty() { "?" } else { name };
    if ns.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{ns}/{name}")
    }
}

#[cfg(test)]
mod tests;
