//! The fleet's source policy: the URLs tenants' sources may point at, as
//! the Kyverno ClusterPolicies under `infrastructure/` say.
//!
//! Two shapes are read: the one `kustos init` writes (`verify-sources.yaml`,
//! one `anyPattern` entry per allowed URL pattern) and the one of the
//! flux2-multi-tenancy reference repository
//! (`verify-git-repositories.yaml`, one `pattern.spec.url` string whose
//! alternatives are separated by ` | `). `validate` checks sources against
//! it, `tenant add` refuses a Git URL outside it and `--allow-source`
//! extends it in place.

use std::path::{Path, PathBuf};

use crate::formats::{self, Format};
use crate::sops::value::{Map, Value};
use crate::{Error, Result};

/// The source kinds a policy rule may cover.
const SOURCE_KINDS: [&str; 3] = ["GitRepository", "HelmRepository", "OCIRepository"];

/// The allowed URL patterns and the file that holds them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourcePolicy {
    /// The policy file, relative to the repository root.
    pub file: PathBuf,
    /// Kyverno wildcard patterns (`*`, `?`).
    pub patterns: Vec<String>,
}

/// Kyverno wildcard match: `*` any run of characters, `?` one character.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(sp) = star {
            pi = sp + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

impl SourcePolicy {
    /// Whether `url` matches one of the patterns.
    pub fn allows(&self, url: &str) -> bool {
        self.patterns.iter().any(|p| wildcard_match(p, url))
    }
}

fn rules_of(doc: &Map) -> Vec<&Map> {
    match doc
        .get("spec")
        .and_then(Value::as_map)
        .and_then(|s| s.get("rules"))
    {
        Some(Value::Seq(rules)) => rules.iter().filter_map(Value::as_map).collect(),
        _ => Vec::new(),
    }
}

/// Whether a rule matches one of the source kinds.
fn covers_sources(rule: &Map) -> bool {
    let Some(Value::Seq(any)) = rule
        .get("match")
        .and_then(Value::as_map)
        .and_then(|m| m.get("any"))
    else {
        return false;
    };
    any.iter().filter_map(Value::as_map).any(|a| {
        matches!(
            a.get("resources").and_then(Value::as_map).and_then(|r| r.get("kinds")),
            Some(Value::Seq(kinds)) if kinds.iter().filter_map(Value::as_str).any(|k| SOURCE_KINDS.contains(&k))
        )
    })
}

/// The URL patterns of one rule (either shape).
fn patterns_of(rule: &Map) -> Vec<String> {
    let Some(v) = rule.get("validate").and_then(Value::as_map) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(Value::Seq(any)) = v.get("anyPattern") {
        for p in any.iter().filter_map(Value::as_map) {
            if let Some(u) = p.str_at(&["spec", "url"]) {
                out.push(u.to_string());
            }
        }
    }
    if let Some(u) = v
        .get("pattern")
        .and_then(Value::as_map)
        .and_then(|p| p.str_at(&["spec", "url"]))
    {
        out.extend(
            u.split('|')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from),
        );
    }
    out
}

/// The ClusterPolicy files that could hold a source policy.
fn candidates(root: &Path) -> Vec<PathBuf> {
    crate::fsutil::walk(&root.join("infrastructure"))
        .into_iter()
        .filter(|e| !e.is_dir && !e.is_hidden())
        .filter(|e| {
            let n = e.name();
            n.ends_with(".yaml") || n.ends_with(".yml")
        })
        .map(|e| PathBuf::from("infrastructure").join(e.rel))
        .collect()
}

/// Reads the fleet's source policy, if it has one.
pub fn read(root: &Path) -> Option<SourcePolicy> {
    for rel in candidates(root) {
        let Ok(bytes) = std::fs::read(root.join(&rel)) else {
            continue;
        };
        if !bytes.windows(13).any(|w| w == b"ClusterPolicy") {
            continue;
        }
        let Ok(docs) = formats::load_plain(Format::Yaml, &bytes) else {
            continue;
        };
        let mut patterns: Vec<String> = Vec::new();
        for d in &docs {
            if d.get("kind").and_then(Value::as_str) != Some("ClusterPolicy") {
                continue;
            }
            for r in rules_of(d).into_iter().filter(|r| covers_sources(r)) {
                for p in patterns_of(r) {
                    if !patterns.contains(&p) {
                        patterns.push(p);
                    }
                }
            }
        }
        if !patterns.is_empty() {
            return Some(SourcePolicy {
                file: rel,
                patterns,
            });
        }
    }
    None
}

