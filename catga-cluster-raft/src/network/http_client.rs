//! The HTTP client side of the Raft transport.
//!
//! One pooled hyper-util client per node serves every peer: connections are
//! kept alive and reused across RPCs. Each RPC is bounded by openraft's hard
//! TTL; a connection that cannot be made is reported as `Unreachable`, so
//! openraft backs off from that peer instead of hammering it.
//!
//! The client stands alone: it is given what it needs as values
//! ([`HttpClientConfig`]: the local node id, the cluster secret and, with the
//! `tls` feature, a TLS client configuration) and each RPC's deadline, and
//! knows nothing of the node. With a TLS configuration, peers whose
//! endpoints are `https://` are reached over TLS (a failed handshake is
//! `Unreachable` too); `http://` peers stay plain.

#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::config::ClusterSecret;
use catga_cluster_core::connector::{self, Connector};
use catga_cluster_core::protocol::{raft_rpc_path, RaftRpc, RAFT_WATCH_PATH, TARGET_NODE_HEADER};
use catga_cluster_core::{Endpoint, NodeId};
use http::header::{AUTHORIZATION, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::network::failure::Failure;
#[cfg(feature = "test-util")]
use crate::network::faults::{NetFaults, Plan};
use crate::network::liveness::{probe_endpoint, Probe, WatchEvent};
use crate::network::wire::{decode, encode, FrameReader, CONTENT_TYPE};

/// The largest RPC answer accepted, in bytes.
const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// What the client of one node needs to know, as plain values.
#[derive(Clone)]
pub(crate) struct HttpClientConfig {
    /// The node that sends the RPCs.
    pub(crate) local: NodeId,
    /// The cluster secret, sent as a bearer token.
    pub(crate) secret: Option<ClusterSecret>,
    /// The TLS configuration for `https://` peers; without one, only
    /// `http://` peers are reached.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// The faults injected into every request (tests only).
    #[cfg(feature = "test-util")]
    pub(crate) faults: Option<NetFaults>,
}

type HttpClient = Client<Connector, Full<Bytes>>;

/// Builds one [`HttpNetwork`] per peer, all sharing one pooled client.
#[derive(Clone)]
pub(crate) struct HttpNetworkFactory {
    client: HttpClient,
    local: NodeId,
    authorization: Option<HeaderValue>,
    #[cfg(feature = "test-util")]
    faults: Option<NetFaults>,
}

impl std::fmt::Debug for HttpNetworkFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpNetworkFactory")
            .field("local", &self.local)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl HttpNetworkFactory {
    /// A factory for the node and with the settings of `config`.
    pub(crate) fn new(config: HttpClientConfig) -> Self {
        let http = connector::tcp();
        #[cfg(feature = "tls")]
        let connector = match config.tls {
            Some(tls) => connector::tls(http, tls),
            None => connector::plain(http),
        };
        #[cfg(not(feature = "tls"))]
        let connector = connector::plain(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(8)
            .build(connector);
        let authorization = config
            .secret
            .and_then(|s| catga_cluster_core::protocol::bearer_header_value(s.expose()).ok());
        HttpNetworkFactory {
            client,
            local: config.local,
            authorization,
            #[cfg(feature = "test-util")]
            faults: config.faults,
        }
    }

    pub(crate) fn peer(&self, target: NodeId, addr: &str) -> HttpNetwork {
        HttpNetwork {
            client: self.client.clone(),
            local: self.local,
            target,
            endpoint: Endpoint::parse(addr).map_err(|e| e.to_string()),
            authorization: self.authorization.clone(),
            #[cfg(feature = "test-util")]
            faults: self.faults.clone(),
        }
    }
}

/// The Raft RPC client for one peer.
pub(crate) struct HttpNetwork {
    client: HttpClient,
    local: NodeId,
    target: NodeId,
    endpoint: Result<Endpoint, String>,
    authorization: Option<HeaderValue>,
    #[cfg(feature = "test-util")]
    faults: Option<NetFaults>,
}

impl std::fmt::Debug for HttpNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpNetwork")
            .field("target", &self.target)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl HttpNetwork {
    pub(crate) fn target(&self) -> NodeId {
        self.target
    }

    pub(crate) fn local(&self) -> NodeId {
        self.local
    }

    fn endpoint(&self) -> Result<&Endpoint, Failure> {
        self.endpoint
            .as_ref()
            .map_err(|reason| Failure::Unreachable {
                target: self.target,
                reason: reason.clone(),
            })
    }

    /// Opens the leader watch on this peer: the answer's head within `ttl`,
    /// then a body that lasts as long as the peer leads.
    pub(crate) async fn watch(&self, ttl: Duration) -> Result<HttpWatch, Failure> {
        let target = self.target;
        let endpoint = self.endpoint()?;
        let mut builder = Request::builder()
            .method(Method::GET)
            .uri(format!("{endpoint}{RAFT_WATCH_PATH}"))
            .header(TARGET_NODE_HEADER, target.get());
        if let Some(auth) = &self.authorization {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let request = builder
            .body(Full::new(Bytes::new()))
            .map_err(|e| Failure::Network {
                target,
                reason: e.to_string(),
            })?;
        let opened = async {
            #[cfg(feature = "test-util")]
            if let Some(faults) = &self.faults {
                faulty_open(faults, self.local, target).await;
            }
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| connect_failure(target, &e))?;
            #[cfg(feature = "test-util")]
            if let Some(faults) = &self.faults {
                if faults.answer_lost(self.local, target) {
                    std::future::pending::<()>().await;
                }
            }
            let status = response.status();
            if status == StatusCode::OK {
                return Ok(response.into_body());
            }
            let bytes = Limited::new(response.into_body(), 4096)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            Err(Failure::Network {
                target,
                reason: format!(
                    "answered {status}: {}",
                    String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                ),
            })
        };
        let body = tokio::time::timeout(ttl, opened)
            .await
            .unwrap_or(Err(Failure::Timeout { target, after: ttl }))?;
        Ok(HttpWatch {
            body,
            reader: FrameReader::default(),
            #[cfg(feature = "test-util")]
            faults: self.faults.clone().map(|f| (f, self.local, target)),
        })
    }

    /// Connects to this peer's endpoint (see
    /// [`liveness`](crate::network::liveness)).
    pub(crate) async fn probe(&self, timeout: Duration) -> Probe {
        #[cfg(feature = "test-util")]
        if let Some(faults) = &self.faults {
            // A blocked link answers nothing (a paused node's kernel still
            // accepts, so its probe goes through).
            if faults.is_blocked(self.local, self.target) && !faults.is_paused(self.target) {
                tokio::time::sleep(timeout).await;
                return Probe::Unknown(format!("no answer within {timeout:?} (link blocked)"));
            }
        }
        match &self.endpoint {
            Ok(endpoint) => probe_endpoint(endpoint, timeout).await,
            Err(reason) => Probe::Unknown(reason.clone()),
        }
    }

    /// Sends one RPC and decodes the answer, within `ttl`.
    pub(crate) async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        rpc: RaftRpc,
        request: &Req,
        ttl: Duration,
    ) -> Result<Resp, Failure> {
        let target = self.target;
        let endpoint = self.endpoint()?;
        let body = encode(request).map_err(|e| Failure::Network {
            target,
            reason: format!("cannot encode the request: {e}"),
        })?;
        let uri = format!("{endpoint}{}", raft_rpc_path(rpc));
        let build = || {
            let mut builder = Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .header(CONTENT_TYPE_HEADER, CONTENT_TYPE)
                .header(TARGET_NODE_HEADER, target.get());
            if let Some(auth) = &self.authorization {
                builder = builder.header(AUTHORIZATION, auth.clone());
            }
            builder
                .body(Full::new(body.clone()))
                .map_err(|e| Failure::Network {
                    target,
                    reason: e.to_string(),
                })
        };

        let exchange = async {
            #[cfg(feature = "test-util")]
            let (status, bytes) = match &self.faults {
                Some(faults) => {
                    faulty_exchange(faults, &self.client, self.local, target, build).await?
                }
                None => send(&self.client, target, build()?).await?,
            };
            #[cfg(not(feature = "test-util"))]
            let (status, bytes) = send(&self.client, target, build()?).await?;
            match status {
                StatusCode::OK => decode(&bytes).map_err(|e| Failure::Network {
                    target,
                    reason: format!("the answer does not decode: {e}"),
                }),
                StatusCode::PAYLOAD_TOO_LARGE => Err(Failure::TooLarge { target }),
                other => Err(Failure::Network {
                    target,
                    reason: format!(
                        "answered {other}: {}",
                        String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                    ),
                }),
            }
        };
        tokio::time::timeout(ttl, exchange)
            .await
            .unwrap_or(Err(Failure::Timeout { target, after: ttl }))
    }
}

/// Sends `request` to `target` and reads the whole answer.
async fn send(
    client: &HttpClient,
    target: NodeId,
    request: Request<Full<Bytes>>,
) -> Result<(StatusCode, Bytes), Failure> {
    let response = client
        .request(request)
        .await
        .map_err(|e| connect_failure(target, &e))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
        .collect()
        .await
        .map_err(|e| Failure::Network {
            target,
            reason: format!("reading the answer: {e}"),
        })?
        .to_bytes();
    Ok((status, bytes))
}

/// [`send`] through the faults of `faults` (see
/// [`faults`](crate::network::faults)): a lost request or answer never
/// resolves, so the caller's deadline turns it into a timeout.
#[cfg(feature = "test-util")]
async fn faulty_exchange(
    faults: &NetFaults,
    client: &HttpClient,
    local: NodeId,
    target: NodeId,
    build: impl Fn() -> Result<Request<Full<Bytes>>, Failure>,
) -> Result<(StatusCode, Bytes), Failure> {
    let answer = loop {
        match faults.plan(local, target) {
            Plan::Lost => std::future::pending::<()>().await,
            Plan::SenderPaused => faults.wait_runs(local).await,
            Plan::TargetPaused => {
                // Held for the target and delivered when it resumes, even
                // if the caller has given up by then, as a kernel delivers
                // what it buffered for a stopped process.
                let request = build()?;
                let (tx, rx) = tokio::sync::oneshot::channel();
                let (faults, client) = (faults.clone(), client.clone());
                tokio::spawn(async move {
                    faults.wait_runs(target).await;
                    let _ = tx.send(send(&client, target, request).await);
                });
                break rx.await.unwrap_or_else(|_| {
                    Err(Failure::Network {
                        target,
                        reason: "the held request was dropped".into(),
                    })
                })?;
            }
            Plan::Send { delay, duplicate } => {
                tokio::time::sleep(delay).await;
                if let Some(after) = duplicate {
                    let request = build()?;
                    let client = client.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        let _ = send(&client, target, request).await;
                    });
                }
                break send(client, target, build()?).await?;
            }
        }
    };
    if faults.answer_lost(local, target) {
        std::future::pending::<()>().await;
    }
    Ok(answer)
}

