//! The server side of the Raft RPCs: [`RaftRpcHandler`], built on demand
//! from a node ([`RaftNode::rpc_handler`]), checks an RPC, decodes it
//! strictly, hands it to the node's Raft and encodes the answer. It is
//! transport-agnostic: request bytes and headers in, response bytes out;
//! `catga-cluster-axum` mounts it on an HTTP router, and the in-process test
//! network calls it directly. An RPC refused before it reached Raft is an
//! [`RpcRejection`], which carries its HTTP status.
//!
//! What each RPC checks, and in which order, is listed in the
//! [`network`](crate::network) module docs.

use std::sync::PoisonError;

use bytes::Bytes;
use catga_cluster_core::protocol::{RaftRpc, TARGET_NODE_HEADER};
use catga_cluster_core::NodeId;
use http::{HeaderMap, StatusCode};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::network::wire::{
    decode_canonical, encode, AppendResult, BodyError, ElectRequest, ElectResult, GoneAnswer,
    GoneRequest, ProposeRequest, ProposeResult, ReadRequest, ReadResult, SnapshotResult,
    VoteResult, WireError,
};
use crate::node::RaftNode;
use crate::types::TypeConfig;

pub(crate) mod elect;
mod watch;

use elect::{check_elect, ElectRefusal, ElectVerdict, ElectView};

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
    /// The body did not decode strictly.
    #[error("the RPC body does not decode: {0}")]
    BadBody(BodyError),
    /// An elect RPC this node refused: nothing was started.
    #[error("election refused: {0}")]
    ElectRefused(ElectRefusal),
    /// A leader watch asked of a node that does not lead, or no longer
    /// claims leadership.
    #[error("this node does not lead; watch the leader it names")]
    NotLeading,
    /// An RPC this node does not serve.
    #[error("this node does not serve this RPC")]
    UnknownRpc,
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
            RpcRejection::ElectRefused(_) | RpcRejection::NotLeading => StatusCode::CONFLICT,
            RpcRejection::UnknownRpc => StatusCode::NOT_FOUND,
            RpcRejection::Encode(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Serves Raft RPCs addressed to one node: request bytes in, response bytes
/// out. `catga-cluster-axum` mounts it on the paths of
/// [`protocol::raft_rpc_path`](catga_cluster_core::protocol::raft_rpc_path).
///
/// Cheap to build and to clone: it holds the node
/// ([`RaftNode::rpc_handler`]), whose state it reads and updates.
#[derive(Clone)]
pub struct RaftRpcHandler {
    node: RaftNode,
}

impl std::fmt::Debug for RaftRpcHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftRpcHandler")
            .field("local", &self.local_id())
            .field("secret", &self.node.config().secret.as_ref().map(|_| "***"))
            .finish()
    }
}

impl RaftNode {
    /// The server side of the Raft RPCs, to mount on an HTTP router. Cheap:
    /// the handler shares this node.
    pub fn rpc_handler(&self) -> RaftRpcHandler {
        RaftRpcHandler { node: self.clone() }
    }
}

