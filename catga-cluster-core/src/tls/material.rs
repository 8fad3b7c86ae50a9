//! Reading and checking one version of a node's TLS files: the certificate
//! chain, its private key, the CA roots and the verifiers built from them.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject, SectionKind};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, InconsistentKeys, RootCertStore};

use super::{TlsError, TlsFiles};
use crate::keys;

/// The bytes of the three files, compared to tell whether they changed.
#[derive(PartialEq, Eq)]
pub(super) struct Contents {
    certificate: Vec<u8>,
    key: Vec<u8>,
    ca_certificates: Vec<u8>,
}

impl Contents {
    /// Reads the three files.
    pub(super) fn read(files: &TlsFiles) -> Result<Contents, TlsError> {
        let read = |key: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                key,
                path: path.to_path_buf(),
                source,
            })
        };
        Ok(Contents {
            certificate: read(keys::TLS_CERTIFICATE_PATH, &files.certificate)?,
            key: read(keys::TLS_KEY_PATH, &files.key)?,
            ca_certificates: read(keys::TLS_CA_CERTIFICATE_PATH, &files.ca_certificates)?,
        })
    }
}

/// One checked version of the files: what the handshakes use.
pub(super) struct Material {
    /// What the material was built from.
    pub(super) contents: Contents,
    /// This node's chain and signing key.
    pub(super) certified_key: Arc<CertifiedKey>,
    /// Verifies peers' server certificates against the CA roots.
    pub(super) server_verifier: Arc<WebPkiServerVerifier>,
    /// Verifies peers' client certificates against the CA roots (clients
    /// without a certificate are let through).
    pub(super) client_verifier: Arc<dyn ClientCertVerifier>,
}

impl Material {
    /// Parses `contents` and checks that the key matches the certificate,
    /// that the chain leads to the CA roots, is valid now, is valid for
    /// `host` and, when client certificates are required, may be used as a
    /// client certificate.
    pub(super) fn build(
        files: &TlsFiles,
        contents: Contents,
        host: &ServerName<'static>,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Material, TlsError> {
        let chain = certificates(
            keys::TLS_CERTIFICATE_PATH,
            &files.certificate,
            &contents.certificate,
        )?;
        let key = private_key(&files.key, &contents.key)?;
        let roots = roots(&files.ca_certificates, &contents.ca_certificates)?;

        let signing_key =
            provider
                .key_provider
                .load_private_key(key)
                .map_err(|e| TlsError::UnsupportedKey {
                    key: keys::TLS_KEY_PATH,
                    path: files.key.clone(),
                    reason: e.to_string(),
                })?;
        let certified_key = CertifiedKey::new(chain, signing_key);
        match certified_key.keys_match() {
            // A key that cannot tell its public half (none of ring's) is
            // checked by the first handshake instead, as rustls does.
            Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
                return Err(TlsError::KeyMismatch {
                    key: keys::TLS_KEY_PATH,
                    path: files.key.clone(),
                    certificate_path: files.certificate.clone(),
                })
            }
            Err(error) => return Err(certificate_error(files, host, "server", error)),
        }

        let roots = Arc::new(roots);
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError::Setup {
                    reason: e.to_string(),
                })?;
        let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| TlsError::Setup {
                reason: e.to_string(),
            })?;

        // This node's own chain must pass what its peers will check.
        let (end_entity, intermediates) = certified_key
            .cert
            .split_first()
            .ok_or_else(|| no_certificate(&files.certificate))?;
        let now = UnixTime::now();
        server_verifier
            .verify_server_cert(end_entity, intermediates, host, &[], now)
            .map_err(|e| certificate_error(files, host, "server", e))?;
        if files.require_client_certificate {
            client_verifier
                .verify_client_cert(end_entity, intermediates, now)
                .map_err(|e| certificate_error(files, host, "client", e))?;
        }

        Ok(Material {
            contents,
            certified_key: Arc::new(certified_key),
            server_verifier,
            client_verifier,
        })
    }
}

/// The PEM sections of a file.
fn sections(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<(SectionKind, Vec<u8>)>, TlsError> {
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            key,
            path: path.to_path_buf(),
            reason: format!("is not valid PEM: {}", describe_pem_error(&e)),
        })?;
    if sections.is_empty() {
        return Err(TlsError::Pem {
            key,
            path: path.to_path_buf(),
            reason: "is not PEM: it has no -----BEGIN ...----- section".to_owned(),
        });
    }
    Ok(sections)
}

/// Says what is wrong without quoting the file (a key file's lines are
/// secret).
fn describe_pem_error(error: &pem::Error) -> &'static str {
    match error {
        pem::Error::MissingSectionEnd { .. } => "a section has no -----END ...----- line",
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN ...----- line is malformed",
        pem::Error::Base64Decode(_) => "a section is not valid base64",
        pem::Error::SectionTooLarge => "a section is too large",
        _ => "it cannot be parsed",
    }
}

/// The labels of the sections found, for "found: ..." in messages.
fn found(sections: &[(SectionKind, Vec<u8>)]) -> String {
    let mut labels: Vec<&str> = sections
        .iter()
        .map(|(kind, _)| match kind {
            SectionKind::Certificate => "CERTIFICATE",
            SectionKind::PublicKey => "PUBLIC KEY",
            SectionKind::RsaPrivateKey => "RSA PRIVATE KEY",
            SectionKind::PrivateKey => "PRIVATE KEY",
            SectionKind::EcPrivateKey => "EC PRIVATE KEY",
            SectionKind::Crl => "X509 CRL",
            SectionKind::Csr => "CERTIFICATE REQUEST",
            _ => "another kind",
        })
        .collect();
    labels.dedup();
    labels.join(", ")
}

