//! A Raft node for catga-cluster, on openraft 0.9.25.
//!
//! [`RaftNode`] implements [`ClusterCoordinator`](catga_cluster_core::ClusterCoordinator)
//! with a lease-safe `is_leader()`, replicates a small key-value store and
//! fenced locks through the log, stores its state durably (fsync before
//! acknowledging, checksummed records) or in memory, talks to its peers over
//! HTTP with one pooled client, hands leadership over gracefully when it
//! stops, and replaces a leader whose process died within milliseconds
//! (see [Crash fail-over](node#crash-fail-over)).
//!
//! ```no_run
//! use catga_cluster_raft::prelude::*;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ClusterConfig::load(Some("appsettings.json".as_ref()))?;
//! // Bind first (see "Bind the listener before starting Raft").
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:5000").await?;
//! let node = RaftNode::builder(config).start().await?;
//! // Serve `node.rpc_handler()` on `listener` (catga-cluster-axum's
//! // `ClusterRoutes::raft(node)` and `serve` do).
//! # let _ = listener;
//! let leader = node.wait_for_leader(std::time::Duration::from_secs(5)).await?;
//! println!("leader: {}", leader.id);
//! node.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! [`prelude`] brings the node, the configuration and the traits whose
//! methods you call on them (`node.node()`, `node.is_leader()`,
//! `locks.try_acquire(..)`) in one import.
//!
//! # Bind the listener before starting Raft
//!
//! Bind the node's TCP listener first, then [start](RaftNodeBuilder::start)
//! the node, then serve. Raft talks as soon as it starts: a node with empty
//! storage bootstraps the members and stands for election within one
//! election timeout, and the peers that are already up send it votes and
//! appends the moment they see it in the membership. With the port bound,
//! the kernel queues those first RPCs until the server accepts them, and
//! they are answered a few milliseconds late. Without it they are refused:
//! the peers count the node as unreachable, back off (up to 400 ms between
//! attempts), and the first election can fail and wait for another timeout.
//! Binding first also reports a port that is taken before the node writes
//! any state. catga-cluster-axum's `serve` takes a bound listener for this
//! reason.
//!
//! # Logging
//!
//! openraft 0.9 logs every failed RPC to a peer that is down or starting at
//! `ERROR`, several times a second, although Raft expects and handles it.
//! Use [`log::recommended_filter`] as your default `EnvFilter`: it turns
//! those reports off and keeps openraft's real errors; this crate's
//! transport reports such a peer once instead (see [`log`]).
//!
//! ```no_run
//! use tracing_subscriber::EnvFilter;
//!
//! let filter = EnvFilter::try_from_default_env()
//!     .unwrap_or_else(|_| EnvFilter::new(catga_cluster_raft::log::recommended_filter()));
//! tracing_subscriber::fmt().with_env_filter(filter).init();
//! ```
//!
//! # Features
//!
//! * `test-util`: an in-process network with fault injection
//!   ([`network::memory::MemoryNetwork`]).
//! * `tls`: Raft RPCs over HTTPS to peers with `https://` endpoints, with
//!   rustls 0.23 (ring provider) and a client configuration you supply
//!   ([`NodeOptions::tls`]). [`rustls`] is re-exported so the versions match.
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod kv;
pub mod lock;
pub mod log;
pub mod log_store;
pub mod membership;
pub mod network;
pub mod node;
pub mod prelude;
mod quorum;
pub mod snapshot_store;
pub mod state_machine;
mod transport;
pub mod types;
pub mod watch;

#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;

pub use kv::CasOutcome;
pub use lock::{Acquisition, RaftLock, RaftLockGuard};
pub use network::RaftRpcHandler;
pub use node::{
    BatchOptions, NodeOptions, RaftHealth, RaftNode, RaftNodeBuilder, StartError, Storage,
    Transport,
};
pub use types::{Command, CommandResponse, Operation, TypeConfig};
