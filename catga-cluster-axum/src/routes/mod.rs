//! The cluster routes and the one call that mounts them.
//!
//! [`ClusterRoutes`] builds every route of the HTTP contract from one route
//! table, which pairs each handler with its description; the same table
//! generates the OpenAPI document served on `GET /cluster/openapi.json`, so
//! the two cannot drift. Each route carries its body limit (`413
//! payload-too-large`), its deadline (`504 timeout`), its protection (see
//! [`crate::auth`]) and, for routes that must run on the leader, the
//! forwarding middleware of `catga-cluster-tower`.
//!
//! | method and path | access | backend |
//! |---|---|---|
//! | `GET /health/live`, `/health/ready`, `/health/leader` | open | any coordinator |
//! | `GET /cluster/status`, `/cluster/openapi.json`, `/metrics` | open | any coordinator |
//! | `POST /cluster/forward/{command}` | protected | any coordinator (forwarded to the leader) |
//! | `POST /cluster/raft/{append,vote,snapshot,elect,propose,read,gone}` | protected (peers) | `RaftNode` |
//! | `GET /cluster/raft/watch` (the leader watch) | protected (peers) | `RaftNode` |
//! | `POST /cluster/members`, `DELETE /cluster/members/{id}` | protected | `RaftNode` (forwarded to the leader) |
//! | `POST /cluster/leadership/transfer` | protected | `RaftNode` (forwarded to the leader) |
//! | `POST /cluster/locks/{name}/{acquire,renew,release}` | protected | `RaftNode` (any node) |
//! | `GET`/`PUT`/`DELETE /cluster/kv/{key}` | protected | `RaftNode` (any node) |
//! | `GET /cluster/kv?prefix=P[&watch=true]` (a list, or an event stream) | protected | `RaftNode` (any node) |
//! | `GET /cluster/leadership/events` (an event stream) | protected | any coordinator |
//!
//! `/cluster/status` is open, like the health routes: it is read-only and
//! shows what the health and metrics routes show, and operators and load
//! balancers read it without credentials.

// The builder (`ClusterRoutes`) serves the route table (`table`, and `raft`
// for the Raft-backed routes), whose handlers answer with the JSON types of
// `crate::api` and are described for `crate::openapi`; `middleware` checks
// bodies and classifies routes.
mod builder;
mod handlers;
mod middleware;
pub mod paths;
#[cfg(feature = "raft")]
pub(crate) mod raft;
mod state;
mod table;

pub use crate::limits::Limits;
pub use builder::ClusterRoutes;

/// How often an idle event stream sends a comment, so that proxies keep it
/// open.
pub(crate) const HEARTBEAT: std::time::Duration = std::time::Duration::from_secs(15);
