//! `kustos demo`: the platform admin's whole flow on generated keys in a
//! temporary folder: a cluster decryption key, a fleet repository, a tenant
//! onboarded with encrypted Git credentials, offline validation, and the
//! in-cluster render that decrypts them again.

use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::Args;

use super::{CliError, CliResult};
use crate::error::exit;
use crate::fleet::templates::{DecryptionKey, TenantSpec};
use crate::fleet::{init, tenant, validate};
use crate::fsutil::{self, NewFileMode};
use crate::keys::KeyRing;
use crate::ops::EncryptSpec;

/// Arguments of `demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Work in this folder instead of a temporary one (kept afterwards)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

fn io(e: std::io::Error) -> CliError {
    CliError::new(exit::GENERIC, e.to_string())
}

/// The repository as an indented listing, four levels deep.
fn tree(dir: &Path) -> String {
    crate::fsutil::walk(dir)
        .into_iter()
        .filter(|e| e.depth <= 3)
        .map(|e| {
            format!(
                "     {}{}{}\n",
                "  ".repeat(e.depth),
                e.name(),
                if e.is_dir { "/" } else { "" }
            )
        })
        .collect()
}

/// Runs the demo.
pub fn run(a: DemoArgs) -> CliResult {
    let tmp;
    let dir = match &a.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(io)?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().map_err(io)?;
            tmp.path().to_path_buf()
        }
    };
    let t0 = Instant::now();
    println!("kustos demo in {}\n", dir.display());
    let (keys, recipient) = make_cluster_key(&dir)?;
    let repo = init_fleet(&dir, &recipient)?;
    add_tenant(&repo, recipient)?;
    let has_kubectl = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("kubectl").is_file()));
    validate_fleet(&repo, has_kubectl)?;
    if has_kubectl {
        render_tenant(&repo, &keys)?;
    } else {
        println!("5. (kubectl not found: skipping the in-cluster render step)");
    }
    println!("\nDone in {:.1?}.", t0.elapsed());
    if a.dir.is_some() {
        println!("Try: kustos tenant list --repo {}", repo.display());
    } else {
        println!("(The temporary folder is removed; pass --dir DIR to keep the files.)");
    }
    Ok(())
}

/// Step 1, the clusters' decryption key (what `kustos keygen age` makes):
/// its folder and its recipient.
fn make_cluster_key(dir: &Path) -> Result<(PathBuf, String), CliError> {
    let id = age::x25519::Identity::generate();
    let recipient = id.to_public().to_string();
    let keys = dir.join("cluster-keys");
    std::fs::create_dir_all(&keys).map_err(io)?;
    {
        use age::secrecy::ExposeSecret;
        let text = zeroize::Zeroizing::new(format!("{}\n", id.to_string().expose_secret()));
        fsutil::write_atomic(
            &keys.join("age.agekey"),
            text.as_bytes(),
            NewFileMode::Private,
        )?;
    }
    println!("1. cluster decryption key: {recipient}\n   (cluster-keys/age.agekey, mode 0600; in the cluster it is the flux-system/sops-age Secret)");
    Ok((keys, recipient))
}

/// Step 2, the fleet repository.
fn init_fleet(dir: &Path, recipient: &str) -> Result<PathBuf, CliError> {
    let repo = dir.join("fleet");
    let plan = init::plan(
        &repo,
        &init::InitOptions {
            clusters: vec!["staging".into(), "production".into()],
            key: DecryptionKey::Age(recipient.to_string()),
            allowed_sources: vec!["https://github.com/example/*".into()],
        },
    )?;
    plan.apply(false)?;
    println!(
        "2. kustos init: {} files (lockdown patches, Kyverno policies, .sops.yaml)",
        plan.changes.len()
    );

    Ok(repo)
}

/// Step 3, a tenant with HTTPS credentials, encrypted before they are written.
fn add_tenant(repo: &Path, recipient: String) -> Result<(), CliError> {
    let spec = TenantSpec {
        name: "dev-team".into(),
        namespaces: vec!["apps".into()],
        git_url: "https://github.com/example/dev-team".into(),
        branch: "main".into(),
        path: "./".into(),
        secret: Some("dev-team-auth".into()),
        cluster_role: "cluster-admin".into(),
        service_account: "dev-team".into(),
    };
    let creds = crate::gitauth::http_credentials(crate::gitauth::HttpAuth {
        username: Some("git".into()),
        password: Some(zeroize::Zeroizing::new(
            "demo-token-not-a-real-secret".into(),
        )),
        ..Default::default()
    })?;
    let meta = crate::gitauth::secret::SecretMeta {
        name: "dev-team-auth".into(),
        namespace: "apps".into(),
        labels: vec![("toolkit.fluxcd.io/tenant".into(), "dev-team".into())],
    };
    let t = Instant::now();
    let enc = crate::gitauth::secret::encrypt(
        creds.render(&meta).as_bytes(),
        &EncryptSpec {
            groups: vec![vec![crate::keys::Recipient::Age(recipient)]],
            ..Default::default()
        },
        &Default::default(),
    )?;
    let plan = tenant::plan_add(
        repo,
        &spec,
        &Default::default(),
        &tenant::AuthFile::New(enc),
        &Default::default(),
    )?;
    plan.apply(false)?;
    println!(
        "3. kustos tenant add dev-team: credentials encrypted in {:.1?}; the repository now holds:",
        t.elapsed()
    );
    print!("{}", tree(repo));
    let auth = std::fs::read_to_string(repo.join("tenants/base/dev-team/auth.yaml")).map_err(io)?;
    println!("   tenants/base/dev-team/auth.yaml:");
    for line in auth.lines().take(12) {
        println!("     {}", line.chars().take(100).collect::<String>());
    }

    Ok(())
}

/// Step 4, offline validation (kustomize builds when kubectl is installed).
fn validate_fleet(repo: &Path, build: bool) -> Result<(), CliError> {
    let report = validate::validate(
        repo,
        &validate::ValidateOptions {
            build,
            ..Default::default()
        },
    )?;
    println!(
        "4. kustos validate: {} files, {} kustomizations built, {} findings",
        report.files_checked,
        report.kustomizations_built,
        report.findings.len()
    );
    if !report.ok {
        return Err(CliError::new(
            exit::GENERIC,
            "demo: the generated repository did not validate",
        ));
    }

    Ok(())
}

/// Step 5, what the cluster does: build and decrypt with the cluster key only.
fn render_tenant(repo: &Path, keys: &Path) -> Result<(), CliError> {
    let ring = KeyRing::from_dir(keys);
    let t = Instant::now();
    let out = crate::render::render(
        &repo.join("tenants/staging"),
        &ring,
        &crate::render::RenderOptions {
            tenant: Some("apps".into()),
            ..Default::default()
        },
    )
    .map_err(|e| CliError::new(e.exit_code(), e.to_string()))?;
    let text = String::from_utf8_lossy(&out.yaml);
    let ok = text.contains("password: demo-token-not-a-real-secret");
    println!(
        "5. kustos render tenants/staging --tenant apps: {} objects in {:.1?}, the tenant's Secret decrypted with the cluster key (MAC verified): {}",
        text.matches("\napiVersion:").count() + 1,
        t.elapsed(),
        if ok { "yes" } else { "NO" }
    );
    if !ok {
        return Err(CliError::new(
            exit::GENERIC,
            "demo: render did not decrypt the tenant credentials",
        ));
    }
    Ok(())
}
