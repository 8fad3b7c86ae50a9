//! Test doubles: a coordinator whose role a test sets.
//!
//! [`ManualCoordinator`] implements [`ClusterCoordinator`] without a cluster,
//! so leader-only code can be unit-tested. Enable the `test-util` feature in
//! your `[dev-dependencies]`.
//!
//! ```
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
//!
//! let coord = ManualCoordinator::new_follower();
//! assert!(!coord.is_leader());
//! coord.set_leader();
//! assert!(coord.is_leader());
//!
//! let other = NodeInfo::new(NodeId::new(2), Endpoint::parse("http://127.0.0.1:5002").unwrap());
//! coord.set_follower(Some(other));
//! assert_eq!(coord.leadership().leader_id(), Some(NodeId::new(2)));
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::{
    ClusterCoordinator, Endpoint, LeaderFence, LeaderInfo, Leadership, NodeId, NodeInfo, NotLeader,
    Role,
};

/// A [`ClusterCoordinator`] driven by the test: it leads when told to.
///
/// Every [`set_leader`](ManualCoordinator::set_leader) starts a new term;
/// [`ensure_leader`](ClusterCoordinator::ensure_leader) answers with a fence
/// whose index grows on every call.
#[derive(Debug, Clone)]
pub struct ManualCoordinator {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    node: NodeInfo,
    tx: watch::Sender<Leadership>,
    checks: AtomicU64,
}

impl ManualCoordinator {
    /// A coordinator for `node` that starts as a follower with no known
    /// leader, in term 0.
    pub fn new(node: NodeInfo) -> Self {
        let (tx, _) = watch::channel(Leadership::default());
        ManualCoordinator {
            inner: Arc::new(Inner {
                node,
                tx,
                checks: AtomicU64::new(0),
            }),
        }
    }

    /// Node 1 at `http://127.0.0.1:1`, a follower with no known leader.
    pub fn new_follower() -> Self {
        let endpoint = Endpoint::from_normalised("http://127.0.0.1:1");
        ManualCoordinator::new(NodeInfo::new(NodeId::new(1), endpoint))
    }

    /// Node 1, leading in term 1.
    pub fn new_leader() -> Self {
        let coord = ManualCoordinator::new_follower();
        coord.set_leader();
        coord
    }

    /// Applies `change` to the snapshot and publishes it with a new epoch.
    pub fn update(&self, change: impl FnOnce(&mut Leadership)) {
        self.inner.tx.send_modify(|l| {
            change(l);
            l.epoch += 1;
        });
    }

    /// This node leads, in a new term, with a valid lease.
    pub fn set_leader(&self) {
        let me = LeaderInfo::from(self.inner.node.clone());
        self.update(|l| {
            l.role = Role::Leader;
            l.term += 1;
            l.leader = Some(me);
            l.lease_valid = true;
            l.lease_deadline = None;
        });
    }

    /// This node follows `leader` (`None`: no leader known).
    pub fn set_follower(&self, leader: Option<NodeInfo>) {
        self.update(|l| {
            l.role = Role::Follower;
            l.leader = leader.map(LeaderInfo::from);
            l.lease_valid = false;
            l.lease_deadline = None;
        });
    }

    /// This node still has the leader role but its lease lapsed.
    pub fn expire_lease(&self) {
        self.update(|l| l.lease_valid = false);
    }

    /// The node has shut down.
    pub fn shutdown(&self) {
        self.update(|l| {
            l.role = Role::Shutdown;
            l.leader = None;
            l.lease_valid = false;
        });
    }

    /// How many times [`ClusterCoordinator::ensure_leader`] was called.
    pub fn leader_checks(&self) -> u64 {
        self.inner.checks.load(Ordering::SeqCst)
    }
}

impl ClusterCoordinator for ManualCoordinator {
    fn node(&self) -> &NodeInfo {
        &self.inner.node
    }

    fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.inner.tx.subscribe()
    }

    fn leadership(&self) -> Leadership {
        self.inner.tx.borrow().clone()
    }

    fn is_leader(&self) -> bool {
        self.inner.tx.borrow().is_leader()
    }

    fn ensure_leader(&self) -> impl Future<Output = Result<LeaderFence, NotLeader>> + Send {
        let check = self.inner.checks.fetch_add(1, Ordering::SeqCst) + 1;
        let snapshot = self.leadership();
        let result = if snapshot.is_leader() {
            Ok(LeaderFence {
                term: snapshot.term,
                index: check,
            })
        } else {
            Err(NotLeader::from_leadership(&snapshot, self.inner.node.id))
        };
        std::future::ready(result)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{LeaderExecution, NotLeaderReason};

    fn other() -> NodeInfo {
        NodeInfo::new(
            NodeId::new(2),
            Endpoint::parse("http://127.0.0.1:2").unwrap(),
        )
    }

    #[tokio::test]
    async fn not_leader_reasons_follow_the_snapshot() {
        let coord = ManualCoordinator::new_follower();
        let err = coord.ensure_leader().await.unwrap_err();
        assert_eq!(err.reason, NotLeaderReason::NoLeader);
        coord.set_follower(Some(other()));
        let err = coord.ensure_leader().await.unwrap_err();
        assert_eq!(err.reason, NotLeaderReason::NotLeader);
        assert_eq!(err.leader_id, Some(NodeId::new(2)));
        assert_eq!(err.leader_endpoint.unwrap().as_str(), "http://127.0.0.1:2");
        coord.set_leader();
        coord.expire_lease();
        assert!(!coord.is_leader());
        let err = coord.ensure_leader().await.unwrap_err();
        assert_eq!(err.reason, NotLeaderReason::LeaseExpired);
    }

    #[tokio::test]
    async fn epochs_increase_and_fences_grow() {
        let coord = ManualCoordinator::new_follower();
        let e0 = coord.leadership().epoch;
        coord.set_leader();
        let e1 = coord.leadership().epoch;
        assert!(e1 > e0);
        let a = coord.ensure_leader().await.unwrap();
        let b = coord.ensure_leader().await.unwrap();
        assert!(b > a);
        coord.set_follower(None);
        coord.set_leader();
        let c = coord.ensure_leader().await.unwrap();
        assert!(c.term > b.term && c > b);
    }

    #[tokio::test(start_paused = true)]
    async fn waits_have_deadlines() {
        let coord = ManualCoordinator::new_follower();
        assert!(coord
            .wait_for_leader(Duration::from_millis(10))
            .await
            .is_err());
        assert!(coord
            .wait_for_leadership(Duration::from_millis(10))
            .await
            .is_err());
        let c2 = coord.clone();
        let waiter =
            tokio::spawn(async move { c2.wait_for_leadership(Duration::from_secs(5)).await });
        tokio::task::yield_now().await;
        coord.set_leader();
        let fence = waiter.await.unwrap().unwrap();
        assert_eq!(fence.term, 1);
        let leader = coord
            .wait_for_leader(Duration::from_millis(1))
            .await
            .unwrap();
        assert_eq!(leader.id, NodeId::new(1));
    }

    #[tokio::test]
    async fn execute_if_leader_tells_the_three_outcomes_apart() {
        let coord = ManualCoordinator::new_follower();
        let outcome = coord.execute_if_leader(|_, _| async { 1 }).await;
        assert!(outcome.is_not_leader());

        coord.set_leader();
        let outcome = coord.execute_if_leader(|_, _| async { 2 }).await;
        assert_eq!(outcome.completed(), Some(2));

        let c2 = coord.clone();
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let run = tokio::spawn(async move {
            c2.execute_if_leader(|fence, cancel| async move {
                let _ = started_tx.send(());
                cancel.cancelled().await;
                fence.term
            })
            .await
        });
        started_rx.await.unwrap();
        coord.set_follower(Some(other()));
        match run.await.unwrap() {
            LeaderExecution::LeadershipLost { output, fence } => {
                assert_eq!(output, 1);
                assert_eq!(fence.term, 1);
            }
            other => panic!("expected leadership lost, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn execute_if_leader_notices_a_lapsed_lease_deadline() {
        let coord = ManualCoordinator::new_leader();
        coord.update(|l| {
            l.lease_deadline = Some(tokio::time::Instant::now() + Duration::from_millis(100))
        });
        let outcome = coord
            .execute_if_leader(|_, cancel| async move {
                cancel.cancelled().await;
                "stopped"
            })
            .await;
        assert!(matches!(
            outcome,
            LeaderExecution::LeadershipLost {
                output: "stopped",
                ..
            }
        ));
    }
}
