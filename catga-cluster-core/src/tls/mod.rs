//! A node's TLS material from files: the certificate it serves and presents
//! to peers, its private key and the CA certificates peers must chain to,
//! checked at load, reloaded when the files change, and turned into the
//! rustls configurations of the server and of the clients.
//!
//! ```no_run
//! use std::time::Duration;
//! use catga_cluster_core::connector;
//! use catga_cluster_core::tls::{ClusterTls, TlsFiles};
//! use hyper_util::client::legacy::connect::HttpConnector;
//!
//! # async fn run() -> Result<(), catga_cluster_core::tls::TlsError> {
//! // `node0.example` is the host of this node's `https://` endpoint.
//! let files = TlsFiles::new("/etc/catga/node0.pem", "/etc/catga/node0.key", "/etc/catga/ca.pem");
//! let tls = ClusterTls::load(files, "node0.example")?;
//!
//! // The listener's handshake (tokio-rustls, or catga-cluster-axum's acceptor).
//! let server_config = tls.server_config();
//! // The pooled clients (Raft RPC, forwarders): https-or-http.
//! let connector = connector::tls(HttpConnector::new(), tls.client_config());
//! // Renewed files are picked up by the next handshakes.
//! let _reloader = tls.spawn_reloader(Duration::from_secs(10));
//! # let _ = (server_config, connector);
//! # Ok(()) }
//! ```
//!
//! # What is checked
//!
//! [`ClusterTls::load`] (and every [`reload`](ClusterTls::reload)) refuses,
//! with a [`TlsError`] naming the configuration key and the file:
//!
//! * a file that is missing or unreadable, not PEM, without a certificate
//!   (certificate and CA files) or without exactly one private key (key
//!   file; PKCS#8, PKCS#1 or SEC1);
//! * a CA file with a certificate that cannot be a trust anchor;
//! * a key that does not belong to the certificate;
//! * a certificate chain that does not lead to a certificate of the CA
//!   file, is expired or not yet valid, is not valid for this node's
//!   endpoint host, or whose extended key usage forbids serving TLS (or,
//!   when client certificates are required, presenting it as a client).
//!
//! There are no bundled roots: peers trust exactly the CA file.
//!
//! # Handshakes
//!
//! The configurations are built once and read the current material on every
//! handshake, so a reload needs no new listener or connection pool:
//!
//! * [`server_config`](ClusterTls::server_config) serves the current
//!   certificate. With client certificates required it asks every client
//!   for one and verifies it against the current CA roots, but also accepts
//!   clients without one (health probes, application clients): the HTTP
//!   layer demands a member's certificate on the protected routes, with
//!   [`certificate_valid_for`](ClusterTls::certificate_valid_for).
//! * [`client_config`](ClusterTls::client_config) verifies servers against
//!   the current CA roots and, with client certificates required, presents
//!   the current certificate.
//! * Both speak TLS 1.3 and 1.2 with the ring provider (never a process-wide
//!   default provider), offer no ALPN (HTTP/1.1), and resume no sessions:
//!   every handshake verifies the peer against the current roots, and the
//!   HTTP clients pool their connections, so handshakes are rare.
//!
//! Connections open at a reload keep the certificates they were set up
//! with; new connections use the new material.
//!
//! # Reload
//!
//! [`reload`](ClusterTls::reload) reads the three files and compares their
//! contents with the material in use. Changed files are checked like at
//! load; if they pass they are swapped in, otherwise the previous material
//! stays and the error says why. A certificate and key replaced one after
//! the other are refused as a mismatch until both are in place, so replace
//! files by renaming complete ones into place, or let the next check pick
//! up the pair. A CA rotation adds the new CA certificate to the CA file on
//! every node first, then replaces the nodes' certificates, then removes the
//! old CA certificate.
//! [`spawn_reloader`](ClusterTls::spawn_reloader) calls it periodically and
//! logs the outcome.

mod current;
mod error;
mod material;
mod reload;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

pub use self::error::TlsError;
pub use self::reload::ReloadGuard;
pub use rustls;

use self::current::{Current, CurrentCertificate, CurrentClientVerifier, CurrentServerVerifier};
use self::material::{Contents, Material};

