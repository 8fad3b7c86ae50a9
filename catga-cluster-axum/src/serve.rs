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
//! 3. keeps accepting for [`Serve::drain_delay`] (default 200 ms) while
//!    every answer carries `Connection: close`: load balancers see the
//!    readiness `503` and stop sending, and each client that still sends
//!    gets its answer and then a closed connection, so nobody writes a
//!    request into a connection the server is about to close;
//! 4. stops accepting connections (a new connect is refused: nothing was
//!    sent, so a client may retry elsewhere), closes idle connections and
//!    drains the requests in flight, up to [`Serve::drain_timeout`];
//!    requests already read are finished, forwarded to the new leader
//!    where needed;
//! 5. stops Raft, and returns.
//!
//! Before the listener closes (in step 4, or when the future of `serve` is
//! dropped, say by an aborted task, while the process runs on) it runs
//! [`ShutdownHook::listener_closing`]: a Raft node stops claiming
//! leadership first, so that its followers never read the closed listener
//! as the death of its process (see `catga_cluster_raft`'s crash
//! fail-over).
//!
//! What to drain, hand over and stop is the [`ShutdownHook`] of the cluster
//! routes mounted in `app`
//! ([`ClusterRoutes::shutdown_hook`](crate::ClusterRoutes::shutdown_hook)), a required
//! argument: a server that forgets it does not compile, and one without
//! cluster routes says so with [`ShutdownHook::none()`].
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
//! let routes = ClusterRoutes::new(ManualCoordinator::new_leader());
//! let app = routes.mount(Router::new());
//! serve(listener, app, routes.shutdown_hook(), async {
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
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::serve::{IncomingStream, Listener};
use axum::Router;
use http::{header, HeaderValue, Request, Response};

pub use crate::shutdown::ShutdownHook;

const TARGET: &str = "catga_cluster::axum::serve";

/// What each request of a connection carries: `ConnectInfo<SocketAddr>`,
/// and `tls::PeerCertificates` when a TLS client presented a certificate.
/// Looked up once per connection, inserted into each request.
#[derive(Clone)]
struct Peer {
    addr: SocketAddr,
    #[cfg(feature = "tls")]
    certificates: Option<crate::tls::PeerCertificates>,
}

