//! The state machine as openraft stores it: the [`RaftStateMachine`] and
//! [`RaftSnapshotBuilder`] implementations, and the snapshot kept in the
//! [`SnapshotStore`](crate::snapshot_store::SnapshotStore) before it is
//! offered to followers.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{RaftSnapshotBuilder, StorageIOError};

use super::{decode_data, encode_data, StateMachineStore, StoredSnapshot};
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
        let last = {
            let mut data = self.write();
            for entry in entries {
                responses.push(self.apply_one(&mut data, &entry, &mut lock_changed));
            }
            data.last_applied.map_or(0, |l| l.index)
        };
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
        let mut data = decode_data(&bytes).map_err(|e| {
            StorageIOError::read_snapshot(Some(meta.signature()), openraft::AnyError::error(e))
        })?;
        data.last_applied = meta.last_log_id;
        data.membership = meta.last_membership.clone();
        self.persist_snapshot(meta, &bytes).await?;
        let index = data.last_applied.map_or(0, |l| l.index);
        *self.write() = data;
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

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let current = self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(current.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data.as_ref().clone())),
        }))
    }
}

impl StateMachineStore {
    async fn persist_snapshot(
        &self,
        meta: &SnapshotMeta,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        let store = self.shared.snapshots.clone();
        let (meta_owned, bytes_owned) = (meta.clone(), bytes.to_vec());
        let saved = tokio::task::spawn_blocking(move || {
            store.save(&meta_owned, &bytes_owned).map(|()| bytes_owned)
        })
        .await
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(StoredSnapshot {
            meta: meta.clone(),
            data: Arc::new(saved),
        });
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        // Copy under the read lock, encode outside it: apply goes on meanwhile.
        let data = self.read().clone();
        let bytes = encode_data(&data)
            .map_err(|e| StorageIOError::write_snapshot(None, openraft::AnyError::error(e)))?;
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
        self.persist_snapshot(&meta, &bytes).await?;
        tracing::debug!(
            target: "catga_cluster::raft::state_machine",
            last_log_id = ?meta.last_log_id,
            bytes = bytes.len(),
            "snapshot built"
        );
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}
