//! A replicated, fenced distributed lock.
//!
//! [`RaftLock`] implements [`DistributedLock`] through the Raft log: every
//! acquire, renew and release is a command the whole cluster agrees on, so
//! two callers can never both hold a lock, whichever nodes they call. The
//! fencing token of a grant is the log index of the granting entry, so it
//! grows strictly across all holders of a lock. Leases are decided from the
//! leader's timestamps (see [`crate::state_machine`]).
//!
//! The lock is fair: callers that find it held wait in a queue that is part
//! of the replicated state, and are granted it in the order they were
//! queued, whichever node they called. A release hands the lock to the
//! first waiter in the same log entry, and the waiter learns of it from its
//! own node's state machine, with no request of its own; a waiter whose
//! `wait` runs out leaves the queue, and one whose call is dropped leaves it
//! in the background. While the holder's lease runs, waiters sleep; when it
//! would have lapsed, the first waiter proposes again, which ends the lease
//! and grants the lock to the head of the queue. See
//! [`RaftNode::acquire_lock`] and the
//! [state machine](crate::state_machine#fair-locks) for the rules.
//!
//! The holder measures its lease from the moment it *sent* the request
//! that queued it (or took the lock), so [`LockGuard::is_valid`] turns false
//! no later than the cluster's view of the lease ends (assuming clocks that
//! advance at about the same rate); when a wait used up more than half of
//! the lease that way, [`DistributedLock::try_acquire`] renews it once
//! before it returns. Still, pass the fencing token to the resource you
//! protect: a process paused longer than its lease cannot tell on its own.
//!
//! A waiter whose process dies keeps its place until its `wait` runs out;
//! if it reaches the head of the queue before that, the lock is granted to
//! it and stays unused for one lease, as with a holder that dies.
//!
//! ```no_run
//! use std::time::Duration;
//! use catga_cluster_core::{DistributedLock, LockGuard};
//! use catga_cluster_raft::{RaftLock, RaftNode};
//!
//! # async fn run(node: RaftNode) -> Result<(), Box<dyn std::error::Error>> {
//! let locks = RaftLock::new(node);
//! if let Some(guard) = locks
//!     .try_acquire("critical-operation", Duration::from_secs(10), Duration::from_secs(5))
//!     .await?
//! {
//!     let token = guard.token(); // hand it to the protected resource
//!     # let _ = token;
//!     guard.release().await?;
//! }
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_cluster_core::lock::{
    validate_lock_name, DistributedLock, FencingToken, LockError, LockGuard,
};
use catga_cluster_core::{ClusterCoordinator, ClusterError};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::node::RaftNode;
use crate::state_machine::{limits, Applied, WaiterView};
use crate::types::{CommandResponse, Operation};

const TARGET: &str = "catga_cluster::raft::lock";

/// The distributed lock service of a [`RaftNode`], for one owner.
///
/// Its methods are those of [`DistributedLock`] (and the guard's those of
/// [`LockGuard`]): bring the traits into scope, e.g. with
/// [`crate::prelude`].
///
/// ```no_run
/// use std::time::Duration;
/// use catga_cluster_raft::prelude::*;
///
/// # async fn run(node: RaftNode) -> Result<(), Box<dyn std::error::Error>> {
/// let locks = RaftLock::with_owner(node, "billing-worker-1")?;
/// let ttl = Duration::from_secs(30);
/// match locks.try_acquire("nightly-billing", ttl, Duration::ZERO).await? {
///     Some(guard) => {
///         // Pass guard.token() along with every write the lock protects.
///         guard.release().await?;
///     }
///     None => println!("another worker runs it"),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RaftLock {
    node: RaftNode,
    owner: String,
}

impl RaftLock {
    /// A lock service whose owner id is unique to this instance.
    pub fn new(node: RaftNode) -> Self {
        let owner = format!("node{}-{:016x}", node.node().id, fastrand::u64(..));
        RaftLock { node, owner }
    }

