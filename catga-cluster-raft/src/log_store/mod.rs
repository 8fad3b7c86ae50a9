//! Raft log storage: openraft's v2
//! [`RaftLogStorage`](openraft::storage::RaftLogStorage) in memory or on
//! disk.
//!
//! [`LogStore`] is one type with two flavours chosen at run time:
//!
//! * [`LogStore::memory`] keeps everything in memory (tests, demos);
//! * [`LogStore::open`] keeps a durable log in a directory of its own.
//!
//! Both keep the live entries in memory for reads (a [`LogStoreReader`] is a
//! cheap clone of a shared map); the durable flavour also writes them to a
//! write-ahead log before an append returns. The live log is bounded by
//! openraft's snapshot and purge policy, so memory holds roughly
//! `max_in_snapshot_log_to_keep` plus the entries since the last snapshot.
//!
//! # On-disk layout
//!
//! | file | contents |
//! | --- | --- |
//! | `IDENTITY` | the node id and cluster name the directory belongs to |
//! | `vote` | the last saved vote |
//! | `committed` | the last persisted committed log id (see [`LogStoreOptions::committed_flush_interval`]) |
//! | `purged` | the last purged log id |
//! | `log-<seq>.wal` | segments of the write-ahead log |
//!
//! Every file starts with 8 magic bytes; every piece of data is a record
//! `len: u32 LE | crc32: u32 LE | kind: u8 | payload` whose CRC covers the
//! length, kind and payload, with payloads encoded by `postcard`. The small
//! files are replaced atomically (write `NAME.tmp`, fsync, rename, fsync the
//! directory). Each `append` writes one record to the active segment and
//! `fdatasync`s it before it returns.
//!
//! On open, the segments are replayed. A torn or corrupt tail of the last
//! segment (what a crash during an unacknowledged append leaves) is cut off
//! with a warning naming the file, offset and number of bytes dropped. A bad
//! record followed by valid ones, or a bad record in an earlier segment, is
//! damage in the middle of the log: opening fails with
//! [`LogStoreError::CorruptLog`] rather than silently losing entries that may
//! be committed.
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use catga_cluster_raft::log_store::{LogStore, StoreIdentity};
//! use openraft::storage::RaftLogStorage;
//!
//! let dir = std::env::temp_dir().join(format!("catga-doc-{}", std::process::id()));
//! let identity = StoreIdentity::new(1, "prod");
//! let mut store = LogStore::open(&dir, &identity)?;
//! let state = store.get_log_state().await?;
//! assert_eq!(state.last_log_id, None);
//! # drop(store);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

mod error;
mod meta;
pub(crate) mod record;
mod storage;
#[cfg(test)]
mod tests;
mod wal;

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub use error::LogStoreError;
pub use meta::StoreIdentity;
use meta::{
    check_identity, encode, read_value, COMMITTED_FILE, META_FILES, PURGED_FILE, VOTE_FILE,
};
use record::{temp_name, write_meta_atomic, Kind};
use wal::Wal;

use crate::types::{Entry, LogId, Vote};

/// Tuning of the durable flavour.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogStoreOptions {
    /// A segment is closed and a new one started once it holds this many
    /// bytes. Purging frees whole segments, so this bounds the dead bytes
    /// kept on disk. Default: 16 MiB.
    pub segment_bytes: u64,
    /// `save_committed` makes the committed log id durable when it has moved
    /// this many indexes since it was last written (and when the store is
    /// dropped). Between, a crash loses only the advance since the last
    /// write: the committed id is an optimisation that lets a restarted node
    /// re-apply its log before it hears from a leader, never a safety
    /// property, so a lagging value is harmless. `1` writes (with fsync)
    /// on every call, which openraft makes on every commit. Default: 64.
    pub committed_flush_interval: u64,
    /// Whether the store takes an exclusive lock on its directory, so that a
    /// second process (or a second node in this process) cannot open it.
    /// Turn it off only where the directory is shared on purpose, such as a
    /// test that simulates a crash by leaking a store. Default: on.
    pub exclusive: bool,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            segment_bytes: 16 << 20,
            committed_flush_interval: 64,
            exclusive: true,
        }
    }
}

