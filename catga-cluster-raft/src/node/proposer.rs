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
//! a write that finds the queue empty and a slot free goes to openraft at
//! once, alone, from its own task (no hop through the batcher, no task
//! spawned); writes that arrive while [`BatchOptions::max_in_flight`]
//! batches are being replicated queue up and leave together with the next
//! one (one task per batch answers them). So the
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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use catga_cluster_core::NodeId;
use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::BasicNode;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::wall_clock_ms;
use crate::types::{Command, CommandResponse, Operation, Raft, TypeConfig};

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

/// What a write gets back: the state machine's answer, or why not.
pub(crate) type Outcome = Result<CommandResponse, ProposeError>;

/// Why a proposal has no answer from the state machine.
#[derive(Debug, Clone)]
pub(crate) enum ProposeError {
    /// openraft refused the proposal, or failed before its core took it:
    /// it was not applied.
    Raft(Box<RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>),
    /// The core took the proposal and stopped (or failed) before it
    /// answered: the entry may have reached followers and may still be
    /// committed by the next leader, so the outcome is unknown.
    Unanswered,
}

impl ProposeError {
    fn raft(e: RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>) -> Self {
        ProposeError::Raft(Box::new(e))
    }
}

/// openraft's answer to one proposal, still to come.
type Ticket =
    oneshot::Receiver<Result<ClientWriteResponse<TypeConfig>, ClientWriteError<NodeId, BasicNode>>>;

/// What the batcher hands back to a queued write.
enum Answer {
    /// The write's answer (it shared an entry with others).
    Done(Outcome),
    /// The write went alone: its caller awaits openraft's answer itself,
    /// holding the in-flight slot, so no task is spawned for it.
    Alone(Ticket, OwnedSemaphorePermit),
}

struct Pending {
    command: Command,
    reply: oneshot::Sender<Answer>,
}

/// The batcher: the queue every write goes through, and the slots of the
/// batches in flight. Its task ends when this is dropped or the node shuts
/// down.
pub(crate) struct Proposer {
    raft: Raft,
    queue: mpsc::UnboundedSender<Pending>,
    /// Writes queued and not yet taken by the task.
    queued: Arc<AtomicUsize>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Proposer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proposer")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("free_slots", &self.slots.available_permits())
            .finish_non_exhaustive()
    }
}

impl Proposer {
    /// Starts the batcher task for `raft`.
    pub(crate) fn start(raft: Raft, options: BatchOptions, shutdown: CancellationToken) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let slots = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
        let task = Batcher {
            raft: raft.clone(),
            options,
            rx,
            queued: Arc::clone(&queued),
            slots: Arc::clone(&slots),
        };
        tokio::spawn(task.run(shutdown));
        Proposer {
            raft,
            queue,
            queued,
            slots,
        }
    }

    /// Proposes `command` and waits until it is applied (or refused).
    ///
    /// With nothing queued and a slot free, the write goes to openraft from
    /// here, alone; otherwise it queues for the next batch. Dropping the
    /// future before the command was proposed (the caller's deadline passed)
    /// withdraws it.
    pub(crate) async fn propose(&self, command: Command) -> Outcome {
        if self.queued.load(Ordering::Acquire) == 0 {
            if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
                return match self.raft.client_write_ff(command).await {
                    Ok(ticket) => settle(&self.raft, ticket, slot).await,
                    Err(fatal) => Err(ProposeError::raft(RaftError::Fatal(fatal))),
                };
            }
        }
        let (reply, answer) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.queue.send(Pending { command, reply }).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(ProposeError::raft(RaftError::Fatal(Fatal::Stopped)));
        }
        match answer.await {
            Ok(Answer::Done(outcome)) => outcome,
            Ok(Answer::Alone(ticket, slot)) => settle(&self.raft, ticket, slot).await,
            // The batcher stopped with the node, before it proposed this.
            Err(_) => Err(ProposeError::raft(RaftError::Fatal(Fatal::Stopped))),
        }
    }
}

/// Waits for openraft's answer to one proposal, then frees its slot.
async fn settle(raft: &Raft, ticket: Ticket, slot: OwnedSemaphorePermit) -> Outcome {
    let outcome = match ticket.await {
        Ok(Ok(response)) => Ok(response.data),
        Ok(Err(e)) => Err(ProposeError::raft(RaftError::APIError(e))),
        Err(_) => {
            // The core stopped after it took the proposal and before it
            // answered: the entry may still commit elsewhere.
            if let Err(fatal) = &raft.metrics().borrow().running_state {
                tracing::debug!(target: super::TARGET, error = %fatal, "Raft stopped before it answered a write");
            }
            Err(ProposeError::Unanswered)
        }
    };
    drop(slot);
    outcome
}

