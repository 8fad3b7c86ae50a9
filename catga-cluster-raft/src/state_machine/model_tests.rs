//! The whole state machine against a plain model: random sequences of
//! entries (puts and deletes with and without an expected revision, lock
//! operations with leases and waits on a leader clock that moves, also
//! backwards, batches, retried request ids, blank entries, new terms,
//! commands the state machine refuses) are applied through openraft's
//! [`RaftStateMachine::apply`] with real [`Entry`] values, and to a model:
//! a `BTreeMap` for the keys (a key's revision is the index of the entry
//! that wrote it), the lock model of the lock table's own property test per
//! lock, and a plain de-duplication table. Every answer and, after every
//! entry, the whole visible state must agree. In the middle of a sequence a
//! snapshot is built, read back and installed into a fresh state machine,
//! which carries on: the state it holds must encode to the same bytes.
//!
//! `PROPTEST_CASES=5000` for a longer run.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, RaftSnapshotBuilder};
use proptest::prelude::*;

use super::locks::tests::{caller, op as lock_op, op_token, Model as LockModel, Op as LockOp};
use super::*;
use crate::types::{Command, Entry, Operation};

/// Keys; the empty one is refused.
const KEYS: [&str; 4] = ["a", "b", "a/b", ""];
/// Lock names; the empty one is refused.
const LOCKS: [&str; 3] = ["l1", "l2", ""];
const T0: u64 = 1_000_000;