    /// A lock service with an explicit owner id (at most
    /// [`limits::MAX_OWNER_LEN`] characters). Two instances with one owner
    /// id are one owner.
    pub fn with_owner(node: RaftNode, owner: impl Into<String>) -> Result<Self, LockError> {
        let owner = owner.into();
        if owner.is_empty() || owner.chars().count() > limits::MAX_OWNER_LEN {
            return Err(LockError::Invalid(format!(
                "the owner id must be 1 to {} characters",
                limits::MAX_OWNER_LEN
            )));
        }
        Ok(RaftLock {
            node: node.clone(),
            owner,
        })
    }

    /// This service's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }
}

fn ttl_ms(ttl: Duration) -> Result<u64, LockError> {
    let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 || ms > limits::MAX_TTL_MS {
        return Err(LockError::Invalid(format!(
            "the lease must be 1 ms to {} ms, not {ttl:?}",
            limits::MAX_TTL_MS
        )));
    }
    Ok(ms)
}

fn lock_error(e: ClusterError) -> LockError {
    match e {
        ClusterError::NotLeader(n) => LockError::NotLeader(n),
        ClusterError::UnknownOutcome { after, .. } => LockError::UnknownOutcome(after),
        ClusterError::InvalidRequest(r) => LockError::Invalid(r),
        ClusterError::Shutdown => LockError::Shutdown,
        other => LockError::Other(Box::new(other)),
    }
}

fn unexpected(answer: CommandResponse) -> LockError {
    lock_error(answer.into_unexpected())
}

impl DistributedLock for RaftLock {
    type Guard = RaftLockGuard;

    async fn try_acquire(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> Result<Option<RaftLockGuard>, LockError> {
        validate_lock_name(name)?;
        let ttl_ms = ttl_ms(ttl)?;
        match self
            .node
            .acquire_lock(name, &self.owner, ttl_ms, wait, || {})
            .await
            .map_err(lock_error)?
        {
            Acquisition::Granted {
                token,
                sent,
                waited,
            } => {
                tracing::debug!(target: TARGET, name, token, owner = %self.owner, "lock granted");
                let guard = RaftLockGuard {
                    node: self.node.clone(),
                    name: name.to_owned(),
                    owner: self.owner.clone(),
                    token,
                    valid_until: Mutex::new(sent + ttl),
                    done: AtomicBool::new(false),
                };
                // A waiter's lease is measured from before it queued, so a
                // long wait eats into it: renew once when less than half is
                // left, so the guard does not report a lease it still has
                // as nearly over.
                if waited && guard.valid_until() < Instant::now() + ttl / 2 {
                    match guard.renew(ttl).await {
                        Ok(()) => {}
                        Err(LockError::Lost { .. }) => {
                            // The lease lapsed before the grant was seen.
                            guard.done.store(true, Ordering::SeqCst);
                            return Ok(None);
                        }
                        Err(error) => {
                            tracing::debug!(target: TARGET, name, token, %error, "renewal after the wait failed");
                        }
                    }
                }
                Ok(Some(guard))
            }
            Acquisition::Held { .. } => Ok(None),
        }
    }
}

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
    /// once, when the waiting starts. [`RaftLock`] is the typed front; HTTP
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

/// A lock held through [`RaftLock`].
///
/// Dropping it without [`release`](LockGuard::release) releases the lock in
/// the background, best effort; the lease bounds the damage if that fails.
#[derive(Debug)]
pub struct RaftLockGuard {
    node: RaftNode,
    name: String,
    owner: String,
    token: u64,
    valid_until: Mutex<Instant>,
    done: AtomicBool,
}

impl RaftLockGuard {
    fn lost(&self) -> LockError {
        self.invalidate();
        LockError::Lost {
            name: self.name.clone(),
            token: FencingToken::new(self.token),
        }
    }

