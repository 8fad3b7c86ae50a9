//! Middleware that serves requests only on the leader.
//!
//! [`LeaderOnly`] calls the inner service when the coordinator says this
//! node leads (a lease-safe, synchronous check) and otherwise refuses the
//! request, with the leader hint and the reason, without calling the inner
//! service. The leader's path neither allocates nor waits.
//!
//! How a refusal reaches the caller is the layer's choice:
//!
//! * [`LeaderOnlyLayer::new`] fails with a
//!   [`NotLeader`] error (as a [`BoxError`]):
//!   for any service, HTTP or not. The errors of the inner service are
//!   boxed too.
//! * [`LeaderOnlyLayer::http`] (features `leader-only` and
//!   `http-forwarder`) answers the refusal itself with the `503`
//!   `application/problem+json` document of the HTTP contract
//!   ([`Problem::not_leader`](crate::problem::Problem::not_leader)):
//!   `not-leader` with `x-catga-leader`, `x-catga-leader-id` and
//!   `Retry-After: 0` when another node is known to lead, `no-leader` with
//!   `Retry-After: 1` otherwise. It never fails on its own, its error type
//!   is the inner service's (`Infallible` for an axum route), and its
//!   response type is the inner service's `http::Response<B>` for any body
//!   `B: From<Bytes>` (axum's `Body` among them, no feature needed), so it
//!   goes straight onto an axum route.
//!
//! In strict mode ([`LeaderOnlyLayer::strict`],
//! [`LeaderOnlyLayer::http_strict`]) each request first confirms leadership
//! with a quorum round ([`ClusterCoordinator::ensure_leader`]), inside the
//! response future; that path boxes its future. A failed round is refused
//! like a follower's request.
//!
//! # Readiness
//!
//! `poll_ready` is the inner service's: a refused request does not use the
//! readiness it reserved. In strict mode the ready inner service moves into
//! the response future and a clone, not yet ready, stays behind.
//!
//! ```
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_core::NotLeader;
//! use catga_cluster_tower::LeaderOnlyLayer;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let coord = ManualCoordinator::new_follower();
//! let svc = ServiceBuilder::new()
//!     .layer(LeaderOnlyLayer::new(coord.clone()))
//!     .service(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n * 2) }));
//!
//! let err = svc.clone().oneshot(1).await.unwrap_err();
//! assert!(err.downcast_ref::<NotLeader>().is_some());
//!
//! coord.set_leader();
//! assert_eq!(svc.oneshot(21).await.unwrap(), 42);
//! # });
//! ```
//!
//! On an axum route, the layer that answers for itself:
//!
//! ```
//! # #[cfg(feature = "http-forwarder")] {
//! use axum::{body::Body, http::Request, routing::post, Router};
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_tower::LeaderOnlyLayer;
//! use tower::ServiceExt;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let coord = ManualCoordinator::new_follower(); // your RaftNode in production
//! let app = Router::new()
//!     .route("/jobs", post(|| async { "started" }))
//!     .route_layer(LeaderOnlyLayer::http(coord));
//!
//! let request = Request::post("/jobs").body(Body::empty()).unwrap();
//! let response = app.oneshot(request).await.unwrap();
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! assert_eq!(response.headers()["retry-after"], "1"); // no leader known yet
//! # });
//! # }
//! ```

mod layer;

pub mod future;

use std::marker::PhantomData;
use std::task::{Context, Poll};

use catga_cluster_core::coordinator::not_leader_for;
use catga_cluster_core::{BoxError, ClusterCoordinator, NotLeader};
use tower_service::Service;

#[cfg(feature = "http-forwarder")]
pub use self::future::ProblemResponseFuture;
pub use self::future::ResponseFuture;
pub use self::layer::LeaderOnlyLayer;

const TARGET: &str = "catga_cluster::leader_only";

/// Refuses with a [`NotLeader`] error: the answer of
/// [`LeaderOnlyLayer::new`] and [`LeaderOnlyLayer::strict`].
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RefuseWithError;

/// Refuses with the `503` `application/problem+json` answer of the HTTP
/// contract: the answer of [`LeaderOnlyLayer::http`] and
/// [`LeaderOnlyLayer::http_strict`].
#[cfg(feature = "http-forwarder")]
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct RefuseWithProblem;

