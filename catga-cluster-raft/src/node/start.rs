//! Starting and stopping a node: [`RaftNodeBuilder`] opens storage, starts
//! openraft, bootstraps the configured members on empty storage and spawns
//! the node's tasks (the metrics watcher, the leader watch of the crash
//! fast path and the staggered election timer);
//! [`RaftNode::shutdown`] and [`RaftNode::stop_now`] end them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use catga_cluster_core::config::{ClusterConfig, ConfigError};
use catga_cluster_core::{Leadership, NodeId};
use openraft::error::{Fatal, InitializeError, RaftError};
use openraft::BasicNode;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::forwarder::Forwarder;
use super::lease::LeaseWord;
use super::options::{NodeOptions, Storage, Transport};
use super::proposer::Proposer;
use super::{failover, publish, Inner, RaftNode, TARGET};
use crate::log_store::{LogStore, LogStoreError, StoreIdentity};
use crate::network::contacts::PeerContacts;
use crate::network::http_client::{HttpClientConfig, HttpNetworkFactory};
use crate::quorum;
use crate::snapshot_store::{SnapshotStore, SnapshotStoreError};
use crate::state_machine::{StateMachineError, StateMachineStore};
use crate::transport::NetworkFactory;
use crate::types::Raft;

/// Why a node could not start. Each variant keeps its cause as its
/// [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is not valid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The Raft timings are not valid.
    #[error("invalid Raft timings: {0}")]
    Timings(#[from] openraft::ConfigError),
    /// The log could not be opened.
    #[error(transparent)]
    LogStore(#[from] LogStoreError),
    /// The snapshot store could not be opened.
    #[error("cannot open the snapshot store: {0}")]
    SnapshotStore(#[from] SnapshotStoreError),
    /// The state machine could not be restored.
    #[error(transparent)]
    StateMachine(#[from] StateMachineError),
    /// openraft refused to start.
    #[error("raft failed to start: {0}")]
    Raft(#[from] Fatal<NodeId>),
    /// openraft refused to bootstrap the configured members.
    #[error("raft failed to start: cannot bootstrap the configured members: {0}")]
    Bootstrap(#[from] RaftError<NodeId, InitializeError<NodeId, BasicNode>>),
}

/// Builds a [`RaftNode`]: from [`RaftNode::builder`], choose the transport,
/// the storage and the options, then [`start`](RaftNodeBuilder::start).
///
/// ```no_run
/// use std::time::Duration;
/// use catga_cluster_core::config::ClusterConfig;
/// use catga_cluster_raft::{NodeOptions, RaftNode, Storage};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ClusterConfig::load(Some("appsettings.json".as_ref()))?;
/// let node = RaftNode::builder(config)
///     .storage(Storage::Disk("/var/lib/orders/raft".into()))
///     .options(NodeOptions::default().write_timeout(Duration::from_secs(2)))
///     .start()
///     .await?;
/// # let _ = node;
/// # Ok(()) }
/// ```
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
        .validate()?;

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
                let snapshots = SnapshotStore::open(&dir.join("snapshots"))?;
                (log, snapshots)
            }
            None => (LogStore::memory(), SnapshotStore::memory()),
        };
        let sm = StateMachineStore::open(snapshots, self.options.state_machine.clone())?;

        let contacts = PeerContacts::new();
        let http_config = HttpClientConfig {
            local: local.id,
            secret: config.secret.clone(),
            #[cfg(feature = "tls")]
            tls: self.options.tls.clone(),
            #[cfg(feature = "test-util")]
            faults: None,
        };
        let network = match &self.transport {
            Transport::Http => NetworkFactory::http(HttpNetworkFactory::new(http_config), contacts),
            #[cfg(feature = "test-util")]
            Transport::FaultyHttp(faults) => NetworkFactory::http(
                HttpNetworkFactory::new(HttpClientConfig {
                    faults: Some(faults.clone()),
                    ..http_config
                }),
                contacts,
            ),
            #[cfg(feature = "test-util")]
            Transport::Memory(net) => NetworkFactory::memory(net.factory(local.id), contacts),
        };
        // Before openraft reports any metrics (see `publish.rs`).
        let started = tokio::time::Instant::now();
        let raft = Raft::new(
            local.id,
            Arc::new(raft_config),
            network.clone(),
            log_store,
            sm.clone(),
        )
        .await?;
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
            .unwrap_or_else(|| quorum::default_window(config.election_timeout_max));
        let (leadership, _) = watch::channel(Leadership::default());
        let fast_failover = self.options.fast_failover.unwrap_or(config.fast_failover);
        let shutdown = CancellationToken::new();
        let proposer = Proposer::start(raft.clone(), self.options.batching, shutdown.clone());
        let forwarder = Forwarder::start(self.options.batching, shutdown.clone());
        let inner = Arc::new(Inner {
            raft,
            info: local,
            config,
            leadership,
            sm,
            proposer,
            forwarder,
            network,
            transferring: AtomicBool::new(false),
            writes_in_flight: AtomicUsize::new(0),
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
            fast_failover,
            failover: Mutex::new(failover::FailoverState::default()),
            metrics_reported_after: Mutex::new(started),
            shutdown,
            watcher: Mutex::new(None),
            #[cfg(feature = "test-util")]
            memory: match self.transport {
                Transport::Memory(net) => Some(net),
                Transport::Http | Transport::FaultyHttp(_) => None,
            },
        });
        #[cfg(feature = "test-util")]
        if let Some(net) = &inner.memory {
            let node = RaftNode {
                inner: inner.clone(),
            };
            net.register(inner.info.id, node.rpc_handler());
        }
        bootstrap(&inner).await?;
        let watcher = tokio::spawn(publish::watch_metrics(inner.clone(), started));
        *inner.watcher.lock().unwrap_or_else(|e| e.into_inner()) = Some(watcher);
        if inner.options.staggered_elections {
            tokio::spawn(failover::timer::stagger_elections(Arc::downgrade(&inner)));
        }
        if inner.fast_failover {
            tokio::spawn(failover::fast::watch_leader(Arc::downgrade(&inner)));
        }
        tokio::spawn(super::expiry::expire_keys(Arc::downgrade(&inner)));
        Ok(RaftNode { inner })
    }
}

/// Bootstraps the configured members on a node that has never been part of
/// a cluster, unless [`NodeOptions::bootstrap`] is off or the configuration
/// says the node joins a running cluster (`Cluster.ColdStart = false`).
async fn bootstrap(inner: &Inner) -> Result<(), StartError> {
    let raft = &inner.raft;
    let initialized = raft.is_initialized().await?;
    let founds = inner.options.bootstrap && inner.config.cold_start;
    if !initialized && !founds {
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
                return Err(StartError::Bootstrap(e));
            }
        }
    } else {
        tracing::info!(target: TARGET, node_id = %inner.info.id, "restarted from stored state");
    }
    Ok(())
}

