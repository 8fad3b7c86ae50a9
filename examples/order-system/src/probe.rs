//! A health check for containers whose image has no HTTP client: what
//! `order-system probe URL --ca FILE` does.
//!
//! [`get`] sends `GET URL` and reads the status and the start of the body.
//! An `https://` URL is verified against the roots in `--ca` (the cluster's
//! CA); `--cert` and `--key` present a client certificate to a server that
//! asks for one. The whole exchange, connection and TLS handshake included,
//! is bounded by `--timeout`. [`run`] exits with code 0 on a 2xx answer, 1
//! on any other answer or none, 2 for bad arguments.
//!
//! ```no_run
//! use std::time::Duration;
//! use order_system::probe::{self, Options};
//!
//! # async fn check() -> Result<(), probe::ProbeError> {
//! let answer = probe::get(&Options {
//!     url: "https://localhost:5000/health/ready".to_owned(),
//!     ca: Some("certs/ca.pem".into()),
//!     cert: None,
//!     key: None,
//!     timeout: Duration::from_secs(3),
//! })
//! .await?;
//! assert!(answer.status.is_success());
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use catga_cluster_core::connector;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};

/// How much of the body [`Answer::body`] keeps.
pub const BODY_KEPT: usize = 4096;

/// What [`get`] asks.
#[derive(Clone, Debug)]
pub struct Options {
    /// The `http://` or `https://` URL.
    pub url: String,
    /// The CA certificates (PEM) an `https://` server's certificate must
    /// chain to; required for `https://`.
    pub ca: Option<PathBuf>,
    /// A client certificate chain to present (PEM), with `key`.
    pub cert: Option<PathBuf>,
    /// The private key of `cert` (PEM).
    pub key: Option<PathBuf>,
    /// How long the whole exchange may take.
    pub timeout: Duration,
}

/// The server's answer.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The first [`BODY_KEPT`] bytes of the body.
    pub body: Bytes,
}

/// Why [`get`] got no answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The arguments cannot work.
    #[error("{0}")]
    Usage(String),
    /// A certificate or key file cannot be used.
    #[error("{}: {reason}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer within the timeout.
    #[error("{url}: no answer within {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The URL.
        url: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The request failed: no connection, a refused certificate, a broken
    /// answer.
    #[error("{url}: {reason}")]
    Failed {
        /// The URL.
        url: String,
        /// What failed, with its causes.
        reason: String,
    },
}

impl ProbeError {
    /// Whether the arguments (or the files they name) are at fault: the
    /// command exits with code 2 then, as for a bad flag.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, ProbeError::Usage(_) | ProbeError::File { .. })
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> ProbeError {
    ProbeError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn parse_url(url: &str) -> Result<Uri, ProbeError> {
    let refuse = |what: String| {
        ProbeError::Usage(format!(
            "`{url}` {what}; give an http:// or https:// URL with a host, like \
             https://localhost:5000/health/ready"
        ))
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| refuse(format!("is not a URL ({e})")))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(refuse("cannot be probed".to_owned()));
    }
    Ok(uri)
}

/// Every certificate in the PEM file at `path`: at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e))?;
    if certs.is_empty() {
        return Err(file_error(path, "no PEM certificate in it"));
    }
    Ok(certs)
}

/// The TLS client configuration of `options`: its roots, and its client
/// certificate if any.
fn tls_config(ca: &Path, options: &Options) -> Result<Arc<ClientConfig>, ProbeError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|e| file_error(ca, format!("not a usable CA certificate: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Usage(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let config = match (&options.cert, &options.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates(cert)?;
            let private = PrivateKeyDer::from_pem_file(key).map_err(|e| file_error(key, e))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| {
                ProbeError::Usage(format!(
                    "--cert {} with --key {}: {e}",
                    cert.display(),
                    key.display()
                ))
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(ProbeError::Usage(
                "--cert and --key go together: give both or neither".to_owned(),
            ))
        }
    };
    Ok(Arc::new(config))
}

