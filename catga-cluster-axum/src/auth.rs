//! Authentication of the protected cluster routes.
//!
//! The Raft RPC, admin, lock, key-value and forwarded-command routes are
//! *protected*. [`ClusterAuthLayer`] guards them:
//!
//! * **With a cluster secret**, a request must carry
//!   `Authorization: Bearer <secret>`; the token is compared with
//!   [`ClusterSecret::verify`], in time that does not depend on where it
//!   differs. Anything else answers `401 unauthorized`.
//! * **Without a secret** (protected mode), only peers on loopback
//!   (`127.0.0.0/8`, `::1`, or `::ffff:127.x.x.x`) are served, so a
//!   three-node cluster on one machine works with no configuration; any
//!   other peer gets `401 unauthorized` with a detail that says how to set
//!   the secret. The peer address comes from axum's
//!   [`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), which
//!   [`serve`](crate::serve()) always provides. **A request without
//!   `ConnectInfo` is refused** (fail closed): serve the router with
//!   [`serve`](crate::serve()) or
//!   `into_make_service_with_connect_info::<SocketAddr>()`, or, in tests,
//!   add axum's `MockConnectInfo`.
//!
//! Behind a reverse proxy on the same machine every peer looks like
//! loopback: configure a secret there.
//!
//! The secret never appears in logs, errors or `Debug` output.
//!
//! ```
//! use axum::{routing::get, Router};
//! use catga_cluster_axum::auth::ClusterAuthLayer;
//! use catga_cluster_core::config::ClusterSecret;
//!
//! let app: Router = Router::new()
//!     .route("/admin/compact", get(|| async { "ok" }))
//!     .route_layer(ClusterAuthLayer::new(Some(ClusterSecret::from("s3cret"))));
//! # let _ = app;
//! ```

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use catga_cluster_core::config::ClusterSecret;
use catga_cluster_core::protocol::bearer_token;
use http::header::AUTHORIZATION;
use http::{HeaderMap, Request};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::problem::Problem;

const TARGET: &str = "catga_cluster::axum::auth";

/// What a refused peer reads when no secret is configured.
const SET_SECRET_HINT: &str =
    "no cluster secret is configured, so this route answers only peers on \
     loopback; set the same secret on every node (`Cluster.Secret` in appsettings.json, or the \
     `Cluster__Secret` environment variable) and send it as `Authorization: Bearer <secret>`";

/// Guards protected routes; see the [module docs](self).
#[derive(Clone)]
pub struct ClusterAuthLayer {
    secret: Option<ClusterSecret>,
}

impl ClusterAuthLayer {
    /// Requires `secret` as a bearer token, or a loopback peer when `None`.
    pub fn new(secret: Option<ClusterSecret>) -> Self {
        ClusterAuthLayer { secret }
    }
}

impl fmt::Debug for ClusterAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterAuthLayer")
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl<S> Layer<S> for ClusterAuthLayer {
    type Service = ClusterAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClusterAuth {
            inner,
            secret: self.secret.clone(),
        }
    }
}

/// The service of [`ClusterAuthLayer`].
///
/// `poll_ready` is the inner service's; a refused request never reaches it.
#[derive(Clone)]
pub struct ClusterAuth<S> {
    inner: S,
    secret: Option<ClusterSecret>,
}

impl<S> ClusterAuth<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ClusterAuth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterAuth")
            .field("inner", &self.inner)
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl<S, B> Service<Request<B>> for ClusterAuth<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = AuthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let extensions = req.extensions();
        let peer = extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| extensions.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0));
        match authorize(self.secret.as_ref(), req.headers(), peer) {
            Ok(()) => AuthFuture {
                kind: Kind::Inner {
                    future: self.inner.call(req),
                },
            },
            Err(problem) => {
                tracing::debug!(
                    target: TARGET,
                    path = req.uri().path(),
                    peer = ?peer,
                    "refused an unauthenticated request"
                );
                AuthFuture {
                    kind: Kind::Refused {
                        response: Some(problem.into_response()),
                    },
                }
            }
        }
    }
}

pin_project! {
    /// The response future of [`ClusterAuth`].
    pub struct AuthFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response> },
    }
}

impl<F> fmt::Debug for AuthFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Refused { .. } => "refused",
        };
        f.debug_struct("AuthFuture").field("state", &state).finish()
    }
}

impl<F, E> Future for AuthFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future.poll(cx),
            KindProj::Refused { response } => Poll::Ready(Ok(response
                .take()
                .unwrap_or_else(|| Problem::internal().into_response()))),
        }
    }
}

/// Decides whether a request may use a protected route.
pub(crate) fn authorize(
    secret: Option<&ClusterSecret>,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<(), Problem> {
    match secret {
        Some(secret) => {
            let token = headers
                .get(AUTHORIZATION)
                .and_then(|v| bearer_token(v.as_bytes()));
            match token {
                Some(token) if secret.verify(token) => Ok(()),
                Some(_) => Err(Problem::unauthorized("wrong cluster secret")),
                None => Err(Problem::unauthorized(
                    "this route needs the cluster secret as `Authorization: Bearer <secret>`",
                )),
            }
        }
        None => match peer {
            Some(addr) if is_loopback(addr) => Ok(()),
            Some(_) => Err(Problem::unauthorized(SET_SECRET_HINT)),
            None => Err(Problem::unauthorized(
                "the peer address is unknown (the server does not provide ConnectInfo), \
                 so this route refuses it; serve with catga_cluster_axum::serve, or configure \
                 a cluster secret",
            )),
        },
    }
}

fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer  abc "), None);
        assert_eq!(bearer_token(b"Bearer\tabc"), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Bearer "), None);
    }

    #[test]
    fn with_a_secret_the_token_decides() {
        let secret = ClusterSecret::from("s3cret");
        let remote: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert!(authorize(Some(&secret), &headers("Bearer s3cret"), Some(remote)).is_ok());
        assert!(authorize(Some(&secret), &headers("Bearer s3cret"), None).is_ok());
        let wrong = authorize(Some(&secret), &headers("Bearer s3cre"), Some(remote)).unwrap_err();
        assert_eq!(wrong.slug(), "unauthorized");
        assert!(!wrong.detail().contains("s3cret"));
        let missing = authorize(Some(&secret), &HeaderMap::new(), Some(remote)).unwrap_err();
        assert_eq!(missing.status(), 401);
        // Loopback is no excuse once a secret is set.
        let local: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert!(authorize(Some(&secret), &HeaderMap::new(), Some(local)).is_err());
    }

    #[test]
    fn without_a_secret_only_loopback() {
        for ok in [
            "127.0.0.1:1",
            "127.8.9.10:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            let addr: SocketAddr = ok.parse().unwrap();
            assert!(
                authorize(None, &HeaderMap::new(), Some(addr)).is_ok(),
                "{ok}"
            );
        }
        for refused in ["10.0.0.1:1", "[::ffff:10.0.0.1]:1", "[2001:db8::1]:1"] {
            let addr: SocketAddr = refused.parse().unwrap();
            let problem = authorize(None, &HeaderMap::new(), Some(addr)).unwrap_err();
            assert!(problem.detail().contains("Cluster__Secret"), "{refused}");
        }
        assert!(authorize(None, &HeaderMap::new(), None).is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let layer = ClusterAuthLayer::new(Some(ClusterSecret::from("s3cret")));
        let debug = format!("{layer:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
