//! [`TlsError`]: why TLS material was refused.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Why a node's TLS files could not be loaded, or a new version of them was
/// refused by [`ClusterTls::reload`](super::ClusterTls::reload).
///
/// Every variant about a file names the configuration key that points at it
/// (such as `Cluster.Tls.KeyPath`) and the file's path, and says what is
/// wrong. Messages never contain key material.
///
/// ```
/// use catga_cluster_core::tls::{ClusterTls, TlsError, TlsFiles};
///
/// let dir = std::env::temp_dir().join("catga-tls-error-doc");
/// let files = TlsFiles::new(dir.join("node.pem"), dir.join("node.key"), dir.join("ca.pem"));
/// let err = ClusterTls::load(files, "node0").unwrap_err();
/// assert!(matches!(err, TlsError::Read { .. }));
/// assert_eq!(err.key(), Some("Cluster.Tls.CertificatePath"));
/// assert!(err.to_string().starts_with("Cluster.Tls.CertificatePath: cannot read `"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file is missing or cannot be read.
    #[error("{key}: cannot read `{}`: {source}", path.display())]
    Read {
        /// The configuration key of the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file is not PEM, or holds no certificate or no private key (or
    /// more than one key).
    #[error("{key}: `{}` {reason}", path.display())]
    Pem {
        /// The configuration key of the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, such as "holds no private key (found: CERTIFICATE)".
        reason: String,
    },
    /// The private key is of a kind or size the crypto provider cannot sign
    /// with.
    #[error("{key}: the private key in `{}` cannot be used: {reason}", path.display())]
    UnsupportedKey {
        /// The configuration key of the key file.
        key: &'static str,
        /// The key file.
        path: PathBuf,
        /// Why the provider refused it.
        reason: String,
    },
    /// A certificate in the CA file cannot be a trust anchor.
    #[error("{key}: certificate {index} in `{}` is not a usable CA certificate: {reason}", path.display())]
    InvalidCaCertificate {
        /// The configuration key of the CA file.
        key: &'static str,
        /// The CA file.
        path: PathBuf,
        /// Which certificate of the file, counting from 1.
        index: usize,
        /// Why it was refused.
        reason: String,
    },
    /// The private key does not belong to the certificate.
    #[error(
        "{key}: the private key in `{}` does not match the certificate in `{}`",
        path.display(),
        certificate_path.display()
    )]
    KeyMismatch {
        /// The configuration key of the key file.
        key: &'static str,
        /// The key file.
        path: PathBuf,
        /// The certificate file.
        certificate_path: PathBuf,
    },
    /// The certificate's validity period has ended.
    #[error("{key}: the certificate in `{}` {}", path.display(), Validity::Expired { not_after: *not_after, now: *now })]
    Expired {
        /// The configuration key of the certificate file.
        key: &'static str,
        /// The certificate file.
        path: PathBuf,
        /// The certificate's `notAfter`, when known.
        not_after: Option<SystemTime>,
        /// The time it was checked at, when known.
        now: Option<SystemTime>,
    },
    /// The certificate's validity period has not begun.
    #[error("{key}: the certificate in `{}` {}", path.display(), Validity::NotYetValid { not_before: *not_before, now: *now })]
    NotYetValid {
        /// The configuration key of the certificate file.
        key: &'static str,
        /// The certificate file.
        path: PathBuf,
        /// The certificate's `notBefore`, when known.
        not_before: Option<SystemTime>,
        /// The time it was checked at, when known.
        now: Option<SystemTime>,
    },
    /// The certificate is not valid for the host of this node's advertised
    /// endpoint, so peers would refuse it.
    #[error(
        "{key}: the certificate in `{}` is not valid for `{host}`, the host of this node's endpoint{}",
        path.display(),
        presented_names(presented)
    )]
    NotValidForHost {
        /// The configuration key of the certificate file.
        key: &'static str,
        /// The certificate file.
        path: PathBuf,
        /// The host it was checked for.
        host: String,
        /// The names the certificate is valid for, when known.
        presented: Vec<String>,
    },
    /// The certificate does not chain to a certificate of the CA file.
    #[error(
        "{key}: the certificate in `{}` does not chain to a CA certificate in `{}` ({ca_key})",
        path.display(),
        ca_path.display()
    )]
    NotIssuedByCa {
        /// The configuration key of the certificate file.
        key: &'static str,
        /// The certificate file.
        path: PathBuf,
        /// The configuration key of the CA file.
        ca_key: &'static str,
        /// The CA file.
        ca_path: PathBuf,
    },
    /// The certificate's extended key usage does not allow the use this node
    /// makes of it: `"server"` (serving TLS) or `"client"` (presenting it to
    /// peers when client certificates are required).
    #[error(
        "{key}: the certificate in `{}` may not be used for TLS {purpose} authentication (its extended key usage lacks {}Auth)",
        path.display(),
        purpose
    )]
    WrongPurpose {
        /// The configuration key of the certificate file.
        key: &'static str,
        /// The certificate file.
        path: PathBuf,
        /// `"server"` or `"client"`.
        purpose: &'static str,
    },
    /// The certificate was refused for another reason (bad encoding, an
    /// unsupported signature algorithm, a CA certificate used as the node's
    /// own, …).
    #[error("{key}: the certificate in `{}` is refused: {source}", path.display())]
    Rejected {
        /// The configuration key of the certificate file.
        key: &'static str,
        /// The certificate file.
        path: PathBuf,
        /// rustls' verdict.
        #[source]
        source: rustls::Error,
    },
    /// The host given for this node is not a DNS name or IP address.
    #[error("`{host}` is not a DNS name or IP address a certificate can be valid for")]
    InvalidHost {
        /// The host as given.
        host: String,
    },
    /// rustls refused to build a configuration (not expected with the ring
    /// provider).
    #[error("cannot set up TLS: {reason}")]
    Setup {
        /// rustls' message.
        reason: String,
    },
}

