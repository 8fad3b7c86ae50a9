//! A randomised fault schedule against three real nodes, with a small
//! writer; then every acknowledged write must be on every node, the
//! singleton fences and the admin calls must pass their checks, and the
//! unavailability per fault kind is printed.
//!
//! Replay a failing run with the `CATGA_FAULT_SEED=<n>` it printed;
//! `CATGA_FAULT_PROFILE=long` runs over a hundred faults.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_tests::harness::{send, Harness, HarnessOptions};
use catga_cluster_tests::schedule::{
    run_schedule, seed_from_env, unavailability_table, Profile, Schedule,
};
use catga_cluster_tests::singleton::{check_admin_quorum, check_singleton_fences};
use http::{Method, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How many writers run at once.
const WRITERS: usize = 3;

/// One acknowledged write.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    value: String,
    at: Instant,
}

/// A writer: unique keys, `PUT /cluster/kv/{key}` on the nodes in turn
/// (moving on after a failure), recording what was acknowledged.
async fn writer(
    n: usize,
    endpoints: Vec<String>,
    secret: String,
    acks: Arc<Mutex<Vec<Ack>>>,
    stop: CancellationToken,
) -> usize {
    let client = Client::builder(TokioExecutor::new()).build_http();
    let mut node = n % endpoints.len();
    let mut seq = 0u64;
    let mut failures = 0;
    while !stop.is_cancelled() {
        let key = format!("w{n}-{seq}");
        let value = format!("value {n} {seq}");
        let uri = format!("{}/cluster/kv/{key}", endpoints[node]);
        let answer = send(
            &client,
            &secret,
            Method::PUT,
            &uri,
            Some(Bytes::from(value.clone())),
            false,
        )
        .await;
        match answer {
            Ok((status, _)) if status.is_success() => {
                acks.lock().unwrap().push(Ack {
                    key,
                    value,
                    at: Instant::now(),
                });
            }
            _ => {
                // Unknown outcome: never reuse the key; try another node.
                failures += 1;
                node = (node + 1) % endpoints.len();
            }
        }
        seq += 1;
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(Duration::from_millis(10)) => {}
        }
    }
    failures
}

/// Every acknowledged write, read back (linearizably) from every node.
async fn check_acknowledged(harness: &Harness, acks: &[Ack]) -> Result<(), String> {
    let mut problems = Vec::new();
    for i in 0..harness.len() {
        for chunk in acks.chunks(32) {
            let reads = chunk.iter().map(|ack| async move {
                let path = format!("/cluster/kv/{}", ack.key);
                (
                    ack,
                    harness.request(i, Method::GET, &path, None, false).await,
                )
            });
            for (ack, read) in futures_util::future::join_all(reads).await {
                match read {
                    Ok((StatusCode::OK, body)) if body == ack.value.as_bytes() => {}
                    other => problems.push(format!(
                        "node {}: acknowledged {} = {:?}, read {:?}",
                        harness.id(i),
                        ack.key,
                        ack.value,
                        other.map(|(s, b)| (s, String::from_utf8_lossy(&b).into_owned()))
                    )),
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        problems.truncate(20);
        Err(problems.join("\n"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quick_schedule_keeps_every_acknowledged_write() {
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

    let acks = Arc::new(Mutex::new(Vec::new()));
    let stop = CancellationToken::new();
    let writers: Vec<_> = (0..WRITERS)
        .map(|n| {
            tokio::spawn(writer(
                n,
                harness.endpoints(),
                harness.secret().to_owned(),
                acks.clone(),
                stop.clone(),
            ))
        })
        .collect();

    let started = Instant::now();
    let injections = run_schedule(&mut harness, &schedule).await;
    // A moment of calm after the last heal: writes must go through again.
    let calm = Instant::now();
    let recovered = harness
        .wait_until(Duration::from_secs(20), |_| {
            acks.lock().unwrap().iter().any(|a| a.at > calm)
        })
        .await;
    stop.cancel();
    let mut failures = 0;
    for w in writers {
        failures += w.await.expect("the writer ran");
    }
    let acks = acks.lock().unwrap().clone();
    eprintln!(
        "schedule of {} faults in {:?}: {} writes acknowledged, {failures} failed or unknown",
        injections.len(),
        started.elapsed(),
        acks.len()
    );
    let instants: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    eprintln!(
        "unavailability (fault to first acknowledged write):\n{}",
        unavailability_table(&injections, &instants)
    );

    assert!(
        recovered,
        "no write acknowledged after healing: {}",
        harness.describe()
    );
    assert!(!acks.is_empty(), "the writers never got a write through");
    check_acknowledged(&harness, &acks)
        .await
        .unwrap_or_else(|e| panic!("acknowledged writes lost (CATGA_FAULT_SEED={seed}):\n{e}"));
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
