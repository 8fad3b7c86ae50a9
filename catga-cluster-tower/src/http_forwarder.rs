//! A streaming reverse proxy to the leader.
//!
//! [`HttpForwarder`] sends a forwarded `http::Request` to the leader's
//! endpoint over one pooled hyper-util client: scheme and authority are the
//! leader's, path and query stay the request's; the request and response
//! bodies stream through without buffering; hop-by-hop headers (RFC 9110
//! §7.6.1) are dropped both ways; `x-catga-forwarded` carries the hop count;
//! tracing context headers (`traceparent`, …) travel unchanged. The leader's
//! response comes back unchanged apart from hop-by-hop headers.
//!
//! Failures are typed: [`ForwardFailed`] (with
//! [`is_connect`](ForwardFailed::is_connect) when no connection could be
//! made) and [`ForwardTimeout`] when the request's deadline passes.
//!
//! # Response body
//!
//! A forwarder answers with the response type of the service it stands in
//! for, so the body type is a type parameter, fixed per forwarder type and
//! never changed by a feature:
//!
//! * [`HttpForwarder`] (`HttpForwarder<DefaultResponseBody>`) answers with
//!   a boxed body, [`DefaultResponseBody`], for plain hyper or tower
//!   services;
//! * [`AxumForwarder`] (`HttpForwarder<axum::body::Body>`, feature `axum`)
//!   answers with axum's body, for an axum `Router`.
//!
//! [`ForwardToLeaderLayer::new`](crate::ForwardToLeaderLayer::new) builds
//! an `AxumForwarder`, [`ForwardToLeaderLayer::http`](crate::ForwardToLeaderLayer::http)
//! an `HttpForwarder`. The constructors here ([`new`](HttpForwarder::new),
//! `with_tls`) are generic over the body: handed to
//! [`with_forwarder`](crate::ForwardToLeaderLayer::with_forwarder) or
//! [`forwarder`](crate::ForwardToLeaderLayer::forwarder), the body is
//! inferred from the wrapped service; elsewhere name the type
//! (`let f: HttpForwarder = HttpForwarder::new();`, `AxumForwarder::new()`).
//!
//! # Wrapping it
//!
//! A forwarder of your own can delegate to an `HttpForwarder`: its inherent
//! [`poll_ready`](HttpForwarder::poll_ready) and the named
//! [`ResponseFuture`] spare you naming the request body type. A forwarder
//! that logs every forward:
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use std::task::{Context, Poll};
//! use axum::extract::Request;
//! use axum::response::Response;
//! use axum::{routing::post, Router};
//! use catga_cluster_core::testing::ManualCoordinator;
//! use catga_cluster_core::{BoxError, ForwardRequest};
//! use catga_cluster_tower::http_forwarder::{AxumForwarder, ResponseFuture};
//! use catga_cluster_tower::ForwardToLeaderLayer;
//! use tower::Service;
//!
//! #[derive(Clone, Debug, Default)]
//! struct Logged {
//!     inner: AxumForwarder,
//! }
//!
//! impl Service<ForwardRequest<Request>> for Logged {
//!     type Response = Response;
//!     type Error = BoxError;
//!     type Future = ResponseFuture<axum::body::Body>;
//!
//!     fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
//!         self.inner.poll_ready(cx)
//!     }
//!
//!     fn call(&mut self, forward: ForwardRequest<Request>) -> Self::Future {
//!         tracing::info!(
//!             leader_id = %forward.leader.id,
//!             hops = forward.hops,
//!             path = forward.request.uri().path(),
//!             "forwarding to the leader",
//!         );
//!         self.inner.call(forward)
//!     }
//! }
//!
//! let coord = ManualCoordinator::new_follower();
//! let app: Router = Router::new()
//!     .route("/orders", post(|| async { "created" }))
//!     .layer(ForwardToLeaderLayer::with_forwarder(coord, Logged::default()));
//! # let _ = app;
//! # }
//! ```
//!
//! # TLS
//!
//! With the `tls` feature, [`HttpForwarder::with_tls`] reaches leaders whose
//! endpoints are `https://` over TLS (and `http://` ones plain); a failed
//! handshake is a connect failure. [`HttpForwarder::new`] reaches `http://`
//! endpoints only.

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::protocol::FORWARDED_HEADER;
use catga_cluster_core::{BoxError, ForwardRequest, NodeInfo};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

use crate::error::{ForwardFailed, ForwardFailureKind, ForwardTimeout};
use crate::problem::ResponseBody;
use catga_cluster_core::connector::{self, tcp, Connector};

type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// The response body of [`HttpForwarder`] (the default of its type
/// parameter): the leader's streamed answer, boxed. Always this type,
/// whichever features are on; [`AxumForwarder`] answers with axum's body.
pub type DefaultResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// An [`HttpForwarder`] that answers with axum's body type, so it forwards
/// for an axum `Router` (whose services answer `axum::response::Response`).
///
/// [`ForwardToLeaderLayer::new`](crate::ForwardToLeaderLayer::new) builds
/// one; name the type to keep a forwarder in a field, or to build one for
/// [`forwarder`](crate::ForwardToLeaderLayer::forwarder) (one connection
/// pool shared by several routes, TLS):
///
/// ```
/// use axum::{routing::post, Router};
/// use catga_cluster_core::testing::ManualCoordinator;
/// use catga_cluster_tower::{AxumForwarder, ForwardToLeaderLayer};
///
/// struct App {
///     forwarder: AxumForwarder, // one connection pool for every route
/// }
///
/// let app = App { forwarder: AxumForwarder::new() };
/// let coord = ManualCoordinator::new_follower();
/// let router: Router = Router::new()
///     .route("/orders", post(|| async { "created" }))
///     .layer(ForwardToLeaderLayer::new(coord).forwarder(app.forwarder.clone()));
/// # let _ = router;
/// ```
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub type AxumForwarder = HttpForwarder<axum_core::body::Body>;

