//! The example's HTTP edge over real sockets: three nodes in one process,
//! each behind its own loopback listener, driven by a plain HTTP client.
//! Every rejection is a problem document with the contract's status and
//! slug, wherever the request arrives (leader or follower).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use order_system::app::RunningNode;
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(20);

type ReqBody = BoxBody<Bytes, Infallible>;

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Bytes,
}

impl Answer {
    /// Asserts a problem document with this status and slug.
    fn problem(&self, status: u16, slug: &str) -> Value {
        assert_eq!(
            self.status,
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json"),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let doc: Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(doc["type"], slug, "{doc}");
        assert_eq!(doc["status"], status, "{doc}");
        doc
    }
}

struct Nodes {
    addrs: Vec<SocketAddr>,
    nodes: Vec<RunningNode>,
    http: Client<HttpConnector, ReqBody>,
    _dir: tempfile::TempDir,
}

impl Nodes {
    async fn start() -> Nodes {
        let mut listeners = Vec::new();
        for _ in 0..3 {
            listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let infos: Vec<NodeInfo> = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                NodeInfo::new(
                    NodeId::new(i as u64),
                    Endpoint::parse(&format!("http://{a}")).unwrap(),
                )
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let others = infos
                .iter()
                .filter(|n| n.id.get() != i as u64)
                .cloned()
                .collect();
            let mut config = ClusterConfig::new(infos[i].clone(), others).unwrap();
            config.persistent_state_path = Some(dir.path().join(format!("node-{i}")));
            nodes.push(RunningNode::start(config, listener).await.unwrap());
        }
        Nodes {
            addrs,
            nodes,
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            _dir: dir,
        }
    }