impl TlsError {
    /// The configuration key of the file the error is about, if any.
    ///
    /// ```
    /// use catga_cluster_core::tls::TlsError;
    ///
    /// let err = TlsError::InvalidHost { host: "a b".to_owned() };
    /// assert_eq!(err.key(), None);
    /// ```
    pub fn key(&self) -> Option<&'static str> {
        match self {
            TlsError::Read { key, .. }
            | TlsError::Pem { key, .. }
            | TlsError::UnsupportedKey { key, .. }
            | TlsError::InvalidCaCertificate { key, .. }
            | TlsError::KeyMismatch { key, .. }
            | TlsError::Expired { key, .. }
            | TlsError::NotYetValid { key, .. }
            | TlsError::NotValidForHost { key, .. }
            | TlsError::NotIssuedByCa { key, .. }
            | TlsError::WrongPurpose { key, .. }
            | TlsError::Rejected { key, .. } => Some(key),
            TlsError::InvalidHost { .. } | TlsError::Setup { .. } => None,
        }
    }

    /// The file the error is about, if any.
    ///
    /// ```
    /// use std::path::Path;
    /// use catga_cluster_core::tls::{ClusterTls, TlsFiles};
    ///
    /// let files = TlsFiles::new("/nonexistent/node.pem", "/nonexistent/node.key", "/nonexistent/ca.pem");
    /// let err = ClusterTls::load(files, "node0").unwrap_err();
    /// assert_eq!(err.path(), Some(Path::new("/nonexistent/node.pem")));
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            TlsError::Read { path, .. }
            | TlsError::Pem { path, .. }
            | TlsError::UnsupportedKey { path, .. }
            | TlsError::InvalidCaCertificate { path, .. }
            | TlsError::KeyMismatch { path, .. }
            | TlsError::Expired { path, .. }
            | TlsError::NotYetValid { path, .. }
            | TlsError::NotValidForHost { path, .. }
            | TlsError::NotIssuedByCa { path, .. }
            | TlsError::WrongPurpose { path, .. }
            | TlsError::Rejected { path, .. } => Some(path),
            TlsError::InvalidHost { .. } | TlsError::Setup { .. } => None,
        }
    }
}

/// The validity part of the messages, with the dates when known.
enum Validity {
    Expired {
        not_after: Option<SystemTime>,
        now: Option<SystemTime>,
    },
    NotYetValid {
        not_before: Option<SystemTime>,
        now: Option<SystemTime>,
    },
}

impl fmt::Display for Validity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, date, now) = match *self {
            Validity::Expired { not_after, now } => ("expired", not_after.map(|d| ("on", d)), now),
            Validity::NotYetValid { not_before, now } => {
                ("is not valid yet", not_before.map(|d| ("before", d)), now)
            }
        };
        f.write_str(what)?;
        if let Some((preposition, date)) = date {
            write!(
                f,
                " {preposition} {}",
                humantime::format_rfc3339_seconds(date)
            )?;
        }
        if let Some(now) = now {
            write!(f, " (now {})", humantime::format_rfc3339_seconds(now))?;
        }
        Ok(())
    }
}

fn presented_names(presented: &[String]) -> String {
    if presented.is_empty() {
        String::new()
    } else {
        format!("; it is valid for {}", presented.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    #[test]
    fn validity_messages_carry_the_dates_when_known() {
        let at = |secs| Some(UNIX_EPOCH + Duration::from_secs(secs));
        let expired = TlsError::Expired {
            key: "K",
            path: PathBuf::from("/c.pem"),
            not_after: at(1_700_000_000),
            now: at(1_800_000_000),
        };
        assert_eq!(
            expired.to_string(),
            "K: the certificate in `/c.pem` expired on 2023-11-14T22:13:20Z (now 2027-01-15T08:00:00Z)"
        );
        let early = TlsError::NotYetValid {
            key: "K",
            path: PathBuf::from("/c.pem"),
            not_before: None,
            now: None,
        };
        assert_eq!(
            early.to_string(),
            "K: the certificate in `/c.pem` is not valid yet"
        );
        let host = TlsError::NotValidForHost {
            key: "K",
            path: PathBuf::from("/c.pem"),
            host: "node0".to_owned(),
            presented: vec!["node1".to_owned(), "10.0.0.1".to_owned()],
        };
        assert!(host
            .to_string()
            .ends_with("not valid for `node0`, the host of this node's endpoint; it is valid for node1, 10.0.0.1"));
    }
}
