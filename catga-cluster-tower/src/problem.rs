//! Errors as `application/problem+json` (RFC 9457) responses.
//!
//! [`Problem::from_error`] maps every error of the cluster crates to the
//! slug and status of the HTTP contract:
//!
//! | error | status | `type` |
//! |---|---|---|
//! | [`NotLeader`] (another node leads) | 503 | `not-leader`, with `x-catga-leader`, `x-catga-leader-id`, `Retry-After: 0` |
//! | [`NotLeader`] (no leader, hand-over, lapsed lease) | 503 | `no-leader`, `Retry-After: 1` |
//! | [`ForwardFailed`] | 502 | `forward-failed` |
//! | [`ForwardTimeout`] | 504 | `forward-timeout` |
//! | [`HopLimit`] | 508 | `hop-limit` (`hops`, `limit`: the configured limit) |
//! | [`MalformedHopCount`] | 400 | `bad-request` |
//! | [`LockError::Lost`] | 409 | `lock-lost` |
//! | [`ClusterError::InvalidRequest`], [`LockError::Invalid`] | 400 | `bad-request` |
//! | [`ClusterError::Timeout`] | 504 | `timeout` |
//! | [`ClusterError::UnknownOutcome`], [`LockError::UnknownOutcome`] | 504 | `unknown-outcome` |
//! | [`ClusterError::Shutdown`], [`LockError::Shutdown`] | 503 | `shutting-down` |
//! | [`MembershipError::MemberUnreachable`] | 504 | `member-unreachable` (`member`: the node id) |
//! | [`MembershipError::ChangeInProgress`] | 409 | `membership-change-in-progress`, `Retry-After: 1` |
//! | [`MembershipError::QuorumAtRisk`] | 409 | `quorum-at-risk` |
//! | [`RemoteProblem`] | its status | its type |
//! | a request body over its limit (`http_body_util::LengthLimitError` anywhere in the chain, e.g. under [`ForwardFailed`]) | 413 | `payload-too-large` |
//! | anything else | 500 | `internal` (no detail leaks) |
//!
//! ```
//! use catga_cluster_core::{NotLeader, NotLeaderReason, NodeId};
//! use catga_cluster_tower::problem::Problem;
//!
//! let err = NotLeader::new(NotLeaderReason::NotLeader).with_leader_id(NodeId::new(2));
//! let problem = Problem::from_error(&err);
//! assert_eq!(problem.status.as_u16(), 503);
//! assert_eq!(problem.slug, "not-leader");
//! assert_eq!(problem.headers["x-catga-leader-id"], "2");
//! ```

use std::error::Error;

use bytes::Bytes;
use catga_cluster_core::protocol::problem as slug;
use catga_cluster_core::protocol::{LEADER_HEADER, LEADER_ID_HEADER};
use catga_cluster_core::{
    BoxError, ClusterError, LockError, MembershipError, NotLeader, NotLeaderReason,
};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};

use crate::error::{ForwardFailed, ForwardTimeout, HopLimit, MalformedHopCount, RemoteProblem};

pub use catga_cluster_core::protocol::PROBLEM_CONTENT_TYPE;

/// A response body type that the middleware can build: from the leader's
/// streamed answer, and from bytes (problem documents).
///
/// Implemented for [`DefaultResponseBody`](crate::http_forwarder::DefaultResponseBody)
/// (a boxed body) and, with the `axum` feature, for `axum::body::Body`. The
/// forwarded answer has the type of the wrapped service's answer, so that
/// service must answer `http::Response` with one of these bodies.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a body the HTTP forwarder can answer with",
    label = "a forwarded answer would have this body type",
    note = "`HttpForwarder` answers with `DefaultResponseBody` (a boxed body: `body.map_err(Into::into).boxed_unsync()`), `AxumForwarder` with `axum::body::Body` (feature `axum`)",
    note = "map the wrapped service's response body to one of them, or forward through a forwarder of your own with `ForwardToLeaderLayer::with_forwarder`"
)]
pub trait ResponseBody: Send + 'static {
    /// Wraps a streamed body from a forwarded answer.
    fn from_incoming(body: hyper::body::Incoming) -> Self;
    /// A body of these bytes.
    fn from_bytes(bytes: Bytes) -> Self;
}

impl ResponseBody for UnsyncBoxBody<Bytes, BoxError> {
    fn from_incoming(body: hyper::body::Incoming) -> Self {
        body.map_err(BoxError::from).boxed_unsync()
    }

    fn from_bytes(bytes: Bytes) -> Self {
        Full::new(bytes)
            .map_err(|never| match never {})
            .boxed_unsync()
    }
}

#[cfg(feature = "axum")]
impl ResponseBody for axum_core::body::Body {
    fn from_incoming(body: hyper::body::Incoming) -> Self {
        axum_core::body::Body::new(body)
    }

