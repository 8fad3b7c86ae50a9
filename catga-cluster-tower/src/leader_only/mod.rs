//! Middleware that serves requests only on the leader.
//!
//! [`LeaderOnly`] calls the inner service when the coordinator says this
//! node leads (a lease-safe, synchronous check) and otherwise fails with
//! [`NotLeader`](catga_cluster_core::NotLeader), carrying the leader hint
//! and the reason, without calling the inner service. The leader's path
//! neither allocates nor waits.
//!
//! In strict mode each request first confirms leadership with a quorum
//! round ([`ClusterCoordinator::ensure_leader`]); that path boxes its future.
//!
//! # Readiness
//!
//! `poll_ready` is the inner service's: a refused request does not use the
//! readiness it reserved.
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

mod layer;

pub mod future;

use std::task::{Context, Poll};

use catga_cluster_core::coordinator::not_leader_for;
use catga_cluster_core::{BoxError, ClusterCoordinator};
use tower_service::Service;

pub use self::future::ResponseFuture;
pub use self::layer::LeaderOnlyLayer;

/// Serves requests only on the leader; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct LeaderOnly<S, C> {
    inner: S,
    coordinator: C,
    strict: bool,
}

impl<S, C> LeaderOnly<S, C> {
    /// Wraps `inner`, checking leadership with `coordinator`.
    pub fn new(inner: S, coordinator: C) -> Self {
        LeaderOnly {
            inner,
            coordinator,
            strict: false,
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
}

impl<S, C, Req> Service<Req> for LeaderOnly<S, C>
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
        if !self.coordinator.is_leader() {
            let refusal = not_leader_for(&self.coordinator);
            tracing::debug!(
                target: "catga_cluster::leader_only",
                reason = %refusal.reason,
                leader_id = ?refusal.leader_id,
                "refused: not the leader"
            );
            return ResponseFuture::rejected(refusal);
        }
        if !self.strict {
            return ResponseFuture::inner(self.inner.call(req));
        }
        // The ready inner service goes into the future; a fresh clone
        // (not yet ready) stays behind.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let coordinator = self.coordinator.clone();
        ResponseFuture::strict(Box::pin(async move {
            coordinator.ensure_leader().await?;
            let mut inner = inner;
            inner.call(req).await.map_err(Into::into)
        }))
    }
}
