//! Multi-node behaviour of the Raft node, in one process over the in-memory
//! network: elections, crashes, isolation, restarts from disk, membership
//! changes and hand-over.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use catga_cluster_core::protocol::{RaftRpc, TARGET_NODE_HEADER};
use catga_cluster_core::{
    ClusterCoordinator, ClusterError, MembershipError, NodeId, NodeInfo, Role,
};
use catga_cluster_raft::network::RpcRejection;
use catga_cluster_raft::{
    CommandResponse, NodeOptions, Operation, RaftNode, StartError, Storage, Transport,
};
use openraft::ServerState;

use crate::support::{self, config, retry, Cluster};

mod batching;
mod failover;
mod membership;
mod watch;

fn put(key: &str, value: &str) -> Operation {
    Operation::Put {
        key: key.into(),
        value: value.as_bytes().to_vec(),
        expected_revision: None,
    }
}

async fn write_on_leader(cluster: &Cluster, op: Operation, request_id: &str) -> CommandResponse {
    retry("write on the leader", || {
        let op = op.clone();
        let id = request_id.to_owned();
        async move {
            let leader = cluster.leader().ok_or("no leader")?;
            cluster
                .node(leader)
                .write(op, Some(id))
                .await
                .map_err(|e| e.to_string())
        }
    })
    .await
}

#[tokio::test]
async fn three_nodes_elect_one_leader() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    for (i, node) in &cluster.nodes {
        let l = node.leadership();
        assert_eq!(l.leader_id(), Some(NodeId::new(leader)));
        assert_eq!(node.is_leader(), *i == leader);
        assert_eq!(l.role == Role::Leader, *i == leader);
    }
    let fence = cluster.node(leader).ensure_leader().await.unwrap();
    assert!(fence.term >= 1);
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let refusal = cluster.node(follower).ensure_leader().await.unwrap_err();
    assert_eq!(refusal.leader_id, Some(NodeId::new(leader)));
    assert!(refusal.leader_endpoint.is_some());
}

#[tokio::test]
async fn leader_crash_elects_a_new_leader_that_accepts_writes() {
    let mut cluster = Cluster::start(3, false).await;
    let old = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("a", "1"), "w1").await;
    cluster.stop_now(old).await;
    let new = cluster.wait_for_leader().await;
    assert_ne!(new, old);
    let answer = write_on_leader(&cluster, put("b", "2"), "w2").await;
    assert!(matches!(answer, CommandResponse::Written { .. }));
    let value = cluster.node(new).get("a").await.unwrap().unwrap();
    assert_eq!(value.value, b"1");
}

/// The lease rule: an isolated leader stops claiming leadership before any
/// other node becomes leader. Checked over many rounds.
#[tokio::test]
async fn isolated_leader_stops_claiming_before_another_is_elected() {
    let cluster = Cluster::start(3, false).await;
    for round in 0..8 {
        let old = cluster.wait_for_leader().await;
        let violated = Arc::new(AtomicBool::new(false));
        let old_node = cluster.node(old).clone();
        // Watch the others' Raft state directly: the first moment any of them
        // is Leader, the old leader must already have stopped claiming.
        let mut watchers = Vec::new();
        for (i, node) in &cluster.nodes {
            if *i == old {
                continue;
            }
            let mut metrics = node.raft().metrics();
            let (old_node, violated) = (old_node.clone(), violated.clone());
            watchers.push((
                node.clone(),
                tokio::spawn(async move {
                    let _ = metrics.wait_for(|m| m.state == ServerState::Leader).await;
                    if old_node.is_leader() {
                        violated.store(true, Ordering::SeqCst);
                    }
                }),
            ));
        }
        cluster.net.isolate(NodeId::new(old));
        cluster
            .wait_until("a new leader in the majority", |c| {
                c.nodes.iter().any(|(i, n)| *i != old && n.is_leader())
            })
            .await;
        let mut checked = 0;
        for (node, watcher) in watchers {
            if node.raft().metrics().borrow().state == ServerState::Leader {
                watcher.await.unwrap();
                checked += 1;
            } else {
                watcher.abort();
            }
        }
        assert_eq!(checked, 1, "round {round}: one new leader was watched");
        assert!(
            !violated.load(Ordering::SeqCst),
            "round {round}: two leaders at once"
        );
        assert!(
            !old_node.is_leader(),
            "round {round}: isolated node still claims leadership"
        );
        // The old leader still believes it has the role: only the lease
        // tells the truth.
        cluster.net.heal();
    }
}

