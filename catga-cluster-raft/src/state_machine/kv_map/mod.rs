//! The key-value store's map, compact: keys and values packed into pages.
//!
//! A map of `String` to [`KvValue`] costs two allocations per key and a
//! 56-byte entry in the tree's nodes, which a B-tree filled in key order
//! leaves half full. Here the entries live in *pages* of a few KiB: a
//! page holds its entries' keys and values back to back in one block, in
//! key order, and a 16-byte slot per entry (revision, where the key
//! starts, the key's length; the value runs to the next key). A
//! persistent ordered map (`imbl`) finds the page of a key by the page's
//! *bound*: the lowest key it may hold, the empty key for the first page.
//! So an entry costs its bytes and its slot, and a page's own cost (about
//! 200 bytes: its allocations, its bound and its place in the tree) is
//! shared by its entries. With keys of about 16 bytes and 128-byte values
//! that is about 178 bytes a key, against 297 for the map of strings and
//! 234 with one allocation per key (`docs/benchmarks.md`, "Memory").
//!
//! Cloning the map is O(1) (pages are shared, for snapshots); a write
//! then copies the page it changes (at most [`PAGE_BYTES`] and its slots)
//! and the tree's nodes on the way to it, as a write to the map of strings
//! copied a node of 16 keys and values. A page that grows past
//! [`PAGE_BYTES`] splits next to the entry written, so that keys written
//! in order leave full pages behind them; a page that shrinks below a
//! quarter of that merges with a neighbour when they fit together. An
//! entry larger than a page has a page of its own.
//!
//! Keys are ordered by their UTF-8 bytes, which is the order of `String`.
//! The map encodes exactly as a map of key to [`KvValue`] did, so snapshots
//! keep their format.

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

/// The key and value bytes a page holds before it splits (one entry larger
/// than that has a page of its own).
const PAGE_BYTES: usize = 4096;

/// Where an entry's key starts in its page, the key's length and the
/// entry's revision. The value runs from the key's end to the next entry's
/// start (or the page's end).
#[derive(Debug, Clone, Copy)]
struct Slot {
    revision: u64,
    start: u32,
    key_len: u32,
}

/// Entries in key order, their keys and values back to back in `bytes`.
/// Both vectors have at most a sixteenth of their length to spare (see
/// [`reserve`]), none once split, merged or copied.
#[derive(Debug, Clone, Default)]
struct Page {
    bytes: Vec<u8>,
    slots: Vec<Slot>,
}

/// Where an entry was written, and whether it is new.
struct Written {
    at: usize,
    added: bool,
}

impl Page {
    fn len(&self) -> usize {
        self.slots.len()
    }

    fn key(&self, i: usize) -> &[u8] {
        let slot = self.slots[i];
        let start = slot.start as usize;
        &self.bytes[start..start + slot.key_len as usize]
    }

    /// Where entry `i` ends: where the next starts.
    fn end(&self, i: usize) -> usize {
        self.slots
            .get(i + 1)
            .map_or(self.bytes.len(), |s| s.start as usize)
    }

    fn value(&self, i: usize) -> &[u8] {
        let slot = self.slots[i];
        &self.bytes[slot.start as usize + slot.key_len as usize..self.end(i)]
    }

    fn revision(&self, i: usize) -> u64 {
        self.slots[i].revision
    }

    /// The entry of `key`, or where it would go.
    fn find(&self, key: &[u8]) -> Result<usize, usize> {
        let bytes = &self.bytes;
        self.slots.binary_search_by(|slot| {
            let start = slot.start as usize;
            bytes[start..start + slot.key_len as usize].cmp(key)
        })
    }

    /// Moves the starts of the entries from `from` on by `by` bytes.
    fn shift(&mut self, from: usize, by: isize) {
        for slot in &mut self.slots[from..] {
            slot.start = (slot.start as isize + by) as u32;
        }
    }

