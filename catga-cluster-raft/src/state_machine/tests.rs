//! The state machine on its own: fencing, leases by the leader's clock,
//! de-duplication, compare-and-set and snapshots.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

use super::*;
use crate::types::{Command, Entry, Operation, TypeConfig};
use crate::watch::KeyEvent;

fn entry(term: u64, index: u64, op: Operation, time: u64, id: Option<&str>) -> Entry {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1.into()), index),
        payload: EntryPayload::Normal(Command {
            request_id: id.map(str::to_owned),
            leader_time_ms: time,
            op,
        }),
    }
}

fn acquire(name: &str, owner: &str, ttl: u64) -> Operation {
    Operation::LockAcquire {
        name: name.into(),
        owner: owner.into(),
        ttl_ms: ttl,
    }
}

async fn apply(sm: &mut StateMachineStore, e: Entry) -> CommandResponse {
    sm.apply([e]).await.unwrap().pop().unwrap()
}

#[tokio::test]
async fn locks_are_fenced_and_leases_decided_by_leader_time() {
    let mut sm = StateMachineStore::memory();
    let r = apply(&mut sm, entry(1, 1, acquire("l", "a", 100), 1000, None)).await;
    assert_eq!(
        r,
        CommandResponse::LockGranted {
            token: 1,
            expires_at_ms: 1100
        }
    );
    let r = apply(&mut sm, entry(1, 2, acquire("l", "b", 100), 1050, None)).await;
    assert_eq!(
        r,
        CommandResponse::LockHeld {
            expires_at_ms: 1100,
            remaining_ms: 50
        }
    );
    // Expired by the leader's time: granted to b with a higher token.
    let r = apply(&mut sm, entry(1, 3, acquire("l", "b", 100), 1100, None)).await;
    assert_eq!(
        r,
        CommandResponse::LockGranted {
            token: 3,
            expires_at_ms: 1200
        }
    );
    // a's release now reports lost.
    let r = apply(
        &mut sm,
        entry(
            1,
            4,
            Operation::LockRelease {
                name: "l".into(),
                owner: "a".into(),
                token: 1,
            },
            1110,
            None,
        ),
    )
    .await;
    assert_eq!(r, CommandResponse::LockLost);
}

#[tokio::test]
async fn a_new_term_rebases_leases() {
    let mut sm = StateMachineStore::memory();
    apply(&mut sm, entry(1, 1, acquire("l", "a", 1000), 10_000, None)).await;
    apply(&mut sm, entry(1, 2, Operation::Noop, 10_400, None)).await;
    // New leader whose clock is far ahead: 600 ms of lease remain.
    let r = apply(&mut sm, entry(2, 3, acquire("l", "b", 1000), 50_000, None)).await;
    assert_eq!(
        r,
        CommandResponse::LockHeld {
            expires_at_ms: 50_600,
            remaining_ms: 600
        }
    );
    let r = apply(&mut sm, entry(2, 4, acquire("l", "b", 1000), 50_600, None)).await;
    assert!(matches!(r, CommandResponse::LockGranted { token: 4, .. }));
}

#[tokio::test]
async fn retried_commands_apply_once() {
    let mut sm = StateMachineStore::memory();
    let first = apply(
        &mut sm,
        entry(1, 1, acquire("l", "a", 100), 1000, Some("req-1")),
    )
    .await;
    let retry = apply(
        &mut sm,
        entry(1, 2, acquire("l", "a", 100), 1001, Some("req-1")),
    )
    .await;
    assert_eq!(first, retry);
    assert_eq!(sm.lock("l").0.unwrap().token, 1);
}

#[tokio::test]
async fn dedup_is_bounded_by_horizon_and_size() {
    let config = StateMachineConfig {
        dedup_horizon: Duration::from_secs(1),
        dedup_max_entries: 3,
        ..StateMachineConfig::default()
    };
    let mut sm = StateMachineStore::open(SnapshotStore::memory(), config).unwrap();
    for i in 0..5u64 {
        let id = format!("r{i}");
        apply(
            &mut sm,
            entry(1, i + 1, Operation::Noop, 1000 + i, Some(&id)),
        )
        .await;
    }
    assert_eq!(sm.dedup_len(), 3);
    apply(&mut sm, entry(1, 6, Operation::Noop, 5000, Some("late"))).await;
    assert_eq!(sm.dedup_len(), 1);
}

