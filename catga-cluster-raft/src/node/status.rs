//! What a node reports about itself: [`RaftHealth`] for health checks and
//! [`NodeStatus`] for status pages.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use catga_cluster_core::{Endpoint, LeaderInfo, Leadership, NodeId, NodeInfo, Role};
use openraft::ServerState;

use super::{publish, FailoverStatus, RaftNode};

/// A health snapshot of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RaftHealth {
    /// Raft runs (it has not stopped on a fatal error or shut down).
    pub running: bool,
    /// The fatal error that stopped Raft, if any.
    pub fatal: Option<String>,
    /// This node's role.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The known leader.
    pub leader: Option<LeaderInfo>,
    /// Whether this node leads under a valid lease.
    pub lease_valid: bool,
    /// Entries in the log that are not applied yet.
    pub apply_lag: u64,
    /// How far behind the leader this node's log is, where known (leader
    /// only knows its followers; followers report 0).
    pub replication_lag: u64,
    /// Leader changes seen since start.
    pub leader_changes: u64,
    /// Leader changes seen in the last ten seconds.
    pub recent_leader_changes: usize,
    /// On a leader: the voters that did not answer within the reachability
    /// window (see [`crate::membership`]), in id order. Empty on other nodes,
    /// and during a leader's first window (no voter could have answered
    /// yet).
    pub unreachable_voters: Vec<NodeId>,
    /// Whether this node is in touch with a quorum. On a leader: the
    /// reachable voters (itself included) are a majority of every voter
    /// configuration. Elsewhere: a leader is known and was heard from
    /// within the reachability window — a follower cannot see the leader's
    /// other contacts.
    pub quorum_reachable: bool,
}

/// A member of the cluster, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member.
    pub node: NodeInfo,
    /// Whether it votes.
    pub voter: bool,
}

/// The status of a node, for `/cluster/status`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeStatus {
    /// This node.
    pub node: NodeInfo,
    /// The leadership snapshot.
    pub leadership: Leadership,
    /// The members, voters and learners.
    pub members: Vec<MemberStatus>,
    /// The last log index.
    pub last_log_index: u64,
    /// The last applied log index.
    pub last_applied: u64,
    /// The fail-over view: whether the crash fast path runs, the leader
    /// this node watches, the last fail-over that elected this node.
    pub failover: FailoverStatus,
}

impl RaftNode {
    /// The health snapshot.
    pub fn health(&self) -> RaftHealth {
        let m = self.metrics();
        let leadership = self.inner.leadership.borrow().clone();
        let last_log = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        let replication_lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.values()
                    .map(|matched| last_log.saturating_sub(matched.map_or(0, |l| l.index)))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let recent = {
            let mut recent = self
                .inner
                .recent_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            publish::prune_recent(&mut recent);
            recent.len()
        };
        let (unreachable_voters, quorum_reachable) = self.quorum_health(&m);
        RaftHealth {
            running: m.running_state.is_ok() && m.state != ServerState::Shutdown,
            fatal: m.running_state.err().map(|e| e.to_string()),
            role: leadership.role,
            term: m.current_term,
            lease_valid: leadership.is_leader(),
            leader: leadership.leader,
            apply_lag: last_log.saturating_sub(applied),
            replication_lag,
            leader_changes: self.inner.leader_changes.load(Ordering::Relaxed),
            recent_leader_changes: recent,
            unreachable_voters,
            quorum_reachable,
        }
    }

    /// The node's status: leadership, members and log positions.
    pub fn status(&self) -> NodeStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .filter_map(|(id, node)| {
                Endpoint::parse(&node.addr)
                    .ok()
                    .map(|endpoint| MemberStatus {
                        node: NodeInfo::new(*id, endpoint),
                        voter: voters.contains(id),
                    })
            })
            .collect();
        NodeStatus {
            node: self.inner.info.clone(),
            leadership: self.inner.leadership.borrow().clone(),
            members,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |l| l.index),
            failover: self.failover_status(),
        }
    }
}
