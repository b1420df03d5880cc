//! A bounded cache of unwrapped data keys.
//!
//! Unwrapping a data key (an age X25519 exchange, or an OpenPGP decryption)
//! costs far more than decrypting a small Secret, and a sidecar sees the
//! same few files over and over. Entries are keyed by the ring that
//! unwrapped the key (one ring per tenant, see [`super::keys`]) and a hash
//! of the file's wrapped stanzas, so a key unwrapped for tenant A is never
//! handed to tenant B: B's lookup has a different ring index and misses.
//! The cache belongs to one key generation and is cleared when the keys are
//! reloaded. [`DataKey`] zeroizes its bytes when an entry is dropped.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::sops::DataKey;

/// (ring index, stanza hash).
type Slot = (usize, [u8; 32]);

/// Unwrapped data keys, at most `cap` of them.
pub struct DataKeyCache {
    cap: usize,
    map: Mutex<HashMap<Slot, DataKey>>,
}

impl DataKeyCache {
    /// An empty cache holding at most `cap` keys (0 disables it).
    pub fn new(cap: usize) -> Self {
        DataKeyCache {
            cap,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// The key unwrapped by ring `ring` for stanzas hashing to `hash`.
    pub fn get(&self, ring: usize, hash: &[u8; 32]) -> Option<DataKey> {
        if self.cap == 0 {
            return None;
        }
        self.lock().get(&(ring, *hash)).cloned()
    }

    /// Remembers a key. When full, an arbitrary quarter of the entries is
    /// dropped first (cheap, and good enough for a working set that fits).
    pub fn insert(&self, ring: usize, hash: [u8; 32], key: DataKey) {
        if self.cap == 0 {
            return;
        }
        let mut m = self.lock();
        if m.len() >= self.cap && !m.contains_key(&(ring, hash)) {
            let drop_n = (self.cap / 4).max(1);
            let victims: Vec<Slot> = m.keys().take(drop_n).copied().collect();
            for v in victims {
                m.remove(&v);
            }
        }
        m.insert((ring, hash), key);
    }

    /// Number of cached keys.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every key.
    pub fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Slot, DataKey>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_scoped_by_ring() {
        let c = DataKeyCache::new(4);
        let k = DataKey::generate();
        c.insert(1, [7; 32], k.clone());
        assert!(c.get(1, &[7; 32]).is_some());
        assert!(c.get(2, &[7; 32]).is_none(), "another ring never sees it");
        for i in 0..10u8 {
            c.insert(1, [i; 32], k.clone());
            assert!(c.len() <= 4);
        }
        c.clear();
        assert!(c.is_empty());
        let off = DataKeyCache::new(0);
        off.insert(0, [1; 32], k);
        assert!(off.get(0, &[1; 32]).is_none());
    }
}
