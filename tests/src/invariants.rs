//! The rules every history must keep, beyond linearizability:
//!
//! - **Exclusive holders** ([`Rule::OverlappingHolders`]): the
//!   fence-checking resource never accepted two holders (two tokens of one
//!   lock) whose believed leases overlap. A holder believes its lease valid
//!   from when it learned of the grant until `ttl` after it *asked* (or
//!   renewed), and no longer than until it released; the product promises
//!   that belief never outlasts the lease the cluster keeps.
//! - **Increasing tokens** ([`Rule::TokenOrder`]): per lock, a grant
//!   acknowledged before another was asked for has a smaller token; no two
//!   grants share a token; a renewal keeps the token; the resource accepted
//!   tokens in order.
//! - **Acknowledged writes survive** ([`Rule::AcknowledgedWriteMissing`],
//!   [`Rule::NodesDisagree`], [`Rule::PhantomWrite`],
//!   [`Rule::FinalReadFailed`]): after the run and healing, every node
//!   answers every key alike, at a revision no older than the newest
//!   acknowledged write (unless a delete may have followed), with a value
//!   that some call wrote; every acknowledged increment is in its counter
//!   and every acknowledged order exists, on every node.
//! - **Idempotent commands apply once** ([`Rule::DoubleApplied`]): a
//!   counter holds each request id at most once and counts exactly its
//!   ids; an increment that was never sent is not there; an order created
//!   with one `Idempotency-Key` is created once (one `201`), and never
//!   changes afterwards (a second application would write a new
//!   `created_at_ms`).
//!
//! ```
//! use catga_cluster_tests::history::{FenceRecord, History};
//! use catga_cluster_tests::invariants::{check_all, Rule};
//!
//! let fence = |token, at_us, valid_until_us| FenceRecord {
//!     lock: "l".into(), client: 0, owner: format!("o{token}"), token,
//!     at_us, valid_until_us, accepted: true,
//! };
//! let mut history = History::default();
//! history.fences = vec![fence(3, 0, 100_000), fence(7, 50_000, 150_000)];
//! let violations = check_all(&history, None);
//! assert_eq!(violations[0].rule, Rule::OverlappingHolders);
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Serialize;

use crate::history::{
    Call, CounterValue, FinalReads, History, Micros, Op, OrderSnapshot, Outcome, Reply, Resolution,
};

/// Which rule a [`Violation`] breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Two holders of one lock accepted by the resource with overlapping
    /// leases.
    OverlappingHolders,
    /// Fencing tokens not strictly increasing.
    TokenOrder,
    /// An acknowledged write, increment or order missing after the run.
    AcknowledgedWriteMissing,
    /// Nodes answering one key or order differently after the run.
    NodesDisagree,
    /// A value, increment or order that no call can have written.
    PhantomWrite,
    /// An idempotent command applied more than once.
    DoubleApplied,
    /// A node gave no definite final answer, so the rules above could not
    /// be checked there.
    FinalReadFailed,
}

/// A broken rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// Which.
    pub rule: Rule,
    /// What was seen.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.rule, self.detail)
    }
}

fn violation(rule: Rule, detail: String) -> Violation {
    Violation { rule, detail }
}

/// The allowed error between a holder's clock and the leader's
/// (milliseconds on the leader).
pub const LEASE_SLACK: Duration = Duration::from_millis(5);

/// Checks every rule; the rules about the state after the run need
/// `final_reads`.
pub fn check_all(history: &History, final_reads: Option<&FinalReads>) -> Vec<Violation> {
    let mut out = Vec::new();
    out.extend(exclusive_holders(history, LEASE_SLACK));
    out.extend(increasing_tokens(history));
    out.extend(orders_created_once(history));
    if let Some(final_reads) = final_reads {
        out.extend(acknowledged_writes(history, final_reads));
        out.extend(counters(history, final_reads));
        out.extend(orders_after_run(history, final_reads));
    }
    out
}

/// No two tokens of one lock accepted by the resource with overlapping
/// believed leases (`slack` allowed for the leader's clock resolution).
pub fn exclusive_holders(history: &History, slack: Duration) -> Vec<Violation> {
    let slack = u64::try_from(slack.as_micros()).unwrap_or(u64::MAX);
    let mut by_lock: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for f in history.fences.iter().filter(|f| f.accepted) {
        by_lock.entry(f.lock.as_str()).or_default().push(f);
    }
    let mut out = Vec::new();
    for (lock, mut records) in by_lock {
        records.sort_by_key(|f| (f.at_us, f.token));
        for (i, a) in records.iter().enumerate() {
            for b in &records[i + 1..] {
                if b.at_us.saturating_add(slack) >= a.valid_until_us {
                    break;
                }
                if a.token != b.token && a.at_us < b.valid_until_us {
                    out.push(violation(
                        Rule::OverlappingHolders,
                        format!(
                            "lock `{lock}`: token {} ({}) was accepted at {} µs, valid until {} µs, \
                             and token {} ({}) at {} µs, valid until {} µs",
                            a.token,
                            a.owner,
                            a.at_us,
                            a.valid_until_us,
                            b.token,
                            b.owner,
                            b.at_us,
                            b.valid_until_us
                        ),
                    ));
                    break;
                }
            }
        }
    }
    out
}

