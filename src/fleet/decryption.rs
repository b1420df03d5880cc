//! The Flux decryption Secret that holds a cluster's SOPS key, and the
//! snippets that wire it up (`.sops.yaml`, a Kustomization's
//! `spec.decryption`).

use zeroize::Zeroizing;

use crate::gitauth::secret::{self, SecretMeta, ENCRYPTED_REGEX};

/// Default Secret name for an age key, as in Flux's documentation.
pub const AGE_SECRET_NAME: &str = "sops-age";
/// Default Secret name for a PGP key, as in Flux's documentation.
pub const PGP_SECRET_NAME: &str = "sops-gpg";

/// The decryption Secret: one `stringData` entry (so it can be reviewed
/// before `kubectl apply`), laid out like Flux's exports.
pub fn decryption_secret(meta: &SecretMeta, entry: &str, content: &str) -> Zeroizing<String> {
    secret::render(meta, &[(entry, content)])
}

/// A `.sops.yaml` that encrypts the `data`/`stringData` of every YAML file
/// to the given age recipient and/or PGP fingerprint.
pub fn sops_yaml_snippet(age: Option<&str>, pgp: Option<&str>) -> String {
    let mut s = String::from("creation_rules:\n  - path_regex: .*\\.ya?ml$\n");
    s.push_str(&format!("    encrypted_regex: {ENCRYPTED_REGEX}\n"));
    if let Some(a) = age {
        s.push_str(&format!("    age: {a}\n"));
    }
    if let Some(p) = pgp {
        s.push_str(&format!("    pgp: {p}\n"));
    }
    s
}

/// The `spec.decryption` block a Flux Kustomization needs to use the Secret.
pub fn kustomization_snippet(secret_name: &str) -> String {
    format!("spec:\n  decryption:\n    provider: sops\n    secretRef:\n      name: {secret_name}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::clusterkey::{generate_age, AGE_ENTRY};

    #[test]
    fn the_secret_is_laid_out_like_flux_exports() {
        let k = generate_age();
        let last = k.file.lines().last().unwrap().to_string();
        let meta = SecretMeta {
            name: AGE_SECRET_NAME.into(),
            namespace: "flux-system".into(),
            labels: vec![],
        };
        let s = decryption_secret(&meta, AGE_ENTRY, &k.file);
        assert!(s.starts_with("---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: sops-age\n  namespace: flux-system\nstringData:\n  age.agekey: |\n    # created: "));
        assert!(s.ends_with(&format!("    {last}\n\n")));
    }
}
