//! The manifests of a Flux multi-tenancy fleet repository.
//!
//! Layout and content follow fluxcd/flux2-multi-tenancy and the `flux create
//! … --export` output (2-space indentation, Flux's field order, `1m0s`
//! durations, `prune` always written), updated where that repository is
//! stale: current Flux API versions, Kyverno policies in the 1.13+ syntax
//! (`failureAction` per rule, `match.any`), a `decryption` block on the
//! tenants Kustomization, and no obsolete `gotk:<ns>:reconciler` user.

use std::fmt::Write as _;

use crate::formats::yaml::emit::scalar;

/// The cluster decryption key kind, which decides the Secret name Flux uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecryptionKey {
    /// age recipient; Secret `sops-age` with `age.agekey`.
    Age(String),
    /// OpenPGP fingerprint; Secret `sops-gpg` with `sops.asc`.
    Pgp(String),
}

impl DecryptionKey {
    /// The decryption Secret's name in flux-system.
    pub fn secret_name(&self) -> &'static str {
        match self {
            DecryptionKey::Age(_) => super::decryption::AGE_SECRET_NAME,
            DecryptionKey::Pgp(_) => super::decryption::PGP_SECRET_NAME,
        }
    }
}

/// Kyverno version pinned in `infrastructure/kyverno/source.yaml`.
pub const KYVERNO_VERSION: &str = "v1.14.4";

/// Controllers whose images `verify-flux-images` checks.
const FLUX_CONTROLLERS: &[&str] = &[
    "source-controller",
    "kustomize-controller",
    "helm-controller",
    "notification-controller",
    "image-reflector-controller",
    "image-automation-controller",
];

/// `clusters/<env>/flux-system/gotk-*.yaml` placeholders.
pub fn gotk_placeholder() -> String {
    "# This file will be generated automatically by flux bootstrap.\n".into()
}

/// The lockdown patches on the bootstrap kustomization.
pub fn flux_system_kustomization() -> String {
    let mut s = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - gotk-components.yaml\n  - gotk-sync.yaml\npatches:\n",
    );
    let arg_patch = |s: &mut String, arg: &str, target: &str| {
        let _ = write!(
            s,
            "  - patch: |\n      - op: add\n        path: /spec/template/spec/containers/0/args/-\n        value: {arg}\n    target:\n      kind: Deployment\n      name: \"{target}\"\n"
        );
    };
    arg_patch(
        &mut s,
        "--no-cross-namespace-refs=true",
        "(kustomize-controller|helm-controller|notification-controller|image-reflector-controller|image-automation-controller)",
    );
    arg_patch(&mut s, "--no-remote-bases=true", "kustomize-controller");
    arg_patch(
        &mut s,
        "--default-service-account=default",
        "(kustomize-controller|helm-controller)",
    );
    s.push_str(
        "  - patch: |\n      - op: add\n        path: /spec/serviceAccountName\n        value: kustomize-controller\n    target:\n      kind: Kustomization\n      name: \"flux-system\"\n",
    );
    s
}

/// Durations per environment: production reconciles a little faster, like
/// the reference repository.
fn intervals(env: &str) -> (&'static str, &'static str, &'static str) {
    if env == "production" {
        ("10m0s", "5m0s", "5m0s")
    } else {
        ("12h0m0s", "10m0s", "15m0s")
    }
}

/// `clusters/<env>/infrastructure.yaml`: Kyverno, then its policies.
pub fn cluster_infrastructure(env: &str) -> String {
    let (kyverno_interval, kyverno_timeout, policies_interval) = intervals(env);
    format!(
        "---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: kyverno
  namespace: flux-system
spec:
  interval: {kyverno_interval}
  path: ./infrastructure/kyverno
  prune: true
  serviceAccountName: kustomize-controller
  sourceRef:
    kind: GitRepository
    name: flux-system
  timeout: {kyverno_timeout}
  wait: true
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: kyverno-policies
  namespace: flux-system
spec:
  dependsOn:
    - name: kyverno
  interval: {policies_interval}
  path: ./infrastructure/kyverno-policies
  prune: true
  serviceAccountName: kustomize-controller
  sourceRef:
    kind: GitRepository
    name: flux-system
"
    )
}

/// `clusters/<env>/tenants.yaml`: the tenants, with SOPS decryption.
pub fn cluster_tenants(env: &str, key: &DecryptionKey) -> String {
    format!(
        "---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: tenants
  namespace: flux-system
spec:
  decryption:
    provider: sops
    secretRef:
      name: {}
  dependsOn:
    - name: kyverno-policies
  interval: 5m0s
  path: ./tenants/{}
  prune: true
  serviceAccountName: kustomize-controller
  sourceRef:
    kind: GitRepository
    name: flux-system
",
        key.secret_name(),
        scalar(env)
    )
}

