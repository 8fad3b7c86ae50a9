//! The checker and the invariants accept linearizable histories and reject
//! known violations: a checker that cannot fail would prove nothing.

use catga_cluster_tests::checker::{check_linearizable, check_with, CheckOptions};
use catga_cluster_tests::history::{
    Call, CounterValue, FenceRecord, FinalOrder, FinalRead, FinalReads, History, Increment, Op,
    OrderCommand, OrderSnapshot, Outcome, Reply, Resolution,
};
use catga_cluster_tests::invariants::{check_all, Rule};

/// Builds histories: times in milliseconds, converted to microseconds.
#[derive(Default)]
struct H {
    history: History,
}

impl H {
    fn op(&mut self, process: u64, from_ms: u64, to_ms: u64, call: Call, outcome: Outcome) {
        self.history.ops.push(Op {
            process,
            client: process as u32,
            node: 0,
            invoked_us: from_ms * 1000,
            completed_us: to_ms * 1000,
            call,
            outcome,
        });
    }
    fn ok(&mut self, process: u64, from_ms: u64, to_ms: u64, call: Call, reply: Reply) {
        self.op(process, from_ms, to_ms, call, Outcome::Ok(reply));
    }
    fn unknown(&mut self, process: u64, from_ms: u64, call: Call) {
        self.op(
            process,
            from_ms,
            from_ms + 1,
            call,
            Outcome::Unknown {
                reason: "deadline".into(),
            },
        );
    }
    fn lin(&self) -> bool {
        let report = check_linearizable(&self.history);
        assert!(report.inconclusive.is_empty(), "{}", report.summary());
        report.violations.is_empty()
    }
}

fn read(key: &str) -> Call {
    Call::KvRead { key: key.into() }
}
fn put(key: &str, value: &str) -> Call {
    Call::KvPut {
        key: key.into(),
        value: value.into(),
    }
}
fn cas(key: &str, expected: u64, value: &str) -> Call {
    Call::KvCas {
        key: key.into(),
        expected,
        value: value.into(),
    }
}
fn value(value: &str, revision: u64) -> Reply {
    Reply::Value {
        value: value.into(),
        revision,
    }
}
fn written(revision: u64) -> Reply {
    Reply::Written { revision }
}
fn acquire(lock: &str, owner: &str, ttl_ms: u64) -> Call {
    Call::LockAcquire {
        lock: lock.into(),
        owner: owner.into(),
        ttl_ms,
        wait_ms: 0,
    }
}
fn release(lock: &str, owner: &str, token: u64) -> Call {
    Call::LockRelease {
        lock: lock.into(),
        owner: owner.into(),
        token,
    }
}
fn renew(lock: &str, owner: &str, token: u64, ttl_ms: u64) -> Call {
    Call::LockRenew {
        lock: lock.into(),
        owner: owner.into(),
        token,
        ttl_ms,
    }
}
fn granted(token: u64) -> Reply {
    Reply::Granted { token, ttl_ms: 0 }
}

// ------------------------------------------------------------ key-value

#[test]
fn sequential_and_concurrent_key_value_histories_pass() {
    let mut h = H::default();
    h.ok(1, 0, 1, read("k"), Reply::NotFound);
    h.ok(1, 2, 3, put("k", "a"), written(5));
    h.ok(2, 4, 5, read("k"), value("a", 5));
    // Two concurrent writes, and reads that see them in revision order.
    h.ok(1, 10, 20, put("k", "b"), written(9));
    h.ok(2, 11, 19, cas("k", 5, "c"), written(7));
    h.ok(3, 12, 13, read("k"), value("c", 7));
    h.ok(3, 21, 22, read("k"), value("b", 9));
    // A compare-and-set on a stale revision fails with the current one.
    h.ok(2, 23, 24, cas("k", 7, "d"), Reply::Mismatch { current: 9 });
    h.ok(2, 25, 26, cas("k", 9, "e"), written(12));
    h.ok(
        2,
        27,
        28,
        Call::KvDelete { key: "k".into() },
        Reply::Deleted,
    );
    h.ok(1, 29, 30, read("k"), Reply::NotFound);
    h.ok(1, 31, 32, cas("k", 0, "f"), written(15));
    assert!(h.lin());
}

#[test]
fn a_stale_read_after_an_acknowledged_write_fails() {
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.ok(1, 2, 3, put("k", "b"), written(4));
    h.ok(2, 5, 6, read("k"), value("a", 2));
    assert!(!h.lin());
    // Concurrent with the second write, the same read is fine.
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.ok(1, 2, 7, put("k", "b"), written(4));
    h.ok(2, 5, 6, read("k"), value("a", 2));
    assert!(h.lin());
}

