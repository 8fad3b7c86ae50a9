//! The Raft node: built from a [`ClusterConfig`], it implements
//! [`ClusterCoordinator`] with a lease-safe `is_leader()`, writes with
//! deadlines and graceful hand-over. Membership changes live in
//! [`crate::membership`].
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
//! tick.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::{
    ClusterCoordinator, ClusterError, Endpoint, LeaderFence, LeaderInfo, Leadership, NodeId,
    NodeInfo, NotLeader, NotLeaderReason, Role,
};
use openraft::error::{
    CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError,
};
use openraft::{BasicNode, RaftMetrics, ServerState};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::log_store::{LogStore, StoreIdentity};
use crate::network::contacts::PeerContacts;
use crate::network::http_client::{HttpClientConfig, HttpNetworkFactory};
use crate::network::wire::{ElectRequest, ElectResult};
use crate::snapshot_store::SnapshotStore;
use crate::state_machine::{validate_command, StateMachineConfig, StateMachineStore};
use crate::transport::NetworkFactory;
use crate::types::{Command, CommandResponse, Operation, Raft};
use catga_cluster_core::protocol::RaftRpc;

const TARGET: &str = "catga_cluster::raft";

/// How a node reaches its peers.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Transport {
    /// Raft RPCs over HTTP (the default).
    #[default]
    Http,
    /// The in-process network of [`crate::network::memory`], for tests.
    #[cfg(feature = "test-util")]
    Memory(crate::network::memory::MemoryNetwork),
}

/// Where a node keeps its state.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Storage {
    /// As the configuration says: on disk at `PersistentStatePath`, in memory
    /// when it is not set.
    #[default]
    FromConfig,
    /// In memory, whatever the configuration says.
    Memory,
    /// On disk in this directory.
    Disk(PathBuf),
}

/// Settings of a node beyond the cluster configuration.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeOptions {
    /// The deadline of every write. A write that misses it has an unknown
    /// outcome.
    pub write_timeout: Duration,
    /// The safety margin subtracted from the lease (see the module docs).
    /// Defaults to the heartbeat interval.
    pub lease_margin: Option<Duration>,
    /// How long a hand-over waits for the successor to take over.
    pub handover_timeout: Option<Duration>,
    /// Take a snapshot after this many log entries.
    pub snapshot_every: u64,
    /// How many log entries a snapshot leaves in the log (a follower that
    /// lags further receives the snapshot instead).
    pub logs_to_keep: u64,
    /// State machine settings.
    pub state_machine: StateMachineConfig,
    /// How long [`RaftNode::add_member`] waits for a new member to catch up
    /// as a learner (default 10 s) before it removes the learner again and
    /// fails with `member-unreachable`. The whole call is bounded by
    /// [`RaftNode::membership_change_bound`]: keep that under the deadline
    /// of whatever serves the call (catga-cluster-axum's
    /// `Limits::admin_timeout`, 30 s by default).
    pub catch_up_timeout: Duration,
    /// How recently a voter must have answered an RPC of this node to count
    /// as reachable, for the quorum checks of membership changes and for
    /// health (see [`crate::membership`]). `None` (the default):
    /// `max(2 × election_timeout_max, 500 ms)`.
    pub reachability_window: Option<Duration>,
    /// Whether a node with empty storage bootstraps the configured members.
    /// Turn it off for a node that joins a running cluster: it then waits
    /// until the leader adds it.
    pub bootstrap: bool,
    /// Whether followers run the fast failure detector (see
    /// `detect_leader_failure` in the source: survivors stand one after the
    /// other once the leader lease has lapsed, instead of splitting votes).
    pub fast_failover: bool,
    /// The TLS configuration of the Raft RPC client (`tls` feature): with
    /// one, peers whose endpoints are `https://` are reached over TLS,
    /// `http://` peers stay plain. Without one (the default), only
    /// `http://` endpoints are reached.
    ///
    /// The caller chooses the roots: trust the CA that signed the peers'
    /// certificates. Leave `alpn_protocols` empty (the client speaks
    /// HTTP/1.1 only).
    #[cfg(feature = "tls")]
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            write_timeout: Duration::from_secs(5),
            lease_margin: None,
            handover_timeout: None,
            snapshot_every: 5000,
            logs_to_keep: 500,
            state_machine: StateMachineConfig::default(),
            catch_up_timeout: Duration::from_secs(10),
            reachability_window: None,
            bootstrap: true,
            fast_failover: true,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

