//! Group commit: the proposal batcher between [`RaftNode::write`] and
//! openraft.
//!
//! openraft 0.9 gives every `client_write` a log entry of its own, and its
//! core appends each entry and waits for the log store to make it durable
//! before it handles the next message (`RaftCore::append_to_log` awaits the
//! `LogFlushed` callback). Concurrent writes therefore never share an
//! `fdatasync` on the leader, however the store schedules its flushes: one
//! write costs one entry, one flush and one pass through the core.
//!
//! The batcher groups writes one level up. Every write goes through one
//! queue; a task takes from it everything that has arrived, up to
//! [`BatchOptions::max_commands`] and [`BatchOptions::max_bytes`], and
//! proposes it as a single entry ([`Operation::Batch`]) that the state
//! machine applies command by command. Nothing waits for a batch to fill:
//! a write that finds the pipeline free goes out at once, alone, as before;
//! writes that arrive while [`BatchOptions::max_in_flight`] batches are
//! being replicated queue up and leave together with the next one. So the
//! batch size follows the load, one client sees no added delay, and at 64
//! clients one append, one flush, one replication message and one apply
//! call carry many writes.
//!
//! Two commands on the same key, or on the same lock, never share a batch:
//! the second one closes the batch and opens the next, so the revision of a
//! key and the fencing token of a lock (the index of the entry that wrote or
//! granted it) still grow strictly per key and per lock, and the queue keeps
//! its order.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use catga_cluster_core::NodeId;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::wall_clock_ms;
use crate::types::{Command, CommandResponse, Operation, Raft};

/// How the node groups concurrent writes into log entries (group commit;
/// see [`NodeOptions::batching`](crate::NodeOptions::batching)).
///
/// ```
/// use catga_cluster_raft::{BatchOptions, NodeOptions};
///
/// // One write per log entry, as without a batcher (for comparisons).
/// let options = NodeOptions::default().batching(BatchOptions::default().max_commands(1));
/// assert_eq!(options.batching.max_commands, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BatchOptions {
    /// The most writes one log entry carries. `1` turns batching off.
    /// Default: 256.
    pub max_commands: usize,
    /// A batch is closed once its writes (keys, values, names and request
    /// ids) reach this many bytes; a single larger write still goes alone.
    /// This bounds the size of a log entry, of a replication message and of
    /// what the log keeps in memory per entry. Default: 256 KiB.
    pub max_bytes: usize,
    /// How many batches may be proposed and not yet answered at once. While
    /// they are, new writes wait in the queue and leave together. Default: 2.
    pub max_in_flight: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        BatchOptions {
            max_commands: 256,
            max_bytes: 256 * 1024,
            max_in_flight: 2,
        }
    }
}

impl BatchOptions {
    /// Sets [`max_commands`](BatchOptions::max_commands) (at least 1).
    pub fn max_commands(mut self, commands: usize) -> Self {
        self.max_commands = commands.max(1);
        self
    }

    /// Sets [`max_bytes`](BatchOptions::max_bytes).
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// Sets [`max_in_flight`](BatchOptions::max_in_flight) (at least 1).
    pub fn max_in_flight(mut self, batches: usize) -> Self {
        self.max_in_flight = batches.max(1);
        self
    }
}

/// What a write gets back: the state machine's answer, or openraft's error.
pub(crate) type Outcome =
    Result<CommandResponse, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

struct Pending {
    command: Command,
    reply: oneshot::Sender<Outcome>,
}

/// The sending side of the batcher; the task ends when this is dropped or
/// the node shuts down.
#[derive(Debug)]
pub(crate) struct Proposer {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Proposer {
    /// Starts the batcher task for `raft`.
    pub(crate) fn start(raft: Raft, options: BatchOptions, shutdown: CancellationToken) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(raft, options, rx, shutdown));
        Proposer { queue }
    }

    /// Queues `command`; the receiver answers once it is applied (or
    /// refused). A receiver dropped before its command was proposed (the
    /// caller's deadline passed) withdraws the command.
    pub(crate) fn propose(&self, command: Command) -> oneshot::Receiver<Outcome> {
        let (reply, rx) = oneshot::channel();
        // A closed queue drops `reply`: the caller sees the node stopped.
        let _ = self.queue.send(Pending { command, reply });
        rx
    }
}

/// What a command touches that another in the same batch must not.
fn conflict_key(state: &impl BuildHasher, op: &Operation) -> Option<u64> {
    let (space, name) = match op {
        Operation::Put { key, .. } | Operation::Delete { key, .. } => (0u8, key),
        Operation::LockAcquire { name, .. }
        | Operation::LockRenew { name, .. }
        | Operation::LockRelease { name, .. } => (1u8, name),
        _ => return None,
    };
    // A hash collision only closes a batch early.
    let mut h = state.build_hasher();
    space.hash(&mut h);
    name.hash(&mut h);
    Some(h.finish())
}

/// A batch being formed.
#[derive(Default)]
struct Batch {
    items: Vec<Pending>,
    bytes: usize,
}

impl Batch {
    fn add(&mut self, p: Pending, hasher: &impl BuildHasher, touched: &mut HashSet<u64>) {
        if p.reply.is_closed() {
            // Its caller gave up before it was proposed: never propose it.
            return;
        }
        self.bytes += p.command.approx_size();
        if let Some(k) = conflict_key(hasher, &p.command.op) {
            touched.insert(k);
        }
        self.items.push(p);
    }
}

