//! Fleet repository commands: `init`, `tenant add|remove|list`, `validate`.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use super::{write_stdout, CliError, CliResult, GlobalArgs, OutputFormat};
use crate::config;
use crate::error::exit;
use crate::fleet::templates::{DecryptionKey, TenantSpec};
use crate::fleet::{self, init, tenant, validate, Plan};
use crate::gitauth::{self, keygen::EcdsaCurve, keygen::KeyAlgorithm, secret::SecretMeta};
use crate::ops::EncryptSpec;

/// Arguments of `init`.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// The repository folder (created if missing)
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// Cluster environments
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "staging,production",
        value_name = "ENVS"
    )]
    pub clusters: Vec<String>,
    /// age recipient of the clusters' decryption key (see `kustos keygen age`)
    #[arg(
        long,
        value_name = "RECIPIENT",
        conflicts_with = "pgp",
        required_unless_present = "pgp"
    )]
    pub age: Option<String>,
    /// OpenPGP fingerprint of the clusters' decryption key
    #[arg(long, value_name = "FPR")]
    pub pgp: Option<String>,
    /// URL pattern tenant Git/Helm/OCI sources must match (Kyverno wildcards; repeatable)
    #[arg(long = "allowed-source", value_name = "PATTERN", default_values_t = [String::from("https://github.com/*"), String::from("ssh://git@github.com/*")])]
    pub allowed_sources: Vec<String>,
    /// Overwrite files that differ from what kustos would write
    #[arg(long)]
    pub force: bool,
    /// Only show what would change
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// Shows and applies a plan with the usual conflict handling.
pub(crate) fn apply_plan(plan: &Plan, force: bool, dry_run: bool) -> CliResult {
    let summary = plan.render();
    if !summary.is_empty() {
        let _ = std::io::stderr().write_all(summary.as_bytes());
    }
    if plan.is_noop() {
        eprintln!("nothing to change");
        return Ok(());
    }
    if dry_run {
        return Ok(());
    }
    let conflicts = plan.conflicts();
    if !force && !conflicts.is_empty() {
        let files: Vec<String> = conflicts
            .iter()
            .map(|c| c.path.display().to_string())
            .collect();
        return Err(CliError::new(
            exit::GENERIC,
            format!("{} would be overwritten (shown above)", files.join(", ")),
        )
        .with_hint("re-run with --force to overwrite, or keep your edits"));
    }
    plan.apply(force)?;
    Ok(())
}

/// `kustos init`.
pub fn init(_g: &GlobalArgs, a: InitArgs) -> CliResult {
    let key = match (&a.age, &a.pgp) {
        (Some(r), _) => {
            crate::keys::age::validate_recipient(r)?;
            DecryptionKey::Age(r.clone())
        }
        (None, Some(fp)) => DecryptionKey::Pgp(fp.chars().filter(|c| !c.is_whitespace()).collect()),
        (None, None) => unreachable!("clap requires --age or --pgp"),
    };
    std::fs::create_dir_all(&a.dir)
        .map_err(|e| CliError::from(crate::Error::io(a.dir.display(), e)))?;
    let opts = init::InitOptions {
        clusters: a.clusters.clone(),
        key,
        allowed_sources: a.allowed_sources.clone(),
    };
    let plan = init::plan(&a.dir, &opts)?;
    apply_plan(&plan, a.force, a.dry_run)?;
    if !a.dry_run {
        eprintln!(
            "fleet repository ready in {}; next: kustos tenant add NAME --namespace NS --git-url URL",
            a.dir.display()
        );
    }
    Ok(())
}

/// How a tenant authenticates to its repository.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthKind {
    /// SSH deploy key with scanned known_hosts (ssh:// URLs).
    Ssh,
    /// Username and password/token (http(s):// URLs).
    Basic,
    /// Public repository.
    None,
}

