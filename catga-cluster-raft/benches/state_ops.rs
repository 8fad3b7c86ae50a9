//! Throughput and latency of replicated operations: uncontended lock
//! acquire + release, and key-value puts, at 1, 16 and 64 concurrent
//! clients spread over a 3-node cluster on real loopback HTTP with durable
//! storage. Clients on followers go through the forwarding path.
//!
//! Run with `cargo bench -p catga-cluster-raft --bench state_ops`
//! (`SECONDS=5` to measure longer per case).
#![allow(missing_docs, clippy::print_stdout)]

mod support;

use std::time::Duration;

use catga_cluster_core::{DistributedLock, LockGuard};
use catga_cluster_raft::{RaftLock, RaftNode};
use support::{percentile, Bench};
use tokio::time::Instant;

#[derive(Clone, Copy)]
enum Op {
    LockCycle,
    Put,
}

async fn client(node: RaftNode, op: Op, id: usize, until: Instant) -> Vec<Duration> {
    let locks = RaftLock::new(node.clone());
    let name = format!("lock-{id}");
    let key = format!("key-{id}");
    let mut samples = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let started = Instant::now();
        match op {
            Op::LockCycle => {
                let guard = locks
                    .try_acquire(&name, Duration::from_secs(30), Duration::ZERO)
                    .await
                    .expect("acquire")
                    .expect("uncontended");
                guard.release().await.expect("release");
            }
            Op::Put => {
                node.put(&key, n.to_le_bytes().to_vec()).await.expect("put");
            }
        }
        samples.push(started.elapsed());
        n += 1;
    }
    samples
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut bench = Bench::three_nodes().await;
    let nodes: Vec<RaftNode> = bench.members.values().map(|m| m.node.clone()).collect();
    println!("| operation | clients | ops/s | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (op, label) in [(Op::LockCycle, "lock acquire + release"), (Op::Put, "put")] {
        for clients in [1usize, 16, 64] {
            let started = Instant::now();
            let until = started + Duration::from_secs(seconds);
            let mut tasks = Vec::new();
            for c in 0..clients {
                tasks.push(tokio::spawn(client(
                    nodes[c % nodes.len()].clone(),
                    op,
                    c,
                    until,
                )));
            }
            let mut samples = Vec::new();
            for t in tasks {
                samples.extend(t.await.unwrap());
            }
            let elapsed = started.elapsed().as_secs_f64();
            samples.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "| {label} | {clients} | {:.0} | {:.2} ms | {:.2} ms |",
                samples.len() as f64 / elapsed,
                ms(percentile(&samples, 0.5)),
                ms(percentile(&samples, 0.99)),
            );
        }
    }
    bench.stop_all().await;
}
