//! Linearizability of the key-value and lock histories, checked with
//! `stateright`'s [`LinearizabilityTester`] against sequential models of
//! our semantics.
//!
//! # Partitions
//!
//! Linearizability is compositional (Herlihy and Wing): a history is
//! linearizable if and only if its restriction to each object is. Each
//! key-value key and each lock is an object, so each is checked on its own
//! ([`check_linearizable`] runs the partitions on two threads). The
//! tester's search is exponential in the number of concurrent calls in the
//! worst case, even with the memory we add (see `Spec`), so the workload
//! keeps few clients on each key and lock and moves to new ones every
//! second; a partition whose search exceeds [`CheckOptions::step_budget`]
//! is reported *inconclusive*, never passed.
//!
//! # Unknown outcomes
//!
//! A call whose outcome is unknown may have taken effect at any time after
//! it was invoked, or never. `stateright` models exactly that for a call
//! left *in flight* (invoked, never returned): the search may place it
//! anywhere after the calls that returned before it was invoked, or leave
//! it out. Each such call is given a process of its own (so the calls its
//! client made before it still precede it), numbered after every other
//! process so the search tries them last. Calls that definitely did not
//! take effect (never sent, refused by validation) are left out; calls
//! the node *refused* (`503 not-leader`, `504 timeout`) are left out first
//! and, if that finds a violation, taken as unknown in a second search, so
//! the report can say whether a refusal that was not one explains it.
//!
//! # Nondeterminism
//!
//! `stateright` asks a model for the one answer an operation gives; ours
//! are nondeterministic (a write's revision is any number above the last,
//! a lease may lapse any time after its term, an unknown call may have
//! succeeded or failed). So the sequential object the tester sees is the
//! *set* of states our model may be in (a subset construction), and a step
//! is valid when some state allows it.
//!
//! # The key-value model
//!
//! A key is absent (revision 0) or holds a value at a revision. Every
//! write gets a revision above every earlier write of the key (revisions
//! are log indexes). Values are unique in a run, so a read pins the
//! revision of a write whose answer was lost. `PUT` writes; `PUT` with
//! `If-Match: e` writes if the revision is `e` and otherwise answers the
//! current revision; `DELETE` removes; `GET` answers the value and
//! revision or `404`.
//!
//! # The lock model and time
//!
//! A lock is free or held by (owner, token) with a lease. A grant needs a
//! token above every earlier grant's and a free lock. A lease is decided by
//! the leader's clock, which the client does not see, so the model only
//! knows a lower bound: the lease cannot end before `ttl` after the call
//! that granted or renewed it was *invoked* (the leader stamps the entry
//! after it receives the call; a new term only extends leases). After that
//! it may lapse at any moment. A call that finds the lock free while the
//! model has it held (a grant to another owner, a `lock-lost` answer) is
//! valid only if it could have been applied after that bound: its answer
//! came at or after it, less [`CheckOptions::lease_slack`] (the leader's
//! clock counts whole milliseconds; the clients and the nodes share one
//! machine's clock, so there is no skew in rate to allow for). The model
//! also carries the earliest time the next state-changing entry can have
//! been applied (the entries are applied in the order the search places
//! them), so a lapse the search assumes holds for the calls placed after
//! it, and a grant whose answer was lost holds its lease from then on.
//!
//! Refusals (`409 lock-held`) are not checked: a fair lock may refuse an
//! acquire while it is free (somebody waits), and refusing constrains
//! liveness, not safety.
//!
//! ```
//! use catga_cluster_tests::checker::check_linearizable;
//! use catga_cluster_tests::history::{Call, History, Op, Outcome, Reply};
//!
//! let op = |process, at, call, reply| Op {
//!     process, client: 0, node: 0, invoked_us: at, completed_us: at + 5,
//!     call, outcome: Outcome::Ok(reply),
//! };
//! let mut history = History::default();
//! history.ops.push(op(1, 0, Call::KvPut { key: "k".into(), value: "a".into() },
//!     Reply::Written { revision: 3 }));
//! history.ops.push(op(2, 10, Call::KvRead { key: "k".into() }, Reply::NotFound));
//! let report = check_linearizable(&history);
//! assert_eq!(report.violations.len(), 1, "a read after a write missed it");
//! ```

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Debug;
use std::rc::Rc;
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use stateright::semantics::{ConsistencyTester, LinearizabilityTester, SequentialSpec};

