//! What shutting a server down does to the cluster: the drain flag the
//! health routes read, and the [`ShutdownHook`] that
//! [`serve`](crate::serve()) runs.
//!
//! The cluster routes and their hook share one drain flag, so take the
//! hook from the same [`ClusterRoutes`](crate::ClusterRoutes) that built
//! the router, and hand it to `serve`:
//!
//! ```
//! use axum::Router;
//! use catga_cluster_axum::{ClusterRoutes, ShutdownHook};
//! use catga_cluster_core::testing::ManualCoordinator;
//!
//! let routes = ClusterRoutes::new(ManualCoordinator::new_leader());
//! let app: Router = routes.mount(Router::new());
//! let hook: ShutdownHook = routes.shutdown_hook();
//! // `serve(listener, app, hook, signal)` does this when `signal` resolves:
//! hook.begin_drain();
//! assert!(hook.is_draining()); // `/health/ready` of `app` answers 503 now
//! # let _ = app;
//! ```
//!
//! A server without cluster routes passes [`ShutdownHook::none()`].

use std::fmt;
use std::sync::Arc;

#[cfg(feature = "raft")]
const TARGET: &str = "catga_cluster::axum::serve";

/// Whether the node is draining before it stops; shared by the health
/// routes (readiness turns `503`) and the [`ShutdownHook`] that sets it.
/// Long-lived answers (event streams) wait for it and end.
#[derive(Clone)]
pub(crate) struct DrainFlag(Arc<tokio::sync::watch::Sender<bool>>);

impl Default for DrainFlag {
    fn default() -> Self {
        DrainFlag(Arc::new(tokio::sync::watch::Sender::new(false)))
    }
}

impl DrainFlag {
    /// Marks the node as draining.
    pub(crate) fn begin(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`begin`](Self::begin) was called.
    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once [`begin`](Self::begin) was called.
    pub(crate) fn begun(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.0.subscribe();
        async move {
            // The sender lives as long as the flag's clones; if they are all
            // gone, nothing drains any more and the wait never ends.
            if rx.wait_for(|set| *set).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl fmt::Debug for DrainFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.is_set(), f)
    }
}

/// What happens to the cluster when the server shuts down; see the
/// [module docs](self). Get it from
/// [`ClusterRoutes::shutdown_hook`](crate::ClusterRoutes::shutdown_hook),
/// or use [`ShutdownHook::none`] for a router without cluster routes.
#[derive(Clone)]
pub struct ShutdownHook {
    draining: Option<DrainFlag>,
    #[cfg(feature = "raft")]
    raft: Option<catga_cluster_raft::RaftNode>,
}

impl fmt::Debug for ShutdownHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ShutdownHook");
        d.field("draining", &self.draining);
        #[cfg(feature = "raft")]
        d.field("raft", &self.raft.is_some());
        d.finish()
    }
}

impl ShutdownHook {
    pub(crate) fn new(
        draining: DrainFlag,
        #[cfg(feature = "raft")] raft: Option<catga_cluster_raft::RaftNode>,
    ) -> Self {
        ShutdownHook {
            draining: Some(draining),
            #[cfg(feature = "raft")]
            raft,
        }
    }

    /// The hook of a server without cluster routes: nothing to drain,
    /// hand over or stop.
    pub fn none() -> Self {
        ShutdownHook {
            draining: None,
            #[cfg(feature = "raft")]
            raft: None,
        }
    }

    /// Whether this is [`none`](Self::none).
    pub(crate) fn is_none(&self) -> bool {
        self.draining.is_none()
    }

    /// Marks the node as draining: readiness answers `503`.
    pub fn begin_drain(&self) {
        if let Some(draining) = &self.draining {
            draining.begin();
        }
    }

    /// Whether [`begin_drain`](Self::begin_drain) was called on the cluster
    /// routes of this hook (always `false` for [`none`](Self::none)).
    pub fn is_draining(&self) -> bool {
        self.draining.as_ref().is_some_and(DrainFlag::is_set)
    }

    /// Hands leadership over if this node leads (bounded by the node's
    /// hand-over timeout); a failure is logged and the shutdown goes on.
    pub async fn hand_over(&self) {
        #[cfg(feature = "raft")]
        if let Some(node) = &self.raft {
            // The node stops campaigning and claiming leadership; a leader
            // hands over while this server still accepts, so requests
            // forwarded here meanwhile reach the successor.
            if let Some(leader) = node.retire().await {
                tracing::info!(target: TARGET, new_leader = %leader, "leadership handed over before shutdown");
            }
        }
    }

    /// Tells the backend that the listener closes while the process runs
    /// on: a Raft node stops claiming leadership and standing, and ends
    /// its leader watches properly, so that no follower reads the closed
    /// listener as the death of the process (see `catga_cluster_raft`'s
    /// crash fail-over). [`serve`](crate::serve()) calls it before the
    /// listener closes, and when its future is dropped; call it yourself
    /// before you close a listener that serves these routes any other way.
    /// Synchronous and idempotent.
    pub fn listener_closing(&self) {
        #[cfg(feature = "raft")]
        if let Some(node) = &self.raft {
            node.listener_closing();
        }
    }

    /// Stops the backend (Raft), after the connections are drained.
    pub async fn stop(&self) {
        #[cfg(feature = "raft")]
        if let Some(node) = &self.raft {
            node.shutdown().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_drains_the_flag_it_shares() {
        let flag = DrainFlag::default();
        let hook = ShutdownHook::new(
            flag.clone(),
            #[cfg(feature = "raft")]
            None,
        );
        assert!(!hook.is_none() && !hook.is_draining());
        hook.begin_drain();
        assert!(flag.is_set() && hook.is_draining());

        let none = ShutdownHook::none();
        none.begin_drain();
        assert!(none.is_none() && !none.is_draining());
    }
}
