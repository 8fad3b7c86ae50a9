//! [`TlsConfig`]: where a node's certificate, key and CA live (`Cluster.Tls`).

use std::path::PathBuf;
use std::time::Duration;

use super::error::ConfigError;
use crate::keys;

/// Where a node's TLS material lives: the `Cluster.Tls` settings.
///
/// All three files are PEM. The certificate file holds this node's
/// certificate chain, end-entity certificate first; the key file its private
/// key (PKCS#8, PKCS#1 or SEC1); the CA file the certificate(s) of the
/// authority that signs the nodes' certificates. **The CA file is required**:
/// peers verify each other's certificates against it, and no public roots are
/// bundled or trusted. During a CA rotation it holds the old and the new CA.
///
/// Relative paths are resolved against the working directory of the process.
/// With the `tls` feature, `ClusterTls::from_config` loads the files and
/// checks them; the files are read again every
/// [`reload_interval`](Self::reload_interval), so renewed certificates are
/// picked up without a restart.
///
/// ```
/// use std::time::Duration;
/// use catga_cluster_core::config::TlsConfig;
///
/// let tls = TlsConfig::new("/etc/catga/node.pem", "/etc/catga/node.key", "/etc/catga/ca.pem")
///     .require_client_certificate(false)
///     .reload_interval(Duration::from_secs(60));
/// assert!(!tls.require_client_certificate);
/// assert_eq!(tls.reload_interval, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsConfig {
    /// The node's certificate chain (`Cluster.Tls.CertificatePath`).
    pub certificate_path: PathBuf,
    /// The certificate's private key (`Cluster.Tls.KeyPath`).
    pub key_path: PathBuf,
    /// The CA certificates the nodes' certificates chain to
    /// (`Cluster.Tls.CaCertificatePath`).
    pub ca_certificate_path: PathBuf,
    /// Whether nodes present their certificate as a client certificate to
    /// peers, and protected routes demand a member's certificate
    /// (`Cluster.Tls.RequireClientCertificate`, default `true`).
    pub require_client_certificate: bool,
    /// How often the files are checked for changes
    /// (`Cluster.Tls.ReloadInterval`, default 10 s).
    pub reload_interval: Duration,
}

impl TlsConfig {
    /// The default [`reload_interval`](Self::reload_interval): 10 s.
    pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

    /// TLS with the given certificate chain, key and CA files, client
    /// certificates required and the default reload interval.
    ///
    /// ```
    /// use catga_cluster_core::config::TlsConfig;
    ///
    /// let tls = TlsConfig::new("node.pem", "node.key", "ca.pem");
    /// assert!(tls.require_client_certificate);
    /// assert_eq!(tls.reload_interval, TlsConfig::DEFAULT_RELOAD_INTERVAL);
    /// ```
    pub fn new(
        certificate_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        ca_certificate_path: impl Into<PathBuf>,
    ) -> Self {
        TlsConfig {
            certificate_path: certificate_path.into(),
            key_path: key_path.into(),
            ca_certificate_path: ca_certificate_path.into(),
            require_client_certificate: true,
            reload_interval: Self::DEFAULT_RELOAD_INTERVAL,
        }
    }

    /// Sets [`require_client_certificate`](Self::require_client_certificate).
    ///
    /// ```
    /// use catga_cluster_core::config::TlsConfig;
    ///
    /// let tls = TlsConfig::new("node.pem", "node.key", "ca.pem").require_client_certificate(false);
    /// assert!(!tls.require_client_certificate);
    /// ```
    pub fn require_client_certificate(mut self, require: bool) -> Self {
        self.require_client_certificate = require;
        self
    }

    /// Sets [`reload_interval`](Self::reload_interval).
    ///
    /// ```
    /// use std::time::Duration;
    /// use catga_cluster_core::config::TlsConfig;
    ///
    /// let tls = TlsConfig::new("node.pem", "node.key", "ca.pem").reload_interval(Duration::from_secs(1));
    /// assert_eq!(tls.reload_interval, Duration::from_secs(1));
    /// ```
    pub fn reload_interval(mut self, every: Duration) -> Self {
        self.reload_interval = every;
        self
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, path) in [
            (keys::TLS_CERTIFICATE_PATH, &self.certificate_path),
            (keys::TLS_KEY_PATH, &self.key_path),
            (keys::TLS_CA_CERTIFICATE_PATH, &self.ca_certificate_path),
        ] {
            if path.as_os_str().is_empty() {
                return Err(ConfigError::validation(key, "must not be empty"));
            }
        }
        if self.reload_interval.is_zero() {
            return Err(ConfigError::validation(
                keys::TLS_RELOAD_INTERVAL,
                "must be greater than zero",
            ));
        }
        Ok(())
    }
}
