//! Replacing a lost leader, and the record of which path did it.
//!
//! Two paths elect a successor:
//!
//! * the crash fast path ([`fast`]): when the leader's *process* dies, the
//!   kernel closes its sockets at once; followers see the leader watch end
//!   abruptly, confirm with a fresh connection that the leader's endpoint
//!   refuses, stop honouring the dead leader's lease and elect within
//!   milliseconds (see the [crash fail-over](crate::node#crash-fail-over)
//!   docs for the assumption this rests on and why it is safe);
//! * the election timers ([`timer`] and openraft's own): for everything
//!   else (a paused, partitioned or slow leader, a crash the fast path
//!   could not confirm), a follower that has heard nothing from its leader
//!   for a whole leader lease stands, the survivors one after the other.
//!
//! A graceful hand-over is a third way a leader is replaced
//! (`node/handover.rs`).
//!
//! This file keeps what a node needs to say which path elected it: every
//! election this node starts is recorded with its path and the term it
//! stands for ([`RaftNode::stand`]), and forgotten once a leader of that
//! term or a later one is known. When the published leadership shows this
//! node leading a new term after another leader, its latest remaining
//! stand names the path (openraft's candidate timer may have retried that
//! election in a later term; with no stand at all, openraft's own timer
//! elected it: the timer path); the fail-over is counted by path
//! ([`RaftNode::failover_counts`]) and logged once, with how long it took.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use catga_cluster_core::{
    Failover, FailoverCounts, FailoverPath, LeaderInfo, Leadership, NodeId, Role,
};
use openraft::error::Fatal;
use tokio::time::Instant;

use super::{Inner, RaftNode, TARGET};

pub(super) mod fast;
pub(super) mod timer;

/// How many of this node's recent elections are remembered.
const STANDS_KEPT: usize = 8;

/// The fail-over view of a node, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FailoverStatus {
    /// Whether the crash fast path runs on this node.
    pub fast_path: bool,
    /// The leader whose process this node watches now (its leader watch is
    /// open), if any.
    pub watching: Option<NodeId>,
    /// The last fail-over that elected this node.
    pub last: Option<Failover>,
}

/// An election this node started: the term it stands for, why, and since
/// when the leader was lost (for how long the fail-over took).
#[derive(Debug, Clone, Copy)]
struct Stand {
    term: u64,
    path: FailoverPath,
    since: Instant,
}

/// A leader death this node confirmed on its own: the leader, the term
/// this node followed it in, and when its watch broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Death {
    pub(super) leader: NodeId,
    pub(super) term: u64,
    pub(super) broke_at: Instant,
}

impl Death {
    fn is(&self, leader: NodeId, term: u64) -> bool {
        self.leader == leader && self.term == term
    }
}

/// The node's fail-over record.
#[derive(Debug, Default)]
pub(super) struct FailoverState {
    stands: VecDeque<Stand>,
    counts: FailoverCounts,
    last: Option<Failover>,
    watching: Option<NodeId>,
    confirmed: Option<Death>,
    /// The last leader this node knew, and its term.
    known_leader: Option<(NodeId, u64)>,
    /// When this node last lost sight of a leader.
    lost_at: Option<Instant>,
}

impl FailoverState {
    fn record_stand(&mut self, term: u64, path: FailoverPath, since: Instant) {
        if self.stands.len() == STANDS_KEPT {
            self.stands.pop_front();
        }
        self.stands.push_back(Stand { term, path, since });
    }
}

impl Inner {
    pub(super) fn failover_state(&self) -> MutexGuard<'_, FailoverState> {
        lock(&self.failover)
    }
}

fn lock(state: &Mutex<FailoverState>) -> MutexGuard<'_, FailoverState> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

impl RaftNode {
    /// Starts an election now for `path`, recorded for the term it stands
    /// for, so that a win is attributed to `path`; `since` is when the
    /// leader was lost (default: now).
    pub(crate) async fn stand(
        &self,
        path: FailoverPath,
        since: Option<Instant>,
    ) -> Result<(), Fatal<NodeId>> {
        let term = self.inner.raft.metrics().borrow().current_term;
        self.inner.failover_state().record_stand(
            term + 1,
            path,
            since.unwrap_or_else(Instant::now),
        );
        self.inner.raft.trigger().elect().await
    }

    /// How many fail-overs elected this node since it started, and how long
    /// they took in all, by path.
    pub fn failover_counts(&self) -> FailoverCounts {
        self.inner.failover_state().counts
    }

    /// The fail-over view of this node (also in [`NodeStatus`](super::NodeStatus)).
    pub fn failover_status(&self) -> FailoverStatus {
        let st = self.inner.failover_state();
        FailoverStatus {
            fast_path: self.inner.fast_failover,
            watching: st.watching,
            last: st.last.clone(),
        }
    }
}

/// Follows each published leadership change (called by the publisher,
/// with the snapshot before and after): when this node starts leading a
/// new term after another leader, counts and logs the fail-over.
pub(super) fn observe(inner: &Inner, current: &Leadership, next: &Leadership) {
    let me = inner.info.id;
    let now = Instant::now();
    let leads = |l: &Leadership| l.role == Role::Leader && l.leader_id() == Some(me);
    let mut st = inner.failover_state();
    if leads(next) && !(leads(current) && current.term == next.term) {
        let previous = st.known_leader.filter(|known| *known != (me, next.term));
        if let Some((previous, _)) = previous {
            // This node's election since the previous leader: the latest
            // stand up to this term (openraft's own timer may have retried
            // it, without the lease).
            let stand = st
                .stands
                .iter()
                .rev()
                .find(|s| s.term <= next.term)
                .copied();
            let (path, since) = match stand {
                Some(stand) => (stand.path, stand.since),
                None => (
                    FailoverPath::Timer,
                    inner
                        .network
                        .contacts()
                        .last_heard(previous)
                        .or(st.lost_at)
                        .unwrap_or(now),
                ),
            };
            let took = now.saturating_duration_since(since);
            st.counts.record(path, took);
            st.last = Some(Failover::new(path, next.term, Some(previous), took));
            tracing::info!(
                target: TARGET,
                node_id = %me,
                path = %path,
                term = next.term,
                previous_leader = %previous,
                took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
                "fail-over: this node leads after the {path} path"
            );
        }
        st.known_leader = Some((me, next.term));
        st.confirmed = None;
        st.stands.clear();
    } else if let Some(LeaderInfo { id, .. }) = &next.leader {
        st.known_leader = Some((*id, next.term));
        st.lost_at = None;
        // Elections for this term or before are over.
        st.stands.retain(|s| s.term > next.term);
        if st.confirmed.is_some_and(|d| d.leader != *id) {
            st.confirmed = None;
        }
    } else if current.leader.is_some() {
        st.lost_at = Some(now);
    }
}