/// The policy file's new content with `pattern` allowed in every rule
/// that covers sources (kept as it is when already allowed).
pub fn with_pattern(root: &Path, policy: &SourcePolicy, pattern: &str) -> Result<Vec<u8>> {
    let path = root.join(&policy.file);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(path.display(), e))?;
    let mut docs = formats::load_plain(Format::Yaml, &bytes)?;
    for d in docs.iter_mut() {
        let Some(Value::Seq(rules)) = d.get_mut("spec").and_then(|s| match s {
            Value::Map(m) => m.get_mut("rules"),
            _ => None,
        }) else {
            continue;
        };
        for r in rules.iter_mut() {
            let Value::Map(rule) = r else { continue };
            if !covers_sources(rule) || patterns_of(rule).iter().any(|p| p == pattern) {
                continue;
            }
            add_pattern(rule, pattern);
        }
    }
    Ok(formats::yaml::emit_plain(&docs, 2))
}

fn add_pattern(rule: &mut Map, pattern: &str) {
    let Some(Value::Map(v)) = rule.get_mut("validate") else {
        return;
    };
    if let Some(Value::Seq(any)) = v.get_mut("anyPattern") {
        let mut spec = Map::new();
        spec.push("url", Value::str(pattern));
        let mut entry = Map::new();
        entry.push("spec", Value::Map(spec));
        any.push(Value::Map(entry));
        return;
    }
    if let Some(Value::Map(p)) = v.get_mut("pattern") {
        if let Some(Value::Map(spec)) = p.get_mut("spec") {
            if let Some(Value::Str(t)) = spec.get_mut("url") {
                let joined = format!("{} | {pattern}", t.to_str_lossy());
                *t = crate::sops::value::Text::new(joined);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kyverno_wildcards() {
        assert!(wildcard_match(
            "https://github.com/org/?*",
            "https://github.com/org/repo"
        ));
        assert!(!wildcard_match(
            "https://github.com/org/?*",
            "https://github.com/org/"
        ));
        assert!(!wildcard_match(
            "https://github.com/org/*",
            "https://github.com/evil/repo"
        ));
        assert!(wildcard_match("*", "anything"));
    }

    const REFERENCE: &str = "apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: verify-git-repositories
spec:
  rules:
    - name: github-repositories-only
      match:
        any:
        - resources:
            kinds:
              - GitRepository
      validate:
        message: \".spec.url must be from a repository within the organisation X\"
        pattern:
          spec:
            url: https://github.com/fluxcd/?* | ssh://git@github.com:fluxcd/?*
";

    #[test]
    fn reads_and_extends_both_shapes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("infrastructure/kyverno-policies");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("verify-git-repositories.yaml"), REFERENCE).unwrap();
        let pol = read(d.path()).unwrap();
        assert_eq!(
            pol.patterns,
            [
                "https://github.com/fluxcd/?*",
                "ssh://git@github.com:fluxcd/?*"
            ]
        );
        assert!(pol.allows("https://github.com/fluxcd/flux2-multi-tenancy"));
        assert!(!pol.allows("https://gitlab.example.com/org/repo"));
        let new = with_pattern(d.path(), &pol, "https://gitlab.example.com/org/*").unwrap();
        std::fs::write(p.join("verify-git-repositories.yaml"), &new).unwrap();
        assert!(read(d.path())
            .unwrap()
            .allows("https://gitlab.example.com/org/repo"));

        std::fs::remove_file(p.join("verify-git-repositories.yaml")).unwrap();
        std::fs::write(
            p.join("verify-sources.yaml"),
            super::super::templates::policy_verify_sources(&["https://github.com/org/*".into()]),
        )
        .unwrap();
        let pol = read(d.path()).unwrap();
        assert_eq!(pol.patterns, ["https://github.com/org/*"]);
        let new = with_pattern(d.path(), &pol, "ssh://git@github.com/org/*").unwrap();
        std::fs::write(p.join("verify-sources.yaml"), &new).unwrap();
        let again = read(d.path()).unwrap();
        assert!(again.allows("ssh://git@github.com/org/repo"));
        assert!(again.allows("https://github.com/org/repo"));
    }
}
