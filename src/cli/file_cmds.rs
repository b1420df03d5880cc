//! sops commands that change an encrypted file or run something with it:
//! rotate, updatekeys, set, unset, edit, filestatus, exec-env, exec-file.

use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};

use clap::Args;
use zeroize::Zeroizing;

use super::flags::{DecryptionOrder, Formats, IgnoreMac, InputFormat, KeyFlags, SelectionFlags};
use super::sops_cmds::{
    conflict, encrypt_spec, key_ring, load_config, parse_format, store_options,
};
use super::{write_stdout, CliError, CliResult, GlobalArgs};
use crate::error::escape_for_terminal;
use crate::error::exit;
use crate::formats::{self, Format, StoreOptions};
use crate::fsutil::show;
use crate::fsutil::{self, NewFileMode};
use crate::keys;
use crate::ops::rekey::{diff_groups, rewrap, rotate_tree, KeyChanges};
use crate::ops::{self, PathElem};
use crate::sops::value::{Item, Map, Value};
use crate::sops::{Cipher, DataKey, Tree};

/// A missing input file, reported with the code sops uses for the
/// command: `Error reading file` (2) for commands that load and decrypt it
/// (set, unset, rotate, exec-env, exec-file), 1 for updatekeys and
/// filestatus.
fn must_exist(p: &Path, code: i32) -> CliResult {
    if !p.exists() {
        return Err(CliError::new(
            code,
            "Error reading file: no such file or directory",
        ));
    }
    Ok(())
}

/// An error loading an encrypted file: sops gives a malformed one its
/// generic code (a plaintext file's parse error, when encrypting, is 2).
pub(crate) fn loading_encrypted(e: crate::Error) -> CliError {
    let generic = matches!(e, crate::Error::Parse { .. });
    let mut c = CliError::from(e);
    if generic {
        c.code = exit::GENERIC;
    }
    c
}

/// Loads and decrypts a file, keeping the cipher for re-encryption.
fn open(
    g: &GlobalArgs,
    file: &Path,
    fmt: Format,
    order: &DecryptionOrder,
    ignore_mac: bool,
) -> CliResult<(Tree, Cipher)> {
    must_exist(file, exit::COULD_NOT_READ_INPUT_FILE)?;
    let data = fsutil::read_file(file)?;
    let mut tree = formats::load_encrypted(fmt, &data).map_err(loading_encrypted)?;
    let ring = key_ring(g, order.resolve()?);
    let cipher = ops::decrypt_tree(&mut tree, &ring, ignore_mac)?;
    Ok((tree, cipher))
}

fn close(
    tree: &mut Tree,
    cipher: &mut Cipher,
    fmt: Format,
    store: &StoreOptions,
) -> CliResult<Vec<u8>> {
    ops::reencrypt(tree, cipher)?;
    Ok(formats::emit_encrypted(fmt, tree, store)?)
}

/// Arguments of `rotate`.
#[derive(Args, Debug)]
pub struct RotateArgs {
    /// The encrypted file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Write the result back to the file (atomically)
    #[arg(short = 'i', long = "in-place")]
    pub in_place: bool,
    /// Write the result to this file
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub formats: Formats,
    /// Add age recipients (comma separated) to the first key group
    #[arg(long = "add-age", value_name = "RECIPIENTS")]
    pub add_age: Option<String>,
    /// Remove age recipients from every key group
    #[arg(long = "rm-age", value_name = "RECIPIENTS")]
    pub rm_age: Option<String>,
    /// Add PGP fingerprints to the first key group
    #[arg(long = "add-pgp", value_name = "FPRS")]
    pub add_pgp: Option<String>,
    /// Remove PGP fingerprints from every key group
    #[arg(long = "rm-pgp", value_name = "FPRS")]
    pub rm_pgp: Option<String>,
    /// Add AWS KMS key ARNs (comma separated, each optionally +ROLE_ARN) to the first key group
    #[arg(long = "add-kms", value_name = "ARNS")]
    pub add_kms: Option<String>,
    /// Remove AWS KMS keys from every key group
    #[arg(long = "rm-kms", value_name = "ARNS")]
    pub rm_kms: Option<String>,
    #[arg(long = "add-gcp-kms", hide = true)]
    #[allow(missing_docs)]
    pub add_gcp_kms: Option<String>,
    #[arg(long = "rm-gcp-kms", hide = true)]
    #[allow(missing_docs)]
    pub rm_gcp_kms: Option<String>,
    #[arg(long = "add-azure-kv", hide = true)]
    #[allow(missing_docs)]
    pub add_azure_kv: Option<String>,
    #[arg(long = "rm-azure-kv", hide = true)]
    #[allow(missing_docs)]
    pub rm_azure_kv: Option<String>,
    #[arg(long = "add-hc-vault-transit", hide = true)]
    #[allow(missing_docs)]
    pub add_hc_vault: Option<String>,
    #[arg(long = "rm-hc-vault-transit", hide = true)]
    #[allow(missing_docs)]
    pub rm_hc_vault: Option<String>,
    /// Use this name for format detection
    #[arg(long = "filename-override", value_name = "NAME")]
    pub filename_override: Option<PathBuf>,
    #[command(flatten)]
    pub order: DecryptionOrder,
    /// KMS encryption context of the --add-kms/--rm-kms keys, e.g. team:web
    #[arg(long = "encryption-context", value_name = "PAIRS")]
    pub encryption_context: Option<String>,
    /// The AWS profile of the --add-kms/--rm-kms keys
    #[arg(long = "aws-profile", value_name = "PROFILE")]
    pub aws_profile: Option<String>,
    /// Indentation of YAML/JSON output (sops' global --indent)
    #[arg(long, hide = true, value_name = "N")]
    pub indent: Option<i64>,
}

