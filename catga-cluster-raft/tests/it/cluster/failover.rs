//! Which path replaces a lost leader, over the in-memory network: a node
//! that is stopped abruptly (unregistered, as if its process died) is
//! replaced through the crash fast path; an isolated leader, a watch reset
//! on a node that still accepts, a crashed follower and a node with the
//! fast path off are not. The path is read from the new leader's fail-over
//! record, never from how long anything took.

use std::time::Duration;

use catga_cluster_core::{ClusterCoordinator, FailoverPath, NodeId};
use catga_cluster_raft::{NodeOptions, RaftNode};
use tokio::time::Instant;

use super::{put, write_on_leader};
use crate::support::{Cluster, DEADLINE};

/// Waits until `cond` holds, polling, up to the deadline: for state that
/// no leadership or metrics change announces (the leader watch).
async fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until every other running voter watches `leader`.
async fn wait_watched(cluster: &Cluster, leader: u64) {
    let followers: Vec<RaftNode> = cluster
        .nodes
        .iter()
        .filter(|(i, _)| **i != leader)
        .map(|(_, n)| n.clone())
        .collect();
    poll_until("every follower watching the leader", || {
        followers
            .iter()
            .all(|n| n.failover_status().watching == Some(NodeId::new(leader)))
    })
    .await;
}

/// The fail-overs of every running node, added up: (fast, timer, handover).
fn paths(cluster: &Cluster) -> (u64, u64, u64) {
    cluster.nodes.values().fold((0, 0, 0), |(f, t, h), n| {
        let c = n.failover_counts();
        (
            f + c.count(FailoverPath::Fast),
            t + c.count(FailoverPath::Timer),
            h + c.count(FailoverPath::Handover),
        )
    })
}

/// The path that elected `leader` the last time.
fn elected_by(cluster: &Cluster, leader: u64) -> FailoverPath {
    let last = cluster.node(leader).failover_status().last;
    last.unwrap_or_else(|| panic!("node {leader} has no fail-over record"))
        .path
}

async fn crash_is_replaced_through_the_fast_path(n: u64) {
    let mut cluster = Cluster::start(n, false).await;
    let old = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("before", "1"), "before").await;
    wait_watched(&cluster, old).await;
    let term = cluster.node(old).leadership().term;

    cluster.stop_now(old).await;
    let new = cluster.wait_for_leader().await;
    assert_ne!(new, old);
    assert_eq!(elected_by(&cluster, new), FailoverPath::Fast);
    let last = cluster.node(new).failover_status().last.unwrap();
    assert_eq!(last.previous_leader, Some(NodeId::new(old)));
    assert!(last.term > term);
    assert_eq!(
        paths(&cluster),
        (1, 0, 0),
        "one fail-over, by the fast path"
    );
    write_on_leader(&cluster, put("after", "2"), "after").await;
    assert_eq!(
        cluster
            .node(new)
            .get("before")
            .await
            .unwrap()
            .unwrap()
            .value,
        b"1"
    );
}

#[tokio::test]
async fn a_crashed_leader_of_three_is_replaced_through_the_fast_path() {
    crash_is_replaced_through_the_fast_path(3).await;
}

#[tokio::test]
async fn a_crashed_leader_of_five_is_replaced_through_the_fast_path() {
    crash_is_replaced_through_the_fast_path(5).await;
}

/// An isolated leader's watches stall and its endpoint does not refuse
/// (nothing crosses the cut): the timers replace it, and it stops claiming
/// leadership on its own.
#[tokio::test]
async fn an_isolated_leader_is_replaced_by_the_timers() {
    let cluster = Cluster::start(3, false).await;
    let old = cluster.wait_for_leader().await;
    wait_watched(&cluster, old).await;
    cluster.net.isolate(NodeId::new(old));
    cluster
        .wait_until("a new leader among the others", |c| {
            c.nodes.iter().any(|(i, n)| *i != old && n.is_leader())
        })
        .await;
    let new = *cluster
        .nodes
        .iter()
        .find(|(i, n)| **i != old && n.is_leader())
        .unwrap()
        .0;
    assert!(!cluster.node(old).is_leader());
    assert_eq!(elected_by(&cluster, new), FailoverPath::Timer);
    assert_eq!(paths(&cluster).0, 0, "no fast path");
}

