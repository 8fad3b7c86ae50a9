//! The [`ClusterCoordinator`] trait: who leads, and leader-only execution.
//!
//! A coordinator is the one place that knows whether this node leads. The Raft
//! node of `catga-cluster-raft` implements it; so does
//! [`ManualCoordinator`](crate::testing::ManualCoordinator) for tests.
//!
//! # Lease safety
//!
//! [`ClusterCoordinator::is_leader`] is cheap and synchronous, and it must
//! never say `true` on a node that another node may already have replaced.
//! Implementations answer `true` only while the node is leader **and** its
//! leader lease holds: for Raft, the last acknowledgement from a quorum is
//! younger than the maximum election timeout minus a safety margin. Followers
//! refuse to vote for anybody else for that long after hearing from their
//! leader, so no second leader can exist while `is_leader()` is `true`
//! (assuming clocks that advance at roughly the same rate).
//!
//! Work with external side effects should not rely on `is_leader()` alone but
//! carry a fence: [`ClusterCoordinator::ensure_leader`] confirms leadership
//! with a quorum round and returns a [`LeaderFence`], which downstream
//! resources compare with the highest fence they have seen and reject when it
//! is older.
//!
//! ```
//! # #[cfg(feature = "test-util")] {
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_core::{ClusterCoordinator, LeaderExecution};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let coord = ManualCoordinator::new_leader();
//! let outcome = coord
//!     .execute_if_leader(|fence, _cancel| async move { fence.term })
//!     .await;
//! assert!(matches!(outcome, LeaderExecution::Completed(1)));
//! # });
//! # }
//! ```
//!
//! # Implementing a coordinator
//!
//! Everything in the workspace — the tower middleware, the axum routes, the
//! singleton runner — works with any `ClusterCoordinator`, so leadership
//! can come from somewhere other than the Raft node: etcd or Consul leases,
//! a Kubernetes `Lease`, a database advisory lock, or configuration. Three
//! methods are required:
//!
//! * [`node`](ClusterCoordinator::node): this node's id and endpoint; it
//!   never changes.
//! * [`subscribe`](ClusterCoordinator::subscribe): a
//!   [`watch`] receiver of [`Leadership`] snapshots. The
//!   channel **must** hold the current snapshot from the start (a new
//!   receiver reads it without waiting), publish a new snapshot — with a
//!   larger `epoch` — on every change, so that `changed()` wakes every
//!   waiter (the forwarding middleware's hold, the waits, the singleton
//!   runner and [`execute_if_leader`](ClusterCoordinator::execute_if_leader)
//!   sleep on it and never poll), and close only when the coordinator is
//!   gone for good (waiters treat a closed channel as shutdown). A snapshot
//!   must never say "leader with a valid lease" while another node may
//!   already lead: publish the loss of leadership no later than it can
//!   happen, or set [`Leadership::lease_deadline`] so that
//!   [`Leadership::is_leader`] turns false on its own when the lease runs
//!   out. The provided [`is_leader`](ClusterCoordinator::is_leader) and
//!   [`leadership`](ClusterCoordinator::leadership) read this channel;
//!   override them only with something as strict and cheaper.
//! * [`ensure_leader`](ClusterCoordinator::ensure_leader): the exact check
//!   (a quorum round, a lease renewal, a compare-and-swap on the lock)
//!   that returns a [`LeaderFence`] which grows whenever leadership moves,
//!   or the refusal.
//!
//! [`not_leader_for`] builds that refusal from the current snapshot: the
//! [`NotLeader`] with the reason (`not-leader` with the leader's id and
//! endpoint, `no-leader`, `transferring`, `lease-expired`) that the
//! middleware turns into the `503` answer and its `x-catga-leader` hint, so
//! that every coordinator refuses the same way. Use it wherever your
//! coordinator says no.
//!
//! A coordinator whose leader is named by configuration — no election, one
//! writer — with a switch to step down before maintenance:
//!
//! ```
//! use std::sync::Arc;
//! use catga_cluster_core::coordinator::not_leader_for;
//! use catga_cluster_core::{
//!     watch, ClusterCoordinator, LeaderFence, LeaderInfo, Leadership, NodeId, NodeInfo,
//!     NotLeader, NotLeaderReason, Role,
//! };
//!
//! #[derive(Clone)]
//! struct StaticCoordinator {
//!     me: NodeInfo,
//!     // Shared by the clones; the channel closes when the last one goes.
//!     snapshots: Arc<watch::Sender<Leadership>>,
//! }
//!
//! impl StaticCoordinator {
//!     fn new(me: NodeInfo, leader: NodeInfo) -> Self {
//!         let leads = me.id == leader.id;
//!         let (snapshots, _) = watch::channel(Leadership {
//!             role: if leads { Role::Leader } else { Role::Follower },
//!             term: 1,
//!             leader: Some(LeaderInfo::from(leader)),
//!             // No lease can lapse: the configuration is the lease.
//!             lease_valid: leads,
//!             epoch: 1,
//!             ..Leadership::default()
//!         });
//!         StaticCoordinator { me, snapshots: Arc::new(snapshots) }
//!     }
//!
//!     /// Stops leading: one new snapshot wakes every subscriber.
//!     fn step_down(&self) {
//!         self.snapshots.send_modify(|l| {
//!             l.role = Role::Follower;
//!             l.lease_valid = false;
//!             l.leader = None;
//!             l.epoch += 1;
//!         });
//!     }
//! }
//!
//! impl ClusterCoordinator for StaticCoordinator {
//!     fn node(&self) -> &NodeInfo {
//!         &self.me
//!     }
//!
//!     fn subscribe(&self) -> watch::Receiver<Leadership> {
//!         self.snapshots.subscribe()
//!     }
//!
//!     async fn ensure_leader(&self) -> Result<LeaderFence, NotLeader> {
//!         let snapshot = self.leadership();
//!         if !snapshot.is_leader() {
//!             return Err(not_leader_for(self));
//!         }
//!         // Leadership never moves within a term here, so the term alone
//!         // orders the fences.
//!         Ok(LeaderFence { term: snapshot.term, index: 0 })
//!     }
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let node = |id: u64| NodeInfo::new(NodeId::new(id), format!("http://10.0.0.{id}:5000").parse().unwrap());
//! let writer = StaticCoordinator::new(node(1), node(1));
//! let replica = StaticCoordinator::new(node(2), node(1));
//! assert!(writer.is_leader());
//! assert_eq!(writer.ensure_leader().await.unwrap().term, 1);
//!
//! // The replica refuses with the hint where to go instead.
//! let refusal = replica.ensure_leader().await.unwrap_err();
//! assert_eq!(refusal.reason, NotLeaderReason::NotLeader);
//! assert_eq!(refusal.leader_id, Some(NodeId::new(1)));
//!
//! let mut changes = writer.subscribe();
//! writer.step_down();
//! changes.changed().await.unwrap();
//! assert!(!writer.is_leader());
//! assert_eq!(writer.ensure_leader().await.unwrap_err().reason, NotLeaderReason::NoLeader);
//! # });
//! ```

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{ClusterError, LeaderInfo, Leadership, NodeInfo, NotLeader, NotLeaderReason};

