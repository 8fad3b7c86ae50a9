//! What the forwarding middleware needs to know about a request type.

use catga_cluster_core::protocol::FORWARDED_HEADER;
use catga_cluster_core::BoxError;
use http::Method;

use crate::error::HopLimit;

/// How the middleware answers a failure (no leader, hop limit, a failed
/// forward): as a response of type `Resp` (the HTTP policy's
/// `application/problem+json`), or as an error.
pub trait MapError<Resp> {
    /// The middleware's error type.
    type Error: Send + 'static;

    /// Turns `error` into the middleware's answer.
    fn map_error(&self, error: BoxError) -> Result<Resp, Self::Error>;
}

/// Tells [`ForwardToLeader`](super::ForwardToLeader) about a request: how
/// often it was forwarded already, whether it may be retried and how to copy
/// it for a retry.
pub trait ForwardPolicy<Req>: Clone + Send + Sync + 'static {
    /// The hop count the request arrived with. A malformed count is refused
    /// as if it had reached the limit.
    fn hops(&self, req: &Req) -> Result<u32, HopLimit>;

    /// A copy of the request for a second attempt, when one can be made
    /// without buffering a streaming body. `None`: never retried.
    fn clone_for_retry(&self, req: &Req) -> Option<Req> {
        let _ = req;
        None
    }

    /// Whether a retry is safe even if the first attempt may have reached
    /// the leader. Requests that are not idempotent are retried only when
    /// the first attempt surely did not (no connection could be made).
    fn is_idempotent(&self, req: &Req) -> bool {
        let _ = req;
        false
    }
}

/// The policy for `http::Request`s: the hop count travels in
/// `x-catga-forwarded`, methods that RFC 9110 calls idempotent are
/// idempotent, a request whose body is known to be empty can be copied for a
/// retry, and failures become `application/problem+json` responses (see
/// [`crate::problem`]), so the middleware never fails: its error type is
/// `Infallible`, as axum's `Router::layer` requires.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpPolicy;

#[cfg(feature = "http-forwarder")]
impl<RB: crate::problem::ResponseBody> MapError<http::Response<RB>> for HttpPolicy {
    type Error = std::convert::Infallible;

    fn map_error(&self, error: BoxError) -> Result<http::Response<RB>, Self::Error> {
        Ok(crate::problem::Problem::from_error(error.as_ref()).into_response())
    }
}

impl<B> ForwardPolicy<http::Request<B>> for HttpPolicy
where
    B: http_body::Body + Default + Send + 'static,
{
    fn hops(&self, req: &http::Request<B>) -> Result<u32, HopLimit> {
        match req.headers().get(FORWARDED_HEADER) {
            None => Ok(0),
            Some(value) => value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .ok_or_else(HopLimit::malformed),
        }
    }

    fn clone_for_retry(&self, req: &http::Request<B>) -> Option<http::Request<B>> {
        if req.body().size_hint().exact() != Some(0) {
            return None;
        }
        let mut copy = http::Request::new(B::default());
        *copy.method_mut() = req.method().clone();
        *copy.uri_mut() = req.uri().clone();
        *copy.version_mut() = req.version();
        *copy.headers_mut() = req.headers().clone();
        *copy.extensions_mut() = req.extensions().clone();
        Some(copy)
    }

    fn is_idempotent(&self, req: &http::Request<B>) -> bool {
        matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        )
    }
}

/// The policy for request types that carry no hop count (typed commands
/// forwarded by [`JsonForwarder`](crate::JsonForwarder), whose hop count the
/// receiving route reads from its HTTP header): hop count 0, no retries.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainPolicy;

impl<Resp> MapError<Resp> for PlainPolicy {
    type Error = BoxError;

    fn map_error(&self, error: BoxError) -> Result<Resp, BoxError> {
        Err(error)
    }
}

impl<Req> ForwardPolicy<Req> for PlainPolicy {
    fn hops(&self, _req: &Req) -> Result<u32, HopLimit> {
        Ok(0)
    }
}
