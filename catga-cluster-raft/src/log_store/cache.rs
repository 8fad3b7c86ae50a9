//! The entries a [`LogStore`](super::LogStore) keeps in memory.
//!
//! The in-memory flavour keeps every live entry: it has nowhere else to
//! keep them. The durable flavour keeps the newest entries up to
//! [`LogStoreOptions::cache_bytes`](super::LogStoreOptions::cache_bytes)
//! (counted with [`Command::approx_size`]) and drops the oldest ones from
//! memory first; they stay in the write-ahead log, durable since their
//! append returned, and a read that reaches below the cache reads them back
//! from there. The newest entry always stays, so the last log id is known
//! without a read.
//!
//! What reads reach so low: a follower that lags behind by more than the
//! cache (it would otherwise get a snapshot a little later) and, after a
//! restart, the re-application of the log since the last snapshot.

use std::collections::BTreeMap;

use openraft::EntryPayload;

use crate::types::{Command, Entry};

/// About how many bytes an entry holds in memory.
pub(super) fn entry_size(entry: &Entry) -> usize {
    match &entry.payload {
        EntryPayload::Blank => 64,
        EntryPayload::Normal(command) => Command::approx_size(command) + 64,
        EntryPayload::Membership(m) => 64 + 128 * m.nodes().count(),
    }
}

/// The cached tail of the log.
#[derive(Debug)]
pub(super) struct Cache {
    map: BTreeMap<u64, (Entry, usize)>,
    bytes: usize,
    budget: usize,
    /// Entries at or below this index (above the purge point) were dropped
    /// from memory and are read from the write-ahead log.
    evicted_upto: Option<u64>,
    /// The purge point: nothing at or below it is read.
    purged: Option<u64>,
}

/// Where the entries of a read are.
pub(super) struct ReadPlan {
    /// Read `lo..=disk_hi` from the write-ahead log first.
    pub(super) disk: Option<(u64, u64)>,
    /// Then these, from memory.
    pub(super) cached: Vec<Entry>,
}

impl Cache {
    /// An empty cache that holds at most `budget` bytes (beyond the newest
    /// entry), of a log purged up to `purged`.
    pub(super) fn new(purged: Option<u64>, budget: usize) -> Cache {
        Cache {
            map: BTreeMap::new(),
            bytes: 0,
            budget,
            evicted_upto: None,
            purged,
        }
    }

    /// Forgets every entry (those that are not purged must be forgotten on
    /// disk too).
    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.bytes = 0;
        self.evicted_upto = None;
    }

    /// The number of entries in memory.
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    /// The bytes the entries in memory hold, by [`entry_size`].
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The newest entry.
    pub(super) fn last(&self) -> Option<&Entry> {
        self.map.last_key_value().map(|(_, (e, _))| e)
    }

    /// The oldest entry in memory.
    pub(super) fn first_index(&self) -> Option<u64> {
        self.map.first_key_value().map(|(i, _)| *i)
    }

    /// Adds entries that continue the log (the caller truncated first), then
    /// drops the oldest ones beyond the budget.
    pub(super) fn extend(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for e in entries {
            let size = entry_size(&e);
            self.bytes += size;
            if let Some((_, old)) = self.map.insert(e.log_id.index, (e, size)) {
                self.bytes -= old;
            }
        }
        while self.bytes > self.budget && self.map.len() > 1 {
            if let Some((index, (_, size))) = self.map.pop_first() {
                self.bytes -= size;
                self.evicted_upto = Some(index);
            }
        }
    }

    /// Removes every entry at or above `index`. When that leaves no entry in
    /// memory but some remain on disk, `reloaded` (read back by the caller:
    /// see [`Cache::reload_after_truncate`]) becomes the newest cached one.
    pub(super) fn truncate(&mut self, index: u64, reloaded: Option<Entry>) {
        for (_, (_, size)) in self.map.split_off(&index) {
            self.bytes -= size;
        }
        if let Some(e) = self.evicted_upto {
            self.evicted_upto = index.checked_sub(1).map(|last| e.min(last));
        }
        if let Some(entry) = reloaded {
            let index = entry.log_id.index;
            self.extend([entry]);
            self.evicted_upto = index.checked_sub(1).filter(|_| self.evicted_upto.is_some());
        }
    }

    /// The entry to read back from disk so that truncating at `index`
    /// leaves the newest remaining entry in memory (`None`: no need).
    pub(super) fn reload_after_truncate(&self, index: u64, purged: Option<u64>) -> Option<u64> {
        if self.map.range(..index).next().is_some() {
            return None;
        }
        let last = self.evicted_upto?.min(index.checked_sub(1)?);
        (purged.is_none_or(|p| last > p)).then_some(last)
    }

    /// Forgets every entry at or below `index`.
    pub(super) fn purge(&mut self, index: u64) {
        let keep = self.map.split_off(&index.saturating_add(1));
        for (_, (_, size)) in std::mem::replace(&mut self.map, keep) {
            self.bytes -= size;
        }
        if self.evicted_upto.is_some_and(|e| e <= index) {
            self.evicted_upto = None;
        }
        self.purged = self.purged.max(Some(index));
    }

    /// Splits a read of `lo..=hi` into the part on disk and the part in
    /// memory (copied out).
    pub(super) fn plan_read(&self, lo: u64, hi: u64) -> ReadPlan {
        let lo = self.purged.map_or(lo, |p| lo.max(p.saturating_add(1)));
        let disk = self
            .evicted_upto
            .filter(|e| *e >= lo)
            .map(|e| (lo, e.min(hi)));
        let from = disk.map_or(lo, |(_, d)| d.saturating_add(1));
        let cached = if from <= hi && lo <= hi {
            self.map
                .range(from..=hi)
                .map(|(_, (e, _))| e.clone())
                .collect()
        } else {
            Vec::new()
        };
        ReadPlan { disk, cached }
    }
}