#[tokio::test]
async fn restarted_node_rejoins_from_disk() {
    let mut cluster = Cluster::start(3, true).await;
    let leader = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("k1", "v1"), "r1").await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    cluster.stop_now(follower).await;
    write_on_leader(&cluster, put("k2", "v2"), "r2").await;
    let last = cluster
        .node(cluster.leader().unwrap())
        .state_machine()
        .last_applied()
        .unwrap()
        .index;
    let restarted = cluster.start_node(follower).await;
    cluster.wait_applied(last).await;
    assert_eq!(restarted.state_machine().get("k1").unwrap().value, b"v1");
    assert_eq!(restarted.state_machine().get("k2").unwrap().value, b"v2");
}

#[tokio::test]
async fn whole_cluster_restart_keeps_committed_state() {
    let mut cluster = Cluster::start(3, true).await;
    cluster.wait_for_leader().await;
    for i in 0..20 {
        write_on_leader(
            &cluster,
            put(&format!("key{i}"), &format!("value{i}")),
            &format!("id{i}"),
        )
        .await;
    }
    cluster.stop_all().await;
    for i in 0..3 {
        cluster.start_node(i).await;
    }
    let leader = cluster.wait_for_leader().await;
    for i in 0..20 {
        let key = format!("key{i}");
        let v = retry("linearizable read", || cluster.node(leader).get(&key)).await;
        assert_eq!(v.unwrap().value, format!("value{i}").as_bytes());
    }
}

fn largest_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    for entry in walk(dir) {
        let len = std::fs::metadata(&entry).unwrap().len();
        if best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, entry));
        }
    }
    best.unwrap().1
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn torn_log_tail_is_truncated_and_the_node_rejoins() {
    let mut cluster = Cluster::start(3, true).await;
    let leader = cluster.wait_for_leader().await;
    for i in 0..5 {
        write_on_leader(&cluster, put(&format!("t{i}"), "x"), &format!("t{i}")).await;
    }
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let applied = cluster
        .node(follower)
        .state_machine()
        .last_applied()
        .unwrap()
        .index;
    cluster.wait_applied(applied).await;
    cluster.stop_now(follower).await;
    // A crash in the middle of an append: garbage after the last record.
    let log = largest_file(&cluster.data_dir(follower).unwrap().join("log"));
    let mut bytes = std::fs::read(&log).unwrap();
    bytes.extend_from_slice(&[0x55; 37]);
    std::fs::write(&log, bytes).unwrap();

    let node = cluster.start_node(follower).await;
    let last = cluster
        .node(leader)
        .state_machine()
        .last_applied()
        .unwrap()
        .index;
    cluster.wait_applied(last).await;
    assert!(node.state_machine().get("t4").is_some());
}

#[tokio::test]
async fn a_data_directory_of_another_node_is_refused() {
    let mut cluster = Cluster::start(1, true).await;
    cluster.wait_for_leader().await;
    cluster.stop_all().await;
    let dir = cluster.data_dir(0).unwrap();
    let err = RaftNode::builder(config(1, &[0, 1]))
        .transport(Transport::Memory(cluster.net.clone()))
        .storage(Storage::Disk(dir))
        .start()
        .await
        .unwrap_err();
    assert!(matches!(err, StartError::LogStore(_)), "{err}");
    let message = err.to_string();
    assert!(message.contains('0') && message.contains('1'), "{message}");
}

