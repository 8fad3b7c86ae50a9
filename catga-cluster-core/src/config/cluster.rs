//! The configuration of one node: [`ClusterConfig`], its checks and the
//! secure-by-default rule for the transport.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;
use super::fields::Field;
use super::timespan::format_timespan;
use super::tls::TlsConfig;
use crate::keys;
use crate::node::{Endpoint, NodeId, NodeInfo};
use crate::secret::ClusterSecret;

/// The configuration of one cluster node.
///
/// Build it with [`ClusterConfig::single_node`], [`ClusterConfig::new`] or a
/// [`ConfigLoader`](super::ConfigLoader); a value changed by hand should be checked with
/// [`ClusterConfig::validate`]. `Debug` never prints the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The local node.
    pub node: NodeInfo,
    /// The other nodes of the cluster; never contains the local node.
    pub members: Vec<NodeInfo>,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min: Duration,
    /// Upper bound of the randomised election timeout; also bounds how long a
    /// leader may trust its lease.
    pub election_timeout_max: Duration,
    /// How often the leader sends heartbeats; must be below
    /// [`election_timeout_min`](Self::election_timeout_min).
    pub heartbeat_interval: Duration,
    /// Where Raft state is stored; `None` keeps it in memory (lost on restart).
    pub persistent_state_path: Option<PathBuf>,
    /// The secret every cluster request must carry, if any.
    pub secret: Option<ClusterSecret>,
    /// The cluster's name; a node refuses a data directory written by a
    /// cluster of another name.
    pub cluster_name: String,
    /// TLS for cluster traffic, if configured: every endpoint is then
    /// `https://`.
    pub tls: Option<TlsConfig>,
    /// Accept plain `http://` endpoints on other machines although the
    /// cluster has a secret (which then crosses the network in clear text).
    /// See [`ClusterConfig::validate`] and
    /// [`ClusterConfig::insecure_transport_warning`].
    pub allow_insecure_transport: bool,
    /// Whether a leader whose process died is replaced at once (the crash
    /// fast path of `catga-cluster-raft`): followers that see the leader's
    /// connection end abruptly and a fresh connection to its endpoint
    /// refused elect a successor without waiting for the leader lease.
    /// `Cluster.FastFailover`, default `true`; with `false` only the
    /// election timers replace a leader.
    pub fast_failover: bool,
    /// Whether this node, started on empty storage, founds the cluster
    /// with the configured members (`Cluster.ColdStart`, default `true`:
    /// every member listed from the start founds it, the same way). A node
    /// that joins a running cluster sets `false`: it then waits, with an
    /// empty log and no vote, until the leader adds it
    /// (`POST /cluster/members`), instead of founding a cluster of its own
    /// whose elections would disturb the running one.
    pub cold_start: bool,
}

impl ClusterConfig {
    /// Default leader heartbeat period (the seed's 50 ms).
    pub const DEFAULT_HEARTBEAT: Duration = Duration::from_millis(50);
    /// Default lower bound of the election timeout (the seed's 150 ms).
    pub const DEFAULT_ELECTION_TIMEOUT_MIN: Duration = Duration::from_millis(150);
    /// Default upper bound of the election timeout: twice the lower bound.
    pub const DEFAULT_ELECTION_TIMEOUT_MAX: Duration = Duration::from_millis(300);
    /// Default cluster name.
    pub const DEFAULT_CLUSTER_NAME: &'static str = "catga";

    /// A configuration for a cluster of one node, with default timings,
    /// in-memory storage, no secret and no TLS.
    pub fn single_node(node: NodeInfo) -> Self {
        ClusterConfig {
            node,
            members: Vec::new(),
            election_timeout_min: Self::DEFAULT_ELECTION_TIMEOUT_MIN,
            election_timeout_max: Self::DEFAULT_ELECTION_TIMEOUT_MAX,
            heartbeat_interval: Self::DEFAULT_HEARTBEAT,
            persistent_state_path: None,
            secret: None,
            cluster_name: Self::DEFAULT_CLUSTER_NAME.to_owned(),
            tls: None,
            allow_insecure_transport: false,
            fast_failover: true,
            cold_start: true,
        }
    }

