//! The recorded history of a workload run: every HTTP call a client made,
//! with when it was invoked and answered and what came back, the logical
//! idempotent commands built on those calls, and what the fence-checking
//! resource accepted.
//!
//! Times are microseconds on one monotonic clock that every client and the
//! resource share, counted from the start of the run. A history is plain
//! data: it serializes to JSON, so a failing run can dump it to a file and
//! the checker can be run on it again.
//!
//! ```
//! use catga_cluster_tests::history::{Call, History, Op, Outcome, Reply};
//!
//! let mut history = History::default();
//! history.ops.push(Op {
//!     process: 1,
//!     client: 0,
//!     node: 0,
//!     invoked_us: 10,
//!     completed_us: 20,
//!     call: Call::KvRead { key: "k".into() },
//!     outcome: Outcome::Ok(Reply::NotFound),
//! });
//! let json = serde_json::to_string(&history).unwrap();
//! let back: History = serde_json::from_str(&json).unwrap();
//! assert_eq!(back, history);
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Microseconds since the start of the run, on the workload's clock.
pub type Micros = u64;

/// Everything a workload run recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The seed the workload's clients drew their choices from.
    pub seed: u64,
    /// The prefix of the run's keys, locks and idempotency keys.
    pub run: String,
    /// The nodes' base URLs, indexed by [`Op::node`].
    pub endpoints: Vec<String>,
    /// How long the run lasted.
    pub duration_us: Micros,
    /// Every HTTP call, in order of invocation.
    pub ops: Vec<Op>,
    /// The idempotent counter increments (each one or more calls in
    /// [`ops`](Self::ops)).
    pub increments: Vec<Increment>,
    /// The idempotent order creations (each one or more
    /// [`Call::OrderCreate`] calls in [`ops`](Self::ops)).
    pub orders: Vec<OrderCommand>,
    /// What the fence-checking resource was asked to accept.
    pub fences: Vec<FenceRecord>,
}

/// One HTTP call of one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The sequential process that made the call: a client takes a new
    /// process after an unknown outcome, so a process has at most one call
    /// whose outcome is unknown, and it is its last.
    pub process: u64,
    /// The client (a task of the workload) that made the call.
    pub client: u32,
    /// The index of the node it was sent to, in [`History::endpoints`].
    pub node: usize,
    /// Just before the request was sent.
    pub invoked_us: Micros,
    /// Just after the answer was read, or when the client gave up.
    pub completed_us: Micros,
    /// What was asked.
    pub call: Call,
    /// What came back.
    pub outcome: Outcome,
}

impl Op {
    /// The key-value key or lock name the call is about, if any.
    pub fn object(&self) -> Option<&str> {
        match &self.call {
            Call::KvRead { key }
            | Call::KvPut { key, .. }
            | Call::KvCas { key, .. }
            | Call::KvDelete { key } => Some(key),
            Call::LockAcquire { lock, .. }
            | Call::LockRenew { lock, .. }
            | Call::LockRelease { lock, .. } => Some(lock),
            Call::OrderCreate { .. } => None,
        }
    }
}

/// What a call asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// `GET /cluster/kv/{key}`: a linearizable read.
    KvRead {
        /// The key.
        key: String,
    },
    /// `PUT /cluster/kv/{key}` without `If-Match`.
    KvPut {
        /// The key.
        key: String,
        /// The value written (unique in the run).
        value: String,
    },
    /// `PUT /cluster/kv/{key}` with `If-Match: <expected>` (0: only if
    /// absent).
    KvCas {
        /// The key.
        key: String,
        /// The revision the key must be at.
        expected: u64,
        /// The value written (unique in the run).
        value: String,
    },
    /// `DELETE /cluster/kv/{key}`.
    KvDelete {
        /// The key.
        key: String,
    },
    /// `POST /cluster/locks/{lock}/acquire`.
    LockAcquire {
        /// The lock.
        lock: String,
        /// The owner asking (unique per process).
        owner: String,
        /// The lease asked for.
        ttl_ms: u64,
        /// How long to wait in line.
        wait_ms: u64,
    },
    /// `POST /cluster/locks/{lock}/renew`.
    LockRenew {
        /// The lock.
        lock: String,
        /// The holder.
        owner: String,
        /// Its fencing token.
        token: u64,
        /// The new lease.
        ttl_ms: u64,
    },
    /// `POST /cluster/locks/{lock}/release`.
    LockRelease {
        /// The lock.
        lock: String,
        /// The holder.
        owner: String,
        /// Its fencing token.
        token: u64,
    },
    /// `POST /orders` with `Idempotency-Key`: forwarded to the leader.
    OrderCreate {
        /// The idempotency key.
        idempotency_key: String,
    },
}