/// `tenant` subcommands.
#[derive(Subcommand, Debug)]
pub enum TenantCommand {
    /// Onboard a tenant (idempotent; never overwrites edited files without --force)
    Add(Box<TenantAddArgs>),
    /// Remove exactly what `tenant add` wrote
    Remove(TenantRemoveArgs),
    /// List tenants, namespaces, sources and whether their credentials are encrypted
    List(TenantListArgs),
}

/// Arguments of `tenant add`.
#[derive(Args, Debug)]
pub struct TenantAddArgs {
    /// Tenant name
    pub name: String,
    /// Namespace the tenant may use (repeatable; the first holds its Flux objects)
    #[arg(long = "namespace", short = 'n', required = true, value_name = "NS")]
    pub namespaces: Vec<String>,
    /// The tenant's Git repository
    #[arg(long = "git-url", value_name = "URL")]
    pub git_url: String,
    /// Branch to reconcile
    #[arg(long, default_value = "main")]
    pub branch: String,
    /// Path inside the tenant repository (overlays set ./<env> unless --env-path)
    #[arg(long, default_value = "./")]
    pub path: String,
    /// Authentication (default: ssh for ssh:// URLs, basic for http(s)://)
    #[arg(long, value_enum)]
    pub auth: Option<AuthKind>,
    /// ClusterRole bound in the tenant's namespaces
    #[arg(long = "cluster-role", default_value = "cluster-admin")]
    pub cluster_role: String,
    /// Service account the tenant's Kustomization runs as (default: the tenant name)
    #[arg(long = "service-account")]
    pub service_account: Option<String>,
    /// Per-environment path in the tenant repository, e.g. staging=./staging (repeatable)
    #[arg(long = "env-path", value_name = "ENV=PATH")]
    pub env_paths: Vec<String>,
    /// Fleet repository folder
    #[arg(long = "repo", default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// Username for basic auth (password from --password-stdin or KUSTOS_GIT_PASSWORD)
    #[arg(long, default_value = "git")]
    pub username: String,
    /// Read the basic-auth password or token from stdin
    #[arg(long = "password-stdin")]
    pub password_stdin: bool,
    /// SSH key algorithm for the deploy key
    #[arg(long = "ssh-key-algorithm", default_value = "ecdsa")]
    pub ssh_key_algorithm: String,
    /// ECDSA curve for the deploy key
    #[arg(long = "ssh-ecdsa-curve", default_value = "p384")]
    pub ssh_ecdsa_curve: String,
    /// Use these known_hosts lines instead of scanning the Git host
    #[arg(long = "known-hosts-file", value_name = "FILE")]
    pub known_hosts_file: Option<PathBuf>,
    /// Record every host key type the Git server offers
    #[arg(long = "all-host-keys")]
    pub all_host_keys: bool,
    /// Regenerate the credentials even if auth.yaml exists
    #[arg(long = "rotate-credentials")]
    pub rotate_credentials: bool,
    /// Overwrite files that differ from what kustos would write
    #[arg(long)]
    pub force: bool,
    /// Only show what would change
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Agree to a layout change the tenant needs (an overlay-level `namespace:` moves into the tenants' bases)
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Add this URL pattern (Kyverno wildcards) to the fleet's source policy, e.g. 'https://gitlab.example.com/org/*'
    #[arg(long = "allow-source", value_name = "PATTERN")]
    pub allow_source: Option<String>,
    /// kubectl binary that builds every environment before anything is written
    #[arg(long, default_value = "kubectl", env = "KUSTOS_KUBECTL")]
    pub kubectl: PathBuf,
}

/// Arguments of `tenant remove`.
#[derive(Args, Debug)]
pub struct TenantRemoveArgs {
    /// Tenant name
    pub name: String,
    /// Fleet repository folder
    #[arg(long = "repo", default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// Only show what would change
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Delete the tenant's encrypted credentials without asking
    #[arg(short = 'y', long)]
    pub yes: bool,
}

/// Arguments of `tenant list`.
#[derive(Args, Debug)]
pub struct TenantListArgs {
    /// Fleet repository folder
    #[arg(long = "repo", default_value = ".", value_name = "DIR")]
    pub repo: PathBuf,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// `kustos tenant …`.
pub fn tenant(g: &GlobalArgs, cmd: TenantCommand) -> CliResult {
    match cmd {
        TenantCommand::Add(a) => tenant_add(g, *a),
        TenantCommand::Remove(a) => {
            let plan = tenant::plan_remove(&a.repo, &a.name)?;
            if !a.dry_run {
                confirm_credential_deletion(&plan, a.yes)?;
            }
            // Removing is what the admin asked for: no --force needed.
            apply_plan(&plan, true, a.dry_run)
        }
        TenantCommand::List(a) => {
            let tenants = tenant::list(&a.repo)?;
            match a.output {
                OutputFormat::Json => {
                    let s = serde_json::to_string_pretty(&tenants).unwrap_or_default();
                    write_stdout(format!("{s}\n").as_bytes())
                }
                OutputFormat::Text => {
                    let mut out = format!(
                        "{:<16} {:<24} {:<10} {:<44} {:<10} {}\n",
                        "TENANT", "NAMESPACES", "BRANCH", "SOURCE", "AUTH", "ENVIRONMENTS"
                    );
                    for t in tenants {
                        out.push_str(&format!(
                            "{:<16} {:<24} {:<10} {:<44} {:<10} {}\n",
                            t.name,
                            t.namespaces.join(","),
                            t.branch,
                            t.source,
                            t.credentials,
                            t.environments.join(",")
                        ));
                    }
                    write_stdout(out.as_bytes())
                }
            }
        }
    }
}

/// Deleting a tenant's credentials cannot be undone from the repository
/// alone (the deploy key is registered with the Git host): it needs `-y`,
/// or a yes at the terminal, after the files are named.
fn confirm_credential_deletion(plan: &fleet::Plan, yes: bool) -> CliResult {
    let secrets: Vec<String> = plan
        .changes
        .iter()
        .filter(|c| c.kind == fleet::ChangeKind::Delete && c.path.ends_with("auth.yaml"))
        .map(|c| c.path.display().to_string())
        .collect();
    if secrets.is_empty() || yes {
        return Ok(());
    }
    use std::io::IsTerminal as _;
    let what = format!(
        "this deletes the tenant's encrypted Git credentials ({})",
        secrets.join(", ")
    );
    if std::io::stdin().is_terminal() {
        eprint!("{what}. Continue? [y/N] ");
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
        if matches!(line.trim(), "y" | "Y" | "yes") {
            return Ok(());
        }
        return Err(CliError::new(exit::GENERIC, "nothing was removed"));
    }
    Err(
        CliError::new(exit::GENERIC, format!("{what}; nothing was removed"))
            .with_hint("re-run with -y to confirm"),
    )
}

fn parse_env_paths(v: &[String]) -> CliResult<BTreeMap<String, String>> {
    let mut m = BTreeMap::new();
    for e in v {
        let (k, p) = e.split_once('=').ok_or_else(|| {
            CliError::new(
                exit::GENERIC,
                format!("--env-path {e:?}: expected ENV=PATH"),
            )
        })?;
        m.insert(k.to_string(), p.to_string());
    }
    Ok(m)
}

fn default_auth(url: &str) -> AuthKind {
    if url.starts_with("http://") || url.starts_with("https://") {
        AuthKind::Basic
    } else {
        AuthKind::Ssh
    }
}

fn read_secret_stdin(what: &str) -> CliResult<zeroize::Zeroizing<String>> {
    let raw = crate::fsutil::read_stdin()?;
    let text = String::from_utf8(raw.to_vec())
        .map_err(|_| CliError::new(exit::GENERIC, format!("the {what} on stdin is not UTF-8")))?;
    Ok(zeroize::Zeroizing::new(
        text.trim_end_matches(['\n', '\r']).to_string(),
    ))
}

/// Makes the tenant's Git credentials Secret, encrypted for the fleet's
/// `.sops.yaml` rule before it exists anywhere but in memory.
fn tenant_credentials(
    a: &TenantAddArgs,
    auth: AuthKind,
    url: &gitauth::GitUrl,
    secret_name: &str,
) -> CliResult<Vec<u8>> {
    let creds = match auth {
        AuthKind::Ssh => {
            let alg = match a.ssh_key_algorithm.as_str() {
                "ed25519" => KeyAlgorithm::Ed25519,
                "rsa" => KeyAlgorithm::Rsa(2048),
                "ecdsa" => KeyAlgorithm::Ecdsa(match a.ssh_ecdsa_curve.as_str() {
                    "p256" => EcdsaCurve::P256,
                    "p384" => EcdsaCurve::P384,
                    "p521" => EcdsaCurve::P521,
                    c => {
                        return Err(CliError::new(
                            exit::GENERIC,
                            format!("unknown ECDSA curve {c:?}: use p256, p384 or p521"),
                        ))
                    }
                }),
                o => {
                    return Err(CliError::new(
                        exit::GENERIC,
                        format!("unknown SSH key algorithm {o:?}: use ecdsa, ed25519 or rsa"),
                    ))
                }
            };
            let given;
            let hosts = match &a.known_hosts_file {
                Some(f) => {
                    given = std::fs::read_to_string(f)
                        .map_err(|e| CliError::from(crate::Error::io(f.display(), e)))?;
                    gitauth::KnownHostsSource::Given(&given)
                }
                None => gitauth::KnownHostsSource::Scan(gitauth::knownhosts::ScanOptions {
                    all_host_keys: a.all_host_keys,
                    ..Default::default()
                }),
            };
            gitauth::ssh_credentials(url, gitauth::SshKeySource::Generate(alg), hosts)?
        }
        AuthKind::Basic => {
            let password = if a.password_stdin {
                Some(read_secret_stdin("password")?)
            } else {
                std::env::var("KUSTOS_GIT_PASSWORD")
                    .ok()
                    .map(zeroize::Zeroizing::new)
            };
            if password.as_ref().is_none_or(|p| p.is_empty()) {
                return Err(CliError::new(
                    exit::GENERIC,
                    "a tenant on Git over HTTP/S needs a password or token",
                )
                .with_hint(
                    "pipe it to --password-stdin (or set KUSTOS_GIT_PASSWORD), or pass --auth none for a public repository",
                ));
            }
            gitauth::http_credentials(gitauth::HttpAuth {
                username: Some(a.username.clone()),
                password,
                ..Default::default()
            })?
        }
        AuthKind::None => {
            return Err(CliError::new(
                exit::GENERIC,
                "no credentials for --auth none",
            ))
        }
    };
    let meta = SecretMeta {
        name: secret_name.to_string(),
        namespace: a.namespaces[0].clone(),
        labels: vec![("toolkit.fluxcd.io/tenant".into(), a.name.clone())],
    };
    let plain = creds.render(&meta);
    let cfg_path = a.repo.join(".sops.yaml");
    let cfg = config::load(&cfg_path).map_err(|e| {
        CliError::from(e)
            .with_hint("run `kustos init` first: the fleet's .sops.yaml names the clusters' key")
    })?;
    let target = a.repo.join("tenants/base").join(&a.name).join("auth.yaml");
    let rule = cfg
        .rule_for(&target)?
        .ok_or_else(|| CliError::new(exit::GENERIC, ".sops.yaml has no creation rules"))?;
    let spec = EncryptSpec {
        groups: rule.key_groups.clone(),
        shamir_threshold: rule.shamir_threshold,
        ..Default::default()
    };
    let enc = gitauth::secret::encrypt(plain.as_bytes(), &spec, &cfg.stores)?;
    if let Some(public) = &creds.identity_pub {
        eprintln!(
            "deploy key for {}: add it as a READ-ONLY deploy key to the tenant repository:\n{}",
            url.url,
            public.trim_end()
        );
    }
    Ok(enc)
}

/// `kustos tenant add`.
pub fn tenant_add(_g: &GlobalArgs, a: TenantAddArgs) -> CliResult {
    let url = gitauth::parse_git_url(&a.git_url)?;
    if url.converted_from_scp {
        eprintln!(
            "note: {} is scp-style, which Flux rejects; using {}",
            a.git_url, url.url
        );
    }
    let auth_kind = a.auth.unwrap_or_else(|| default_auth(&url.url));
    let base = a.repo.join(format!("tenants/base/{}", a.name));
    let auth_path = base.join("auth.yaml");
    let secret_name = tenant::auth_secret_name(&a.name);
    let spec = TenantSpec {
        name: a.name.clone(),
        namespaces: a.namespaces.clone(),
        git_url: url.url.clone(),
        branch: a.branch.clone(),
        path: a.path.clone(),
        secret: (auth_kind != AuthKind::None).then(|| secret_name.clone()),
        cluster_role: a.cluster_role.clone(),
        service_account: a.service_account.clone().unwrap_or_else(|| a.name.clone()),
    };
    fleet::check_name("tenant", &spec.name)?;
    let kubectl = find_program(&a.kubectl);
    if kubectl.is_none() {
        eprintln!(
            "note: {} not found: the environments are not built before writing (run `kustos validate` afterwards)",
            a.kubectl.display()
        );
    }
    let opts = tenant::AddOptions {
        adopt_layout: a.yes,
        allow_source: a.allow_source.clone(),
        kubectl,
    };
    // Refusals that need no credentials come before any key or host scan.
    tenant::check_add(&a.repo, &spec, &opts)?;
    let auth = if auth_kind == AuthKind::None {
        tenant::AuthFile::None
    } else if auth_path.exists() && !a.rotate_credentials {
        tenant::AuthFile::Keep
    } else {
        tenant::AuthFile::New(tenant_credentials(&a, auth_kind, &url, &secret_name)?)
    };
    let plan = tenant::plan_add(
        &a.repo,
        &spec,
        &parse_env_paths(&a.env_paths)?,
        &auth,
        &opts,
    )?;
    // New credentials replace the old ones on purpose (--rotate-credentials).
    let force = a.force || (a.rotate_credentials && plan.conflicts().iter().all(|c| c.secret));
    apply_plan(&plan, force, a.dry_run)
}

/// A program given by name (searched in PATH) or path, if it exists.
fn find_program(p: &Path) -> Option<PathBuf> {
    if p.components().count() > 1 {
        return p.is_file().then(|| p.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(p))
        .find(|c| c.is_file())
}

impl From<tenant::TenantError> for CliError {
    fn from(e: tenant::TenantError) -> Self {
        use tenant::TenantError as T;
        let hint = match &e {
            T::SourceNotAllowed { .. } => Some(
                "pass --allow-source 'PATTERN' to add a pattern to the policy, or create the fleet with `kustos init --allowed-source PATTERN`",
            ),
            T::LayoutChange { .. } => Some("re-run with --yes to make this change"),
            _ => None,
        };
        let c = match e {
            T::Other(inner) => return inner.into(),
            other => CliError::new(exit::GENERIC, other.to_string()),
        };
        match hint {
            Some(h) => c.with_hint(h),
            None => c,
        }
    }
}

/// Arguments of `validate`.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// The fleet repository folder
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// text, json, or sarif (for code-review annotations)
    #[arg(long, short = 'o', value_enum, default_value_t = ValidateOutput::Text)]
    pub output: ValidateOutput,
    /// Skip building the kustomizations with `kubectl kustomize` (schemas are then checked for the files under clusters/ only)
    #[arg(long = "no-build")]
    pub no_build: bool,
    /// kubectl binary (its built-in kustomize builds the kustomizations)
    #[arg(long, default_value = "kubectl", env = "KUSTOS_KUBECTL")]
    pub kubectl: PathBuf,
    /// Folder of schemas that add to or override the built-in ones: CustomResourceDefinition YAML files, or JSON Schema files in kubeconform's layout ({group}/{kind}_{version}.json, {kind}-{group}-{version}.json)
    #[arg(long, value_name = "DIR")]
    pub schemas: Option<PathBuf>,
    /// Only refuse plaintext Secrets (and plaintext secretGenerator inputs) in these files, relative to DIR: the pre-commit hook's check of staged files
    #[arg(long = "plaintext-secrets", value_name = "FILE", num_args = 0..)]
    pub plaintext_secrets: Option<Vec<PathBuf>>,
}

/// Output formats of `validate`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ValidateOutput {
    /// For people.
    #[default]
    Text,
    /// For CI.
    Json,
    /// SARIF 2.1.0, for code-review tools.
    Sarif,
}

/// `kustos validate`.
pub fn validate(_g: &GlobalArgs, a: ValidateArgs) -> CliResult {
    let report = match &a.plaintext_secrets {
        Some(files) => validate::plaintext_secrets(&a.dir, files)?,
        None => validate::validate(
            &a.dir,
            &validate::ValidateOptions {
                build: !a.no_build,
                kubectl: a.kubectl.clone(),
                schemas: a.schemas.clone(),
            },
        )?,
    };
    match a.output {
        ValidateOutput::Json => {
            let s = serde_json::to_string_pretty(&report).unwrap_or_default();
            write_stdout(format!("{s}\n").as_bytes())?;
        }
        ValidateOutput::Sarif => {
            let log = crate::fleet::schema::sarif::sarif(&report);
            let s = serde_json::to_string_pretty(&log).unwrap_or_default();
            write_stdout(format!("{s}\n").as_bytes())?;
        }
        ValidateOutput::Text => {
            let mut out = String::new();
            for f in &report.findings {
                match f.line {
                    Some(l) => {
                        out.push_str(&format!("{}:{l}: {}: {}\n", f.file, f.rule, f.message))
                    }
                    None => out.push_str(&format!("{}: {}: {}\n", f.file, f.rule, f.message)),
                }
            }
            if let Some(s) = &report.schemas {
                for (object, by) in &s.not_served {
                    out.push_str(&format!(
                        "note: {object}: this API version is no longer served by {by}\n"
                    ));
                }
                let skipped = s
                    .skipped_kinds
                    .iter()
                    .map(|(k, n)| format!("{k} ({n})"))
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push_str(&format!(
                    "{} objects checked against schemas (Kubernetes {}), {} skipped{}\n",
                    s.checked,
                    s.kubernetes,
                    s.skipped,
                    if skipped.is_empty() {
                        String::new()
                    } else {
                        format!(" (no schema: {skipped})")
                    }
                ));
            }
            out.push_str(&format!(
                "{} files checked, {} kustomizations built, {} finding(s)\n",
                report.files_checked,
                report.kustomizations_built,
                report.findings.len()
            ));
            write_stdout(out.as_bytes())?;
        }
    }
    if report.ok {
        Ok(())
    } else {
        Err(CliError::silent(exit::GENERIC))
    }
}

/// `fleet` subcommands.
#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Every SOPS file (found by content) with its keys, and every plaintext Secret
    Status(FleetStatusArgs),
    /// Rewrap every file's data key for its .sops.yaml rule, in parallel, all or nothing
    Updatekeys(FleetRunArgs),
    /// New data keys for every file (optionally adding/removing keys), all or nothing
    Rotate(FleetRotateArgs),
}

