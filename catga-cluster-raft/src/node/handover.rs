//! Handing leadership over: openraft 0.9 has no leader transfer, so the
//! leader stops claiming leadership, waits until the successor holds every
//! entry, and asks exactly that one voter to stand (the elect RPC). Retiring
//! is a hand-over after which the node never claims leadership again.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use catga_cluster_core::protocol::RaftRpc;
use catga_cluster_core::{ClusterError, NodeId};
use openraft::ServerState;
use tokio::time::Instant;

use super::{publish, RaftNode, TARGET};
use crate::network::wire::{ElectRequest, ElectResult};

impl RaftNode {
    /// Hands leadership to `to`, or to the most up-to-date voter, and waits
    /// (bounded) until a new leader is known. Returns the new leader.
    ///
    /// This node stops claiming leadership first (so leader-only work stops
    /// and `is_leader()` turns false), then asks exactly one successor to
    /// start an election. If no successor takes over in time, this node
    /// resumes leading.
    pub async fn transfer_leadership(&self, to: Option<NodeId>) -> Result<NodeId, ClusterError> {
        self.hand_over(to, false).await
    }

    /// [`transfer_leadership`](RaftNode::transfer_leadership); with
    /// `retiring`, the node goes straight from handing over to retired, with
    /// no moment in between in which it would claim leadership again.
    async fn hand_over(&self, to: Option<NodeId>, retiring: bool) -> Result<NodeId, ClusterError> {
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return Err(self.not_leader_from(None).into());
        }
        let me = self.inner.info.id;
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let target = match to {
            Some(id) if id == me => return Ok(me),
            Some(id) if !voters.contains(&id) => {
                return Err(ClusterError::InvalidRequest(format!(
                    "node {id} is not a voter"
                )))
            }
            Some(id) => id,
            None => {
                let matched = m.replication.clone().unwrap_or_default();
                voters
                    .iter()
                    .filter(|id| **id != me)
                    .max_by_key(|id| {
                        (
                            matched.get(id).copied().flatten().map(|l| l.index),
                            std::cmp::Reverse(**id),
                        )
                    })
                    .copied()
                    .ok_or_else(|| {
                        ClusterError::InvalidRequest("no other voter to hand over to".into())
                    })?
            }
        };
        let addr = membership
            .get_node(&target)
            .map(|n| n.addr.clone())
            .unwrap_or_default();

        // openraft's leader grants a successor's vote only once its own vote
        // is older than the leader lease: wait for that while still leading.
        let lease = self.inner.config.election_timeout_max;
        if let Ok(Some(elected_at)) = self
            .inner
            .raft
            .with_raft_state(|st| st.vote_last_modified())
            .await
        {
            tokio::time::sleep_until(elected_at + lease + Duration::from_millis(1)).await;
        }

        self.inner.transferring.store(true, Ordering::SeqCst);
        publish::republish(&self.inner, &self.metrics());
        tracing::info!(target: TARGET, to = %target, term = m.current_term, "handing leadership over");