    /// The leader once every node knows it, and a follower.
    async fn roles(&self) -> (usize, usize) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let leader = self.nodes.iter().position(|n| n.node.is_leader());
            if let Some(leader) = leader {
                let agreed = self
                    .nodes
                    .iter()
                    .all(|n| n.node.leadership().leader.map(|l| l.id.get()) == Some(leader as u64));
                if agreed {
                    return (leader, (leader + 1) % 3);
                }
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn send(&self, node: usize, request: http::request::Builder, body: ReqBody) -> Answer {
        let path = request
            .uri_ref()
            .and_then(|u| u.path_and_query())
            .map_or("/", |p| p.as_str())
            .to_owned();
        let request = request
            .uri(format!("http://{}{path}", self.addrs[node]))
            .body(body)
            .unwrap();
        let response = tokio::time::timeout(DEADLINE, self.http.request(request))
            .await
            .expect("an answer in time")
            .expect("an answer");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }
}

impl Nodes {
    /// Sends an oversized body over a raw socket while reading the answer:
    /// a server that refuses a body early closes the connection, and an
    /// ordinary client that is still writing sees only a broken pipe.
    async fn oversized(&self, node: usize, path: &str, total: usize, chunked: bool) -> Answer {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(self.addrs[node])
            .await
            .unwrap();
        let (mut read, mut write) = stream.into_split();
        let framing = if chunked {
            "transfer-encoding: chunked".to_owned()
        } else {
            format!("content-length: {total}")
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n{framing}\r\nconnection: close\r\n\r\n",
            self.addrs[node]
        );
        let writer = tokio::spawn(async move {
            write.write_all(head.as_bytes()).await?;
            let chunk = vec![b' '; 64 * 1024];
            let mut sent = 0;
            while sent < total {
                let n = chunk.len().min(total - sent);
                if chunked {
                    write.write_all(format!("{n:x}\r\n").as_bytes()).await?;
                    write.write_all(&chunk[..n]).await?;
                    write.write_all(b"\r\n").await?;
                } else {
                    write.write_all(&chunk[..n]).await?;
                }
                sent += n;
            }
            if chunked {
                write.write_all(b"0\r\n\r\n").await?;
            }
            Ok::<_, std::io::Error>(())
        });
        let mut raw = Vec::new();
        tokio::time::timeout(DEADLINE, read.read_to_end(&mut raw))
            .await
            .expect("an answer in time")
            .unwrap();
        writer.abort();
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete answer");
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let mut headers = http::HeaderMap::new();
        for line in lines {
            let (name, value) = line.split_once(':').unwrap();
            headers.append(
                http::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
                value.trim().parse().unwrap(),
            );
        }
        Answer {
            status,
            headers,
            body: Bytes::copy_from_slice(&raw[split + 4..]),
        }
    }
}

fn full(bytes: impl Into<Bytes>) -> ReqBody {
    Full::new(bytes.into()).boxed()
}

fn order() -> Bytes {
    Bytes::from_static(br#"{"customer":"ada","items":[{"sku":"a","quantity":1}]}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_is_a_problem_document_on_every_node() {
    let _one = crate::ONE_CLUSTER_AT_A_TIME.lock().await;
    let nodes = Nodes::start().await;
    let (leader, follower) = nodes.roles().await;
    let post = |path: &str| http::Request::post(path);

    for node in [leader, follower] {
        // A path that does not decode.
        nodes
            .send(node, http::Request::get("/orders/%ff"), full(""))
            .await
            .problem(400, "bad-request");
        // An unknown path.
        nodes
            .send(node, http::Request::get("/nowhere"), full(""))
            .await
            .problem(404, "not-found");
        // Methods the route does not serve: answered here, with Allow.
        for method in ["DELETE", "PATCH", "TRACE"] {
            let answer = nodes
                .send(
                    node,
                    http::Request::builder().method(method).uri("/orders"),
                    full(""),
                )
                .await;
            answer.problem(405, "method-not-allowed");
            let allow = answer.headers["allow"].to_str().unwrap();
            assert!(allow.contains("POST") && allow.contains("GET"), "{allow}");
            assert_eq!(
                answer.headers["x-catga-served-by"].to_str().unwrap(),
                node.to_string(),
                "a 405 is never forwarded"
            );
        }
        // Not JSON.
        nodes
            .send(
                node,
                post("/orders").header("content-type", "text/plain"),
                full(order()),
            )
            .await
            .problem(415, "unsupported-media-type");
        nodes
            .send(node, post("/orders"), full(order()))
            .await
            .problem(415, "unsupported-media-type");
        // JSON of the wrong shape, and no JSON at all.
        nodes
            .send(
                node,
                post("/orders").header("content-type", "application/json"),
                full(r#"{"customer": 5}"#),
            )
            .await
            .problem(400, "bad-request");
        nodes
            .send(
                node,
                post("/orders").header("content-type", "application/json"),
                full("{not json"),
            )
            .await
            .problem(400, "bad-request");
        // Too large: announced, and streamed (2.2 MB, chunked).
        for chunked in [false, true] {
            nodes
                .oversized(node, "/orders", 2_200_000, chunked)
                .await
                .problem(413, "payload-too-large");
        }
        // A hop count that is no hop count.
        for bad in ["abc", "-1", "", "4294967296", "1,1"] {
            let doc = nodes
                .send(
                    node,
                    post("/orders")
                        .header("content-type", "application/json")
                        .header("x-catga-forwarded", bad),
                    full(order()),
                )
                .await
                .problem(400, "bad-request");
            assert!(doc["detail"]
                .as_str()
                .unwrap()
                .contains("x-catga-forwarded"));
        }
        // A forwarded command over the cluster's limit, streamed through a
        // follower: 413, not 502.
        nodes
            .oversized(node, "/cluster/forward/anything", 2_200_000, true)
            .await
            .problem(413, "payload-too-large");
    }
    // A 508 names the real limit.
    let doc = nodes
        .send(
            follower,
            post("/orders")
                .header("content-type", "application/json")
                .header("x-catga-forwarded", "1"),
            full(order()),
        )
        .await
        .problem(508, "hop-limit");
    assert_eq!(doc["limit"], 1);
    assert_eq!(doc["hops"], 1);
    // And a good order still goes through a follower.
    let created = nodes
        .send(
            follower,
            post("/orders").header("content-type", "application/json"),
            full(order()),
        )
        .await;
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );

    for node in nodes.nodes {
        node.shutdown().await;
    }
}
