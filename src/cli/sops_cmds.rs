//! The sops-compatible commands.

use std::path::{Path, PathBuf};

use clap::Args;
use rayon::prelude::*;
use zeroize::Zeroizing;

use super::flags::{DecryptionOrder, Formats, IgnoreMac, KeyFlags, SelectionFlags};
use super::{write_stdout, CliError, CliResult, GlobalArgs};
use crate::config::{self, Config};
use crate::error::escape_for_terminal;
use crate::error::exit;
use crate::formats::{Format, StoreOptions};
use crate::fsutil::show;
use crate::fsutil::{self, NewFileMode};
use crate::keys::KeyRing;
use crate::ops::{self, DecryptOptions, EncryptSpec};
use crate::sops::metadata::SelectionRules;

/// Arguments of `encrypt`.
#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// Files to encrypt (stdin when none; then --filename-override is required)
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write the result back to the same file (atomically)
    #[arg(short = 'i', long = "in-place")]
    pub in_place: bool,
    /// Write the result to this file instead of stdout
    #[arg(long, value_name = "FILE", conflicts_with = "output_dir")]
    pub output: Option<PathBuf>,
    /// Write each result into this folder (several files at once)
    #[arg(long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    #[command(flatten)]
    pub formats: Formats,
    /// Use this name for format detection and .sops.yaml matching (needed with stdin)
    #[arg(long = "filename-override", value_name = "NAME")]
    pub filename_override: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeyFlags,
    #[command(flatten)]
    pub selection: SelectionFlags,
    /// Number of key groups needed to decrypt (Shamir)
    #[arg(long = "shamir-secret-sharing-threshold", value_name = "N")]
    pub shamir_threshold: Option<usize>,
    /// Indentation of the output (legacy sops flag)
    #[arg(long, hide = true)]
    pub indent: Option<i64>,
}

/// Arguments of `decrypt`.
#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// Files to decrypt (stdin when none)
    #[arg(value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write the plaintext back to the same file (atomically)
    #[arg(short = 'i', long = "in-place")]
    pub in_place: bool,
    /// Print only this value or subtree, e.g. '["data"]["password"]'
    #[arg(long, value_name = "PATH")]
    pub extract: Option<String>,
    /// Write the plaintext to this file (mode 0600 if new) instead of stdout
    #[arg(long, value_name = "FILE", conflicts_with = "output_dir")]
    pub output: Option<PathBuf>,
    /// Write each plaintext into this folder (several files at once)
    #[arg(long = "output-dir", value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    #[command(flatten)]
    pub formats: Formats,
    #[command(flatten)]
    pub mac: IgnoreMac,
    /// Use this name for format detection (useful with stdin)
    #[arg(long = "filename-override", value_name = "NAME")]
    pub filename_override: Option<PathBuf>,
    #[command(flatten)]
    pub order: DecryptionOrder,
    /// Indentation of the output (legacy sops flag)
    #[arg(long, hide = true)]
    pub indent: Option<i64>,
}

pub(crate) fn conflict(msg: &str) -> CliError {
    CliError::new(exit::CONFLICTING_PARAMETERS, msg)
}

pub(crate) fn parse_format(name: Option<&str>, path: &Path) -> CliResult<Format> {
    match name.filter(|s| !s.is_empty()) {
        None => Ok(Format::from_path(path)),
        Some(n) => Format::from_name(n).ok_or_else(|| {
            CliError::new(
                exit::GENERIC,
                format!(
                    "unknown format {:?}: use yaml, json, dotenv, ini or binary",
                    escape_for_terminal(n)
                ),
            )
        }),
    }
}

/// Loads `.sops.yaml` (explicit or searched from the current directory).
pub(crate) fn load_config(g: &GlobalArgs) -> CliResult<Option<Config>> {
    config::locate(g.config.as_deref()).map_err(CliError::from)
}

pub(crate) fn store_options(cfg: Option<&Config>, indent: Option<i64>) -> CliResult<StoreOptions> {
    let mut s = cfg.map(|c| c.stores).unwrap_or_default();
    if let Some(i) = indent {
        if i < 0 {
            return Err(CliError::new(
                exit::GENERIC,
                "negative indentation is not accepted",
            ));
        }
        s.yaml_indent = i as usize;
        s.json_indent = Some(i as usize);
        s.json_binary_indent = Some(i as usize);
    }
    Ok(s)
}

pub(crate) fn key_ring(g: &GlobalArgs, order: Vec<String>) -> KeyRing {
    let mut ring = KeyRing::from_env(g.keys_dir.clone());
    ring.decryption_order = order;
    ring.services = g.key_services();
    ring
}

