//! The SOPS file format core: values, the cipher, metadata and the tree walk.

pub mod cipher;
pub mod gonum;
pub mod masterkey;
pub mod metadata;
pub mod time;
pub mod tree;
pub mod value;

pub use cipher::{Cipher, DataKey};
pub use masterkey::{ForeignKind, KeyGroup, MasterKey};
pub use metadata::{Metadata, SelectionRules};
pub use value::{Item, Key, Map, Text, Value};

/// An encrypted document: its branches (one per YAML document) and metadata.
#[derive(Clone, Debug)]
pub struct Tree {
    /// The documents.
    pub branches: Vec<Map>,
    /// The `sops` block.
    pub metadata: Metadata,
}
