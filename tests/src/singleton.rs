//! Singleton runs and admin calls, recorded by the [harness](crate::harness)
//! and checked after a run.
//!
//! Every node of a harness runs a [`RecordingTask`] under a
//! [`SingletonRunner`](catga_cluster_core::SingletonRunner): each run
//! records its node, the node's incarnation (how many times it was
//! started), its [`LeaderFence`] and its start and stop instants, and
//! keeps submitting its fence to a fence-checking resource, as a run that
//! writes to an external system would. The resource accepts a submission
//! whose fence is at least the highest it has accepted, and refuses older
//! ones. [`check_singleton_fences`] then checks that at most one run was
//! accepted per fence at any time.
//!
//! A crashed node's process is gone: from the instant of the crash its
//! runs are stopped and their submissions never reach the resource
//! ([`SingletonLog::process_died`]), even though in one process the old
//! task may still be winding down.
//!
//! [`check_admin_quorum`] checks the rule that the voter set never loses
//! its quorum through an admin call, over the [`AdminCall`]s the harness
//! recorded.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use catga_cluster_core::singleton::{SingletonTask, TaskContext};
use catga_cluster_core::{BoxError, LeaderFence, NodeId};
use tokio::time::Instant;

/// How often a run submits its fence.
const SUBMIT_EVERY: Duration = Duration::from_millis(10);

/// One singleton run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The run's number, in start order.
    pub id: usize,
    /// The node it ran on.
    pub node: NodeId,
    /// Which start of that node it belongs to.
    pub incarnation: u64,
    /// The fence it was given.
    pub fence: LeaderFence,
    /// When it started.
    pub start: Instant,
    /// When it stopped (returned, or its process died); `None` while it
    /// runs.
    pub stop: Option<Instant>,
}

/// One submission of a fence to the resource.
#[derive(Debug, Clone)]
pub struct Submission {
    /// The run that submitted.
    pub run: usize,
    /// Its fence.
    pub fence: LeaderFence,
    /// When the resource took it.
    pub at: Instant,
    /// Whether the resource accepted it.
    pub accepted: bool,
}

#[derive(Debug, Default)]
struct LogState {
    runs: Vec<Run>,
    submissions: Vec<Submission>,
    highest: Option<LeaderFence>,
    dead: HashSet<(NodeId, u64)>,
}

/// The shared record of runs and of the fence-checking resource. Clones
/// share it.
#[derive(Debug, Clone, Default)]
pub struct SingletonLog {
    inner: Arc<Mutex<LogState>>,
}

impl SingletonLog {
    fn state(&self) -> MutexGuard<'_, LogState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records the start of a run; its id.
    pub fn start(&self, node: NodeId, incarnation: u64, fence: LeaderFence) -> usize {
        let mut s = self.state();
        let id = s.runs.len();
        let stop = s.dead.contains(&(node, incarnation)).then(Instant::now);
        s.runs.push(Run {
            id,
            node,
            incarnation,
            fence,
            start: Instant::now(),
            stop,
        });
        id
    }

    /// Records the end of run `id` (a run of a dead process ended already).
    pub fn stop(&self, id: usize) {
        if let Some(run) = self.state().runs.get_mut(id) {
            run.stop.get_or_insert_with(Instant::now);
        }
    }

    /// Submits run `id`'s fence to the resource: accepted if it is at least
    /// the highest accepted so far. `None` if the run's process is dead
    /// (nothing reaches the resource).
    pub fn submit(&self, id: usize) -> Option<bool> {
        let mut s = self.state();
        let run = s.runs.get(id)?.clone();
        if s.dead.contains(&(run.node, run.incarnation)) {
            return None;
        }
        let accepted = s.highest.is_none_or(|h| run.fence >= h);
        if accepted {
            s.highest = Some(run.fence);
        }
        s.submissions.push(Submission {
            run: id,
            fence: run.fence,
            at: Instant::now(),
            accepted,
        });
        Some(accepted)
    }

    /// The process of `node` (its `incarnation`) died now: its runs stop
    /// and it submits nothing more.
    pub fn process_died(&self, node: NodeId, incarnation: u64) {
        let mut s = self.state();
        s.dead.insert((node, incarnation));
        let now = Instant::now();
        for run in s
            .runs
            .iter_mut()
            .filter(|r| r.node == node && r.incarnation == incarnation)
        {
            run.stop.get_or_insert(now);
        }
    }