impl Call {
    /// Whether the call asks for a change (everything but a read).
    pub fn is_write(&self) -> bool {
        !matches!(self, Call::KvRead { .. })
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// A definite answer.
    Ok(Reply),
    /// Definitely not applied: never sent (the connection was refused), or
    /// refused by validation (`400`, `401`, `403`, `413`, `415`).
    Failed {
        /// The status, when an answer came.
        status: Option<u16>,
        /// Why.
        reason: String,
    },
    /// The node said the call was not applied (`503 not-leader`,
    /// `no-leader`, `shutting-down`, `504 timeout`). The checker trusts
    /// this first, and if that finds a violation it checks again with these
    /// calls as unknown, to tell a false refusal from another violation.
    Refused {
        /// The status.
        status: u16,
        /// The problem's `type`.
        slug: String,
    },
    /// May or may not have taken effect: the deadline passed, the
    /// connection broke after the request was sent, or an error that does
    /// not say (`502`, `504 unknown-outcome`, `500`).
    Unknown {
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// The reply, for a definite answer.
    pub fn reply(&self) -> Option<&Reply> {
        match self {
            Outcome::Ok(reply) => Some(reply),
            _ => None,
        }
    }

    /// Whether the call may have taken effect without a definite answer.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Outcome::Unknown { .. })
    }
}

/// A definite answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// A read found the key.
    Value {
        /// Its value.
        value: String,
        /// Its revision.
        revision: u64,
    },
    /// A read or delete found no key (`404`).
    NotFound,
    /// A write succeeded.
    Written {
        /// The key's new revision.
        revision: u64,
    },
    /// A compare-and-set failed (`412 revision-mismatch`).
    Mismatch {
        /// The key's revision (0: absent).
        current: u64,
    },
    /// A delete succeeded.
    Deleted,
    /// An acquire or renew was granted.
    Granted {
        /// The fencing token.
        token: u64,
        /// The lease.
        ttl_ms: u64,
    },
    /// An acquire was not granted within its wait (`409 lock-held`).
    Held,
    /// A renew or release found the token no longer holding the lock
    /// (`409 lock-lost`).
    Lost,
    /// A release succeeded.
    Released,
    /// An order was created (`201`) or already existed (`200`).
    Order {
        /// Whether this call created it (`201`).
        created: bool,
        /// The order.
        order: OrderSnapshot,
    },
}

/// The parts of an order that must never change once it exists: a second
/// application of its creation would change them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSnapshot {
    /// The order's id.
    pub id: String,
    /// When the leader accepted it.
    pub created_at_ms: u64,
    /// The node that accepted it.
    pub accepted_by: u64,
    /// The customer.
    pub customer: String,
}

/// What became of an idempotent command after its retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Acknowledged: it took effect (once).
    Acknowledged,
    /// Never acknowledged, and one of its attempts may have taken effect.
    Unknown,
    /// Never acknowledged, and no attempt can have taken effect.
    NotApplied,
}

/// One idempotent increment of a counter key: a request id added to the
/// counter's set by read-modify-write with `If-Match`, retried with the
/// same id until a read shows it applied or a write is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Increment {
    /// The client.
    pub client: u32,
    /// The counter's key.
    pub counter: String,
    /// The request id.
    pub request_id: String,
    /// When the first attempt started.
    pub invoked_us: Micros,
    /// When the client stopped.
    pub completed_us: Micros,
    /// How many compare-and-set writes were sent.
    pub writes: u32,
    /// What became of it.
    pub resolution: Resolution,
}

/// One idempotent order creation: `POST /orders` with one
/// `Idempotency-Key`, retried with the same key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCommand {
    /// The client.
    pub client: u32,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The order's id (`idem-{key}`).
    pub order_id: String,
    /// How many calls were made (retries and deliberate repeats).
    pub attempts: u32,
    /// The first acknowledged answer.
    pub acknowledged: Option<OrderSnapshot>,
    /// What became of it.
    pub resolution: Resolution,
}

/// One use of the fence-checking resource by a lock holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    /// The lock whose token fenced the use.
    pub lock: String,
    /// The client.
    pub client: u32,
    /// The lock's owner.
    pub owner: String,
    /// The fencing token presented.
    pub token: u64,
    /// When the resource was asked.
    pub at_us: Micros,
    /// Until when the holder believed its lease valid (measured from before
    /// it asked for the lock or its renewal), cut short when it released.
    pub valid_until_us: Micros,
    /// Whether the resource accepted (a token lower than the highest it
    /// accepted for the lock is refused).
    pub accepted: bool,
}