/// `kustos rotate`.
pub fn rotate(g: &GlobalArgs, a: RotateArgs) -> CliResult {
    if a.in_place && a.output.is_some() {
        return Err(conflict(
            "Error: cannot operate on both --output and --in-place",
        ));
    }
    for v in [
        &a.add_gcp_kms,
        &a.rm_gcp_kms,
        &a.add_azure_kv,
        &a.rm_azure_kv,
        &a.add_hc_vault,
        &a.rm_hc_vault,
    ] {
        if v.as_deref().is_some_and(|s| !s.is_empty()) {
            return Err(CliError::new(
                exit::GENERIC,
                "GCP KMS, Azure Key Vault and Vault keys are not supported by kustos; use age, PGP or AWS KMS",
            ));
        }
    }
    // sops' rotate takes a malformed context as none (it checks the format
    // only where it builds new key groups).
    let context = crate::keys::kms::parse_context(a.encryption_context.as_deref().unwrap_or(""))
        .unwrap_or_default();
    let changes = KeyChanges::parse(&a.add_age, &a.rm_age, &a.add_pgp, &a.rm_pgp)?.with_kms(
        &a.add_kms,
        &a.rm_kms,
        &context,
        a.aws_profile.as_deref().unwrap_or(""),
    )?;
    if !a.file.exists() && !changes.is_empty() {
        return Err(CliError::new(
            exit::CANNOT_CHANGE_KEYS_FROM_NON_EXISTENT_FILE,
            format!("Error: cannot add or remove keys on non-existent file {:?}, use the `edit` subcommand instead.", show(&a.file)),
        ));
    }
    let label = show(&a.file);
    let name = a
        .filename_override
        .clone()
        .unwrap_or_else(|| a.file.clone());
    let in_fmt = parse_format(a.formats.input_type.as_deref(), &name)?;
    let out_fmt = parse_format(a.formats.output_type.as_deref(), &name)?;
    let cfg = load_config(g)?;
    let store = store_options(cfg.as_ref(), a.indent)?;
    let run = || -> CliResult<Vec<u8>> {
        let (mut tree, mut cipher) = open(g, &a.file, in_fmt, &a.order, false)?;
        rotate_tree(&mut tree, &mut cipher, &changes, &g.key_services())?;
        Ok(formats::emit_encrypted(out_fmt, &tree, &store)?)
    };
    let out = run().map_err(|e| e.in_file(&label))?;
    match (&a.output, a.in_place) {
        (Some(o), _) => fsutil::write_atomic(o, &out, NewFileMode::Shared)?,
        (None, true) => fsutil::write_atomic(&a.file, &out, NewFileMode::Shared)?,
        _ => write_stdout(&out)?,
    }
    Ok(())
}

/// Arguments of `updatekeys`.
#[derive(Args, Debug)]
pub struct UpdatekeysArgs {
    /// Encrypted files to bring in line with their .sops.yaml creation rule
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Apply without asking
    #[arg(short = 'y', long)]
    pub yes: bool,
    #[command(flatten)]
    pub formats: InputFormat,
    /// Override the Shamir threshold
    #[arg(long = "shamir-secret-sharing-threshold", value_name = "N")]
    pub shamir_threshold: Option<usize>,
    #[command(flatten)]
    pub order: DecryptionOrder,
}

