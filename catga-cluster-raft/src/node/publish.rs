//! Publishing the leadership snapshot: computed from openraft's metrics and
//! the lease, published on the node's `watch` channel and in the lease word,
//! by a watcher task that wakes on every metrics change and when the lease
//! lapses.
//!
//! # When a metrics value was reported
//!
//! openraft reports the age of the leader's last quorum acknowledgement
//! (`millis_since_quorum_ack`) as it was when it reported, without saying
//! when that was. Reading the value late (the process was paused, say, by
//! `SIGSTOP`, or starved of CPU) and counting the age from the moment of
//! reading would place the acknowledgement later than it was, and extend
//! the lease past what the followers grant. So the watcher counts it from
//! the last moment the value is known to have been reported after: a value
//! newer than the one seen at the previous look at the channel was reported
//! after that look. A value already seen is never re-dated: after a pause
//! the lease is found lapsed, not renewed.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use catga_cluster_core::{Endpoint, LeaderInfo, Leadership, NodeId, Role};
use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::time::Instant;

use super::{Inner, TARGET};

/// Drops the leader changes older than ten seconds.
pub(super) fn prune_recent(recent: &mut VecDeque<Instant>) {
    let horizon = Duration::from_secs(10);
    while recent.front().is_some_and(|t| t.elapsed() > horizon) {
        recent.pop_front();
    }
}

/// Computes the leadership snapshot from openraft's metrics, reported no
/// earlier than `reported_after`.
pub(super) fn snapshot_from(
    inner: &Inner,
    m: &RaftMetrics<NodeId, BasicNode>,
    reported_after: Instant,
) -> Leadership {
    let now = Instant::now();
    let role = match m.state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    };
    let leader = m.current_leader.map(|id| LeaderInfo {
        id,
        endpoint: m
            .membership_config
            .membership()
            .get_node(&id)
            .and_then(|n| Endpoint::parse(&n.addr).ok()),
    });
    let (lease_valid, lease_deadline) = match (m.state, m.millis_since_quorum_ack) {
        (ServerState::Leader, Some(age)) if m.running_state.is_ok() => {
            let acked = reported_after
                .checked_sub(Duration::from_millis(age))
                .unwrap_or(reported_after);
            let deadline = acked + inner.lease;
            (deadline > now, Some(deadline))
        }
        _ => (false, None),
    };
    Leadership {
        role,
        term: m.current_term,
        leader,
        lease_valid,
        lease_deadline,
        transferring: inner.stepping_down(),
        epoch: 0,
    }
}

/// Publishes a new snapshot; a change of the lease deadline alone is stored
/// without waking subscribers.
pub(super) fn publish(inner: &Inner, mut next: Leadership) {
    // A stopped node publishes only that it stopped (`publish_stopped`).
    if inner.is_stopped() {
        return;
    }
    inner.leadership.send_if_modified(|current| {
        next.epoch = current.epoch;
        if next == *current {
            return false;
        }
        let only_deadline = Leadership {
            lease_deadline: current.lease_deadline,
            ..next.clone()
        } == *current;
        let leader_moved =
            current.leader.as_ref().map(|l| l.id) != next.leader.as_ref().map(|l| l.id);
        if leader_moved {
            *inner.leader_since.lock().unwrap_or_else(|e| e.into_inner()) =
                next.leader.as_ref().map(|_| Instant::now());
        }
        if leader_moved && next.leader.is_some() {
            inner.leader_changes.fetch_add(1, Ordering::Relaxed);
            let mut recent = inner
                .recent_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            recent.push_back(Instant::now());
            prune_recent(&mut recent);
        }
        if only_deadline {
            current.lease_deadline = next.lease_deadline;
            inner.claim.store(current);
            return false;
        }
        super::failover::observe(inner, current, &next);
        next.epoch += 1;
        tracing::debug!(
            target: TARGET,
            node_id = %inner.info.id,
            role = %next.role,
            term = next.term,
            leader_id = ?next.leader.as_ref().map(|l| l.id),
            lease_valid = next.lease_valid,
            "leadership changed"
        );
        *current = next;
        inner.claim.store(current);
        true
    });
}

/// Publishes the snapshot of `m`, now. `m` was reported no earlier than
/// the value the watcher saw last (it is that one, or a newer one).
pub(super) fn republish(inner: &Inner, m: &RaftMetrics<NodeId, BasicNode>) {
    let reported_after = *inner
        .metrics_reported_after
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    publish(inner, snapshot_from(inner, m, reported_after));
}

/// Follows openraft's metrics and publishes every change, and the lapse
/// of the lease the moment it happens, until the node stops. `started`:
/// a moment before openraft reported anything.
pub(super) async fn watch_metrics(inner: Arc<Inner>, started: Instant) {
    let mut metrics = inner.raft.metrics();
    // The last look at the channel, and the moment after which the value
    // seen then was reported (see the module docs). The watcher looks at
    // least twice a heartbeat, so that a new value is dated closely.
    let look_every = (inner.config.heartbeat_interval / 2).max(Duration::from_millis(1));
    let mut looked = started;
    let mut reported_after = started;
    let mut changed = false;
    loop {
        let now = Instant::now();
        if changed || metrics.has_changed().unwrap_or(false) {
            reported_after = looked;
            *inner
                .metrics_reported_after
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = reported_after;
        }
        looked = now;
        let snapshot = {
            let m = metrics.borrow_and_update();
            snapshot_from(&inner, &m, reported_after)
        };
        let deadline = snapshot.lease_deadline.filter(|_| snapshot.lease_valid);
        publish(&inner, snapshot);
        let lapse = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        changed = false;
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            next = metrics.changed() => {
                if next.is_err() {
                    break;
                }
                changed = true;
            }
            () = lapse => {}
            () = tokio::time::sleep(look_every) => {}
        }
    }
}

/// Publishes that the node has stopped.
pub(super) fn publish_stopped(inner: &Inner) {
    inner.leadership.send_modify(|l| {
        l.role = Role::Shutdown;
        l.leader = None;
        l.lease_valid = false;
        l.lease_deadline = None;
        l.epoch += 1;
        inner.claim.store(l);
    });
}
