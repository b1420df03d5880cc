//! The command line: sops-compatible commands plus kustos' own.
//!
//! Parsing is clap; each command resolves its flags (and sops' environment
//! variables) into library calls. Errors are printed as one line naming the
//! file and the reason, then a hint line when one helps, and the process
//! exits with sops' exit code for that error.

mod demo;
mod file_cmds;
mod flags;
mod fleet_cmds;
mod gitauth_cmds;
mod keyservice_cmds;
mod legacy;
mod plugin_cmds;
mod render_cmds;
mod serve_cmds;
mod sops_cmds;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::error::escape_for_terminal;
use crate::Error;

/// An error at the CLI edge: exit code, message, optional hint.
#[derive(Debug)]
pub struct CliError {
    /// Process exit code (sops' codes where they exist).
    pub code: i32,
    /// One line: what failed and why.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// Print the message exactly, without the `kustos:` prefix or a file
    /// name (for messages scripts match on, as sops' test suite does).
    pub exact: bool,
}

impl CliError {
    /// An error with a code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            hint: None,
            exact: false,
        }
    }

    /// An exit code with nothing to print (a child's code passed through,
    /// or a report that was already printed).
    pub fn silent(code: i32) -> Self {
        CliError::new(code, "")
    }

    /// Adds the file the error concerns in front of the message.
    pub fn in_file(mut self, file: &str) -> Self {
        if !file.is_empty() && !self.exact {
            self.message = format!("{}: {}", escape_for_terminal(file), self.message);
        }
        self
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        CliError {
            code: e.exit_code(),
            hint: e.hint(),
            message: e.to_string(),
            exact: false,
        }
    }
}

impl From<crate::gitauth::CredentialsError> for CliError {
    fn from(e: crate::gitauth::CredentialsError) -> Self {
        match e {
            crate::gitauth::CredentialsError::Scan(s) => {
                CliError::new(crate::error::exit::GENERIC, s.to_string()).with_hint(
                    "check the URL and that the host is reachable, or pass --known-hosts-file",
                )
            }
            crate::gitauth::CredentialsError::Input(e) => e.into(),
        }
    }
}

/// Result type of command handlers.
pub type CliResult<T = ()> = std::result::Result<T, CliError>;

/// kustos: SOPS-compatible secrets, tenant Git credentials and Flux
/// multi-tenancy onboarding in one fast binary.
#[derive(Parser, Debug)]
#[command(name = "kustos", version, about, long_about = None, propagate_version = true)]
#[command(
    after_help = "Drop-in for sops: `kustos encrypt|decrypt|edit|set|unset|rotate|updatekeys` take sops' flags,\nenvironment variables (SOPS_AGE_KEY_FILE, SOPS_AGE_RECIPIENTS, SOPS_PGP_FP, …) and exit codes."
)]
pub struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every command takes.
#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// Path to the .sops.yaml config (default: searched from the current directory up)
    #[arg(long, global = true, env = "SOPS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Folders with decryption keys: *.agekey (age) and *.asc (OpenPGP), like Flux's decryption Secrets
    #[arg(
        long = "keys-dir",
        global = true,
        env = "KUSTOS_KEYS_DIR",
        value_delimiter = ':',
        value_name = "DIR"
    )]
    pub keys_dir: Vec<PathBuf>,
    /// A sops key service to wrap and unwrap data keys with, after this process's own keys: unix:///PATH or tcp://HOST:PORT (repeatable)
    #[arg(
        long = "keyservice",
        global = true,
        env = "SOPS_KEYSERVICE",
        value_delimiter = ',',
        value_name = "URI",
        value_parser = parse_keyservice
    )]
    pub keyservice: Vec<crate::keys::keyservice::RemoteKeyService>,
    /// Use this process's own keys (sops' local key service); =false leaves only --keyservice
    #[arg(
        long = "enable-local-keyservice",
        global = true,
        env = "SOPS_ENABLE_LOCAL_KEYSERVICE",
        value_name = "BOOL",
        num_args = 0..=1,
        require_equals = true,
        default_value = "true",
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub enable_local_keyservice: bool,
    /// Print debug information (never secret values) to stderr
    #[arg(long, global = true)]
    pub verbose: bool,
    /// Accepted for sops compatibility; kustos never checks for updates
    #[arg(long, global = true, hide = true)]
    pub disable_version_check: bool,
}

fn parse_keyservice(uri: &str) -> Result<crate::keys::keyservice::RemoteKeyService, String> {
    crate::keys::keyservice::RemoteKeyService::new(uri)
}

