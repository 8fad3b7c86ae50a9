//! Watches: the key events under a prefix, in revision order, on every
//! node; resumption, the compacted history and slow watchers.

use catga_cluster_raft::state_machine::StateMachineConfig;
use catga_cluster_raft::watch::{KeyEvent, WatchError, WatchStream};

use super::*;

/// Reads events until one of key `end`, which it includes.
async fn read_until(stream: &mut WatchStream, end: &str) -> Vec<KeyEvent> {
    let mut events = Vec::new();
    loop {
        let next = tokio::time::timeout(support::DEADLINE, stream.next_event())
            .await
            .expect("an event in time")
            .expect("the stream goes on")
            .expect("no watch error");
        let done = next.key() == end;
        events.push(next);
        if done {
            return events;
        }
    }
}

fn options(config: StateMachineConfig) -> NodeOptions {
    NodeOptions::default().state_machine(config)
}

/// Puts, compare-and-sets (one failing), deletes (one of an absent key),
/// concurrent writes the node batches, a key outside the prefix; then
/// `w/end`.
async fn workload(node: &RaftNode) {
    let rev = node.put("w/a", b"1".to_vec()).await.unwrap();
    node.put("other/x", b"no".to_vec()).await.unwrap();
    assert!(matches!(
        node.compare_and_set("w/a", rev, b"2".to_vec())
            .await
            .unwrap(),
        catga_cluster_raft::CasOutcome::Written(_)
    ));
    assert!(matches!(
        node.compare_and_set("w/a", rev, b"3".to_vec())
            .await
            .unwrap(),
        catga_cluster_raft::CasOutcome::Mismatch(_)
    ));
    assert_eq!(node.delete("w/a", None).await.unwrap(), Ok(true));
    assert_eq!(node.delete("w/absent", None).await.unwrap(), Ok(false));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            node.put(&format!("w/b{i}"), i.to_string().into_bytes())
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    node.put("w/end", b"end".to_vec()).await.unwrap();
}

fn check_order(events: &[KeyEvent]) {
    for pair in events.windows(2) {
        assert!(
            pair[0].revision() <= pair[1].revision(),
            "out of order: {pair:?}"
        );
        if pair[0].revision() == pair[1].revision() {
            assert_ne!(pair[0].key(), pair[1].key(), "a key twice in one revision");
        }
    }
}

#[tokio::test]
async fn watchers_on_every_node_see_the_same_events_in_order() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let follower = *cluster.members.iter().find(|&&i| i != leader).unwrap();
    let mut streams = Vec::new();
    for node in cluster.nodes.values() {
        streams.push(node.watch("w/", None).await.unwrap());
    }
    workload(cluster.node(follower)).await;

    let mut seen = Vec::new();
    for stream in &mut streams {
        seen.push(read_until(stream, "w/end").await);
    }
    let first = &seen[0];
    for other in &seen[1..] {
        assert_eq!(first, other, "two nodes saw different sequences");
    }
    check_order(first);
    assert!(first.iter().all(|e| e.key().starts_with("w/")));
    // w/a: put, CAS, delete; 40 batched puts; w/end.
    assert_eq!(first.len(), 3 + 40 + 1, "{first:?}");
    assert!(
        matches!(&first[0], KeyEvent::Put { key, value, .. } if key == "w/a" && &value[..] == b"1")
    );
    assert!(
        matches!(&first[1], KeyEvent::Put { key, value, .. } if key == "w/a" && &value[..] == b"2")
    );
    assert!(matches!(&first[2], KeyEvent::Delete { key, .. } if key == "w/a"));
    let keys: BTreeSet<&str> = first[3..43].iter().map(KeyEvent::key).collect();
    assert_eq!(keys.len(), 40);
    let revisions: BTreeSet<u64> = first.iter().map(KeyEvent::revision).collect();
    assert!(
        revisions.len() < first.len(),
        "the concurrent writes were expected to share entries"
    );

    // The history on every node holds the same sequence from its start.
    for node in cluster.nodes.values() {
        let mut replay = node.watch("w/", Some(1)).await.unwrap();
        assert_eq!(&read_until(&mut replay, "w/end").await, first);
    }
}

#[tokio::test]
async fn a_watch_resumed_after_a_revision_loses_nothing() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let follower = *cluster.members.iter().find(|&&i| i != leader).unwrap();
    let node = cluster.node(follower);
    let mut stream = node.watch("w/", None).await.unwrap();
    workload(node).await;
    let all = read_until(&mut stream, "w/end").await;
    // Resume after every revision boundary: the rest, exactly.
    for i in 0..all.len() - 1 {
        if all[i].revision() == all[i + 1].revision() {
            continue;
        }
        let mut resumed = node.watch("w/", Some(all[i].revision() + 1)).await.unwrap();
        assert_eq!(read_until(&mut resumed, "w/end").await, all[i + 1..]);
    }
}