        let timeout = self.inner.handover_timeout;
        let outcome = async {
            // New writes are refused from here; the ones already past that
            // check may still be appended: wait for them, or the successor
            // picked below would lack their entries and the leader would
            // refuse it its vote (an election lost, a term wasted).
            let drained = tokio::time::timeout(timeout, async {
                while self.inner.writes_in_flight.load(Ordering::SeqCst) > 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            if drained.is_err() {
                return Err(ClusterError::Timeout {
                    operation: "waiting for the writes in flight",
                    after: timeout,
                });
            }
            // The successor must hold every entry the leader has, or the
            // leader will not vote for it.
            let mut metrics = self.inner.raft.metrics();
            let caught_up = tokio::time::timeout(timeout, async {
                metrics
                    .wait_for(|m| {
                        let last = m.last_log_index;
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&target).copied().flatten())
                            .is_some_and(|matched| Some(matched.index) >= last)
                    })
                    .await
                    .map(|_| ())
            })
            .await;
            if !matches!(caught_up, Ok(Ok(()))) {
                return Err(ClusterError::Timeout {
                    operation: "waiting for the successor to catch up",
                    after: timeout,
                });
            }
            // Ask the successor to stand; followers that heard from this
            // leader recently refuse to vote until their lease lapses, so in
            // clusters of five or more stop heartbeats after a first try.
            let deadline = Instant::now() + timeout;
            let mut paused = false;
            let result = loop {
                let request = ElectRequest {
                    from: me,
                    term: m.current_term,
                };
                let answer: ElectResult = self
                    .inner
                    .network
                    .call(target, &addr, RaftRpc::Elect, &request, timeout)
                    .await
                    .map_err(|e| ClusterError::Other(e.into()))?;
                answer.map_err(|e| ClusterError::Other(e.into()))?;
                let round = (Instant::now() + lease).min(deadline);
                let mut metrics = self.inner.raft.metrics();
                let waited = tokio::time::timeout_at(round, async {
                    metrics
                        .wait_for(|m| m.current_leader.is_some_and(|l| l != me))
                        .await
                        .map(|m| m.current_leader)
                })
                .await;
                match waited {
                    Ok(Ok(Some(leader))) => break Ok(leader),
                    Ok(_) => break Err(ClusterError::Shutdown),
                    Err(_) if Instant::now() >= deadline => {
                        break Err(ClusterError::Timeout {
                            operation: "leadership hand-over",
                            after: timeout,
                        })
                    }
                    Err(_) => {
                        if !paused {
                            self.inner.raft.runtime_config().heartbeat(false);
                            paused = true;
                        }
                    }
                }
            };
            if paused {
                self.inner.raft.runtime_config().heartbeat(true);
            }
            result
        }
        .await;
        if retiring {
            self.inner.retiring.store(true, Ordering::SeqCst);
        }
        self.inner.transferring.store(false, Ordering::SeqCst);
        publish::republish(&self.inner, &self.metrics());
        match &outcome {
            Ok(leader) => {
                tracing::info!(target: TARGET, new_leader = %leader, "leadership handed over")
            }
            Err(e) => tracing::warn!(target: TARGET, error = %e, "hand-over failed; still leading"),
        }
        outcome
    }

    /// Tells the node that the listener serving its routes closes while
    /// the process runs on: call it *before* the listener closes, whenever
    /// it closes (catga-cluster-axum's `serve` does, on shutdown and when
    /// its future is dropped).
    ///
    /// The crash fast path reads a refused connection to a leader's
    /// endpoint as the death of its process (see the
    /// [crash fail-over](crate::node#crash-fail-over)); a leader whose
    /// listener closes while it runs must therefore stop claiming
    /// leadership first. This does that at once: the node retires for good
    /// (it stops claiming leadership and campaigning, as
    /// [`retire`](RaftNode::retire) leaves it), its leader watches end
    /// properly (so followers do not take the fast path), and a leader
    /// stops sending heartbeats, so that the followers' leases lapse and
    /// their timers elect a successor: it cannot hand over, since the
    /// successor's vote request could not reach it. Idempotent; cheap and
    /// synchronous, so it can run in a `Drop`.
    pub fn listener_closing(&self) {
        let newly = !self.inner.retiring.swap(true, Ordering::SeqCst);
        let raft = &self.inner.raft;
        raft.runtime_config().elect(false);
        let m = self.metrics();
        if m.state == ServerState::Leader {
            raft.runtime_config().heartbeat(false);
        }
        publish::republish(&self.inner, &m);
        if newly {
            tracing::info!(
                target: TARGET,
                node_id = %self.inner.info.id,
                leading = m.state == ServerState::Leader,
                "the listener closes while the node runs: no longer claiming leadership nor standing"
            );
        }
    }

    /// Prepares the node to stop: it stops campaigning and claiming
    /// leadership for good, and a leader hands leadership over (bounded) to
    /// the most up-to-date voter. The node keeps serving Raft RPCs and
    /// forwarding requests (see `ForwardToLeader`'s hand-over grace hop)
    /// until it is stopped. Returns the successor, if this node led.
    pub async fn retire(&self) -> Option<NodeId> {
        self.inner.raft.runtime_config().elect(false);
        let m = self.metrics();
        let others = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id != self.inner.info.id);
        let successor = if m.state == ServerState::Leader && others {
            match self.hand_over(None, true).await {
                Ok(leader) => Some(leader),
                Err(e) => {
                    tracing::warn!(target: TARGET, error = %e, "retiring without a successor");
                    None
                }
            }
        } else {
            None
        };
        self.inner.retiring.store(true, Ordering::SeqCst);
        publish::republish(&self.inner, &self.metrics());
        successor
    }
}
