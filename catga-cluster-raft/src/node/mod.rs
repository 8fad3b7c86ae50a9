//! The Raft node: built from a [`ClusterConfig`], it implements
//! [`ClusterCoordinator`] with a lease-safe `is_leader()`, writes with
//! deadlines and graceful hand-over. Membership changes live in
//! [`crate::membership`], the key-value store in [`crate::kv`], locks in
//! [`crate::lock`] and the server side of the Raft RPCs in
//! [`crate::network`].
//!
//! # Lease rule
//!
//! openraft 0.9 leaders never step down by themselves when cut off from the
//! majority. [`RaftNode::is_leader`] is therefore true only while the node is
//! Leader **and** the newest heartbeat acknowledged by a quorum was sent less
//! than `election_timeout_max − lease_margin` ago. Followers that acknowledged
//! it neither vote for another candidate nor start an election until
//! `election_timeout_max` after they *received* it, which is later than it was
//! sent, so no other node can become leader while `is_leader()` is true
//! (assuming clocks that advance at about the same rate; the margin, one
//! heartbeat interval by default, absorbs scheduling and publication delays).
//! A watcher task follows openraft's metrics and re-publishes the snapshot
//! the moment the lease lapses, so subscribers see the change within one
//! tick. The one exception to the followers' promise is a leader whose
//! process is gone (see [Crash fail-over](#crash-fail-over)): a dead process
//! claims nothing.
//!
//! # Replacing a lost leader
//!
//! Three paths elect a successor, and the node they elect records which
//! ([`FailoverStatus`], [`RaftNode::failover_counts`], the `path` label of
//! catga-cluster-axum's `catga_cluster_failovers_total`) and logs one line
//! (`fail-over: this node leads after the fast path`, with `term`,
//! `previous_leader` and `took_ms`):
//!
//! * **fast**: the leader's process died (a crash, an OOM kill, `SIGKILL`,
//!   a stopped container): the survivors elect within milliseconds (see
//!   [Crash fail-over](#crash-fail-over));
//! * **timer**: anything else that silences a leader (a paused, slow or
//!   partitioned leader, a crash the fast path could not confirm): a
//!   follower that has heard nothing for a whole lease stands; the
//!   survivors stand one heartbeat apart, by id
//!   ([`NodeOptions::staggered_elections`]), else on openraft's own
//!   randomised timer;
//! * **handover**: the leader hands leadership over
//!   ([`RaftNode::transfer_leadership`], [`RaftNode::retire`], a graceful
//!   shutdown).
//!
//! A fail-over is counted on the node it elects, when that node knew
//! another leader before (the first election of a cluster is none). Its
//! duration runs on that node's clock: from the moment the old leader's
//! watch broke (fast), from the old leader's last message (timer), from
//! the hand-over request (handover), until the node leads.
//!
//! | setting | timer path | fast path | hand-over |
//! |---|---|---|---|
//! | `HeartbeatInterval` (50 ms) | every heartbeat renews the followers' lease; staggered survivors stand one heartbeat apart | the probe waits a heartbeat for each address (10 ms to 500 ms); a `gone` RPC two (20 ms to 1 s); survivors of consecutive ranks stand a fifth of one apart (at least 2 ms); a follower releases a lease only with at least one heartbeat of it left | — |
//! | `ElectionTimeoutMax` (300 ms) | the lease: how long a follower that heard from a leader waits before it stands (staggered), or before openraft's timer adds a random `ElectionTimeout`..`ElectionTimeoutMax` | none on the detection; a survivor left a candidate without a leader stands again after an election timeout (no lease) | the leader first waits until its own vote is a lease old; the whole hand-over is bounded by four of them |
//! | `ElectionTimeout` (150 ms) | the lower bound of openraft's random timer | as above | — |
//! | `FastFailover` (`true`) | — | turns the fast path on or off ([`NodeOptions::fast_failover`] overrides it) | — |
//!
//! # Crash fail-over
//!
//! Most leader losses are process deaths, and the kernel closes a dead
//! process's sockets at once. The fast path uses that signal
//! (`failover/fast.rs` has the steps):
//!
//! 1. Every voter that follows a leader holds a **leader watch** open on
//!    it: one long-lived `GET` on
//!    [`RAFT_WATCH_PATH`](catga_cluster_core::protocol::RAFT_WATCH_PATH),
//!    protected like the Raft RPCs (secret, member certificate with mutual
//!    TLS), over the same client. The leader ends it properly whenever it
//!    stops leading or claiming leadership while its process runs; it
//!    never ends it with an error.
//! 2. When the watch ends **abruptly** (the connection closed or reset
//!    mid-body), the follower **probes**: a fresh TCP connection to every
//!    address of the leader's advertised endpoint. Only if every address
//!    **refuses** is the death confirmed; an accepted connection (a live
//!    listener, a restarted process on the same port), a timeout, an
//!    unreachable host or a name that does not resolve leave the leader to
//!    the timers.
//! 3. A follower that confirmed the death itself, still follows that
//!    leader in that term and still holds its lease with at least a
//!    heartbeat left **releases** the lease: openraft 0.9 has no API to
//!    drop a follower's lease, but a voter whose vote is uncommitted grants
//!    a higher vote without the lease check, and starting an election
//!    (`trigger().elect()`) makes its vote uncommitted.
//! 4. It asks every other voter, with the `gone` RPC, whether it confirms
//!    the death; each answers yes only after its own probe is refused (and
//!    then releases too), with how far its log reaches. With a quorum of
//!    voters confirmed, the survivors rank themselves by log (longest
//!    first), then by id (highest first, as openraft breaks ties within a
//!    term), and the first **stands** again, a term above every released
//!    vote: the others grant it at once. The next in rank stands a few
//!    milliseconds later only if no leader has appeared by then.
//!
//! Measured in one process over loopback HTTP, the survivors lead a few
//! milliseconds after the kill, instead of after the 300 ms lease.
//!
//! ## The assumption, and its limits
//!
//! A refused connection to the leader's advertised endpoint, right after
//! its watch ended abruptly, means no process of ours listens there any
//! more. That holds when:
//!
//! * endpoints reach the node's process itself, not a proxy or load
//!   balancer that accepts or refuses on its behalf (a Kubernetes Service
//!   with no ready endpoint refuses; use the pod's address or a headless
//!   Service);
//! * nothing between the nodes answers a connection with a refusal while
//!   the process runs: a firewall rule that **rejects** (TCP reset, ICMP
//!   port unreachable) instead of dropping reads as a death. Drop, or turn
//!   the fast path off (`Cluster.FastFailover = false`);
//! * the process closes its listener only after telling the node
//!   ([`RaftNode::listener_closing`]; catga-cluster-axum's `serve` does).
//!
//! Where the fast path cannot confirm a death the timers replace the
//! leader as before: a machine that died with the process (no socket is
//! closed; connections time out), a container whose network goes with it
//! (the host becomes unreachable rather than refusing), a leader restarted
//! on the same port before the probe, a name that no longer resolves.
//!
//! ## Why it is safe
//!
//! * **A dead process holds no lease.** Nobody can ask it
//!   `is_leader()`, it runs no leader-only work, and it starts no side
//!   effect after its death. What it started before carries its fence
//!   (the term of a [`LeaderFence`], a lock's fencing token), and the new
//!   leader's fences are greater (a later term, later log indexes), so
//!   resources that compare fences refuse the old ones, exactly as after a
//!   fail-over on the timer path.
//! * **A live leader never meets the fast path.** Its listener accepts,
//!   so no probe is refused. When it stops leading or claiming it first
//!   withdraws its claim (the same publication turns `is_leader()` false)
//!   and then ends its watches properly, which no follower acts on. A
//!   leader whose listener closes while it runs withdraws its claim and
//!   ends its watches before the listener closes
//!   ([`RaftNode::listener_closing`]), then stops its heartbeats so that
//!   the timers elect a successor. A paused (`SIGSTOP`) leader's sockets
//!   stay open and its kernel still completes connections; a partitioned
//!   leader's watches stall and probes time out.
//! * **Each follower releases on its own evidence**, never on a peer's
//!   word: the `gone` RPC only makes the receiver probe. A successor
//!   elected within the old leader's lease needs the votes of a quorum, so
//!   a quorum of voters must each have seen the old process gone.
//! * **Raft's own safety is untouched**: the fast path only starts
//!   elections, which openraft's vote and log checks govern as always. A
//!   follower releases only with a heartbeat of the old lease left, so it
//!   cannot have voted for a timer-path candidate just before.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::{
    ClusterCoordinator, ClusterError, Endpoint, LeaderFence, Leadership, NodeId, NodeInfo,
    NotLeader, NotLeaderReason,
};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, RaftError};
use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::network::wire::ElectRequest;
use crate::state_machine::{validate_command, StateMachineStore};
use crate::transport::NetworkFactory;
use crate::types::{Command, CommandResponse, Operation, Raft};

