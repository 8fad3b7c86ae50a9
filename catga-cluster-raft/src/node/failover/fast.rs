//! The crash fast path: a follower holds a watch open on its leader; when
//! the watch ends abruptly and a fresh connection to the leader's endpoint
//! is refused, the leader's process is gone, and the survivors elect at
//! once instead of waiting out its lease.
//!
//! 1. **Watch** ([`watch_leader`]): every voter that follows a leader
//!    keeps one long-lived `GET` open on it (the leader watch). The leader
//!    ends it properly whenever it stops leading or claiming leadership
//!    while its process runs; only the connection can end it abruptly.
//! 2. **Confirm** (`confirm`): on an abrupt end, the follower connects
//!    afresh to the leader's advertised endpoint. Every address refusing
//!    the connection means no process listens there any more: the leader's
//!    death is confirmed. Anything else (accepted, a timeout, a name that
//!    does not resolve) leaves the leader to the election timers.
//! 3. **Release** ([`RaftNode::confirm_death`]): a follower that confirmed
//!    the death itself, still follows that leader in that term and still
//!    holds its lease stops honouring the lease. openraft 0.9 has one way
//!    to do that: the follower starts an election (`trigger().elect()`),
//!    which leaves its vote uncommitted, and a voter with an uncommitted
//!    vote grants a higher vote without the lease check.
//! 4. **Gather and stand** (`gather_and_stand`): the follower asks every
//!    other voter (the `gone` RPC) whether it confirms the death too; each
//!    confirms only by its own probe, releasing as in step 3, and answers
//!    with how far its log reaches. With a quorum of voters confirmed, the
//!    survivors rank themselves by log (longest first), then by id (highest
//!    first: openraft breaks ties in a term by id the same way), and the
//!    first stands again, one term above every released vote, so the
//!    others grant it. The next in rank stands a few milliseconds later
//!    only if no leader has appeared by then and its vote does not go to
//!    a survivor ranked ahead of it, and so on: no split-vote storm.
//!
//! Without a quorum of confirmations nothing more happens here: the
//! released followers are candidates whose own timers (one election
//! timeout, no lease) finish the election.

use std::sync::Weak;
use std::time::Duration;

use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::protocol::RaftRpc;
use catga_cluster_core::{FailoverPath, NodeId};
use openraft::{BasicNode, LogId, RaftMetrics, ServerState};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::super::{Inner, RaftNode, TARGET};
use super::Death;
use crate::network::liveness::{Probe, WatchEvent};
use crate::network::wire::{GoneAnswer, GoneRequest, WatchFrame};
use crate::transport::{LeaderStream, NetworkFactory};

/// How often the survivors that have not confirmed a death are asked.
const GATHER_ROUNDS: usize = 3;

/// The shortest and longest pause before a watch is opened again.
const RETRY_MIN: Duration = Duration::from_millis(25);
const RETRY_MAX: Duration = Duration::from_secs(1);

/// The fast path's timings, from the cluster's.
#[derive(Debug, Clone, Copy)]
pub(in crate::node) struct Timings {
    /// How long a probe waits for each address, and how long an endpoint
    /// that still accepts is probed again: the heartbeat interval, within
    /// 10 to 500 ms.
    pub(in crate::node) probe: Duration,
    /// The deadline of a `gone` RPC: twice the heartbeat interval, within
    /// 20 ms to 1 s (the receiver may probe before it answers).
    pub(in crate::node) gather: Duration,
    /// The delay between survivors of consecutive ranks: a fifth of the
    /// heartbeat interval, at least 2 ms.
    pub(in crate::node) stagger: Duration,
    /// How long opening a watch may take: the maximum election timeout, at
    /// least 1 s.
    pub(in crate::node) open: Duration,
    /// How much of the dead leader's lease must be left for a follower to
    /// release it (the heartbeat interval); with less, the timers are about
    /// to decide anyway.
    pub(in crate::node) margin: Duration,
    /// The leader lease.
    pub(in crate::node) lease: Duration,
}