impl GlobalArgs {
    /// Where data keys are wrapped and unwrapped (`--keyservice`,
    /// `--enable-local-keyservice`).
    pub fn key_services(&self) -> crate::keys::keyservice::KeyServices {
        crate::keys::keyservice::KeyServices {
            local: self.enable_local_keyservice,
            remote: self.keyservice.clone(),
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Encrypt a file (or stdin with --filename-override) and print it, or write it with -i/--output
    Encrypt(sops_cmds::EncryptArgs),
    /// Decrypt a file (or stdin) and print it, or write it with -i/--output
    Decrypt(sops_cmds::DecryptArgs),
    /// Generate a new data key and re-encrypt every value (optionally adding/removing keys)
    Rotate(file_cmds::RotateArgs),
    /// Rewrap the data key for the keys of the file's .sops.yaml creation rule
    Updatekeys(file_cmds::UpdatekeysArgs),
    /// Set one value in an encrypted file: set FILE '["a"]["b"]' '"json value"'
    Set(file_cmds::SetArgs),
    /// Remove one value from an encrypted file
    Unset(file_cmds::UnsetArgs),
    /// Edit an encrypted file in $SOPS_EDITOR/$EDITOR (plaintext only in a private 0600 temp file)
    Edit(file_cmds::EditArgs),
    /// Print {"encrypted":true|false} for a file
    Filestatus(file_cmds::FilestatusArgs),
    /// Run a command with the file's top-level values as environment variables
    #[command(name = "exec-env")]
    ExecEnv(file_cmds::ExecEnvArgs),
    /// Run a command with the decrypted file at {} (a FIFO by default)
    #[command(name = "exec-file")]
    ExecFile(file_cmds::ExecFileArgs),
    /// Tenant Git credentials as Flux Secrets (`secret git`), encrypted before they are written
    #[command(subcommand)]
    Secret(gitauth_cmds::SecretCommand),
    /// Make the cluster's SOPS decryption key (age or PGP) as a Flux decryption Secret
    Keygen(gitauth_cmds::KeygenArgs),
    /// kustomize plugin (legacy exec and KRM function, KSOPS-compatible): install, doctor, run
    Plugin {
        #[command(subcommand)]
        /// What to do
        cmd: plugin_cmds::PluginCommand,
    },
    /// Build a kustomization and decrypt its SOPS data like kustomize-controller (MACs verified first)
    Render(render_cmds::RenderArgs),
    /// Argo CD Config Management Plugin entry points
    Cmp {
        #[command(subcommand)]
        /// What to do
        cmd: render_cmds::CmpCommand,
    },
    /// Write a Flux multi-tenancy fleet repository (clusters, infrastructure, tenants, .sops.yaml)
    Init(fleet_cmds::InitArgs),
    /// Onboard, remove and list tenants of a fleet repository
    Tenant {
        #[command(subcommand)]
        /// What to do
        cmd: fleet_cmds::TenantCommand,
    },
    /// Check a fleet repository offline (builds, encryption, tenancy rules)
    Validate(fleet_cmds::ValidateArgs),
    /// Fleet-wide status, updatekeys and rotate over every SOPS file
    Fleet {
        #[command(subcommand)]
        /// What to do
        cmd: fleet_cmds::FleetCommand,
    },
    /// Run the in-cluster decryption sidecar (HTTP on a Unix socket or TCP; keys from --keys-dir, hot-reloaded)
    Serve(serve_cmds::ServeArgs),
    /// Serve this machine's age and OpenPGP keys to sops and kustos clients (sops' key service)
    Keyservice(keyservice_cmds::KeyserviceArgs),
    /// Run the whole flow on generated keys in a temporary folder
    Demo(demo::DemoArgs),
    /// Print a shell completion script
    Completion {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

fn print_error(e: &CliError) {
    if e.message.is_empty() {
        // A child's exit code passed through (exec-env/exec-file): nothing to say.
        return;
    }
    let mut err = std::io::stderr().lock();
    if e.exact {
        let _ = writeln!(err, "{}", e.message);
        return;
    }
    let _ = writeln!(err, "kustos: {}", e.message);
    if let Some(h) = &e.hint {
        let _ = writeln!(err, "hint: {h}");
    }
}

/// Runs the CLI with the process arguments.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // render's confined kubectl runs through this binary.
    if args
        .get(1)
        .is_some_and(|a| a == crate::platform::CONFINED_EXEC)
    {
        return crate::platform::confined_exec_main(&args[2..]);
    }
    // kustomize runs plugins with its own argument conventions: check those
    // before sops' legacy flags are rewritten.
    if let Some(result) = plugin_cmds::dispatch_plugin(&args) {
        let code = match result {
            Ok(()) => 0,
            Err(e) => {
                print_error(&e);
                e.code
            }
        };
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let code = run_inner(legacy::translate(args), true);
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Output format for reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// For people.
    #[default]
    Text,
    /// For CI.
    Json,
}

/// Runs the CLI with explicit arguments; returns the exit code.
pub fn run(args: Vec<OsString>) -> i32 {
    run_inner(args, false)
}

/// Parses with clap's builder kept alive (`forget_parser`) or dropped.
/// Freeing the whole command tree is a visible share of a short command's
/// run, so the process entry point skips it: the OS reclaims the memory at
/// exit anyway.
fn parse(args: Vec<OsString>, forget_parser: bool) -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    if let Some(cli) = parse_hot(&args, forget_parser) {
        return Ok(cli);
    }
    let mut cmd = Cli::command();
    let parsed = cmd
        .try_get_matches_from_mut(args)
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m));
    if forget_parser {
        std::mem::forget(cmd);
    }
    parsed
}

fn run_inner(args: Vec<OsString>, forget_parser: bool) -> i32 {
    let verbose = args.iter().any(|a| a == "--verbose");
    let cli = match parse(args, forget_parser) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayVersion => {
                    if verbose {
                        let mut out = std::io::stdout().lock();
                        for line in crate::keys::crypto_backends() {
                            let _ = writeln!(out, "crypto: {line}");
                        }
                    }
                    0
                }
                clap::error::ErrorKind::DisplayHelp => 0,
                _ => 1,
            };
        }
    };
    crate::keys::pgp::set_cert_dirs(cli.global.keys_dir.clone());
    let result = match cli.command {
        Command::Encrypt(a) => sops_cmds::encrypt(&cli.global, a),
        Command::Decrypt(a) => sops_cmds::decrypt(&cli.global, a),
        Command::Rotate(a) => file_cmds::rotate(&cli.global, a),
        Command::Updatekeys(a) => file_cmds::updatekeys(&cli.global, a),
        Command::Set(a) => file_cmds::set(&cli.global, a),
        Command::Unset(a) => file_cmds::unset(&cli.global, a),
        Command::Edit(a) => file_cmds::edit(&cli.global, a),
        Command::Filestatus(a) => file_cmds::filestatus(&cli.global, a),
        Command::ExecEnv(a) => file_cmds::exec_env(&cli.global, a),
        Command::ExecFile(a) => file_cmds::exec_file(&cli.global, a),
        Command::Secret(c) => gitauth_cmds::secret(&cli.global, c),
        Command::Keygen(a) => gitauth_cmds::keygen(&cli.global, a),
        Command::Plugin { cmd } => plugin_cmds::plugin(&cli.global, cmd),
        Command::Render(a) => render_cmds::render(&cli.global, a),
        Command::Cmp { cmd } => render_cmds::cmp(&cli.global, cmd),
        Command::Init(a) => fleet_cmds::init(&cli.global, a),
        Command::Tenant { cmd } => fleet_cmds::tenant(&cli.global, cmd),
        Command::Validate(a) => fleet_cmds::validate(&cli.global, a),
        Command::Fleet { cmd } => fleet_cmds::fleet_cmd(&cli.global, cmd),
        Command::Serve(a) => serve_cmds::serve(&cli.global, a),
        Command::Keyservice(a) => keyservice_cmds::keyservice(&cli.global, a),
        Command::Demo(a) => demo::run(a),
        Command::Completion { shell } => {
            let mut cmd = visible(&Cli::command());
            clap_complete::generate(shell, &mut cmd, "kustos", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            print_error(&e);
            e.code
        }
    }
}

