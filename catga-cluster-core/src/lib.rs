//! Core traits and types of catga-cluster: node identity, the leadership
//! snapshot, the [`ClusterCoordinator`] trait, fences, errors, the forwarder
//! and lock contracts, the singleton-task runner and configuration.
//!
//! This crate has no Raft and no HTTP server in it: `catga-cluster-raft`
//! implements [`ClusterCoordinator`] with openraft, `catga-cluster-tower` and
//! `catga-cluster-axum` build middleware and routes on top of the traits.
//!
//! ```
//! use catga_cluster_core::{ClusterCoordinator, NotLeaderReason};
//!
//! // Leader-only work, generic over any coordinator.
//! async fn leader_only<C: ClusterCoordinator>(coord: &C) -> Result<u64, NotLeaderReason> {
//!     let fence = coord.ensure_leader().await.map_err(|e| e.reason)?;
//!     Ok(fence.term)
//! }
//! ```
//!
//! # Features
//!
//! * `config` (default): [`config::ClusterConfig`] from JSON, TOML and
//!   environment variables.
//! * `serde`: serialisation of the public types.
//! * `test-util`: [`testing::ManualCoordinator`].
//! * `http-client`: [`connector`], the connector the other crates' pooled
//!   HTTP clients share.
//! * `tls`: https-or-http over rustls for that connector, and `tls`, a
//!   node's certificate, key and CA roots from PEM files, checked, reloaded
//!   when they change and turned into rustls configurations.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod coordinator;
pub mod error;
pub mod failover;
pub mod forward;
pub mod leadership;
pub mod lock;
pub mod node;
pub mod protocol;
mod secret;
pub mod singleton;

#[cfg(feature = "config")]
pub mod config;
#[cfg(all(feature = "config", any(test, feature = "fuzzing")))]
#[doc(hidden)]
pub mod fuzzing;

#[cfg(feature = "http-client")]
pub mod connector;

#[cfg(feature = "tls")]
pub mod tls;

#[cfg(any(feature = "config", feature = "tls"))]
mod keys;

#[cfg(any(test, feature = "test-util"))]
pub mod testing;

pub use coordinator::{ClusterCoordinator, LeaderExecution, LeaderFence};
pub use error::{BoxError, ClusterError, MembershipError, NotLeader, NotLeaderReason};
pub use failover::{Failover, FailoverCounts, FailoverPath};
pub use forward::ForwardRequest;
pub use leadership::{LeaderInfo, Leadership, Role};
pub use lock::{DistributedLock, FencingToken, LockError, LockGuard};
pub use node::{Endpoint, EndpointError, NodeId, NodeInfo, NodeNameError};
pub use secret::ClusterSecret;
pub use singleton::{
    singleton_fn, SingletonConfig, SingletonHandle, SingletonRunner, SingletonState,
    SingletonStatus, SingletonTask, TaskContext,
};

/// Tokio's `watch` channel: [`ClusterCoordinator::subscribe`] returns a
/// [`watch::Receiver`]`<`[`Leadership`]`>`. Re-exported so that a
/// coordinator implementation names the same channel type without a tokio
/// dependency of its own (and the versions cannot drift).
pub use tokio::sync::watch;
