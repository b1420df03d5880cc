//! Fleet-wide key operations: status, updatekeys and rotate over every SOPS
//! file of a repository, in parallel, all or nothing.
//!
//! A run has three phases. (1) Every file is read, changed **in memory** and
//! checked (its MAC verifies under the data key, and every stanza whose
//! identity is at hand unwraps to that key); any failure stops the run with
//! nothing written. (2) All new contents go to temporary files next to their
//! targets. (3) The temporary files are renamed over the originals; should a
//! rename fail, the files already replaced get their old content back.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::config::Config;
use crate::formats::{self, Format};
use crate::keys::{self, KeyRing, MasterKey};
use crate::ops::rekey::{self, KeyChanges};
use crate::sops::{tree, Cipher, DataKey, Tree};
use crate::{fsutil, Error, Result};

/// Largest file considered.
const MAX_FILE: u64 = 16 << 20;

/// A SOPS file found by content.
#[derive(Clone, Debug)]
pub struct SopsFile {
    /// Path relative to the fleet root.
    pub rel: PathBuf,
    /// Absolute path.
    pub path: PathBuf,
    /// Its store.
    pub format: Format,
}

/// The files a fleet operation looks at: regular files of a sane size
/// (links are skipped: rewriting one would replace it with a file, and what
/// it names is visited under its own name).
fn candidates(root: &Path) -> Vec<PathBuf> {
    crate::fsutil::walk(root)
        .into_iter()
        .filter(|e| !e.is_dir && !e.is_link && e.len <= MAX_FILE)
        .map(|e| e.path)
        .collect()
}

/// The store a file's content says it is in, if it is a SOPS file.
pub fn detect(data: &[u8]) -> Option<Format> {
    let has = |n: &[u8]| data.windows(n.len()).any(|w| w == n);
    if has(b"sops_mac=ENC[") || has(b"sops_version=") {
        Some(Format::Dotenv)
    } else if (has(b"\"sops\": {") && has(b"\"mac\":"))
        || (data.starts_with(b"{") && has(b"\"sops\":"))
    {
        Some(Format::Json)
    } else if has(b"\nsops:\n") || data.starts_with(b"sops:\n") {
        Some(Format::Yaml)
    } else if has(b"[sops]") {
        Some(Format::Ini)
    } else {
        None
    }
}

/// Every SOPS file under `root`, by content.
pub fn find(root: &Path) -> Vec<SopsFile> {
    candidates(root)
        .into_par_iter()
        .filter_map(|p| {
            let data = std::fs::read(&p).ok()?;
            let format = detect(&data)?;
            formats::load_encrypted(format, &data).ok()?;
            Some(SopsFile {
                rel: p.strip_prefix(root).unwrap_or(&p).to_path_buf(),
                path: p,
                format,
            })
        })
        .collect()
}

/// One row of `fleet status`.
#[derive(Clone, Debug, Serialize)]
pub struct FileStatus {
    /// Path relative to the root.
    pub file: String,
    /// Store.
    pub format: &'static str,
    /// Recipients per key group.
    pub groups: Vec<Vec<String>>,
    /// Shamir threshold (0 = not used).
    pub shamir_threshold: usize,
    /// Last encryption time.
    pub lastmodified: String,
    /// `match`, `differs`, `no-rule` or `no-config`.
    pub rule: String,
}

/// The result of `fleet status`.
#[derive(Clone, Debug, Serialize, Default)]
pub struct Status {
    /// SOPS files found.
    pub encrypted: Vec<FileStatus>,
    /// Kubernetes Secrets in YAML files that are not encrypted.
    pub plaintext_secrets: Vec<String>,
}

fn names(groups: &[Vec<MasterKey>]) -> Vec<Vec<String>> {
    groups
        .iter()
        .map(|g| {
            let mut v: Vec<String> = g.iter().map(MasterKey::name).collect();
            v.sort();
            v
        })
        .collect()
}