/// `kustos updatekeys`.
pub fn updatekeys(g: &GlobalArgs, a: UpdatekeysArgs) -> CliResult {
    let cfg = load_config(g)?.ok_or_else(|| {
        CliError::new(exit::GENERIC, "config file not found")
            .with_hint("updatekeys needs a .sops.yaml with creation rules (or --config)")
    })?;
    let store = cfg.stores;
    let ring = key_ring(g, a.order.resolve()?);
    let mut first_err: Option<CliError> = None;
    for file in &a.files {
        let label = show(file);
        let res = (|| -> CliResult {
            must_exist(file, exit::GENERIC)?;
            let fmt = parse_format(a.formats.input_type.as_deref(), file)?;
            let data = fsutil::read_file(file)?;
            let mut tree = formats::load_encrypted(fmt, &data).map_err(loading_encrypted)?;
            let rule = cfg.rule_for(file)?.ok_or_else(|| {
                CliError::new(
                    exit::GENERIC,
                    format!(
                        "The config file {} does not contain any creation rule",
                        show(&cfg.path)
                    ),
                )
            })?;
            let diffs = diff_groups(&tree.metadata.key_groups, &rule.key_groups);
            let keys_change = diffs
                .iter()
                .any(|d| !d.added.is_empty() || !d.removed.is_empty());
            let mut threshold = tree.metadata.shamir_threshold;
            if let Some(t) = a.shamir_threshold.filter(|t| *t != 0) {
                threshold = t;
            }
            threshold = threshold.min(rule.key_groups.len());
            let threshold_changes = threshold != tree.metadata.shamir_threshold;
            if !keys_change && !threshold_changes {
                eprintln!("File {label} already up to date");
                return Ok(());
            }
            let mut msg =
                String::from("The following changes will be made to the file's groups:\n");
            let old_t = tree.metadata.shamir_threshold;
            if old_t > 0 && old_t == threshold {
                msg.push_str(&format!("shamir_threshold: {threshold}\n"));
            } else {
                if threshold > 0 {
                    msg.push_str(&format!("+++ shamir_threshold: {threshold}\n"));
                }
                if old_t > 0 {
                    msg.push_str(&format!("--- shamir_threshold: {old_t}\n"));
                }
            }
            for (i, d) in diffs.iter().enumerate() {
                msg.push_str(&format!("Group {}\n", i + 1));
                for k in &d.common {
                    msg.push_str(&format!("    {k}\n"));
                }
                for k in &d.added {
                    msg.push_str(&format!("+++ {k}\n"));
                }
                for k in &d.removed {
                    msg.push_str(&format!("--- {k}\n"));
                }
            }
            write_stdout(msg.as_bytes())?;
            if !a.yes && !confirm()? {
                eprintln!("File {label} left unchanged");
                return Ok(());
            }
            let key = keys::recover_data_key(
                &tree.metadata.key_groups,
                tree.metadata.shamir_threshold,
                &ring,
            )
            .map_err(crate::Error::from)?;
            rewrap(&mut tree, &key, &rule.key_groups, threshold, &ring.services)?;
            let out = formats::emit_encrypted(fmt, &tree, &store)?;
            fsutil::write_atomic(file, &out, NewFileMode::Shared)?;
            eprintln!("File {label} synced with new keys");
            Ok(())
        })();
        if let Err(e) = res {
            let e = e.in_file(&label);
            if a.files.len() > 1 {
                super::print_error(&e);
            }
            first_err.get_or_insert(e);
        }
    }
    match first_err {
        Some(e) if a.files.len() > 1 => {
            Err(CliError::new(e.code, "some files could not be updated"))
        }
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn confirm() -> CliResult<bool> {
    let stdin = std::io::stdin();
    loop {
        print!("Is this okay? (y/n):");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::new(exit::GENERIC, e.to_string()))?
            == 0
        {
            return Err(CliError::new(
                exit::GENERIC,
                "no answer on stdin (use -y to run non-interactively)",
            ));
        }
        match line.trim() {
            "y" => return Ok(true),
            "n" => return Ok(false),
            _ => {}
        }
    }
}

/// Arguments of `set`.
#[derive(Args, Debug)]
pub struct SetArgs {
    /// The encrypted file (changed in place)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Where to set, e.g. '["data"]["password"]'
    #[arg(value_name = "PATH")]
    pub path: String,
    /// The value as JSON (e.g. '"text"', '5', '{"a":true}'), or a file name with --value-file
    #[arg(value_name = "VALUE")]
    pub value: Option<String>,
    /// Read the value (JSON) from the file named by VALUE
    #[arg(long = "value-file", conflicts_with = "value_stdin")]
    pub value_file: bool,
    /// Read the value (JSON) from stdin
    #[arg(long = "value-stdin")]
    pub value_stdin: bool,
    /// Do not write the file when the value does not change
    #[arg(long)]
    pub idempotent: bool,
    #[command(flatten)]
    pub formats: Formats,
    #[command(flatten)]
    pub order: DecryptionOrder,
    #[command(flatten)]
    pub mac: IgnoreMac,
    /// Indentation of YAML/JSON output (sops' global --indent)
    #[arg(long, hide = true, value_name = "N")]
    pub indent: Option<i64>,
}

fn tree_path(s: &str) -> CliResult<Vec<PathElem>> {
    let p = ops::parse_tree_path(s)
        .map_err(|_| CliError::new(exit::INVALID_SET_FORMAT, "Invalid set index format"))?;
    if p.is_empty() {
        return Err(CliError::new(
            exit::INVALID_SET_FORMAT,
            "Invalid set index format",
        ));
    }
    Ok(p)
}

/// `kustos set`.
pub fn set(g: &GlobalArgs, a: SetArgs) -> CliResult {
    let label = show(&a.file);
    let raw: Zeroizing<Vec<u8>> = if a.value_stdin {
        if a.value.is_some() {
            return Err(CliError::new(exit::NO_FILE_SPECIFIED, "Error: file specified, or index and value are missing. Need precisely 2 positional arguments since --value-stdin is used."));
        }
        fsutil::read_stdin()?
    } else {
        let v = a.value.clone().ok_or_else(|| {
            CliError::new(exit::NO_FILE_SPECIFIED, "Error: no file specified, or index and value are missing. Need precisely 3 positional arguments.")
        })?;
        if a.value_file {
            fsutil::read_file(Path::new(&v)).map_err(|e| {
                let mut c = CliError::from(e);
                c.code = exit::GENERIC;
                c
            })?
        } else {
            Zeroizing::new(v.into_bytes())
        }
    };
    let path = tree_path(&a.path)?;
    let value = formats::json::parse_value(&raw).map_err(|e| {
        CliError::new(
            exit::INVALID_SET_FORMAT,
            format!("the value is not valid JSON: {e}"),
        )
    })?;
    let in_fmt = parse_format(a.formats.input_type.as_deref(), &a.file)?;
    let out_fmt = parse_format(a.formats.output_type.as_deref(), &a.file)?;
    let cfg = load_config(g)?;
    let store = store_options(cfg.as_ref(), a.indent)?;
    let run = || -> CliResult<Option<Vec<u8>>> {
        let (mut tree, mut cipher) = open(g, &a.file, in_fmt, &a.order, a.mac.ignore_mac)?;
        let mut root = Value::Map(tree.branches.first().cloned().unwrap_or_default());
        let changed = ops::set_path(&mut root, &path, value.clone());
        if !changed && a.idempotent {
            return Ok(None);
        }
        if let Value::Map(m) = root {
            if tree.branches.is_empty() {
                tree.branches.push(m);
            } else {
                tree.branches[0] = m;
            }
        }
        close(&mut tree, &mut cipher, out_fmt, &store).map(Some)
    };
    match run().map_err(|e| e.in_file(&label))? {
        Some(out) => fsutil::write_atomic(&a.file, &out, NewFileMode::Shared)?,
        None => eprintln!("File not written due to no change"),
    }
    Ok(())
}

/// Arguments of `unset`.
#[derive(Args, Debug)]
pub struct UnsetArgs {
    /// The encrypted file (changed in place)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// What to remove, e.g. '["data"]["old"]'
    #[arg(value_name = "PATH")]
    pub path: String,
    /// Succeed without writing when the path does not exist
    #[arg(long)]
    pub idempotent: bool,
    #[command(flatten)]
    pub formats: Formats,
    #[command(flatten)]
    pub order: DecryptionOrder,
    #[command(flatten)]
    pub mac: IgnoreMac,
    /// Indentation of YAML/JSON output (sops' global --indent)
    #[arg(long, hide = true, value_name = "N")]
    pub indent: Option<i64>,
}

/// `kustos unset`.
pub fn unset(g: &GlobalArgs, a: UnsetArgs) -> CliResult {
    let label = show(&a.file);
    let path = tree_path(&a.path)?;
    let in_fmt = parse_format(a.formats.input_type.as_deref(), &a.file)?;
    let out_fmt = parse_format(a.formats.output_type.as_deref(), &a.file)?;
    let cfg = load_config(g)?;
    let store = store_options(cfg.as_ref(), a.indent)?;
    let run = || -> CliResult<Option<Vec<u8>>> {
        let (mut tree, mut cipher) = open(g, &a.file, in_fmt, &a.order, a.mac.ignore_mac)?;
        let mut root = Value::Map(tree.branches.first().cloned().unwrap_or_default());
        match ops::unset_path(&mut root, &path) {
            Ok(()) => {}
            Err(crate::Error::PathNotFound(_)) if a.idempotent => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        if let Value::Map(m) = root {
            if !tree.branches.is_empty() {
                tree.branches[0] = m;
            }
        }
        close(&mut tree, &mut cipher, out_fmt, &store).map(Some)
    };
    match run().map_err(|e| e.in_file(&label))? {
        Some(out) => fsutil::write_atomic(&a.file, &out, NewFileMode::Shared)?,
        None => eprintln!("File not written due to no change"),
    }
    Ok(())
}

/// Arguments of `edit`.
#[derive(Args, Debug)]
pub struct EditArgs {
    /// The file to edit (created from an example if it does not exist)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Show (and let you edit) the sops metadata too
    #[arg(short = 's', long = "show-master-keys")]
    pub show_master_keys: bool,
    #[command(flatten)]
    pub formats: Formats,
    #[command(flatten)]
    pub mac: IgnoreMac,
    #[command(flatten)]
    pub order: DecryptionOrder,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub keys: KeyFlags,
    #[command(flatten)]
    #[allow(missing_docs)]
    pub selection: SelectionFlags,
    /// Number of key groups needed to decrypt (Shamir), for new files
    #[arg(long = "shamir-secret-sharing-threshold", value_name = "N")]
    pub shamir_threshold: Option<usize>,
    /// Indentation of YAML/JSON output (sops' global --indent)
    #[arg(long, hide = true, value_name = "N")]
    pub indent: Option<i64>,
}

fn example(fmt: Format) -> Vec<Map> {
    let mut m = Map::new();
    match fmt {
        Format::Binary => {
            m.push(
                "data",
                Value::str("Welcome to SOPS! Edit this file as you please!"),
            );
        }
        Format::Dotenv => {
            m.0.push(Item::comment(" This is an example file."));
            m.push(
                "hello",
                Value::str("Welcome to SOPS! Edit this file as you please!"),
            );
            m.push("example_key", Value::str("example_value"));
            m.push("example_multiline", Value::str("foo\nbar\nbaz"));
        }
        Format::Ini => {
            let mut inner = Map::new();
            inner.0.push(Item::comment(" This is an example file."));
            inner.push(
                "hello",
                Value::str("Welcome to SOPS! Edit this file as you please!"),
            );
            inner.push("example_key", Value::str("example_value"));
            m.push("Welcome!", Value::Map(inner));
        }
        Format::Yaml | Format::Json => {
            m.push(
                "hello",
                Value::str("Welcome to SOPS! Edit this file as you please!"),
            );
            m.push("example_key", Value::str("example_value"));
            m.0.push(Item::comment(" Example comment"));
            m.push(
                "example_array",
                Value::Seq(vec![
                    Value::str("example_value1"),
                    Value::str("example_value2"),
                ]),
            );
            m.push("example_number", Value::Float(1234.56789));
            m.push(
                "example_booleans",
                Value::Seq(vec![Value::Bool(true), Value::Bool(false)]),
            );
        }
    }
    vec![m]
}

fn editor_command() -> CliResult<Vec<String>> {
    for var in ["SOPS_EDITOR", "EDITOR"] {
        if let Ok(e) = std::env::var(var) {
            if !e.is_empty() {
                return shlex::split(&e).filter(|p| !p.is_empty()).ok_or_else(|| {
                    CliError::new(exit::NO_EDITOR_FOUND, format!("invalid ${var}"))
                });
            }
        }
    }
    for name in ["vim", "nano", "vi"] {
        if let Some(p) = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        }) {
            return Ok(vec![p.display().to_string()]);
        }
    }
    Err(CliError::new(
        exit::NO_EDITOR_FOUND,
        "no editor available: set SOPS_EDITOR or EDITOR (vim, nano and vi were not found)",
    ))
}