impl NodeOptions {
    /// Sets [`write_timeout`](NodeOptions::write_timeout).
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// Sets [`lease_margin`](NodeOptions::lease_margin).
    pub fn lease_margin(mut self, margin: Duration) -> Self {
        self.lease_margin = Some(margin);
        self
    }

    /// Sets [`handover_timeout`](NodeOptions::handover_timeout).
    pub fn handover_timeout(mut self, timeout: Duration) -> Self {
        self.handover_timeout = Some(timeout);
        self
    }

    /// Sets [`snapshot_every`](NodeOptions::snapshot_every).
    pub fn snapshot_every(mut self, entries: u64) -> Self {
        self.snapshot_every = entries;
        self
    }

    /// Sets [`logs_to_keep`](NodeOptions::logs_to_keep).
    pub fn logs_to_keep(mut self, entries: u64) -> Self {
        self.logs_to_keep = entries;
        self
    }

    /// Sets [`state_machine`](NodeOptions::state_machine).
    pub fn state_machine(mut self, config: StateMachineConfig) -> Self {
        self.state_machine = config;
        self
    }

    /// Sets [`catch_up_timeout`](NodeOptions::catch_up_timeout).
    pub fn catch_up_timeout(mut self, timeout: Duration) -> Self {
        self.catch_up_timeout = timeout;
        self
    }

    /// Sets [`reachability_window`](NodeOptions::reachability_window).
    pub fn reachability_window(mut self, window: Duration) -> Self {
        self.reachability_window = Some(window);
        self
    }

    /// Sets [`fast_failover`](NodeOptions::fast_failover).
    pub fn fast_failover(mut self, enabled: bool) -> Self {
        self.fast_failover = enabled;
        self
    }

    /// Sets [`bootstrap`](NodeOptions::bootstrap).
    pub fn bootstrap(mut self, bootstrap: bool) -> Self {
        self.bootstrap = bootstrap;
        self
    }