    /// A configuration with the given local node and other members and
    /// default settings otherwise, validated.
    pub fn new(node: NodeInfo, members: Vec<NodeInfo>) -> Result<Self, ConfigError> {
        let config = ClusterConfig {
            members,
            ..Self::single_node(node)
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the configuration; the error names the offending key.
    ///
    /// Checks that the durations are non-zero, the heartbeat is below the
    /// election timeout, the maximum election timeout is above the minimum,
    /// members list neither the local node nor one node twice (by id or
    /// endpoint), the secret is not empty and the cluster name is usable.
    ///
    /// Then the transport:
    ///
    /// * with [`tls`](Self::tls), its paths must not be empty, its reload
    ///   interval not zero, and `LocalNodeEndpoint` and every member must be
    ///   `https://`;
    /// * without it, no endpoint may be `https://` (there is nothing to
    ///   serve or verify TLS with);
    /// * **secure by default**: without TLS, a node with a
    ///   [`secret`](Self::secret) and an `http://` endpoint (its own or a
    ///   member's) that is not loopback (`127.0.0.0/8`, `::1`, `localhost`,
    ///   see [`Endpoint::is_loopback`]) is refused, because the secret and
    ///   all cluster traffic would cross the network in clear text — unless
    ///   [`allow_insecure_transport`](Self::allow_insecure_transport) is set;
    ///   then [`insecure_transport_warning`](Self::insecure_transport_warning)
    ///   says what to log.
    ///
    /// ```
    /// use catga_cluster_core::config::{ClusterConfig, ClusterSecret, TlsConfig};
    /// use catga_cluster_core::{Endpoint, NodeInfo};
    ///
    /// let endpoint = |s: &str| Endpoint::parse(s).unwrap();
    /// let mut config = ClusterConfig::new(
    ///     NodeInfo::new(0u64, endpoint("http://node0:5000")),
    ///     vec![NodeInfo::new(1u64, endpoint("http://node1:5000"))],
    /// )?;
    /// config.secret = Some(ClusterSecret::from("s3cret"));
    /// // A secret over plain HTTP between machines is refused...
    /// let err = config.validate().unwrap_err();
    /// assert_eq!(err.key(), Some("Cluster.LocalNodeEndpoint"));
    /// // ...unless explicitly allowed,
    /// config.allow_insecure_transport = true;
    /// config.validate()?;
    /// assert!(config.insecure_transport_warning().is_some());
    /// // or, better, with TLS and https:// endpoints.
    /// config.allow_insecure_transport = false;
    /// config.tls = Some(TlsConfig::new("node0.pem", "node0.key", "ca.pem"));
    /// config.node.endpoint = endpoint("https://node0:5000");
    /// config.members[0].endpoint = endpoint("https://node1:5000");
    /// config.validate()?;
    /// # Ok::<(), catga_cluster_core::config::ConfigError>(())
    /// ```
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (key, value) in [
            (Field::HeartbeatInterval, self.heartbeat_interval),
            (Field::ElectionTimeout, self.election_timeout_min),
            (Field::ElectionTimeoutMax, self.election_timeout_max),
        ] {
            if value.is_zero() {
                return Err(ConfigError::validation(
                    key.key(),
                    "must be greater than zero",
                ));
            }
        }
        if self.heartbeat_interval >= self.election_timeout_min {
            return Err(ConfigError::validation(
                Field::HeartbeatInterval.key(),
                format!(
                    "{} is not below {} ({})",
                    format_timespan(self.heartbeat_interval),
                    Field::ElectionTimeout.key(),
                    format_timespan(self.election_timeout_min)
                ),
            ));
        }
        if self.election_timeout_max <= self.election_timeout_min {
            return Err(ConfigError::validation(
                Field::ElectionTimeoutMax.key(),
                format!(
                    "{} is not above {} ({})",
                    format_timespan(self.election_timeout_max),
                    Field::ElectionTimeout.key(),
                    format_timespan(self.election_timeout_min)
                ),
            ));
        }
        if let Some(secret) = &self.secret {
            if secret.is_empty() {
                return Err(ConfigError::validation(
                    Field::Secret.key(),
                    "must not be empty; omit the key to run without a secret",
                ));
            }
        }
        if self.cluster_name.trim().is_empty() {
            return Err(ConfigError::validation(
                Field::ClusterName.key(),
                "must not be empty",
            ));
        }
        if self.cluster_name.chars().any(char::is_control) {
            return Err(ConfigError::validation(
                Field::ClusterName.key(),
                "must not contain control characters",
            ));
        }

        let mut endpoints: HashMap<&Endpoint, usize> = HashMap::new();
        let mut ids: HashMap<NodeId, usize> = HashMap::new();
        for (i, member) in self.members.iter().enumerate() {
            let key = member_key(i);
            if member.endpoint == self.node.endpoint {
                return Err(ConfigError::validation(
                    key,
                    format!(
                        "`{}` is the local node ({}); {} must list only the other nodes",
                        member.endpoint,
                        Field::LocalNodeEndpoint.key(),
                        Field::Members.key()
                    ),
                ));
            }
            if member.id == self.node.id {
                return Err(ConfigError::validation(
                    key,
                    format!(
                        "id {} is the local node's id ({}); {} must list only the other nodes",
                        member.id,
                        Field::LocalNodeId.key(),
                        Field::Members.key()
                    ),
                ));
            }
            if let Some(first) = endpoints.insert(&member.endpoint, i) {
                return Err(ConfigError::validation(
                    key,
                    format!(
                        "endpoint `{}` is already listed as {}",
                        member.endpoint,
                        member_key(first)
                    ),
                ));
            }
            if let Some(first) = ids.insert(member.id, i) {
                return Err(ConfigError::validation(
                    key,
                    format!(
                        "id {} is already used by {} ({})",
                        member.id,
                        member_key(first),
                        self.members
                            .get(first)
                            .map_or_else(String::new, |m| m.endpoint.to_string())
                    ),
                ));
            }
        }
        self.validate_transport()
    }

    /// The TLS and secure-by-default rules of [`validate`](Self::validate).
    fn validate_transport(&self) -> Result<(), ConfigError> {
        let endpoints = || {
            std::iter::once((Field::LocalNodeEndpoint.key(), &self.node.endpoint)).chain(
                self.members
                    .iter()
                    .enumerate()
                    .map(|(i, member)| (member_key(i), &member.endpoint)),
            )
        };
        if let Some(tls) = &self.tls {
            tls.validate()?;
            if let Some((key, endpoint)) = endpoints().find(|(_, e)| e.scheme() != "https") {
                return Err(ConfigError::validation(
                    key,
                    format!(
                        "`{endpoint}` is plain HTTP but TLS is configured ({}); advertise an https:// endpoint",
                        keys::TLS
                    ),
                ));
            }
            return Ok(());
        }
        // `https://` endpoints without a `Tls` section are left to the
        // application: it may give the clients and the listener TLS in code
        // (`NodeOptions::tls`, `HandshakeListener`).
        if self.secret.is_some() && !self.allow_insecure_transport {
            if let Some((key, endpoint)) =
                endpoints().find(|(_, e)| e.scheme() == "http" && !e.is_loopback())
            {
                return Err(ConfigError::validation(
                    key,
                    format!(
                        "`{endpoint}` is plain HTTP to another machine: the cluster secret and all \
                         cluster traffic would cross the network unencrypted; configure TLS \
                         ({}, {}, {} and optionally {}; environment: Cluster__Tls__CertificatePath, …) \
                         with https:// endpoints, or set {} to true \
                         (Cluster__AllowInsecureTransport=true) to accept plain HTTP",
                        keys::TLS_CERTIFICATE_PATH,
                        keys::TLS_KEY_PATH,
                        keys::TLS_CA_CERTIFICATE_PATH,
                        keys::TLS_REQUIRE_CLIENT_CERTIFICATE,
                        Field::AllowInsecureTransport.key()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A warning to log at start when
    /// [`allow_insecure_transport`](Self::allow_insecure_transport) lets
    /// cluster traffic to another machine go over plain HTTP; `None` when
    /// there is nothing to warn about (TLS is configured, the flag is off,
    /// or every endpoint is loopback).
    ///
    /// ```
    /// use catga_cluster_core::config::ClusterConfig;
    ///
    /// let config = ClusterConfig::loader()
    ///     .env_vars([
    ///         ("Cluster__LocalNodeEndpoint", "http://node0:5000"),
    ///         ("Cluster__Members__0", "http://node1:5000"),
    ///         ("Cluster__Secret", "s3cret"),
    ///         ("Cluster__AllowInsecureTransport", "true"),
    ///     ])
    ///     .build()?;
    /// let warning = config.insecure_transport_warning().unwrap();
    /// assert!(warning.contains("http://node1:5000"), "{warning}");
    /// # Ok::<(), catga_cluster_core::config::ConfigError>(())
    /// ```
    pub fn insecure_transport_warning(&self) -> Option<String> {
        if self.tls.is_some() || !self.allow_insecure_transport {
            return None;
        }
        let plain: Vec<&str> = std::iter::once(&self.node)
            .chain(&self.members)
            .map(|node| &node.endpoint)
            .filter(|endpoint| endpoint.scheme() == "http" && !endpoint.is_loopback())
            .map(Endpoint::as_str)
            .collect();
        if plain.is_empty() {
            return None;
        }
        Some(format!(
            "{} is true: cluster traffic to {} is plain HTTP, neither encrypted nor authenticated by certificates{}; configure TLS ({}, {}, {}) with https:// endpoints for traffic between machines",
            Field::AllowInsecureTransport.key(),
            plain.join(", "),
            if self.secret.is_some() {
                ", and the cluster secret crosses the network in clear text"
            } else {
                ""
            },
            keys::TLS_CERTIFICATE_PATH,
            keys::TLS_KEY_PATH,
            keys::TLS_CA_CERTIFICATE_PATH,
        ))
    }

    /// The local node and the members, sorted by id.
    pub fn all_nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        let mut nodes: Vec<&NodeInfo> = std::iter::once(&self.node)
            .chain(self.members.iter())
            .collect();
        nodes.sort_by_key(|node| node.id);
        nodes.into_iter()
    }

    /// The node (local or member) with the given id.
    pub fn node_by_id(&self, id: NodeId) -> Option<&NodeInfo> {
        std::iter::once(&self.node)
            .chain(self.members.iter())
            .find(|node| node.id == id)
    }

    /// Whether the cluster has no other members.
    pub fn is_single_node(&self) -> bool {
        self.members.is_empty()
    }
}

pub(super) fn member_key(index: usize) -> String {
    format!("{}[{index}]", Field::Members.key())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn ep(s: &str) -> Endpoint {
        Endpoint::parse(s).unwrap()
    }

    #[test]
    fn single_node_and_new() {
        let local = NodeInfo::new(0u64, ep("http://a:1"));
        let config = ClusterConfig::single_node(local.clone());
        assert!(config.is_single_node());
        assert!(config.validate().is_ok());
        assert_eq!(config.election_timeout_max, ms(300));
        assert_eq!(config.cluster_name, "catga");

        let members = vec![
            NodeInfo::new(2u64, ep("http://c:1")),
            NodeInfo::new(1u64, ep("http://b:1")),
        ];
        let config = ClusterConfig::new(local.clone(), members).unwrap();
        let ids: Vec<u64> = config.all_nodes().map(|n| n.id.get()).collect();
        assert_eq!(ids, [0, 1, 2]);
        assert_eq!(
            config.node_by_id(NodeId::new(2)).unwrap().endpoint,
            ep("http://c:1")
        );
        assert_eq!(config.node_by_id(NodeId::new(0)), Some(&local));
        assert!(config.node_by_id(NodeId::new(9)).is_none());

        let err = ClusterConfig::new(local.clone(), vec![local.clone()]).unwrap_err();
        assert_eq!(err.key(), Some("Cluster.Members[0]"));
        assert!(err.to_string().contains("only the other nodes"), "{err}");

        let err =
            ClusterConfig::new(local, vec![NodeInfo::new(0u64, ep("http://z:1"))]).unwrap_err();
        assert_eq!(err.key(), Some("Cluster.Members[0]"));
        assert!(err.to_string().contains("local node's id"), "{err}");
    }

    #[test]
    fn validate_timings() {
        let mut config = ClusterConfig::single_node(NodeInfo::new(0u64, ep("http://a:1")));
        config.heartbeat_interval = ms(200);
        let err = config.validate().unwrap_err();
        assert_eq!(
            err.to_string(),
            "Cluster.HeartbeatInterval: 00:00:00.200 is not below Cluster.ElectionTimeout (00:00:00.150)"
        );
        config.heartbeat_interval = Duration::ZERO;
        assert_eq!(
            config.validate().unwrap_err().key(),
            Some("Cluster.HeartbeatInterval")
        );
        config.heartbeat_interval = ms(50);
        config.election_timeout_max = ms(150);
        let err = config.validate().unwrap_err();
        assert_eq!(err.key(), Some("Cluster.ElectionTimeoutMax"));
        assert!(err.to_string().contains("not above"), "{err}");
        config.election_timeout_max = ms(300);
        config.cluster_name = " ".to_owned();
        assert_eq!(
            config.validate().unwrap_err().key(),
            Some("Cluster.ClusterName")
        );
        config.cluster_name = "a\nb".to_owned();
        assert_eq!(
            config.validate().unwrap_err().key(),
            Some("Cluster.ClusterName")
        );
        config.cluster_name = "catga".to_owned();
        config.secret = Some(ClusterSecret::from(""));
        assert_eq!(config.validate().unwrap_err().key(), Some("Cluster.Secret"));
    }
}
