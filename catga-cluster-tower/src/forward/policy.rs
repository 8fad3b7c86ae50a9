//! What the forwarding middleware needs to know about a request type.

use catga_cluster_core::protocol::FORWARDED_HEADER;
use catga_cluster_core::BoxError;
use http::Method;

use crate::error::MalformedHopCount;

/// How the middleware answers a failure (no leader, hop limit, a failed
/// forward): as a response of type `Resp` (the HTTP policy's
/// `application/problem+json`), or as an error.
///
/// [`HttpPolicy`] answers `http::Response`s whose body is a
/// [`ResponseBody`](crate::problem::ResponseBody) (feature
/// `http-forwarder`); [`PlainPolicy`] any response type, by returning the
/// error.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot answer a failure with a `{Resp}`",
    label = "the forwarding layer's policy",
    note = "`HttpPolicy` (the policy of `ForwardToLeaderLayer::new` and `with_forwarder`) answers failures as `http::Response`s with a problem+json body; it needs the `http-forwarder` feature, and the `axum` feature for axum's body",
    note = "for responses that are not `http::Response`s, build the layer with `ForwardToLeaderLayer::with_plain_forwarder(coordinator, forwarder)`, or add `.policy(PlainPolicy)`: failures then come back as errors"
)]
pub trait MapError<Resp> {
    /// The middleware's error type.
    type Error: Send + 'static;

    /// Turns `error` into the middleware's answer.
    fn map_error(&self, error: BoxError) -> Result<Resp, Self::Error>;
}

/// Tells [`ForwardToLeader`](super::ForwardToLeader) about a request: how
/// often it was forwarded already, whether it may be retried and how to copy
/// it for a retry.
///
/// [`HttpPolicy`] is the policy of `http::Request`s,
/// [`PlainPolicy`] of every other request type. The layer's constructor
/// picks it: [`ForwardToLeaderLayer::new`](super::ForwardToLeaderLayer::new)
/// and [`with_forwarder`](super::ForwardToLeaderLayer::with_forwarder) take
/// `HttpPolicy`,
/// [`with_plain_forwarder`](super::ForwardToLeaderLayer::with_plain_forwarder)
/// takes `PlainPolicy`. A request type with neither gives:
///
/// ```compile_fail,E0277
/// use catga_cluster_core::testing::ManualCoordinator;
/// use catga_cluster_core::{BoxError, ForwardRequest};
/// use catga_cluster_tower::ForwardToLeaderLayer;
/// use tower::{service_fn, Layer, Service};
///
/// fn serve<S: Service<String>>(svc: S) { /* ... */ }
///
/// let forwarder = service_fn(|f: ForwardRequest<String>| async move { Ok::<_, BoxError>(f.request) });
/// // `with_forwarder` is for `http::Request`s: a `String` needs `with_plain_forwarder`.
/// let svc = ForwardToLeaderLayer::with_forwarder(ManualCoordinator::new_leader(), forwarder)
///     .layer(service_fn(|r: String| async move { Ok::<_, BoxError>(r) }));
/// serve(svc);
/// ```
///
/// ```text
/// error[E0277]: `HttpPolicy` cannot forward a `String`
///   = note: `HttpPolicy` is the policy of `http::Request`s (`ForwardToLeaderLayer::new`
///           and `with_forwarder` use it); `PlainPolicy` is the policy of every other
///           request type
///   = note: for other request types build the layer with
///           `ForwardToLeaderLayer::with_plain_forwarder(coordinator, forwarder)`,
///           or add `.policy(PlainPolicy)`
/// ```
///
/// (A method call such as `svc.oneshot(..)` reports the same mistake as
/// `E0599`, "the method `oneshot` exists … but its trait bounds were not
/// satisfied", without these notes.)
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot forward a `{Req}`",
    label = "the forwarding layer's policy",
    note = "`HttpPolicy` is the policy of `http::Request`s (`ForwardToLeaderLayer::new` and `with_forwarder` use it); `PlainPolicy` is the policy of every other request type",
    note = "for other request types build the layer with `ForwardToLeaderLayer::with_plain_forwarder(coordinator, forwarder)`, or add `.policy(PlainPolicy)`"
)]
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