async fn run(
    raft: Raft,
    options: BatchOptions,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
    let hasher = std::collections::hash_map::RandomState::new();
    let mut touched: HashSet<u64> = HashSet::new();
    let mut carried: Option<Pending> = None;
    loop {
        let first = match carried.take() {
            Some(p) => p,
            None => tokio::select! {
                p = rx.recv() => match p { Some(p) => p, None => return },
                () = shutdown.cancelled() => return,
            },
        };
        // Wait for a free slot; writes queue up meanwhile and join this batch.
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => match s { Ok(s) => s, Err(_) => return },
            () = shutdown.cancelled() => return,
        };
        let mut batch = Batch::default();
        touched.clear();
        batch.add(first, &hasher, &mut touched);
        while batch.items.len() < options.max_commands && batch.bytes < options.max_bytes {
            let Ok(p) = rx.try_recv() else { break };
            let conflict =
                conflict_key(&hasher, &p.command.op).is_some_and(|k| touched.contains(&k));
            let too_big = !batch.items.is_empty()
                && batch.bytes + p.command.approx_size() > options.max_bytes;
            if conflict || too_big {
                carried = Some(p);
                break;
            }
            batch.add(p, &hasher, &mut touched);
        }
        let batch = batch.items;
        if batch.is_empty() {
            continue;
        }
        propose(&raft, batch, slot).await;
    }
}

/// Hands one batch to openraft (in queue order) and answers its writes from
/// a task of its own once the entry is applied.
async fn propose(raft: &Raft, mut batch: Vec<Pending>, slot: OwnedSemaphorePermit) {
    let (command, replies) = if batch.len() == 1 {
        let Pending { command, reply } = batch.remove(0);
        (command, Replies::One(reply))
    } else {
        let mut commands = Vec::with_capacity(batch.len());
        let mut replies = Vec::with_capacity(batch.len());
        for Pending { command, reply } in batch {
            commands.push(command);
            replies.push(reply);
        }
        let command = Command {
            request_id: None,
            leader_time_ms: wall_clock_ms(),
            op: Operation::Batch(commands),
        };
        (command, Replies::Many(replies))
    };
    let answer = match raft.client_write_ff(command).await {
        Ok(answer) => answer,
        Err(fatal) => {
            replies.fail(&RaftError::Fatal(fatal));
            return;
        }
    };
    let raft = raft.clone();
    tokio::spawn(async move {
        let outcome = match answer.await {
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(e)) => Err(RaftError::APIError(e)),
            Err(_) => {
                // The core stopped before it answered: report why.
                let fatal = match &raft.metrics().borrow().running_state {
                    Err(fatal) => fatal.clone(),
                    Ok(()) => Fatal::Stopped,
                };
                Err(RaftError::Fatal(fatal))
            }
        };
        drop(slot);
        replies.answer(outcome);
    });
}

enum Replies {
    One(oneshot::Sender<Outcome>),
    Many(Vec<oneshot::Sender<Outcome>>),
}

impl Replies {
    fn fail(self, error: &RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) {
        match self {
            Replies::One(r) => {
                let _ = r.send(Err(error.clone()));
            }
            Replies::Many(rs) => {
                for r in rs {
                    let _ = r.send(Err(error.clone()));
                }
            }
        }
    }

    fn answer(self, outcome: Outcome) {
        match (self, outcome) {
            (Replies::One(r), outcome) => {
                let _ = r.send(outcome);
            }
            (Replies::Many(rs), Ok(CommandResponse::Batch(answers)))
                if answers.len() == rs.len() =>
            {
                for (r, a) in rs.into_iter().zip(answers) {
                    let _ = r.send(Ok(a));
                }
            }
            (replies @ Replies::Many(_), Ok(other)) => {
                // Cannot happen: the state machine answers a batch with one
                // answer per command.
                tracing::error!(
                    target: super::TARGET,
                    answer = ?other,
                    "a batch was answered with something other than one answer per command"
                );
                replies.fail(&RaftError::Fatal(Fatal::Panicked));
            }
            (replies @ Replies::Many(_), Err(e)) => replies.fail(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(key: &str) -> Operation {
        Operation::Put {
            key: key.into(),
            value: vec![0; 10],
            expected_revision: None,
        }
    }

    #[test]
    fn keys_and_locks_conflict_only_within_their_kind() {
        let s = std::collections::hash_map::RandomState::new();
        let lock = |name: &str| Operation::LockRelease {
            name: name.into(),
            owner: "o".into(),
            token: 1,
        };
        assert_eq!(conflict_key(&s, &put("a")), conflict_key(&s, &put("a")));
        assert_eq!(
            conflict_key(&s, &put("a")),
            conflict_key(
                &s,
                &Operation::Delete {
                    key: "a".into(),
                    expected_revision: None
                }
            )
        );
        assert_ne!(conflict_key(&s, &put("a")), conflict_key(&s, &put("b")));
        assert_ne!(conflict_key(&s, &put("a")), conflict_key(&s, &lock("a")));
        assert_eq!(conflict_key(&s, &lock("a")), conflict_key(&s, &lock("a")));
        assert_eq!(conflict_key(&s, &Operation::Noop), None);
    }

    #[test]
    fn options_keep_at_least_one() {
        let o = BatchOptions::default().max_commands(0).max_in_flight(0);
        assert_eq!((o.max_commands, o.max_in_flight), (1, 1));
    }
}
