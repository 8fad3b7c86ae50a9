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
//! request that never reached Raft ([`RpcRejection`]).
//!
//! # What each RPC checks
//!
//! Every RPC, in this order:
//!
//! 1. the cluster secret, when one is configured ([`RpcRejection::Unauthorized`]);
//!    without one, the HTTP edge answers loopback peers only;
//! 2. the target node header names this node
//!    ([`RpcRejection::MissingTarget`], [`RpcRejection::Misdirected`]);
//! 3. the body decodes strictly ([`RpcRejection::BadBody`]): not empty, no
//!    bytes after the message, no unknown enum variant, no length or varint
//!    past the end, and only the canonical encoding (see [`BodyError`]).
//!
//! Then, per RPC:
//!
//! | RPC | what is checked beyond the above |
//! |---|---|
//! | `append`, `vote`, `snapshot` | openraft's own rules: a message from an older term or with a smaller vote is answered with a refusal inside the `200` answer, and changes nothing |
//! | `elect` | the sender is another voter and the leader this node follows in the request's term, which is this node's current term; this node is a voter and its log is consistent; otherwise [`RpcRejection::ElectRefused`] (`409`) and no election. The request this node last stood for is answered again as accepted, starting nothing (a hand-over asks again while it waits) |
//! | `propose`, `read` | nothing about the sender (they carry a client's command or read, not a Raft claim): the receiver runs them only as the leader, with the checks of a local write or read (command limits, a read-index round), and a follower answers `not-leader` inside the `200` answer, never forwarding again |
//!
//! The sender of `elect` is a claim checked against this node's own view,
//! not authentication: the secret (or loopback) gate authenticates peers,
//! and whoever passes it and reads `/cluster/status` can name the leader
//! and the term. The check makes garbage, replayed and disagreeing requests
//! harmless; a refused request starts no election.
//!
//! `append`, `vote` and `snapshot` get no sender check of their own: a new
//! learner with an empty log must accept the leader's first `append`
//! before it knows the membership, and openraft already refuses an older
//! term or a smaller vote. A forged `vote` or `append` with a larger term
//! can still disturb the cluster, which is what the secret is for.

use std::sync::{Arc, Mutex, PoisonError, Weak};

use bytes::Bytes;
use catga_cluster_core::config::ClusterSecret;
use catga_cluster_core::protocol::{RaftRpc, TARGET_NODE_HEADER};
use catga_cluster_core::NodeId;
use http::{HeaderMap, StatusCode};
use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};

use crate::network::contacts::PeerContacts;
use crate::network::wire::{
    decode_canonical, encode, AppendResult, ElectRequest, ElectResult, ProposeRequest,
    ProposeResult, ReadRequest, ReadResult, SnapshotResult, VoteResult, WireError,
};
use crate::node::{Inner, RaftNode};
use crate::types::{Raft, TypeConfig};

pub(crate) mod contacts;
mod elect;
pub(crate) mod failure;
pub(crate) mod http_client;
#[cfg(feature = "test-util")]
pub mod memory;
pub(crate) mod wire;

pub use elect::ElectRefusal;
use elect::{check_elect, ElectVerdict, ElectView};
pub use wire::{BodyError, CONTENT_TYPE};

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
            RpcRejection::ElectRefused(_) => StatusCode::CONFLICT,
            RpcRejection::UnknownRpc => StatusCode::NOT_FOUND,
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
    /// The last elect request this node stood for (see `elect`).
    elected_for: Mutex<Option<ElectRequest>>,
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
                elected_for: Mutex::new(None),
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
                        raft.trigger().elect().await.map_err(|e| e.to_string())
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
            RaftRpc::Propose => {
                let req: ProposeRequest = decode_body(body)?;
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
                let req: ReadRequest = decode_body(body)?;
                let answer: ReadResult = match self.node() {
                    Some(node) => node
                        .read_local_linearizable(req)
                        .await
                        .map_err(|e| WireError::from_cluster(&e)),
                    None => Err(WireError::Shutdown),
                };
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
            .inner
            .elected_for
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let view = ElectView::new(&self.inner.raft.metrics().borrow(), elected_for.clone());
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
