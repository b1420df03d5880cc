//! What kustos knows about kustomization files, shared by `render`,
//! `validate` and the plugin's doctor: their names, remote entries, and
//! every file a build reads ([`closure`]).

pub mod closure;

/// The names kustomize accepts for a kustomization file, in its order.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// Whether a file name is one of [`KUSTOMIZATION_FILES`].
pub fn is_kustomization_file(name: &str) -> bool {
    KUSTOMIZATION_FILES.contains(&name)
}

/// Whether a `resources`/`components`/… entry is a URL or Git reference
/// kustomize would fetch.
pub fn looks_remote(entry: &str) -> bool {
    entry.contains("://")
        || entry.starts_with("git@")
        || entry.starts_with("git::")
        || entry.starts_with("github.com/")
        || entry.starts_with("gitlab.com/")
        || ["?ref=", "?version=", "?timeout=", "?submodules="]
            .iter()
            .any(|q| entry.contains(q))
}

/// Whether an entry's first component is a host name
/// (`example.com/org/repo`): kustomize clones such entries when no local
/// path has that name.
pub fn host_like(entry: &str) -> bool {
    let first = entry.split('/').next().unwrap_or("");
    first.contains('.') && !first.starts_with('.') && entry.contains('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_entries() {
        for e in [
            "https://github.com/org/repo",
            "git@github.com:org/repo.git",
            "github.com/org/repo//dir?ref=v1",
            "file:///srv/repo.git",
            "git::https://example.com/x",
            "gitlab.com/org/repo",
        ] {
            assert!(looks_remote(e), "{e}");
        }
        assert!(!looks_remote("../base"));
        assert!(host_like("example.org/org/repo"));
        assert!(!host_like("./base/x.yaml"));
        assert!(!host_like("app.yaml"));
    }
}
