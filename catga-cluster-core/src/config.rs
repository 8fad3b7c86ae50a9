//! Cluster configuration: the local node, the other members, Raft timings,
//! storage, the cluster secret and TLS, loaded from JSON/TOML files and
//! environment variables.
//!
//! The seed's `appsettings.json` loads unchanged:
//!
//! ```json
//! {
//!   "Cluster": {
//!     "LocalNodeEndpoint": "http://localhost:5000",
//!     "Members": ["http://localhost:5001", "http://localhost:5002"],
//!     "ElectionTimeout": "00:00:00.150",
//!     "HeartbeatInterval": "00:00:00.050",
//!     "PersistentStatePath": "./raft-state"
//!   }
//! }
//! ```
//!
//! # Keys
//!
//! Keys live in a `Cluster` section (other top-level sections such as
//! `Logging` are ignored). A file without a `Cluster` section whose top level
//! holds the cluster keys directly is read as a plain cluster file. Keys match
//! case-insensitively and ignoring `_` and `-`, so `LocalNodeEndpoint`,
//! `localNodeEndpoint` and `local_node_endpoint` are one key. An unknown key in
//! the section is an error that names it.
//!
//! | key | meaning | default |
//! |-----|---------|---------|
//! | `LocalNodeEndpoint` | this node's advertised URL (required) | |
//! | `LocalNodeId` | this node's id: a number or a name like `node0` | derived from the endpoint |
//! | `Members` | the **other** nodes: endpoint strings or `{ "Id": .., "Endpoint": .. }` objects | none (single node) |
//! | `ElectionTimeout` (alias `ElectionTimeoutMin`) | lower bound of the randomised election timeout | 150 ms |
//! | `ElectionTimeoutMax` | upper bound of the election timeout | 2 × `ElectionTimeout` |
//! | `HeartbeatInterval` | leader heartbeat period | 50 ms |
//! | `PersistentStatePath` | data directory; absent or `null` means in-memory storage | in-memory |
//! | `Secret` | shared secret that authenticates cluster traffic | none |
//! | `ClusterName` | name stamped into the data directory | `catga` |
//! | `Tls` | TLS for cluster traffic: an object with the `Tls.*` keys below | none (plain HTTP) |
//! | `Tls.CertificatePath` | PEM file with this node's certificate chain, end-entity certificate first | required with TLS |
//! | `Tls.KeyPath` | PEM file with that certificate's private key (PKCS#8, PKCS#1 or SEC1) | required with TLS |
//! | `Tls.CaCertificatePath` | PEM file with the CA certificate(s) that every node's certificate chains to | required with TLS |
//! | `Tls.RequireClientCertificate` | nodes present their certificate to peers, and protected routes demand a member's certificate | `true` |
//! | `Tls.ReloadInterval` | how often the three files are checked for changes | 10 s |
//! | `AllowInsecureTransport` | accept plain `http://` to other machines although a `Secret` is set | `false` |
//!
//! # TLS and secure by default
//!
//! With `Tls` set ([`TlsConfig`]), cluster traffic is TLS and
//! `LocalNodeEndpoint` and every member must be `https://` endpoints; an
//! `https://` endpoint without `Tls` is an error. A `Tls` object that sets
//! some keys but not all three paths is an error naming the first missing
//! one. `CaCertificatePath` is required: nodes verify each other against it,
//! and no public roots are bundled or trusted. During a CA rotation the file
//! holds the old and the new CA certificate. In TOML the object is a
//! `[cluster.tls]` table. Booleans are `true`/`false` (in
//! any case in strings, so `Cluster__Tls__RequireClientCertificate=False`
//! works).
//!
//! A node with a `Secret` and an `http://` endpoint (its own or a member's)
//! that is not loopback (`127.0.0.0/8`, `::1`, `localhost`) is refused: the
//! secret would cross the network in clear text. Configure TLS, or set
//! `AllowInsecureTransport` to `true` to accept it and log
//! [`ClusterConfig::insecure_transport_warning`] at start.
//!
//! ```
//! use catga_cluster_core::config::ClusterConfig;
//!
//! let config = ClusterConfig::loader()
//!     .json_str(r#"{ "Cluster": {
//!         "LocalNodeEndpoint": "https://node0.example:5000",
//!         "Members": ["https://node1.example:5000", "https://node2.example:5000"],
//!         "Secret": "a-long-random-secret",
//!         "Tls": { "CertificatePath": "/etc/catga/node0.pem",
//!                  "KeyPath": "/etc/catga/node0.key",
//!                  "CaCertificatePath": "/etc/catga/ca.pem" } } }"#)
//!     .build()?;
//! let tls = config.tls.as_ref().unwrap();
//! assert!(tls.require_client_certificate);
//! assert_eq!(tls.reload_interval, std::time::Duration::from_secs(10));
//! # Ok::<(), catga_cluster_core::config::ConfigError>(())
//! ```
//!
//! Durations are .NET `TimeSpan` strings (`00:00:00.150`, `1.02:03:04.5`) or
//! human-readable strings (`150ms`, `1s 500ms`); see [`parse_duration`]. A
//! bare number is rejected because its unit would be a guess.
//!
//! Node ids: an entry with an explicit id (`LocalNodeId`, a member's `Id`)
//! uses it, numbers as-is and names through [`NodeId::from_name`]; an entry
//! without one gets [`NodeId::from_endpoint`]. Both schemes may be mixed, but
//! **every node of a cluster must compute the same id for the same node**, so
//! a node named by id in one node's configuration must be named by the same
//! id in all of them.
//!
//! JSON may contain `//` and `/* */` comments and trailing commas, as .NET's
//! JSON configuration provider allows; a UTF-8 byte-order mark is skipped.
//!
//! # Environment variables
//!
//! As in .NET, variables named `Cluster__<Key>` (the `Cluster__` prefix and
//! the key match case-insensitively) override file values:
//!
//! * `Cluster__LocalNodeEndpoint`, `Cluster__ElectionTimeout`,
//!   `Cluster__Secret`, `Cluster__AllowInsecureTransport`, … set one key
//!   each;
//! * `Cluster__Tls__CertificatePath`, `Cluster__Tls__KeyPath`,
//!   `Cluster__Tls__CaCertificatePath`,
//!   `Cluster__Tls__RequireClientCertificate` and
//!   `Cluster__Tls__ReloadInterval` set one key of the `Tls` object each,
//!   over (not instead of) the `Tls` keys of earlier sources;
//! * `Cluster__Members__0`, `Cluster__Members__1`, … give member endpoints by
//!   index, and `Cluster__Members__0__Id` / `Cluster__Members__0__Endpoint`
//!   give a member's id and endpoint separately. Indices must run from 0
//!   without gaps. When any `Cluster__Members__N` variable is set, the
//!   environment's members **replace** the members of every earlier source.
//!
//! A `Cluster__` variable that names no key is an error naming the variable.
//!
//! # Precedence
//!
//! A [`ConfigLoader`] merges its sources in the order they were added; a later
//! source overrides keys set by an earlier one (the whole `Members` list is
//! one key). [`ClusterConfig::load`] reads the file, then the process
//! environment. [`ConfigLoader::topology_sources`] tells which sources set
//! `LocalNodeEndpoint`, `LocalNodeId` and `Members`, for an application that
//! supplies its own topology when none is configured.
//!
//! ```
//! use std::time::Duration;
//! use catga_cluster_core::config::ClusterConfig;
//!
//! let config = ClusterConfig::loader()
//!     .json_str(r#"{ "Cluster": { "LocalNodeEndpoint": "http://node0:5000",
//!                                 "ElectionTimeout": "00:00:00.200" } }"#)
//!     .env_vars([
//!         ("Cluster__Members__0", "http://node1:5000"),
//!         ("Cluster__Members__1", "http://node2:5000"),
//!     ])
//!     .build()?;
//! assert_eq!(config.members.len(), 2);
//! assert_eq!(config.election_timeout_min, Duration::from_millis(200));
//! assert_eq!(config.election_timeout_max, Duration::from_millis(400));
//! # Ok::<(), catga_cluster_core::config::ConfigError>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Json, Toml};
use figment::value::{Dict, Map, Num, Value};
use figment::{Figment, Metadata, Profile, Provider};

use crate::keys;
use crate::node::{Endpoint, NodeId, NodeInfo};

// ---------------------------------------------------------------------------
// ClusterConfig
// ---------------------------------------------------------------------------

