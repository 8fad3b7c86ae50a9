//! The settings of a node beyond the cluster configuration: how it reaches
//! its peers ([`Transport`]), where it keeps its state ([`Storage`]) and
//! its timings and policies ([`NodeOptions`]).

use std::path::PathBuf;
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use super::proposer::BatchOptions;
#[cfg(feature = "test-util")]
use crate::network::faults::NetFaults;
#[cfg(feature = "test-util")]
use crate::network::memory::MemoryNetwork;
use crate::state_machine::StateMachineConfig;

/// How a node reaches its peers.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Transport {
    /// Raft RPCs over HTTP (the default).
    #[default]
    Http,
    /// The in-process network of [`crate::network::memory`], for tests.
    #[cfg(feature = "test-util")]
    Memory(MemoryNetwork),
    /// Raft RPCs over HTTP through the fault rules of
    /// [`crate::network::faults`], for tests: real sockets, injected drops,
    /// delays, duplicates, reorders, cuts, partitions and pauses.
    #[cfg(feature = "test-util")]
    FaultyHttp(NetFaults),
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
///
/// Start from the defaults and change what you need (the struct is
/// `#[non_exhaustive]`: use the setters):
///
/// ```
/// use std::time::Duration;
/// use catga_cluster_raft::NodeOptions;
///
/// let options = NodeOptions::default()
///     .write_timeout(Duration::from_secs(2))
///     .snapshot_every(10_000)
///     .bootstrap(false); // this node joins a running cluster
/// assert_eq!(options.write_timeout, Duration::from_secs(2));
/// assert!(!options.bootstrap);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeOptions {
    /// The deadline of every write. A write that misses it has an unknown
    /// outcome.
    pub write_timeout: Duration,
    /// The safety margin subtracted from the lease (see the
    /// [lease rule](crate::node#lease-rule)).
    /// Defaults to the heartbeat interval.
    pub lease_margin: Option<Duration>,
    /// How long a hand-over waits for the successor to take over.
    pub handover_timeout: Option<Duration>,
    /// Take a snapshot after this many log entries. With group commit an
    /// entry may carry many writes (up to
    /// [`BatchOptions::max_commands`]), so under load this spans more
    /// writes than entries; the log's memory stays bounded by
    /// [`LogStoreOptions::cache_bytes`](crate::log_store::LogStoreOptions::cache_bytes)
    /// whatever it spans.
    pub snapshot_every: u64,
    /// How many log entries a snapshot leaves in the log (a follower that
    /// lags further receives the snapshot instead).
    pub logs_to_keep: u64,
    /// State machine settings.
    pub state_machine: StateMachineConfig,
    /// How concurrent writes are grouped into log entries (group commit).
    pub batching: BatchOptions,
    /// How long [`RaftNode::add_member`](crate::RaftNode::add_member) waits
    /// for a new member to catch up as a learner (default 10 s) before it
    /// removes the learner again and fails with `member-unreachable`. The
    /// whole call is bounded by
    /// [`RaftNode::membership_change_bound`](crate::RaftNode::membership_change_bound):
    /// keep that under the deadline of whatever serves the call
    /// (catga-cluster-axum's `Limits::admin_timeout`, 30 s by default).
    pub catch_up_timeout: Duration,
    /// How recently a voter must have answered an RPC of this node to count
    /// as reachable, for the quorum checks of membership changes and for
    /// health (see [`crate::membership`]). `None` (the default):
    /// `max(2 × election_timeout_max, 500 ms)`.
    pub reachability_window: Option<Duration>,
    /// Whether a node with empty storage bootstraps the configured members.
    /// Turn it off for a node that joins a running cluster: it then waits
    /// until the leader adds it. The configuration can say the same
    /// (`Cluster.ColdStart = false`); the node bootstraps only if both
    /// allow it.
    pub bootstrap: bool,
    /// Whether the crash fast path runs: followers watch their leader's
    /// process and, when it dies, elect a successor at once instead of
    /// after the leader lease (see the
    /// [crash fail-over](crate::node#crash-fail-over)). `None` (the
    /// default): as the configuration says (`Cluster.FastFailover`,
    /// [`ClusterConfig::fast_failover`](catga_cluster_core::config::ClusterConfig::fast_failover),
    /// on unless turned off).
    pub fast_failover: Option<bool>,
    /// Whether the timer path is staggered: a follower that has heard
    /// nothing from its leader for a whole lease stands after a further
    /// delay of its rank among the other voters (by id) times one
    /// heartbeat, so that the survivors stand one after the other instead
    /// of splitting the vote on openraft's own timer (default on).
    pub staggered_elections: bool,
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
            batching: BatchOptions::default(),
            catch_up_timeout: Duration::from_secs(10),
            reachability_window: None,
            bootstrap: true,
            fast_failover: None,
            staggered_elections: true,
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

    /// Sets [`batching`](NodeOptions::batching).
    pub fn batching(mut self, batching: BatchOptions) -> Self {
        self.batching = batching;
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

    /// Sets [`fast_failover`](NodeOptions::fast_failover), over what the
    /// configuration says.
    pub fn fast_failover(mut self, enabled: bool) -> Self {
        self.fast_failover = Some(enabled);
        self
    }

    /// Sets [`staggered_elections`](NodeOptions::staggered_elections).
    pub fn staggered_elections(mut self, enabled: bool) -> Self {
        self.staggered_elections = enabled;
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
