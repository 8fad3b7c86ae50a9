//! Group forwarding: a follower sends the writes it forwards to the leader
//! together, one `propose` RPC for many.
//!
//! A write submitted on a follower ([`RaftNode::submit`]) is forwarded to
//! the leader. With nothing else queued and a slot free it goes alone, from
//! its caller's task, as one RPC carrying that command. Writes that arrive
//! while [`BatchOptions::max_in_flight`] RPCs are out (at least 4 here: a
//! forward waits for a network round trip on top of the leader's work)
//! queue and leave together as one RPC carrying an [`Operation::Batch`] of
//! their commands, up to [`BatchOptions::max_commands`] and
//! [`BatchOptions::max_bytes`]. The leader proposes each of them through its
//! own batcher (see [`RaftNode::write`]) and answers with one answer per
//! command.
//!
//! Every command carries its request id, so when such an RPC fails in a way
//! that leaves the outcome open, each write retries on its own (the
//! de-duplication table answers what was applied already). A leader that
//! refuses a batch as invalid (one that predates batches) gets the commands
//! again one by one: an invalid request was not applied.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use catga_cluster_core::protocol::RaftRpc;
use catga_cluster_core::ClusterError;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::proposer::BatchOptions;
use super::RaftNode;
use crate::kv::Attempt;
use crate::network::wire::{ProposeRequest, WireError};
use crate::types::{Command, CommandResponse, Operation};

/// What a forwarded write gets back.
pub(crate) type Forwarded = Result<CommandResponse, Attempt>;

struct Pending {
    node: RaftNode,
    request: ProposeRequest,
    deadline: Instant,
    reply: oneshot::Sender<Forwarded>,
}

/// The queue of writes forwarded to the leader, and the slots of the RPCs
/// in flight.
pub(crate) struct Forwarder {
    queue: mpsc::UnboundedSender<Pending>,
    queued: Arc<AtomicUsize>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("queued", &self.queued.load(Ordering::Relaxed))
            .field("free_slots", &self.slots.available_permits())
            .finish()
    }
}

impl Forwarder {
    /// Starts the task that forms the batches.
    pub(crate) fn start(options: BatchOptions, shutdown: CancellationToken) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let slots = Arc::new(Semaphore::new(options.max_in_flight.max(4)));
        tokio::spawn(run(
            options,
            rx,
            Arc::clone(&queued),
            Arc::clone(&slots),
            shutdown,
        ));
        Forwarder {
            queue,
            queued,
            slots,
        }
    }

    /// Forwards `request` (which carries a request id) to the leader within
    /// `remaining`.
    pub(crate) async fn forward(
        &self,
        node: &RaftNode,
        request: ProposeRequest,
        remaining: Duration,
    ) -> Forwarded {
        if self.queued.load(Ordering::Acquire) == 0 {
            if let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() {
                let answer = node
                    .forward::<ProposeRequest, CommandResponse>(
                        RaftRpc::Propose,
                        &request,
                        remaining,
                    )
                    .await;
                drop(slot);
                return answer;
            }
        }
        let (reply, answer) = oneshot::channel();
        self.queued.fetch_add(1, Ordering::AcqRel);
        let pending = Pending {
            node: node.clone(),
            request,
            deadline: Instant::now() + remaining,
            reply,
        };
        if self.queue.send(pending).is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(Attempt::Failed(ClusterError::Shutdown));
        }
        answer
            .await
            .unwrap_or(Err(Attempt::Failed(ClusterError::Shutdown)))
    }
}

async fn run(
    options: BatchOptions,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    queued: Arc<AtomicUsize>,
    slots: Arc<Semaphore>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            p = rx.recv() => match p { Some(p) => p, None => return },
            () = shutdown.cancelled() => return,
        };
        queued.fetch_sub(1, Ordering::AcqRel);
        let slot = tokio::select! {
            s = Arc::clone(&slots).acquire_owned() => match s { Ok(s) => s, Err(_) => return },
            () = shutdown.cancelled() => return,
        };
        let mut bytes = weight(&first.request);
        let mut batch = vec![first];
        while batch.len() < options.max_commands && bytes < options.max_bytes {
            let Ok(p) = rx.try_recv() else { break };
            queued.fetch_sub(1, Ordering::AcqRel);
            bytes += weight(&p.request);
            batch.push(p);
        }
        batch.retain(|p| !p.reply.is_closed());
        if !batch.is_empty() {
            tokio::spawn(send(batch, slot));
        }
    }
}

/// About how many bytes a forwarded request adds to a batch.
fn weight(request: &ProposeRequest) -> usize {
    request.op.approx_size() + request.request_id.as_ref().map_or(0, String::len) + 64
}

/// Sends one batch as one RPC and answers its writes.
async fn send(mut batch: Vec<Pending>, slot: OwnedSemaphorePermit) {
    let now = Instant::now();
    let remaining = batch
        .iter()
        .map(|p| p.deadline.saturating_duration_since(now))
        .min()
        .unwrap_or_default()
        .max(Duration::from_millis(1));
    let node = batch[0].node.clone();
    if batch.len() == 1 {
        let p = batch.remove(0);
        let answer = node
            .forward::<ProposeRequest, CommandResponse>(RaftRpc::Propose, &p.request, remaining)
            .await;
        drop(slot);
        let _ = p.reply.send(answer);
        return;
    }
    let mut commands = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for p in batch {
        commands.push(Command {
            request_id: p.request.request_id,
            // The leader stamps each command with its own clock.
            leader_time_ms: 0,
            op: p.request.op,
        });
        replies.push(p.reply);
    }
    let request = ProposeRequest {
        request_id: None,
        op: Operation::Batch(commands),
    };
    let answer: Forwarded = node
        .forward::<ProposeRequest, CommandResponse>(RaftRpc::Propose, &request, remaining)
        .await;
    drop(slot);
    let Operation::Batch(commands) = request.op else {
        return;
    };
    match answer {
        Ok(CommandResponse::Batch(answers)) if answers.len() == replies.len() => {
            for (r, a) in replies.into_iter().zip(answers) {
                let _ = r.send(Ok(a));
            }
        }
        Ok(other) => {
            // Cannot happen with a leader that knows batches.
            tracing::warn!(
                target: super::TARGET,
                answer = ?other,
                "the leader answered a forwarded batch with something other than one answer per command"
            );
            for r in replies {
                let _ = r.send(Err(Attempt::MaybeApplied));
            }
        }
        Err(Attempt::Failed(ClusterError::InvalidRequest(_))) => {
            // A leader that does not take batches: nothing was applied, so
            // the commands go again one by one.
            for (command, reply) in commands.into_iter().zip(replies) {
                let node = node.clone();
                let request = ProposeRequest {
                    request_id: command.request_id,
                    op: command.op,
                };
                tokio::spawn(async move {
                    let answer = node
                        .forward::<ProposeRequest, CommandResponse>(
                            RaftRpc::Propose,
                            &request,
                            remaining,
                        )
                        .await;
                    let _ = reply.send(answer);
                });
            }
        }
        Err(Attempt::MaybeApplied) => {
            for r in replies {
                let _ = r.send(Err(Attempt::MaybeApplied));
            }
        }
        Err(Attempt::Failed(e)) => {
            // The same failure for each, through its wire form (errors are
            // not `Clone`).
            let wire = WireError::from_cluster(&e);
            for r in replies {
                let e = wire.clone().into_cluster("the write", remaining);
                let _ = r.send(Err(Attempt::Failed(e)));
            }
        }
    }
}
