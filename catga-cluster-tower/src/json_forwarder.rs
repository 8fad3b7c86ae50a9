//! Typed commands forwarded to the leader as JSON.
//!
//! [`JsonForwarder`] posts a serde command to the leader's
//! `POST /cluster/forward/{command}` with the cluster secret and the hop
//! count, and decodes the JSON answer, or the `application/problem+json`
//! error: `not-leader` and `no-leader` come back as
//! [`NotLeader`], `hop-limit` as
//! [`HopLimit`], anything else as
//! [`RemoteProblem`]. `catga-cluster-axum` serves the other end, dispatching
//! by command name.
//!
//! With the `tls` feature, [`JsonForwarder::with_tls`] reaches leaders whose
//! endpoints are `https://` over TLS (and `http://` ones plain).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use catga_cluster_core::protocol::problem as slug;
use catga_cluster_core::protocol::{
    bearer_header_value, FORWARDED_HEADER, FORWARD_PATH_PREFIX, LEADER_HEADER, LEADER_ID_HEADER,
};
use catga_cluster_core::ClusterSecret;
use catga_cluster_core::{BoxError, Endpoint, ForwardRequest, NodeId, NotLeader, NotLeaderReason};
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tower_service::Service;

use crate::error::{ForwardFailed, ForwardFailureKind, ForwardTimeout, HopLimit, RemoteProblem};
use catga_cluster_core::connector::{self, tcp, Connector};

/// The largest answer accepted, in bytes.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Forwards typed commands to the leader as JSON; see the
/// [module docs](self).
pub struct JsonForwarder<Req, Resp> {
    client: Client<Connector, Full<Bytes>>,
    command: Arc<str>,
    authorization: Option<HeaderValue>,
    _types: PhantomData<fn(Req) -> Resp>,
}

impl<Req, Resp> Clone for JsonForwarder<Req, Resp> {
    fn clone(&self) -> Self {
        JsonForwarder {
            client: self.client.clone(),
            command: self.command.clone(),
            authorization: self.authorization.clone(),
            _types: PhantomData,
        }
    }
}

impl<Req, Resp> std::fmt::Debug for JsonForwarder<Req, Resp> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonForwarder")
            .field("command", &self.command)
            .field("authenticated", &self.authorization.is_some())
            .finish()
    }
}

impl<Req, Resp> JsonForwarder<Req, Resp> {
    /// A forwarder for the command registered under `command` on the
    /// leader, sending `secret` as a bearer token.
    pub fn new(command: impl Into<String>, secret: Option<&ClusterSecret>) -> Self {
        Self::with_connector(command.into(), secret, connector::plain(tcp()))
    }

    /// Like [`new`](JsonForwarder::new), but reaches `https://` leaders over
    /// TLS with `config` (and `http://` leaders plain). Leave `config`'s
    /// `alpn_protocols` empty (the client speaks HTTP/1.1 only).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn with_tls(
        command: impl Into<String>,
        secret: Option<&ClusterSecret>,
        config: Arc<rustls::ClientConfig>,
    ) -> Self {
        Self::with_connector(command.into(), secret, connector::tls(tcp(), config))
    }

    fn with_connector(
        command: String,
        secret: Option<&ClusterSecret>,
        connector: Connector,
    ) -> Self {
        let client = Client::builder(TokioExecutor::new()).build(connector);
        let authorization = secret.and_then(|s| bearer_header_value(s.expose()).ok());
        JsonForwarder {
            client,
            command: command.into(),
            authorization,
            _types: PhantomData,
        }
    }
}

#[derive(serde::Deserialize)]
struct Problem {
    #[serde(rename = "type", default)]
    problem_type: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    detail: String,
}

fn hint(headers: &HeaderMap, reason: NotLeaderReason) -> NotLeader {
    let mut refusal = NotLeader::new(reason);
    if let Some(id) = headers
        .get(LEADER_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        refusal = refusal.with_leader_id(NodeId::new(id));
    }
    if let Some(endpoint) = headers
        .get(LEADER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Endpoint::parse(v).ok())
    {
        refusal = refusal.with_leader_endpoint(endpoint);
    }
    refusal
}

impl<Req, Resp> Service<ForwardRequest<Req>> for JsonForwarder<Req, Resp>
where
    Req: Serialize + Send + 'static,
    Resp: DeserializeOwned + Send + 'static,
{
    type Response = Resp;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Resp, BoxError>> + Send>>;

    /// Always ready: the pool opens connections on demand.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, forward: ForwardRequest<Req>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let leader = forward.leader.clone();
            let failed = |kind, e: BoxError| ForwardFailed::new(leader.clone(), kind, e);
            let body = serde_json::to_vec(&forward.request)
                .map_err(|e| failed(ForwardFailureKind::Request, e.into()))?;
            let uri = format!("{}{FORWARD_PATH_PREFIX}{}", leader.endpoint, this.command);
            let mut builder = http::Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header(CONTENT_TYPE, "application/json")
                .header(FORWARDED_HEADER, forward.hops);
            if let Some(auth) = &this.authorization {
                builder = builder.header(AUTHORIZATION, auth.clone());
            }
            let request = builder
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| failed(ForwardFailureKind::Request, e.into()))?;
            let exchange = async {
                let response = this.client.request(request).await.map_err(|e| {
                    let kind = if e.is_connect() {
                        ForwardFailureKind::Connect
                    } else {
                        ForwardFailureKind::Transport
                    };
                    failed(kind, e.into())
                })?;
                let (parts, body) = response.into_parts();
                let bytes = Limited::new(body, MAX_ANSWER_BYTES)
                    .collect()
                    .await
                    .map_err(|e| failed(ForwardFailureKind::Transport, e))?
                    .to_bytes();
                Ok::<_, ForwardFailed>((parts, bytes))
            };
            let (parts, bytes) = match forward.deadline {
                Some(deadline) => {
                    tokio::time::timeout_at(deadline, exchange)
                        .await
                        .map_err(|_| {
                            ForwardTimeout::new(
                                leader.clone(),
                                forward.remaining().unwrap_or_default(),
                            )
                        })??
                }
                None => exchange.await?,
            };
            if parts.status.is_success() {
                return serde_json::from_slice(&bytes)
                    .map_err(|e| failed(ForwardFailureKind::Protocol, e.into()).into());
            }
            let problem: Problem = serde_json::from_slice(&bytes).unwrap_or(Problem {
                problem_type: String::new(),
                title: parts.status.to_string(),
                detail: String::from_utf8_lossy(&bytes[..bytes.len().min(512)]).into_owned(),
            });
            Err(match problem.problem_type.as_str() {
                slug::NOT_LEADER => hint(&parts.headers, NotLeaderReason::NotLeader).into(),
                slug::NO_LEADER => hint(&parts.headers, NotLeaderReason::NoLeader).into(),
                slug::HOP_LIMIT => HopLimit::new(forward.hops, forward.hops).into(),
                _ => RemoteProblem::new(
                    parts.status.as_u16(),
                    problem.problem_type,
                    problem.title,
                    problem.detail,
                )
                .into(),
            })
        })
    }
}
