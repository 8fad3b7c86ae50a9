//! Raft log storage: openraft's v2
//! [`RaftLogStorage`](openraft::storage::RaftLogStorage) in memory or on
//! disk.
//!
//! [`LogStore`] is one type with two flavours chosen at run time:
//!
//! * [`LogStore::memory`] keeps everything in memory (tests, demos);
//! * [`LogStore::open`] keeps a durable log in a directory of its own.
//!
//! The in-memory flavour keeps every live entry in memory; the live log is
//! bounded by openraft's snapshot and purge policy, so it holds roughly
//! `max_in_snapshot_log_to_keep` plus the entries since the last snapshot.
//! The durable flavour writes every entry to a write-ahead log before an
//! append returns and keeps only the newest ones in memory, up to
//! [`LogStoreOptions::cache_bytes`]; older entries are read back from the
//! log when a lagging follower or a restart needs them. A
//! [`LogStoreReader`] is a cheap clone sharing both.
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

mod cache;
mod error;
mod meta;
pub(crate) mod record;
mod storage;
#[cfg(test)]
mod tests;
mod wal;

use std::fmt;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};

use cache::Cache;
pub use error::LogStoreError;
pub use meta::StoreIdentity;
use meta::{
    check_identity, encode, read_value, COMMITTED_FILE, META_FILES, PURGED_FILE, VOTE_FILE,
};
use record::{temp_name, write_meta_atomic, Kind};
use wal::Wal;

use crate::types::{LogId, Vote};

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
    /// How many bytes of the newest entries the store keeps in memory
    /// (counted from the size of their keys, values and names plus a fixed
    /// overhead per command and per entry); the newest entry always stays.
    /// Older entries are read back from the write-ahead log when needed: by
    /// a follower that lags further behind, or when a restarted node
    /// re-applies its log. Opening replays the whole log but keeps no more
    /// than this either. Default: 4 MiB (measured with 16 puts of
    /// 128-byte values per entry, memory holds about 1.45 times what is
    /// counted: about 6 MiB).
    pub cache_bytes: usize,
}

impl Default for LogStoreOptions {
    fn default() -> Self {
        LogStoreOptions {
            segment_bytes: 16 << 20,
            committed_flush_interval: 64,
            exclusive: true,
            cache_bytes: 4 << 20,
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

    /// Sets [`LogStoreOptions::cache_bytes`].
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Sets [`LogStoreOptions::committed_flush_interval`].
    pub fn committed_flush_interval(mut self, indexes: u64) -> Self {
        self.committed_flush_interval = indexes;
        self
    }
}

type SharedCache = Arc<RwLock<Cache>>;

fn read_cache(cache: &SharedCache) -> RwLockReadGuard<'_, Cache> {
    // No code panics while holding the write lock; a poisoned lock still
    // holds a consistent cache.
    cache.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_cache(cache: &SharedCache) -> RwLockWriteGuard<'_, Cache> {
    cache.write().unwrap_or_else(PoisonError::into_inner)
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
    cache: SharedCache,
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
        let cache = read_cache(&self.cache);
        f.debug_struct("LogStore")
            .field("dir", &self.dir)
            .field("cached_entries", &cache.len())
            .field("cached_bytes", &cache.bytes())
            .field("first_cached_index", &cache.first_index())
            .field("last_index", &cache.last().map(|e| e.log_id.index))
            .field("vote", &self.vote)
            .field("committed", &self.committed)
            .field("purged", &self.purged)
            .finish()
    }
}

/// A cheap, cloneable reader of a [`LogStore`]'s entries (openraft hands one
/// to each replication task): it shares the store's memory cache and, in
/// the durable flavour, reads older entries back from its write-ahead log.
#[derive(Clone)]
pub struct LogStoreReader {
    cache: SharedCache,
    /// Weak, so that a reader left over after the store closed does not
    /// hold the directory (its lock) open.
    disk: Option<Weak<Mutex<Disk>>>,
}

impl fmt::Debug for LogStoreReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStoreReader")
            .field("cached_entries", &read_cache(&self.cache).len())
            .field("durable", &self.disk.is_some())
            .finish()
    }
}

/// The inclusive bounds of `range`, if it holds any index.
fn inclusive<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, u64)> {
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
        (Some(lo), Some(hi)) if lo <= hi => Some((lo, hi)),
        _ => None,
    }
}

impl LogStore {
    /// An empty in-memory log (for tests and demos: nothing survives a
    /// restart).
    pub fn memory() -> LogStore {
        LogStore {
            cache: Arc::new(RwLock::new(Cache::new(None, usize::MAX))),
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
        let (wal, cache) = Wal::open(
            dir,
            purged.map(|p| p.index),
            options.segment_bytes,
            options.cache_bytes,
        )?;
        tracing::debug!(
            dir = %dir.display(),
            cached_entries = cache.len(),
            ?vote,
            ?committed,
            ?purged,
            "opened the raft log"
        );
        Ok(LogStore {
            cache: Arc::new(RwLock::new(cache)),
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

    /// The bytes of entries held in memory (see
    /// [`LogStoreOptions::cache_bytes`]; counted as that option counts).
    pub fn cached_bytes(&self) -> usize {
        read_cache(&self.cache).bytes()
    }

    /// A reader sharing this store's entries.
    pub fn reader(&self) -> LogStoreReader {
        LogStoreReader {
            cache: Arc::clone(&self.cache),
            disk: self.disk.as_ref().map(Arc::downgrade),
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