/// Whether a `.sops.yaml` must have a rule for the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuleMatch {
    /// Like sops: no matching rule is an error even with keys on the
    /// command line (the repository says where files may be encrypted).
    Required,
    /// Keys on the command line stand in for a rule (kustos's own commands
    /// whose output has no path of its own yet, like `secret git` to stdout).
    UnlessKeysGiven,
}

/// The encryption spec for a file: CLI keys replace config keys; CLI
/// selection options override the rule's.
pub(crate) fn encrypt_spec(
    g: &GlobalArgs,
    keys: &KeyFlags,
    sel: &SelectionFlags,
    threshold: Option<usize>,
    cfg: Option<&Config>,
    file: &Path,
    rules: RuleMatch,
) -> CliResult<EncryptSpec> {
    let cli_group = keys.group()?;
    let context = keys.context()?;
    let rule = match (cfg, rules) {
        (Some(c), RuleMatch::Required) => c.rule_for(file)?,
        (Some(c), RuleMatch::UnlessKeysGiven) => c.rule_for(file).or_else(|e| {
            if cli_group.is_some() {
                Ok(None)
            } else {
                Err(e)
            }
        })?,
        (None, _) => None,
    };
    let groups = match cli_group {
        Some(g) => vec![g],
        None => match rule {
            Some(r) => {
                if r.key_groups.iter().all(|g| g.is_empty()) && !r.unsupported_keys.is_empty() {
                    return Err(CliError::new(
                        exit::GENERIC,
                        format!(
                            "the matching creation rule only has {} keys, which kustos does not support",
                            r.unsupported_keys.join(", ")
                        ),
                    ));
                }
                if r.key_groups.is_empty() || r.key_groups.iter().any(|g| g.is_empty()) {
                    // sops' exact wording; its own test suite matches on it.
                    let mut e = CliError::new(
                        exit::GENERIC,
                        "Could not generate data key: [empty key group provided]",
                    );
                    e.exact = true;
                    return Err(e);
                }
                r.groups_with_context(&context)
            }
            None => {
                return Err(CliError::new(
                    exit::GENERIC,
                    "config file not found, or has no creation rules, and no keys provided through command line options",
                )
                .with_hint("pass --age RECIPIENT (or set SOPS_AGE_RECIPIENTS), or add a creation rule to .sops.yaml"))
            }
        },
    };
    let pick = |cli: &Option<String>, from_rule: fn(&SelectionRules) -> &String| -> String {
        match cli.as_deref().filter(|s| !s.is_empty()) {
            Some(v) => v.to_string(),
            None => rule
                .map(|r| from_rule(&r.rules).clone())
                .unwrap_or_default(),
        }
    };
    let rules = SelectionRules {
        unencrypted_suffix: pick(&sel.unencrypted_suffix, |r| &r.unencrypted_suffix),
        encrypted_suffix: pick(&sel.encrypted_suffix, |r| &r.encrypted_suffix),
        unencrypted_regex: pick(&sel.unencrypted_regex, |r| &r.unencrypted_regex),
        encrypted_regex: pick(&sel.encrypted_regex, |r| &r.encrypted_regex),
        unencrypted_comment_regex: pick(&sel.unencrypted_comment_regex, |r| {
            &r.unencrypted_comment_regex
        }),
        encrypted_comment_regex: pick(&sel.encrypted_comment_regex, |r| &r.encrypted_comment_regex),
    };
    if rules.count() > 1 {
        return Err(conflict("Error: cannot use more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, or unencrypted_comment_regex in the same file"));
    }
    for re in [
        &rules.unencrypted_regex,
        &rules.encrypted_regex,
        &rules.unencrypted_comment_regex,
        &rules.encrypted_comment_regex,
    ] {
        if !re.is_empty() {
            regex::Regex::new(re)
                .map_err(|e| CliError::new(exit::GENERIC, format!("invalid regex {re:?}: {e}")))?;
        }
    }
    Ok(EncryptSpec {
        groups,
        shamir_threshold: threshold
            .filter(|t| *t != 0)
            .or(rule.map(|r| r.shamir_threshold))
            .unwrap_or(0),
        rules,
        mac_only_encrypted: sel.mac_only_encrypted || rule.is_some_and(|r| r.mac_only_encrypted),
        services: g.key_services(),
    })
}