    /// Sets `key`'s value and revision. `key` is at most [`MAX_KEY_BYTES`]
    /// long, `value` at most a few MiB.
    fn put(&mut self, key: &[u8], value: &[u8], revision: u64) -> Written {
        match self.find(key) {
            Ok(at) => {
                let from = self.slots[at].start as usize + key.len();
                let to = self.end(at);
                let by = value.len() as isize - (to - from) as isize;
                reserve(&mut self.bytes, by.max(0) as usize);
                self.bytes.splice(from..to, value.iter().copied());
                if by < 0 {
                    self.bytes.shrink_to_fit();
                }
                self.shift(at + 1, by);
                self.slots[at].revision = revision;
                Written { at, added: false }
            }
            Err(at) => {
                let start = self
                    .slots
                    .get(at)
                    .map_or(self.bytes.len(), |s| s.start as usize);
                let added = key.len() + value.len();
                reserve(&mut self.bytes, added);
                self.bytes
                    .splice(start..start, key.iter().chain(value.iter()).copied());
                self.shift(at, added as isize);
                reserve(&mut self.slots, 1);
                self.slots.insert(
                    at,
                    Slot {
                        revision,
                        start: start as u32,
                        key_len: key.len() as u32,
                    },
                );
                Written { at, added: true }
            }
        }
    }

    fn remove(&mut self, at: usize) {
        let start = self.slots[at].start as usize;
        let end = self.end(at);
        self.bytes.drain(start..end);
        self.bytes.shrink_to_fit();
        self.slots.remove(at);
        self.slots.shrink_to_fit();
        self.shift(at, -((end - start) as isize));
    }

    /// Whether the page holds more than `page_bytes` in more than one
    /// entry.
    fn overflows(&self, page_bytes: usize) -> bool {
        self.len() > 1 && self.bytes.len() > page_bytes
    }

    /// Keeps the entries before `at` and returns the others as a page.
    fn split_off(&mut self, at: usize) -> Page {
        let offset = self.slots[at].start as usize;
        let bytes = self.bytes[offset..].to_vec();
        self.bytes.truncate(offset);
        self.bytes.shrink_to_fit();
        let mut slots = self.slots.split_off(at);
        self.slots.shrink_to_fit();
        for slot in &mut slots {
            slot.start -= offset as u32;
        }
        Page { bytes, slots }
    }

    /// Appends the entries of `next`, whose keys are all above this page's.
    fn append(&mut self, next: &Page) {
        let offset = self.bytes.len() as u32;
        self.bytes.reserve_exact(next.bytes.len());
        self.bytes.extend_from_slice(&next.bytes);
        self.slots.reserve_exact(next.len());
        self.slots.extend(next.slots.iter().map(|s| Slot {
            start: s.start + offset,
            ..*s
        }));
    }

    /// Splits an overflowing page whose entry `written` was just written.
    /// It keeps the first part and returns the others, in key order.
    ///
    /// The written entry stays with the entries before it if they fit in a
    /// page together (or if it is the first); otherwise it starts a page
    /// with the entries after it, or alone if those do not fit with it
    /// either (the entries other than the written one were the page before
    /// the write, which fitted). So keys written in order, after the page's
    /// last or after a run of keys that other keys follow in the page,
    /// leave full pages behind them.
    fn split(&mut self, written: usize, page_bytes: usize) -> Vec<Page> {
        if written == 0 || self.end(written) <= page_bytes {
            vec![self.split_off(written + 1)]
        } else {
            let mut tail = self.split_off(written);
            if tail.overflows(page_bytes) {
                let rest = tail.split_off(1);
                vec![tail, rest]
            } else {
                vec![tail]
            }
        }
    }
}

/// Makes room for `additional` more items in a page's vector. When it must
/// reallocate, it leaves a sixteenth of the length to spare: a page grows
/// an entry at a time, and copying it at every write costs a third more
/// time per write than this (measured).
fn reserve<T>(items: &mut Vec<T>, additional: usize) {
    if items.capacity() - items.len() < additional {
        items.reserve_exact(additional.max(items.len() / 16));
    }
}