impl RaftNode {
    /// A builder for a node from `config`.
    pub fn builder(config: ClusterConfig) -> RaftNodeBuilder {
        RaftNodeBuilder {
            config,
            transport: Transport::default(),
            storage: Storage::default(),
            options: NodeOptions::default(),
        }
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
        // No claim from here on: nothing is published any more, and
        // `is_leader()` is false before anything else goes.
        self.inner.claim.withdraw();
        #[cfg(feature = "test-util")]
        if let Some(net) = &self.inner.memory {
            net.unregister(self.inner.info.id);
        }
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(target: TARGET, error = %e, "raft did not shut down cleanly");
        }
        self.inner.shutdown.cancel();
        // Key watches end: nothing is applied here any more.
        self.inner.sm.close_watches();
        let watcher = self
            .inner
            .watcher
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        publish::publish_stopped(&self.inner);
        tracing::info!(target: TARGET, node_id = %self.inner.info.id, "raft node stopped");
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn causes_are_kept_as_sources() {
        let corrupt = SnapshotStoreError::Corrupt {
            path: "snapshot.bin".into(),
            reason: "bad checksum".into(),
        };
        let e = StartError::from(corrupt);
        assert!(
            e.to_string().starts_with(
                "cannot open the snapshot store: corrupt snapshot file snapshot.bin: bad checksum"
            ),
            "{e}"
        );
        assert!(e.source().is_some_and(|s| s.is::<SnapshotStoreError>()));

        let e = StartError::from(Fatal::<NodeId>::Stopped);
        assert_eq!(e.to_string(), "raft failed to start: raft stopped");
        assert!(e.source().is_some_and(|s| s.is::<Fatal<NodeId>>()));

        let timings = openraft::Config {
            election_timeout_min: 300,
            election_timeout_max: 150,
            ..Default::default()
        }
        .validate()
        .map(|_| ())
        .map_err(StartError::from);
        let Err(e) = timings else {
            panic!("a minimum above the maximum is refused")
        };
        assert!(e.to_string().starts_with("invalid Raft timings: "), "{e}");
        assert!(e.source().is_some_and(|s| s.is::<openraft::ConfigError>()));
    }
}
