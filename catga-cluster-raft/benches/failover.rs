//! Fail-over and hand-over of a 3-node cluster over real loopback sockets,
//! plain HTTP against mutual TLS.
//!
//! Run with `cargo bench -p catga-cluster-raft --features tls --bench failover`
//! (`ROUNDS=50` to change the number of rounds per mode; `MODES=tls` to run
//! one mode only; `FAST_FAILOVER=off` to measure the timers alone, without
//! the crash fast path).
//!
//! Two clusters run side by side, one with `http://` endpoints and one with
//! `https://` endpoints and mutual TLS; they take turns, round by round, so
//! that drift on the machine affects both.
//!
//! * crash fail-over: the leader is stopped abruptly (its HTTP server's
//!   connections and listener closed, then its Raft), as a process death
//!   closes its sockets; measured until a survivor accepts a write, and the
//!   path that elected the survivor counted;
//! * graceful hand-over: measured from the moment the old leader stops
//!   claiming leadership until the new leader's `is_leader()` holds (the
//!   leaderless window).
#![allow(missing_docs, clippy::print_stdout)]

mod support;

use std::time::Duration;

use catga_cluster_core::{ClusterCoordinator, FailoverPath, NodeId};
use catga_cluster_raft::{Operation, RaftNode};
use support::{env_or, ms, report, Bench, Mode, Summary};
use tokio::time::Instant;

async fn write(node: &RaftNode, key: String) -> Result<(), catga_cluster_core::ClusterError> {
    node.write(
        Operation::Put {
            key,
            value: b"x".to_vec(),
            expected_revision: None,
        },
        None,
    )
    .await
    .map(|_| ())
}

/// Kills the leader, measures until a survivor accepts a write, then
/// restarts the killed node and waits until it follows again. Returns the
/// time and the path that elected the survivor.
async fn crash_round(bench: &mut Bench, round: usize) -> (Duration, Option<FailoverPath>) {
    let leader = bench.wait_leader().await;
    // Let the cluster settle: everybody knows the leader and, with the fast
    // path, watches its process.
    write(&bench.members[&leader].node, format!("warm{round}"))
        .await
        .unwrap();
    let watched = Instant::now() + Duration::from_secs(10);
    while bench.members.iter().any(|(i, m)| {
        *i != leader
            && m.node.failover_status().fast_path
            && m.node.failover_status().watching != Some(NodeId::new(leader))
    }) {
        assert!(Instant::now() < watched, "the followers never watched");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let started = Instant::now();
    bench.kill(leader).await;
    let path = loop {
        let candidate = bench.members.values().find(|m| m.node.is_leader());
        if let Some(m) = candidate {
            if write(&m.node, format!("after{round}")).await.is_ok() {
                break m.node.failover_status().last.map(|f| f.path);
            }
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no fail-over");
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let elapsed = started.elapsed();
    bench.start(leader).await;
    // Wait until the restarted node follows the leader again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bench.members[&leader].node.leadership().leader.is_none() {
        assert!(Instant::now() < deadline, "restarted node did not rejoin");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (elapsed, path)
}

/// Hands leadership over and measures the leaderless window.
async fn handover_round(bench: &Bench) -> Duration {
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
    let window = opened.elapsed();
    transfer.await.unwrap().unwrap();
    window
}

fn row(name: &str, mode: Mode, s: &Summary, plain: Option<&Summary>) {
    let ratio = plain.map_or(String::new(), |p| {
        format!(
            "{:.2} / {:.2}",
            ms(s.p50) / ms(p.p50),
            ms(s.p99) / ms(p.p99)
        )
    });
    println!(
        "| {name} | {} | {} | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {:.1} ms | {ratio} |",
        mode.label(),
        s.n,
        ms(s.min),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
    );
}

#[tokio::main]
async fn main() {
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .init();
    }
    let rounds: usize = env_or("ROUNDS", 30);
    let mut benches = Vec::new();
    for mode in Mode::from_env() {
        benches.push(Bench::three_nodes(mode).await);
    }

    let mut failover = vec![Vec::new(); benches.len()];
    let mut paths = vec![Vec::new(); benches.len()];
    let mut connections = vec![0; benches.len()];
    for round in 0..rounds {
        for (b, bench) in benches.iter_mut().enumerate() {
            let before = bench.stats.connections();
            let (elapsed, path) = crash_round(bench, round).await;
            failover[b].push(elapsed);
            paths[b].push(path);
            connections[b] += bench.stats.connections() - before;
        }
    }
    let mut handover = vec![Vec::new(); benches.len()];
    for _ in 0..rounds {
        for (b, bench) in benches.iter().enumerate() {
            handover[b].push(handover_round(bench).await);
        }
    }

    let mut crash = Vec::new();
    let mut hand = Vec::new();
    for (b, bench) in benches.iter().enumerate() {
        let label = bench.mode.label();
        crash.push(report(
            &format!("{label}: crash fail-over (leader killed -> write accepted)"),
            failover[b].clone(),
        ));
        let by = |p: FailoverPath| paths[b].iter().filter(|q| **q == Some(p)).count();
        println!(
            "{label}: the survivor was elected by the fast path {} times, the timers {} times, unknown {} times",
            by(FailoverPath::Fast),
            by(FailoverPath::Timer),
            paths[b].iter().filter(|q| q.is_none()).count(),
        );
        hand.push(report(
            &format!("{label}: graceful hand-over leaderless window"),
            handover[b].clone(),
        ));
        println!(
            "{label}: {} connections accepted in the crash rounds ({:.1} per round), \
             {} in all; {}",
            connections[b],
            connections[b] as f64 / rounds as f64,
            bench.stats.connections(),
            bench.stats.tls_summary(),
        );
    }

    println!();
    println!("| measurement | transport | rounds | min | p50 | p90 | p99 | max | TLS / plain (p50 / p99) |");
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (b, bench) in benches.iter().enumerate() {
        let plain = (b > 0 && benches[0].mode == Mode::Plain).then(|| &crash[0]);
        row(
            "crash fail-over → write accepted",
            bench.mode,
            &crash[b],
            plain,
        );
    }
    for (b, bench) in benches.iter().enumerate() {
        let plain = (b > 0 && benches[0].mode == Mode::Plain).then(|| &hand[0]);
        row("hand-over leaderless window", bench.mode, &hand[b], plain);
    }

    for bench in &mut benches {
        bench.stop_all().await;
    }
}
