//! The Raft type configuration and the commands replicated through the log.
//!
//! Every entry of the log carries a [`Command`]: the operation, the time the
//! leader stamped on it (lease expiry is decided from that stamp, never from
//! a follower's clock) and an optional request id that makes a retried
//! command apply once. The plain values the state machine holds and hands
//! out ([`KvValue`], [`LockState`]) are here too, so that what crosses the
//! wire names no state-machine logic.

use std::io::Cursor;

use catga_cluster_core::NodeId;
use serde::{Deserialize, Serialize};

openraft::declare_raft_types!(
    /// The openraft type configuration of catga-cluster.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A log entry of this cluster.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id of this cluster.
pub type LogId = openraft::LogId<NodeId>;
/// A vote of this cluster.
pub type Vote = openraft::Vote<NodeId>;
/// A storage error of this cluster.
pub type StorageError = openraft::StorageError<NodeId>;
/// The membership as stored with the state machine.
pub type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;
/// A snapshot's metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, openraft::BasicNode>;
/// The openraft handle.
pub type Raft = openraft::Raft<TypeConfig>;

/// A command replicated through the Raft log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The client's request id: a retried command with the same id is applied
    /// once and answered with the first answer.
    pub request_id: Option<String>,
    /// Milliseconds since the Unix epoch on the leader's clock when it
    /// proposed the command.
    pub leader_time_ms: u64,
    /// What to do.
    pub op: Operation,
}

impl Command {
    /// About how many bytes the command holds (its strings and values plus
    /// a fixed overhead): what the proposal batcher and the log's memory
    /// cache count against their bounds.
    pub(crate) fn approx_size(&self) -> usize {
        self.op.approx_size() + self.request_id.as_ref().map_or(0, String::len) + 64
    }

    /// A command without a request id.
    pub fn new(op: Operation, leader_time_ms: u64) -> Self {
        Command {
            request_id: None,
            leader_time_ms,
            op,
        }
    }
}

/// The operations of the replicated state machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Operation {
    /// Does nothing; commits a barrier.
    Noop,
    /// Writes a key, optionally only if its revision matches (`Some(0)`: only
    /// if absent).
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Compare-and-set: the revision the key must have.
        expected_revision: Option<u64>,
    },
    /// Deletes a key, optionally only if its revision matches.
    Delete {
        /// The key.
        key: String,
        /// Compare-and-set: the revision the key must have.
        expected_revision: Option<u64>,
    },
    /// Takes a lock for `owner` if it is free (or its lease lapsed) and no
    /// waiter is queued for it; never queues the caller.
    LockAcquire {
        /// The lock's name.
        name: String,
        /// Who asks.
        owner: String,
        /// The lease, in milliseconds.
        ttl_ms: u64,
    },
    /// Extends the lease of a held lock.
    LockRenew {
        /// The lock's name.
        name: String,
        /// The holder.
        owner: String,
        /// The holder's fencing token.
        token: u64,
        /// The new lease, in milliseconds from the command's time.
        ttl_ms: u64,
    },
    /// Releases a held lock, handing it to the first waiter in its queue
    /// (in the same entry: the waiter's token is this entry's index).
    LockRelease {
        /// The lock's name.
        name: String,
        /// The holder.
        owner: String,
        /// The holder's fencing token.
        token: u64,
    },
    /// Takes a lock for `owner` if it is free, or queues the caller behind
    /// the waiters already there for up to `wait_ms` (by the leader's
    /// clock). A waiter already in the queue keeps its place: proposing this
    /// again is how a waiter makes a lapsed lease end.
    LockWait {
        /// The lock's name.
        name: String,
        /// Who asks.
        owner: String,
        /// The caller's waiter id, unique among its owner's calls: two
        /// calls of one owner are two waiters.
        waiter: u64,
        /// The lease, in milliseconds from the grant.
        ttl_ms: u64,
        /// How long the waiter stays in the queue, in milliseconds from this
        /// command's time; 0: never queued.
        wait_ms: u64,
    },
    /// Takes a waiter out of a lock's queue. A waiter that was granted the
    /// lock already keeps it: the answer says so.
    LockCancel {
        /// The lock's name.
        name: String,
        /// The waiter's owner.
        owner: String,
        /// The waiter id of [`Operation::LockWait`].
        waiter: u64,
    },
    /// Several commands at once.
    ///
    /// In a log entry: applied in order as if each had an entry of its own,
    /// except that they share the entry's index (the revision of every key
    /// they write and the token of every lock they grant). The node's
    /// proposal batcher builds these (group commit, see
    /// [`BatchOptions`](crate::BatchOptions)) from commands that touch
    /// distinct keys and distinct locks, so revisions and tokens still grow
    /// strictly per key and per lock; a batch inside a batch is rejected.
    ///
    /// Given to [`RaftNode::write`](crate::RaftNode::write) (what a follower
    /// forwards when it has several writes for the leader): each command is
    /// written on its own, concurrently, and regrouped by the batcher.
    Batch(Vec<Command>),
    /// Writes a key that expires `ttl_ms` after this command's time, by the
    /// state machine's clock (the leader's, like lock leases). A later
    /// write of the key sets its expiry again (a plain
    /// [`Put`](Operation::Put) makes it permanent). The expiry is a delete,
    /// applied by the first entry whose time reaches it; the leader
    /// proposes an empty command then if nothing else comes.
    PutTtl {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// Compare-and-set: the revision the key must have (0: absent).
        expected_revision: Option<u64>,
        /// How long the key lives, in milliseconds (1 ms to one day).
        ttl_ms: u64,
    },
}