#[tokio::test]
async fn kv_compare_and_set() {
    let mut sm = StateMachineStore::memory();
    let put = |v: &str, exp| Operation::Put {
        key: "k".into(),
        value: v.into(),
        expected_revision: exp,
    };
    assert_eq!(
        apply(&mut sm, entry(1, 1, put("a", Some(0)), 1, None)).await,
        CommandResponse::Written { revision: 1 }
    );
    assert_eq!(
        apply(&mut sm, entry(1, 2, put("b", Some(0)), 1, None)).await,
        CommandResponse::RevisionMismatch { current: 1 }
    );
    assert_eq!(
        apply(&mut sm, entry(1, 3, put("b", Some(1)), 1, None)).await,
        CommandResponse::Written { revision: 3 }
    );
    assert_eq!(sm.get("k").unwrap().value, b"b");
    let del = Operation::Delete {
        key: "k".into(),
        expected_revision: Some(1),
    };
    assert_eq!(
        apply(&mut sm, entry(1, 4, del, 1, None)).await,
        CommandResponse::RevisionMismatch { current: 3 }
    );
    let big = Operation::Put {
        key: "k".into(),
        value: vec![0; limits::MAX_VALUE_LEN + 1],
        expected_revision: None,
    };
    assert!(matches!(
        apply(&mut sm, entry(1, 5, big, 1, None)).await,
        CommandResponse::Rejected { .. }
    ));
}

/// Builds a snapshot and reads it back as openraft would to send it: the
/// built one carries only its metadata.
async fn current_after_build(sm: &mut StateMachineStore) -> openraft::Snapshot<TypeConfig> {
    let built = sm.build_snapshot().await.unwrap();
    assert!(built.snapshot.get_ref().is_empty());
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(current.meta, built.meta);
    current
}

#[tokio::test]
async fn snapshot_round_trip_carries_everything() {
    let mut sm = StateMachineStore::memory();
    apply(
        &mut sm,
        entry(1, 1, acquire("l", "a", 100_000), 1000, Some("x")),
    )
    .await;
    apply(
        &mut sm,
        entry(
            1,
            2,
            Operation::Put {
                key: "k".into(),
                value: b"v".to_vec(),
                expected_revision: None,
            },
            1001,
            None,
        ),
    )
    .await;
    let snap = current_after_build(&mut sm).await;
    let mut other = StateMachineStore::memory();
    other
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(other.get("k").unwrap().revision, 2);
    assert_eq!(other.lock("l").0.unwrap().token, 1);
    assert_eq!(other.dedup_len(), 1);
    assert_eq!(other.last_applied().unwrap().index, 2);
}

fn wait(name: &str, owner: &str, waiter: u64, ttl: u64, wait_ms: u64) -> Operation {
    Operation::LockWait {
        name: name.into(),
        owner: owner.into(),
        waiter,
        ttl_ms: ttl,
        wait_ms,
    }
}

fn release(name: &str, owner: &str, token: u64) -> Operation {
    Operation::LockRelease {
        name: name.into(),
        owner: owner.into(),
        token,
    }
}

#[tokio::test]
async fn a_release_hands_the_lock_to_the_next_waiter_in_the_same_apply() {
    let mut sm = StateMachineStore::memory();
    let mut changes = sm.subscribe();
    apply(&mut sm, entry(1, 1, wait("l", "a", 1, 1000, 0), 1000, None)).await;
    for (i, owner) in ["b", "c"].into_iter().enumerate() {
        let i = i as u64;
        let r = apply(
            &mut sm,
            entry(1, 2 + i, wait("l", owner, 1, 1000, 5000), 1001, None),
        )
        .await;
        assert!(
            matches!(r, CommandResponse::LockQueued { ahead, index, .. } if ahead == i && index == 2 + i)
        );
    }
    assert_eq!(sm.lock_queue("l"), ["b", "c"]);
    let seen = changes.borrow_and_update().lock_changes;
    let r = apply(&mut sm, entry(1, 4, release("l", "a", 1), 1010, None)).await;
    assert_eq!(r, CommandResponse::LockReleased);
    // The same apply made b the holder, with the release's index as token,
    // and woke the waiters.
    let held = sm.lock("l").0.unwrap();
    assert_eq!(
        (held.owner.as_str(), held.token, held.expires_at_ms),
        ("b", 4, 2010)
    );
    assert_eq!(sm.lock_queue("l"), ["c"]);
    assert!(changes.borrow_and_update().lock_changes > seen);
    assert_eq!(
        sm.lock_waiter("l", "b", 1).0,
        WaiterView::Holder { token: 4 }
    );
    assert!(matches!(
        sm.lock_waiter("l", "c", 1),
        (WaiterView::Queued { ahead: 0, .. }, 1010, 4)
    ));
}

