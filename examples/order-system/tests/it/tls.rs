//! Mutual TLS end to end: the example binary as three OS processes
//! configured only through `Cluster__Tls__*` variables (certificates made
//! here with rcgen). They elect, forward and fail over over HTTPS; peers
//! that are not members are refused without disturbing the cluster; a node's
//! certificate files are rotated while it serves, and no request fails.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use catga_cluster_core::tls::rustls;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, ExtendedKeyUsagePurpose, IsCa, KeyPair,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{json, Value};

const DEADLINE: Duration = Duration::from_secs(30);
const SECRET: &str = "tls-test-secret";

type Https = Client<catga_cluster_core::connector::Connector, Full<Bytes>>;

/// A CA that signs node certificates into a directory.
struct Pki {
    dir: PathBuf,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).unwrap();
        Pki {
            dir: dir.to_owned(),
            ca,
        }
    }

    /// Writes `{file}.pem` and `{file}-key.pem` for `hosts`; returns the
    /// certificate's DER.
    fn issue(&self, file: &str, hosts: &[&str]) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        // Written beside and renamed over: a reader never sees half a file.
        for (name, text) in [
            (format!("{file}.pem"), cert.pem()),
            (format!("{file}-key.pem"), key.serialize_pem()),
        ] {
            let tmp = self.dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, self.dir.join(name)).unwrap();
        }
        cert.der().clone()
    }

    fn ca_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting `ca`, presenting `identity` (certificate and key
/// files) when given.
fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}

fn https(config: Arc<rustls::ClientConfig>) -> Https {
    Client::builder(TokioExecutor::new()).build(catga_cluster_core::connector::tls(
        HttpConnector::new(),
        config,
    ))
}

struct Answer {
    status: u16,
    served_by: Option<u64>,
    body: Value,
}