    /// Sets [`tls`](NodeOptions::tls): Raft RPCs to `https://` peers go
    /// over TLS with `config`.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use catga_cluster_raft::NodeOptions;
    /// use catga_cluster_raft::rustls::{self, crypto::ring};
    ///
    /// # fn run(roots: rustls::RootCertStore) -> Result<(), rustls::Error> {
    /// let config = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots) // the CA of the peers' certificates
    ///     .with_no_client_auth();
    /// let options = NodeOptions::default().tls(Arc::new(config));
    /// # let _ = options; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, config: Arc<rustls::ClientConfig>) -> Self {
        self.tls = Some(config);
        self
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] catga_cluster_core::config::ConfigError),
    /// The Raft timings are not valid.
    #[error("invalid Raft timings: {0}")]
    Timings(String),
    /// The log could not be opened.
    #[error(transparent)]
    LogStore(#[from] crate::log_store::LogStoreError),
    /// The snapshot store could not be opened.
    #[error("cannot open the snapshot store: {0}")]
    SnapshotStore(String),
    /// The state machine could not be restored.
    #[error(transparent)]
    StateMachine(#[from] crate::state_machine::StateMachineError),
    /// openraft refused to start.
    #[error("raft failed to start: {0}")]
    Raft(String),
}

/// Builds a [`RaftNode`].
#[derive(Debug)]
pub struct RaftNodeBuilder {
    config: ClusterConfig,
    transport: Transport,
    storage: Storage,
    options: NodeOptions,
}

impl RaftNodeBuilder {
    /// Chooses the transport.
    pub fn transport(mut self, transport: Transport) -> Self {
        self.transport = transport;
        self
    }

    /// Chooses the storage.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Replaces the options.
    pub fn options(mut self, options: NodeOptions) -> Self {
        self.options = options;
        self
    }

    /// Opens storage, starts Raft and, on a node that has never been part of
    /// a cluster, bootstraps the configured members.
    ///
    /// Bootstrap is safe when all nodes start at once in any order: every
    /// node with empty storage initialises with the same member map, which
    /// openraft accepts; a node with data is never initialised again.
    pub async fn start(self) -> Result<RaftNode, StartError> {
        let config = self.config;
        config.validate()?;
        let local = config.node.clone();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let raft_config = openraft::Config {
            cluster_name: config.cluster_name.clone(),
            heartbeat_interval: ms(config.heartbeat_interval),
            election_timeout_min: ms(config.election_timeout_min),
            election_timeout_max: ms(config.election_timeout_max),
            install_snapshot_timeout: ms(config.election_timeout_max.max(Duration::from_secs(2))),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.options.snapshot_every),
            snapshot_max_chunk_size: 1024 * 1024,
            max_in_snapshot_log_to_keep: self.options.logs_to_keep,
            purge_batch_size: 64,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| StartError::Timings(e.to_string()))?;

        let dir = match &self.storage {
            Storage::FromConfig => config.persistent_state_path.clone(),
            Storage::Memory => None,
            Storage::Disk(dir) => Some(dir.clone()),
        };
        let (log_store, snapshots) = match &dir {
            Some(dir) => {
                let identity = StoreIdentity {
                    node_id: local.id,
                    cluster_name: config.cluster_name.clone(),
                };
                let log = LogStore::open(&dir.join("log"), &identity)?;
                let snapshots = SnapshotStore::open(&dir.join("snapshots"))
                    .map_err(|e| StartError::SnapshotStore(e.to_string()))?;
                (log, snapshots)
            }
            None => (LogStore::memory(), SnapshotStore::memory()),
        };
        let sm = StateMachineStore::open(snapshots, self.options.state_machine.clone())?;

        let contacts = PeerContacts::new();
        let network = match &self.transport {
            Transport::Http => NetworkFactory::http(
                HttpNetworkFactory::new(HttpClientConfig {
                    local: local.id,
                    secret: config.secret.clone(),
                    #[cfg(feature = "tls")]
                    tls: self.options.tls.clone(),
                }),
                contacts,
            ),
            #[cfg(feature = "test-util")]
            Transport::Memory(net) => NetworkFactory::memory(net.factory(local.id), contacts),
        };
        let raft = Raft::new(
            local.id,
            Arc::new(raft_config),
            network.clone(),
            log_store,
            sm.clone(),
        )
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;
        let lease = config.election_timeout_max.saturating_sub(
            self.options
                .lease_margin
                .unwrap_or(config.heartbeat_interval),
        );
        let handover_timeout = self
            .options
            .handover_timeout
            .unwrap_or(config.election_timeout_max * 4);
        let reachability_window = self
            .options
            .reachability_window
            .unwrap_or_else(|| crate::quorum::default_window(config.election_timeout_max));
        let (leadership, _) = watch::channel(Leadership::default());
        let inner = Arc::new(Inner {
            raft,
            info: local,
            config,
            leadership,
            sm,
            network,
            transferring: AtomicBool::new(false),
            retiring: AtomicBool::new(false),
            claim: LeaseWord::new(),
            stopped: AtomicBool::new(false),
            lease,
            handover_timeout,
            options: self.options,
            leader_changes: AtomicU64::new(0),
            recent_changes: Mutex::new(VecDeque::new()),
            leader_since: Mutex::new(None),
            reachability_window,
            membership_change: Arc::new(AtomicBool::new(false)),
            elected_for: Mutex::new(None),
            shutdown: CancellationToken::new(),
            watcher: Mutex::new(None),
            #[cfg(feature = "test-util")]
            memory: match self.transport {
                Transport::Memory(net) => Some(net),
                Transport::Http => None,
            },
        });
        #[cfg(feature = "test-util")]
        if let Some(net) = &inner.memory {
            let node = RaftNode {
                inner: inner.clone(),
            };
            net.register(inner.info.id, node.rpc_handler());
        }
        let raft = &inner.raft;
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        if !initialized && !inner.options.bootstrap {
            tracing::info!(target: TARGET, node_id = %inner.info.id, "empty storage; waiting to be added to a cluster");
        } else if !initialized {
            let members: BTreeMap<NodeId, BasicNode> = inner
                .config
                .all_nodes()
                .map(|n| (n.id, BasicNode::new(n.endpoint.as_str())))
                .collect();
            let first = members.keys().next().copied();
            match raft.initialize(members).await {
                Ok(()) => {
                    tracing::info!(target: TARGET, node_id = %inner.info.id, "bootstrapped the configured members");
                    // Every node started at once would time out together and
                    // split the vote; the lowest id stands at once instead,
                    // and the others' timers remain the fallback.
                    if first == Some(inner.info.id) {
                        let _ = raft.trigger().elect().await;
                    }
                }
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                    tracing::debug!(target: TARGET, "already part of a cluster; not bootstrapping")
                }
                Err(e) => {
                    let _ = raft.shutdown().await;
                    return Err(StartError::Raft(e.to_string()));
                }
            }
        } else {
            tracing::info!(target: TARGET, node_id = %inner.info.id, "restarted from stored state");
        }
        let watcher = tokio::spawn(watch_metrics(inner.clone()));
        *inner.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
        if inner.options.fast_failover {
            tokio::spawn(detect_leader_failure(Arc::downgrade(&inner)));
        }
        Ok(RaftNode { inner })
    }
}