#[tokio::test]
async fn a_waiter_keeps_what_was_left_of_its_wait_under_a_new_leader() {
    let mut sm = StateMachineStore::memory();
    apply(
        &mut sm,
        entry(1, 1, wait("l", "a", 1, 1000, 0), 10_000, None),
    )
    .await;
    apply(
        &mut sm,
        entry(1, 2, wait("l", "b", 1, 1000, 800), 10_000, None),
    )
    .await;
    apply(&mut sm, entry(1, 3, Operation::Noop, 10_400, None)).await;
    // A new leader whose clock is far ahead: a's lease has 600 ms left, b's
    // wait 400 ms; a releases 100 ms into the new term: b gets the lock.
    apply(&mut sm, entry(2, 4, Operation::Noop, 50_000, None)).await;
    let r = apply(&mut sm, entry(2, 5, release("l", "a", 1), 50_100, None)).await;
    assert_eq!(r, CommandResponse::LockReleased);
    assert_eq!(sm.lock("l").0.unwrap().owner, "b");
}

#[tokio::test]
async fn snapshot_round_trip_carries_the_queue() {
    let mut sm = StateMachineStore::memory();
    apply(
        &mut sm,
        entry(1, 1, wait("l", "a", 1, 100_000, 0), 1000, None),
    )
    .await;
    apply(
        &mut sm,
        entry(1, 2, wait("l", "b", 7, 100_000, 60_000), 1000, None),
    )
    .await;
    apply(
        &mut sm,
        entry(1, 3, wait("l", "c", 8, 100_000, 60_000), 1000, None),
    )
    .await;
    let snap = current_after_build(&mut sm).await;
    let mut other = StateMachineStore::memory();
    other
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(other.lock_queue("l"), ["b", "c"]);
    assert_eq!(
        other.lock_waiter("l", "c", 8).0,
        sm.lock_waiter("l", "c", 8).0
    );
    // The restored queue goes on in order.
    apply(&mut other, entry(1, 4, release("l", "a", 1), 1001, None)).await;
    assert_eq!(
        other.lock_waiter("l", "b", 7).0,
        WaiterView::Holder { token: 4 }
    );
}

#[tokio::test]
async fn a_snapshot_from_before_lock_queues_still_decodes() {
    // The layout snapshots had before locks had queues: no format tag, and
    // each lock only its holder.
    #[derive(serde::Serialize)]
    struct Before {
        last_applied: Option<LogId>,
        membership: StoredMembership,
        clock_ms: u64,
        clock_term: u64,
        kv: BTreeMap<String, KvValue>,
        locks: BTreeMap<String, LockState>,
        dedup: HashMap<String, DedupEntry>,
        dedup_order: VecDeque<String>,
    }
    let holder = LockState {
        owner: "a".into(),
        token: 3,
        expires_at_ms: 9000,
    };
    let kv = KvValue {
        value: b"v".to_vec(),
        revision: 2,
    };
    let before = Before {
        last_applied: Some(LogId::new(CommittedLeaderId::new(1, 1.into()), 3)),
        membership: StoredMembership::default(),
        clock_ms: 1000,
        clock_term: 1,
        kv: [("k".to_owned(), kv.clone())].into(),
        locks: [("l".to_owned(), holder.clone())].into(),
        dedup: HashMap::new(),
        dedup_order: VecDeque::new(),
    };
    let data = decode_data(&postcard::to_stdvec(&before).unwrap()).unwrap();
    assert_eq!(data.kv.get("k"), Some(kv));
    assert_eq!(data.locks["l"].state(), Some(holder));
    assert!(data.locks["l"].waiters.is_empty());
    assert_eq!((data.clock_ms, data.clock_term), (1000, 1));
    // And what is written now reads back.
    let again = decode_data(&encode_data(&data).unwrap()).unwrap();
    assert_eq!(again.locks, data.locks);
}