impl Timings {
    pub(in crate::node) fn of(config: &ClusterConfig) -> Self {
        let heartbeat = config.heartbeat_interval;
        Timings {
            probe: heartbeat.clamp(Duration::from_millis(10), Duration::from_millis(500)),
            gather: (heartbeat * 2).clamp(Duration::from_millis(20), Duration::from_secs(1)),
            stagger: (heartbeat / 5).max(Duration::from_millis(2)),
            open: config.election_timeout_max.max(Duration::from_secs(1)),
            margin: heartbeat,
            lease: config.election_timeout_max,
        }
    }
}

/// The leader a follower watches: who, in which term, where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    leader: NodeId,
    term: u64,
    addr: String,
}

/// The leader to watch, by a metrics snapshot: this node is a voter that
/// follows a committed leader other than itself.
fn target_of(m: &RaftMetrics<NodeId, BasicNode>, me: NodeId) -> Option<Target> {
    if m.state != ServerState::Follower || !m.vote.is_committed() {
        return None;
    }
    let leader = m.current_leader.filter(|l| *l != me)?;
    let membership = m.membership_config.membership();
    if !membership.voter_ids().any(|id| id == me) {
        return None;
    }
    let addr = membership.get_node(&leader)?.addr.clone();
    Some(Target {
        leader,
        term: m.current_term,
        addr,
    })
}

/// How a watch ended.
#[derive(Debug)]
enum Outcome {
    /// The node stops.
    Shutdown,
    /// It could not be opened (or the leader refused it).
    NotOpened,
    /// The leader ended it properly.
    Ended,
    /// This node's view of the leader changed: watch the new one.
    ViewChanged,
    /// The connection ended abruptly, at `at`.
    Broken { reason: String, at: Instant },
}

/// Keeps a watch open on the leader this node follows, and confirms its
/// death when the watch breaks; runs until the node stops.
pub(in crate::node) async fn watch_leader(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let me = inner.info.id;
    let shutdown = inner.shutdown.clone();
    let network = inner.network.clone();
    let mut metrics = inner.raft.metrics();
    let timings = Timings::of(&inner.config);
    drop(inner);
    let mut retry = RETRY_MIN;
    loop {
        let target = loop {
            let target = target_of(&metrics.borrow_and_update(), me);
            if let Some(target) = target {
                break target;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        };
        let retired = weak.upgrade().is_none_or(|inner| inner.stepping_down());
        let outcome = if retired {
            // A node that no longer claims leadership stands for nothing.
            Outcome::NotOpened
        } else {
            let opened = tokio::select! {
                () = shutdown.cancelled() => return,
                opened = network.watch(target.leader, &target.addr, timings.open) => opened,
            };
            match opened {
                Ok(stream) => follow(&weak, &mut metrics, &shutdown, me, &target, stream).await,
                Err(failure) => {
                    tracing::debug!(target: TARGET, leader = %target.leader, error = %failure, "cannot open the leader watch");
                    Outcome::NotOpened
                }
            }
        };
        let pause = match outcome {
            Outcome::Shutdown => return,
            Outcome::ViewChanged => {
                retry = RETRY_MIN;
                continue;
            }
            Outcome::Ended => {
                retry = RETRY_MIN;
                RETRY_MIN
            }
            Outcome::Broken { reason, at } => {
                if confirm(&weak, &network, &target, &reason, at, &timings).await {
                    retry = RETRY_MIN;
                    continue;
                }
                backoff(&mut retry)
            }
            Outcome::NotOpened => backoff(&mut retry),
        };
        // Open again after a pause, or at once for a new leader.
        let deadline = Instant::now() + pause;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep_until(deadline) => break,
                changed = metrics.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if target_of(&metrics.borrow_and_update(), me).as_ref() != Some(&target) {
                        retry = RETRY_MIN;
                        break;
                    }
                }
            }
        }
    }
}

/// The pause before the next try, doubling the one after it.
fn backoff(retry: &mut Duration) -> Duration {
    let pause = *retry;
    *retry = (pause * 2).min(RETRY_MAX);
    pause
}

