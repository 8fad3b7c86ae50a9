//! Which voters this node can reach, and whether they form a quorum.
//!
//! openraft 0.9.25's metrics show how far each follower's log matches the
//! leader's, never how long ago a follower answered, so the node keeps its
//! own contact times ([`PeerContacts`], updated by the transport on every
//! answered RPC). A voter is **reachable** when it answered an RPC of this
//! node within the reachability window
//! ([`NodeOptions::reachability_window`](crate::NodeOptions::reachability_window),
//! by default `max(2 × election_timeout_max, 500 ms)`: a leader heartbeats
//! every voter each `heartbeat_interval`, so a live voter answers many times
//! per window, and a voter silent for two whole election timeouts is
//! down or cut off). This node itself always counts as reachable.
//!
//! A change of the voter set passes through a joint configuration, so it
//! commits only with a majority of the old voters *and* of the new ones;
//! [`VoterReach::check_change`] refuses a change unless the reachable
//! voters are a majority of both.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Duration;

use catga_cluster_core::{MembershipError, NodeId};
use tokio::time::Instant;

use crate::network::contacts::PeerContacts;

/// The smallest reachability window, whatever the Raft timings: room for
/// scheduling delays on a busy machine.
pub(crate) const MIN_REACHABILITY_WINDOW: Duration = Duration::from_millis(500);

/// The default reachability window for `election_timeout_max`.
pub(crate) fn default_window(election_timeout_max: Duration) -> Duration {
    (election_timeout_max * 2).max(MIN_REACHABILITY_WINDOW)
}

/// How many of `n` voters make a quorum.
pub(crate) fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// The voters and which of them are reachable, as this node sees them now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VoterReach {
    /// The voter sets a decision needs a majority of: one, or two during a
    /// joint change.
    configs: Vec<BTreeSet<NodeId>>,
    /// The reachable nodes (this node included).
    reachable: BTreeSet<NodeId>,
}

impl VoterReach {
    /// Reachability from the contact times: `me` and every voter or
    /// learner (`learners`: a node about to be promoted must count too) that
    /// answered within `window` before `now`.
    pub(crate) fn observe(
        me: NodeId,
        configs: Vec<BTreeSet<NodeId>>,
        learners: impl IntoIterator<Item = NodeId>,
        contacts: &PeerContacts,
        window: Duration,
        now: Instant,
    ) -> Self {
        let reachable = configs
            .iter()
            .flatten()
            .copied()
            .chain(learners)
            .filter(|id| {
                *id == me
                    || contacts
                        .last_answer(*id)
                        .is_some_and(|t| now.saturating_duration_since(t) <= window)
            })
            .collect();
        VoterReach { configs, reachable }
    }

    /// Every voter counted as reachable: what a node that has led for less
    /// than one window knows (no voter could have answered yet).
    pub(crate) fn assume_all(configs: Vec<BTreeSet<NodeId>>) -> Self {
        let reachable = configs.iter().flatten().copied().collect();
        VoterReach { configs, reachable }
    }

    #[cfg(test)]
    fn new(configs: Vec<BTreeSet<NodeId>>, reachable: BTreeSet<NodeId>) -> Self {
        VoterReach { configs, reachable }
    }

    /// Every voter, in every configuration.
    pub(crate) fn voters(&self) -> BTreeSet<NodeId> {
        self.configs.iter().flatten().copied().collect()
    }

    /// The voters that are not reachable, in id order.
    pub(crate) fn unreachable(&self) -> Vec<NodeId> {
        self.voters()
            .into_iter()
            .filter(|id| !self.reachable.contains(id))
            .collect()
    }

    /// Whether the reachable voters are a majority of every configuration:
    /// whether this node, leading, can commit.
    pub(crate) fn has_quorum(&self) -> bool {
        self.configs
            .iter()
            .all(|c| self.reachable_in(c) >= majority(c.len()))
    }

    fn reachable_in(&self, config: &BTreeSet<NodeId>) -> usize {
        config
            .iter()
            .filter(|id| self.reachable.contains(id))
            .count()
    }

    /// Refuses a change to the voter set `next` (described by `action`,
    /// e.g. "removing node 2") unless it can commit and leaves a reachable
    /// quorum: the reachable voters must be a majority of the current
    /// voters and of `next`. `newcomer` counts as reachable (a node being
    /// added that has just caught up).
    pub(crate) fn check_change(
        &self,
        action: &str,
        next: &BTreeSet<NodeId>,
        newcomer: Option<NodeId>,
    ) -> Result<(), MembershipError> {
        let refuse = |reason: String| Err(MembershipError::QuorumAtRisk { reason });
        if next.is_empty() {
            return refuse(format!("{action} would leave no voters"));
        }
        for config in &self.configs {
            let reachable = self.reachable_in(config);
            let needed = majority(config.len());
            if reachable < needed {
                let mut reason = format!(
                    "only {reachable} of {} voters are reachable and a quorum needs {needed}, \
                     so {action} could not commit",
                    config.len()
                );
                let missing: Vec<NodeId> = config
                    .iter()
                    .copied()
                    .filter(|id| !self.reachable.contains(id))
                    .collect();
                let _ = write!(reason, " (unreachable: {})", list(&missing));
                return refuse(reason);
            }
        }
        let reachable = next
            .iter()
            .filter(|id| self.reachable.contains(id) || Some(**id) == newcomer)
            .count();
        let needed = majority(next.len());
        if reachable < needed {
            return refuse(format!(
                "after {action}, {reachable} of {} voters would be reachable; a quorum needs {needed}",
                next.len()
            ));
        }
        Ok(())
    }
}

