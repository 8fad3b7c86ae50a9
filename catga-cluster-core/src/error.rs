//! Errors shared by every catga-cluster crate.
//!
//! [`NotLeader`] is what leader-only code answers on a node that must not
//! serve the request; it carries a hint where to go instead. [`ClusterError`]
//! gathers the failures of cluster operations.
//!
//! ```
//! use catga_cluster_core::{NotLeader, NotLeaderReason, NodeId};
//!
//! let err = NotLeader::new(NotLeaderReason::NotLeader).with_leader_id(NodeId::new(2));
//! assert_eq!(err.to_string(), "this node is not the leader (leader: node 2)");
//! assert_eq!(err.reason.slug(), "not-leader");
//! ```

use std::fmt;
use std::time::Duration;

use crate::protocol::problem;
use crate::{Endpoint, LeaderInfo, Leadership, NodeId};

/// A boxed error, as tower uses.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a node refused to act as leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum NotLeaderReason {
    /// Another node leads.
    NotLeader,
    /// No leader is known (an election is under way or the cluster has no
    /// quorum).
    NoLeader,
    /// This node is handing leadership over.
    Transferring,
    /// This node was leader but its lease lapsed: it cannot be sure no other
    /// leader exists.
    LeaseExpired,
}

impl NotLeaderReason {
    /// The stable slug used in the HTTP API (`not-leader`, `no-leader`,
    /// `transferring`, `lease-expired`); the first two are also the
    /// [`problem`] types of a refusal.
    pub fn slug(self) -> &'static str {
        match self {
            NotLeaderReason::NotLeader => problem::NOT_LEADER,
            NotLeaderReason::NoLeader => problem::NO_LEADER,
            NotLeaderReason::Transferring => "transferring",
            NotLeaderReason::LeaseExpired => "lease-expired",
        }
    }
}

impl fmt::Display for NotLeaderReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

/// This node is not the leader, with a hint where the leader is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct NotLeader {
    /// Why the node refused.
    pub reason: NotLeaderReason,
    /// The leader's id, where known.
    pub leader_id: Option<NodeId>,
    /// The leader's endpoint, where known.
    pub leader_endpoint: Option<Endpoint>,
}

impl NotLeader {
    /// A refusal without a leader hint.
    pub fn new(reason: NotLeaderReason) -> Self {
        NotLeader {
            reason,
            leader_id: None,
            leader_endpoint: None,
        }
    }

    /// Adds the leader's id to the hint.
    pub fn with_leader_id(mut self, id: NodeId) -> Self {
        self.leader_id = Some(id);
        self
    }

    /// Adds the leader's endpoint to the hint.
    pub fn with_leader_endpoint(mut self, endpoint: Endpoint) -> Self {
        self.leader_endpoint = Some(endpoint);
        self
    }

    /// Adds a known leader to the hint.
    pub fn with_leader(mut self, leader: &LeaderInfo) -> Self {
        self.leader_id = Some(leader.id);
        self.leader_endpoint = leader.endpoint.clone();
        self
    }

    /// The refusal that a snapshot implies for a node that is not leader:
    /// `transferring` for a leader handing over, `lease-expired` for a leader
    /// whose lease lapsed, `not-leader` with the
    /// hint where another leader is known, `no-leader` otherwise.
    pub fn from_leadership(snapshot: &Leadership, local: NodeId) -> Self {
        match &snapshot.leader {
            Some(leader) if leader.id == local && snapshot.transferring => {
                NotLeader::new(NotLeaderReason::Transferring).with_leader(leader)
            }
            Some(leader) if leader.id == local => {
                NotLeader::new(NotLeaderReason::LeaseExpired).with_leader(leader)
            }
            Some(leader) => NotLeader::new(NotLeaderReason::NotLeader).with_leader(leader),
            None => NotLeader::new(NotLeaderReason::NoLeader),
        }
    }
}

