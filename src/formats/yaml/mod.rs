//! The YAML store: comment-preserving parser, the yaml.v3-style writer of
//! sops files and the yaml.v2-style writer of Flux Secrets.

pub mod emit;
pub mod emit_v2;
pub mod parse;
pub mod resolve;
pub mod scalar;

use crate::sops::metadata::{self, Layout};
use crate::sops::value::{Item, Map, Value};
use crate::sops::Tree;
use crate::{Error, Result};

/// Loads an encrypted YAML stream: metadata from the first document's
/// `sops` key, which is removed from every document.
pub fn load_encrypted(input: &[u8]) -> Result<Tree> {
    let mut docs = parse::parse(input, false)?;
    let md_value = docs
        .first()
        .and_then(|d| d.get("sops").cloned())
        .ok_or(Error::MetadataNotFound)?;
    let metadata = metadata::from_value(&md_value)?;
    for d in docs.iter_mut() {
        d.remove("sops");
    }
    Ok(Tree {
        branches: docs,
        metadata,
    })
}

/// Emits an encrypted stream: every document carries the full `sops` block.
pub fn emit_encrypted(tree: &Tree, indent: usize) -> Result<Vec<u8>> {
    let md = metadata::to_value(&tree.metadata, Layout::Yaml);
    let docs: Vec<Map> = tree
        .branches
        .iter()
        .map(|b| {
            let mut d = b.clone();
            d.0.push(Item::new("sops", md.clone()));
            d
        })
        .collect();
    Ok(emit::emit(&docs, indent).into_bytes())
}

/// Emits a plaintext stream.
pub fn emit_plain(docs: &[Map], indent: usize) -> Vec<u8> {
    emit::emit(docs, indent).into_bytes()
}

/// Emits one value (`--extract` of a subtree).
pub fn emit_value(v: &Value, indent: usize) -> Vec<u8> {
    emit::emit_value(v, indent).into_bytes()
}
