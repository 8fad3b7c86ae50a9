use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;

use super::*;

fn options(out: &Path, nodes: u16) -> Options {
    Options {
        out: out.to_path_buf(),
        nodes,
        hosts: Vec::new(),
        days: DEFAULT_DAYS,
        existing: Existing::Refuse,
    }
}

fn cert(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn roots(ca: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    roots.add(cert(ca)).unwrap();
    Arc::new(roots)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Verifies `leaf` as a server certificate for `name`, as a peer
/// connecting to it would, at `now`.
fn verify_server(ca: &Path, leaf: &Path, name: &str, now: UnixTime) -> Result<(), rustls::Error> {
    let verifier = WebPkiServerVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    verifier
        .verify_server_cert(&cert(leaf), &[], &name, &[], now)
        .map(|_| ())
}

/// Verifies `leaf` as a client certificate, as a node requiring mutual
/// TLS would.
fn verify_client(ca: &Path, leaf: &Path) -> Result<(), rustls::Error> {
    let verifier = WebPkiClientVerifier::builder_with_provider(roots(ca), provider())
        .build()
        .unwrap();
    verifier
        .verify_client_cert(&cert(leaf), &[], UnixTime::now())
        .map(|_| ())
}

#[test]
fn writes_a_ca_and_a_certificate_per_node() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/certs");
    let outcome = write(&options(&dir, 3)).unwrap();
    let layout = Layout::new(&dir, 3);
    assert_eq!(outcome.layout(), &layout);
    for path in layout.files() {
        assert!(path.is_file(), "{} written", path.display());
    }
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        8,
        "no stray files"
    );
    // Every file parses as PEM of its kind.
    cert(&layout.ca_cert());
    PrivateKeyDer::from_pem_file(layout.ca_key()).unwrap();
    for node in 0..3 {
        cert(&layout.node_cert(node));
        PrivateKeyDer::from_pem_file(layout.node_key(node)).unwrap();
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: PathBuf| path.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(layout.ca_key()), 0o600);
        assert_eq!(mode(layout.node_key(2)), 0o600);
        assert_eq!(mode(layout.ca_cert()), 0o644);
        assert_eq!(mode(layout.node_cert(2)), 0o644);
    }
}

#[test]
fn a_node_certificate_verifies_for_its_names_as_server_and_client() {
    let tmp = tempfile::tempdir().unwrap();
    write(&options(tmp.path(), 2)).unwrap();
    let layout = Layout::new(tmp.path(), 2);
    let ca = layout.ca_cert();
    let node1 = layout.node_cert(1);
    let now = UnixTime::now();
    for name in ["localhost", "127.0.0.1", "::1", "node1"] {
        verify_server(&ca, &node1, name, now).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // serverAuth above, clientAuth here: one certificate for mutual TLS.
    verify_client(&ca, &node1).unwrap();
    // Another node's name, a stranger and another CA are refused.
    for name in ["node0", "example.com"] {
        assert!(verify_server(&ca, &node1, name, now).is_err(), "{name}");
    }
    let other = tempfile::tempdir().unwrap();
    write(&options(other.path(), 1)).unwrap();
    let other_ca = Layout::new(other.path(), 1).ca_cert();
    assert!(verify_server(&other_ca, &node1, "node1", now).is_err());
    assert!(verify_client(&other_ca, &node1).is_err());
}

#[test]
fn certificates_expire_after_the_given_days() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), 1);
    opts.days = 2;
    write(&opts).unwrap();
    let layout = Layout::new(tmp.path(), 1);
    let at = |days_from_now: u64| {
        let now = UnixTime::now().as_secs();
        UnixTime::since_unix_epoch(Duration::from_secs(now + days_from_now * 86_400))
    };
    let check = |when| verify_server(&layout.ca_cert(), &layout.node_cert(0), "node0", when);
    check(at(1)).unwrap();
    let err = check(at(3)).unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
}

#[test]
fn hosts_are_added_with_the_node_number() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = options(tmp.path(), 3);
    opts.hosts = vec![
        "order-system-{i}.order-system.default.svc.cluster.local".to_owned(),
        "orders.example.com".to_owned(),
        "10.0.0.{i}".to_owned(),
        // Already there: not listed twice.
        "LOCALHOST".to_owned(),
        "node{i}".to_owned(),
    ];
    let outcome = write(&opts).unwrap();
    let Outcome::Written { names, .. } = &outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        names[2],
        [
            "localhost",
            "127.0.0.1",
            "::1",
            "node2",
            "order-system-2.order-system.default.svc.cluster.local",
            "orders.example.com",
            "10.0.0.2",
        ]
    );
    let layout = outcome.layout();
    let now = UnixTime::now();
    for name in [
        "order-system-2.order-system.default.svc.cluster.local",
        "orders.example.com",
        "10.0.0.2",
    ] {
        verify_server(&layout.ca_cert(), &layout.node_cert(2), name, now)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    assert!(verify_server(
        &layout.ca_cert(),
        &layout.node_cert(2),
        "order-system-1.order-system.default.svc.cluster.local",
        now
    )
    .is_err());
}

