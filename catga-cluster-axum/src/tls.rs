//! HTTPS with rustls: [`rustls_acceptor`] is the handshake of a
//! [`HandshakeListener`](crate::HandshakeListener), so [`serve()`](crate::serve())
//! serves TLS connections.
//!
//! rustls 0.23 with the ring crypto provider; the server configuration
//! (certificate chain, key, client authentication) is yours. Leave its
//! `alpn_protocols` empty or set it to `http/1.1`: the server speaks
//! HTTP/1.1. Advertise `https://` endpoints in the cluster configuration so
//! peers, forwarders and redirects use TLS, and give the clients a
//! configuration that trusts your CA:
//! `catga_cluster_raft::NodeOptions::tls`,
//! `catga_cluster_tower::HttpForwarder::with_tls` and
//! `catga_cluster_tower::JsonForwarder::with_tls`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use axum::Router;
//! use catga_cluster_axum::tls::{rustls, rustls_acceptor};
//! use catga_cluster_axum::{serve, HandshakeListener, ShutdownHook};
//! use rustls::pki_types::{CertificateDer, PrivateKeyDer};
//!
//! # async fn run(
//! #     chain: Vec<CertificateDer<'static>>,
//! #     key: PrivateKeyDer<'static>,
//! #     app: Router,
//! #     hook: ShutdownHook,
//! # ) -> Result<(), Box<dyn std::error::Error>> {
//! let provider = Arc::new(rustls::crypto::ring::default_provider());
//! let config = rustls::ServerConfig::builder_with_provider(provider)
//!     .with_safe_default_protocol_versions()?
//!     .with_no_client_auth()
//!     .with_single_cert(chain, key)?;
//!
//! let tcp = tokio::net::TcpListener::bind("0.0.0.0:5443").await?;
//! let listener = HandshakeListener::new(tcp, rustls_acceptor(Arc::new(config)))?;
//! serve(listener, app, hook, async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};

pub use rustls;
pub use tokio_rustls::server::TlsStream;
pub use tokio_rustls::Accept;

/// The TLS handshake for a [`HandshakeListener`](crate::HandshakeListener):
/// accepts a connection with `config`; see the [module docs](self).
///
/// The listener bounds each handshake with its timeout and drops the
/// connections whose handshake fails.
pub fn rustls_acceptor<I>(
    config: Arc<rustls::ServerConfig>,
) -> impl Fn(I) -> Accept<I> + Clone + Send + Sync + 'static
where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    move |io| acceptor.accept(io)
}

/// The certificate chain a TLS client presented (end entity first), as a
/// request extension.
///
/// [`serve()`](crate::serve()) adds it to every request of a connection
/// accepted by a [`HandshakeListener`](crate::HandshakeListener) with
/// [`rustls_acceptor`] whose client sent a certificate (the server
/// configuration verified it against its roots during the handshake).
/// Requests over plain TCP, or from clients without a certificate, have
/// none.
///
/// ```
/// use axum::{routing::get, Extension, Router};
/// use catga_cluster_axum::tls::PeerCertificates;
///
/// let app: Router = Router::new().route(
///     "/whoami",
///     get(|peer: Option<Extension<PeerCertificates>>| async move {
///         match peer {
///             Some(Extension(chain)) => format!("{} certificates", chain.chain().len()),
///             None => "anonymous".to_owned(),
///         }
///     }),
/// );
/// # let _ = app;
/// ```
#[derive(Debug, Clone)]
pub struct PeerCertificates(Arc<[CertificateDer<'static>]>);

impl PeerCertificates {
    /// A chain, end entity first.
    pub fn new(chain: Vec<CertificateDer<'static>>) -> Self {
        PeerCertificates(chain.into())
    }

    /// The chain, end entity first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.0
    }

    /// The certificates of an accepted connection, if it is a rustls
    /// server stream over TCP whose client presented any.
    pub(crate) fn of_io(io: &(dyn std::any::Any + Send)) -> Option<Self> {
        let tls = io.downcast_ref::<TlsStream<tokio::net::TcpStream>>()?;
        let chain = tls.get_ref().1.peer_certificates()?;
        (!chain.is_empty()).then(|| PeerCertificates::new(chain.to_vec()))
    }
}

/// The member-certificate decision of `ClusterRoutes::tls`, cached per
/// end-entity certificate and member set for a few seconds: verifying a
/// chain costs signature checks, and peers send thousands of RPCs a second
/// over the same few certificates.
#[derive(Clone)]
pub(crate) struct MemberCertificates {
    material: catga_cluster_core::tls::ClusterTls,
    hosts: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    cache: Arc<std::sync::Mutex<Vec<Decision>>>,
}

struct Decision {
    certificate: CertificateDer<'static>,
    hosts: Vec<String>,
    accepted: bool,
    at: std::time::Instant,
}

impl MemberCertificates {
    /// How long a decision stands (a reload or a membership change takes
    /// effect within it).
    const FRESH: std::time::Duration = std::time::Duration::from_secs(5);
    /// Most certificates remembered (peers have one each).
    const CAPACITY: usize = 64;

    pub(crate) fn new(
        material: catga_cluster_core::tls::ClusterTls,
        hosts: Arc<dyn Fn() -> Vec<String> + Send + Sync>,
    ) -> Self {
        MemberCertificates {
            material,
            hosts,
            cache: Arc::new(std::sync::Mutex::new(Vec::new())),
        }
    }

    /// Whether `chain` is a current member's.
    pub(crate) fn accepts(&self, chain: &[CertificateDer<'static>]) -> bool {
        let Some(leaf) = chain.first() else {
            return false;
        };
        let hosts = (self.hosts)();
        let now = std::time::Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(d) = cache
                .iter()
                .find(|d| &d.certificate == leaf && d.hosts == hosts)
            {
                if now.duration_since(d.at) < Self::FRESH {
                    return d.accepted;
                }
            }
        }
        let accepted = hosts
            .iter()
            .any(|host| self.material.certificate_valid_for(chain, host));
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|d| &d.certificate != leaf && now.duration_since(d.at) < Self::FRESH);
        if cache.len() >= Self::CAPACITY {
            cache.remove(0);
        }
        cache.push(Decision {
            certificate: leaf.clone(),
            hosts,
            accepted,
            at: now,
        });
        accepted
    }
}