/// Opening the leader watch through `faults`: lost (never resolves),
/// held while either side is paused, or late.
#[cfg(feature = "test-util")]
async fn faulty_open(faults: &NetFaults, local: NodeId, target: NodeId) {
    loop {
        match faults.plan(local, target) {
            Plan::SenderPaused => faults.wait_runs(local).await,
            Plan::TargetPaused => faults.wait_runs(target).await,
            Plan::Send { delay, .. } => return tokio::time::sleep(delay).await,
            _ => std::future::pending::<()>().await,
        }
    }
}

/// What a failed request to `target` says: unreachable when the
/// connection could not be made, a network failure otherwise.
fn connect_failure(target: NodeId, e: &hyper_util::client::legacy::Error) -> Failure {
    if e.is_connect() {
        // The source says why: refused, TLS handshake, timeout.
        let reason = match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        };
        Failure::Unreachable { target, reason }
    } else {
        Failure::Network {
            target,
            reason: e.to_string(),
        }
    }
}

/// The leader watch on one peer, over HTTP.
pub(crate) struct HttpWatch {
    body: hyper::body::Incoming,
    reader: FrameReader,
    /// The faults, this node and the watched one (tests only).
    #[cfg(feature = "test-util")]
    faults: Option<(NetFaults, NodeId, NodeId)>,
}

