//! The replicated state machine: a key-value store, fenced locks and the
//! de-duplication table.
//!
//! # Time and leases
//!
//! Lock leases are decided only from the leader's timestamp carried in each
//! command ([`Command::leader_time_ms`]), never from the clock of the node
//! applying the entry, so every node reaches the same decision. Within a term
//! the state machine's clock is the largest timestamp seen. When entries of a
//! new term arrive, every held lease is *rebased*: the lease time that was
//! left at the last command of the old term starts counting again from the
//! first command of the new term. A new leader therefore never expires a
//! lease earlier than its holder could have observed, whatever its wall clock
//! says; the assumption left is that clocks advance at about the same rate.
//! The holder measures its lease from before it sent the request, so it
//! always believes its lease ends no later than the cluster does.
//!
//! # Fencing tokens and revisions
//!
//! A lock's fencing token is the log index of the entry that granted it, and
//! a key's revision is the log index of the entry that last wrote it: both
//! grow strictly.
//!
//! # De-duplication
//!
//! A command with a request id is applied once; a retry with the same id is
//! answered with the first answer. Entries are dropped from the table once
//! they are older than the configured horizon (by the state machine's clock)
//! or when the table holds more than its maximum, oldest first; a retry that
//! arrives later than that is applied again, so the horizon must exceed the
//! longest time a client retries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Cursor;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::snapshot_store::SnapshotStore;
use crate::types::{
    Command, CommandResponse, Entry, LogId, Operation, SnapshotMeta, StorageError,
    StoredMembership, TypeConfig,
};
pub use crate::types::{KvValue, LockState};

/// Limits on what the state machine accepts.
pub mod limits {
    /// Longest key, in characters (Unicode scalar values, as JSON Schema's
    /// `maxLength` counts; at most four bytes each).
    pub const MAX_KEY_LEN: usize = 1024;
    /// Largest value, in bytes.
    pub const MAX_VALUE_LEN: usize = 1024 * 1024;
    /// Longest lock name, in characters.
    pub const MAX_LOCK_NAME_LEN: usize = catga_cluster_core::lock::MAX_LOCK_NAME_LEN;
    /// Longest lock owner id, in characters.
    pub const MAX_OWNER_LEN: usize = 256;
    /// Longest request id, in characters.
    pub const MAX_REQUEST_ID_LEN: usize = 128;
    /// Longest lock lease, in milliseconds (one day).
    pub const MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
}

/// Settings of the state machine.
#[derive(Debug, Clone)]
pub struct StateMachineConfig {
    /// How long a request id is remembered, by the leader's clock.
    pub dedup_horizon: Duration,
    /// The most request ids remembered.
    pub dedup_max_entries: usize,
}

impl Default for StateMachineConfig {
    fn default() -> Self {
        StateMachineConfig {
            dedup_horizon: Duration::from_secs(15 * 60),
            dedup_max_entries: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DedupEntry {
    response: CommandResponse,
    at_ms: u64,
}

/// Everything the state machine holds; what a snapshot carries.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Data {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// The state machine's clock: leader milliseconds.
    clock_ms: u64,
    /// The term of the last command applied.
    clock_term: u64,
    kv: BTreeMap<String, KvValue>,
    locks: BTreeMap<String, LockState>,
    dedup: HashMap<String, DedupEntry>,
    /// Request ids in the order they were recorded, for pruning.
    dedup_order: VecDeque<String>,
}

/// What changed in the last batch, for waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The last applied log index.
    pub index: u64,
    /// Increases whenever a lock is released, expires or changes hands.
    pub lock_changes: u64,
}

struct Shared {
    data: RwLock<Data>,
    snapshots: SnapshotStore,
    current: Mutex<Option<StoredSnapshot>>,
    applied: watch::Sender<Applied>,
    config: StateMachineConfig,
}

#[derive(Clone)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
}

/// The state machine of a node. Cheap to clone: clones share the state.
#[derive(Clone)]
pub struct StateMachineStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.read();
        f.debug_struct("StateMachineStore")
            .field("last_applied", &data.last_applied)
            .field("keys", &data.kv.len())
            .field("locks", &data.locks.len())
            .finish()
    }
}