use crate::history::{Call, FinalReads, History, Micros, Op, Outcome, Reply};

/// How to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Allowed error when comparing a lease's end with a client's clock
    /// (the leader's clock has a resolution of one millisecond).
    pub lease_slack: Duration,
    /// The most model steps one partition's search may take before it is
    /// reported inconclusive.
    pub step_budget: u64,
    /// Threads checking partitions in parallel.
    pub threads: usize,
}

impl Default for CheckOptions {
    fn default() -> Self {
        CheckOptions {
            lease_slack: Duration::from_millis(5),
            step_budget: 500_000,
            threads: 2,
        }
    }
}

/// What kind of object a partition is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    /// A key-value key.
    Key,
    /// A lock.
    Lock,
}

/// A partition with no linearization.
#[derive(Debug, Clone, Serialize)]
pub struct LinearizabilityViolation {
    /// The key or lock.
    pub object: String,
    /// Which.
    pub kind: ObjectKind,
    /// Whether the partition is linearizable once the calls the nodes
    /// refused are taken as unknown: then a refused call took effect.
    pub explained_by_false_refusal: bool,
    /// The partition's calls, for the report.
    pub ops: Vec<Op>,
}

/// The result of [`check_linearizable`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Partitions (keys and locks) checked.
    pub partitions: usize,
    /// Calls checked (definite and unknown).
    pub operations: usize,
    /// Calls whose outcome is unknown, checked as in flight.
    pub in_flight: usize,
    /// Partitions with no linearization.
    pub violations: Vec<LinearizabilityViolation>,
    /// Partitions whose search ran out of its step budget: neither passed
    /// nor failed.
    pub inconclusive: Vec<String>,
    /// The largest number of model steps one partition took.
    pub max_steps: u64,
}

impl CheckReport {
    /// No violation and no inconclusive partition.
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.inconclusive.is_empty()
    }

    /// A short account: counts, then each violation's object and calls.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "{} partitions, {} calls ({} in flight), {} violations, {} inconclusive, max {} steps",
            self.partitions,
            self.operations,
            self.in_flight,
            self.violations.len(),
            self.inconclusive.len(),
            self.max_steps
        );
        for v in &self.violations {
            s.push_str(&format!(
                "\n{:?} `{}` is not linearizable{}:",
                v.kind,
                v.object,
                if v.explained_by_false_refusal {
                    " (it is once refused calls are taken as unknown: a refused call took effect)"
                } else {
                    ""
                }
            ));
            for op in v.ops.iter().take(200) {
                s.push_str(&format!(
                    "\n  p{} [{}..{}] {:?} -> {:?}",
                    op.process, op.invoked_us, op.completed_us, op.call, op.outcome
                ));
            }
        }
        for i in &self.inconclusive {
            s.push_str(&format!("\ninconclusive: {i}"));
        }
        s
    }
}

/// Checks every key and lock of `history` with the default options.
pub fn check_linearizable(history: &History) -> CheckReport {
    check_with(history, None, &CheckOptions::default())
}

