//! The state machine as openraft stores it: the [`RaftStateMachine`] and
//! [`RaftSnapshotBuilder`] implementations, and the snapshot kept in the
//! [`SnapshotStore`](crate::snapshot_store::SnapshotStore) before it is
//! offered to followers.

use std::io::Cursor;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{RaftSnapshotBuilder, StorageIOError};

use super::{decode_data, write_data, StateMachineStore};
use crate::types::{
    CommandResponse, Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = StateMachineStore;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let data = self.read();
        Ok((data.last_applied, data.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut responses = Vec::new();
        let mut lock_changed = false;
        let mut events = Vec::new();
        let last = {
            let mut data = self.write();
            for entry in entries {
                responses.push(self.apply_one(&mut data, &entry, &mut lock_changed, &mut events));
            }
            data.last_applied.map_or(0, |l| l.index)
        };
        // Before `applied` moves: a watch that waited for an index finds
        // its events published.
        self.shared.watches.publish(last, events);
        self.shared.applied.send_modify(|a| {
            a.index = last;
            if lock_changed {
                a.lock_changes += 1;
            }
        });
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let store = self.shared.snapshots.clone();
        let saved = meta.clone();
        // Decoding hundreds of thousands of keys takes most of a second:
        // on the blocking pool with the save, not on a runtime worker that
        // also serves this node's heartbeats and requests.
        let decoded = tokio::task::spawn_blocking(move || {
            let data = decode_data(&bytes).map_err(|e| {
                Box::new(StorageIOError::read_snapshot(
                    Some(saved.signature()),
                    openraft::AnyError::error(e),
                ))
            })?;
            store.save(&saved, &bytes).map_err(|e| {
                Box::new(StorageIOError::write_snapshot(Some(saved.signature()), &e))
            })?;
            Ok(data)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let mut data = decoded.map_err(|e: Box<StorageIOError<catga_cluster_core::NodeId>>| *e)?;
        data.last_applied = meta.last_log_id;
        data.membership = meta.last_membership.clone();
        let index = data.last_applied.map_or(0, |l| l.index);
        // The old state is freed outside the lock, off the runtime's
        // workers (freeing a large state is slow too).
        let old = std::mem::replace(&mut *self.write(), data);
        drop(tokio::task::spawn_blocking(move || drop(old)));
        self.shared.watches.reset(index);
        self.shared.applied.send_modify(|a| {
            a.index = index;
            a.lock_changes += 1;
        });
        tracing::info!(
            target: "catga_cluster::raft::state_machine",
            snapshot = %meta.snapshot_id,
            "installed snapshot from the leader"
        );
        Ok(())
    }

    /// Reads the latest snapshot back from the snapshot store: it is not
    /// kept in memory between the times a lagging follower needs it.
    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let store = self.shared.snapshots.clone();
        let loaded = tokio::task::spawn_blocking(move || store.load())
            .await
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(loaded.map(|(meta, data)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        }))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    /// Takes an O(1) copy of the state under the read lock (see `Data`),
    /// then encodes it straight into the snapshot store on the blocking pool
    /// while apply goes on ([`SnapshotStore::save_with`]: no buffer of the
    /// whole encoded state exists).
    ///
    /// The snapshot returned carries its metadata and **empty data**.
    /// openraft 0.9.25 reads only the metadata of what this returns: its
    /// state-machine worker answers the core with
    /// `Response::BuildSnapshot(snap.meta)` and drops the rest
    /// (`openraft/src/core/sm/worker.rs`, `Worker::build_snapshot`), and at
    /// start-up `StorageHelper::get_initial_state`
    /// (`openraft/src/storage/helper.rs`) keeps only `x.meta` of a snapshot
    /// it builds. When a follower needs the snapshot, openraft asks
    /// [`get_current_snapshot`](RaftStateMachine::get_current_snapshot),
    /// which reads the data back from the store.
    ///
    /// [`SnapshotStore::save_with`]: crate::snapshot_store::SnapshotStore::save_with
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let data = self.read().clone();
        let snapshot_id = match data.last_applied {
            Some(last) => format!(
                "{}-{}-{}",
                last.leader_id.term,
                last.index,
                fastrand::u32(..)
            ),
            None => format!("empty-{}", fastrand::u32(..)),
        };
        let meta = SnapshotMeta {
            last_log_id: data.last_applied,
            last_membership: data.membership.clone(),
            snapshot_id,
        };
        let store = self.shared.snapshots.clone();
        let saved = meta.clone();
        let bytes = tokio::task::spawn_blocking(move || {
            let written = store.save_with(&saved, |out| write_data(&data, out));
            // The copy's nodes that writes have since replaced are freed
            // here, off the async threads.
            drop(data);
            written
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::debug!(
            target: "catga_cluster::raft::state_machine",
            last_log_id = ?meta.last_log_id,
            bytes,
            "snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(Vec::new())),
        })
    }
}
