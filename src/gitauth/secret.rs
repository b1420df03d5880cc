//! Kubernetes Secrets laid out exactly like `flux create secret … --export`.
//!
//! Flux marshals a `corev1.Secret` with `sigs.k8s.io/yaml`: Go's JSON
//! encoder, then go-yaml **v2** (2-space indentation, keys sorted with
//! v2's "natural" order, plain scalars folded at 80 columns, multi-line
//! strings as `|` literals, strings that would read as another type
//! double-quoted). It prefixes `---\n`, drops `creationTimestamp: null`
//! and `status: {}`, and prints with `Println`, so the text ends with a
//! blank line. This module reproduces that writer for the only shape a
//! Secret has here: nested maps of strings.
//!
//! The text holds secrets, so it lives in a [`Zeroizing`] buffer sized up
//! front (no reallocation leaves copies behind).

use zeroize::Zeroizing;

use crate::formats::yaml::emit_v2::{self, v2_key_order, Node};
use crate::formats::{self, Format, StoreOptions};
use crate::ops::{self, EncryptSpec};
use crate::sops::metadata::SelectionRules;
use crate::sops::value::{Map, Value};
use crate::{Error, Result};

/// The selection Flux documents for Secrets: everything under `data` and
/// `stringData`, metadata stays readable (and kustomize can patch it).
pub const ENCRYPTED_REGEX: &str = "^(data|stringData)$";

/// Name, namespace and labels of a Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretMeta {
    /// `metadata.name` (a DNS-1123 subdomain).
    pub name: String,
    /// `metadata.namespace` (a DNS-1123 label).
    pub namespace: String,
    /// `metadata.labels`, in any order (they are sorted on output).
    pub labels: Vec<(String, String)>,
}

impl SecretMeta {
    /// Checks the name, namespace and labels the way the API server would.
    pub fn validate(&self) -> Result<()> {
        validate_name(&self.name)?;
        validate_namespace(&self.namespace)?;
        for (k, v) in &self.labels {
            validate_label(k, v)?;
        }
        Ok(())
    }
}

fn is_dns_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(|l| is_dns_label(l, 63))
}

/// A Secret name: a DNS-1123 subdomain (lowercase, digits, `-`, `.`).
pub fn validate_name(name: &str) -> Result<()> {
    if is_dns_subdomain(name) {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "invalid Secret name {:?}: use lowercase letters, digits, '-' and '.' (at most 253 characters)",
            crate::error::escape_for_terminal(name)
        )))
    }
}

/// A namespace: a DNS-1123 label (lowercase, digits, `-`, at most 63).
pub fn validate_namespace(ns: &str) -> Result<()> {
    if is_dns_label(ns, 63) {
        Ok(())
    } else {
        Err(Error::Other(format!(
            "invalid namespace {:?}: use lowercase letters, digits and '-' (at most 63 characters)",
            crate::error::escape_for_terminal(ns)
        )))
    }
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label: a qualified name (`[prefix/]name`) and a value of at most 63
/// characters, as Kubernetes (and `flux --label`) require.
pub fn validate_label(key: &str, value: &str) -> Result<()> {
    let key_ok = match key.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && is_label_name(name),
        None => is_label_name(key),
    };
    if !key_ok {
        return Err(Error::Other(format!(
            "invalid label key {:?}: use [prefix/]name with letters, digits, '-', '_' and '.'",
            crate::error::escape_for_terminal(key)
        )));
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(Error::Other(format!(
            "invalid value for label {:?}: at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            crate::error::escape_for_terminal(key)
        )));
    }
    Ok(())
}