/// The files of a node's TLS material, all PEM.
///
/// ```
/// use catga_cluster_core::tls::TlsFiles;
///
/// let files = TlsFiles::new("node.pem", "node.key", "ca.pem").require_client_certificate(false);
/// assert!(!files.require_client_certificate);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// This node's certificate chain, end-entity certificate first
    /// (`Cluster.Tls.CertificatePath`).
    pub certificate: PathBuf,
    /// The certificate's private key (`Cluster.Tls.KeyPath`).
    pub key: PathBuf,
    /// The CA certificates every node's certificate chains to
    /// (`Cluster.Tls.CaCertificatePath`).
    pub ca_certificates: PathBuf,
    /// Whether nodes present their certificate as a client certificate and
    /// the server asks clients for one (`Cluster.Tls.RequireClientCertificate`).
    pub require_client_certificate: bool,
}

impl TlsFiles {
    /// The three files, with client certificates required.
    ///
    /// ```
    /// use catga_cluster_core::tls::TlsFiles;
    ///
    /// let files = TlsFiles::new("node.pem", "node.key", "ca.pem");
    /// assert!(files.require_client_certificate);
    /// ```
    pub fn new(
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        ca_certificates: impl Into<PathBuf>,
    ) -> Self {
        TlsFiles {
            certificate: certificate.into(),
            key: key.into(),
            ca_certificates: ca_certificates.into(),
            require_client_certificate: true,
        }
    }

    /// Sets [`require_client_certificate`](#structfield.require_client_certificate).
    ///
    /// ```
    /// use catga_cluster_core::tls::TlsFiles;
    ///
    /// let files = TlsFiles::new("node.pem", "node.key", "ca.pem").require_client_certificate(false);
    /// assert!(!files.require_client_certificate);
    /// ```
    pub fn require_client_certificate(mut self, require: bool) -> Self {
        self.require_client_certificate = require;
        self
    }
}

#[cfg(feature = "config")]
impl From<&crate::config::TlsConfig> for TlsFiles {
    fn from(config: &crate::config::TlsConfig) -> Self {
        TlsFiles::new(
            &config.certificate_path,
            &config.key_path,
            &config.ca_certificate_path,
        )
        .require_client_certificate(config.require_client_certificate)
    }
}

/// A node's TLS material, checked, reloadable, and the rustls
/// configurations that use it (see the [module docs](self)).
///
/// Cloning is cheap and clones share the material: a reload through one is
/// seen by all, and by every configuration they handed out. `Debug` shows
/// the paths, never key material.
///
/// ```no_run
/// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
///
/// let tls = ClusterTls::load(TlsFiles::new("node.pem", "node.key", "ca.pem"), "node0.example")?;
/// assert!(tls.requires_client_certificate());
/// # Ok::<(), catga_cluster_core::tls::TlsError>(())
/// ```
#[derive(Clone)]
pub struct ClusterTls {
    inner: Arc<Inner>,
}

struct Inner {
    files: TlsFiles,
    host: ServerName<'static>,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    server_config: Arc<ServerConfig>,
    client_config: Arc<ClientConfig>,
    /// Serialises reloads, so two cannot interleave their reads and swaps.
    reloading: Mutex<()>,
}

impl ClusterTls {
    /// Loads the files and checks them (see the [module docs](self)).
    ///
    /// `local_host` is the host of this node's advertised endpoint (a DNS
    /// name or an IP address, without port; IPv6 brackets are accepted),
    /// such as [`Endpoint::host`](crate::Endpoint::host): the certificate
    /// must be valid for it, since peers check that.
    ///
    /// ```no_run
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    /// use catga_cluster_core::Endpoint;
    ///
    /// let endpoint = Endpoint::parse("https://10.0.0.7:5443").unwrap();
    /// let tls = ClusterTls::load(
    ///     TlsFiles::new("node.pem", "node.key", "ca.pem"),
    ///     endpoint.host(),
    /// )?;
    /// # Ok::<(), catga_cluster_core::tls::TlsError>(())
    /// ```
    pub fn load(files: TlsFiles, local_host: &str) -> Result<ClusterTls, TlsError> {
        let host = server_name(local_host).ok_or_else(|| TlsError::InvalidHost {
            host: local_host.to_owned(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let contents = Contents::read(&files)?;
        let material = Material::build(&files, contents, &host, &provider)?;
        let current = Arc::new(Current::new(material));
        let setup = |e: rustls::Error| TlsError::Setup {
            reason: e.to_string(),
        };

        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(setup)?;
        let server = if files.require_client_certificate {
            server.with_client_cert_verifier(Arc::new(CurrentClientVerifier(current.clone())))
        } else {
            server.with_no_client_auth()
        };
        let mut server_config =
            server.with_cert_resolver(Arc::new(CurrentCertificate(current.clone())));
        // No resumption: a resumed session skips certificate verification,
        // which would outlive a reload that removed a CA.
        server_config.session_storage = Arc::new(NoServerSessionStorage {});
        server_config.send_tls13_tickets = 0;

        // `dangerous()` is rustls' door to a custom verifier; this one hands
        // every call to webpki over the current roots.
        let client = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(setup)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(CurrentServerVerifier(current.clone())));
        let mut client_config = if files.require_client_certificate {
            client.with_client_cert_resolver(Arc::new(CurrentCertificate(current.clone())))
        } else {
            client.with_no_client_auth()
        };
        client_config.resumption = Resumption::disabled();

        Ok(ClusterTls {
            inner: Arc::new(Inner {
                files,
                host,
                provider,
                current,
                server_config: Arc::new(server_config),
                client_config: Arc::new(client_config),
                reloading: Mutex::new(()),
            }),
        })
    }

    /// Loads the files of a `Cluster.Tls` configuration section; see
    /// [`load`](Self::load).
    ///
    /// ```no_run
    /// use catga_cluster_core::config::ClusterConfig;
    /// use catga_cluster_core::tls::ClusterTls;
    ///
    /// # fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let config = ClusterConfig::load(Some("appsettings.json".as_ref()))?;
    /// if let Some(tls_config) = &config.tls {
    ///     let tls = ClusterTls::from_config(tls_config, config.node.endpoint.host())?;
    ///     let _reloader = tls.spawn_reloader(tls_config.reload_interval);
    /// }
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "config")]
    pub fn from_config(
        config: &crate::config::TlsConfig,
        local_host: &str,
    ) -> Result<ClusterTls, TlsError> {
        ClusterTls::load(TlsFiles::from(config), local_host)
    }