    fn from_bytes(bytes: Bytes) -> Self {
        axum_core::body::Body::from(bytes)
    }
}

/// The first answer `f` gives for `error` or, going down the chain, one of
/// its sources.
pub fn find_in_sources<T>(
    error: &(dyn Error + 'static),
    mut f: impl FnMut(&(dyn Error + 'static)) -> Option<T>,
) -> Option<T> {
    let mut current: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = f(e) {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// A problem document and the headers that go with it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// The problem type, a slug of the contract.
    pub slug: String,
    /// A short summary.
    pub title: String,
    /// What happened, for humans.
    pub detail: String,
    /// Extra members of the document (snake_case keys).
    pub extensions: serde_json::Map<String, serde_json::Value>,
    /// Headers of the response (leader hints, `Retry-After`).
    pub headers: HeaderMap,
}

impl Problem {
    /// A problem with no extra members or headers.
    pub fn new(
        status: StatusCode,
        slug: impl Into<String>,
        title: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            status,
            slug: slug.into(),
            title: title.into(),
            detail: detail.into(),
            extensions: serde_json::Map::new(),
            headers: HeaderMap::new(),
        }
    }

    /// Adds a member to the document.
    pub fn with_extension(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        self.extensions.insert(key.to_owned(), value.into());
        self
    }

    /// The refusal of a node that does not lead.
    pub fn not_leader(refusal: &NotLeader) -> Self {
        let remote = refusal.reason == NotLeaderReason::NotLeader && refusal.leader_id.is_some();
        let mut problem = if remote {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                slug::NOT_LEADER,
                "Not the leader",
                refusal.to_string(),
            )
        } else {
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                slug::NO_LEADER,
                "No leader",
                refusal.to_string(),
            )
        };
        problem = problem.with_extension("reason", refusal.reason.slug());
        if remote {
            let leader = serde_json::json!({
                "id": refusal.leader_id.map(|id| id.get()),
                "endpoint": refusal.leader_endpoint.as_ref().map(|e| e.as_str()),
            });
            problem = problem.with_extension("leader", leader);
            if let Some(id) = refusal.leader_id {
                problem
                    .headers
                    .insert(LEADER_ID_HEADER, HeaderValue::from(id.get()));
            }
            if let Some(value) = refusal
                .leader_endpoint
                .as_ref()
                .and_then(|e| HeaderValue::from_str(e.as_str()).ok())
            {
                problem.headers.insert(LEADER_HEADER, value);
            }
            problem
                .headers
                .insert(RETRY_AFTER, HeaderValue::from_static("0"));
        } else {
            problem
                .headers
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        problem
    }

    /// Maps an error of the cluster crates (see the [module docs](self));
    /// errors wrapped as another error's source are found too.
    pub fn from_error(error: &(dyn Error + 'static)) -> Self {
        // A request body over its limit is the client's fault wherever it
        // is noticed: streamed to the leader by a follower, the limit
        // breaks the forward, and the answer is still 413, not 502.
        if let Some(problem) = find_in_sources(error, Problem::too_large) {
            return problem;
        }
        if let Some(problem) = find_in_sources(error, Problem::known) {
            return problem;
        }
        tracing::error!(target: "catga_cluster::problem", %error, "unexpected error answered as 500");
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            slug::INTERNAL,
            "Internal error",
            "the request failed; see the server log",
        )
    }

    /// `413 payload-too-large` for a body that broke its length limit.
    pub fn payload_too_large(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            slug::PAYLOAD_TOO_LARGE,
            "Payload too large",
            detail,
        )
    }

    fn too_large(e: &(dyn Error + 'static)) -> Option<Self> {
        e.downcast_ref::<http_body_util::LengthLimitError>()
            .map(|_| {
                Problem::payload_too_large("the request body is larger than this route accepts")
            })
    }

    fn known(e: &(dyn Error + 'static)) -> Option<Self> {
        if let Some(refusal) = e.downcast_ref::<NotLeader>() {
            return Some(Problem::not_leader(refusal));
        }
        if let Some(malformed) = e.downcast_ref::<MalformedHopCount>() {
            return Some(Problem::new(
                StatusCode::BAD_REQUEST,
                slug::BAD_REQUEST,
                "Bad request",
                malformed.to_string(),
            ));
        }
        if let Some(hop) = e.downcast_ref::<HopLimit>() {
            return Some(
                Problem::new(
                    StatusCode::LOOP_DETECTED,
                    slug::HOP_LIMIT,
                    "Hop limit reached",
                    hop.to_string(),
                )
                .with_extension("hops", hop.hops)
                .with_extension("limit", hop.limit),
            );
        }
        if let Some(failed) = e.downcast_ref::<ForwardFailed>() {
            return Some(Problem::new(
                StatusCode::BAD_GATEWAY,
                slug::FORWARD_FAILED,
                "Forwarding to the leader failed",
                format!(
                    "the leader (node {}) could not be reached or broke the connection",
                    failed.leader.id
                ),
            ));
        }
        if let Some(timeout) = e.downcast_ref::<ForwardTimeout>() {
            return Some(Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                slug::FORWARD_TIMEOUT,
                "The leader did not answer in time",
                timeout.to_string(),
            ));
        }
        if let Some(remote) = e.downcast_ref::<RemoteProblem>() {
            let status = StatusCode::from_u16(remote.status).unwrap_or(StatusCode::BAD_GATEWAY);
            return Some(Problem::new(
                status,
                remote.problem_type.clone(),
                remote.title.clone(),
                remote.detail.clone(),
            ));
        }
        if let Some(cluster) = e.downcast_ref::<ClusterError>() {
            return Problem::cluster(cluster);
        }
        if let Some(lock) = e.downcast_ref::<LockError>() {
            return Problem::lock(lock);
        }
        None
    }

    fn cluster(e: &ClusterError) -> Option<Self> {
        Some(match e {
            ClusterError::NotLeader(refusal) => Problem::not_leader(refusal),
            ClusterError::InvalidRequest(reason) => Problem::new(
                StatusCode::BAD_REQUEST,
                slug::BAD_REQUEST,
                "Bad request",
                reason.clone(),
            ),
            ClusterError::Timeout { .. } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                slug::TIMEOUT,
                "Timed out",
                e.to_string(),
            ),
            ClusterError::UnknownOutcome { .. } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                slug::UNKNOWN_OUTCOME,
                "Outcome unknown",
                format!("{e}; retry with the same request id to learn it"),
            ),
            ClusterError::Shutdown => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                slug::SHUTTING_DOWN,
                "Shutting down",
                "this node is shutting down",
            ),
            ClusterError::Membership(m) => Problem::membership(m),
            _ => return None,
        })
    }

    fn membership(e: &MembershipError) -> Self {
        let (status, title) = match e {
            MembershipError::MemberUnreachable { .. } => {
                (StatusCode::GATEWAY_TIMEOUT, "Member unreachable")
            }
            MembershipError::ChangeInProgress => {
                (StatusCode::CONFLICT, "Membership change in progress")
            }
            MembershipError::QuorumAtRisk { .. } => (StatusCode::CONFLICT, "Quorum at risk"),
            _ => (StatusCode::CONFLICT, "Membership change refused"),
        };
        let mut problem = Problem::new(status, e.slug(), title, e.to_string());
        if let MembershipError::MemberUnreachable { id, .. } = e {
            problem = problem.with_extension("member", id.get());
        }
        if matches!(e, MembershipError::ChangeInProgress) {
            problem
                .headers
                .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        problem
    }

    fn lock(e: &LockError) -> Option<Self> {
        Some(match e {
            LockError::Lost { .. } => Problem::new(
                StatusCode::CONFLICT,
                slug::LOCK_LOST,
                "Lock lost",
                e.to_string(),
            ),
            LockError::Invalid(reason) => Problem::new(
                StatusCode::BAD_REQUEST,
                slug::BAD_REQUEST,
                "Bad request",
                reason.clone(),
            ),
            LockError::NotLeader(refusal) => Problem::not_leader(refusal),
            LockError::UnknownOutcome(_) => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                slug::UNKNOWN_OUTCOME,
                "Outcome unknown",
                e.to_string(),
            ),
            LockError::Shutdown => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                slug::SHUTTING_DOWN,
                "Shutting down",
                e.to_string(),
            ),
            _ => return None,
        })
    }

    /// The document as JSON bytes.
    pub fn to_json(&self) -> Bytes {
        let mut doc = serde_json::Map::new();
        doc.insert("type".into(), self.slug.clone().into());
        doc.insert("title".into(), self.title.clone().into());
        doc.insert("status".into(), self.status.as_u16().into());
        doc.insert("detail".into(), self.detail.clone().into());
        for (k, v) in &self.extensions {
            doc.entry(k.clone()).or_insert_with(|| v.clone());
        }
        Bytes::from(serde_json::Value::Object(doc).to_string())
    }

    /// The problem as a response.
    pub fn into_response<RB: ResponseBody>(self) -> http::Response<RB> {
        self.response_with(RB::from_bytes)
    }

    /// The problem as a response whose body `body` makes from the JSON
    /// document.
    pub(crate) fn response_with<B>(self, body: impl FnOnce(Bytes) -> B) -> http::Response<B> {
        let mut response = http::Response::new(body(self.to_json()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
    }
}
