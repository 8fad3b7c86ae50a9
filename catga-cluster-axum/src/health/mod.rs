//! Health, as the seed's `ClusterHealthCheck`, with a real degraded state.
//!
//! A node is
//!
//! * **unhealthy** when Raft stopped (a fatal error, or shut down), the node
//!   is draining for shutdown, no leader is known, or the node is out of
//!   touch with a quorum (`no-quorum`, from [`ProbeFacts::quorum_reachable`]:
//!   on a leader, the voters that answered recently are not a majority; on
//!   a follower, the leader it knows has not been heard from recently);
//! * **degraded** when a leader is known but this node's leader lease
//!   lapsed, it is handing leadership over, it leads and a voter does not
//!   answer (`voter-unreachable`, from [`ProbeFacts::unreachable_voters`]:
//!   the quorum holds, but one more failure may break it), it lags
//!   (more than [`HealthOptions::max_apply_lag`] log entries not applied
//!   yet), or elections are flapping (at least
//!   [`HealthOptions::flap_threshold`] leader changes within
//!   [`HealthOptions::flap_window`]);
//! * **healthy** otherwise.
//!
//! A follower knows only its own contact with the leader: when a leader
//! has lost its quorum but still reaches some followers, those followers
//! stay healthy and the leader reports `no-quorum`.
//!
//! The routes use it as Kubernetes probes: `GET /health/live` fails only
//! when Raft stopped on a fatal error (restarting the process is the cure),
//! `GET /health/ready` fails when the node is unhealthy (send no traffic),
//! `GET /health/leader` succeeds on the leader only.
//!
//! Any `ClusterCoordinator` works;
//! a [`HealthProbe`] adds what only the backend knows (a fatal error, the
//! apply lag). `RaftNode` is one.
//!
//! ```
//! use catga_cluster_axum::health::{HealthOptions, HealthStatus};
//! use catga_cluster_axum::ClusterRoutes;
//! use catga_cluster_core::testing::ManualCoordinator;
//!
//! let coord = ManualCoordinator::new_leader();
//! let routes = ClusterRoutes::new(coord.clone());
//! assert_eq!(routes.health().status, HealthStatus::Healthy);
//! coord.expire_lease();
//! assert_eq!(routes.health().status, HealthStatus::Degraded);
//! coord.set_follower(None);
//! assert_eq!(routes.health().status, HealthStatus::Unhealthy);
//! # let _ = HealthOptions::default();
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use catga_cluster_core::{
    ClusterCoordinator, FailoverCounts, LeaderInfo, Leadership, NodeId, NodeInfo, Role,
};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::shutdown::DrainFlag;

const TARGET: &str = "catga_cluster::axum::health";

/// The health of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HealthStatus {
    /// Everything is fine.
    Healthy,
    /// The node serves, but something needs attention.
    Degraded,
    /// The node cannot serve cluster work.
    Unhealthy,
}

impl HealthStatus {
    /// `healthy`, `degraded` or `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Unhealthy => "unhealthy",
        }
    }
}

impl fmt::Display for HealthStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a node is not healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HealthReason {
    /// Raft stopped on a fatal error.
    RaftFailed,
    /// Raft was shut down.
    RaftStopped,
    /// The node is draining before it stops.
    Draining,
    /// No leader is known.
    NoLeader,
    /// This node leads but its lease lapsed.
    LeaseExpired,
    /// This node is handing leadership over.
    Transferring,
    /// This node has many log entries it has not applied.
    Lagging,
    /// Leaders changed often recently.
    ElectionsFlapping,
    /// This node is out of touch with a quorum of voters.
    NoQuorum,
    /// This node leads and a voter does not answer.
    VoterUnreachable,
}

impl HealthReason {
    /// The slug used in health bodies: `raft-failed`, `raft-stopped`,
    /// `draining`, `no-leader`, `no-quorum`, `lease-expired`,
    /// `transferring`, `voter-unreachable`, `lagging`,
    /// `elections-flapping`.
    pub fn slug(self) -> &'static str {
        match self {
            HealthReason::RaftFailed => "raft-failed",
            HealthReason::RaftStopped => "raft-stopped",
            HealthReason::Draining => "draining",
            HealthReason::NoLeader => "no-leader",
            HealthReason::LeaseExpired => "lease-expired",
            HealthReason::Transferring => "transferring",
            HealthReason::Lagging => "lagging",
            HealthReason::ElectionsFlapping => "elections-flapping",
            HealthReason::NoQuorum => "no-quorum",
            HealthReason::VoterUnreachable => "voter-unreachable",
        }
    }
}