/// Why a state machine could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateMachineError {
    /// The stored snapshot could not be read or decoded.
    #[error("cannot restore the state machine from its snapshot: {0}")]
    Snapshot(String),
}

impl StateMachineStore {
    /// Opens the state machine, restoring it from the latest snapshot in
    /// `snapshots` when there is one. Entries after the snapshot are
    /// re-applied by Raft from the log.
    pub fn open(
        snapshots: SnapshotStore,
        config: StateMachineConfig,
    ) -> Result<Self, StateMachineError> {
        let mut data = Data::default();
        let mut current = None;
        match snapshots.load() {
            Ok(Some((meta, bytes))) => {
                data = decode_data(&bytes).map_err(StateMachineError::Snapshot)?;
                tracing::info!(
                    target: "catga_cluster::raft::state_machine",
                    last_applied = ?data.last_applied,
                    keys = data.kv.len(),
                    locks = data.locks.len(),
                    "state machine restored from snapshot"
                );
                current = Some(StoredSnapshot {
                    meta,
                    data: Arc::new(bytes),
                });
            }
            Ok(None) => {}
            Err(e) => return Err(StateMachineError::Snapshot(e.to_string())),
        }
        let index = data.last_applied.map_or(0, |l| l.index);
        let (applied, _) = watch::channel(Applied {
            index,
            lock_changes: 0,
        });
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                data: RwLock::new(data),
                snapshots,
                current: Mutex::new(current),
                applied,
                config,
            }),
        })
    }

    /// An in-memory state machine with default settings.
    pub fn memory() -> Self {
        // An in-memory snapshot store starts empty, so opening cannot fail.
        match StateMachineStore::open(SnapshotStore::memory(), StateMachineConfig::default()) {
            Ok(sm) => sm,
            Err(_) => unreachable!("an empty in-memory snapshot store always opens"),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.shared.data.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Data> {
        self.shared.data.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Notifications of applied entries and lock changes.
    pub fn subscribe(&self) -> watch::Receiver<Applied> {
        self.shared.applied.subscribe()
    }

    /// The last applied log id.
    pub fn last_applied(&self) -> Option<LogId> {
        self.read().last_applied
    }

    /// A key's value, as applied locally (linearizable only after a
    /// read-index check).
    pub fn get(&self, key: &str) -> Option<KvValue> {
        self.read().kv.get(key).cloned()
    }

    /// The keys starting with `prefix`, in order, at most `limit`.
    pub fn list(&self, prefix: &str, limit: usize) -> Vec<(String, KvValue)> {
        self.read()
            .kv
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A lock's state as applied locally, with its expiry on the state
    /// machine's clock, and that clock.
    pub fn lock(&self, name: &str) -> (Option<LockState>, u64) {
        let data = self.read();
        (data.locks.get(name).cloned(), data.clock_ms)
    }

    /// How many request ids the de-duplication table holds.
    pub fn dedup_len(&self) -> usize {
        self.read().dedup.len()
    }

    fn apply_one(
        &self,
        data: &mut Data,
        entry: &Entry,
        lock_changed: &mut bool,
    ) -> CommandResponse {
        data.last_applied = Some(entry.log_id);
        match &entry.payload {
            EntryPayload::Blank => CommandResponse::Empty,
            EntryPayload::Membership(m) => {
                data.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                CommandResponse::Empty
            }
            EntryPayload::Normal(cmd) => {
                advance_clock(data, entry.log_id.leader_id.term, cmd.leader_time_ms);
                if let Some(id) = &cmd.request_id {
                    if let Some(seen) = data.dedup.get(id) {
                        return seen.response.clone();
                    }
                }
                let response = execute(data, entry.log_id.index, cmd, lock_changed);
                if let Some(id) = &cmd.request_id {
                    remember(data, id, &response, &self.shared.config);
                }
                response
            }
        }
    }
}

/// Moves the state machine's clock to a command's time, rebasing every lease
/// when a new term starts (see the module documentation).
fn advance_clock(data: &mut Data, term: u64, time_ms: u64) {
    if term > data.clock_term {
        if data.clock_term != 0 {
            let old_now = data.clock_ms;
            for lock in data.locks.values_mut() {
                let remaining = lock.expires_at_ms.saturating_sub(old_now);
                lock.expires_at_ms = time_ms.saturating_add(remaining);
            }
        }
        data.clock_term = term;
        data.clock_ms = time_ms;
    } else {
        data.clock_ms = data.clock_ms.max(time_ms);
    }
}

fn validate(cmd: &Command) -> Result<(), String> {
    use limits::*;
    fn check_len(what: &str, s: &str, max: usize) -> Result<(), String> {
        if s.is_empty() {
            return Err(format!("the {what} is empty"));
        }
        // Characters, not bytes: the HTTP API documents these limits as
        // JSON Schema `maxLength`, which counts characters.
        let chars = s.chars().count();
        if chars > max {
            return Err(format!(
                "the {what} is {chars} characters long; at most {max} are allowed"
            ));
        }
        Ok(())
    }
    fn check_ttl(ttl_ms: u64) -> Result<(), String> {
        if ttl_ms == 0 || ttl_ms > MAX_TTL_MS {
            return Err(format!(
                "the lease must be 1 to {MAX_TTL_MS} ms, not {ttl_ms}"
            ));
        }
        Ok(())
    }
    if let Some(id) = &cmd.request_id {
        check_len("request id", id, MAX_REQUEST_ID_LEN)?;
    }
    match &cmd.op {
        Operation::Noop => Ok(()),
        Operation::Put { key, value, .. } => {
            check_len("key", key, MAX_KEY_LEN)?;
            if value.len() > MAX_VALUE_LEN {
                return Err(format!(
                    "the value is {} bytes; at most {MAX_VALUE_LEN} are allowed",
                    value.len()
                ));
            }
            Ok(())
        }
        Operation::Delete { key, .. } => check_len("key", key, MAX_KEY_LEN),
        Operation::LockAcquire {
            name,
            owner,
            ttl_ms,
        }
        | Operation::LockRenew {
            name,
            owner,
            ttl_ms,
            ..
        } => {
            check_len("lock name", name, MAX_LOCK_NAME_LEN)?;
            check_len("owner", owner, MAX_OWNER_LEN)?;
            check_ttl(*ttl_ms)
        }
        Operation::LockRelease { name, owner, .. } => {
            check_len("lock name", name, MAX_LOCK_NAME_LEN)?;
            check_len("owner", owner, MAX_OWNER_LEN)
        }
    }
}

/// Validates a command before it is proposed: the same checks the state
/// machine applies, so a bad command is refused without a log entry.
pub fn validate_command(cmd: &Command) -> Result<(), String> {
    validate(cmd)
}

fn execute(data: &mut Data, index: u64, cmd: &Command, lock_changed: &mut bool) -> CommandResponse {
    if let Err(reason) = validate(cmd) {
        return CommandResponse::Rejected { reason };
    }
    let now = data.clock_ms;
    match &cmd.op {
        Operation::Noop => CommandResponse::Empty,
        Operation::Put {
            key,
            value,
            expected_revision,
        } => {
            let current = data.kv.get(key).map_or(0, |v| v.revision);
            if expected_revision.is_some_and(|e| e != current) {
                return CommandResponse::RevisionMismatch { current };
            }
            data.kv.insert(
                key.clone(),
                KvValue {
                    value: value.clone(),
                    revision: index,
                },
            );
            CommandResponse::Written { revision: index }
        }
        Operation::Delete {
            key,
            expected_revision,
        } => {
            let current = data.kv.get(key).map_or(0, |v| v.revision);
            if expected_revision.is_some_and(|e| e != current) {
                return CommandResponse::RevisionMismatch { current };
            }
            CommandResponse::Deleted {
                existed: data.kv.remove(key).is_some(),
            }
        }
        Operation::LockAcquire {
            name,
            owner,
            ttl_ms,
        } => {
            if let Some(held) = data.locks.get(name) {
                if held.expires_at_ms > now {
                    return CommandResponse::LockHeld {
                        expires_at_ms: held.expires_at_ms,
                        remaining_ms: held.expires_at_ms - now,
                    };
                }
            }
            let expires_at_ms = now.saturating_add(*ttl_ms);
            data.locks.insert(
                name.clone(),
                LockState {
                    owner: owner.clone(),
                    token: index,
                    expires_at_ms,
                },
            );
            *lock_changed = true;
            CommandResponse::LockGranted {
                token: index,
                expires_at_ms,
            }
        }
        Operation::LockRenew {
            name,
            owner,
            token,
            ttl_ms,
        } => match data.locks.get_mut(name) {
            Some(held)
                if held.token == *token && held.owner == *owner && held.expires_at_ms > now =>
            {
                held.expires_at_ms = now.saturating_add(*ttl_ms);
                CommandResponse::LockGranted {
                    token: *token,
                    expires_at_ms: held.expires_at_ms,
                }
            }
            _ => CommandResponse::LockLost,
        },
        Operation::LockRelease { name, owner, token } => match data.locks.get(name) {
            Some(held)
                if held.token == *token && held.owner == *owner && held.expires_at_ms > now =>
            {
                data.locks.remove(name);
                *lock_changed = true;
                CommandResponse::LockReleased
            }
            _ => CommandResponse::LockLost,
        },
    }
}

fn remember(data: &mut Data, id: &str, response: &CommandResponse, config: &StateMachineConfig) {
    let now = data.clock_ms;
    data.dedup.insert(
        id.to_owned(),
        DedupEntry {
            response: response.clone(),
            at_ms: now,
        },
    );
    data.dedup_order.push_back(id.to_owned());
    let horizon = u64::try_from(config.dedup_horizon.as_millis()).unwrap_or(u64::MAX);
    while let Some(oldest) = data.dedup_order.front() {
        let expired = data
            .dedup
            .get(oldest)
            .is_none_or(|e| now.saturating_sub(e.at_ms) > horizon);
        if expired || data.dedup.len() > config.dedup_max_entries {
            if let Some(oldest) = data.dedup_order.pop_front() {
                data.dedup.remove(&oldest);
            }
        } else {
            break;
        }
    }
}

fn encode_data(data: &Data) -> Result<Vec<u8>, String> {
    postcard::to_stdvec(data).map_err(|e| e.to_string())
}

fn decode_data(bytes: &[u8]) -> Result<Data, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("snapshot data does not decode: {e}"))
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64, op: Operation, time: u64, id: Option<&str>) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1.into()), index),
            payload: EntryPayload::Normal(Command {
                request_id: id.map(str::to_owned),
                leader_time_ms: time,
                op,
            }),
        }
    }

    fn acquire(name: &str, owner: &str, ttl: u64) -> Operation {
        Operation::LockAcquire {
            name: name.into(),
            owner: owner.into(),
            ttl_ms: ttl,
        }
    }

    async fn apply(sm: &mut StateMachineStore, e: Entry) -> CommandResponse {
        sm.apply([e]).await.unwrap().pop().unwrap()
    }

    #[tokio::test]
    async fn locks_are_fenced_and_leases_decided_by_leader_time() {
        let mut sm = StateMachineStore::memory();
        let r = apply(&mut sm, entry(1, 1, acquire("l", "a", 100), 1000, None)).await;
        assert_eq!(
            r,
            CommandResponse::LockGranted {
                token: 1,
                expires_at_ms: 1100
            }
        );
        let r = apply(&mut sm, entry(1, 2, acquire("l", "b", 100), 1050, None)).await;
        assert_eq!(
            r,
            CommandResponse::LockHeld {
                expires_at_ms: 1100,
                remaining_ms: 50
            }
        );
        // Expired by the leader's time: granted to b with a higher token.
        let r = apply(&mut sm, entry(1, 3, acquire("l", "b", 100), 1100, None)).await;
        assert_eq!(
            r,
            CommandResponse::LockGranted {
                token: 3,
                expires_at_ms: 1200
            }
        );
        // a's release now reports lost.
        let r = apply(
            &mut sm,
            entry(
                1,
                4,
                Operation::LockRelease {
                    name: "l".into(),
                    owner: "a".into(),
                    token: 1,
                },
                1110,
                None,
            ),
        )
        .await;
        assert_eq!(r, CommandResponse::LockLost);
    }

    #[tokio::test]
    async fn a_new_term_rebases_leases() {
        let mut sm = StateMachineStore::memory();
        apply(&mut sm, entry(1, 1, acquire("l", "a", 1000), 10_000, None)).await;
        apply(&mut sm, entry(1, 2, Operation::Noop, 10_400, None)).await;
        // New leader whose clock is far ahead: 600 ms of lease remain.
        let r = apply(&mut sm, entry(2, 3, acquire("l", "b", 1000), 50_000, None)).await;
        assert_eq!(
            r,
            CommandResponse::LockHeld {
                expires_at_ms: 50_600,
                remaining_ms: 600
            }
        );
        let r = apply(&mut sm, entry(2, 4, acquire("l", "b", 1000), 50_600, None)).await;
        assert!(matches!(r, CommandResponse::LockGranted { token: 4, .. }));
    }

    #[tokio::test]
    async fn retried_commands_apply_once() {
        let mut sm = StateMachineStore::memory();
        let first = apply(
            &mut sm,
            entry(1, 1, acquire("l", "a", 100), 1000, Some("req-1")),
        )
        .await;
        let retry = apply(
            &mut sm,
            entry(1, 2, acquire("l", "a", 100), 1001, Some("req-1")),
        )
        .await;
        assert_eq!(first, retry);
        assert_eq!(sm.lock("l").0.unwrap().token, 1);
    }

    #[tokio::test]
    async fn dedup_is_bounded_by_horizon_and_size() {
        let config = StateMachineConfig {
            dedup_horizon: Duration::from_secs(1),
            dedup_max_entries: 3,
        };
        let mut sm = StateMachineStore::open(SnapshotStore::memory(), config).unwrap();
        for i in 0..5u64 {
            let id = format!("r{i}");
            apply(
                &mut sm,
                entry(1, i + 1, Operation::Noop, 1000 + i, Some(&id)),
            )
            .await;
        }
        assert_eq!(sm.dedup_len(), 3);
        apply(&mut sm, entry(1, 6, Operation::Noop, 5000, Some("late"))).await;
        assert_eq!(sm.dedup_len(), 1);
    }

    #[tokio::test]
    async fn kv_compare_and_set() {
        let mut sm = StateMachineStore::memory();
        let put = |v: &str, exp| Operation::Put {
            key: "k".into(),
            value: v.into(),
            expected_revision: exp,
        };
        assert_eq!(
            apply(&mut sm, entry(1, 1, put("a", Some(0)), 1, None)).await,
            CommandResponse::Written { revision: 1 }
        );
        assert_eq!(
            apply(&mut sm, entry(1, 2, put("b", Some(0)), 1, None)).await,
            CommandResponse::RevisionMismatch { current: 1 }
        );
        assert_eq!(
            apply(&mut sm, entry(1, 3, put("b", Some(1)), 1, None)).await,
            CommandResponse::Written { revision: 3 }
        );
        assert_eq!(sm.get("k").unwrap().value, b"b");
        let del = Operation::Delete {
            key: "k".into(),
            expected_revision: Some(1),
        };
        assert_eq!(
            apply(&mut sm, entry(1, 4, del, 1, None)).await,
            CommandResponse::RevisionMismatch { current: 3 }
        );
        let big = Operation::Put {
            key: "k".into(),
            value: vec![0; limits::MAX_VALUE_LEN + 1],
            expected_revision: None,
        };
        assert!(matches!(
            apply(&mut sm, entry(1, 5, big, 1, None)).await,
            CommandResponse::Rejected { .. }
        ));
    }

    #[tokio::test]
    async fn snapshot_round_trip_carries_everything() {
        let mut sm = StateMachineStore::memory();
        apply(
            &mut sm,
            entry(1, 1, acquire("l", "a", 100_000), 1000, Some("x")),
        )
        .await;
        apply(
            &mut sm,
            entry(
                1,
                2,
                Operation::Put {
                    key: "k".into(),
                    value: b"v".to_vec(),
                    expected_revision: None,
                },
                1001,
                None,
            ),
        )
        .await;
        let snap = sm.build_snapshot().await.unwrap();
        let mut other = StateMachineStore::memory();
        other
            .install_snapshot(&snap.meta, snap.snapshot)
            .await
            .unwrap();
        assert_eq!(other.get("k").unwrap().revision, 2);
        assert_eq!(other.lock("l").0.unwrap().token, 1);
        assert_eq!(other.dedup_len(), 1);
        assert_eq!(other.last_applied().unwrap().index, 2);
    }
}