fn cmd(op: Operation, time: u64, id: Option<&str>) -> Command {
    Command {
        request_id: id.map(str::to_owned),
        leader_time_ms: time,
        op,
    }
}

fn put_op(key: &str, value: &str, expected_revision: Option<u64>) -> Operation {
    Operation::Put {
        key: key.into(),
        value: value.into(),
        expected_revision,
    }
}

#[tokio::test]
async fn a_batch_applies_its_commands_in_order_at_its_index() {
    let mut sm = StateMachineStore::memory();
    apply(&mut sm, entry(1, 1, put_op("a", "1", None), 1000, None)).await;
    let batch = Operation::Batch(vec![
        cmd(put_op("a", "2", Some(1)), 1001, Some("r1")),
        cmd(put_op("b", "1", Some(0)), 1001, None),
        cmd(put_op("c", "1", Some(7)), 1001, None),
        cmd(acquire("l", "o", 100), 1002, Some("r2")),
        cmd(Operation::Batch(vec![]), 1002, None),
        // A retry of r1 in the same entry is answered with r1's answer.
        cmd(put_op("a", "3", Some(1)), 1002, Some("r1")),
    ]);
    let r = apply(&mut sm, entry(1, 2, batch, 1003, None)).await;
    let CommandResponse::Batch(answers) = r else {
        panic!("a batch is answered with a batch: {r:?}")
    };
    assert_eq!(answers.len(), 6);
    assert_eq!(answers[0], CommandResponse::Written { revision: 2 });
    assert_eq!(answers[1], CommandResponse::Written { revision: 2 });
    assert_eq!(answers[2], CommandResponse::RevisionMismatch { current: 0 });
    assert_eq!(
        answers[3],
        CommandResponse::LockGranted {
            token: 2,
            expires_at_ms: 1102
        }
    );
    assert!(
        matches!(&answers[4], CommandResponse::Rejected { reason } if reason.contains("nested")),
        "{:?}",
        answers[4]
    );
    assert_eq!(answers[5], answers[0]);
    assert_eq!(
        sm.get("a").unwrap(),
        KvValue {
            value: b"2".to_vec(),
            revision: 2
        }
    );
    assert_eq!(sm.get("b").unwrap().revision, 2);
    assert!(sm.get("c").is_none());
    assert_eq!(sm.dedup_len(), 2);
    assert_eq!(sm.last_applied().unwrap().index, 2);
    // The next entry's writes have a higher revision.
    let r = apply(&mut sm, entry(1, 3, put_op("a", "4", Some(2)), 1004, None)).await;
    assert_eq!(r, CommandResponse::Written { revision: 3 });
}

#[test]
fn validation_refuses_a_batch_as_a_command() {
    let c = cmd(
        Operation::Batch(vec![cmd(Operation::Noop, 1, None)]),
        1,
        None,
    );
    assert!(validate_command(&c).is_err());
}