#[test]
fn a_read_going_back_in_time_fails() {
    let mut h = H::default();
    h.ok(1, 0, 10, put("k", "b"), written(4));
    h.ok(2, 1, 2, read("k"), value("b", 4));
    h.ok(3, 3, 4, read("k"), Reply::NotFound);
    assert!(!h.lin());
}

#[test]
fn a_lost_acknowledged_write_fails_with_the_final_reads() {
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.ok(1, 2, 3, put("k", "b"), written(4));
    assert!(h.lin());
    let finals = FinalReads {
        kv: (0..3)
            .map(|node| FinalRead {
                node,
                key: "k".into(),
                reply: Some(value("a", 2)),
                error: None,
            })
            .collect(),
        orders: vec![],
    };
    let report = check_with(&h.history, Some(&finals), &CheckOptions::default());
    assert_eq!(report.violations.len(), 1, "{}", report.summary());
    let violations = check_all(&h.history, Some(&finals));
    assert!(
        violations
            .iter()
            .any(|v| v.rule == Rule::AcknowledgedWriteMissing),
        "{violations:?}"
    );
}

#[test]
fn a_compare_and_set_succeeding_twice_on_one_revision_fails() {
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.ok(1, 2, 10, cas("k", 2, "b"), written(5));
    h.ok(2, 3, 11, cas("k", 2, "c"), written(6));
    assert!(!h.lin());
    // One of them failing is fine.
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.ok(1, 2, 10, cas("k", 2, "b"), written(5));
    h.ok(2, 3, 11, cas("k", 2, "c"), Reply::Mismatch { current: 5 });
    assert!(h.lin());
}

#[test]
fn revisions_going_down_fail() {
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(7));
    h.ok(1, 2, 3, put("k", "b"), written(5));
    assert!(!h.lin());
}

#[test]
fn unknown_writes_may_or_may_not_have_happened() {
    // Observed long after its deadline passed: applied late.
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.unknown(2, 2, put("k", "b"));
    h.ok(3, 10, 11, read("k"), value("a", 2));
    h.ok(3, 20, 21, read("k"), value("b", 9));
    h.ok(3, 22, 23, cas("k", 9, "c"), written(11));
    assert!(h.lin());
    // Never observed.
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.unknown(2, 2, put("k", "b"));
    h.ok(3, 10, 11, read("k"), value("a", 2));
    assert!(h.lin());
    // But not before it was invoked.
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.ok(3, 2, 3, read("k"), value("b", 9));
    h.unknown(2, 4, put("k", "b"));
    assert!(!h.lin());
    // And an unknown compare-and-set on a revision that was gone cannot
    // have applied.
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.ok(1, 2, 3, put("k", "b"), written(4));
    h.unknown(2, 5, cas("k", 2, "c"));
    h.ok(3, 10, 11, read("k"), value("c", 9));
    assert!(!h.lin());
}

#[test]
fn a_refused_write_that_took_effect_is_told_apart() {
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.op(
        2,
        2,
        3,
        put("k", "b"),
        Outcome::Refused {
            status: 503,
            slug: "not-leader".into(),
        },
    );
    h.ok(3, 10, 11, read("k"), value("b", 5));
    let report = check_linearizable(&h.history);
    assert_eq!(report.violations.len(), 1);
    assert!(report.violations[0].explained_by_false_refusal);
}

// ---------------------------------------------------------------- locks

#[test]
fn lock_histories_pass() {
    let mut h = H::default();
    // a holds, releases; b takes it; b's lease lapses; c takes it.
    h.ok(1, 0, 2, acquire("l", "a", 1000), granted(3));
    h.ok(2, 5, 6, acquire("l", "b", 1000), Reply::Held);
    h.ok(1, 10, 12, release("l", "a", 3), Reply::Released);
    h.ok(2, 13, 14, acquire("l", "b", 100), granted(8));
    h.ok(2, 20, 21, renew("l", "b", 8, 100), granted(8));
    h.ok(3, 121, 125, acquire("l", "c", 100), granted(12));
    h.ok(2, 130, 131, release("l", "b", 8), Reply::Lost);
    // An unknown release lets the next grant come at once.
    h.unknown(3, 140, release("l", "c", 12));
    h.ok(4, 150, 151, acquire("l", "d", 1000), granted(20));
    // An unknown acquire that was never granted.
    h.unknown(5, 160, acquire("l", "e", 1000));
    h.ok(4, 170, 171, release("l", "d", 20), Reply::Released);
    h.ok(6, 180, 181, acquire("l", "f", 1000), granted(30));
    assert!(h.lin());
}