/// Checks every key and lock of `history`; with `final_reads`, the reads
/// made after the run (which follow every call of the run) are checked too.
pub fn check_with(
    history: &History,
    final_reads: Option<&FinalReads>,
    options: &CheckOptions,
) -> CheckReport {
    let mut partitions: BTreeMap<(ObjectKind, String), Vec<Op>> = BTreeMap::new();
    for op in &history.ops {
        let kind = match op.call {
            Call::KvRead { .. }
            | Call::KvPut { .. }
            | Call::KvCas { .. }
            | Call::KvDelete { .. } => ObjectKind::Key,
            Call::LockAcquire { .. } | Call::LockRenew { .. } | Call::LockRelease { .. } => {
                ObjectKind::Lock
            }
            Call::OrderCreate { .. } => continue,
        };
        let Some(object) = op.object() else { continue };
        partitions
            .entry((kind, object.to_owned()))
            .or_default()
            .push(op.clone());
    }
    if let Some(final_reads) = final_reads {
        let end = history
            .ops
            .iter()
            .map(|op| op.completed_us.max(op.invoked_us))
            .max()
            .unwrap_or(0)
            .max(history.duration_us);
        let first_process = history.ops.iter().map(|op| op.process).max().unwrap_or(0) + 1;
        for (i, read) in final_reads.kv.iter().enumerate() {
            let Some(reply) = &read.reply else { continue };
            partitions
                .entry((ObjectKind::Key, read.key.clone()))
                .or_default()
                .push(Op {
                    process: first_process + i as u64,
                    client: u32::MAX,
                    node: read.node,
                    invoked_us: end + 1,
                    completed_us: end + 2,
                    call: Call::KvRead {
                        key: read.key.clone(),
                    },
                    outcome: Outcome::Ok(reply.clone()),
                });
        }
    }

    let report = Mutex::new(CheckReport {
        partitions: partitions.len(),
        ..CheckReport::default()
    });
    let work: Mutex<Vec<Partition>> = Mutex::new(partitions.into_iter().rev().collect());
    std::thread::scope(|scope| {
        for _ in 0..options.threads.max(1) {
            std::thread::Builder::new()
                .name("linearizability".into())
                // The tester's search recurses once per call of a partition.
                .stack_size(512 << 20)
                .spawn_scoped(scope, || loop {
                    let next = work.lock().unwrap_or_else(|e| e.into_inner()).pop();
                    let Some(((kind, object), ops)) = next else {
                        break;
                    };
                    let result = check_partition(kind, &ops, options);
                    let mut report = report.lock().unwrap_or_else(|e| e.into_inner());
                    report.operations += result.operations;
                    report.in_flight += result.in_flight;
                    report.max_steps = report.max_steps.max(result.steps);
                    match result.verdict {
                        Verdict::Linearizable => {}
                        Verdict::Inconclusive => report
                            .inconclusive
                            .push(format!("{kind:?} `{object}` ({} calls)", ops.len())),
                        Verdict::Violation {
                            explained_by_false_refusal,
                        } => report.violations.push(LinearizabilityViolation {
                            object,
                            kind,
                            explained_by_false_refusal,
                            ops,
                        }),
                    }
                })
                .expect("a checker thread starts");
        }
    });
    let mut report = report.into_inner().unwrap_or_else(|e| e.into_inner());
    report
        .violations
        .sort_by(|a, b| (a.kind, &a.object).cmp(&(b.kind, &b.object)));
    report.inconclusive.sort();
    report
}

/// One object's calls.
type Partition = ((ObjectKind, String), Vec<Op>);

enum Verdict {
    Linearizable,
    Violation { explained_by_false_refusal: bool },
    Inconclusive,
}

struct PartitionResult {
    verdict: Verdict,
    operations: usize,
    in_flight: usize,
    steps: u64,
}

