//! Which path replaces a lost leader, with the example as three OS
//! processes on loopback, where the kernel's handling of a dead process's
//! sockets is the signal: a SIGKILLed leader is replaced through the crash
//! fast path; a SIGSTOPped one by the election timers, and once resumed it
//! accepts no leader-only work beside its successor (checked with fencing
//! tokens and terms); with `Cluster__FastFailover=false` a killed leader
//! waits for the timers; a killed follower starts no election.
//!
//! The path is read from `/cluster/status` (`failover.last.path`) and
//! `/metrics` (`catga_cluster_failovers_total{path}`), never from how long
//! anything took.

use std::time::Instant;

use serde_json::{json, Value};

use crate::processes::{Answer, Cluster, DEADLINE};
use crate::ONE_CLUSTER_AT_A_TIME;

async fn status(cluster: &Cluster, i: u64) -> Value {
    let answer = cluster
        .send("GET", &cluster.url(i, "/cluster/status"), None)
        .await
        .unwrap_or_else(|| panic!("node {i} answers its status"));
    assert_eq!(answer.status, 200);
    answer.body
}

/// Node `i`'s fail-overs by path, from its metrics: (fast, timer, handover).
async fn failovers(cluster: &Cluster, i: u64) -> (u64, u64, u64) {
    let request = http::Request::get(cluster.url(i, "/metrics"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = cluster.http.request(request).await.unwrap();
    let text = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&text);
    let count = |path: &str| {
        let prefix = format!("catga_cluster_failovers_total{{path=\"{path}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no series for {path} in {text}"))
            .trim()
            .parse::<u64>()
            .unwrap()
    };
    (count("fast"), count("timer"), count("handover"))
}

/// The fail-overs of the nodes `among`, added up.
async fn failovers_among(cluster: &Cluster, among: &[u64]) -> (u64, u64, u64) {
    let mut sum = (0, 0, 0);
    for i in among {
        let (f, t, h) = failovers(cluster, *i).await;
        sum = (sum.0 + f, sum.1 + t, sum.2 + h);
    }
    sum
}

