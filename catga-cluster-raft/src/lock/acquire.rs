//! Taking a lock, waiting in its queue: [`RaftNode::acquire_lock`] and the
//! waiter behind it, which follows its place on its own node's state
//! machine and leaves the queue when its wait runs out or its call is
//! dropped (see the [module docs](super)).

use std::time::Duration;

use catga_cluster_core::ClusterError;
use tokio::sync::watch;
use tokio::time::Instant;

use super::TARGET;
use crate::node::RaftNode;
use crate::state_machine::{Applied, WaiterView};
use crate::types::{CommandResponse, Operation};

/// The outcome of [`RaftNode::acquire_lock`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Acquisition {
    /// The lock was granted.
    Granted {
        /// The fencing token (the log index of the grant).
        token: u64,
        /// When the granting request was sent: the holder's lease runs from
        /// here, conservatively.
        sent: Instant,
        /// Whether the caller had to wait for it.
        waited: bool,
    },
    /// Someone else still held the lock when the wait ran out.
    Held {
        /// How much of the holder's lease was left.
        remaining: Duration,
        /// Whether the caller waited at all.
        waited: bool,
    },
}

impl RaftNode {
    /// Takes lock `name` for `owner` with a lease of `ttl_ms`, waiting up to
    /// `wait` in the lock's queue while someone else holds it, from any
    /// node.
    ///
    /// Waiters are granted the lock in the order they were queued, each in
    /// the entry that releases it (or that ends a lapsed lease): the caller
    /// learns of its grant from this node's state machine, without another
    /// request. When the wait runs out, the caller leaves the queue; if it
    /// was granted the lock just before, it keeps it and this returns the
    /// grant. A call dropped before it returns leaves the queue in the
    /// background (and releases a lock granted meanwhile). `on_wait` runs
    /// once, when the waiting starts. [`RaftLock`](super::RaftLock) is the typed front; HTTP
    /// routes that hold a lock across requests use this directly.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use catga_cluster_raft::Acquisition;
    ///
    /// # async fn run(node: catga_cluster_raft::RaftNode) -> Result<(), catga_cluster_core::ClusterError> {
    /// let wait = Duration::from_secs(2);
    /// match node.acquire_lock("reports", "worker-7", 30_000, wait, || {}).await? {
    ///     Acquisition::Granted { token, .. } => println!("holding it, fencing token {token}"),
    ///     Acquisition::Held { remaining, .. } => println!("busy for another {remaining:?}"),
    ///     _ => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn acquire_lock(
        &self,
        name: &str,
        owner: &str,
        ttl_ms: u64,
        wait: Duration,
        on_wait: impl FnOnce() + Send,
    ) -> Result<Acquisition, ClusterError> {
        let deadline = Instant::now() + wait;
        let mut waiting = Waiting::new(self, name, owner);
        let mut on_wait = Some(on_wait);
        let mut waited = false;
        // When the last proposal that found the caller queued was sent: a
        // grant that follows it starts its lease later.
        let mut queued_since: Option<Instant> = None;
        loop {
            let sent = Instant::now();
            let wait_ms = millis(deadline.saturating_duration_since(sent));
            let op = Operation::LockWait {
                name: name.to_owned(),
                owner: owner.to_owned(),
                waiter: waiting.waiter,
                ttl_ms,
                wait_ms,
            };
            let answer = match self.submit(op, None).await {
                Ok(answer) => answer,
                // Refused before it was proposed, and so was every earlier
                // proposal of this call (they differ only in `wait_ms`).
                Err(refused @ ClusterError::InvalidRequest(_)) => {
                    waiting.done();
                    return Err(refused);
                }
                Err(error) => return Err(error),
            };
            match answer {
                CommandResponse::LockGranted { token, .. } => {
                    // Granted by this proposal, or (a caller that was
                    // queued) by an entry after the last one that queued it.
                    let since = queued_since.unwrap_or(sent);
                    return Ok(waiting.granted(token, since, waited));
                }
                CommandResponse::LockQueued {
                    ahead,
                    expires_at_ms,
                    remaining_ms,
                    index,
                } => {
                    waited = true;
                    queued_since = Some(sent);
                    if let Some(on_wait) = on_wait.take() {
                        on_wait();
                    }
                    let queued = Queued {
                        index,
                        expires_at_ms: Some(expires_at_ms),
                        poke_at: Instant::now() + poke_delay(remaining_ms, ahead),
                    };
                    match waiting.wait_in_queue(queued, deadline).await? {
                        InQueue::Granted(token) => return Ok(waiting.granted(token, sent, true)),
                        // The holder's lease lapsed: ask again, keeping the
                        // place (which ends the lease and grants the head).
                        InQueue::Poke => {}
                        // No longer queued: queue again.
                        InQueue::Absent => queued_since = None,
                        InQueue::TimedOut => return waiting.give_up(sent).await,
                    }
                }
                CommandResponse::LockHeld { remaining_ms, .. } => {
                    // Not queued: no wait was asked for, or the queue is full.
                    queued_since = None;
                    let now = Instant::now();
                    let remaining = Duration::from_millis(remaining_ms);
                    if now >= deadline {
                        waiting.done();
                        return Ok(Acquisition::Held { remaining, waited });
                    }
                    waited = true;
                    if let Some(on_wait) = on_wait.take() {
                        on_wait();
                    }
                    waiting
                        .wait_for_change((now + remaining).min(deadline))
                        .await;
                }
                other => return Err(other.into_unexpected()),
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// When a waiter `ahead` places from the head proposes again after the
/// holder's lease should have lapsed (`remaining_ms` from now): one
/// millisecond after it, plus two per waiter ahead, so that the head asks
/// first and the others see its grant instead of asking too.
fn poke_delay(remaining_ms: u64, ahead: u64) -> Duration {
    Duration::from_millis(remaining_ms.saturating_add(1 + 2 * ahead.min(50)))
}

/// What a queued caller knows about its place.
struct Queued {
    /// The index of the entry that answered it.
    index: u64,
    /// The holder's lease end that `poke_at` was computed from.
    expires_at_ms: Option<u64>,
    /// When to propose again if nothing happens: the holder's lease should
    /// have lapsed by then, and only an entry on the lock ends it.
    poke_at: Instant,
}

/// How a wait in the queue ended.
enum InQueue {
    Granted(u64),
    Poke,
    Absent,
    TimedOut,
}

/// One acquire call's waiter: its id, and the clean-up that runs if the
/// call is dropped while it may be queued or granted.
struct Waiting<'a> {
    node: &'a RaftNode,
    name: &'a str,
    owner: &'a str,
    waiter: u64,
    changes: watch::Receiver<Applied>,
    /// Whether the caller may still be queued or hold an unreported grant.
    armed: bool,
}

impl<'a> Waiting<'a> {
    fn new(node: &'a RaftNode, name: &'a str, owner: &'a str) -> Self {
        Waiting {
            node,
            name,
            owner,
            waiter: fastrand::u64(1..),
            changes: node.state_machine().subscribe(),
            armed: true,
        }
    }

    /// The call returns without a lock, and is not queued.
    fn done(&mut self) {
        self.armed = false;
    }

    fn granted(&mut self, token: u64, sent: Instant, waited: bool) -> Acquisition {
        self.armed = false;
        Acquisition::Granted {
            token,
            sent,
            waited,
        }
    }

    /// Waits for the next lock change this node applies, up to `until`.
    async fn wait_for_change(&mut self, until: Instant) {
        let seen = self.changes.borrow_and_update().lock_changes;
        let _ =
            tokio::time::timeout_at(until, self.changes.wait_for(|a| a.lock_changes != seen)).await;
    }

    /// Follows the caller's place in the queue on this node's state machine
    /// until it is granted the lock, is no longer queued, should propose
    /// again, or its wait runs out.
    async fn wait_in_queue(
        &mut self,
        mut queued: Queued,
        deadline: Instant,
    ) -> Result<InQueue, ClusterError> {
        let sm = self.node.state_machine().clone();
        loop {
            // Read the counter before the state: a change applied after the
            // read of the state moves the counter past `seen`.
            let seen = self.changes.borrow_and_update().lock_changes;
            let (view, clock_ms, applied) = sm.lock_waiter(self.name, self.owner, self.waiter);
            let caught_up = applied >= queued.index;
            if caught_up {
                match view {
                    WaiterView::Holder { token } => return Ok(InQueue::Granted(token)),
                    WaiterView::Absent => {
                        return Ok(if Instant::now() >= deadline {
                            InQueue::TimedOut
                        } else {
                            InQueue::Absent
                        });
                    }
                    WaiterView::Queued {
                        ahead,
                        holder_expires_at_ms,
                    } => {
                        if holder_expires_at_ms != queued.expires_at_ms {
                            // A new holder, a renewal or a new term: its lease
                            // runs from the entry just applied.
                            let remaining =
                                holder_expires_at_ms.map_or(0, |at| at.saturating_sub(clock_ms));
                            queued.expires_at_ms = holder_expires_at_ms;
                            queued.poke_at = Instant::now() + poke_delay(remaining, ahead);
                        }
                    }
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(InQueue::TimedOut);
            }
            if now >= queued.poke_at {
                return Ok(InQueue::Poke);
            }
            let index = queued.index;
            let woke = tokio::time::timeout_at(
                queued.poke_at.min(deadline),
                self.changes
                    .wait_for(|a| a.lock_changes != seen || (!caught_up && a.index >= index)),
            )
            .await;
            if let Ok(Err(_)) = woke {
                return Err(ClusterError::Shutdown);
            }
        }
    }

    /// The wait ran out while queued: leaves the queue, or takes the grant
    /// that came just before.
    async fn give_up(&mut self, sent: Instant) -> Result<Acquisition, ClusterError> {
        let op = Operation::LockCancel {
            name: self.name.to_owned(),
            owner: self.owner.to_owned(),
            waiter: self.waiter,
        };
        match self.node.submit(op, None).await? {
            CommandResponse::LockGranted { token, .. } => Ok(self.granted(token, sent, true)),
            CommandResponse::LockCancelled { remaining_ms } => {
                self.done();
                Ok(Acquisition::Held {
                    remaining: Duration::from_millis(remaining_ms),
                    waited: true,
                })
            }
            other => Err(other.into_unexpected()),
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let node = self.node.clone();
        let (name, owner, waiter) = (self.name.to_owned(), self.owner.to_owned(), self.waiter);
        runtime.spawn(async move {
            let cancel = Operation::LockCancel {
                name: name.clone(),
                owner: owner.clone(),
                waiter,
            };
            let token = match node.submit(cancel, None).await {
                Ok(CommandResponse::LockGranted { token, .. }) => token,
                Ok(_) => return,
                Err(error) => {
                    tracing::debug!(target: TARGET, %name, %error, "leaving the queue failed; the wait will lapse");
                    return;
                }
            };
            // Granted to a caller that is gone: hand it to the next waiter.
            let release = Operation::LockRelease {
                name: name.clone(),
                owner,
                token,
            };
            if let Err(error) = node.submit(release, None).await {
                tracing::debug!(target: TARGET, %name, token, %error, "releasing an unclaimed grant failed; the lease will lapse");
            }
        });
    }
}
