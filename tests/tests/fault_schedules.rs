//! A randomised fault schedule against three real nodes while the workload
//! runs on every node; then the histories must be linearizable, every
//! invariant must hold, every acknowledged write must be in every node's
//! state, the singleton fences and the admin calls must pass their checks,
//! and the unavailability per fault kind is printed.
//!
//! Replay a failing run with the `CATGA_FAULT_SEED=<n>` it printed;
//! `CATGA_FAULT_PROFILE=long` runs over a hundred faults. A failing run
//! writes its history to the temporary directory (also with
//! `CATGA_WORKLOAD_DUMP` set).

use std::time::Duration;

use catga_cluster_raft::watch::KeyEvent;
use catga_cluster_tests::checker::{check_with, CheckOptions};
use catga_cluster_tests::harness::{Harness, HarnessOptions};
use catga_cluster_tests::history::{Call, FinalReads, History, Outcome, Reply};
use catga_cluster_tests::invariants::check_all;
use catga_cluster_tests::schedule::{
    run_schedule, seed_from_env, unavailability_table, FaultKind, Profile, Schedule,
};
use catga_cluster_tests::singleton::{check_admin_quorum, check_singleton_fences};
use catga_cluster_tests::workload::{read_back, Workload, WorkloadConfig};
use tokio::time::Instant;

/// How long the workload runs on after the last heal: writes must go
/// through again in that time.
const CALM: Duration = Duration::from_secs(3);

