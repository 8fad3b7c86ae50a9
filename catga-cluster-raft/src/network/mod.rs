//! Raft RPCs: the wire encoding, the transport-agnostic server handler and
//! the clients (HTTP, and an in-process network for tests).
//!
//! Every RPC is one HTTP `POST` to a path from
//! [`catga_cluster_core::protocol`], with a compact binary body (postcard),
//! the target node id in `x-catga-target-node` and, when the cluster has a
//! secret, `Authorization: Bearer <secret>`. The receiver checks both before
//! it decodes anything, so a mis-addressed RPC is rejected, never applied.
//! The answer is the encoded `Result` of the Raft call: `200` with a body for
//! every answer Raft gave (including its errors), and a problem status for a
//! request that never reached Raft.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use catga_cluster_core::config::ClusterSecret;
use catga_cluster_core::protocol::{RaftRpc, TARGET_NODE_HEADER};
use catga_cluster_core::{ClusterError, NodeId, NotLeader};
use http::{HeaderMap, StatusCode};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Timeout, Unreachable,
};
use openraft::network::RPCTypes;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::network::contacts::PeerContacts;
use crate::node::{Inner, RaftNode};
use crate::state_machine::{KvValue, LockState};
use crate::types::{CommandResponse, Operation, Raft, TypeConfig};

pub(crate) mod contacts;
pub(crate) mod http_client;
#[cfg(feature = "test-util")]
pub mod memory;

/// The content type of Raft RPC bodies.
pub const CONTENT_TYPE: &str = "application/vnd.catga.raft+postcard";

/// The answer to an append-entries RPC.
pub(crate) type AppendResult = Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>;
/// The answer to a vote RPC.
pub(crate) type VoteResult = Result<VoteResponse<NodeId>, RaftError<NodeId>>;
/// The answer to a snapshot-chunk RPC.
pub(crate) type SnapshotResult =
    Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>;
/// The answer to an elect RPC.
pub(crate) type ElectResult = Result<(), String>;

/// The body of an elect RPC: who asks, and in which term.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ElectRequest {
    pub(crate) from: NodeId,
    pub(crate) term: u64,
}

/// A command a follower forwards to the leader.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct ProposeRequest {
    pub(crate) request_id: Option<String>,
    pub(crate) op: Operation,
}

/// A read a follower forwards to the leader.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum ReadRequest {
    Get { key: String },
    List { prefix: String, limit: usize },
    Lock { name: String },
}

/// The leader's answer to a [`ReadRequest`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum ReadAnswer {
    Value(Option<KvValue>),
    Entries(Vec<(String, KvValue)>),
    Lock {
        state: Option<LockState>,
        clock_ms: u64,
    },
}

/// A cluster error as it crosses the wire.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) enum WireError {
    NotLeader(NotLeader),
    UnknownOutcome,
    Timeout,
    Invalid(String),
    Shutdown,
    Storage(String),
    Other(String),
}

impl WireError {
    pub(crate) fn from_cluster(e: &ClusterError) -> Self {
        match e {
            ClusterError::NotLeader(n) => WireError::NotLeader(n.clone()),
            ClusterError::UnknownOutcome { .. } => WireError::UnknownOutcome,
            ClusterError::Timeout { .. } => WireError::Timeout,
            ClusterError::InvalidRequest(r) => WireError::Invalid(r.clone()),
            ClusterError::Shutdown => WireError::Shutdown,
            ClusterError::Storage(s) => WireError::Storage(s.clone()),
            other => WireError::Other(other.to_string()),
        }
    }

    pub(crate) fn into_cluster(self, operation: &'static str, after: Duration) -> ClusterError {
        match self {
            WireError::NotLeader(n) => ClusterError::NotLeader(n),
            WireError::UnknownOutcome => ClusterError::UnknownOutcome { operation, after },
            WireError::Timeout => ClusterError::Timeout { operation, after },
            WireError::Invalid(r) => ClusterError::InvalidRequest(r),
            WireError::Shutdown => ClusterError::Shutdown,
            WireError::Storage(s) => ClusterError::Storage(s),
            WireError::Other(s) => ClusterError::Other(s.into()),
        }
    }
}

