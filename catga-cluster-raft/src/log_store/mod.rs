//! Raft log storage: openraft's v2 [`RaftLogStorage`] in memory or on disk.
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
pub(crate) mod record;
mod wal;

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use catga_cluster_core::NodeId;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub use error::LogStoreError;
use record::{read_meta, temp_name, write_meta_atomic, Kind, MetaError};
use wal::{batch_bounds, list_segments, Wal};

use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

const IDENTITY_FILE: &str = "IDENTITY";
const VOTE_FILE: &str = "vote";
const COMMITTED_FILE: &str = "committed";
const PURGED_FILE: &str = "purged";
const META_FILES: [&str; 4] = [IDENTITY_FILE, VOTE_FILE, COMMITTED_FILE, PURGED_FILE];

/// Whom a data directory belongs to: checked on every open so that a node
/// never runs on another node's (or another cluster's) log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreIdentity {
    /// The node id.
    pub node_id: NodeId,
    /// The cluster name.
    pub cluster_name: String,
}

impl StoreIdentity {
    /// An identity from a node id and a cluster name.
    pub fn new(node_id: impl Into<NodeId>, cluster_name: impl Into<String>) -> Self {
        StoreIdentity {
            node_id: node_id.into(),
            cluster_name: cluster_name.into(),
        }
    }
}

/// The on-disk form of [`StoreIdentity`] (kept apart so that the public type
/// can change without changing the format).
#[derive(Serialize, Deserialize)]
struct IdentityRecord {
    node_id: u64,
    cluster_name: String,
}

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
/// Implements openraft's [`RaftLogStorage`] and [`RaftLogReader`]. Writes
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

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: io::Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e)
}

fn encode<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Runs `op` on the blocking pool with the disk state locked.
///
/// The lock is only taken inside the blocking task, never across an
/// `.await`.
async fn with_disk<T, F>(disk: &Arc<Mutex<Disk>>, op: F) -> io::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&mut Disk) -> io::Result<T> + Send + 'static,
{
    let disk = Arc::clone(disk);
    tokio::task::spawn_blocking(move || {
        let mut guard = disk.lock().map_err(|_| {
            io::Error::other("the raft log is unusable after a panic during an earlier write")
        })?;
        op(&mut guard)
    })
    .await
    .map_err(|e| io::Error::other(format!("the raft log write task failed: {e}")))?
}

/// What an append must do first.
enum AppendPlan {
    Append,
    /// The batch overwrites entries from this index on: truncate first.
    TruncateFirst(u64),
}

/// Checks that a batch continues the log (or overwrites part of it).
fn plan_append(
    map: &BTreeMap<u64, Entry>,
    purged: Option<u64>,
    batch: &[Entry],
) -> Result<AppendPlan, String> {
    let (first, _) = batch_bounds(batch)?;
    if let Some(p) = purged {
        if first <= p {
            return Err(format!(
                "cannot append at index {first}: the log is purged up to index {p}"
            ));
        }
    }
    match map.last_key_value().map(|(i, _)| *i) {
        Some(last) if first == last.saturating_add(1) => Ok(AppendPlan::Append),
        Some(last) if first <= last => Ok(AppendPlan::TruncateFirst(first)),
        Some(last) => Err(format!(
            "cannot append at index {first}: the log ends at index {last} (no holes allowed)"
        )),
        None => match purged {
            Some(p) if first != p.saturating_add(1) => Err(format!(
                "cannot append at index {first}: the log is empty and purged up to index {p}"
            )),
            _ => Ok(AppendPlan::Append),
        },
    }
}