#[test]
fn the_report_names_the_files_and_the_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let outcome = write(&options(tmp.path(), 2)).unwrap();
    let report = outcome.to_string();
    let layout = Layout::new(tmp.path(), 2);
    for (name, value) in layout.env_vars(1) {
        assert!(report.contains(&format!("{name}={value}")), "{report}");
    }
    assert!(report.contains(&layout.ca_key().display().to_string()));
    assert!(report.contains("valid for localhost, 127.0.0.1, ::1, node1"));
    assert_eq!(
        layout.env_vars(0)[0],
        (
            "Cluster__Tls__CertificatePath",
            tmp.path().join("node0.pem").display().to_string()
        )
    );
}

#[test]
fn existing_files_are_refused_replaced_with_force_or_kept_when_complete() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = Layout::new(tmp.path(), 2);
    write(&options(tmp.path(), 2)).unwrap();
    let first_ca = std::fs::read(layout.ca_cert()).unwrap();

    let err = write(&options(tmp.path(), 2)).unwrap_err();
    assert!(err.is_bad_input());
    let text = err.to_string();
    assert!(
        text.contains(&format!("{} already exists", layout.ca_cert().display()))
            && text.contains("--force"),
        "{text}"
    );
    assert_eq!(std::fs::read(layout.ca_cert()).unwrap(), first_ca);
    // One existing file is enough to refuse, and it is named.
    let lone = tempfile::tempdir().unwrap();
    std::fs::write(lone.path().join("node1-key.pem"), "mine").unwrap();
    let err = write(&options(lone.path(), 2)).unwrap_err();
    assert!(err.to_string().contains("node1-key.pem"), "{err}");
    assert_eq!(std::fs::read_dir(lone.path()).unwrap().count(), 1);

    // --if-missing: all there, nothing written.
    let mut keep = options(tmp.path(), 2);
    keep.existing = Existing::KeepComplete;
    let outcome = write(&keep).unwrap();
    assert!(matches!(outcome, Outcome::Kept { .. }), "{outcome:?}");
    assert!(outcome.to_string().contains("nothing written"));
    assert_eq!(std::fs::read(layout.ca_cert()).unwrap(), first_ca);
    // ... part of them there: refused, naming both sides.
    let mut bigger = keep.clone();
    bigger.nodes = 3;
    let err = write(&bigger).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("holds part of a PKI")
            && text.contains("node2.pem does not")
            && text.contains("--force"),
        "{text}"
    );
    // ... none there: written.
    let empty = tempfile::tempdir().unwrap();
    keep.out = empty.path().to_path_buf();
    assert!(matches!(write(&keep).unwrap(), Outcome::Written { .. }));

    // --force: a new CA, and the leaves chain to it.
    let mut force = options(tmp.path(), 2);
    force.existing = Existing::Overwrite;
    write(&force).unwrap();
    assert_ne!(std::fs::read(layout.ca_cert()).unwrap(), first_ca);
    verify_client(&layout.ca_cert(), &layout.node_cert(0)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = layout.node_key(0).metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "a replaced key is private too");
    }
}

#[test]
fn bad_arguments_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let refused = |opts: Options| {
        let err = write(&opts).unwrap_err();
        assert!(err.is_bad_input(), "{err:?}");
        assert!(!dir.exists(), "nothing written for {err}");
        err.to_string()
    };
    let with = |f: &dyn Fn(&mut Options)| {
        let mut opts = options(&dir, 3);
        f(&mut opts);
        opts
    };
    assert_eq!(
        refused(with(&|o| o.nodes = 0)),
        "--nodes 0: give 1 to 99 nodes"
    );
    assert_eq!(
        refused(with(&|o| o.nodes = 100)),
        "--nodes 100: give 1 to 99 nodes"
    );
    assert_eq!(
        refused(with(&|o| o.days = 0)),
        "--days 0: give 1 to 3650 days"
    );
    let host = |h: &str| refused(with(&|o| o.hosts = vec!["ok.example".into(), h.into()]));
    assert!(host("").contains("empty"));
    assert!(host("https://node0:5000").contains("a URL"));
    assert!(host("node0:5000").contains("without port"));
    assert!(host("*.example.com").contains("wildcard"));
    assert!(host("node{j}.example").contains("only `{i}`"));
    let text = host("bad host_{i}");
    assert!(
        text.starts_with("--host `bad host_{i}` (`bad host_0`): not a DNS name"),
        "{text}"
    );
    assert!(host("ünïcode.example").contains("not a DNS name"));
    assert!(host(&"a".repeat(64)).contains("not a DNS name"));

    std::fs::write(&dir, "a file").unwrap();
    let err = write(&options(&dir, 1)).unwrap_err();
    assert!(err.is_bad_input());
    assert_eq!(
        err.to_string(),
        format!("--out {}: not a directory", dir.display())
    );
}
