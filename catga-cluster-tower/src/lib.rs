//! Tower middleware for catga-cluster: serve only on the leader, or forward
//! to it.
//!
//! * [`LeaderOnlyLayer`]: on a node that does not lead, refuse without
//!   calling the inner service: [`LeaderOnlyLayer::http`] answers HTTP
//!   requests with the `503 not-leader` problem itself (it goes straight onto
//!   an axum route), [`LeaderOnlyLayer::new`] fails with
//!   [`NotLeader`](catga_cluster_core::NotLeader) for any service.
//! * [`ForwardToLeaderLayer`]: serve on the leader, forward from any other
//!   node through a forwarder service: [`HttpForwarder`] (a streaming
//!   reverse proxy; [`AxumForwarder`] for an axum `Router`, the default),
//!   [`JsonForwarder`] (typed serde commands), or your own.
//!
//! Both work with any [`ClusterCoordinator`](catga_cluster_core::ClusterCoordinator):
//! the Raft node of `catga-cluster-raft`, or a test double.
//!
//! ```no_run
//! # #[cfg(feature = "axum")] {
//! use axum::{routing::post, Router};
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_tower::ForwardToLeaderLayer;
//!
//! let coord = ManualCoordinator::new_leader();
//! let app: Router = Router::new().route(
//!     "/orders",
//!     // On the handler: a method the route does not serve is answered
//!     // `405` where it arrives, never forwarded.
//!     post(|| async { "created" }).route_layer(ForwardToLeaderLayer::new(coord)),
//! );
//! # let _ = app;
//! # }
//! ```
//!
//! # A custom forwarder
//!
//! A forwarder is any [`tower::Service`] over
//! [`ForwardRequest`](catga_cluster_core::ForwardRequest) whose response is
//! the inner service's. Here a hand-written one stands in for a gRPC client
//! (the seed's `GrpcClusterForwarder`):
//!
//! ```
//! # #[cfg(feature = "forward")] {
//! use std::future::{ready, Ready};
//! use std::task::{Context, Poll};
//! use catga_cluster_core::{BoxError, ForwardRequest};
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_tower::ForwardToLeaderLayer;
//! use tower::{service_fn, Layer, Service};
//!
//! #[derive(Clone)]
//! struct GrpcForwarder; // would hold a tonic channel per leader
//!
//! impl Service<ForwardRequest<String>> for GrpcForwarder {
//!     type Response = String;
//!     type Error = BoxError;
//!     type Future = Ready<Result<String, BoxError>>;
//!
//!     fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
//!         Poll::Ready(Ok(()))
//!     }
//!
//!     fn call(&mut self, f: ForwardRequest<String>) -> Self::Future {
//!         ready(Ok(format!("{} sent to {} (hop {})", f.request, f.leader.endpoint, f.hops)))
//!     }
//! }
//!
//! let coord = ManualCoordinator::new_follower();
//! // Not an `http::Request`: the plain policy (no hop count, errors as errors).
//! let layer = ForwardToLeaderLayer::with_plain_forwarder(coord, GrpcForwarder);
//! let _svc = layer.layer(service_fn(|r: String| async move { Ok::<_, BoxError>(r) }));
//! # }
//! ```
//!
//! A forwarder of `http::Request`s of your own (one that wraps an
//! [`HttpForwarder`], say) goes in with
//! [`ForwardToLeaderLayer::with_forwarder`]; see
//! [`http_forwarder`](crate::http_forwarder#wrapping-it).
//!
//! # Features
//!
//! Features only add items: no feature changes a type or a signature, so a
//! crate that builds with some set of them builds with more.
//!
//! | feature | adds | default |
//! |---|---|---|
//! | `leader-only` | [`LeaderOnlyLayer`] | yes |
//! | `forward` | [`ForwardToLeaderLayer`] with your own forwarder | yes |
//! | `http-forwarder` | [`HttpForwarder`] (answers with a boxed body), `ForwardToLeaderLayer::http`, `problem` | yes |
//! | `axum` | `AxumForwarder` (answers with axum's body), `ForwardToLeaderLayer::new` | yes |
//! | `json-forwarder` | `JsonForwarder` | no |
//! | `full` | all of the above | no |
//! | `tls` | `HttpForwarder::with_tls`, `JsonForwarder::with_tls`, and `rustls` re-exported so the versions match (rustls 0.23, ring provider) | no |
//!
//! A plain hyper or tower user takes `default-features = false, features =
//! ["http-forwarder"]` (or just `["forward"]` with a forwarder of their
//! own).
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod builder;
pub mod error;
#[cfg(feature = "forward")]
pub mod forward;
#[cfg(all(feature = "forward", any(test, feature = "fuzzing")))]
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "http-forwarder")]
pub mod http_forwarder;
#[cfg(feature = "json-forwarder")]
pub mod json_forwarder;
#[cfg(feature = "leader-only")]
pub mod leader_only;
#[cfg(feature = "http-forwarder")]
pub mod problem;

#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub use rustls;

pub use builder::ServiceBuilderExt;
#[cfg(feature = "forward")]
pub use forward::{
    ForwardPolicy, ForwardToLeader, ForwardToLeaderLayer, HttpPolicy, MapError, PlainPolicy,
};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use http_forwarder::AxumForwarder;
#[cfg(feature = "http-forwarder")]
pub use http_forwarder::HttpForwarder;
#[cfg(feature = "json-forwarder")]
pub use json_forwarder::JsonForwarder;
#[cfg(feature = "leader-only")]
pub use leader_only::{LeaderOnly, LeaderOnlyLayer};

/// The tower trait every middleware and forwarder here implements,
/// re-exported so that a custom forwarder needs no `tower-service`
/// dependency of its own.
pub use tower_service::Service;

/// The tower trait of the layers here, re-exported like [`Service`].
pub use tower_layer::Layer;
