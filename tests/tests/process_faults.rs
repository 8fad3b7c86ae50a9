//! Process-level faults against the example binary run as three OS
//! processes on loopback, with a cluster secret: SIGKILL of the leader,
//! SIGSTOP/SIGCONT of the leader, SIGTERM under load, and a kill in the
//! middle of a membership change. After each, every acknowledged write
//! must be on every node; the windows without acknowledgements are printed
//! to stderr (timings are reported, not asserted: the machine is shared).

use std::time::Duration;

use bytes::Bytes;
use catga_cluster_tests::process::{
    send, Ack, Outcome, ProcessCluster, Writers, CONTROL_DEADLINE, SETTLE,
};
use futures_util::future::join_all;
use http::{Method, StatusCode};
use rustix::process::Signal;
use tokio::time::Instant;

/// How many writers run during a fault.
const WRITERS: usize = 4;
/// How long a fault may take to be got over before the test fails.
const RECOVERY: Duration = Duration::from_secs(20);

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn writers_for(cluster: &ProcessCluster, prefix: &str, members: &[usize]) -> Writers {
    let targets = (0..cluster.len())
        .map(|i| members.contains(&i).then(|| cluster.authority(i)))
        .collect();
    Writers::start(
        WRITERS,
        prefix,
        targets,
        cluster.secret(),
        Duration::from_secs(5),
    )
}

/// SIGKILL of the leader under writers: a survivor acknowledges writes
/// again (the window is printed), the killed member restarts from its
/// data, and every acknowledged write is on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_leader_loses_no_acknowledged_write() {
    let mut cluster = ProcessCluster::loopback(3).expect("a cluster");
    let leader = cluster.start_all().await.expect("a leader");
    let writers = writers_for(&cluster, "kill", &[0, 1, 2]);
    assert!(
        writers.wait_acks_after(Instant::now(), 50, RECOVERY).await,
        "no writes before the fault"
    );

    let t0 = Instant::now();
    cluster.signal(leader, Signal::KILL).expect("SIGKILL");
    cluster
        .wait_exit(leader, Duration::from_secs(10))
        .await
        .expect("the killed leader exits");
    let survivors_acked = writers.wait_acks_after(t0, 1, RECOVERY).await;
    let after_kill = writers.snapshot();
    assert!(
        survivors_acked,
        "no write acknowledged within {RECOVERY:?} after the leader was killed ({} failed: {:?})",
        after_kill.failed.len(),
        after_kill.failed.iter().rev().take(3).collect::<Vec<_>>()
    );
    let first = after_kill
        .first_ack_after(t0)
        .expect("an ack after the kill");
    let new_leader = cluster.settle(SETTLE).await.expect("a new leader");
    assert_ne!(new_leader, leader, "the killed member cannot lead");

    // The killed member comes back from its data directory and catches up
    // while the writers go on.
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster.spawn(leader).expect("restart");
    let t1 = Instant::now();
    writers.wait_acks_after(t1, 50, RECOVERY).await;
    let report = writers.stop().await;
    let end = Instant::now();
    cluster.settle(SETTLE).await.expect("settled after restart");

    eprintln!(
        "sigkill: leader member {leader} killed; first acknowledgement by a survivor after {}; \
         longest gap without acknowledgement {} (kill to end); {} acknowledged, {} failed, {} refused",
        ms(first),
        ms(report.longest_gap(t0, end)),
        report.acks.len(),
        report.failed.len(),
        report.refused
    );
    cluster
        .verify_on_every_node(&report.acks, &[0, 1, 2])
        .await
        .expect("every acknowledged write on every node");
    cluster.stop().await;
}
