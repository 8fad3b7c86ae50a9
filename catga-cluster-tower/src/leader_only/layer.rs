use std::marker::PhantomData;

use tower_layer::Layer;

use super::{LeaderOnly, RefuseWithError};

/// Applies [`LeaderOnly`] to a service.
///
/// [`new`](LeaderOnlyLayer::new) and [`strict`](LeaderOnlyLayer::strict)
/// refuse with a [`NotLeader`](catga_cluster_core::NotLeader) error, for any
/// service; [`http`](LeaderOnlyLayer::http) and
/// [`http_strict`](LeaderOnlyLayer::http_strict) answer HTTP requests with
/// the `503` problem themselves, so the layer goes straight onto an axum
/// route:
///
/// ```
/// # #[cfg(feature = "http-forwarder")] {
/// use axum::{routing::post, Router};
/// use catga_cluster_core::testing::ManualCoordinator;
/// use catga_cluster_tower::LeaderOnlyLayer;
///
/// let coord = ManualCoordinator::new_leader(); // your RaftNode in production
/// let app: Router = Router::new()
///     .route("/jobs", post(|| async { "started" }))
///     .route_layer(LeaderOnlyLayer::http(coord));
/// # let _ = app;
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LeaderOnlyLayer<C, R = RefuseWithError> {
    coordinator: C,
    strict: bool,
    refuse: PhantomData<fn() -> R>,
}

impl<C> LeaderOnlyLayer<C> {
    /// Leader-only with the cheap lease-safe check; refusals are
    /// [`NotLeader`](catga_cluster_core::NotLeader) errors.
    pub fn new(coordinator: C) -> Self {
        LeaderOnlyLayer {
            coordinator,
            strict: false,
            refuse: PhantomData,
        }
    }

    /// Leader-only with a quorum round before every call; refusals are
    /// [`NotLeader`](catga_cluster_core::NotLeader) errors.
    pub fn strict(coordinator: C) -> Self {
        LeaderOnlyLayer {
            strict: true,
            ..LeaderOnlyLayer::new(coordinator)
        }
    }
}

#[cfg(feature = "http-forwarder")]
impl<C> LeaderOnlyLayer<C, super::RefuseWithProblem> {
    /// Leader-only for HTTP with the cheap lease-safe check; refusals are
    /// answered with the `503` `application/problem+json` document (see the
    /// [module docs](super)), so the service never fails on its own.
    pub fn http(coordinator: C) -> Self {
        LeaderOnlyLayer {
            coordinator,
            strict: false,
            refuse: PhantomData,
        }
    }

    /// Like [`http`](LeaderOnlyLayer::http), with a quorum round before
    /// every call; a failed round is answered with the `503` problem too.
    pub fn http_strict(coordinator: C) -> Self {
        LeaderOnlyLayer {
            strict: true,
            ..LeaderOnlyLayer::http(coordinator)
        }
    }
}

impl<S, C: Clone, R> Layer<S> for LeaderOnlyLayer<C, R> {
    type Service = LeaderOnly<S, C, R>;

    fn layer(&self, inner: S) -> Self::Service {
        LeaderOnly::with_refusal(inner, self.coordinator.clone()).strict(self.strict)
    }
}