/// The configuration of one cluster node.
///
/// Build it with [`ClusterConfig::single_node`], [`ClusterConfig::new`] or a
/// [`ConfigLoader`]; a value changed by hand should be checked with
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

    /// Loads a JSON or TOML file (by extension), without environment
    /// overrides.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        ConfigLoader::new().file(path).build()
    }

    /// Loads the file, if any, then applies `Cluster__*` overrides from the
    /// process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut loader = ConfigLoader::new();
        if let Some(path) = path {
            loader = loader.file(path);
        }
        loader.process_env().build()
    }

    /// A loader to combine files, strings and environment variables.
    pub fn loader() -> ConfigLoader {
        ConfigLoader::new()
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
        if let Some((key, endpoint)) = endpoints().find(|(_, e)| e.scheme() == "https") {
            return Err(ConfigError::validation(
                key,
                format!(
                    "`{endpoint}` is https:// but TLS is not configured; set {}, {} and {} (environment: Cluster__Tls__CertificatePath, …)",
                    keys::TLS_CERTIFICATE_PATH,
                    keys::TLS_KEY_PATH,
                    keys::TLS_CA_CERTIFICATE_PATH
                ),
            ));
        }
        if self.secret.is_some() && !self.allow_insecure_transport {
            if let Some((key, endpoint)) = endpoints().find(|(_, e)| !e.is_loopback()) {
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

fn member_key(index: usize) -> String {
    format!("{}[{index}]", Field::Members.key())
}

// ---------------------------------------------------------------------------
// ClusterSecret
// ---------------------------------------------------------------------------

/// The shared secret that authenticates requests between cluster nodes.
///
/// `Debug` and `Display` print `ClusterSecret(***)`; the value is only
/// reachable through [`expose`](Self::expose). Equality and
/// [`verify`](Self::verify) take time independent of the secret's content.
#[derive(Clone)]
pub struct ClusterSecret(String);

impl ClusterSecret {
    /// Wraps a secret. An empty secret is rejected by
    /// [`ClusterConfig::validate`].
    pub fn new(secret: impl Into<String>) -> Self {
        ClusterSecret(secret.into())
    }

    /// The secret itself, for sending it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `candidate` equals the secret, compared in time that depends
    /// on the lengths only, never on where the bytes differ. An empty secret
    /// matches nothing.
    pub fn verify(&self, candidate: &[u8]) -> bool {
        let secret = self.0.as_bytes();
        if secret.is_empty() {
            return false;
        }
        let mut diff = u8::from(secret.len() != candidate.len());
        for (i, &byte) in secret.iter().enumerate() {
            let other = candidate.get(i).copied().unwrap_or(!byte);
            diff |= byte ^ other;
        }
        std::hint::black_box(diff) == 0
    }
}

impl From<String> for ClusterSecret {
    fn from(secret: String) -> Self {
        ClusterSecret(secret)
    }
}

impl From<&str> for ClusterSecret {
    fn from(secret: &str) -> Self {
        ClusterSecret(secret.to_owned())
    }
}

impl PartialEq for ClusterSecret {
    fn eq(&self, other: &Self) -> bool {
        (self.is_empty() && other.is_empty()) || self.verify(other.0.as_bytes())
    }
}

impl Eq for ClusterSecret {}

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(***)")
    }
}

impl fmt::Display for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(***)")
    }
}

// ---------------------------------------------------------------------------
// TlsConfig
// ---------------------------------------------------------------------------

/// Where a node's TLS material lives: the `Cluster.Tls` settings.
///
/// All three files are PEM. The certificate file holds this node's
/// certificate chain, end-entity certificate first; the key file its private
/// key (PKCS#8, PKCS#1 or SEC1); the CA file the certificate(s) of the
/// authority that signs the nodes' certificates. **The CA file is required**:
/// peers verify each other's certificates against it, and no public roots are
/// bundled or trusted. During a CA rotation it holds the old and the new CA.
///
/// Relative paths are resolved against the working directory of the process.
/// With the `tls` feature, `ClusterTls::from_config` loads the files and
/// checks them; the files are read again every
/// [`reload_interval`](Self::reload_interval), so renewed certificates are
/// picked up without a restart.
///
/// ```
/// use std::time::Duration;
/// use catga_cluster_core::config::TlsConfig;
///
/// let tls = TlsConfig::new("/etc/catga/node.pem", "/etc/catga/node.key", "/etc/catga/ca.pem")
///     .require_client_certificate(false)
///     .reload_interval(Duration::from_secs(60));
/// assert!(!tls.require_client_certificate);
/// assert_eq!(tls.reload_interval, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The node's certificate chain (`Cluster.Tls.CertificatePath`).
    pub certificate_path: PathBuf,
    /// The certificate's private key (`Cluster.Tls.KeyPath`).
    pub key_path: PathBuf,
    /// The CA certificates the nodes' certificates chain to
    /// (`Cluster.Tls.CaCertificatePath`).
    pub ca_certificate_path: PathBuf,
    /// Whether nodes present their certificate as a client certificate to
    /// peers, and protected routes demand a member's certificate
    /// (`Cluster.Tls.RequireClientCertificate`, default `true`).
    pub require_client_certificate: bool,
    /// How often the files are checked for changes
    /// (`Cluster.Tls.ReloadInterval`, default 10 s).
    pub reload_interval: Duration,
}

impl TlsConfig {
    /// The default [`reload_interval`](Self::reload_interval): 10 s.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

    /// TLS with the given certificate chain, key and CA files, client
    /// certificates required and the default reload interval.
    ///
    /// ```
    /// use catga_cluster_core::config::TlsConfig;
    ///
    /// let tls = TlsConfig::new("node.pem", "node.key", "ca.pem");
    /// assert!(tls.require_client_certificate);
    /// assert_eq!(tls.reload_interval, TlsConfig::DEFAULT_RELOAD_INTERVAL);
    /// ```
    pub fn new(
        certificate_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        ca_certificate_path: impl Into<PathBuf>,
    ) -> Self {
        TlsConfig {
            certificate_path: certificate_path.into(),
            key_path: key_path.into(),
            ca_certificate_path: ca_certificate_path.into(),
            require_client_certificate: true,
            reload_interval: Self::DEFAULT_RELOAD_INTERVAL,
        }
    }

    /// Sets [`require_client_certificate`](Self::require_client_certificate).
    ///
    /// ```
    /// use catga_cluster_core::config::TlsConfig;
    ///
    /// let tls = TlsConfig::new("node.pem", "node.key", "ca.pem").require_client_certificate(false);
    /// assert!(!tls.require_client_certificate);
    /// ```
    pub fn require_client_certificate(mut self, require: bool) -> Self {
        self.require_client_certificate = require;
        self
    }

    /// Sets [`reload_interval`](Self::reload_interval).
    ///
    /// ```
    /// use std::time::Duration;
    /// use catga_cluster_core::config::TlsConfig;
    ///
    /// let tls = TlsConfig::new("node.pem", "node.key", "ca.pem").reload_interval(Duration::from_secs(1));
    /// assert_eq!(tls.reload_interval, Duration::from_secs(1));
    /// ```
    pub fn reload_interval(mut self, every: Duration) -> Self {
        self.reload_interval = every;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, path) in [
            (keys::TLS_CERTIFICATE_PATH, &self.certificate_path),
            (keys::TLS_KEY_PATH, &self.key_path),
            (keys::TLS_CA_CERTIFICATE_PATH, &self.ca_certificate_path),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::validation(key, "must not be empty"));
            }
        }
        if self.reload_interval.is_zero() {
            return Err(ConfigError::validation(
                keys::TLS_RELOAD_INTERVAL,
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// ConfigError
// ---------------------------------------------------------------------------

/// Why a configuration could not be loaded or is invalid.
///
/// Every variant about a value names its key: `Cluster.HeartbeatInterval`,
/// `Cluster.Members[1]`, `Cluster.Members[1].Id`, or the environment variable
/// (`Cluster__Members__2`) when the variable itself is at fault. Messages never
/// contain the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A configuration file could not be read.
    #[error("cannot read config file `{}`: {error}", path.display())]
    FileUnreadable {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A configuration file's extension names no supported format.
    #[error("config file `{}`: unsupported format, the name must end in .json or .toml", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
    },
    /// A source is not well-formed JSON or TOML.
    #[error("cannot parse {}: {message}", parse_origin(format, path.as_deref()))]
    Parse {
        /// `"JSON"` or `"TOML"`.
        format: &'static str,
        /// The file, or `None` for a string source.
        path: Option<PathBuf>,
        /// The parser's message, with the position of the error.
        message: String,
    },
    /// A value has the wrong type or form.
    #[error("{key}: invalid value {value}{}: {reason}", origin_suffix(origin.as_deref()))]
    InvalidValue {
        /// The key, such as `Cluster.ElectionTimeout`.
        key: String,
        /// The value as written, quoted (`***` for the secret).
        value: String,
        /// What is wrong with it.
        reason: String,
        /// Which source set it, such as ``environment variable `Cluster__ElectionTimeout` ``.
        origin: Option<String>,
    },
    /// A required key is not set by any source.
    #[error("{key}: required key is missing")]
    MissingKey {
        /// The key, such as `Cluster.LocalNodeEndpoint`.
        key: String,
    },
    /// A key or environment variable names no setting.
    #[error("{key}: unknown key in {origin}{}; known keys are {known}", suggestion_text(*suggestion))]
    UnknownKey {
        /// The key as written, such as `Cluster.ElectionTimout`.
        key: String,
        /// Which source contains it.
        origin: String,
        /// The known key it most resembles.
        suggestion: Option<&'static str>,
        /// The keys that would have been accepted there.
        known: String,
    },
    /// Values are well-formed but the configuration is inconsistent.
    #[error("{key}: {reason}")]
    Validation {
        /// The key at fault.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// The key (or environment variable) the error is about, if it is about
    /// one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::InvalidValue { key, .. }
            | ConfigError::MissingKey { key }
            | ConfigError::UnknownKey { key, .. }
            | ConfigError::Validation { key, .. } => Some(key),
            ConfigError::FileUnreadable { .. }
            | ConfigError::UnsupportedFormat { .. }
            | ConfigError::Parse { .. } => None,
        }
    }

    fn validation(key: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::Validation {
            key: key.into(),
            reason: reason.into(),
        }
    }

    fn invalid(key: impl Into<String>, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::InvalidValue {
            key: key.into(),
            value: format!("`{value}`"),
            reason: reason.into(),
            origin: None,
        }
    }

    /// Records which source set the offending value.
    fn with_origin(mut self, from: Option<String>) -> Self {
        if let ConfigError::InvalidValue { origin, .. } = &mut self {
            if origin.is_none() {
                *origin = from;
            }
        }
        self
    }
}

fn parse_origin(format: &str, path: Option<&Path>) -> String {
    match path {
        Some(path) => format!("{format} file `{}`", path.display()),
        None => format!("inline {format}"),
    }
}

fn origin_suffix(origin: Option<&str>) -> String {
    origin.map_or_else(String::new, |origin| format!(" (from {origin})"))
}

fn suggestion_text(suggestion: Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean `{s}`?)"))
}

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// The settings of the `Cluster` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    LocalNodeEndpoint,
    LocalNodeId,
    Members,
    ElectionTimeout,
    ElectionTimeoutMax,
    HeartbeatInterval,
    PersistentStatePath,
    Secret,
    ClusterName,
    Tls,
    AllowInsecureTransport,
}

