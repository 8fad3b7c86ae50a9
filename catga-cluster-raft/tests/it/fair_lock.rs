//! The fair lock across a 3-node cluster in one process: waiters on
//! different nodes are granted the lock in the order they queued, a waiter
//! whose call is dropped or whose wait runs out leaves the queue, one that
//! vanished without leaving holds it up for one lease at most, and two
//! calls of one owner exclude each other.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_cluster_core::{DistributedLock, LockGuard};
use catga_cluster_raft::{CommandResponse, Operation, RaftLock};

use crate::support::Cluster;

const LONG: Duration = Duration::from_secs(20);

/// Waits until every node shows `expected` queued for `name`.
async fn wait_for_queue(cluster: &Cluster, name: &str, expected: &[&str]) {
    cluster
        .wait_until(&format!("queue {expected:?}"), |c| {
            c.nodes
                .values()
                .all(|n| n.state_machine().lock_queue(name) == expected)
        })
        .await;
}

#[tokio::test]
async fn waiters_on_different_nodes_are_granted_in_arrival_order() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let holder = RaftLock::new(cluster.node(leader).clone())
        .try_acquire("fifo", LONG, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let first = holder.token().get();

    // Six waiters, two per node (followers and leader alike), each queued
    // only once the one before it shows in the queue.
    let granted = Arc::new(Mutex::new(Vec::new()));
    let mut names: Vec<String> = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..6u64 {
        let node = cluster.node((leader + 1 + i) % 3).clone();
        let owner = format!("w{i}");
        let granted = granted.clone();
        let locks = RaftLock::with_owner(node, owner.clone()).unwrap();
        tasks.push(tokio::spawn(async move {
            let guard = locks
                .try_acquire("fifo", LONG, LONG)
                .await
                .unwrap()
                .expect("granted within the wait");
            granted.lock().unwrap().push((owner, guard.token().get()));
            guard.release().await.unwrap();
        }));
        names.push(format!("w{i}"));
        let expected: Vec<&str> = names.iter().map(String::as_str).collect();
        wait_for_queue(&cluster, "fifo", &expected).await;
    }
    holder.release().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    let granted = granted.lock().unwrap().clone();
    let order: Vec<&str> = granted.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(order, ["w0", "w1", "w2", "w3", "w4", "w5"]);
    let mut previous = first;
    for (owner, token) in &granted {
        assert!(*token > previous, "{owner}: token {token} after {previous}");
        previous = *token;
    }
    wait_for_queue(&cluster, "fifo", &[]).await;
}

#[tokio::test]
async fn a_waiter_whose_call_is_dropped_leaves_the_queue() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let holder = RaftLock::new(cluster.node(leader).clone())
        .try_acquire("job", LONG, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();

    // The abandoned waiter queues first, with a wait far longer than the
    // test, then its caller goes away.
    let abandoned = {
        let locks = RaftLock::with_owner(cluster.node(follower).clone(), "abandoned").unwrap();
        tokio::spawn(async move { locks.try_acquire("job", LONG, LONG * 3).await })
    };
    wait_for_queue(&cluster, "job", &["abandoned"]).await;
    let next = {
        let locks = RaftLock::with_owner(cluster.node(other).clone(), "next").unwrap();
        tokio::spawn(async move { locks.try_acquire("job", LONG, LONG).await })
    };
    wait_for_queue(&cluster, "job", &["abandoned", "next"]).await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    wait_for_queue(&cluster, "job", &["next"]).await;

    holder.release().await.unwrap();
    let guard = next
        .await
        .unwrap()
        .unwrap()
        .expect("granted after the release");
    let (state, _) = cluster.node(leader).state_machine().lock("job");
    assert_eq!(state.unwrap().owner, "next");
    guard.release().await.unwrap();
}

#[tokio::test]
async fn a_waiter_whose_wait_runs_out_leaves_the_queue() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let holder = RaftLock::new(cluster.node(leader).clone())
        .try_acquire("job", LONG, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let impatient = RaftLock::with_owner(cluster.node((leader + 1) % 3).clone(), "impatient")
        .unwrap()
        .try_acquire("job", LONG, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(impatient.is_none(), "the lock stayed held");
    wait_for_queue(&cluster, "job", &[]).await;
    // The release leaves the lock free: nobody is granted it unasked.
    holder.release().await.unwrap();
    let leader_sm = cluster.node(leader).state_machine();
    assert!(leader_sm.lock("job").0.is_none());
}

#[tokio::test]
async fn a_waiter_that_vanished_without_leaving_holds_up_the_queue_for_one_lease() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let holder = RaftLock::new(cluster.node(leader).clone())
        .try_acquire("job", LONG, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    // A waiter whose process died after it queued: nobody will cancel it.
    let ghost = Operation::LockWait {
        name: "job".into(),
        owner: "ghost".into(),
        waiter: 1,
        ttl_ms: 1000,
        wait_ms: 60_000,
    };
    let queued = cluster
        .node((leader + 1) % 3)
        .submit(ghost, None)
        .await
        .unwrap();
    assert!(
        matches!(queued, CommandResponse::LockQueued { ahead: 0, .. }),
        "{queued:?}"
    );
    let next = {
        let locks = RaftLock::with_owner(cluster.node((leader + 2) % 3).clone(), "next").unwrap();
        tokio::spawn(async move { locks.try_acquire("job", LONG, LONG).await })
    };
    wait_for_queue(&cluster, "job", &["ghost", "next"]).await;

    // The release hands the lock to the ghost (in the releasing entry, so
    // the leader shows it at once); when its lease lapses, the next waiter
    // ends it and takes the lock.
    holder.release().await.unwrap();
    let leader_sm = cluster.node(leader).state_machine();
    let ghost = leader_sm.lock("job").0.unwrap();
    assert_eq!(ghost.owner, "ghost");
    let guard = next
        .await
        .unwrap()
        .unwrap()
        .expect("granted after the lease");
    assert_eq!(leader_sm.lock("job").0.unwrap().owner, "next");
    assert!(guard.token().get() > ghost.token);
    guard.release().await.unwrap();
}

#[tokio::test]
async fn two_calls_of_one_owner_exclude_each_other() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let locks = RaftLock::new(cluster.node((leader + 1) % 3).clone());
    let first = locks
        .try_acquire("shared", LONG, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    // A clone is the same owner, and still waits its turn.
    let second = {
        let locks = locks.clone();
        tokio::spawn(async move { locks.try_acquire("shared", LONG, LONG).await })
    };
    let owner = locks.owner().to_owned();
    wait_for_queue(&cluster, "shared", &[owner.as_str()]).await;
    assert!(!second.is_finished());
    let first_token = first.token();
    first.release().await.unwrap();
    let second = second
        .await
        .unwrap()
        .unwrap()
        .expect("granted after the release");
    assert!(second.token() > first_token);
    second.release().await.unwrap();
}
