//! Membership changes that cannot brick a cluster.
//!
//! [`RaftNode::add_member`] and [`RaftNode::remove_member`] run on the
//! leader and follow four rules:
//!
//! 1. **One change at a time.** A second add or remove while one runs on
//!    this node fails at once with
//!    [`MembershipError::ChangeInProgress`]; so does any change while
//!    openraft's membership is uncommitted or joint.
//! 2. **Learner first, bounded catch-up.** A new node is added as a
//!    learner (it has no vote), then the call waits, on openraft's metrics
//!    channel and at most [`NodeOptions::catch_up_timeout`](crate::NodeOptions::catch_up_timeout)
//!    (10 s by default), until the leader's replication metrics show the
//!    learner has acknowledged the leader's *last log index as it stood
//!    right after the learner entry committed* — every entry the leader
//!    held when the node joined. Only then is it promoted to voter. A node
//!    that never catches up (nothing listens at its endpoint, a wrong
//!    secret, a dead host) is removed again and the call fails with
//!    [`MembershipError::MemberUnreachable`]; the voter set never changed.
//! 3. **Never lose a reachable quorum.** Before a promotion or a removal,
//!    the reachable voters (see [Reachability](#reachability); the leader
//!    always counts) must be a majority of the current voters and of the new voter
//!    set, or the change fails with [`MembershipError::QuorumAtRisk`]
//!    saying why. Removing the last voter is refused the same way, and so
//!    is removing the leader itself: hand leadership over first
//!    ([`RaftNode::transfer_leadership`]), then remove the node from the
//!    new leader. (openraft would let a leader commit its own removal and
//!    leave the cluster leaderless until an election; refusing keeps the
//!    admin call's outcome obvious.)
//! 4. **Bounded, and never half-done by a deadline.** Each Raft commit is
//!    bounded by [`NodeOptions::write_timeout`](crate::NodeOptions::write_timeout),
//!    and the whole call by [`RaftNode::membership_change_bound`]. The
//!    change runs in a task of its own that holds the one-change flag: a
//!    caller that gives up (an HTTP deadline, a dropped future) neither
//!    strands a learner nor cuts a joint configuration in half, and no
//!    other change starts until it has finished.
//!
//! # Reachability
//!
//! openraft 0.9.25's metrics show how far each follower's log matches the
//! leader's, never how long ago a follower answered, so the node records
//! per peer the instant of the last answered RPC (append, vote, snapshot,
//! whichever transport carried it). A voter is **reachable** when it
//! answered within the reachability window
//! ([`NodeOptions::reachability_window`](crate::NodeOptions::reachability_window),
//! by default `max(2 × election_timeout_max, 500 ms)`: a leader
//! heartbeats every voter each `heartbeat_interval`, so a live voter
//! answers many times per window; the 500 ms floor leaves room for a busy
//! machine with fast Raft timings). The same facts feed
//! [`RaftNode::health`]: a leader reports the voters it cannot reach, and
//! whether the reachable ones still form a quorum.
//!
//! ```no_run
//! use catga_cluster_core::{ClusterError, Endpoint, MembershipError, NodeId, NodeInfo};
//! use catga_cluster_raft::RaftNode;
//!
//! # async fn run(leader: RaftNode) -> Result<(), Box<dyn std::error::Error>> {
//! let newcomer = NodeInfo::new(NodeId::new(4), Endpoint::parse("http://10.0.0.4:5000")?);
//! match leader.add_member(newcomer).await {
//!     Ok(()) => println!("node 4 votes"),
//!     Err(ClusterError::Membership(MembershipError::MemberUnreachable { .. })) => {
//!         println!("node 4 never caught up; the voters are unchanged")
//!     }
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use catga_cluster_core::{ClusterCoordinator, ClusterError, MembershipError, NodeId, NodeInfo};
use openraft::error::{ChangeMembershipError, ClientWriteError, RaftError};
use openraft::raft::ClientWriteResponse;
use openraft::{BasicNode, ChangeMembers, RaftMetrics, ServerState};
use tokio::time::Instant;

use crate::node::{fatal, RaftNode};
use crate::quorum::VoterReach;
use crate::types::TypeConfig;

const TARGET: &str = "catga_cluster::raft::membership";

type ChangeResult =
    Result<ClientWriteResponse<TypeConfig>, RaftError<NodeId, ClientWriteError<NodeId, BasicNode>>>;

/// Holds the one-change flag; the last clone releases it.
#[derive(Debug)]
struct ChangeGuard(Arc<AtomicBool>);