/// Checks one key's or lock's calls.
fn check_partition(kind: ObjectKind, ops: &[Op], options: &CheckOptions) -> PartitionResult {
    let run = |refusals_unknown: bool| match kind {
        ObjectKind::Key => search::<KvState>(ops, refusals_unknown, options),
        ObjectKind::Lock => search::<LockState>(ops, refusals_unknown, options),
    };
    let first = run(false);
    let verdict = match first.outcome {
        Search::Found => Verdict::Linearizable,
        Search::Exhausted => Verdict::Inconclusive,
        Search::NotFound => {
            let refused = ops
                .iter()
                .any(|op| matches!(op.outcome, Outcome::Refused { .. }));
            let explained = refused && matches!(run(true).outcome, Search::Found);
            Verdict::Violation {
                explained_by_false_refusal: explained,
            }
        }
    };
    PartitionResult {
        verdict,
        operations: first.operations,
        in_flight: first.in_flight,
        steps: first.steps,
    }
}

enum Search {
    Found,
    NotFound,
    Exhausted,
}

struct SearchResult {
    outcome: Search,
    operations: usize,
    in_flight: usize,
    steps: u64,
}

/// A call as the tester sees it: completed with an answer, or in flight.
enum Event<O, R> {
    Invoke(u64, O),
    Return(u64, R),
}

/// An event with its place in time (see [`search`]).
type Timed<M> = (
    (Micros, u8, usize, u8),
    Event<Indexed<<M as Model>::Op>, Answer<<M as Model>::Ret>>,
);

fn search<M: Model>(ops: &[Op], refusals_unknown: bool, options: &CheckOptions) -> SearchResult {
    let slack = u64::try_from(options.lease_slack.as_micros()).unwrap_or(u64::MAX);
    // Sorted by (time, class, sequence, sub): at one instant invocations
    // (class 0) come before answers (class 2), so two calls at the same
    // microsecond are concurrent, never ordered; except a process's next
    // call invoked the microsecond its previous one answered, which must
    // follow that answer (class 1: the answer, then the invocation).
    let mut events: Vec<Timed<M>> = Vec::new();
    let mut in_flight_process = u64::MAX;
    let mut operations = 0;
    let mut in_flight = 0;
    // Per process: its last answer's time and event index.
    let mut last_answer: HashMap<u64, (Micros, usize)> = HashMap::new();
    let mut ordered: Vec<&Op> = ops.iter().collect();
    ordered.sort_by_key(|op| op.invoked_us);
    for op in ordered {
        let unknown = match &op.outcome {
            Outcome::Ok(_) => false,
            Outcome::Unknown { .. } => true,
            Outcome::Refused { .. } if refusals_unknown => true,
            Outcome::Refused { .. } | Outcome::Failed { .. } => continue,
        };
        let Some((model_op, ret)) = M::translate(op, unknown, slack) else {
            continue;
        };
        operations += 1;
        let n = events.len();
        let mut invoke_at = (op.invoked_us, 0, n, 0);
        if let Some(&(answered, index)) = last_answer.get(&op.process) {
            if op.invoked_us <= answered {
                events[index].0 = (answered, 1, index, 0);
                invoke_at = (answered, 1, index, 1);
            }
        }
        if unknown {
            // A process of its own, after every real one: the calls of its
            // client that returned before it still precede it.
            in_flight += 1;
            in_flight_process -= 1;
            events.push((
                invoke_at,
                Event::Invoke(
                    in_flight_process,
                    Indexed {
                        index: operations - 1,
                        op: model_op,
                    },
                ),
            ));
        } else {
            let answered = op.completed_us.max(invoke_at.0);
            events.push((
                invoke_at,
                Event::Invoke(
                    op.process,
                    Indexed {
                        index: operations - 1,
                        op: model_op,
                    },
                ),
            ));
            last_answer.insert(op.process, (answered, n + 1));
            events.push((
                (answered, 2, n + 1, 0),
                Event::Return(op.process, Answer::Known(ret.expect("a definite answer"))),
            ));
        }
    }
    events.sort_by_key(|(at, _)| *at);
    let search = Rc::new(SearchState {
        seen: RefCell::new(HashSet::new()),
        steps: Cell::new(0),
        limit: options.step_budget,
        exhausted: Cell::new(false),
    });
    let spec = Spec {
        states: vec![M::initial()],
        placed: vec![0; operations.div_ceil(64)],
        search: search.clone(),
    };
    let mut tester = LinearizabilityTester::<u64, Spec<M>>::new(spec);
    for (_, event) in events {
        let recorded = match event {
            Event::Invoke(process, op) => tester.on_invoke(process, op).map(|_| ()),
            Event::Return(process, ret) => tester.on_return(process, ret).map(|_| ()),
        };
        if let Err(e) = recorded {
            // A process with two calls at once: the history is malformed,
            // which is the workload's fault; say so loudly.
            panic!("the history is not well formed: {e}");
        }
    }
    let found = tester.serialized_history().is_some();
    let outcome = if found {
        Search::Found
    } else if search.exhausted.get() {
        Search::Exhausted
    } else {
        Search::NotFound
    };
    SearchResult {
        outcome,
        operations,
        in_flight,
        steps: search.steps.get(),
    }
}

