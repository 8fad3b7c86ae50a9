//! The log as openraft uses it: the [`RaftLogReader`] and [`RaftLogStorage`]
//! implementations of [`LogStore`] and [`LogStoreReader`], over the entry
//! map in memory and, in the durable flavour, the write-ahead log and the
//! metadata files.

use std::fmt::Debug;
use std::io;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex};

use catga_cluster_core::NodeId;
use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, OptionalSend, RaftLogReader, StorageIOError};

use super::meta::{encode, COMMITTED_FILE, PURGED_FILE, VOTE_FILE};
use super::record::{write_meta_atomic, Kind};
use super::wal::batch_bounds;
use super::{inclusive, read_cache, write_cache, Disk, LogStore, LogStoreReader, SharedCache};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

fn io_error(subject: ErrorSubject<NodeId>, verb: ErrorVerb, e: io::Error) -> StorageError {
    StorageError::from_io_error(subject, verb, e)
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

/// Reads the entries in `lo..=hi` (`bounds`): the part below the memory cache from the
/// write-ahead log (on the blocking pool, with the disk locked so that no
/// truncation or purge moves underneath), the rest from memory.
async fn read_range(
    cache: &SharedCache,
    disk: Option<&Arc<Mutex<Disk>>>,
    bounds: Option<(u64, u64)>,
) -> Result<Vec<Entry>, StorageError> {
    let Some((lo, hi)) = bounds else {
        return Ok(Vec::new());
    };
    if let Some(cached) = from_memory(cache, lo, hi) {
        return Ok(cached);
    }
    let Some(disk) = disk else {
        // The in-memory flavour never drops entries.
        return Ok(read_cache(cache).plan_read(lo, hi).cached);
    };
    let cache = Arc::clone(cache);
    with_disk(disk, move |d| {
        let plan = read_cache(&cache).plan_read(lo, hi);
        let mut out = match plan.disk {
            Some((lo, hi)) => d.wal.read(lo, hi)?,
            None => Vec::new(),
        };
        out.extend(plan.cached);
        Ok(out)
    })
    .await
    .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))
}

/// The entries in `lo..=hi` when memory holds all of them.
fn from_memory(cache: &SharedCache, lo: u64, hi: u64) -> Option<Vec<Entry>> {
    let plan = read_cache(cache).plan_read(lo, hi);
    plan.disk.is_none().then_some(plan.cached)
}

/// What an append must do first.
pub(super) enum AppendPlan {
    Append,
    /// The batch overwrites entries from this index on: truncate first.
    TruncateFirst(u64),
}

/// Checks that a batch continues the log (or overwrites part of it).
pub(super) fn plan_append(
    last: Option<u64>,
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
    match last {
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

impl RaftLogReader<TypeConfig> for LogStoreReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let bounds = inclusive(&range);
        if let Some(cached) = bounds.and_then(|(lo, hi)| from_memory(&self.cache, lo, hi)) {
            return Ok(cached);
        }
        let disk = match &self.disk {
            None => None,
            Some(weak) => Some(weak.upgrade().ok_or_else(|| {
                io_error(
                    ErrorSubject::Logs,
                    ErrorVerb::Read,
                    io::Error::other("the raft log is closed"),
                )
            })?),
        };
        read_range(&self.cache, disk.as_ref(), bounds).await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        read_range(&self.cache, self.disk.as_ref(), inclusive(&range)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStoreReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last = read_cache(&self.cache).last().map(|e| e.log_id);
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
        let last = read_cache(&self.cache).last().map(|e| e.log_id.index);
        let plan = plan_append(last, self.purged.map(|p| p.index), &batch)
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
            let mut cache = write_cache(&self.cache);
            if let Some(index) = truncate_at {
                cache.truncate(index, None);
            }
            cache.extend(batch);
        }
        // The batch is synced (durable flavour) and readable.
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let index = log_id.index;
        let mut reloaded = None;
        if let Some(disk) = &self.disk {
            // Keep the newest remaining entry in memory, reading it back if
            // the memory cache holds nothing below the truncation point.
            let reload =
                read_cache(&self.cache).reload_after_truncate(index, self.purged.map(|p| p.index));
            reloaded = with_disk(disk, move |d| {
                d.wal.truncate(index)?;
                match reload {
                    Some(i) => Ok(d.wal.read(i, i)?.pop()),
                    None => Ok(None),
                }
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        }
        write_cache(&self.cache).truncate(index, reloaded);
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
        write_cache(&self.cache).purge(log_id.index);
        self.purged = Some(log_id);
        Ok(())
    }
}
