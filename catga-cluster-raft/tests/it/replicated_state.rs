//! The replicated lock and key-value store across a 3-node cluster in one
//! process: mutual exclusion under contention and fail-over, lease expiry
//! after a holder crash, idempotent retries, compare-and-set races, restarts
//! from disk and snapshot installation.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_cluster_core::{DistributedLock, LockError, LockGuard, NodeId};
use catga_cluster_raft::state_machine::StateMachineConfig;
use catga_cluster_raft::{CasOutcome, CommandResponse, NodeOptions, Operation, RaftLock, RaftNode};

use crate::support::{retry, Cluster};

const LONG: Duration = Duration::from_secs(20);

/// A resource that accepts work only with a fencing token above every token
/// it has seen, and counts concurrent holders.
#[derive(Default)]
struct FencedResource {
    highest: AtomicU64,
    active: AtomicUsize,
    accepted: Mutex<Vec<u64>>,
}

impl FencedResource {
    fn enter(&self, token: u64) {
        let previous = self.highest.fetch_max(token, Ordering::SeqCst);
        assert!(
            token > previous,
            "token {token} is not above {previous}: stale holder"
        );
        assert_eq!(
            self.active.fetch_add(1, Ordering::SeqCst),
            0,
            "two holders at once"
        );
        self.accepted.lock().unwrap().push(token);
    }