#[cfg(test)]
mod tests {
    use catga_cluster_core::NodeId;
    use openraft::{CommittedLeaderId, LogId};

    use super::*;
    use crate::types::Operation;

    fn put(index: u64, bytes: usize) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, NodeId::new(1)), index),
            payload: EntryPayload::Normal(Command::new(
                Operation::Put {
                    key: String::new(),
                    value: vec![0; bytes],
                    expected_revision: None,
                },
                0,
            )),
        }
    }

    #[test]
    fn holds_its_budget_and_the_newest_entry() {
        let size = entry_size(&put(1, 1000));
        let mut cache = Cache::new(None, 10 * size);
        cache.extend((1..=100).map(|i| put(i, 1000)));
        assert_eq!(cache.len(), 10);
        assert!(cache.bytes() <= 10 * size);
        assert_eq!(cache.first_index(), Some(91));
        let plan = cache.plan_read(80, 95);
        assert_eq!(plan.disk, Some((80, 90)));
        assert_eq!(plan.cached.len(), 5);
        let plan = cache.plan_read(92, 200);
        assert_eq!(plan.disk, None);
        assert_eq!(plan.cached.len(), 9);

        // One entry larger than the whole budget still stays.
        cache.extend([put(101, 100 * size)]);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.last().unwrap().log_id.index, 101);
    }

    #[test]
    fn truncate_and_purge_keep_the_accounting() {
        let size = entry_size(&put(1, 10));
        let mut cache = Cache::new(None, 4 * size);
        cache.extend((1..=10).map(|i| put(i, 10)));
        assert_eq!(cache.first_index(), Some(7));
        // Truncating inside memory: nothing to read back.
        assert_eq!(cache.reload_after_truncate(9, None), None);
        cache.truncate(9, None);
        assert_eq!((cache.len(), cache.bytes()), (2, 2 * size));
        // Truncating below memory: the newest remaining entry comes back.
        assert_eq!(cache.reload_after_truncate(5, None), Some(4));
        assert_eq!(cache.reload_after_truncate(5, Some(4)), None);
        cache.truncate(5, Some(put(4, 10)));
        assert_eq!(cache.last().unwrap().log_id.index, 4);
        assert_eq!(cache.bytes(), size);
        assert_eq!(cache.plan_read(1, 4).disk, Some((1, 3)));
        cache.purge(2);
        assert_eq!(cache.plan_read(1, 4).disk, Some((3, 3)));
        cache.purge(3);
        assert_eq!(cache.plan_read(1, 4).disk, None);
        cache.purge(4);
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    }
}