async fn send(
    client: &Https,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Answer, String> {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .map_err(|_| "no answer within 10 s".to_owned())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status().as_u16();
    let served_by = response
        .headers()
        .get("x-catga-served-by")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok(Answer {
        status,
        served_by,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    })
}

struct Cluster {
    dir: tempfile::TempDir,
    ports: Vec<u16>,
    children: BTreeMap<u64, Child>,
    client: Https,
}

impl Cluster {
    fn url(&self, i: u64, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.ports[i as usize])
    }

    fn spawn(&mut self, i: u64) {
        let certs = self.dir.path().join("certs");
        let endpoint = |j: u64| format!("https://127.0.0.1:{}", self.ports[j as usize]);
        let log = File::create(self.dir.path().join(format!("node{i}.log"))).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_order-system"));
        cmd.current_dir(self.dir.path())
            .arg("--port")
            .arg(self.ports[i as usize].to_string())
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .env("RUST_LOG", "info")
            .env("Cluster__LocalNodeEndpoint", endpoint(i))
            .env("Cluster__LocalNodeId", i.to_string())
            .env("Cluster__Secret", SECRET)
            .env(
                "Cluster__Tls__CertificatePath",
                certs.join(format!("node{i}.pem")),
            )
            .env(
                "Cluster__Tls__KeyPath",
                certs.join(format!("node{i}-key.pem")),
            )
            .env("Cluster__Tls__CaCertificatePath", certs.join("ca.pem"))
            .env("Cluster__Tls__RequireClientCertificate", "true")
            .env("Cluster__Tls__ReloadInterval", "200ms");
        for (k, j) in (0..3u64).filter(|j| *j != i).enumerate() {
            cmd.env(format!("Cluster__Members__{k}__Id"), j.to_string())
                .env(format!("Cluster__Members__{k}__Endpoint"), endpoint(j));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("the example binary starts");
        self.children.insert(i, child);
    }

    fn logs(&self) -> String {
        (0..3)
            .map(|i| {
                let text = std::fs::read_to_string(self.dir.path().join(format!("node{i}.log")))
                    .unwrap_or_default();
                format!("--- node {i} ---\n{text}")
            })
            .collect()
    }

    /// (leader, term) once every running node names the same leader.
    async fn wait_leader(&self) -> (u64, u64) {
        self.wait_leader_other_than(None).await
    }

    /// (leader, term) once every running node names the same leader, not
    /// `old`.
    async fn wait_leader_other_than(&self, old: Option<u64>) -> (u64, u64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let mut seen = Vec::new();
            for i in self.children.keys() {
                let status = send(
                    &self.client,
                    "GET",
                    &self.url(*i, "/cluster/status"),
                    &[],
                    "",
                )
                .await
                .ok()
                .filter(|a| a.status == 200);
                seen.push(status.and_then(|a| {
                    Some((a.body["leader"]["id"].as_u64()?, a.body["term"].as_u64()?))
                }));
            }
            if let Some(Some(first)) = seen.first() {
                if Some(first.0) != old && seen.iter().all(|s| s.as_ref() == Some(first)) {
                    return *first;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader: {seen:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn order(&self, node: u64, customer: &str) -> Result<Answer, String> {
        let body = json!({"customer": customer, "items": [{"sku": "a", "quantity": 1}]});
        send(
            &self.client,
            "POST",
            &self.url(node, "/orders"),
            &[("content-type", "application/json")],
            &body.to_string(),
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The certificate a node presents on a fresh connection.
async fn presented(port: u16, ca: &Path) -> Option<CertificateDer<'static>> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca, None));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.ok()?;
    tls.get_ref().1.peer_certificates()?.first().cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_over_mutual_tls() {
    let _one = crate::ONE_CLUSTER_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let pki = Pki::new(&certs, "ca");
    for i in 0..3 {
        pki.issue(&format!("node{i}"), &["127.0.0.1", "localhost"]);
    }
    // Strangers: a certificate of the cluster CA for another host, and one
    // of another CA for the nodes' own host.
    pki.issue("rogue", &["rogue.test"]);
    let other = Pki::new(&certs, "other-ca");
    other.issue("forged", &["127.0.0.1", "localhost"]);

    let ports: Vec<u16> = {
        let listeners: Vec<_> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect()
    };
    let ca = pki.ca_path("ca");
    let mut cluster = Cluster {
        client: https(client_config(&ca, None)),
        dir,
        ports,
        children: BTreeMap::new(),
    };
    for i in 0..3 {
        cluster.spawn(i);
    }

    // Elected over HTTPS, and a follower forwards an order to the leader.
    let (leader, term) = cluster.wait_leader().await;
    let follower = (leader + 1) % 3;
    let created = cluster.order(follower, "ada").await.unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.served_by, Some(leader));

    // Peers that are not members, against a Raft RPC of the follower.
    let vote_url = cluster.url(follower, "/cluster/raft/vote");
    let target = follower.to_string();
    let bearer = format!("Bearer {SECRET}");
    let rpc_headers = [
        ("x-catga-target-node", target.as_str()),
        ("authorization", bearer.as_str()),
    ];
    let rpc = |config| {
        let client = https(config);
        let url = vote_url.clone();
        let headers = rpc_headers;
        async move { send(&client, "POST", &url, &headers, "\u{1}").await }
    };
    // No client certificate: past the handshake, but not a member.
    let anonymous = rpc(client_config(&ca, None)).await.unwrap();
    assert_eq!(anonymous.status, 403, "{}", anonymous.body);
    assert_eq!(anonymous.body["type"], "forbidden");
    // The cluster CA, another host.
    let rogue = rpc(client_config(
        &ca,
        Some((&certs.join("rogue.pem"), &certs.join("rogue-key.pem"))),
    ))
    .await
    .unwrap();
    assert_eq!(rogue.status, 403, "{}", rogue.body);
    // Another CA: the handshake itself fails.
    let forged = rpc(client_config(
        &ca,
        Some((&certs.join("forged.pem"), &certs.join("forged-key.pem"))),
    ))
    .await;
    assert!(forged.is_err(), "a certificate of another CA was accepted");
    // Plain HTTP to a TLS port: no answer at all.
    let plain: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let request = http::Request::post(format!(
        "http://127.0.0.1:{}/cluster/raft/vote",
        cluster.ports[follower as usize]
    ))
    .header("x-catga-target-node", target.as_str())
    .header("authorization", bearer.as_str())
    .body(Full::new(Bytes::from_static(b"\x01")))
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), plain.request(request))
        .await
        .expect("the plain request ends");
    assert!(answer.is_err(), "plain HTTP was answered: {answer:?}");
    // A member passes the door (the body is what it refuses).
    let member = rpc(client_config(
        &ca,
        Some((
            &certs.join(format!("node{leader}.pem")),
            &certs.join(format!("node{leader}-key.pem")),
        )),
    ))
    .await
    .unwrap();
    assert_eq!(member.status, 400, "{}", member.body);
    // Undisturbed: same leader, same term.
    assert_eq!(cluster.wait_leader().await, (leader, term));

    // Rotation: the leader's files are replaced while orders stream in
    // through every node; the new certificate is served without a restart
    // and no request fails.
    let writing = Arc::new(AtomicBool::new(true));
    let failures = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (writing, failures, written) = (writing.clone(), failures.clone(), written.clone());
        let urls: Vec<String> = (0..3).map(|i| cluster.url(i, "/orders")).collect();
        let client = cluster.client.clone();
        tokio::spawn(async move {
            let mut n = 0usize;
            while writing.load(Ordering::SeqCst) {
                let body =
                    json!({"customer": format!("c{n}"), "items": [{"sku": "a", "quantity": 1}]});
                let answer = send(
                    &client,
                    "POST",
                    &urls[n % urls.len()],
                    &[("content-type", "application/json")],
                    &body.to_string(),
                )
                .await;
                match answer {
                    Ok(a) if a.status == 201 => written.fetch_add(1, Ordering::SeqCst),
                    other => {
                        eprintln!("failed write: {:?}", other.map(|a| (a.status, a.body)));
                        failures.fetch_add(1, Ordering::SeqCst)
                    }
                };
                n += 1;
            }
        })
    };
    let leader_port = cluster.ports[leader as usize];
    let before = presented(leader_port, &ca)
        .await
        .expect("the leader serves TLS");
    let rotated = pki.issue(&format!("node{leader}"), &["127.0.0.1", "localhost"]);
    assert_ne!(before, rotated);
    let deadline = Instant::now() + DEADLINE;
    while presented(leader_port, &ca).await.as_ref() != Some(&rotated) {
        assert!(
            Instant::now() < deadline,
            "the rotated certificate was never served\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Peers still reach the rotated node with its new client certificate.
    let after = cluster.order(follower, "after-rotation").await.unwrap();
    assert_eq!(after.status, 201, "{}", after.body);
    writing.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    assert_eq!(failures.load(Ordering::SeqCst), 0, "{}", cluster.logs());
    assert!(written.load(Ordering::SeqCst) > 0);

    // Fail-over over TLS: the followers watch the leader's process (the
    // leader watch is a peer route: it needs their member certificates),
    // the leader dies, and a survivor takes over through the fast path.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let mut watching = Vec::new();
        for i in (0..3).filter(|i| *i != leader) {
            let status = send(
                &cluster.client,
                "GET",
                &cluster.url(i, "/cluster/status"),
                &[],
                "",
            )
            .await
            .ok();
            watching.push(status.and_then(|a| a.body["failover"]["watching"].as_u64()));
        }
        if watching.iter().all(|w| *w == Some(leader)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the followers do not watch the leader: {watching:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut old = cluster.children.remove(&leader).unwrap();
    old.kill().unwrap();
    old.wait().unwrap();
    let (new_leader, new_term) = cluster.wait_leader_other_than(Some(leader)).await;
    assert_ne!(new_leader, leader);
    assert!(new_term > term);
    let status = send(
        &cluster.client,
        "GET",
        &cluster.url(new_leader, "/cluster/status"),
        &[],
        "",
    )
    .await
    .unwrap();
    assert_eq!(
        status.body["failover"]["last"]["path"],
        "fast",
        "{}\n{}",
        status.body,
        cluster.logs()
    );
    let survivor = (0..3).find(|i| *i != leader && *i != new_leader).unwrap();
    let created = cluster.order(survivor, "after-failover").await.unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.served_by, Some(new_leader));
}