impl ChangeGuard {
    fn try_acquire(flag: &Arc<AtomicBool>) -> Option<Arc<Self>> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Arc::new(ChangeGuard(flag.clone())))
    }
}

impl Drop for ChangeGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// How a catch-up wait ended.
enum CatchUp {
    Done,
    Lagging { matched: Option<u64> },
    Deposed,
    Stopped,
}

fn matched(m: &RaftMetrics<NodeId, BasicNode>, id: NodeId) -> Option<u64> {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id).copied().flatten())
        .map(|l| l.index)
}

fn voter_configs(m: &RaftMetrics<NodeId, BasicNode>) -> Vec<BTreeSet<NodeId>> {
    m.membership_config.membership().get_joint_config().clone()
}

impl RaftNode {
    /// The longest [`add_member`](RaftNode::add_member) or
    /// [`remove_member`](RaftNode::remove_member) takes:
    /// `catch_up_timeout + 3 × write_timeout` (25 s with the defaults) —
    /// the catch-up, two Raft commits (add the learner; promote it or
    /// remove it again) and one more write deadline for the checks around
    /// them. Serve these calls with a deadline longer than this.
    pub fn membership_change_bound(&self) -> Duration {
        let options = self.options();
        options.catch_up_timeout + options.write_timeout * 3
    }

    /// Adds a node: as a learner first, waits (bounded) until it has caught
    /// up, then promotes it to voter. Leader only; see the
    /// [module docs](crate::membership) for the rules.
    ///
    /// Adding a node that already votes at the same endpoint succeeds at
    /// once; a member id at another endpoint is refused
    /// ([`ClusterError::InvalidRequest`]).
    ///
    /// # Errors
    ///
    /// [`MembershipError::MemberUnreachable`] when the node did not catch
    /// up within `catch_up_timeout` (it was removed again),
    /// [`MembershipError::QuorumAtRisk`] when too few voters are reachable,
    /// [`MembershipError::ChangeInProgress`] while another change runs,
    /// [`ClusterError::NotLeader`] on a follower (or when leadership moved
    /// during the catch-up: the learner then stays, without a vote, until
    /// it is removed or added again), and
    /// [`ClusterError::UnknownOutcome`] when a commit missed its deadline.
    pub async fn add_member(&self, node: NodeInfo) -> Result<(), ClusterError> {
        let guard = self.begin_change()?;
        let this = self.clone();
        self.finish_in_background(tokio::spawn(async move {
            this.add_member_now(node, guard).await
        }))
        .await
    }

    /// Removes a node from the voters and the cluster (a learner from the
    /// cluster). Leader only; see the [module docs](crate::membership) for
    /// the rules. A stopped or unreachable voter can be removed as long as
    /// the reachable voters remain a majority of the voters left.
    ///
    /// # Errors
    ///
    /// [`ClusterError::InvalidRequest`] for a node that is not a member,
    /// [`MembershipError::QuorumAtRisk`] when the change would leave no
    /// reachable quorum, no voter, or removes the leader itself,
    /// [`MembershipError::ChangeInProgress`] while another change runs,
    /// [`ClusterError::NotLeader`] on a follower, and
    /// [`ClusterError::UnknownOutcome`] when a commit missed its deadline.
    pub async fn remove_member(&self, id: NodeId) -> Result<(), ClusterError> {
        let guard = self.begin_change()?;
        let this = self.clone();
        self.finish_in_background(tokio::spawn(async move {
            this.remove_member_now(id, guard).await
        }))
        .await
    }

    /// Leader and one-change checks that need no await, so a concurrent
    /// second change is refused at once.
    fn begin_change(&self) -> Result<Arc<ChangeGuard>, ClusterError> {
        if self.inner().stepping_down() || self.metrics().state != ServerState::Leader {
            return Err(self.not_leader_from(None).into());
        }
        ChangeGuard::try_acquire(self.inner().membership_change())
            .ok_or(ClusterError::Membership(MembershipError::ChangeInProgress))
    }