fn read_value<T: DeserializeOwned>(
    dir: &Path,
    name: &str,
    kind: Kind,
) -> Result<Option<T>, LogStoreError> {
    let path = dir.join(name);
    match read_meta(&path, kind) {
        Ok(None) => Ok(None),
        Ok(Some(bytes)) => {
            postcard::from_bytes(&bytes)
                .map(Some)
                .map_err(|e| LogStoreError::CorruptFile {
                    path,
                    reason: format!("the contents do not decode: {e}"),
                })
        }
        Err(MetaError::Io(e)) => Err(LogStoreError::io(path, e)),
        Err(MetaError::Corrupt(reason)) => Err(LogStoreError::CorruptFile { path, reason }),
    }
}

/// Checks (or, in a fresh directory, records) whom `dir` belongs to.
fn check_identity(dir: &Path, identity: &StoreIdentity) -> Result<(), LogStoreError> {
    match read_value::<IdentityRecord>(dir, IDENTITY_FILE, Kind::Identity)? {
        Some(found) => {
            if found.node_id != identity.node_id.get()
                || found.cluster_name != identity.cluster_name
            {
                return Err(LogStoreError::ForeignDirectory {
                    dir: dir.to_path_buf(),
                    found_node: NodeId::new(found.node_id),
                    found_cluster: found.cluster_name,
                    expected_node: identity.node_id,
                    expected_cluster: identity.cluster_name.clone(),
                });
            }
            Ok(())
        }
        None => {
            let has_segments = !list_segments(dir)
                .map_err(|e| LogStoreError::io(dir, e))?
                .is_empty();
            let has_meta = META_FILES[1..].iter().any(|name| dir.join(name).exists());
            if has_segments || has_meta {
                return Err(LogStoreError::MissingIdentity {
                    dir: dir.to_path_buf(),
                    file: dir.join(IDENTITY_FILE),
                });
            }
            let record = IdentityRecord {
                node_id: identity.node_id.get(),
                cluster_name: identity.cluster_name.clone(),
            };
            let payload = encode(&record).map_err(|e| LogStoreError::io(dir, e))?;
            write_meta_atomic(dir, IDENTITY_FILE, Kind::Identity, &payload)
                .map_err(|e| LogStoreError::io(dir.join(IDENTITY_FILE), e))
        }
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

impl RaftLogReader<TypeConfig> for LogStoreReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(collect_range(&self.entries, &range))
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(collect_range(&self.entries, &range))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStoreReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last = read_map(&self.entries)
            .last_key_value()
            .map(|(_, e)| e.log_id);
        Ok(LogState {
            last_purged_log_id: self.purged,
            last_log_id: last.or(self.purged),
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        if let Some(disk) = &self.disk {
            let payload =
                encode(vote).map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
            with_disk(disk, move |d| {
                write_meta_atomic(&d.dir, VOTE_FILE, Kind::Vote, &payload)
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        }
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed = committed;
        if let Some(disk) = &self.disk {
            if self.committed_flush_due() {
                let payload = encode(&committed)
                    .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
                with_disk(disk, move |d| {
                    write_meta_atomic(&d.dir, COMMITTED_FILE, Kind::Committed, &payload)
                })
                .await
                .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
                self.committed_durable = committed;
            }
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch: Vec<Entry> = entries.into_iter().collect();
        if let Some(purged) = self.purged {
            // Entries at or below the purge point are covered by a snapshot
            // already; openraft does not send them, but its storage suite
            // does, and keeping them would leave a hole after the purge
            // point.
            let before = batch.len();
            batch.retain(|e| e.log_id.index > purged.index);
            if batch.len() < before {
                tracing::debug!(
                    dropped = before - batch.len(),
                    %purged,
                    "ignoring appended entries at or below the purge point"
                );
            }
        }
        if batch.is_empty() {
            callback.log_io_completed(Ok(()));
            return Ok(());
        }
        let plan = plan_append(
            &read_map(&self.entries),
            self.purged.map(|p| p.index),
            &batch,
        )
        .map_err(|msg| StorageIOError::write_logs(AnyError::error(msg)))?;
        let truncate_at = match plan {
            AppendPlan::Append => None,
            AppendPlan::TruncateFirst(index) => Some(index),
        };
        let batch = match &self.disk {
            Some(disk) => with_disk(disk, move |d| {
                if let Some(index) = truncate_at {
                    d.wal.truncate(index)?;
                }
                d.wal.append(&batch)?;
                Ok(batch)
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?,
            None => batch,
        };
        {
            let mut map = write_map(&self.entries);
            if let Some(index) = truncate_at {
                drop(map.split_off(&index));
            }
            map.extend(batch.into_iter().map(|e| (e.log_id.index, e)));
        }
        // The batch is synced (durable flavour) and readable.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        if let Some(disk) = &self.disk {
            with_disk(disk, move |d| d.wal.truncate(index))
                .await
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        }
        drop(write_map(&self.entries).split_off(&index));
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        if self.purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        if let Some(disk) = &self.disk {
            let payload =
                encode(&log_id).map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
            with_disk(disk, move |d| {
                // The purge point first: a crash before the segments are
                // deleted is finished on the next open.
                write_meta_atomic(&d.dir, PURGED_FILE, Kind::Purged, &payload)?;
                d.wal.purge(log_id.index)
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        }
        {
            let mut map = write_map(&self.entries);
            let keep = map.split_off(&log_id.index.saturating_add(1));
            *map = keep;
        }
        self.purged = Some(log_id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, Entry as RaftEntry};

    fn blank(term: u64, index: u64) -> Entry {
        RaftEntry {
            log_id: openraft::LogId::new(CommittedLeaderId::new(term, NodeId::new(1)), index),
            payload: openraft::EntryPayload::Blank,
        }
    }

    #[test]
    fn plan_append_rules() {
        let mut map = BTreeMap::new();
        assert!(matches!(
            plan_append(&map, None, &[blank(1, 5)]),
            Ok(AppendPlan::Append)
        ));
        assert!(plan_append(&map, Some(4), &[blank(1, 6)]).is_err());
        assert!(plan_append(&map, Some(4), &[blank(1, 4)]).is_err());
        for i in 5..=8 {
            map.insert(i, blank(1, i));
        }
        assert!(matches!(
            plan_append(&map, Some(4), &[blank(2, 9)]),
            Ok(AppendPlan::Append)
        ));
        assert!(matches!(
            plan_append(&map, Some(4), &[blank(2, 6), blank(2, 7)]),
            Ok(AppendPlan::TruncateFirst(6))
        ));
        assert!(plan_append(&map, Some(4), &[blank(2, 10)]).is_err());
        assert!(plan_append(&map, Some(4), &[blank(2, 9), blank(2, 11)]).is_err());
    }

    #[test]
    fn wal_overwrites_instead_of_duplicating_and_refuses_holes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = Wal::open(dir.path(), None, 1 << 20).unwrap();
        wal.append(&[blank(1, 1), blank(1, 2), blank(1, 3)])
            .unwrap();
        wal.append(&[blank(2, 2), blank(2, 3), blank(2, 4)])
            .unwrap();
        assert!(wal.append(&[blank(2, 9)]).is_err());
        drop(wal);
        let (_wal, entries) = Wal::open(dir.path(), None, 1 << 20).unwrap();
        let got: Vec<_> = entries.values().cloned().collect();
        assert_eq!(
            got,
            vec![blank(1, 1), blank(2, 2), blank(2, 3), blank(2, 4)]
        );
    }

    #[test]
    fn wal_rotates_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, entries) = Wal::open(dir.path(), None, 32).unwrap();
        assert!(entries.is_empty());
        for i in 1..=10 {
            wal.append(&[blank(1, i)]).unwrap();
        }
        assert!(wal.segment_count() >= 5, "{}", wal.segment_count());
        wal.purge(10).unwrap();
        assert_eq!(wal.segment_count(), 1);
        drop(wal);
        let (_wal, entries) = Wal::open(dir.path(), Some(10), 32).unwrap();
        assert!(entries.is_empty());
    }
}