#[test]
fn two_overlapping_grants_fail() {
    let mut h = H::default();
    h.ok(1, 0, 2, acquire("l", "a", 1000), granted(3));
    h.ok(2, 500, 502, acquire("l", "b", 1000), granted(5));
    assert!(!h.lin());
    // After the lease, the second grant is fine.
    let mut h = H::default();
    h.ok(1, 0, 2, acquire("l", "a", 1000), granted(3));
    h.ok(2, 999, 1001, acquire("l", "b", 1000), granted(5));
    assert!(h.lin());
    // A renewal extends it.
    let mut h = H::default();
    h.ok(1, 0, 2, acquire("l", "a", 1000), granted(3));
    h.ok(1, 800, 802, renew("l", "a", 3, 1000), granted(3));
    h.ok(2, 999, 1001, acquire("l", "b", 1000), granted(5));
    assert!(!h.lin());
}

#[test]
fn an_acquire_whose_answer_was_lost_may_not_have_been_granted() {
    let mut h = H::default();
    h.unknown(1, 0, acquire("l", "a", 1000));
    h.ok(2, 10, 11, acquire("l", "b", 1000), granted(4));
    assert!(h.lin());
    // Whatever it did, it cannot make room for an overlapping grant.
    h.ok(3, 20, 21, acquire("l", "c", 1000), granted(6));
    assert!(!h.lin());
}

#[test]
fn tokens_going_down_fail() {
    let mut h = H::default();
    h.ok(1, 0, 2, acquire("l", "a", 10), granted(9));
    h.ok(1, 3, 4, release("l", "a", 9), Reply::Released);
    h.ok(2, 5, 6, acquire("l", "b", 10), granted(7));
    assert!(!h.lin());
    let violations = check_all(&h.history, None);
    assert!(
        violations.iter().any(|v| v.rule == Rule::TokenOrder),
        "{violations:?}"
    );
}

#[test]
fn a_lease_lost_before_its_term_fails() {
    let mut h = H::default();
    h.ok(1, 0, 2, acquire("l", "a", 1000), granted(3));
    h.ok(1, 100, 101, renew("l", "a", 3, 1000), Reply::Lost);
    assert!(!h.lin());
    let mut h = H::default();
    h.ok(1, 0, 2, acquire("l", "a", 100), granted(3));
    h.ok(1, 100, 101, renew("l", "a", 3, 100), Reply::Lost);
    assert!(h.lin());
}

// ----------------------------------------------------------- invariants

fn fence(token: u64, at_ms: u64, until_ms: u64) -> FenceRecord {
    FenceRecord {
        lock: "l".into(),
        client: token as u32,
        owner: format!("o{token}"),
        token,
        at_us: at_ms * 1000,
        valid_until_us: until_ms * 1000,
        accepted: true,
    }
}

#[test]
fn overlapping_holders_at_the_resource_fail() {
    let mut h = History {
        fences: vec![fence(3, 0, 100), fence(3, 50, 100), fence(7, 101, 300)],
        ..History::default()
    };
    assert_eq!(check_all(&h, None), vec![]);
    h.fences.push(fence(9, 250, 400));
    let violations = check_all(&h, None);
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].rule, Rule::OverlappingHolders);
}

fn counter_finals(value: &CounterValue) -> FinalReads {
    FinalReads {
        kv: (0..3)
            .map(|node| FinalRead {
                node,
                key: "ctr".into(),
                reply: Some(Reply::Value {
                    value: serde_json::to_string(value).unwrap(),
                    revision: 10,
                }),
                error: None,
            })
            .collect(),
        orders: vec![],
    }
}

fn increment(id: &str, resolution: Resolution) -> Increment {
    Increment {
        client: 0,
        counter: "ctr".into(),
        request_id: id.into(),
        invoked_us: 0,
        completed_us: 1,
        writes: 1,
        resolution,
    }
}