/// Tokens per lock strictly increase in real time, are never granted
/// twice, survive renewal, and the resource accepted them in order.
pub fn increasing_tokens(history: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut grants: BTreeMap<&str, Vec<(&Op, u64)>> = BTreeMap::new();
    for op in &history.ops {
        match (&op.call, &op.outcome) {
            (Call::LockAcquire { lock, .. }, Outcome::Ok(Reply::Granted { token, .. })) => {
                grants.entry(lock).or_default().push((op, *token));
            }
            (
                Call::LockRenew { lock, token, .. },
                Outcome::Ok(Reply::Granted { token: renewed, .. }),
            ) if renewed != token => out.push(violation(
                Rule::TokenOrder,
                format!("lock `{lock}`: renewing token {token} answered token {renewed}"),
            )),
            _ => {}
        }
    }
    for (lock, grants) in &grants {
        let mut seen: BTreeMap<u64, &Op> = BTreeMap::new();
        for (op, token) in grants {
            if let Some(first) = seen.insert(*token, op) {
                out.push(violation(
                    Rule::TokenOrder,
                    format!(
                        "lock `{lock}`: token {token} granted twice, to {} and to {}",
                        owner(first),
                        owner(op)
                    ),
                ));
            }
        }
        // Sweep: grants by invocation against the grants answered before.
        let mut answered: Vec<(Micros, u64, &Op)> = grants
            .iter()
            .map(|(op, t)| (op.completed_us, *t, *op))
            .collect();
        answered.sort_by_key(|(at, _, _)| *at);
        let mut asked: Vec<(&Op, u64)> = grants.clone();
        asked.sort_by_key(|(op, _)| op.invoked_us);
        let mut best: Option<(u64, &Op)> = None;
        let mut next = 0;
        for (op, token) in asked {
            while next < answered.len() && answered[next].0 < op.invoked_us {
                let (_, t, o) = answered[next];
                if best.is_none_or(|(b, _)| t > b) {
                    best = Some((t, o));
                }
                next += 1;
            }
            if let Some((earlier, earlier_op)) = best {
                if earlier >= token {
                    out.push(violation(
                        Rule::TokenOrder,
                        format!(
                            "lock `{lock}`: token {earlier} granted to {} (answered at {} µs) \
                             before {} asked (at {} µs) and got token {token}",
                            owner(earlier_op),
                            earlier_op.completed_us,
                            owner(op),
                            op.invoked_us
                        ),
                    ));
                }
            }
        }
    }
    let mut accepted: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for f in history.fences.iter().filter(|f| f.accepted) {
        accepted.entry(f.lock.as_str()).or_default().push(f);
    }
    for (lock, mut records) in accepted {
        records.sort_by_key(|f| f.at_us);
        for w in records.windows(2) {
            if w[1].token < w[0].token {
                out.push(violation(
                    Rule::TokenOrder,
                    format!(
                        "lock `{lock}`: the resource accepted token {} at {} µs after token {} \
                         at {} µs",
                        w[1].token, w[1].at_us, w[0].token, w[0].at_us
                    ),
                ));
            }
        }
    }
    out
}

fn owner(op: &Op) -> &str {
    match &op.call {
        Call::LockAcquire { owner, .. }
        | Call::LockRenew { owner, .. }
        | Call::LockRelease { owner, .. } => owner,
        _ => "?",
    }
}

/// Groups the final answers by object: per object, each node's answer or
/// error. Reports unanswered nodes and disagreement.
fn agreed<'a, T: PartialEq + std::fmt::Debug>(
    what: &str,
    answers: impl Iterator<Item = (&'a str, usize, Result<T, &'a str>)>,
    out: &mut Vec<Violation>,
) -> BTreeMap<&'a str, T> {
    type NodeAnswers<'b, T> = Vec<(usize, Result<T, &'b str>)>;
    let mut by_object: BTreeMap<&str, NodeAnswers<T>> = BTreeMap::new();
    for (object, node, answer) in answers {
        by_object.entry(object).or_default().push((node, answer));
    }
    let mut agreed = BTreeMap::new();
    for (object, answers) in by_object {
        let mut first: Option<(usize, T)> = None;
        let mut disagree = false;
        for (node, answer) in answers {
            match answer {
                Err(e) => out.push(violation(
                    Rule::FinalReadFailed,
                    format!("{what} `{object}` on node {node}: {e}"),
                )),
                Ok(answer) => match &first {
                    None => first = Some((node, answer)),
                    Some((n, a)) => {
                        if *a != answer && !disagree {
                            disagree = true;
                            out.push(violation(
                                Rule::NodesDisagree,
                                format!(
                                    "{what} `{object}`: node {n} answers {a:?}, node {node} \
                                     answers {answer:?}"
                                ),
                            ));
                        }
                    }
                },
            }
        }
        if let Some((_, answer)) = first {
            agreed.insert(object, answer);
        }
    }
    agreed
}

