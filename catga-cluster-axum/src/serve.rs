//! Serving a router with a graceful, cluster-aware shutdown.
//!
//! [`serve`] runs an axum [`Router`] on a bound listener (it never binds an
//! address itself) and gives every request its peer address
//! ([`ConnectInfo<SocketAddr>`](axum::extract::ConnectInfo), which the
//! protected routes need). When `shutdown` resolves it:
//!
//! 1. turns `/health/ready` and `/health/leader` to `503`, so load
//!    balancers stop sending new work;
//! 2. on a Raft leader, hands leadership over to the most up-to-date voter
//!    while the listener still accepts (the successor's vote request must
//!    reach this node); writes that arrive meanwhile are passed to the new
//!    leader;
//! 3. stops accepting connections and drains the requests in flight, up to
//!    [`Serve::drain_timeout`];
//! 4. stops Raft, and returns.
//!
//! The cluster routes mounted in `app` tell `serve` what to hand over and
//! stop; [`Serve::shutdown_hook`] names them explicitly when the routes are
//! nested under a prefix.
//!
//! # TLS
//!
//! `serve` accepts any [`axum::serve::Listener`] whose address is a
//! [`SocketAddr`]: wrap a `TcpListener` in a
//! [`HandshakeListener`](crate::HandshakeListener) with a TLS handshake (the
//! `tls` feature's `tls::rustls_acceptor`, or your own) to serve HTTPS (see
//! `docs/http.md`), and advertise `https://` endpoints so redirects and
//! peers use TLS.
//!
//! ```no_run
//! use axum::Router;
//! use catga_cluster_axum::{serve, ClusterRoutes};
//! use catga_cluster_core::testing::ManualCoordinator;
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:5000").await?;
//! let app = ClusterRoutes::new(ManualCoordinator::new_leader()).mount(Router::new());
//! serve(listener, app, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```

use std::fmt;
use std::future::{Future, IntoFuture};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use http::Request;
use tower::ServiceExt;

use crate::routes::paths;

const TARGET: &str = "catga_cluster::axum::serve";

/// What happens to the cluster when the server shuts down; see the
/// [module docs](self). Get it from
/// [`ClusterRoutes::shutdown_hook`](crate::ClusterRoutes::shutdown_hook).
#[derive(Clone)]
pub struct ShutdownHook {
    draining: Arc<AtomicBool>,
    #[cfg(feature = "raft")]
    raft: Option<catga_cluster_raft::RaftNode>,
}

impl fmt::Debug for ShutdownHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ShutdownHook");
        d.field("draining", &self.draining.load(Ordering::Relaxed));
        #[cfg(feature = "raft")]
        d.field("raft", &self.raft.is_some());
        d.finish()
    }
}

impl ShutdownHook {
    pub(crate) fn new(
        draining: Arc<AtomicBool>,
        #[cfg(feature = "raft")] raft: Option<catga_cluster_raft::RaftNode>,
    ) -> Self {
        ShutdownHook {
            draining,
            #[cfg(feature = "raft")]
            raft,
        }
    }