/// A running Raft node. Clones share it.
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
    network: NetworkFactory,
    transferring: AtomicBool,
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
    shutdown: CancellationToken,
    watcher: Mutex<Option<JoinHandle<()>>>,
    #[cfg(feature = "test-util")]
    memory: Option<crate::network::memory::MemoryNetwork>,
}

/// The leadership claim in a single atomic word: 0 when this node does not
/// lead under a valid lease, otherwise one plus the lease deadline in
/// nanoseconds since `base` (`u64::MAX`: no deadline). One word, so a reader
/// never combines a claim with another snapshot's deadline.
struct LeaseWord {
    base: Instant,
    word: AtomicU64,
}

impl LeaseWord {
    fn new() -> Self {
        LeaseWord {
            base: Instant::now(),
            word: AtomicU64::new(0),
        }
    }

    fn store(&self, snapshot: &Leadership) {
        let claims = snapshot.claims_leadership();
        let word = match (claims, snapshot.lease_deadline) {
            (false, _) => 0,
            (true, None) => u64::MAX,
            (true, Some(deadline)) => {
                let nanos = deadline.saturating_duration_since(self.base).as_nanos();
                u64::try_from(nanos).unwrap_or(u64::MAX).min(u64::MAX - 2) + 1
            }
        };
        self.word.store(word, Ordering::Release);
    }

    fn is_leader(&self) -> bool {
        match self.word.load(Ordering::Acquire) {
            0 => false,
            u64::MAX => true,
            word => Instant::now() < self.base + Duration::from_nanos(word - 1),
        }
    }
}

impl Inner {
    /// Handing leadership over, or retiring: not claiming leadership.
    pub(crate) fn stepping_down(&self) -> bool {
        self.transferring.load(Ordering::SeqCst) || self.retiring.load(Ordering::SeqCst)
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
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("node", &self.inner.info)
            .field("leadership", &*self.inner.leadership.borrow())
            .finish()
    }
}

/// A health snapshot of a node.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RaftHealth {
    /// Raft runs (it has not stopped on a fatal error or shut down).
    pub running: bool,
    /// The fatal error that stopped Raft, if any.
    pub fatal: Option<String>,
    /// This node's role.
    pub role: Role,
    /// The current term.
    pub term: u64,
    /// The known leader.
    pub leader: Option<LeaderInfo>,
    /// Whether this node leads under a valid lease.
    pub lease_valid: bool,
    /// Entries in the log that are not applied yet.
    pub apply_lag: u64,
    /// How far behind the leader this node's log is, where known (leader
    /// only knows its followers; followers report 0).
    pub replication_lag: u64,
    /// Leader changes seen since start.
    pub leader_changes: u64,
    /// Leader changes seen in the last ten seconds.
    pub recent_leader_changes: usize,
    /// On a leader: the voters that did not answer within the reachability
    /// window (see [`crate::membership`]), in id order. Empty on other nodes,
    /// and during a leader's first window (no voter could have answered
    /// yet).
    pub unreachable_voters: Vec<NodeId>,
    /// Whether this node is in touch with a quorum. On a leader: the
    /// reachable voters (itself included) are a majority of every voter
    /// configuration. Elsewhere: a leader is known and was heard from
    /// within the reachability window — a follower cannot see the leader's
    /// other contacts.
    pub quorum_reachable: bool,
}