/// What a command touches that another in the same batch must not.
fn conflict_key(state: &impl BuildHasher, op: &Operation) -> Option<u64> {
    let (space, name) = match op {
        Operation::Put { key, .. }
        | Operation::PutTtl { key, .. }
        | Operation::Delete { key, .. } => (0u8, key),
        Operation::LockAcquire { name, .. }
        | Operation::LockRenew { name, .. }
        | Operation::LockRelease { name, .. }
        | Operation::LockWait { name, .. }
        | Operation::LockCancel { name, .. } => (1u8, name),
        // Every operation that touches a key or a lock is named above (no
        // catch-all: a new one must say what it touches).
        Operation::Noop | Operation::Batch(_) => return None,
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

/// The task that forms and proposes batches.
struct Batcher {
    raft: Raft,
    options: BatchOptions,
    rx: mpsc::UnboundedReceiver<Pending>,
    queued: Arc<AtomicUsize>,
    slots: Arc<Semaphore>,
}

impl Batcher {
    fn next(&mut self, p: Pending) -> Pending {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        p
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let hasher = std::collections::hash_map::RandomState::new();
        let mut touched: HashSet<u64> = HashSet::new();
        let mut carried: Option<Pending> = None;
        loop {
            let first = match carried.take() {
                Some(p) => p,
                None => tokio::select! {
                    p = self.rx.recv() => match p { Some(p) => self.next(p), None => return },
                    () = shutdown.cancelled() => return,
                },
            };
            // Wait for a free slot; writes queue up meanwhile and join this
            // batch.
            let slot = tokio::select! {
                s = Arc::clone(&self.slots).acquire_owned() => match s { Ok(s) => s, Err(_) => return },
                () = shutdown.cancelled() => return,
            };
            let mut batch = Batch::default();
            touched.clear();
            batch.add(first, &hasher, &mut touched);
            while batch.items.len() < self.options.max_commands
                && batch.bytes < self.options.max_bytes
            {
                let Ok(p) = self.rx.try_recv() else { break };
                let p = self.next(p);
                let conflict =
                    conflict_key(&hasher, &p.command.op).is_some_and(|k| touched.contains(&k));
                let too_big = !batch.items.is_empty()
                    && batch.bytes + p.command.approx_size() > self.options.max_bytes;
                if conflict || too_big {
                    carried = Some(p);
                    break;
                }
                batch.add(p, &hasher, &mut touched);
            }
            if !batch.items.is_empty() {
                propose(&self.raft, batch.items, slot).await;
            }
        }
    }
}

/// Hands one batch to openraft (in queue order). A write alone gets
/// openraft's answer to await itself; a batch's writes are answered from a
/// task of the batch once its entry is applied.
async fn propose(raft: &Raft, mut batch: Vec<Pending>, slot: OwnedSemaphorePermit) {
    if batch.len() == 1 {
        let Pending { command, reply } = batch.remove(0);
        let answer = match raft.client_write_ff(command).await {
            Ok(ticket) => Answer::Alone(ticket, slot),
            Err(fatal) => Answer::Done(Err(ProposeError::raft(RaftError::Fatal(fatal)))),
        };
        // A caller that gave up meanwhile drops the answer, and the slot.
        let _ = reply.send(answer);
        return;
    }
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
    let ticket = match raft.client_write_ff(command).await {
        Ok(ticket) => ticket,
        Err(fatal) => {
            fail_all(replies, &ProposeError::raft(RaftError::Fatal(fatal)));
            return;
        }
    };
    let raft = raft.clone();
    tokio::spawn(async move {
        match settle(&raft, ticket, slot).await {
            Ok(CommandResponse::Batch(answers)) if answers.len() == replies.len() => {
                for (r, a) in replies.into_iter().zip(answers) {
                    let _ = r.send(Answer::Done(Ok(a)));
                }
            }
            Ok(other) => {
                // Cannot happen: the state machine answers a batch with one
                // answer per command.
                tracing::error!(
                    target: super::TARGET,
                    answer = ?other,
                    "a batch was answered with something other than one answer per command"
                );
                // The entry was applied: what it did for each is unknown.
                fail_all(replies, &ProposeError::Unanswered);
            }
            Err(e) => fail_all(replies, &e),
        }
    });
}

fn fail_all(replies: Vec<oneshot::Sender<Answer>>, error: &ProposeError) {
    for r in replies {
        let _ = r.send(Answer::Done(Err(error.clone())));
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

    /// Every lock operation names its lock: two operations on one lock
    /// never share an entry (they would share its index as a token).
    #[test]
    fn every_lock_operation_conflicts_on_its_lock() {
        let s = std::collections::hash_map::RandomState::new();
        let (name, owner) = ("l".to_owned(), "o".to_owned());
        let ops = [
            Operation::LockAcquire {
                name: name.clone(),
                owner: owner.clone(),
                ttl_ms: 1,
            },
            Operation::LockRenew {
                name: name.clone(),
                owner: owner.clone(),
                token: 1,
                ttl_ms: 1,
            },
            Operation::LockRelease {
                name: name.clone(),
                owner: owner.clone(),
                token: 1,
            },
            Operation::LockWait {
                name: name.clone(),
                owner: owner.clone(),
                waiter: 1,
                ttl_ms: 1,
                wait_ms: 1,
            },
            Operation::LockCancel {
                name,
                owner,
                waiter: 1,
            },
        ];
        let keys: Vec<_> = ops.iter().map(|op| conflict_key(&s, op)).collect();
        assert!(keys[0].is_some());
        assert!(keys.iter().all(|k| *k == keys[0]), "{keys:?}");
    }

    #[test]
    fn options_keep_at_least_one() {
        let o = BatchOptions::default().max_commands(0).max_in_flight(0);
        assert_eq!((o.max_commands, o.max_in_flight), (1, 1));
    }
}