impl CliError {
    /// Adds a hint.
    pub fn with_hint(mut self, hint: &str) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Where one result goes.
enum Dest {
    Stdout,
    File(PathBuf, NewFileMode),
}

fn write_dest(dest: &Dest, data: &[u8]) -> CliResult {
    match dest {
        Dest::Stdout => write_stdout(data),
        Dest::File(p, mode) => fsutil::write_atomic(p, data, *mode).map_err(CliError::from),
    }
}

/// sops' message and code for a missing input of encrypt and decrypt (the
/// file name comes from the caller's prefix, once).
fn check_exists(p: &Path) -> CliResult {
    if !p.exists() {
        return Err(CliError::new(
            exit::NO_FILE_SPECIFIED,
            "Error: cannot operate on non-existent file",
        ));
    }
    Ok(())
}

/// Runs a per-file job over several files in parallel; prints each error and
/// returns the first error's code. Files the jobs write are committed
/// together at the end (one flush for the batch, see [`fsutil::Batch`]).
/// In-place results are flushed before they replace the sources; results
/// in an output folder are new files made from sources left untouched, so
/// they are only renamed into place (as `sops -d f > out` would, but never
/// half-written).
fn run_many<F>(files: &[PathBuf], in_place: bool, job: F) -> CliResult
where
    F: Fn(usize, &Path, &fsutil::Batch) -> CliResult + Sync,
{
    let batch = if in_place {
        fsutil::Batch::new()
    } else {
        fsutil::Batch::without_flush()
    };
    let results: Vec<(usize, CliResult)> = files
        .par_iter()
        .enumerate()
        .map(|(i, f)| (i, job(i, f, &batch).map_err(|e| e.in_file(&show(f)))))
        .collect();
    let mut first: Option<i32> = None;
    let mut failed = 0;
    // One line per failed file, its hint right below it the first time
    // that hint comes up.
    let mut hints: Vec<String> = Vec::new();
    for (_, r) in results {
        if let Err(mut e) = r {
            if let Some(h) = &e.hint {
                if hints.contains(h) {
                    e.hint = None;
                } else {
                    hints.push(h.clone());
                }
            }
            super::print_error(&e);
            failed += 1;
            first.get_or_insert(e.code);
        }
    }
    batch.commit().map_err(|e| CliError::from(e.error))?;
    match first {
        None => Ok(()),
        Some(code) => Err(CliError::new(
            code,
            format!("{failed} of {} files failed", files.len()),
        )),
    }
}

/// Where each input's result goes with `--output-dir DIR`: its path
/// relative to the inputs' closest common folder, under `DIR`, so
/// `tenants/*/auth.yaml` keeps every tenant's file. Refuses, before
/// anything is written, two inputs that would land on one output; creates
/// `DIR` and the folders below it 0700 (they may hold plaintext).
fn output_paths(files: &[PathBuf], dir: &Path) -> CliResult<Vec<PathBuf>> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let absolute: Vec<PathBuf> = files
        .iter()
        .map(|f| std::fs::canonicalize(f).unwrap_or_else(|_| cwd.join(f)))
        .collect();
    let mut common = absolute
        .first()
        .and_then(|p| p.parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for p in &absolute {
        while !p.starts_with(&common) {
            if !common.pop() {
                break;
            }
        }
    }
    let mut outs: Vec<PathBuf> = Vec::with_capacity(files.len());
    for (i, p) in absolute.iter().enumerate() {
        let rel = p.strip_prefix(&common).unwrap_or(p);
        let out = dir.join(rel);
        if let Some(j) = outs.iter().position(|o| *o == out) {
            return Err(conflict(&format!(
                "{} and {} would both be written to {}",
                show(&files[j]),
                show(&files[i]),
                show(&out)
            )));
        }
        outs.push(out);
    }
    for o in &outs {
        if let Some(parent) = o.parent() {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| CliError::from(crate::Error::io(show(parent), e)))?;
        }
    }
    Ok(outs)
}

/// Runs `job` for every input of a multi-file run (`--in-place` or
/// `--output-dir`; the CLI refuses several files otherwise) and stages its
/// result at the input itself or at its `--output-dir` path.
fn run_staged<F>(
    files: &[PathBuf],
    in_place: bool,
    output_dir: Option<&Path>,
    mode: NewFileMode,
    job: F,
) -> CliResult
where
    F: Fn(&Path) -> CliResult<Zeroizing<Vec<u8>>> + Sync,
{
    let targets = match output_dir {
        Some(dir) => output_paths(files, dir)?,
        None => files.to_vec(),
    };
    run_many(files, in_place, |i, f, batch| {
        let out = job(f)?;
        Ok(batch.stage(&targets[i], &out, mode)?)
    })
}