impl std::fmt::Debug for HttpWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWatch").finish_non_exhaustive()
    }
}

impl HttpWatch {
    /// The next frame, or how the body ended. Through faults, what the
    /// watched node sends while the link back is blocked never arrives, and
    /// how the body ended arrives once the link carries again.
    pub(crate) async fn next(&mut self) -> WatchEvent {
        #[cfg(feature = "test-util")]
        if let Some((faults, local, target)) = self.faults.clone() {
            loop {
                let event = self.next_event().await;
                if !faults.is_blocked(target, local) {
                    return event;
                }
                if !matches!(event, WatchEvent::Frame(_)) {
                    faults
                        .wait_unblocked(target, local, Duration::from_secs(60))
                        .await;
                    return event;
                }
            }
        }
        self.next_event().await
    }

    async fn next_event(&mut self) -> WatchEvent {
        loop {
            match self.reader.next_frame() {
                Some(Ok(frame)) => return WatchEvent::Frame(frame),
                Some(Err(e)) => {
                    // Garbage from a process that runs: not a death.
                    tracing::warn!(target: "catga_cluster::raft::network", error = %e, "a leader watch frame does not decode; closing the watch");
                    return WatchEvent::Ended;
                }
                None => {}
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.reader.push(&data);
                    }
                }
                Some(Err(e)) => return WatchEvent::Broken(e.to_string()),
                None => return WatchEvent::Ended,
            }
        }
    }
}

