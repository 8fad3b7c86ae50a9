//! The integration tests of `catga-cluster-axum`, in one binary (one link
//! instead of one per file): the routes through `Router::oneshot`, `serve`
//! on real sockets, three-node clusters over sockets and over TLS.

mod common;

#[cfg(feature = "raft")]
mod cluster_sockets;
#[cfg(feature = "raft")]
mod raft_routes;
mod routes;
mod serve;
#[cfg(all(feature = "raft", feature = "tls"))]
mod tls;
