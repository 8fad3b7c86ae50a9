//! The key-value store's map, compact: each key is one allocation holding
//! its revision, its key and its value.
//!
//! A map of `String` to [`KvValue`] costs two allocations per key and 56
//! bytes of entry in the tree's nodes, which a B-tree filled in key order
//! leaves half full; here each key is one reference-counted block of
//! bytes, a 16-byte entry in the node, and the copies of keys that the
//! tree keeps in its branches share the block instead of copying it.
//! Measured with keys of about 16 bytes and 128-byte values: about 233
//! bytes a key, against 297 (see `docs/benchmarks.md`).
//!
//! The map is persistent (`imbl`): cloning it is O(1), for snapshots.
//! Keys are ordered by their UTF-8 bytes, which is the order of `String`.
//! It encodes exactly as a map of key to [`KvValue`] did, so snapshots keep
//! their format.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use serde::de::{Error as _, MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::limits::MAX_KEY_LEN;
use crate::types::KvValue;

/// The longest key in bytes: [`MAX_KEY_LEN`] characters of four bytes.
const MAX_KEY_BYTES: usize = MAX_KEY_LEN * 4;

/// Bytes before the key: the revision (`u64`) and the key's length (`u32`),
/// little-endian.
const HEAD: usize = 12;

/// One key, its value and its revision, in one block: [`HEAD`], then the
/// key's bytes, then the value's. Compared by the key's bytes.
#[derive(Clone)]
struct Entry(Arc<[u8]>);

impl Entry {
    /// `key` must be at most [`MAX_KEY_BYTES`] long.
    fn new(key: &str, value: &[u8], revision: u64) -> Entry {
        debug_assert!(key.len() <= MAX_KEY_BYTES);
        let key_len = key.len() as u32;
        let mut block = Vec::with_capacity(HEAD + key.len() + value.len());
        block.extend_from_slice(&revision.to_le_bytes());
        block.extend_from_slice(&key_len.to_le_bytes());
        block.extend_from_slice(key.as_bytes());
        block.extend_from_slice(value);
        Entry(Arc::from(block))
    }

    fn key_len(&self) -> usize {
        let mut len = [0; 4];
        len.copy_from_slice(&self.0[8..HEAD]);
        u32::from_le_bytes(len) as usize
    }

    fn key_bytes(&self) -> &[u8] {
        &self.0[HEAD..HEAD + self.key_len()]
    }

    fn key(&self) -> &str {
        // Made from a `str` in `new`.
        std::str::from_utf8(self.key_bytes()).unwrap_or_default()
    }

    fn value(&self) -> &[u8] {
        &self.0[HEAD + self.key_len()..]
    }

    fn revision(&self) -> u64 {
        let mut revision = [0; 8];
        revision.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(revision)
    }

    fn answer(&self) -> KvValue {
        KvValue {
            value: self.value().to_vec(),
            revision: self.revision(),
        }
    }
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.key_bytes() == other.key_bytes()
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key_bytes().cmp(other.key_bytes())
    }
}

/// Lookups by a key's bytes: the same order as [`Ord`] above.
impl Borrow<[u8]> for Entry {
    fn borrow(&self) -> &[u8] {
        self.key_bytes()
    }
}

/// The keys of the key-value store with their values and revisions.
#[derive(Clone, Default)]
pub(super) struct KvMap {
    entries: imbl::OrdSet<Entry>,
}

impl KvMap {
    /// How many keys it holds.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// A key's value and revision.
    pub(super) fn get(&self, key: &str) -> Option<KvValue> {
        self.entries.get(key.as_bytes()).map(Entry::answer)
    }

    /// A key's revision, 0 if it is absent.
    pub(super) fn revision(&self, key: &str) -> u64 {
        self.entries.get(key.as_bytes()).map_or(0, Entry::revision)
    }

    /// Sets a key's value and revision. The key is at most
    /// [`MAX_KEY_LEN`] characters (the state machine checks every command
    /// before it applies it).
    pub(super) fn insert(&mut self, key: &str, value: &[u8], revision: u64) {
        self.entries.insert(Entry::new(key, value, revision));
    }

    /// Removes a key; whether it was there.
    pub(super) fn remove(&mut self, key: &str) -> bool {
        self.entries.remove(key.as_bytes()).is_some()
    }

    /// The keys starting with `prefix`, in order, at most `limit`.
    pub(super) fn list(&self, prefix: &str, limit: usize) -> Vec<(String, KvValue)> {
        self.entries
            .range::<_, [u8]>((Bound::Included(prefix.as_bytes()), Bound::Unbounded))
            .take_while(|e| e.key_bytes().starts_with(prefix.as_bytes()))
            .take(limit)
            .map(|e| (e.key().to_owned(), e.answer()))
            .collect()
    }

    /// Every key in order, with its value and revision.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &[u8], u64)> {
        self.entries
            .iter()
            .map(|e| (e.key(), e.value(), e.revision()))
    }
}

impl fmt::Debug for KvMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v, r)| (k, (r, v.len()))))
            .finish()
    }
}

/// [`KvValue`], borrowed: encodes the same.
#[derive(Serialize)]
#[serde(rename = "KvValue")]
struct KvValueRef<'a> {
    value: &'a [u8],
    revision: u64,
}

/// As a map of key to [`KvValue`], like `imbl::OrdMap<String, KvValue>`
/// (a map's length, then each key and value in key order).
impl Serialize for KvMap {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (key, value, revision) in self.iter() {
            map.serialize_entry(key, &KvValueRef { value, revision })?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for KvMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KvMapVisitor;

        impl<'de> Visitor<'de> for KvMapVisitor {
            type Value = KvMap;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of keys to values")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<KvMap, A::Error> {
                let mut map = KvMap::default();
                while let Some((key, value)) = access.next_entry::<String, KvValue>()? {
                    if key.len() > MAX_KEY_BYTES {
                        return Err(A::Error::custom(format!(
                            "a key of {} bytes; keys are at most {MAX_KEY_BYTES}",
                            key.len()
                        )));
                    }
                    map.insert(&key, &value.value, value.revision);
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(KvMapVisitor)
    }
}

#[cfg(test)]
mod tests;
