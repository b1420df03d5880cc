//! Changing who can decrypt a file: `rotate` (new data key, optional key
//! additions and removals) and `updatekeys` (same data key, rewrapped for a
//! creation rule's groups). Shared by the single-file commands and the
//! fleet-wide runs.

use crate::keys::keyservice::KeyServices;
use crate::keys::{self, KeyGroup, MasterKey, Recipient};
use crate::sops::{Cipher, DataKey, Tree};
use crate::{ops, Result};

fn split_list(s: &Option<String>) -> Vec<String> {
    s.as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Key changes given on the command line, shared by rotate and fleet rotate.
#[derive(Clone, Debug, Default)]
pub struct KeyChanges {
    /// Recipients to add to the first group.
    pub add: Vec<Recipient>,
    /// Key names (recipient or fingerprint) to remove from every group.
    pub remove: Vec<String>,
}

impl KeyChanges {
    /// True when nothing changes.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty()
    }

    /// Parses `--add-age/--rm-age/--add-pgp/--rm-pgp` values.
    pub fn parse(
        add_age: &Option<String>,
        rm_age: &Option<String>,
        add_pgp: &Option<String>,
        rm_pgp: &Option<String>,
    ) -> crate::Result<KeyChanges> {
        let mut c = KeyChanges::default();
        for r in split_list(add_age) {
            keys::age::validate_recipient(&r)?;
            c.add.push(Recipient::Age(r));
        }
        for fp in split_list(add_pgp) {
            c.add.push(Recipient::pgp(&fp));
        }
        c.remove.extend(split_list(rm_age));
        c.remove.extend(
            split_list(rm_pgp)
                .iter()
                .map(|f| f.chars().filter(|c| !c.is_whitespace()).collect()),
        );
        Ok(c)
    }

    /// Adds `--add-kms`/`--rm-kms` ARN lists, each entry taking the
    /// `--encryption-context` and `--aws-profile` as sops gives them (a
    /// removal matches an entry whose ARN, role, context and profile all
    /// match, as sops compares its `ToString`).
    pub fn with_kms(
        mut self,
        add_kms: &Option<String>,
        rm_kms: &Option<String>,
        context: &[(String, String)],
        aws_profile: &str,
    ) -> crate::Result<KeyChanges> {
        let add =
            keys::kms::keys_from_arns(add_kms.as_deref().unwrap_or(""), context, aws_profile)?;
        // sops puts KMS keys first among the additions.
        let mut added: Vec<Recipient> = add.into_iter().map(Recipient::Kms).collect();
        added.append(&mut self.add);
        self.add = added;
        for k in keys::kms::keys_from_arns(rm_kms.as_deref().unwrap_or(""), context, aws_profile)? {
            self.remove.push(k.name());
        }
        Ok(self)
    }

    /// Applies the changes to key groups (sops' rotate semantics).
    pub fn apply(&self, groups: &mut Vec<KeyGroup>) {
        if groups.is_empty() {
            groups.push(Vec::new());
        }
        for r in &self.add {
            groups[0].push(keys::placeholder(r));
        }
        for g in groups.iter_mut() {
            g.retain(|k| !self.remove.contains(&k.name()));
        }
    }
}

/// Generates a new data key, wraps it for the (changed) groups and
/// re-encrypts every value under it; IVs are kept as sops does.
pub fn rotate_tree(
    tree: &mut Tree,
    cipher: &mut Cipher,
    changes: &KeyChanges,
    services: &KeyServices,
) -> Result<()> {
    changes.apply(&mut tree.metadata.key_groups);
    if tree
        .metadata
        .key_groups
        .iter()
        .flatten()
        .any(|k| matches!(k, MasterKey::Foreign { .. }))
    {
        return Err(crate::Error::NoEncryptionKeys(
            "the file lists GCP KMS, Azure Key Vault or Vault keys, which kustos cannot wrap a new data key for; remove them with --rm-* first".into(),
        ));
    }
    let key = DataKey::generate();
    keys::wrap_data_key(
        &mut tree.metadata.key_groups,
        &mut tree.metadata.shamir_threshold,
        &key,
        services,
    )?;
    cipher.rekey(&key);
    ops::reencrypt(tree, cipher)
}

/// What updatekeys would change in one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupDiff {
    /// Keys in both.
    pub common: Vec<String>,
    /// Keys the rule adds.
    pub added: Vec<String>,
    /// Keys the rule removes.
    pub removed: Vec<String>,
}

/// sops' `DiffKeyGroups` over key names.
pub fn diff_groups(ours: &[KeyGroup], theirs: &[Vec<Recipient>]) -> Vec<GroupDiff> {
    let n = ours.len().max(theirs.len());
    (0..n)
        .map(|i| {
            let o: Vec<String> = ours
                .get(i)
                .map(|g| g.iter().map(MasterKey::name).collect())
                .unwrap_or_default();
            let t: Vec<String> = theirs
                .get(i)
                .map(|g| g.iter().map(Recipient::name).collect())
                .unwrap_or_default();
            GroupDiff {
                common: t.iter().filter(|k| o.contains(k)).cloned().collect(),
                added: t.iter().filter(|k| !o.contains(k)).cloned().collect(),
                removed: o.iter().filter(|k| !t.contains(k)).cloned().collect(),
            }
        })
        .collect()
}

/// Rewraps the same data key for `rule_groups` (sops' updatekeys). With a
/// single group, stanzas of recipients that stay are kept byte for byte, so
/// the Git diff shows only the keys that changed.
pub fn rewrap(
    tree: &mut Tree,
    key: &DataKey,
    rule_groups: &[Vec<Recipient>],
    threshold: usize,
    services: &KeyServices,
) -> Result<()> {
    let old = std::mem::take(&mut tree.metadata.key_groups);
    tree.metadata.shamir_threshold = threshold;
    if rule_groups.len() == 1 {
        let mut group = KeyGroup::new();
        for r in &rule_groups[0] {
            let keep = match old.as_slice() {
                [only] => only
                    .iter()
                    .find(|k| k.recipient().as_ref() == Some(r))
                    .cloned(),
                _ => None,
            };
            group.push(match keep {
                Some(k) => k,
                None => services.wrap(r, key.as_bytes())?,
            });
        }
        tree.metadata.key_groups = vec![group];
        Ok(())
    } else {
        tree.metadata.key_groups = rule_groups
            .iter()
            .map(|g| g.iter().map(keys::placeholder).collect())
            .collect();
        keys::wrap_data_key(
            &mut tree.metadata.key_groups,
            &mut tree.metadata.shamir_threshold,
            key,
            services,
        )
    }
}