    /// Waits, within [`membership_change_bound`](Self::membership_change_bound),
    /// for a change running in its own task.
    async fn finish_in_background(
        &self,
        task: tokio::task::JoinHandle<Result<(), ClusterError>>,
    ) -> Result<(), ClusterError> {
        let bound = self.membership_change_bound();
        match tokio::time::timeout(bound, task).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(join)) => Err(ClusterError::Other(Box::new(join))),
            Err(_) => Err(ClusterError::UnknownOutcome {
                operation: "the membership change",
                after: bound,
            }),
        }
    }

    /// Refuses a change while openraft's membership is uncommitted or joint.
    async fn ensure_settled(&self) -> Result<(), ClusterError> {
        let settled = self
            .raft()
            .with_raft_state(|st| {
                let state = &st.membership_state;
                state.committed().log_id() == state.effective().log_id()
                    && state.effective().membership().get_joint_config().len() == 1
            })
            .await
            .map_err(fatal)?;
        if settled {
            Ok(())
        } else {
            Err(MembershipError::ChangeInProgress.into())
        }
    }

    /// The voters' (and learners') reachability right now, strictly from
    /// contact times.
    pub(crate) fn voter_reach(&self, m: &RaftMetrics<NodeId, BasicNode>) -> VoterReach {
        let inner = self.inner();
        let members = m.membership_config.membership();
        VoterReach::observe(
            inner.info().id,
            voter_configs(m),
            members.nodes().map(|(id, _)| *id),
            self.network().contacts(),
            inner.reachability_window(),
            Instant::now(),
        )
    }

    /// What health reports about quorum: the unreachable voters (leader
    /// only) and whether this node is in touch with a quorum (see
    /// [`RaftHealth`](crate::RaftHealth)).
    pub(crate) fn quorum_health(&self, m: &RaftMetrics<NodeId, BasicNode>) -> (Vec<NodeId>, bool) {
        let inner = self.inner();
        let window = inner.reachability_window();
        let now = Instant::now();
        let since = inner.leader_since();
        // Within the first window of a leader, or of following one, nothing
        // could have been heard yet: no verdict.
        let settling = since.is_none_or(|t| now.saturating_duration_since(t) < window);
        if m.state == ServerState::Leader {
            let reach = if settling {
                VoterReach::assume_all(voter_configs(m))
            } else {
                self.voter_reach(m)
            };
            return (reach.unreachable(), reach.has_quorum());
        }
        let leader = self.leadership().leader.map(|l| l.id);
        let in_touch = match leader {
            Some(leader) if leader != inner.info().id => {
                settling
                    || self
                        .network()
                        .contacts()
                        .last_heard(leader)
                        .is_some_and(|t| now.saturating_duration_since(t) <= window)
            }
            _ => false,
        };
        (Vec::new(), in_touch)
    }

    async fn add_member_now(
        &self,
        node: NodeInfo,
        guard: Arc<ChangeGuard>,
    ) -> Result<(), ClusterError> {
        self.ensure_settled().await?;
        let id = node.id;
        let addr = node.endpoint.as_str().to_owned();
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let known = membership.get_node(&id).map(|n| n.addr.clone());
        match &known {
            Some(existing) if *existing != addr => {
                return Err(ClusterError::InvalidRequest(format!(
                    "node {id} is already a member at {existing}; remove it first"
                )))
            }
            Some(_) if voters.contains(&id) => {
                tracing::info!(target: TARGET, node_id = %id, "already a voter; nothing to do");
                return Ok(());
            }
            _ => {}
        }
        let mut next = voters;
        next.insert(id);
        let action = format!("adding node {id}");
        // Fail fast: counting the newcomer as caught up, would the change
        // still leave a reachable quorum?
        self.voter_reach(&m)
            .check_change(&action, &next, Some(id))?;

        if known.is_none() {
            let raft = self.raft().clone();
            let learner = BasicNode::new(&addr);
            self.commit(&guard, "adding the learner", async move {
                raft.add_learner(id, learner, false).await
            })
            .await?;
            tracing::info!(target: TARGET, node = %node, "learner added; waiting for it to catch up");
        }

        let needed = self.metrics().last_log_index.unwrap_or(0);
        let after = self.options().catch_up_timeout;
        match self.catch_up(id, needed, after).await {
            CatchUp::Done => {}
            CatchUp::Lagging { matched } => {
                tracing::warn!(
                    target: TARGET,
                    node_id = %id,
                    matched = ?matched,
                    needed,
                    "the learner did not catch up in time; removing it again"
                );
                self.drop_learner(&guard, id).await;
                return Err(MembershipError::MemberUnreachable {
                    id,
                    matched,
                    needed,
                    after,
                }
                .into());
            }
            CatchUp::Deposed => return Err(self.not_leader_from(None).into()),
            CatchUp::Stopped => return Err(ClusterError::Shutdown),
        }

        // It answered while catching up, so it counts as reachable for real
        // now; the other voters may have changed meanwhile.
        if let Err(refusal) = self
            .voter_reach(&self.metrics())
            .check_change(&action, &next, None)
        {
            self.drop_learner(&guard, id).await;
            return Err(refusal.into());
        }
        let raft = self.raft().clone();
        self.commit(&guard, "promoting the learner", async move {
            raft.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), true)
                .await
        })
        .await?;
        tracing::info!(target: TARGET, node = %node, "member added");
        Ok(())
    }

    /// Waits on the metrics channel until `id` has acknowledged `needed`,
    /// this node stops leading, or `after` passes.
    async fn catch_up(&self, id: NodeId, needed: u64, after: Duration) -> CatchUp {
        let mut metrics = self.raft().metrics();
        let waited = tokio::time::timeout(after, async {
            metrics
                .wait_for(|m| m.state != ServerState::Leader || matched(m, id) >= Some(needed))
                .await
                .map(|m| m.state == ServerState::Leader)
        })
        .await;
        match waited {
            Ok(Ok(true)) => CatchUp::Done,
            Ok(Ok(false)) => CatchUp::Deposed,
            Ok(Err(_)) => CatchUp::Stopped,
            Err(_) => CatchUp::Lagging {
                matched: matched(&self.metrics(), id),
            },
        }
    }

    /// Removes a learner that must not stay; failures are logged (a learner
    /// has no vote, so the voters are unchanged either way).
    async fn drop_learner(&self, guard: &Arc<ChangeGuard>, id: NodeId) {
        let raft = self.raft().clone();
        let removed = self
            .commit(guard, "removing the learner again", async move {
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
            })
            .await;
        match removed {
            Ok(_) => tracing::info!(target: TARGET, node_id = %id, "learner removed again"),
            Err(e) => tracing::warn!(
                target: TARGET,
                node_id = %id,
                error = %e,
                "could not remove the learner again; it stays a learner (without a vote) until removed"
            ),
        }
    }

    async fn remove_member_now(
        &self,
        id: NodeId,
        guard: Arc<ChangeGuard>,
    ) -> Result<(), ClusterError> {
        self.ensure_settled().await?;
        let m = self.metrics();
        let membership = m.membership_config.membership();
        if membership.get_node(&id).is_none() {
            return Err(ClusterError::InvalidRequest(format!(
                "node {id} is not a member"
            )));
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let raft = self.raft().clone();
        if voters.contains(&id) {
            if id == self.inner().info().id {
                return Err(MembershipError::QuorumAtRisk {
                    reason: format!(
                        "node {id} is the leader: hand leadership over first, \
                         then remove it through the new leader"
                    ),
                }
                .into());
            }
            let mut next = voters;
            next.remove(&id);
            self.voter_reach(&m)
                .check_change(&format!("removing node {id}"), &next, None)?;
            let raft = raft.clone();
            self.commit(&guard, "removing the voter", async move {
                raft.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
            })
            .await?;
        }
        let still_node = self
            .metrics()
            .membership_config
            .membership()
            .get_node(&id)
            .is_some();
        if still_node {
            self.commit(&guard, "removing the node", async move {
                raft.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
            })
            .await?;
        }
        tracing::info!(target: TARGET, node_id = %id, "member removed");
        Ok(())
    }

    /// Runs one Raft membership commit in a task that holds the one-change
    /// flag, and waits for it up to the write deadline. A commit that
    /// misses the deadline keeps running (openraft finishes a joint change
    /// it started) and keeps other changes out until it ends.
    async fn commit<F>(
        &self,
        guard: &Arc<ChangeGuard>,
        operation: &'static str,
        change: F,
    ) -> Result<ClientWriteResponse<TypeConfig>, ClusterError>
    where
        F: Future<Output = ChangeResult> + Send + 'static,
    {
        let held = guard.clone();
        let task = tokio::spawn(async move {
            let answer = change.await;
            drop(held);
            answer
        });
        let after = self.options().write_timeout;
        match tokio::time::timeout(after, task).await {
            Ok(Ok(answer)) => self.change_result(answer),
            Ok(Err(join)) => Err(ClusterError::Other(Box::new(join))),
            Err(_) => {
                tracing::warn!(
                    target: TARGET,
                    operation,
                    "a membership commit missed its deadline; it goes on, and other changes wait for it"
                );
                Err(ClusterError::UnknownOutcome { operation, after })
            }
        }
    }

    fn change_result(
        &self,
        answer: ChangeResult,
    ) -> Result<ClientWriteResponse<TypeConfig>, ClusterError> {
        match answer {
            Ok(response) => Ok(response),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(self.not_leader_from(Some(&f)).into())
            }
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                ChangeMembershipError::InProgress(_),
            ))) => Err(MembershipError::ChangeInProgress.into()),
            Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e))) => {
                Err(ClusterError::InvalidRequest(e.to_string()))
            }
            Err(RaftError::Fatal(e)) => Err(fatal(e)),
        }
    }
}
