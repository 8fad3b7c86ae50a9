//! The names of the TLS settings, shared by the configuration loader (which
//! reads them) and the TLS material (whose errors name them), so a message
//! always names the key a user sets.

/// `Cluster.Tls`, the section of the TLS settings.
#[cfg(feature = "config")]
pub(crate) const TLS: &str = "Cluster.Tls";
/// The node's certificate chain (PEM).
pub(crate) const TLS_CERTIFICATE_PATH: &str = "Cluster.Tls.CertificatePath";
/// The certificate's private key (PEM).
pub(crate) const TLS_KEY_PATH: &str = "Cluster.Tls.KeyPath";
/// The CA certificates peers must chain to (PEM).
pub(crate) const TLS_CA_CERTIFICATE_PATH: &str = "Cluster.Tls.CaCertificatePath";
/// Whether peers present client certificates.
#[cfg(feature = "config")]
pub(crate) const TLS_REQUIRE_CLIENT_CERTIFICATE: &str = "Cluster.Tls.RequireClientCertificate";
/// How often the files are checked for changes.
#[cfg(feature = "config")]
pub(crate) const TLS_RELOAD_INTERVAL: &str = "Cluster.Tls.ReloadInterval";