impl RaftRpcHandler {
    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.node.inner().info().id
    }

    /// Checks the secret and the target of an RPC from its headers.
    pub fn check_headers(&self, headers: &HeaderMap) -> Result<(), RpcRejection> {
        if let Some(secret) = &self.node.config().secret {
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
            .and_then(|v| {
                // Digits only, as the OpenAPI document's pattern says.
                let digits = v.trim();
                (!digits.is_empty()
                    && digits.len() <= 20
                    && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| digits.parse::<u64>().ok())
                .flatten()
            })
            .map(NodeId::new)
            .ok_or(RpcRejection::MissingTarget)?;
        let local = self.local_id();
        if addressed != local {
            return Err(RpcRejection::Misdirected { addressed, local });
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
            self.node.network().contacts().record_heard(from);
        }
    }

    /// Serves an RPC whose headers were already checked.
    pub(crate) async fn dispatch(&self, rpc: RaftRpc, body: &[u8]) -> Result<Bytes, RpcRejection> {
        let raft = self.node.raft();
        let encoded = match rpc {
            RaftRpc::Append => {
                let req: AppendEntriesRequest<TypeConfig> = decode_body(body)?;
                self.heard(&req.vote);
                let answer: AppendResult = raft.append_entries(req).await;
                encode(&answer)
            }
            RaftRpc::Vote => {
                let req: VoteRequest<NodeId> = decode_body(body)?;
                self.heard(&req.vote);
                let answer: VoteResult = raft.vote(req).await;
                encode(&answer)
            }
            RaftRpc::Snapshot => {
                let req: InstallSnapshotRequest<TypeConfig> = decode_body(body)?;
                self.heard(&req.vote);
                let answer: SnapshotResult = raft.install_snapshot(req).await;
                encode(&answer)
            }
            RaftRpc::Elect => {
                let req: ElectRequest = decode_body(body)?;
                let answer: ElectResult = match self.decide_elect(&req)? {
                    ElectVerdict::Stand => {
                        tracing::info!(
                            target: "catga_cluster::raft",
                            from = %req.from,
                            term = req.term,
                            "asked to take over leadership; starting an election"
                        );
                        self.node
                            .stand(catga_cluster_core::FailoverPath::Handover, None)
                            .await
                            .map_err(|e| e.to_string())
                    }
                    ElectVerdict::Repeated => {
                        tracing::debug!(
                            target: "catga_cluster::raft",
                            from = %req.from,
                            term = req.term,
                            "asked again to take over leadership; the election was started already"
                        );
                        Ok(())
                    }
                };
                encode(&answer)
            }
            RaftRpc::Gone => {
                let req: GoneRequest = decode_body(body)?;
                let answer: GoneAnswer = self.node.answer_gone(req).await;
                encode(&answer)
            }
            RaftRpc::Propose => {
                let req: ProposeRequest = decode_body(body)?;
                let answer: ProposeResult = self
                    .node
                    .write(req.op, req.request_id)
                    .await
                    .map_err(|e| WireError::from_cluster(&e));
                encode(&answer)
            }
            RaftRpc::Read => {
                let req: ReadRequest = decode_body(body)?;
                let answer: ReadResult = self
                    .node
                    .read_local_linearizable(req)
                    .await
                    .map_err(|e| WireError::from_cluster(&e));
                encode(&answer)
            }
            _ => return Err(RpcRejection::UnknownRpc),
        };
        encoded.map_err(|e| RpcRejection::Encode(e.to_string()))
    }

    /// Checks an elect request against this node's current metrics and, if
    /// it is to stand, remembers the request, in one step so that two
    /// copies of a request never start two elections.
    fn decide_elect(&self, req: &ElectRequest) -> Result<ElectVerdict, RpcRejection> {
        let mut elected_for = self
            .node
            .inner()
            .elected_for()
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let view = ElectView::new(&self.node.raft().metrics().borrow(), elected_for.clone());
        match check_elect(&view, req) {
            Ok(verdict) => {
                if verdict == ElectVerdict::Stand {
                    *elected_for = Some(req.clone());
                }
                Ok(verdict)
            }
            Err(refusal) => {
                tracing::warn!(
                    target: "catga_cluster::raft",
                    from = %req.from,
                    term = req.term,
                    current_term = view.current_term,
                    reason = %refusal,
                    "refused a request to take over leadership"
                );
                Err(RpcRejection::ElectRefused(refusal))
            }
        }
    }
}

/// Decodes a request body strictly (see [`BodyError`]).
fn decode_body<T: serde::Serialize + serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, RpcRejection> {
    decode_canonical(body).map_err(RpcRejection::BadBody)
}

#[cfg(feature = "test-util")]
impl crate::network::memory::Serve for RaftRpcHandler {
    fn serve<'a>(
        &'a self,
        rpc: RaftRpc,
        body: &'a [u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Bytes, String>> + Send + 'a>>
    {
        Box::pin(async move { self.dispatch(rpc, body).await.map_err(|e| e.to_string()) })
    }

    fn watch(&self) -> Result<crate::network::wire::LeaderWatch, String> {
        self.open_watch().map_err(|e| e.to_string())
    }
}