impl Field {
    const ALL: [Field; 11] = [
        Field::LocalNodeEndpoint,
        Field::LocalNodeId,
        Field::Members,
        Field::ElectionTimeout,
        Field::ElectionTimeoutMax,
        Field::HeartbeatInterval,
        Field::PersistentStatePath,
        Field::Secret,
        Field::ClusterName,
        Field::Tls,
        Field::AllowInsecureTransport,
    ];

    /// The .NET spelling, used in messages.
    fn pascal(self) -> &'static str {
        match self {
            Field::LocalNodeEndpoint => "LocalNodeEndpoint",
            Field::LocalNodeId => "LocalNodeId",
            Field::Members => "Members",
            Field::ElectionTimeout => "ElectionTimeout",
            Field::ElectionTimeoutMax => "ElectionTimeoutMax",
            Field::HeartbeatInterval => "HeartbeatInterval",
            Field::PersistentStatePath => "PersistentStatePath",
            Field::Secret => "Secret",
            Field::ClusterName => "ClusterName",
            Field::Tls => "Tls",
            Field::AllowInsecureTransport => "AllowInsecureTransport",
        }
    }

    /// The key under which sources hand the value to figment.
    fn canonical(self) -> &'static str {
        match self {
            Field::LocalNodeEndpoint => "local_node_endpoint",
            Field::LocalNodeId => "local_node_id",
            Field::Members => "members",
            Field::ElectionTimeout => "election_timeout",
            Field::ElectionTimeoutMax => "election_timeout_max",
            Field::HeartbeatInterval => "heartbeat_interval",
            Field::PersistentStatePath => "persistent_state_path",
            Field::Secret => "secret",
            Field::ClusterName => "cluster_name",
            Field::Tls => "tls",
            Field::AllowInsecureTransport => "allow_insecure_transport",
        }
    }

    /// The full key for messages, such as `Cluster.ElectionTimeout`.
    fn key(self) -> String {
        format!("Cluster.{}", self.pascal())
    }

    /// The field a key as written names, if any.
    fn lookup(name: &str) -> Option<Field> {
        let folded = fold_key(name);
        if folded == "electiontimeoutmin" {
            return Some(Field::ElectionTimeout);
        }
        Field::ALL
            .into_iter()
            .find(|field| fold_key(field.pascal()) == folded)
    }

    fn known_list() -> String {
        Field::ALL
            .iter()
            .map(|f| f.pascal())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Fields of an object in `Members`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MemberField {
    Id,
    Endpoint,
}

impl MemberField {
    fn lookup(name: &str) -> Option<MemberField> {
        match fold_key(name).as_str() {
            "id" => Some(MemberField::Id),
            "endpoint" => Some(MemberField::Endpoint),
            _ => None,
        }
    }

    fn pascal(self) -> &'static str {
        match self {
            MemberField::Id => "Id",
            MemberField::Endpoint => "Endpoint",
        }
    }

    fn canonical(self) -> &'static str {
        match self {
            MemberField::Id => "id",
            MemberField::Endpoint => "endpoint",
        }
    }
}

/// Settings of the `Tls` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TlsField {
    CertificatePath,
    KeyPath,
    CaCertificatePath,
    RequireClientCertificate,
    ReloadInterval,
}

impl TlsField {
    const ALL: [TlsField; 5] = [
        TlsField::CertificatePath,
        TlsField::KeyPath,
        TlsField::CaCertificatePath,
        TlsField::RequireClientCertificate,
        TlsField::ReloadInterval,
    ];

    /// The full key for messages, such as `Cluster.Tls.KeyPath`.
    fn key(self) -> &'static str {
        match self {
            TlsField::CertificatePath => keys::TLS_CERTIFICATE_PATH,
            TlsField::KeyPath => keys::TLS_KEY_PATH,
            TlsField::CaCertificatePath => keys::TLS_CA_CERTIFICATE_PATH,
            TlsField::RequireClientCertificate => keys::TLS_REQUIRE_CLIENT_CERTIFICATE,
            TlsField::ReloadInterval => keys::TLS_RELOAD_INTERVAL,
        }
    }

    /// The .NET spelling: the last segment of [`key`](Self::key).
    fn pascal(self) -> &'static str {
        let key = self.key();
        key.rsplit_once('.').map_or(key, |(_, name)| name)
    }

    fn canonical(self) -> &'static str {
        match self {
            TlsField::CertificatePath => "certificate_path",
            TlsField::KeyPath => "key_path",
            TlsField::CaCertificatePath => "ca_certificate_path",
            TlsField::RequireClientCertificate => "require_client_certificate",
            TlsField::ReloadInterval => "reload_interval",
        }
    }

    fn lookup(name: &str) -> Option<TlsField> {
        let folded = fold_key(name);
        TlsField::ALL
            .into_iter()
            .find(|field| fold_key(field.pascal()) == folded)
    }

    fn known_list() -> String {
        TlsField::ALL.map(TlsField::pascal).join(", ")
    }
}

