//! The names a program using a Raft node needs, the traits whose methods it
//! calls among them.
//!
//! [`RaftNode`]'s leadership methods (`node()`, `is_leader()`,
//! `leadership()`, `subscribe()`, `ensure_leader()`, `wait_for_leader()`,
//! `execute_if_leader()`) are those of the
//! [`ClusterCoordinator`] trait, and a [`RaftLock`]'s `try_acquire` is
//! [`DistributedLock`]'s: the trait must be in scope to call them. One
//! import brings them all:
//!
//! ```no_run
//! use catga_cluster_raft::prelude::*;
//!
//! # async fn run(node: RaftNode) -> Result<(), Box<dyn std::error::Error>> {
//! println!("I am node {}; leading: {}", node.node().id, node.is_leader());
//! let fence: LeaderFence = node.ensure_leader().await?;
//! # let _ = fence;
//! # Ok(()) }
//! ```

pub use catga_cluster_core::config::ClusterConfig;
pub use catga_cluster_core::{
    ClusterCoordinator, ClusterError, DistributedLock, LeaderFence, LockGuard, NodeId, NodeInfo,
    NotLeader,
};

pub use crate::{RaftLock, RaftNode};
