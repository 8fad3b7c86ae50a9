//! Fail-over and hand-over of a 3-node cluster over real loopback HTTP.
//!
//! Run with `cargo bench -p catga-cluster-raft --bench failover`
//! (`ROUNDS=50` to change the number of rounds).
//!
//! * crash fail-over: the leader is stopped abruptly (Raft and its HTTP
//!   server gone at once); measured until a survivor accepts a write;
//! * graceful hand-over: measured from the moment the old leader stops
//!   claiming leadership until the new leader's `is_leader()` holds (the
//!   leaderless window).
#![allow(missing_docs, clippy::print_stdout)]

mod support;

use std::time::Duration;

use catga_cluster_core::ClusterCoordinator;
use catga_cluster_raft::{Operation, RaftNode};
use support::{report, Bench};
use tokio::time::Instant;

#[tokio::main]
async fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    let mut bench = Bench::three_nodes().await;

    let mut failover = Vec::new();
    for round in 0..rounds {
        let leader = bench.wait_leader().await;
        // Let the cluster settle: everybody knows the leader.
        let write = |n: &RaftNode, k: String| {
            let n = n.clone();
            async move {
                n.write(
                    Operation::Put {
                        key: k,
                        value: b"x".to_vec(),
                        expected_revision: None,
                    },
                    None,
                )
                .await
            }
        };
        write(&bench.members[&leader].node, format!("warm{round}"))
            .await
            .unwrap();
        let started = Instant::now();
        bench.kill(leader).await;
        loop {
            let candidate = bench.members.values().find(|m| m.node.is_leader());
            if let Some(m) = candidate {
                if write(&m.node, format!("after{round}")).await.is_ok() {
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(10), "no fail-over");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        failover.push(started.elapsed());
        bench.start(leader).await;
        // Wait until the restarted node follows the leader again.
        let deadline = Instant::now() + Duration::from_secs(10);
        while bench.members[&leader].node.leadership().leader.is_none() {
            assert!(Instant::now() < deadline, "restarted node did not rejoin");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    report(
        "crash fail-over (leader killed -> write accepted)",
        failover,
    );

    let mut handover = Vec::new();
    for _ in 0..rounds {
        let leader = bench.wait_leader().await;
        let old = bench.members[&leader].node.clone();
        let others: Vec<RaftNode> = bench
            .members
            .iter()
            .filter(|(i, _)| **i != leader)
            .map(|(_, m)| m.node.clone())
            .collect();
        let mut rx = old.subscribe();
        let transfer = tokio::spawn(async move { old.transfer_leadership(None).await });
        // The window opens when the old leader stops claiming.
        let _ = rx.wait_for(|l| !l.is_leader()).await;
        let opened = Instant::now();
        loop {
            if others.iter().any(|n| n.is_leader()) {
                break;
            }
            tokio::task::yield_now().await;
        }
        handover.push(opened.elapsed());
        transfer.await.unwrap().unwrap();
    }
    report("graceful hand-over leaderless window", handover);

    bench.stop_all().await;
}