/// A health evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthReport {
    /// The verdict.
    pub status: HealthStatus,
    /// Why it is not healthy (`None` when healthy).
    pub reason: Option<HealthReason>,
    /// A sentence for humans (no internals).
    pub detail: Option<String>,
    /// This node's role.
    pub role: Role,
    /// The known leader.
    pub leader: Option<LeaderInfo>,
    /// Whether this node leads under a valid lease.
    pub is_leader: bool,
    /// `false` only when Raft stopped on a fatal error (the liveness probe).
    pub live: bool,
}

/// Thresholds of the degraded state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthOptions {
    /// More unapplied log entries than this make the node degraded
    /// (default 1000).
    pub max_apply_lag: u64,
    /// The window in which leader changes are counted (default 10 s).
    pub flap_window: Duration,
    /// This many leader changes within the window make the node degraded
    /// (default 3: the first election and one fail-over are normal).
    pub flap_threshold: usize,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            max_apply_lag: 1000,
            flap_window: Duration::from_secs(10),
            flap_threshold: 3,
        }
    }
}

impl HealthOptions {
    /// Sets [`max_apply_lag`](Self::max_apply_lag).
    pub fn max_apply_lag(mut self, entries: u64) -> Self {
        self.max_apply_lag = entries;
        self
    }

    /// Sets [`flap_window`](Self::flap_window).
    pub fn flap_window(mut self, window: Duration) -> Self {
        self.flap_window = window;
        self
    }

    /// Sets [`flap_threshold`](Self::flap_threshold).
    pub fn flap_threshold(mut self, changes: usize) -> Self {
        self.flap_threshold = changes;
        self
    }
}

/// What a backend knows about itself beyond the leadership snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProbeFacts {
    /// Raft stopped on a fatal error (the error stays in the log; health
    /// bodies never show it).
    pub fatal: bool,
    /// Raft stopped (fatal or shut down).
    pub stopped: bool,
    /// Log entries this node has not applied yet.
    pub apply_lag: u64,
    /// The last log index, where known.
    pub last_log_index: Option<u64>,
    /// The last applied index, where known.
    pub last_applied: Option<u64>,
    /// Voters this node, leading, has not heard from recently (empty on
    /// other nodes, or when the backend cannot tell).
    pub unreachable_voters: Vec<NodeId>,
    /// Whether this node is in touch with a quorum of voters (`true`
    /// unless the backend knows otherwise).
    pub quorum_reachable: bool,
    /// The fail-overs that elected this node, by path (none when the
    /// backend does not report them).
    pub failovers: FailoverCounts,
}

impl Default for ProbeFacts {
    fn default() -> Self {
        ProbeFacts {
            fatal: false,
            stopped: false,
            apply_lag: 0,
            last_log_index: None,
            last_applied: None,
            unreachable_voters: Vec::new(),
            quorum_reachable: true,
            failovers: FailoverCounts::default(),
        }
    }
}

impl ProbeFacts {
    /// Facts of a running node with no lag.
    pub fn running() -> Self {
        ProbeFacts::default()
    }

    /// Sets [`fatal`](Self::fatal) (and [`stopped`](Self::stopped)).
    pub fn fatal(mut self, fatal: bool) -> Self {
        self.fatal = fatal;
        self.stopped |= fatal;
        self
    }

    /// Sets [`stopped`](Self::stopped).
    pub fn stopped(mut self, stopped: bool) -> Self {
        self.stopped = stopped;
        self
    }

    /// Sets [`apply_lag`](Self::apply_lag).
    pub fn apply_lag(mut self, lag: u64) -> Self {
        self.apply_lag = lag;
        self
    }

    /// Sets the log positions.
    pub fn log(mut self, last_log_index: u64, last_applied: u64) -> Self {
        self.last_log_index = Some(last_log_index);
        self.last_applied = Some(last_applied);
        self
    }

    /// Sets [`unreachable_voters`](Self::unreachable_voters).
    pub fn unreachable_voters(mut self, voters: Vec<NodeId>) -> Self {
        self.unreachable_voters = voters;
        self
    }

    /// Sets [`quorum_reachable`](Self::quorum_reachable).
    pub fn quorum_reachable(mut self, reachable: bool) -> Self {
        self.quorum_reachable = reachable;
        self
    }

    /// Sets [`failovers`](Self::failovers).
    pub fn failovers(mut self, failovers: FailoverCounts) -> Self {
        self.failovers = failovers;
        self
    }
}

/// A source of [`ProbeFacts`]: the consensus backend.
pub trait HealthProbe: Send + Sync + 'static {
    /// The facts right now; cheap and synchronous.
    fn facts(&self) -> ProbeFacts;
}

