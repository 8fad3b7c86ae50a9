//! The errors of the middleware, one small type per failure.
//!
//! Every error reaches callers as a [`BoxError`],
//! as tower does; downcast to these types (or to
//! [`NotLeader`]) to tell them apart.
//! `catga-cluster-axum` turns each into an `application/problem+json` answer.
//!
//! ```
//! use catga_cluster_core::BoxError;
//! use catga_cluster_tower::error::HopLimit;
//!
//! let err: BoxError = HopLimit::new(1, 1).into();
//! assert!(err.downcast_ref::<HopLimit>().is_some());
//! assert_eq!(err.to_string(), "request already forwarded 1 times (limit 1)");
//! ```

use std::time::Duration;

use catga_cluster_core::{BoxError, NodeInfo};

pub use catga_cluster_core::{NotLeader, NotLeaderReason};

/// A request arrived already forwarded as often as allowed, so it is not
/// forwarded again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request already forwarded {hops} times (limit {limit})")]
#[non_exhaustive]
pub struct HopLimit {
    /// The hop count the request carried.
    pub hops: u32,
    /// The configured limit.
    pub limit: u32,
}

impl HopLimit {
    /// A request that carried `hops` against a limit of `limit`.
    pub fn new(hops: u32, limit: u32) -> Self {
        HopLimit { hops, limit }
    }
}

/// The hop-count header (`x-catga-forwarded`) is not a hop count: not a
/// decimal number from 0 to 4294967295, empty, signed, or given more than
/// once. The request is answered `400 bad-request`, neither served nor
/// forwarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {header} header must be one decimal hop count from 0 to {max}, not {shown}", header = catga_cluster_core::protocol::FORWARDED_HEADER, max = u32::MAX, shown = self.shown())]
#[non_exhaustive]
pub struct MalformedHopCount {
    /// What the request carried (lossy UTF-8, cut at 32 characters; several
    /// values joined with `, `).
    pub value: String,
}

impl MalformedHopCount {
    /// A hop count header that carried `value`.
    pub fn new(value: impl Into<String>) -> Self {
        MalformedHopCount {
            value: value.into(),
        }
    }

    fn shown(&self) -> String {
        let cut: String = self.value.chars().take(32).collect();
        format!("`{cut}`")
    }
}

/// How a forward failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardFailureKind {
    /// No connection to the leader could be made: the request cannot have
    /// reached it, so retrying is safe.
    Connect,
    /// The connection broke while the request or answer travelled: the
    /// request may have reached the leader.
    Transport,
    /// The leader's answer could not be understood.
    Protocol,
    /// The request could not be built (bad URI, headers).
    Request,
}

/// The leader could not be reached, or broke the connection.
#[derive(Debug, thiserror::Error)]
#[error("forwarding to the leader {leader} failed: {source}")]
#[non_exhaustive]
pub struct ForwardFailed {
    /// Where the request was going.
    pub leader: NodeInfo,
    /// How it failed.
    pub kind: ForwardFailureKind,
    /// The underlying error.
    #[source]
    pub source: BoxError,
}

impl ForwardFailed {
    /// A failure of `kind` while forwarding to `leader`.
    pub fn new(leader: NodeInfo, kind: ForwardFailureKind, source: impl Into<BoxError>) -> Self {
        ForwardFailed {
            leader,
            kind,
            source: source.into(),
        }
    }

    /// Whether the request surely did not reach the leader.
    pub fn is_connect(&self) -> bool {
        self.kind == ForwardFailureKind::Connect
    }
}

/// The leader did not answer before the request's deadline.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the leader {leader} did not answer within {after:?}")]
#[non_exhaustive]
pub struct ForwardTimeout {
    /// Where the request went.
    pub leader: NodeInfo,
    /// The time the request had.
    pub after: Duration,
}

impl ForwardTimeout {
    /// The leader at `leader` did not answer within `after`.
    pub fn new(leader: NodeInfo, after: Duration) -> Self {
        ForwardTimeout { leader, after }
    }
}

impl RemoteProblem {
    /// A problem the leader answered with.
    pub fn new(
        status: u16,
        problem_type: impl Into<String>,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        RemoteProblem {
            status,
            problem_type: problem_type.into(),
            title: title.into(),
            detail: detail.into(),
        }
    }
}

/// The leader answered a forwarded command with an error
/// (`application/problem+json`).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the leader answered {status}: {title}: {detail}")]
#[non_exhaustive]
pub struct RemoteProblem {
    /// The HTTP status.
    pub status: u16,
    /// The problem type (a slug such as `bad-request`).
    pub problem_type: String,
    /// The problem's title.
    pub title: String,
    /// The problem's detail.
    pub detail: String,
}