/// Overwrites a file with zeros before it is removed (best effort).
fn scrub(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(path) {
            let _ = f.write_all(&vec![0u8; meta.len() as usize]);
            let _ = f.sync_all();
        }
    }
}

/// `kustos edit`.
pub fn edit(g: &GlobalArgs, a: EditArgs) -> CliResult {
    let label = show(&a.file);
    let in_fmt = parse_format(a.formats.input_type.as_deref(), &a.file)?;
    let out_fmt = parse_format(a.formats.output_type.as_deref(), &a.file)?;
    let cfg = load_config(g)?;
    let store = store_options(cfg.as_ref(), a.indent)?;
    let (mut tree, mut cipher) = if a.file.exists() {
        open(g, &a.file, in_fmt, &a.order, a.mac.ignore_mac).map_err(|e| e.in_file(&label))?
    } else {
        let cfg = load_config(g)?;
        let spec = encrypt_spec(
            g,
            &a.keys,
            &a.selection,
            a.shamir_threshold,
            cfg.as_ref(),
            &a.file,
            super::sops_cmds::RuleMatch::Required,
        )
        .map_err(|e| e.in_file(&label))?;
        let mut md = spec.metadata(in_fmt)?;
        let key = DataKey::generate();
        keys::wrap_data_key(
            &mut md.key_groups,
            &mut md.shamir_threshold,
            &key,
            &spec.services,
        )?;
        (
            Tree {
                branches: example(in_fmt),
                metadata: md,
            },
            Cipher::new(&key),
        )
    };
    let dir = crate::platform::private_scratch_dir(".kustos-edit-").map_err(|e| {
        CliError::new(
            exit::COULD_NOT_WRITE_OUTPUT_FILE,
            format!("Could not create temporary directory: {e}"),
        )
    })?;
    let tmp = dir.path().join(a.file.file_name().unwrap_or_default());
    let plain = if a.show_master_keys {
        Zeroizing::new(formats::emit_encrypted(out_fmt, &tree, &store)?)
    } else {
        formats::emit_plain(out_fmt, &tree.branches, &store)?
    };
    // Ctrl-C (or the terminal closing) ends the edit here, after the scrub,
    // instead of killing kustos with plaintext left in the folder.
    let interrupts = crate::platform::Interrupts::catch();
    fsutil::write_atomic(&tmp, &plain, NewFileMode::Private)?;
    let result = edit_loop(
        &tmp,
        &plain,
        out_fmt,
        a.show_master_keys,
        &mut tree,
        &interrupts,
    );
    scrub(&tmp);
    drop(dir);
    result?;
    if crate::sops::metadata::SOPS_VERSION > tree.metadata.version.as_str() {
        tree.metadata.version = crate::sops::metadata::SOPS_VERSION.into();
    }
    let out = close(&mut tree, &mut cipher, out_fmt, &store).map_err(|e| e.in_file(&label))?;
    fsutil::write_atomic(&a.file, &out, NewFileMode::Shared)?;
    Ok(())
}

