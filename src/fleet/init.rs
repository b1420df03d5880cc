//! `kustos init`: the platform admin repository of the flux2-multi-tenancy
//! layout (clusters/, infrastructure/, tenants/, .sops.yaml).

use std::path::Path;

use super::templates::{self as t, DecryptionKey};
use super::{check_name, Plan};
use crate::Result;

/// Options of `kustos init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Cluster environments, e.g. staging and production.
    pub clusters: Vec<String>,
    /// The clusters' decryption key (recipient or fingerprint).
    pub key: DecryptionKey,
    /// URL patterns tenant sources must match (Kyverno wildcards).
    pub allowed_sources: Vec<String>,
}

/// Plans the files of a new fleet repository at `root`.
pub fn plan(root: &Path, o: &InitOptions) -> Result<Plan> {
    let mut p = Plan::new(root);
    for env in &o.clusters {
        check_name("cluster", env)?;
        let c = format!("clusters/{env}");
        p.put(
            format!("{c}/flux-system/gotk-components.yaml"),
            t::gotk_placeholder(),
        )?;
        p.put(
            format!("{c}/flux-system/gotk-sync.yaml"),
            t::gotk_placeholder(),
        )?;
        p.put(
            format!("{c}/flux-system/kustomization.yaml"),
            t::flux_system_kustomization(),
        )?;
        p.put(
            format!("{c}/infrastructure.yaml"),
            t::cluster_infrastructure(env),
        )?;
        p.put(format!("{c}/tenants.yaml"), t::cluster_tenants(env, &o.key))?;
        if let DecryptionKey::Age(r) = &o.key {
            p.put(format!("{c}/.sops.pub.age"), t::cluster_public_age_key(r))?;
        }
        // tenants/<env> may already list tenants: only create it when missing.
        let env_k = format!("tenants/{env}/kustomization.yaml");
        if !root.join(&env_k).exists() {
            p.put(env_k, t::env_kustomization_empty())?;
        }
    }
    p.put(
        "infrastructure/kyverno/kustomization.yaml",
        t::kyverno_kustomization(),
    )?;
    p.put("infrastructure/kyverno/source.yaml", t::kyverno_source())?;
    p.put("infrastructure/kyverno/sync.yaml", t::kyverno_sync())?;
    p.put(
        "infrastructure/kyverno-policies/kustomization.yaml",
        t::policies_kustomization(),
    )?;
    p.put(
        "infrastructure/kyverno-policies/verify-flux-images.yaml",
        t::policy_verify_flux_images(),
    )?;
    p.put(
        "infrastructure/kyverno-policies/verify-sources.yaml",
        t::policy_verify_sources(&o.allowed_sources),
    )?;
    p.put(
        "infrastructure/kyverno-policies/require-service-account.yaml",
        t::policy_require_service_account(),
    )?;
    if !root.join("tenants/base").is_dir() {
        p.put("tenants/base/.gitkeep", "")?;
    }
    p.put(".sops.yaml", t::sops_config(&o.key))?;
    Ok(p)
}