/// The command tree without hidden arguments and commands, for shell
/// completion (clap's generators offer hidden flags too).
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut out = clap::Command::new(cmd.get_name().to_string());
    if let Some(about) = cmd.get_about() {
        out = out.about(about.clone());
    }
    for a in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
        out = out.arg(a.clone());
    }
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out = out.subcommand(visible(sub));
    }
    out
}

/// The commands scripts run once per file, thousands of times a day.
const HOT_COMMANDS: [&str; 2] = ["decrypt", "encrypt"];

/// Parses `kustos decrypt …` / `kustos encrypt …` against a command tree
/// with only the global flags and that one subcommand: building every
/// subcommand would be a large share of decrypting a small file.
/// The subcommand's arguments are the same derive, so a successful parse
/// gives the same `Cli`; help, version and every error go through the full
/// tree (`None`), so their text is unchanged.
fn parse_hot(args: &[OsString], forget_parser: bool) -> Option<Cli> {
    use clap::{Args as _, FromArgMatches};
    let given = args.get(1)?.to_str()?;
    let name = *HOT_COMMANDS.iter().find(|c| **c == given)?;
    let asks_for_text = args[2..].iter().any(|a| {
        matches!(
            a.to_str(),
            Some("-h" | "--help" | "-V" | "--version") | None
        )
    });
    if asks_for_text {
        return None;
    }
    let sub = clap::Command::new(name);
    let sub = match name {
        "decrypt" => sops_cmds::DecryptArgs::augment_args(sub),
        _ => sops_cmds::EncryptArgs::augment_args(sub),
    };
    let mut cmd = GlobalArgs::augment_args(clap::Command::new("kustos"))
        .subcommand_required(true)
        .subcommand(sub);
    let parsed = cmd
        .try_get_matches_from_mut(args)
        .ok()
        .and_then(|mut m| Cli::from_arg_matches_mut(&mut m).ok());
    if forget_parser {
        std::mem::forget(cmd);
    }
    parsed
}