/// A sequential model whose steps may be nondeterministic.
trait Model: Clone + Ord + std::hash::Hash + Debug + Send + Sync + 'static {
    type Op: Clone + Debug + Send;
    type Ret: Clone + Debug + PartialEq + Send;
    /// The initial state.
    fn initial() -> Self;
    /// The model's view of a call: its operation and, when definite, its
    /// answer; `None` for calls the model ignores.
    fn translate(op: &Op, unknown: bool, slack: Micros) -> Option<(Self::Op, Option<Self::Ret>)>;
    /// Pushes onto `out` every state `op` may lead to with answer `ret`
    /// (`None`: any answer, for a call in flight).
    fn step(&self, op: &Self::Op, ret: Option<&Self::Ret>, out: &mut Vec<Self>);
}

/// A definite answer, or none (what `invoke` gives for a call in flight).
#[derive(Debug, Clone, PartialEq)]
enum Answer<R> {
    Known(R),
    InFlight,
}

/// A model operation with its place in the partition.
#[derive(Debug, Clone, PartialEq)]
struct Indexed<O> {
    index: usize,
    op: O,
}

/// What one search shares between the copies of its [`Spec`].
#[derive(Debug)]
struct SearchState<M> {
    /// Every configuration (calls placed, states) the search has reached.
    seen: RefCell<HashSet<(Vec<u64>, Vec<M>)>>,
    steps: Cell<u64>,
    limit: u64,
    exhausted: Cell<bool>,
}

/// The sequential object the tester checks against: the set of states our
/// model may be in, and which calls the search has placed to get there.
///
/// `stateright`'s search is a depth-first search without memory, which is
/// exponential for a history with no linearization (it tries every order
/// of the calls before the one that cannot be placed). Reaching a
/// configuration (the calls placed and the states) a second time means its
/// first visit found no way to finish, or the search would have stopped:
/// the step is refused, which prunes the search to the configurations, as
/// the checkers of Wing and Gong, Lowe, and porcupine do.
#[derive(Debug, Clone)]
struct Spec<M> {
    states: Vec<M>,
    placed: Vec<u64>,
    search: Rc<SearchState<M>>,
}

impl<M: Model> Spec<M> {
    fn advance(&mut self, op: &Indexed<M::Op>, ret: Option<&M::Ret>) -> bool {
        let steps = self.search.steps.get() + 1;
        self.search.steps.set(steps);
        if steps > self.search.limit {
            self.search.exhausted.set(true);
            return false;
        }
        let mut next = Vec::new();
        for state in &self.states {
            state.step(&op.op, ret, &mut next);
        }
        next.sort();
        next.dedup();
        if next.is_empty() {
            return false;
        }
        let mut placed = self.placed.clone();
        placed[op.index / 64] |= 1 << (op.index % 64);
        if !self
            .search
            .seen
            .borrow_mut()
            .insert((placed.clone(), next.clone()))
        {
            return false;
        }
        self.states = next;
        self.placed = placed;
        true
    }
}

