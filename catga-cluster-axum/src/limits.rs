//! Body limits, deadlines and lock defaults of the cluster routes.
//!
//! ```
//! use std::time::Duration;
//! use catga_cluster_axum::{ClusterRoutes, Limits};
//! use catga_cluster_core::testing::ManualCoordinator;
//!
//! let limits = Limits::default()
//!     .kv_body(256 * 1024)
//!     .max_lock_wait(Duration::from_secs(5));
//! let routes = ClusterRoutes::new(ManualCoordinator::new_leader()).limits(limits);
//! # let _ = routes;
//! ```

use std::time::Duration;

/// Body limits, deadlines and lock defaults of the cluster routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// JSON bodies and routes without a body (default 64 KiB).
    pub json_body: usize,
    /// Key-value values (default 1 MiB, the store's largest value).
    pub kv_body: usize,
    /// Forwarded commands (default 1 MiB).
    pub command_body: usize,
    /// Raft RPCs (default 32 MiB; a larger batch is refused with 413 and
    /// the sender splits it).
    pub raft_body: usize,
    /// The deadline of ordinary routes (default 30 s).
    pub request_timeout: Duration,
    /// The deadline of membership changes and leadership transfer
    /// (`POST /cluster/members`, `DELETE /cluster/members/{id}`,
    /// `POST /cluster/leadership/transfer`; default 30 s): the whole
    /// request on the node that receives it, forwarding to the leader
    /// included — on these routes the forward hop gets this deadline
    /// instead of the forward timeout. A Raft node bounds its own work
    /// below it: `RaftNode::membership_change_bound` (catch-up 10 s + three
    /// write deadlines of 5 s = 25 s by default) plus the forward hold must
    /// stay under this, and the router logs a warning when it does not.
    pub admin_timeout: Duration,
    /// The deadline of Raft RPCs (default 60 s).
    pub raft_timeout: Duration,
    /// The longest `wait_ms` a lock acquire may ask for (default 30 s).
    pub max_lock_wait: Duration,
    /// The lease of a lock acquired or renewed without `ttl_ms`
    /// (default 30 s).
    pub default_lock_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            json_body: 64 * 1024,
            kv_body: 1024 * 1024,
            command_body: 1024 * 1024,
            raft_body: 32 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            admin_timeout: Duration::from_secs(30),
            raft_timeout: Duration::from_secs(60),
            max_lock_wait: Duration::from_secs(30),
            default_lock_ttl: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// Sets [`json_body`](Self::json_body).
    pub fn json_body(mut self, bytes: usize) -> Self {
        self.json_body = bytes;
        self
    }

    /// Sets [`kv_body`](Self::kv_body).
    pub fn kv_body(mut self, bytes: usize) -> Self {
        self.kv_body = bytes;
        self
    }

    /// Sets [`command_body`](Self::command_body).
    pub fn command_body(mut self, bytes: usize) -> Self {
        self.command_body = bytes;
        self
    }

    /// Sets [`raft_body`](Self::raft_body).
    pub fn raft_body(mut self, bytes: usize) -> Self {
        self.raft_body = bytes;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`admin_timeout`](Self::admin_timeout).
    pub fn admin_timeout(mut self, timeout: Duration) -> Self {
        self.admin_timeout = timeout;
        self
    }

    /// Sets [`raft_timeout`](Self::raft_timeout).
    pub fn raft_timeout(mut self, timeout: Duration) -> Self {
        self.raft_timeout = timeout;
        self
    }

    /// Sets [`max_lock_wait`](Self::max_lock_wait).
    pub fn max_lock_wait(mut self, wait: Duration) -> Self {
        self.max_lock_wait = wait;
        self
    }

    /// Sets [`default_lock_ttl`](Self::default_lock_ttl).
    pub fn default_lock_ttl(mut self, ttl: Duration) -> Self {
        self.default_lock_ttl = ttl;
        self
    }
}