    /// The files this material is read from.
    ///
    /// ```no_run
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    ///
    /// let tls = ClusterTls::load(TlsFiles::new("node.pem", "node.key", "ca.pem"), "node0")?;
    /// assert_eq!(tls.files().key, std::path::Path::new("node.key"));
    /// # Ok::<(), catga_cluster_core::tls::TlsError>(())
    /// ```
    pub fn files(&self) -> &TlsFiles {
        &self.inner.files
    }

    /// The rustls server configuration: serves the current certificate and,
    /// when client certificates are required, verifies those clients send
    /// against the current CA roots while admitting clients without one.
    /// No ALPN (HTTP/1.1); no session resumption.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    ///
    /// let tls = ClusterTls::load(TlsFiles::new("node.pem", "node.key", "ca.pem"), "node0")?;
    /// let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
    /// let listener = tokio::net::TcpListener::bind("0.0.0.0:5443").await?;
    /// let (tcp, _) = listener.accept().await?;
    /// let stream = acceptor.accept(tcp).await?;
    /// let client_chain = stream.get_ref().1.peer_certificates();
    /// # let _ = client_chain;
    /// # Ok(()) }
    /// ```
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.inner.server_config.clone()
    }

    /// The rustls client configuration: verifies servers against the
    /// current CA roots and, when client certificates are required,
    /// presents the current certificate. No ALPN (HTTP/1.1); no session
    /// resumption. Hand it to [`connector::tls`](crate::connector::tls)
    /// (and so to the Raft transport and the forwarders).
    ///
    /// ```no_run
    /// use catga_cluster_core::connector;
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    /// use hyper_util::client::legacy::connect::HttpConnector;
    ///
    /// let tls = ClusterTls::load(TlsFiles::new("node.pem", "node.key", "ca.pem"), "node0")?;
    /// let connector = connector::tls(HttpConnector::new(), tls.client_config());
    /// # let _ = connector;
    /// # Ok::<(), catga_cluster_core::tls::TlsError>(())
    /// ```
    pub fn client_config(&self) -> Arc<ClientConfig> {
        self.inner.client_config.clone()
    }

    /// Whether client certificates are required: nodes present theirs and
    /// the HTTP layer demands a member's certificate on protected routes.
    ///
    /// ```no_run
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    ///
    /// let files = TlsFiles::new("node.pem", "node.key", "ca.pem").require_client_certificate(false);
    /// assert!(!ClusterTls::load(files, "node0")?.requires_client_certificate());
    /// # Ok::<(), catga_cluster_core::tls::TlsError>(())
    /// ```
    pub fn requires_client_certificate(&self) -> bool {
        self.inner.files.require_client_certificate
    }

    /// Reads the files again. If their contents changed and the new set
    /// passes the checks of [`load`](Self::load), it replaces the material
    /// for all later handshakes and the result is `Ok(true)`; unchanged
    /// files give `Ok(false)`. Files that fail the checks leave the current
    /// material in place and give the error (log it: the node keeps serving
    /// its previous certificate).
    ///
    /// This reads files and blocks; call it from a blocking context, or use
    /// [`spawn_reloader`](Self::spawn_reloader).
    ///
    /// ```no_run
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    ///
    /// let tls = ClusterTls::load(TlsFiles::new("node.pem", "node.key", "ca.pem"), "node0")?;
    /// match tls.reload() {
    ///     Ok(true) => tracing::info!("new certificate in use"),
    ///     Ok(false) => {}
    ///     Err(error) => tracing::warn!(%error, "kept the previous certificate"),
    /// }
    /// # Ok::<(), catga_cluster_core::tls::TlsError>(())
    /// ```
    pub fn reload(&self) -> Result<bool, TlsError> {
        let inner = &*self.inner;
        let _reloading = inner
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let contents = Contents::read(&inner.files)?;
        if contents == inner.current.get().contents {
            return Ok(false);
        }
        let material = Material::build(&inner.files, contents, &inner.host, &inner.provider)?;
        inner.current.set(material);
        Ok(true)
    }

    /// Spawns a Tokio task that calls [`reload`](Self::reload) every
    /// `every` (kept between 100 ms and a year), logging a swap at info and refused files
    /// at warn with the reason (target `catga_cluster::tls`; the same
    /// refusal again is logged at debug). The task stops when the returned
    /// guard is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime, like [`tokio::spawn`].
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), catga_cluster_core::tls::TlsError> {
    /// use std::time::Duration;
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    ///
    /// let tls = ClusterTls::load(TlsFiles::new("node.pem", "node.key", "ca.pem"), "node0")?;
    /// let _reloader = tls.spawn_reloader(Duration::from_secs(10));
    /// # Ok(()) }
    /// ```
    pub fn spawn_reloader(&self, every: Duration) -> ReloadGuard {
        reload::spawn(self.clone(), every)
    }

    /// Whether `chain` (end-entity certificate first, as rustls reports a
    /// peer's certificates) chains to the current CA roots, is valid now,
    /// and its end-entity certificate is valid for `host` (a DNS name or IP
    /// address; IPv6 brackets are accepted) — and, when client certificates
    /// are required, may be used as a client certificate.
    ///
    /// The HTTP layer uses it to tell whether a client certificate belongs
    /// to a current cluster member: true for the host of some member's
    /// endpoint.
    ///
    /// ```no_run
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    /// use catga_cluster_core::tls::rustls::pki_types::CertificateDer;
    ///
    /// let tls = ClusterTls::load(TlsFiles::new("node.pem", "node.key", "ca.pem"), "node0")?;
    /// # let peer_chain: Vec<CertificateDer<'static>> = Vec::new();
    /// let member_hosts = ["node1", "node2"];
    /// let is_member = member_hosts
    ///     .iter()
    ///     .any(|host| tls.certificate_valid_for(&peer_chain, host));
    /// # let _ = is_member;
    /// # Ok::<(), catga_cluster_core::tls::TlsError>(())
    /// ```
    pub fn certificate_valid_for(&self, chain: &[CertificateDer<'_>], host: &str) -> bool {
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return false;
        };
        let Some(name) = server_name(host) else {
            return false;
        };
        let material = self.inner.current.get();
        let now = UnixTime::now();
        if material
            .server_verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], now)
            .is_err()
        {
            return false;
        }
        !self.requires_client_certificate()
            || material
                .client_verifier
                .verify_client_cert(end_entity, intermediates, now)
                .is_ok()
    }
}

impl fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = &self.inner.files;
        f.debug_struct("ClusterTls")
            .field("certificate", &files.certificate)
            .field("key", &files.key)
            .field("ca_certificates", &files.ca_certificates)
            .field(
                "require_client_certificate",
                &files.require_client_certificate,
            )
            .field("host", &self.inner.host.to_str())
            .finish()
    }
}

/// A DNS name or IP address (IPv6 with or without brackets) as rustls
/// checks certificates against it.
fn server_name(host: &str) -> Option<ServerName<'static>> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(host.to_owned()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shareable_across_tasks() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ClusterTls>();
        assert_send_sync::<TlsError>();
        assert_send_sync::<ReloadGuard>();
    }

    #[test]
    fn server_names() {
        assert!(matches!(
            server_name("node0.example"),
            Some(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("10.0.0.1"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("::1"), Some(ServerName::IpAddress(_))));
        assert!(matches!(
            server_name("[::1]"),
            Some(ServerName::IpAddress(_))
        ));
        for bad in ["", "a b", "node0:5000", "[node0]x"] {
            assert!(server_name(bad).is_none(), "{bad}");
        }
    }
}