// The node itself is here; each other concern is a file of its own, which
// extends `RaftNode` with an `impl` block where it adds methods.
mod expiry; // the leader's ticks that expire keys with a time to live
mod failover; // replacing a lost leader: the crash fast path, the timers
mod forwarder; // group forwarding: a follower's writes to the leader, batched
mod handover; // transfer_leadership, retire
mod lease; // the lease word behind `is_leader()`
mod options; // NodeOptions, Transport, Storage
mod proposer; // group commit: the batcher behind `write`
mod publish; // the metrics watcher that publishes the leadership snapshot
mod start; // the builder, bootstrap, shutdown
mod status; // health and status

pub use failover::FailoverStatus;
use lease::LeaseWord;
pub use options::{NodeOptions, Storage, Transport};
pub use proposer::BatchOptions;
use proposer::ProposeError;
pub use start::{RaftNodeBuilder, StartError};
pub use status::{MemberStatus, NodeStatus, RaftHealth};

const TARGET: &str = "catga_cluster::raft";

/// A running Raft node. Clones share it.
///
/// Build one with [`RaftNode::builder`]. It is the cluster's
/// [`ClusterCoordinator`] (leadership, fences; bring the trait into scope,
/// e.g. with [`crate::prelude`]), a replicated key-value store
/// ([`put`](RaftNode::put), [`get`](RaftNode::get),
/// [`compare_and_set`](RaftNode::compare_and_set)), the home of fenced
/// locks ([`RaftLock`](crate::RaftLock)) and the server side of the Raft
/// RPCs ([`rpc_handler`](RaftNode::rpc_handler)).
///
/// ```
/// use std::time::Duration;
/// use catga_cluster_raft::prelude::*;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// // A single node in memory (no `PersistentStatePath`): it leads at once.
/// let me = NodeInfo::new(NodeId::new(1), "http://127.0.0.1:5000".parse().unwrap());
/// let node = RaftNode::builder(ClusterConfig::single_node(me)).start().await?;
/// node.wait_for_leadership(Duration::from_secs(5)).await?;
/// assert!(node.is_leader());
///
/// let revision = node.put("greeting", b"hello".to_vec()).await?;
/// let value = node.get("greeting").await?.expect("just written");
/// assert_eq!(value.revision, revision);
/// node.shutdown().await;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct RaftNode {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    raft: Raft,
    info: NodeInfo,
    config: ClusterConfig,
    leadership: watch::Sender<Leadership>,
    sm: StateMachineStore,
    /// Every write goes through it (group commit).
    proposer: proposer::Proposer,
    /// Every write forwarded to the leader goes through it.
    forwarder: forwarder::Forwarder,
    network: NetworkFactory,
    transferring: AtomicBool,
    /// Writes that passed the stepping-down check and have not finished:
    /// a hand-over waits for them, so the successor it picks holds every
    /// entry the leader will have.
    writes_in_flight: AtomicUsize,
    /// Set for good by `retire`: the node no longer claims leadership.
    retiring: AtomicBool,
    /// The published leadership in one word, for a lock-free `is_leader()`.
    claim: LeaseWord,
    stopped: AtomicBool,
    lease: Duration,
    handover_timeout: Duration,
    options: NodeOptions,
    leader_changes: AtomicU64,
    recent_changes: Mutex<VecDeque<Instant>>,
    /// Since when the published leader has been the one it is now.
    leader_since: Mutex<Option<Instant>>,
    reachability_window: Duration,
    /// Set while a membership change runs (see `membership.rs`).
    membership_change: Arc<AtomicBool>,
    /// The last elect request this node stood for, kept for the RPC server
    /// (see `network/server/elect.rs`).
    elected_for: Mutex<Option<ElectRequest>>,
    /// Whether the crash fast path runs (see `failover/fast.rs`).
    fast_failover: bool,
    /// Which path elected this node, and the fast path's state.
    failover: Mutex<failover::FailoverState>,
    /// A moment before the metrics value the watcher saw last was reported
    /// (see `publish.rs`).
    metrics_reported_after: Mutex<Instant>,
    shutdown: CancellationToken,
    watcher: Mutex<Option<JoinHandle<()>>>,
    #[cfg(feature = "test-util")]
    memory: Option<crate::network::memory::MemoryNetwork>,
}