pub(crate) type ProposeResult = Result<CommandResponse, WireError>;
pub(crate) type ReadResult = Result<ReadAnswer, WireError>;

/// Why an RPC failed before the other side answered.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Not delivered: the request cannot have taken effect.
    #[error("node {target} is unreachable: {reason}")]
    Unreachable { target: NodeId, reason: String },
    #[error("no answer from node {target} within {after:?}")]
    Timeout { target: NodeId, after: Duration },
    #[error("node {target} refused the RPC as too large")]
    TooLarge { target: NodeId },
    #[error("RPC to node {target} failed: {reason}")]
    Network { target: NodeId, reason: String },
}

impl Failure {
    /// Whether the request surely did not reach the other side.
    pub(crate) fn undelivered(&self) -> bool {
        matches!(self, Failure::Unreachable { .. })
    }

    pub(crate) fn into_rpc_error<E: std::error::Error>(
        self,
        action: RPCTypes,
        local: NodeId,
        entries: usize,
    ) -> RPCError<NodeId, BasicNode, E> {
        match self {
            Failure::Unreachable { .. } => {
                RPCError::Unreachable(Unreachable::new(&AnyError::error(self.to_string())))
            }
            Failure::Timeout { target, after } => RPCError::Timeout(Timeout {
                action,
                id: local,
                target,
                timeout: after,
            }),
            Failure::TooLarge { .. } if entries > 1 => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64))
            }
            Failure::TooLarge { .. } | Failure::Network { .. } => {
                RPCError::Network(NetworkError::new(&AnyError::error(self.to_string())))
            }
        }
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Bytes, postcard::Error> {
    postcard::to_stdvec(value).map(Bytes::from)
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// An RPC refused before it reached Raft.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RpcRejection {
    /// Missing or wrong cluster secret.
    #[error("missing or wrong cluster secret")]
    Unauthorized,
    /// The RPC was addressed to another node.
    #[error("this RPC is addressed to node {addressed}, but this is node {local}")]
    Misdirected {
        /// The node named in the RPC.
        addressed: NodeId,
        /// This node.
        local: NodeId,
    },
    /// The target header is missing or not a node id.
    #[error("the `x-catga-target-node` header is missing or not a node id")]
    MissingTarget,
    /// The body did not decode.
    #[error("the RPC body does not decode: {0}")]
    BadBody(String),
    /// The answer could not be encoded.
    #[error("the answer could not be encoded: {0}")]
    Encode(String),
}

