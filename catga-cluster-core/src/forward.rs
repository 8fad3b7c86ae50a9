//! The forwarder contract: what a forwarding [`tower::Service`] receives.
//!
//! A forwarder is any service that accepts a [`ForwardRequest`]: the target
//! leader, the request itself, the hop count the forwarded request carries and
//! the deadline by which an answer is needed. `catga-cluster-tower` ships an
//! HTTP reverse proxy and a JSON command forwarder; a gRPC or message-queue
//! forwarder is just another service.
//!
//! [`tower::Service`]: https://docs.rs/tower/latest/tower/trait.Service.html
//!
//! ```
//! use catga_cluster_core::{Endpoint, ForwardRequest, NodeId, NodeInfo};
//!
//! let leader = NodeInfo::new(NodeId::new(1), Endpoint::parse("http://127.0.0.1:5001").unwrap());
//! let forwarded = ForwardRequest::new(leader, "create-order", 1, None);
//! assert_eq!(forwarded.hops, 1);
//! let (leader, request) = (forwarded.leader, forwarded.request);
//! assert_eq!((leader.id.get(), request), (1, "create-order"));
//! ```

use tokio::time::Instant;

use crate::NodeInfo;

/// A request on its way to the leader.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ForwardRequest<R> {
    /// The node believed to lead, where the request goes.
    pub leader: NodeInfo,
    /// The request.
    pub request: R,
    /// The hop count the forwarded request carries: how many times it has
    /// been forwarded, this forward included.
    pub hops: u32,
    /// When the caller stops waiting for an answer, if ever.
    pub deadline: Option<Instant>,
}

impl<R> ForwardRequest<R> {
    /// A request for `leader`, carrying hop count `hops`.
    pub fn new(leader: NodeInfo, request: R, hops: u32, deadline: Option<Instant>) -> Self {
        ForwardRequest {
            leader,
            request,
            hops,
            deadline,
        }
    }

    /// Replaces the request, keeping target, hops and deadline.
    pub fn map<S>(self, f: impl FnOnce(R) -> S) -> ForwardRequest<S> {
        ForwardRequest {
            leader: self.leader,
            request: f(self.request),
            hops: self.hops,
            deadline: self.deadline,
        }
    }

    /// The time left before the deadline (`None`: no deadline).
    pub fn remaining(&self) -> Option<std::time::Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }
}