#[tokio::test]
async fn a_start_older_than_the_history_is_compacted() {
    let config = StateMachineConfig {
        watch_history_events: 5,
        ..StateMachineConfig::default()
    };
    let cluster = Cluster::start_with(3, false, options(config)).await;
    cluster.wait_for_leader().await;
    let node = cluster.node(0);
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(node.put(&format!("w/{i}"), vec![1]).await.unwrap());
    }
    cluster.wait_applied(*revisions.last().unwrap()).await;
    for node in cluster.nodes.values() {
        let oldest = match node.watch("w/", Some(revisions[0])).await {
            Err(WatchError::Compacted { oldest_revision }) => oldest_revision,
            other => panic!("expected compacted, got {other:?}"),
        };
        assert_eq!(oldest, revisions[15]);
        assert_eq!(node.state_machine().watch_oldest_revision(), oldest);
        let mut stream = node.watch("w/", Some(oldest)).await.unwrap();
        let events = read_until(&mut stream, "w/19").await;
        let got: Vec<u64> = events.iter().map(KeyEvent::revision).collect();
        assert_eq!(got, revisions[15..]);
    }
}

#[tokio::test]
async fn a_slow_watcher_is_cut_off_and_resumes_without_loss() {
    let config = StateMachineConfig {
        watch_buffer: 4,
        ..StateMachineConfig::default()
    };
    let cluster = Cluster::start_with(3, false, options(config)).await;
    let leader = cluster.wait_for_leader().await;
    let follower = *cluster.members.iter().find(|&&i| i != leader).unwrap();
    let node = cluster.node(follower);
    let mut slow = node.watch("w/", None).await.unwrap();
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(node.put(&format!("w/{i}"), vec![1]).await.unwrap());
    }
    let mut got = Vec::new();
    let last = loop {
        match tokio::time::timeout(support::DEADLINE, slow.next_event())
            .await
            .expect("in time")
        {
            Some(Ok(e)) => got.push(e.revision()),
            Some(Err(WatchError::Lagged { last_revision })) => break last_revision,
            other => panic!("expected the watcher cut off, got {other:?}"),
        }
    };
    assert_eq!(got.len(), 4, "the buffer held four revisions");
    assert_eq!(got, revisions[..4]);
    assert_eq!(last, *got.last().unwrap());
    assert!(
        slow.next_event().await.is_none(),
        "the stream ends after the error"
    );

    let mut resumed = node.watch("w/", Some(last + 1)).await.unwrap();
    got.extend(
        read_until(&mut resumed, "w/19")
            .await
            .iter()
            .map(KeyEvent::revision),
    );
    assert_eq!(got, revisions);
}

#[tokio::test]
async fn a_key_with_a_ttl_expires_without_further_writes_and_watches_see_the_delete() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let followers: Vec<u64> = cluster
        .members
        .iter()
        .copied()
        .filter(|&i| i != leader)
        .collect();
    let writer = cluster.node(followers[0]);
    let watcher = cluster.node(followers[1]);
    let mut stream = watcher.watch("t/", None).await.unwrap();
    let written = tokio::time::Instant::now();
    let revision = match writer
        .put_with_ttl("t/a", b"1".to_vec(), Duration::from_millis(300), None)
        .await
        .unwrap()
    {
        catga_cluster_raft::CasOutcome::Written(r) => r,
        other => panic!("not written: {other:?}"),
    };
    // Refreshed by a later write: it lives 300 ms from this one.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let refreshed = writer
        .put_with_ttl("t/a", b"2".to_vec(), Duration::from_millis(300), None)
        .await
        .unwrap();
    let refreshed_at = tokio::time::Instant::now();
    assert!(matches!(refreshed, catga_cluster_raft::CasOutcome::Written(r) if r > revision));
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(
            tokio::time::timeout(support::DEADLINE, stream.next_event())
                .await
                .expect("the expiry in time")
                .unwrap()
                .unwrap(),
        );
    }
    assert!(matches!(&events[0], KeyEvent::Put { value, .. } if &value[..] == b"1"));
    assert!(matches!(&events[1], KeyEvent::Put { value, .. } if &value[..] == b"2"));
    assert!(matches!(&events[2], KeyEvent::Delete { key, .. } if key == "t/a"));
    assert!(
        refreshed_at.elapsed() >= Duration::from_millis(250),
        "expired {:?} after the refresh",
        refreshed_at.elapsed()
    );
    assert!(written.elapsed() < Duration::from_secs(5));
    assert_eq!(watcher.get("t/a").await.unwrap(), None);
    // Every node applied the same delete.
    cluster.wait_applied(events[2].revision()).await;
    for node in cluster.nodes.values() {
        assert_eq!(node.state_machine().get("t/a"), None);
    }
}

#[tokio::test]
async fn a_watch_ends_when_its_node_stops() {
    let mut cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    let follower = *cluster.members.iter().find(|&&i| i != leader).unwrap();
    // A handle kept beyond the stop keeps the state machine alive.
    let node = cluster.node(follower).clone();
    let mut stream = node.watch("w/", None).await.unwrap();
    cluster.stop_now(follower).await;
    let end = tokio::time::timeout(support::DEADLINE, stream.next_event())
        .await
        .expect("the stream ends in time");
    assert!(end.is_none(), "{end:?}");
    drop(node);
}
