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
//! # Cross-site requests
//!
//! Loopback trust must not extend to web pages that a browser on the same
//! machine has open: a page can send a cross-site `POST` with
//! `Content-Type: text/plain`, and a DNS-rebinding page can read answers
//! under a host name of its own that resolves to `127.0.0.1`. So, on the
//! protected routes:
//!
//! * a request that carries an **`Origin`** header is refused with
//!   `403 forbidden`, unless that origin was allowed explicitly
//!   ([`ClusterAuthLayer::allow_origin`]). Browsers send `Origin` on
//!   cross-site requests and on most same-site non-`GET` ones; Raft peers,
//!   forwarders and command-line tools do not. This holds with or without
//!   a secret;
//! * **without a secret**, a request whose **`Host`** (or HTTP/2
//!   `:authority`) is neither a loopback name or address (`localhost`,
//!   `*.localhost`, `127.0.0.0/8`, `::1`) nor the host of a cluster
//!   endpoint ([`ClusterAuthLayer::allow_host`]) is refused with
//!   `403 forbidden`: a rebinding page's requests carry the page's own host
//!   name;
//! * JSON routes accept only `application/json` bodies (`415`), so a form
//!   or `text/plain` post never reaches a handler (see
//!   [`ClusterRoutes`](crate::ClusterRoutes)).
//!
//! What protected mode trusts, then: a process on the same machine that
//! can open a TCP connection to the node and sends neither a foreign
//! `Origin` nor a foreign `Host` — that is, local software that is not a
//! browser page. Anything that must not be trusted that far (other users
//! on a shared host, a reverse proxy) calls for a secret.
//!
//! The secret never appears in logs, errors or `Debug` output.
//!
//! ```
//! use axum::{routing::get, Router};
//! use catga_cluster_axum::auth::ClusterAuthLayer;
//! use catga_cluster_core::ClusterSecret;
//!
//! let app: Router = Router::new()
//!     .route("/admin/compact", get(|| async { "ok" }))
//!     .route_layer(ClusterAuthLayer::new(Some(ClusterSecret::from("s3cret"))));
//! # let _ = app;
//! ```

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::connect_info::MockConnectInfo;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use catga_cluster_core::protocol::bearer_token;
use catga_cluster_core::ClusterSecret;
use http::header::{AUTHORIZATION, HOST, ORIGIN};
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

/// A dynamic check for host names that are cluster endpoints (members
/// added at run time).
type HostCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Who may use the protected routes: the secret, and the cross-site rules.
#[derive(Clone, Default)]
struct Policy {
    secret: Option<ClusterSecret>,
    /// Allowed `Origin` values, ASCII-lowercased, without a trailing `/`.
    origins: Vec<String>,
    /// Allowed `Host` names besides loopback, lowercased, without port.
    hosts: Vec<String>,
    dynamic_hosts: Option<HostCheck>,
    /// With mutual TLS: the check a client's certificate chain must pass.
    #[cfg(feature = "tls")]
    members: Option<MemberCheck>,
}