    /// Every run so far.
    pub fn runs(&self) -> Vec<Run> {
        self.state().runs.clone()
    }

    /// Every submission so far.
    pub fn submissions(&self) -> Vec<Submission> {
        self.state().submissions.clone()
    }
}

/// The singleton task of every harness node; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct RecordingTask {
    node: NodeId,
    incarnation: u64,
    log: SingletonLog,
}

impl RecordingTask {
    /// The task of `node` in its `incarnation`, recording into `log`.
    pub fn new(node: NodeId, incarnation: u64, log: SingletonLog) -> Self {
        RecordingTask {
            node,
            incarnation,
            log,
        }
    }
}

impl SingletonTask for RecordingTask {
    fn name(&self) -> &str {
        "fence-recorder"
    }

    async fn run(&self, ctx: TaskContext) -> Result<(), BoxError> {
        let id = self.log.start(self.node, self.incarnation, ctx.fence());
        while !ctx.is_cancelled() {
            if self.log.submit(id).is_none() {
                break;
            }
            tokio::select! {
                () = ctx.cancelled() => break,
                () = tokio::time::sleep(SUBMIT_EVERY) => {}
            }
        }
        self.log.stop(id);
        Ok(())
    }
}

/// Checks that at most one singleton run was accepted per fence at any
/// time:
///
/// - every fence that the resource accepted belongs to runs of one node
///   only, and those runs never overlap in time (two nodes, or two
///   overlapping runs, with one fence would be two leaders the fence
///   cannot tell apart);
/// - the resource's acceptances never go back to a lower fence (a check
///   of the resource itself).
///
/// Every violation is described in the error.
pub fn check_singleton_fences(log: &SingletonLog) -> Result<(), String> {
    let runs = log.runs();
    let submissions = log.submissions();
    let mut problems = Vec::new();
    let accepted: HashSet<usize> = submissions
        .iter()
        .filter(|s| s.accepted)
        .map(|s| s.run)
        .collect();
    let mut by_fence: BTreeMap<LeaderFence, Vec<&Run>> = BTreeMap::new();
    for run in runs.iter().filter(|r| accepted.contains(&r.id)) {
        by_fence.entry(run.fence).or_default().push(run);
    }
    for (fence, runs) in &by_fence {
        let nodes: HashSet<NodeId> = runs.iter().map(|r| r.node).collect();
        if nodes.len() > 1 {
            problems.push(format!(
                "fence {fence} was accepted from runs on nodes {:?}",
                nodes.iter().map(|n| n.get()).collect::<Vec<_>>()
            ));
        }
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                let a_end = a.stop.unwrap_or_else(Instant::now);
                let b_end = b.stop.unwrap_or_else(Instant::now);
                if a.start < b_end && b.start < a_end {
                    problems.push(format!(
                        "runs {} (node {}) and {} (node {}) with fence {fence} overlap in time",
                        a.id,
                        a.node.get(),
                        b.id,
                        b.node.get()
                    ));
                }
            }
        }
    }
    let mut highest: Option<LeaderFence> = None;
    for s in submissions.iter().filter(|s| s.accepted) {
        if highest.is_some_and(|h| s.fence < h) {
            problems.push(format!(
                "the resource accepted fence {} after {}",
                s.fence,
                highest.expect("some")
            ));
        }
        highest = highest.max(Some(s.fence));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// One admin call of the harness and what came of it.
#[derive(Debug, Clone)]
pub struct AdminCall {
    /// `add`, `remove` or `transfer`.
    pub kind: String,
    /// The node added, removed or handed leadership to.
    pub target: Option<NodeId>,
    /// The node the call was sent to.
    pub via: NodeId,
    /// When it was sent.
    pub started: Instant,
    /// When it was answered (or failed).
    pub answered: Instant,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The answer's body, or why none came.
    pub answer: String,
    /// Members and voter flags before the call, as the node called saw them.
    pub voters_before: Option<BTreeMap<NodeId, bool>>,
    /// Members and voter flags right after the answer, as the leader (or
    /// the node called) saw them.
    pub voters_after: Option<BTreeMap<NodeId, bool>>,
    /// The nodes down or cut off from the majority when the call was sent.
    pub unreachable_before: Vec<NodeId>,
    /// The same when it was answered.
    pub unreachable_after: Vec<NodeId>,
}

/// Checks that the voter set never lost its quorum through an admin call:
/// after each `remove` the cluster accepted (a `2xx` answer), the voters
/// left that were neither down nor cut off, at the call and at its answer,
/// are a majority of the voters left. A refusal (`quorum-at-risk`,
/// `member-unreachable`, …) or a call with no answer changed nothing the
/// rule covers; an `add` only grows the set once the node caught up.
pub fn check_admin_quorum(calls: &[AdminCall]) -> Result<(), String> {
    let mut problems = Vec::new();
    for call in calls {
        let ok = call.status.is_some_and(|s| (200..300).contains(&s));
        if !ok || call.kind != "remove" {
            continue;
        }
        let Some(before) = &call.voters_before else {
            continue;
        };
        let voters_left: Vec<NodeId> = before
            .iter()
            .filter(|(id, voter)| **voter && Some(**id) != call.target)
            .map(|(id, _)| *id)
            .collect();
        let reachable = voters_left
            .iter()
            .filter(|id| {
                !call.unreachable_before.contains(id) && !call.unreachable_after.contains(id)
            })
            .count();
        let majority = voters_left.len() / 2 + 1;
        if reachable < majority {
            problems.push(format!(
                "removing node {:?} via node {} was accepted although only {reachable} of the {} voters left were reachable: {call:?}",
                call.target.map(|t| t.get()),
                call.via.get(),
                voters_left.len()
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fence(term: u64, index: u64) -> LeaderFence {
        LeaderFence { term, index }
    }

    #[tokio::test]
    async fn fences_of_one_leader_after_another_pass() {
        let log = SingletonLog::default();
        let a = log.start(NodeId::new(1), 1, fence(2, 10));
        assert_eq!(log.submit(a), Some(true));
        let b = log.start(NodeId::new(2), 1, fence(3, 12));
        assert_eq!(log.submit(b), Some(true));
        // The deposed run is fenced out.
        assert_eq!(log.submit(a), Some(false));
        log.stop(a);
        log.stop(b);
        check_singleton_fences(&log).unwrap();
    }

    #[tokio::test]
    async fn one_fence_on_two_nodes_is_caught() {
        let log = SingletonLog::default();
        let a = log.start(NodeId::new(1), 1, fence(2, 10));
        let b = log.start(NodeId::new(2), 1, fence(2, 10));
        assert_eq!(log.submit(a), Some(true));
        assert_eq!(log.submit(b), Some(true));
        let err = check_singleton_fences(&log).unwrap_err();
        assert!(err.contains("fence 2:10"), "{err}");
        assert!(err.contains("overlap"), "{err}");
    }

    #[tokio::test]
    async fn a_dead_process_submits_nothing() {
        let log = SingletonLog::default();
        let a = log.start(NodeId::new(1), 1, fence(2, 10));
        log.process_died(NodeId::new(1), 1);
        assert_eq!(log.submit(a), None);
        assert!(log.runs()[0].stop.is_some());
    }

    fn call(status: u16, voters: &[(u64, bool)], target: u64, down: &[u64]) -> AdminCall {
        let now = Instant::now();
        AdminCall {
            kind: "remove".into(),
            target: Some(NodeId::new(target)),
            via: NodeId::new(1),
            started: now,
            answered: now,
            status: Some(status),
            answer: String::new(),
            voters_before: Some(voters.iter().map(|(i, v)| (NodeId::new(*i), *v)).collect()),
            voters_after: None,
            unreachable_before: down.iter().map(|i| NodeId::new(*i)).collect(),
            unreachable_after: Vec::new(),
        }
    }

    #[tokio::test]
    async fn an_accepted_removal_that_leaves_no_quorum_is_caught() {
        let five = [(1, true), (2, true), (3, true), (4, true), (5, true)];
        // 4 voters left, 2 down: 2 of 4 is no majority.
        let bad = call(200, &five, 5, &[3, 4]);
        assert!(check_admin_quorum(&[bad]).is_err());
        // The same refused is fine, and so is a removal with 3 of 4 up.
        let refused = call(409, &five, 5, &[3, 4]);
        let fine = call(200, &five, 5, &[4]);
        check_admin_quorum(&[refused, fine]).unwrap();
    }
}
