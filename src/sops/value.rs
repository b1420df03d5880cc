//! The document tree every store parses into and emits from.
//!
//! It mirrors sops' `TreeBranch`/`TreeItem` model: a mapping is an ordered list
//! of items whose key is either a string or a comment, and a sequence may hold
//! comments as elements. Scalars keep the Go type sops would give them, because
//! the type decides how the value is turned into bytes for AES-GCM and the MAC.
//!
//! Strings and comments are [`Text`]: wiped on drop and never printed by
//! `Debug`, since they hold plaintext while a file is being processed.

use std::fmt;

use zeroize::Zeroize;

use super::time::Timestamp;

/// Bytes that may be plaintext: zeroized on drop, redacted in `Debug`.
///
/// Byte strings rather than `String` because sops' binary and dotenv stores
/// carry arbitrary bytes (Go strings are not required to be UTF-8).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Text(Vec<u8>);

impl Text {
    /// Wraps bytes or a string.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Text(bytes.into())
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text as UTF-8, if it is.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The text as UTF-8 with invalid sequences replaced (as Go's encoders do).
    pub fn to_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.0)
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Text(s.as_bytes().to_vec())
    }
}

impl From<String> for Text {
    fn from(s: String) -> Self {
        Text(s.into_bytes())
    }
}

impl Drop for Text {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Text(<{} bytes redacted>)", self.0.len())
    }
}

/// A node of the tree.
#[derive(Clone, PartialEq)]
pub enum Value {
    /// `null` / `~` / empty: never encrypted, not part of the MAC.
    Null,
    /// A boolean (`True`/`False` when encrypted).
    Bool(bool),
    /// A Go `int`.
    Int(i64),
    /// An integer that only fits Go's `uint64`; sops cannot encrypt it.
    Uint(u64),
    /// A Go `float64`.
    Float(f64),
    /// A string (possibly an `ENC[…]` value when the tree is encrypted).
    Str(Text),
    /// A YAML timestamp (type `time`, new in sops 3.10).
    Time(Timestamp),
    /// A mapping.
    Map(Map),
    /// A sequence.
    Seq(Vec<Value>),
    /// A comment inside a sequence.
    Comment(Text),
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Scalars are redacted: a Debug print must never leak plaintext.
        match self {
            Value::Null => f.write_str("Null"),
            Value::Bool(_) => f.write_str("Bool(..)"),
            Value::Int(_) => f.write_str("Int(..)"),
            Value::Uint(_) => f.write_str("Uint(..)"),
            Value::Float(_) => f.write_str("Float(..)"),
            Value::Str(t) => write!(f, "Str({t:?})"),
            Value::Time(_) => f.write_str("Time(..)"),
            Value::Map(m) => m.fmt(f),
            Value::Seq(s) => f.debug_list().entries(s).finish(),
            Value::Comment(t) => write!(f, "Comment({t:?})"),
        }
    }
}

impl Value {
    /// A string value.
    pub fn str(s: impl Into<Vec<u8>>) -> Self {
        Value::Str(Text::new(s))
    }

    /// The mapping inside, if this is one.
    pub fn as_map(&self) -> Option<&Map> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// The string inside, if this is a UTF-8 string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(t) => t.as_str(),
            _ => None,
        }
    }

    /// True for maps and sequences.
    pub fn is_complex(&self) -> bool {
        matches!(self, Value::Map(_) | Value::Seq(_))
    }
}

/// The key of a mapping item.
#[derive(Clone, PartialEq)]
pub enum Key {
    /// An ordinary string key.
    Str(String),
    /// The item is a comment line (its value is [`Value::Null`]).
    Comment(Text),
    /// A YAML key that is not a string (sops refuses to encrypt these).
    Other(String),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Str(s) => write!(f, "{s:?}"),
            Key::Comment(t) => write!(f, "Comment({t:?})"),
            Key::Other(s) => write!(f, "Other({s:?})"),
        }
    }
}

impl Key {
    /// The key as a string, if it is an ordinary key.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Key::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One entry of a mapping.
#[derive(Clone, PartialEq, Debug)]
pub struct Item {
    /// The key (or comment).
    pub key: Key,
    /// The value ([`Value::Null`] for comments).
    pub value: Value,
}

impl Item {
    /// A `key: value` item.
    pub fn new(key: impl Into<String>, value: Value) -> Self {
        Item {
            key: Key::Str(key.into()),
            value,
        }
    }

    /// A comment item.
    pub fn comment(text: impl Into<Vec<u8>>) -> Self {
        Item {
            key: Key::Comment(Text::new(text)),
            value: Value::Null,
        }
    }
}

/// An ordered mapping; duplicate keys are kept, as sops keeps them.
#[derive(Clone, PartialEq, Default)]
pub struct Map(pub Vec<Item>);

impl fmt::Debug for Map {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|i| (&i.key, &i.value)))
            .finish()
    }
}

impl Map {
    /// An empty mapping.
    pub fn new() -> Self {
        Map(Vec::new())
    }

    /// Appends `key: value`.
    pub fn push(&mut self, key: impl Into<String>, value: Value) {
        self.0.push(Item::new(key, value));
    }

    /// The first value under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|i| i.key.as_str() == Some(key))
            .map(|i| &i.value)
    }

    /// The string at a path of mapping keys (`["metadata", "name"]`).
    pub fn str_at(&self, path: &[&str]) -> Option<&str> {
        let (last, parents) = path.split_last()?;
        let mut cur = self;
        for k in parents {
            cur = cur.get(k)?.as_map()?;
        }
        cur.get(last)?.as_str()
    }

    /// The first value under `key`, mutably.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.0
            .iter_mut()
            .find(|i| i.key.as_str() == Some(key))
            .map(|i| &mut i.value)
    }

    /// Removes every item with this key; returns the first removed value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let mut first = None;
        let mut i = 0;
        while i < self.0.len() {
            if self.0[i].key.as_str() == Some(key) {
                let item = self.0.remove(i);
                if first.is_none() {
                    first = Some(item.value);
                }
            } else {
                i += 1;
            }
        }
        first
    }

    /// True if an item has this key.
    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Iterates over the non-comment items.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0
            .iter()
            .filter_map(|i| i.key.as_str().map(|k| (k, &i.value)))
    }

    /// Number of items, comments included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no items.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
