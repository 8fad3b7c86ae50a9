//! The distributed lock contract, and an in-process implementation.
//!
//! [`DistributedLock::try_acquire`] waits up to `wait` for a named lock and
//! gives a guard, or `None` when the lock stayed held. The guard carries a
//! [`FencingToken`] that grows strictly with every grant of the same lock:
//! hand it to the resource you protect, and have the resource reject any token
//! lower than the highest it has seen. A lease (`ttl`) bounds how long a
//! crashed holder keeps the lock; renew it while you work.
//!
//! [`LocalLock`] implements the contract inside one process (tests,
//! single-node use). The Raft crate implements it across the cluster.
//!
//! ```
//! use std::time::Duration;
//! use catga_cluster_core::lock::{DistributedLock, LocalLock, LockGuard};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let locks = LocalLock::new();
//! let guard = locks
//!     .try_acquire("critical-operation", Duration::from_secs(10), Duration::from_secs(5))
//!     .await
//!     .unwrap()
//!     .expect("nobody else holds it");
//! assert!(guard.is_valid());
//!
//! // A second caller does not get it while the first holds it.
//! let second = locks
//!     .try_acquire("critical-operation", Duration::from_secs(10), Duration::ZERO)
//!     .await
//!     .unwrap();
//! assert!(second.is_none());
//!
//! guard.release().await.unwrap();
//! # });
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::{BoxError, NotLeader};

/// A fencing token: strictly increasing for each grant of a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(transparent))]
pub struct FencingToken(u64);

impl FencingToken {
    /// Wraps a raw token.
    pub const fn new(token: u64) -> Self {
        FencingToken(token)
    }

    /// The raw token.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// Why a lock operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// The guard no longer holds the lock: its lease lapsed, or the lock was
    /// granted to someone else since.
    #[error("lock `{name}` was lost: token {token} no longer holds it")]
    Lost {
        /// The lock's name.
        name: String,
        /// The token that lost it.
        token: FencingToken,
    },
    /// The name, owner or lease is not acceptable.
    #[error("invalid lock request: {0}")]
    Invalid(String),
    /// The cluster could not serve the request.
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    /// The request timed out after it was sent: it may have taken effect.
    #[error("the outcome of the lock request is unknown: no answer within {0:?}")]
    UnknownOutcome(Duration),
    /// The lock service has shut down.
    #[error("the lock service is shut down")]
    Shutdown,
    /// Any other failure.
    #[error("lock request failed: {0}")]
    Other(#[source] BoxError),
}

/// A lock service: named locks with leases and fencing tokens.
///
/// Write lock users against the trait: [`LocalLock`] in tests and on one
/// node, the Raft crate's `RaftLock` across the cluster.
///
/// ```
/// use std::time::Duration;
/// use catga_cluster_core::lock::{DistributedLock, LocalLock, LockError, LockGuard};
///
/// /// Runs the nightly job unless someone else runs it; `true` if it ran.
/// async fn nightly<L: DistributedLock>(locks: &L) -> Result<bool, LockError> {
///     let ttl = Duration::from_secs(60);
///     let Some(guard) = locks.try_acquire("nightly", ttl, Duration::ZERO).await? else {
///         return Ok(false);
///     };
///     // ... the job, passing guard.token() with every write it makes ...
///     guard.release().await?;
///     Ok(true)
/// }
///
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// assert!(nightly(&LocalLock::new()).await.unwrap());
/// # });
/// ```
pub trait DistributedLock: Send + Sync + 'static {
    /// The guard of a held lock.
    type Guard: LockGuard;

    /// Tries to take lock `name` for `ttl`, waiting up to `wait` while
    /// someone else holds it. `Ok(None)`: still held after the wait.
    fn try_acquire(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<Self::Guard>, LockError>> + Send;
}

/// A held lock.
///
/// Dropping a guard without [`release`](LockGuard::release) releases the lock
/// on a best-effort basis; call `release` to learn whether it still held.
pub trait LockGuard: Send + Sync + 'static {
    /// The lock's name.
    fn name(&self) -> &str;

    /// The fencing token of this grant.
    fn token(&self) -> FencingToken;

    /// `true` while the lease, as this holder conservatively measures it, has
    /// not lapsed and the lock was not released.
    fn is_valid(&self) -> bool;

    /// Extends the lease to `ttl` from now. Fails with [`LockError::Lost`]
    /// when the lock is no longer held by this guard.
    fn renew(&self, ttl: Duration) -> impl Future<Output = Result<(), LockError>> + Send;

    /// Releases the lock. Fails with [`LockError::Lost`] when the lease had
    /// already lapsed or another holder took over: never a silent success.
    fn release(self) -> impl Future<Output = Result<(), LockError>> + Send;
}