/// Lower-cases a key and drops `_` and `-`, so `LocalNodeEndpoint`,
/// `local_node_endpoint` and `LOCAL-NODE-ENDPOINT` compare equal.
fn fold_key(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_' && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The known key closest to `name`, if it is close enough to be a typo.
fn suggest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let folded = fold_key(name);
    known
        .into_iter()
        .map(|candidate| (edit_distance(&folded, &fold_key(candidate)), candidate))
        // Close, and not a rewrite of a short key (`Zzz` is not `Tls`).
        .filter(|(distance, candidate)| {
            *distance <= 3.max(candidate.len() / 4) && *distance < candidate.len()
        })
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------
// ConfigLoader
// ---------------------------------------------------------------------------

/// Builds a [`ClusterConfig`] from files, strings and environment variables.
///
/// Sources are merged in the order they are added, later ones overriding
/// earlier ones key by key; figment does the merging. Nothing is read until
/// [`build`](Self::build), except [`process_env`](Self::process_env), which
/// takes a snapshot of the environment when called.
///
/// ```
/// use catga_cluster_core::config::ClusterConfig;
///
/// let config = ClusterConfig::loader()
///     .toml_str("[cluster]\nlocal_node_endpoint = \"http://node0:5000\"")
///     .env_vars([("Cluster__LocalNodeId", "node0")])
///     .build()?;
/// assert_eq!(config.node.id.get(), 0);
/// assert!(config.is_single_node());
/// # Ok::<(), catga_cluster_core::config::ConfigError>(())
/// ```
#[derive(Default)]
pub struct ConfigLoader {
    sources: Vec<SourceSpec>,
}

enum SourceSpec {
    File { path: PathBuf, required: bool },
    Text { format: FileFormat, text: String },
    Env(Vec<(String, Result<String, OsString>)>),
}

impl ConfigLoader {
    /// A loader without sources.
    pub fn new() -> Self {
        ConfigLoader::default()
    }

    /// Adds a JSON (`.json`) or TOML (`.toml`) file, which must exist.
    pub fn file(mut self, path: impl AsRef<Path>) -> Self {
        self.sources.push(SourceSpec::File {
            path: path.as_ref().to_path_buf(),
            required: true,
        });
        self
    }

    /// Adds a JSON or TOML file that is skipped if it does not exist, like
    /// .NET's `appsettings.{Environment}.json`.
    pub fn optional_file(mut self, path: impl AsRef<Path>) -> Self {
        self.sources.push(SourceSpec::File {
            path: path.as_ref().to_path_buf(),
            required: false,
        });
        self
    }

    /// Adds JSON text, laid out like a JSON file.
    pub fn json_str(mut self, json: &str) -> Self {
        self.sources.push(SourceSpec::Text {
            format: FileFormat::Json,
            text: json.to_owned(),
        });
        self
    }

    /// Adds TOML text, laid out like a TOML file.
    pub fn toml_str(mut self, toml: &str) -> Self {
        self.sources.push(SourceSpec::Text {
            format: FileFormat::Toml,
            text: toml.to_owned(),
        });
        self
    }

    /// Adds environment variables given as name/value pairs; only names
    /// starting with `Cluster__` (any case) are considered.
    pub fn env_vars<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars = vars
            .into_iter()
            .map(|(name, value)| (name.into(), Ok(value.into())))
            .filter(|(name, _)| is_cluster_var(name))
            .collect();
        self.sources.push(SourceSpec::Env(vars));
        self
    }

    /// Adds the `Cluster__*` variables of the process environment, read now.
    /// A variable whose value is not valid Unicode makes `build` fail.
    pub fn process_env(mut self) -> Self {
        let vars = std::env::vars_os()
            .filter_map(|(name, value)| {
                let name = name.into_string().ok()?;
                is_cluster_var(&name).then(|| (name, value.into_string()))
            })
            .collect();
        self.sources.push(SourceSpec::Env(vars));
        self
    }

    /// Reads, merges, interprets and validates the sources.
    pub fn build(self) -> Result<ClusterConfig, ConfigError> {
        interpret(&self.merged()?)
    }

    /// Which sources set the settings that place this node in a cluster
    /// (`LocalNodeEndpoint`, `LocalNodeId`, `Members`), after merging.
    ///
    /// Reads the sources like [`build`](Self::build) but neither interprets
    /// nor validates the values, so an application can tell "no topology
    /// configured" (and supply its own default) from "part of one
    /// configured" (and say what is missing) before building.
    ///
    /// ```
    /// use catga_cluster_core::config::ClusterConfig;
    ///
    /// let loader = ClusterConfig::loader().env_vars([
    ///     ("Cluster__Secret", "s3cret"),
    ///     ("Cluster__Members__0", "http://node1:5000"),
    /// ]);
    /// let topology = loader.topology_sources()?;
    /// assert_eq!(topology.local_node_endpoint, None);
    /// assert_eq!(
    ///     topology.members.as_deref(),
    ///     Some("environment variables `Cluster__Members__N`")
    /// );
    /// # Ok::<(), catga_cluster_core::config::ConfigError>(())
    /// ```
    pub fn topology_sources(&self) -> Result<TopologySources, ConfigError> {
        let figment = self.merged()?;
        let merged = figment
            .data()
            .map_err(|e| ConfigError::validation("Cluster", e.to_string()))?
            .remove(&Profile::Default)
            .unwrap_or_default();
        // `null` means "not set", as in `build`.
        let origin = |field: Field| -> Option<String> {
            let value = merged
                .get(field.canonical())
                .filter(|value| !matches!(value, Value::Empty(..)))?;
            Some(figment.get_metadata(value.tag()).map_or_else(
                || "an unnamed source".to_owned(),
                |metadata| metadata.name.to_string(),
            ))
        };
        Ok(TopologySources {
            local_node_endpoint: origin(Field::LocalNodeEndpoint),
            local_node_id: origin(Field::LocalNodeId),
            members: origin(Field::Members),
            tls: origin(Field::Tls),
        })
    }

    /// Reads the sources and merges them, later ones overriding earlier ones.
    fn merged(&self) -> Result<Figment, ConfigError> {
        let mut figment = Figment::new();
        for source in &self.sources {
            match source {
                SourceSpec::File { path, required } => {
                    if let Some(provider) = file_provider(path, *required)? {
                        figment = figment.merge(provider);
                    }
                }
                SourceSpec::Text { format, text } => {
                    let origin = format!("inline {}", format.name());
                    let document = parse_document(*format, text, None)?;
                    figment = figment.merge(section_provider(document, origin)?);
                }
                SourceSpec::Env(vars) => {
                    for provider in env_providers(vars.clone())? {
                        figment = figment.merge(provider);
                    }
                }
            }
        }
        Ok(figment)
    }
}

/// Where the settings that place the local node in a cluster come from, as
/// [`ConfigLoader::topology_sources`] finds them: each field names the source
/// that sets the key last (such as ``file `appsettings.json` `` or
/// ``environment variable `Cluster__LocalNodeEndpoint` ``), or is `None`
/// when no source sets it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopologySources {
    /// The source of `LocalNodeEndpoint`.
    pub local_node_endpoint: Option<String>,
    /// The source of `LocalNodeId`.
    pub local_node_id: Option<String>,
    /// The source of `Members`.
    pub members: Option<String>,
    /// The source of the `Tls` section (the last one that sets any of its
    /// keys): a topology built by the caller must then use `https://`.
    pub tls: Option<String>,
}

impl fmt::Debug for ConfigLoader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Sources may hold the secret: show where values come from, not what
        // they are.
        struct Sources<'a>(&'a [SourceSpec]);
        impl fmt::Debug for Sources<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut list = f.debug_list();
                for source in self.0 {
                    match source {
                        SourceSpec::File { path, required } => list.entry(&format_args!(
                            "file {:?}{}",
                            path,
                            if *required { "" } else { " (optional)" }
                        )),
                        SourceSpec::Text { format, text } => list.entry(&format_args!(
                            "inline {} ({} bytes)",
                            format.name(),
                            text.len()
                        )),
                        SourceSpec::Env(vars) => list.entry(&format_args!(
                            "env {:?}",
                            vars.iter().map(|(name, _)| name).collect::<Vec<_>>()
                        )),
                    };
                }
                list.finish()
            }
        }
        f.debug_struct("ConfigLoader")
            .field("sources", &Sources(&self.sources))
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Sources → figment providers
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Json,
    Toml,
}

impl FileFormat {
    fn name(self) -> &'static str {
        match self {
            FileFormat::Json => "JSON",
            FileFormat::Toml => "TOML",
        }
    }
}

/// One source's `Cluster` settings, keyed by [`Field::canonical`].
#[derive(Debug)]
struct SectionProvider {
    name: String,
    dict: Dict,
}

impl Provider for SectionProvider {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name.clone())
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut map = Map::new();
        map.insert(Profile::Default, self.dict.clone());
        Ok(map)
    }
}

fn file_provider(path: &Path, required: bool) -> Result<Option<SectionProvider>, ConfigError> {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match extension.as_deref() {
        Some("json") => FileFormat::Json,
        Some("toml") => FileFormat::Toml,
        _ => {
            return Err(ConfigError::UnsupportedFormat {
                path: path.to_path_buf(),
            })
        }
    };
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if !required && error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(ConfigError::FileUnreadable {
                path: path.to_path_buf(),
                error,
            })
        }
    };
    let document = parse_document(format, &text, Some(path))?;
    section_provider(document, format!("file `{}`", path.display())).map(Some)
}

fn parse_document(
    format: FileFormat,
    text: &str,
    path: Option<&Path>,
) -> Result<Dict, ConfigError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parse_error = |message: String| ConfigError::Parse {
        format: format.name(),
        path: path.map(Path::to_path_buf),
        message,
    };
    match format {
        FileFormat::Json => {
            let relaxed = relax_json(text).map_err(parse_error)?;
            <Json as Format>::from_str::<Dict>(&relaxed).map_err(|e| parse_error(e.to_string()))
        }
        FileFormat::Toml => <Toml as Format>::from_str::<Dict>(text)
            .map_err(|e| parse_error(summarise_toml_error(&e.to_string()))),
    }
}

/// Keeps a TOML error's position and message but drops the quoted source
/// line, which may hold the secret.
fn summarise_toml_error(message: &str) -> String {
    let is_snippet = |line: &str| {
        let rest = line
            .trim_start()
            .trim_start_matches(|c: char| c.is_ascii_digit());
        rest.trim_start().starts_with('|')
    };
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !is_snippet(line))
        .collect::<Vec<_>>()
        .join(": ")
}

/// Blanks out `//` and `/* */` comments and trailing commas (outside strings),
/// which .NET's JSON configuration accepts and serde_json does not. Line and
/// column numbers are preserved.
fn relax_json(text: &str) -> Result<String, String> {
    let mut bytes = text.as_bytes().to_vec();

    // Pass 1: comments.
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        match (b, bytes.get(i + 1).copied()) {
            (b'"', _) => {
                in_string = true;
                i += 1;
            }
            (b'/', Some(b'/')) => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    bytes[i] = b' ';
                    i += 1;
                }
            }
            (b'/', Some(b'*')) => {
                let start = i;
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                if i >= bytes.len() {
                    let line = 1 + text.as_bytes()[..start]
                        .iter()
                        .filter(|&&c| c == b'\n')
                        .count();
                    return Err(format!("unterminated /* comment starting on line {line}"));
                }
                i += 2;
                for byte in &mut bytes[start..i] {
                    if *byte != b'\n' {
                        *byte = b' ';
                    }
                }
            }
            _ => i += 1,
        }
    }

    // Pass 2: trailing commas.
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            match b {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
        } else if b == b'"' {
            in_string = true;
        } else if b == b',' {
            let next = bytes[i + 1..]
                .iter()
                .copied()
                .find(|c| !c.is_ascii_whitespace());
            if matches!(next, Some(b'}' | b']')) {
                bytes[i] = b' ';
            }
        }
        i += 1;
    }

    // Only whole comments (all their bytes) and ASCII commas were replaced,
    // so the text is still UTF-8.
    String::from_utf8(bytes).map_err(|_| "the text is not valid UTF-8".to_owned())
}

