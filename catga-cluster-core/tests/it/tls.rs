//! `ClusterTls`: loading and checking PEM files, handshakes over loopback
//! sockets with the configurations it builds, and reloads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use catga_cluster_core::tls::rustls::pki_types::{CertificateDer, ServerName};
use catga_cluster_core::tls::rustls::{ClientConfig, ServerConfig};
use catga_cluster_core::tls::{ClusterTls, TlsError, TlsFiles};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

// --- certificates --------------------------------------------------------------

/// A certificate authority made for the test.
struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    Ca {
        pem,
        issuer: Issuer::new(params, key),
    }
}

/// A node certificate and its key.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

/// A certificate for `names`, for server and client authentication, signed
/// by `ca`, after `tweak`.
fn leaf_with(ca: &Ca, names: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> Leaf {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name.push(DnType::CommonName, "node");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.serial_number = Some(SerialNumber::from(next_serial()));
    tweak(&mut params);
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

fn leaf(ca: &Ca, names: &[&str]) -> Leaf {
    leaf_with(ca, names, |_| {})
}

fn next_serial() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1_000);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

const A_NAMES: [&str; 3] = ["node-a.test", "localhost", "127.0.0.1"];
const B_NAMES: [&str; 3] = ["node-b.test", "localhost", "127.0.0.1"];

// --- files ---------------------------------------------------------------------

/// A node's TLS files in a temporary directory.
struct NodeFiles {
    dir: tempfile::TempDir,
}

impl NodeFiles {
    fn new(leaf: &Leaf, ca_pem: &str) -> Self {
        let files = NodeFiles {
            dir: tempfile::tempdir().unwrap(),
        };
        files.write_leaf(leaf);
        files.write_ca(ca_pem);
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self) -> TlsFiles {
        TlsFiles::new(
            self.path("node.pem"),
            self.path("node.key"),
            self.path("ca.pem"),
        )
    }

    /// Replaces a file whole (write elsewhere, rename into place), as a
    /// certificate manager should.
    fn write(&self, name: &str, contents: &str) {
        let staging = self.path(&format!(".{name}.new"));
        std::fs::write(&staging, contents).unwrap();
        std::fs::rename(&staging, self.path(name)).unwrap();
    }

    fn write_leaf(&self, leaf: &Leaf) {
        self.write("node.key", &leaf.key_pem);
        self.write("node.pem", &leaf.cert_pem);
    }

    fn write_ca(&self, ca_pem: &str) {
        self.write("ca.pem", ca_pem);
    }
}

fn load(files: &NodeFiles, host: &str) -> ClusterTls {
    ClusterTls::load(files.files(), host).unwrap()
}

fn load_err(files: TlsFiles, host: &str) -> TlsError {
    match ClusterTls::load(files, host) {
        Ok(tls) => panic!("expected an error, loaded {tls:?}"),
        Err(err) => err,
    }
}

/// Checks that the error names `key` and `path` first and contains every
/// fragment, in the crate's message style.
#[track_caller]
fn assert_names(err: &TlsError, key: &str, path: &Path, fragments: &[&str]) {
    let message = err.to_string();
    assert_eq!(err.key(), Some(key), "{message}");
    assert_eq!(err.path(), Some(path), "{message}");
    assert!(message.starts_with(&format!("{key}: ")), "{message}");
    assert!(
        message.contains(&path.display().to_string()),
        "`{message}` lacks the path"
    );
    for fragment in fragments {
        assert!(message.contains(fragment), "`{message}` lacks `{fragment}`");
    }
    assert!(!message.ends_with('.'), "{message}");
    assert!(!message.contains("PRIVATE KEY-----"), "{message}");
}

// --- handshakes ----------------------------------------------------------------

/// What each side of a handshake saw: the peer's certificates (`None` when
/// it sent none), or the error.
struct Handshake {
    server: Result<Option<Vec<CertificateDer<'static>>>, String>,
    client: Result<Vec<CertificateDer<'static>>, String>,
}

/// Runs one TLS handshake over a loopback socket, then exchanges a byte so
/// that a refusal by either side reaches both.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    server_name: &str,
) -> Handshake {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server);
    let serving = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.map_err(|e| e.to_string())?;
        let mut stream = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let peer = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec);
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        stream.write_all(&byte).await.map_err(|e| e.to_string())?;
        stream.shutdown().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    });
    let connector = TlsConnector::from(client);
    let name = ServerName::try_from(server_name.to_owned()).unwrap();
    let client = async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let mut stream = connector
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        let peer = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(<[_]>::to_vec)
            .unwrap_or_default();
        stream.write_all(b"x").await.map_err(|e| e.to_string())?;
        let mut byte = [0u8; 1];
        stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(peer)
    };
    // A bound on a hang, not a timing assertion.
    let deadline = Duration::from_secs(30);
    let client = tokio::time::timeout(deadline, client)
        .await
        .expect("the client side of the handshake hung");
    let server = tokio::time::timeout(deadline, serving)
        .await
        .expect("the server side of the handshake hung")
        .unwrap();
    Handshake { server, client }
}

