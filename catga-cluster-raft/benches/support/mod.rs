//! A 3-node cluster over real loopback HTTP for the benchmarks: each node
//! has its own hyper server serving the Raft RPC handler.
#![allow(dead_code, missing_docs, unreachable_pub, clippy::print_stdout)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::config::ClusterConfig;
use catga_cluster_core::protocol::{raft_rpc_path, RaftRpc};
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_raft::{RaftNode, RaftRpcHandler, Storage};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

async fn serve(listener: TcpListener, handler: RaftRpcHandler, stop: CancellationToken) {
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
        };
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let handler = handler.clone();
            async move {
                let rpc = RaftRpc::ALL
                    .into_iter()
                    .find(|r| raft_rpc_path(*r) == req.uri().path());
                let (parts, body) = req.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let response = match rpc {
                    Some(rpc) => match handler.handle(rpc, &parts.headers, &bytes).await {
                        Ok(answer) => Response::new(Full::new(answer)),
                        Err(e) => {
                            let mut r = Response::new(Full::new(Bytes::from(e.to_string())));
                            *r.status_mut() = e.status();
                            r
                        }
                    },
                    None => {
                        let mut r = Response::new(Full::new(Bytes::new()));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    }
                };
                Ok::<_, Infallible>(response)
            }
        });
        let stop = stop.clone();
        conns.spawn(async move {
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stop.cancelled() => {}
            }
        });
    }
    conns.shutdown().await;
}

pub struct Member {
    pub node: RaftNode,
    stop: CancellationToken,
    server: tokio::task::JoinHandle<()>,
}

pub struct Bench {
    addrs: BTreeMap<u64, SocketAddr>,
    dir: tempfile::TempDir,
    pub members: BTreeMap<u64, Member>,
}

impl Bench {
    /// Three nodes on free loopback ports, durable storage in a temporary
    /// directory, started and with a leader.
    pub async fn three_nodes() -> Bench {
        let mut addrs = BTreeMap::new();
        for i in 0..3u64 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addrs.insert(i, l.local_addr().unwrap());
        }
        let mut bench = Bench {
            addrs,
            dir: tempfile::tempdir().unwrap(),
            members: BTreeMap::new(),
        };
        for i in 0..3 {
            bench.start(i).await;
        }
        bench.wait_leader().await;
        bench
    }

    pub async fn stop_all(&mut self) {
        for i in self.members.keys().copied().collect::<Vec<_>>() {
            self.kill(i).await;
        }
    }

    fn config(&self, i: u64) -> ClusterConfig {
        let info = |j: u64| {
            NodeInfo::new(
                NodeId::new(j),
                Endpoint::parse(&format!("http://{}", self.addrs[&j])).unwrap(),
            )
        };
        let others = self
            .addrs
            .keys()
            .filter(|j| **j != i)
            .map(|j| info(*j))
            .collect();
        ClusterConfig::new(info(i), others).unwrap()
    }

    pub async fn start(&mut self, i: u64) {
        let listener = TcpListener::bind(self.addrs[&i]).await.unwrap();
        let node = RaftNode::builder(self.config(i))
            .storage(Storage::Disk(self.dir.path().join(format!("node{i}"))))
            .start()
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, node.rpc_handler(), stop.clone()));
        self.members.insert(i, Member { node, stop, server });
    }

    pub async fn kill(&mut self, i: u64) {
        let m = self.members.remove(&i).unwrap();
        m.stop.cancel();
        m.node.stop_now().await;
        let _ = m.server.await;
    }

    pub fn leader(&self) -> Option<u64> {
        self.members
            .iter()
            .find(|(_, m)| m.node.is_leader())
            .map(|(i, _)| *i)
    }

    pub async fn wait_leader(&self) -> u64 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.leader() {
                return l;
            }
            assert!(Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

pub fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name}: rounds={} min={:.1}ms p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
        samples.len(),
        ms(samples[0]),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(percentile(&samples, 0.99)),
        ms(*samples.last().unwrap()),
    );
}