impl Peer {
    fn of<L>(incoming: &IncomingStream<'_, L>) -> Self
    where
        L: Listener<Addr = SocketAddr>,
    {
        Peer {
            addr: *incoming.remote_addr(),
            #[cfg(feature = "tls")]
            certificates: crate::tls::PeerCertificates::of_io(incoming.io()),
        }
    }

    fn insert_into(&self, extensions: &mut http::Extensions) {
        extensions.insert(ConnectInfo(self.addr));
        #[cfg(feature = "tls")]
        if let Some(certificates) = &self.certificates {
            extensions.insert(certificates.clone());
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then shuts down
/// gracefully, running `hook`; see the [module docs](self). Await the
/// returned [`Serve`].
///
/// `hook` is [`ClusterRoutes::shutdown_hook`] of the routes mounted in
/// `app`, or [`ShutdownHook::none()`] when there are none.
///
/// [`ClusterRoutes::shutdown_hook`]: crate::ClusterRoutes::shutdown_hook
pub fn serve<L, F>(listener: L, app: Router, hook: ShutdownHook, shutdown: F) -> Serve<L, F>
where
    L: Listener<Addr = SocketAddr>,
    F: Future<Output = ()> + Send + 'static,
{
    Serve {
        listener,
        app,
        shutdown,
        hook,
        drain_timeout: Duration::from_secs(30),
        drain_delay: DEFAULT_DRAIN_DELAY,
    }
}

/// How long the listener keeps accepting after the shutdown began, unless
/// [`Serve::drain_delay`] says otherwise.
pub const DEFAULT_DRAIN_DELAY: Duration = Duration::from_millis(200);

/// A server being configured; await it to run. See [`serve`].
#[must_use = "a server does nothing until awaited"]
pub struct Serve<L, F> {
    listener: L,
    app: Router,
    shutdown: F,
    hook: ShutdownHook,
    drain_timeout: Duration,
    drain_delay: Duration,
}

impl<L, F> fmt::Debug for Serve<L, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Serve")
            .field("hook", &self.hook)
            .field("drain_timeout", &self.drain_timeout)
            .field("drain_delay", &self.drain_delay)
            .finish_non_exhaustive()
    }
}

impl<L, F> Serve<L, F> {
    /// How long requests in flight may take to finish after the listener
    /// closed (default 30 s); the server returns then even if some have not.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// How long the listener keeps accepting once the shutdown began and
    /// the hand-over is done, with readiness `503` and `Connection: close`
    /// on every answer (default [`DEFAULT_DRAIN_DELAY`], 200 ms). Behind a
    /// load balancer that polls readiness, set it to the balancer's
    /// interval times its failure threshold, as with a Kubernetes
    /// `preStop` delay; the process exits that much later.
    pub fn drain_delay(mut self, delay: Duration) -> Self {
        self.drain_delay = delay;
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

/// Runs [`ShutdownHook::listener_closing`] when dropped.
struct ListenerClosing(ShutdownHook);

impl Drop for ListenerClosing {
    fn drop(&mut self) {
        self.0.listener_closing();
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
        drain_delay,
    } = serve;
    if hook.is_none() {
        tracing::debug!(target: TARGET, "no cluster routes; shutting down without a hand-over");
    }
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let (stop_accepting, accepting) = tokio::sync::watch::channel(false);
    let listener = ClosableListener::new(listener, accepting)?;
    let signal_hook = hook.clone();
    let closing = Arc::new(AtomicBool::new(false));
    let connections = Arc::new(Connections::default());
    let signal = {
        let closing = Arc::clone(&closing);
        let connections = Arc::clone(&connections);
        async move {
            shutdown.await;
            tracing::info!(target: TARGET, "shutting down: draining");
            closing.store(true, Ordering::Relaxed);
            signal_hook.begin_drain();
            signal_hook.hand_over().await;
            tokio::time::sleep(drain_delay).await;
            tracing::debug!(target: TARGET, "closing the listener");
            // A Raft node stops claiming leadership before its listener
            // closes, so followers never read that as its death.
            signal_hook.listener_closing();
            let _ = stop_accepting.send(true);
            // Each open connection closes after its next answer: wait for
            // them (a connection accepted a moment ago has its request on
            // the way), then close the idle rest.
            let linger = drain_delay;
            if tokio::time::timeout(linger, connections.all_closed())
                .await
                .is_err()
            {
                tracing::debug!(target: TARGET, open = connections.open(), "closing idle connections");
            }
            let _ = drain_tx.send(());
        }
    };
    // Every request learns its peer: the address (for the loopback rule)
    // and, over TLS, the client's certificates (for the member rule).
    // Once the shutdown began, every answer asks the client to close the
    // connection, so no client reuses one the server is about to close.
    let make_service =
        tower::service_fn(move |incoming: IncomingStream<'_, ClosableListener<L>>| {
            let peer = Peer::of(&incoming);
            let app = app.clone();
            let closing = Arc::clone(&closing);
            let open = Arc::new(connections.opened());
            std::future::ready(Ok::<_, std::convert::Infallible>(
                tower::ServiceBuilder::new()
                    .map_response(move |mut response: Response<axum::body::Body>| {
                        let _connection = &open;
                        if closing.load(Ordering::Relaxed) {
                            response
                                .headers_mut()
                                .insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        response
                    })
                    .map_request(move |mut request: Request<axum::body::Body>| {
                        peer.insert_into(request.extensions_mut());
                        request
                    })
                    .service(app),
            ))
        });
    let server = axum::serve(listener, make_service)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    // Declared after `server`, so dropped before it (and its listener) when
    // this future is dropped midway.
    let _closing = ListenerClosing(hook.clone());
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
    hook.stop().await;
    tracing::info!(target: TARGET, "server stopped");
    result
}

/// The open connections, counted by a guard that each connection's service
/// holds.
#[derive(Debug, Default)]
struct Connections {
    open: AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Connections {
    fn opened(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(Arc::clone(self))
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    async fn all_closed(&self) {
        loop {
            let changed = self.changed.notified();
            if self.open() == 0 {
                return;
            }
            changed.await;
        }
    }
}

/// One open connection; dropped with the connection's service.
#[derive(Debug)]
struct OpenConnection(Arc<Connections>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        self.0.changed.notify_waiters();
    }
}

/// A listener that closes its socket when told (new connects are refused
/// from then on) while the server goes on serving the connections it has.
struct ClosableListener<L> {
    inner: Option<L>,
    addr: SocketAddr,
    stop: tokio::sync::watch::Receiver<bool>,
}

impl<L> ClosableListener<L>
where
    L: Listener<Addr = SocketAddr>,
{
    fn new(inner: L, stop: tokio::sync::watch::Receiver<bool>) -> io::Result<Self> {
        let addr = inner.local_addr()?;
        Ok(ClosableListener {
            inner: Some(inner),
            addr,
            stop,
        })
    }
}

impl<L> Listener for ClosableListener<L>
where
    L: Listener<Addr = SocketAddr>,
{
    type Io = L::Io;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(inner) = self.inner.as_mut() else {
                return std::future::pending().await;
            };
            if *self.stop.borrow() {
                // Serve what the kernel has already accepted (closing the
                // socket would reset those connections, whose clients may
                // have sent their request), then close it.
                let ready = {
                    let mut next = std::pin::pin!(inner.accept());
                    std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await
                };
                if let Poll::Ready(connection) = ready {
                    return connection;
                }
                // From now on a connect is refused.
                self.inner = None;
                continue;
            }
            let stop = &mut self.stop;
            let stopped = async {
                while !*stop.borrow_and_update() {
                    if stop.changed().await.is_err() {
                        // The server is gone: nothing more to accept.
                        return false;
                    }
                }
                true
            };
            tokio::select! {
                biased;
                stopped = stopped => {
                    if !stopped {
                        return std::future::pending().await;
                    }
                }
                connection = inner.accept() => return connection,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
