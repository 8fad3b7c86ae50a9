use tower_layer::Layer;

use super::LeaderOnly;

/// Applies [`LeaderOnly`] to a service.
#[derive(Debug, Clone)]
pub struct LeaderOnlyLayer<C> {
    coordinator: C,
    strict: bool,
}

impl<C> LeaderOnlyLayer<C> {
    /// Leader-only with the cheap lease-safe check.
    pub fn new(coordinator: C) -> Self {
        LeaderOnlyLayer {
            coordinator,
            strict: false,
        }
    }

    /// Leader-only with a quorum round before every call.
    pub fn strict(coordinator: C) -> Self {
        LeaderOnlyLayer {
            coordinator,
            strict: true,
        }
    }
}

impl<S, C: Clone> Layer<S> for LeaderOnlyLayer<C> {
    type Service = LeaderOnly<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        LeaderOnly::new(inner, self.coordinator.clone()).strict(self.strict)
    }
}
