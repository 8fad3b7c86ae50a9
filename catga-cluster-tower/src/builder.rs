//! `ServiceBuilder` methods for the cluster middleware.

use tower::ServiceBuilder;
#[cfg(any(feature = "leader-only", feature = "http-forwarder"))]
use tower_layer::Stack;

#[cfg(feature = "http-forwarder")]
use crate::forward::ForwardToLeaderLayer;
#[cfg(feature = "leader-only")]
use crate::leader_only::LeaderOnlyLayer;

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}

/// Adds the cluster middleware to [`ServiceBuilder`].
///
/// ```
/// # #[cfg(feature = "leader-only")] {
/// use catga_cluster_core::testing::ManualCoordinator;
/// use catga_cluster_tower::ServiceBuilderExt;
/// use tower::{service_fn, ServiceBuilder};
///
/// let coord = ManualCoordinator::new_leader();
/// let _svc = ServiceBuilder::new()
///     .leader_only(coord)
///     .service(service_fn(|n: u32| async move { Ok::<_, std::convert::Infallible>(n) }));
/// # }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed + Sized {
    /// Serves only on the leader ([`LeaderOnlyLayer::new`]).
    #[cfg(feature = "leader-only")]
    fn leader_only<C>(self, coordinator: C) -> ServiceBuilder<Stack<LeaderOnlyLayer<C>, L>>;

    /// Serves on the leader and forwards `http::Request`s to it from other
    /// nodes through a new [`HttpForwarder`](crate::HttpForwarder), as
    /// [`ForwardToLeaderLayer::new`] (axum's body) and
    /// [`ForwardToLeaderLayer::http`] (a boxed body) do. The forwarder
    /// answers with the service's response type, so its body type `RB` is
    /// inferred from the service.
    #[cfg(feature = "http-forwarder")]
    fn forward_to_leader<C, RB>(
        self,
        coordinator: C,
    ) -> ServiceBuilder<Stack<ForwardToLeaderLayer<C, crate::HttpForwarder<RB>>, L>>
    where
        RB: crate::problem::ResponseBody;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    #[cfg(feature = "leader-only")]
    fn leader_only<C>(self, coordinator: C) -> ServiceBuilder<Stack<LeaderOnlyLayer<C>, L>> {
        self.layer(LeaderOnlyLayer::new(coordinator))
    }

    #[cfg(feature = "http-forwarder")]
    fn forward_to_leader<C, RB>(
        self,
        coordinator: C,
    ) -> ServiceBuilder<Stack<ForwardToLeaderLayer<C, crate::HttpForwarder<RB>>, L>>
    where
        RB: crate::problem::ResponseBody,
    {
        self.layer(ForwardToLeaderLayer::with_forwarder(
            coordinator,
            crate::HttpForwarder::new(),
        ))
    }
}