#[tokio::test]
async fn misaddressed_and_unauthenticated_rpcs_are_rejected() {
    let cluster = Cluster::start(1, false).await;
    cluster.wait_for_leader().await;
    let handler = cluster.node(0).rpc_handler();
    let mut headers = http::HeaderMap::new();
    let err = handler
        .handle(RaftRpc::Vote, &headers, b"")
        .await
        .unwrap_err();
    assert_eq!(err, RpcRejection::MissingTarget);
    headers.insert(TARGET_NODE_HEADER, "7".parse().unwrap());
    let err = handler
        .handle(RaftRpc::Vote, &headers, b"")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        RpcRejection::Misdirected {
            addressed: NodeId::new(7),
            local: NodeId::new(0)
        }
    );
    headers.insert(TARGET_NODE_HEADER, "0".parse().unwrap());
    let err = handler
        .handle(RaftRpc::Vote, &headers, b"\xff\xff")
        .await
        .unwrap_err();
    assert!(matches!(err, RpcRejection::BadBody(_)));

    // With a secret: missing or wrong bearer token is refused before anything
    // else is looked at.
    let net = catga_cluster_raft::network::memory::MemoryNetwork::new();
    let mut cfg = config(5, &[5]);
    cfg.secret = Some("s3cret".into());
    // The endpoints are names on the in-memory network: no secret crosses
    // a real one.
    cfg.allow_insecure_transport = true;
    let node = RaftNode::builder(cfg)
        .transport(Transport::Memory(net))
        .start()
        .await
        .unwrap();
    let handler = node.rpc_handler();
    let mut headers = http::HeaderMap::new();
    headers.insert(TARGET_NODE_HEADER, "5".parse().unwrap());
    assert_eq!(
        handler
            .handle(RaftRpc::Vote, &headers, b"")
            .await
            .unwrap_err(),
        RpcRejection::Unauthorized
    );
    headers.insert(http::header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
    assert_eq!(
        handler
            .handle(RaftRpc::Vote, &headers, b"")
            .await
            .unwrap_err(),
        RpcRejection::Unauthorized
    );
    headers.insert(
        http::header::AUTHORIZATION,
        "Bearer s3cret".parse().unwrap(),
    );
    assert!(matches!(
        handler
            .handle(RaftRpc::Vote, &headers, b"")
            .await
            .unwrap_err(),
        RpcRejection::BadBody(_)
    ));
    assert!(!format!("{handler:?}").contains("s3cret"));
    node.stop_now().await;
}

#[tokio::test]
async fn members_are_added_and_removed_while_writes_continue() {
    let mut cluster = Cluster::start(3, false).await;
    cluster.wait_for_leader().await;

    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let nodes: Vec<RaftNode> = cluster.nodes.values().cloned().collect();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut written = Vec::new();
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("w{i}");
                let op = put(&id, "v");
                // Retry each write (same request id) until it is known to
                // have applied.
                loop {
                    let leader = nodes.iter().find(|n| n.is_leader());
                    let Some(leader) = leader else {
                        tokio::task::yield_now().await;
                        continue;
                    };
                    match leader.write(op.clone(), Some(id.clone())).await {
                        Ok(_) => break,
                        Err(ClusterError::NotLeader(_))
                        | Err(ClusterError::UnknownOutcome { .. }) => {
                            tokio::task::yield_now().await
                        }
                        Err(e) => panic!("write {id}: {e}"),
                    }
                }
                written.push(id);
                i += 1;
            }
            written
        })
    };

    // A fourth node joins without bootstrapping, is added, then node 0 or 1
    // (whichever is not leader) is removed.
    cluster.members = vec![0, 1, 2, 3];
    let options = NodeOptions::default().bootstrap(false);
    let newcomer = cluster.start_node_with(3, options).await;
    let leader = cluster.leader().unwrap();
    retry("add member 3", || {
        cluster
            .node(cluster.leader().unwrap_or(leader))
            .add_member(support::node_info(3))
    })
    .await;
    cluster
        .wait_until("node 3 is a voter", |c| {
            c.node(3)
                .status()
                .members
                .iter()
                .any(|m| m.node.id == NodeId::new(3) && m.voter)
        })
        .await;
    let leader = cluster.wait_for_leader().await;
    let victim = [0, 1, 2].into_iter().find(|i| *i != leader).unwrap();
    retry("remove member", || {
        cluster
            .node(cluster.leader().unwrap_or(leader))
            .remove_member(NodeId::new(victim))
    })
    .await;
    cluster.stop_now(victim).await;

    stop.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();
    assert!(!written.is_empty());
    let leader = cluster.wait_for_leader().await;
    let last = cluster
        .node(leader)
        .state_machine()
        .last_applied()
        .unwrap()
        .index;
    cluster.wait_applied(last).await;
    for id in &written {
        assert!(
            newcomer.state_machine().get(id).is_some(),
            "{id} missing on the new member"
        );
    }
    let voters: BTreeSet<u64> = cluster
        .node(leader)
        .status()
        .members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node.id.get())
        .collect();
    assert!(
        voters.contains(&3) && !voters.contains(&victim),
        "{voters:?}"
    );
}

