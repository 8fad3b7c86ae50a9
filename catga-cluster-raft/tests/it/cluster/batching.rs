//! Group commit: concurrent writes share log entries, and still answer and
//! apply as if each had its own.

use std::collections::BTreeSet;

use catga_cluster_raft::BatchOptions;

use super::*;

/// Starts `count` writes at once on `node`: puts of keys `k0`, `k1`, … and
/// `hot` puts of the single key `hot`. Returns the answers in that order.
async fn concurrent_writes(node: &RaftNode, count: usize, hot: usize) -> Vec<CommandResponse> {
    let mut tasks = Vec::new();
    for i in 0..count + hot {
        let node = node.clone();
        let key = if i < count {
            format!("k{i}")
        } else {
            "hot".to_owned()
        };
        tasks.push(tokio::spawn(async move {
            node.write(put(&key, &i.to_string()), Some(format!("batch-{i}")))
                .await
                .expect("the write succeeds")
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("the task runs"));
    }
    answers
}

fn applied(node: &RaftNode) -> u64 {
    node.state_machine().last_applied().map_or(0, |l| l.index)
}

fn revision(answer: &CommandResponse) -> u64 {
    match answer {
        CommandResponse::Written { revision } => *revision,
        other => panic!("not written: {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_writes_share_entries_and_keep_per_key_revisions() {
    let cluster = Cluster::start(3, true).await;
    let leader = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("warm-up", "1"), "warm-up").await;
    let node = cluster.node(leader);
    let before = applied(node);

    let (count, hot) = (200, 20);
    let answers = concurrent_writes(node, count, hot).await;
    let used = applied(node) - before;
    assert!(
        used <= ((count + hot) / 2) as u64,
        "{} writes took {used} log entries",
        count + hot
    );
    // Writes of one key never share an entry: each has its own revision,
    // and the last one applied is the key's value.
    let hot_revisions: BTreeSet<u64> = answers[count..].iter().map(revision).collect();
    assert_eq!(hot_revisions.len(), hot, "{hot_revisions:?}");
    let last_hot = *hot_revisions.last().unwrap();
    for (i, a) in answers[..count].iter().enumerate() {
        let r = revision(a);
        assert!(r > before && r <= before + used, "{r}");
        let got = node.get(&format!("k{i}")).await.unwrap().unwrap();
        assert_eq!((got.value, got.revision), (i.to_string().into_bytes(), r));
    }
    assert_eq!(node.get("hot").await.unwrap().unwrap().revision, last_hot);

    // Every member applied the same.
    cluster.wait_applied(applied(node)).await;
    for member in cluster.nodes.values() {
        let sm = member.state_machine();
        assert_eq!(sm.get("hot").unwrap().revision, last_hot);
        assert_eq!(sm.get("k7").unwrap().value, b"7");
        assert_eq!(sm.dedup_len(), node.state_machine().dedup_len());
    }

    // A retry of a batched write is answered from the de-duplication table.
    let retry = node
        .write(put("k3", "other"), Some("batch-3".into()))
        .await
        .unwrap();
    assert_eq!(retry, answers[3]);
    assert_eq!(node.get("k3").await.unwrap().unwrap().value, b"3");
}

#[tokio::test]
async fn one_command_per_batch_gives_one_entry_per_write() {
    let options = NodeOptions::default().batching(BatchOptions::default().max_commands(1));
    let cluster = Cluster::start_with(3, false, options).await;
    let leader = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("warm-up", "1"), "warm-up").await;
    let node = cluster.node(leader);
    let before = applied(node);
    let answers = concurrent_writes(node, 40, 0).await;
    assert_eq!(applied(node) - before, 40);
    let revisions: BTreeSet<u64> = answers.iter().map(revision).collect();
    assert_eq!(revisions.len(), 40);
}

#[tokio::test]
async fn writes_forwarded_together_are_answered_each() {
    let cluster = Cluster::start(3, false).await;
    let leader = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("warm-up", "1"), "warm-up").await;
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let node = cluster.node(follower).clone();
    let mut tasks = Vec::new();
    for i in 0..120usize {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let key = if i % 4 == 0 {
                "shared".to_owned()
            } else {
                format!("f{i}")
            };
            let id = format!("fwd-{i}");
            let answer = node
                .submit(put(&key, &i.to_string()), Some(id.clone()))
                .await
                .expect("the forwarded write succeeds");
            (key, id, answer)
        }));
    }
    let mut shared = BTreeSet::new();
    let mut answers = Vec::new();
    for t in tasks {
        let (key, id, answer) = t.await.unwrap();
        let r = revision(&answer);
        if key == "shared" {
            assert!(shared.insert(r), "two writes of one key share revision {r}");
        } else {
            let got = node.get(&key).await.unwrap().unwrap();
            assert_eq!(got.revision, r);
        }
        answers.push((key, id, answer));
    }
    assert_eq!(shared.len(), 30);
    // A retry through the follower is answered from the de-duplication table.
    let (key, id, first) = answers[1].clone();
    let again = node.submit(put(&key, "changed"), Some(id)).await.unwrap();
    assert_eq!(again, first);

    // The leader writes a batch command by command, answering each; an
    // invalid one is answered `Rejected`.
    let batch = Operation::Batch(vec![
        catga_cluster_raft::Command {
            request_id: Some("b-1".into()),
            leader_time_ms: 0,
            op: put("b1", "x"),
        },
        catga_cluster_raft::Command::new(put("", "empty key"), 0),
        catga_cluster_raft::Command::new(Operation::Batch(vec![]), 0),
    ]);
    let answer = cluster.node(leader).write(batch, None).await.unwrap();
    let CommandResponse::Batch(answers) = answer else {
        panic!("{answer:?}")
    };
    assert!(matches!(answers[0], CommandResponse::Written { .. }));
    assert!(matches!(answers[1], CommandResponse::Rejected { .. }));
    assert!(matches!(answers[2], CommandResponse::Rejected { .. }));
}

/// A write that Raft took and had not answered when it stopped may still be
/// committed by the next leader (the entry may be on followers): it reports
/// an unknown outcome, never `Shutdown`, which clients read as a refusal.
#[tokio::test]
async fn a_write_raft_stopped_on_reports_an_unknown_outcome() {
    let mut cluster = Cluster::start(3, true).await;
    let leader = cluster.wait_for_leader().await;
    write_on_leader(&cluster, put("warm-up", "1"), "warm-up").await;
    let node = cluster.node(leader).clone();
    let before = node.raft().metrics().borrow().last_log_index.unwrap_or(0);
    // The followers no longer hear the leader: the write is appended there
    // and never committed.
    cluster.net.isolate(NodeId::new(leader));
    let write = {
        let node = node.clone();
        tokio::spawn(async move { node.write(put("k", "v"), Some("stopped-1".into())).await })
    };
    cluster
        .wait_until("the leader appended the write", |_| {
            node.raft().metrics().borrow().last_log_index.unwrap_or(0) > before
        })
        .await;
    cluster.stop_now(leader).await;
    let answer = write.await.expect("the task runs");
    assert!(
        matches!(answer, Err(ClusterError::UnknownOutcome { .. })),
        "{answer:?}"
    );
}