/// The keys of the key-value store with their values and revisions.
#[derive(Clone)]
pub(super) struct KvMap {
    /// Pages by their bound: a page's keys are at or above its bound and
    /// below the next page's. The first page's bound is the empty key.
    /// No page is empty (no pages when the map is empty).
    pages: imbl::OrdMap<Box<[u8]>, Arc<Page>>,
    len: usize,
    /// [`PAGE_BYTES`], but in tests.
    page_bytes: usize,
}

impl Default for KvMap {
    fn default() -> Self {
        KvMap::with_page_bytes(PAGE_BYTES)
    }
}

impl KvMap {
    fn with_page_bytes(page_bytes: usize) -> Self {
        KvMap {
            pages: imbl::OrdMap::new(),
            len: 0,
            page_bytes,
        }
    }

    /// How many keys it holds.
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// The page that holds `key` if anything does.
    fn page(&self, key: &[u8]) -> Option<(&[u8], &Page)> {
        self.pages
            .get_prev(key)
            .map(|(bound, page)| (&**bound, &**page))
    }

    fn find(&self, key: &str) -> Option<(&Page, usize)> {
        let (_, page) = self.page(key.as_bytes())?;
        let at = page.find(key.as_bytes()).ok()?;
        Some((page, at))
    }

    /// A key's value and revision.
    pub(super) fn get(&self, key: &str) -> Option<KvValue> {
        self.find(key).map(|(page, at)| KvValue {
            value: page.value(at).to_vec(),
            revision: page.revision(at),
        })
    }

    /// A key's revision, 0 if it is absent.
    pub(super) fn revision(&self, key: &str) -> u64 {
        self.find(key).map_or(0, |(page, at)| page.revision(at))
    }

    /// Sets a key's value and revision. The key is at most
    /// [`MAX_KEY_LEN`] characters (the state machine checks every command
    /// before it applies it).
    pub(super) fn insert(&mut self, key: &str, value: &[u8], revision: u64) {
        let key = key.as_bytes();
        debug_assert!(key.len() <= MAX_KEY_BYTES);
        let Some((bound, _)) = self.page(key) else {
            let mut page = Page::default();
            page.put(key, value, revision);
            self.pages.insert(Box::default(), Arc::new(page));
            self.len = 1;
            return;
        };
        let bound: Box<[u8]> = bound.into();
        let Some(page) = self.pages.get_mut(&*bound) else {
            return;
        };
        let page = Arc::make_mut(page);
        let written = page.put(key, value, revision);
        self.len += usize::from(written.added);
        if page.overflows(self.page_bytes) {
            for next in page.split(written.at, self.page_bytes) {
                self.pages.insert(next.key(0).into(), Arc::new(next));
            }
        }
    }

    /// Removes a key; whether it was there.
    pub(super) fn remove(&mut self, key: &str) -> bool {
        let key = key.as_bytes();
        let Some((bound, page)) = self.page(key) else {
            return false;
        };
        let Ok(at) = page.find(key) else {
            return false;
        };
        let bound: Box<[u8]> = bound.into();
        let Some(page) = self.pages.get_mut(&*bound) else {
            return false;
        };
        let page = Arc::make_mut(page);
        page.remove(at);
        self.len -= 1;
        if page.len() == 0 || page.bytes.len() < self.page_bytes / 4 {
            self.merge(&bound);
        }
        true
    }