impl Inner {
    /// Handing leadership over, or retiring: not claiming leadership.
    pub(crate) fn stepping_down(&self) -> bool {
        self.transferring.load(Ordering::SeqCst) || self.retiring.load(Ordering::SeqCst)
    }

    /// Whether the node was stopped.
    pub(crate) fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// The flag a membership change holds while it runs.
    pub(crate) fn membership_change(&self) -> &Arc<AtomicBool> {
        &self.membership_change
    }

    /// Since when the published leader has been the one it is now.
    pub(crate) fn leader_since(&self) -> Option<Instant> {
        *self.leader_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How recently a voter must have answered to count as reachable.
    pub(crate) fn reachability_window(&self) -> Duration {
        self.reachability_window
    }

    /// This node.
    pub(crate) fn info(&self) -> &NodeInfo {
        &self.info
    }

    /// The last elect request this node stood for.
    pub(crate) fn elected_for(&self) -> &Mutex<Option<ElectRequest>> {
        &self.elected_for
    }

    /// The batcher of the writes this node forwards to the leader.
    pub(crate) fn forwarder(&self) -> &forwarder::Forwarder {
        &self.forwarder
    }
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node", &self.inner.info)
            .field("leadership", &*self.inner.leadership.borrow())
            .finish()
    }
}