/// An error and its causes, as one line.
fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Sends `GET options.url`; see the [module docs](self). Any status is an
/// answer; the caller decides what is healthy.
pub async fn get(options: &Options) -> Result<Answer, ProbeError> {
    if options.timeout.is_zero() {
        return Err(ProbeError::Usage("--timeout must be above zero".to_owned()));
    }
    let uri = parse_url(&options.url)?;
    let connector = match (&options.ca, uri.scheme_str()) {
        (Some(ca), _) => connector::tls(HttpConnector::new(), tls_config(ca, options)?),
        (None, Some("https")) => {
            return Err(ProbeError::Usage(format!(
                "`{}` is https: give --ca FILE, the CA certificate the server's certificate \
                 chains to",
                options.url
            )))
        }
        (None, _) if options.cert.is_some() || options.key.is_some() => {
            return Err(ProbeError::Usage(
                "--cert and --key are for https:// with --ca".to_owned(),
            ))
        }
        (None, _) => connector::plain(HttpConnector::new()),
    };
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let request = Request::get(uri)
        .body(Empty::new())
        .map_err(|e| ProbeError::Usage(format!("`{}`: {e}", options.url)))?;
    let failed = |reason: String| ProbeError::Failed {
        url: options.url.clone(),
        reason,
    };
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|e| failed(with_causes(&e)))?;
        let status = response.status();
        let mut body = response.into_body();
        let mut kept = BytesMut::new();
        while kept.len() < BODY_KEPT {
            let Some(frame) = body.frame().await else {
                break;
            };
            let frame = frame.map_err(|e| failed(with_causes(&e)))?;
            if let Ok(data) = frame.into_data() {
                let room = BODY_KEPT - kept.len();
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
        }
        Ok(Answer {
            status,
            body: kept.freeze(),
        })
    };
    tokio::time::timeout(options.timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ProbeError::Timeout {
                url: options.url.clone(),
                timeout: options.timeout,
            })
        })
}

