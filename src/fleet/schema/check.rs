//! The schema pass of `kustos validate` over a whole repository: the
//! objects every kustomization builds to and every file under `clusters/`
//! (what the flux2-multi-tenancy CI feeds kubeconform), each distinct object
//! checked once, in parallel, and every finding traced back to the file
//! that defines the field where that is possible.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use serde_json::Value as Json;

use super::{object_name, to_json, Schemas, Verdict};
use crate::formats::{self, Format};
use crate::kustomize::closure::{self, Use};
use crate::sops::value::{Map, Value};

/// What the schema pass checked, for the report.
#[derive(Clone, Debug, Serialize, Default, PartialEq, Eq)]
pub struct Summary {
    /// The Kubernetes minor of the built-in schemas.
    pub kubernetes: String,
    /// Distinct objects checked against a schema.
    pub checked: usize,
    /// Distinct objects without a schema (not checked).
    pub skipped: usize,
    /// `apiVersion/Kind` → objects skipped.
    pub skipped_kinds: BTreeMap<String, usize>,
    /// `Kind/namespace/name (apiVersion)` → the release that no longer
    /// serves that API version.
    pub not_served: BTreeMap<String, String>,
}

/// One schema finding.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Problem {
    /// File, relative to the repository root.
    pub file: String,
    /// 1-based line in `file`, where it could be found.
    pub line: Option<usize>,
    /// `schema` or `schema-api-version`.
    pub rule: &'static str,
    /// `Kind/namespace/name`.
    pub object: String,
    /// Dotted JSON path in the object.
    pub path: String,
    /// Why.
    pub reason: String,
}

/// The YAML files of the repository (kustomization files left out), as the
/// caller parsed them: relative path and documents.
pub type SourceFiles = [(String, Vec<Map>)];

enum Origin<'a> {
    /// A file under `clusters/`.
    File(&'a str),
    /// The output of building this kustomization folder.
    Build(&'a Path),
}

/// Checks the build outputs (`(folder, stdout of kubectl kustomize)`) and
/// the files under `clusters/` against `schemas`.
pub fn check(
    root: &Path,
    schemas: &Schemas,
    sources: &SourceFiles,
    builds: &[(PathBuf, Vec<u8>)],
) -> (Vec<Problem>, Summary) {
    let mut items: Vec<(Origin, Json)> = Vec::new();
    for (rel, docs) in sources {
        if rel.starts_with("clusters/") {
            items.extend(docs.iter().map(|d| (Origin::File(rel), to_json(d))));
        }
    }
    let parsed: Vec<(&Path, Vec<Map>)> = builds
        .par_iter()
        .map(|(dir, out)| {
            (
                dir.as_path(),
                formats::load_plain(Format::Yaml, out).unwrap_or_default(),
            )
        })
        .collect();
    for (dir, docs) in &parsed {
        items.extend(docs.iter().map(|d| (Origin::Build(dir), to_json(d))));
    }
    // The same object often comes out of several builds (a tenant's base and
    // each environment that includes it): check it once.
    let mut seen = HashSet::new();
    items.retain(|(_, o)| {
        o.get("kind").is_some() && o.get("apiVersion").is_some() && seen.insert(o.to_string())
    });
    let verdicts: Vec<Verdict> = items.par_iter().map(|(_, o)| schemas.check(o)).collect();

    let mut summary = Summary {
        kubernetes: schemas.kubernetes_version().to_string(),
        ..Default::default()
    };
    let mut tracer = Tracer::new(root, sources);
    let mut problems = Vec::new();
    for ((origin, obj), verdict) in items.iter().zip(verdicts) {
        let name = object_name(obj);
        let api = obj.get("apiVersion").and_then(Json::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Json::as_str).unwrap_or("");
        let mut add = |rule, path: String, reason: String, t: &mut Tracer| {
            let (file, line) = t.trace(origin, obj, &path);
            problems.push(Problem {
                file,
                line,
                rule,
                object: name.clone(),
                path,
                reason,
            });
        };
        match verdict {
            Verdict::Checked {
                violations,
                not_served_by,
            } => {
                summary.checked += 1;
                if let Some(by) = not_served_by {
                    summary.not_served.insert(format!("{name} ({api})"), by);
                }
                for v in violations {
                    add("schema", v.path, v.reason, &mut tracer);
                }
            }
            Verdict::WrongApiVersion(why) => {
                summary.checked += 1;
                add("schema-api-version", "apiVersion".into(), why, &mut tracer);
            }
            Verdict::BadSchema(why) => {
                summary.checked += 1;
                add(
                    "schema",
                    String::new(),
                    format!("its schema cannot be used: {why}"),
                    &mut tracer,
                );
            }
            Verdict::Skipped => {
                summary.skipped += 1;
                *summary
                    .skipped_kinds
                    .entry(format!("{api}/{kind}"))
                    .or_default() += 1;
            }
        }
    }
    let mut seen = HashSet::new();
    problems.retain(|p| seen.insert(p.clone()));
    (problems, summary)
}

/// Maps an object of a build back to the file that defines it.
struct Tracer<'a> {
    root: PathBuf,
    /// `(kind, name)` → `(file index, document index)`.
    index: HashMap<(&'a str, &'a str), Vec<(usize, usize)>>,
    sources: &'a SourceFiles,
    closures: HashMap<PathBuf, Option<BTreeMap<PathBuf, std::collections::BTreeSet<Use>>>>,
    texts: HashMap<String, Option<String>>,
}

