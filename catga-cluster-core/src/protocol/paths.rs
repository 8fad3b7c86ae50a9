//! The paths of the cluster's HTTP routes other than the Raft RPCs
//! ([`raft_rpc_path`](super::raft_rpc_path)) and forwarded commands
//! ([`FORWARD_PATH_PREFIX`](super::FORWARD_PATH_PREFIX)). A `{name}` segment
//! is a parameter and `{*key}` the rest of the path, as axum and OpenAPI
//! write route patterns.
//!
//! ```
//! use catga_cluster_core::protocol::paths;
//!
//! assert_eq!(paths::HEALTH_READY, "/health/ready");
//! assert!(paths::STATUS.starts_with(catga_cluster_core::protocol::CLUSTER_PREFIX));
//! ```

/// Liveness probe.
pub const HEALTH_LIVE: &str = "/health/live";
/// Readiness probe.
pub const HEALTH_READY: &str = "/health/ready";
/// 200 on the leader only.
pub const HEALTH_LEADER: &str = "/health/leader";
/// Prometheus metrics.
pub const METRICS: &str = "/metrics";
/// The node's status.
pub const STATUS: &str = "/cluster/status";
/// The OpenAPI document.
pub const OPENAPI: &str = "/cluster/openapi.json";
/// Membership: `POST` adds a member.
pub const MEMBERS: &str = "/cluster/members";
/// Membership: `DELETE` removes member `{id}`.
pub const MEMBER: &str = "/cluster/members/{id}";
/// Server-Sent Events of this node's leadership snapshots.
pub const LEADERSHIP_EVENTS: &str = "/cluster/leadership/events";
/// Leadership transfer.
pub const LEADERSHIP_TRANSFER: &str = "/cluster/leadership/transfer";
/// Lock acquire.
pub const LOCK_ACQUIRE: &str = "/cluster/locks/{name}/acquire";
/// Lock renew.
pub const LOCK_RENEW: &str = "/cluster/locks/{name}/renew";
/// Lock release.
pub const LOCK_RELEASE: &str = "/cluster/locks/{name}/release";
/// The key-value store (`{key}` may contain `/`).
pub const KV: &str = "/cluster/kv/{*key}";
/// The keys under a prefix (`?prefix=`): a list, or with `watch=true`
/// Server-Sent Events of their changes.
pub const KV_PREFIX: &str = "/cluster/kv";