/// Serves requests only on the leader; see the [module docs](self).
///
/// `R` says how a refusal is answered: [`RefuseWithError`] (the default) or
/// `RefuseWithProblem`.
#[derive(Debug, Clone)]
pub struct LeaderOnly<S, C, R = RefuseWithError> {
    inner: S,
    coordinator: C,
    strict: bool,
    refuse: PhantomData<fn() -> R>,
}

impl<S, C> LeaderOnly<S, C> {
    /// Wraps `inner`, checking leadership with `coordinator`; refusals are
    /// [`NotLeader`] errors.
    pub fn new(inner: S, coordinator: C) -> Self {
        LeaderOnly::with_refusal(inner, coordinator)
    }
}

#[cfg(feature = "http-forwarder")]
impl<S, C> LeaderOnly<S, C, RefuseWithProblem> {
    /// Wraps `inner`, checking leadership with `coordinator`; refusals are
    /// answered with the `503` problem (see the [module docs](self)).
    pub fn http(inner: S, coordinator: C) -> Self {
        LeaderOnly::with_refusal(inner, coordinator)
    }
}

impl<S, C, R> LeaderOnly<S, C, R> {
    pub(crate) fn with_refusal(inner: S, coordinator: C) -> Self {
        LeaderOnly {
            inner,
            coordinator,
            strict: false,
            refuse: PhantomData,
        }
    }

    /// Confirms leadership with a quorum round before every call.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// The refusal of a request that arrives now, if this node does not
    /// lead (the cheap, lease-safe check).
    fn refusal(&self) -> Option<NotLeader>
    where
        C: ClusterCoordinator,
    {
        if self.coordinator.is_leader() {
            return None;
        }
        let refusal = not_leader_for(&self.coordinator);
        tracing::debug!(
            target: TARGET,
            reason = %refusal.reason,
            leader_id = ?refusal.leader_id,
            "refused: not the leader"
        );
        Some(refusal)
    }

    /// The ready inner service, for a future that calls it later; a fresh
    /// clone (not yet ready) stays behind.
    fn take_ready(&mut self) -> S
    where
        S: Clone,
    {
        let clone = self.inner.clone();
        std::mem::replace(&mut self.inner, clone)
    }
}

impl<S, C, Req> Service<Req> for LeaderOnly<S, C, RefuseWithError>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send,
    C: ClusterCoordinator + Clone,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(refusal) = self.refusal() {
            return ResponseFuture::rejected(refusal);
        }
        if !self.strict {
            return ResponseFuture::inner(self.inner.call(req));
        }
        let mut inner = self.take_ready();
        let coordinator = self.coordinator.clone();
        ResponseFuture::strict(Box::pin(async move {
            coordinator.ensure_leader().await?;
            inner.call(req).await.map_err(Into::into)
        }))
    }
}

#[cfg(feature = "http-forwarder")]
impl<S, C, Req, B> Service<Req> for LeaderOnly<S, C, RefuseWithProblem>
where
    S: Service<Req, Response = http::Response<B>> + Clone + Send + 'static,
    S::Error: Send + 'static,
    S::Future: Send,
    B: From<bytes::Bytes> + Send + 'static,
    C: ClusterCoordinator + Clone,
    Req: Send + 'static,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = ProblemResponseFuture<S::Future, B, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(refusal) = self.refusal() {
            return ProblemResponseFuture::refused(refusal);
        }
        if !self.strict {
            return ProblemResponseFuture::inner(self.inner.call(req));
        }
        let mut inner = self.take_ready();
        let coordinator = self.coordinator.clone();
        ProblemResponseFuture::strict(Box::pin(async move {
            match coordinator.ensure_leader().await {
                Ok(_) => inner.call(req).await,
                Err(refusal) => Ok(problem_response(&refusal)),
            }
        }))
    }
}

/// The `503` problem answer of a refusal.
#[cfg(feature = "http-forwarder")]
pub(crate) fn problem_response<B: From<bytes::Bytes>>(refusal: &NotLeader) -> http::Response<B> {
    crate::problem::Problem::not_leader(refusal).response_with(B::from)
}