#[tokio::test]
async fn the_current_snapshot_is_read_back_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let mut sm = StateMachineStore::open(store.clone(), StateMachineConfig::default()).unwrap();
    assert!(sm.get_current_snapshot().await.unwrap().is_none());
    for i in 1..=50u64 {
        apply(
            &mut sm,
            entry(1, i, put_op(&format!("k{i}"), "v", None), i, None),
        )
        .await;
    }
    let built = sm.build_snapshot().await.unwrap();
    let at_build = encode_data(&sm.read()).unwrap();
    // Writes after the snapshot change the state, not the snapshot.
    apply(
        &mut sm,
        entry(1, 51, put_op("k1", "changed", None), 51, None),
    )
    .await;
    let current = sm
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("a snapshot");
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.into_inner(), at_build);

    let mut other = StateMachineStore::memory();
    let current = sm.get_current_snapshot().await.unwrap().unwrap();
    other
        .install_snapshot(&current.meta, current.snapshot)
        .await
        .unwrap();
    assert_eq!(other.get("k1").unwrap().value, b"v");
    assert_eq!(other.list("k", 100).len(), 50);
    assert_eq!(other.last_applied().unwrap().index, 50);
    // A restart restores the state from the stored snapshot.
    drop(sm);
    let reopened = StateMachineStore::open(store, StateMachineConfig::default()).unwrap();
    assert_eq!(reopened.last_applied().unwrap().index, 50);
    assert_eq!(reopened.list("k5", 100).len(), 2); // k5 and k50
}

#[tokio::test]
async fn dedup_table_holds_its_bound_well_past_it() {
    let config = StateMachineConfig {
        dedup_horizon: Duration::from_secs(3600),
        dedup_max_entries: 100,
        ..StateMachineConfig::default()
    };
    let mut sm = StateMachineStore::open(SnapshotStore::memory(), config).unwrap();
    // 1,000 writes with request ids, ten to an entry.
    for e in 0..100u64 {
        let batch = (0..10)
            .map(|i| {
                let n = e * 10 + i;
                cmd(
                    put_op(&format!("k{n}"), "v", None),
                    1000 + e,
                    Some(&format!("r{n}")),
                )
            })
            .collect();
        apply(
            &mut sm,
            entry(1, e + 1, Operation::Batch(batch), 1000 + e, None),
        )
        .await;
        assert!(sm.dedup_len() <= 100, "{}", sm.dedup_len());
    }
    assert_eq!(sm.dedup_len(), 100);
    // The newest ids are remembered, the oldest forgotten.
    let again = |id: &str| entry(1, 101, put_op("k999", "again", None), 2000, Some(id));
    assert_eq!(
        apply(&mut sm, again("r999")).await,
        CommandResponse::Written { revision: 100 }
    );
    assert_eq!(
        apply(&mut sm, again("r0")).await,
        CommandResponse::Written { revision: 101 }
    );
}

/// A state with keys, locks with queues and request ids, for snapshots.
async fn a_varied_state(sm: &mut StateMachineStore) {
    for i in 1..=300u64 {
        let op = match i % 4 {
            0 => wait(&format!("l{}", i % 7), &format!("o{i}"), i, 100_000, 60_000),
            1 => Operation::Delete {
                key: format!("k/{}", i / 2),
                expected_revision: None,
            },
            _ => put_op(
                &format!("k/{i}/ключ/{}", "x".repeat(i as usize % 40)),
                "v",
                None,
            ),
        };
        let id = format!("req-{i}");
        apply(
            sm,
            entry(1 + i / 100, i, op, 1000 + i, (i % 3 == 0).then_some(&id)),
        )
        .await;
    }
}

#[tokio::test]
async fn a_snapshot_streamed_to_disk_loads_back_as_the_state_it_was_built_from() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let mut sm = StateMachineStore::open(store.clone(), StateMachineConfig::default()).unwrap();
    a_varied_state(&mut sm).await;
    let state = encode_data(&sm.read()).unwrap();

    let snap = current_after_build(&mut sm).await;
    assert_eq!(snap.snapshot.get_ref(), &state);
    assert_eq!(store.load().unwrap().unwrap().1, state);

    // Installed into a node with a store of its own, durable or not.
    let other_dir = tempfile::tempdir().unwrap();
    let other_store = SnapshotStore::open(other_dir.path()).unwrap();
    let mut other =
        StateMachineStore::open(other_store.clone(), StateMachineConfig::default()).unwrap();
    other
        .install_snapshot(&snap.meta, snap.snapshot.clone())
        .await
        .unwrap();
    assert_eq!(encode_data(&other.read()).unwrap(), state);
    let mut in_memory = StateMachineStore::memory();
    in_memory
        .install_snapshot(&snap.meta, snap.snapshot)
        .await
        .unwrap();
    assert_eq!(encode_data(&in_memory.read()).unwrap(), state);

    // And a restart restores it from the file.
    drop(other);
    let reopened = StateMachineStore::open(other_store, StateMachineConfig::default()).unwrap();
    assert_eq!(encode_data(&reopened.read()).unwrap(), state);
}