fn edit_loop(
    tmp: &Path,
    original: &[u8],
    fmt: Format,
    show_keys: bool,
    tree: &mut Tree,
    interrupts: &crate::platform::Interrupts,
) -> CliResult {
    let editor = editor_command()?;
    let interrupted = || {
        CliError::new(
            exit::KEYBOARD_INTERRUPT,
            "interrupted: the plaintext was scrubbed and nothing was written",
        )
    };
    loop {
        let status = std::process::Command::new(&editor[0])
            .args(&editor[1..])
            .arg(tmp)
            .status()
            .map_err(|e| {
                CliError::new(exit::NO_EDITOR_FOUND, format!("Could not run editor: {e}"))
            })?;
        use std::os::unix::process::ExitStatusExt as _;
        // An editor that ignores Ctrl-C (vi) keeps the session; one that
        // died of it, or a signal to kustos itself, ends it.
        if status.signal().is_some() && interrupts.arrived() {
            return Err(interrupted());
        }
        if !status.success() {
            return Err(CliError::new(
                exit::NO_EDITOR_FOUND,
                format!("Could not run editor: it exited with {status}"),
            ));
        }
        let edited = fsutil::read_file(tmp)?;
        if edited.as_slice() == original {
            return Err(CliError::new(
                exit::FILE_HAS_NOT_BEEN_MODIFIED,
                "File has not changed, exiting.",
            ));
        }
        let parsed = if show_keys {
            // The metadata comes back from the edited file (all of it: the
            // `sops_` keys too in dotenv).
            formats::load_encrypted(fmt, &edited).map(|t| {
                tree.metadata = t.metadata;
                t.branches
            })
        } else {
            formats::load_plain_for(fmt, &edited, &tree.metadata.version)
        }
        // Caught here, so the editor opens again instead of the edit being
        // lost when the file is written.
        .and_then(|b| formats::check_no_metadata_key(fmt, &b).map(|_| b));
        match parsed {
            Ok(b) if !b.is_empty() || fmt != Format::Yaml => {
                tree.branches = b;
                return Ok(());
            }
            Ok(_) => eprintln!("kustos: the edited file has no document."),
            Err(e) => eprintln!(
                "kustos: could not load the edited file, probably due to invalid syntax: {e}"
            ),
        }
        eprintln!("Press Enter to return to the editor, or Ctrl+C to exit.");
        match wait_for_enter(interrupts) {
            Some(true) => {}
            Some(false) => {
                return Err(CliError::new(
                    exit::COULD_NOT_READ_INPUT_FILE,
                    "the edited file is invalid and stdin is closed; nothing was written",
                ))
            }
            None => return Err(interrupted()),
        }
    }
}