impl LogStoreOptions {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`LogStoreOptions::segment_bytes`].
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }

    /// Sets [`LogStoreOptions::exclusive`].
    pub fn exclusive(mut self, exclusive: bool) -> Self {
        self.exclusive = exclusive;
        self
    }

    /// Sets [`LogStoreOptions::committed_flush_interval`].
    pub fn committed_flush_interval(mut self, indexes: u64) -> Self {
        self.committed_flush_interval = indexes;
        self
    }
}

type EntryMap = Arc<RwLock<BTreeMap<u64, Entry>>>;

fn read_map(map: &EntryMap) -> RwLockReadGuard<'_, BTreeMap<u64, Entry>> {
    // No code panics while holding the write lock; a poisoned lock still
    // holds a consistent map.
    map.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_map(map: &EntryMap) -> RwLockWriteGuard<'_, BTreeMap<u64, Entry>> {
    map.write().unwrap_or_else(PoisonError::into_inner)
}

/// The file whose exclusive lock marks a directory as in use.
const LOCK_FILE: &str = "LOCK";

/// The durable part of a store: its directory and write-ahead log.
#[derive(Debug)]
struct Disk {
    dir: PathBuf,
    wal: Wal,
    /// Holds an exclusive lock on the directory while the store is open.
    _lock: std::fs::File,
}

/// The Raft log of one node, in memory or on disk.
///
/// Implements openraft's [`RaftLogStorage`](openraft::storage::RaftLogStorage)
/// and [`RaftLogReader`](openraft::RaftLogReader). Writes
/// are serialised by `&mut self`; disk writes and fsyncs run on tokio's
/// blocking pool, so the methods must be called inside a tokio runtime.
///
/// `append` accepts a batch that continues the log, or that overwrites its
/// tail (the overwritten entries are truncated first, as openraft expects);
/// a batch that would leave a hole is refused with a storage error. Entries
/// at or below the purge point are ignored (a snapshot covers them).
///
/// What is durable when a method returns (durable flavour): `append` (the
/// batch is fdatasynced before the openraft callback is called and before
/// it returns), `save_vote`, `truncate` and `purge`. `save_committed` is
/// durable lazily, see [`LogStoreOptions::committed_flush_interval`]; the
/// latest value is also written when the store is dropped.
pub struct LogStore {
    entries: EntryMap,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// The committed id last written to disk.
    committed_durable: Option<LogId>,
    committed_flush_interval: u64,
    purged: Option<LogId>,
    dir: Option<PathBuf>,
    disk: Option<Arc<Mutex<Disk>>>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let map = read_map(&self.entries);
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("entries", &map.len())
            .field("first_index", &map.first_key_value().map(|(i, _)| *i))
            .field("last_index", &map.last_key_value().map(|(i, _)| *i))
            .field("vote", &self.vote)
            .field("committed", &self.committed)
            .field("purged", &self.purged)
            .finish()
    }
}

/// A cheap, cloneable reader of a [`LogStore`]'s entries (openraft hands one
/// to each replication task).
#[derive(Clone)]
pub struct LogStoreReader {
    entries: EntryMap,
}

impl fmt::Debug for LogStoreReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStoreReader")
            .field("entries", &read_map(&self.entries).len())
            .finish()
    }
}

impl LogStoreReader {
    /// The entries with indexes in `range`, in order (missing ones skipped).
    pub fn entries<RB: RangeBounds<u64>>(&self, range: RB) -> Vec<Entry> {
        collect_range(&self.entries, &range)
    }
}

fn collect_range<RB: RangeBounds<u64>>(map: &EntryMap, range: &RB) -> Vec<Entry> {
    let lo = match range.start_bound() {
        Bound::Included(&s) => Some(s),
        Bound::Excluded(&s) => s.checked_add(1),
        Bound::Unbounded => Some(0),
    };
    let hi = match range.end_bound() {
        Bound::Included(&e) => Some(e),
        Bound::Excluded(&e) => e.checked_sub(1),
        Bound::Unbounded => Some(u64::MAX),
    };
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo <= hi => read_map(map)
            .range(lo..=hi)
            .map(|(_, e)| e.clone())
            .collect(),
        _ => Vec::new(),
    }
}

impl LogStore {
    /// An empty in-memory log (for tests and demos: nothing survives a
    /// restart).
    pub fn memory() -> LogStore {
        LogStore {
            entries: Arc::default(),
            vote: None,
            committed: None,
            committed_durable: None,
            committed_flush_interval: 1,
            purged: None,
            dir: None,
            disk: None,
        }
    }