/// Parses `--label key=value` items (a comma inside one item separates
/// several, as in Flux).
pub fn parse_labels(items: &[String]) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = Vec::new();
    for item in items
        .iter()
        .flat_map(|i| i.split(','))
        .filter(|s| !s.is_empty())
    {
        let (k, v) = item.split_once('=').ok_or_else(|| {
            Error::Other(format!(
                "invalid label format '{}', must be key=value",
                crate::error::escape_for_terminal(item)
            ))
        })?;
        validate_label(k, v)?;
        match out.iter_mut().find(|(ok, _)| ok == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => out.push((k.to_string(), v.to_string())),
        }
    }
    Ok(out)
}

/// Renders a Secret with `stringData` entries (`(key, value)`, any order)
/// as Flux's `--export` prints it, trailing blank line included.
pub fn render(meta: &SecretMeta, entries: &[(&str, &str)]) -> Zeroizing<String> {
    let mut labels: Vec<(&str, Node)> = meta
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), Node::Str(v.as_str())))
        .collect();
    labels.sort_by(|a, b| v2_key_order(a.0, b.0));
    let mut md: Vec<(&str, Node)> = Vec::new();
    if !labels.is_empty() {
        md.push(("labels", Node::Map(labels)));
    }
    md.push(("name", Node::Str(&meta.name)));
    md.push(("namespace", Node::Str(&meta.namespace)));
    let mut data: Vec<(&str, Node)> = entries.iter().map(|(k, v)| (*k, Node::Str(v))).collect();
    data.sort_by(|a, b| v2_key_order(a.0, b.0));
    let mut root: Vec<(&str, Node)> = vec![
        ("apiVersion", Node::Str("v1")),
        ("kind", Node::Str("Secret")),
        ("metadata", Node::Map(md)),
    ];
    if !data.is_empty() {
        root.push(("stringData", Node::Map(data)));
    }
    let size: usize = 256
        + meta.labels.iter().map(|(k, v)| k.len() + v.len() + 16).sum::<usize>()
        // Escaping can grow a value up to 10x (\UXXXXXXXX per 4-byte char).
        + entries.iter().map(|(k, v)| k.len() + v.len() * 10 + 64).sum::<usize>();
    let mut out = Zeroizing::new(String::with_capacity(size));
    out.push_str("---\n");
    emit_v2::marshal_into(&mut out, &root);
    // Println of text that already ends with a newline.
    out.push('\n');
    out
}

/// Parses a rendered Secret and encrypts `data`/`stringData` with `spec`'s
/// keys (its selection rules are replaced by [`ENCRYPTED_REGEX`]). Fails
/// rather than return output in which a secret value still shows.
pub fn encrypt(plain_yaml: &[u8], spec: &EncryptSpec, store: &StoreOptions) -> Result<Vec<u8>> {
    let branches = formats::load_plain(Format::Yaml, plain_yaml)?;
    if branches.is_empty() {
        return Err(Error::NoDocument);
    }
    let mut secrets: Vec<Zeroizing<String>> = Vec::new();
    for b in &branches {
        for key in ["data", "stringData"] {
            if let Some(Value::Map(m)) = b.get(key) {
                collect_strings(m, &mut secrets);
            }
        }
    }
    let mut spec = spec.clone();
    spec.rules = SelectionRules {
        encrypted_regex: ENCRYPTED_REGEX.into(),
        ..Default::default()
    };
    let tree = ops::encrypt_branches(branches, Format::Yaml, &spec)?;
    let out = formats::emit_encrypted(Format::Yaml, &tree, store)?;
    // Defence in depth: no line of a secret value may appear in the output.
    for s in &secrets {
        for line in s.lines().map(str::trim) {
            if line.len() >= 16 && memmem(&out, line.as_bytes()) {
                return Err(Error::EncryptTree(
                    "a secret value is still readable after encryption; nothing was written".into(),
                ));
            }
        }
    }
    Ok(out)
}

fn collect_strings(m: &Map, out: &mut Vec<Zeroizing<String>>) {
    for (_, v) in m.entries() {
        match v {
            Value::Str(t) => out.push(Zeroizing::new(t.to_str_lossy().into_owned())),
            Value::Map(inner) => collect_strings(inner, out),
            _ => {}
        }
    }
}