/// Watches reset while the leader's endpoint still accepts: no fail-over
/// at all, and the followers watch the leader again.
#[tokio::test]
async fn a_reset_watch_on_a_leader_that_accepts_changes_nothing() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    wait_watched(&cluster, leader).await;
    let term = cluster.node(leader).leadership().term;
    cluster.net.break_watches(NodeId::new(leader));
    poll_until("the followers to stop watching", || {
        cluster
            .nodes
            .iter()
            .filter(|(i, _)| **i != leader)
            .any(|(_, n)| n.failover_status().watching.is_none())
    })
    .await;
    wait_watched(&cluster, leader).await;
    write_on_leader(&cluster, put("k", "v"), "k").await;
    assert_eq!(cluster.leader(), Some(leader));
    assert_eq!(cluster.node(leader).leadership().term, term);
    assert_eq!(paths(&cluster), (0, 0, 0));
}

/// A follower dies: the leader stays, in the same term, and nobody
/// stands, even after the leader has noticed the follower is gone.
#[tokio::test]
async fn a_crashed_follower_starts_no_election() {
    let mut cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    wait_watched(&cluster, leader).await;
    let term = cluster.node(leader).leadership().term;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    cluster.stop_now(follower).await;
    let node = cluster.node(leader).clone();
    poll_until("the leader to count the follower unreachable", || {
        node.health()
            .unreachable_voters
            .contains(&NodeId::new(follower))
    })
    .await;
    write_on_leader(&cluster, put("k", "v"), "k").await;
    assert_eq!(cluster.leader(), Some(leader));
    for n in cluster.nodes.values() {
        assert_eq!(n.leadership().term, term);
    }
    assert_eq!(paths(&cluster), (0, 0, 0));
}

/// With the fast path off nobody watches, and a crash waits for the
/// timers.
#[tokio::test]
async fn with_the_fast_path_off_a_crash_is_left_to_the_timers() {
    let options = NodeOptions::default().fast_failover(false);
    let mut cluster = Cluster::start_with(3, false, options).await;
    let old = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("before", "1"), "before").await;
    for n in cluster.nodes.values() {
        let status = n.failover_status();
        assert!(!status.fast_path);
        assert_eq!(status.watching, None);
    }
    cluster.stop_now(old).await;
    let new = cluster.wait_for_leader().await;
    assert_eq!(elected_by(&cluster, new), FailoverPath::Timer);
    assert_eq!(paths(&cluster), (0, 1, 0));
}

/// The configuration's switch, `Cluster.FastFailover`, turns it off too.
#[tokio::test]
async fn the_configuration_turns_the_fast_path_off() {
    let cluster = Cluster::start_configured(1, false, NodeOptions::default(), |c| {
        c.fast_failover = false;
    })
    .await;
    assert!(!cluster.node(0).failover_status().fast_path);
    let cluster =
        Cluster::start_configured(1, false, NodeOptions::default().fast_failover(true), |c| {
            c.fast_failover = false;
        })
        .await;
    assert!(
        cluster.node(0).failover_status().fast_path,
        "the option wins"
    );
}

/// A hand-over ends the watches properly: the successor is elected by the
/// hand-over, never by the fast path.
#[tokio::test]
async fn a_hand_over_is_counted_as_one() {
    let cluster = Cluster::start(3, false).await;
    let old = cluster.wait_for_leader().await;
    wait_watched(&cluster, old).await;
    let new = cluster
        .node(old)
        .transfer_leadership(None)
        .await
        .unwrap()
        .get();
    cluster
        .wait_until("the successor leading", |c| c.leader() == Some(new))
        .await;
    assert_eq!(elected_by(&cluster, new), FailoverPath::Handover);
    assert_eq!(paths(&cluster), (0, 0, 1));
}

/// A node whose listener closes while it runs stops claiming leadership
/// at once and ends its watches properly: the followers never take the
/// fast path, and the timers elect a successor.
#[tokio::test]
async fn a_leader_whose_listener_closes_steps_down_without_the_fast_path() {
    let cluster = Cluster::start(3, false).await;
    let old = cluster.wait_for_leader().await;
    wait_watched(&cluster, old).await;
    let node = cluster.node(old).clone();
    node.listener_closing();
    assert!(!node.is_leader(), "no claim once the listener closes");
    // Its endpoint refuses new connections from now on; the watches open
    // on it go on until it ends them.
    cluster.net.close_listener(NodeId::new(old));
    cluster
        .wait_until("a new leader among the others", |c| {
            c.nodes.iter().any(|(i, n)| *i != old && n.is_leader())
        })
        .await;
    assert!(!node.is_leader());
    let new = *cluster
        .nodes
        .iter()
        .find(|(i, n)| **i != old && n.is_leader())
        .unwrap()
        .0;
    assert_eq!(elected_by(&cluster, new), FailoverPath::Timer);
    assert_eq!(paths(&cluster).0, 0, "no fast path");
}