    /// Marks the node as draining: readiness answers `503`.
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether [`begin_drain`](Self::begin_drain) was called.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Hands leadership over if this node leads (bounded by the node's
    /// hand-over timeout); a failure is logged and the shutdown goes on.
    pub async fn hand_over(&self) {
        #[cfg(feature = "raft")]
        if let Some(node) = &self.raft {
            // The node stops campaigning and claiming leadership; a leader
            // hands over while this server still accepts, so requests
            // forwarded here meanwhile reach the successor.
            if let Some(leader) = node.retire().await {
                tracing::info!(target: TARGET, new_leader = %leader, "leadership handed over before shutdown");
            }
        }
    }

    /// Stops the backend (Raft), after the connections are drained.
    pub async fn stop(&self) {
        #[cfg(feature = "raft")]
        if let Some(node) = &self.raft {
            node.shutdown().await;
        }
    }
}

/// The question [`serve`] asks the router for its [`ShutdownHook`]: a
/// request extension no client can send.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ShutdownProbe;

/// Asks `app` for the hook of the cluster routes mounted in it.
async fn discover(app: &Router) -> Option<ShutdownHook> {
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = http::Uri::from_static(paths::HEALTH_LIVE);
    request.extensions_mut().insert(ShutdownProbe);
    let response = app.clone().oneshot(request).await.ok()?;
    response.extensions().get::<ShutdownHook>().cloned()
}

/// What each request of a connection carries: `ConnectInfo<SocketAddr>`,
/// and `tls::PeerCertificates` when a TLS client presented a certificate.
fn connection_extensions<L>(incoming: &IncomingStream<'_, L>) -> http::Extensions
where
    L: Listener<Addr = SocketAddr>,
{
    let mut extensions = http::Extensions::new();
    extensions.insert(ConnectInfo(*incoming.remote_addr()));
    #[cfg(feature = "tls")]
    if let Some(peer) = crate::tls::PeerCertificates::of_io(incoming.io()) {
        extensions.insert(peer);
    }
    extensions
}

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down
/// gracefully; see the [module docs](self). Await the returned [`Serve`].
pub fn serve<L, F>(listener: L, app: Router, shutdown: F) -> Serve<L, F>
where
    L: Listener<Addr = SocketAddr>,
    F: Future<Output = ()> + Send + 'static,
{
    Serve {
        listener,
        app,
        shutdown,
        hook: None,
        drain_timeout: Duration::from_secs(30),
    }
}

/// A server being configured; await it to run. See [`serve`].
#[must_use = "a server does nothing until awaited"]
pub struct Serve<L, F> {
    listener: L,
    app: Router,
    shutdown: F,
    hook: Option<ShutdownHook>,
    drain_timeout: Duration,
}

impl<L, F> fmt::Debug for Serve<L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("hook", &self.hook)
            .field("drain_timeout", &self.drain_timeout)
            .finish_non_exhaustive()
    }
}

impl<L, F> Serve<L, F> {
    /// Uses `hook` instead of the one of the cluster routes found in the
    /// router.
    pub fn shutdown_hook(mut self, hook: ShutdownHook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// How long requests in flight may take to finish after the listener
    /// closed (default 30 s); the server returns then even if some have not.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }
}

impl<L, F> IntoFuture for Serve<L, F>
where
    L: Listener<Addr = SocketAddr>,
    F: Future<Output = ()> + Send + 'static,
{
    type Output = io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(run(self))
    }
}

async fn run<L, F>(serve: Serve<L, F>) -> io::Result<()>
where
    L: Listener<Addr = SocketAddr>,
    F: Future<Output = ()> + Send + 'static,
{
    let Serve {
        listener,
        app,
        shutdown,
        hook,
        drain_timeout,
    } = serve;
    let hook = match hook {
        Some(hook) => Some(hook),
        None => discover(&app).await,
    };
    if hook.is_none() {
        tracing::debug!(target: TARGET, "no cluster routes found; shutting down without a hand-over");
    }
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let signal_hook = hook.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!(target: TARGET, "shutting down: draining");
        if let Some(hook) = &signal_hook {
            hook.begin_drain();
            hook.hand_over().await;
        }
        let _ = drain_tx.send(());
    };
    // Every request learns its peer: the address (for the loopback rule)
    // and, over TLS, the client's certificates (for the member rule).
    let make_service = tower::service_fn(move |incoming: IncomingStream<'_, L>| {
        let extensions = connection_extensions(&incoming);
        let app = app.clone();
        std::future::ready(Ok::<_, std::convert::Infallible>(
            tower::ServiceBuilder::new()
                .map_request(move |mut request: Request<axum::body::Body>| {
                    request.extensions_mut().extend(extensions.clone());
                    request
                })
                .service(app),
        ))
    });
    let server = axum::serve(listener, make_service)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    let drain_deadline = async move {
        if drain_rx.await.is_ok() {
            tokio::time::sleep(drain_timeout).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = &mut server => result,
        () = drain_deadline => {
            tracing::warn!(target: TARGET, ?drain_timeout, "requests still in flight after the drain timeout; returning");
            Ok(())
        }
    };
    if let Some(hook) = &hook {
        hook.stop().await;
    }
    tracing::info!(target: TARGET, "server stopped");
    result
}