impl<M: Model> SequentialSpec for Spec<M> {
    type Op = Indexed<M::Op>;
    type Ret = Answer<M::Ret>;

    fn invoke(&mut self, op: &Self::Op) -> Self::Ret {
        // A call in flight is placed with `invoke`, which cannot refuse:
        // a refused step leaves no state, so that nothing can follow it.
        if !self.advance(op, None) {
            self.states.clear();
        }
        Answer::InFlight
    }

    fn is_valid_step(&mut self, op: &Self::Op, ret: &Self::Ret) -> bool {
        match ret {
            Answer::Known(ret) => self.advance(op, Some(ret)),
            Answer::InFlight => self.advance(op, None),
        }
    }
}

/// A hash of a value, which is unique in a run.
fn value_id(value: &str) -> u64 {
    // FNV-1a: stable across runs, unlike the std hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in value.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

// ---------------------------------------------------------------- key-value

/// What the model knows of a key's revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Revision {
    /// Exactly this (0: absent).
    Known(u64),
    /// Above this, not yet observed (a write whose answer was lost).
    Above(u64),
}

/// One key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct KvState {
    value: Option<u64>,
    revision: Revision,
    /// Every later write's revision is above this.
    floor: u64,
}

#[derive(Debug, Clone, PartialEq)]
enum KvOp {
    Read,
    Put(u64),
    Cas { expected: u64, value: u64 },
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
enum KvRet {
    Value { value: u64, revision: u64 },
    NotFound,
    Written(u64),
    Mismatch(u64),
    Deleted,
}

impl KvState {
    /// Whether the revision can be `r`, and the state with it pinned.
    fn pin(&self, r: u64) -> Option<KvState> {
        match self.revision {
            Revision::Known(k) => (k == r).then(|| self.clone()),
            Revision::Above(a) => (r > a).then(|| KvState {
                value: self.value,
                revision: Revision::Known(r),
                floor: self.floor.max(r),
            }),
        }
    }

    /// Whether the revision can be other than `e`, and the state then.
    fn differs(&self, e: u64) -> bool {
        match self.revision {
            Revision::Known(k) => k != e,
            Revision::Above(_) => true,
        }
    }

    fn written(&self, value: u64, revision: Option<u64>, lower: u64) -> Option<KvState> {
        let floor = self.floor.max(lower);
        match revision {
            Some(r) if r > floor => Some(KvState {
                value: Some(value),
                revision: Revision::Known(r),
                floor: r,
            }),
            Some(_) => None,
            None => Some(KvState {
                value: Some(value),
                revision: Revision::Above(floor),
                floor,
            }),
        }
    }
}

impl Model for KvState {
    type Op = KvOp;
    type Ret = KvRet;

    fn initial() -> Self {
        KvState {
            value: None,
            revision: Revision::Known(0),
            floor: 0,
        }
    }

    fn translate(op: &Op, unknown: bool, _slack: Micros) -> Option<(KvOp, Option<KvRet>)> {
        let kv_op = match &op.call {
            Call::KvRead { .. } => {
                if unknown {
                    // A read that may or may not have happened changes
                    // nothing and says nothing.
                    return None;
                }
                KvOp::Read
            }
            Call::KvPut { value, .. } => KvOp::Put(value_id(value)),
            Call::KvCas {
                expected, value, ..
            } => KvOp::Cas {
                expected: *expected,
                value: value_id(value),
            },
            Call::KvDelete { .. } => KvOp::Delete,
            _ => return None,
        };
        if unknown {
            return Some((kv_op, None));
        }
        let ret = match op.outcome.reply()? {
            Reply::Value { value, revision } => KvRet::Value {
                value: value_id(value),
                revision: *revision,
            },
            Reply::NotFound => KvRet::NotFound,
            Reply::Written { revision } => KvRet::Written(*revision),
            Reply::Mismatch { current } => KvRet::Mismatch(*current),
            Reply::Deleted => KvRet::Deleted,
            _ => return None,
        };
        Some((kv_op, Some(ret)))
    }