#[tokio::test]
async fn graceful_hand_over_moves_leadership_without_failing_writes() {
    let mut cluster = Cluster::start(3, false).await;
    let old = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("before", "1"), "h1").await;

    let new = cluster.node(old).transfer_leadership(None).await.unwrap();
    assert_ne!(new.get(), old);
    let agreed = cluster.wait_for_leader().await;
    assert_eq!(agreed, new.get());
    write_on_leader(&cluster, put("after", "2"), "h2").await;

    // An explicit target.
    let target = (0..3).find(|i| *i != new.get()).unwrap();
    let moved = cluster
        .node(new.get())
        .transfer_leadership(Some(NodeId::new(target)))
        .await
        .unwrap();
    assert_eq!(moved.get(), target);

    // Shutdown of the leader hands over first.
    let leader = cluster.wait_for_leader().await;
    let node = cluster.nodes.remove(&leader).unwrap();
    node.shutdown().await;
    let next = cluster.wait_for_leader().await;
    assert_ne!(next, leader);
    let v = retry("read after hand-over", || cluster.node(next).get("after")).await;
    assert_eq!(v.unwrap().value, b"2");
}

#[tokio::test]
async fn a_single_node_cluster_leads_alone() {
    let cluster = Cluster::start(1, false).await;
    assert_eq!(cluster.wait_for_leader().await, 0);
    let r = cluster.node(0).write(put("solo", "1"), None).await.unwrap();
    assert!(matches!(r, CommandResponse::Written { .. }));
    let health = cluster.node(0).health();
    assert!(health.running && health.lease_valid);
}

/// Hand-overs under a steady write load step the term by exactly one each:
/// the successor wins the first election it stands in, never a fallback
/// to timers or a second try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_overs_under_load_step_the_term_once() {
    let cluster = Cluster::start(3, true).await;
    cluster.wait_for_leader().await;
    let nodes: Vec<RaftNode> = cluster.nodes.values().cloned().collect();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (nodes, stop) = (nodes.clone(), stop.clone());
            tokio::spawn(async move {
                let mut acknowledged = 0u64;
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let Some(leader) = nodes.iter().find(|n| n.is_leader()) else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        continue;
                    };
                    match leader.write(put(&format!("w{w}-{seq}"), "v"), None).await {
                        Ok(_) => acknowledged += 1,
                        Err(_) => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                acknowledged
            })
        })
        .collect();
    for round in 0..10 {
        let leader = cluster.wait_for_leader().await;
        let term = cluster.node(leader).health().term;
        let new = cluster
            .node(leader)
            .transfer_leadership(None)
            .await
            .unwrap_or_else(|e| panic!("round {round}: hand-over failed: {e}"));
        assert_ne!(new.get(), leader, "round {round}");
        let agreed = cluster.wait_for_leader().await;
        assert_eq!(agreed, new.get(), "round {round}");
        let new_term = cluster.node(agreed).health().term;
        assert_eq!(
            new_term,
            term + 1,
            "round {round}: the hand-over from {leader} to {agreed} took {} terms",
            new_term - term
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    for writer in writers {
        acknowledged += writer.await.unwrap();
    }
    assert!(acknowledged > 0, "the writers wrote during the hand-overs");
}