#[tokio::test]
async fn a_damaged_snapshot_file_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = SnapshotStore::open(dir.path()).unwrap();
    let mut sm = StateMachineStore::open(store.clone(), StateMachineConfig::default()).unwrap();
    a_varied_state(&mut sm).await;
    sm.build_snapshot().await.unwrap();
    let file = dir.path().join("snapshot.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&file, &bytes).unwrap();

    let err = sm.get_current_snapshot().await.expect_err("damaged");
    assert!(err.to_string().contains("checksum"), "{err}");
    drop(sm);
    let err = StateMachineStore::open(store, StateMachineConfig::default()).expect_err("damaged");
    let message = err.to_string();
    assert!(
        message.contains("corrupt snapshot file")
            && message.contains(&file.display().to_string())
            && message.contains("the checksum does not match"),
        "{message}"
    );
}

#[tokio::test]
async fn a_snapshot_written_with_the_map_of_strings_decodes_and_encodes_the_same() {
    // `Data` as this format was first written, with the key-value store a
    // map of `String` to `KvValue`.
    #[derive(serde::Serialize)]
    struct WithStringMap {
        last_applied: Option<LogId>,
        membership: StoredMembership,
        clock_ms: u64,
        clock_term: u64,
        kv: imbl::OrdMap<String, KvValue>,
        locks: BTreeMap<String, Lock>,
        dedup: imbl::OrdMap<std::sync::Arc<str>, DedupEntry>,
        dedup_order: imbl::Vector<std::sync::Arc<str>>,
    }
    let mut sm = StateMachineStore::memory();
    a_varied_state(&mut sm).await;
    let (old, expected_keys) = {
        let data = sm.read();
        let kv: imbl::OrdMap<String, KvValue> = data
            .kv
            .iter()
            .map(|(k, v, r)| {
                let value = KvValue {
                    value: v.to_vec(),
                    revision: r,
                };
                (k.to_owned(), value)
            })
            .collect();
        let old = WithStringMap {
            last_applied: data.last_applied,
            membership: data.membership.clone(),
            clock_ms: data.clock_ms,
            clock_term: data.clock_term,
            kv: kv.clone(),
            locks: data.locks.clone(),
            dedup: data.dedup.clone(),
            dedup_order: data.dedup_order.clone(),
        };
        (old, kv)
    };
    assert!(expected_keys.len() > 100);
    // Written in format 2, before keys had a time to live.
    let body = postcard::to_stdvec(&old).unwrap();
    let mut bytes = SNAPSHOT_FORMAT_V2.to_vec();
    bytes.extend(&body);
    let data = decode_data(&bytes).unwrap();
    for (key, value) in &expected_keys {
        assert_eq!(data.kv.get(key).as_ref(), Some(value));
    }
    assert_eq!(data.kv.len(), expected_keys.len());
    // Format 3 encodes the same, then the (empty) expiries.
    let mut now = SNAPSHOT_FORMAT.to_vec();
    now.extend(&body);
    now.extend([0, 0]);
    assert_eq!(encode_data(&data).unwrap(), now);
    assert_eq!(encode_data(&sm.read()).unwrap(), now);
}

fn put_ttl(key: &str, ttl_ms: u64) -> Operation {
    Operation::PutTtl {
        key: key.into(),
        value: b"v".to_vec(),
        expected_revision: None,
        ttl_ms,
    }
}