/// Lists the SOPS files and the plaintext Secrets of a fleet.
pub fn status(root: &Path, cfg: Option<&Config>) -> Result<Status> {
    let files = candidates(root);
    let rows: Vec<(Option<FileStatus>, Vec<String>)> = files
        .par_iter()
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap_or(p).display().to_string();
            let Ok(data) = std::fs::read(p) else {
                return (None, Vec::new());
            };
            if let Some(format) = detect(&data) {
                if let Ok(t) = formats::load_encrypted(format, &data) {
                    let groups = names(&t.metadata.key_groups);
                    let rule = match cfg {
                        None => "no-config".to_string(),
                        Some(c) => match c.rule_for(p) {
                            Ok(Some(r)) => {
                                let want: Vec<Vec<String>> = r
                                    .key_groups
                                    .iter()
                                    .map(|g| {
                                        let mut v: Vec<String> =
                                            g.iter().map(|x| x.name().to_string()).collect();
                                        v.sort();
                                        v
                                    })
                                    .collect();
                                if want == groups { "match" } else { "differs" }.to_string()
                            }
                            _ => "no-rule".to_string(),
                        },
                    };
                    return (
                        Some(FileStatus {
                            file: rel,
                            format: format.name(),
                            groups,
                            shamir_threshold: t.metadata.shamir_threshold,
                            lastmodified: t.metadata.last_modified.rfc3339(),
                            rule,
                        }),
                        Vec::new(),
                    );
                }
            }
            let is_yaml = rel.ends_with(".yaml") || rel.ends_with(".yml");
            let mut plain = Vec::new();
            if is_yaml {
                if let Ok(docs) = formats::load_plain(Format::Yaml, &data) {
                    for d in docs {
                        let kind = d.get("kind").and_then(|v| v.as_str()).unwrap_or("");
                        if kind == "Secret"
                            && d.get("apiVersion").and_then(|v| v.as_str()) == Some("v1")
                        {
                            let name = d
                                .get("metadata")
                                .and_then(|m| m.as_map())
                                .and_then(|m| m.get("name"))
                                .and_then(|v| v.as_str())
                                .unwrap_or("?");
                            plain.push(format!("{rel} (Secret/{name})"));
                        }
                    }
                }
            }
            (None, plain)
        })
        .collect();
    let mut st = Status::default();
    for (f, p) in rows {
        if let Some(f) = f {
            st.encrypted.push(f);
        }
        st.plaintext_secrets.extend(p);
    }
    Ok(st)
}

/// What to do with each file.
#[derive(Clone, Debug)]
pub enum Operation {
    /// Rewrap the data key for each file's creation rule.
    UpdateKeys,
    /// New data key, with optional key changes.
    Rotate(KeyChanges),
}

