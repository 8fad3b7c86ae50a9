//! A Raft node for catga-cluster, on openraft 0.9.25.
//!
//! [`RaftNode`] implements [`ClusterCoordinator`](catga_cluster_core::ClusterCoordinator)
//! with a lease-safe `is_leader()`, replicates a small key-value store and
//! fenced locks through the log, stores its state durably (fsync before
//! acknowledging, checksummed records) or in memory, talks to its peers over
//! HTTP with one pooled client, and hands leadership over gracefully when it
//! stops.
//!
//! ```no_run
//! use catga_cluster_core::config::ClusterConfig;
//! use catga_cluster_core::ClusterCoordinator;
//! use catga_cluster_raft::RaftNode;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ClusterConfig::load(Some("appsettings.json".as_ref()))?;
//! let node = RaftNode::builder(config).start().await?;
//! // Mount `node.rpc_handler()` on the HTTP server (catga-cluster-axum does).
//! let leader = node.wait_for_leader(std::time::Duration::from_secs(5)).await?;
//! println!("leader: {}", leader.id);
//! node.shutdown().await;
//! # Ok(()) }
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

#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;

pub use kv::CasOutcome;
pub use lock::{Acquisition, RaftLock, RaftLockGuard};
pub use network::RaftRpcHandler;
pub use node::{
    NodeOptions, RaftHealth, RaftNode, RaftNodeBuilder, StartError, Storage, Transport,
};
pub use types::{Command, CommandResponse, Operation, TypeConfig};