/// Arguments of `fleet status`.
#[derive(Args, Debug)]
pub struct FleetStatusArgs {
    /// The fleet repository
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Arguments of `fleet updatekeys`.
#[derive(Args, Debug)]
pub struct FleetRunArgs {
    /// The fleet repository
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Show what would change, write nothing
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Do not ask for confirmation
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// text or json
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

/// Arguments of `fleet rotate`.
#[derive(Args, Debug)]
pub struct FleetRotateArgs {
    #[command(flatten)]
    #[allow(missing_docs)]
    pub run: FleetRunArgs,
    /// Add age recipients (comma separated) to every file's first key group
    #[arg(long = "add-age", value_name = "RECIPIENTS")]
    pub add_age: Option<String>,
    /// Remove age recipients from every file
    #[arg(long = "rm-age", value_name = "RECIPIENTS")]
    pub rm_age: Option<String>,
    /// Add PGP fingerprints to every file's first key group
    #[arg(long = "add-pgp", value_name = "FPRS")]
    pub add_pgp: Option<String>,
    /// Remove PGP fingerprints from every file
    #[arg(long = "rm-pgp", value_name = "FPRS")]
    pub rm_pgp: Option<String>,
    /// Add AWS KMS key ARNs (each optionally +ROLE_ARN) to every file's first key group
    #[arg(long = "add-kms", value_name = "ARNS")]
    pub add_kms: Option<String>,
    /// Remove AWS KMS keys from every file
    #[arg(long = "rm-kms", value_name = "ARNS")]
    pub rm_kms: Option<String>,
    /// KMS encryption context of the --add-kms/--rm-kms keys, e.g. team:web
    #[arg(long = "encryption-context", value_name = "PAIRS")]
    pub encryption_context: Option<String>,
    /// The AWS profile of the --add-kms/--rm-kms keys
    #[arg(long = "aws-profile", value_name = "PROFILE")]
    pub aws_profile: Option<String>,
}

fn fleet_config(g: &GlobalArgs, dir: &std::path::Path) -> CliResult<Option<config::Config>> {
    if let Some(c) = &g.config {
        return Ok(Some(config::load(c)?));
    }
    // Like sops: the nearest .sops.yaml above the fleet root, else above the
    // working directory. Rules match paths relative to the config's folder.
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let found = config::find(&abs).or_else(|| config::find(&std::env::current_dir().ok()?));
    match found {
        Some(p) => Ok(Some(config::load(&p)?)),
        None => Ok(None),
    }
}

fn progress_fn() -> impl Fn(usize, usize) + Sync {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    move |done: usize, total: usize| {
        if tty && (done == total || done.is_multiple_of(8)) {
            let width = 30;
            let filled = (done * width).checked_div(total).unwrap_or(width);
            eprint!(
                "\r[{}{}] {done}/{total} files",
                "#".repeat(filled),
                " ".repeat(width - filled)
            );
            if done == total {
                eprintln!();
            }
        }
    }
}

fn run_fleet(g: &GlobalArgs, a: &FleetRunArgs, op: fleet::bulk::Operation) -> CliResult {
    let cfg = fleet_config(g, &a.dir)?;
    if matches!(op, fleet::bulk::Operation::UpdateKeys) && cfg.is_none() {
        return Err(CliError::new(
            exit::CONFIG_FILE_NOT_FOUND,
            "fleet updatekeys needs a .sops.yaml in or above the fleet root (or --config)",
        ));
    }
    let ring = super::sops_cmds::key_ring(g, vec!["age".into(), "pgp".into()]);
    // Always plan first; write only after confirmation.
    let plan = fleet::bulk::run(&a.dir, &op, cfg.as_ref(), &ring, true, &progress_fn())?;
    let report = if plan.updated == 0 || a.dry_run {
        plan
    } else {
        if !a.yes {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                return Err(CliError::new(
                    exit::GENERIC,
                    format!(
                        "{} files would change; pass -y to apply (or --dry-run to review)",
                        plan.updated
                    ),
                ));
            }
            eprint!(
                "{} files will be rewritten. Continue? (y/n): ",
                plan.updated
            );
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
            if line.trim() != "y" {
                return Err(CliError::new(exit::GENERIC, "aborted; nothing was changed"));
            }
        }
        fleet::bulk::run(&a.dir, &op, cfg.as_ref(), &ring, false, &progress_fn())?
    };
    match a.output {
        OutputFormat::Json => {
            write_stdout(
                format!(
                    "{}\n",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                )
                .as_bytes(),
            )?;
        }
        OutputFormat::Text => {
            let mut out = String::new();
            for f in report.files.iter().filter(|f| f.result != "unchanged") {
                let state = match (f.result, report.dry_run) {
                    ("updated", true) => "would update",
                    (r, _) => r,
                };
                let keys: Vec<String> = f
                    .added
                    .iter()
                    .map(|k| format!("+{k}"))
                    .chain(f.removed.iter().map(|k| format!("-{k}")))
                    .collect();
                if keys.is_empty() {
                    out.push_str(&format!("{state:<12} {}\n", f.file));
                } else {
                    out.push_str(&format!("{state:<12} {} ({})\n", f.file, keys.join(", ")));
                }
            }
            let verb = if report.dry_run {
                "would update"
            } else {
                "updated"
            };
            out.push_str(&format!(
                "{verb} {} of {} SOPS files\n",
                report.updated,
                report.files.len()
            ));
            write_stdout(out.as_bytes())?;
        }
    }
    Ok(())
}

/// `kustos fleet …`.
pub fn fleet_cmd(g: &GlobalArgs, cmd: FleetCommand) -> CliResult {
    match cmd {
        FleetCommand::Status(a) => {
            let cfg = fleet_config(g, &a.dir)?;
            let st = fleet::bulk::status(&a.dir, cfg.as_ref())?;
            match a.output {
                OutputFormat::Json => write_stdout(
                    format!(
                        "{}\n",
                        serde_json::to_string_pretty(&st).unwrap_or_default()
                    )
                    .as_bytes(),
                ),
                OutputFormat::Text => {
                    let mut out = format!(
                        "{:<56} {:<7} {:<10} {:<21} {}\n",
                        "FILE", "FORMAT", "RULE", "LASTMODIFIED", "KEYS"
                    );
                    for f in &st.encrypted {
                        let keys: Vec<String> = f.groups.iter().map(|g| g.join(",")).collect();
                        out.push_str(&format!(
                            "{:<56} {:<7} {:<10} {:<21} {}\n",
                            f.file,
                            f.format,
                            f.rule,
                            f.lastmodified,
                            keys.join(" | ")
                        ));
                    }
                    for p in &st.plaintext_secrets {
                        out.push_str(&format!("PLAINTEXT {p}\n"));
                    }
                    out.push_str(&format!(
                        "{} encrypted files, {} plaintext Secrets\n",
                        st.encrypted.len(),
                        st.plaintext_secrets.len()
                    ));
                    write_stdout(out.as_bytes())?;
                    if st.plaintext_secrets.is_empty() {
                        Ok(())
                    } else {
                        Err(CliError::silent(exit::GENERIC))
                    }
                }
            }
        }
        FleetCommand::Updatekeys(a) => run_fleet(g, &a, fleet::bulk::Operation::UpdateKeys),
        FleetCommand::Rotate(a) => {
            let context = super::flags::encryption_context(a.encryption_context.as_deref())?;
            let changes =
                crate::ops::rekey::KeyChanges::parse(&a.add_age, &a.rm_age, &a.add_pgp, &a.rm_pgp)?
                    .with_kms(
                        &a.add_kms,
                        &a.rm_kms,
                        &context,
                        a.aws_profile.as_deref().unwrap_or(""),
                    )?;
            run_fleet(g, &a.run, fleet::bulk::Operation::Rotate(changes))
        }
    }
}