/// Delays between attempts to reach an unreachable peer: 25 ms doubling up
/// to 400 ms, so a restarted peer is found again quickly.
pub(crate) fn peer_backoff() -> impl Iterator<Item = Duration> + Send + 'static {
    (0u32..).map(|i| Duration::from_millis(25u64.saturating_mul(1 << i.min(4))))
}

/// The fault rules applied to real HTTP requests, against a counting
/// server on loopback.
#[cfg(all(test, feature = "test-util"))]
mod fault_tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;
    use crate::network::faults::LinkRule;

    const LOCAL: NodeId = NodeId::new(1);
    const TARGET: NodeId = NodeId::new(2);

    /// A server that counts the RPCs it receives and answers each with 7.
    async fn counting_server() -> (String, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = Arc::new(AtomicUsize::new(0));
        let served = count.clone();
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let served = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |_request| {
                        served.fetch_add(1, Ordering::SeqCst);
                        async move {
                            let body = encode(&7u64).unwrap();
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(body)))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        (format!("http://{addr}"), count, server)
    }

    fn client(faults: &NetFaults, addr: &str) -> HttpNetwork {
        HttpNetworkFactory::new(HttpClientConfig {
            local: LOCAL,
            secret: None,
            #[cfg(feature = "tls")]
            tls: None,
            faults: Some(faults.clone()),
        })
        .peer(TARGET, addr)
    }

    async fn rpc(peer: &HttpNetwork, ttl: Duration) -> Result<u64, Failure> {
        peer.call(RaftRpc::Vote, &1u64, ttl).await
    }

    /// Waits (bounded) until the server has counted `n` requests.
    async fn served(count: &AtomicUsize, n: usize) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while count.load(Ordering::SeqCst) < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{} of {n} requests served", count.load(Ordering::SeqCst)));
    }

    #[tokio::test]
    async fn without_faults_the_rpc_goes_through_once() {
        let (addr, count, _server) = counting_server().await;
        let peer = client(&NetFaults::new(1), &addr);
        assert_eq!(rpc(&peer, Duration::from_secs(5)).await.unwrap(), 7);
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_cut_link_times_out_without_sending() {
        let (addr, count, _server) = counting_server().await;
        let faults = NetFaults::new(1);
        faults.cut_one_way(LOCAL, TARGET);
        let peer = client(&faults, &addr);
        let answer = rpc(&peer, Duration::from_millis(200)).await;
        assert!(matches!(answer, Err(Failure::Timeout { .. })), "{answer:?}");
        assert_eq!(count.load(Ordering::SeqCst), 0, "nothing was sent");
        faults.heal();
        assert_eq!(rpc(&peer, Duration::from_secs(5)).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_cut_way_back_delivers_the_request_and_loses_the_answer() {
        let (addr, count, _server) = counting_server().await;
        let faults = NetFaults::new(1);
        faults.cut_one_way(TARGET, LOCAL);
        let peer = client(&faults, &addr);
        let answer = rpc(&peer, Duration::from_millis(300)).await;
        assert!(matches!(answer, Err(Failure::Timeout { .. })), "{answer:?}");
        assert_eq!(count.load(Ordering::SeqCst), 1, "the request took effect");
    }

    #[tokio::test]
    async fn a_duplicated_request_is_served_twice_and_answered_once() {
        let (addr, count, _server) = counting_server().await;
        let faults = NetFaults::new(1);
        faults.set_link(LOCAL, TARGET, LinkRule::default().duplicate(1.0));
        let peer = client(&faults, &addr);
        assert_eq!(rpc(&peer, Duration::from_secs(5)).await.unwrap(), 7);
        served(&count, 2).await;
    }

    #[tokio::test]
    async fn a_delay_holds_the_request_back() {
        let (addr, _count, _server) = counting_server().await;
        let faults = NetFaults::new(1);
        let d = Duration::from_millis(150);
        faults.set_link(LOCAL, TARGET, LinkRule::default().delay(d, d));
        let peer = client(&faults, &addr);
        let started = tokio::time::Instant::now();
        assert_eq!(rpc(&peer, Duration::from_secs(5)).await.unwrap(), 7);
        assert!(started.elapsed() >= d);
        // A delay past the deadline is a timeout.
        let answer = rpc(&peer, Duration::from_millis(50)).await;
        assert!(matches!(answer, Err(Failure::Timeout { .. })), "{answer:?}");
    }

    #[tokio::test]
    async fn a_paused_target_gets_the_request_on_resume() {
        let (addr, count, _server) = counting_server().await;
        let faults = NetFaults::new(1);
        faults.pause(TARGET);
        let peer = client(&faults, &addr);
        let answer = rpc(&peer, Duration::from_millis(100)).await;
        assert!(matches!(answer, Err(Failure::Timeout { .. })), "{answer:?}");
        assert_eq!(count.load(Ordering::SeqCst), 0, "held while paused");
        faults.resume(TARGET);
        // Delivered late, after the sender gave up.
        served(&count, 1).await;
    }

    #[tokio::test]
    async fn a_blocked_probe_is_unknown_and_a_paused_node_accepts() {
        let (addr, _count, _server) = counting_server().await;
        let faults = NetFaults::new(1);
        let peer = client(&faults, &addr);
        let timeout = Duration::from_millis(100);
        assert_eq!(peer.probe(timeout).await, Probe::Accepted);
        faults.partition(&[&[LOCAL], &[TARGET]]);
        assert!(matches!(peer.probe(timeout).await, Probe::Unknown(_)));
        faults.heal();
        faults.pause(TARGET);
        assert_eq!(peer.probe(timeout).await, Probe::Accepted);
    }

    #[tokio::test]
    async fn a_silenced_sender_sends_nothing() {
        let (addr, count, _server) = counting_server().await;
        let faults = NetFaults::new(1);
        faults.silence(LOCAL);
        let peer = client(&faults, &addr);
        assert!(rpc(&peer, Duration::from_millis(100)).await.is_err());
        assert_eq!(count.load(Ordering::SeqCst), 0);
    }
}