    fn invalidate(&self) {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// When the lease ends, as this holder conservatively measures it.
    pub fn valid_until(&self) -> Instant {
        *self.valid_until.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The holder's owner id.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Keeps the lease alive in the background, renewing it to `ttl` every
    /// third of `ttl`, until the returned guard is released or dropped, or
    /// the lock is lost.
    pub fn auto_renew(self, ttl: Duration) -> AutoRenewGuard {
        let guard = Arc::new(self);
        let (lost_tx, lost_rx) = watch::channel(false);
        let task = {
            let guard = guard.clone();
            tokio::spawn(async move {
                let period = (ttl / 3).max(Duration::from_millis(1));
                loop {
                    tokio::time::sleep(period).await;
                    match guard.renew(ttl).await {
                        Ok(()) => {}
                        Err(LockError::Lost { .. }) => {
                            tracing::warn!(target: TARGET, name = %guard.name, token = guard.token, "lock lost; renewal stops");
                            let _ = lost_tx.send(true);
                            return;
                        }
                        Err(error) => {
                            tracing::warn!(target: TARGET, name = %guard.name, %error, "renewal failed; retrying");
                        }
                    }
                }
            })
        };
        AutoRenewGuard {
            guard: Some(guard),
            task,
            lost: lost_rx,
        }
    }
}

impl LockGuard for RaftLockGuard {
    fn name(&self) -> &str {
        &self.name
    }

    fn token(&self) -> FencingToken {
        FencingToken::new(self.token)
    }

    fn is_valid(&self) -> bool {
        !self.done.load(Ordering::SeqCst) && Instant::now() < self.valid_until()
    }

    async fn renew(&self, ttl: Duration) -> Result<(), LockError> {
        let ttl_ms = ttl_ms(ttl)?;
        if self.done.load(Ordering::SeqCst) {
            return Err(self.lost());
        }
        let sent = Instant::now();
        let op = Operation::LockRenew {
            name: self.name.clone(),
            owner: self.owner.clone(),
            token: self.token,
            ttl_ms,
        };
        match self.node.submit(op, None).await.map_err(lock_error)? {
            CommandResponse::LockGranted { .. } => {
                *self.valid_until.lock().unwrap_or_else(|e| e.into_inner()) = sent + ttl;
                Ok(())
            }
            CommandResponse::LockLost => Err(self.lost()),
            other => Err(unexpected(other)),
        }
    }

    async fn release(self) -> Result<(), LockError> {
        self.done.store(true, Ordering::SeqCst);
        let op = Operation::LockRelease {
            name: self.name.clone(),
            owner: self.owner.clone(),
            token: self.token,
        };
        match self.node.submit(op, None).await.map_err(lock_error)? {
            CommandResponse::LockReleased => Ok(()),
            CommandResponse::LockLost => Err(self.lost()),
            other => Err(unexpected(other)),
        }
    }
}

impl Drop for RaftLockGuard {
    fn drop(&mut self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let node = self.node.clone();
        let op = Operation::LockRelease {
            name: self.name.clone(),
            owner: self.owner.clone(),
            token: self.token,
        };
        let name = self.name.clone();
        runtime.spawn(async move {
            if let Err(error) = node.submit(op, None).await {
                tracing::debug!(target: TARGET, %name, %error, "background release failed; the lease will lapse");
            }
        });
    }
}

/// A [`RaftLockGuard`] whose lease is renewed in the background.
#[derive(Debug)]
pub struct AutoRenewGuard {
    guard: Option<Arc<RaftLockGuard>>,
    task: JoinHandle<()>,
    lost: watch::Receiver<bool>,
}

impl AutoRenewGuard {
    /// The lock's fencing token.
    pub fn token(&self) -> FencingToken {
        FencingToken::new(self.guard.as_ref().map_or(0, |g| g.token))
    }

    /// Whether the lock is still held.
    pub fn is_valid(&self) -> bool {
        !*self.lost.borrow() && self.guard.as_ref().is_some_and(|g| g.is_valid())
    }

    /// Resolves when the lock is lost (renewal was refused).
    pub async fn lost(&self) {
        let mut lost = self.lost.clone();
        let _ = lost.wait_for(|l| *l).await;
    }

    /// Stops renewing and releases the lock.
    pub async fn release(mut self) -> Result<(), LockError> {
        self.task.abort();
        let _ = (&mut self.task).await;
        let Some(guard) = self.guard.take() else {
            return Err(LockError::Shutdown);
        };
        match Arc::try_unwrap(guard) {
            Ok(guard) => guard.release().await,
            Err(shared) => {
                // The renewal task is gone, so this cannot happen; dropping
                // the last reference releases in the background.
                drop(shared);
                Ok(())
            }
        }
    }
}

impl Drop for AutoRenewGuard {
    fn drop(&mut self) {
        self.task.abort();
    }
}
