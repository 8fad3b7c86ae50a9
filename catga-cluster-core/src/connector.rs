//! The connector of the crates' pooled hyper-util clients (Raft RPC,
//! forwarders), in one place: the TCP settings ([`tcp`]), then plain HTTP,
//! or — with the `tls` feature and a rustls client configuration —
//! https-or-http, so peers whose endpoints are `https://` get TLS and the
//! others plain HTTP.
//!
//! ```
//! use catga_cluster_core::connector;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//!
//! let client: Client<_, String> =
//!     Client::builder(TokioExecutor::new()).build(connector::plain(connector::tcp()));
//! # drop(client);
//! ```

use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;

/// How long opening a connection to a peer may take; a peer that does not
/// accept in time is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The TCP connector every client of the crates starts from: `TCP_NODELAY`
/// (requests and RPCs are small and latency-bound) and a 2 s connect
/// timeout. It speaks `http://` only until `tls` makes it https-or-http.
pub fn tcp() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
    connector
}

/// The connector type of the client: `HttpConnector` without the `tls`
/// feature.
#[cfg(not(feature = "tls"))]
pub type Connector = HttpConnector;

/// A connector over `http` alone (which keeps its own `enforce_http`).
#[cfg(not(feature = "tls"))]
pub fn plain(http: HttpConnector) -> Connector {
    http
}

#[cfg(feature = "tls")]
pub use self::tls::{plain, tls, Connector};

#[cfg(feature = "tls")]
mod tls {
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Arc;
    use std::task::{Context, Poll};

    use http::Uri;
    use hyper_rustls::{HttpsConnector, MaybeHttpsStream};
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpStream;
    use tower_service::Service;

    use crate::BoxError;

    /// Plain HTTP, or https-or-http with a rustls configuration.
    #[derive(Clone, Debug)]
    pub enum Connector {
        /// Plain HTTP only.
        Plain(HttpConnector),
        /// TLS for `https://` URIs, plain HTTP for `http://` ones.
        Tls(HttpsConnector<HttpConnector>),
    }

    /// A connector over `http` alone (which keeps its own `enforce_http`).
    pub fn plain(http: HttpConnector) -> Connector {
        Connector::Plain(http)
    }

    /// A connector that speaks TLS to `https://` URIs with `config` and
    /// plain HTTP to `http://` ones. `config`'s ALPN list is used as given:
    /// leave it empty (or `http/1.1`), the client speaks HTTP/1.1 only.
    pub fn tls(mut http: HttpConnector, config: Arc<rustls::ClientConfig>) -> Connector {
        http.enforce_http(false);
        Connector::Tls(HttpsConnector::from((http, config)))
    }

    impl Service<Uri> for Connector {
        type Response = MaybeHttpsStream<TokioIo<TcpStream>>;
        type Error = BoxError;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

        fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
            match self {
                Connector::Plain(http) => http.poll_ready(cx).map_err(Into::into),
                Connector::Tls(https) => https.poll_ready(cx),
            }
        }

        fn call(&mut self, uri: Uri) -> Self::Future {
            match self {
                Connector::Plain(http) => {
                    let connecting = http.call(uri);
                    Box::pin(async move { Ok(MaybeHttpsStream::Http(connecting.await?)) })
                }
                Connector::Tls(https) => https.call(uri),
            }
        }
    }
}