    fn step(&self, op: &KvOp, ret: Option<&KvRet>, out: &mut Vec<Self>) {
        match (op, ret) {
            (KvOp::Read, Some(KvRet::Value { value, revision })) if self.value == Some(*value) => {
                out.extend(self.pin(*revision));
            }
            (KvOp::Read, Some(KvRet::NotFound)) if self.value.is_none() => {
                out.push(self.clone());
            }
            (KvOp::Read, None) => out.push(self.clone()),
            (KvOp::Put(v), Some(KvRet::Written(r))) => out.extend(self.written(*v, Some(*r), 0)),
            (KvOp::Put(v), None) => out.extend(self.written(*v, None, 0)),
            (KvOp::Cas { expected, value }, ret) => {
                let success = match ret {
                    Some(KvRet::Written(r)) => Some(Some(*r)),
                    None => Some(None),
                    _ => None,
                };
                if let Some(revision) = success {
                    // The current revision must be `expected`.
                    if let Some(pinned) = self.pin(*expected) {
                        out.extend(pinned.written(*value, revision, *expected));
                    }
                }
                match ret {
                    Some(KvRet::Mismatch(current)) if current != expected => {
                        out.extend(self.pin(*current));
                    }
                    None if self.differs(*expected) => out.push(self.clone()),
                    _ => {}
                }
            }
            (KvOp::Delete, ret) => {
                let deleted = KvState {
                    value: None,
                    revision: Revision::Known(0),
                    floor: self.floor,
                };
                match ret {
                    Some(KvRet::Deleted) if self.value.is_some() => out.push(deleted),
                    Some(KvRet::NotFound) if self.value.is_none() => out.push(self.clone()),
                    None if self.value.is_some() => out.push(deleted),
                    None => out.push(self.clone()),
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

// -------------------------------------------------------------------- locks

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Holder {
    owner: u64,
    /// `None` for a grant whose answer was lost.
    token: Option<u64>,
    /// The lease cannot end before this (client clock, slack subtracted).
    sure_until: Micros,
}

/// One lock.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct LockState {
    holder: Option<Holder>,
    /// The highest token granted.
    max_token: u64,
    /// The earliest time the next state-changing entry can be applied:
    /// entries are applied in the order the search places them.
    now: Micros,
}

#[derive(Debug, Clone, PartialEq)]
struct LockOp {
    kind: LockKind,
    owner: u64,
    invoked: Micros,
    /// `Micros::MAX` for a call in flight.
    completed: Micros,
}

#[derive(Debug, Clone, PartialEq)]
enum LockKind {
    Acquire { ttl: Micros },
    Renew { token: u64, ttl: Micros },
    Release { token: u64 },
}

#[derive(Debug, Clone, PartialEq)]
enum LockRet {
    Granted(u64),
    Held,
    Lost,
    Released,
}

impl LockState {
    /// The lock as `op` can find it free: with the holder's lease lapsed
    /// if there is one, which must be possible by the time `op` answered.
    fn freed(&self, op: &LockOp) -> Option<LockState> {
        let now = self.now.max(op.invoked);
        match &self.holder {
            None => Some(LockState {
                now,
                ..self.clone()
            }),
            Some(h) => {
                let now = now.max(h.sure_until);
                (now <= op.completed).then_some(LockState {
                    holder: None,
                    max_token: self.max_token,
                    now,
                })
            }
        }
    }

    fn holds(&self, owner: u64, token: u64) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|h| h.owner == owner && h.token == Some(token))
    }

    /// A `lock-lost` answer: another holds it, or the lease lapsed.
    fn lost(&self, op: &LockOp, token: u64, out: &mut Vec<LockState>) {
        if self.holds(op.owner, token) {
            out.extend(self.freed(op));
        } else {
            out.push(self.clone());
        }
    }
}

impl Model for LockState {
    type Op = LockOp;
    type Ret = LockRet;

    fn initial() -> Self {
        LockState {
            holder: None,
            max_token: 0,
            now: 0,
        }
    }

    fn translate(op: &Op, unknown: bool, slack: Micros) -> Option<(LockOp, Option<LockRet>)> {
        let ttl = |ms: u64| (ms * 1000).saturating_sub(slack);
        let (kind, owner) = match &op.call {
            Call::LockAcquire { owner, ttl_ms, .. } => {
                (LockKind::Acquire { ttl: ttl(*ttl_ms) }, owner)
            }
            Call::LockRenew {
                owner,
                token,
                ttl_ms,
                ..
            } => (
                LockKind::Renew {
                    token: *token,
                    ttl: ttl(*ttl_ms),
                },
                owner,
            ),
            Call::LockRelease { owner, token, .. } => (LockKind::Release { token: *token }, owner),
            _ => return None,
        };
        let lock_op = LockOp {
            kind,
            owner: value_id(owner),
            invoked: op.invoked_us,
            completed: if unknown {
                Micros::MAX
            } else {
                op.completed_us.max(op.invoked_us)
            },
        };
        if unknown {
            return Some((lock_op, None));
        }
        let ret = match op.outcome.reply()? {
            Reply::Granted { token, .. } => LockRet::Granted(*token),
            Reply::Held => LockRet::Held,
            Reply::Lost => LockRet::Lost,
            Reply::Released => LockRet::Released,
            _ => return None,
        };
        Some((lock_op, Some(ret)))
    }

    fn step(&self, op: &LockOp, ret: Option<&LockRet>, out: &mut Vec<Self>) {
        match (&op.kind, ret) {
            (LockKind::Acquire { ttl }, Some(LockRet::Granted(token)))
                if *token > self.max_token =>
            {
                if let Some(free) = self.freed(op) {
                    out.push(LockState {
                        holder: Some(Holder {
                            owner: op.owner,
                            token: Some(*token),
                            sure_until: free.now.saturating_add(*ttl),
                        }),
                        max_token: *token,
                        now: free.now,
                    });
                }
            }
            (LockKind::Acquire { .. }, Some(LockRet::Held)) => out.push(self.clone()),
            (LockKind::Acquire { ttl }, None) => {
                // Refused, or granted with a token we never saw: the lease
                // then runs from when the entry was applied.
                out.push(self.clone());
                if let Some(free) = self.freed(op) {
                    out.push(LockState {
                        holder: Some(Holder {
                            owner: op.owner,
                            token: None,
                            sure_until: free.now.saturating_add(*ttl),
                        }),
                        max_token: self.max_token,
                        now: free.now,
                    });
                }
            }
            (LockKind::Renew { token, ttl }, ret) => {
                let renewed = match ret {
                    Some(LockRet::Granted(t)) => t == token,
                    None => true,
                    _ => false,
                };
                if renewed && self.holds(op.owner, *token) {
                    let now = self.now.max(op.invoked);
                    let mut next = self.clone();
                    next.now = now;
                    if let Some(h) = &mut next.holder {
                        // A renewal sets the lease anew, from its own entry.
                        h.sure_until = now.saturating_add(*ttl);
                    }
                    out.push(next);
                }
                if matches!(ret, Some(LockRet::Lost) | None) {
                    self.lost(op, *token, out);
                }
            }
            (LockKind::Release { token }, ret) => {
                if matches!(ret, Some(LockRet::Released) | None) && self.holds(op.owner, *token) {
                    out.push(LockState {
                        holder: None,
                        max_token: self.max_token,
                        now: self.now.max(op.invoked),
                    });
                }
                if matches!(ret, Some(LockRet::Lost) | None) {
                    self.lost(op, *token, out);
                }
            }
            _ => {}
        }
    }
}