/// `infrastructure/kyverno/kustomization.yaml`.
pub fn kyverno_kustomization() -> String {
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - source.yaml\n  - sync.yaml\n".into()
}

/// `infrastructure/kyverno/source.yaml`: Kyverno's signed OCI manifests.
pub fn kyverno_source() -> String {
    format!(
        "---
apiVersion: source.toolkit.fluxcd.io/v1
kind: OCIRepository
metadata:
  name: kyverno-controller
  namespace: flux-system
spec:
  interval: 2h0m0s
  provider: generic
  ref:
    tag: {KYVERNO_VERSION}
  url: oci://ghcr.io/kyverno/manifests/kyverno
  verify:
    provider: cosign
"
    )
}

/// `infrastructure/kyverno/sync.yaml`.
pub fn kyverno_sync() -> String {
    "---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: kyverno-controller
  namespace: flux-system
spec:
  interval: 12h0m0s
  path: ./
  prune: true
  serviceAccountName: kustomize-controller
  sourceRef:
    kind: OCIRepository
    name: kyverno-controller
  timeout: 5m0s
  wait: true
"
    .into()
}

/// `infrastructure/kyverno-policies/kustomization.yaml`.
pub fn policies_kustomization() -> String {
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - verify-flux-images.yaml\n  - verify-sources.yaml\n  - require-service-account.yaml\n".into()
}

/// Flux images must be signed by the Flux project (cosign keyless).
pub fn policy_verify_flux_images() -> String {
    let mut refs = String::new();
    for c in FLUX_CONTROLLERS {
        let _ = writeln!(refs, "            - \"ghcr.io/fluxcd/{c}:*\"");
        let _ = writeln!(refs, "            - \"docker.io/fluxcd/{c}:*\"");
    }
    format!(
        "apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: verify-flux-images
spec:
  background: false
  webhookTimeoutSeconds: 30
  failurePolicy: Fail
  rules:
    - name: verify-cosign-signature
      match:
        any:
          - resources:
              kinds:
                - Pod
      verifyImages:
        - imageReferences:
{refs}          failureAction: Enforce
          mutateDigest: false
          verifyDigest: false
          attestors:
            - entries:
                - keyless:
                    subject: \"https://github.com/fluxcd/*\"
                    issuer: \"https://token.actions.githubusercontent.com\"
                    rekor:
                      url: https://rekor.sigstore.dev
"
    )
}

/// Tenant sources (Git, Helm, OCI) must come from the allowed URL patterns.
/// kustos reads the patterns back from this file in `kustos validate`.
pub fn policy_verify_sources(allowed: &[String]) -> String {
    let mut pats = String::new();
    for p in allowed {
        let _ = write!(
            pats,
            "            - spec:\n                url: {}\n",
            scalar(p)
        );
    }
    let mut rules = String::new();
    for (name, kinds) in [
        ("allowed-git-repositories", "GitRepository"),
        ("allowed-helm-repositories", "HelmRepository"),
        ("allowed-oci-repositories", "OCIRepository"),
    ] {
        let _ = write!(
            rules,
            "    - name: {name}
      match:
        any:
          - resources:
              kinds:
                - {kinds}
      exclude:
        any:
          - resources:
              namespaces:
                - flux-system
      validate:
        failureAction: Enforce
        message: \".spec.url must match one of the allowed source patterns\"
        anyPattern:
{pats}"
        );
    }
    format!(
        "apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: verify-sources
spec:
  background: true
  rules:
{rules}"
    )
}

/// Tenant Kustomizations and HelmReleases must name a service account.
pub fn policy_require_service_account() -> String {
    "apiVersion: kyverno.io/v1
kind: ClusterPolicy
metadata:
  name: require-service-account
spec:
  background: true
  rules:
    - name: require-service-account-name
      match:
        any:
          - resources:
              kinds:
                - kustomize.toolkit.fluxcd.io/v1/Kustomization
                - helm.toolkit.fluxcd.io/v2/HelmRelease
      exclude:
        any:
          - resources:
              namespaces:
                - flux-system
      validate:
        failureAction: Enforce
        message: \"spec.serviceAccountName is required for tenant Kustomizations and HelmReleases\"
        pattern:
          spec:
            serviceAccountName: \"?*\"
"
    .into()
}