/// Waits for a line on stdin: `Some(true)` for Enter, `Some(false)` at end
/// of input, `None` when a signal arrives first (the read is left behind).
fn wait_for_enter(interrupts: &crate::platform::Interrupts) -> Option<bool> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let n = std::io::stdin().lock().read_line(&mut line).unwrap_or(0);
        let _ = tx.send(n > 0);
    });
    loop {
        if interrupts.arrived() {
            return None;
        }
        match rx.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(got_line) => return Some(got_line),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return Some(false),
        }
    }
}

/// Arguments of `filestatus`.
#[derive(Args, Debug)]
pub struct FilestatusArgs {
    /// The file to check
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub formats: InputFormat,
}

/// `kustos filestatus`: `{"encrypted":true|false}`.
pub fn filestatus(_g: &GlobalArgs, a: FilestatusArgs) -> CliResult {
    must_exist(&a.file, exit::GENERIC).map_err(|e| e.in_file(&show(&a.file)))?;
    let fmt = parse_format(a.formats.input_type.as_deref(), &a.file)?;
    let data = fsutil::read_file(&a.file).map_err(|e| CliError::from(e).in_file(&show(&a.file)))?;
    // Like sops: a file without metadata is not encrypted; one that does
    // not parse cannot be checked.
    let enc = match formats::load_encrypted(fmt, &data) {
        Ok(t) => !t.metadata.version.is_empty() && !t.metadata.mac.is_empty(),
        Err(crate::Error::MetadataNotFound) => false,
        Err(e) => {
            return Err(
                CliError::new(exit::GENERIC, format!("cannot check file status: {e}"))
                    .in_file(&show(&a.file)),
            )
        }
    };
    write_stdout(format!("{{\"encrypted\":{enc}}}\n").as_bytes())
}