fn list(ids: &[NodeId]) -> String {
    let names: Vec<String> = ids.iter().map(|id| format!("node {id}")).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[u64]) -> BTreeSet<NodeId> {
        ids.iter().copied().map(NodeId::new).collect()
    }

    fn reason(r: Result<(), MembershipError>) -> String {
        match r {
            Err(MembershipError::QuorumAtRisk { reason }) => reason,
            other => panic!("expected quorum-at-risk, got {other:?}"),
        }
    }

    #[test]
    fn majorities() {
        assert_eq!(
            [1, 2, 3, 4, 5, 6].map(majority),
            [1, 2, 2, 3, 3, 4],
            "quorum sizes"
        );
    }

    #[test]
    fn removing_a_dead_voter_of_five_with_two_dead_is_allowed() {
        let reach = VoterReach::new(vec![set(&[1, 2, 3, 4, 5])], set(&[1, 2, 3]));
        assert!(reach.has_quorum());
        assert_eq!(reach.unreachable(), vec![NodeId::new(4), NodeId::new(5)]);
        reach
            .check_change("removing node 5", &set(&[1, 2, 3, 4]), None)
            .unwrap();
        // Removing a live one would leave 2 of 4 reachable.
        let why = reason(reach.check_change("removing node 3", &set(&[1, 2, 4, 5]), None));
        assert_eq!(
            why,
            "after removing node 3, 2 of 4 voters would be reachable; a quorum needs 3"
        );
    }

    #[test]
    fn the_example_of_the_issue() {
        let reach = VoterReach::new(vec![set(&[1, 2, 3])], set(&[1, 3]));
        let why = reason(reach.check_change("removing node 3", &set(&[1, 2]), None));
        assert_eq!(
            why,
            "after removing node 3, 1 of 2 voters would be reachable; a quorum needs 2"
        );
    }

    #[test]
    fn without_a_quorum_nothing_can_change() {
        let reach = VoterReach::new(vec![set(&[1, 2, 3, 4, 5, 6])], set(&[1, 2, 3]));
        assert!(!reach.has_quorum());
        let why = reason(reach.check_change("removing node 6", &set(&[1, 2, 3, 4, 5]), None));
        assert!(why.starts_with("only 3 of 6 voters are reachable"), "{why}");
        assert!(why.contains("node 4, node 5, node 6"), "{why}");
    }

    #[test]
    fn a_newcomer_counts_once_it_caught_up() {
        let reach = VoterReach::new(vec![set(&[1, 2, 3])], set(&[1, 2]));
        reach
            .check_change("adding node 4", &set(&[1, 2, 3, 4]), Some(NodeId::new(4)))
            .unwrap();
        let why = reason(reach.check_change("adding node 4", &set(&[1, 2, 3, 4]), None));
        assert!(why.contains("2 of 4"), "{why}");
    }

    #[test]
    fn no_voters_left_is_refused() {
        let reach = VoterReach::new(vec![set(&[1])], set(&[1]));
        let why = reason(reach.check_change("removing node 1", &set(&[]), None));
        assert_eq!(why, "removing node 1 would leave no voters");
    }

    #[test]
    fn a_joint_configuration_needs_both_majorities() {
        let reach = VoterReach::new(vec![set(&[1, 2, 3]), set(&[1, 2, 3, 4])], set(&[1, 2]));
        assert!(!reach.has_quorum(), "2 of 4 is not a majority");
        let reach = VoterReach::new(vec![set(&[1, 2, 3]), set(&[1, 2, 3, 4])], set(&[1, 2, 4]));
        assert!(reach.has_quorum());
    }

    #[test]
    fn contact_times_decide_reachability() {
        let contacts = PeerContacts::new();
        contacts.record_answer(NodeId::new(2));
        let now = Instant::now();
        contacts.record_answer(NodeId::new(4));
        let reach = VoterReach::observe(
            NodeId::new(1),
            vec![set(&[1, 2, 3])],
            [NodeId::new(4)],
            &contacts,
            Duration::from_secs(60),
            now,
        );
        assert_eq!(reach.unreachable(), vec![NodeId::new(3)]);
        // The learner 4 answered: promoting it is safe.
        reach
            .check_change("adding node 4", &set(&[1, 2, 3, 4]), None)
            .unwrap();
        assert!(reach.has_quorum(), "itself and node 2 of three");
        // An answer older than the window does not count.
        let later = now + Duration::from_secs(61);
        let reach = VoterReach::observe(
            NodeId::new(1),
            vec![set(&[1, 2, 3])],
            [],
            &contacts,
            Duration::from_secs(60),
            later,
        );
        assert_eq!(reach.unreachable(), vec![NodeId::new(2), NodeId::new(3)]);
        assert_eq!(
            default_window(Duration::from_millis(300)),
            Duration::from_millis(600)
        );
        assert_eq!(
            default_window(Duration::from_millis(100)),
            MIN_REACHABILITY_WINDOW
        );
    }
}