/// Finds the `Cluster` section of a parsed document and normalises its keys.
fn section_provider(document: Dict, origin: String) -> Result<SectionProvider, ConfigError> {
    let mut sections = document
        .iter()
        .filter(|(key, _)| fold_key(key) == "cluster");
    let section =
        match (sections.next(), sections.next()) {
            (Some((first, _)), Some((second, _))) => {
                return Err(ConfigError::validation(
                    second.clone(),
                    format!("the section is given twice in {origin} (also as `{first}`)"),
                ))
            }
            (Some((name, value)), None) => match value {
                Value::Dict(_, dict) => Some((name.clone(), dict.clone())),
                Value::Empty(..) => Some((name.clone(), Dict::new())),
                other => return Err(ConfigError::invalid(
                    name.clone(),
                    &describe(other),
                    "the section must be an object (a table in TOML) holding the cluster settings",
                )
                .with_origin(Some(origin))),
            },
            (None, _) => None,
        };
    let (section_name, section) = match section {
        Some(found) => found,
        // A plain cluster file: the settings are at the top level.
        None if document.keys().any(|key| Field::lookup(key).is_some()) => {
            ("Cluster".to_owned(), document)
        }
        // Nothing for the cluster here (for example only `Logging`).
        None => ("Cluster".to_owned(), Dict::new()),
    };

    let mut dict = Dict::new();
    let mut written: BTreeMap<&'static str, String> = BTreeMap::new();
    for (name, value) in section {
        let key = format!("{section_name}.{name}");
        let Some(field) = Field::lookup(&name) else {
            return Err(ConfigError::UnknownKey {
                suggestion: suggest(&name, Field::ALL.map(Field::pascal)),
                key,
                origin,
                known: Field::known_list(),
            });
        };
        if let Some(first) = written.insert(field.canonical(), key.clone()) {
            return Err(ConfigError::validation(
                key,
                format!("sets the same setting as `{first}` in {origin}; keep one"),
            ));
        }
        let value = match field {
            Field::Members => normalise_members(value, &section_name, &origin)?,
            Field::Tls => normalise_tls(value, &section_name, &origin)?,
            _ => value,
        };
        dict.insert(field.canonical().to_owned(), value);
    }
    Ok(SectionProvider { name: origin, dict })
}

/// Normalises the keys of member objects; entries are interpreted later.
fn normalise_members(value: Value, section: &str, origin: &str) -> Result<Value, ConfigError> {
    let Value::Array(tag, entries) = value else {
        return Ok(value);
    };
    let mut normalised = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let Value::Dict(entry_tag, fields) = entry else {
            normalised.push(entry);
            continue;
        };
        let mut dict = Dict::new();
        for (name, value) in fields {
            let key = format!("{section}.Members[{i}].{name}");
            let Some(field) = MemberField::lookup(&name) else {
                return Err(ConfigError::UnknownKey {
                    suggestion: suggest(&name, ["Id", "Endpoint"]),
                    key,
                    origin: origin.to_owned(),
                    known: "Id, Endpoint".to_owned(),
                });
            };
            if dict.insert(field.canonical().to_owned(), value).is_some() {
                return Err(ConfigError::validation(
                    key,
                    format!("sets {} twice in {origin}; keep one", field.pascal()),
                ));
            }
        }
        normalised.push(Value::Dict(entry_tag, dict));
    }
    Ok(Value::Array(tag, normalised))
}

/// Normalises the keys of the `Tls` object; values are interpreted later.
fn normalise_tls(value: Value, section: &str, origin: &str) -> Result<Value, ConfigError> {
    let Value::Dict(tag, fields) = value else {
        return Ok(value);
    };
    let mut dict = Dict::new();
    let mut written: BTreeMap<&'static str, String> = BTreeMap::new();
    for (name, value) in fields {
        let key = format!("{section}.Tls.{name}");
        let Some(field) = TlsField::lookup(&name) else {
            return Err(ConfigError::UnknownKey {
                suggestion: suggest(&name, TlsField::ALL.map(TlsField::pascal)),
                key,
                origin: origin.to_owned(),
                known: TlsField::known_list(),
            });
        };
        if let Some(first) = written.insert(field.canonical(), key.clone()) {
            return Err(ConfigError::validation(
                key,
                format!("sets the same setting as `{first}` in {origin}; keep one"),
            ));
        }
        dict.insert(field.canonical().to_owned(), value);
    }
    Ok(Value::Dict(tag, dict))
}

fn is_cluster_var(name: &str) -> bool {
    name.get(..9)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("cluster__"))
}

#[derive(Debug, Default)]
struct EnvMember {
    whole: Option<(String, String)>,
    id: Option<(String, String)>,
    endpoint: Option<(String, String)>,
}

/// Turns `Cluster__*` variables into providers: one per scalar key (so errors
/// name the variable) and one for the members.
fn env_providers(
    vars: Vec<(String, Result<String, OsString>)>,
) -> Result<Vec<SectionProvider>, ConfigError> {
    let known_vars = || {
        Field::ALL
            .iter()
            .map(|f| match f {
                Field::Members => "Cluster__Members__N".to_owned(),
                Field::Tls => TlsField::ALL
                    .map(|t| format!("Cluster__Tls__{}", t.pascal()))
                    .join(", "),
                other => format!("Cluster__{}", other.pascal()),
            })
            .chain([
                "Cluster__Members__N__Id".to_owned(),
                "Cluster__Members__N__Endpoint".to_owned(),
            ])
            .collect::<Vec<_>>()
            .join(", ")
    };
    let unknown = |var: &str, name: &str, known: &[&'static str]| ConfigError::UnknownKey {
        key: var.to_owned(),
        origin: "the environment".to_owned(),
        suggestion: suggest(name, known.iter().copied()),
        known: known_vars(),
    };

    // (setting, sub-setting of `Tls`, variable, value)
    let mut scalars: Vec<(Field, Option<TlsField>, String, String)> = Vec::new();
    let mut members: BTreeMap<usize, EnvMember> = BTreeMap::new();
    for (var, value) in vars {
        let value = value.map_err(|_| {
            ConfigError::invalid(var.clone(), "…", "the value is not valid Unicode")
        })?;
        let segments: Vec<&str> = var.split("__").skip(1).collect();
        let name = segments.first().copied().unwrap_or_default();
        let field = Field::lookup(name)
            .ok_or_else(|| unknown(&var, name, &Field::ALL.map(Field::pascal)))?;
        if field != Field::Members {
            let sub = match (field, segments.as_slice()) {
                (Field::Tls, [_]) => {
                    return Err(ConfigError::validation(
                        var,
                        "needs a TLS setting, like Cluster__Tls__CertificatePath",
                    ))
                }
                (Field::Tls, [_, sub]) => Some(
                    TlsField::lookup(sub)
                        .ok_or_else(|| unknown(&var, sub, &TlsField::ALL.map(TlsField::pascal)))?,
                ),
                (Field::Tls, [_, sub, ..]) => {
                    return Err(unknown(&var, sub, &TlsField::ALL.map(TlsField::pascal)))
                }
                (_, [_]) => None,
                _ => return Err(unknown(&var, name, &Field::ALL.map(Field::pascal))),
            };
            if let Some((_, _, first, _)) =
                scalars.iter().find(|(f, s, _, _)| (*f, *s) == (field, sub))
            {
                return Err(ConfigError::validation(
                    var,
                    format!("sets the same setting as `{first}`; keep one"),
                ));
            }
            scalars.push((field, sub, var, value));
            continue;
        }
        let Some(index) = segments.get(1) else {
            return Err(ConfigError::validation(
                var,
                "needs a member index, like Cluster__Members__0",
            ));
        };
        let index: usize = index
            .parse()
            .ok()
            .filter(|_| index.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| {
                ConfigError::validation(
                    var.clone(),
                    format!("`{index}` is not a member index; use Cluster__Members__0, Cluster__Members__1, …"),
                )
            })?;
        let member = members.entry(index).or_default();
        let slot = match segments.get(2..) {
            Some([]) => &mut member.whole,
            Some([sub]) => match MemberField::lookup(sub) {
                Some(MemberField::Id) => &mut member.id,
                Some(MemberField::Endpoint) => &mut member.endpoint,
                None => {
                    return Err(ConfigError::UnknownKey {
                        key: var.clone(),
                        origin: "the environment".to_owned(),
                        suggestion: suggest(sub, ["Id", "Endpoint"]),
                        known: known_vars(),
                    })
                }
            },
            _ => return Err(unknown(&var, name, &Field::ALL.map(Field::pascal))),
        };
        if let Some((first, _)) = slot {
            return Err(ConfigError::validation(
                var,
                format!("sets the same setting as `{first}`; keep one"),
            ));
        }
        *slot = Some((var, value));
    }

    let mut providers: Vec<SectionProvider> = scalars
        .into_iter()
        .map(|(field, sub, var, value)| {
            let mut value = Value::from(value);
            if let Some(sub) = sub {
                let mut inner = Dict::new();
                inner.insert(sub.canonical().to_owned(), value);
                value = Value::from(inner);
            }
            let mut dict = Dict::new();
            dict.insert(field.canonical().to_owned(), value);
            SectionProvider {
                name: format!("environment variable `{var}`"),
                dict,
            }
        })
        .collect();

    if !members.is_empty() {
        let mut entries = Vec::with_capacity(members.len());
        for (expected, (index, member)) in members.into_iter().enumerate() {
            let first_var = [&member.whole, &member.id, &member.endpoint]
                .into_iter()
                .flatten()
                .map(|(var, _)| var.clone())
                .min()
                .unwrap_or_default();
            if index != expected {
                return Err(ConfigError::validation(
                    first_var,
                    format!(
                        "Cluster__Members__{expected} is missing; member indices must count up from 0 without gaps"
                    ),
                ));
            }
            match member {
                EnvMember {
                    whole: Some((_, value)),
                    id: None,
                    endpoint: None,
                } => entries.push(Value::from(value)),
                EnvMember {
                    whole: Some((whole, _)),
                    ..
                } => {
                    return Err(ConfigError::validation(
                        whole,
                        format!(
                            "conflicts with Cluster__Members__{index}__Id/__Endpoint; give member {index} either as one endpoint or as Id and Endpoint"
                        ),
                    ))
                }
                EnvMember {
                    whole: None,
                    id,
                    endpoint,
                } => {
                    let mut dict = Dict::new();
                    if let Some((_, id)) = id {
                        dict.insert(MemberField::Id.canonical().to_owned(), Value::from(id));
                    }
                    if let Some((_, endpoint)) = endpoint {
                        dict.insert(
                            MemberField::Endpoint.canonical().to_owned(),
                            Value::from(endpoint),
                        );
                    }
                    entries.push(Value::from(dict));
                }
            }
        }
        let mut dict = Dict::new();
        dict.insert(Field::Members.canonical().to_owned(), Value::from(entries));
        providers.push(SectionProvider {
            name: "environment variables `Cluster__Members__N`".to_owned(),
            dict,
        });
    }
    Ok(providers)
}