impl RaftNode {
    pub(crate) fn network(&self) -> &NetworkFactory {
        &self.inner.network
    }

    pub(crate) fn options(&self) -> &NodeOptions {
        &self.inner.options
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The openraft handle, for what this crate does not wrap.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    /// The cluster configuration the node started with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The local state machine (reads are local; use
    /// [`RaftNode::get`] for linearizable reads).
    pub fn state_machine(&self) -> &StateMachineStore {
        &self.inner.sm
    }

    pub(crate) fn metrics(&self) -> RaftMetrics<NodeId, BasicNode> {
        self.inner.raft.metrics().borrow().clone()
    }

    /// The known leader's node info, where its endpoint is known.
    pub fn leader(&self) -> Option<NodeInfo> {
        let l = self.inner.leadership.borrow();
        let leader = l.leader.as_ref()?;
        Some(NodeInfo::new(leader.id, leader.endpoint.clone()?))
    }

    pub(crate) fn not_leader_from(
        &self,
        forward: Option<&ForwardToLeader<NodeId, BasicNode>>,
    ) -> NotLeader {
        if self.inner.stepping_down() {
            return NotLeader::new(NotLeaderReason::Transferring);
        }
        match forward.and_then(|f| f.leader_id) {
            Some(id) if id != self.inner.info.id => {
                let mut e = NotLeader::new(NotLeaderReason::NotLeader).with_leader_id(id);
                if let Some(endpoint) = forward
                    .and_then(|f| f.leader_node.as_ref())
                    .and_then(|n| Endpoint::parse(&n.addr).ok())
                {
                    e = e.with_leader_endpoint(endpoint);
                }
                e
            }
            _ => NotLeader::from_leadership(&self.inner.leadership.borrow(), self.inner.info.id),
        }
    }

    /// Proposes `op` on this node, which must lead, within the write
    /// deadline.
    ///
    /// A write that reaches its deadline after it was proposed reports
    /// [`ClusterError::UnknownOutcome`]: it may still commit. Retry it with
    /// the same `request_id` to learn its answer without applying it twice.
    ///
    /// An [`Operation::Batch`] (what a follower forwards when it has several
    /// writes for the leader at once) is written command by command,
    /// concurrently, each with its own request id, and answered with
    /// [`CommandResponse::Batch`], one answer per command in order (an
    /// invalid command is answered `Rejected`). If any of them fails, the
    /// batch fails: with `NotLeader` when every failure is `NotLeader` (none
    /// was proposed), with [`ClusterError::UnknownOutcome`] otherwise, since
    /// some may have been applied; retry each command with its request id.
    pub async fn write(
        &self,
        op: Operation,
        request_id: Option<String>,
    ) -> Result<CommandResponse, ClusterError> {
        if let Operation::Batch(commands) = op {
            return self.write_batch(commands).await;
        }
        let command = Command {
            request_id,
            leader_time_ms: wall_clock_ms(),
            op,
        };
        validate_command(&command).map_err(ClusterError::InvalidRequest)?;
        // Counted before the check: a hand-over that starts after the check
        // waits for this write (see `handover.rs`).
        let _in_flight = WriteInFlight::enter(&self.inner.writes_in_flight);
        if self.inner.stepping_down() {
            return Err(NotLeader::new(NotLeaderReason::Transferring).into());
        }
        let deadline = self.inner.options.write_timeout;
        let started = Instant::now();
        match tokio::time::timeout(deadline, self.inner.proposer.propose(command)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(ProposeError::Raft(e))) => match *e {
                RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
                    Err(self.not_leader_from(Some(&f)).into())
                }
                RaftError::APIError(e) => Err(ClusterError::Other(Box::new(e))),
                RaftError::Fatal(e) => Err(fatal(e)),
            },
            // Raft stopped with the entry in its log, maybe on followers
            // too: the next leader may commit it. Not a refusal.
            Ok(Err(ProposeError::Unanswered)) => Err(ClusterError::UnknownOutcome {
                operation: "the write",
                after: started.elapsed(),
            }),
            Err(_) => Err(ClusterError::UnknownOutcome {
                operation: "the write",
                after: deadline,
            }),
        }
    }
}

