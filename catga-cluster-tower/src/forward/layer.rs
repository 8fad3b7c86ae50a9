use std::time::Duration;

use tower_layer::Layer;

use super::{ForwardToLeader, HttpPolicy, PlainPolicy, Settings};

/// Applies [`ForwardToLeader`] to a service.
///
/// The constructors, by what is forwarded:
///
/// * [`new`](ForwardToLeaderLayer::new) (feature `axum`): `http::Request`s
///   of an axum `Router`, through a new
///   [`AxumForwarder`](crate::AxumForwarder). The one-liner:
///   `.layer(ForwardToLeaderLayer::new(coord))`.
/// * [`http`](ForwardToLeaderLayer::http) (feature `http-forwarder`):
///   `http::Request`s of a hyper or tower service answering
///   `http::Response<DefaultResponseBody>`, through a new
///   [`HttpForwarder`](crate::HttpForwarder).
/// * [`with_forwarder`](ForwardToLeaderLayer::with_forwarder):
///   `http::Request`s, through a forwarder service of your own
///   ([`HttpPolicy`]: the hop count in `x-catga-forwarded`, failures answered
///   as `application/problem+json`).
/// * [`with_plain_forwarder`](ForwardToLeaderLayer::with_plain_forwarder):
///   any other request type (typed commands, gRPC messages), through a
///   forwarder service of your own ([`PlainPolicy`]: hop count 0, failures
///   returned as errors).
///
/// [`forwarder`](ForwardToLeaderLayer::forwarder) and
/// [`policy`](ForwardToLeaderLayer::policy) replace either part later.
///
/// Each constructor gives one fixed type, whichever features are on: `new`
/// exists only with `axum` rather than changing its forwarder's body type
/// with it, so a crate that builds without `axum` builds with it too.
#[derive(Debug, Clone)]
pub struct ForwardToLeaderLayer<C, F, P = HttpPolicy> {
    coordinator: C,
    forwarder: F,
    policy: P,
    settings: Settings,
}

#[cfg(feature = "axum")]
impl<C> ForwardToLeaderLayer<C, crate::AxumForwarder> {
    /// Forwarding of an axum `Router`'s requests with a new
    /// [`AxumForwarder`](crate::AxumForwarder): a streaming reverse proxy
    /// with its own connection pool, for `http://` leaders (replace it with
    /// [`forwarder`](ForwardToLeaderLayer::forwarder), e.g. for TLS).
    ///
    /// ```
    /// use axum::{routing::post, Router};
    /// use catga_cluster_core::testing::ManualCoordinator;
    /// use catga_cluster_tower::ForwardToLeaderLayer;
    ///
    /// let coord = ManualCoordinator::new_follower(); // your RaftNode in production
    /// let app: Router = Router::new()
    ///     .route("/orders", post(|| async { "created" }))
    ///     .route_layer(ForwardToLeaderLayer::new(coord));
    /// # let _ = app;
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    pub fn new(coordinator: C) -> Self {
        ForwardToLeaderLayer::with_forwarder(coordinator, crate::AxumForwarder::new())
    }
}

#[cfg(feature = "http-forwarder")]
impl<C> ForwardToLeaderLayer<C, crate::HttpForwarder> {
    /// Forwarding of `http::Request`s with a new
    /// [`HttpForwarder`](crate::HttpForwarder), for a hyper or tower service
    /// that answers `http::Response<`[`DefaultResponseBody`](crate::http_forwarder::DefaultResponseBody)`>`
    /// (on an axum `Router`, use [`new`](ForwardToLeaderLayer::new)).
    ///
    /// [`HttpPolicy`] copies a request with an empty body for a retry, so the
    /// request body type needs a `Default`; hyper's `Incoming` has none: box
    /// it first, as here for a service handed to hyper with
    /// `hyper_util::service::TowerToHyperService`:
    ///
    /// ```
    /// use bytes::Bytes;
    /// use catga_cluster_core::testing::ManualCoordinator;
    /// use catga_cluster_core::BoxError;
    /// use catga_cluster_tower::http_forwarder::DefaultResponseBody;
    /// use catga_cluster_tower::ForwardToLeaderLayer;
    /// use http_body_util::combinators::UnsyncBoxBody;
    /// use http_body_util::{BodyExt, Full};
    /// use hyper::body::Incoming;
    /// use tower::{service_fn, ServiceBuilder};
    ///
    /// type RequestBody = UnsyncBoxBody<Bytes, BoxError>;
    ///
    /// let coord = ManualCoordinator::new_follower(); // your RaftNode in production
    /// let svc = ServiceBuilder::new()
    ///     .map_request(|req: http::Request<Incoming>| {
    ///         req.map(|body| body.map_err(BoxError::from).boxed_unsync())
    ///     })
    ///     .layer(ForwardToLeaderLayer::http(coord))
    ///     .service(service_fn(|_req: http::Request<RequestBody>| async {
    ///         let body: DefaultResponseBody = Full::from("created").map_err(Into::into).boxed_unsync();
    ///         Ok::<_, BoxError>(http::Response::new(body))
    ///     }));
    /// # fn hyper_service<S>(_: &S)
    /// # where
    /// #     S: tower::Service<http::Request<Incoming>, Response = http::Response<DefaultResponseBody>>,
    /// #     S::Error: Into<BoxError>,
    /// # {}
    /// # hyper_service(&svc);
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "http-forwarder")))]
    pub fn http(coordinator: C) -> Self {
        ForwardToLeaderLayer::with_forwarder(coordinator, crate::HttpForwarder::new())
    }
}

