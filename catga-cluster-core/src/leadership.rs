//! The leadership snapshot every coordinator publishes.
//!
//! A [`Leadership`] value says what this node believes about the cluster's
//! leader right now. Coordinators publish it through a
//! [`tokio::sync::watch`] channel, so any number of subscribers always see the
//! latest snapshot and none can miss the last transition.
//!
//! ```
//! use catga_cluster_core::{Leadership, Role};
//!
//! let snapshot = Leadership::default();
//! assert_eq!(snapshot.role, Role::Follower);
//! assert!(!snapshot.is_leader());
//! assert!(snapshot.leader.is_none());
//! ```

use std::fmt;

use tokio::time::Instant;

use crate::{Endpoint, NodeId, NodeInfo};

/// The Raft role of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum Role {
    /// The node leads the cluster (its lease may still have expired).
    Leader,
    /// The node follows a leader, or waits for one.
    #[default]
    Follower,
    /// The node is campaigning for leadership.
    Candidate,
    /// The node replicates the log but does not vote.
    Learner,
    /// The node has stopped.
    Shutdown,
}

impl Role {
    /// The lower-case name used in logs and the HTTP API.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Follower => "follower",
            Role::Candidate => "candidate",
            Role::Learner => "learner",
            Role::Shutdown => "shutdown",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The leader this node knows of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct LeaderInfo {
    /// The leader's id.
    pub id: NodeId,
    /// The leader's advertised endpoint, where it is known.
    pub endpoint: Option<Endpoint>,
}

impl From<NodeInfo> for LeaderInfo {
    fn from(node: NodeInfo) -> Self {
        LeaderInfo {
            id: node.id,
            endpoint: Some(node.endpoint),
        }
    }
}

/// A snapshot of this node's view of leadership.
///
/// Cheap to clone. `epoch` increases by one on every published change, so two
/// snapshots with the same epoch are the same.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Leadership {
    /// This node's role.
    pub role: Role,
    /// The Raft term this view belongs to.
    pub term: u64,
    /// The leader this node knows of, which is this node when it leads.
    pub leader: Option<LeaderInfo>,
    /// Whether this node's leader lease held when the snapshot was taken.
    pub lease_valid: bool,
    /// When the lease stops holding, if this node leads and the coordinator
    /// tracks it. [`Leadership::is_leader`] compares it with the clock, so a
    /// snapshot read late never over-states leadership.
    pub lease_deadline: Option<Instant>,
    /// This node leads but is handing leadership over: it no longer claims
    /// leadership.
    pub transferring: bool,
    /// A local counter that increases on every change.
    pub epoch: u64,
}

impl Leadership {
    /// `true` while this snapshot says the node leads under a valid lease:
    /// role leader, lease flag set, and the lease deadline (if any) not yet
    /// passed.
    pub fn is_leader(&self) -> bool {
        self.claims_leadership() && self.lease_deadline.is_none_or(|d| Instant::now() < d)
    }

    /// The part of [`is_leader`](Leadership::is_leader) that does not read
    /// the clock: role leader, lease flag set, not handing over.
    pub fn claims_leadership(&self) -> bool {
        self.role == Role::Leader && self.lease_valid && !self.transferring
    }

    /// The known leader's id.
    pub fn leader_id(&self) -> Option<NodeId> {
        self.leader.as_ref().map(|l| l.id)
    }

    /// The known leader's endpoint.
    pub fn leader_endpoint(&self) -> Option<&Endpoint> {
        self.leader.as_ref().and_then(|l| l.endpoint.as_ref())
    }
}
