//! A three-node cluster over real sockets on `127.0.0.1:0`, each node
//! served with `catga_cluster_axum::serve`: forwarding to the leader, the
//! hop limit, typed commands, lock waiters served in arrival order, a
//! graceful shutdown of the leader during a stream of writes, and
//! membership changes that must not brick the cluster.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use catga_cluster_axum::{serve, ClusterRoutes, CommandRegistry, ShutdownHook};
use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::protocol::{FORWARDED_HEADER, SERVED_BY_HEADER};
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_raft::{NodeOptions, RaftNode, Storage};
use catga_cluster_tower::{ForwardToLeaderLayer, JsonForwarder, PlainPolicy};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower::{Layer, ServiceExt};

use crate::common::SERIAL;

mod sse;

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct Sum {
    sum: i64,
    by: u64,
}

struct Node {
    id: NodeId,
    addr: SocketAddr,
    raft: RaftNode,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

struct Cluster {
    nodes: Vec<Node>,
}

/// `POST /orders`: runs on the leader (forwarded there from followers),
/// stores the order in the replicated store and says who ran it.
async fn create_order(State(node): State<RaftNode>, body: Bytes) -> Result<String, StatusCode> {
    let id = node.state_machine().last_applied().map_or(0, |l| l.index);
    node.put(&format!("orders/{id}"), body.to_vec())
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    Ok(format!("{}", node.node().id))
}

/// The node's router, and the hook `serve` runs on shutdown.
fn app(node: &RaftNode) -> (Router, ShutdownHook) {
    let me = node.node().id.get();
    let mut commands = CommandRegistry::new();
    commands
        .register(
            "add",
            tower::service_fn(move |cmd: Add| async move {
                Ok::<_, Infallible>(Sum {
                    sum: cmd.a + cmd.b,
                    by: me,
                })
            }),
        )
        .unwrap();
    let routes = ClusterRoutes::raft(node.clone()).commands(commands);
    let orders = Router::new()
        .route("/orders", post(create_order))
        .route_layer(ForwardToLeaderLayer::new(node.clone()))
        .route_layer(routes.edge_layer())
        .with_state(node.clone());
    (routes.mount(orders), routes.shutdown_hook())
}

impl Cluster {
    async fn start() -> Cluster {
        Cluster::start_with(NodeOptions::default()).await
    }

    async fn start_with(options: NodeOptions) -> Cluster {
        let mut listeners = Vec::new();
        let mut infos = Vec::new();
        for i in 1..=3u64 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            infos.push(NodeInfo::new(
                NodeId::new(i),
                Endpoint::parse(&format!("http://{addr}")).unwrap(),
            ));
            listeners.push((listener, addr));
        }
        let mut nodes = Vec::new();
        for (i, (listener, addr)) in listeners.into_iter().enumerate() {
            let others = infos
                .iter()
                .filter(|n| n.id != infos[i].id)
                .cloned()
                .collect();
            let config = ClusterConfig::new(infos[i].clone(), others).unwrap();
            let raft = RaftNode::builder(config)
                .storage(Storage::Memory)
                .options(options.clone())
                .start()
                .await
                .unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            let (app, hook) = app(&raft);
            let server = tokio::spawn(
                serve(listener, app, hook, async {
                    let _ = stopped.await;
                })
                .drain_timeout(Duration::from_secs(10))
                .into_future(),
            );
            nodes.push(Node {
                id: infos[i].id,
                addr,
                raft,
                stop: Some(stop),
                server: Some(server),
            });
        }
        let cluster = Cluster { nodes };
        for node in &cluster.nodes {
            node.raft.wait_for_leader(DEADLINE).await.unwrap();
        }
        cluster
    }

    /// The node that leads under a valid lease, waiting for one.
    async fn leader(&self) -> &Node {
        let live = self.nodes.iter().find(|n| n.server.is_some()).unwrap();
        let info = live.raft.wait_for_leader(DEADLINE).await.unwrap();
        let node = self.nodes.iter().find(|n| n.id == info.id).unwrap();
        let mut rx = node.raft.subscribe();
        tokio::time::timeout(DEADLINE, rx.wait_for(|l| l.is_leader()))
            .await
            .expect("the leader's lease holds in time")
            .unwrap();
        node
    }

    async fn stop_all(mut self) {
        for node in &mut self.nodes {
            if let Some(server) = node.server.take() {
                server.abort();
            }
            node.raft.stop_now().await;
        }
    }
}