    /// Merges the page at `bound`, which fell below a quarter of a page,
    /// into a neighbour when they fit in a page together; drops it when it
    /// is empty.
    fn merge(&mut self, bound: &[u8]) {
        if self.len == 0 {
            self.pages = imbl::OrdMap::new();
            return;
        }
        let Some((entries, size)) = self.pages.get(bound).map(|p| (p.len(), p.bytes.len())) else {
            return;
        };
        let previous = self
            .pages
            .range::<_, [u8]>((Bound::Unbounded, Bound::Excluded(bound)))
            .next_back()
            .map(|(b, p)| (b.clone(), p.bytes.len()));
        let next = self
            .pages
            .range::<_, [u8]>((Bound::Excluded(bound), Bound::Unbounded))
            .next()
            .map(|(b, p)| (b.clone(), p.bytes.len()));
        match (previous, next) {
            (Some(_), _) if entries == 0 => {
                self.pages.remove(bound);
            }
            (None, Some((next_bound, _))) if entries == 0 => {
                // The first page: the next one takes its bound.
                if let Some(next) = self.pages.remove(&next_bound) {
                    self.pages.insert(bound.into(), next);
                }
            }
            (Some((previous, previous_size)), _) if previous_size + size <= self.page_bytes => {
                if let (Some(page), Some(previous)) =
                    (self.pages.remove(bound), self.pages.get_mut(&previous))
                {
                    Arc::make_mut(previous).append(&page);
                }
            }
            (_, Some((next_bound, next_size))) if size + next_size <= self.page_bytes => {
                if let (Some(next), Some(page)) =
                    (self.pages.remove(&next_bound), self.pages.get_mut(bound))
                {
                    Arc::make_mut(page).append(&next);
                }
            }
            _ => {}
        }
    }

    /// The keys starting with `prefix`, in order, at most `limit`.
    pub(super) fn list(&self, prefix: &str, limit: usize) -> Vec<(String, KvValue)> {
        let prefix = prefix.as_bytes();
        self.entries_from(prefix)
            .take_while(|(key, _, _)| key.starts_with(prefix))
            .take(limit)
            .map(|(key, value, revision)| {
                let value = KvValue {
                    value: value.to_vec(),
                    revision,
                };
                (String::from_utf8_lossy(key).into_owned(), value)
            })
            .collect()
    }

    /// The entries from `from` on, in order: key, value and revision.
    fn entries_from<'a>(
        &'a self,
        from: &[u8],
    ) -> impl Iterator<Item = (&'a [u8], &'a [u8], u64)> + 'a {
        let (bound, skip) = match self.page(from) {
            Some((bound, page)) => (bound, page.find(from).unwrap_or_else(|at| at)),
            None => (&[][..], 0),
        };
        self.pages
            .range::<_, [u8]>((Bound::Included(bound), Bound::Unbounded))
            .flat_map(|(_, page)| {
                (0..page.len()).map(move |i| (page.key(i), page.value(i), page.revision(i)))
            })
            .skip(skip)
    }

    /// Every key in order, with its value and revision.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &[u8], u64)> {
        self.entries_from(&[]).map(|(key, value, revision)| {
            // Every key was written from a `str`.
            (
                std::str::from_utf8(key).unwrap_or_default(),
                value,
                revision,
            )
        })
    }
}

#[cfg(test)]
impl KvMap {
    /// Checks the map's invariants, with what each page holds.
    fn check(&self) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut previous: Option<Vec<u8>> = None;
        let mut count = 0;
        for (n, (bound, page)) in self.pages.iter().enumerate() {
            assert_eq!(n == 0, bound.is_empty(), "the first bound is the empty key");
            assert!(page.len() > 0, "no page is empty");
            assert!(
                !page.overflows(self.page_bytes),
                "a page overflows: {page:?}"
            );
            assert!(page.bytes.capacity() <= page.bytes.len() + page.bytes.len() / 16);
            assert!(page.slots.capacity() <= page.slots.len() + page.slots.len() / 16);
            let mut expected_start = 0;
            for i in 0..page.len() {
                assert_eq!(page.slots[i].start as usize, expected_start);
                expected_start = page.end(i);
                assert!(page.key(i) >= &bound[..]);
                if let Some(previous) = &previous {
                    assert!(page.key(i) > &previous[..], "keys in order");
                }
                previous = Some(page.key(i).to_vec());
                count += 1;
            }
            assert!(expected_start <= page.bytes.len());
            sizes.push(page.bytes.len());
        }
        assert_eq!(count, self.len);
        assert_eq!(self.len == 0, self.pages.is_empty(), "no pages when empty");
        sizes
    }
}

impl fmt::Debug for KvMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KvMap")
            .field("keys", &self.len)
            .field("pages", &self.pages.len())
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
