//! A 3-node cluster over real loopback sockets for the benchmarks: each node
//! has its own hyper server serving the Raft RPC handler, over plain HTTP or
//! over mutual TLS ([`Mode`]).
#![allow(dead_code, missing_docs, unreachable_pub, clippy::print_stdout)]

mod pki;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::config::{ClusterConfig, TlsConfig};
use catga_cluster_core::protocol::{raft_rpc_path, RaftRpc, RAFT_WATCH_PATH};
use catga_cluster_core::tls::ClusterTls;
use catga_cluster_core::{ClusterCoordinator, Endpoint, NodeId, NodeInfo};
use catga_cluster_raft::{NodeOptions, RaftNode, RaftRpcHandler, Storage};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// How the nodes talk to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `http://` endpoints.
    Plain,
    /// `https://` endpoints, mutual TLS: every node serves and presents its
    /// own certificate, signed by the cluster's CA, and the server refuses
    /// connections without a member's certificate.
    Tls,
}

impl Mode {
    pub const BOTH: [Mode; 2] = [Mode::Plain, Mode::Tls];

    /// The modes to run: both, or those named in `MODES` (`plain`, `tls`,
    /// comma-separated), for profiling one of them.
    pub fn from_env() -> Vec<Mode> {
        let Ok(names) = std::env::var("MODES") else {
            return Mode::BOTH.to_vec();
        };
        let modes: Vec<Mode> = Mode::BOTH
            .into_iter()
            .filter(|m| names.split(',').any(|n| n.trim() == m.name()))
            .collect();
        assert!(!modes.is_empty(), "MODES: expected plain, tls or plain,tls");
        modes
    }

    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Tls => "tls",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Mode::Plain => "plain HTTP",
            Mode::Tls => "mutual TLS",
        }
    }

    fn scheme(self) -> &'static str {
        match self {
            Mode::Plain => "http",
            Mode::Tls => "https",
        }
    }
}

/// What the servers of one cluster have accepted.
#[derive(Debug, Default)]
pub struct Stats {
    /// TCP connections accepted, by all nodes.
    pub connections: AtomicU64,
    /// TLS handshakes completed with a member's certificate.
    pub handshakes: AtomicU64,
    /// Their total time on the server, from the accepted TCP connection to
    /// the checked client certificate, in microseconds.
    handshake_micros: AtomicU64,
    /// Connections closed because the handshake failed or the client had no
    /// member's certificate.
    pub refused: AtomicU64,
    /// The protocol version and cipher suite of the last handshake.
    pub negotiated: Mutex<Option<String>>,
    /// Connections open now, by the node that accepted them.
    open: [AtomicU64; 3],
    /// The most connections open at once since [`Stats::reset_peak`], by
    /// the node that accepted them.
    peak: [AtomicU64; 3],
}

/// Counts a connection as open until dropped.
struct OpenConnection {
    stats: Arc<Stats>,
    node: usize,
}

impl OpenConnection {
    fn new(stats: Arc<Stats>, node: u64) -> Self {
        let node = usize::try_from(node).unwrap();
        let now = stats.open[node].fetch_add(1, Ordering::Relaxed) + 1;
        stats.peak[node].fetch_max(now, Ordering::Relaxed);
        OpenConnection { stats, node }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.stats.open[self.node].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }
    /// The mean time of a TLS handshake on the server side.
    pub fn mean_handshake(&self) -> Option<Duration> {
        let n = self.handshakes();
        (n > 0).then(|| Duration::from_micros(self.handshake_micros.load(Ordering::Relaxed) / n))
    }