/// Proof that this node led the cluster in `term` when the log had reached
/// `index`.
///
/// Fences order by term, then index: a resource that remembers the highest
/// fence it has accepted rejects anything lower, so work started by a deposed
/// leader cannot overwrite work of its successor.
///
/// ```
/// use catga_cluster_core::LeaderFence;
///
/// /// What a protected resource keeps: the highest fence it accepted.
/// struct Guarded {
///     highest: Option<LeaderFence>,
/// }
///
/// impl Guarded {
///     fn write(&mut self, fence: LeaderFence) -> Result<(), &'static str> {
///         if self.highest.is_some_and(|h| fence < h) {
///             return Err("stale leader");
///         }
///         self.highest = Some(fence);
///         Ok(())
///     }
/// }
///
/// let mut store = Guarded { highest: None };
/// let old = LeaderFence { term: 3, index: 120 };
/// let new = LeaderFence { term: 4, index: 7 }; // a later term wins
/// store.write(old).unwrap();
/// store.write(new).unwrap();
/// assert_eq!(store.write(old), Err("stale leader"));
/// assert_eq!(new.to_string(), "4:7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LeaderFence {
    /// The term in which leadership was confirmed.
    pub term: u64,
    /// The log index at which leadership was confirmed.
    pub index: u64,
}