/// The certificates of a file, in order. Other sections are ignored, so a
/// combined PEM (certificate and key in one file) is accepted.
fn certificates(
    key: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let sections = sections(key, path, bytes)?;
    let certificates: Vec<CertificateDer<'static>> = sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    if certificates.is_empty() {
        return Err(TlsError::Pem {
            key,
            path: path.to_path_buf(),
            reason: format!("holds no certificate (found: {})", found(&sections)),
        });
    }
    Ok(certificates)
}

fn no_certificate(path: &Path) -> TlsError {
    TlsError::Pem {
        key: keys::TLS_CERTIFICATE_PATH,
        path: path.to_path_buf(),
        reason: "holds no certificate".to_owned(),
    }
}

/// The one private key of the key file (PKCS#8, PKCS#1 or SEC1).
fn private_key(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key = keys::TLS_KEY_PATH;
    let sections = sections(key, path, bytes)?;
    let found_kinds = found(&sections);
    let mut keys: Vec<PrivateKeyDer<'static>> = sections
        .into_iter()
        .filter_map(|(kind, der)| PrivateKeyDer::from_pem(kind, der))
        .collect();
    match keys.len() {
        1 => Ok(keys.remove(0)),
        0 => Err(TlsError::Pem {
            key,
            path: path.to_path_buf(),
            reason: format!("holds no private key (found: {found_kinds})"),
        }),
        n => Err(TlsError::Pem {
            key,
            path: path.to_path_buf(),
            reason: format!("holds {n} private keys; keep only the certificate's"),
        }),
    }
}

/// The trust anchors of the CA file: every certificate in it must be one.
fn roots(path: &Path, bytes: &[u8]) -> Result<RootCertStore, TlsError> {
    let key = keys::TLS_CA_CERTIFICATE_PATH;
    let mut roots = RootCertStore::empty();
    for (i, certificate) in certificates(key, path, bytes)?.into_iter().enumerate() {
        roots
            .add(certificate)
            .map_err(|e| TlsError::InvalidCaCertificate {
                key,
                path: path.to_path_buf(),
                index: i + 1,
                reason: e.to_string(),
            })?;
    }
    Ok(roots)
}

/// Turns rustls' verdict on this node's own chain into an error naming the
/// certificate file.
fn certificate_error(
    files: &TlsFiles,
    host: &ServerName<'static>,
    purpose: &'static str,
    error: rustls::Error,
) -> TlsError {
    let key = keys::TLS_CERTIFICATE_PATH;
    let path = files.certificate.clone();
    let rustls::Error::InvalidCertificate(certificate_error) = error else {
        return TlsError::Rejected {
            key,
            path,
            source: error,
        };
    };
    match certificate_error {
        CertificateError::Expired => TlsError::Expired {
            key,
            path,
            not_after: None,
            now: None,
        },
        CertificateError::ExpiredContext { time, not_after } => TlsError::Expired {
            key,
            path,
            not_after: Some(system_time(not_after)),
            now: Some(system_time(time)),
        },
        CertificateError::NotValidYet => TlsError::NotYetValid {
            key,
            path,
            not_before: None,
            now: None,
        },
        CertificateError::NotValidYetContext { time, not_before } => TlsError::NotYetValid {
            key,
            path,
            not_before: Some(system_time(not_before)),
            now: Some(system_time(time)),
        },
        CertificateError::NotValidForName => TlsError::NotValidForHost {
            key,
            path,
            host: host.to_str().into_owned(),
            presented: Vec::new(),
        },
        CertificateError::NotValidForNameContext { presented, .. } => TlsError::NotValidForHost {
            key,
            path,
            host: host.to_str().into_owned(),
            presented: presented.iter().map(|name| bare_name(name)).collect(),
        },
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            TlsError::NotIssuedByCa {
                key,
                path,
                ca_key: keys::TLS_CA_CERTIFICATE_PATH,
                ca_path: files.ca_certificates.clone(),
            }
        }
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            TlsError::WrongPurpose { key, path, purpose }
        }
        other => TlsError::Rejected {
            key,
            path,
            source: rustls::Error::InvalidCertificate(other),
        },
    }
}

/// `node0` for webpki's `DnsName("node0")`, `10.0.0.1` for
/// `IpAddress(10.0.0.1)`; other forms as they are.
fn bare_name(presented: &str) -> String {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map(|inner| inner.trim_matches('"'))
        .unwrap_or(presented)
        .to_owned()
}

fn system_time(time: UnixTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(time.as_secs())
}

#[cfg(test)]
mod tests {
    use super::bare_name;

    #[test]
    fn presented_names_lose_their_debug_wrapping() {
        assert_eq!(bare_name("DnsName(\"node0.test\")"), "node0.test");
        assert_eq!(bare_name("IpAddress(10.0.0.1)"), "10.0.0.1");
        assert_eq!(bare_name("IpAddress(::1)"), "::1");
        assert_eq!(bare_name("node0"), "node0");
    }
}