fn memmem(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SecretMeta {
        SecretMeta {
            name: "podinfo-auth".into(),
            namespace: "my-namespace".into(),
            labels: vec![],
        }
    }

    #[test]
    fn flux_goldens() {
        // cmd/flux/testdata/create_secret/git/secret-git-basic.yaml
        assert_eq!(
            &*render(&meta(), &[("username", "my-username"), ("password", "my-password")]),
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: podinfo-auth\n  namespace: my-namespace\nstringData:\n  password: my-password\n  username: my-username\n\n"
        );
        // git-bearer-token.yaml
        assert_eq!(
            &*render(&meta(), &[("bearerToken", "ghp_baR2qnFF0O41WlucePL3udt2N9vVZS4R0hAS")]),
            "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: podinfo-auth\n  namespace: my-namespace\nstringData:\n  bearerToken: ghp_baR2qnFF0O41WlucePL3udt2N9vVZS4R0hAS\n\n"
        );
    }

    #[test]
    fn scalar_styles_like_go_yaml_v2() {
        let one = |v: &str| {
            let out = render(&meta(), &[("k", v)]);
            let i = out.find("  k:").unwrap();
            out[i + 4..out.len() - 1].to_string()
        };
        assert_eq!(one("plain"), " plain\n");
        assert_eq!(one("true"), " \"true\"\n");
        assert_eq!(one("yes"), " \"yes\"\n");
        assert_eq!(one("123"), " \"123\"\n");
        assert_eq!(one("0x1F"), " \"0x1F\"\n");
        assert_eq!(one("1e3"), " \"1e3\"\n");
        assert_eq!(one("1:20"), " \"1:20\"\n");
        assert_eq!(one("2024-01-02"), " \"2024-01-02\"\n");
        assert_eq!(one(""), " \"\"\n");
        assert_eq!(one("a: b"), " 'a: b'\n");
        assert_eq!(one("it's"), " it's\n");
        assert_eq!(one("#x"), " '#x'\n");
        assert_eq!(one("'q"), " '''q'\n");
        assert_eq!(one(" lead"), " ' lead'\n");
        assert_eq!(one("tab\there"), " \"tab\\there\"\n");
        assert_eq!(one("line1\nline2\n"), " |\n    line1\n    line2\n");
        assert_eq!(one("line1\nline2"), " |-\n    line1\n    line2\n");
        assert_eq!(one("\nx"), " |2-\n\n    x\n");
        assert_eq!(one("trailing \nx"), " \"trailing \\nx\"\n");
        assert_eq!(one("crlf\r\n"), " \"crlf\\r\\n\"\n");
        assert_eq!(one("é"), " é\n");
        assert_eq!(one("🙂"), " \"\\U0001F642\"\n");
        // Plain scalars fold at a space once past column 80.
        let long = format!("{} tail end", "x".repeat(90));
        assert_eq!(one(&long), format!(" {}\n    tail end\n", "x".repeat(90)));
        // Keep chomping; v2 (unlike v3) adds no `...` after it.
        assert_eq!(one("a\n\n"), " |+\n    a\n\n");
    }

    #[test]
    fn labels_sort_and_validate() {
        let mut m = meta();
        m.labels = parse_labels(&[
            "toolkit.fluxcd.io/tenant=dev-team,a10=x".into(),
            "a9=y".into(),
        ])
        .unwrap();
        let out = render(&m, &[("password", "p")]);
        assert!(out.contains("metadata:\n  labels:\n    a9: \"y\"\n    a10: x\n    toolkit.fluxcd.io/tenant: dev-team\n  name: podinfo-auth\n"), "{}", &*out);
        assert!(parse_labels(&["novalue".into()]).is_err());
        assert!(parse_labels(&["bad key=x".into()]).is_err());
        assert!(validate_name("Bad").is_err());
        assert!(validate_namespace("a.b").is_err());
    }
}
