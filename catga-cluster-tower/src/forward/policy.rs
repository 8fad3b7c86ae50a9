//! What the forwarding middleware needs to know about a request type.

use catga_cluster_core::protocol::FORWARDED_HEADER;
use catga_cluster_core::BoxError;
use http::Method;

use crate::error::MalformedHopCount;

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
    /// The hop count the request arrived with. A malformed count is
    /// refused with [`MalformedHopCount`] (`400 bad-request` over HTTP):
    /// the request is neither served nor forwarded.
    fn hops(&self, req: &Req) -> Result<u32, MalformedHopCount>;

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
    fn hops(&self, req: &http::Request<B>) -> Result<u32, MalformedHopCount> {
        parse_hop_count(req.headers())
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
    fn hops(&self, _req: &Req) -> Result<u32, MalformedHopCount> {
        Ok(0)
    }
}

/// The hop count of `x-catga-forwarded`: absent is 0; otherwise exactly one
/// header line holding 1 to 10 ASCII digits (optional white space around)
/// whose value fits a `u32`. Everything else (`abc`, `-1`, `+1`, empty,
/// `4294967296`, `1,1`, the header twice) is malformed.
///
/// ```
/// use catga_cluster_tower::forward::parse_hop_count;
/// let mut headers = http::HeaderMap::new();
/// assert_eq!(parse_hop_count(&headers).unwrap(), 0);
/// headers.insert("x-catga-forwarded", "1".parse().unwrap());
/// assert_eq!(parse_hop_count(&headers).unwrap(), 1);
/// headers.insert("x-catga-forwarded", "1,1".parse().unwrap());
/// assert!(parse_hop_count(&headers).is_err());
/// ```
pub fn parse_hop_count(headers: &http::HeaderMap) -> Result<u32, MalformedHopCount> {
    let mut values = headers.get_all(FORWARDED_HEADER).iter();
    let Some(first) = values.next() else {
        return Ok(0);
    };
    let malformed = || {
        let all: Vec<String> = headers
            .get_all(FORWARDED_HEADER)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        MalformedHopCount::new(all.join(", "))
    };
    if values.next().is_some() {
        return Err(malformed());
    }
    let digits = first.as_bytes().trim_ascii();
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(malformed());
    }
    digits
        .iter()
        .try_fold(0u32, |n, d| {
            n.checked_mul(10)?.checked_add(u32::from(d - b'0'))
        })
        .ok_or_else(malformed)
}