impl fmt::Display for LeaderFence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.term, self.index)
    }
}

/// The outcome of [`ClusterCoordinator::execute_if_leader`].
#[derive(Debug)]
#[must_use]
pub enum LeaderExecution<T> {
    /// This node was not the leader: the closure did not run.
    NotLeader(NotLeader),
    /// The closure ran to the end while this node led.
    Completed(T),
    /// Leadership was lost while the closure ran. Its cancellation token was
    /// cancelled at that moment and `output` is what it returned afterwards:
    /// treat any side effect it made after `fence` with suspicion.
    LeadershipLost {
        /// What the closure returned.
        output: T,
        /// The fence the closure was given.
        fence: LeaderFence,
    },
}

impl<T> LeaderExecution<T> {
    /// The closure's output, if it completed while this node led.
    pub fn completed(self) -> Option<T> {
        match self {
            LeaderExecution::Completed(t) => Some(t),
            _ => None,
        }
    }

    /// `true` if the closure did not run because this node was not leader.
    pub fn is_not_leader(&self) -> bool {
        matches!(self, LeaderExecution::NotLeader(_))
    }
}

/// Leader election as a service: which node leads, and leader-only execution.
///
/// Implement the required methods; the waits and
/// [`execute_if_leader`](ClusterCoordinator::execute_if_leader) are provided
/// on top of [`subscribe`](ClusterCoordinator::subscribe) and
/// [`ensure_leader`](ClusterCoordinator::ensure_leader).
pub trait ClusterCoordinator: Send + Sync + 'static {
    /// This node's id and endpoint.
    fn node(&self) -> &NodeInfo;

    /// A receiver of leadership snapshots. It always holds the latest one,
    /// and `changed()` wakes on every new one.
    fn subscribe(&self) -> watch::Receiver<Leadership>;

    /// The current leadership snapshot.
    fn leadership(&self) -> Leadership {
        self.subscribe().borrow().clone()
    }

    /// `true` only while this node leads under a valid lease (see the
    /// [module documentation](self) for the rule). Cheap and synchronous.
    fn is_leader(&self) -> bool {
        self.subscribe().borrow().is_leader()
    }

    /// Confirms leadership exactly, with a quorum round (a read-index check),
    /// and returns a fence for leader-only work.
    fn ensure_leader(&self) -> impl Future<Output = Result<LeaderFence, NotLeader>> + Send;

    /// Waits until this node leads, up to `timeout`, and returns a fence.
    fn wait_for_leadership(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<LeaderFence, ClusterError>> + Send {
        async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut rx = self.subscribe();
            loop {
                let waited = tokio::time::timeout_at(deadline, async {
                    rx.wait_for(Leadership::is_leader).await.map(|_| ())
                })
                .await;
                match waited {
                    Err(_) => {
                        return Err(ClusterError::Timeout {
                            operation: "waiting for leadership",
                            after: timeout,
                        })
                    }
                    Ok(Err(_)) => return Err(ClusterError::Shutdown),
                    Ok(Ok(_)) => {}
                }
                match tokio::time::timeout_at(deadline, self.ensure_leader()).await {
                    Ok(Ok(fence)) => return Ok(fence),
                    // Leadership moved between the snapshot and the check:
                    // wait for the next change.
                    Ok(Err(_)) => {
                        if tokio::time::timeout_at(deadline, rx.changed())
                            .await
                            .is_err()
                        {
                            return Err(ClusterError::Timeout {
                                operation: "waiting for leadership",
                                after: timeout,
                            });
                        }
                    }
                    Err(_) => {
                        return Err(ClusterError::Timeout {
                            operation: "waiting for leadership",
                            after: timeout,
                        })
                    }
                }
            }
        }
    }

    /// Waits until some node is known to lead, up to `timeout`.
    ///
    /// Fails with `NotLeader(no-leader)` when no leader appears in time.
    fn wait_for_leader(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<LeaderInfo, NotLeader>> + Send {
        async move {
            let mut rx = self.subscribe();
            let waited = tokio::time::timeout(timeout, async {
                rx.wait_for(|l| l.leader.is_some())
                    .await
                    .ok()
                    .and_then(|l| l.leader.clone())
            })
            .await;
            waited
                .ok()
                .flatten()
                .ok_or_else(|| NotLeader::new(NotLeaderReason::NoLeader))
        }
    }

    /// Runs `f` only if this node leads.
    ///
    /// Leadership is confirmed with [`ensure_leader`](Self::ensure_leader);
    /// `f` receives the fence and a cancellation token that is cancelled the
    /// moment this node stops leading (a new snapshot without leadership, a
    /// new term, or the lease deadline passing). After cancellation `f` is
    /// still polled to its end, so it can stop cleanly; drop the returned
    /// future (or wrap it in a timeout) to abandon it instead.
    fn execute_if_leader<F, Fut, T>(&self, f: F) -> impl Future<Output = LeaderExecution<T>> + Send
    where
        F: FnOnce(LeaderFence, CancellationToken) -> Fut + Send,
        Fut: Future<Output = T> + Send,
        T: Send,
    {
        async move {
            let mut rx = self.subscribe();
            let fence = match self.ensure_leader().await {
                Ok(fence) => fence,
                Err(not_leader) => return LeaderExecution::NotLeader(not_leader),
            };
            let cancel = CancellationToken::new();
            let work = f(fence, cancel.clone());
            tokio::pin!(work);
            tokio::select! {
                biased;
                output = &mut work => LeaderExecution::Completed(output),
                () = leadership_lost(&mut rx, fence.term) => {
                    tracing::warn!(
                        target: "catga_cluster::coordinator",
                        term = fence.term,
                        "leadership lost while leader-only work ran; cancelling it"
                    );
                    cancel.cancel();
                    LeaderExecution::LeadershipLost { output: work.await, fence }
                }
            }
        }
    }
}