/// `kustos encrypt`.
pub fn encrypt(g: &GlobalArgs, a: EncryptArgs) -> CliResult {
    if a.files.is_empty() {
        if a.in_place {
            return Err(conflict(
                "Error: cannot use --in-place when reading from stdin",
            ));
        }
        if a.filename_override.is_none() {
            return Err(conflict(
                "Error: must specify --filename-override when reading from stdin",
            ));
        }
    }
    if a.in_place && (a.output.is_some() || a.output_dir.is_some()) {
        return Err(conflict(
            "Error: cannot operate on both --output and --in-place",
        ));
    }
    if a.files.len() > 1 && !a.in_place && a.output_dir.is_none() {
        return Err(conflict("several files need --in-place or --output-dir"));
    }
    let cfg = load_config(g)?;
    let store = store_options(cfg.as_ref(), a.indent)?;
    let one = |input: Option<&Path>| -> CliResult<Vec<u8>> {
        let name: PathBuf = match (&a.filename_override, input) {
            (Some(o), _) => o.clone(),
            (None, Some(p)) => p.to_path_buf(),
            (None, None) => PathBuf::new(),
        };
        let in_fmt = parse_format(a.formats.input_type.as_deref(), &name)?;
        let out_fmt = parse_format(a.formats.output_type.as_deref(), &name)?;
        let spec = encrypt_spec(
            g,
            &a.keys,
            &a.selection,
            a.shamir_threshold,
            cfg.as_ref(),
            &name,
            RuleMatch::Required,
        )?;
        let data = match input {
            Some(p) => {
                check_exists(p)?;
                fsutil::read_file(p)?
            }
            None => fsutil::read_stdin()?,
        };
        Ok(ops::encrypt_bytes(&data, in_fmt, out_fmt, &spec, &store)?)
    };
    if a.files.len() <= 1 && a.output_dir.is_none() {
        let input = a.files.first().map(PathBuf::as_path);
        let label = input.map(show).unwrap_or_else(|| "<stdin>".into());
        let out = one(input).map_err(|e| e.in_file(&label))?;
        let dest = match (&a.output, a.in_place, input) {
            (Some(o), _, _) => Dest::File(o.clone(), NewFileMode::Shared),
            (None, true, Some(p)) => Dest::File(p.to_path_buf(), NewFileMode::Shared),
            _ => Dest::Stdout,
        };
        return write_dest(&dest, &out).map_err(|e| e.in_file(&label));
    }
    run_staged(
        &a.files,
        a.in_place,
        a.output_dir.as_deref(),
        NewFileMode::Shared,
        |f| Ok(Zeroizing::new(one(Some(f))?)),
    )
}

/// `kustos decrypt`.
pub fn decrypt(g: &GlobalArgs, a: DecryptArgs) -> CliResult {
    if a.files.is_empty() && a.in_place {
        return Err(conflict(
            "Error: cannot use --in-place when reading from stdin",
        ));
    }
    if a.in_place && (a.output.is_some() || a.output_dir.is_some()) {
        return Err(conflict(
            "Error: cannot operate on both --output and --in-place",
        ));
    }
    if a.files.len() > 1 && !a.in_place && a.output_dir.is_none() {
        return Err(conflict("several files need --in-place or --output-dir"));
    }
    let order = a.order.resolve()?;
    let extract = match a.extract.as_deref() {
        Some(p) => Some(ops::parse_tree_path(p).map_err(|e| {
            CliError::new(
                exit::INVALID_TREE_PATH_FORMAT,
                format!("error parsing --extract path: {e}"),
            )
        })?),
        None => None,
    };
    // Decryption does not need .sops.yaml, but sops reads its store settings.
    let cfg = load_config(g)?;
    let store = store_options(cfg.as_ref(), a.indent)?;
    let ring = key_ring(g, order);
    let opts = DecryptOptions {
        ignore_mac: a.mac.ignore_mac,
        extract,
    };
    let one = |input: Option<&Path>| -> CliResult<Zeroizing<Vec<u8>>> {
        let name: PathBuf = match (&a.filename_override, input) {
            (Some(o), _) => o.clone(),
            (None, Some(p)) => p.to_path_buf(),
            (None, None) => PathBuf::new(),
        };
        let in_fmt = parse_format(a.formats.input_type.as_deref(), &name)?;
        let out_fmt = parse_format(a.formats.output_type.as_deref(), &name)?;
        let data = match input {
            Some(p) => {
                check_exists(p)?;
                fsutil::read_file(p)?
            }
            None => fsutil::read_stdin()?,
        };
        ops::decrypt_bytes(&data, in_fmt, out_fmt, &ring, &opts, &store)
            .map_err(super::file_cmds::loading_encrypted)
    };
    if a.files.len() <= 1 && a.output_dir.is_none() {
        let input = a.files.first().map(PathBuf::as_path);
        let label = input.map(show).unwrap_or_else(|| "<stdin>".into());
        let out = one(input).map_err(|e| e.in_file(&label))?;
        let dest = match (&a.output, a.in_place, input) {
            (Some(o), _, _) => Dest::File(o.clone(), NewFileMode::Private),
            (None, true, Some(p)) => Dest::File(p.to_path_buf(), NewFileMode::Private),
            _ => Dest::Stdout,
        };
        return write_dest(&dest, &out).map_err(|e| e.in_file(&label));
    }
    run_staged(
        &a.files,
        a.in_place,
        a.output_dir.as_deref(),
        NewFileMode::Private,
        |f| one(Some(f)),
    )
}