fn config() -> StateMachineConfig {
    StateMachineConfig {
        dedup_horizon: Duration::from_millis(2000),
        dedup_max_entries: 6,
        ..StateMachineConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Step {
    /// One command in its own entry.
    One(Cmd),
    /// Commands batched into one entry.
    Batch(Vec<Cmd>),
    /// A blank entry.
    Blank,
    /// A new leader: the term grows and the leader clock jumps, forwards or
    /// back.
    NewTerm { jump: i64 },
    /// A snapshot built, read back and installed into a fresh state machine.
    Snapshot,
}

#[derive(Debug, Clone)]
struct Cmd {
    /// A request id out of a few, so that some are retried.
    id: Option<u8>,
    /// How far the leader clock moves before the command (also back).
    dt: i64,
    op: CmdOp,
}

#[derive(Debug, Clone)]
enum CmdOp {
    Noop,
    /// `expected`: none, the key's revision (`true`) or some number.
    Put {
        key: usize,
        len: usize,
        expected: Option<(bool, u64)>,
    },
    Delete {
        key: usize,
        expected: Option<(bool, u64)>,
    },
    Lock {
        lock: usize,
        op: LockOp,
    },
    /// An empty batch: refused inside a batch, an empty batch of its own.
    Nested,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    let expected = || proptest::option::of((prop::bool::weighted(0.7), 0u64..40));
    let op = prop_oneof![
        1 => Just(CmdOp::Noop),
        4 => (0..KEYS.len(), 0usize..5, expected())
            .prop_map(|(key, len, expected)| CmdOp::Put { key, len, expected }),
        2 => (0..KEYS.len(), expected()).prop_map(|(key, expected)| CmdOp::Delete { key, expected }),
        6 => (0..LOCKS.len(), lock_op().prop_filter("a command", |o| !matches!(o, LockOp::NewTerm { .. })))
            .prop_map(|(lock, op)| CmdOp::Lock { lock, op }),
        1 => Just(CmdOp::Nested),
    ];
    (proptest::option::of(0u8..8), -40i64..300, op).prop_map(|(id, dt, op)| Cmd { id, dt, op })
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => cmd().prop_map(Step::One),
        3 => proptest::collection::vec(cmd(), 0..5).prop_map(Step::Batch),
        1 => Just(Step::Blank),
        1 => (-3000i64..5000).prop_map(|jump| Step::NewTerm { jump }),
        1 => Just(Step::Snapshot),
    ]
}

/// The model.
#[derive(Debug, Default)]
struct Model {
    kv: BTreeMap<String, (Vec<u8>, u64)>,
    locks: BTreeMap<String, LockModel>,
    clock_ms: u64,
    clock_term: u64,
    dedup: BTreeMap<String, (CommandResponse, u64)>,
    dedup_order: VecDeque<String>,
}

impl Model {
    fn revision(&self, key: &str) -> u64 {
        self.kv.get(key).map_or(0, |(_, r)| *r)
    }

    fn apply(
        &mut self,
        term: u64,
        index: u64,
        cmd: &Command,
        lock_ops: &[LockOp],
    ) -> CommandResponse {
        // The leader clock: the largest time in a term; at a new term every
        // lease and wait keeps what was left of it.
        if term > self.clock_term {
            if self.clock_term != 0 {
                for lock in self.locks.values_mut() {
                    lock.rebase(self.clock_ms, cmd.leader_time_ms);
                }
            }
            self.clock_term = term;
            self.clock_ms = cmd.leader_time_ms;
        } else {
            self.clock_ms = self.clock_ms.max(cmd.leader_time_ms);
        }
        if let Some(id) = &cmd.request_id {
            if let Some((answer, _)) = self.dedup.get(id) {
                return answer.clone();
            }
        }
        let answer = self.execute(index, &cmd.op, lock_ops);
        if let Some(id) = &cmd.request_id {
            let now = self.clock_ms;
            let horizon = u64::try_from(config().dedup_horizon.as_millis()).unwrap();
            self.dedup.insert(id.clone(), (answer.clone(), now));
            self.dedup_order.push_back(id.clone());
            while let Some(oldest) = self.dedup_order.front() {
                let at = self.dedup[oldest].1;
                if now.saturating_sub(at) > horizon || self.dedup.len() > config().dedup_max_entries
                {
                    let oldest = self.dedup_order.pop_front().unwrap();
                    self.dedup.remove(&oldest);
                } else {
                    break;
                }
            }
        }
        answer
    }

    fn execute(&mut self, index: u64, op: &Operation, lock_ops: &[LockOp]) -> CommandResponse {
        let rejected = CommandResponse::Rejected {
            reason: String::new(),
        };
        let mismatch = |m: &Model, key: &str, expected: &Option<u64>| {
            let current = m.revision(key);
            expected
                .filter(|e| *e != current)
                .map(|_| CommandResponse::RevisionMismatch { current })
        };
        match op {
            Operation::Noop => CommandResponse::Empty,
            Operation::Batch(_) => rejected,
            // Keys with a time to live have tests of their own.
            Operation::PutTtl { .. } => panic!("the model generates no PutTtl"),
            Operation::Put { key, .. } | Operation::Delete { key, .. } if key.is_empty() => {
                rejected
            }
            Operation::Put {
                key,
                value,
                expected_revision,
            } => {
                if let Some(m) = mismatch(self, key, expected_revision) {
                    return m;
                }
                self.kv.insert(key.clone(), (value.clone(), index));
                CommandResponse::Written { revision: index }
            }
            Operation::Delete {
                key,
                expected_revision,
            } => {
                if let Some(m) = mismatch(self, key, expected_revision) {
                    return m;
                }
                CommandResponse::Deleted {
                    existed: self.kv.remove(key).is_some(),
                }
            }
            Operation::LockAcquire { name, .. }
            | Operation::LockWait { name, .. }
            | Operation::LockCancel { name, .. }
            | Operation::LockRenew { name, .. }
            | Operation::LockRelease { name, .. } => {
                if name.is_empty() {
                    return rejected;
                }
                let token = match op {
                    Operation::LockRenew { token, .. } | Operation::LockRelease { token, .. } => {
                        *token
                    }
                    _ => 0,
                };
                let now = self.clock_ms;
                let [lock_op] = lock_ops else {
                    unreachable!("one lock operation per lock command")
                };
                self.locks
                    .entry(name.clone())
                    .or_default()
                    .apply(lock_op, token, index, now)
            }
        }
    }
}

/// The answer with the reasons of refusals left out (the model does not
/// word them).
fn plain(answer: CommandResponse) -> CommandResponse {
    match answer {
        CommandResponse::Rejected { .. } => CommandResponse::Rejected {
            reason: String::new(),
        },
        CommandResponse::Batch(answers) => {
            CommandResponse::Batch(answers.into_iter().map(plain).collect())
        }
        other => other,
    }
}

/// The command of `c` at leader time `time`, and the lock model's operation
/// when it is one (a release or renew names its token from the model's
/// holder).
fn command(c: &Cmd, time: u64, model: &Model) -> (Command, Vec<LockOp>) {
    let expected = |key: &str, e: Option<(bool, u64)>| {
        e.map(|(right, other)| if right { model.revision(key) } else { other })
    };
    let mut lock_ops = Vec::new();
    let op = match &c.op {
        CmdOp::Noop => Operation::Noop,
        CmdOp::Nested => Operation::Batch(vec![]),
        CmdOp::Put {
            key,
            len,
            expected: e,
        } => Operation::Put {
            key: KEYS[*key].into(),
            value: vec![b'v'; *len],
            expected_revision: expected(KEYS[*key], *e),
        },
        CmdOp::Delete { key, expected: e } => Operation::Delete {
            key: KEYS[*key].into(),
            expected_revision: expected(KEYS[*key], *e),
        },
        CmdOp::Lock { lock, op } => {
            let name = LOCKS[*lock].to_owned();
            let held = model
                .locks
                .get(&name)
                .and_then(LockModel::state)
                .map_or(0, |s| s.token);
            let token = op_token(op, held);
            lock_ops.push(op.clone());
            match *op {
                LockOp::Acquire { who, ttl } => Operation::LockAcquire {
                    name,
                    owner: caller(who).0,
                    ttl_ms: ttl,
                },
                LockOp::Wait { who, ttl, wait } => Operation::LockWait {
                    name,
                    owner: caller(who).0,
                    waiter: caller(who).1,
                    ttl_ms: ttl,
                    wait_ms: wait,
                },
                LockOp::Cancel { who } => Operation::LockCancel {
                    name,
                    owner: caller(who).0,
                    waiter: caller(who).1,
                },
                LockOp::Release { who, .. } => Operation::LockRelease {
                    name,
                    owner: caller(who).0,
                    token,
                },
                LockOp::Renew { who, ttl, .. } => Operation::LockRenew {
                    name,
                    owner: caller(who).0,
                    token,
                    ttl_ms: ttl,
                },
                LockOp::NewTerm { .. } => unreachable!("filtered out"),
            }
        }
    };
    let command = Command {
        request_id: c.id.map(|i| format!("r{i}")),
        leader_time_ms: time,
        op,
    };
    (command, lock_ops)
}

/// The state machine's visible state agrees with the model's.
fn same_state(sm: &StateMachineStore, model: &Model) -> Result<(), TestCaseError> {
    let entries: BTreeMap<String, (Vec<u8>, u64)> = sm
        .list("", usize::MAX)
        .into_iter()
        .map(|(k, v)| (k, (v.value, v.revision)))
        .collect();
    prop_assert_eq!(&entries, &model.kv);
    for key in KEYS {
        prop_assert_eq!(
            sm.get(key).map(|v| (v.value, v.revision)),
            model.kv.get(key).cloned()
        );
    }
    for name in LOCKS {
        let lock = model.locks.get(name);
        let (state, clock) = sm.lock(name);
        prop_assert_eq!(state, lock.and_then(LockModel::state), "lock {}", name);
        prop_assert_eq!(clock, model.clock_ms);
        prop_assert_eq!(
            sm.lock_queue(name),
            lock.map(LockModel::queue).unwrap_or_default(),
            "queue of {}",
            name
        );
    }
    prop_assert_eq!(sm.dedup_len(), model.dedup.len());
    Ok(())
}

async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut sm = StateMachineStore::open(SnapshotStore::memory(), config()).unwrap();
    let mut model = Model::default();
    let (mut term, mut index, mut leader_clock) = (1u64, 0u64, T0);
    let tick = |leader_clock: &mut u64, dt: i64| {
        *leader_clock = leader_clock.saturating_add_signed(dt);
        *leader_clock
    };
    for step in steps {
        let log_id = |index| LogId::new(CommittedLeaderId::new(term, NodeIdOf::new(1)), index);
        match step {
            Step::NewTerm { jump } => {
                term += 1;
                tick(&mut leader_clock, jump);
                continue;
            }
            Step::Snapshot => {
                let before = encode_data(&sm.read()).unwrap();
                let built = sm.build_snapshot().await.unwrap();
                let current = sm.get_current_snapshot().await.unwrap().unwrap();
                prop_assert_eq!(&current.meta, &built.meta);
                let mut fresh = StateMachineStore::open(SnapshotStore::memory(), config()).unwrap();
                fresh
                    .install_snapshot(&current.meta, current.snapshot)
                    .await
                    .unwrap();
                prop_assert_eq!(encode_data(&fresh.read()).unwrap(), before);
                prop_assert_eq!(fresh.last_applied(), sm.last_applied());
                sm = fresh;
            }
            Step::Blank => {
                index += 1;
                let entry = Entry {
                    log_id: log_id(index),
                    payload: EntryPayload::Blank,
                };
                let answers = sm.apply([entry]).await.unwrap();
                prop_assert_eq!(answers, vec![CommandResponse::Empty]);
            }
            Step::One(c) => {
                index += 1;
                let time = tick(&mut leader_clock, c.dt);
                let (command, lock_ops) = command(&c, time, &model);
                let expected = if let Operation::Batch(inner) = &command.op {
                    // An entry of its own that is a batch is a batch: the
                    // commands in it are applied, its own id and time are
                    // not (there are none in it here).
                    assert!(inner.is_empty());
                    CommandResponse::Batch(Vec::new())
                } else {
                    model.apply(term, index, &command, &lock_ops)
                };
                let entry = Entry {
                    log_id: log_id(index),
                    payload: EntryPayload::Normal(command.clone()),
                };
                let answers = sm.apply([entry]).await.unwrap();
                prop_assert_eq!(answers.len(), 1);
                prop_assert_eq!(
                    plain(answers[0].clone()),
                    expected,
                    "answer to {:?} at {}",
                    command,
                    index
                );
            }
            Step::Batch(cmds) => {
                index += 1;
                let mut commands = Vec::new();
                let mut expected = Vec::new();
                for c in &cmds {
                    let time = tick(&mut leader_clock, c.dt);
                    let (command, lock_ops) = command(c, time, &model);
                    expected.push(model.apply(term, index, &command, &lock_ops));
                    commands.push(command);
                }
                // The batch's own id and time are not those of any command.
                let entry = Entry {
                    log_id: log_id(index),
                    payload: EntryPayload::Normal(Command {
                        request_id: None,
                        leader_time_ms: leader_clock,
                        op: Operation::Batch(commands.clone()),
                    }),
                };
                let answers = sm.apply([entry]).await.unwrap();
                prop_assert_eq!(answers.len(), 1);
                prop_assert_eq!(
                    plain(answers[0].clone()),
                    CommandResponse::Batch(expected),
                    "answers to the batch {:?} at {}",
                    commands,
                    index
                );
            }
        }
        prop_assert_eq!(
            sm.last_applied().map(|l| l.index),
            (index > 0).then_some(index)
        );
        same_state(&sm, &model)?;
    }
    Ok(())
}

type NodeIdOf = catga_cluster_core::NodeId;

proptest! {
    #![proptest_config(ProptestConfig {
        // PROPTEST_CASES=5000 for a longer run.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_entries_match_the_model_through_a_snapshot_round_trip(
        steps in proptest::collection::vec(step(), 1..120)
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(steps))?;
    }
}