/// Every node answers every key alike, no older than the newest
/// acknowledged write, with a value some call wrote.
pub fn acknowledged_writes(history: &History, final_reads: &FinalReads) -> Vec<Violation> {
    let mut out = Vec::new();
    let finals = agreed(
        "key",
        final_reads.kv.iter().map(|r| {
            let answer = match (&r.reply, &r.error) {
                (Some(reply), _) => Ok(reply.clone()),
                (None, e) => Err(e.as_deref().unwrap_or("no answer")),
            };
            (r.key.as_str(), r.node, answer)
        }),
        &mut out,
    );
    struct KeyFacts<'a> {
        newest_ack: Option<(u64, &'a str)>,
        may_delete: bool,
        written: BTreeSet<&'a str>,
    }
    let mut facts: BTreeMap<&str, KeyFacts> = BTreeMap::new();
    for op in &history.ops {
        let (key, value) = match &op.call {
            Call::KvPut { key, value } | Call::KvCas { key, value, .. } => (key, Some(value)),
            Call::KvDelete { key } => (key, None),
            _ => continue,
        };
        let f = facts.entry(key).or_insert(KeyFacts {
            newest_ack: None,
            may_delete: false,
            written: BTreeSet::new(),
        });
        let may_apply = !matches!(op.outcome, Outcome::Failed { .. });
        match value {
            Some(value) => {
                if may_apply {
                    f.written.insert(value);
                }
                if let Outcome::Ok(Reply::Written { revision }) = op.outcome {
                    if f.newest_ack.is_none_or(|(r, _)| revision > r) {
                        f.newest_ack = Some((revision, value));
                    }
                }
            }
            None => {
                f.may_delete |= matches!(
                    op.outcome,
                    Outcome::Ok(Reply::Deleted) | Outcome::Unknown { .. } | Outcome::Refused { .. }
                );
            }
        }
    }
    for (key, answer) in finals {
        let f = facts.get(key);
        match answer {
            Reply::Value { value, revision } => {
                if let Some((acked, acked_value)) = f.and_then(|f| f.newest_ack) {
                    if revision < acked {
                        out.push(violation(
                            Rule::AcknowledgedWriteMissing,
                            format!(
                                "key `{key}` is at revision {revision} after the run, but the \
                                 write of `{acked_value}` was acknowledged at revision {acked}"
                            ),
                        ));
                    }
                }
                if !f.is_some_and(|f| f.written.contains(value.as_str())) {
                    out.push(violation(
                        Rule::PhantomWrite,
                        format!("key `{key}` holds `{value}`, which no call wrote"),
                    ));
                }
            }
            Reply::NotFound => {
                if let Some(f) = f {
                    if let (Some((acked, value)), false) = (f.newest_ack, f.may_delete) {
                        out.push(violation(
                            Rule::AcknowledgedWriteMissing,
                            format!(
                                "key `{key}` is absent after the run, but the write of `{value}` \
                                 was acknowledged at revision {acked} and no delete can have \
                                 followed"
                            ),
                        ));
                    }
                }
            }
            other => out.push(violation(
                Rule::FinalReadFailed,
                format!("key `{key}`: a read answered {other:?}"),
            )),
        }
    }
    out
}