/// What every node answered, after the run and healing, for every key and
/// order the run touched: linearizable reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalReads {
    /// Key-value reads.
    pub kv: Vec<FinalRead>,
    /// Order reads.
    pub orders: Vec<FinalOrder>,
}

/// One node's final answer for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    /// The node's index.
    pub node: usize,
    /// The key.
    pub key: String,
    /// [`Reply::Value`] or [`Reply::NotFound`]; `None` when the node gave
    /// no definite answer.
    pub reply: Option<Reply>,
    /// Why there is no answer.
    pub error: Option<String>,
}

/// One node's final answer for one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalOrder {
    /// The node's index.
    pub node: usize,
    /// The idempotency key.
    pub idempotency_key: String,
    /// The order, `None` when it does not exist.
    pub order: Option<OrderSnapshot>,
    /// Why there is no definite answer.
    pub error: Option<String>,
}

/// Counts of a history's calls, by kind and outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Calls by kind, then outcome (`ok`, `failed`, `refused`, `unknown`).
    pub calls: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Increments by resolution.
    pub increments: BTreeMap<&'static str, u64>,
    /// Orders by resolution.
    pub orders: BTreeMap<&'static str, u64>,
    /// Fenced uses accepted and refused.
    pub fences_accepted: u64,
    /// Fenced uses refused.
    pub fences_refused: u64,
    /// Locks granted (acquire answered with a token).
    pub grants: u64,
}

fn resolution_name(r: Resolution) -> &'static str {
    match r {
        Resolution::Acknowledged => "acknowledged",
        Resolution::Unknown => "unknown",
        Resolution::NotApplied => "not_applied",
    }
}

impl History {
    /// Counts of calls by kind and outcome.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        for op in &self.ops {
            let kind = match &op.call {
                Call::KvRead { .. } => "kv_read",
                Call::KvPut { .. } => "kv_put",
                Call::KvCas { .. } => "kv_cas",
                Call::KvDelete { .. } => "kv_delete",
                Call::LockAcquire { .. } => "lock_acquire",
                Call::LockRenew { .. } => "lock_renew",
                Call::LockRelease { .. } => "lock_release",
                Call::OrderCreate { .. } => "order_create",
            };
            let outcome = match &op.outcome {
                Outcome::Ok(_) => "ok",
                Outcome::Failed { .. } => "failed",
                Outcome::Refused { .. } => "refused",
                Outcome::Unknown { .. } => "unknown",
            };
            *stats
                .calls
                .entry(kind.to_owned())
                .or_default()
                .entry(outcome)
                .or_default() += 1;
            if matches!(
                (&op.call, &op.outcome),
                (Call::LockAcquire { .. }, Outcome::Ok(Reply::Granted { .. }))
            ) {
                stats.grants += 1;
            }
        }
        for inc in &self.increments {
            *stats
                .increments
                .entry(resolution_name(inc.resolution))
                .or_default() += 1;
        }
        for order in &self.orders {
            *stats
                .orders
                .entry(resolution_name(order.resolution))
                .or_default() += 1;
        }
        stats.fences_accepted = self.fences.iter().filter(|f| f.accepted).count() as u64;
        stats.fences_refused = self.fences.len() as u64 - stats.fences_accepted;
        stats
    }

    /// Writes the history as JSON to `path` (for a failing run).
    pub fn dump(&self, path: &Path) -> std::io::Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, json)
    }

    /// Reads a history written by [`dump`](Self::dump).
    pub fn load(path: &Path) -> std::io::Result<History> {
        let bytes = std::fs::read(path)?;
        serde_json::from_slice(&bytes).map_err(std::io::Error::other)
    }

    /// The keys of the counters the increments used.
    pub fn counter_keys(&self) -> impl Iterator<Item = &str> {
        let mut keys: Vec<&str> = self.increments.iter().map(|i| i.counter.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter()
    }

    /// Every key-value key a call touched, sorted.
    pub fn kv_keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .ops
            .iter()
            .filter(|op| {
                matches!(
                    op.call,
                    Call::KvRead { .. }
                        | Call::KvPut { .. }
                        | Call::KvCas { .. }
                        | Call::KvDelete { .. }
                )
            })
            .filter_map(Op::object)
            .collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

/// The value of a counter key: how many increments it counts and the
/// request ids of those increments, in the order they were applied. An
/// increment adds its id (if absent) and one to the count in one
/// compare-and-set, so an increment applied twice shows as an id twice or
/// a count off from the ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterValue {
    /// The count.
    pub count: u64,
    /// The request ids applied.
    pub ids: Vec<String>,
}