/// Every key the final reads saw, compared with each running node's own
/// state machine once it has applied what the leader has: every
/// acknowledged write is then in every node's state, not only readable
/// through the leader.
async fn check_replicas(harness: &Harness, finals: &FinalReads) -> Result<usize, String> {
    let leader = harness.wait_for_leader().await;
    let target = harness
        .node(leader)
        .and_then(|n| n.state_machine().last_applied())
        .map_or(0, |l| l.index);
    let caught_up = harness
        .wait_until(Duration::from_secs(20), |h| {
            h.running().into_iter().all(|i| {
                h.node(i)
                    .and_then(|n| n.state_machine().last_applied())
                    .is_some_and(|l| l.index >= target)
            })
        })
        .await;
    if !caught_up {
        return Err(format!(
            "the nodes did not apply up to the leader's index {target}: {}",
            harness.describe()
        ));
    }
    let mut problems = Vec::new();
    let mut checked = 0;
    for read in finals.kv.iter().filter(|r| r.node == leader) {
        let expected = match &read.reply {
            Some(Reply::Value { value, revision }) => Some((value.clone(), *revision)),
            Some(Reply::NotFound) => None,
            _ => continue,
        };
        for i in harness.running() {
            let local = harness
                .node(i)
                .and_then(|n| n.state_machine().get(&read.key))
                .map(|v| (String::from_utf8_lossy(&v.value).into_owned(), v.revision));
            checked += 1;
            if local != expected {
                problems.push(format!(
                    "node {}: {} is {local:?} in its state, the leader read {expected:?}",
                    harness.id(i),
                    read.key
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(checked)
    } else {
        problems.truncate(20);
        Err(problems.join("\n"))
    }
}

/// When each acknowledged write was answered, on the harness's clock.
fn acknowledged_writes(history: &History, started: Instant) -> Vec<Instant> {
    history
        .ops
        .iter()
        .filter(|op| op.call.is_write() && matches!(op.outcome, Outcome::Ok(_)))
        .map(|op| started + Duration::from_micros(op.completed_us))
        .collect()
}

fn dump(history: &History, seed: u64) {
    let path = std::env::temp_dir().join(format!("catga-fault-history-{seed}.json"));
    match history.dump(&path) {
        Ok(()) => eprintln!("history written to {}", path.display()),
        Err(e) => eprintln!("cannot write the history to {}: {e}", path.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fault_schedule_keeps_the_histories_linearizable_and_every_write() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_test_writer()
        .try_init();
    let seed = seed_from_env();
    let profile = Profile::from_env();
    let schedule = Schedule::generate(seed, profile);
    let mut harness = Harness::start(HarnessOptions::new(3, seed)).await;

    let config = WorkloadConfig {
        secret: Some(harness.secret().to_owned()),
        seed,
        ..WorkloadConfig::new(harness.endpoints())
    };
    let workload = Workload::start(config.clone());
    let started = Instant::now() - workload.elapsed();

    let injections = run_schedule(&mut harness, &schedule).await;
    harness.wait_for_leader().await;
    let calm = Instant::now();
    tokio::time::sleep(CALM).await;
    let history = workload.stop().await;
    let took = started.elapsed();

    let acks = acknowledged_writes(&history, started);
    let stats = history.stats();
    eprintln!(
        "CATGA_FAULT_SEED={seed}: {} faults in {took:?}; {} calls ({} acknowledged writes); \
         calls by kind and outcome:\n{}",
        injections.len(),
        history.ops.len(),
        acks.len(),
        serde_json::to_string_pretty(&stats).unwrap_or_default()
    );
    eprintln!(
        "unavailability (fault to first acknowledged write):\n{}",
        unavailability_table(&injections, &acks)
    );

    let recovered = acks.iter().any(|at| *at > calm);
    if !recovered {
        dump(&history, seed);
    }
    assert!(
        recovered,
        "no write acknowledged in the {CALM:?} after the last heal (CATGA_FAULT_SEED={seed}): {}",
        harness.describe()
    );

    let finals = read_back(&config, &history).await;
    let checking = std::time::Instant::now();
    let report = check_with(&history, Some(&finals), &CheckOptions::default());
    eprintln!(
        "linearizability ({:?}): {}",
        checking.elapsed(),
        report.summary()
    );
    let violations = check_all(&history, Some(&finals));
    if !report.passed()
        || !violations.is_empty()
        || std::env::var_os("CATGA_WORKLOAD_DUMP").is_some()
    {
        dump(&history, seed);
    }
    assert!(
        report.passed(),
        "not linearizable (CATGA_FAULT_SEED={seed}): {}",
        report.summary()
    );
    assert!(
        violations.is_empty(),
        "invariants broken (CATGA_FAULT_SEED={seed}): {violations:#?}"
    );
    let replicas = check_replicas(&harness, &finals)
        .await
        .unwrap_or_else(|e| panic!("acknowledged writes missing (CATGA_FAULT_SEED={seed}):\n{e}"));
    eprintln!("{replicas} key reads compared with every node's own state");

    check_singleton_fences(harness.singletons())
        .unwrap_or_else(|e| panic!("singleton fences (CATGA_FAULT_SEED={seed}):\n{e}"));
    assert!(
        !harness.singletons().submissions().is_empty(),
        "no singleton run ever submitted its fence"
    );
    check_admin_quorum(&harness.admin_calls())
        .unwrap_or_else(|e| panic!("admin quorum (CATGA_FAULT_SEED={seed}):\n{e}"));
    harness.stop().await;
}

/// One node's watch of the run's keys: every event from `start`, resumed
/// after a cut-off (`Lagged`) at the next revision, until `stop`.
async fn watch_node(
    node: catga_cluster_raft::RaftNode,
    prefix: String,
    start: u64,
    stop: tokio_util::sync::CancellationToken,
) -> Result<Vec<KeyEvent>, String> {
    use catga_cluster_raft::watch::WatchError;
    let mut events: Vec<KeyEvent> = Vec::new();
    let mut from = start;
    loop {
        let mut watch = node
            .watch(&prefix, Some(from))
            .await
            .map_err(|e| format!("watch from {from}: {e}"))?;
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return Ok(events),
                next = watch.next_event() => next,
            };
            match next {
                Some(Ok(event)) => events.push(event),
                Some(Err(WatchError::Lagged { last_revision })) => {
                    from = last_revision + 1;
                    break;
                }
                Some(Err(e)) => return Err(format!("watch: {e}")),
                None => return Err("the watch ended while its node runs".into()),
            }
        }
    }
}

/// The faults that leave every node's process and state in place (no
/// crash, restart or removal), so a watch on each node runs the whole time:
/// partitions, pauses, slow, lossy and cut links, transfers.
fn keeps_every_node(kind: FaultKind) -> bool {
    !matches!(
        kind,
        FaultKind::LeaderCrashLoop | FaultKind::ClusterRestart | FaultKind::MembershipChange
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_on_every_node_see_one_sequence_through_leader_changes() {
    let seed = seed_from_env();
    let mut schedule = Schedule::generate(seed, Profile::from_env());
    schedule.steps.retain(|step| keeps_every_node(step.kind));
    let mut harness = Harness::start(HarnessOptions::new(3, seed)).await;
    let config = WorkloadConfig {
        secret: Some(harness.secret().to_owned()),
        seed,
        ..WorkloadConfig::new(harness.endpoints())
    };
    let workload = Workload::start(config.clone());
    let prefix = workload.run().to_owned();

    // Every watcher starts at the same linearizable point.
    let first = harness.node(0).expect("node 0 runs").clone();
    let start = first
        .watch(&prefix, None)
        .await
        .expect("a watch from now")
        .start_revision();
    let stop = tokio_util::sync::CancellationToken::new();
    let watchers: Vec<_> = harness
        .running()
        .into_iter()
        .map(|i| {
            let node = harness.node(i).expect("running").clone();
            tokio::spawn(watch_node(node, prefix.clone(), start, stop.clone()))
        })
        .collect();

    let injections = run_schedule(&mut harness, &schedule).await;
    harness.wait_for_leader().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let history = workload.stop().await;
    let finals = read_back(&config, &history).await;
    // Every node applies what the leader has, then its watcher has had it.
    let leader = harness.wait_for_leader().await;
    let target = harness
        .node(leader)
        .and_then(|n| n.state_machine().last_applied())
        .map_or(0, |l| l.index);
    assert!(
        harness
            .wait_until(Duration::from_secs(20), |h| h.running().into_iter().all(
                |i| {
                    h.node(i)
                        .and_then(|n| n.state_machine().last_applied())
                        .is_some_and(|l| l.index >= target)
                }
            ))
            .await,
        "the nodes did not catch up (CATGA_FAULT_SEED={seed}): {}",
        harness.describe()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    let mut sequences = Vec::new();
    for w in watchers {
        let events = w
            .await
            .expect("the watcher ran")
            .unwrap_or_else(|e| panic!("a watcher failed (CATGA_FAULT_SEED={seed}): {e}"));
        // Only what every node had applied when the check began.
        let events: Vec<KeyEvent> = events
            .into_iter()
            .filter(|e| e.revision() <= target)
            .collect();
        sequences.push(events);
    }
    eprintln!(
        "CATGA_FAULT_SEED={seed}: {} faults, watch from revision {start} to {target}: {} events \
         on each of {} nodes",
        injections.len(),
        sequences[0].len(),
        sequences.len()
    );

    // One sequence: in revision order, no key twice in a revision, the
    // same on every node.
    for (i, events) in sequences.iter().enumerate() {
        for pair in events.windows(2) {
            assert!(
                pair[0].revision() < pair[1].revision()
                    || (pair[0].revision() == pair[1].revision() && pair[0].key() != pair[1].key()),
                "node {i}: out of order or repeated: {:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
        assert_eq!(
            events, &sequences[0],
            "node {i} saw another sequence than node 0 (CATGA_FAULT_SEED={seed})"
        );
    }
    // Every acknowledged write after the start is in it, at its revision.
    let events = &sequences[0];
    let mut missing = Vec::new();
    for op in &history.ops {
        let key = match &op.call {
            Call::KvPut { key, .. } | Call::KvCas { key, .. } => key,
            _ => continue,
        };
        if let Outcome::Ok(Reply::Written { revision }) = &op.outcome {
            if *revision >= start
                && !events.iter().any(|e| {
                    matches!(e, KeyEvent::Put { key: k, revision: r, .. } if k == key && r == revision)
                })
            {
                missing.push(format!("{key} at {revision}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "acknowledged writes missing from the watch (CATGA_FAULT_SEED={seed}): {missing:?}"
    );
    // The last event of each key is what the leader reads at the end.
    for read in finals.kv.iter().filter(|r| r.node == leader) {
        let last = events.iter().rev().find(|e| e.key() == read.key);
        match (last, &read.reply) {
            (
                Some(KeyEvent::Put {
                    value, revision, ..
                }),
                Some(Reply::Value {
                    value: v,
                    revision: r,
                }),
            ) => {
                assert_eq!(
                    (String::from_utf8_lossy(value).as_ref(), *revision),
                    (v.as_str(), *r),
                    "{}: the watch ends elsewhere than the final read",
                    read.key
                );
            }
            (Some(KeyEvent::Delete { .. }), Some(Reply::NotFound)) | (None, _) => {}
            (last, reply) => panic!(
                "{}: the watch's last event {last:?}, the final read {reply:?}",
                read.key
            ),
        }
    }
    harness.stop().await;
}