/// Resolves when the snapshots in `rx` stop saying that this node leads in
/// `term`: a non-leader snapshot, another term, a lapsed lease deadline, or
/// the publisher going away.
pub async fn leadership_lost(rx: &mut watch::Receiver<Leadership>, term: u64) {
    loop {
        let deadline = {
            let snapshot = rx.borrow_and_update();
            if !snapshot.is_leader() || snapshot.term != term {
                return;
            }
            snapshot.lease_deadline
        };
        match deadline {
            Some(deadline) => {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(deadline) => {}
                }
            }
            None => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

impl<C: ClusterCoordinator> ClusterCoordinator for Arc<C> {
    fn node(&self) -> &NodeInfo {
        (**self).node()
    }

    fn subscribe(&self) -> watch::Receiver<Leadership> {
        (**self).subscribe()
    }

    fn leadership(&self) -> Leadership {
        (**self).leadership()
    }

    fn is_leader(&self) -> bool {
        (**self).is_leader()
    }

    fn ensure_leader(&self) -> impl Future<Output = Result<LeaderFence, NotLeader>> + Send {
        (**self).ensure_leader()
    }
}

/// Convenience for implementors: the refusal for a node that is not leader,
/// derived from its current snapshot.
pub fn not_leader_for<C: ClusterCoordinator>(coordinator: &C) -> NotLeader {
    let snapshot = coordinator.leadership();
    NotLeader::from_leadership(&snapshot, coordinator.node().id)
}