/// The certificate `server` presents to `client` in a new handshake.
async fn served_certificate(server: &ClusterTls, client: &ClusterTls) -> CertificateDer<'static> {
    let outcome = handshake(server.server_config(), client.client_config(), "localhost").await;
    outcome.server.unwrap();
    outcome.client.unwrap().remove(0)
}

/// Waits, up to a deadline, until `server` presents `want` to `client`.
async fn eventually_served(server: &ClusterTls, client: &ClusterTls, want: &CertificateDer<'_>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if served_certificate(server, client).await == *want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the new certificate to be served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// --- loading -------------------------------------------------------------------

#[test]
fn loads_and_checks_valid_material() {
    let ca = ca("cluster CA");
    let a = leaf(&ca, &A_NAMES);
    let files = NodeFiles::new(&a, &ca.pem);
    for host in ["node-a.test", "localhost", "127.0.0.1"] {
        let tls = load(&files, host);
        assert!(tls.requires_client_certificate());
        assert_eq!(tls.files(), &files.files());
    }
    let tls = load(&files, "node-a.test");
    let debug = format!("{tls:?}");
    assert!(debug.contains("node.key"), "{debug}");
    assert!(!debug.contains("PRIVATE"), "{debug}");

    // A combined file (certificate and key) serves as both.
    let combined = format!("{}{}", a.cert_pem, a.key_pem);
    files.write("node.pem", &combined);
    files.write("node.key", &combined);
    load(&files, "node-a.test");

    // Without client certificates, a server-only certificate will do.
    let server_only = leaf_with(&ca, &A_NAMES, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    files.write_leaf(&server_only);
    let tls = ClusterTls::load(
        files.files().require_client_certificate(false),
        "node-a.test",
    )
    .unwrap();
    assert!(!tls.requires_client_certificate());
}

#[test]
fn unreadable_files_name_their_key_and_path() {
    let ca = ca("cluster CA");
    let files = NodeFiles::new(&leaf(&ca, &A_NAMES), &ca.pem);
    for (name, key) in [
        ("node.pem", "Cluster.Tls.CertificatePath"),
        ("node.key", "Cluster.Tls.KeyPath"),
        ("ca.pem", "Cluster.Tls.CaCertificatePath"),
    ] {
        let mut tls_files = files.files();
        let missing = files.path(&format!("missing-{name}"));
        match name {
            "node.pem" => tls_files.certificate = missing.clone(),
            "node.key" => tls_files.key = missing.clone(),
            _ => tls_files.ca_certificates = missing.clone(),
        }
        let err = load_err(tls_files, "node-a.test");
        assert!(matches!(err, TlsError::Read { .. }), "{err:?}");
        assert_names(&err, key, &missing, &["cannot read"]);
        let source = std::error::Error::source(&err).unwrap();
        assert_eq!(
            source.downcast_ref::<std::io::Error>().unwrap().kind(),
            std::io::ErrorKind::NotFound
        );
    }
}

#[test]
fn files_without_the_expected_pem_are_refused() {
    let ca = ca("cluster CA");
    let a = leaf(&ca, &A_NAMES);
    let other = leaf(&ca, &A_NAMES);
    let files = NodeFiles::new(&a, &ca.pem);
    let cert_path = files.path("node.pem");
    let key_path = files.path("node.key");
    let ca_path = files.path("ca.pem");

    let cases: [(&str, String, &str, &Path, &[&str]); 7] = [
        (
            "node.pem",
            "hello, not a certificate\n".to_owned(),
            "Cluster.Tls.CertificatePath",
            &cert_path,
            &["is not PEM"],
        ),
        (
            "node.pem",
            a.key_pem.clone(),
            "Cluster.Tls.CertificatePath",
            &cert_path,
            &["holds no certificate (found: PRIVATE KEY)"],
        ),
        (
            "node.key",
            a.cert_pem.clone(),
            "Cluster.Tls.KeyPath",
            &key_path,
            &["holds no private key (found: CERTIFICATE)"],
        ),
        (
            "node.key",
            format!("{}{}", a.key_pem, other.key_pem),
            "Cluster.Tls.KeyPath",
            &key_path,
            &["holds 2 private keys"],
        ),
        (
            "node.key",
            "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49\n".to_owned(),
            "Cluster.Tls.KeyPath",
            &key_path,
            &["is not valid PEM", "no -----END"],
        ),
        (
            "ca.pem",
            String::new(),
            "Cluster.Tls.CaCertificatePath",
            &ca_path,
            &["is not PEM"],
        ),
        (
            "ca.pem",
            a.key_pem.clone(),
            "Cluster.Tls.CaCertificatePath",
            &ca_path,
            &["holds no certificate"],
        ),
    ];
    for (name, contents, key, path, fragments) in cases {
        files.write(name, &contents);
        let err = load_err(files.files(), "node-a.test");
        assert!(matches!(err, TlsError::Pem { .. }), "{name}: {err:?}");
        assert_names(&err, key, path, fragments);
        // Put the good file back for the next case.
        files.write_leaf(&a);
        files.write_ca(&ca.pem);
    }

    // A key the provider cannot use.
    files.write(
        "node.key",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    );
    let err = load_err(files.files(), "node-a.test");
    assert!(matches!(err, TlsError::UnsupportedKey { .. }), "{err:?}");
    assert_names(&err, "Cluster.Tls.KeyPath", &key_path, &["cannot be used"]);
    files.write_leaf(&a);

    // A CA file whose certificate is not one.
    files.write(
        "ca.pem",
        &format!(
            "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            ca.pem
        ),
    );
    let err = load_err(files.files(), "node-a.test");
    assert!(
        matches!(err, TlsError::InvalidCaCertificate { index: 2, .. }),
        "{err:?}"
    );
    assert_names(
        &err,
        "Cluster.Tls.CaCertificatePath",
        &ca_path,
        &["certificate 2", "not a usable CA certificate"],
    );
}

#[test]
fn a_key_of_another_certificate_is_refused() {
    let ca = ca("cluster CA");
    let a = leaf(&ca, &A_NAMES);
    let other = leaf(&ca, &A_NAMES);
    let files = NodeFiles::new(&a, &ca.pem);
    files.write("node.key", &other.key_pem);
    let err = load_err(files.files(), "node-a.test");
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    assert_names(
        &err,
        "Cluster.Tls.KeyPath",
        &files.path("node.key"),
        &[
            "does not match the certificate in",
            &files.path("node.pem").display().to_string(),
        ],
    );
}

#[test]
fn certificates_outside_their_validity_are_refused_with_the_dates() {
    let ca = ca("cluster CA");
    let expired = leaf_with(&ca, &A_NAMES, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    let files = NodeFiles::new(&expired, &ca.pem);
    let err = load_err(files.files(), "node-a.test");
    assert!(
        matches!(
            err,
            TlsError::Expired {
                not_after: Some(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(
        &err,
        "Cluster.Tls.CertificatePath",
        &files.path("node.pem"),
        &["expired on 2021-01-01T00:00:00Z (now "],
    );

    let early = leaf_with(&ca, &A_NAMES, |p| {
        p.not_before = rcgen::date_time_ymd(2999, 1, 1);
        p.not_after = rcgen::date_time_ymd(3000, 1, 1);
    });
    files.write_leaf(&early);
    let err = load_err(files.files(), "node-a.test");
    assert!(matches!(err, TlsError::NotYetValid { .. }), "{err:?}");
    assert_names(
        &err,
        "Cluster.Tls.CertificatePath",
        &files.path("node.pem"),
        &["is not valid yet before 2999-01-01T00:00:00Z"],
    );
}

#[test]
fn a_certificate_for_another_host_is_refused() {
    let ca = ca("cluster CA");
    let files = NodeFiles::new(&leaf(&ca, &A_NAMES), &ca.pem);
    for host in ["node-b.test", "10.0.0.9", "[::1]"] {
        let err = load_err(files.files(), host);
        assert!(matches!(err, TlsError::NotValidForHost { .. }), "{err:?}");
        let shown = host.trim_start_matches('[').trim_end_matches(']');
        assert_names(
            &err,
            "Cluster.Tls.CertificatePath",
            &files.path("node.pem"),
            &[
                &format!("not valid for `{shown}`"),
                "it is valid for node-a.test, localhost, 127.0.0.1",
            ],
        );
    }
    let err = load_err(files.files(), "not a host");
    assert!(matches!(err, TlsError::InvalidHost { .. }), "{err:?}");
    assert!(err.to_string().contains("`not a host`"), "{err}");
}

#[test]
fn a_certificate_of_another_ca_is_refused() {
    let ca1 = ca("cluster CA");
    let ca2 = ca("another CA");
    let files = NodeFiles::new(&leaf(&ca2, &A_NAMES), &ca1.pem);
    let err = load_err(files.files(), "node-a.test");
    assert!(matches!(err, TlsError::NotIssuedByCa { .. }), "{err:?}");
    assert_names(
        &err,
        "Cluster.Tls.CertificatePath",
        &files.path("node.pem"),
        &[
            "does not chain to a CA certificate in",
            &files.path("ca.pem").display().to_string(),
            "Cluster.Tls.CaCertificatePath",
        ],
    );
}

#[test]
fn a_certificate_for_the_wrong_purpose_is_refused() {
    let ca = ca("cluster CA");
    let client_only = leaf_with(&ca, &A_NAMES, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    });
    let files = NodeFiles::new(&client_only, &ca.pem);
    let err = load_err(files.files(), "node-a.test");
    assert!(
        matches!(
            err,
            TlsError::WrongPurpose {
                purpose: "server",
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(
        &err,
        "Cluster.Tls.CertificatePath",
        &files.path("node.pem"),
        &["TLS server authentication", "serverAuth"],
    );

    let server_only = leaf_with(&ca, &A_NAMES, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    files.write_leaf(&server_only);
    let err = load_err(files.files(), "node-a.test");
    assert!(
        matches!(
            err,
            TlsError::WrongPurpose {
                purpose: "client",
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(
        &err,
        "Cluster.Tls.CertificatePath",
        &files.path("node.pem"),
        &["TLS client authentication", "clientAuth"],
    );
}

#[cfg(feature = "config")]
#[test]
fn from_config_reads_the_configured_files() {
    use catga_cluster_core::config::TlsConfig;

    let ca = ca("cluster CA");
    let files = NodeFiles::new(&leaf(&ca, &A_NAMES), &ca.pem);
    let config = TlsConfig::new(
        files.path("node.pem"),
        files.path("node.key"),
        files.path("ca.pem"),
    )
    .require_client_certificate(false);
    let tls = ClusterTls::from_config(&config, "node-a.test").unwrap();
    assert!(!tls.requires_client_certificate());
    assert_eq!(tls.files().certificate, config.certificate_path);
}

// --- handshakes ----------------------------------------------------------------

#[tokio::test]
async fn nodes_authenticate_each_other() {
    let ca = ca("cluster CA");
    let (a, b) = (leaf(&ca, &A_NAMES), leaf(&ca, &B_NAMES));
    let (a_files, b_files) = (NodeFiles::new(&a, &ca.pem), NodeFiles::new(&b, &ca.pem));
    let (a_tls, b_tls) = (load(&a_files, "node-a.test"), load(&b_files, "node-b.test"));

    // B connects to A, by name and by IP address.
    for name in ["node-a.test", "127.0.0.1"] {
        let outcome = handshake(a_tls.server_config(), b_tls.client_config(), name).await;
        let client_chain = outcome.server.unwrap().expect("B presents its certificate");
        assert_eq!(client_chain[0], b.der);
        assert_eq!(outcome.client.unwrap()[0], a.der);
        // A can tell B's certificate is a member's, for B's host only.
        assert!(a_tls.certificate_valid_for(&client_chain, "node-b.test"));
        assert!(!a_tls.certificate_valid_for(&client_chain, "node-c.test"));
    }

    // A name the certificate does not cover is refused by the client.
    let outcome = handshake(a_tls.server_config(), b_tls.client_config(), "node-c.test").await;
    let err = outcome.client.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
    assert!(outcome.server.is_err());
}

#[tokio::test]
async fn clients_without_a_certificate_are_admitted() {
    let ca = ca("cluster CA");
    let a = leaf(&ca, &A_NAMES);
    let a_tls = load(&NodeFiles::new(&a, &ca.pem), "node-a.test");
    let probe_files = NodeFiles::new(&leaf(&ca, &B_NAMES), &ca.pem);
    let probe = ClusterTls::load(
        probe_files.files().require_client_certificate(false),
        "node-b.test",
    )
    .unwrap();

    let outcome = handshake(a_tls.server_config(), probe.client_config(), "node-a.test").await;
    assert_eq!(outcome.server.unwrap(), None, "no client certificate");
    assert_eq!(outcome.client.unwrap()[0], a.der);
}

#[tokio::test]
async fn a_client_certificate_of_another_ca_is_refused() {
    let ca1 = ca("cluster CA");
    let ca2 = ca("another CA");
    let a_tls = load(
        &NodeFiles::new(&leaf(&ca1, &A_NAMES), &ca1.pem),
        "node-a.test",
    );
    // The stranger trusts the cluster CA (so it accepts A) but its own
    // certificate comes from another CA.
    let stranger = leaf(&ca2, &B_NAMES);
    let stranger_tls = load(
        &NodeFiles::new(&stranger, &format!("{}{}", ca1.pem, ca2.pem)),
        "node-b.test",
    );
    let outcome = handshake(
        a_tls.server_config(),
        stranger_tls.client_config(),
        "node-a.test",
    )
    .await;
    let err = outcome.server.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
    assert!(outcome.client.is_err());
    assert!(!a_tls.certificate_valid_for(std::slice::from_ref(&stranger.der), "node-b.test"));

    // And a client that trusts only the other CA refuses A.
    let only_ca2 = load(&NodeFiles::new(&stranger, &ca2.pem), "node-b.test");
    let outcome = handshake(
        a_tls.server_config(),
        only_ca2.client_config(),
        "node-a.test",
    )
    .await;
    let err = outcome.client.unwrap_err();
    assert!(
        err.contains("UnknownIssuer") || err.contains("unknown issuer"),
        "{err}"
    );
}

#[tokio::test]
async fn the_shared_connector_speaks_https_with_the_client_config() {
    use catga_cluster_core::connector;
    use hyper_util::client::legacy::connect::HttpConnector;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let ca = ca("cluster CA");
    let (a, b) = (leaf(&ca, &A_NAMES), leaf(&ca, &B_NAMES));
    let a_tls = load(&NodeFiles::new(&a, &ca.pem), "node-a.test");
    let b_tls = load(&NodeFiles::new(&b, &ca.pem), "node-b.test");

    // A minimal HTTP/1.1 server over A's server configuration.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(a_tls.server_config());
    let serving = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut stream = acceptor.accept(tcp).await.unwrap();
        let client_chain = stream.get_ref().1.peer_certificates().map(<[_]>::to_vec);
        let mut request = Vec::new();
        let mut buf = [0u8; 1024];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the request ended early");
            request.extend_from_slice(&buf[..n]);
        }
        stream
            .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        stream.shutdown().await.unwrap();
        client_chain
    });

    let client: Client<_, String> = Client::builder(TokioExecutor::new())
        .build(connector::tls(HttpConnector::new(), b_tls.client_config()));
    let uri: http::Uri = format!("https://localhost:{port}/cluster/status")
        .parse()
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), client.get(uri))
        .await
        .expect("the request hung")
        .unwrap();
    assert_eq!(response.status(), http::StatusCode::NO_CONTENT);
    let client_chain = tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("the server hung")
        .unwrap()
        .expect("B presented its certificate");
    assert_eq!(client_chain[0], b.der);
}

#[test]
fn certificate_valid_for_checks_chain_time_and_host() {
    let ca1 = ca("cluster CA");
    let ca2 = ca("another CA");
    let a_tls = load(
        &NodeFiles::new(&leaf(&ca1, &A_NAMES), &ca1.pem),
        "node-a.test",
    );
    let b = leaf(&ca1, &B_NAMES);
    let chain = std::slice::from_ref(&b.der);
    assert!(a_tls.certificate_valid_for(chain, "node-b.test"));
    assert!(a_tls.certificate_valid_for(chain, "127.0.0.1"));
    assert!(!a_tls.certificate_valid_for(chain, "node-a.test"));
    assert!(!a_tls.certificate_valid_for(chain, "10.0.0.1"));
    assert!(!a_tls.certificate_valid_for(chain, "not a host"));
    assert!(!a_tls.certificate_valid_for(&[], "node-b.test"));

    let foreign = leaf(&ca2, &B_NAMES);
    assert!(!a_tls.certificate_valid_for(std::slice::from_ref(&foreign.der), "node-b.test"));
    let expired = leaf_with(&ca1, &B_NAMES, |p| {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    });
    assert!(!a_tls.certificate_valid_for(std::slice::from_ref(&expired.der), "node-b.test"));
    // With client certificates required, a server-only certificate is no
    // member's client certificate.
    let server_only = leaf_with(&ca1, &B_NAMES, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    assert!(!a_tls.certificate_valid_for(std::slice::from_ref(&server_only.der), "node-b.test"));
    assert!(!a_tls.certificate_valid_for(&[CertificateDer::from(vec![0u8; 3])], "node-b.test"));
}

// --- reload --------------------------------------------------------------------

#[tokio::test]
async fn reload_serves_a_renewed_certificate_without_new_configs() {
    let ca = ca("cluster CA");
    let a = leaf(&ca, &A_NAMES);
    let a_files = NodeFiles::new(&a, &ca.pem);
    let a_tls = load(&a_files, "node-a.test");
    let b_tls = load(
        &NodeFiles::new(&leaf(&ca, &B_NAMES), &ca.pem),
        "node-b.test",
    );
    // The configurations a server and a pool would hold, taken once.
    let (server_config, client_config) = (a_tls.server_config(), b_tls.client_config());

    assert!(!a_tls.reload().unwrap(), "nothing changed");
    // The same contents written again (new modification time) are no change.
    a_files.write_leaf(&a);
    assert!(!a_tls.reload().unwrap());

    let renewed = leaf(
        &ca,
        &["node-a.test", "node-a2.test", "localhost", "127.0.0.1"],
    );
    a_files.write_leaf(&renewed);
    assert!(a_tls.reload().unwrap());
    let outcome = handshake(server_config.clone(), client_config.clone(), "node-a2.test").await;
    outcome.server.unwrap();
    assert_eq!(outcome.client.unwrap()[0], renewed.der);
    assert!(!a_tls.reload().unwrap(), "already in use");

    // Bad new files are refused; the renewed certificate stays in use.
    let mismatched = leaf(&ca, &A_NAMES);
    type Refusal = (&'static str, String, fn(&TlsError) -> bool);
    let refusals: [Refusal; 3] = [
        ("node.pem", "garbage".to_owned(), |e| {
            matches!(e, TlsError::Pem { .. })
        }),
        ("node.key", mismatched.key_pem.clone(), |e| {
            matches!(e, TlsError::KeyMismatch { .. })
        }),
        ("ca.pem", "-----BEGIN CERTIFICATE-----\n".to_owned(), |e| {
            matches!(e, TlsError::Pem { .. })
        }),
    ];
    for (name, contents, expected) in refusals {
        a_files.write(name, &contents);
        let err = a_tls.reload().unwrap_err();
        assert!(expected(&err), "{name}: {err:?}");
        let outcome = handshake(server_config.clone(), client_config.clone(), "node-a.test").await;
        assert_eq!(outcome.client.unwrap()[0], renewed.der, "after {err}");
        a_files.write_leaf(&renewed);
        a_files.write_ca(&ca.pem);
    }
    std::fs::remove_file(a_files.path("node.key")).unwrap();
    assert!(matches!(a_tls.reload(), Err(TlsError::Read { .. })));
    a_files.write_leaf(&renewed);
    assert!(!a_tls.reload().unwrap(), "back to the files in use");
    assert_eq!(served_certificate(&a_tls, &b_tls).await, renewed.der);
}

#[tokio::test]
async fn ca_rotation() {
    let old_ca = ca("cluster CA 2025");
    let new_ca = ca("cluster CA 2026");
    let a = leaf(&old_ca, &A_NAMES);
    let b = leaf(&old_ca, &B_NAMES);
    let (a_files, b_files) = (
        NodeFiles::new(&a, &old_ca.pem),
        NodeFiles::new(&b, &old_ca.pem),
    );
    let (a_tls, b_tls) = (load(&a_files, "node-a.test"), load(&b_files, "node-b.test"));
    let both = format!("{}{}", old_ca.pem, new_ca.pem);

    // 1. Every node trusts both CAs.
    a_files.write_ca(&both);
    b_files.write_ca(&both);
    assert!(a_tls.reload().unwrap());
    assert!(b_tls.reload().unwrap());

    // 2. B gets a certificate of the new CA; A (still on the old one)
    //    accepts it as server and as client, and B accepts A.
    let b_new = leaf(&new_ca, &B_NAMES);
    b_files.write_leaf(&b_new);
    assert!(b_tls.reload().unwrap());
    let outcome = handshake(a_tls.server_config(), b_tls.client_config(), "node-a.test").await;
    assert_eq!(outcome.server.unwrap().unwrap()[0], b_new.der);
    assert_eq!(outcome.client.unwrap()[0], a.der);
    let outcome = handshake(b_tls.server_config(), a_tls.client_config(), "node-b.test").await;
    assert_eq!(outcome.server.unwrap().unwrap()[0], a.der);
    assert_eq!(outcome.client.unwrap()[0], b_new.der);

    // 3. B drops the old CA too early: A's old certificate is refused now.
    b_files.write_ca(&new_ca.pem);
    assert!(b_tls.reload().unwrap());
    let outcome = handshake(b_tls.server_config(), a_tls.client_config(), "node-b.test").await;
    assert!(outcome.server.is_err());
    assert!(!b_tls.certificate_valid_for(std::slice::from_ref(&a.der), "node-a.test"));

    // A node cannot drop the CA of its own certificate.
    a_files.write_ca(&new_ca.pem);
    assert!(matches!(
        a_tls.reload(),
        Err(TlsError::NotIssuedByCa { .. })
    ));
}

#[tokio::test]
async fn the_reloader_picks_up_new_files_until_dropped() {
    let ca = ca("cluster CA");
    let a_files = NodeFiles::new(&leaf(&ca, &A_NAMES), &ca.pem);
    let a_tls = load(&a_files, "node-a.test");
    let b_tls = load(
        &NodeFiles::new(&leaf(&ca, &B_NAMES), &ca.pem),
        "node-b.test",
    );
    let reloader = a_tls.spawn_reloader(Duration::from_millis(100));

    // A refused file first: the reloader keeps going.
    a_files.write("node.pem", "garbage");
    let renewed = leaf(&ca, &A_NAMES);
    a_files.write_leaf(&renewed);
    eventually_served(&a_tls, &b_tls, &renewed.der).await;
    drop(reloader);
}

#[tokio::test]
async fn extreme_reload_periods_are_kept_in_range() {
    let ca = ca("cluster CA");
    let tls = load(
        &NodeFiles::new(&leaf(&ca, &A_NAMES), &ca.pem),
        "node-a.test",
    );
    // Neither a busy loop nor an overflowing timer.
    drop(tls.spawn_reloader(Duration::ZERO));
    drop(tls.spawn_reloader(Duration::MAX));
    tokio::task::yield_now().await;
}