/// A member of the cluster, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// The member.
    pub node: NodeInfo,
    /// Whether it votes.
    pub voter: bool,
}

/// The status of a node, for `/cluster/status`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeStatus {
    /// This node.
    pub node: NodeInfo,
    /// The leadership snapshot.
    pub leadership: Leadership,
    /// The members, voters and learners.
    pub members: Vec<MemberStatus>,
    /// The last log index.
    pub last_log_index: u64,
    /// The last applied log index.
    pub last_applied: u64,
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

    /// A builder for a node from `config`.
    pub fn builder(config: ClusterConfig) -> RaftNodeBuilder {
        RaftNodeBuilder {
            config,
            transport: Transport::default(),
            storage: Storage::default(),
            options: NodeOptions::default(),
        }
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

    /// The health snapshot.
    pub fn health(&self) -> RaftHealth {
        let m = self.metrics();
        let leadership = self.inner.leadership.borrow().clone();
        let last_log = m.last_log_index.unwrap_or(0);
        let applied = m.last_applied.map_or(0, |l| l.index);
        let replication_lag = m
            .replication
            .as_ref()
            .map(|r| {
                r.values()
                    .map(|matched| last_log.saturating_sub(matched.map_or(0, |l| l.index)))
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        let recent = {
            let mut recent = self
                .inner
                .recent_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            prune_recent(&mut recent);
            recent.len()
        };
        let (unreachable_voters, quorum_reachable) = self.quorum_health(&m);
        RaftHealth {
            running: m.running_state.is_ok() && m.state != ServerState::Shutdown,
            fatal: m.running_state.err().map(|e| e.to_string()),
            role: leadership.role,
            term: m.current_term,
            lease_valid: leadership.is_leader(),
            leader: leadership.leader,
            apply_lag: last_log.saturating_sub(applied),
            replication_lag,
            leader_changes: self.inner.leader_changes.load(Ordering::Relaxed),
            recent_leader_changes: recent,
            unreachable_voters,
            quorum_reachable,
        }
    }

    /// The node's status: leadership, members and log positions.
    pub fn status(&self) -> NodeStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let members = membership
            .nodes()
            .filter_map(|(id, node)| {
                Endpoint::parse(&node.addr)
                    .ok()
                    .map(|endpoint| MemberStatus {
                        node: NodeInfo::new(*id, endpoint),
                        voter: voters.contains(id),
                    })
            })
            .collect();
        NodeStatus {
            node: self.inner.info.clone(),
            leadership: self.inner.leadership.borrow().clone(),
            members,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |l| l.index),
        }
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
    pub async fn write(
        &self,
        op: Operation,
        request_id: Option<String>,
    ) -> Result<CommandResponse, ClusterError> {
        let command = Command {
            request_id,
            leader_time_ms: wall_clock_ms(),
            op,
        };
        validate_command(&command).map_err(ClusterError::InvalidRequest)?;
        if self.inner.stepping_down() {
            return Err(NotLeader::new(NotLeaderReason::Transferring).into());
        }
        let deadline = self.inner.options.write_timeout;
        match tokio::time::timeout(deadline, self.inner.raft.client_write(command)).await {
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                Err(self.not_leader_from(Some(&f)).into())
            }
            Ok(Err(RaftError::APIError(e))) => Err(ClusterError::Other(Box::new(e))),
            Ok(Err(RaftError::Fatal(e))) => Err(fatal(e)),
            Err(_) => Err(ClusterError::UnknownOutcome {
                operation: "the write",
                after: deadline,
            }),
        }
    }

    /// Hands leadership to `to`, or to the most up-to-date voter, and waits
    /// (bounded) until a new leader is known. Returns the new leader.
    ///
    /// This node stops claiming leadership first (so leader-only work stops
    /// and `is_leader()` turns false), then asks exactly one successor to
    /// start an election. If no successor takes over in time, this node
    /// resumes leading.
    pub async fn transfer_leadership(&self, to: Option<NodeId>) -> Result<NodeId, ClusterError> {
        self.hand_over(to, false).await
    }

    /// [`transfer_leadership`](RaftNode::transfer_leadership); with
    /// `retiring`, the node goes straight from handing over to retired, with
    /// no moment in between in which it would claim leadership again.
    async fn hand_over(&self, to: Option<NodeId>, retiring: bool) -> Result<NodeId, ClusterError> {
        let m = self.metrics();
        if m.state != ServerState::Leader {
            return Err(self.not_leader_from(None).into());
        }
        let me = self.inner.info.id;
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let target = match to {
            Some(id) if id == me => return Ok(me),
            Some(id) if !voters.contains(&id) => {
                return Err(ClusterError::InvalidRequest(format!(
                    "node {id} is not a voter"
                )))
            }
            Some(id) => id,
            None => {
                let matched = m.replication.clone().unwrap_or_default();
                voters
                    .iter()
                    .filter(|id| **id != me)
                    .max_by_key(|id| {
                        (
                            matched.get(id).copied().flatten().map(|l| l.index),
                            std::cmp::Reverse(**id),
                        )
                    })
                    .copied()
                    .ok_or_else(|| {
                        ClusterError::InvalidRequest("no other voter to hand over to".into())
                    })?
            }
        };
        let addr = membership
            .get_node(&target)
            .map(|n| n.addr.clone())
            .unwrap_or_default();

        // openraft's leader grants a successor's vote only once its own vote
        // is older than the leader lease: wait for that while still leading.
        let lease = self.inner.config.election_timeout_max;
        if let Ok(Some(elected_at)) = self
            .inner
            .raft
            .with_raft_state(|st| st.vote_last_modified())
            .await
        {
            tokio::time::sleep_until(elected_at + lease + Duration::from_millis(1)).await;
        }

        self.inner.transferring.store(true, Ordering::SeqCst);
        republish(&self.inner, &self.metrics());
        tracing::info!(target: TARGET, to = %target, term = m.current_term, "handing leadership over");

        let timeout = self.inner.handover_timeout;
        let outcome = async {
            // The successor must hold every entry the leader has, or the
            // leader will not vote for it. New writes are refused from here.
            let mut metrics = self.inner.raft.metrics();
            let caught_up = tokio::time::timeout(timeout, async {
                metrics
                    .wait_for(|m| {
                        let last = m.last_log_index;
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&target).copied().flatten())
                            .is_some_and(|matched| Some(matched.index) >= last)
                    })
                    .await
                    .map(|_| ())
            })
            .await;
            if !matches!(caught_up, Ok(Ok(()))) {
                return Err(ClusterError::Timeout {
                    operation: "waiting for the successor to catch up",
                    after: timeout,
                });
            }
            // Ask the successor to stand; followers that heard from this
            // leader recently refuse to vote until their lease lapses, so in
            // clusters of five or more stop heartbeats after a first try.
            let deadline = Instant::now() + timeout;
            let mut paused = false;
            let result = loop {
                let request = ElectRequest {
                    from: me,
                    term: m.current_term,
                };
                let answer: ElectResult = self
                    .inner
                    .network
                    .call(target, &addr, RaftRpc::Elect, &request, timeout)
                    .await
                    .map_err(|e| ClusterError::Other(e.into()))?;
                answer.map_err(|e| ClusterError::Other(e.into()))?;
                let round = (Instant::now() + lease).min(deadline);
                let mut metrics = self.inner.raft.metrics();
                let waited = tokio::time::timeout_at(round, async {
                    metrics
                        .wait_for(|m| m.current_leader.is_some_and(|l| l != me))
                        .await
                        .map(|m| m.current_leader)
                })
                .await;
                match waited {
                    Ok(Ok(Some(leader))) => break Ok(leader),
                    Ok(_) => break Err(ClusterError::Shutdown),
                    Err(_) if Instant::now() >= deadline => {
                        break Err(ClusterError::Timeout {
                            operation: "leadership hand-over",
                            after: timeout,
                        })
                    }
                    Err(_) => {
                        if !paused {
                            self.inner.raft.runtime_config().heartbeat(false);
                            paused = true;
                        }
                    }
                }
            };
            if paused {
                self.inner.raft.runtime_config().heartbeat(true);
            }
            result
        }
        .await;
        if retiring {
            self.inner.retiring.store(true, Ordering::SeqCst);
        }
        self.inner.transferring.store(false, Ordering::SeqCst);
        republish(&self.inner, &self.metrics());
        match &outcome {
            Ok(leader) => {
                tracing::info!(target: TARGET, new_leader = %leader, "leadership handed over")
            }
            Err(e) => tracing::warn!(target: TARGET, error = %e, "hand-over failed; still leading"),
        }
        outcome
    }

    /// Prepares the node to stop: it stops campaigning and claiming
    /// leadership for good, and a leader hands leadership over (bounded) to
    /// the most up-to-date voter. The node keeps serving Raft RPCs and
    /// forwarding requests (see `ForwardToLeader`'s hand-over grace hop)
    /// until it is stopped. Returns the successor, if this node led.
    pub async fn retire(&self) -> Option<NodeId> {
        self.inner.raft.runtime_config().elect(false);
        let m = self.metrics();
        let others = m
            .membership_config
            .membership()
            .voter_ids()
            .any(|id| id != self.inner.info.id);
        let successor = if m.state == ServerState::Leader && others {
            match self.hand_over(None, true).await {
                Ok(leader) => Some(leader),
                Err(e) => {
                    tracing::warn!(target: TARGET, error = %e, "retiring without a successor");
                    None
                }
            }
        } else {
            None
        };
        self.inner.retiring.store(true, Ordering::SeqCst);
        republish(&self.inner, &self.metrics());
        successor
    }

    /// Stops the node gracefully: [`retire`](RaftNode::retire) (a leader
    /// hands over first), then Raft stops.
    pub async fn shutdown(&self) {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        self.retire().await;
        self.stop_now().await;
    }

    /// Stops the node at once, without handing leadership over: what a
    /// crash looks like to the other nodes.
    pub async fn stop_now(&self) {
        if self.inner.stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        #[cfg(feature = "test-util")]
        if let Some(net) = &self.inner.memory {
            net.unregister(self.inner.info.id);
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(target: TARGET, error = %e, "raft did not shut down cleanly");
        }
        self.inner.shutdown.cancel();
        let watcher = self
            .inner
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        self.inner.leadership.send_modify(|l| {
            l.role = Role::Shutdown;
            l.leader = None;
            l.lease_valid = false;
            l.lease_deadline = None;
            l.epoch += 1;
            self.inner.claim.store(l);
        });
        tracing::info!(target: TARGET, node_id = %self.inner.info.id, "raft node stopped");
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

fn prune_recent(recent: &mut VecDeque<Instant>) {
    let horizon = Duration::from_secs(10);
    while recent.front().is_some_and(|t| t.elapsed() > horizon) {
        recent.pop_front();
    }
}

/// Computes the leadership snapshot from openraft's metrics.
fn snapshot_from(inner: &Inner, m: &RaftMetrics<NodeId, BasicNode>, now: Instant) -> Leadership {
    let role = match m.state {
        ServerState::Leader => Role::Leader,
        ServerState::Follower => Role::Follower,
        ServerState::Candidate => Role::Candidate,
        ServerState::Learner => Role::Learner,
        ServerState::Shutdown => Role::Shutdown,
    };
    let leader = m.current_leader.map(|id| LeaderInfo {
        id,
        endpoint: m
            .membership_config
            .membership()
            .get_node(&id)
            .and_then(|n| Endpoint::parse(&n.addr).ok()),
    });
    let (lease_valid, lease_deadline) = match (m.state, m.millis_since_quorum_ack) {
        (ServerState::Leader, Some(age)) if m.running_state.is_ok() => {
            let deadline = now.checked_sub(Duration::from_millis(age)).unwrap_or(now) + inner.lease;
            (deadline > now, Some(deadline))
        }
        _ => (false, None),
    };
    Leadership {
        role,
        term: m.current_term,
        leader,
        lease_valid,
        lease_deadline,
        transferring: inner.stepping_down(),
        epoch: 0,
    }
}

/// Publishes a new snapshot; a change of the lease deadline alone is stored
/// without waking subscribers.
fn publish(inner: &Inner, mut next: Leadership) {
    inner.leadership.send_if_modified(|current| {
        next.epoch = current.epoch;
        if next == *current {
            return false;
        }
        let only_deadline = Leadership {
            lease_deadline: current.lease_deadline,
            ..next.clone()
        } == *current;
        let leader_moved =
            current.leader.as_ref().map(|l| l.id) != next.leader.as_ref().map(|l| l.id);
        if leader_moved {
            *inner.leader_since.lock().unwrap_or_else(|e| e.into_inner()) =
                next.leader.as_ref().map(|_| Instant::now());
        }
        if leader_moved && next.leader.is_some() {
            inner.leader_changes.fetch_add(1, Ordering::Relaxed);
            let mut recent = inner
                .recent_changes
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            recent.push_back(Instant::now());
            prune_recent(&mut recent);
        }
        if only_deadline {
            current.lease_deadline = next.lease_deadline;
            inner.claim.store(current);
            return false;
        }
        next.epoch += 1;
        tracing::debug!(
            target: TARGET,
            node_id = %inner.info.id,
            role = %next.role,
            term = next.term,
            leader_id = ?next.leader.as_ref().map(|l| l.id),
            lease_valid = next.lease_valid,
            "leadership changed"
        );
        *current = next;
        inner.claim.store(current);
        true
    });
}

fn republish(inner: &Inner, m: &RaftMetrics<NodeId, BasicNode>) {
    publish(inner, snapshot_from(inner, m, Instant::now()));
}

async fn watch_metrics(inner: Arc<Inner>) {
    let mut metrics = inner.raft.metrics();
    loop {
        let snapshot = {
            let m = metrics.borrow_and_update();
            snapshot_from(&inner, &m, Instant::now())
        };
        let deadline = snapshot.lease_deadline.filter(|_| snapshot.lease_valid);
        publish(&inner, snapshot);
        let lapse = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = inner.shutdown.cancelled() => break,
            changed = metrics.changed() => if changed.is_err() { break },
            () = lapse => {}
        }
    }
}