impl RpcRejection {
    /// The HTTP status for this rejection.
    pub fn status(&self) -> StatusCode {
        match self {
            RpcRejection::Unauthorized => StatusCode::UNAUTHORIZED,
            RpcRejection::Misdirected { .. } => StatusCode::MISDIRECTED_REQUEST,
            RpcRejection::MissingTarget | RpcRejection::BadBody(_) => StatusCode::BAD_REQUEST,
            RpcRejection::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Serves Raft RPCs addressed to one node: request bytes in, response bytes
/// out. `catga-cluster-axum` mounts it on the paths of
/// [`protocol::raft_rpc_path`](catga_cluster_core::protocol::raft_rpc_path).
#[derive(Clone)]
pub struct RaftRpcHandler {
    inner: Arc<HandlerInner>,
}

struct HandlerInner {
    raft: Raft,
    local: NodeId,
    secret: Option<ClusterSecret>,
    node: Weak<Inner>,
    contacts: PeerContacts,
}

impl std::fmt::Debug for RaftRpcHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftRpcHandler")
            .field("local", &self.inner.local)
            .field("secret", &self.inner.secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RaftRpcHandler {
    pub(crate) fn new(
        raft: Raft,
        local: NodeId,
        secret: Option<ClusterSecret>,
        node: Weak<Inner>,
        contacts: PeerContacts,
    ) -> Self {
        RaftRpcHandler {
            inner: Arc::new(HandlerInner {
                raft,
                local,
                secret,
                node,
                contacts,
            }),
        }
    }

    fn node(&self) -> Option<RaftNode> {
        self.inner.node.upgrade().map(RaftNode::from_inner)
    }

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.inner.local
    }

    /// Checks the secret and the target of an RPC from its headers.
    pub fn check_headers(&self, headers: &HeaderMap) -> Result<(), RpcRejection> {
        if let Some(secret) = &self.inner.secret {
            let presented = headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| catga_cluster_core::protocol::bearer_token(v.as_bytes()));
            if !presented.is_some_and(|p| secret.verify(p)) {
                return Err(RpcRejection::Unauthorized);
            }
        }
        let addressed = headers
            .get(TARGET_NODE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(NodeId::new)
            .ok_or(RpcRejection::MissingTarget)?;
        if addressed != self.inner.local {
            return Err(RpcRejection::Misdirected {
                addressed,
                local: self.inner.local,
            });
        }
        Ok(())
    }

    /// Serves one RPC: checks the headers, decodes the body, calls Raft and
    /// encodes its answer.
    pub async fn handle(
        &self,
        rpc: RaftRpc,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Bytes, RpcRejection> {
        self.check_headers(headers)?;
        self.dispatch(rpc, body).await
    }

    /// Records that the sender of a Raft RPC (the leader or candidate
    /// named in its vote) was heard from now.
    fn heard(&self, vote: &openraft::Vote<NodeId>) {
        if let Some(from) = vote.leader_id().voted_for() {
            self.inner.contacts.record_heard(from);
        }
    }

    /// Serves an RPC whose headers were already checked.
    pub(crate) async fn dispatch(&self, rpc: RaftRpc, body: &[u8]) -> Result<Bytes, RpcRejection> {
        let raft = &self.inner.raft;
        let bad = |e: postcard::Error| RpcRejection::BadBody(e.to_string());
        let encoded = match rpc {
            RaftRpc::Append => {
                let req: AppendEntriesRequest<TypeConfig> = decode(body).map_err(bad)?;
                self.heard(&req.vote);
                let answer: AppendResult = raft.append_entries(req).await;
                encode(&answer)
            }
            RaftRpc::Vote => {
                let req: VoteRequest<NodeId> = decode(body).map_err(bad)?;
                self.heard(&req.vote);
                let answer: VoteResult = raft.vote(req).await;
                encode(&answer)
            }
            RaftRpc::Snapshot => {
                let req: InstallSnapshotRequest<TypeConfig> = decode(body).map_err(bad)?;
                self.heard(&req.vote);
                let answer: SnapshotResult = raft.install_snapshot(req).await;
                encode(&answer)
            }
            RaftRpc::Elect => {
                let req: ElectRequest = decode(body).map_err(bad)?;
                tracing::info!(
                    target: "catga_cluster::raft",
                    from = %req.from,
                    term = req.term,
                    "asked to take over leadership; starting an election"
                );
                let answer: ElectResult = raft.trigger().elect().await.map_err(|e| e.to_string());
                encode(&answer)
            }
            RaftRpc::Propose => {
                let req: ProposeRequest = decode(body).map_err(bad)?;
                let answer: ProposeResult = match self.node() {
                    Some(node) => node
                        .write(req.op, req.request_id)
                        .await
                        .map_err(|e| WireError::from_cluster(&e)),
                    None => Err(WireError::Shutdown),
                };
                encode(&answer)
            }
            RaftRpc::Read => {
                let req: ReadRequest = decode(body).map_err(bad)?;
                let answer: ReadResult = match self.node() {
                    Some(node) => node
                        .read_local_linearizable(req)
                        .await
                        .map_err(|e| WireError::from_cluster(&e)),
                    None => Err(WireError::Shutdown),
                };
                encode(&answer)
            }
            _ => return Err(RpcRejection::BadBody("unknown RPC".into())),
        };
        encoded.map_err(|e| RpcRejection::Encode(e.to_string()))
    }
}