/// Reads an open watch until it ends or this node's view of the leader
/// changes.
async fn follow(
    weak: &Weak<Inner>,
    metrics: &mut watch::Receiver<RaftMetrics<NodeId, BasicNode>>,
    shutdown: &CancellationToken,
    me: NodeId,
    target: &Target,
    mut stream: LeaderStream,
) -> Outcome {
    let first = tokio::select! {
        () = shutdown.cancelled() => return Outcome::Shutdown,
        first = stream.next() => first,
    };
    match first {
        WatchEvent::Frame(WatchFrame::Leading { leader, term })
            if leader == target.leader && term == target.term => {}
        WatchEvent::Broken(reason) => {
            return Outcome::Broken {
                reason,
                at: Instant::now(),
            }
        }
        other => {
            tracing::debug!(target: TARGET, leader = %target.leader, term = target.term, ?other, "the leader watch opened for another leader or term");
            return Outcome::Ended;
        }
    }
    set_watching(weak, Some(target.leader));
    tracing::debug!(target: TARGET, leader = %target.leader, term = target.term, "watching the leader");
    let outcome = loop {
        tokio::select! {
            () = shutdown.cancelled() => break Outcome::Shutdown,
            changed = metrics.changed() => {
                if changed.is_err() {
                    break Outcome::Shutdown;
                }
                if target_of(&metrics.borrow_and_update(), me).as_ref() != Some(target) {
                    break Outcome::ViewChanged;
                }
            }
            event = stream.next() => match event {
                WatchEvent::Frame(WatchFrame::Ending(end)) => {
                    tracing::debug!(target: TARGET, leader = %target.leader, ?end, "the leader ended its watch");
                    break Outcome::Ended;
                }
                WatchEvent::Frame(_) => {}
                WatchEvent::Ended => break Outcome::Ended,
                WatchEvent::Broken(reason) => break Outcome::Broken { reason, at: Instant::now() },
            },
        }
    };
    set_watching(weak, None);
    outcome
}

fn set_watching(weak: &Weak<Inner>, leader: Option<NodeId>) {
    if let Some(inner) = weak.upgrade() {
        inner.failover_state().watching = leader;
    }
}

