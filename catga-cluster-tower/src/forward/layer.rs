use std::time::Duration;

use tower_layer::Layer;

use super::{ForwardToLeader, HttpPolicy, Settings};

/// Applies [`ForwardToLeader`] to a service.
///
/// `ForwardToLeaderLayer::new(coord)` forwards `http::Request`s with the
/// streaming [`HttpForwarder`](crate::HttpForwarder); plug in any other
/// forwarder service with [`forwarder`](ForwardToLeaderLayer::forwarder).
#[derive(Debug, Clone)]
pub struct ForwardToLeaderLayer<C, F, P = HttpPolicy> {
    coordinator: C,
    forwarder: F,
    policy: P,
    settings: Settings,
}

#[cfg(feature = "http-forwarder")]
impl<C> ForwardToLeaderLayer<C, crate::HttpForwarder> {
    /// Forwarding of `http::Request`s with the default [`HttpForwarder`](crate::HttpForwarder).
    pub fn new(coordinator: C) -> Self {
        ForwardToLeaderLayer::with_forwarder(coordinator, crate::HttpForwarder::new())
    }
}

impl<C, F> ForwardToLeaderLayer<C, F> {
    /// Forwarding through `forwarder`, a service that takes
    /// [`ForwardRequest`](catga_cluster_core::ForwardRequest)s.
    pub fn with_forwarder(coordinator: C, forwarder: F) -> Self {
        ForwardToLeaderLayer {
            coordinator,
            forwarder,
            policy: HttpPolicy,
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
