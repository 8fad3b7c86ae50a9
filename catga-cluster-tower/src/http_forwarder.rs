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
//! # TLS
//!
//! With the `tls` feature, [`HttpForwarder::with_tls`] reaches leaders whose
//! endpoints are `https://` over TLS (and `http://` ones plain); a failed
//! handshake is a connect failure. [`HttpForwarder::new`] reaches `http://`
//! endpoints only.

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

/// The response body type of a forwarded answer: axum's body with the `axum`
/// feature (so the forwarder fits an axum `Router`), a boxed body otherwise.
#[cfg(feature = "axum")]
pub type DefaultResponseBody = axum_core::body::Body;
/// The response body type of a forwarded answer: axum's body with the `axum`
/// feature (so the forwarder fits an axum `Router`), a boxed body otherwise.
#[cfg(not(feature = "axum"))]
pub type DefaultResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Forwards `http::Request`s to the leader; see the [module docs](self).
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

impl<RB> std::fmt::Debug for HttpForwarder<RB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpForwarder").finish_non_exhaustive()
    }
}

impl<RB> Default for HttpForwarder<RB> {
    fn default() -> Self {
        HttpForwarder::new()
    }
}

impl<RB> HttpForwarder<RB> {
    /// A forwarder with its own connection pool, for `http://` leaders.
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
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    /// Always ready: the pool opens connections on demand.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, forward: ForwardRequest<http::Request<B>>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
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
        })
    }
}