    fn leave(&self) {
        self.active.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn contend(
    nodes: Vec<RaftNode>,
    resource: Arc<FencedResource>,
    contenders: usize,
    rounds: usize,
) {
    let mut tasks = Vec::new();
    for c in 0..contenders {
        let node = nodes[c % nodes.len()].clone();
        let resource = resource.clone();
        tasks.push(tokio::spawn(async move {
            let locks = RaftLock::new(node);
            let mut done = 0;
            while done < rounds {
                let guard = match locks.try_acquire("resource", LONG, LONG).await {
                    Ok(Some(guard)) => guard,
                    Ok(None) => panic!("contender {c} waited {LONG:?} in vain"),
                    // A fail-over can leave an acquire's outcome unknown or
                    // refuse it on a stopped node: try again.
                    Err(
                        LockError::UnknownOutcome(_)
                        | LockError::NotLeader(_)
                        | LockError::Shutdown,
                    ) => continue,
                    Err(e) => panic!("contender {c}: {e}"),
                };
                resource.enter(guard.token().get());
                tokio::task::yield_now().await;
                resource.leave();
                match guard.release().await {
                    Ok(())
                    | Err(
                        LockError::UnknownOutcome(_)
                        | LockError::NotLeader(_)
                        | LockError::Shutdown,
                    ) => {}
                    Err(e) => panic!("contender {c} release: {e}"),
                }
                done += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn sixteen_contenders_over_three_nodes_are_mutually_exclusive() {
    let cluster = Cluster::start(3, false).await;
    cluster.wait_for_leader().await;
    let resource = Arc::new(FencedResource::default());
    let nodes: Vec<RaftNode> = cluster.nodes.values().cloned().collect();
    contend(nodes, resource.clone(), 16, 5).await;
    assert_eq!(resource.accepted.lock().unwrap().len(), 16 * 5);
}

#[tokio::test]
async fn fail_over_during_contention_keeps_exclusion() {
    let mut cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let resource = Arc::new(FencedResource::default());
    // Contenders only on the nodes that survive.
    let survivors: Vec<RaftNode> = cluster
        .nodes
        .iter()
        .filter(|(i, _)| **i != leader)
        .map(|(_, n)| n.clone())
        .collect();
    let run = tokio::spawn(contend(survivors, resource.clone(), 8, 6));
    // Let some grants happen, then kill the leader in the middle of it.
    cluster
        .wait_until("a few grants", |_| {
            resource.accepted.lock().unwrap().len() >= 5
        })
        .await;
    cluster.stop_now(leader).await;
    run.await.unwrap();
    assert_eq!(resource.accepted.lock().unwrap().len(), 8 * 6);
}

#[tokio::test]
async fn a_crashed_holders_lock_frees_after_its_lease() {
    let mut cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let holder_node = (0..3).find(|i| *i != leader).unwrap();
    let other_node = (0..3).find(|i| *i != leader && *i != holder_node).unwrap();
    let ttl = Duration::from_millis(400);
    let guard = RaftLock::new(cluster.node(holder_node).clone())
        .try_acquire("job", ttl, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let first = guard.token();
    // The holder's process dies: no release.
    std::mem::forget(guard);
    cluster.stop_now(holder_node).await;

    let other = RaftLock::new(cluster.node(other_node).clone());
    assert!(other
        .try_acquire("job", ttl, Duration::ZERO)
        .await
        .unwrap()
        .is_none());
    let second = other
        .try_acquire("job", ttl, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("granted once the lease lapsed");
    assert!(second.token() > first);
}

#[tokio::test]
async fn a_retried_acquire_never_grants_twice() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let acquire = |owner: &str| Operation::LockAcquire {
        name: "once".into(),
        owner: owner.into(),
        ttl_ms: 60_000,
    };
    let node = cluster.node(follower);
    let first = node
        .submit(acquire("a"), Some("req-42".into()))
        .await
        .unwrap();
    let retried = node
        .submit(acquire("a"), Some("req-42".into()))
        .await
        .unwrap();
    let from_leader = cluster
        .node(leader)
        .submit(acquire("a"), Some("req-42".into()))
        .await
        .unwrap();
    assert!(matches!(first, CommandResponse::LockGranted { .. }));
    assert_eq!(first, retried);
    assert_eq!(first, from_leader);
    // A different request is a new attempt, and the lock is held.
    let other = node
        .submit(acquire("b"), Some("req-43".into()))
        .await
        .unwrap();
    assert!(
        matches!(other, CommandResponse::LockHeld { .. }),
        "{other:?}"
    );
}

#[tokio::test]
async fn compare_and_set_races_lose_no_update() {
    let cluster = Cluster::start(3, false).await;
    cluster.wait_for_leader().await;
    let nodes: Vec<RaftNode> = cluster.nodes.values().cloned().collect();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let node = nodes[t % 3].clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for _ in 0..10 {
                loop {
                    let current = node.get("counter").await.unwrap();
                    let (revision, value) = match current {
                        Some(v) => (
                            v.revision,
                            String::from_utf8(v.value).unwrap().parse::<u64>().unwrap(),
                        ),
                        None => (0, 0),
                    };
                    let next = (value + 1).to_string().into_bytes();
                    match node
                        .compare_and_set("counter", revision, next)
                        .await
                        .unwrap()
                    {
                        CasOutcome::Written(_) => break,
                        CasOutcome::Mismatch(_) => conflicts += 1,
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for t in tasks {
        conflicts += t.await.unwrap();
    }
    let v = nodes[0].get("counter").await.unwrap().unwrap();
    assert_eq!(String::from_utf8(v.value).unwrap(), "60");
    eprintln!("compare-and-set conflicts: {conflicts}");

    // The other key-value operations, from a follower.
    let node = &nodes[1];
    let r1 = node.put("list/a", b"1".to_vec()).await.unwrap();
    let r2 = node.put("list/b", b"2".to_vec()).await.unwrap();
    assert!(r2 > r1);
    node.put("other", b"x".to_vec()).await.unwrap();
    let listed: Vec<String> = node
        .list("list/", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, ["list/a", "list/b"]);
    assert_eq!(
        node.delete("list/a", Some(r1 + 1000)).await.unwrap(),
        Err(r1)
    );
    assert_eq!(node.delete("list/a", Some(r1)).await.unwrap(), Ok(true));
    assert_eq!(node.delete("list/a", None).await.unwrap(), Ok(false));
    assert!(node.get("list/a").await.unwrap().is_none());
    let too_big = node.put("big", vec![0; 2 * 1024 * 1024]).await.unwrap_err();
    assert!(too_big.to_string().contains("at most"), "{too_big}");
}

#[tokio::test]
async fn locks_and_data_survive_a_restart_from_disk() {
    let mut cluster = Cluster::start(3, true).await;
    cluster.wait_for_leader().await;
    let node = cluster.node(0).clone();
    node.put("kept", b"yes".to_vec()).await.unwrap();
    let guard = RaftLock::new(node.clone())
        .try_acquire("held", Duration::from_secs(600), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let token = guard.token().get();
    std::mem::forget(guard);
    cluster.stop_all().await;
    for i in 0..3 {
        cluster.start_node(i).await;
    }
    cluster.wait_for_leader().await;
    let node = cluster.node(1);
    let kept = retry("read after restart", || node.get("kept"))
        .await
        .unwrap();
    assert_eq!(kept.value, b"yes");
    let again = RaftLock::new(node.clone())
        .try_acquire("held", Duration::from_secs(1), Duration::ZERO)
        .await
        .unwrap();
    assert!(again.is_none(), "the lock survived the restart");
    let leader = cluster.leader().unwrap();
    let (state, _) = cluster.node(leader).state_machine().lock("held");
    assert_eq!(state.unwrap().token, token);
}

#[tokio::test]
async fn a_lagging_node_receives_everything_through_a_snapshot() {
    let options = NodeOptions::default()
        .snapshot_every(20)
        .logs_to_keep(5)
        .state_machine(StateMachineConfig::default());
    let cluster = Cluster::start_with(3, false, options).await;
    let leader = cluster.wait_for_leader().await;
    let lagging = (0..3).find(|i| *i != leader).unwrap();
    cluster.net.isolate(NodeId::new(lagging));

    let writer = cluster
        .nodes
        .iter()
        .find(|(i, _)| **i != lagging)
        .map(|(_, n)| n.clone())
        .unwrap();
    let guard = RaftLock::new(writer.clone())
        .try_acquire(
            "snap-lock",
            Duration::from_secs(600),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .unwrap();
    for i in 0..120 {
        let written = writer
            .put_with_id(&format!("s{i}"), vec![1], None, format!("snap-req-{i}"))
            .await
            .unwrap();
        assert!(matches!(written, CasOutcome::Written(_)));
    }
    let leader_node = cluster.node(cluster.wait_for_leader().await).clone();
    cluster
        .wait_until("the leader purged its log", |_| {
            leader_node.raft().metrics().borrow().purged.is_some()
        })
        .await;
    cluster.net.heal();
    let last = leader_node.state_machine().last_applied().unwrap().index;
    cluster.wait_applied(last).await;

    let lagged = cluster.node(lagging).state_machine();
    for i in 0..120 {
        assert!(lagged.get(&format!("s{i}")).is_some(), "s{i} missing");
    }
    assert_eq!(
        lagged.lock("snap-lock").0.unwrap().token,
        guard.token().get()
    );
    assert!(
        lagged.dedup_len() >= 120,
        "the de-duplication table travelled too"
    );
    assert!(
        cluster
            .node(lagging)
            .raft()
            .metrics()
            .borrow()
            .snapshot
            .is_some(),
        "installed from a snapshot"
    );
}