/// Decides whether a client certificate chain (end entity first) belongs
/// to a current member.
#[cfg(feature = "tls")]
type MemberCheck = Arc<dyn Fn(&[rustls::pki_types::CertificateDer<'static>]) -> bool + Send + Sync>;

/// Guards protected routes; see the [module docs](self).
#[derive(Clone)]
pub struct ClusterAuthLayer {
    policy: Arc<Policy>,
}

impl ClusterAuthLayer {
    /// Requires `secret` as a bearer token, or a loopback peer when `None`;
    /// refuses any `Origin`, and (without a secret) any `Host` that is not
    /// loopback.
    pub fn new(secret: Option<ClusterSecret>) -> Self {
        ClusterAuthLayer {
            policy: Arc::new(Policy {
                secret,
                ..Policy::default()
            }),
        }
    }

    /// Replaces the secret, keeping the cross-site rules.
    pub fn secret(mut self, secret: Option<ClusterSecret>) -> Self {
        self.policy_mut().secret = secret;
        self
    }

    /// Mutual TLS: requests must come over a TLS connection whose client
    /// certificate chain passes `check` (for the cluster's peer routes:
    /// valid for the host of a current member's endpoint); anything else is
    /// `403 forbidden`, whatever bearer token it sends. Needs
    /// [`serve`](crate::serve()), which hands the certificates to the
    /// routes as [`PeerCertificates`](crate::tls::PeerCertificates).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn require_member_certificate(
        mut self,
        check: impl Fn(&[rustls::pki_types::CertificateDer<'static>]) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.policy_mut().members = Some(Arc::new(check));
        self
    }

    /// The same layer without a member-certificate requirement.
    #[cfg_attr(not(feature = "tls"), allow(unused_mut))]
    pub(crate) fn without_member_certificate(mut self) -> Self {
        #[cfg(feature = "tls")]
        {
            self.policy_mut().members = None;
        }
        self
    }

    fn policy_mut(&mut self) -> &mut Policy {
        Arc::make_mut(&mut self.policy)
    }

    /// Accepts requests that carry `Origin: <origin>` (for example
    /// `https://admin.example.com`, compared case-insensitively), for a
    /// browser-based tool you trust.
    pub fn allow_origin(mut self, origin: impl AsRef<str>) -> Self {
        let origin = normalize_origin(origin.as_ref());
        self.policy_mut().origins.push(origin);
        self
    }

    /// Accepts `Host: <host>` (a name or an IP address, without port) in
    /// protected mode, besides loopback: the hosts of the cluster's
    /// endpoints.
    pub fn allow_host(mut self, host: impl AsRef<str>) -> Self {
        if let Some(host) = normalize_host(host.as_ref()) {
            self.policy_mut().hosts.push(host);
        }
        self
    }

    /// Accepts, in protected mode, a `Host` for which `check` answers true
    /// (asked only for hosts that are neither loopback nor allowed with
    /// [`allow_host`](Self::allow_host); it gets the lowercased host name
    /// without port). `ClusterRoutes::raft` uses it for members added at
    /// run time.
    pub fn allow_hosts_where(
        mut self,
        check: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.policy_mut().dynamic_hosts = Some(Arc::new(check));
        self
    }
}

impl fmt::Debug for ClusterAuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterAuthLayer")
            .field("secret", &self.policy.secret.as_ref().map(|_| "***"))
            .field("origins", &self.policy.origins)
            .field("hosts", &self.policy.hosts)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for ClusterAuthLayer {
    type Service = ClusterAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClusterAuth {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`ClusterAuthLayer`].
///
/// `poll_ready` is the inner service's; a refused request never reaches it.
#[derive(Clone)]
pub struct ClusterAuth<S> {
    inner: S,
    policy: Arc<Policy>,
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
            .field("secret", &self.policy.secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
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
        let checked = authorize(self.policy.secret.as_ref(), req.headers(), peer)
            .and_then(|()| self.policy.check_cross_site(&req))
            .and_then(|()| self.policy.check_member_certificate(&req));
        match checked {
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

impl Policy {
    /// With mutual TLS: the client's certificate must be a member's.
    fn check_member_certificate<B>(&self, req: &Request<B>) -> Result<(), Problem> {
        #[cfg(feature = "tls")]
        if let Some(check) = &self.members {
            let chain = req.extensions().get::<crate::tls::PeerCertificates>();
            return match chain {
                Some(chain) if check(chain.chain()) => Ok(()),
                Some(_) => Err(Problem::forbidden(
                    "the client certificate is not valid for the host of any current member; \
                     cluster RPCs and forwarded commands are accepted from members only",
                )),
                None => Err(Problem::forbidden(
                    "mutual TLS is required: cluster RPCs and forwarded commands need a \
                     client certificate of a current member",
                )),
            };
        }
        let _ = req;
        Ok(())
    }

    /// The `Origin` and (in protected mode) `Host` rules of the module docs.
    fn check_cross_site<B>(&self, req: &Request<B>) -> Result<(), Problem> {
        if let Some(origin) = req.headers().get(ORIGIN) {
            let text = String::from_utf8_lossy(origin.as_bytes());
            if !self.origins.contains(&normalize_origin(&text)) {
                return Err(Problem::forbidden(format!(
                    "cross-site requests are refused: Origin `{}` is not allowed on the \
                     cluster routes (allow a trusted origin with ClusterRoutes::allow_origin)",
                    text.chars().take(100).collect::<String>()
                )));
            }
        }
        if self.secret.is_some() {
            return Ok(());
        }
        let host = req
            .headers()
            .get(HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let Some(host) = host else {
            // HTTP/1.0 clients may send no host; browsers always do.
            return Ok(());
        };
        let allowed = normalize_host(host).is_some_and(|name| {
            is_loopback_host(&name)
                || self.hosts.contains(&name)
                || self
                    .dynamic_hosts
                    .as_ref()
                    .is_some_and(|check| check(&name))
        });
        if allowed {
            Ok(())
        } else {
            Err(Problem::forbidden(format!(
                "without a cluster secret the cluster routes answer requests for loopback \
                 hosts and the cluster's own endpoints only, not for host `{}`",
                host.chars().take(100).collect::<String>()
            )))
        }
    }
}

fn normalize_origin(origin: &str) -> String {
    origin.trim().trim_end_matches('/').to_ascii_lowercase()
}

/// The host of a `Host` value (`name`, `name:port`, `[v6]:port`),
/// lowercased, without a trailing dot or brackets. `None` when malformed.
fn normalize_host(value: &str) -> Option<String> {
    let value = value.trim();
    let host = if let Some(rest) = value.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        inside
    } else {
        match value.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => value,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.contains(['/', '@', ' ', '[', ']']) {
        return None;
    }
    Some(host.to_ascii_lowercase())
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
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

    fn request(headers: &[(&str, &str)]) -> Request<()> {
        let mut builder = Request::builder().uri("/cluster/locks/a/acquire");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn hosts_parse() {
        for (value, want) in [
            ("localhost:5000", Some("localhost")),
            ("LOCALHOST", Some("localhost")),
            ("127.0.0.1:80", Some("127.0.0.1")),
            ("[::1]:5000", Some("::1")),
            ("[::1]", Some("::1")),
            (
                "node-1.svc.cluster.local.:8443",
                Some("node-1.svc.cluster.local"),
            ),
            ("evil.example:x", None),
            ("[::1]x", None),
            ("", None),
            ("a@b", None),
        ] {
            assert_eq!(normalize_host(value).as_deref(), want, "{value:?}");
        }
    }

    #[test]
    fn origins_are_refused_unless_allowed() {
        let layer = ClusterAuthLayer::new(None);
        let cross = request(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:5000"),
        ]);
        let problem = layer.policy.check_cross_site(&cross).unwrap_err();
        assert_eq!(problem.status(), 403);
        assert_eq!(problem.slug(), "forbidden");
        // `null` (sandboxed pages, file: URLs) is an origin too.
        let null = request(&[("origin", "null")]);
        assert!(layer.policy.check_cross_site(&null).is_err());
        let allowed = ClusterAuthLayer::new(None).allow_origin("https://Admin.example/");
        let ok = request(&[
            ("origin", "https://admin.example"),
            ("host", "localhost:5000"),
        ]);
        assert!(allowed.policy.check_cross_site(&ok).is_ok());
        // With a secret the origin rule still holds.
        let secret = ClusterAuthLayer::new(Some(ClusterSecret::from("s3cret")));
        assert!(secret.policy.check_cross_site(&cross).is_err());
    }

    #[test]
    fn without_a_secret_only_loopback_and_cluster_hosts() {
        let layer = ClusterAuthLayer::new(None)
            .allow_host("Node-2.Example")
            .allow_hosts_where(|h| h == "added.example");
        for ok in [
            "127.0.0.1:5000",
            "127.9.9.9",
            "localhost:5001",
            "api.localhost",
            "[::1]:5000",
            "node-2.example:5002",
            "added.example:1",
        ] {
            let req = request(&[("host", ok)]);
            assert!(layer.policy.check_cross_site(&req).is_ok(), "{ok}");
        }
        for refused in [
            "evil.example:5000",
            "10.0.0.1:5000",
            "localhost.evil.example",
            "x:y",
        ] {
            let req = request(&[("host", refused)]);
            let problem = layer.policy.check_cross_site(&req).unwrap_err();
            assert_eq!(problem.slug(), "forbidden", "{refused}");
        }
        // No Host at all (HTTP/1.0 tools) is no rebinding page.
        assert!(layer.policy.check_cross_site(&request(&[])).is_ok());
        // With a secret any host is fine: the secret is the protection.
        let secret = ClusterAuthLayer::new(Some(ClusterSecret::from("s3cret")));
        let req = request(&[("host", "orders.example")]);
        assert!(secret.policy.check_cross_site(&req).is_ok());
    }

    #[test]
    fn debug_hides_the_secret() {
        let layer = ClusterAuthLayer::new(Some(ClusterSecret::from("s3cret")));
        let debug = format!("{layer:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
    }
}
