//! The elect RPC: a leader handing over asks one follower to stand for
//! election now (`Raft::trigger().elect()`; openraft 0.9 has no
//! leader transfer of its own).
//!
//! An election costs the cluster a term and, if it fails, a leaderless
//! interval, so the receiver stands only when the request agrees with
//! what it sees itself ([`check_elect`]):
//!
//! 1. the sender is not this node, and is a voter of this node's membership;
//! 2. the request's term is this node's current term (a stale or a future
//!    term is refused);
//! 3. this node is a voter (not a learner);
//! 4. it is a follower and the leader it knows for the current term is the
//!    sender (its vote for the sender is committed);
//! 5. its log is consistent with what it has seen committed: it has a log,
//!    and the log reaches at least the last applied entry. (Whether the log
//!    is as long as the leader's is the leader's check: it waits until the
//!    successor's log matches its own before it asks, and openraft's vote
//!    refuses a candidate whose log is behind.)
//!
//! `from` is a claim that is checked against this node's own view, not
//! authentication: whoever passes the route's gate (the cluster secret, or
//! loopback without one) and reads `/cluster/status` can name the leader
//! and the term. The check stops garbage, replays of old hand-overs and
//! requests that disagree with this node's state, not a forger who knows
//! both.
//!
//! A hand-over that sees no new leader within a lease asks again with the
//! same request. By then this node has moved to a later term (campaigning,
//! or voting for another candidate), so the request no longer agrees with
//! its view; yet refusing it would fail a hand-over that is merely slow.
//! The node therefore remembers the last request it stood for and answers
//! that one request again as accepted, starting nothing: the election it
//! asked for has been held, and openraft's own timers (a candidate retries,
//! followers stand once the old leader's lease has lapsed) finish it. A
//! replayed copy of that request gains a forger nothing either.

use std::collections::BTreeSet;

use catga_cluster_core::{NodeId, Role};
use openraft::{BasicNode, RaftMetrics, ServerState};

use crate::network::wire::ElectRequest;

/// Why a node refused to stand for election.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ElectRefusal {
    /// The request names this node as its sender.
    #[error("the request names this node as its sender")]
    FromSelf,
    /// The sender is not a voter of this node's membership.
    #[error("node {from} is not a voter of this node's membership")]
    UnknownSender {
        /// The claimed sender.
        from: NodeId,
    },
    /// The request is for an earlier term than this node's.
    #[error("the request is for term {requested}, but this node is in term {current}")]
    StaleTerm {
        /// The request's term.
        requested: u64,
        /// This node's term.
        current: u64,
    },
    /// The request is for a later term than this node's.
    #[error("the request is for term {requested}, ahead of this node's term {current}")]
    FutureTerm {
        /// The request's term.
        requested: u64,
        /// This node's term.
        current: u64,
    },
    /// This node does not vote, so it cannot stand.
    #[error("this node is not a voter")]
    NotVoter,
    /// This node does not follow the sender as leader in the current term.
    #[error("{}", not_following(*from, *role, *leader))]
    NotFollowing {
        /// The claimed sender.
        from: NodeId,
        /// This node's role.
        role: Role,
        /// The leader this node knows for the current term, if any.
        leader: Option<NodeId>,
    },
    /// This node's log is not consistent with what it has applied.
    #[error("{}", log_behind(*last_log_index, *last_applied))]
    LogBehind {
        /// The index of this node's last log entry.
        last_log_index: Option<u64>,
        /// The index of the last entry this node applied.
        last_applied: Option<u64>,
    },
}

fn not_following(from: NodeId, role: Role, leader: Option<NodeId>) -> String {
    match leader {
        Some(leader) => {
            format!("this node ({role}) follows node {leader} in the current term, not node {from}")
        }
        None => format!("this node ({role}) knows no leader in the current term"),
    }
}

fn log_behind(last_log_index: Option<u64>, last_applied: Option<u64>) -> String {
    match (last_log_index, last_applied) {
        (None, _) => "this node has no log".into(),
        (Some(last), Some(applied)) => {
            format!("this node's log ends at {last}, before the entry {applied} it applied")
        }
        (Some(last), None) => format!("this node's log ends at {last}"),
    }
}

/// What decides an elect request: this node's state, as its Raft metrics
/// show it, and the last request it stood for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElectView {
    /// This node.
    pub(crate) local: NodeId,
    /// This node's role.
    pub(crate) role: Role,
    /// This node's term.
    pub(crate) current_term: u64,
    /// The leader this node knows for the current term (its committed vote).
    pub(crate) current_leader: Option<NodeId>,
    /// The voters of this node's effective membership.
    pub(crate) voters: BTreeSet<NodeId>,
    /// The index of this node's last log entry.
    pub(crate) last_log_index: Option<u64>,
    /// The index of the last entry this node applied.
    pub(crate) last_applied: Option<u64>,
    /// The last request this node stood for.
    pub(crate) accepted: Option<ElectRequest>,
}

