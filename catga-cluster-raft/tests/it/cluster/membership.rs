//! Membership that cannot brick a cluster.

use super::*;

/// Short catch-up bound, so adding a node that never answers fails fast.
fn quick_catch_up() -> NodeOptions {
    NodeOptions::default().catch_up_timeout(Duration::from_secs(1))
}

/// A node id with nothing behind it: not registered on the in-memory
/// network, so every RPC to it is unreachable.
fn nowhere(id: u64) -> NodeInfo {
    support::node_info(id)
}

fn voters(node: &RaftNode) -> BTreeSet<u64> {
    node.status()
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node.id.get())
        .collect()
}

fn members(node: &RaftNode) -> BTreeSet<u64> {
    node.status()
        .members
        .iter()
        .map(|m| m.node.id.get())
        .collect()
}

/// Runs a membership change, retrying only while the leader has not heard
/// from every voter yet (right after an election): that refusal is the
/// check working, not the outcome under test.
async fn change<F, Fut>(what: &str, mut f: F) -> Result<(), ClusterError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), ClusterError>>,
{
    let deadline = tokio::time::Instant::now() + support::DEADLINE;
    loop {
        match f().await {
            Err(ClusterError::Membership(MembershipError::QuorumAtRisk { reason }))
                if tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!("{what}: {reason}; retrying");
                tokio::task::yield_now().await;
            }
            other => return other,
        }
    }
}

fn quorum_refusal(result: Result<(), ClusterError>) -> String {
    match result {
        Err(ClusterError::Membership(MembershipError::QuorumAtRisk { reason })) => reason,
        other => panic!("expected quorum-at-risk, got {other:?}"),
    }
}

#[tokio::test]
async fn adding_a_node_nobody_serves_fails_and_leaves_the_voters_alone() {
    let cluster = Cluster::start_with(3, false, quick_catch_up()).await;
    let leader = cluster.wait_for_leader().await;
    let node = cluster.node(leader).clone();
    for id in [9, 10, 11] {
        let result = change("add a dead node", || node.add_member(nowhere(id))).await;
        match result {
            Err(ClusterError::Membership(MembershipError::MemberUnreachable {
                id: refused,
                matched,
                needed,
                after,
            })) => {
                assert_eq!(refused, NodeId::new(id));
                assert_eq!(matched, None, "nothing was ever acknowledged");
                assert!(needed >= 1);
                assert_eq!(after, Duration::from_secs(1));
            }
            other => panic!("adding node {id}: expected member-unreachable, got {other:?}"),
        }
        assert_eq!(voters(&node), BTreeSet::from([0, 1, 2]), "after node {id}");
        assert_eq!(
            members(&node),
            BTreeSet::from([0, 1, 2]),
            "the learner was removed again"
        );
    }
    // Still a healthy three-voter cluster that takes writes.
    let answer = write_on_leader(&cluster, put("after-dead-adds", "1"), "dead-adds").await;
    assert!(matches!(answer, CommandResponse::Written { .. }));
    for (i, n) in &cluster.nodes {
        let health = n.health();
        assert!(health.quorum_reachable, "node {i}");
        assert!(health.unreachable_voters.is_empty(), "node {i}");
    }
}