/// One write between the stepping-down check and its outcome.
struct WriteInFlight<'a>(&'a AtomicUsize);

impl<'a> WriteInFlight<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        WriteInFlight(count)
    }
}

impl Drop for WriteInFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl RaftNode {
    async fn write_batch(&self, commands: Vec<Command>) -> Result<CommandResponse, ClusterError> {
        let writes = commands.into_iter().map(|c| async move {
            if matches!(c.op, Operation::Batch(_)) {
                return Err(ClusterError::InvalidRequest(
                    "a batch inside a batch".to_string(),
                ));
            }
            self.write(c.op, c.request_id).await
        });
        let results = futures_util::future::join_all(writes).await;
        let mut answers = Vec::with_capacity(results.len());
        let mut not_leader = None;
        let mut open = false;
        for r in results {
            match r {
                Ok(answer) => answers.push(answer),
                Err(ClusterError::InvalidRequest(reason)) => {
                    answers.push(CommandResponse::Rejected { reason })
                }
                Err(ClusterError::NotLeader(e)) => not_leader = Some(e),
                Err(_) => open = true,
            }
        }
        match not_leader {
            _ if open => Err(ClusterError::UnknownOutcome {
                operation: "the batch of writes",
                after: self.inner.options.write_timeout,
            }),
            Some(e) if answers.is_empty() => Err(ClusterError::NotLeader(e)),
            Some(_) => Err(ClusterError::UnknownOutcome {
                operation: "the batch of writes",
                after: self.inner.options.write_timeout,
            }),
            None => Ok(CommandResponse::Batch(answers)),
        }
    }
}

pub(crate) fn fatal(e: openraft::error::Fatal<NodeId>) -> ClusterError {
    match e {
        openraft::error::Fatal::StorageError(s) => ClusterError::Storage(s.to_string()),
        _ => ClusterError::Shutdown,
    }
}

/// Milliseconds since the Unix epoch on this node's clock.
pub(crate) fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl ClusterCoordinator for RaftNode {
    fn node(&self) -> &NodeInfo {
        &self.inner.info
    }

    fn subscribe(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership.subscribe()
    }

    fn leadership(&self) -> Leadership {
        self.inner.leadership.borrow().clone()
    }

    /// Lock-free: one atomic load and, while leading, one clock read.
    fn is_leader(&self) -> bool {
        self.inner.claim.is_leader()
    }

    async fn ensure_leader(&self) -> Result<LeaderFence, NotLeader> {
        if self.inner.stepping_down() {
            return Err(NotLeader::new(NotLeaderReason::Transferring));
        }
        let term = self.inner.raft.metrics().borrow().current_term;
        let timeout = self.inner.config.election_timeout_max * 2;
        match tokio::time::timeout(timeout, self.inner.raft.ensure_linearizable()).await {
            Ok(Ok(read_log_id)) => {
                let m = self.inner.raft.metrics().borrow().clone();
                if m.current_term != term || m.state != ServerState::Leader {
                    return Err(self.not_leader_from(None));
                }
                Ok(LeaderFence {
                    term,
                    index: read_log_id.map_or(0, |l| l.index),
                })
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(self.not_leader_from(Some(&f)))
            }
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) | Err(_) => {
                Err(NotLeader::new(NotLeaderReason::LeaseExpired)
                    .with_leader_id(self.inner.info.id)
                    .with_leader_endpoint(self.inner.info.endpoint.clone()))
            }
            Ok(Err(RaftError::Fatal(_))) => Err(NotLeader::new(NotLeaderReason::NoLeader)),
        }
    }
}