impl<F> HealthProbe for F
where
    F: Fn() -> ProbeFacts + Send + Sync + 'static,
{
    fn facts(&self) -> ProbeFacts {
        self()
    }
}

#[cfg(feature = "raft")]
impl HealthProbe for catga_cluster_raft::RaftNode {
    fn facts(&self) -> ProbeFacts {
        let health = self.health();
        let status = self.status();
        ProbeFacts {
            fatal: health.fatal.is_some(),
            stopped: !health.running,
            apply_lag: health.apply_lag,
            last_log_index: Some(status.last_log_index),
            last_applied: Some(status.last_applied),
            unreachable_voters: health.unreachable_voters,
            quorum_reachable: health.quorum_reachable,
            failovers: self.failover_counts(),
        }
    }
}

/// Decides the health from a snapshot and the backend's facts.
pub(crate) fn evaluate(
    local: NodeId,
    snapshot: &Leadership,
    facts: &ProbeFacts,
    recent_changes: usize,
    draining: bool,
    options: &HealthOptions,
) -> HealthReport {
    let is_leader = snapshot.is_leader();
    let unhealthy = |reason: HealthReason, detail: &str| {
        (
            HealthStatus::Unhealthy,
            Some(reason),
            Some(detail.to_owned()),
        )
    };
    let degraded =
        |reason: HealthReason, detail: String| (HealthStatus::Degraded, Some(reason), Some(detail));
    let (status, reason, detail) = if facts.fatal {
        unhealthy(
            HealthReason::RaftFailed,
            "raft stopped on a fatal error; see the server log",
        )
    } else if facts.stopped || snapshot.role == Role::Shutdown {
        unhealthy(HealthReason::RaftStopped, "raft is shut down")
    } else if draining {
        unhealthy(
            HealthReason::Draining,
            "the node is draining before it stops",
        )
    } else if snapshot.leader.is_none() {
        unhealthy(HealthReason::NoLeader, "no leader is known")
    } else if !facts.quorum_reachable {
        let detail = if snapshot.leader_id() == Some(local) {
            match facts.unreachable_voters.as_slice() {
                [] => "this node leads but cannot reach a quorum of voters".to_owned(),
                missing => format!(
                    "this node leads but cannot reach a quorum of voters (unreachable: {})",
                    nodes(missing)
                ),
            }
        } else {
            "this node has not heard from the leader recently".to_owned()
        };
        (
            HealthStatus::Unhealthy,
            Some(HealthReason::NoQuorum),
            Some(detail),
        )
    } else if snapshot.leader_id() == Some(local) && snapshot.transferring {
        degraded(
            HealthReason::Transferring,
            "this node is handing leadership over".to_owned(),
        )
    } else if snapshot.role == Role::Leader && !is_leader {
        degraded(
            HealthReason::LeaseExpired,
            "this node leads but its leader lease lapsed".to_owned(),
        )
    } else if !facts.unreachable_voters.is_empty() {
        degraded(
            HealthReason::VoterUnreachable,
            format!(
                "voters do not answer: {}; the quorum holds",
                nodes(&facts.unreachable_voters)
            ),
        )
    } else if facts.apply_lag > options.max_apply_lag {
        degraded(
            HealthReason::Lagging,
            format!(
                "{} log entries are not applied yet (more than {})",
                facts.apply_lag, options.max_apply_lag
            ),
        )
    } else if recent_changes >= options.flap_threshold {
        degraded(
            HealthReason::ElectionsFlapping,
            format!(
                "{recent_changes} leader changes within {:?}",
                options.flap_window
            ),
        )
    } else {
        (HealthStatus::Healthy, None, None)
    };
    HealthReport {
        status,
        reason,
        detail,
        role: snapshot.role,
        leader: snapshot.leader.clone(),
        is_leader,
        live: !facts.fatal,
    }
}

fn nodes(ids: &[NodeId]) -> String {
    let names: Vec<String> = ids.iter().map(|id| format!("node {id}")).collect();
    names.join(", ")
}

/// The object-safe part of a coordinator the routes need.
pub(crate) trait LeadershipView: Send + Sync + 'static {
    fn node(&self) -> &NodeInfo;
    fn leadership(&self) -> Leadership;
    fn subscribe(&self) -> watch::Receiver<Leadership>;
}

impl<C: ClusterCoordinator> LeadershipView for C {
    fn node(&self) -> &NodeInfo {
        ClusterCoordinator::node(self)
    }

    fn leadership(&self) -> Leadership {
        ClusterCoordinator::leadership(self)
    }

    fn subscribe(&self) -> watch::Receiver<Leadership> {
        ClusterCoordinator::subscribe(self)
    }
}