#[test]
fn a_double_applied_increment_fails() {
    let mut h = History {
        increments: vec![
            increment("a", Resolution::Acknowledged),
            increment("b", Resolution::Unknown),
            increment("c", Resolution::NotApplied),
        ],
        ..History::default()
    };
    // The counter's own writes, so the value is one some call wrote.
    let mut write = |v: &CounterValue| {
        h.ops.push(Op {
            process: 1,
            client: 0,
            node: 0,
            invoked_us: 0,
            completed_us: 1,
            call: cas("ctr", 0, &serde_json::to_string(v).unwrap()),
            outcome: Outcome::Unknown {
                reason: "test".into(),
            },
        })
    };
    let ok = CounterValue {
        count: 2,
        ids: vec!["a".into(), "b".into()],
    };
    let twice = CounterValue {
        count: 3,
        ids: vec!["a".into(), "b".into(), "a".into()],
    };
    let phantom = CounterValue {
        count: 2,
        ids: vec!["a".into(), "c".into()],
    };
    let lost = CounterValue {
        count: 1,
        ids: vec!["b".into()],
    };
    for v in [&ok, &twice, &phantom, &lost] {
        write(v);
    }
    assert_eq!(check_all(&h, Some(&counter_finals(&ok))), vec![]);
    let rules = |v: &CounterValue| -> Vec<Rule> {
        check_all(&h, Some(&counter_finals(v)))
            .into_iter()
            .map(|v| v.rule)
            .collect()
    };
    assert!(rules(&twice).contains(&Rule::DoubleApplied));
    assert_eq!(rules(&phantom), vec![Rule::PhantomWrite]);
    assert_eq!(rules(&lost), vec![Rule::AcknowledgedWriteMissing]);
}

fn snapshot(created_at_ms: u64) -> OrderSnapshot {
    OrderSnapshot {
        id: "idem-k".into(),
        created_at_ms,
        accepted_by: 0,
        customer: "c".into(),
    }
}

#[test]
fn an_order_created_twice_fails() {
    let mut h = H::default();
    let create = || Call::OrderCreate {
        idempotency_key: "k".into(),
    };
    h.unknown(1, 0, create());
    h.ok(
        2,
        10,
        11,
        create(),
        Reply::Order {
            created: true,
            order: snapshot(5),
        },
    );
    h.history.orders.push(OrderCommand {
        client: 0,
        idempotency_key: "k".into(),
        order_id: "idem-k".into(),
        attempts: 2,
        acknowledged: Some(snapshot(5)),
        resolution: Resolution::Acknowledged,
    });
    let finals = |created_at_ms| FinalReads {
        kv: vec![],
        orders: (0..3)
            .map(|node| FinalOrder {
                node,
                idempotency_key: "k".into(),
                order: Some(snapshot(created_at_ms)),
                error: None,
            })
            .collect(),
    };
    assert_eq!(check_all(&h.history, Some(&finals(5))), vec![]);
    // Created again by the retry of the unknown call: the order changed.
    let violations = check_all(&h.history, Some(&finals(9)));
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].rule, Rule::DoubleApplied);
    // A repeat answered "created" again.
    h.ok(
        2,
        20,
        21,
        create(),
        Reply::Order {
            created: true,
            order: snapshot(5),
        },
    );
    let violations = check_all(&h.history, Some(&finals(5)));
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].rule, Rule::DoubleApplied);
}

#[test]
fn nodes_disagreeing_after_the_run_fail() {
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.ok(1, 2, 3, put("k", "b"), written(4));
    let finals = FinalReads {
        kv: vec![
            FinalRead {
                node: 0,
                key: "k".into(),
                reply: Some(value("b", 4)),
                error: None,
            },
            FinalRead {
                node: 1,
                key: "k".into(),
                reply: Some(value("a", 2)),
                error: None,
            },
        ],
        orders: vec![],
    };
    let rules: Vec<Rule> = check_all(&h.history, Some(&finals))
        .into_iter()
        .map(|v| v.rule)
        .collect();
    assert_eq!(rules, vec![Rule::NodesDisagree]);
}

#[test]
fn a_history_round_trips_through_json() {
    let mut h = H::default();
    h.ok(1, 0, 1, put("k", "a"), written(2));
    h.unknown(2, 2, acquire("l", "a", 10));
    h.history.fences.push(fence(3, 0, 1));
    let json = serde_json::to_string(&h.history).unwrap();
    let back: History = serde_json::from_str(&json).unwrap();
    assert_eq!(back, h.history);
}

// ------------------------------------------------- generated histories

