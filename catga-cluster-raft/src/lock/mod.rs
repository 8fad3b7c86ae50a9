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
use crate::state_machine::limits;
use crate::types::{CommandResponse, Operation};

mod acquire;

pub use acquire::Acquisition;

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
