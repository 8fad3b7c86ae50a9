//! The log as openraft uses it: the [`RaftLogReader`] and [`RaftLogStorage`]
//! implementations of [`LogStore`] and [`LogStoreReader`], over the entry
//! map in memory and, in the durable flavour, the write-ahead log and the
//! metadata files.

use std::collections::BTreeMap;
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
use super::{collect_range, read_map, write_map, Disk, LogStore, LogStoreReader};
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

/// What an append must do first.
pub(super) enum AppendPlan {
    Append,
    /// The batch overwrites entries from this index on: truncate first.
    TruncateFirst(u64),
}

/// Checks that a batch continues the log (or overwrites part of it).
pub(super) fn plan_append(
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
