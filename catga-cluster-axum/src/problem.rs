//! Errors as `application/problem+json` (RFC 9457) responses.
//!
//! Every error a cluster route can meet becomes a [`Problem`]: a document
//! with `type` (a slug of the HTTP contract), `title`, `status` and
//! `detail`, plus the headers that go with it (leader hints,
//! `Retry-After`). Nothing internal (paths, secrets, sources of I/O errors)
//! goes into a document; unexpected errors answer `internal` and are logged.
//!
//! | slug | status | from |
//! |---|---|---|
//! | `not-leader` | 503 | [`NotLeader`] with another leader known; `x-catga-leader`, `x-catga-leader-id`, `Retry-After: 0` |
//! | `no-leader` | 503 | [`NotLeader`] without a usable leader (election, hand-over, lapsed lease); `Retry-After: 1` |
//! | `forward-failed` | 502 | [`ForwardFailed`] |
//! | `forward-timeout` | 504 | [`ForwardTimeout`] |
//! | `hop-limit` | 508 | [`HopLimit`] |
//! | `unauthorized` | 401 | missing or wrong cluster secret; `WWW-Authenticate: Bearer` |
//! | `bad-request` | 400 | malformed body, invalid values, [`ClusterError::InvalidRequest`] |
//! | `payload-too-large` | 413 | a body over the route's limit |
//! | `lock-held` | 409 | the lock stayed held for the whole wait; `Retry-After` |
//! | `lock-lost` | 409 | [`LockError::Lost`] |
//! | `not-found` | 404 | unknown key, member, command or route |
//! | `revision-mismatch` | 412 | `If-Match` named another revision |
//! | `compacted` | 410 | a watch would start before the history this node keeps (`oldest_revision`) |
//! | `method-not-allowed` | 405 | a method the route does not serve; `Allow` |
//! | `misdirected` | 421 | a Raft RPC addressed to another node |
//! | `rpc-refused` | 409 | an elect RPC at odds with the receiver's view (sender, term, its own state) |
//! | `timeout` | 504 | the route's deadline, [`ClusterError::Timeout`] |
//! | `unknown-outcome` | 504 | a write that timed out after it was sent |
//! | `shutting-down` | 503 | the node is stopping |
//! | `unsupported-media-type` | 415 | a JSON route received a body that is not `application/json` |
//! | `forbidden` | 403 | protected mode refused a cross-site request (foreign `Origin`, or a `Host` that is neither loopback nor a cluster endpoint) |
//! | `member-unreachable` | 504 | a node being added never caught up as a learner; the voter set is unchanged |
//! | `membership-change-in-progress` | 409 | another membership change has not finished; `Retry-After: 1` |
//! | `quorum-at-risk` | 409 | the change would leave the voters without a reachable quorum |
//! | `internal` | 500 | anything else (logged, never described) |
//!
//! The errors shared with `catga-cluster-tower` are mapped by
//! [`catga_cluster_tower::problem::Problem::from_error`], so a refusal looks
//! the same whether the middleware or a route produced it.
//!
//! Because of Rust's orphan rule this crate cannot implement
//! [`IntoResponse`] for the error types of the other crates; convert them
//! with `?` into a [`Problem`] (every one has a `From`), or answer
//! [`ErrorResponse`] for a [`BoxError`].
//!
//! ```
//! use axum::response::IntoResponse;
//! use catga_cluster_axum::problem::Problem;
//! use catga_cluster_core::{NodeId, NotLeader, NotLeaderReason};
//!
//! let refusal = NotLeader::new(NotLeaderReason::NotLeader).with_leader_id(NodeId::new(2));
//! let response = Problem::from(refusal).into_response();
//! assert_eq!(response.status(), 503);
//! assert_eq!(response.headers()["x-catga-leader-id"], "2");
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! ```

use std::borrow::Cow;
use std::error::Error;
use std::fmt;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use catga_cluster_core::protocol::REVISION_HEADER;
use catga_cluster_core::{BoxError, ClusterError, LockError, NotLeader};
use catga_cluster_tower::error::{ForwardFailed, ForwardTimeout, HopLimit, RemoteProblem};
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

pub use catga_cluster_tower::problem::PROBLEM_CONTENT_TYPE;

/// The `type` slugs of the HTTP contract, defined in
/// [`catga_cluster_core::protocol::problem`].
pub mod slug {
    pub use catga_cluster_core::protocol::problem::*;
}

/// The slug of a problem response, stored in the response's extensions so
/// middleware can tell problems apart without parsing the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemSlug(pub Cow<'static, str>);

/// A problem document and the headers that go with it; see the
/// [module docs](self).
///
/// It implements [`IntoResponse`] and [`std::error::Error`], so a handler
/// may return it, and a service registered as a forwarded command may fail
/// with it to choose the status its caller sees.
#[derive(Debug, Clone)]
pub struct Problem {
    inner: Box<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    status: StatusCode,
    slug: Cow<'static, str>,
    title: Cow<'static, str>,
    detail: String,
    extensions: serde_json::Map<String, serde_json::Value>,
    headers: HeaderMap,
}

impl Problem {
    /// A problem with no extra members or headers.
    pub fn new(
        status: StatusCode,
        slug: impl Into<Cow<'static, str>>,
        title: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        Problem {
            inner: Box::new(Inner {
                status,
                slug: slug.into(),
                title: title.into(),
                detail: detail.into(),
                extensions: serde_json::Map::new(),
                headers: HeaderMap::new(),
            }),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.inner.status
    }

    /// The problem type: a slug such as `not-leader`.
    pub fn slug(&self) -> &str {
        &self.inner.slug
    }

    /// The short summary.
    pub fn title(&self) -> &str {
        &self.inner.title
    }

    /// What happened, for humans.
    pub fn detail(&self) -> &str {
        &self.inner.detail
    }

    /// The extra members of the document.
    pub fn extensions(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.inner.extensions
    }

    /// The headers sent with the document.
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.headers
    }

    /// Adds a member to the document (`type`, `title`, `status` and
    /// `detail` cannot be replaced).
    pub fn with_extension(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.inner.extensions.insert(key.into(), value.into());
        self
    }

    /// Adds a header to the response.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.inner.headers.insert(name, value);
        self
    }

    /// `400 bad-request`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::BAD_REQUEST,
            slug::BAD_REQUEST,
            "Bad request",
            detail,
        )
    }

    /// `401 unauthorized`, with `WWW-Authenticate: Bearer`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNAUTHORIZED,
            slug::UNAUTHORIZED,
            "Unauthorized",
            detail,
        )
        .with_header(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"catga-cluster\""),
        )
    }

    /// `404 not-found`.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::NOT_FOUND, slug::NOT_FOUND, "Not found", detail)
    }

    /// `405 method-not-allowed`, with `Allow` when `allow` is not empty.
    pub fn method_not_allowed(allow: &str) -> Self {
        let detail = if allow.is_empty() {
            "this route does not serve this method".to_owned()
        } else {
            format!("this route serves {allow} only")
        };
        let mut problem = Problem::new(
            StatusCode::METHOD_NOT_ALLOWED,
            slug::METHOD_NOT_ALLOWED,
            "Method not allowed",
            detail,
        );
        if let Ok(value) = HeaderValue::from_str(allow) {
            if !allow.is_empty() {
                problem = problem.with_header(ALLOW, value);
            }
        }
        problem
    }

    /// `415 unsupported-media-type`: a JSON route received another
    /// `Content-Type`.
    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            slug::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            detail,
        )
    }

    /// `403 forbidden`: protected mode refused a cross-site request.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::FORBIDDEN, slug::FORBIDDEN, "Forbidden", detail)
    }

    /// `413 payload-too-large`; `limit` is the route's limit in bytes.
    pub fn payload_too_large(limit: Option<usize>) -> Self {
        let detail = match limit {
            Some(limit) => {
                format!("the request body is larger than this route's limit of {limit} bytes")
            }
            None => "the request body is larger than this route accepts".to_owned(),
        };
        let problem = Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            slug::PAYLOAD_TOO_LARGE,
            "Payload too large",
            detail,
        );
        match limit {
            Some(limit) => problem.with_extension("limit", limit),
            None => problem,
        }
    }

    /// `409 lock-held`: lock `name` stayed held for the whole wait; the
    /// holder's lease had `remaining` left.
    pub fn lock_held(name: &str, remaining: Option<Duration>) -> Self {
        let mut problem = Problem::new(
            StatusCode::CONFLICT,
            slug::LOCK_HELD,
            "Lock held",
            format!("lock `{name}` is held by another owner"),
        )
        .with_extension("lock", name);
        if let Some(remaining) = remaining {
            let ms = u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX);
            let seconds = ms.div_ceil(1000);
            problem = problem
                .with_extension("retry_after_ms", ms)
                .with_header(RETRY_AFTER, HeaderValue::from(seconds));
        }
        problem
    }

    /// `409 lock-lost`: `token` no longer holds lock `name`.
    pub fn lock_lost(name: &str, token: u64) -> Self {
        Problem::new(
            StatusCode::CONFLICT,
            slug::LOCK_LOST,
            "Lock lost",
            format!("lock `{name}` is not held by token {token}"),
        )
        .with_extension("lock", name)
        .with_extension("token", token)
    }

    /// `412 revision-mismatch`: the key's revision is `current` (0: absent).
    pub fn revision_mismatch(key: &str, current: u64) -> Self {
        Problem::new(
            StatusCode::PRECONDITION_FAILED,
            slug::REVISION_MISMATCH,
            "Revision mismatch",
            format!("key `{key}` is at revision {current}"),
        )
        .with_extension("current_revision", current)
        .with_header(
            HeaderName::from_static(REVISION_HEADER),
            HeaderValue::from(current),
        )
    }

    /// `410 compacted`: a watch would start before the history kept;
    /// `oldest_revision` is where one can start.
    pub fn compacted(oldest_revision: u64) -> Self {
        Problem::new(
            StatusCode::GONE,
            slug::COMPACTED,
            "Compacted",
            format!(
                "the revision asked for is older than the history this node keeps; \
                 a watch can start at revision {oldest_revision}"
            ),
        )
        .with_extension("oldest_revision", oldest_revision)
    }

    /// `504 timeout`: the route's deadline of `after` passed.
    pub fn timeout(after: Option<Duration>) -> Self {
        let detail = match after {
            Some(after) => format!("no answer within {after:?}; a write may still take effect"),
            None => "no answer in time; a write may still take effect".to_owned(),
        };
        Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            slug::TIMEOUT,
            "Timed out",
            detail,
        )
    }

    /// `500 internal`, with a detail that says nothing about the cause.
    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            slug::INTERNAL,
            "Internal error",
            "the request failed; see the server log",
        )
    }

    /// `503 shutting-down`.
    pub fn shutting_down() -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            slug::SHUTTING_DOWN,
            "Shutting down",
            "this node is shutting down",
        )
        .with_header(RETRY_AFTER, HeaderValue::from_static("1"))
    }

    /// Maps any error (see the [module docs](self)); errors wrapped as
    /// another error's source are found too. Unknown errors answer
    /// `internal` and are logged.
    pub fn from_error(error: &(dyn Error + 'static)) -> Self {
        catga_cluster_tower::problem::find_in_sources(error, Problem::edge).unwrap_or_else(|| {
            Problem::from(catga_cluster_tower::problem::Problem::from_error(error))
        })
    }

    /// The errors this crate knows beyond the shared ones.
    fn edge(e: &(dyn Error + 'static)) -> Option<Self> {
        if let Some(problem) = e.downcast_ref::<Problem>() {
            return Some(problem.clone());
        }
        if e.downcast_ref::<http_body_util::LengthLimitError>()
            .is_some()
        {
            return Some(Problem::payload_too_large(None));
        }
        if e.downcast_ref::<tower::timeout::error::Elapsed>().is_some() {
            return Some(Problem::timeout(None));
        }
        #[cfg(feature = "raft")]
        if let Some(rejection) = e.downcast_ref::<catga_cluster_raft::network::RpcRejection>() {
            return Some(Problem::from(rejection.clone()));
        }
        None
    }

    /// The document as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let mut doc = serde_json::Map::new();
        doc.insert("type".into(), self.inner.slug.as_ref().into());
        doc.insert("title".into(), self.inner.title.as_ref().into());
        doc.insert("status".into(), self.inner.status.as_u16().into());
        doc.insert("detail".into(), self.inner.detail.clone().into());
        for (k, v) in &self.inner.extensions {
            doc.entry(k.clone()).or_insert_with(|| v.clone());
        }
        serde_json::Value::Object(doc)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.inner.slug,
            self.inner.status.as_u16(),
            self.inner.detail
        )
    }
}

impl Error for Problem {}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = Bytes::from(self.to_json().to_string());
        let mut response = Response::new(Body::from(body));
        *response.status_mut() = self.inner.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        for (name, value) in &self.inner.headers {
            headers.insert(name.clone(), value.clone());
        }
        response
            .extensions_mut()
            .insert(ProblemSlug(self.inner.slug));
        response
    }
}

impl From<catga_cluster_tower::problem::Problem> for Problem {
    fn from(p: catga_cluster_tower::problem::Problem) -> Self {
        let slug = match p.slug.as_str() {
            // Keep the common slugs static.
            slug::NOT_LEADER => Cow::Borrowed(slug::NOT_LEADER),
            slug::NO_LEADER => Cow::Borrowed(slug::NO_LEADER),
            _ => Cow::Owned(p.slug),
        };
        Problem {
            inner: Box::new(Inner {
                status: p.status,
                slug,
                title: Cow::Owned(p.title),
                detail: p.detail,
                extensions: p.extensions,
                headers: p.headers,
            }),
        }
    }
}

macro_rules! from_shared {
    ($($ty:ty),* $(,)?) => {
        $(
            impl From<$ty> for Problem {
                fn from(e: $ty) -> Self {
                    Problem::from_error(&e)
                }
            }
        )*
    };
}

from_shared!(
    NotLeader,
    ClusterError,
    LockError,
    HopLimit,
    ForwardFailed,
    ForwardTimeout,
    RemoteProblem,
);

impl From<BoxError> for Problem {
    fn from(e: BoxError) -> Self {
        Problem::from_error(e.as_ref())
    }
}

#[cfg(feature = "raft")]
impl From<catga_cluster_raft::network::RpcRejection> for Problem {
    fn from(rejection: catga_cluster_raft::network::RpcRejection) -> Self {
        use catga_cluster_raft::network::RpcRejection;
        match rejection {
            RpcRejection::Unauthorized => Problem::unauthorized("missing or wrong cluster secret"),
            RpcRejection::Misdirected { .. } => Problem::new(
                StatusCode::MISDIRECTED_REQUEST,
                slug::MISDIRECTED,
                "Misdirected request",
                rejection.to_string(),
            ),
            RpcRejection::MissingTarget | RpcRejection::BadBody(_) => {
                Problem::bad_request(rejection.to_string())
            }
            // Well formed, but at odds with the receiver's own view: the
            // sender is not the leader it follows, another term, ...
            RpcRejection::ElectRefused(_) | RpcRejection::NotLeading => Problem::new(
                StatusCode::CONFLICT,
                slug::RPC_REFUSED,
                "Raft RPC refused",
                rejection.to_string(),
            ),
            RpcRejection::UnknownRpc => Problem::not_found(rejection.to_string()),
            other => {
                tracing::error!(target: "catga_cluster::axum", error = %other, "raft rpc failed");
                Problem::internal()
            }
        }
    }
}

/// A [`BoxError`] as a problem response: what a route answers for any
/// middleware error.
#[derive(Debug)]
pub struct ErrorResponse(pub BoxError);

impl IntoResponse for ErrorResponse {
    fn into_response(self) -> Response {
        Problem::from_error(self.0.as_ref()).into_response()
    }
}

impl<E: Into<BoxError>> From<E> for ErrorResponse {
    fn from(e: E) -> Self {
        ErrorResponse(e.into())
    }
}

/// The handler for axum's `HandleErrorLayer`: any middleware error (a
/// timeout, a [`NotLeader`] from the error-returning `LeaderOnlyLayer::new`,
/// …) becomes a problem response.
///
/// A leader-only route needs none of this:
/// `catga_cluster_tower::LeaderOnlyLayer::http` answers the `503` problem
/// itself and goes straight onto a route:
///
/// ```
/// use axum::{routing::post, Router};
/// use catga_cluster_core::testing::ManualCoordinator;
/// use catga_cluster_tower::LeaderOnlyLayer;
///
/// let coord = ManualCoordinator::new_follower();
/// let app: Router = Router::new()
///     .route("/jobs", post(|| async { "started" }))
///     .route_layer(LeaderOnlyLayer::http(coord));
/// # let _ = app;
/// ```
///
/// Middleware that fails with errors goes behind `HandleErrorLayer`:
///
/// ```
/// use axum::error_handling::HandleErrorLayer;
/// use axum::{routing::post, Router};
/// use catga_cluster_axum::problem::handle_error;
/// use catga_cluster_core::testing::ManualCoordinator;
/// use catga_cluster_tower::LeaderOnlyLayer;
/// use tower::ServiceBuilder;
///
/// let coord = ManualCoordinator::new_follower();
/// let app: Router = Router::new().route(
///     "/jobs",
///     post(|| async { "started" }).layer(
///         ServiceBuilder::new()
///             .layer(HandleErrorLayer::new(handle_error))
///             .layer(LeaderOnlyLayer::new(coord)),
///     ),
/// );
/// # let _ = app;
/// ```
pub async fn handle_error(error: BoxError) -> Response {
    Problem::from_error(error.as_ref()).into_response()
}