impl Operation {
    /// About how many bytes the operation holds (see
    /// [`Command::approx_size`]).
    pub(crate) fn approx_size(&self) -> usize {
        match self {
            Operation::Noop => 0,
            Operation::Put { key, value, .. } | Operation::PutTtl { key, value, .. } => {
                key.len() + value.len()
            }
            Operation::Delete { key, .. } => key.len(),
            Operation::LockAcquire { name, owner, .. }
            | Operation::LockRenew { name, owner, .. }
            | Operation::LockRelease { name, owner, .. }
            | Operation::LockWait { name, owner, .. }
            | Operation::LockCancel { name, owner, .. } => name.len() + owner.len(),
            Operation::Batch(commands) => commands.iter().map(Command::approx_size).sum(),
        }
    }
}

/// A value of the key-value store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvValue {
    /// The value's bytes.
    pub value: Vec<u8>,
    /// The log index of the write that set it.
    pub revision: u64,
}

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockState {
    /// The holder.
    pub owner: String,
    /// The fencing token of the grant.
    pub token: u64,
    /// When the lease ends, on the state machine's clock.
    pub expires_at_ms: u64,
}

/// The answer of the state machine to one log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum CommandResponse {
    /// Blank, membership and no-op entries.
    Empty,
    /// A key was written; its new revision.
    Written {
        /// The revision of the key after the write.
        revision: u64,
    },
    /// A key was deleted (`existed`: whether it was there).
    Deleted {
        /// Whether the key existed.
        existed: bool,
    },
    /// A compare-and-set did not match.
    RevisionMismatch {
        /// The key's current revision (0: absent).
        current: u64,
    },
    /// The lock was granted or renewed.
    LockGranted {
        /// The fencing token: the log index of the granting entry.
        token: u64,
        /// When the lease ends, in leader milliseconds since the Unix epoch.
        expires_at_ms: u64,
    },
    /// The lock is held by someone else until `expires_at_ms`.
    LockHeld {
        /// When the holder's lease ends.
        expires_at_ms: u64,
        /// How much of the holder's lease was left when the command applied.
        remaining_ms: u64,
    },
    /// The lock was released.
    LockReleased,
    /// The token no longer holds the lock.
    LockLost,
    /// The command was rejected as invalid.
    Rejected {
        /// Why.
        reason: String,
    },
    /// The caller waits in the lock's queue.
    LockQueued {
        /// How many waiters are ahead of the caller.
        ahead: u64,
        /// When the holder's lease ends, in leader milliseconds since the
        /// Unix epoch.
        expires_at_ms: u64,
        /// How much of the holder's lease was left when the command applied.
        remaining_ms: u64,
        /// The log index of the entry that answered: a node that has applied
        /// it shows the caller in the queue (or holding the lock).
        index: u64,
    },
    /// The waiter left the queue (or was not in it) without the lock.
    LockCancelled {
        /// How much of the holder's lease was left (0: the lock is free).
        remaining_ms: u64,
    },
    /// The answers to the commands of an [`Operation::Batch`], in order.
    Batch(Vec<CommandResponse>),
}

impl CommandResponse {
    /// The error for an answer the caller did not expect: `Rejected` is an
    /// invalid request, anything else a failure naming the answer.
    pub fn into_unexpected(self) -> catga_cluster_core::ClusterError {
        match self {
            CommandResponse::Rejected { reason } => {
                catga_cluster_core::ClusterError::InvalidRequest(reason)
            }
            other => catga_cluster_core::ClusterError::Other(
                format!("unexpected answer {other:?}").into(),
            ),
        }
    }
}
