//! The HTTP edge of catga-cluster: cluster routes, health, security,
//! metrics and `application/problem+json` errors for axum.
//!
//! One call mounts every route of the HTTP contract into your router, and
//! [`serve()`] runs it with a shutdown that hands leadership over before
//! the node stops:
//!
//! ```no_run
//! use axum::{routing::post, Router};
//! use catga_cluster_axum::{serve, ClusterRoutes, ProblemResponsesLayer};
//! use catga_cluster_core::config::ClusterConfig;
//! use catga_cluster_raft::RaftNode;
//! use catga_cluster_tower::ForwardToLeaderLayer;
//!
//! # #[cfg(feature = "raft")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let config = ClusterConfig::load(Some("appsettings.json".as_ref()))?;
//! // Bound before Raft starts, so that the peers' first RPCs find a listener.
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:5000").await?;
//! let node = RaftNode::builder(config).start().await?;
//!
//! let routes = ClusterRoutes::raft(node.clone());
//! let orders = Router::new()
//!     .route(
//!         "/orders",
//!         // Followers forward POST /orders to the leader.
//!         post(|| async { "created" }).route_layer(ForwardToLeaderLayer::new(node.clone())),
//!     )
//!     // The answers name the node that served them (x-catga-served-by).
//!     .route_layer(routes.edge_layer());
//! let app = routes.mount(orders).layer(ProblemResponsesLayer::new());
//!
//! // The hook drains, hands leadership over and stops Raft on shutdown.
//! serve(listener, app, routes.shutdown_hook(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```
//!
//! The forwarder wraps the handler with `MethodRouter::route_layer`, so
//! only the methods added before it are forwarded and a method the route
//! does not serve is answered `405 method-not-allowed` by the node that
//! received it. On the whole router (`Router::layer`, or
//! `Router::route_layer`, which wraps each path's 405 fallback too) a
//! follower would forward such a request to the leader and count it as a
//! forward. [`ClusterRoutes::edge_layer`] goes outside the forwarder;
//! [`ProblemResponsesLayer`], with `layer` on the whole application, turns
//! axum's own rejections of your routes into problem documents.
//!
//! # What is in here
//!
//! * [`ClusterRoutes`]: the routes ([`routes`] has the table) — Raft RPC,
//!   `/cluster/status`, membership, leadership transfer, locks, the
//!   key-value store, forwarded typed commands ([`commands`]), health
//!   ([`health`]), `/metrics` ([`metrics`]) and `/cluster/openapi.json`, all
//!   built from one route table, so the OpenAPI document cannot drift.
//! * [`problem`]: every error as `application/problem+json` with the
//!   contract's slugs and statuses, and [`problem::handle_error`] for
//!   axum's `HandleErrorLayer` (for middleware that fails with errors;
//!   `catga_cluster_tower::LeaderOnlyLayer::http` answers its `503` problem
//!   itself and needs no handler).
//! * [`auth`]: the cluster secret on protected routes (constant-time), or
//!   loopback-only protected mode without one.
//! * [`edge`]: `x-catga-served-by`, the opt-in `307` redirect mode and
//!   forward metrics, for your own cluster-aware routes too.
//! * [`serve()`]: stop accepting, hand over, drain, exit, as the routes'
//!   [`ShutdownHook`] says ([`shutdown`]); with [`HandshakeListener`] for
//!   TLS (any acceptor, or the `tls` feature's rustls one).
//!
//! # Features
//!
//! * `raft` (default): the routes backed by `catga_cluster_raft::RaftNode`
//!   ([`ClusterRoutes::raft`]). Without it the crate works with any
//!   [`ClusterCoordinator`](catga_cluster_core::ClusterCoordinator).
//! * `tls` (off by default): `tls::rustls_acceptor`, the handshake that
//!   makes a [`HandshakeListener`] serve HTTPS with rustls 0.23 (ring
//!   provider); it also turns on TLS for the clients — the `tls` features of
//!   `catga-cluster-tower` and, with `raft`, `catga-cluster-raft`.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The request bodies are read by the Raft-backed routes only.
#[cfg_attr(not(feature = "raft"), allow(dead_code))]
mod api;
pub mod auth;
pub mod commands;
pub mod edge;
#[cfg(all(feature = "raft", any(test, feature = "fuzzing")))]
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
mod limits;
pub mod listener;
pub mod metrics;
mod openapi;
pub mod problem;
pub mod problem_responses;
mod response;
pub mod routes;
pub mod serve;
pub mod shutdown;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

pub use commands::CommandRegistry;
pub use edge::EdgeLayer;
pub use health::{HealthOptions, HealthStatus};
pub use listener::HandshakeListener;
pub use metrics::ClusterMetrics;
pub use problem::{handle_error, Problem};
pub use problem_responses::ProblemResponsesLayer;
pub use routes::{ClusterRoutes, Limits};
pub use serve::{serve, Serve};
pub use shutdown::ShutdownHook;
