//! A replicated, fenced distributed lock.
//!
//! [`RaftLock`] implements [`DistributedLock`] through the Raft log: every
//! acquire, renew and release is a command the whole cluster agrees on, so
//! two callers can never both hold a lock, whichever nodes they call. The
//! fencing token of a grant is the log index of the granting entry, so it
//! grows strictly across all holders of a lock. Leases are decided from the
//! leader's timestamps (see [`crate::state_machine`]).
//!
//! Waiting is event-driven: a waiter sleeps until its node applies a lock
//! change (a release, an expiry-driven grant) or until the holder's lease
//! would run out, whichever comes first, bounded by its `wait`.
//!
//! The holder measures its lease from the moment it *sent* the request, so
//! [`LockGuard::is_valid`] turns false no later than the cluster's view of the
//! lease ends (assuming clocks that advance at about the same rate). Still,
//! pass the fencing token to the resource you protect: a process paused
//! longer than its lease cannot tell on its own.
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
            Acquisition::Granted { token, sent, .. } => {
                tracing::debug!(target: TARGET, name, token, owner = %self.owner, "lock granted");
                Ok(Some(RaftLockGuard {
                    node: self.node.clone(),
                    name: name.to_owned(),
                    owner: self.owner.clone(),
                    token,
                    valid_until: Mutex::new(sent + ttl),
                    done: AtomicBool::new(false),
                }))
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
    /// `wait` while someone else holds it, from any node.
    ///
    /// Waiting is event-driven: the caller sleeps until this node applies a
    /// lock change or until the holder's lease would run out, whichever
    /// comes first; `on_wait` runs once, when the waiting starts.
    /// [`RaftLock`] is the typed front; HTTP routes that hold a lock across
    /// requests use this directly.
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
        let mut on_wait = Some(on_wait);
        let deadline = Instant::now() + wait;
        let mut changes = self.state_machine().subscribe();
        let mut waited = false;
        loop {
            let seen = changes.borrow_and_update().lock_changes;
            let sent = Instant::now();
            let op = Operation::LockAcquire {
                name: name.to_owned(),
                owner: owner.to_owned(),
                ttl_ms,
            };
            match self.submit(op, None).await? {
                CommandResponse::LockGranted { token, .. } => {
                    return Ok(Acquisition::Granted {
                        token,
                        sent,
                        waited,
                    })
                }
                CommandResponse::LockHeld { remaining_ms, .. } => {
                    let now = Instant::now();
                    let remaining = Duration::from_millis(remaining_ms);
                    if now >= deadline {
                        return Ok(Acquisition::Held { remaining, waited });
                    }
                    waited = true;
                    if let Some(on_wait) = on_wait.take() {
                        on_wait();
                    }
                    // Wake on the next lock change this node applies, or
                    // when the holder's lease would have run out.
                    let lapse = (now + remaining).min(deadline);
                    let _ = tokio::time::timeout_at(
                        lapse,
                        changes.wait_for(|a| a.lock_changes != seen),
                    )
                    .await;
                }
                other => return Err(other.into_unexpected()),
            }
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
