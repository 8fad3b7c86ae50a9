//! Throughput and latency of replicated operations: uncontended lock
//! acquire + release, and key-value puts, at 1, 16 and 64 concurrent
//! clients spread over a 3-node cluster on real loopback sockets with
//! durable storage, plain HTTP against mutual TLS. Clients on followers go
//! through the forwarding path.
//!
//! Run with `cargo bench -p catga-cluster-raft --features tls --bench state_ops`
//! (`SECONDS=3` for longer rounds, `ROUNDS=5` for more rounds per case and
//! mode; `OPS=put`, `CLIENTS=64` and `MODES=tls` to run only some cases,
//! for a profile).
//!
//! Two clusters run side by side, one with `http://` endpoints and one with
//! `https://` endpoints and mutual TLS. For every case they take turns, round
//! by round, so that drift on the machine affects both; each one warms up
//! before its first round.
#![allow(missing_docs, clippy::print_stdout)]

mod support;

use std::time::Duration;

use catga_cluster_core::{DistributedLock, LockGuard};
use catga_cluster_raft::{RaftLock, RaftNode};
use support::{env_or, ms, percentile, process_cpu, Bench, Mode};
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

/// `clients` clients doing `op` on `bench` for `length`: the latencies and
/// the time they took.
async fn run(bench: &Bench, op: Op, clients: usize, length: Duration) -> (Vec<Duration>, Duration) {
    let nodes: Vec<RaftNode> = bench.members.values().map(|m| m.node.clone()).collect();
    let started = Instant::now();
    let until = started + length;
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
    (samples, started.elapsed())
}

/// One case in one mode, over all its rounds.
#[derive(Default)]
struct Case {
    samples: Vec<Duration>,
    elapsed: Duration,
    per_round: Vec<f64>,
    connections: u64,
    /// CPU time of the whole process during the rounds (both clusters; the
    /// other one is idle meanwhile).
    cpu: Option<Duration>,
}

impl Case {
    fn ops_per_second(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }

    /// CPU microseconds per operation, whole process.
    fn cpu_per_op(&self) -> String {
        self.cpu.map_or_else(
            || "-".to_owned(),
            |cpu| {
                format!(
                    "{:.0} µs",
                    cpu.as_secs_f64() * 1e6 / self.samples.len() as f64
                )
            },
        )
    }

    /// Cores busy on average, whole process.
    fn cores(&self) -> String {
        self.cpu.map_or_else(
            || "-".to_owned(),
            |cpu| format!("{:.2}", cpu.as_secs_f64() / self.elapsed.as_secs_f64()),
        )
    }
}

/// The connections each node's server holds open now and held at most
/// since the last peak reset, leader first.
fn open_connections(bench: &Bench) -> String {
    let leader = bench.leader();
    let mut nodes: Vec<u64> = bench.members.keys().copied().collect();
    nodes.sort_by_key(|i| Some(*i) != leader);
    let per_node: Vec<String> = nodes
        .iter()
        .map(|i| {
            let role = if Some(*i) == leader {
                "leader"
            } else {
                "follower"
            };
            format!(
                "{role} {i}: {} open, peak {}",
                bench.stats.open(*i),
                bench.stats.peak(*i)
            )
        })
        .collect();
    format!("connections accepted by {}", per_node.join("; "))
}

