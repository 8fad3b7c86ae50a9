//! The timer path, staggered: followers stand for election one after the
//! other once the leader lease has lapsed, instead of splitting the vote.

use std::sync::Weak;
use std::time::Duration;

use catga_cluster_core::{FailoverPath, NodeId};
use openraft::ServerState;
use tokio::time::Instant;

use super::super::{Inner, RaftNode, TARGET};

/// Staggered elections on the timer path.
///
/// openraft's own timer starts an election `election_timeout_max` plus a
/// random `[min, max)` after the last message from the leader, on a tick of
/// 1.5 heartbeats; with three nodes the two survivors often time out on the
/// same tick and split the vote. This detector lets the survivors stand one
/// after the other instead: a follower that has not heard from its leader for
/// the whole leader lease (`election_timeout_max`) triggers an election after
/// a further delay of its rank among the other voters (by id) times one
/// heartbeat interval. Safety is unchanged: voters still refuse to vote while
/// they hear from a live leader.
pub(in crate::node) async fn stagger_elections(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let heartbeat = inner.config.heartbeat_interval;
    let lease = inner.config.election_timeout_max;
    let me = inner.info.id;
    let shutdown = inner.shutdown.clone();
    drop(inner);
    let poll = (heartbeat / 4).max(Duration::from_millis(5));
    let mut last_attempt: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.stepping_down() {
            continue;
        }
        let view = inner
            .raft
            .with_raft_state(move |st| {
                let membership = st.membership_state.effective().membership();
                let leader = st.vote_ref().leader_id().voted_for();
                let mut others: Vec<NodeId> = membership
                    .voter_ids()
                    .filter(|id| Some(*id) != leader)
                    .collect();
                others.sort();
                let rank = others.iter().position(|id| *id == me);
                (st.server_state, st.vote_last_modified(), rank)
            })
            .await;
        let Ok((ServerState::Follower, Some(heard), Some(rank))) = view else {
            continue;
        };
        let stagger = heartbeat * u32::try_from(rank).unwrap_or(u32::MAX);
        let now = Instant::now();
        if now < heard + lease + stagger {
            continue;
        }
        if last_attempt.is_some_and(|t| now < t + lease) {
            continue;
        }
        last_attempt = Some(now);
        tracing::info!(
            target: TARGET,
            node_id = %me,
            silent_ms = now.duration_since(heard).as_millis() as u64,
            rank,
            "no word from the leader for a whole lease; starting an election"
        );
        let node = RaftNode { inner };
        if node.stand(FailoverPath::Timer, Some(heard)).await.is_err() {
            return;
        }
    }
}
