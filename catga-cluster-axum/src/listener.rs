//! A listener that runs a per-connection handshake (TLS) before serving.
//!
//! [`serve`](crate::serve()) takes any [`axum::serve::Listener`]. To serve
//! HTTPS, wrap the TCP listener in a [`HandshakeListener`] whose handshake
//! is your TLS acceptor: with the `tls` feature, `tls::rustls_acceptor`;
//! otherwise any async fn from the accepted stream to an
//! `io::Result` of a stream, such as `tokio_rustls::TlsAcceptor::accept`:
//!
//! ```no_run
//! # #[cfg(feature = "tls")]
//! # async fn run(
//! #     server_config: std::sync::Arc<catga_cluster_axum::tls::rustls::ServerConfig>,
//! #     app: axum::Router,
//! #     hook: catga_cluster_axum::ShutdownHook,
//! # ) -> std::io::Result<()> {
//! use catga_cluster_axum::{serve, tls, HandshakeListener};
//!
//! let tcp = tokio::net::TcpListener::bind("0.0.0.0:5443").await?;
//! let listener = HandshakeListener::new(tcp, tls::rustls_acceptor(server_config))?;
//! serve(listener, app, hook, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! Handshakes run concurrently, each bounded by a timeout (default 10 s),
//! and at most 256 at a time: a client that connects and never finishes its
//! handshake cannot hold up the accept loop. A failed handshake drops the
//! connection and is logged at debug level.
//!
//! Without the `tls` feature this crate does not depend on a TLS library:
//! the handshake is yours, so the choice of TLS library, crypto provider
//! (and its build cost) is too.

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;

const TARGET: &str = "catga_cluster::axum::listener";

/// Most handshakes in progress at once.
const MAX_PENDING: usize = 256;

type Handshake<I, O> =
    Arc<dyn Fn(I) -> std::pin::Pin<Box<dyn Future<Output = io::Result<O>> + Send>> + Send + Sync>;

/// Accepts connections from `L` and hands them out once `handshake`
/// succeeded; see the [module docs](self).
pub struct HandshakeListener<L: Listener, O> {
    state: State<L, O>,
    local_addr: L::Addr,
    timeout: Duration,
}

enum State<L: Listener, O> {
    Idle {
        listener: L,
        handshake: Handshake<L::Io, O>,
    },
    Running {
        rx: mpsc::Receiver<(O, L::Addr)>,
        task: JoinHandle<()>,
    },
    Poisoned,
}

impl<L: Listener, O> fmt::Debug for HandshakeListener<L, O>
where
    L::Addr: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakeListener")
            .field("local_addr", &self.local_addr)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl<L, O> HandshakeListener<L, O>
where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
    O: Send + 'static,
{
    /// Wraps `listener`; every accepted connection goes through
    /// `handshake` first.
    pub fn new<F, Fut>(listener: L, handshake: F) -> io::Result<Self>
    where
        F: Fn(L::Io) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = io::Result<O>> + Send + 'static,
    {
        let local_addr = listener.local_addr()?;
        let handshake: Handshake<L::Io, O> = Arc::new(move |io| Box::pin(handshake(io)));
        Ok(HandshakeListener {
            state: State::Idle {
                listener,
                handshake,
            },
            local_addr,
            timeout: Duration::from_secs(10),
        })
    }

    /// How long one handshake may take (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Starts the accept loop on the current runtime.
    fn start(&mut self) {
        // Only an idle listener starts; taking the state out of a running
        // one would drop its accept loop (and close the socket).
        if !matches!(self.state, State::Idle { .. }) {
            return;
        }
        let State::Idle {
            mut listener,
            handshake,
        } = std::mem::replace(&mut self.state, State::Poisoned)
        else {
            return;
        };
        let (tx, rx) = mpsc::channel(MAX_PENDING);
        let timeout = self.timeout;
        let permits = Arc::new(Semaphore::new(MAX_PENDING));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = permits.clone().acquire_owned().await else {
                    return;
                };
                let (io, addr) = listener.accept().await;
                let handshake = handshake.clone();
                let out = tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(timeout, handshake(io)).await {
                        Ok(Ok(stream)) => {
                            let _ = out.send((stream, addr)).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(target: TARGET, %error, "handshake failed; connection dropped");
                        }
                        Err(_) => {
                            tracing::debug!(target: TARGET, ?timeout, "handshake timed out; connection dropped");
                        }
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        self.state = State::Running { rx, task };
    }
}

impl<L, O> Listener for HandshakeListener<L, O>
where
    L: Listener,
    L::Addr: Clone + Send + Sync + 'static,
    O: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    type Io = O;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.start();
        match &mut self.state {
            State::Running { rx, .. } => match rx.recv().await {
                Some(accepted) => accepted,
                // The accept loop ended: accept nothing more.
                None => std::future::pending().await,
            },
            _ => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr.clone())
    }
}

impl<L: Listener, O> Drop for HandshakeListener<L, O> {
    fn drop(&mut self) {
        if let State::Running { task, .. } = &self.state {
            task.abort();
        }
    }
}
