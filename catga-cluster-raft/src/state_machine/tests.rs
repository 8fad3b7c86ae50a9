//! The state machine on its own: fencing, leases by the leader's clock,
//! de-duplication, compare-and-set and snapshots.

use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};

use super::*;
use crate::types::{Command, Entry, Operation};

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
    let snap = sm.build_snapshot().await.unwrap();
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
    let snap = sm.build_snapshot().await.unwrap();
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
    assert_eq!(data.kv["k"], kv);
    assert_eq!(data.locks["l"].state(), Some(holder));
    assert!(data.locks["l"].waiters.is_empty());
    assert_eq!((data.clock_ms, data.clock_term), (1000, 1));
    // And what is written now reads back.
    let again = decode_data(&encode_data(&data).unwrap()).unwrap();
    assert_eq!(again.locks, data.locks);
}