#[tokio::main]
async fn main() {
    let seconds: f64 = env_or("SECONDS", 2.0);
    let rounds: usize = env_or("ROUNDS", 3);
    let warm_up = Duration::from_millis(500);
    let length = Duration::from_secs_f64(seconds);
    let run_clients: Vec<usize> = std::env::var("CLIENTS").map_or_else(
        |_| vec![1, 16, 64],
        |c| c.split(',').filter_map(|n| n.trim().parse().ok()).collect(),
    );

    let mut benches = Vec::new();
    for mode in Mode::from_env() {
        benches.push(Bench::three_nodes(mode).await);
    }

    let mut table = Vec::new();
    let run_ops = std::env::var("OPS").unwrap_or_else(|_| "lock,put".to_owned());
    for (op, name, label) in [
        (Op::LockCycle, "lock", "lock acquire + release"),
        (Op::Put, "put", "put"),
    ] {
        if !run_ops.split(',').any(|o| o.trim() == name) {
            continue;
        }
        for clients in [1usize, 16, 64] {
            if !run_clients.contains(&clients) {
                continue;
            }
            let mut cases: Vec<Case> = benches.iter().map(|_| Case::default()).collect();
            for bench in &benches {
                run(bench, op, clients, warm_up).await;
                bench.stats.reset_peak();
            }
            for _ in 0..rounds {
                for (b, bench) in benches.iter().enumerate() {
                    let before = bench.stats.connections();
                    let cpu_before = process_cpu();
                    let (samples, elapsed) = run(bench, op, clients, length).await;
                    let cpu = process_cpu()
                        .zip(cpu_before)
                        .map(|(after, before)| after.saturating_sub(before));
                    let case = &mut cases[b];
                    case.cpu = match (case.cpu, cpu) {
                        (Some(total), Some(cpu)) => Some(total + cpu),
                        (None, cpu) if case.per_round.is_empty() => cpu,
                        _ => None,
                    };
                    case.per_round
                        .push(samples.len() as f64 / elapsed.as_secs_f64());
                    case.samples.extend(samples);
                    case.elapsed += elapsed;
                    case.connections += bench.stats.connections() - before;
                }
            }
            for (b, bench) in benches.iter().enumerate() {
                let rounds: Vec<String> = cases[b]
                    .per_round
                    .iter()
                    .map(|r| format!("{r:.0}"))
                    .collect();
                println!(
                    "{label}, {clients} clients, {}: ops/s per round {}; {} connections opened; {}",
                    bench.mode.label(),
                    rounds.join(", "),
                    cases[b].connections,
                    open_connections(bench),
                );
            }
            table.push((label, clients, cases));
        }
    }

    println!();
    println!(
        "| operation | clients | transport | ops/s | p50 | p99 | CPU per op | cores busy | new connections | TLS / plain ops/s | median of paired rounds (range) |"
    );
    println!("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (label, clients, mut cases) in table {
        let plain = cases[0].ops_per_second();
        let plain_rounds = cases[0].per_round.clone();
        for (b, bench) in benches.iter().enumerate() {
            let case = &mut cases[b];
            case.samples.sort();
            let ratio = if b == 0 || benches[0].mode != Mode::Plain {
                " |".to_owned()
            } else {
                // Rounds of the two modes ran back to back: their ratios
                // are less exposed to drift on a shared machine.
                let mut paired: Vec<f64> = case
                    .per_round
                    .iter()
                    .zip(&plain_rounds)
                    .map(|(tls, plain)| tls / plain)
                    .collect();
                paired.sort_by(f64::total_cmp);
                format!(
                    "{:.2} | {:.2} ({:.2}–{:.2})",
                    case.ops_per_second() / plain,
                    paired[paired.len() / 2],
                    paired[0],
                    paired[paired.len() - 1],
                )
            };
            println!(
                "| {label} | {clients} | {} | {:.0} | {:.2} ms | {:.2} ms | {} | {} | {} | {ratio} |",
                bench.mode.label(),
                case.ops_per_second(),
                ms(percentile(&case.samples, 0.5)),
                ms(percentile(&case.samples, 0.99)),
                case.cpu_per_op(),
                case.cores(),
                case.connections,
            );
        }
    }
    for bench in &benches {
        println!(
            "{}: {} connections accepted in all; {}",
            bench.mode.label(),
            bench.stats.connections(),
            bench.stats.tls_summary(),
        );
    }
    for bench in &mut benches {
        bench.stop_all().await;
    }
}