/// Follows the leadership channel: leader changes and time without a
/// leader.
#[derive(Debug)]
pub(crate) struct Tracker {
    state: Mutex<TrackerState>,
    started: AtomicBool,
    cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct TrackerState {
    last_leader: Option<NodeId>,
    recent: VecDeque<Instant>,
    total_changes: u64,
    leaderless_since: Option<Instant>,
    leaderless_total: Duration,
}

impl Tracker {
    pub(crate) fn new() -> Self {
        Tracker {
            state: Mutex::new(TrackerState::default()),
            started: AtomicBool::new(false),
            cancel: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TrackerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts the follower task once, when a runtime is there.
    pub(crate) fn ensure_started(self: &Arc<Self>, view: &Arc<dyn LeadershipView>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut rx = view.subscribe();
        self.observe(&rx.borrow_and_update().clone());
        let weak = Arc::downgrade(self);
        let cancel = self.cancel.clone();
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    changed = rx.changed() => if changed.is_err() { return },
                }
                let snapshot = rx.borrow_and_update().clone();
                let Some(tracker) = weak.upgrade() else {
                    return;
                };
                tracker.observe(&snapshot);
            }
        });
    }

    fn observe(&self, snapshot: &Leadership) {
        let now = Instant::now();
        let mut state = self.lock();
        match snapshot.leader_id() {
            Some(id) => {
                if let Some(since) = state.leaderless_since.take() {
                    state.leaderless_total += now.saturating_duration_since(since);
                }
                if state.last_leader != Some(id) {
                    state.last_leader = Some(id);
                    state.total_changes += 1;
                    state.recent.push_back(now);
                    tracing::debug!(target: TARGET, leader_id = %id, term = snapshot.term, "leader changed");
                }
            }
            None => {
                if state.leaderless_since.is_none() {
                    state.leaderless_since = Some(now);
                }
            }
        }
    }

    /// Leader changes within `window`.
    pub(crate) fn recent_changes(&self, window: Duration) -> usize {
        let mut state = self.lock();
        let now = Instant::now();
        while state
            .recent
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > window)
        {
            state.recent.pop_front();
        }
        state.recent.len()
    }

    /// Leader changes since the tracker started.
    pub(crate) fn total_changes(&self) -> u64 {
        self.lock().total_changes
    }

    /// Time spent without a known leader since the tracker started.
    pub(crate) fn leaderless(&self) -> Duration {
        let state = self.lock();
        state.leaderless_total
            + state.leaderless_since.map_or(Duration::ZERO, |s| {
                Instant::now().saturating_duration_since(s)
            })
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Everything the routes know about the cluster, shared by them all.
pub(crate) struct ClusterView {
    pub(crate) coord: Arc<dyn LeadershipView>,
    pub(crate) probe: RwLock<Option<Arc<dyn HealthProbe>>>,
    pub(crate) tracker: Arc<Tracker>,
    pub(crate) draining: DrainFlag,
    pub(crate) options: RwLock<HealthOptions>,
}

impl fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterView")
            .field("node", self.coord.node())
            .field("probe", &self.probe().is_some())
            .field("draining", &self.draining)
            .field("options", &self.options())
            .finish()
    }
}

impl ClusterView {
    pub(crate) fn node(&self) -> &NodeInfo {
        self.coord.node()
    }

    pub(crate) fn new(coord: Arc<dyn LeadershipView>) -> Self {
        ClusterView {
            coord,
            probe: RwLock::new(None),
            tracker: Arc::new(Tracker::new()),
            draining: DrainFlag::default(),
            options: RwLock::new(HealthOptions::default()),
        }
    }

    fn probe(&self) -> Option<Arc<dyn HealthProbe>> {
        self.probe.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_probe(&self, probe: Arc<dyn HealthProbe>) {
        *self.probe.write().unwrap_or_else(|e| e.into_inner()) = Some(probe);
    }

    pub(crate) fn options(&self) -> HealthOptions {
        *self.options.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_options(&self, options: HealthOptions) {
        *self.options.write().unwrap_or_else(|e| e.into_inner()) = options;
    }

    pub(crate) fn facts(&self) -> ProbeFacts {
        self.probe().map_or_else(ProbeFacts::running, |p| p.facts())
    }

    pub(crate) fn report(&self) -> HealthReport {
        self.tracker.ensure_started(&self.coord);
        let snapshot = self.coord.leadership();
        let options = self.options();
        evaluate(
            self.node().id,
            &snapshot,
            &self.facts(),
            self.tracker.recent_changes(options.flap_window),
            self.draining.is_set(),
            &options,
        )
    }
}

#[cfg(test)]
mod tests;