/// Probes the leader's endpoint until it refuses, for up to
/// [`Timings::probe`] while it accepts: a process that dies releases its
/// sockets one after the other (the listener may go a moment after the
/// connections), so an accepted connection right after a broken watch is
/// tried again a few times, 1 ms, 2 ms, 4 ms … apart. A single refusal is
/// the evidence; a timeout or an unreachable host ends the probing.
async fn probe_settled(network: &NetworkFactory, target: &Target, timings: &Timings) -> Probe {
    let until = Instant::now() + timings.probe;
    let mut pause = Duration::from_millis(1);
    loop {
        let probe = network
            .probe(target.leader, &target.addr, timings.probe)
            .await;
        if probe != Probe::Accepted || Instant::now() + pause > until {
            return probe;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
}

/// A watch broke at `at`: probes the leader's endpoint and, if it refuses,
/// confirms the death. Returns whether it did.
async fn confirm(
    weak: &Weak<Inner>,
    network: &NetworkFactory,
    target: &Target,
    reason: &str,
    at: Instant,
    timings: &Timings,
) -> bool {
    let probe = probe_settled(network, target, timings).await;
    let Some(inner) = weak.upgrade() else {
        return false;
    };
    let node = RaftNode { inner };
    let (leader, term) = (target.leader, target.term);
    match probe {
        Probe::Refused => {
            tracing::info!(
                target: TARGET,
                leader_id = %leader,
                term,
                watch = %reason,
                "the leader's watch broke and its endpoint refuses connections: its process is gone"
            );
            node.confirm_death(Death {
                leader,
                term,
                broke_at: at,
            })
            .await
        }
        Probe::Accepted => {
            tracing::info!(
                target: TARGET,
                leader_id = %leader,
                term,
                watch = %reason,
                "the leader's watch broke, but its endpoint accepts connections; the election timers decide"
            );
            false
        }
        Probe::Unknown(why) => {
            tracing::info!(
                target: TARGET,
                leader_id = %leader,
                term,
                watch = %reason,
                probe = %why,
                "the leader's watch broke, but its endpoint did not refuse a connection; the election timers decide"
            );
            false
        }
    }
}

impl RaftNode {
    /// This node confirmed on its own that the process of `death.leader`
    /// is gone: if it still follows that leader in that term, under a lease
    /// with at least [`Timings::margin`] left, it stops honouring the lease
    /// (it starts an election, which leaves its vote uncommitted) and
    /// gathers the other survivors. Returns whether the death is confirmed
    /// here (now or before).
    pub(in crate::node) async fn confirm_death(&self, death: Death) -> bool {
        let inner = &self.inner;
        if !inner.fast_failover || inner.stepping_down() || inner.is_stopped() {
            return false;
        }
        if inner
            .failover_state()
            .confirmed
            .is_some_and(|d| d.is(death.leader, death.term))
        {
            return true;
        }
        let me = inner.info.id;
        let Death { leader, term, .. } = death;
        let timings = Timings::of(&inner.config);
        let follows = inner
            .raft
            .with_raft_state(move |st| {
                let vote = st.vote_ref();
                let lease_left = st
                    .vote_last_modified()
                    .is_some_and(|at| Instant::now() + timings.margin < at + timings.lease);
                st.server_state == ServerState::Follower
                    && vote.is_committed()
                    && vote.leader_id().term == term
                    && vote.leader_id().voted_for() == Some(leader)
                    && lease_left
                    && st
                        .membership_state
                        .effective()
                        .membership()
                        .voter_ids()
                        .any(|id| id == me)
            })
            .await
            .unwrap_or(false);
        if !follows {
            tracing::debug!(target: TARGET, leader_id = %leader, term, "no longer following that leader under its lease; the election timers decide");
            return false;
        }
        {
            let mut st = inner.failover_state();
            if st.confirmed.is_some_and(|d| d.is(leader, term)) {
                return true;
            }
            st.confirmed = Some(death);
            st.record_stand(term + 1, FailoverPath::Fast, death.broke_at);
        }
        tracing::info!(
            target: TARGET,
            leader_id = %leader,
            term,
            "releasing the dead leader's lease and standing for election"
        );
        if inner.raft.trigger().elect().await.is_err() {
            return false;
        }
        tokio::spawn(gather_and_stand(self.clone(), death));
        true
    }

    /// Answers a `gone` RPC: confirmed only if this node follows that
    /// leader in that term and its own probe of the leader's endpoint is
    /// refused (the death is then confirmed here too); with how far this
    /// node's log reaches either way.
    pub(crate) async fn answer_gone(&self, req: GoneRequest) -> GoneAnswer {
        let confirmed = self.gone_confirmed(&req).await;
        GoneAnswer {
            confirmed,
            last_log: self.last_log(),
        }
    }

    async fn gone_confirmed(&self, req: &GoneRequest) -> bool {
        let inner = &self.inner;
        let me = inner.info.id;
        if !inner.fast_failover || req.from == me || req.leader == me {
            return false;
        }
        if inner
            .failover_state()
            .confirmed
            .is_some_and(|d| d.is(req.leader, req.term))
        {
            return true;
        }
        let Some(target) = target_of(&self.metrics(), me) else {
            return false;
        };
        if target.leader != req.leader || target.term != req.term {
            return false;
        }
        let heard_at = Instant::now();
        let timings = Timings::of(&inner.config);
        let probe = probe_settled(&inner.network, &target, &timings).await;
        if probe != Probe::Refused {
            tracing::info!(
                target: TARGET,
                from = %req.from,
                leader_id = %req.leader,
                term = req.term,
                probe = ?probe,
                "a peer reports the leader's process gone, but its endpoint does not refuse connections here"
            );
            return false;
        }
        tracing::info!(
            target: TARGET,
            from = %req.from,
            leader_id = %req.leader,
            term = req.term,
            "a peer reports the leader's process gone, and its endpoint refuses connections here too"
        );
        self.confirm_death(Death {
            leader: req.leader,
            term: req.term,
            broke_at: heard_at,
        })
        .await
    }

    /// The id of this node's last log entry.
    fn last_log(&self) -> Option<LogId<NodeId>> {
        self.inner.raft.data_metrics().borrow().last_log
    }
}

/// After this node released the dead leader's lease: asks the other voters
/// whether they confirm the death, ranks the survivors that do, and stands
/// in rank (see the [module docs](self)).
async fn gather_and_stand(node: RaftNode, death: Death) {
    let inner = &node.inner;
    let me = inner.info.id;
    let timings = Timings::of(&inner.config);
    let m = node.metrics();
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let quorum = voters.len() / 2 + 1;
    let request = GoneRequest {
        from: me,
        leader: death.leader,
        term: death.term,
    };
    let mut pending: Vec<(NodeId, String)> = voters
        .iter()
        .copied()
        .filter(|id| *id != me && *id != death.leader)
        .map(|id| {
            let addr = membership
                .get_node(&id)
                .map(|n| n.addr.clone())
                .unwrap_or_default();
            (id, addr)
        })
        .collect();
    let mut survivors = vec![(me, node.last_log())];
    // A peer that has not confirmed yet (its own probe still met the dying
    // listener, or its answer was late) is asked again, a few times.
    for round in 0..GATHER_ROUNDS {
        if survivors.len() >= quorum || pending.is_empty() {
            break;
        }
        if round > 0 {
            tokio::select! {
                () = inner.shutdown.cancelled() => return,
                () = tokio::time::sleep(timings.stagger) => {}
            }
            if !still_standing(&node, Vec::new()).await {
                return;
            }
        }
        let mut asks = JoinSet::new();
        for (id, addr) in pending.clone() {
            let network = inner.network.clone();
            let request = request.clone();
            asks.spawn(async move {
                let answer = network
                    .call::<_, GoneAnswer>(id, &addr, RaftRpc::Gone, &request, timings.gather)
                    .await;
                (id, answer)
            });
        }
        while let Some(joined) = asks.join_next().await {
            match joined {
                Ok((id, Ok(answer))) if answer.confirmed => {
                    survivors.push((id, answer.last_log));
                    pending.retain(|(p, _)| *p != id);
                }
                Ok((id, Ok(_))) => {
                    tracing::debug!(target: TARGET, peer = %id, "the peer does not confirm the leader's death")
                }
                Ok((id, Err(e))) => {
                    tracing::debug!(target: TARGET, peer = %id, error = %e, "no answer from the peer about the leader's death")
                }
                Err(_) => {}
            }
        }
    }
    if survivors.len() < quorum {
        tracing::info!(
            target: TARGET,
            leader_id = %death.leader,
            confirmed = survivors.len(),
            quorum,
            "too few voters confirm the leader's death; the election timers decide"
        );
        return;
    }
    // Longest log first, then highest id, as openraft breaks ties.
    survivors.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
    let rank = survivors.iter().position(|(id, _)| *id == me).unwrap_or(0);
    if rank > 0 {
        let wait = timings.stagger * u32::try_from(rank).unwrap_or(u32::MAX);
        tokio::select! {
            () = inner.shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
    }
    let ahead = survivors[..rank].iter().map(|(id, _)| *id).collect();
    if !still_standing(&node, ahead).await {
        return;
    }
    tracing::debug!(
        target: TARGET,
        rank,
        survivors = ?survivors.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        "standing for election in rank among the survivors"
    );
    let _ = node.stand(FailoverPath::Fast, Some(death.broke_at)).await;
}

/// Whether this node should still stand: no leader has been established
/// (its vote is not committed, it does not lead), and its vote does not
/// go to a survivor ranked `ahead` of it, which is then about to win. A
/// vote for anyone else does not hold it back: openraft's candidates take
/// up a higher vote they merely hear of in a refusal, without granting it,
/// and a survivor whose log is shorter could never win with it.
async fn still_standing(node: &RaftNode, ahead: Vec<NodeId>) -> bool {
    if node.inner.stepping_down() || node.inner.is_stopped() {
        return false;
    }
    node.inner
        .raft
        .with_raft_state(move |st| {
            let vote = st.vote_ref();
            let for_ahead = vote
                .leader_id()
                .voted_for()
                .is_some_and(|id| ahead.contains(&id));
            st.server_state != ServerState::Leader && !vote.is_committed() && !for_ahead
        })
        .await
        .unwrap_or(false)
}