// ---------------------------------------------------------------------------
// Merged values → ClusterConfig
// ---------------------------------------------------------------------------

fn interpret(figment: &Figment) -> Result<ClusterConfig, ConfigError> {
    let mut merged = figment
        .data()
        .map_err(|e| ConfigError::validation("Cluster", e.to_string()))?
        .remove(&Profile::Default)
        .unwrap_or_default();
    let origin = |value: &Value| -> Option<String> {
        figment
            .get_metadata(value.tag())
            .map(|metadata| metadata.name.to_string())
    };
    // `null` means "not set".
    let mut take = |field: Field| {
        merged
            .remove(field.canonical())
            .filter(|value| !matches!(value, Value::Empty(..)))
    };

    let endpoint_value = take(Field::LocalNodeEndpoint).ok_or_else(|| ConfigError::MissingKey {
        key: Field::LocalNodeEndpoint.key(),
    })?;
    let endpoint = parse_endpoint(&Field::LocalNodeEndpoint.key(), &endpoint_value)
        .map_err(|e| e.with_origin(origin(&endpoint_value)))?;
    let id = match take(Field::LocalNodeId) {
        Some(value) => parse_id(&Field::LocalNodeId.key(), &value)
            .map_err(|e| e.with_origin(origin(&value)))?,
        None => NodeId::from_endpoint(&endpoint),
    };
    let node = NodeInfo::new(id, endpoint);

    let members = match take(Field::Members) {
        Some(value) => parse_members(&value, &origin)?,
        None => Vec::new(),
    };

    let mut duration = |field: Field| -> Result<Option<Duration>, ConfigError> {
        take(field)
            .map(|value| {
                parse_duration_value(&field.key(), &value)
                    .map_err(|e| e.with_origin(origin(&value)))
            })
            .transpose()
    };
    let election_timeout_min =
        duration(Field::ElectionTimeout)?.unwrap_or(ClusterConfig::DEFAULT_ELECTION_TIMEOUT_MIN);
    let election_timeout_max = match duration(Field::ElectionTimeoutMax)? {
        Some(max) => max,
        None => election_timeout_min
            .checked_mul(2)
            .ok_or_else(|| ConfigError::validation(Field::ElectionTimeout.key(), "is too large"))?,
    };
    let heartbeat_interval =
        duration(Field::HeartbeatInterval)?.unwrap_or(ClusterConfig::DEFAULT_HEARTBEAT);

    let persistent_state_path = match take(Field::PersistentStatePath) {
        Some(value) => {
            let key = Field::PersistentStatePath.key();
            let path = expect_string(&key, &value).map_err(|e| e.with_origin(origin(&value)))?;
            if path.trim().is_empty() {
                return Err(ConfigError::invalid(
                    key,
                    path,
                    "must not be empty; leave the key out (or null) for in-memory storage",
                )
                .with_origin(origin(&value)));
            }
            Some(PathBuf::from(path))
        }
        None => None,
    };

    let secret = match take(Field::Secret) {
        Some(Value::String(_, secret)) => Some(ClusterSecret::from(secret)),
        Some(other) => {
            return Err(ConfigError::InvalidValue {
                key: Field::Secret.key(),
                value: "***".to_owned(),
                reason: format!("expected a string, found {}", kind_of(&other)),
                origin: origin(&other),
            })
        }
        None => None,
    };

    let cluster_name = match take(Field::ClusterName) {
        Some(value) => expect_string(&Field::ClusterName.key(), &value)
            .map_err(|e| e.with_origin(origin(&value)))?
            .to_owned(),
        None => ClusterConfig::DEFAULT_CLUSTER_NAME.to_owned(),
    };

    let tls = match take(Field::Tls) {
        Some(Value::Dict(_, fields)) => parse_tls(&fields, &origin)?,
        Some(other) => {
            return Err(ConfigError::invalid(
                Field::Tls.key(),
                &describe(&other),
                format!(
                    "expected an object (a table in TOML) with {}",
                    TlsField::known_list()
                ),
            )
            .with_origin(origin(&other)))
        }
        None => None,
    };

    let allow_insecure_transport = match take(Field::AllowInsecureTransport) {
        Some(value) => parse_bool(&Field::AllowInsecureTransport.key(), &value)
            .map_err(|e| e.with_origin(origin(&value)))?,
        None => false,
    };

    let config = ClusterConfig {
        node,
        members,
        election_timeout_min,
        election_timeout_max,
        heartbeat_interval,
        persistent_state_path,
        secret,
        cluster_name,
        tls,
        allow_insecure_transport,
    };
    config.validate()?;
    Ok(config)
}

/// Reads the `Tls` object: `None` when it sets nothing, an error naming the
/// first missing path when it sets something but not all three paths.
fn parse_tls(
    fields: &Dict,
    origin: &dyn Fn(&Value) -> Option<String>,
) -> Result<Option<TlsConfig>, ConfigError> {
    // `null` means "not set".
    let get = |field: TlsField| {
        fields
            .get(field.canonical())
            .filter(|value| !matches!(value, Value::Empty(..)))
    };
    let Some(first_set) = TlsField::ALL
        .into_iter()
        .find(|field| get(*field).is_some())
    else {
        return Ok(None);
    };
    let path = |field: TlsField| -> Result<PathBuf, ConfigError> {
        let Some(value) = get(field) else {
            return Err(ConfigError::validation(
                field.key(),
                format!(
                    "required because {} is set: TLS needs {}, {} and {}",
                    first_set.key(),
                    TlsField::CertificatePath.key(),
                    TlsField::KeyPath.key(),
                    TlsField::CaCertificatePath.key()
                ),
            ));
        };
        let text = expect_string(field.key(), value).map_err(|e| e.with_origin(origin(value)))?;
        if text.trim().is_empty() {
            return Err(ConfigError::invalid(field.key(), text, "must not be empty")
                .with_origin(origin(value)));
        }
        Ok(PathBuf::from(text))
    };
    let mut tls = TlsConfig::new(
        path(TlsField::CertificatePath)?,
        path(TlsField::KeyPath)?,
        path(TlsField::CaCertificatePath)?,
    );
    if let Some(value) = get(TlsField::RequireClientCertificate) {
        tls.require_client_certificate =
            parse_bool(TlsField::RequireClientCertificate.key(), value)
                .map_err(|e| e.with_origin(origin(value)))?;
    }
    if let Some(value) = get(TlsField::ReloadInterval) {
        tls.reload_interval = parse_duration_value(TlsField::ReloadInterval.key(), value)
            .map_err(|e| e.with_origin(origin(value)))?;
    }
    Ok(Some(tls))
}

/// A boolean: `true`/`false` in JSON and TOML, or the strings `true` and
/// `false` in any case (environment variables, .NET's `True`).
fn parse_bool(key: &str, value: &Value) -> Result<bool, ConfigError> {
    match value {
        Value::Bool(_, b) => Ok(*b),
        Value::String(_, text) if text.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(_, text) if text.trim().eq_ignore_ascii_case("false") => Ok(false),
        Value::String(_, text) => Err(ConfigError::invalid(key, text, "expected true or false")),
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            format!("expected true or false, found {}", kind_of(other)),
        )),
    }
}

fn parse_members(
    value: &Value,
    origin: &dyn Fn(&Value) -> Option<String>,
) -> Result<Vec<NodeInfo>, ConfigError> {
    let Value::Array(_, entries) = value else {
        return Err(ConfigError::invalid(
            Field::Members.key(),
            &describe(value),
            "expected an array of the other nodes' endpoints",
        )
        .with_origin(origin(value)));
    };
    let mut members = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let key = member_key(i);
        let member = parse_member(&key, entry).map_err(|e| e.with_origin(origin(entry)))?;
        members.push(member);
    }
    Ok(members)
}