#[tokio::test]
async fn a_live_node_catches_up_and_is_promoted() {
    let mut cluster = Cluster::start(3, false).await;
    cluster.wait_for_leader().await;
    for i in 0..10 {
        write_on_leader(&cluster, put(&format!("k{i}"), "v"), &format!("pre{i}")).await;
    }
    cluster.members = vec![0, 1, 2, 3];
    let newcomer = cluster
        .start_node_with(3, NodeOptions::default().bootstrap(false))
        .await;
    let leader = cluster.leader().unwrap();
    let node = cluster.node(leader).clone();
    change("add node 3", || node.add_member(support::node_info(3)))
        .await
        .unwrap();
    assert_eq!(voters(&node), BTreeSet::from([0, 1, 2, 3]));
    // It holds every entry the leader had when it joined.
    for i in 0..10 {
        assert!(newcomer.state_machine().get(&format!("k{i}")).is_some());
    }
    // Adding it again is a no-op; the same id at another endpoint is not.
    node.add_member(support::node_info(3)).await.unwrap();
    let elsewhere = NodeInfo::new(
        NodeId::new(3),
        catga_cluster_core::Endpoint::parse("http://elsewhere.test:1").unwrap(),
    );
    assert!(matches!(
        node.add_member(elsewhere).await,
        Err(ClusterError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn changes_that_would_lose_the_quorum_are_refused() {
    let mut cluster = Cluster::start_with(3, false, quick_catch_up()).await;
    let leader = cluster.wait_for_leader().await;
    let node = cluster.node(leader).clone();
    let mut followers = (0..3).filter(|i| *i != leader);
    let (dead, alive) = (followers.next().unwrap(), followers.next().unwrap());
    cluster.stop_now(dead).await;
    cluster
        .wait_until("the leader sees the stopped voter as unreachable", |c| {
            c.node(leader).health().unreachable_voters == vec![NodeId::new(dead)]
        })
        .await;
    let health = node.health();
    assert!(health.quorum_reachable, "two of three still answer");
    assert!(
        cluster.node(alive).health().quorum_reachable,
        "the follower hears from its leader"
    );

    // Removing the live follower would leave 1 of 2 voters reachable.
    let why = quorum_refusal(node.remove_member(NodeId::new(alive)).await);
    assert_eq!(
        why,
        format!("after removing node {alive}, 1 of 2 voters would be reachable; a quorum needs 2")
    );
    // The leader does not remove itself.
    let why = quorum_refusal(node.remove_member(NodeId::new(leader)).await);
    assert!(why.contains("leader"), "{why}");
    assert_eq!(voters(&node), BTreeSet::from([0, 1, 2]));

    // Removing the dead one leaves 2 of 2 reachable: allowed.
    node.remove_member(NodeId::new(dead)).await.unwrap();
    assert_eq!(voters(&node), BTreeSet::from([leader, alive]));
    write_on_leader(&cluster, put("two-left", "1"), "two-left").await;

    // With two voters, removing the other one would leave the leader alone
    // but reachable: allowed; removing the last voter is not.
    node.remove_member(NodeId::new(alive)).await.unwrap();
    assert_eq!(voters(&node), BTreeSet::from([leader]));
    let why = quorum_refusal(node.remove_member(NodeId::new(leader)).await);
    assert!(why.contains("leader"), "{why}");
}

#[tokio::test]
async fn a_second_change_while_one_runs_is_refused_at_once() {
    let options = NodeOptions::default().catch_up_timeout(Duration::from_secs(3));
    let cluster = Cluster::start_with(3, false, options).await;
    let leader = cluster.wait_for_leader().await;
    let node = cluster.node(leader).clone();
    let slow = {
        let node = node.clone();
        tokio::spawn(async move { node.add_member(nowhere(9)).await })
    };
    cluster
        .wait_until("node 9 is a learner", |c| {
            members(c.node(leader)).contains(&9)
        })
        .await;
    for second in [
        node.add_member(nowhere(10)).await,
        node.remove_member(NodeId::new(9)).await,
    ] {
        assert!(
            matches!(
                second,
                Err(ClusterError::Membership(MembershipError::ChangeInProgress))
            ),
            "{second:?}"
        );
    }
    let first = slow.await.unwrap();
    assert!(
        matches!(
            first,
            Err(ClusterError::Membership(
                MembershipError::MemberUnreachable { .. }
            ))
        ),
        "{first:?}"
    );
    // Once it finished, changes are accepted again.
    assert_eq!(members(&node), BTreeSet::from([0, 1, 2]));
    let third = node.remove_member(NodeId::new(9)).await;
    assert!(
        matches!(third, Err(ClusterError::InvalidRequest(_))),
        "node 9 is gone: {third:?}"
    );
    // A learner (added behind the API's back) is removed without a quorum
    // question: it has no vote.
    node.raft()
        .add_learner(
            NodeId::new(12),
            openraft::BasicNode::new(nowhere(12).endpoint.as_str()),
            false,
        )
        .await
        .unwrap();
    assert!(members(&node).contains(&12));
    node.remove_member(NodeId::new(12)).await.unwrap();
    assert_eq!(members(&node), BTreeSet::from([0, 1, 2]));
}

#[tokio::test]
async fn stopped_members_of_a_five_node_cluster_can_be_removed() {
    let mut cluster = Cluster::start(5, false).await;
    let leader = cluster.wait_for_leader().await;
    let node = cluster.node(leader).clone();
    let dead: Vec<u64> = (0..5).filter(|i| *i != leader).take(2).collect();
    for id in &dead {
        cluster.stop_now(*id).await;
    }
    let expected: Vec<NodeId> = dead.iter().copied().map(NodeId::new).collect();
    cluster
        .wait_until("the leader sees both stopped voters as unreachable", |c| {
            c.node(leader).health().unreachable_voters == expected
        })
        .await;
    assert!(node.health().quorum_reachable, "three of five answer");

    // 5 voters, 2 dead: removing a dead one leaves 3 of 4 reachable.
    node.remove_member(NodeId::new(dead[0])).await.unwrap();
    let after_first: BTreeSet<u64> = (0..5).filter(|i| *i != dead[0]).collect();
    assert_eq!(voters(&node), after_first);
    node.remove_member(NodeId::new(dead[1])).await.unwrap();
    let live: BTreeSet<u64> = cluster.nodes.keys().copied().collect();
    assert_eq!(voters(&node), live);
    write_on_leader(&cluster, put("after-removals", "1"), "after-removals").await;
    cluster
        .wait_until("no voter is unreachable any more", |c| {
            c.node(leader).health().unreachable_voters.is_empty()
        })
        .await;
}

#[tokio::test]
async fn a_leader_without_a_quorum_says_so() {
    let mut cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let node = cluster.node(leader).clone();
    for id in (0..3).filter(|i| *i != leader) {
        cluster.stop_now(id).await;
    }
    cluster
        .wait_until("the leader reports the lost quorum", |c| {
            !c.node(leader).health().quorum_reachable
        })
        .await;
    assert_eq!(node.health().unreachable_voters.len(), 2);
    let why = quorum_refusal(node.remove_member(NodeId::new((leader + 1) % 3)).await);
    assert!(why.starts_with("only 1 of 3 voters are reachable"), "{why}");
}
