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
}

type HttpClient = Client<Connector, Full<Bytes>>;

/// Builds one [`HttpNetwork`] per peer, all sharing one pooled client.
#[derive(Clone)]
pub(crate) struct HttpNetworkFactory {
    client: HttpClient,
    local: NodeId,
    authorization: Option<HeaderValue>,
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
        }
    }

    pub(crate) fn peer(&self, target: NodeId, addr: &str) -> HttpNetwork {
        HttpNetwork {
            client: self.client.clone(),
            local: self.local,
            target,
            endpoint: Endpoint::parse(addr).map_err(|e| e.to_string()),
            authorization: self.authorization.clone(),
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
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| connect_failure(target, &e))?;
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
        })
    }

    /// Connects to this peer's endpoint (see
    /// [`liveness`](crate::network::liveness)).
    pub(crate) async fn probe(&self, timeout: Duration) -> Probe {
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
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(CONTENT_TYPE_HEADER, CONTENT_TYPE)
            .header(TARGET_NODE_HEADER, target.get());
        if let Some(auth) = &self.authorization {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| Failure::Network {
                target,
                reason: e.to_string(),
            })?;

        let exchange = async {
            let response = self
                .client
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
}

impl std::fmt::Debug for HttpWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpWatch").finish_non_exhaustive()
    }
}

impl HttpWatch {
    /// The next frame, or how the body ended.
    pub(crate) async fn next(&mut self) -> WatchEvent {
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