/// `.sops.yaml` at the repository root.
pub fn sops_config(key: &DecryptionKey) -> String {
    let keyline = match key {
        DecryptionKey::Age(r) => format!("    age: {}\n", scalar(r)),
        DecryptionKey::Pgp(fp) => format!("    pgp: {}\n", scalar(fp)),
    };
    format!(
        "# Written by `kustos init`: every Secret under tenants/, clusters/ and
# infrastructure/ is encrypted for the cluster's decryption key ({}) before
# it is committed.
creation_rules:
  - path_regex: ^(tenants|clusters|infrastructure)/.*\\.ya?ml$
    encrypted_regex: ^(data|stringData)$
{keyline}",
        key.secret_name()
    )
}

/// `clusters/<env>/.sops.pub.age`: the public half of the cluster's age
/// key, so `validate` can tell which files the cluster can decrypt.
pub fn cluster_public_age_key(recipient: &str) -> String {
    format!("{recipient}\n")
}

/// `tenants/<env>/kustomization.yaml` with no tenants yet.
pub fn env_kustomization_empty() -> String {
    "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources: []\n".into()
}

/// What a tenant is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantSpec {
    /// Tenant name (DNS label).
    pub name: String,
    /// Namespaces; the first holds the tenant's GitRepository and Kustomization.
    pub namespaces: Vec<String>,
    /// Tenant repository URL.
    pub git_url: String,
    /// Branch to follow.
    pub branch: String,
    /// Base path inside the tenant repository (overlays set per-env paths).
    pub path: String,
    /// Name of the Git credentials Secret (none for public repositories).
    pub secret: Option<String>,
    /// ClusterRole bound in each namespace.
    pub cluster_role: String,
    /// Service account the tenant's Kustomization impersonates.
    pub service_account: String,
}

impl TenantSpec {
    /// The namespace holding the tenant's Flux objects.
    pub fn home_namespace(&self) -> &str {
        &self.namespaces[0]
    }
}

fn label_block(tenant: &str) -> String {
    format!(
        "  labels:\n    toolkit.fluxcd.io/tenant: {}\n",
        scalar(tenant)
    )
}

/// `tenants/base/<name>/rbac.yaml`: Namespace, ServiceAccount and RoleBinding
/// per namespace (`flux create tenant` without the unused
/// `gotk:<ns>:reconciler` user subject).
pub fn tenant_rbac(t: &TenantSpec) -> String {
    let mut s = String::new();
    let labels = label_block(&t.name);
    for ns in &t.namespaces {
        let ns = scalar(ns);
        let sa = scalar(&t.service_account);
        let _ = write!(
            s,
            "---
apiVersion: v1
kind: Namespace
metadata:
{labels}  name: {ns}
---
apiVersion: v1
kind: ServiceAccount
metadata:
{labels}  name: {sa}
  namespace: {ns}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
{labels}  name: {}
  namespace: {ns}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {}
subjects:
  - kind: ServiceAccount
    name: {sa}
    namespace: {ns}
",
            scalar(&format!("{}-reconciler", t.name)),
            scalar(&t.cluster_role),
        );
    }
    s
}

/// `tenants/base/<name>/sync.yaml`: GitRepository + Kustomization.
pub fn tenant_sync(t: &TenantSpec) -> String {
    let name = scalar(&t.name);
    let ns = scalar(t.home_namespace());
    let secret = match &t.secret {
        Some(s) => format!("  secretRef:\n    name: {}\n", scalar(s)),
        None => String::new(),
    };
    format!(
        "---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: {name}
  namespace: {ns}
spec:
  interval: 1m0s
  ref:
    branch: {}
{secret}  url: {}
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {name}
  namespace: {ns}
spec:
  interval: 5m0s
  path: {}
  prune: true
  serviceAccountName: {}
  sourceRef:
    kind: GitRepository
    name: {name}
",
        scalar(&t.branch),
        scalar(&t.git_url),
        scalar(&t.path),
        scalar(&t.service_account),
    )
}

/// `tenants/base/<name>/kustomization.yaml`.
pub fn tenant_kustomization(with_auth: bool) -> String {
    let mut s = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - rbac.yaml\n  - sync.yaml\n",
    );
    if with_auth {
        s.push_str("  - auth.yaml\n");
    }
    s
}

/// `tenants/<env>/<name>-patch.yaml`: the per-environment path.
pub fn tenant_env_patch(t: &TenantSpec, path: &str) -> String {
    format!(
        "apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: {}
  namespace: {}
spec:
  path: {}
",
        scalar(&t.name),
        scalar(t.home_namespace()),
        scalar(path)
    )
}