impl fmt::Display for NotLeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason {
            NotLeaderReason::NotLeader => f.write_str("this node is not the leader")?,
            NotLeaderReason::NoLeader => f.write_str("no leader is known")?,
            NotLeaderReason::Transferring => f.write_str("this node is handing leadership over")?,
            NotLeaderReason::LeaseExpired => f.write_str("this node's leader lease expired")?,
        }
        match (&self.leader_id, &self.leader_endpoint) {
            (Some(id), Some(endpoint)) => write!(f, " (leader: node {id} at {endpoint})"),
            (Some(id), None) => write!(f, " (leader: node {id})"),
            (None, Some(endpoint)) => write!(f, " (leader: {endpoint})"),
            (None, None) => Ok(()),
        }
    }
}

impl std::error::Error for NotLeader {}

/// The failures of cluster operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The operation needs the leader and this node is not it.
    #[error(transparent)]
    NotLeader(#[from] NotLeader),
    /// The operation did not finish within its deadline and did not take
    /// effect.
    #[error("{operation} timed out after {after:?}")]
    Timeout {
        /// What timed out.
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// A write timed out after it was submitted, or Raft stopped after it
    /// took the write and before it answered: it may or may not have been
    /// applied. Retry with the same request id to learn the answer.
    #[error("the outcome of {operation} is unknown: no answer within {after:?}")]
    UnknownOutcome {
        /// What was submitted.
        operation: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The node is shutting down or has stopped.
    #[error("the cluster node is shut down")]
    Shutdown,
    /// The request was invalid.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Storage failed; the node cannot continue safely.
    #[error("storage failure: {0}")]
    Storage(String),
    /// A membership change was refused or failed; the voter set is as it
    /// was before the call.
    #[error(transparent)]
    Membership(#[from] MembershipError),
    /// Any other failure, with its source.
    #[error("cluster operation failed: {0}")]
    Other(#[source] BoxError),
}

/// Why a membership change was refused or did not complete. In every case
/// the voter set is unchanged.
///
/// ```
/// use catga_cluster_core::error::MembershipError;
/// use catga_cluster_core::NodeId;
///
/// let e = MembershipError::ChangeInProgress;
/// assert_eq!(e.slug(), "membership-change-in-progress");
/// let e = MembershipError::QuorumAtRisk { reason: "2 of 3 voters are unreachable".into() };
/// assert_eq!(e.slug(), "quorum-at-risk");
/// # let _ = NodeId::new(1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum MembershipError {
    /// The node being added never caught up as a learner within the
    /// bounded wait; it was removed again.
    #[error(
        "node {id} did not catch up as a learner within {after:?} \
         (replicated up to {matched:?}, needed {needed}); it was not added"
    )]
    MemberUnreachable {
        /// The node that was being added.
        id: NodeId,
        /// The last log index it acknowledged, if any.
        matched: Option<u64>,
        /// The index it had to reach.
        needed: u64,
        /// The bounded wait.
        #[cfg_attr(feature = "serde", serde(with = "duration_ms"))]
        after: Duration,
    },
    /// Another membership change has not finished.
    #[error("another membership change is in progress; retry when it has finished")]
    ChangeInProgress,
    /// The change would leave the voters without a reachable quorum.
    #[error("refused: {reason}")]
    QuorumAtRisk {
        /// What would be lost, in words.
        reason: String,
    },
}

impl MembershipError {
    /// The [`problem`] slug of the HTTP contract.
    pub fn slug(&self) -> &'static str {
        match self {
            MembershipError::MemberUnreachable { .. } => problem::MEMBER_UNREACHABLE,
            MembershipError::ChangeInProgress => problem::MEMBERSHIP_CHANGE_IN_PROGRESS,
            MembershipError::QuorumAtRisk { .. } => problem::QUORUM_AT_RISK,
        }
    }
}

#[cfg(feature = "serde")]
mod duration_ms {
    use std::time::Duration;

    pub(super) fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<Duration, D::Error> {
        <u64 as serde::Deserialize>::deserialize(d).map(Duration::from_millis)
    }
}

impl ClusterError {
    /// The leader hint, if this is a [`NotLeader`] error.
    pub fn not_leader(&self) -> Option<&NotLeader> {
        match self {
            ClusterError::NotLeader(e) => Some(e),
            _ => None,
        }
    }
}