#[tokio::test]
async fn keys_with_a_ttl_expire_at_the_first_entry_whose_time_reaches_them() {
    let mut sm = StateMachineStore::memory();
    let mut watch = sm.watch("", None).unwrap();
    apply(&mut sm, entry(1, 1, put_ttl("a", 100), 1_000, None)).await;
    apply(&mut sm, entry(1, 2, put_ttl("b", 500), 1_000, None)).await;
    // Refreshed: a lives until 1,050 + 100.
    apply(&mut sm, entry(1, 3, put_ttl("a", 100), 1_050, None)).await;
    apply(&mut sm, entry(1, 4, Operation::Noop, 1_149, None)).await;
    assert!(sm.get("a").is_some(), "not expired before its time");
    apply(&mut sm, entry(1, 5, Operation::Noop, 1_150, None)).await;
    assert!(sm.get("a").is_none(), "expired at its time");
    assert!(sm.get("b").is_some());
    assert_eq!(sm.next_expiry().0, Some(1_500));
    // A plain put makes b permanent.
    apply(
        &mut sm,
        entry(
            1,
            6,
            Operation::Put {
                key: "b".into(),
                value: b"w".to_vec(),
                expected_revision: None,
            },
            1_200,
            None,
        ),
    )
    .await;
    apply(&mut sm, entry(1, 7, Operation::Noop, 9_000, None)).await;
    assert!(sm.get("b").is_some());
    assert_eq!(sm.next_expiry().0, None);

    let mut kinds = Vec::new();
    for _ in 0..5 {
        match watch.next_event().await.unwrap().unwrap() {
            KeyEvent::Put { key, revision, .. } => kinds.push(("put", key, revision)),
            KeyEvent::Delete { key, revision } => kinds.push(("delete", key, revision)),
        }
    }
    let want: Vec<(&str, String, u64)> = vec![
        ("put", "a".into(), 1),
        ("put", "b".into(), 2),
        ("put", "a".into(), 3),
        ("delete", "a".into(), 5),
        ("put", "b".into(), 6),
    ];
    assert_eq!(kinds, want);
}

#[tokio::test]
async fn expiries_rebase_at_a_new_term_and_survive_a_snapshot() {
    let mut sm = StateMachineStore::memory();
    apply(&mut sm, entry(1, 1, put_ttl("a", 100), 1_000, None)).await;
    apply(&mut sm, entry(1, 2, Operation::Noop, 1_060, None)).await;
    // A new leader whose clock is far behind: a keeps its 40 ms left.
    apply(&mut sm, entry(2, 3, Operation::Noop, 500, None)).await;
    assert_eq!(sm.expiry("a"), Some(540));

    let snap = sm.build_snapshot().await.unwrap();
    let mut other = StateMachineStore::memory();
    let stored = sm.get_current_snapshot().await.unwrap().unwrap();
    other
        .install_snapshot(&snap.meta, stored.snapshot)
        .await
        .unwrap();
    assert_eq!(other.expiry("a"), Some(540));
    apply(&mut other, entry(2, 4, Operation::Noop, 540, None)).await;
    assert!(other.get("a").is_none());
}

#[test]
fn a_ttl_out_of_range_is_refused() {
    for ttl in [0, limits::MAX_TTL_MS + 1] {
        assert!(validate_command(&cmd(put_ttl("a", ttl), 1, None)).is_err());
    }
    assert!(validate_command(&cmd(put_ttl("a", 1), 1, None)).is_ok());
}

#[test]
fn a_format_2_snapshot_still_decodes() {
    #[derive(serde::Serialize)]
    struct V2<'a> {
        last_applied: Option<LogId>,
        membership: &'a StoredMembership,
        clock_ms: u64,
        clock_term: u64,
        kv: &'a KvMap,
        locks: &'a BTreeMap<String, Lock>,
        dedup: &'a imbl::OrdMap<Arc<str>, DedupEntry>,
        dedup_order: &'a imbl::Vector<Arc<str>>,
    }
    let mut data = Data::default();
    data.kv.insert("k", b"v", 3);
    data.clock_ms = 77;
    let mut bytes = SNAPSHOT_FORMAT_V2.to_vec();
    bytes.extend(
        postcard::to_allocvec(&V2 {
            last_applied: None,
            membership: &data.membership,
            clock_ms: data.clock_ms,
            clock_term: 0,
            kv: &data.kv,
            locks: &data.locks,
            dedup: &data.dedup,
            dedup_order: &data.dedup_order,
        })
        .unwrap(),
    );
    let decoded = decode_data(&bytes).unwrap();
    assert_eq!(decoded.clock_ms, 77);
    assert_eq!(decoded.kv.get("k").unwrap().revision, 3);
    assert!(decoded.expiries.is_empty());
}