fn parse_member(key: &str, entry: &Value) -> Result<NodeInfo, ConfigError> {
    match entry {
        Value::String(..) => {
            let endpoint = parse_endpoint(key, entry)?;
            Ok(NodeInfo::new(NodeId::from_endpoint(&endpoint), endpoint))
        }
        Value::Dict(_, fields) => {
            let endpoint_key = format!("{key}.Endpoint");
            let endpoint = match fields.get(MemberField::Endpoint.canonical()) {
                Some(value) if !matches!(value, Value::Empty(..)) => {
                    parse_endpoint(&endpoint_key, value)?
                }
                _ => return Err(ConfigError::MissingKey { key: endpoint_key }),
            };
            let id = match fields.get(MemberField::Id.canonical()) {
                Some(value) if !matches!(value, Value::Empty(..)) => {
                    parse_id(&format!("{key}.Id"), value)?
                }
                _ => NodeId::from_endpoint(&endpoint),
            };
            Ok(NodeInfo::new(id, endpoint))
        }
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            "expected an endpoint string or an object with Endpoint and an optional Id",
        )),
    }
}

fn parse_endpoint(key: &str, value: &Value) -> Result<Endpoint, ConfigError> {
    let text = expect_string(key, value)?;
    Endpoint::parse(text).map_err(|e| ConfigError::invalid(key, text, e.reason()))
}

fn parse_id(key: &str, value: &Value) -> Result<NodeId, ConfigError> {
    match value {
        Value::Num(_, num) => num_to_u64(*num).map(NodeId::new).ok_or_else(|| {
            ConfigError::invalid(
                key,
                &describe(value),
                "a node id must be a whole number from 0 to 18446744073709551615",
            )
        }),
        Value::String(_, name) => NodeId::from_name(name).map_err(|e| {
            let message = e.to_string();
            let prefix = format!("invalid node name `{}`: ", name.trim());
            let reason = message.strip_prefix(&prefix).unwrap_or(&message).to_owned();
            ConfigError::invalid(key, name, reason)
        }),
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            format!(
                "expected a number or a name like `node0`, found {}",
                kind_of(other)
            ),
        )),
    }
}

fn num_to_u64(num: Num) -> Option<u64> {
    match num {
        Num::F32(_) | Num::F64(_) => None,
        other => other
            .to_u128()
            .or_else(|| other.to_i128().and_then(|v| u128::try_from(v).ok()))
            .and_then(|v| u64::try_from(v).ok()),
    }
}

fn parse_duration_value(key: &str, value: &Value) -> Result<Duration, ConfigError> {
    match value {
        Value::String(_, text) => parse_duration(key, text),
        Value::Num(..) => Err(ConfigError::invalid(
            key,
            &describe(value),
            "a bare number has no unit; write a duration string such as \"150ms\" or \"00:00:00.150\"",
        )),
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            format!(
                "expected a duration string such as \"150ms\" or \"00:00:00.150\", found {}",
                kind_of(other)
            ),
        )),
    }
}

fn expect_string<'v>(key: &str, value: &'v Value) -> Result<&'v str, ConfigError> {
    match value {
        Value::String(_, text) => Ok(text),
        other => Err(ConfigError::invalid(
            key,
            &describe(other),
            format!("expected a string, found {}", kind_of(other)),
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::String(..) => "a string",
        Value::Char(..) => "a character",
        Value::Bool(..) => "a boolean",
        Value::Num(..) => "a number",
        Value::Empty(..) => "null",
        Value::Dict(..) => "an object",
        Value::Array(..) => "an array",
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => match *n {
            Num::F32(v) => v.to_string(),
            Num::F64(v) => v.to_string(),
            other => other
                .to_u128()
                .map(|v| v.to_string())
                .or_else(|| other.to_i128().map(|v| v.to_string()))
                .unwrap_or_else(|| format!("{other:?}")),
        },
        Value::Empty(..) => "null".to_owned(),
        Value::Dict(..) => "{…}".to_owned(),
        Value::Array(..) => "[…]".to_owned(),
    }
}

// ---------------------------------------------------------------------------
// Durations
// ---------------------------------------------------------------------------

/// Parses a duration setting; errors name `key`.
///
/// Accepted forms:
///
/// * .NET `TimeSpan` strings: `hh:mm:ss`, `hh:mm:ss.f` with 1 to 7 fraction
///   digits, and `d.hh:mm:ss[.fffffff]` (minutes and seconds below 60, hours
///   below 24 when days are given): `00:00:00.150`, `1.02:03:04.5`;
/// * human-readable durations as understood by [`humantime`]: `150ms`,
///   `1s 500ms`, `2min`.
///
/// Negative, zero and unit-less values (`150`) are rejected.
///
/// ```
/// use std::time::Duration;
/// use catga_cluster_core::config::parse_duration;
///
/// let key = "Cluster.ElectionTimeout";
/// assert_eq!(parse_duration(key, "00:00:00.150")?, Duration::from_millis(150));
/// assert_eq!(parse_duration(key, "1s 500ms")?, Duration::from_millis(1500));
/// assert!(parse_duration(key, "00:60:00").is_err());
/// # Ok::<(), catga_cluster_core::config::ConfigError>(())
/// ```
pub fn parse_duration(key: &str, s: &str) -> Result<Duration, ConfigError> {
    let text = s.trim();
    let parsed = if text.is_empty() {
        Err("a duration must not be empty".to_owned())
    } else if text.starts_with('-') {
        Err("negative durations are not allowed".to_owned())
    } else if text.contains(':') {
        parse_timespan(text)
    } else {
        humantime::parse_duration(text)
            .map_err(|e| format!("expected a duration such as \"150ms\" or \"00:00:00.150\" ({e})"))
    };
    match parsed {
        Ok(duration) if duration.is_zero() => {
            Err(ConfigError::invalid(key, s, "must be greater than zero"))
        }
        Ok(duration) => Ok(duration),
        Err(reason) => Err(ConfigError::invalid(key, s, reason)),
    }
}

/// Formats a duration as a .NET `TimeSpan` string that [`parse_duration`]
/// reads back: `hh:mm:ss`, with `d.` in front from one day on and a fraction
/// of at least three digits when it is not whole seconds (`00:00:00.150`).
/// Precision below 100 ns (one `TimeSpan` tick) is dropped.
pub fn format_timespan(duration: Duration) -> String {
    let total = duration.as_secs();
    let (days, hours, minutes, seconds) = (
        total / 86_400,
        total / 3_600 % 24,
        total / 60 % 60,
        total % 60,
    );
    let mut out = if days > 0 {
        format!("{days}.{hours:02}:{minutes:02}:{seconds:02}")
    } else {
        format!("{hours:02}:{minutes:02}:{seconds:02}")
    };
    let ticks = duration.subsec_nanos() / 100;
    if ticks > 0 {
        let mut fraction = format!("{ticks:07}");
        while fraction.len() > 3 && fraction.ends_with('0') {
            fraction.pop();
        }
        out.push('.');
        out.push_str(&fraction);
    }
    out
}

const TIMESPAN_FORMS: &str = "expected hh:mm:ss, hh:mm:ss.fffffff or d.hh:mm:ss[.fffffff]";

/// Parses `[d.]hh:mm:ss[.fffffff]`.
fn parse_timespan(text: &str) -> Result<Duration, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [head, minutes, seconds] = parts.as_slice() else {
        return Err(format!("not a TimeSpan: {TIMESPAN_FORMS}"));
    };

    let (days, hours) = match head.split_once('.') {
        Some((days, hours)) => {
            let days = number(days, "days", usize::MAX)?;
            let hours = number(hours, "hours", 2)?;
            if hours >= 24 {
                return Err("hours must be below 24 when days are given".to_owned());
            }
            (days, hours)
        }
        None => (0, number(head, "hours", usize::MAX)?),
    };
    let minutes = number(minutes, "minutes", 2)?;
    if minutes >= 60 {
        return Err("minutes must be below 60".to_owned());
    }
    let (seconds, fraction) = match seconds.split_once('.') {
        Some((seconds, fraction)) => (seconds, Some(fraction)),
        None => (*seconds, None),
    };
    let seconds = number(seconds, "seconds", 2)?;
    if seconds >= 60 {
        return Err("seconds must be below 60".to_owned());
    }
    let nanos = match fraction {
        None => 0,
        Some(fraction) => {
            if fraction.len() > 7 {
                return Err(
                    "the fraction of a second has more than 7 digits (100 ns ticks)".to_owned(),
                );
            }
            let ticks = number(fraction, "the fraction of a second", 7)?;
            let scale = 10u64.pow(7 - u32::try_from(fraction.len()).unwrap_or(7));
            // ticks * scale < 10^7, so this fits in u32 nanoseconds.
            u32::try_from(ticks * scale * 100)
                .map_err(|_| "the fraction is too large".to_owned())?
        }
    };
    let total = days
        .checked_mul(86_400)
        .and_then(|s| s.checked_add(hours.checked_mul(3_600)?))
        .and_then(|s| s.checked_add(minutes * 60 + seconds))
        .ok_or_else(|| "the duration is too large".to_owned())?;
    Ok(Duration::new(total, nanos))
}