/// Every counter holds each acknowledged increment once, counts exactly
/// its ids, and holds no increment that cannot have been applied.
pub fn counters(history: &History, final_reads: &FinalReads) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut increments: BTreeMap<&str, BTreeMap<&str, Resolution>> = BTreeMap::new();
    for inc in &history.increments {
        increments
            .entry(&inc.counter)
            .or_default()
            .insert(&inc.request_id, inc.resolution);
    }
    let mut finals: BTreeMap<&str, Option<&Reply>> = BTreeMap::new();
    for read in &final_reads.kv {
        if increments.contains_key(read.key.as_str()) {
            // Disagreement and failures are reported by
            // `acknowledged_writes`; take the first definite answer.
            let entry = finals.entry(&read.key).or_insert(None);
            if entry.is_none() {
                *entry = read.reply.as_ref();
            }
        }
    }
    for (counter, incs) in &increments {
        let Some(Some(reply)) = finals.get(counter) else {
            out.push(violation(
                Rule::FinalReadFailed,
                format!("counter `{counter}` was not read after the run"),
            ));
            continue;
        };
        let value = match reply {
            Reply::Value { value, .. } => match serde_json::from_str::<CounterValue>(value) {
                Ok(v) => v,
                Err(e) => {
                    out.push(violation(
                        Rule::PhantomWrite,
                        format!("counter `{counter}` holds `{value}`, not a counter: {e}"),
                    ));
                    continue;
                }
            },
            _ => CounterValue::default(),
        };
        let mut seen = BTreeSet::new();
        for id in &value.ids {
            if !seen.insert(id.as_str()) {
                out.push(violation(
                    Rule::DoubleApplied,
                    format!("counter `{counter}`: increment `{id}` was applied twice"),
                ));
            }
            match incs.get(id.as_str()) {
                Some(Resolution::Acknowledged | Resolution::Unknown) => {}
                Some(Resolution::NotApplied) | None => out.push(violation(
                    Rule::PhantomWrite,
                    format!("counter `{counter}` holds increment `{id}`, which was never applied"),
                )),
            }
        }
        if value.count != value.ids.len() as u64 {
            out.push(violation(
                Rule::DoubleApplied,
                format!(
                    "counter `{counter}` counts {} but holds {} increments",
                    value.count,
                    value.ids.len()
                ),
            ));
        }
        let acknowledged = incs
            .values()
            .filter(|r| **r == Resolution::Acknowledged)
            .count() as u64;
        let unknown = incs.values().filter(|r| **r == Resolution::Unknown).count() as u64;
        if value.count > acknowledged + unknown {
            out.push(violation(
                Rule::DoubleApplied,
                format!(
                    "counter `{counter}` counts {} but only {acknowledged} increments were \
                     acknowledged and {unknown} may have been applied",
                    value.count
                ),
            ));
        }
        for (id, resolution) in incs {
            if *resolution == Resolution::Acknowledged && !seen.contains(id) {
                out.push(violation(
                    Rule::AcknowledgedWriteMissing,
                    format!("counter `{counter}` lost the acknowledged increment `{id}`"),
                ));
            }
        }
    }
    out
}

/// Every answer for one idempotency key names the same order, and at most
/// one answer says it created it.
pub fn orders_created_once(history: &History) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut answers: BTreeMap<&str, Vec<(bool, &OrderSnapshot)>> = BTreeMap::new();
    for op in &history.ops {
        if let (
            Call::OrderCreate { idempotency_key },
            Outcome::Ok(Reply::Order { created, order }),
        ) = (&op.call, &op.outcome)
        {
            answers
                .entry(idempotency_key)
                .or_default()
                .push((*created, order));
        }
    }
    for (key, answers) in answers {
        let created = answers.iter().filter(|(c, _)| *c).count();
        if created > 1 {
            out.push(violation(
                Rule::DoubleApplied,
                format!("order with Idempotency-Key `{key}` was created {created} times"),
            ));
        }
        let first = answers[0].1;
        if let Some((_, other)) = answers.iter().find(|(_, o)| *o != first) {
            out.push(violation(
                Rule::DoubleApplied,
                format!(
                    "order with Idempotency-Key `{key}` was answered as {first:?} and later as \
                     {other:?}"
                ),
            ));
        }
    }
    out
}

/// Every acknowledged order exists on every node as acknowledged; no order
/// exists whose creation was never applied.
pub fn orders_after_run(history: &History, final_reads: &FinalReads) -> Vec<Violation> {
    let mut out = Vec::new();
    let finals = agreed(
        "order",
        final_reads.orders.iter().map(|o| {
            let answer = match &o.error {
                Some(e) => Err(e.as_str()),
                None => Ok(o.order.clone()),
            };
            (o.idempotency_key.as_str(), o.node, answer)
        }),
        &mut out,
    );
    for command in &history.orders {
        let Some(found) = finals.get(command.idempotency_key.as_str()) else {
            continue;
        };
        match (command.resolution, &command.acknowledged, found) {
            (_, Some(acked), Some(found)) if acked != found => out.push(violation(
                Rule::DoubleApplied,
                format!(
                    "order `{}` was acknowledged as {acked:?} but is {found:?} after the run",
                    command.order_id
                ),
            )),
            (_, Some(_), None) => out.push(violation(
                Rule::AcknowledgedWriteMissing,
                format!(
                    "order `{}` was acknowledged but is missing after the run",
                    command.order_id
                ),
            )),
            (Resolution::NotApplied, None, Some(found)) => out.push(violation(
                Rule::PhantomWrite,
                format!(
                    "order `{}` exists ({found:?}) but its creation was never applied",
                    command.order_id
                ),
            )),
            _ => {}
        }
    }
    out
}