/// The outcome for one file.
#[derive(Clone, Debug, Serialize)]
pub struct FileResult {
    /// Path relative to the root.
    pub file: String,
    /// `updated`, `unchanged` or `skipped` (no matching rule).
    pub result: &'static str,
    /// Keys (recipients, fingerprints) the file gains.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub added: Vec<String>,
    /// Keys the file loses.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// A finished (or dry) run.
#[derive(Clone, Debug, Serialize, Default)]
pub struct RunReport {
    /// Per file.
    pub files: Vec<FileResult>,
    /// Files written.
    pub updated: usize,
    /// Nothing was written (dry run).
    pub dry_run: bool,
}

struct Prepared {
    file: SopsFile,
    old: Vec<u8>,
    new: Option<Vec<u8>>,
    skipped: bool,
    added: Vec<String>,
    removed: Vec<String>,
}

impl Prepared {
    fn unchanged(file: SopsFile, old: Vec<u8>, skipped: bool) -> Prepared {
        Prepared {
            file,
            old,
            new: None,
            skipped,
            added: Vec::new(),
            removed: Vec::new(),
        }
    }
}

/// The key names of all groups of a file.
fn key_names(t: &Tree) -> Vec<String> {
    t.metadata.master_keys().map(MasterKey::name).collect()
}

/// Checks a new file: MAC under `key`, and every stanza we can open gives
/// `key`. A KMS stanza counts as one we can open only when the ring already
/// holds its plaintext: asking KMS again for each new file would double the
/// calls a fleet run makes.
fn verify(new: &[u8], format: Format, key: &DataKey, ring: &KeyRing) -> Result<()> {
    let mut t = formats::load_encrypted(format, new)?;
    for mk in t.metadata.master_keys() {
        if t.metadata.key_groups.len() > 1 {
            break; // shares, not the key; the full recovery below covers it
        }
        let opened = match mk {
            MasterKey::Kms { .. } => ring.unwrap_cached(mk).ok_or(()),
            _ => ring.unwrap(mk).map_err(|_| ()),
        };
        if let Ok(k) = opened {
            if k.as_slice() != key.as_bytes() {
                return Err(Error::Other(format!(
                    "the new stanza for {} does not hold the data key",
                    mk.name()
                )));
            }
        }
    }
    let mut cipher = Cipher::read_only(key);
    tree::decrypt(&mut t.branches, &t.metadata, &mut cipher, false)
}

fn prepare(
    f: SopsFile,
    op: &Operation,
    cfg: Option<&Config>,
    ring: &KeyRing,
    store: &formats::StoreOptions,
) -> Result<Prepared> {
    let ctx = |e: Error| Error::Other(format!("{}: {e}", f.rel.display()));
    let old = fsutil::read_file(&f.path).map_err(ctx)?.to_vec();
    let mut t: Tree = formats::load_encrypted(f.format, &old).map_err(ctx)?;
    match op {
        Operation::UpdateKeys => {
            let rule = match cfg.map(|c| c.rule_for(&f.path)) {
                Some(Ok(Some(r))) => r,
                _ => return Ok(Prepared::unchanged(f, old, true)),
            };
            let diffs = rekey::diff_groups(&t.metadata.key_groups, &rule.key_groups);
            let threshold = t.metadata.shamir_threshold.min(rule.key_groups.len());
            let changes = diffs
                .iter()
                .any(|d| !d.added.is_empty() || !d.removed.is_empty())
                || threshold != t.metadata.shamir_threshold;
            if !changes {
                return Ok(Prepared::unchanged(f, old, false));
            }
            let added = diffs.iter().flat_map(|d| d.added.clone()).collect();
            let removed = diffs.iter().flat_map(|d| d.removed.clone()).collect();
            let key =
                keys::recover_data_key(&t.metadata.key_groups, t.metadata.shamir_threshold, ring)
                    .map_err(|e| ctx(e.into()))?;
            rekey::rewrap(&mut t, &key, &rule.key_groups, threshold, &ring.services)
                .map_err(ctx)?;
            let new = formats::emit_encrypted(f.format, &t, store).map_err(ctx)?;
            verify(&new, f.format, &key, ring).map_err(ctx)?;
            Ok(Prepared {
                file: f,
                old,
                new: Some(new),
                skipped: false,
                added,
                removed,
            })
        }
        Operation::Rotate(changes) => {
            let before = key_names(&t);
            let key =
                keys::recover_data_key(&t.metadata.key_groups, t.metadata.shamir_threshold, ring)
                    .map_err(|e| ctx(e.into()))?;
            let mut cipher = Cipher::new(&key);
            tree::decrypt(&mut t.branches, &t.metadata, &mut cipher, false).map_err(ctx)?;
            rekey::rotate_tree(&mut t, &mut cipher, changes, &ring.services).map_err(ctx)?;
            let new_key = cipher.key().clone();
            let after = key_names(&t);
            let new = formats::emit_encrypted(f.format, &t, store).map_err(ctx)?;
            verify(&new, f.format, &new_key, ring).map_err(ctx)?;
            Ok(Prepared {
                file: f,
                old,
                new: Some(new),
                skipped: false,
                added: after
                    .iter()
                    .filter(|k| !before.contains(k))
                    .cloned()
                    .collect(),
                removed: before
                    .iter()
                    .filter(|k| !after.contains(k))
                    .cloned()
                    .collect(),
            })
        }
    }
}

/// Runs an operation over every SOPS file under `root`, all or nothing.
/// `progress` is called with (done, total) as files are prepared.
pub fn run(
    root: &Path,
    op: &Operation,
    cfg: Option<&Config>,
    ring: &KeyRing,
    dry_run: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<RunReport> {
    let store = cfg.map(|c| c.stores).unwrap_or_default();
    let files = find(root);
    let total = files.len();
    let done = AtomicUsize::new(0);
    let prepared: Vec<Result<Prepared>> = files
        .into_par_iter()
        .map(|f| {
            let r = prepare(f, op, cfg, ring, &store);
            progress(done.fetch_add(1, Ordering::Relaxed) + 1, total);
            r
        })
        .collect();
    // Phase 1 verdict: the first failure (in path order) stops everything.
    let mut ok = Vec::with_capacity(prepared.len());
    let mut errors = Vec::new();
    for p in prepared {
        match p {
            Ok(p) => ok.push(p),
            Err(e) => errors.push(e.to_string()),
        }
    }
    if !errors.is_empty() {
        errors.sort();
        let more = if errors.len() > 1 {
            format!(" (and {} more)", errors.len() - 1)
        } else {
            String::new()
        };
        return Err(Error::Other(format!(
            "nothing was changed: {}{more}",
            errors[0]
        )));
    }
    ok.sort_by(|a, b| a.file.rel.cmp(&b.file.rel));
    let mut report = RunReport {
        dry_run,
        ..Default::default()
    };
    for p in &ok {
        report.files.push(FileResult {
            file: p.file.rel.display().to_string(),
            result: if p.skipped {
                "skipped"
            } else if p.new.is_some() {
                "updated"
            } else {
                "unchanged"
            },
            added: p.added.clone(),
            removed: p.removed.clone(),
        });
    }
    report.updated = ok.iter().filter(|p| p.new.is_some()).count();
    if dry_run {
        return Ok(report);
    }
    commit(&ok)?;
    Ok(report)
}

/// Phases 2 and 3: temporary files for everything (one flush for all), then
/// renames, with rollback if a rename fails.
fn commit(prepared: &[Prepared]) -> Result<()> {
    let batch = fsutil::Batch::new();
    let changed: Vec<&Prepared> = prepared.iter().filter(|p| p.new.is_some()).collect();
    changed.par_iter().try_for_each(|p| {
        let new = p.new.as_deref().unwrap_or_default();
        batch
            .stage(&p.file.path, new, fsutil::NewFileMode::Shared)
            .map_err(|e| Error::Write(format!("{}: {e}", p.file.rel.display())))
    })?;
    if let Err(e) = batch.commit() {
        // Put back what was already replaced.
        let mut restored = 0;
        for d in changed.iter().filter(|d| e.replaced.contains(&d.file.path)) {
            if fsutil::write_atomic(&d.file.path, &d.old, fsutil::NewFileMode::Shared).is_ok() {
                restored += 1;
            }
        }
        return Err(Error::Write(format!(
            "{}; {restored} files already replaced were restored",
            e.error
        )));
    }
    Ok(())
}

/// Decrypts many files in one process (used by the benchmark and CI checks).
pub fn decrypt_all(files: &[PathBuf], ring: &KeyRing) -> Vec<Result<Zeroizing<Vec<u8>>>> {
    files
        .par_iter()
        .map(|p| {
            let data = fsutil::read_file(p)?;
            let f = detect(&data).unwrap_or_else(|| Format::from_path(p));
            crate::ops::decrypt_bytes(&data, f, f, ring, &Default::default(), &Default::default())
        })
        .collect()
}