/// Polls until every node of `followers` watches `leader`'s process.
async fn wait_watched(cluster: &Cluster, leader: u64, followers: &[u64]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut watching = Vec::new();
        for i in followers {
            watching.push(status(cluster, *i).await["failover"]["watching"].as_u64());
        }
        if watching.iter().all(|w| *w == Some(leader)) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the followers do not watch node {leader}: {watching:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls until a POST of an order through `via` is created; returns it.
async fn order_through(cluster: &Cluster, via: u64, customer: &str) -> Answer {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(a) = cluster.post_order(via, customer).await {
            if a.status == 201 {
                return a;
            }
        }
        assert!(Instant::now() < deadline, "no order through node {via}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn others(of: u64) -> Vec<u64> {
    (0..3).filter(|i| *i != of).collect()
}

/// Starts three nodes with `settings`; returns the leader once the other
/// two watch it (or, with the fast path off, once they agree on it).
async fn start(cluster: &mut Cluster, settings: &[(&str, &str)]) -> u64 {
    for i in 0..3 {
        cluster.spawn_setting(i, settings);
    }
    let leader = cluster.wait_leader().await;
    order_through(cluster, leader, "first").await;
    leader
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_through_the_fast_path() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new();
    let old = start(&mut cluster, &[]).await;
    let survivors = others(old);
    wait_watched(&cluster, old, &survivors).await;
    let term = status(&cluster, old).await["term"].as_u64().unwrap();

    cluster.signal(old, "KILL");
    cluster.wait_exit(old);
    let new = cluster.wait_new_leader(&survivors, Some(old)).await;
    let after = status(&cluster, new).await;
    assert!(after["term"].as_u64().unwrap() > term);
    let last = &after["failover"]["last"];
    assert_eq!(last["path"], "fast", "{after}");
    assert_eq!(last["previous_leader"], old);
    assert_eq!(failovers(&cluster, new).await, (1, 0, 0));
    assert_eq!(failovers_among(&cluster, &survivors).await, (1, 0, 0));
    let via = survivors.iter().copied().find(|i| *i != new).unwrap();
    let created = order_through(&cluster, via, "after-kill").await;
    assert_eq!(created.served_by, Some(new));
    let logs = cluster.logs();
    assert!(
        logs.contains("its endpoint refuses connections: its process is gone"),
        "the survivors say why"
    );
    assert!(logs.contains("fail-over: this node leads after the fast path"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_leader_is_replaced_by_the_timers_and_resumes_as_a_follower() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new();
    let old = start(&mut cluster, &[]).await;
    let survivors = others(old);
    wait_watched(&cluster, old, &survivors).await;
    let old_term = status(&cluster, old).await["term"].as_u64().unwrap();
    // A lock taken through the old leader: its fencing token is the fence
    // that work done under it carries.
    let base = cluster.url(old, "/cluster/locks/fence");
    let lock = |action: &str| format!("{base}/{action}");
    let granted = cluster
        .send(
            "POST",
            &lock("acquire"),
            Some(json!({"owner": "old", "ttl_ms": 60_000, "wait_ms": 0})),
        )
        .await
        .unwrap();
    assert_eq!(granted.status, 200, "{}", granted.body);
    let old_token = granted.body["token"].as_u64().unwrap();

    cluster.signal(old, "STOP");
    let new = cluster.wait_new_leader(&survivors, Some(old)).await;
    let after = status(&cluster, new).await;
    let new_term = after["term"].as_u64().unwrap();
    assert!(new_term > old_term);
    assert_eq!(after["failover"]["last"]["path"], "timer", "{after}");
    assert_eq!(
        failovers_among(&cluster, &survivors).await.0,
        0,
        "no fast path"
    );

    // The new leader moves the lock on: the old holder's lease is given up
    // for it, and a new holder gets a greater token.
    let new_base = cluster.url(new, "/cluster/locks/fence");
    let on_new = |action: &str| format!("{new_base}/{action}");
    let released = cluster
        .send(
            "POST",
            &on_new("release"),
            Some(json!({"owner": "old", "token": old_token})),
        )
        .await
        .unwrap();
    assert_eq!(released.status, 200, "{}", released.body);
    let regranted = cluster
        .send(
            "POST",
            &on_new("acquire"),
            Some(json!({"owner": "new", "ttl_ms": 60_000, "wait_ms": 0})),
        )
        .await
        .unwrap();
    assert_eq!(regranted.status, 200, "{}", regranted.body);
    let new_token = regranted.body["token"].as_u64().unwrap();
    assert!(new_token > old_token);

    // Resumed, the old leader accepts no leader-only work beside its
    // successor: it never answers as the leader, renews nothing under its
    // old token, grants nothing, and serves no write itself.
    cluster.signal(old, "CONT");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let check = cluster
            .send("GET", &cluster.url(old, "/health/leader"), None)
            .await
            .unwrap();
        assert_eq!(check.status, 503, "the resumed node claims leadership");
        let renewed = cluster
            .send(
                "POST",
                &lock("renew"),
                Some(json!({"owner": "old", "token": old_token})),
            )
            .await
            .unwrap();
        assert_ne!(renewed.status, 200, "the old token was renewed");
        let taken = cluster
            .send(
                "POST",
                &lock("acquire"),
                Some(json!({"owner": "intruder", "ttl_ms": 1_000, "wait_ms": 0})),
            )
            .await
            .unwrap();
        assert_ne!(taken.status, 200, "a held lock was granted: {}", taken.body);
        let follows = status(&cluster, old).await["leader"]["id"].as_u64() == Some(new);
        if follows {
            break;
        }
        assert!(Instant::now() < deadline, "the resumed node never follows");
    }
    let created = order_through(&cluster, old, "after-resume").await;
    assert_eq!(created.served_by, Some(new), "served by the leader only");
    let resumed = status(&cluster, old).await;
    assert!(resumed["term"].as_u64().unwrap() >= new_term);
    assert_eq!(resumed["role"], "follower");
    assert_eq!(failovers(&cluster, old).await.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_fast_path_off_a_killed_leader_waits_for_the_timers() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new();
    let old = start(&mut cluster, &[("Cluster__FastFailover", "false")]).await;
    let survivors = others(old);
    for i in 0..3 {
        let failover = &status(&cluster, i).await["failover"];
        assert_eq!(failover["fast_path"], false);
        assert_eq!(failover["watching"], Value::Null);
    }
    cluster.signal(old, "KILL");
    cluster.wait_exit(old);
    let new = cluster.wait_new_leader(&survivors, Some(old)).await;
    assert_eq!(
        status(&cluster, new).await["failover"]["last"]["path"],
        "timer"
    );
    assert_eq!(failovers_among(&cluster, &survivors).await, (0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_follower_starts_no_election() {
    let _one = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut cluster = Cluster::new();
    let leader = start(&mut cluster, &[]).await;
    let followers = others(leader);
    wait_watched(&cluster, leader, &followers).await;
    let term = status(&cluster, leader).await["term"].as_u64().unwrap();
    let (killed, other) = (followers[0], followers[1]);

    cluster.signal(killed, "KILL");
    cluster.wait_exit(killed);
    // The leader notices (the reachability window is longer than a lease),
    // and all that changes is its health.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let ready = cluster
            .send("GET", &cluster.url(leader, "/health/ready"), None)
            .await
            .unwrap();
        if ready.body["reason"] == "voter-unreachable" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the leader never missed node {killed}: {}",
            ready.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let created = order_through(&cluster, other, "without-a-follower").await;
    assert_eq!(created.served_by, Some(leader));
    for i in [leader, other] {
        let now = status(&cluster, i).await;
        assert_eq!(now["term"].as_u64(), Some(term), "node {i}: {now}");
        assert_eq!(now["leader"]["id"].as_u64(), Some(leader));
    }
    assert_eq!(failovers_among(&cluster, &[leader, other]).await, (0, 0, 0));
}