#[derive(Clone)]
struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Http {
    fn new() -> Self {
        Http {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        }
    }

    async fn call(
        &self,
        method: Method,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Reply, String> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let request = builder
            .body(Full::new(Bytes::from(body.to_owned())))
            .unwrap();
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        tokio::time::timeout(Duration::from_secs(15), exchange)
            .await
            .map_err(|_| "no answer in time".to_owned())?
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_sent_to_a_follower_is_served_by_the_leader() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start().await;
    let http = Http::new();
    let leader = cluster.leader().await;
    let leader_id = leader.id;
    let follower = cluster.nodes.iter().find(|n| n.id != leader_id).unwrap();

    let reply = http
        .call(
            Method::POST,
            follower.addr,
            "/orders",
            &[],
            "{\"customer\":\"c\"}",
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    // The handler runs only where leadership holds, and the answer names
    // the node that ran it: the leader, not the follower asked.
    let served_by = reply.headers[SERVED_BY_HEADER].to_str().unwrap();
    assert_eq!(reply.body, served_by);
    assert_ne!(served_by, follower.id.to_string());
    assert_eq!(served_by, leader_id.to_string());

    // The key-value routes work on any node.
    let put = http
        .call(
            Method::PUT,
            follower.addr,
            "/cluster/kv/greeting",
            &[],
            "hello",
        )
        .await
        .unwrap();
    assert_eq!(put.status, 200);
    let other = cluster
        .nodes
        .iter()
        .find(|n| n.id != leader_id && n.id != follower.id)
        .unwrap();
    let got = http
        .call(Method::GET, other.addr, "/cluster/kv/greeting", &[], "")
        .await
        .unwrap();
    assert_eq!(
        (got.status, got.body.as_ref()),
        (StatusCode::OK, &b"hello"[..])
    );

    // A typed command sent from a follower runs on the leader.
    let forwarder = ForwardToLeaderLayer::with_forwarder(
        follower.raft.clone(),
        JsonForwarder::<Add, Sum>::new("add", None),
    )
    .policy(PlainPolicy)
    .layer(tower::service_fn(|_: Add| async {
        Err::<Sum, catga_cluster_core::BoxError>("must not run on a follower".into())
    }));
    let sum = forwarder.oneshot(Add { a: 20, b: 22 }).await.unwrap();
    assert_eq!(
        sum,
        Sum {
            sum: 42,
            by: leader_id.get()
        }
    );

    // A follower's status names the leader; only the leader passes /health/leader.
    let status: serde_json::Value = serde_json::from_slice(
        &http
            .call(Method::GET, follower.addr, "/cluster/status", &[], "")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(status["leader"]["id"], leader_id.get());
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    let on_leader = http
        .call(Method::GET, leader.addr, "/health/leader", &[], "")
        .await
        .unwrap();
    assert_eq!(on_leader.status, 200);
    let on_follower = http
        .call(Method::GET, follower.addr, "/health/leader", &[], "")
        .await
        .unwrap();
    assert_eq!(on_follower.status, 503);

    // An admin request sent to a follower is forwarded to the leader, which
    // hands leadership to the node named.
    let moved = http
        .call(
            Method::POST,
            other.addr,
            "/cluster/leadership/transfer",
            &[("content-type", "application/json")],
            &format!("{{\"to\": {}}}", follower.id),
        )
        .await
        .unwrap();
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    let doc: serde_json::Value = serde_json::from_slice(&moved.body).unwrap();
    assert_eq!(doc["leader"]["id"], follower.id.get());
    assert_ne!(
        moved.headers[SERVED_BY_HEADER].to_str().unwrap(),
        other.id.to_string(),
        "served by the leader, not the node asked"
    );
    let mut rx = follower.raft.subscribe();
    tokio::time::timeout(DEADLINE, rx.wait_for(|l| l.is_leader()))
        .await
        .expect("the named node leads")
        .unwrap();
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_hop_header_gets_508() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start().await;
    let http = Http::new();
    let leader_id = cluster.leader().await.id;
    let follower = cluster.nodes.iter().find(|n| n.id != leader_id).unwrap();
    for path in ["/orders", "/cluster/forward/add"] {
        let reply = http
            .call(
                Method::POST,
                follower.addr,
                path,
                &[
                    (FORWARDED_HEADER, "1"),
                    ("content-type", "application/json"),
                ],
                "{\"a\":1,\"b\":2}",
            )
            .await
            .unwrap();
        assert_eq!(reply.status.as_u16(), 508, "{path}: {:?}", reply.body);
        let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(doc["type"], "hop-limit");
        assert_eq!(
            reply.headers["content-type"].to_str().unwrap(),
            "application/problem+json"
        );
    }
    cluster.stop_all().await;
}

/// Waits until `node` shows `expected` queued for lock `name`.
async fn wait_for_queue(node: &RaftNode, name: &str, expected: &[&str]) {
    let mut applied = node.state_machine().subscribe();
    tokio::time::timeout(DEADLINE, async {
        while node.state_machine().lock_queue(name) != expected {
            applied.changed().await.unwrap();
        }
    })
    .await
    .unwrap_or_else(|_| panic!("queue {expected:?} in time"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_waiters_over_http_are_granted_in_arrival_order_and_a_dropped_one_leaves() {
    let _serial = SERIAL.lock().await;
    let cluster = Cluster::start().await;
    let http = Http::new();
    let leader = cluster.leader().await;
    let json = [("content-type", "application/json")];
    let acquire = |owner: &str, wait_ms: u64| {
        format!("{{\"owner\":\"{owner}\",\"ttl_ms\":30000,\"wait_ms\":{wait_ms}}}")
    };
    let path = "/cluster/locks/job/acquire";
    let held = http
        .call(
            Method::POST,
            leader.addr,
            path,
            &json,
            &acquire("holder", 0),
        )
        .await
        .unwrap();
    assert_eq!(held.status, 200, "{:?}", held.body);
    let held: serde_json::Value = serde_json::from_slice(&held.body).unwrap();
    let first = held["token"].as_u64().unwrap();
    let busy = http
        .call(Method::POST, leader.addr, path, &json, &acquire("eager", 0))
        .await
        .unwrap();
    assert_eq!(busy.status, 409);

    // Four waiters through the three nodes, each queued before the next
    // one asks. Each releases as soon as it holds the lock, so the order of
    // the records is the order of the grants.
    let granted = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut waiters = Vec::new();
    let mut queued: Vec<String> = Vec::new();
    for i in 0..4 {
        let owner = format!("w{i}");
        let addr = cluster.nodes[i % 3].addr;
        let (http, granted, body) = (http.clone(), granted.clone(), acquire(&owner, 15_000));
        waiters.push(tokio::spawn(async move {
            let json = [("content-type", "application/json")];
            let reply = http
                .call(Method::POST, addr, path, &json, &body)
                .await
                .unwrap();
            assert_eq!(reply.status, 200, "{owner}: {:?}", reply.body);
            let grant: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
            let token = grant["token"].as_u64().unwrap();
            granted.lock().unwrap().push((owner.clone(), token));
            let release = format!("{{\"owner\":\"{owner}\",\"token\":{token}}}");
            let path = "/cluster/locks/job/release";
            let released = http
                .call(Method::POST, addr, path, &json, &release)
                .await
                .unwrap();
            assert_eq!(released.status, 200, "{owner}: {:?}", released.body);
        }));
        queued.push(format!("w{i}"));
        let expected: Vec<&str> = queued.iter().map(String::as_str).collect();
        wait_for_queue(&leader.raft, "job", &expected).await;
    }
    // The client of w1 goes away: its request is dropped, and the node that
    // served it takes it out of the queue.
    waiters.remove(1).abort();
    wait_for_queue(&leader.raft, "job", &["w0", "w2", "w3"]).await;

    let release = format!("{{\"owner\":\"holder\",\"token\":{first}}}");
    let released = http
        .call(
            Method::POST,
            leader.addr,
            "/cluster/locks/job/release",
            &json,
            &release,
        )
        .await
        .unwrap();
    assert_eq!(released.status, 200, "{:?}", released.body);
    for waiter in waiters {
        waiter.await.unwrap();
    }
    let granted = granted.lock().unwrap().clone();
    let order: Vec<&str> = granted.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(order, ["w0", "w2", "w3"]);
    let tokens: Vec<u64> = granted.iter().map(|(_, t)| *t).collect();
    assert!(
        tokens.windows(2).all(|w| w[0] < w[1]) && tokens[0] > first,
        "{first} then {tokens:?}"
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_of_the_leader_loses_no_write() {
    let _serial = SERIAL.lock().await;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut cluster = Cluster::start().await;
    let http = Http::new();
    let leader_id = cluster.leader().await.id;
    let addrs: Vec<(NodeId, SocketAddr)> = cluster.nodes.iter().map(|n| (n.id, n.addr)).collect();
    let leader_index = cluster
        .nodes
        .iter()
        .position(|n| n.id == leader_id)
        .unwrap();

    const WRITERS: usize = 4;
    const PER_WRITER: usize = 30;
    let acked = Arc::new(tokio::sync::Notify::new());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let http = http.clone();
        let addrs = addrs.clone();
        let acked = acked.clone();
        let count = count.clone();
        writers.push(tokio::spawn(async move {
            let mut written = BTreeMap::new();
            // Every writer starts on the leader and moves on when it is refused.
            let mut target = leader_index;
            for i in 0..PER_WRITER {
                let key = format!("stream/{w}/{i}");
                let value = format!("value-{w}-{i}");
                let deadline = tokio::time::Instant::now() + DEADLINE;
                let revision = loop {
                    let result = http
                        .call(
                            Method::PUT,
                            addrs[target].1,
                            &format!("/cluster/kv/{key}"),
                            &[],
                            &value,
                        )
                        .await;
                    match result {
                        Ok(reply) if reply.status == StatusCode::OK => {
                            break reply.headers["x-catga-revision"]
                                .to_str()
                                .unwrap()
                                .parse::<u64>()
                                .unwrap();
                        }
                        // Refused (stopping node, no leader yet) or not
                        // connected: the same idempotent write goes to the
                        // next node.
                        Ok(reply) => assert!(
                            reply.status.is_server_error(),
                            "{key}: {} {:?}",
                            reply.status,
                            reply.body
                        ),
                        Err(_) => {}
                    }
                    assert!(
                        tokio::time::Instant::now() < deadline,
                        "{key} never written"
                    );
                    target = (target + 1) % addrs.len();
                };
                written.insert(key, (value, revision));
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                acked.notify_waiters();
            }
            written
        }));
    }

    // Once a few writes are in, stop the leader gracefully.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while count.load(std::sync::atomic::Ordering::SeqCst) < 20 {
        let notified = acked.notified();
        if count.load(std::sync::atomic::Ordering::SeqCst) >= 20 {
            break;
        }
        assert!(
            tokio::time::timeout_at(deadline, notified).await.is_ok(),
            "the writes did not start"
        );
    }
    let old = &mut cluster.nodes[leader_index];
    let _ = old.stop.take().unwrap().send(());
    let server = old.server.take().unwrap();
    let served = tokio::time::timeout(DEADLINE, server)
        .await
        .expect("the leader's server stops in time")
        .unwrap();
    served.unwrap();
    assert!(!old.raft.health().running, "raft stops with the server");

    let mut all = BTreeMap::new();
    for writer in writers {
        all.extend(writer.await.unwrap());
    }
    assert_eq!(all.len(), WRITERS * PER_WRITER);

    // A survivor leads, and every acknowledged write is there.
    let survivor = cluster.nodes.iter().find(|n| n.id != leader_id).unwrap();
    // A survivor may still hold the old leader in its snapshot for a moment:
    // wait (bounded) until it names another one.
    let mut view = survivor.raft.subscribe();
    let new_leader = tokio::time::timeout(
        DEADLINE,
        view.wait_for(|l| l.leader_id().is_some_and(|id| id != leader_id)),
    )
    .await
    .expect("a new leader within the deadline")
    .unwrap()
    .leader_id()
    .unwrap();
    assert_ne!(new_leader, leader_id);
    for (key, (value, revision)) in &all {
        let reply = http
            .call(
                Method::GET,
                survivor.addr,
                &format!("/cluster/kv/{key}"),
                &[],
                "",
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "{key} lost");
        assert_eq!(reply.body, value.as_bytes(), "{key}");
        let stored: u64 = reply.headers["x-catga-revision"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(stored >= *revision, "{key}");
    }
    cluster.stop_all().await;
}

/// Waits (bounded) on the node's Raft metrics, which change with every
/// heartbeat, until `condition` holds.
async fn wait_on_metrics(node: &RaftNode, what: &str, condition: impl Fn(&RaftNode) -> bool) {
    let mut metrics = node.raft().metrics();
    tokio::time::timeout(DEADLINE, async {
        while !condition(node) {
            if metrics.changed().await.is_err() {
                panic!("raft stopped while waiting for {what}");
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adding_a_member_nobody_serves_is_504_and_changes_no_voter() {
    let _serial = SERIAL.lock().await;
    let mut cluster =
        Cluster::start_with(NodeOptions::default().catch_up_timeout(Duration::from_secs(1))).await;
    let http = Http::new();
    let leader_id = cluster.leader().await.id;
    let follower = cluster.nodes.iter().find(|n| n.id != leader_id).unwrap();
    // A port nothing listens on any more.
    let dead = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };

    // Sent to a follower: forwarded to the leader, whose answer comes back.
    let reply = http
        .call(
            Method::POST,
            follower.addr,
            "/cluster/members",
            &[("content-type", "application/json")],
            &format!("{{\"id\": 9, \"endpoint\": \"http://{dead}\"}}"),
        )
        .await
        .unwrap();
    assert_eq!(reply.status.as_u16(), 504, "{:?}", reply.body);
    assert_eq!(
        reply.headers["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let doc: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(doc["type"], "member-unreachable", "{doc}");
    assert_eq!(doc["status"], 504);
    assert_eq!(doc["member"], 9);
    assert_eq!(
        reply.headers[SERVED_BY_HEADER].to_str().unwrap(),
        leader_id.to_string()
    );

    let leader = cluster.leader().await;
    let status: serde_json::Value = serde_json::from_slice(
        &http
            .call(Method::GET, leader.addr, "/cluster/status", &[], "")
            .await
            .unwrap()
            .body,
    )
    .unwrap();
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{status}");
    assert!(members.iter().all(|m| m["voter"] == true), "{status}");
    let ready = http
        .call(Method::GET, leader.addr, "/health/ready", &[], "")
        .await
        .unwrap();
    assert_eq!(ready.status, 200);

    // A voter stops: the leader still has its quorum, and says a voter is
    // missing.
    let leader_raft = leader.raft.clone();
    let leader_addr = leader.addr;
    let victim = cluster
        .nodes
        .iter_mut()
        .find(|n| n.id != leader_id)
        .unwrap();
    let victim_id = victim.id;
    let _ = victim.stop.take().unwrap().send(());
    tokio::time::timeout(DEADLINE, victim.server.take().unwrap())
        .await
        .expect("the stopped node's server ends in time")
        .unwrap()
        .unwrap();
    wait_on_metrics(
        &leader_raft,
        "the stopped voter to count as unreachable",
        |n| n.health().unreachable_voters == vec![victim_id],
    )
    .await;
    let ready = http
        .call(Method::GET, leader_addr, "/health/ready", &[], "")
        .await
        .unwrap();
    assert_eq!(ready.status, 200, "degraded still serves");
    let body: serde_json::Value = serde_json::from_slice(&ready.body).unwrap();
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["reason"], "voter-unreachable", "{body}");
    cluster.stop_all().await;
}

/// Waits (bounded, polling) until `condition` holds: for state that no
/// leadership or metrics change announces (the leader watches).
async fn poll_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The leader's server future is dropped (its task aborted) while the
/// process, and its Raft node, run on: the node stops claiming leadership
/// before the listener closes and ends its leader watches properly, so
/// the followers, whose fresh connections are now refused, never take the
/// crash fast path; the election timers elect a successor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_listener_closes_while_it_runs_is_not_taken_for_dead() {
    let _serial = SERIAL.lock().await;
    let mut cluster = Cluster::start().await;
    let leader_id = cluster.leader().await.id;
    let followers: Vec<RaftNode> = cluster
        .nodes
        .iter()
        .filter(|n| n.id != leader_id)
        .map(|n| n.raft.clone())
        .collect();
    // The followers watch the leader over HTTP, through the router.
    poll_until("the followers watching the leader", || {
        followers
            .iter()
            .all(|f| f.failover_status().watching == Some(leader_id))
    })
    .await;

    let old = cluster
        .nodes
        .iter_mut()
        .find(|n| n.id == leader_id)
        .unwrap();
    let server = old.server.take().unwrap();
    server.abort();
    let _ = server.await;
    let raft = old.raft.clone();
    assert!(!raft.is_leader(), "no claim once the listener closed");
    assert!(raft.health().running, "the node itself runs on");

    let mut view = followers[0].subscribe();
    tokio::time::timeout(
        DEADLINE,
        view.wait_for(|l| l.leader_id().is_some_and(|id| id != leader_id)),
    )
    .await
    .expect("a new leader within the deadline")
    .unwrap();
    let new = followers
        .iter()
        .find(|f| f.leadership().leader_id() == Some(f.node().id))
        .or_else(|| followers.iter().find(|f| f.is_leader()));
    let new = new.expect("the new leader is one of the followers");
    wait_on_metrics(new, "the fail-over record", |n| {
        n.failover_status().last.is_some()
    })
    .await;
    let last = new.failover_status().last.unwrap();
    assert_eq!(last.path, catga_cluster_core::FailoverPath::Timer);
    assert_eq!(last.previous_leader, Some(leader_id));
    for node in followers.iter().chain([&raft]) {
        assert_eq!(
            node.failover_counts()
                .count(catga_cluster_core::FailoverPath::Fast),
            0
        );
    }
    assert!(!raft.is_leader());
    cluster.stop_all().await;
}