/// Arguments of `exec-env`.
#[derive(Args, Debug)]
pub struct ExecEnvArgs {
    /// The encrypted file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Shell command to run (with /bin/sh -c)
    #[arg(value_name = "COMMAND")]
    pub command: String,
    /// Pass only the decrypted values, not the current environment
    #[arg(long)]
    pub pristine: bool,
    /// Replace kustos with the command instead of running a child
    #[arg(long = "same-process")]
    pub same_process: bool,
    /// Deprecated in sops; runs the command without waiting
    #[arg(long)]
    pub background: bool,
    /// Run as another user (not supported)
    #[arg(long, hide = true)]
    pub user: Option<String>,
    #[command(flatten)]
    pub formats: InputFormat,
    #[command(flatten)]
    pub order: DecryptionOrder,
    #[command(flatten)]
    pub mac: IgnoreMac,
}

fn child_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(1))
}

/// `kustos exec-env`.
pub fn exec_env(g: &GlobalArgs, a: ExecEnvArgs) -> CliResult {
    if a.user.is_some() {
        return Err(CliError::new(
            exit::GENERIC,
            "--user is not supported by kustos",
        ));
    }
    if a.background && a.same_process {
        return Err(conflict(
            "Error: The --same-process flag cannot be used with --background",
        ));
    }
    let fmt = parse_format(a.formats.input_type.as_deref(), &a.file)?;
    let (tree, _) =
        open(g, &a.file, fmt, &a.order, a.mac.ignore_mac).map_err(|e| e.in_file(&show(&a.file)))?;
    let mut vars: Vec<(String, Zeroizing<String>)> = Vec::new();
    for item in tree.branches.first().map(|b| b.0.as_slice()).unwrap_or(&[]) {
        let key = match &item.key {
            crate::sops::Key::Comment(_) => continue,
            crate::sops::Key::Str(k) => k,
            crate::sops::Key::Other(_) => {
                return Err(CliError::new(
                    exit::GENERIC,
                    "cannot use non-string keys in environment",
                ))
            }
        };
        if item.value.is_complex() {
            return Err(CliError::new(
                exit::GENERIC,
                format!(
                    "cannot use complex value in environment; offending key {}",
                    escape_for_terminal(key)
                ),
            ));
        }
        if key.contains('=') {
            return Err(CliError::new(
                exit::GENERIC,
                format!(
                    "cannot use keys with '=' in environment: {}",
                    escape_for_terminal(key)
                ),
            ));
        }
        vars.push((
            key.clone(),
            Zeroizing::new(formats::val_to_string(&item.value)),
        ));
    }
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(&a.command);
    if a.pristine {
        cmd.env_clear();
    }
    for (k, v) in &vars {
        cmd.env(k, v.as_str());
    }
    if a.same_process {
        use std::os::unix::process::CommandExt;
        let err = cmd.exec();
        return Err(CliError::new(
            exit::GENERIC,
            format!("cannot run the command: {err}"),
        ));
    }
    if a.background {
        cmd.spawn()
            .map_err(|e| CliError::new(exit::GENERIC, format!("cannot run the command: {e}")))?;
        return Ok(());
    }
    let status = cmd
        .status()
        .map_err(|e| CliError::new(exit::GENERIC, format!("cannot run the command: {e}")))?;
    match child_code(status) {
        0 => Ok(()),
        c => Err(CliError::silent(c)),
    }
}