    /// The TLS handshakes, their mean time, what was refused and what was
    /// negotiated, for the report.
    pub fn tls_summary(&self) -> String {
        format!(
            "{} TLS handshakes (mean {}), {} refused; negotiated: {}",
            self.handshakes(),
            self.mean_handshake()
                .map_or_else(|| "-".to_owned(), |d| format!("{:.2} ms", ms(d))),
            self.refused(),
            self.negotiated().unwrap_or_else(|| "-".to_owned()),
        )
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
    /// Connections open now on node `i`'s server.
    pub fn open(&self, i: u64) -> u64 {
        self.open[usize::try_from(i).unwrap()].load(Ordering::Relaxed)
    }

    /// The most connections open at once on node `i`'s server since the
    /// last [`reset_peak`](Self::reset_peak).
    pub fn peak(&self, i: u64) -> u64 {
        self.peak[usize::try_from(i).unwrap()].load(Ordering::Relaxed)
    }

    pub fn reset_peak(&self) {
        for (open, peak) in self.open.iter().zip(&self.peak) {
            peak.store(open.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    pub fn negotiated(&self) -> Option<String> {
        self.negotiated
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn answer(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut r = Response::new(Full::new(body).boxed());
    *r.status_mut() = status;
    r
}

/// Serves one connection until it ends or `stop`: the Raft RPCs and the
/// leader watch.
async fn serve_connection<I>(io: I, handler: RaftRpcHandler, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        async move {
            if req.uri().path() == RAFT_WATCH_PATH {
                let response = match handler.watch(req.headers()) {
                    Ok(watch) => Response::new(watch.boxed()),
                    Err(e) => answer(e.status(), Bytes::from(e.to_string())),
                };
                return Ok::<_, Infallible>(response);
            }
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
                    Ok(body) => answer(StatusCode::OK, body),
                    Err(e) => answer(e.status(), Bytes::from(e.to_string())),
                },
                None => answer(StatusCode::NOT_FOUND, Bytes::new()),
            };
            Ok::<_, Infallible>(response)
        }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = stop.cancelled() => {}
    }
}

async fn serve(
    node: u64,
    listener: TcpListener,
    handler: RaftRpcHandler,
    tls: Option<ClusterTls>,
    stats: Arc<Stats>,
    stop: CancellationToken,
) {
    let acceptor = tls.as_ref().map(|t| TlsAcceptor::from(t.server_config()));
    let mut conns = JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted { Ok(a) => a, Err(_) => continue },
        };
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let open = OpenConnection::new(stats.clone(), node);
        let handler = handler.clone();
        let stop = stop.clone();
        let stats = stats.clone();
        let tls = tls.clone();
        let acceptor = acceptor.clone();
        conns.spawn(async move {
            let _open = open;
            let (Some(acceptor), Some(tls)) = (acceptor, tls) else {
                return serve_connection(stream, handler, stop).await;
            };
            let started = Instant::now();
            let handshake = tokio::select! {
                h = acceptor.accept(stream) => h,
                () = stop.cancelled() => return,
            };
            let Ok(stream) = handshake else {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            // Members only, checked once per connection: the client's chain
            // must lead to the CA and be valid for a member's host.
            let (_, session) = stream.get_ref();
            let member = session
                .peer_certificates()
                .is_some_and(|chain| tls.certificate_valid_for(chain, pki::HOST));
            if !member {
                stats.refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            stats.handshake_micros.fetch_add(micros, Ordering::Relaxed);
            stats.handshakes.fetch_add(1, Ordering::Relaxed);
            let negotiated = format!(
                "{}, {}",
                session
                    .protocol_version()
                    .map_or_else(|| "-".to_owned(), |v| format!("{v:?}")),
                session
                    .negotiated_cipher_suite()
                    .map_or_else(|| "-".to_owned(), |s| format!("{:?}", s.suite())),
            );
            *stats.negotiated.lock().unwrap_or_else(|e| e.into_inner()) = Some(negotiated);
            serve_connection(stream, handler, stop).await;
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
    pub mode: Mode,
    addrs: BTreeMap<u64, SocketAddr>,
    dir: tempfile::TempDir,
    /// Each node's `Cluster.Tls` section and the material loaded from it
    /// (empty in plain mode).
    tls: BTreeMap<u64, (TlsConfig, ClusterTls)>,
    pub stats: Arc<Stats>,
    pub members: BTreeMap<u64, Member>,
}

impl Bench {
    /// Three nodes on free loopback ports, durable storage in a temporary
    /// directory (and, with TLS, a CA and node certificates made for the
    /// run), started and with a leader.
    pub async fn three_nodes(mode: Mode) -> Bench {
        let mut addrs = BTreeMap::new();
        for i in 0..3u64 {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            addrs.insert(i, l.local_addr().unwrap());
        }
        let dir = tempfile::tempdir().unwrap();
        let mut tls = BTreeMap::new();
        if mode == Mode::Tls {
            let ca = pki::Ca::new();
            for i in addrs.keys() {
                let config = ca.node(*i, &dir.path().join(format!("tls{i}")));
                let material = ClusterTls::from_config(&config, pki::HOST).unwrap();
                tls.insert(*i, (config, material));
            }
        }
        let mut bench = Bench {
            mode,
            addrs,
            dir,
            tls,
            stats: Arc::new(Stats::default()),
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
                Endpoint::parse(&format!("{}://{}", self.mode.scheme(), self.addrs[&j])).unwrap(),
            )
        };
        let mut config = ClusterConfig::single_node(info(i));
        config.members = self
            .addrs
            .keys()
            .filter(|j| **j != i)
            .map(|j| info(*j))
            .collect();
        config.tls = self.tls.get(&i).map(|(c, _)| c.clone());
        config.validate().unwrap();
        config
    }

    pub async fn start(&mut self, i: u64) {
        let listener = TcpListener::bind(self.addrs[&i]).await.unwrap();
        let tls = self.tls.get(&i).map(|(_, material)| material.clone());
        let mut options = NodeOptions::default();
        if std::env::var("FAST_FAILOVER").is_ok_and(|v| v == "off") {
            options = options.fast_failover(false);
        }
        if let Some(tls) = &tls {
            options = options.tls(tls.client_config());
        }
        let node = RaftNode::builder(self.config(i))
            .storage(Storage::Disk(self.dir.path().join(format!("node{i}"))))
            .options(options)
            .start()
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(
            i,
            listener,
            node.rpc_handler(),
            tls,
            self.stats.clone(),
            stop.clone(),
        ));
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

/// Order statistics of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

pub fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    Summary {
        n: samples.len(),
        min: samples[0],
        p50: percentile(&samples, 0.5),
        p90: percentile(&samples, 0.9),
        p99: percentile(&samples, 0.99),
        max: *samples.last().unwrap(),
    }
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub fn report(name: &str, samples: Vec<Duration>) -> Summary {
    let s = summarize(samples);
    println!(
        "{name}: rounds={} min={:.1}ms p50={:.1}ms p90={:.1}ms p99={:.1}ms max={:.1}ms",
        s.n,
        ms(s.min),
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
    );
    s
}

/// The CPU time (user + system, all threads) this process has used so far,
/// from `/proc/self/stat`, in 10 ms clock ticks (`CLK_TCK` = 100); `None`
/// where that file is not available.
pub fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may hold spaces; the fields
    // after it start with the third, so utime (14th) and stime (15th) are
    // the 12th and 13th.
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// An environment variable as a number, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
