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
//! | `FastFailover` | replace a leader whose process died at once, instead of after the leader lease (see `catga-cluster-raft`'s crash fail-over) | `true` |
//! | `ColdStart` | on empty storage, found the cluster with the configured members; `false` for a node joining a running cluster, which waits to be added | `true` |
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
//! uses it, numbers as-is and names through [`NodeId::from_name`](crate::NodeId::from_name); an entry
//! without one gets [`NodeId::from_endpoint`](crate::NodeId::from_endpoint). Both schemes may be mixed, but
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
//!   `Cluster__Secret`, `Cluster__AllowInsecureTransport`,
//!   `Cluster__FastFailover`, … set one key each;
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

// One concern per file; dependencies point one way, from the loader down:
//
//   loader ─┬─> file, env ──> section ──> fields       sources, merged by figment
//           └─> interpret ─┬─> settings ──> timespan    serde reads the merged values
//                          └─> cluster ──> tls, crate::secret   ... into the configuration
//
// `error` (ConfigError) is used throughout.
mod cluster;
mod env;
mod error;
mod fields;
mod file;
mod interpret;
mod loader;
mod section;
mod settings;
mod timespan;
mod tls;

pub use crate::secret::ClusterSecret;
pub use cluster::ClusterConfig;
pub use error::ConfigError;
pub use loader::{ConfigLoader, TopologySources};
pub use timespan::{format_timespan, parse_duration};
pub use tls::TlsConfig;
