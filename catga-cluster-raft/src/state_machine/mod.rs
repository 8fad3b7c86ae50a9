//! The replicated state machine: a key-value store, fenced locks and the
//! de-duplication table.
//!
//! # Time and leases
//!
//! Lock leases and waiters' deadlines are decided only from the leader's timestamp carried in each
//! command
//! ([`Command::leader_time_ms`](crate::types::Command::leader_time_ms)),
//! never from the clock of the node applying the entry, so every node
//! reaches the same decision. Within a term
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
//! grow strictly, per lock and per key. The commands of one batched entry
//! ([`Operation::Batch`](crate::types::Operation::Batch)) share its index;
//! the node never puts two commands on the same key or the same lock into
//! one batch.
//!
//! # Fair locks
//!
//! Each lock has a holder and a queue of waiters, in the order their
//! [`LockWait`](crate::types::Operation::LockWait) entries were applied.
//! A waiter is one acquire call (an owner and a waiter id), so two calls of
//! one owner wait for each other; asking again with the same id keeps the
//! place. Every lock operation first *settles* the lock at its entry: a
//! lease that has lapsed by the state machine's clock ends, and a free lock
//! goes to the first waiter whose wait (its deadline, by the same clock)
//! has not run out; those whose wait ran out are dropped on the way. A
//! release hands the lock over the same way, so the next waiter holds it
//! from the releasing entry on, with that entry's index as its token. One
//! entry grants a lock at most once, so tokens stay strictly increasing. A
//! plain [`LockAcquire`](crate::types::Operation::LockAcquire) is granted
//! only when nobody holds the lock and nobody waits: it never jumps the
//! queue. [`LockCancel`](crate::types::Operation::LockCancel) takes a
//! waiter out of the queue; a waiter granted before it keeps the lock and
//! is told so. Waiters' deadlines are rebased at a new term like leases.
//!
//! Snapshots carry the queues. Their data opens with a format tag since
//! locks have queues; a snapshot written before (untagged, holders only)
//! still decodes, as locks with empty queues.
//!
//! # De-duplication
//!
//! A command with a request id is applied once; a retry with the same id is
//! answered with the first answer. Entries are dropped from the table once
//! they are older than the configured horizon (by the state machine's clock)
//! or when the table holds more than its maximum, oldest first; a retry that
//! arrives later than that is applied again, so the horizon must exceed the
//! longest time a client retries.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::snapshot_store::SnapshotStore;
use crate::types::{CommandResponse, LogId, StoredMembership};
pub use crate::types::{KvValue, LockState};
use crate::watch::{WatchError, WatchHub, WatchLimits, WatchStream};

mod apply;
mod kv_map;
mod locks;
mod storage;
mod teardown;

pub use apply::validate_command;
use kv_map::KvMap;
pub(crate) use locks::WaiterView;
use locks::{Holder, Lock};

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
    /// Longest time a waiter stays in a lock's queue, in milliseconds (one
    /// day).
    pub const MAX_WAIT_MS: u64 = 24 * 60 * 60 * 1000;
    /// Most waiters queued for one lock; an acquire that finds the queue
    /// full is answered as if it had not waited.
    pub const MAX_LOCK_WAITERS: usize = 4096;
}

/// Settings of the state machine.
#[derive(Debug, Clone)]
pub struct StateMachineConfig {
    /// How long a request id is remembered, by the leader's clock.
    pub dedup_horizon: Duration,
    /// The most request ids remembered. This bounds the table's memory:
    /// an entry takes about 215 bytes with a generated request id (measured
    /// by the `state_memory` example: the id, shared by the table and its
    /// age queue, the answer and their share of the tables' nodes), so the
    /// default of 100,000 holds about 21 MiB. Every write through
    /// [`RaftNode::submit`](crate::RaftNode::submit) carries an id, so
    /// under load the table sits at this bound; it must still cover the
    /// writes of the longest time a client retries.
    pub dedup_max_entries: usize,
    /// The most key events kept for watches to start at a past revision
    /// (see [`watch`](crate::watch)); default 10,000.
    pub watch_history_events: usize,
    /// The most bytes of key events (keys, values and 32 bytes each) kept
    /// for watches; default 16 MiB. The history is cut to both bounds.
    pub watch_history_bytes: usize,
    /// How many revisions a watcher's buffer holds before the watcher is
    /// cut off as too slow; default 1,024.
    pub watch_buffer: usize,
}