/// Arguments of `exec-file`.
#[derive(Args, Debug)]
pub struct ExecFileArgs {
    /// The encrypted file
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Shell command to run; {} is replaced by the plaintext file's path
    #[arg(value_name = "COMMAND")]
    pub command: String,
    /// Use a regular 0600 file instead of a FIFO
    #[arg(long = "no-fifo")]
    pub no_fifo: bool,
    /// Name of the temporary file
    #[arg(long, value_name = "NAME")]
    pub filename: Option<String>,
    /// Deprecated in sops; runs the command without waiting
    #[arg(long)]
    pub background: bool,
    /// Run as another user (not supported)
    #[arg(long, hide = true)]
    pub user: Option<String>,
    #[command(flatten)]
    pub formats: Formats,
    #[command(flatten)]
    pub order: DecryptionOrder,
    #[command(flatten)]
    pub mac: IgnoreMac,
    /// Indentation of YAML/JSON output (sops' global --indent)
    #[arg(long, hide = true, value_name = "N")]
    pub indent: Option<i64>,
}

/// `kustos exec-file`.
pub fn exec_file(g: &GlobalArgs, a: ExecFileArgs) -> CliResult {
    if a.user.is_some() {
        return Err(CliError::new(
            exit::GENERIC,
            "--user is not supported by kustos",
        ));
    }
    let in_fmt = parse_format(a.formats.input_type.as_deref(), &a.file)?;
    let out_fmt = parse_format(a.formats.output_type.as_deref(), &a.file)?;
    let cfg = load_config(g)?;
    let store = store_options(cfg.as_ref(), a.indent)?;
    let (tree, _) = open(g, &a.file, in_fmt, &a.order, a.mac.ignore_mac)
        .map_err(|e| e.in_file(&show(&a.file)))?;
    let plain = formats::emit_plain(out_fmt, &tree.branches, &store)?;
    let dir = tempfile::Builder::new()
        .prefix(".sops")
        .tempdir()
        .map_err(|e| CliError::new(exit::COULD_NOT_WRITE_OUTPUT_FILE, e.to_string()))?;
    let name = a
        .filename
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "tmp-file".into());
    // Like sops 3.13, which rejects non-local names: nothing may land
    // outside the private temporary folder.
    if name.contains('/') || name == "." || name == ".." {
        return Err(CliError::new(
            exit::GENERIC,
            "--filename must be a plain file name",
        ));
    }
    let path = dir.path().join(&name);
    let mut writer = None;
    if a.no_fifo {
        fsutil::write_atomic(&path, &plain, NewFileMode::Private)?;
    } else {
        nix::unistd::mkfifo(
            &path,
            nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
        )
        .map_err(|e| {
            CliError::new(
                exit::COULD_NOT_WRITE_OUTPUT_FILE,
                format!("cannot create a FIFO: {e}"),
            )
        })?;
        let p = path.clone();
        let data = plain.clone();
        // Opening a FIFO for writing blocks until the command opens it.
        writer = Some(std::thread::spawn(move || {
            if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open(&p) {
                let _ = f.write_all(&data);
            }
        }));
    }
    let command = a.command.replace("{}", &path.display().to_string());
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(&command);
    let result = if a.background {
        cmd.spawn().map(|_| 0)
    } else {
        cmd.status().map(child_code)
    };
    if a.no_fifo {
        scrub(&path);
    }
    drop(writer);
    drop(dir);
    match result {
        Ok(0) => Ok(()),
        Ok(c) => Err(CliError::silent(c)),
        Err(e) => Err(CliError::new(
            exit::GENERIC,
            format!("cannot run the command: {e}"),
        )),
    }
}