impl ElectView {
    /// The view from a metrics snapshot and the last request stood for.
    pub(crate) fn new(
        m: &RaftMetrics<NodeId, BasicNode>,
        accepted: Option<ElectRequest>,
    ) -> ElectView {
        ElectView {
            local: m.id,
            role: role_of(m.state),
            current_term: m.current_term,
            current_leader: m.current_leader,
            voters: m.membership_config.membership().voter_ids().collect(),
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            accepted,
        }
    }
}

fn role_of(state: ServerState) -> Role {
    match state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    }
}

/// What to do with an elect request that passed [`check_elect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElectVerdict {
    /// Start an election now.
    Stand,
    /// The request this node last stood for, asked again: answer it as
    /// accepted and start nothing (its election was started already).
    Repeated,
}

/// Decides an elect request against this node's view; see the
/// [module docs](self). Pure, so it is tested without a cluster.
pub(crate) fn check_elect(
    view: &ElectView,
    request: &ElectRequest,
) -> Result<ElectVerdict, ElectRefusal> {
    if request.from == view.local {
        return Err(ElectRefusal::FromSelf);
    }
    if view.accepted.as_ref() == Some(request) {
        // Asked again: the election was started for this very request.
        return Ok(ElectVerdict::Repeated);
    }
    if !view.voters.contains(&request.from) {
        return Err(ElectRefusal::UnknownSender { from: request.from });
    }
    if request.term < view.current_term {
        return Err(ElectRefusal::StaleTerm {
            requested: request.term,
            current: view.current_term,
        });
    }
    if request.term > view.current_term {
        return Err(ElectRefusal::FutureTerm {
            requested: request.term,
            current: view.current_term,
        });
    }
    if !view.voters.contains(&view.local) {
        return Err(ElectRefusal::NotVoter);
    }
    if view.role != Role::Follower || view.current_leader != Some(request.from) {
        return Err(ElectRefusal::NotFollowing {
            from: request.from,
            role: view.role,
            leader: view.current_leader,
        });
    }
    let consistent = match (view.last_log_index, view.last_applied) {
        (None, _) => false,
        (Some(last), applied) => applied.is_none_or(|applied| last >= applied),
    };
    if !consistent {
        return Err(ElectRefusal::LogBehind {
            last_log_index: view.last_log_index,
            last_applied: view.last_applied,
        });
    }
    Ok(ElectVerdict::Stand)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(n: u64) -> NodeId {
        NodeId::new(n)
    }

    /// A follower (node 1) of leader 0 in term 7, voters 0, 1, 2.
    fn follower() -> ElectView {
        ElectView {
            local: id(1),
            role: Role::Follower,
            current_term: 7,
            current_leader: Some(id(0)),
            voters: [0, 1, 2].into_iter().map(id).collect(),
            last_log_index: Some(40),
            last_applied: Some(38),
            accepted: None,
        }
    }

    fn ask(from: u64, term: u64) -> ElectRequest {
        ElectRequest {
            from: id(from),
            term,
        }
    }

    #[test]
    fn the_leader_asking_in_the_current_term_is_obeyed() {
        assert_eq!(
            check_elect(&follower(), &ask(0, 7)),
            Ok(ElectVerdict::Stand)
        );
        // Nothing applied yet is fine, as long as there is a log.
        let fresh = ElectView {
            last_applied: None,
            ..follower()
        };
        assert_eq!(check_elect(&fresh, &ask(0, 7)), Ok(ElectVerdict::Stand));
    }

    #[test]
    fn each_disagreement_is_refused_with_its_reason() {
        let view = follower();
        assert_eq!(check_elect(&view, &ask(1, 7)), Err(ElectRefusal::FromSelf));
        assert_eq!(
            check_elect(&view, &ask(9, 7)),
            Err(ElectRefusal::UnknownSender { from: id(9) })
        );
        assert_eq!(
            check_elect(&view, &ask(0, 6)),
            Err(ElectRefusal::StaleTerm {
                requested: 6,
                current: 7
            })
        );
        assert_eq!(
            check_elect(&view, &ask(0, 8)),
            Err(ElectRefusal::FutureTerm {
                requested: 8,
                current: 7
            })
        );
        // Another follower claiming to hand over.
        assert_eq!(
            check_elect(&view, &ask(2, 7)),
            Err(ElectRefusal::NotFollowing {
                from: id(2),
                role: Role::Follower,
                leader: Some(id(0))
            })
        );
        let learner = ElectView {
            role: Role::Learner,
            voters: [0, 2].into_iter().map(id).collect(),
            ..follower()
        };
        assert_eq!(
            check_elect(&learner, &ask(0, 7)),
            Err(ElectRefusal::NotVoter)
        );
        let candidate = ElectView {
            role: Role::Candidate,
            current_leader: None,
            ..follower()
        };
        let refusal = check_elect(&candidate, &ask(0, 7)).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "this node (candidate) knows no leader in the current term"
        );
        let empty = ElectView {
            last_log_index: None,
            last_applied: None,
            ..follower()
        };
        assert_eq!(
            check_elect(&empty, &ask(0, 7)),
            Err(ElectRefusal::LogBehind {
                last_log_index: None,
                last_applied: None
            })
        );
        let torn = ElectView {
            last_log_index: Some(30),
            ..follower()
        };
        assert_eq!(
            check_elect(&torn, &ask(0, 7)).unwrap_err().to_string(),
            "this node's log ends at 30, before the entry 38 it applied"
        );
    }

    #[test]
    fn the_request_stood_for_is_answered_again_without_an_election() {
        let accepted = Some(ask(0, 7));
        // Asked again before the election began, while campaigning, after
        // winning, and after voting for another candidate.
        let views = [
            follower(),
            ElectView {
                role: Role::Candidate,
                current_term: 8,
                current_leader: None,
                ..follower()
            },
            ElectView {
                role: Role::Leader,
                current_term: 8,
                current_leader: Some(id(1)),
                ..follower()
            },
            ElectView {
                current_term: 9,
                current_leader: None,
                ..follower()
            },
        ];
        for view in views {
            let view = ElectView {
                accepted: accepted.clone(),
                ..view
            };
            assert_eq!(
                check_elect(&view, &ask(0, 7)),
                Ok(ElectVerdict::Repeated),
                "{view:?}"
            );
            // Any other request is judged as usual.
            assert!(check_elect(&view, &ask(0, 6)).is_err());
            assert!(check_elect(&view, &ask(2, 7)).is_err());
        }
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![
            Just(Role::Leader),
            Just(Role::Follower),
            Just(Role::Candidate),
            Just(Role::Learner),
            Just(Role::Shutdown),
        ]
    }

    /// Mostly `healthy`, sometimes anything from `other`.
    fn mostly<T: Clone + std::fmt::Debug + 'static>(
        healthy: T,
        other: impl Strategy<Value = T> + 'static,
    ) -> BoxedStrategy<T> {
        prop_oneof![2 => Just(healthy), 1 => other].boxed()
    }

    prop_compose! {
        /// Views of a node among ids 0..8, each field either that of
        /// [`follower`] or anything (impossible combinations included), so
        /// both sides of every condition are reached.
        fn any_view()(
            local in mostly(1, 0u64..8),
            role in mostly(Role::Follower, role()),
            current_term in mostly(7, 0u64..20),
            current_leader in mostly(Some(0), proptest::option::of(0u64..8)),
            voters in mostly(
                [0, 1, 2].into(),
                proptest::collection::btree_set(0u64..8, 0..6),
            ),
            last_log_index in mostly(Some(40), proptest::option::of(0u64..100)),
            last_applied in mostly(Some(38), proptest::option::of(0u64..100)),
            accepted in mostly(None, proptest::option::of((0u64..8, 0u64..20))),
        ) -> ElectView {
            ElectView {
                local: id(local),
                role,
                current_term,
                current_leader: current_leader.map(id),
                voters: voters.into_iter().map(id).collect(),
                last_log_index,
                last_applied,
                accepted: accepted.map(|(from, term)| ask(from, term)),
            }
        }
    }

    prop_compose! {
        fn any_request()(from in mostly(0, 0u64..16), term in mostly(7, 0u64..40)) -> ElectRequest {
            ask(from, term)
        }
    }

    proptest! {
        /// A request from a node that is not another voter, or for another
        /// term, never starts an election; it is accepted (without an
        /// election) only as a repeat of the request this node stood for.
        #[test]
        fn a_wrong_sender_or_term_never_starts_an_election(
            view in any_view(),
            request in any_request(),
        ) {
            let wrong_sender = request.from == view.local || !view.voters.contains(&request.from);
            let wrong_term = request.term != view.current_term;
            prop_assume!(wrong_sender || wrong_term);
            let verdict = check_elect(&view, &request);
            prop_assert_ne!(verdict.clone(), Ok(ElectVerdict::Stand));
            if verdict.is_ok() {
                prop_assert_eq!(view.accepted.as_ref(), Some(&request));
            }
        }

        /// The verdict is exactly what the documented conditions say.
        #[test]
        fn the_verdict_follows_the_documented_conditions(
            view in any_view(),
            request in any_request(),
        ) {
            let from = request.from;
            let agrees = from != view.local
                && view.voters.contains(&from)
                && request.term == view.current_term
                && view.voters.contains(&view.local)
                && view.role == Role::Follower
                && view.current_leader == Some(from)
                && view.last_log_index.is_some()
                && view.last_log_index >= view.last_applied;
            let repeat = view.accepted.as_ref() == Some(&request);
            let expected = if repeat && from != view.local {
                Some(ElectVerdict::Repeated)
            } else if agrees {
                Some(ElectVerdict::Stand)
            } else {
                None
            };
            prop_assert_eq!(check_elect(&view, &request).ok(), expected);
        }
    }
}