/// A history of `ops` calls by `processes` concurrent clients on one key,
/// made by running a real register: each call takes effect at a random
/// point between its invocation and its answer; a share of the calls lose
/// their answer (and then took effect or not).
fn generated(seed: u64, processes: u64, ops: usize, unknown_percent: u32) -> History {
    let mut rng = fastrand::Rng::with_seed(seed);
    struct Planned {
        process: u64,
        from: u64,
        at: u64,
        to: u64,
        call: Call,
        unknown: bool,
        applied: bool,
    }
    let mut planned = Vec::new();
    let mut clock = vec![0u64; processes as usize];
    let mut process_ids: Vec<u64> = (0..processes).collect();
    let mut next_process = processes;
    for i in 0..ops {
        let p = rng.usize(..processes as usize);
        let from = clock[p] + rng.u64(0..50);
        let at = from + rng.u64(0..100);
        let to = at + rng.u64(0..100);
        clock[p] = to;
        let value = format!("v{i}");
        let call = match rng.u32(0..10) {
            0..=3 => read("k"),
            4..=5 => put("k", &value),
            6..=8 => cas("k", rng.u64(0..(i as u64 / 2 + 1)), &value),
            _ => Call::KvDelete { key: "k".into() },
        };
        let unknown = rng.u32(0..100) < unknown_percent;
        planned.push(Planned {
            process: process_ids[p],
            from,
            at,
            to,
            call,
            unknown,
            applied: !unknown || rng.bool(),
        });
        if unknown {
            process_ids[p] = next_process;
            next_process += 1;
        }
    }
    // Apply in the order the calls took effect.
    let mut order: Vec<usize> = (0..planned.len()).collect();
    order.sort_by_key(|i| planned[*i].at);
    let mut state: Option<(String, u64)> = None;
    let mut index = 0;
    let mut history = History::default();
    let mut outcomes = vec![None; planned.len()];
    for i in order {
        let p = &planned[i];
        if !p.applied {
            continue;
        }
        index += 1;
        let reply = match &p.call {
            Call::KvRead { .. } => match &state {
                Some((v, r)) => value(v, *r),
                None => Reply::NotFound,
            },
            Call::KvPut { value, .. } => {
                state = Some((value.clone(), index));
                written(index)
            }
            Call::KvCas {
                expected, value, ..
            } => {
                let current = state.as_ref().map_or(0, |(_, r)| *r);
                if current == *expected {
                    state = Some((value.clone(), index));
                    written(index)
                } else {
                    Reply::Mismatch { current }
                }
            }
            Call::KvDelete { .. } => match state.take() {
                Some(_) => Reply::Deleted,
                None => Reply::NotFound,
            },
            _ => unreachable!(),
        };
        outcomes[i] = Some(reply);
    }
    for (p, reply) in planned.into_iter().zip(outcomes) {
        let outcome = match (p.unknown, reply) {
            (true, _) => Outcome::Unknown {
                reason: "generated".into(),
            },
            (false, Some(reply)) => Outcome::Ok(reply),
            (false, None) => unreachable!("a call with an answer was applied"),
        };
        history.ops.push(Op {
            process: p.process,
            client: 0,
            node: 0,
            invoked_us: p.from,
            completed_us: p.to,
            call: p.call,
            outcome,
        });
    }
    history
}

/// Histories of five clients with much more overlap than the workload's
/// (every call overlaps most others), some answers lost: each passes, and
/// with one read changed each fails, within the search budget.
#[test]
fn generated_linearizable_histories_pass_and_tampered_ones_fail() {
    for seed in 0..10 {
        let history = generated(seed, 5, 100, 5);
        let report = check_linearizable(&history);
        assert!(report.passed(), "seed {seed}: {}", report.summary());

        // A read that answers the value before the last write it follows.
        let mut tampered = history.clone();
        let reads: Vec<usize> = tampered
            .ops
            .iter()
            .enumerate()
            .filter(|(_, op)| {
                matches!(op.outcome, Outcome::Ok(Reply::Value { .. }))
                    && matches!(op.call, Call::KvRead { .. })
            })
            .map(|(i, _)| i)
            .collect();
        let i = reads[reads.len() / 2];
        if let Outcome::Ok(Reply::Value { value, .. }) = &mut tampered.ops[i].outcome {
            *value = "never-written".into();
        }
        let report = check_linearizable(&tampered);
        assert_eq!(
            report.violations.len() + report.inconclusive.len(),
            1,
            "seed {seed}: {}",
            report.summary()
        );
        assert_eq!(
            report.violations.len(),
            1,
            "seed {seed}: {}",
            report.summary()
        );
    }
}
