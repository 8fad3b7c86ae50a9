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

/// One cluster at a time: the machine's cores are shared, and timers of
/// twelve processes at once would measure the machine, not the cluster.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    let _serial = SERIAL.lock().await;
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

/// Polls the members in `candidates` until one of them leads with a valid
/// lease in a term above `above`; returns its index and term.
async fn wait_new_leader(
    cluster: &ProcessCluster,
    candidates: &[usize],
    above: u64,
    deadline: Duration,
) -> Result<(usize, u64), String> {
    let until = Instant::now() + deadline;
    loop {
        for &i in candidates {
            if let Ok(status) = cluster.status(i).await {
                let term = status["term"].as_u64().unwrap_or(0);
                if status["role"] == "leader" && status["lease_valid"] == true && term > above {
                    return Ok((i, term));
                }
            }
        }
        if Instant::now() > until {
            return Err(format!(
                "none of {candidates:?} led in a term above {above} within {deadline:?}"
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What one probe of the resumed old leader answered.
#[derive(Debug)]
struct Probe {
    path: &'static str,
    sent: Instant,
    answered: Instant,
    outcome: Outcome,
}

async fn probe(authority: String, secret: String, path: &'static str) -> Probe {
    // A client per probe: a connection of its own, made while the process
    // may be stopped (the kernel accepts it into the backlog).
    let http = catga_cluster_tests::process::client(0);
    let sent = Instant::now();
    let outcome = send(
        &http,
        Some(&secret),
        Method::GET,
        &authority,
        path,
        None,
        CONTROL_DEADLINE,
    )
    .await;
    Probe {
        path,
        sent,
        answered: Instant::now(),
        outcome,
    }
}

/// Whether a probe's answer claims leadership: `/health/leader` 200, or a
/// status with `role: leader` and a valid lease.
fn claims_leadership(probe: &Probe) -> bool {
    let Outcome::Answer(status, _, body) = &probe.outcome else {
        return false;
    };
    match probe.path {
        "/health/leader" => *status == StatusCode::OK,
        _ => serde_json::from_slice::<serde_json::Value>(body)
            .is_ok_and(|s| s["role"] == "leader" && s["lease_valid"] == true),
    }
}

/// SIGSTOP of the leader: the others elect a successor by the timers; on
/// SIGCONT the old leader must not answer as leader while the new one
/// leads, neither to requests queued while it was stopped nor to those
/// right after it resumed; its queued write is either acknowledged (and
/// then kept) or refused. Every acknowledged write is on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigstop_resumed_leader_does_not_lead_beside_the_new_one() {
    let _serial = SERIAL.lock().await;
    let mut cluster = ProcessCluster::loopback(3).expect("a cluster");
    let old = cluster.start_all().await.expect("a leader");
    let old_term = cluster.status(old).await.expect("status")["term"]
        .as_u64()
        .expect("a term");
    let survivors: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let writers = writers_for(&cluster, "stop", &survivors);
    assert!(
        writers.wait_acks_after(Instant::now(), 20, RECOVERY).await,
        "no writes before the fault"
    );

    let t0 = Instant::now();
    cluster.signal(old, Signal::STOP).expect("SIGSTOP");
    let (new, new_term) = wait_new_leader(&cluster, &survivors, old_term, RECOVERY)
        .await
        .expect("a successor while the leader is stopped");
    let elected = t0.elapsed();
    assert!(
        writers.wait_acks_after(t0, 1, RECOVERY).await,
        "no write acknowledged by the successor"
    );
    let first_ack = writers.snapshot().first_ack_after(t0).expect("an ack");

    // Requests queued at the stopped process: leadership checks and one
    // write, answered the moment it resumes.
    let authority = cluster.authority(old);
    let secret = cluster.secret().to_owned();
    let mut queued = Vec::new();
    for path in ["/health/leader", "/cluster/status"]
        .into_iter()
        .cycle()
        .take(6)
    {
        queued.push(tokio::spawn(probe(authority.clone(), secret.clone(), path)));
    }
    let queued_write = {
        let (authority, secret) = (authority.clone(), secret.clone());
        tokio::spawn(async move {
            let http = catga_cluster_tests::process::client(0);
            send(
                &http,
                Some(&secret),
                Method::PUT,
                &authority,
                "/cluster/kv/stop-queued",
                Some(("application/octet-stream", Bytes::from_static(b"queued"))),
                CONTROL_DEADLINE,
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t1 = Instant::now();
    cluster.signal(old, Signal::CONT).expect("SIGCONT");
    // And requests right after it resumed, for a second.
    let mut after = Vec::new();
    while t1.elapsed() < Duration::from_secs(1) {
        for path in ["/health/leader", "/cluster/status"] {
            after.push(probe(authority.clone(), secret.clone(), path).await);
        }
    }
    let mut probes: Vec<Probe> = join_all(queued)
        .await
        .into_iter()
        .map(|p| p.expect("a probe task"))
        .collect();
    probes.extend(after);
    let queued_write = queued_write.await.expect("the queued write");

    // The new leader led throughout: still leader, same term.
    let status = cluster.status(new).await.expect("the new leader's status");
    assert!(
        status["role"] == "leader" && status["term"].as_u64() == Some(new_term),
        "the successor (member {new}, term {new_term}) lost its leadership around the resume: {status}"
    );
    let violations: Vec<&Probe> = probes.iter().filter(|p| claims_leadership(p)).collect();
    let answered = probes
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Answer(..)))
        .count();
    let first_answer = probes
        .iter()
        .filter(|p| matches!(p.outcome, Outcome::Answer(..)))
        .map(|p| p.answered.saturating_duration_since(t1))
        .min();
    let follows_new = probes
        .iter()
        .filter(|p| p.path == "/cluster/status" && p.sent >= t1)
        .find_map(|p| match &p.outcome {
            Outcome::Answer(_, _, body) => serde_json::from_slice::<serde_json::Value>(body)
                .ok()
                .filter(|s| s["leader"]["id"].as_u64() == Some(cluster.id(new)))
                .map(|_| p.answered.saturating_duration_since(t1)),
            _ => None,
        });
    let write_served_by = queued_write.served_by();
    let write_status = queued_write.status();
    let mut acks = Vec::new();
    if queued_write.is_success() {
        acks.push(Ack {
            key: "stop-queued".into(),
            value: "queued".into(),
            at: Instant::now(),
            via: old,
        });
    }

    let report = writers.stop().await;
    let end = Instant::now();
    cluster
        .settle(SETTLE)
        .await
        .expect("settled after the resume");
    eprintln!(
        "sigstop: leader member {old} (term {old_term}) stopped; member {new} led in term {new_term} after {}; \
         first acknowledgement after {}; longest gap {}; resumed after {}: {} probes, {answered} answered \
         (first {:?} after SIGCONT), it named the new leader {:?} after SIGCONT, {} claimed leadership; \
         the write queued at it answered {write_status:?} served by {write_served_by:?}",
        ms(elected),
        ms(first_ack),
        ms(report.longest_gap(t0, end)),
        ms(t1 - t0),
        probes.len(),
        first_answer,
        follows_new,
        violations.len()
    );
    assert!(
        violations.is_empty(),
        "the resumed old leader answered as leader while member {new} led: {:?}",
        violations
            .iter()
            .map(|p| (p.path, p.sent.saturating_duration_since(t1), &p.outcome))
            .collect::<Vec<_>>()
    );
    assert!(answered > 0, "the resumed old leader never answered");
    acks.extend(report.acks);
    cluster
        .verify_on_every_node(&acks, &[0, 1, 2])
        .await
        .expect("every acknowledged write on every node");
    cluster.stop().await;
}

/// SIGTERM of the leader under writers spread over all members, which
/// move to the next member only when a connect is refused (nothing sent):
/// no request fails, the process exits successfully, and every
/// acknowledged write is on every node once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_of_the_leader_under_load_fails_no_request() {
    let _serial = SERIAL.lock().await;
    let mut cluster = ProcessCluster::loopback(3).expect("a cluster");
    let leader = cluster.start_all().await.expect("a leader");
    let writers = Writers::start(
        8,
        "term",
        (0..3).map(|i| Some(cluster.authority(i))).collect(),
        cluster.secret(),
        Duration::from_secs(10),
    );
    assert!(
        writers.wait_acks_after(Instant::now(), 100, RECOVERY).await,
        "no writes before the fault"
    );
    let t0 = Instant::now();
    cluster.signal(leader, Signal::TERM).expect("SIGTERM");
    let exit = cluster
        .wait_exit(leader, Duration::from_secs(30))
        .await
        .expect("the process exits after SIGTERM");
    let exited = t0.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let report = writers.stop().await;
    let end = Instant::now();
    eprintln!(
        "sigterm: leader member {leader} exited with {exit} after {}; longest gap without \
         acknowledgement {}; {} acknowledged ({} after SIGTERM), {} failed, {} refused (not sent)",
        ms(exited),
        ms(report.longest_gap(t0, end)),
        report.acks.len(),
        report.acks_after(t0),
        report.failed.len(),
        report.refused
    );
    assert!(exit.success(), "SIGTERM ended the process with {exit}");
    assert!(
        report.failed.is_empty(),
        "{} requests failed across the hand-over: {:?}",
        report.failed.len(),
        &report.failed[..report.failed.len().min(5)]
    );
    assert!(
        report.acks_after(t0) > 0,
        "nothing acknowledged after SIGTERM"
    );
    cluster.spawn(leader).expect("restart");
    cluster.settle(SETTLE).await.expect("settled after restart");
    cluster
        .verify_on_every_node(&report.acks, &[0, 1, 2])
        .await
        .expect("every acknowledged write on every node");
    cluster.stop().await;
}

/// A fourth member process is added (`POST /cluster/members` on the
/// leader) and the leader is SIGKILLed as soon as the new member shows up
/// as a learner, before or while it is promoted. The survivors elect a
/// leader, the killed member restarts, every member agrees on the voters,
/// the change can be completed, writes go through, and every acknowledged
/// write is on every member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_leader_during_a_membership_change() {
    let _serial = SERIAL.lock().await;
    let mut cluster = ProcessCluster::loopback(3).expect("a cluster");
    let leader = cluster.start_all().await.expect("a leader");
    let writers = writers_for(&cluster, "member", &[0, 1, 2]);
    assert!(
        writers.wait_acks_after(Instant::now(), 20, RECOVERY).await,
        "no writes before the fault"
    );
    let spare = cluster.add_spare().expect("a fourth member");
    let spare_id = cluster.id(spare);
    cluster.spawn(spare).expect("start the fourth member");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let add = {
        let (authority, secret) = (cluster.authority(leader), cluster.secret().to_owned());
        let body = serde_json::json!({
            "id": spare_id,
            "endpoint": format!("http://{}", cluster.authority(spare)),
        });
        tokio::spawn(async move {
            let http = catga_cluster_tests::process::client(0);
            send(
                &http,
                Some(&secret),
                Method::POST,
                &authority,
                "/cluster/members",
                Some(("application/json", Bytes::from(body.to_string()))),
                Duration::from_secs(30),
            )
            .await
        })
    };
    // Kill the leader the moment it lists the new member.
    let stage = loop {
        match cluster.status(leader).await {
            Ok(status) => {
                let entry = status["members"].as_array().and_then(|m| {
                    m.iter()
                        .find(|m| m["id"].as_u64() == Some(spare_id))
                        .cloned()
                });
                if let Some(entry) = entry {
                    break if entry["voter"] == true {
                        "voter"
                    } else {
                        "learner"
                    };
                }
            }
            Err(e) => panic!("the leader stopped answering before the kill: {e}"),
        }
        if add.is_finished() {
            break "answered before it was listed";
        }
    };
    let t0 = Instant::now();
    cluster.kill(leader).await.expect("SIGKILL the leader");
    let add = add.await.expect("the add request");
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let (new, term) = wait_new_leader(&cluster, &survivors, 0, RECOVERY)
        .await
        .expect("a leader among the survivors");
    let elected = t0.elapsed();
    let acked_by_survivors = writers.wait_acks_after(t0, 1, RECOVERY).await;

    cluster.spawn(leader).expect("restart the killed leader");
    cluster.settle(SETTLE).await.expect("settled after restart");
    let everyone: Vec<usize> = (0..4).collect();
    let voters_after_crash = cluster
        .agreed_voters(&everyone, RECOVERY)
        .await
        .expect("one voter set on every member");
    // Finish the change (a no-op when it was completed).
    let completed = cluster
        .add_member(new, spare, Duration::from_secs(40))
        .await;
    let completed_status = completed.status();
    let completed_ok = completed.ok();
    let voters = cluster
        .agreed_voters(&everyone, RECOVERY)
        .await
        .expect("one voter set on every member after the change");
    let t1 = Instant::now();
    let more = writers.wait_acks_after(t1, 50, RECOVERY).await;
    let report = writers.stop().await;
    eprintln!(
        "membership: leader member {leader} killed with member {spare} (id {spare_id}) {stage}; \
         the add answered {:?}; member {new} led in term {term} after {}; voters after the crash \
         {voters_after_crash:?}, after completing the change {voters:?} ({completed_status:?}); \
         {} acknowledged, {} failed, {} refused",
        add.status().ok_or_else(|| add.ok().err()),
        ms(elected),
        report.acks.len(),
        report.failed.len(),
        report.refused
    );
    assert!(acked_by_survivors, "no write acknowledged after the kill");
    assert!(more, "writes stopped after the change");
    completed_ok.expect("completing the change");
    assert_eq!(
        voters,
        vec![1, 2, 3, spare_id],
        "the voters after the change"
    );
    assert!(
        voters_after_crash == vec![1, 2, 3] || voters_after_crash == voters,
        "voters after the crash: {voters_after_crash:?}"
    );
    // The writes are read back on the leader, and every member has to
    // have applied exactly what it did (equal applied indexes of one log
    // are equal states).
    let leader_now = cluster.settle(SETTLE).await.expect("a leader");
    cluster
        .verify_on_every_node(&report.acks, &[leader_now])
        .await
        .expect("every acknowledged write on the leader");
    let applied = cluster
        .applied_converged(&everyone, RECOVERY)
        .await
        .expect("every member applied what the leader did");
    eprintln!("membership: every member applied up to index {applied}");
    cluster.stop().await;
}

/// A member added at run time joins (`Cluster__ColdStart=false`): it waits
/// with an empty log until the leader adds it, instead of founding a
/// cluster of its own first. Founding one made it campaign in terms of its
/// own, so that once added, every transfer to it (and once to an original
/// member) failed and terms climbed by about three a second. Leadership is
/// then handed to it like to any member.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_to_a_member_added_at_run_time() {
    let _serial = SERIAL.lock().await;
    let mut cluster = ProcessCluster::loopback(3).expect("a cluster");
    let leader = cluster.start_all().await.expect("a leader");
    let spare = cluster.add_spare().expect("a fourth member");
    cluster.spawn(spare).expect("start the fourth member");
    tokio::time::sleep(Duration::from_millis(500)).await;
    cluster
        .add_member(leader, spare, Duration::from_secs(40))
        .await
        .ok()
        .expect("the fourth member added");
    cluster
        .make_leader(spare, SETTLE)
        .await
        .expect("leadership handed to the added member");
    cluster.stop().await;
}
