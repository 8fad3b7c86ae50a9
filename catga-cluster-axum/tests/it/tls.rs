//! HTTPS end to end (`tls` feature), with certificates made by rcgen: a
//! three-node Raft cluster whose nodes serve their routes over TLS and talk
//! Raft over TLS, and `HttpForwarder::with_tls` forwarding to an HTTPS
//! leader — and failing to connect when it does not trust the leader's CA.

use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use catga_cluster_axum::tls::{rustls, rustls_acceptor};
use catga_cluster_axum::{serve, ClusterRoutes, HandshakeListener, ShutdownHook};
use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::testing::ManualCoordinator;
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_raft::{NodeOptions, RaftNode, Storage};
use catga_cluster_tower::{AxumForwarder, ForwardToLeaderLayer};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt;

const DEADLINE: Duration = Duration::from_secs(20);

/// A test CA and a certificate it signed for `127.0.0.1` and `localhost`.
struct Pki {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &*ca)
        .unwrap();
    Pki {
        ca: ca.der().clone(),
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::from(key),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config(pki: &Pki) -> Arc<ServerConfig> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    Arc::new(config)
}

/// A client configuration trusting `ca`, or nothing at all.
fn client_config(ca: Option<&CertificateDer<'static>>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    if let Some(ca) = ca {
        roots.add(ca.clone()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Serves `app` over HTTPS on `listener` until `stop` fires, then runs
/// `hook`.
fn serve_tls(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    hook: ShutdownHook,
    stop: oneshot::Receiver<()>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    let listener = HandshakeListener::new(listener, rustls_acceptor(config)).unwrap();
    tokio::spawn(
        serve(listener, app, hook, async {
            let _ = stop.await;
        })
        .drain_timeout(Duration::from_secs(5))
        .into_future(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_elects_and_replicates_over_https() {
    let _serial = crate::common::SERIAL.lock().await;
    let pki = pki();
    let server = server_config(&pki);
    let client = client_config(Some(&pki.ca));

    let mut listeners = Vec::new();
    let mut infos = Vec::new();
    for i in 1..=3u64 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        infos.push(NodeInfo::new(
            NodeId::new(i),
            Endpoint::parse(&format!("https://{addr}")).unwrap(),
        ));
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    let mut servers = Vec::new();
    for (i, listener) in listeners.into_iter().enumerate() {
        let others = infos
            .iter()
            .filter(|n| n.id != infos[i].id)
            .cloned()
            .collect();
        let mut config = ClusterConfig::new(infos[i].clone(), others).unwrap();
        // A TLS handshake in an unoptimised test build on a loaded 2-core
        // machine can outlast the default 50 ms RPC deadline (the heartbeat
        // interval): give the first connections room.
        config.heartbeat_interval = Duration::from_millis(200);
        config.election_timeout_min = Duration::from_millis(1000);
        config.election_timeout_max = Duration::from_millis(2000);
        let raft = RaftNode::builder(config)
            .storage(Storage::Memory)
            .options(NodeOptions::default().tls(client.clone()).bootstrap(false))
            .start()
            .await
            .unwrap();
        let routes = ClusterRoutes::raft(raft.clone());
        let app = routes.mount(Router::new());
        let (stop, stopped) = oneshot::channel();
        let hook = routes.shutdown_hook();
        servers.push((
            stop,
            serve_tls(listener, server.clone(), app, hook, stopped),
        ));
        nodes.push(raft);
    }

    // Bootstrap once every node serves HTTPS. Bootstrapping while the
    // servers were still being spawned left one node unreachable for the
    // whole test in about one run in five (TCP connects to and from it
    // refused); that start-up race is not understood yet and is tracked
    // separately from what this test checks.
    let members: std::collections::BTreeMap<_, _> = infos
        .iter()
        .map(|n| (n.id, openraft::BasicNode::new(n.endpoint.as_str())))
        .collect();
    nodes[0].raft().initialize(members).await.unwrap();

    // Elections and heartbeats travel over TLS: every node learns the leader.
    let mut leader_id = None;
    for node in &nodes {
        let leader = node.wait_for_leader(DEADLINE).await.unwrap();
        leader_id.get_or_insert(leader.id);
    }
    let leader = nodes
        .iter()
        .find(|n| Some(n.node().id) == leader_id)
        .unwrap();
    let mut leadership = leader.subscribe();
    tokio::time::timeout(DEADLINE, leadership.wait_for(|l| l.is_leader()))
        .await
        .expect("the leader's lease holds in time")
        .unwrap();

    // A write replicates to every node over TLS.
    let revision = leader.put("greeting", b"hello".to_vec()).await.unwrap();
    for node in &nodes {
        node.raft()
            .wait(Some(DEADLINE))
            .applied_index_at_least(Some(revision), "the put is applied")
            .await
            .unwrap();
        let value = node.state_machine().get("greeting").unwrap();
        assert_eq!(value.value, b"hello");
    }

    for (stop, server) in servers {
        let _ = stop.send(());
        server.abort();
    }
    for node in &nodes {
        node.stop_now().await;
    }
}

/// An HTTPS "leader" answering `POST /orders` with `leader`.
async fn https_leader(pki: &Pki) -> (NodeInfo, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/orders", post(|| async { "leader" }));
    let (stop, stopped) = oneshot::channel();
    serve_tls(
        listener,
        server_config(pki),
        app,
        ShutdownHook::none(),
        stopped,
    );
    let info = NodeInfo::new(
        NodeId::new(2),
        Endpoint::parse(&format!("https://{addr}")).unwrap(),
    );
    (info, stop)
}

/// A follower of `leader` whose writes go through `forwarder`.
fn follower(leader: NodeInfo, forwarder: AxumForwarder) -> Router {
    let coordinator = ManualCoordinator::new_follower();
    coordinator.set_follower(Some(leader));
    Router::new()
        .route("/orders", post(|| async { "follower" }))
        .layer(ForwardToLeaderLayer::with_forwarder(coordinator, forwarder).max_retries(0))
}

fn order() -> Request<Body> {
    Request::builder()
        .method(Method::POST)
        .uri("/orders")
        .body(Body::from("{}"))
        .unwrap()
}

#[tokio::test]
async fn the_http_forwarder_reaches_an_https_leader() {
    let pki = pki();
    let (leader, _stop) = https_leader(&pki).await;
    let app = follower(
        leader,
        AxumForwarder::with_tls(client_config(Some(&pki.ca))),
    );

    let response = tokio::time::timeout(DEADLINE, app.oneshot(order()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "leader");
}

#[tokio::test]
async fn a_forwarder_that_does_not_trust_the_leader_fails_to_connect() {
    let pki = pki();
    let (leader, _stop) = https_leader(&pki).await;
    let app = follower(leader, AxumForwarder::with_tls(client_config(None)));

    let response = tokio::time::timeout(DEADLINE, app.oneshot(order()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("forward-failed"),
        "{problem}"
    );
}

/// A CA and a certificate it signed for `host`.
fn leaf_of(ca: &CertifiedIssuer<'static, KeyPair>, host: &str) -> Pki {
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec![host.to_owned()])
        .unwrap()
        .signed_by(&key, ca)
        .unwrap();
    Pki {
        ca: ca.der().clone(),
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::from(key),
    }
}

fn test_ca() -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A client trusting `ca`, presenting `identity` when given.
fn mtls_client(ca: &CertificateDer<'static>, identity: Option<&Pki>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// Raft RPCs and forwarded commands need a member's client certificate;
/// other routes serve clients without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_routes_need_a_member_certificate() {
    let ca = test_ca();
    let server_id = leaf_of(&ca, "127.0.0.1");
    let member = leaf_of(&ca, "member.cluster.test");
    let stranger = leaf_of(&ca, "stranger.test");

    // Client certificates are verified against the CA, but optional at the
    // handshake: health probes and applications have none.
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let server = Arc::new(
        ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(server_id.chain.clone(), server_id.key.clone_key())
            .unwrap(),
    );
    let member_der = member.chain[0].clone();
    let routes = ClusterRoutes::new(ManualCoordinator::new_leader())
        .require_member_certificate(move |chain| chain.first() == Some(&member_der));
    let app = routes.mount(Router::new());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    let server_task = serve_tls(listener, server, app, routes.shutdown_hook(), stopped);

    let call = |config: Arc<ClientConfig>, path: &'static str| async move {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build::<_, Body>(catga_cluster_core::connector::tls(
                    hyper_util::client::legacy::connect::HttpConnector::new(),
                    config,
                ));
        let request = Request::builder()
            .method(if path.starts_with("/health") {
                Method::GET
            } else {
                Method::POST
            })
            .uri(format!("https://{addr}{path}"))
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let response = tokio::time::timeout(DEADLINE, client.request(request))
            .await
            .expect("an answer in time")
            .expect("an answer");
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    };

    let anonymous = mtls_client(ca.der(), None);
    let (status, body) = call(anonymous.clone(), "/cluster/forward/none").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("\"type\":\"forbidden\""), "{body}");
    let (status, body) = call(
        mtls_client(ca.der(), Some(&stranger)),
        "/cluster/forward/none",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("not valid for the host of any current member"),
        "{body}"
    );
    // A member passes: the command is unknown, but that is past the door.
    let (status, body) = call(
        mtls_client(ca.der(), Some(&member)),
        "/cluster/forward/none",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    // Health needs no certificate.
    let (status, body) = call(anonymous, "/health/live").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // A certificate from another CA does not even finish the handshake.
    let other_ca = test_ca();
    let forged = leaf_of(&other_ca, "member.cluster.test");
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Body>(catga_cluster_core::connector::tls(
        hyper_util::client::legacy::connect::HttpConnector::new(),
        mtls_client(ca.der(), Some(&forged)),
    ));
    let request = Request::post(format!("https://{addr}/cluster/forward/none"))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    let refused = tokio::time::timeout(DEADLINE, client.request(request))
        .await
        .expect("an answer in time");
    assert!(refused.is_err(), "{refused:?}");

    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, server_task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}
