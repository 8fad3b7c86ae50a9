//! The paths of the routes this crate adds to those of
//! [`catga_cluster_core::protocol`].

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

#[cfg(test)]
mod tests {
    use catga_cluster_core::protocol::CLUSTER_PREFIX;

    use super::*;

    #[test]
    fn paths_live_under_the_cluster_prefix() {
        for path in [
            STATUS,
            OPENAPI,
            MEMBERS,
            MEMBER,
            LEADERSHIP_TRANSFER,
            LOCK_ACQUIRE,
            LOCK_RENEW,
            LOCK_RELEASE,
            KV,
        ] {
            assert!(path.starts_with(CLUSTER_PREFIX), "{path}");
        }
    }
}