/// Parses a run of 1..=`max_digits` ASCII digits.
fn number(text: &str, what: &str, max_digits: usize) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what} must be digits; {TIMESPAN_FORMS}"));
    }
    if text.len() > max_digits {
        return Err(format!("{what} has too many digits; {TIMESPAN_FORMS}"));
    }
    text.parse().map_err(|_| format!("{what} is too large"))
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

    fn err_of(result: Result<ClusterConfig, ConfigError>) -> ConfigError {
        match result {
            Ok(config) => panic!("expected an error, got {config:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn timespan_valid_forms() {
        let cases = [
            ("00:00:00.150", ms(150)),
            ("00:00:00.050", ms(50)),
            ("00:00:01", Duration::from_secs(1)),
            ("0:0:1", Duration::from_secs(1)),
            ("01:02:03", Duration::from_secs(3_723)),
            ("36:00:00", Duration::from_secs(36 * 3_600)),
            ("00:00:00.1234567", Duration::new(0, 123_456_700)),
            ("00:00:00.1", ms(100)),
            (
                "1.02:03:04.5",
                Duration::new(86_400 + 2 * 3_600 + 3 * 60 + 4, 500_000_000),
            ),
            (" 00:00:02 ", Duration::from_secs(2)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration("K", text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn timespan_invalid_forms() {
        let cases = [
            ("00:60:00", "minutes must be below 60"),
            ("00:00:60", "seconds must be below 60"),
            ("1.24:00:00", "hours must be below 24"),
            ("abc", "expected a duration"),
            ("-00:00:01", "negative"),
            ("-5ms", "negative"),
            ("00:00", "not a TimeSpan"),
            ("00:00:00:00", "not a TimeSpan"),
            ("00:00:00.12345678", "more than 7 digits"),
            ("00:00:00.", "digits"),
            ("aa:00:00", "digits"),
            ("00:+1:00", "digits"),
            ("00:000:00", "too many digits"),
            ("00:00:00", "greater than zero"),
            ("0ms", "greater than zero"),
            ("", "empty"),
            ("150", "time unit needed"),
            ("99999999999999999999.00:00:00", "too large"),
            ("999999999999999.00:00:00", "too large"),
        ];
        for (text, fragment) in cases {
            let err = parse_duration("Cluster.X", text).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("Cluster.X: "), "{message}");
            assert!(message.contains(fragment), "{text}: {message}");
            assert_eq!(err.key(), Some("Cluster.X"));
        }
    }

    #[test]
    fn humantime_forms() {
        assert_eq!(parse_duration("K", "150ms").unwrap(), ms(150));
        assert_eq!(parse_duration("K", "1s 500ms").unwrap(), ms(1_500));
        assert_eq!(
            parse_duration("K", "2min").unwrap(),
            Duration::from_secs(120)
        );
        assert_eq!(
            parse_duration("K", "250us").unwrap(),
            Duration::from_micros(250)
        );
    }

    #[test]
    fn timespan_formatting() {
        assert_eq!(format_timespan(ms(150)), "00:00:00.150");
        assert_eq!(format_timespan(ms(50)), "00:00:00.050");
        assert_eq!(format_timespan(Duration::from_secs(1)), "00:00:01");
        assert_eq!(
            format_timespan(Duration::new(0, 123_456_700)),
            "00:00:00.1234567"
        );
        assert_eq!(
            format_timespan(Duration::new(86_400 + 7_384, 500_000_000)),
            "1.02:03:04.500"
        );
    }

    #[test]
    fn json_comments_and_trailing_commas() {
        let text = "{\n // a comment\n \"a\": \"x//y\", /* block\n comment */ \"b\": [1, 2,],\n}";
        let relaxed = relax_json(text).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&relaxed).unwrap();
        assert_eq!(parsed["a"], "x//y");
        assert_eq!(parsed["b"], serde_json::json!([1, 2]));
        assert_eq!(relaxed.lines().count(), text.lines().count());
        assert!(relax_json("{ /* open").unwrap_err().contains("line 1"));
        // Escaped quotes do not end a string.
        let relaxed = relax_json(r#"{"a": "q\"//,}"}"#).unwrap();
        assert_eq!(relaxed, r#"{"a": "q\"//,}"}"#);
    }

    #[test]
    fn fold_and_suggest() {
        assert_eq!(
            Field::lookup("local_node_endpoint"),
            Some(Field::LocalNodeEndpoint)
        );
        assert_eq!(
            Field::lookup("LOCALNODEENDPOINT"),
            Some(Field::LocalNodeEndpoint)
        );
        assert_eq!(
            Field::lookup("election-timeout-min"),
            Some(Field::ElectionTimeout)
        );
        assert_eq!(Field::lookup("nope"), None);
        assert_eq!(
            suggest("ElectionTimout", Field::ALL.map(Field::pascal)),
            Some("ElectionTimeout")
        );
        assert_eq!(suggest("Zzz", Field::ALL.map(Field::pascal)), None);
        assert_eq!(suggest("Tsl", Field::ALL.map(Field::pascal)), Some("Tls"));
        assert_eq!(
            suggest("CaCertPath", TlsField::ALL.map(TlsField::pascal)),
            None
        );
        assert_eq!(
            suggest("CaCertificatesPath", TlsField::ALL.map(TlsField::pascal)),
            Some("CaCertificatePath")
        );
        assert_eq!(
            TlsField::lookup("ca-certificate-path"),
            Some(TlsField::CaCertificatePath)
        );
        assert_eq!(TlsField::KeyPath.pascal(), "KeyPath");
    }

    #[test]
    fn secret_verify_and_redaction() {
        let secret = ClusterSecret::from("hunter2");
        assert!(secret.verify(b"hunter2"));
        assert!(!secret.verify(b"hunter3"));
        assert!(!secret.verify(b"hunter"));
        assert!(!secret.verify(b"hunter22"));
        assert!(!secret.verify(b""));
        assert!(!ClusterSecret::from("").verify(b""));
        assert_eq!(format!("{secret:?}"), "ClusterSecret(***)");
        assert_eq!(secret.to_string(), "ClusterSecret(***)");
        assert_eq!(secret.expose(), "hunter2");
        assert_eq!(secret, ClusterSecret::new("hunter2".to_owned()));
        assert_ne!(secret, ClusterSecret::new("hunter3"));
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

    #[test]
    fn env_var_prefix() {
        assert!(is_cluster_var("Cluster__X"));
        assert!(is_cluster_var("CLUSTER__X"));
        assert!(is_cluster_var("cluster__x"));
        assert!(!is_cluster_var("Cluster_X"));
        assert!(!is_cluster_var("ClusterName"));
        assert!(!is_cluster_var("Clusté__"));
    }

    #[test]
    fn toml_errors_do_not_quote_source_lines() {
        let err = err_of(
            ClusterConfig::loader()
                .toml_str("[cluster]\nsecret = \"top-secret-value\nlocal_node_endpoint = 1")
                .build(),
        );
        let message = err.to_string();
        assert!(
            message.starts_with("cannot parse inline TOML:"),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        assert!(!message.contains("top-secret-value"), "{message}");
    }

    #[test]
    fn loader_debug_redacts() {
        let loader = ClusterConfig::loader()
            .json_str(r#"{"Cluster": {"Secret": "top-secret-value"}}"#)
            .env_vars([("Cluster__Secret", "env-secret-value")]);
        let debug = format!("{loader:?}");
        assert!(!debug.contains("secret-value"), "{debug}");
        assert!(debug.contains("Cluster__Secret"), "{debug}");
    }

    #[test]
    fn topology_sources_name_the_last_source_of_each_key() {
        let loader = ClusterConfig::loader()
            .json_str(
                r#"{"Cluster": {"LocalNodeEndpoint": "http://node0:5000",
                                "LocalNodeId": null,
                                "Members": ["http://node1:5000"],
                                "Secret": "s",
                                "AllowInsecureTransport": true}}"#,
            )
            .env_vars([
                ("Cluster__Members__0", "http://node2:5000"),
                ("Cluster__HeartbeatInterval", "10ms"),
            ]);
        let topology = loader.topology_sources().unwrap();
        assert_eq!(
            topology,
            TopologySources {
                local_node_endpoint: Some("inline JSON".to_owned()),
                // `null` is "not set".
                local_node_id: None,
                members: Some("environment variables `Cluster__Members__N`".to_owned()),
                tls: None,
            }
        );
        // Asking does not consume the loader.
        let config = loader.build().unwrap();
        assert_eq!(config.members[0].endpoint.as_str(), "http://node2:5000");

        let none = ClusterConfig::loader()
            .env_vars([("Cluster__Secret", "s")])
            .topology_sources()
            .unwrap();
        assert_eq!(none, TopologySources::default());
        let id = ClusterConfig::loader()
            .env_vars([("cluster__localnodeid", "node1")])
            .topology_sources()
            .unwrap();
        assert_eq!(
            id.local_node_id.as_deref(),
            Some("environment variable `cluster__localnodeid`")
        );
        // Sources that cannot be read are errors here too.
        let err = ClusterConfig::loader()
            .env_vars([("Cluster__Membres__0", "http://node1:5000")])
            .topology_sources()
            .unwrap_err();
        assert!(err.to_string().contains("Members"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn timespan_round_trips_milliseconds(millis in 1u64..=10_000_000_000_000) {
            let duration = Duration::from_millis(millis);
            let text = format_timespan(duration);
            proptest::prop_assert_eq!(parse_duration("K", &text).unwrap(), duration, "{}", text);
        }

        #[test]
        fn timespan_round_trips_ticks(secs in 0u64..=1_000_000_000, ticks in 0u32..10_000_000) {
            let duration = Duration::new(secs, ticks * 100);
            proptest::prop_assume!(!duration.is_zero());
            let text = format_timespan(duration);
            proptest::prop_assert_eq!(parse_duration("K", &text).unwrap(), duration, "{}", text);
        }

        #[test]
        fn parse_duration_never_panics(text in "\\PC{0,24}") {
            let _ = parse_duration("K", &text);
        }
    }
}