impl Default for StateMachineConfig {
    fn default() -> Self {
        StateMachineConfig {
            dedup_horizon: Duration::from_secs(15 * 60),
            dedup_max_entries: 100_000,
            watch_history_events: 10_000,
            watch_history_bytes: 16 * 1024 * 1024,
            watch_buffer: 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DedupEntry {
    response: CommandResponse,
    at_ms: u64,
}

/// Everything the state machine holds; what a snapshot carries.
///
/// The key-value store and the de-duplication table, the parts that grow
/// with the load, are persistent ordered maps and a vector (`imbl`; an
/// ordered map packs small entries much more densely than imbl's hash
/// map: about 215 against 450 bytes per request id; the key-value store is a
/// compact [`KvMap`]): cloning them is
/// O(1) and shares their nodes, so a snapshot copies them under the read
/// lock in no time and encodes the copy while writes go on (a write then
/// copies only the few nodes on its path). They encode as a map and a
/// sequence, like the standard collections they replaced.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Data {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    /// The state machine's clock: leader milliseconds.
    clock_ms: u64,
    /// The term of the last command applied.
    clock_term: u64,
    kv: KvMap,
    locks: BTreeMap<String, Lock>,
    /// By request id. The ids are shared with `dedup_order` (`Arc<str>`
    /// encodes as a string).
    dedup: imbl::OrdMap<Arc<str>, DedupEntry>,
    /// Request ids in the order they were recorded, for pruning.
    dedup_order: imbl::Vector<Arc<str>>,
    /// When each key with a time to live expires, by the state machine's
    /// clock ([`Operation::PutTtl`](crate::types::Operation::PutTtl)).
    expiries: imbl::OrdMap<String, u64>,
    /// The same, by expiry, for the sweep at every command.
    expiring: imbl::OrdSet<(u64, String)>,
}

impl Data {
    /// Sets (or with `None` clears) a key's expiry.
    fn set_expiry(&mut self, key: &str, at: Option<u64>) {
        if let Some(old) = self.expiries.remove(key) {
            self.expiring.remove(&(old, key.to_owned()));
        }
        if let Some(at) = at {
            self.expiries.insert(key.to_owned(), at);
            self.expiring.insert((at, key.to_owned()));
        }
    }

    /// Moves every expiry by the time a new term starts: the time a key
    /// had left at `old_now` counts again from `new_now`, as lock leases
    /// do.
    fn rebase_expiries(&mut self, old_now: u64, new_now: u64) {
        if self.expiries.is_empty() {
            return;
        }
        let rebased: Vec<(String, u64)> = self
            .expiries
            .iter()
            .map(|(k, at)| {
                (
                    k.clone(),
                    new_now.saturating_add(at.saturating_sub(old_now)),
                )
            })
            .collect();
        self.expiries = imbl::OrdMap::new();
        self.expiring = imbl::OrdSet::new();
        for (key, at) in rebased {
            self.set_expiry(&key, Some(at));
        }
    }
}

/// [`Data`] as snapshots of format 2 held it, before keys had a time to
/// live.
#[derive(Deserialize)]
struct DataV2 {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    clock_ms: u64,
    clock_term: u64,
    kv: KvMap,
    locks: BTreeMap<String, Lock>,
    dedup: imbl::OrdMap<Arc<str>, DedupEntry>,
    dedup_order: imbl::Vector<Arc<str>>,
}

impl From<DataV2> for Data {
    fn from(old: DataV2) -> Data {
        Data {
            last_applied: old.last_applied,
            membership: old.membership,
            clock_ms: old.clock_ms,
            clock_term: old.clock_term,
            kv: old.kv,
            locks: old.locks,
            dedup: old.dedup,
            dedup_order: old.dedup_order,
            expiries: imbl::OrdMap::new(),
            expiring: imbl::OrdSet::new(),
        }
    }
}

/// [`Data`] as snapshots held it before locks had queues.
#[derive(Deserialize)]
struct LegacyData {
    last_applied: Option<LogId>,
    membership: StoredMembership,
    clock_ms: u64,
    clock_term: u64,
    // The same encodings as the fields of `Data` they become.
    kv: KvMap,
    locks: BTreeMap<String, LockState>,
    dedup: imbl::OrdMap<Arc<str>, DedupEntry>,
    dedup_order: imbl::Vector<Arc<str>>,
}

impl From<LegacyData> for Data {
    fn from(old: LegacyData) -> Data {
        let locks = old
            .locks
            .into_iter()
            .map(|(name, state)| {
                let holder = Holder {
                    owner: state.owner,
                    token: state.token,
                    expires_at_ms: state.expires_at_ms,
                    waiter: None,
                };
                let lock = Lock {
                    holder: Some(holder),
                    waiters: VecDeque::new(),
                };
                (name, lock)
            })
            .collect();
        // The rest is what format 2 held.
        Data::from(DataV2 {
            last_applied: old.last_applied,
            membership: old.membership,
            clock_ms: old.clock_ms,
            clock_term: old.clock_term,
            kv: old.kv,
            locks,
            dedup: old.dedup,
            dedup_order: old.dedup_order,
        })
    }
}

/// What changed in the last batch, for waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Applied {
    /// The last applied log index.
    pub index: u64,
    /// Increases whenever a lock is granted, renewed, released, expires or
    /// changes hands, and whenever a waiter leaves a lock's queue.
    pub lock_changes: u64,
}

struct Shared {
    data: RwLock<Data>,
    /// The latest snapshot lives only here (on disk, in the durable
    /// flavour): it is read back when a follower needs it, not kept in
    /// memory beside the state it encodes.
    snapshots: SnapshotStore,
    applied: watch::Sender<Applied>,
    /// The history of key events and the watchers.
    watches: WatchHub,
    config: StateMachineConfig,
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
        match snapshots.load() {
            Ok(Some((_, bytes))) => {
                data = decode_data(&bytes).map_err(StateMachineError::Snapshot)?;
                tracing::info!(
                    target: "catga_cluster::raft::state_machine",
                    last_applied = ?data.last_applied,
                    keys = data.kv.len(),
                    locks = data.locks.len(),
                    "state machine restored from snapshot"
                );
            }
            Ok(None) => {}
            Err(e) => return Err(StateMachineError::Snapshot(e.to_string())),
        }
        let index = data.last_applied.map_or(0, |l| l.index);
        let (applied, _) = watch::channel(Applied {
            index,
            lock_changes: 0,
        });
        let watches = WatchHub::new(
            index,
            WatchLimits {
                history_events: config.watch_history_events,
                history_bytes: config.watch_history_bytes,
                buffer: config.watch_buffer,
            },
        );
        Ok(StateMachineStore {
            shared: Arc::new(Shared {
                data: RwLock::new(data),
                snapshots,
                applied,
                watches,
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
        self.read().kv.get(key)
    }

    /// The keys starting with `prefix`, in order, at most `limit`.
    pub fn list(&self, prefix: &str, limit: usize) -> Vec<(String, KvValue)> {
        self.read().kv.list(prefix, limit)
    }

    /// [`list`](Self::list), with the last index applied when it was read.
    pub fn list_at_revision(&self, prefix: &str, limit: usize) -> (Vec<(String, KvValue)>, u64) {
        let data = self.read();
        let index = data.last_applied.map_or(0, |l| l.index);
        (data.kv.list(prefix, limit), index)
    }

    /// A lock's state as applied locally, with its expiry on the state
    /// machine's clock, and that clock.
    pub fn lock(&self, name: &str) -> (Option<LockState>, u64) {
        let data = self.read();
        (data.locks.get(name).and_then(Lock::state), data.clock_ms)
    }

    /// The owners queued for lock `name`, in the order they will be granted
    /// it, as applied locally. Waiters whose wait has run out stay listed
    /// until an entry that touches the lock drops them.
    pub fn lock_queue(&self, name: &str) -> Vec<String> {
        self.read().locks.get(name).map_or_else(Vec::new, |l| {
            l.waiters.iter().map(|w| w.owner.clone()).collect()
        })
    }

    /// Where waiter `(owner, waiter)` of lock `name` stands as applied
    /// locally, with the state machine's clock and the last applied index.
    pub(crate) fn lock_waiter(
        &self,
        name: &str,
        owner: &str,
        waiter: u64,
    ) -> (WaiterView, u64, u64) {
        let data = self.read();
        let view = data
            .locks
            .get(name)
            .map_or(WaiterView::Absent, |l| l.view(owner, waiter));
        let index = data.last_applied.map_or(0, |l| l.index);
        (view, data.clock_ms, index)
    }

    /// Watches the keys under `prefix` as applied locally, from revision
    /// `from` (inclusive) or after the last entry applied; see
    /// [`RaftNode::watch`](crate::RaftNode::watch), which starts from a
    /// linearizable point.
    pub fn watch(&self, prefix: &str, from: Option<u64>) -> Result<WatchStream, WatchError> {
        self.shared.watches.watch(prefix, from)
    }

    /// Ends every watch (their streams end without an error), when the node
    /// stops. Watches started afterwards run until the state machine is
    /// dropped.
    pub fn close_watches(&self) {
        self.shared.watches.close();
    }

    /// The oldest revision a watch can start at on this node.
    pub fn watch_oldest_revision(&self) -> u64 {
        self.shared.watches.oldest()
    }

    /// The earliest expiry of a key with a time to live, by the state
    /// machine's clock, with that clock.
    pub fn next_expiry(&self) -> (Option<u64>, u64) {
        let data = self.read();
        (data.expiring.get_min().map(|(at, _)| *at), data.clock_ms)
    }

    /// When key `key` expires by the state machine's clock, if it has a
    /// time to live.
    pub fn expiry(&self, key: &str) -> Option<u64> {
        self.read().expiries.get(key).copied()
    }

    /// How many request ids the de-duplication table holds.
    pub fn dedup_len(&self) -> usize {
        self.read().dedup.len()
    }
}

/// The tag that opens snapshot data since locks have queues: the format's
/// version, after a byte that no untagged snapshot starts with (those open
/// with the tag of an `Option`, 0 or 1).
const SNAPSHOT_FORMAT: [u8; 2] = [0xca, 3];

/// The tag of the format before keys had a time to live.
const SNAPSHOT_FORMAT_V2: [u8; 2] = [0xca, 2];

/// Writes the state for a snapshot to `out` as it encodes it:
/// [`SNAPSHOT_FORMAT`], then the state. Fed to
/// [`SnapshotStore::save_with`], no copy of the encoded state is held in
/// memory.
fn write_data(data: &Data, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    out.write_all(&SNAPSHOT_FORMAT)?;
    postcard::to_io(data, out)
        .map(drop)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The state encoded for a snapshot, in memory.
#[cfg(test)]
fn encode_data(data: &Data) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    write_data(data, &mut bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Decodes the state from a snapshot, of this format or of the untagged
/// one written before locks had queues.
fn decode_data(bytes: &[u8]) -> Result<Data, String> {
    let decoded = if let Some(rest) = bytes.strip_prefix(&SNAPSHOT_FORMAT) {
        postcard::from_bytes::<Data>(rest)
    } else if let Some(rest) = bytes.strip_prefix(&SNAPSHOT_FORMAT_V2) {
        postcard::from_bytes::<DataV2>(rest).map(Data::from)
    } else {
        postcard::from_bytes::<LegacyData>(bytes).map(Data::from)
    };
    decoded.map_err(|e| format!("snapshot data does not decode: {e}"))
}

#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod tests;