/// Runs `order-system probe`: prints the status and the start of the body,
/// and exits with code 0 on a 2xx answer, 1 on another answer or none, 2
/// for bad arguments.
#[allow(clippy::print_stdout)] // the answer is the command's output
pub fn run(options: &Options) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(get(options)) {
        Ok(answer) => {
            println!("{}", answer.status);
            if !answer.body.is_empty() {
                println!("{}", String::from_utf8_lossy(&answer.body));
            }
            if answer.status.is_success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            if e.is_bad_input() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::Response;
    use http_body_util::Full;
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rustls::server::WebPkiClientVerifier;
    use rustls::ServerConfig;
    use tokio::net::TcpListener;

    use super::*;
    use crate::certs::{self, Existing, Layout};

    /// A development PKI for two nodes in a temporary directory.
    fn pki() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        certs::write(&certs::Options {
            out: dir.path().to_path_buf(),
            nodes: 2,
            hosts: Vec::new(),
            days: 1,
            existing: Existing::Refuse,
        })
        .unwrap();
        let layout = Layout::new(dir.path(), 2);
        (dir, layout)
    }

    async fn answer(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
        let (status, body) = match request.uri().path() {
            "/ok" => (StatusCode::OK, "fine"),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "down"),
        };
        Ok(Response::builder()
            .status(status)
            .body(Full::from(body))
            .unwrap())
    }

    /// Serves `/ok` (200) and everything else (503) over HTTPS with node 0's
    /// certificate, requiring a client certificate when `mutual`; returns
    /// the port.
    async fn https_server(layout: &Layout, mutual: bool) -> u16 {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if mutual {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(layout.ca_cert()).unwrap())
                .unwrap();
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = builder
            .with_single_cert(
                vec![CertificateDer::from_pem_file(layout.node_cert(0)).unwrap()],
                PrivateKeyDer::from_pem_file(layout.node_key(0)).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service_fn(answer))
                        .await;
                });
            }
        });
        port
    }

    fn options(url: String, ca: Option<PathBuf>) -> Options {
        Options {
            url,
            ca,
            cert: None,
            key: None,
            timeout: Duration::from_secs(10),
        }
    }

    #[tokio::test]
    async fn a_2xx_and_a_503_over_https_are_answers() {
        let (_dir, layout) = pki();
        let port = https_server(&layout, false).await;
        let ca = Some(layout.ca_cert());
        let ok = get(&options(format!("https://localhost:{port}/ok"), ca.clone()))
            .await
            .unwrap();
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.body, "fine");
        let down = get(&options(format!("https://127.0.0.1:{port}/health"), ca))
            .await
            .unwrap();
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn a_server_from_another_ca_is_refused() {
        let (_dir, layout) = pki();
        let (_other_dir, other) = pki();
        let port = https_server(&layout, false).await;
        let err = get(&options(
            format!("https://127.0.0.1:{port}/ok"),
            Some(other.ca_cert()),
        ))
        .await
        .unwrap_err();
        assert!(!err.is_bad_input(), "{err:?}");
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    }

    #[tokio::test]
    async fn mutual_tls_needs_the_client_certificate() {
        let (_dir, layout) = pki();
        let port = https_server(&layout, true).await;
        let mut opts = options(
            format!("https://127.0.0.1:{port}/ok"),
            Some(layout.ca_cert()),
        );
        assert!(get(&opts).await.is_err(), "no client certificate");
        opts.cert = Some(layout.node_cert(1));
        opts.key = Some(layout.node_key(1));
        assert_eq!(get(&opts).await.unwrap().status, StatusCode::OK);
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        // Connections complete in the kernel's backlog; nobody speaks TLS.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let (_dir, layout) = pki();
        let mut opts = options(
            format!("https://127.0.0.1:{port}/ok"),
            Some(layout.ca_cert()),
        );
        opts.timeout = Duration::from_millis(200);
        let err = get(&opts).await.unwrap_err();
        assert!(matches!(err, ProbeError::Timeout { .. }), "{err:?}");
        assert!(err.to_string().contains("no answer within 200ms"), "{err}");
    }

    #[tokio::test]
    async fn bad_arguments_are_refused_clearly() {
        let (dir, layout) = pki();
        let refused = |opts: Options| async move {
            let err = get(&opts).await.unwrap_err();
            assert!(err.is_bad_input(), "{err:?}");
            err.to_string()
        };
        let url = "https://localhost:5000/health/ready".to_owned();
        let text = refused(options(url.clone(), None)).await;
        assert!(text.contains("is https: give --ca FILE"), "{text}");
        let text = refused(options("localhost:5000/x".into(), None)).await;
        assert!(text.contains("give an http:// or https:// URL"), "{text}");
        let text = refused(options("ftp://host/x".into(), None)).await;
        assert!(text.contains("give an http:// or https:// URL"), "{text}");

        let missing = dir.path().join("missing.pem");
        let text = refused(options(url.clone(), Some(missing.clone()))).await;
        assert!(text.starts_with(&missing.display().to_string()), "{text}");
        let text = refused(options(url.clone(), Some(layout.node_key(0)))).await;
        assert!(text.contains("no PEM certificate"), "{text}");

        let mut opts = options(url.clone(), Some(layout.ca_cert()));
        opts.cert = Some(layout.node_cert(0));
        let text = refused(opts.clone()).await;
        assert!(text.contains("--cert and --key go together"), "{text}");
        opts.key = Some(layout.node_key(1));
        let text = refused(opts.clone()).await;
        assert!(text.contains("--cert") && text.contains("--key"), "{text}");
        opts.key = Some(layout.node_key(0));
        opts.timeout = Duration::ZERO;
        let text = refused(opts).await;
        assert!(text.contains("--timeout must be above zero"), "{text}");
    }
}