/// Forwards `http::Request`s to the leader, answering with
/// `http::Response<RB>`; see the [module docs](self).
///
/// Cloning shares the connection pool.
pub struct HttpForwarder<RB = DefaultResponseBody> {
    client: Client<Connector, ProxyBody>,
    _body: PhantomData<fn() -> RB>,
}

impl<RB> Clone for HttpForwarder<RB> {
    fn clone(&self) -> Self {
        HttpForwarder {
            client: self.client.clone(),
            _body: PhantomData,
        }
    }
}

impl<RB> fmt::Debug for HttpForwarder<RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpForwarder").finish_non_exhaustive()
    }
}

impl<RB: ResponseBody> Default for HttpForwarder<RB> {
    fn default() -> Self {
        HttpForwarder::new()
    }
}

impl<RB: ResponseBody> HttpForwarder<RB> {
    /// A forwarder with its own connection pool, for `http://` leaders.
    ///
    /// The body type `RB` is usually inferred from the service the layer
    /// wraps; `HttpForwarder::<DefaultResponseBody>::new()` (or
    /// [`AxumForwarder::new()`]) names it.
    pub fn new() -> Self {
        Self::with_connector(connector::plain(tcp()))
    }

    /// A forwarder with its own connection pool that reaches `https://`
    /// leaders over TLS with `config`, and `http://` leaders plain.
    ///
    /// The caller chooses the roots: trust the CA that signed the nodes'
    /// certificates. Leave `alpn_protocols` empty (the client speaks
    /// HTTP/1.1 only).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use catga_cluster_tower::rustls::{self, crypto::ring};
    /// use catga_cluster_tower::HttpForwarder;
    ///
    /// # fn run(roots: rustls::RootCertStore) -> Result<(), rustls::Error> {
    /// let config = rustls::ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
    ///     .with_safe_default_protocol_versions()?
    ///     .with_root_certificates(roots)
    ///     .with_no_client_auth();
    /// let forwarder: HttpForwarder = HttpForwarder::with_tls(Arc::new(config));
    /// # let _ = forwarder; Ok(()) }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls(config: std::sync::Arc<rustls::ClientConfig>) -> Self {
        Self::with_connector(connector::tls(tcp(), config))
    }

    fn with_connector(connector: Connector) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        HttpForwarder {
            client,
            _body: PhantomData,
        }
    }
}

impl<RB> HttpForwarder<RB> {
    /// Always ready: the pool opens connections on demand.
    ///
    /// The same as [`Service::poll_ready`] for any request body type, without
    /// naming one: a forwarder that wraps this one delegates its readiness
    /// with `self.inner.poll_ready(cx)` (see the [module docs](self)).
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }
}

/// The response future of [`HttpForwarder`]: the leader's answer, or a
/// [`ForwardFailed`] or [`ForwardTimeout`] error.
pub struct ResponseFuture<RB> {
    inner: Pin<Box<dyn Future<Output = Result<http::Response<RB>, BoxError>> + Send>>,
}

impl<RB> Future for ResponseFuture<RB> {
    type Output = Result<http::Response<RB>, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<RB> fmt::Debug for ResponseFuture<RB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

/// The hop-by-hop headers of RFC 9110 §7.6.1, plus those named in
/// `Connection`.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

fn leader_uri(leader: &NodeInfo, original: &Uri) -> Result<Uri, http::Error> {
    let path = original
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    Uri::builder()
        .scheme(leader.endpoint.scheme())
        .authority(leader.endpoint.authority())
        .path_and_query(path)
        .build()
}

impl<B, RB> Service<ForwardRequest<http::Request<B>>> for HttpForwarder<RB>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    RB: ResponseBody,
{
    type Response = http::Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<RB>;

    /// Always ready: the pool opens connections on demand.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        HttpForwarder::poll_ready(self, cx)
    }

    fn call(&mut self, forward: ForwardRequest<http::Request<B>>) -> Self::Future {
        let client = self.client.clone();
        let inner = Box::pin(async move {
            let leader = forward.leader.clone();
            let deadline = forward.deadline;
            let budget = forward.remaining();
            let (mut parts, body) = forward.request.into_parts();
            parts.uri = leader_uri(&leader, &parts.uri)
                .map_err(|e| ForwardFailed::new(leader.clone(), ForwardFailureKind::Request, e))?;
            strip_hop_by_hop(&mut parts.headers);
            if let Some(host) = parts.headers.remove(header::HOST) {
                parts
                    .headers
                    .insert(HeaderName::from_static("x-forwarded-host"), host);
            }
            parts.headers.insert(
                HeaderName::from_static(FORWARDED_HEADER),
                HeaderValue::from(forward.hops),
            );
            let request = http::Request::from_parts(parts, body.map_err(Into::into).boxed_unsync());

            let exchange = client.request(request);
            let response = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, exchange).await {
                    Ok(r) => r,
                    Err(_) => {
                        return Err(ForwardTimeout::new(leader, budget.unwrap_or_default()).into())
                    }
                },
                None => exchange.await,
            };
            let response = response.map_err(|e| {
                let kind = if e.is_connect() {
                    ForwardFailureKind::Connect
                } else {
                    ForwardFailureKind::Transport
                };
                ForwardFailed::new(leader.clone(), kind, e)
            })?;
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Ok(http::Response::from_parts(parts, RB::from_incoming(body)))
        });
        ResponseFuture { inner }
    }
}