/// The longest accepted lock name, in characters (Unicode scalar values).
pub const MAX_LOCK_NAME_LEN: usize = 256;

/// Checks a lock name: 1 to [`MAX_LOCK_NAME_LEN`] characters, no control characters.
pub fn validate_lock_name(name: &str) -> Result<(), LockError> {
    if name.is_empty() {
        return Err(LockError::Invalid("the lock name is empty".into()));
    }
    let chars = name.chars().count();
    if chars > MAX_LOCK_NAME_LEN {
        return Err(LockError::Invalid(format!(
            "the lock name is {chars} characters long; at most {MAX_LOCK_NAME_LEN} are allowed"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(LockError::Invalid(
            "the lock name contains control characters".into(),
        ));
    }
    Ok(())
}

fn validate_ttl(ttl: Duration) -> Result<(), LockError> {
    if ttl.is_zero() {
        return Err(LockError::Invalid(
            "the lease (ttl) must be positive".into(),
        ));
    }
    Ok(())
}

/// An in-process [`DistributedLock`]: exact, fenced, and waits without
/// polling. For tests and single-node deployments.
#[derive(Debug, Clone, Default)]
pub struct LocalLock {
    inner: Arc<LocalInner>,
}

#[derive(Debug, Default)]
struct LocalInner {
    state: Mutex<LocalState>,
    released: Notify,
}

#[derive(Debug, Default)]
struct LocalState {
    next_token: u64,
    held: HashMap<String, Held>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    token: u64,
    expires: Instant,
}

impl LocalInner {
    fn state(&self) -> MutexGuard<'_, LocalState> {
        // The state stays consistent across a panic in another holder (every
        // update is a single map operation), so recover from poisoning.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Grants the lock, or says until when the current holder's lease runs.
    fn try_grant(&self, name: &str, ttl: Duration) -> Result<(u64, Instant), Instant> {
        let now = Instant::now();
        let mut state = self.state();
        if let Some(held) = state.held.get(name) {
            if held.expires > now {
                return Err(held.expires);
            }
        }
        state.next_token += 1;
        let token = state.next_token;
        let expires = now + ttl;
        state.held.insert(name.to_owned(), Held { token, expires });
        Ok((token, expires))
    }

    /// Runs `f` on the lock's entry if `token` still holds it.
    fn with_holder<T>(
        &self,
        name: &str,
        token: u64,
        f: impl FnOnce(&mut LocalState) -> T,
    ) -> Option<T> {
        let mut state = self.state();
        match state.held.get(name) {
            Some(held) if held.token == token && held.expires > Instant::now() => {
                Some(f(&mut state))
            }
            _ => None,
        }
    }

    fn remove(&self, name: &str, token: u64) -> bool {
        let removed = self
            .with_holder(name, token, |state| {
                state.held.remove(name);
            })
            .is_some();
        if removed {
            self.released.notify_waiters();
        }
        removed
    }
}

impl LocalLock {
    /// A lock service with no locks held.
    pub fn new() -> Self {
        LocalLock::default()
    }
}

impl DistributedLock for LocalLock {
    type Guard = LocalLockGuard;

    fn try_acquire(
        &self,
        name: &str,
        ttl: Duration,
        wait: Duration,
    ) -> impl Future<Output = Result<Option<LocalLockGuard>, LockError>> + Send {
        let name = name.to_owned();
        let inner = self.inner.clone();
        async move {
            validate_lock_name(&name)?;
            validate_ttl(ttl)?;
            let deadline = Instant::now() + wait;
            let (token, expires) = loop {
                // Register for wake-ups before looking, so a release between
                // the look and the wait is not missed.
                let released = inner.released.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                match inner.try_grant(&name, ttl) {
                    Ok(grant) => break grant,
                    Err(holder_expires) => {
                        if Instant::now() >= deadline {
                            return Ok(None);
                        }
                        tokio::select! {
                            () = released => {}
                            () = tokio::time::sleep_until(holder_expires.min(deadline)) => {}
                        }
                    }
                }
            };
            Ok(Some(LocalLockGuard {
                name,
                token,
                expires: Mutex::new(expires),
                inner,
                done: false,
            }))
        }
    }
}

/// The guard of a [`LocalLock`].
#[derive(Debug)]
pub struct LocalLockGuard {
    name: String,
    token: u64,
    expires: Mutex<Instant>,
    inner: Arc<LocalInner>,
    done: bool,
}

impl LocalLockGuard {
    fn lost(&self) -> LockError {
        LockError::Lost {
            name: self.name.clone(),
            token: FencingToken(self.token),
        }
    }
}

impl LockGuard for LocalLockGuard {
    fn name(&self) -> &str {
        &self.name
    }

    fn token(&self) -> FencingToken {
        FencingToken(self.token)
    }

    fn is_valid(&self) -> bool {
        let expires = *self.expires.lock().unwrap_or_else(|e| e.into_inner());
        !self.done
            && Instant::now() < expires
            && self
                .inner
                .with_holder(&self.name, self.token, |_| ())
                .is_some()
    }

    fn renew(&self, ttl: Duration) -> impl Future<Output = Result<(), LockError>> + Send {
        let result = validate_ttl(ttl).and_then(|()| {
            let expires = Instant::now() + ttl;
            self.inner
                .with_holder(&self.name, self.token, |state| {
                    if let Some(held) = state.held.get_mut(&self.name) {
                        held.expires = expires;
                    }
                })
                .map(|()| *self.expires.lock().unwrap_or_else(|e| e.into_inner()) = expires)
                .ok_or_else(|| self.lost())
        });
        std::future::ready(result)
    }

    fn release(mut self) -> impl Future<Output = Result<(), LockError>> + Send {
        self.done = true;
        let result = if self.inner.remove(&self.name, self.token) {
            Ok(())
        } else {
            Err(self.lost())
        };
        std::future::ready(result)
    }
}

impl Drop for LocalLockGuard {
    fn drop(&mut self) {
        if !self.done {
            self.inner.remove(&self.name, self.token);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn exclusive_and_fenced_under_contention() {
        let locks = LocalLock::new();
        let active = Arc::new(AtomicUsize::new(0));
        let highest = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (locks, active, highest) = (locks.clone(), active.clone(), highest.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    let guard = locks.try_acquire("res", LONG, LONG).await.unwrap().unwrap();
                    assert_eq!(active.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                    let token = guard.token().get();
                    let previous = highest.fetch_max(token, Ordering::SeqCst);
                    assert!(token > previous, "token {token} not above {previous}");
                    tokio::task::yield_now().await;
                    active.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(highest.load(Ordering::SeqCst), 16 * 20);
    }

    #[tokio::test(start_paused = true)]
    async fn lapsed_lease_frees_the_lock_and_release_reports_lost() {
        let locks = LocalLock::new();
        let first = locks
            .try_acquire("res", Duration::from_millis(100), Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        // A waiter gets it once the lease lapses, without a release.
        let second = locks
            .try_acquire("res", LONG, Duration::from_secs(1))
            .await
            .unwrap()
            .expect("granted after expiry");
        assert!(second.token() > first.token());
        assert!(!first.is_valid());
        assert!(matches!(
            first.renew(LONG).await,
            Err(LockError::Lost { .. })
        ));
        assert!(matches!(first.release().await, Err(LockError::Lost { .. })));
        assert!(second.is_valid());
    }

    #[tokio::test(start_paused = true)]
    async fn waiter_is_woken_by_release_and_wait_is_bounded() {
        let locks = LocalLock::new();
        let held = locks
            .try_acquire("a", LONG, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        let none = locks
            .try_acquire("a", LONG, Duration::from_millis(50))
            .await
            .unwrap();
        assert!(none.is_none());

        let waiter = {
            let locks = locks.clone();
            tokio::spawn(async move { locks.try_acquire("a", LONG, LONG).await })
        };
        tokio::task::yield_now().await;
        let started = Instant::now();
        held.release().await.unwrap();
        let guard = waiter.await.unwrap().unwrap().unwrap();
        // Paused clock: the waiter got the lock without any time passing, so
        // it was woken by the release rather than by polling.
        assert_eq!(Instant::now(), started);
        assert_eq!(guard.token().get(), 2);
    }

    #[tokio::test]
    async fn drop_releases_and_renew_extends() {
        let locks = LocalLock::new();
        {
            let guard = locks
                .try_acquire("b", Duration::from_secs(5), Duration::ZERO)
                .await
                .unwrap()
                .unwrap();
            guard.renew(LONG).await.unwrap();
            assert!(guard.is_valid());
        }
        let again = locks.try_acquire("b", LONG, Duration::ZERO).await.unwrap();
        assert!(again.is_some(), "dropping the guard released the lock");
    }

    #[tokio::test]
    async fn invalid_requests_are_refused() {
        let locks = LocalLock::new();
        for (name, ttl) in [("", LONG), ("x\n", LONG), ("ok", Duration::ZERO)] {
            let err = locks
                .try_acquire(name, ttl, Duration::ZERO)
                .await
                .unwrap_err();
            assert!(matches!(err, LockError::Invalid(_)), "{err}");
        }
        let long = "n".repeat(MAX_LOCK_NAME_LEN + 1);
        assert!(locks
            .try_acquire(&long, LONG, Duration::ZERO)
            .await
            .is_err());
    }
}