impl<C, F> ForwardToLeaderLayer<C, F> {
    /// Forwarding of `http::Request`s through `forwarder`, a service that
    /// takes [`ForwardRequest`](catga_cluster_core::ForwardRequest)`<http::Request<B>>`s
    /// and answers with the wrapped service's response type (often one that
    /// wraps an [`HttpForwarder`](crate::HttpForwarder); see
    /// [`http_forwarder`](crate::http_forwarder#wrapping-it)).
    ///
    /// The policy is [`HttpPolicy`]: for any other request type use
    /// [`with_plain_forwarder`](ForwardToLeaderLayer::with_plain_forwarder).
    pub fn with_forwarder(coordinator: C, forwarder: F) -> Self {
        ForwardToLeaderLayer {
            coordinator,
            forwarder,
            policy: HttpPolicy,
            settings: Settings::default(),
        }
    }
}

impl<C, F> ForwardToLeaderLayer<C, F, PlainPolicy> {
    /// Forwarding of requests that are not `http::Request`s (typed
    /// commands, gRPC messages) through `forwarder`, a service that takes
    /// [`ForwardRequest`](catga_cluster_core::ForwardRequest)`<Req>`s and
    /// answers with the wrapped service's response type.
    ///
    /// The policy is [`PlainPolicy`]: such requests carry no hop count (0),
    /// are never retried, and failures (no leader, a failed forward) come
    /// back as the service's error, a [`BoxError`](catga_cluster_core::BoxError)
    /// to downcast (see [`crate::error`]).
    ///
    /// ```
    /// use catga_cluster_core::testing::ManualCoordinator;
    /// use catga_cluster_core::{BoxError, ForwardRequest};
    /// use catga_cluster_tower::ForwardToLeaderLayer;
    /// use tower::{service_fn, Layer, ServiceExt};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let coord = ManualCoordinator::new_leader();
    /// let forwarder = service_fn(|f: ForwardRequest<String>| async move {
    ///     Ok::<_, BoxError>(format!("{} sent to node {}", f.request, f.leader.id))
    /// });
    /// let svc = ForwardToLeaderLayer::with_plain_forwarder(coord, forwarder)
    ///     .layer(service_fn(|r: String| async move { Ok::<_, BoxError>(format!("{r} served here")) }));
    /// assert_eq!(svc.oneshot("hello".to_owned()).await.unwrap(), "hello served here");
    /// # });
    /// ```
    pub fn with_plain_forwarder(coordinator: C, forwarder: F) -> Self {
        ForwardToLeaderLayer {
            coordinator,
            forwarder,
            policy: PlainPolicy,
            settings: Settings::default(),
        }
    }
}

impl<C, F, P> ForwardToLeaderLayer<C, F, P> {
    /// Replaces the forwarder.
    pub fn forwarder<F2>(self, forwarder: F2) -> ForwardToLeaderLayer<C, F2, P> {
        ForwardToLeaderLayer {
            coordinator: self.coordinator,
            forwarder,
            policy: self.policy,
            settings: self.settings,
        }
    }

    /// Replaces the request policy (hop count, retries).
    pub fn policy<P2>(self, policy: P2) -> ForwardToLeaderLayer<C, F, P2> {
        ForwardToLeaderLayer {
            coordinator: self.coordinator,
            forwarder: self.forwarder,
            policy,
            settings: self.settings,
        }
    }

    /// How many times a request may have been forwarded before this node
    /// refuses to forward it again (default 1: a forwarded request is never
    /// forwarded again).
    pub fn hop_limit(mut self, limit: u32) -> Self {
        self.settings.hop_limit = limit;
        self
    }

    /// How long a request waits for an election while no leader is known
    /// (default 600 ms: twice the default maximum election timeout).
    pub fn hold_timeout(mut self, hold: Duration) -> Self {
        self.settings.hold = hold;
        self
    }

    /// The deadline of a forwarded request (default 30 s, as the seed's
    /// `ForwardTimeout`); `None` for no deadline.
    pub fn timeout(mut self, timeout: Option<Duration>) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// How many extra attempts a forward may make (default 1), within the
    /// rules of the policy.
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.settings.max_retries = retries;
        self
    }
}

impl<S, C: Clone, F: Clone, P: Clone> Layer<S> for ForwardToLeaderLayer<C, F, P> {
    type Service = ForwardToLeader<S, C, F, P>;

    fn layer(&self, inner: S) -> Self::Service {
        ForwardToLeader {
            inner,
            coordinator: self.coordinator.clone(),
            forwarder: self.forwarder.clone(),
            policy: self.policy.clone(),
            settings: self.settings,
            broken: None,
        }
    }
}