/// The fast failure detector.
///
/// openraft's own timer starts an election `election_timeout_max` plus a
/// random `[min, max)` after the last message from the leader, on a tick of
/// 1.5 heartbeats; with three nodes the two survivors often time out on the
/// same tick and split the vote. This detector lets the survivors stand one
/// after the other instead: a follower that has not heard from its leader for
/// the whole leader lease (`election_timeout_max`) triggers an election after
/// a further delay of its rank among the other voters (by id) times one
/// heartbeat interval. Safety is unchanged: voters still refuse to vote while
/// they hear from a live leader.
async fn detect_leader_failure(weak: std::sync::Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let heartbeat = inner.config.heartbeat_interval;
    let lease = inner.config.election_timeout_max;
    let me = inner.info.id;
    let shutdown = inner.shutdown.clone();
    drop(inner);
    let poll = (heartbeat / 4).max(Duration::from_millis(5));
    let mut last_attempt: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(poll) => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        if inner.stepping_down() {
            continue;
        }
        let view = inner
            .raft
            .with_raft_state(move |st| {
                let membership = st.membership_state.effective().membership();
                let leader = st.vote_ref().leader_id().voted_for();
                let mut others: Vec<NodeId> = membership
                    .voter_ids()
                    .filter(|id| Some(*id) != leader)
                    .collect();
                others.sort();
                let rank = others.iter().position(|id| *id == me);
                (st.server_state, st.vote_last_modified(), rank)
            })
            .await;
        let Ok((ServerState::Follower, Some(heard), Some(rank))) = view else {
            continue;
        };
        let stagger = heartbeat * u32::try_from(rank).unwrap_or(u32::MAX);
        let now = Instant::now();
        if now < heard + lease + stagger {
            continue;
        }
        if last_attempt.is_some_and(|t| now < t + lease) {
            continue;
        }
        last_attempt = Some(now);
        tracing::info!(
            target: TARGET,
            node_id = %me,
            silent_ms = now.duration_since(heard).as_millis() as u64,
            rank,
            "no word from the leader for a whole lease; starting an election"
        );
        if inner.raft.trigger().elect().await.is_err() {
            return;
        }
    }
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