    /// Opens the durable log in `dir` (created if missing) with the default
    /// [`LogStoreOptions`].
    ///
    /// This does blocking file I/O (it replays the log); from async code,
    /// call it once at start-up or through `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`LogStoreError::ForeignDirectory`] when `dir` was created for another
    /// node id or cluster name, [`LogStoreError::MissingIdentity`] when it
    /// holds log data but no identity file, [`LogStoreError::CorruptLog`] /
    /// [`LogStoreError::CorruptFile`] for damage that cannot be repaired
    /// safely, [`LogStoreError::Io`] otherwise.
    pub fn open(dir: &Path, identity: &StoreIdentity) -> Result<LogStore, LogStoreError> {
        Self::open_with(dir, identity, LogStoreOptions::default())
    }

    /// [`LogStore::open`] with explicit options.
    ///
    /// # Errors
    ///
    /// As [`LogStore::open`].
    pub fn open_with(
        dir: &Path,
        identity: &StoreIdentity,
        options: LogStoreOptions,
    ) -> Result<LogStore, LogStoreError> {
        record::create_dir_durable(dir).map_err(|e| LogStoreError::io(dir, e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| LogStoreError::io(&lock_path, e))?;
        match if options.exclusive {
            lock.try_lock()
        } else {
            Ok(())
        } {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LogStoreError::Locked {
                    dir: dir.to_path_buf(),
                })
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(LogStoreError::io(&lock_path, e)),
        }
        check_identity(dir, identity)?;
        for name in META_FILES {
            let tmp = dir.join(temp_name(name));
            match std::fs::remove_file(&tmp) {
                Ok(()) => {
                    tracing::info!(file = %tmp.display(), "removed a leftover temporary file")
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(LogStoreError::io(tmp, e)),
            }
        }
        let vote: Option<Vote> = read_value(dir, VOTE_FILE, Kind::Vote)?;
        let committed: Option<LogId> =
            read_value::<Option<LogId>>(dir, COMMITTED_FILE, Kind::Committed)?.flatten();
        let purged: Option<LogId> = read_value(dir, PURGED_FILE, Kind::Purged)?;
        let (wal, entries) = Wal::open(dir, purged.map(|p| p.index), options.segment_bytes)?;
        tracing::debug!(
            dir = %dir.display(),
            entries = entries.len(),
            ?vote,
            ?committed,
            ?purged,
            "opened the raft log"
        );
        Ok(LogStore {
            entries: Arc::new(RwLock::new(entries)),
            vote,
            committed,
            committed_durable: committed,
            committed_flush_interval: options.committed_flush_interval,
            purged,
            dir: Some(dir.to_path_buf()),
            disk: Some(Arc::new(Mutex::new(Disk {
                dir: dir.to_path_buf(),
                wal,
                _lock: lock,
            }))),
        })
    }

    /// Whether this store writes to disk.
    pub fn is_durable(&self) -> bool {
        self.disk.is_some()
    }

    /// The data directory of a durable store.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// A reader sharing this store's entries.
    pub fn reader(&self) -> LogStoreReader {
        LogStoreReader {
            entries: Arc::clone(&self.entries),
        }
    }

    fn committed_flush_due(&self) -> bool {
        match (self.committed, self.committed_durable) {
            (now, durable) if now == durable => false,
            (Some(now), Some(durable)) => {
                now.index < durable.index
                    || now.index - durable.index >= self.committed_flush_interval
            }
            _ => true,
        }
    }
}

impl Drop for LogStore {
    /// Writes a committed log id that is not yet durable (a few milliseconds
    /// of blocking I/O, once, when the node shuts down).
    fn drop(&mut self) {
        if self.committed == self.committed_durable {
            return;
        }
        let Some(disk) = &self.disk else { return };
        let Ok(disk) = disk.lock() else { return };
        let result = encode(&self.committed)
            .and_then(|p| write_meta_atomic(&disk.dir, COMMITTED_FILE, Kind::Committed, &p));
        if let Err(e) = result {
            tracing::warn!(
                dir = %disk.dir.display(),
                error = %e,
                "could not write the committed log id while closing the raft log"
            );
        }
    }
}
