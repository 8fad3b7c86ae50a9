//! Watches on a follower of a 3-node cluster on real loopback sockets with
//! durable storage (plain HTTP): the latency of a key event from the
//! leader's acknowledgement of the write to its delivery to a watcher on a
//! follower, and how many events per second reach 100 watchers of one
//! prefix under concurrent writes.
//!
//! Run with `cargo bench -p catga-cluster-raft --features tls --bench watch`
//! (`WRITES=2000` latency samples, `EVENTS=20000` events to the 100
//! watchers, `WATCHERS=100`, `CLIENTS=64` concurrent writers).
#![allow(missing_docs, clippy::print_stdout)]

mod support;

use catga_cluster_raft::watch::WatchStream;
use support::{env_or, ms, percentile, Bench, Mode};
use tokio::time::Instant;

async fn next_put(stream: &mut WatchStream) -> u64 {
    match stream.next_event().await {
        Some(Ok(e)) => e.revision(),
        other => panic!("watch ended: {other:?}"),
    }
}

#[tokio::main]
async fn main() {
    let writes: usize = env_or("WRITES", 2000);
    let events: usize = env_or("EVENTS", 20_000);
    let watchers: usize = env_or("WATCHERS", 100);
    let clients: usize = env_or("CLIENTS", 64);

    let mut bench = Bench::three_nodes(Mode::Plain).await;
    let leader_id = bench.wait_leader().await;
    let leader = bench.members[&leader_id].node.clone();
    let follower_id = *bench.members.keys().find(|&&i| i != leader_id).unwrap();
    let follower = bench.members[&follower_id].node.clone();

    // Latency: one write at a time on the leader, one watcher on a follower.
    let mut stream = follower.watch("lat/", None).await.unwrap();
    let mut from_ack = Vec::with_capacity(writes);
    let mut from_submit = Vec::with_capacity(writes);
    for i in 0..writes + writes / 10 {
        let submitted = Instant::now();
        let revision = leader
            .put(&format!("lat/{}", i % 100), vec![0; 64])
            .await
            .unwrap();
        let acked = Instant::now();
        assert_eq!(next_put(&mut stream).await, revision);
        let delivered = Instant::now();
        if i >= writes / 10 {
            from_ack.push(delivered.saturating_duration_since(acked));
            from_submit.push(delivered - submitted);
        }
    }
    drop(stream);
    from_ack.sort();
    from_submit.sort();
    println!(
        "event latency on a follower ({writes} writes, one at a time): \
         leader ack -> delivery p50 {:.3} ms p99 {:.3} ms; \
         submit -> delivery p50 {:.3} ms p99 {:.3} ms (write ack p50 {:.3} ms)",
        ms(percentile(&from_ack, 0.50)),
        ms(percentile(&from_ack, 0.99)),
        ms(percentile(&from_submit, 0.50)),
        ms(percentile(&from_submit, 0.99)),
        ms(percentile(&from_submit, 0.50)) - ms(percentile(&from_ack, 0.50)),
    );

    // Fan-out: `watchers` watchers of one prefix on a follower, `clients`
    // concurrent writers on the leader.
    let mut readers = Vec::new();
    for _ in 0..watchers {
        let mut stream = follower.watch("fan/", None).await.unwrap();
        readers.push(tokio::spawn(async move {
            for _ in 0..events {
                next_put(&mut stream).await;
            }
            Instant::now()
        }));
    }
    let started = Instant::now();
    let per_client = events / clients;
    let mut writers = Vec::new();
    for c in 0..clients {
        let leader = leader.clone();
        let count = if c == clients - 1 {
            events - per_client * (clients - 1)
        } else {
            per_client
        };
        writers.push(tokio::spawn(async move {
            for i in 0..count {
                leader
                    .put(&format!("fan/{c}/{i}"), vec![0; 64])
                    .await
                    .unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let written = started.elapsed();
    let mut last = started;
    for r in readers {
        last = last.max(r.await.unwrap());
    }
    let elapsed = last - started;
    let per_watcher = events as f64 / elapsed.as_secs_f64();
    println!(
        "fan-out: {events} events to {watchers} watchers on a follower in {:.2} s \
         (writes done in {:.2} s, {clients} writers): {:.0} events/s per watcher, \
         {:.0} deliveries/s in all",
        elapsed.as_secs_f64(),
        written.as_secs_f64(),
        per_watcher,
        per_watcher * watchers as f64,
    );
    bench.stop_all().await;
}