impl<'a> Tracer<'a> {
    fn new(root: &Path, sources: &'a SourceFiles) -> Self {
        let mut index: HashMap<(&str, &str), Vec<(usize, usize)>> = HashMap::new();
        for (fi, (_, docs)) in sources.iter().enumerate() {
            for (di, d) in docs.iter().enumerate() {
                let kind = d.get("kind").and_then(Value::as_str).unwrap_or("");
                let name = d.str_at(&["metadata", "name"]).unwrap_or("");
                if !kind.is_empty() && !name.is_empty() {
                    index.entry((kind, name)).or_default().push((fi, di));
                }
            }
        }
        Tracer {
            root: std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf()),
            index,
            sources,
            closures: HashMap::new(),
            texts: HashMap::new(),
        }
    }

    fn trace(&mut self, origin: &Origin, obj: &Json, path: &str) -> (String, Option<usize>) {
        let s = |p: &str| obj.pointer(p).and_then(Json::as_str).unwrap_or("");
        let (kind, ns, name) = (s("/kind"), s("/metadata/namespace"), s("/metadata/name"));
        let file = match origin {
            Origin::File(rel) => rel.to_string(),
            Origin::Build(dir) => match self.source_of(dir, kind, ns, name, path) {
                Some(f) => f,
                None => {
                    let rel = self.rel_dir(dir).unwrap_or_else(|| dir.to_path_buf());
                    return (self.kustomization_file(&rel), None);
                }
            },
        };
        let text = self
            .texts
            .entry(file.clone())
            .or_insert_with(|| std::fs::read_to_string(self.root.join(&file)).ok());
        let line = text
            .as_deref()
            .and_then(|t| super::line_of(t, kind, name, path));
        (file, line)
    }

    fn kustomization_file(&self, dir: &Path) -> String {
        let name = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
            .into_iter()
            .find(|n| self.root.join(dir).join(n).is_file())
            .unwrap_or("kustomization.yaml");
        let d = dir.display().to_string();
        if d.is_empty() {
            name.to_string()
        } else {
            format!("{d}/{name}")
        }
    }

    /// The file among the build's resources and patches that defines this
    /// object and most of `path`; resources win ties over patches.
    fn source_of(
        &mut self,
        dir: &Path,
        kind: &str,
        ns: &str,
        name: &str,
        path: &str,
    ) -> Option<String> {
        let rel_dir = self.rel_dir(dir)?;
        let root = self.root.clone();
        let files = self
            .closures
            .entry(rel_dir.clone())
            .or_insert_with(|| closure::closure(&root, &rel_dir).ok().map(|c| c.files))
            .as_ref()?;
        let segs = super::locate::segments(path);
        let mut best: Option<(usize, bool, &str)> = None;
        for &(fi, di) in self.index.get(&(kind, name))? {
            let (rel, docs) = &self.sources[fi];
            let Some(uses) = files.get(Path::new(rel)) else {
                continue;
            };
            let resource = uses.contains(&Use::Resource);
            if !resource && !uses.contains(&Use::Patch) {
                continue;
            }
            let doc = &docs[di];
            let dns = doc.str_at(&["metadata", "namespace"]).unwrap_or("");
            if !dns.is_empty() && dns != ns {
                continue;
            }
            let depth = depth_in(doc, &segs);
            let better = match best {
                None => true,
                Some((d, r, _)) => (depth, resource) > (d, r),
            };
            if better {
                best = Some((depth, resource, rel));
            }
        }
        best.map(|(_, _, f)| f.to_string())
    }

    fn rel_dir(&self, dir: &Path) -> Option<PathBuf> {
        let abs = std::fs::canonicalize(dir).ok()?;
        abs.strip_prefix(&self.root).ok().map(Path::to_path_buf)
    }
}

/// How many leading parts of the path `doc` has.
fn depth_in(doc: &Map, segs: &[super::locate::Seg]) -> usize {
    let mut cur = Some(doc);
    let mut item: Option<&Value> = None;
    let mut n = 0;
    for s in segs {
        let next = match (s, item, cur) {
            (super::locate::Seg::Key(k), None, Some(m)) => m.get(k),
            (super::locate::Seg::Key(k), Some(Value::Map(m)), _) => m.get(k),
            (super::locate::Seg::Index(i), Some(Value::Seq(items)), _) => items.get(*i),
            _ => None,
        };
        let Some(v) = next else { break };
        n += 1;
        item = Some(v);
        cur = None;
    }
    n
}