/// The slug of a response, if it is a problem this crate or
/// `catga-cluster-tower` built (the latter recognised by status).
pub(crate) fn response_slug(response: &Response) -> Option<Cow<'static, str>> {
    if let Some(slug) = response.extensions().get::<ProblemSlug>() {
        return Some(slug.0.clone());
    }
    let is_problem = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_CONTENT_TYPE.as_bytes()));
    if !is_problem {
        return None;
    }
    Some(Cow::Borrowed(match response.status() {
        StatusCode::BAD_GATEWAY => slug::FORWARD_FAILED,
        StatusCode::GATEWAY_TIMEOUT => slug::FORWARD_TIMEOUT,
        StatusCode::LOOP_DETECTED => slug::HOP_LIMIT,
        _ => return None,
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use catga_cluster_core::{Endpoint, NodeId, NodeInfo, NotLeaderReason};
    use catga_cluster_tower::error::ForwardFailureKind;
    use http_body_util::BodyExt;

    use super::*;

    async fn parts(problem: Problem) -> (StatusCode, HeaderMap, serde_json::Value) {
        let response = problem.into_response();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, serde_json::from_slice(&body).unwrap())
    }

    fn leader() -> NodeInfo {
        NodeInfo::new(
            NodeId::new(2),
            Endpoint::parse("http://127.0.0.1:5002").unwrap(),
        )
    }

    #[tokio::test]
    async fn every_mapping_has_its_slug_and_status() {
        let not_leader = NotLeader::new(NotLeaderReason::NotLeader)
            .with_leader_id(NodeId::new(2))
            .with_leader_endpoint(leader().endpoint);
        let cases: Vec<(Problem, &str, u16)> = vec![
            (not_leader.clone().into(), "not-leader", 503),
            (
                NotLeader::new(NotLeaderReason::NoLeader).into(),
                "no-leader",
                503,
            ),
            (
                NotLeader::new(NotLeaderReason::Transferring).into(),
                "no-leader",
                503,
            ),
            (
                ForwardFailed::new(leader(), ForwardFailureKind::Connect, "refused").into(),
                "forward-failed",
                502,
            ),
            (
                ForwardTimeout::new(leader(), Duration::from_secs(1)).into(),
                "forward-timeout",
                504,
            ),
            (HopLimit::new(1, 1).into(), "hop-limit", 508),
            (Problem::unauthorized("no"), "unauthorized", 401),
            (Problem::bad_request("no"), "bad-request", 400),
            (
                Problem::payload_too_large(Some(10)),
                "payload-too-large",
                413,
            ),
            (Problem::lock_held("l", None), "lock-held", 409),
            (
                LockError::Lost {
                    name: "l".into(),
                    token: catga_cluster_core::FencingToken::new(3),
                }
                .into(),
                "lock-lost",
                409,
            ),
            (Problem::not_found("k"), "not-found", 404),
            (Problem::revision_mismatch("k", 4), "revision-mismatch", 412),
            (
                Problem::method_not_allowed("GET"),
                "method-not-allowed",
                405,
            ),
            (
                ClusterError::InvalidRequest("bad".into()).into(),
                "bad-request",
                400,
            ),
            (
                ClusterError::UnknownOutcome {
                    operation: "the write",
                    after: Duration::from_secs(5),
                }
                .into(),
                "unknown-outcome",
                504,
            ),
            (ClusterError::Shutdown.into(), "shutting-down", 503),
            (Problem::timeout(None), "timeout", 504),
            (
                Problem::from(BoxError::from(tower::timeout::error::Elapsed::new())),
                "timeout",
                504,
            ),
            (
                Problem::from(
                    http_body_util::Limited::new(
                        http_body_util::Full::new(Bytes::from_static(b"0123")),
                        1,
                    )
                    .collect()
                    .await
                    .unwrap_err(),
                ),
                "payload-too-large",
                413,
            ),
        ];
        for (problem, slug, status) in cases {
            let (got_status, headers, body) = parts(problem).await;
            assert_eq!(got_status.as_u16(), status, "{slug}");
            assert_eq!(headers[CONTENT_TYPE], PROBLEM_CONTENT_TYPE, "{slug}");
            assert_eq!(body["type"], slug);
            assert_eq!(body["status"], status);
            assert!(body["title"].as_str().is_some_and(|t| !t.is_empty()));
            assert!(body["detail"].as_str().is_some_and(|t| !t.is_empty()));
        }
    }
}
