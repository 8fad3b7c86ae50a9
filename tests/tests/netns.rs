//! The example binary as three processes on three virtual hosts (Linux
//! network namespaces on a bridge, non-loopback addresses, a cluster
//! secret), with `netem` delay and loss where the kernel has it: a
//! partition of the leader, the majority electing a leader and taking
//! writes, the heal, and every acknowledged write on every node after.
//!
//! Needs root and permission to create network namespaces (CI runs it as
//! root); elsewhere it passes with a `skipped:` line on stderr.

use std::time::Duration;

use catga_cluster_tests::netns::{VirtualHosts, PORT};
use catga_cluster_tests::process::{MemberSpec, ProcessCluster, Writers, SETTLE};
use tokio::time::Instant;

/// How long a fault may take to be got over before the test fails.
const RECOVERY: Duration = Duration::from_secs(30);

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

#[test]
fn partition_and_heal_on_three_virtual_hosts() {
    let mut hosts = match VirtualHosts::create(3) {
        Ok(hosts) => hosts,
        Err(why) => {
            eprintln!("skipped: network namespaces unavailable: {}", why.0);
            return;
        }
    };
    let netem = hosts.shape(20, 5).expect("tc netem");
    eprintln!(
        "netns: hosts {}, {}, {} on a bridge; {}",
        hosts.addr(0),
        hosts.addr(1),
        hosts.addr(2),
        if netem {
            "netem delay 20ms loss 5% on every host"
        } else {
            "netem not in this kernel: no delay or loss, partitions by link state"
        }
    );
    let hosts = &hosts;
    hosts
        .run_in_bridge(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(scenario(hosts))
        })
        .expect("the client thread");
}

async fn scenario(hosts: &VirtualHosts) {
    let specs: Vec<MemberSpec> = (0..hosts.len())
        .map(|i| MemberSpec {
            id: i as u64 + 1,
            host: hosts.addr(i),
            port: PORT,
            netns: Some(hosts.namespace(i).to_owned()),
        })
        .collect();
    let mut cluster = ProcessCluster::new(specs).expect("a cluster");
    let leader = cluster.start_all().await.expect("a leader");
    let old_term = cluster.status(leader).await.expect("status")["term"]
        .as_u64()
        .expect("a term");
    let writers = Writers::start(
        3,
        "netns",
        (0..3).map(|i| Some(cluster.authority(i))).collect(),
        cluster.secret(),
        Duration::from_secs(5),
    );
    assert!(
        writers.wait_acks_after(Instant::now(), 30, RECOVERY).await,
        "no writes before the partition"
    );

    // Cut the leader off: the other two elect a leader and take writes.
    let t0 = Instant::now();
    hosts.partition(leader).expect("partition");
    let majority: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let until = Instant::now() + RECOVERY;
    let (new, new_term) = loop {
        let mut found = None;
        for &i in &majority {
            if let Ok(status) = cluster.status(i).await {
                let term = status["term"].as_u64().unwrap_or(0);
                if status["role"] == "leader" && status["lease_valid"] == true && term > old_term {
                    found = Some((i, term));
                }
            }
        }
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < until,
            "the majority elected no leader within {RECOVERY:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let elected = t0.elapsed();
    assert!(
        writers.wait_acks_after(t0, 30, RECOVERY).await,
        "the majority took no writes while the old leader was cut off"
    );
    let during = writers.snapshot();
    let first = during.first_ack_after(t0).expect("an ack");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Heal: the cut-off member catches up.
    let t1 = Instant::now();
    hosts.heal(leader).expect("heal");
    cluster
        .settle(SETTLE)
        .await
        .expect("one leader after the heal");
    let healed = t1.elapsed();
    writers.wait_acks_after(Instant::now(), 30, RECOVERY).await;
    let report = writers.stop().await;
    let end = Instant::now();
    eprintln!(
        "netns: leader member {leader} (term {old_term}) cut off; member {new} led in term {new_term} \
         after {}; first acknowledgement after {}; longest gap without acknowledgement {}; \
         settled {} after the heal; {} acknowledged ({} while cut off), {} failed, {} refused",
        ms(elected),
        ms(first),
        ms(report.longest_gap(t0, end)),
        ms(healed),
        report.acks.len(),
        report.acks.iter().filter(|a| a.at >= t0 && a.at < t1).count(),
        report.failed.len(),
        report.refused
    );
    cluster
        .verify_on_every_node(&report.acks, &[0, 1, 2])
        .await
        .expect("every acknowledged write on every node");
    cluster.stop().await;
}