/// Writes bytes to stdout; a closed pipe is not an error.
pub(crate) fn write_stdout(data: &[u8]) -> CliResult {
    let mut out = std::io::stdout().lock();
    match out.write_all(data).and_then(|_| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::new(
            crate::error::exit::COULD_NOT_WRITE_OUTPUT_FILE,
            format!("cannot write to stdout: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn completion_offers_visible_flags_and_store_names() {
        let mut cmd = visible(&Cli::command());
        let mut out = Vec::new();
        clap_complete::generate(clap_complete::Shell::Bash, &mut cmd, "kustos", &mut out);
        let script = String::from_utf8(out).unwrap();
        for hidden in ["--disable-version-check", "--gcp-kms"] {
            assert!(!script.contains(hidden), "{hidden} is offered");
        }
        for shown in [
            "--kms",
            "--add-kms",
            "--encryption-context",
            "--aws-profile",
        ] {
            assert!(script.contains(shown), "{shown} is not offered");
        }
        assert!(script.contains("--input-type"));
        assert!(
            script.contains("yaml json dotenv ini binary"),
            "store names"
        );
    }

    fn full_parse(args: &[&str]) -> Result<Cli, clap::Error> {
        use clap::FromArgMatches;
        Cli::command()
            .try_get_matches_from(args)
            .and_then(|mut m| Cli::from_arg_matches_mut(&mut m))
    }

    #[test]
    fn hot_commands_parse_like_the_full_tree() {
        let same = [
            &["kustos", "decrypt", "f.yaml"][..],
            &[
                "kustos",
                "decrypt",
                "--input-type",
                "yaml",
                "--output-type=json",
                "f",
            ],
            &[
                "kustos",
                "decrypt",
                "-i",
                "--ignore-mac",
                "--verbose",
                "f.enc.yaml",
            ],
            &[
                "kustos",
                "decrypt",
                "--extract",
                "[\"a\"]",
                "--output",
                "o",
                "f",
            ],
            &[
                "kustos",
                "decrypt",
                "--keys-dir",
                "/a:/b",
                "--config",
                "c.yaml",
                "a",
                "b",
            ],
            &[
                "kustos",
                "decrypt",
                "--output-dir",
                "out",
                "a.yaml",
                "b.yaml",
            ],
            &[
                "kustos",
                "encrypt",
                "--age",
                "age1x,age1y",
                "--encrypted-regex",
                "^data$",
                "f",
            ],
            &[
                "kustos",
                "encrypt",
                "--filename-override",
                "x.json",
                "--unencrypted-suffix",
                "_u",
            ],
            &[
                "kustos",
                "encrypt",
                "-i",
                "--mac-only-encrypted",
                "--shamir-secret-sharing-threshold",
                "2",
                "f",
            ],
            &["kustos", "encrypt", "--", "-f.yaml"],
            // Conflicts sops reports with its own exit code are not clap's.
            &[
                "kustos",
                "encrypt",
                "--encrypted-regex",
                "a",
                "--unencrypted-regex",
                "b",
                "f",
            ],
        ];
        for args in same {
            let os: Vec<OsString> = args.iter().map(OsString::from).collect();
            let hot = parse_hot(&os, false);
            let full = full_parse(args);
            match (&hot, &full) {
                (Some(h), Ok(f)) => assert_eq!(format!("{h:?}"), format!("{f:?}"), "{args:?}"),
                _ => panic!("{args:?}: hot {:?}, full {:?}", hot.is_some(), full.err()),
            }
        }
        // Errors, help and version are left to the full tree.
        for args in [
            &["kustos", "decrypt", "--no-such-flag", "f"][..],
            &["kustos", "decrypt", "--input-type", "toml", "f"],
            &["kustos", "decrypt", "--help"],
            &["kustos", "encrypt", "-V"],
            &["kustos", "decrypt", "f", "--output"],
            &["kustos", "rotate", "f"],
            &["kustos", "--verbose", "decrypt", "f"],
        ] {
            let os: Vec<OsString> = args.iter().map(OsString::from).collect();
            assert!(parse_hot(&os, false).is_none(), "{args:?}");
        }
    }
}
